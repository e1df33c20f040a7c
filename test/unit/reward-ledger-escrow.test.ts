// SPEC.md §8.7.4, §9.20.4: three authorities' reward ledgers behind real node:http servers carry a
// paid contract's escrow. The proposer opens the escrow in the block that carries the funding
// transfer; the others recompute the operations from the contracts they hold and sign only the
// same ones (an authority that does not hold the contract signs the block without transfers and
// escrow instead); after the contract's end the rest is refunded to the payer. A payment that the
// proposer's signed audit report (fetched from it and verified) does not give is not signed.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import type { Ed25519KeyPair } from '../../src/crypto/primitives';
import type { VerifiedConsensus } from '../../src/dir/types';
import { signFundingTransfer as signFundingFor, signTransfer as signFor } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { fetchRewardChain } from '../../src/client/rewards';
import { contractId, type EscrowBook } from '../../src/bandwidth/escrow';
import type { StorageContract } from '../../src/wire/storage-contract';
import { buildAuditReport, signAuditReport, type ReportedAudit } from '../../src/storage/audit-report';
import type { AuditPages } from '../../src/bandwidth/escrow';
import { encodeEscrowCancel, signEscrowCancel } from '../../src/wire/escrow-cancel';
import { auditRoot, challengeBlocks, proveBlocks } from '../../src/storage/audit';
import { encodeAuditAnswer } from '../../src/wire/audit-answer';
import { startLedgerTrio, type LedgerTrio, type TrioNode } from '../helpers/ledger-trio';
import { watchRequests } from '../helpers/http-watch';
import { expectCode } from '../helpers/errors';
import type { ErrorCode } from '../../src/errors';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { prom } from '../../src/ops/metrics';
import { RewardLedger } from '../../directory/rewards';
import { silentLog } from './dirauth-measure-fixture';
import type { ChainState } from '../../src/bandwidth/reward-chain';
import type { EscrowOp, RewardBlock } from '../../src/wire/reward-block';
import type { EscrowCancel } from '../../src/wire/escrow-cancel';

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const relay = ed25519FromSeed(Buffer.alloc(32, 90));
const RELAY = relay.publicKey.toString('hex');

let trio: LedgerTrio;

/** SPEC §8.11.1: transfers are signed for the trio's chain, whose id is the hash of its block 0. */
const chainId = (): Buffer => trio.running()[0]!.chain.chainId!;
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, chainId());
let nodes: TrioNode[];
let authorities: LedgerTrio['authorities'];
/** The contracts each authority holds (index as in `nodes`). */
const held: Map<string, StorageContract>[] = [new Map(), new Map(), new Map()];
/** What each authority's own report of an epoch says (used when it proposes), and what it serves signed (what the others recheck). */
const claimed = new Map<number, AuditPages>();
const served = new Map<number, ReportedAudit[]>();
/** Pages asked for, by node (SPEC.md §9.20.3: the recheck reads only those of the nodes it pays). */
const pagesAsked: string[] = [];
/** While set, page requests are never answered (a slow or hostile proposer); their responses are kept to end them. */
let hangPages = false;
const hanging: http.ServerResponse[] = [];
let pagesInFlight = 0;
let pagesInFlightMax = 0;

const consensus = (epoch: number): VerifiedConsensus =>
  ({ provenEpoch: epoch, relays: [{ fingerprint: RELAY, nickname: 'r', proven: 100 }], periodSeconds: P }) as unknown as VerifiedConsensus;

/** The ledgers' warnings, parsed. */
const warnings = () => nodes.flatMap((n) => n.logs) as { msg: string; reason?: string }[];

// The ledgers' clock moves one period each round, past the catch-up interval, so an authority
// that signed another body catches up.
const rounds = (times = 3) => trio.rounds(times);
const running = () => trio.running();
const post = (n: TrioNode, body: Buffer) => trio.postTransfer(n, body);

