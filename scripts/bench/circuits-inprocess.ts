// `npm run bench -- --only circuits-inprocess`: 3-hop circuits with every node in THIS process
// (client, guard, middle, exit: real TLS links on loopback, real ntor and tor1), beside raw
// loopback TCP measured in the same run. Because all four nodes share one thread, throughput
// here is bounded by the sum of their CPU; the local-network bench (separate processes) is the
// one to compare with C tor. This one isolates the circuit engine's own cost.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fsp from 'node:fs/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { BenchModule, BenchRow } from './types';
import { loadOrCreateNodeKeys, fingerprint } from '../../src/crypto/keys';
import { connectLink, createLinkListener, type LinkListener } from '../../src/link';
import { RelayCircuits } from '../../relay/circuits';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';

const HOST = '127.0.0.1';

/** A full GC for the memory figure, without asking the runner for --expose-gc. */
function gc(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

/**
 * Memory once freed buffers are really gone: V8 sweeps ArrayBuffer backing stores concurrently,
 * so `external` right after one gc() can still include memory freed by it.
 */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  gc();
  await new Promise((r) => setTimeout(r, 200));
  gc();
  return process.memoryUsage();
}

interface Node { rc: RelayCircuits; listener: LinkListener; hop: HopTarget; dir: string }

async function startNode(exit: boolean): Promise<Node> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-circ-'));
  const keys = await loadOrCreateNodeKeys(dir);
  const rc = new RelayCircuits({ keys, exitPolicy: exit ? ['accept 127.0.0.1:*', 'reject *:*'] : null, requireConsensusForExtend: false });
  const listener = await createLinkListener({ host: HOST, port: 0, identity: keys.identity, onChannel: (ch) => rc.acceptChannel(ch) });
  const id = keys.identity.publicKey;
  return { rc, listener, dir, hop: { identity: id, fingerprint: fingerprint(id), onionKey: keys.onion.publicKey, address: HOST, orPort: listener.port } };
}

/** A TCP source that sends `bytes` to every connection, then closes. */
async function startSource(bytes: number): Promise<net.Server> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    let sent = 0;
    const pump = () => { while (sent < bytes) { const n = Math.min(chunk.length, bytes - sent); sent += n; if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return; } s.end(); };
    s.on('drain', pump);
    s.once('data', pump); // start when the client says go (so connect time is not counted as transfer)
  });
  await new Promise<void>((r) => srv.listen(0, HOST, r));
  return srv;
}

function drain(s: NodeJS.ReadableStream & { on(e: string, f: (...a: never[]) => void): unknown }): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    s.on('data', (d: Buffer) => { n += d.length; });
    s.on('end', () => resolve(n));
    s.on('error', reject);
  });
}

async function rawDownload(port: number, streams: number): Promise<{ bytes: number; secs: number; cpu: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const got = await Promise.all(Array.from({ length: streams }, () => new Promise<number>((resolve, reject) => {
    const s = net.connect(port, HOST, () => s.write('go'));
    drain(s).then(resolve, reject);
  })));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(cpu0);
  return { bytes: got.reduce((a, b) => a + b, 0), secs, cpu: (c.user + c.system) / 1e6 };
}

async function buildCircuit(path3: HopTarget[]): Promise<ClientCircuit> {
  const c = ClientCircuit.allocate(new ClientLink(await connectLink({ host: HOST, port: path3[0].orPort, expectedIdentity: path3[0].identity })));
  await c.create(path3[0]);
  for (const h of path3.slice(1)) await c.extend(h);
  return c;
}

