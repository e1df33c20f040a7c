// A stream on a circuit as a node Duplex (SPEC.md §7b.6, §7b.8): the same class at both
// ends (client and exit / directory / storage endpoint). Writes become DATA messages of at
// most maxData bytes (RELAY_DATA_MAX, less on a CGO circuit), sent only while the stream's and the circuit's package windows
// and the link allow; received DATA is pushed to the readable side and acknowledged with a
// stream SENDME only once the reader has taken it, so a slow reader stops the sender after
// one stream window (500 cells) instead of making anyone buffer without bound.
import { Duplex } from 'node:stream';
import { err, type BitcloudError } from '../errors';
import { EndReason } from '../wire/messages';
import { DeliverWindow, PackageWindow } from './sendme';

/** What a stream needs from the circuit endpoint that carries it (implemented by StreamEdge). */
export interface StreamHost {
  /** The circuit can take one more DATA cell now (circuit package window and link). */
  canPackage(): boolean;
  /** The most data one DATA message carries on this circuit (RELAY_DATA_MAX, less with CGO: SPEC.md §5.6.3). */
  readonly maxData: number;
  /** Send one DATA message (≤ maxData bytes) for this stream. */
  sendData(s: CircuitStream, data: Buffer): void;
  sendStreamSendme(s: CircuitStream): void;
  sendEnd(s: CircuitStream, reason: number): void;
  /** The stream is gone from both directions: drop it from the table. */
  release(s: CircuitStream): void;
  /** A peer broke the stream protocol: the whole circuit goes (tor-spec §7.4). */
  violation(code: string, message: string): void;
  /** The reader took data: what the circuit's streams hold unread shrank (SPEC.md §7b.9). */
  readerProgress(): void;
  /** The stream's unreadBytes may have changed (data arrived, was pushed or was read): SPEC.md §7b.9. */
  unreadChanged(s: CircuitStream): void;
}

export type StreamState = 'opening' | 'open' | 'closed';

/**
 * Most bytes of received DATA gathered before one push to the reader: one link read (a TCP read
 * of up to 64 KiB, several TLS records) fits, so the socket behind the reader gets one write per
 * read instead of one per TLS record.
 */
const RX_COALESCE = 64 * 1024;
/**
 * Gather buffers (RX_COALESCE bytes each) shared by every stream of the process (one thread): a
 * stream takes one when the first DATA of a read arrives and gives it back when it pushes, and
 * what it pushes is an exact-size copy. A fresh 64 KiB buffer per push (most reads bring one TLS
 * record, ~16 KiB) made four times the received bytes in short-lived ArrayBuffers, which V8 counts
 * as external memory and answers with full collections.
 */
const GATHER_POOL: Buffer[] = [];
const GATHER_POOL_MAX = 4;

const END_REASON_MISC = EndReason.MISC;
const END_REASON_DONE = EndReason.DONE;

export interface CircuitStreamOptions {
  /** Bytes buffered on the readable side before stream SENDMEs stop (default 64 KiB). */
  readableHighWaterMark?: number;
  /** This end sent the BEGIN (BEGIN_DIR, BEGIN_STORAGE): the peer answers CONNECTED (SPEC.md §7b.6). */
  initiator?: boolean;
}

