// The exit (SPEC.md §7b.7): BEGIN → exit policy on the resolved address → TCP connect with a
// timeout → CONNECTED or END with the reason that says why; then bytes both ways between the
// stream and the socket with backpressure on both sides. RESOLVE → RESOLVED.
import net from 'node:net';
import { LAT_TRACE, latTrace } from '../src/ops/lat-trace';
import dns from 'node:dns';
import { errorCode } from '../src/errors';
import { EndReason, BeginFlag, type ResolvedAnswer } from '../src/wire/messages';
import { exitPolicyAllows, exitPolicyAllowsAddress, parseIp, type ExitPolicy } from '../src/dir/exit-policy';
import { endReasonForErrno, endReasonForLookupErrno } from '../src/circuit/end-reasons';
import type { IncomingStream } from '../src/circuit/types';
import type { CircuitStream } from '../src/circuit/stream';
import type { CircuitMetrics } from '../src/circuit/metrics';
import { silentLogger, type Logger } from '../src/ops/log';

export interface LookupResult { address: string; family: 4 | 6 }
export type Lookup = (host: string) => Promise<LookupResult[]>;

export interface ExitOptions {
  policy: ExitPolicy;
  /** TCP connect timeout (END TIMEOUT after it). Default 10 s. */
  connectTimeoutMs?: number;
  /** Name resolution at the exit; default createDnsLookup() (c-ares, never dns.lookup: SPEC.md §7b.7). */
  lookup?: Lookup;
  /** Refuse BEGIN on circuits that came from a client link, not a listed relay (tor-spec 5.5). Default true. */
  refuseOneHop?: boolean;
  /** TTL reported in CONNECTED / RESOLVED, seconds. Default 60. */
  ttl?: number;
  metrics?: CircuitMetrics;
  log?: Logger;
  /** Shared with the RESOLVE handler: name resolutions at once (SPEC.md §7b.7). */
  gate?: ResolveGate;
  /** SPEC.md §7b.9: TCP connections to targets this exit holds at once (`maxExitConnections`). */
  connections?: ExitConnections;
}

const DNS_TIMEOUT_MS = 10_000;

/**
 * SPEC.md §7b.7: the exit resolves names with an asynchronous DNS client (c-ares via
 * `dns.Resolver`), never `dns.lookup`, which runs on libuv's 4-thread pool shared with file I/O
 * and crypto: a flood of slow names would starve the whole node. Each query is bounded
 * (timeout × tries). `localhost` and `*.localhost` are loopback without a query (RFC 6761), as
 * /etc/hosts has them; the exit policy then decides.
 */
export function createDnsLookup(o: { timeoutMs?: number; tries?: number } = {}): Lookup {
  const r = new dns.Resolver({ timeout: o.timeoutMs ?? 2500, tries: o.tries ?? 2 });
  const one = (f: (h: string, cb: (e: NodeJS.ErrnoException | null, a: string[]) => void) => void, host: string) =>
    new Promise<string[]>((resolve, reject) => f.call(r, host, (e, a) => (e ? reject(e) : resolve(a))));
  return async (host) => {
    const h = host.toLowerCase().replace(/\.$/, '');
    if (h === 'localhost' || h.endsWith('.localhost')) return [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }];
    // The numeric forms getaddrinfo accepts ("167772161", "0x7f.1", "10.1") are addresses, not
    // names: answered as the address they stand for, which the exit policy then judges.
    const numeric = inetAton(h);
    if (numeric !== null) return [{ address: numeric, family: 4 }];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('lookup timed out'), { code: 'ETIMEDOUT' })), DNS_TIMEOUT_MS);
    });
    try {
      const [v4, v6] = await Promise.race([Promise.allSettled([one(r.resolve4, h), one(r.resolve6, h)]), timeout]);
      const out: LookupResult[] = [];
      if (v4.status === 'fulfilled') for (const a of v4.value) out.push({ address: a, family: 4 });
      if (v6.status === 'fulfilled') for (const a of v6.value) out.push({ address: a, family: 6 });
      if (out.length > 0) return out;
      const e = (v4.status === 'rejected' ? v4.reason : (v6 as PromiseRejectedResult).reason) as NodeJS.ErrnoException;
      // c-ares says ENODATA for a name with no record of that family, ETIMEOUT for no answer.
      if (e.code === 'ETIMEOUT') e.code = 'ETIMEDOUT';
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };
}

