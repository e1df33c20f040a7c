// Hostile load on running daemons (the "Hostile peers" load part), with real processes started by
// `npm start`'s launcher (test/helpers/localnet.ts): a CREATE2 flood from one address at a relay
// while an honest client on 127.0.0.2 builds circuits and downloads; 1,000 concurrent circuits
// through one relay (memory per circuit); a RESOLVE flood at an exit; slow-loris and oversized
// bodies on every HTTP port; junk at a storage port. Figures only — nothing here asserts a time.
// `npm run bench -- --only hostile [--quick]`.
import http from 'node:http';
import net from 'node:net';
import type { BenchModule, BenchRow } from './types';
import { randomBytes, sha256 } from '../../src/crypto/primitives';
import { connectLink, type Channel } from '../../src/link';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import type { ConsensusRelay } from '../../src/dir/types';
import {
  cpuSeconds, metric, rssBytes, scrape, startContentServer, startLocalNet, type LocalNet, type NetNode,
} from '../../test/helpers/localnet';
import { honestDownload, hopOf, startFlooder } from '../../test/helpers/flood';

const G = 'hostile';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

async function link(r: ConsensusRelay, localAddress?: string): Promise<Channel> {
  return connectLink({ host: '127.0.0.1', port: r.orPort, expectedIdentity: r.identity, localAddress, timeoutMs: 30_000 });
}

/** One HTTP request; resolves with status and milliseconds (0 status: connection failed). */
function get(port: number, p: string, localAddress?: string): Promise<{ status: number; ms: number }> {
  const t = Date.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, localAddress, timeout: 60_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Date.now() - t }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, ms: Date.now() - t }));
  });
}

/** Honest downloads one after another for `ms`: completed, failed (by code), mean ms per download. */
async function honestFor(ms: number, run: () => Promise<{ ok: boolean; bytes: number; code?: string }>): Promise<{ ok: number; fail: number; codes: string; meanMs: number }> {
  const end = Date.now() + ms;
  let ok = 0, fail = 0, spent = 0;
  const codes = new Map<string, number>();
  while (Date.now() < end) {
    const t = Date.now();
    const r = await run();
    spent += Date.now() - t;
    if (r.ok) ok++;
    else { fail++; codes.set(r.code ?? 'SHORT', (codes.get(r.code ?? 'SHORT') ?? 0) + 1); }
  }
  return { ok, fail, codes: [...codes].map(([k, v]) => `${k} ${v}`).join(', ') || 'none', meanMs: ok + fail ? spent / (ok + fail) : 0 };
}

