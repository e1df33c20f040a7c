// SPEC.md §2.1–2.2: the fixed 514-byte cell.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { codeOf, onlyBitcloudErrors } from '../helpers/errors';
import {
  CELL_LEN, CELL_PAYLOAD_LEN, CIRCID_INITIATOR_BIT, CellCommand, decodeCell, encodeCell, encodeCellInto,
  isInitiatorCircId, isLinkLevelCommand, isResponderCircId,
} from '../../src/wire/cell';


const commands = Object.values(CellCommand);
const circuitCommands = commands.filter((c) => !isLinkLevelCommand(c));
const linkCommands = commands.filter((c) => isLinkLevelCommand(c));

describe('cell layout (SPEC.md §2.1)', () => {
  it('is circId u32 BE | command u8 | payload 509, zero-filled', () => {
    const c = encodeCell(0x8000_0001, CellCommand.CREATE2, Buffer.from([1, 2, 3]));
    expect(c.length).toBe(CELL_LEN);
    expect(c.subarray(0, 5)).toEqual(Buffer.from([0x80, 0, 0, 1, 10]));
    expect(c.subarray(5, 8)).toEqual(Buffer.from([1, 2, 3]));
    expect(c.subarray(8).every((b) => b === 0)).toBe(true);
  });

  it('keeps the command numbers', () => {
    expect(CellCommand).toEqual({
      PADDING: 0, RELAY: 3, DESTROY: 4, VERSIONS: 7, RELAY_EARLY: 9, CREATE2: 10, CREATED2: 11,
      AUTHENTICATE: 131, RECEIPT_PROPOSE: 140, RECEIPT_COUNTERSIGN: 141, RECEIPT_REJECT: 142, RECEIPT_REQUEST: 143,
    });
  });

  it('decodes at an offset inside a larger buffer, payload as a view', () => {
    const buf = Buffer.alloc(CELL_LEN * 2 + 3);
    encodeCellInto(buf, 3 + CELL_LEN, 7, CellCommand.RELAY, Buffer.from('hi'));
    const c = decodeCell(buf, 3 + CELL_LEN);
    expect(c).toMatchObject({ circId: 7, command: CellCommand.RELAY });
    expect(c.payload.length).toBe(CELL_PAYLOAD_LEN);
    expect(c.payload.buffer).toBe(buf.buffer);
  });
});

describe('circuit id rules (SPEC.md §2.1)', () => {
  it('link-level commands carry circId 0, circuit commands never do', () => {
    for (const cmd of linkCommands) {
      expect(() => encodeCell(0, cmd, Buffer.alloc(0))).not.toThrow();
      expect(codeOf(() => encodeCell(5, cmd, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
    }
    for (const cmd of circuitCommands) {
      expect(codeOf(() => encodeCell(0, cmd, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
    }
  });

  it('refuses on decode what it refuses on encode', () => {
    const raw = Buffer.alloc(CELL_LEN);
    raw[4] = CellCommand.RELAY; // circId 0
    expect(codeOf(() => decodeCell(raw))).toBe('CELL_MALFORMED');
    raw.writeUInt32BE(9, 0);
    raw[4] = CellCommand.VERSIONS;
    expect(codeOf(() => decodeCell(raw))).toBe('CELL_MALFORMED');
  });

  it('tells initiator ids (high bit set) from responder ids', () => {
    expect(isInitiatorCircId(CIRCID_INITIATOR_BIT)).toBe(true);
    expect(isInitiatorCircId(0xffff_ffff)).toBe(true);
    expect(isInitiatorCircId(0x7fff_ffff)).toBe(false);
    expect(isResponderCircId(1)).toBe(true);
    expect(isResponderCircId(0)).toBe(false);
    expect(isResponderCircId(CIRCID_INITIATOR_BIT)).toBe(false);
  });
});

describe('refusals', () => {
  it('CELL_TRUNCATED for fewer than 514 bytes', () => {
    expect(codeOf(() => decodeCell(Buffer.alloc(CELL_LEN - 1)))).toBe('CELL_TRUNCATED');
    expect(codeOf(() => decodeCell(Buffer.alloc(CELL_LEN), 1))).toBe('CELL_TRUNCATED');
  });
  it('CELL_TRUNCATED for a bad offset, never a RangeError', () => {
    expect(codeOf(() => decodeCell(Buffer.alloc(CELL_LEN * 2), -1))).toBe('CELL_TRUNCATED');
    expect(codeOf(() => decodeCell(Buffer.alloc(CELL_LEN * 2), 0.5))).toBe('CELL_TRUNCATED');
    expect(codeOf(() => encodeCellInto(Buffer.alloc(CELL_LEN), 1, 1, CellCommand.RELAY, Buffer.alloc(0)))).toBe('CELL_TRUNCATED');
    expect(codeOf(() => encodeCellInto(Buffer.alloc(CELL_LEN), -1, 1, CellCommand.RELAY, Buffer.alloc(0)))).toBe('CELL_TRUNCATED');
  });
  it('CELL_UNKNOWN_COMMAND for a command not in the table', () => {
    const raw = Buffer.alloc(CELL_LEN);
    raw.writeUInt32BE(1, 0);
    for (const cmd of [1, 2, 5, 8, 12, 128, 130, 255]) {
      raw[4] = cmd;
      expect(codeOf(() => decodeCell(raw))).toBe('CELL_UNKNOWN_COMMAND');
      expect(codeOf(() => encodeCell(1, cmd, Buffer.alloc(0)))).toBe('CELL_UNKNOWN_COMMAND');
    }
  });
  it('CELL_MALFORMED for an oversized payload or an out-of-range circId', () => {
    expect(codeOf(() => encodeCell(1, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN + 1)))).toBe('CELL_MALFORMED');
    expect(codeOf(() => encodeCell(2 ** 32, CellCommand.RELAY, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
    expect(codeOf(() => encodeCell(-1, CellCommand.RELAY, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
  });
});

describe('properties', () => {
  const validCell = fc.oneof(
    fc.record({ circId: fc.integer({ min: 1, max: 0xffff_ffff }), command: fc.constantFrom(...circuitCommands) }),
    fc.record({ circId: fc.constant(0), command: fc.constantFrom(...linkCommands) }),
  );

  it('encode → decode round-trips every valid cell', () => {
    fc.assert(fc.property(validCell, fc.uint8Array({ maxLength: CELL_PAYLOAD_LEN }), ({ circId, command }, payload) => {
      const c = decodeCell(encodeCell(circId, command, payload));
      expect(c.circId).toBe(circId);
      expect(c.command).toBe(command);
      expect(c.payload.subarray(0, payload.length)).toEqual(Buffer.from(payload));
      expect(c.payload.subarray(payload.length).every((b) => b === 0)).toBe(true);
    }), { numRuns: 1000 });
  });

  it('decoding arbitrary bytes at any offset returns a cell or throws BitcloudError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: CELL_LEN * 2 }), fc.integer({ min: -2, max: CELL_LEN * 2 }), (bytes, offset) =>
      onlyBitcloudErrors(() => decodeCell(Buffer.from(bytes), offset))), { numRuns: 2000 });
  });

  it('decoding a mutated valid cell returns a cell or throws BitcloudError', () => {
    fc.assert(fc.property(validCell, fc.array(fc.tuple(fc.nat(CELL_LEN - 1), fc.nat(255)), { maxLength: 8 }), ({ circId, command }, flips) => {
      const c = encodeCell(circId, command, Buffer.alloc(0));
      for (const [i, v] of flips) c[i] = v;
      return onlyBitcloudErrors(() => decodeCell(c));
    }), { numRuns: 1000 });
  });
});
