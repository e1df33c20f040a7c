// `npm run bench -- --only floor [--quick]`: what any Node.js implementation of the tor1 cell path
// pays on this machine, measured without Bitcloud's cell path (src/circuit, src/link): a bare
// chain of processes (floor-node.ts: source → exit → middle → guard → proxy → sink, TLS 1.3 links
// set up as src/link sets them up) doing per cell only the irreducible work — SHA-1 running
// digests at both ends, one AES-128-CTR layer per hop and three at the proxy, TLS on every link,
// plain TCP at both ends, SENDME windows of 1000/100 cells. Read beside `--only circuit
// --compare-tor best` (docs/cpu.md, "The floor"):
//   - CPU-s per GiB of a 256 MiB download and of 4 circuits × 64 MiB multiplexed on the same links,
//     per process and summed over exit+middle+guard+proxy (source and sink apart, as the circuit
//     bench leaves out its HTTP server and curl);
//   - the library floor: the same per-GiB work measured in a loop in this process, no chain, each
//     primitive the least of 3 warmed-up repetitions, its parts (per SHA-1 end, AES layer, TLS link,
//     TCP pair) and their sum;
//   - latency floors: a circuit round trip, a 3-hop build with its ntor halves, and a first byte on
//     an open circuit, each the median of samples 200 ms apart.
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { BenchModule, BenchRow } from './types';
import { aes128Ctr, createHash, randomBytes } from '../../src/crypto/primitives';
import { cpuOf, leastOf, plainConnect } from './floor-io';
import { generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION } from '../../src/crypto/tls';

