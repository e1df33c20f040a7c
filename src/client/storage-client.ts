// SPEC.md §9.9: the client's sessions with storage nodes. One storage stream per node (a
// BEGIN_STORAGE stream on a circuit ending at the node, or a direct session — the caller's `open`
// decides), opened on first use, requests pipelined on it, reopened once when the transport fails
// or the opening itself failed (a new circuit, as Tor retries a stream on a new circuit); a node
// that cannot be reached the second time either is marked dead for the rest of the run. Per-node throughput is
// measured so downloads can prefer the fastest nodes.
import type { Duplex } from 'node:stream';
import { auditShare, type AuditCommitment, type AuditOptions, type AuditResult } from '../storage/auditor';
import { err, isBitcloudError, type BitcloudError } from '../errors';
import { silentLogger, type Logger } from '../ops/log';
import type { ConsensusRelay } from '../dir/types';
import { StorageChannel, throwIfStorageAborted, untilStorageAborted } from '../storage/channel';
import type { StorageRequest, StorageResponse } from '../storage/protocol';
import { nowSeconds } from './lease-expiry';

/** A storage node as the consensus lists it (Storage flag, storage port). */
export type StorageNode = ConsensusRelay;
/** Opens one storage stream to a node: over a circuit, or direct. */
export type OpenStorageStream = (node: StorageNode) => Promise<Duplex>;

export interface StorageClientOptions {
  /** Every storage node of the consensus (placement ranks all of them). */
  nodes: readonly StorageNode[];
  open: OpenStorageStream;
  /** Lease asked for on put (0 = the node's default). */
  leaseSeconds?: number;
  /** Moderation class declared on every put (SPEC.md §10.1; default encrypted-private). */
  contentClass?: string;
  /** A request not answered within this long fails its session (STORAGE_TIMEOUT). Default 120 s. */
  requestTimeoutMs?: number;
  log?: Logger;
}

type Answer<T extends StorageRequest['type']> = Extract<StorageResponse, { type: T }>;

interface Session {
  channel: StorageChannel;
  stream: Duplex;
}

/** Storage nodes of a consensus: Running, Valid, Storage flag, a storage port. */
export function storageNodesOf(relays: readonly ConsensusRelay[]): StorageNode[] {
  // SPEC.md §9.21.1: a hidden node has no storage port; it is reached by rendezvous.
  return relays.filter((r) => r.flags.has('Storage') && r.flags.has('Running') && r.flags.has('Valid') && (r.storagePort > 0 || r.roles.includes('hidden')));
}

/**
 * SPEC.md §9.14.1, §9.21.1: the storage nodes that serve name lookups (DhtGet / DhtPut): those
 * with a storage port. A hidden node runs no DHT (its UDP port would be an address), so it is
 * never asked. Empty when the consensus lists no public storage node: names then go to relays'
 * name mirrors instead (§9.14.2).
 */
export function nameNodesOf(relays: readonly ConsensusRelay[]): StorageNode[] {
  return storageNodesOf(relays).filter((r) => !r.roles.includes('hidden') && r.storagePort > 0);
}


/** The errors session() rejected with because the node's stream could not be opened. */
const OPEN_FAILURES = new WeakSet<BitcloudError>();

/** Errors of the node's store, sent as error responses: the session itself is fine. */
function isRemote(e: unknown): boolean {
  return isBitcloudError(e) && e.detail?.remote === true;
}

export class StorageClient {
  readonly nodes: readonly StorageNode[];
  readonly fingerprints: readonly string[];
  /** How long a request may go unanswered (STORAGE_TIMEOUT), in ms. */
  readonly requestTimeoutMs: number;
  private readonly byFp: Map<string, StorageNode>;
  private readonly sessions = new Map<string, Promise<Session>>();
  /** The session each pending entry of `sessions` resolved to. */
  private readonly live = new Map<string, Session>();
  private readonly dead = new Map<string, BitcloudError>();
  /** EWMA of bytes per millisecond of whole-share GETs, per node. */
  private readonly speed = new Map<string, number>();
  private readonly log: Logger;
  private closed = false;

