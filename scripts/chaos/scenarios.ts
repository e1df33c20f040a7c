// The fault suite's scenarios (`npm run chaos`): each applies a real fault to real daemons of the
// test network and judges what happened against SPEC.md (§7b.5 teardown, §7.2 guards, §6.8-6.9
// consensus schedule, §8.7 reward chain). Each returns one row of the table.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { decodeRewardChainBundle, rewardSignatureVerifies } from '../../src/bandwidth/reward-chain';
import {
  addrOf, alive, authStatus, expected, fetchVia, httpGet, metric, poll, scrape, scrapeRelay, sha256, sleep, tcpPeers,
  type ContentServer, type Sample, type NetNode, type TestNet,
} from './net';

export interface Row {
  id: string;
  name: string;
  done: string;
  expected: string;
  observed: string;
  recoverySeconds: number | null;
  bytesLost: number;
  passed: boolean;
  skipped?: boolean;
}

export interface Ctx { net: TestNet; web: ContentServer; period: number; log: (s: string) => void; repo: string }

type Outcome = Omit<Row, 'id' | 'name' | 'expected'>;

export interface Scenario {
  id: string;
  name: string;
  expected: string;
  needsHosts: boolean;
  /** Needs storage nodes in the test network (started only when such a scenario is chosen). */
  storage?: boolean;
  /** Needs root (mounts); skipped, saying so, otherwise. */
  needsRoot?: boolean;
  /**
   * Runs on a test network of its own, started after the shared one is stopped, with these
   * launcher options (caps, declared bandwidth, weight floor, period); the rest as the shared one.
   */
  ownNet?: { caps?: string; declareMBps?: number; unmeasuredCapKBps?: number; period?: number; probeSeconds?: number; probeKeepPeriods?: number };
  run(ctx: Ctx): Promise<Outcome>;
}

const MiB = 1 << 20;
const CELL_DATA = 498;
const secs = (ms: number): number => Math.round(ms / 100) / 10;

/** A download of `len` bytes that must arrive whole; its bytes count as lost when they do not. */
export async function wholeDownload(ctx: Ctx, len: number, user: string, maxMs = 120_000): Promise<{ ok: boolean; lost: number; why: string }> {
  const r = await fetchVia(ctx.net.socksPort, `http://${ctx.net.webAddress}:${ctx.web.port}/bytes/0/${len}`, user, { maxMs });
  if (r.code === 0 && r.sha256 === sha256(expected(len))) return { ok: true, lost: 0, why: '' };
  // curl exit 0 with wrong bytes is data loss; an error is a refusal, not a loss.
  return { ok: false, lost: r.code === 0 ? len : 0, why: r.timedOut ? `hung (killed after ${maxMs} ms)` : `curl ${r.code}: ${r.stderr.slice(0, 120)}` };
}

/** Retry a whole download (new credentials each time) until one succeeds or `ms` pass. */
async function recovered(ctx: Ctx, len: number, tag: string, ms: number): Promise<{ ok: boolean; lost: number; tries: number; why: string }> {
  const until = Date.now() + ms;
  let lost = 0, tries = 0, why = '';
  while (Date.now() < until) {
    tries++;
    const r = await wholeDownload(ctx, len, `${tag}-${tries}`, Math.max(5_000, until - Date.now()));
    lost += r.lost;
    if (r.ok) return { ok: true, lost, tries, why: '' };
    why = r.why;
    await sleep(1000);
  }
  return { ok: false, lost, tries, why };
}

function relays(ctx: Ctx): NetNode[] { return ctx.net.byRole('relay', 'exit'); }

async function relayMetrics(ctx: Ctx, name: string): Promise<ReturnType<typeof metric> | null> {
  const s = await scrapeRelay(ctx.net.node(name));
  return s.length ? metric(s, 'bitcloud_circuits_destroyed_total') : null;
}

/** Wait until a restarted relay answers on its dir port and is listed Running again. */
async function relayBack(ctx: Ctx, n: NetNode, ms: number): Promise<boolean> {
  return !!await poll(async () => {
    const s = await scrapeRelay(n);
    if (!s.length) return false;
    const st = await authStatus(ctx.net.byRole('authority')[0]);
    return !!st?.consensus;
  }, ms, 1000);
}

// ---------------------------------------------------------------------------------------------

