// SPEC.md §7.1 (path selection): three hops, chosen exit first (by policy for the target),
// then the guard, then the middle; bandwidth-weighted with position weights; no relay twice,
// no two relays in one IPv4 /16 (IPv6 /32) or one mutually declared family.
import { err, type BitcloudError, type ErrorCode } from '../errors';
import { secureRandom } from '../crypto/primitives';
import { parseExitPolicy, exitPolicyAllows, parseIp, REJECT_ALL, type ExitPolicy } from '../dir/exit-policy';
import type { Guard, GuardSet } from './guards';
import {
  computeBandwidthWeights, positionWeight, weightedPick, isRunningValid, canBeHop,
  type BandwidthWeights, type Position, type Relay,
} from './weighting';

/**
 * SPEC.md §7.1: "no path yet", failures a newer consensus may cure (none in hand, or one without a
 * guard or middle for any exit). A stream request waits on these; PATH_NO_EXIT is not one.
 */
export const NO_PATH_YET: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['CIRCUIT_NO_CONSENSUS', 'PATH_NO_RELAYS', 'PATH_NO_GUARD', 'PATH_NO_MIDDLE']);

/**
 * SPEC.md §7.1 step 4: the most exits one choice tries; when as many have left no guard or no
 * middle, the first exit's error stands. High enough that a network of at most this many candidate
 * exits has every one tried; a bound all the same, so that a consensus of many exits and no middle
 * (no `Fast` flag) cannot make one choice take time quadratic in its size.
 */
export const MAX_EXITS_TRIED = 64;

export type PathTarget = { host: string | null; ip?: string; port: number } | { storageNode: Relay };

export interface PathOptions {
  /** What the circuit is for: a TCP target (exit chosen by its policy), a storage node (the last hop), or omitted (any exit). */
  target?: PathTarget;
  /** The persistent guard set, or a fixed list of guards in preference order; [] = no guards, pick by weight. */
  guards: readonly Guard[] | GuardSet;
  /** Fingerprints never to use (e.g. relays that just failed). */
  exclude?: ReadonlySet<string>;
  /**
   * SPEC.md §7.1 step 3: fingerprints not to take as the middle while another middle is left (the
   * middles of earlier attempts of one build that failed at its fixed last hop, §7.3); they stay
   * usable in other positions, and as the middle when no other one fits.
   */
  avoidMiddles?: ReadonlySet<string>;
  /** Uniform [0,1) source; default the CSPRNG (secureRandom): a path must not be predictable. */
  rng?: () => number;
  /** No two hops in one IPv4 /16 or IPv6 /32 (Tor's EnforceDistinctSubnets). Default true; the local network turns it off. */
  enforceDistinctSubnets?: boolean;
  /** Position weights to use instead of computing them from `relays`. */
  weights?: BandwidthWeights;
}

/** IPv4 /16 or IPv6 /32 of an address; an unparseable address is its own subnet. */
export function subnetKey(address: string): string {
  const ip = parseIp(address);
  if (!ip) return `name:${address.toLowerCase()}`;
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return `4:${Number((ip.value >> 16n) & 0xffffn)}`;
  return ip.family === 4 ? `4:${ip.value >>> 16}` : `6:${ip.value >> 96n}`;
}

const normFp = (s: string) => s.replace(/^\$/, '').toLowerCase();

/**
 * Family is mutual (SPEC §7.1.3): A and B are one family only when each lists the other. A
 * one-sided claim is ignored because it would let a hostile guard exclude every honest relay
 * from the rest of its clients' circuits.
 */
export function sameFamily(a: Relay, b: Relay): boolean {
  const fa = normFp(a.fingerprint), fb = normFp(b.fingerprint);
  return a.family.some((x) => normFp(x) === fb) && b.family.some((x) => normFp(x) === fa);
}

/** Whether two relays may not share a path (same relay, same family, or same subnet when enforced). */
export function relaysConflict(a: Relay, b: Relay, enforceDistinctSubnets = true): boolean {
  if (normFp(a.fingerprint) === normFp(b.fingerprint)) return true;
  if (enforceDistinctSubnets && subnetKey(a.address) === subnetKey(b.address)) return true;
  return sameFamily(a, b);
}

