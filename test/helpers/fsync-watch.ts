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

/**
 * As watchSyncs, and each handle's path is also recorded in `closed` when its `close()` returns:
 * the last I/O of a folder's fsync (fsyncDir), after which what follows it runs without waiting
 * for I/O.
 */
export function watchSyncsAndCloses(hold?: (p: string) => Promise<void> | undefined): { synced: string[]; closed: string[] } {
  const synced: string[] = [];
  const closed: string[] = [];
  const realOpen = fsp.open.bind(fsp);
  vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const fh = await realOpen(...args);
    const where = path.resolve(String(args[0]));
    const sync = fh.sync.bind(fh);
    fh.sync = async () => { await hold?.(where); await sync(); synced.push(where); };
    const close = fh.close.bind(fh);
    fh.close = async () => { await close(); closed.push(where); };
    return fh;
  });
  return { synced, closed };
}
