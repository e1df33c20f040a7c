// SPEC.md §9.4: the manifest and the root record (storage.proto), with every rule checked on decode:
// a decoded Manifest or Root is fully valid, and nothing downstream re-checks it.
import { err, type ErrorCode } from '../errors';
import { checkCoding, type Coding } from './coding';
import { CHUNK_OVERHEAD, type ChunkRef } from './encode';
import { bytes, CODING_SCHEME_RS_GF256, decodeProto, encodeProto, list, msg, pb, str, u32, u64, varint, type Loose } from './proto';
import { MAX_CHUNK_SIZE, SHARE_ID_BYTES } from './share';

export const MANIFEST_VERSION = 1;
export const DEFAULT_CONTENT_CLASS = 'encrypted-private';
export const MAX_TEXT_BYTES = 255;
/**
 * SPEC.md §9.4: the largest encoded Manifest a reader fetches (a Root's `manifest.size`), so a
 * hostile capability cannot make a reader fetch and hold an unbounded manifest. About 34·n + 7
 * bytes a chunk (211 at 4-of-6): files up to about 300 GiB with 1 MiB chunks, 4.8 TiB with 16 MiB chunks.
 */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const CONTENT_CLASS = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Where one blob's bytes are: its chunks in order. */
export interface Layout {
  size: number;
  chunkSize: number;
  coding: Coding;
  chunks: ChunkEntry[];
}

export interface ChunkEntry extends ChunkRef {
  encLen: number;
  shareIds: Buffer[];
}

export interface Manifest {
  version: typeof MANIFEST_VERSION;
  layout: Layout;
  contentType: string;
  name: string;
  contentClass: string;
}

export interface Root {
  version: typeof MANIFEST_VERSION;
  manifest: Layout;
  /** SPEC.md §9.18: the verify record's share id (absent in roots written before verify records). */
  verifyId?: Buffer;
}

const BAD = 'MANIFEST_MALFORMED';

/** Plaintext bytes of a chunk. */
export function plainLen(c: { encLen: number }): number {
  return c.encLen - CHUNK_OVERHEAD;
}

/** Plaintext offset at which each chunk starts (for resuming and ranges). */
export function chunkOffsets(layout: Layout): number[] {
  const out: number[] = [];
  let off = 0;
  for (const c of layout.chunks) {
    out.push(off);
    off += plainLen(c);
  }
  return out;
}

/** The rules of a Layout (SPEC.md §9.4); `code` is the error for a violation. */
export function checkLayout(l: Layout, code: ErrorCode = BAD): Layout {
  const coding = checkCoding(l.coding?.k, l.coding?.n, code);
  if (!Number.isInteger(l.chunkSize) || l.chunkSize < 1 || l.chunkSize > MAX_CHUNK_SIZE) {
    throw err(code, `chunk size must be 1..${MAX_CHUNK_SIZE}`, { chunkSize: l.chunkSize });
  }
  if (!Number.isSafeInteger(l.size) || l.size < 0) throw err(code, 'size must be a non-negative safe integer');
  let total = 0;
  l.chunks.forEach((c, i) => {
    const p = plainLen(c);
    if (!Number.isInteger(c.encLen) || p < 1 || p > l.chunkSize) throw err(code, `chunk ${i}: plaintext length must be 1..chunk size`, { index: i, encLen: c.encLen });
    if (c.shareIds.length !== coding.n) throw err(code, `chunk ${i}: needs exactly n = ${coding.n} share ids`, { index: i, ids: c.shareIds.length });
    for (const id of c.shareIds) if (id.length !== SHARE_ID_BYTES) throw err(code, `chunk ${i}: share ids are ${SHARE_ID_BYTES} bytes`, { index: i });
    total += p;
  });
  if (total !== l.size) throw err(code, 'chunk lengths do not add up to the size', { size: l.size, total });
  return { size: l.size, chunkSize: l.chunkSize, coding, chunks: l.chunks };
}

function textField(v: string, field: string, code: ErrorCode): string {
  if (Buffer.byteLength(v, 'utf8') > MAX_TEXT_BYTES) throw err(code, `${field} longer than ${MAX_TEXT_BYTES} bytes`);
  if (v.includes('\0')) throw err(code, `${field} contains NUL`);
  return v;
}

/** A name is a suggestion for a single path component: no separators, not "." or "..". */
function checkName(v: string, code: ErrorCode): string {
  textField(v, 'name', code);
  if (/[/\\]/.test(v) || v === '.' || v === '..') throw err(code, 'name must be a single file name');
  return v;
}

/** Whether `v` may be a manifest's name (SPEC.md §9.4): what checkName accepts. */
export function isManifestName(v: string): boolean {
  try { checkName(v, BAD); return true; } catch { return false; }
}

function checkContentClass(v: string, code: ErrorCode): string {
  if (!CONTENT_CLASS.test(v)) throw err(code, 'content class must match [a-z0-9][a-z0-9-]{0,63}', { contentClass: v });
  return v;
}

function layoutToProto(l: Layout): Loose {
  return {
    size: l.size,
    chunkSize: l.chunkSize,
    coding: { scheme: CODING_SCHEME_RS_GF256, k: l.coding.k, n: l.coding.n },
    chunks: l.chunks.map((c) => ({ encLen: c.encLen, shareIds: c.shareIds })),
  };
}

