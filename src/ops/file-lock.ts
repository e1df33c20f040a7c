// A lock between processes on a state file that several commands read, change and write back
// (the keeper's keeper.json, SPEC.md §9.19; names-seen.json, §9.14.1; the client's state.json, §7.2): `<file>.lock`, created exclusively ('wx') and holding
// the holder's PID. A lock whose PID is no longer alive (a holder that crashed) is stale and taken
// over; otherwise the caller retries every `retryMs` and gives up after `timeoutMs` with the code
// it names. The lock is always removed when the work ends, whether it succeeded or threw.
//
// The same file also locks a daemon's whole data folder for its life (`<dataDir>/lock`, SPEC.md
// §3.3 step 1a): lockDataDir below, which never waits.
// `get` takes its output's lock with tryFileLockSync, never waiting (SPEC.md §9.9.1).
import fs from 'node:fs';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from '../crypto/primitives';
import { err, isBitcloudError, type ErrorCode } from '../errors';

export interface FileLockOptions {
  /** The code thrown when the lock stays held for `timeoutMs`. */
  code: ErrorCode;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Wait between tries (default 50 ms). */
  retryMs?: number;
}

/** A lock file without a PID yet is its holder between create and write; older than this, it is stale. */
const EMPTY_LOCK_STALE_MS = 10_000;

/**
 * Run `fn` while holding `lockPath`. `waited`: the lock was not free at the first try (another
 * holder may have changed, meanwhile, what the caller read before asking for it).
 */
export async function withFileLock<T>(lockPath: string, fn: (waited: boolean) => Promise<T>, o: FileLockOptions): Promise<T> {
  const waited = await acquire(lockPath, o);
  try {
    return await fn(waited);
  } finally {
    await fsp.rm(lockPath, { force: true });
  }
}

/**
 * Take `lockPath` without waiting, for paths that cannot wait (a process shutting down) or must
 * not (a second get of the same output, SPEC.md §9.9.1): one
 * exclusive create; a lock left by a holder that no longer runs is taken over as `withFileLock`
 * does, and the create tried once more. Returns the function that releases the lock, or null when
 * another live process holds it (the caller then skips its work).
 */
export function tryFileLockSync(lockPath: string): (() => void) | null {
  if (create(lockPath) || (removeIfStale(lockPath) && create(lockPath))) return () => fs.rmSync(lockPath, { force: true });
  return null;
}

/** Takes the lock; true when it was not free at the first try (held, or a stale one taken over). */
async function acquire(lockPath: string, o: FileLockOptions): Promise<boolean> {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  let waited = false;
  for (;;) {
    if (create(lockPath)) return waited;
    waited = true;
    if (removeIfStale(lockPath)) continue;
    if (Date.now() >= deadline) {
      const holder = await fsp.readFile(lockPath, 'utf8').catch(() => '');
      throw err(o.code, `${lockPath} is held by process ${holder.trim() || '?'}; if no such process runs, remove the file`, { holder: holder.trim() });
    }
    await sleep(o.retryMs ?? 50);
  }
}

/** The lock file of a daemon's data folder (SPEC.md §3.3 step 1a). */
export const DATA_DIR_LOCK_FILE = 'lock';

/** A data folder this process holds, released when the last of its holders in this process lets go. */
export interface DataDirLock {
  /** The lock file. */
  readonly path: string;
  /** Let go; removes the file when no other holder in this process remains and it still names this process. Idempotent. */
  release(): void;
}

/** Data folders this process holds (by real path): how many holders each, so that one process never waits for itself. */
const heldDirs = new Map<string, { lockPath: string; holders: number; content: string }>();

/**
 * SPEC.md §3.3 step 1a: take `<dir>/lock` for the life of a daemon, without waiting. The folder
 * must exist (step 1); nothing else in it is read or written. The file is created exclusively, mode
 * 0600, holding this process's PID and, where the system tells, its start id (processStartId). A
 * lock whose holder no longer runs, whose PID now names another start of a process, or that names
 * this process without this process holding it (a PID reused, as PID 1 in a container), is stale
 * and taken over. Per folder and per process: the same process taking a folder it holds gets
 * another hold on it (released with the last one); other folders are independent. Throws
 * DATA_DIR_LOCKED, naming the folder and the holder's PID, when another live process holds it,
 * and naming the lock and the errno when the lock cannot be read (another user's, a folder).
 */
export function lockDataDir(dir: string): DataDirLock {
  const real = fs.realpathSync(dir);
  const lockPath = path.join(real, DATA_DIR_LOCK_FILE);
  const mine = heldDirs.get(real);
  if (mine) mine.holders++;
  else {
    const start = processStartId(process.pid);
    const content = `${process.pid}\n${start === null ? '' : `${start}\n`}`;
    if (!create(lockPath, content) && !(removeIfStaleDataDirLock(real, lockPath) && create(lockPath, content))) {
      const holder = lockHolder(readOr(lockPath, ''));
      throw err('DATA_DIR_LOCKED', `data folder ${real} is in use by process ${holder?.pid ?? '?'} (${lockPath}); stop that process first, or if it is not a Bitcloud daemon, remove the file`,
        { dataDir: real, holder: holder?.pid ?? null });
    }
    heldDirs.set(real, { lockPath, holders: 1, content });
  }
  let released = false;
  return {
    path: lockPath,
    release: () => {
      if (released) return;
      released = true;
      const h = heldDirs.get(real);
      if (!h || --h.holders > 0) return;
      heldDirs.delete(real);
      removeIfOurs(h.lockPath, h.content);
    },
  };
}

