// The relay side of circuits (SPEC.md §7b.1–§7b.5, §7b.9): per link, a table of circuits by
// circuit id; CREATE2 answered with ntor; RELAY / RELAY_EARLY cells decrypted one layer and
// either handled here (recognized) or forwarded; cells from the next hop encrypted one layer
// and sent back; DESTROY propagated both ways. It lives in src/ because every node that ends
// circuits runs it: relays (with the extend and exit hooks of relay/circuits.ts) and storage
// nodes (no extend hook, a BEGIN_STORAGE hook). Per-circuit state is in relay-circuit.ts.
import { err, errorCode, type BitcloudError } from '../errors';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import { CellCommand, type Cell } from '../wire/cell';
import { DestroyReason, decodeCreate2, decodeDestroy, encodeCreated2, encodeDestroy } from '../wire/messages';
import { ntorServerRespond } from '../crypto/ntor';
import { createRelayHop, relayCryptoForHtype, relayCryptoHandshake } from '../crypto/relay-crypto';
import type { RelayCryptoAlgorithm } from '../crypto/hop-crypto';
import type { CellChannel } from '../link/cell-channel';
import { CircIdAllocator } from '../link/circ-ids';
import type { Logger } from '../ops/log';
import { silentLogger } from '../ops/log';
import { QueueBudget } from './cell-queue';
import { CircuitMetrics } from './metrics';
import { RelayCircuit, RUN_FROM_NEXT, RUN_FROM_PREV, type LinkState, type RelayCircuitHost } from './relay-circuit';
import { cellRun, flushCellRun, originRun } from './cell-run';
import type { SwitchHooks, SwitchLimits } from './types';
import type { X25519KeyPair } from '../crypto/primitives';
import { MAX_STREAMS_PER_CIRCUIT } from './constants';

export const DEFAULT_SWITCH_LIMITS: SwitchLimits = {
  maxCircuitsPerLink: 4096,
  maxQueuedCellsPerCircuit: 2000,
  maxStreamsPerCircuit: MAX_STREAMS_PER_CIRCUIT,
  maxResolvesPerCircuit: 4,
  streamCreationRate: 100,
  streamCreationBurst: 300,
  createsPerTurn: 16,
  maxOnionQueueDelayMs: 1750,
  maxQueuedCreatesPerSource: 64,
  rateRefusalHoldMs: 500,
};

/** A CREATE2 waiting for its public-key work (SPEC.md §7b.9 onionskin queue). */
interface CreateJob<C extends CellChannel> {
  link: LinkState<C>;
  circId: number;
  payload: Buffer;
  /** When it was queued, on the switch's monotonic clock (SPEC.md §7b.9: the wait is a duration). */
  at: number;
  cancelled: boolean;
}

/** `C`: the channel type of the node's links (Channel in the daemons, a fake in unit tests). */
export interface SwitchOptions<C extends CellChannel = CellChannel> {
  /** This node's Ed25519 identity public key (the ntor ID). */
  identity: Buffer;
  /** Onion keys that may answer a CREATE2: the current one first, then the previous one. */
  onionKeys: () => X25519KeyPair[];
  hooks?: SwitchHooks<C>;
  limits?: Partial<SwitchLimits>;
  /** Shared cap on queued cells (SPEC.md §7b.9); default 256 MiB. */
  budget?: QueueBudget;
  metrics?: CircuitMetrics;
  log?: Logger;
  /**
   * Link-level cells (circuit id 0) that are not for circuits, e.g. RECEIPT_* (SPEC.md §8.3),
   * handed to the node's owner of that protocol. Returns true when it took the cell; otherwise
   * the switch counts it as CELL_UNEXPECTED. Never closes the link by itself.
   */
  onLinkCell?: (ch: C, cell: Cell) => boolean;
  /**
   * A monotonic clock in ms for the per-circuit stream-creation buckets and the onionskin queue's
   * wait (SPEC.md §7b.9); default performance.now.
   */
  clock?: () => number;
}

