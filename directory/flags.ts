// SPEC.md §6.6: how one authority assigns flags to the relays it votes for. Pure.
import { exitPolicyAllows, parseExitPolicy } from '../src/dir/exit-policy';
import { FLAG_BITS, ROLE_BITS } from '../src/dir/types';
import type { VerifiedDescriptor } from '../src/dir/descriptor';
import { lowMedian } from './compute';

export interface FlagInput {
  descriptor: VerifiedDescriptor;
  /** KB/s this authority votes. */
  measured: number;
  /** ms: start of the current unbroken run of successful reachability tests. */
  runningSince: number;
}

export interface FlagParams {
  now: number;
  /** A relay reachable without a break for this long is Stable. */
  stableAfterMs: number;
}

/** Fast: at least this many KB/s, or in the top 7/8 by measured bandwidth (Tor's rule). */
export const FAST_MIN_KBPS = 100;
/** Guard: at least the median bandwidth of Fast relays, or at least this many KB/s. */
export const GUARD_ALWAYS_KBPS = 2000;

/** Flags an authority votes on: all of them. */
export const KNOWN_FLAGS = 0x7f;

/**
 * Every relay passed here was reachable at its last test, so Running and Valid are set.
 * Exit: the exit role and a policy that may accept port 80 or 443. Storage: the storage role.
 * Fast/Stable/Guard as documented above; Guard needs the relay role.
 */
export function assignFlags(relays: readonly FlagInput[], p: FlagParams): number[] {
  const bws = relays.map((r) => r.measured).sort((a, b) => a - b);
  const eighth = bws.length ? bws[Math.floor(bws.length / 8)] : 0;
  const fastMin = Math.min(FAST_MIN_KBPS, eighth);
  // The Guard threshold is the low median of Fast *relays* (relay role): storage-only nodes are
  // never guards, so their bandwidth must not move the bar for those that can be.
  const fastBws = relays
    .filter((r) => (r.descriptor.rolesMask & ROLE_BITS.relay) !== 0 && r.measured >= fastMin && r.measured > 0)
    .map((r) => r.measured);
  const guardMin = Math.min(GUARD_ALWAYS_KBPS, lowMedian(fastBws));
  return relays.map((r) => {
    const d = r.descriptor;
    let f = FLAG_BITS.Running | FLAG_BITS.Valid;
    const isRelay = (d.rolesMask & ROLE_BITS.relay) !== 0;
    if (d.rolesMask & ROLE_BITS.exit) {
      const pol = parseExitPolicy(d.exitPolicy);
      if (exitPolicyAllows(pol, null, 443) !== 'no' || exitPolicyAllows(pol, null, 80) !== 'no') f |= FLAG_BITS.Exit;
    }
    if (d.rolesMask & ROLE_BITS.storage && (d.storagePort > 0 || d.rolesMask & ROLE_BITS.hidden)) f |= FLAG_BITS.Storage;
    const fast = r.measured > 0 && r.measured >= fastMin;
    if (fast) f |= FLAG_BITS.Fast;
    const stable = p.now - r.runningSince >= p.stableAfterMs;
    if (stable) f |= FLAG_BITS.Stable;
    if (isRelay && fast && stable && r.measured >= guardMin) f |= FLAG_BITS.Guard;
    return f;
  });
}

/**
 * SPEC.md §6.5 (Tor's AuthDirMaxServersPerAddr): at most `max` relays per IPv4 address (0 = no
 * limit). Those kept at an address are the highest `measured`, then the longest running (smallest
 * `runningSince`), then the lowest identity; a hidden node (no address, §9.21.1) is never counted.
 * Returns the relays kept, in their order, and how many were left out.
 */
export function limitPerAddress<R extends FlagInput>(relays: readonly R[], max: number): { kept: R[]; leftOut: number } {
  if (max <= 0) return { kept: [...relays], leftOut: 0 };
  const byAddress = new Map<string, R[]>();
  for (const r of relays) {
    if (r.descriptor.rolesMask & ROLE_BITS.hidden) continue;
    const a = r.descriptor.address;
    let list = byAddress.get(a);
    if (!list) byAddress.set(a, (list = []));
    list.push(r);
  }
  const out = new Set<R>();
  for (const list of byAddress.values()) {
    if (list.length <= max) continue;
    list.sort((a, b) => b.measured - a.measured || a.runningSince - b.runningSince || Buffer.compare(a.descriptor.identity, b.descriptor.identity));
    for (const r of list.slice(max)) out.add(r);
  }
  return { kept: relays.filter((r) => !out.has(r)), leftOut: out.size };
}
