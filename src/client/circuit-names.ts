// SPEC.md §9.14.1: names published and resolved over circuits. The client opens no DHT socket: it
// sends DhtGet / DhtPut on a BEGIN_STORAGE stream to a storage node (guard → middle → node, one
// circuit per node) and the node runs the BEP 44 operation in the private DHT. The node is not
// trusted with the answer: every item is checked here (key, salt, signature, and a seq not below
// the newest this client already verified for that name, kept in `names-seen.json`).
import fs from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { err, isBitcloudError, type BitcloudError } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { writeFileAtomic } from '../ops/fsutil';
import { silentLogger, type Logger } from '../ops/log';
import type { Capability } from '../storage/capability';
import { StorageChannel } from '../storage/channel';
import { checkDhtAnswer, signDhtItem } from '../storage/name-record';
import { decodeNameValue, encodeNameValue, formatName, nameSalt, nextNameSeq } from '../storage/name';
import type { DhtItem } from '../storage/protocol';
import type { StorageNode } from './storage-client';

export const NAMES_SEEN_FILE = 'names-seen.json';
/** Storage nodes asked for one lookup, at once (each over its own circuit). */
export const DEFAULT_LOOKUP_NODES = 2;

export interface CircuitNamesOptions {
  nodes: readonly StorageNode[];
  /** A storage stream to a node (BEGIN_STORAGE over a circuit). */
  open: (node: StorageNode) => Promise<Duplex>;
  /** Where names-seen.json lives (the client's data dir); absent: nothing remembered. */
  dataDir?: string;
  lookupNodes?: number;
  log?: Logger;
}

export interface ResolvedItem { item: DhtItem; node: StorageNode }

export class CircuitNames {
  private readonly channels = new Map<string, StorageChannel>();
  private readonly log: Logger;
  private seen: Record<string, number> | null = null;

  constructor(private readonly o: CircuitNamesOptions) {
    this.log = o.log ?? silentLogger;
    if (o.nodes.length === 0) throw err('DHT_NO_NODES', 'the consensus lists no storage node to look names up through');
  }

  /** The newest verified capability under (publisher, label), or null when no node has one. */
  async resolve(publisher: Buffer, label: string): Promise<{ cap: Capability; seq: number } | null> {
    const r = await this.lookup(publisher, label);
    if (!r) return null;
    return { cap: decodeNameValue(r.item.value), seq: r.item.seq };
  }

  /**
   * Publish `cap` under (keys, label): seq = max(current + 1, Unix seconds) unless given; a given
   * seq not above the current one is DHT_SEQ_STALE before anything is sent.
   */
  async publish(keys: Ed25519KeyPair, label: string, cap: Capability, o: { seq?: number } = {}): Promise<{ seq: number; nodes: number }> {
    const current = await this.lookup(keys.publicKey, label);
    const seq = nextNameSeq(current ? current.item.seq : -1, o.seq);
    const item = signDhtItem(keys, nameSalt(label), encodeNameValue(cap), seq);
    // The node that answered the lookup first, then the others.
    const order = current ? [current.node, ...this.shuffled().filter((n) => n !== current.node)] : this.shuffled();
    let last: unknown = null;
    for (const node of order.slice(0, 3)) {
      try {
        const r = await (await this.channel(node)).request({ type: 'dhtPut', item });
        await this.remember(formatName({ publisher: keys.publicKey, label }), seq);
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
        return (await (await this.channel(node)).request({ type: 'dhtPut', ...req })).nodes;
      } catch (e) {
        if (isBitcloudError(e, 'DHT_SEQ_STALE')) throw e;
        last = e;
        this.log.debug({ code: isBitcloudError(e) ? e.code : 'INTERNAL' }, 'DHT put through a storage node failed; trying another');
      }
    }
    throw last ?? err('DHT_PUT_FAILED', 'no storage node took the item');
  }

  /**
   * Ask up to `lookupNodes` storage nodes at once; keep the verified item with the highest seq.
   * Answers that fail a check are refused with their code; when no node gave a valid item and one
   * gave a bad one, that error is thrown (else null: not found).
   */
  async lookup(publisher: Buffer, label: string): Promise<ResolvedItem | null> {
    const salt = nameSalt(label);
    const name = formatName({ publisher, label });
    const minSeq = (await this.seenSeqs())[name] ?? -1;
    const nodes = this.shuffled().slice(0, Math.max(1, this.o.lookupNodes ?? DEFAULT_LOOKUP_NODES));
    const answers = await Promise.allSettled(nodes.map(async (node) => {
      const r = await (await this.channel(node)).request({ type: 'dhtGet', publisher, salt });
      return r.item ? { item: checkDhtAnswer({ publisher, salt }, r.item, minSeq), node } : null;
    }));
    let best: ResolvedItem | null = null;
    let refused: BitcloudError | null = null;
    let failures = 0;
    for (const a of answers) {
      if (a.status === 'fulfilled') {
        if (a.value && (!best || a.value.item.seq > best.item.seq)) best = a.value;
      } else {
        failures++;
        const e = a.reason as unknown;
        this.log.debug({ code: isBitcloudError(e) ? e.code : 'INTERNAL' }, 'name lookup answer refused');
        if (isBitcloudError(e) && e.code.startsWith('NAME_')) refused ??= e;
        else if (failures === answers.length) refused ??= isBitcloudError(e) ? e : err('DHT_GET_FAILED', String(e));
      }
    }
    if (best) { await this.remember(name, best.item.seq); return best; }
    if (refused) throw refused;
    return null;
  }

  async close(): Promise<void> {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
    await Promise.resolve();
  }

  private async channel(node: StorageNode): Promise<StorageChannel> {
    let c = this.channels.get(node.fingerprint);
    if (!c) {
      c = new StorageChannel(await this.o.open(node));
      this.channels.set(node.fingerprint, c);
    }
    return c;
  }

  private shuffled(): StorageNode[] {
    const a = [...this.o.nodes];
    for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
    return a;
  }

  private async seenSeqs(): Promise<Record<string, number>> {
    if (this.seen) return this.seen;
    this.seen = {};
    if (!this.o.dataDir) return this.seen;
    try {
      const j = JSON.parse(await fs.promises.readFile(path.join(this.o.dataDir, NAMES_SEEN_FILE), 'utf8')) as unknown;
      if (j && typeof j === 'object') {
        for (const [k, v] of Object.entries(j as Record<string, unknown>)) if (typeof v === 'number' && Number.isSafeInteger(v)) this.seen[k] = v;
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err: (e as Error).message }, `${NAMES_SEEN_FILE} unreadable; starting afresh`);
    }
    return this.seen;
  }

  private async remember(name: string, seq: number): Promise<void> {
    const seen = await this.seenSeqs();
    if ((seen[name] ?? -1) >= seq) return;
    seen[name] = seq;
    if (this.o.dataDir) await writeFileAtomic(path.join(this.o.dataDir, NAMES_SEEN_FILE), JSON.stringify(seen), 0o600);
  }
}
