// SPEC.md §9.14.2: the small name store a relay's directory mirror keeps ("name mirror"). Records
// are BEP 44 mutable items (src/wire/name-record.ts) keyed by their target SHA-1(key ‖ salt); the
// store keeps the highest seq per target, forgets a record NAME_RECORD_TTL_MS after it was last
// stored on the monotonic clock (a republication of the same record renews it), and holds at most
// NAME_STORE_MAX_RECORDS.
// It lives in memory: a restarted mirror has lost its names until they are republished, exactly
// as BEP 44 nodes lose theirs (§9.14).
import { err } from '../errors';
import { decodeNameRecord, nameTarget } from '../wire/name-record';

/** SPEC.md §9.14.2: POST a record here; GET `${NAME_MIRROR_PATH}/<40 hex target>`. */
export const NAME_MIRROR_PATH = '/bitcloud/name';

/** A record is forgotten 2 hours after it was last stored (SPEC.md §9.14.2). */
export const NAME_RECORD_TTL_MS = 2 * 60 * 60 * 1000;
/** At most this many records (SPEC.md §9.14.2); beyond that NAME_STORE_FULL. */
export const NAME_STORE_MAX_RECORDS = 16_384;

/**
 * One record held: its seq and its bytes, in a buffer of their own (SPEC.md §9.14.2 *The store*).
 * Neither the decoded fields nor a slice of a shared allocation pool is kept: a small Buffer made
 * by Buffer.from or Buffer.concat is a view into an 8 KiB slab that stays alive as long as any
 * view into it does, so 16 384 records kept that way could hold several times their own size.
 */
interface Held { seq: number; bytes: Buffer; expiresAt: number }

export interface NameMirrorStoreOptions {
  /** A monotonic clock (ms); default performance.now (SPEC.md §9.14.2: lifetimes are durations). */
  now?: () => number;
  ttlMs?: number;
  maxRecords?: number;
}

export class NameMirrorStore {
  private readonly byTarget = new Map<string, Held>();
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly max: number;

  constructor(o: NameMirrorStoreOptions = {}) {
    // A monotonic clock: a wall clock stepped back would keep every record (and, in a full store,
    // every refusal of a new name) that much longer, and one stepped forward would drop them all.
    this.now = o.now ?? (() => performance.now());
    this.ttlMs = o.ttlMs ?? NAME_RECORD_TTL_MS;
    this.max = o.maxRecords ?? NAME_STORE_MAX_RECORDS;
  }

  /** Records held and not expired. */
  get size(): number {
    this.sweep();
    return this.byTarget.size;
  }

  /**
   * Store the record `bytes` (decoded and its signature checked here). Resolves with its target
   * (40 hex). Errors: NAME_RECORD_MALFORMED, NAME_RECORD_TOO_LARGE, NAME_BAD_SIGNATURE; a seq
   * below the one held, or the same seq with other bytes, DHT_SEQ_STALE; a new target when the
   * store is full, NAME_STORE_FULL.
   */
  put(bytes: Uint8Array): { target: string; seq: number } {
    const rec = decodeNameRecord(bytes);
    const target = nameTarget(rec.publisher, rec.salt).toString('hex');
    const now = this.now();
    const held = this.live(target, now);
    // The layout has one encoding and decodeNameRecord checks it to the last byte: the bytes are canonical.
    if (held) {
      if (rec.seq < held.seq || (rec.seq === held.seq && !held.bytes.equals(bytes))) {
        throw err('DHT_SEQ_STALE', `sequence number ${rec.seq} is not above the ${held.seq} held for this target`, { seq: rec.seq, current: held.seq });
      }
    } else {
      if (this.byTarget.size >= this.max) this.sweep();
      if (this.byTarget.size >= this.max) throw err('NAME_STORE_FULL', `this name mirror holds ${this.max} records`, { max: this.max });
    }
    // Re-inserted so that the map's order stays oldest-stored first (sweep stops early).
    // Buffer.alloc never hands out a slice of the shared pool: the copy is exactly the record.
    const own = Buffer.alloc(bytes.length);
    own.set(bytes);
    this.byTarget.delete(target);
    this.byTarget.set(target, { seq: rec.seq, bytes: own, expiresAt: now + this.ttlMs });
    return { target, seq: rec.seq };
  }

  /** The record bytes held for `target` (20 bytes as 40 hex), or null. */
  get(targetHex: string): Buffer | null {
    return this.live(targetHex.toLowerCase(), this.now())?.bytes ?? null;
  }

  private live(target: string, now: number): Held | null {
    const h = this.byTarget.get(target);
    if (!h) return null;
    if (h.expiresAt <= now) { this.byTarget.delete(target); return null; }
    return h;
  }

  /** Drop expired records (the map is in order of storing, so the first live one ends the sweep). */
  private sweep(): void {
    const now = this.now();
    for (const [t, h] of this.byTarget) {
      if (h.expiresAt > now) break;
      this.byTarget.delete(t);
    }
  }
}