async function create2Flood(net0: LocalNet, consensus: ConsensusRelay[], target: NetNode, quick: boolean, rows: BenchRow[], body: Buffer, webPort: number): Promise<void> {
  const relay = consensus.find((r) => r.fingerprint === target.identity)!;
  const exit = consensus.find((r) => r.fingerprint === net0.exits[0].identity)!;
  const middle = consensus.find((r) => r.fingerprint !== relay.fingerprint && r.fingerprint !== exit.fingerprint)!;
  const window = quick ? 10_000 : 30_000;
  const dl = () => honestDownload([relay, middle, exit], '127.0.0.2', webPort, body);
  // Baseline: the same honest client, same relay, no flood.
  const base = await honestFor(window, dl);
  for (const { links, valid } of [{ links: 8, valid: true }, { links: 8, valid: false }, { links: 2, valid: true }]) {
    const kind = `${links} links, ${valid ? 'valid ntor onionskins' : 'random onionskins'}`;
    const rss0 = rssBytes(target.pid);
    const cpu0 = cpuSeconds(target.pid);
    const before = await scrape(target.ports.metrics);
    // The attacker: its own process, links from 127.0.0.1, CREATE2 as fast as the links take them.
    const flooder = startFlooder(relay, { localAddress: '127.0.0.1', links, valid });
    await flooder.started;
    let peakRss = rss0;
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssBytes(target.pid)); }, 250);
    const t0 = Date.now();
    const during = await honestFor(window, dl);
    const secs = (Date.now() - t0) / 1000;
    const counts = await flooder.stop();
    clearInterval(sampler);
    const after = await scrape(target.ports.metrics);
    const cpu = cpuSeconds(target.pid) - cpu0;
    const lag = metric(after, 'nodejs_eventloop_lag_p99_seconds');
    const refusedRate = metric(after, 'bitcloud_dos_refusals_total', { kind: 'circuit_rate' }) - metric(before, 'bitcloud_dos_refusals_total', { kind: 'circuit_rate' });
    rows.push(
      { group: G, name: `CREATE2 flood from 127.0.0.1 (${kind}): CREATE2 sent`, value: counts.sent / secs, unit: 'cells/s', note: `${counts.sent} in ${secs.toFixed(1)} s; ${counts.created} CREATED2, ${counts.refused} DESTROY(RESOURCELIMIT) (relay counted ${refusedRate} circuit_rate refusals), ${counts.other} other` },
      { group: G, name: `CREATE2 flood (${kind}): relay RSS growth (peak − before)`, value: (peakRss - rss0) / MiB, unit: 'MiB', baseline: { name: 'RSS before', value: rss0 / MiB, unit: 'MiB' } },
      { group: G, name: `CREATE2 flood (${kind}): relay CPU`, value: cpu / secs, unit: 'cores', note: `event-loop lag p99 ${(lag * 1000).toFixed(1)} ms` },
      { group: G, name: `CREATE2 flood (${kind}): honest client (127.0.0.2) 3-hop ${(body.length / 1024).toFixed(0)} KiB downloads completed during the flood`, value: during.ok, unit: 'downloads', baseline: { name: 'same client, no flood, same time', value: base.ok, unit: 'downloads' }, note: `${during.fail} failed (${during.codes}); mean ${during.meanMs.toFixed(0)} ms per download vs ${base.meanMs.toFixed(0)} ms without flood` },
    );
  }
}

async function manyCircuits(consensus: ConsensusRelay[], target: NetNode, quick: boolean, rows: BenchRow[]): Promise<void> {
  const relay = consensus.find((r) => r.fingerprint === target.identity)!;
  const n = quick ? 300 : 1000;
  // Two links per source address stay under circuitMinConnections (3): no creation bucket applies,
  // as for a busy honest client; 5 addresses × 2 links.
  const links: ClientLink[] = [];
  for (let a = 0; a < 5; a++) for (let k = 0; k < 2; k++) links.push(new ClientLink(await link(relay, `127.0.1.${a + 1}`)));
  const rss0 = rssBytes(target.pid);
  const circs: ClientCircuit[] = [];
  let failed = 0;
  const t0 = Date.now();
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => {
      const c = ClientCircuit.allocate(links[(i + j) % links.length]);
      try { await c.create(hopOf(relay)); circs.push(c); } catch { failed++; }
    }));
  }
  const ms = Date.now() - t0;
  await sleep(1000);
  const rss1 = rssBytes(target.pid);
  const open = metric(await scrape(target.ports.metrics), 'bitcloud_circuits_open');
  for (const c of circs) c.destroy();
  for (const l of links) l.ch.close();
  rows.push(
    { group: G, name: `${n} concurrent circuits through one relay: built`, value: circs.length, unit: 'circuits', note: `${failed} failed; ${open} open per the relay's metrics; ${(ms / 1000).toFixed(1)} s to build` },
    { group: G, name: 'memory per open circuit at the relay (RSS delta / circuits)', value: circs.length ? (rss1 - rss0) / circs.length / 1024 : 0, unit: 'KiB', baseline: { name: 'RSS before', value: rss0 / MiB, unit: 'MiB' } },
  );
}

