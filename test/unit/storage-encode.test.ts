import { describe, it, expect } from 'vitest';
import { CHUNK_OVERHEAD, ChunkKind, decodeChunk, decryptChunk, encodeChunk, encryptChunk, screenShares } from '../../src/storage/encode';
import { checkShare, shareId, verifyShare, parseShareId, shareIdHex } from '../../src/storage/share';
import { isBitcloudError } from '../../src/errors';

const key = Buffer.alloc(32, 0x42);
const coding = { k: 4, n: 6 };

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('chunk encryption (SPEC §9.2)', () => {
  it('round-trips and adds nonce + tag', () => {
    const p = Buffer.from('hello, storage');
    const e = encryptChunk(key, 3, p);
    expect(e.length).toBe(p.length + CHUNK_OVERHEAD);
    expect(decryptChunk(key, 3, e).equals(p)).toBe(true);
  });

  it('is deterministic for equal (key, kind, index, plaintext) and differs otherwise', () => {
    const p = Buffer.alloc(100, 1);
    expect(encryptChunk(key, 0, p).equals(encryptChunk(key, 0, p))).toBe(true);
    expect(encryptChunk(key, 1, p).subarray(0, 24).equals(encryptChunk(key, 0, p).subarray(0, 24))).toBe(false);
    const q = Buffer.from(p); q[99] = 2;
    // A changed plaintext gets another nonce: a key reused on edited content never reuses a nonce.
    expect(encryptChunk(key, 0, q).subarray(0, 24).equals(encryptChunk(key, 0, p).subarray(0, 24))).toBe(false);
  });

  it('binds index, kind and key: a moved, retyped or foreign chunk fails with CHUNK_AUTH_FAILED', () => {
    const e = encryptChunk(key, 5, Buffer.from('x'));
    expect(codeOf(() => decryptChunk(key, 6, e))).toBe('CHUNK_AUTH_FAILED');
    expect(codeOf(() => decryptChunk(key, 5, e, ChunkKind.MANIFEST))).toBe('CHUNK_AUTH_FAILED');
    expect(codeOf(() => decryptChunk(Buffer.alloc(32, 1), 5, e))).toBe('CHUNK_AUTH_FAILED');
    const t = Buffer.from(e); t[30] ^= 1;
    expect(codeOf(() => decryptChunk(key, 5, t))).toBe('CHUNK_AUTH_FAILED');
    expect(codeOf(() => decryptChunk(key, 5, e.subarray(0, 39)))).toBe('CHUNK_AUTH_FAILED');
  });

  it('refuses a key of the wrong size', () => {
    expect(codeOf(() => encryptChunk(Buffer.alloc(16), 0, Buffer.alloc(1)))).toBe('STORAGE_KEY_INVALID');
  });
});

describe('encodeChunk / decodeChunk', () => {
  for (const len of [0, 1, 2, 17, 1000, 65536 + 3]) {
    it(`${len}-byte chunk: shares named by their hash, rebuilt from any k`, () => {
      const p = Buffer.from(Array.from({ length: len }, (_, i) => (i * 7) & 0xff));
      const enc = encodeChunk(key, 0, p, coding);
      expect(enc.encLen).toBe(len + CHUNK_OVERHEAD);
      expect(enc.shares).toHaveLength(6);
      for (const s of enc.shares) {
        expect(s.bytes.length).toBe(Math.ceil(enc.encLen / 4));
        expect(checkShare(s.id, s.bytes)).toBe(true);
      }
      const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
      for (const drop of [[], [0, 1], [2, 5], [4, 5], [0, 3]]) {
        const given = enc.shares.map((s, i) => (drop.includes(i) ? null : s.bytes));
        expect(decodeChunk(key, 0, given, coding, ref).equals(p)).toBe(true);
      }
    });
  }

  it('a corrupted share counts as missing and another share replaces it', () => {
    const p = Buffer.alloc(5000, 9);
    const enc = encodeChunk(key, 2, p, coding);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    const bad = Buffer.from(enc.shares[1].bytes); bad[0] ^= 0xff;
    const given: (Buffer | null)[] = [enc.shares[0].bytes, bad, enc.shares[2].bytes, enc.shares[3].bytes, null, null];
    expect(screenShares(ref, coding, given).rejected).toEqual([1]);
    try {
      decodeChunk(key, 2, given, coding, ref);
      expect.unreachable();
    } catch (e) {
      expect(isBitcloudError(e, 'CHUNK_TOO_FEW_SHARES')).toBe(true);
      expect((e as { detail: { rejected: number[] } }).detail.rejected).toEqual([1]);
    }
    given[4] = enc.shares[4].bytes;
    expect(decodeChunk(key, 2, given, coding, ref).equals(p)).toBe(true);
    // A share of the wrong length is also treated as missing, not thrown.
    given[0] = enc.shares[0].bytes.subarray(1);
    given[5] = enc.shares[5].bytes;
    expect(decodeChunk(key, 2, given, coding, ref).equals(p)).toBe(true);
  });

  it('shares moved to another chunk index do not decode', () => {
    const enc = encodeChunk(key, 0, Buffer.alloc(100, 3), coding);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    expect(codeOf(() => decodeChunk(key, 1, enc.shares.map((s) => s.bytes), coding, ref))).toBe('CHUNK_AUTH_FAILED');
  });

  it('durable 3-of-10 survives the loss of 7 shares', () => {
    const c = { k: 3, n: 10 };
    const p = Buffer.alloc(3000, 5);
    const enc = encodeChunk(key, 0, p, c);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    const given = enc.shares.map((s, i) => ([2, 6, 9].includes(i) ? s.bytes : null));
    expect(decodeChunk(key, 0, given, c, ref).equals(p)).toBe(true);
  });
});

describe('share ids', () => {
  it('BLAKE2b-256 of the bytes; hex form; strict parse', () => {
    const id = shareId(Buffer.from('abc'));
    expect(id.length).toBe(32);
    expect(() => verifyShare(id, Buffer.from('abd'))).toThrowError(/SHARE_HASH_MISMATCH/);
    expect(parseShareId(shareIdHex(id)).equals(id)).toBe(true);
    expect(codeOf(() => parseShareId('AB'.repeat(32)))).toBe('STORAGE_BAD_REQUEST');
    expect(codeOf(() => parseShareId(Buffer.alloc(31)))).toBe('STORAGE_BAD_REQUEST');
  });
});
