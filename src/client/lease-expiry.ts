// SPEC.md §9.9.2, §9.18.3: the lease a renew or keep pass asks for, and the expiry it reports for a file.
import { err } from '../errors';

/** The largest lease a request carries (`lease_seconds` is a u32, SPEC.md §9.6.3). */
export const MAX_LEASE_SECONDS = 0xffff_ffff;

/**
 * SPEC.md §9.9.2, §9.19: `--lease-seconds` of `bitcloud renew` and `bitcloud keep run`, checked
 * before anything is sent: a whole number 0..2^32 − 1 (0: each node's default), else
 * CONFIG_INVALID. Sent unchecked, −1 would go out as 2^32 − 1 and 2^32 as 0 (the u32 wraps) while
 * the answers were bounded by the number given, and a fraction would give fractional expiries.
 */
export function checkLeaseSeconds(leaseSeconds: number): number {
  if (!Number.isSafeInteger(leaseSeconds) || leaseSeconds < 0 || leaseSeconds > MAX_LEASE_SECONDS) {
    throw err('CONFIG_INVALID', '--lease-seconds must be a whole number of seconds 0..4294967295 (0: each node\'s default)', { leaseSeconds });
  }
  return leaseSeconds;
}

/**
 * The earliest of `expiries` above 0 (0 when there is none). A loop, not `Math.min(...)`: a large
 * file has more shares than a call can take arguments (about 125 000).
 */
export function earliestExpiry(expiries: Iterable<number>): number {
  let min = 0;
  for (const x of expiries) if (x > 0 && (min === 0 || x < min)) min = x;
  return min;
}

/** Unix seconds now. */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/**
 * SPEC.md §9.8.2: the default lease of a storage node (`defaultLeaseSeconds`, 7 days). What a
 * client counts an answer to a request with lease 0 (each node's default) for, at most.
 */
export const DEFAULT_LEASE_SECONDS = 7 * 86_400;

/**
 * SPEC.md §9.9.2: what a node's answered expiry (`put`, `renew`, §9.6.3) counts for: at most the
 * time the request was sent plus the lease asked for, or plus DEFAULT_LEASE_SECONDS when none was
 * (0 or absent: each node's default, which the client does not know). A node answering more may
 * hold the share longer (a lease is never shortened, a node's default may be longer) or may be
 * lying, and the client cannot tell which, so it counts the share as held only that long and
 * renews it again in time. An expiry not after `sentAt` grants nothing (a node that holds the
 * share answers at least its now plus a lease): it counts as 0, no lease.
 */
export function boundedExpiry(answered: number, sentAt: number, leaseSeconds: number | undefined): number {
  if (answered <= sentAt) return 0;
  return Math.min(answered, sentAt + (leaseSeconds || DEFAULT_LEASE_SECONDS));
}
