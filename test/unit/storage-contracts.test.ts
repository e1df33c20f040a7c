// SPEC.md §9.20: storage contracts, the authorities' audits of every epoch, their signed reports,
// the consensus `stored` column and the storage part of a reward block. Nodes here are real share
// stores answering through the node's request handler (no sockets); the integration test
// test/integration/storage-audits.test.ts runs the same with real daemons.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { blake2b, ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { prom } from '../../src/ops/metrics';
import { parseAuthorityList } from '../../src/dir/authorities';
import type { ConsensusRelay, VerifiedConsensus } from '../../src/dir/types';
import { FLAG_BITS } from '../../src/dir/types';
import { auditRoot, challengeBlocks, proveBlocks } from '../../src/storage/audit';
import { shareId } from '../../src/storage/share';
import { CoinLedger, signTransfer } from '../../src/bandwidth/transfer';
import { applyEscrowOp, contractId, escrowOpsFor, escrowPayNodes, passingBytes, type EscrowBook } from '../../src/bandwidth/escrow';
import {
  AUDIT_PAGE_MAX_BYTES, AUDIT_REPORT_MAX_BYTES, buildAuditReport, signAuditReport, verifyAuditPage, verifyAuditReport, type AuditReportBody, type ReportedAudit, type SignedAuditReport,
} from '../../src/storage/audit-report';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { MAX_AUDIT_ANSWER_BYTES } from '../../src/storage/protocol';
import { encodeAuditAnswer } from '../../src/wire/audit-answer';
import { CONTRACT_MAX_LEAD_EPOCHS, decodeContract, encodeContract, sortContractEntries, type ContractEntry } from '../../src/wire/storage-contract';
import { decodeConsensus } from '../../src/wire/docs';
import { allocate, allocateWithStorage } from '../../src/bandwidth/reward';
import { nextRewardBlock } from '../../src/bandwidth/reward-chain';
import { contractFromPass } from '../../src/client/storage-contract';
import { handleRequest } from '../../storage/handler';
import { ShareStore } from '../../storage/share-store';
import { computeConsensus } from '../../directory/compute';
import { StorageAudits, type AuditConnector } from '../../directory/storage-audits';
import { AUDITS_PATH, AuditPagePlaces, CONTRACTS_PATH, PAGE_MAX_PER_ADDRESS, serveStorageAudits } from '../../directory/storage-http';
import { provenInput } from '../../directory/rewards';
import { E, P, epochStart, makeRelay, makeSigner, silentLog, consensusFor } from './dirauth-measure-fixture';

const dirs: string[] = [];
const stores: ShareStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-contracts-')); dirs.push(d); return d; };
const codeOf = async (f: () => unknown): Promise<string> => {
  try { await f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return 'NO_ERROR';
};

function entry(node: Buffer, share: Buffer): ContractEntry {
  return { node, shareId: shareId(share), shareSize: share.length, auditRoot: auditRoot(share) };
}

/** An encoded contract over epochs [start, end) of `shares` random 64-byte shares held by `node`. */
function contractOf(node: Buffer, start: number, end: number, shares = 1): Buffer {
  return encodeContract({ startEpoch: start, endEpoch: end, entries: sortContractEntries(Array.from({ length: shares }, () => entry(node, randomBytes(64)))) });
}

describe('contract layout (SPEC.md §9.20.1)', () => {
  const n1 = randomBytes(32), n2 = randomBytes(32);
  const s1 = randomBytes(5000), s2 = randomBytes(100);
  const c = { startEpoch: 10, endEpoch: 20, entries: sortContractEntries([entry(n1, s1), entry(n2, s2), entry(n1, s2)]) };

  it('round-trips, one encoding', () => {
    const b = encodeContract(c);
    expect(b.length).toBe(25 + 3 * 100);
    expect(b.subarray(0, 4).toString()).toBe('BCSC');
    const d = decodeContract(b);
    expect(d).toEqual(c);
    expect(encodeContract(d).equals(b)).toBe(true);
  });

  it('refuses every malformed contract with CONTRACT_MALFORMED', async () => {
    const b = encodeContract(c);
    const bad = (f: (x: Buffer) => void) => { const x = Buffer.from(b); f(x); return x; };
    for (const x of [
      bad((x) => { x[0] = 0x41; }),                                       // magic
      bad((x) => { x[4] = 2; }),                                          // version
      bad((x) => { x.writeBigUInt64BE(20n, 5); }),                        // start = end
      bad((x) => { x.writeUInt32BE(4, 21); }),                            // count says 4, 3 present
      bad((x) => { x.writeUInt32BE(0, 25 + 64); }),                       // share size 0
      Buffer.concat([b, Buffer.alloc(1)]),                                // trailing byte
      b.subarray(0, b.length - 1),                                        // truncated
      bad((x) => { x.copy(x, 25 + 100, 25, 125); }),                      // a repeated entry
    ]) expect(await codeOf(() => decodeContract(x))).toBe('CONTRACT_MALFORMED');
    expect(await codeOf(() => encodeContract({ ...c, entries: [...c.entries].reverse() }))).toBe('CONTRACT_MALFORMED');
    expect(await codeOf(() => encodeContract({ ...c, entries: [] }))).toBe('CONTRACT_MALFORMED');
  });

  it('a keeper pass becomes a contract: distinct (node, share), sorted', () => {
    const placed = [
      { node: n2.toString('hex'), shareId: shareId(s2), size: s2.length, root: auditRoot(s2) },
      { node: n1.toString('hex'), shareId: shareId(s1), size: s1.length, root: auditRoot(s1) },
      { node: n1.toString('hex'), shareId: shareId(s1), size: s1.length, root: auditRoot(s1) },
    ];
    const k = contractFromPass(placed, 7, 3);
    expect(k.contract.startEpoch).toBe(7);
    expect(k.contract.endEpoch).toBe(10);
    expect(k.contract.entries).toHaveLength(2);
    expect(k.id).toBe(blake2b(k.bytes).toString('hex'));
    expect(decodeContract(k.bytes)).toEqual(k.contract);
  });
});

/** A storage node: a real share store answering through the node's handler. */
async function node(opts: { forge?: boolean } = {}) {
  const dir = tmp();
  const store = await ShareStore.open({ dir, quotaBytes: 1 << 26, cacheBytes: 0 });
  stores.push(store);
  const key = ed25519Generate();
  const fp = key.publicKey.toString('hex');
  const relay = { identity: key.publicKey, fingerprint: fp, address: '127.0.0.1', storagePort: 1, flags: new Set(['Storage', 'Running', 'Valid']) } as unknown as ConsensusRelay;
  return { dir, store, key, fp, relay, forge: opts.forge ?? false };
}

/** A storage node holding one 1000-byte share under a contract, and an authority (signing with `signer`) that audited it in epoch E (SPEC.md §9.20.2). */
async function auditedOneShare(signer: ReturnType<typeof makeSigner>) {
  const n = await node();
  const b = randomBytes(1000);
  await n.store.put(shareId(b), b, 3600);
  const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect: connector([n], new Map()) });
  await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, b)] }));
  audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
  await audits.auditEpoch(E);
  return { n, audits };
}
type Node = Awaited<ReturnType<typeof node>>;

function connector(nodes: Node[], held: Map<string, Buffer>): AuditConnector {
  return async (r) => {
    const n = nodes.find((x) => x.fp === r.fingerprint)!;
    return {
      close() {},
      async send(req) {
        if (n.forge && req.type === 'challenge') {
          // Answers with other bytes of the right size: the proof cannot match the root.
          const real = held.get(req.id.toString('hex'))!;
          const other = randomBytes(real.length);
          return { type: 'challenge', answer: encodeAuditAnswer({ shareSize: other.length, nonce: req.nonce, blocks: proveBlocks(other, req.blocks) }) };
        }
        const res = await handleRequest(n.store, req, { viaCircuit: true });
        if (res.type === 'error') { const e = new Error(res.message) as Error & { code: string }; throw Object.assign(e, { code: res.code }); }
        return res;
      },
    };
  };
}

/** The size of the first result of a page (its bytes as served). */
const p0Size = (page: Buffer): number => (JSON.parse(page.toString('utf8')) as { results: { size: number }[] }).results[0].size;

/**
 * An authority's report of `epoch` as another reads it (SPEC.md §9.20.3): the signed summary,
 * verified, and every node's page as served, verified against it.
 */
async function readReport(audits: StorageAudits, auths: readonly AuthorityInfo[], epoch: number) {
  const body = verifyAuditReport(JSON.parse(audits.reportText(epoch)!.toString('utf8')), auths, epoch);
  const results: ReportedAudit[] = [];
  for (const fp of Object.keys(body.nodes)) results.push(...verifyAuditPage(body, fp, (await audits.pageText(epoch, fp))!));
  const stored = Object.fromEntries(Object.entries(body.nodes).filter(([, n]) => n.stored > 0).map(([fp, n]) => [fp, n.stored]));
  return { body, results, stored };
}

describe('the contract limit (SPEC.md §9.20.1)', () => {
  it('uploads that arrive together cannot pass the limit while their writes are under way', async () => {
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContracts: 2 });
    const n = await node();
    const contracts = Array.from({ length: 5 }, () => contractOf(n.key.publicKey, E, E + 2));
    const results = await Promise.allSettled(contracts.map((c) => audits.accept(c)));
    expect(results.filter((r) => r.status === 'fulfilled' && r.value.result === 'accepted')).toHaveLength(2);
    expect(results.filter((r) => r.status === 'rejected' && isBitcloudError(r.reason, 'CONTRACT_LIMIT'))).toHaveLength(3);
    // The same contract twice at once is accepted once.
    const other = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000 });
    const twice = await Promise.all([other.accept(contracts[0]), other.accept(contracts[0])]);
    expect(twice.map((r) => r.result).sort()).toEqual(['accepted', 'unchanged']);
  });
});

