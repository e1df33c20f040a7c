// SPEC.md §8.3 (docs/spec/08-bandwidth.md): the receipt exchange on one relay↔relay link.
// Transport-agnostic on purpose: the daemon hands it a `send(command, payload)` for circId-0 cells
// and feeds it the RECEIPT_* cells it reads, so it is tested without sockets and src/link stays untouched.
// NOT YET WIRED into relay/daemon.ts (see the issue 5 report).
import { err } from '../src/errors';
import { CellCommand } from '../src/wire/cell';
import type { Ed25519KeyPair } from '../src/crypto/primitives';
import { LinkCounter, SerialSource, EpochTotals } from '../src/bandwidth/counters';
import {
  type Receipt, type ReceiptProposal, type ReceiptReject,
  signReceipt, countersign, acceptCountersign, inFlightTolerance,
  encodeReceiptProposal, decodeReceiptProposal, encodeReceipt, encodeReceiptReject, decodeReceiptReject,
} from '../src/bandwidth/receipt';

/** SPEC §8.1: the epoch is the consensus period number containing `nowMs`. */
export function epochAt(nowMs: number, periodSeconds: number): number {
  if (!Number.isSafeInteger(periodSeconds) || periodSeconds <= 0) throw err('RECEIPT_MALFORMED', `period must be a positive integer, got ${periodSeconds}`);
  return Math.floor(nowMs / 1000 / periodSeconds);
}

export interface LinkReceiptsOptions {
  identity: Ed25519KeyPair;
  /** The peer's authenticated identity (Channel.peerIdentity). */
  peerIdentity: Buffer;
  /** Channel.isInitiator: the initiator proposes, the responder countersigns. */
  isInitiator: boolean;
  /** Writes a link-level (circId 0) cell. */
  send: (command: number, payload: Buffer) => void;
  totals: EpochTotals;
  serials?: SerialSource;
  /** SPEC §8.3: the responder accepts the current or the previous epoch. */
  epochAccepted?: (epoch: number) => boolean;
  onReceipt?: (r: Receipt) => void;
  onDisagreement?: (reject: ReceiptReject, side: 'sent' | 'received') => void;
}

/** One link's receipt state: its counter, the proposal awaiting countersignature, the receipts kept. */
export class LinkReceipts {
  readonly counter: LinkCounter;
  private readonly serials: SerialSource;
  private pending = new Map<number, ReceiptProposal>();

  constructor(private readonly o: LinkReceiptsOptions) {
    this.counter = new LinkCounter(o.peerIdentity.toString('hex'), o.isInitiator ? 'initiator' : 'responder');
    this.serials = o.serials ?? new SerialSource();
  }

  /** Initiator only: cut the segment just before writing RECEIPT_PROPOSE (SPEC §8.3 step 1). */
  propose(epoch: number): ReceiptProposal | null {
    if (!this.o.isInitiator) return null;
    const s = this.counter.cut();
    if (s.cellsI2R === 0 && s.cellsR2I === 0) return null; // nothing carried: nothing to prove
    const p = signReceipt({
      epoch, initiator: this.o.identity.publicKey, responder: this.o.peerIdentity,
      cellsI2R: s.cellsI2R, cellsR2I: s.cellsR2I, serial: this.serials.take(),
    }, this.o.identity);
    this.pending.set(p.body.serial, p);
    this.o.send(CellCommand.RECEIPT_PROPOSE, encodeReceiptProposal(p));
    return p;
  }

  /** Feeds one RECEIPT_* cell read from the link. Malformed payloads throw RECEIPT_MALFORMED. */
  onCell(command: number, payload: Buffer): void {
    if (command === CellCommand.RECEIPT_PROPOSE && !this.o.isInitiator) {
      const s = this.counter.cut(); // responder cuts just after reading the proposal
      const p = decodeReceiptProposal(payload);
      const res = countersign(p, { cellsI2R: s.cellsI2R, cellsR2I: s.cellsR2I }, this.o.identity,
        inFlightTolerance(Math.max(1, s.circuits)), { initiator: this.o.peerIdentity, epochAccepted: this.o.epochAccepted });
      if (res.ok) {
        this.keep(res.receipt);
        this.o.send(CellCommand.RECEIPT_COUNTERSIGN, encodeReceipt(res.receipt));
      } else {
        this.o.onDisagreement?.(res.reject, 'sent');
        this.o.send(CellCommand.RECEIPT_REJECT, encodeReceiptReject(res.reject));
      }
    } else if (command === CellCommand.RECEIPT_COUNTERSIGN && this.o.isInitiator) {
      const serial = decodeReceiptProposal(payload).body.serial;
      const sent = this.pending.get(serial);
      if (!sent) throw err('RECEIPT_MISMATCH', `no proposal pending with serial ${serial}`);
      this.pending.delete(serial);
      this.keep(acceptCountersign(sent, payload));
    } else if (command === CellCommand.RECEIPT_REJECT && this.o.isInitiator) {
      const r = decodeReceiptReject(payload);
      this.pending.delete(r.serial);
      this.o.onDisagreement?.(r, 'received');
    }
  }

  private keep(r: Receipt): void {
    this.o.totals.add(r);
    this.o.onReceipt?.(r);
  }
}
