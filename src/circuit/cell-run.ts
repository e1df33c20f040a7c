// SPEC.md §1.6, §5: a run of RELAY cells of one circuit and direction from one link read, so that
// relay crypto removes or adds a layer over all of them with one cipher call (tor1: AES-CTR's
// stream is continuous per hop and direction, so one call over the payloads end to end gives the
// same bytes as one call per cell).
//
// Cells keep their arrival order exactly: a run holds consecutive cells only, and any other cell
// (another circuit, another direction, another command) ends the run first. A run also ends when
// it is full and when the link read that filled it ends ('readEnd', cell-channel.ts), so no cell
// waits for a later read. One run serves the whole process: reads are handled one at a time.
import { CELL_PAYLOAD_LEN } from '../wire/cell';

/** Cells in one run: one 64 KiB link read holds 127.5 cells. */
export const RUN_MAX_CELLS = 128;

/** Who handles a run: a circuit, for the direction it was given as `tag`. */
export interface RunOwner {
  flushRun(run: CellRun): void;
}

export class CellRun {
  /** The payloads, 509 bytes each, end to end. */
  private readonly buf = Buffer.alloc(RUN_MAX_CELLS * CELL_PAYLOAD_LEN);
  /** views[k]: payload k (fixed views, so that handling a run allocates nothing per cell). */
  readonly views: readonly Buffer[] = Array.from({ length: RUN_MAX_CELLS }, (_, k) => this.buf.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN));
  /** commands[k]: the cell command (RELAY or RELAY_EARLY) of payload k. */
  readonly commands = new Uint8Array(RUN_MAX_CELLS);
  /** Cells in the run. */
  n = 0;
  /** Which direction of its owner the run is (the owner's own convention). */
  tag = 0;
  private owner: RunOwner | null = null;
  private busy = false;

  /** The n payloads end to end (a view; valid while the run is handled). */
  get payloads(): Buffer { return this.buf.subarray(0, this.n * CELL_PAYLOAD_LEN); }

  /**
   * Copy one cell into the run; a run of another owner or direction is handled first, and a full
   * run at once. Returns false (nothing queued) while a run is being handled: the caller then
   * handles the cell itself, which keeps the order because cells only arrive between reads.
   */
  add(owner: RunOwner, tag: number, command: number, payload: Uint8Array): boolean {
    if (this.busy) return false;
    if (this.n > 0 && (this.owner !== owner || this.tag !== tag)) this.flush();
    this.owner = owner;
    this.tag = tag;
    this.buf.set(payload, this.n * CELL_PAYLOAD_LEN);
    this.commands[this.n++] = command;
    if (this.n === RUN_MAX_CELLS) this.flush();
    return true;
  }

  /** Hand the run to its owner now (end of a read, or another cell must go first). */
  flush(): void {
    if (this.n === 0 || this.busy) return;
    const owner = this.owner!;
    this.busy = true;
    try {
      owner.flushRun(this);
    } finally {
      this.n = 0;
      this.owner = null;
      this.busy = false;
    }
  }
}

/** The process's one run (see the file comment). */
export const cellRun = new CellRun();
/** For 'readEnd' listeners. */
export const flushCellRun = (): void => cellRun.flush();