/** inet_aton(3): 1 to 4 parts, each decimal, 0x-hex or 0-octal, the last filling the rest; else null. */
export function inetAton(s: string): string | null {
  if (!/^[0-9a-fx.]+$/i.test(s)) return null;
  const parts = s.split('.');
  if (parts.length > 4 || parts.some((p) => p === '')) return null;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = parseInt(p, 8) || 0;
    else if (/^[1-9][0-9]*$/.test(p)) n = Number(p);
    else return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * (4 - nums.length))) return null;
  let v = 0;
  for (const n of nums) v = v * 256 + n;
  v = v * 2 ** (8 * (4 - nums.length)) + last;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

export const defaultLookup: Lookup = createDnsLookup();

/**
 * SPEC.md §7b.7: at most `max` name resolutions (RESOLVE, and BEGIN to a name) run at once at an
 * exit; past it a RESOLVE is answered with a transient error and a BEGIN refused RESOURCELIMIT.
 */
export class ResolveGate {
  private n = 0;
  constructor(readonly max: number) {}
  get active(): number { return this.n; }
  tryEnter(): boolean { if (this.n >= this.max) return false; this.n++; return true; }
  leave(): void { if (this.n > 0) this.n--; }
}

/**
 * SPEC.md §7b.9: at most `max` TCP connections to targets at once at an exit,
 * each counted from the connect until its socket closes; past it a BEGIN ends END(RESOURCELIMIT).
 * Without it, a few circuits of 512 streams each toward a target that accepts and holds would use
 * up the process's file descriptors, and the node could then accept no link nor write a file.
 */
export class ExitConnections extends ResolveGate {}

/** Pick the address to connect to: allowed by the policy and by the BEGIN flags (tor-spec 6.2). */
export function chooseExitAddress(addrs: LookupResult[], flags: number, policy: ExitPolicy, port: number): LookupResult | null {
  const ok4 = (flags & BeginFlag.IPV4_NOT_OK) === 0;
  const ok6 = (flags & BeginFlag.IPV6_OK) !== 0 || !ok4;
  const prefer6 = (flags & BeginFlag.IPV6_PREFERRED) !== 0;
  const usable = addrs.filter((a) => (a.family === 4 ? ok4 : ok6) && exitPolicyAllowsAddress(policy, a.address, port));
  if (prefer6) usable.sort((a, b) => b.family - a.family);
  return usable[0] ?? null;
}

