// SPEC.md §6.3: authority key certificates. An authority's long-term identity key (which can
// stay offline) certifies a medium-term signing key for a window; votes and consensuses are
// signed by the signing key, and verifiers accept such a signature only through a certificate.
import { err } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { fingerprint } from '../crypto/keys';
import { decodeKeyCertificate, encodeKeyCertificate, LIMITS } from '../wire/docs';
import { checkWindow, DocType, openEnvelope, signDocument, verifyBodySignature } from '../wire/envelope';

export interface VerifiedCertificate {
  identity: Buffer;
  fingerprint: string;
  signingKey: Buffer;
  validAfter: number;
  validUntil: number;
  /** The certificate's envelope bytes, as received. */
  raw: Buffer;
}

/** Certify `signingKey` with the identity key pair for [validAfter, validUntil] (ms). */
export function makeKeyCertificate(identity: Ed25519KeyPair, signingKey: Buffer, validAfter: number, validUntil: number): Buffer {
  const content = encodeKeyCertificate({ identity: identity.publicKey, signingKey });
  return signDocument({ type: DocType.KEY_CERTIFICATE, validAfter, validUntil, content }, { identity: identity.publicKey, keyPair: identity });
}

/**
 * A certificate's layout, without checking its signature: what it claims, for a reader that checks
 * the signature only once the certificate is needed (SPEC §8.7.5). Throws DOC_* codes only; a
 * certificate this refuses, verifyKeyCertificate refuses too.
 */
export function readKeyCertificate(raw: Uint8Array): { identity: Buffer; fingerprint: string; signingKey: Buffer } {
  const { c } = openKeyCertificate(raw);
  return { identity: c.identity, fingerprint: fingerprint(c.identity), signingKey: c.signingKey };
}

/**
 * Check a certificate's own signature (by the identity it names). With `now`, also check its
 * window (DOC_EXPIRED / DOC_NOT_YET_VALID). Throws DOC_* codes only.
 */
export function verifyKeyCertificate(raw: Uint8Array, now?: number, skewMs = 0): VerifiedCertificate {
  const { doc, c } = openKeyCertificate(raw);
  if (!verifyBodySignature(doc.body, doc.signatures[0].signature, c.identity)) throw err('DOC_BAD_SIGNATURE', 'key certificate signature does not verify');
  if (now !== undefined) checkWindow(doc, now, skewMs, 'key certificate');
  return { identity: c.identity, fingerprint: fingerprint(c.identity), signingKey: c.signingKey, validAfter: doc.validAfter, validUntil: doc.validUntil, raw: doc.raw };
}

/** The envelope and content of a certificate with one signature, by the identity it names (not yet checked). */
function openKeyCertificate(raw: Uint8Array) {
  const doc = openEnvelope(raw, DocType.KEY_CERTIFICATE, LIMITS.certificateBytes);
  const c = decodeKeyCertificate(doc.content);
  if (doc.signatures.length !== 1) throw err('DOC_BAD_SIGNATURE', 'a key certificate carries exactly one signature');
  const s = doc.signatures[0];
  if (!s.signer.equals(c.identity) || s.key !== null) throw err('DOC_WRONG_SIGNER', 'a key certificate must be signed by the identity it names');
  return { doc, c };
}

/**
 * From a set of certificate envelopes, the ones that verify and are valid at `now`, indexed by
 * `identityFingerprint/signingKeyHex`. Bad certificates are skipped (they are unsigned helper data).
 */
export function indexCertificates(certs: readonly Uint8Array[], now: number, skewMs: number): Map<string, VerifiedCertificate> {
  const out = new Map<string, VerifiedCertificate>();
  for (const raw of certs) {
    try {
      const c = verifyKeyCertificate(raw, now, skewMs);
      out.set(`${c.fingerprint}/${c.signingKey.toString('hex')}`, c);
    } catch { /* skipped: a bad certificate only fails to vouch for a signature */ }
  }
  return out;
}
