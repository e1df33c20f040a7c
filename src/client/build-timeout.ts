// SPEC.md §7.3 (circuit build timeouts): learn when to give up on a circuit build from observed
// build times, after Tor's CBT (path-spec "Learning when to give up"): keep the last 1000 build
// times, fit a Pareto tail (Xm from the histogram modes, alpha by maximum likelihood with timed-out
// builds as right-censored observations), and time out at the 80% quantile. Pure state: the
// circuit manager measures, calls record()/recordTimeout(ms), and asks timeoutMs().
import { err } from '../errors';

export interface BuildTimeoutOptions {
  /** Timeout used until minSamples build times are known. Default 60 000 ms. */
  initialTimeoutMs?: number;
  /** Floor on the learned timeout. Default 1 500 ms (a GC pause must not fail every build). */
  minTimeoutMs?: number;
  /** Ceiling on any timeout. Default 120 000 ms. */
  maxTimeoutMs?: number;
  /** Pareto CDF quantile to cut at. Default 0.8. */
  quantile?: number;
  /** Observations needed before the learned value is used. Default 100. */
  minSamples?: number;
  /** Observations kept (a ring: oldest forgotten first). Default 1000. */
  maxSamples?: number;
  /** Histogram bin width for finding Xm. Default 10 ms. */
  binMs?: number;
  /** How many most-frequent bins average into Xm. Default 10. */
  modes?: number;
  /** Window of recent outcomes watched for a network change. Default 20. */
  recentCount?: number;
  /** Timeouts within that window that trigger a reset. Default 18. */
  maxRecentTimeouts?: number;
}

export interface BuildTimeoutState {
  version: 1;
  /** Observed build times in ms; a timed-out build is recorded as {ms: the timeout it ran under, timedOut: true}. */
  samples: { ms: number; timedOut?: boolean }[];
  fallbackMs: number;
}

const DEFAULTS: Required<BuildTimeoutOptions> = {
  initialTimeoutMs: 60_000, minTimeoutMs: 1_500, maxTimeoutMs: 120_000, quantile: 0.8,
  minSamples: 100, maxSamples: 1000, binMs: 10, modes: 10, recentCount: 20, maxRecentTimeouts: 18,
};

export class BuildTimeoutEstimator {
  readonly opts: Required<BuildTimeoutOptions>;
  private readonly ms: Float64Array;
  private readonly censored: Uint8Array;
  private next = 0;
  private count = 0;
  private readonly recent: Uint8Array;
  private recentNext = 0;
  private recentFilled = 0;
  /** The timeout used while there are too few samples (initial, or raised after a reset). */
  private fallbackMs: number;
  private cached: number | null = null;
  private fit: { xm: number; alpha: number } | null = null;

  constructor(opts: BuildTimeoutOptions = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    const o = this.opts;
    if (!(o.quantile > 0 && o.quantile < 1)) throw err('CONFIG_INVALID', `build timeout quantile must be in (0,1), got ${o.quantile}`);
    if (!(o.minTimeoutMs > 0 && o.minTimeoutMs <= o.maxTimeoutMs)) throw err('CONFIG_INVALID', 'build timeout min must be > 0 and <= max');
    if (!(o.minSamples >= 1 && o.maxSamples >= o.minSamples)) throw err('CONFIG_INVALID', 'build timeout maxSamples must be >= minSamples >= 1');
    this.ms = new Float64Array(o.maxSamples);
    this.censored = new Uint8Array(o.maxSamples);
    this.recent = new Uint8Array(o.recentCount);
    this.fallbackMs = this.clamp(o.initialTimeoutMs);
  }

  /** Number of observations (completed and timed out) currently held. */
  get sampleCount(): number { return this.count; }

  /** The current Pareto fit, or null while the fallback timeout is in force. */
  pareto(): { xm: number; alpha: number } | null {
    this.timeoutMs();
    return this.fit;
  }

