// Scenario 10 of the fault suite: do the consensus weights that come from bandwidth proofs follow
// the relays' real capacities? Several clients (the launcher's proxy and extra `bitcloud proxy`
// processes, each with its own guards) load the network for a bounded time and a bounded number of
// bytes; the consensus's `proven` cells (SPEC.md §8.5, §8.6) over the loaded epochs are then set
// against each relay's tc cap. Needs --hosts (the caps are tc tbf on each relay's link).
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import type { VerifiedConsensus } from '../../src/dir/types';
import { freePort } from '../../test/helpers/daemon';
import { addrOf, fetchVia, httpGet, metric, poll, runCli, scrapeRelay, sleep, type NetNode } from './net';
import type { Ctx, Scenario } from './scenarios';

const MiB = 1 << 20;

async function consensusNow(ctx: Ctx): Promise<VerifiedConsensus | null> {
  const cfg = JSON.parse(fs.readFileSync(ctx.net.nj.clientConfig, 'utf8')) as { authorities: unknown };
  const auths = parseAuthorityList(cfg.authorities);
  const got = await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 }).catch(() => null);
  return got?.consensus ?? null;
}

/** Ranks (1 = largest), ties sharing their mean rank. */
function ranks(xs: number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

function spearman(a: number[], b: number[]): number {
  const ra = ranks(a), rb = ranks(b);
  const mean = (v: number[]) => v.reduce((x, y) => x + y, 0) / v.length;
  const ma = mean(ra), mb = mean(rb);
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < a.length; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) ** 2; db += (rb[i] - mb) ** 2; }
  return da && db ? num / Math.sqrt(da * db) : 0;
}

/** Per relay: counted cells (both directions), unpaid segments by reason, receipt uploads by result. */
async function receiptFigures(n: NetNode): Promise<{ counted: number; unpaid: Record<string, number>; uploads: Record<string, number> }> {
  const s = await scrapeRelay(n);
  const unpaid: Record<string, number> = {}, uploads: Record<string, number> = {};
  for (const x of s) {
    if (x.name === 'bitcloud_receipt_disagreements_total' && x.value > 0) unpaid[x.labels.reason] = (unpaid[x.labels.reason] ?? 0) + x.value;
    if (x.name === 'bitcloud_receipts_uploaded_total' && x.value > 0) uploads[x.labels.result] = (uploads[x.labels.result] ?? 0) + x.value;
  }
  return { counted: metric(s, 'bitcloud_receipt_cells_total'), unpaid, uploads };
}

/**
 * The caps of scenario 10's own network, MB/s, cycled over the 6 relays (0.25, 0.5, 1, 0.25, 0.5, 1).
 * The weights come from the authorities' capacity probes (SPEC.md §8.12), which fill one relay's
 * link at a time with echo cells: no relay has to be filled by client circuits (which cannot fill a
 * relay whose cap is above a third of all caps, and which ran at the relays' CPU share, not their
 * caps, on this 2-core machine: docs/chaos.md). The caps must still be ones a probe can fill while
 * the client load and other work share the cores: a probe at 1 MB/s is 2 000 cells a second of
 * relay crypto each way, well within one core's share; 2 MB/s and above were not tried here, and
 * 50 MB/s (the shared network's top cap) would need the measurer and the relay to do 100 000 cells a
 * second, which this machine cannot, so it could not tell 20 from 50.
 */
export const S10_CAPS = '0.25,0.5,1';
/** Every relay declares this (MB/s, above every cap), so only measurement can order the weights. */
const S10_DECLARE = 10;
/** The authorities' weight for a relay with no proof or probe (KB/s): far below every cap. */
const S10_FLOOR = 10;
const S10_PERIOD = 30;
/** Seconds per probe: with 6 relays each authority probes every relay once per 6 × 3.5 s = 21 s < one period. */
const S10_PROBE_SECONDS = 3;
/**
 * A relay's figure is its best probe of this many periods (SPEC.md §8.12 keepPeriods): 6 × 30 s =
 * 180 s, about 8 probes of each relay by each authority, all inside the 240 s of load. Probes of a
 * loaded relay on this shared 2-core machine read as low as a third of its cap (bound by CPU, not
 * by the link: docs/chaos.md), so the best of 4 (the default 3 periods) sometimes ranked a 1 MB/s
 * exit beside the 0.5 MB/s relays.
 */