const s1: Scenario = {
  id: '1', name: 'middle relay SIGKILLed mid-download', needsHosts: false,
  expected: 'stream ends with an error (no hang); the next request on the same proxy succeeds; guard and exit drop their circuits through it',
  async run(ctx) {
    const net = ctx.net;
    const before = new Map(await Promise.all(relays(ctx).map(async (r) => [r.name, await scrapeRelay(r)] as const)));
    let received = 0;
    const url = `http://${net.webAddress}:${ctx.web.port}/raw/0/${2048 * MiB}`;
    const transfer = fetchVia(net.socksPort, url, 'chaos-s1', { maxMs: 180_000, onBytes: (n) => { received = n; } });
    if (!await poll(() => received >= 4 * MiB, 90_000, 100)) {
      const t = await transfer;
      return { done: 'download did not start', observed: `curl ${t.code}: ${t.stderr}`, recoverySeconds: null, bytesLost: 0, passed: false };
    }
    const mid = new Map(await Promise.all(relays(ctx).map(async (r) => [r.name, await scrapeRelay(r)] as const)));
    const cells = (n: string): number => metric(mid.get(n) ?? [], 'bitcloud_cells_relayed_total') - metric(before.get(n) ?? [], 'bitcloud_cells_relayed_total');
    const connects = (n: string): number => metric(mid.get(n) ?? [], 'bitcloud_exit_connects_total', { result: 'ok' }) - metric(before.get(n) ?? [], 'bitcloud_exit_connects_total', { result: 'ok' });
    const carriers = relays(ctx).filter((r) => cells(r.name) >= 0.5 * (4 * MiB) / CELL_DATA);
    const exit = carriers.filter((r) => connects(r.name) >= 1);
    const proxyPeers = new Set(tcpPeers(null, net.pid('proxy')));
    const guard = carriers.filter((r) => !exit.includes(r) && proxyPeers.has(`${addrOf(r)}:${r.ports.or}`));
    const middle = carriers.find((r) => !exit.includes(r) && !guard.includes(r));
    if (carriers.length !== 3 || exit.length !== 1 || guard.length !== 1 || !middle) {
      return { done: 'could not tell the circuit\'s relays apart', observed: `carriers ${carriers.map((r) => r.name).join(',')}`, recoverySeconds: null, bytesLost: 0, passed: false };
    }
    const destroyed0 = await Promise.all([guard[0], exit[0]].map((r) => relayMetrics(ctx, r.name)));
    const t0 = Date.now();
    net.kill(middle.name, 'SIGKILL');
    const cut = await transfer;
    const streamOk = cut.code !== 0 && !cut.timedOut && cut.bytes < 2048 * MiB;
    // Both neighbours drop the circuit (a closed link destroys its circuits, §7b.5).
    const dropped = await poll(async () => {
      const now = await Promise.all([guard[0], exit[0]].map((r) => relayMetrics(ctx, r.name)));
      return now.every((v, i) => v !== null && destroyed0[i] !== null && v > destroyed0[i]!) ? Date.now() : null;
    }, 60_000);
    const proxyPid = net.pid('proxy');
    const next = await wholeDownload(ctx, 8 * MiB, 'chaos-s1');
    const recovery = secs(Date.now() - t0);
    // Put the relay back for the scenarios after this one.
    net.restart(middle.name);
    await relayBack(ctx, middle, 60_000);
    const passed = streamOk && next.ok && alive(proxyPid) && dropped !== null;
    return {
      done: `SIGKILL ${middle.name} (middle; guard ${guard[0].name}, exit ${exit[0].name}) after ${Math.round(received / MiB)} MiB`,
      observed: `stream: curl ${cut.code}${cut.timedOut ? ' (HUNG)' : ''} "${cut.stderr.slice(0, 60)}" after ${Math.round(cut.bytes / MiB)} MiB; `
        + `circuits dropped by guard and exit ${dropped ? `${secs(dropped - t0)} s after the kill` : 'NOT within 60 s'}; `
        + `next request (same proxy, pid ${proxyPid}): ${next.ok ? '8 MiB intact' : next.why}`,
      recoverySeconds: recovery, bytesLost: next.lost, passed,
    };
  },
};

// ---------------------------------------------------------------------------------------------

interface GuardRec { fingerprint: string; failures: number; retryAt: number; lastSuccessAt: number | null; confirmed: boolean }

function guardState(ctx: Ctx): GuardRec[] {
  const proxy = ctx.net.node('proxy');
  try {
    const j = JSON.parse(fs.readFileSync(path.join(proxy.dataDir, 'state.json'), 'utf8')) as { guards?: { sampled?: GuardRec[] } };
    return j.guards?.sampled ?? [];
  } catch { return []; }
}