function layoutFromProto(v: unknown): Layout {
  const m = msg(v);
  if (!m) throw err(BAD, 'layout missing');
  const c = msg(m.coding);
  if (!c) throw err(BAD, 'coding missing');
  if (c.scheme !== CODING_SCHEME_RS_GF256) throw err(BAD, 'unknown coding scheme', { scheme: c.scheme });
  return checkLayout({
    size: u64(m.size, BAD, 'size'),
    chunkSize: u32(m.chunkSize, BAD, 'chunk_size'),
    coding: { k: u32(c.k, BAD, 'k'), n: u32(c.n, BAD, 'n') },
    chunks: list(m.chunks).map((e, i) => {
      const ce = msg(e);
      if (!ce) throw err(BAD, `chunk ${i} missing`);
      return { encLen: u32(ce.encLen, BAD, 'enc_len'), shareIds: list(ce.shareIds).map((id) => bytes(id, BAD, 'share_id')) };
    }),
  });
}

function checkVersion(v: unknown): typeof MANIFEST_VERSION {
  if (v !== MANIFEST_VERSION) throw err(BAD, 'unsupported manifest version', { version: v });
  return MANIFEST_VERSION;
}

/** Build a manifest, checking every field (a bad argument is STORAGE_BAD_MANIFEST_INPUT). */
export function makeManifest(layout: Layout, meta: { name?: string; contentType?: string; contentClass?: string } = {}): Manifest {
  const code = 'STORAGE_BAD_MANIFEST_INPUT';
  return {
    version: MANIFEST_VERSION,
    layout: checkLayout(layout, code),
    name: checkName(meta.name ?? '', code),
    contentType: textField(meta.contentType ?? '', 'content type', code),
    contentClass: checkContentClass(meta.contentClass ?? DEFAULT_CONTENT_CLASS, code),
  };
}

/**
 * SPEC.md §9.4, §9.5: the length of the encoded Manifest of a `size`-byte file cut into `chunkSize`
 * chunks of `coding`, with this metadata (checked as makeManifest checks it:
 * STORAGE_BAD_MANIFEST_INPUT), known before the file is read: every chunk entry but the last has
 * the same length, `1 + len(enc_len) + 34·n` bytes (n share ids of 32 bytes, each with its tag and
 * length) inside its own tag and length.
 */
export function manifestBytesFor(size: number, chunkSize: number, coding: Coding, meta: { name?: string; contentType?: string; contentClass?: string } = {}): number {
  const code = 'STORAGE_BAD_MANIFEST_INPUT';
  const layout: Layout = { size, chunkSize, coding: checkCoding(coding.k, coding.n, code), chunks: [] };
  const bare = encodeManifest({
    version: MANIFEST_VERSION, layout, name: checkName(meta.name ?? '', code),
    contentType: textField(meta.contentType ?? '', 'content type', code), contentClass: checkContentClass(meta.contentClass ?? DEFAULT_CONTENT_CLASS, code),
  }).length;
  const entry = (plain: number): number => {
    const inner = 1 + varint(plain + CHUNK_OVERHEAD).length + coding.n * (1 + varint(SHARE_ID_BYTES).length + SHARE_ID_BYTES);
    return 1 + varint(inner).length + inner;
  };
  const whole = Math.floor(size / chunkSize);
  const rest = size - whole * chunkSize;
  const chunks = whole * entry(chunkSize) + (rest > 0 ? entry(rest) : 0);
  // The layout's own length prefix grows with its chunks.
  const layoutLen = encodeProto(pb.Layout, layoutToProto(layout)).length;
  return bare - varint(layoutLen).length + varint(layoutLen + chunks).length + chunks;
}

export function encodeManifest(m: Manifest): Buffer {
  return encodeProto(pb.Manifest, {
    version: m.version, layout: layoutToProto(m.layout), contentType: m.contentType, name: m.name, contentClass: m.contentClass,
  });
}

/** Decode and check a manifest. Anything invalid → MANIFEST_MALFORMED. */
export function decodeManifest(b: Uint8Array): Manifest {
  const m = decodeProto(pb.Manifest, b, BAD);
  return {
    version: checkVersion(m.version),
    layout: layoutFromProto(m.layout),
    contentType: textField(str(m.contentType, BAD, 'content_type'), 'content type', BAD),
    name: checkName(str(m.name, BAD, 'name'), BAD),
    contentClass: checkContentClass(str(m.contentClass, BAD, 'content_class'), BAD),
  };
}

export function encodeRoot(r: Root): Buffer {
  return encodeProto(pb.Root, { version: r.version, manifest: layoutToProto(r.manifest), ...(r.verifyId ? { verifyId: r.verifyId } : {}) });
}

/** Decode and check a root record. Anything invalid → MANIFEST_MALFORMED. */
export function decodeRoot(b: Uint8Array): Root {
  const m = decodeProto(pb.Root, b, BAD);
  const verifyId = Object.prototype.hasOwnProperty.call(m, 'verifyId') ? bytes(m.verifyId, BAD, 'verify_id') : Buffer.alloc(0);
  if (verifyId.length !== 0 && verifyId.length !== 32) throw err(BAD, 'verify_id must be 32 bytes or absent');
  const manifest = layoutFromProto(m.manifest);
  if (manifest.size > MAX_MANIFEST_BYTES) throw err(BAD, `the manifest is larger than ${MAX_MANIFEST_BYTES} bytes`, { size: manifest.size });
  return { version: checkVersion(m.version), manifest, ...(verifyId.length ? { verifyId } : {}) };
}
