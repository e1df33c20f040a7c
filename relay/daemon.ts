// The relay daemon (SPEC.md §6.4, §6.10; circuits in SPEC.md §7). It owns the lifetimes of:
// the node keys, the link listener (ORPort), the circuit engine (relay/circuits.ts), the
// descriptor publisher, the consensus mirror and the directory HTTP server (DirPort:
// consensus, status, /metrics).
//
// Every link whose handshake completed goes to the circuit engine, then to
// `RelayHooks.onChannel` (extra per-link behaviour: a storage node, tests). An authority's
// reachability test needs only the completed handshake.
import http from 'node:http';
import { err } from '../src/errors';
import { startNodeKeys, type NodeKeys } from '../src/crypto/keys';
import { createLinkListener, createLinkMetrics, type Channel, type LinkListener } from '../src/link';
import { isoTime, type Logger } from '../src/ops/log';
import { fetchRewardChain } from '../src/client/rewards';
import { RelayStatus } from './status-page';
import { oncePerRegistry, openMetricsPort, prom, type Registry } from '../src/ops/metrics';
import { VERSION } from '../src/ops/version';
import { buildDescriptor } from '../src/dir/descriptor';
import { familyWithoutSelf } from '../src/dir/config-fields';
import { IdentityProofKeeper } from '../src/dir/identity-pow';
import type { IdentityProofMsg } from '../src/wire/docs';
import { PATHS } from '../src/dir/fetch';
import { escapeHtml, requestTarget, sendBadTarget, sendJson, sendJsonError, serveDocument } from '../src/dir/http-serve';
import type { VerifiedConsensus } from '../src/dir/types';
import type { RelayConfig } from './config';
import { ConsensusMirror } from './mirror';
import { RewardMirror } from './reward-mirror';
import { NameMirror, nameMirrorMetric } from './name-mirror';
import { HS_DESC_PATH } from '../src/hidden/store';
import { DescriptorPublisher } from '../src/dir/publish';
import { RelayCircuits } from './circuits';
import { NodeBandwidth, listedIn } from '../src/bandwidth/node-bandwidth';
import { dropUnreadBody, HTTP_IDLE_TIMEOUT_MS, HTTP_SERVER_TIMEOUTS } from '../src/ops/http-body';
import { forwardMetric, mirrorSigningKeys, UploadForwarder } from './upload-forward';
import { POLICY_PATH } from '../src/moderation/sources';
import { DirPassThrough } from './dir-pass';
import { capConnections, ConnectionCaps } from '../src/ops/connection-caps';
import { parseIPv6 } from '../src/wire/addr';

export interface RelayContext {
  config: RelayConfig;
  keys: NodeKeys;
  log: Logger;
  registry: Registry;
  /** The newest verified consensus the relay holds (null before the first one). */
  consensus(): VerifiedConsensus | null;
}

export interface RelayHooks {
  /** A link completed its handshake (initiated by a client or another relay). */
  onChannel(ch: Channel, ctx: RelayContext): void;
  /** Called once the daemon is up, before it publishes; may start more services. */
  onStart?(ctx: RelayContext): Promise<void> | void;
  onStop?(): Promise<void> | void;
}

/** Default: nothing beyond the circuit engine (reachability tests close their links themselves). */
export const idleChannelHooks: RelayHooks = {
  onChannel(ch, ctx) {
    ctx.log.debug({ initiator: ch.peerIdentity ? 'relay' : 'anonymous' }, 'link opened');
  },
};

export class RelayDaemon {
  private keys: NodeKeys | null = null;
  private listener: LinkListener | null = null;
  private http: http.Server | null = null;
  private pow: IdentityProofKeeper | null = null;
  private metricsServer: http.Server | null = null;
  private status: RelayStatus | null = null;
  private rotation: { stop(): void } | null = null;
  private publisher: DescriptorPublisher | null = null;
  private circuits: RelayCircuits | null = null;
  private bw: NodeBandwidth | null = null;
  private mirror: ConsensusMirror;
  private readonly rewardMirror: RewardMirror;
  /** SPEC.md §9.21.8: hidden nodes' uploads, passed on to the authorities. */
  readonly uploads: UploadForwarder;
  /** SPEC.md §9.14.2: the name records this mirror keeps. */
  readonly names: NameMirror;
  /** SPEC.md §9.21.3, §9.21.8: hidden descriptors and policies passed on from the authorities. */
  private readonly dirPass: DirPassThrough;
  private orPort = 0;
  private dirPort = 0;

