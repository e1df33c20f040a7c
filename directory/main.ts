// bitcloud-dirauth wiring: config, keys, authority state, HTTP server, shutdown. No protocol logic.
import type http from 'node:http';
import { createLogger, type Logger } from '../src/ops/log';
import { createRegistry, openMetricsPort } from '../src/ops/metrics';
import { onShutdown, startWithDataDir } from '../src/ops/daemon';
import type { DataDirLock } from '../src/ops/file-lock';
import { err } from '../src/errors';
import { Authority } from './authority';
import { loadAuthorityConfig, type AuthorityConfig } from './config';
import { createAuthorityServer } from './http';
import { authorityKeygen, loadAuthoritySigner, type KeygenResult } from './keygen';
import { createAuthorityMetrics } from './metrics';
import { RewardLedger } from './rewards';
import { StorageAudits, circuitAuditConnector } from './storage-audits';
import { StatusHistory } from './status-history';

export interface RunOptions { config: string; dataDir?: string; period?: number; metricsPort?: number; logLevel?: string }

export async function runAuthority(o: RunOptions): Promise<{ stop(): Promise<void>; port: number; log: Logger }> {
  const cfg = loadAuthorityConfig(o.config, { dataDir: o.dataDir, period: o.period, metricsPort: o.metricsPort });
  const log = createLogger('bitcloud-dirauth', { level: o.logLevel ?? cfg.logLevel });
  // SPEC.md §3.3 step 1a: the data folder's lock before the keys and stores in it are read, held
  // until the last state write of stop().
  return startWithDataDir(cfg.dataDir, log, (lock) => startAuthority(cfg, log, lock));
}

async function startAuthority(cfg: AuthorityConfig, log: Logger, lock: DataDirLock): Promise<{ stop(): Promise<void>; port: number; log: Logger }> {
  const signer = await loadAuthoritySigner(cfg.dataDir);
  const fp = signer.identity.toString('hex');
  if (fp !== cfg.identity) {
    throw err('CONFIG_INVALID', `identity: the config says ${cfg.identity} but the keys in ${cfg.dataDir} are for ${fp}`, { key: 'identity' });
  }
  const days = (signer.certValidUntil - Date.now()) / 86_400_000;
  if (days < 14) log.warn({ daysLeft: Math.floor(days) }, 'signing certificate expires soon: run keygen to renew');

  const reg = createRegistry('dirauth');
  let authority: Authority | null = null;
  const metrics = createAuthorityMetrics(reg, {
    relaysKnown: () => authority?.store.size ?? 0,
    relaysRunning: () => authority?.store.all().filter((r) => r.reachable).length ?? 0,
    consensus: () => {
      const c = authority?.published?.info;
      return c ? { validAfter: c.validAfter, relays: c.relays.length, signatures: c.signers.length } : null;
    },
  });
  const rewards = new RewardLedger({ dataDir: cfg.dataDir, signer, authorities: cfg.authorities, periodSeconds: cfg.periodSeconds, skewMs: cfg.clockSkewSeconds * 1000, log, registry: reg });
  const history = new StatusHistory(cfg.dataDir, log).load();
  rewards.onBlock = (b) => history.onBlock(b);
  rewards.load();
  // SPEC.md §9.20: storage contracts and the audits of every epoch.
  // Audits go over 3-hop circuits that end at the node (rendezvous circuits to hidden nodes), SPEC.md
  // §9.20.2; the local test network runs every node on one address, so it turns off the
  // distinct-subnet rule for those paths.
  const auditConnector = circuitAuditConnector(() => storage.currentRelays(), { enforceDistinctSubnets: !cfg.testNetwork, log, registry: reg });
  // SPEC.md §9.20.1: a funded contract (§9.20.4) is never evicted to make room for an upload.
  const storage: StorageAudits = new StorageAudits({
    dataDir: cfg.dataDir, signer, periodSeconds: cfg.periodSeconds, log, registry: reg, connect: auditConnector.connect,
    funded: (id, epochs) => rewards.contractFunded(id, epochs),
  });
  const held = storage.load();
  // SPEC.md §9.20.4: escrow payments are computed from the contracts held and the own audit reports.
  rewards.escrow = { contract: (id) => storage.contract(id), ownReport: (e, nodes) => storage.ownPages(e, nodes) };
  log.info(held, 'storage contracts loaded');
  authority = new Authority({ config: cfg, signer, log, metrics, rewards, history, storage });
  const server = createAuthorityServer(authority, reg, metrics, log, rewards, storage);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(err('DIR_LISTEN_FAILED', `cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${e.code ?? e.message}`)));
    server.listen(cfg.listen.port, cfg.listen.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  // SPEC.md §6.10: metrics only on the MetricsPort (127.0.0.1 unless the operator opens it).
  const metricsServer = await openMetricsPort(reg, cfg, log);
  const metricsPort = metricsServer ? (metricsServer.address() as { port: number }).port : null;
  authority.start();
  if (authority.published) rewards.onConsensus(authority.published.info);
  log.info({ identity: fp, host: cfg.listen.host, port, periodSeconds: cfg.periodSeconds, authorities: cfg.authorities.length, metricsPort }, 'authority listening');

  const a = authority;
  const stop = async () => {
    try {
      await a.stop();
      await rewards.close();
      await storage.close();
      await auditConnector.close();
      await closeServer(server);
      await history.flush();
      if (metricsServer) await closeServer(metricsServer);
    } finally {
      lock.release();
    }
  };
  return { stop, port, log };
}

function closeServer(s: http.Server): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}

export async function runAuthorityMain(o: RunOptions): Promise<void> {
  const d = await runAuthority(o);
  onShutdown(d.log, d.stop);
}

export async function keygenMain(o: { dataDir: string; certDays?: number; identityFile?: string; json?: boolean }): Promise<KeygenResult> {
  const r = await authorityKeygen(o.dataDir, { certDays: o.certDays, identityFile: o.identityFile });
  if (o.json) {
    console.log(JSON.stringify({ fingerprint: r.fingerprint, createdIdentity: r.createdIdentity, certValidUntil: new Date(r.certValidUntil).toISOString() }));
  } else {
    console.log(`${r.createdIdentity ? 'Created a new identity key' : 'Used the existing identity key'}; fingerprint:\n${r.fingerprint}`);
    console.log(`New signing key certified until ${new Date(r.certValidUntil).toISOString()}.`);
    console.log(`Keys are in ${o.dataDir}. Put the fingerprint in every authorities list (authorities[].identity).`);
  }
  return r;
}
