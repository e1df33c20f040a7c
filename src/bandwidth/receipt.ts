// SPEC.md §8.2–8.3: signing and checking bandwidth receipts.
// A receipt is what two relays sign about one link at an epoch boundary; the cells that carry it
// (RECEIPT_PROPOSE / RECEIPT_COUNTERSIGN / RECEIPT_REJECT, src/wire/cell.ts) are link-level, circId 0.
// The byte layouts are declared once in src/wire/receipt.ts (re-exported here for callers).
import { err } from '../errors';
import { constantTimeEqual, ed25519Sign, ed25519Verify, isAllZero, type Ed25519KeyPair } from '../crypto/primitives';
import { MAX_SAFE_U64 } from '../wire/bytes';
import {
  RECEIPT_BODY_LEN, decodeReceipt, encodeReceiptBody,
  type Receipt, type ReceiptBody, type ReceiptProposal, type ReceiptReject, type RejectReasonName,
} from '../wire/receipt';

export {
  RECEIPT_BODY_LEN, RECEIPT_LEN, RECEIPT_PROPOSAL_LEN, RECEIPT_REJECT_LEN, RejectReason, rejectReasonName,
  decodeReceipt, decodeReceiptBatch, decodeReceiptBody, decodeReceiptCountersign, decodeReceiptProposal, decodeReceiptReject,
  encodeReceipt, encodeReceiptBatch, encodeReceiptBody, encodeReceiptCountersign, encodeReceiptProposal, encodeReceiptReject,
  type Receipt, type ReceiptBody, type ReceiptProposal, type ReceiptReject, type RejectReasonName,
} from '../wire/receipt';

/** SPEC §8.2: the signed bytes are DOMAIN_<role> | body, so a signature made in one role never verifies in the other. */
export const RECEIPT_DOMAIN_INITIATOR = Buffer.from('bitcloud receipt v1 initiator\0', 'ascii');
export const RECEIPT_DOMAIN_RESPONDER = Buffer.from('bitcloud receipt v1 responder\0', 'ascii');

/** SPEC §8.3: cells that may be in flight on one circuit (the circuit window, SPEC.md §7.4). */
export const CIRCUIT_WINDOW_CELLS = 1000;
/**
 * SPEC §8.3: the in-flight slack of one link is capped at this many circuit windows, whatever the
 * number of circuits (about what a link's write buffer, 16 MiB, holds: 32 × 1000 cells × 514 bytes).
 */
export const MAX_SLACK_CIRCUITS = 32;

/** SPEC §0: u64 fields of a receipt must not exceed 2^53 − 1 (they are exact JS numbers). */
export const MAX_U64_SAFE = MAX_SAFE_U64;

function checkU64(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw err('RECEIPT_MALFORMED', `${name} must be an integer in [0, 2^53-1], got ${v}`);
}

// ---- signing and checking ----

/** SPEC §8.2: the initiator signs DOMAIN_INITIATOR | body. Throws RECEIPT_WRONG_KEY unless the key pair is the body's initiator. */
export function signReceipt(body: ReceiptBody, identity: Ed25519KeyPair): ReceiptProposal {
  const bodyBytes = encodeReceiptBody(body);
  if (!constantTimeEqual(identity.publicKey, body.initiator)) throw err('RECEIPT_WRONG_KEY', 'only the initiator signs a proposal');
  return {
    body: { ...body, initiator: Buffer.from(body.initiator), responder: Buffer.from(body.responder) },
    bodyBytes,
    initiatorSignature: ed25519Sign(Buffer.concat([RECEIPT_DOMAIN_INITIATOR, bodyBytes]), identity.secretKey),
  };
}

