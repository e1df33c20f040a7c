// SPEC.md §9.14: the storage node's part of the private DHT: it listens on UDP at its storage port,
// bootstraps from the other storage nodes of the consensus (none: `bootstrap: false`, the first
// node), adds storage nodes of every newer consensus, and announces itself in the storage swarm.
// It also stores and serves BEP 44 items (names) for clients.
import { errorCode } from '../src/errors';
import { BitcloudDht, dhtBootstrapList, type DhtAddress } from '../src/storage/dht';
import type { VerifiedConsensus } from '../src/dir/types';
import { silentLogger, type Logger } from '../src/ops/log';
import { prom, type Registry } from '../src/ops/metrics';

export interface NodeDhtOptions {
  host: string;
  /** UDP port = the node's storage port. */
  port: number;
  /** This node's fingerprint (left out of its own bootstrap list). */
  fingerprint: string;
  consensus: () => VerifiedConsensus | null;
  announceIntervalMs: number;
  /** How often to look for a newer consensus. Default 5 s. */
  pollMs?: number;
  /** Per KRPC query (a ping included), handed to BitcloudDht (tests); default DEFAULT_DHT_QUERY_TIMEOUT_MS. */
  queryTimeoutMs?: number;
  registry?: Registry;
  log?: Logger;
}

/**
 * A routing table holding fewer nodes than one Kademlia bucket (the library's k, 20) has lost its
 * network (SPEC.md §9.14 *Network*): every storage node of a newer consensus missing from it is added.
 */
export const DHT_REJOIN_BELOW = 20;

const key = (a: DhtAddress): string => `${a.host}:${a.port}`;

export class NodeDht {
  private dht: BitcloudDht | null = null;
  private seenConsensus = 0;
  /**
   * The DHT addresses listed by the consensus the last poll saw and by every consensus held since
   * (isMember): one absent from any of them had its datagrams dropped, so it counts as new to the
   * next consensus the poll sees (the poll may miss a consensus the node held meanwhile).
   */
  private lastListed = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  /** The DHT addresses of the storage nodes of the consensus valid after `validAfter` (SPEC.md §9.14 *Members only*). */
  private members: { validAfter: number; set: Set<string> } = { validAfter: -1, set: new Set() };
  private readonly log: Logger;

  constructor(private readonly o: NodeDhtOptions) {
    this.log = o.log ?? silentLogger;
    if (o.registry) {
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const self = this;
      new prom.Gauge({ name: 'bitcloud_storage_dht_nodes', help: 'Nodes in the DHT routing table', registers: [o.registry], collect() { this.set(self.dht?.nodeCount ?? 0); } });
    }
  }

  get address(): DhtAddress | null { return this.dht?.address ?? null; }
  get instance(): BitcloudDht | null { return this.dht; }

  async start(): Promise<void> {
    const c = this.o.consensus();
    const bootstrap = c ? dhtBootstrapList(c.relays, this.o.fingerprint) : [];
    this.seenConsensus = c?.validAfter ?? 0;
    this.lastListed = new Set(bootstrap.map(key));
    this.dht = await BitcloudDht.start({ bootstrap, host: this.o.host, port: this.o.port, queryTimeoutMs: this.o.queryTimeoutMs, log: this.log, members: (host, port) => this.isMember(host, port) });
    this.log.info({ port: this.dht.address.port, bootstrap: bootstrap.length }, 'dht listening');
    const poll = setInterval(() => this.poll(), this.o.pollMs ?? 5_000);
    poll.unref();
    const announce = setInterval(() => void this.announce(), this.o.announceIntervalMs);
    announce.unref();
    this.timers.push(poll, announce);
    // First announce once the routing table had a chance to fill.
    const first = setTimeout(() => void this.announce(), 2_000);
    first.unref();
    this.timers.push(first);
  }

  /**
   * SPEC.md §9.14 *Members only*: `host:port` is the DHT address (address, storage port) of a storage
   * node of the consensus held now; with no consensus, nothing is.
   */
  isMember(host: string, port: number): boolean {
    const c = this.o.consensus();
    if (!c) {
      // Every datagram is dropped: every storage node counts as new to the next consensus.
      this.lastListed.clear();
      return false;
    }
    if (c.validAfter !== this.members.validAfter) {
      const set = new Set(dhtBootstrapList(c.relays).map(key));
      this.members = { validAfter: c.validAfter, set };
      // A node this consensus leaves out has its datagrams dropped while it is held.
      for (const k of this.lastListed) if (!set.has(k)) this.lastListed.delete(k);
    }
    return this.members.set.has(`${host}:${port}`);
  }

  /**
   * SPEC.md §9.14 *Network*: the storage nodes of every newer consensus are added. Under *Members
   * only* a node holding no consensus (none yet, or its own expired) drops every datagram, so pings
   * to it fail and its peers fall out of the table; so while the routing table holds fewer than
   * DHT_REJOIN_BELOW nodes, every listed node missing from it is added (not only those never tried
   * before: one never tried again would leave the DHT split for good, and a node that started with
   * no consensus has no bootstrap list to fall back on). A table that holds more (a Kademlia table
   * never holds the whole of a large network) gets the nodes new to this consensus only: pinging
   * every member missing from it at each consensus would cost every node a datagram to nearly
   * every storage node each period, all at once. The nodes it lost learn it back from its queries.
   * "New" is against the consensus this poll saw before and every consensus held since: a node left
   * out of one held between two polls (a period shorter than the poll, a lapse) had its datagrams
   * dropped meanwhile and is pinged again.
   */
  private poll(): void {
    const c = this.o.consensus();
    if (!c || c.validAfter === this.seenConsensus || !this.dht) return;
    this.seenConsensus = c.validAfter;
    const table = this.dht.tableAddresses();
    const inTable = new Set(table.map(key));
    const rejoin = table.length < DHT_REJOIN_BELOW;
    const listed = dhtBootstrapList(c.relays, this.o.fingerprint);
    const missing = listed.filter((a) => !inTable.has(key(a)) && (rejoin || !this.lastListed.has(key(a))));
    this.lastListed = new Set(listed.map(key));
    if (missing.length) {
      this.dht.addNodes(missing);
      this.log.debug({ added: missing.length }, 'dht: storage nodes from the consensus added');
    }
  }

  private async announce(): Promise<void> {
    if (!this.dht) return;
    try {
      await this.dht.announce(this.dht.address.port);
      this.log.debug('dht: announced');
    } catch (e) {
      this.log.debug({ code: errorCode(e) }, 'dht: announce failed (no nodes yet?)');
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.dht?.close();
    this.dht = null;
  }
}
