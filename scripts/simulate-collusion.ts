// SPEC.md §8.8: what a colluding coalition gains under the bounds of §8.5.
// Runs the real measurement (src/bandwidth/measure.ts) and reward allocation (src/bandwidth/reward.ts)
// over a synthetic network; nothing here re-implements a rule.
//
//   node bin/run-ts.js scripts/simulate-collusion.ts [--relays 2000] [--epochs 6] [--fractions 0.01,0.05,0.1,0.2]
//        [--seed 1] [--sybil-size 0] [--kappa 1.5] [--slack 1000] [--gamma 2] [--circuit-sigma 1.5] [--json FILE] [--sweep]
//
// Model (documented in SPEC §8.8):
// - relay capacities are log-normal (median 5 MB/s, σ = 1.3, clipped to [50 kB/s, 1 GB/s]), roughly the
//   shape of Tor's advertised bandwidths; every relay has a random public IPv4 address and 100 epochs of history;
// - honest traffic: clients pick the three hops of a circuit in proportion to capacity; circuits carry a
//   log-normal number of cells (median 100 kB, σ = 1.5 by default: mean ≈ 300 kB; --circuit-sigma 2.5 puts most
//   bytes in rare bulk circuits: mean ≈ 2.3 MB); the network runs at 50 % of capacity;
//   every relay pair with traffic yields one honest receipt per epoch (Poisson number of circuits per pair);
// - the coalition: relays drawn at random until they hold a fraction f of all capacity (or, with
//   --sybil-size S, many relays of S bytes/s each, in distinct /16s, holding f of the capacity, that have served
//   long enough to leave the new-relay cap). They
//   declare absurd bandwidth, keep their honest receipts, and every pair of members in different /16s
//   countersigns an invented receipt far larger than any bound (claims above a cap cost nothing);
// - weights: each epoch's measurement becomes the next epoch's previous-consensus weight (one authority's view;
//   with identical receipts every authority measures the same, so the median is that value).
import { writeFileSync } from 'node:fs';
import { DEFAULT_BOUNDS, measure, provenCells, slash16, type BoundsParams, type PairCounts, type RelayFacts } from '../src/bandwidth/measure';
import { allocate, scheduledMint } from '../src/bandwidth/reward';

interface Opts {
  relays: number; epochs: number; fractions: number[]; seed: number;
  sybilSize: number; kappa: number; slack: number; gamma: number; circuitSigma: number; json?: string; sweep: boolean;
}