const policyCache = new WeakMap<Relay, ExitPolicy>();
/** The relay's exit policy; an unparseable one counts as reject-all (the relay is then no exit). */
export function relayExitPolicy(r: Relay): ExitPolicy {
  if (!Array.isArray(r.exitPolicy)) return r.exitPolicy as ExitPolicy;
  let p = policyCache.get(r);
  if (!p) {
    try { p = parseExitPolicy(r.exitPolicy as string[], { ownAddresses: [r.address] }); } catch { p = REJECT_ALL; }
    policyCache.set(r, p);
  }
  return p;
}

/**
 * SPEC.md §7.1 step 1: the exits a TCP target (or none) may use, evaluated once per choice: the
 * `yes` list, and the `maybe` list used only when no `yes` candidate is left.
 */
function exitCandidates(pool: readonly Relay[], target: { host: string | null; ip?: string; port: number } | undefined): { yes: Relay[]; maybe: Relay[] } {
  const exits = pool.filter((r) => r.flags.has('Exit'));
  if (exits.length === 0) throw err('PATH_NO_EXIT', 'no usable relay has the Exit flag');
  if (!target) return { yes: exits, maybe: [] };
  const addr = target.ip ?? target.host;
  const yes: Relay[] = [], maybe: Relay[] = [];
  for (const r of exits) {
    const a = exitPolicyAllows(relayExitPolicy(r), addr, target.port);
    if (a === 'yes') yes.push(r); else if (a === 'maybe') maybe.push(r);
  }
  if (yes.length === 0 && maybe.length === 0) throw err('PATH_NO_EXIT', `no exit's policy allows port ${target.port}`, { port: target.port });
  return { yes, maybe };
}

/** What steps 2 and 3 of SPEC §7.1 need from the consensus, computed once per choice rather than once per exit tried. */
interface HopPools {
  /** Relays a GuardSet may return (Guard, Running, Valid, a hop): the only ones whose conflicts matter to it. */
  guardEligible: readonly Relay[];
  /** Usable relays with the Guard flag (no guards given: the pool to weigh). */
  usableGuards: readonly Relay[];
  /** Usable relays by normalized fingerprint (a fixed guard list). */
  usableByFp: ReadonlyMap<string, Relay>;
  /** Usable relays with the Fast flag (the middle pool before conflicts). */
  fast: readonly Relay[];
}

/**
 * Choose [guard, middle, last] (SPEC §7.1). Throws PATH_NO_RELAYS, PATH_NO_EXIT, PATH_NO_GUARD
 * or PATH_NO_MIDDLE when no path satisfies the rules, after setting aside each exit that leaves
 * no guard or no middle (step 4), at most MAX_EXITS_TRIED exits in all.
 */
