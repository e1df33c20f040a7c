// SPEC.md §8.1: what a relay counts for proof of bandwidth.
// Per link to another relay and per segment (a segment ends at each receipt boundary, normally the
// epoch boundary): cells sent, cells received, and how many circuits were open. Never per circuit:
// no circuit id, client or path is stored, and receipts cannot reveal one.
import { err } from '../errors';
import { randomBytes } from '../crypto/primitives';
import type { Receipt } from './receipt';
import { receiptFingerprints, MAX_SLACK_CIRCUITS as MAX_CARRIED_CIRCUITS } from './receipt';

/** Which end of the link this relay is. The initiator proposes receipts; the responder countersigns. */
export type LinkRole = 'initiator' | 'responder';

/** SPEC §8.1: only circuit cells (circId ≠ 0) count; link-level cells (VERSIONS, PADDING, AUTHENTICATE, RECEIPT_*) never do. */
export function isCountedCell(circId: number): boolean {
  return circId !== 0;
}

/** One closed segment, oriented like a receipt body (i→r is the initiator's sent direction). */
export interface SegmentCounts {
  cellsI2R: number;
  cellsR2I: number;
  /** Circuits open on the link at some time during the segment (CREATE2 seen, DESTROY not yet). */
  circuits: number;
  /**
   * SPEC §8.1.7: circuits this node really carried — it wrote a circuit cell other than DESTROY on
   * them — during this segment or the previous one, at most MAX_CARRIED_CIRCUITS. This, not
   * `circuits`, sets the in-flight tolerance of §8.3: a junk CREATE2 (answered by DESTROY) adds nothing.
   */
  carried: number;
  /** Counted cells this node wrote on the link during the previous segment (what can have been in flight at its boundary). */
  prevSent: number;
}



/**
 * The counter one link holds for its whole lifetime. The link calls `onSent`/`onReceived` for each
 * counted cell and `onCircuitOpened`/`onCircuitClosed` as circuits come and go; at the boundary it
 * calls `cut()` to close the segment. SPEC §8.3 puts the boundary in the cell stream itself: the
 * initiator cuts just before it writes RECEIPT_PROPOSE, the responder just after it reads it, so the
 * i→r counts of both ends agree exactly and r→i differs only by cells in flight.
 */
export class LinkCounter {
  /** Counted cells this relay sent on the link in the current segment. */
  sent = 0;
  /** Counted cells this relay received on the link in the current segment. */
  received = 0;
  private openCircuits = 0;
  private segmentCircuits = 0;
  /** Circuit ids this node wrote a non-DESTROY cell on, this segment and the previous one (bounded). */
  private carriedNow = new Set<number>();
  private carriedPrev = new Set<number>();
  /** The circuit of the last call of onCircuitCarried in this segment (-1: none yet). */
  private lastCarried = -1;
  private prevSent = 0;

  constructor(readonly peer: string, readonly role: LinkRole) {
    if (!/^[0-9a-f]{64}$/.test(peer)) throw err('RECEIPT_MALFORMED', 'peer must be a 64-hex-character fingerprint');
  }

  // Hot path (per cell): integer increments only; nothing allocated, nothing logged.
  onSent(cells = 1): void { this.sent += cells; }
  onReceived(cells = 1): void { this.received += cells; }

  onCircuitOpened(): void {
    this.openCircuits++;
    this.segmentCircuits++;
  }
  onCircuitClosed(): void {
    if (this.openCircuits > 0) this.openCircuits--;
  }

  /**
   * SPEC §8.1.7: this node wrote a circuit cell other than DESTROY on `circId` (a circuit it really
   * carries). Bounded: beyond MAX_CARRIED_CIRCUITS the slack is at its cap anyway.
   */
  onCircuitCarried(circId: number): void {
    // Per sent cell: consecutive cells of one circuit skip the set.
    if (circId === this.lastCarried) return;
    this.lastCarried = circId;
    if (this.carriedNow.size < MAX_CARRIED_CIRCUITS) this.carriedNow.add(circId);
  }

  get circuitsOpen(): number { return this.openCircuits; }

  private carriedCount(): number {
    let n = this.carriedNow.size;
    for (const id of this.carriedPrev) if (!this.carriedNow.has(id)) n++;
    return Math.min(n, MAX_CARRIED_CIRCUITS);
  }