describe('the entry limit (SPEC.md §9.20.1)', () => {
  it('a contract that would take the entries held over the limit is refused with CONTRACT_LIMIT, also while writes are under way', async () => {
    // Every contract funded: none is evicted to make room (SPEC.md §9.20.1).
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContractEntries: 5, funded: () => true });
    const n = await node();
    const withEntries = (k: number) => contractOf(n.key.publicKey, E, E + 2, k);
    expect((await audits.accept(withEntries(3))).result).toBe('accepted');
    expect(await codeOf(() => audits.accept(withEntries(3)))).toBe('CONTRACT_LIMIT');
    const together = await Promise.allSettled([audits.accept(withEntries(2)), audits.accept(withEntries(1))]);
    expect(together.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(audits.contractCount).toBe(2);
  });

  it('a store holding more than the limit loads up to it and keeps the other files', async () => {
    const dataDir = tmp();
    const first = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000 });
    const n = await node();
    for (let i = 0; i < 4; i++) await first.accept(contractOf(n.key.publicKey, E, E + 2, 2));
    const again = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContractEntries: 5 });
    expect(again.load().contracts).toBe(2);
    expect(fs.readdirSync(path.join(dataDir, 'storage', 'contracts'))).toHaveLength(4);
    const fewer = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContracts: 3 });
    expect(fewer.load().contracts).toBe(3);
  });
});

describe('unfunded contracts make room for a new upload (SPEC.md §9.20.1)', () => {
  const evicted = async (reg: prom.Registry): Promise<number> => (await reg.getSingleMetric('bitcloud_storage_contracts_evicted_total')!.get()).values.reduce((a, v) => a + v.value, 0);
  const idOf = (raw: Buffer): string => blake2b(raw).toString('hex');
  const fileOf = (dataDir: string, id: string): string => path.join(dataDir, 'storage', 'contracts', `${id}.bin`);

  it('a full store of unfunded contracts takes a new upload by evicting the oldest, in memory and on disk; it may be uploaded again', async () => {
    const dataDir = tmp();
    const registry = new prom.Registry();
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, registry, now: () => epochStart(E) + 1000, maxContracts: 2 });
    const n = await node();
    const [a, b, c] = Array.from({ length: 3 }, () => contractOf(n.key.publicKey, E, E + 2));
    for (const raw of [a, b, c]) expect((await audits.accept(raw)).result).toBe('accepted');
    expect(audits.contractCount).toBe(2);
    expect(audits.contract(idOf(a))).toBeUndefined();
    expect(fs.existsSync(fileOf(dataDir, idOf(a)))).toBe(false);
    for (const raw of [b, c]) { expect(audits.contract(idOf(raw))).toBeDefined(); expect(fs.existsSync(fileOf(dataDir, idOf(raw)))).toBe(true); }
    expect(await evicted(registry)).toBe(1);
    // Uploaded again: b is now the oldest and makes room.
    expect((await audits.accept(a)).result).toBe('accepted');
    expect(audits.contract(idOf(b))).toBeUndefined();
    expect(fs.existsSync(fileOf(dataDir, idOf(a)))).toBe(true);
    expect(await evicted(registry)).toBe(2);
  });

  it('a funded contract (an open escrow in the chain or a funding in the pending pool) is never evicted; all funded, the upload is CONTRACT_LIMIT', async () => {
    const dataDir = tmp();
    const funded = new Set<string>();
    const asked: [string, number][] = [];
    const audits = new StorageAudits({
      dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContracts: 2,
      funded: (id, epochs) => { asked.push([id, epochs]); return funded.has(id); },
    });
    const n = await node();
    const [a, b, c, d] = Array.from({ length: 4 }, () => contractOf(n.key.publicKey, E, E + 3));
    await audits.accept(a);
    await audits.accept(b);
    funded.add(idOf(a));
    // a is the oldest but funded: b goes.
    expect((await audits.accept(c)).result).toBe('accepted');
    expect(asked).toContainEqual([idOf(a), 3]);
    expect(audits.contract(idOf(a))).toBeDefined();
    expect(audits.contract(idOf(b))).toBeUndefined();
    funded.add(idOf(c));
    expect(await codeOf(() => audits.accept(d))).toBe('CONTRACT_LIMIT');
    expect(audits.contract(idOf(a))).toBeDefined();
    expect(audits.contract(idOf(c))).toBeDefined();
    expect(fs.readdirSync(path.join(dataDir, 'storage', 'contracts')).sort()).toEqual([`${idOf(a)}.bin`, `${idOf(c)}.bin`].sort());
  });

  it('at the entry limit, as many unfunded contracts as needed are evicted, oldest first; when all of them would not make room, none is', async () => {
    const dataDir = tmp();
    const registry = new prom.Registry();
    const funded = new Set<string>();
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, registry, now: () => epochStart(E) + 1000, maxContractEntries: 8, funded: (id) => funded.has(id) });
    const n = await node();
    const withEntries = (k: number) => contractOf(n.key.publicKey, E, E + 2, k);
    const [a, b, c, d] = [withEntries(2), withEntries(2), withEntries(2), withEntries(2)];
    for (const raw of [a, b, c, d]) await audits.accept(raw);
    funded.add(idOf(b));
    // 8 held, 5 more: 5 must go, so a (2), then c (2) and d (2); b is funded.
    const big = withEntries(5);
    expect((await audits.accept(big)).result).toBe('accepted');
    expect([a, b, c, d, big].map((raw) => audits.contract(idOf(raw)) !== undefined)).toEqual([false, true, false, false, true]);
    expect(await evicted(registry)).toBe(3);
    // Held: b (funded, 2) and big (unfunded, 5). 7 entries need 6 gone, and only big's 5 can go.
    expect(await codeOf(() => audits.accept(withEntries(7)))).toBe('CONTRACT_LIMIT');
    expect(audits.contract(idOf(big))).toBeDefined();
    expect(fs.existsSync(fileOf(dataDir, idOf(big)))).toBe(true);
    expect(await evicted(registry)).toBe(3);
    // 6 entries: big goes.
    expect((await audits.accept(withEntries(6))).result).toBe('accepted');
    expect(audits.contract(idOf(big))).toBeUndefined();
  });

  it('an upload needing room first drops the contracts that ended KEPT_REPORTS epochs ago, funded or not, without counting them as evictions; a live unfunded one is kept', async () => {
    const dataDir = tmp();
    const registry = new prom.Registry();
    let now = epochStart(E) + 1000;
    const funded = new Set<string>();
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, registry, now: () => now, maxContracts: 3, funded: (id) => funded.has(id) });
    const n = await node();
    // Two contracts ending at E + 2, one still funded (its escrow not closed yet), stored around a
    // long one, unfunded: the long one is the oldest unfunded contract that is still running.
    const endedFunded = contractOf(n.key.publicKey, E, E + 2);
    const live = contractOf(n.key.publicKey, E, E + 20);
    const endedFree = contractOf(n.key.publicKey, E, E + 2);
    for (const raw of [endedFunded, live, endedFree]) await audits.accept(raw);
    funded.add(idOf(endedFunded));
    // Six epochs after their end, with no audit pass since: their reports are no longer kept.
    now = epochStart(E + 8) + 1000;
    expect(audits.contractCount).toBe(3);
    const fresh = contractOf(n.key.publicKey, E + 8, E + 10);
    // The removals of forgotten contracts' files, each awaited below.
    const realRm = fs.promises.rm.bind(fs.promises);
    const removals: Promise<void>[] = [];
    const rm = vi.spyOn(fs.promises, 'rm').mockImplementation((p, o) => { const r = realRm(p, o); removals.push(r); return r; });
    try {
      expect((await audits.accept(fresh)).result).toBe('accepted');
    } finally {
      rm.mockRestore();
    }
    expect(audits.contract(idOf(endedFunded))).toBeUndefined();
    expect(audits.contract(idOf(endedFree))).toBeUndefined();
    expect(audits.contract(idOf(live))).toBeDefined();
    expect(audits.contract(idOf(fresh))).toBeDefined();
    expect(await evicted(registry)).toBe(0);
    // Their files go after they are forgotten.
    await Promise.all(removals);
    expect(fs.readdirSync(path.join(dataDir, 'storage', 'contracts')).sort()).toEqual([idOf(live), idOf(fresh)].map((id) => `${id}.bin`).sort());
    // Ones that ended fewer than KEPT_REPORTS epochs ago are still held: room is made by evicting
    // the oldest unfunded contract, as before.
    const recent = contractOf(n.key.publicKey, E + 8, E + 10);
    await audits.accept(recent);
    now = epochStart(E + 15) + 1000; // fresh and recent ended at E + 10 > E + 15 − 6
    expect(await codeOf(() => audits.accept(contractOf(n.key.publicKey, E + 15, E + 16)))).toBe('NO_ERROR');
    expect(await evicted(registry)).toBe(1);
    expect(audits.contract(idOf(fresh))).toBeDefined();
    expect(audits.contract(idOf(recent))).toBeDefined();
    expect(audits.contract(idOf(live))).toBeUndefined();
  });

  it('a store loaded beyond the limits deletes nothing at start; a new upload then evicts the held contract stored first (by file time)', async () => {
    const dataDir = tmp();
    const n = await node();
    const cdir = path.join(dataDir, 'storage', 'contracts');
    fs.mkdirSync(cdir, { recursive: true });
    const raws = Array.from({ length: 4 }, () => contractOf(n.key.publicKey, E, E + 2));
    // Stored in the order of their file times, which is not the order of their names.
    const ids = raws.map(idOf).sort().reverse();
    const byId = new Map(raws.map((raw) => [idOf(raw), raw]));
    const t0 = Date.now() / 1000 - 1000;
    ids.forEach((id, i) => { const f = path.join(cdir, `${id}.bin`); fs.writeFileSync(f, byId.get(id)!); fs.utimesSync(f, t0 + i * 10, t0 + i * 10); });
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContracts: 2 });
    expect(audits.load().contracts).toBe(2);
    expect(fs.readdirSync(cdir)).toHaveLength(4);
    const held = ids.filter((id) => audits.contract(id) !== undefined);
    expect(held).toHaveLength(2);
    const oldest = held[0]; // ids are in file-time order
    const fresh = contractOf(n.key.publicKey, E, E + 2);
    expect((await audits.accept(fresh)).result).toBe('accepted');
    expect(audits.contract(oldest)).toBeUndefined();
    expect(audits.contract(held[1])).toBeDefined();
    // Only the evicted file is gone; the files not held at start are kept.
    expect(fs.readdirSync(cdir).sort()).toEqual([...ids.filter((id) => id !== oldest), idOf(fresh)].map((id) => `${id}.bin`).sort());
  });
});