beforeAll(async () => {
  trio = await startLedgerTrio({
    seed: 40, periodSeconds: P, tmpPrefix: 'bitcloud-escrow-', logLevel: 'warn', clock: NOW,
    onStart: (n, i) => { n.ledger!.escrow = { contract: (id) => held[i].get(id), ownReport: (e) => Promise.resolve(claimed.get(e) ?? null) }; },
    route: (n, url, _req, res) => {
      if (url.pathname !== '/bitcloud/storage/audits') return false;
      const epoch = Number(url.searchParams.get('epoch'));
      const results = served.get(epoch);
      if (!results) { res.writeHead(404); res.end(); return true; }
      // SPEC.md §9.20.3: the signed summary, or one node's page by `node`.
      const { body, pages } = buildAuditReport(n.signer.identity.toString('hex'), epoch, results);
      const node = url.searchParams.get('node');
      if (node !== null) pagesAsked.push(node);
      if (node !== null && hangPages) {
        hanging.push(res);
        pagesInFlightMax = Math.max(pagesInFlightMax, ++pagesInFlight);
        res.once('close', () => { pagesInFlight--; });
        return true;
      }
      const page = node === null ? null : pages.get(node);
      if (node !== null && !page) { res.writeHead(404); res.end(); return true; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(page ?? JSON.stringify(signAuditReport(body, n.signer)));
      return true;
    },
  });
  ({ nodes, authorities } = trio);
});

afterAll(async () => {
  for (const r of hanging.splice(0)) r.destroy();
  await trio.close();
});

describe('escrow through three authorities (SPEC §8.7.4, §9.20.4)', () => {
  const contract: StorageContract = {
    startEpoch: E0 + 3, endEpoch: E0 + 5,
    entries: [{ node: Buffer.alloc(32, 7), shareId: Buffer.alloc(32, 8), shareSize: 4096, auditRoot: Buffer.alloc(32, 9) }],
  };
  const id = contractId(contract);
  const ID = id.toString('hex');

  it('an authority that does not hold the contract refuses the proposer\'s opening; once all hold it, the block opens the escrow', async () => {
    for (const l of running()) l.onConsensus(consensus(E0));
    await rounds();
    expect(running().map((l) => l.height)).toEqual([0, 0, 0]);
    const minted = running()[0].chain.balances.get(RELAY)!;

    // Only the proposer of height 1 holds the contract: the others do not sign its opening.
    const p1 = nodes.findIndex((n) => n.signer.identity.toString('hex') === running()[0].proposerOf(1));
    held[p1].set(ID, contract);
    const t = signTransfer(relay, id, 1000n, 1);
    expect((await post(nodes[0], encodeTransfer(t))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const l of running()) l.onConsensus(consensus(E0 + 1));
    await rounds(6);
    for (const l of running()) {
      expect(l.height).toBe(1);
      expect(l.chain.nonces.get(RELAY) ?? 0).toBe(0);
      expect(l.chain.escrows.size).toBe(0);
    }

    // Every authority holds it now: the next proposer carries the transfer and the opening.
    for (const h of held) h.set(ID, contract);
    for (const l of running()) l.onConsensus(consensus(E0 + 2));
    await rounds(6);
    for (const l of running()) {
      expect(l.height).toBe(2);
      expect(l.chain.balances.get(ID)).toBe(1000n);
      expect(l.chain.escrows.get(ID)).toMatchObject({ payer: RELAY, startEpoch: E0 + 3, endEpoch: E0 + 5, funded: 1000n, perEpoch: 500n, totalBytes: 4096n, refunded: null });
    }
    const c = await fetchRewardChain({ authorities, periodSeconds: P, timeoutMs: 5000 });
    expect(c.blocks[2].block.escrow).toEqual([{ kind: 'open', contract: ID, payer: RELAY, startEpoch: E0 + 3, endEpoch: E0 + 5, funded: 1000n, totalBytes: 4096n }]);
    expect(c.state.balances.get(RELAY)).toBe(3n * minted - 1000n);

    // No audit report: nothing is paid; after the end the whole escrow returns to the payer.
    for (const l of running()) l.onConsensus(consensus(E0 + 5));
    await rounds(6);
    for (const l of running()) {
      expect(l.height).toBe(3);
      expect(l.chain.balances.get(ID)).toBe(0n);
      expect(l.chain.escrows.get(ID)?.refunded).toBe(1000n);
      expect(l.chain.balances.get(RELAY)).toBe(4n * minted);
    }
  });

  it('a payment the proposer\'s signed report does not give is not signed: the block goes without it', async () => {
    const c2: StorageContract = { ...contract, startEpoch: E0 + 6, endEpoch: E0 + 9 };
    const id2 = contractId(c2);
    const ID2 = id2.toString('hex');
    for (const h of held) h.set(ID2, c2);
    const node = c2.entries[0];
    const result = { node: node.node.toString('hex'), contract: ID2, shareId: node.shareId.toString('hex'), size: node.shareSize, root: node.auditRoot.toString('hex'), nonce: '00'.repeat(32), blocks: [0] };
    // Each authority tells itself the node passed, but publishes (signed) that it did not answer.
    claimed.set(E0 + 7, { epoch: E0 + 7, pages: new Map([[result.node, [{ ...result, ok: true }]]]) });
    // A node no contract names: its page is not read.
    const other: ReportedAudit = { ...result, node: 'ee'.repeat(32), ok: false, code: 'STORAGE_TIMEOUT' };
    served.set(E0 + 7, [{ ...result, ok: false, code: 'STORAGE_TIMEOUT' }, other]);

    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, id2, 3000n, 2)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const l of running()) l.onConsensus(consensus(E0 + 6));
    await rounds(6);
    for (const l of running()) expect(l.chain.escrows.get(ID2)).toMatchObject({ funded: 3000n, perEpoch: 1000n, paid: 0n });

    for (const n of nodes) n.logs.length = 0;
    for (const l of running()) l.onConsensus(consensus(E0 + 7));
    await rounds(6);
    // The proposer did pay (its own report says the node passed); the two others refused that body.
    const refused = warnings().filter((w) => w.msg === 'signing the reward block without transfers' && /escrow operations are not those/.test(w.reason ?? ''));
    expect(refused).toHaveLength(2);
    expect(pagesAsked.length).toBeGreaterThanOrEqual(2);
    expect(new Set(pagesAsked)).toEqual(new Set([result.node]));
    for (const l of running()) {
      expect(l.chain.epoch).toBe(E0 + 7);
      expect(l.chain.escrows.get(ID2)?.paid).toBe(0n);
      expect(l.chain.balances.get(result.node)).toBeUndefined();
      expect(l.chain.balances.get(ID2)).toBe(3000n);
    }
  });

  it('the payer\'s cancel, passed among the authorities, returns the rest at once; another key\'s cancel and a second one are refused', async () => {
    const c3: StorageContract = { ...contract, startEpoch: E0 + 10, endEpoch: E0 + 20 };
    const id3 = contractId(c3);
    const ID3 = id3.toString('hex');
    for (const h of held) h.set(ID3, c3);
    // Unknown before it is funded.
    const early = await trio.postCancel(nodes[0], encodeEscrowCancel(signEscrowCancel(relay, ID3)));
    expect([early.status, JSON.parse(early.body.toString('utf8')).code]).toEqual([404, 'ESCROW_UNKNOWN']);
    // SPEC.md §9.20.1: not funded yet, so its authorities may evict it to make room for an upload.
    for (const l of running()) expect(l.contractFunded(ID3, 10)).toBe(false);
    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, id3, 5000n, 3)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    // Its funding waits in the pending pool: funded already (not for a contract of more epochs than it pays one unit each).
    for (const l of running()) expect([l.contractFunded(ID3, 10), l.contractFunded(ID3, 5001)]).toEqual([true, false]);
    for (const l of running()) l.onConsensus(consensus(E0 + 10));
    await rounds(6);
    for (const l of running()) expect(l.chain.escrows.get(ID3)).toMatchObject({ funded: 5000n, perEpoch: 500n, paid: 0n });
    for (const l of running()) expect(l.contractFunded(ID3, 10)).toBe(true);
    const before = running()[0].chain.balances.get(RELAY)!;

    // Someone else's cancel: refused with its reason. The payer's: taken, passed on to the others.
    const other = await trio.postCancel(nodes[1], encodeEscrowCancel(signEscrowCancel(ed25519FromSeed(Buffer.alloc(32, 99)), ID3)));
    expect([other.status, JSON.parse(other.body.toString('utf8')).code]).toEqual([400, 'ESCROW_NOT_PAYER']);
    const bad = await trio.postCancel(nodes[1], Buffer.alloc(12));
    expect([bad.status, JSON.parse(bad.body.toString('utf8')).code]).toEqual([400, 'ESCROW_CANCEL_MALFORMED']);
    const mine = encodeEscrowCancel(signEscrowCancel(relay, ID3));
    const r = await trio.postCancel(nodes[1], mine);
    expect([r.status, JSON.parse(r.body.toString('utf8'))]).toEqual([200, expect.objectContaining({ accepted: true, result: 'added', contract: ID3, payer: RELAY })]);
    await Promise.all(running().map((l) => l.whenIdle()));
    expect(running().map((l) => l.pendingCancels)).toEqual([1, 1, 1]);

    // The next block (whoever proposes it) carries the cancel: all 5000 units back to the payer.
    // Its epoch is one the escrow is due for: the others read the proposer's report (SPEC.md §9.20.4
    // item 2), which audited nothing.
    served.set(E0 + 11, []);
    for (const l of running()) l.onConsensus(consensus(E0 + 11));
    await rounds(6);
    for (const l of running()) {
      expect(l.chain.epoch).toBe(E0 + 11);
      expect(l.chain.escrows.get(ID3)).toMatchObject({ refunded: 5000n, cancelledAt: E0 + 11, paid: 0n });
      expect(l.contractFunded(ID3, 10)).toBe(false);
      expect(l.chain.balances.get(ID3)).toBe(0n);
      expect(l.pendingCancels).toBe(0);
    }
    const chain = await fetchRewardChain({ authorities, periodSeconds: P, timeoutMs: 5000 });
    const ops = chain.blocks.at(-1)!.block.escrow ?? [];
    expect(ops.filter((op) => op.contract === ID3).map((op) => [op.kind, (op as { amount?: bigint }).amount])).toEqual([['cancel', 5000n]]);
    expect(chain.state.balances.get(RELAY)).toBe(before + [...chain.blocks.at(-1)!.block.allocations.values()].reduce((a, b) => a + b, 0n) + 5000n);

    // A second cancel: the escrow is closed.
    const again = await trio.postCancel(nodes[2], mine);
    expect([again.status, JSON.parse(again.body.toString('utf8')).code]).toEqual([400, 'ESCROW_CLOSED']);
  });

  it('a proposer that does not hold a funded contract and leaves its opening out is not signed: the funding waits for a proposer that opens it (SPEC.md §9.20.4, §8.7.4)', async () => {
    const c4: StorageContract = { ...contract, startEpoch: E0 + 31, endEpoch: E0 + 33 };
    const ID4 = contractId(c4).toString('hex');
    const next = running()[0].height + 1;
    const p = nodes.findIndex((n) => n.signer.identity.toString('hex') === running()[0].proposerOf(next));
    // Every authority but the proposer of the next height holds the contract.
    held.forEach((h, i) => { if (i !== p) h.set(ID4, c4); });
    const nonce = (running()[0].chain.nonces.get(RELAY) ?? 0) + 1;
    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, Buffer.from(ID4, 'hex'), 2000n, nonce)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const n of nodes) n.logs.length = 0;
    for (const l of running()) l.onConsensus(consensus(E0 + 30));
    await rounds(6);
    // The two holding it refused the proposer's body (a transfer to the contract without its
    // opening): the units did not go to an account no key and no escrow could ever move.
    for (const l of running()) {
      expect(l.height).toBe(next);
      expect(l.chain.balances.get(ID4) ?? 0n).toBe(0n);
      expect(l.chain.nonces.get(RELAY) ?? 0).toBe(nonce - 1);
    }
    expect(warnings().filter((w) => w.msg === 'signing the reward block without transfers' && /escrow operations are not those/.test(w.reason ?? ''))).toHaveLength(2);
    // The next proposer holds it: the transfer and its opening go in together.
    held[p].set(ID4, c4);
    for (const l of running()) l.onConsensus(consensus(E0 + 31));
    await rounds(6);
    for (const l of running()) {
      expect(l.chain.balances.get(ID4)).toBe(2000n);
      expect(l.chain.escrows.get(ID4)).toMatchObject({ payer: RELAY, funded: 2000n, refunded: null });
    }
  });

  it('a proposer whose pages never come is given one deadline for its whole report, max(1 s, P/2), with at most 4 pages asked at once; then the recheck fails as for any report that cannot be checked (SPEC.md §9.20.4, §8.7.4)', async () => {
    const epoch = E0 + 100;
    const paid = Array.from({ length: 9 }, (_, i) => (i + 16).toString(16).repeat(32));
    const one = (fp: string): ReportedAudit => ({ node: fp, contract: 'ab'.repeat(32), shareId: 'cd'.repeat(32), size: 4096, root: 'ef'.repeat(32), nonce: '00'.repeat(32), blocks: [0], ok: true });
    served.set(epoch, paid.map(one));
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-escrow-deadline-'));
    // Each request may take as long as it likes on its own: only the report's deadline ends the wait.
    // That deadline, max(1 s, P/2), is set to 5 s here so that the summary and the first 4 page
    // requests surely reach the proposer before it, however loaded the machine (not a timing bound).
    const ledger = new RewardLedger({ dataDir, signer: nodes[1].signer, authorities, periodSeconds: P, skewMs: 60_000, log: silentLog, fetchTimeoutMs: 600_000, proposerWaitMs: 5_000 });
    hangPages = true;
    try {
      const report = (ledger as unknown as { proposerReport(a: unknown, e: number, n: ReadonlySet<string>): Promise<AuditPages> }).proposerReport(authorities[0], epoch, new Set(paid));
      // A hang detector, not a threshold: without the deadline this waits 600 s per page.
      let hang: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        report.then(() => 'resolved', (e: Error) => `rejected: ${e.message}`),
        new Promise<string>((r) => { hang = setTimeout(() => r('hung'), 20_000); }),
      ]).finally(() => clearTimeout(hang));
      expect(outcome).toMatch(/^rejected: /);
      expect(pagesInFlightMax).toBe(4);
    } finally {
      hangPages = false;
      for (const r of hanging.splice(0)) r.destroy();
      await ledger.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);

  it('a proposer that leaves out the pays of a funded contract its own signed report gives is not signed, though its block carries no pays (SPEC.md §9.20.4 item 2, §8.7.4)', async () => {
    // A share the node holds: its result in the report carries an answer that proves it (§9.20.3 rechecks it).
    const share = Buffer.alloc(4096, 0x5a);
    const entry = { node: Buffer.alloc(32, 7), shareId: Buffer.alloc(32, 0x5b), shareSize: share.length, auditRoot: auditRoot(share) };
    const c5: StorageContract = { startEpoch: E0 + 40, endEpoch: E0 + 43, entries: [entry] };
    const id5 = contractId(c5);
    const ID5 = id5.toString('hex');
    for (const h of held) h.set(ID5, c5);
    const nonce = (running()[0].chain.nonces.get(RELAY) ?? 0) + 1;
    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, id5, 3000n, nonce)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const l of running()) l.onConsensus(consensus(E0 + 40));
    await rounds(6);
    for (const l of running()) expect(l.chain.escrows.get(ID5)).toMatchObject({ funded: 3000n, perEpoch: 1000n, paid: 0n, refunded: null });

    // The node passed in the signed report the proposer serves of epoch E0 + 41, but the proposer
    // builds without it (it tells itself it has none): its block carries no pays.
    const nonce5 = Buffer.alloc(32, 0x5c);
    const blocks = challengeBlocks(nonce5, entry.shareId, share.length);
    const answer = encodeAuditAnswer({ shareSize: share.length, nonce: nonce5, blocks: proveBlocks(share, blocks) }).toString('hex');
    served.set(E0 + 41, [{
      node: entry.node.toString('hex'), contract: ID5, shareId: entry.shareId.toString('hex'), size: share.length, root: entry.auditRoot.toString('hex'),
      nonce: nonce5.toString('hex'), blocks, answer, ok: true,
    }]);
    claimed.delete(E0 + 41);
    // A plain transfer in the proposer's block shows which body the others signed.
    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, Buffer.alloc(32, 0x45), 1n, nonce + 1)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const n of nodes) n.logs.length = 0;
    for (const l of running()) l.onConsensus(consensus(E0 + 41));
    await rounds(6);
    const refused = warnings().filter((w) => w.msg === 'signing the reward block without transfers' && /escrow operations are not those/.test(w.reason ?? ''));
    expect(refused).toHaveLength(2);
    for (const l of running()) {
      expect(l.chain.epoch).toBe(E0 + 41);
      expect(l.chain.nonces.get(RELAY)).toBe(nonce); // the proposer's block, transfer and all, was not signed
      expect(l.chain.escrows.get(ID5)?.paid).toBe(0n);
      expect(l.chain.balances.get(ID5)).toBe(3000n);
    }
  });

  it('a proposer that holds no audit report of an epoch a funded contract is due for has its block, transfers and all, signed (SPEC.md §9.20.4 item 2, §8.7.4)', async () => {
    // Epoch E0 + 42 is due for the escrow opened above (it ends at E0 + 43); the proposer did not
    // audit that epoch (down then, say): it holds no report and serves none (404), so it pays nothing.
    const E = E0 + 42;
    claimed.delete(E);
    served.delete(E);
    const n0 = running()[0].chain.nonces.get(RELAY)!;
    const ID5 = [...running()[0].chain.escrows.keys()].find((k) => running()[0].chain.escrows.get(k)!.endEpoch === E0 + 43)!;
    expect(running()[0].chain.escrows.get(ID5)).toMatchObject({ refunded: null, paid: 0n });
    // The plain transfer the block above left out is still pending (nonce n0 + 1); one more follows it.
    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, Buffer.alloc(32, 0x46), 1n, n0 + 2)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const n of nodes) n.logs.length = 0;
    for (const l of running()) l.onConsensus(consensus(E));
    await rounds(6);
    expect(warnings().filter((w) => w.msg === 'signing the reward block without transfers')).toEqual([]);
    for (const l of running()) {
      expect(l.chain.epoch).toBe(E);
      expect(l.chain.nonces.get(RELAY)).toBe(n0 + 2); // the proposer's block, its transfers, was signed
      expect(l.chain.escrows.get(ID5)?.paid).toBe(0n);
    }
  });
});

