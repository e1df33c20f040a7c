// SPEC.md §8.11.3, §9.20.4: funding transfers (version 2) through three authorities' reward ledgers
// behind real node:http servers. A proposer that does not hold the contract leaves the funding
// transfer, and the payer's later transfer, pending (a block carries a funding transfer only with
// its escrow's open); once the authorities hold the contract the next block carries both with the
// open. A funding transfer that no block carries within 24 heights of its arrival is dropped from
// every pool with the payer's later transfer, counted, and logged without keys.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import type { Ed25519KeyPair } from '../../src/crypto/primitives';
import type { VerifiedConsensus } from '../../src/dir/types';
import { signFundingTransfer as signFundingFor, signTransfer as signFor } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { contractId } from '../../src/bandwidth/escrow';
import type { StorageContract } from '../../src/wire/storage-contract';
import { buildAuditReport, signAuditReport } from '../../src/storage/audit-report';
import { startLedgerTrio, type LedgerTrio, type TrioNode } from '../helpers/ledger-trio';

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const relay = ed25519FromSeed(Buffer.alloc(32, 70));
const RELAY = relay.publicKey.toString('hex');
const wallet = ed25519FromSeed(Buffer.alloc(32, 71)).publicKey;

let trio: LedgerTrio;

/** SPEC §8.11.1: transfers are signed for the trio's chain, whose id is the hash of its block 0. */
const chainId = (): Buffer => trio.running()[0]!.chain.chainId!;
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, chainId());
const signFundingTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFundingFor(k, to, amount, nonce, chainId());
let nodes: TrioNode[];
/** The contracts the authorities hold (all the same here). */
const held = new Map<string, StorageContract>();

/** SPEC.md §8.11.3: the consensus parameters switching funding transfers on, and a consensus without them. */
const ON: ReadonlyMap<string, number> = new Map([['funding-v2', 1]]);
const OFF: ReadonlyMap<string, number> = new Map();
const consensus = (epoch: number, params = ON): VerifiedConsensus =>
  ({ provenEpoch: epoch, relays: [{ fingerprint: RELAY, nickname: 'r', proven: 100 }], periodSeconds: P, params }) as unknown as VerifiedConsensus;

beforeAll(async () => {
  trio = await startLedgerTrio({
    seed: 140, periodSeconds: P, tmpPrefix: 'bitcloud-funding-', logLevel: 'info', clock: NOW,
    // Each authority audited every epoch and found nothing to credit: its signed report has no results
    // (SPEC.md §9.20.4 item 2: the others read it whenever an escrow is due for pay in the block's epoch).
    onStart: (n) => { n.ledger!.escrow = { contract: (id) => held.get(id), ownReport: (epoch) => Promise.resolve({ epoch, pages: new Map() }) }; },
    route: (n, url, _req, res) => {
      if (url.pathname !== '/bitcloud/storage/audits' || url.searchParams.has('node')) return false;
      const { body } = buildAuditReport(n.signer.identity.toString('hex'), Number(url.searchParams.get('epoch')), []);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(signAuditReport(body, n.signer)));
      return true;
    },
  });
  ({ nodes } = trio);
});

afterAll(async () => {
  await trio.close();
});

/** One height: every ledger is told the consensus proving `epoch` (with `params`), then the exchange runs. */
async function height(epoch: number, params = ON): Promise<void> {
  for (const l of trio.running()) l.onConsensus(consensus(epoch, params));
  await trio.rounds(4);
}

