// SPEC.md §8.5 / §6.5–§6.7 on an authority: the vote for period k carries the measurement of
// epoch k − 2 (proven cells, and measured values raised by proofs within the declared bandwidth);
// the consensus carries the low median of the votes' proven values; the wire fields decode
// strictly and old consensuses still decode; history and receipts survive a restart.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseAuthorityList } from '../../src/dir/authorities';
import { UncheckedConsensus, verifyConsensus } from '../../src/dir/consensus';
import { decodeConsensus, decodeVote, encodeConsensus, encodeVote } from '../../src/wire/docs';
import { makeBody, makeSignature, sealEnvelope, DocType } from '../../src/wire/envelope';
import { isBitcloudError } from '../../src/errors';
import { computeConsensus } from '../../directory/compute';
import { buildVote, provenEpochFor, verifyVote, type VoteInput } from '../../directory/vote';
import { provenSource, cappedDeclaredSource } from '../../directory/bandwidth';
import { parseAuthorityConfig } from '../../directory/config';
import { HISTORY_FILE, HISTORY_FORGET_EPOCHS, RECEIPTS_DIR } from '../../directory/measurement';
import { OWED_FILE, decodeOwed, encodeOwed } from '../../directory/owed-store';
import { LOCAL_PAIR_RULE, pairAllowance, pairKey } from '../../src/bandwidth/measure';
import { renderStatusPage, statusJson, StatusPageCache, STATUS_PAGE_CACHE_MS } from '../../directory/status-page';
import {
  E, P, epochStart, makeFixture, makeRelay, makeSigner, consensusFor, receipt, record, voteOf, type Fixture,
} from './dirauth-measure-fixture';
import { watchSyncs } from '../helpers/fsync-watch';

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};
const K = E + 2; // the period whose vote measures E
const listOf = (s: ReturnType<typeof makeSigner>) => parseAuthorityList([{ name: 'a', identity: s.identity.toString('hex'), address: '127.0.0.1:1' }]);

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => { vi.restoreAllMocks(); fx.cleanup(); });

/** Receipts of epoch E accepted during E + 1: relay 0 ↔ relay 1, 3000 cells each way in total. */
async function withReceipts(extra: Record<string, unknown> = {}) {
  const made = fx.makeAuthority(extra);
  const m = made.authority.measurement;
  // Declared bandwidth comes from the descriptors the authority holds (bound 6).
  for (const r of fx.relays) made.authority.acceptDescriptor(r.descriptor.raw);
  await m.onConsensus(fx.consensus.info);
  const ans = await m.accept(record(receipt(fx.relays[0], fx.relays[1])));
  expect(ans.status).toBe(200);
  return made;
}

describe('accepted receipts on disk (SPEC.md §8.4)', () => {
  it('a new epoch file is made durable in receipts/ (the folder fsynced) before the upload is answered, once per file', async () => {
    const synced = watchSyncs();
    const made = await withReceipts();
    const dir = path.join(fx.dir, RECEIPTS_DIR);
    expect(synced).toContain(path.join(dir, `${E}.bin`));
    expect(synced).toContain(dir);
    synced.length = 0;
    const again = await made.authority.measurement.accept(record(receipt(fx.relays[0], fx.relays[1], { serial: 2 })));
    expect(again.status).toBe(200);
    expect(synced).toEqual([path.join(dir, `${E}.bin`)]);
  });
});

