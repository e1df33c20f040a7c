// A power loss cannot be made in a test, so durability tests watch the fsyncs instead: every
// handle opened through node:fs/promises records its path when `sync()` returns, and `hold(path)`
// may delay that fsync (return a promise) to look at what waits for it. Undone by
// vi.restoreAllMocks().
import { vi } from 'vitest';
import fsp from 'node:fs/promises';
import path from 'node:path';

export function watchSyncs(hold?: (p: string) => Promise<void> | undefined): string[] {
  const synced: string[] = [];
  const realOpen = fsp.open.bind(fsp);
  vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const fh = await realOpen(...args);
    const where = path.resolve(String(args[0]));
    const sync = fh.sync.bind(fh);
    fh.sync = async () => { await hold?.(where); await sync(); synced.push(where); };
    return fh;
  });
  return synced;
}
