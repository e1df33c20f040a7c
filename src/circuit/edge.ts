// The stream end of a circuit (SPEC.md §7b.6–§7b.8): the streams multiplexed on one
// circuit at one endpoint, and the circuit-level SENDME windows of that endpoint. The same
// class serves the client (streams at the last hop) and the relay that ends the circuit
// (exit, directory mirror, storage node). It knows nothing of links or crypto: the owner
// supplies an EdgeCircuit that originates relay messages and reports congestion.
import { err, type BitcloudError } from '../errors';
import { RELAY_DATA_MAX, RelayCommand } from '../wire/relay-msg';
import { decodeConnected, decodeEnd, decodeSendme, encodeEnd, encodeSendme, type Connected } from '../wire/messages';
import { DeliverWindow, PackageWindow } from './sendme';
import { CircuitStream, type StreamHost } from './stream';
import { endReasonError } from './end-reasons';
import { MAX_STREAMS_PER_CIRCUIT } from './constants';

export interface EdgeCircuit {
  /** Originate one relay message at this endpoint, toward the peer endpoint. */
  sendRelay(command: number, streamId: number, data: Uint8Array): void;
  /** SENDME v1: the 20-byte running digest right after the cell `sendRelay` just sent. */
  lastSentDigest(): Uint8Array;
  /** The link toward the peer takes more cells now (no congestion, nothing queued). */
  writable(): boolean;
  /** A protocol violation by the peer: destroy the circuit (tor-spec §7.3, §7.4). */
  violation(code: string, message: string): void;
}

export interface EdgeOptions {
  /** Streams open at once; further BEGINs are refused (default 512). */
  maxStreams?: number;
  readableHighWaterMark?: number;
  /** The most data one DATA message carries (the circuit's relay crypto decides; default RELAY_DATA_MAX). */
  maxData?: number;
  /**
   * SPEC.md §7b.9: while the streams together hold more than this many received bytes their
   * readers have not taken, no circuit SENDME is sent (default: no bound).
   */
  maxBufferedBytes?: number;
  /**
   * The circuit's destruction also destroys the streams the peer already ended but whose local
   * side is still open (an exit's target still being written to): SPEC.md §7b.5, the TCP
   * connections of a destroyed circuit's streams are reset. Off at a client, whose application
   * may still read a stream that ended cleanly.
   */
  destroyReleased?: boolean;
  /**
   * SPEC.md §7b.9: told the streams' unread bytes (unreadBytes) each time they change, so that a
   * relay counts them under its memory cap; 0 once the edge is closed.
   */
  onUnread?: (bytes: number) => void;
}

/** SPEC.md §7b.9: the bound a relay that ends circuits sets on its streams' unread bytes per circuit. */
export const RELAY_EDGE_MAX_BUFFERED = 1024 * 1024;

const EMPTY = Buffer.alloc(0);
const MAX_STREAM_ID = 0xffff;

export class StreamEdge implements StreamHost {
  readonly streams = new Map<number, CircuitStream>();
  /** DATA cells this endpoint may still send on the circuit (1000/100, SENDME v1). */
  readonly packageWindow = new PackageWindow('circuit');
  /** DATA cells the peer may still send (1000/100). */
  readonly deliverWindow = new DeliverWindow('circuit');
  private closedWith: BitcloudError | null = null;
  private nextId = 1;
  private rr = 0;
  /** Streams open at once; a hidden node lowers it for its end of a rendezvous circuit (SPEC.md §7b.9). */
  maxStreams: number;
  /** Unread bytes past which circuit SENDMEs wait; a hidden node sets it for its end of a rendezvous circuit (SPEC.md §7b.9). */
  maxBuffered: number;
  /** Circuit SENDMEs are due but withheld: the streams hold more than maxBuffered unread. */
  private withheld = false;
  /**
   * Streams released from `streams` (the peer ended them) whose readers have not taken all their
   * data yet: it still counts against maxBuffered until they do (SPEC.md §7b.9).
   */
  private readonly draining = new Set<CircuitStream>();
  /**
   * With destroyReleased: streams released from `streams` that have not closed yet; close()
   * destroys them. Each still holds its target's connection (up to 30 s after the peer's END,
   * SPEC.md §7b.7 step 6), so it counts against maxStreams until it leaves, on its 'close'
   * (SPEC.md §7b.9).
   */
  private readonly released = new Set<CircuitStream>();
  /**
   * The unread bytes of the streams in `streams` and `draining` together, kept as each stream's
   * count changes (unreadChanged) so a due circuit SENDME checks the bound in O(1) (SPEC.md §7b.9).
   */
  private unread = 0;