const s2: Scenario = {
  id: '2', name: 'client\'s guard partitioned (link down), then back', needsHosts: true,
  expected: 'requests succeed through the next guard; the partitioned guard stays sampled in its place (failures > 0 and a retryAt after a failed build, or skipped while listed without Running; SPEC.md §7.2); back: it is used again (lastSuccessAt after the fault, failures 0)',
  async run(ctx) {
    const net = ctx.net;
    const warm = await wholeDownload(ctx, 1 * MiB, 'chaos-s2-warm');
    if (!warm.ok) return { done: 'warm-up download failed', observed: warm.why, recoverySeconds: null, bytesLost: warm.lost, passed: false };
    const byFp = new Map(relays(ctx).map((r) => [r.identity!, r]));
    // The guard in use: the first sampled guard the proxy holds a link to (the proxy saves its state
    // file once a minute when it changed).
    let st0: GuardRec[] = [];
    const guard = await poll(() => {
      st0 = guardState(ctx);
      const proxyPeers = new Set(tcpPeers(null, net.pid('proxy')));
      const inUse = st0.find((g) => { const r = byFp.get(g.fingerprint); return g.confirmed && r && proxyPeers.has(`${addrOf(r)}:${r.ports.or}`); });
      return inUse ? byFp.get(inUse.fingerprint)! : null;
    }, 75_000, 1000);
    if (!guard) return { done: 'no guard in use found', observed: JSON.stringify(st0), recoverySeconds: null, bytesLost: 0, passed: false };
    const order0 = st0.map((g) => g.fingerprint);
    const t0 = Date.now();
    net.link(guard.name, false);
    let lost = 0;
    const r = await recovered(ctx, 1 * MiB, 'chaos-s2', 180_000);
    lost += r.lost;
    const recovery = secs(Date.now() - t0);
    // The failure reaches the state file with the next save (at most a minute).
    let st1: GuardRec[] = [];
    await poll(() => { st1 = guardState(ctx); return (st1.find((g) => g.fingerprint === guard.identity)?.failures ?? 0) > 0; }, 65_000, 1000);
    const rec1 = st1.find((g) => g.fingerprint === guard.identity);
    const peers1 = new Set(tcpPeers(null, net.pid('proxy')));
    const newGuard = relays(ctx).find((x) => x !== guard && st1.some((g) => g.fingerprint === x.identity) && peers1.has(`${addrOf(x)}:${x.ports.or}`));
    // Back: link up; the guard is retried when its retryAt passes (base 60 s) and then used again.
    net.link(guard.name, true);
    const back = await poll(async () => {
      const d = await wholeDownload(ctx, 256 * 1024, `chaos-s2-back-${Date.now()}`, 60_000);
      lost += d.lost;
      const g = guardState(ctx).find((x) => x.fingerprint === guard.identity);
      return g && g.failures === 0 && g.retryAt === 0 && (g.lastSuccessAt ?? 0) > t0 ? Date.now() : null;
    }, 260_000, 5000);
    const st2 = guardState(ctx);
    const flagsNow = await consensusFlags(ctx, guard.identity!);
    const kept = rec1 !== undefined && order0.indexOf(guard.identity!) === st1.map((g) => g.fingerprint).indexOf(guard.identity!);
    // §7.2: a guard whose build failed gets failures > 0 and a retryAt; one the consensus lists
    // without Running (the authorities saw it unreachable) is kept but skipped, failures unchanged.
    const passed = r.ok && !!rec1 && kept && back !== null;
    return {
      done: `link down on ${guard.name} (the proxy's guard) until a request succeeded, then up`,
      observed: `during: ${r.ok ? `request ${r.tries} succeeded via ${newGuard?.name ?? 'another guard'}` : `no request succeeded: ${r.why}`}; `
        + `record ${rec1 ? `kept at position ${st1.map((g) => g.fingerprint).indexOf(guard.identity!) + 1} (was ${order0.indexOf(guard.identity!) + 1}), failures ${rec1.failures}${rec1.retryAt ? `, retryAt ${secs(rec1.retryAt - t0)} s after the fault` : ', no retryAt'}` : 'REMOVED'}; `
        + `sampled ${st0.length}→${st1.length}→${st2.length}; back: ${back ? `used again, failures reset ${secs(back - t0)} s after the fault` : `NOT used again within 260 s (consensus flags now: ${flagsNow})`}`,
      recoverySeconds: recovery, bytesLost: lost, passed,
    };
  },
};

// ---------------------------------------------------------------------------------------------

async function statuses(ctx: Ctx): Promise<(Awaited<ReturnType<typeof authStatus>>)[]> {
  return Promise.all(ctx.net.byRole('authority').map((a) => authStatus(a)));
}

/** Wait until every authority answers with the same newest consensus (digest) and reward height. */
async function agreement(ctx: Ctx, ms: number): Promise<{ at: number; validAfter: number; height: number | null } | null> {
  return poll(async () => {
    const s = await statuses(ctx);
    if (s.some((x) => !x?.consensus)) return null;
    const va = s[0]!.consensus!.validAfter;
    if (!s.every((x) => x!.consensus!.validAfter === va && x!.consensus!.digest === s[0]!.consensus!.digest)) return null;
    const h = s[0]!.rewards?.height ?? null;
    if (!s.every((x) => (x!.rewards?.height ?? null) === h)) return null;
    return { at: Date.now(), validAfter: va, height: h };
  }, ms, 1000);
}

/**
 * The reward chains of all authorities, block by block (SPEC.md §8.7): at every height they all
 * hold, the same block hash (no fork); in every block, each authority's signature at most once and
 * every signature valid (no double signature at a height). Signature sets may differ: a block is
 * final with a majority, and an authority may hold more or fewer of the others' signatures.
 */