  /** A circuit finished building in `ms` milliseconds (first three hops). */
  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw err('CIRCUIT_BAD_BUILD_TIME', `build time must be a finite non-negative number, got ${ms}`);
    this.push(ms, false);
    this.pushRecent(false);
  }

  /**
   * A build was abandoned at `ms`, the timeout it ran under (read when it started: other builds
   * may have moved the timeout since). It counts as a right-censored observation ("took at least
   * ms", SPEC.md §7.3). Too many timeouts among recent builds means the network changed under
   * us: forget the history and fall back to max(initial, 2 × current) until enough new samples
   * arrive (path-spec "Detecting Changing Network Conditions").
   */
  recordTimeout(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw err('CIRCUIT_BAD_BUILD_TIME', `build timeout must be a finite non-negative number, got ${ms}`);
    const current = this.timeoutMs();
    this.push(ms, true);
    this.pushRecent(true);
    let timeouts = 0;
    for (let i = 0; i < this.recentFilled; i++) timeouts += this.recent[i];
    if (timeouts >= this.opts.maxRecentTimeouts) {
      this.next = this.count = 0;
      this.recentNext = this.recentFilled = 0;
      this.fallbackMs = this.clamp(Math.max(this.opts.initialTimeoutMs, 2 * current));
      this.cached = null;
    }
  }

  /** The timeout to apply to the next circuit build, in ms. */
  timeoutMs(): number {
    if (this.cached !== null) return this.cached;
    this.fit = this.count >= this.opts.minSamples ? this.computeFit() : null;
    this.cached = this.fit
      ? this.clamp(this.fit.xm * Math.pow(1 - this.opts.quantile, -1 / this.fit.alpha))
      : this.fallbackMs;
    return this.cached;
  }

  toJSON(): BuildTimeoutState {
    const samples: BuildTimeoutState['samples'] = [];
    const start = (this.next - this.count + this.opts.maxSamples) % this.opts.maxSamples;
    for (let i = 0; i < this.count; i++) {
      const j = (start + i) % this.opts.maxSamples;
      samples.push(this.censored[j] ? { ms: this.ms[j], timedOut: true } : { ms: this.ms[j] });
    }
    return { version: 1, samples, fallbackMs: this.fallbackMs };
  }

  /** Restore from toJSON() output (e.g. the client's state file); bad entries are skipped. */
  static fromJSON(state: unknown, opts: BuildTimeoutOptions = {}): BuildTimeoutEstimator {
    const e = new BuildTimeoutEstimator(opts);
    const s = state as Partial<BuildTimeoutState> | null;
    if (!s || s.version !== 1 || !Array.isArray(s.samples)) return e;
    for (const x of s.samples) {
      if (x && typeof x.ms === 'number' && Number.isFinite(x.ms) && x.ms >= 0) e.push(x.ms, x.timedOut === true);
    }
    if (typeof s.fallbackMs === 'number' && Number.isFinite(s.fallbackMs)) e.fallbackMs = e.clamp(s.fallbackMs);
    return e;
  }

  private clamp(ms: number): number {
    return Math.round(Math.min(this.opts.maxTimeoutMs, Math.max(this.opts.minTimeoutMs, ms)));
  }

  private push(ms: number, timedOut: boolean): void {
    this.ms[this.next] = ms;
    this.censored[this.next] = timedOut ? 1 : 0;
    this.next = (this.next + 1) % this.opts.maxSamples;
    if (this.count < this.opts.maxSamples) this.count++;
    this.cached = null;
  }

  private pushRecent(timedOut: boolean): void {
    this.recent[this.recentNext] = timedOut ? 1 : 0;
    this.recentNext = (this.recentNext + 1) % this.opts.recentCount;
    if (this.recentFilled < this.opts.recentCount) this.recentFilled++;
  }

  /**
   * Xm: count-weighted mean of the midpoints of the `modes` fullest histogram bins of completed
   * builds. alpha: censored-Pareto MLE, alpha = r / Σ ln(max(x_i, Xm) / Xm) over all
   * observations, where r counts completed builds only.
   */
  private computeFit(): { xm: number; alpha: number } | null {
    const { binMs, modes } = this.opts;
    const bins = new Map<number, number>();
    let completed = 0;
    for (let i = 0; i < this.count; i++) {
      if (this.censored[i]) continue;
      completed++;
      const b = Math.floor(this.ms[i] / binMs);
      bins.set(b, (bins.get(b) ?? 0) + 1);
    }
    if (completed === 0) return null;
    const top = [...bins.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, modes);
    let num = 0, den = 0;
    for (const [b, c] of top) { num += c * (b * binMs + binMs / 2); den += c; }
    const xm = num / den;
    let sum = 0;
    for (let i = 0; i < this.count; i++) sum += Math.log(Math.max(this.ms[i], xm) / xm);
    // Every observation at or below Xm: the tail is empty, so the timeout is Xm itself.
    const alpha = sum > 0 ? completed / sum : Number.POSITIVE_INFINITY;
    return { xm, alpha };
  }
}
