// SPEC.md §9.21.3: where hidden descriptors are kept (authorities) — by blinded key, the highest
// revision that passes the outer checks, dropped when expired or an hour after its period ended
// (a client fetches the blinded key of its current period). Memory only: a
// node republishes every 30 minutes (SPEC.md §9.21.1), so a restarted authority has them again
// within that.
import { err } from '../errors';
import { hsPeriodOf } from '../crypto/blind';
import { checkHsDescriptorOuter } from './descriptor';

export const HS_STORE_MAX = 4096;
/** The path prefix: GET …/<blinded key hex>, POST the prefix without a key. */
export const HS_DESC_PATH = '/bitcloud/hs/desc';

interface Held { bytes: Buffer; revision: number; validUntil: number; period: number; receivedAt: number }

export class HsDescriptorStore {
  private readonly held = new Map<string, Held>();
  constructor(private readonly now: () => number = Date.now, private readonly max = HS_STORE_MAX) {}

  /** Throws HIDDEN_DESC_* (outer checks), HIDDEN_DESC_STALE, HIDDEN_RELAY_LIMIT. */
  accept(bytes: Buffer): { blindedKey: string; revision: number } {
    const now = this.now();
    const d = checkHsDescriptorOuter(bytes, { nowMs: now });
    const key = d.blindedKey.toString('hex');
    const old = this.held.get(key);
    if (old && old.revision >= d.revision) throw err('HIDDEN_DESC_STALE', `revision ${d.revision} is not above the held ${old.revision}`);
    if (!old) {
      this.prune(now);
      if (this.held.size >= this.max) throw err('HIDDEN_RELAY_LIMIT', `this store keeps at most ${this.max} hidden descriptors`);
    }
    this.held.set(key, { bytes: Buffer.from(bytes), revision: d.revision, validUntil: d.validUntil, period: d.period, receivedAt: now });
    return { blindedKey: key, revision: d.revision };
  }

  get(blindedKeyHex: string): Buffer | null {
    const h = this.held.get(blindedKeyHex);
    if (!h) return null;
    if (gone(h, this.now())) { this.held.delete(blindedKeyHex); return null; }
    return h.bytes;
  }

  /** When the descriptor under that key was last accepted (ms), or null. */
  receivedAt(blindedKeyHex: string): number | null {
    return this.get(blindedKeyHex) ? this.held.get(blindedKeyHex)!.receivedAt : null;
  }

  get size(): number { return this.held.size; }

  private prune(now: number): void {
    for (const [k, h] of this.held) if (gone(h, now)) this.held.delete(k);
  }
}

/**
 * SPEC.md §9.21.3: a descriptor whose period ended more than this long ago is dropped even
 * before it expires. A client asks for the blinded key of its own period, so the grace serves
 * only clients whose clock runs behind the authority's across a period boundary.
 */
export const HS_PERIOD_GRACE_MS = 3_600_000;

/** SPEC.md §9.21.3: expired, or for a period that ended more than HS_PERIOD_GRACE_MS ago. */
function gone(h: Held, now: number): boolean {
  return h.validUntil < now || h.period < hsPeriodOf(now - HS_PERIOD_GRACE_MS);
}
