// SPEC.md §6.2: signed envelopes.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ed25519Generate } from '../../src/crypto/primitives';
import { decodeDocumentBody, decodeEnvelope, encodeEnvelope, LIMITS } from '../../src/wire/docs';
import {
  checkWindow, DocType, makeBody, makeSignature, openEnvelope, sealEnvelope, signDocument, verifyBodySignature,
} from '../../src/wire/envelope';
import { isBitcloudError } from '../../src/errors';

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};

describe('envelope', () => {
  const kp = ed25519Generate();
  const content = Buffer.from('hello');
  const raw = signDocument({ type: DocType.VOTE, validAfter: 1000, validUntil: 2000, content }, { identity: kp.publicKey, keyPair: kp });

  it('round-trips body, type, window and signature over the exact body bytes', () => {
    const d = openEnvelope(raw, DocType.VOTE, 1024);
    expect(d.type).toBe(DocType.VOTE);
    expect(d.validAfter).toBe(1000);
    expect(d.validUntil).toBe(2000);
    expect(d.content.equals(content)).toBe(true);
    expect(d.signatures).toHaveLength(1);
    expect(d.signatures[0].key).toBeNull();
    expect(verifyBodySignature(d.body, d.signatures[0].signature, kp.publicKey)).toBe(true);
    expect(d.raw.equals(raw)).toBe(true);
  });

  it('refuses the wrong type tag (domain separation)', () => {
    expect(code(() => openEnvelope(raw, DocType.CONSENSUS, 1024))).toBe('DOC_WRONG_TYPE');
  });

  it('a signature does not verify over a body with another type tag', () => {
    const d = openEnvelope(raw, DocType.VOTE, 1024);
    const other = makeBody(DocType.CONSENSUS, 1000, 2000, content);
    expect(verifyBodySignature(other, d.signatures[0].signature, kp.publicKey)).toBe(false);
  });

  it('a flipped body byte breaks the signature', () => {
    const d = openEnvelope(raw, DocType.VOTE, 1024);
    const body = Buffer.from(d.body);
    body[body.length - 1] ^= 1;
    expect(verifyBodySignature(body, d.signatures[0].signature, kp.publicKey)).toBe(false);
  });

  it('refuses oversize envelopes before decoding', () => {
    expect(code(() => openEnvelope(raw, DocType.VOTE, raw.length - 1))).toBe('DOC_TOO_LARGE');
  });

  it('every truncation throws a DOC_* code (never a RangeError) or loses its signature', () => {
    for (let i = 0; i < raw.length; i++) {
      let opened;
      try { opened = openEnvelope(raw.subarray(0, i), DocType.VOTE, 1024); } catch (e) {
        expect(isBitcloudError(e) && e.code.startsWith('DOC_')).toBe(true);
        continue;
      }
      // Cut at a field boundary after the body: parseable, but no signature survives whole.
      const ok = opened.signatures.some((s) => verifyBodySignature(opened.body, s.signature, kp.publicKey));
      expect(ok).toBe(false);
    }
  });

  it('refuses an empty window', () => {
    expect(code(() => makeBody(DocType.VOTE, 5, 5, content))).toBe('DOC_MALFORMED');
  });

  it('checks the validity window with skew', () => {
    expect(code(() => checkWindow({ validAfter: 1000, validUntil: 2000 }, 500, 100))).toBe('DOC_NOT_YET_VALID');
    expect(code(() => checkWindow({ validAfter: 1000, validUntil: 2000 }, 950, 100))).toBe('NO_ERROR');
    expect(code(() => checkWindow({ validAfter: 1000, validUntil: 2000 }, 2001, 100))).toBe('DOC_EXPIRED');
    // Times past what a Date can hold (8.64e15 ms) are printed as numbers, not a RangeError.
    expect(code(() => checkWindow({ validAfter: 2 ** 53 - 2, validUntil: 2 ** 53 - 1 }, 1000, 100))).toBe('DOC_NOT_YET_VALID');
    expect(code(() => checkWindow({ validAfter: 0, validUntil: 1000 }, 2 ** 53 - 1, 100))).toBe('DOC_EXPIRED');
  });

  it('records a separate signing key and sorts signatures canonically', () => {
    const a = ed25519Generate(), b = ed25519Generate(), sk = ed25519Generate();
    const body = makeBody(DocType.CONSENSUS, 1, 2, content);
    const s1 = makeSignature(body, a.publicKey, sk);
    const s2 = makeSignature(body, b.publicKey, b);
    expect(s1.key?.equals(sk.publicKey)).toBe(true);
    expect(s2.key).toBeNull();
    const e1 = sealEnvelope(body, [s1, s2]);
    const e2 = sealEnvelope(body, [s2, s1]);
    expect(e1.equals(e2)).toBe(true);
    const dec = decodeEnvelope(e1, 4096);
    expect(encodeEnvelope(dec).equals(e1)).toBe(true);
  });

  it('decoders only ever throw DOC_* errors on arbitrary bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try { openEnvelope(bytes, DocType.VOTE, 1024); } catch (e) {
        return isBitcloudError(e) && e.code.startsWith('DOC_');
      }
      return true;
    }), { numRuns: 2000 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try { decodeDocumentBody(bytes, LIMITS.descriptorBytes); } catch (e) {
        return isBitcloudError(e) && e.code.startsWith('DOC_');
      }
      return true;
    }), { numRuns: 2000 });
  });
});