const REASON_NAMES = new Map<number, string>(Object.entries(DestroyReason).map(([k, v]) => [v, k]));
export function destroyReasonName(r: number): string {
  return REASON_NAMES.get(r) ?? `UNKNOWN_${r}`;
}

export class CircuitSwitch<C extends CellChannel = CellChannel> implements RelayCircuitHost {
  /** This node's Ed25519 identity public key. */
  readonly identity: Buffer;
  readonly limits: SwitchLimits;
  readonly budget: QueueBudget;
  readonly metrics: CircuitMetrics;
  readonly log: Logger;
  readonly hooks: SwitchHooks<C>;
  readonly clock: () => number;
  private readonly links = new Map<C, LinkState<C>>();
  /** @internal every live circuit, for counting and shutdown */
  readonly circuits = new Set<RelayCircuit>();
  private closed = false;
  /** SPEC.md §7b.9 onionskin queue: FIFO per source, served round robin (Map order). */
  private readonly onionQueue = new Map<unknown, Array<CreateJob<C>>>();
  private queuedCreates = 0;
  private onionScheduled = false;
  /** CREATE2 handshakes done in the current event-loop turn. */
  private turnCreates = 0;
  private turnResetScheduled = false;

  constructor(readonly opts: SwitchOptions<C>) {
    this.identity = opts.identity;
    this.limits = { ...DEFAULT_SWITCH_LIMITS, ...opts.limits };
    this.budget = opts.budget ?? new QueueBudget(256 * 1024 * 1024);
    this.metrics = opts.metrics ?? new CircuitMetrics();
    this.log = opts.log ?? silentLogger;
    this.hooks = opts.hooks ?? {};
    this.clock = opts.clock ?? (() => performance.now());
    this.metrics.openCircuits = () => this.circuits.size;
    this.metrics.queuedCells = () => this.budget.queuedCells;
    this.metrics.openStreams = () => { let n = 0; for (const c of this.circuits) n += c.streamCount; return n; };
  }

  get circuitCount(): number { return this.circuits.size; }
  get linkCount(): number { return this.links.size; }

  /**
   * Serve circuits on a link (accepted, or opened by us to extend). Idempotent. Must be
   * called in the tick the channel is handed over (Channel delivers cells from the next one).
   */
  attach(ch: C): LinkState<C> {
    const have = this.links.get(ch);
    if (have) return have;
    const link: LinkState<C> = { ch, circuits: new Map(), congested: false, waiting: new Set(), blockedEdges: new Set(), closed: false, batched: ch.batchesReads === true };
    this.links.set(ch, link);
    ch.on('cell', (cell: Cell) => this.onCell(link, cell));
    if (link.batched) ch.on('readEnd', flushCellRun);
    ch.on('drain', () => this.onDrain(link));
    ch.on('close', () => this.onLinkClosed(link));
    if (ch.closed) this.onLinkClosed(link);
    return link;
  }

  /** The link state of a channel we already serve (for the extend hook's reuse). */
  linkOf(ch: C): LinkState<C> | undefined {
    return this.links.get(ch);
  }

