// SPEC.md §1, §7b: what the circuit layer uses of a link — send cells, hear cells, 'drain' and
// 'close', allocate circuit ids (§1.5), the identity the peer proved (§1.3), close. Channel
// implements it over TLS; the circuit switch, relay circuits and client circuits depend only on
// this interface, so a test can hand them an in-memory fake.
import type { BitcloudError } from '../errors';
import type { Cell } from '../wire/cell';

/** The events of a cell channel and their arguments. */
export interface CellChannelEvents {
  /**
   * Every cell but PADDING and the handshake cells, in order. The Cell object and its payload
   * may be REUSED: they are valid only during the event; copy what you keep.
   */
  cell: [cell: Cell];
  /** After `send` returned false, the write buffer fell back below the high-water mark. */
  drain: [];
  /**
   * The cells of one read from the peer have all been emitted (only from a channel whose
   * `batchesReads` is true): a listener that gathered cells must handle them now.
   */
  readEnd: [];
  /** Once; `err` is absent for a clean close by either end. */
  close: [err?: BitcloudError];
}

export interface CellChannel {
  /** True once the link is closed (sending then throws LINK_CLOSED). */
  readonly closed: boolean;
  /** The Ed25519 identity the peer proved (SPEC.md §1.3); null for an anonymous initiator. */
  readonly peerIdentity: Buffer | null;
  /**
   * Queue one cell. Returns false when the caller should wait for 'drain' (the cell was still
   * queued, unless the link closed for overflow).
   */
  send(circId: number, command: number, payload: Uint8Array): boolean;
  /**
   * A free circuit id of this end's half (SPEC.md §1.5); `taken` names ids the caller still uses
   * on this link, which are skipped.
   */
  allocateCircId(taken?: (id: number) => boolean): number;
  /**
   * True when the channel emits 'readEnd' after the cells of each read, so that a listener may
   * gather consecutive cells and handle them together (src/circuit/cell-run.ts). A channel
   * without it (in-memory test links) has every cell handled as it comes.
   */
  readonly batchesReads?: boolean;
  /** True when this end opened the link (its circuit ids have the high bit set, SPEC.md §1.5). */
  readonly isInitiator: boolean;
  releaseCircId(id: number): void;
  /** Stop reading from the peer for `ms` (TCP pushes back); optional (in-memory test links lack it). */
  holdReading?(ms: number): void;
  /** Close cleanly (queued cells are written first); emits 'close' without an error. */
  close(reason?: string): void;
  on<E extends keyof CellChannelEvents>(event: E, listener: (...args: CellChannelEvents[E]) => void): unknown;
}
