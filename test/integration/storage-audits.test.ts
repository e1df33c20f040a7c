// Issue 16 (a), with real processes on 127.0.0.1: three authorities, three relays, four storage
// nodes (`bitcloud-storage run`) and the `bitcloud` CLI. A file is stored 2-of-4 through circuits;
// `bitcloud keep contract` audits it and uploads a storage contract to every authority. Each epoch
// every authority audits the contracted shares over 3-hop circuits that end at the node (the
// node's metrics count the challenges as arrived over a circuit, none directly), publishes a signed report
// (GET /bitcloud/storage/audits?epoch=E) that anyone rechecks, and votes the bytes that passed;
// the consensus carries their low median, and the reward block pays storage for exactly those.
// Then one node's shares are erased: within an epoch its audits fail and the following blocks pay
// it nothing, while the honest nodes keep being paid. Last, a storage node's operator pays for a
// contract from the node's earnings (`keep contract --pay`): the chain opens its escrow, pays the
// holders of passing shares each epoch in the exact amounts the proposer's published report gives,
// and refunds the rest to the payer at the end. Then `put --pay` stores a file and opens a paid
// contract in one command, and the payer's cancel (`keep cancel`) returns the unspent escrow in
// the block that carries it, exactly, with another key's cancel, a second cancel and an
// unfundable funding transfer refused. SPEC.md §9.20, §8.6.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { CONSENSUS_CACHE_FILE, loadConsensusCache } from '../../src/dir/consensus-cache';
import { parseAuthorityList, type AuthorityInfo } from '../../src/dir/authorities';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import { loadEd25519Secret } from '../../src/crypto/keys';
import { signTransfer } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { encodeEscrowCancel, signEscrowCancel } from '../../src/wire/escrow-cancel';
import type { VerifiedConsensus } from '../../src/dir/types';
import { fetchRewardChain } from '../../src/client/rewards';
import { AUDIT_PAGE_MAX_BYTES, AUDIT_REPORT_MAX_BYTES, verifyAuditPage, verifyAuditReport, type ReportedAudit } from '../../src/storage/audit-report';
import { allocate } from '../../src/bandwidth/reward';
import { STORAGE_SHARE_DEN, STORAGE_SHARE_NUM } from '../../src/bandwidth/reward';
import { eventually, freePorts, runCli, startDaemon } from '../helpers/daemon';
import { IDENTITY_KEY_FILE } from '../../src/crypto/keys';
import { decodeContract } from '../../src/wire/storage-contract';
import { epochPayments, passingBytes } from '../../src/bandwidth/escrow';
import type { EscrowOp } from '../../src/wire/reward-block';
import type { RewardBlock } from '../../src/bandwidth/reward-chain';
import { shareFiles } from '../helpers/storage-nodes';
import { metric, scrape } from '../helpers/localnet';
import { makeDirNet, makeRelay, startAuthority, startRelay, storageNetReady, tearDownDirNet, writeClientConfig, type DirNet, type RelaySetup } from '../helpers/dirnet';

const PERIOD = 5;
let dnet: DirNet;
let auths: AuthorityInfo[];
let clientConfig: string;
const relays: RelaySetup[] = [];
const nodes: { name: string; dataDir: string; fingerprint: string; configFile: string; metricsPort: number }[] = [];

const cli = (args: string[], timeoutMs = 180_000) => runCli('bitcloud', [...args, '--config', clientConfig], { timeoutMs });
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function consensus(): Promise<VerifiedConsensus | null> {
  return (await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 })).consensus;
}

async function startStorageNode(i: number): Promise<void> {
  const name = `store${i + 1}`;
  const [orPort, storagePort, metricsPort] = await freePorts(3);
  const dataDir = path.join(dnet.dir, name);
  const configFile = path.join(dnet.dir, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify({
    dataDir, nickname: name, address: '127.0.0.1', orPort, storagePort, metricsPort, quota: '256MiB', bandwidth: 100_000,
    authorities: dnet.authorityList, publishIntervalSeconds: PERIOD, descriptorLifetimeSeconds: 3600, announceIntervalSeconds: 10, identityPow: 'local',
  }, null, 2));
  const daemon = startDaemon('bitcloud-storage', ['run', '--config', configFile]);
  const up = await daemon.waitForMsg('storage node listening', {}, 60_000);
  nodes.push({ name, dataDir, fingerprint: String(up.json!.identity), configFile, metricsPort });
}

