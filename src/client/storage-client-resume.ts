// SPEC.md §9.9.1: how `get` writes its output and resumes. Chunks are written at their offsets into
// `<out>.bitcloud-part`; which chunks are done is kept in `<out>.bitcloud-progress` (small JSON,
// replaced atomically, only after the part file was fsynced, so a chunk is never marked done
// before its bytes are durable). At the end the part file is fsynced and renamed onto `<out>`:
// the output path holds the whole verified file or nothing. One run at a time writes them: a get
// holds `<out>.bitcloud-part.lock` from open to its end, and a second get of the same output fails
// at once with IO_STATE_LOCKED rather than wipe a part file the first is writing.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, isBitcloudError } from '../errors';
import { tryFileLockSync } from '../ops/file-lock';
import { writeFileAtomic, mkdirDurable } from '../ops/fsutil';

export const PART_SUFFIX = '.bitcloud-part';
export const PROGRESS_SUFFIX = '.bitcloud-progress';
export const LOCK_SUFFIX = '.bitcloud-part.lock';
const RECORD_VERSION = 1;
/** Opens fail on a link at the path rather than follow it (0 where the platform has no such flag). */
const NOFOLLOW: number = fs.constants.O_NOFOLLOW ?? 0;

interface ProgressRecord {
  version: number;
  manifestId: string;
  size: number;
  chunks: number;
  /** Bitmap, chunk i = bit (i & 7) of byte (i >> 3), base64. */
  done: string;
}

export class DownloadOutput {
  private dirty = 0;
  private lastSave = Date.now();
  private saving: Promise<void> | null = null;
  /** A background checkpoint that failed: reported by finish(). */
  private saveError: unknown = null;
  /** A progress record marks chunks of this part file done (found on open, or saved since): it can be resumed. */
  private recorded: boolean;

  private constructor(
    readonly out: string,
    private readonly fh: fsp.FileHandle,
    private readonly done: Uint8Array,
    private readonly record: Omit<ProgressRecord, 'done'>,
    /** Chunks found done in an earlier, interrupted run. */
    readonly resumed: number,
    resuming: boolean,
    /** Releases the output's lock (idempotent). */
    private readonly unlock: () => void,
  ) {
    this.recorded = resuming;
  }

  static partPath(out: string): string { return out + PART_SUFFIX; }
  static progressPath(out: string): string { return out + PROGRESS_SUFFIX; }
  static lockPath(out: string): string { return out + LOCK_SUFFIX; }

  /**
   * Open the part file for `out`, resuming when a progress record for the same manifest, size and
   * chunk count sits beside a part file of the right size; otherwise start afresh. Takes the
   * output's lock first (SPEC.md §9.9.1): IO_STATE_LOCKED, at once, when another live get holds
   * it; the lock is held until finish() succeeds, suspend() or discard(), one of which the caller
   * must call (suspend or discard after a finish() that threw).
   */
  static async open(out: string, manifestId: string, size: number, chunks: number): Promise<DownloadOutput> {
    const dir = path.dirname(path.resolve(out));
    let unlock: () => void;
    try {
      // The lock sits beside <out>: its folder is made first (nothing else is written there yet).
      await mkdirOutput(dir);
      unlock = lockOutput(out);
    } catch (e) {
      // SPEC.md §9.9.1: no room for the folder or the lock: this run wrote nothing, so the message
      // says the part file and its record are kept only where an earlier run left both.
      const kept = fs.existsSync(DownloadOutput.progressPath(out)) && fs.existsSync(DownloadOutput.partPath(out));
      throw kept ? e : nothingKept(e);
    }
    try {
      return await DownloadOutput.openLocked(out, manifestId, size, chunks, unlock);
    } catch (e) {
      unlock();
      // Only a fresh start fails for want of room (a resume that cannot open its part file starts
      // afresh): the old record is gone and the new part file removed, so nothing is kept.
      throw notWritable(e, DownloadOutput.partPath(out), { nothingKept: true });
    }
  }

