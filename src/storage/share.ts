// SPEC.md §9.1: a share is named by BLAKE2b-256 of its bytes, so a storage node checks what it
// stores without any key, and a reader checks what it fetched against the manifest.
import { err, type ErrorCode } from '../errors';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Blake2bHasher, blake2b, constantTimeEqual } from '../crypto/primitives';

export const SHARE_ID_BYTES = 32;
/** Largest chunk plaintext (SPEC.md §9.2). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/**
 * Largest share: a whole maximal encrypted chunk (k = 1), its plaintext plus the 24-byte nonce and
 * 16-byte tag (SPEC.md §9.1, §9.2). Nodes refuse anything larger.
 */
export const MAX_SHARE_BYTES = MAX_CHUNK_SIZE + 40;

const HEX_ID = /^[0-9a-f]{64}$/;

export function shareId(bytes: Uint8Array): Buffer {
  return blake2b(bytes, SHARE_ID_BYTES);
}

/** True when `bytes` hash to `id` (a wrong-length id never matches). */
export function checkShare(id: Uint8Array, bytes: Uint8Array): boolean {
  return id.length === SHARE_ID_BYTES && constantTimeEqual(shareId(bytes), id);
}

/**
 * Bytes hashed between two turns of the event loop when a node checks a share it read
 * (SPEC.md §9.17.2): a 16 MiB share is hashed in 16 pieces, and other requests are served
 * between them.
 */
export const HASH_PIECE_BYTES = 1 << 20;

/** Let the event loop run (I/O, other requests) before going on. */
export function yieldToLoop(): Promise<void> {
  return nextTurn();
}

/** Feed `bytes` to `h` in pieces of HASH_PIECE_BYTES, letting the event loop run between them. */
export async function hashInPieces(h: Blake2bHasher, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length; at += HASH_PIECE_BYTES) {
    if (at > 0) await yieldToLoop();
    h.update(bytes.subarray(at, Math.min(bytes.length, at + HASH_PIECE_BYTES)));
  }
}

/** checkShare, hashing in pieces (hashInPieces): what a node runs on a share it read from disk. */
export async function checkShareInPieces(id: Uint8Array, bytes: Uint8Array): Promise<boolean> {
  if (id.length !== SHARE_ID_BYTES) return false;
  const h = new Blake2bHasher(SHARE_ID_BYTES);
  await hashInPieces(h, bytes);
  return constantTimeEqual(h.digest(), id);
}

/** Throws SHARE_HASH_MISMATCH unless `bytes` hash to `id`. */
export function verifyShare(id: Uint8Array, bytes: Uint8Array): void {
  if (!checkShare(id, bytes)) throw err('SHARE_HASH_MISMATCH', 'share bytes do not hash to the share id', { id: Buffer.from(id).toString('hex') });
}

/** The textual form of a share id: 64 lowercase hex characters (used in paths and logs). */
export function shareIdHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');
}

/** Parse a share id given as 32 bytes or as 64 lowercase hex characters. Throws `code`. */
export function parseShareId(v: unknown, code: ErrorCode = 'STORAGE_BAD_REQUEST'): Buffer {
  if (typeof v === 'string') {
    if (!HEX_ID.test(v)) throw err(code, 'share id must be 64 lowercase hex characters');
    return Buffer.from(v, 'hex');
  }
  if (v instanceof Uint8Array && v.length === SHARE_ID_BYTES) return Buffer.from(v.buffer, v.byteOffset, v.length);
  throw err(code, `share id must be ${SHARE_ID_BYTES} bytes`);
}
