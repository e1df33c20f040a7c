// SPEC.md §8.8: what each strategy gains under the measurement rule of §8.5, to convergence, over
// several seeds. The network is modelled at the level of per-pair cell counts in typed arrays (no
// signed receipts); each epoch's counts go through `applyPairRule` or `applyRule`
// (src/bandwidth/rule.ts), the functions the authorities run after verifying receipts
// (measurePairRule), amplification goes through the responder's link bound (`r2iExcessAllowed`,
// src/bandwidth/receipt.ts), and coins through `allocate` (src/bandwidth/reward.ts).
//
//   npm run simulate -- [--json] [--rule pair|dispersion] [--kappa K] [--slack S] [--owed-epochs H]
//        [--bank-epochs B] [--paid-not-weight] [--relays 500] [--scale-of 2000] [--seeds 1,2,3]
//        [--fractions 0.05,0.2] [--min-epochs 48] [--max-epochs 96] [--workers 3] [--sybil-size 5000000]
//        [--on-epochs 12] [--off-epochs 12]
//        [--rows fabricated,amplification,sybil,sybil-costly,onoff,capture,honest-heavy,honest]
//
// With --json, stdout is one JSON object {"model": {...}, "rows": [...]} and the table goes to stderr; without it the
// table goes to stdout. The model is described in SPEC §8.8.
import { spawn } from 'node:child_process';
import yargs from 'yargs';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_BOUNDS, DEFAULT_PAIR_RULE, applyPairRule, applyRule, type BoundsParams, type OwedTable, type PairRuleParams, type PairRuleResult,
} from '../src/bandwidth/rule';
import { allocate, scheduledMint } from '../src/bandwidth/reward';
import { inFlightTolerance, r2iExcessAllowed } from '../src/bandwidth/receipt';
import { argon2id } from '../src/crypto/primitives';
import { DEFAULT_POW_PARAMS, powSalt } from '../src/dir/identity-pow';
import { CELL_LEN } from '../src/wire/cell';

// ---------------------------------------------------------------- options

interface Opts {
  json: boolean; relays: number; seeds: number[]; fractions: number[]; minEpochs: number; maxEpochs: number;
  scaleOf: number; rows: Set<string>; sybilSize: number; onEpochs: number; offEpochs: number;
  workers: number; workerSeed?: number;
  rule: string; dispersion: Partial<BoundsParams>; pair: Partial<PairRuleParams>;
}

/**
 * The options, through yargs (strict, --help): an unknown option, a flag without its value, a
 * number that is not one or a row that does not exist stops here with the usage, before anything runs.
 */
