// SPEC.md §7.2 (State), §9.20.4: `bitcloud keep contract --pay` runs a wallet send inside it. The
// command saves its guard state once, at its end, and when that save is skipped (state.json.lock
// held past the 2 s a command waits) it prints the one "guard state not saved" line on stderr
// there, under its own name, after its result: the embedded send neither saves nor prints it.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { contractCommand } from '../../src/client/commands/keep';
import { GuardSet } from '../../src/client/guards';
import type { RewardChainResult } from '../../src/client/rewards';
import { keepFile } from '../../src/client/storage-client-verify';
import { uploadContract } from '../../src/client/storage-contract';
import * as walletModule from '../../src/client/wallet';
import { loadWalletKey } from '../../src/client/wallet';
import { ChunkKind } from '../../src/storage/encode';
import { contractClientDir, contractVcap, keptPass } from '../helpers/contract-fixtures';
import type { VerifyRecord } from '../../src/wire/verify-record';

const oneChunk: VerifyRecord = { k: 1, n: 1, chunks: [{ kind: ChunkKind.DATA, index: 0, shareSize: 64, shareIds: [Buffer.alloc(32, 1)], auditRoots: [Buffer.alloc(32, 2)] }] };
vi.mock('../../src/client/storage-client-verify', async (orig) => ({
  ...await orig<typeof import('../../src/client/storage-client-verify')>(), keepFile: vi.fn(), fetchVerifyRecord: vi.fn(() => Promise.resolve(oneChunk)),
}));
vi.mock('../../src/client/storage-contract', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-contract')>(), uploadContract: vi.fn() }));
// The network: a consensus held already, no relays (nothing is fetched).
vi.mock('../../src/client/dir-keeper', () => ({
  DirKeeper: class {
    consensus() { return { periodSeconds: 3600, relays: [], validUntil: 0 }; }
    relays() { return []; }
    useGuards() {}
    start() { return Promise.resolve(); }
    refresh() { return Promise.resolve(); }
    stop() {}
  },
}));
// The wallet send's consensus and reward chain (the real withVerifiedChain runs around them).
vi.mock('../../src/dir/consensus-cache', async (orig) => ({
  ...await orig<typeof import('../../src/dir/consensus-cache')>(),
  currentConsensus: vi.fn(() => Promise.resolve({ periodSeconds: 2, relays: [], validUntil: 0 })),
}));
const wallet = vi.hoisted(() => ({ hex: '' }));
vi.mock('../../src/client/rewards', async (orig) => ({
  ...await orig<typeof import('../../src/client/rewards')>(),
  fetchRewardChain: vi.fn(() => Promise.resolve({
    source: 'test', blocks: [], failures: [],
    state: { height: 0, chainId: Buffer.alloc(32, 0x4c), balances: new Map([[wallet.hex, 500_000_000n]]), nonces: new Map(), escrows: new Map() },
  } as unknown as RewardChainResult)),
}));


describe('keep contract --pay: the guard state save skipped (SPEC.md §7.2 State)', () => {
  let dir = '';
  let config = '';
  const spies: Array<{ mockRestore(): void }> = [];

  beforeEach(async () => {
    ({ dir, config } = contractClientDir('bitcloud-contract-guard-save-'));
    wallet.hex = (await loadWalletKey(path.join(dir, 'data'))).key.publicKey.toString('hex');
    vi.mocked(keepFile).mockResolvedValue(keptPass);
    vi.mocked(uploadContract).mockResolvedValue([{ authority: 'a', ok: true, result: 'accepted' }]);
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockResolvedValue([]));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockResolvedValue(
      { accepted: ['a'], refused: [], unreachable: [] } as unknown as Awaited<ReturnType<typeof walletModule.submitTransfer>>,
    ));
  });
  afterEach(() => {
    for (const s of spies.splice(0)) s.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('prints the "guard state not saved" line once, under the command\'s name, after its result', async () => {
    // Another live process (this one's PID) holds the lock; the set has changes to save.
    fs.writeFileSync(path.join(dir, 'data', 'state.json.lock'), String(process.pid));
    spies.push(vi.spyOn(GuardSet.prototype, 'dirty', 'get').mockReturnValue(true));
    const writes: Array<{ to: 'out' | 'err'; text: string }> = [];
    spies.push(vi.spyOn(process.stdout, 'write').mockImplementation((s) => { writes.push({ to: 'out', text: String(s) }); return true; }));
    spies.push(vi.spyOn(process.stderr, 'write').mockImplementation((s) => { writes.push({ to: 'err', text: String(s) }); return true; }));
    const code = await contractCommand({ cap: contractVcap, epochs: 3, pay: '1', 'no-wait': true, json: true, direct: true, config });
    for (const s of spies.splice(2)) s.mockRestore();
    expect(code).toBe(0);
    const lines = writes.flatMap((w) => w.text.split('\n').filter(Boolean).map((text) => ({ to: w.to, text })));
    const notSaved = lines.filter((l) => l.text.includes('guard state not saved'));
    expect(notSaved).toEqual([{ to: 'err', text: expect.stringMatching(/^bitcloud keep contract: guard state not saved \(IO_STATE_LOCKED\): /) as unknown }]);
    // At the end: after the command's result on stdout, and nothing after it.
    const result = lines.findIndex((l) => l.to === 'out' && l.text.startsWith('{'));
    expect(result).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(lines[result].text)).toMatchObject({ ok: true, funding: { ok: true, included: null } });
    expect(lines.indexOf(notSaved[0])).toBe(lines.length - 1);
  }, 30_000);
});
