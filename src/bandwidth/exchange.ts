// SPEC.md §8.1, §8.3: a node's receipt exchanges over all its counted links. It attaches a
// LinkReceipts (and its counter) to every link whose both ends proved an identity, routes the
// RECEIPT_* cells it reads to it, proposes at each epoch boundary (initiator links, after a random
// delay), expires unanswered proposals, and logs and counts every disagreement. Before the node
// closes its links on purpose it settles them: it proposes on the links it opened and sends
// RECEIPT_REQUEST on the links it accepted (SPEC §8.3 steps 10–11).
// Relays and storage nodes both run it (relay/circuits.ts, storage/endpoint.ts).
import { errorCode } from '../errors';
import { CellCommand, type Cell } from '../wire/cell';
import { addressKey, hostOf } from '../wire/address-key';
import type { Ed25519KeyPair } from '../crypto/primitives';
import type { Channel } from '../link/channel';
import { silentLogger, type Logger } from '../ops/log';
import { SerialSource } from './counters';
import type { Receipt } from './receipt';
import { LinkReceipts, epochAt, type Disagreement } from './link-receipts';
import { ReceiptMetrics } from './receipt-metrics';

/** SPEC §8.3 step 4: more PROPOSE cells than this in one epoch MAY close the link. */
export const MAX_PROPOSALS_PER_EPOCH = 16;
/** SPEC §8.3 step 9: without a consensus (no epoch) PROPOSE cells are counted per this much of the clock. */
export const NO_EPOCH_PROPOSE_WINDOW_MS = 60_000;
/** SPEC §8.3 step 11: an initiator honours at most this many RECEIPT_REQUEST per link and epoch. */
export const MAX_REQUESTS_PER_EPOCH = 16;
/** SPEC §8.3 step 13: receipts kept per epoch of at most this many peers not listed in the node's consensus. */
export const MAX_UNLISTED_RECEIPT_PEERS = 1024;
/** SPEC §8.3 step 13: of those, at most this many per IPv4 address or IPv6 /64 the links came from. */
export const MAX_UNLISTED_RECEIPT_PEERS_PER_ADDRESS = 8;
/** SPEC §8.3 step 13: receipts kept per peer and epoch as the responder, at most. */
export const MAX_RECEIPTS_PER_PEER_EPOCH = 64;
/** SPEC §8.3 step 1: the boundary PROPOSE is delayed by a random 0–30 s (never beyond P/4 here). */
export const DEFAULT_RECEIPT_JITTER_SECONDS = 30;
/** SPEC §8.3 step 3: no answer in 60 s (or one period, if shorter) leaves the segment unpaid. */
export const DEFAULT_RECEIPT_ANSWER_TIMEOUT_SECONDS = 60;

export interface ReceiptExchangeOptions {
  identity: Ed25519KeyPair;
  /** The consensus period P in seconds, or null before this node holds a consensus. */
  periodSeconds: () => number | null;
  jitterSeconds?: number;
  answerTimeoutSeconds?: number;
  /** Clock (ms since the Unix epoch) and randomness in [0, 1); tests inject both. */
  now?: () => number;
  random?: () => number;
  metrics?: ReceiptMetrics;
  log?: Logger;
  /** Every countersigned receipt this node now holds (either role). */
  onReceipt?: (r: Receipt) => void;
  onDisagreement?: (d: Disagreement) => void;
  /** After the boundary of `ended` was handled (the proposals may still be waiting for their delay). */
  onEpochEnd?: (ended: number) => void;
  /**
   * SPEC §8.3 step 13: whether a peer (64 lowercase hex) is listed in the node's current consensus.
   * Absent: no peer is (the limits on unlisted peers apply to all).
   */
  listed?: (fingerprint: string) => boolean;
}

/** SPEC §8.3 step 13: the receipts this node kept as responder in one epoch, per peer. */
interface KeptInEpoch {
  perPeer: Map<string, number>;
  /** Peers in `perPeer` that were not listed when their first receipt was kept. */
  unlisted: number;
  /** Of those, how many per source address (the address key, SPEC.md §7b.9) of the link their first receipt came on. */
  unlistedPerSource: Map<string, number>;
}

