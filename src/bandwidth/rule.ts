// SPEC.md §8.5: the measurement rule itself, on plain per-pair counts. Authorities call it through
// `measure` (src/bandwidth/measure.ts) after verifying receipts; the simulator of §8.8
// (scripts/simulate.ts) calls it directly on counts it draws. One function, so the simulated rule is
// the running rule. Pure and deterministic; typed arrays so that a thousand relays and a million
// pairs measure in milliseconds.
import { err } from '../errors';
import { CELL_LEN } from '../wire/cell';

export interface BoundsParams {
  /** Length of the epoch (the consensus period), seconds. */
  epochSeconds: number;
  /** κ of bound 3: a peer vouches for at most κ × its weight share × the receiver's credit (+ slack). Infinity disables. */
  peerCapFactor: number;
  /** σ of bound 3: cells every pair may exchange above the proportional cap (absorbs chance on small pairs). */
  peerCapSlackCells: number;
  /** γ of bound 4: credit at most γ × max(previous weight, newRelayBandwidth) over the epoch. Infinity disables. */
  growthFactor: number;
  /** Bound 5: epochs of history before a relay leaves the new-relay cap. 0 disables. */
  newRelayEpochs: number;
  /** Bound 5: bandwidth (bytes/s) a new relay may be credited with; also the least base of bound 4. */
  newRelayBandwidth: number;
  /** Bound 2: receipts between relays in one IPv4 /16 earn nothing. Off only on a loopback network. */
  sameSubnetRule: boolean;
}

/** SPEC §8.5 defaults for the public network (scripts/simulate.ts measures them). */
export const DEFAULT_BOUNDS: Omit<BoundsParams, 'epochSeconds'> = {
  peerCapFactor: 1.5,
  peerCapSlackCells: 1000,
  growthFactor: 2,
  newRelayEpochs: 24,
  newRelayBandwidth: 250_000,
  sameSubnetRule: true,
};

/**
 * The local network runs every relay on 127.0.0.1, all new, a handful of relays whose pair traffic
 * looks nothing like the weight shares: only the family and declared-bandwidth bounds apply.
 */
export const LOCAL_NETWORK_BOUNDS: Omit<BoundsParams, 'epochSeconds'> = {
  peerCapFactor: Infinity,
  peerCapSlackCells: 0,
  growthFactor: Infinity,
  newRelayEpochs: 0,
  newRelayBandwidth: 0,
  sameSubnetRule: false,
};

export function checkParams(p: BoundsParams): void {
  const bad = (k: string) => { throw err('RECEIPT_BAD_PARAMS', `bounds parameter ${k} is invalid`); };
  if (!(p.epochSeconds > 0) || !Number.isFinite(p.epochSeconds)) bad('epochSeconds');
  if (!(p.peerCapFactor > 0)) bad('peerCapFactor');
  if (!(p.peerCapSlackCells >= 0) || !Number.isFinite(p.peerCapSlackCells)) bad('peerCapSlackCells');
  if (!(p.growthFactor > 0)) bad('growthFactor');
  if (!Number.isInteger(p.newRelayEpochs) || p.newRelayEpochs < 0) bad('newRelayEpochs');
  if (!(p.newRelayBandwidth >= 0) || !Number.isFinite(p.newRelayBandwidth)) bad('newRelayBandwidth');
}

/** Cells a relay moving `bytesPerSecond` moves in one epoch. */
export function cellsForBandwidth(bytesPerSecond: number, epochSeconds: number): number {
  return Math.floor((bytesPerSecond * epochSeconds) / CELL_LEN);
}

/**
 * The pairs of an epoch: pair k is the unordered pair {a[k], b[k]} of relay indices (a ≠ b, both
 * < n) with `cells[k]` = cells_i2r + cells_r2i summed over all its receipts. Each unordered pair
 * appears at most once (`measure` sums receipts before calling the rule).
 */