  constructor(
    private readonly cfg: RelayConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly hooks: RelayHooks = idleChannelHooks,
  ) {
    this.mirror = new ConsensusMirror(cfg.authorities, cfg.dataDir, log, cfg.mirrorIntervalSeconds * 1000, registry);
    this.rewardMirror = new RewardMirror(cfg.authorities);
    this.dirPass = new DirPassThrough(() => cfg.authorities);
    const forwarded = forwardMetric(registry);
    this.uploads = new UploadForwarder(() => cfg.authorities, Date.now, (kind, result) => forwarded.inc({ kind, result }), undefined,
      mirrorSigningKeys(() => this.mirror.current, cfg.authorities));
    const named = nameMirrorMetric(registry);
    this.names = new NameMirror(undefined, (result) => named.inc({ result }));
  }

  get ports(): { orPort: number; dirPort: number; metricsPort: number } {
    const m = this.metricsServer?.address();
    return { orPort: this.orPort, dirPort: this.dirPort, metricsPort: m && typeof m === 'object' ? m.port : 0 };
  }
  get fingerprint(): string { return this.keys ? this.keys.identity.publicKey.toString('hex') : ''; }
  get consensusMirror(): ConsensusMirror { return this.mirror; }
  /** Proof of bandwidth on this relay's links (SPEC.md §8); null before start. */
  get bandwidth(): NodeBandwidth | null { return this.bw; }

  async start(): Promise<void> {
    const cfg = this.cfg;
    // SPEC.md §3.3: keys, and the onion key rotated while running (the new one published at once).
    ({ keys: this.keys, rotation: this.rotation } = await startNodeKeys(cfg.dataDir, cfg.onionKeyRotationSeconds, this.log,
      (k) => { this.keys = k; void this.publisher?.republishNow().catch(() => {}); }));
    // SPEC.md §6.4: the config takes the node's own fingerprint in its family; the rest must fit a descriptor.
    familyWithoutSelf(cfg.family, this.keys.identity.publicKey.toString('hex'));
    const ctx = this.context();
    // SPEC.md §8: count authenticated links, exchange receipts at epoch boundaries, upload them.
    const bw = this.bw = new NodeBandwidth({
      identity: this.keys.identity, dataDir: cfg.dataDir, authorities: cfg.authorities,
      periodSeconds: () => this.mirror.current?.periodSeconds ?? null, listed: listedIn(() => this.mirror.current),
      settings: cfg.receipts, registry: this.registry, log: this.log,
    });
    // SPEC.md §7b: the circuit engine serves every link (CREATE2, forwarding, exit, BEGIN_DIR).
    const dirHost = this.dirSelfHost();
    const circuits = this.circuits = new RelayCircuits({
      keys: () => this.keys!, exitPolicy: cfg.roles.includes('exit') ? cfg.exitPolicy : null, ownAddresses: [cfg.address],
      dirTarget: () => (this.dirPort ? { port: this.dirPort, host: dirHost } : null),
      consensus: () => this.mirror.current,
      // SPEC.md §7b.3 item 2: a target our consensus misses has the consensus fetched before it is refused.
      refreshConsensus: () => this.mirror.refreshForExtend(),
      registry: this.registry, linkMetrics: createLinkMetrics(this.registry), log: this.log,
      limits: cfg.limits, bandwidth: bw, linkWarming: cfg.linkWarming,
    });
    // SPEC.md §1.9: each new consensus renews the warm set and opens missing relay links, in the background.
    this.mirror.onConsensus((c) => circuits.onConsensus(c));
    this.listener = await createLinkListener({
      host: cfg.listenHost, port: cfg.orPort, identity: this.keys.identity,
      // SPEC.md §7b.9: the per-address connection cap is taken at accept, before any handshake.
      admit: (address) => circuits.admitConnection(address),
      onChannel: (ch, admission) => { circuits.acceptChannel(ch, admission); this.hooks.onChannel(ch, ctx); },
      metrics: createLinkMetrics(this.registry), log: this.log,
    });
    this.orPort = this.listener.port;
    if (cfg.dirPort !== 0) await this.startHttp();
    // SPEC.md §6.10: metrics only on the MetricsPort (127.0.0.1 unless the operator opens it).
    // The relay's own status page rides on it (SPEC.md §6.10): countersigned, proven, earned per epoch.
    const status = this.status = new RelayStatus({
      dataDir: cfg.dataDir, fingerprint: () => this.fingerprint, consensus: () => this.mirror.current, log: this.log,
      rewards: async () => {
        const c = this.mirror.current;
        if (!c) throw new Error('no consensus yet');
        const chain = await fetchRewardChain({ authorities: cfg.authorities, periodSeconds: c.periodSeconds, timeoutMs: 5000 });
        const fp = this.fingerprint;
        return {
          allocations: chain.blocks.filter((b) => b.block.allocations.has(fp)).map((b) => ({ height: b.block.height, epoch: b.block.epoch, units: b.block.allocations.get(fp)! })),
          balance: chain.state.balances.get(fp) ?? 0n,
        };
      },
    }).load();
    this.mirror.onConsensus((c) => status.onConsensus(c));
    this.metricsServer = await openMetricsPort(this.registry, cfg, this.log, status.pages);
    await this.mirror.start();
    await bw.start();
    await this.hooks.onStart?.(ctx);
    // SPEC.md §6.4.1: the identity proof, anchored to the newest consensus held, mined off the event loop.
    this.pow = new IdentityProofKeeper({
      identity: this.keys!.identity.publicKey, params: cfg.identityPow, dataDir: cfg.dataDir, log: this.log,
      consensusParams: () => this.mirror.current?.identityPow ?? null,
      anchors: { current: () => { const c = this.mirror.current; return c ? { validAfter: c.validAfter, digest: c.digest, periodSeconds: c.periodSeconds } : null; } },
    });
    this.publisher = new DescriptorPublisher(cfg.authorities, async () => this.buildDescriptor(await this.pow!.proof()), this.log, {
      intervalMs: cfg.publishIntervalSeconds * 1000,
      retryMs: Math.min(30_000, cfg.publishIntervalSeconds * 1000),
      onPowStale: () => this.pow?.refusedAsStale(),
    });
    this.publisher.start();
    this.log.info({ identity: this.fingerprint, orPort: this.orPort, dirPort: this.dirPort, metricsPort: this.ports.metricsPort || null, nickname: cfg.nickname }, 'relay listening');
  }

