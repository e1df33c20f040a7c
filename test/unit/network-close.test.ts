// SPEC.md §7.2 (Shared by the client's processes): a command never fails for its guard state save;
// the last save when a command's network closes (saveSync) is skipped with a debug line when it
// cannot be written.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openNetwork } from '../../src/client/storage-client-setup';

vi.mock('../../src/client/dir-keeper', () => ({
  DirKeeper: class {
    useGuards(): void {}
    async start(): Promise<void> {}
    async refresh(): Promise<void> {}
    stop(): void {}
    consensus(): object { return {}; }
    relays(): never[] { return []; }
  },
}));

const FP = 'ab'.repeat(32);
let dir = '';
afterEach(async () => { if (dir) await fsp.rm(dir, { recursive: true, force: true }); dir = ''; });

describe('a command\'s network close (SPEC.md §7.2)', () => {
  it('does not throw when the guard state cannot be written; the failure is logged at debug', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-netclose-'));
    const config = path.join(dir, 'config.json');
    await fsp.writeFile(config, JSON.stringify({ authorities: [{ name: 'a', identity: 'cd'.repeat(32), address: '127.0.0.1:7000' }], dataDir: dir }));
    const state = path.join(dir, 'state.json');
    await fsp.writeFile(state, JSON.stringify({ guards: { version: 1, sampled: [{ fingerprint: FP, addedAt: 1, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false, unlistedSince: null }] } }));
    const debug = vi.fn();
    const log = { debug, info: vi.fn(), warn: vi.fn(), error: vi.fn(), child: () => log } as never;
    const network = await openNetwork({ config, log });
    network.guards.markFailure(FP);
    expect(network.guards.dirty).toBe(true);
    // The state file's place is taken by a folder that is not empty: the write (rename) fails.
    await fsp.rm(state);
    fs.mkdirSync(state);
    fs.writeFileSync(path.join(state, 'x'), '');
    expect(() => network.close()).not.toThrow();
    expect(debug).toHaveBeenCalledWith(expect.objectContaining({ err: expect.any(String) }), 'guard state not saved');
    expect(network.guards.dirty).toBe(true);
  });
});
