// SPEC.md §1.5–§1.6: cell framing on a link and circuit id allocation.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { isBitcloudError } from '../../src/errors';
import { CELL_LEN, CellCommand, CIRCID_INITIATOR_BIT, decodeCell, encodeCell } from '../../src/wire/cell';
import { CellAssembler, CellBatcher } from '../../src/link/framing';
import { CircIdAllocator } from '../../src/link/circ-ids';
import { checkLinkTuning } from '../../src/link/channel';

function codeOf(f: () => unknown): string {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'OK';
}

/** Feed `stream` cut at `cuts` and collect copies of every cell. */
function reassemble(stream: Buffer, cuts: number[]): { circId: number; command: number; payload: Buffer }[] {
  const asm = new CellAssembler();
  const out: { circId: number; command: number; payload: Buffer }[] = [];
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const chunk = stream.subarray(bounds[i], bounds[i + 1]);
    let off = 0;
    while (off < chunk.length) {
      off = asm.take(chunk, off);
      if (!asm.complete) break;
      const c = asm.parse();
      out.push({ circId: c.circId, command: c.command, payload: Buffer.from(c.payload) });
    }
  }
  expect(asm.partialBytes).toBe(0);
  return out;
}

const cellArb = fc.record({
  circId: fc.integer({ min: 1, max: 0xffff_ffff }),
  command: fc.constantFrom(CellCommand.RELAY, CellCommand.CREATE2, CellCommand.DESTROY, CellCommand.RELAY_EARLY),
  payload: fc.uint8Array({ maxLength: 509 }),
});

describe('link framing: reading never assumes a write boundary (SPEC.md §1.6)', () => {
  it('any cut of a stream of cells gives back the same cells (property)', () => {
    fc.assert(fc.property(fc.array(cellArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), (cells, rawCuts) => {
      const stream = Buffer.concat(cells.map((c) => encodeCell(c.circId, c.command, c.payload)));
      const got = reassemble(stream, rawCuts.map((c) => c % (stream.length + 1)));
      expect(got.length).toBe(cells.length);
      got.forEach((g, i) => {
        const want = decodeCell(encodeCell(cells[i].circId, cells[i].command, cells[i].payload));
        expect(g.circId).toBe(want.circId);
        expect(g.command).toBe(want.command);
        expect(g.payload.equals(want.payload)).toBe(true);
      });
    }), { numRuns: 300 });
  });

  it('byte-at-a-time delivery works', () => {
    const stream = Buffer.concat([encodeCell(7, CellCommand.RELAY, Buffer.from('abc')), encodeCell(0, CellCommand.PADDING, Buffer.alloc(0))]);
    const got = reassemble(stream, Array.from({ length: stream.length }, (_, i) => i));
    expect(got.map((c) => c.command)).toEqual([CellCommand.RELAY, CellCommand.PADDING]);
    expect(got[0].payload.subarray(0, 3).toString()).toBe('abc');
  });

  it('a partial cell is reported (a stream ending there is truncated)', () => {
    const asm = new CellAssembler();
    const half = encodeCell(7, CellCommand.RELAY, Buffer.alloc(0)).subarray(0, 300);
    expect(asm.take(half, 0)).toBe(300);
    expect(asm.complete).toBe(false);
    expect(asm.partialBytes).toBe(300);
  });

  it('parses exactly as decodeCell does, for any 514 bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: CELL_LEN, maxLength: CELL_LEN }), fc.nat(255), fc.boolean(), (bytes, cmd, zeroId) => {
      const buf = Buffer.from(bytes);
      buf[4] = cmd;
      if (zeroId) buf.writeUInt32BE(0, 0);
      const asm = new CellAssembler();
      asm.take(buf, 0);
      const a = codeOf(() => asm.parse());
      const b = codeOf(() => decodeCell(buf));
      expect(a).toBe(b);
      if (a === 'OK') {
        const d = decodeCell(buf);
        expect(asm.cell.circId).toBe(d.circId);
        expect(asm.cell.command).toBe(d.command);
        expect(asm.cell.payload.equals(d.payload)).toBe(true);
      }
    }), { numRuns: 3000 });
  });

  it('garbage gives typed errors only (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), (bytes) => {
      const asm = new CellAssembler();
      const buf = Buffer.from(bytes);
      let off = 0;
      const code = codeOf(() => {
        while (off < buf.length) { off = asm.take(buf, off); if (!asm.complete) break; asm.parse(); }
      });
      expect(['OK', 'CELL_UNKNOWN_COMMAND', 'CELL_MALFORMED']).toContain(code);
    }), { numRuns: 500 });
  });
});

