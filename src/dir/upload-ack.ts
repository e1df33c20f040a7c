// SPEC.md §9.21.8 "Upload acknowledgements": an authority's answer to an upload a hidden node may
// send through a mirror is signed by its current signing key (§6.3), so that a mirror can neither
// tell a node an authority took an upload it did not pass on (or altered), nor that one refused it.
// The two layouts, built by one function (uploadSignedMessage):
//   ack  (200):              "bitcloud-upload-ack-v1"  || 0x00 || kind || 0x00 || SHA-256(body as received)
//   nack (4xx but 429):     "bitcloud-upload-nack-v1" || 0x00 || kind || 0x00 || code || 0x00 || SHA-256(body)
import { ed25519Sign, ed25519Verify, sha256 } from '../crypto/primitives';

/** The upload kinds acknowledged (ASCII, the names a mirror counts them by). */
export type UploadKind = 'descriptor' | 'hs_desc' | 'hs_pseudonym';

/** Longest `ack` or `nack` a mirror copies into `forwarded` (a base64 Ed25519 signature is 88). */
export const UPLOAD_ACK_MAX_CHARS = 128;

const ACK_DOMAIN = Buffer.from('bitcloud-upload-ack-v1', 'ascii');
const NACK_DOMAIN = Buffer.from('bitcloud-upload-nack-v1', 'ascii');
const SEP = Buffer.of(0);

/**
 * The signed bytes of an ack (`code` absent): domain || 0x00 || kind || 0x00 || SHA-256(body), or
 * of a nack (`code` the refusal's error code): domain || 0x00 || kind || 0x00 || code || 0x00 ||
 * SHA-256(body). One function for both, so the two layouts cannot drift apart.
 */
export function uploadSignedMessage(kind: UploadKind, body: Uint8Array, code?: string): Buffer {
  if (code === undefined) return Buffer.concat([ACK_DOMAIN, SEP, Buffer.from(kind, 'ascii'), SEP, sha256(body)]);
  return Buffer.concat([NACK_DOMAIN, SEP, Buffer.from(kind, 'ascii'), SEP, Buffer.from(code, 'ascii'), SEP, sha256(body)]);
}

/** The signed bytes of an ack: domain || 0x00 || kind || 0x00 || SHA-256(body) (22 + 1 + len(kind) + 1 + 32 bytes). */
export function uploadAckMessage(kind: UploadKind, body: Uint8Array): Buffer {
  return uploadSignedMessage(kind, body);
}

/** The signed bytes of a nack of `code`: domain || 0x00 || kind || 0x00 || code || 0x00 || SHA-256(body). */
export function uploadNackMessage(kind: UploadKind, body: Uint8Array, code: string): Buffer {
  return uploadSignedMessage(kind, body, code);
}

/** The authority's `ack` for `body` of `kind`: base64 of the signature by its signing key's secret. */
export function signUploadAck(kind: UploadKind, body: Uint8Array, signingSecret: Uint8Array): string {
  return ed25519Sign(uploadAckMessage(kind, body), signingSecret).toString('base64');
}

/** The authority's `nack` for its refusal `code` of `body` of `kind` (SPEC.md §9.21.8). */
export function signUploadNack(kind: UploadKind, body: Uint8Array, code: string, signingSecret: Uint8Array): string {
  return ed25519Sign(uploadNackMessage(kind, body, code), signingSecret).toString('base64');
}

/** True when `ack` is the base64 of a signature by `signingKey` over `body` of `kind`. */
export function verifyUploadAck(kind: UploadKind, body: Uint8Array, ack: unknown, signingKey: Uint8Array): boolean {
  return verifyUploadAckMessage(uploadAckMessage(kind, body), ack, signingKey);
}

/** True when `nack` is the base64 of a signature by `signingKey` over the refusal `code` of `body` of `kind`. */
export function verifyUploadNack(kind: UploadKind, body: Uint8Array, code: unknown, nack: unknown, signingKey: Uint8Array): boolean {
  if (!isNackCode(code)) return false;
  return verifyUploadAckMessage(uploadNackMessage(kind, body, code), nack, signingKey);
}

/** A code a nack can name: printable ASCII without the 0x00 separator (error codes are A-Z, 0-9, _). */
export function isNackCode(code: unknown): code is string {
  return typeof code === 'string' && code.length > 0 && code.length <= 64 && /^[\x21-\x7e]+$/.test(code);
}

/**
 * verifyUploadAck (or a nack's check) with the signed bytes (uploadSignedMessage) built by the
 * caller: one body hash for every authority's entry of one answer.
 */
export function verifyUploadAckMessage(message: Uint8Array, ack: unknown, signingKey: Uint8Array): boolean {
  if (typeof ack !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(ack)) return false;
  return ed25519Verify(Buffer.from(ack, 'base64'), message, signingKey);
}
