// A circuit as the client that built it sees it (SPEC.md §7b.1–§7b.3, §7b.6): one hop crypto
// state per relay, CREATE2 to the first, EXTEND2 (in RELAY_EARLY) through the circuit for the
// others, and the streams at the last hop (a StreamEdge). ClientLink dispatches the cells of
// one guard link to the circuits on it.
import { EventEmitter } from 'node:events';
import { declaredCode, err, isErrorCode, type BitcloudError, type ErrorCode } from '../errors';
import { oncePerRegistry, prom, type Registry } from '../ops/metrics';
import { CellCommand, CELL_PAYLOAD_LEN, type Cell } from '../wire/cell';
import { RELAY_COMMAND_OFFSET, RELAY_HEADER_LEN, RelayCommand, decodeRelayPayload, encodeRelayPayloadInto, relayCommandName, relayDataLength } from '../wire/relay-msg';
import {
  DestroyReason, EndReason, decodeCreated2, decodeDestroy, decodeExtended2, decodeResolved, decodeTruncated,
  encodeBegin, encodeBeginDir, encodeBeginStorage, encodeCreate2, encodeDestroy, encodeExtend2, encodeResolve,
  type ConnectedBody, type LinkSpecifier, type ResolvedAnswer,
} from '../wire/messages';
import { ntorClientCreate, ntorClientFinish } from '../crypto/ntor';
import { clientOpenInbound, clientOpenInboundMany, clientSealOutbound, createClientHop, createRelayHop, relayCryptoHandshake } from '../crypto/relay-crypto';
import type { RelayCryptoAlgorithm, RelayHopCrypto } from '../crypto/hop-crypto';
import type { IncomingStream } from '../circuit/types';
import { UNSERVED_STREAM_REFUSAL, endReasonForBeginFailure } from '../circuit/end-reasons';
import { decodeBeginStorage, encodeConnected, encodeEnd } from '../wire/messages';
import { errorCode } from '../errors';
import type { ClientHopCrypto } from '../crypto/hop-crypto';
import type { CellChannel } from '../link/cell-channel';
import { RELAY_EDGE_MAX_BUFFERED, StreamEdge, type EdgeCircuit } from '../circuit/edge';
import type { CircuitStream } from '../circuit/stream';
import { MAX_RELAY_EARLY, MAX_STREAMS_PER_CIRCUIT } from '../circuit/constants';
import { cellRun, flushCellRun, originRun, type CellRun, type OriginOwner, type OriginRun, type RunOwner } from '../circuit/cell-run';

/** `bitcloud_client_circuit_violations_total{reason}` (SPEC.md §7b.10). */
export type ClientViolationCounter = prom.Counter<'reason'>;

/**
 * SPEC.md §7b.5, §7b.10: protocol violations that closed a client circuit, by the violation's
 * error code (a declared code, never anything the peer chose). Made once per registry.
 */
export const clientViolationCounter: (reg: Registry) => ClientViolationCounter = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_client_circuit_violations_total',
  help: 'Client circuits closed for a protocol violation or malformed cell, by error code',
  labelNames: ['reason'],
  registers: [reg],
}));

/** SPEC.md §7b.6: how long a client waits for CONNECTED after BEGIN, BEGIN_DIR or BEGIN_STORAGE by default. */
export const STREAM_OPEN_TIMEOUT_MS = 15_000;

/** What the client needs to know of a relay to use it as a hop. ConsensusRelay satisfies it. */
export interface HopTarget {
  identity: Buffer;
  fingerprint: string;
  onionKey: Buffer;
  address: string;
  orPort: number;
}

export type StreamRequest =
  | { kind: 'begin'; host: string; port: number; flags?: number }
  | { kind: 'begin_dir' }
  | { kind: 'begin_storage' };

const noop = (): void => {};

/** One payload buffer reused for every cell the client originates (hot path). */
const SCRATCH = Buffer.alloc(CELL_PAYLOAD_LEN);

/** The circuits on one link to a guard, and the link's congestion state. */
export class ClientLink {
  readonly circuits = new Map<number, ClientCircuit>();
  /** When the last circuit left (for closing idle links); null while circuits use it. */
  idleSince: number | null = Date.now();
  congested = false;
  closed = false;
  private readonly blocked = new Set<ClientCircuit>();

