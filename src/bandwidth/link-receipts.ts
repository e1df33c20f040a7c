// SPEC.md §8.3: the receipt exchange on one authenticated node↔node link (relay–relay,
// relay–storage node). Transport-agnostic: the owner (exchange.ts) hands it a `send(command,
// payload)` for circId-0 cells and feeds it the RECEIPT_* cells it reads; its LinkCounter is
// attached to the Channel, which bumps it per circuit cell (src/link/channel.ts).
// Lives in src/ because relays and storage nodes both run it (SPEC.md §11.3).
import { err } from '../errors';
import { CellCommand, decodeReceiptRequest, encodeReceiptRequest, type ReceiptRequest } from '../wire/cell';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { LinkCounter, SerialSource, type EpochTotals, type SegmentCounts } from './counters';
import {
  type Receipt, type ReceiptBody, type ReceiptProposal, type RejectReasonName,
  signReceipt, countersign, acceptCountersign, inFlightTolerance, r2iExcessAllowed,
  encodeReceiptProposal, decodeReceiptProposal, encodeReceipt, encodeReceiptReject, decodeReceiptReject,
} from './receipt';

/** SPEC §8 (introduction): the epoch is the consensus period number containing `nowMs`. */
export function epochAt(nowMs: number, periodSeconds: number): number {
  if (!Number.isSafeInteger(periodSeconds) || periodSeconds <= 0) throw err('RECEIPT_MALFORMED', `period must be a positive integer, got ${periodSeconds}`);
  return Math.floor(nowMs / 1000 / periodSeconds);
}

/** Why a segment went unpaid: a REJECT reason (§8.2.3), no answer in time, or a bad COUNTERSIGN. */
export type DisagreementReason = RejectReasonName | 'NO_ANSWER' | 'BAD_COUNTERSIGN';

/**
 * One unpaid segment, as logged and counted (SPEC §8.3 step 3). Carries counts and the epoch,
 * never anything that names a circuit, a stream or an address.
 */
export interface Disagreement {
  epoch: number;
  serial: number;
  reason: DisagreementReason;
  /** 'sent': this node (responder) refused; 'received': the peer refused ours; 'local': our own check. */
  side: 'sent' | 'received' | 'local';
  /** The initiator's proposed counts (null when the proposal did not parse). */
  proposed: { cellsI2R: number; cellsR2I: number } | null;
  /** The responder's own counts and tolerance (null when no REJECT carried them). */
  responder: { cellsI2R: number; cellsR2I: number; tolerance: number } | null;
}

export interface LinkReceiptsOptions {
  identity: Ed25519KeyPair;
  /** The peer's authenticated identity (Channel.peerIdentity). */
  peerIdentity: Buffer;
  /** Channel.isInitiator: the initiator proposes, the responder countersigns. */
  isInitiator: boolean;
  /** Writes a link-level (circId 0) cell. */
  send: (command: number, payload: Buffer) => void;
  serials?: SerialSource;
  /** Where kept receipts are summed (the operator's view); optional. */
  totals?: EpochTotals;
  /** SPEC §8.3: the responder accepts the current or the previous epoch. */
  epochAccepted?: (epoch: number) => boolean;
  /** SPEC §8.3 step 13: whether one more receipt of this peer for the body's epoch would be kept. */
  admit?: (body: ReceiptBody) => boolean;
  onReceipt?: (r: Receipt) => void;
  onDisagreement?: (d: Disagreement) => void;
  /** Every closed segment (both roles), for the cell counters of /metrics. */
  onSegment?: (s: SegmentCounts) => void;
  /**
   * SPEC §8.3 step 12: counted cells sent but still queued in the link behind a RECEIPT_* cell sent
   * now (Channel.queuedCountedCells); the initiator's cut leaves them to the next segment. Absent = 0.
   */
  queuedSent?: () => number;
}

/** One link's receipt state: its counter, the proposals awaiting an answer. */
export class LinkReceipts {
  readonly counter: LinkCounter;
  private readonly serials: SerialSource;
  private readonly pending = new Map<number, ReceiptProposal>();
  private read = 0;
  /** Responder: r→i cells written in the segments already cut, and r→i cells signed in receipts (SPEC §8.3 check 5). */
  private writtenR2I = 0;
  private signedR2I = 0;

  constructor(private readonly o: LinkReceiptsOptions) {
    this.counter = new LinkCounter(o.peerIdentity.toString('hex'), o.isInitiator ? 'initiator' : 'responder');
    this.serials = o.serials ?? new SerialSource();
  }