/** The BEGIN handler for an exit relay (hand it to CircuitSwitch hooks.onStream for kind 'begin'). */
export function createExitHandler(opts: ExitOptions): (inc: IncomingStream) => void {
  const lookup = opts.lookup ?? defaultLookup;
  const timeoutMs = opts.connectTimeoutMs ?? 10_000;
  const ttl = opts.ttl ?? 60;
  const log = opts.log ?? silentLogger;
  const metrics = opts.metrics;
  const refuse = (inc: IncomingStream, reason: number, result: string) => {
    metrics?.exitConnect(result);
    inc.refuse(reason);
  };

  return (inc) => {
    const b = inc.begin!;
    if (LAT_TRACE) latTrace('exit.begin');
    if (inc.oneHop && opts.refuseOneHop !== false) { refuse(inc, EndReason.EXITPOLICY, 'one_hop'); return; }
    const literal = parseIp(b.host) !== null;
    // A name the policy refuses for every address is refused before any DNS query.
    if (!literal && exitPolicyAllows(opts.policy, null, b.port) === 'no') { refuse(inc, EndReason.EXITPOLICY, 'policy'); return; }
    // SPEC.md §7b.7: a lookup takes one of the circuit's pending resolutions, then one of the exit's.
    const gate = opts.gate;
    let release: (() => void) | null = null;
    if (!literal) {
      release = inc.resolveSlot ? inc.resolveSlot() : () => {};
      if (!release) { refuse(inc, EndReason.RESOURCELIMIT, 'resolve_limit'); return; }
      if (gate && !gate.tryEnter()) { release(); refuse(inc, EndReason.RESOURCELIMIT, 'resolve_limit'); return; }
    }
    const resolved: Promise<LookupResult[]> = literal
      ? Promise.resolve([{ address: b.host, family: b.host.includes(':') ? 6 : 4 }])
      : lookup(b.host).finally(() => { gate?.leave(); release?.(); });
    resolved.then((addrs) => {
      if (inc.stream.state !== 'opening') return; // the client gave up meanwhile
      const target = chooseExitAddress(addrs, literal ? BeginFlag.IPV6_OK : b.flags, opts.policy, b.port);
      if (!target) { refuse(inc, EndReason.EXITPOLICY, 'policy'); return; }
      const conns = opts.connections;
      if (conns && !conns.tryEnter()) { refuse(inc, EndReason.RESOURCELIMIT, 'connection_limit'); return; }
      connectTarget(inc, target, b.port, timeoutMs, ttl, metrics, log, conns ? () => conns.leave() : null);
    }, (e: NodeJS.ErrnoException) => {
      if (inc.stream.state !== 'opening') return;
      log.debug({ code: e.code }, 'exit lookup failed');
      refuse(inc, endReasonForLookupErrno(e.code), 'resolve_failed');
    });
  };
}

function connectTarget(inc: IncomingStream, target: LookupResult, port: number, timeoutMs: number, ttl: number,
  metrics: CircuitMetrics | undefined, log: Logger, closed: (() => void) | null): void {
  const stream = inc.stream;
  if (LAT_TRACE) latTrace('exit.connect');
  const sock = net.connect({ host: target.address, port, family: target.family });
  // SPEC.md §7b.9: the connection's place under maxExitConnections is given back once, when it closes.
  if (closed) sock.once('close', closed);
  let connected = false;
  const timer = setTimeout(() => {
    if (connected) return;
    sock.destroy();
    metrics?.exitConnect('timeout');
    inc.refuse(EndReason.TIMEOUT);
  }, timeoutMs);
  const onStreamGone = () => { clearTimeout(timer); sock.destroy(); };
  stream.once('close', onStreamGone);
  sock.on('error', (e: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    if (!connected) {
      metrics?.exitConnect(errorCode(e).toLowerCase());
      log.debug({ code: e.code }, 'exit connect failed');
      inc.refuse(endReasonForErrno(e.code));
    } else if (stream.state !== 'closed') {
      stream.abort(endReasonForErrno(e.code) === EndReason.MISC ? EndReason.CONNRESET : endReasonForErrno(e.code));
    }
  });
  sock.once('connect', () => {
    clearTimeout(timer);
    if (stream.state !== 'opening') { sock.destroy(); return; }
    connected = true;
    sock.setNoDelay(true);
    if (LAT_TRACE) { latTrace('exit.connected'); sock.once('data', () => latTrace('exit.target-data')); stream.once('data', () => latTrace('exit.stream-data')); }
    // An event listener: whatever fails here ends this stream, never the node.
    try {
      inc.accept({ addr: target.address, ttl });
    } catch (e) {
      const code = errorCode(e);
      metrics?.exitConnect(code.toLowerCase());
      log.debug({ code }, 'exit could not answer CONNECTED');
      sock.destroy();
      inc.refuse(EndReason.INTERNAL);
      return;
    }
    metrics?.exitConnect('ok');
    pipeStreamSocket(stream, sock);
  });
}

/** SPEC.md §7b.7 step 6: how long after the client's END the target's connection may linger. */
const END_LINGER_MS = 30_000;
/** SPEC.md §7b.7 step 6: how long a stream whose target ended may go without a cell of it sent. */
const ENDED_STALL_MS = 60_000;

