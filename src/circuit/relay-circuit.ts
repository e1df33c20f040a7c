// One circuit as a relay (or any circuit-ending node) sees it (SPEC.md §7b.2–§7b.5): the
// previous hop's link and circuit id, this hop's relay crypto, and either a next hop
// (forwarding) or a StreamEdge (streams end here). Owned and dispatched by CircuitSwitch, of
// which it sees only the narrow RelayCircuitHost below.
import { err, errorCode, type BitcloudError } from '../errors';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import { CellCommand, CELL_PAYLOAD_LEN } from '../wire/cell';
import { PROBE_ECHO_LEN, RELAY_COMMAND_OFFSET, RELAY_HEADER_LEN, RelayCommand, decodeRelayPayload, encodeRelayPayloadInto, relayCommandName, relayDataLength } from '../wire/relay-msg';
import {
  DestroyReason, decodeBegin, decodeBeginDir, decodeBeginStorage, decodeCreated2,
  decodeExtend2, decodeResolve, decodeTruncate, encodeConnected, encodeCreate2, encodeEnd, encodeExtended2, encodeResolved,
  encodeTruncated, type BeginBody, type ConnectedBody, type ResolvedAnswer,
} from '../wire/messages';
import type { RelayHopCrypto } from '../crypto/hop-crypto';
import { relayCryptoForHtype } from '../crypto/relay-crypto';
import type { CellChannel } from '../link/cell-channel';
import type { Logger } from '../ops/log';
import { CellQueue, type QueueBudget, type QueueOwner } from './cell-queue';
import { originRun, type CellRun, type OriginOwner, type OriginRun, type RunOwner } from './cell-run';
import { MAX_RELAY_EARLY } from './constants';
import { TokenBucket } from './dos-limits';
import { RELAY_EDGE_MAX_BUFFERED, StreamEdge, type EdgeCircuit } from './edge';
import { UNSERVED_STREAM_REFUSAL, destroyReasonForExtendFailure, endReasonForBeginFailure } from './end-reasons';
import type { CircuitMetrics } from './metrics';
import type { CircuitStream } from './stream';
import type { IncomingStream, RendezvousCircuit, SwitchHooks, SwitchLimits } from './types';

/** Cells flushed per circuit per round when a link drains (fairness between circuits). */
const FLUSH_BATCH = 32;

/** @internal A link as the switch serves it. */
export interface LinkState<C extends CellChannel = CellChannel> {
  ch: C;
  circuits: Map<number, RelayCircuit>;
  /** The link's write buffer passed its high-water mark; queue until 'drain'. */
  congested: boolean;
  /** Circuits with cells queued for this link. */
  waiting: Set<RelayCircuit>;
  /** Circuits whose streams wait for this link to take cells again. */
  blockedEdges: Set<RelayCircuit>;
  closed: boolean;
  /** The channel emits 'readEnd': its RELAY cells are gathered into runs (cell-run.ts). */
  batched: boolean;
  /** CREATE2 cells of this link waiting in the onionskin queue (SPEC.md §7b.9), by circuit id. */
  pendingCreates?: Map<number, { cancelled: boolean }>;
}

/**
 * What a RelayCircuit uses of the switch that owns it (CircuitSwitch implements it): the node's
 * identity, the shared limits, budget, metrics, log and hooks; attaching the link to a next hop;
 * DESTROY on a circuit id; forgetting a destroyed circuit.
 */
export interface RelayCircuitHost {
  readonly identity: Buffer;
  readonly limits: Readonly<SwitchLimits>;
  readonly budget: QueueBudget;
  readonly metrics: CircuitMetrics;
  readonly log: Logger;
  readonly hooks: SwitchHooks;
  /** A monotonic clock in ms (the stream-creation bucket, SPEC.md §7b.9). */
  readonly clock: () => number;
  attach(ch: CellChannel): LinkState;
  sendDestroy(link: LinkState, circId: number, reason: number): void;
  forget(circ: RelayCircuit, reason: number, code?: string): void;
}

