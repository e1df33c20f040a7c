// SPEC.md §9.2–9.3, §9.18.2: chunks encoded on the coder pool's worker threads are byte for byte
// what encodeChunk and the audit roots give on the calling thread, with an owned (moved) or a
// copied plaintext; a worker's error comes back as the same typed error.
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

describe('chunk coder pool: decode', () => {
  const dpool = new ChunkCoderPool(1);
  afterAll(() => dpool.close());

  it('decodes from the data shares, from parity (Reed–Solomon), and reports a wrong key as CHUNK_AUTH_FAILED', async () => {
    expect(await dpool.warm()).toBe(true); // on the worker, not inline while it starts
    const key = randomBytes(32);
    const coding = { k: 4, n: 6 };
    const plain = randomBytes(700_001);
    const enc = encodeChunk(key, 3, plain, coding, ChunkKind.DATA);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    const all = enc.shares.map((s) => s.bytes);
    expect((await dpool.decode(key, 3, [...all.slice(0, 4), null, null], coding, ref, ChunkKind.DATA)).equals(plain)).toBe(true);
    expect((await dpool.decode(key, 3, [null, all[1], null, all[3], all[4], all[5]], coding, ref, ChunkKind.DATA)).equals(plain)).toBe(true);
    await expect(dpool.decode(randomBytes(32), 3, all, coding, ref, ChunkKind.DATA)).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
    await expect(dpool.decode(key, 3, [all[0], null, null, null, null, all[5]], coding, ref, ChunkKind.DATA)).rejects.toMatchObject({ code: 'CHUNK_TOO_FEW_SHARES' });
    // the caller's shares are copied, not moved
    expect(all[0].length).toBe(enc.shares[0].bytes.length);
  });

  it('with move, shares that own their buffers go to the worker without a copy; others are copied', async () => {
    const key = randomBytes(32);
    const coding = { k: 4, n: 6 };
    const plain = randomBytes(300_000);
    const enc = encodeChunk(key, 5, plain, coding, ChunkKind.DATA);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    // As a storage answer holds a share: a view a few bytes into a buffer of its own.
    const own = enc.shares.map((s) => { const b = Buffer.allocUnsafe(s.bytes.length + 12); s.bytes.copy(b, 9); return b.subarray(9, 9 + s.bytes.length); });
    const got = await dpool.decode(key, 5, [own[0], null, own[2], own[3], own[4], null], coding, ref, ChunkKind.DATA, { move: true });
    expect(got.equals(plain)).toBe(true);
    expect(own[0].length).toBe(0); // moved
    expect(own[1].length).toBe(enc.shares[1].bytes.length); // not asked for: untouched
    // Views of one shared buffer (encodeChunk's shares) are never moved.
    const shared = enc.shares.map((s) => s.bytes);
    expect((await dpool.decode(key, 5, [...shared.slice(0, 4), null, null], coding, ref, ChunkKind.DATA, { move: true })).equals(plain)).toBe(true);
    expect(shared[0].length).toBe(enc.shares[0].bytes.length);
  });
});

describe('chunk coder pool: process exit', () => {
  const children: ReturnType<typeof spawn>[] = [];
  // A program that hangs (the bug this guards against) is stopped when the test gives up on it.
  afterAll(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });
  it('never keeps a process alive: a program that used it (workers starting or idle) exits by itself', async () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-pool-exit-'));
    const mod = (p: string) => JSON.stringify(path.join(root, p));
    const head = [
      `import { ChunkCoderPool } from ${mod('src/storage/coder-pool.ts')};`,
      `import { randomBytes } from ${mod('src/crypto/primitives.ts')};`,
      'const pool = ChunkCoderPool.shared();',
    ];
    const programs = {
      // one chunk, encoded inline while the workers start; then nothing left to do
      starting: ['await pool.encode(randomBytes(32), 0, randomBytes(1 << 20), { k: 4, n: 6 }, 1, true);'],
      // workers up and used, then idle
      idle: ['await pool.warm();', 'await pool.encode(randomBytes(32), 1, randomBytes(1 << 20), { k: 4, n: 6 }, 1, true);'],
    };
    try {
      for (const [name, body] of Object.entries(programs)) {
        const script = path.join(dir, `${name}.mts`);
        await fsp.writeFile(script, [...head, ...body, "console.log('done');"].join('\n'));
        const child = spawn(process.execPath, [path.join(root, 'bin/run-ts.js'), script], { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        let out = '';
        let errOut = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
        child.stderr.setEncoding('utf8').on('data', (c: string) => { errOut += c; });
        const code = await new Promise<number | null>((resolve) => child.once('close', resolve)); // after its output is read
        expect({ name, out: out.trim(), code }, errOut).toEqual({ name, out: 'done', code: 0 });
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
