// SPEC.md §9.5: storing a manifest "like a file" and naming it. The manifest is chunked, encrypted
// (kind MANIFEST) and erasure-coded; a root record locating those chunks is encrypted (kind ROOT) into
// one share, replicated, whose id is the manifest id: the capability names that id and the file key.
import { err } from '../errors';
import type { Coding } from './coding';
import { ChunkKind, decodeChunk, decryptChunk, encodeChunk, encryptChunk, type EncodedChunk, type Share } from './encode';
import { decodeManifest, decodeRoot, encodeManifest, encodeRoot, MANIFEST_VERSION, MAX_MANIFEST_BYTES, type Layout, type Manifest, type Root } from './manifest';
import { MAX_CHUNK_SIZE, MAX_SHARE_BYTES, shareId, verifyShare } from './share';

export interface SealedManifest {
  /** BLAKE2b-256 of the root share: the `<manifest id>` of the capability. */
  manifestId: Buffer;
  /** The root share (id = manifestId); stored whole on several nodes (SPEC.md §9.7). */
  root: Share;
  /** Where the manifest's own chunks are. */
  layout: Layout;
  /** The manifest's chunks, in order, to be placed and stored like data chunks. */
  chunks: EncodedChunk[];
}

/** Manifest chunks default to 1 MiB whatever the file's chunk size, so the root record stays small. */
export const DEFAULT_MANIFEST_CHUNK_SIZE = 1024 * 1024;

/** Encrypt and encode a manifest. Its chunks use `coding` (default: the file's) and `chunkSize`. */
export function sealManifest(fileKey: Uint8Array, manifest: Manifest, opts: { coding?: Coding; chunkSize?: number; verifyId?: Buffer } = {}): SealedManifest {
  const coding = opts.coding ?? manifest.layout.coding;
  const chunkSize = opts.chunkSize ?? DEFAULT_MANIFEST_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) throw err('STORAGE_BAD_MANIFEST_INPUT', `chunk size must be 1..${MAX_CHUNK_SIZE}`);
  const bytes = encodeManifest(manifest);
  // SPEC.md §9.5: no reader fetches a manifest over MAX_MANIFEST_BYTES (§9.4).
  if (bytes.length > MAX_MANIFEST_BYTES) throw err('STORAGE_MANIFEST_TOO_LARGE', `the manifest takes ${bytes.length} bytes, more than ${MAX_MANIFEST_BYTES}; use a larger chunk size`, { size: bytes.length });
  const chunks: EncodedChunk[] = [];
  for (let i = 0, off = 0; off < bytes.length; i++, off += chunkSize) {
    chunks.push(encodeChunk(fileKey, i, bytes.subarray(off, off + chunkSize), coding, ChunkKind.MANIFEST));
  }
  const layout: Layout = {
    size: bytes.length, chunkSize, coding,
    chunks: chunks.map((c) => ({ encLen: c.encLen, shareIds: c.shares.map((s) => s.id) })),
  };
  const rootBytes = encryptChunk(fileKey, 0, encodeRoot({ version: MANIFEST_VERSION, manifest: layout, ...(opts.verifyId ? { verifyId: opts.verifyId } : {}) }), ChunkKind.ROOT);
  if (rootBytes.length > MAX_SHARE_BYTES) throw err('STORAGE_MANIFEST_TOO_LARGE', 'root record does not fit in one share; use a larger chunk size');
  const manifestId = shareId(rootBytes);
  return { manifestId, root: { id: manifestId, bytes: rootBytes }, layout, chunks };
}

/**
 * Open a fetched root share: hash must equal the manifest id (SHARE_HASH_MISMATCH), it must decrypt
 * under the file key (CHUNK_AUTH_FAILED: wrong key) and decode (MANIFEST_MALFORMED). Returns where
 * the manifest's chunks are.
 */
export function openRoot(fileKey: Uint8Array, manifestId: Uint8Array, rootShare: Uint8Array): Layout {
  return openRootRecord(fileKey, manifestId, rootShare).manifest;
}

/** openRoot, returning the whole root record (with the verify record's id, SPEC.md §9.18). */
export function openRootRecord(fileKey: Uint8Array, manifestId: Uint8Array, rootShare: Uint8Array): Root {
  verifyShare(manifestId, rootShare);
  return decodeRoot(decryptChunk(fileKey, 0, rootShare, ChunkKind.ROOT));
}

/** Decode manifest chunk `index` from its shares (any k good ones), like decodeChunk for data. */
export function decodeManifestChunk(fileKey: Uint8Array, layout: Layout, index: number, shares: ReadonlyArray<Uint8Array | null | undefined>): Buffer {
  return decodeChunk(fileKey, index, shares, layout.coding, layout.chunks[index], ChunkKind.MANIFEST);
}

/** Join the manifest's decrypted chunks and decode them (MANIFEST_MALFORMED on anything wrong). */
export function openManifest(layout: Layout, plaintextChunks: ReadonlyArray<Uint8Array>): Manifest {
  const bytes = Buffer.concat(plaintextChunks);
  if (bytes.length !== layout.size) throw err('MANIFEST_MALFORMED', 'manifest chunks do not add up to the manifest size', { size: layout.size, got: bytes.length });
  return decodeManifest(bytes);
}
