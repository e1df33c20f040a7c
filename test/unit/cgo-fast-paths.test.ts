// SPEC.md §5.6: CGO's fast paths give the bytes of the plain construction. The relay crypto keeps
// one AES context per key and makes PRF keystreams by encrypting counter blocks with it, reuses
// POLYVAL tables across cells and widens them for long-lived keys; each is checked here against
// the same primitives used the plain way (a new aes-128-ctr cipher per stream, a new @noble
// POLYVAL per hash), and UIV+ against a model written from proposal 359's definitions with them.
import * as nodeCrypto from 'node:crypto';
import { polyval } from '@noble/ciphers/_polyval.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { AES128_CTR_SHORT_MAX, PolyvalHash, aes128Block, randomBytes } from '../../src/crypto/primitives';
import { CGO_CELL_LEN, CGO_TAG_LEN, EtCipher, Prf, Uiv } from '../../src/crypto/cgo';

/** `iv` + `add` as a 128-bit big-endian number, wrapping. */
function addBE(iv: Uint8Array, add: number): Buffer {
  const n = (BigInt(`0x${Buffer.from(iv).toString('hex')}`) + BigInt(add)) % (1n << 128n);
  return Buffer.from(n.toString(16).padStart(32, '0'), 'hex');
}

/** AES-128-CTR the plain way: a new OpenSSL context from counter iv + first. */
function plainCtr(key: Uint8Array, iv: Uint8Array, first: number, data: Uint8Array): Buffer {
  return nodeCrypto.createCipheriv('aes-128-ctr', key, addBE(iv, first)).update(data);
}

function aesEcb(key: Uint8Array, block: Uint8Array, decrypt: boolean): Buffer {
  const c = decrypt ? nodeCrypto.createDecipheriv('aes-128-ecb', key, null) : nodeCrypto.createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return c.update(block);
}

const xor = (a: Uint8Array, b: Uint8Array): Buffer => Buffer.from(a.map((v, i) => v ^ b[i]));

/** Proposal 359 from its definitions, each primitive used once per call. */
const model = {
  /** ENC_ET / DEC_ET((KB, KU), T, M) = UH ^ AES±(KB, M ^ UH), UH = POLYVAL(KU, T). */
  et(keys: Uint8Array, tweak: Uint8Array, m: Uint8Array, decrypt: boolean): Buffer {
    const uh = polyval(tweak, keys.subarray(16, 32));
    return xor(aesEcb(keys.subarray(0, 16), xor(m, uh), decrypt), uh);
  },
  /** PRF((K, B), T, t): CTR128-BE(K, IV + 31·t), IV = POLYVAL(B, T) with the low 6 bits cleared. */
  prf(keys: Uint8Array, t: Uint8Array, which: 0 | 1, n: number): Buffer {
    const iv = Buffer.from(polyval(t, keys.subarray(16, 32)));
    iv[15] &= 0xc0;
    return plainCtr(keys.subarray(0, 16), iv, 31 * which, Buffer.alloc(n));
  },
  encrypt(k: Uint8Array, h: Uint8Array, ad: number, x: Uint8Array): Buffer {
    const xl = x.subarray(0, 16), xr = x.subarray(16);
    const yl = model.et(k.subarray(0, 32), Buffer.concat([h, Buffer.of(ad), xr]), xl, false);
    return Buffer.concat([yl, xor(xr, model.prf(k.subarray(32), yl, 0, xr.length))]);
  },
  decrypt(k: Uint8Array, h: Uint8Array, ad: number, y: Uint8Array): Buffer {
    const yl = y.subarray(0, 16);
    const xr = xor(y.subarray(16), model.prf(k.subarray(32), yl, 0, y.length - 16));
    return Buffer.concat([model.et(k.subarray(0, 32), Buffer.concat([h, Buffer.of(ad), xr]), yl, true), xr]);
  },
  /** UPDATE_UIV: (K', N') = PRF_n1(S, N). */
  update(k: Uint8Array, n: Uint8Array): { k: Buffer; n: Buffer } {
    const seed = model.prf(k.subarray(32), n, 1, 80);
    return { k: seed.subarray(0, 64), n: seed.subarray(64) };
  },
};

