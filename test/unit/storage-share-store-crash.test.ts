// SPEC.md §9.8.2: what a put's acknowledgement guarantees. A node writing many shares at once
// (share files and lease records made durable side by side, journal fsyncs shared by concurrent
// puts) is killed with SIGKILL in the middle of a batch; after reopening the store, every share
// whose put had resolved is there, hashes to its id and keeps the lease it was given (not the
// grace lease of a share found without one), and no temp file of an unfinished write is left.
// SIGKILL stops the process, not the machine: what reaches the disk's cache is kept here; the
// fsyncs before each acknowledgement are what carries the same promise across a power loss.
import { describe, it, expect, afterEach, vi } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShareStore } from '../../storage/share-store';
import { checkShare, shareId } from '../../src/storage/share';
import { LeaseJournal } from '../../storage/lease-journal';
import { randomBytes } from '../../src/crypto/primitives';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

/** Run the writer until it has acknowledged `acks` shares (and a batch is under way), then SIGKILL it. */
function writeThenKill(dir: string, acks: number, concurrent: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['bin/run-ts.js', 'test/helpers/share-store-writer.ts', dir, String(concurrent)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    const acked: string[] = [];
    let buf = '';
    let err = '';
    let killed = false;
    p.stderr!.on('data', (d) => { err += d; });
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (/^[0-9a-f]{64}$/.test(line)) acked.push(line);
      }
      if (!killed && acked.length >= acks) {
        killed = true;
        p.kill('SIGKILL');
      }
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(acked);
      else reject(new Error(`writer exited (${code}) before it was killed: ${err}`));
    });
  });
}

async function tempFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { recursive: true })) if (path.basename(e).endsWith('.tmp')) out.push(e);
  return out;
}

describe('share store killed in the middle of a batch of puts', () => {
  it('keeps every acknowledged share with its lease', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const acked = await writeThenKill(dir, 60, 8);
    expect(acked.length).toBeGreaterThanOrEqual(60);

    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 32 });
    try {
      const ids = acked.map((h) => Buffer.from(h, 'hex'));
      expect(store.has(ids).every(Boolean)).toBe(true);
      for (const id of ids) expect(checkShare(id, await store.read(id, { fromDisk: true }))).toBe(true);
      // The 30-day lease each put was given survived (a share without its lease record would get
      // the one-hour grace lease instead). renew() never shortens: it reports the lease held.
      const minExpiry = Math.floor(Date.now() / 1000) + 29 * 86_400;
      for (const exp of await store.renew(ids, 1)) expect(exp).toBeGreaterThan(minExpiry);
      // Shares written but not acknowledged may or may not be there; none is half-written.
      expect(store.stat().shares).toBeGreaterThanOrEqual(acked.length);
      expect(await tempFiles(path.join(dir, 'shares'))).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('when a put is answered', () => {
  it('waits for the lease record to be durable, even when the share file is already written', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 24 });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      const real = LeaseJournal.prototype.append;
      const append = vi.spyOn(LeaseJournal.prototype, 'append').mockImplementation(function (this: LeaseJournal, recs) {
        // Made durable only when the test says so.
        return held.then(() => real.call(this, recs));
      });
      const data = randomBytes(4096);
      const id = shareId(data);
      let answered = false;
      const put = store.put(id, data, 3600).then((r) => { answered = true; return r; });
      // Let the share file's write, fsync and rename finish: the file is in place, the lease is not.
      const hex = id.toString('hex');
      const file = path.join(dir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex);
      while (!(await fsp.access(file).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setImmediate(r));
      expect(append).toHaveBeenCalledTimes(1);
      expect(answered).toBe(false);
      release();
      expect((await put).stored).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('a failed lease write fails the put (never acknowledged without its lease)', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 24 });
    try {
      vi.spyOn(LeaseJournal.prototype, 'append').mockRejectedValueOnce(Object.assign(new Error('EIO'), { code: 'EIO' }));
      const data = randomBytes(4096);
      const id = shareId(data);
      await expect(store.put(id, data, 3600)).rejects.toMatchObject({ code: 'STORAGE_IO_ERROR' });
      expect(store.has([id])).toEqual([false]);
      // A second put of the same share goes through the whole path again and is kept.
      expect((await store.put(id, data, 3600)).stored).toBe(true);
      expect(store.has([id])).toEqual([true]);
    } finally {
      await store.close();
    }
  });
});
