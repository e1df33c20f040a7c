// SPEC.md §8.2–8.4: the byte layouts of the bandwidth receipt, declared
// once: the body, the RECEIPT_PROPOSE and RECEIPT_COUNTERSIGN payloads (cells 140, 141), the upload
// record and batch, and the RECEIPT_REJECT payload (cell 142). Signing and checking are in
// src/bandwidth/receipt.ts. Every error here is RECEIPT_MALFORMED.
import { err } from '../errors';
import { ED25519_PUBLIC_BYTES, ED25519_SIGNATURE_BYTES, constantTimeEqual } from '../crypto/primitives';
import { Reader, Writer, type CodecCodes } from './bytes';
import { CELL_PAYLOAD_LEN } from './cell';

const CODES: CodecCodes = { truncated: 'RECEIPT_MALFORMED', malformed: 'RECEIPT_MALFORMED' };

// ---- layouts (all integers big-endian) ----

/** Body: epoch u64 | initiator [32] | responder [32] | cells i→r u64 | cells r→i u64 | serial u64. */
export const RECEIPT_OFF_EPOCH = 0;
export const RECEIPT_OFF_INITIATOR = 8; // 8 epoch
export const RECEIPT_OFF_RESPONDER = RECEIPT_OFF_INITIATOR + ED25519_PUBLIC_BYTES; // 8 + 32 initiator = 40
export const RECEIPT_OFF_I2R = RECEIPT_OFF_RESPONDER + ED25519_PUBLIC_BYTES; // 40 + 32 responder = 72
export const RECEIPT_OFF_R2I = RECEIPT_OFF_I2R + 8; // 72 + 8 cells i→r = 80
export const RECEIPT_OFF_SERIAL = RECEIPT_OFF_R2I + 8; // 80 + 8 cells r→i = 88
export const RECEIPT_BODY_LEN = RECEIPT_OFF_SERIAL + 8; // 88 + 8 serial = 96
/** PROPOSE payload: body | initiator signature. */
export const RECEIPT_PROPOSAL_LEN = RECEIPT_BODY_LEN + ED25519_SIGNATURE_BYTES; // 96 body + 64 signature = 160
/** COUNTERSIGN payload, and the upload record: body | initiator signature | responder signature. */
export const RECEIPT_LEN = RECEIPT_PROPOSAL_LEN + ED25519_SIGNATURE_BYTES; // 160 proposal + 64 signature = 224

/** REJECT payload: epoch u64 | serial u64 | reason u8 | responder's cells i→r u64 | cells r→i u64 | tolerance u64. */
export const REJECT_OFF_EPOCH = 0;
export const REJECT_OFF_SERIAL = 8; // 8 epoch
export const REJECT_OFF_REASON = REJECT_OFF_SERIAL + 8; // 8 + 8 serial = 16
export const REJECT_OFF_I2R = REJECT_OFF_REASON + 1; // 16 + 1 reason = 17
export const REJECT_OFF_R2I = REJECT_OFF_I2R + 8; // 17 + 8 cells i→r = 25
export const REJECT_OFF_TOLERANCE = REJECT_OFF_R2I + 8; // 25 + 8 cells r→i = 33
export const RECEIPT_REJECT_LEN = REJECT_OFF_TOLERANCE + 8; // 33 + 8 tolerance = 41

export interface ReceiptBody {
  /** Consensus period number (SPEC §8, introduction: the epoch). */
  epoch: number;
  /** Ed25519 identity key (32 bytes) of the relay that opened the link. */
  initiator: Buffer;
  /** Ed25519 identity key (32 bytes) of the relay that accepted the link. */
  responder: Buffer;
  /** Counted cells the initiator sent to the responder in this segment. */
  cellsI2R: number;
  /** Counted cells the responder sent to the initiator in this segment. */
  cellsR2I: number;
  /** Unique per (epoch, initiator, responder), chosen by the initiator. */
  serial: number;
}

export interface ReceiptProposal {
  readonly body: ReceiptBody;
  /** The exact 96 body bytes that were (or will be) signed; never re-encoded to verify. */
  readonly bodyBytes: Buffer;
  readonly initiatorSignature: Buffer;
}

/** A countersigned receipt. `verifyReceipt` (src/bandwidth/receipt.ts) says whether both signatures hold. */
export interface Receipt extends ReceiptProposal {
  readonly responderSignature: Buffer;
}

