// SPEC.md §8.5: accepted receipts → measured bandwidth per relay, through the rule of
// src/bandwidth/rule.ts (§8.5.1),
// bounded so that receipts relays invent between themselves earn little. Pure and deterministic.
import { CELL_LEN } from '../wire/cell';
import {
  LIMITED_BY, applyPairRule, applyRule, checkParams, type BoundsParams, type PairRuleParams, type PairRuleResult, type RelayTable, type RuleResult,
} from './rule';

/** The counts of one accepted receipt, by fingerprint (the input of measurement). */
export interface PairCounts {
  initiator: string;
  responder: string;
  cellsI2R: number;
  cellsR2I: number;
}

/** What the epoch's consensus and descriptors say about a relay. */
export interface RelayFacts {
  /** Declared bandwidth from the descriptor, bytes per second, one direction (bound 6). */
  declaredBandwidth: number;
  /** Fingerprints the relay declares as its family. */
  family?: readonly string[];
  /** Dotted-quad IPv4 address of its OR port. */
  ipv4?: string;
  /** Number of earlier epochs in which the relay was listed with a measured weight. */
  history: number;
}

export {
  DEFAULT_BOUNDS, DEFAULT_PAIR_RULE, LOCAL_NETWORK_BOUNDS, LOCAL_PAIR_RULE, cellsForBandwidth, dispersionCredit, pairAllowance,
  type BoundsParams, type PairRuleParams, type PeerClaim,
} from './rule';

export interface RelayMeasurement {
  /** Bound 1: sent + received cells over all of its accepted receipts. */
  grossCells: number;
  /** Cells removed by bound 2 (same family or /16). */
  excludedCells: number;
  /** Cells removed by bound 3 (peer cap). */
  peerCappedCells: number;
  /** Which of bounds 4–6 limited the total last, if any. */
  limitedBy: 'none' | 'growth' | 'new-relay' | 'declared';
  /** Proven cells for the epoch: the input of the reward allocation. */
  cells: number;
  /** cells × 514 / epoch seconds. */
  bytesPerSecond: number;
  /** Pair rule (SPEC §8.5.2): cells paid this epoch from what earlier epochs owed (in `cells`). */
  paidCells: number;
  /** Pair rule: cells above the allowance newly owed this epoch (not in `cells`). */
  owedCells: number;
  /** The cells that count as weight for the next consensus (the dispersion rule: `cells`). */
  weightCells: number;
  /** weightCells × 514 / epoch seconds: the measured value an authority votes (SPEC §6.6). */
  weightBytesPerSecond: number;
}

export interface MeasureInput {
  receipts: Iterable<PairCounts>;
  /** Relays listed in this epoch's consensus. Receipts naming anyone else are ignored. */
  relays: ReadonlyMap<string, RelayFacts>;
  /** Bytes/s each relay had in the previous consensus (its weight; absent = 0). */
  previousWeights: ReadonlyMap<string, number>;
  params: BoundsParams;
  /**
   * Called for each receipt measurement skips because its counts are not non-negative integers
   * within `maxReceiptCells` (SPEC §8.5: a bad receipt is skipped and counted, never fatal).
   */
  onSkip?: (rc: PairCounts, reason: string) => void;
}

/**
 * SPEC §8.4 (the count bound, checked before check 4): the fastest link a receipt may describe (100 Gbit/s, one direction). A count
 * above what such a link carries in two epochs (a segment ends at the epoch boundary, §8.3, plus
 * the proposal jitter) is physically impossible and refused at intake; measurement skips it.
 */
export const MAX_LINK_BYTES_PER_SECOND = 12_500_000_000;