describe('measurement at vote time (SPEC.md §8.5)', () => {
  it('the vote for period k carries the proven cells of epoch k − 2 and measured values raised by proofs', async () => {
    const { authority } = await withReceipts({ bandwidthBounds: 'local', unmeasuredCapKBps: 10 });
    fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1; // ready to vote at once, before the compute step
    for (const r of fx.relays.slice(0, 2)) authority.store.recordTest(r.descriptor, true, fx.clock.now);
    authority.start();
    try {
      const raw = authority.currentVote!.raw;
      const v = verifyVote(raw, listOf(fx.signer), { periodStart: epochStart(K), periodSeconds: P });
      expect(v.provenEpoch).toBe(E);
      expect(provenEpochFor(epochStart(K), P)).toBe(E);
      // Both ends are credited sent + received: 1000 + 2000 cells.
      const by = new Map(v.entries.map((e) => [e.descriptor.fingerprint, e]));
      expect(fx.relays.map((r) => by.get(r.fp)!.proven)).toEqual([3000, 3000, 0]);
      // 3000 cells × 514 B / 60 s = 25 700 B/s → 25 KB/s: above the cap of 10, below declared 1000;
      // relay 2 (not in the consensus of E) keeps the capped declared value.
      expect(fx.relays.map((r) => by.get(r.fp)!.measured)).toEqual([25, 25, 10]);
      const st = statusJson(authority) as { bandwidth: { lastMeasuredEpoch: number; measured: Record<string, { provenCells: number }> } };
      expect(st.bandwidth.lastMeasuredEpoch).toBe(E);
      expect(st.bandwidth.measured[fx.relays[0].fp].provenCells).toBe(3000);
    } finally {
      await authority.stop();
    }
    const hist = JSON.parse(fs.readFileSync(path.join(fx.dir, HISTORY_FILE), 'utf8'));
    expect(hist).toEqual({ version: 1, relays: { [fx.relays[0].fp]: { epochs: 1, last: E }, [fx.relays[1].fp]: { epochs: 1, last: E } } });
  });

  it('two listed relays cannot switch measurement off with impossible counts (SPEC.md §8.4 count bound, §8.5)', async () => {
    const { authority } = await withReceipts({ bandwidthBounds: 'local' });
    const m = authority.measurement;
    const max = Number.MAX_SAFE_INTEGER;
    for (const serial of [2, 3]) {
      const ans = await m.accept(record(receipt(fx.relays[0], fx.relays[1], { cellsI2R: max, cellsR2I: max, serial })));
      expect(ans.status).toBe(422);
      expect(ans.body).toMatchObject({ code: 'RECEIPT_COUNT_TOO_LARGE' });
      expect((ans.body as { reason: string }).reason).toMatch(/at most \d+ cells each way/);
    }
    fx.clock.now = epochStart(K) + 10;
    const v = m.measureForVote(epochStart(K));
    expect(v.provenEpoch).toBe(E);
    expect([...v.proven.values()]).toEqual([3000, 3000]);
  });

  it('a restart within the period measures the same receipts and does not count history twice', async () => {
    const { authority } = await withReceipts({ bandwidthBounds: 'local' });
    fx.clock.now = epochStart(K) + 10;
    const first = authority.measurement.measureForVote(epochStart(K));
    const restarted = fx.makeAuthority({ bandwidthBounds: 'local' }).authority;
    for (const r of fx.relays) restarted.acceptDescriptor(r.descriptor.raw);
    const again = restarted.measurement;
    expect(again.load()).toEqual({ consensuses: 1, receipts: 1 });
    const second = again.measureForVote(epochStart(K));
    expect(second.provenEpoch).toBe(E);
    expect([...second.proven]).toEqual([...first.proven]);
    const hist = JSON.parse(fs.readFileSync(path.join(fx.dir, HISTORY_FILE), 'utf8'));
    expect(hist.relays[fx.relays[0].fp]).toEqual({ epochs: 1, last: E });
  });

  it('a relay not credited for HISTORY_FORGET_EPOCHS epochs is forgotten from the history', async () => {
    const stale = 'cd'.repeat(32);
    const recent = 'ef'.repeat(32);
    fs.writeFileSync(path.join(fx.dir, HISTORY_FILE), JSON.stringify({ version: 1, relays: {
      [stale]: { epochs: 5, last: E - HISTORY_FORGET_EPOCHS - 1 }, [recent]: { epochs: 3, last: E - HISTORY_FORGET_EPOCHS } } }));
    const { authority } = await withReceipts({ bandwidthBounds: 'local' });
    const restarted = fx.makeAuthority({ bandwidthBounds: 'local' }).authority;
    for (const r of fx.relays) restarted.acceptDescriptor(r.descriptor.raw);
    restarted.measurement.load();
    fx.clock.now = epochStart(K) + 10;
    restarted.measurement.measureForVote(epochStart(K));
    await authority.stop();
    const hist = JSON.parse(fs.readFileSync(path.join(fx.dir, HISTORY_FILE), 'utf8'));
    expect(hist.relays[stale]).toBeUndefined();
    expect(hist.relays[recent]).toEqual({ epochs: 3, last: E - HISTORY_FORGET_EPOCHS });
    expect(hist.relays[fx.relays[0].fp]).toEqual({ epochs: 1, last: E });
  });

  it('without the consensus of k − 2 the vote carries no measurement and the capped declared values', async () => {
    const { authority } = fx.makeAuthority();
    fx.clock.now = epochStart(K) + 10;
    const vm = authority.measurement.measureForVote(epochStart(K));
    expect(vm.provenEpoch).toBe(0);
    expect(vm.proven.size).toBe(0);
    expect(vm.source.measuredKBps('x', 50_000_000)).toBe(1000);
  });

  it('keeps the receipt file of k − 2 through period k, and drops it at the next vote', async () => {
    const { authority } = await withReceipts();
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    fx.clock.now = epochStart(K) + 10;
    authority.measurement.measureForVote(epochStart(K));
    expect(fs.existsSync(file)).toBe(true);
    // The window has closed: the dedupe set of E is gone and later copies are outside the window.
    expect(authority.measurement.verifier.epochs()).not.toContain(E);
    fx.clock.now = epochStart(K + 1) + 10;
    expect(authority.measurement.measureForVote(epochStart(K + 1)).provenEpoch).toBe(0);
    expect(fs.existsSync(file)).toBe(false);
  });

  it('default bounds: one peer vouches for at most κ·share of the credit plus σ; no descriptor, no credit', async () => {
    const { authority } = fx.makeAuthority({ bandwidthRule: 'dispersion' });
    authority.acceptDescriptor(fx.relays[0].descriptor.raw);
    await authority.measurement.onConsensus(fx.consensus.info);
    await authority.measurement.accept(record(receipt(fx.relays[0], fx.relays[1], { cellsI2R: 400_000, cellsR2I: 0 })));
    fx.clock.now = epochStart(K) + 10;
    const vm = authority.measurement.measureForVote(epochStart(K));
    // Bound 3: the partner holds half of the previous weight: X = min(400 000, 1.5 · 0.5 · X + 1000) = 4000.
    expect(vm.proven.get(fx.relays[0].fp)).toBe(4000);
    expect(vm.proven.has(fx.relays[1].fp)).toBe(false);
  });
});