function parseArgs(argv: string[]): Opts {
  const numbers = (v: string, name: string): number[] => v.split(',').map((x) => {
    const n = Number(x);
    if (x.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name} wants numbers separated by commas, not ${JSON.stringify(v)}`);
    return n;
  });
  const num = (describe: string) => ({ type: 'number' as const, requiresArg: true, describe });
  const numD = (describe: string, d: number) => ({ type: 'number' as const, requiresArg: true, describe, default: d });
  const a = yargs(argv)
    .scriptName('npm run simulate --')
    .usage('$0 [options]\n\nWhat each strategy gains under the measurement rule (SPEC.md §8.8), to convergence, over several seeds.')
    .option('json', { type: 'boolean', default: false, describe: 'stdout: one JSON object {model, rows}; the table goes to stderr' })
    .option('rule', { type: 'string', choices: ['pair', 'dispersion'], default: 'pair', describe: 'The measurement rule (SPEC.md §8.5)' })
    .option('kappa', num('The rule\'s factor (pairFactor, or peerCapFactor with --rule dispersion)'))
    .option('slack', num('The rule\'s slack in cells (pairSlackCells, or peerCapSlackCells)'))
    .option('owed-epochs', num('pair rule: owedEpochs'))
    .option('bank-epochs', num('pair rule: bankEpochs'))
    .option('paid-not-weight', { type: 'boolean', default: false, describe: 'pair rule: paidIsWeight false' })
    .option('relays', numD('Relays modelled', 500))
    .option('scale-of', numD('The network size they stand for', 2000))
    .option('seeds', { type: 'string', requiresArg: true, default: '1,2,3', describe: 'Seeds, comma-separated' })
    .option('fractions', { type: 'string', requiresArg: true, default: '0.05,0.2', describe: 'Attacker fractions, comma-separated' })
    .option('min-epochs', numD('Epochs run at least', 48))
    .option('max-epochs', numD('Epochs run at most', 96))
    .option('workers', numD('Child processes, one seed each', 3))
    .option('sybil-size', numD('Bandwidth of the Sybil operator', 5e6))
    .option('on-epochs', numD('on/off strategy: epochs on', 12))
    .option('off-epochs', numD('on/off strategy: epochs off', 12))
    .option('rows', { type: 'string', requiresArg: true, default: ORDER.join(','), describe: `Strategies, comma-separated: ${ORDER.join(', ')}` })
    .option('worker-seed', { type: 'number', requiresArg: true, hidden: true })
    .check((x) => {
      for (const k of ['kappa', 'slack', 'owed-epochs', 'bank-epochs', 'relays', 'scale-of', 'min-epochs', 'max-epochs', 'workers', 'sybil-size', 'on-epochs', 'off-epochs', 'worker-seed'] as const) {
        const v = x[k];
        if (v !== undefined && !Number.isFinite(v)) throw new Error(`--${k} must be a number`);
      }
      numbers(x.seeds, 'seeds');
      numbers(x.fractions, 'fractions');
      const unknown = x.rows.split(',').filter((r) => !ORDER.includes(r));
      if (unknown.length) throw new Error(`no row named ${unknown.join(', ')}; the rows: ${ORDER.join(', ')}`);
      return true;
    })
    .strict()
    .help()
    .parseSync();
  return {
    json: a.json,
    relays: a.relays,
    scaleOf: a['scale-of'],
    seeds: numbers(a.seeds, 'seeds'),
    fractions: numbers(a.fractions, 'fractions'),
    minEpochs: a['min-epochs'],
    maxEpochs: a['max-epochs'],
    rows: new Set(a.rows.split(',')),
    sybilSize: a['sybil-size'],
    onEpochs: a['on-epochs'],
    offEpochs: a['off-epochs'],
    // One child per seed by default (three seeds on two cores finish together instead of one after two).
    workers: a.workers,
    rule: a.rule,
    dispersion: {
      ...(a.kappa !== undefined ? { peerCapFactor: a.kappa } : {}),
      ...(a.slack !== undefined ? { peerCapSlackCells: a.slack } : {}),
    },
    pair: {
      ...(a.kappa !== undefined ? { pairFactor: a.kappa } : {}),
      ...(a.slack !== undefined ? { pairSlackCells: a.slack } : {}),
      ...(a['owed-epochs'] !== undefined ? { owedEpochs: a['owed-epochs'] } : {}),
      ...(a['paid-not-weight'] ? { paidIsWeight: false } : {}),
      ...(a['bank-epochs'] !== undefined ? { bankEpochs: a['bank-epochs'] } : {}),
    },
    workerSeed: a['worker-seed'],
  };
}

// ---------------------------------------------------------------- randomness

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

function normal(r: () => number): number {
  const u = Math.max(r(), 1e-12), v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function poisson(r: () => number, lambda: number): number {
  if (lambda > 50) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(r)));
  // Inversion: one uniform, then walk the CDF (same law as counting products of uniforms, one draw).
  const u = r();
  let k = 0, pk = Math.exp(-lambda), cdf = pk;
  while (u > cdf && k < 1000) { k++; pk *= lambda / k; cdf += pk; }
  return k;
}

// ---------------------------------------------------------------- model

const EPOCH_SECONDS = 3600;
const UTILISATION = 0.5;
const WARMUP = 4;
/** Cells the coalition claims on every invented pair: far above any cap; sums stay exact. */
const INVENTED_CELLS = 1e11;
/** Absurd declared bandwidth of attacking relays (bound 6 never binds them). */
const ATTACKER_DECLARED = 1e12;
const CIRCUIT_MEDIAN = 200;
const CIRCUIT_MAX = 4e6;
/** Epochs over which a row's gain and honest loss are averaged, at the end of the run. */
const TAIL = 8;

interface Net {
  n: number;
  capacity: Float64Array;
  subnet: Int32Array;
  /** Pair k ↔ (a[k], b[k]), a < b, dense upper triangle. */
  a: Int32Array;
  b: Int32Array;
}

function densePairs(n: number): { a: Int32Array; b: Int32Array } {
  const m = (n * (n - 1)) / 2;
  const a = new Int32Array(m), b = new Int32Array(m);
  let k = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) { a[k] = i; b[k] = j; k++; }
  return { a, b };
}

function pairIndex(n: number, i: number, j: number): number {
  if (i > j) [i, j] = [j, i];
  return i * n - (i * (i + 1)) / 2 + (j - i - 1);
}

function randomSubnet(r: () => number): number {
  return (1 + Math.floor(r() * 223)) * 256 + Math.floor(r() * 256);
}

function makeNet(capacity: number[], subnet: number[]): Net {
  const n = capacity.length;
  return { n, capacity: Float64Array.from(capacity), subnet: Int32Array.from(subnet), ...densePairs(n) };
}

function baseNetwork(relays: number, scale: number, r: () => number): Net {
  const cap: number[] = [], sub: number[] = [];
  for (let i = 0; i < relays; i++) {
    cap.push(scale * Math.min(1e9, Math.max(5e4, 5e6 * Math.exp(1.3 * normal(r)))));
    sub.push(randomSubnet(r));
  }
  return makeNet(cap, sub);
}

/** Relays drawn at random until they hold the fraction f of all capacity. */
function pickCoalition(net: Net, f: number, r: () => number): Uint8Array {
  const total = net.capacity.reduce((x, y) => x + y, 0);
  const order = Array.from({ length: net.n }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
  const member = new Uint8Array(net.n);
  let held = 0;
  for (const i of order) {
    if (held >= f * total) break;
    member[i] = 1;
    held += net.capacity[i];
  }
  return member;
}

/**
 * One epoch of honest traffic into `out` (cells per pair) and `circ` (circuits per pair). Clients
 * pick the three hops of a circuit in proportion to capacity, so a circuit's links land on pair
 * {i, j} 4·p_i·p_j times on average; the number of circuits per pair is Poisson and each carries a
 * log-normal number of cells (median 200, σ_c). The circuit count is set so the network runs at
 * UTILISATION of its capacity. `absent[i]` = 1 drops relay i (its clients go elsewhere: its pairs
 * carry nothing). With `reuse`, pair k takes the counts of pair reuse.map[k] of another network
 * drawn this epoch whenever that is ≥ 0 (the same two relays with the same p_i, p_j: the same law).
 */
function honestTraffic(
  net: Net, sigma: number, r: () => number, out: Float64Array, circ: Float32Array, absent?: Uint8Array,
  reuse?: { map: Int32Array; cells: Float64Array; circ: Float32Array },
): void {
  const cp = circuitPool(sigma);
  const { mean, sd } = cp;
  let total = 0;
  for (let i = 0; i < net.n; i++) if (!absent?.[i]) total += net.capacity[i];
  const circuits = (UTILISATION * total * EPOCH_SECONDS) / CELL_LEN / (2 * mean);
  const p = new Float64Array(net.n);
  for (let i = 0; i < net.n; i++) p[i] = absent?.[i] ? 0 : net.capacity[i] / total;
  const m = net.a.length;
  const na = net.a, nb = net.b;
  for (let k = 0; k < m; k++) {
    if (reuse && reuse.map[k] >= 0) { out[k] = reuse.cells[reuse.map[k]]; circ[k] = reuse.circ[reuse.map[k]]; continue; }
    const lambda = 4 * circuits * p[na[k]] * p[nb[k]];
    const c = lambda > 0 ? poisson(r, lambda) : 0;
    circ[k] = c;
    if (c === 0) { out[k] = 0; continue; }
    const cells = c <= 4096 ? drawCircuits(cp, c, r) : Math.max(0, c * mean + Math.sqrt(c) * sd * normal(r));
    out[k] = Math.round(cells);
  }
}

/**
 * Draws of the circuit size (log-normal, median CIRCUIT_MEDIAN, σ_c, clipped at CIRCUIT_MAX), made
 * once per σ_c from a fixed seed: 2^18 single draws, and pools of sums of 4^j fresh draws
 * (j = 1 … 5); a pair's c circuits are then drawn as base-4 digits of c from the pools (at most
 * three draws per level): the same law up to the pools' finite size, a few draws per pair.
 */
const LEVELS = [{ group: 1024, size: 1 << 11 }, { group: 256, size: 1 << 12 }, { group: 64, size: 1 << 14 }, { group: 16, size: 1 << 16 }, { group: 4, size: 1 << 16 }, { group: 1, size: 1 << 18 }];
interface Pool { mean: number; sd: number; levels: Float64Array[] }
const pools = new Map<number, Pool>();
function circuitPool(sigma: number): Pool {
  let x = pools.get(sigma);
  if (!x) {
    const r = rng(0x5eed + Math.round(sigma * 1000));
    const one = () => Math.min(CIRCUIT_MAX, CIRCUIT_MEDIAN * Math.exp(sigma * normal(r)));
    const levels = LEVELS.map(({ group, size }) => {
      const out = new Float64Array(size);
      for (let i = 0; i < size; i++) { let t = 0; for (let g = 0; g < group; g++) t += one(); out[i] = t; }
      return out;
    });
    const single = levels[levels.length - 1];
    let s = 0, s2 = 0;
    for (let i = 0; i < single.length; i++) { s += single[i]; s2 += single[i] * single[i]; }
    const mean = s / single.length;
    x = { mean, sd: Math.sqrt(s2 / single.length - mean * mean), levels };
    pools.set(sigma, x);
  }
  return x;
}

/** The cells of c circuits (c ≤ 4096), from the pools. */
function drawCircuits(pool: Pool, c: number, r: () => number): number {
  let cells = 0, q = c;
  for (let l = 0; l < LEVELS.length; l++) {
    const g = LEVELS[l].group, arr = pool.levels[l], mask = arr.length - 1;
    for (; q >= g; q -= g) cells += arr[(r() * 4294967296) & mask];
  }
  return cells;
}

// ---------------------------------------------------------------- one strategy, epoch by epoch

/** Which rule, with which parameters: the dispersion rule of §8.5.1 or the pair rule of §8.5.2. */
type RuleChoice = { kind: 'dispersion'; params: BoundsParams } | { kind: 'pair'; params: PairRuleParams };

/** The state one authority keeps between epochs: last consensus weights, history, what pairs owe (§8.5). */
class Ledger {
  prev: Float64Array;
  history: Float64Array;
  declared: Float64Array;
  owed?: OwedTable;
  cells!: Float64Array;
  gross!: Float64Array;
  /** The last TAIL epochs' uncredited (gross − proven) and gross cells per relay. */
  ringCells: Float64Array[] = [];
  ringGross: Float64Array[] = [];
  constructor(readonly net: Net, readonly rule: RuleChoice, history: number[], declared: Float64Array) {
    // Before anything happens, weights reflect honest measurement: expected credit.
    this.prev = Float64Array.from(net.capacity, (c) => UTILISATION * 2 * c);
    this.history = Float64Array.from(history);
    this.declared = declared;
    if (rule.kind === 'pair') this.owed = { owedA: new Float64Array(net.a.length), owedB: new Float64Array(net.a.length) };
  }
  /** Measure one epoch's pair counts; returns coins per relay (as numbers) for the epoch. */
  epoch(cells: Float64Array, height: number): Float64Array {
    const net = this.net;
    const table = { n: net.n, previousWeights: this.prev, declaredBandwidth: this.declared, history: this.history, subnet: net.subnet };
    const res = this.rule.kind === 'pair'
      ? applyPairRule({ a: net.a, b: net.b, cells }, table, this.rule.params, this.owed)
      : applyRule({ a: net.a, b: net.b, cells }, table, this.rule.params);
    this.cells = res.cells;
    this.gross = res.grossCells;
    // Not credited this epoch = gross − proven (proven includes what earlier epochs owed and is paid now;
    // what is owed and not yet paid counts as removed until it is paid).
    const lost = new Float64Array(net.n);
    const pr = res as Partial<PairRuleResult>;
    for (let i = 0; i < net.n; i++) lost[i] = res.grossCells[i] - res.cells[i];
    this.ringCells.push(lost);
    this.ringGross.push(res.grossCells);
    if (this.ringCells.length > TAIL) { this.ringCells.shift(); this.ringGross.shift(); }
    const proven = new Map<string, number>();
    for (let i = 0; i < net.n; i++) {
      if (res.cells[i] > 0) { proven.set(String(i).padStart(6, '0'), res.cells[i]); this.history[i]++; }
      const w = pr.weightCells ? pr.weightCells[i] : res.cells[i];
      this.prev[i] = Math.floor((w * CELL_LEN) / this.rule.params.epochSeconds);
    }
    const alloc = allocate(scheduledMint(height), proven);
    const coins = new Float64Array(net.n);
    for (const [k, v] of alloc) coins[Number(k)] = Number(v);
    return coins;
  }
}

/** Median over honest relays of what is owed to them at the end, in epochs of their own mean gross. */
function medianHonestOwedEpochs(l: Ledger, member: Uint8Array): number {
  if (!l.owed) return 0;
  const owed = new Float64Array(l.net.n);
  for (let k = 0; k < l.net.a.length; k++) { owed[l.net.a[k]] += Math.max(0, l.owed.owedA[k]); owed[l.net.b[k]] += Math.max(0, l.owed.owedB[k]); }
  const xs: number[] = [];
  for (let i = 0; i < l.net.n; i++) {
    if (member[i]) continue;
    let g = 0;
    for (let e = 0; e < l.ringGross.length; e++) g += l.ringGross[e][i];
    if (g > 0) xs.push(Math.max(0, owed[i]) / (g / l.ringGross.length));
  }
  xs.sort((x, y) => x - y);
  return xs.length ? xs[Math.floor(xs.length / 2)] : 0;
}

function shareOf(v: Float64Array, member: Uint8Array): number {
  let s = 0, t = 0;
  for (let i = 0; i < v.length; i++) { t += v[i]; if (member[i]) s += v[i]; }
  return t > 0 ? s / t : 0;
}

/**
 * Median over honest relays with gross credit of 1 − proven / gross, both summed over the last TAIL
 * epochs (late payments count in the epoch they are paid, so a steady owed stock costs nothing and a
 * growing one counts as removed).
 */
function medianHonestRemoved(l: Ledger, member: Uint8Array): number {
  const xs: number[] = [];
  for (let i = 0; i < l.net.n; i++) {
    if (member[i]) continue;
    let c = 0, g = 0;
    for (let e = 0; e < l.ringCells.length; e++) { c += l.ringCells[e][i]; g += l.ringGross[e][i]; }
    if (g > 0) xs.push(c / g);
  }
  xs.sort((x, y) => x - y);
  return xs.length ? xs[Math.floor(xs.length / 2)] : 0;
}

/** Every pair of members in different /16s claims INVENTED_CELLS. */
function fabricate(net: Net, member: Uint8Array, cells: Float64Array, present?: Uint8Array): void {
  const ms: number[] = [];
  for (let i = 0; i < net.n; i++) if (member[i] && (!present || present[i])) ms.push(i);
  for (let x = 0; x < ms.length; x++) for (let y = x + 1; y < ms.length; y++) {
    if (net.subnet[ms[x]] === net.subnet[ms[y]]) continue; // bound 2: not worth inventing
    cells[pairIndex(net.n, ms[x], ms[y])] += INVENTED_CELLS;
  }
}

interface Track { share: number[]; weightShare: number[]; removed: number[] }

function converged(xs: number[], minEpochs: number): boolean {
  if (xs.length < minEpochs) return false;
  const mean = (s: number[]) => s.reduce((p, q) => p + q, 0) / s.length;
  const now = mean(xs.slice(-4)), before = mean(xs.slice(-8, -4));
  return Math.abs(now - before) / 4 < 0.001 * Math.max(now, 1e-12);
}

// ---------------------------------------------------------------- rows

interface Row {
  strategy: string; f: number; gain: number; gainWorst: number; medianHonestCreditRemoved: number;
  medianHonestCreditRemovedWorst: number; medianHonestOwedEpochs: number; epochs: number;
  identities?: number; identityCoreSecondsPerDay?: number;
  perSeed: { seed: number; gain: number; removed: number; epochs: number }[];
}

interface SeedResult {
  strategy: string; f: number; seed: number; gain: number; removed: number; owed: number; epochs: number;
  identities?: number;
}

function tailMean(xs: number[], len = xs.length): number {
  const t = xs.slice(Math.max(0, len - TAIL), len);
  return t.reduce((p, q) => p + q, 0) / t.length;
}

/**
 * A Sybil network: the honest relays of `base` (same order, same /16s) and the coalition's capacity
 * re-listed as `subnets.length` new identities of equal capacity, identity i in /16 subnets[i].
 * `reuse` maps each of its pairs between two honest relays to the same pair of `base`, so honest
 * traffic between honest relays is the base network's draw of the epoch (same law, drawn once).
 */
function sybilNet(base: Net, member: Uint8Array, subnets: number[]): { net: Net; ids: Uint8Array; hist: number[]; map: Int32Array } {
  const cap: number[] = [], sub: number[] = [], hist: number[] = [], baseIdx: number[] = [];
  let held = 0;
  for (let i = 0; i < base.n; i++) {
    if (member[i]) { held += base.capacity[i]; continue; }
    cap.push(base.capacity[i]); sub.push(base.subnet[i]); hist.push(100); baseIdx.push(i);
  }
  const k = subnets.length;
  for (let i = 0; i < k; i++) { cap.push(held / k); sub.push(subnets[i]); hist.push(0); }
  const net = makeNet(cap, sub);
  const ids = new Uint8Array(net.n);
  for (let i = net.n - k; i < net.n; i++) ids[i] = 1;
  const map = new Int32Array(net.a.length).fill(-1);
  for (let q = 0; q < net.a.length; q++) {
    const i = net.a[q], j = net.b[q];
    if (!ids[i] && !ids[j]) map[q] = pairIndex(base.n, baseIdx[i], baseIdx[j]);
  }
  return { net, ids, hist, map };
}

/**
 * Amplification under the link backlog bound (SPEC §8.3 check 5). On every link between a member
 * and an honest peer the member is the initiator (the worst case: only an initiator proposes
 * figures) and the honest peer countersigns within `r2iExcessAllowed` (src/bandwidth/receipt.ts,
 * the function the responder runs). Each link's cells go half each way. The member's best use of
 * the bound is to shift cells between epochs: in even epochs it under-claims the r→i direction by
 * the whole tolerance (allowed: it cheats only itself), leaving a backlog; in odd epochs it claims
 * its own count plus everything the responder will still sign. Any claim above what the responder
 * signs is rejected and the segment is unpaid, so it never claims more than that.
 */
class Amplifier {
  written: Float64Array; signed: Float64Array; prevSent: Float64Array;
  constructor(readonly net: Net, readonly member: Uint8Array) {
    const m = net.a.length;
    this.written = new Float64Array(m); this.signed = new Float64Array(m); this.prevSent = new Float64Array(m);
  }
  apply(cells: Float64Array, circ: Float32Array, epoch: number): void {
    const { a, b } = this.net, m = this.member;
    for (let k = 0; k < cells.length; k++) {
      if (m[a[k]] === m[b[k]]) continue;
      const c = cells[k];
      const ownR2I = Math.floor(c / 2), ownI2R = c - ownR2I;
      const writtenBefore = this.written[k];
      this.written[k] += ownR2I;
      const prev = this.prevSent[k];
      this.prevSent[k] = ownR2I;
      if (c === 0) continue; // no cell, no proposal (§8.3 step 1)
      const t = inFlightTolerance(Math.max(1, circ[k]));
      const claimR2I = epoch % 2 === 0
        ? ownR2I - Math.min(t, ownR2I)
        : ownR2I + r2iExcessAllowed(t, prev, writtenBefore, this.signed[k]);
      this.signed[k] += claimR2I;
      cells[k] = ownI2R + claimR2I;
    }
  }
}

/** Expected CPU seconds of one core to mine one identity at the default parameters (§6.4.1), measured once. */
let identityCost: number | undefined;
async function measureIdentityCost(): Promise<number> {
  if (identityCost !== undefined) return identityCost;
  const p = DEFAULT_POW_PARAMS;
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const c0 = process.cpuUsage();
    await argon2id(Buffer.from(`simulate ${i}`), powSalt(Buffer.alloc(32, 7)), p.memoryKib, p.ops);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1e6);
  }
  identityCost = best * 2 ** p.difficulty;
  return identityCost;
}

/**
 * One seed, all rows in one epoch loop. The base network carries moderate traffic (σ_c = 1.5); the
 * honest baseline and, for each f, the fabricating, amplifying and on/off coalitions see the same
 * traffic draws, so each gain is against the same coalition behaving honestly. The two Sybil
 * networks (free /16s, and costly: M_new identities on each /16 the coalition holds) reuse the base
 * network's draws for every pair of honest relays and draw only the identities' pairs. Heavy-tailed
 * honest traffic (σ_c = 2.5) runs on the base relays with its own draws.
 */
function runSeed(o: Opts, seed: number, rule: RuleChoice): SeedResult[] {
  const out: SeedResult[] = [];
  const net = baseNetwork(o.relays, o.relays / o.scaleOf, rng(seed));
  const honestDeclared = Float64Array.from(net.capacity);
  const hist = new Array<number>(net.n).fill(100);
  const fs = o.fractions;
  const coal = fs.map((f, i) => pickCoalition(net, f, rng(seed * 7919 + i + 1)));
  const capShare = coal.map((m) => shareOf(net.capacity, m));
  const attackerDeclared = coal.map((m) => Float64Array.from(net.capacity, (c, i) => (m[i] ? ATTACKER_DECLARED : c)));
  const want = (s: string) => o.rows.has(s);
  const newTrack = (): Track => ({ share: [], weightShare: [], removed: [] });

  const base = new Ledger(net, rule, hist, honestDeclared);
  const baseTrack = fs.map(newTrack);
  interface Strat { name: string; fi: number; l: Ledger; t: Track; on: boolean[]; amp?: Amplifier; done?: number }
  const strats: Strat[] = [];
  fs.forEach((_, fi) => {
    for (const name of ['fabricated', 'amplification', 'onoff']) {
      if (!(want(name) || (name === 'fabricated' && want('capture')))) continue;
      const l = new Ledger(net, rule, hist, name === 'amplification' ? honestDeclared : attackerDeclared[fi]);
      strats.push({ name, fi, l, t: newTrack(), on: [], amp: name === 'amplification' ? new Amplifier(net, coal[fi]) : undefined });
    }
  });

  // Sybil networks: built now, listed (identities with no history, no weight) when the attack starts.
  interface Syb { name: string; fi: number; net: Net; ids: Uint8Array; map: Int32Array; l: Ledger; t: Track; cells: Float64Array; circ: Float32Array; r: () => number; done?: number }
  const sybs: Syb[] = [];
  fs.forEach((_, fi) => {
    const m = coal[fi];
    let held = 0;
    const memberSubnets: number[] = [];
    for (let i = 0; i < net.n; i++) if (m[i]) { held += net.capacity[i]; if (!memberSubnets.includes(net.subnet[i])) memberSubnets.push(net.subnet[i]); }
    const variants: [string, number[]][] = [];
    if (want('sybil')) {
      // Free /16s: identities of --sybil-size each, each in a /16 no relay uses.
      const r = rng(seed * 131 + 17 + fi);
      const k = Math.max(2, Math.round(held / (o.sybilSize * (o.relays / o.scaleOf))));
      const used = new Set(net.subnet);
      const subs: number[] = [];
      for (let i = 0; i < k; i++) { let s = randomSubnet(r); while (used.has(s)) s = randomSubnet(r); used.add(s); subs.push(s); }
      variants.push(['sybil', subs]);
    }
    if (want('sybil-costly')) {
      // Costly identities: the operator keeps the /16s it has (one per relay it ran) and lists on
      // each the most identities that earn as new there (M_new, bound 5a); each identity is mined (§6.4.1).
      const per = Math.max(1, rule.kind === 'pair' ? rule.params.newRelaysPerGroup ?? 1 : rule.params.newRelaysPerGroup ?? 1);
      variants.push(['sybil-costly', memberSubnets.flatMap((s) => new Array<number>(per).fill(s))]);
    }
    for (const [name, subs] of variants) {
      const sn = sybilNet(net, m, subs);
      const declared = Float64Array.from(sn.net.capacity, (c, i) => (sn.ids[i] ? ATTACKER_DECLARED : c));
      const l = new Ledger(sn.net, rule, sn.hist, declared);
      sybs.push({ name, fi, net: sn.net, ids: sn.ids, map: sn.map, l, t: newTrack(), cells: new Float64Array(sn.net.a.length), circ: new Float32Array(sn.net.a.length), r: rng(seed * 977 + 3 + 10 * fi + (name === 'sybil' ? 0 : 5)) });
    }
  });

  const heavy = want('honest-heavy') ? new Ledger(net, rule, hist, honestDeclared) : undefined;
  const heavyShare = fs.map((): number[] => []);
  const heavyRemoved: number[] = [];
  const heavyCells = new Float64Array(net.a.length), heavyCirc = new Float32Array(net.a.length);
  const hr = rng(seed * 389 + 11);
  const noOne = new Uint8Array(net.n);
  let heavyDone = 0, baseDone = 0;

  const traffic = new Float64Array(net.a.length);
  const circ = new Float32Array(net.a.length);
  const work = new Float64Array(net.a.length);
  const tr = rng(seed * 31 + 5);
  const cycle = o.onEpochs + o.offEpochs;
  const sybilMin = Math.max(o.minEpochs, (rule.params.newRelayEpochs ?? 0) + 2 * TAIL);
  let epochs = 0;
  for (let e = 0; e < WARMUP + o.maxEpochs; e++) {
    const attack = e >= WARMUP;
    const ae = e - WARMUP;
    honestTraffic(net, 1.5, tr, traffic, circ);
    const bc = base.epoch(traffic, e);
    if (attack) fs.forEach((_, fi) => {
      baseTrack[fi].share.push(shareOf(bc, coal[fi]));
      baseTrack[fi].removed.push(medianHonestRemoved(base, coal[fi]));
    });
    for (const s of strats) {
      if (s.done) continue; // converged: its figures are taken at that epoch
      const m = coal[s.fi];
      work.set(traffic);
      let on = true;
      if (attack && s.name === 'fabricated') fabricate(net, m, work);
      if (attack && s.amp) s.amp.apply(work, circ, ae);
      if (attack && s.name === 'onoff') {
        on = ae % cycle < o.onEpochs;
        if (on) fabricate(net, m, work);
        else for (let k = 0; k < work.length; k++) if (m[net.a[k]] || m[net.b[k]]) work[k] = 0;
      }
      const c = s.l.epoch(work, e);
      if (!attack) continue;
      s.t.share.push(shareOf(c, m));
      s.t.weightShare.push(shareOf(s.l.prev, m));
      s.t.removed.push(medianHonestRemoved(s.l, m));
      s.on.push(on);
    }
    if (attack) for (const y of sybs) {
      if (y.done) continue;
      if (ae === 0) for (let i = 0; i < y.net.n; i++) if (y.ids[i]) y.l.prev[i] = 0; // new identities: no weight
      honestTraffic(y.net, 1.5, y.r, y.cells, y.circ, undefined, { map: y.map, cells: traffic, circ });
      fabricate(y.net, y.ids, y.cells);
      const c = y.l.epoch(y.cells, e);
      y.t.share.push(shareOf(c, y.ids));
      y.t.removed.push(medianHonestRemoved(y.l, y.ids));
    }
    if (heavy && !heavyDone) {
      honestTraffic(net, 2.5, hr, heavyCells, heavyCirc);
      const c = heavy.epoch(heavyCells, e);
      if (attack) {
        coal.forEach((m, i) => heavyShare[i].push(shareOf(c, m)));
        heavyRemoved.push(medianHonestRemoved(heavy, noOne));
      }
    }
    if (!attack) continue;
    epochs = ae + 1;
    // Each row stops at its own convergence (its figures are the last TAIL epochs before it).
    for (const s of strats) if (!s.done && (s.name === 'onoff' ? epochs >= o.minEpochs && epochs % cycle === 0 : converged(s.t.share, o.minEpochs))) s.done = epochs;
    for (const y of sybs) if (!y.done && converged(y.t.share, sybilMin)) y.done = epochs;
    if (heavy && !heavyDone && heavyShare.every((x) => converged(x, o.minEpochs))) heavyDone = epochs;
    if (!baseDone && baseTrack.every((t) => converged(t.share, o.minEpochs))) baseDone = epochs;
    if (baseDone && (!heavy || heavyDone) && strats.every((s) => s.done) && sybs.every((y) => y.done)) break;
  }

  for (const s of strats) {
    const b = baseTrack[s.fi];
    const f = fs[s.fi];
    const n = s.done ?? epochs;
    const owed = medianHonestOwedEpochs(s.l, coal[s.fi]);
    if (s.name === 'onoff') {
      // Coins per epoch while present, against the same relays' honest coins in those epochs.
      let got = 0, fair = 0;
      s.on.forEach((on, i) => { if (on) { got += s.t.share[i]; fair += b.share[i]; } });
      if (want('onoff')) out.push({ strategy: 'onoff', f, seed, gain: got / fair, removed: tailMean(s.t.removed), owed, epochs: n });
      continue;
    }
    if (want(s.name)) out.push({ strategy: s.name, f, seed, gain: tailMean(s.t.share) / tailMean(b.share, n), removed: tailMean(s.t.removed), owed, epochs: n });
    if (s.name === 'fabricated' && want('capture')) {
      // Circuits whose guard and exit are both coalition relays, when both are chosen by weight: w_C².
      const w = tailMean(s.t.weightShare);
      out.push({ strategy: 'capture', f, seed, gain: (w * w) / (capShare[s.fi] ** 2), removed: tailMean(s.t.removed), owed, epochs: n });
    }
  }
  if (process.env.SIMULATE_TRACE) for (const y of sybs) process.stderr.write(`${y.name} f=${fs[y.fi]} share ${y.t.share.map((x) => x.toFixed(3)).join(' ')}\n  base ${baseTrack[y.fi].share.map((x) => x.toFixed(3)).join(' ')}\n`);
  for (const y of sybs) {
    let k = 0;
    for (let i = 0; i < y.net.n; i++) k += y.ids[i];
    const n = y.done ?? epochs;
    out.push({
      strategy: y.name, f: fs[y.fi], seed, gain: tailMean(y.t.share) / tailMean(baseTrack[y.fi].share, n), removed: tailMean(y.t.removed),
      owed: medianHonestOwedEpochs(y.l, y.ids), epochs: n, identities: k,
    });
  }
  const bn = baseDone || epochs;
  if (want('honest')) fs.forEach((f, fi) => out.push({
    strategy: 'honest', f, seed, gain: tailMean(baseTrack[fi].share, bn) / capShare[fi], removed: tailMean(baseTrack[fi].removed, bn), owed: medianHonestOwedEpochs(base, coal[fi]), epochs: bn,
  }));
  if (heavy) fs.forEach((f, i) => out.push({
    strategy: 'honest-heavy', f, seed, gain: tailMean(heavyShare[i]) / capShare[i], removed: tailMean(heavyRemoved), owed: medianHonestOwedEpochs(heavy, noOne), epochs: heavyDone || epochs,
  }));
  return out;
}

// ---------------------------------------------------------------- main

const LABEL: Record<string, string> = {
  fabricated: 'fabricated receipts among the coalition',
  amplification: 'amplification (link backlog bound, §8.3)',
  sybil: 'Sybil split (one operator, many new identities, free /16s)',
  'sybil-costly': 'Sybil-costly identities (mined, M_new per own /16)',
  onoff: 'on/off (earn, vanish, return)',
  capture: 'weight capture: coalition guard+exit circuits ÷ f²',
  'honest-heavy': 'honest, heavy-tailed (σ_c = 2.5), no attack',
  honest: 'honest, moderate (σ_c = 1.5), no attack',
};
const ORDER = ['fabricated', 'amplification', 'sybil', 'sybil-costly', 'onoff', 'capture', 'honest-heavy', 'honest'];

/** Run one seed in a child process (the seeds are independent; two cores run two at once). */
function runChild(seed: number, argv: string[]): Promise<SeedResult[]> {
  const runTs = fileURLToPath(new URL('../bin/run-ts.js', import.meta.url));
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runTs, self, ...argv, '--worker-seed', String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => code === 0 ? resolve(JSON.parse(out) as SeedResult[]) : reject(new Error(`seed ${seed}: exit ${code}`)));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  // The scale model (SPEC §8.8): n relays standing for scaleOf; bandwidths (capacities, B_new, Sybil
  // size) × n / scaleOf, so that pair counts, and so every per-pair quantity of the rule, are those of
  // the full network.
  const scale = o.relays / o.scaleOf;
  const rule: RuleChoice = o.rule === 'dispersion'
    ? { kind: 'dispersion', params: { ...DEFAULT_BOUNDS, epochSeconds: EPOCH_SECONDS, newRelayBandwidth: DEFAULT_BOUNDS.newRelayBandwidth * scale, ...o.dispersion } }
    : { kind: 'pair', params: { ...DEFAULT_PAIR_RULE, epochSeconds: EPOCH_SECONDS, newRelayBandwidth: DEFAULT_PAIR_RULE.newRelayBandwidth * scale, ...o.pair } };
  if (o.workerSeed !== undefined) {
    process.stdout.write(JSON.stringify(runSeed(o, o.workerSeed, rule)));
    return;
  }
  const all: SeedResult[] = [];
  if (o.workers > 1 && o.seeds.length > 1) {
    const queue = [...o.seeds];
    const results = new Map<number, SeedResult[]>();
    await Promise.all(Array.from({ length: Math.min(o.workers, queue.length) }, async () => {
      for (let seed = queue.shift(); seed !== undefined; seed = queue.shift()) {
        results.set(seed, await runChild(seed, argv));
        process.stderr.write(`seed ${seed} done\n`);
      }
    }));
    for (const seed of o.seeds) all.push(...results.get(seed)!);
  } else {
    for (const seed of o.seeds) {
      all.push(...runSeed(o, seed, rule));
      process.stderr.write(`seed ${seed} done\n`);
    }
  }
  const idCost = o.rows.has('sybil-costly') ? await measureIdentityCost() : 0;
  const rows: Row[] = [];
  for (const s of ORDER) for (const f of o.fractions) {
    const xs = all.filter((r) => r.strategy === s && r.f === f);
    if (!xs.length) continue;
    const mean = (g: (r: SeedResult) => number) => xs.reduce((p, r) => p + g(r), 0) / xs.length;
    rows.push({
      strategy: s, f,
      gain: mean((r) => r.gain), gainWorst: Math.max(...xs.map((r) => r.gain)),
      medianHonestCreditRemoved: mean((r) => r.removed), medianHonestCreditRemovedWorst: Math.max(...xs.map((r) => r.removed)),
      medianHonestOwedEpochs: Math.max(...xs.map((r) => r.owed)),
      epochs: Math.max(...xs.map((r) => r.epochs)),
      ...(s === 'sybil-costly' ? {
        identities: Math.max(...xs.map((r) => r.identities ?? 0)),
        // Each identity's proof is re-mined once per anchor age limit (A periods of P = 1 h, §6.4.1).
        identityCoreSecondsPerDay: Math.max(...xs.map((r) => r.identities ?? 0)) * idCost * (86400 / (DEFAULT_POW_PARAMS.anchorPeriods * EPOCH_SECONDS)),
      } : {}),
      perSeed: xs.map((r) => ({ seed: r.seed, gain: r.gain, removed: r.removed, epochs: r.epochs })),
    });
  }
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const table = [
    `relays ${o.relays} (scale model of ${o.scaleOf}), seeds ${o.seeds.join(',')}, rule ${rule.kind} ${JSON.stringify(rule.params)}`,
    '| strategy | f | gain (mean) | gain (worst seed) | median honest relay: credit removed (mean) | (worst seed) | median honest relay: owed, epochs of its traffic (worst seed) | epochs |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${LABEL[r.strategy]} | ${pct(r.f)} | ${r.gain.toFixed(3)} | ${r.gainWorst.toFixed(3)} | ${pct(r.medianHonestCreditRemoved)} | ${pct(r.medianHonestCreditRemovedWorst)} | ${r.medianHonestOwedEpochs.toFixed(2)} | ${r.epochs} |`),
    ...(idCost > 0 ? [`identity cost (§6.4.1, default parameters, measured here): ${idCost.toFixed(0)} s of one core per identity (2^${DEFAULT_POW_PARAMS.difficulty} argon2id evaluations of ${DEFAULT_POW_PARAMS.memoryKib / 1024} MiB); `
      + rows.filter((r) => r.strategy === 'sybil-costly').map((r) => `f = ${pct(r.f)}: ${r.identities} identities, ${((r.identityCoreSecondsPerDay ?? 0) / 3600).toFixed(1)} core-hours a day`).join('; ')] : []),
  ].join('\n') + '\n';
  if (o.json) {
    process.stdout.write(JSON.stringify({ model: { relays: o.relays, scaleOf: o.scaleOf, seeds: o.seeds, epochSeconds: EPOCH_SECONDS, utilisation: UTILISATION, rule: rule.kind, params: rule.params, identityCoreSeconds: idCost || undefined }, rows }) + '\n');
    process.stderr.write(table);
  } else process.stdout.write(table);
}

main().catch((e: unknown) => { process.stderr.write(`${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
