// SPEC.md §9.14.1: names published and resolved over circuits. The client opens no DHT socket: it
// sends DhtGet / DhtPut on a BEGIN_STORAGE stream to a storage node (guard → middle → node, one
// circuit per node) and the node runs the BEP 44 operation in the private DHT. The node is not
// trusted with the answer: every item is checked here (key, salt, signature, and a seq not below
// the newest this client already verified for that name, kept in `names-seen.json`).
import type { Duplex } from 'node:stream';
import { err, isBitcloudError, type BitcloudError } from '../errors';
import { shuffle, type Ed25519KeyPair } from '../crypto/primitives';
import { silentLogger, type Logger } from '../ops/log';
import type { Capability } from '../storage/capability';
import { StorageChannel } from '../storage/channel';
import { checkDhtAnswer, itemWins, signDhtItem } from '../storage/name-record';
import { decodeNameValue, encodeNameValue, formatName, nameSalt } from '../storage/name';
import type { DhtItem, StorageRequest, StorageResponse } from '../storage/protocol';
import type { StorageNode } from './storage-client';
import { NamesSeen } from './names-seen';

export { NAMES_SEEN_FILE } from './names-seen';
/** How long a request to a storage node may go unanswered (STORAGE_TIMEOUT), as StorageClient's. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
/** Storage nodes asked for one lookup, at once (each over its own circuit). */
export const DEFAULT_LOOKUP_NODES = 2;

export interface CircuitNamesOptions {
  nodes: readonly StorageNode[];
  /** A storage stream to a node (BEGIN_STORAGE over a circuit). */
  open: (node: StorageNode) => Promise<Duplex>;
  /** Where names-seen.json lives (the client's data dir); absent: nothing remembered. */
  dataDir?: string;
  lookupNodes?: number;
  /** SPEC.md §9.9: a request to a node not answered within this long fails (STORAGE_TIMEOUT). Default 120 s. */
  requestTimeoutMs?: number;
  log?: Logger;
}

export interface ResolvedItem { item: DhtItem; node: StorageNode }

/**
 * SPEC.md §9.14.1: a lookup's outcome: the valid item with the highest seq (null: none), and the
 * codes of the answers dropped as invalid (another key or salt, a bad signature, a rollback).
 */
export interface NameLookup<T> { found: T | null; invalid: string[] }

/**
 * SPEC.md §9.14.1, §9.14.2: what a get of a name found nowhere answers. Answers dropped as invalid
 * do not change it (a hostile node or mirror must not turn not-found into a failure); their count
 * and codes go in the detail.
 */
export function nameNotFound(name: string, invalid: readonly string[]): BitcloudError {
  const why = invalid.length ? `; ${invalid.length} invalid answer(s) dropped (${invalid.join(', ')})` : '';
  return err('NAME_NOT_FOUND', `nothing valid is published under ${name}${why}`, { invalidAnswers: invalid.length, codes: [...invalid] });
}

/**
 * Names for the commands (SPEC.md §9.14.1, §9.14.2): through storage nodes over circuits
 * (CircuitNames), or through relays' name mirrors when the consensus has no public storage node
 * (MirrorNames, src/client/name-mirrors.ts).
 */
export interface NameLookups {
  /** Where publications go: 'dht' (through a storage node) or 'mirrors' (name mirrors). */
  readonly via: 'dht' | 'mirrors';
  resolve(publisher: Buffer, label: string): Promise<{ cap: Capability; seq: number } | null>;
  /** `nodes`: the DHT nodes (via 'dht') or the mirrors (via 'mirrors') that took the record. */
  publish(keys: Ed25519KeyPair, label: string, cap: Capability, o?: { seq?: number }): Promise<{ seq: number; nodes: number }>;
  put(req: { item: DhtItem } | { immutable: Buffer }): Promise<number>;
  close(): Promise<void>;
}

