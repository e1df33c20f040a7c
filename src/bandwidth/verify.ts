// SPEC.md §8.4: what a directory authority accepts as a receipt.
// Pure: the consensus membership and the upload window are injected, and nothing here does I/O.
// The HTTP layer maps a refusal to a 4xx carrying `code` and `reason`.
import { isAllZero } from '../crypto/primitives';
import { isBitcloudError } from '../errors';
import {
  type Receipt, type ReceiptProposal, decodeReceipt, verifyInitiatorSignature, verifyResponderSignature,
} from './receipt';
import type { PairCounts } from './measure';
import { isoTime } from '../ops/log';

export type ReceiptRefusalCode =
  | 'RECEIPT_MALFORMED'
  | 'RECEIPT_ONE_SIGNATURE'
  | 'RECEIPT_OUTSIDE_WINDOW'
  | 'RECEIPT_UNKNOWN_EPOCH'
  | 'RECEIPT_UNKNOWN_RELAY'
  | 'RECEIPT_BAD_SIGNATURE'
  | 'RECEIPT_REPLAYED'
  | 'RECEIPT_CONFLICT'
  | 'RECEIPT_COUNT_TOO_LARGE'
  | 'RECEIPT_TOO_MANY';

/**
 * SPEC §8.4: receipts accepted per (epoch, initiator, responder). A link proposes at most 16 times
 * an epoch (§8.3 step 4); this leaves room for 16 links between one pair in an epoch, and bounds
 * what any two relay identities can make an authority verify and keep.
 */
export const MAX_RECEIPTS_PER_PAIR_EPOCH = 256;

declare const acceptedBrand: unique symbol;

/**
 * A receipt this authority has checked and recorded (as tor-checkable does, the type cannot be
 * made outside this module without a cast). `pair` is what measurement consumes.
 */
export interface AcceptedReceipt extends Receipt {
  readonly [acceptedBrand]: true;
  readonly pair: PairCounts;
}

export type AcceptResult =
  | { ok: true; receipt: AcceptedReceipt }
  | { ok: false; code: ReceiptRefusalCode; reason: string };

/**
 * Whether `fingerprint` is listed in the consensus of `epoch`: true / false, or undefined when the
 * authority has no consensus for that epoch (refused as RECEIPT_UNKNOWN_EPOCH).
 */
export type ConsensusMembership = (epoch: number, fingerprint: string) => boolean | undefined;

/** Milliseconds (Unix time) during which receipts for `epoch` are accepted: opens ≤ now < closes. */
export type UploadWindow = (epoch: number) => { opens: number; closes: number } | undefined;

/**
 * SPEC §8.4 default window: epoch e runs [genesis + e·period, genesis + (e+1)·period); its receipts
 * are accepted from its start (links that close mid-epoch) until `grace` after its end.
 */
export function periodicUploadWindow(p: { genesisMs: number; periodMs: number; graceMs: number }): UploadWindow {
  return (epoch) => {
    const opens = p.genesisMs + epoch * p.periodMs;
    return { opens, closes: opens + p.periodMs + p.graceMs };
  };
}

/** The epoch that contains `nowMs` under the same numbering. */
export function epochAt(nowMs: number, p: { genesisMs: number; periodMs: number }): number {
  return Math.floor((nowMs - p.genesisMs) / p.periodMs);
}

export interface ReceiptVerifierOptions {
  membership: ConsensusMembership;
  window: UploadWindow;
  /**
   * SPEC §8.4 (the count bound, checked before check 4): the largest count per direction one receipt may carry (what a link can
   * physically carry in an epoch, `maxReceiptCells(period)`); above it RECEIPT_COUNT_TOO_LARGE.
   * Absent: only the u64 bound of §8.2 applies.
   */
  maxCells?: number;
  /**
   * SPEC.md §9.21.7: for a key the consensus of `epoch` does not list, the listed hidden node it is
   * a registered pseudonym of (fingerprint), or undefined. The receipt is then checked as that
   * node's and its pair counts carry the node's fingerprint (§8.5). Absent: no pseudonyms.
   */
  pseudonymOf?: (epoch: number, key: string) => string | undefined;
}


