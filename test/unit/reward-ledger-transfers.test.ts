// SPEC.md §8.7.4, §8.11.3: three authorities' reward ledgers behind real node:http servers take
// transfers (POST /bitcloud/transfers), pass them on to each other, and the proposer of the next
// height carries them in the block the majority signs. With the proposer down the others sign
// the block without transfers, and the next height's proposer carries them.
import type http from 'node:http';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import type { Ed25519KeyPair } from '../../src/crypto/primitives';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import type { VerifiedConsensus } from '../../src/dir/types';
import { signTransfer as signFor } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { fetchRewardChain } from '../../src/client/rewards';
import { startLedgerTrio, type LedgerTrio, type TrioNode } from '../helpers/ledger-trio';
import { watchRequests } from '../helpers/http-watch';
import { DropOldestRing } from '../../directory/rewards';

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const relay = ed25519FromSeed(Buffer.alloc(32, 90));
const wallet = ed25519FromSeed(Buffer.alloc(32, 91));
const RELAY = relay.publicKey.toString('hex');

let trio: LedgerTrio;

/** SPEC §8.11.1: transfers are signed for the trio's chain, whose id is the hash of its block 0. */
const chainId = (): Buffer => trio.running()[0]!.chain.chainId!;
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, chainId());
let nodes: TrioNode[];
let authorities: LedgerTrio['authorities'];

const consensus = (epoch: number): VerifiedConsensus =>
  ({ provenEpoch: epoch, relays: [{ fingerprint: RELAY, nickname: 'r', proven: 100 }], periodSeconds: P }) as unknown as VerifiedConsensus;

const rounds = (times = 3) => trio.rounds(times);
const running = () => trio.running();
const post = (n: TrioNode, body: Buffer) => trio.postTransfer(n, body);

beforeAll(async () => {
  trio = await startLedgerTrio({ seed: 40, periodSeconds: P, tmpPrefix: 'bitcloud-transfers-', logLevel: 'silent' });
  ({ nodes, authorities } = trio);
});

afterAll(() => trio.close());

describe('transfers through three authorities (SPEC §8.7.4, §8.11.3)', () => {
  it('a transfer taken by one authority reaches the others and the proposer\'s block carries it', async () => {
    for (const l of running()) l.onConsensus(consensus(E0));
    await rounds();
    expect(running().map((l) => l.height)).toEqual([0, 0, 0]);
    const minted = running()[0].chain.balances.get(RELAY)!;
    expect(minted).toBeGreaterThan(0n);

    // Sent to an authority that is not the proposer of height 1: passed on to the others.
    const proposer1 = running()[0].proposerOf(1);
    const entry = nodes.find((n) => n.signer.identity.toString('hex') !== proposer1)!;
    const t = signTransfer(relay, wallet.publicKey, 1234n, 1);
    const r = await post(entry, encodeTransfer(t));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ accepted: true, result: 'added', nonce: 1 });
    await Promise.all(running().map((l) => l.whenIdle()));
    expect(running().map((l) => l.pool.size)).toEqual([1, 1, 1]);
    // Again at another authority: `held`, nothing changes. A double spend of nonce 1: refused.
    const again = await post(nodes.find((n) => n !== entry)!, encodeTransfer(t));
    expect(JSON.parse(again.body.toString('utf8'))).toMatchObject({ result: 'held' });
    const dbl = await post(entry, encodeTransfer(signTransfer(relay, ed25519FromSeed(Buffer.alloc(32, 92)).publicKey, 1n, 1)));
    expect([dbl.status, JSON.parse(dbl.body.toString('utf8')).code]).toEqual([400, 'TRANSFER_REPLAYED']);
    // The pending list, for the wallet.
    const pend = await httpRequest(`${authorities[0].url}${PATHS.transfersPending}?from=${RELAY}`, { maxBytes: 4096 });
    expect(pend.body.equals(encodeTransfer(t))).toBe(true);

    for (const l of running()) l.onConsensus(consensus(E0 + 1));
    await rounds();
    for (const l of running()) {
      expect(l.height).toBe(1);
      expect(l.chain.balances.get(wallet.publicKey.toString('hex'))).toBe(1234n);
      expect(l.chain.balances.get(RELAY)).toBe(2n * minted - 1234n);
      expect(l.pool.size).toBe(0);
    }
    // A client verifies the same.
    const c = await fetchRewardChain({ authorities, periodSeconds: P, timeoutMs: 5000 });
    expect(c.blocks[1].block.transfers).toHaveLength(1);
    expect(c.state.balances.get(wallet.publicKey.toString('hex'))).toBe(1234n);
  });

  it('with the proposer down the others sign the block without transfers; the next proposer carries them', async () => {
    const proposer2 = running()[0].proposerOf(2);
    const down = nodes.find((n) => n.signer.identity.toString('hex') === proposer2)!;
    await trio.stop(down);
    const up = nodes.filter((n) => n !== down);
    const t = signTransfer(relay, wallet.publicKey, 1n, 2);
    expect((await post(up[0], encodeTransfer(t))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const l of running()) l.onConsensus(consensus(E0 + 2));
    await rounds();
    for (const l of running()) {
      expect(l.height).toBe(2);
      expect(l.chain.nonces.get(RELAY)).toBe(1); // not carried yet
      expect(l.pool.size).toBe(1);
    }
    // Height 3's proposer is up (the sorted order rotates).
    expect(running()[0].proposerOf(3)).not.toBe(proposer2);
    for (const l of running()) l.onConsensus(consensus(E0 + 3));
    await rounds();
    for (const l of running()) {
      expect(l.height).toBe(3);
      expect(l.chain.nonces.get(RELAY)).toBe(2);
      expect(l.pool.size).toBe(0);
    }
  });
});

