// SPEC.md §9.9.1: get's output bookkeeping — the part file, the progress record, resuming only
// what matches, the atomic finish, and discarding what can never succeed.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DownloadOutput, PART_SUFFIX } from '../../src/client/storage-client-resume';

let dir: string;
const ID = 'ab'.repeat(32);
beforeAll(async () => { dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-resume-')); });
afterAll(async () => { await fsp.rm(dir, { recursive: true, force: true }); });

describe('DownloadOutput', () => {
  it('writes chunks at their offsets; nothing at the output path until finish()', async () => {
    const out = path.join(dir, 'a.bin');
    const o = await DownloadOutput.open(out, ID, 10, 3);
    expect(o.resumed).toBe(0);
    await o.writeChunk(2, 8, Buffer.from('yz'));
    await o.writeChunk(0, 0, Buffer.from('abcd'));
    expect(fs.existsSync(out)).toBe(false);
    await o.writeChunk(1, 4, Buffer.from('efgh'));
    await o.finish();
    expect(await fsp.readFile(out, 'latin1')).toBe('abcdefghyz');
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
  });

  it('a suspended download resumes the chunks it recorded, and only for the same manifest', async () => {
    const out = path.join(dir, 'b.bin');
    const o = await DownloadOutput.open(out, ID, 10, 3);
    await o.writeChunk(1, 4, Buffer.from('efgh'));
    await o.suspend();
    const rec = JSON.parse(await fsp.readFile(DownloadOutput.progressPath(out), 'utf8'));
    expect(rec).toMatchObject({ version: 1, manifestId: ID, size: 10, chunks: 3 });

    const again = await DownloadOutput.open(out, ID, 10, 3);
    expect(again.resumed).toBe(1);
    expect([again.isDone(0), again.isDone(1), again.isDone(2)]).toEqual([false, true, false]);
    await again.suspend();

    // Another manifest (or size, or chunk count) under the same output name starts afresh.
    for (const [id, size, chunks] of [['cd'.repeat(32), 10, 3], [ID, 11, 3], [ID, 10, 4]] as const) {
      const other = await DownloadOutput.open(out, id, size, chunks);
      expect(other.resumed).toBe(0);
      await other.discard();
      const back = await DownloadOutput.open(out, ID, 10, 3);
      await back.writeChunk(1, 4, Buffer.from('efgh'));
      await back.suspend();
    }
  });

  it('a file where the output needs a folder is IO_NOT_A_DIRECTORY naming that file (SPEC.md §9.9.1)', async () => {
    const file = path.join(dir, 'plain-file');
    await fsp.writeFile(file, 'x');
    for (const out of [path.join(file, 'out.bin'), path.join(file, 'sub', 'deeper', 'out.bin')]) {
      const e = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
      expect(e).toMatchObject({ code: 'IO_NOT_A_DIRECTORY' });
      expect((e as Error).message).toContain(file);
    }
    expect(await fsp.readFile(file, 'utf8')).toBe('x');
  });

  it('a damaged record or a part file of the wrong size is ignored', async () => {
    const out = path.join(dir, 'c.bin');
    const o = await DownloadOutput.open(out, ID, 10, 3);
    await o.writeChunk(0, 0, Buffer.from('abcd'));
    await o.suspend();
    await fsp.writeFile(DownloadOutput.progressPath(out), '{not json');
    const fresh = await DownloadOutput.open(out, ID, 10, 3);
    expect(fresh.resumed).toBe(0);
    await fresh.suspend();
    const p = await DownloadOutput.open(out, ID, 10, 3);
    await p.writeChunk(0, 0, Buffer.from('abcd'));
    await p.suspend();
    await fsp.truncate(DownloadOutput.partPath(out), 5);
    const q = await DownloadOutput.open(out, ID, 10, 3);
    expect(q.resumed).toBe(0);
    await q.discard();
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
  });

  it('a run stopped before any chunk was recorded leaves no part file behind; one with recorded chunks keeps it (SPEC.md §9.9.1)', async () => {
    const out = path.join(dir, 'e.bin');
    // Nothing fetched (every node down for the first chunk): nothing a rerun could resume.
    const o = await DownloadOutput.open(out, ID, 1 << 20, 3);
    await o.suspend();
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
    expect(fs.existsSync(out)).toBe(false);
    // A chunk written: the part file and its record stay, and a rerun that adds nothing keeps them.
    const p = await DownloadOutput.open(out, ID, 1 << 20, 3);
    await p.writeChunk(1, 4, Buffer.from('efgh'));
    await p.suspend();
    const q = await DownloadOutput.open(out, ID, 1 << 20, 3);
    expect(q.resumed).toBe(1);
    await q.suspend();
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
    const r = await DownloadOutput.open(out, ID, 1 << 20, 3);
    expect(r.resumed).toBe(1);
    await r.discard();
  });

  it('a run that recorded nothing removes neither another run\'s part file nor one a record names (SPEC.md §9.9.1)', async () => {
    const out = path.join(dir, 'f.bin');
    // Two runs on one output, which the output's lock keeps apart unless the lock file is removed
    // by hand (as here): the first fails before its first save, the second has saved.
    const lock = DownloadOutput.lockPath(out);
    const a = await DownloadOutput.open(out, ID, 10, 3);
    fs.rmSync(lock);
    const b = await DownloadOutput.open(out, ID, 10, 3);
    await b.writeChunk(0, 0, Buffer.from('abcd'));
    await b.checkpoint();
    await a.suspend();
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(true);
    await b.writeChunk(1, 4, Buffer.from('efgh'));
    await b.writeChunk(2, 8, Buffer.from('yz'));
    await b.finish();
    expect(await fsp.readFile(out, 'latin1')).toBe('abcdefghyz');
    await fsp.rm(out);
    // The part file at the path is no longer this run's (removed and made again by another run).
    const c = await DownloadOutput.open(out, ID, 10, 3);
    await fsp.rm(DownloadOutput.partPath(out));
    fs.rmSync(lock);
    const d = await DownloadOutput.open(out, ID, 10, 3);
    await c.suspend();
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
    await d.writeChunk(0, 0, Buffer.from('abcd'));
    await d.writeChunk(1, 4, Buffer.from('efgh'));
    await d.writeChunk(2, 8, Buffer.from('yz'));
    await d.finish();
    expect(await fsp.readFile(out, 'latin1')).toBe('abcdefghyz');
  });

  it('starting afresh drops the old record at once: a run that stops before any checkpoint does not leave zeros marked done (SPEC.md §9.9.1)', async () => {
    const out = path.join(dir, 'd.bin');
    // Every chunk recorded done, its part file gone (or of the wrong size, or a bitmap of the wrong length).
    const all = Buffer.from([0x07]).toString('base64');
    const damage: [string, () => Promise<void>][] = [
      [all, () => fsp.rm(DownloadOutput.partPath(out), { force: true })],
      [all, () => fsp.truncate(DownloadOutput.partPath(out), 5)],
      [Buffer.from([0x07, 0xff]).toString('base64'), async () => {}],
    ];
    for (const [done, harm] of damage) {
      const o = await DownloadOutput.open(out, ID, 10, 3);
      await o.suspend();
      await fsp.writeFile(DownloadOutput.partPath(out), Buffer.alloc(10)); // a part file of the right size
      await fsp.writeFile(DownloadOutput.progressPath(out), JSON.stringify({ version: 1, manifestId: ID, size: 10, chunks: 3, done }));
      await harm();
      const fresh = await DownloadOutput.open(out, ID, 10, 3);
      expect(fresh.resumed).toBe(0);
      await fresh.suspend();
      const next = await DownloadOutput.open(out, ID, 10, 3);
      expect(next.resumed).toBe(0);
      expect([next.isDone(0), next.isDone(1), next.isDone(2)]).toEqual([false, false, false]);
      await next.discard();
    }
  });
});

describe('a link at the part path is replaced, never followed (SPEC.md §9.9.1)', () => {
  it('a symlink at <out>.bitcloud-part leaves the file it points to untouched, starting afresh or with a record naming it', async () => {
    const victim = path.join(dir, 'victim.txt');
    const content = 'precious bytes, not to be truncated';
    for (const withRecord of [false, true]) {
      const out = path.join(dir, `link-${withRecord}.bin`);
      await fsp.writeFile(victim, content);
      const size = Buffer.byteLength(content); // the size a record would accept for a resume
      await fsp.symlink(victim, DownloadOutput.partPath(out));
      if (withRecord) {
        await fsp.writeFile(DownloadOutput.progressPath(out), JSON.stringify({ version: 1, manifestId: ID, size, chunks: 1, done: Buffer.from([0x00]).toString('base64') }));
      }
      const o = await DownloadOutput.open(out, ID, size, 1);
      expect(o.resumed).toBe(0);
      expect(await fsp.readFile(victim, 'utf8')).toBe(content);
      expect((await fsp.lstat(DownloadOutput.partPath(out))).isFile()).toBe(true);
      await o.writeChunk(0, 0, Buffer.alloc(size, 0x41));
      await o.finish();
      expect(await fsp.readFile(victim, 'utf8')).toBe(content);
      expect(await fsp.readFile(out, 'utf8')).toBe('A'.repeat(size));
    }
  });
});

describe('one get at a time per output (SPEC.md §9.9.1)', () => {
  it('a second get of the same output fails at once with IO_STATE_LOCKED naming the holder, and leaves the first one\'s part file as it was', async () => {
    const out = path.join(dir, 'locked.bin');
    const first = await DownloadOutput.open(out, ID, 10, 3);
    await first.writeChunk(0, 0, Buffer.from('abcd')); // written, not yet recorded in the progress file
    const t0 = Date.now();
    const e = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'IO_STATE_LOCKED' });
    expect((e as Error).message).toContain(`process ${process.pid}`);
    expect(Date.now() - t0).toBeLessThan(1000); // no waiting for the holder
    expect((await fsp.readFile(DownloadOutput.partPath(out))).toString('latin1')).toBe('abcd\0\0\0\0\0\0');
    await first.writeChunk(1, 4, Buffer.from('efgh'));
    await first.writeChunk(2, 8, Buffer.from('yz'));
    await first.finish();
    expect(await fsp.readFile(out, 'latin1')).toBe('abcdefghyz');
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
    // Released on suspend and discard too: the next get of that output runs.
    const next = await DownloadOutput.open(out, ID, 10, 3);
    await next.suspend();
    const last = await DownloadOutput.open(out, ID, 10, 3);
    await last.discard();
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
  });

  it('a lock left by a get that no longer runs is taken over', async () => {
    const out = path.join(dir, 'stale.bin');
    await fsp.writeFile(DownloadOutput.lockPath(out), '2147483646'); // no such process
    const o = await DownloadOutput.open(out, ID, 10, 3);
    expect(await fsp.readFile(DownloadOutput.lockPath(out), 'utf8')).toBe(String(process.pid));
    await o.discard();
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
  });
});

