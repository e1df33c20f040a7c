// SPEC.md §2.5–2.6: the relay payload inside RELAY / RELAY_EARLY cells.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { codeOf, onlyBitcloudErrors } from '../helpers/errors';
import { CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import {
  RELAY_DATA_MAX, RELAY_DIGEST_OFFSET, RELAY_HEADER_LEN, RELAY_RECOGNIZED_OFFSET, RelayCommand,
  decodeRelayPayload, encodeRelayPayload, encodeRelayPayloadInto, isKnownRelayCommand, relayDataLength, streamIdRule,
} from '../../src/wire/relay-msg';


const ZERO_ID = [RelayCommand.EXTEND2, RelayCommand.EXTENDED2, RelayCommand.TRUNCATE, RelayCommand.TRUNCATED, RelayCommand.DROP];
const NONZERO_ID = [RelayCommand.BEGIN, RelayCommand.DATA, RelayCommand.END, RelayCommand.CONNECTED, RelayCommand.RESOLVE,
  RelayCommand.RESOLVED, RelayCommand.BEGIN_DIR, RelayCommand.BEGIN_STORAGE];
const ALL = Object.values(RelayCommand);

/** A valid (command, streamId) pair for the stream id rules. */
const commandAndStream = fc.constantFrom(...ALL).chain((command) => {
  const rule = streamIdRule(command);
  const id = rule === 'zero' ? fc.constant(0) : rule === 'nonzero' ? fc.integer({ min: 1, max: 0xffff }) : fc.integer({ min: 0, max: 0xffff });
  return id.map((streamId) => ({ command, streamId }));
});

describe('relay payload layout (SPEC.md §2.5)', () => {
  it('is command | recognized=0 | stream id | digest=0 | length | data | 4 zero bytes | random', () => {
    const p = encodeRelayPayload(RelayCommand.DATA, 0x1234, Buffer.from('hello'));
    expect(p.length).toBe(CELL_PAYLOAD_LEN);
    expect(p.subarray(0, RELAY_HEADER_LEN)).toEqual(Buffer.from([2, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 5]));
    expect(p.subarray(11, 16).toString()).toBe('hello');
    expect(p.subarray(16, 20)).toEqual(Buffer.alloc(4));
    // 489 random bytes are all zero with probability 2^-3912.
    expect(p.subarray(20).some((b) => b !== 0)).toBe(true);
  });

  it('pads with zero only when fewer than 4 bytes remain', () => {
    for (const len of [RELAY_DATA_MAX, RELAY_DATA_MAX - 1, RELAY_DATA_MAX - 3]) {
      const p = encodeRelayPayload(RelayCommand.DATA, 1, Buffer.alloc(len, 0xee));
      expect(p.subarray(RELAY_HEADER_LEN + len).every((b) => b === 0)).toBe(true);
    }
    const p = encodeRelayPayload(RelayCommand.DATA, 1, Buffer.alloc(RELAY_DATA_MAX - 5, 0xee));
    expect(p.subarray(RELAY_HEADER_LEN + RELAY_DATA_MAX - 5, RELAY_HEADER_LEN + RELAY_DATA_MAX - 1)).toEqual(Buffer.alloc(4));
  });

  it('keeps the offsets relay crypto works on', () => {
    expect(RELAY_RECOGNIZED_OFFSET).toBe(1);
    expect(RELAY_DIGEST_OFFSET).toBe(5);
    expect(RELAY_HEADER_LEN).toBe(11);
    expect(RELAY_DATA_MAX).toBe(498);
  });

  it('keeps Tor\'s relay command numbers, its onion-service numbers, BEGIN_STORAGE = 40, INTRODUCE_ACK = 41 and PROBE_ECHO = 42', () => {
    expect(RelayCommand).toEqual({
      BEGIN: 1, DATA: 2, END: 3, CONNECTED: 4, SENDME: 5, TRUNCATE: 8, TRUNCATED: 9, DROP: 10,
      RESOLVE: 11, RESOLVED: 12, BEGIN_DIR: 13, EXTEND2: 14, EXTENDED2: 15,
      ESTABLISH_INTRO: 32, ESTABLISH_RENDEZVOUS: 33, INTRODUCE1: 34, INTRODUCE2: 35, RENDEZVOUS1: 36,
      RENDEZVOUS2: 37, INTRO_ESTABLISHED: 38, RENDEZVOUS_ESTABLISHED: 39, BEGIN_STORAGE: 40, INTRODUCE_ACK: 41,
      PROBE_ECHO: 42,
    });
  });

  it('does not copy data that already sits in place, and overwrites stale bytes otherwise', () => {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN, 0xff);
    const inPlace = p.subarray(RELAY_HEADER_LEN, RELAY_HEADER_LEN + 3);
    inPlace.set([7, 8, 9]);
    encodeRelayPayloadInto(p, RelayCommand.DATA, 3, inPlace);
    const d = decodeRelayPayload(p);
    expect([...d.data]).toEqual([7, 8, 9]);
    expect(d.recognized).toBe(0);
    expect(d.digest).toEqual(Buffer.alloc(4));
  });

  it('decodes recognized and digest as they are (relay crypto owns them), as views', () => {
    const p = encodeRelayPayload(RelayCommand.SENDME, 0, Buffer.alloc(0));
    p.writeUInt16BE(0xabcd, RELAY_RECOGNIZED_OFFSET);
    p.writeUInt32BE(0xdeadbeef, RELAY_DIGEST_OFFSET);
    const d = decodeRelayPayload(p);
    expect(d.recognized).toBe(0xabcd);
    expect(d.digest.readUInt32BE(0)).toBe(0xdeadbeef);
    expect(d.digest.buffer).toBe(p.buffer);
    expect(d.data.length).toBe(0);
  });
});