export interface PairTable {
  a: Int32Array;
  b: Int32Array;
  cells: Float64Array;
  /** Pairs in use (the arrays may be longer); default a.length. */
  length?: number;
}

/** What the epoch's consensus and descriptors say about relays 0 … n−1. */
export interface RelayTable {
  n: number;
  /** Bytes/s each relay had in the previous consensus (0 = absent). */
  previousWeights: Float64Array;
  /** Σ of previous weights over the whole previous consensus (default: Σ previousWeights). */
  totalPreviousWeight?: number;
  /** Declared bandwidth, bytes/s, one direction (bound 6). */
  declaredBandwidth: Float64Array;
  /** Earlier epochs with a measured weight (bound 5). */
  history: Float64Array;
  /** IPv4 /16 as an integer a·256+b, −1 when unknown (bound 2, when the /16 rule is on). */
  subnet: Int32Array;
  /** Declared families as sets of relay indices (bound 2); undefined entries = no family. */
  family?: ReadonlyArray<ReadonlySet<number> | undefined>;
}

/** Which of bounds 4–6 limited the total last: 0 none, 1 growth, 2 new-relay, 3 declared. */
export const LIMITED_BY = ['none', 'growth', 'new-relay', 'declared'] as const;
export type LimitedBy = (typeof LIMITED_BY)[number];

export interface RuleResult {
  /** Bound 1: cells over all pairs. */
  grossCells: Float64Array;
  /** Removed by bound 2. */
  excludedCells: Float64Array;
  /** Removed by bound 3. */
  peerCappedCells: Float64Array;
  /** Index into LIMITED_BY. */
  limitedBy: Uint8Array;
  /** Proven cells (integers). */
  cells: Float64Array;
}

/**
 * Bound 3, solved exactly on typed arrays: X = Σ_k min(cells[k], coef[k]·X + slack), for claims
 * [from, to). Returns X (not floored), 0 ≤ X ≤ Σ cells. `at` and `order` are scratch arrays.
 */
function dispersionTyped(
  cells: Float64Array, coef: Float64Array, from: number, to: number, slack: number,
  at: Float64Array, order: number[],
): number {
  let a = 0, b = 0, gross = 0;
  order.length = 0;
  for (let k = from; k < to; k++) {
    const c = cells[k], q = coef[k];
    gross += c;
    if (c <= slack || q === Infinity) { a += c; continue; }
    if (!(q > 0)) { a += slack; continue; }
    a += slack;
    b += q;
    at[k] = (c - slack) / q;
    order.push(k);
  }
  if (order.length > 1) order.sort((x, y) => at[x] - at[y]);
  let lo = 0;
  for (const k of order) {
    if (b < 1) {
      const x = a / (1 - b);
      if (x <= at[k]) return Math.max(lo, Math.min(x, gross));
    }
    lo = at[k];
    a += cells[k] - slack;
    b -= coef[k];
  }
  return Math.min(Math.max(lo, a), gross);
}

/** One peer's claim in bound 3: `cells` exchanged with it, `coefficient` = κ × its weight share. */
export interface PeerClaim { cells: number; coefficient: number }

/**
 * Bound 3, solved exactly: the credit X a relay keeps is the fixed point
 *     X = Σ_P min(cells_P, coefficient_P · X + slack)
 * i.e. no peer P vouches for more than κ·share(P) of the relay's own credit, plus slack. The right side
 * is concave and non-decreasing in X and at least 0 at X = 0, so the fixed point is unique; it is
 * found by walking the breakpoints in order (O(k log k)). Returns X (not floored), 0 ≤ X ≤ Σ cells.
 */
export function dispersionCredit(claims: readonly PeerClaim[], slack: number): number {
  const cells = Float64Array.from(claims, (c) => c.cells);
  const coef = Float64Array.from(claims, (c) => c.coefficient);
  return dispersionTyped(cells, coef, 0, claims.length, slack, new Float64Array(claims.length), []);
}