  constructor(readonly ch: CellChannel) {
    // RELAY cells of a channel that batches reads are gathered per circuit (cell-run.ts) and
    // handled at the end of the read; any other cell goes after the cells gathered before it.
    const batched = this.batched = ch.batchesReads === true;
    ch.on('cell', (c: Cell) => {
      const circ = this.circuits.get(c.circId);
      if (c.command !== CellCommand.RELAY) cellRun.flush();
      else if (batched && circ && cellRun.add(circ, 0, c.command, c.payload)) return;
      if (circ) circ.onCell(c.command, c.payload);
    });
    if (batched) ch.on('readEnd', flushCellRun);
    ch.on('drain', () => {
      this.congested = false;
      for (const c of [...this.blocked]) {
        if (this.congested) return;
        this.blocked.delete(c);
        c.edgeWritable();
      }
    });
    ch.on('close', (e?: BitcloudError) => {
      cellRun.flush();
      this.closed = true;
      for (const c of [...this.circuits.values()]) {
        c.closeWith(err('CIRCUIT_DESTROYED', 'the link to the guard closed', { destroyReason: DestroyReason.CHANNEL_CLOSED, link: e?.code }));
      }
      this.circuits.clear();
    });
  }

  /** Cells originated on a channel that batches reads (a real link) may be gathered into runs. */
  readonly batched: boolean;

  /** Hot path. */
  send(circId: number, command: number, payload: Uint8Array): void {
    if (this.closed || this.ch.closed) return;
    originRun.before(this); // a gathered run for this link goes first
    if (!this.ch.send(circId, command, payload)) this.congested = true;
  }

  writable(c: ClientCircuit): boolean {
    if (!this.congested && !this.closed) return true;
    this.blocked.add(c);
    return false;
  }

  /** @internal */ forget(c: ClientCircuit): void {
    this.circuits.delete(c.circId);
    if (this.circuits.size === 0) this.idleSince = Date.now();
    this.blocked.delete(c);
    if (!this.closed) this.ch.releaseCircId(c.circId);
  }
}

interface Hop {
  target: HopTarget;
  crypto: ClientHopCrypto;
}

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: BitcloudError) => void;
}

/**
 * Events: 'close' (err: BitcloudError) once, when the circuit is gone for any reason.
 */
export class ClientCircuit extends EventEmitter implements EdgeCircuit, RunOwner, OriginOwner {
  readonly hops: Hop[] = [];
  /** hops[i].crypto, kept as one array for clientSealOutbound / clientOpenInbound (hot path). */
  private readonly layers: ClientHopCrypto[] = [];
  /**
   * Every layer takes a run of payloads in one call (tor1): only then may originated cells join an
   * origin run (SPEC.md §5.4). A CGO circuit with a tor1 virtual hop has a batchable last layer
   * and CGO layers under it that are not.
   */
  private outboundRuns = true;
  readonly edge: StreamEdge;
  readonly createdAt = Date.now();
  /** When the first stream was attached (SPEC.md §7b.11: dirty circuits retire after a while). */
  dirtySince: number | null = null;
  closedWith: BitcloudError | null = null;
  private earlyUsed = 0;
  private pendingHop: (Pending<Buffer> & { kind: 'create' | 'extend' }) | null = null;
  private readonly resolves = new Map<number, Pending<ResolvedAnswer[]>>();
  private readonly receivedDigest = (): Uint8Array => (this.serviceEnd ? this.serviceEnd.crypto.lastDigest() : this.layers[this.layers.length - 1].lastDigest());
  /**
   * SPEC.md §9.21.5: relay messages from the last hop that are not for streams or building
   * (INTRO_ESTABLISHED, INTRODUCE2, RENDEZVOUS_ESTABLISHED, RENDEZVOUS2, INTRODUCE_ACK) go here.
   */
  onControl: ((command: number, data: Buffer) => void) | null = null;
  /**
   * SPEC.md §9.21.5 step 5, the hidden node's side: the relay end of the virtual hop after the
   * rendezvous point, and where its incoming streams go.
   */
  private serviceEnd: { crypto: RelayHopCrypto; onStream: (s: IncomingStream) => void } | null = null;

