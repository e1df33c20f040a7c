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

/** Who sends an origin run: a circuit, toward one link. */
export interface OriginOwner {
  flushOriginated(run: OriginRun): void;
}

/**
 * Cells a circuit end originates in one go (an exit packaging DATA, a client uploading), in the
 * order originated: each is encoded and digested (originate) at once, so SENDME v1 digests are
 * exact, and the run gets each layer of encryption in one cipher call when it is handed on —
 * before any other cell goes to the same link, when it is full, and at the latest at the end of
 * the current task (a microtask: before the link's write of that turn).
 */
export class OriginRun {
  private readonly buf = Buffer.alloc(RUN_MAX_CELLS * CELL_PAYLOAD_LEN);
  readonly views: readonly Buffer[] = Array.from({ length: RUN_MAX_CELLS }, (_, k) => this.buf.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN));
  /** Cells in the run. */
  n = 0;
  private owner: OriginOwner | null = null;
  /** The link the run goes to (another cell for it sends the run first). */
  private link: unknown = null;
  private busy = false;
  private scheduled = false;

  get payloads(): Buffer { return this.buf.subarray(0, this.n * CELL_PAYLOAD_LEN); }

  /**
   * The payload buffer for `owner`'s next cell toward `link` (another owner's run is sent first),
   * or null while a run is being sent (the caller then sends the cell itself). Fill it, then call
   * commit().
   */
  slot(owner: OriginOwner, link: unknown): Buffer | null {
    if (this.busy) return null;
    if (this.n > 0 && this.owner !== owner) this.flush();
    this.owner = owner;
    this.link = link;
    if (!this.scheduled) { this.scheduled = true; queueMicrotask(this.flushLater); }
    return this.views[this.n];
  }

  commit(): void {
    if (++this.n === RUN_MAX_CELLS) this.flush();
  }

  /** Send the run first if it goes to `link` (any other cell for that link goes after it). */
  before(link: unknown): void {
    if (this.n > 0 && this.link === link) this.flush();
  }

  /** Send the run now if it is `owner`'s (before the owner sends anything else). */
  flushOwn(owner: OriginOwner): void {
    if (this.n > 0 && this.owner === owner) this.flush();
  }

  flush(): void {
    if (this.n === 0 || this.busy) return;
    const owner = this.owner!;
    this.busy = true;
    try {
      owner.flushOriginated(this);
    } finally {
      this.n = 0;
      this.owner = null;
      this.link = null;
      this.busy = false;
    }
  }

  private readonly flushLater = (): void => {
    this.scheduled = false;
    this.flush();
  };
}

/** The process's one origin run. */
export const originRun = new OriginRun();