beforeAll(async () => {
  dnet = await makeDirNet(3, PERIOD);
  auths = parseAuthorityList(dnet.authorityList);
  for (const a of dnet.authorities) startAuthority(a);
  for (let i = 0; i < 3; i++) relays.push(await makeRelay(dnet, `relay${i + 1}`, { publishIntervalSeconds: PERIOD }));
  for (const r of relays) startRelay(r);
  for (let i = 0; i < 4; i++) await startStorageNode(i);
  clientConfig = writeClientConfig(dnet, 'client', { enforceDistinctSubnets: false }).configFile;
  await eventually(async () => storageNetReady(await consensus(), 4), 150_000, 1000);
  // A storage node treats a circuit as coming from a relay only when its own consensus lists that
  // relay (SPEC.md §9.13.1); until then an unmoderated node refuses the put as direct. Wait until
  // every node's consensus lists the three relays, not only the client's.
  await eventually(async () => {
    for (const n of nodes) {
      const c = (await loadConsensusCache(path.join(n.dataDir, CONSENSUS_CACHE_FILE), auths, Date.now())).consensus;
      if (!c || c.relays.filter((r) => r.nickname.startsWith('relay')).length < 3) return false;
    }
    return true;
  }, 150_000, 1000);
  // The other way round: a relay extends a circuit only to a node its own consensus lists (SPEC.md
  // §7b.3 item 2), and each relay fetches a new consensus up to an interval after the authorities
  // publish it, while the CLI asks them at once. Until every relay's consensus lists the four
  // storage nodes, a circuit to the newest one is destroyed at its middle (OR_IDENTITY) whichever
  // path the client builds. Wait for that too.
  await eventually(async () => {
    for (const r of relays) {
      const c = (await loadConsensusCache(path.join(r.dataDir, CONSENSUS_CACHE_FILE), auths, Date.now())).consensus;
      if (!c || nodes.some((n) => !c.relays.some((x) => x.fingerprint === n.fingerprint))) return false;
    }
    return true;
  }, 150_000, 1000);
}, 240_000);

afterAll(() => tearDownDirNet(dnet), 60_000);

/** The storage part of a block: its allocations to the storage nodes. */
function storagePay(allocations: ReadonlyMap<string, bigint>): Map<string, bigint> {
  const fps = new Set(nodes.map((n) => n.fingerprint));
  return new Map([...allocations].filter(([fp]) => fps.has(fp)));
}

/** A storage node's audit challenges answered so far, by how they arrived (SPEC.md §9.8.4). */
async function challenges(n: (typeof nodes)[number]): Promise<{ circuit: number; direct: number }> {
  const samples = await scrape(n.metricsPort);
  return {
    circuit: metric(samples, 'bitcloud_storage_requests_total', { op: 'challenge', via: 'circuit' }),
    direct: metric(samples, 'bitcloud_storage_requests_total', { op: 'challenge', via: 'direct' }),
  };
}

/** Stores `bytes` random bytes as a 2-of-4 file with `bitcloud put` (extra options appended); returns the CLI's result. */
async function putRandomFile(name: string, bytes: number, extra: string[] = []): Promise<Awaited<ReturnType<typeof cli>>> {
  const file = path.join(dnet.dir, name);
  fs.writeFileSync(file, randomBytes(bytes));
  return cli(['put', file, '-k', '2', '-n', '4', ...extra, '--json']);
}

/** Waits for the first block of the verified chain, in chain order, that `want` takes. */
async function blockThatPaysStorage(want: (b: RewardBlock, storage: Map<string, bigint>) => boolean): Promise<RewardBlock> {
  return eventually(async () => {
    const ch = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 }).catch(() => null);
    return ch?.blocks.map((b) => b.block).find((b) => want(b, storagePay(b.allocations))) ?? null;
  }, 120_000, 1000);
}

/**
 * An authority's signed audit report of `epoch` (SPEC.md §9.20.3): its signed summary, verified, and
 * every node's page (`?epoch=E&node=FP`), verified against it. `stored`: the nodes credited (> 0).
 */
