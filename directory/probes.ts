// SPEC.md §8.12 on an authority: the capacity probes it runs itself, on a fixed slot schedule, and
// the figure each relay's weight may use (the highest of its probes in the last `keepPeriods`
// periods). The probe itself (a one-hop circuit of PROBE_ECHO cells, counted by this side only) is
// src/bandwidth/probe.ts; how the figure enters the weight is directory/bandwidth.ts probedSource.
import { errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import type { VerifiedDescriptor } from '../src/dir/descriptor';
import { runProbe, type ProbeOptions, type ProbeResult } from '../src/bandwidth/probe';

export interface ProbeConfig {
  /** Run probes at all. */
  enabled: boolean;
  /** Length of one probe's burst, seconds (also the slot length, with a 0.5 s gap). */
  seconds: number;
  /** Most bytes credited per probe. */
  maxBytes: number;
  /** Echo cells kept in flight. */
  inFlight: number;
  /** Probes this authority runs at once (on different relays). */
  parallel: number;
  /** The weight uses the highest figure of the probes of the last this many periods. */
  keepPeriods: number;
}

/** `enabled` here is the test network's default; the public network's is true (SPEC.md §8.12). */
export const DEFAULT_PROBE_CONFIG: ProbeConfig = { enabled: false, seconds: 10, maxBytes: 64 << 20, inFlight: 256, parallel: 1, keepPeriods: 3 };
/** Between two slots: the previous probe's circuit is torn down before the next one starts. */
export const PROBE_SLOT_GAP_MS = 500;

export type Prober = (d: VerifiedDescriptor, o: ProbeOptions) => Promise<ProbeResult>;

export interface ProbeRecord { at: number; bytesPerSecond: number; bytes: number; ms: number }

export interface CapacityProbesOptions {
  config: ProbeConfig;
  periodSeconds: number;
  /** This authority's fingerprint and every authority's (the slot offset, SPEC.md §8.12). */
  self: string;
  authorities: readonly string[];
  /** Relays to probe now: listed, reachable, with the relay role. */
  relays: () => VerifiedDescriptor[];
  log: Logger;
  onResult?: (result: string) => void;
  prober?: Prober;
  now?: () => number;
}

/**
 * SPEC.md §8.12 schedule. Time is cut into slots of `seconds + 0.5 s` from the Unix epoch; in slot
 * `s` the authority of rank `k` (its fingerprint's place among the authorities', ascending) probes
 * the relays of rank `(s·parallel + j + k·⌈N/n⌉) mod N`, j < parallel, relays sorted by fingerprint.
 * Authorities thus never probe one relay in the same slot while N ≥ n·parallel.
 */
export class CapacityProbes {
  private readonly o: CapacityProbesOptions;
  private readonly now: () => number;
  private readonly slotMs: number;
  private readonly rank: number;
  private readonly records = new Map<string, ProbeRecord[]>();
  private timer: NodeJS.Timeout | null = null;
  private running = 0;
  private stopped = false;
  readonly counts = new Map<string, number>();

  constructor(o: CapacityProbesOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.slotMs = o.config.seconds * 1000 + PROBE_SLOT_GAP_MS;
    const sorted = [...o.authorities].sort();
    this.rank = Math.max(0, sorted.indexOf(o.self));
  }

  start(): void {
    if (!this.o.config.enabled || this.timer || this.stopped) return;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    const now = this.now();
    const next = (Math.floor(now / this.slotMs) + 1) * this.slotMs;
    this.timer = setTimeout(() => { this.timer = null; this.slot(Math.round(next / this.slotMs)); this.schedule(); }, next - now);
    this.timer.unref();
  }

  /** The relays of slot `s` for this authority (exported for the unit test of the schedule). */
  pick(s: number, relays: readonly VerifiedDescriptor[]): VerifiedDescriptor[] {
    const sorted = [...relays].sort((a, b) => (a.fingerprint < b.fingerprint ? -1 : a.fingerprint > b.fingerprint ? 1 : 0));
    const N = sorted.length;
    if (N === 0) return [];
    const n = Math.max(1, this.o.authorities.length);
    const par = this.o.config.parallel;
    const out = new Map<string, VerifiedDescriptor>();
    for (let j = 0; j < par; j++) {
      const d = sorted[(((s * par + j + this.rank * Math.ceil(N / n)) % N) + N) % N];
      out.set(d.fingerprint, d);
    }
    return [...out.values()];
  }

  private slot(s: number): void {
    // A probe whose circuit took long to build may still run: start this slot's anyway (other
    // relays), unless two slots' worth are still running.
    if (this.running >= 2 * this.o.config.parallel) return;
    for (const d of this.pick(s, this.o.relays())) void this.probe(d);
  }

  /** Probe one relay now and record the figure (also used by tests). */
  async probe(d: VerifiedDescriptor): Promise<ProbeRecord | null> {
    const c = this.o.config;
    this.running++;
    try {
      const r = await (this.o.prober ?? runProbe)(d, { durationMs: c.seconds * 1000, maxBytes: c.maxBytes, inFlight: c.inFlight, connectTimeoutMs: Math.min(10_000, this.slotMs) });
      const rec: ProbeRecord = { at: this.now(), bytesPerSecond: r.bytesPerSecond, bytes: r.bytes, ms: r.ms };
      this.record(d.fingerprint, rec);
      this.count('ok');
      this.o.log.debug({ relay: d.fingerprint, bytesPerSecond: r.bytesPerSecond, bytes: r.bytes, ms: r.ms }, 'capacity probe');
      return rec;
    } catch (e) {
      const code = errorCode(e);
      this.count(code);
      this.o.log.debug({ relay: d.fingerprint, code }, 'capacity probe failed');
      return null;
    } finally {
      this.running--;
    }
  }

  private count(result: string): void {
    this.counts.set(result, (this.counts.get(result) ?? 0) + 1);
    this.o.onResult?.(result);
  }

  private record(fp: string, rec: ProbeRecord): void {
    const list = this.records.get(fp) ?? [];
    list.push(rec);
    const oldest = this.now() - this.o.config.keepPeriods * this.o.periodSeconds * 1000;
    this.records.set(fp, list.filter((x) => x.at >= oldest));
  }

  /**
   * SPEC.md §8.12: the relay's measured capacity, bytes/s: the highest figure of its probes in the
   * last `keepPeriods` periods (a probe that shared the relay with client traffic reads low, never
   * high), or undefined when it has none.
   */
  figure(fp: string): number | undefined {
    const oldest = this.now() - this.o.config.keepPeriods * this.o.periodSeconds * 1000;
    const recent = (this.records.get(fp) ?? []).filter((x) => x.at >= oldest);
    return recent.length ? Math.max(...recent.map((x) => x.bytesPerSecond)) : undefined;
  }

  /** For the status page: per relay, the figure and the probes it comes from. */
  status(): Record<string, { bytesPerSecond: number; probes: ProbeRecord[] }> {
    const out: Record<string, { bytesPerSecond: number; probes: ProbeRecord[] }> = {};
    for (const fp of [...this.records.keys()].sort()) {
      const f = this.figure(fp);
      if (f !== undefined) out[fp] = { bytesPerSecond: f, probes: this.records.get(fp)! };
    }
    return out;
  }
}