async function resolveFlood(consensus: ConsensusRelay[], exitNode: NetNode, quick: boolean, rows: BenchRow[]): Promise<void> {
  const exit = consensus.find((r) => r.fingerprint === exitNode.identity)!;
  const others = consensus.filter((r) => r.fingerprint !== exit.fingerprint && !r.roles.includes('exit'));
  const circuits: ClientCircuit[] = [];
  for (let i = 0; circuits.length < 8 && i < 32; i++) {
    try {
      const c = ClientCircuit.allocate(new ClientLink(await link(others[i % others.length])));
      await c.create(hopOf(others[i % others.length]));
      await c.extend(hopOf(others[(i + 1) % others.length]));
      await c.extend(hopOf(exit));
      circuits.push(c);
    } catch { /* a busy hop: try another pair */ }
  }
  if (circuits.length === 0) throw new Error('no circuit to the exit could be built');
  const per = quick ? 48 : 200;
  const answers = { addr: 0, transient: 0, nontransient: 0, failed: 0 };
  const t0 = Date.now();
  await Promise.all(circuits.map(async (c, ci) => {
    for (let i = 0; i < per; i += 8) {
      await Promise.all(Array.from({ length: 8 }, async (_, j) => {
        try {
          const a = await c.resolve(`h${ci}-${i + j}-${randomBytes(4).toString('hex')}.invalid`, 30_000);
          if (a[0].type === 'error-transient') answers.transient++;
          else if (a[0].type === 'error-nontransient') answers.nontransient++;
          else answers.addr++;
        } catch { answers.failed++; }
      }));
    }
  }));
  const secs = (Date.now() - t0) / 1000;
  // The exit still serves a name that resolves (localhost is answered without a query).
  const probe = await circuits[0].resolve('localhost').then((a) => a[0].type, () => 'failed');
  for (const c of circuits) c.destroy();
  const total = circuits.length * per;
  rows.push(
    { group: G, name: 'RESOLVE flood at an exit: answered per second', value: (total - answers.failed) / secs, unit: 'RESOLVED/s', note: `${total} RESOLVE over 8 circuits, 8 pending per circuit at a time: ${answers.nontransient} NXDOMAIN, ${answers.transient} refused (limit), ${answers.failed} unanswered; localhost probe after: ${probe}` },
  );
}

/** A SOCKS5 CONNECT through the proxy to `host`:`port` (no auth); the socket once the proxy said yes. */
function socksConnect(socksPort: number, host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socksPort, '127.0.0.1');
    s.on('error', reject);
    let stage = 0;
    let buf = Buffer.alloc(0);
    s.once('connect', () => s.write(Buffer.from([5, 1, 0])));
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        const h = Buffer.from(host);
        s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, h.length]), h, Buffer.from([port >> 8, port & 255])]));
      }
      if (stage === 1 && buf.length >= 10) {
        s.off('data', onData);
        if (buf[1] !== 0) { s.destroy(); reject(new Error(`SOCKS reply ${buf[1]}`)); return; }
        s.removeAllListeners('error');
        s.on('error', () => {});
        resolve(s);
      }
    };
    s.on('data', onData);
  });
}

interface HttpTarget { name: string; path: string; open: () => Promise<net.Socket> | net.Socket; post: string }

