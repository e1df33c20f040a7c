// SPEC.md §7.4 (flow control): SENDME windows at circuit and stream level, as tor-spec §7.3/7.4
// with SENDME v1 (Tor proposal 289) authentication at circuit level.
//
// Pure state, no timers, no I/O. One PackageWindow per direction of sending (the client keeps
// one per hop it talks to, a relay one per circuit end it serves) and one DeliverWindow per
// direction of receiving. Only RELAY DATA cells count.
//
// HOT PATH: onDataSent/onDataReceived run once per DATA cell. They allocate nothing: the
// digests of the cells awaiting acknowledgement live in one ring buffer allocated at creation.
import { err } from '../errors';
import { constantTimeEqual } from '../crypto/primitives';

export const CIRCUIT_WINDOW_START = 1000;
export const CIRCUIT_WINDOW_INCREMENT = 100;
export const STREAM_WINDOW_START = 500;
export const STREAM_WINDOW_INCREMENT = 50;
/** The SENDME v1 digest is the 20-byte running relay digest (tor1: SHA-1) after the acknowledged cell. */
export const SENDME_DIGEST_LEN = 20;

export type WindowKind = 'circuit' | 'stream';

export interface WindowOptions {
  /** Whether SENDMEs on this window carry and require the v1 digest. Default: circuit yes, stream no (SPEC §7.4.3). */
  authenticated?: boolean;
}

function params(kind: WindowKind): { start: number; increment: number } {
  return kind === 'circuit'
    ? { start: CIRCUIT_WINDOW_START, increment: CIRCUIT_WINDOW_INCREMENT }
    : { start: STREAM_WINDOW_START, increment: STREAM_WINDOW_INCREMENT };
}

/**
 * A FIFO of 20-byte digests in one preallocated buffer. Capacity is start/increment (10 for a
 * circuit, 10 for a stream): more boundary cells than that cannot be outstanding.
 */
class DigestRing {
  private readonly buf: Buffer;
  private head = 0;
  count = 0;
  constructor(readonly capacity: number) { this.buf = Buffer.alloc(capacity * SENDME_DIGEST_LEN); }
  push(d: Uint8Array): void {
    const slot = (this.head + this.count) % this.capacity;
    this.buf.set(d.subarray(0, SENDME_DIGEST_LEN), slot * SENDME_DIGEST_LEN);
    this.count++;
  }
  /** A view of the oldest digest; valid until the next push. */
  peek(): Buffer {
    return this.buf.subarray(this.head * SENDME_DIGEST_LEN, (this.head + 1) * SENDME_DIGEST_LEN);
  }
  shift(): void {
    this.head = (this.head + 1) % this.capacity;
    this.count--;
  }
}

function checkDigest(d: Uint8Array | undefined | null, what: string): Uint8Array {
  if (!d || d.length !== SENDME_DIGEST_LEN) {
    throw err('SENDME_DIGEST_MISSING', `${what}: a ${SENDME_DIGEST_LEN}-byte digest is required for this cell`);
  }
  return d;
}

/**
 * What both sides share: a window of DATA cells, the position within the current run of
 * `increment` cells, and (authenticated windows) the digests of boundary cells in a ring.
 */
abstract class SendmeWindow {
  readonly start: number;
  readonly increment: number;
  readonly authenticated: boolean;
  protected win: number;
  /** DATA cells counted since the last boundary cell (the n*increment-th cell). */
  private sinceBoundary = 0;
  /** Boundary cells counted and not yet settled by a SENDME (sent or received). */
  protected boundaries = 0;
  protected readonly ring: DigestRing | null;

  constructor(readonly kind: WindowKind, opts: WindowOptions) {
    ({ start: this.start, increment: this.increment } = params(kind));
    this.authenticated = opts.authenticated ?? kind === 'circuit';
    this.win = this.start;
    this.ring = this.authenticated ? new DigestRing(this.start / this.increment) : null;
  }

  get window(): number { return this.win; }
  /** True when the next DATA cell is a boundary cell whose digest a SENDME will carry. */
  nextNeedsDigest(): boolean { return this.authenticated && this.sinceBoundary === this.increment - 1; }