describe('stream id rules (SPEC.md §2.6)', () => {
  it('EXTEND2/EXTENDED2/TRUNCATE/TRUNCATED/DROP need stream id 0', () => {
    for (const c of ZERO_ID) {
      expect(codeOf(() => encodeRelayPayload(c, 1, Buffer.alloc(0)))).toBe('RELAY_BAD_STREAM_ID');
      const p = encodeRelayPayload(c, 0, Buffer.alloc(0));
      p.writeUInt16BE(5, 3);
      expect(codeOf(() => decodeRelayPayload(p))).toBe('RELAY_BAD_STREAM_ID');
    }
  });
  it('BEGIN/DATA/END/CONNECTED/RESOLVE/RESOLVED/BEGIN_DIR/BEGIN_STORAGE need a non-zero stream id', () => {
    for (const c of NONZERO_ID) {
      expect(codeOf(() => encodeRelayPayload(c, 0, Buffer.alloc(0)))).toBe('RELAY_BAD_STREAM_ID');
      const p = encodeRelayPayload(c, 1, Buffer.alloc(0));
      p.writeUInt16BE(0, 3);
      expect(codeOf(() => decodeRelayPayload(p))).toBe('RELAY_BAD_STREAM_ID');
    }
  });
  it('SENDME takes either (circuit-level or stream-level)', () => {
    expect(decodeRelayPayload(encodeRelayPayload(RelayCommand.SENDME, 0, Buffer.alloc(0))).streamId).toBe(0);
    expect(decodeRelayPayload(encodeRelayPayload(RelayCommand.SENDME, 9, Buffer.alloc(0))).streamId).toBe(9);
  });
  it('refuses a stream id outside u16', () => {
    expect(codeOf(() => encodeRelayPayload(RelayCommand.DATA, 0x10000, Buffer.alloc(0)))).toBe('RELAY_BAD_STREAM_ID');
    expect(codeOf(() => encodeRelayPayload(RelayCommand.DATA, 1.5, Buffer.alloc(0)))).toBe('RELAY_BAD_STREAM_ID');
  });
});

