// SPEC.md §8.11.4: the wallet's pieces: the key file (made once, mode 0600, kept), amounts in
// coins, keys, and the history read from verified blocks.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ed25519FromSeed, ed25519Verify, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { expectCode } from '../helpers/errors';
import { signTransfer as signFor, signUnboundTransfer } from '../../src/bandwidth/transfer';
import { GENESIS_PREVIOUS_HASH } from '../../src/wire/reward-block';
import { findTransfer, loadWalletKey, parseCoins, parseKey, pendingFrom, walletHistory } from '../../src/client/wallet';
import { walletCancel, walletSend } from '../../src/client/commands/wallet';
import * as rewardsCommands from '../../src/client/commands/rewards';
import * as walletModule from '../../src/client/wallet';
import { err } from '../../src/errors';
import { parseAuthorityList } from '../../src/dir/authorities';
import { PATHS } from '../../src/dir/fetch';
import { decodeTransfer, encodeTransfer, TRANSFER_BYTES, TRANSFER_VERSION, transferSignedBytes, type Transfer } from '../../src/wire/transfer';
import type { VerifiedRewardBlock } from '../../src/client/rewards';

// Signature checks are counted (an authority's answer cannot make the wallet verify more than a pool holds).
vi.mock('../../src/crypto/primitives', async (orig) => {
  const m = await orig<typeof import('../../src/crypto/primitives')>();
  return { ...m, ed25519Verify: vi.fn(m.ed25519Verify) };
});

/** SPEC §8.11.1: the id of the chain the wallet verified (the hash of its block 0). */
const CHAIN_ID = Buffer.alloc(32, 0xd1);
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, CHAIN_ID);