interface LinkEntry {
  ch: Channel;
  lr: LinkReceipts;
  /** Responder side: PROPOSE cells read in `proposeEpoch` (SPEC §8.3 step 4; without a consensus, a negative minute key). */
  proposeEpoch: number;
  proposals: number;
  /** Initiator side: RECEIPT_REQUEST cells read in `requestEpoch` (SPEC §8.3 step 11). */
  requestEpoch: number;
  requests: number;
  /** Boundary proposals waiting for their random delay. */
  delays: Set<NodeJS.Timeout>;
  /** Answer timeouts of proposals sent. */
  timers: Set<NodeJS.Timeout>;
}

const RECEIPT_COMMANDS = new Set<number>([
  CellCommand.RECEIPT_PROPOSE, CellCommand.RECEIPT_COUNTERSIGN, CellCommand.RECEIPT_REJECT, CellCommand.RECEIPT_REQUEST,
]);

export class ReceiptExchange {
  readonly metrics: ReceiptMetrics;
  private readonly links = new Map<Channel, LinkEntry>();
  private readonly serials = new SerialSource();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | null = null;
  private lastEnded = -1;
  private stopped = false;
  /** SPEC §8.3 step 13: receipts kept as responder, by body epoch (only accepted epochs are kept). */
  private readonly kept = new Map<number, KeptInEpoch>();

  constructor(private readonly o: ReceiptExchangeOptions) {
    this.metrics = o.metrics ?? new ReceiptMetrics();
    this.log = o.log ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.metrics.countedLinks = () => this.links.size;
    this.metrics.liveCells = () => {
      let sent = 0, received = 0;
      for (const e of this.links.values()) { sent += e.lr.counter.sent; received += e.lr.counter.received; }
      return { sent, received };
    };
  }

  get linkCount(): number { return this.links.size; }

  /** The LinkReceipts of a counted link (tests, status). */
  linkReceipts(ch: Channel): LinkReceipts | undefined { return this.links.get(ch)?.lr; }

  /** The current segment of a counted link counted at least one cell (false for a link not counted). */
  segmentCounted(ch: Channel): boolean { return this.links.get(ch)?.lr.segmentCounted ?? false; }

  /**
   * SPEC §8.1.1: count this link if both ends proved an identity; anonymous initiators (clients,
   * reachability tests) never are. Call in the tick the link is handed over. Returns true if counted.
   * `identity`: the key this end proved on the link, when not the node's identity (a hidden node's
   * pseudonym, SPEC.md §9.21.7).
   */
  attach(ch: Channel, identity: Ed25519KeyPair = this.o.identity): boolean {
    if (this.stopped || ch.closed || ch.peerIdentity === null) return false;
    if (this.links.has(ch)) return true;
    const isInitiator = ch.isInitiator;
    // SPEC §8.3 step 13: a link's unlisted peers are counted under the address key of its remote
    // address (SPEC.md §7b.9 "Address key"); null (address unknown): only under the global limit.
    const source = ch.remoteAddress ? addressKey(hostOf(ch.remoteAddress)) : null;
    const lr = new LinkReceipts({
      identity, peerIdentity: ch.peerIdentity, isInitiator, serials: this.serials,
      send: (command, payload) => { ch.send(0, command, payload); },
      queuedSent: () => ch.queuedCountedCells(),
      epochAccepted: (e) => this.epochAccepted(e),
      admit: (b): boolean => this.admit(lr.peer, b.epoch, source),
      onReceipt: (r) => {
        if (!isInitiator) this.noteKept(lr.peer, r.body.epoch, source);
        this.metrics.receipt(isInitiator ? 'initiator' : 'responder');
        this.o.onReceipt?.(r);
      },
      onDisagreement: (d) => this.disagreement(lr.peer, d),
      onSegment: (s) => this.metrics.segment(s, isInitiator),
    });
    const entry: LinkEntry = { ch, lr, proposeEpoch: -1, proposals: 0, requestEpoch: -1, requests: 0, delays: new Set(), timers: new Set() };
    ch.attachCounter(lr.counter);
    this.links.set(ch, entry);
    ch.once('close', () => this.detach(entry));
    return true;
  }