const S10_PROBE_KEEP = 6;
const S10_LOADED = 8;
const S10_JUDGED = 4;

/** Per relay: the median over the authorities of their probe figure (bytes/s), from /bitcloud/status. */
async function probeFigures(ctx: Ctx, relays: NetNode[]): Promise<number[]> {
  const auths = ctx.net.byRole('authority');
  const per = await Promise.all(auths.map(async (a) => {
    try {
      const r = await httpGet(addrOf(a), a.ports.http, '/bitcloud/status', 5000);
      const j = JSON.parse(r.body.toString('utf8')) as { bandwidth?: { probes?: Record<string, { bytesPerSecond: number }> | null } };
      return j.bandwidth?.probes ?? {};
    } catch { return {}; }
  }));
  return relays.map((r) => {
    const v = per.map((p) => (r.identity ? p[r.identity]?.bytesPerSecond : undefined)).filter((x): x is number => typeof x === 'number').sort((a, b) => a - b);
    return v.length ? v[Math.floor((v.length - 1) / 2)] : 0;
  });
}

const s10: Scenario = {
  id: '10', name: 'weights follow capacity', needsHosts: true,
  ownNet: { caps: S10_CAPS, declareMBps: S10_DECLARE, unmeasuredCapKBps: S10_FLOOR, period: S10_PERIOD, probeSeconds: S10_PROBE_SECONDS, probeKeepPeriods: S10_PROBE_KEEP },
  expected: `on a network of its own (caps ${S10_CAPS} MB/s cycled over 6 relays, every relay declaring ${S10_DECLARE} MB/s, weight floor ${S10_FLOOR} KB/s, period ${S10_PERIOD} s, the authorities' capacity probes of ${S10_PROBE_SECONDS} s, a relay's figure the best of its probes of ${S10_PROBE_KEEP} periods, SPEC.md §8.12) under client load, the weights of the consensus that measured the last loaded epoch (probe figures combined with the receipts, §8.12) rank the relays in the order of their tc caps (equal caps in either order); reported: each relay's measured (weight) share and probe figure against its cap share, Spearman's rank correlation and the median relative error, and beside them the proven cells of the last ${S10_JUDGED} of ${S10_LOADED} loaded epochs (§8.5, §8.6: coins, from client traffic only)`,
  async run(ctx) {
    const n = ctx.net;
    const P = ctx.period * 1000;
    const relays = n.byRole('relay', 'exit');
    // Extra clients, each with its own data folder (so its own sampled guards, SPEC.md §7.2).
    const base = JSON.parse(fs.readFileSync(n.nj.clientConfig, 'utf8')) as Record<string, unknown>;
    const proxies: Array<{ socksPort: number; child: ChildProcess | null; done: Promise<unknown> }> = [];
    const EXTRA = 3, PARALLEL = 3, PER_DOWNLOAD = 64 * MiB, BUDGET = 4096 * MiB;
    for (let i = 0; i < EXTRA; i++) {
      const socksPort = await freePort();
      const file = path.join(n.dir, `chaos-s10-client${i}.json`);
      fs.writeFileSync(file, JSON.stringify({ ...base, dataDir: path.join(n.dir, `chaos-s10-client${i}`), socksPort, metricsPort: await freePort() }, null, 2));
      const p: { socksPort: number; child: ChildProcess | null; done: Promise<unknown> } = { socksPort, child: null, done: Promise.resolve() };
      p.done = runCli(ctx.repo, ['proxy', '--config', file], { maxMs: 30 * 60_000, onStart: (c) => { p.child = c; } });
      proxies.push(p);
    }
    const stopProxies = async (): Promise<void> => {
      for (const p of proxies) { try { process.kill(p.child!.pid!, 'SIGTERM'); } catch { /* gone */ } }
      await Promise.race([Promise.all(proxies.map((p) => p.done)), sleep(20_000)]);
      for (const p of proxies) { try { process.kill(p.child!.pid!, 'SIGKILL'); } catch { /* gone */ } }
    };
    try {
      const ports = [n.socksPort, ...proxies.map((p) => p.socksPort)];
      const up = await Promise.all(ports.map((port, i) => poll(async () => (await fetchVia(port, `http://${n.webAddress}:${ctx.web.port}/bytes/0/1024`, `chaos-s10-warm-${i}-${Date.now()}`, { maxMs: 30_000 })).code === 0, 120_000, 2000)));
      if (up.some((x) => !x)) return { done: 'extra clients did not come up', observed: `clients answering: ${up.filter(Boolean).length} of ${ports.length}`, recoverySeconds: null, bytesLost: 0, passed: false };
      const before = await Promise.all(relays.map(receiptFigures));
      // Load: per client PARALLEL downloads at a time, each at most PER_DOWNLOAD bytes and one
      // period, for S10_LOADED periods, all of them together at most BUDGET bytes; every
      // download on fresh credentials (a new circuit, so paths spread).
      const loadMs = S10_LOADED * P;
      const t0 = Date.now();
      const end = t0 + loadMs;
      let bytes = 0, downloads = 0, failed = 0;
      const worker = async (port: number, w: number): Promise<void> => {
        for (let k = 0; Date.now() < end - 1000 && bytes < BUDGET; k++) {
          // At most one period per download: the next one builds a new circuit on the newest
          // consensus, so the load follows the weights as they change (a download held for the
          // whole load would pin the paths chosen on the first, unmeasured weights).
          // (The content server answers /raw/K/LEN for any K; K only tells requests apart.)
          const r = await fetchVia(port, `http://${n.webAddress}:${ctx.web.port}/raw/0/${PER_DOWNLOAD}`, `chaos-s10-${port}-${w}-${k}`, { maxMs: Math.max(1000, Math.min(P, end - Date.now())) });
          bytes += r.bytes;
          downloads++;
          if ((r.code !== 0 && !r.timedOut) || r.bytes === 0) { failed++; await sleep(500); }
        }
      };
      // Consensuses seen during and after the load (proven_epoch lags valid_after by two periods).
      const seen = new Map<number, VerifiedConsensus>();
      const watch = (async () => {
        while (Date.now() < end + 4 * P) {
          const c = await consensusNow(ctx);
          if (c && c.provenEpoch !== null) seen.set(c.provenEpoch, c);
          await sleep(1000);
        }
      })();
      await Promise.all(ports.flatMap((port) => Array.from({ length: PARALLEL }, (_, w) => worker(port, w))));
      const after = await Promise.all(relays.map(receiptFigures));
      await watch;
      const firstEpoch = Math.floor(t0 / P) + 1, lastEpoch = Math.floor(end / P) - 1;
      const judgedFrom = Math.max(firstEpoch, lastEpoch - S10_JUDGED + 1);
      const loaded = [...seen.values()].filter((c) => c.provenEpoch! >= judgedFrom && c.provenEpoch! <= lastEpoch).sort((a, b) => a.provenEpoch! - b.provenEpoch!);
      const doneText = `${ports.length} clients × ${PARALLEL} downloads (≤ ${PER_DOWNLOAD / MiB} MiB and ≤ 1 period each, ≤ ${BUDGET / MiB} MiB in all) for ${loadMs / 1000} s: ${downloads} downloads (${failed} failed), ${Math.round(bytes / MiB)} MiB (${(bytes / 1e6 / (loadMs / 1000)).toFixed(1)} MB/s); judged: proven cells of epochs ${judgedFrom}..${lastEpoch} from ${loaded.length} consensuses, weights of the last`;
      if (loaded.length === 0) return { done: doneText, observed: `no consensus measured a judged epoch (epochs seen: ${[...seen.keys()].join(',')})`, recoverySeconds: null, bytesLost: 0, passed: false };
      const proven = relays.map((r) => loaded.reduce((a, c) => a + (c.relays.find((x) => x.fingerprint === r.identity)?.proven ?? 0), 0));
      // The weights of the consensus that measured the last loaded epoch (a weight comes from one
      // epoch's measurement: after the load, relays fall back to the floor).
      const last = loaded[loaded.length - 1];
      const weight = relays.map((r) => last.relays.find((x) => x.fingerprint === r.identity)?.weight ?? 0);
      const caps = relays.map((r) => r.host?.capBytesPerSec ?? 0);
      const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
      const provenShare = proven.map((v) => v / Math.max(1, sum(proven)));
      const capShare = caps.map((v) => v / Math.max(1, sum(caps)));
      const relErr = provenShare.map((s, i) => Math.abs(s - capShare[i]) / capShare[i]).sort((a, b) => a - b);
      const median = relErr.length % 2 ? relErr[(relErr.length - 1) / 2] : (relErr[relErr.length / 2 - 1] + relErr[relErr.length / 2]) / 2;
      // In cap order: every relay with a larger cap has more (proven cells, weight).
      const ordered = (v: number[]): boolean => relays.every((_, i) => relays.every((__, j) => !(caps[i] > caps[j]) || v[i] > v[j]));
      const provenOk = ordered(proven), weightOk = ordered(weight);
      const rho = spearman(proven, caps), rhoW = spearman(weight, caps);
      const probes = await probeFigures(ctx, relays);
      const weightShare = weight.map((v) => v / Math.max(1, sum(weight)));
      const relErrW = weightShare.map((s, i) => Math.abs(s - capShare[i]) / capShare[i]).sort((a, b) => a - b);
      const medianW = relErrW.length % 2 ? relErrW[(relErrW.length - 1) / 2] : (relErrW[relErrW.length / 2 - 1] + relErrW[relErrW.length / 2]) / 2;
      const cellBytes = 514;
      const judgedSeconds = loaded.length * ctx.period;
      const table = relays.map((r, i) => {
        const d = after[i].counted - before[i].counted;
        const unpaid = Object.entries(after[i].unpaid).map(([k, v]) => [k, v - (before[i].unpaid[k] ?? 0)] as const).filter(([, v]) => v > 0);
        const up = Object.entries(after[i].uploads).map(([k, v]) => [k, v - (before[i].uploads[k] ?? 0)] as const).filter(([, v]) => v > 0);
        return `${r.name}${r.role === 'exit' ? ' (exit)' : ''} cap ${caps[i] / 1e6} MB/s (${(capShare[i] * 100).toFixed(0)}%) weight ${weight[i]} KB/s (${(weightShare[i] * 100).toFixed(0)}%) probe ${(probes[i] / 1e6).toFixed(3)} MB/s; proven ${Math.round(proven[i] * cellBytes / MiB)} MiB = ${(proven[i] * cellBytes / 1e6 / judgedSeconds).toFixed(2)} MB/s (${(provenShare[i] * 100).toFixed(0)}%); during the load counted ${Math.round(d * cellBytes / MiB)} MiB, unpaid segments ${unpaid.map(([k, v]) => `${k} ${v}`).join(' ') || '0'}, uploads ${up.map(([k, v]) => `${k} ${v}`).join(' ') || '0'}`;
      }).join('; ');
      ctx.log(`scenario 10 table: ${table}`);
      return {
        done: doneText,
        observed: `${table}; Spearman(weight, cap) ${rhoW.toFixed(2)}, median relative error of weight share against cap share ${(medianW * 100).toFixed(0)}%, weights ${weightOk ? 'in cap order' : 'NOT in cap order'}; Spearman(proven, cap) ${rho.toFixed(2)}, median relative error of proven share against cap share ${(median * 100).toFixed(0)}%, proven ${provenOk ? 'in cap order' : 'not in cap order'} (coins follow client traffic, not judged)`,
        recoverySeconds: null, bytesLost: 0, passed: weightOk,
      };
    } finally {
      await stopProxies();
    }
  },
};

export const WEIGHT_SCENARIOS: Scenario[] = [s10];
