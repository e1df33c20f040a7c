// `node bin/run-ts.js scripts/bench/latency.ts [--n N] [--hot N] [--direct N] [--trace] [--profile DIR]`:
// the latency rows of the circuit bench alone (SPEC.md §7b.11), measured as scripts/bench/circuit.ts
// measures them — curl through a proxy that keeps no circuit ready (N circuits built on demand, N
// requests on them), the proxy's own build-time histogram — on a fresh local network, medians
// printed. Small enough to run interleaved against another commit on a busy machine.
//   --hot N     N more rounds (a request on new credentials, so a build on demand, then one more on that circuit) from this process's own SOCKS
//               client, back to back, with the proxy's and the relays' CPU time per round (CPU time
//               moves far less with the machine's load than wall time: the figure to compare commits by).
//   --direct N  N circuits built from this process on one open link, back to back, then 40 one per
//               50 ms (circuit.ts's "open link" row, and the same code spaced out as the proxy's builds are).
//   --trace     sets BITCLOUD_LAT_TRACE for every process (src/ops/lat-trace.ts) and prints, per event
//               of the request's path, the median time since the proxy accepted the SOCKS connection.
//   --profile DIR  every process runs the inspector's profiler during the --hot rounds only
//               (cpu-prof-preload.mjs, as profile-circuit.ts); the heaviest functions per process.
import fs from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import { randomBytes } from '../../src/crypto/primitives';
import { cpuSeconds, curl, metric, scrape, startContentServer, startExtraProxy, startLocalNet, viaSocks, type Sample } from '../../test/helpers/localnet';
import { summarizeProfiles } from './cpuprofile-summary';

const count = (describe: string, dflt: number) => ({ type: 'number', default: dflt, requiresArg: true, describe }) as const;
// Checked before the network starts: an unknown option or a count that is not a whole number stops here.
const argv = yargs(hideBin(process.argv))
  .scriptName('node bin/run-ts.js scripts/bench/latency.ts')
  .option('n', count('Circuits built on demand, and requests on them', 20))
  .option('hot', count('More rounds from this process\'s own SOCKS client, with CPU time per round', 0))
  .option('direct', count('Circuits built from this process on one open link', 0))
  .option('trace', { type: 'boolean', default: false, describe: 'Stamp each event of a request\'s path in every process' })
  .option('profile', { type: 'string', requiresArg: true, describe: 'Profile every process during the --hot rounds into this folder' })
  .check((a) => {
    for (const k of ['n', 'hot', 'direct'] as const) if (!Number.isInteger(a[k]) || a[k] < 0) throw new Error(`--${k} wants a whole number`);
    return true;
  })
  .strict()
  .help()
  .parseSync();
const N = argv.n;
const traceFile = argv.trace ? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-lat-')), 'trace') : null;
if (traceFile) process.env.BITCLOUD_LAT_TRACE = traceFile;
// --profile DIR: every process runs the inspector's profiler during the --hot loop only (cpu-prof-preload.mjs,
// as profile-circuit.ts does); the heaviest functions by self time are printed per busy process.
const profDir = argv.profile !== undefined ? path.resolve(argv.profile) : null;
if (profDir) {
  fs.mkdirSync(profDir, { recursive: true });
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${path.join(path.dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.mjs')}`.trim();
  process.env.BITCLOUD_CPU_PROF_DIR = profDir;
}

// (This process imported lat-trace.ts before the variable was set: it marks its own lines.)
const latTrace = (ev: string, d: string) => { if (traceFile) fs.appendFileSync(traceFile, `${process.hrtime.bigint()} ${process.pid} ${ev} ${d}\n`); };
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };

async function ttfb(args: string[], url: string): Promise<number> {
  const r = await curl(['-sS', '-o', '/dev/null', '--max-time', '30', '-w', '%{time_starttransfer} %{http_code}', ...args, url], { timeoutMs: 40_000 });
  const [t, status] = r.stdout.toString().trim().split(' ').map(Number);
  if (r.code !== 0 || status !== 200) throw new Error(`curl failed: ${r.stderr}`);
  return t * 1000;
}

function histMedian(before: Sample[], after: Sample[], name: string): number {
  const buckets = after.filter((x) => x.name === `${name}_bucket` && x.labels.le !== '+Inf')
    .map((x) => ({ le: Number(x.labels.le), n: x.value - metric(before, `${name}_bucket`, { le: x.labels.le }) })).sort((a, b) => a.le - b.le);
  const total = metric(after, `${name}_count`) - metric(before, `${name}_count`);
  let lo = 0, below = 0;
  for (const b of buckets) {
    if (b.n >= total / 2) return (lo + (b.le - lo) * (b.n > below ? (total / 2 - below) / (b.n - below) : 1)) * 1000;
    lo = b.le; below = b.n;
  }
  return lo * 1000;
}

/** One 1 KiB GET through SOCKS5 (user/pass isolation) from this process: ms to the first byte of the answer. */
function socksTtfb(port: number, user: string, webPort: number, off: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    let step = 0;
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.from([5, 1, 2])));
    s.on('data', (d: Buffer) => {
      if (step === 0) { step = 1; const u = Buffer.from(user); s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([1, 0x78])])); return; }
      if (step === 1) { step = 2; const pb = Buffer.alloc(2); pb.writeUInt16BE(webPort); s.write(Buffer.concat([Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), pb])); return; }
      if (step === 2) { step = 3; if (d[1] !== 0) { reject(new Error(`SOCKS reply ${d[1]}`)); s.destroy(); return; } s.write(`GET /bytes/${off}/1024 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`); return; }
      if (step === 3) { step = 4; resolve(Number(process.hrtime.bigint() - t0) / 1e6); s.destroy(); }
    });
  });
}

