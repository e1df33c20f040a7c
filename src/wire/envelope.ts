// SPEC.md §6.2: signed envelopes. A signed document is the exact body bytes plus detached
// Ed25519 signatures. The type tag and the validity window are inside the signed bytes
// (domain separation: a signature made for one document type never verifies as another).
// Verification always runs over the bytes received; nothing is re-encoded to be verified.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, sha256, type Ed25519KeyPair } from '../crypto/primitives';
import {
  decodeDocumentBody, decodeEnvelope, encodeDocumentBody, encodeEnvelope,
  type SignatureMsg,
} from './docs';
import { isoTime } from '../ops/log';

/** Document type tags (SPEC.md §6.2). */
export const DocType = {
  RELAY_DESCRIPTOR: 1,
  KEY_CERTIFICATE: 2,
  VOTE: 3,
  CONSENSUS: 4,
  /** A moderator policy version (SPEC.md §10.2), signed by the moderator key. */
  POLICY: 5,
} as const;
export type DocTypeValue = (typeof DocType)[keyof typeof DocType];
const DOC_NAMES: Record<number, string> = { 1: 'relay descriptor', 2: 'key certificate', 3: 'vote', 4: 'consensus', 5: 'moderator policy' };
export function docTypeName(t: number): string { return DOC_NAMES[t] ?? `unknown document type ${t}`; }

/**
 * Every signature covers SIG_PREFIX | SHA-256(body) (SPEC.md §6.2). Signing the digest (as Tor
 * signs its consensus digest) lets a verifier hash a large document once for all signatures;
 * the type tag and window are inside body, so the domain separation holds.
 */
export const SIG_PREFIX = Buffer.from('bitcloud-document-signature-v1\0', 'latin1');

/**
 * An envelope that has been decoded but NOT verified. Its fields are well-formed; whether
 * anyone signed them is for the caller to check (src/dir turns it into a verified type).
 */
export interface OpenedDocument {
  type: number;
  validAfter: number;
  validUntil: number;
  /** Type-specific encoded content (inside the signed bytes). */
  content: Buffer;
  /** Exact DocumentBody bytes as received: what signatures cover. */
  body: Buffer;
  /** SHA-256 of `body`: the document's digest. */
  digest: Buffer;
  signatures: SignatureMsg[];
  certificates: Buffer[];
  /** The whole envelope as received. */
  raw: Buffer;
}

/** Decode an envelope and its body; refuse a wrong type or an empty window. Does not verify. */
export function openEnvelope(raw: Uint8Array, expectedType: DocTypeValue, maxBytes: number): OpenedDocument {
  const env = decodeEnvelope(raw, maxBytes);
  const b = decodeDocumentBody(env.body, maxBytes);
  if (b.type !== expectedType) {
    throw err('DOC_WRONG_TYPE', `expected a ${docTypeName(expectedType)}, got a ${docTypeName(b.type)}`, { expected: expectedType, got: b.type });
  }
  if (b.validUntil <= b.validAfter) throw err('DOC_MALFORMED', 'valid_until is not after valid_after', { field: 'body.valid_until' });
  const rawBuf = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  return {
    type: b.type, validAfter: b.validAfter, validUntil: b.validUntil, content: b.content,
    body: env.body, digest: sha256(env.body), signatures: env.signatures, certificates: env.certificates, raw: rawBuf,
  };
}

/** Build the exact body bytes of a document. */
export function makeBody(type: DocTypeValue, validAfter: number, validUntil: number, content: Buffer): Buffer {
  if (!(validUntil > validAfter)) throw err('DOC_MALFORMED', 'valid_until must be after valid_after');
  return encodeDocumentBody({ type, validAfter, validUntil, content });
}

function signedMessage(digest: Uint8Array): Buffer {
  return Buffer.concat([SIG_PREFIX, digest]);
}

/** Sign body bytes with an Ed25519 secret key. */
export function signBody(body: Uint8Array, secretKey: Uint8Array): Buffer {
  return ed25519Sign(signedMessage(sha256(body)), secretKey);
}

/** True when `signature` is a valid Ed25519 signature by `publicKey` over SIG_PREFIX | SHA-256(body). */
export function verifyBodySignature(body: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  return verifyDigestSignature(sha256(body), signature, publicKey);
}

/** As verifyBodySignature, given the body's SHA-256 already computed (one hash for many signatures). */
export function verifyDigestSignature(digest: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  return digest.length === 32 && ed25519Verify(signature, signedMessage(digest), publicKey);
}

/** Make one signature record. `signer` is the identity; `key` the keypair that signs (if not the identity). */
export function makeSignature(body: Uint8Array, signerIdentity: Buffer, keyPair: Ed25519KeyPair): SignatureMsg {
  const viaOtherKey = !keyPair.publicKey.equals(signerIdentity);
  return { signer: signerIdentity, key: viaOtherKey ? keyPair.publicKey : null, signature: signBody(body, keyPair.secretKey) };
}

/** Canonical signature order: by signer, then by key (SPEC.md §6.2). */
export function sortSignatures(sigs: SignatureMsg[]): SignatureMsg[] {
  return [...sigs].sort((a, b) => Buffer.compare(a.signer, b.signer) || Buffer.compare(a.key ?? Buffer.alloc(0), b.key ?? Buffer.alloc(0)));
}

/** Wrap body bytes and signatures (and optional certificates) into envelope bytes. */
export function sealEnvelope(body: Buffer, signatures: SignatureMsg[], certificates: Buffer[] = []): Buffer {
  const certs = [...certificates].sort(Buffer.compare);
  return encodeEnvelope({ body, signatures: sortSignatures(signatures), certificates: certs });
}

/** Make, sign with one key, and seal a document. */
export function signDocument(
  doc: { type: DocTypeValue; validAfter: number; validUntil: number; content: Buffer },
  signer: { identity: Buffer; keyPair: Ed25519KeyPair; certificates?: Buffer[] },
): Buffer {
  const body = makeBody(doc.type, doc.validAfter, doc.validUntil, doc.content);
  return sealEnvelope(body, [makeSignature(body, signer.identity, signer.keyPair)], signer.certificates ?? []);
}

/**
 * SPEC.md §6.2: a document is usable only inside [valid_after - skew, valid_until].
 * Throws DOC_NOT_YET_VALID or DOC_EXPIRED (callers may rename the code for their layer).
 */
export function checkWindow(doc: { validAfter: number; validUntil: number }, now: number, skewMs: number, what = 'document'): void {
  if (now + skewMs < doc.validAfter) {
    throw err('DOC_NOT_YET_VALID', `${what} is not valid until ${isoTime(doc.validAfter)}`, { validAfter: doc.validAfter, now });
  }
  if (now > doc.validUntil) {
    throw err('DOC_EXPIRED', `${what} expired at ${isoTime(doc.validUntil)}`, { validUntil: doc.validUntil, now });
  }
}
