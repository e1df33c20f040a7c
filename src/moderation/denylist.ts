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

/** Sort and pack entries (the canonical form inside a policy). */
export function packEntries(entries: Iterable<Uint8Array>): Buffer {
  const list = [...new Set([...entries].map((e) => Buffer.from(e).toString('hex')))].sort();
  for (const h of list) if (h.length !== DENY_ENTRY_BYTES * 2) throw err('POLICY_BAD_ID', 'a denylist entry is 32 bytes');
  return Buffer.from(list.join(''), 'hex');
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

/**
 * An immutable set of denylist entries (a policy's whole list after its deltas). Lookups take the
 * raw id: one BLAKE2b of 48 bytes and one hash-set probe per request.
 */
export class DenySet {
  private readonly set: ReadonlySet<string>;

  private constructor(set: ReadonlySet<string>, private readonly entryOf: (id: Uint8Array) => Buffer) { this.set = set; }

  static readonly EMPTY = new DenySet(new Set(), denyEntry);

  /** A set of entries made with `entryOf` (denyEntry for denylists, allowEntry for allowlists). */
  static of(entries: Iterable<Uint8Array>, entryOf: (id: Uint8Array) => Buffer = denyEntry): DenySet {
    const s = new Set<string>();
    for (const e of entries) s.add(Buffer.from(e).toString('hex'));
    return new DenySet(s, entryOf);
  }

  get size(): number { return this.set.size; }

  /** True when the raw share or manifest id is listed (denied, for a denylist). */
  deniesId(id: Uint8Array): boolean {
    return this.set.size > 0 && this.set.has(this.entryOf(id).toString('hex'));
  }

  /** True when the raw id is listed (allowed, for an allowlist). */
  hasId(id: Uint8Array): boolean {
    return this.deniesId(id);
  }

  /** True when the (already double-hashed) entry is listed. */
  hasEntry(entry: Uint8Array): boolean {
    return this.set.has(Buffer.from(entry).toString('hex'));
  }

  /** A new set with `add` entries added and `remove` entries removed. */
  apply(add: Iterable<Uint8Array>, remove: Iterable<Uint8Array>): DenySet {
    const s = new Set(this.set);
    for (const e of remove) s.delete(Buffer.from(e).toString('hex'));
    for (const e of add) s.add(Buffer.from(e).toString('hex'));
    return new DenySet(s, this.entryOf);
  }

  /**
   * A mutable copy (the one copy of the set) for applying a run of deltas (SPEC.md §10.4 step 5);
   * `done()` hands it over as a new set without copying it (a change after that copies it again).
   */
  edit(): DenySetEdit {
    let s = new Set(this.set);
    let handedOver = false;
    const writable = (): Set<string> => {
      if (handedOver) { s = new Set(s); handedOver = false; }
      return s;
    };
    return {
      hasEntry: (e) => s.has(Buffer.from(e).toString('hex')),
      add: (e) => { writable().add(Buffer.from(e).toString('hex')); },
      remove: (e) => { writable().delete(Buffer.from(e).toString('hex')); },
      done: () => { handedOver = true; return new DenySet(s, this.entryOf); },
    };
  }

  /** Entries in ascending order (bytes). */
  entries(): Buffer[] {
    return [...this.set].sort().map((h) => Buffer.from(h, 'hex'));
  }
}
