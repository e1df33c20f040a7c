// The storage node daemon (SPEC.md §9.13). It owns the lifetimes of: the node keys, the share
// store (quota, leases, GC, LRU), the circuit endpoint and direct listener (endpoint.ts), the DHT
// (dht.ts), the consensus it follows (DirKeeper), the descriptor publisher and /metrics.
// Protocol logic lives in the modules it starts.
import type http from 'node:http';
import { fingerprint, startNodeKeys, type NodeKeys } from '../src/crypto/keys';
import { buildDescriptor } from '../src/dir/descriptor';
import { IdentityProofKeeper } from '../src/dir/identity-pow';
import type { IdentityProofMsg } from '../src/wire/docs';
import { DescriptorPublisher } from '../src/dir/publish';
import { DirKeeper } from '../src/client/dir-keeper';
import type { Logger } from '../src/ops/log';
import { openMetricsPort, type Registry } from '../src/ops/metrics';
import { VERSION } from '../src/ops/version';
import type { StorageConfig } from './config';
import { NodeDht } from './dht';
import type { BitcloudDht } from '../src/storage/dht';
import { StorageEndpoint } from './endpoint';
import { NameService } from './name-service';
import { allowAll, type PolicyCheck } from './handler';
import { StorageMetrics } from './metrics';
import { ShareStore } from './share-store';
import { NodeBandwidth } from '../src/bandwidth/node-bandwidth';

export interface StorageDaemonHooks {
  /** Moderation (SPEC.md §9.8.5, §10.6) plugs in here; default: allow everything. */
  policyCheck?: PolicyCheck;
}

export class StorageDaemon {
  private keys: NodeKeys | null = null;
  private store: ShareStore | null = null;
  private endpoint: StorageEndpoint | null = null;
  private bw: NodeBandwidth | null = null;
  private dht: NodeDht | null = null;
  private pow: IdentityProofKeeper | null = null;
  private publisher: DescriptorPublisher | null = null;
  private metricsServer: http.Server | null = null;
  private rotation: { stop(): void } | null = null;
  readonly dir: DirKeeper;

  constructor(
    private readonly cfg: StorageConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly hooks: StorageDaemonHooks = {},
  ) {
    this.dir = new DirKeeper({ authorities: cfg.authorities, dataDir: cfg.dataDir, log, registry, fetcher: 'node' });
  }

  get fingerprint(): string { return this.keys ? fingerprint(this.keys.identity.publicKey) : ''; }
  get ports(): { orPort: number; storagePort: number; metricsPort: number } {
    const m = this.metricsServer?.address();
    return { orPort: this.endpoint?.orPort ?? 0, storagePort: this.endpoint?.storagePort ?? 0, metricsPort: m && typeof m === 'object' ? m.port : 0 };
  }
  get shareStore(): ShareStore | null { return this.store; }
  /** Proof of bandwidth on the links relays open to this node (SPEC.md §8); null before start. */
  get bandwidth(): NodeBandwidth | null { return this.bw; }
  /** The DHT once started (moderation reads policy heads from it). */
  get dhtInstance(): BitcloudDht | null { return this.dht?.instance ?? null; }

