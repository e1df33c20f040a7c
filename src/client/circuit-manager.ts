// The client's circuit manager (SPEC.md §7b.11): which circuit a stream goes on. Circuits are
// shared by streams of one isolation key only (isolation.ts); a circuit becomes dirty at its
// first stream and takes no new streams after maxDirtinessMs; clean circuits are kept ready
// for recently used ports (preemptive circuits); past maxOpenCircuits open general circuits, a new
// one closes the least recently used idle one; a stream whose exit refuses it is retried on
// another exit; a dead circuit is dropped and the next request builds a new one; a request with
// no path yet (no consensus, or one without a guard or middle for it) waits for one (§7.1).
import { setTimeout as sleep } from 'node:timers/promises';
import { err, errorCode, isBitcloudError, layerOf, type BitcloudError, type ErrorCode } from '../errors';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import { exitPolicyAllows } from '../dir/exit-policy';
import { silentLogger, type Logger } from '../ops/log';
import { prom, type Registry } from '../ops/metrics';
import type { CircuitStream } from '../circuit/stream';
import { NO_PATH_YET, relayExitPolicy, type PathTarget } from './path';
import type { IsolationKey } from './isolation';
import { canAttach } from './isolation';
import { CircuitBuilder, isBuildFailure, type CircuitBuilderOptions, type ClientRelay } from './circuit-builder';
import { STREAM_OPEN_TIMEOUT_MS, type ClientCircuit, type StreamRequest } from './client-circuit';

export interface CircuitManagerOptions extends CircuitBuilderOptions {
  /** A circuit takes no new streams this long after its first one (Tor's MaxCircuitDirtiness). Default 10 min. */
  maxDirtinessMs?: number;
  /** Clean circuits kept ready for recently used ports (0 = none). Default 2. */
  preemptiveCircuits?: number;
  /** A port counts as recently used for this long. Default 1 hour. */
  portMemoryMs?: number;
  /** Wait this long for CONNECTED before trying another circuit. Default STREAM_OPEN_TIMEOUT_MS, 15 s (SPEC.md §7b.6). */
  streamTimeoutMs?: number;
  /** Circuits tried per stream request. Default 3. */
  streamAttempts?: number;
  /**
   * SPEC.md §7b.11: general circuits being built at once, preemptive ones included (Tor's
   * MaxClientCircuitsPending); a stream that needs a new circuit past it waits for a build to end. Default 32.
   */
  maxPendingCircuits?: number;
  /**
   * SPEC.md §7b.11: open general circuits held at once; past it, a newly built circuit makes the
   * least recently used one without streams close. Default 256.
   */
  maxOpenCircuits?: number;
  /**
   * SPEC.md §7.1: with no path yet (CIRCUIT_NO_CONSENSUS, PATH_NO_RELAYS, PATH_NO_GUARD,
   * PATH_NO_MIDDLE), a stream request waits this long at most (or until its signal), choosing
   * again every `pathRetryMs`. Default 30 s; 0 = fail at once.
   */
  pathWaitMs?: number;
  /** Default 1 s. */
  pathRetryMs?: number;
  /** How often to retire old circuits and top up preemptive ones. Default 5 s. */
  maintenanceMs?: number;
  /** A clean circuit nobody used for this long is closed (Tor's CircuitsAvailableTimeout). Default 1 hour. */
  maxUnusedMs?: number;
  /** A link to a guard with no circuit for this long is closed. Default 5 min. */
  linkIdleMs?: number;
  registry?: Registry;
}

export interface ConnectRequest {
  host: string;
  port: number;
  isolation: IsolationKey;
}

