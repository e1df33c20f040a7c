// SPEC.md §8.7.4, §8.11.3: three authorities' reward ledgers behind real node:http servers take
// transfers (POST /bitcloud/transfers), pass them on to each other, and the proposer of the next
// height carries them in the block the majority signs. With the proposer down the others sign
// the block without transfers, and the next height's proposer carries them.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import type { VerifiedConsensus } from '../../src/dir/types';
import { signTransfer } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { fetchRewardChain } from '../../src/client/rewards';
import { startLedgerTrio, type LedgerTrio, type TrioNode } from '../helpers/ledger-trio';

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const relay = ed25519FromSeed(Buffer.alloc(32, 90));
const wallet = ed25519FromSeed(Buffer.alloc(32, 91));
const RELAY = relay.publicKey.toString('hex');

let trio: LedgerTrio;
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