function parseArgs(argv: string[]): Opts {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, d: number): number => {
    const v = get(name);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number`);
    return n;
  };
  return {
    relays: num('relays', 2000),
    epochs: num('epochs', 6),
    fractions: (get('fractions') ?? '0.01,0.05,0.1,0.2').split(',').map(Number),
    seed: num('seed', 1),
    sybilSize: num('sybil-size', 0),
    kappa: num('kappa', DEFAULT_BOUNDS.peerCapFactor),
    slack: num('slack', DEFAULT_BOUNDS.peerCapSlackCells),
    gamma: num('gamma', DEFAULT_BOUNDS.growthFactor),
    circuitSigma: num('circuit-sigma', 1.5),
    json: get('json'),
    sweep: argv.includes('--sweep'),
  };
}

/** sfc32: a small seeded generator, so every run of the table is reproducible. */
function rng(seed: number): () => number {
  let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = seed >>> 0;
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    const r = (t + d) | 0;
    c = (c + r) | 0;
    return (r >>> 0) / 4294967296;
  };
  for (let i = 0; i < 20; i++) next();
  return next;
}

interface SimRelay { fp: string; capacity: number; ipv4: string; coalition: boolean }

const EPOCH_SECONDS = 3600;
const UTILISATION = 0.5;
/** Cells the coalition claims on every pair: far above any cap, small enough that sums stay exact. */
const INVENTED_CELLS = 1e11;

function logNormal(r: () => number, median: number, sigma: number): number {
  const u = Math.max(r(), 1e-12), v = r();
  return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
}

function randomIp(r: () => number): string {
  return `${1 + Math.floor(r() * 223)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${1 + Math.floor(r() * 254)}`;
}

function makeNetwork(o: Opts, f: number, r: () => number): SimRelay[] {
  const fp = (i: number) => i.toString(16).padStart(64, '0');
  const relays: SimRelay[] = [];
  for (let i = 0; i < o.relays; i++) {
    relays.push({ fp: fp(i + 1), capacity: Math.min(1e9, Math.max(5e4, logNormal(r, 5e6, 1.3))), ipv4: randomIp(r), coalition: false });
  }
  const honestTotal = relays.reduce((a, x) => a + x.capacity, 0);
  if (o.sybilSize > 0) {
    // Established Sybil relays of sybilSize each, holding f of the capacity: S·n / (H + S·n) = f.
    const n = Math.max(2, Math.round((f * honestTotal) / ((1 - f) * o.sybilSize)));
    const used = new Set(relays.map((x) => slash16(x.ipv4)));
    for (let i = 0; i < n; i++) {
      let ip = randomIp(r);
      while (used.has(slash16(ip))) ip = randomIp(r);
      used.add(slash16(ip));
      relays.push({ fp: fp(o.relays + i + 1), capacity: o.sybilSize, ipv4: ip, coalition: true });
    }
  } else {
    const order = relays.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    let held = 0;
    for (const i of order) {
      if (held >= f * honestTotal) break;
      relays[i].coalition = true;
      held += relays[i].capacity;
    }
  }
  return relays;
}

/** Log-normal circuit sizes: median 200 cells (100 kB), σ from --circuit-sigma, at most 4·10^6 cells. */
const CIRCUIT_MEDIAN = 200;
const CIRCUIT_MAX = 4e6;
let CIRCUIT_SIGMA = 1.5;
let CIRCUIT_MEAN = 0;
let CIRCUIT_SD = 0;
function setCircuitSigma(sigma: number): void {
  CIRCUIT_SIGMA = sigma;
  CIRCUIT_MEAN = CIRCUIT_MEDIAN * Math.exp((sigma * sigma) / 2);
  CIRCUIT_SD = CIRCUIT_MEAN * Math.sqrt(Math.exp(sigma * sigma) - 1);
}

function normal(r: () => number): number {
  const u = Math.max(r(), 1e-12), v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function poisson(r: () => number, lambda: number): number {
  if (lambda > 50) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(r)));
  const l = Math.exp(-lambda);
  let k = 0, p = r();
  while (p > l) { k++; p *= r(); }
  return k;
}

/**
 * One epoch of honest traffic: cells per relay pair, vol[i][j] with i < j. Clients pick the three hops
 * of a circuit in proportion to capacity, so a circuit's links land on pair {i, j} 4·p_i·p_j times on
 * average; the number of circuits per pair is Poisson and each carries a log-normal number of cells.
 * The circuit count is set so the network runs at UTILISATION of its capacity.
 */
function honestTraffic(net: SimRelay[], r: () => number): Map<number, Map<number, number>> {
  const total = net.reduce((a, x) => a + x.capacity, 0);
  // Relays' credits (2 × all pair volumes) add up to UTILISATION × their two-way capacity.
  const linkCells = (UTILISATION * total * EPOCH_SECONDS) / 514;
  const circuits = linkCells / (2 * CIRCUIT_MEAN);
  const p = net.map((x) => x.capacity / total);
  const vol = new Map<number, Map<number, number>>();
  for (let i = 0; i < net.length; i++) {
    const m = new Map<number, number>();
    for (let j = i + 1; j < net.length; j++) {
      const k = poisson(r, 4 * circuits * p[i] * p[j]);
      if (k === 0) continue;
      let c = 0;
      if (k <= 64) for (let n = 0; n < k; n++) c += Math.min(CIRCUIT_MAX, CIRCUIT_MEDIAN * Math.exp(CIRCUIT_SIGMA * normal(r)));
      else c = Math.max(0, k * CIRCUIT_MEAN + Math.sqrt(k) * CIRCUIT_SD * normal(r));
      m.set(j, Math.round(c));
    }
    vol.set(i, m);
  }
  return vol;
}

interface EpochResult { attack: boolean; coalitionShare: number; honestRemoved: number; medianRelayRemoved: number }

function runScenario(o: Opts, f: number, params: BoundsParams): { members: number; fair: number; epochs: EpochResult[] } {
  const r = rng(o.seed * 1000 + Math.round(f * 1000));
  const net = makeNetwork(o, f, r);
  const totalCap = net.reduce((a, x) => a + x.capacity, 0);
  const fair = net.filter((x) => x.coalition).reduce((a, x) => a + x.capacity, 0) / totalCap;
  const relays = new Map<string, RelayFacts>(net.map((x) => [x.fp, {
    declaredBandwidth: x.coalition ? 1e12 : x.capacity, ipv4: x.ipv4, history: 100,
  }]));
  const members = net.map((x, i) => (x.coalition ? i : -1)).filter((i) => i >= 0);
  // Before the coalition acts, weights reflect honest measurement: start from expected credit, settle two epochs.
  let prev = new Map<string, number>(net.map((x) => [x.fp, UTILISATION * 2 * x.capacity]));
  const results: EpochResult[] = [];
  const warmup = 2;
  for (let epoch = 0; epoch < warmup + o.epochs; epoch++) {
    const fabricate = epoch >= warmup;
    const vol = honestTraffic(net, r);
    const receipts: PairCounts[] = [];
    for (const [i, m] of vol) for (const [j, c] of m) {
      if (c > 0) receipts.push({ initiator: net[i].fp, responder: net[j].fp, cellsI2R: Math.floor(c / 10), cellsR2I: c - Math.floor(c / 10) });
    }
    if (fabricate) {
      // Claims beyond what bound 3 lets a peer vouch for cost nothing, so each pair claims far more.
      for (let a = 0; a < members.length; a++) for (let b = a + 1; b < members.length; b++) {
        const x = net[members[a]], y = net[members[b]];
        if (slash16(x.ipv4) === slash16(y.ipv4)) continue; // earns nothing (bound 2): not worth inventing
        receipts.push({ initiator: x.fp, responder: y.fp, cellsI2R: INVENTED_CELLS, cellsR2I: 0 });
      }
    }
    const m = measure({ receipts, relays, previousWeights: prev, params });
    const proven = provenCells(m);
    const coins = allocate(scheduledMint(epoch), proven);
    let minted = 0n, coalitionCoins = 0n, honestGross = 0, honestKept = 0;
    const lossPerRelay: number[] = [];
    for (const x of net) {
      const c = coins.get(x.fp) ?? 0n;
      minted += c;
      const mm = m.get(x.fp);
      if (x.coalition) coalitionCoins += c;
      else if (mm && mm.grossCells > 0) {
        honestGross += mm.grossCells;
        honestKept += mm.cells;
        lossPerRelay.push(1 - mm.cells / mm.grossCells);
      }
    }
    lossPerRelay.sort((a, b) => a - b);
    results.push({
      attack: fabricate,
      coalitionShare: minted > 0n ? Number((coalitionCoins * 1_000_000n) / minted) / 1_000_000 : 0,
      honestRemoved: honestGross > 0 ? 1 - honestKept / honestGross : 0,
      medianRelayRemoved: lossPerRelay.length ? lossPerRelay[Math.floor(lossPerRelay.length / 2)] : 0,
    });
    prev = new Map([...m].map(([fp, v]) => [fp, v.bytesPerSecond]));
  }
  return { members: members.length, fair, epochs: results };
}

function pct(x: number): string { return `${(100 * x).toFixed(2)} %`; }

function summarize(f: number, s: ReturnType<typeof runScenario>) {
  const attack = s.epochs.filter((e) => e.attack);
  const before = s.epochs.filter((e) => !e.attack).at(-1)!;
  const mean = attack.reduce((a, e) => a + e.coalitionShare, 0) / attack.length;
  const last = attack[attack.length - 1];
  return {
    f, members: s.members,
    capacityShare: s.fair,
    honestRewardShare: before.coalitionShare,
    meanRewardShare: mean,
    lastEpochRewardShare: last.coalitionShare,
    gain: mean / before.coalitionShare,
    honestCreditRemovedNoAttack: before.honestRemoved,
    honestCreditRemovedUnderAttack: last.honestRemoved,
    medianRelayCreditRemovedNoAttack: before.medianRelayRemoved,
    perEpochShare: attack.map((e) => e.coalitionShare),
  };
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  setCircuitSigma(o.circuitSigma);
  const base: BoundsParams = { ...DEFAULT_BOUNDS, epochSeconds: EPOCH_SECONDS, peerCapFactor: o.kappa, peerCapSlackCells: o.slack, growthFactor: o.gamma };
  const rows = o.fractions.map((f) => {
    const t0 = Date.now();
    const row = summarize(f, runScenario(o, f, base));
    process.stderr.write(`f=${f}: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    return row;
  });
  const sweep = o.sweep ? [1.25, 1.5, 2, 3].flatMap((kappa) => [0.1, 0.2].map((f) => {
    const r = summarize(f, runScenario(o, f, { ...base, peerCapFactor: kappa }));
    return { kappa, ...r };
  })) : undefined;
  const out = {
    model: {
      relays: o.relays, epochs: o.epochs, seed: o.seed, epochSeconds: EPOCH_SECONDS, utilisation: UTILISATION,
      circuitCells: { distribution: 'log-normal', median: CIRCUIT_MEDIAN, sigma: CIRCUIT_SIGMA, mean: Math.round(CIRCUIT_MEAN), max: CIRCUIT_MAX },
      coalition: o.sybilSize > 0 ? `sybil relays of ${o.sybilSize} B/s in distinct /16s` : 'random existing relays',
      bounds: base,
    },
    rows, sweep,
  };
  if (o.json) writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
  console.log(JSON.stringify(out));
  console.log('\n| f | coalition relays | capacity share | reward share, honest | reward share, colluding (mean) | last epoch | gain | honest credit removed, no attack | under attack | median relay, no attack |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${pct(r.f)} | ${r.members} | ${pct(r.capacityShare)} | ${pct(r.honestRewardShare)} | ${pct(r.meanRewardShare)} | ${pct(r.lastEpochRewardShare)} | ${r.gain.toFixed(2)} | ${pct(r.honestCreditRemovedNoAttack)} | ${pct(r.honestCreditRemovedUnderAttack)} | ${pct(r.medianRelayCreditRemovedNoAttack)} |`);
  }
  if (sweep) {
    console.log('\n| κ | f | reward share, honest | colluding (last epoch) | gain | honest credit removed, no attack | median relay, no attack |');
    console.log('|---|---|---|---|---|---|---|');
    for (const s of sweep) console.log(`| ${s.kappa} | ${pct(s.f)} | ${pct(s.honestRewardShare)} | ${pct(s.lastEpochRewardShare)} | ${(s.lastEpochRewardShare / s.honestRewardShare).toFixed(2)} | ${pct(s.honestCreditRemovedNoAttack)} | ${pct(s.medianRelayCreditRemovedNoAttack)} |`);
  }
}

main();