/** SPEC §8.3 reason codes carried by RECEIPT_REJECT. */
export const RejectReason = {
  COUNTS_MISMATCH: 1,
  BAD_SIGNATURE: 2,
  WRONG_IDENTITY: 3,
  EPOCH_NOT_ACCEPTED: 4,
  MALFORMED: 5,
  /** Both counts are 0: nothing to prove (a conforming initiator never proposes it, SPEC §8.3 step 1). */
  EMPTY: 6,
  /** The responder keeps no more receipts of this peer this epoch (SPEC §8.3 step 13). */
  TOO_MANY: 7,
} as const;
export type RejectReasonName = keyof typeof RejectReason;
const REASON_NAMES = new Map<number, RejectReasonName>(
  (Object.entries(RejectReason) as [RejectReasonName, number][]).map(([k, v]) => [v, k]),
);
export function rejectReasonName(code: number): string {
  return REASON_NAMES.get(code) ?? `UNKNOWN(${code})`;
}

export interface ReceiptReject {
  epoch: number;
  serial: number;
  reason: RejectReasonName;
  /** The responder's own counts for the same segment, oriented like the body. */
  cellsI2R: number;
  cellsR2I: number;
  /** The tolerance the responder applied (cells per direction). */
  tolerance: number;
}

// ---- checks ----

function checkId(name: string, v: Uint8Array): void {
  if (!(v instanceof Uint8Array) || v.length !== ED25519_PUBLIC_BYTES) throw err('RECEIPT_MALFORMED', `${name} must be a 32-byte identity key`);
}

function need(buf: Uint8Array, len: number, what: string): void {
  if (!(buf instanceof Uint8Array) || buf.length < len) {
    throw err('RECEIPT_MALFORMED', `${what} needs ${len} bytes, have ${buf instanceof Uint8Array ? buf.length : 0}`);
  }
}

function checkPayloadSize(payload: Uint8Array): void {
  if (payload.length > CELL_PAYLOAD_LEN) throw err('RECEIPT_MALFORMED', `payload of ${payload.length} bytes exceeds a cell payload`);
}

function copy(buf: Uint8Array, start: number, end: number): Buffer {
  return Buffer.from(buf.subarray(start, end));
}

// ---- body ----

export function encodeReceiptBody(body: ReceiptBody): Buffer {
  checkId('initiator', body.initiator);
  checkId('responder', body.responder);
  const w = new Writer(RECEIPT_BODY_LEN, 'receipt body', CODES)
    .u64(body.epoch, 'epoch')
    .bytes(body.initiator)
    .bytes(body.responder)
    .u64(body.cellsI2R, 'cellsI2R')
    .u64(body.cellsR2I, 'cellsR2I')
    .u64(body.serial, 'serial');
  if (constantTimeEqual(body.initiator, body.responder)) throw err('RECEIPT_MALFORMED', 'a receipt between a relay and itself');
  return w.finish();
}

/** Decodes the 96 body bytes at the start of `buf`. Throws RECEIPT_MALFORMED only. */
export function decodeReceiptBody(buf: Uint8Array): ReceiptBody {
  need(buf, RECEIPT_BODY_LEN, 'receipt body');
  const r = new Reader(buf, 'receipt body', CODES);
  const epoch = r.u64('epoch');
  const initiator = r.bytes(ED25519_PUBLIC_BYTES, 'initiator');
  const responder = r.bytes(ED25519_PUBLIC_BYTES, 'responder');
  if (initiator.equals(responder)) throw err('RECEIPT_MALFORMED', 'a receipt between a relay and itself');
  const cellsI2R = r.u64('cellsI2R');
  const cellsR2I = r.u64('cellsR2I');
  const serial = r.u64('serial');
  return { epoch, initiator, responder, cellsI2R, cellsR2I, serial };
}

// ---- PROPOSE (cell 140) ----

export function encodeReceiptProposal(p: ReceiptProposal): Buffer {
  if (p.bodyBytes.length !== RECEIPT_BODY_LEN) throw err('RECEIPT_MALFORMED', 'body bytes must be 96 bytes');
  if (p.initiatorSignature.length !== ED25519_SIGNATURE_BYTES) throw err('RECEIPT_MALFORMED', 'initiator signature must be 64 bytes');
  return Buffer.concat([p.bodyBytes, p.initiatorSignature]);
}

