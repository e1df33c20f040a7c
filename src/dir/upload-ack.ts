// SPEC.md §9.21.8 "Upload acknowledgements": an authority's 200 answer to an upload a hidden node
// may send through a mirror carries `ack`, its signature by its current signing key (§6.3) over
//   "bitcloud-upload-ack-v1" || 0x00 || kind || 0x00 || SHA-256(body as received)
// so that a mirror cannot tell a node an authority took an upload it did not pass on, or altered.
import { ed25519Sign, ed25519Verify, sha256 } from '../crypto/primitives';

/** The upload kinds acknowledged (ASCII, the names a mirror counts them by). */
export type UploadKind = 'descriptor' | 'hs_desc' | 'hs_pseudonym';

/** Longest `ack` a mirror copies into `forwarded` (a base64 Ed25519 signature is 88). */
export const UPLOAD_ACK_MAX_CHARS = 128;

const DOMAIN = Buffer.from('bitcloud-upload-ack-v1', 'ascii');
const SEP = Buffer.of(0);

/** The signed bytes: domain || 0x00 || kind || 0x00 || SHA-256(body) (22 + 1 + len(kind) + 1 + 32 bytes). */
export function uploadAckMessage(kind: UploadKind, body: Uint8Array): Buffer {
  return Buffer.concat([DOMAIN, SEP, Buffer.from(kind, 'ascii'), SEP, sha256(body)]);
}

/** The authority's `ack` for `body` of `kind`: base64 of the signature by its signing key's secret. */
export function signUploadAck(kind: UploadKind, body: Uint8Array, signingSecret: Uint8Array): string {
  return ed25519Sign(uploadAckMessage(kind, body), signingSecret).toString('base64');
}

/** True when `ack` is the base64 of a signature by `signingKey` over `body` of `kind`. */
export function verifyUploadAck(kind: UploadKind, body: Uint8Array, ack: unknown, signingKey: Uint8Array): boolean {
  return verifyUploadAckMessage(uploadAckMessage(kind, body), ack, signingKey);
}

/**
 * verifyUploadAck with the signed bytes (uploadAckMessage) built by the caller: one body hash for
 * every authority's entry of one answer.
 */
export function verifyUploadAckMessage(message: Uint8Array, ack: unknown, signingKey: Uint8Array): boolean {
  if (typeof ack !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(ack)) return false;
  return ed25519Verify(Buffer.from(ack, 'base64'), message, signingKey);
}
