// SPEC.md §9.2–9.3, §9.18.2: chunks encoded on the coder pool's worker threads are byte for byte
// what encodeChunk and the audit roots give on the calling thread, with an owned (moved) or a
// copied plaintext; a worker's error comes back as the same typed error.
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { ChunkCoderPool, encodeInline } from '../../src/storage/coder-pool';
import { ChunkKind, decodeChunk, encodeChunk } from '../../src/storage/encode';
import { auditRoot } from '../../src/storage/audit';

const pool = new ChunkCoderPool(2);
afterAll(() => pool.close());

describe('chunk coder pool', () => {
  it('starts its workers', async () => {
    expect(await pool.warm()).toBe(true);
  });

  it('encodes exactly as encodeChunk and auditRoot do, for several codings and sizes', async () => {
    const key = randomBytes(32);
    for (const [coding, len] of [[{ k: 4, n: 6 }, 1 << 20], [{ k: 3, n: 10 }, 300_001], [{ k: 1, n: 1 }, 70_000], [{ k: 4, n: 6 }, 100]] as const) {
      const plain = randomBytes(len);
      const want = encodeChunk(key, 7, plain, coding, ChunkKind.DATA);
      const got = await pool.encode(key, 7, plain, coding, ChunkKind.DATA, true);
      expect(got.encLen).toBe(want.encLen);
      expect(got.shares.map((s) => s.id.toString('hex'))).toEqual(want.shares.map((s) => s.id.toString('hex')));
      got.shares.forEach((s, i) => expect(s.bytes.equals(want.shares[i].bytes)).toBe(true));
      expect(got.auditRoots!.map((r) => r.toString('hex'))).toEqual(want.shares.map((s) => auditRoot(s.bytes).toString('hex')));
      // and they decode back
      const ref = { encLen: got.encLen, shareIds: got.shares.map((s) => s.id) };
      expect(decodeChunk(key, 7, got.shares.map((s) => s.bytes), coding, ref).equals(plain)).toBe(true);
    }
  });

  it('takes an owned plaintext without a copy (its buffer moves to the worker) and gives the same shares', async () => {
    const key = randomBytes(32);
    const src = randomBytes(200_000);
    const owned = Buffer.allocUnsafeSlow(src.length);
    src.copy(owned);
    const got = await pool.encode(key, 0, owned, { k: 4, n: 6 }, ChunkKind.DATA, false, true);
    expect(owned.length).toBe(0); // detached: moved, not copied
    expect(got.auditRoots).toBeNull();
    const want = encodeInline(key, 0, src, { k: 4, n: 6 }, ChunkKind.DATA, false);
    got.shares.forEach((s, i) => expect(s.bytes.equals(want.shares[i].bytes)).toBe(true));
  });

  it('a bad input is the same typed error as inline', async () => {
    await expect(pool.encode(Buffer.alloc(8), 0, randomBytes(1000), { k: 4, n: 6 }, ChunkKind.DATA, false)).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID' });
    // the pool keeps working after an error
    const key = randomBytes(32);
    const got = await pool.encode(key, 1, Buffer.alloc(5000, 1), { k: 2, n: 3 }, ChunkKind.DATA, false);
    expect(got.shares).toHaveLength(3);
  });
});