describe('bitcloud wallet (SPEC §8.11.4)', () => {
  it('makes the key once, mode 0600, and keeps it; --key reads another key file and never makes one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-wallet-unit-'));
    try {
      const a = await loadWalletKey(path.join(dir, 'client'));
      expect(a.created).toBe(true);
      expect(fs.statSync(a.file).mode & 0o777).toBe(0o600);
      const b = await loadWalletKey(path.join(dir, 'client'));
      expect(b.created).toBe(false);
      expect(b.key.publicKey.equals(a.key.publicKey)).toBe(true);
      const c = await loadWalletKey(dir, a.file);
      expect(c.key.publicKey.equals(a.key.publicKey)).toBe(true);
      await expect(loadWalletKey(dir, path.join(dir, 'missing.key'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      fs.writeFileSync(path.join(dir, 'client', 'wallet.key'), 'garbage', { mode: 0o600 });
      await expect(loadWalletKey(path.join(dir, 'client'))).rejects.toHaveProperty('code');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('two commands started together on a fresh data folder make one key: both get it, one reports it made', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-wallet-race-'));
    try {
      for (let round = 0; round < 5; round++) {
        const data = path.join(dir, `client${round}`);
        const got = await Promise.all([loadWalletKey(data), loadWalletKey(data), loadWalletKey(data)]);
        expect(got.filter((g) => g.created)).toHaveLength(1);
        for (const g of got) expect(g.key.publicKey.equals(got[0].key.publicKey)).toBe(true);
        const onDisk = await loadWalletKey(data);
        expect(onDisk.created).toBe(false);
        expect(onDisk.key.publicKey.equals(got[0].key.publicKey)).toBe(true);
        expect(fs.readdirSync(data)).toEqual(['wallet.key']); // no temp file left behind
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('amounts are coins with at most 8 decimals; keys are 64 hex characters', () => {
    expect(parseCoins('1')).toBe(100_000_000n);
    expect(parseCoins('0.5')).toBe(50_000_000n);
    expect(parseCoins('0.00000001')).toBe(1n);
    expect(parseCoins('12.34567891')).toBe(1_234_567_891n);
    for (const bad of ['0', '0.000000001', '-1', '1e3', 'abc', '', '1.', '99999999999']) expectCode(() => parseCoins(bad), 'CONFIG_INVALID');
    expect(parseKey('ab'.repeat(32))).toHaveLength(32);
    expectCode(() => parseKey('ab'), 'CONFIG_INVALID');
    // SPEC.md §3.1: one spelling per key; upper case is refused, never normalised.
    expectCode(() => parseKey('A'.repeat(64)), 'CONFIG_INVALID');
    expectCode(() => parseKey('ab'.repeat(31) + 'aB'), 'CONFIG_INVALID');
  });

  it('history lists rewards, transfers sent and received in chain order; a transfer is found by its bytes', () => {
    const me = ed25519FromSeed(Buffer.alloc(32, 1));
    const them = ed25519FromSeed(Buffer.alloc(32, 2));
    const hex = me.publicKey.toString('hex');
    const t1 = signTransfer(me, them.publicKey, 30n, 1);
    const t2 = signTransfer(them, me.publicKey, 5n, 1);
    const blk = (height: number, alloc: bigint, transfers: ReturnType<typeof signTransfer>[]): VerifiedRewardBlock => ({
      block: { height, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10 + height, minted: alloc, allocations: new Map(alloc ? [[hex, alloc]] : []), transfers },
      hash: Buffer.alloc(32), signers: [],
    });
    const blocks = [blk(0, 100n, []), blk(1, 0n, [t1, t2])];
    expect(walletHistory(blocks, hex).map((h) => [h.height, h.kind, h.units])).toEqual([[0, 'reward', 100n], [1, 'sent', -30n], [1, 'received', 5n]]);
    expect(findTransfer(blocks, t2)?.block.height).toBe(1);
    expect(findTransfer(blocks, signTransfer(me, them.publicKey, 30n, 2))).toBeNull();
    // Escrow (SPEC.md §9.20.4): a contract this key funded pays a node, then its cancel returns the rest.
    const C = 'cc'.repeat(32);
    const node = them.publicKey.toString('hex');
    const escrowBlock: VerifiedRewardBlock = {
      block: {
        height: 2, previousHash: GENESIS_PREVIOUS_HASH, epoch: 12, minted: 0n, allocations: new Map(), transfers: [signTransfer(me, Buffer.from(C, 'hex'), 40n, 2)],
        escrow: [{ kind: 'open', contract: C, payer: hex, startEpoch: 12, endEpoch: 16, funded: 40n, totalBytes: 10n }],
      },
      hash: Buffer.alloc(32), signers: [],
    };
    const later: VerifiedRewardBlock = {
      block: {
        height: 3, previousHash: GENESIS_PREVIOUS_HASH, epoch: 13, minted: 0n, allocations: new Map(),
        escrow: [{ kind: 'pay', contract: C, epoch: 13, node, amount: 10n }, { kind: 'cancel', contract: C, amount: 30n, signature: Buffer.alloc(64) }],
      },
      hash: Buffer.alloc(32), signers: [],
    };
    const all = [...blocks, escrowBlock, later];
    expect(walletHistory(all, hex).slice(3).map((h) => [h.height, h.kind, h.units])).toEqual([[2, 'sent', -40n], [3, 'escrow_back', 30n]]);
    expect(walletHistory(all, node).slice(-1).map((h) => [h.height, h.kind, h.units, h.counterparty])).toEqual([[3, 'escrow_pay', 10n, C]]);
  });
});

describe('bitcloud wallet: what authorities say is pending (SPEC §8.11.4)', () => {
  it('counts only transfers signed by the key, after the chain\'s nonce and without a gap: an authority cannot invent one', async () => {
    const me = ed25519FromSeed(Buffer.alloc(32, 7));
    const other = ed25519FromSeed(Buffer.alloc(32, 8));
    const to = Buffer.alloc(32, 9);
    const key = me.publicKey.toString('hex');
    const genuine = [3, 4].map((n) => signTransfer(me, to, 10n, n));
    // Forged: from the key, signed by another (nonce 5), or a real signature over other bytes.
    const forged = { ...signTransfer(other, to, 10n, 5), from: me.publicKey };
    const altered = { ...signTransfer(me, to, 10n, 5), amount: 1_000_000n };
    const served = [
      signTransfer(me, to, 10n, 2), // carried by the chain already (its last nonce is 2)
      ...genuine, forged, altered,
      signTransfer(me, to, 10n, 7), // past a gap: no pool could hold it
    ];
    const body = Buffer.concat([...served.map(encodeTransfer), Buffer.alloc(TRANSFER_BYTES, 0xff)]);
    const server = http.createServer((req, res) => {
      if (req.url === `${PATHS.transfersPending}?from=${key}`) { res.writeHead(200); res.end(body); } else { res.writeHead(404); res.end(); }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const auths = parseAuthorityList([{ name: 'a', identity: 'ab'.repeat(32), address: `127.0.0.1:${port}` }]);
      const pending = await pendingFrom(auths, key, 2, CHAIN_ID, 5000);
      expect(pending.map((t) => t.nonce)).toEqual([3, 4]);
      expect(pending.every((t) => t.amount === 10n)).toBe(true);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  /** One authority answering every request with `body` (its pending transfers); verify calls counted from zero. */
  async function withPendingServer(body: Buffer, f: (auths: ReturnType<typeof parseAuthorityList>) => Promise<void>): Promise<void> {
    const server = http.createServer((_req, res) => { res.writeHead(200); res.end(body); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      vi.mocked(ed25519Verify).mockClear();
      await f(parseAuthorityList([{ name: 'a', identity: 'ab'.repeat(32), address: `127.0.0.1:${port}` }]));
    } finally {
      await new Promise((r) => server.close(r));
    }
  }

  it('pending transfers: only nonces chainNonce + 1 .. + 16 (what a pool can hold) are verified, however many an authority serves', async () => {
    const me = ed25519FromSeed(Buffer.alloc(32, 61));
    const key = me.publicKey.toString('hex');
    const body = Buffer.concat(Array.from({ length: 200 }, (_, i) => encodeTransfer(signTransfer(me, Buffer.alloc(32, 9), 1n, 3 + i))));
    await withPendingServer(body, async (auths) => {
      const pending = await pendingFrom(auths, key, 2, CHAIN_ID, 5000);
      expect(pending.map((t) => t.nonce)).toEqual(Array.from({ length: 16 }, (_, i) => 3 + i));
      expect(vi.mocked(ed25519Verify)).toHaveBeenCalledTimes(16);
    });
  });

  it('pending transfers: forged entries repeating one nonce cost one verification per nonce, not one each', async () => {
    const me = ed25519FromSeed(Buffer.alloc(32, 62));
    const forger = ed25519FromSeed(Buffer.alloc(32, 63));
    const key = me.publicKey.toString('hex');
    // 200 entries all claiming nonce 3 from `me`, none signed by it; then a good one for nonce 3.
    const forged = Array.from({ length: 200 }, (_, i) => ({ ...signTransfer(forger, Buffer.alloc(32, 9), BigInt(i + 1), 3), from: me.publicKey }));
    const body = Buffer.concat([...forged, signTransfer(me, Buffer.alloc(32, 9), 1n, 3)].map((t) => encodeTransfer(t)));
    await withPendingServer(body, async (auths) => {
      // An authority's pool holds one transfer per nonce of a sender: the first it serves is the one tried.
      expect(await pendingFrom(auths, key, 2, CHAIN_ID, 5000)).toEqual([]);
      expect(vi.mocked(ed25519Verify)).toHaveBeenCalledTimes(1);
    });
  });

  it('pending transfers: a version 1 or 2 transfer the key signed on another network is not counted (no pool holds one, SPEC §8.11.3)', async () => {
    const me = ed25519FromSeed(Buffer.alloc(32, 64));
    const key = me.publicKey.toString('hex');
    // Signed by the key itself, naming no chain: valid on any network, so an authority can replay it.
    const replayed = [signUnboundTransfer(me, Buffer.alloc(32, 9), 1n, 3), signUnboundTransfer(me, Buffer.alloc(32, 9), 1n, 4, 2)];
    await withPendingServer(Buffer.concat(replayed.map(encodeTransfer)), async (auths) => {
      expect(await pendingFrom(auths, key, 2, CHAIN_ID, 5000)).toEqual([]);
      expect(vi.mocked(ed25519Verify)).toHaveBeenCalledTimes(0);
    });
    // A genuine pending transfer after a replayed one with its nonce still counts.
    const genuine = signTransfer(me, Buffer.alloc(32, 9), 1n, 3);
    await withPendingServer(Buffer.concat([replayed[0]!, genuine].map(encodeTransfer)), async (auths) => {
      expect((await pendingFrom(auths, key, 2, CHAIN_ID, 5000)).map((t) => t.version)).toEqual([TRANSFER_VERSION]);
    });
  });

  it('send to the wallet\'s own address is bad arguments (exit 2, CONFIG_INVALID)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-wallet-self-'));
    try {
      const config = path.join(dir, 'client.json');
      fs.writeFileSync(config, JSON.stringify({ dataDir: 'data', authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }] }));
      const { key } = await loadWalletKey(path.join(dir, 'data'));
      const out: string[] = [];
      expect(await walletSend(key.publicKey.toString('hex'), '1', { json: true, config }, { out: (s: string) => out.push(s), err: () => {} })).toBe(2);
      expect(JSON.parse(out[0])).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', message: expect.any(String) as unknown } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('send and cancel refuse a --wait-seconds that is not a number of seconds ≥ 0 (exit 2) before anything is sent', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-wallet-wait-'));
    try {
      // A real config whose one authority cannot be reached: a command that went on would fail
      // fetching the chain (exit 1), not on its argument.
      const config = path.join(dir, 'client.json');
      fs.writeFileSync(config, JSON.stringify({ dataDir: 'data', authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }] }));
      for (const w of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
        const out: string[] = [];
        const io = { out: (s: string) => out.push(s), err: () => {} };
        expect(await walletSend('ab'.repeat(32), '1', { json: true, waitSeconds: w, config }, io)).toBe(2);
        expect(JSON.parse(out[0])).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', message: expect.any(String) as unknown } });
        out.length = 0;
        expect(await walletCancel('cd'.repeat(32), { json: true, waitSeconds: w, config }, io)).toBe(2);
        expect(JSON.parse(out[0])).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', message: expect.any(String) as unknown } });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A client config naming one authority and a wallet key in a fresh folder; spies pushed on `spies` are restored and the folder removed after `fn`. */
async function inWalletDir(prefix: string, fn: (w: { config: string; key: Awaited<ReturnType<typeof loadWalletKey>>['key']; hex: string; spies: Array<{ mockRestore(): void }> }) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const spies: Array<{ mockRestore(): void }> = [];
  try {
    const config = path.join(dir, 'client.json');
    fs.writeFileSync(config, JSON.stringify({ dataDir: 'data', authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }] }));
    const { key } = await loadWalletKey(path.join(dir, 'data'));
    await fn({ config, key, hex: key.publicKey.toString('hex'), spies });
  } finally {
    for (const s of spies) s.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('bitcloud wallet send: waiting for the block (SPEC §8.11.4)', () => {
  it('a chain fetch that fails while waiting is passed over: the wait goes on and the transfer is reported included (exit 0)', async () => {
    await inWalletDir('bitcloud-wallet-refetch-', async ({ config, key, hex, spies }) => {
    const to = Buffer.alloc(32, 9);
    const t = signTransfer(key, to, 100_000_000n, 1); // Ed25519 is deterministic: the bytes send makes
    const chainWith = (blocks: VerifiedRewardBlock[], nonce: number, balance: bigint) => ({
      source: 'test', blocks, state: { height: blocks.length - 1, chainId: CHAIN_ID, balances: new Map([[hex, balance]]), nonces: new Map(nonce ? [[hex, nonce]] : []) },
    }) as unknown as rewardsCommands.VerifiedChainContext['chain'];
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: Buffer.alloc(32), signers: [] };
    const carrying: VerifiedRewardBlock = { block: { height: 1, previousHash: GENESIS_PREVIOUS_HASH, epoch: 11, minted: 0n, allocations: new Map(), transfers: [t] }, hash: Buffer.alloc(32), signers: [] };
    let fetches = 0;
    const refetch = async () => {
      fetches++;
      if (fetches === 1) throw err('DIR_FETCH_FAILED', 'no source answered');
      return chainWith([genesis, carrying], 1, 400_000_000n);
    };
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockResolvedValue([]));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockResolvedValue({ accepted: ['a'], refused: [], unreachable: [] } as unknown as Awaited<ReturnType<typeof walletModule.submitTransfer>>));
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain: chainWith([genesis], 0, 500_000_000n), consensus: { periodSeconds: 2 }, refetch,
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
    const out: string[] = [];
    const errs: string[] = [];
    const code = await walletSend(to.toString('hex'), '1', { json: true, config, waitSeconds: 60 }, { out: (x) => out.push(x), err: (x) => errs.push(x) });
    // The failed fetch is reported, once, naming its cause.
    expect(errs.filter((x) => x.includes('DIR_FETCH_FAILED') || x.includes('no source answered'))).toHaveLength(1);
    expect(out.map((x) => JSON.parse(x) as Record<string, unknown>).at(-1)).toMatchObject({ ok: true, nonce: 1, included: { height: 1, epoch: 11 } });
    expect(code).toBe(0);
    expect(fetches).toBe(2);
    });
  });
});

describe('bitcloud wallet send: bound to the chain it verified (SPEC §8.11.1, §8.11.4)', () => {
  it('signs a version 3 transfer over the id of the chain it verified (its block 0 hash): it verifies for that chain only', async () => {
    await inWalletDir('bitcloud-wallet-chainid-', async ({ config, key, hex, spies }) => {
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: CHAIN_ID, signers: [] };
    const chain = { source: 'test', blocks: [genesis], state: { height: 0, chainId: CHAIN_ID, tipHash: CHAIN_ID, balances: new Map([[hex, 500_000_000n]]), nonces: new Map() } };
    let sent: Transfer | null = null;
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockResolvedValue([]));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockImplementation(async (_a, t) => {
      sent = t;
      return { accepted: ['a'], refused: [], unreachable: [] } as unknown as Awaited<ReturnType<typeof walletModule.submitTransfer>>;
    }));
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain, consensus: { periodSeconds: 2 }, refetch: async () => chain,
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
    const code = await walletSend('09'.repeat(32), '1', { json: true, config, noWait: true }, { out: () => {}, err: () => {} });
    expect(code).toBe(0);
    const t = sent as Transfer | null;
    expect(t?.version).toBe(TRANSFER_VERSION);
    expect(ed25519Verify(t!.signature, transferSignedBytes(t!, CHAIN_ID), key.publicKey)).toBe(true);
    // Another network's chain (another block 0) does not take it.
    expect(ed25519Verify(t!.signature, transferSignedBytes(t!, Buffer.alloc(32, 0xd2)), key.publicKey)).toBe(false);
    });
  });
});

describe('bitcloud wallet send: two sends of one key at once (SPEC §8.11.4)', () => {
  it('the second reads the first\'s transfer as pending and signs the next nonce: no nonce is signed twice for other contents', async () => {
    await inWalletDir('bitcloud-wallet-race-', async ({ config, hex, spies }) => {
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: CHAIN_ID, signers: [] };
    const chain = { source: 'test', blocks: [genesis], state: { height: 0, chainId: CHAIN_ID, tipHash: CHAIN_ID, balances: new Map([[hex, 500_000_000n]]), nonces: new Map() } };
    // The authorities' pool: what was submitted, served back as pending (after a turn of the event loop, as a fetch would).
    const pool: Transfer[] = [];
    const tick = () => new Promise((r) => setImmediate(r));
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockImplementation(async () => { await tick(); return [...pool]; }));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockImplementation(async (_a, t) => {
      await tick();
      if (pool.some((x) => x.nonce === t.nonce)) return { accepted: [], refused: [{ authority: 'a', code: 'TRANSFER_REPLAYED', reason: 'nonce used' }], unreachable: [] };
      pool.push(t);
      return { accepted: ['a'], refused: [], unreachable: [] };
    }));
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain, consensus: { periodSeconds: 2 }, refetch: async () => chain,
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
    const io = { out: () => {}, err: () => {} };
    const codes = await Promise.all([
      walletSend('09'.repeat(32), '1', { json: true, config, noWait: true }, io),
      walletSend('0a'.repeat(32), '2', { json: true, config, noWait: true }, io),
    ]);
    expect(codes).toEqual([0, 0]);
    expect(pool.map((t) => t.nonce).sort()).toEqual([1, 2]);
    expect(pool.map((t) => t.amount).sort()).toEqual([100_000_000n, 200_000_000n]);
    });
  });
});

