// SPEC.md §8.5 (docs/spec/08-bandwidth.md): accepted receipts → measured bandwidth per relay,
// bounded so that receipts two relays invent between themselves earn little. Pure and deterministic.
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
  /** Declared bandwidth from the descriptor, bytes per second, one direction (SPEC §8.5 bound 5). */
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
  /** κ of bound 3: a peer may vouch for at most κ × its weight share × the receiver's base. Infinity disables. */
  peerCapFactor: number;
  /** Cells every pair may exchange above the peer cap (absorbs noise of small relays). */
  peerCapSlackCells: number;
  /** Bound 4: epochs of history before a relay leaves the new-relay cap. 0 disables. */
  newRelayEpochs: number;
  /** Bound 4: bandwidth (bytes/s) a new relay may be credited with; also the least base of bound 3. */
  newRelayBandwidth: number;
  /** Bound 2: receipts between relays in one IPv4 /16 earn nothing. Off only on a loopback network. */
  sameSubnetRule: boolean;
}

/** SPEC §8.5 defaults for the public network (the simulation in scripts/simulate-collusion.ts uses these). */
export const DEFAULT_BOUNDS: Omit<BoundsParams, 'epochSeconds'> = {
  peerCapFactor: 1.5,
  peerCapSlackCells: 2 * 1000,
  newRelayEpochs: 24,
  newRelayBandwidth: 250_000,
  sameSubnetRule: true,
};

/**
 * The local network runs every relay on 127.0.0.1, all new, with a handful of relays whose pair
 * traffic is nothing like the weight shares: only the family and declared-bandwidth bounds apply.
 */
export const LOCAL_NETWORK_BOUNDS: Omit<BoundsParams, 'epochSeconds'> = {
  peerCapFactor: Infinity,
  peerCapSlackCells: 0,
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
  /** Which of bounds 4 and 5 limited the total, if any. */
  limitedBy: 'none' | 'new-relay' | 'declared';
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

/** Everything bound 3 needs about the previous consensus, computed once per epoch. */
export interface PeerCapContext {
  readonly params: BoundsParams;
  readonly previousWeights: ReadonlyMap<string, number>;
  readonly totalPreviousWeight: number;
}

export function peerCapContext(previousWeights: ReadonlyMap<string, number>, params: BoundsParams): PeerCapContext {
  let total = 0;
  for (const w of previousWeights.values()) if (w > 0 && Number.isFinite(w)) total += w;
  return { params, previousWeights, totalPreviousWeight: total };
}

/**
 * Bound 3: the most cells `voucher` can credit to `receiver` in the epoch:
 *   floor(κ × share(voucher) × base(receiver)) + slack, where share = the voucher's weight in the
 *   previous consensus over the total, and base = cells of max(receiver's previous weight, newRelayBandwidth).
 * A relay's honest traffic with a peer is about share(peer) of its traffic, because clients pick
 * hops in proportion to weight; κ leaves room for chance. Infinity when the cap is disabled.
 */
export function peerCapCells(ctx: PeerCapContext, voucher: string, receiver: string): number {
  const p = ctx.params;
  if (p.peerCapFactor === Infinity) return Infinity;
  const wv = ctx.previousWeights.get(voucher) ?? 0;
  const share = ctx.totalPreviousWeight > 0 && wv > 0 ? wv / ctx.totalPreviousWeight : 0;
  const base = cellsForBandwidth(Math.max(ctx.previousWeights.get(receiver) ?? 0, p.newRelayBandwidth), p.epochSeconds);
  return Math.floor(p.peerCapFactor * share * base) + p.peerCapSlackCells;
}

/**
 * SPEC §8.5: the measured bandwidth of every relay that appears in an accepted receipt.
 *  1. gross: each receipt credits both ends with cellsI2R + cellsR2I (what each sent plus received);
 *  2. pairs in one declared family or one /16 earn nothing;
 *  3. the credit a relay receives from any one peer is capped by `peerCapCells`;
 *  4. a relay with fewer than newRelayEpochs epochs of history gets at most newRelayBandwidth;
 *  5. no relay gets more than 2 × declared bandwidth (it both sends and receives) over the epoch.
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
    if (!Number.isSafeInteger(c) || c < 0) throw err('RECEIPT_MALFORMED', 'receipt counts must be non-negative integers');
    if (c === 0) continue;
    add(rc.initiator, rc.responder, c);
    add(rc.responder, rc.initiator, c);
  }

  const ctx = peerCapContext(input.previousWeights, p);
  const out = new Map<string, RelayMeasurement>();
  const ids = [...gross.keys()].sort();
  for (const r of ids) {
    const facts = input.relays.get(r)!;
    let grossCells = 0, excludedCells = 0, peerCappedCells = 0, credit = 0;
    for (const [peer, c] of gross.get(r)!) {
      grossCells += c;
      if (pairExcluded(r, facts, peer, input.relays.get(peer)!, p.sameSubnetRule)) { excludedCells += c; continue; }
      const cap = peerCapCells(ctx, peer, r);
      const allowed = c <= cap ? c : cap;
      peerCappedCells += c - allowed;
      credit += allowed;
    }
    let limitedBy: RelayMeasurement['limitedBy'] = 'none';
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