describe('contracts starting far ahead (SPEC.md §9.20.1)', () => {
  it('a start_epoch more than CONTRACT_MAX_LEAD_EPOCHS ahead is CONTRACT_TOO_EARLY and takes no place under the limit', async () => {
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, maxContracts: 2 });
    const n = await node();
    const starting = (start: number) => contractOf(n.key.publicKey, start, start + 1);
    for (let i = 0; i < 3; i++) expect(await codeOf(() => audits.accept(starting(2 ** 52)))).toBe('CONTRACT_TOO_EARLY');
    expect(await codeOf(() => audits.accept(starting(E + CONTRACT_MAX_LEAD_EPOCHS + 1)))).toBe('CONTRACT_TOO_EARLY');
    expect(audits.contractCount).toBe(0);
    expect((await audits.accept(starting(E + CONTRACT_MAX_LEAD_EPOCHS))).result).toBe('accepted');
    expect((await audits.accept(starting(E))).result).toBe('accepted');
  });

  it('a stored contract starting more than CONTRACT_MAX_LEAD_EPOCHS ahead is not held at load; its file is kept, one warning counts them', async () => {
    const dataDir = tmp();
    const n = await node();
    const starting = (start: number) => contractOf(n.key.publicKey, start, start + 1);
    // Written before the upload check existed: files on disk, as the store names them.
    const cdir = path.join(dataDir, 'storage', 'contracts');
    fs.mkdirSync(cdir, { recursive: true });
    const put = (raw: Buffer): string => { const id = blake2b(raw).toString('hex'); fs.writeFileSync(path.join(cdir, `${id}.bin`), raw); return id; };
    const early = [put(starting(E + CONTRACT_MAX_LEAD_EPOCHS + 1)), put(starting(2 ** 52))];
    const edge = put(starting(E + CONTRACT_MAX_LEAD_EPOCHS));
    const current = put(starting(E));
    const warnings: unknown[] = [];
    const log = Object.assign(Object.create(silentLog) as typeof silentLog, { warn: (...a: unknown[]) => { warnings.push(a); } });
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log, now: () => epochStart(E) + 1000, maxContracts: 2 });
    expect(audits.load().contracts).toBe(2);
    for (const id of early) expect(audits.contract(id)).toBeUndefined();
    expect(audits.contract(edge)).toBeDefined();
    expect(audits.contract(current)).toBeDefined();
    expect(fs.readdirSync(cdir)).toHaveLength(4);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toEqual([expect.objectContaining({ early: 2 }), expect.any(String)]);
  });
});

describe('contracts that ended, across a restart (SPEC.md §9.20.1, §9.20.4)', () => {
  it('one that ended fewer than KEPT_REPORTS epochs ago is still held at load (its last epochs are paid in later blocks); one older is removed', async () => {
    const dataDir = tmp();
    const n = await node();
    const cdir = path.join(dataDir, 'storage', 'contracts');
    fs.mkdirSync(cdir, { recursive: true });
    const put = (raw: Buffer): string => { const id = blake2b(raw).toString('hex'); fs.writeFileSync(path.join(cdir, `${id}.bin`), raw); return id; };
    // Ended at E (its last epoch E − 1 is paid in the block built during period E + 1) and at E − 1.
    const justEnded = put(contractOf(n.key.publicKey, E - 3, E));
    const endedBefore = put(contractOf(n.key.publicKey, E - 4, E - 1));
    // Ended six epochs ago: no block still to be built pays it.
    const old = put(contractOf(n.key.publicKey, E - 9, E - 6));
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000 });
    expect(audits.load().contracts).toBe(2);
    expect(audits.contract(justEnded)).toBeDefined();
    expect(audits.contract(endedBefore)).toBeDefined();
    expect(audits.contract(old)).toBeUndefined();
    expect(fs.readdirSync(cdir).sort()).toEqual([`${endedBefore}.bin`, `${justEnded}.bin`].sort());
  });
});

describe('the same contract uploaded twice at once (SPEC.md §9.20.1)', () => {
  it('is answered unchanged only once it is stored; when the write fails, both uploads fail', async () => {
    const dataDir = tmp();
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000 });
    const n = await node();
    const c = contractOf(n.key.publicKey, E, E + 2);
    const id = blake2b(c).toString('hex');
    // The contract's file cannot be written: its name is taken by a directory.
    fs.mkdirSync(path.join(dataDir, 'storage', 'contracts', `${id}.bin`, 'x'), { recursive: true });
    const results = await Promise.allSettled([audits.accept(c), audits.accept(c)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(audits.contract(id)).toBeUndefined();
  });
});

describe('a contract the authority cannot store (SPEC.md §6.10 "Error answers")', () => {
  it('is answered 500 INTERNAL without the message, which names the authority\'s folder; the operator\'s log has it', async () => {
    const dataDir = tmp();
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log, now: () => epochStart(E) + 1000 });
    const n = await node();
    const c = contractOf(n.key.publicKey, E, E + 2);
    // A data folder on a filesystem that keeps no Unix modes: fchmod fails (IO_MODE_UNSUPPORTED).
    const probe = await fsp.open(path.join(dataDir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { chmod(mode: number): Promise<void> };
    await probe.close();
    const chmod = vi.spyOn(proto, 'chmod').mockRejectedValue(Object.assign(new Error('EPERM: operation not permitted, fchmod'), { code: 'EPERM' }));
    let status = 0;
    let sent = Buffer.alloc(0);
    try {
      const req = Object.assign(Readable.from([c]), { method: 'POST', headers: {}, socket: { remoteAddress: '203.0.113.7' } }) as unknown as http.IncomingMessage;
      const res = { writeHead(s: number) { status = s; return res; }, end(x: string | Buffer) { sent = Buffer.from(x); } } as unknown as http.ServerResponse;
      const r = await serveStorageAudits(audits, req, res, new URL(`http://a${CONTRACTS_PATH}`), { takeRemote: () => true } as never, new AuditPagePlaces([]));
      expect(chmod).toHaveBeenCalled();
      expect(r).toEqual(['storage_contracts', 500]);
    } finally {
      chmod.mockRestore();
    }
    expect(status).toBe(500);
    const body = JSON.parse(sent.toString()) as { code: string; reason: string };
    expect(body.code).toBe('INTERNAL');
    expect(sent.toString()).not.toContain(dataDir);
    expect(audits.contract(blake2b(c).toString('hex'))).toBeUndefined();
    expect(lines.some((l) => l.includes('storing a storage contract failed') && l.includes('IO_MODE_UNSUPPORTED'))).toBe(true);
  });
});

