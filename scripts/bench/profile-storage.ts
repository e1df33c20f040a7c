// `node bin/run-ts.js scripts/bench/profile-storage.ts [--mib M] [--runs N] [--profile PHASE | --perf PHASE] [OUTDIR]`:
// the storage bench's network (storage-net.ts: guard, middle, raw endpoint, six storage nodes,
// six more raw endpoints, each its own process; the client here), then per run the phases
// raw-down, raw-up (each one circuit, both ways), raw6-up (6 circuits to one endpoint), raw6p-up
// (6 circuits to 6 endpoint processes, as a put spreads), raw4p-down (4 from 4, as a get
// fetches), put, get over circuits, each with its throughput (file bytes/s, and share bytes/s for put)
// and the CPU seconds of every process during it (/proc; the client's own from
// process.cpuUsage, worker threads included). With --profile PHASE (put, get, raw-up, …) every
// process runs the inspector's profiler during that phase only (cpu-prof-preload.mjs in the
// nodes, started by SIGUSR2; an inspector session here) and the heaviest functions by self time
// are printed per busy process. With --perf PHASE instead, Linux perf samples the whole machine
// during that phase (perf-summary.ts: on-CPU time only, kernel, native code and every thread
// included; start this script with `node --perf-basic-prof` to name the client's JavaScript too).
// A quick A/B tool beside `npm run bench -- --only storage`.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import inspector from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from '../../src/crypto/primitives';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import { StorageClient, type OpenStorageStream } from '../../src/client/storage-client';
import { putFile } from '../../src/client/storage-client-put';
import { getFile } from '../../src/client/storage-client-get';
import { parseCapability } from '../../src/storage/capability';
import { cpuSeconds } from '../../test/helpers/localnet';
import { hop, rawCircuit, rawCircuitsMany, relayOf, startNetwork } from './storage-net';
import { summarizeProfiles } from './cpuprofile-summary';
import { keepOldGenerationHeadroom } from '../../src/ops/old-gen';
import { monoSeconds, perfAvailable, PERF_NODE_OPTIONS, removePerfMaps, startPerf, summarizePerf, type PerfRecording } from './perf-summary';

