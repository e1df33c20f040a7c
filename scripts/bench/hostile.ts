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
import { CellCommand, type Cell } from '../../src/wire/cell';
import { DestroyReason, decodeDestroy, encodeCreate2 } from '../../src/wire/messages';
import { ntorClientCreate } from '../../src/crypto/ntor';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import type { ConsensusRelay } from '../../src/dir/types';
import {
  metric, rssBytes, scrape, startContentServer, startLocalNet, type LocalNet, type NetNode,
} from '../../test/helpers/localnet';

const G = 'hostile';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

function hopOf(r: ConsensusRelay): HopTarget {
  return { identity: r.identity, fingerprint: r.fingerprint, onionKey: r.onionKey, address: r.address, orPort: r.orPort };
}

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

/** An oversized POST: how many bytes the server took before answering or closing, and the status. */
function oversized(port: number, p: string, bytes: number): Promise<{ status: number; sent: number }> {
  return new Promise((resolve) => {
    let sent = 0;
    let status = 0;
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST', headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } }, (res) => {
      status = res.statusCode ?? 0;
      res.resume();
    });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
      req.end();
    };
    req.on('error', () => {});
    req.on('close', () => resolve({ status, sent }));
    pump();
  });
}

async function create2Flood(net0: LocalNet, consensus: ConsensusRelay[], target: NetNode, quick: boolean, rows: BenchRow[], body: Buffer, webPort: number): Promise<void> {
  const relay = consensus.find((r) => r.fingerprint === target.identity)!;
  const others = consensus.filter((r) => r.fingerprint !== relay.fingerprint);
  const exitNode = net0.exits[0];
  const exit = consensus.find((r) => r.fingerprint === exitNode.identity)!;
  const middle = others.find((r) => r.fingerprint !== exit.fingerprint)!;
  const rss0 = rssBytes(target.pid);
  // The attacker: 8 links from 127.0.0.1, CREATE2 with valid onionskins as fast as it can write.
  const links = await Promise.all(Array.from({ length: 8 }, () => link(relay)));
  const outcome = { created: 0, refused: 0, other: 0 };
  for (const ch of links) {
    ch.on('cell', (c: Cell) => {
      if (c.command === CellCommand.CREATED2) outcome.created++;
      else if (c.command === CellCommand.DESTROY) { if (decodeDestroy(c.payload) === DestroyReason.RESOURCELIMIT) outcome.refused++; else outcome.other++; }
    });
  }
  const perLink = quick ? 500 : 2000;
  const t0 = Date.now();
  let sent = 0;
  let peakRss = rss0;
  const flood = (async () => {
    for (let i = 0; i < perLink; i++) {
      for (const ch of links) {
        if (ch.closed) continue;
        const { onionskin } = ntorClientCreate({ id: relay.identity, onionKey: relay.onionKey });
        ch.send(ch.allocateCircId(), CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin }));
        sent++;
      }
      if (i % 50 === 0) { peakRss = Math.max(peakRss, rssBytes(target.pid)); await sleep(1); }
    }
  })();
  // Meanwhile an honest client on 127.0.0.2 builds circuits through the flooded relay and downloads.
  let honestOk = 0, honestFail = 0, honestBytes = 0;
  const honestCodes = new Map<string, number>();
  const honest = (async () => {
    const end = Date.now() + (quick ? 10_000 : 30_000);
    while (Date.now() < end) {
      let l: ClientLink | null = null;
      try {
        l = new ClientLink(await link(relay, '127.0.0.2'));
        const c = ClientCircuit.allocate(l);
        await c.create(hopOf(relay));
        await c.extend(hopOf(middle));
        await c.extend(hopOf(exit));
        const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: webPort });
        stream.write(`GET /bytes/0/${body.length} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        const got = await new Promise<number>((resolve, reject) => {
          let n = 0;
          stream.on('data', (d: Buffer) => { n += d.length; });
          stream.on('end', () => resolve(n));
          stream.on('error', reject);
        });
        honestBytes += got;
        if (got >= body.length) honestOk++; else honestFail++;
        c.destroy();
      } catch (e) {
        honestFail++;
        const code = (e as { code?: string }).code ?? 'ERROR';
        honestCodes.set(code, (honestCodes.get(code) ?? 0) + 1);
      } finally {
        l?.ch.close();
      }
    }
  })();
  await flood;
  await honest;
  for (let i = 0; i < 100 && outcome.created + outcome.refused + outcome.other < sent; i++) await sleep(100);
  const secs = (Date.now() - t0) / 1000;
  peakRss = Math.max(peakRss, rssBytes(target.pid));
  for (const ch of links) ch.destroy();
  rows.push(
    { group: G, name: 'CREATE2 flood from one address: CREATE2 sent', value: sent, unit: 'cells', note: `8 links, ${secs.toFixed(1)} s` },
    { group: G, name: 'CREATE2 flood: answered CREATED2 (within the bucket)', value: outcome.created, unit: 'circuits' },
    { group: G, name: 'CREATE2 flood: refused DESTROY(RESOURCELIMIT)', value: outcome.refused, unit: 'circuits' },
    { group: G, name: 'CREATE2 flood: relay RSS growth (peak − before)', value: (peakRss - rss0) / MiB, unit: 'MiB', baseline: { name: 'RSS before', value: rss0 / MiB, unit: 'MiB' } },
    { group: G, name: 'CREATE2 flood: honest client (127.0.0.2) 3-hop downloads completed', value: honestOk, unit: 'downloads', note: `${honestFail} failed (${[...honestCodes].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}), ${(honestBytes / MiB).toFixed(1)} MiB` },
  );
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

/** Slow-loris (sockets that send half a header and then trickle) and oversized bodies. */
async function httpAbuse(net0: LocalNet, quick: boolean, rows: BenchRow[]): Promise<void> {
  const auth = net0.authorities[0];
  const relay = net0.relays[0];
  const targets: Array<{ name: string; port: number; path: string }> = [
    { name: 'authority HTTP', port: auth.ports.http, path: '/bitcloud/status' },
    { name: 'authority MetricsPort', port: auth.ports.metrics, path: '/metrics' },
    { name: 'relay DirPort', port: relay.ports.dir, path: '/bitcloud/status' },
    { name: 'relay MetricsPort', port: relay.ports.metrics, path: '/metrics' },
    { name: 'client MetricsPort', port: net0.proxy.ports.metrics, path: '/metrics' },
  ];
  const loris = quick ? 100 : 400;
  for (const t of targets) {
    const before = await get(t.port, t.path);
    const socks: net.Socket[] = [];
    for (let i = 0; i < loris; i++) {
      const s = net.connect(t.port, '127.0.0.1');
      s.on('error', () => {});
      s.write(`GET ${t.path} HTTP/1.1\r\nHost: x\r\n`);
      socks.push(s);
    }
    const trickle = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('X-a: b\r\n'); }, 1000);
    await sleep(2000);
    const during = await get(t.port, t.path);
    clearInterval(trickle);
    const stillOpen = socks.filter((s) => !s.destroyed).length;
    for (const s of socks) s.destroy();
    rows.push({
      group: G, name: `slow-loris (${loris} sockets) on ${t.name}: a normal request during it`, value: during.ms, unit: 'ms',
      baseline: { name: 'same request before', value: before.ms, unit: 'ms' }, note: `status ${during.status}; ${stillOpen} slow sockets still open after 2 s`,
    });
  }
  for (const [name, port, p] of [['authority /bitcloud/receipts', auth.ports.http, '/bitcloud/receipts'], ['authority /bitcloud/descriptor', auth.ports.http, '/bitcloud/descriptor']] as const) {
    const r = await oversized(port, p, 64 * MiB);
    rows.push({ group: G, name: `oversized body (64 MiB offered) to ${name}: bytes written before the answer or close`, value: r.sent / MiB, unit: 'MiB', note: `status ${r.status}` });
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
  async run({ quick }) {
    const rows: BenchRow[] = [];
    const body = randomBytes(quick ? 256 * 1024 : MiB);
    const web = await startContentServer(body);
    const net0 = await startLocalNet({ relays: 5, exits: 1, storage: quick ? 0 : 6, timeoutMs: 240_000 });
    try {
      const consensus = (await net0.consensus()).relays;
      const plain = net0.relays.filter((r) => r.role === 'relay');
      const sha = sha256(body).toString('hex').slice(0, 8);
      process.stderr.write(`hostile: network up (${consensus.length} relays listed), body ${sha}\n`);
      const step = async (name: string, f: () => Promise<void>) => {
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
