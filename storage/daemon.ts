// The storage node daemon (SPEC.md §9.13). It owns the lifetimes of: the node keys, the share
// store (quota, leases, GC, LRU), the circuit endpoint and direct listener (endpoint.ts), the DHT
// (dht.ts), the consensus it follows (DirKeeper), the descriptor publisher and /metrics.
// Protocol logic lives in the modules it starts.
import type http from 'node:http';
import { fingerprint, startNodeKeys, type NodeKeys } from '../src/crypto/keys';
import { buildDescriptor } from '../src/dir/descriptor';
import { familyWithoutSelf } from '../src/dir/config-fields';
import { IdentityProofKeeper } from '../src/dir/identity-pow';
import type { IdentityProofMsg } from '../src/wire/docs';
import { DescriptorPublisher } from '../src/dir/publish';
import { DirKeeper } from '../src/client/dir-keeper';
import type { Logger } from '../src/ops/log';
import { openMetricsPort, prom, type Registry } from '../src/ops/metrics';
import { VERSION } from '../src/ops/version';
import type { StorageConfig } from './config';
import { NodeDht } from './dht';
import type { BitcloudDht } from '../src/storage/dht';
import { StorageEndpoint } from './endpoint';
import { NameService } from './name-service';
import { allowAll, type PolicyCheck } from './handler';
import { StorageMetrics } from './metrics';
import { ShareStore } from './share-store';
import { NodeBandwidth, listedIn } from '../src/bandwidth/node-bandwidth';
import path from 'node:path';
import { err, isBitcloudError, errorCode } from '../src/errors';
import { loadX25519Secret, saveX25519SecretExclusive } from '../src/crypto/keys';
import { x25519Generate, type X25519KeyPair } from '../src/crypto/primitives';
import { CircuitBuilder } from '../src/client/circuit-builder';
import { GuardSet } from '../src/client/guards';
import { guardDirSources, mirrorCircuitSources } from '../src/client/guard-dir';
import { HiddenService } from '../src/hidden/service';
import { HS_DESC_PATH } from '../src/hidden/store';
import { PATHS } from '../src/dir/fetch';
import { asUploadResults, uploadOverCircuit, type UploadConfirm } from '../src/hidden/upload';
import { authoritySigningKeys } from '../src/dir/consensus';
import type { MirrorCircuitOptions } from '../src/hidden/client';
import { HiddenReceipts } from './hidden-receipts';

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
  private hs: HiddenService | null = null;
  private hsBuilder: CircuitBuilder | null = null;
  private hsGuards: GuardSet | null = null;
  private hsRetry: NodeJS.Timeout | null = null;
  private hsGuardSave: NodeJS.Timeout | null = null;
  private hsReceipts: HiddenReceipts | null = null;
  private stopping = false;
  readonly dir: DirKeeper;

  constructor(
    private readonly cfg: StorageConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly hooks: StorageDaemonHooks = {},
  ) {
    // A hidden node's bootstrap fetch says "client", as any client's does (SPEC.md §9.21.1); with a
    // valid consensus it never fetches directly: its guards' mirrors, then relay mirrors over 3-hop circuits.
    this.dir = new DirKeeper({
      authorities: cfg.authorities, dataDir: cfg.dataDir, log, registry, fetcher: cfg.hidden ? 'client' : 'node',
      ...(cfg.hidden ? { tunnelOnly: true, circuitSources: () => this.hsBuilder ? mirrorCircuitSources(this.dir.tunnelRelays(), async (last) => (await this.hsBuilder!.build({ storageNode: last })).circ) : [] } : {}),
    });
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
    // SPEC.md §6.4: the config takes the node's own fingerprint in its family; the rest must fit a descriptor.
    familyWithoutSelf(cfg.family, fingerprint(this.keys.identity.publicKey));
    this.store = await ShareStore.open({
      dir: cfg.dataDir, quotaBytes: cfg.quotaBytes, cacheBytes: cfg.cacheBytes, maxReadBytesInFlight: cfg.maxReadBytesInFlight, defaultLeaseSeconds: cfg.defaultLeaseSeconds,
      maxLeaseSeconds: cfg.maxLeaseSeconds, metrics: new StorageMetrics(this.registry), log: this.log,
    });
    this.store.startGc(cfg.gcIntervalSeconds * 1000);
    // SPEC.md §9.21.1: a hidden node's circuits first, so that even the first refresh of a cached
    // consensus goes through its guards (or relay mirrors over circuits), never to an authority.
    if (cfg.hidden) await this.startHiddenCircuits();
    // The consensus gives the DHT its bootstrap list. Do not hold start-up hostage to slow authorities.
    await Promise.race([this.dir.start(), new Promise((r) => setTimeout(r, 3_000).unref())]);

    // SPEC.md §8.3: a storage node takes part like a relay on its links with relays (normally as
    // the responder, countersigning what the relays propose), and uploads what it holds.
    this.bw = new NodeBandwidth({
      identity: this.keys.identity, dataDir: cfg.dataDir, authorities: cfg.authorities,
      periodSeconds: () => this.dir.consensus()?.periodSeconds ?? null, listed: listedIn(() => this.dir.consensus()),
      settings: cfg.receipts, registry: this.registry, log: this.log,
    });
    await this.bw.start();
    this.endpoint = new StorageEndpoint({
      keys: () => this.keys!, store: this.store, host: cfg.listenHost, orPort: cfg.orPort, storagePort: cfg.storagePort,
      policyCheck: this.hooks.policyCheck ?? allowAll, maxDirectSessions: cfg.maxDirectSessions,
      maxDirectSessionsPerAddress: cfg.maxDirectSessionsPerAddress, directIdleMs: cfg.directIdleSeconds * 1000,
      directRequestMs: cfg.directRequestSeconds * 1000, registry: this.registry, log: this.log,
      bandwidth: this.bw, consensus: () => this.dir.consensus(), refreshConsensus: () => this.dir.refresh(),
      names: new NameService(() => this.dht?.instance ?? null),
    });
    await this.endpoint.start({ listen: !cfg.hidden });
    if (cfg.hidden) {
      // SPEC.md §9.21: no listener, no DHT (its UDP port would be an address); reached only by rendezvous.
      this.metricsServer = await openMetricsPort(this.registry, cfg, this.log);
      this.startPublisher();
      await this.startHidden();
      this.log.info({ identity: this.fingerprint, nickname: cfg.nickname, hidden: true, metricsPort: this.ports.metricsPort || null, quota: cfg.quotaBytes }, 'hidden storage node started');
      return;
    }
    this.dht = new NodeDht({
      host: cfg.listenHost, port: this.endpoint.storagePort, fingerprint: this.fingerprint, consensus: () => this.dir.consensus(),
      announceIntervalMs: cfg.announceIntervalSeconds * 1000, registry: this.registry, log: this.log,
    });
    await this.dht.start();
    this.metricsServer = await openMetricsPort(this.registry, cfg, this.log);
    this.startPublisher();
    const p = this.ports;
    this.log.info({ identity: this.fingerprint, nickname: cfg.nickname, orPort: p.orPort, storagePort: p.storagePort, metricsPort: p.metricsPort || null, quota: cfg.quotaBytes }, 'storage node listening');
  }

  private startPublisher(): void {
    const cfg = this.cfg;
    // SPEC.md §6.4.1: the identity proof, anchored to the newest consensus held, mined off the event loop.
    this.pow = new IdentityProofKeeper({
      identity: this.keys!.identity.publicKey, params: cfg.identityPow, dataDir: cfg.dataDir, log: this.log,
      consensusParams: () => this.dir.consensus()?.identityPow ?? null,
      anchors: { current: () => { const c = this.dir.consensus(); return c ? { validAfter: c.validAfter, digest: c.digest, periodSeconds: c.periodSeconds } : null; } },
    });
    this.publisher = new DescriptorPublisher(cfg.authorities, async () => this.buildDescriptor(await this.pow!.proof()), this.log, {
      intervalMs: cfg.publishIntervalSeconds * 1000, retryMs: Math.min(30_000, cfg.publishIntervalSeconds * 1000),
      // SPEC.md §9.21.8: a hidden node uploads through a relay mirror over a circuit, never directly.
      ...(cfg.hidden ? { upload: async (targets, raw) => asUploadResults(targets, await uploadOverCircuit(this.mirrorCircuits()!, PATHS.descriptor, raw, this.uploadConfirm())) } : {}),
      onPowStale: () => this.pow?.refusedAsStale(),
    });
    this.publisher.start();
  }

  /**
   * A hidden node's guards and circuit builder. Its links to its guards are authenticated under
   * its period's pseudonym, never its identity, so receipts run on them (SPEC.md §9.21.4, §9.21.7).
   */
  private async startHiddenCircuits(): Promise<void> {
    // SPEC.md §7.2 (State): guards just sampled are saved at once, as every client process does.
    const saveGuards = (): void => {
      if (this.stopping) return;
      void guards.save().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not save guard state'));
    };
    const guards: GuardSet = this.hsGuards = GuardSet.load(path.join(this.cfg.dataDir, 'state.json'), Date.now, { onSampled: saveGuards });
    for (const w of guards.warnings) this.log.warn({ warning: w }, 'guard state');
    // As the proxy: status news (failures, successes) is saved within a minute, not only at stop.
    this.hsGuardSave = setInterval(() => { if (guards.dirty) saveGuards(); }, 60_000);
    this.hsGuardSave.unref();
    const receipts = this.hsReceipts = new HiddenReceipts({
      identity: this.keys!.identity, authorities: this.cfg.authorities, consensus: () => this.dir.consensus(),
      periodSeconds: () => this.dir.consensus()?.periodSeconds ?? null, mirrorCircuits: () => this.mirrorCircuits(),
      closeLinksExcept: (keep) => this.hsBuilder?.closeLinksExcept(keep), settings: this.cfg.receipts,
      registry: this.registry, log: this.log,
    });
    await receipts.start();
    const builder = this.hsBuilder = new CircuitBuilder({
      // SPEC.md §9.21.1: a cached consensus expired less than a day ago still builds the directory circuits.
      relays: () => this.dir.tunnelRelays(), guards, enforceDistinctSubnets: this.cfg.enforceDistinctSubnets, log: this.log,
      linkIdentity: () => receipts.linkIdentity(), onLink: (ch, key) => receipts.onLink(ch, key),
    });
    // SPEC.md §6.10.1 as for clients: once it has guards, newer consensuses come through their mirrors.
    this.dir.useGuards(() => guardDirSources(builder, guards, this.dir.tunnelRelays()));
  }

  /** 3-hop circuits to relay mirrors (SPEC.md §9.21.8) for a hidden node's uploads and policy fetches; null before start. */
  mirrorCircuits(): MirrorCircuitOptions | null {
    if (!this.hsBuilder) return null;
    return { relays: () => this.dir.relays(), buildTo: async (last) => (await this.hsBuilder!.build({ storageNode: last })).circ, timeoutMs: 20_000 };
  }

  /**
   * SPEC.md §9.21.8: a mirror's word that an authority took an upload counts only with that
   * authority's ack under the signing key the node's consensus certifies for it.
   */
  private uploadConfirm(): UploadConfirm {
    return { signingKeys: () => { const c = this.dir.consensus(); return c ? authoritySigningKeys(c, this.cfg.authorities, Date.now()) : new Map<string, Buffer>(); }, log: this.log };
  }

  /** Introduction points and hidden descriptors (SPEC.md §9.21.4); retried until the consensus lists enough relays. */
  private async startHidden(): Promise<void> {
    const cfg = this.cfg;
    const ntorKey = await loadOrCreateX25519(path.join(cfg.dataDir, 'hs-ntor.key'));
    // SPEC.md §9.21: introductions, rendezvous and refusals (HIDDEN_INTRO_FORGED, HIDDEN_INTRO_REPLAY, …) by code.
    const events = new prom.Counter({ name: 'bitcloud_storage_hidden_events_total', help: 'Hidden service events and refused introductions, by event or error code', labelNames: ['event'], registers: [this.registry] });
    const builder = this.hsBuilder!;
    const hs = this.hs = new HiddenService({
      identity: this.keys!.identity, ntorKey, relays: () => this.dir.relays(), builder, introDos: cfg.introDos, family: cfg.family,
      onStream: (inc) => this.endpoint!.acceptHiddenStream(inc),
      publish: (d) => this.publishHsDescriptor(d),
      onEvent: (code) => { events.inc({ event: code }); this.log.debug({ code }, 'hidden service event'); },
      log: this.log,
    });
    const attempt = (): void => {
      this.hsRetry = null;
      if (this.stopping) return;
      hs.start().then(() => {
        this.log.info({ introPoints: hs.introductionPoints.length }, 'hidden descriptor published');
        // SPEC.md §9.21.7: its relay descriptor is at the authorities by now; register the pseudonym.
        void this.hsReceipts?.registerNow();
      }, (e: unknown) => {
        this.log.warn({ code: errorCode(e) }, 'hidden service not up yet; retrying');
        if (!this.stopping) this.hsRetry = setTimeout(attempt, 3_000);
      });
    };
    attempt();
  }

  /** The hidden service's counters (tests, status): events and refusals by code. */
  get hiddenService(): HiddenService | null { return this.hs; }

  /**
   * SPEC.md §9.21.3, §9.21.8: the descriptor to every authority through a relay mirror over a
   * circuit; resolves when at least one authority took it.
   */
  private async publishHsDescriptor(d: Buffer): Promise<void> {
    let results: { status: number; code?: string }[];
    try {
      results = await uploadOverCircuit(this.mirrorCircuits()!, HS_DESC_PATH, d, this.uploadConfirm());
    } catch (e) {
      throw err('HIDDEN_DESC_UPLOAD_FAILED', `no mirror passed the hidden descriptor on (${errorCode(e)})`);
    }
    if (!results.some((r) => r.status === 200)) throw err('HIDDEN_DESC_UPLOAD_FAILED', `no authority took the hidden descriptor (${results.map((r) => r.code ?? r.status).join(', ')})`);
  }

  /** SPEC.md §6.4 with the storage role only: the node ends circuits, never extends or exits. */
  private buildDescriptor(identityProof: IdentityProofMsg): Buffer {
    const k = this.keys!;
    const c = this.cfg;
    const p = this.ports;
    // SPEC.md §9.21.1: a hidden node lists address 0.0.0.0 and no ports.
    return buildDescriptor({
      identity: k.identity, onionKey: k.onion.publicKey, nickname: c.nickname, address: c.hidden ? '0.0.0.0' : c.address,
      orPort: c.hidden ? 0 : p.orPort, dirPort: 0, storagePort: c.hidden ? 0 : p.storagePort, declaredBandwidth: c.bandwidth,
      exitPolicy: [], family: c.family, roles: c.hidden ? ['storage', 'hidden'] : ['storage'], moderators: c.moderators,
      version: `bitcloud-${VERSION}`, published: Date.now(), lifetimeMs: c.descriptorLifetimeSeconds * 1000,
      identityProof,
    });
  }

  /** SIGTERM: stop publishing and accepting, let in-flight writes reach the disk, close the store. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.hsRetry) clearTimeout(this.hsRetry);
    if (this.hsGuardSave) clearInterval(this.hsGuardSave);
    this.hs?.close();
    await this.hsReceipts?.stop(await this.hsBuilder?.channels() ?? []);
    await this.hsBuilder?.close();
    // SPEC.md §7.2 (State): a process shutting down does not wait for state.json.lock (saveSync
    // skips while another process holds it).
    if (this.hsGuards?.dirty) {
      try { this.hsGuards.saveSync(); } catch (e) { this.log.warn({ err: (e as Error).message }, 'could not save guard state'); }
    }
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

/**
 * The hidden service's ntor key (SPEC.md §9.21.3), made on first start, mode 0600. Made
 * exclusively, as identity.key and onion.key (§3.3): one made meanwhile by another process starting
 * on this folder is the key on disk and is used, so no node serves a key that is not there.
 */
export async function loadOrCreateX25519(file: string): Promise<X25519KeyPair> {
  try {
    return await loadX25519Secret(file);
  } catch (e) {
    if (!isBitcloudError(e, 'KEY_NOT_FOUND')) throw e;
    const kp = x25519Generate();
    return await saveX25519SecretExclusive(file, kp) ? kp : loadX25519Secret(file);
  }
}
