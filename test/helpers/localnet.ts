// A whole local network as a user starts it: `npm start` (scripts/localnet.ts) as a child
// process in a temporary folder, on a free port range of 127.0.0.1, waited on until
// DIR/network.json says `ready: true`. Stopping SIGTERMs the launcher (which stops its nodes),
// then SIGKILLs by PID every node of network.json still alive — and a process-exit hook does
// the same if the test run dies first. Also: the observation tools the integration tests and
// the circuit bench share (Prometheus scrapes, curl, /proc CPU and RSS, `ss` sockets).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, freePorts, startDaemon, type Daemon } from './daemon';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import type { VerifiedConsensus } from '../../src/dir/types';

export interface NetNode {
  role: 'authority' | 'relay' | 'exit' | 'storage' | 'client';
  name: string;
  /** 64 hex characters, or null (the client). */
  identity: string | null;
  /** {http, metrics} for authorities, {or, dir, metrics} for relays, {or, storage, metrics} for storage nodes, {socks, metrics} for the client (metrics: the MetricsPort, SPEC.md §6.10). */
  ports: Record<string, number>;
  pid: number;
  running: boolean;
  dataDir: string;
  config: string;
  log: string;
  /** With --hosts: the node's own network namespace, address, link and bandwidth cap. */
  host?: { ns: string; address: string; veth: string; capBytesPerSec: number };
}

export interface NetworkJson {
  launcherPid: number;
  clientConfig: string;
  socks: string;
  period: number;
  ready: boolean;
  nodes: NetNode[];
  /** With --hosts: the test network's name prefix, bridge, /16s, web server address and latency note. */
  hosts?: { prefix: string; bridge: string; subnets: string[]; webAddress: string; latency: string };
}

export interface LocalNet {
  dir: string;
  launcherPid: number;
  socksPort: number;
  clientConfig: string;
  /** As network.json described them once ready. */
  nodes: NetNode[];
  /** Relays and exits (every node with an ORPort). */
  relays: NetNode[];
  exits: NetNode[];
  authorities: NetNode[];
  /** The launcher's SOCKS proxy process. */
  proxy: NetNode;
  /** The launcher's own output so far (stdout and stderr). */
  output(): string;
  /** network.json as it is now. */
  read(): NetworkJson;
  /** A verified consensus from the authorities (relays with onion keys, for hand-made circuits). */
  consensus(): Promise<VerifiedConsensus>;
  /** Storage nodes (store1..), when started with `storage`. */
  storage: NetNode[];
  /** Stop everything this network started; removes the folder unless `keep`. Idempotent. */
  stop(): Promise<void>;
}

export interface LocalNetOptions {
  relays?: number;
  exits?: number;
  /** Storage nodes (the launcher's --storage). Default 0: the circuit tests need none. */
  storage?: number;
  /** Moderators (the launcher's --moderators): storage node I subscribes to moderator I. Default 0. */
  moderators?: number;
  /** Run the launcher's demo (download, and put/get when there are 6 storage nodes) before ready. */
  demo?: boolean;
  /** Every storage node hidden (the launcher's --hidden-storage, SPEC.md §9.21). */
  hiddenStorage?: boolean;
  /** Consensus period, seconds (the launcher's --period). Default 5: a quick start. */
  period?: number;
  /** Until network.json says ready. Default 150 s. */
  timeoutMs?: number;
  /** Keep the folder after stop() (debugging). */
  keep?: boolean;
  /** Extra environment for the launcher and every node it starts (e.g. NODE_OPTIONS with a preload hook). */
  env?: Record<string, string>;
}

const live = new Map<number, { launcher: ChildProcess; dir: string }>();
process.once('exit', () => { for (const l of live.values()) killAllSync(l.dir, l.launcher.pid!); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True when `pid` is alive AND is the process we started (its command line names `mark`). */
function isOurs(pid: number, mark: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark);
  } catch {
    return false;
  }
}

function readNetworkJson(dir: string): NetworkJson | null {
  try { return JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as NetworkJson; } catch { return null; }
}