  /**
   * The CircuitSwitch's onLinkCell hook: takes RECEIPT_* cells (returns true), leaves others.
   * On a link that is not counted (anonymous) they are ignored and counted (SPEC §8.1.1).
   * Errors are counted and logged at debug; they never close the link or throw.
   */
  onLinkCell(ch: Channel, cell: Cell): boolean {
    const cmd = cell.command;
    if (!RECEIPT_COMMANDS.has(cmd)) return false;
    const e = this.links.get(ch);
    if (!e) {
      this.metrics.cellError(ch.peerIdentity === null ? 'RECEIPT_ANONYMOUS_LINK' : 'RECEIPT_LINK_NOT_COUNTED');
      return true;
    }
    if (cmd === CellCommand.RECEIPT_PROPOSE && !e.lr.isInitiator && this.tooManyProposals(e)) return true;
    try {
      if (cmd === CellCommand.RECEIPT_REQUEST) this.onRequest(e, cell.payload);
      else e.lr.onCell(cmd, cell.payload);
    } catch (err) {
      const code = errorCode(err);
      this.metrics.cellError(code);
      this.log.debug({ peer: e.lr.peer, code, msg: (err as Error).message }, 'receipt cell refused');
    }
    return true;
  }

  /** Start proposing at epoch boundaries. */
  start(): void {
    if (this.timer || this.stopped) return;
    const P = this.o.periodSeconds();
    if (P) this.lastEnded = epochAt(this.now(), P) - 1; // nothing to do for epochs before we started
    this.schedule();
  }

  /** Stop the boundary timer and every pending delay/timeout; links are their owner's to close. */
  stop(): void {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    for (const e of this.links.values()) this.clearTimers(e);
  }

  /**
   * The epoch boundary for `ended` (the timer calls it; tests call it directly): every initiator
   * link proposes for `ended`, each after its random delay (`delay: false` = at once).
   * Returns the number of links that will propose (a link with an empty segment then sends nothing).
   */
  boundary(ended: number, o: { delay?: boolean } = {}): number {
    const P = this.o.periodSeconds();
    const maxDelayMs = o.delay === false || !P ? 0 : Math.min(this.o.jitterSeconds ?? DEFAULT_RECEIPT_JITTER_SECONDS, P / 4) * 1000;
    let n = 0;
    for (const e of this.links.values()) {
      if (!e.lr.isInitiator || e.ch.closed) continue;
      n++;
      const wait = Math.floor(this.random() * maxDelayMs);
      if (wait <= 0) this.proposeOn(e, ended);
      else {
        const t = setTimeout(() => { e.delays.delete(t); this.proposeOn(e, ended); }, wait);
        t.unref();
        e.delays.add(t);
      }
    }
    this.o.onEpochEnd?.(ended);
    return n;
  }

  /**
   * SPEC §8.3 steps 10–11, what a node runs before it closes its links on purpose (shutdown):
   * proposes on the links it opened (initiator links among `channels`, default all) and sends
   * RECEIPT_REQUEST on every link it accepted (at shutdown the listener closes them all), then waits
   * for the answers, at most `graceMs` for both together.
   */
  async settleBeforeClose(graceMs: number, channels?: Iterable<Channel>): Promise<void> {
    const deadline = Date.now() + graceMs;
    await Promise.all([this.proposeBeforeClose(graceMs, channels), this.requestBeforeClose(Math.max(0, deadline - Date.now()))]);
  }