describe('bitcloud wallet send: a block lands while a send waits for the key\'s lock (SPEC §8.11.4)', () => {
  it('the send that waited reads the chain again: it signs the next free nonce, not one the block used', async () => {
    await inWalletDir('bitcloud-wallet-lock-chain-', async ({ config, key, hex, spies }) => {
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: CHAIN_ID, signers: [] };
    // The chain as it is now (each read a snapshot) and the authorities' pool. An earlier send's
    // transfer (nonce 1) is pending; a block carries it while the first of the two sends submits.
    const earlier = signTransfer(key, Buffer.alloc(32, 8), 100_000_000n, 1);
    let chainNonce = 0;
    let balance = 500_000_000n;
    const snapshot = () => ({
      source: 'test', blocks: [genesis], state: { height: chainNonce, chainId: CHAIN_ID, tipHash: CHAIN_ID, balances: new Map([[hex, balance]]), nonces: new Map(chainNonce ? [[hex, chainNonce]] : []) },
    }) as unknown as rewardsCommands.VerifiedChainContext['chain'];
    let pool: Transfer[] = [earlier];
    const tick = () => new Promise((r) => setImmediate(r));
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockImplementation(async (_a, _k, from) => {
      await tick();
      const run: Transfer[] = [];
      for (let n = from + 1; pool.some((x) => x.nonce === n); n++) run.push(pool.find((x) => x.nonce === n)!);
      return run;
    }));
    const signed: Transfer[] = [];
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockImplementation(async (_a, t) => {
      await tick();
      signed.push(t);
      if (pool.includes(earlier)) { pool = pool.filter((x) => x !== earlier); chainNonce = 1; balance -= earlier.amount; } // the block lands
      if (t.nonce <= chainNonce || pool.some((x) => x.nonce === t.nonce)) return { accepted: [], refused: [{ authority: 'a', code: 'TRANSFER_REPLAYED', reason: 'nonce used' }], unreachable: [] };
      pool.push(t);
      return { accepted: ['a'], refused: [], unreachable: [] };
    }));
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain: snapshot(), consensus: { periodSeconds: 2 }, refetch: async () => { await tick(); return snapshot(); },
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
    const io = { out: () => {}, err: () => {} };
    const codes = await Promise.all([
      walletSend('09'.repeat(32), '1', { json: true, config, noWait: true }, io),
      walletSend('0a'.repeat(32), '2', { json: true, config, noWait: true }, io),
    ]);
    expect(codes).toEqual([0, 0]);
    // No nonce signed twice: 2 for the first, 3 for the one that waited (1 is the block's).
    expect(signed.map((t) => t.nonce).sort()).toEqual([2, 3]);
    expect(pool.map((t) => t.nonce).sort()).toEqual([2, 3]);
    });
  });
});

