// SPEC.md §9.21.3: where hidden descriptors are kept (authorities) — by blinded key, the highest
// revision that passes the outer checks, dropped when expired or an hour after its period ended
// (a client fetches the blinded key of its current period), within a byte bound. Held descriptors
// are grouped by period, each group in the order received; when a new descriptor does not fit, the
// oldest received are evicted: first those whose period has ended (in their grace hour), then from
// the new one's period when that holds more than half the bound, else from the other current period,
// so a flood of one period cannot evict the other. Memory only: a node republishes every 30
// minutes (SPEC.md §9.21.1), so a restarted authority (or an evicted node) has them again within that.
import { err } from '../errors';
import { hsPeriodOf } from '../crypto/blind';
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

/** The descriptors held for one period, oldest received first (a Map keeps insertion order). */
interface Group { readonly period: number; readonly held: Map<string, Held>; bytes: number }

/** SPEC.md §9.21.3: the least time between two sweeps of expired descriptors on upload (ms). */
const SWEEP_EVERY_MS = 60_000;

export class HsDescriptorStore {
  /** By period; a blinded key is held in one group at most. */
  private readonly groups = new Map<number, Group>();
  private charged = 0;
  private count = 0;
  private nextSweep = -Infinity;
  /**
   * `maxBytes`: the byte bound (a bound below one descriptor, for tests only, still holds that
   * one alone); `onEvict(n)`: n held descriptors were evicted to make room for a new one.
   */
  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxBytes = HS_STORE_MAX_BYTES,
    private readonly onEvict: (n: number) => void = () => {},
  ) {}

  /**
   * SPEC.md §9.21.3: 'new' (no descriptor held under its blinded key), 'updated' (a higher revision
   * replaced the held one) or 'unchanged' (byte for byte the descriptor held: a node's resend, taken
   * as is, its place in the eviction order kept). Throws HIDDEN_DESC_* (outer checks) and
   * HIDDEN_DESC_STALE (a lower revision, or the held revision with other bytes).
   */
  accept(bytes: Buffer): { blindedKey: string; revision: number; result: 'new' | 'updated' | 'unchanged' } {
    const now = this.now();
    const d = checkHsDescriptorOuter(bytes, { nowMs: now });
    const key = d.blindedKey.toString('hex');
    this.dropEnded(now);
    const old = this.find(key);
    if (old && old.revision === d.revision && old.bytes.equals(bytes)) return { blindedKey: key, revision: d.revision, result: 'unchanged' };
    if (old && old.revision >= d.revision) throw err('HIDDEN_DESC_STALE', `revision ${d.revision} is not above the held ${old.revision}`);
    // A higher revision takes the old one's place first, and is re-inserted at the newest end.
    if (old) this.drop(key, old);
    if (now >= this.nextSweep) { this.nextSweep = now + SWEEP_EVERY_MS; this.sweep(now); }
    const cost = bytes.length + HS_STORE_ENTRY_OVERHEAD;
    this.makeRoom(d.period, cost, now);
    let g = this.groups.get(d.period);
    if (!g) { g = { period: d.period, held: new Map(), bytes: 0 }; this.groups.set(d.period, g); }
    g.held.set(key, { bytes: Buffer.from(bytes), revision: d.revision, validUntil: d.validUntil, period: d.period, receivedAt: now });
    g.bytes += cost;
    this.charged += cost;
    this.count++;
    return { blindedKey: key, revision: d.revision, result: old ? 'updated' : 'new' };
  }

  get(blindedKeyHex: string): Buffer | null {
    const h = this.find(blindedKeyHex);
    if (!h) return null;
    if (gone(h, this.now())) { this.drop(blindedKeyHex, h); return null; }
    return h.bytes;
  }

  /** When the descriptor under that key was last accepted (ms), or null. */
  receivedAt(blindedKeyHex: string): number | null {
    return this.get(blindedKeyHex) ? this.find(blindedKeyHex)!.receivedAt : null;
  }

  get size(): number { return this.count; }

  /** The bytes charged for what is held (each descriptor's length + HS_STORE_ENTRY_OVERHEAD). */
  get bytes(): number { return this.charged; }

  /** The held descriptor under `key`: a look in each group (at most N-1, N and N+1 are live). */
  private find(key: string): Held | undefined {
    for (const g of this.groups.values()) {
      const h = g.held.get(key);
      if (h) return h;
    }
    return undefined;
  }

  /**
   * SPEC.md §9.21.3 "Bound.": while `cost` more for period `period` would pass the bound, evict the
   * oldest received of: a group whose period has ended (its grace hour; the lowest first); else the
   * new one's own group when it would hold more than half the bound, otherwise another current
   * group; a group with nothing left yields to the next. Each of N and N+1 so keeps half the store
   * against a flood of the other; a new upload is never refused for room.
   */
  private makeRoom(period: number, cost: number, now: number): void {
    const n = hsPeriodOf(now);
    let evicted = 0;
    while (this.charged + cost > this.maxBytes && this.count > 0) {
      const ended: Group[] = [], others: Group[] = [];
      let own: Group | undefined;
      for (const g of this.groups.values()) {
        if (g.held.size === 0) continue;
        if (g.period < n) ended.push(g);
        else if (g.period === period) own = g;
        else others.push(g);
      }
      ended.sort((a, b) => a.period - b.period);
      const ownOverHalf = own !== undefined && own.bytes + cost > this.maxBytes / 2;
      const order = [...ended, ...(ownOverHalf ? [own, ...others] : [...others, own])];
      const g = order.find((x): x is Group => x !== undefined)!;
      const [key, h] = g.held.entries().next().value as [string, Held];
      this.drop(key, h);
      evicted++;
    }
    if (evicted) this.onEvict(evicted);
  }

  /** Drops, each whole, the groups whose period ended more than HS_PERIOD_GRACE_MS ago. */
  private dropEnded(now: number): void {
    const first = hsPeriodOf(now - HS_PERIOD_GRACE_MS);
    for (const g of this.groups.values()) {
      if (g.period >= first) continue;
      this.groups.delete(g.period);
      this.charged -= g.bytes;
      this.count -= g.held.size;
    }
  }

  /** Drops the descriptors of the live groups whose valid_until has passed. */
  private sweep(now: number): void {
    for (const g of this.groups.values()) for (const [k, h] of g.held) if (h.validUntil < now) this.drop(k, h);
  }

  private drop(key: string, h: Held): void {
    const g = this.groups.get(h.period);
    if (!g?.held.delete(key)) return;
    const cost = h.bytes.length + HS_STORE_ENTRY_OVERHEAD;
    g.bytes -= cost;
    this.charged -= cost;
    this.count--;
    if (g.held.size === 0) this.groups.delete(h.period);
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
