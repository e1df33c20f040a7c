// SPEC.md §8.2: the bandwidth receipt, declared once.
// A receipt is what two relays sign about one link at an epoch boundary; the cells that carry it
// (RECEIPT_PROPOSE / RECEIPT_COUNTERSIGN / RECEIPT_REJECT, src/wire/cell.ts) are link-level, circId 0.
// Everything that knows a byte offset of a receipt is in this file.
import { err } from '../errors';
import {
  ED25519_PUBLIC_BYTES, ED25519_SIGNATURE_BYTES, constantTimeEqual, ed25519Sign, ed25519Verify, isAllZero,
  type Ed25519KeyPair,
} from '../crypto/primitives';
import { CELL_PAYLOAD_LEN } from '../wire/cell';

/** SPEC §8.2: the signed bytes are DOMAIN_<role> | body, so a signature made in one role never verifies in the other. */
export const RECEIPT_DOMAIN_INITIATOR = Buffer.from('bitcloud receipt v1 initiator\0', 'ascii');
export const RECEIPT_DOMAIN_RESPONDER = Buffer.from('bitcloud receipt v1 responder\0', 'ascii');

/** SPEC §8.2 body layout: epoch u64 | initiator [32] | responder [32] | cells i→r u64 | cells r→i u64 | serial u64. */
const OFF_EPOCH = 0;
const OFF_INITIATOR = 8;
const OFF_RESPONDER = OFF_INITIATOR + ED25519_PUBLIC_BYTES; // 40
const OFF_I2R = OFF_RESPONDER + ED25519_PUBLIC_BYTES; // 72
const OFF_R2I = OFF_I2R + 8; // 80
const OFF_SERIAL = OFF_R2I + 8; // 88
export const RECEIPT_BODY_LEN = OFF_SERIAL + 8; // 96
/** PROPOSE payload: body | initiator signature. */
export const RECEIPT_PROPOSAL_LEN = RECEIPT_BODY_LEN + ED25519_SIGNATURE_BYTES; // 160
/** COUNTERSIGN payload, and the upload record: body | initiator signature | responder signature. */
export const RECEIPT_LEN = RECEIPT_PROPOSAL_LEN + ED25519_SIGNATURE_BYTES; // 224
/** REJECT payload: epoch u64 | serial u64 | reason u8 | responder's cells i→r u64 | cells r→i u64 | tolerance u64. */
export const RECEIPT_REJECT_LEN = 8 + 8 + 1 + 8 + 8 + 8; // 41

/** SPEC §8.3: cells that may be in flight on one circuit (the circuit window, SPEC.md §7.4). */
export const CIRCUIT_WINDOW_CELLS = 1000;

/** SPEC §0: u64 fields of a receipt must not exceed 2^53 − 1 (they are exact JS numbers). */
export const MAX_U64_SAFE = Number.MAX_SAFE_INTEGER;