export async function rewardChainsAgree(ctx: Ctx): Promise<{ ok: boolean; heights: number[]; why: string }> {
  const chains = await Promise.all(ctx.net.byRole('authority').map(async (a) => {
    try {
      const r = await httpGet(addrOf(a), a.ports.http, '/bitcloud/rewards?from=0', 10_000);
      return decodeRewardChainBundle(r.body).blocks;
    } catch { return null; }
  }));
  if (chains.some((c) => c === null)) return { ok: false, heights: [], why: 'an authority did not serve its chain' };
  const heights = chains.map((c) => c!.length);
  const common = Math.min(...heights);
  for (let h = 0; h < common; h++) {
    const hashes = new Set(chains.map((c) => c![h].hash.toString('hex')));
    if (hashes.size !== 1) return { ok: false, heights, why: `fork at height ${h}` };
    for (const c of chains) {
      const b = c![h];
      const signers = b.signatures.map((x) => x.authority.toString('hex'));
      if (new Set(signers).size !== signers.length) return { ok: false, heights, why: `an authority signed height ${h} twice` };
      if (!b.signatures.every((x) => rewardSignatureVerifies(b.body, x))) return { ok: false, heights, why: `a bad signature at height ${h}` };
    }
  }
  return { ok: common > 0, heights, why: common > 0 ? '' : 'empty chains' };
}

const s3: Scenario = {
  id: '3', name: 'authorities partitioned: 1 of 3 for 5 periods, then 2 of 3, then all back', needsHosts: true,
  expected: '1 down: a new consensus every period (at least 4 seen in the 5 periods, sampled once a second: the fifth may come just after the window); 2 down: no new consensus, clients keep the last valid one (consensus age grows) and still work; all back: consensus resumes, all 3 agree, no restart',
  async run(ctx) {
    const net = ctx.net;
    const [a1, a2, a3] = net.byRole('authority');
    const P = ctx.period * 1000;
    const first = await authStatus(a1);
    if (!first?.consensus) return { done: 'no consensus to start from', observed: '', recoverySeconds: null, bytesLost: 0, passed: false };
    // 1 of 3 down for 5 periods.
    net.link(a3.name, false);
    const seen = new Set<number>();
    const until = Date.now() + 5 * P;
    while (Date.now() < until) {
      const s = await authStatus(a1);
      if (s?.consensus) seen.add(s.consensus.validAfter);
      await sleep(1000);
    }
    const newOnes = [...seen].filter((v) => v > first.consensus!.validAfter).length;
    const oneDownOk = newOnes >= 4;
    // 2 of 3 down for 3 periods: the remaining authority cannot reach a majority.
    net.link(a2.name, false);
    await sleep(P); // a consensus being signed when the links went down may still complete
    const frozen = (await authStatus(a1))?.consensus?.validAfter ?? 0;
    const age0 = metric(await scrapeClient(ctx), 'bitcloud_consensus_age_seconds');
    await sleep(2 * P);
    const frozenAfter = (await authStatus(a1))?.consensus?.validAfter ?? 0;
    const age1 = metric(await scrapeClient(ctx), 'bitcloud_consensus_age_seconds');
    let lost = 0;
    const during = await wholeDownload(ctx, 1 * MiB, `chaos-s3-${Date.now()}`);
    lost += during.lost;
    const proxyLog = fs.readFileSync(net.node('proxy').log, 'utf8');
    const said = /no fresh consensus available: using the last valid one until it expires/.test(proxyLog);
    const twoDownOk = frozenAfter === frozen && age1 > age0 && during.ok && said;
    // All back.
    const t0 = Date.now();
    net.link(a2.name, true);
    net.link(a3.name, true);
    const agreed = await poll(async () => {
      const g = await agreement(ctx, 0);
      return g && g.validAfter > frozenAfter ? g : null;
    }, 12 * P, 1000);
    const s = await authStatus(a1);
    // The proxy's last consensus may have expired while 2 of 3 were away: the first request after
    // the agreement can come before its next fetch. Recovery = the first request that succeeds.
    let after = await wholeDownload(ctx, 1 * MiB, `chaos-s3-after-${Date.now()}`);
    lost += after.lost;
    let afterTries = 1;
    while (!after.ok && afterTries < 6) {
      await sleep(P);
      after = await wholeDownload(ctx, 1 * MiB, `chaos-s3-after-${Date.now()}`);
      lost += after.lost; // every try's lost bytes count, once
      afterTries++;
    }
    const passed = oneDownOk && twoDownOk && agreed !== null && (s?.consensus?.signers.length ?? 0) >= 2 && after.ok;
    return {
      done: `link down ${a3.name} 5 periods; + ${a2.name} 3 periods; both up`,
      observed: `1 down: ${newOnes} new consensuses in 5 periods; 2 down: consensus ${frozenAfter === frozen ? 'held' : 'CHANGED'}, client consensus age ${age0}→${age1} s, proxy log ${said ? 'says it keeps the last valid consensus' : 'SAYS NOTHING'}, download ${during.ok ? 'ok' : during.why}; `
        + `back: ${agreed ? `all 3 agree on a new consensus ${secs(agreed.at - t0)} s later (${s?.consensus?.signers.length} signers)` : 'NO agreement within 12 periods'}, `
        + `download after: ${after.ok ? `ok (try ${afterTries})` : `FAILED ${afterTries} times (${after.why})`}`,
      recoverySeconds: agreed ? secs(agreed.at - t0) : null, bytesLost: lost, passed,
    };
  },
};