  constructor(private readonly o: StorageClientOptions) {
    this.nodes = o.nodes;
    this.fingerprints = o.nodes.map((n) => n.fingerprint);
    this.requestTimeoutMs = o.requestTimeoutMs ?? 120_000;
    this.byFp = new Map(o.nodes.map((n) => [n.fingerprint, n]));
    this.log = o.log ?? silentLogger;
  }

  isDead(fp: string): boolean { return this.dead.has(fp); }
  /** Nodes given up on in this run, with why. */
  deadNodes(): Array<{ fingerprint: string; code: string }> {
    return [...this.dead].map(([fingerprint, e]) => ({ fingerprint, code: e.code }));
  }

  /** Measured speed (bytes/ms), or `prior` for a node not measured yet; dead nodes are -1. */
  score(fp: string, prior: number): number {
    if (this.dead.has(fp)) return -1;
    return this.speed.get(fp) ?? prior;
  }

  /** Median measured speed (the prior for unmeasured nodes: neither favoured nor shunned). */
  medianSpeed(): number {
    const v = [...this.speed.values()].sort((a, b) => a - b);
    return v.length ? v[Math.floor(v.length / 2)] : 1;
  }

  /** Store a share (SPEC.md §9.6.3 `put`) with `leaseSeconds` (default: the client's lease; 0 = the node's default). Resolves its expiry. */
  async putShare(fp: string, id: Buffer, data: Buffer, leaseSeconds?: number): Promise<number> {
    const sentAt = nowSeconds();
    const r = await this.request(fp, { type: 'put', id, data, leaseSeconds: leaseSeconds ?? this.o.leaseSeconds ?? 0, ...(this.o.contentClass ? { contentClass: this.o.contentClass } : {}) });
    // SPEC.md §9.6.3, §9.9.2: a stored share's expiry is after the time it was sent; an answer not
    // after it grants no lease, and the put failed at this node (the share goes on down its ranking).
    if (r.expiresAt <= sentAt) throw err('STORAGE_BAD_RESPONSE', 'put answered with an expiry that is not after the request', { expiresAt: r.expiresAt, sentAt });
    return r.expiresAt;
  }

  /**
   * The whole share as the node sends it (the caller checks its hash); `signal` as in request().
   * `size`: the share's length when the caller knows it (from a layout or a verify record): it is
   * asked for exactly, so an answer frame longer than it can need is refused before anything is
   * allocated for it (SPEC.md §9.6.1, §9.9).
   */
  async getShare(fp: string, id: Buffer, signal?: AbortSignal, size?: number): Promise<Buffer> {
    const t0 = performance.now();
    const r = await this.request(fp, { type: 'get', id, offset: 0, length: size ?? 0 }, signal);
    if (r.data.length !== r.totalSize) throw err('STORAGE_BAD_RESPONSE', 'GET answer is not the whole share', { got: r.data.length, total: r.totalSize });
    const ms = Math.max(0.05, performance.now() - t0);
    const s = r.data.length / ms;
    const prev = this.speed.get(fp);
    this.speed.set(fp, prev === undefined ? s : 0.7 * prev + 0.3 * s);
    return r.data;
  }

  /** SPEC.md §9.17: audit one share held by `fp` against its audit root; never throws for the node's faults. */
  auditShare(fp: string, c: AuditCommitment, opts: AuditOptions = {}): Promise<AuditResult> {
    return auditShare((req) => this.request(fp, req), c, opts);
  }

  async stat(fp: string): Promise<Answer<'stat'>> {
    return this.request(fp, { type: 'stat' });
  }