  async start(): Promise<void> {
    const cfg = this.cfg;
    // Keys on first start (mode 0600 in a 0700 data dir), never logged; SPEC.md §3.3: the onion
    // key rotated while running and the new one published at once.
    ({ keys: this.keys, rotation: this.rotation } = await startNodeKeys(cfg.dataDir, cfg.onionKeyRotationSeconds, this.log,
      (k) => { this.keys = k; void this.publisher?.republishNow().catch(() => {}); }));
    this.store = await ShareStore.open({
      dir: cfg.dataDir, quotaBytes: cfg.quotaBytes, cacheBytes: cfg.cacheBytes, defaultLeaseSeconds: cfg.defaultLeaseSeconds,
      maxLeaseSeconds: cfg.maxLeaseSeconds, metrics: new StorageMetrics(this.registry), log: this.log,
    });
    this.store.startGc(cfg.gcIntervalSeconds * 1000);
    // The consensus gives the DHT its bootstrap list. Do not hold start-up hostage to slow authorities.
    await Promise.race([this.dir.start(), new Promise((r) => setTimeout(r, 3_000).unref())]);

    // SPEC.md §8.3: a storage node takes part like a relay on its links with relays (normally as
    // the responder, countersigning what the relays propose), and uploads what it holds.
    this.bw = new NodeBandwidth({
      identity: this.keys.identity, dataDir: cfg.dataDir, authorities: cfg.authorities,
      periodSeconds: () => this.dir.consensus()?.periodSeconds ?? null,
      settings: cfg.receipts, registry: this.registry, log: this.log,
    });
    await this.bw.start();
    this.endpoint = new StorageEndpoint({
      keys: () => this.keys!, store: this.store, host: cfg.listenHost, orPort: cfg.orPort, storagePort: cfg.storagePort,
      policyCheck: this.hooks.policyCheck ?? allowAll, maxDirectSessions: cfg.maxDirectSessions, registry: this.registry, log: this.log,
      bandwidth: this.bw, consensus: () => this.dir.consensus(),
      names: new NameService(() => this.dht?.instance ?? null),
    });
    await this.endpoint.start();
    this.dht = new NodeDht({
      host: cfg.listenHost, port: this.endpoint.storagePort, fingerprint: this.fingerprint, consensus: () => this.dir.consensus(),
      announceIntervalMs: cfg.announceIntervalSeconds * 1000, registry: this.registry, log: this.log,
    });
    await this.dht.start();
    this.metricsServer = await openMetricsPort(this.registry, cfg, this.log);

    // SPEC.md §6.4.1: the identity proof, anchored to the newest consensus held, mined off the event loop.
    this.pow = new IdentityProofKeeper({
      identity: this.keys!.identity.publicKey, params: cfg.identityPow, dataDir: cfg.dataDir, log: this.log,
      consensusParams: () => this.dir.consensus()?.identityPow ?? null,
      anchors: { current: () => { const c = this.dir.consensus(); return c ? { validAfter: c.validAfter, digest: c.digest, periodSeconds: c.periodSeconds } : null; } },
    });
    this.publisher = new DescriptorPublisher(cfg.authorities, async () => this.buildDescriptor(await this.pow!.proof()), this.log, {
      intervalMs: cfg.publishIntervalSeconds * 1000, retryMs: Math.min(30_000, cfg.publishIntervalSeconds * 1000),
    });
    this.publisher.start();
    const p = this.ports;
    this.log.info({ identity: this.fingerprint, nickname: cfg.nickname, orPort: p.orPort, storagePort: p.storagePort, metricsPort: p.metricsPort || null, quota: cfg.quotaBytes }, 'storage node listening');
  }

  /** SPEC.md §6.4 with the storage role only: the node ends circuits, never extends or exits. */
  private buildDescriptor(identityProof: IdentityProofMsg): Buffer {
    const k = this.keys!;
    const c = this.cfg;
    const p = this.ports;
    return buildDescriptor({
      identity: k.identity, onionKey: k.onion.publicKey, nickname: c.nickname, address: c.address,
      orPort: p.orPort, dirPort: 0, storagePort: p.storagePort, declaredBandwidth: c.bandwidth,
      exitPolicy: [], family: c.family, roles: ['storage'], moderators: c.moderators,
      version: `bitcloud-${VERSION}`, published: Date.now(), lifetimeMs: c.descriptorLifetimeSeconds * 1000,
      identityProof,
    });
  }

  /** SIGTERM: stop publishing and accepting, let in-flight writes reach the disk, close the store. */
  async stop(): Promise<void> {
    this.rotation?.stop();
    this.publisher?.stop();
    this.pow?.stop();
    this.dir.stop();
    await this.dht?.stop();
    await this.endpoint?.close();
    await this.bw?.stop(); // bandwidth.json and the receipts not yet delivered
    await this.store?.close();
    if (this.metricsServer) {
      const s = this.metricsServer;
      await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
    }
    this.log.info('storage node stopped');
  }
}
