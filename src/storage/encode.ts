// SPEC.md §9.2–9.3: one chunk → encrypted chunk → n shares, and back from any k of them.
// Pure and chunk-at-a-time, so a file of any size streams through a fixed amount of memory.
import { err, isBitcloudError } from '../errors';
import { blake2b, xchachaDecrypt, xchachaEncrypt, XCHACHA_KEY_BYTES, XCHACHA_NONCE_BYTES, XCHACHA_TAG_BYTES } from '../crypto/primitives';
import type { Coding } from './coding';
import { erasureEncodeInPlace, erasureReconstruct, shareSizeFor } from './erasure';
import { checkShare, MAX_CHUNK_SIZE, shareId } from './share';

export const FILE_KEY_BYTES = XCHACHA_KEY_BYTES;
/** Encrypted chunk = nonce[24] | ciphertext | tag[16] (SPEC.md §9.2). */
export const CHUNK_OVERHEAD = XCHACHA_NONCE_BYTES + XCHACHA_TAG_BYTES;

/** What a chunk belongs to; part of the nonce derivation and the AD so one can never pass for another. */
export const ChunkKind = { DATA: 1, MANIFEST: 2, ROOT: 3, VERIFY: 4 } as const;
export type ChunkKind = (typeof ChunkKind)[keyof typeof ChunkKind];

const NONCE_KEY_LABEL = Buffer.from('bitcloud-storage-nonce-key-v1', 'ascii');
const AEAD_KEY_LABEL = Buffer.from('bitcloud-storage-aead-key-v1', 'ascii');
const AD_LABEL = Buffer.from('bitcloud-chunk-v1', 'ascii');

export interface Share {
  /** BLAKE2b-256(bytes). */
  id: Buffer;
  bytes: Buffer;
}

export interface EncodedChunk {
  /** Shares 0..n−1 in order (0..k−1 data, k..n−1 parity). They are views into one buffer. */
  shares: Share[];
  /** Length of the encrypted chunk (plaintext + CHUNK_OVERHEAD); recorded in the manifest. */
  encLen: number;
}

/** The two per-file subkeys (SPEC.md §9.2): the file key itself is never used directly. */
function subkeys(fileKey: Uint8Array): { nonceKey: Buffer; aeadKey: Buffer } {
  if (fileKey.length !== FILE_KEY_BYTES) throw err('STORAGE_KEY_INVALID', `file key must be ${FILE_KEY_BYTES} bytes`);
  return { nonceKey: blake2b(NONCE_KEY_LABEL, 32, fileKey), aeadKey: blake2b(AEAD_KEY_LABEL, 32, fileKey) };
}

/** "bitcloud-chunk-v1" | kind u8 | index u64 BE: binds the chunk to its place in its file. */
function chunkHeader(kind: ChunkKind, index: number): Buffer {
  if (!Number.isSafeInteger(index) || index < 0) throw err('STORAGE_INTERNAL', 'chunk index must be a non-negative safe integer', { index });
  const h = Buffer.alloc(AD_LABEL.length + 9);
  AD_LABEL.copy(h, 0);
  h.writeUInt8(kind, AD_LABEL.length);
  h.writeBigUInt64BE(BigInt(index), AD_LABEL.length + 1);
  return h;
}

function checkChunkSize(plaintext: Uint8Array): void {
  if (plaintext.length > MAX_CHUNK_SIZE) throw err('STORAGE_CHUNK_TOO_LARGE', `chunk larger than ${MAX_CHUNK_SIZE} bytes`, { len: plaintext.length });
}

/** Encrypt one chunk: nonce = BLAKE2b-192(nonceKey; AD | plaintext), a synthetic nonce (SPEC.md §9.2). */
export function encryptChunk(fileKey: Uint8Array, index: number, plaintext: Uint8Array, kind: ChunkKind = ChunkKind.DATA): Buffer {
  checkChunkSize(plaintext);
  const out = Buffer.allocUnsafe(plaintext.length + CHUNK_OVERHEAD);
  encryptChunkInto(out, fileKey, index, plaintext, kind);
  return out;
}

/** encryptChunk, written into `out` (exactly plaintext + CHUNK_OVERHEAD bytes): no buffer of its own. */
function encryptChunkInto(out: Buffer, fileKey: Uint8Array, index: number, plaintext: Uint8Array, kind: ChunkKind): void {
  const { nonceKey, aeadKey } = subkeys(fileKey);
  const ad = chunkHeader(kind, index);
  const nonce = blake2b([ad, plaintext], XCHACHA_NONCE_BYTES, nonceKey);
  nonce.copy(out, 0);
  xchachaEncrypt(aeadKey, nonce, plaintext, ad, out.subarray(XCHACHA_NONCE_BYTES));
}

