// SPEC.md §2.5–2.6 (tor-spec 6.1): the relay payload, i.e. the 509 bytes of a RELAY or
// RELAY_EARLY cell once every layer of relay crypto has been removed (or before it is applied).
//
//   command u8 | recognized u16 | stream id u16 | digest [4] | length u16 | data [length] | padding
//
// Padding is 4 zero bytes then random bytes (all zero when fewer than 4 bytes remain). The
// zero run lets a later cipher (CGO) find the end of the data; the random rest denies a
// hop that sees plaintext a known-plaintext crib. This module is the only place that knows
// these offsets; relay crypto uses RELAY_RECOGNIZED_OFFSET / RELAY_DIGEST_OFFSET in place.
import { err } from '../errors';
import { randomFill } from '../crypto/primitives';
import { CELL_PAYLOAD_LEN } from './cell';

/** Relay commands (SPEC.md §2.6). Tor's numbers; BEGIN_STORAGE is Bitcloud's own. */
export const RelayCommand = {
  BEGIN: 1,
  DATA: 2,
  END: 3,
  CONNECTED: 4,
  SENDME: 5,
  TRUNCATE: 8,
  TRUNCATED: 9,
  DROP: 10,
  RESOLVE: 11,
  RESOLVED: 12,
  BEGIN_DIR: 13,
  EXTEND2: 14,
  EXTENDED2: 15,
  // Hidden storage nodes (SPEC.md §9.21): Tor's onion-service numbers, Bitcloud's bodies.
  ESTABLISH_INTRO: 32,
  ESTABLISH_RENDEZVOUS: 33,
  INTRODUCE1: 34,
  INTRODUCE2: 35,
  RENDEZVOUS1: 36,
  RENDEZVOUS2: 37,
  INTRO_ESTABLISHED: 38,
  RENDEZVOUS_ESTABLISHED: 39,
  /** A storage-protocol stream to the node that ends the circuit (SPEC.md §9.13.1). */
  BEGIN_STORAGE: 40,
  INTRODUCE_ACK: 41,
  /** The capacity probe (SPEC.md §8.12): the last hop sends the body back unchanged. */
  PROBE_ECHO: 42,
} as const;
export type RelayCommandName = keyof typeof RelayCommand;
export type RelayCommandValue = (typeof RelayCommand)[RelayCommandName];

export const RELAY_COMMAND_OFFSET = 0;
export const RELAY_RECOGNIZED_OFFSET = 1;
export const RELAY_STREAM_ID_OFFSET = 3;
export const RELAY_DIGEST_OFFSET = 5;
export const RELAY_DIGEST_LEN = 4;
export const RELAY_LENGTH_OFFSET = 9;
export const RELAY_HEADER_LEN = 11;
/** 509 - 11: the most data one relay cell carries. */
export const RELAY_DATA_MAX = CELL_PAYLOAD_LEN - RELAY_HEADER_LEN; // 498
/** SPEC.md §8.12: a PROBE_ECHO body is exactly this long (a whole cell of data, echoed unchanged). */
export const PROBE_ECHO_LEN = RELAY_DATA_MAX;
/** Zero bytes that open the padding when there is room for them (tor-spec 6.1). */
export const RELAY_PADDING_ZERO_LEN = 4;

/** SPEC.md §2.6: what a command requires of the stream id. */
export type StreamIdRule = 'zero' | 'nonzero' | 'any';

// One lookup table indexed by command byte, so the per-cell checks are two array reads.
// 0 = unknown command, 1 = stream id must be 0, 2 = must be non-zero, 3 = either.
const RULE_UNKNOWN = 0, RULE_ZERO = 1, RULE_NONZERO = 2, RULE_ANY = 3;
const RULES = new Uint8Array(256);
for (const c of [RelayCommand.EXTEND2, RelayCommand.EXTENDED2, RelayCommand.TRUNCATE, RelayCommand.TRUNCATED, RelayCommand.DROP]) RULES[c] = RULE_ZERO;
for (let c: number = RelayCommand.ESTABLISH_INTRO; c <= RelayCommand.RENDEZVOUS_ESTABLISHED; c++) RULES[c] = RULE_ZERO;
RULES[RelayCommand.INTRODUCE_ACK] = RULE_ZERO;
RULES[RelayCommand.PROBE_ECHO] = RULE_ZERO;
for (const c of [RelayCommand.BEGIN, RelayCommand.DATA, RelayCommand.END, RelayCommand.CONNECTED, RelayCommand.RESOLVE,
  RelayCommand.RESOLVED, RelayCommand.BEGIN_DIR, RelayCommand.BEGIN_STORAGE]) RULES[c] = RULE_NONZERO;
