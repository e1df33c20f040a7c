// SPEC.md §6.5, §6.7.1, §6.7.2: consensus parameters. Each authority votes named integers
// (`consensusParams` in its configuration); the consensus carries a name when a majority of ALL
// configured authorities voted it, with the low median of their values. They let the operators
// decide together when a network changes behaviour (SPEC.md §8.11.3: `funding-v2`).
import { configError, obj } from './config-fields';
import { MAX_PARAMS, MAX_PARAM_VALUE, PARAM_NAME, type ParamMsg } from '../wire/docs';

/**
 * SPEC.md §8.11.3: 1 switches on version 2 (funding) transfers at an authority's pool and
 * proposer, and in the client's `--pay` (§9.20.4); absent or 0: they send and carry version 1 only.
 */
export const FUNDING_V2 = 'funding-v2';

/** The parameters this implementation knows, with the values each may take (the configuration refuses others). */
export const KNOWN_PARAMS: Readonly<Record<string, readonly [number, number]>> = { [FUNDING_V2]: [0, 1] };

/** SPEC.md §8.11.3: whether a consensus's parameters switch on version 2 (funding) transfers. */
export function fundingV2Enabled(params: ReadonlyMap<string, number> | undefined): boolean {
  return params?.get(FUNDING_V2) === 1;
}

/**
 * The authority's `consensusParams` (object name → integer, default {}), as its vote carries them:
 * sorted by name. CONFIG_INVALID naming the key for a bad name, a value that is not an integer in
 * 0..2^31 − 1 (or, for a known parameter, outside its values), or more than MAX_PARAMS.
 */
export function parseConsensusParams(v: unknown, field = 'consensusParams'): ParamMsg[] {
  if (v === undefined) return [];
  const o = obj(v, field);
  const names = Object.keys(o).sort();
  if (names.length > MAX_PARAMS) configError(field, `at most ${MAX_PARAMS} parameters, has ${names.length}`);
  return names.map((name) => {
    if (!PARAM_NAME.test(name)) configError(`${field}.${name}`, 'a parameter name is 1 to 32 of a-z, 0-9 and -');
    const value = o[name];
    // Own keys only: a name such as `constructor` is valid and must not find Object.prototype's.
    const [min, max] = Object.hasOwn(KNOWN_PARAMS, name) ? KNOWN_PARAMS[name] : [0, MAX_PARAM_VALUE];
    if (typeof value !== 'number' || !Number.isInteger(value)) configError(`${field}.${name}`, 'must be an integer');
    if (value < min || value > max) configError(`${field}.${name}`, `must be between ${min} and ${max}, is ${value}`);
    return { name, value };
  });
}