/**
 * The stale check of lockDataDir: a lock that cannot be read or replaced (another user's file, a
 * folder standing at its path) is DATA_DIR_LOCKED naming the path, the errno and what to do, not
 * the raw errno (SPEC.md §3.3 step 1a): whether a live process holds it cannot be told.
 */
function removeIfStaleDataDirLock(real: string, lockPath: string): boolean {
  try {
    return removeIfStale(lockPath, true);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (isBitcloudError(e) || typeof errno !== 'string') throw e;
    const what = errno === 'EISDIR' ? 'a folder stands at its path: remove it (no daemon uses a folder there)'
      : errno === 'EACCES' || errno === 'EPERM' ? 'it belongs to another user, whose daemon may hold this folder: run as that user, or give this daemon another data folder'
        : 'check it; if no daemon runs on this folder, remove it';
    throw err('DATA_DIR_LOCKED', `data folder ${real}: its lock ${lockPath} cannot be read or replaced (${errno}); ${what}`,
      { dataDir: real, holder: null, errno });
  }
}

/**
 * SPEC.md §3.3 step 1a: the release removes the lock only while it still holds what this process
 * wrote (its PID and start id); a lock that is not ours (replaced by hand, or taken over by another
 * daemon that found it stale) is left to its holder. A lock that is gone or cannot be read is left too.
 */
function removeIfOurs(lockPath: string, content: string): void {
  let text: string;
  try { text = fs.readFileSync(lockPath, 'utf8'); } catch { return; }
  if (text === content) fs.rmSync(lockPath, { force: true });
}

function readOr(file: string, fallback: string): string {
  try { return fs.readFileSync(file, 'utf8'); } catch { return fallback; }
}

/** The holder a lock file names: a PID on the first line, and a start id on the second where it was known. */
function lockHolder(text: string): { pid: number; start: string | null } | null {
  const [first, second] = text.split('\n');
  const pid = /^\d+$/.test(first.trim()) ? Number(first.trim()) : NaN;
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  return { pid, start: second?.trim() ? second.trim() : null };
}

/** True when the holder named is no longer the process that took the lock. */
function holderGone(h: { pid: number; start: string | null }, ownPidIsStale: boolean): boolean {
  if (h.pid === process.pid) return ownPidIsStale;
  if (!processAlive(h.pid)) return true;
  if (h.start === null) return false;
  const now = processStartId(h.pid);
  return now !== null && now !== h.start;
}

/**
 * One exclusive create of the lock, holding `content` (default: this process's PID); false when
 * it exists. Synchronous (a create, a write of a few bytes and a close), so that withFileLock,
 * tryFileLockSync and lockDataDir share it.
 */
function create(lockPath: string, content = String(process.pid)): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    fs.writeSync(fd, content);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(lockPath, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  return true;
}

/**
 * True when `pid` names a process that runs (EPERM: it runs, as another user). A number outside
 * 1 … 2^31 − 1 names no process (process.kill refuses it with ERR_INVALID_ARG_TYPE, not ESRCH).
 */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid > 0x7fff_ffff) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Which start of process `pid` runs now, where the system tells (Linux: the boot id and the
 * process's start time since boot); null where it does not. A process id reused after a crash,
 * a reboot or a container restart gives another value than the one its first holder recorded.
 */
export function processStartId(pid: number): string | null {
  try {
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the command name, which may hold spaces and parentheses.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return boot && start && /^\d+$/.test(start) ? `${boot}:${start}` : null;
  } catch {
    return null;
  }
}

/**
 * Removes the lock when its holder is gone (it no longer runs, or its PID names another start of a
 * process); true when the caller should try again at once. `ownPidIsStale`: a lock naming this
 * process is stale too (the data folder lock, which this process takes only once per folder).
 */
function removeIfStale(lockPath: string, ownPidIsStale = false): boolean {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true; // released meanwhile
    throw e;
  }
  const holder = lockHolder(text);
  if (holder) {
    if (!holderGone(holder, ownPidIsStale)) return false;
  } else {
    let mtimeMs: number;
    try { mtimeMs = fs.statSync(lockPath).mtimeMs; } catch { return true; }
    if (Date.now() - mtimeMs < EMPTY_LOCK_STALE_MS) return false;
  }
  // Move the stale lock aside (atomic), and delete it only if it is still the dead holder's: two
  // processes that both found it stale must not remove a lock a third one took meanwhile.
  const aside = `${lockPath}.${process.pid}.${randomBytes(6).toString('hex')}.stale`;
  try {
    fs.renameSync(lockPath, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw e;
  }
  let moved: string | null = null;
  try { moved = fs.readFileSync(aside, 'utf8'); } catch { /* gone */ }
  if (moved !== text) { try { fs.linkSync(aside, lockPath); } catch { /* a lock exists again */ } } // a live holder's: put it back
  fs.rmSync(aside, { force: true });
  return true;
}