interface Managed {
  circ: ClientCircuit | null;
  /** Resolves when built; rejects if the build failed. */
  ready: Promise<ClientCircuit>;
  exit: ClientRelay;
  isolation: IsolationKey | null;
  purpose: 'general' | 'storage';
  /** Exits answered EXITPOLICY for these host:port: not offered to them again. */
  refused: Set<string>;
  /** When a stream was last attached to it or ended on it (or it was built): SPEC.md §7b.11 open circuits. */
  lastUsed: number;
  /**
   * Requests that chose it and have not yet sent their BEGIN on it (they wait for its build, or
   * for the turn to resume them): SPEC.md §7b.11, never closed to keep to maxOpenCircuits.
   */
  attaching: number;
  /** A BEGIN on it timed out: it takes no new streams and closes once its last stream ends. */
  noNewStreams?: boolean;
}

const DEFAULT_PORT = 80;
/** SPEC.md §7b.11: the most ports remembered for preemptive circuits (the most recently asked for). */
export const MAX_RECENT_PORTS = 64;

/**
 * Build-time histogram buckets: fine in the milliseconds a build takes on a warm network (so a
 * median can be read from it, as Tor's EXTENDCIRCUIT→BUILT figures are medians), coarse above.
 */
export const BUILD_SECONDS_BUCKETS = [0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

export class CircuitManager {
  readonly builder: CircuitBuilder;
  private readonly pool = new Set<Managed>();
  private readonly recentPorts = new Map<number, number>();
  private readonly log: Logger;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** General circuits being built now (launched, not yet built or failed): SPEC.md §7b.11. */
  private building = 0;
  /** Requests waiting for a build to end before they may launch one (SPEC.md §7b.11). */
  private readonly slotWaiters = new Set<() => void>();
  private readonly m?: {
    built: prom.Counter; failed: prom.Counter<'code'>; buildTime: prom.Histogram; streams: prom.Counter<'result'>;
    evicted: prom.Counter; overLimit: prom.Counter;
  };

  constructor(readonly opts: CircuitManagerOptions) {
    // SPEC.md §7b.11: below 1 no build ever runs to wake a waiting stream, and NaN lifts the limit.
    const mp = opts.maxPendingCircuits;
    if (mp !== undefined && (!Number.isInteger(mp) || mp < 1)) throw err('CONFIG_INVALID', `maxPendingCircuits must be an integer ≥ 1, got ${mp}`, { key: 'maxPendingCircuits' });
    // SPEC.md §7b.11: below 1 every circuit would be closed as soon as built, and NaN lifts the bound.
    const mo = opts.maxOpenCircuits;
    if (mo !== undefined && (!Number.isInteger(mo) || mo < 1)) throw err('CONFIG_INVALID', `maxOpenCircuits must be an integer ≥ 1, got ${String(mo)}`, { key: 'maxOpenCircuits' });
    this.log = opts.log ?? silentLogger;
    if (opts.registry) {
      const registers = [opts.registry];
      this.m = {
        built: new prom.Counter({ name: 'bitcloud_client_circuits_built_total', help: 'Circuits built by this client', registers }),
        failed: new prom.Counter({ name: 'bitcloud_client_circuit_build_failures_total', help: 'Failed circuit build attempts, by code', labelNames: ['code'], registers }),
        buildTime: new prom.Histogram({ name: 'bitcloud_client_circuit_build_seconds', help: 'Circuit build time', buckets: BUILD_SECONDS_BUCKETS, registers }),
        streams: new prom.Counter({ name: 'bitcloud_client_streams_total', help: 'Stream requests, by result code', labelNames: ['result'], registers }),
        evicted: new prom.Counter({ name: 'bitcloud_client_circuits_evicted_total', help: 'Idle general circuits closed because more than maxOpenCircuits were open', registers }),
        overLimit: new prom.Counter({ name: 'bitcloud_client_circuits_over_limit_total', help: 'Built general circuits kept past maxOpenCircuits because every other one carried a stream', registers }),
      };
      const circuits = () => this.circuits().length;
      new prom.Gauge({ name: 'bitcloud_client_circuits_open', help: 'Open client circuits', registers, collect() { this.set(circuits()); } });
    }
    this.builder = new CircuitBuilder({
      ...opts,
      onBuilt: (ms) => { this.m?.built.inc(); this.m?.buildTime.observe(ms / 1000); opts.onBuilt?.(ms); },
      onBuildFailed: (code) => { this.m?.failed.inc({ code }); opts.onBuildFailed?.(code); },
    });
    this.timer = setInterval(() => this.maintain(), opts.maintenanceMs ?? 5_000);
    this.timer.unref();
  }

  /** Circuits held now (building or open). */
  get circuitCount(): number { return this.pool.size; }

  /** Open circuits, for status views and tests. */
  circuits(): ClientCircuit[] {
    return [...this.pool].map((m) => m.circ).filter((c): c is ClientCircuit => c !== null && c.isOpen);
  }

  /**
   * A TCP stream to host:port through an exit (what the SOCKS server asks for). Rejects with
   * the error of the END reason (EXIT_POLICY_REJECTED, EXIT_RESOLVE_FAILED,
   * EXIT_CONNECT_REFUSED, EXIT_TIMEOUT…), PATH_NO_EXIT, or a build failure.
   */
  async connect(req: ConnectRequest, signal?: AbortSignal): Promise<CircuitStream> {
    this.rememberPort(req.port);
    const attempts = this.opts.streamAttempts ?? 3;
    let last: BitcloudError | null = null;
    const tried = new Set<Managed>();
    const pathDeadline = Date.now() + (this.opts.pathWaitMs ?? 30_000);
    for (let i = 0; i < attempts; i++) {
      if (signal?.aborted) throw err('STREAM_ABORTED', 'the request was abandoned');
      let m: Managed;
      try {
        m = await this.circuitForWhenFree(req, tried, signal);
      } catch (e) {
        if (errorCode(e) === 'STREAM_ABORTED' || errorCode(e) === 'CIRCUIT_MANAGER_CLOSED') throw e;
        // No other path: the previous attempt's answer is the one that explains the failure.
        if (last) break;
        if (await this.waitForPath(e, pathDeadline, signal)) { i--; continue; }
        throw e;
      }
      tried.add(m);
      try {
        let opening: ReturnType<ClientCircuit['openStream']>;
        try {
          const circ = await m.ready;
          if (LAT_TRACE) latTrace('manager.circuit', m.circ ? 'ready' : '?');
          // openStream puts the stream in circ.edge.streams at once: from here it protects the circuit.
          opening = circ.openStream({ kind: 'begin', host: req.host, port: req.port }, this.opts.streamTimeoutMs ?? STREAM_OPEN_TIMEOUT_MS);
        } finally {
          m.attaching--;
        }
        const { stream } = await opening;
        if (signal?.aborted) { stream.destroy(); throw err('STREAM_ABORTED', 'the request was abandoned'); }
        if (LAT_TRACE) latTrace('manager.stream-open');
        this.m?.streams.inc({ result: 'ok' });
        // SPEC.md §7b.11: a circuit is used when a stream is attached to it and when one ends on it.
        m.lastUsed = Date.now();
        stream.once('close', () => { m.lastUsed = Date.now(); });
        return stream;
      } catch (e) {
        last = isBitcloudError(e) ? e : err('STREAM_FAILED', String((e as Error)?.message ?? e));
        if (last.code === 'EXIT_POLICY_REJECTED') m.refused.add(`${req.host.toLowerCase()}:${req.port}`);
        else if (last.code === 'STREAM_TIMEOUT') this.retireForNewStreams(m);
        // SPEC.md §7b.11: a failure that closed the circuit (its build failed, or it closed before
        // CONNECTED) is the circuit's, whatever the code: the stream goes to another circuit.
        const circuitFailed = m.circ ? m.circ.closedWith === last : isBuildFailure(last);
        if (!circuitFailed && !retryable(last.code)) {
          // The build chose its path again after a failure and found none: wait as above.
          if (await this.waitForPath(last, pathDeadline, signal)) { last = null; i--; continue; }
          break;
        }
        this.log.debug({ code: last.code, attempt: i + 1 }, 'stream attempt failed; trying another circuit');
      }
    }
    this.m?.streams.inc({ result: last?.code ?? 'unknown' });
    throw last ?? err('STREAM_FAILED', 'no attempt made');
  }

  /**
   * SPEC.md §7.1: whether a "no path yet" failure may wait for a better consensus: true after
   * `pathRetryMs` when the deadline allows and the request is still wanted; false at once for any
   * other failure.
   */
  private async waitForPath(e: unknown, deadline: number, signal?: AbortSignal): Promise<boolean> {
    const code = errorCode(e);
    if (!NO_PATH_YET.has(code as ErrorCode)) return false;
    const pause = this.opts.pathRetryMs ?? 1000;
    if (this.closed || signal?.aborted || Date.now() + pause > deadline) return false;
    this.log.debug({ code }, 'no path yet; the stream request waits for the consensus to allow one');
    try {
      await sleep(pause, undefined, { signal });
    } catch {
      return false; // abandoned
    }
    return !this.closed && !signal?.aborted;
  }

  /** For the storage client: a fresh circuit whose last hop is `lastHop` (guard, middle, lastHop). */
  async buildCircuitTo(lastHop: ClientRelay): Promise<ClientCircuit> {
    const { circ } = await this.builder.build({ storageNode: lastHop });
    const m: Managed = { circ, ready: Promise.resolve(circ), exit: lastHop, isolation: null, purpose: 'storage', refused: new Set(), lastUsed: Date.now(), attaching: 0 };
    this.adopt(m);
    return circ;
  }

  /** Open a stream of any kind on a circuit this manager (or anyone) built. */
  async openStream(circ: ClientCircuit, req: StreamRequest): Promise<CircuitStream> {
    return (await circ.openStream(req, this.opts.streamTimeoutMs ?? STREAM_OPEN_TIMEOUT_MS)).stream;
  }

  /** Destroy every circuit and link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const wake of [...this.slotWaiters]) wake();
    for (const m of this.pool) m.circ?.destroy();
    this.pool.clear();
    await this.builder.close();
  }

  // ---- choosing and building ----

  private usable(m: Managed, req: ConnectRequest, now: number): boolean {
    if (m.purpose !== 'general' || m.noNewStreams) return false;
    if (m.circ && (!m.circ.isOpen || this.isRetired(m.circ, now))) return false;
    if (!canAttach(m.isolation, req.isolation)) return false;
    if (m.refused.has(`${req.host.toLowerCase()}:${req.port}`)) return false;
    return exitPolicyAllows(relayExitPolicy(m.exit), req.host, req.port) !== 'no';
  }

  private isRetired(c: ClientCircuit, now: number): boolean {
    return c.dirtySince !== null && now - c.dirtySince >= (this.opts.maxDirtinessMs ?? 600_000);
  }

  /**
   * SPEC.md §7b.11: remember a port asked for, as the most recent; past MAX_RECENT_PORTS the one
   * asked for least recently is forgotten, so requests to every port cannot make each maintenance
   * pass walk tens of thousands of them.
   */
  private rememberPort(port: number): void {
    this.recentPorts.delete(port); // a Map keeps insertion order: the first key is the oldest
    this.recentPorts.set(port, Date.now());
    if (this.recentPorts.size > MAX_RECENT_PORTS) this.recentPorts.delete(this.recentPorts.keys().next().value!);
  }

  /** The number of general circuits that may be building at once (SPEC.md §7b.11). */
  private get maxPending(): number { return this.opts.maxPendingCircuits ?? 32; }

  /**
   * SPEC.md §7b.11: circuitFor, but when the request needs a new circuit while maxPending are
   * being built, wait until one of them ends (built or failed) and choose again, so a flood of
   * requests with new isolation keys cannot make the client build circuits without bound.
   */
  private async circuitForWhenFree(req: ConnectRequest, tried: Set<Managed>, signal?: AbortSignal): Promise<Managed> {
    for (;;) {
      const m = this.circuitFor(req, tried);
      if (m) return m;
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { done(); reject(err('STREAM_ABORTED', 'the request was abandoned')); };
        const wake = (): void => { done(); if (this.closed) reject(err('CIRCUIT_MANAGER_CLOSED', 'the circuit manager is closed')); else resolve(); };
        const done = (): void => { this.slotWaiters.delete(wake); signal?.removeEventListener('abort', onAbort); };
        if (signal?.aborted) return onAbort();
        if (this.closed) return wake();
        this.slotWaiters.add(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /** A circuit for the request: a usable one, a new one, or null when maxPending are being built. */
  private circuitFor(req: ConnectRequest, tried: Set<Managed>): Managed | null {
    const now = Date.now();
    let best: Managed | null = null;
    for (const m of this.pool) {
      if (tried.has(m) || !this.usable(m, req, now)) continue;
      // Prefer a circuit already carrying this isolation key, then a built one, then one being built.
      const score = (x: Managed) => (x.isolation !== null ? 2 : 0) + (x.circ ? 1 : 0);
      if (!best || score(m) > score(best)) best = m;
    }
    if (best) {
      best.isolation ??= req.isolation;
      best.lastUsed = now; // SPEC.md §7b.11: a stream is about to be attached; not the one to close next
      best.attaching++;
      return best;
    }
    if (this.building >= this.maxPending) return null;
    const exclude = new Set<string>();
    for (const m of tried) if (m.refused.size > 0) exclude.add(m.exit.fingerprint);
    const m = this.launch({ host: isIpLiteral(req.host) ? null : req.host, ip: isIpLiteral(req.host) ? req.host : undefined, port: req.port }, req.isolation, exclude);
    m.attaching++;
    return m;
  }

  /** Start building a general circuit; its exit is chosen now, so concurrent requests can share the build. */
  private launch(target: PathTarget, isolation: IsolationKey | null, exclude: ReadonlySet<string>): Managed {
    const first = this.builder.choose(target, exclude);
    const m: Managed = { circ: null, ready: Promise.resolve(null as unknown as ClientCircuit), exit: first[2], isolation, purpose: 'general', refused: new Set(), lastUsed: Date.now(), attaching: 0 };
    this.building++;
    // SPEC.md §7b.11: a build that ends, either way, frees its place for the requests waiting for one.
    const ended = (): void => {
      this.building--;
      for (const wake of [...this.slotWaiters]) wake();
    };
    m.ready = this.builder.build(target, exclude, first).then(({ circ, path }) => {
      ended();
      m.circ = circ;
      m.exit = path[path.length - 1];
      m.lastUsed = Date.now();
      circ.once('close', () => this.pool.delete(m));
      // SPEC.md §7b.11: a circuit that closed as its build ended (a DESTROY read with its last
      // EXTENDED2) emitted its close before this listener: it is dropped now, not held for good.
      if (!circ.isOpen) this.pool.delete(m);
      else if (this.closed) circ.destroy();
      else this.evictOverLimit(m);
      return circ;
    }, (e) => { ended(); this.pool.delete(m); throw e; });
    m.ready.catch(() => {});
    this.pool.add(m);
    return m;
  }

  /**
   * SPEC.md §7b.11: once `built` is open, while more than maxOpenCircuits general circuits are
   * open, close the least recently used one that carries no stream and that no request has chosen
   * and not yet sent its BEGIN on (never `built`, which a request is about to use). When every other
   * one carries a stream or is so chosen, `built` is kept and the excess counted:
   * a live stream is never broken. Circuits of other purposes (storage, rendezvous) are not counted.
   */
  private evictOverLimit(built: Managed): void {
    const max = this.opts.maxOpenCircuits ?? 256;
    const open = [...this.pool].filter((x) => x.purpose === 'general' && x.circ !== null && x.circ.isOpen);
    let excess = open.length - max;
    if (excess <= 0) return;
    // A circuit a request chose and has not yet sent its BEGIN on (built in the same turn as
    // `built`, or chosen while built) is as busy as one carrying a stream.
    const idle = open.filter((x) => x !== built && x.attaching === 0 && x.circ!.edge.streams.size === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const x of idle) {
      if (excess <= 0) break;
      this.retire(x);
      this.m?.evicted.inc();
      excess--;
    }
    if (excess > 0) {
      this.m?.overLimit.inc();
      this.log.debug({ open: open.length, max }, 'more open circuits than maxOpenCircuits, all of them carrying streams; the new one is kept');
    }
  }

  private adopt(m: Managed): void {
    if (m.circ && !m.circ.isOpen) return; // closed as its build ended: its close was already emitted
    this.pool.add(m);
    m.circ?.once('close', () => this.pool.delete(m));
  }

  private retire(m: Managed): void {
    this.pool.delete(m);
    m.circ?.destroy();
  }

  /**
   * SPEC.md §7b.6: a BEGIN that timed out (END(TIMEOUT) already sent for it) marks its circuit as
   * taking no new streams, as Tor does; the streams it carries go on, and it closes with its last.
   */
  private retireForNewStreams(m: Managed): void {
    m.noNewStreams = true;
    if (!m.circ || m.circ.edge.streams.size === 0) this.retire(m);
  }

  /** Retire old dirty circuits (closing those with no streams left) and keep preemptive ones ready. */
  private maintain(): void {
    if (this.closed) return;
    const now = Date.now();
    const maxUnused = this.opts.maxUnusedMs ?? 3_600_000;
    for (const m of [...this.pool]) {
      const c = m.circ;
      if (!c || !c.isOpen) continue;
      if ((this.isRetired(c, now) || m.noNewStreams) && c.edge.streams.size === 0) this.retire(m);
      else if (c.dirtySince === null && m.purpose === 'general' && now - c.createdAt > maxUnused) this.retire(m);
    }
    this.builder.closeIdleLinks(this.opts.linkIdleMs ?? 300_000, now);
    const want = this.opts.preemptiveCircuits ?? 2;
    if (want <= 0) return;
    const memory = this.opts.portMemoryMs ?? 3_600_000;
    for (const [p, t] of this.recentPorts) if (now - t > memory) this.recentPorts.delete(p);
    const ports = this.recentPorts.size > 0 ? [...this.recentPorts.keys()] : [DEFAULT_PORT];
    for (const port of ports) {
      const clean = [...this.pool].filter((m) => m.purpose === 'general' && m.isolation === null
        && (!m.exit || exitPolicyAllows(relayExitPolicy(m.exit), null, port) !== 'no')).length;
      for (let i = clean; i < want; i++) {
        if (this.building >= this.maxPending) return; // SPEC.md §7b.11: preemptive builds count too
        try {
          this.launch({ host: null, port }, null, new Set());
        } catch (e) {
          // A port no exit allows (PATH_NO_EXIT) gets none; the other recent ports still do.
          this.log.debug({ code: errorCode(e) }, 'no preemptive circuit for a recent port');
          break;
        }
      }
    }
  }
}

/** Failures worth another circuit: the circuit, not the target, was the problem. */
const RETRY_ON_ANOTHER_CIRCUIT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CIRCUIT_DESTROYED', 'STREAM_TIMEOUT', 'STREAM_REFUSED', 'EXIT_RESOURCE_LIMIT', 'EXIT_POLICY_REJECTED',
  'CIRCUIT_BUILD_TIMEOUT', 'STREAM_CLOSED',
]);
function retryable(code: ErrorCode): boolean {
  return RETRY_ON_ANOTHER_CIRCUIT.has(code) || layerOf(code) === 'LINK';
}

function isIpLiteral(h: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':');
}