describe('link framing: batching (SPEC.md §1.6)', () => {
  it('gathers cells into one buffer and recycles it after the write', () => {
    const b = new CellBatcher(4);
    expect(b.capacityBytes).toBe(4 * CELL_LEN);
    expect(b.take()).toBeNull();
    expect(b.append(0x8000_0001, CellCommand.RELAY, Buffer.from([1]))).toBe(false);
    expect(b.append(0x8000_0001, CellCommand.RELAY, Buffer.from([2]))).toBe(false);
    expect(b.pendingCells).toBe(2);
    const first = b.take()!;
    expect(first.length).toBe(2 * CELL_LEN);
    expect(decodeCell(first, CELL_LEN).payload[0]).toBe(2);
    b.written();
    for (let i = 0; i < 3; i++) expect(b.append(5, CellCommand.RELAY, Buffer.from([i]))).toBe(false);
    expect(b.append(5, CellCommand.RELAY, Buffer.from([3]))).toBe(true);
    const second = b.take()!;
    expect(second.length).toBe(4 * CELL_LEN);
    // the same memory, reused
    expect(second.buffer).toBe(first.buffer);
    expect(second.byteOffset).toBe(first.byteOffset);
  });

  it('a bad cell raises a CELL_* error and leaves the batch as it was', () => {
    const b = new CellBatcher(4);
    b.append(5, CellCommand.RELAY, Buffer.alloc(0));
    expect(codeOf(() => b.append(5, 200, Buffer.alloc(0)))).toBe('CELL_UNKNOWN_COMMAND');
    expect(codeOf(() => b.append(0, CellCommand.RELAY, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
    expect(codeOf(() => b.append(5, CellCommand.VERSIONS, Buffer.alloc(0)))).toBe('CELL_MALFORMED');
    expect(codeOf(() => b.append(5, CellCommand.RELAY, Buffer.alloc(510)))).toBe('CELL_MALFORMED');
    expect(b.pendingCells).toBe(1);
  });
});

describe('link circuit ids (SPEC.md §1.5)', () => {
  it('initiator ids have the high bit, responder ids do not, none is 0, all distinct', () => {
    for (const isInitiator of [true, false]) {
      const a = new CircIdAllocator(isInitiator);
      const seen = new Set<number>();
      for (let i = 0; i < 2000; i++) {
        const id = a.allocate();
        expect(id).not.toBe(0);
        expect(id).toBeGreaterThan(0);
        expect(id).toBeLessThanOrEqual(0xffff_ffff);
        expect(CircIdAllocator.isInitiatorId(id)).toBe(isInitiator);
        expect((id & CIRCID_INITIATOR_BIT) !== 0).toBe(isInitiator);
        expect(seen.has(id)).toBe(false);
        seen.add(id);
      }
      expect(a.size).toBe(2000);
      for (const id of seen) a.release(id);
      expect(a.size).toBe(0);
    }
  });

  it('never picks an id the owner says is taken on the link (SPEC §1.5)', () => {
    const a = new CircIdAllocator(true);
    const taken = new Set<number>();
    for (let i = 0; i < 500; i++) taken.add(a.allocate());
    for (const id of taken) a.release(id);
    for (let i = 0; i < 2000; i++) expect(taken.has(a.allocate((id) => taken.has(id)))).toBe(false);
  });
});

describe('link tuning', () => {
  it('bad values are CONFIG_INVALID before any socket exists', () => {
    expect(codeOf(() => checkLinkTuning({}))).toBe('OK');
    expect(codeOf(() => checkLinkTuning({ batchCells: 64, highWaterMark: 1 << 18, maxBufferedBytes: 1 << 24, timeoutMs: 10_000 }))).toBe('OK');
    expect(codeOf(() => checkLinkTuning({ batchCells: 0 }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => checkLinkTuning({ highWaterMark: -1 }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => checkLinkTuning({ maxBufferedBytes: 1.5 }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => checkLinkTuning({ timeoutMs: Number.NaN }))).toBe('CONFIG_INVALID');
  });
});
