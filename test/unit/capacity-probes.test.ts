// SPEC.md §8.12 on an authority (directory/probes.ts): which probes a relay's figure comes from —
// the highest good probe of the last keepPeriods periods, else the newest good one while younger
// than holdPeriods periods; a failed probe removes nothing, a refused reply removes everything —
// and the figures kept in capacity-probes.json across a restart. Time is a manual clock; no test
// asserts on wall-clock time.
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CapacityProbes, DEFAULT_PROBE_CONFIG, PROBE_MAX_IN_FLIGHT, PROBE_SETUP_TIMEOUT_MS, PROBES_FILE, type ProbeConfig, type Prober } from '../../directory/probes';
import { parseAuthorityConfig } from '../../directory/config';
import { err, isBitcloudError } from '../../src/errors';
import { silentLogger } from '../../src/ops/log';
import type { VerifiedDescriptor } from '../../src/dir/descriptor';
import type { ProbeResult } from '../../src/bandwidth/probe';

const PERIOD = 30;
const P = PERIOD * 1000;
const FP = 'ab'.repeat(32);
const relay = { fingerprint: FP } as VerifiedDescriptor;
const cfg: ProbeConfig = { ...DEFAULT_PROBE_CONFIG, enabled: true, keepPeriods: 3, holdPeriods: 12 };

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-probes-'));
  dirs.push(d);
  return d;
}

/** A prober that answers from a queue: a figure (bytes/s) or an error code. */
function scripted(): { prober: Prober; next: Array<number | string> } {
  const next: Array<number | string> = [];
  const prober: Prober = () => {
    const v = next.shift();
    if (v === undefined || typeof v === 'string') return Promise.reject(err((v ?? 'PROBE_TIMEOUT') as 'PROBE_TIMEOUT', 'scripted failure'));
    const r: ProbeResult = { sent: 1, verified: 1, bytes: v, refused: 0, ms: 1000, bytesPerSecond: v };
    return Promise.resolve(r);
  };
  return { prober, next };
}

function probes(o: { now: () => number; prober: Prober; dataDir?: string; config?: ProbeConfig }): CapacityProbes {
  return new CapacityProbes({ config: o.config ?? cfg, periodSeconds: PERIOD, self: 'aa', authorities: ['aa'], relays: () => [relay], log: silentLogger, now: o.now, prober: o.prober, dataDir: o.dataDir });
}

describe('probe figure retention (SPEC §8.12)', () => {
  it('a failed probe does not drop the figure: the newest good probe holds it until holdPeriods', async () => {
    let t = 1_000 * P;
    const s = scripted();
    const p = probes({ now: () => t, prober: s.prober });
    s.next.push(900_000);
    await p.probe(relay);
    expect(p.figure(FP)).toBe(900_000);
    // Every probe after it fails (the relay is loaded, the circuit is not built in time).
    for (let k = 1; k <= 11; k++) {
      t += P;
      s.next.push('PROBE_TIMEOUT');
      expect(await p.probe(relay)).toBeNull();
      expect(p.figure(FP)).toBe(900_000);
    }
    expect(p.status()[FP]).toMatchObject({ bytesPerSecond: 900_000, held: true });
    // Older than holdPeriods: no figure.
    t = 1_000 * P + 12 * P + 1;
    expect(p.figure(FP)).toBeUndefined();
    expect(p.status()[FP]).toBeUndefined();
  });

  it('within keepPeriods the highest good probe counts; past it, the newest good one (not the highest of old ones)', async () => {
    let t = 1_000 * P;
    const s = scripted();
    const p = probes({ now: () => t, prober: s.prober });
    s.next.push(900_000, 400_000);
    await p.probe(relay);
    t += P;
    await p.probe(relay); // read low beside client traffic: the higher one still counts
    expect(p.figure(FP)).toBe(900_000);
    expect(p.status()[FP]).toMatchObject({ held: false });
    t += 3 * P + 1; // both probes are now older than keepPeriods: the newer one (400 000) holds
    expect(p.figure(FP)).toBe(400_000);
  });

  it('a refused reply (PROBE_REPLY_MISMATCH or _MALFORMED) drops every figure of the relay', async () => {
    const t = 1_000 * P;
    for (const code of ['PROBE_REPLY_MISMATCH', 'PROBE_REPLY_MALFORMED']) {
      const s = scripted();
      const p = probes({ now: () => t, prober: s.prober });
      s.next.push(900_000, code);
      await p.probe(relay);
      await p.probe(relay);
      expect(p.figure(FP)).toBeUndefined();
    }
  });

  it('holdPeriods below keepPeriods holds for keepPeriods', async () => {
    let t = 1_000 * P;
    const s = scripted();
    const p = probes({ now: () => t, prober: s.prober, config: { ...cfg, keepPeriods: 3, holdPeriods: 1 } });
    s.next.push(500_000);
    await p.probe(relay);
    t += 3 * P;
    expect(p.figure(FP)).toBe(500_000);
    t += 1;
    expect(p.figure(FP)).toBeUndefined();
  });

  it('counts every outcome with its duration', async () => {
    let t = 1_000 * P;
    const s = scripted();
    const seen: Array<[string, number | null]> = [];
    const p = new CapacityProbes({ config: cfg, periodSeconds: PERIOD, self: 'aa', authorities: ['aa'], relays: () => [relay], log: silentLogger, now: () => t,
      prober: (d, o) => { t += 2500; return s.prober(d, o); }, onResult: (r, sec) => seen.push([r, sec]) });
    s.next.push(100_000, 'LINK_TIMEOUT');
    await p.probe(relay);
    await p.probe(relay);
    expect(seen).toEqual([['ok', 2.5], ['LINK_TIMEOUT', 2.5]]);
    expect(Object.fromEntries(p.counts)).toEqual({ ok: 1, LINK_TIMEOUT: 1 });
  });
});

