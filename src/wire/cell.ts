// SPEC.md §2 (cells): the one declaration of the fixed cell layout and the cell command numbers.
// Every cell on a link is exactly CELL_LEN bytes: circId (u32 BE) | command (u8) | payload (509).
import { err } from '../errors';
import { Reader, Writer } from './bytes';

export const CELL_LEN = 514;
export const CIRCID_LEN = 4;
export const CELL_HEADER_LEN = 5;
export const CELL_PAYLOAD_LEN = CELL_LEN - CELL_HEADER_LEN; // 509
/** Circuit ids chosen by the link initiator have this bit set; the responder's never do. */
export const CIRCID_INITIATOR_BIT = 0x8000_0000;
/** Link protocol versions this implementation speaks (SPEC.md §2.3, VERSIONS). */
export const LINK_PROTOCOL_VERSIONS: readonly number[] = [1];

/** Cell commands (SPEC.md §2.2). Numbers follow Tor where the meaning is Tor's. */
export const CellCommand = {
  PADDING: 0,
  RELAY: 3,
  DESTROY: 4,
  VERSIONS: 7,
  RELAY_EARLY: 9,
  CREATE2: 10,
  CREATED2: 11,
  /** Link identity binding (SPEC.md §1.3). */
  AUTHENTICATE: 131,
  /** Proof of bandwidth, link level (SPEC.md §8.2.3). */
  RECEIPT_PROPOSE: 140,
  RECEIPT_COUNTERSIGN: 141,
  RECEIPT_REJECT: 142,
  /** The link responder asks the initiator to propose now: it is closing the link (SPEC.md §8.2.3, §8.3). */
  RECEIPT_REQUEST: 143,
} as const;
export type CellCommandName = keyof typeof CellCommand;
export type CellCommandValue = (typeof CellCommand)[CellCommandName];

const KNOWN_COMMANDS = new Set<number>(Object.values(CellCommand));
const COMMAND_NAMES = new Map<number, CellCommandName>(
  (Object.entries(CellCommand) as [CellCommandName, number][]).map(([k, v]) => [v, k]),
);

/** Commands that are link-level and must carry circId 0. */
const LINK_LEVEL = new Set<number>([
  CellCommand.PADDING, CellCommand.VERSIONS, CellCommand.AUTHENTICATE,
  CellCommand.RECEIPT_PROPOSE, CellCommand.RECEIPT_COUNTERSIGN, CellCommand.RECEIPT_REJECT, CellCommand.RECEIPT_REQUEST,
]);

export function isKnownCellCommand(cmd: number): cmd is CellCommandValue {
  return KNOWN_COMMANDS.has(cmd);
}
export function cellCommandName(cmd: number): string {
  return COMMAND_NAMES.get(cmd) ?? `UNKNOWN(${cmd})`;
}
export function isLinkLevelCommand(cmd: number): boolean {
  return LINK_LEVEL.has(cmd);
}
/**
 * SPEC.md §2.1 (tor-spec 5.1.1): a circuit id chosen by the link initiator has the high bit set;
 * one chosen by the responder has it clear and is never 0 (0 is the link itself). The codec
 * cannot know which side created a circuit, so the link checks the side with these helpers.
 */
export function isInitiatorCircId(circId: number): boolean {
  return Number.isInteger(circId) && circId >= CIRCID_INITIATOR_BIT && circId <= 0xffff_ffff;
}
export function isResponderCircId(circId: number): boolean {
  return Number.isInteger(circId) && circId > 0 && circId < CIRCID_INITIATOR_BIT;
}

export interface Cell {
  circId: number;
  command: CellCommandValue;
  /** Exactly CELL_PAYLOAD_LEN bytes. May be a view into a larger buffer. */
  payload: Buffer;
}

/**
 * Encode a cell into `out` at `offset` (no allocation: the hot path). `payload` may be
 * shorter than 509 bytes; the rest is zero-filled.
 */
