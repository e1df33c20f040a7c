// SPEC.md §8.7: three authorities' reward ledgers on 127.0.0.1, each behind a real node:http
// server answering the real routes (GET /bitcloud/rewards, /bitcloud/rewards/pending,
// /bitcloud/keys/certificate). Two agree on a block and publish it at 2 of 3; the third, started
// later, catches up; blocks are stored atomically and survive a restart; a bad stored block is set
// aside and fetched again.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { PATHS } from '../../src/dir/fetch';
import type { VerifiedConsensus } from '../../src/dir/types';
import {
  decodeRewardChainBundle, decodeSignedRewardBlock, encodeRewardBlock, encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, rewardSignatureVerifies, signRewardBlock,
  verifyChain,
} from '../../src/bandwidth/reward-chain';
import { certifiedRewardAuthorities } from '../../src/dir/reward-authorities';
import { blake2b, ed25519FromSeed } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { RewardLedger } from '../../directory/rewards';
import { blockFileName, certificateFileName } from '../../directory/reward-store';
import { BUNDLE_CACHE_BYTES, RewardBundles, serveRewards, serveTransfers } from '../../directory/reward-http';
import { TransferPool } from '../../directory/transfer-pool';
import { signTransfer as signFor } from '../../src/bandwidth/transfer';
import { fetchRewardChain } from '../../src/client/rewards';
import { startLedgerTrio, type LedgerTrio, type TrioNode } from '../helpers/ledger-trio';

// Writes of pending.blk wait for `pendingGate` while it is set (to see what is served meanwhile).
const gate = vi.hoisted(() => ({ pendingGate: null as Promise<void> | null, file: '' }));
vi.mock('../../src/ops/fsutil', async (orig) => {
  const real = await orig<typeof import('../../src/ops/fsutil')>();
  return {
    ...real,
    writeFileAtomic: async (...args: Parameters<typeof real.writeFileAtomic>) => {
      if (gate.pendingGate && String(args[0]) === gate.file) await gate.pendingGate;
      return real.writeFileAtomic(...args);
    },
  };
});

// Counts the decodes of block bodies (allocations and all) made through the wire module's exports.
const decodes = vi.hoisted(() => ({ n: 0 }));
vi.mock('../../src/wire/reward-block', async (orig) => {
  const real = await orig<typeof import('../../src/wire/reward-block')>();
  return {
    ...real,
    decodeRewardBlock: (...args: Parameters<typeof real.decodeRewardBlock>) => { decodes.n++; return real.decodeRewardBlock(...args); },
    decodeSignedRewardBlock: (...args: Parameters<typeof real.decodeSignedRewardBlock>) => { decodes.n++; return real.decodeSignedRewardBlock(...args); },
    // A bundle decoded whole decodes every block's body.
    decodeRewardChainBundle: (...args: Parameters<typeof real.decodeRewardChainBundle>) => {
      const b = real.decodeRewardChainBundle(...args);
      decodes.n += b.blocks.length;
      return b;
    },
  };
});

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const fp = (n: number) => n.toString(16).padStart(64, '0');

let trio: LedgerTrio;
let nodes: TrioNode[];
let authorities: LedgerTrio['authorities'];

function consensus(epoch: number, proven: [number, number][]): VerifiedConsensus {
  return { provenEpoch: epoch, relays: proven.map(([n, p]) => ({ fingerprint: fp(n), nickname: `r${n}`, proven: p })), periodSeconds: P } as unknown as VerifiedConsensus;
}

const startLedger = (n: TrioNode): RewardLedger => trio.start(n);
const rounds = (times = 3) => trio.rounds(times);

