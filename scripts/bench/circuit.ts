// `npm run bench -- --only circuit [--quick] [--compare-tor [best]]`: the local network as `npm start`
// runs it (3 authorities, 6 relays of which 2 exits, a SOCKS proxy: each its own process),
// measured from outside the way ../shared/bench/tor-testnet measures C tor: curl through the
// SOCKS port, CPU from /proc/PID/stat, the client's own build-time histogram. Each figure
// stands beside a loopback baseline from the same run (direct curl from the same HTTP server,
// a bare link handshake, an idle link). --compare-tor then runs tor-testnet/run.sh on this
// machine (after our network has stopped, so they never share the cores) and adds rows with
// C tor's figure as the baseline: the ratio column is Bitcloud/tor. `--compare-tor best` runs it
// with its fastest settings on this machine (CONFLUX=0, EXTRA_TORRC="Schedulers Vanilla");
// `--compare-tor` alone keeps tor's defaults. With it the JSON output has a `compare` object:
// {tor: "best"|"default", single, aggregate4, cpuPerGiB, cpuPerGiBAggregate4, ttfbExisting,
// ttfbOnDemand, build}, each {ours, tor, ratio}; build is the median of the proxy's histogram
// over 20 builds 0.2 s apart, each asked for by this process (a SOCKS CONNECT with new
// credentials), as tor-testnet's d1 is the median of 20 builds 0.2 s apart asked for by one
// process on tor's control port.
//
// Figures (tor-testnet's keys in brackets): single-stream throughput [a], 4 streams on 4
// circuits [c1], time to first byte of 1 KiB on a circuit built on demand [b2] and on an
// existing one [b1], circuit build time [d1], CPU seconds per GiB of all processes during the
// single stream [f], resident memory per idle circuit (no tor equivalent).
//
// The network tooling (launcher child process, scrapes, /proc) is shared with the integration
// tests: test/helpers/localnet.ts.
import fs from 'node:fs';
import nodeNet from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import type { BenchModule, BenchRow, TorMode } from './types';
import { randomBytes } from '../../src/crypto/primitives';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import {
  cpuSeconds, curl, freePortRange, metric, rssBytes, receivedBytesByPeerPort, scrape, startContentServer, startExtraProxy,
  startLocalNet, viaSocks, type LocalNet, type Sample,
} from '../../test/helpers/localnet';

const MiB = 1 << 20;
const GiB = 1 << 30;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOR_TESTNET = path.resolve(HERE, '../../../shared/bench/tor-testnet/run.sh');

/** A full GC in this process, without asking the runner for --expose-gc (as circuits-inprocess does). */
function gc(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };
const say = (s: string) => process.stderr.write(`bench circuit: ${s}\n`);

interface Timed { ttfb: number; total: number; size: number }