/** One payload buffer reused for every cell this node originates (single-threaded, sent at once). */
const SCRATCH = Buffer.alloc(CELL_PAYLOAD_LEN);

/** CellRun tags of a relay circuit's two directions. */
export const RUN_FROM_PREV = 0;
export const RUN_FROM_NEXT = 1;

export class RelayCircuit implements EdgeCircuit, QueueOwner, RendezvousCircuit, RunOwner, OriginOwner {
  next: LinkState | null = null;
  /** SPEC.md §9.21.5: the circuit this one is joined to at a rendezvous point. */
  private joined: RelayCircuit | null = null;
  nextId = 0;
  private earlyCells = 0;
  private extending = false;
  /**
   * Which extension is current: a TRUNCATE (or a later EXTEND2) makes a pending one stale, and a
   * stale one's link, once it comes, is left alone (SPEC.md §7b.3, §7b.5): else its circuit id on
   * the next link would be overwritten by the next extension's and never released or destroyed.
   */
  private extendGen = 0;
  private edge: StreamEdge | null = null;
  private readonly qPrev: CellQueue;
  private readonly qNext: CellQueue;
  private closed = false;
  private readonly receivedDigest = (): Uint8Array => this.crypto.lastDigest();

  constructor(private readonly sw: RelayCircuitHost, readonly prev: LinkState, readonly prevId: number, private readonly crypto: RelayHopCrypto) {
    this.qPrev = new CellQueue(sw.budget, this, sw.limits.maxQueuedCellsPerCircuit);
    this.qNext = new CellQueue(sw.budget, this, sw.limits.maxQueuedCellsPerCircuit);
  }

  get isClosed(): boolean { return this.closed; }
  get streamCount(): number { return this.edge?.streams.size ?? 0; }
  /** Name resolutions waiting for their answer, RESOLVE and BEGIN to a name (SPEC.md §7b.7). */
  private resolving = 0;
  /** RESOLVE requests waiting for their answer: each counts as a stream (SPEC.md §7b.7, §7b.9). */
  private resolveRequests = 0;
  /** SPEC.md §7b.9: this circuit's stream-creation bucket, made at its first stream-opening message. */
  private streamBucket: TokenBucket | null = null;
  /** Streams ending at this node on this circuit (status views, tests). */
  streams(): CircuitStream[] { return this.edge ? [...this.edge.streams.values()] : []; }
  /**
   * True when a next hop exists (this node forwards) or an extension is in progress (it will):
   * such a circuit takes no introduction or rendezvous role (SPEC.md §9.21.4, §9.21.5).
   */
  get extended(): boolean { return this.next !== null || this.extending; }
  /**
   * SPEC.md §7b.7, §9.21.4, §9.21.5: the previous hop is not a relay the consensus lists (a client,
   * or a hidden node under its pseudonym): no introduction or rendezvous role then. Read when asked.
   */
  get oneHop(): boolean { return this.isOneHop(); }

  // ---- cells from the links (hot path) ----

  /** RELAY / RELAY_EARLY from the previous hop: peel one layer, then handle or forward. */
  fromPrev(command: number, payload: Buffer): void {
    if (command === CellCommand.RELAY_EARLY && ++this.earlyCells > MAX_RELAY_EARLY) {
      throw err('RELAY_EARLY_LIMIT', `more than ${MAX_RELAY_EARLY} RELAY_EARLY cells on one circuit`);
    }
    this.sw.metrics.cellsOutbound++;
    if (this.crypto.decryptOutbound(payload, command)) {
      this.deliver(command, payload);
      return;
    }
    if (this.next && !this.extending) {
      this.sendOn(this.next, this.nextId, command, payload, this.qNext);
      return;
    }
    if (this.joined) { this.joined.fromJoined(payload); return; }
    throw err('RELAY_UNRECOGNIZED', 'a relay cell nobody recognized reached the end of the circuit');
  }

