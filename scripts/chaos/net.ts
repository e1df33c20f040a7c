// The fault suite's hold on a running test network (`npm run chaos`, SPEC.md §6.9, §7.2, §7b.5):
// start the launcher (scripts/localnet.ts, with --hosts when this machine can), read its
// network.json, observe nodes over HTTP (/metrics, /bitcloud/status) at their own addresses, apply
// faults from outside (SIGKILL, SIGSTOP/SIGCONT, link down/up), restart nodes in their namespace,
// and stop everything it started, by PID, then the launcher (which removes namespaces and links).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHash } from '../../src/crypto/primitives';

import { metric, parsePrometheus, type NetNode, type NetworkJson, type Sample } from '../../test/helpers/localnet';
export type { NetNode, NetworkJson };


export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The address a node is reached at from the launcher's namespace. */
export function addrOf(n: NetNode): string {
  return n.host?.address ?? '127.0.0.1';
}

export function alive(pid: number): boolean {
  try { process.kill(pid, 0); } catch { return false; }
  // A zombie or a stopped process still answers kill 0; a zombie is dead for us.
  try { return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')); } catch { return false; }
}

export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}

export interface TestNet {
  dir: string;
  hosts: boolean;
  socksPort: number;
  /** Where the web server listens (and the exits allow). */
  webAddress: string;
  nj: NetworkJson;
  node(name: string): NetNode;
  byRole(...roles: NetNode['role'][]): NetNode[];
  /** Current PID of a node (after restarts). */
  pid(name: string): number;
  kill(name: string, signal: NodeJS.Signals): void;
  /** Start a node again as the launcher did (in its namespace), log appended to its log. */
  restart(name: string, env?: Record<string, string>): number;
  link(name: string, up: boolean): void;
  /** Names deliberately killed and not restarted. */
  killed: Set<string>;
  output(): string;
  stop(): Promise<{ namespaces: number; links: number; processes: number; teardown: string }>;
}

export interface StartOptions {
  hosts: boolean; period: number; relays: number; exits: number; storage: number; caps?: string; timeoutMs?: number;
  /** With hosts: the bandwidth every relay declares, MB/s (default: its cap). */
  declareMBps?: number;
  /** The authorities' weight floor for unmeasured relays, KB/s (launcher default 10 000). */
  unmeasuredCapKBps?: number;
  /** The authorities' capacity probes, seconds per probe (SPEC.md §8.12); absent = none. */
  probeSeconds?: number;
  /** Their `keepPeriods` (SPEC.md §8.12); absent = the launcher's 3. */
  probeKeepPeriods?: number;
}