describe('AES-128 CTR keystreams from one long-lived context (ctrXorInPlace)', () => {
  it('equal a new aes-128-ctr cipher at iv + first, for any counter (carries and the 2^128 wrap) and length', () => {
    const counters = fc.oneof(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      // Near carries: the low words all ones, or the whole counter.
      fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 12 }), fc.integer({ min: 0, max: 40 })).map(([hi, d]) => {
        const iv = Buffer.concat([Buffer.from(hi), Buffer.alloc(16 - hi.length, 0xff)]);
        iv[15] = (0x100 - d) & 0xff;
        return iv;
      }),
    );
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }), counters,
      fc.oneof(fc.constantFrom(0, 31), fc.integer({ min: 0, max: 0xffffffff })),
      fc.integer({ min: 0, max: AES128_CTR_SHORT_MAX }),
      (key, iv, first, len) => {
        const data = randomBytes(len);
        const expected = plainCtr(key, iv, first, data);
        const aes = aes128Block(key);
        aes.ctrXorInPlace(iv, data, first);
        expect(data.equals(expected)).toBe(true);
      },
    ), { numRuns: 300 });
  });

  it('the same context serves single blocks and keystreams interleaved; unaligned data works', () => {
    const key = randomBytes(16);
    const aes = aes128Block(key);
    const big = randomBytes(600);
    for (let i = 0; i < 20; i++) {
      const b = randomBytes(16);
      const expected = aesEcb(key, b, false);
      aes.encryptBlock(b);
      expect(b.equals(expected)).toBe(true);
      const iv = randomBytes(16);
      const data = big.subarray(i + 1, i + 1 + 493); // odd offsets in one buffer
      const want = plainCtr(key, iv, 0, data);
      aes.ctrXorInPlace(iv, data);
      expect(data.equals(want)).toBe(true);
      const d = randomBytes(16);
      const plain = aesEcb(key, d, true);
      aes.decryptBlock(d);
      expect(d.equals(plain)).toBe(true);
    }
  });

  it('refuses a keystream over the short maximum, a bad IV or block offset (CRYPTO_BAD_LENGTH)', () => {
    const aes = aes128Block(randomBytes(16));
    for (const f of [
      () => aes.ctrXorInPlace(randomBytes(16), Buffer.alloc(AES128_CTR_SHORT_MAX + 1)),
      () => aes.ctrXorInPlace(randomBytes(15), Buffer.alloc(16)),
      () => aes.ctrXorInPlace(randomBytes(16), Buffer.alloc(16), -1),
      () => aes.ctrXorInPlace(randomBytes(16), Buffer.alloc(16), 1.5),
    ]) {
      let e: unknown;
      try { f(); } catch (x) { e = x; }
      expect(isBitcloudError(e) && e.code === 'CRYPTO_BAD_LENGTH').toBe(true);
    }
  });
});

describe('POLYVAL reused under one key (PolyvalHash)', () => {
  it('equals a new @noble POLYVAL for every input, at every table size, hash after hash', () => {
    const key = randomBytes(16);
    const hashes = [new PolyvalHash(key), new PolyvalHash(key, 512), new PolyvalHash(key, 2048), new PolyvalHash(key, 100_000)];
    const out = Buffer.from(new ArrayBuffer(16));
    for (let i = 0; i < 60; i++) {
      const data = randomBytes(i < 40 ? i : 400 + i * 3);
      const want = Buffer.from(polyval(data, key));
      for (const h of hashes) {
        h.hashInto(data, out);
        expect(out.equals(want)).toBe(true);
      }
    }
  });
});

describe('UIV+ (proposal 359) against a model written from its definitions', () => {
  it('ET and PRF equal the model, including after ET widens its POLYVAL tables', () => {
    const keys = randomBytes(32);
    const et = new EtCipher(keys);
    const prf = new Prf(keys);
    for (let i = 0; i < 40; i++) {
      const h = randomBytes(16), xr = randomBytes(493), m = randomBytes(16);
      const tweak = Buffer.concat([h, Buffer.of(i & 0xff), xr]);
      const decrypt = i % 3 === 0;
      const b = Buffer.from(m);
      if (decrypt) et.decrypt(h, i & 0xff, xr, b); else et.encrypt(h, i & 0xff, xr, b);
      expect(b.equals(model.et(keys, tweak, m, decrypt))).toBe(true);
      const t = randomBytes(16), data = randomBytes(493);
      const want = xor(data, model.prf(keys, t, 0, 493));
      prf.xorN0(t, data);
      expect(data.equals(want)).toBe(true);
      expect(prf.n1(t, 80).equals(model.prf(keys, t, 1, 80))).toBe(true);
    }
  });

  it('encrypt, decrypt and key updates in any order equal the model, cell after cell', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ op: fc.constantFrom('enc', 'dec', 'update'), runs: fc.integer({ min: 1, max: 20 }) }), { minLength: 1, maxLength: 8 }),
      (plan) => {
        let k = randomBytes(64);
        const uiv = new Uiv(k);
        for (const { op, runs } of plan) {
          for (let r = 0; r < runs; r++) {
            if (op === 'update') {
              const n = randomBytes(16);
              const next = model.update(k, n);
              uiv.update(n);
              expect(n.equals(next.n)).toBe(true);
              k = next.k;
              expect(uiv.keys().equals(k)).toBe(true);
              break; // one update per step; the runs are cells under the new keys
            }
            const h = randomBytes(CGO_TAG_LEN), ad = r & 0xff, cell = randomBytes(CGO_CELL_LEN);
            const want = op === 'enc' ? model.encrypt(k, h, ad, cell) : model.decrypt(k, h, ad, cell);
            if (op === 'enc') uiv.encrypt(h, ad, cell); else uiv.decrypt(h, ad, cell);
            expect(cell.equals(want)).toBe(true);
          }
        }
      },
    ), { numRuns: 40 });
  });
});