  private static async openLocked(out: string, manifestId: string, size: number, chunks: number, unlock: () => void): Promise<DownloadOutput> {
    const part = DownloadOutput.partPath(out);
    const rec = await readRecord(DownloadOutput.progressPath(out));
    let done = new Uint8Array(Math.ceil(chunks / 8));
    let resumed = 0;
    let fh: fsp.FileHandle | null = null;
    if (rec && rec.version === RECORD_VERSION && rec.manifestId === manifestId && rec.size === size && rec.chunks === chunks) {
      try {
        // Never through a link (SPEC.md §9.9.1): a link at the part path fails here (ELOOP) and is
        // replaced below, so the file it points to is neither read as ours nor written.
        fh = await fsp.open(part, fs.constants.O_RDWR | NOFOLLOW);
        const st = await fh.stat();
        const bits = Buffer.from(rec.done, 'base64');
        if (st.isFile() && st.size === size && bits.length === done.length) {
          done = new Uint8Array(bits);
          for (let i = 0; i < chunks; i++) if (done[i >> 3] & (1 << (i & 7))) resumed++;
        } else {
          await fh.close();
          fh = null;
        }
      } catch (e) {
        // A part file opened but unreadable (stat failed) is closed before starting afresh.
        await fh?.close().catch(() => {});
        fh = null;
        // One this user may not open (another user's, a read-only folder): starting afresh would
        // drop its record first and then fail to make a new one, losing every recorded chunk.
        // IO_NOT_WRITABLE (by open()), with the part file and its record left as they are.
        if (NOT_WRITABLE.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    }
    if (!fh) {
      // SPEC.md §9.9.1: an old record goes (durably) before the new, zero-filled part file is
      // made; left until the first checkpoint, a run that stopped before one would let the next
      // resume from it, skip the chunks it marks done and finish with zeros at <out>.
      if (await removeRecord(DownloadOutput.progressPath(out))) await fsyncDir(path.dirname(path.resolve(out)));
      fh = await createPart(part);
      try {
        await fh.truncate(size);
      } catch (e) {
        // No record names it (SPEC.md §9.9.1): the part file just made holds nothing to resume.
        await fh.close().catch(() => {});
        await fsp.rm(part, { force: true }).catch(() => {});
        throw e;
      }
      resumed = 0;
    }
    return new DownloadOutput(out, fh, done, { version: RECORD_VERSION, manifestId, size, chunks }, resumed, resumed > 0, unlock);
  }

  isDone(i: number): boolean {
    return (this.done[i >> 3] & (1 << (i & 7))) !== 0;
  }

  /** Write chunk i's verified plaintext at its offset, then mark it done (saved now and then). */
  async writeChunk(i: number, offset: number, data: Buffer): Promise<void> {
    let off = 0;
    try {
      while (off < data.length) {
        const { bytesWritten } = await this.fh.write(data, off, data.length - off, offset + off);
        off += bytesWritten;
      }
    } catch (e) {
      throw notWritable(e, DownloadOutput.partPath(this.out));
    }
    this.done[i >> 3] |= 1 << (i & 7);
    this.dirty++;
    // In the background: the fetches go on while the part file is fsynced (a checkpoint that
    // blocked here held a download window slot for the whole fsync). finish() reports a failure.
    if (!this.saving && (this.dirty >= 16 || Date.now() - this.lastSave >= 1000)) {
      void this.checkpoint().catch((e: unknown) => { this.saveError ??= e; });
    }
  }

  /** fsync the part file, then record what is done (one save at a time). */
  async checkpoint(): Promise<void> {
    while (this.saving) await this.saving;
    if (this.dirty === 0) return;
    this.dirty = 0;
    this.lastSave = Date.now();
    const snapshot = Buffer.from(this.done).toString('base64');
    this.saving = (async () => {
      try {
        await this.fh.datasync();
        await writeFileAtomic(DownloadOutput.progressPath(this.out), JSON.stringify({ ...this.record, done: snapshot }), 0o600);
      } catch (e) {
        throw notWritable(e, DownloadOutput.progressPath(this.out));
      }
      this.recorded = true;
    })().finally(() => { this.saving = null; });
    await this.saving;
  }

  /**
   * Everything verified and written: make it the output, atomically, drop the bookkeeping and
   * release the lock. `exclusive` (an output the reader did not name, SPEC.md §9.9.1): never replace
   * anything that stands at the output by now (made since the get started): IO_OUTPUT_EXISTS,
   * keeping the part file and its record. When it throws, the lock is still held: the caller
   * suspends or discards.
   */
  async finish(o: { exclusive?: boolean } = {}): Promise<void> {
    while (this.saving) await this.saving.catch(() => {});
    if (this.saveError) throw this.saveError;
    if (o.exclusive) await this.checkpoint(); // refused, the part file stays resumable
    try {
      await this.fh.sync();
      await this.fh.close();
      const part = DownloadOutput.partPath(this.out);
      if (o.exclusive) await publishExclusive(part, this.out);
      else await fsp.rename(part, this.out);
    } catch (e) {
      throw notWritable(e, this.out);
    }
    await fsyncDir(path.dirname(path.resolve(this.out)));
    await fsp.rm(DownloadOutput.progressPath(this.out), { force: true });
    this.unlock();
  }

  /**
   * Stop, keeping the part file and the record so that a rerun resumes. A part file that no record
   * names (the run stopped before any chunk was recorded) holds nothing a rerun could use: it is
   * removed (SPEC.md §9.9.1), not left behind at the file's full size. Only this run's own part
   * file goes, and only while no record names it: the path may meanwhile hold another run's part
   * file (or anything else), and a record there (another run's, or a save of this run that
   * published it and then failed) says the part file can be resumed. Resolves whether a record
   * still names the part file (a rerun resumes it): false when nothing resumable was kept, which
   * the caller's message must then not claim (SPEC.md §9.9.1).
   */
  async suspend(): Promise<boolean> {
    try {
      while (this.saving) await this.saving.catch(() => {});
      try { await this.checkpoint(); } catch { /* the record stays at its last good state */ }
      if (this.recorded) {
        await this.fh.close().catch(() => {});
        return true;
      }
      const ours = await this.fh.stat().catch(() => null);
      await this.fh.close().catch(() => {});
      if (!ours) return false;
      const part = DownloadOutput.partPath(this.out);
      const there = await fsp.lstat(part).catch(() => null);
      if (!there?.isFile() || there.dev !== ours.dev || there.ino !== ours.ino) return false;
      if (await fsp.lstat(DownloadOutput.progressPath(this.out)).then(() => true, () => false)) return true;
      await fsp.rm(part, { force: true });
      return false;
    } finally {
      this.unlock();
    }
  }

  /** Stop and remove the part file and the record (the download cannot ever succeed). */
  async discard(): Promise<void> {
    try {
      while (this.saving) await this.saving.catch(() => {});
      await this.fh.close().catch(() => {});
      await fsp.rm(DownloadOutput.partPath(this.out), { force: true });
      await fsp.rm(DownloadOutput.progressPath(this.out), { force: true });
    } finally {
      this.unlock();
    }
  }
}

/**
 * Take `<out>.bitcloud-part.lock` (SPEC.md §9.9.1) without waiting: a second get of the same
 * output fails at once with IO_STATE_LOCKED naming the holder's PID; a lock whose holder no longer
 * runs (a get that was killed) is taken over. Returns the idempotent release.
 */
function lockOutput(out: string): () => void {
  const lock = DownloadOutput.lockPath(out);
  let release: (() => void) | null;
  try {
    release = tryFileLockSync(lock);
  } catch (e) {
    // A lock there that this user may not read (another user's get made it, mode 0600): held by a
    // get whose PID cannot be told, not a folder that refuses writes (open(2) of an existing file
    // with O_EXCL fails EEXIST, so an EACCES from open with the lock present is the read).
    const x = e as NodeJS.ErrnoException;
    if ((x.code === 'EACCES' || x.code === 'EPERM') && x.syscall === 'open' && fs.existsSync(lock)) {
      throw err('IO_STATE_LOCKED', `another get (process ?, of another user) is writing ${out}; wait for it to end, or give another output path; if no such process runs, have ${lock} removed`,
        { path: out, holder: '' }, e);
    }
    throw notWritable(e, lock);
  }
  if (release) {
    let released = false;
    return () => { if (!released) { released = true; release(); } };
  }
  let holder = '';
  try { holder = fs.readFileSync(lock, 'utf8').trim(); } catch { /* released meanwhile */ }
  throw err('IO_STATE_LOCKED', `another get (process ${holder || '?'}) is writing ${out}; wait for it to end, or give another output path; if no such process runs, remove ${lock}`,
    { path: out, holder });
}

/** Failures that mean the output's folder (or file) cannot be written by this user. */
const NOT_WRITABLE = new Set(['EACCES', 'EPERM', 'EROFS']);

/** Failures that mean the output's disk has no room left for this user: full, or the quota reached. */
export const NO_ROOM: ReadonlyMap<string, string> = new Map([
  ['ENOSPC', 'the disk is full'],
  ['EDQUOT', "this user's disk quota is reached"],
]);

/**
 * SPEC.md §9.9.1, §9.10: a folder that is read-only or not this user's to write is the caller's
 * choice of output, not a bug: IO_NOT_WRITABLE naming the path (the failing call's own, when it
 * tells), with the errno. So is a disk with no room left (ENOSPC, EDQUOT): the get suspends, so
 * the part file and its record are kept for the same get run again once there is room
 * (`nothingKept`: no record names a part file, so none is kept: a write before any part file,
 * e.g. a folder get's marker, whose leftovers are removed; making the part file; a get suspended
 * before its first checkpoint, see nothingKept). Anything else is returned as it is.
 */
export function notWritable(e: unknown, file: string, o: { nothingKept?: boolean } = {}): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === undefined) return e;
  const where = (e as NodeJS.ErrnoException).path ?? file;
  const room = NO_ROOM.get(code);
  if (room !== undefined) {
    return err('IO_NOT_WRITABLE', `cannot write ${where} (${code}): ${room}; ${o.nothingKept ? 'nothing was kept: free some space and run the get again' : 'the part file and its record are kept: free some space and run the same get again to resume'}`,
      { path: where, errno: code }, e);
  }
  if (!NOT_WRITABLE.has(code)) return e;
  return err('IO_NOT_WRITABLE', `cannot write ${where} (${code}): the folder is read-only or not writable by this user; give another output path with -o`,
    { path: where, errno: code }, e);
}