  /** RELAY from the next hop: add our layer and send it back toward the client. */
  fromNext(command: number, payload: Buffer): void {
    if (command === CellCommand.RELAY_EARLY) throw err('RELAY_PROTOCOL', 'RELAY_EARLY travelling toward the client');
    originRun.flushOwn(this); // cells originated here took the keystream first
    this.sw.metrics.cellsInbound++;
    this.crypto.encryptInbound(payload, CellCommand.RELAY);
    this.sendOn(this.prev, this.prevId, CellCommand.RELAY, payload, this.qPrev);
  }

  /**
   * A run of consecutive RELAY / RELAY_EARLY cells of this circuit from one read (cell-run.ts),
   * tagged RUN_FROM_PREV or RUN_FROM_NEXT: the same as fromPrev / fromNext on each cell in turn,
   * with this hop's layer removed or added over the whole run in one cipher call. An error ends
   * the circuit as one from the switch's per-cell dispatch does; the rest of the run is dropped.
   */
  flushRun(run: CellRun): void {
    // Destroyed while the run was gathered: its cells are dropped, as the per-cell dispatch drops
    // a closed circuit's, and its layer is wiped already (SPEC.md §5.6.2).
    if (this.closed) return;
    try {
      if (run.tag === RUN_FROM_PREV) this.fromPrevRun(run);
      else this.fromNextRun(run);
    } catch (e) {
      const code = errorCode(e);
      this.sw.metrics.error(code);
      this.sw.log.debug({ code, msg: (e as Error).message }, 'circuit protocol error');
      if (!this.closed) this.destroy(DestroyReason.PROTOCOL, code);
    }
  }

  private fromPrevRun(run: CellRun): void {
    const { n, views, commands } = run;
    const c = this.crypto;
    if (!c.cryptOutboundMany || !c.recognizeOutbound) {
      for (let k = 0; k < n && !this.closed; k++) this.fromPrev(commands[k], views[k]);
      return;
    }
    c.cryptOutboundMany(run.payloads);
    for (let k = 0; k < n && !this.closed; k++) {
      const command = commands[k];
      const payload = views[k];
      if (command === CellCommand.RELAY_EARLY && ++this.earlyCells > MAX_RELAY_EARLY) {
        throw err('RELAY_EARLY_LIMIT', `more than ${MAX_RELAY_EARLY} RELAY_EARLY cells on one circuit`);
      }
      this.sw.metrics.cellsOutbound++;
      if (c.recognizeOutbound(payload)) { this.deliver(command, payload); continue; }
      if (this.next && !this.extending) { this.sendOn(this.next, this.nextId, command, payload, this.qNext); continue; }
      if (this.joined) { this.joined.fromJoined(payload); continue; }
      throw err('RELAY_UNRECOGNIZED', 'a relay cell nobody recognized reached the end of the circuit');
    }
  }

  private fromNextRun(run: CellRun): void {
    const { n, views, commands } = run;
    const c = this.crypto;
    if (!c.encryptInboundMany) {
      for (let k = 0; k < n && !this.closed; k++) this.fromNext(commands[k], views[k]);
      return;
    }
    for (let k = 0; k < n; k++) {
      if (commands[k] === CellCommand.RELAY_EARLY) throw err('RELAY_PROTOCOL', 'RELAY_EARLY travelling toward the client');
    }
    originRun.flushOwn(this);
    c.encryptInboundMany(run.payloads);
    for (let k = 0; k < n && !this.closed; k++) {
      this.sw.metrics.cellsInbound++;
      this.sendOn(this.prev, this.prevId, CellCommand.RELAY, views[k], this.qPrev);
    }
  }

  /** SPEC.md §9.21.5 step 4: a cell from the joined circuit gets our inbound layer, toward our origin. */
  private fromJoined(payload: Buffer): void {
    if (this.closed) return;
    originRun.flushOwn(this); // cells originated here took the keystream first
    this.sw.metrics.cellsInbound++;
    this.crypto.encryptInbound(payload, CellCommand.RELAY);
    this.sendOn(this.prev, this.prevId, CellCommand.RELAY, payload, this.qPrev);
  }

