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
  registry?: Registry;
  log?: Logger;
}

export class NodeDht {
  private dht: BitcloudDht | null = null;
  private seenConsensus = 0;
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
    this.dht = await BitcloudDht.start({ bootstrap, host: this.o.host, port: this.o.port, log: this.log, members: (host, port) => this.isMember(host, port) });
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
    if (!c) return false;
    if (c.validAfter !== this.members.validAfter) {
      this.members = { validAfter: c.validAfter, set: new Set(dhtBootstrapList(c.relays).map((a) => `${a.host}:${a.port}`)) };
    }
    return this.members.set.has(`${host}:${port}`);
  }

  /**
   * SPEC.md §9.14 *Network*: the storage nodes of every newer consensus are added, each one not in
   * the routing table now (not only those never tried before): under *Members only* a node holding
   * no consensus (none yet, or its own expired) drops every datagram, so pings to it fail and its
   * peers fall out of the table; one never tried again would leave the DHT split for good, and a
   * node that started with no consensus has no bootstrap list to fall back on.
   */
  private poll(): void {
    const c = this.o.consensus();
    if (!c || c.validAfter === this.seenConsensus || !this.dht) return;
    this.seenConsensus = c.validAfter;
    const inTable = new Set(this.dht.tableAddresses().map((a) => `${a.host}:${a.port}`));
    const missing = dhtBootstrapList(c.relays, this.o.fingerprint).filter((a) => !inTable.has(`${a.host}:${a.port}`));
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