describe('the pair rule on an authority (SPEC.md §8.5.2)', () => {
  // Both relays hold 500 KB/s of the consensus of E (half each): the allowance of each from the
  // other is κ · cells(500 000) · 1 + σ.
  const W = 500_000;
  const local = { ...LOCAL_PAIR_RULE, epochSeconds: P };
  const allowance = pairAllowance(W, W, 2 * W, local);
  const FORGED = 400_000;

  async function forged(extra: Record<string, unknown> = {}) {
    const made = fx.makeAuthority({ bandwidthBounds: 'local', ...extra });
    for (const r of fx.relays) made.authority.acceptDescriptor(r.descriptor.raw);
    await made.authority.measurement.onConsensus(fx.consensus.info);
    const ans = await made.authority.measurement.accept(record(receipt(fx.relays[0], fx.relays[1], { cellsI2R: FORGED, cellsR2I: 0 })));
    expect(ans.status).toBe(200);
    return made;
  }
  /** The authority after a restart: descriptors again, state from disk. */
  function restarted(extra: Record<string, unknown> = {}) {
    const a = fx.makeAuthority({ bandwidthBounds: 'local', ...extra }).authority;
    for (const r of fx.relays) a.acceptDescriptor(r.descriptor.raw);
    a.measurement.load();
    return a;
  }

  it('is the default rule: a pair claiming far more than its allowance is credited the allowance; the excess is owed, on disk', async () => {
    expect(parseAuthorityConfig({ identity: 'ab'.repeat(32), dataDir: '.', listen: { port: 0 }, authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }] }, '/').bandwidthRule).toBe('pair');
    const { authority } = await forged();
    fx.clock.now = epochStart(K) + 10;
    const vm = authority.measurement.measureForVote(epochStart(K));
    expect(allowance).toBeLessThan(FORGED / 2);
    expect(fx.relays.slice(0, 2).map((r) => vm.proven.get(r.fp))).toEqual([Math.floor(allowance), Math.floor(allowance)]);
    // The vote's measured value is the weight of §8.5.2 (the proven cells here), within declared.
    expect(vm.source.measuredKBps(fx.relays[0].fp, 1_000_000_000)).toBe(Math.floor(Math.floor((Math.floor(allowance) * 514) / P) / 1000));
    const st = decodeOwed(fs.readFileSync(path.join(fx.dir, OWED_FILE)));
    expect(st.epoch).toBe(E);
    expect(st.entering.size).toBe(0);
    const owed = FORGED - allowance;
    expect(st.leaving.get(pairKey(fx.relays[0].fp, fx.relays[1].fp))).toEqual([owed, owed]);
    expect((fs.statSync(path.join(fx.dir, OWED_FILE)).mode & 0o777)).toBe(0o600);
    const sj = statusJson(authority) as { bandwidth: { owedPairs: number; measured: Record<string, { owedCells: number; paidCells: number }> } };
    expect(sj.bandwidth.owedPairs).toBe(1);
    expect(sj.bandwidth.measured[fx.relays[0].fp]).toMatchObject({ owedCells: Math.floor(owed), paidCells: 0 });
  });

  it('a restart within the period measures the same epoch from the same owed state (nothing owed twice); the next epoch pays at most the allowance', async () => {
    const { authority } = await forged();
    fx.clock.now = epochStart(K) + 10;
    const first = authority.measurement.measureForVote(epochStart(K));
    const bytes = fs.readFileSync(path.join(fx.dir, OWED_FILE));
    const again = restarted();
    expect(again.measurement.owed?.epoch).toBe(E);
    const second = again.measurement.measureForVote(epochStart(K));
    expect([...second.proven]).toEqual([...first.proven]);
    expect(fs.readFileSync(path.join(fx.dir, OWED_FILE)).equals(bytes)).toBe(true);

    // Epoch E + 1: the same relays listed, no receipt at all. After another restart the pair is
    // paid out of its unused allowance: exactly the allowance, never more, and the rest stays owed.
    const next = consensusFor(fx.signer, E + 1, [voteOf(fx.signer, fx.relays.slice(0, 2))]);
    const third = restarted();
    await third.measurement.onConsensus(next.info);
    fx.clock.now = epochStart(K + 1) + 10;
    const paid = third.measurement.measureForVote(epochStart(K + 1));
    expect(paid.provenEpoch).toBe(E + 1);
    expect(fx.relays.slice(0, 2).map((r) => paid.proven.get(r.fp))).toEqual([Math.floor(allowance), Math.floor(allowance)]);
    const st = decodeOwed(fs.readFileSync(path.join(fx.dir, OWED_FILE)));
    expect(st.epoch).toBe(E + 1);
    const left = FORGED - 2 * allowance;
    expect(st.leaving.get(pairKey(fx.relays[0].fp, fx.relays[1].fp))).toEqual([left, left]);
    // Over the two epochs the pair credited each end 2 allowances: what claiming the allowance each
    // epoch would have given, not the 400 000 claimed.
  });

  it('a corrupt owed file is set aside with IO_STATE_UNREADABLE logged; the authority measures with nothing owed', async () => {
    const { authority } = await forged();
    fx.clock.now = epochStart(K) + 10;
    authority.measurement.measureForVote(epochStart(K));
    const file = path.join(fx.dir, OWED_FILE);
    const raw = fs.readFileSync(file);
    raw[raw.length - 40] ^= 1;
    fs.writeFileSync(file, raw);
    expect(code(() => decodeOwed(raw))).toBe('IO_STATE_UNREADABLE');
    expect(code(() => decodeOwed(Buffer.from('nonsense')))).toBe('IO_STATE_UNREADABLE');
    const again = restarted();
    expect(again.measurement.owed).toBeNull();
    expect(fs.existsSync(`${file}.rejected`)).toBe(true);
    const vm = again.measurement.measureForVote(epochStart(K));
    expect(vm.proven.get(fx.relays[0].fp)).toBe(Math.floor(allowance));
  });

  it('the owed file carries banked allowance (negative values) exactly, and refuses values that are not finite', () => {
    const lo = 'aa'.repeat(32), hi = 'bb'.repeat(32);
    const snap = { epoch: 7, entering: new Map([[`${lo}:${hi}`, [-1234.5, 99] as [number, number]]]), leaving: new Map([[`${lo}:${hi}`, [-0.25, -3e9] as [number, number]]]) };
    expect(decodeOwed(encodeOwed(snap))).toEqual(snap);
    const bad = { ...snap, leaving: new Map([[`${lo}:${hi}`, [Number.NaN, 0] as [number, number]]]) };
    expect(code(() => decodeOwed(encodeOwed(bad)))).toBe('IO_STATE_UNREADABLE');
  });

  it('bandwidthRule "dispersion" keeps the §8.5.1 rule (local bounds: the whole claim within declared) and writes no owed state', async () => {
    const { authority } = await forged({ bandwidthRule: 'dispersion' });
    fx.clock.now = epochStart(K) + 10;
    const vm = authority.measurement.measureForVote(epochStart(K));
    // Bound 6: 2 × declared 1 MB/s over 60 s.
    expect(vm.proven.get(fx.relays[0].fp)).toBe(Math.min(FORGED, Math.floor((2 * 1_000_000 * P) / 514)));
    expect(fs.existsSync(path.join(fx.dir, OWED_FILE))).toBe(false);
  });
});

