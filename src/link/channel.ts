// SPEC.md §1: a link ("channel") — one authenticated TLS 1.3 connection carrying fixed cells.
// The Channel has a lifetime (handshake, open, closed), so it is a class (SPEC.md §11.2); the
// byte layouts it uses are declared in handshake.ts, framing.ts and src/wire/cell.ts.
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { BitcloudError, err } from '../errors';
import { CELL_LEN, CellCommand, encodeCell, type Cell } from '../wire/cell';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { exportLinkAuthValue, NO_CERT_HASH, peerCertificateHash } from '../crypto/tls';
import type { Logger } from '../ops/log';
import { CellAssembler, CellBatcher } from './framing';
import { CircIdAllocator } from './circ-ids';
import {
  AuthRole, decodeAuthenticate, makeAuthenticate, negotiateVersion, verifyAuthenticate,
  type AuthRoleValue, type TlsBinding,
} from './handshake';
import { decodeVersions, encodeVersions } from '../wire/messages';
import type { LinkMetrics } from './metrics';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import type { CellChannel, CellChannelEvents } from './cell-channel';
import type { LinkReader } from './reader';

/** Write-side limits of one link (SPEC.md §1.6). */
export interface LinkTuning {
  /** Cells gathered into one socket write. Default 128 (65,792 bytes: a whole 64 KiB read's worth). */
  batchCells?: number;
  /** `send` returns false once this many bytes wait to be written. Default 256 KiB. */
  highWaterMark?: number;
  /** Hard cap on bytes waiting to be written; a send past it closes the link with LINK_OUTPUT_OVERFLOW. Default 16 MiB. */
  maxBufferedBytes?: number;
  /**
   * SPEC.md §1.8: an open link on which this end wrote nothing for a whole keepalive interval gets
   * a PADDING cell. Default 10 s. 0 = never (only for tests that need a silent peer).
   */
  keepaliveMs?: number;
  /**
   * SPEC.md §1.8: an open link on which nothing at all (PADDING included) was received for this
   * long is closed with LINK_PEER_SILENT. Default 45 s; 0 = never. Must exceed 2 × keepaliveMs.
   */
  livenessTimeoutMs?: number;
}
export const DEFAULT_BATCH_CELLS = 128;
export const DEFAULT_HIGH_WATER_MARK = 256 * 1024;
export const DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_KEEPALIVE_MS = 10_000;
export const DEFAULT_LIVENESS_TIMEOUT_MS = 45_000;
/**
 * SPEC.md §8.3 step 12: bytes handed to the socket before further batches wait in the channel's
 * own queue, where a RECEIPT_* cell can still overtake them. Two default batches.
 */
export const SOCKET_WINDOW_BYTES = 2 * DEFAULT_BATCH_CELLS * CELL_LEN;
/** SPEC.md §8.3 step 12: the link-level cells written ahead of queued circuit cells. */
const AHEAD = new Set<number>([
  CellCommand.RECEIPT_PROPOSE, CellCommand.RECEIPT_COUNTERSIGN, CellCommand.RECEIPT_REJECT, CellCommand.RECEIPT_REQUEST,
]);
/** A batch taken from the batcher (or a cell sent ahead) that waits for room in the socket window. */
interface Held { buf: Buffer; counted: number; ahead: boolean }
/** Refuse bad tuning before any socket exists (CONFIG_INVALID), not inside a socket event. */
export function checkLinkTuning(t: LinkTuning & { timeoutMs?: number }): void {
  const nonNegativeInt = (v: number | undefined, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw err('CONFIG_INVALID', `${name} must be a non-negative integer, got ${v}`);
  };
  nonNegativeInt(t.keepaliveMs, 'keepaliveMs');
  nonNegativeInt(t.livenessTimeoutMs, 'livenessTimeoutMs');
  const ka = t.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  const live = t.livenessTimeoutMs ?? DEFAULT_LIVENESS_TIMEOUT_MS;
  if (live > 0 && ka > 0 && live <= 2 * ka) throw err('CONFIG_INVALID', `livenessTimeoutMs (${live}) must exceed 2 × keepaliveMs (${ka})`);
  const positiveInt = (v: number | undefined, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw err('CONFIG_INVALID', `${name} must be a positive integer, got ${v}`);
  };
  positiveInt(t.batchCells, 'batchCells');
  positiveInt(t.highWaterMark, 'highWaterMark');
  positiveInt(t.maxBufferedBytes, 'maxBufferedBytes');
  positiveInt(t.timeoutMs, 'timeoutMs');
}