/** One curl to /dev/null, timed by curl itself (seconds), as tor-testnet does. Throws unless it succeeded. */
async function timedCurl(args: string[], url: string, maxSeconds: number): Promise<Timed> {
  const r = await curl(['-sS', '-o', '/dev/null', '--max-time', String(maxSeconds), '-w', '%{time_starttransfer} %{time_total} %{size_download} %{http_code}', ...args, url],
    { timeoutMs: (maxSeconds + 10) * 1000 });
  const [ttfb, total, size, status] = r.stdout.toString().trim().split(' ').map(Number);
  if (r.code !== 0 || status !== 200) throw new Error(`curl ${url} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return { ttfb, total, size };
}

const mibps = (t: Timed) => t.size / t.total / MiB;
const sumCpu = (pids: number[]) => pids.reduce((a, p) => { try { return a + cpuSeconds(p); } catch { return a; } }, 0);
const sumRss = (pids: number[]) => pids.reduce((a, p) => { try { return a + rssBytes(p); } catch { return a; } }, 0);

/**
 * One SOCKS5 CONNECT to 127.0.0.1:`webPort` from this process, with user/password `user` (new
 * credentials: the proxy builds a circuit for it, SPEC.md §7.4); resolves once the proxy answered
 * (its circuit built and the stream open), then closes the connection.
 */
function socksConnect(socksPort: number, user: string, webPort: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = nodeNet.connect({ host: '127.0.0.1', port: socksPort, noDelay: true });
    let step = 0;
    const fail = (e: Error) => { s.destroy(); reject(e); };
    s.setTimeout(30_000, () => fail(new Error('SOCKS connect timed out')));
    s.on('error', fail);
    s.on('connect', () => s.write(Buffer.from([5, 1, 2])));
    s.on('data', (d: Buffer) => {
      if (step === 0) { step = 1; const u = Buffer.from(user); s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([1, 0x78])])); return; }
      if (step === 1) { step = 2; const pb = Buffer.alloc(2); pb.writeUInt16BE(webPort); s.write(Buffer.concat([Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), pb])); return; }
      if (step === 2) { step = 3; s.destroy(); if (d[1] !== 0) reject(new Error(`SOCKS reply ${d[1]}`)); else resolve(); }
    });
  });
}

/**
 * Build up to `n` circuits on one open link from this process (guard, middle, exit), timing each.
 * Stops early, keeping what it built, when a hop refuses one: the guard's per-address circuit
 * rate limit (SPEC.md §7b.9) applies to this loopback address once it holds a few links from
 * it, which on the local network depends on which relays linked to which.
 */
async function buildIdleCircuits(path3: HopTarget[], n: number): Promise<{ link: ClientLink; circuits: ClientCircuit[]; ms: number[] }> {
  const link = new ClientLink(await connectLink({ host: path3[0].address, port: path3[0].orPort, expectedIdentity: path3[0].identity }));
  const circuits: ClientCircuit[] = [];
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const c = ClientCircuit.allocate(link);
    try {
      await c.create(path3[0]);
      await c.extend(path3[1]);
      await c.extend(path3[2]);
    } catch (e) {
      c.destroy();
      say(`idle circuits: stopped after ${circuits.length} (${(e as Error).message})`);
      break;
    }
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    circuits.push(c);
  }
  return { link, circuits, ms };
}

/**
 * The median of what a Prometheus histogram counted between two scrapes, interpolated linearly
 * inside the bucket that holds it (seconds); NaN when nothing was counted.
 */
function histogramMedian(before: Sample[], after: Sample[], name: string): number {
  const buckets = after.filter((x) => x.name === `${name}_bucket` && x.labels.le !== '+Inf')
    .map((x) => ({ le: Number(x.labels.le), n: x.value - metric(before, `${name}_bucket`, { le: x.labels.le }) }))
    .sort((a, b) => a.le - b.le);
  const total = metric(after, `${name}_count`) - metric(before, `${name}_count`);
  if (total <= 0) return NaN;
  let lo = 0, below = 0;
  for (const b of buckets) {
    if (b.n >= total / 2) return lo + (b.le - lo) * (b.n > below ? (total / 2 - below) / (b.n - below) : 1);
    lo = b.le;
    below = b.n;
  }
  return lo;
}

interface TorFigure { value: number | null; unit: string; label: string }

/** ../shared/bench/tor-testnet/run.sh on this machine; its summary.json, or null (with the reason said). */
async function runTorTestnet(mode: TorMode): Promise<Record<string, TorFigure> | null> {
  if (!fs.existsSync(TOR_TESTNET)) { say(`--compare-tor: ${TOR_TESTNET} not found`); return null; }
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-tor-testnet-'));
  const base = await freePortRange(61);
  const settings = mode === 'best' ? { CONFLUX: '0', EXTRA_TORRC: 'Schedulers Vanilla' } : {};
  say(`running C tor's testnet (${TOR_TESTNET}, BASE_PORT=${base}, ${mode === 'best' ? 'its fastest settings: CONFLUX=0, Schedulers Vanilla' : 'tor defaults'}; about 4-6 minutes)...`);
  const child = spawn('bash', [TOR_TESTNET], { env: { ...process.env, ...settings, OUT_DIR: out, BASE_PORT: String(base) }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => process.stderr.write(d));
  child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  // Its own watchdog stops it (and its tor daemons) after MAX_RUNTIME; ours is a last resort.
  const guard = setTimeout(() => { try { process.kill(child.pid!, 'SIGTERM'); } catch { /* gone */ } }, 660_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(guard);
  try {
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as Record<string, TorFigure>;
    fs.rmSync(out, { recursive: true, force: true }); // its logs are kept only when something went wrong
    return summary;
  } catch {
    say(`tor-testnet wrote no summary.json (exit ${code}); its logs are in ${out}`);
    return null;
  }
}

async function measure(net: LocalNet, quick: boolean): Promise<{ rows: BenchRow[]; ours: Record<string, number> }> {
  const body = randomBytes(64 * MiB);
  const web = await startContentServer(body);
  const lean = await startExtraProxy(net, 'bench-lean-proxy', { preemptiveCircuits: 0 });
  const rows: BenchRow[] = [];
  const ours: Record<string, number> = {};
  const url = (len: number, off = 0) => `http://127.0.0.1:${web.port}/bytes/${off}/${len}`;
  const relayPids = net.relays.map((r) => r.pid);
  const allPids = [...relayPids, ...net.authorities.map((a) => a.pid), net.proxy.pid];
  const big = (quick ? 32 : 256) * MiB;
  const par = (quick ? 8 : 64) * MiB;
  const runs = quick ? 1 : 3;
  const ttfbRuns = quick ? 3 : 10;
  // Many circuits, so that the RSS step stands above the garbage collector's noise.
  const idle = quick ? 200 : 1000;
  try {
    say('warming up (JIT, guard links, preemptive circuits)');
    await timedCurl(viaSocks(net.socksPort, 'warmup'), url(8 * MiB), 120);
    await warmEveryRelay(net, url, quick);

    // [e] and [a]+[f]: one stream, new SOCKS credentials each run (as tor-testnet's bulk$i).
    const direct = [];
    for (let i = 0; i < runs; i++) direct.push(mibps(await timedCurl([], url(big), 120)));
    const a: number[] = [], fRelays: number[] = [], fCarriers: number[] = [], fAll: number[] = [];
    const carrierPids = [...relayPids, net.proxy.pid];
    for (let i = 0; i < runs; i++) {
      const r0 = sumCpu(relayPids), c0 = sumCpu(carrierPids), a0 = sumCpu(allPids);
      const per0 = allPids.map((p) => sumCpu([p]));
      const t = await timedCurl(viaSocks(net.socksPort, `bulk${i}`), url(big, i * 4099), 300);
      const gib = t.size / GiB;
      fRelays.push((sumCpu(relayPids) - r0) / gib);
      fCarriers.push((sumCpu(carrierPids) - c0) / gib);
      fAll.push((sumCpu(allPids) - a0) / gib);
      a.push(mibps(t));
      const per = allPids.map((p, j) => ({ name: net.nodes.find((n) => n.pid === p)?.name ?? String(p), v: (sumCpu([p]) - per0[j]) / gib }))
        .filter((x) => x.v > 0.5).sort((x, y) => y.v - x.v).map((x) => `${x.name} ${x.v.toFixed(1)}`).join(', ');
      say(`single stream run ${i + 1}: ${mibps(t).toFixed(1)} MiB/s; CPU-s/GiB by process: ${per}`);
    }
    ours.a = median(a); ours.f = median(fAll); ours.e = median(direct);
    rows.push({ group: 'circuit', name: `single-stream 3-hop download via SOCKS (${big / MiB} MiB, median of ${runs})`, value: ours.a, unit: 'MiB/s', baseline: { name: 'direct curl, same server', value: ours.e, unit: 'MiB/s' } });
    rows.push({ group: 'circuit', name: 'CPU per GiB during it, all 6 relay processes', value: median(fRelays), unit: 'CPU-s/GiB', note: 'utime+stime from /proc/PID/stat' });
    rows.push({ group: 'circuit', name: 'CPU per GiB during it, relays + proxy (the processes that carry it)', value: median(fCarriers), unit: 'CPU-s/GiB' });
    rows.push({ group: 'circuit', name: 'CPU per GiB during it, every process (relays, authorities, proxy)', value: ours.f, unit: 'CPU-s/GiB', note: "tor-testnet's f counts all its tor processes the same way" });

    // [c1]: 4 streams on 4 circuits (distinct credentials), aggregate over the wall time of all four.
    const agg = async (args: (i: number) => string[]) => {
      const t0 = process.hrtime.bigint();
      const got = await Promise.all([0, 1, 2, 3].map((i) => timedCurl(args(i), url(par, i * 7919), 300)));
      return got.reduce((s, t) => s + t.size, 0) / (Number(process.hrtime.bigint() - t0) / 1e9) / MiB;
    };
    const rawAgg = await agg(() => []);
    const cpu0 = sumCpu(allPids);
    ours.c1 = await agg((i) => viaSocks(net.socksPort, `par${i}`));
    ours.fc1 = (sumCpu(allPids) - cpu0) / (4 * par / GiB);
    rows.push({ group: 'circuit', name: `4 streams on 4 circuits, aggregate (${par / MiB} MiB each)`, value: ours.c1, unit: 'MiB/s', baseline: { name: '4 direct curls at once', value: rawAgg, unit: 'MiB/s' } });
    rows.push({ group: 'circuit', name: 'CPU per GiB during the 4 circuits, every process', value: ours.fc1, unit: 'CPU-s/GiB', note: "tor-testnet's f-c1" });

    // [b2] a circuit built on demand (the lean proxy keeps none ready), then [b1] the same credentials again.
    const b1: number[] = [], b2: number[] = [], direct1k: number[] = [];
    // The first build also opens the lean proxy's guard link; the histogram counts the builds
    // after it, as tor's EXTENDCIRCUIT→BUILT is timed on a client whose guard links are open.
    await timedCurl(viaSocks(lean.socksPort, 'ttfb-link'), url(1024), 60);
    // The lean proxy started just now, while tor's client has carried every figure above when it
    // measures these: a few builds and requests first, outside the histogram, as its warm-up.
    for (let i = 0; i < 5; i++) await timedCurl(viaSocks(lean.socksPort, `ttfb-warm${i}`), url(1024, i), 60);
    const h0 = await scrape(lean.metricsPort);
    for (let i = 0; i < ttfbRuns; i++) {
      b2.push((await timedCurl(viaSocks(lean.socksPort, `ttfb${i}`), url(1024, i), 60)).ttfb * 1000);
      b1.push((await timedCurl(viaSocks(lean.socksPort, `ttfb${i}`), url(1024, i + 1), 60)).ttfb * 1000);
      direct1k.push((await timedCurl([], url(1024, i), 60)).ttfb * 1000);
    }
    const h1 = await scrape(lean.metricsPort);
    ours.b1 = median(b1); ours.b2 = median(b2);
    rows.push({ group: 'circuit', name: 'time to first byte of 1 KiB, circuit built on demand', value: ours.b2, unit: 'ms', baseline: { name: 'direct curl', value: median(direct1k), unit: 'ms' } });
    rows.push({ group: 'circuit', name: 'time to first byte of 1 KiB on an existing circuit', value: ours.b1, unit: 'ms', baseline: { name: 'direct curl', value: median(direct1k), unit: 'ms' } });

    // The proxy's own build-time histogram over the builds of that loop, each started by a curl
    // process just spawned; and builds timed here on an open link.
    const ttfbBuilds = metric(h1, 'bitcloud_client_circuit_build_seconds_count') - metric(h0, 'bitcloud_client_circuit_build_seconds_count');
    const ttfbBuildMedian = histogramMedian(h0, h1, 'bitcloud_client_circuit_build_seconds') * 1000;

    // [d1] as tor-testnet times it: CBT_CIRCS builds, each asked for by a process that is already
    // running (tor's: EXTENDCIRCUIT 0 on its control port from one Python process, then
    // CLOSECIRCUIT and 0.2 s of sleep; here: a SOCKS CONNECT with new credentials from this
    // process, which closes it once answered, then 0.2 s), nothing else running meanwhile; the
    // proxy's histogram times each build, from its start to the last hop's answer.
    const cbtCircs = quick ? 5 : 20;
    const hb0 = await scrape(lean.metricsPort);
    for (let i = 0; i < cbtCircs; i++) {
      await socksConnect(lean.socksPort, `cbt${i}`, web.port);
      await sleep(200);
    }
    const hb1 = await scrape(lean.metricsPort);
    const builds = metric(hb1, 'bitcloud_client_circuit_build_seconds_count') - metric(hb0, 'bitcloud_client_circuit_build_seconds_count');
    const buildSecs = metric(hb1, 'bitcloud_client_circuit_build_seconds_sum') - metric(hb0, 'bitcloud_client_circuit_build_seconds_sum');
    const consensus = await net.consensus();
    const hop = (name: string) => {
      const n = net.relays.find((r) => r.name === name)!;
      const c = consensus.relays.find((r) => r.fingerprint === n.identity);
      if (!c) throw new Error(`${name} is not in the consensus`);
      return c;
    };
    const linkMs: number[] = [];
    const guardNode = pickGuard(net, lean.daemon.pid);
    const others = net.relays.filter((r) => r.role === 'relay' && r !== guardNode);
    const path3 = [hop(guardNode.name), hop(others[0].name), hop(net.exits[0].name)];
    for (let i = 0; i < ttfbRuns; i++) {
      const t = process.hrtime.bigint();
      const ch = await connectLink({ host: '127.0.0.1', port: path3[0].orPort, expectedIdentity: path3[0].identity });
      linkMs.push(Number(process.hrtime.bigint() - t) / 1e6);
      ch.close();
    }
    // Tor's d1 is a median of its builds; the proxy's histogram gives one too (interpolated
    // within its millisecond buckets), and its mean beside it.
    ours.d1 = histogramMedian(hb0, hb1, 'bitcloud_client_circuit_build_seconds') * 1000;
    const buildMean = builds > 0 ? (buildSecs / builds) * 1000 : NaN;
    rows.push({ group: 'circuit', name: `circuit build time, the proxy's histogram (median of ${builds}, 0.2 s apart)`, value: ours.d1, unit: 'ms', baseline: { name: 'one link handshake (TLS 1.3 + identity)', value: median(linkMs), unit: 'ms' }, note: `mean ${buildMean.toFixed(2)} ms` });
    rows.push({ group: 'circuit', name: `circuit build time, the proxy's histogram over the TTFB loop's builds (median of ${ttfbBuilds}, each after a curl started)`, value: ttfbBuildMedian, unit: 'ms' });

    // Memory per idle circuit: RSS of the three relays on the path before and after `idle` circuits.
    const pathPids = [guardNode.pid, others[0].pid, net.exits[0].pid];
    await sleep(1000);
    const m0 = sumRss(pathPids);
    const built = await buildIdleCircuits(path3, idle);
    await sleep(1000);
    const m1 = sumRss(pathPids);
    ours.d1direct = median(built.ms);
    const nBuilt = built.circuits.length;
    rows.push({ group: 'circuit', name: `circuit build time on an open link, timed by this client (median of ${nBuilt})`, value: ours.d1direct, unit: 'ms', baseline: { name: 'one link handshake (TLS 1.3 + identity)', value: median(linkMs), unit: 'ms' } });
    for (const c of built.circuits) c.destroy();
    built.link.ch.close();
    // Baseline: what an idle link (TLS 1.3 + channel) costs — this process's end, after a full GC
    // (a relay's RSS does not move measurably for a few dozen links).
    const k = 40;
    gc();
    const l0 = process.memoryUsage().rss;
    const links = [];
    for (let i = 0; i < k; i++) links.push(await connectLink({ host: '127.0.0.1', port: path3[1].orPort, expectedIdentity: path3[1].identity }));
    gc();
    const l1 = process.memoryUsage().rss;
    for (const l of links) l.close();
    rows.push({ group: 'circuit', name: `resident memory per idle 3-hop circuit (sum of the 3 relays' RSS, ${nBuilt} circuits)`, value: nBuilt > 0 ? (m1 - m0) / nBuilt / 1024 : NaN, unit: 'KiB', baseline: { name: `one idle link, client end (RSS of this process after GC, ${k} links)`, value: (l1 - l0) / k / 1024, unit: 'KiB' } });
    // CGO beside tor1, end to end (SPEC.md §5.6), last so that it disturbs no figure above: the same
    // download through a proxy configured for CGO and through the lean tor1 proxy, in this run.
    rows.push(...await cgoBesideTor1(net, lean, url, relayPids, quick));
  } finally {
    await lean.daemon.stop();
    await web.close();
  }
  return { rows, ours };
}

async function cgoBesideTor1(
  net: LocalNet, lean: { daemon: { pid: number }; socksPort: number }, url: (len: number, off?: number) => string, relayPids: number[], quick: boolean,
): Promise<BenchRow[]> {
  const cgo = await startExtraProxy(net, 'bench-cgo-proxy', { preemptiveCircuits: 0, relayCrypto: 'cgo' });
  try {
    const size = (quick ? 4 : 16) * MiB;
    const one = async (socksPort: number, pid: number, user: string) => {
      await timedCurl(viaSocks(socksPort, `${user}-warm`), url(MiB), 300);
      const c0 = sumCpu([...relayPids, pid]);
      const t = await timedCurl(viaSocks(socksPort, user), url(size, 7), 900);
      return { rate: mibps(t), cpu: (sumCpu([...relayPids, pid]) - c0) / (t.size / GiB) };
    };
    const tor1 = await one(lean.socksPort, lean.daemon.pid, 'tor1-e2e');
    const c = await one(cgo.socksPort, cgo.daemon.pid, 'cgo-e2e');
    say(`CGO end to end: ${c.rate.toFixed(2)} MiB/s (tor1 ${tor1.rate.toFixed(2)}); CPU-s/GiB ${c.cpu.toFixed(0)} (tor1 ${tor1.cpu.toFixed(0)})`);
    return [
      { group: 'circuit', name: `CGO single-stream 3-hop download via SOCKS (${size / MiB} MiB)`, value: c.rate, unit: 'MiB/s', baseline: { name: 'tor1, the same download, same run', value: tor1.rate, unit: 'MiB/s' } },
      { group: 'circuit', name: 'CGO CPU per GiB during it, relays + that proxy', value: c.cpu, unit: 'CPU-s/GiB', baseline: { name: 'tor1, the same download', value: tor1.cpu, unit: 'CPU-s/GiB' } },
    ];
  } finally {
    await cgo.daemon.stop();
  }
}

/**
 * The JIT of every relay the proxy's circuits use, not only of the three the first warm-up
 * crossed: each run below builds a new circuit, and a relay carrying bulk cells for the first time
 * spends a few hundred ms of CPU compiling its cell path (V8's optimizing compiler: 12–15% of its
 * CPU during that download, measured with `profile-circuit.ts --perf`), a cost a long-running
 * relay paid once at start. Downloads of 8 MiB on fresh circuits, three at a time, until two
 * rounds in a row warm no further relay (the proxy's guards it does not use stay cold, and carry
 * nothing below either) or `rounds` are done. Tor's C needs no such warm-up; this one only takes
 * start-up compilation out of the per-byte figures.
 */
async function warmEveryRelay(net: LocalNet, url: (len: number, off?: number) => string, quick: boolean): Promise<void> {
  const carried = async () => Promise.all(net.relays.map(async (r) => metric(await scrape(r.ports.metrics!), 'bitcloud_link_bytes_total', { direction: 'in' })));
  const base = await carried();
  const warmCount = async () => { const now = await carried(); return now.filter((b, j) => b - base[j] >= 8 * MiB).length; };
  const rounds = quick ? 2 : 8;
  let warm = await warmCount();
  let still = 0;
  for (let round = 0; round < rounds && warm < net.relays.length && still < 2; round++) {
    await Promise.all([0, 1, 2].map((k) => timedCurl(viaSocks(net.socksPort, `warm-${round}-${k}`), url(8 * MiB, round * 3 + k), 120)));
    const now = await warmCount();
    still = now > warm ? 0 : still + 1;
    warm = now;
  }
  say(`warm-up: ${warm} of ${net.relays.length} relays have carried 8 MiB on the proxy's circuits`);
}

/** A non-exit relay neither proxy holds a link to (so this process's circuits meet no per-address DoS bucket). */
function pickGuard(net: LocalNet, leanPid: number) {
  const used = new Set([...receivedBytesByPeerPort(net.proxy.pid).keys(), ...receivedBytesByPeerPort(leanPid).keys()]);
  const free = net.relays.filter((r) => r.role === 'relay' && !used.has(r.ports.or));
  return free[0] ?? net.relays.filter((r) => r.role === 'relay')[0];
}

function torRows(ours: Record<string, number>, tor: Record<string, TorFigure>): BenchRow[] {
  const rows: BenchRow[] = [];
  const add = (key: string, mine: number, name: string, unit: string, target: string) => {
    const t = tor[key]?.value;
    if (t === null || t === undefined || !Number.isFinite(mine)) return;
    const ratio = mine / t;
    rows.push({ group: 'circuit vs C tor', name: `${name} (${target})`, value: mine, unit, baseline: { name: `C tor [${key}] ${tor[key].label}`, value: t, unit }, note: `ratio ${ratio.toFixed(2)}` });
    say(`vs C tor: ${name}: Bitcloud ${mine.toFixed(2)} / tor ${t.toFixed(2)} ${unit} = ${ratio.toFixed(2)}× (${target})`);
  };
  add('a', ours.a, 'single-stream throughput', 'MiB/s', 'target ≥ 2.5× tor best');
  add('c1', ours.c1, '4 streams on 4 circuits, aggregate', 'MiB/s', 'target ≥ 1.5× tor best');
  add('f-c1', ours.fc1, 'CPU per GiB during the 4 circuits, all processes', 'CPU-s/GiB', 'lower is better');
  add('d1', ours.d1, 'circuit build time, proxy histogram (median)', 'ms', 'target ≤ 1×');
  add('d1', ours.d1direct, 'circuit build time, open link', 'ms', 'target ≤ 1×');
  add('f', ours.f, 'CPU per GiB, all processes', 'CPU-s/GiB', 'target ≤ 0.8× tor best');
  add('b1', ours.b1, 'TTFB 1 KiB, existing circuit', 'ms', 'target ≤ 1×');
  add('b2', ours.b2, 'TTFB 1 KiB, circuit on demand', 'ms', 'target ≤ 1×');
  add('e', ours.e, 'direct loopback HTTP (the two servers differ)', 'MiB/s', 'context only');
  return rows;
}

/** The `compare` object of the JSON output: each figure {ours, tor, ratio = ours / tor}. */
function compareJson(mode: TorMode, ours: Record<string, number>, tor: Record<string, TorFigure>): Record<string, unknown> {
  const pair = (mine: number | undefined, key: string) => {
    const t = tor[key]?.value ?? null;
    const o = mine !== undefined && Number.isFinite(mine) ? mine : null;
    return { ours: o, tor: t, ratio: o !== null && t ? o / t : null };
  };
  return {
    tor: mode,
    single: pair(ours.a, 'a'),
    aggregate4: pair(ours.c1, 'c1'),
    cpuPerGiB: pair(ours.f, 'f'),
    cpuPerGiBAggregate4: pair(ours.fc1, 'f-c1'),
    ttfbExisting: pair(ours.b1, 'b1'),
    ttfbOnDemand: pair(ours.b2, 'b2'),
    build: pair(ours.d1, 'd1'),
  };
}

const mod: BenchModule = {
  name: 'circuit',
  async run({ quick, compareTor = null }) {
    say('starting the local network (npm start as a child process)...');
    // The launcher's default consensus period (15 s), so the authorities' CPU is what `npm start` costs.
    const net = await startLocalNet({ relays: 6, exits: 2, period: 15 });
    let result: Awaited<ReturnType<typeof measure>>;
    try {
      result = await measure(net, quick);
    } finally {
      await net.stop();
    }
    if (!compareTor) return result.rows;
    const tor = await runTorTestnet(compareTor);
    if (!tor) return result.rows;
    return { rows: [...result.rows, ...torRows(result.ours, tor)], json: { compare: compareJson(compareTor, result.ours, tor) } };
  },
};

export default mod;