async function circuitDownload(link: ClientLink, path3: HopTarget[], port: number, streams: number): Promise<{ bytes: number; secs: number; cpu: number }> {
  const c = ClientCircuit.allocate(link);
  await c.create(path3[0]);
  for (const h of path3.slice(1)) await c.extend(h);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const got = await Promise.all(Array.from({ length: streams }, async () => {
    const { stream } = await c.openStream({ kind: 'begin', host: HOST, port });
    stream.write('go');
    return drain(stream);
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cc = process.cpuUsage(cpu0);
  c.destroy();
  return { bytes: got.reduce((a, b) => a + b, 0), secs, cpu: (cc.user + cc.system) / 1e6 };
}

const mbps = (r: { bytes: number; secs: number }) => r.bytes / r.secs / 1e6;
const cpuPerGiB = (r: { bytes: number; cpu: number }) => r.cpu / (r.bytes / 2 ** 30);

const mod: BenchModule = {
  name: 'circuits-inprocess',
  async run({ quick }) {
    const bytes = (quick ? 8 : 48) * 1024 * 1024;
    const nodes = [await startNode(false), await startNode(false), await startNode(true)];
    const path3 = nodes.map((n) => n.hop);
    const one = await startSource(bytes);
    const four = await startSource(bytes / 4);
    const onePort = (one.address() as net.AddressInfo).port;
    const fourPort = (four.address() as net.AddressInfo).port;
    const rows: BenchRow[] = [];
    try {
      const link = new ClientLink(await connectLink({ host: HOST, port: path3[0].orPort, expectedIdentity: path3[0].identity }));
      await circuitDownload(link, path3, fourPort, 1); // warm up (JIT, TLS session state)

      const raw1 = await rawDownload(onePort, 1);
      const c1 = await circuitDownload(link, path3, onePort, 1);
      rows.push({ group: 'circuit', name: 'single-stream 3-hop download (4 nodes in one process)', value: mbps(c1), unit: 'MB/s', baseline: { name: 'raw loopback TCP, same process', value: mbps(raw1), unit: 'MB/s' } });
      rows.push({ group: 'circuit', name: 'CPU per GiB through 3 hops (client + 3 relays)', value: cpuPerGiB(c1), unit: 'CPU-s/GiB', baseline: { name: 'raw loopback TCP', value: cpuPerGiB(raw1), unit: 'CPU-s/GiB' } });

      const raw4 = await rawDownload(fourPort, 4);
      const c4 = await circuitDownload(link, path3, fourPort, 4);
      rows.push({ group: 'circuit', name: '4 streams on one 3-hop circuit, aggregate', value: mbps(c4), unit: 'MB/s', baseline: { name: '4 raw loopback TCP connections', value: mbps(raw4), unit: 'MB/s' } });

      // Build time and time to first byte on a fresh circuit (new link each time, as a cold client).
      const n = quick ? 5 : 20;
      let build = 0, ttfb = 0, linkMs = 0, rawTtfb = 0;
      for (let i = 0; i < n; i++) {
        let t = process.hrtime.bigint();
        const ch = await connectLink({ host: HOST, port: path3[0].orPort, expectedIdentity: path3[0].identity });
        linkMs += Number(process.hrtime.bigint() - t) / 1e6;
        ch.close();
        t = process.hrtime.bigint();
        const c = await buildCircuit(path3);
        build += Number(process.hrtime.bigint() - t) / 1e6;
        const { stream } = await c.openStream({ kind: 'begin', host: HOST, port: onePort });
        stream.write('go');
        await new Promise((r) => stream.once('data', r));
        ttfb += Number(process.hrtime.bigint() - t) / 1e6;
        stream.destroy();
        c.destroy();
        c.link.ch.close();
        t = process.hrtime.bigint();
        await new Promise<void>((resolve) => { const s = net.connect(onePort, HOST, () => s.write('go')); s.once('data', () => { s.destroy(); resolve(); }); });
        rawTtfb += Number(process.hrtime.bigint() - t) / 1e6;
      }
      rows.push({ group: 'circuit', name: 'circuit build time (link + CREATE2 + 2×EXTEND2)', value: build / n, unit: 'ms', baseline: { name: 'one TLS link handshake', value: linkMs / n, unit: 'ms' } });
      rows.push({ group: 'circuit', name: 'time to first byte on a fresh circuit', value: ttfb / n, unit: 'ms', baseline: { name: 'raw TCP connect + first byte', value: rawTtfb / n, unit: 'ms' } });

      // Memory per idle circuit: client state plus the state at all three relays.
      const k = quick ? 50 : 200;
      // The links closed above end gracefully and are destroyed up to 2 s later (GRACEFUL_CLOSE_MS
      // in src/link/channel.ts); measuring before then counted their release against the new
      // circuits and could give a negative figure.
      await new Promise((r) => setTimeout(r, 2500));
      const m0 = await settledMemory();
      const idle: ClientCircuit[] = [];
      for (let i = 0; i < k; i++) {
        const c = ClientCircuit.allocate(link);
        await c.create(path3[0]);
        await c.extend(path3[1]);
        await c.extend(path3[2]);
        idle.push(c);
      }
      const m1 = await settledMemory();
      const per = ((m1.heapUsed + m1.external) - (m0.heapUsed + m0.external)) / k / 1024;
      const sockets: net.Socket[] = [];
      const r0 = await settledMemory();
      for (let i = 0; i < k; i++) sockets.push(await new Promise<net.Socket>((r) => { const s = net.connect(onePort, HOST, () => r(s)); }));
      const r1 = await settledMemory();
      const perSock = ((r1.heapUsed + r1.external) - (r0.heapUsed + r0.external)) / k / 1024;
      rows.push({ group: 'circuit', name: `memory per idle 3-hop circuit (client + 3 relays, ${k} circuits)`, value: per, unit: 'KiB', baseline: { name: 'idle raw TCP connection (both ends)', value: perSock, unit: 'KiB' } });
      for (const s of sockets) s.destroy();
      for (const c of idle) c.destroy();
      link.ch.close();
    } finally {
      for (const nd of nodes) { await nd.rc.close(); await nd.listener.close(); await fsp.rm(nd.dir, { recursive: true, force: true }); }
      one.close();
      four.close();
    }
    return rows;
  },
};

export default mod;