  join(other: RendezvousCircuit): void {
    if (this.joined || this.next || !(other instanceof RelayCircuit) || other === this) throw err('RELAY_PROTOCOL', 'this circuit cannot be joined');
    this.joined = other;
  }

  onCreated2(link: LinkState, circId: number, payload: Buffer): void {
    if (link !== this.next || circId !== this.nextId || !this.extending) throw err('CIRCUIT_PROTOCOL', 'CREATED2 nobody asked for');
    this.extending = false;
    const c = decodeCreated2(payload);
    this.sendRelay(RelayCommand.EXTENDED2, 0, encodeExtended2({ hdata: c.hdata }));
  }

  onDestroy(link: LinkState, circId: number, reason: number): void {
    const fromPrev = link === this.prev && circId === this.prevId;
    this.destroy(reason, undefined, fromPrev ? 'prev' : 'next');
  }

  onLinkClosed(link: LinkState): void {
    this.destroy(DestroyReason.CHANNEL_CLOSED, 'LINK_CLOSED', link === this.prev ? 'prev' : 'next');
  }

  // ---- recognized relay messages ----

  private deliver(cellCommand: number, payload: Buffer): void {
    if (payload[RELAY_COMMAND_OFFSET] === RelayCommand.DATA) {
      // Hot path (uploads): DATA goes to its stream without a decoded object or a view of its own.
      const h = relayDataLength(payload);
      this.ensureEdge().handleData(h.streamId, payload, RELAY_HEADER_LEN, h.length, this.receivedDigest);
      return;
    }
    const m = decodeRelayPayload(payload);
    switch (m.command) {
      case RelayCommand.DATA:
      case RelayCommand.SENDME:
      case RelayCommand.END:
        // Streams (and circuit windows) exist only where a stream was opened; made on first use.
        this.ensureEdge().handle(m.command, m.streamId, m.data, this.receivedDigest);
        return;
      case RelayCommand.EXTEND2:
        if (cellCommand !== CellCommand.RELAY_EARLY) throw err('RELAY_PROTOCOL', 'EXTEND2 outside a RELAY_EARLY cell');
        this.onExtend2(m.data);
        return;
      case RelayCommand.BEGIN:
      case RelayCommand.BEGIN_DIR:
      case RelayCommand.BEGIN_STORAGE:
        this.onBegin(m.command, m.streamId, m.data);
        return;
      case RelayCommand.RESOLVE:
        this.onResolve(m.streamId, m.data);
        return;
      case RelayCommand.TRUNCATE:
        decodeTruncate(m.data);
        this.onTruncate();
        return;
      case RelayCommand.DROP:
        return; // long-range padding
      case RelayCommand.PROBE_ECHO:
        // SPEC.md §8.12: the capacity probe; the last hop sends the body back as it came. (A cell
        // recognized here is for this hop; nothing of it is counted: the measurer's link is anonymous.)
        if (m.data.length !== PROBE_ECHO_LEN) throw err('RELAY_PROTOCOL', `PROBE_ECHO of ${m.data.length} bytes`);
        this.sendRelay(RelayCommand.PROBE_ECHO, 0, Buffer.from(m.data));
        return;
      default: {
        const rv = this.sw.hooks.rendezvous;
        if (rv?.handles(m.command)) { rv.onMessage(this, m.command, Buffer.from(m.data)); return; }
        throw err('RELAY_PROTOCOL', `${relayCommandName(m.command)} is not a message a relay accepts`);
      }
    }
  }

  private ensureEdge(): StreamEdge {
    // SPEC.md §7b.9: the streams' unread data counts under the memory cap with the queued cells.
    return this.edge ??= new StreamEdge(this, {
      maxStreams: this.sw.limits.maxStreamsPerCircuit, maxData: this.crypto.relayDataMax, maxBufferedBytes: RELAY_EDGE_MAX_BUFFERED, destroyReleased: true,
      onUnread: (bytes) => { if (!this.closed || bytes === 0) this.sw.budget.hold(this, bytes); },
    });
  }