  /** StreamHost: the most data per DATA message; a client sets it once its last hop is known. */
  maxData: number;

  constructor(private readonly circ: EdgeCircuit, private readonly opts: EdgeOptions = {}) {
    this.maxStreams = opts.maxStreams ?? MAX_STREAMS_PER_CIRCUIT;
    this.maxData = opts.maxData ?? RELAY_DATA_MAX;
    this.maxBuffered = opts.maxBufferedBytes ?? Infinity;
  }

  get closed(): boolean { return this.closedWith !== null; }

  // ---- StreamHost ----

  canPackage(): boolean {
    return this.closedWith === null && this.packageWindow.canSend() && this.circ.writable();
  }

  /** Hot path: one DATA cell. */
  sendData(s: CircuitStream, data: Buffer): void {
    this.circ.sendRelay(RelayCommand.DATA, s.id, data);
    // Sending it may have ended the circuit (its run put the memory cap over, SPEC.md §7b.9): its
    // layers are wiped then (§5.6.2) and no digest is left to keep.
    if (this.closedWith) return;
    this.packageWindow.onDataSent(this.packageWindow.nextNeedsDigest() ? this.circ.lastSentDigest() : undefined);
  }

  sendStreamSendme(s: CircuitStream): void {
    if (this.closedWith) return;
    // Stream-level SENDMEs carry no digest (SPEC.md §7.4.3, §2.7.5), as in Tor.
    this.circ.sendRelay(RelayCommand.SENDME, s.id, EMPTY);
  }

  sendEnd(s: CircuitStream, reason: number): void {
    if (this.closedWith) return;
    this.circ.sendRelay(RelayCommand.END, s.id, encodeEnd({ reason }));
  }

  release(s: CircuitStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    if (this.opts.destroyReleased && !this.closedWith && !s.closed && !this.released.has(s)) {
      this.released.add(s);
      s.once('close', () => { this.released.delete(s); });
    }
    // An END(DONE) releases the stream before its reader took the data: that data still counts,
    // or a peer ending each stream once full would hold the node to no bound at all.
    if (this.maxBuffered !== Infinity && !this.closedWith && !s.destroyed && s.unreadBytes > 0 && !this.draining.has(s)) {
      this.draining.add(s);
      const drained = (): void => {
        s.off('end', drained);
        s.off('close', drained);
        if (!this.draining.delete(s)) return;
        this.untally(s);
        if (this.withheld) this.sendCircuitSendmes();
      };
      s.once('end', drained);
      s.once('close', drained);
    }
    if (!this.draining.has(s)) this.untally(s);
    if (this.withheld) this.sendCircuitSendmes();
  }

  /** StreamHost: a stream's unread count may have moved; the running total follows it. */
  unreadChanged(s: CircuitStream): void {
    if (!s.tallied) return;
    const n = s.unreadBytes;
    const d = n - s.talliedBytes;
    if (d === 0) return;
    this.unread += d;
    s.talliedBytes = n;
    this.opts.onUnread?.(this.unread);
  }

  /** `s` is in neither `streams` nor `draining` any more: its bytes leave the total. */
  private untally(s: CircuitStream): void {
    if (!s.tallied) return;
    const d = s.talliedBytes;
    this.unread -= d;
    s.tallied = false;
    s.talliedBytes = 0;
    if (d !== 0) this.opts.onUnread?.(this.unread);
  }

  /** A stream joins `streams`: counted from now on (it holds nothing yet). */
  private tally(s: CircuitStream): CircuitStream {
    s.tallied = true;
    s.talliedBytes = s.unreadBytes;
    this.unread += s.talliedBytes;
    return s;
  }

  readerProgress(): void {
    if (this.withheld) this.sendCircuitSendmes();
  }

