// Process plumbing shared by every daemon: its data folder's lock, and clean shutdown on SIGTERM/SIGINT.
import { DATA_DIR_MODE } from '../crypto/keys';
import { isBitcloudError } from '../errors';
import { lockDataDir, type DataDirLock } from './file-lock';
import { mkdirDurable } from './fsutil';
import type { Logger } from './log';

/**
 * SPEC.md §3.3 steps 1 and 1a: create the data folder (mode 0700) if it does not exist, then take
 * its lock, before anything else in it is read or written. Refused (another live process holds the
 * folder): logs one line naming the folder and the holder's PID, and throws DATA_DIR_LOCKED, which
 * the command prints before it exits non-zero.
 */
export async function takeDataDir(dataDir: string, log: Logger): Promise<DataDirLock> {
  await mkdirDurable(dataDir, DATA_DIR_MODE);
  try {
    return lockDataDir(dataDir);
  } catch (e) {
    if (isBitcloudError(e, 'DATA_DIR_LOCKED')) log.error({ code: e.code, ...e.detail }, 'data folder in use by another process; not starting');
    throw e;
  }
}

/**
 * takeDataDir, then `start` holding the lock; a start that throws releases it. On success `start`
 * owns the lock (released after the last state write of its stop).
 */
export async function startWithDataDir<T>(dataDir: string, log: Logger, start: (lock: DataDirLock) => Promise<T>): Promise<T> {
  const lock = await takeDataDir(dataDir, log);
  try {
    return await start(lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** Run `stop` once on SIGTERM or SIGINT, then exit 0 (1 if stopping failed). */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => { log.error('shutdown timed out'); process.exit(1); }, 10_000);
    force.unref();
    stop().then(() => { log.flush?.(); process.exit(0); }, (e) => { log.error({ err: e }, 'error during shutdown'); process.exit(1); });
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