  async stop(): Promise<void> {
    this.rotation?.stop();
    this.publisher?.stop();
    this.pow?.stop();
    this.mirror.stop();
    this.rewardMirror.close();
    await this.hooks.onStop?.();
    await this.circuits?.close(); // settles receipts on its links first (SPEC.md §8.3 steps 10–11)
    await this.listener?.close();
    await this.bw?.stop(); // bandwidth.json and the receipts not yet delivered
    for (const s of [this.http, this.metricsServer]) {
      if (s) await new Promise<void>((resolve) => { s.close(() => resolve()); s.closeAllConnections(); });
    }
    await this.status?.flush();
  }

  private context(): RelayContext {
    return { config: this.cfg, keys: this.keys!, log: this.log, registry: this.registry, consensus: () => this.mirror.current };
  }

  private buildDescriptor(identityProof: IdentityProofMsg): Buffer {
    const k = this.keys!;
    const c = this.cfg;
    return buildDescriptor({
      identity: k.identity, onionKey: k.onion.publicKey, nickname: c.nickname, address: c.address,
      orPort: this.orPort, dirPort: this.dirPort, storagePort: c.storagePort, declaredBandwidth: c.bandwidth,
      exitPolicy: c.roles.includes('exit') ? c.exitPolicy : [], family: c.family, roles: c.roles,
      moderators: c.moderators, version: `bitcloud-${VERSION}`, published: Date.now(),
      lifetimeMs: c.descriptorLifetimeSeconds * 1000,
      identityProof,
    });
  }

  /**
   * The address BEGIN_DIR streams are spliced to the dir port on, and come from (SPEC.md §7b.7,
   * §6.10): the listen address, or loopback when the relay listens on every address.
   */
  private dirSelfHost(): string {
    const h = this.cfg.listenHost;
    if (h === '0.0.0.0') return '127.0.0.1';
    // Every address, however it is written ("::", "::0", "0:0:0:0:0:0:0:0"): a connection to it
    // arrives from ::1, which the caps must be told, not the unspecified address.
    const v6 = parseIPv6(h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h);
    return v6 && v6.every((b) => b === 0) ? '::1' : h;
  }