/** One request over a socket from `open`; status and milliseconds (0: no answer). */
async function rawGet(t: HttpTarget): Promise<{ status: number; ms: number }> {
  const t0 = Date.now();
  try {
    const s = await t.open();
    return await new Promise((resolve) => {
      let head = '';
      const done = (status: number) => { s.destroy(); resolve({ status, ms: Date.now() - t0 }); };
      const timer = setTimeout(() => done(0), 60_000);
      s.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        if (m) { clearTimeout(timer); done(Number(m[1])); }
      });
      s.on('close', () => { clearTimeout(timer); resolve({ status: 0, ms: Date.now() - t0 }); });
      s.write(`GET ${t.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    });
  } catch {
    return { status: 0, ms: Date.now() - t0 };
  }
}

/** An oversized chunked POST: bytes written before the server answered or closed, and the status. */
async function rawOversized(t: HttpTarget, bytes: number): Promise<{ status: number; sent: number }> {
  let s: net.Socket;
  try { s = await t.open(); } catch { return { status: 0, sent: 0 }; }
  return new Promise((resolve) => {
    let sent = 0;
    let status = 0;
    let over = false;
    const finish = () => { if (over) return; over = true; s.destroy(); resolve({ status, sent }); };
    s.on('data', (d: Buffer) => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(d.toString('latin1'));
      if (m && !status) { status = Number(m[1]); setTimeout(finish, 200); }
    });
    s.on('close', finish);
    s.on('error', finish);
    s.write(`POST ${t.post} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = Buffer.concat([Buffer.from(`${(64 * 1024).toString(16)}\r\n`), Buffer.alloc(64 * 1024, 1), Buffer.from('\r\n')]);
    const pump = () => {
      while (!over && sent < bytes) {
        sent += 64 * 1024;
        if (!s.write(chunk)) { s.once('drain', pump); return; }
      }
      if (!over) { s.write('0\r\n\r\n'); setTimeout(finish, 5000); }
    };
    pump();
  });
}

