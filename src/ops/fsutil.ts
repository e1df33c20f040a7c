// Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder. Folders made
// on the way are made durable too (mkdirDurable): POSIX records a new folder only in its parent,
// which must be fsynced like any folder whose entries changed (SPEC.md §3.2.3, §9.8.1).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from '../crypto/primitives';
import { err } from '../errors';

/** chmod failures that mean the filesystem keeps no Unix modes (exFAT, vfat without `quiet`). */
const NO_MODES = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP']);

/**
 * SPEC.md §8.11.4: a file is never kept without the mode asked for (a key without 0600 is readable
 * by others): a filesystem that cannot set it is IO_MODE_UNSUPPORTED, naming the folder; the caller
 * removes what it made. Other failures are thrown as they are.
 */
function modeError(e: unknown, file: string, mode: number): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === undefined || !NO_MODES.has(code)) return e;
  const folder = path.dirname(file);
  return err('IO_MODE_UNSUPPORTED', `cannot set mode ${mode.toString(8)} on a file in ${folder} (${code}): the data folder must be on a filesystem with Unix permissions (not exFAT or vfat)`,
    { folder, mode: mode.toString(8), errno: code }, e);
}

async function setMode(fh: fsp.FileHandle, file: string, mode: number): Promise<void> {
  try { await fh.chmod(mode); } catch (e) { throw modeError(e, file, mode); }
}

/**
 * Remove a temporary file this module made, after its write failed. A removal that fails too
 * (EBUSY, EIO, …) is let be: the write's own failure is the one reported (SPEC.md §3.2.3), and a
 * leftover temporary name is never read as the file.
 */
async function removeTemp(tmp: string): Promise<void> {
  await fsp.rm(tmp, { force: true }).catch(() => {});
}

function removeTempSync(tmp: string): void {
  try { fs.rmSync(tmp, { force: true }); } catch { /* as removeTemp */ }
}

/** `.<name>.<pid>.<12 hex>.tmp` beside the file: the temporary name of every atomic write here. */
function tmpName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Whether `name` is a temporary name tmpName gives a file named `base` (one a write stopped midway may leave). */
export function isTempNameOf(name: string, base: string): boolean {
  const prefix = `.${base}.`;
  return name.startsWith(prefix) && /^[0-9]+\.[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length));
}

/**
 * `opts.mkdir: false`: the caller knows the folder exists (saves a look-up per write on hot paths).
 * `opts.syncAlso`: more fsyncs the write waits for, started beside the folder's own fsync so that
 * the filesystem can commit them together (the share store's parent folder, §9.8.1).
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644, opts: { mkdir?: boolean; syncAlso?: () => Promise<void> } = {}): Promise<void> {
  if (opts.mkdir !== false) await mkdirDurable(path.dirname(file));
  const tmp = tmpName(file);
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await setMode(fh, file, mode);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await removeTemp(tmp);
    throw e;
  }
  try {
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (e) {
    await removeTemp(tmp);
    throw e;
  }
  if (opts.syncAlso) await Promise.all([fsyncDir(path.dirname(file)), opts.syncAlso()]);
  else await fsyncDir(path.dirname(file));
}

/** Write `data` to a file just made with mode `mode`, set that mode (the umask may have narrowed it), fsync, and close it whatever happened. */
async function writeSyncedAndClose(fh: fsp.FileHandle, file: string, data: Uint8Array | string, mode: number): Promise<void> {
  try {
    await fh.writeFile(data);
    await setMode(fh, file, mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** link(2) failures that mean the filesystem has no hard links (some FUSE, SMB, exFAT mounts). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS', 'EMLINK']);

/**
 * Like writeFileAtomic, but never replaces an existing `file`: the temp file is published with a
 * hard link (link(2) fails with EEXIST when the name exists, where rename would silently replace
 * it), then unlinked. Resolves true when this call made `file`, false when it existed already
 * (nothing written). For a file that must be made exactly once, however many processes race
 * for it (the wallet key, SPEC.md §8.11.4). On a filesystem without hard links `file` is created
 * with O_EXCL instead (still made once; no longer atomic to its readers; see createExclusive).
 */
export async function writeFileAtomicExclusive(file: string, data: Uint8Array | string, mode = 0o644): Promise<boolean> {
  await mkdirDurable(path.dirname(file));
  const tmp = tmpName(file);
  const fh = await fsp.open(tmp, 'wx', mode);
  let linked = true;
  try {
    await writeSyncedAndClose(fh, file, data, mode);
    try {
      await fsp.link(tmp, file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code === undefined || !NO_HARD_LINKS.has(code)) throw e;
      linked = false;
    }
  } finally {
    await removeTemp(tmp);
  }
  if (!linked) return createExclusive(file, data, mode);
  await fsyncDir(path.dirname(file));
  return true;
}

/**
 * SPEC.md §8.11.4: writeFileAtomicExclusive where link(2) is not supported: `file` is created with
 * O_CREAT|O_EXCL (EEXIST: false), written, fsynced, closed, its folder fsynced. A failed write
 * removes the partial file. A reader racing the write may see it short (a key file then reads
 * as KEY_MALFORMED), never another content.
 */
async function createExclusive(file: string, data: Uint8Array | string, mode: number): Promise<boolean> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'wx', mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    await writeSyncedAndClose(fh, file, data, mode);
  } catch (e) {
    await fsp.rm(file, { force: true }).catch(() => {}); // the write's failure is the one reported
    throw e;
  }
  await fsyncDir(path.dirname(file));
  return true;
}

/**
 * One file written atomically again and again, one write at a time: a write asked for while one
 * runs waits for it, and of several waiting only the newest is written. Two writeFileAtomic calls
 * in flight may rename in either order, leaving the older content on disk.
 */
export class LatestFileWriter {
  private running: Promise<void> | null = null;
  private next: Uint8Array | string | null = null;

  constructor(
    private readonly file: string, private readonly mode = 0o644,
    private readonly onError: (e: Error) => void = () => {},
    private readonly writeFile: (file: string, data: Uint8Array | string, mode?: number) => Promise<void> = writeFileAtomic,
  ) {}

  /** Write `data` once the running write (if any) is done; a newer write asked for before then replaces it. */
  write(data: Uint8Array | string): void {
    this.next = data;
    this.running ??= this.drain();
  }

  /** Resolves once no write runs or waits. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.next !== null) {
      const data = this.next;
      this.next = null;
      try { await this.writeFile(this.file, data, this.mode); } catch (e) { this.onError(e as Error); }
    }
    this.running = null;
  }
}

export function writeFileAtomicSync(file: string, data: Uint8Array | string, mode = 0o644): void {
  mkdirDurableSync(path.dirname(file));
  const tmp = tmpName(file);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    try { fs.fchmodSync(fd, mode); } catch (e) { throw modeError(e, file, mode); }
    fs.fsyncSync(fd);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* the write's failure is the one reported */ }
    removeTempSync(tmp);
    throw e;
  }
  try {
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    removeTempSync(tmp);
    throw e;
  }
  fsyncDirSync(path.dirname(file));
}

