// SPEC.md §3.2.3: a file written atomically into a folder made on the way is not done until the
// parent of each folder made is fsynced (a new folder is only an entry in its parent). A power
// loss cannot be made in a test, so these watch the fsyncs.
import { describe, it, expect, afterEach, vi } from 'vitest';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LatestFileWriter, mkdirDurable, mkdirDurableSync, writeFileAtomic, writeFileAtomicExclusive, writeFileAtomicSync } from '../../src/ops/fsutil';
import { watchSyncs, watchSyncsAndCloses } from '../helpers/fsync-watch';

const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function tmp(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-fsutil-'));
  dirs.push(d);
  return d;
}

describe('mkdirDurable', () => {
  it('fsyncs the parent of every folder it creates, and nothing when the folder exists', async () => {
    const root = await tmp();
    const synced = watchSyncs();
    expect(await mkdirDurable(path.join(root, 'a', 'b', 'c'), 0o700)).toBe(true);
    expect(synced.sort()).toEqual([root, path.join(root, 'a'), path.join(root, 'a', 'b')].sort());
    expect((await fsp.stat(path.join(root, 'a', 'b', 'c'))).mode & 0o777).toBe(0o700);
    synced.length = 0;
    expect(await mkdirDurable(path.join(root, 'a', 'b', 'c'))).toBe(false);
    expect(synced).toEqual([]);
  });

  it('a second caller whose folder is already made waits for the first caller\'s fsyncs', async () => {
    const root = await tmp();
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let held!: () => void;
    const holding = new Promise<void>((r) => { held = r; });
    const { closed, until } = watchSyncsAndCloses((p) => { if (p === root) { held(); return gate; } return undefined; });
    const first = mkdirDurable(path.join(root, 'a', 'b'));
    await holding; // the first call made root/a and root/a/b; root's fsync (holding root/a) is held
    let secondDone = false;
    const second = mkdirDurable(path.join(root, 'a', 'c')).then((made) => { secondDone = true; return made; });
    // Both calls' fsyncs of root/a (holding b, then c) finish, their handles closed; root's is
    // still held. After the second close the second call goes on without I/O: by the next
    // macrotask it has ended, or it waits for root's fsync.
    const a = path.join(root, 'a');
    await until(() => closed.filter((p) => p === a).length >= 2);
    await new Promise((r) => setImmediate(r));
    // root/a/c is made and root/a synced, but root/a itself may still vanish: not done yet.
    expect(secondDone).toBe(false);
    release();
    expect(await first).toBe(true);
    expect(await second).toBe(true);
  });

  it('the sync form fsyncs the same folders', async () => {
    const root = await tmp();
    const opened: string[] = [];
    const fs = await import('node:fs');
    const realOpen = fs.default.openSync;
    vi.spyOn(fs.default, 'openSync').mockImplementation((p, ...rest) => { opened.push(path.resolve(String(p))); return realOpen(p, ...rest); });
    expect(mkdirDurableSync(path.join(root, 'x', 'y'), 0o700)).toBe(true);
    expect(opened.sort()).toEqual([root, path.join(root, 'x')].sort());
  });
});

describe('writeFileAtomic into a new folder', () => {
  it('makes the folder durable as well as the file', async () => {
    const root = await tmp();
    const synced = watchSyncs();
    const file = path.join(root, 'data', 'keys', 'secret_id_key');
    await writeFileAtomic(file, Buffer.from('k'), 0o600);
    expect(synced).toEqual(expect.arrayContaining([root, path.join(root, 'data'), path.join(root, 'data', 'keys')]));
    expect(await fsp.readFile(file, 'utf8')).toBe('k');
    writeFileAtomicSync(path.join(root, 'sync', 'f'), 'v', 0o600);
    expect(await fsp.readFile(path.join(root, 'sync', 'f'), 'utf8')).toBe('v');
  });
});

