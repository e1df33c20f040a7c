// SPEC.md §10.3: double-hashed denylists. A share id (or a manifest id, which is the id of the
// root share) is already a hash of content: BLAKE2b-256(share bytes) (SPEC.md §9.1). A policy
// lists a second hash of it,
//
//     entry(id) = BLAKE2b-256("bitcloud-deny-v1" | id)
//
// so the published list does not advertise what it blocks: fetching content needs the id, and
// the id cannot be recovered from the entry. A node that is asked for an id computes its entry
// and looks it up. This is the construction of the IPFS compact denylist (hash of the CID).
import { err, type ErrorCode } from '../errors';
import { blake2b } from '../crypto/primitives';
import { base32Decode, parseCapability } from '../storage/capability';

export const DENY_ENTRY_BYTES = 32;
const LABEL = Buffer.from('bitcloud-deny-v1', 'ascii');
const HEX64 = /^[0-9a-f]{64}$/;
const BASE32_52 = /^[a-z2-7]{52}$/;

/** The denylist entry of a 32-byte share or manifest id. */
export function denyEntry(id: Uint8Array): Buffer {
  if (id.length !== 32) throw err('POLICY_BAD_ID', `a share or manifest id is 32 bytes, got ${id.length}`);
  return blake2b([LABEL, id], DENY_ENTRY_BYTES);
}

const ALLOW_LABEL = Buffer.from('bitcloud-allow-v1', 'ascii');

/** SPEC.md §10.3.2: the allowlist entry of a share id of an approved file. */
export function allowEntry(id: Uint8Array): Buffer {
  if (id.length !== 32) throw err('POLICY_BAD_ID', `a share or manifest id is 32 bytes, got ${id.length}`);
  return blake2b([ALLOW_LABEL, id], DENY_ENTRY_BYTES);
}

/**
 * Read what a moderator wants to deny: a share or manifest id as 64 lowercase hex, a manifest id
 * in the 52-character base32 of capabilities, or a whole `bitcloud:` capability (only its
 * manifest id is used; the key after `#` is dropped at once and never stored or printed).
 * Anything else is POLICY_BAD_ID.
 */
export function parseDenyTarget(text: string): Buffer {
  const t = text.trim();
  if (HEX64.test(t)) return Buffer.from(t, 'hex');
  if (BASE32_52.test(t)) return base32Decode(t, 'POLICY_BAD_ID');
  if (t.startsWith('bitcloud:')) {
    try {
      const cap = parseCapability(t);
      cap.fileKey.fill(0);
      return cap.manifestId;
    } catch {
      throw err('POLICY_BAD_ID', 'not a valid bitcloud: capability');
    }
  }
  throw err('POLICY_BAD_ID', 'expected a 64-hex share/manifest id, a 52-char base32 manifest id, or a bitcloud: capability');
}

/** Concatenated 32-byte entries → sorted distinct list check. Used by the policy decoder. */
export function splitEntries(packed: Buffer, field: string, code: ErrorCode = 'POLICY_MALFORMED'): Buffer[] {
  if (packed.length % DENY_ENTRY_BYTES !== 0) throw err(code, `${field}: length is not a multiple of ${DENY_ENTRY_BYTES}`, { field });
  const out: Buffer[] = [];
  for (let off = 0; off < packed.length; off += DENY_ENTRY_BYTES) {
    const e = packed.subarray(off, off + DENY_ENTRY_BYTES);
    if (out.length > 0 && Buffer.compare(out[out.length - 1], e) >= 0) throw err(code, `${field}: entries must be ascending and distinct`, { field });
    out.push(e);
  }
  return out;
}

/** A mutable copy of a DenySet (DenySet.edit). */
export interface DenySetEdit {
  /** True when the (already double-hashed) entry is listed. */
  hasEntry(entry: Uint8Array): boolean;
  add(entry: Uint8Array): void;
  remove(entry: Uint8Array): void;
  /** The set as edited, immutable (later changes to the copy do not reach it). */
  done(): DenySet;
}

const W = DENY_ENTRY_BYTES;

function checkWidth(e: Uint8Array): void {
  if (e.length !== W) throw err('POLICY_BAD_ID', `a denylist entry is ${W} bytes, got ${e.length}`);
}

/** Binary search of `e` in `keys` (sorted, distinct, W bytes each): its index, or -1. */
function search(keys: Buffer, e: Uint8Array): number {
  if (e.length !== W) return -1;
  let lo = 0, hi = keys.length / W - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    // Buffer.compare of keys[mid] with e, without making a subarray per step.
    const c = keys.compare(e, 0, W, mid * W, mid * W + W);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

/** Sort the W-byte keys of `buf` and drop duplicates; returns `buf` itself when already canonical. */
function canonical(buf: Buffer): Buffer {
  const n = buf.length / W;
  let sorted = true;
  // buf.compare(target, tStart, tEnd, sStart, sEnd) is the sign of source − target: entry i must
  // be above entry i − 1.
  for (let i = 1; i < n && sorted; i++) if (buf.compare(buf, (i - 1) * W, i * W, i * W, (i + 1) * W) <= 0) sorted = false;
  if (sorted) return buf;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => buf.compare(buf, b * W, b * W + W, a * W, a * W + W));
  const out = Buffer.allocUnsafeSlow(n * W);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const at = order[i] * W;
    if (m > 0 && out.compare(buf, at, at + W, (m - 1) * W, m * W) === 0) continue;
    buf.copy(out, m * W, at, at + W);
    m++;
  }
  if (m === n) return out;
  const exact = Buffer.allocUnsafeSlow(m * W);
  out.copy(exact, 0, 0, m * W);
  return exact;
}