/**
 * SPEC §8.5, steps 1–6, on per-pair counts. Every relay index gets a result (0 where it has no
 * pair). See `measure` for the steps; this is the function both the authorities and the simulator run.
 */
export function applyRule(pairs: PairTable, relays: RelayTable, p: BoundsParams): RuleResult {
  checkParams(p);
  const n = relays.n;
  const len = pairs.length ?? pairs.a.length;
  const grossCells = new Float64Array(n), excludedCells = new Float64Array(n), peerCappedCells = new Float64Array(n);
  const limitedBy = new Uint8Array(n), out = new Float64Array(n);

  let totalPrev = relays.totalPreviousWeight ?? 0;
  if (relays.totalPreviousWeight === undefined) {
    for (let i = 0; i < n; i++) { const w = relays.previousWeights[i]; if (w > 0 && Number.isFinite(w)) totalPrev += w; }
  }
  const coef = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const w = relays.previousWeights[i];
    coef[i] = p.peerCapFactor === Infinity ? Infinity : totalPrev > 0 && w > 0 && Number.isFinite(w) ? (p.peerCapFactor * w) / totalPrev : 0;
  }

  // Claims per relay in CSR form: the kept (not excluded) cells of each peer and that peer's coefficient.
  const deg = new Int32Array(n + 1);
  const kept = new Uint8Array(len);
  for (let k = 0; k < len; k++) {
    const i = pairs.a[k], j = pairs.b[k], c = pairs.cells[k];
    if (!(c > 0)) continue;
    grossCells[i] += c;
    grossCells[j] += c;
    const fi = relays.family?.[i], fj = relays.family?.[j];
    const sameNet = p.sameSubnetRule && relays.subnet[i] >= 0 && relays.subnet[i] === relays.subnet[j];
    if (sameNet || fi?.has(j) || fj?.has(i)) {
      excludedCells[i] += c;
      excludedCells[j] += c;
      continue;
    }
    kept[k] = 1;
    deg[i + 1]++;
    deg[j + 1]++;
  }
  for (let i = 0; i < n; i++) deg[i + 1] += deg[i];
  const fill = deg.slice(0, n);
  const cc = new Float64Array(deg[n]), cq = new Float64Array(deg[n]);
  for (let k = 0; k < len; k++) {
    if (!kept[k]) continue;
    const i = pairs.a[k], j = pairs.b[k], c = pairs.cells[k];
    cc[fill[i]] = c; cq[fill[i]++] = coef[j];
    cc[fill[j]] = c; cq[fill[j]++] = coef[i];
  }

  const at = new Float64Array(deg[n]);
  const order: number[] = [];
  const newRelayCap = cellsForBandwidth(p.newRelayBandwidth, p.epochSeconds);
  for (let r = 0; r < n; r++) {
    if (grossCells[r] === 0) continue;
    const keptCells = grossCells[r] - excludedCells[r];
    let credit = Math.min(keptCells, Math.floor(dispersionTyped(cc, cq, deg[r], deg[r + 1], p.peerCapSlackCells, at, order)));
    peerCappedCells[r] = keptCells - credit;
    let lim = 0;
    if (p.growthFactor !== Infinity) {
      const cap = cellsForBandwidth(p.growthFactor * Math.max(relays.previousWeights[r] || 0, p.newRelayBandwidth), p.epochSeconds);
      if (credit > cap) { credit = cap; lim = 1; }
    }
    if (p.newRelayEpochs > 0 && relays.history[r] < p.newRelayEpochs && credit > newRelayCap) { credit = newRelayCap; lim = 2; }
    const declaredCap = cellsForBandwidth(2 * Math.max(0, relays.declaredBandwidth[r]), p.epochSeconds);
    if (credit > declaredCap) { credit = declaredCap; lim = 3; }
    out[r] = credit;
    limitedBy[r] = lim;
  }
  return { grossCells, excludedCells, peerCappedCells, limitedBy, cells: out };
}