  /**
   * @param relayCrypto the relay crypto every hop of this circuit negotiates (SPEC.md §5.6.1);
   *   tor1 unless the client is configured for CGO.
   * @param violations where the violations that close this circuit are counted (SPEC.md §7b.10), if anywhere.
   */
  constructor(
    readonly link: ClientLink, readonly circId: number, readonly relayCrypto: RelayCryptoAlgorithm = 'tor1',
    private readonly violations: ClientViolationCounter | null = null,
  ) {
    super();
    this.edge = new StreamEdge(this, { maxStreams: 0xffff });
    link.circuits.set(circId, this);
    link.idleSince = null;
  }

  /** Open a new circuit id on `link` (no cell sent yet). */
  static allocate(link: ClientLink, relayCrypto: RelayCryptoAlgorithm = 'tor1', violations: ClientViolationCounter | null = null): ClientCircuit {
    return new ClientCircuit(link, link.ch.allocateCircId((id) => link.circuits.has(id)), relayCrypto, violations);
  }

  get isOpen(): boolean { return this.closedWith === null; }
  get length(): number { return this.hops.length; }
  get lastHop(): HopTarget | undefined { return this.hops[this.hops.length - 1]?.target; }

  // ---- building (SPEC.md §7b.1, §7b.3) ----

  /** CREATE2 to the guard this link reaches. */
  async create(guard: HopTarget): Promise<void> {
    if (this.hops.length !== 0) throw err('CIRCUIT_PROTOCOL', 'create() on a circuit that already has hops');
    const hs = relayCryptoHandshake(this.relayCrypto);
    const { state, onionskin } = ntorClientCreate({ id: guard.identity, onionKey: guard.onionKey, protoid: hs.protoid });
    const reply = await this.awaitHop('create', () => this.link.send(this.circId, CellCommand.CREATE2, encodeCreate2({ htype: hs.htype, hdata: onionskin })));
    this.addHop(guard, ntorClientFinish(state, reply, hs.keyLength));
  }

  /** EXTEND2 (inside RELAY_EARLY) from the current last hop to `next`. */
  async extend(next: HopTarget): Promise<void> {
    if (this.hops.length === 0) throw err('CIRCUIT_PROTOCOL', 'extend() before create()');
    if (this.earlyUsed >= MAX_RELAY_EARLY) throw err('CIRCUIT_TOO_LONG', `no RELAY_EARLY cells left (${MAX_RELAY_EARLY} per circuit)`);
    const hs = relayCryptoHandshake(this.relayCrypto);
    const { state, onionskin } = ntorClientCreate({ id: next.identity, onionKey: next.onionKey, protoid: hs.protoid });
    const specs: LinkSpecifier[] = [
      { type: next.address.includes(':') ? 'ipv6' : 'ipv4', addr: next.address, port: next.orPort },
      { type: 'ed25519', id: next.identity },
    ];
    const body = encodeExtend2({ linkSpecifiers: specs, htype: hs.htype, hdata: onionskin });
    const reply = await this.awaitHop('extend', () => {
      this.earlyUsed++;
      this.sendTo(this.hops.length - 1, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, body);
    });
    this.addHop(next, ntorClientFinish(state, reply, hs.keyLength));
  }

  /**
   * SPEC.md §9.21.5 step 5 (client): the virtual hop to a hidden node after the rendezvous point,
   * keyed by the ntor handshake carried in INTRODUCE1 / RENDEZVOUS2.
   */
  addVirtualHop(target: HopTarget, keys: Buffer): void {
    if (this.serviceEnd || this.hops.length === 0) throw err('CIRCUIT_PROTOCOL', 'a virtual hop needs a built circuit');
    // The virtual hop is tor1 whatever the circuit to the rendezvous point negotiated: its 72
    // bytes come from the tor1 ntor handshake with the node (SPEC.md §9.21.5 step 5, §5.6.1).
    this.addHop(target, keys, 'tor1');
  }

  /**
   * SPEC.md §9.21.5 step 5 (hidden node): this circuit, built by the node to a rendezvous point,
   * now ends at the node itself: cells from the client pass the node's layers unrecognized and
   * are opened with the relay side of `keys`; BEGIN_STORAGE streams go to `onStream`.
   */
  attachServiceEnd(keys: Buffer, onStream: (s: IncomingStream) => void): void {
    if (this.serviceEnd || this.hops.length === 0 || this.relayCrypto !== 'tor1') throw err('CIRCUIT_PROTOCOL', 'a service end needs a built tor1 circuit');
    this.serviceEnd = { crypto: createRelayHop(keys, 'tor1'), onStream };
    keys.fill(0);
    if (this.closedWith) this.serviceEnd.crypto.wipe(); // SPEC.md §5.6.2: closed meanwhile
    // SPEC.md §7b.9, §9.21.5 step 6: the node serves these streams as any node serves a circuit
    // ending at it (§9.13.1), 512 at once; the client's own 0xffff is not the node's limit.
    this.edge.maxStreams = MAX_STREAMS_PER_CIRCUIT;
    // …and holds back circuit SENDMEs while those streams hold more than 1 MiB unread (§7b.9).
    this.edge.maxBuffered = RELAY_EDGE_MAX_BUFFERED;
  }