async function main(): Promise<void> {
  const net = await startLocalNet({ relays: 6, exits: 2, period: 15 });
  const web = await startContentServer(randomBytes(1 << 20));
  const lean = await startExtraProxy(net, 'lat-lean-proxy', { preemptiveCircuits: 0 });
  delete process.env.NODE_OPTIONS;
  delete process.env.BITCLOUD_CPU_PROF_DIR;
  const url = (off: number) => `http://127.0.0.1:${web.port}/bytes/${off}/1024`;
  try {
    await ttfb(viaSocks(lean.socksPort, 'warm'), url(0));
    for (let i = 0; i < 3; i++) await ttfb(viaSocks(lean.socksPort, `warm${i}`), url(i));
    const h0 = await scrape(lean.metricsPort);
    const b1: number[] = [], b2: number[] = [], direct: number[] = [];
    for (let i = 0; i < N; i++) {
      latTrace('bench.curl', `b2:${i}`);
      b2.push(await ttfb(viaSocks(lean.socksPort, `ttfb${i}`), url(i)));
      latTrace('bench.curl', `b1:${i}`);
      b1.push(await ttfb(viaSocks(lean.socksPort, `ttfb${i}`), url(i + 1)));
      direct.push(await ttfb([], url(i)));
    }
    const h1 = await scrape(lean.metricsPort);
    const built = metric(h1, 'bitcloud_client_circuit_build_seconds_count') - metric(h0, 'bitcloud_client_circuit_build_seconds_count');
    const sum = metric(h1, 'bitcloud_client_circuit_build_seconds_sum') - metric(h0, 'bitcloud_client_circuit_build_seconds_sum');
    const f = (x: number) => x.toFixed(2);
    process.stdout.write(`latency (n=${N}): build median ${f(histMedian(h0, h1, 'bitcloud_client_circuit_build_seconds'))} ms (mean ${f(sum / built * 1000)}, ${built} builds); `
      + `TTFB on demand ${f(median(b2))} ms; TTFB existing ${f(median(b1))} ms; direct ${f(median(direct))} ms\n`);
    const hot = argv.hot;
    if (hot > 0) {
      const g0 = await scrape(lean.metricsPort);
      // CPU time moves little with the machine's load: the proxy's and the relays' per iteration.
      const pids = [lean.daemon.pid, ...net.relays.map((r) => r.pid)];
      const cpu = () => pids.reduce((a, p) => { try { return a + cpuSeconds(p); } catch { return a; } }, 0);
      if (profDir) for (const p of pids) { try { process.kill(p, 'SIGUSR2'); } catch { /* gone */ } }
      const p0 = cpuSeconds(lean.daemon.pid), c0 = cpu();
      const hb2: number[] = [], hb1: number[] = [];
      for (let i = 0; i < hot; i++) {
        hb2.push(await socksTtfb(lean.socksPort, `hot${i}`, web.port, i));
        hb1.push(await socksTtfb(lean.socksPort, `hot${i}`, web.port, i + 1));
      }
      const pc = (cpuSeconds(lean.daemon.pid) - p0) * 1000 / hot, cc = (cpu() - c0) * 1000 / hot;
      const g1 = await scrape(lean.metricsPort);
      process.stdout.write(`back to back from this process (n=${hot}): build median ${f(histMedian(g0, g1, 'bitcloud_client_circuit_build_seconds'))} ms; `
        + `TTFB on demand ${f(median(hb2))} ms; TTFB existing ${f(median(hb1))} ms; `
        + `CPU per iteration (a build and two requests): proxy ${f(pc)} ms, proxy + relays ${f(cc)} ms\n`);
    }
    const direct3 = argv.direct;
    if (direct3 > 0) {
      // As circuit.ts's "open link" row: circuits built from this process on one open link, back to back, and sparse (one per 50 ms).
      const c = await net.consensus();
      const relays = net.relays.filter((r) => r.role === 'relay');
      const hop = (name: string) => c.relays.find((r) => r.fingerprint === net.relays.find((x) => x.name === name)!.identity)!;
      const p3 = [hop(relays[0].name), hop(relays[1].name), hop(net.exits[0].name)];
      const link = new ClientLink(await connectLink({ host: p3[0].address, port: p3[0].orPort, expectedIdentity: p3[0].identity }));
      const one = async () => {
        const t = process.hrtime.bigint();
        const circ = ClientCircuit.allocate(link);
        await circ.create(p3[0]); await circ.extend(p3[1]); await circ.extend(p3[2]);
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        circ.destroy();
        return ms;
      };
      const hotMs: number[] = [], sparseMs: number[] = [];
      // A guard's per-address circuit rate limit (SPEC.md §7b.9) may refuse some: keep what was built.
      try {
        for (let i = 0; i < direct3; i++) hotMs.push(await one());
        for (let i = 0; i < Math.min(direct3, 40); i++) { await new Promise((r) => setTimeout(r, 50)); sparseMs.push(await one()); }
      } catch (e) {
        process.stderr.write(`open link: stopped after ${hotMs.length} + ${sparseMs.length} circuits (${(e as Error).message})\n`);
      }
      link.ch.close();
      process.stdout.write(`open link from this process: build median back to back ${f(median(hotMs))} ms (n=${hotMs.length}), one per 50 ms ${f(median(sparseMs))} ms (n=${sparseMs.length})\n`);
    }
    if (traceFile) report(traceFile, net.nodes.map((n) => ({ pid: n.pid, name: n.name })).concat([{ pid: lean.daemon.pid, name: 'lean' }, { pid: process.pid, name: 'bench' }]));
  } finally {
    await lean.daemon.stop();
    await web.close();
    await net.stop();
  }
  if (profDir) {
    const names = new Map([...net.nodes.map((n) => [n.pid, n.name] as const), [lean.daemon.pid, 'lean']]);
    summarizeProfiles(profDir, { label: (_f, pid) => names.get(pid) ?? `pid ${pid}`, minBusySeconds: 0.2, top: 25 });
  }
}