/** SIGKILL the launcher and every node of network.json that is still ours (by PID). */
function killAllSync(dir: string, launcherPid: number): void {
  const nj = readNetworkJson(dir);
  const victims: number[] = [];
  if (isOurs(launcherPid, dir)) victims.push(launcherPid);
  for (const n of nj?.nodes ?? []) if (isOurs(n.pid, n.config)) victims.push(n.pid);
  for (const pid of victims) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

/** A base port B with B..B+count-1 free on 127.0.0.1 (the launcher uses B..B+99). */
export async function freePortRange(count = 100, avoid: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below Linux's ephemeral range (32768+), away from the defaults (27000 launcher, 27100 tor-testnet).
    const base = 12_000 + 100 * Math.floor(Math.random() * 190);
    if (base >= 26_900 && base <= 27_200) continue;
    if (avoid.has(base)) continue;
    const ports = Array.from({ length: count }, (_, i) => base + i);
    const ok = await Promise.all(ports.map((p) => new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error(`no free range of ${count} ports on 127.0.0.1`);
}

/** Start `npm start` (the launcher) with --no-demo and wait for its network to be ready. */
export async function startLocalNet(o: LocalNetOptions = {}): Promise<LocalNet> {
  const tried = new Set<number>();
  for (let attempt = 1; ; attempt++) {
    const base = await freePortRange(100, tried);
    tried.add(base);
    try {
      return await launch(base, o);
    } catch (e) {
      // Someone took a port between our check and the launcher's: try another range. On a
      // machine loaded by other runs a first start can also miss the launcher's consensus
      // deadline: one more try, in a fresh folder.
      const msg = (e as Error).message;
      if (attempt < 3 && /ports already in use/.test(msg)) continue;
      if (attempt < 2 && /did not come up/.test(msg)) { process.stderr.write(`local network: retrying once after: ${msg.split('\n')[0]}\n`); continue; }
      throw e;
    }
  }
}

async function launch(base: number, o: LocalNetOptions): Promise<LocalNet> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-localnet-'));
  const socksPort = base + 90;
  const args = [
    path.join(REPO_ROOT, 'bin', 'run-ts.js'), path.join(REPO_ROOT, 'scripts', 'localnet.ts'),
    '--dir', dir, '--base-port', String(base), '--socks-port', String(socksPort),
    '--relays', String(o.relays ?? 6), '--exits', String(o.exits ?? 2), '--storage', String(o.storage ?? 0), '--moderators', String(o.moderators ?? 0),
    '--period', String(o.period ?? 5), ...(o.demo ? [] : ['--no-demo']), ...(o.hiddenStorage ? ['--hidden-storage'] : []),
  ];
  const launcher = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  if (!launcher.pid) throw new Error('could not start the launcher');
  const launcherPid = launcher.pid;
  live.set(launcherPid, { launcher, dir });
  let out = '';
  launcher.stdout!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  launcher.stderr!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  let exited = false;
  const exitedP = new Promise<void>((r) => launcher.once('exit', () => { exited = true; r(); }));

  let stopped = false;
  const stop = async (keep = o.keep ?? false): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) { try { process.kill(launcherPid, 'SIGTERM'); } catch { /* gone */ } }
    await Promise.race([exitedP, sleep(25_000)]);
    killAllSync(dir, launcherPid);
    // Wait until every node PID is gone, so the next network (or the next test file) has the cores.
    const nj = readNetworkJson(dir);
    for (let i = 0; i < 50 && (nj?.nodes ?? []).some((n) => isOurs(n.pid, n.config)); i++) await sleep(100);
    live.delete(launcherPid);
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  };

  const until = Date.now() + (o.timeoutMs ?? 150_000);
  let nj: NetworkJson | null = null;
  for (;;) {
    nj = readNetworkJson(dir);
    if (nj?.ready) break;
    if (exited || Date.now() > until) {
      const why = exited ? 'the launcher exited' : `not ready after ${o.timeoutMs ?? 150_000} ms`;
      await stop(true); // keep the folder: its logs say why
      throw new Error(`local network: ${why} (logs kept in ${dir}); launcher output:\n${out}`);
    }
    await sleep(250);
  }
  const nodes = nj.nodes;
  const proxy = nodes.find((n) => n.role === 'client');
  if (!proxy) { await stop(); throw new Error('network.json lists no client proxy'); }
  const clientCfg = JSON.parse(fs.readFileSync(nj.clientConfig, 'utf8')) as { authorities: unknown };
  const authorities = parseAuthorityList(clientCfg.authorities);
  return {
    dir, launcherPid, socksPort, clientConfig: nj.clientConfig, nodes, proxy,
    relays: nodes.filter((n) => n.role === 'relay' || n.role === 'exit'),
    exits: nodes.filter((n) => n.role === 'exit'),
    storage: nodes.filter((n) => n.role === 'storage'),
    authorities: nodes.filter((n) => n.role === 'authority'),
    output: () => out,
    read: () => readNetworkJson(dir) ?? nj!,
    async consensus() {
      const got = await fetchVerifiedConsensus(authorities.map((a) => a.url), authorities, { timeoutMs: 5000 });
      if (!got.consensus) throw new Error(`no consensus: ${JSON.stringify(got.failures)}`);
      return got.consensus;
    },
    stop,
  };
}