  /** HOT PATH. Count one DATA cell (the caller has checked the window). */
  protected countCell(digest: Uint8Array | undefined, what: string): void {
    if (this.nextNeedsDigest()) this.ring!.push(checkDigest(digest, what));
    this.win--;
    if (++this.sinceBoundary === this.increment) { this.sinceBoundary = 0; this.boundaries++; }
  }
}

/**
 * The sending side (tor-spec "package window"). Before sending a DATA cell: canSend(); after
 * encrypting it: onDataSent(digest) (the digest is only read when nextNeedsDigest() is true, so a
 * caller may skip computing it otherwise). On a SENDME for this window: onSendme(digest).
 */
export class PackageWindow extends SendmeWindow {
  constructor(kind: WindowKind, opts: WindowOptions = {}) { super(kind, opts); }

  canSend(): boolean { return this.win > 0; }

  /** HOT PATH. Record one DATA cell sent; `digest` = running digest after it (copied, only at boundaries). */
  onDataSent(digest?: Uint8Array): void {
    if (this.win <= 0) throw err('SENDME_WINDOW_EXHAUSTED', `${this.kind} package window is empty; wait for a SENDME`);
    this.countCell(digest, 'onDataSent');
  }

  /**
   * A SENDME arrived for this window. `digest` is the v1 digest it carried, or null for a SENDME
   * without one (v0 or empty). Throws SENDME_UNEXPECTED when no boundary cell is awaiting
   * acknowledgement (an early or extra SENDME: the window would pass its start), and
   * SENDME_BAD_DIGEST when authentication is required and the digest is absent or is not the
   * digest of the oldest unacknowledged boundary cell. Both are protocol errors: the caller
   * destroys the circuit (tor-spec §7.3, prop 289).
   */
  onSendme(digest: Uint8Array | null): void {
    if (this.boundaries === 0) {
      throw err('SENDME_UNEXPECTED', `${this.kind} SENDME with nothing to acknowledge (window ${this.win}/${this.start})`);
    }
    if (this.ring) {
      if (!digest || digest.length !== SENDME_DIGEST_LEN) {
        throw err('SENDME_BAD_DIGEST', `unauthenticated ${this.kind} SENDME (v1 digest required)`, { reason: 'unauthenticated' });
      }
      if (!constantTimeEqual(digest, this.ring.peek())) {
        throw err('SENDME_BAD_DIGEST', `${this.kind} SENDME digest does not match the acknowledged cell`, { reason: 'mismatch' });
      }
      this.ring.shift();
    }
    this.boundaries--;
    this.win += this.increment;
  }
}

/**
 * The receiving side (tor-spec "deliver window"). On each DATA cell: onDataReceived(digest)
 * (digest = running digest after that cell, read only when nextNeedsDigest()). When sendmeDue(),
 * send a SENDME carrying takeSendme() (circuit level: as soon as due; stream level: once the
 * application has taken the data, as Tor does). A window going negative throws
 * SENDME_WINDOW_EXCEEDED: the peer ignored flow control and the circuit must be destroyed.
 */
export class DeliverWindow extends SendmeWindow {
  constructor(kind: WindowKind, opts: WindowOptions = {}) { super(kind, opts); }

  /** HOT PATH. Count one DATA cell received. */
  onDataReceived(digest?: Uint8Array): void {
    if (this.win <= 0) {
      throw err('SENDME_WINDOW_EXCEEDED', `${this.kind} deliver window exceeded: peer sent beyond ${this.start} unacknowledged cells`);
    }
    this.countCell(digest, 'onDataReceived');
  }

  /** True when at least `increment` cells have arrived since the last SENDME we sent. */
  sendmeDue(): boolean { return this.boundaries > 0; }

  /**
   * Account for one SENDME about to be sent and return the digest to put in it (null when this
   * window is unauthenticated). The returned Buffer is a view into the window's own storage,
   * valid until the next onDataReceived: encode it into the SENDME at once.
   * Throws SENDME_NOT_DUE if called when no SENDME is due.
   */
  takeSendme(): Buffer | null {
    if (this.boundaries === 0) throw err('SENDME_NOT_DUE', `no ${this.kind} SENDME is due`);
    this.boundaries--;
    this.win += this.increment;
    if (!this.ring) return null;
    const d = this.ring.peek();
    this.ring.shift();
    return d;
  }
}