describe('the status page (SPEC.md §6.10)', () => {
  it('links no /metrics, which the authority\'s HTTP interface answers 404 (metrics are on the metrics port only)', () => {
    const { authority } = fx.makeAuthority();
    const html = renderStatusPage(authority);
    expect(html).toContain('href="/bitcloud/status"');
    expect(html).not.toContain('href="/metrics"');
  });

  it('is built at most once a second (monotonic clock), and again at once when a new consensus is published', () => {
    const { authority } = fx.makeAuthority();
    let builds = 0, mono = 5_000;
    let published: object | null = null;
    const a = new Proxy(authority, { get: (t, k) => (k === 'published' ? published : Reflect.get(t, k, t) as unknown) });
    const cache = new StatusPageCache((x) => { builds++; return renderStatusPage(x); }, () => mono);
    const first = cache.page(a);
    expect(cache.page(a)).toBe(first);
    mono += STATUS_PAGE_CACHE_MS - 1;
    cache.page(a);
    expect(builds).toBe(1);
    mono += 1;
    cache.page(a);
    expect(builds).toBe(2);
    published = { ...authority.published }; // a new consensus, within the second
    cache.page(a);
    expect(builds).toBe(3);
    cache.page(a);
    expect(builds).toBe(3);
  });
});

describe('measured value rule (SPEC.md §6.6)', () => {
  it('proofs raise a relay above the unmeasured cap, never above its declared bandwidth; an idle relay keeps the capped declared value', () => {
    const s = provenSource(new Map([['a', 5_000_000], ['b', 300_000]]), 1000);
    expect(s.measuredKBps('a', 2_000_000)).toBe(2000); // declared bounds it
    expect(s.measuredKBps('a', 9_000_000)).toBe(5000); // proofs above the cap
    expect(s.measuredKBps('b', 9_000_000)).toBe(1000); // proofs below the cap: the cap
    expect(s.measuredKBps('c', 9_000_000)).toBe(cappedDeclaredSource(1000).measuredKBps('c', 9_000_000));
    expect(s.measuredKBps('c', 500)).toBe(1);
  });
});