const EMPTY = new Uint8Array(0);

/** After a graceful close(), how long the TLS close may take before the socket is destroyed. */
const GRACEFUL_CLOSE_MS = 2_000;

/** @internal What connectLink / LinkListener hand a new Channel. */
export interface ChannelInit extends LinkTuning {
  socket: TLSSocket;
  /** The socket reads into a reused buffer (reader.ts; sockets tls.connect made): else 'data' events. */
  reader?: LinkReader;
  isInitiator: boolean;
  /** Present ⇒ this end sends AUTHENTICATE (a responder always; a relay initiator). */
  identity?: Ed25519KeyPair;
  /** Initiator only: close with LINK_IDENTITY_MISMATCH unless the responder proves this key. */
  expectedIdentity?: Buffer;
  /** SHA-256 of the certificate this end presented, or null if it presented none. */
  ownCertHash: Buffer | null;
  versions: readonly number[];
  handshakeTimeoutMs: number;
  metrics: LinkMetrics;
  log: Logger;
  onOpen: (ch: Channel) => void;
  onFail: (e: BitcloudError) => void;
}

/**
 * SPEC.md §8.1: what a link counts for proof of bandwidth. src/bandwidth's LinkCounter is one;
 * the owner attaches it (attachCounter) only on links where both ends proved an identity.
 */
export interface LinkCellCounter {
  onSent(): void;
  onReceived(): void;
  onCircuitOpened(): void;
  onCircuitClosed(): void;
  /** SPEC.md §8.1.7: this node wrote a circuit cell other than DESTROY on `circId`. */
  onCircuitCarried?(circId: number): void;
}

type State = 'await-auth' | 'await-first' | 'await-versions' | 'open' | 'closed';

/**
 * An open link. Events (CellChannelEvents, cell-channel.ts):
 *  - 'cell' (cell: Cell): every cell but PADDING and the handshake cells, in order. The Cell
 *    object and its payload are REUSED: they are valid only during the event; copy what you keep.
 *  - 'drain' (): after `send` returned false, the write buffer fell back below the high-water mark.
 *  - 'close' (err?: BitcloudError): once; `err` is absent for a clean close by either end.
 * Attach listeners in the same tick that connectLink resolves / onChannel runs: cells that
 * arrived with the handshake are delivered from the next macrotask on.
 */
export class Channel extends EventEmitter<CellChannelEvents> implements CellChannel {
  readonly isInitiator: boolean;
  readonly remoteAddress: string;
  /** 'readEnd' follows the cells of every read (cell-channel.ts). */
  readonly batchesReads = true;

  private state: State;
  private sent = 0;
  private received = 0;
  private peerId: Buffer | null = null;
  private version = 0;
  /** 'end' arrived while cells that came with the handshake wait for the owner (open()); handled after them. */
  private endPending = false;
  private readonly socket: TLSSocket;
  private readonly init: ChannelInit;
  private readonly asm = new CellAssembler();
  private readonly out: CellBatcher;
  private readonly circIds: CircIdAllocator;
  private readonly highWater: number;
  private readonly maxBuffered: number;
  private readonly metrics: LinkMetrics;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null;
  /** SPEC.md §1.8: the keepalive / liveness tick of an open link. */
  private liveTimer: NodeJS.Timeout | null = null;
  private sentAtTick = 0;
  private receivedAtTick = 0;
  private silentMs = 0;
  /** Bytes read from the socket (parsed or held while reading is paused): proof the peer is alive. */
  private rxBytes = 0;
  private flushScheduled = false;
  private needDrain = false;
  private readPaused = false;
  private holdTimer: NodeJS.Timeout | null = null;
  /** Set for one macrotask after the handshake so owners can attach listeners first. */
  private deferring = false;
  /** Chunks received but not yet parsed (reading paused or deferred), oldest first. */
  private pending: Buffer[] = [];
  /**
   * SPEC.md §8.1: the proof-of-bandwidth counter, or null (anonymous links, nodes that do not count).
   * Counting lives here, not in the circuit switch, because §8.1.3 counts a cell when it is
   * written to / read from the link, in link order — the only place that sees exactly that order
   * relative to the RECEIPT_PROPOSE boundary cell (§8.1.4).
   */
  private counter: LinkCellCounter | null = null;
  /** SPEC.md §8.3 step 12: batches not yet handed to the socket, oldest first (cells sent ahead at the front). */
  private held: Held[] = [];
  /** SPEC.md §1.7: cells held unread are being handed over after the peer's end (deliverHeld). */
  private deliveringHeld = false;
  private heldBytes = 0;
  /** Counted circuit cells (§8.1) in the open batch, and in the open batch plus `held`. */
  private batchCounted = 0;
  private queuedCounted = 0;