async function scrapeClient(ctx: Ctx): Promise<Sample[]> {
  const p = ctx.net.node('proxy');
  return scrape('127.0.0.1', p.ports.metrics).catch(() => []);
}

// ---------------------------------------------------------------------------------------------

const s4: Scenario = {
  id: '4', name: 'an authority SIGKILLed during a vote, restarted', needsHosts: false,
  expected: 'no fork: after restart all 3 authorities serve the same consensus and the same reward block at every height, no authority signing a height twice (SPEC.md §8.7)',
  async run(ctx) {
    const net = ctx.net;
    const a2 = net.byRole('authority')[1];
    const P = ctx.period * 1000;
    const start = await agreement(ctx, 6 * P);
    if (!start) return { done: 'authorities did not agree before the fault', observed: '', recoverySeconds: null, bytesLost: 0, passed: false };
    // Votes are exchanged early in each period (§6.9): kill a fifth of the way into one.
    const now = Date.now();
    const next = Math.ceil(now / P) * P;
    await sleep(next - now + Math.floor(P / 5));
    net.kill(a2.name, 'SIGKILL');
    await sleep(P);
    const t0 = Date.now();
    net.restart(a2.name);
    const agreed = await poll(async () => {
      const g = await agreement(ctx, 0);
      return g && g.validAfter > start.validAfter + P ? g : null;
    }, 12 * P, 1000);
    const chains = await rewardChainsAgree(ctx);
    const passed = agreed !== null && chains.ok;
    return {
      done: `SIGKILL ${a2.name} ${Math.floor(P / 5)} ms into a period, restarted one period later`,
      observed: `${agreed ? `all 3 agree on consensus ${new Date(agreed.validAfter).toISOString().slice(11, 19)} (reward height ${agreed.height ?? '-'}) ${secs(agreed.at - t0)} s after restart` : 'NO agreement within 12 periods'}; `
        + `reward chains (${chains.heights.join('/')} blocks): ${chains.ok ? 'same block at every height, each authority signed each block at most once, all signatures valid' : chains.why}`,
      recoverySeconds: agreed ? secs(agreed.at - t0) : null, bytesLost: 0, passed,
    };
  },
};

// ---------------------------------------------------------------------------------------------

const s8: Scenario = {
  id: '8', name: 'relay frozen (SIGSTOP) past the circuit timeout, resumed', needsHosts: false,
  expected: 'requests keep succeeding around it; its peers close their links to it as silent within the liveness timeout (SPEC.md §1.8: 50 to 60 s after the last byte); resumed, it serves circuits again',
  async run(ctx) {
    const net = ctx.net;
    // A middle-only relay (not an exit, so path choice can avoid it): the one most peers hold a
    // link to (with namespaces; links are made as circuits extend, so warm up with a few requests).
    const peersOf = (v: NetNode): string[] => relays(ctx).filter((o) => o !== v && tcpPeers(o, net.pid(o.name)).some((p) => p.startsWith(`${addrOf(v)}:`))).map((o) => o.name);
    for (let i = 0; i < 4 && net.hosts && !net.byRole('relay').some((r) => peersOf(r).length > 0); i++) await wholeDownload(ctx, 256 * 1024, `chaos-s8-warm-${i}-${Date.now()}`);
    const victim = net.hosts ? [...net.byRole('relay')].sort((a, b) => peersOf(b).length - peersOf(a).length)[0] : net.byRole('relay')[2];
    const linkedBefore = net.hosts ? peersOf(victim) : [];
    const others = relays(ctx).filter((r) => r !== victim);
    const silent0 = await Promise.all(others.map(async (o) => metric(await scrapeRelay(o), 'bitcloud_link_errors_total', { code: 'LINK_PEER_SILENT' })));
    const t0 = Date.now();
    net.kill(victim.name, 'SIGSTOP');
    let lost = 0;
    // Longer than the circuit build timeout (§7.3, at most 60 s).
    const during = await recovered(ctx, 1 * MiB, 'chaos-s8', 90_000);
    lost += during.lost;
    const recovery = secs(Date.now() - t0);
    // SPEC.md §1.8: a link on which nothing arrived for the liveness timeout (45 s) is closed.
    const linked = (): string[] => others.filter((o) => tcpPeers(o, net.pid(o.name)).some((p) => p.startsWith(`${addrOf(victim)}:`))).map((o) => o.name);
    const closedAt = net.hosts ? await poll(() => (linked().length === 0 ? Date.now() : null), Math.max(0, 70_000 - (Date.now() - t0)), 1000) : null;
    await sleep(Math.max(0, 70_000 - (Date.now() - t0)));
    const stillLinked = net.hosts ? linked() : [];
    const silent1 = await Promise.all(others.map(async (o) => metric(await scrapeRelay(o), 'bitcloud_link_errors_total', { code: 'LINK_PEER_SILENT' })));
    const silentClosed = silent1.reduce((a, v, i) => a + Math.max(0, v - silent0[i]), 0);
    net.kill(victim.name, 'SIGCONT');
    const back = await poll(async () => (await scrapeRelay(victim)).length > 0, 30_000, 1000);
    const after = await wholeDownload(ctx, 1 * MiB, `chaos-s8-after-${Date.now()}`);
    lost += after.lost;
    const passed = during.ok && after.ok && !!back && stillLinked.length === 0 && (!net.hosts || (linkedBefore.length > 0 && silentClosed > 0));
    return {
      done: `SIGSTOP ${victim.name} for 70 s, then SIGCONT`,
      observed: `during: ${during.ok ? `a request succeeded (try ${during.tries})` : during.why}; `
        + `${net.hosts ? `peers linked to it at the freeze: ${linkedBefore.join(',') || 'NONE'}; peers' links to it ${closedAt ? `all closed ${secs(closedAt - t0)} s after the freeze` : 'NOT all closed'}; still linked after 70 s: ${stillLinked.length ? stillLinked.join(',') : 'none'}` : 'links not checked on loopback'}; `
        + `links closed by peers as silent (LINK_PEER_SILENT, SPEC.md §1.8): ${silentClosed}; `
        + `resumed: ${back ? 'answers again' : 'DOES NOT answer'}, next request ${after.ok ? 'ok' : after.why}`,
      recoverySeconds: recovery, bytesLost: lost, passed,
    };
  },
};

