// `node bin/run-ts.js scripts/bench/cgo-e2e.ts [--rounds N] [--mib M] [--profile DIR]`: CGO beside
// tor1 end to end (SPEC.md §5.6) on the local network as `npm run bench -- --only circuit` starts
// it, without that module's other figures: two extra proxies (tor1, and "relayCrypto": "cgo"), then
// N rounds of one M-MiB download through each, interleaved (default 3 × 16), each with its MiB/s
// and the CPU seconds per GiB of the relays and that proxy (/proc). On a machine shared with
// other work the CPU figure is the one to compare; the interleaving keeps the two under the same
// load. A quick A/B tool: run it on two commits, one after the other. With --profile, the relays
// and the CGO proxy run the inspector's profiler during the CGO downloads (cpu-prof-preload.mjs)
// and write DIR/<pid>.cpuprofile when they stop; only CGO is downloaded then.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from '../../src/crypto/primitives';
import { cpuSeconds, curl, startContentServer, startExtraProxy, startLocalNet, viaSocks } from '../../test/helpers/localnet';

const MiB = 1 << 20;
const GiB = 1 << 30;
const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const rounds = Number(opt('--rounds') ?? 3);
const size = Number(opt('--mib') ?? 16) * MiB;
const profileDir = opt('--profile');

async function download(socksPort: number, user: string, url: string): Promise<{ seconds: number; bytes: number }> {
  const r = await curl(['-sS', '-o', '/dev/null', '--max-time', '900', '-w', '%{time_total} %{size_download} %{http_code}', ...viaSocks(socksPort, user), url], { timeoutMs: 910_000 });
  const [seconds, bytes, status] = r.stdout.toString().trim().split(' ').map(Number);
  if (r.code !== 0 || status !== 200) throw new Error(`curl ${url} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return { seconds, bytes };
}
const sumCpu = (pids: number[]) => pids.reduce((a, p) => { try { return a + cpuSeconds(p); } catch { return a; } }, 0);

if (profileDir) {
  fs.mkdirSync(profileDir, { recursive: true });
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${path.join(path.dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.mjs')}`.trim();
  process.env.BITCLOUD_CPU_PROF_DIR = path.resolve(profileDir);
}
const net = await startLocalNet({ relays: 6, exits: 2, period: 15 });
const web = await startContentServer(randomBytes(64 * MiB));
const url = (len: number, off = 0) => `http://127.0.0.1:${web.port}/bytes/${off}/${len}`;
const tor1 = await startExtraProxy(net, 'cgo-e2e-tor1', { preemptiveCircuits: 0 });
const cgo = await startExtraProxy(net, 'cgo-e2e-cgo', { preemptiveCircuits: 0, relayCrypto: 'cgo' });
delete process.env.NODE_OPTIONS;
delete process.env.BITCLOUD_CPU_PROF_DIR;
const relayPids = net.relays.map((r) => r.pid);
const proxies = profileDir ? [{ name: 'cgo', p: cgo }] : [{ name: 'tor1', p: tor1 }, { name: 'cgo', p: cgo }];
try {
  for (const { name, p } of [{ name: 'tor1', p: tor1 }, { name: 'cgo', p: cgo }]) await download(p.socksPort, `${name}-warm`, url(2 * MiB));
  if (profileDir) {
    for (const pid of [...relayPids, cgo.daemon.pid]) process.kill(pid, 'SIGUSR2');
    const names = [...net.relays.map((r) => `${r.pid}=${r.name}`), `${cgo.daemon.pid}=cgo proxy`].join(' ');
    process.stderr.write(`cgo-e2e: profiling into ${profileDir} (${names})\n`);
  }
  const sums = new Map<string, { mibps: number[]; cpu: number[] }>();
  for (let i = 0; i < rounds; i++) {
    for (const { name, p } of proxies) {
      const pids = [...relayPids, p.daemon.pid];
      const c0 = sumCpu(pids);
      const t = await download(p.socksPort, `${name}-${i}`, url(size, 7 + i));
      const rate = t.bytes / t.seconds / MiB;
      const cpu = (sumCpu(pids) - c0) / (t.bytes / GiB);
      const s = sums.get(name) ?? { mibps: [], cpu: [] };
      s.mibps.push(rate); s.cpu.push(cpu); sums.set(name, s);
      console.log(`round ${i + 1} ${name}: ${rate.toFixed(2)} MiB/s, ${cpu.toFixed(0)} CPU-s/GiB (relays + its proxy)`);
    }
  }
  const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  for (const [name, s] of sums) console.log(`${name}: median ${median(s.mibps).toFixed(2)} MiB/s, ${median(s.cpu).toFixed(0)} CPU-s/GiB over ${s.cpu.length} downloads of ${size / MiB} MiB`);
} finally {
  await tor1.daemon.stop();
  await cgo.daemon.stop();
  await web.close();
  await net.stop();
}