  /** @internal Use connectLink or createLinkListener. */
  constructor(init: ChannelInit) {
    super();
    this.init = init;
    this.socket = init.socket;
    this.isInitiator = init.isInitiator;
    this.remoteAddress = `${init.socket.remoteAddress ?? '?'}:${init.socket.remotePort ?? '?'}`;
    this.metrics = init.metrics;
    this.log = init.log;
    this.out = new CellBatcher(init.batchCells ?? DEFAULT_BATCH_CELLS);
    this.highWater = Math.max(init.highWaterMark ?? DEFAULT_HIGH_WATER_MARK, this.out.capacityBytes);
    this.maxBuffered = Math.max(init.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, this.highWater + this.out.capacityBytes);
    this.circIds = new CircIdAllocator(init.isInitiator);
    this.state = init.isInitiator ? 'await-auth' : 'await-first';
    this.timer = setTimeout(() => this.fail(err('LINK_HANDSHAKE_TIMEOUT', `link handshake not done in ${init.handshakeTimeoutMs} ms`)), init.handshakeTimeoutMs);

    const s = this.socket;
    if (!init.reader) s.on('data', (chunk: Buffer) => this.onData(chunk, false));
    s.on('end', () => this.onEnd());
    s.on('error', (e: NodeJS.ErrnoException) => this.deliverHeld() || this.fail(err(this.state === 'open' ? 'LINK_IO' : 'LINK_HANDSHAKE_FAILED', `socket error: ${e.code ?? e.message}`, { errno: e.code }, e)));
    s.on('close', () => this.onSocketClose());
    s.on('drain', () => this.maybeDrain());
    this.startHandshake();
    // Only now, with the peer's certificate hash read and our own flight sent: the reader hands
    // over at once what it held (the peer's first flight can be read before this Channel exists),
    // as 'data' events would only have come after this constructor.
    if (init.reader) init.reader.attach((chunk, reused) => this.onData(chunk, reused), (e) => this.fail(e));
  }

  get closed(): boolean { return this.state === 'closed'; }
  /** Cells accepted by send() since the link opened (handshake cells not included). */
  get cellsSent(): number { return this.sent; }
  /** Cells received since the link opened, PADDING included (handshake cells not included). */
  get cellsReceived(): number { return this.received; }
  /** The Ed25519 identity the peer proved (SPEC.md §1.3); null for an anonymous initiator. */
  get peerIdentity(): Buffer | null { return this.peerId; }
  /** SPEC.md §8.1: circuit cells only (circId ≠ 0); CREATE2 opens and DESTROY closes a circuit. Integer bumps only. */
  private count(received: boolean, circId: number, command: number): void {
    const counter = this.counter!;
    if (circId === 0) return;
    if (received) counter.onReceived();
    else {
      counter.onSent();
      if (command !== CellCommand.DESTROY) counter.onCircuitCarried?.(circId);
    }
    if (command === CellCommand.CREATE2) counter.onCircuitOpened();
    else if (command === CellCommand.DESTROY) counter.onCircuitClosed();
  }