/**
 * Decodes a RECEIPT_PROPOSE payload (the 509-byte cell payload or exactly 160 bytes; bytes after
 * the 160th are padding and ignored). Throws RECEIPT_MALFORMED only. The signature is NOT checked here.
 */
export function decodeReceiptProposal(payload: Uint8Array): ReceiptProposal {
  need(payload, RECEIPT_PROPOSAL_LEN, 'RECEIPT_PROPOSE payload');
  checkPayloadSize(payload);
  const body = decodeReceiptBody(payload);
  return {
    body,
    bodyBytes: copy(payload, 0, RECEIPT_BODY_LEN),
    initiatorSignature: copy(payload, RECEIPT_BODY_LEN, RECEIPT_PROPOSAL_LEN),
  };
}

// ---- COUNTERSIGN (cell 141) and the upload record ----

export function encodeReceipt(r: Receipt): Buffer {
  if (r.responderSignature.length !== ED25519_SIGNATURE_BYTES) throw err('RECEIPT_MALFORMED', 'responder signature must be 64 bytes');
  return Buffer.concat([encodeReceiptProposal(r), r.responderSignature]);
}
/** The RECEIPT_COUNTERSIGN payload is exactly the receipt record. */
export const encodeReceiptCountersign = encodeReceipt;

/** Decodes a 224-byte receipt record (or a longer cell payload). Throws RECEIPT_MALFORMED only; signatures unchecked. */
export function decodeReceipt(payload: Uint8Array): Receipt {
  need(payload, RECEIPT_LEN, 'receipt');
  checkPayloadSize(payload);
  const p = decodeReceiptProposal(payload);
  return { ...p, responderSignature: copy(payload, RECEIPT_PROPOSAL_LEN, RECEIPT_LEN) };
}
export const decodeReceiptCountersign = decodeReceipt;

/** SPEC §8.4 upload body: N receipt records back to back (N ≥ 1). */
export function encodeReceiptBatch(receipts: readonly Receipt[]): Buffer {
  return Buffer.concat(receipts.map(encodeReceipt));
}

/** Throws RECEIPT_MALFORMED when the length is not a positive multiple of 224 or above `maxCount` records. */
export function decodeReceiptBatch(bytes: Uint8Array, maxCount = 100_000): Receipt[] {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length % RECEIPT_LEN !== 0) {
    throw err('RECEIPT_MALFORMED', `a receipt batch is a positive multiple of ${RECEIPT_LEN} bytes`);
  }
  const n = bytes.length / RECEIPT_LEN;
  if (n > maxCount) throw err('RECEIPT_MALFORMED', `batch of ${n} receipts exceeds ${maxCount}`);
  const out: Receipt[] = [];
  for (let i = 0; i < n; i++) out.push(decodeReceipt(bytes.subarray(i * RECEIPT_LEN, (i + 1) * RECEIPT_LEN)));
  return out;
}

// ---- REJECT (cell 142) ----

export function encodeReceiptReject(r: ReceiptReject): Buffer {
  const code = RejectReason[r.reason];
  if (code === undefined) throw err('RECEIPT_MALFORMED', `unknown reject reason ${String(r.reason)}`);
  return new Writer(RECEIPT_REJECT_LEN, 'RECEIPT_REJECT payload', CODES)
    .u64(r.epoch, 'epoch')
    .u64(r.serial, 'serial')
    .u8(code, 'reason')
    .u64(r.cellsI2R, 'cellsI2R')
    .u64(r.cellsR2I, 'cellsR2I')
    .u64(r.tolerance, 'tolerance')
    .finish();
}

export function decodeReceiptReject(payload: Uint8Array): ReceiptReject {
  need(payload, RECEIPT_REJECT_LEN, 'RECEIPT_REJECT payload');
  checkPayloadSize(payload);
  const r = new Reader(payload, 'RECEIPT_REJECT payload', CODES);
  const epoch = r.u64('epoch');
  const serial = r.u64('serial');
  const code = r.u8('reason');
  const reason = REASON_NAMES.get(code);
  if (reason === undefined) throw err('RECEIPT_MALFORMED', `unknown reject reason ${code}`);
  return { epoch, serial, reason, cellsI2R: r.u64('cellsI2R'), cellsR2I: r.u64('cellsR2I'), tolerance: r.u64('tolerance') };
}
