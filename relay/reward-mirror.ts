// SPEC.md §6.10.1, §8.7.5: a relay's directory mirror also answers GET /bitcloud/rewards?from=H,
// so clients with a guard read the reward chain through it (BEGIN_DIR) and the authorities never
// see their addresses. The mirror asks the authorities (in random order, the first 200 wins),
// keeps each answer for a short while (one fetch serves every client asking in that time) and
// passes the bundle on unchanged: it holds no key and is not trusted, since the client verifies
// every block against the configured authorities (§8.7.3); a mirror that alters the bundle only
// gets the client to try its next guard.
import { errorBodyReason, FETCHER_HEADER, httpRequest, PATHS } from '../src/dir/fetch';
import type { AuthorityInfo } from '../src/dir/authorities';
import { MAX_REWARD_BUNDLE_BYTES } from '../src/bandwidth/reward-chain';
import { err } from '../src/errors';
import { shuffle } from '../src/crypto/primitives';

/** How long one answer is served again without asking an authority (ms). */
export const REWARD_MIRROR_TTL_MS = 10_000;
/** Distinct `from` heights kept at once (the oldest is dropped). */
const MAX_ENTRIES = 64;

interface Entry { at: number; body: Promise<Buffer> }

export class RewardMirror {
  private readonly cache = new Map<number, Entry>();

  constructor(
    private readonly authorities: readonly AuthorityInfo[],
    private readonly o: { ttlMs?: number; timeoutMs?: number; now?: () => number } = {},
  ) {}

  /**
   * The bundle from height `from` as an authority serves it. Concurrent and repeated requests
   * within the TTL share one fetch. Rejects with REWARD_NOT_AVAILABLE when no authority answered.
   */
  bundle(from: number): Promise<Buffer> {
    const now = (this.o.now ?? Date.now)();
    const hit = this.cache.get(from);
    if (hit && now - hit.at < (this.o.ttlMs ?? REWARD_MIRROR_TTL_MS)) return hit.body;
    const body = this.fetch(from);
    this.cache.delete(from);
    this.cache.set(from, { at: now, body });
    while (this.cache.size > MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as number);
    // A failure is not kept: the next client asks again.
    body.catch(() => { if (this.cache.get(from)?.body === body) this.cache.delete(from); });
    return body;
  }

  private async fetch(from: number): Promise<Buffer> {
    const reasons: string[] = [];
    for (const a of shuffle([...this.authorities])) {
      try {
        const r = await httpRequest(`${a.url}${PATHS.rewards}?from=${from}`, {
          maxBytes: MAX_REWARD_BUNDLE_BYTES, timeoutMs: this.o.timeoutMs ?? 10_000, headers: { [FETCHER_HEADER]: 'mirror' },
        });
        if (r.status === 200) return r.body;
        reasons.push(`${a.url}: ${errorBodyReason(r)}`);
      } catch (e) {
        reasons.push(`${a.url}: ${(e as Error).message}`);
      }
    }
    throw err('REWARD_NOT_AVAILABLE', `no authority gave the reward chain (${reasons.join('; ') || 'no authority'})`);
  }
}

