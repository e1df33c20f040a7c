import { describe, it, expect } from 'vitest';
import { BuildTimeoutEstimator } from '../../src/client/build-timeout';
import { isBitcloudError } from '../../src/errors';

/** Deterministic uniform (0,1) generator (LCG) so the statistics are reproducible. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s + 0.5) / 4294967296; };
}
function pareto(rng: () => number, xm: number, alpha: number): number {
  return xm / Math.pow(rng(), 1 / alpha);
}

describe('circuit build timeout (SPEC §7.3)', () => {
  it('uses 60 s until 100 observations are known', () => {
    const e = new BuildTimeoutEstimator();
    expect(e.timeoutMs()).toBe(60_000);
    for (let i = 0; i < 99; i++) e.record(300);
    expect(e.timeoutMs()).toBe(60_000);
    expect(e.pareto()).toBeNull();
    e.record(300);
    expect(e.timeoutMs()).toBeLessThan(60_000);
    expect(e.pareto()).not.toBeNull();
  });

  it('learns a timeout near the 80% quantile of a Pareto population', () => {
    const rng = lcg(7);
    const e = new BuildTimeoutEstimator({ minTimeoutMs: 10 });
    const times: number[] = [];
    for (let i = 0; i < 1000; i++) { const t = pareto(rng, 500, 3); times.push(t); e.record(t); }
    const t = e.timeoutMs();
    const under = times.filter((x) => x <= t).length / times.length;
    expect(under).toBeGreaterThan(0.72);
    expect(under).toBeLessThan(0.92);
    const truth = 500 * Math.pow(0.2, -1 / 3); // ≈ 855 ms
    expect(t).toBeGreaterThan(truth * 0.8);
    expect(t).toBeLessThan(truth * 1.25);
  });

  it('honours the configured quantile', () => {
    const rng = lcg(11);
    const a = new BuildTimeoutEstimator({ quantile: 0.8, minTimeoutMs: 10 });
    const b = new BuildTimeoutEstimator({ quantile: 0.95, minTimeoutMs: 10 });
    for (let i = 0; i < 500; i++) { const t = pareto(rng, 400, 2.5); a.record(t); b.record(t); }
    expect(b.timeoutMs()).toBeGreaterThan(a.timeoutMs());
  });

  it('never goes below the minimum timeout', () => {
    const e = new BuildTimeoutEstimator({ minTimeoutMs: 1500 });
    for (let i = 0; i < 200; i++) e.record(5 + (i % 3));
    expect(e.timeoutMs()).toBe(1500);
  });

  it('never exceeds the maximum timeout', () => {
    const e = new BuildTimeoutEstimator({ maxTimeoutMs: 90_000, minSamples: 10 });
    for (let i = 0; i < 20; i++) e.record(i < 10 ? 100 : 1_000_000);
    expect(e.timeoutMs()).toBe(90_000);
  });

  it('counts timed-out builds as right-censored observations (more timeouts, longer timeout)', () => {
    const rng = lcg(3);
    const a = new BuildTimeoutEstimator({ maxRecentTimeouts: 1000, recentCount: 20, minTimeoutMs: 10 });
    const b = new BuildTimeoutEstimator({ maxRecentTimeouts: 1000, recentCount: 20, minTimeoutMs: 10 });
    for (let i = 0; i < 300; i++) { const t = pareto(rng, 500, 3); a.record(t); b.record(t); }
    for (let i = 0; i < 30; i++) b.recordTimeout(b.timeoutMs());
    expect(b.timeoutMs()).toBeGreaterThan(a.timeoutMs());
  });

  it('resets to at least the initial timeout after many recent timeouts (network change)', () => {
    const e = new BuildTimeoutEstimator();
    for (let i = 0; i < 200; i++) e.record(2000 + (i % 50));
    const learned = e.timeoutMs();
    expect(learned).toBeLessThan(10_000);
    for (let i = 0; i < 17; i++) e.recordTimeout(e.timeoutMs());
    expect(e.sampleCount).toBe(217);
    e.recordTimeout(e.timeoutMs()); // the 18th of the last 20
    expect(e.sampleCount).toBe(0);
    expect(e.timeoutMs()).toBe(60_000);
    // A second collapse doubles the fallback.
    for (let i = 0; i < 18; i++) e.recordTimeout(e.timeoutMs());
    expect(e.timeoutMs()).toBe(120_000);
  });

  it('keeps only the most recent 1000 observations', () => {
    const e = new BuildTimeoutEstimator();
    for (let i = 0; i < 1000; i++) e.record(10_000);
    for (let i = 0; i < 1000; i++) e.record(2_000);
    expect(e.sampleCount).toBe(1000);
    expect(e.pareto()!.xm).toBeCloseTo(2005, 0);
  });

  it('round-trips through toJSON/fromJSON', () => {
    const rng = lcg(5);
    const e = new BuildTimeoutEstimator({ maxRecentTimeouts: 100 });
    for (let i = 0; i < 150; i++) e.record(pareto(rng, 300, 2));
    e.recordTimeout(e.timeoutMs());
    const copy = BuildTimeoutEstimator.fromJSON(JSON.parse(JSON.stringify(e.toJSON())));
    expect(copy.sampleCount).toBe(151);
    expect(copy.timeoutMs()).toBe(e.timeoutMs());
    expect(BuildTimeoutEstimator.fromJSON({ garbage: true }).timeoutMs()).toBe(60_000);
  });

  it('records a timed-out build at the timeout it ran under, not the one in force after', () => {
    const e = new BuildTimeoutEstimator();
    for (let i = 0; i < 99; i++) e.record(300);
    const t0 = e.timeoutMs(); // the build starts under the fallback
    expect(t0).toBe(60_000);
    e.record(300); // another build completes meanwhile: the learned timeout takes over
    expect(e.timeoutMs()).toBeLessThan(60_000);
    e.recordTimeout(t0);
    expect(e.toJSON().samples.at(-1)).toEqual({ ms: 60_000, timedOut: true });
  });

  it('refuses a nonsense build time with CIRCUIT_BAD_BUILD_TIME', () => {
    const e = new BuildTimeoutEstimator();
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      try { e.record(bad); expect.unreachable(); } catch (x) { expect(isBitcloudError(x, 'CIRCUIT_BAD_BUILD_TIME')).toBe(true); }
      try { e.recordTimeout(bad); expect.unreachable(); } catch (x) { expect(isBitcloudError(x, 'CIRCUIT_BAD_BUILD_TIME')).toBe(true); }
    }
  });
});
