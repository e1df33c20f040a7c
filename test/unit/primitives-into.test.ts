// The allocation-free forms of BLAKE2b and XChaCha20-Poly1305 in src/crypto/primitives.ts give
// exactly the bytes of the allocating ones (they back the chunk encoder and the audit tree,
// SPEC.md §9.2, §9.17.1, whose known answers are in storage-encode and storage-audit tests).
import { describe, expect, it } from 'vitest';
import { blake2b, blake2bInto, randomBytes, xchachaDecrypt, xchachaEncrypt } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';

describe('blake2bInto', () => {
  it('equals blake2b of the concatenation, for every digest length and split', () => {
    const data = randomBytes(5000);
    for (const outLen of [16, 24, 32, 64]) {
      for (const cut of [0, 1, 22, 4096, 5000]) {
        const out = Buffer.alloc(outLen);
        blake2bInto(out, data.subarray(0, cut), data.subarray(cut));
        expect(out).toEqual(blake2b([data.subarray(0, cut), data.subarray(cut)], outLen));
        expect(out).toEqual(blake2b(data, outLen));
      }
    }
  });

  it('writes into a view without touching the bytes around it', () => {
    const big = Buffer.alloc(96, 0xee);
    blake2bInto(big.subarray(32, 64), Buffer.from('abc'));
    expect(big.subarray(32, 64)).toEqual(blake2b(Buffer.from('abc')));
    expect(big.subarray(0, 32).every((b) => b === 0xee) && big.subarray(64).every((b) => b === 0xee)).toBe(true);
  });
});

describe('xchachaEncrypt into a given buffer', () => {
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  const ad = Buffer.from('ad');

  it('gives the same ciphertext as a fresh buffer, and decrypts', () => {
    const plain = randomBytes(70_000);
    const into = Buffer.alloc(plain.length + 40, 0x55);
    const ct = xchachaEncrypt(key, nonce, plain, ad, into.subarray(24));
    expect(ct).toEqual(xchachaEncrypt(key, nonce, plain, ad));
    expect(into.subarray(24)).toEqual(ct);
    expect(into.subarray(0, 24).every((b) => b === 0x55)).toBe(true);
    expect(xchachaDecrypt(key, nonce, ct, ad)).toEqual(plain);
  });

  it('refuses an output of the wrong length', () => {
    let code = '';
    try { xchachaEncrypt(key, nonce, randomBytes(10), ad, Buffer.alloc(10)); } catch (e) { code = isBitcloudError(e) ? e.code : 'other'; }
    expect(code).toBe('CRYPTO_BAD_LENGTH');
  });

  it('a failed decryption still throws CRYPTO_AEAD_FAILED (the unzeroed output is never returned)', () => {
    const ct = xchachaEncrypt(key, nonce, randomBytes(1000), ad);
    ct[3] ^= 1;
    let code = '';
    try { xchachaDecrypt(key, nonce, ct, ad); } catch (e) { code = isBitcloudError(e) ? e.code : 'other'; }
    expect(code).toBe('CRYPTO_AEAD_FAILED');
  });
});