  violation(code: string, message: string): void {
    this.circ.violation(code, message);
  }

  // ---- opening streams ----

  /** The initiating side: a new stream with a fresh id, in state 'opening'. */
  newStream(): CircuitStream {
    if (this.closedWith) throw this.closedWith;
    if (this.streams.size >= Math.min(this.maxStreams, MAX_STREAM_ID)) throw err('STREAM_LIMIT', `${this.streams.size} streams already open on this circuit`);
    let id = this.nextId;
    while (this.streams.has(id)) id = id >= MAX_STREAM_ID ? 1 : id + 1;
    this.nextId = id >= MAX_STREAM_ID ? 1 : id + 1;
    const s = new CircuitStream(id, this, { readableHighWaterMark: this.opts.readableHighWaterMark, initiator: true });
    this.streams.set(id, s);
    return this.tally(s);
  }

  /**
   * The accepting side (BEGIN, BEGIN_DIR, BEGIN_STORAGE): a stream with the peer's id.
   * `counted`: requests the owner counts as streams besides these (SPEC.md §7b.7: a pending
   * RESOLVE). Streams the peer ended that have not closed yet count too (SPEC.md §7b.9).
   * Throws STREAM_ID_IN_USE or STREAM_LIMIT; the caller answers with END.
   */
  acceptStream(id: number, counted = 0): CircuitStream {
    if (this.closedWith) throw this.closedWith;
    if (id === 0 || this.streams.has(id)) throw err('STREAM_ID_IN_USE', `stream id ${id} is zero or in use`);
    if (this.streams.size + this.released.size + counted >= this.maxStreams) {
      throw err('STREAM_LIMIT', `${this.streams.size} streams, ${this.released.size} ended but not closed and ${counted} pending requests already on this circuit`);
    }
    const s = new CircuitStream(id, this, { readableHighWaterMark: this.opts.readableHighWaterMark });
    this.streams.set(id, s);
    return this.tally(s);
  }

  // ---- messages from the peer ----