  /**
   * SPEC.md §8.1.1: count circuit cells on this link from now on. Refused (LINK_PROTOCOL_VIOLATION)
   * on a link whose peer stayed anonymous: the client-to-guard hop is never counted.
   */
  attachCounter(counter: LinkCellCounter): void {
    if (this.peerId === null) throw err('LINK_PROTOCOL_VIOLATION', 'an anonymous link is never counted');
    this.counter = counter;
  }
  /** The negotiated link protocol version (SPEC.md §1.4); 0 before the handshake ends. */
  get linkVersion(): number { return this.version; }
  /** Bytes waiting to be written (SPEC.md §1.6): the open batch, the batches held behind the socket window (§8.3 step 12) and the socket's own buffer. */
  get bufferedBytes(): number { return this.out.pendingBytes + this.heldBytes + this.socket.writableLength; }
  /**
   * SPEC.md §8.3 step 12: counted circuit cells (§8.1) this end has counted as sent but that still
   * wait in the channel's queue beyond the socket window (the open batch is handed on first), so
   * that a RECEIPT_* cell sent now is written before them. The
   * initiator's segment cut moves them to the next segment (they follow the PROPOSE on the wire).
   */
  queuedCountedCells(): number {
    // What fits the socket window goes out first (as sendAhead would write it), then count.
    if (this.state === 'open') this.flush();
    return this.queuedCounted;
  }

  // ---- handshake (SPEC.md §1.1, §1.3, §1.4) ----

  /**
   * Read once, right after the TLS handshake: the peer certificate must not be re-read later,
   * because a TLS 1.3 NewSessionTicket can replace the session object, after which OpenSSL may
   * report no peer certificate at all.
   */
  private peerCertHash: Buffer = NO_CERT_HASH;

  private binding(role: AuthRoleValue): TlsBinding {
    const peerHash = this.peerCertHash;
    const own = this.init.ownCertHash ?? NO_CERT_HASH;
    return {
      exporterValue: exportLinkAuthValue(this.socket, role),
      responderCertHash: this.isInitiator ? peerHash : own,
      initiatorCertHash: this.isInitiator ? own : peerHash,
    };
  }

  private startHandshake(): void {
    try {
      const { identity } = this.init;
      this.peerCertHash = peerCertificateHash(this.socket);
      if (!this.isInitiator && !identity) throw err('LINK_AUTH_FAILED', 'a responder must have an identity');
      // SPEC.md §1.2: no resumption — H_RESP / H_INIT need the certificates of a full handshake.
      if (this.socket.isSessionReused()) throw err('LINK_TLS_FAILED', 'resumed TLS session');
      // SPEC.md §1.1: each end sends its whole flight at once: [AUTHENTICATE] then VERSIONS.
      if (identity) {
        const role = this.isInitiator ? AuthRole.INITIATOR : AuthRole.RESPONDER;
        this.out.append(0, CellCommand.AUTHENTICATE, makeAuthenticate(role, identity, this.binding(role)));
      }
      this.out.append(0, CellCommand.VERSIONS, encodeVersions([...this.init.versions]));
      this.flush(true);
    } catch (e) {
      this.fail(e);
    }
  }

  private onHandshakeCell(cell: Cell): void {
    const cmd = cell.command;
    if (cmd === CellCommand.AUTHENTICATE && (this.state === 'await-auth' || this.state === 'await-first')) {
      // The initiator checks the responder; a responder checks an initiator that chose to authenticate.
      const peerRole = this.isInitiator ? AuthRole.RESPONDER : AuthRole.INITIATOR;
      const a = decodeAuthenticate(cell.payload);
      this.peerId = verifyAuthenticate(a, peerRole, this.binding(peerRole), this.isInitiator ? this.init.expectedIdentity : undefined);
      this.state = 'await-versions';
      return;
    }
    if (cmd === CellCommand.VERSIONS && (this.state === 'await-versions' || this.state === 'await-first')) {
      this.version = negotiateVersion(this.init.versions, decodeVersions(cell.payload));
      this.open();
      return;
    }
    throw err('LINK_PROTOCOL_VIOLATION', `cell command ${cmd} during the handshake (state ${this.state})`);
  }

  private open(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.state = 'open';
    const role = this.isInitiator ? 'initiator' : 'responder';
    this.metrics.opened.labels(role).inc();
    this.metrics.open.labels(role).inc();
    this.log.debug({ remote: this.remoteAddress, version: this.version, authenticated: this.peerId !== null }, 'link open');
    // Cells that came with the handshake wait one macrotask, so that the owner — handed this
    // channel by a resolved promise — has attached its 'cell' listener before they are emitted.
    this.deferring = true;
    setImmediate(() => { this.deferring = false; this.drainPending(); });
    this.startLiveness();
    this.init.onOpen(this);
  }