  get isInitiator(): boolean { return this.o.isInitiator; }
  get peer(): string { return this.counter.peer; }
  /** Proposals sent and not yet answered. */
  get pendingCount(): number { return this.pending.size; }
  /** Responder: RECEIPT_PROPOSE cells read (each answered at once, COUNTERSIGN or REJECT). */
  get proposalsRead(): number { return this.read; }
  /** The current segment counted at least one cell (SPEC §8.3 step 1: otherwise nothing to prove). */
  get segmentCounted(): boolean { return this.counter.sent > 0 || this.counter.received > 0; }

  private cut(deferSent = 0): SegmentCounts {
    const s = this.counter.cut(deferSent);
    this.o.onSegment?.(s);
    return s;
  }

  /**
   * Initiator only: cut the segment just before writing RECEIPT_PROPOSE (SPEC §8.3 step 1).
   * Returns null (and sends nothing) for a responder or a segment that counted no cell.
   */
  propose(epoch: number): ReceiptProposal | null {
    if (!this.o.isInitiator) return null;
    // The PROPOSE is written ahead of the circuit cells still queued (§8.3 step 12): they follow it.
    const s = this.cut(this.o.queuedSent?.() ?? 0);
    if (s.cellsI2R === 0 && s.cellsR2I === 0) return null; // nothing carried: nothing to prove
    const p = signReceipt({
      epoch, initiator: this.o.identity.publicKey, responder: this.o.peerIdentity,
      cellsI2R: s.cellsI2R, cellsR2I: s.cellsR2I, serial: this.serials.take(),
    }, this.o.identity);
    this.pending.set(p.body.serial, p);
    this.o.send(CellCommand.RECEIPT_PROPOSE, encodeReceiptProposal(p));
    return p;
  }

  /**
   * Responder only: ask the initiator to propose now, the link is about to close on purpose
   * (SPEC §8.3 step 11). Returns false (and sends nothing) on an initiator link.
   */
  request(epoch: number): boolean {
    if (this.o.isInitiator) return false;
    this.o.send(CellCommand.RECEIPT_REQUEST, encodeReceiptRequest({ epoch, reason: 'CLOSING' }));
    return true;
  }

  /**
   * Initiator only: a RECEIPT_REQUEST read from the link. Throws LINK_PROTOCOL_VIOLATION on a
   * responder link (wrong role) and RECEIPT_MALFORMED; the owner then proposes (it knows the epoch).
   */
  readRequest(payload: Buffer): ReceiptRequest {
    if (!this.o.isInitiator) throw err('LINK_PROTOCOL_VIOLATION', 'RECEIPT_REQUEST sent to the link\'s responder');
    return decodeReceiptRequest(payload);
  }

  /**
   * SPEC §8.3 step 3: no answer in time — the segment is unpaid. Returns the proposal that was
   * still pending (and reports NO_ANSWER), or null when it had been answered meanwhile.
   */
  expire(serial: number): ReceiptProposal | null {
    const p = this.pending.get(serial);
    if (!p) return null;
    this.pending.delete(serial);
    this.o.onDisagreement?.({ epoch: p.body.epoch, serial, reason: 'NO_ANSWER', side: 'local', proposed: countsOf(p), responder: null });
    return p;
  }

  /** The link closed: every proposal still pending is unpaid (NO_ANSWER). */
  expireAll(): void {
    for (const serial of [...this.pending.keys()]) this.expire(serial);
  }

  /**
   * Feeds one RECEIPT_* cell read from the link. A malformed PROPOSE is answered with REJECT
   * MALFORMED (epoch and serial 0). Throws RECEIPT_MALFORMED (a COUNTERSIGN or REJECT that does
   * not parse), RECEIPT_MISMATCH (an answer to no pending proposal) and LINK_PROTOCOL_VIOLATION
   * (a cell of the other role); the owner counts those and keeps the link.
   */
  onCell(command: number, payload: Buffer): void {
    if (command === CellCommand.RECEIPT_PROPOSE && !this.o.isInitiator) this.onPropose(payload);
    else if (command === CellCommand.RECEIPT_COUNTERSIGN && this.o.isInitiator) this.onCountersign(payload);
    else if (command === CellCommand.RECEIPT_REJECT && this.o.isInitiator) this.onReject(payload);
    else throw err('LINK_PROTOCOL_VIOLATION', `receipt cell ${command} sent to the link's ${this.o.isInitiator ? 'initiator' : 'responder'}`);
  }