  /** The current segment so far, oriented like a receipt body, without closing it. */
  peek(): SegmentCounts {
    const mine = this.role === 'initiator';
    return {
      cellsI2R: mine ? this.sent : this.received, cellsR2I: mine ? this.received : this.sent, circuits: this.segmentCircuits,
      carried: this.carriedCount(), prevSent: this.prevSent,
    };
  }

  /**
   * Close the segment: returns its counts and starts the next one at zero, with the circuits that
   * are still open already counted in it (they were open during the next segment too).
   * `deferSent`: cells counted as sent that still wait in the link's queue behind the boundary cell
   * (SPEC §8.3 step 12: a RECEIPT_PROPOSE is written ahead of them); they belong to the next segment.
   */
  cut(deferSent = 0): SegmentCounts {
    const d = Math.max(0, Math.min(this.sent, Math.floor(deferSent)));
    this.sent -= d;
    const s = this.peek();
    this.prevSent = this.sent;
    this.carriedPrev = this.carriedNow;
    this.carriedNow = new Set();
    this.lastCarried = -1;
    this.sent = d;
    this.received = 0;
    this.segmentCircuits = this.openCircuits;
    return s;
  }
}

/**
 * Serials: unique per (epoch, initiator, responder) (SPEC §8.2). A random 48-bit start plus a
 * counter, so a relay that restarts inside an epoch does not reuse a serial it already signed.
 */
export class SerialSource {
  private next: number;
  constructor(start?: number) {
    if (start === undefined) {
      const r = randomBytes(6);
      start = r.readUIntBE(0, 6);
    }
    if (!Number.isSafeInteger(start) || start < 0) throw err('RECEIPT_MALFORMED', 'serial start must be a non-negative integer');
    this.next = start;
  }
  take(): number {
    const s = this.next;
    this.next = this.next >= Number.MAX_SAFE_INTEGER ? 0 : this.next + 1;
    return s;
  }
}

/** Per-peer totals of one epoch, from this relay's point of view. */
export interface PeerEpochTotals { sent: number; received: number; receipts: number }

/**
 * The countersigned receipts a relay holds, summed per epoch and per peer: what `bitcloud-relay
 * status` shows the operator before the authorities' measurement (which applies the bounds of §8.5).
 */
export class EpochTotals {
  private readonly byEpoch = new Map<number, Map<string, PeerEpochTotals>>();

  constructor(readonly self: string) {
    if (!/^[0-9a-f]{64}$/.test(self)) throw err('RECEIPT_MALFORMED', 'self must be a 64-hex-character fingerprint');
  }

  /** Adds a countersigned receipt this relay is party to; throws RECEIPT_WRONG_KEY otherwise. */
  add(receipt: Receipt): void {
    const fp = receiptFingerprints(receipt.body);
    let sent: number, received: number, peer: string;
    if (fp.initiator === this.self) { peer = fp.responder; sent = receipt.body.cellsI2R; received = receipt.body.cellsR2I; }
    else if (fp.responder === this.self) { peer = fp.initiator; sent = receipt.body.cellsR2I; received = receipt.body.cellsI2R; }
    else throw err('RECEIPT_WRONG_KEY', 'this relay is not a party to the receipt');
    let m = this.byEpoch.get(receipt.body.epoch);
    if (!m) this.byEpoch.set(receipt.body.epoch, (m = new Map()));
    const t = m.get(peer) ?? { sent: 0, received: 0, receipts: 0 };
    m.set(peer, { sent: t.sent + sent, received: t.received + received, receipts: t.receipts + 1 });
  }

  peers(epoch: number): ReadonlyMap<string, PeerEpochTotals> {
    return this.byEpoch.get(epoch) ?? new Map();
  }

  /** Sent + received over every receipt of the epoch, before bounds (SPEC §8.5 step 1). */
  cells(epoch: number): number {
    let n = 0;
    for (const t of this.peers(epoch).values()) n += t.sent + t.received;
    return n;
  }

  epochs(): number[] {
    return [...this.byEpoch.keys()].sort((a, b) => a - b);
  }

  /** Forget epochs before `epoch`. */
  prune(epoch: number): void {
    for (const e of this.byEpoch.keys()) if (e < epoch) this.byEpoch.delete(e);
  }
}
