// SPEC.md §9.14: the private DHT (BEP 5 Kademlia over UDP, bittorrent-dht) that storage nodes
// run; clients open no DHT socket and reach it through a storage node over a circuit (§9.14.1).
// It is bootstrapped ONLY from the storage nodes of the verified consensus (their
// address and storage port, UDP) — never from the public BitTorrent routers, which the library
// uses whenever its `bootstrap` option is left undefined: this wrapper always sets it (a list, or
// false for the first node). A storage node's DHT speaks only with members, the storage nodes of
// its consensus (`members`, §9.14 *Members only*). Storage nodes announce themselves under one
// swarm key; BEP 44 mutable items, signed with Ed25519 through src/crypto, carry names (name.ts).
import type dgram from 'node:dgram';
import DHT, { type DhtOptions } from 'bittorrent-dht';
import { err, type BitcloudError } from '../errors';
import { ed25519Sign, ed25519Verify, sha1, type Ed25519KeyPair } from '../crypto/primitives';
import { silentLogger, type Logger } from '../ops/log';
import type { Capability } from './capability';
import type { DhtItem } from './protocol';
import { dhtItemSignatureValid, itemWins, nameTarget } from './name-record';
import { checkSeq, decodeNameValue, encodeNameValue, nameSalt, nextNameSeq } from './name';
import { guardDhtSocket } from './dht-guard';

export interface DhtAddress { host: string; port: number }

/** The swarm storage nodes announce themselves in: SHA-1("bitcloud-storage-nodes-v1"). */
export const STORAGE_SWARM = sha1(Buffer.from('bitcloud-storage-nodes-v1', 'ascii'));
/** Per-query timeout (k-rpc's default is 2 s). */
export const DEFAULT_DHT_QUERY_TIMEOUT_MS = 2_000;

/** What the bootstrap list needs from a consensus entry (ConsensusRelay satisfies it). */
export interface DhtCandidate {
  fingerprint: string;
  address: string;
  storagePort: number;
  flags: ReadonlySet<string>;
}

/** SPEC.md §9.14: the DHT addresses of the consensus's storage nodes (UDP, port = storage port). */
export function dhtBootstrapList(relays: readonly DhtCandidate[], excludeFingerprint?: string): DhtAddress[] {
  return relays
    .filter((r) => r.flags.has('Storage') && r.flags.has('Running') && r.storagePort > 0 && r.fingerprint !== excludeFingerprint)
    .map((r) => ({ host: r.address, port: r.storagePort }));
}

/** The options handed to bittorrent-dht: `bootstrap` is never undefined (SPEC.md §9.14). */
export function dhtOptions(bootstrap: readonly DhtAddress[], queryTimeoutMs = DEFAULT_DHT_QUERY_TIMEOUT_MS): DhtOptions {
  return {
    bootstrap: bootstrap.length > 0 ? bootstrap.map((a) => ({ host: a.host, port: a.port })) : false,
    // BEP 44 signatures go through the one crypto door (sodium-native).
    verify: (sig, msg, pk) => ed25519Verify(sig, msg, pk),
    timeout: queryTimeoutMs,
  };
}

export interface BitcloudDhtOptions {
  bootstrap: readonly DhtAddress[];
  /** UDP bind address and port (0 = any free port). */
  host: string;
  port: number;
  queryTimeoutMs?: number;
  log?: Logger;
  /**
   * SPEC.md §9.14 *Members only*: is `host:port` the DHT address of a storage node of the current
   * consensus? When given, the node sends nothing to any other address (no query to a node a reply
   * named, no answer to a query's source) and drops every datagram from one. A storage node always
   * gives it (storage/dht.ts); left out, every address is a member (tests of the library alone).
   */
  members?: (host: string, port: number) => boolean;
}

/** The part of k-rpc-socket the member check wraps: every datagram the DHT sends goes through these. */
interface KrpcSocket {
  query(peer: { host: string; port: number }, message: unknown, cb?: (e: Error | null, res: unknown, peer: unknown) => void): number;
  send(peer: { host?: string; address?: string; port: number }, message: unknown, cb?: () => void): void;
}

export interface ResolvedName {
  cap: Capability;
  seq: number;
}

export class BitcloudDht {
  /** Exactly the options bittorrent-dht was constructed with (tests check the bootstrap). */
  readonly options: DhtOptions;
  private readonly dht: DHT;
  private readonly log: Logger;
  private readonly readyP: Promise<void>;
  private closed = false;
  private dropped = 0;
  private refused = 0;

