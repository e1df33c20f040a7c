// SPEC.md §9.21.3: where hidden descriptors are kept (authorities) — by blinded key, the highest
// revision that passes the outer checks, dropped when expired or an hour after its period ended
// (a client fetches the blinded key of its current period), within a byte bound: when a new
// descriptor does not fit, the held ones that expire soonest are evicted. Memory only: a node
// republishes every 30 minutes (SPEC.md §9.21.1), so a restarted authority (or an evicted node)
// has them again within that.
import { err } from '../errors';
import { hsPeriodOf, HS_PERIOD_SECONDS } from '../crypto/blind';
import { checkHsDescriptorOuter } from './descriptor';

/**
 * SPEC.md §9.21.3: what each held descriptor is charged beyond its bytes (its key, its map entry
 * and record), so that small descriptors cannot hold more memory than the bound says.
 */
export const HS_STORE_ENTRY_OVERHEAD = 256;
/**
 * SPEC.md §9.21.3: the bytes a store holds in all, 64 MiB: about 29 000 descriptors of the
 * largest size (2 048 + 256 bytes each), 14 500 hidden nodes publishing for periods N and N+1.
 */
export const HS_STORE_MAX_BYTES = 64 * 1024 * 1024;
/** The path prefix: GET …/<blinded key hex>, POST the prefix without a key. */
export const HS_DESC_PATH = '/bitcloud/hs/desc';

interface Held { bytes: Buffer; revision: number; validUntil: number; period: number; receivedAt: number }

export class HsDescriptorStore {
  private readonly held = new Map<string, Held>();
  private charged = 0;
  /**
   * `maxBytes`: the byte bound (a bound below one descriptor, for tests only, still holds that
   * one alone); `onEvict(n)`: n held descriptors were evicted to make room for a new one.
   */
  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxBytes = HS_STORE_MAX_BYTES,
    private readonly onEvict: (n: number) => void = () => {},
  ) {}

  /** Throws HIDDEN_DESC_* (outer checks) and HIDDEN_DESC_STALE. */
  accept(bytes: Buffer): { blindedKey: string; revision: number } {
    const now = this.now();
    const d = checkHsDescriptorOuter(bytes, { nowMs: now });
    const key = d.blindedKey.toString('hex');
    const old = this.held.get(key);
    if (old && old.revision >= d.revision) throw err('HIDDEN_DESC_STALE', `revision ${d.revision} is not above the held ${old.revision}`);
    if (old) this.drop(key, old);
    else for (const [k, h] of this.held) if (gone(h, now)) this.drop(k, h);
    this.makeRoom(bytes.length + HS_STORE_ENTRY_OVERHEAD);
    this.held.set(key, { bytes: Buffer.from(bytes), revision: d.revision, validUntil: d.validUntil, period: d.period, receivedAt: now });
    this.charged += bytes.length + HS_STORE_ENTRY_OVERHEAD;
    return { blindedKey: key, revision: d.revision };
  }

  get(blindedKeyHex: string): Buffer | null {
    const h = this.held.get(blindedKeyHex);
    if (!h) return null;
    if (gone(h, this.now())) { this.drop(blindedKeyHex, h); return null; }
    return h.bytes;
  }

  /** When the descriptor under that key was last accepted (ms), or null. */
  receivedAt(blindedKeyHex: string): number | null {
    return this.get(blindedKeyHex) ? this.held.get(blindedKeyHex)!.receivedAt : null;
  }

  get size(): number { return this.held.size; }

  /** The bytes charged for what is held (each descriptor's length + HS_STORE_ENTRY_OVERHEAD). */
  get bytes(): number { return this.charged; }

  /**
   * SPEC.md §9.21.3: while `cost` more would pass the bound, evict the held descriptor that
   * expires soonest (the earlier of valid_until and its period's end + grace; on a tie the one
   * received first), as Tor's hidden-service directory cache does.
   */
  private makeRoom(cost: number): void {
    let evicted = 0;
    while (this.charged + cost > this.maxBytes && this.held.size > 0) {
      let soonest: [string, Held] | undefined;
      for (const e of this.held) if (!soonest || expiresAt(e[1]) < expiresAt(soonest[1])) soonest = e;
      this.drop(...soonest!);
      evicted++;
    }
    if (evicted) this.onEvict(evicted);
  }

  private drop(key: string, h: Held): void {
    if (this.held.delete(key)) this.charged -= h.bytes.length + HS_STORE_ENTRY_OVERHEAD;
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

/** When a held descriptor stops being served: the earlier of valid_until and its period's end + the grace (ms). */
function expiresAt(h: Held): number {
  return Math.min(h.validUntil, (h.period + 1) * HS_PERIOD_SECONDS * 1000 + HS_PERIOD_GRACE_MS);
}