  /**
   * One request to one node. A session that could not be opened, or whose transport failed, is
   * opened once more (over a circuit: a freshly built one); a node that fails the second time too
   * is marked dead (later calls fail at once with the same error) (SPEC.md §9.9); a session found
   * closed before the request was sent on it (an idle close) is replaced without counting as a
   * failure. Error responses of the
   * node (SHARE_NOT_FOUND, STORAGE_FULL, …) are thrown as they are, with detail.remote = true.
   * SPEC.md §9.16.6: once `signal` aborts, the request rejects at once with STORAGE_ABORTED (the
   * node is not at fault: it is neither retried nor marked dead); a stream opening for it goes on
   * for later requests, and a stream left with no other request pending is closed, so the node
   * stops sending an answer nobody reads.
   */
  async request<T extends StorageRequest>(fp: string, req: T, signal?: AbortSignal): Promise<Answer<T['type']>> {
    let staleDropped = false;
    for (let attempt = 0; ; attempt++) {
      throwIfStorageAborted(signal);
      const d = this.dead.get(fp);
      if (d) throw d;
      // The session open before this try, if any: one found closed now closed before this request
      // was sent on it (the node closes a stream idle for 120 s, SPEC.md §9.6.1).
      const before = this.live.get(fp);
      let s: Session;
      try {
        s = await untilStorageAborted(this.session(fp), signal);
      } catch (e) {
        // SPEC.md §9.9: one failed opening (a circuit whose builds all failed, a BEGIN_STORAGE
        // refused, a circuit destroyed before it connected) is tried once more on a new circuit
        // before the node counts as unreachable. Aborts, a closed client and an unknown node are not the node's.
        if (!isBitcloudError(e) || !OPEN_FAILURES.has(e)) throw e;
        if (attempt >= 1 || this.closed) { this.kill(fp, e); throw e; }
        this.log.debug({ code: e.code }, 'storage session could not be opened; trying once more');
        continue;
      }
      if (s === before && s.channel.isClosed && !staleDropped) {
        // SPEC.md §9.9: that stream did not fail for this request: a new one is opened without
        // counting a failure, so one failed circuit after an idle close does not cost the node.
        staleDropped = true;
        this.drop(fp, s);
        attempt--;
        continue;
      }
      try {
        return await this.timed(s, s.channel.request(req, signal)) as Answer<T['type']>;
      } catch (e) {
        if (isBitcloudError(e, 'STORAGE_ABORTED')) {
          if (s.channel.pendingCount === 0) { s.channel.destroy(); this.drop(fp, s); }
          throw e;
        }
        // A node's error answer leaves the session usable, unless it came as the node's framing
        // error (reqId 0: STORAGE_BUSY, …), which ends the stream: then the next request opens a
        // new session instead of failing at once with the same error (SPEC.md §9.6.1).
        if (isRemote(e)) { if (s.channel.isClosed) this.drop(fp, s); throw e; }
        this.drop(fp, s);
        const be = isBitcloudError(e) ? e : err('STORAGE_CHANNEL_CLOSED', String(e));
        if (attempt >= 1 || this.closed) { this.kill(fp, be); throw be; }
        this.log.debug({ code: be.code }, 'storage session failed; reopening');
      }
    }
  }

  private timed<T>(s: Session, p: Promise<T>): Promise<T> {
    const ms = this.requestTimeoutMs;
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => {
        reject(err('STORAGE_TIMEOUT', `no answer from the storage node within ${ms} ms`));
        s.stream.destroy();
      }, ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(t));
  }

  private session(fp: string): Promise<Session> {
    if (this.closed) return Promise.reject(err('STORAGE_CLIENT_CLOSED', 'storage client closed'));
    let s = this.sessions.get(fp);
    if (!s) {
      const node = this.byFp.get(fp);
      if (!node) return Promise.reject(err('PLACEMENT_NODE_INVALID', 'not a storage node of the consensus', { node: fp }));
      s = this.o.open(node).then((stream) => {
        stream.on('error', () => { /* the channel reports it */ });
        const session = { stream, channel: new StorageChannel(stream) };
        this.live.set(fp, session);
        if (this.closed) session.channel.close();
        return session;
      }, (e: unknown) => {
        const be = isBitcloudError(e) ? e : err('STORAGE_CONNECT_FAILED', String((e as Error)?.message ?? e));
        // The next request opens anew; request() marks the node dead when that fails too.
        if (this.sessions.get(fp) === s) this.sessions.delete(fp);
        OPEN_FAILURES.add(be);
        throw be;
      });
      this.sessions.set(fp, s);
    }
    return s;
  }

  private drop(fp: string, s: Session): void {
    if (this.live.get(fp) === s) {
      this.live.delete(fp);
      this.sessions.delete(fp);
    }
    s.stream.destroy();
  }

  private kill(fp: string, e: BitcloudError): void {
    if (this.dead.has(fp)) return;
    this.dead.set(fp, e);
    this.log.debug({ node: fp.slice(0, 16), code: e.code }, 'storage node unreachable; skipping it');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.live.clear();
    await Promise.all(all.map((p) => p.then((s) => s.channel.close(), () => {})));
  }
}