  private onPropose(payload: Buffer): void {
    // SPEC §8.3 step 2: the responder closes its segment on reading the PROPOSE, whatever it decides.
    const s = this.cut();
    this.read++;
    // Cells written before this segment and never signed for: the most a proposal may add to
    // this segment's own count, so that over the link's life the responder never signs more r→i
    // cells than it wrote (an amplifier cannot claim one segment's in-flight cells twice).
    const writtenBefore = this.writtenR2I;
    this.writtenR2I += s.cellsR2I;
    // SPEC §8.3 check 5: one window per circuit this node really carried (never a junk CREATE2),
    // capped per link; never more i→r than it read, never more r→i than it wrote plus what it
    // wrote in the previous segment and has not signed for yet.
    const tolerance = inFlightTolerance(Math.max(1, s.carried));
    let p: ReceiptProposal;
    try {
      p = decodeReceiptProposal(payload);
    } catch {
      const reject = { epoch: 0, serial: 0, reason: 'MALFORMED' as const, cellsI2R: s.cellsI2R, cellsR2I: s.cellsR2I, tolerance };
      this.o.onDisagreement?.({ epoch: 0, serial: 0, reason: 'MALFORMED', side: 'sent', proposed: null, responder: reject });
      this.o.send(CellCommand.RECEIPT_REJECT, encodeReceiptReject(reject));
      return;
    }
    const mine = { cellsI2R: s.cellsI2R, cellsR2I: s.cellsR2I, maxExcessI2R: 0, maxExcessR2I: r2iExcessAllowed(tolerance, s.prevSent, writtenBefore, this.signedR2I) };
    const res = countersign(p, mine, this.o.identity, tolerance,
      { initiator: this.o.peerIdentity, epochAccepted: this.o.epochAccepted, admit: this.o.admit });
    if (res.ok) {
      this.signedR2I += p.body.cellsR2I;
      this.o.send(CellCommand.RECEIPT_COUNTERSIGN, encodeReceipt(res.receipt));
      this.keep(res.receipt);
    } else {
      const r = res.reject;
      this.o.onDisagreement?.({ epoch: r.epoch, serial: r.serial, reason: r.reason, side: 'sent', proposed: countsOf(p), responder: r });
      this.o.send(CellCommand.RECEIPT_REJECT, encodeReceiptReject(r));
    }
  }

  private onCountersign(payload: Buffer): void {
    const serial = decodeReceiptProposal(payload).body.serial;
    const sent = this.pending.get(serial);
    if (!sent) throw err('RECEIPT_MISMATCH', `no proposal pending with serial ${serial}`);
    this.pending.delete(serial);
    let r: Receipt;
    try {
      r = acceptCountersign(sent, payload);
    } catch (e) {
      // Never silently accepted, never retried: the segment is unpaid (SPEC §8.3 step 3).
      this.o.onDisagreement?.({ epoch: sent.body.epoch, serial, reason: 'BAD_COUNTERSIGN', side: 'local', proposed: countsOf(sent), responder: null });
      throw e;
    }
    this.keep(r);
  }

  private keep(r: Receipt): void {
    this.o.totals?.add(r);
    this.o.onReceipt?.(r);
  }

  private onReject(payload: Buffer): void {
    const r = decodeReceiptReject(payload);
    // SPEC §8.3 step 8: a REJECT answers a pending proposal, by its serial; one with serial 0 that
    // matches none answers the oldest pending proposal (the responder could not parse it, so it
    // could not name it; it answers PROPOSE cells in the order they come). With nothing pending
    // it answers nothing: ignored and counted (RECEIPT_MISMATCH), never logged as a disagreement,
    // so a peer cannot flood the log or the disagreement counter.
    let serial = r.serial;
    if (!this.pending.has(serial) && serial === 0) serial = this.pending.keys().next().value ?? 0;
    const sent = this.pending.get(serial);
    if (!sent) throw err('RECEIPT_MISMATCH', `REJECT for no pending proposal (serial ${r.serial})`);
    this.pending.delete(serial);
    this.o.onDisagreement?.({
      epoch: sent.body.epoch, serial, reason: r.reason, side: 'received',
      proposed: countsOf(sent), responder: { cellsI2R: r.cellsI2R, cellsR2I: r.cellsR2I, tolerance: r.tolerance },
    });
  }
}

function countsOf(p: ReceiptProposal): { cellsI2R: number; cellsR2I: number } {
  return { cellsI2R: p.body.cellsI2R, cellsR2I: p.body.cellsR2I };
}