// ---------------------------------------------------------------------------------------------

const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** libfaketime from Debian's packages, installed when missing (root). */
function ensureFaketime(): string | null {
  if (fs.existsSync(FAKETIME_LIB)) return FAKETIME_LIB;
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'faketime'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) spawnSync('bash', ['-c', 'apt-get update -qq && apt-get install -y -qq faketime'], { encoding: 'utf8', timeout: 300_000 });
  return fs.existsSync(FAKETIME_LIB) ? FAKETIME_LIB : null;
}

/** The relay's descriptor-upload warnings written since byte `from` of its log. */
function uploadRefusals(n: NetNode, from: number): string[] {
  const text = fs.readFileSync(n.log, 'utf8').slice(from);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('descriptor upload failed')) continue;
    try { out.push(String((JSON.parse(line) as { reason?: string }).reason)); } catch { /* partial line */ }
  }
  return out;
}

/** The flags the newest consensus gives `fp` ('unlisted' when absent). */
async function consensusFlags(ctx: Ctx, fp: string): Promise<string> {
  const cfg = JSON.parse(fs.readFileSync(ctx.net.nj.clientConfig, 'utf8')) as { authorities: unknown };
  const auths = parseAuthorityList(cfg.authorities);
  const got = await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 }).catch(() => null);
  const r = got?.consensus?.relays.find((x) => x.fingerprint === fp);
  return r ? [...r.flags].sort().join(',') : 'unlisted';
}

/** Whether the newest consensus every authority serves lists `fp` as Running (fetched and verified). */
async function listedRunning(ctx: Ctx, fp: string, since: number): Promise<boolean> {
  const cfg = JSON.parse(fs.readFileSync(ctx.net.nj.clientConfig, 'utf8')) as { authorities: unknown };
  const auths = parseAuthorityList(cfg.authorities);
  const got = await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 }).catch(() => null);
  const c = got?.consensus;
  if (!c || c.validAfter < since) return false;
  return c.relays.some((r) => r.fingerprint === fp && r.flags.has('Running'));
}

