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
  /**
   * Bound 5a (SPEC §8.5): at most this many new relays per IPv4 /16 and per declared family earn in an
   * epoch (longest history first, then lowest index = lowest fingerprint); the others earn nothing
   * until they leave the new-relay cap. 0 or absent = no such cap.
   */
  newRelaysPerGroup?: number;
}

/** SPEC §8.5 defaults for the public network (scripts/simulate.ts measures them). */
export const DEFAULT_BOUNDS: Omit<BoundsParams, 'epochSeconds'> = {
  peerCapFactor: 1.5,
  peerCapSlackCells: 1000,
  growthFactor: 2,
  newRelayEpochs: 24,
  newRelayBandwidth: 250_000,
  sameSubnetRule: true,
  newRelaysPerGroup: 4,
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
  if (p.newRelaysPerGroup !== undefined && (!Number.isInteger(p.newRelaysPerGroup) || p.newRelaysPerGroup < 0)) bad('newRelaysPerGroup');
}

/**
 * SPEC §8.5 bound 5a: which relays may earn this epoch under the per-/16 and per-family cap on new
 * relays. 1 = may earn (an established relay, or one of the first `perGroup` new relays of its /16
 * and of its declared family), 0 = a new relay beyond the cap. Order: longest history first, then
 * lowest index (relays are indexed in fingerprint order). A relay's family group is itself and the
 * relays it declares (not those that declare it: a declaration is one relay's word, and naming
 * another relay must not cost that relay anything); it is refused when `perGroup` relays of that
 * group already earn as new.
 * perGroup 0 or newRelayEpochs 0 = everyone may earn.
 * `credited` (per relay, what bounds 1–5 credit it this epoch): only a new relay credited more than 0
 * takes a place, so listed new relays that earn nothing (idle, or identities kept only to fill the
 * places) never keep one that earns out. Absent: every new relay competes.
 */