  private onExtend2(data: Buffer): void {
    const hook = this.sw.hooks.extend;
    if (LAT_TRACE) latTrace('relay.extend2');
    if (this.next || this.extending) throw err('RELAY_PROTOCOL', 'EXTEND2 on a circuit that already has a next hop');
    // SPEC.md §7b.3: an introduction or rendezvous circuit (waiting or joined) ends here; extended,
    // the cells it should carry to the joined circuit would go to the next hop instead.
    if (this.joined || this.sw.hooks.rendezvous?.hasRole(this)) throw err('RELAY_PROTOCOL', 'EXTEND2 on an introduction or rendezvous circuit');
    const ext = decodeExtend2(data);
    if (!hook) throw err('CIRCUIT_EXTEND_REFUSED', 'this node does not extend circuits');
    if (!relayCryptoForHtype(ext.htype)) throw err('CIRCUIT_UNSUPPORTED_HANDSHAKE', `EXTEND2 handshake type ${ext.htype}`);
    let identity: Buffer | null = null;
    const addresses: Array<{ host: string; port: number }> = [];
    for (const ls of ext.linkSpecifiers) {
      if (ls.type === 'ed25519') identity = ls.id;
      else if (ls.type === 'ipv4' || ls.type === 'ipv6') addresses.push({ host: ls.addr, port: ls.port });
    }
    if (!identity) throw err('MSG_MALFORMED', 'EXTEND2 without an Ed25519 identity');
    if (identity.equals(this.sw.identity)) throw err('CIRCUIT_EXTEND_REFUSED', 'EXTEND2 to this node itself');
    if (this.prev.ch.peerIdentity && identity.equals(this.prev.ch.peerIdentity)) throw err('CIRCUIT_EXTEND_REFUSED', 'EXTEND2 back to the previous hop');
    this.extending = true;
    const gen = ++this.extendGen;
    const create2 = encodeCreate2({ htype: ext.htype, hdata: ext.hdata });
    if (LAT_TRACE) latTrace('relay.extend2-hook');
    // SPEC.md §7b.3 steps 3–4: a failure to get the link, or on it (no free circuit id there,
    // LINK_CIRCID_EXHAUSTED), destroys this circuit; nothing of it may escape as an unhandled rejection.
    const wanted = (): boolean => !this.closed && gen === this.extendGen;
    hook({ identity, addresses, wanted }, this.prev.ch).then((ch) => {
      if (LAT_TRACE) latTrace('relay.extend2-link');
      if (this.closed || gen !== this.extendGen) return; // closed, or truncated meanwhile
      if (ch === this.prev.ch) { this.destroy(DestroyReason.PROTOCOL, 'CIRCUIT_EXTEND_REFUSED'); return; }
      const link = this.sw.attach(ch);
      if (link.closed) { this.destroy(DestroyReason.CONNECTFAILED, 'LINK_CLOSED'); return; }
      this.nextId = ch.allocateCircId((id) => link.circuits.has(id));
      this.next = link;
      link.circuits.set(this.nextId, this);
      this.sendOn(link, this.nextId, CellCommand.CREATE2, create2, this.qNext);
    }).catch((e: unknown) => {
      if (this.closed || gen !== this.extendGen) return;
      const code = errorCode(e);
      this.sw.metrics.error(code);
      this.destroy(destroyReasonForExtendFailure(code), code);
    });
  }