describe('bitcloud wallet send: a transfer lost from the pools while waiting (SPEC §8.11.3, §8.11.4)', () => {
  it('is submitted again, the same bytes, once a period passed: a pool emptied by a restart takes it back and a block carries it', async () => {
    await inWalletDir('bitcloud-wallet-resend-', async ({ config, hex, spies }) => {
    const genesis: VerifiedRewardBlock = { block: { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 10, minted: 500_000_000n, allocations: new Map([[hex, 500_000_000n]]), transfers: [] }, hash: CHAIN_ID, signers: [] };
    const chainOf = (blocks: VerifiedRewardBlock[]) => ({
      source: 'test', blocks, state: { height: blocks.length - 1, chainId: CHAIN_ID, tipHash: CHAIN_ID, balances: new Map([[hex, 500_000_000n]]), nonces: new Map(blocks.length > 1 ? [[hex, 1]] : []) },
    }) as unknown as rewardsCommands.VerifiedChainContext['chain'];
    // The authorities' pools: emptied (every authority restarted) right after the first submission.
    let pool: Buffer[] = [];
    const submitted: Buffer[] = [];
    spies.push(vi.spyOn(walletModule, 'pendingFrom').mockResolvedValue([]));
    spies.push(vi.spyOn(walletModule, 'submitTransfer').mockImplementation(async (_a, t) => {
      submitted.push(encodeTransfer(t));
      pool.push(encodeTransfer(t));
      return { accepted: ['a'], refused: [], unreachable: [] };
    }));
    // A clock a period on at every fetch; a fetch builds the next block from what the pools hold.
    let clock = 0;
    const periodSeconds = 2;
    const refetch = async () => {
      clock += periodSeconds * 1000;
      if (submitted.length === 1) pool = [];
      if (!pool.length) return chainOf([genesis]);
      return chainOf([genesis, { block: { height: 1, previousHash: CHAIN_ID, epoch: 11, minted: 0n, allocations: new Map(), transfers: pool.map((b) => decodeTransfer(b)) }, hash: Buffer.alloc(32, 1), signers: [] }]);
    };
    spies.push(vi.spyOn(rewardsCommands, 'withVerifiedChain').mockImplementation(async (_o, _now, fn) => fn({
      chain: chainOf([genesis]), consensus: { periodSeconds }, refetch,
    } as unknown as rewardsCommands.VerifiedChainContext) as never));
    const out: string[] = [];
    const code = await walletSend('09'.repeat(32), '1', { json: true, config, waitSeconds: 10 }, { out: (x) => out.push(x), err: () => {} }, () => clock);
    expect(out.map((x) => JSON.parse(x) as Record<string, unknown>).at(-1)).toMatchObject({ ok: true, nonce: 1, included: { height: 1 } });
    expect(code).toBe(0);
    // Submitted twice, never re-signed: the same 145 bytes.
    expect(submitted).toHaveLength(2);
    expect(submitted[1]!.equals(submitted[0]!)).toBe(true);
    });
  });
});