describe('more escrow operations due than a block carries (SPEC.md §8.7.1, §9.20.4 item 4)', () => {
  it('the proposer still builds its block, with 10 000 operations, and a checking authority recomputes the same body', async () => {
    const EPOCH = 50;
    const book: EscrowBook = new Map();
    const balances = new Map<string, bigint>();
    const contracts = new Map<string, StorageContract>();
    const pages = new Map<string, ReportedAudit[]>();
    const escrowOf = (id: string, startEpoch: number, endEpoch: number, funded: bigint, totalBytes: bigint) => ({
      id, payer: RELAY, startEpoch, endEpoch, funded, perEpoch: funded / BigInt(endEpoch - startEpoch), totalBytes, lastPaid: startEpoch - 1, paid: 0n, refunded: null,
    });
    // 5 000 escrows that ended (a refund each) and 3 000 that pay 2 nodes each this epoch: 11 000 operations due.
    for (let i = 0; i < 5_000; i++) {
      const id = (i + 1).toString(16).padStart(64, '0');
      book.set(id, escrowOf(id, 10, 20, 30n, 100n));
      balances.set(id, 30n);
    }
    for (let i = 0; i < 3_000; i++) {
      const entries = [0, 1].map((k) => {
        const node = Buffer.alloc(32, 0x55);
        node.writeUInt32BE(2 * i + k);
        const shareId = Buffer.alloc(32, 0x66);
        shareId.writeUInt32BE(i);
        return { node, shareId, shareSize: 1000, auditRoot: Buffer.alloc(32, 0x77) };
      });
      const c: StorageContract = { startEpoch: 40, endEpoch: 60, entries };
      const id = contractId(c).toString('hex');
      contracts.set(id, c);
      book.set(id, escrowOf(id, 40, 60, 20_000n, 2000n));
      balances.set(id, 20_000n);
      for (const e of entries) {
        const fp = e.node.toString('hex');
        pages.set(fp, [{ node: fp, contract: id, shareId: e.shareId.toString('hex'), size: 1000, root: e.auditRoot.toString('hex'), nonce: '00', blocks: [0], ok: true }]);
      }
    }
    const report: AuditPages = { epoch: EPOCH, pages };
    const dirs: string[] = [];
    const ledgerOf = (i: number): RewardLedger => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-escrow-cap-'));
      dirs.push(dataDir);
      // Alone in its configuration: it proposes every height.
      const l = new RewardLedger({ dataDir, signer: nodes[i].signer, authorities: [authorities[i]], periodSeconds: P, skewMs: 60_000, log: silentLog });
      l.load();
      l.escrow = { contract: (id) => contracts.get(id), ownReport: (e) => Promise.resolve(e === EPOCH ? report : null) };
      const st = (l as unknown as { state: ChainState }).state;
      st.escrows = new Map([...book].map(([k, v]) => [k, { ...v }]));
      st.balances = new Map(balances);
      return l;
    };
    const proposer = ledgerOf(0);
    const checker = ledgerOf(1);
    try {
      proposer.onConsensus(consensus(EPOCH));
      await proposer.whenIdle(); // the proposer reads its own audit report before it builds
      const held = (proposer as unknown as { pending: { block: RewardBlock; body: Buffer } | null }).pending;
      expect(proposer.pendingBlock).toMatchObject({ height: 0, epoch: EPOCH });
      const ops = held!.block.escrow ?? [];
      expect(ops).toHaveLength(10_000);
      expect(ops.filter((op) => op.kind === 'refund')).toHaveLength(5_000);
      expect(new Set(ops.filter((op) => op.kind === 'pay').map((op) => op.contract)).size).toBe(2_500);
      // What a checking authority does with the proposer's body (SPEC.md §8.7.4): the same operations, byte for byte.
      const recheck = checker as unknown as {
        withEscrow(next: { block: RewardBlock; body: Buffer; hash: Buffer }, r: AuditPages | null, cancels: readonly EscrowCancel[]): { body: Buffer };
      };
      const cancels = ops.flatMap((op: EscrowOp) => (op.kind === 'cancel' ? [{ contract: op.contract, signature: op.signature }] : []));
      const want = recheck.withEscrow({ block: { ...held!.block, escrow: [] }, body: Buffer.alloc(0), hash: Buffer.alloc(0) }, report, cancels);
      expect(want.body.equals(held!.body)).toBe(true);
    } finally {
      await proposer.close();
      await checker.close();
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    }
  });
});


