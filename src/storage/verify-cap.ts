// SPEC.md §9.18: the verify/repair capability. It is derived one way from the read capability:
// the verify key is a keyed hash of the file key, so its holder can open the file's verify record
// (share ids, sizes, audit roots, k/n) and check, renew and rebuild every share — but can never
// recover the file key, decrypt a chunk, or read the manifest.
import { err } from '../errors';
import { blake2b } from '../crypto/primitives';
import { base32Decode, base32Encode } from './capability';
import { ChunkKind, decryptChunk, encryptChunk } from './encode';
import { MAX_SHARE_BYTES, SHARE_ID_BYTES, shareId, verifyShare } from './share';
import { decodeVerifyRecord, encodeVerifyRecord, type VerifyChunk, type VerifyRecord } from '../wire/verify-record';
import { auditRoot } from './audit';
import type { Manifest } from './manifest';
import { sealManifest, type SealedManifest } from './seal';

export const VERIFY_CAP_SCHEME = 'bitcloud-verify:';
const VERIFY_KEY_LABEL = Buffer.from('bitcloud-storage-verify-key-v1');

export interface VerifyCapability {
  manifestId: Buffer;
  verifyId: Buffer;
  verifyKey: Buffer;
}

/** verify_key = BLAKE2b-32(key = K; "bitcloud-storage-verify-key-v1") (SPEC.md §9.18.1). */
export function deriveVerifyKey(fileKey: Uint8Array): Buffer {
  if (fileKey.length !== 32) throw err('STORAGE_KEY_INVALID', 'file key must be 32 bytes');
  return blake2b(VERIFY_KEY_LABEL, 32, fileKey);
}

export function formatVerifyCapability(c: VerifyCapability): string {
  if (c.manifestId.length !== SHARE_ID_BYTES || c.verifyId.length !== SHARE_ID_BYTES || c.verifyKey.length !== 32) {
    throw err('CAP_MALFORMED', 'manifest id, verify id and verify key must be 32 bytes each');
  }
  return `${VERIFY_CAP_SCHEME}${base32Encode(c.manifestId)}:${base32Encode(c.verifyId)}#${base32Encode(c.verifyKey)}`;
}

export function parseVerifyCapability(text: string): VerifyCapability {
  if (typeof text !== 'string' || !text.startsWith(VERIFY_CAP_SCHEME)) throw err('CAP_MALFORMED', `a verify capability starts with "${VERIFY_CAP_SCHEME}"`);
  const body = text.slice(VERIFY_CAP_SCHEME.length);
  const m = /^([a-z2-7]{52}):([a-z2-7]{52})#([a-z2-7]{52})$/.exec(body);
  if (!m) throw err('CAP_MALFORMED', 'a verify capability is <manifest id>:<verify id>#<verify key>, 52 base32 characters each');
  return { manifestId: base32Decode(m[1]), verifyId: base32Decode(m[2]), verifyKey: base32Decode(m[3]) };
}

export function isVerifyCapability(text: string): boolean {
  return typeof text === 'string' && text.startsWith(VERIFY_CAP_SCHEME);
}

/** Encrypt a verify record into its share (kind VERIFY = 4, index 0, under the verify key). */
export function sealVerifyRecord(verifyKey: Uint8Array, r: VerifyRecord): { id: Buffer; bytes: Buffer } {
  const bytes = encryptChunk(verifyKey, 0, encodeVerifyRecord(r), ChunkKind.VERIFY);
  if (bytes.length > MAX_SHARE_BYTES) throw err('STORAGE_MANIFEST_TOO_LARGE', 'verify record does not fit in one share; use a larger chunk size');
  return { id: shareId(bytes), bytes };
}

/** Open a fetched verify record share: hash (SHARE_HASH_MISMATCH), key (CHUNK_AUTH_FAILED), layout (VERIFY_RECORD_MALFORMED). */
export function openVerifyRecord(cap: VerifyCapability, share: Uint8Array): VerifyRecord {
  verifyShare(cap.verifyId, share);
  return decodeVerifyRecord(decryptChunk(cap.verifyKey, 0, share, ChunkKind.VERIFY));
}

/** The verify record's entry for one chunk's shares (SPEC.md §9.18.2). */
export function verifyChunkOf(kind: 1 | 2, index: number, shares: ReadonlyArray<{ id: Buffer; bytes: Buffer }>): VerifyChunk {
  return { kind, index, shareSize: shares[0].bytes.length, shareIds: shares.map((s) => s.id), auditRoots: shares.map((s) => auditRoot(s.bytes)) };
}

/**
 * Seal a file's manifest with its verify record (SPEC.md §9.18.2): the manifest chunks do not
 * depend on the verify record, so they are sealed first, added to the record, the record is
 * sealed under the verify key, and the root is sealed naming the record's id.
 */
export function sealWithVerifyRecord(fileKey: Uint8Array, manifest: Manifest, dataChunks: readonly VerifyChunk[]): {
  sealed: SealedManifest; verify: { id: Buffer; bytes: Buffer }; verifyKey: Buffer;
} {
  const first = sealManifest(fileKey, manifest);
  const chunks = [...dataChunks, ...first.chunks.map((c, i) => verifyChunkOf(ChunkKind.MANIFEST, i, c.shares))];
  const verifyKey = deriveVerifyKey(fileKey);
  const verify = sealVerifyRecord(verifyKey, { k: manifest.layout.coding.k, n: manifest.layout.coding.n, chunks });
  return { sealed: sealManifest(fileKey, manifest, { verifyId: verify.id }), verify, verifyKey };
}