// SENDME: stream id 0 acknowledges circuit-level data, non-zero acknowledges one stream (tor-spec 7.3–7.4).
RULES[RelayCommand.SENDME] = RULE_ANY;

const NAMES = new Map<number, RelayCommandName>(
  (Object.entries(RelayCommand) as [RelayCommandName, number][]).map(([k, v]) => [v, k]),
);

export function isKnownRelayCommand(cmd: number): cmd is RelayCommandValue {
  return Number.isInteger(cmd) && cmd >= 0 && cmd < 256 && RULES[cmd] !== RULE_UNKNOWN;
}
export function relayCommandName(cmd: number): string {
  return NAMES.get(cmd) ?? `UNKNOWN(${cmd})`;
}
/** The stream id rule of a known command (throws RELAY_UNKNOWN_COMMAND otherwise). */
export function streamIdRule(cmd: number): StreamIdRule {
  if (!isKnownRelayCommand(cmd)) throw err('RELAY_UNKNOWN_COMMAND', `unknown relay command ${cmd}`, { command: cmd });
  const r = RULES[cmd];
  return r === RULE_ZERO ? 'zero' : r === RULE_NONZERO ? 'nonzero' : 'any';
}

function checkStreamId(command: number, rule: number, streamId: number): void {
  if (rule === RULE_ZERO ? streamId !== 0 : rule === RULE_NONZERO ? streamId === 0 : false) {
    throw err('RELAY_BAD_STREAM_ID', `${relayCommandName(command)} with stream id ${streamId}`, { command, streamId });
  }
}

/** A decoded relay payload. `digest` and `data` are views into the payload (no copy). */
export interface RelayPayload {
  command: RelayCommandValue;
  recognized: number;
  streamId: number;
  /** RELAY_DIGEST_LEN bytes, a view. */
  digest: Buffer;
  /** `length` bytes, a view: copy it before the cell buffer is reused. */
  data: Buffer;
}

/**
 * Hot path (per cell). Write a relay payload into `payload` (exactly 509 bytes) with
 * recognized = 0 and digest = 0, for relay crypto to fill in place. Allocates nothing but
 * the view handed to randomFill. If `data` already sits at payload[11..] (a caller that read
 * straight into the cell) it is not copied.
 * Throws RELAY_MALFORMED, RELAY_UNKNOWN_COMMAND or RELAY_BAD_STREAM_ID.
 */
export function encodeRelayPayloadInto(payload: Buffer, command: number, streamId: number, data: Uint8Array): void {
  if (payload.length !== CELL_PAYLOAD_LEN) throw err('RELAY_MALFORMED', `relay payload must be ${CELL_PAYLOAD_LEN} bytes, got ${payload.length}`);
  if (!isKnownRelayCommand(command)) throw err('RELAY_UNKNOWN_COMMAND', `unknown relay command ${command}`, { command });
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffff) {
    throw err('RELAY_BAD_STREAM_ID', `stream id out of range: ${streamId}`, { command, streamId });
  }
  checkStreamId(command, RULES[command], streamId);
  const len = data.length;
  if (len > RELAY_DATA_MAX) throw err('RELAY_MALFORMED', `relay data of ${len} bytes exceeds ${RELAY_DATA_MAX}`, { command, length: len });

  payload[RELAY_COMMAND_OFFSET] = command;
  payload.writeUInt16BE(0, RELAY_RECOGNIZED_OFFSET);
  payload.writeUInt16BE(streamId, RELAY_STREAM_ID_OFFSET);
  payload.writeUInt32BE(0, RELAY_DIGEST_OFFSET);
  payload.writeUInt16BE(len, RELAY_LENGTH_OFFSET);
  const inPlace = data.buffer === payload.buffer && data.byteOffset === payload.byteOffset + RELAY_HEADER_LEN;
  if (!inPlace && len > 0) payload.set(data, RELAY_HEADER_LEN);

  // SPEC.md §2.5 padding: 4 zero bytes, then random to the end; all zero if fewer than 4 remain.
  const end = RELAY_HEADER_LEN + len;
  if (CELL_PAYLOAD_LEN - end < RELAY_PADDING_ZERO_LEN) {
    payload.fill(0, end, CELL_PAYLOAD_LEN);
  } else {
    payload.fill(0, end, end + RELAY_PADDING_ZERO_LEN);
    if (end + RELAY_PADDING_ZERO_LEN < CELL_PAYLOAD_LEN) randomFill(payload.subarray(end + RELAY_PADDING_ZERO_LEN));
  }
}