  // ---- keepalive and liveness (SPEC.md §1.8) ----

  /**
   * One timer per open link, ticking every keepalive interval (or every liveness timeout / 4 when
   * keepalives are off). Cheap on the hot path: it compares the cell counters with their values
   * at the previous tick instead of stamping every cell with a clock.
   */
  private startLiveness(): void {
    const ka = this.init.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    const live = this.init.livenessTimeoutMs ?? DEFAULT_LIVENESS_TIMEOUT_MS;
    if (ka === 0 && live === 0) return;
    const tick = ka > 0 ? ka : Math.max(1, Math.floor(live / 4));
    this.sentAtTick = this.sent;
    this.receivedAtTick = this.rxBytes;
    this.paddingSent = 0;
    this.liveTimer = setInterval(() => {
      if (this.state !== 'open') return;
      if (ka > 0 && this.sent + this.paddingSent === this.sentAtTick) this.sendPadding();
      this.sentAtTick = this.sent + this.paddingSent;
      // While this end holds reading (backpressure, §1.6) the peer's bytes wait in the kernel:
      // silence then proves nothing.
      if (this.rxBytes !== this.receivedAtTick || this.readPaused) {
        this.receivedAtTick = this.rxBytes;
        this.silentMs = 0;
      } else if (live > 0) {
        this.silentMs += tick;
        if (this.silentMs >= live) {
          this.log.info({ code: 'LINK_PEER_SILENT', silentMs: this.silentMs }, 'closing a link whose peer sent nothing');
          this.fail(err('LINK_PEER_SILENT', `nothing received on the link for ${this.silentMs} ms`, { silentMs: this.silentMs }));
        }
      }
    }, tick);
    this.liveTimer.unref();
  }

  private paddingSent = 0;

  /**
   * SPEC.md §1.8: one keepalive PADDING — only when nothing this end queued earlier still waits to
   * be written (as Tor keeps alive only a connection whose outbuf is empty). Bytes still waiting
   * after a whole silent interval mean the peer is not reading; a PADDING queued behind them would
   * never reach it sooner and would only grow the backlog, one cell per interval, without bound
   * (the cap of §1.6 is checked by send(), which an idle link never calls).
   */
  private sendPadding(): void {
    if (this.bufferedBytes > 0) return;
    if (this.out.append(0, CellCommand.PADDING, EMPTY)) this.flush();
    else if (!this.flushScheduled) { this.flushScheduled = true; setImmediate(this.flushSoon); }
    this.paddingSent++;
  }

  // ---- reading (SPEC.md §1.6) ----

  /** `reused`: the chunk is the reader's buffer (reader.ts), overwritten by the next read: copy what is kept. */
  private onData(chunk: Buffer, reused: boolean): void {
    if (this.state === 'closed') return;
    this.rxBytes += chunk.length;
    this.metrics.bytesIn.inc(chunk.length);
    if (this.pending.length > 0 || this.readPaused || this.deferring) {
      this.pending.push(reused ? Buffer.from(chunk) : chunk);
      this.socket.pause();
      return;
    }
    this.consume(chunk, reused);
  }

  private get blocked(): boolean {
    return this.readPaused || this.deferring || this.state === 'closed';
  }

  /** Hot path: parse whole cells out of `chunk`; keeps the rest pending if reading stops. */
  private consume(chunk: Buffer, reused = false): void {
    let off = 0;
    let n = 0;
    try {
      while (off < chunk.length) {
        off = this.asm.take(chunk, off);
        if (!this.asm.complete) break;
        const cell = this.asm.parse();
        if (this.state !== 'open') this.onHandshakeCell(cell);
        else { n++; this.onOpenCell(cell); }
        if (this.blocked) break;
      }
    } catch (e) {
      this.fail(e);
      return;
    } finally {
      if (n > 0) { this.received += n; this.metrics.cellsIn.inc(n); }
    }
    // Gathered cells are handled now, before anything else happens (no cell waits for a later read).
    if (n > 0 && this.state === 'open') this.emit('readEnd');
    if (off < chunk.length && this.state !== 'closed') {
      // One view (or copy, of a reused read buffer) per pause, not per cell.
      this.pending.unshift(reused ? Buffer.from(chunk.subarray(off)) : chunk.subarray(off));
      this.socket.pause();
    }
  }

