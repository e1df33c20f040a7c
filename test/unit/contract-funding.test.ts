// SPEC.md §9.20.1, §9.20.4: `bitcloud keep contract --pay` once the authorities took the funding
// transfer: the contract is uploaded again (an authority that evicted it while it was unfunded takes
// it back, now protected by the pending funding), and the block that carries the funding must open
// the contract's escrow, or the command fails ESCROW_NOT_OPENED (the units are lost to the id).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { contractRequest, fundingVersion, openContract } from '../../src/client/commands/keep';
import * as rewardsCommands from '../../src/client/commands/rewards';
import type { VerifiedRewardBlock } from '../../src/client/rewards';
import type { StorageSession } from '../../src/client/storage-client-setup';
import { keepFile } from '../../src/client/storage-client-verify';
import { uploadContract } from '../../src/client/storage-contract';
import * as walletModule from '../../src/client/wallet';
import { loadWalletKey } from '../../src/client/wallet';
import { FUNDING_TRANSFER_VERSION, encodeTransfer, transferSignedBytes, type Transfer } from '../../src/wire/transfer';
import { ed25519Verify } from '../../src/crypto/primitives';
import { ChunkKind } from '../../src/storage/encode';
import { contractClientDir, contractVcap, keptPass } from '../helpers/contract-fixtures';
import type { VerifyRecord } from '../../src/wire/verify-record';
import { GENESIS_PREVIOUS_HASH } from '../../src/wire/reward-block';

