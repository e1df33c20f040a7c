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
import { watchSyncs, watchSyncsAndCloses } from '../helpers/fsync-watch';

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
      const hex = id.toString('hex');
      const file = path.join(dir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex);
      // The last I/O of the share's atomic write: its folder's fsync and (a folder this put made)
      // that of shares/ab, each ended by closing the folder's handle.
      const { closed, until } = watchSyncsAndCloses();
      let answered = false;
      const put = store.put(id, data, 3600).then((r) => { answered = true; return r; });
      // Let the share file's write, fsync and rename finish: the file is in place, the lease is not.
      const leaf = path.dirname(file);
      await until(() => closed.includes(leaf) && closed.includes(path.dirname(leaf)));
      await fsp.access(file);
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
      // Nor is its file left on disk, outside the quota.
      const hex = id.toString('hex');
      await expect(fsp.access(path.join(dir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex))).rejects.toThrow();
      // A second put of the same share goes through the whole path again and is kept.
      expect((await store.put(id, data, 3600)).stored).toBe(true);
      expect(store.has([id])).toEqual([true]);
    } finally {
      await store.close();
    }
  });
});

describe('a share in a folder the put creates', () => {
  // A new folder is an entry in its parent: until the parent is fsynced a power loss may drop
  // the folder, and with it a share whose put was answered (SPEC.md §9.8.1). A power loss cannot
  // be made in a test, so this watches the fsyncs: every folder whose entries a put changed is
  // synced before the put resolves.
  it('makes shares/00 … shares/ff at open, then fsyncs shares/ab and shares/ab/cd before a put is answered', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const synced = watchSyncs();
    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 24 });
    try {
      const shares = path.join(dir, 'shares');
      expect((await fsp.readdir(shares)).length).toBe(256);
      expect(synced).toContain(shares);
      synced.length = 0;
      const data = randomBytes(4096);
      const id = shareId(data);
      const hex = id.toString('hex');
      await expect(fsp.access(path.join(shares, hex.slice(0, 2), hex.slice(2, 4)))).rejects.toThrow();
      expect((await store.put(id, data, 3600)).stored).toBe(true);
      expect(synced).toContain(path.join(shares, hex.slice(0, 2))); // holds the new shares/ab/cd
      expect(synced).toContain(path.join(shares, hex.slice(0, 2), hex.slice(2, 4))); // holds the share
    } finally {
      await store.close();
    }
  });

  it('a second put into the same new folder waits for the first one\'s fsync of shares/ab', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 24 });
    let release = () => {};
    try {
      // Two shares whose ids start with the same two bytes: one folder shares/ab/cd.
      const a = randomBytes(64);
      const ha = shareId(a).toString('hex');
      let b: Buffer;
      do b = randomBytes(64); while (shareId(b).toString('hex').slice(0, 4) !== ha.slice(0, 4));
      const ab = path.join(dir, 'shares', ha.slice(0, 2));
      const gate = new Promise<void>((r) => { release = r; });
      const { synced, closed, until } = watchSyncsAndCloses((p) => (p === ab ? gate : undefined));
      // Each put's lease record is written beside its share (SPEC.md §9.8.2): both awaited when durable.
      const journal = (store as unknown as { journal: LeaseJournal }).journal;
      const append = journal.append.bind(journal);
      const appends: Promise<void>[] = [];
      let secondAppended!: () => void;
      const twoAppends = new Promise<void>((r) => { secondAppended = r; });
      journal.append = (records) => { const p = append(records); appends.push(p); if (appends.length === 2) secondAppended(); return p; };
      const first = store.put(shareId(a), a, 3600);
      const leaf = path.join(ab, ha.slice(2, 4));
      await until(() => synced.includes(leaf));
      let secondDone = false;
      const second = store.put(shareId(b), b, 3600).then((r) => { secondDone = true; return r; });
      // Both puts' fsyncs of shares/ab/cd end, their handles closed, and both lease records are
      // durable; shares/ab's fsync is still held. After that the second put goes on without I/O:
      // by the next macrotask it has ended, or it waits for shares/ab's fsync.
      await until(() => closed.filter((p) => p === leaf).length >= 2);
      await twoAppends;
      await Promise.all(appends);
      await new Promise((r) => setImmediate(r));
      // Both shares are in shares/ab/cd and that folder is synced; shares/ab is not yet.
      expect(secondDone).toBe(false);
      release();
      expect((await first).stored).toBe(true);
      expect((await second).stored).toBe(true);
    } finally {
      release(); // a failed check must not leave the first put (and close) waiting
      await store.close();
    }
  });
});