export class CircuitStream extends Duplex {
  state: StreamState = 'opening';
  /** Cells we may still send before the peer's next stream SENDME (500/50, unauthenticated). */
  readonly packageWindow = new PackageWindow('stream');
  /** Cells the peer may still send before our next stream SENDME. */
  readonly deliverWindow = new DeliverWindow('stream');
  /** Set when the peer sent END; its reason. */
  remoteEndReason: number | null = null;
  /** Written chunks not yet packaged, in order (one write, or a writev's chunks). */
  private pending: Buffer[] = [];
  /** Bytes of `pending[0]` already sent. */
  private pendingOff = 0;
  private pendingCb: ((e?: Error | null) => void) | null = null;
  private sent = 0;
  private endSent = false;
  /** Received data not yet pushed to the reader (see onData). */
  private rx: Buffer | null = null;
  private rxLen = 0;
  private rxScheduled = false;
  /**
   * The host's running total of its streams' unread bytes (SPEC.md §7b.9): whether it counts this
   * stream, and this stream's unreadBytes when it last counted them. Kept by the host only.
   */
  tallied = false;
  talliedBytes = 0;
  /**
   * Called after pump() sent at least one DATA cell of this stream: an exit whose target ended
   * times the stream's progress by it (SPEC.md §7b.7 step 6).
   */
  onPackaged: (() => void) | null = null;
  /**
   * This end opened the stream (sent BEGIN, BEGIN_DIR or BEGIN_STORAGE); false at the end that
   * accepted it. Which stream messages the peer may send depends on it (SPEC.md §7b.6).
   */
  readonly initiator: boolean;

  constructor(readonly id: number, private readonly host: StreamHost, opts: CircuitStreamOptions = {}) {
    super({ readableHighWaterMark: opts.readableHighWaterMark ?? 64 * 1024, allowHalfOpen: true });
    this.initiator = opts.initiator ?? false;
  }

  /**
   * Bytes of written data sent in DATA cells so far: progress within one large write, which
   * completes (its callback) only when its last cell is sent. The storage node's idle rule reads
   * it (SPEC.md §9.6.1).
   */
  get sentBytes(): number { return this.sent; }

  /** Whether the stream holds a gather buffer now (for tests: one is held only while it holds data). */
  get holdsRxBuffer(): boolean { return this.rx !== null; }

  /** Received bytes the reader has not taken yet (SPEC.md §7b.9). */
  get unreadBytes(): number { return this.readableLength + this.rxLen; }

  /** The peer accepted the stream (CONNECTED sent or received): data may flow. */
  markOpen(): void {
    if (this.state !== 'opening') return;
    this.state = 'open';
    this.pump();
  }