export function encodeCellInto(out: Buffer, offset: number, circId: number, command: number, payload: Uint8Array): void {
  // Checked first so that no Buffer write can raise a RangeError (only BitcloudError leaves here).
  if (!Number.isInteger(offset) || offset < 0 || out.length - offset < CELL_LEN) {
    throw err('CELL_TRUNCATED', `no room for a ${CELL_LEN}-byte cell at offset ${offset} of ${out.length}`);
  }
  if (!Number.isInteger(circId) || circId < 0 || circId > 0xffff_ffff) throw err('CELL_MALFORMED', `circuit id out of range: ${circId}`);
  if (!isKnownCellCommand(command)) throw err('CELL_UNKNOWN_COMMAND', `unknown cell command ${command}`);
  if (payload.length > CELL_PAYLOAD_LEN) throw err('CELL_MALFORMED', `payload of ${payload.length} bytes exceeds ${CELL_PAYLOAD_LEN}`);
  if (isLinkLevelCommand(command) ? circId !== 0 : circId === 0) {
    throw err('CELL_MALFORMED', `${cellCommandName(command)} cell with circuit id ${circId}`);
  }
  out.writeUInt32BE(circId, offset);
  out[offset + 4] = command;
  out.set(payload, offset + CELL_HEADER_LEN);
  if (payload.length < CELL_PAYLOAD_LEN) out.fill(0, offset + CELL_HEADER_LEN + payload.length, offset + CELL_LEN);
}

export function encodeCell(circId: number, command: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(CELL_LEN);
  encodeCellInto(out, 0, circId, command, payload);
  return out;
}

/**
 * Decode the cell at `buf[offset .. offset+514)`. The payload is a view (no copy).
 * Throws CELL_TRUNCATED, CELL_UNKNOWN_COMMAND or CELL_MALFORMED; nothing else.
 */
export function decodeCell(buf: Buffer, offset = 0): Cell {
  if (!Number.isInteger(offset) || offset < 0) throw err('CELL_TRUNCATED', `bad offset ${offset}`);
  if (buf.length - offset < CELL_LEN) throw err('CELL_TRUNCATED', `need ${CELL_LEN} bytes, have ${Math.max(0, buf.length - offset)}`);
  const circId = buf.readUInt32BE(offset);
  const command = buf[offset + 4];
  if (!isKnownCellCommand(command)) throw err('CELL_UNKNOWN_COMMAND', `unknown cell command ${command}`);
  if (isLinkLevelCommand(command) ? circId !== 0 : circId === 0) {
    throw err('CELL_MALFORMED', `${cellCommandName(command)} cell with circuit id ${circId}`);
  }
  return { circId, command, payload: buf.subarray(offset + CELL_HEADER_LEN, offset + CELL_LEN) };
}

/** SPEC.md §8.2.3: RECEIPT_REQUEST payload = epoch u64 | reason u8; the rest of the 509 bytes is zero. */
export const RECEIPT_REQUEST_LEN = 8 + 1; // 8 epoch + 1 reason = 9
/** RECEIPT_REQUEST reasons (SPEC.md §8.2.3). Any other value is RECEIPT_MALFORMED. */
export const ReceiptRequestReason = { CLOSING: 1 } as const;
export type ReceiptRequestReasonName = keyof typeof ReceiptRequestReason;

export interface ReceiptRequest {
  /** The responder's current epoch when it asked (informative: the initiator proposes for its own). */
  epoch: number;
  reason: ReceiptRequestReasonName;
}

const RECEIPT_CODES = { truncated: 'RECEIPT_MALFORMED', malformed: 'RECEIPT_MALFORMED' } as const;

export function encodeReceiptRequest(r: ReceiptRequest): Buffer {
  const code = ReceiptRequestReason[r.reason];
  const w = new Writer(RECEIPT_REQUEST_LEN, 'RECEIPT_REQUEST', RECEIPT_CODES).u64(r.epoch, 'epoch');
  if (code === undefined) throw err('RECEIPT_MALFORMED', `unknown RECEIPT_REQUEST reason ${String(r.reason)}`);
  return w.u8(code, 'reason').finish();
}

/**
 * Decode a RECEIPT_REQUEST payload (bytes after the first 9 are ignored). Throws RECEIPT_MALFORMED
 * (too short, epoch above 2^53 − 1 like every receipt u64, unknown reason) and nothing else.
 */
export function decodeReceiptRequest(payload: Uint8Array): ReceiptRequest {
  if (payload.length < RECEIPT_REQUEST_LEN) throw err('RECEIPT_MALFORMED', `RECEIPT_REQUEST needs ${RECEIPT_REQUEST_LEN} bytes, got ${payload.length}`);
  const r = new Reader(payload, 'RECEIPT_REQUEST', RECEIPT_CODES);
  const epoch = r.u64('epoch');
  const code = r.u8('reason');
  if (code !== ReceiptRequestReason.CLOSING) throw err('RECEIPT_MALFORMED', `unknown RECEIPT_REQUEST reason ${code}`);
  return { epoch, reason: 'CLOSING' };
}