/** Convenience for tests and cold paths: a fresh 509-byte relay payload. */
export function encodeRelayPayload(command: number, streamId: number, data: Uint8Array): Buffer {
  const payload = Buffer.allocUnsafe(CELL_PAYLOAD_LEN);
  encodeRelayPayloadInto(payload, command, streamId, data);
  return payload;
}

/**
 * Hot path (per cell). Decode a relay payload that relay crypto has recognized. Checks the
 * size (exactly 509), the command, the stream id rule and length <= 498; `recognized` and
 * `digest` are returned as they are (relay crypto owns them). The padding is not checked:
 * it is random by design. The result object and its data view are the only allocations
 * (`digest` is a view made when read); they escape to the caller, so they cannot be reused.
 * Throws RELAY_MALFORMED, RELAY_UNKNOWN_COMMAND or RELAY_BAD_STREAM_ID; nothing else.
 */
export function decodeRelayPayload(payload: Buffer): RelayPayload {
  const { command, streamId, length } = decodeRelayPayloadHeader(payload);
  return new DecodedRelayPayload(command as RelayCommandValue, streamId, payload, payload.subarray(RELAY_HEADER_LEN, RELAY_HEADER_LEN + length));
}

/**
 * Hot path: the data length of a DATA payload (command byte RelayCommand.DATA), checked exactly
 * as decodeRelayPayload checks it (same codes), without making the decoded object or the data
 * view: the data is payload[RELAY_HEADER_LEN, RELAY_HEADER_LEN + length).
 */
export function relayDataLength(payload: Buffer): { streamId: number; length: number } {
  const m = decodeRelayPayloadHeader(payload);
  if (m.command !== RelayCommand.DATA) throw err('RELAY_MALFORMED', `relayDataLength on ${relayCommandName(m.command)}`);
  return m;
}

/** One header object reused by relayDataLength (single-threaded; read it before the next call). */
const HEADER = { command: 0, streamId: 0, length: 0 };

function decodeRelayPayloadHeader(payload: Buffer): typeof HEADER {
  if (payload.length !== CELL_PAYLOAD_LEN) throw err('RELAY_MALFORMED', `relay payload must be ${CELL_PAYLOAD_LEN} bytes, got ${payload.length}`);
  const command = payload[RELAY_COMMAND_OFFSET];
  const rule = RULES[command];
  if (rule === RULE_UNKNOWN) throw err('RELAY_UNKNOWN_COMMAND', `unknown relay command ${command}`, { command });
  const streamId = payload.readUInt16BE(RELAY_STREAM_ID_OFFSET);
  checkStreamId(command, rule, streamId);
  const len = payload.readUInt16BE(RELAY_LENGTH_OFFSET);
  if (len > RELAY_DATA_MAX) throw err('RELAY_MALFORMED', `relay length ${len} exceeds ${RELAY_DATA_MAX}`, { command, length: len });
  HEADER.command = command;
  HEADER.streamId = streamId;
  HEADER.length = len;
  return HEADER;
}

/**
 * The result of decodeRelayPayload. `recognized` and `digest` are read from the payload only
 * when asked (relay crypto has already checked them; the hot path never reads them), so a
 * decoded cell costs one object and one view.
 */