describe('consensus proven column (SPEC.md §6.7.1, §8.6)', () => {
  const signers = [makeSigner(), makeSigner(), makeSigner()];
  const rs = [makeRelay(11), makeRelay(12)];
  const PS = epochStart(K);
  const v = (i: number, proven: number[] | null, provenEpoch = E): VoteInput => {
    const x = voteOf(signers[i], rs);
    if (proven) { x.provenEpoch = provenEpoch; x.entries.forEach((e, j) => { e.proven = proven[j]; }); }
    return x;
  };
  const compute = (votes: VoteInput[]) => decodeConsensus(computeConsensus(votes, { totalAuthorities: 3, periodStart: PS, periodSeconds: P, lifetimePeriods: 3 }).content);
  const order = [...rs].sort((a, b) => a.fp.localeCompare(b.fp)).map((r) => rs.indexOf(r));

  it('proven_epoch = k − 2 and each relay\'s proven is the low median of its listing votes', () => {
    const c = compute([v(0, [10, 7]), v(1, [30, 7]), v(2, [20, 9])]);
    expect(c.provenEpoch).toBe(E);
    expect(order.map((i) => c.proven![order.indexOf(i)])).toEqual(order.map((i) => [20, 7][i]));
  });

  it('a vote without a measurement, or for another epoch, counts 0', () => {
    const c = compute([v(0, null), v(1, [30, 7]), v(2, [20, 9], E - 1)]);
    expect(c.provenEpoch).toBe(E);
    expect(c.proven).toEqual([0, 0]);
    const d = compute([v(0, null), v(1, [30, 8]), v(2, [20, 9])]);
    expect(order.map((i) => d.proven![order.indexOf(i)])).toEqual(order.map((i) => [20, 8][i]));
  });

  it('no vote measured: proven_epoch 0, no column; verified as provenEpoch null and proven 0', () => {
    const c = compute([v(0, null), v(1, null), v(2, null)]);
    expect(c.provenEpoch).toBe(0);
    expect(c.proven).toEqual([]);
    const n1 = consensusFor(fx.signer, E, [voteOf(fx.signer, fx.relays)]);
    expect(n1.info.provenEpoch).toBeNull();
    expect(n1.info.relays.map((r) => r.proven)).toEqual([0, 0, 0]);
  });

  it('round-trips canonically and verifies with provenEpoch and per-relay proven', () => {
    const x = computeConsensus([{ ...voteOf(fx.signer, fx.relays), provenEpoch: E, entries: voteOf(fx.signer, fx.relays).entries.map((e, i) => ({ ...e, proven: 100 * (i + 1) })) }],
      { totalAuthorities: 1, periodStart: PS, periodSeconds: P, lifetimePeriods: 3 });
    expect(encodeConsensus(decodeConsensus(x.content)).equals(x.content)).toBe(true);
    const raw = sealEnvelope(x.body, [makeSignature(x.body, fx.signer.identity, fx.signer.signingKey)], [fx.signer.certificate]);
    const info = verifyConsensus(raw, listOf(fx.signer), PS + 1000);
    expect(info.provenEpoch).toBe(E);
    const byFp = new Map(fx.relays.map((r, i) => [r.fp, 100 * (i + 1)]));
    expect(info.relays.map((r) => r.proven)).toEqual(info.relays.map((r) => byFp.get(r.fingerprint)));
  });
});

