// SPEC.md §8.12 on an authority: the capacity probes it runs itself, on a fixed slot schedule, and
// the figure each relay's weight may use (the highest of its probes in the last `keepPeriods`
// periods; with none there, its newest good probe while younger than `holdPeriods` periods). The
// figures are kept on disk (capacity-probes.json in the data directory), so a restarted authority
// keeps them. The probe itself (a one-hop circuit of PROBE_ECHO cells, counted by this side only) is
// src/bandwidth/probe.ts; how the figure enters the weight is directory/bandwidth.ts probedSource.
import fs from 'node:fs';
import path from 'node:path';
import { errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { writeFileAtomic } from '../src/ops/fsutil';
import type { VerifiedDescriptor } from '../src/dir/descriptor';
import { runProbe, type ProbeOptions, type ProbeResult, type ProbeTrace } from '../src/bandwidth/probe';

/** SPEC.md §8.12: the file in the authority's data directory that holds its probe figures. */
export const PROBES_FILE = 'capacity-probes.json';
/** SPEC.md §8.12: a refused reply is evidence of a relay that answers wrongly: it drops every figure of the relay. */
const DROPS_FIGURES = new Set(['PROBE_REPLY_MALFORMED', 'PROBE_REPLY_MISMATCH']);

export interface ProbeConfig {
  /** Run probes at all. */
  enabled: boolean;
  /** Length of one probe's burst, seconds (also the slot length, with a 0.5 s gap). */
  seconds: number;
  /** Most bytes credited per probe. */
  maxBytes: number;
  /**
   * Echo cells kept in flight (at most PROBE_MAX_IN_FLIGHT). The figure can never exceed
   * inFlight × 514 bytes per round trip, and a loaded relay's round trip includes its queues.
   */
  inFlight: number;
  /** Probes this authority runs at once (on different relays). */
  parallel: number;
  /** The weight uses the highest figure of the probes of the last this many periods. */
  keepPeriods: number;
  /**
   * With no good probe in the last `keepPeriods` periods (every probe since failed, or none ran),
   * the newest good one still counts until it is this many periods old (at least keepPeriods).
   */
  holdPeriods: number;
}

/** `enabled` here is the test network's default; the public network's is true (SPEC.md §8.12). */
export const DEFAULT_PROBE_CONFIG: ProbeConfig = { enabled: false, seconds: 10, maxBytes: 64 << 20, inFlight: 256, parallel: 1, keepPeriods: 3, holdPeriods: 12 };
/** Between two slots: the previous probe's circuit is torn down before the next one starts. */
export const PROBE_SLOT_GAP_MS = 500;
/**
 * SPEC.md §8.12: most echo cells in flight: the smallest per-circuit queue a relay may configure
 * (`maxQueuedCellsPerCircuit`, §7b.9), so a relay whose link to the measurer is busy queues the
 * echoes instead of destroying the circuit (CIRCUIT_QUEUE_FULL).
 */
export const PROBE_MAX_IN_FLIGHT = 1000;
/**
 * SPEC.md §8.12: the bound on the link handshake and, again, on CREATE2 of a probe, whatever the
 * slot length (a loaded relay, or a measurer on a busy machine, can take seconds to answer).
 */
export const PROBE_SETUP_TIMEOUT_MS = 10_000;

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
  /** Where capacity-probes.json lives (the authority's data directory); none = figures in memory only. */
  dataDir?: string;
  /** Each probe's outcome (ok or the error code) and its duration in seconds (link, circuit and burst); `skipped` with null for a relay whose slot was skipped. */
  onResult?: (result: string, seconds: number | null) => void;
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
    const picked = this.pick(s, this.o.relays());
    if (this.running >= 2 * this.o.config.parallel) {
      for (let k = 0; k < picked.length; k++) this.count('skipped', null);
      this.o.log.info({ relays: picked.map((d) => d.fingerprint), running: this.running }, 'capacity probe slot skipped: earlier probes still running');
      return;
    }
    for (const d of picked) void this.probe(d);
  }

  /** Probe one relay now and record the figure (also used by tests). */
  async probe(d: VerifiedDescriptor): Promise<ProbeRecord | null> {
    const c = this.o.config;
    const t0 = this.now();
    const trace: ProbeTrace = {};
    this.running++;
    try {
      const r = await (this.o.prober ?? runProbe)(d, { durationMs: c.seconds * 1000, maxBytes: c.maxBytes, inFlight: c.inFlight, connectTimeoutMs: this.connectTimeoutMs(), trace });
      const rec: ProbeRecord = { at: this.now(), bytesPerSecond: r.bytesPerSecond, bytes: r.bytes, ms: r.ms };
      this.record(d.fingerprint, rec);
      const durationMs = this.now() - t0;
      this.count('ok', durationMs);
      // SPEC.md §8.12: every probe is logged at info (the relay's fingerprint, never a client's anything).
      this.o.log.info({ relay: d.fingerprint, result: 'ok', bytesPerSecond: r.bytesPerSecond, bytes: r.bytes, burstMs: r.ms, durationMs, linkMs: trace.linkMs, circuitMs: trace.circuitMs, figure: this.figure(d.fingerprint) }, 'capacity probe');
      return rec;
    } catch (e) {
      const code = errorCode(e);
      const durationMs = this.now() - t0;
      if (DROPS_FIGURES.has(code) && this.records.delete(d.fingerprint)) this.persist();
      this.count(code, durationMs);
      this.o.log.info({ relay: d.fingerprint, result: code, phase: trace.phase, durationMs, linkMs: trace.linkMs, circuitMs: trace.circuitMs, err: (e as Error).message, figure: this.figure(d.fingerprint) ?? null }, 'capacity probe failed');
      return null;
    } finally {
      this.running--;
    }
  }

  /** SPEC.md §8.12: the bound on the link handshake and on CREATE2, each (not tied to the slot). */
  connectTimeoutMs(): number {
    return PROBE_SETUP_TIMEOUT_MS;
  }

  private count(result: string, ms: number | null): void {
    this.counts.set(result, (this.counts.get(result) ?? 0) + 1);
    this.o.onResult?.(result, ms === null ? null : ms / 1000);
  }

  private keepMs(): number { return this.o.config.keepPeriods * this.o.periodSeconds * 1000; }
  private holdMs(): number { return Math.max(this.o.config.keepPeriods, this.o.config.holdPeriods) * this.o.periodSeconds * 1000; }

  /**
   * SPEC.md §8.12: the probes a relay's figure comes from: its good probes of the last `keepPeriods`
   * periods or, when there is none, its newest good probe if younger than `holdPeriods` periods.
   * A failed probe removes nothing (a probe that could not reach a loaded relay says nothing about
   * its capacity), except a refused reply, which drops them all.
   */
  private kept(fp: string, now = this.now()): ProbeRecord[] {
    const list = this.records.get(fp) ?? [];
    const recent = list.filter((x) => x.at >= now - this.keepMs() && x.at <= now + this.keepMs());
    if (recent.length) return recent;
    const newest = list.reduce<ProbeRecord | null>((a, x) => (x.at <= now && (!a || x.at > a.at) ? x : a), null);
    return newest && newest.at >= now - this.holdMs() ? [newest] : [];
  }

  private record(fp: string, rec: ProbeRecord): void {
    this.records.set(fp, [...(this.records.get(fp) ?? []), rec]);
    this.prune();
    this.persist();
  }

  private prune(): void {
    const now = this.now();
    for (const fp of [...this.records.keys()]) {
      const k = this.kept(fp, now);
      if (k.length) this.records.set(fp, k); else this.records.delete(fp);
    }
  }

  /** Load capacity-probes.json (SPEC.md §8.12): figures survive a restart; expired or malformed entries are skipped. */
  load(): number {
    if (!this.o.dataDir) return 0;
    const file = path.join(this.o.dataDir, PROBES_FILE);
    try {
      const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: number; relays?: Record<string, unknown> };
      if (j.version !== 1 || typeof j.relays !== 'object' || j.relays === null || Array.isArray(j.relays)) throw new Error('unknown format');
      for (const [fp, v] of Object.entries(j.relays)) {
        if (!/^[0-9a-f]{64}$/.test(fp) || !Array.isArray(v)) continue;
        const recs = (v as Array<Partial<ProbeRecord>>).filter((x) => x !== null && typeof x === 'object'
          && [x.at, x.bytesPerSecond, x.bytes, x.ms].every((n) => Number.isSafeInteger(n) && (n as number) >= 0))
          .map((x) => ({ at: x.at!, bytesPerSecond: x.bytesPerSecond!, bytes: x.bytes!, ms: x.ms! }));
        if (recs.length) this.records.set(fp, recs);
      }
      this.prune();
    } catch (x) {
      if ((x as NodeJS.ErrnoException).code !== 'ENOENT') this.o.log.warn({ err: (x as Error).message }, 'capacity probe figures not usable; starting without');
    }
    return this.records.size;
  }

  private saving: Promise<void> | null = null;
  private dirty = false;

  /** Write capacity-probes.json atomically (one write at a time; a change meanwhile writes again). */
  private persist(): void {
    if (!this.o.dataDir) return;
    this.dirty = true;
    if (this.saving) return;
    const file = path.join(this.o.dataDir, PROBES_FILE);
    this.saving = (async () => {
      while (this.dirty) {
        this.dirty = false;
        const relays: Record<string, ProbeRecord[]> = {};
        for (const fp of [...this.records.keys()].sort()) relays[fp] = this.records.get(fp)!;
        try {
          await writeFileAtomic(file, JSON.stringify({ version: 1, relays }), 0o600);
        } catch (x) {
          this.o.log.error({ err: (x as Error).message }, 'saving capacity probe figures failed');
        }
      }
      this.saving = null;
    })();
  }

  /** Resolves once the figures on disk are the ones in memory. */
  async flush(): Promise<void> {
    while (this.saving) await this.saving;
  }

  /**
   * SPEC.md §8.12: the relay's measured capacity, bytes/s: the highest figure of its probes in the
   * last `keepPeriods` periods (a probe that shared the relay with client traffic reads low, never
   * high), else its newest good probe's while younger than `holdPeriods` periods, else undefined.
   */
  figure(fp: string): number | undefined {
    const k = this.kept(fp);
    return k.length ? Math.max(...k.map((x) => x.bytesPerSecond)) : undefined;
  }

  /** For the status page: per relay, the figure, the probes it comes from, and whether it is held (no good probe in keepPeriods). */
  status(): Record<string, { bytesPerSecond: number; held: boolean; probes: ProbeRecord[] }> {
    const out: Record<string, { bytesPerSecond: number; held: boolean; probes: ProbeRecord[] }> = {};
    const now = this.now();
    for (const fp of [...this.records.keys()].sort()) {
      const k = this.kept(fp, now);
      if (k.length) out[fp] = { bytesPerSecond: Math.max(...k.map((x) => x.bytesPerSecond)), held: k.every((x) => x.at < now - this.keepMs()), probes: k };
    }
    return out;
  }
}