describe('rewriting the lease journal while puts are under way', () => {
  // SPEC.md §9.8.2: the journal is rewritten with the live leases once it holds many records
  // (here by a GC run). A put whose lease record is already written but whose share file is still being
  // synced is not among the live leases yet: the rewrite must wait for it, or its lease is lost and
  // the share, whose put was answered, gets the grace lease after a restart and is then deleted.
  it('keeps the lease of a put whose share was still being written', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-crash-'));
    dirs.push(dir);
    const clock = { ms: Date.now() };
    const store = await ShareStore.open({ dir, quotaBytes: 2 ** 24, now: () => clock.ms });
    const journalOf = (s: ShareStore) => (s as unknown as { journal: LeaseJournal }).journal;
    let reopened: ShareStore | null = null;
    try {
      // More than 1024 records for one share, appended to the journal itself (a put or renewal
      // would rewrite it at once): the next GC run rewrites it.
      const a = randomBytes(256);
      const { expiresAt } = await store.put(shareId(a), a, 3600);
      await journalOf(store).append(Array.from({ length: 1100 }, () => ({ id: shareId(a), expiresAt })));
      expect(journalOf(store).recordCount).toBeGreaterThan(1024);

      // A put of b whose share file's fsync is held: its lease record is written first.
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      watchSyncs((p) => (p.endsWith('.tmp') ? gate : undefined));
      const b = randomBytes(256);
      const before = journalOf(store).recordCount;
      // b's lease record: its append resolves once the record is written and synced.
      const realAppend = LeaseJournal.prototype.append;
      const appended = new Promise<void>((resolve) => {
        vi.spyOn(LeaseJournal.prototype, 'append').mockImplementationOnce(function (this: LeaseJournal, recs) {
          const p = realAppend.call(this, recs);
          void p.then(resolve, () => {});
          return p;
        });
      });
      const put = store.put(shareId(b), b, 30 * 86_400);
      await appended;
      expect(journalOf(store).recordCount).toBeGreaterThan(before);
      // A GC run now rewrites the journal (far more records than leases): wait until the rewrite
      // is asked for (the store's compactJournal called: it waits for the put's lease write to
      // end, then calls the journal's compact).
      type Compacting = { compactJournal(): Promise<void> };
      const realCompactJournal = (ShareStore.prototype as unknown as Compacting).compactJournal;
      const compactAsked = new Promise<void>((resolve) => {
        vi.spyOn(ShareStore.prototype as unknown as Compacting, 'compactJournal').mockImplementation(function (this: Compacting) {
          resolve();
          return realCompactJournal.call(this);
        });
      });
      const gc = store.gc();
      await compactAsked;
      release();
      expect((await put).stored).toBe(true);
      await gc;
      await store.close();
      vi.restoreAllMocks();

      reopened = await ShareStore.open({ dir, quotaBytes: 2 ** 24, now: () => clock.ms });
      // b keeps its 30-day lease (renew never shortens and reports the lease held), not the
      // one-hour grace lease of a share found without one.
      const [exp] = await reopened.renew([shareId(b)], 1);
      expect(exp).toBeGreaterThan(Math.floor(clock.ms / 1000) + 29 * 86_400);
    } finally {
      await (reopened ?? store).close().catch(() => {});
    }
  });
});
