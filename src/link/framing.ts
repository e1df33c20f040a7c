// SPEC.md §1.6: cell framing on an open link. A TLS byte stream carries back-to-back 514-byte
// cells; reads never assume a write boundary, and writes gather many cells into one socket write.
// Both halves are the per-cell hot path: they allocate nothing per cell (comments mark where).
import { err } from '../errors';
import {
  CELL_HEADER_LEN, CELL_LEN, CIRCID_LEN, cellCommandName, encodeCellInto, isKnownCellCommand,
  isLinkLevelCommand, type Cell, type CellCommandValue,
} from '../wire/cell';

/**
 * Read side: copies stream bytes into one reused 514-byte buffer and, when it is full, parses
 * the header into one reused Cell object whose payload is a fixed view of that buffer. The
 * Cell handed out is therefore valid only until the next call to `take` (SPEC.md §1.6 says
 * nothing about this; it is an API contract of this implementation, documented on Channel).
 */
export class CellAssembler {
  private readonly rx = Buffer.alloc(CELL_LEN);
  private fill = 0;
  readonly cell: Cell = { circId: 0, command: 0 as CellCommandValue, payload: this.rx.subarray(CELL_HEADER_LEN) };

  /** Bytes of an incomplete cell held now (non-zero at end of stream = a truncated cell). */
  get partialBytes(): number { return this.fill; }

  /**
   * Hot path. Copy bytes from `chunk[offset..]` until the current cell is complete or the
   * chunk ends. Returns the new offset. When `complete` is then true, call `parse()`.
   */
  take(chunk: Buffer, offset: number): number {
    const n = Math.min(CELL_LEN - this.fill, chunk.length - offset);
    chunk.copy(this.rx, this.fill, offset, offset + n); // no allocation: copies into the reused buffer
    this.fill += n;
    return offset + n;
  }

  get complete(): boolean { return this.fill === CELL_LEN; }

  /**
   * Hot path. Parse the completed cell into the reused `cell` object and reset for the next one.
   * Same rules and codes as decodeCell in src/wire/cell.ts (a property test holds them equal):
   * CELL_UNKNOWN_COMMAND, or CELL_MALFORMED for a link-level command on a circuit id or a
   * circuit-level command on circuit id 0.
   */
  parse(): Cell {
    this.fill = 0;
    const circId = this.rx.readUInt32BE(0);
    const command = this.rx[CIRCID_LEN];
    if (!isKnownCellCommand(command)) throw err('CELL_UNKNOWN_COMMAND', `unknown cell command ${command}`);
    if (isLinkLevelCommand(command) ? circId !== 0 : circId === 0) {
      throw err('CELL_MALFORMED', `${cellCommandName(command)} cell with circuit id ${circId}`);
    }
    const c = this.cell as { circId: number; command: CellCommandValue };
    c.circId = circId;
    c.command = command;
    return this.cell;
  }
}

/**
 * Batch buffers kept for reuse per link once the socket is done with them (2 × 64 KiB at the
 * default batch size: what a busy link cycles through, and no more held by an idle one).
 */
const POOL_MAX = 2;

/**
 * Write side: encodes cells straight into a large batch buffer (no per-cell allocation); the
 * owner writes a whole batch with one socket write and hands the buffer back through
 * `written()` when that write's callback runs, so buffers are reused rather than reallocated.
 */
export class CellBatcher {
  private buf: Buffer | null = null;
  private fill = 0;
  private readonly pool: Buffer[] = [];
  private readonly inFlight: Buffer[] = [];
  readonly capacityBytes: number;

  constructor(readonly capacityCells: number) {
    if (!Number.isInteger(capacityCells) || capacityCells < 1) throw err('CONFIG_INVALID', `batch size must be a positive integer, got ${capacityCells}`);
    this.capacityBytes = capacityCells * CELL_LEN;
  }

  /** Bytes encoded but not yet handed to the socket. */
  get pendingBytes(): number { return this.fill; }
  get pendingCells(): number { return this.fill / CELL_LEN; }

  /**
   * Hot path. Encode one cell into the current batch (validation is encodeCellInto's: a typed
   * CELL_* error and nothing written on bad input). Returns true when the batch is now full.
   */
  append(circId: number, command: number, payload: Uint8Array): boolean {
    const buf = this.buf ?? (this.buf = this.pool.pop() ?? Buffer.allocUnsafe(this.capacityBytes));
    encodeCellInto(buf, this.fill, circId, command, payload);
    this.fill += CELL_LEN;
    return this.fill === this.capacityBytes;
  }

  /** Take the filled batch for one socket write (null if empty). Call `written()` in its callback. */
  take(): Buffer | null {
    if (this.fill === 0 || !this.buf) return null;
    const full = this.buf;
    const out = this.fill === this.capacityBytes ? full : full.subarray(0, this.fill);
    this.inFlight.push(full);
    this.buf = null;
    this.fill = 0;
    return out;
  }

  /** A socket write finished (callbacks run in write order): its buffer may be reused. */
  written(): void {
    const b = this.inFlight.shift();
    if (b && this.pool.length < POOL_MAX) this.pool.push(b);
  }
}