  /** Destroy every circuit (shutdown). Links are the owner's to close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.circuits]) c.destroy(DestroyReason.HIBERNATING, 'node shutting down');
  }

  // ---- per-link dispatch (hot path) ----

  private onCell(link: LinkState<C>, cell: Cell): void {
    const { circId, command, payload } = cell;
    const circ = link.circuits.get(circId);
    // A RELAY cell of a link that batches reads joins the run (cell-run.ts); any other cell is
    // handled after the cells gathered before it.
    if (command !== CellCommand.RELAY && command !== CellCommand.RELAY_EARLY) cellRun.flush();
    try {
      switch (command) {
        case CellCommand.RELAY:
        case CellCommand.RELAY_EARLY: {
          if (!circ) { this.metrics.error('CIRCUIT_UNKNOWN'); return; }
          const fromPrev = circ.prev === link && circ.prevId === circId;
          if (link.batched && cellRun.add(circ, fromPrev ? RUN_FROM_PREV : RUN_FROM_NEXT, command, payload)) return;
          if (fromPrev) circ.fromPrev(command, payload);
          else circ.fromNext(command, payload);
          return;
        }
        case CellCommand.CREATE2:
          this.onCreate2(link, circId, payload, circ);
          return;
        case CellCommand.CREATED2:
          if (!circ) { this.metrics.error('CIRCUIT_UNKNOWN'); return; }
          circ.onCreated2(link, circId, payload);
          return;
        case CellCommand.DESTROY: {
          if (!circ) { this.cancelPending(link, circId); return; } // tor-spec 5.4: ignore DESTROY for circuits we do not know
          const reason = decodeDestroy(payload);
          circ.onDestroy(link, circId, reason);
          return;
        }
        default:
          // Link-level commands of other protocols (RECEIPT_*, SPEC.md §8.3) go to their owner;
          // the Channel handles its own; anything else is not for circuits.
          if (circId === 0 && this.opts.onLinkCell?.(link.ch, cell)) return;
          this.metrics.error('CELL_UNEXPECTED');
          return;
      }
    } catch (e) {
      // A malformed cell kills its circuit, never the node (SPEC.md §7b.9).
      const code = errorCode(e);
      this.metrics.error(code);
      this.log.debug({ code, msg: (e as Error).message }, 'circuit protocol error');
      if (circ && !circ.isClosed) circ.destroy(DestroyReason.PROTOCOL, code);
    }
  }

  private onCreate2(link: LinkState<C>, circId: number, payload: Buffer, existing: RelayCircuit | undefined): void {
    if (existing) {
      // SPEC.md §2.1: a CREATE2 on an id in use is refused with DESTROY PROTOCOL — which
      // also ends the circuit that held the id, so both ends agree it is gone.
      this.metrics.error('CIRCUIT_ID_IN_USE');
      existing.destroy(DestroyReason.PROTOCOL, 'CIRCUIT_ID_IN_USE');
      return;
    }
    // SPEC.md §1.5: the peer may only open ids from its own half (the initiator's half has the
    // high bit set). One from ours could collide with an id this node allocates later.
    if (CircIdAllocator.isInitiatorId(circId) === link.ch.isInitiator) {
      this.metrics.error('CIRCUIT_ID_WRONG_HALF');
      this.sendDestroy(link, circId, DestroyReason.PROTOCOL);
      return;
    }
    if (this.closed) { this.sendDestroy(link, circId, DestroyReason.HIBERNATING); return; }
    const pending = link.pendingCreates;
    // SPEC.md §7b.1, §7b.9: an id whose CREATE2 still waits is in use, whatever the limits say
    // of this one: both are withdrawn, so the waiting one is never answered on a refused id.
    if (pending?.has(circId)) {
      this.metrics.error('CIRCUIT_ID_IN_USE');
      this.cancelPending(link, circId);
      this.sendDestroy(link, circId, DestroyReason.PROTOCOL);
      return;
    }
    if (link.circuits.size + (pending?.size ?? 0) >= this.limits.maxCircuitsPerLink) {
      this.metrics.refused('circuits_per_link');
      this.sendDestroy(link, circId, DestroyReason.RESOURCELIMIT);
      return;
    }
    if (this.hooks.allowCircuit && !this.hooks.allowCircuit(link.ch)) {
      // SPEC.md §7b.9: refused before any public-key work, and the link is not read for a while,
      // so that a flood from one address is pushed back by TCP instead of costing reads.
      this.metrics.refused('circuit_rate');
      this.sendDestroy(link, circId, DestroyReason.RESOURCELIMIT);
      link.ch.holdReading?.(this.limits.rateRefusalHoldMs);
      return;
    }
    // SPEC.md §7b.9 onionskin queue: answer at once while this turn's public-key budget lasts and
    // nobody waits; else queue under the link's source (a flood waits behind its own cells only).
    if (this.queuedCreates === 0 && this.turnCreates < this.limits.createsPerTurn) {
      this.answerCreate2(link, circId, payload);
      return;
    }
    const source = this.hooks.creationSource?.(link.ch) ?? link;
    let q = this.onionQueue.get(source);
    if (q && q.length >= this.limits.maxQueuedCreatesPerSource) {
      // Its source already has a full queue: refused unanswered, and the link is not read for a
      // while — unless it is a listed relay's: that link carries many clients' circuits, and one
      // client's burst of extends must not stall the others' cells on it (SPEC.md §7b.9).
      this.metrics.refused('onion_queue');
      this.sendDestroy(link, circId, DestroyReason.RESOURCELIMIT);
      if (this.hooks.isListedRelay?.(link.ch) !== true) link.ch.holdReading?.(this.limits.rateRefusalHoldMs);
      return;
    }
    if (!q) { q = []; this.onionQueue.set(source, q); }
    // The cell's payload may be reused after this event: keep a copy.
    const job: CreateJob<C> = { link, circId, payload: Buffer.from(payload), at: this.clock(), cancelled: false };
    q.push(job);
    (link.pendingCreates ??= new Map()).set(circId, job);
    this.queuedCreates++;
    this.scheduleOnionQueue();
  }

  /** CREATE2 cells waiting in the onionskin queue (for tests and metrics). */
  get queuedCreateCount(): number { return this.queuedCreates; }