  /**
   * Handle a recognized relay message that belongs to streams or to the circuit windows:
   * DATA, SENDME, END, CONNECTED. Returns false for any other command (the owner handles it).
   * `receivedDigest` returns the running digest right after this cell; it is called before
   * anything is sent, because sending moves the digest on (SENDME v1).
   * Hot path for DATA: nothing allocated but the copy handed to the reader.
   */
  handle(command: number, streamId: number, data: Buffer, receivedDigest: () => Uint8Array): boolean {
    if (this.closedWith) return true;
    switch (command) {
      case RelayCommand.DATA:
        this.handleData(streamId, data, 0, data.length, receivedDigest);
        return true;
      case RelayCommand.SENDME: {
        let m;
        try {
          m = decodeSendme(data);
          // SPEC.md §2.7.5: stream-level SENDMEs are always version 0; a higher version, or
          // stray bytes, destroy the circuit (§2.8) and open no window.
          if (streamId !== 0 && m.version !== 0) throw err('MSG_MALFORMED', `stream-level SENDME of version ${m.version}`, { message: 'SENDME', version: m.version });
        } catch (e) {
          this.circ.violation((e as BitcloudError).code ?? 'MSG_MALFORMED', (e as Error).message);
          return true;
        }
        if (streamId !== 0) { this.streams.get(streamId)?.onSendme(); return true; }
        try {
          this.packageWindow.onSendme(m.version === 1 ? m.digest : null);
        } catch (e) {
          this.circ.violation((e as BitcloudError).code ?? 'SENDME_BAD_DIGEST', (e as Error).message);
          return true;
        }
        this.pumpAll();
        return true;
      }
      case RelayCommand.END: {
        // SPEC.md §2.7.2, §2.8: a malformed END body (data after a reason other than
        // EXITPOLICY, a bad address length) destroys the circuit, even for a stream already gone.
        let reason: number;
        try { reason = decodeEnd(data).reason; } catch (e) {
          this.circ.violation((e as BitcloudError).code ?? 'MSG_MALFORMED', (e as Error).message);
          return true;
        }
        const s = this.streams.get(streamId);
        if (!s) return true;
        s.onEnd(reason, endReasonError(reason, s.state === 'opening'));
        return true;
      }
      case RelayCommand.CONNECTED: {
        const s = this.streams.get(streamId);
        if (!s) return true;
        if (s.state !== 'opening') { this.circ.violation('RELAY_PROTOCOL', `CONNECTED on stream ${streamId} that is not opening`); return true; }
        // SPEC.md §7b.6: only the end that accepted the stream answers CONNECTED; one sent to it
        // by the opener would open the stream before the acceptor did.
        if (!s.initiator) { this.circ.violation('RELAY_PROTOCOL', `CONNECTED on stream ${streamId} from the end that opened it`); return true; }
        let info: Connected | null = null;
        try { info = data.length > 0 ? decodeConnected(data) : null; } catch (e) {
          this.circ.violation((e as BitcloudError).code ?? 'RELAY_MALFORMED', (e as Error).message);
          return true;
        }
        s.markOpen();
        s.emit('connected', info);
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * Hot path: a recognized DATA message whose data is src[start, start + len) (a view valid only
   * now), as handle(DATA, ...) takes it, without a view of its own.
   */
  handleData(streamId: number, src: Buffer, start: number, len: number, receivedDigest: () => Uint8Array): void {
    if (this.closedWith) return;
    if (streamId === 0) { this.circ.violation('RELAY_PROTOCOL', 'DATA on stream 0'); return; }
    try {
      this.deliverWindow.onDataReceived(this.deliverWindow.nextNeedsDigest() ? receivedDigest() : undefined);
    } catch (e) {
      this.circ.violation((e as BitcloudError).code ?? 'SENDME_WINDOW_EXCEEDED', (e as Error).message);
      return;
    }
    // tor-spec §7.3: a circuit SENDME goes back as soon as 100 cells arrived.
    if (this.deliverWindow.sendmeDue()) this.sendCircuitSendmes();
    // DATA for a stream we no longer have is dropped (it was in flight when we closed it).
    const s = this.streams.get(streamId);
    if (!s) return;
    // SPEC.md §7b.6: the end that accepted a stream sends DATA only after its CONNECTED (the
    // opener's data before CONNECTED is accepted at the other end); DATA before it is a violation.
    if (s.initiator && s.state === 'opening') { this.circ.violation('RELAY_PROTOCOL', `DATA on stream ${streamId} before its CONNECTED`); return; }
    s.onDataFrom(src, start, len);
  }

  /**
   * The circuit SENDMEs that are due, unless the streams hold more than maxBuffered bytes their
   * readers have not taken (SPEC.md §7b.9): then they wait until a reader takes some or a stream
   * goes, and the peer stops at the circuit window.
   */
  private sendCircuitSendmes(): void {
    while (this.deliverWindow.sendmeDue() && !this.closedWith) {
      if (this.maxBuffered !== Infinity && this.unread > this.maxBuffered) { this.withheld = true; return; }
      const d = this.deliverWindow.takeSendme();
      this.circ.sendRelay(RelayCommand.SENDME, 0, encodeSendme({ version: 1, digest: d! }));
    }
    this.withheld = false;
  }

  /** Received bytes the circuit's streams (those the peer ended included) hold unread (SPEC.md §7b.9). */
  get unreadBytes(): number { return this.unread; }

  /** The link drained or the circuit window opened: let waiting streams send, round robin. */
  pumpAll(): void {
    if (this.closedWith || this.streams.size === 0) return;
    const list = [...this.streams.values()];
    const n = list.length;
    for (let k = 0; k < n; k++) {
      if (!this.canPackage()) { this.rr = (this.rr + k) % n; return; }
      list[(this.rr + k) % n].pump();
    }
    this.rr = (this.rr + 1) % Math.max(1, n);
  }

  /** The circuit is gone: every stream ends with `e` (never a silent clean end). */
  close(e: BitcloudError): void {
    if (this.closedWith) return;
    this.closedWith = e;
    for (const s of [...this.streams.values(), ...this.released]) s.onCircuitClosed(e);
    for (const s of [...this.streams.values(), ...this.draining]) this.untally(s);
    this.streams.clear();
    this.draining.clear();
    this.released.clear();
    this.opts.onUnread?.(0);
  }
}