/** SPEC §8.4 (the count bound before check 4): the largest count, per direction, of one receipt in an epoch of `epochSeconds`. */
export function maxReceiptCells(epochSeconds: number): number {
  return Math.ceil((MAX_LINK_BYTES_PER_SECOND * 2 * epochSeconds) / CELL_LEN);
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** An exact sum brought back to a number; above 2^53 − 1 it saturates (bounds 4–6 cap far lower). */
const toSafe = (b: bigint): number => Number(b > SAFE ? SAFE : b);

/** The IPv4 /16 of a dotted quad ("a.b"), or undefined when it is not one. */
export function slash16(ipv4: string | undefined): string | undefined {
  if (!ipv4) return undefined;
  const m = /^(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(ipv4);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255) return undefined;
  return `${Number(m[1])}.${Number(m[2])}`;
}

/** Bound 2: true when receipts between `a` and `b` earn nothing (same declared family, either way; or same /16). */
export function pairExcluded(a: string, fa: RelayFacts, b: string, fb: RelayFacts, sameSubnetRule: boolean): boolean {
  if (fa.family?.includes(b) || fb.family?.includes(a)) return true;
  if (sameSubnetRule) {
    const sa = slash16(fa.ipv4);
    if (sa !== undefined && sa === slash16(fb.ipv4)) return true;
  }
  return false;
}

/**
 * SPEC §8.5: the measured bandwidth of every relay that appears in an accepted receipt.
 *  1. gross: each receipt credits both ends with cellsI2R + cellsR2I (what each sent plus received);
 *  2. pairs in one declared family or one /16 earn nothing;
 *  3. dispersion: the credit from any one peer is at most κ × that peer's share of the previous
 *     consensus weight × the relay's own credit, plus σ cells (`dispersionCredit`);
 *  4. growth: at most γ × max(previous weight, newRelayBandwidth) over the epoch;
 *  5. new relays (history < newRelayEpochs) get at most newRelayBandwidth over the epoch;
 *  6. no relay gets more than 2 × its declared bandwidth (it both sends and receives) over the epoch.
 */
export function measure(input: MeasureInput): Map<string, RelayMeasurement> {
  const p = input.params;
  checkParams(p);
  const t = tabulate(input, p.epochSeconds, p.sameSubnetRule);
  const r = applyRule({ a: t.a, b: t.b, cells: t.cells }, t.relays, p);
  return results(t.fps, r, p.epochSeconds);
}

/** Receipts summed per unordered pair, sorted by (lower index, higher index), and the relay table. */
interface Tabulated {
  fps: string[];
  index: Map<string, number>;
  a: Int32Array;
  b: Int32Array;
  cells: Float64Array;
  relays: RelayTable;
}

function tabulate(input: Omit<MeasureInput, 'params'>, epochSeconds: number, sameSubnetRule: boolean, extraPairs: Iterable<[number, number]> = []): Tabulated {
  // Index the relays of the consensus; sum every receipt of a pair (either orientation) into one count.
  const fps = [...input.relays.keys()].sort();
  const index = new Map<string, number>(fps.map((fp, i) => [fp, i]));
  const n = fps.length;
  const exact = new Map<number, bigint>();
  const maxCells = maxReceiptCells(epochSeconds);
  const okCount = (c: number) => Number.isSafeInteger(c) && c >= 0 && c <= maxCells;
  for (const rc of input.receipts) {
    const i = index.get(rc.initiator), j = index.get(rc.responder);
    if (i === undefined || j === undefined || i === j) continue;
    // SPEC §8.5: a receipt with impossible counts is skipped and counted, never fatal.
    if (!okCount(rc.cellsI2R) || !okCount(rc.cellsR2I)) {
      input.onSkip?.(rc, `receipt counts must be integers in 0..${maxCells}`);
      continue;
    }
    // Summed exactly (a pair may hold many receipts).
    const c = BigInt(rc.cellsI2R) + BigInt(rc.cellsR2I);
    if (c === 0n) continue;
    const key = Math.min(i, j) * n + Math.max(i, j);
    exact.set(key, (exact.get(key) ?? 0n) + c);
  }
  for (const [i, j] of extraPairs) {
    const key = Math.min(i, j) * n + Math.max(i, j);
    if (i !== j && !exact.has(key)) exact.set(key, 0n);
  }
  // Pair order fixed by the relays' fingerprints, never by the order receipts arrived: every
  // authority holding the same receipts adds the same numbers in the same order (SPEC §8.5.2).
  const keys = [...exact.keys()].sort((x, y) => x - y);
  const a = new Int32Array(keys.length), b = new Int32Array(keys.length), cells = new Float64Array(keys.length);
  keys.forEach((key, k) => { a[k] = Math.floor(key / n); b[k] = key % n; cells[k] = toSafe(exact.get(key)!); });

  let totalPrev = 0;
  for (const w of input.previousWeights.values()) if (w > 0 && Number.isFinite(w)) totalPrev += w;
  const previousWeights = new Float64Array(n), declaredBandwidth = new Float64Array(n), history = new Float64Array(n);
  const subnet = new Int32Array(n).fill(-1);
  const family: (Set<number> | undefined)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const f = input.relays.get(fps[i])!;
    const w = input.previousWeights.get(fps[i]) ?? 0;
    previousWeights[i] = w > 0 && Number.isFinite(w) ? w : 0;
    declaredBandwidth[i] = f.declaredBandwidth;
    history[i] = f.history;
    const s16 = sameSubnetRule ? slash16(f.ipv4) : undefined;
    if (s16 !== undefined) { const [x, y] = s16.split('.').map(Number); subnet[i] = x * 256 + y; }
    if (f.family?.length) {
      const set = new Set<number>();
      for (const q of f.family) { const qi = index.get(q); if (qi !== undefined) set.add(qi); }
      family[i] = set;
    }
  }
  return { fps, index, a, b, cells, relays: { n, previousWeights, totalPreviousWeight: totalPrev, declaredBandwidth, history, subnet, family } };
}