async function auditReport(a: AuthorityInfo, epoch: number): Promise<{ results: ReportedAudit[]; stored: Record<string, number> }> {
  const r = await httpRequest(`${a.url}/bitcloud/storage/audits?epoch=${epoch}`, { maxBytes: AUDIT_REPORT_MAX_BYTES, timeoutMs: 5000 });
  expect(r.status).toBe(200);
  const body = verifyAuditReport(JSON.parse(r.body.toString('utf8')), auths, epoch);
  const results: ReportedAudit[] = [];
  for (const fp of Object.keys(body.nodes)) {
    const p = await httpRequest(`${a.url}/bitcloud/storage/audits?epoch=${epoch}&node=${fp}`, { maxBytes: AUDIT_PAGE_MAX_BYTES, timeoutMs: 5000 });
    expect(p.status).toBe(200);
    results.push(...verifyAuditPage(body, fp, p.body));
  }
  const stored = Object.fromEntries(Object.entries(body.nodes).filter(([, n]) => n.stored > 0).map(([fp, n]) => [fp, n.stored]));
  return { results, stored };
}

describe('authorities audit contracted storage each epoch and pay only for passed audits (SPEC.md §9.20)', () => {
  /** Bytes each node holds under the contract (its data share and its manifest share). */
  let shareSize = 0;
  let contractStart = 0;
  let afterKeeper: { circuit: number; direct: number }[] = [];

  it('a 2-of-4 file under contract: every node is audited, reported, put in the consensus and paid', async () => {
    const put = await putRandomFile('paid.bin', 200_000);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const cap = String(lastJson(put.stdout).capability);

    const c = await cli(['keep', 'contract', cap, '--epochs', '200', '--json']);
    expect(c.code, c.stderr + c.stdout).toBe(0);
    const k = lastJson(c.stdout);
    expect(k.ok).toBe(true);
    // One data chunk and one manifest chunk, four shares each: every node holds one of each.
    expect(k.entries).toBe(8);
    expect(k.authorities.map((u: { ok: boolean; result: string }) => [u.ok, u.result])).toEqual([[true, 'accepted'], [true, 'accepted'], [true, 'accepted']]);
    shareSize = k.bytes / 4;
    contractStart = k.startEpoch;
    // What the keeper's own pass asked (over circuits too); the authorities' audits come on top.
    afterKeeper = await Promise.all(nodes.map((n) => challenges(n)));

    // A block, after the contract began, that pays all four storage nodes.
    const found = await blockThatPaysStorage((b, pay) => b.epoch >= contractStart && pay.size === 4);
    // Equal stored bytes: equal pay, exactly a fifth of the block (or all of it when no relay proved
    // bandwidth that epoch), split by the allocation rule.
    const pay = storagePay(found.allocations);
    const total = [...pay.values()].reduce((s, v) => s + v, 0n);
    const relaysPaid = found.allocations.size > pay.size;
    expect(total).toBe(relaysPaid ? (found.minted * STORAGE_SHARE_NUM) / STORAGE_SHARE_DEN : found.minted);
    expect(pay).toEqual(allocate(total, new Map(nodes.map((n) => [n.fingerprint, shareSize]))));

    // Every authority's signed report of that epoch rechecks. The consensus carries the low median
    // of the authorities' audited bytes (SPEC.md §9.20.2), so a majority of reports credit each node
    // its share; an authority whose audits timed out on a loaded machine may credit less, never more.
    let full = 0;
    for (const a of auths) {
      const body = await auditReport(a, found.epoch);
      for (const n of nodes) expect(body.stored[n.fingerprint] ?? 0).toBeLessThanOrEqual(shareSize);
      if (body.results.filter((x) => x.ok).length === 8 && nodes.every((n) => body.stored[n.fingerprint] === shareSize)) full++;
      else console.error(`authority ${a.url}: audits of epoch ${found.epoch}:`, body.results.filter((x) => !x.ok).map((x) => x.code ?? "failed"));
    }
    expect(full).toBeGreaterThan(auths.length / 2);

    // The operator's view: `bitcloud-storage status` shows the audited bytes and the earnings.
    const st = await runCli('bitcloud-storage', ['status', '--json', '--config', nodes[1].configFile], { timeoutMs: 60_000 });
    expect(st.code, st.stderr + st.stdout).toBe(0);
    const v = lastJson(st.stdout);
    expect(v.fingerprint).toBe(nodes[1].fingerprint);
    expect(v.consensus.listed).toBe(true);
    expect(BigInt(v.rewards.balance.units)).toBeGreaterThan(0n);
    const now = await consensus();
    if (now && now.provenEpoch !== null && now.provenEpoch >= contractStart + 1) expect(v.consensus.storedBytes).toBe(shareSize);
  }, 300_000);

  it('the authorities\' audits reach every node over circuits, never by a direct session (SPEC.md §9.20.2)', async () => {
    expect(afterKeeper).toHaveLength(4);
    // Each authority audits both of a node's contracted shares every epoch: within a few epochs
    // every node has answered at least one authority's full round over circuits, and no challenge
    // ever arrived directly (nothing in this test puts with --direct).
    const now = await eventually(async () => {
      const got = await Promise.all(nodes.map((n) => challenges(n)));
      return got.every((c, i) => c.circuit >= afterKeeper[i].circuit + 2) ? got : null;
    }, 120_000, 1000);
    for (const c of now) expect(c.direct).toBe(0);
    // And each authority counts the circuits it built for them on its own /metrics.
    for (const a of dnet.authorities) expect(metric(await scrape(a.metricsPort), 'bitcloud_client_circuits_built_total')).toBeGreaterThan(0);
  }, 180_000);

  it('a node that erased its shares is caught within an epoch and paid nothing after; the others keep being paid', async () => {
    expect(shareSize).toBeGreaterThan(0);
    const lazy = nodes[0];
    for (const f of await shareFiles(lazy.dataDir)) fs.rmSync(f);
    const erasedIn = Math.floor(Date.now() / (PERIOD * 1000));

    // The first epoch wholly after the erasure: its block pays the three others and not the lazy node.
    const after = await blockThatPaysStorage((b, pay) => b.epoch > erasedIn && pay.size > 0);
    const pay = storagePay(after.allocations);
    expect(pay.has(lazy.fingerprint)).toBe(false);
    expect([...pay.keys()].sort()).toEqual(nodes.slice(1).map((n) => n.fingerprint).sort());

    // The published reports say why: its audit failed at every authority.
    for (const a of auths) {
      const body = await auditReport(a, after.epoch);
      const mine = body.results.filter((x) => x.node === lazy.fingerprint);
      expect(mine.length).toBe(2);
      expect(mine.every((x) => !x.ok)).toBe(true);
      expect(body.stored[lazy.fingerprint]).toBeUndefined();
    }
    // And the consensus carrying that epoch lists 0 stored bytes for it.
    const c = await eventually(async () => { const x = await consensus(); return x && x.provenEpoch !== null && x.provenEpoch > erasedIn ? x : null; }, 60_000, 1000);
    expect(c.relays.find((r) => r.fingerprint === lazy.fingerprint)!.stored ?? 0).toBe(0);
    expect(c.relays.find((r) => r.fingerprint === nodes[1].fingerprint)!.stored).toBe(shareSize);
  }, 300_000);

  it('a paid contract: escrow opened, each epoch\'s payments exact by the proposer\'s report, the rest refunded (SPEC.md §9.20.4)', async () => {
    const put = await putRandomFile('escrowed.bin', 100_000);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const cap = String(lastJson(put.stdout).capability);
    const payer = nodes[1];
    const keyFile = path.join(payer.dataDir, IDENTITY_KEY_FILE);

    // More than the payer holds: refused before anything is sent.
    const tooMuch = await cli(['keep', 'contract', cap, '--epochs', '4', '--pay', '1000000', '--key', keyFile, '--json']);
    expect(tooMuch.code).toBe(1);
    expect(lastJson(tooMuch.stdout).funding).toMatchObject({ ok: false, error: { code: 'TRANSFER_OVERSPEND' } });

    const c = await cli(['keep', 'contract', cap, '--epochs', '4', '--pay', '1', '--key', keyFile, '--json']);
    expect(c.code, c.stderr + c.stdout).toBe(0);
    const k = lastJson(c.stdout);
    expect(k.funding).toMatchObject({ ok: true, units: '100000000' });
    const id = String(k.contract);
    const contract = decodeContract(fs.readFileSync(path.join(dnet.authorities[0].dataDir, 'storage', 'contracts', `${id}.bin`)));
    const entries = new Map(contract.entries.map((x) => [`${x.node.toString('hex')}/${x.shareId.toString('hex')}`, { size: x.shareSize, root: x.auditRoot.toString('hex') }]));
    const totalBytes = contract.entries.reduce((sum, x) => sum + BigInt(x.shareSize), 0n);
    const perEpoch = 100_000_000n / 4n;
    const fps = auths.map((a) => a.fingerprint).sort();

    // Follow the chain until the refund; recheck every payment against the proposer's published
    // report of its epoch as soon as the block appears (reports are kept for 6 epochs).
    const checked = new Set<number>();
    let paid = 0n;
    let payments = 0;
    const refund = await eventually(async () => {
      const ch = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 }).catch(() => null);
      if (!ch) return null;
      for (const vb of ch.blocks) {
        const b = vb.block;
        const ops = (b.escrow ?? []).filter((op: EscrowOp) => op.contract === id);
        if (!ops.length || checked.has(b.height)) continue;
        const pays = ops.filter((op): op is Extract<EscrowOp, { kind: 'pay' }> => op.kind === 'pay');
        if (pays.length) {
          const proposer = auths.find((a) => a.fingerprint === fps[b.height % fps.length])!;
          const report = await auditReport(proposer, b.epoch);
          const want = epochPayments({ perEpoch, totalBytes }, passingBytes({ entries }, report.results));
          expect(pays.map((p) => ({ node: p.node, amount: p.amount }))).toEqual(want);
          for (const p of pays) expect(p.epoch).toBe(b.epoch);
          paid += pays.reduce((sum, p) => sum + p.amount, 0n);
          payments += pays.length;
        }
        checked.add(b.height);
        const rf = ops.find((op) => op.kind === 'refund');
        if (rf) return { block: b, amount: (rf as Extract<EscrowOp, { kind: 'refund' }>).amount, state: ch.state };
      }
      return null;
    }, 180_000, 1000);
    // Some epoch was paid, in whole units by the rule; what was not paid went back to the payer.
    expect(payments).toBeGreaterThan(0);
    expect(paid + refund.amount).toBe(100_000_000n);
    expect(refund.block.epoch).toBeGreaterThanOrEqual(contract.endEpoch);
    expect(refund.state.escrows.get(id)).toMatchObject({ payer: payer.fingerprint, funded: 100_000_000n, paid, refunded: refund.amount });
    expect(refund.state.balances.get(id)).toBe(0n);

    // The operator of a paid node sees the contract and what it paid in `bitcloud-storage status`.
    const perNode = new Map<string, bigint>();
    for (const vb of (await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 })).blocks) {
      for (const op of vb.block.escrow ?? []) if (op.kind === 'pay' && op.contract === id) perNode.set(op.node, (perNode.get(op.node) ?? 0n) + op.amount);
    }
    const earner = nodes.find((n) => perNode.has(n.fingerprint))!;
    const st = await runCli('bitcloud-storage', ['status', '--json', '--config', earner.configFile], { timeoutMs: 60_000 });
    expect(st.code, st.stderr + st.stdout).toBe(0);
    const mine = (lastJson(st.stdout).rewards.contracts as { contract: string; units: string; refunded: boolean }[]).find((x) => x.contract === id);
    expect(mine).toMatchObject({ units: perNode.get(earner.fingerprint)!.toString(), refunded: true });
  }, 400_000);

  it('put --pay opens a paid contract in one command; the payer\'s cancel returns the rest at once, exactly; other keys, a second cancel and an unfundable funding are refused (SPEC.md §9.20.4)', async () => {
    const payer = nodes[2];
    const keyFile = path.join(payer.dataDir, IDENTITY_KEY_FILE);
    const put = await putRandomFile('cancelled.bin', 100_000, ['--pay', '2', '--epochs', '100', '--key', keyFile]);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const out = lastJson(put.stdout);
    expect(out.capability).toMatch(/^bitcloud:/);
    expect(out.contract).toMatchObject({ ok: true, entries: 8, funding: { ok: true, units: '200000000' } });
    const id = String(out.contract.contract);

    // A funding transfer for more than the payer holds, sent straight to an authority (no CLI
    // check in the way): refused when the authority takes it, so no block can carry it.
    const chain0 = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 });
    const held = chain0.state.balances.get(payer.fingerprint) ?? 0n;
    const key = await loadEd25519Secret(keyFile);
    const nonce = (chain0.state.nonces.get(payer.fingerprint) ?? 0) + 1;
    const over = await httpRequest(`${auths[0].url}${PATHS.transfers}`, { method: 'POST', body: encodeTransfer(signTransfer(key, Buffer.alloc(32, 0x77), held + 1n, nonce, chain0.state.chainId!)), maxBytes: 4096, timeoutMs: 5000 });
    expect([over.status, JSON.parse(over.body.toString('utf8')).code]).toEqual([400, 'TRANSFER_OVERSPEND']);

    // Let some epoch of the contract be paid first.
    await eventually(async () => {
      const ch = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 }).catch(() => null);
      return ch && (ch.state.escrows.get(id)?.paid ?? 0n) > 0n ? ch : null;
    }, 120_000, 1000);

    // Another key cannot cancel: the CLI refuses before sending, an authority refuses the forged cancel.
    const otherKey = path.join(nodes[3].dataDir, IDENTITY_KEY_FILE);
    const notMine = await cli(['keep', 'cancel', id, '--key', otherKey, '--json']);
    expect(notMine.code).toBe(1);
    expect(lastJson(notMine.stdout)).toMatchObject({ ok: false, error: { code: 'ESCROW_NOT_PAYER' } });
    const forged = await httpRequest(`${auths[1].url}${PATHS.escrowCancel}`, { method: 'POST', body: encodeEscrowCancel(signEscrowCancel(await loadEd25519Secret(otherKey), id)), maxBytes: 4096, timeoutMs: 5000 });
    expect([forged.status, JSON.parse(forged.body.toString('utf8')).code]).toEqual([400, 'ESCROW_NOT_PAYER']);

    // The payer cancels (the file is deleted): one block carries the cancel and the rest goes back.
    const c = await cli(['keep', 'cancel', id, '--key', keyFile, '--json']);
    expect(c.code, c.stderr + c.stdout).toBe(0);
    const k = lastJson(c.stdout);
    expect(k).toMatchObject({ ok: true, how: 'cancelled', contract: id, payer: payer.fingerprint });
    const ch = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 });
    const e = ch.state.escrows.get(id)!;
    expect(e.funded).toBe(200_000_000n);
    expect(e.paid + e.refunded!).toBe(200_000_000n);
    expect(BigInt(k.refunded.units)).toBe(e.refunded);
    expect(e.cancelledAt).toBe(k.included.epoch);
    const block = ch.blocks.find((b) => b.block.height === k.included.height)!.block;
    expect((block.escrow ?? []).filter((op) => op.contract === id && op.kind === 'cancel').map((op) => (op as { amount: bigint }).amount)).toEqual([e.refunded]);
    expect(ch.state.balances.get(id)).toBe(0n);

    // A second cancel is refused, by the CLI and by an authority; and no later block pays the contract.
    const again = await cli(['keep', 'cancel', id, '--key', keyFile, '--json']);
    expect(again.code).toBe(1);
    expect(lastJson(again.stdout)).toMatchObject({ ok: false, error: { code: 'ESCROW_CLOSED' } });
    const twice = await httpRequest(`${auths[2].url}${PATHS.escrowCancel}`, { method: 'POST', body: encodeEscrowCancel(signEscrowCancel(key, id)), maxBytes: 4096, timeoutMs: 5000 });
    expect([twice.status, JSON.parse(twice.body.toString('utf8')).code]).toEqual([400, 'ESCROW_CLOSED']);
    const later = await eventually(async () => {
      const x = await fetchRewardChain({ authorities: auths, periodSeconds: PERIOD, timeoutMs: 5000 }).catch(() => null);
      return x && x.state.height >= k.included.height + 2 ? x : null;
    }, 120_000, 1000);
    for (const b of later.blocks.filter((vb) => vb.block.height > k.included.height)) {
      expect((b.block.escrow ?? []).filter((op) => op.contract === id)).toEqual([]);
    }
    expect(later.state.escrows.get(id)).toMatchObject({ paid: e.paid, refunded: e.refunded });
  }, 400_000);
});