  /** Hot path: one cell on an open link. */
  private onOpenCell(cell: Cell): void {
    const cmd = cell.command;
    if (cmd === CellCommand.PADDING) return;
    if (LAT_TRACE) latTrace('link.rx', `${cell.circId}:${cmd}`);
    if (cmd === CellCommand.VERSIONS || cmd === CellCommand.AUTHENTICATE) {
      throw err('LINK_PROTOCOL_VIOLATION', `handshake cell ${cmd} on an open link`);
    }
    // SPEC.md §8.1: circuit cells count as received when read. Out of line, so that the per-cell
    // path of links that count nothing stays as small as before (one null check).
    if (this.counter !== null) this.count(true, cell.circId, cmd);
    // SPEC.md §1.7: a CREATE2 held unread until the peer's end came is dropped, not handled: its
    // answer would never be read, and a relay would spend a handshake on it (a flooder held by the
    // creation limits, §7b.9, could otherwise close its link to have all it sent handled at once).
    if (this.deliveringHeld && cmd === CellCommand.CREATE2) { this.metrics.cellsDropped.labels('create_after_end').inc(); return; }
    // CREATE2 id-half and id-in-use checks belong to the circuit layer (SPEC.md §2.1: it answers
    // with DESTROY, the link stays up).
    this.emit('cell', cell);
  }

  private drainPending(): void {
    // The peer's end came during open()'s defer (endPending): these are held cells too (§1.7).
    this.deliveringHeld = this.endPending;
    try {
      while (this.pending.length > 0 && !this.blocked) this.consume(this.pending.shift()!);
    } finally {
      this.deliveringHeld = false;
    }
    if (this.pending.length === 0 && !this.blocked) {
      if (this.endPending) this.onEnd();
      else this.socket.resume();
    }
  }

  /** Stop emitting cells (and reading the socket) until resumeReading(); TCP then pushes back on the peer. */
  pauseReading(): void {
    if (this.state === 'closed') return;
    this.readPaused = true;
    this.socket.pause();
  }

  /**
   * Pause reading for `ms`, then resume (SPEC.md §7b.9: a link over its circuit-creation rate).
   * A hold while one runs extends it; closing the link clears it.
   */
  holdReading(ms: number): void {
    if (this.state === 'closed') return;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.pauseReading();
    this.holdTimer = setTimeout(() => { this.holdTimer = null; this.resumeReading(); }, ms);
    this.holdTimer.unref();
  }

  /** Undo pauseReading(). Held cells are emitted from the next macrotask, never inside this call. */
  resumeReading(): void {
    if (!this.readPaused || this.state === 'closed') return;
    this.readPaused = false;
    setImmediate(() => this.drainPending());
  }

  /**
   * SPEC.md §1.7: the peer's end of the link came (its FIN, the socket closing, or a socket error
   * once it went away) while cells it sent before wait here because reading is held or deferred.
   * Nothing more will come, so they are handled now, in order, before the link closes: a last
   * DESTROY or RELAY END is not lost. A CREATE2 among them is dropped unhandled (onOpenCell), its
   * answer would not be read. A pause asked for meanwhile no longer holds them. Returns
   * false (so that the caller goes on to close the link) unless a handler closed it.
   */
  private deliverHeld(): boolean {
    this.deliveringHeld = true;
    try {
      while (this.pending.length > 0 && this.state === 'open') {
        this.readPaused = false;
        this.deferring = false;
        this.consume(this.pending.shift()!);
      }
    } finally {
      this.deliveringHeld = false;
    }
    return this.state === 'closed';
  }

  private onEnd(): void {
    // The owner's 'cell' listener may not be there yet (an 'end' can come before the promise that
    // hands over this channel has settled): the end waits for the one-macrotask defer of open().
    if (this.deferring && this.pending.length > 0) { this.endPending = true; return; }
    if (this.deliverHeld() || this.state === 'closed') return;
    if (this.asm.partialBytes > 0) this.fail(err('CELL_TRUNCATED', `stream ended inside a cell (${this.asm.partialBytes} of 514 bytes)`));
    else if (this.state !== 'open') this.fail(err('LINK_HANDSHAKE_FAILED', 'peer closed the link during the handshake'));
    else this.finish(undefined, false);
  }