describe('funding transfers through three authorities (SPEC §8.11.3, §9.20.4)', () => {
  it('waits in the pools, with the payer\'s later transfer, until the proposer holds the contract; then both are carried with the open', async () => {
    const contract: StorageContract = {
      startEpoch: E0 + 3, endEpoch: E0 + 40,
      entries: [{ node: Buffer.alloc(32, 7), shareId: Buffer.alloc(32, 8), shareSize: 4096, auditRoot: Buffer.alloc(32, 9) }],
    };
    const id = contractId(contract);
    const ID = id.toString('hex');
    await height(E0);
    expect(trio.running().map((l) => l.height)).toEqual([0, 0, 0]);
    const minted = trio.running()[0].chain.balances.get(RELAY)!;

    const fund = signFundingTransfer(relay, id, 1000n, 1);
    const after = signTransfer(relay, wallet, 5n, 2);
    expect((await trio.postTransfer(nodes[0], encodeTransfer(fund))).status).toBe(200);
    expect((await trio.postTransfer(nodes[0], encodeTransfer(after))).status).toBe(200);
    await Promise.all(trio.running().map((l) => l.whenIdle()));
    expect(trio.running().map((l) => l.pendingTransfers)).toEqual([2, 2, 2]);

    // No authority holds the contract: the block goes without both, and they stay pending.
    await height(E0 + 1);
    for (const l of trio.running()) {
      expect(l.height).toBe(1);
      expect(l.chain.nonces.get(RELAY) ?? 0).toBe(0);
      expect(l.chain.balances.get(ID) ?? 0n).toBe(0n);
      expect(l.pendingTransfers).toBe(2);
    }

    // Every authority holds it now: the next block carries both, and the open.
    held.set(ID, contract);
    await height(E0 + 2);
    for (const l of trio.running()) {
      expect(l.height).toBe(2);
      expect(l.chain.nonces.get(RELAY)).toBe(2);
      expect(l.chain.balances.get(ID)).toBe(1000n);
      expect(l.chain.balances.get(RELAY)).toBe(3n * minted - 1005n);
      expect(l.chain.escrows.get(ID)).toMatchObject({ payer: RELAY, funded: 1000n, refunded: null });
      expect(l.pendingTransfers).toBe(0);
    }
  });

  it('one that no block carried within 24 heights of its arrival is dropped, with the payer\'s later transfer; counted and logged without keys', async () => {
    const contract: StorageContract = {
      startEpoch: E0 + 3, endEpoch: E0 + 60,
      entries: [{ node: Buffer.alloc(32, 17), shareId: Buffer.alloc(32, 18), shareSize: 4096, auditRoot: Buffer.alloc(32, 19) }],
    };
    const id = contractId(contract); // never held
    const fund = signFundingTransfer(relay, id, 1000n, 3);
    expect((await trio.postTransfer(nodes[1], encodeTransfer(fund))).status).toBe(200);
    expect((await trio.postTransfer(nodes[1], encodeTransfer(signTransfer(relay, wallet, 5n, 4)))).status).toBe(200);
    await Promise.all(trio.running().map((l) => l.whenIdle()));
    const arrival = trio.running()[0].height;
    for (const n of nodes) n.logs.length = 0;
    for (let h = arrival + 1; h < arrival + 24; h++) await height(E0 + h);
    for (const l of trio.running()) {
      expect(l.height).toBe(arrival + 23);
      expect(l.pendingTransfers).toBe(2);
    }
    await height(E0 + arrival + 24);
    for (const n of nodes) {
      expect(n.ledger!.height).toBe(arrival + 24);
      expect(n.ledger!.pendingTransfers).toBe(0);
      expect(n.ledger!.chain.nonces.get(RELAY)).toBe(2);
      const text = await n.reg.metrics();
      expect(text).toMatch(/bitcloud_transfers_pool_dropped_total\{reason="funding_expired"\} 1\b/);
      expect(text).toMatch(/bitcloud_transfers_pool_dropped_total\{reason="after_funding_expired"\} 1\b/);
      const lines = n.logs.filter((x) => x.msg === 'funding transfers dropped from the pool: no block carried them in time');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 30, fundingExpired: 1, afterExpired: 1 });
      expect(JSON.stringify(lines[0])).not.toContain(RELAY.slice(0, 16));
    }
    // SPEC §8.11.3: remembered across a restart (<dataDir>/transfer-dropped.json): posted again to a
    // restarted authority, the dropped funding transfer is still refused.
    await trio.stop(nodes[0]);
    trio.start(nodes[0]).onConsensus(consensus(E0 + arrival + 24));
    const replay = await trio.postTransfer(nodes[0], encodeTransfer(fund));
    expect([replay.status, JSON.parse(replay.body.toString('utf8')).code]).toEqual([400, 'TRANSFER_REPLAYED']);
    expect(nodes[0].ledger!.pendingTransfers).toBe(0);
  });

  it('while the consensus has not switched funding-v2 on, the authorities refuse a funding transfer (TRANSFER_VERSION_DISABLED) and the proposer leaves a pending one out (SPEC §8.11.3)', async () => {
    const contract: StorageContract = {
      startEpoch: E0 + 3, endEpoch: E0 + 200,
      entries: [{ node: Buffer.alloc(32, 27), shareId: Buffer.alloc(32, 28), shareSize: 4096, auditRoot: Buffer.alloc(32, 29) }],
    };
    const id = contractId(contract);
    const ID = id.toString('hex');
    held.set(ID, contract);
    let epoch = trio.running()[0].tipEpoch + 1;
    await height(epoch++, OFF);
    const nonce = trio.running()[0].chain.nonces.get(RELAY)!;
    const refused = await trio.postTransfer(nodes[0], encodeTransfer(signFundingTransfer(relay, id, 1000n, nonce + 1)));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body.toString())).toMatchObject({ code: 'TRANSFER_VERSION_DISABLED' });
    // Version 1 still goes through.
    expect((await trio.postTransfer(nodes[0], encodeTransfer(signTransfer(relay, wallet, 5n, nonce + 1)))).status).toBe(200);
    await Promise.all(trio.running().map((l) => l.whenIdle()));
    await height(epoch++, ON);
    for (const l of trio.running()) expect(l.chain.nonces.get(RELAY)).toBe(nonce + 1);

    // Taken while on, then the consensus turns it off: no block carries it while off.
    const fund = signFundingTransfer(relay, id, 1000n, nonce + 2);
    expect((await trio.postTransfer(nodes[1], encodeTransfer(fund))).status).toBe(200);
    await Promise.all(trio.running().map((l) => l.whenIdle()));
    expect(trio.running().map((l) => l.pendingTransfers)).toEqual([1, 1, 1]);
    const before = trio.running()[0].height;
    await height(epoch++, OFF);
    for (const l of trio.running()) {
      expect(l.height).toBe(before + 1);
      expect(l.chain.nonces.get(RELAY)).toBe(nonce + 1);
      expect(l.chain.escrows.has(ID)).toBe(false);
      expect(l.pendingTransfers).toBe(1);
    }
    // On again: carried with the open.
    await height(epoch++, ON);
    for (const l of trio.running()) {
      expect(l.chain.nonces.get(RELAY)).toBe(nonce + 2);
      expect(l.chain.escrows.get(ID)).toMatchObject({ payer: RELAY, funded: 1000n });
      expect(l.pendingTransfers).toBe(0);
    }
  });
});