function refuse(code: ReceiptRefusalCode, reason: string): AcceptResult {
  return { ok: false, code, reason };
}

function hasResponderSignature(r: Receipt | ReceiptProposal): r is Receipt {
  const s = (r as Partial<Receipt>).responderSignature;
  return s instanceof Uint8Array && s.length > 0 && !isAllZero(s);
}

/**
 * SPEC §8.4: accepts a receipt only with two valid signatures by relays listed in that epoch's
 * consensus, inside the epoch's upload window, and not seen before (dedupe on epoch, pair, serial).
 * Checks run cheapest first; the dedupe set only ever holds receipts whose signatures verified,
 * so a forgery cannot occupy a (epoch, pair, serial) slot.
 */
export class ReceiptVerifier {
  private readonly seen = new Map<number, Map<string, AcceptedReceipt>>();
  /** Accepted receipts per `${epoch}:${initiator}${responder}`. */
  private readonly perPair = new Map<string, number>();

  constructor(private readonly opts: ReceiptVerifierOptions) {}

  accept(input: Receipt | ReceiptProposal | Uint8Array, now: number): AcceptResult {
    let r: Receipt | ReceiptProposal;
    if (input instanceof Uint8Array) {
      try {
        r = decodeReceipt(input);
      } catch (e) {
        if (isBitcloudError(e)) return refuse('RECEIPT_MALFORMED', e.message);
        throw e;
      }
    } else {
      r = input;
    }
    const b = r.body;
    if (!hasResponderSignature(r)) return refuse('RECEIPT_ONE_SIGNATURE', 'the responder has not countersigned this receipt');

    const w = this.opts.window(b.epoch);
    if (!w) return refuse('RECEIPT_UNKNOWN_EPOCH', `no upload window for epoch ${b.epoch}`);
    if (now < w.opens || now >= w.closes) {
      return refuse('RECEIPT_OUTSIDE_WINDOW', `receipts for epoch ${b.epoch} are accepted from ${isoTime(w.opens)} until ${isoTime(w.closes)}`);
    }

    const max = this.opts.maxCells;
    if (max !== undefined && (b.cellsI2R > max || b.cellsR2I > max)) {
      return refuse('RECEIPT_COUNT_TOO_LARGE', `a receipt counts at most ${max} cells each way (what a link can carry in an epoch); this one ${b.cellsI2R} and ${b.cellsR2I}`);
    }

    const initiator = b.initiator.toString('hex');
    const responder = b.responder.toString('hex');
    // Who each end is for measurement: itself when listed, else the hidden node it is a registered
    // pseudonym of (SPEC.md §9.21.7).
    const who: string[] = [];
    for (const fp of [initiator, responder]) {
      const listed = this.opts.membership(b.epoch, fp);
      if (listed === undefined) return refuse('RECEIPT_UNKNOWN_EPOCH', `no consensus known for epoch ${b.epoch}`);
      const as = listed ? fp : this.opts.pseudonymOf?.(b.epoch, fp);
      if (as === undefined) return refuse('RECEIPT_UNKNOWN_RELAY', `relay ${fp} is not in the consensus of epoch ${b.epoch}`);
      who.push(as);
    }
    if (who[0] === who[1]) return refuse('RECEIPT_MALFORMED', 'both ends of the receipt stand for the same relay');

    const key = `${initiator}${responder}${b.serial}`;
    const prior = this.seen.get(b.epoch)?.get(key);
    if (prior && prior.bodyBytes.equals(r.bodyBytes) && prior.initiatorSignature.equals(r.initiatorSignature)
      && prior.responderSignature.equals(r.responderSignature)) {
      // Both ends upload the same receipt, and uploads are retried: the uploader treats this as delivered.
      return refuse('RECEIPT_REPLAYED', `receipt (epoch ${b.epoch}, serial ${b.serial}) already accepted`);
    }

    // SPEC §8.4 intake limits: once the pair is at its limit every further record of it is refused
    // before its signatures are checked, one under a serial already accepted too (an exact copy was
    // answered RECEIPT_REPLAYED above).
    const pairKey = `${b.epoch}:${initiator}${responder}`;
    const held = this.perPair.get(pairKey) ?? 0;
    if (held >= MAX_RECEIPTS_PER_PAIR_EPOCH) {
      return refuse('RECEIPT_TOO_MANY', `at most ${MAX_RECEIPTS_PER_PAIR_EPOCH} receipts per relay pair and epoch are accepted`);
    }

    if (!verifyInitiatorSignature(r)) return refuse('RECEIPT_BAD_SIGNATURE', 'the initiator signature does not verify');
    if (!verifyResponderSignature(r)) return refuse('RECEIPT_BAD_SIGNATURE', 'the responder signature does not verify');
    if (prior) {
      // Two different receipts, both validly signed, under one (epoch, pair, serial): the first stands.
      // Only the pair's own two keys can sign one, so it counts towards the pair's limit: otherwise
      // two relays could make the authority check signatures without end by re-signing one serial.
      this.perPair.set(pairKey, held + 1);
      return refuse('RECEIPT_CONFLICT', `another receipt with serial ${b.serial} for this pair and epoch was already accepted`);
    }

    const accepted = {
      ...r,
      pair: { initiator: who[0], responder: who[1], cellsI2R: b.cellsI2R, cellsR2I: b.cellsR2I },
    } as AcceptedReceipt;
    let m = this.seen.get(b.epoch);
    if (!m) this.seen.set(b.epoch, (m = new Map()));
    m.set(key, accepted);
    this.perPair.set(pairKey, (this.perPair.get(pairKey) ?? 0) + 1);
    return { ok: true, receipt: accepted };
  }

