// `node bin/run-ts.js scripts/bench/gc-trace.ts [--mib M] [--par P]`: how much of the cell path's
// CPU the garbage collector takes, per process. The local network as `npm run bench -- --only
// circuit` starts it (3 authorities, 6 relays, the proxy; each its own process, V8's --trace-gc on
// through trace-gc-preload.mjs), one warm-up download, then P downloads of M MiB at once (default
// 1 × 256) through SOCKS; for every process, the scavenges and full collections during them from
// its log: how many, their total pause, and how much of that pause went to the embedder's
// callbacks (Node's weak handles: native objects such as a hash state copy are freed there), and
// what started them. Extra V8 flags for every process: BITCLOUD_GC_TRACE_FLAGS. Read with
// docs/cpu.md.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from '../../src/crypto/primitives';
import { cpuSeconds, curl, startContentServer, startLocalNet, viaSocks } from '../../test/helpers/localnet';

const MiB = 1 << 20;
const argv = process.argv.slice(2);
const opt = (name: string, def: number) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const size = opt('--mib', 256) * MiB;
const par = opt('--par', 1);

const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), 'trace-gc-preload.mjs');
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim();
const net = await startLocalNet({ relays: 6, exits: 2, period: 15 });
delete process.env.NODE_OPTIONS;
const logOf = (name: string) => path.join(net.dir, 'logs', `${name}.log`);
const sizeOf = (f: string) => { try { return fs.statSync(f).size; } catch { return 0; } };

interface Gc { n: number; ms: number; embedderMs: number; why: Map<string, number> }
/** --trace-gc lines: "Scavenge 23.1 (51.6) -> 16.1 (51.6) MB, 7.44 / 6.14 ms (…) reason;" (pause / embedder callbacks). */
function tally(text: string, kind: 'Scavenge' | 'Mark-Compact'): Gc {
  const g: Gc = { n: 0, ms: 0, embedderMs: 0, why: new Map() };
  const re = new RegExp(`${kind}[^,]*, ([\\d.]+) / ([\\d.]+) ms.*\\) ([^;()]*?);?\\s*$`, 'gm');
  for (const m of text.matchAll(re)) {
    g.n++;
    g.ms += Number(m[1]);
    g.embedderMs += Number(m[2]);
    const why = m[3].trim();
    g.why.set(why, (g.why.get(why) ?? 0) + 1);
  }
  return g;
}
const fmt = (g: Gc) => g.n === 0 ? '-' : `${g.n} × ${(g.ms / g.n).toFixed(1)} ms = ${g.ms.toFixed(0)} ms (embedder ${g.embedderMs.toFixed(0)}; ${[...g.why].sort((a, b) => b[1] - a[1]).slice(0, 2).map(([w, c]) => `${c} ${w}`).join(', ')})`;

let web: Awaited<ReturnType<typeof startContentServer>> | null = null;
try {
  web = await startContentServer(randomBytes(size));
  const port = web.port;
  await curl(['-sS', '-o', '/dev/null', ...viaSocks(net.socksPort, 'warm'), `http://127.0.0.1:${port}/bytes/0/${8 * MiB}`]);
  const marks = net.nodes.map((n) => sizeOf(logOf(n.name)));
  const cpu0 = net.nodes.map((n) => { try { return cpuSeconds(n.pid); } catch { return 0; } });
  const t = performance.now();
  await Promise.all(Array.from({ length: par }, (_, j) =>
    curl(['-sS', '-o', '/dev/null', ...viaSocks(net.socksPort, `gc${j}`), `http://127.0.0.1:${port}/bytes/${j * 7919}/${size - j * 7919}`])));
  const secs = (performance.now() - t) / 1000;
  console.log(`${par} × ${size / MiB} MiB in ${secs.toFixed(1)} s`);
  console.log('process  CPU-s  scavenges (count × mean pause = total; embedder part; cause)  |  full collections');
  net.nodes.forEach((n, i) => {
    let text = '';
    try { text = fs.readFileSync(logOf(n.name)).subarray(marks[i]).toString('utf8'); } catch { /* no log */ }
    let cpu = 0;
    try { cpu = cpuSeconds(n.pid) - cpu0[i]; } catch { /* gone */ }
    if (cpu < 0.2) return;
    console.log(`${n.name.padEnd(8)} ${cpu.toFixed(2).padStart(5)}  ${fmt(tally(text, 'Scavenge'))}  |  ${fmt(tally(text, 'Mark-Compact'))}`);
  });
} finally {
  await net.stop();
  await web?.close();
}
