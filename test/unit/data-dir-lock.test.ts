// SPEC.md §3.3 step 1a: a daemon's data folder lock (`<dataDir>/lock`), held for the daemon's life.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DATA_DIR_LOCK_FILE, lockDataDir, processAlive, processStartId, withFileLock } from '../../src/ops/file-lock';
import { takeDataDir } from '../../src/ops/daemon';
import { isBitcloudError } from '../../src/errors';
import { silentLogger } from '../../src/ops/log';

let root: string;
let seq = 0;
const freshDir = () => { const d = path.join(root, `d${seq++}`); fs.mkdirSync(d); return d; };
const lockOf = (dir: string) => path.join(dir, DATA_DIR_LOCK_FILE);
const holderText = (pid: number, start: string | null) => `${pid}\n${start === null ? '' : `${start}\n`}`;

/** The code thrown by `fn`, or null. */
function thrownCode(fn: () => unknown): { code: string; message: string } | null {
  try { fn(); } catch (e) { return isBitcloudError(e) ? { code: e.code, message: e.message } : { code: String(e), message: String(e) }; }
  return null;
}

/** A PID that no process has: a child that ran and was reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  expect(r.pid).toBeGreaterThan(0);
  return r.pid!;
}

let other: ChildProcess;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-dirlock-'));
  // Another live process, stopped (by its PID) in afterAll.
  other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  expect(other.pid).toBeGreaterThan(0);
});
afterAll(async () => {
  if (other.pid && other.exitCode === null) process.kill(other.pid, 'SIGKILL');
  await fsp.rm(root, { recursive: true, force: true });
});

describe('data folder lock (SPEC.md §3.3 step 1a)', () => {
  it('is created exclusively, mode 0600, holding the PID and the start id, and removed at release', () => {
    const dir = freshDir();
    const lock = lockDataDir(dir);
    expect(lock.path).toBe(path.join(fs.realpathSync(dir), DATA_DIR_LOCK_FILE));
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(holderText(process.pid, processStartId(process.pid)));
    if (process.platform !== 'win32') expect(fs.statSync(lockOf(dir)).mode & 0o777).toBe(0o600);
    lock.release();
    expect(fs.existsSync(lockOf(dir))).toBe(false);
    lock.release(); // idempotent
    // Taken again after release.
    lockDataDir(dir).release();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('held by another live process: refused with DATA_DIR_LOCKED naming the folder and its PID; nothing in the folder changes', () => {
    const dir = freshDir();
    const text = holderText(other.pid!, processStartId(other.pid!));
    fs.writeFileSync(lockOf(dir), text);
    fs.writeFileSync(path.join(dir, 'policy-status.json'), 'theirs');
    const before = fs.readdirSync(dir).sort();
    const refused = thrownCode(() => lockDataDir(dir));
    expect(refused?.code).toBe('DATA_DIR_LOCKED');
    expect(refused?.message).toContain(fs.realpathSync(dir));
    expect(refused?.message).toContain(`process ${other.pid}`);
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(text);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(dir, 'policy-status.json'), 'utf8')).toBe('theirs');
  });

  it('a lock file naming only a live PID (no start id) is held too', () => {
    const dir = freshDir();
    fs.writeFileSync(lockOf(dir), `${other.pid}`);
    expect(thrownCode(() => lockDataDir(dir))?.code).toBe('DATA_DIR_LOCKED');
  });

  it('stale when its PID no longer runs (a holder killed): taken over', () => {
    const dir = freshDir();
    fs.writeFileSync(lockOf(dir), holderText(deadPid(), 'x:1'));
    const lock = lockDataDir(dir);
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(holderText(process.pid, processStartId(process.pid)));
    expect(fs.readdirSync(dir)).toEqual([DATA_DIR_LOCK_FILE]); // the stale copy moved aside is gone
    lock.release();
    expect(fs.existsSync(lockOf(dir))).toBe(false);
  });

  it('stale when its PID is a number no process can have (beyond the 32-bit PID range): taken over, not refused for ever', () => {
    // process.kill(pid, 0) refuses such a number with ERR_INVALID_ARG_TYPE, not ESRCH: it names no process.
    for (const pid of [2 ** 31, 99_999_999_999, Number.MAX_SAFE_INTEGER]) expect(processAlive(pid)).toBe(false);
    const dir = freshDir();
    fs.writeFileSync(lockOf(dir), holderText(99_999_999_999, null));
    const lock = lockDataDir(dir);
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(holderText(process.pid, processStartId(process.pid)));
    lock.release();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it.skipIf(processStartId(process.pid) === null)('stale when its PID names another start of a process (start id differs): taken over', () => {
    const dir = freshDir();
    const live = other.pid!;
    const real = processStartId(live)!;
    fs.writeFileSync(lockOf(dir), holderText(live, `${real.split(':')[0]}:1`));
    const lock = lockDataDir(dir);
    expect(fs.readFileSync(lockOf(dir), 'utf8').split('\n')[0]).toBe(String(process.pid));
    lock.release();
  });

  it('a lock naming this process that this process does not hold (a PID reused, as PID 1 in a container) is stale', () => {
    const dir = freshDir();
    fs.writeFileSync(lockOf(dir), holderText(process.pid, 'x:1'));
    const lock = lockDataDir(dir);
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(holderText(process.pid, processStartId(process.pid)));
    lock.release();
    expect(fs.existsSync(lockOf(dir))).toBe(false);
  });

  it('per folder, per process: the same process taking its folder twice does not wait for itself; the file goes with the last release', () => {
    const dir = freshDir();
    const a = lockDataDir(dir);
    const b = lockDataDir(path.join(dir, '.', '')); // the same folder, spelled otherwise
    a.release();
    a.release(); // a second release of the same hold does not drop the other one
    expect(fs.existsSync(lockOf(dir))).toBe(true);
    b.release();
    expect(fs.existsSync(lockOf(dir))).toBe(false);
  });

  it('two folders are independent', () => {
    const one = freshDir();
    const two = freshDir();
    fs.writeFileSync(lockOf(two), holderText(other.pid!, processStartId(other.pid!)));
    const a = lockDataDir(one);
    expect(thrownCode(() => lockDataDir(two))?.code).toBe('DATA_DIR_LOCKED');
    a.release();
    expect(fs.existsSync(lockOf(one))).toBe(false);
    expect(fs.existsSync(lockOf(two))).toBe(true);
  });

  it('a folder standing at the lock\'s path (EISDIR): DATA_DIR_LOCKED naming the lock and what to do, not the raw errno', () => {
    const dir = freshDir();
    fs.mkdirSync(lockOf(dir));
    const refused = thrownCode(() => lockDataDir(dir));
    expect(refused?.code).toBe('DATA_DIR_LOCKED');
    expect(refused?.message).toContain(path.join(fs.realpathSync(dir), DATA_DIR_LOCK_FILE));
    expect(refused?.message).toContain('EISDIR');
    expect(refused?.message).toContain('remove it');
    expect(fs.statSync(lockOf(dir)).isDirectory()).toBe(true); // left as it was
  });

  it('a lock this user cannot read (EACCES: another user\'s): DATA_DIR_LOCKED naming the lock, left in place', () => {
    const dir = freshDir();
    const text = holderText(other.pid!, null);
    fs.writeFileSync(lockOf(dir), text);
    const read = fs.readFileSync;
    // Another user's lock (mode 0600) cannot be read; as root it can, so the refusal is simulated.
    const spy = vi.spyOn(fs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, o?: unknown) => {
      if (file === lockOf(fs.realpathSync(dir))) throw Object.assign(new Error(`EACCES: permission denied, open '${String(file)}'`), { code: 'EACCES' });
      return read(file, o as never);
    }) as typeof fs.readFileSync);
    let refused: ReturnType<typeof thrownCode>;
    try { refused = thrownCode(() => lockDataDir(dir)); } finally { spy.mockRestore(); }
    expect(refused?.code).toBe('DATA_DIR_LOCKED');
    expect(refused?.message).toContain(path.join(fs.realpathSync(dir), DATA_DIR_LOCK_FILE));
    expect(refused?.message).toContain('EACCES');
    expect(refused?.message).toContain('another user');
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(text);
  });

  it('release leaves a lock that no longer names this process (replaced meanwhile), and removes its own', () => {
    const dir = freshDir();
    const lock = lockDataDir(dir);
    const theirs = holderText(other.pid!, processStartId(other.pid!));
    fs.writeFileSync(lockOf(dir), theirs);
    lock.release();
    expect(fs.readFileSync(lockOf(dir), 'utf8')).toBe(theirs);
    fs.rmSync(lockOf(dir));
    const again = lockDataDir(dir);
    again.release();
    expect(fs.existsSync(lockOf(dir))).toBe(false);
  });

  it('takeDataDir creates a missing folder (mode 0700) and takes its lock first; refused, it throws DATA_DIR_LOCKED', async () => {
    const dir = path.join(root, `new${seq++}`, 'data');
    const lock = await takeDataDir(dir, silentLogger);
    if (process.platform !== 'win32') expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(dir)).toEqual([DATA_DIR_LOCK_FILE]);
    lock.release();
    const held = freshDir();
    fs.writeFileSync(lockOf(held), holderText(other.pid!, processStartId(other.pid!)));
    await expect(takeDataDir(held, silentLogger)).rejects.toMatchObject({ code: 'DATA_DIR_LOCKED' });
  });

  it('state-file locks (withFileLock) still wait for a live holder and take over a dead one', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'state.json.lock');
    fs.writeFileSync(file, String(deadPid()));
    expect(await withFileLock(file, async () => fs.readFileSync(file, 'utf8'), { code: 'IO_STATE_LOCKED', timeoutMs: 500 })).toBe(String(process.pid));
    fs.writeFileSync(file, String(other.pid));
    await expect(withFileLock(file, async () => 1, { code: 'IO_STATE_LOCKED', timeoutMs: 150, retryMs: 20 })).rejects.toMatchObject({ code: 'IO_STATE_LOCKED' });
  });
});