  private onBegin(command: number, streamId: number, data: Buffer): void {
    const kind = command === RelayCommand.BEGIN ? 'begin' : command === RelayCommand.BEGIN_DIR ? 'begin_dir' : 'begin_storage';
    const edge = this.ensureEdge();
    let begin: BeginBody | null = null;
    let stream: CircuitStream;
    try {
      // SPEC.md §7b.9: the circuit's stream-creation rate, checked before anything else of the BEGIN.
      if (!this.takeStreamToken()) throw err('STREAM_RATE_LIMIT', 'the circuit opens streams faster than its stream-creation rate');
      if (kind === 'begin') begin = decodeBegin(data);
      else if (kind === 'begin_dir') decodeBeginDir(data);
      else decodeBeginStorage(data);
      // SPEC.md §7b.7, §7b.9: a pending RESOLVE counts against the stream limit, for a BEGIN too.
      stream = edge.acceptStream(streamId, this.resolveRequests);
    } catch (e) {
      const code = errorCode(e);
      this.sw.metrics.error(code);
      this.sendRelay(RelayCommand.END, streamId, encodeEnd(endReasonForBeginFailure(code)));
      return;
    }
    this.sw.metrics.streamOpened(kind);
    // A stream's errors are the handler's business; an unheard one must never crash the node.
    stream.on('error', () => {});
    const hook = this.sw.hooks.onStream;
    const isOneHop = (): boolean => this.isOneHop();
    const inc: IncomingStream = {
      kind, begin, stream,
      // Read when asked: the consensus that decides it may be refreshed meanwhile (a storage node
      // that does not yet know a new relay, SPEC.md §9.13).
      get oneHop() { return isOneHop(); },
      accept: (connected?: ConnectedBody) => {
        if (this.closed || stream.state !== 'opening') return;
        this.sendRelay(RelayCommand.CONNECTED, streamId, encodeConnected(connected ?? {}));
        stream.markOpen();
      },
      refuse: (reason: number) => {
        if (stream.state === 'closed') return;
        stream.abort(reason);
      },
      resolveSlot: () => this.takeResolveSlot(),
    };
    if (!hook) {
      inc.refuse(UNSERVED_STREAM_REFUSAL[kind]);
      return;
    }
    hook(inc);
  }

  /**
   * SPEC.md §7b.7: the circuit came from a client link: its previous hop is not a relay listed in
   * the consensus (an anonymous client, or one with a self-made identity). Whether it goes on to a
   * next hop does not matter: a client that extends elsewhere and sends BEGIN for this hop alone
   * still uses this node as a one-hop proxy (Tor decides on the previous channel only).
   */
  private isOneHop(): boolean {
    const listed = this.sw.hooks.isListedRelay;
    return listed ? !listed(this.prev.ch) : this.prev.ch.peerIdentity === null;
  }

  /**
   * SPEC.md §7b.7: one of the circuit's pending name resolutions for a BEGIN to a name, or null
   * when it already has maxResolvesPerCircuit; the returned function gives it back (once).
   */
  private takeResolveSlot(): (() => void) | null {
    if (this.resolving >= this.sw.limits.maxResolvesPerCircuit) return null;
    this.resolving++;
    let held = true;
    return () => { if (held) { held = false; this.resolving--; } };
  }

  /**
   * SPEC.md §7b.9 (Tor's DoSStreamCreation, defense "refuse"): one token of this circuit's
   * stream-creation bucket for a BEGIN, BEGIN_DIR, BEGIN_STORAGE or RESOLVE; false (counted as
   * `stream_creation`) when none is left. The caller refuses that message; the circuit stays.
   */
  private takeStreamToken(): boolean {
    const { streamCreationRate: rate, streamCreationBurst: burst } = this.sw.limits;
    if (rate <= 0 || burst <= 0) return true;
    const now = this.sw.clock();
    this.streamBucket ??= new TokenBucket(rate, burst, now);
    if (this.streamBucket.take(now)) return true;
    this.sw.metrics.refused('stream_creation');
    return false;
  }