const MiB = 1 << 20;
const argv = process.argv.slice(2);
const opt = (name: string, def: string) => { const i = argv.indexOf(name); return i >= 0 ? argv.splice(i, 2)[1] : def; };
const size = Number(opt('--mib', '64')) * MiB;
const runs = Number(opt('--runs', '1'));
const profilePhase = opt('--profile', '');
const perfPhase = opt('--perf', '');
if (perfPhase && !perfAvailable()) { console.error('profile-storage: --perf needs the perf binary (Debian: apt-get install linux-perf)'); process.exit(2); }
/** --workers off: code chunks on the main thread (coder-pool.ts not used), for A/B. */
const workers = opt('--workers', 'on') !== 'off';
// The client runs here, standing in for `bitcloud put` / `get`, which start with this (SPEC.md §11.6).
keepOldGenerationHeadroom();
const outArg = argv.find((a) => !a.startsWith('--'));
const out = profilePhase ? path.resolve(outArg ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-prof-'))) : '';
if (profilePhase) {
  fs.mkdirSync(out, { recursive: true });
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${path.join(path.dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.mjs')}`.trim();
  process.env.BITCLOUD_CPU_PROF_DIR = out;
}
if (perfPhase) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${PERF_NODE_OPTIONS}`.trim();
const { net: n, pids, stop } = await startNetwork();
delete process.env.NODE_OPTIONS;
delete process.env.BITCLOUD_CPU_PROF_DIR;
const names = ['guard', 'middle', 'raw', ...n.nodes.map((_, i) => `node${i}`), ...n.raws.map((_, i) => `raw${i}`)];
const session = new inspector.Session();
if (profilePhase) {
  session.connect();
  await new Promise((r) => session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 250 }, r)));
}
const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-prof-client-'));
const file = path.join(dir, 'input.bin');
await fsp.writeFile(file, randomBytes(size));
const guardLink = new ClientLink(await connectLink({ host: '127.0.0.1', port: n.guard.port, expectedIdentity: Buffer.from(n.guard.identity, 'hex') }));
const nodes = n.nodes.map(relayOf);
const viaCircuits: OpenStorageStream = async (node) => {
  const c = ClientCircuit.allocate(guardLink);
  await c.create(hop(n.guard));
  await c.extend(hop(n.middle));
  await c.extend(node);
  return (await c.openStream({ kind: 'begin_storage' })).stream;
};

const cpu = () => pids.map((p) => { try { return cpuSeconds(p); } catch { return 0; } });
/** System (kernel) CPU seconds of a process: fsync, socket and file syscalls. */
const sysSeconds = (pid: number) => { try { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); return Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[12]) / 100; } catch { return 0; } };
const sys = () => pids.map(sysSeconds);
const perfOut = perfPhase ? path.resolve(outArg ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-perf-'))) : '';
const perfWindows: Array<{ label: string; start: number; end: number }> = [];
let rec = null as PerfRecording | null;
/** CPU seconds of this process's main thread alone (its worker threads and libuv's pool excluded): /proc, 10 ms ticks. */
function mainThreadSeconds(): number {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14 and 15 of stat)
  } catch { return NaN; }
}

async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const prof = name === profilePhase;
  if (prof) {
    for (const p of pids) process.kill(p, 'SIGUSR2');
    await new Promise((r) => session.post('Profiler.start', r));
  }
  const c0 = cpu();
  const s0 = sys();
  if (name === perfPhase && !rec) { fs.mkdirSync(perfOut, { recursive: true }); rec = await startPerf(path.join(perfOut, 'perf.data')); }
  const u0 = process.cpuUsage();
  const main0 = mainThreadSeconds();
  const t0 = performance.now();
  const m0 = monoSeconds();
  const r = await fn();
  if (name === perfPhase) perfWindows.push({ label: `${name}, run ${perfWindows.length + 1}`, start: m0, end: monoSeconds() });
  const secs = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(u0);
  const mainT = mainThreadSeconds() - main0;
  const s1 = sys();
  const per = cpu().map((c, j) => ({ name: names[j], v: c - c0[j], s: s1[j] - s0[j] }));
  const own = (u.user + u.system) / 1e6;
  const detail = per.filter((x) => x.v >= 0.05).sort((a, b) => b.v - a.v).map((x) => `${x.name} ${x.v.toFixed(2)} (sys ${x.s.toFixed(2)})`).join(', ');
  console.log(`  ${name.padEnd(8)} ${secs.toFixed(2)} s wall; CPU-s: client ${own.toFixed(2)} (sys ${(u.system / 1e6).toFixed(2)}; ${(100 * own / secs).toFixed(0)}%; main thread ${(100 * mainT / secs).toFixed(0)}%), ${detail}`);
  if (prof) {
    const p = await new Promise<object>((resolve, reject) => session.post('Profiler.stop', (e, res) => (e ? reject(e) : resolve(res.profile))));
    fs.writeFileSync(path.join(out, `client-${process.pid}.cpuprofile`), JSON.stringify(p));
  }
  return r;
}

try {
  for (let i = 0; i < runs; i++) {
    console.log(`run ${i + 1} (${size / MiB} MiB):`);
    const down = await phase('raw-down', async () => (await rawCircuit(guardLink, n, size)).down);
    void down;
    const raw = await phase('raw-up', async () => rawCircuit(guardLink, n, size));
    const raw6 = await phase('raw6-up', () => rawCircuitsMany(guardLink, n, n.raws.map(() => n.raw), Math.round(size * 1.5), 'U'));
    const raw6p = await phase('raw6p-up', () => rawCircuitsMany(guardLink, n, n.raws, Math.round(size * 1.5), 'U'));
    const raw4p = await phase('raw4p-down', () => rawCircuitsMany(guardLink, n, n.raws.slice(0, 4), size, 'D'));
    // The nodes' profilers run until they exit: nothing after the profiled phase.
    if (profilePhase.startsWith('raw')) break;
    const up = new StorageClient({ nodes, open: viaCircuits });
    let cap = '';
    let put = 0;
    await phase('put', async () => {
      const t0 = performance.now();
      const r = await putFile(up, file, { workers });
      put = size / 1e6 / ((performance.now() - t0) / 1000);
      cap = r.capability;
    });
    await up.close();
    if (profilePhase === 'put') break;
    const downC = new StorageClient({ nodes, open: viaCircuits });
    let get = 0;
    const outFile = path.join(dir, 'out.bin');
    await phase('get', async () => {
      const t0 = performance.now();
      await getFile(downC, parseCapability(cap), { output: outFile, workers });
      get = size / 1e6 / ((performance.now() - t0) / 1000);
    });
    await downC.close();
    await fsp.rm(outFile, { force: true });
    console.log(`  raw down ${raw.down.toFixed(1)} MB/s, raw up ${raw.up.toFixed(1)}, 6 raw up ${raw6.toFixed(1)}, 6 raw up to 6 processes ${raw6p.toFixed(1)} (share bytes; ÷ 1.5 ÷ raw up ${(raw6p / 1.5 / raw.up).toFixed(2)}), 4 raw down from 4 processes ${raw4p.toFixed(1)} (÷ raw down ${(raw4p / raw.down).toFixed(2)})`);
    console.log(`  get ${get.toFixed(1)} MB/s file bytes (÷ raw down ${(get / raw.down).toFixed(2)}); put ${put.toFixed(1)} MB/s file bytes, ${(put * 1.5).toFixed(1)} share bytes (÷ raw up ${(put / raw.up).toFixed(2)})`);
  }
} finally {
  await rec?.stop();
  guardLink.ch.close('done');
  await stop();
  await fsp.rm(dir, { recursive: true, force: true });
}
if (rec) {
  const labels = new Map<number, string>(pids.map((p, j) => [p, names[j]]));
  labels.set(process.pid, 'client');
  for (const w of perfWindows) summarizePerf(rec.file, w, labels);
  removePerfMaps(pids);
}
if (profilePhase) {
  summarizeProfiles(out, {
    label: (f, pid) => f.startsWith('client-') ? 'client' : names[pids.indexOf(pid)] ?? `pid ${pid}`,
    minBusySeconds: 0.2, top: 25,
  });
}