  private cancelPending(link: LinkState<C>, circId: number): void {
    const job = link.pendingCreates?.get(circId);
    if (!job) return;
    job.cancelled = true;
    link.pendingCreates!.delete(circId);
  }

  private scheduleOnionQueue(): void {
    if (this.onionScheduled) return;
    this.onionScheduled = true;
    setImmediate(this.runOnionQueue);
  }

  /**
   * One turn of the onionskin queue: one CREATE2 per source in turn, until the turn's budget is
   * used or the queue is empty; cells that waited past maxOnionQueueDelayMs are refused unanswered.
   * Then yield to I/O (setImmediate) and go on.
   */
  private readonly runOnionQueue = (): void => {
    this.onionScheduled = false;
    this.turnCreates = 0;
    const budget = this.limits.createsPerTurn;
    while (this.queuedCreates > 0 && this.turnCreates < budget) {
      for (const [source, q] of [...this.onionQueue]) {
        if (this.turnCreates >= budget) break;
        const job = q.shift()!;
        this.queuedCreates--;
        // Served: this source goes to the back of the round.
        this.onionQueue.delete(source);
        if (q.length > 0) this.onionQueue.set(source, q);
        if (job.cancelled || job.link.closed) continue;
        job.link.pendingCreates!.delete(job.circId);
        if (this.closed) { this.sendDestroy(job.link, job.circId, DestroyReason.HIBERNATING); continue; }
        // SPEC.md §7b.9: the wait is measured on the monotonic clock, so a step of the wall clock
        // neither refuses a CREATE2 that has not waited (forward) nor keeps one that has (back).
        if (this.clock() - job.at > this.limits.maxOnionQueueDelayMs) {
          this.metrics.refused('onion_queue_wait');
          this.sendDestroy(job.link, job.circId, DestroyReason.RESOURCELIMIT);
          continue;
        }
        this.answerCreate2(job.link, job.circId, job.payload);
      }
    }
    if (this.queuedCreates > 0) this.scheduleOnionQueue();
  };

  /** The ntor handshake of one CREATE2 and the new circuit; it counts against the turn's budget. */
  private answerCreate2(link: LinkState<C>, circId: number, payload: Buffer): void {
    this.turnCreates++;
    if (!this.turnResetScheduled) {
      this.turnResetScheduled = true;
      setImmediate(() => { this.turnResetScheduled = false; this.turnCreates = 0; });
    }
    this.create2Now(link, circId, payload);
  }

