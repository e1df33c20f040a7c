// Process helpers for integration tests: start a Bitcloud binary as a child process on
// 127.0.0.1, wait for a log line or a port, stop it by PID (SIGTERM, then SIGKILL). Every
// process started here is tracked; call stopAll() in afterAll (and a process-exit hook kills
// anything left, so a crashed test run never leaves daemons behind).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  /** Raw text of the line. */
  text: string;
  /** The parsed object when the line is JSON (pino), else null. */
  json: Record<string, unknown> | null;
  stream: 'stdout' | 'stderr';
}

export interface Daemon {
  pid: number;
  /** Every line so far, both streams, in arrival order. */
  logs: LogLine[];
  /** Resolves with the first line (past or future) matching `predicate`; rejects on timeout or exit. */
  waitFor(predicate: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Shorthand: wait for a pino line whose msg equals `msg` (and whose fields match `fields`). */
  waitForMsg(msg: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves with the exit code (or signal name) once the process exits. */
  exited: Promise<number | string>;
  readonly running: boolean;
}

const live = new Set<ChildProcess>();
process.once('exit', () => { for (const c of live) { try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ } } });

/** Path of a bin shim: 'bitcloud-dirauth' → REPO_ROOT/bin/bitcloud-dirauth.js; absolute paths pass through. */
export function binPath(bin: string): string {
  return path.isAbsolute(bin) ? bin : path.join(REPO_ROOT, 'bin', bin.endsWith('.js') ? bin : `${bin}.js`);
}

export function startDaemon(bin: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Daemon {
  const child = spawn(process.execPath, [binPath(bin), ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (!child.pid) throw new Error(`could not start ${bin}`);
  live.add(child);
  const logs: LogLine[] = [];
  const waiters = new Set<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let running = true;
  let exitResolve!: (c: number | string) => void;
  const exited = new Promise<number | string>((r) => { exitResolve = r; });
  const exitWaiters = new Set<(why: string) => void>();

  const feed = (stream: 'stdout' | 'stderr') => {
    let partial = '';
    child[stream]!.setEncoding('utf8');
    child[stream]!.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const text of parts) {
        if (!text) continue;
        let json: Record<string, unknown> | null = null;
        if (text.startsWith('{')) { try { json = JSON.parse(text); } catch { /* not JSON */ } }
        const line = { text, json, stream };
        logs.push(line);
        for (const w of [...waiters]) if (w.pred(line)) { waiters.delete(w); w.resolve(line); }
      }
    });
  };
  feed('stdout');
  feed('stderr');
  child.once('exit', (code, signal) => {
    running = false;
    live.delete(child);
    exitResolve(code ?? signal ?? 'unknown');
    for (const f of exitWaiters) f(`exited with ${code ?? signal}`);
  });

  const waitFor = (pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> => {
    const have = logs.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const tail = () => logs.slice(-15).map((l) => l.text).join('\n');
      if (!running) return reject(new Error(`${bin} is not running; last output:\n${tail()}`));
      const w = {
        pred,
        resolve: (l: LogLine) => { clearTimeout(t); exitWaiters.delete(onExit); resolve(l); },
      };
      const onExit = (why: string) => { clearTimeout(t); waiters.delete(w); reject(new Error(`${bin} ${why} before the awaited line; last output:\n${tail()}`)); };
      const t = setTimeout(() => { waiters.delete(w); exitWaiters.delete(onExit); reject(new Error(`timed out after ${timeoutMs} ms waiting on ${bin}; last output:\n${tail()}`)); }, timeoutMs);
      waiters.add(w);
      exitWaiters.add(onExit);
    });
  };

  const d: Daemon = {
    pid: child.pid,
    logs,
    waitFor,
    waitForMsg: (msg, fields = {}, timeoutMs) => waitFor((l) => l.json?.msg === msg && Object.entries(fields).every(([k, v]) => l.json?.[k] === v), timeoutMs),
    exited,
    get running() { return running; },
    stop: async (graceMs = 5000) => {
      if (!running) return;
      try { process.kill(child.pid!, 'SIGTERM'); } catch { /* already gone */ }
      const t = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  started.add(d);
  return d;
}

const started = new Set<Daemon>();

/** Stop every daemon started by this test file (use in afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((d) => d.stop()));
  started.clear();
}

/** Run a command to completion: its exit code and output. Killed (SIGKILL) after `timeoutMs`. */
export function runCli(bin: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [binPath(bin), ...args], { cwd: opts.cwd ?? REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '', stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    const t = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, opts.timeoutMs ?? 60_000);
    child.once('close', (code, signal) => { clearTimeout(t); live.delete(child); resolve({ code: code ?? signal ?? 'unknown', stdout, stderr }); });
  });
}

// Ports handed out by this test process: never handed out twice.
const handedOut = new Set<number>();

/** The kernel's ephemeral range ("32768 60999" on Linux): source ports of outgoing connections. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo > 0 && hi >= lo) return [lo, hi];
  } catch { /* not Linux: use the usual range */ }
  return [32768, 60999];
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A TCP port that was free a moment ago on 127.0.0.1, chosen outside the kernel's ephemeral
 * range. A port from `listen(0)` is an ephemeral one: between our check and the daemon's bind,
 * any outgoing connection on the machine (a relay dialling an authority, say) may take it as its
 * source port, and the daemon then fails with EADDRINUSE. Above the ephemeral range
 * (61000-65535 on Linux) only listeners compete, and those the check sees. Below 32768 the
 * local network launcher picks its ranges (localnet.ts), so this stays above.
 */
export async function freePort(): Promise<number> {
  const [, hi] = ephemeralRange();
  const lo = hi + 1;
  const span = 65_535 - lo + 1;
  if (span >= 256) {
    for (let attempt = 0; attempt < 200; attempt++) {
      const p = lo + Math.floor(Math.random() * span);
      if (handedOut.has(p)) continue;
      if (await canListen(p)) { handedOut.add(p); return p; }
    }
  }
  // No room above the ephemeral range: fall back to the kernel's choice.
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Poll `f` until it returns a truthy value (or throw after `timeoutMs`). */
export async function eventually<T>(f: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v as T;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