describe('authority audits of an epoch (SPEC.md §9.20.2–9.20.3)', () => {
  it('credits the bytes of passing shares only; a deleted share, a forged answer, a node outside the consensus earn nothing; the report rechecks', async () => {
    const honest = await node(), lazy = await node(), forger = await node({ forge: true }), gone = await node();
    const held = new Map<string, Buffer>();
    const put = async (n: Node, size: number) => {
      const b = randomBytes(size);
      await n.store.put(shareId(b), b, 3600);
      held.set(shareId(b).toString('hex'), b);
      return b;
    };
    const h1 = await put(honest, 9000), h2 = await put(honest, 300);
    const l1 = await put(lazy, 5000), l2 = await put(lazy, 7000);
    const f1 = await put(forger, 4096);
    const g1 = await put(gone, 100);
    const signer = makeSigner();
    let now = epochStart(E) + 1000;
    const dataDir = tmp();
    const audits = new StorageAudits({ dataDir, signer, periodSeconds: P, log: silentLog, now: () => now, connect: connector([honest, lazy, forger, gone], held) });
    audits.load();
    const contract = encodeContract({ startEpoch: E, endEpoch: E + 5, entries: sortContractEntries([
      entry(honest.key.publicKey, h1), entry(honest.key.publicKey, h2), entry(lazy.key.publicKey, l1), entry(lazy.key.publicKey, l2),
      entry(forger.key.publicKey, f1), entry(gone.key.publicKey, g1),
    ]) });
    expect((await audits.accept(contract)).result).toBe('accepted');
    expect((await audits.accept(contract)).result).toBe('unchanged');
    // The lazy node deletes one share's file (SPEC.md §9.8.1 layout).
    const hex = shareId(l2).toString('hex');
    fs.rmSync(path.join(lazy.dir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex));

    audits.onConsensus({ validAfter: epochStart(E), relays: [honest.relay, lazy.relay, forger.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const stored = audits.storedFor(E)!;
    expect(stored.get(honest.fp)).toBe(9300);
    expect(stored.get(lazy.fp)).toBe(5000);
    expect(stored.has(forger.fp)).toBe(false);
    expect(stored.has(gone.fp)).toBe(false);

    const rep = audits.report(E)!;
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { body, results } = await readReport(audits, auths, E);
    expect(Object.keys(body.nodes)).toEqual([honest.fp, lazy.fp, forger.fp].sort());
    const codes = Object.fromEntries(results.map((r) => [`${r.node}/${r.shareId}`, r.ok ? 'ok' : r.code]));
    expect(codes[`${lazy.fp}/${shareId(l2).toString('hex')}`]).toBe('SHARE_NOT_FOUND');
    expect(codes[`${forger.fp}/${shareId(f1).toString('hex')}`]).toBe('AUDIT_PROOF_INVALID');
    expect(results.some((r) => r.node === gone.fp)).toBe(false);
    const honestPage = (await audits.pageText(E, honest.fp))!;

    // Tampering with a summary is caught.
    const tamper = (f: (b: Record<string, any>) => void): SignedAuditReport => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const b = JSON.parse(rep.body) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      f(b);
      return { ...rep, body: JSON.stringify(b) };
    };
    expect(await codeOf(() => verifyAuditReport(tamper((b) => { b.nodes[honest.fp].stored += 1; }), auths))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(() => verifyAuditReport({ ...rep, signature: '00'.repeat(64) }, auths))).toBe('AUDIT_REPORT_INVALID');
    const other = makeSigner();
    expect(await codeOf(() => verifyAuditReport(rep, parseAuthorityList([{ name: 'b', identity: other.identity.toString('hex'), address: '127.0.0.1:1' }])))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(() => verifyAuditReport(rep, auths, E + 1))).toBe('AUDIT_REPORT_INVALID');
    // A version 1 report (every result in the signed body) is not read as a summary.
    expect(await codeOf(() => verifyAuditReport(signAuditReport({ ...body, version: 1 }, signer), auths))).toBe('AUDIT_REPORT_INVALID');
    // A malformed node entry, signed, is refused.
    for (const f of [
      (b: AuditReportBody) => { b.nodes[honest.fp].results = 65; },
      (b: AuditReportBody) => { b.nodes[honest.fp].stored = -1; },
      (b: AuditReportBody) => { b.nodes[honest.fp].page = 'ab'; },
      (b: AuditReportBody) => { b.nodes = { ['AB'.repeat(32)]: b.nodes[honest.fp] }; },
    ]) {
      const b = JSON.parse(rep.body) as AuditReportBody;
      f(b);
      expect(await codeOf(() => verifyAuditReport(signAuditReport(b, signer), auths)), String(f)).toBe('AUDIT_REPORT_INVALID');
    }

    // A page whose bytes are not those the summary's digest names is refused, however small the change.
    const edited = Buffer.from(honestPage.toString('utf8').replace(/"ok":true/, '"ok": true'), 'utf8');
    expect(edited.equals(honestPage)).toBe(false);
    expect(await codeOf(() => verifyAuditPage(body, honest.fp, edited))).toBe('AUDIT_REPORT_INVALID');
    const lazyPage = (await audits.pageText(E, lazy.fp))!;
    expect(await codeOf(() => verifyAuditPage(body, honest.fp, lazyPage))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(() => verifyAuditPage(body, gone.fp, honestPage))).toBe('AUDIT_REPORT_INVALID');

    /** The summary re-signed with `node`'s page changed by `f` (and its digest and count with it) and its entry by `g`. */
    const resigned = (node: string, f: (page: { epoch: number; node: string; results: Record<string, unknown>[] }) => void, g: (n: AuditReportBody['nodes'][string]) => void = () => {}) => {
      const page = JSON.parse(honestPage.toString('utf8')) as { epoch: number; node: string; results: Record<string, unknown>[] };
      f(page);
      const bytes = Buffer.from(JSON.stringify(page), 'utf8');
      const b = JSON.parse(rep.body) as AuditReportBody;
      b.nodes[node] = { ...b.nodes[node], results: page.results.length, page: blake2b(bytes).toString('hex') };
      g(b.nodes[node]);
      const summary = verifyAuditReport(signAuditReport(b, signer), auths, E);
      return () => verifyAuditPage(summary, node, bytes);
    };
    // The page unchanged, re-signed: it verifies (the checks below fail for what they change).
    expect(resigned(honest.fp, () => {})()).toHaveLength(2);
    // A summary whose stored bytes are not what the page's passing results give: refused.
    expect(await codeOf(resigned(honest.fp, () => {}, (n) => { n.stored += 1; }))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(resigned(honest.fp, () => {}, (n) => { n.stored = 0; }))).toBe('AUDIT_REPORT_INVALID');
    // A count that is not the page's, a page of another epoch or node, a result naming another node.
    expect(await codeOf(resigned(honest.fp, () => {}, (n) => { n.results = 1; }))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(resigned(honest.fp, (p) => { p.epoch = E + 1; }))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(resigned(lazy.fp, () => {}))).toBe('AUDIT_REPORT_INVALID');
    expect(await codeOf(resigned(honest.fp, (p) => { p.results[0].node = lazy.fp; }, (n) => { n.stored = 300 + 9000 - (p0Size(honestPage)); }))).toBe('AUDIT_REPORT_INVALID');

    // A page re-signed with a result flipped to "failed" while its answer proves the share: the
    // recheck refuses it (an authority cannot withhold a node's pay while publishing its proof).
    expect(await codeOf(resigned(honest.fp, (p) => { p.results[0].ok = false; p.results[0].code = 'AUDIT_PROOF_INVALID'; }, (n) => { n.stored -= p0Size(honestPage); }))).toBe('AUDIT_REPORT_INVALID');

    // A signed result no challenge could carry (a nonce over 64 bytes or not hex, a share over the
    // largest, blocks that are not indices) is AUDIT_REPORT_INVALID, never another error.
    for (const f of [
      (r: Record<string, unknown>) => { r.nonce = 'ab'.repeat(65); },
      (r: Record<string, unknown>) => { r.nonce = 'zz'.repeat(32); },
      (r: Record<string, unknown>) => { r.size = 2 ** 31; },
      (r: Record<string, unknown>) => { r.blocks = [-1]; },
      (r: Record<string, unknown>) => { r.blocks = [0.5]; },
      (r: Record<string, unknown>) => { r.answer = 'x'; },
    ]) {
      expect(await codeOf(resigned(honest.fp, (p) => f(p.results[0]))), String(f)).toBe('AUDIT_REPORT_INVALID');
    }

    // Restart: contracts and the report, its summary and its pages, come back from disk.
    const again = new StorageAudits({ dataDir, signer, periodSeconds: P, log: silentLog, now: () => now });
    expect(again.load()).toEqual({ contracts: 1, reports: 1 });
    expect(again.storedFor(E)!.get(honest.fp)).toBe(9300);
    expect(again.reportText(E)!.equals(audits.reportText(E)!)).toBe(true);
    expect((await again.pageText(E, honest.fp))!.equals(honestPage)).toBe(true);
    expect((await readReport(again, auths, E)).results).toEqual(results);

    // Once its last epoch has passed, a contract is refused.
    now = epochStart(E + 6);
    expect(await codeOf(() => again.accept(contract))).toBe('CONTRACT_EXPIRED');
    expect(await codeOf(() => again.accept(Buffer.from('BCSC')))).toBe('CONTRACT_MALFORMED');
  });

  it('a contracted node that cannot be reached fails every pair with the connection code, and the report still verifies', async () => {
    const up = await node(), down = await node();
    const held = new Map<string, Buffer>();
    const a = randomBytes(2000), b1 = randomBytes(3000), b2 = randomBytes(700);
    await up.store.put(shareId(a), a, 3600);
    const inner = connector([up], held);
    const connect: AuditConnector = async (r, t) => {
      if (r.fingerprint === down.fp) throw Object.assign(new Error('unreachable'), { code: 'STORAGE_TIMEOUT' });
      return inner(r, t);
    };
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries([
      entry(up.key.publicKey, a), entry(down.key.publicKey, b1), entry(down.key.publicKey, b2),
    ]) }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [up.relay, down.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    const failed = results.filter((r) => r.node === down.fp);
    expect(failed).toHaveLength(2);
    for (const r of failed) {
      expect(r.ok).toBe(false);
      expect(r.code).toBe('STORAGE_TIMEOUT');
      expect(r.nonce).toMatch(/^[0-9a-f]{64}$/);
      expect(r.blocks.length).toBeGreaterThan(0);
      expect(r.blocks).toEqual(challengeBlocks(Buffer.from(r.nonce, 'hex'), Buffer.from(r.shareId, 'hex'), r.size));
    }
    expect(new Set(failed.map((r) => r.nonce)).size).toBe(2);
    expect(stored).toEqual({ [up.fp]: 2000 });
  });

  it('free contracts naming a node for thousands of shares it never had do not push its paid pair out of the sample (SPEC.md §9.20.2)', async () => {
    const n = await node();
    const a = randomBytes(2000);
    await n.store.put(shareId(a), a, 3600);
    const signer = makeSigner();
    const funded = new Set<string>();
    // One audit per node: the sample is the whole question.
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect: connector([n], new Map()), perNodeAudits: 1, funded: (id) => funded.has(id) });
    const paid = encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, a)] });
    funded.add(blake2b(paid).toString('hex'));
    await audits.accept(paid);
    // Anyone may upload: a full free contract of made-up shares at the same node.
    await audits.accept(contractOf(n.key.publicKey, E, E + 2, 4096));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    expect(results).toHaveLength(1);
    expect(results[0]!.shareId).toBe(shareId(a).toString('hex'));
    expect(results[0]!.ok).toBe(true);
    expect(stored).toEqual({ [n.fp]: 2000 });
  });

  it('a node answering STORAGE_BUSY is asked again: busy twice, then the right answer, and the pair is credited (SPEC.md §9.20.2)', async () => {
    const n = await node();
    const held = new Map<string, Buffer>();
    const a = randomBytes(2000);
    await n.store.put(shareId(a), a, 3600);
    const inner = connector([n], held);
    let busy = 2;
    let challenges = 0;
    const connect: AuditConnector = async (r, t) => {
      const c = await inner(r, t);
      return { close: () => c.close(), send: async (req) => {
        challenges++;
        if (busy-- > 0) throw Object.assign(new Error('too many audits'), { code: 'STORAGE_BUSY' });
        return c.send(req);
      } };
    };
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect, auditBusyRetryMs: [1, 1, 1] });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, a)] }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    expect(challenges).toBe(3);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    expect(results.map((r) => r.ok)).toEqual([true]);
    expect(stored).toEqual({ [n.fp]: 2000 });
  });

  it('closing the authority while a pair waits to ask a busy node again ends the wait at once, not after it (SPEC.md §9.20.2)', async () => {
    const n = await node();
    const a = randomBytes(2000);
    let challenges = 0;
    let first!: () => void;
    const asked = new Promise<void>((resolve) => { first = resolve; });
    const connect: AuditConnector = async () => ({ close() {}, send: async () => {
      challenges++;
      first();
      throw Object.assign(new Error('too many audits'), { code: 'STORAGE_BUSY' });
    } });
    // A wait of an hour before the next try, and a node deadline further still.
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect, timeoutMs: 3_600_000, auditBusyRetryMs: [3_600_000] });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, a)] }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    const round = audits.auditEpoch(E);
    await asked;
    await audits.close();
    await round;
    expect(challenges).toBe(1);
  }, 5_000);

  it('many nodes waiting to be asked again at once raise no MaxListenersExceededWarning: each wait listens to the close (SPEC.md §9.20.2)', async () => {
    const nodes = Array.from({ length: 24 }, () => {
      const key = ed25519Generate();
      const fp = key.publicKey.toString('hex');
      return { key, fp, relay: { identity: key.publicKey, fingerprint: fp, address: '127.0.0.1', storagePort: 1, flags: new Set(['Storage', 'Running', 'Valid']) } as unknown as ConsensusRelay };
    });
    let challenges = 0;
    let all!: () => void;
    const asked = new Promise<void>((resolve) => { all = resolve; });
    const connect: AuditConnector = async () => ({ close() {}, send: async () => {
      if (++challenges === nodes.length) all();
      throw Object.assign(new Error('too many audits'), { code: 'STORAGE_BUSY' });
    } });
    const warned: string[] = [];
    const onWarning = (w: Error) => { warned.push(w.name); };
    process.on('warning', onWarning);
    try {
      const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect, timeoutMs: 3_600_000, auditBusyRetryMs: [3_600_000] });
      const entries = nodes.map((n) => ({ node: n.key.publicKey, shareId: randomBytes(32), shareSize: 2000, auditRoot: randomBytes(32) }));
      await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries(entries) }));
      audits.onConsensus({ validAfter: epochStart(E), relays: nodes.map((n) => n.relay) } as unknown as VerifiedConsensus);
      const round = audits.auditEpoch(E);
      await asked;
      await new Promise((r) => setImmediate(r));
      await audits.close();
      await round;
      await new Promise((r) => setImmediate(r));
      expect(challenges).toBe(nodes.length);
      expect(warned).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 5_000);

  it('a node answering every challenge slowly is cut off at its deadline: the rest of its pairs fail STORAGE_TIMEOUT, the other node is credited (SPEC.md §9.20.2)', async () => {
    const slow = await node(), good = await node();
    const held = new Map<string, Buffer>();
    const a = randomBytes(2000);
    await good.store.put(shareId(a), a, 3600);
    const inner = connector([good], held);
    const timeoutMs = 100;
    let slowChallenges = 0, slowAnswered = 0;
    // Resolved by the answer that leaves no challenge of the slow node out, once asked for.
    let allAnswered: (() => void) | null = null;
    let sentByDeadline = -1;
    const tries = new Map<string, number>();
    // A hostile node: each challenge is answered STORAGE_BUSY shortly before its bound, so every
    // pair costs four challenges, and 64 pairs one after another would hold the round for long.
    // The last try of a pair (its fourth, the same nonce) is answered at once, so the deadline
    // never falls while one is out: a challenge sent after it would always be a further try.
    // Its connection is closed in the same turn as its deadline passes: what was sent by then.
    const connect: AuditConnector = async (r, t) => {
      if (r.fingerprint !== slow.fp) return inner(r, t);
      return { close() { sentByDeadline = slowChallenges; }, send: async (req) => {
        slowChallenges++;
        const nonce = req.nonce.toString('hex');
        const n = (tries.get(nonce) ?? 0) + 1;
        tries.set(nonce, n);
        if (n < 4) await new Promise((resolve) => setTimeout(resolve, timeoutMs * 0.3));
        slowAnswered++;
        if (slowAnswered === slowChallenges) allAnswered?.();
        throw Object.assign(new Error('too many audits'), { code: 'STORAGE_BUSY' });
      } };
    };
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect, timeoutMs, auditBusyRetryMs: [1, 1, 1] });
    const slowShares = Array.from({ length: 64 }, () => randomBytes(64));
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries([
      entry(good.key.publicKey, a), ...slowShares.map((s) => entry(slow.key.publicKey, s)),
    ]) }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [slow.relay, good.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const sentByRound = slowChallenges;
    // Far fewer than the 64 × 4 challenges the pairs would have cost one after another.
    expect(sentByRound).toBeLessThan(64 * 4 / 2);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    const mine = results.filter((r) => r.node === slow.fp);
    expect(mine).toHaveLength(64);
    expect(mine.every((r) => !r.ok && (r.code === 'STORAGE_BUSY' || r.code === 'STORAGE_TIMEOUT'))).toBe(true);
    expect(mine.filter((r) => r.code === 'STORAGE_TIMEOUT').length).toBeGreaterThan(32);
    for (const r of mine) expect(r.blocks).toEqual(challengeBlocks(Buffer.from(r.nonce, 'hex'), Buffer.from(r.shareId, 'hex'), r.size));
    expect(stored).toEqual({ [good.fp]: 2000 });
    // Nothing more is sent to the node once its part of the round has ended. A challenge still
    // out at the deadline is answered STORAGE_BUSY; the pair would be asked again after its 1 ms
    // wait, a timer set in the turn of that answer, or the next pair at once. So: wait until every
    // challenge sent has been answered, then for a 1 ms timer set after that (timers of one
    // duration run in the order they were set), and no challenge may have been sent since.
    expect(sentByDeadline).toBeGreaterThan(0);
    if (slowAnswered < slowChallenges) await new Promise<void>((resolve) => { allAnswered = resolve; });
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(slowChallenges).toBe(sentByDeadline);
  }, 30_000);

  it('nodes answering every challenge with the largest junk answer cannot push the report past what readers take (SPEC.md §9.20.3)', async () => {
    // 8 hostile nodes, 64 contracted shares each, every challenge answered with MAX_AUDIT_ANSWER_BYTES of junk.
    const junk = Buffer.alloc(MAX_AUDIT_ANSWER_BYTES, 0xab);
    const nodes = Array.from({ length: 8 }, () => {
      const key = ed25519Generate();
      const fp = key.publicKey.toString('hex');
      return { key, fp, relay: { identity: key.publicKey, fingerprint: fp, address: '127.0.0.1', storagePort: 1, flags: new Set(['Storage', 'Running', 'Valid']) } as unknown as ConsensusRelay };
    });
    const connect: AuditConnector = async () => ({ close() {}, send: async () => ({ type: 'challenge', answer: junk }) });
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect });
    const entries = nodes.flatMap((n) => Array.from({ length: 64 }, () => ({ node: n.key.publicKey, shareId: randomBytes(32), shareSize: 1 << 20, auditRoot: randomBytes(32) })));
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries(entries) }));
    audits.onConsensus({ validAfter: epochStart(E), relays: nodes.map((n) => n.relay) } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    expect(audits.reportText(E)!.length).toBeLessThanOrEqual(AUDIT_REPORT_MAX_BYTES);
    for (const n of nodes) expect((await audits.pageText(E, n.fp))!.length).toBeLessThanOrEqual(AUDIT_PAGE_MAX_BYTES);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results } = await readReport(audits, auths, E);
    expect(results).toHaveLength(8 * 64);
    expect(results.every((r) => !r.ok && r.code === 'AUDIT_ANSWER_MALFORMED')).toBe(true);
  }, 60_000);

  it('a report of 40 nodes at the 64-share cap with full-size answers: its summary is small, each page is bounded, and payments are computed from the pages (SPEC.md §9.20.3–§9.20.5)', () => {
    // 64 shares of 1 MiB (a 256-block tree), held by each of 40 nodes; every pair passed with a
    // real answer to 4 blocks (about 35 KB in hex), as the authorities' audits give.
    const shares = Array.from({ length: 64 }, () => randomBytes(1 << 20));
    const answered = shares.map((b) => {
      const id = shareId(b), nonce = randomBytes(32), blocks = challengeBlocks(nonce, id, b.length);
      return { shareId: id, size: b.length, root: auditRoot(b), nonce: nonce.toString('hex'), blocks, answer: encodeAuditAnswer({ shareSize: b.length, nonce, blocks: proveBlocks(b, blocks) }).toString('hex') };
    });
    const keys = Array.from({ length: 40 }, () => ed25519Generate().publicKey);
    const contract = { startEpoch: E, endEpoch: E + 2, entries: sortContractEntries(keys.flatMap((k) => answered.map((a) => ({ node: k, shareId: a.shareId, shareSize: a.size, auditRoot: a.root })))) };
    const cid = contractId(contract).toString('hex');
    const results: ReportedAudit[] = keys.flatMap((k) => answered.map((a) => ({
      node: k.toString('hex'), contract: cid, size: a.size, root: a.root.toString('hex'), shareId: a.shareId.toString('hex'), nonce: a.nonce, blocks: a.blocks, ok: true, answer: a.answer,
    })));
    const signer = makeSigner();
    const { body, pages } = buildAuditReport(signer.identity.toString('hex'), E, results);
    const summary = Buffer.from(JSON.stringify(signAuditReport(body, signer)), 'utf8');
    const pageBytes = [...pages.values()].reduce((sum, p) => sum + p.length, 0);
    // Version 1 carried every page's results in the signed body: over what a reader took (64 MiB).
    expect(pageBytes).toBeGreaterThan(64 * 1024 * 1024);
    // Now the signed summary is about 150 bytes per node, and each page far under its cap.
    expect(summary.length).toBeLessThan(40 * 250);
    for (const p of pages.values()) expect(p.length).toBeLessThan(AUDIT_PAGE_MAX_BYTES / 4);

    // The recheck of payments (§9.20.4 item 2): the pages of the nodes an open escrow pays, each
    // verified against the summary, give every node its part.
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const verified = verifyAuditReport(JSON.parse(summary.toString('utf8')), auths, E);
    const payer = ed25519Generate();
    const lookup = (x: string) => (x === cid ? contract : undefined);
    const chainId = Buffer.alloc(32, 0x5c);
    const ledger = new CoinLedger({ chainId, balances: new Map([[payer.publicKey.toString('hex'), 10_000n]]), nonces: new Map() });
    const fund = signTransfer(payer, Buffer.from(cid, 'hex'), 2000n, 1, chainId);
    ledger.apply(fund);
    const book: EscrowBook = new Map();
    applyEscrowOp(book, ledger, { epoch: E - 1, transfers: [fund] }, escrowOpsFor(new Map(), ledger, E - 1, [fund], lookup, null)[0]);
    const want = escrowPayNodes(book, E, lookup);
    expect(want.size).toBe(40);
    const read = new Map([...want].map((fp) => [fp, verifyAuditPage(verified, fp, pages.get(fp)!)]));
    const ops = escrowOpsFor(book, ledger, E, [], lookup, { epoch: E, pages: read });
    // perEpoch 1000 over 40 nodes holding equal bytes: 25 each.
    expect(ops).toEqual([...want].sort().map((node) => ({ kind: 'pay', contract: cid, epoch: E, node, amount: 25n })));
  }, 60_000);

  it('GET /bitcloud/storage/audits?epoch=E&node=FP serves the node\'s page as its digest names it; a bad node or epoch is AUDIT_REPORT_INVALID, a page not held NOT_FOUND (SPEC.md §9.20.3, §6.10)', async () => {
    const signer = makeSigner();
    const { n, audits } = await auditedOneShare(signer);
    const get = async (query: string): Promise<[number, Buffer]> => {
      let sent = Buffer.alloc(0);
      let status = 0;
      const req = { method: 'GET', socket: { remoteAddress: '127.0.0.1' }, resume() {} } as unknown as http.IncomingMessage;
      const res = { writableFinished: true, writeHead(s: number) { status = s; return res; }, end(x: string | Buffer) { sent = Buffer.from(x); } } as unknown as http.ServerResponse;
      await serveStorageAudits(audits, req, res, new URL(`http://a${AUDITS_PATH}?${query}`), {} as never, new AuditPagePlaces([]));
      return [status, sent];
    };
    const [s1, summary] = await get(`epoch=${E}`);
    expect(s1).toBe(200);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const body = verifyAuditReport(JSON.parse(summary.toString('utf8')), auths, E);
    const [s2, page] = await get(`epoch=${E}&node=${n.fp}`);
    expect(s2).toBe(200);
    expect(verifyAuditPage(body, n.fp, page).map((r) => r.ok)).toEqual([true]);
    const code = (x: Buffer) => (JSON.parse(x.toString('utf8')) as { code: string }).code;
    for (const q of [`epoch=${E}&node=${n.fp.toUpperCase()}`, `epoch=${E}&node=ab`, `epoch=x&node=${n.fp}`, `node=${n.fp}`]) {
      const [s, x] = await get(q);
      expect([s, code(x)], q).toEqual([400, 'AUDIT_REPORT_INVALID']);
    }
    for (const q of [`epoch=${E}&node=${'ab'.repeat(32)}`, `epoch=${E + 1}&node=${n.fp}`]) {
      const [s, x] = await get(q);
      expect([s, code(x)], q).toEqual([404, 'NOT_FOUND']);
    }
  });

  it('GET …&node=FP: readers of one page share one Buffer (read once, kept in a cache bounded by bytes, dropped with the report); at most 16 page answers at once, the 17th 503 RATE_LIMITED; a finished or closed answer frees its place (SPEC.md §9.20.3, §6.10)', async () => {
    const { n, audits } = await auditedOneShare(makeSigner());
    const read = vi.spyOn(fs.promises, 'readFile');
    try {
      const [one, two] = await Promise.all([audits.pageText(E, n.fp), audits.pageText(E, n.fp)]);
      expect(one).not.toBeNull();
      expect(two).toBe(one); // the same Buffer, not a copy per request
      expect(await audits.pageText(E, n.fp)).toBe(one);
      const pageReads = () => read.mock.calls.filter(([f]) => String(f).endsWith(`${n.fp}.json`)).length;
      expect(pageReads()).toBe(1);
      // Audited again: the page of the earlier round is not served from the cache.
      await audits.auditEpoch(E);
      const again = await audits.pageText(E, n.fp);
      expect(again).not.toBe(one);
      expect(pageReads()).toBe(2);
    } finally {
      read.mockRestore();
    }
    // Readers that never read: each answer is held until it finished or its connection closed.
    type Res = http.ServerResponse & { status: number; sent: Buffer; fire(ev: string): void };
    const places = new AuditPagePlaces([]);
    const get = async (): Promise<Res> => {
      const listeners = new Map<string, (() => void)[]>();
      const req = { method: 'GET', socket: { remoteAddress: '127.0.0.1' }, resume() {} } as unknown as http.IncomingMessage;
      const res = {
        status: 0, sent: Buffer.alloc(0), writableFinished: false, destroyed: false,
        writeHead(s: number) { res.status = s; return res; },
        end(x: string | Buffer) { res.sent = Buffer.from(x); },
        once(ev: string, f: () => void) { listeners.set(ev, [...(listeners.get(ev) ?? []), f]); return res; },
        fire(ev: string) { for (const f of listeners.get(ev) ?? []) f(); listeners.delete(ev); },
      } as unknown as Res;
      await serveStorageAudits(audits, req, res, new URL(`http://a${AUDITS_PATH}?epoch=${E}&node=${n.fp}`), {} as never, places);
      return res;
    };
    const held: Res[] = [];
    for (let i = 0; i < 16; i++) held.push(await get());
    expect(held.map((r) => r.status)).toEqual(Array(16).fill(200));
    const busy = await get();
    expect([busy.status, (JSON.parse(busy.sent.toString('utf8')) as { code: string }).code]).toEqual([503, 'RATE_LIMITED']);
    held[0].fire('finish');
    expect((await get()).status).toBe(200); // takes the freed place, and keeps it
    expect((await get()).status).toBe(503);
    held[1].fire('close');
    held[1].fire('finish'); // a place is freed once
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(503);
    // The summary is not counted with the pages.
    const req = { method: 'GET', socket: { remoteAddress: '127.0.0.1' }, resume() {} } as unknown as http.IncomingMessage;
    let status = 0;
    const res = { writeHead(s: number) { status = s; return res; }, end() {} } as unknown as http.ServerResponse;
    await serveStorageAudits(audits, req, res, new URL(`http://a${AUDITS_PATH}?epoch=${E}`), {} as never, new AuditPagePlaces([]));
    expect(status).toBe(200);
  });

  it(`GET …&node=FP: one client address holds at most ${PAGE_MAX_PER_ADDRESS} page places (IPv4 address, IPv6 /64), the configured authorities' addresses none; an answer not handed on within its deadline is cut and its place freed (SPEC.md §9.20.3, §6.10)`, async () => {
    const signer = makeSigner();
    const { n, audits } = await auditedOneShare(signer);
    const auths = parseAuthorityList([
      { name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' },
      { name: 'b', identity: makeSigner().identity.toString('hex'), address: '192.0.2.10:7000' },
    ]);
    const pages = new AuditPagePlaces(auths, { answerDeadlineMs: 50 });
    // Readers that read a byte now and then: never finished, never closed, until cut.
    // `cut` resolves when the answer is destroyed.
    type Res = http.ServerResponse & { status: number; code?: string; cut: Promise<void> };
    const get = async (from: string): Promise<Res> => {
      const listeners = new Map<string, (() => void)[]>();
      const req = { method: 'GET', socket: { remoteAddress: from, localAddress: '192.0.2.1' }, resume() {} } as unknown as http.IncomingMessage;
      let cut!: () => void;
      const res = {
        status: 0, writableFinished: false, destroyed: false, cut: new Promise<void>((r) => { cut = r; }),
        writeHead(s: number) { res.status = s; return res; },
        end(x: string | Buffer) { if (res.status !== 200) res.code = (JSON.parse(Buffer.from(x).toString('utf8')) as { code: string }).code; },
        once(ev: string, f: () => void) { listeners.set(ev, [...(listeners.get(ev) ?? []), f]); return res; },
        destroy() { res.destroyed = true; cut(); for (const f of listeners.get('close') ?? []) f(); listeners.delete('close'); },
      } as unknown as Res;
      await serveStorageAudits(audits, req, res, new URL(`http://a${AUDITS_PATH}?epoch=${E}&node=${n.fp}`), {} as never, pages);
      return res;
    };
    const one: Res[] = [];
    for (let i = 0; i < PAGE_MAX_PER_ADDRESS; i++) one.push(await get('203.0.113.7'));
    expect(one.map((r) => r.status)).toEqual(one.map(() => 200));
    const fifth = await get('::ffff:203.0.113.7');
    expect([fifth.status, fifth.code]).toEqual([503, 'RATE_LIMITED']);
    const v6: Res[] = [];
    for (let i = 0; i <= PAGE_MAX_PER_ADDRESS; i++) v6.push(await get(`2001:db8:0:1::${i + 1}`));
    expect(v6.map((r) => r.status)).toEqual([...v6.slice(1).map(() => 200), 503]);
    expect((await get('198.51.100.9')).status).toBe(200);
    // A checking authority rechecks its pages from its configured address: no per-address share.
    const authority: Res[] = [];
    for (let i = 0; i <= PAGE_MAX_PER_ADDRESS; i++) authority.push(await get('192.0.2.10'));
    expect(authority.map((r) => r.status)).toEqual(authority.map(() => 200));
    // The authorities' requests have places of their own: the others hold 4 + 4 + 1 = 9 of their 16,
    // and the bound of all still holds for them.
    const others: Res[] = [];
    for (let i = 0; i < 8; i++) others.push(await get(`198.51.100.${10 + i}`));
    expect(others.map((r) => r.status)).toEqual([...others.slice(1).map(() => 200), 503]);
    // Slow readers at 4 addresses holding every place of the others do not keep an authority from
    // the pages it rechecks a block by (SPEC.md §9.20.3, §9.20.4).
    authority.push(await get('192.0.2.10'));
    expect(authority.at(-1)!.status).toBe(200);
    // Past the deadline every slow answer is cut and its place freed. Deadline timers of one length
    // fire in the order they were set, and the last authority page's was set after the refused
    // fifth request: once that one is cut, a cut of the fifth would have come already.
    await Promise.all([...one, ...authority].map((r) => r.cut));
    expect(fifth.destroyed).toBe(false);
    expect((await get('203.0.113.7')).status).toBe(200);
  }, 5_000);

  it('the pages payments read keep only their passing results, without the answers, read asynchronously (SPEC.md §9.20.4 item 2)', async () => {
    const good = await node(), forger = await node({ forge: true });
    const held = new Map<string, Buffer>();
    const b = randomBytes(9000), f = randomBytes(4096);
    await good.store.put(shareId(b), b, 3600);
    await forger.store.put(shareId(f), f, 3600);
    held.set(shareId(f).toString('hex'), f);
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect: connector([good, forger], held) });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries([entry(good.key.publicKey, b), entry(forger.key.publicKey, f)]) }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [good.relay, forger.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    // The pages as served carry every result and the answers (what anyone rechecks, §9.20.3).
    const page = async (fp: string) => (JSON.parse((await audits.pageText(E, fp))!.toString('utf8')) as { results: ReportedAudit[] }).results;
    const [g, x] = [await page(good.fp), await page(forger.fp)];
    expect(g.map((r) => [r.ok, typeof r.answer])).toEqual([[true, 'string']]);
    expect(x.map((r) => [r.ok, r.code, typeof r.answer])).toEqual([[false, 'AUDIT_PROOF_INVALID', 'string']]);
    // What the proposer's payments hold: the passing results' commitments, no answer (a page may
    // be 16 MiB, and an authority reads one per paid node), and nothing of a failed one. They are
    // read while a reward block is built, without blocking the authority's event loop.
    const syncReads = vi.spyOn(fs, 'readFileSync');
    let own;
    try {
      own = (await audits.ownPages(E, new Set([good.fp, forger.fp])))!;
      expect(syncReads).not.toHaveBeenCalled();
    } finally {
      syncReads.mockRestore();
    }
    const { answer, ...rest } = g[0];
    expect(answer).toBeDefined();
    expect(own.pages.get(good.fp)).toEqual([rest]);
    expect(own.pages.get(forger.fp)).toEqual([]);
  });

  it('a stored report of version 1 is dropped at load with a warning; pages of a report not held are removed (SPEC.md §9.20.3)', () => {
    const dataDir = tmp();
    const adir = path.join(dataDir, 'storage', 'audits');
    fs.mkdirSync(path.join(adir, String(E - 1)), { recursive: true });
    fs.writeFileSync(path.join(adir, String(E - 1), `${'ab'.repeat(32)}.json`), '{}');
    const signer = makeSigner();
    fs.writeFileSync(path.join(adir, `${E}.json`), JSON.stringify(signAuditReport({ version: 1, authority: signer.identity.toString('hex'), epoch: E, results: [], stored: {} } as never, signer)));
    const warnings: unknown[] = [];
    const log = Object.assign(Object.create(silentLog) as typeof silentLog, { warn: (...a: unknown[]) => { warnings.push(a); } });
    const audits = new StorageAudits({ dataDir, signer, periodSeconds: P, log, now: () => epochStart(E) + 1000 });
    expect(audits.load().reports).toBe(0);
    expect(audits.report(E)).toBeNull();
    expect(warnings).toEqual([[expect.objectContaining({ version: 1 }), expect.any(String)]]);
    expect(fs.readdirSync(adir)).toEqual([]);
  });

  it('GET /bitcloud/storage/audits?epoch=E serialises the report once, however often it is asked (SPEC.md §9.20.3, §6.10)', async () => {
    const { audits } = await auditedOneShare(makeSigner());
    const signed = audits.report(E)!;
    const get = async (): Promise<string> => {
      let sent = '';
      const req = { method: 'GET', socket: { remoteAddress: '127.0.0.1' }, resume() {} } as unknown as http.IncomingMessage;
      const res = { writeHead() { return res; }, end(x: string | Buffer) { sent = x.toString(); } } as unknown as http.ServerResponse;
      expect(await serveStorageAudits(audits, req, res, new URL(`http://a${AUDITS_PATH}?epoch=${E}`), {} as never, new AuditPagePlaces([]))).toEqual(['storage_audits', 200]);
      return sent;
    };
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      const [one, two] = [await get(), await get()];
      expect(one).toBe(JSON.stringify(signed));
      expect(two).toBe(one);
      expect(stringify.mock.calls.filter(([v]) => v === signed).length).toBe(2); // one of them ours, just above
    } finally {
      stringify.mockRestore();
    }
  });

  it('an epoch audited again whose pages cannot be written leaves no summary on disk without its pages: the old summary goes first (SPEC.md §9.20.3)', async () => {
    const n = await node();
    const b = randomBytes(1000);
    await n.store.put(shareId(b), b, 3600);
    const dataDir = tmp();
    const adir = path.join(dataDir, 'storage', 'audits');
    const audits = new StorageAudits({ dataDir, signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect: connector([n], new Map()) });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, b)] }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    expect(fs.existsSync(path.join(adir, `${E}.json`))).toBe(true);
    // Every summary on disk has the pages it names (what a restart would serve).
    const consistent = () => fs.readdirSync(adir).filter((f) => /^\d+\.json$/.test(f)).every((f) => {
      const body = JSON.parse((JSON.parse(fs.readFileSync(path.join(adir, f), 'utf8')) as { body: string }).body) as { nodes: Record<string, unknown> };
      return Object.keys(body.nodes).every((fp) => fs.existsSync(path.join(adir, f.slice(0, -5), `${fp}.json`)));
    });
    expect(consistent()).toBe(true);
    // Audited again; the page cannot be written (the disk fails as a crash there would leave it).
    const rename = fs.promises.rename;
    const spy = vi.spyOn(fs.promises, 'rename').mockImplementation((from, to) =>
      String(to).startsWith(path.join(adir, String(E)) + path.sep) ? Promise.reject(new Error('EIO: the disk failed')) : rename(from, to));
    try {
      await audits.auditEpoch(E);
    } finally {
      spy.mockRestore();
    }
    expect(audits.report(E)).toBeNull();
    expect(consistent()).toBe(true);
    expect(fs.existsSync(path.join(adir, `${E}.json`))).toBe(false);
  });

  it('keeps the reports of the last 6 epochs, in memory and on disk', async () => {
    const n = await node();
    const b = randomBytes(1000);
    await n.store.put(shareId(b), b, 3600);
    const dataDir = tmp(), signer = makeSigner();
    const now = () => epochStart(E + 9) + 1000;
    const audits = new StorageAudits({ dataDir, signer, periodSeconds: P, log: silentLog, now, connect: connector([n], new Map()) });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 20, entries: [entry(n.key.publicKey, b)] }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    for (let e = E; e <= E + 9; e++) await audits.auditEpoch(e);
    const last6 = Array.from({ length: 6 }, (_, i) => E + 4 + i);
    expect(audits.reportEpochs).toEqual(last6);
    const again = new StorageAudits({ dataDir, signer, periodSeconds: P, log: silentLog, now });
    expect(again.load().reports).toBe(6);
    expect(again.reportEpochs).toEqual(last6);
    // Each kept epoch's summary and its pages; nothing of the older ones.
    expect(fs.readdirSync(path.join(dataDir, 'storage', 'audits')).sort()).toEqual(last6.flatMap((e) => [String(e), `${e}.json`]).sort());
    for (const e of last6) expect((await again.pageText(e, n.fp))!.length).toBeGreaterThan(0);
  });

  it('a contract outside its epochs is not audited', async () => {
    const n = await node();
    const b = randomBytes(1000);
    await n.store.put(shareId(b), b, 3600);
    const audits = new StorageAudits({ dataDir: tmp(), signer: makeSigner(), periodSeconds: P, log: silentLog, now: () => epochStart(E), connect: connector([n], new Map()) });
    await audits.accept(encodeContract({ startEpoch: E + 2, endEpoch: E + 4, entries: [entry(n.key.publicKey, b)] }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    expect(audits.storedFor(E)!.size).toBe(0);
    await audits.auditEpoch(E + 2);
    expect(audits.storedFor(E + 2)!.get(n.fp)).toBe(1000);
  });

  it('a contract naming a node\'s share with another root, held first, does not take the audit of the payer\'s pair: each commitment is audited (SPEC.md §9.20.2)', async () => {
    const n = await node();
    const b = randomBytes(2000);
    await n.store.put(shareId(b), b, 3600);
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect: connector([n], new Map()) });
    // Someone else's contract names the node's share with a root of other bytes, and is held first.
    const bogus = encodeContract({ startEpoch: E, endEpoch: E + 100, entries: [{ node: n.key.publicKey, shareId: shareId(b), shareSize: b.length, auditRoot: auditRoot(randomBytes(2000)) }] });
    const payers = encodeContract({ startEpoch: E, endEpoch: E + 2, entries: [entry(n.key.publicKey, b)] });
    expect((await audits.accept(bogus)).result).toBe('accepted');
    expect((await audits.accept(payers)).result).toBe('accepted');
    audits.onConsensus({ validAfter: epochStart(E), relays: [n.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    const root = auditRoot(b).toString('hex');
    // The payer's commitment passed (so the escrow pays it), the other failed; the node is credited the share.
    expect(results.filter((r) => r.ok).map((r) => r.root)).toEqual([root]);
    expect(results.filter((r) => !r.ok)).toHaveLength(1);
    expect(stored[n.fp]).toBe(2000);
    const pays = passingBytes({ entries: new Map([[`${n.fp}/${shareId(b).toString('hex')}`, { size: b.length, root }]]) }, results);
    expect(pays.get(n.fp)).toBe(2000n);
  });

  it('a node naming the bytes of one share under several share ids is credited them once: one audit root is one share (SPEC.md §9.20.2)', async () => {
    const cheat = await node();
    // One 4000-byte blob stored once; the node's own contract lists it under three made-up share
    // ids with the blob's size and root, and the node answers every challenge from the blob.
    const blob = randomBytes(4000);
    const other = randomBytes(1000);
    const ids = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const connect: AuditConnector = async () => ({
      close() {},
      async send(req) {
        if (req.type !== 'challenge') throw new Error('only challenges');
        const bytes = req.id.equals(shareId(other)) ? other : blob;
        return { type: 'challenge', answer: encodeAuditAnswer({ shareSize: bytes.length, nonce: req.nonce, blocks: proveBlocks(bytes, req.blocks) }) };
      },
    });
    const signer = makeSigner();
    const audits = new StorageAudits({ dataDir: tmp(), signer, periodSeconds: P, log: silentLog, now: () => epochStart(E) + 1000, connect });
    await audits.accept(encodeContract({ startEpoch: E, endEpoch: E + 2, entries: sortContractEntries([
      ...ids.map((id) => ({ node: cheat.key.publicKey, shareId: id, shareSize: blob.length, auditRoot: auditRoot(blob) })),
      entry(cheat.key.publicKey, other),
    ]) }));
    audits.onConsensus({ validAfter: epochStart(E), relays: [cheat.relay] } as unknown as VerifiedConsensus);
    await audits.auditEpoch(E);
    const auths = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const { results, stored } = await readReport(audits, auths, E);
    // Every pair passed its audit, yet the blob's 4000 bytes count once, beside the other share's 1000.
    expect(results.filter((r) => r.ok)).toHaveLength(4);
    expect(audits.storedFor(E)!.get(cheat.fp)).toBe(5000);
    expect(stored[cheat.fp]).toBe(5000);
  });
});

describe('the consensus stored column and the reward block (SPEC.md §9.20.2, §8.6)', () => {
  it('stored is the low median of the listing votes; absent when all are 0; a block pays storage its fifth', () => {
    const signers = [makeSigner(), makeSigner(), makeSigner()];
    const relays = [makeRelay(1), makeRelay(2)];
    const k = E + 2;
    const vote = (s: ReturnType<typeof makeSigner>, stored: number[], proven: number[]) => ({
      authority: s.identity, knownFlags: 0x7f, provenEpoch: E,
      entries: relays.map((r, i) => ({ descriptor: r.descriptor, flags: FLAG_BITS.Running | FLAG_BITS.Valid, measured: 500, proven: proven[i], stored: stored[i] })),
    });
    const votes = [vote(signers[0], [1000, 0], [0, 50]), vote(signers[1], [3000, 0], [0, 70]), vote(signers[2], [0, 0], [0, 60])];
    const c = computeConsensus(votes, { totalAuthorities: 3, periodStart: epochStart(k), periodSeconds: P, lifetimePeriods: 3 });
    const m = decodeConsensus(c.content);
    const order = relays.map((r) => r.fp).sort();
    expect(m.stored).toEqual(order.map((fp) => (fp === relays[0].fp ? 1000 : 0)));
    // All zero: no column, so a network without storage audits keeps its exact consensus bytes.
    const none = computeConsensus(votes.map((v) => ({ ...v, entries: v.entries.map((e) => ({ ...e, stored: 0 })) })), { totalAuthorities: 3, periodStart: epochStart(k), periodSeconds: P, lifetimePeriods: 3 });
    expect(decodeConsensus(none.content).stored).toEqual([]);

    // The reward input and the block: 1/5 of minted to storage by stored bytes, the rest by proven cells.
    const one = consensusFor(signers[0], k, [vote(signers[0], [1000, 0], [0, 50])]);
    const inp = provenInput(one.info)!;
    expect(inp.stored.get(relays[0].fp)).toBe(1000);
    const b = nextRewardBlock(null, inp.epoch, inp.proven, undefined, inp.stored).block;
    expect(b.minted).toBe(5_000_000_000n);
    expect(b.allocations.get(relays[0].fp)).toBe(1_000_000_000n);
    expect(b.allocations.get(relays[1].fp)).toBe(4_000_000_000n);
  });

  it('allocateWithStorage: exact sums, storage alone takes everything, nothing proven mints nothing', () => {
    const [aa, bb, cc, dd] = ['aa', 'bb', 'cc', 'dd'].map((x) => x.repeat(32));
    const bw = new Map([[aa, 3], [bb, 7]]);
    const st = new Map([[cc, 1], [dd, 2]]);
    const a = allocateWithStorage(1001n, bw, st);
    expect([...a.values()].reduce((s, v) => s + v, 0n)).toBe(1001n);
    expect(a.get(cc)! + a.get(dd)!).toBe(200n);
    expect(allocateWithStorage(1001n, new Map(), st)).toEqual(allocate(1001n, st));
    expect(allocateWithStorage(1001n, bw, new Map())).toEqual(allocate(1001n, bw));
    expect(nextRewardBlock(null, 5, new Map(), undefined, new Map([[cc, 0]])).block.minted).toBe(0n);
    expect(nextRewardBlock(null, 5, new Map(), undefined, st).block.minted).toBe(5_000_000_000n);
  });
});