/** Per kind of request (b1, b2): each event's median offset from the curl start, in ms, in time order. */
function report(file: string, names: Array<{ pid: number; name: string }>): void {
  const who = new Map(names.map((x) => [x.pid, x.name]));
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => { const [t, pid, ev, d] = l.split(' '); return { t: BigInt(t), pid: Number(pid), ev, d: d ?? '' }; })
    .sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
  const per: Record<string, Map<string, number[]>> = { b1: new Map(), b2: new Map() };
  let cur: { kind: string; t0: bigint; seen: Map<string, number> } | null = null;
  for (const x of lines) {
    // Times count from the proxy's accept of the SOCKS connection (curl's own start-up before it is not curl's timing).
    if (x.ev === 'bench.curl') { cur = { kind: x.d.split(':')[0], t0: -1n, seen: new Map() }; continue; }
    if (!cur) continue;
    if (cur.t0 < 0n) { if (x.ev !== 'socks.accept') continue; cur.t0 = x.t; }
    // Cells by command only (circuit ids differ per circuit).
    const d = x.ev === 'link.rx' || x.ev === 'link.send' ? `cmd${x.d.split(':')[1]}` : x.d;
    const key0 = `${who.get(x.pid) ?? x.pid} ${x.ev} ${d}`;
    const k = (cur.seen.get(key0) ?? 0) + 1;
    cur.seen.set(key0, k);
    const key = `${key0} #${k}`;
    const m = per[cur.kind];
    if (!m.has(key)) m.set(key, []);
    m.get(key)!.push(Number(x.t - cur.t0) / 1e6);
  }
  for (const kind of ['b2', 'b1']) {
    process.stdout.write(`\n${kind}: event (median ms since the proxy accepted the SOCKS connection, count)\n`);
    const rows = [...per[kind]].map(([k, v]) => ({ k, m: median(v), n: v.length })).filter((r) => r.n >= N / 2).sort((a, b) => a.m - b.m);
    for (const r of rows) process.stdout.write(`  ${r.m.toFixed(3).padStart(8)}  ${r.k} (${r.n})\n`);
  }
}

main().catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exitCode = 1; });