  private onResolve(streamId: number, data: Buffer): void {
    const host = decodeResolve(data);
    const answer = (a: ResolvedAnswer[]) => { if (!this.closed) this.sendRelay(RelayCommand.RESOLVED, streamId, encodeResolved(a)); };
    // SPEC.md §7b.9: past the circuit's stream-creation rate, a transient error as for the other RESOLVE limits.
    if (!this.takeStreamToken()) {
      this.sw.metrics.error('STREAM_RATE_LIMIT');
      answer([{ type: 'error-transient', value: '', ttl: 0 }]);
      return;
    }
    const hook = this.sw.hooks.resolve;
    if (!hook) { answer([{ type: 'error-nontransient', value: '', ttl: 0 }]); return; }
    // SPEC.md §7b.7: pending resolves are capped per circuit and count against its stream limit
    // (a BEGIN whose name is being looked up is a stream already, counted once: resolveRequests).
    const l = this.sw.limits;
    if (this.resolving >= l.maxResolvesPerCircuit || this.resolveRequests + this.streamCount >= l.maxStreamsPerCircuit) {
      this.sw.metrics.error('EXIT_RESOLVE_LIMIT');
      this.sw.metrics.exitConnect('resolve_limit'); // SPEC.md §7b.10: resolve_limit counts RESOLVE too
      answer([{ type: 'error-transient', value: '', ttl: 0 }]);
      return;
    }
    this.resolving++;
    this.resolveRequests++;
    const done = (a: ResolvedAnswer[]) => { this.resolving--; this.resolveRequests--; answer(a); };
    hook(host, { oneHop: this.isOneHop() })
      .then(done, () => done([{ type: 'error-transient', value: '', ttl: 0 }]));
  }

  /** tor-spec 5.4: TRUNCATE drops the rest of the circuit; we answer TRUNCATED. */
  private onTruncate(): void {
    if (this.next) {
      const { next, nextId } = this;
      this.detachNext();
      this.qNext.clear();
      this.sw.sendDestroy(next, nextId, DestroyReason.REQUESTED);
    }
    this.extending = false;
    this.extendGen++; // an extension still waiting for its link is dropped with the rest
    this.sendRelay(RelayCommand.TRUNCATED, 0, encodeTruncated(DestroyReason.REQUESTED));
  }

  /** @internal a cell (CREATED2) to the previous hop, through the queue. */
  sendToPrev(command: number, payload: Uint8Array): void {
    this.sendOn(this.prev, this.prevId, command, payload, this.qPrev);
  }

  // ---- EdgeCircuit: messages this node originates (toward the client) ----

  sendRelay(command: number, streamId: number, data: Uint8Array): void {
    if (this.closed) return;
    // SPEC.md §7b.10: cells this node originates toward the client (an exit's DATA) are relayed
    // cells too, or the exit of a transfer would look as if it carried nothing.
    this.sw.metrics.cellsInbound++;
    // On a real link (tor1), the cell joins the origin run (cell-run.ts): digested now, encrypted
    // with the rest of the run in one cipher call just before the run goes to the link.
    const slot = this.prev.batched && this.crypto.encryptInboundMany ? originRun.slot(this, this.prev) : null;
    // Taking the slot sends another circuit's run first, and its queued cells may put the memory
    // cap over and kill this circuit (SPEC.md §7b.9): its layer is wiped then (§5.6.2), the cell dropped.
    if (this.closed) return;
    if (slot) {
      encodeRelayPayloadInto(slot, command, streamId, data);
      this.crypto.originate(slot);
      originRun.commit();
      return;
    }
    originRun.flushOwn(this);
    encodeRelayPayloadInto(SCRATCH, command, streamId, data);
    this.crypto.originate(SCRATCH);
    this.crypto.encryptInbound(SCRATCH, CellCommand.RELAY);
    this.sendOn(this.prev, this.prevId, CellCommand.RELAY, SCRATCH, this.qPrev);
  }

  /** @internal This circuit's origin run: one layer over all of it, then each cell toward the client. */
  flushOriginated(run: OriginRun): void {
    if (this.closed) return;
    try {
      this.crypto.encryptInboundMany!(run.payloads);
      const { n, views } = run;
      for (let k = 0; k < n && !this.closed; k++) this.sendOn(this.prev, this.prevId, CellCommand.RELAY, views[k], this.qPrev);
    } catch (e) {
      // May run from a microtask: an error ends this circuit, never the node.
      const code = errorCode(e);
      this.sw.metrics.error(code);
      if (!this.closed) this.destroy(DestroyReason.INTERNAL, code);
    }
  }

