// Per-address token buckets for uploads (an address: an IPv4 address or an IPv6 /64, uploaderKey): a flood from one address gets 429 while others are
// served (SPEC.md §6.10 "Rate limits"). Buckets idle long enough to be full again are forgotten,
// and there are never more than maxAddresses: at the cap, the full buckets are swept (at most once
// per refill time, so a flood of new addresses does not scan them all on every request) and then
// the least recently used ones go.

import { addressKey } from '../src/wire/address-key';

/**
 * SPEC.md §6.10 "Rate limits", §8.4: the rate-limit key of an uploader — its address key (§7b.9
 * "Address key": its IPv4 address, an IPv4-mapped one too, or the /64 of its IPv6 address), or
 * '?' when its address is unknown.
 */
export function uploaderKey(remote: string | undefined): string {
  return addressKey(remote) ?? '?';
}

export class RateLimiter {
  /** In order of last use (a bucket taken from moves to the end). */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;
  /** Time a bucket takes to refill completely (a minute at most): the least time between two sweeps. */
  private readonly sweepEveryMs: number;
  private nextSweep = -Infinity;

  constructor(private readonly perMinute: number, readonly burst: number, private readonly maxAddresses = 100_000) {
    this.perMs = perMinute / 60_000;
    this.sweepEveryMs = this.perMs > 0 ? Math.min(60_000, burst / this.perMs) : 60_000;
  }

  /** Take `n` tokens (default one) for `key`; false, taking none, when its bucket holds fewer. */
  take(key: string, now: number, n = 1): boolean {
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key);
      this.buckets.set(key, b);
    } else {
      if (this.buckets.size >= this.maxAddresses) {
        if (now >= this.nextSweep) {
          this.nextSweep = now + this.sweepEveryMs;
          this.sweep(now);
        }
        for (const k of this.buckets.keys()) {
          if (this.buckets.size < this.maxAddresses) break;
          this.buckets.delete(k);
        }
      }
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
    b.at = now;
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }

  /** Take one token for the uploader at `remote` (a socket's remote address), keyed by uploaderKey. */
  takeRemote(remote: string | undefined, now: number): boolean {
    return this.take(uploaderKey(remote), now);
  }

  /** Number of addresses with a bucket. */
  get size(): number {
    return this.buckets.size;
  }

  /** Forget buckets that have refilled completely. */
  sweep(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(k);
  }
}

/**
 * The descriptor upload bucket for `nodes` uploaders that share one address, each uploading once
 * every `periodSeconds` (SPEC.md §6.10 "Rate limits"): what a local network's launcher gives its
 * authorities. The default (60 a minute, burst 20) is for one operator's nodes per address; on a
 * loopback network every relay and storage node uploads from 127.0.0.1, all in step after each
 * new consensus (14 nodes at a 5 s period are 168 uploads a minute); with the default bucket a
 * late node can find it empty round after round, past the launcher's deadline. Four times the
 * steady rate leaves room for the extra uploads (a new signing key, a re-mined identity proof,
 * policies, contracts); never below the default.
 */
export function sharedAddressUploadLimit(nodes: number, periodSeconds: number): { uploadsPerMinute: number; burst: number } {
  const perMinute = nodes * Math.ceil(60 / Math.max(1, periodSeconds));
  return { uploadsPerMinute: Math.max(60, 4 * perMinute), burst: Math.max(20, 4 * nodes) };
}