describe('probe figures on disk (SPEC §8.12, capacity-probes.json)', () => {
  it('a restarted authority keeps its figures', async () => {
    const dir = tmpDir();
    let t = 1_000 * P;
    const s = scripted();
    const a = probes({ now: () => t, prober: s.prober, dataDir: dir });
    s.next.push(700_000, 800_000);
    await a.probe(relay);
    t += 1000;
    await a.probe(relay);
    await a.flush();
    const file = path.join(dir, PROBES_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    t += P;
    const b = probes({ now: () => t, prober: s.prober, dataDir: dir });
    expect(b.figure(FP)).toBeUndefined();
    expect(b.load()).toBe(1);
    expect(b.figure(FP)).toBe(800_000);
    expect(b.status()[FP].probes).toEqual(a.status()[FP].probes);
  });

  it('entries past holdPeriods, malformed entries and unknown relays are not loaded', () => {
    const dir = tmpDir();
    const t = 1_000 * P;
    const good = { at: t - P, bytesPerSecond: 5, bytes: 5, ms: 1000 };
    fs.writeFileSync(path.join(dir, PROBES_FILE), JSON.stringify({ version: 1, relays: {
      [FP]: [good, { at: t - P, bytesPerSecond: -1, bytes: 5, ms: 1 }, { at: 'x' }, null],
      ['cd'.repeat(32)]: [{ at: t - 13 * P, bytesPerSecond: 9, bytes: 9, ms: 1000 }],
      'not-a-fingerprint': [good],
    } }));
    const p = probes({ now: () => t, prober: scripted().prober, dataDir: dir });
    expect(p.load()).toBe(1);
    expect(p.status()).toEqual({ [FP]: { bytesPerSecond: 5, held: false, probes: [good] } });
  });

  it('a file that is not JSON or of another version: starts without figures, no throw', () => {
    for (const body of ['{not json', JSON.stringify({ version: 2, relays: {} }), JSON.stringify({ version: 1, relays: [] })]) {
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, PROBES_FILE), body);
      const p = probes({ now: () => 1_000 * P, prober: scripted().prober, dataDir: dir });
      expect(p.load()).toBe(0);
    }
    // No file at all: nothing, silently.
    expect(probes({ now: () => 1_000 * P, prober: scripted().prober, dataDir: tmpDir() }).load()).toBe(0);
  });
});

describe('probe set-up, window and slots (SPEC §8.12)', () => {
  it('the link and CREATE2 bound is PROBE_SETUP_TIMEOUT_MS whatever the slot length', async () => {
    let bound = -1;
    const p = probes({ now: () => 1_000 * P, config: { ...cfg, seconds: 3 }, prober: (_d, o) => { bound = o.connectTimeoutMs ?? -1; return Promise.reject(err('PROBE_TIMEOUT', 'x')); } });
    await p.probe(relay);
    expect(bound).toBe(PROBE_SETUP_TIMEOUT_MS);
    expect(PROBE_SETUP_TIMEOUT_MS).toBeGreaterThan(3 * 1000 + 500);
  });

  it('inFlight is refused above the smallest per-circuit queue a relay may have (1000 cells)', () => {
    expect(DEFAULT_PROBE_CONFIG.inFlight).toBeLessThanOrEqual(PROBE_MAX_IN_FLIGHT);
    const FP2 = 'ab'.repeat(32);
    const parse = (probe: Record<string, unknown>) => parseAuthorityConfig({ identity: FP2, dataDir: 'd', listen: { port: 1 }, authorities: [{ name: 'a', identity: FP2, address: '127.0.0.1:1' }], probe }, '/');
    expect(parse({ inFlight: PROBE_MAX_IN_FLIGHT }).probe.inFlight).toBe(PROBE_MAX_IN_FLIGHT);
    expect(parse({ holdPeriods: 24 }).probe.holdPeriods).toBe(24);
    for (const bad of [{ inFlight: PROBE_MAX_IN_FLIGHT + 1 }, { holdPeriods: 0 }]) {
      try { parse(bad); expect.unreachable(); } catch (e) { expect(isBitcloudError(e, 'CONFIG_INVALID')).toBe(true); }
    }
  });

  it('a slot skipped because two probes still run is counted and logged as skipped for its relays', () => {
    const seen: string[] = [];
    const p = new CapacityProbes({ config: cfg, periodSeconds: PERIOD, self: 'aa', authorities: ['aa'], relays: () => [relay], log: silentLogger, now: () => 1_000 * P,
      prober: () => new Promise<ProbeResult>(() => {}), onResult: (r) => seen.push(r) });
    const slot = (s: number) => (p as unknown as { slot(s: number): void }).slot(s);
    slot(1);
    slot(2);
    slot(3);
    expect(seen).toEqual(['skipped']);
    expect(p.counts.get('skipped')).toBe(1);
  });
});