describe('the pass-on queue: a ring of 1 024 that drops the oldest (SPEC §8.11.3)', () => {
  it('keeps arrival order across wraps of the ring, and past its capacity drops and returns the oldest', () => {
    const r = new DropOldestRing<number>(4);
    const out: number[] = [];
    let next = 0;
    // Interleaved adds and takes: the ring's start goes round several times.
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 3; i++) expect(r.push(next++)).toBeUndefined();
      for (let i = 0; i < 2; i++) out.push(r.shift()!);
      while (r.length > 1) out.push(r.shift()!);
    }
    while (r.length) out.push(r.shift()!);
    expect(out).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(r.shift()).toBeUndefined();
    // Full: each add drops the oldest, in order.
    for (let i = 0; i < 4; i++) r.push(100 + i);
    expect([r.push(104), r.push(105)]).toEqual([100, 101]);
    expect(r.length).toBe(4);
    expect([r.shift(), r.shift(), r.shift(), r.shift(), r.shift()]).toEqual([102, 103, 104, 105, undefined]);
  });
});

describe('passing transfers on: at most 4 requests per authority, a bounded queue (SPEC §8.11.3)', () => {
  /**
   * A trio whose third authority holds every POST /bitcloud/transfers while `holding` (never
   * answers), and a chain at height 0 that funds `senders` keys. The second authority is down
   * (404 at once), so auth2 gets transfers only from auth0.
   */
  async function holdingTrio(senders: number, seed: number) {
    const keys = Array.from({ length: senders }, (_, i) => ed25519FromSeed(Buffer.alloc(32, 150 + i)));
    const s = { holding: true, received: 0, open: 0, maxOpen: 0, held: [] as http.ServerResponse[], bodies: [] as string[] };
    const t: LedgerTrio = await startLedgerTrio({
      seed, periodSeconds: P, tmpPrefix: 'bitcloud-transfer-pass-on-', logLevel: 'silent',
      route: (n, url, req, res) => {
        if (n !== t.nodes[2] || url.pathname !== PATHS.transfers) return false;
        s.received++;
        if (!s.holding) return false;
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => s.bodies.push(Buffer.concat(chunks).toString('hex')));
        s.open++;
        s.maxOpen = Math.max(s.maxOpen, s.open);
        res.on('close', () => s.open--);
        s.held.push(res);
        return true;
      },
    });
    const c = ({ provenEpoch: E0, relays: keys.map((k, i) => ({ fingerprint: k.publicKey.toString('hex'), nickname: `r${i}`, proven: 100 })), periodSeconds: P }) as unknown as VerifiedConsensus;
    for (const l of t.running()) l.onConsensus(c);
    await t.rounds();
    expect(t.running().map((l) => l.height)).toEqual([0, 0, 0]);
    await t.stop(t.nodes[1]);
    const release = async () => {
      s.holding = false;
      for (const res of s.held.splice(0)) { res.writeHead(503); res.end(); }
      await t.nodes[0].ledger!.whenIdle();
    };
    return { t, keys, s, release };
  }

  const transfers = (t: LedgerTrio, keys: ReturnType<typeof ed25519FromSeed>[], count: number) =>
    Array.from({ length: count }, (_, i) => encodeTransfer(signFor(keys[i % keys.length], wallet.publicKey, 1n, Math.floor(i / keys.length) + 1, t.nodes[0].ledger!.chain.chainId!)));

  it('100 transfers with an authority that never answers: at most 4 requests open to it, every transfer passed on once it answers', async () => {
    const { t, keys, s, release } = await holdingTrio(7, 60);
    const to = `:${t.nodes[2].port}${PATHS.transfers}`;
    const sent = watchRequests((url, method) => method === 'POST' && url.endsWith(to));
    try {
      const ledger = t.nodes[0].ledger!;
      for (const b of transfers(t, keys, 100)) expect(ledger.submitTransfer(b).result).toBe('added');
      // The queue starts its requests as transfers come and as requests end, and none ends while
      // the authority holds them: what it started by now is all it starts. Once all of those
      // have arrived, the authority has seen every request that can come (no fixed wait).
      expect(sent.started).toBe(4);
      await expect.poll(() => s.received, { timeout: 5000 }).toBe(sent.started);
      expect(s.maxOpen).toBe(4);
      expect(sent.started).toBe(4);
      await release();
      expect(s.received).toBe(100);
      expect((await t.nodes[0].reg.getSingleMetric('bitcloud_transfers_pass_on_dropped_total')!.get()).values.filter((v) => v.value > 0)).toEqual([]);
    } finally {
      sent.restore();
      await t.close();
    }
  });

  it('the queue for one authority holds 1 024 transfers; past that the oldest waiting is dropped and counted', async () => {
    const senders = 70; // 16 pending transfers each at most
    const { t, keys, s, release } = await holdingTrio(senders, 70);
    try {
      const ledger = t.nodes[0].ledger!;
      const all = transfers(t, keys, 1100);
      for (const b of all) expect(ledger.submitTransfer(b).result).toBe('added');
      await expect.poll(() => s.open, { timeout: 5000 }).toBeGreaterThanOrEqual(4);
      expect(s.maxOpen).toBe(4);
      // It answers (503) what it holds, still keeping each body, until every transfer that waited has come.
      const answer = () => { for (const res of s.held.splice(0)) { res.writeHead(503); res.end(); } };
      for (let i = 0; i < 5000 && s.bodies.length < 4 + 1024; i++) { answer(); await new Promise((r) => setTimeout(r, 5)); }
      await release();
      const dropped = all.length - 4 - 1024;
      expect(s.received).toBe(all.length - dropped);
      expect(s.maxOpen).toBe(4);
      // The oldest waiting were dropped: the first 4 (sent at once) and the last 1 024 went.
      const hex = all.map((b) => b.toString('hex'));
      expect(new Set(s.bodies.slice(0, 4))).toEqual(new Set(hex.slice(0, 4)));
      expect(s.bodies).toHaveLength(4 + 1024);
      expect(new Set(s.bodies)).toEqual(new Set([...hex.slice(0, 4), ...hex.slice(-1024)]));
      const m = (await t.nodes[0].reg.getSingleMetric('bitcloud_transfers_pass_on_dropped_total')!.get()).values;
      expect(m.find((v) => v.labels.to === 'auth2')?.value).toBe(dropped);
    } finally {
      await t.close();
    }
  });
});