export function newRelayEarners(
  relays: Pick<RelayTable, 'n' | 'history' | 'subnet' | 'family'>, newRelayEpochs: number, perGroup: number, credited?: ArrayLike<number>,
): Uint8Array {
  const n = relays.n;
  const ok = new Uint8Array(n).fill(1);
  if (!(perGroup > 0) || !(newRelayEpochs > 0)) return ok;
  const fresh: number[] = [];
  for (let r = 0; r < n; r++) if (relays.history[r] < newRelayEpochs && (!credited || credited[r] > 0)) fresh.push(r);
  fresh.sort((a, b) => relays.history[b] - relays.history[a] || a - b);
  const perSubnet = new Map<number, number>();
  const earning = new Uint8Array(n);
  for (const r of fresh) {
    const s = relays.subnet[r];
    const inSubnet = s >= 0 ? perSubnet.get(s) ?? 0 : 0;
    // Only the relays r itself declares: a relay that names r in its own family, which anyone may
    // do, must not be able to take r's place (SPEC §8.5 5a).
    let inFamily = 0;
    for (const q of relays.family?.[r] ?? []) if (earning[q]) inFamily++;
    if (inSubnet >= perGroup || inFamily >= perGroup) { ok[r] = 0; continue; }
    earning[r] = 1;
    if (s >= 0) perSubnet.set(s, inSubnet + 1);
  }
  return ok;
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
/** Bound 2 (SPEC.md §8.5): relays `i` and `j` share a /16 (when the rule is on) or a declared family. */
function sameOwner(relays: RelayTable, p: { sameSubnetRule: boolean }, i: number, j: number): boolean {
  const fi = relays.family?.[i], fj = relays.family?.[j];
  const sameNet = p.sameSubnetRule && relays.subnet[i] >= 0 && relays.subnet[i] === relays.subnet[j];
  return sameNet || !!fi?.has(j) || !!fj?.has(i);
}

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
    if (sameOwner(relays, p, i, j)) {
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
  // Bound 5a last: its places go only to new relays the other bounds credit (SPEC §8.5 5a).
  const mayEarn = newRelayEarners(relays, p.newRelayEpochs, p.newRelaysPerGroup ?? 0, out);
  for (let r = 0; r < n; r++) if (!mayEarn[r] && out[r] > 0) { out[r] = 0; limitedBy[r] = 2; }
  return { grossCells, excludedCells, peerCappedCells, limitedBy, cells: out };
}

// ---------------------------------------------------------------------------------------------
// SPEC §8.5.2: the pair rule. Each ordered pair (R, P) may credit R with at most the traffic that
// weighted path selection predicts between them, times κ, plus σ; what an honest burst brings above
// that is owed (per pair, at most H allowances) and paid in later epochs out of the same pair's unused
// allowance. So over any run of epochs the credit a pair gives R is at most Σ (κ·E + σ), however much
// its two ends claim, and honest traffic that averages below κ·E is paid in full, late.

export interface PairRuleParams {
  epochSeconds: number;
  /** κ: allowance = κ × predicted cells + σ. */
  pairFactor: number;
  /** σ: cells per ordered pair and epoch above the prediction. */
  pairSlackCells: number;
  /**
   * H: a pair may owe R at most H × max(allowance, one epoch of R's declared bandwidth); excess beyond is
   * removed. 0 = nothing is owed. (Only a state bound: what is owed never lifts a pair above its allowance.)
   */
  owedEpochs: number;
  /**
   * true (default): late payment counts as weight too (bound 4 then caps the whole total), and a pair
   * owes only when both ends have a previous weight and R has left the new-relay cap (so a new
   * identity cannot bank its start-up traffic and pump its weight with it later). false: late payment
   * earns coins but never weight, and every pair may owe (simulated for comparison, SPEC §8.8).
   */
  paidIsWeight?: boolean;
  /** B: allowance a pair leaves unused is banked, up to B allowances, and spent on later bursts. 0 = off. */
  bankEpochs?: number;
  /** Bounds 4–6 and bound 2's /16 rule, as in BoundsParams. */
  growthFactor: number;
  newRelayEpochs: number;
  newRelayBandwidth: number;
  sameSubnetRule: boolean;
  /** Bound 5a, as in BoundsParams. */
  newRelaysPerGroup?: number;
}

export const DEFAULT_PAIR_RULE: Omit<PairRuleParams, 'epochSeconds'> = {
  pairFactor: 1.1,
  pairSlackCells: 100,
  owedEpochs: 720,
  paidIsWeight: true,
  bankEpochs: 24,
  growthFactor: 2,
  newRelayEpochs: 24,
  newRelayBandwidth: 250_000,
  sameSubnetRule: true,
  newRelaysPerGroup: 4,
};

/**
 * The local network (SPEC.md §8.5.2): every relay on 127.0.0.1 (no /16 rule), all new (no growth or
 * new-relay bounds), a handful of relays whose traffic follows a few test circuits rather than the
 * weight shares: a generous allowance (κ = 2, σ = 20 000 cells per ordered pair and epoch, far above
 * what a test download moves through one pair in one epoch) that still caps what two colluding relays
 * can claim between themselves well below their declared bandwidth.
 */
export const LOCAL_PAIR_RULE: Omit<PairRuleParams, 'epochSeconds'> = {
  pairFactor: 2,
  pairSlackCells: 20_000,
  owedEpochs: 720,
  paidIsWeight: true,
  bankEpochs: 0,
  growthFactor: Infinity,
  newRelayEpochs: 0,
  newRelayBandwidth: 0,
  sameSubnetRule: false,
};

/**
 * What each pair is owed, per direction: owedA[k] is owed to pairs.a[k] by its pair with pairs.b[k],
 * owedB[k] to pairs.b[k]. Aligned with the pair table; updated in place by `applyPairRule`. A pair with
 * something owed must stay in the table (with 0 cells) until it is paid or dropped.
 */
export interface OwedTable { owedA: Float64Array; owedB: Float64Array }

export interface PairRuleResult extends RuleResult {
  /** Cells paid this epoch out of what earlier epochs owed (included in `cells`). */
  paidCells: Float64Array;
  /** Cells newly owed this epoch (not in `cells`). */
  owedCells: Float64Array;
  /**
   * The relay's weight for the next consensus, in cells: `cells` (with paidIsWeight false: `cells`
   * without what was paid from earlier epochs).
   */
  weightCells: Float64Array;
}

/**
 * The pair allowance of R from P, cells: κ × cells(W_R) × W_P / (ΣW − W_R) + σ. Under path selection
 * in proportion to weight, R's traffic is spread over the other relays in proportion to their weights,
 * so cells(W_R) × W_P / (ΣW − W_R) is what R and P should exchange in an epoch.
 */
export function pairAllowance(wR: number, wP: number, totalW: number, p: Pick<PairRuleParams, 'pairFactor' | 'pairSlackCells' | 'epochSeconds'>): number {
  if (p.pairFactor === Infinity) return Infinity;
  const rest = totalW - wR;
  const predicted = wR > 0 && wP > 0 && rest > 0 ? ((wR * p.epochSeconds) / CELL_LEN) * (wP / rest) : 0;
  return p.pairFactor * predicted + p.pairSlackCells;
}

export function applyPairRule(pairs: PairTable, relays: RelayTable, p: PairRuleParams, owed?: OwedTable): PairRuleResult {
  checkParams({ ...p, peerCapFactor: 1, peerCapSlackCells: 0 });
  if (!(p.pairFactor > 0) || !(p.pairSlackCells >= 0) || !Number.isFinite(p.pairSlackCells) || !(p.owedEpochs >= 0)) {
    throw err('RECEIPT_BAD_PARAMS', 'pair rule parameters are invalid');
  }
  const n = relays.n;
  const len = pairs.length ?? pairs.a.length;
  const grossCells = new Float64Array(n), excludedCells = new Float64Array(n), peerCappedCells = new Float64Array(n);
  const paidCells = new Float64Array(n), owedCells = new Float64Array(n), credit = new Float64Array(n);
  const limitedBy = new Uint8Array(n), out = new Float64Array(n);
  let totalW = relays.totalPreviousWeight ?? 0;
  if (relays.totalPreviousWeight === undefined) {
    for (let i = 0; i < n; i++) { const w = relays.previousWeights[i]; if (w > 0 && Number.isFinite(w)) totalW += w; }
  }
  const W = relays.previousWeights;
  // One epoch of R's declared bandwidth, cells: the most an honest link of R can carry in an epoch.
  const ownEpoch = (r: number) => cellsForBandwidth(Math.max(0, relays.declaredBandwidth[r]), p.epochSeconds);
  const B = p.bankEpochs ?? 0;
  const piw = p.paidIsWeight !== false;
  const kappa = p.pairFactor, sigma = p.pairSlackCells, H = p.owedEpochs;
  // Per relay, hoisted out of the pair loop (the same operations, in the same order, as
  // pairAllowance): cells(W_R) unfloored, ΣW − W_R, one epoch of declared bandwidth, and whether R
  // has left the new-relay cap and has a weight.
  const xR = new Float64Array(n), restR = new Float64Array(n), own = new Float64Array(n);
  const settled = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const w = W[r] || 0;
    xR[r] = w > 0 ? (w * p.epochSeconds) / CELL_LEN : 0;
    restR[r] = totalW - w;
    own[r] = ownEpoch(r);
    settled[r] = w > 0 && !(p.newRelayEpochs > 0 && relays.history[r] < p.newRelayEpochs) ? 1 : 0;
  }
  const allowance = (r: number, q: number): number => {
    if (kappa === Infinity) return Infinity;
    const wP = W[q] || 0;
    const predicted = xR[r] > 0 && wP > 0 && restR[r] > 0 ? xR[r] * (wP / restR[r]) : 0;
    return kappa * predicted + sigma;
  };
  const side = (r: number, q: number, c: number, owedArr: Float64Array | undefined, k: number) => {
    const a0 = allowance(r, q);
    const s = owedArr ? owedArr[k] : 0;
    // s > 0: owed to R; s < 0: allowance R's pair left unused in earlier epochs (banked), spendable now.
    let o = s > 0 ? s : 0;
    const a = s < 0 ? a0 - s : a0;
    // Both ends weighted and R out of the new-relay cap (SPEC §8.5.2 bound 3).
    const established = settled[r] === 1 && (W[q] || 0) > 0;
    let got: number;
    let next: number;
    if (c >= a) {
      got = a;
      const add = !piw || established ? Math.min(c - a, Math.max(0, H * Math.max(a0, own[r]) - o)) : 0;
      o += add;
      owedCells[r] += add;
      peerCappedCells[r] += c - a;
      next = o;
    } else {
      const pay = Math.min(o, a - c);
      got = c + pay;
      o -= pay;
      paidCells[r] += pay;
      next = o > 0 ? o : B > 0 && established ? -Math.min(a - got, B * a0) : 0;
    }
    if (owedArr) owedArr[k] = next;
    credit[r] += got;
  };
  const fam = relays.family, sub = relays.subnet, subnetRule = p.sameSubnetRule;
  const pa = pairs.a, pb = pairs.b, pc = pairs.cells;
  for (let k = 0; k < len; k++) {
    const i = pa[k], j = pb[k], c = pc[k] > 0 ? pc[k] : 0;
    grossCells[i] += c;
    grossCells[j] += c;
    // Bound 2 (sameOwner, inlined).
    if ((subnetRule && sub[i] >= 0 && sub[i] === sub[j]) || (fam && (!!fam[i]?.has(j) || !!fam[j]?.has(i)))) {
      excludedCells[i] += c;
      excludedCells[j] += c;
      if (owed) { owed.owedA[k] = 0; owed.owedB[k] = 0; }
      continue;
    }
    if (c === 0 && !(owed && (owed.owedA[k] !== 0 || owed.owedB[k] !== 0))) continue;
    side(i, j, c, owed?.owedA, k);
    side(j, i, c, owed?.owedB, k);
  }
  const newRelayCap = cellsForBandwidth(p.newRelayBandwidth, p.epochSeconds);
  const weightCells = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    // Bound 4 applies to this epoch's traffic (the future weight); late payment is already bounded by
    // the allowances and is added after it; bounds 5 and 6 apply to the total.
    const late = p.paidIsWeight !== false ? 0 : Math.floor(paidCells[r]);
    let w = Math.floor(credit[r]) - late;
    let lim = 0;
    if (w <= 0 && late <= 0) continue;
    if (p.growthFactor !== Infinity) {
      const cap = cellsForBandwidth(p.growthFactor * Math.max(W[r] || 0, p.newRelayBandwidth), p.epochSeconds);
      if (w > cap) { w = cap; lim = 1; }
    }
    let x = w + late;
    if (p.newRelayEpochs > 0 && relays.history[r] < p.newRelayEpochs && x > newRelayCap) { x = newRelayCap; lim = 2; }
    const declaredCap = cellsForBandwidth(2 * Math.max(0, relays.declaredBandwidth[r]), p.epochSeconds);
    if (x > declaredCap) { x = declaredCap; lim = 3; }
    out[r] = x;
    limitedBy[r] = lim;
    weightCells[r] = Math.min(w, x);
  }
  // Bound 5a last: its places go only to new relays the other bounds credit (SPEC §8.5 5a).
  const mayEarn = newRelayEarners(relays, p.newRelayEpochs, p.newRelaysPerGroup ?? 0, out);
  for (let r = 0; r < n; r++) if (!mayEarn[r] && out[r] > 0) { out[r] = 0; weightCells[r] = 0; limitedBy[r] = 2; }
  return { grossCells, excludedCells, peerCappedCells, limitedBy, cells: out, paidCells, owedCells, weightCells };
}