async function portFree(p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function startTestNet(repo: string, o: StartOptions): Promise<TestNet> {
  let base = 0;
  for (let i = 0; i < 40 && !base; i++) {
    const b = 12_000 + 100 * Math.floor(Math.random() * 190);
    if (b >= 26_900 && b <= 27_200) continue;
    const checks = await Promise.all(Array.from({ length: 100 }, (_, k) => portFree(b + k)));
    if (checks.every(Boolean)) base = b;
  }
  if (!base) throw new Error('no free port range on 127.0.0.1');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-chaos-'));
  const socksPort = base + 90;
  const args = [path.join(repo, 'bin', 'run-ts.js'), path.join(repo, 'scripts', 'localnet.ts'),
    '--dir', dir, '--base-port', String(base), '--socks-port', String(socksPort), '--period', String(o.period),
    '--relays', String(o.relays), '--exits', String(o.exits), '--storage', String(o.storage), '--no-demo',
    // Storage nodes mine identity proofs (SPEC.md §6.4.1) at start, again once a consensus exists: give them time.
    ...(o.storage > 0 ? ['--wait', String(Math.round((o.timeoutMs ?? 420_000) / 1000) - 30)] : []),
    ...(o.hosts ? ['--hosts', '--caps', o.caps ?? '2,5,10,20,50'] : []),
    ...(o.hosts && o.declareMBps !== undefined ? ['--declare', String(o.declareMBps)] : []),
    ...(o.unmeasuredCapKBps !== undefined ? ['--unmeasured-cap', String(o.unmeasuredCapKBps)] : []),
    ...(o.probeSeconds !== undefined ? ['--probe-seconds', String(o.probeSeconds)] : []),
    ...(o.probeKeepPeriods !== undefined ? ['--probe-keep-periods', String(o.probeKeepPeriods)] : [])];
  const launcher: ChildProcess = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  launcher.stdout!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  launcher.stderr!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  let exited = false;
  const exitedP = new Promise<void>((r) => launcher.once('exit', () => { exited = true; r(); }));
  const restarted = new Map<string, ChildProcess>();
  const pids = new Map<string, number>();
  const killed = new Set<string>();
  const readNj = (): NetworkJson | null => { try { return JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as NetworkJson; } catch { return null; } };

  let stopped = false;
  const stop = async (): Promise<{ namespaces: number; links: number; processes: number; teardown: string }> => {
    if (!stopped) {
      stopped = true;
      for (const c of restarted.values()) { try { process.kill(c.pid!, 'SIGCONT'); process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } }
      for (const n of readNj()?.nodes ?? []) { try { process.kill(n.pid, 'SIGCONT'); } catch { /* gone */ } }
      if (!exited) { try { process.kill(launcher.pid!, 'SIGTERM'); } catch { /* gone */ } }
      await Promise.race([exitedP, sleep(30_000)]);
      if (!exited) { try { process.kill(launcher.pid!, 'SIGKILL'); } catch { /* gone */ } }
    }
    const left = (readNj()?.nodes ?? []).filter((n) => alive(pids.get(n.name) ?? n.pid)).length
      + [...restarted.values()].filter((c) => alive(c.pid!)).length;
    let namespaces = 0, links = 0;
    const prefix = readNj()?.hosts?.prefix;
    if (prefix) {
      namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(prefix)).length;
      links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => new RegExp(`^\\d+:\\s+${prefix}`).test(l)).length;
    }
    const teardown = /teardown: .*/.exec(out)?.[0] ?? '';
    return { namespaces, links, processes: left, teardown };
  };
  process.once('exit', () => {
    for (const c of restarted.values()) { try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } }
    if (!exited) { try { process.kill(launcher.pid!, 'SIGTERM'); } catch { /* gone */ } }
  });

  const until = Date.now() + (o.timeoutMs ?? (o.storage > 0 ? 420_000 : 240_000));
  let nj: NetworkJson | null = null;
  for (;;) {
    nj = readNj();
    if (nj?.ready) break;
    if (exited || Date.now() > until) {
      await stop();
      throw new Error(`the test network did not come up (${exited ? 'launcher exited' : 'timeout'}); logs in ${dir}\n${out}`);
    }
    await sleep(300);
  }
  const nodes = nj.nodes;
  const node = (name: string): NetNode => {
    const n = nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  };
  const tn: TestNet = {
    dir, hosts: o.hosts, socksPort, webAddress: nj.hosts?.webAddress ?? '127.0.0.1', nj, killed,
    node,
    byRole: (...roles) => nodes.filter((n) => roles.includes(n.role)),
    pid: (name) => pids.get(name) ?? node(name).pid,
    kill(name, signal) {
      process.kill(tn.pid(name), signal);
      if (signal === 'SIGKILL') killed.add(name);
    },
    restart(name, env = {}) {
      const n = node(name);
      const bin = n.role === 'authority' ? 'bitcloud-dirauth' : n.role === 'storage' ? 'bitcloud-storage' : 'bitcloud-relay';
      const argv = [process.execPath, path.join(repo, 'bin', `${bin}.js`), 'run', '--config', n.config];
      const cmd = n.host ? ['ip', 'netns', 'exec', n.host.ns, ...argv] : argv;
      const fd = fs.openSync(n.log, 'a');
      const child = spawn(cmd[0], cmd.slice(1), { cwd: repo, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
      fs.closeSync(fd);
      const old = restarted.get(name);
      if (old && alive(old.pid!)) { try { process.kill(old.pid!, 'SIGKILL'); } catch { /* gone */ } }
      restarted.set(name, child);
      pids.set(name, child.pid!);
      killed.delete(name);
      return child.pid!;
    },
    link(name, up) {
      const h = node(name).host;
      if (!h) throw new Error('link faults need --hosts');
      const r = spawnSync('ip', ['link', 'set', h.veth, up ? 'up' : 'down'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip link set ${h.veth}: ${r.stderr}`);
    },
    output: () => out,
    stop,
  };
  return tn;
}

// ---- observing ----

export function httpGet(host: string, port: number, p: string, timeoutMs = 8000): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: p, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) })).on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host}:${port}${p} timed out`)));
    req.on('error', reject);
  });
}

export type { Sample };
export { metric };

export async function scrape(host: string, port: number): Promise<Sample[]> {
  const { body } = await httpGet(host, port, '/metrics');
  return parsePrometheus(body.toString('utf8'));
}

/** A relay's /metrics (its MetricsPort, on its own address with --hosts); empty when it does not answer. */
export async function scrapeRelay(n: NetNode): Promise<Sample[]> {
  return scrape(addrOf(n), n.ports.metrics).catch(() => []);
}

export interface AuthStatus {
  consensus: { validAfter: number; digest: string; signers: string[] } | null;
  rewards: { height: number; tipEpoch: number } | null;
}

export async function authStatus(n: NetNode): Promise<AuthStatus | null> {
  try {
    const r = await httpGet(addrOf(n), n.ports.http, '/bitcloud/status', 5000);
    return JSON.parse(r.body.toString('utf8')) as AuthStatus;
  } catch { return null; }
}

// ---- traffic ----

export interface ContentServer { port: number; close(): Promise<void> }