/** Decrypt one encrypted chunk. A wrong key, index, kind or any altered byte → CHUNK_AUTH_FAILED. */
export function decryptChunk(fileKey: Uint8Array, index: number, encrypted: Uint8Array, kind: ChunkKind = ChunkKind.DATA): Buffer {
  const { aeadKey } = subkeys(fileKey);
  const ad = chunkHeader(kind, index);
  if (encrypted.length < CHUNK_OVERHEAD) throw err('CHUNK_AUTH_FAILED', 'encrypted chunk shorter than nonce and tag', { index });
  try {
    return xchachaDecrypt(aeadKey, encrypted.subarray(0, XCHACHA_NONCE_BYTES), encrypted.subarray(XCHACHA_NONCE_BYTES), ad);
  } catch (e) {
    if (isBitcloudError(e, 'CRYPTO_AEAD_FAILED')) throw err('CHUNK_AUTH_FAILED', 'chunk did not authenticate (wrong key, or shares from another chunk)', { index, kind });
    throw e;
  }
}

/**
 * Encrypt a chunk and erasure-code it into n shares, each named by its hash. The encrypted chunk is
 * zero-padded to k·ceil(encLen/k) bytes; the padding is implied by encLen and is never sent apart.
 */
export function encodeChunk(fileKey: Uint8Array, index: number, plaintext: Uint8Array, coding: Coding, kind: ChunkKind = ChunkKind.DATA): EncodedChunk {
  checkChunkSize(plaintext);
  const encLen = plaintext.length + CHUNK_OVERHEAD;
  const size = shareSizeFor(encLen, coding.k);
  // One buffer for everything: the chunk is encrypted straight into the data shares' place (a
  // fresh buffer per step cost more in page faults and zeroing than the cipher itself).
  const buf = Buffer.allocUnsafe(coding.n * size);
  encryptChunkInto(buf.subarray(0, encLen), fileKey, index, plaintext, kind);
  buf.fill(0, encLen, coding.k * size);
  erasureEncodeInPlace(coding, buf, size);
  const shares: Share[] = [];
  for (let i = 0; i < coding.n; i++) {
    const bytes = buf.subarray(i * size, (i + 1) * size);
    shares.push({ id: shareId(bytes), bytes });
  }
  return { shares, encLen };
}

/** What the manifest says about one chunk. */
export interface ChunkRef {
  encLen: number;
  shareIds: ReadonlyArray<Uint8Array>;
}

/**
 * Which of the fetched shares are usable: right length and hashing to the id the manifest names.
 * A share that fails is reported in `rejected` and treated as missing (SPEC.md §9.3).
 */
export function screenShares(ref: ChunkRef, coding: Coding, shares: ReadonlyArray<Uint8Array | null | undefined>): { good: (Uint8Array | null)[]; rejected: number[] } {
  if (ref.shareIds.length !== coding.n || shares.length !== coding.n) {
    throw err('STORAGE_INTERNAL', 'need one share slot and one id per share', { ids: ref.shareIds.length, slots: shares.length, n: coding.n });
  }
  const size = shareSizeFor(ref.encLen, coding.k);
  const rejected: number[] = [];
  const good = shares.map((s, i) => {
    if (s === null || s === undefined) return null;
    if (s.length !== size || !checkShare(ref.shareIds[i], s)) {
      rejected.push(i);
      return null;
    }
    return s;
  });
  return { good, rejected };
}

/**
 * Rebuild a chunk's plaintext from any k good shares of `shares` (null = not fetched). Each share is
 * hash-checked first; a mismatching one counts as missing. Fewer than k good → CHUNK_TOO_FEW_SHARES
 * (detail.rejected lists the corrupt indices, so the caller can fetch others); AEAD failure →
 * CHUNK_AUTH_FAILED. `screened`: the caller already checked every share it passes against `ref`
 * (length and hash, as screenShares does), so they are not hashed a second time.
 */
export function decodeChunk(
  fileKey: Uint8Array, index: number, shares: ReadonlyArray<Uint8Array | null | undefined>,
  coding: Coding, ref: ChunkRef, kind: ChunkKind = ChunkKind.DATA, opts: { screened?: boolean } = {},
): Buffer {
  if (ref.encLen < CHUNK_OVERHEAD) throw err('STORAGE_INTERNAL', 'encrypted length below the chunk overhead', { encLen: ref.encLen });
  const { good, rejected } = opts.screened ? { good: shares.map((s) => s ?? null), rejected: [] as number[] } : screenShares(ref, coding, shares);
  let data: Buffer;
  try {
    data = erasureReconstruct(coding, good, shareSizeFor(ref.encLen, coding.k));
  } catch (e) {
    if (isBitcloudError(e, 'CHUNK_TOO_FEW_SHARES')) throw err('CHUNK_TOO_FEW_SHARES', e.message.replace(/^[A-Z_]+: /, ''), { ...e.detail, index, rejected });
    throw e;
  }
  return decryptChunk(fileKey, index, data.subarray(0, ref.encLen), kind);
}