export function choosePath(relays: readonly Relay[], opts: PathOptions): [Relay, Relay, Relay] {
  const rng = opts.rng ?? secureRandom;
  const subnets = opts.enforceDistinctSubnets ?? true;
  const exclude = new Set([...(opts.exclude ?? [])].map(normFp));
  const usable = relays.filter((r) => isRunningValid(r) && canBeHop(r) && !exclude.has(normFp(r.fingerprint)));
  if (usable.length === 0) throw err('PATH_NO_RELAYS', 'the consensus lists no usable (Running, Valid) relay');
  const w = opts.weights ?? computeBandwidthWeights(relays);
  const pickBy = (pos: Position) => (xs: Relay[]) => weightedPick(xs, (r) => positionWeight(r, pos, w), rng, (r) => r.weight);

  const avoidMiddles = new Set([...(opts.avoidMiddles ?? [])].map(normFp));
  const target = opts.target;
  const storage = target !== undefined && 'storageNode' in target;
  const pools: HopPools = {
    guardEligible: relays.filter((r) => r.flags.has('Guard') && isRunningValid(r) && canBeHop(r)),
    usableGuards: usable.filter((r) => r.flags.has('Guard')),
    usableByFp: new Map(usable.map((r) => [normFp(r.fingerprint), r])),
    fast: usable.filter((r) => r.flags.has('Fast')),
  };
  if (storage) {
    const hops = guardAndMiddle(relays, pools, target.storageNode, true, exclude, avoidMiddles, subnets, opts.guards, pickBy);
    if (!Array.isArray(hops)) throw hops;
    return [hops[0], hops[1], target.storageNode];
  }
  // SPEC §7.1 step 4: an exit that leaves no guard or no middle is set aside and another one
  // chosen (a young or small network may have a single guard, which may be the exit drawn), up to
  // MAX_EXITS_TRIED exits in all. The target's exit policy is evaluated once per relay per choice
  // (step 1), so each exit tried costs only the conflict checks against it.
  const { yes, maybe } = exitCandidates(usable, target);
  const pickExit = pickBy('exit');
  const setAside = new Set<string>();
  const notSetAside = (r: Relay) => !setAside.has(normFp(r.fingerprint));
  let firstFailure: BitcloudError | null = null;
  for (;;) {
    const left = yes.filter(notSetAside);
    const last = pickExit(left.length > 0 ? left : maybe.filter(notSetAside));
    // Every exit was set aside: the first reason explains it.
    if (!last) throw firstFailure ?? err('PATH_NO_EXIT', 'no usable exit');
    const hops = guardAndMiddle(relays, pools, last, false, exclude, avoidMiddles, subnets, opts.guards, pickBy);
    if (Array.isArray(hops)) return [hops[0], hops[1], last];
    firstFailure ??= hops;
    setAside.add(normFp(last.fingerprint));
    if (setAside.size >= MAX_EXITS_TRIED) throw firstFailure;
  }
}

/** Steps 2 and 3 of SPEC §7.1 for a chosen last hop: [guard, middle], or the PATH_NO_GUARD / PATH_NO_MIDDLE error. */
function guardAndMiddle(
  relays: readonly Relay[], pools: HopPools, last: Relay, fixedLast: boolean, exclude: ReadonlySet<string>, avoidMiddles: ReadonlySet<string>, subnets: boolean,
  guards: PathOptions['guards'], pickBy: (pos: Position) => (xs: Relay[]) => Relay | null,
): [Relay, Relay] | BitcloudError {
  let guard: Relay | null;
  if (!Array.isArray(guards)) {
    const conflicts = new Set<string>();
    // Only a relay the guard set may return matters to it, except for a fixed last hop, whose
    // conflicts also decide whether it samples (one try per choice, so no cost to bound).
    for (const r of fixedLast ? relays : pools.guardEligible) if (relaysConflict(r, last, subnets)) conflicts.add(normFp(r.fingerprint));
    // SPEC.md §7.2: a storage node is a fixed last hop, so a guard is sampled for it if no sampled
    // one fits; an exit that conflicts with every sampled guard is set aside instead (step 4).
    guard = fixedLast
      ? (guards as GuardSet).pickGuard(relays, exclude, conflicts)
      : (guards as GuardSet).pickGuard(relays, new Set([...exclude, ...conflicts]));
  } else if (guards.length > 0) {
    guard = null;
    for (const g of guards as readonly Guard[]) {
      const r = pools.usableByFp.get(normFp(g.fingerprint));
      if (r && r.flags.has('Guard') && !relaysConflict(r, last, subnets)) { guard = r; break; }
    }
  } else {
    guard = pickBy('guard')(pools.usableGuards.filter((r) => !relaysConflict(r, last, subnets)));
  }
  if (!guard) return err('PATH_NO_GUARD', 'no usable guard that does not conflict with the last hop');

  const g = guard;
  const middles = pools.fast.filter((r) => !relaysConflict(r, g, subnets) && !relaysConflict(r, last, subnets));
  // SPEC.md §7.1 step 3, §7.3: a middle an earlier attempt failed through only when no other is left.
  const fresh = avoidMiddles.size > 0 ? middles.filter((r) => !avoidMiddles.has(normFp(r.fingerprint))) : middles;
  const middle = pickBy('middle')(fresh.length > 0 ? fresh : middles);
  if (!middle) return err('PATH_NO_MIDDLE', 'no Fast relay distinct from the guard and the last hop (family, subnet)');
  return [guard, middle];
}