async function metric(n: TrioNode, name: string): Promise<number> {
  const m = await n.reg.getSingleMetric(name)!.get();
  return m.values.reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  trio = await startLedgerTrio({ seed: 60, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-', startAll: false });
  ({ nodes, authorities } = trio);
});

afterAll(() => trio.close());

describe('reward ledgers of three authorities (SPEC §8.7)', () => {
  it('two authorities agree on a block and publish it at 2 of 3', async () => {
    const [a, b] = [startLedger(nodes[0]), startLedger(nodes[1])];
    expect(a.height).toBe(-1);
    const info = consensus(E0, [[1, 300], [2, 100], [3, 0]]);
    a.onConsensus(info);
    b.onConsensus(info);
    expect(a.pendingBlock).toMatchObject({ height: 0, epoch: E0, published: false });
    await rounds();
    for (const l of [a, b]) {
      expect(l.height).toBe(0);
      expect(l.tipEpoch).toBe(E0);
      expect(l.pendingBlock!.signers).toHaveLength(2);
    }
    expect(a.chain.tipHash.equals(b.chain.tipHash)).toBe(true);
    // Exact proportional split of 50 coins, relay 3 (nothing proven) left out.
    expect(a.chain.balances).toEqual(new Map([[fp(1), 3_750_000_000n], [fp(2), 1_250_000_000n]]));
    const stored = decodeSignedRewardBlock(fs.readFileSync(path.join(nodes[0].dir, 'rewards', 'blocks', blockFileName(0))));
    expect(stored.signatures).toHaveLength(2);
    expect(stored.hash.equals(a.chain.tipHash)).toBe(true);
    expect(await metric(nodes[0], 'bitcloud_reward_height')).toBe(0);
    expect(await metric(nodes[0], 'bitcloud_reward_minted_units_total')).toBe(5_000_000_000);
    expect(await metric(nodes[0], 'bitcloud_reward_blocks_total')).toBe(1);
    const line = nodes[0].logs.find((l) => l.msg === 'reward block appended');
    expect(line).toMatchObject({ level: 30, height: 0, epoch: E0, minted: '5000000000', allocations: 2, signers: 2 });
  });

  it('never builds a block for an epoch at or before its tip', async () => {
    const a = nodes[0].ledger!;
    const before = a.pendingBlock;
    a.onConsensus(consensus(E0, [[9, 1]]));
    expect(a.pendingBlock).toEqual(before);
  });

  it('a third authority started later catches up from the others', async () => {
    const c = startLedger(nodes[2]);
    expect(c.height).toBe(-1);
    await rounds(1);
    expect(c.height).toBe(0);
    expect(c.chain.tipHash.equals(nodes[0].ledger!.chain.tipHash)).toBe(true);
    expect(fs.existsSync(path.join(nodes[2].dir, 'rewards', 'blocks', blockFileName(0)))).toBe(true);
  });

  it('all three sign the next block; the stored block keeps late signatures', async () => {
    const info = consensus(E0 + 1, [[1, 10], [4, 20], [5, 30]]);
    for (const n of nodes) n.ledger!.onConsensus(info);
    await rounds();
    for (const n of nodes) {
      expect(n.ledger!.height).toBe(1);
      expect(n.ledger!.pendingBlock!.signers).toHaveLength(3);
      const raw = fs.readFileSync(path.join(n.dir, 'rewards', 'blocks', blockFileName(1)));
      expect(decodeSignedRewardBlock(raw).signatures).toHaveLength(3);
    }
  });

  it('a client fetches and verifies the chain; every block allocates exactly what it mints', async () => {
    const r = await fetchRewardChain({ authorities, periodSeconds: P });
    expect(r.state.height).toBe(1);
    expect(r.failures).toEqual([]);
    for (const b of r.blocks) expect([...b.block.allocations.values()].reduce((x, y) => x + y, 0n)).toBe(b.block.minted);
    expect(r.state.totalMinted).toBe(10_000_000_000n);
    // 10:20:30 of 50 coins; the one unit left over goes to the largest remainder (relay 4).
    expect(r.state.balances.get(fp(1))).toBe(3_750_000_000n + 833_333_333n);
    expect(r.state.balances.get(fp(4))).toBe(1_666_666_667n);
    expect(r.blocks[1].signers).toHaveLength(3);
  });

  it('stores atomically (no temporary files left) and reloads the chain after a restart', async () => {
    const n = nodes[0];
    const tip = n.ledger!.chain.tipHash;
    await n.ledger!.close();
    const files = fs.readdirSync(path.join(n.dir, 'rewards'), { recursive: true }) as string[];
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const again = startLedger(n);
    expect(again.height).toBe(1);
    expect(again.chain.tipHash.equals(tip)).toBe(true);
    expect(again.chain.totalMinted).toBe(10_000_000_000n);
  });

  it('a bad stored block is set aside (valid prefix kept) and fetched again from the others', async () => {
    const n = nodes[0];
    await n.ledger!.close();
    const file = path.join(n.dir, 'rewards', 'blocks', blockFileName(1));
    const raw = fs.readFileSync(file);
    // First allocation of block 1, its sum no longer minted; the signatures are checked first and
    // no longer verify over the altered body (SPEC §8.7.3 item 5 before item 6).
    raw[4 + 61 + 32 + 7] ^= 1;
    fs.writeFileSync(file, raw);
    const l = startLedger(n);
    expect(l.height).toBe(0);
    expect(n.logs.find((x) => x.msg === 'stored reward block does not verify; keeping the valid prefix')).toMatchObject({ level: 50, height: 1, code: 'REWARD_BAD_SIGNATURE' });
    expect(fs.existsSync(`${file}.rejected`)).toBe(true);
    await rounds(1);
    expect(l.height).toBe(1);
    expect(l.chain.tipHash.equals(nodes[1].ledger!.chain.tipHash)).toBe(true);
  });

  it('a different body at the same height is counted and never merged', async () => {
    const [a, b] = [nodes[0].ledger!, nodes[1].ledger!];
    // C is down: its ledger stops answering.
    await trio.stop(nodes[2]);
    a.onConsensus(consensus(E0 + 2, [[1, 1]]));
    b.onConsensus(consensus(E0 + 2, [[1, 2], [2, 1]]));
    await rounds(2);
    expect(a.height).toBe(1);
    expect(b.height).toBe(1);
    expect(a.pendingBlock!.signers).toEqual([nodes[0].signer.identity.toString('hex')]);
    const m = await nodes[0].reg.getSingleMetric('bitcloud_reward_signatures_total')!.get();
    expect(m.values.find((v) => v.labels.result === 'body_mismatch')?.value ?? 0).toBeGreaterThan(0);
    expect(nodes[0].logs.some((x) => x.msg === 'authority holds a different reward block')).toBe(true);
  });

  it('signs at most one body per height, also across a restart (pending.blk)', async () => {
    const n = nodes[0];
    n.ledger!.onConsensus(consensus(E0 + 3, [[1, 5]]));
    expect(n.ledger!.pendingBlock).toMatchObject({ height: 2, epoch: E0 + 2 });
    await n.ledger!.close();
    const again = startLedger(n);
    expect(again.pendingBlock).toMatchObject({ height: 2, epoch: E0 + 2, published: false });
    again.onConsensus(consensus(E0 + 3, [[1, 5]]));
    expect(again.pendingBlock).toMatchObject({ height: 2, epoch: E0 + 2 });
  });

  it('serves a chain bundle without decoding the stored blocks\' bodies (SPEC §8.7.5)', async () => {
    const a = nodes[0].ledger!;
    expect(a.height).toBeGreaterThanOrEqual(1);
    decodes.n = 0;
    const raw = await a.bundle(0);
    const counted = decodes.n;
    const b = decodeRewardChainBundle(raw);
    expect(b.blocks).toHaveLength(a.height + 1);
    expect(b.certificates.length).toBeGreaterThan(0);
    expect(counted).toBe(0);
  });

  it('serves 404 REWARD_NOT_AVAILABLE when nothing is pending, and an empty bundle as 200 with zero blocks', async () => {
    const c = nodes[2];
    const res = await fetch(`http://127.0.0.1:${c.port}${PATHS.rewardsPending}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'REWARD_NOT_AVAILABLE' });
    const bad = await fetch(`http://127.0.0.1:${nodes[0].port}${PATHS.rewards}?from=-1`);
    expect(bad.status).toBe(400);
    const beyond = await fetch(`http://127.0.0.1:${nodes[0].port}${PATHS.rewards}?from=99`);
    expect(beyond.status).toBe(200);
    expect(decodeRewardChainBundle(Buffer.from(await beyond.arrayBuffer()))).toMatchObject({ chainLength: 2, blocks: [] });
  });
});

describe('certificate files (SPEC §8.7.6)', () => {
  it('are named by the whole BLAKE2b-256 of the envelope, so two certificates of one pair never share a file', () => {
    const raw = Buffer.from('a certificate envelope');
    const name = certificateFileName('ab'.repeat(20), 'cd'.repeat(32), raw);
    expect(name).toBe(`${'ab'.repeat(20)}-${'cd'.repeat(32)}-${blake2b(raw).toString('hex')}.cert`);
    expect(name.length).toBeLessThan(255);
  });
});

describe('pending block durability (SPEC §8.7.4)', () => {
  it('serves its pending block (and its signature) only once pending.blk is on disk', async () => {
    const t = await startLedgerTrio({ seed: 90, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-pending-', startAll: false, logLevel: 'silent' });
    try {
      const ls = t.nodes.map((n) => t.start(n));
      // The proposer of height 0 signs its block at once; its pending.blk write is held back.
      const i = ls.findIndex((l, k) => l.proposerOf(0) === t.nodes[k].signer.identity.toString('hex'));
      const [a, n] = [ls[i], t.nodes[i]];
      const others = ls.filter((l) => l !== a);
      let release!: () => void;
      gate.file = path.join(n.dir, 'rewards', 'pending.blk');
      gate.pendingGate = new Promise<void>((r) => { release = r; });
      a.onConsensus(consensus(E0, [[1, 300]]));
      expect(a.pendingBlock).toMatchObject({ height: 0 });
      expect(fs.existsSync(gate.file)).toBe(false);
      expect(a.pendingBytes()).toBeNull();
      expect((await fetch(`http://127.0.0.1:${n.port}${PATHS.rewardsPending}`)).status).toBe(404);
      // The others sign the same body and ask for A's signature meanwhile: they do not get it.
      for (const l of others) l.onConsensus(consensus(E0, [[1, 300]]));
      for (let r = 0; r < 3; r++) {
        for (const l of others) l.tick();
        await Promise.all(others.map((l) => l.whenIdle()));
      }
      for (const l of others) expect(l.pendingBlock!.signers).not.toContain(n.signer.identity.toString('hex'));
      release();
      gate.pendingGate = null;
      await a.whenIdle();
      expect(a.pendingBytes()!.equals(fs.readFileSync(gate.file))).toBe(true);
      await t.rounds(3);
      for (const l of ls) {
        expect(l.height).toBe(0);
        expect(l.pendingBlock!.signers).toContain(n.signer.identity.toString('hex'));
      }
    } finally {
      gate.pendingGate = null;
      await t.close();
    }
  });
});

describe('catch-up of the own pending block (SPEC §8.7.4)', () => {
  it('merges only the signatures that count and verify; a bogus entry does not stand in for an authority', async () => {
    let crafted: Buffer | null = null;
    const t = await startLedgerTrio({
      seed: 110, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-catchup-', startAll: false, logLevel: 'silent',
      // While `crafted` is set, B and C serve it as their chain and hold no pending block.
      route: (n, url, _req, res) => {
        if (!crafted || n === t.nodes[ia]) return false;
        if (url.pathname === PATHS.rewardsPending) { res.writeHead(404); res.end('{}'); return true; }
        if (url.pathname === PATHS.rewards) { res.writeHead(200, { 'content-length': crafted.length }); res.end(crafted); return true; }
        return false;
      },
    });
    const ls = t.nodes.map((n) => t.start(n));
    const fps = t.nodes.map((n) => n.signer.identity.toString('hex'));
    // A proposes height 0; B and C sign its body.
    const ia = ls.findIndex((l, k) => l.proposerOf(0) === fps[k]);
    const [ib, ic] = [0, 1, 2].filter((k) => k !== ia);
    const [a, b, c] = [ls[ia], ls[ib], ls[ic]];
    try {
      for (const l of ls) l.onConsensus(consensus(E0, [[1, 300]]));
      await a.whenIdle();
      for (const l of [b, c]) { l.tick(); await l.whenIdle(); }
      const theirs = decodeSignedRewardBlock(b.pendingBytes()!);
      expect(theirs.hash.equals(decodeSignedRewardBlock(a.pendingBytes()!).hash)).toBe(true);
      const sigA = decodeSignedRewardBlock(a.pendingBytes()!).signatures.find((s) => s.authority.equals(t.nodes[ia].signer.identity))!;
      const sigB = theirs.signatures.find((s) => s.authority.equals(t.nodes[ib].signer.identity))!;
      // A majority (A, B) and an entry under C's identity that does not count (a key C never certified).
      const bogusC = { authority: t.nodes[ic].signer.identity, signingKey: Buffer.alloc(32, 7), signature: Buffer.alloc(64, 9) };
      const sigs = [sigA, sigB, bogusC].sort((x, y) => Buffer.compare(x.authority, y.authority));
      crafted = encodeRewardChainBundle(1, [t.nodes[ia].signer.certificate, t.nodes[ib].signer.certificate], [encodeSignedRewardBlock(theirs.body, sigs)]);
      a.tick();
      await a.whenIdle();
      expect(a.height).toBe(0);
      expect(a.pendingBlock!.signers).toEqual([fps[ia], fps[ib]].sort());
      // C's real signature is still fetched, and the stored block carries it.
      crafted = null;
      await t.rounds(2);
      expect(a.pendingBlock!.signers).toEqual([...fps].sort());
      const stored = decodeSignedRewardBlock(fs.readFileSync(path.join(t.nodes[ia].dir, 'rewards', 'blocks', blockFileName(0))));
      const sigC = stored.signatures.find((s) => s.authority.equals(t.nodes[ic].signer.identity))!;
      expect(rewardSignatureVerifies(stored.body, sigC)).toBe(true);
    } finally {
      await t.close();
    }
  });

  it('catching up its own pending block from a peer, serves that block without its signature until pending.blk is on disk', async () => {
    const t = await startLedgerTrio({ seed: 91, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-catchup-', startAll: false, logLevel: 'silent' });
    let release = () => {};
    try {
      const ls = t.nodes.map((n) => t.start(n));
      const i = ls.findIndex((l, k) => l.proposerOf(0) === t.nodes[k].signer.identity.toString('hex'));
      const [a, n] = [ls[i], t.nodes[i]];
      const self = n.signer.identity.toString('hex');
      const others = ls.filter((l) => l !== a);
      gate.file = path.join(n.dir, 'rewards', 'pending.blk');
      gate.pendingGate = new Promise<void>((r) => { release = r; });
      a.onConsensus(consensus(E0, [[1, 300]]));
      // The others sign the same body and publish it at 2 of 3 while A's pending.blk is held back.
      for (const l of others) l.onConsensus(consensus(E0, [[1, 300]]));
      for (let r = 0; r < 3; r++) {
        for (const l of others) l.tick();
        await Promise.all(others.map((l) => l.whenIdle()));
      }
      for (const l of others) expect(l.height).toBe(0);
      // A catches the block up: the same body as its pending one, which it has signed.
      a.tick();
      await vi.waitFor(() => expect(a.height).toBe(0), { timeout: 10_000 });
      const served = async () => {
        const r = await fetch(`http://127.0.0.1:${n.port}${PATHS.rewards}?from=0`);
        expect(r.status).toBe(200);
        return decodeRewardChainBundle(Buffer.from(await r.arrayBuffer())).blocks[0].signatures.map((s) => s.authority.toString('hex'));
      };
      expect(fs.existsSync(gate.file)).toBe(false);
      expect(await served()).not.toContain(self);
      expect((await fetch(`http://127.0.0.1:${n.port}${PATHS.rewardsPending}`)).status).toBe(404);
      release();
      gate.pendingGate = null;
      await a.whenIdle();
      // Once stored, the block carries A's signature too, served and on disk.
      expect(await served()).toContain(self);
      const stored = decodeSignedRewardBlock(fs.readFileSync(path.join(n.dir, 'rewards', 'blocks', blockFileName(0))));
      expect(stored.signatures.map((s) => s.authority.toString('hex'))).toContain(self);
    } finally {
      gate.pendingGate = null;
      release();
      await t.close();
    }
  });
});

describe('certificates taken in a catch-up (SPEC §8.7.4, §8.7.5, §8.7.6)', () => {
  // A (auth0) and H (auth2) publish block 0 at 2 of 3; then H serves, on GET /bitcloud/rewards, a
  // bundle of certificates it signs itself and one junk block.
  async function hostileSetup(seed: number) {
    let hostile: Buffer | null = null;
    const t = await startLedgerTrio({
      seed, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-certs-', startAll: false, logLevel: 'silent', clock: NOW,
      route: (n, url, _req, res) => {
        if (!hostile || n !== t.nodes[2] || url.pathname !== PATHS.rewards) return false;
        res.writeHead(200, { 'content-length': hostile.length });
        res.end(hostile);
        return true;
      },
    });
    const [a, h] = [t.start(t.nodes[0]), t.start(t.nodes[2])];
    for (const l of [a, h]) l.onConsensus(consensus(E0, [[1, 300]]));
    await t.rounds(3);
    expect(a.height).toBe(0);
    expect(a.pendingBlock!.signers).toHaveLength(2);
    const hId = ed25519FromSeed(Buffer.alloc(32, seed + 2));
    const junk = encodeSignedRewardBlock(encodeRewardBlock({ height: 1, previousHash: Buffer.alloc(32, 1), epoch: E0 + 1, minted: 0n, allocations: new Map() }), []);
    return { t, a, h, hId, junk, serve: (b: Buffer | null) => { hostile = b; } };
  }
  /** How many blocks A refused as REWARD_CHAIN_BROKEN_LINK: the junk block, so the hostile bundle was read. */
  const authoritiesOf = (t: LedgerTrio) => t.nodes.map((n) => ({ identity: n.signer.identity }));
  const junkRefused = async (n: TrioNode): Promise<number> =>
    (await n.reg.getSingleMetric('bitcloud_reward_blocks_total')!.get()).values.find((v) => v.labels.how === 'refused_REWARD_CHAIN_BROKEN_LINK')?.value ?? 0;

  it('a certificate served for a signing key whose stored signatures another one vouches for does not replace it', async () => {
    const { t, a, hId, junk, serve } = await hostileSetup(130);
    try {
      const real = t.nodes[2].signer.certificate;
      const hSigningKey = t.nodes[2].signer.signingKey.publicKey;
      serve(encodeRewardChainBundle(5, [makeKeyCertificate(hId, hSigningKey, 1, 2)], [junk]));
      await t.rounds(2);
      expect(await junkRefused(t.nodes[0])).toBeGreaterThan(0);
      const certs = decodeRewardChainBundle(await a.bundle(0)).certificates;
      expect(certs.some((c) => c.equals(real))).toBe(true);
      await a.close();
      const again = t.start(t.nodes[0]);
      expect(again.height).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('a re-certified key vouching for an appended block is kept beside the certificate of the stored ones', async () => {
    const seed = 160;
    const { t, a, serve } = await hostileSetup(seed);
    try {
      // Block 1, two days on, signed by H and auth1 with their keys re-certified for that time only.
      const day = 86_400_000;
      const later = Date.now() + 2 * day;
      const tip = { height: 0, hash: a.chain.tipHash, epoch: a.chain.epoch };
      const b1 = nextRewardBlock(tip, Math.floor(later / (P * 1000)), new Map());
      const signers = [1, 2].map((i) => ({ id: ed25519FromSeed(Buffer.alloc(32, seed + i)), sk: ed25519FromSeed(Buffer.alloc(32, seed + 10 + i)) }));
      const renewed = signers.map((s) => makeKeyCertificate(s.id, s.sk.publicKey, later - day / 2, later + day));
      const sigs = signers.map((s) => signRewardBlock(b1.body, s.id.publicKey, s.sk)).sort((x, y) => Buffer.compare(x.authority, y.authority));
      serve(encodeRewardChainBundle(2, renewed, [encodeSignedRewardBlock(b1.body, sigs)]));
      await t.rounds(1);
      await a.whenIdle();
      expect(a.height).toBe(1);
      const certs = decodeRewardChainBundle(await a.bundle(0)).certificates;
      expect(certs.some((c) => c.equals(t.nodes[2].signer.certificate))).toBe(true); // block 0's
      expect(certs.some((c) => c.equals(renewed[1]))).toBe(true); // block 1's, same (identity, signing key)
      await a.close();
      expect(t.start(t.nodes[0]).height).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('stores a caught-up block with only the signatures that count: an entry under a key no certificate vouches for yet is dropped', async () => {
    const seed = 180;
    const { t, a, serve } = await hostileSetup(seed);
    try {
      // Block 1, signed by A and H (a majority); H adds an entry under auth1's identity with a key
      // auth1 certifies later, and a signature that does not verify, and serves no certificate for it.
      const tip = { height: 0, hash: a.chain.tipHash, epoch: a.chain.epoch };
      const b1 = nextRewardBlock(tip, E0 + 1, new Map());
      const good = [t.nodes[0], t.nodes[2]].map((n) => signRewardBlock(b1.body, n.signer.identity, n.signer.signingKey));
      const id1 = ed25519FromSeed(Buffer.alloc(32, seed + 1));
      const laterKey = ed25519FromSeed(Buffer.alloc(32, seed + 30));
      const garbled = { authority: Buffer.from(id1.publicKey), signingKey: Buffer.from(laterKey.publicKey), signature: Buffer.alloc(64, 5) };
      const sigs = [...good, garbled].sort((x, y) => Buffer.compare(x.authority, y.authority));
      serve(encodeRewardChainBundle(2, [t.nodes[2].signer.certificate], [encodeSignedRewardBlock(b1.body, sigs)]));
      await t.rounds(1);
      await a.whenIdle();
      expect(a.height).toBe(1);
      const stored = decodeSignedRewardBlock(fs.readFileSync(path.join(t.nodes[0].dir, 'rewards', 'blocks', blockFileName(1))));
      expect(stored.signatures.map((s) => s.authority.toString('hex')).sort()).toEqual([t.nodes[0], t.nodes[2]].map((n) => n.signer.identity.toString('hex')).sort());
      // Once auth1's certificate for that key is known, the chain A serves still verifies.
      const now = Date.now();
      const cert1 = makeKeyCertificate(id1, laterKey.publicKey, now - 86_400_000, now + 86_400_000);
      const served = decodeRewardChainBundle(await a.bundle(0));
      const state = verifyChain(served.blocks, certifiedRewardAuthorities(authoritiesOf(t), [...served.certificates, cert1], { periodSeconds: P }));
      expect(state.height).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('reads a bundle block by block: after a first block that fails, the blocks behind it are not decoded', async () => {
    const { t, a, junk, serve } = await hostileSetup(170);
    try {
      const allocations = new Map(Array.from({ length: 1000 }, (_, i) => [fp(i + 1), 1n] as const));
      const big = Array.from({ length: 20 }, (_, i) =>
        encodeSignedRewardBlock(encodeRewardBlock({ height: 2 + i, previousHash: Buffer.alloc(32, 2), epoch: E0 + 2 + i, minted: 1000n, allocations }), []));
      serve(encodeRewardChainBundle(30, [], [junk, ...big]));
      decodes.n = 0;
      await t.rounds(1);
      await a.whenIdle();
      expect(await junkRefused(t.nodes[0])).toBeGreaterThan(0);
      expect(a.height).toBe(0);
      expect(decodes.n).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('keeps only the certificates that vouch for a signature it stores', async () => {
    const { t, a, hId, junk, serve } = await hostileSetup(140);
    try {
      const now = Date.now();
      const forged = Array.from({ length: 1024 }, (_, i) => makeKeyCertificate(hId, ed25519FromSeed(Buffer.from(blake2b(Buffer.from(`k${i}`)))).publicKey, now - 60_000, now + 86_400_000));
      serve(encodeRewardChainBundle(5, forged, [junk]));
      await t.rounds(1);
      await a.whenIdle();
      expect(await junkRefused(t.nodes[0])).toBeGreaterThan(0);
      const files = fs.readdirSync(path.join(t.nodes[0].dir, 'rewards', 'certs')).filter((f) => f.endsWith('.cert'));
      expect(files.length).toBeLessThanOrEqual(3);
    } finally {
      await t.close();
    }
  });
});

describe('a pending block of another body (SPEC §8.7.4)', () => {
  it('is compared with the own body before its allocations are decoded, by the proposer wait and by the exchange', async () => {
    let other: Buffer | null = null;
    const t = await startLedgerTrio({
      seed: 150, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-other-', startAll: false, logLevel: 'silent',
      route: (_n, url, _req, res) => {
        if (!other || url.pathname !== PATHS.rewardsPending) return false;
        res.writeHead(200, { 'content-length': other.length });
        res.end(other);
        return true;
      },
    });
    try {
      const fps = t.nodes.map((n) => n.signer.identity.toString('hex'));
      // A is not the proposer of height 0; every other authority serves a block of other allocations there.
      const ia = [0, 1, 2].find((k) => t.nodes[k].ledger === null && fps[k] !== [...fps].sort()[0])!;
      const a = t.start(t.nodes[ia]);
      const allocations = new Map(Array.from({ length: 1000 }, (_, i) => [fp(i + 1), 1n] as const));
      other = encodeSignedRewardBlock(encodeRewardBlock({ height: 0, previousHash: Buffer.alloc(32), epoch: E0, minted: 1000n, allocations }), []);
      a.onConsensus(consensus(E0, [[1, 300]]));
      decodes.n = 0;
      a.tick();
      await a.whenIdle();
      expect(a.pendingBlock).toMatchObject({ height: 0, published: false });
      a.tick();
      await a.whenIdle();
      expect(await metric(t.nodes[ia], 'bitcloud_reward_signatures_total')).toBeGreaterThan(0);
      expect(decodes.n).toBe(0);
    } finally {
      await t.close();
    }
  });
});

describe('equivocation (SPEC §8.7.4)', () => {
  it('an authority whose signature over the own body is held and that signed another body at that height is counted and logged', async () => {
    let other: Buffer | null = null;
    const t = await startLedgerTrio({
      seed: 190, periodSeconds: P, tmpPrefix: 'bitcloud-rewards-equivocation-', startAll: false, logLevel: 'info',
      // auth1 (no ledger) serves, once set, a block of other allocations at height 0 signed by itself and H.
      route: (n, url, _req, res) => {
        if (!other || n !== t.nodes[1] || url.pathname !== PATHS.rewardsPending) return false;
        res.writeHead(200, { 'content-length': other.length });
        res.end(other);
        return true;
      },
    });
    try {
      const [a, h] = [t.start(t.nodes[0]), t.start(t.nodes[2])];
      for (const l of [a, h]) l.onConsensus(consensus(E0, [[1, 300]]));
      await t.rounds(3);
      expect(a.height).toBe(0);
      expect(a.pendingBlock!.signers).toHaveLength(2);
      const y = nextRewardBlock(null, E0, new Map([[fp(2), 300]]));
      const sigs = [t.nodes[1], t.nodes[2]].map((n) => signRewardBlock(y.body, n.signer.identity, n.signer.signingKey)).sort((x, z) => Buffer.compare(x.authority, z.authority));
      other = encodeSignedRewardBlock(y.body, sigs);
      const equivocations = async () => (await t.nodes[0].reg.getSingleMetric('bitcloud_reward_signatures_total')!.get()).values.find((v) => v.labels.result === 'equivocation')?.value ?? 0;
      await t.rounds(2);
      // Once per authority and height, however often the answer is fetched; auth1's own signature is not held, so it is not looked at.
      expect(await equivocations()).toBe(1);
      const logged = t.nodes[0].logs.filter((l) => l.msg === 'authority signed two different reward blocks at one height');
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatchObject({ authority: 'auth2', height: 0 });
    } finally {
      await t.close();
    }
  });
});

describe('GET /bitcloud/rewards answers under a bound (SPEC §8.7.5, §6.10)', () => {
  type Res = http.ServerResponse & { status: number; sent: Buffer; code?: string; fire(ev: string): void };
  function stubLedger(bytes = Buffer.alloc(1024, 7)) {
    const chain = { version: '3:0' };
    const bundle = vi.fn(async (from: number) => { await Promise.resolve(); return Buffer.concat([bytes, Buffer.from([from])]); });
    return { ledger: { bundle, get bundleVersion() { return chain.version; } } as unknown as RewardLedger, bundle, chain };
  }
  // One authority's answers per ledger, as directory/http.ts keeps them.
  const bundlesOf = new Map<RewardLedger, RewardBundles>();
  async function get(ledger: RewardLedger, remote = '127.0.0.1', from = 0): Promise<Res> {
    if (!bundlesOf.has(ledger)) bundlesOf.set(ledger, new RewardBundles(ledger));
    const listeners = new Map<string, (() => void)[]>();
    const req = { method: 'GET', socket: { remoteAddress: remote, localAddress: '192.0.2.1' }, resume() {} } as unknown as http.IncomingMessage;
    const res = {
      status: 0, sent: Buffer.alloc(0), writableFinished: false, destroyed: false,
      writeHead(s: number) { res.status = s; return res; },
      end(x?: string | Buffer) {
        res.sent = Buffer.from(x ?? '');
        if (res.status !== 200) res.code = (JSON.parse(res.sent.toString('utf8')) as { code: string }).code;
      },
      once(ev: string, f: () => void) { listeners.set(ev, [...(listeners.get(ev) ?? []), f]); return res; },
      fire(ev: string) { for (const f of listeners.get(ev) ?? []) f(); listeners.delete(ev); },
      destroy() { res.destroyed = true; res.fire('close'); },
    } as unknown as Res;
    await serveRewards(bundlesOf.get(ledger), req, res, new URL(`http://a${PATHS.rewards}?from=${from}`));
    return res;
  }

  it('at most 16 bundle answers at once: readers that never read hold their places, the 17th is 503 RATE_LIMITED; a finished answer frees its place', async () => {
    const { ledger } = stubLedger();
    const held: Res[] = [];
    for (let i = 0; i < 16; i++) held.push(await get(ledger));
    expect(held.map((r) => r.status)).toEqual(Array(16).fill(200));
    const busy = await get(ledger);
    expect([busy.status, busy.code]).toEqual([503, 'RATE_LIMITED']);
    held[0].fire('finish');
    expect((await get(ledger)).status).toBe(200);
    expect((await get(ledger)).status).toBe(503);
  });

  it('one client address holds at most 4 places while another address is served', async () => {
    const { ledger } = stubLedger();
    const one: Res[] = [];
    for (let i = 0; i < 4; i++) one.push(await get(ledger, '203.0.113.7'));
    expect(one.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const fifth = await get(ledger, '203.0.113.7');
    expect([fifth.status, fifth.code]).toEqual([503, 'RATE_LIMITED']);
    expect((await get(ledger, '198.51.100.9')).status).toBe(200);
  });

  it('requests for the same `from` share one encoded bundle until the chain changes', async () => {
    const { ledger, bundle, chain } = stubLedger();
    const [a, b] = await Promise.all([get(ledger), get(ledger)]);
    expect(a.sent.length).toBe(1025);
    expect(b.sent.equals(a.sent)).toBe(true);
    expect(bundle).toHaveBeenCalledTimes(1);
    a.fire('finish'); b.fire('finish');
    await get(ledger, '127.0.0.1', 1);
    expect(bundle).toHaveBeenCalledTimes(2);
    await get(ledger);
    expect(bundle).toHaveBeenCalledTimes(2);
    chain.version = '3:1'; // e.g. a stored block gained a late signature (SPEC §8.7.4)
    await get(ledger);
    expect(bundle).toHaveBeenCalledTimes(3);
  });

  it('keeps at most 4 `from`s, least recently used leaving first, each charged its length; one above 64 MiB is not kept', async () => {
    const { ledger, bundle } = stubLedger();
    const bundles = new RewardBundles(ledger);
    for (const from of [0, 1, 2, 3]) await bundles.bundle(from);
    await bundles.bundle(0); // 0 is now the most recently used
    await bundles.bundle(4); // evicts 1
    expect(bundles.cached).toEqual({ entries: 4, bytes: 4 * 1025 });
    expect(bundle).toHaveBeenCalledTimes(5);
    await bundles.bundle(0);
    expect(bundle).toHaveBeenCalledTimes(5);
    await bundles.bundle(1);
    expect(bundle).toHaveBeenCalledTimes(6);
    const big = stubLedger(Buffer.alloc(BUNDLE_CACHE_BYTES));
    const many = new RewardBundles(big.ledger);
    expect((await many.bundle(0)).length).toBe(BUNDLE_CACHE_BYTES + 1);
    expect(many.cached.entries).toBe(0);
    await many.bundle(0);
    expect(big.bundle).toHaveBeenCalledTimes(2);
  });
});

describe('GET and HEAD /bitcloud/transfers/pending (SPEC §8.11.3, §6.10)', () => {
  const alice = ed25519FromSeed(Buffer.alloc(32, 61));
  const bob = ed25519FromSeed(Buffer.alloc(32, 62));
  const to = ed25519FromSeed(Buffer.alloc(32, 63)).publicKey;
  const hexOf = (k: { publicKey: Buffer }) => k.publicKey.toString('hex');

  /** The ledger's own two pending-transfer methods over a pool holding transfers of two senders. */
  function ledgerWithPool(): RewardLedger {
    const id = Buffer.alloc(32, 64); // the chain id (SPEC §8.11.1) of this pool's chain
    const pool = new TransferPool({ chainId: id, balances: new Map([[hexOf(alice), 1000n], [hexOf(bob), 1000n]]), nonces: new Map() });
    pool.add(signFor(alice, to, 10n, 1, id));
    pool.add(signFor(bob, to, 20n, 1, id));
    pool.add(signFor(alice, to, 30n, 2, id));
    const ledger = Object.create(RewardLedger.prototype) as RewardLedger;
    Object.defineProperty(ledger, 'pool', { value: pool });
    Object.defineProperty(ledger, 'height', { value: 7 });
    return ledger;
  }

  async function ask(ledger: RewardLedger, method: 'GET' | 'HEAD', query: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer | undefined }> {
    const req = { method } as unknown as http.IncomingMessage;
    const out = { status: 0, headers: {} as Record<string, unknown>, body: undefined as Buffer | undefined };
    const res = {
      writeHead(s: number, h: Record<string, unknown>) { out.status = s; out.headers = h; return res; },
      end(b?: Buffer) { out.body = b; },
    } as unknown as http.ServerResponse;
    expect(await serveTransfers(ledger, req, res, new URL(`http://a${PATHS.transfersPending}${query}`))).toEqual(['transfers_pending', 200]);
    return out;
  }

  it('HEAD announces the content-length of the body GET sends, for the whole pool and for each sender', async () => {
    const ledger = ledgerWithPool();
    for (const [query, n] of [['', 3], [`?from=${hexOf(alice)}`, 2], [`?from=${hexOf(bob)}`, 1], [`?from=${'ab'.repeat(32)}`, 0]] as const) {
      const get = await ask(ledger, 'GET', query);
      const head = await ask(ledger, 'HEAD', query);
      expect(get.body!.length, query).toBe(n * 145);
      expect(get.headers['content-length'], query).toBe(get.body!.length);
      expect(head.headers['content-length'], query).toBe(get.body!.length);
      expect(head.body, query).toBeUndefined();
      expect(head.headers['x-bitcloud-chain-height']).toBe('7');
    }
  });
});