  private create2Now(link: LinkState<C>, circId: number, payload: Buffer): void {
    let reply: Buffer;
    let keys: Buffer;
    let alg: RelayCryptoAlgorithm;
    try {
      const c2 = decodeCreate2(payload);
      // SPEC.md §5.6.1: the htype chooses the hop's relay crypto (tor1 or CGO) for this circuit.
      const chosen = relayCryptoForHtype(c2.htype);
      if (!chosen) throw err('CIRCUIT_UNSUPPORTED_HANDSHAKE', `CREATE2 handshake type ${c2.htype}`);
      alg = chosen;
      const hs = relayCryptoHandshake(alg);
      if (LAT_TRACE) latTrace('relay.ntor-start');
      const r = ntorServerRespond({ onionskin: c2.hdata, id: this.opts.identity, onionKeys: this.opts.onionKeys(), protoid: hs.protoid, keyLength: hs.keyLength });
      if (LAT_TRACE) latTrace('relay.ntor-done');
      reply = r.reply;
      keys = r.keys;
    } catch (e) {
      // SPEC.md §7b.1: a bad handshake destroys that circuit id only.
      const code = errorCode(e);
      this.metrics.error(code);
      this.log.debug({ code }, 'CREATE2 refused');
      this.sendDestroy(link, circId, DestroyReason.PROTOCOL);
      return;
    }
    const circ = new RelayCircuit(this, link, circId, createRelayHop(keys, alg));
    if (LAT_TRACE) latTrace('relay.circuit-made');
    keys.fill(0);
    link.circuits.set(circId, circ);
    this.circuits.add(circ);
    this.metrics.circuitCreated(alg);
    circ.sendToPrev(CellCommand.CREATED2, encodeCreated2({ hdata: reply }));
  }

  /** DESTROY for a circuit id with no circuit behind it (refused CREATE2). */
  sendDestroy(link: LinkState, circId: number, reason: number): void {
    if (link.closed) return;
    originRun.before(link);
    try { link.ch.send(circId, CellCommand.DESTROY, encodeDestroy(reason)); } catch { /* link closing */ }
  }

  private onDrain(link: LinkState<C>): void {
    link.congested = false;
    // Round robin over circuits with queued cells, FLUSH_BATCH cells each per round, until the
    // queues are empty or the link pushes back again (then the next 'drain' continues).
    while (link.waiting.size > 0 && !link.congested && !link.closed) {
      for (const circ of [...link.waiting]) {
        if (link.congested) return;
        link.waiting.delete(circ);
        circ.flushQueue(link);
      }
    }
    if (link.congested) return;
    for (const circ of [...link.blockedEdges]) {
      if (link.congested) return;
      link.blockedEdges.delete(circ);
      circ.edgeWritable();
    }
  }

  private onLinkClosed(link: LinkState<C>): void {
    if (link.closed) return;
    cellRun.flush();
    link.closed = true;
    this.links.delete(link.ch);
    for (const circ of [...link.circuits.values()]) circ.onLinkClosed(link);
    link.circuits.clear();
    link.waiting.clear();
    link.blockedEdges.clear();
    if (link.pendingCreates) { for (const j of link.pendingCreates.values()) j.cancelled = true; link.pendingCreates.clear(); }
  }

  /** @internal */
  forget(circ: RelayCircuit, reason: number, code?: string): void {
    if (!this.circuits.delete(circ)) return;
    this.metrics.circuitDestroyed(destroyReasonName(reason));
    if (code) this.log.debug({ code, reason: destroyReasonName(reason) }, 'circuit destroyed');
  }

  /** @internal errors that reach the switch from async hooks */
  noteError(e: unknown): BitcloudError | undefined {
    this.metrics.error(errorCode(e));
    return undefined;
  }
}