describe('an output folder that cannot be written (SPEC.md §9.9.1, §9.10)', () => {
  // The tests may run as root, whom permissions do not stop: the errno is faked.
  afterEach(() => { vi.restoreAllMocks(); });
  const refused = (code: string, p: string) => Object.assign(new Error(`${code}: operation refused, '${p}'`), { code, path: p });
  const CODES = ['EACCES', 'EPERM', 'EROFS'];

  it('creating the part file: IO_NOT_WRITABLE naming it with the errno, not INTERNAL; the lock is released', async () => {
    const realOpen = fsp.open;
    for (const code of CODES) {
      const out = path.join(dir, `ro-part-${code}.bin`);
      vi.spyOn(fsp, 'open').mockImplementation(async (...a: Parameters<typeof fsp.open>) => {
        if (String(a[0]).endsWith(PART_SUFFIX)) throw refused(code, String(a[0]));
        return realOpen(...a);
      });
      const e = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
      vi.restoreAllMocks();
      expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: code, path: DownloadOutput.partPath(out) } });
      expect((e as Error).message).toContain(code);
      expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
    }
  });

  it('the lock beside the output and a folder on the way: IO_NOT_WRITABLE', async () => {
    const out = path.join(dir, 'ro-lock.bin');
    const realOpenSync = fs.openSync;
    vi.spyOn(fs, 'openSync').mockImplementation((...a: Parameters<typeof fs.openSync>) => {
      if (String(a[0]) === DownloadOutput.lockPath(out)) throw refused('EACCES', String(a[0]));
      return realOpenSync(...a);
    });
    await expect(DownloadOutput.open(out, ID, 10, 3)).rejects.toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { path: DownloadOutput.lockPath(out) } });
    vi.restoreAllMocks();
    const deep = path.join(dir, 'ro-sub', 'deeper', 'out.bin');
    vi.spyOn(fsp, 'mkdir').mockImplementation(async (p) => { throw refused('EROFS', String(p)); });
    await expect(DownloadOutput.open(deep, ID, 10, 3)).rejects.toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'EROFS' } });
  });

  it('renaming onto the output: IO_NOT_WRITABLE; suspend then keeps the recorded part file and releases the lock', async () => {
    const out = path.join(dir, 'ro-rename.bin');
    const o = await DownloadOutput.open(out, ID, 10, 3);
    await o.writeChunk(0, 0, Buffer.from('abcd'));
    await o.writeChunk(1, 4, Buffer.from('efgh'));
    await o.writeChunk(2, 8, Buffer.from('yz'));
    await o.checkpoint();
    vi.spyOn(fsp, 'rename').mockImplementation(async (from) => { throw refused('EACCES', String(from)); });
    await expect(o.finish()).rejects.toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'EACCES' } });
    vi.restoreAllMocks();
    await o.suspend();
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
    const again = await DownloadOutput.open(out, ID, 10, 3);
    expect(again.resumed).toBe(3);
    await again.finish();
    expect(await fsp.readFile(out, 'latin1')).toBe('abcdefghyz');
  });

  it('other failures are not IO_NOT_WRITABLE (an I/O error stays EIO)', async () => {
    const out = path.join(dir, 'eio.bin');
    const realOpen = fsp.open;
    vi.spyOn(fsp, 'open').mockImplementation(async (...a: Parameters<typeof fsp.open>) => {
      if (String(a[0]).endsWith(PART_SUFFIX)) throw refused('EIO', String(a[0]));
      return realOpen(...a);
    });
    await expect(DownloadOutput.open(out, ID, 10, 3)).rejects.toMatchObject({ code: 'EIO' });
  });

  it('a full disk when making the part file (ENOSPC) is IO_NOT_WRITABLE, saying the disk is full', async () => {
    const out = path.join(dir, 'full.bin');
    const realOpen = fsp.open;
    vi.spyOn(fsp, 'open').mockImplementation(async (...a: Parameters<typeof fsp.open>) => {
      if (String(a[0]).endsWith(PART_SUFFIX)) throw refused('ENOSPC', String(a[0]));
      return realOpen(...a);
    });
    const e: unknown = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).toMatch(/the disk is full/);
  });

  it('a full disk when sizing the new part file (ENOSPC): the part file is removed and the message does not claim it is kept (SPEC.md §9.9.1)', async () => {
    const out = path.join(dir, 'full-truncate.bin');
    const h = await fsp.open(path.join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(h) as { truncate: (...a: unknown[]) => Promise<unknown> };
    await h.close();
    vi.spyOn(proto, 'truncate').mockRejectedValue(refused('ENOSPC', DownloadOutput.partPath(out)));
    const e: unknown = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).toMatch(/the disk is full/);
    expect((e as Error).message).not.toMatch(/are kept|to resume/);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
  });

  it('a full disk when writing the lock or making the output folder (ENOSPC): the message says the part file is kept only when one and its record are there (SPEC.md §9.9.1)', async () => {
    const lockFull = () => vi.spyOn(fs, 'writeSync').mockImplementation(() => { throw refused('ENOSPC', 'lock'); });
    // A fresh get: no part file, no record.
    const fresh = path.join(dir, 'full-lock.bin');
    lockFull();
    let e: unknown = await DownloadOutput.open(fresh, ID, 10, 3).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).toMatch(/the disk is full/);
    expect((e as Error).message).not.toMatch(/are kept|to resume/);
    expect((e as Error).message).toMatch(/nothing was kept/);
    expect(fs.existsSync(DownloadOutput.partPath(fresh))).toBe(false);
    expect(fs.existsSync(DownloadOutput.lockPath(fresh))).toBe(false);

    // A get that recorded a chunk before: its part file and record stay, and the message says so.
    const old = path.join(dir, 'full-lock-resume.bin');
    const o = await DownloadOutput.open(old, ID, 10, 3);
    await o.writeChunk(1, 4, Buffer.from('efgh'));
    expect(await o.suspend()).toBe(true);
    lockFull();
    e = await DownloadOutput.open(old, ID, 10, 3).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).toMatch(/are kept/);
    expect(fs.existsSync(DownloadOutput.partPath(old))).toBe(true);
    expect(fs.existsSync(DownloadOutput.progressPath(old))).toBe(true);
    expect((await DownloadOutput.open(old, ID, 10, 3)).resumed).toBe(1);

    // The output's folder cannot be made: nothing of the get is there.
    const deep = path.join(dir, 'full-mkdir', 'sub', 'x.bin');
    const realMkdir = fsp.mkdir;
    vi.spyOn(fsp, 'mkdir').mockImplementation(async (...a: Parameters<typeof fsp.mkdir>) => {
      if (String(a[0]).includes('full-mkdir')) throw refused('ENOSPC', String(a[0]));
      return realMkdir(...a);
    });
    e = await DownloadOutput.open(deep, ID, 10, 3).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).not.toMatch(/are kept|to resume/);
    expect((e as Error).message).toMatch(/nothing was kept/);
  });
});