  /**
   * SPEC §8.3 step 11, the responder side of closing on purpose: send RECEIPT_REQUEST on every
   * responder link, then wait, at most `graceMs`, until each link whose segment counted a cell has
   * read (and answered) a PROPOSE after it, or closed. Links with an empty segment are not waited
   * for: their initiator has, in general, nothing to propose.
   */
  async requestBeforeClose(graceMs: number): Promise<void> {
    const P = this.o.periodSeconds();
    if (!P) return; // no epoch without a consensus: nothing the peer could propose
    const epoch = epochAt(this.now(), P);
    const waiting: { e: LinkEntry; read: number }[] = [];
    for (const e of this.links.values()) {
      if (e.lr.isInitiator || e.ch.closed) continue;
      const read = e.lr.proposalsRead;
      const counted = e.lr.segmentCounted;
      try {
        e.lr.request(epoch);
      } catch (err) {
        this.metrics.cellError(errorCode(err));
        continue;
      }
      if (counted) waiting.push({ e, read });
    }
    const deadline = Date.now() + graceMs;
    while (waiting.some((w) => w.e.lr.proposalsRead === w.read && !w.e.ch.closed) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * SPEC §8.3 step 1: before closing links on purpose, propose for the current epoch on each
   * (initiator links among `channels`, default all), then wait for the answers, at most `graceMs`.
   */
  async proposeBeforeClose(graceMs: number, channels?: Iterable<Channel>): Promise<void> {
    const P = this.o.periodSeconds();
    if (!P) return; // no epoch without a consensus: nothing a peer could countersign
    const epoch = epochAt(this.now(), P);
    const waiting: LinkEntry[] = [];
    for (const ch of channels ?? [...this.links.keys()]) {
      const e = this.links.get(ch);
      if (!e || !e.lr.isInitiator || ch.closed) continue;
      this.clearDelays(e); // a delayed boundary proposal goes out now instead (its epoch is over anyway)
      this.proposeOn(e, epoch);
      if (e.lr.pendingCount > 0) waiting.push(e);
    }
    const deadline = Date.now() + graceMs;
    while (waiting.some((e) => e.lr.pendingCount > 0 && !e.ch.closed) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * SPEC §8.3 step 11, initiator side: the responder is closing the link; propose for the current
   * epoch now, as before our own close (a delayed boundary proposal is folded into it). Beyond 16
   * REQUESTs per link and epoch, ignored and counted. Throws what LinkReceipts.readRequest throws.
   */
  private onRequest(e: LinkEntry, payload: Buffer): void {
    e.lr.readRequest(payload);
    const P = this.o.periodSeconds();
    if (!P) return; // no consensus, no epoch: nothing to propose
    const cur = epochAt(this.now(), P);
    if (cur !== e.requestEpoch) { e.requestEpoch = cur; e.requests = 0; }
    if (++e.requests > MAX_REQUESTS_PER_EPOCH) {
      this.metrics.cellError('RECEIPT_TOO_MANY_REQUESTS');
      return;
    }
    this.clearDelays(e);
    this.proposeOn(e, cur);
  }

  private proposeOn(e: LinkEntry, epoch: number): void {
    if (e.ch.closed) return;
    try {
      const p = e.lr.propose(epoch);
      if (!p) return;
      const P = this.o.periodSeconds() ?? Infinity;
      const timeoutMs = Math.min(this.o.answerTimeoutSeconds ?? DEFAULT_RECEIPT_ANSWER_TIMEOUT_SECONDS, P) * 1000;
      const t = setTimeout(() => { e.timers.delete(t); e.lr.expire(p.body.serial); }, timeoutMs);
      t.unref();
      e.timers.add(t);
    } catch (err) {
      this.metrics.cellError(errorCode(err));
      this.log.debug({ peer: e.lr.peer, code: errorCode(err) }, 'receipt proposal not sent');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    const P = this.o.periodSeconds();
    const now = this.now();
    let wait = 1000; // no consensus yet: look again in a second
    if (P) {
      const cur = epochAt(now, P);
      if (this.lastEnded < 0) this.lastEnded = cur - 1;
      else if (cur - 1 > this.lastEnded) {
        // Timers may fire a little late, never for an epoch we skipped: a jump (suspend) ends only the last one.
        this.lastEnded = cur - 1;
        this.boundary(cur - 1);
      }
      wait = Math.max(1, (cur + 1) * P * 1000 - now + 1);
    }
    this.timer = setTimeout(() => { this.timer = null; this.schedule(); }, wait);
    this.timer.unref();
  }

  /**
   * SPEC §8.3 step 13, asked before the initiator's signature is checked: one more receipt of
   * `peer` for `epoch` is kept unless 64 of it are kept already, or it is a new peer not listed in
   * the consensus and 1024 such peers have receipts kept for the epoch, or 8 such peers whose first
   * receipt came from `source` (the address key of the link's address; null: no per-address limit).
   * A refusal is counted.
   */
  private admit(peer: string, epoch: number, source: string | null): boolean {
    const k = this.kept.get(epoch);
    const n = k?.perPeer.get(peer);
    if (n !== undefined) {
      if (n < MAX_RECEIPTS_PER_PEER_EPOCH) return true;
      this.metrics.proposalRefused('peer_receipts');
      return false;
    }
    if (!k || this.o.listed?.(peer) === true) return true;
    if (k.unlisted >= MAX_UNLISTED_RECEIPT_PEERS) {
      this.metrics.proposalRefused('unlisted_peers');
      return false;
    }
    if (source !== null && (k.unlistedPerSource.get(source) ?? 0) >= MAX_UNLISTED_RECEIPT_PEERS_PER_ADDRESS) {
      this.metrics.proposalRefused('unlisted_address');
      return false;
    }
    return true;
  }

  private noteKept(peer: string, epoch: number, source: string | null): void {
    let k = this.kept.get(epoch);
    if (!k) {
      // Only the current and the previous epoch are accepted (§8.3 check 3): older ones are done with.
      for (const e of this.kept.keys()) if (e < epoch - 1) this.kept.delete(e);
      this.kept.set(epoch, (k = { perPeer: new Map(), unlisted: 0, unlistedPerSource: new Map() }));
    }
    const n = k.perPeer.get(peer);
    if (n === undefined && this.o.listed?.(peer) !== true) {
      k.unlisted++;
      if (source !== null) k.unlistedPerSource.set(source, (k.unlistedPerSource.get(source) ?? 0) + 1);
    }
    k.perPeer.set(peer, (n ?? 0) + 1);
  }

  private epochAccepted(e: number): boolean {
    const P = this.o.periodSeconds();
    if (!P) return false;
    const cur = epochAt(this.now(), P);
    return e === cur || e === cur - 1;
  }

  /**
   * SPEC §8.3 steps 4 and 9: PROPOSE cells are counted per link per the responder's current epoch.
   * Without a consensus there is no epoch (every PROPOSE is REJECTed, step 6): they are counted per
   * minute of the node's clock instead (negative keys, never an epoch), so that a flood is still
   * bounded and an initiator proposing once per its epoch keeps its link however long we wait.
   */
  private tooManyProposals(e: LinkEntry): boolean {
    const P = this.o.periodSeconds();
    const cur = P ? epochAt(this.now(), P) : -1 - Math.floor(this.now() / NO_EPOCH_PROPOSE_WINDOW_MS);
    if (cur !== e.proposeEpoch) { e.proposeEpoch = cur; e.proposals = 0; }
    if (++e.proposals <= MAX_PROPOSALS_PER_EPOCH) return false;
    this.metrics.cellError('LINK_PROTOCOL_VIOLATION');
    this.log.warn({ peer: e.lr.peer, epoch: P ? cur : null }, `more than ${MAX_PROPOSALS_PER_EPOCH} RECEIPT_PROPOSE in one ${P ? 'epoch' : 'minute (no consensus)'}: closing the link`);
    e.ch.close('LINK_PROTOCOL_VIOLATION: too many RECEIPT_PROPOSE');
    return true;
  }

  private disagreement(peer: string, d: Disagreement): void {
    this.metrics.disagreement(d.reason);
    if (d.side === 'sent' && d.reason === 'EMPTY') this.metrics.proposalRefused('empty');
    // SPEC §8.3 step 3: epoch, peer fingerprint, both counts, reason — never circuits or addresses.
    // Refusals of step 13 (nothing to prove, or no more kept) are the peer's doing: debug only.
    const level = d.side === 'sent' && (d.reason === 'EMPTY' || d.reason === 'TOO_MANY') ? 'debug' : 'info';
    this.log[level]({ epoch: d.epoch, peer, reason: d.reason, side: d.side, proposed: d.proposed, responder: d.responder }, 'receipt disagreement: segment unpaid');
    this.o.onDisagreement?.(d);
  }

  private detach(e: LinkEntry): void {
    this.clearTimers(e);
    // The last segment of a link that closed without an exchange is unpaid (SPEC §8.3 step 1),
    // but its cells were carried: they still count in bitcloud_receipt_cells_total.
    this.metrics.segment(e.lr.counter.cut(), e.lr.isInitiator);
    e.lr.expireAll(); // no answer can arrive on a closed link
    this.links.delete(e.ch);
  }

  private clearDelays(e: LinkEntry): void {
    for (const t of e.delays) clearTimeout(t);
    e.delays.clear();
  }

  private clearTimers(e: LinkEntry): void {
    this.clearDelays(e);
    for (const t of e.timers) clearTimeout(t);
    e.timers.clear();
  }
}