describe('writeFileAtomicExclusive on a filesystem without hard links', () => {
  /** link(2) fails with `code` from now on (as on some FUSE, SMB or exFAT mounts). */
  const noLinks = (code: string): void => {
    vi.spyOn(fsp, 'link').mockImplementation(() => Promise.reject(Object.assign(new Error(`link: ${code}`), { code })));
  };

  it('still makes the file, once, when link() fails with ENOTSUP (or EPERM, EXDEV)', async () => {
    const d = await tmp();
    for (const code of ['ENOTSUP', 'EPERM', 'EXDEV']) {
      const f = path.join(d, `wallet-${code}.key`);
      noLinks(code);
      expect(await writeFileAtomicExclusive(f, 'first', 0o600)).toBe(true);
      expect(await fsp.readFile(f, 'utf8')).toBe('first');
      expect((await fsp.stat(f)).mode & 0o777).toBe(0o600);
      expect(await writeFileAtomicExclusive(f, 'second', 0o600)).toBe(false);
      vi.restoreAllMocks();
      expect(await fsp.readFile(f, 'utf8')).toBe('first');
    }
    expect((await fsp.readdir(d)).sort()).toEqual(['wallet-ENOTSUP.key', 'wallet-EPERM.key', 'wallet-EXDEV.key']);
  });

  it('two calls at once: one makes the file, the other is told it exists', async () => {
    const d = await tmp();
    const f = path.join(d, 'wallet.key');
    noLinks('ENOTSUP');
    const r = await Promise.all([writeFileAtomicExclusive(f, 'a', 0o600), writeFileAtomicExclusive(f, 'b', 0o600)]);
    expect(r.filter(Boolean)).toHaveLength(1);
    expect(await fsp.readFile(f, 'utf8')).toBe(r[0] ? 'a' : 'b');
    expect(await fsp.readdir(d)).toEqual(['wallet.key']);
  });

  it('another link() failure (EIO) is still thrown, and nothing is left behind', async () => {
    const d = await tmp();
    const f = path.join(d, 'wallet.key');
    noLinks('EIO');
    await expect(writeFileAtomicExclusive(f, 'a', 0o600)).rejects.toMatchObject({ code: 'EIO' });
    expect(await fsp.readdir(d)).toEqual([]);
  });
});

describe('a file whose mode cannot be set (exFAT, vfat without `quiet`; SPEC.md §8.11.4)', () => {
  /** Every FileHandle.chmod fails with EPERM from now on. */
  const noChmod = async (d: string): Promise<void> => {
    const h = await fsp.open(path.join(d, '.probe'), 'w');
    await h.close();
    await fsp.rm(path.join(d, '.probe'));
    vi.spyOn(Object.getPrototypeOf(h) as { chmod: (m: number) => Promise<void> }, 'chmod')
      .mockRejectedValue(Object.assign(new Error('chmod: operation not permitted'), { code: 'EPERM' }));
  };

  it('the key is not kept: IO_MODE_UNSUPPORTED naming the folder, nothing left behind, with or without hard links', async () => {
    for (const links of [true, false]) {
      const d = await tmp();
      const f = path.join(d, 'wallet.key');
      await noChmod(d);
      if (!links) vi.spyOn(fsp, 'link').mockRejectedValue(Object.assign(new Error('link: ENOTSUP'), { code: 'ENOTSUP' }));
      const e: unknown = await writeFileAtomicExclusive(f, 'secret', 0o600).then(() => null, (x: unknown) => x);
      vi.restoreAllMocks();
      expect(e).toMatchObject({ code: 'IO_MODE_UNSUPPORTED', detail: { folder: d, mode: '600', errno: 'EPERM' } });
      expect(String((e as Error).message)).toContain(d);
      expect(await fsp.readdir(d)).toEqual([]);
    }
  });

  it('writeFileAtomic (a node identity key, state) fails the same way', async () => {
    const d = await tmp();
    await noChmod(d);
    const e: unknown = await writeFileAtomic(path.join(d, 'identity.key'), 'secret', 0o600).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_MODE_UNSUPPORTED' });
    expect(await fsp.readdir(d)).toEqual([]);
  });
});