  private onSocketClose(): void {
    if (this.deliverHeld() || this.state === 'closed') return;
    if (this.state !== 'open') this.fail(err('LINK_HANDSHAKE_FAILED', 'link closed during the handshake'));
    else if (this.asm.partialBytes > 0) this.fail(err('CELL_TRUNCATED', 'link closed inside a cell'));
    else this.finish(undefined, false);
  }

  // ---- writing (SPEC.md §1.6) ----

  /**
   * Queue one cell. Hot path: the cell is encoded straight into the current batch buffer.
   * Returns false when the caller should wait for 'drain' (bytes waiting > high-water mark);
   * the cell was still queued. A send past the hard cap drops the cell, closes the link with
   * LINK_OUTPUT_OVERFLOW and returns false. Throws LINK_CLOSED on a closed link, CELL_* on a bad cell,
   * LINK_PROTOCOL_VIOLATION for VERSIONS/AUTHENTICATE (the channel sends those itself) and for
   * CREATE2 from a responder to an anonymous initiator.
   */
  send(circId: number, command: number, payload: Uint8Array): boolean {
    if (this.state !== 'open') throw err(this.state === 'closed' ? 'LINK_CLOSED' : 'LINK_NOT_OPEN', 'link is not open');
    if (command === CellCommand.VERSIONS || command === CellCommand.AUTHENTICATE) throw err('LINK_PROTOCOL_VIOLATION', 'handshake cells are sent by the channel itself');
    // SPEC.md §1.3: nobody builds a circuit towards an anonymous initiator.
    if (command === CellCommand.CREATE2 && !this.isInitiator && this.peerId === null) throw err('LINK_PROTOCOL_VIOLATION', 'CREATE2 towards an anonymous initiator');
    const waiting = this.out.pendingBytes + this.heldBytes + this.socket.writableLength;
    if (waiting + CELL_LEN > this.maxBuffered) {
      this.fail(err('LINK_OUTPUT_OVERFLOW', `more than ${this.maxBuffered} bytes waiting to be written`, { waiting }));
      return false;
    }
    if (circId === 0 && AHEAD.has(command)) {
      this.sendAhead(command, payload);
      this.sent++;
      if (waiting + CELL_LEN > this.highWater) { this.needDrain = true; return false; }
      return true;
    }
    // SPEC.md §8.1: a circuit cell counts as sent once it is in the link's byte order (the batch).
    if (this.counter !== null && circId !== 0) { this.batchCounted++; this.queuedCounted++; }
    if (LAT_TRACE) latTrace('link.send', `${circId}:${command}`);
    if (this.out.append(circId, command, payload)) this.flush();
    else if (!this.flushScheduled) { this.flushScheduled = true; setImmediate(this.flushSoon); }
    this.sent++;
    if (this.counter !== null) this.count(false, circId, command);
    if (waiting + CELL_LEN > this.highWater) { this.needDrain = true; return false; }
    return true;
  }

  private readonly flushSoon = (): void => { this.flushScheduled = false; this.flush(); };
  // Per batch: recycle the buffer, and report 'drain' as soon as the backlog is under the mark
  // (the socket's own 'drain' only fires when its buffer empties after a refused write).
  private readonly onWritten = (): void => { this.out.written(); this.pump(); this.maybeDrain(); };
  private readonly onAheadWritten = (): void => { this.pump(); this.maybeDrain(); };

  /**
   * Close the open batch and queue it; `pump` hands queued batches to the socket, one write per
   * batch. `handshake`: the flight of SPEC.md §1.1, not counted as cells.
   */
  private flush(handshake = false, all = false): void {
    if (this.state === 'closed' && !this.socket.writable) return;
    const batch = this.out.take();
    if (batch) {
      if (!handshake) this.metrics.cellsOut.inc(batch.length / CELL_LEN);
      this.metrics.bytesOut.inc(batch.length);
      this.held.push({ buf: batch, counted: this.batchCounted, ahead: false });
      this.heldBytes += batch.length;
      this.batchCounted = 0;
    }
    this.pump(all);
  }