export class CircuitNames implements NameLookups {
  readonly via = 'dht';
  private readonly channels = new Map<string, StorageChannel>();
  /** Streams being opened, one per node: requests that find none open share it. */
  private readonly opening = new Map<string, Promise<StorageChannel>>();
  /** Moves on at each close(): a stream whose opening began before it is ended, not kept. */
  private generation = 0;
  private readonly log: Logger;
  private readonly seen: NamesSeen;

  constructor(private readonly o: CircuitNamesOptions) {
    this.log = o.log ?? silentLogger;
    this.seen = new NamesSeen(o.dataDir, this.log);
    if (o.nodes.length === 0) throw err('DHT_NO_NODES', 'the consensus lists no storage node to look names up through');
  }

  /** The newest verified capability under (publisher, label), or null when no node has one. */
  async resolve(publisher: Buffer, label: string): Promise<{ cap: Capability; seq: number } | null> {
    const { found: r, invalid } = await this.lookup(publisher, label);
    if (!r) {
      if (invalid.length) throw nameNotFound(formatName({ publisher, label }), invalid);
      return null;
    }
    return { cap: decodeNameValue(r.item.value), seq: r.item.seq };
  }

  /**
   * Publish `cap` under (keys, label): seq = max(current + 1, Unix seconds) unless given; a given
   * seq not above the current one is DHT_SEQ_STALE before anything is sent.
   */
  async publish(keys: Ed25519KeyPair, label: string, cap: Capability, o: { seq?: number } = {}): Promise<{ seq: number; nodes: number }> {
    // SPEC.md §9.14.1: invalid answers are dropped, so a node answering a forged item cannot
    // block a first publication; honest holders refuse a seq below theirs (DHT_SEQ_STALE).
    const current = (await this.lookup(keys.publicKey, label)).found;
    const seq = await this.seen.nextSeq(formatName({ publisher: keys.publicKey, label }), current ? current.item.seq : -1, o.seq);
    const item = signDhtItem(keys, nameSalt(label), encodeNameValue(cap), seq);
    // The node that answered the lookup first, then the others.
    const order = current ? [current.node, ...this.shuffled().filter((n) => n !== current.node)] : this.shuffled();
    let last: unknown = null;
    for (const node of order.slice(0, 3)) {
      try {
        const r = await this.request(node, { type: 'dhtPut', item });
        await this.seen.remember(formatName({ publisher: keys.publicKey, label }), seq);
        return { seq, nodes: r.nodes };
      } catch (e) {
        if (isBitcloudError(e, 'DHT_SEQ_STALE')) throw e;
        last = e;
        this.log.debug({ code: isBitcloudError(e) ? e.code : 'INTERNAL' }, 'name publish through a storage node failed; trying another');
      }
    }
    throw last ?? err('DHT_PUT_FAILED', 'no storage node took the item');
  }

  /**
   * One DhtPut (a signed item, or an immutable value) through a storage node over a circuit: up to
   * 3 nodes in random order until one stores it. Resolves with the DHT nodes that took it.
   * DHT_SEQ_STALE is final (another node would answer the same).
   */
  async put(req: { item: DhtItem } | { immutable: Buffer }): Promise<number> {
    let last: unknown = null;
    for (const node of this.shuffled().slice(0, 3)) {
      try {
        return (await this.request(node, { type: 'dhtPut', ...req })).nodes;
      } catch (e) {
        if (isBitcloudError(e, 'DHT_SEQ_STALE')) throw e;
        last = e;
        this.log.debug({ code: isBitcloudError(e) ? e.code : 'INTERNAL' }, 'DHT put through a storage node failed; trying another');
      }
    }
    throw last ?? err('DHT_PUT_FAILED', 'no storage node took the item');
  }