  private constructor(o: BitcloudDhtOptions) {
    this.log = o.log ?? silentLogger;
    this.options = dhtOptions(o.bootstrap, o.queryTimeoutMs);
    this.dht = new DHT(this.options);
    // SPEC.md §9.14: the library acts on a datagram only once its fields have the KRPC types; one
    // that throws in it anyway costs that datagram, never the process (no sender address logged).
    const krpc = (this.dht as unknown as { _rpc: { socket: KrpcSocket & { socket: dgram.Socket } } })._rpc.socket;
    const members = o.members;
    guardDhtSocket(krpc.socket, () => { this.dropped++; }, (e) => this.log.debug({ err: e instanceof Error ? e.message : String(e) }, 'dht: a message failed in the DHT library; dropped'),
      members ? (rinfo) => members(rinfo.address, rinfo.port) : undefined);
    if (members) this.sendToMembersOnly(krpc, members);
    this.dht.on('error', (e: Error) => this.log.warn({ err: e.message }, 'dht error'));
    this.dht.on('warning', (e: Error) => this.log.debug({ err: e.message }, 'dht warning'));
    this.readyP = new Promise((resolve) => { if (this.dht.ready) resolve(); else this.dht.once('ready', () => resolve()); });
  }

  /**
   * SPEC.md §9.14 *Members only*: the library queries every address a reply lists in `nodes`, so a
   * hostile member answering with Internet addresses would have this node send queries there (and
   * retry them), a reflection vector with the private DHT as its amplifier. A query to a non-member
   * fails at once (the lookup goes on without it, holding no slot of the library's 16 in flight),
   * and nothing else is sent to one either. No DNS lookup is made for a name that is not a member.
   */
  private sendToMembersOnly(krpc: KrpcSocket, members: (host: string, port: number) => boolean): void {
    const query = krpc.query.bind(krpc);
    const send = krpc.send.bind(krpc);
    krpc.query = (peer, message, cb) => {
      if (members(peer.host, peer.port)) return query(peer, message, cb);
      this.refused++;
      process.nextTick(() => cb?.(new Error('not a storage node of the consensus'), null, peer));
      return 0;
    };
    krpc.send = (peer, message, cb) => {
      if (members(peer.address ?? peer.host ?? '', peer.port)) { send(peer, message, cb); return; }
      this.refused++;
      if (cb) process.nextTick(cb);
    };
  }

