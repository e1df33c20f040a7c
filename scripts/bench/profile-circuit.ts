// `node bin/run-ts.js scripts/bench/profile-circuit.ts [--runs N] [--mib M] [--par P] [--ttfb N] [--relays N --exits M] [--no-profile | --perf] [OUTDIR]`:
// the local network as `npm run bench -- --only circuit` starts it (3 authorities, 6 relays,
// the proxy; each its own process), N downloads of M MiB (default 1 × 256) through SOCKS, each
// run P streams at once on P circuits (distinct credentials; default 1, the bench's 4-circuit
// figure is --par 4 --mib 64), each run with its aggregate throughput and the CPU seconds per GiB of every process (/proc). Unless
// --no-profile, every process runs the inspector's profiler during the downloads only
// (cpu-prof-preload.mjs, started by SIGUSR2 after the warm-up) and writes OUTDIR/<pid>.cpuprofile
// when it stops; the heaviest functions by self time are printed per busy process (open a file in
// Chrome DevTools for the call tree). With --perf instead, Linux perf samples the whole machine
// during each run (perf-summary.ts: on-CPU time only, kernel and native code included) and prints
// every busy process's CPU seconds by category and symbol; OUTDIR/perf.data is kept for `perf report`.
// A quick A/B tool: run it on two commits, interleaved.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from '../../src/crypto/primitives';
import { cpuSeconds, curl, startContentServer, startLocalNet, viaSocks } from '../../test/helpers/localnet';
import { summarizeProfiles } from './cpuprofile-summary';
import { monoSeconds, perfAvailable, PERF_NODE_OPTIONS, removePerfMaps, startPerf, summarizePerf, type PerfRecording } from './perf-summary';

const MiB = 1 << 20;
const argv = process.argv.slice(2);
const opt = (name: string, def: number) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv.splice(i, 2)[1]) : def; };
const runs = opt('--runs', 1);
// --ttfb N: instead of downloads, N requests of 1 KiB on one existing circuit (the latency path:
// BEGIN, CONNECTED, a request and its answer), with the CPU milliseconds each process spent per request.
const ttfb = opt('--ttfb', 0);
const size = opt('--mib', 256) * MiB;
const par = opt('--par', 1);
// --relays N --exits M: the network's size (default 6 and 2, as the circuit bench's). With 3 and 1,
// every circuit crosses the same three relays, as the floor bench's 4 circuits share one path.
const relays = opt('--relays', 6);
const exits = opt('--exits', 2);
const usePerf = argv.includes('--perf');
if (usePerf && !perfAvailable()) { console.error('profile-circuit: --perf needs the perf binary (Debian: apt-get install linux-perf)'); process.exit(2); }
const profile = !usePerf && !argv.includes('--no-profile');
const outArg = argv.find((a) => !a.startsWith('--'));
const out = profile || usePerf ? path.resolve(outArg ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-prof-'))) : '';
if (out) fs.mkdirSync(out, { recursive: true });
if (profile) {
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${path.join(path.dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.mjs')}`.trim();
  process.env.BITCLOUD_CPU_PROF_DIR = out;
}
if (usePerf) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${PERF_NODE_OPTIONS}`.trim();
const net = await startLocalNet({ relays, exits, period: 15 });
delete process.env.NODE_OPTIONS;
delete process.env.BITCLOUD_CPU_PROF_DIR;
const web = await startContentServer(randomBytes(size));
const url = (len: number, off = 0) => `http://127.0.0.1:${web.port}/bytes/${off}/${len}`;
const names = new Map<number, string>(net.nodes.map((n) => [n.pid, n.name]));
names.set(process.pid, 'bench (content server)');
const windows: Array<{ label: string; start: number; end: number }> = [];
let rec = null as PerfRecording | null;
const pids = net.nodes.map((n) => n.pid);
const cpu = () => pids.map((p) => { try { return cpuSeconds(p); } catch { return 0; } });
/** Kernel time of every process (/proc/PID/stat stime): the share of the total spent in system calls. */
const sys = () => pids.reduce((a, p) => {
  try { const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8'); return a + Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[12]) / 100; } catch { return a; }
}, 0);
try {
  await curl(['-sS', '-o', '/dev/null', ...viaSocks(net.socksPort, 'warm'), url(8 * MiB)]);
  if (profile) for (const p of pids) { try { process.kill(p, 'SIGUSR2'); } catch { /* gone */ } }
  if (usePerf) rec = await startPerf(path.join(out, 'perf.data'));
  if (ttfb > 0) {
    const c0 = cpu();
    const ms: number[] = [];
    for (let i = 0; i < ttfb; i++) {
      const r = await curl(['-sS', '-o', '/dev/null', '-w', '%{time_starttransfer}', ...viaSocks(net.socksPort, 'ttfb'), url(1024, i)]);
      ms.push(Number(r.stdout.toString()) * 1000);
    }
    ms.sort((a, b) => a - b);
    const per = cpu().map((c, j) => ({ name: names.get(pids[j]) ?? String(pids[j]), v: (c - c0[j]) / ttfb * 1000 }));
    console.log(`${ttfb} requests of 1 KiB on one circuit: TTFB median ${ms[ms.length >> 1].toFixed(2)} ms; CPU ms per request: ${per.filter((x) => x.v > 0.05).sort((a, b) => b.v - a.v).map((x) => `${x.name} ${x.v.toFixed(2)}`).join(', ')}`);
  }
  for (let i = 0; i < (ttfb > 0 ? 0 : runs); i++) {
    const c0 = cpu();
    const s0 = sys();
    const t = performance.now();
    const m0 = monoSeconds();
    const got = await Promise.all(Array.from({ length: par }, (_, j) =>
      curl(['-sS', '-o', '/dev/null', '-w', '%{size_download}', ...viaSocks(net.socksPort, `run${i}-${j}`), url(size, i * 4099 + j * 7919)])));
    const secs = (performance.now() - t) / 1000;
    windows.push({ label: `run ${i + 1}`, start: m0, end: monoSeconds() });
    const bytes = got.reduce((a, r) => a + Number(r.stdout.toString()), 0);
    const gib = bytes / 2 ** 30;
    const per = cpu().map((c, j) => ({ name: names.get(pids[j]) ?? String(pids[j]), v: (c - c0[j]) / gib }));
    const all = per.reduce((a, x) => a + x.v, 0);
    const detail = per.filter((x) => x.v > 0.5).sort((a, b) => b.v - a.v).map((x) => `${x.name} ${x.v.toFixed(1)}`).join(', ');
    console.log(`run ${i + 1}: ${(bytes / MiB / secs).toFixed(1)} MiB/s, ${all.toFixed(1)} CPU-s/GiB, of which kernel ${((sys() - s0) / gib).toFixed(1)} (${detail})`);
  }
} finally {
  await rec?.stop();
  await net.stop();
  await web.close();
}
if (rec) {
  for (const w of windows) summarizePerf(rec.file, w, names);
  removePerfMaps(pids);
}
if (profile) summarizeProfiles(out, { label: (_f, pid) => names.get(pid) ?? `pid ${pid}`, minBusySeconds: 0.5, top: 20 });