  /**
   * Ask up to `lookupNodes` storage nodes at once; keep the verified item that wins (the highest
   * seq; at an equal seq, `itemWins`). Answers that fail a check are dropped and their codes
   * counted in `invalid` (logged); only when every node failed to answer at all is one of those
   * failures thrown.
   */
  async lookup(publisher: Buffer, label: string): Promise<NameLookup<ResolvedItem>> {
    const salt = nameSalt(label);
    const name = formatName({ publisher, label });
    const minSeq = await this.seen.min(name);
    const nodes = this.shuffled().slice(0, Math.max(1, this.o.lookupNodes ?? DEFAULT_LOOKUP_NODES));
    const answers = await Promise.allSettled(nodes.map(async (node) => {
      const r = await this.request(node, { type: 'dhtGet', publisher, salt });
      return r.item ? { item: checkDhtAnswer({ publisher, salt }, r.item, minSeq), node } : null;
    }));
    let best: ResolvedItem | null = null;
    const invalid: string[] = [];
    let failed: unknown = null;
    let failures = 0;
    for (const a of answers) {
      if (a.status === 'fulfilled') {
        if (a.value && (!best || itemWins(a.value.item, best.item))) best = a.value;
        continue;
      }
      const e = a.reason as unknown;
      if (isBitcloudError(e) && e.code.startsWith('NAME_')) {
        invalid.push(e.code);
        continue;
      }
      failures++;
      failed ??= e;
      this.log.debug({ code: isBitcloudError(e) ? e.code : 'INTERNAL' }, 'name lookup through a storage node failed');
    }
    // SPEC.md §9.14.1, §11.6: the name looked up is what this user visits: the warning holds the
    // codes only; the name goes at debug.
    if (invalid.length) {
      this.log.warn({ invalidAnswers: invalid.length, codes: invalid }, 'invalid name answers dropped');
      this.log.debug({ name }, 'the name whose answers were dropped');
    }
    if (best) { await this.seen.remember(name, best.item.seq); return { found: best, invalid }; }
    if (failures === answers.length) throw isBitcloudError(failed) ? failed : err('DHT_GET_FAILED', String(failed));
    return { found: null, invalid };
  }

  async close(): Promise<void> {
    this.generation++;
    this.opening.clear();
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
    await Promise.resolve();
  }

  /**
   * The channel to a node: the open one, else one stream opened for every request that asks
   * meanwhile. A channel whose stream closed, for whatever reason (the circuit went away, the node
   * ended it), is forgotten, so the next request opens a new stream (SPEC.md §9.6.1, §9.14.1).
   */
  private channel(node: StorageNode): Promise<StorageChannel> {
    const fp = node.fingerprint;
    const c = this.channels.get(fp);
    if (c && !c.isClosed) return Promise.resolve(c);
    if (c) this.channels.delete(fp);
    let opening = this.opening.get(fp);
    if (!opening) {
      const generation = this.generation;
      opening = this.o.open(node).then((stream) => {
        const ch = new StorageChannel(stream, { requestTimeoutMs: this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS });
        // close() was called while the stream opened: it is ended, not kept.
        if (generation !== this.generation) { ch.close(); throw err('STORAGE_CHANNEL_CLOSED', 'name lookups closed'); }
        this.channels.set(fp, ch);
        return ch;
      }).finally(() => { if (this.opening.get(fp) === opening) this.opening.delete(fp); });
      this.opening.set(fp, opening);
    }
    return opening;
  }

  /**
   * One request to a node. SPEC.md §9.9: one not answered in time fails with STORAGE_TIMEOUT and
   * its session is closed (the next request to that node opens a new stream), so a node that never
   * answers cannot hold a lookup, a publish or a put (§9.14.1).
   */
  private async request<T extends StorageRequest>(node: StorageNode, req: T): Promise<Extract<StorageResponse, { type: T['type'] }>> {
    const c = await this.channel(node);
    try {
      return await c.request(req);
    } catch (e) {
      if (isBitcloudError(e, 'STORAGE_TIMEOUT')) {
        if (this.channels.get(node.fingerprint) === c) this.channels.delete(node.fingerprint);
        c.close();
      }
      throw e;
    }
  }

  /** The nodes in an order from the CSPRNG: which nodes hear a lookup is not predictable. */
  private shuffled(): StorageNode[] {
    return shuffle([...this.o.nodes]);
  }
}