  /** Bind the UDP socket and start bootstrapping (resolves once bound, not once bootstrapped). */
  static async start(o: BitcloudDhtOptions): Promise<BitcloudDht> {
    const d = new BitcloudDht(o);
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: NodeJS.ErrnoException) => reject(err('DHT_LISTEN_FAILED', `cannot bind UDP ${o.host}:${o.port}: ${e.code ?? e.message}`, { errno: e.code }, e));
      d.dht.once('error', onErr);
      d.dht.listen(o.port, o.host, () => { d.dht.off('error', onErr); resolve(); });
    }).catch(async (e) => { await d.close(); throw e; });
    return d;
  }

  /** The bittorrent-dht instance, for other BEP 44 users (moderation policy heads, SPEC.md §10.7.2). */
  get raw(): DHT { return this.dht; }

  get address(): DhtAddress {
    const a = this.dht.address();
    return { host: a.address, port: a.port };
  }

  /** UDP datagrams dropped before the library saw them (SPEC.md §9.14: not a well-formed KRPC message, or not from a member). */
  get droppedMessages(): number { return this.dropped; }

  /** Datagrams the library wanted to send to an address that is not a member, not sent (SPEC.md §9.14 *Members only*). */
  get refusedSends(): number { return this.refused; }

  /** Nodes in the routing table now. */
  get nodeCount(): number {
    return this.dht.toJSON().nodes.length;
  }

  /** The addresses of the nodes in the routing table now. */
  tableAddresses(): DhtAddress[] {
    return this.dht.toJSON().nodes.map((n: { host: string; port: number }) => ({ host: n.host, port: n.port }));
  }

  /** Add nodes (e.g. storage nodes of a newer consensus); each is pinged before it is added. */
  addNodes(list: readonly DhtAddress[]): void {
    if (this.closed) return;
    for (const a of list) this.dht.addNode({ host: a.host, port: a.port });
  }

  /** Resolves when bootstrapping finished, or after `timeoutMs` anyway (lookups work meanwhile). */
  async ready(timeoutMs = 5_000): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.readyP, new Promise<void>((r) => { t = setTimeout(r, timeoutMs); })]);
    clearTimeout(t);
  }

  /** A storage node announces that it serves storage on `port` (its storage port). */
  announce(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.dht.announce(STORAGE_SWARM, port, (e) => (e ? reject(err('DHT_ANNOUNCE_FAILED', e.message)) : resolve()));
    });
  }

  /** Peers announced in the storage swarm (addresses only; identities come from the consensus). */
  findStoragePeers(): Promise<DhtAddress[]> {
    const found = new Map<string, DhtAddress>();
    const onPeer = (p: DhtAddress, infoHash: Buffer) => { if (infoHash.equals(STORAGE_SWARM)) found.set(`${p.host}:${p.port}`, p); };
    this.dht.on('peer', onPeer);
    return new Promise((resolve) => {
      this.dht.lookup(STORAGE_SWARM, () => { this.dht.off('peer', onPeer); resolve([...found.values()]); });
    });
  }

  /** The newest verified item under (publisher, label), or null. Values that are not capabilities are NAME_VALUE_MALFORMED. */
  async resolve(publisher: Buffer, label: string): Promise<ResolvedName | null> {
    const item = await this.getItem(publisher, nameSalt(label));
    if (!item) return null;
    return { cap: decodeNameValue(item.v), seq: item.seq };
  }

  /**
   * Publish `cap` under (keys, label). seq defaults to max(current + 1, Unix seconds), so a newer
   * publication wins even where an older one is still held. A given seq not above the current one
   * is refused here (DHT_SEQ_STALE) and, if sent anyway (`skipSeqCheck`, tests), by the nodes
   * (BEP 44 error 302, also DHT_SEQ_STALE). No node storing it is DHT_PUT_FAILED.
   */
  async publish(keys: Ed25519KeyPair, label: string, cap: Capability, o: { seq?: number; skipSeqCheck?: boolean } = {}): Promise<{ seq: number; nodes: number }> {
    const salt = nameSalt(label);
    const v = encodeNameValue(cap);
    let seq: number;
    if (o.skipSeqCheck && o.seq !== undefined) seq = checkSeq(o.seq);
    else seq = nextNameSeq((await this.getItem(keys.publicKey, salt))?.seq ?? -1, o.seq);
    await this.ready();
    const nodes = await new Promise<number>((resolve, reject) => {
      try {
        this.dht.put({ k: keys.publicKey, v, seq, salt, sign: (m) => ed25519Sign(m, keys.secretKey) }, (e, _hash, n) => {
          if (e) reject(putError(e));
          else resolve(n);
        });
      } catch (e) {
        reject(err('DHT_PUT_FAILED', (e as Error).message));
      }
    });
    return { seq, nodes };
  }

  /**
   * SPEC.md §9.14.1, the storage node's side of a DhtGet: the newest verified item under
   * (publisher, salt) from the network or this node's own store, with its signature, or null.
   */
  async getSignedItem(publisher: Buffer, salt: Buffer): Promise<DhtItem | null> {
    await this.ready();
    const key = nameTarget(publisher, salt);
    // The library's get keeps the first item of the highest seq it meets (its own stored one
    // first): at an equal seq the answer would depend on which node replied first. Each reply is
    // therefore weighed here, under §9.14 *Resolving* (itemWins), as every reader does.
    const d = this.dht as unknown as DhtQuery;
    const fromNet = await new Promise<DhtItem | null>((resolve, reject) => {
      let best: DhtItem | null = null;
      const onReply = (message: { r?: unknown }): boolean => {
        const item = message.r ? asItem(message.r, publisher, salt) : null;
        if (item && (!best || itemWins(item, best))) best = item;
        return true;
      };
      d._closest(key, { q: 'get', a: { id: d._rpc.id, target: key } }, onReply, (e) => {
        if (e) reject(err('DHT_GET_FAILED', e.message));
        else resolve(best);
      });
    });
    // Items this node stores for others (it may be among the closest nodes itself). The library
    // keeps them in `_values`; each is checked again before it is handed out.
    const local = this.heldItem(publisher, salt);
    if (local && (!fromNet || itemWins(local, fromNet))) return local;
    return fromNet;
  }

  /**
   * SPEC.md §9.14.1, a DhtPut: store an item signed by the requester. Errors as for publish(). An
   * item that loses under *Resolving* to the one this node holds itself for the target (an older
   * seq replayed, or the losing value of an equal seq) is DHT_SEQ_STALE with nothing sent, as a
   * libp2p DHT node refuses to replace a newer value with an older one: a node does not forward
   * what it would itself refuse to store. The very item it holds may be put again (republishing).
   */
  async putSignedItem(item: DhtItem): Promise<number> {
    const held = this.heldItem(item.publisher, item.salt);
    if (held && itemWins(held, item)) {
      throw err('DHT_SEQ_STALE', `this node holds sequence number ${held.seq} for this item's target, which wins over ${item.seq}`, { seq: item.seq, current: held.seq });
    }
    await this.ready();
    return new Promise<number>((resolve, reject) => {
      try {
        this.dht.put({ k: item.publisher, v: item.value, seq: item.seq, salt: bep44Salt(item.salt), sig: item.sig }, (e, _hash, n) => {
          if (e) reject(putError(e));
          else if (n === 0) reject(err('DHT_PUT_FAILED', 'no DHT node stored the item'));
          else resolve(n);
        });
      } catch (e) {
        reject(err('DHT_PUT_FAILED', (e as Error).message));
      }
    });
  }

  /** The verified item this node itself stores for (publisher, salt) (the library's `_values`), or null. */
  private heldItem(publisher: Buffer, salt: Buffer): DhtItem | null {
    const values = (this.dht as unknown as { _values?: { get(k: string): unknown } })._values;
    return asItem(values?.get(nameTarget(publisher, salt).toString('hex')), publisher, salt);
  }

  /** SPEC.md §9.14.1, an immutable DhtPut (a policy part, §10.7.2): its target is SHA-1 of its bencoding. */
  async putImmutableItem(value: Buffer): Promise<number> {
    await this.ready();
    return new Promise<number>((resolve, reject) => {
      try {
        this.dht.put({ v: value }, (e, _hash, n) => {
          if (e) reject(err('DHT_PUT_FAILED', `no DHT node stored the item: ${e.message}`));
          else if (n === 0) reject(err('DHT_PUT_FAILED', 'no DHT node stored the item'));
          else resolve(n);
        });
      } catch (e) {
        reject(err('DHT_PUT_FAILED', (e as Error).message));
      }
    });
  }

  private async getItem(publisher: Buffer, salt: Buffer): Promise<{ v: Buffer; seq: number } | null> {
    await this.ready();
    const key = nameTarget(publisher, salt);
    return new Promise((resolve, reject) => {
      this.dht.get(key, { salt: bep44Salt(salt), cache: false }, (e, res) => {
        if (e) { reject(err('DHT_GET_FAILED', e.message)); return; }
        // The library checked the signature (our verify) and that the key matches k | salt.
        if (!res || !res.k || !res.k.equals(publisher) || typeof res.seq !== 'number') { resolve(null); return; }
        resolve({ v: res.v, seq: res.seq });
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((r) => this.dht.destroy(() => r()));
  }
}

/** The library's iterative query (what its own get runs), each reply handed to `onReply`. */
interface DhtQuery {
  _rpc: { id: Buffer };
  _closest(target: Buffer, message: { q: string; a: { id: Buffer; target: Buffer } },
    onReply: (message: { r?: unknown }) => boolean, done: (e: Error | null) => void): void;
}

/** A library value as a DhtItem when it is a signed item for (publisher, salt) that verifies; else null. */
function asItem(v: unknown, publisher: Buffer, salt: Buffer): DhtItem | null {
  const r = v as { k?: unknown; v?: unknown; seq?: unknown; sig?: unknown } | null | undefined;
  if (!r || !Buffer.isBuffer(r.k) || !Buffer.isBuffer(r.v) || !Buffer.isBuffer(r.sig) || typeof r.seq !== 'number') return null;
  if (!r.k.equals(publisher) || !Number.isSafeInteger(r.seq) || r.seq < 0) return null;
  const item: DhtItem = { publisher, salt, value: r.v, seq: r.seq, sig: r.sig };
  return dhtItemSignatureValid(item) ? item : null;
}

function putError(e: Error & { code?: number }): BitcloudError {
  if (e.code === 302) return err('DHT_SEQ_STALE', 'the DHT nodes hold a newer sequence number for this name', { bep44: 302 });
  if (e.code === 301) return err('DHT_SEQ_STALE', 'compare-and-swap mismatch', { bep44: 301 });
  return err('DHT_PUT_FAILED', `no DHT node stored the item: ${e.message}`, { bep44: e.code });
}

/** An empty salt is no salt (BEP 44 signs no salt entry then); the library would sign "4:salt0:". */
function bep44Salt(salt: Buffer): Buffer | undefined {
  return salt.length ? salt : undefined;
}