/**
 * `mkdir -p` that survives a power loss: each folder it creates is an entry in its parent, so
 * the parent of every created folder is fsynced before this resolves. It also waits for such
 * fsyncs still under way for `dir` or a folder above it (another call made them a moment
 * earlier), so no caller goes on while its folder could still be lost. A folder that already
 * existed costs a look-up. Resolves whether this call created anything. The new folder's own
 * entries are the caller's to sync (writeFileAtomic does, after its rename).
 */
export async function mkdirDurable(dir: string, mode?: number): Promise<boolean> {
  const first = await fsp.mkdir(dir, { recursive: true, mode });
  if (first !== undefined) {
    const made = createdFolders(first, dir);
    const synced = Promise.all(made.map((d) => fsyncDir(path.dirname(d)))).then(() => {});
    for (const d of made) parentSyncs.set(d, synced);
    try { await synced; } finally { for (const d of made) if (parentSyncs.get(d) === synced) parentSyncs.delete(d); }
  }
  if (parentSyncs.size > 0) {
    for (let d = path.resolve(dir); ; d = path.dirname(d)) {
      const pending = parentSyncs.get(d);
      if (pending) await pending;
      if (path.dirname(d) === d) break;
    }
  }
  return first !== undefined;
}

/** Folders made by mkdirDurable whose parent's fsync is under way, with that fsync. */
const parentSyncs = new Map<string, Promise<void>>();

export function mkdirDurableSync(dir: string, mode?: number): boolean {
  const first = fs.mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return false;
  for (const d of createdFolders(first, dir)) fsyncDirSync(path.dirname(d));
  return true;
}

/** The folders from `first` (the first one mkdir -p created) down to `last`, inclusive. */
function createdFolders(first: string, last: string): string[] {
  const top = path.resolve(first);
  const out: string[] = [];
  for (let d = path.resolve(last); ; d = path.dirname(d)) {
    out.push(d);
    if (d === top || path.dirname(d) === d) break;
  }
  return out;
}

/**
 * SPEC.md §3.2.3: the errors by which a system says it does not fsync folders, or opens none for
 * reading (as PostgreSQL's fsync_fname lets them be). Any other failure (EIO, ENOSPC, EDQUOT, a
 * folder gone) means the folder's entries may not be on disk: the write is not done, and fails.
 */
const DIR_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EBADF', 'EISDIR', 'EPERM', 'EACCES']);

function dirSyncUnsupported(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && DIR_SYNC_UNSUPPORTED.has(code);
}

function fsyncDirSync(dir: string): void {
  let d: number;
  try { d = fs.openSync(dir, 'r'); } catch (e) { if (dirSyncUnsupported(e)) return; throw e; }
  try {
    fs.fsyncSync(d);
  } catch (e) {
    if (!dirSyncUnsupported(e)) throw e;
  } finally {
    try { fs.closeSync(d); } catch { /* the fsync's outcome is the one that counts */ }
  }
}

/**
 * fsync a folder (its entries). A system that refuses it for folders is let be; any other failure
 * (EIO, ENOSPC) is thrown: an entry renamed into the folder is not known to be durable (§3.2.3).
 */
export async function fsyncDir(dir: string): Promise<void> {
  let d: fsp.FileHandle;
  try { d = await fsp.open(dir, 'r'); } catch (e) { if (dirSyncUnsupported(e)) return; throw e; }
  try {
    await d.sync();
  } catch (e) {
    if (!dirSyncUnsupported(e)) throw e;
  } finally {
    await d.close().catch(() => { /* the fsync's outcome is the one that counts */ });
  }
}