// The signed message of each role, assembled in a reused buffer: an authority verifies receipts by
// the hundred thousand (synchronous use only; nothing keeps a reference to these).
const SIGNED_INITIATOR = Buffer.alloc(RECEIPT_DOMAIN_INITIATOR.length + RECEIPT_BODY_LEN);
RECEIPT_DOMAIN_INITIATOR.copy(SIGNED_INITIATOR);
const SIGNED_RESPONDER = Buffer.alloc(RECEIPT_DOMAIN_RESPONDER.length + RECEIPT_BODY_LEN);
RECEIPT_DOMAIN_RESPONDER.copy(SIGNED_RESPONDER);

function signedBytes(scratch: Buffer, domainLen: number, bodyBytes: Buffer): Buffer | undefined {
  if (bodyBytes.length !== RECEIPT_BODY_LEN) return undefined;
  bodyBytes.copy(scratch, domainLen);
  return scratch;
}

export function verifyInitiatorSignature(p: ReceiptProposal): boolean {
  const msg = signedBytes(SIGNED_INITIATOR, RECEIPT_DOMAIN_INITIATOR.length, p.bodyBytes);
  return msg !== undefined && ed25519Verify(p.initiatorSignature, msg, p.body.initiator);
}

export function verifyResponderSignature(r: Receipt): boolean {
  if (isAllZero(r.responderSignature)) return false;
  const msg = signedBytes(SIGNED_RESPONDER, RECEIPT_DOMAIN_RESPONDER.length, r.bodyBytes);
  return msg !== undefined && ed25519Verify(r.responderSignature, msg, r.body.responder);
}

/** True when both signatures verify over the exact body bytes held. Never throws. */
export function verifyReceipt(r: Receipt): boolean {
  if (r.bodyBytes.length !== RECEIPT_BODY_LEN) return false;
  return verifyInitiatorSignature(r) && verifyResponderSignature(r);
}

/** SPEC §8.3: the in-flight tolerance, per direction, for a segment on which `circuits` circuits were open. */
export function inFlightTolerance(circuits: number): number {
  if (!Number.isSafeInteger(circuits) || circuits < 0) throw err('RECEIPT_MALFORMED', `circuit count must be a non-negative integer, got ${circuits}`);
  return Math.min(circuits, MAX_SLACK_CIRCUITS) * CIRCUIT_WINDOW_CELLS;
}

/**
 * SPEC §8.3 check 5 (the link backlog bound): the most a responder signs for r→i above its own
 * count of the segment: never more than the tolerance, never more than it wrote in the previous
 * segment (`prevSent`), and never more than it wrote in all earlier segments and has not yet
 * signed for (`writtenBefore − signedBefore`), so that over a link's life it never signs more r→i
 * cells than it wrote. The responder (link-receipts.ts) and the simulator of §8.8 both call it.
 */
export function r2iExcessAllowed(tolerance: number, prevSent: number, writtenBefore: number, signedBefore: number): number {
  return Math.max(0, Math.min(tolerance, prevSent, writtenBefore - signedBefore));
}

/** The responder's own view of the segment, oriented like the body (its received = i→r, its sent = r→i). */
export interface ResponderCounts {
  cellsI2R: number;
  cellsR2I: number;
  /**
   * SPEC §8.3 check 5: the most the proposal's cells_i2r may exceed the responder's own count
   * (0 on a link: the i→r boundary is exact). Defaults to the tolerance.
   */
  maxExcessI2R?: number;
  /**
   * The most the proposal's cells_r2i may exceed the responder's own count: cells it wrote in the
   * previous segment that were still in flight at its boundary, so at most those. Defaults to the tolerance.
   */
  maxExcessR2I?: number;
}

export interface CountersignExpect {
  /** The identity the link authenticated for the peer; the proposal's initiator must be it. */
  initiator?: Uint8Array;
  /** Whether the responder accepts a proposal for this epoch (SPEC §8.3: the current or the previous one). */
  epochAccepted?: (epoch: number) => boolean;
  /**
   * SPEC §8.3 step 13: whether the responder would keep one more receipt of this peer for this
   * epoch (else REJECT `TOO_MANY`, before the signature is checked).
   */
  admit?: (body: ReceiptBody) => boolean;
}