/** Every HTTP port of the network: slow-loris (half a header, then a trickle) and an oversized body on each. */
async function httpAbuse(net0: LocalNet, quick: boolean, rows: BenchRow[]): Promise<void> {
  const tcp = (port: number) => () => { const s = net.connect(port, '127.0.0.1'); s.on('error', () => {}); return new Promise<net.Socket>((r, j) => { s.once('connect', () => r(s)); s.once('error', j); }); };
  const auth = net0.authorities[0];
  const relay = net0.relays.find((r) => r.role === 'relay')!;
  const exit = net0.exits[0];
  const store = net0.storage[0];
  const targets: HttpTarget[] = [
    { name: 'authority HTTP (receipts)', port: auth.ports.http, path: '/bitcloud/status', post: '/bitcloud/receipts' },
    { name: 'authority HTTP (descriptor)', port: auth.ports.http, path: '/bitcloud/status', post: '/bitcloud/descriptor' },
    { name: 'authority MetricsPort', port: auth.ports.metrics, path: '/metrics', post: '/metrics' },
    { name: 'relay DirPort', port: relay.ports.dir, path: '/bitcloud/status', post: '/bitcloud/status' },
    { name: 'relay MetricsPort (status page)', port: relay.ports.metrics, path: '/metrics', post: '/status.json' },
    { name: 'exit DirPort', port: exit.ports.dir, path: '/bitcloud/status', post: '/bitcloud/status' },
    { name: 'exit MetricsPort', port: exit.ports.metrics, path: '/metrics', post: '/metrics' },
    ...(store ? [{ name: 'storage node MetricsPort', port: store.ports.metrics, path: '/metrics', post: '/metrics' }] : []),
    { name: 'client MetricsPort', port: net0.proxy.ports.metrics, path: '/metrics', post: '/metrics' },
  ].map((t) => ({ name: t.name, path: t.path, post: t.post, open: tcp(t.port) }));
  // The .bitcloud gateway is served inside the proxy, reached by SOCKS CONNECT to a .bitcloud name
  // (only with storage nodes: without them it has nothing to serve).
  if (store) targets.push({ name: '.bitcloud gateway (through SOCKS)', path: '/', post: '/', open: () => socksConnect(net0.socksPort, 'aaaa.bbbb.bitcloud', 80) });
  const loris = quick ? 100 : 400;
  const seen = new Set<string>();
  for (const t of targets) {
    const key = t.name.replace(/ \(.*\)$/, '');
    if (!seen.has(key)) {
      seen.add(key);
      const before = await rawGet(t);
      const socks: net.Socket[] = [];
      await Promise.all(Array.from({ length: loris }, async () => {
        try {
          const s = await t.open();
          s.on('error', () => {});
          s.write(`GET ${t.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
          socks.push(s);
        } catch { /* refused at connect: counted as not open below */ }
      }));
      const trickle = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('X-a: b\r\n'); }, 1000);
      await sleep(2000);
      const during = await rawGet(t);
      clearInterval(trickle);
      const stillOpen = socks.filter((s) => !s.destroyed).length;
      for (const s of socks) s.destroy();
      rows.push({
        group: G, name: `slow-loris (${loris} sockets) on ${key}: a normal request during it`, value: during.ms, unit: 'ms',
        baseline: { name: 'same request before', value: before.ms, unit: 'ms' }, note: `status ${during.status}; ${stillOpen} slow sockets still open after 2 s`,
      });
    }
    const r = await rawOversized(t, 64 * MiB);
    rows.push({ group: G, name: `oversized body (64 MiB offered, chunked POST ${t.post}) to ${t.name}: bytes written before the answer or close`, value: r.sent / MiB, unit: 'MiB', note: `status ${r.status || 'none (closed)'}` });
  }
}

async function storageJunk(net0: LocalNet, quick: boolean, rows: BenchRow[]): Promise<void> {
  const store = net0.storage?.[0];
  if (!store) return;
  const rss0 = rssBytes(store.pid);
  const conns = quick ? 50 : 200;
  let closedByNode = 0;
  const socks: net.Socket[] = [];
  await Promise.all(Array.from({ length: conns }, () => new Promise<void>((resolve) => {
    const s = net.connect(store.ports.storage, '127.0.0.1');
    s.on('error', () => {});
    s.on('close', () => { closedByNode++; });
    s.once('connect', () => { s.write(randomBytes(64 * 1024)); resolve(); });
    s.once('error', () => resolve());
    socks.push(s);
  })));
  // Frames that declare 16 MiB and send a few bytes (over the circuit-free storage port, TLS aside,
  // the node must close these or hold only what arrived).
  await sleep(3000);
  const rss1 = rssBytes(store.pid);
  for (const s of socks) s.destroy();
  const alive = await get(store.ports.metrics, '/metrics');
  rows.push({
    group: G, name: `junk at a storage port (${conns} connections × 64 KiB random)`, value: (rss1 - rss0) / MiB, unit: 'MiB RSS growth',
    baseline: { name: 'RSS before', value: rss0 / MiB, unit: 'MiB' }, note: `${closedByNode} closed by the node; metrics after: status ${alive.status}`,
  });
}

const mod: BenchModule = {
  name: 'hostile',
  async run({ quick, steps = null }) {
    const rows: BenchRow[] = [];
    const body = randomBytes(quick ? 256 * 1024 : MiB);
    const web = await startContentServer(body);
    const net0 = await startLocalNet({ relays: 5, exits: 1, storage: quick ? 0 : 6, timeoutMs: 240_000 });
    try {
      const consensus = (await net0.consensus()).relays;
      const plain = net0.relays.filter((r) => r.role === 'relay');
      const sha = sha256(body).toString('hex').slice(0, 8);
      process.stderr.write(`hostile: network up (${consensus.length} relays listed), body ${sha}\n`);
      // `--steps create2,circuits,resolve,http,storage` runs some of them (default: all).
      const step = async (name: string, f: () => Promise<void>) => {
        if (steps && !steps.some((k) => name.toLowerCase().includes(k))) return;
        try { await f(); } catch (e) { rows.push({ group: G, name: `${name}: not measured`, value: 0, unit: '', note: String((e as Error).message ?? e) }); }
      };
      await step('CREATE2 flood', () => create2Flood(net0, consensus, plain[0], quick, rows, body, web.port));
      await step('many circuits', () => manyCircuits(consensus, plain[1], quick, rows));
      await step('RESOLVE flood', () => resolveFlood(consensus, net0.exits[0], quick, rows));
      await step('HTTP abuse', () => httpAbuse(net0, quick, rows));
      await step('storage junk', () => storageJunk(net0, quick, rows));
    } finally {
      await net0.stop();
      await web.close();
    }
    return rows;
  },
};
export default mod;