describe('LatestFileWriter', () => {
  it('writes one at a time and ends with the newest content, even when an older write is slower (SPEC.md §6.8)', async () => {
    const file = path.join(await tmp(), 'consensus');
    let calls = 0;
    // The first write (fewer signatures) takes longer than the ones after it.
    const slowFirst = async (f: string, data: Uint8Array | string, mode?: number): Promise<void> => {
      if (calls++ === 0) await new Promise((r) => setTimeout(r, 50));
      await writeFileAtomic(f, data, mode);
    };
    // Unchained, the slow first write renames last: the file keeps the fewest signatures.
    await Promise.all(['three', 'four', 'five'].map((n) => slowFirst(file, `${n} signatures`)));
    expect(await fsp.readFile(file, 'utf8')).toBe('three signatures');
    calls = 0;
    const w = new LatestFileWriter(file, 0o644, () => {}, slowFirst);
    w.write(Buffer.from('three signatures'));
    w.write(Buffer.from('four signatures'));
    w.write(Buffer.from('five signatures'));
    await w.idle();
    expect(await fsp.readFile(file, 'utf8')).toBe('five signatures');
    // The one waiting behind the first was replaced by the newest before it was written.
    expect(calls).toBe(2);
  });
});


describe('a failed write whose temporary file cannot be removed either (SPEC.md §3.2.3)', () => {
  const failing = (code: string) => Object.assign(new Error(`${code}: injected`), { code });

  it('writeFileAtomic reports the write\'s failure (EIO), not the removal\'s (EBUSY)', async () => {
    const d = await tmp();
    const h = await fsp.open(path.join(d, '.probe'), 'w');
    await h.close();
    await fsp.rm(path.join(d, '.probe'));
    vi.spyOn(Object.getPrototypeOf(h) as { writeFile: (data: unknown) => Promise<void> }, 'writeFile').mockRejectedValue(failing('EIO'));
    vi.spyOn(fsp, 'rm').mockRejectedValue(failing('EBUSY'));
    const e: unknown = await writeFileAtomic(path.join(d, 'state.json'), '{}').then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'EIO' });
  });

  it('the same when the rename fails (EIO) and the removal too (EBUSY)', async () => {
    const d = await tmp();
    vi.spyOn(fsp, 'rename').mockRejectedValue(failing('EIO'));
    vi.spyOn(fsp, 'rm').mockRejectedValue(failing('EBUSY'));
    const e: unknown = await writeFileAtomic(path.join(d, 'state.json'), '{}').then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'EIO' });
  });

  it('the sync form too', async () => {
    const d = await tmp();
    const fs = await import('node:fs');
    vi.spyOn(fs.default, 'renameSync').mockImplementation(() => { throw failing('EIO'); });
    vi.spyOn(fs.default, 'rmSync').mockImplementation(() => { throw failing('EBUSY'); });
    let e: unknown = null;
    try { writeFileAtomicSync(path.join(d, 'state.json'), '{}'); } catch (x) { e = x; }
    expect(e).toMatchObject({ code: 'EIO' });
  });
});

describe('a folder fsync that fails (SPEC.md §3.2.3)', () => {
  /** Every fsync of `dir` through node:fs/promises fails with `code` from now on. */
  const failDirSync = (dir: string, code: string): void => {
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      if (path.resolve(String(args[0])) === dir) fh.sync = () => Promise.reject(Object.assign(new Error(`fsync: ${code}`), { code }));
      return fh;
    });
  };

  it('fails writeFileAtomic on EIO or ENOSPC: the renamed entry is not known to be on disk', async () => {
    for (const code of ['EIO', 'ENOSPC']) {
      const d = await tmp();
      failDirSync(d, code);
      await expect(writeFileAtomic(path.join(d, 'state.json'), '{}')).rejects.toMatchObject({ code });
      vi.restoreAllMocks();
    }
  });

  it('lets be a filesystem that does not fsync folders (EINVAL)', async () => {
    const d = await tmp();
    failDirSync(d, 'EINVAL');
    await writeFileAtomic(path.join(d, 'state.json'), '{}');
    expect(await fsp.readFile(path.join(d, 'state.json'), 'utf8')).toBe('{}');
  });
});