  private addHop(target: HopTarget, keys: Buffer, alg: RelayCryptoAlgorithm = this.relayCrypto): void {
    const crypto = createClientHop(keys, alg);
    keys.fill(0);
    this.hops.push({ target, crypto });
    this.layers.push(crypto);
    // SPEC.md §5.6.2: a circuit closed between its hop's answer and this step keeps no live keys.
    if (this.closedWith) crypto.wipe();
    if (!crypto.encryptOutboundMany) this.outboundRuns = false;
    this.edge.maxData = crypto.relayDataMax;
  }

  private awaitHop(kind: 'create' | 'extend', send: () => void): Promise<Buffer> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.link.closed || this.link.ch.closed) {
      this.closeWith(err('CIRCUIT_DESTROYED', 'the link to the guard is closed', { destroyReason: DestroyReason.CHANNEL_CLOSED }), false);
      return Promise.reject(this.closedWith!);
    }
    if (this.pendingHop) return Promise.reject(err('CIRCUIT_PROTOCOL', 'a hop is already being added'));
    return new Promise<Buffer>((resolve, reject) => {
      this.pendingHop = { kind, resolve, reject };
      send();
    });
  }

  // ---- streams (SPEC.md §7b.6) ----

  /**
   * Open a stream at the last hop: BEGIN (TCP via an exit), BEGIN_DIR (the hop's directory
   * mirror) or BEGIN_STORAGE (the storage node). Resolves once CONNECTED arrives; rejects
   * with the error for the END reason (EXIT_POLICY_REJECTED, EXIT_CONNECT_REFUSED, …), with
   * CIRCUIT_DESTROYED if the circuit dies, or STREAM_TIMEOUT after `timeoutMs` (SPEC.md §7b.6:
   * END(TIMEOUT) goes to the hop and the stream is forgotten).
   */
  openStream(req: StreamRequest, timeoutMs = STREAM_OPEN_TIMEOUT_MS): Promise<{ stream: CircuitStream; connected: ConnectedBody | null }> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const s = this.edge.newStream();
    // CONNECTED and an END can arrive in one read: the error would then be emitted (next tick)
    // before the caller, resumed by the promise, attaches its own listener. Never crash on it;
    // callers that listen still get it.
    s.on('error', noop);
    this.dirtySince ??= Date.now();
    const body = req.kind === 'begin' ? encodeBegin({ host: req.host, port: req.port, flags: req.flags })
      : req.kind === 'begin_dir' ? encodeBeginDir() : encodeBeginStorage();
    const cmd = req.kind === 'begin' ? RelayCommand.BEGIN : req.kind === 'begin_dir' ? RelayCommand.BEGIN_DIR : RelayCommand.BEGIN_STORAGE;
    return new Promise((resolve, reject) => {
      const done = () => { clearTimeout(timer); s.off('connected', onConnected); s.off('error', onError); s.off('close', onClose); };
      const onConnected = (info: ConnectedBody | null) => { done(); resolve({ stream: s, connected: info }); };
      const onError = (e: Error) => { done(); reject(e); };
      const onClose = () => { done(); reject(err('STREAM_CLOSED', 'the stream closed before it opened')); };
      const timer = setTimeout(() => {
        done();
        s.abort(EndReason.TIMEOUT);
        reject(err('STREAM_TIMEOUT', `no CONNECTED within ${timeoutMs} ms`));
      }, timeoutMs);
      s.on('connected', onConnected);
      s.on('error', onError);
      s.on('close', onClose);
      this.sendRelay(cmd, s.id, body);
    });
  }

  /** RESOLVE a host name at the exit (SPEC.md §7b.7). */
  resolve(host: string, timeoutMs = 30_000): Promise<ResolvedAnswer[]> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const s = this.edge.newStream(); // reserve a stream id for the request
    this.edge.release(s);
    const id = s.id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.resolves.delete(id); reject(err('STREAM_TIMEOUT', `no RESOLVED within ${timeoutMs} ms`)); }, timeoutMs);
      this.resolves.set(id, {
        resolve: (a) => { clearTimeout(timer); resolve(a); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.sendRelay(RelayCommand.RESOLVE, id, encodeResolve(host));
    });
  }

  // ---- cells from the guard (hot path) ----

  /** @internal */
  onCell(command: number, payload: Buffer): void {
    try {
      switch (command) {
        case CellCommand.RELAY: this.onRelay(payload); return;
        case CellCommand.CREATED2: {
          const p = this.pendingHop;
          if (!p || p.kind !== 'create') throw err('CIRCUIT_PROTOCOL', 'CREATED2 nobody asked for');
          // Decoded while still pending (SPEC.md §7b.5): a malformed answer closes the circuit,
          // and the close fails the pending hop with that error instead of leaving it to the
          // build timeout.
          const hdata = decodeCreated2(payload).hdata;
          this.pendingHop = null;
          p.resolve(hdata);
          return;
        }
        case CellCommand.DESTROY: {
          const reason = decodeDestroy(payload);
          this.closeWith(err('CIRCUIT_DESTROYED', `the circuit was destroyed (reason ${reason})`, { destroyReason: reason }), false);
          return;
        }
        default:
          // tor-spec 5.6: a client closes a circuit on which RELAY_EARLY travels toward it.
          throw err('CIRCUIT_PROTOCOL', `unexpected cell command ${command} on a client circuit`);
      }
    } catch (e) {
      this.violation(declaredCode(e), (e as Error).message);
    }
  }

  /**
   * @internal A run of consecutive RELAY cells of this circuit from one read (cell-run.ts): the
   * same as onCell on each in turn, with each hop's layer removed from the whole run at once.
   */
  flushRun(run: CellRun): void {
    if (this.closedWith) return;
    this.runViews = run.views;
    try {
      clientOpenInboundMany(this.layers, run.payloads, run.views, run.n, this.onOpened);
    } catch (e) {
      this.violation(declaredCode(e), (e as Error).message);
    }
  }

  private runViews: readonly Buffer[] = [];
  private readonly onOpened = (k: number, hop: number): boolean => {
    if (this.closedWith) return false;
    this.onRecognized(this.runViews[k], hop);
    return this.closedWith === null;
  };

  private onRelay(payload: Buffer): void {
    this.onRecognized(payload, clientOpenInbound(this.layers, payload));
  }

  /** A RELAY payload with our layers removed, that `hop` sent (-1: none of ours). */
  private onRecognized(payload: Buffer, hop: number): void {
    const n = this.layers.length;
    if (hop < 0 && this.serviceEnd) { this.onServiceRelay(payload); return; }
    if (hop < 0) throw err('RELAY_UNRECOGNIZED', 'a relay cell no hop of ours originated');
    // SPEC.md §9.21.5 step 5, §7b.6: at a hidden node's end the streams belong to the virtual hop;
    // the node's own hops (the rendezvous point last) have nothing but padding to send it there.
    if (this.serviceEnd && payload[RELAY_COMMAND_OFFSET] !== RelayCommand.DROP) {
      throw err('RELAY_PROTOCOL', `${relayCommandName(payload[RELAY_COMMAND_OFFSET])} from hop ${hop + 1} of a hidden node's rendezvous circuit`);
    }
    if (hop === n - 1 && payload[RELAY_COMMAND_OFFSET] === RelayCommand.DATA) {
      // Hot path: DATA goes to its stream without a decoded object or a view of its own.
      const h = relayDataLength(payload);
      this.edge.handleData(h.streamId, payload, RELAY_HEADER_LEN, h.length, this.receivedDigest);
      return;
    }
    const m = decodeRelayPayload(payload);
    if (hop === n - 1 && this.edge.handle(m.command, m.streamId, m.data, this.receivedDigest)) return;
    switch (m.command) {
      case RelayCommand.EXTENDED2: {
        const p = this.pendingHop;
        if (!p || p.kind !== 'extend' || hop !== n - 1) throw err('CIRCUIT_PROTOCOL', 'EXTENDED2 nobody asked for');
        const hdata = decodeExtended2(m.data).hdata; // while pending: see CREATED2 in onCell
        this.pendingHop = null;
        p.resolve(hdata);
        return;
      }
      case RelayCommand.TRUNCATED: {
        const reason = decodeTruncated(m.data);
        // We never keep a truncated circuit: treat it as destroyed (and tear down the rest).
        this.closeWith(err('CIRCUIT_DESTROYED', `the circuit was truncated at hop ${hop + 1} (reason ${reason})`, { destroyReason: reason }));
        return;
      }
      case RelayCommand.RESOLVED: {
        // SPEC.md §7b.6: only the last hop (the exit we asked) answers RESOLVE; a middle hop that
        // forges an answer is a protocol violation, like CONNECTED from a middle hop.
        if (hop !== n - 1) throw err('RELAY_PROTOCOL', `RESOLVED from hop ${hop + 1} of ${n}: only the last hop answers`);
        const p = this.resolves.get(m.streamId);
        if (!p) return;
        // Decoded while still pending (SPEC.md §7b.5): a malformed answer closes the circuit and
        // the close fails this request with it, not STREAM_TIMEOUT after the request's timeout.
        const answers = decodeResolved(m.data);
        this.resolves.delete(m.streamId);
        p.resolve(answers);
        return;
      }
      case RelayCommand.DROP:
        return;
      default:
        if (this.onControl && hop === n - 1 && m.streamId === 0) { this.onControl(m.command, Buffer.from(m.data)); return; }
        throw err('RELAY_PROTOCOL', `${relayCommandName(m.command)} from hop ${hop + 1} is not expected by a client`);
    }
  }

  /** A cell that crossed the rendezvous point from the client, at the hidden node (SPEC.md §9.21.5). */
  private onServiceRelay(payload: Buffer): void {
    const end = this.serviceEnd!;
    if (!end.crypto.decryptOutbound(payload, CellCommand.RELAY)) throw err('RELAY_UNRECOGNIZED', 'a relay cell nobody recognized reached the hidden node');
    const m = decodeRelayPayload(payload);
    if (this.edge.handle(m.command, m.streamId, m.data, this.receivedDigest)) return;
    switch (m.command) {
      case RelayCommand.BEGIN_STORAGE: this.onServiceBegin(m.streamId, m.data); return;
      case RelayCommand.BEGIN:
      case RelayCommand.BEGIN_DIR: {
        const kind = m.command === RelayCommand.BEGIN ? 'begin' : 'begin_dir';
        this.sendRelay(RelayCommand.END, m.streamId, encodeEnd(UNSERVED_STREAM_REFUSAL[kind]));
        return;
      }
      case RelayCommand.DROP: return;
      default: throw err('RELAY_PROTOCOL', `${relayCommandName(m.command)} is not a message a hidden node accepts`);
    }
  }

  private onServiceBegin(streamId: number, data: Buffer): void {
    let stream: CircuitStream;
    try {
      decodeBeginStorage(data);
      stream = this.edge.acceptStream(streamId);
    } catch (e) {
      this.sendRelay(RelayCommand.END, streamId, encodeEnd(endReasonForBeginFailure(errorCode(e))));
      return;
    }
    stream.on('error', noop);
    this.serviceEnd!.onStream({
      kind: 'begin_storage', begin: null, stream, oneHop: false,
      accept: (connected?: ConnectedBody) => {
        if (this.closedWith || stream.state !== 'opening') return;
        this.sendRelay(RelayCommand.CONNECTED, streamId, encodeConnected(connected ?? {}));
        stream.markOpen();
      },
      refuse: (reason: number) => { if (stream.state !== 'closed') stream.abort(reason); },
    });
  }

  // ---- EdgeCircuit ----

  /** Hot path: a relay message to the last hop. */
  sendRelay(command: number, streamId: number, data: Uint8Array): void {
    this.sendTo(this.hops.length - 1, CellCommand.RELAY, command, streamId, data);
  }

  private sendTo(hop: number, cellCommand: number, command: number, streamId: number, data: Uint8Array): void {
    if (this.closedWith) return;
    // RELAY to the last hop on a real link (tor1): the cell joins the origin run (cell-run.ts),
    // digested now and encrypted with the rest of the run, one cipher call per layer.
    const last = this.layers.length - 1;
    // (Not on a hidden node's end of a rendezvous circuit: its cells take the service end's layer, cell by cell.)
    if (hop === last && cellCommand === CellCommand.RELAY && !this.serviceEnd && this.link.batched && this.outboundRuns) {
      const slot = originRun.slot(this, this.link);
      if (slot) {
        encodeRelayPayloadInto(slot, command, streamId, data);
        this.layers[last].originate(slot);
        originRun.commit();
        return;
      }
    }
    originRun.flushOwn(this);
    encodeRelayPayloadInto(SCRATCH, command, streamId, data);
    const end = this.serviceEnd;
    if (end && hop === this.hops.length - 1 && cellCommand === CellCommand.RELAY) {
      // SPEC.md §9.21.5 step 5: originate on the virtual hop's relay side, then add our own
      // layers without originating at them; the rendezvous point does not recognize it.
      end.crypto.originate(SCRATCH);
      end.crypto.encryptInbound(SCRATCH, CellCommand.RELAY);
      for (let i = this.layers.length - 1; i >= 0; i--) this.layers[i].encryptOutbound(SCRATCH, cellCommand);
      this.link.send(this.circId, cellCommand, SCRATCH);
      return;
    }
    clientSealOutbound(this.layers, hop, SCRATCH, cellCommand);
    this.link.send(this.circId, cellCommand, SCRATCH);
  }

  /** @internal This circuit's origin run: every layer over all of it (last hop first), then each cell to the guard. */
  flushOriginated(run: OriginRun): void {
    if (this.closedWith) return;
    try {
      for (let i = this.layers.length - 1; i >= 0; i--) this.layers[i].encryptOutboundMany!(run.payloads);
      const { n, views } = run;
      for (let k = 0; k < n; k++) this.link.send(this.circId, CellCommand.RELAY, views[k]);
    } catch (e) {
      // May run from a microtask: an error ends this circuit, never the process.
      this.violation(declaredCode(e), (e as Error).message);
    }
  }

  lastSentDigest(): Uint8Array {
    return this.serviceEnd ? this.serviceEnd.crypto.lastDigest() : this.layers[this.layers.length - 1].lastDigest();
  }

  /** A control message (stream id 0) to the last hop (SPEC.md §9.21). */
  sendControl(command: number, data: Uint8Array): void {
    this.sendTo(this.hops.length - 1, CellCommand.RELAY, command, 0, data);
  }

  /** SPEC.md §9.21: the hidden node's end of a rendezvous circuit is attached. */
  get isServiceEnd(): boolean { return this.serviceEnd !== null; }

  writable(): boolean {
    return this.closedWith === null && this.link.writable(this);
  }

  /**
   * SPEC.md §7b.5, §7b.10: a protocol violation or malformed cell closes this circuit and is
   * counted by its code. The stream edge passes the code of whatever it caught: one outside the
   * declared set is counted (and closes the circuit) as INTERNAL, so the label set stays closed.
   */
  violation(code: string, message: string): void {
    if (this.closedWith) return;
    const c: ErrorCode = isErrorCode(code) ? code : 'INTERNAL';
    this.violations?.inc({ reason: c });
    this.closeWith(err(c, message));
  }

  /** @internal */ edgeWritable(): void { this.edge.pumpAll(); }

  // ---- teardown ----

  /** Destroy the circuit (SPEC.md §7b.5: clients send reason NONE, as Tor does). */
  destroy(e?: BitcloudError): void {
    this.closeWith(e ?? err('CIRCUIT_CLOSED', 'the circuit was closed by the client'));
  }

  /** @internal */
  closeWith(e: BitcloudError, sendDestroy = true): void {
    if (this.closedWith) return;
    originRun.flushOwn(this); // what was originated goes before the DESTROY, as it would cell by cell
    this.closedWith = e;
    if (sendDestroy) this.link.send(this.circId, CellCommand.DESTROY, encodeDestroy(DestroyReason.NONE));
    this.link.forget(this);
    const p = this.pendingHop;
    this.pendingHop = null;
    p?.reject(e);
    for (const r of this.resolves.values()) r.reject(e);
    this.resolves.clear();
    this.edge.close(e);
    // SPEC.md §5.6.2: the circuit is freed; every layer's keys are erased now (once: closedWith).
    for (const l of this.layers) l.wipe();
    this.serviceEnd?.crypto.wipe();
    this.emit('close', e);
  }
}