const s9: Scenario = {
  id: '9', name: 'a relay\'s clock off by -50 s, +50 s, +60 s, +120 s (libfaketime)', needsHosts: false,
  expected: 'behind (−50 s, within the 60 s skew of SPEC.md §6.2): the descriptor is accepted and the relay listed Running; ahead by less than the authorities\' skew (clockSkewSeconds, 60 s) but more than a consensus lifetime (3 periods, §6.7: 15 s at a 5 s period; +50 s, +60 s): accepted, or refused with a stated code in the relay\'s log (DOC_NOT_YET_VALID, or IDENTITY_POW_STALE when the relay, seeing every consensus as expired, anchored its identity proof to genesis, §6.4.1); beyond the skew (+120 s) the new descriptor is refused with DOC_NOT_YET_VALID; in every case the last accepted descriptor stays in force until it expires',
  async run(ctx) {
    const net = ctx.net;
    const lib = ensureFaketime();
    if (!lib) return { done: 'libfaketime not available', observed: 'apt-get install faketime failed', recoverySeconds: null, bytesLost: 0, passed: false };
    const victim = net.byRole('relay')[1];
    const P = ctx.period * 1000;
    const results: string[] = [];
    let ok = true;
    // Behind: never early for the authorities, and consensuses stay valid for the relay (−50 s is
    // within its own 60 s skew). Ahead by more than 3 periods, the relay sees every consensus as
    // expired (its own clock), whatever the authorities' skew: at a 5 s period that decides ±60 s.
    for (const [offset, accept] of [['-50s', true], ['+50s', 'either'], ['+60s', 'either'], ['+120s', false]] as const) {
      net.kill(victim.name, 'SIGTERM');
      await poll(() => !alive(net.pid(victim.name)), 15_000, 200);
      const from = fs.statSync(victim.log).size;
      const t0 = Date.now();
      net.restart(victim.name, { LD_PRELOAD: lib, FAKETIME: offset, DONT_FAKE_MONOTONIC: '1' });
      // Listed Running in a consensus made after the restart, or refusals logged, within 6 periods.
      const listed = await poll(() => listedRunning(ctx, victim.identity!, t0 + P), 6 * P, 1000);
      const refusals = uploadRefusals(victim, from);
      // Beyond the skew the new descriptor is refused; the authorities keep the last one they
      // accepted (from before, still within its lifetime), so the relay may stay listed.
      const good = accept === 'either' ? (!!listed && refusals.length === 0) || refusals.some((r) => /DOC_NOT_YET_VALID|IDENTITY_POW_STALE/.test(r))
        : accept ? !!listed && refusals.length === 0 : refusals.some((r) => /DOC_NOT_YET_VALID/.test(r));
      ok &&= good;
      results.push(`${offset}: ${listed ? 'listed Running' : 'not listed'}${refusals.length ? ` (refused: ${refusals[0].slice(0, 80)})` : ''}${good ? '' : ' UNEXPECTED'}`);
    }
    net.kill(victim.name, 'SIGTERM');
    await poll(() => !alive(net.pid(victim.name)), 15_000, 200);
    const t1 = Date.now();
    net.restart(victim.name);
    const back = await poll(() => listedRunning(ctx, victim.identity!, t1 + P), 6 * P, 1000);
    return {
      done: `${victim.name} restarted under libfaketime at -50 s, +50 s, +60 s, +120 s, then with the true clock`,
      observed: `${results.join('; ')}; true clock again: ${back ? 'listed Running' : 'NOT listed'}`,
      recoverySeconds: back ? secs(Date.now() - t1) : null, bytesLost: 0, passed: ok && !!back,
    };
  },
};

// ---------------------------------------------------------------------------------------------

/** POST raw receipt records to an authority (SPEC.md §8.4); its JSON answer, or null. */
function postReceipts(a: NetNode, body: Buffer): Promise<{ status: number; json: { accepted?: number; refused?: Array<{ index: number; code: string }>; code?: string } | null }> {
  return new Promise((resolve) => {
    const req = http.request({ host: addrOf(a), port: a.ports.http, path: '/bitcloud/receipts', method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length }, timeout: 10_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => { let json = null; try { json = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { /* not JSON */ } resolve({ status: res.statusCode ?? 0, json }); });
    });
    req.on('error', () => resolve({ status: 0, json: null }));
    req.on('timeout', () => req.destroy());
    req.end(body);
  });
}

const RECEIPT_LEN = 224;