  private async startHttp(): Promise<void> {
    // A handler that failed unexpectedly answers 500 (or drops a half-sent answer), never an unhandled rejection.
    const failed = (res: http.ServerResponse) => { if (!res.headersSent) sendJsonError(res, 500, 'INTERNAL', 'internal error'); else res.destroy(); };
    const srv = http.createServer({ ...HTTP_SERVER_TIMEOUTS }, (req, res) => {
      dropUnreadBody(req, res);
      // SPEC.md §6.10: a target that is not a valid path or URL is 400, at every dir port.
      if (!requestTarget(req)) return sendBadTarget(res);
      const p = (req.url ?? '/').split('?')[0];
      if (UploadForwarder.handles(req.method, p)) return void this.uploads.serve(req, res, p).catch(() => failed(res));
      if (NameMirror.handles(p)) return void this.names.serve(req, res, p).catch(() => failed(res));
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendJsonError(res, 405, 'HTTP_METHOD', 'use GET');
      if (p === PATHS.consensus) return void serveDocument(req, res, this.mirror.served, 'CONSENSUS_NOT_AVAILABLE', 'this relay holds no consensus yet');
      // SPEC.md §8.7.5, §6.10.1: passed on from the authorities, in bounded answer places (relay/reward-mirror.ts).
      if (p === PATHS.rewards) return void this.rewardMirror.serve(req, res).catch(() => failed(res));
      if (p.startsWith(`${HS_DESC_PATH}/`)) return void this.dirPass.serveHsDescriptor(req, res, p).catch(() => failed(res));
      if (p.startsWith(POLICY_PATH)) return void this.dirPass.servePolicy(req, res).catch(() => failed(res));
      if (p === PATHS.status) {
        const c = this.mirror.current;
        return sendJson(res, 200, { identity: this.fingerprint, nickname: this.cfg.nickname, orPort: this.orPort, consensus: c ? { validAfter: c.validAfter, relays: c.relays.length, signers: c.signers } : null });
      }
      if (p === '/') {
        const c = this.mirror.current;
        const html = `<!doctype html><meta charset="utf-8"><title>Bitcloud relay</title><h1>Bitcloud relay ${escapeHtml(this.cfg.nickname)}</h1>`
          + `<p>Identity <code>${this.fingerprint}</code>, ORPort ${this.orPort}.</p>`
          + `<p>${c ? `Mirroring the consensus valid after ${isoTime(c.validAfter)} (${c.relays.length} relays, ${c.signers.length} signatures).` : 'No consensus yet.'}</p>`
          ;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return void res.end(html);
      }
      sendJsonError(res, 404, 'NOT_FOUND', 'no such path');
    });
    // SPEC.md §6.10: a connection idle either way for HTTP_IDLE_TIMEOUT_MS is destroyed (no
    // 'timeout' listener), so an answer passed on that nobody reads frees its place (§9.21.8).
    srv.setTimeout(HTTP_IDLE_TIMEOUT_MS);
    // SPEC.md §6.10 "Connection and body bounds": at most dirMaxConnectionsPerAddress connections per
    // address key and dirMaxConnections in all, destroyed as they arrive past either. The configured
    // authorities' addresses are exempt, and so is the relay's own: every BEGIN_DIR stream (§7b.7) is
    // spliced to this port from it, bounded by the circuit and stream limits (§7b.9) instead.
    const caps = new ConnectionCaps({
      max: this.cfg.dirMaxConnections, maxPerAddress: this.cfg.dirMaxConnectionsPerAddress,
      exemptHosts: [...this.cfg.authorities.map((a) => a.host), this.dirSelfHost()], log: this.log,
    });
    const refused = dirConnectionsRefusedMetric(this.registry);
    capConnections(srv, caps, (reason) => refused.labels(reason).inc());
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (e: NodeJS.ErrnoException) => reject(err('DIR_LISTEN_FAILED', `cannot listen on ${this.cfg.listenHost}:${this.cfg.dirPort}: ${e.code ?? e.message}`)));
      srv.listen(this.cfg.dirPort, this.cfg.listenHost, () => resolve());
    });
    this.http = srv;
    this.dirPort = (srv.address() as { port: number }).port;
  }
}

const dirConnectionsRefusedMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_relay_dir_connections_refused_total', help: 'Connections to the dir port destroyed as they arrived, by reason (per_address: dirMaxConnectionsPerAddress; total: dirMaxConnections; SPEC.md §6.10)',
  labelNames: ['reason'], registers: [reg],
}));