/**
 * A second SOCKS proxy on the same network, started as a user would (`bitcloud proxy --config
 * FILE`) from a copy of the network's client config with `overrides` (e.g. preemptiveCircuits: 0,
 * so every circuit it counts was built for a request). Stop it with its Daemon's stop() or the
 * daemon helper's stopAll().
 */
export async function startExtraProxy(net0: LocalNet, name: string, overrides: Record<string, unknown> = {}): Promise<{ daemon: Daemon; socksPort: number; metricsPort: number }> {
  const [socksPort, metricsPort] = await freePorts(2);
  const cfg = JSON.parse(fs.readFileSync(net0.clientConfig, 'utf8')) as Record<string, unknown>;
  const file = path.join(net0.dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...cfg, dataDir: path.join(net0.dir, name), socksPort, metricsPort, ...overrides }, null, 2));
  const daemon = startDaemon('bitcloud', ['proxy', '--config', file]);
  await daemon.waitForMsg('SOCKS5 proxy listening', {}, 60_000);
  return { daemon, socksPort, metricsPort };
}

// ---- observing ----

/** One Prometheus text scrape: every sample as {name, labels, value}. */
export interface Sample { name: string; labels: Record<string, string>; value: number }

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

export async function scrape(port: number): Promise<Sample[]> {
  const text = await new Promise<string>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve(body)).on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`metrics on ${port} timed out`)));
    req.on('error', reject);
  });
  return parsePrometheus(text);
}

/** Sum of a metric's samples whose labels include `match`. */
export function metric(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  let v = 0;
  for (const s of samples) if (s.name === name && Object.entries(match).every(([k, x]) => s.labels[k] === x)) v += s.value;
  return v;
}

/** Scrape every relay's /metrics (its MetricsPort, SPEC.md §6.10), by node name. */
export async function scrapeRelays(relays: NetNode[]): Promise<Map<string, Sample[]>> {
  const got = await Promise.all(relays.map(async (r) => [r.name, await scrape(r.ports.metrics)] as const));
  return new Map(got);
}

/** Per relay: after − before of `name` (summed over labels matching `match`). */
export function deltas(before: Map<string, Sample[]>, after: Map<string, Sample[]>, name: string, match: Record<string, string> = {}): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, a] of after) d.set(k, metric(a, name, match) - metric(before.get(k) ?? [], name, match));
  return d;
}