/**
 * Bytes both ways with backpressure (SPEC.md §7b.8): socket → stream pauses the socket while
 * the stream's windows are shut; stream → socket stops acknowledging (no stream SENDME) while
 * the socket's buffer is full, so the client cannot make this exit buffer without bound.
 */
export function pipeStreamSocket(stream: CircuitStream, sock: net.Socket): void {
  sock.pipe(stream);
  stream.pipe(sock);
  // The target closed: the stream ends (END DONE) after what was read is sent. An error (RST)
  // ends it with CONNRESET. The client ended: close the socket after writing what arrived.
  sock.once('close', (hadError) => {
    if (hadError) stream.abort(EndReason.CONNRESET);
    else if (!stream.writableEnded) stream.end();
  });
  // The client's END: what it sent is written, then the socket closes; one that lingers is reset,
  // timed from the END itself (SPEC.md §7b.7 step 6): a target that never reads keeps the pipe
  // paused, so the stream's 'end' (every byte written) would never come. The stream goes too:
  // what it still holds stops counting against the circuit (§7b.9).
  let linger: NodeJS.Timeout | undefined;
  stream.once('remote-end', () => {
    linger = setTimeout(() => {
      if (!sock.destroyed) sock.resetAndDestroy();
      stream.destroy();
    }, END_LINGER_MS);
    linger.unref();
  });
  // The target ended cleanly, but the stream may still hold its data (the client's windows let
  // none out) or the client's data it can no longer deliver: unbounded, that would keep its place
  // under the stream limit and its bytes for ever. Each DATA cell of the stream that goes out
  // restarts 60 s; when they run out, END(TIMEOUT) and the stream goes (SPEC.md §7b.7 step 6).
  let stall: NodeJS.Timeout | undefined;
  sock.once('end', () => {
    if (stream.closed) return;
    stall = setTimeout(() => {
      if (!sock.destroyed) sock.destroy();
      stream.abort(EndReason.TIMEOUT);
    }, ENDED_STALL_MS);
    stall.unref();
    stream.onPackaged = () => { stall?.refresh(); };
  });
  stream.once('close', () => {
    clearTimeout(linger);
    clearTimeout(stall);
    stream.onPackaged = null;
    if (sock.destroyed) return;
    if (stream.errored) sock.resetAndDestroy(); // the circuit died: the target sees a reset, not a clean end
    else sock.end();
  });
}

/**
 * The RESOLVE handler (SPEC.md §7b.7): every address the name has, or an error answer. Refused
 * (non-transient error) on a circuit that came from a client link unless `refuseOneHop` is
 * false; a transient error when the exit already runs `gate.max` resolutions.
 */
export function createResolver(opts: { lookup?: Lookup; ttl?: number; gate?: ResolveGate; refuseOneHop?: boolean; metrics?: CircuitMetrics }):
  (host: string, ctx?: { oneHop: boolean }) => Promise<ResolvedAnswer[]> {
  const lookup = opts.lookup ?? defaultLookup;
  const ttl = opts.ttl ?? 60;
  return async (host, ctx) => {
    if (ctx?.oneHop && opts.refuseOneHop !== false) {
      opts.metrics?.exitConnect('one_hop');
      return [{ type: 'error-nontransient', value: '', ttl: 0 }];
    }
    const gate = opts.gate;
    if (gate && !gate.tryEnter()) {
      opts.metrics?.exitConnect('resolve_limit');
      return [{ type: 'error-transient', value: '', ttl: 0 }];
    }
    try {
      const addrs = await lookup(host);
      if (addrs.length === 0) return [{ type: 'error-nontransient', value: '', ttl: 0 }];
      return addrs.slice(0, 16).map((a) => ({ type: a.family === 6 ? 'ipv6' : 'ipv4', value: a.address, ttl }) as ResolvedAnswer);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return [{ type: code === 'ENOTFOUND' || code === 'ENODATA' ? 'error-nontransient' : 'error-transient', value: '', ttl: 0 }];
    } finally {
      gate?.leave();
    }
  };
}