describe('proven fields decode strictly (SPEC.md §6.5, §6.7.2)', () => {
  const PS = epochStart(K);
  const varint = (n: bigint): number[] => { const o: number[] = []; do { let b = Number(n & 0x7fn); n >>= 7n; if (n) b |= 0x80; o.push(b); } while (n); return o; };
  /** Field 25 (proven), packed, appended: protobuf concatenates it onto the column. */
  const field25 = (vals: bigint[]) => { const body = vals.flatMap(varint); return Buffer.from([0xca, 0x01, ...varint(BigInt(body.length)), ...body]); };
  const base = (provenEpoch: number) => {
    const vote = voteOf(fx.signer, fx.relays.slice(0, 2));
    return computeConsensus([{ ...vote, provenEpoch, entries: vote.entries.map((e) => ({ ...e, proven: provenEpoch ? 5 : 0 })) }],
      { totalAuthorities: 1, periodStart: PS, periodSeconds: P, lifetimePeriods: 3 }).content;
  };

  it('refuses a proven column of the wrong length, a column without a proven epoch, and values above 2^53 − 1', () => {
    expect(code(() => decodeConsensus(Buffer.concat([base(E), field25([1n])])))).toBe('DOC_MALFORMED');
    expect(code(() => decodeConsensus(Buffer.concat([base(0), field25([1n, 2n])])))).toBe('DOC_MALFORMED');
    const noCol = decodeConsensus(base(E));
    const bad = encodeConsensus({ ...noCol, proven: [] , provenEpoch: 0 });
    expect(code(() => decodeConsensus(Buffer.concat([bad, Buffer.from([0xc0, 0x01, ...varint(BigInt(E))]), field25([2n ** 60n, 1n])])))).toBe('DOC_MALFORMED');
    expect(code(() => encodeConsensus({ ...noCol, proven: [1] }))).toBe('DOC_MALFORMED');
  });

  it('refuses a consensus whose proven_epoch is not valid_after / P − 2', () => {
    const m = decodeConsensus(base(E));
    const content = encodeConsensus({ ...m, provenEpoch: E - 1 });
    const body = makeBody(DocType.CONSENSUS, PS, PS + 3 * P * 1000, content);
    const raw = sealEnvelope(body, [makeSignature(body, fx.signer.identity, fx.signer.signingKey)], [fx.signer.certificate]);
    expect(code(() => UncheckedConsensus.parse(raw))).toBe('DOC_MALFORMED');
  });

  it('votes: proven values without a proven epoch are malformed; another epoch than k − 2 is VOTE_MALFORMED', () => {
    const d = fx.relays[0].descriptor;
    const content = encodeVote({ authority: fx.signer.identity, periodSeconds: P, knownFlags: 0x7f, entries: [{ descriptor: d.raw, flags: 3, measured: 1, proven: 5 }] });
    expect(code(() => decodeVote(content))).toBe('DOC_MALFORMED');
    const entries = [{ descriptorRaw: d.raw, identity: d.identity, flags: 3, measured: 1, proven: 5 }];
    const list = listOf(fx.signer);
    const ok = verifyVote(buildVote(fx.signer, PS, P, 0x7f, entries, E), list, { periodStart: PS, periodSeconds: P });
    expect([ok.provenEpoch, ok.entries[0].proven]).toEqual([E, 5]);
    expect(code(() => verifyVote(buildVote(fx.signer, PS, P, 0x7f, entries, E - 1), list, { periodStart: PS, periodSeconds: P }))).toBe('VOTE_MALFORMED');
    const none = verifyVote(buildVote(fx.signer, PS, P, 0x7f, entries), list, { periodStart: PS, periodSeconds: P });
    expect([none.provenEpoch, none.entries[0].proven]).toEqual([0, 0]);
  });
});

describe('config bandwidthBounds', () => {
  const FP = 'ab'.repeat(32);
  const cfg = (extra: Record<string, unknown>) => parseAuthorityConfig({ identity: FP, dataDir: 'd', listen: { port: 1 }, authorities: [{ name: 'a', identity: FP, address: '127.0.0.1:1' }], ...extra }, '/');
  it('defaults to "default", accepts "local", names the key otherwise', () => {
    expect(cfg({}).bandwidthBounds).toBe('default');
    expect(cfg({ bandwidthBounds: 'local' }).bandwidthBounds).toBe('local');
    expect(cfg({}).receiptRateLimit).toEqual({ uploadsPerMinute: 600, burst: 120 });
    expect(() => cfg({ bandwidthBounds: 'loose' })).toThrow(/bandwidthBounds/);
  });
});