  lastSentDigest(): Uint8Array {
    return this.crypto.lastDigest();
  }

  writable(): boolean {
    if (this.closed) return false;
    if (!this.prev.congested && this.qPrev.length === 0) return true;
    this.prev.blockedEdges.add(this);
    return false;
  }

  violation(code: string, message: string): void {
    this.sw.metrics.error(code);
    this.sw.log.debug({ code, msg: message }, 'stream protocol violation');
    this.destroy(DestroyReason.PROTOCOL, code);
  }

  /** @internal the prev link drained: streams may send again. */
  edgeWritable(): void {
    this.edge?.pumpAll();
  }

  // ---- queueing (SPEC.md §7b.9) ----

  /** Hot path: send now, or queue behind a congested link (bounded; over the bound the circuit dies). */
  private sendOn(link: LinkState, circId: number, command: number, payload: Uint8Array, q: CellQueue): void {
    if (link.closed || link.ch.closed) return;
    originRun.before(link);
    if (link.congested || q.length > 0) {
      if (!q.push(circId, command, payload)) {
        this.sw.metrics.refused('circuit_queue');
        this.destroy(DestroyReason.RESOURCELIMIT, 'CIRCUIT_QUEUE_FULL');
        return;
      }
      if (!this.closed) link.waiting.add(this);
      return;
    }
    if (!link.ch.send(circId, command, payload)) link.congested = true;
  }

  /** @internal Send queued cells for `link`; returns true if some remain (still waiting). */
  flushQueue(link: LinkState): boolean {
    const q = link === this.prev ? this.qPrev : this.qNext;
    for (let n = 0; q.length > 0 && n < FLUSH_BATCH; n++) {
      if (link.closed || link.ch.closed) { q.clear(); return false; }
      const c = q.peek()!;
      const ok = link.ch.send(c.circId, c.command, c.payload);
      q.drop();
      if (!ok) { link.congested = true; break; }
    }
    if (q.length > 0) { link.waiting.add(this); return true; }
    if (link === this.prev && this.edge) link.blockedEdges.add(this);
    return false;
  }

  killForMemory(): void {
    this.sw.metrics.oomKill();
    this.destroy(DestroyReason.RESOURCELIMIT, 'CIRCUIT_OOM');
  }

  // ---- teardown ----

  private detachNext(): void {
    const n = this.next;
    if (!n) return;
    n.circuits.delete(this.nextId);
    n.waiting.delete(this);
    if (!n.closed) n.ch.releaseCircId(this.nextId);
    this.next = null;
    this.nextId = 0;
  }

  /**
   * Tear the circuit down (SPEC.md §7b.5): DESTROY with `reason` to both neighbours except
   * the one it came from; queued cells are dropped; streams here end with an error.
   */
  destroy(reason: number, code?: string, from?: 'prev' | 'next'): void {
    if (this.closed) return;
    originRun.flushOwn(this); // what was originated goes before the DESTROY, as it would cell by cell
    this.closed = true;
    this.qPrev.clear();
    this.qNext.clear();
    this.prev.circuits.delete(this.prevId);
    this.prev.waiting.delete(this);
    this.prev.blockedEdges.delete(this);
    if (from !== 'prev') this.sw.sendDestroy(this.prev, this.prevId, reason);
    const next = this.next;
    const nextId = this.nextId;
    this.detachNext();
    if (next && from !== 'next') this.sw.sendDestroy(next, nextId, reason);
    this.edge?.close(err('CIRCUIT_DESTROYED', 'the circuit was destroyed', { destroyReason: reason, code }) as BitcloudError);
    this.sw.budget.hold(this, 0);
    this.sw.hooks.rendezvous?.forget(this);
    const joined = this.joined;
    this.joined = null;
    joined?.destroy(reason, code);
    this.sw.forget(this, reason, code);
    // SPEC.md §5.6.2: the circuit is freed; this hop's keys are erased now (once: `closed`).
    this.crypto.wipe();
  }
}