describe('refusals', () => {
  it('RELAY_UNKNOWN_COMMAND for a command not in the table', () => {
    for (const c of [0, 6, 7, 16, 31, 43, 255]) {
      expect(isKnownRelayCommand(c)).toBe(false);
      expect(codeOf(() => encodeRelayPayload(c, 1, Buffer.alloc(0)))).toBe('RELAY_UNKNOWN_COMMAND');
      const p = encodeRelayPayload(RelayCommand.DATA, 1, Buffer.alloc(0));
      p[0] = c;
      expect(codeOf(() => decodeRelayPayload(p))).toBe('RELAY_UNKNOWN_COMMAND');
    }
  });
  it('RELAY_MALFORMED for length > 498', () => {
    expect(codeOf(() => encodeRelayPayload(RelayCommand.DATA, 1, Buffer.alloc(RELAY_DATA_MAX + 1)))).toBe('RELAY_MALFORMED');
    const p = encodeRelayPayload(RelayCommand.DATA, 1, Buffer.alloc(0));
    p.writeUInt16BE(RELAY_DATA_MAX + 1, 9);
    expect(codeOf(() => decodeRelayPayload(p))).toBe('RELAY_MALFORMED');
    p.writeUInt16BE(0xffff, 9);
    expect(codeOf(() => decodeRelayPayload(p))).toBe('RELAY_MALFORMED');
    p.writeUInt16BE(RELAY_DATA_MAX, 9);
    expect(decodeRelayPayload(p).data.length).toBe(RELAY_DATA_MAX);
  });
  it('RELAY_MALFORMED for a payload that is not 509 bytes', () => {
    expect(codeOf(() => decodeRelayPayload(Buffer.alloc(508)))).toBe('RELAY_MALFORMED');
    expect(codeOf(() => decodeRelayPayload(Buffer.alloc(0)))).toBe('RELAY_MALFORMED');
    expect(codeOf(() => encodeRelayPayloadInto(Buffer.alloc(510), RelayCommand.DATA, 1, Buffer.alloc(0)))).toBe('RELAY_MALFORMED');
  });
});

describe('properties', () => {
  it('encode → decode round-trips command, stream id and data', () => {
    fc.assert(fc.property(commandAndStream, fc.uint8Array({ maxLength: RELAY_DATA_MAX }), ({ command, streamId }, data) => {
      const d = decodeRelayPayload(encodeRelayPayload(command, streamId, data));
      expect(d.command).toBe(command);
      expect(d.streamId).toBe(streamId);
      expect(d.recognized).toBe(0);
      expect(d.digest).toEqual(Buffer.alloc(4));
      expect(d.data).toEqual(Buffer.from(data));
    }), { numRuns: 1000 });
  });

  it('decoding arbitrary bytes of any size returns a payload or throws BitcloudError', () => {
    const arb = fc.oneof(fc.uint8Array({ minLength: CELL_PAYLOAD_LEN, maxLength: CELL_PAYLOAD_LEN }), fc.uint8Array({ maxLength: 600 }));
    fc.assert(fc.property(arb, (bytes) => onlyBitcloudErrors(() => decodeRelayPayload(Buffer.from(bytes)))), { numRuns: 2000 });
  });

  it('decoding a mutated valid payload returns a payload or throws BitcloudError', () => {
    fc.assert(fc.property(commandAndStream, fc.uint8Array({ maxLength: RELAY_DATA_MAX }),
      fc.array(fc.tuple(fc.nat(RELAY_HEADER_LEN + 2), fc.nat(255)), { minLength: 1, maxLength: 4 }),
      ({ command, streamId }, data, flips) => {
        const p = encodeRelayPayload(command, streamId, data);
        for (const [i, v] of flips) p[i] = v;
        return onlyBitcloudErrors(() => decodeRelayPayload(p));
      }), { numRuns: 1000 });
  });
});

describe('relayDataLength (the DATA hot path)', () => {
  it('reads what decodeRelayPayload reads from a DATA payload, and refuses with the same code', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: CELL_PAYLOAD_LEN, maxLength: CELL_PAYLOAD_LEN }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (bytes, streamId, len) => {
      const p = Buffer.from(bytes);
      p[0] = RelayCommand.DATA;
      p.writeUInt16BE(streamId, 3);
      p.writeUInt16BE(len % 3 === 0 ? len : len % (RELAY_DATA_MAX + 1), 9);
      const want = codeOf(() => decodeRelayPayload(p));
      expect(codeOf(() => relayDataLength(p))).toBe(want);
      if (want === undefined) {
        const m = decodeRelayPayload(p);
        const h = relayDataLength(p);
        expect({ streamId: h.streamId, length: h.length }).toEqual({ streamId: m.streamId, length: m.data.length });
      }
    }), { numRuns: 300 });
  });
});