describe('the proposer looks each contract up once per block (SPEC.md §9.20.4)', () => {
  it('an escrow its block pays and a contract a pending funding transfer opens: each id asked once, for the report\'s pages, the transfers and the operations together', async () => {
    const EPOCH = 50;
    const paying: StorageContract = { startEpoch: 40, endEpoch: 60, entries: [{ node: Buffer.alloc(32, 0x31), shareId: Buffer.alloc(32, 0x32), shareSize: 1000, auditRoot: Buffer.alloc(32, 0x33) }] };
    const opening: StorageContract = { startEpoch: 51, endEpoch: 70, entries: [{ node: Buffer.alloc(32, 0x34), shareId: Buffer.alloc(32, 0x35), shareSize: 1000, auditRoot: Buffer.alloc(32, 0x36) }] };
    const PAYING = contractId(paying).toString('hex');
    const OPENING = contractId(opening).toString('hex');
    const contracts = new Map([[PAYING, paying], [OPENING, opening]]);
    const node = paying.entries[0].node.toString('hex');
    const report: AuditPages = { epoch: EPOCH, pages: new Map([[node, [{ node, contract: PAYING, shareId: paying.entries[0].shareId.toString('hex'), size: 1000, root: paying.entries[0].auditRoot.toString('hex'), nonce: '00', blocks: [0], ok: true }]]]) };
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-escrow-lookups-'));
    // Alone in its configuration: it proposes every height.
    const l = new RewardLedger({ dataDir, signer: nodes[0].signer, authorities: [authorities[0]], periodSeconds: P, skewMs: 60_000, log: silentLog });
    l.load();
    const asked = new Map<string, number>();
    l.escrow = { contract: (id) => { asked.set(id, (asked.get(id) ?? 0) + 1); return contracts.get(id); }, ownReport: (e) => Promise.resolve(e === EPOCH ? report : null) };
    const st = (l as unknown as { state: ChainState }).state;
    st.escrows = new Map([[PAYING, { id: PAYING, payer: RELAY, startEpoch: 40, endEpoch: 60, funded: 20_000n, perEpoch: 1000n, totalBytes: 1000n, lastPaid: 39, paid: 0n, refunded: null }]]);
    st.balances = new Map([[PAYING, 20_000n], [RELAY, 10_000n]]);
    st.chainId = Buffer.alloc(32, 0x37); // the id of the chain this state stands for (SPEC §8.11.1)
    l.pool.rebase(st);
    const ON: ReadonlyMap<string, number> = new Map([['funding-v2', 1]]);
    (l as unknown as { params: ReadonlyMap<string, number> }).params = ON; // the consensus held switched funding transfers on
    try {
      expect(l.pool.add(signFundingFor(relay, contractId(opening), 1000n, 1, st.chainId))).toBe('added');
      l.onConsensus({ ...consensus(EPOCH), params: ON } as VerifiedConsensus);
      await l.whenIdle(); // the proposer reads its own audit report before it builds
      const held = (l as unknown as { pending: { block: RewardBlock } | null }).pending;
      expect(held!.block.transfers).toHaveLength(1);
      expect((held!.block.escrow ?? []).map((op) => [op.kind, op.contract])).toEqual([['open', OPENING], ['pay', PAYING]]);
      expect(Object.fromEntries(asked)).toEqual({ [PAYING]: 1, [OPENING]: 1 });
    } finally {
      await l.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('cancels received are counted by result (SPEC.md §8.7.6, §9.20.4)', () => {
  it('a malformed cancel, another key\'s, one for no escrow and a closed one are refused and counted by code; added and held are counted', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-cancel-count-'));
    const reg = new prom.Registry();
    const l = new RewardLedger({ dataDir, signer: nodes[0].signer, authorities: [authorities[0]], periodSeconds: P, skewMs: 60_000, log: silentLog, registry: reg });
    try {
      l.load();
      const open = 'dddd'.padEnd(64, '1'), closed = 'dddd'.padEnd(64, '2'), none = 'dddd'.padEnd(64, '3');
      const escrow = (id: string, refunded: bigint | null) => [id, { id, payer: RELAY, startEpoch: 10, endEpoch: 20, funded: 30n, perEpoch: 3n, totalBytes: 100n, lastPaid: 9, paid: 0n, refunded }] as const;
      (l as unknown as { state: ChainState }).state.escrows = new Map([escrow(open, null), escrow(closed, 5n)]);
      const bad = encodeEscrowCancel(signEscrowCancel(relay, open));
      bad[0] = 2; // version 2
      const refusals: [Buffer, ErrorCode][] = [
        [bad, 'ESCROW_CANCEL_MALFORMED'],
        [encodeEscrowCancel(signEscrowCancel(ed25519FromSeed(Buffer.alloc(32, 99)), open)), 'ESCROW_NOT_PAYER'],
        [encodeEscrowCancel(signEscrowCancel(relay, none)), 'ESCROW_UNKNOWN'],
        [encodeEscrowCancel(signEscrowCancel(relay, closed)), 'ESCROW_CLOSED'],
      ];
      for (const [b, code] of refusals) expectCode(() => l.submitCancel(b), code);
      const good = encodeEscrowCancel(signEscrowCancel(relay, open));
      expect(l.submitCancel(good).result).toBe('added');
      expect(l.submitCancel(good).result).toBe('held');
      const m = (await reg.getSingleMetric('bitcloud_escrow_cancels_total')!.get()).values;
      expect(Object.fromEntries(m.map((v) => [v.labels.result, v.value]))).toEqual({
        ESCROW_CANCEL_MALFORMED: 1, ESCROW_NOT_PAYER: 1, ESCROW_UNKNOWN: 1, ESCROW_CLOSED: 1, added: 1, held: 1,
      });
    } finally {
      await l.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a cancel of a contract that has ended is refused at intake (SPEC.md §9.20.4)', () => {
  it('once the chain\'s tip is of the contract\'s last epoch or later, and not refunded yet: ESCROW_CONTRACT_ENDED, counted, not kept; before it, taken', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-cancel-ended-'));
    const reg = new prom.Registry();
    const l = new RewardLedger({ dataDir, signer: nodes[0].signer, authorities: [authorities[0]], periodSeconds: P, skewMs: 60_000, log: silentLog, registry: reg });
    try {
      l.load();
      const id = 'eeee'.padEnd(64, '1');
      const st = (l as unknown as { state: ChainState }).state;
      // Epochs 10..19, nothing refunded yet (the refund comes with the first block of an epoch ≥ 20).
      st.escrows = new Map([[id, { id, payer: RELAY, startEpoch: 10, endEpoch: 20, funded: 30n, perEpoch: 3n, totalBytes: 100n, lastPaid: 9, paid: 0n, refunded: null }]]);
      const cancel = encodeEscrowCancel(signEscrowCancel(relay, id));
      for (const tip of [19, 20, 25]) {
        st.epoch = tip; // every block still to come is of an epoch ≥ 20, where only the refund applies
        expectCode(() => l.submitCancel(cancel), 'ESCROW_CONTRACT_ENDED');
        expect(l.pendingCancels).toBe(0);
      }
      const m = (await reg.getSingleMetric('bitcloud_escrow_cancels_total')!.get()).values;
      expect(Object.fromEntries(m.map((v) => [v.labels.result, v.value]))).toEqual({ ESCROW_CONTRACT_ENDED: 3 });
      // The tip at epoch 18: the next block may be of epoch 19, which the cancel applies in.
      st.epoch = 18;
      expect(l.submitCancel(cancel).result).toBe('added');
      expect(l.pendingCancels).toBe(1);
    } finally {
      await l.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('passing cancels on: the same per-authority queue as transfers (SPEC.md §8.11.3, §9.20.4)', () => {
  it('1 100 cancels taken while another authority never answers: at most 4 requests open to it, at most 1 024 wait, the oldest waiting dropped and counted', async () => {
    const s = { received: 0, open: 0, maxOpen: 0, held: [] as http.ServerResponse[], done: false };
    const holder = http.createServer((req, res) => {
      if (req.url !== '/bitcloud/escrow/cancel' || s.done) { res.writeHead(404); res.end(); return; }
      s.received++;
      s.maxOpen = Math.max(s.maxOpen, ++s.open);
      res.once('close', () => { s.open--; });
      s.held.push(res);
    });
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    const other = ed25519FromSeed(Buffer.alloc(32, 120));
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-cancel-pass-on-'));
    const reg = new prom.Registry();
    const l = new RewardLedger({
      dataDir, signer: nodes[0].signer, periodSeconds: P, skewMs: 60_000, log: silentLog, registry: reg, fetchTimeoutMs: 20_000,
      authorities: [authorities[0], { name: 'holder', identity: other.publicKey, fingerprint: other.publicKey.toString('hex'), host: '127.0.0.1', port, url: `http://127.0.0.1:${port}` }],
    });
    const sent = watchRequests((url, method) => method === 'POST' && url === `http://127.0.0.1:${port}/bitcloud/escrow/cancel`);
    try {
      l.load();
      const N = 1100;
      const ids = Array.from({ length: N }, (_, i) => 'cccc' + (i + 1).toString(16).padStart(60, '0'));
      const st = (l as unknown as { state: ChainState }).state;
      st.escrows = new Map(ids.map((id) => [id, { id, payer: RELAY, startEpoch: 10, endEpoch: 20, funded: 30n, perEpoch: 3n, totalBytes: 100n, lastPaid: 9, paid: 0n, refunded: null }]));
      const bodies = ids.map((id) => encodeEscrowCancel(signEscrowCancel(relay, id)));
      for (const b of bodies) expect(l.submitCancel(b).result).toBe('added');
      // The queue starts its requests as cancels come and as requests end, and none ends while
      // the holder holds them: what it started by now is all it starts. Once all of those have
      // arrived, the holder has seen every request that can come (no fixed wait).
      expect(sent.started).toBe(4);
      await expect.poll(() => s.received, { timeout: 5000 }).toBe(sent.started);
      expect(s.maxOpen).toBe(4);
      expect(sent.started).toBe(4);
      const m = (await reg.getSingleMetric('bitcloud_transfers_pass_on_dropped_total')!.get()).values;
      expect(m.filter((v) => v.value > 0).map((v) => [v.labels.to, v.labels.what, v.value])).toEqual([['holder', 'cancel', N - 4 - 1024]]);
      // Once it answers, the 1 024 waiting go, at most 4 at a time, and nothing else.
      const answer = () => { for (const res of s.held.splice(0)) { res.writeHead(503); res.end(); } };
      for (let i = 0; i < 2000 && s.received < 4 + 1024; i++) { answer(); await new Promise((r) => setTimeout(r, 5)); }
      answer();
      await l.whenIdle();
      expect(s.received).toBe(4 + 1024);
      expect(s.maxOpen).toBe(4);
    } finally {
      sent.restore();
      s.done = true;
      for (const res of s.held.splice(0)) res.destroy();
      await l.close();
      await new Promise<void>((r) => { holder.close(() => r()); holder.closeAllConnections(); });
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('the proposer reads its own audit report before it builds (SPEC.md §9.20.4)', () => {
  /** A lone authority (it proposes every height) whose own report reads wait for `release`. */
  function gatedProposer() {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-escrow-read-'));
    const l = new RewardLedger({ dataDir, signer: nodes[0].signer, authorities: [authorities[0]], periodSeconds: P, skewMs: 60_000, log: silentLog });
    l.load();
    const reads: { epoch: number; release: () => void }[] = [];
    l.escrow = {
      contract: () => undefined,
      ownReport: (epoch) => new Promise((r) => { reads.push({ epoch, release: () => r({ epoch, pages: new Map() }) }); }),
    };
    return { l, reads, dataDir };
  }

  it('a newer consensus taken while the report is read: one read at a time, then read again for the newer epoch, and one block, for it', async () => {
    const { l, reads, dataDir } = gatedProposer();
    try {
      l.onConsensus(consensus(60));
      l.onConsensus(consensus(61)); // while the report of epoch 60 is read
      expect(reads.map((r) => r.epoch)).toEqual([60]);
      expect(l.pendingBlock).toBeNull();
      reads[0].release();
      await expect.poll(() => reads.length).toBe(2);
      expect(reads[1].epoch).toBe(61);
      expect(l.pendingBlock).toBeNull(); // nothing built from the report of epoch 60
      reads[1].release();
      await expect.poll(() => l.pendingBlock).not.toBeNull();
      expect(l.pendingBlock).toMatchObject({ height: 0, epoch: 61 });
      await l.whenIdle();
      expect(reads).toHaveLength(2);
    } finally {
      for (const r of reads) r.release();
      await l.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a report source that throws at once (rather than rejecting) does not stop the proposer building later blocks', async () => {
    const { l, reads, dataDir } = gatedProposer();
    const gated = l.escrow!.ownReport;
    let throwNext = true;
    l.escrow = { ...l.escrow!, ownReport: (epoch, nodes) => {
      if (throwNext) { throwNext = false; throw new Error('EIO: the pages cannot be listed'); }
      return gated(epoch, nodes);
    } };
    try {
      l.onConsensus(consensus(60));
      await l.whenIdle();
      expect(l.pendingBlock).toBeNull();
      l.onConsensus(consensus(61));
      await expect.poll(() => reads.length).toBe(1);
      reads[0].release();
      await expect.poll(() => l.pendingBlock).not.toBeNull();
      expect(l.pendingBlock).toMatchObject({ height: 0, epoch: 61 });
    } finally {
      for (const r of reads) r.release();
      await l.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('closed while the report is read: no block is built once it is read', async () => {
    const { l, reads, dataDir } = gatedProposer();
    try {
      l.onConsensus(consensus(60));
      expect(reads).toHaveLength(1);
      const closed = l.close();
      reads[0].release();
      await closed;
      expect(l.pendingBlock).toBeNull();
      expect(reads).toHaveLength(1);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