const oneChunk: VerifyRecord = { k: 1, n: 1, chunks: [{ kind: ChunkKind.DATA, index: 0, shareSize: 64, shareIds: [Buffer.alloc(32, 1)], auditRoots: [Buffer.alloc(32, 2)] }] };
vi.mock('../../src/client/storage-client-verify', async (orig) => ({
  ...await orig<typeof import('../../src/client/storage-client-verify')>(), keepFile: vi.fn(), fetchVerifyRecord: vi.fn(() => Promise.resolve(oneChunk)),
}));
vi.mock('../../src/client/storage-contract', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-contract')>(), uploadContract: vi.fn() }));

/** SPEC.md §6.7.1, §8.11.3: the parameters of the consensus the client verified (funding-v2 on unless a test turns it off). */
let params: ReadonlyMap<string, number> = new Map([['funding-v2', 1]]);
const session = {
  network: { dir: { consensus: () => ({ periodSeconds: 3600, params }) }, dirCfg: { authorities: [{ name: 'a' }, { name: 'b' }] } }, client: {},
} as unknown as StorageSession;

/** SPEC §8.11.1: the id of the chain the wallet verified (the hash of its block 0). */
const CHAIN_ID = Buffer.alloc(32, 0x0b);

describe('keep contract --pay after the funding was taken (SPEC.md §9.20.4)', () => {
  let dir = '';
  let config = '';
  let hex = '';
  let sent: Transfer | null = null;
  const spies: Array<{ mockRestore(): void }> = [];

  beforeEach(async () => {
    ({ dir, config } = contractClientDir('bitcloud-contract-funding-'));
    params = new Map([['funding-v2', 1]]);
    hex = (await loadWalletKey(path.join(dir, 'data'))).key.publicKey.toString('hex');
    sent = null;
    vi.mocked(keepFile).mockResolvedValue(keptPass);
    vi.mocked(uploadContract).mockReset();
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockResolvedValue([]));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockImplementation(async (_a, t) => {
      sent = t;
      return { accepted: ['a', 'b'], refused: [], unreachable: [] } as unknown as Awaited<ReturnType<typeof walletModule.submitTransfer>>;
    }));
  });
  afterEach(() => {
    for (const s of spies.splice(0)) s.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /**
   * The chain before the funding (the wallet holds 5 coins), and after: block 1 carries the transfer sent, with `escrow` operations.
   * The send verifies it with a consensus of parameters `sendParams` (default: those of the session's consensus).
   */
  function chains(escrowed: boolean, sendParams?: ReadonlyMap<string, number>): void {
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: Buffer.alloc(32), signers: [] };
    const chainWith = (blocks: VerifiedRewardBlock[], nonce: number, escrows: Map<string, unknown>) => ({
      source: 'test', blocks, state: { height: blocks.length - 1, chainId: CHAIN_ID, balances: new Map([[hex, 400_000_000n]]), nonces: new Map(nonce ? [[hex, nonce]] : []), escrows },
    }) as unknown as rewardsCommands.VerifiedChainContext['chain'];
    const refetch = async () => {
      const t = sent!;
      const id = t.to.toString('hex');
      const open = { kind: 'open' as const, contract: id, payer: hex, startEpoch: 0, endEpoch: 3, funded: t.amount, totalBytes: 64n };
      const carrying: VerifiedRewardBlock = { block: { height: 1, previousHash: GENESIS_PREVIOUS_HASH, epoch: 11, minted: 0n, allocations: new Map(), transfers: [t], ...(escrowed ? { escrow: [open] } : {}) }, hash: Buffer.alloc(32), signers: [] };
      return chainWith([genesis, carrying], 1, new Map(escrowed ? [[id, { id, payer: hex, refunded: null }]] : []));
    };
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain: chainWith([genesis], 0, new Map()), consensus: { periodSeconds: 2, params: sendParams ?? params }, refetch,
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
  }

  it('uploads the contract again once the funding is taken: an authority that evicted it meanwhile takes it back ("accepted"), reported per authority', async () => {
    chains(true);
    vi.mocked(uploadContract)
      .mockResolvedValueOnce([{ authority: 'a', ok: true, result: 'accepted' }, { authority: 'b', ok: true, result: 'accepted' }])
      // b evicted the unfunded contract before the funding reached its pool; a still held it.
      .mockResolvedValueOnce([{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'accepted' }]);
    const r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(vi.mocked(uploadContract)).toHaveBeenCalledTimes(2);
    const [first, second] = vi.mocked(uploadContract).mock.calls;
    expect(second[1].equals(first[1])).toBe(true);
    // The second upload comes after the authorities took the funding transfer, not before.
    const submitted = vi.mocked(walletModule.submitTransfer).mock.invocationCallOrder[0];
    expect(vi.mocked(uploadContract).mock.invocationCallOrder[1]).toBeGreaterThan(submitted);
    expect(sent!.to.toString('hex')).toBe(r.json.contract);
    expect(r.json).toMatchObject({ ok: true, reheld: [{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'accepted' }], funding: { ok: true, included: null } });
    expect(r.lines.some((l) => l.includes('b: had dropped the contract'))).toBe(true);
    expect(r.lines.some((l) => l.includes('a: had dropped'))).toBe(false);
    expect(r.ok).toBe(true);
  });

  it('fails ESCROW_NOT_OPENED, naming the block, when the block carried the funding transfer but opened no escrow', async () => {
    chains(false);
    const all = [{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }];
    vi.mocked(uploadContract).mockResolvedValue(all);
    const r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config }));
    expect(r.ok).toBe(false);
    expect(r.json).toMatchObject({ ok: false, funding: { ok: false, error: { code: 'ESCROW_NOT_OPENED' }, detail: { height: 1 } } });
    const msg = (r.json.funding as { error: { message: string } }).error.message;
    expect(msg).toContain('block 1');
    expect(msg).toContain('not refundable');
    expect(r.lines.some((l) => l.includes('funded with'))).toBe(false);
    expect(r.lines.some((l) => l.includes('ESCROW_NOT_OPENED'))).toBe(true);
  });

  it('refuses ESCROW_ALREADY_FUNDED, sending nothing, when the contract has an escrow in the chain already or a funding of it from this wallet is pending', async () => {
    const all = [{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }];
    vi.mocked(uploadContract).mockResolvedValue(all);
    // Escrow open in the chain for this contract (the same contract: --pay run again in the same epoch).
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: Buffer.alloc(32), signers: [] };
    const escrows = { get: (id: string) => ({ id, payer: hex, refunded: null }) };
    const withChain = vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain: { source: 'test', blocks: [genesis], state: { height: 0, chainId: CHAIN_ID, balances: new Map([[hex, 500_000_000n]]), nonces: new Map(), escrows } },
      consensus: { periodSeconds: 2, params }, refetch: async () => null,
    } as unknown as rewardsCommands.VerifiedChainContext) as never);
    spies.push(withChain);
    let r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.json).toMatchObject({ ok: false, funding: { ok: false, error: { code: 'ESCROW_ALREADY_FUNDED' } } });
    expect(vi.mocked(walletModule.submitTransfer)).not.toHaveBeenCalled();
    // No escrow yet, but this wallet's funding of the contract waits in the pool.
    withChain.mockRestore();
    chains(true);
    r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(true);
    const first = sent!;
    vi.mocked(walletModule.pendingFrom).mockResolvedValue([first]);
    vi.mocked(walletModule.submitTransfer).mockClear();
    r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.json).toMatchObject({ ok: false, funding: { ok: false, error: { code: 'ESCROW_ALREADY_FUNDED' } } });
    expect((r.json.funding as { error: { message: string } }).error.message).toContain('pending already');
    expect(vi.mocked(walletModule.submitTransfer)).not.toHaveBeenCalled();
  });

  it('sends a funding transfer (version 4, SPEC.md §8.11.1): its signature verifies as version 4 for its chain only', async () => {
    chains(true);
    vi.mocked(uploadContract).mockResolvedValue([{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }]);
    const r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(true);
    const t = sent!;
    expect(t.version).toBe(FUNDING_TRANSFER_VERSION);
    expect(t.to.toString('hex')).toBe(r.json.contract);
    expect(encodeTransfer(t)[0]).toBe(4);
    expect(ed25519Verify(t.signature, transferSignedBytes(t, CHAIN_ID), t.from)).toBe(true);
    // The same fields as a plain transfer, or for another chain, do not verify under this signature.
    expect(ed25519Verify(t.signature, transferSignedBytes({ ...t, version: 3 }, CHAIN_ID), t.from)).toBe(false);
    expect(ed25519Verify(t.signature, transferSignedBytes(t, Buffer.alloc(32, 0x0c)), t.from)).toBe(false);
  });

  it('sends a plain (version 3) transfer, and says so, while the consensus has not switched on funding-v2 (SPEC.md §9.20.4, §8.11.3)', async () => {
    expect(fundingVersion({ params: new Map() })).toBe(3);
    expect(fundingVersion({ params: new Map([['funding-v2', 0]]) })).toBe(3);
    expect(fundingVersion({ params: new Map([['other', 1]]) })).toBe(3);
    expect(fundingVersion({ params: new Map([['funding-v2', 1]]) })).toBe(4);
    params = new Map();
    chains(true);
    vi.mocked(uploadContract).mockResolvedValue([{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }]);
    const r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(true);
    const t = sent!;
    expect(t.version).toBe(3);
    expect(t.to.toString('hex')).toBe(r.json.contract);
    expect(ed25519Verify(t.signature, transferSignedBytes(t, CHAIN_ID), t.from)).toBe(true);
    expect(r.json.fundingVersion).toBe(3);
    expect(r.lines.filter((l) => l.includes('version 3) transfer'))).toHaveLength(1);
  });

  it('says "version 3" and carries fundingVersion only once a transfer was taken: not when the send fails before sending (SPEC.md §9.20.4)', async () => {
    params = new Map();
    const all = [{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }];
    vi.mocked(uploadContract).mockResolvedValue(all);
    // TRANSFER_OVERSPEND: the wallet's balance is 4 coins, the contract asks for 6.
    chains(true);
    let r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '6', config, 'no-wait': true }));
    expect(r.json).toMatchObject({ ok: false, funding: { ok: false, error: { code: 'TRANSFER_OVERSPEND' } } });
    expect(vi.mocked(walletModule.submitTransfer)).not.toHaveBeenCalled();
    expect(r.json).not.toHaveProperty('fundingVersion');
    expect(r.lines.some((l) => l.includes('version 3) transfer'))).toBe(false);
    // ESCROW_ALREADY_FUNDED: a funding of this contract from the wallet is pending already.
    vi.mocked(walletModule.pendingFrom).mockResolvedValue([{ to: Buffer.from(r.json.contract as string, 'hex'), amount: 1n } as unknown as Transfer]);
    r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.json).toMatchObject({ ok: false, funding: { ok: false, error: { code: 'ESCROW_ALREADY_FUNDED' } } });
    expect(vi.mocked(walletModule.submitTransfer)).not.toHaveBeenCalled();
    expect(r.json).not.toHaveProperty('fundingVersion');
    expect(r.lines.some((l) => l.includes('version 3) transfer'))).toBe(false);
    // Not every authority took the contract: nothing is sent.
    vi.mocked(walletModule.pendingFrom).mockResolvedValue([]);
    vi.mocked(uploadContract).mockResolvedValue([all[0], { authority: 'b', ok: false, code: 'CONTRACT_LIMIT', reason: 'full' }] as never);
    r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(false);
    expect(r.json).not.toHaveProperty('fundingVersion');
    expect(r.lines.some((l) => l.includes('version 3) transfer'))).toBe(false);
  });

  it('decides the version from the consensus the send verifies the chain with, not one read before the keeper pass (SPEC.md §9.20.4, §8.11.3)', async () => {
    // funding-v2 off when the command started, switched on by the time the transfer is built.
    params = new Map([['funding-v2', 0]]);
    chains(true, new Map([['funding-v2', 1]]));
    vi.mocked(uploadContract).mockResolvedValue([{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }]);
    let r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(true);
    expect(sent!.version).toBe(FUNDING_TRANSFER_VERSION);
    expect(r.json.fundingVersion).toBe(4);
    expect(r.lines.some((l) => l.includes('version 3) transfer'))).toBe(false);
    // And the other way round: switched off meanwhile, a version 3 transfer, said so.
    for (const s of spies.splice(2)) s.mockRestore();
    params = new Map([['funding-v2', 1]]);
    chains(true, new Map([['funding-v2', 0]]));
    r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config, 'no-wait': true }));
    expect(r.ok).toBe(true);
    expect(sent!.version).toBe(3);
    expect(r.json.fundingVersion).toBe(3);
    expect(r.lines.filter((l) => l.includes('version 3) transfer'))).toHaveLength(1);
  });

  it('succeeds when the block that carried the funding opened its escrow', async () => {
    chains(true);
    vi.mocked(uploadContract).mockResolvedValue([{ authority: 'a', ok: true, result: 'unchanged' }, { authority: 'b', ok: true, result: 'unchanged' }]);
    const r = await openContract(session, contractVcap, contractRequest({ epochs: 3, pay: '1', config }));
    expect(r.json).toMatchObject({ ok: true, funding: { ok: true, included: { height: 1 } } });
    expect(r.lines.some((l) => l.includes('in block 1'))).toBe(true);
    expect(r.lines.some((l) => l.includes('had dropped'))).toBe(false);
  });
});