/**
 * Sort and pack entries (the canonical form inside a policy): W-byte keys, ascending and distinct.
 * An entry that is not 32 bytes is POLICY_BAD_ID.
 */
export function packEntries(entries: Iterable<Uint8Array>): Buffer {
  const list = Array.isArray(entries) ? entries as Uint8Array[] : [...entries];
  // allocUnsafeSlow: a buffer of its own, never a slice of the shared pool that small
  // allocations would keep alive.
  const buf = Buffer.allocUnsafeSlow(list.length * W);
  list.forEach((e, i) => { checkWidth(e); buf.set(e, i * W); });
  return canonical(buf);
}

/**
 * An immutable set of denylist entries (a policy's whole list after its deltas). SPEC.md §10.7.1:
 * the entries are held as ONE buffer of 32-byte keys, sorted and distinct, built once when a state
 * is made; a lookup is a binary search in it. A set costs its entries' bytes (32 per entry) and
 * not a JS object per entry (a hex string in a Set cost about 100 bytes per entry). Lookups take
 * the raw id: one BLAKE2b of 48 bytes and one binary search (about 20 compares for a million
 * entries) per request.
 */
export class DenySet {
  /** size × 32 bytes: the entries, ascending (bytewise) and distinct. Never changed. */
  private readonly keys: Buffer;

  private constructor(keys: Buffer, private readonly entryOf: (id: Uint8Array) => Buffer) { this.keys = keys; }

  static readonly EMPTY = new DenySet(Buffer.alloc(0), denyEntry);

  /**
   * A set of entries made with `entryOf` (denyEntry for denylists, allowEntry for allowlists).
   * Duplicates count once; an entry that is not 32 bytes is POLICY_BAD_ID.
   */
  static of(entries: Iterable<Uint8Array>, entryOf: (id: Uint8Array) => Buffer = denyEntry): DenySet {
    return new DenySet(packEntries(entries), entryOf);
  }

  get size(): number { return this.keys.length / W; }

  /** True when the raw share or manifest id is listed (denied, for a denylist). */
  deniesId(id: Uint8Array): boolean {
    return this.keys.length > 0 && search(this.keys, this.entryOf(id)) >= 0;
  }

  /** True when the raw id is listed (allowed, for an allowlist). */
  hasId(id: Uint8Array): boolean {
    return this.deniesId(id);
  }

  /** True when the (already double-hashed) entry is listed. */
  hasEntry(entry: Uint8Array): boolean {
    return search(this.keys, entry) >= 0;
  }

  /** A new set with `add` entries added and `remove` entries removed. */
  apply(add: Iterable<Uint8Array>, remove: Iterable<Uint8Array>): DenySet {
    const e = this.edit();
    for (const x of remove) e.remove(x);
    for (const x of add) e.add(x);
    return e.done();
  }

  /**
   * A mutable copy for applying a run of deltas (SPEC.md §10.4 step 5): the changes are kept
   * beside this set (entries added that it lacks, entries removed that it has), and `done()`
   * merges them with it into a new packed set, once (a copy made with no change shares this one).
   */
  edit(): DenySetEdit {
    const base = this.keys;
    const added = new Set<string>();
    const removed = new Set<string>();
    const hex = (e: Uint8Array): string => Buffer.from(e.buffer, e.byteOffset, e.length).toString('hex');
    const has = (e: Uint8Array): boolean => {
      const h = hex(e);
      return added.has(h) || (!removed.has(h) && search(base, e) >= 0);
    };
    return {
      hasEntry: has,
      add: (e) => {
        checkWidth(e);
        const h = hex(e);
        if (search(base, e) >= 0) removed.delete(h); else added.add(h);
      },
      remove: (e) => {
        const h = hex(e);
        if (search(base, e) >= 0) removed.add(h); else added.delete(h);
      },
      done: () => {
        if (added.size === 0 && removed.size === 0) return new DenySet(base, this.entryOf);
        const plus = Buffer.from([...added].sort().join(''), 'hex');
        const out = Buffer.allocUnsafeSlow(base.length - removed.size * W + plus.length);
        let i = 0, j = 0, o = 0;
        while (i < base.length || j < plus.length) {
          // Merge of two ascending runs; an entry of `base` that was removed is skipped.
          if (j >= plus.length || (i < base.length && base.compare(plus, j, j + W, i, i + W) < 0)) {
            if (removed.size === 0 || !removed.has(base.toString('hex', i, i + W))) { base.copy(out, o, i, i + W); o += W; }
            i += W;
          } else {
            plus.copy(out, o, j, j + W); o += W; j += W;
          }
        }
        return new DenySet(out, this.entryOf);
      },
    };
  }

  /** Entries in ascending order (bytes); copies, so that changing one leaves the set as it was. */
  entries(): Buffer[] {
    const out: Buffer[] = [];
    for (let off = 0; off < this.keys.length; off += W) out.push(Buffer.from(this.keys.subarray(off, off + W)));
    return out;
  }
}