const MiB = 1 << 20, GiB = 1 << 30;
const CELL = 514, BODY = 509, DATA_MAX = 498;
/** Cells per GiB of stream data (498 bytes in each full cell). */
const CELLS_PER_GIB = GiB / DATA_MAX;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROLES = ['source', 'exit', 'middle', 'guard', 'proxy', 'sink'] as const;
type Role = typeof ROLES[number];
const CARRIERS: Role[] = ['exit', 'middle', 'guard', 'proxy'];
const say = (s: string) => process.stderr.write(`bench floor: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs: number[], q: number) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN; };
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/** CPU seconds per GiB of stream data of each primitive, as measured in a loop. */
export interface LibraryCosts { sha1: number; sha1Buffer?: number; aesLayer: number; aesOrigin?: number; tlsLink: number; tcpPair: number }

/**
 * The library floor of one 3-hop download for the four processes that carry it: 2 SHA-1 ends
 * (exit, proxy), 6 AES layers (one per relay, three at the proxy; the exit's over the runs it
 * packages, `aesOrigin`, the five others over a link read's run), 3 TLS links (exit→middle→guard→
 * proxy) each encrypted once and decrypted once, and the carriers' halves of the 2 plain TCP
 * connections (the exit reads the source, the proxy writes the sink): one write+read pair in all.
 */
export function libraryFloor(c: LibraryCosts): { total: number; parts: Record<string, number> } {
  const parts = { sha1: 2 * c.sha1, aes: 5 * c.aesLayer + (c.aesOrigin ?? c.aesLayer), tls: 3 * c.tlsLink, tcp: c.tcpPair };
  return { total: parts.sha1 + parts.aes + parts.tls + parts.tcp, parts };
}

/**
 * CPU seconds of this process per GiB that goes one way over a connected pair, `bytes` (rounded up
 * to whole writes) written in `chunk`-byte writes; `listen(cb)` makes the reader call cb(n) per
 * read and returns what stops it.
 */
async function pairCpu(writer: net.Socket, listen: (cb: (n: number) => void) => () => void, bytes: number, chunk: number): Promise<number> {
  bytes = Math.ceil(bytes / chunk) * chunk;
  const buf = randomBytes(chunk);
  const c0 = process.cpuUsage();
  let got = 0;
  const done = new Promise<void>((resolve) => { const stop = listen((n) => { got += n; if (got >= bytes) { stop(); resolve(); } }); });
  let left = bytes;
  const go = (): void => { while (left > 0) { left -= chunk; if (!writer.write(buf)) { writer.once('drain', go); return; } } };
  go();
  await done;
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6 / (bytes / GiB);
}

async function libraryCosts(quick: boolean): Promise<LibraryCosts> {
  const cells = quick ? 200_000 : 1_000_000;
  const body = randomBytes(BODY);
  const h = createHash('sha1');
  // The digest read as latin1, as RunningSha1 and floor-node.ts read it; a Buffer digest beside it.
  const sha1 = cpuOf(() => { h.update(body); h.copy().digest('binary'); }, cells) / cells * CELLS_PER_GIB;
  const sha1Buffer = cpuOf(() => { h.update(body); h.copy().digest(); }, cells) / cells * CELLS_PER_GIB;
  // One Cipher.update per run: a relay and the proxy peel a link read's cells (one 16 KiB TLS
  // record, about 32 cells); the exit packages what a source read brings (64 KiB, about 130 cells;
  // src/circuit/cell-run.ts's OriginRun holds up to 128), up to the window. Five times SHA-1's
  // cells: a layer costs a fraction of a digest, and a repetition of a few tens of milliseconds
  // is as much scheduling noise as AES.
  const aesCells = 5 * cells;
  const aesRun = (cellsPerRun: number): number => {
    const run = randomBytes(cellsPerRun * BODY);
    const aes = aes128Ctr(randomBytes(16));
    return cpuOf(() => { aes.update(run); }, aesCells / cellsPerRun) / aesCells * CELLS_PER_GIB;
  };
  const aesLayer = aesRun(32);
  const aesOrigin = aesRun(128);

  const bytes = (quick ? 64 : 512) * MiB;
  const tlsOpts = { minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION, rejectUnauthorized: false } as const;
  const creds = await generateTlsCredentials();
  const srv = tls.createServer({ ...tlsOpts, key: creds.keyPem, cert: creds.certPem, requestCert: true });
  srv.on('connection', (raw: net.Socket) => raw.setNoDelay(true));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'secureConnection') as Promise<[tls.TLSSocket]>;
  // The initiator reads as src/link/reader.ts does: every TLS record into one reused 16 KiB buffer.
  let onRead: ((n: number) => void) | null = null;
  const readBuf = Buffer.allocUnsafeSlow(16 * 1024);
  const onread = { buffer: readBuf, callback: (n: number) => { onRead?.(n); return true; } };
  const client = tls.connect({ ...tlsOpts, host: '127.0.0.1', port: (srv.address() as AddressInfo).port, onread } as tls.ConnectionOptions);
  client.setNoDelay(true);
  await once(client, 'secureConnect');
  const [server] = await accepted;
  const clientReads = (cb: (n: number) => void) => { onRead = cb; return () => { onRead = null; }; };
  say(`library: TLS links negotiate ${client.getProtocol()} ${client.getCipher().name}`);
  // Download direction: the responder writes, the initiator reads. A busy link writes whole
  // batches of 128 cells (src/link/channel.ts DEFAULT_BATCH_CELLS; the relays average 95–104 cells
  // per write in a download, docs/cpu.md), which node:tls cuts into 16 KiB records.
  const LINK_WRITE = 128 * CELL;
  const tlsLink = await leastOf(3, () => pairCpu(server, clientReads, bytes, LINK_WRITE)) * (CELL / DATA_MAX);
  client.destroy(); server.destroy();
  await new Promise((r) => srv.close(r));

  // Plain TCP as the chain's ends use it: the reader (as the exit reads the source) on one reused
  // 64 KiB buffer with `onread`, no Nagle on either end.
  const tcp = net.createServer();
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  const acc = once(tcp, 'connection') as Promise<[net.Socket]>;
  let onTcpRead: ((n: number) => void) | null = null;
  const r = plainConnect((tcp.address() as AddressInfo).port, 64 * 1024, (_buf, n) => onTcpRead?.(n));
  const [w] = await acc;
  w.setNoDelay(true);
  const tcpReads = (cb: (n: number) => void) => { onTcpRead = cb; return () => { onTcpRead = null; }; };
  const tcpPair = await leastOf(3, () => pairCpu(w, tcpReads, bytes, 64 * 1024));
  w.destroy(); r.destroy();
  await new Promise((res) => tcp.close(res));
  return { sha1, sha1Buffer, aesLayer, aesOrigin, tlsLink, tcpPair };
}

/** The chain's processes, each asked over IPC; stop() kills every one by its PID. */
class Chain {
  readonly procs = new Map<Role, ChildProcess>();
  private next = 1;

  async start(): Promise<void> {
    const up = async (role: Role, cfg: Record<string, unknown>) => {
      const child = fork(path.join(HERE, '../../bin/run-ts.js'), [path.join(HERE, 'floor-node.ts'), role], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      this.procs.set(role, child);
      const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`floor ${role} exited (${code})`)));
        const on = (m: Record<string, unknown>) => { if (m.ready) { child.off('message', on); resolve(m); } };
        child.on('message', on);
      });
      child.send(cfg);
      return ready;
    };
    const source = await up('source', {});
    const exit = await up('exit', { sourcePort: source.port });
    const middle = await up('middle', { nextPort: exit.port });
    const guard = await up('guard', { nextPort: middle.port });
    const proxy = await up('proxy', { guardPort: guard.port, hops: [guard.keys, middle.keys, exit.keys] });
    await up('sink', { proxyPort: proxy.port });
  }

  ask(role: Role, m: Record<string, unknown>): Promise<Record<string, number>> {
    const child = this.procs.get(role)!;
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const gone = (code: number | null) => { child.off('message', on); reject(new Error(`floor ${role} exited (${code})`)); };
      const on = (r: Record<string, unknown>) => {
        if (r.id !== id) return;
        child.off('message', on);
        child.off('exit', gone);
        if (r.error) reject(new Error(`floor ${role}: ${String(r.error)}`)); else resolve(r as Record<string, number>);
      };
      child.on('message', on);
      child.once('exit', gone);
      child.send({ ...m, id });
    });
  }

  async cpu(): Promise<Record<Role, number>> {
    const got = await Promise.all(ROLES.map(async (r) => [r, (await this.ask(r, { op: 'cpu' })).cpu] as const));
    return Object.fromEntries(got) as Record<Role, number>;
  }

  stop(): void {
    for (const c of this.procs.values()) if (c.pid !== undefined && c.exitCode === null) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
}

/** One download of `streams` × `bytes` through the chain: MiB/s (all streams) and CPU-s/GiB per process. */
async function download(chain: Chain, streams: number, bytes: number) {
  const c0 = await chain.cpu();
  const t0 = process.hrtime.bigint();
  await chain.ask('sink', { op: 'get', streams, bytes });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = await chain.cpu();
  const gib = (streams * bytes) / GiB;
  const per = Object.fromEntries(ROLES.map((r) => [r, (c1[r] - c0[r]) / gib])) as Record<Role, number>;
  return { mibps: (streams * bytes) / MiB / secs, per, carriers: CARRIERS.reduce((a, r) => a + per[r], 0) };
}

async function samples(n: number, f: () => Promise<number>): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) { xs.push(await f()); await sleep(200); }
  return xs;
}

async function measure(chain: Chain, quick: boolean): Promise<{ rows: BenchRow[]; json: Record<string, unknown> }> {
  const rows: BenchRow[] = [];
  const big = (quick ? 32 : 256) * MiB, par = (quick ? 8 : 64) * MiB, n = quick ? 5 : 20;
  say('warming up the chain (JIT)');
  await chain.ask('sink', { op: 'get', streams: 4, bytes: 16 * MiB });

  const lib = await libraryCosts(quick);
  const floor = libraryFloor(lib);
  const one = await download(chain, 1, big);
  const four = await download(chain, 4, par);
  const fmt = (p: Record<Role, number>) => ROLES.map((r) => `${r} ${p[r].toFixed(2)}`).join(', ');
  say(`1 stream: ${one.mibps.toFixed(0)} MiB/s; CPU-s/GiB ${fmt(one.per)}`);
  say(`4 circuits: ${four.mibps.toFixed(0)} MiB/s; CPU-s/GiB ${fmt(four.per)}`);
  const libBase = { name: 'library floor (same work in a loop, no chain)', value: floor.total, unit: 'CPU-s/GiB' };
  for (const [label, d, size] of [['1 stream', one, big], ['4 circuits on shared links', four, par]] as const) {
    rows.push({ group: 'floor', name: `bare 3-hop chain, ${label} (${size / MiB} MiB${d === four ? ' each' : ''})`, value: d.mibps, unit: 'MiB/s' });
    rows.push({ group: 'floor', name: `CPU per GiB, ${label}, exit+middle+guard+proxy`, value: d.carriers, unit: 'CPU-s/GiB', baseline: libBase, note: fmt(d.per) });
    for (const r of ROLES) rows.push({ group: 'floor', name: `CPU per GiB, ${label}, ${r}${r === 'source' || r === 'sink' ? ' (not in the sum)' : ''}`, value: d.per[r], unit: 'CPU-s/GiB' });
  }
  rows.push(
    { group: 'floor', name: "library: SHA-1 update + copy().digest('binary') per cell", value: lib.sha1, unit: 'CPU-s/GiB', baseline: { name: 'copy().digest() as a Buffer (not in the floor)', value: lib.sha1Buffer ?? NaN, unit: 'CPU-s/GiB' } },
    { group: 'floor', name: 'library: AES-128-CTR, one layer (runs of 32 cells)', value: lib.aesLayer, unit: 'CPU-s/GiB' },
    { group: 'floor', name: "library: AES-128-CTR, the exit's layer (runs of 128 cells)", value: lib.aesOrigin ?? NaN, unit: 'CPU-s/GiB' },
    { group: 'floor', name: 'library: one TLS link, 128-cell writes in 16 KiB records, encrypt + decrypt + both TCP ends', value: lib.tlsLink, unit: 'CPU-s/GiB', note: 'per GiB of stream data (514/498 link bytes per stream byte)' },
    { group: 'floor', name: 'library: one plain TCP connection, write + read', value: lib.tcpPair, unit: 'CPU-s/GiB' },
    { group: 'floor', name: 'library floor part: SHA-1, 2 ends', value: floor.parts.sha1, unit: 'CPU-s/GiB', note: `${lib.sha1.toFixed(3)} per end` },
    { group: 'floor', name: "library floor part: AES-128-CTR, 5 layers of 32-cell runs + the exit's of 128", value: floor.parts.aes, unit: 'CPU-s/GiB', note: `${lib.aesLayer.toFixed(3)} per layer, the exit's ${(lib.aesOrigin ?? lib.aesLayer).toFixed(3)}` },
    { group: 'floor', name: 'library floor part: TLS, 3 links', value: floor.parts.tls, unit: 'CPU-s/GiB', note: `${lib.tlsLink.toFixed(3)} per link` },
    { group: 'floor', name: 'library floor part: plain TCP, the carriers\' 2 halves (one pair)', value: floor.parts.tcp, unit: 'CPU-s/GiB' },
    { group: 'floor', name: 'library floor: 2 SHA-1 + 6 AES layers + 3 TLS links + 2 TCP halves', value: floor.total, unit: 'CPU-s/GiB', note: `sum of sha1 ${floor.parts.sha1.toFixed(2)} + aes ${floor.parts.aes.toFixed(2)} + tls ${floor.parts.tls.toFixed(2)} + tcp ${floor.parts.tcp.toFixed(2)}; each primitive the least of 3 runs after a warm-up` },
  );

  // Latency, samples 200 ms apart on open links, as the circuit bench's builds.
  await chain.ask('proxy', { op: 'build' }); // warm-up
  const rtt = await samples(n, async () => (await chain.ask('proxy', { op: 'rtt' })).ms);
  const build = await samples(n, async () => (await chain.ask('proxy', { op: 'build' })).ms);
  const ttfb = await samples(n, async () => (await chain.ask('sink', { op: 'get', streams: 1, bytes: 1024 })).ttfb);
  const lat = (name: string, xs: number[], note: string): BenchRow => ({ group: 'floor', name: `${name} (median of ${xs.length})`, value: median(xs), unit: 'ms', note: `p90 ${quantile(xs, 0.9).toFixed(3)} ms; ${note}` });
  rows.push(
    lat('circuit round trip floor, proxy→exit→proxy', rtt, 'one 514-byte cell, 6 link hops'),
    lat('build floor: round trips to hop 1, 1–2, 1–3, each with ntor', build, 'client half at the proxy, server half at the far hop (src/crypto/ntor)'),
    lat('TTFB floor on an open circuit, 1 KiB', ttfb, 'sink connect → stream open (circuit round trip + exit TCP connect) → request → first byte'),
  );
  const json = {
    floor: {
      single: { mibps: one.mibps, cpuPerGiB: one.per, carriers: one.carriers },
      aggregate4: { mibps: four.mibps, cpuPerGiB: four.per, carriers: four.carriers },
      library: {
        ...lib,
        // The floor's parts as the note cites them: per unit (SHA-1 end, AES layer, TLS link, TCP
        // pair), times their count in one download, and the sum.
        perUnit: { sha1End: lib.sha1, aesLayer: lib.aesLayer, aesExitLayer: lib.aesOrigin ?? lib.aesLayer, tlsLink: lib.tlsLink, tcpPair: lib.tcpPair },
        parts: floor.parts,
        floor: floor.total,
      },
      latencyMs: { rtt: median(rtt), rttP90: quantile(rtt, 0.9), build: median(build), buildP90: quantile(build, 0.9), ttfb: median(ttfb), ttfbP90: quantile(ttfb, 0.9) },
    },
  };
  return { rows, json };
}

const mod: BenchModule = {
  name: 'floor',
  async run({ quick }) {
    const chain = new Chain();
    const onSig = () => { chain.stop(); process.exit(130); };
    process.once('SIGINT', onSig);
    try {
      await chain.start();
      return await measure(chain, quick);
    } finally {
      chain.stop();
      process.off('SIGINT', onSig);
    }
  },
};
export default mod;
