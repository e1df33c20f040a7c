import { describe, it, expect } from 'vitest';
import { blindPublicKey, blindSigner, hsPeriodOf, verifyBlinded, HS_PERIOD_SECONDS } from '../../src/crypto/blind';
import { ed25519Generate, ed25519Verify } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';

describe('key blinding (SPEC.md §9.21.2)', () => {
  const id = ed25519Generate();
  it('the signer and anyone with the identity derive the same blinded key', () => {
    const s = blindSigner(id, 20000);
    expect(s.publicKey.equals(blindPublicKey(id.publicKey, 20000))).toBe(true);
    expect(s.publicKey.equals(id.publicKey)).toBe(false);
  });
  it('a signature under the blinded key is an ordinary Ed25519 signature', () => {
    const s = blindSigner(id, 20000);
    const msg = Buffer.from('descriptor bytes');
    const sig = s.sign(msg);
    expect(verifyBlinded(sig, msg, s.publicKey)).toBe(true);
    expect(ed25519Verify(sig, msg, s.publicKey)).toBe(true);
    expect(verifyBlinded(sig, msg, id.publicKey)).toBe(false);
    expect(verifyBlinded(sig, Buffer.from('other bytes'), s.publicKey)).toBe(false);
  });
  it('periods and identities give unrelated keys; signatures do not carry over', () => {
    const a = blindSigner(id, 20000);
    const b = blindSigner(id, 20001);
    const other = blindSigner(ed25519Generate(), 20000);
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
    expect(a.publicKey.equals(other.publicKey)).toBe(false);
    const msg = Buffer.from('m');
    expect(verifyBlinded(a.sign(msg), msg, b.publicKey)).toBe(false);
    expect(verifyBlinded(other.sign(msg), msg, a.publicKey)).toBe(false);
  });
  it('refuses a key that is not a point', () => {
    let code = '';
    try { blindPublicKey(Buffer.alloc(32, 0xff), 1); } catch (e) { code = isBitcloudError(e) ? e.code : 'other'; }
    expect(code).toBe('HIDDEN_BLIND_INVALID');
  });
  it('period numbers are days since the epoch', () => {
    expect(HS_PERIOD_SECONDS).toBe(86_400);
    expect(hsPeriodOf(86_400_000 * 3 + 5)).toBe(3);
  });
});