/**
 * SPEC.md §9.9.1: `e` as the caller reports it once the get suspended and no record names a part
 * file (suspend() resolved false): a no-room IO_NOT_WRITABLE made saying the part file and its
 * record are kept says instead that nothing was kept. Anything else is returned as it is.
 */
export function nothingKept(e: unknown): unknown {
  if (!isBitcloudError(e, 'IO_NOT_WRITABLE')) return e;
  const errno = e.detail?.errno;
  if (typeof errno !== 'string' || !NO_ROOM.has(errno) || e.cause === undefined) return e;
  return notWritable(e.cause, String(e.detail?.path ?? ''), { nothingKept: true });
}

/**
 * mkdirDurable for a folder the output needs (SPEC.md §9.9.1): a file, or anything but a folder,
 * standing on the way is IO_NOT_A_DIRECTORY naming it. Resolves whether this call made `dir`
 * (false: it was a folder already).
 */
export async function mkdirOutput(dir: string, mode?: number): Promise<boolean> {
  try {
    return await mkdirDurable(dir, mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTDIR' && code !== 'EEXIST') throw notWritable(e, dir);
    const blocking = await firstNonFolder(dir);
    throw err('IO_NOT_A_DIRECTORY', `${blocking} is not a folder, and the output needs a folder there`, { path: blocking }, e);
  }
}

/** The deepest existing path on the way to `dir` when it is not a folder (else `dir` itself). */
async function firstNonFolder(dir: string): Promise<string> {
  const want = path.resolve(dir);
  for (let d = want; ; d = path.dirname(d)) {
    const st = await fsp.stat(d).catch(() => null);
    if (st) return st.isDirectory() ? want : d;
    if (path.dirname(d) === d) return want;
  }
}

/**
 * Move `part` to `out` unless something stands at `out`: link(2) fails with EEXIST where rename
 * would silently replace it. Where hard links are refused, a check just before the rename.
 */
async function publishExclusive(part: string, out: string): Promise<void> {
  const exists = () => err('IO_OUTPUT_EXISTS', `${out} exists already; give -o ${out} to replace it, or -o another path`, { path: out });
  try {
    await fsp.link(part, out);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw exists();
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EMLINK') throw e;
    if (await fsp.lstat(out).then(() => true, () => false)) throw exists();
    await fsp.rename(part, out);
    return;
  }
  await fsp.unlink(part);
}

/**
 * Create the part file afresh (SPEC.md §9.9.1), never through a link: whatever stands at the path
 * (an old part file, or a link planted there, dangling or not) is removed (the entry itself, not
 * what a link points to), then the file is created exclusively without following links. Something
 * made at the path between the two steps makes the create fail (EEXIST), and it is tried again.
 */
async function createPart(part: string): Promise<fsp.FileHandle> {
  const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | NOFOLLOW;
  for (let attempt = 0; ; attempt++) {
    const there = await fsp.lstat(part).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    if (there?.isDirectory()) throw err('IO_IS_A_DIRECTORY', `${part} is a directory; remove it, or give another output path with -o`, { path: part });
    if (there) await fsp.unlink(part).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
    try {
      return await fsp.open(part, flags, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2) throw e;
    }
  }
}

async function readRecord(file: string): Promise<ProgressRecord | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    // A record this user may not read is not "no record": it would be removed and its part file
    // replaced. IO_NOT_WRITABLE (by open()), leaving both in place.
    if (NOT_WRITABLE.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    return null;
  }
  try {
    const v = JSON.parse(text) as ProgressRecord;
    return v && typeof v === 'object' && typeof v.done === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** Remove a progress record: true if there was one. */
async function removeRecord(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (e) {
    // None there, or no folder for one (mkdirOutput says which path is in the way).
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw e;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const d = await fsp.open(dir, 'r');
    try { await d.sync(); } finally { await d.close(); }
  } catch { /* some filesystems refuse fsync on directories */ }
}