/** Deterministic bytes: the body served at /raw/0/N and /bytes/0/N (a fixed 16 MiB pattern, repeated). */
export const BODY = (() => {
  const b = Buffer.alloc(16 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b.writeUInt32LE(x >>> 0, i); }
  return b;
})();

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function expected(len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  for (let w = 0; w < len;) w += BODY.copy(out, w, 0, Math.min(BODY.length, len - w));
  return out;
}

/** GET /bytes/K/LEN (with a length) or /raw/K/LEN (close-delimited) on `host`; K (any number) only tells requests apart. */
export async function startContentServer(host: string): Promise<ContentServer> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) { if (head.length > 8192) s.destroy(); return; }
      s.off('data', onData);
      const m = /^GET \/(bytes|raw)\/\d+\/(\d+) HTTP\/1\.[01]\r\n/.exec(head);
      if (!m) { s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'); return; }
      const len = Number(m[2]);
      s.write(m[1] === 'bytes'
        ? `HTTP/1.1 200 OK\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`
        : 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n');
      let sent = 0;
      const pump = (): void => {
        while (sent < len && !s.destroyed) {
          const at = sent % BODY.length;
          const n = Math.min(1 << 20, len - sent, BODY.length - at);
          sent += n;
          if (!s.write(BODY.subarray(at, at + n))) { s.once('drain', pump); return; }
        }
        if (!s.destroyed) s.end();
      };
      pump();
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

export interface Fetch { code: number; bytes: number; sha256: string; stderr: string; timedOut: boolean }

/**
 * curl through the SOCKS proxy (names resolved at the exit), body hashed as it arrives. Killed by
 * PID after `maxMs` (then timedOut: a hang).
 */
export function fetchVia(socksPort: number, url: string, user: string, o: { maxMs?: number; onBytes?: (n: number) => void } = {}): Promise<Fetch> {
  return new Promise((resolve, reject) => {
    const c = spawn('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${socksPort}`, '--proxy-user', `${user}:x`, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    if (!c.pid) { reject(new Error('could not start curl')); return; }
    const h = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    let timedOut = false;
    c.stdout!.on('data', (d: Buffer) => { h.update(d); bytes += d.length; o.onBytes?.(bytes); });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => { timedOut = true; try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } }, o.maxMs ?? 120_000);
    c.once('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code: code ?? (signal ? 128 : -1), bytes, sha256: h.digest('hex'), stderr: stderr.trim(), timedOut });
    });
  });
}

/** Poll `f` until it returns a truthy value or `ms` pass; returns the value or null. */
export async function poll<T>(f: () => Promise<T | null | undefined | false> | T | null | undefined | false, ms: number, every = 500): Promise<T | null> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) return null;
    await sleep(every);
  }
}

/** Established TCP peers (address:port) of `pid`, seen from its own namespace when it has one. */
export function tcpPeers(n: NetNode | null, pid: number): string[] {
  const argv = n?.host ? ['ip', 'netns', 'exec', n.host.ns, 'ss', '-tnpH', 'state', 'established'] : ['ss', '-tnpH', 'state', 'established'];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  const out: string[] = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const cols = line.trim().split(/\s+/);
    if (cols[3]) out.push(cols[3]);
  }
  return out;
}

/** Children started by runCli that are still running: killed by PID when this process exits. */
const cliChildren = new Set<ChildProcess>();
process.once('exit', () => { for (const c of cliChildren) { try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } } });

export interface CliRun { code: number; stdout: string; stderr: string; timedOut: boolean; pid: number }

/**
 * `bitcloud ARGS` (the client command line) as a child process, killed by PID after `maxMs`;
 * `onStart` gets the child (to kill it mid-way). Resolves when it exits.
 */
export function runCli(repo: string, args: string[], o: { maxMs?: number; onStart?: (c: ChildProcess) => void } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [path.join(repo, 'bin', 'bitcloud.js'), ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    if (!c.pid) { reject(new Error('could not start bitcloud')); return; }
    cliChildren.add(c);
    let stdout = '', stderr = '', timedOut = false;
    c.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => { timedOut = true; try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } }, o.maxMs ?? 300_000);
    o.onStart?.(c);
    c.once('close', (code, signal) => {
      clearTimeout(t);
      cliChildren.delete(c);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr, timedOut, pid: c.pid! });
    });
  });
}

/** Share files a storage node holds (`<dataDir>/shares/xx/yy/<id>`, SPEC.md §9.8); `tmp`: the temporary files of unfinished writes instead. */
export function shareFilesOf(n: NetNode, tmp = false): string[] {
  const root = path.join(n.dataDir, 'shares');
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    let ents: fs.Dirent[] = [];
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && depth < 2) walk(p, depth + 1);
      else if (e.isFile() && depth === 2 && (tmp ? e.name.endsWith('.tmp') : !e.name.startsWith('.'))) out.push(p);
    }
  };
  walk(root, 0);
  return out;
}
