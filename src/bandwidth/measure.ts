// SPEC.md §8.5: accepted receipts → measured bandwidth per relay,
// bounded so that receipts relays invent between themselves earn little. Pure and deterministic.
import { err } from '../errors';
import { CELL_LEN } from '../wire/cell';

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

/** SPEC §8.5 defaults for the public network (scripts/simulate-collusion.ts measures them). */
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
  /** cells × 514 / epoch seconds: the measured value an authority votes (SPEC §6). */
  bytesPerSecond: number;
}

export interface MeasureInput {
  receipts: Iterable<PairCounts>;
  /** Relays listed in this epoch's consensus. Receipts naming anyone else are ignored. */
  relays: ReadonlyMap<string, RelayFacts>;
  /** Bytes/s each relay had in the previous consensus (its weight; absent = 0). */
  previousWeights: ReadonlyMap<string, number>;
  params: BoundsParams;
}

function checkParams(p: BoundsParams): void {
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
  let a = 0; // constant part of the right side on the current interval
  let b = 0; // slope (sum of coefficients of unsaturated claims)
  let gross = 0;
  const breaks: { at: number; cells: number; coefficient: number }[] = [];
  for (const c of claims) {
    gross += c.cells;
    if (c.cells <= slack || c.coefficient === Infinity) { a += c.cells; continue; } // always fully counted
    if (!(c.coefficient > 0)) { a += slack; continue; } // never above the slack
    a += slack;
    b += c.coefficient;
    breaks.push({ at: (c.cells - slack) / c.coefficient, cells: c.cells, coefficient: c.coefficient });
  }
  breaks.sort((x, y) => x.at - y.at);
  let lo = 0;
  for (const br of breaks) {
    // On [lo, br.at] the right side is a + b·X.
    if (b < 1) {
      const x = a / (1 - b);
      if (x <= br.at) return Math.max(lo, Math.min(x, gross));
    }
    lo = br.at;
    a += br.cells - slack;
    b -= br.coefficient;
  }
  // Past the last breakpoint every claim is saturated: the right side is constant (b is ~0 here).
  return Math.min(Math.max(lo, a), gross);
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
  // gross[r][peer] = cells r exchanged with peer over all receipts of the pair (both orientations).
  const gross = new Map<string, Map<string, number>>();
  const add = (r: string, peer: string, c: number) => {
    let m = gross.get(r);
    if (!m) gross.set(r, (m = new Map()));
    m.set(peer, (m.get(peer) ?? 0) + c);
  };
  for (const rc of input.receipts) {
    if (rc.initiator === rc.responder || !input.relays.has(rc.initiator) || !input.relays.has(rc.responder)) continue;
    const c = rc.cellsI2R + rc.cellsR2I;
    if (!Number.isSafeInteger(c) || c < 0 || !Number.isSafeInteger(rc.cellsI2R) || !Number.isSafeInteger(rc.cellsR2I)) {
      throw err('RECEIPT_MALFORMED', 'receipt counts must be non-negative integers');
    }
    if (c === 0) continue;
    add(rc.initiator, rc.responder, c);
    add(rc.responder, rc.initiator, c);
  }

  let totalPrev = 0;
  for (const w of input.previousWeights.values()) if (w > 0 && Number.isFinite(w)) totalPrev += w;
  // Per-relay facts computed once, not per pair: bound 3's coefficient, the /16, the family.
  const coef = new Map<string, number>();
  const subnet = new Map<string, string | undefined>();
  const family = new Map<string, ReadonlySet<string>>();
  for (const r of gross.keys()) {
    const w = input.previousWeights.get(r) ?? 0;
    coef.set(r, p.peerCapFactor === Infinity ? Infinity : totalPrev > 0 && w > 0 && Number.isFinite(w) ? (p.peerCapFactor * w) / totalPrev : 0);
    const f = input.relays.get(r)!;
    subnet.set(r, p.sameSubnetRule ? slash16(f.ipv4) : undefined);
    family.set(r, new Set(f.family ?? []));
  }

  const out = new Map<string, RelayMeasurement>();
  for (const r of [...gross.keys()].sort()) {
    const facts = input.relays.get(r)!;
    const myNet = subnet.get(r);
    const myFamily = family.get(r)!;
    let grossCells = 0, excludedCells = 0, kept = 0;
    const claims: PeerClaim[] = [];
    for (const [peer, c] of gross.get(r)!) {
      grossCells += c;
      // Bound 2 (same rule as pairExcluded, with the per-relay facts precomputed).
      if (myFamily.has(peer) || family.get(peer)!.has(r) || (myNet !== undefined && myNet === subnet.get(peer))) {
        excludedCells += c;
        continue;
      }
      kept += c;
      claims.push({ cells: c, coefficient: coef.get(peer)! });
    }
    let credit = Math.min(kept, Math.floor(dispersionCredit(claims, p.peerCapSlackCells)));
    const peerCappedCells = kept - credit;
    let limitedBy: RelayMeasurement['limitedBy'] = 'none';
    if (p.growthFactor !== Infinity) {
      const base = Math.max(input.previousWeights.get(r) ?? 0, p.newRelayBandwidth);
      const cap = cellsForBandwidth(p.growthFactor * base, p.epochSeconds);
      if (credit > cap) { credit = cap; limitedBy = 'growth'; }
    }
    if (p.newRelayEpochs > 0 && facts.history < p.newRelayEpochs) {
      const cap = cellsForBandwidth(p.newRelayBandwidth, p.epochSeconds);
      if (credit > cap) { credit = cap; limitedBy = 'new-relay'; }
    }
    const declaredCap = cellsForBandwidth(2 * Math.max(0, facts.declaredBandwidth), p.epochSeconds);
    if (credit > declaredCap) { credit = declaredCap; limitedBy = 'declared'; }
    out.set(r, {
      grossCells, excludedCells, peerCappedCells, limitedBy, cells: credit,
      bytesPerSecond: Math.floor((credit * CELL_LEN) / p.epochSeconds),
    });
  }
  return out;
}

/** The proven cells of each relay with a non-zero measurement: the input of `allocate` (SPEC §8.6). */
export function provenCells(m: ReadonlyMap<string, RelayMeasurement>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [fp, v] of m) if (v.cells > 0) out.set(fp, v.cells);
  return out;
}