export interface ReceiptBody {
  /** Consensus period number (SPEC §8.1). */
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

/** A countersigned receipt. `verifyReceipt` says whether both signatures hold. */
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

// ---- checked integer and identity fields (only RECEIPT_MALFORMED leaves these) ----

function checkU64(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw err('RECEIPT_MALFORMED', `${name} must be an integer in [0, 2^53-1], got ${v}`);
}

function checkId(name: string, v: Uint8Array): void {
  if (!(v instanceof Uint8Array) || v.length !== ED25519_PUBLIC_BYTES) throw err('RECEIPT_MALFORMED', `${name} must be a 32-byte identity key`);
}

function writeU64(out: Buffer, off: number, v: number): void {
  out.writeUInt32BE(Math.floor(v / 0x1_0000_0000), off);
  out.writeUInt32BE(v >>> 0, off + 4);
}

/** Reads a u64 that must fit in 2^53 − 1; the caller has checked the length. */
function readU64(buf: Uint8Array, off: number, name: string): number {
  const hi = ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
  const lo = ((buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8) | buf[off + 7]) >>> 0;
  if (hi > 0x1f_ffff) throw err('RECEIPT_MALFORMED', `${name} exceeds 2^53-1`);
  return hi * 0x1_0000_0000 + lo;
}

function need(buf: Uint8Array, len: number, what: string): void {
  if (!(buf instanceof Uint8Array) || buf.length < len) {
    throw err('RECEIPT_MALFORMED', `${what} needs ${len} bytes, have ${buf instanceof Uint8Array ? buf.length : 0}`);
  }
}

function copy(buf: Uint8Array, start: number, end: number): Buffer {
  return Buffer.from(buf.subarray(start, end));
}

// ---- body ----

export function encodeReceiptBody(body: ReceiptBody): Buffer {
  checkU64('epoch', body.epoch);
  checkId('initiator', body.initiator);
  checkId('responder', body.responder);
  checkU64('cellsI2R', body.cellsI2R);
  checkU64('cellsR2I', body.cellsR2I);
  checkU64('serial', body.serial);
  if (constantTimeEqual(body.initiator, body.responder)) throw err('RECEIPT_MALFORMED', 'a receipt between a relay and itself');
  const out = Buffer.alloc(RECEIPT_BODY_LEN);
  writeU64(out, OFF_EPOCH, body.epoch);
  out.set(body.initiator, OFF_INITIATOR);
  out.set(body.responder, OFF_RESPONDER);
  writeU64(out, OFF_I2R, body.cellsI2R);
  writeU64(out, OFF_R2I, body.cellsR2I);
  writeU64(out, OFF_SERIAL, body.serial);
  return out;
}

/** Decodes the 96 body bytes at the start of `buf`. Throws RECEIPT_MALFORMED only. */
export function decodeReceiptBody(buf: Uint8Array): ReceiptBody {
  need(buf, RECEIPT_BODY_LEN, 'receipt body');
  const initiator = copy(buf, OFF_INITIATOR, OFF_RESPONDER);
  const responder = copy(buf, OFF_RESPONDER, OFF_I2R);
  if (initiator.equals(responder)) throw err('RECEIPT_MALFORMED', 'a receipt between a relay and itself');
  return {
    epoch: readU64(buf, OFF_EPOCH, 'epoch'),
    initiator,
    responder,
    cellsI2R: readU64(buf, OFF_I2R, 'cellsI2R'),
    cellsR2I: readU64(buf, OFF_R2I, 'cellsR2I'),
    serial: readU64(buf, OFF_SERIAL, 'serial'),
  };
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

function checkPayloadSize(payload: Uint8Array): void {
  if (payload.length > CELL_PAYLOAD_LEN) throw err('RECEIPT_MALFORMED', `payload of ${payload.length} bytes exceeds a cell payload`);
}

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
  checkU64('epoch', r.epoch);
  checkU64('serial', r.serial);
  checkU64('cellsI2R', r.cellsI2R);
  checkU64('cellsR2I', r.cellsR2I);
  checkU64('tolerance', r.tolerance);
  const code = RejectReason[r.reason];
  if (code === undefined) throw err('RECEIPT_MALFORMED', `unknown reject reason ${String(r.reason)}`);
  const out = Buffer.alloc(RECEIPT_REJECT_LEN);
  writeU64(out, 0, r.epoch);
  writeU64(out, 8, r.serial);
  out[16] = code;
  writeU64(out, 17, r.cellsI2R);
  writeU64(out, 25, r.cellsR2I);
  writeU64(out, 33, r.tolerance);
  return out;
}

export function decodeReceiptReject(payload: Uint8Array): ReceiptReject {
  need(payload, RECEIPT_REJECT_LEN, 'RECEIPT_REJECT payload');
  checkPayloadSize(payload);
  const reason = REASON_NAMES.get(payload[16]);
  if (reason === undefined) throw err('RECEIPT_MALFORMED', `unknown reject reason ${payload[16]}`);
  return {
    epoch: readU64(payload, 0, 'epoch'),
    serial: readU64(payload, 8, 'serial'),
    reason,
    cellsI2R: readU64(payload, 17, 'cellsI2R'),
    cellsR2I: readU64(payload, 25, 'cellsR2I'),
    tolerance: readU64(payload, 33, 'tolerance'),
  };
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
  return circuits * CIRCUIT_WINDOW_CELLS;
}

/** The responder's own view of the segment, oriented like the body (its received = i→r, its sent = r→i). */
export interface ResponderCounts { cellsI2R: number; cellsR2I: number }

export interface CountersignExpect {
  /** The identity the link authenticated for the peer; the proposal's initiator must be it. */
  initiator?: Uint8Array;
  /** Whether the responder accepts a proposal for this epoch (SPEC §8.3: the current or the previous one). */
  epochAccepted?: (epoch: number) => boolean;
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
  if (!verifyInitiatorSignature(proposal)) return reject('BAD_SIGNATURE');
  if (Math.abs(b.cellsI2R - mine.cellsI2R) > tolerance || Math.abs(b.cellsR2I - mine.cellsR2I) > tolerance) {
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
