// A power loss cannot be made in a test, so durability tests watch the fsyncs instead: every
// handle opened through node:fs/promises records its path when `sync()` returns, and `hold(path)`
// may delay that fsync (return a promise) to look at what waits for it. Undone by
// vi.restoreAllMocks().
import { vi } from 'vitest';
import fsp from 'node:fs/promises';
import path from 'node:path';

export function watchSyncs(hold?: (p: string) => Promise<void> | undefined): string[] {
  return watchSyncsAndCloses(hold).synced;
}

export interface SyncWatch {
  synced: string[];
  closed: string[];
  /** Resolves once `cond()` holds: checked now and again each time an fsync or a close is recorded. */
  until(cond: () => boolean): Promise<void>;
}

/**
 * As watchSyncs, and each handle's path is also recorded in `closed` when its `close()` returns:
 * the last I/O of a folder's fsync (fsyncDir), after which what follows it runs without waiting
 * for I/O.
 */
export function watchSyncsAndCloses(hold?: (p: string) => Promise<void> | undefined): SyncWatch {
  const synced: string[] = [];
  const closed: string[] = [];
  const waiters: Array<{ cond: () => boolean; resolve: () => void }> = [];
  const recorded = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].cond()) waiters.splice(i, 1)[0].resolve();
    }
  };
  const realOpen = fsp.open.bind(fsp);
  vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const fh = await realOpen(...args);
    const where = path.resolve(String(args[0]));
    const sync = fh.sync.bind(fh);
    fh.sync = async () => { await hold?.(where); await sync(); synced.push(where); recorded(); };
    const close = fh.close.bind(fh);
    fh.close = async () => { await close(); closed.push(where); recorded(); };
    return fh;
  });
  const until = (cond: () => boolean): Promise<void> => cond() ? Promise.resolve() : new Promise((resolve) => { waiters.push({ cond, resolve }); });
  return { synced, closed, until };
}