/** Remote ports of the ESTABLISHED TCP connections owned by `pid` (from `ss -tnp`). */
export function establishedPeerPorts(pid: number): number[] {
  const r = spawnSync('ss', ['-tnpH', 'state', 'established'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`);
  const ports: number[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const cols = line.trim().split(/\s+/);
    // Recv-Q Send-Q Local:Port Peer:Port users:(...)
    const peer = cols[3] ?? '';
    const port = Number(peer.slice(peer.lastIndexOf(':') + 1));
    if (Number.isInteger(port)) ports.push(port);
  }
  return ports;
}

/**
 * Bytes received by process `pid` on each established TCP connection, by peer port
 * (`ss -i` bytes_received). Tells a busy link (the guard carrying a transfer) from an idle one.
 */
export function receivedBytesByPeerPort(pid: number): Map<number, number> {
  const r = spawnSync('ss', ['-tnpiH', 'state', 'established'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`);
  const out = new Map<number, number>();
  let port: number | undefined;
  for (const line of r.stdout.split('\n')) {
    if (!/^\s/.test(line)) {
      port = undefined;
      if (!line.includes(`pid=${pid},`)) continue;
      const peer = line.trim().split(/\s+/)[3] ?? '';
      const p = Number(peer.slice(peer.lastIndexOf(':') + 1));
      if (Number.isInteger(p)) port = p;
      continue;
    }
    if (port === undefined) continue;
    const m = /bytes_received:(\d+)/.exec(line);
    out.set(port, (out.get(port) ?? 0) + (m ? Number(m[1]) : 0));
  }
  return out;
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime + stime of a process so far, in seconds (/proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Resident set size of a process, bytes (/proc/PID/status VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export interface CurlResult { code: number; stdout: Buffer; stderr: string }

const curls = new Set<ChildProcess>();
process.once('exit', () => { for (const c of curls) { try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } } });

/**
 * Run /usr/bin/curl with `args`; resolves with its exit code, stdout and stderr. `onStdout`
 * sees the body as it arrives (then stdout is not kept). Killed (SIGKILL, by PID) after `timeoutMs`.
 */
export function curl(args: string[], o: { timeoutMs?: number; onStdout?: (chunk: Buffer) => void; onSpawn?: (pid: number) => void } = {}): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (!c.pid) { reject(new Error('could not start curl')); return; }
    curls.add(c);
    o.onSpawn?.(c.pid);
    const chunks: Buffer[] = [];
    let stderr = '';
    c.stdout!.on('data', (d: Buffer) => { if (o.onStdout) o.onStdout(d); else chunks.push(d); });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => { try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } }, o.timeoutMs ?? 120_000);
    c.once('close', (code, signal) => {
      clearTimeout(t);
      curls.delete(c);
      resolve({ code: code ?? (signal ? 128 : -1), stdout: Buffer.concat(chunks), stderr });
    });
  });
}

/** curl's arguments for a request through a SOCKS5 proxy, names resolved by the proxy (i.e. the exit). */
export function viaSocks(socksPort: number, user?: string): string[] {
  return ['--socks5-hostname', `127.0.0.1:${socksPort}`, ...(user ? ['--proxy-user', `${user}:x`] : [])];
}

// ---- a target server ----

export interface ContentServer {
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * An HTTP server on 127.0.0.1 (the "website" curl fetches through the network).
 * GET /bytes/OFFSET/LEN answers LEN bytes of `body` from OFFSET, wrapping around, with a
 * Content-Length. GET /raw/OFFSET/LEN answers the same bytes close-delimited (no length, no
 * chunking): only a reset tells the client that such a body was cut short.
 */
export async function startContentServer(body: Buffer): Promise<ContentServer> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) { if (head.length > 8192) s.destroy(); return; }
      s.off('data', onData);
      const m = /^GET \/(bytes|raw)\/(\d+)\/(\d+) HTTP\/1\.[01]\r\n/.exec(head);
      if (!m) { s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'); return; }
      const [off, len] = [Number(m[2]) % body.length, Number(m[3])];
      s.write(m[1] === 'bytes'
        ? `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`
        : 'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n');
      sendBody(s, body, off, len);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    get connections() { return connections; },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

/** Write `len` bytes of `body` from `off` (wrapping), 1 MiB views at a time, with backpressure. */
function sendBody(s: net.Socket, body: Buffer, off: number, len: number): void {
  let sent = 0;
  let at = off;
  const pump = (): void => {
    while (sent < len && !s.destroyed) {
      const n = Math.min(1 << 20, len - sent, body.length - at);
      const chunk = body.subarray(at, at + n);
      sent += n;
      at = (at + n) % body.length;
      if (!s.write(chunk)) { s.once('drain', pump); return; }
    }
    if (!s.destroyed) s.end();
  };
  pump();
}

/** The bytes /bytes/OFFSET/LEN or /raw/OFFSET/LEN serve (for comparing hashes). */
export function expectedBytes(body: Buffer, off: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  for (let w = 0, at = off % body.length; w < len;) {
    const n = body.copy(out, w, at, Math.min(body.length, at + (len - w)));
    w += n;
    at = (at + n) % body.length;
  }
  return out;
}