class DecodedRelayPayload implements RelayPayload {
  constructor(
    readonly command: RelayCommandValue,
    readonly streamId: number,
    private readonly payload: Buffer,
    readonly data: Buffer,
  ) {}

  get recognized(): number { return this.payload.readUInt16BE(RELAY_RECOGNIZED_OFFSET); }
  get digest(): Buffer { return this.payload.subarray(RELAY_DIGEST_OFFSET, RELAY_DIGEST_OFFSET + RELAY_DIGEST_LEN); }
}

// ---- The relay message inside a CGO cell (SPEC.md §5.6) ----
//
//   tag [16] | command u8 | stream id u16 | length u16 | data [length] | padding
//
// CGO authenticates the whole cell, so there is no recognized or digest field; the first 16
// bytes are the CGO tag. Relay crypto converts in place between this layout and the one above,
// so the message layer (encodeRelayPayloadInto / decodeRelayPayload) is the same for both.

export const CGO_RELAY_COMMAND_OFFSET = 16;
export const CGO_RELAY_STREAM_ID_OFFSET = 17;
export const CGO_RELAY_LENGTH_OFFSET = 19;
export const CGO_RELAY_HEADER_LEN = 21;
/** 509 - 21: the most data one relay cell carries on a CGO circuit. */
export const CGO_RELAY_DATA_MAX = CELL_PAYLOAD_LEN - CGO_RELAY_HEADER_LEN; // 488

/**
 * Hot path. A payload written by encodeRelayPayloadInto, rewritten in place to the CGO layout
 * (the tag bytes are left for relay crypto to fill). Throws RELAY_MALFORMED when its data is
 * longer than CGO_RELAY_DATA_MAX.
 */
export function relayPayloadToCgo(payload: Buffer): void {
  const len = payload.readUInt16BE(RELAY_LENGTH_OFFSET);
  if (len > CGO_RELAY_DATA_MAX) throw err('RELAY_MALFORMED', `relay data of ${len} bytes exceeds ${CGO_RELAY_DATA_MAX} on a CGO circuit`, { length: len });
  const command = payload[RELAY_COMMAND_OFFSET];
  const streamId = payload.readUInt16BE(RELAY_STREAM_ID_OFFSET);
  payload.copyWithin(CGO_RELAY_HEADER_LEN, RELAY_HEADER_LEN, RELAY_HEADER_LEN + len);
  payload[CGO_RELAY_COMMAND_OFFSET] = command;
  payload.writeUInt16BE(streamId, CGO_RELAY_STREAM_ID_OFFSET);
  payload.writeUInt16BE(len, CGO_RELAY_LENGTH_OFFSET);
  // The padding keeps its zero run after the moved data (the random rest is already random).
  const end = CGO_RELAY_HEADER_LEN + len;
  payload.fill(0, end, Math.min(end + RELAY_PADDING_ZERO_LEN, CELL_PAYLOAD_LEN));
}

/**
 * Hot path. A recognized CGO payload rewritten in place to the layout decodeRelayPayload reads
 * (recognized and digest zero). A length over CGO_RELAY_DATA_MAX is left for decodeRelayPayload
 * to refuse (it is written as 0xffff).
 */
export function relayPayloadFromCgo(payload: Buffer): void {
  const command = payload[CGO_RELAY_COMMAND_OFFSET];
  const streamId = payload.readUInt16BE(CGO_RELAY_STREAM_ID_OFFSET);
  const len = payload.readUInt16BE(CGO_RELAY_LENGTH_OFFSET);
  const ok = len <= CGO_RELAY_DATA_MAX;
  if (ok) payload.copyWithin(RELAY_HEADER_LEN, CGO_RELAY_HEADER_LEN, CGO_RELAY_HEADER_LEN + len);
  payload[RELAY_COMMAND_OFFSET] = command;
  payload.writeUInt16BE(0, RELAY_RECOGNIZED_OFFSET);
  payload.writeUInt16BE(streamId, RELAY_STREAM_ID_OFFSET);
  payload.writeUInt32BE(0, RELAY_DIGEST_OFFSET);
  payload.writeUInt16BE(ok ? len : 0xffff, RELAY_LENGTH_OFFSET);
}