describe('a resumable part file or record this user may not open (SPEC.md §9.9.1)', () => {
  afterEach(() => { vi.restoreAllMocks(); });
  const refused = (code: string, p: string) => Object.assign(new Error(`${code}: operation refused, '${p}'`), { code, path: p });

  it('IO_NOT_WRITABLE, with the part file and its record kept: a later run resumes the recorded chunks', async () => {
    for (const which of ['part', 'record'] as const) {
      const out = path.join(dir, `ro-resume-${which}.bin`);
      const o = await DownloadOutput.open(out, ID, 10, 3);
      await o.writeChunk(0, 0, Buffer.from('abcd'));
      await o.suspend();
      const realOpen = fsp.open;
      const realReadFile = fsp.readFile;
      if (which === 'part') {
        vi.spyOn(fsp, 'open').mockImplementation(async (...a: Parameters<typeof fsp.open>) => {
          if (String(a[0]).endsWith(PART_SUFFIX)) throw refused('EACCES', String(a[0]));
          return realOpen(...a);
        });
      } else {
        vi.spyOn(fsp, 'readFile').mockImplementation((async (...a: Parameters<typeof fsp.readFile>) => {
          if (String(a[0]) === DownloadOutput.progressPath(out)) throw refused('EACCES', String(a[0]));
          return realReadFile(...a);
        }) as typeof fsp.readFile);
      }
      const e = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
      vi.restoreAllMocks();
      expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'EACCES' } });
      expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(true);
      expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
      const again = await DownloadOutput.open(out, ID, 10, 3);
      expect(again.resumed).toBe(1);
      expect((await fsp.readFile(DownloadOutput.partPath(out))).subarray(0, 4).toString('latin1')).toBe('abcd');
      await again.discard();
    }
  });
});

