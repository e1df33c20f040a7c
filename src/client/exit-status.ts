// The exit status of a failed `bitcloud` command, one rule for every subcommand (SPEC.md §9.10).
import { ERROR_CODES } from '../errors';

/**
 * Codes that mean "the caller's input is wrong" (exit 2) rather than "it failed" (exit 1),
 * SPEC.md §9.10: the usage codes named there; every code of the IO layer and every KEY_* code (a
 * key file the caller named), taken from their declarations in src/errors.ts so that such a code
 * added there exits with 2 without being listed here too (DATA_DIR_LOCKED, declared with the key
 * codes, is not one: a folder in use is no wrong input); and the POLICY_BAD_* codes of a
 * moderator's own input, with POLICY_NOT_PUBLIC (asked to approve content that is not public;
 * POLICY_BAD_SIGNATURE, which a fetched policy earns, is not one).
 */
const USAGE_CODES: ReadonlySet<string> = new Set([
  'CAP_MALFORMED', 'NAME_MALFORMED', 'CONFIG_INVALID', 'STORAGE_CODING_INVALID',
  ...Object.keys(ERROR_CODES.IO),
  ...Object.keys(ERROR_CODES.KEY).filter((c) => c.startsWith('KEY_')),
  'POLICY_BAD_ID', 'POLICY_BAD_TAG', 'POLICY_BAD_CLASS', 'POLICY_BAD_MODERATOR', 'POLICY_NOT_PUBLIC',
]);

/** A failed command's exit status for its code (SPEC.md §9.10): 2 for a usage code, else 1. */
export function exitStatusOf(code: string): number {
  return USAGE_CODES.has(code) ? 2 : 1;
}