function results(fps: readonly string[], r: RuleResult | PairRuleResult, epochSeconds: number): Map<string, RelayMeasurement> {
  const out = new Map<string, RelayMeasurement>();
  const pr = 'paidCells' in r ? r : null;
  for (let i = 0; i < fps.length; i++) {
    if (r.grossCells[i] === 0 && !(pr && pr.paidCells[i] > 0)) continue;
    const weightCells = pr ? pr.weightCells[i] : r.cells[i];
    out.set(fps[i], {
      grossCells: r.grossCells[i], excludedCells: r.excludedCells[i], peerCappedCells: r.peerCappedCells[i],
      limitedBy: LIMITED_BY[r.limitedBy[i]], cells: r.cells[i],
      bytesPerSecond: Math.floor((r.cells[i] * CELL_LEN) / epochSeconds),
      paidCells: pr ? Math.floor(pr.paidCells[i]) : 0,
      owedCells: pr ? Math.floor(pr.owedCells[i]) : 0,
      weightCells,
      weightBytesPerSecond: Math.floor((weightCells * CELL_LEN) / epochSeconds),
    });
  }
  return out;
}

/**
 * What pairs are owed across epochs (SPEC §8.5.2), keyed by `pairKey(x, y)` (the two fingerprints
 * in ascending order): [owed to the lower fingerprint, owed to the higher]. Only pairs with
 * something owed are held.
 */
export type OwedState = Map<string, [number, number]>;

/** The key of the unordered pair {x, y} in an OwedState. */
export function pairKey(x: string, y: string): string {
  return x < y ? `${x}:${y}` : `${y}:${x}`;
}

export interface MeasurePairInput extends Omit<MeasureInput, 'params'> {
  params: PairRuleParams;
  /** What pairs were owed entering this epoch (not modified). */
  owed: ReadonlyMap<string, readonly [number, number]>;
  /**
   * Whether an owed entry whose relays are not both listed this epoch is carried to the next
   * epoch unchanged (true) or dropped (false). Default: dropped.
   */
  keepUnlisted?: (x: string, y: string) => boolean;
}

/**
 * SPEC §8.5.2: the pair rule on accepted receipts, with the per-pair owed state carried across
 * epochs. Pure and deterministic: the result and the new state depend only on the receipts (as a
 * set), the relay facts, the weights and the state entering the epoch.
 */
export function measurePairRule(input: MeasurePairInput): { relays: Map<string, RelayMeasurement>; owed: OwedState } {
  const p = input.params;
  const fps = [...input.relays.keys()].sort();
  const index = new Map<string, number>(fps.map((fp, i) => [fp, i]));
  const carried: OwedState = new Map();
  const extra: [number, number][] = [];
  for (const [key, v] of input.owed) {
    const [x, y] = key.split(':');
    const i = index.get(x), j = index.get(y);
    if (i !== undefined && j !== undefined && x < y) extra.push([i, j]);
    else if (x < y && input.keepUnlisted?.(x, y)) carried.set(key, [v[0], v[1]]);
  }
  const t = tabulate(input, p.epochSeconds, p.sameSubnetRule, extra);
  const len = t.a.length;
  const owed = { owedA: new Float64Array(len), owedB: new Float64Array(len) };
  for (let k = 0; k < len; k++) {
    const v = input.owed.get(`${fps[t.a[k]]}:${fps[t.b[k]]}`);
    if (v) { owed.owedA[k] = v[0]; owed.owedB[k] = v[1]; }
  }
  const r = applyPairRule({ a: t.a, b: t.b, cells: t.cells }, t.relays, p, owed);
  for (let k = 0; k < len; k++) {
    if (owed.owedA[k] !== 0 || owed.owedB[k] !== 0) carried.set(`${fps[t.a[k]]}:${fps[t.b[k]]}`, [owed.owedA[k], owed.owedB[k]]);
  }
  return { relays: results(fps, r, p.epochSeconds), owed: carried };
}

/** The proven cells of each relay with a non-zero measurement: the input of `allocate` (SPEC §8.6). */
export function provenCells(m: ReadonlyMap<string, RelayMeasurement>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [fp, v] of m) if (v.cells > 0) out.set(fp, v.cells);
  return out;
}