describe('get releases its output\'s lock on every way out (SPEC.md §9.9.1)', () => {
  it('a progress callback that throws before the first chunk is fetched: the lock goes, and the next get of that output runs', async () => {
    const { getFile } = await import('../../src/client/storage-client-get');
    const { CHUNK_OVERHEAD } = await import('../../src/storage/encode');
    const out = path.join(dir, 'progress-throws.bin');
    const manifest = {
      name: 'x', contentClass: '',
      layout: { size: 10, chunkSize: 10, coding: { k: 1, n: 1 }, chunks: [{ encLen: 10 + CHUNK_OVERHEAD }] },
    };
    const cap = { manifestId: Buffer.alloc(32, 0xab), fileKey: Buffer.alloc(32) };
    const e = await getFile({} as never, cap as never, {
      manifest: manifest as never, output: out, onProgress: () => { throw new Error('progress display failed'); },
    }).then(() => null, (x: unknown) => x);
    expect((e as Error).message).toBe('progress display failed');
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
    const next = await DownloadOutput.open(out, ID, 10, 1);
    await next.discard();
  });
});

describe('a lock another user holds (SPEC.md §9.9.1)', () => {
  afterEach(() => { vi.restoreAllMocks(); });

  it('a lock this user may not read is IO_STATE_LOCKED, not IO_NOT_WRITABLE; the lock is left alone', async () => {
    const out = path.join(dir, 'other-user.bin');
    await fsp.writeFile(DownloadOutput.lockPath(out), '1'); // another user's, mode 0600 (its PID unreadable here)
    // The tests may run as root, whom permissions do not stop: the errno is faked.
    const realRead = fs.readFileSync;
    vi.spyOn(fs, 'readFileSync').mockImplementation(((...a: Parameters<typeof fs.readFileSync>) => {
      if (String(a[0]) === DownloadOutput.lockPath(out)) {
        throw Object.assign(new Error(`EACCES: permission denied, open '${String(a[0])}'`), { code: 'EACCES', syscall: 'open', path: String(a[0]) });
      }
      return realRead(...a);
    }) as typeof fs.readFileSync);
    const e = await DownloadOutput.open(out, ID, 10, 3).then(() => null, (x: unknown) => x);
    vi.restoreAllMocks();
    expect(e).toMatchObject({ code: 'IO_STATE_LOCKED' });
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(true);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    await fsp.rm(DownloadOutput.lockPath(out));
  });
});

