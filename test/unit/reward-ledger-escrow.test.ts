// SPEC.md §8.7.4, §9.20.4: three authorities' reward ledgers behind real node:http servers carry a
// paid contract's escrow. The proposer opens the escrow in the block that carries the funding
// transfer; the others recompute the operations from the contracts they hold and sign only the
// same ones (an authority that does not hold the contract signs the block without transfers and
// escrow instead); after the contract's end the rest is refunded to the payer. A payment that the
// proposer's signed audit report (fetched from it and verified) does not give is not signed.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import type { AuthorityInfo } from '../../src/dir/authorities';
import type { VerifiedConsensus } from '../../src/dir/types';
import { prom } from '../../src/ops/metrics';
import { signTransfer } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { RewardLedger } from '../../directory/rewards';
import { serveRewards, serveTransfers } from '../../directory/reward-http';
import type { Signer } from '../../directory/vote';
import { fetchRewardChain } from '../../src/client/rewards';
import { contractId } from '../../src/bandwidth/escrow';
import type { StorageContract } from '../../src/wire/storage-contract';
import { signAuditReport, type AuditReportBody } from '../../src/storage/audit-report';

const P = 5;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 2;
const relay = ed25519FromSeed(Buffer.alloc(32, 90));
const RELAY = relay.publicKey.toString('hex');

interface Node { signer: Signer; dir: string; server: http.Server; port: number; ledger: RewardLedger | null }
const nodes: Node[] = [];
let authorities: AuthorityInfo[] = [];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-escrow-'));
/** The contracts each authority holds (index as in `nodes`). */
const held: Map<string, StorageContract>[] = [new Map(), new Map(), new Map()];
/** The ledgers' clock: each round moves it past the catch-up interval, so an authority that signed another body catches up. */
let clock = NOW;
/** The ledgers' warnings (pino JSON lines). */
const warnings: string[] = [];
/** What each authority's own report of an epoch says (used when it proposes), and what it serves signed (what the others recheck). */
const claimed = new Map<number, AuditReportBody>();
const served = new Map<number, AuditReportBody>();

const consensus = (epoch: number): VerifiedConsensus =>
  ({ provenEpoch: epoch, relays: [{ fingerprint: RELAY, nickname: 'r', proven: 100 }], periodSeconds: P }) as unknown as VerifiedConsensus;

function start(n: Node): RewardLedger {
  n.ledger = new RewardLedger({
    dataDir: n.dir, signer: n.signer, authorities, periodSeconds: P, skewMs: 60_000, log: pino({ level: 'warn' }, { write: (line: string) => { warnings.push(line); } }),
    registry: new prom.Registry(), fetchTimeoutMs: 2000, proposerWaitMs: 0, now: () => clock,
  });
  n.ledger.load();
  const i = nodes.indexOf(n);
  n.ledger.escrow = { contract: (id) => held[i].get(id), ownReport: (e) => claimed.get(e) ?? null };
  return n.ledger;
}

async function rounds(times = 3): Promise<void> {
  for (let i = 0; i < times; i++) {
    clock += P * 1000;
    for (const n of nodes) n.ledger?.tick();
    await Promise.all(nodes.map((n) => n.ledger?.whenIdle()));
  }
}

const running = () => nodes.filter((n) => n.ledger).map((n) => n.ledger!);
const post = (n: Node, body: Buffer) => httpRequest(`http://127.0.0.1:${n.port}${PATHS.transfers}`, { method: 'POST', body, maxBytes: 4096, timeoutMs: 5000 });

beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    const id = ed25519FromSeed(Buffer.alloc(32, 40 + i));
    const sk = ed25519FromSeed(Buffer.alloc(32, 50 + i));
    const signer: Signer = { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, NOW - 86_400_000, NOW + 86_400_000) };
    const n: Node = { signer, dir: path.join(root, `a${i}`), server: null as unknown as http.Server, port: 0, ledger: null };
    n.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === PATHS.certificate) { res.writeHead(200, { 'content-length': signer.certificate.length }); res.end(signer.certificate); return; }
      if (url.pathname === '/bitcloud/storage/audits') {
        const body = served.get(Number(url.searchParams.get('epoch')));
        if (!body) { res.writeHead(404); res.end(); return; }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(signAuditReport({ ...body, authority: signer.identity.toString('hex') }, signer)));
        return;
      }
      void (async () => (await serveTransfers(n.ledger, req, res, url)) ?? (await serveRewards(n.ledger, req, res, url)))()
        .then((r) => { if (!r) { res.writeHead(404); res.end(); } });
    });
    await new Promise<void>((r) => n.server.listen(0, '127.0.0.1', () => r()));
    n.port = (n.server.address() as { port: number }).port;
    nodes.push(n);
  }
  authorities = nodes.map((n, i) => ({
    name: `auth${i}`, identity: n.signer.identity, fingerprint: n.signer.identity.toString('hex'), host: '127.0.0.1', port: n.port, url: `http://127.0.0.1:${n.port}`,
  }));
  for (const n of nodes) start(n);
});

afterAll(async () => {
  for (const n of nodes) {
    await n.ledger?.close();
    await new Promise<void>((r) => { n.server.close(() => r()); n.server.closeAllConnections(); });
  }
  fs.rmSync(root, { recursive: true, force: true });
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
    claimed.set(E0 + 7, { version: 1, authority: '', epoch: E0 + 7, results: [{ ...result, ok: true }], stored: {} });
    served.set(E0 + 7, { version: 1, authority: '', epoch: E0 + 7, results: [{ ...result, ok: false, code: 'STORAGE_TIMEOUT' }], stored: {} });

    expect((await post(nodes[0], encodeTransfer(signTransfer(relay, id2, 3000n, 2)))).status).toBe(200);
    await Promise.all(running().map((l) => l.whenIdle()));
    for (const l of running()) l.onConsensus(consensus(E0 + 6));
    await rounds(6);
    for (const l of running()) expect(l.chain.escrows.get(ID2)).toMatchObject({ funded: 3000n, perEpoch: 1000n, paid: 0n });

    warnings.length = 0;
    for (const l of running()) l.onConsensus(consensus(E0 + 7));
    await rounds(6);
    // The proposer did pay (its own report says the node passed); the two others refused that body.
    const refused = warnings.map((w) => JSON.parse(w) as { msg: string; reason?: string }).filter((w) => w.msg === 'signing the reward block without transfers' && /escrow operations are not those/.test(w.reason ?? ''));
    expect(refused).toHaveLength(2);
    for (const l of running()) {
      expect(l.chain.epoch).toBe(E0 + 7);
      expect(l.chain.escrows.get(ID2)?.paid).toBe(0n);
      expect(l.chain.balances.get(result.node)).toBeUndefined();
      expect(l.chain.balances.get(ID2)).toBe(3000n);
    }
  });
});