  /**
   * Undo the acceptance of `r` (SPEC.md §8.4 "Persistence": the authority could not save it, so the
   * upload is answered 503 and the uploader sends it again, which must then be accepted, not
   * refused as a replay). A receipt not held (or a different one under its key) is left alone.
   */
  forget(r: AcceptedReceipt): void {
    const b = r.body;
    const initiator = b.initiator.toString('hex'), responder = b.responder.toString('hex');
    const m = this.seen.get(b.epoch);
    const key = `${initiator}${responder}${b.serial}`;
    if (m?.get(key) !== r) return;
    m.delete(key);
    const pairKey = `${b.epoch}:${initiator}${responder}`;
    const n = (this.perPair.get(pairKey) ?? 0) - 1;
    if (n > 0) this.perPair.set(pairKey, n); else this.perPair.delete(pairKey);
  }

  /** Accepts each record of an upload on its own; the upload as a whole never fails for one bad receipt. */
  acceptAll(receipts: readonly (Receipt | Uint8Array)[], now: number): { accepted: number; refused: { index: number; code: ReceiptRefusalCode; reason: string }[] } {
    let accepted = 0;
    const refused: { index: number; code: ReceiptRefusalCode; reason: string }[] = [];
    receipts.forEach((r, index) => {
      const res = this.accept(r, now);
      if (res.ok) accepted++;
      else refused.push({ index, code: res.code, reason: res.reason });
    });
    return { accepted, refused };
  }

  /** Every receipt accepted for `epoch`, in acceptance order. */
  accepted(epoch: number): AcceptedReceipt[] {
    return [...(this.seen.get(epoch)?.values() ?? [])];
  }

  /** The pair counts of `epoch`, the input of `measure` (SPEC §8.5). */
  pairs(epoch: number): PairCounts[] {
    return this.accepted(epoch).map((a) => a.pair);
  }

  epochs(): number[] {
    return [...this.seen.keys()].sort((a, b) => a - b);
  }

  /**
   * Forget epochs whose upload window has closed at `now` (their receipts would be refused as
   * RECEIPT_OUTSIDE_WINDOW anyway, so the dedupe set need not hold them). Returns the epochs dropped.
   */
  prune(now: number): number[] {
    const dropped: number[] = [];
    for (const e of this.seen.keys()) {
      const w = this.opts.window(e);
      if (!w || now >= w.closes) { this.seen.delete(e); dropped.push(e); }
    }
    if (dropped.length) {
      const gone = new Set(dropped.map(String));
      for (const k of this.perPair.keys()) if (gone.has(k.slice(0, k.indexOf(':')))) this.perPair.delete(k);
    }
    return dropped;
  }
}