describe('a disk with no room left (ENOSPC, EDQUOT; SPEC.md §9.9.1)', () => {
  afterEach(() => { vi.restoreAllMocks(); });

  for (const [code, says] of [['ENOSPC', /the disk is full/], ['EDQUOT', /disk quota is reached/]] as const) {
    it(`a part-file write failing with ${code} is IO_NOT_WRITABLE saying so; suspended, the part file and its record are kept`, async () => {
      const out = path.join(dir, `full-${code}.bin`);
      const o = await DownloadOutput.open(out, ID, 10, 3);
      await o.writeChunk(0, 0, Buffer.from('abcd'));
      await o.checkpoint();
      const h = await fsp.open(DownloadOutput.partPath(out), 'r');
      const proto = Object.getPrototypeOf(h) as { write: (...a: unknown[]) => Promise<unknown> };
      await h.close();
      vi.spyOn(proto, 'write').mockRejectedValue(Object.assign(new Error(`${code}: no space left`), { code }));
      const e: unknown = await o.writeChunk(1, 4, Buffer.from('efgh')).then(() => null, (x: unknown) => x);
      vi.restoreAllMocks();
      expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: code, path: DownloadOutput.partPath(out) } });
      expect((e as Error).message).toMatch(says);
      expect((e as Error).message).toMatch(/part file and its record are kept/);
      await o.suspend();
      expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
      const rec = JSON.parse(await fsp.readFile(DownloadOutput.progressPath(out), 'utf8'));
      expect(Buffer.from(rec.done, 'base64')[0]).toBe(1);
      const again = await DownloadOutput.open(out, ID, 10, 3);
      expect(again.resumed).toBe(1);
      await again.discard();
    });
  }
});