const s7: Scenario = {
  id: '7', name: 'a relay restarted mid-epoch', needsHosts: false,
  expected: 'the receipts it had not delivered are kept at shutdown (receipts-held.bin, SPEC.md §8.4.1), all reloaded at start and settled at every authority; nothing counted twice: the same records sent again by the suite are never accepted a second time (refusals for other reasons are reported)',
  async run(ctx) {
    const net = ctx.net;
    const P = ctx.period * 1000;
    // Traffic through every relay while the restart happens: a long download on several circuits.
    const transfers = [0, 1, 2].map((i) => fetchVia(net.socksPort, `http://${net.webAddress}:${ctx.web.port}/raw/0/${256 * MiB}`, `chaos-s7-${i}-${Date.now()}`, { maxMs: 6 * P + 20_000 }));
    // The relay with the most counted cells (SPEC.md §8.1) a little into the traffic.
    await sleep(Math.max(3000, P));
    const counted = await Promise.all(relays(ctx).map(async (r) => [r, metric(await scrapeRelay(r), 'bitcloud_receipt_cells_total')] as const));
    const victim = counted.sort((a, b) => b[1] - a[1])[0][0];
    // A fifth of the way into an epoch (epochs are consensus periods, §8.1).
    const now = Date.now();
    await sleep(Math.ceil(now / P) * P - now + Math.floor(P / 5));
    const logFrom = fs.statSync(victim.log).size;
    const t0 = Date.now();
    net.kill(victim.name, 'SIGTERM');
    await poll(() => !alive(net.pid(victim.name)), 20_000, 100);
    const heldFile = path.join(victim.dataDir, 'receipts-held.bin');
    const held = fs.existsSync(heldFile) ? fs.readFileSync(heldFile) : Buffer.alloc(0);
    const records = Math.floor(held.length / RECEIPT_LEN);
    net.restart(victim.name);
    const t1 = Date.now();
    // Reloaded: the daemon says how many it took back.
    const reloaded = await poll(() => {
      const text = fs.readFileSync(victim.log, 'utf8').slice(logFrom);
      const m = /"receipts":(\d+)[^\n]*held receipts reloaded for upload|held receipts reloaded for upload[^\n]*"receipts":(\d+)/.exec(text);
      return m ? { n: Number(m[1] ?? m[2]) } : null;
    }, 30_000, 250);
    // Sent by the suite too, at once (inside the records' upload window, §8.4): at each authority
    // a record is accepted at most once, whoever sends it first; later sends get RECEIPT_REPLAYED.
    const held1 = held.subarray(0, records * RECEIPT_LEN);
    const auths = net.byRole('authority').length;
    const again = records > 0 ? await Promise.all(net.byRole('authority').map((a) => postReceipts(a, held1))) : [];
    const codes = new Map<string, number>();
    let ours = 0;
    for (const r of again) {
      ours += r.json?.accepted ?? 0;
      for (const x of r.json?.refused ?? []) codes.set(x.code, (codes.get(x.code) ?? 0) + 1);
      if (!r.json?.refused && r.json?.code) codes.set(r.json.code, (codes.get(r.json.code) ?? 0) + records);
      if (!r.json) codes.set(`HTTP_${r.status}`, (codes.get(`HTTP_${r.status}`) ?? 0) + records);
    }
    // And once more, at once: a record the first send found held (accepted then, or
    // RECEIPT_REPLAYED) must not be accepted again. One the first send found refused for another
    // reason (RECEIPT_UNKNOWN_EPOCH while that authority had not opened the epoch yet) may be
    // accepted now, once: that is its first acceptance, not a second.
    const twice = records > 0 ? await Promise.all(net.byRole('authority').map((a) => postReceipts(a, held1))) : [];
    const heldAfterFirst = (r: (typeof again)[number], i: number): boolean => {
      if (!r.json || (r.json.accepted === undefined && r.json.code !== 'RECEIPT_REPLAYED')) return false;
      const refusal = r.json.refused?.find((x) => x.index === i);
      return !refusal || refusal.code === 'RECEIPT_REPLAYED';
    };
    let acceptedTwice = 0;
    twice.forEach((r, k) => {
      if (r.json?.accepted === undefined) return;
      for (let i = 0; i < records; i++) {
        if (!r.json.refused?.some((x) => x.index === i) && heldAfterFirst(again[k], i)) acceptedTwice++;
      }
    });
    const replayedTwice = twice.reduce((a, r) => a + (r.json?.refused ?? []).filter((x) => x.code === 'RECEIPT_REPLAYED').length, 0);
    // Delivered by the relay: the restarted process has settled (accepted, replayed, refused or
    // expired) at least as many records as it reloaded, at every authority.
    let last: Sample[] = [];
    const up = (result: string): number => metric(last, 'bitcloud_receipts_uploaded_total', { result });
    const settled = await poll(async () => {
      const m = await scrapeRelay(victim);
      if (!m.length) return null;
      last = m;
      return up('accepted') + up('replayed') + up('refused') + up('expired') >= records * auths ? Date.now() : null;
    }, 4 * P + 20_000, 250);
    await Promise.all(transfers);
    // Judged here: the records survive the restart (kept, all reloaded), are settled at every
    // authority, and none is accepted twice. Refusals and expiries for other reasons (a closed upload
    // window, an authority that does not know the relay) are reported, not judged: they are the same
    // without a restart.
    const passed = records > 0 && reloaded?.n === records && settled !== null && acceptedTwice === 0;
    return {
      done: `SIGTERM ${victim.name} (most counted cells) ${Math.floor(P / 5)} ms into an epoch under load from 3 downloads, restarted at once`,
      observed: `kept ${records} undelivered receipt records at shutdown; reloaded ${reloaded ? reloaded.n : 'NOT (no log line)'} ${secs(t1 - t0)} s after the kill; `
        + `${settled ? `settled at every authority ${secs(settled - t0)} s after the kill` : 'NOT settled'} (uploads since restart: accepted ${up('accepted')}, replayed ${up('replayed')}, refused ${up('refused')}, expired ${up('expired')}); `
        + `the same records sent by the suite to ${auths} authorities right after the reload: accepted ${ours}, ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ') || 'no refusals'}; sent once more: accepted ${acceptedTwice}, RECEIPT_REPLAYED ${replayedTwice}`,
      recoverySeconds: settled ? secs(settled - t0) : null, bytesLost: 0, passed,
    };
  },
};

export const SCENARIOS: Scenario[] = [s1, s2, s3, s4, s7, s8, s9];
