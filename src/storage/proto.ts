// The protobuf types of storage.proto (SPEC.md §9), loaded once. Every decode goes through
// `decodeProto`, which turns any protobufjs failure into one BitcloudError code chosen by the caller.
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { err, isBitcloudError, type ErrorCode } from '../errors';

const root = protobuf.loadSync(fileURLToPath(new URL('./storage.proto', import.meta.url))).resolveAll();

function type(name: string): protobuf.Type {
  return root.lookupType(`bitcloud.storage.${name}`);
}

export const pb = {
  Manifest: type('Manifest'),
  Root: type('Root'),
  Layout: type('Layout'),
  Request: type('Request'),
  Response: type('Response'),
  PutShare: type('PutShare'),
  GetOk: type('GetOk'),
};

/** A protobuf varint (the length prefix of a length-delimited field). */
export function varint(n: number): Buffer {
  const u8 = protobuf.Writer.create().uint32(n).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.length);
}

export const CODING_SCHEME_RS_GF256 = 1;

/** A decoded message, as loosely typed as protobufjs gives it: callers check every field they read. */
export type Loose = Record<string, unknown>;

export function decodeProto(t: protobuf.Type, bytes: Uint8Array, code: ErrorCode): Loose {
  try {
    return t.decode(bytes) as unknown as Loose;
  } catch (e) {
    // protobufjs throws Error/RangeError (and can overflow the stack on nested groups): all map to `code`.
    throw err(code, `not a valid ${t.name} message`, { reason: e instanceof Error ? e.message : String(e) });
  }
}

/** The wire type a field of a message must arrive with (SPEC.md §9.6.2: as storage.proto declares it). */
function wireTypeOf(f: protobuf.Field): number {
  if (f.resolvedType instanceof protobuf.Type) return 2;
  if (f.resolvedType instanceof protobuf.Enum) return 0;
  return (protobuf.types.basic as Record<string, number>)[f.type];
}

/**
 * Check a message of type `t` before it is decoded, reading it with protobufjs's Reader and decoding
 * none of it: every field `t` declares comes with its declared wire type (a repeated scalar also
 * packed) and at most `most(field)` times, where each entry of a repeated field counts once (a
 * packed run at least once), and the members of a oneof count together, at most once; each message
 * field is checked the same way in turn. Fields `t` does not declare are skipped, as a decode skips
 * them. Top-level fields are shown to `visit` (its field number and, for a varint, its value as a
 * uint32, else null) before they are counted or their body read; `visit` may refuse the message by throwing a
 * BitcloudError, which stops the walk and is passed on as it is. A breach, or a message that does not
 * parse → `code`.
 * The work is one step per field, and nothing is allocated per field.
 */
export function checkFields(t: protobuf.Type, bytes: Uint8Array, code: ErrorCode, most: (f: protobuf.Field) => number, visit?: (field: number, varint: number | null) => void): void {
  const r = protobuf.Reader.create(bytes);
  let breach: string | undefined;
  try {
    breach = checkMessage(t, r, bytes.length, most, visit);
  } catch (e) {
    if (isBitcloudError(e)) throw e;
    throw err(code, `not a valid ${t.name} message`, { reason: e instanceof Error ? e.message : String(e) });
  }
  if (breach !== undefined) throw err(code, `${t.name}: ${breach}`);
}

function checkMessage(t: protobuf.Type, r: protobuf.Reader, end: number, most: (f: protobuf.Field) => number, visit?: (field: number, varint: number | null) => void): string | undefined {
  const counts = new Map<protobuf.ReflectionObject, number>();
  while (r.pos < end) {
    const tag = r.uint32();
    const wireType = tag & 7;
    const f = t.fieldsById[tag >>> 3] as protobuf.Field | undefined;
    const packed = f !== undefined && f.repeated && wireType === 2 && wireTypeOf(f) !== 2;
    let start = r.pos;
    // Shown to `visit` before its body is read (a group's body is walked to skip it).
    if (wireType === 0) { const v = r.uint32(); visit?.(tag >>> 3, v); }
    else {
      visit?.(tag >>> 3, null);
      if (wireType === 2) { const len = r.uint32(); start = r.pos; r.skip(len); }
      else r.skipType(wireType);
    }
    if (f === undefined) continue;
    if (wireType !== wireTypeOf(f) && !packed) return `${f.name} has wire type ${wireType}`;
    // A packed run counts its entries, and at least one; each other occurrence counts one.
    let entries = 1;
    if (packed) {
      const p = protobuf.Reader.create(r.buf.subarray(start, r.pos));
      for (entries = 0; p.pos < p.len && entries <= most(f); entries++) p.skipType(wireTypeOf(f));
      entries = Math.max(entries, 1);
    }
    const key = f.partOf ?? f;
    const n = (counts.get(key) ?? 0) + entries;
    counts.set(key, n);
    if (n > (f.partOf ? 1 : most(f))) return `${key.name} ${f.partOf ? 'names more than one field' : 'appears too often'}`;
    if (f.resolvedType instanceof protobuf.Type) {
      const inner = protobuf.Reader.create(r.buf.subarray(start, r.pos));
      const breach = checkMessage(f.resolvedType, inner, inner.len, most);
      if (breach !== undefined) return `${f.name}: ${breach}`;
    }
  }
  return undefined;
}

export function encodeProto(t: protobuf.Type, value: Loose): Buffer {
  const u8 = t.encode(value).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.length);
}

/** A uint64 field as a JS number; values beyond 2^53 − 1 are refused rather than rounded. */
export function u64(v: unknown, code: ErrorCode, field: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw err(code, `${field} is not a safe non-negative integer`);
    return v;
  }
  const l = v as { low?: unknown; high?: unknown } | null | undefined;
  if (l && typeof l === 'object' && typeof l.low === 'number' && typeof l.high === 'number') {
    // A protobufjs Long (unsigned): refuse rather than round anything past 2^53 − 1.
    if (l.high >>> 0 > 0x1fffff) throw err(code, `${field} exceeds 2^53 - 1`);
    return (l.high >>> 0) * 0x1_0000_0000 + (l.low >>> 0);
  }
  if (v === undefined || v === null) return 0;
  throw err(code, `${field} is not an integer`);
}

export function u32(v: unknown, code: ErrorCode, field: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw err(code, `${field} is not a uint32`);
  return v;
}

export function bytes(v: unknown, code: ErrorCode, field: string): Buffer {
  // protobufjs gives an absent or empty bytes field as an empty array (its default), not a Buffer.
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) return Buffer.alloc(0);
  if (!(v instanceof Uint8Array)) throw err(code, `${field} is not bytes`);
  return Buffer.from(v.buffer, v.byteOffset, v.length);
}

export function str(v: unknown, code: ErrorCode, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw err(code, `${field} is not a string`);
  return v;
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function msg(v: unknown): Loose | undefined {
  return v !== null && typeof v === 'object' ? (v as Loose) : undefined;
}