export type CountersignResult = { ok: true; receipt: Receipt } | { ok: false; reject: ReceiptReject };

/**
 * SPEC §8.3: the responder's decision. It countersigns the initiator's body unchanged when the
 * proposal is for this link and an accepted epoch, the initiator's signature holds, and each
 * count is within `tolerance` cells of its own; otherwise it answers with a reject carrying its counts.
 * `tolerance` is normally `inFlightTolerance(circuits open on the link during the segment)`.
 */
export function countersign(
  proposal: ReceiptProposal, mine: ResponderCounts, myKeyPair: Ed25519KeyPair, tolerance: number, expect: CountersignExpect = {},
): CountersignResult {
  checkU64('tolerance', tolerance);
  const b = proposal.body;
  const reject = (reason: RejectReasonName): CountersignResult => ({
    ok: false,
    reject: { epoch: b.epoch, serial: b.serial, reason, cellsI2R: mine.cellsI2R, cellsR2I: mine.cellsR2I, tolerance },
  });
  if (!constantTimeEqual(b.responder, myKeyPair.publicKey)) return reject('WRONG_IDENTITY');
  if (expect.initiator && !constantTimeEqual(b.initiator, expect.initiator)) return reject('WRONG_IDENTITY');
  if (expect.epochAccepted && !expect.epochAccepted(b.epoch)) return reject('EPOCH_NOT_ACCEPTED');
  // SPEC §8.3 step 2 check 3 and step 13: refused before any signature work, nothing kept.
  if (b.cellsI2R === 0 && b.cellsR2I === 0) return reject('EMPTY');
  if (expect.admit && !expect.admit(b)) return reject('TOO_MANY');
  if (!verifyInitiatorSignature(proposal)) return reject('BAD_SIGNATURE');
  // Never more than the responder counted plus what can really have been in flight (SPEC §8.3
  // check 5); an under-count is bounded by the tolerance (it cheats the responder).
  const overI2R = Math.min(tolerance, mine.maxExcessI2R ?? tolerance);
  const overR2I = Math.min(tolerance, mine.maxExcessR2I ?? tolerance);
  if (b.cellsI2R - mine.cellsI2R > overI2R || b.cellsR2I - mine.cellsR2I > overR2I
    || mine.cellsI2R - b.cellsI2R > tolerance || mine.cellsR2I - b.cellsR2I > tolerance) {
    return reject('COUNTS_MISMATCH');
  }
  const responderSignature = ed25519Sign(Buffer.concat([RECEIPT_DOMAIN_RESPONDER, proposal.bodyBytes]), myKeyPair.secretKey);
  return { ok: true, receipt: { body: proposal.body, bodyBytes: proposal.bodyBytes, initiatorSignature: proposal.initiatorSignature, responderSignature } };
}

/**
 * SPEC §8.3 step 3: the initiator's check of a RECEIPT_COUNTERSIGN payload against the proposal it
 * sent. Returns the receipt to keep and upload. Throws RECEIPT_MALFORMED (does not parse),
 * RECEIPT_MISMATCH (not the body or initiator signature that was proposed) or RECEIPT_BAD_SIGNATURE.
 */
export function acceptCountersign(sent: ReceiptProposal, payload: Uint8Array): Receipt {
  const r = decodeReceipt(payload);
  if (!r.bodyBytes.equals(sent.bodyBytes) || !r.initiatorSignature.equals(sent.initiatorSignature)) {
    throw err('RECEIPT_MISMATCH', 'the countersigned receipt is not the one proposed');
  }
  if (!verifyResponderSignature(r)) throw err('RECEIPT_BAD_SIGNATURE', 'the responder signature does not verify');
  return r;
}

/** Lowercase hex fingerprints of the two ends (SPEC §0). */
export function receiptFingerprints(body: ReceiptBody): { initiator: string; responder: string } {
  return { initiator: body.initiator.toString('hex'), responder: body.responder.toString('hex') };
}