  /**
   * SPEC.md §8.3 step 12: the socket holds at most SOCKET_WINDOW_BYTES of ours (Node's buffer);
   * the rest waits in `held`, where a RECEIPT_* cell can go ahead of it. `all`: hand over
   * everything (a graceful close writes what is queued, then close_notify).
   */
  private pump(all = false): void {
    while (this.held.length > 0 && (all || this.socket.writableLength < SOCKET_WINDOW_BYTES)) {
      if (this.state === 'closed' && !this.socket.writable) return;
      const h = this.held.shift()!;
      this.heldBytes -= h.buf.length;
      this.queuedCounted -= h.counted;
      if (LAT_TRACE) latTrace('link.write', h.buf.length);
      this.socket.write(h.buf, h.ahead ? this.onAheadWritten : this.onWritten);
    }
  }

  /**
   * SPEC.md §8.3 step 12: a RECEIPT_* cell goes ahead of every circuit cell still waiting in the
   * channel beyond the socket window; only what the socket holds (at most the window) precedes it.
   */
  private sendAhead(command: number, payload: Uint8Array): void {
    const cell = encodeCell(0, command, payload);
    // The open batch is queued and what fits the socket window written first: the cell overtakes
    // only what would otherwise wait in the channel.
    this.flush();
    let i = 0;
    while (i < this.held.length && this.held[i].ahead) i++; // after cells sent ahead before it
    this.held.splice(i, 0, { buf: cell, counted: 0, ahead: true });
    this.heldBytes += cell.length;
    this.metrics.cellsOut.inc(1);
    this.metrics.bytesOut.inc(cell.length);
    this.pump();
  }

  private maybeDrain(): void {
    if (this.needDrain && this.state === 'open' && this.bufferedBytes <= this.highWater) {
      this.needDrain = false;
      this.emit('drain');
    }
  }

  // ---- circuit ids (SPEC.md §1.5) ----
  /** SPEC.md §1.5: a random free id of this end's half; `taken`: ids the owner holds on this link. */
  allocateCircId(taken?: (id: number) => boolean): number { return this.circIds.allocate(taken); }
  releaseCircId(id: number): void { this.circIds.release(id); }

  // ---- closing (SPEC.md §1.7) ----

  /** Close cleanly: queued cells are written first, then TLS close_notify. Emits 'close' without an error. */
  close(reason?: string): void {
    if (this.state === 'closed') return;
    this.log.debug({ remote: this.remoteAddress, reason }, 'link closing');
    this.finish(undefined, true);
  }

  /** @internal Close at once (listener shutdown). */
  destroy(): void {
    if (this.state !== 'closed') this.finish(undefined, false);
  }

  private fail(e: unknown): void {
    if (this.state === 'closed') return;
    const be = e instanceof BitcloudError ? e : err('LINK_INTERNAL', String((e as Error)?.message ?? e), undefined, e);
    this.metrics.errors.labels(be.code).inc();
    this.log.debug({ remote: this.remoteAddress, code: be.code, reason: be.message }, 'link failed');
    // SPEC.md §1.7: end with close_notify after what is already queued (the peer then reads our
    // flight — e.g. our VERSIONS, to see why — instead of losing it to a reset); but a peer that
    // does not read, or a broken socket, gets no grace.
    this.finish(be, be.code !== 'LINK_OUTPUT_OVERFLOW' && be.code !== 'LINK_IO');
  }

  private finish(e: BitcloudError | undefined, graceful: boolean): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.liveTimer) { clearInterval(this.liveTimer); this.liveTimer = null; }
    if (this.holdTimer) { clearTimeout(this.holdTimer); this.holdTimer = null; }
    this.pending = [];
    if (wasOpen) {
      const role = this.isInitiator ? 'initiator' : 'responder';
      this.metrics.closed.labels(role).inc();
      this.metrics.open.labels(role).dec();
    } else {
      const he = e ?? err('LINK_HANDSHAKE_FAILED', 'link closed during the handshake');
      this.metrics.handshakeFailures.labels(he.code).inc();
      this.init.onFail(he);
    }
    if (graceful && this.socket.writable) {
      this.flush(false, true);
      this.socket.end();
      setTimeout(() => this.socket.destroy(), GRACEFUL_CLOSE_MS).unref();
    } else {
      this.socket.destroy();
    }
    this.emit('close', e);
  }
}