  // ---- data from the application → DATA cells ----

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.remoteEndReason !== null) { cb(); return; } // peer closed the stream: Tor drops late data
    // An empty write carries nothing: no DATA cell (an empty one would spend a window slot and
    // stand out on the wire as a cell with no bytes).
    if (chunk.length === 0) { cb(); return; }
    this.pending = [chunk];
    this.pendingOff = 0;
    this.pendingCb = cb;
    this.pump();
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    // The chunks are walked in place (never concatenated: a writer of large frames would copy
    // them all once more); where one ends inside a cell, that cell is filled from the next ones.
    if (this.remoteEndReason !== null) { cb(); return; }
    const bufs = chunks.map((c) => c.chunk).filter((b) => b.length > 0);
    if (bufs.length === 0) { cb(); return; } // only empty writes: nothing to send (see _write)
    this.pending = bufs;
    this.pendingOff = 0;
    this.pendingCb = cb;
    this.pump();
  }

  /** Send as much pending data as the windows and the link allow. Called again on SENDME / drain. */
  pump(): void {
    const before = this.sent;
    while (this.pending.length && this.state === 'open') {
      if (!this.packageWindow.canSend() || !this.host.canPackage()) break;
      // Hot path: the chunk is walked by offset (one view per cell, none for a chunk that fits).
      const q = this.pending;
      const p = q[0];
      const off = this.pendingOff;
      const max = this.host.maxData;
      let data: Buffer;
      if (p.length - off >= max || q.length === 1) {
        const n = Math.min(max, p.length - off);
        data = off === 0 && n === p.length ? p : p.subarray(off, off + n);
        this.pendingOff = off + n;
        if (this.pendingOff === p.length) { q.shift(); this.pendingOff = 0; }
      } else {
        data = this.fillCell(q, max);
      }
      this.packageWindow.onDataSent();
      this.host.sendData(this, data);
      this.sent += data.length;
    }
    if (this.onPackaged && this.sent !== before) this.onPackaged();
    if (!this.pending.length && this.pendingCb) {
      const cb = this.pendingCb;
      this.pendingCb = null;
      cb();
    }
  }

  /**
   * One cell's data from the tail of `q[0]` (shorter than a cell) and the heads of the chunks
   * after it (a small copy), so DATA cells go out full across write boundaries.
   */
  private fillCell(q: Buffer[], max: number): Buffer {
    let total = 0;
    for (let i = 0; i < q.length && total < max; i++) total += q[i].length - (i === 0 ? this.pendingOff : 0);
    const out = Buffer.allocUnsafe(Math.min(max, total));
    let fill = 0;
    while (fill < out.length) {
      const c = q[0];
      const take = Math.min(out.length - fill, c.length - this.pendingOff);
      c.copy(out, fill, this.pendingOff, this.pendingOff + take);
      fill += take;
      this.pendingOff += take;
      if (this.pendingOff === c.length) { q.shift(); this.pendingOff = 0; }
    }
    return out;
  }

  override _final(cb: (e?: Error | null) => void): void {
    // Everything written has been packaged (writes complete in order before _final).
    // SPEC.md §7b.6: END closes the stream in both directions, as in Tor.
    if (!this.endSent) {
      this.endSent = true;
      this.host.sendEnd(this, END_REASON_DONE);
    }
    this.state = 'closed';
    this.host.release(this);
    // DATA received before this END still reaches the reader, ahead of its end.
    this.flushRx();
    if (!this.readableEnded) this.push(null);
    cb();
  }

  // ---- cells from the peer ----

  /** A stream SENDME: the peer consumed STREAM_WINDOW_INCREMENT more cells. */
  onSendme(): void {
    try {
      this.packageWindow.onSendme(null);
    } catch (e) {
      this.host.violation((e as BitcloudError).code, `stream ${this.id}: ${(e as Error).message}`);
      return;
    }
    this.pump();
  }

  /** A DATA message for this stream; `data` is a view valid only now, so it is copied. */
  onData(data: Buffer): void {
    this.onDataFrom(data, 0, data.length);
  }

  /** Hot path: onData(src.subarray(start, start + len)) without making the view. */
  onDataFrom(src: Buffer, start: number, len: number): void {
    try {
      this.deliverWindow.onDataReceived();
    } catch (e) {
      this.host.violation((e as BitcloudError).code, `stream ${this.id}: ${(e as Error).message}`);
      return;
    }
    if (this.readableEnded || this.destroyed) return;
    // SPEC.md §7b.6: a 0-byte DATA is accepted and ignored (it counted against the windows above);
    // it takes no gather buffer, which only data pushed to the reader gives back (§7b.9).
    if (len === 0) return;
    // Hot path: cells that arrive in one burst (one link read: every TLS record of it) are
    // gathered into one buffer and handed to the reader once, at the end of the read (the
    // event loop's check phase, where links flush their own writes too): one allocation and
    // one push per read instead of per 498 bytes or per TLS record, so the socket behind the
    // reader gets few large writes. Order is kept: a full buffer is pushed before the next.
    if (this.rx && this.rxLen + len > this.rx.length) this.flushRx();
    if (!this.rx) { this.rx = GATHER_POOL.pop() ?? Buffer.allocUnsafeSlow(RX_COALESCE); this.rxLen = 0; }
    src.copy(this.rx, this.rxLen, start, start + len);
    this.rxLen += len;
    this.host.unreadChanged(this);
    if (!this.rxScheduled) { this.rxScheduled = true; setImmediate(this.flushRxTask); }
  }

  private readonly flushRxTask = (): void => { this.rxScheduled = false; this.flushRx(); };

  private flushRx(): void {
    const b = this.rx;
    if (!b || this.rxLen === 0 || this.destroyed || this.readableEnded) return;
    this.rx = null;
    const out = Buffer.allocUnsafe(this.rxLen);
    b.copy(out, 0, 0, this.rxLen);
    if (GATHER_POOL.length < GATHER_POOL_MAX) GATHER_POOL.push(b);
    this.rxLen = 0;
    this.push(out); // a flowing reader may take it at once, unbuffered
    this.host.unreadChanged(this);
    this.maybeSendSendme();
  }

  /**
   * The peer ended the stream (SPEC.md §7b.6: both directions). DONE ends the readable side
   * cleanly; any other reason, or an END before CONNECTED, is an error.
   */
  onEnd(reason: number, error?: BitcloudError): void {
    if (this.remoteEndReason !== null) return;
    this.remoteEndReason = reason;
    this.endSent = true; // never answer an END with an END
    this.host.release(this);
    if (reason !== END_REASON_DONE || this.state === 'opening') {
      this.state = 'closed';
      this.destroy(error ?? err('STREAM_CLOSED', `stream ended by the peer (reason ${reason})`, { endReason: reason }));
      return;
    }
    this.state = 'closed';
    this.flushRx();
    this.push(null);
    // Writes after the peer's END are dropped; release a writer waiting on windows.
    this.pending = [];
    this.pendingOff = 0;
    this.pump();
    // The END itself, not the reader's 'end' (which waits until a reader took every byte): an
    // exit times the target's connection from here (SPEC.md §7b.7 step 6).
    this.emit('remote-end');
  }

  /** The circuit died under the stream: it ends with an error, never silently. */
  onCircuitClosed(e: BitcloudError): void {
    this.endSent = true;
    this.state = 'closed';
    this.destroy(e);
  }

  /**
   * Close the stream at once with END(reason) (a refusal, or an error at this end). The
   * local side sees `e` if given, or a clean close otherwise.
   */
  abort(reason: number, e?: Error): void {
    if (!this.endSent) {
      this.endSent = true;
      this.host.sendEnd(this, reason);
    }
    this.state = 'closed';
    this.destroy(e);
  }

  // ---- reader side flow control ----

  override _read(): void {
    this.maybeSendSendme();
  }

  /**
   * Every consumer (flowing mode, pipe, async iteration) takes data through read(). Node calls
   * _read() only once per push, so a reader that catches up after the window closed would never
   * trigger a SENDME from _read alone: check after each read instead.
   */
  override read(size?: number): any { // eslint-disable-line @typescript-eslint/no-explicit-any
    const chunk = super.read(size);
    this.host.unreadChanged(this);
    if (this.deliverWindow.sendmeDue()) this.maybeSendSendme();
    if (chunk !== null) this.host.readerProgress();
    return chunk;
  }

  override unshift(chunk: any, encoding?: BufferEncoding): void { // eslint-disable-line @typescript-eslint/no-explicit-any
    super.unshift(chunk, encoding);
    this.host.unreadChanged(this);
  }

  /** tor-spec §7.4: SENDME once 50 cells were delivered and the reader keeps up. */
  private maybeSendSendme(): void {
    while (this.deliverWindow.sendmeDue()
      && this.readableLength < this.readableHighWaterMark && this.state !== 'closed' && !this.destroyed) {
      this.deliverWindow.takeSendme();
      this.host.sendStreamSendme(this);
    }
  }

  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    if (!this.endSent) {
      this.endSent = true;
      this.host.sendEnd(this, e ? END_REASON_MISC : END_REASON_DONE);
    }
    this.state = 'closed';
    if (this.pendingCb) { const c = this.pendingCb; this.pendingCb = null; this.pending = []; this.pendingOff = 0; c(e); }
    // Data gathered but not pushed is dropped with the stream; its buffer goes back to the pool.
    if (this.rx) {
      if (GATHER_POOL.length < GATHER_POOL_MAX) GATHER_POOL.push(this.rx);
      this.rx = null;
      this.rxLen = 0;
    }
    this.host.release(this);
    cb(e);
  }
}
