// The public types of the circuit switch (SPEC.md §7b): its limits, the hooks a node plugs into
// it, and what those hooks are handed. Owned here so that the switch (switch.ts), the circuits it
// dispatches to (relay-circuit.ts) and the nodes that run it (relay/, storage/) import them from
// one place, and neither switch.ts nor relay-circuit.ts needs the other for them.
import type { CellChannel } from '../link/cell-channel';
import type { BeginBody, ConnectedBody, ResolvedAnswer } from '../wire/messages';
import type { CircuitStream } from './stream';

export interface SwitchLimits {
  /** Circuits one link may hold open (as either side). */
  maxCircuitsPerLink: number;
  /** Cells one circuit may queue per direction while a link is congested. */
  maxQueuedCellsPerCircuit: number;
  /** Streams one circuit may hold open at this node. */
  maxStreamsPerCircuit: number;
  /**
   * SPEC.md §7b.7: name resolutions one circuit may have pending at this node, RESOLVE and BEGIN
   * to a name together (a pending RESOLVE also counts as a stream).
   */
  maxResolvesPerCircuit: number;
  /**
   * SPEC.md §7b.9 (Tor's DoSStreamCreationRate/Burst, defense "refuse"): each circuit's bucket of
   * stream-opening messages (BEGIN, BEGIN_DIR, BEGIN_STORAGE, RESOLVE) at this node, refilled at
   * streamCreationRate per second up to streamCreationBurst; with no token left the message is
   * refused (END(RESOURCELIMIT), a RESOLVE a transient error) and the circuit kept. Either 0: no limit.
   */
  streamCreationRate: number;
  streamCreationBurst: number;
  /**
   * SPEC.md §7b.9 (Tor's onionskin queue): CREATE2 handshakes (public-key work) the node does in
   * one event-loop turn; the rest wait in the queue, so relaying cells is never starved.
   */
  createsPerTurn: number;
  /** A CREATE2 that waited longer than this in the queue is refused unanswered (Tor's MaxOnionQueueDelay). */
  maxOnionQueueDelayMs: number;
  /** CREATE2 cells one source (address, or listed relay) may have waiting; past it, refused at once. */
  maxQueuedCreatesPerSource: number;
  /**
   * After a CREATE2 refused by the creation rate (allowCircuit false) or a full queue for its
   * source, the link is not read for this long: a flood from one address is pushed back by TCP
   * instead of costing reads. A listed relay's link is never held for a full queue.
   */
  rateRefusalHoldMs: number;
}

/** Where an EXTEND2 asks to go (SPEC.md §7b.3). */
export interface ExtendTarget {
  identity: Buffer;
  addresses: Array<{ host: string; port: number }>;
  /**
   * Whether the extension is still wanted: false once its circuit closed or was truncated. A hook
   * that waits before it opens a link (SPEC.md §7b.3 item 2) asks again after the wait.
   */
  wanted?: () => boolean;
}

/** A stream a client opened at this node (BEGIN, BEGIN_DIR, BEGIN_STORAGE). */
export interface IncomingStream {
  kind: 'begin' | 'begin_dir' | 'begin_storage';
  /** For 'begin': where to connect. */
  begin: BeginBody | null;
  stream: CircuitStream;
  /**
   * The previous hop is a client, not a listed relay (SPEC.md §7b.7): to this node the circuit is
   * one hop long, whether or not it goes on elsewhere. Judged against the consensus held when read.
   */
  readonly oneHop: boolean;
  /** Send CONNECTED (optionally with the address connected to) and let data flow. */
  accept(connected?: ConnectedBody): void;
  /** Send END(reason) and drop the stream. */
  refuse(reason: number): void;
  /**
   * SPEC.md §7b.7: take one of the circuit's pending name resolutions (RESOLVE and BEGIN to a
   * name together, at most maxResolvesPerCircuit); null when none is left. Call the returned
   * function once the lookup settles. Absent: the stream's circuit sets no such limit.
   */
  resolveSlot?(): (() => void) | null;
}

/** What a node plugs into its circuit switch; `C` is the channel type the node's links use. */
export interface SwitchHooks<C extends CellChannel = CellChannel> {
  /** DoS: may this link create one more circuit now? */
  allowCircuit?(ch: C): boolean;
  /**
   * SPEC.md §7b.9: the source a CREATE2 on `ch` is queued under (the onionskin queue is served
   * round robin by source). Absent: each link is its own source.
   */
  creationSource?(ch: C): string;
  /**
   * SPEC.md §7b.7: is the peer of `ch` a relay — an identity listed in the node's consensus? An
   * identity the peer proved is not enough: anyone can make one. Absent: any proved identity
   * counts (only for nodes run without a consensus, e.g. in tests).
   */
  isListedRelay?(ch: C): boolean;
  /**
   * EXTEND2: a link to `target` whose peer proved `target.identity` (and which the node's
   * policy allows). Absent: this node never extends. Reject with a BitcloudError; its code
   * picks the DESTROY reason (destroyReasonForExtendFailure in end-reasons.ts: OR_IDENTITY for
   * the identity and address refusals, else CONNECTFAILED).
   */
  extend?(target: ExtendTarget, from: C): Promise<C>;
  /** A stream was opened here; the hook answers with accept() or refuse(). Absent: all refused. */
  onStream?(s: IncomingStream): void;
  /**
   * RESOLVE (exits only). Absent: answered with a non-transient error. `oneHop`: the circuit
   * came from a client, not a listed relay (SPEC.md §7b.7: refused, like BEGIN).
   */
  resolve?(host: string, ctx: { oneHop: boolean }): Promise<ResolvedAnswer[]>;
  /**
   * SPEC.md §9.21: introduction and rendezvous messages (relay commands 32–39, 41) recognized at
   * this hop. Absent: they are protocol violations, like any command a relay does not accept.
   */
  rendezvous?: RendezvousHook;
}

/** A circuit as the rendezvous code sees it (RelayCircuit implements it). */
export interface RendezvousCircuit {
  readonly isClosed: boolean;
  /** A next hop exists (this node forwards), or an extension toward one is in progress. */
  readonly extended: boolean;
  /**
   * The link the circuit came in on (its previous hop), compared by identity only: introduction
   * circuits are shared fairly among previous hops when the relay holds its maximum (SPEC.md §9.21.4).
   */
  readonly prev: object;
  /**
   * SPEC.md §9.21.4, §9.21.5: the previous hop did not prove a relay identity the consensus lists
   * (a client's link, or a hidden node's under its pseudonym, §9.21.7): to this relay the circuit is
   * one hop long, and it takes no ESTABLISH_INTRO, INTRODUCE1 or ESTABLISH_RENDEZVOUS.
   */
  readonly oneHop: boolean;
  /** Originate a relay message here, toward the circuit's origin. */
  sendRelay(command: number, streamId: number, data: Uint8Array): void;
  /** SPEC.md §9.21.5 step 4: from now on cells this hop does not recognize cross to `other`. */
  join(other: RendezvousCircuit): void;
  destroy(reason: number, code?: string): void;
}

export interface RendezvousHook {
  /** True for the commands the hook takes. */
  handles(command: number): boolean;
  /** `data` is a copy (the cell buffer is reused). Throws a BitcloudError to destroy the circuit. */
  onMessage(circ: RendezvousCircuit, command: number, data: Buffer): void;
  /** SPEC.md §7b.3: the circuit is an introduction circuit, waits under a cookie or is joined. */
  hasRole(circ: RendezvousCircuit): boolean;
  /** The circuit is gone: forget what it held. */
  forget(circ: RendezvousCircuit): void;
}
