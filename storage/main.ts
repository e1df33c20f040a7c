// bitcloud-storage wiring: config, logger, metrics registry, daemon, shutdown. No protocol logic.
import { createLogger, type Logger } from '../src/ops/log';
import type { DataDirLock } from '../src/ops/file-lock';
import { createRegistry } from '../src/ops/metrics';
import { onShutdown, startWithDataDir } from '../src/ops/daemon';
import { keepOldGenerationHeadroom } from '../src/ops/old-gen';
import { loadStorageConfig, type StorageConfig, type StorageOverrides } from './config';
import { StorageDaemon } from './daemon';
import { makePolicyCheck } from '../src/moderation/enforce';
import { PolicySubscriptions } from '../src/moderation/subscription';
import { authoritySource } from '../src/moderation/sources';
import { dhtSource } from '../src/moderation/dht';
import { mirrorPolicySource } from '../src/hidden/policy-source';

export interface StorageRunOptions extends StorageOverrides { config: string; logLevel?: string }

export async function runStorage(o: StorageRunOptions): Promise<StorageDaemon> {
  const cfg = loadStorageConfig(o.config, o);
  // SPEC.md §11.6: room for the old generation to grow (no full collection every few MB moved).
  keepOldGenerationHeadroom();
  const log = createLogger('bitcloud-storage', { level: o.logLevel ?? cfg.logLevel });
  // SPEC.md §3.3 step 1a: the data folder's lock before anything in it is read (policy-status.json,
  // §10.6.1, included), held for the daemon's life.
  return startWithDataDir(cfg.dataDir, log, (lock) => startStorage(cfg, log, lock));
}

async function startStorage(cfg: StorageConfig, log: Logger, lock: DataDirLock): Promise<StorageDaemon> {
  const registry = createRegistry('storage');
  // Moderation (SPEC.md §10.6): the subscribed policies, fetched from the authorities (and the DHT
  // once it runs), enforced on every request.
  // A hidden node asks relay mirrors over circuits instead (SPEC.md §9.21.8): no connection of its own to an authority.
  const holder: { d: StorageDaemon | null } = { d: null };
  const sources = cfg.hidden ? [mirrorPolicySource(() => holder.d?.mirrorCircuits() ?? null)] : cfg.authorities.map((a) => authoritySource(a.url));
  const subs = PolicySubscriptions.open({
    moderators: cfg.moderators, unmoderated: cfg.unmoderated, approvedOnly: cfg.approvedOnly, sources,
    dataDir: cfg.dataDir, refreshMs: cfg.policyRefreshSeconds * 1000, log, registry,
  });
  const d = holder.d = new StorageDaemon(cfg, log, registry, { policyCheck: makePolicyCheck(subs) });
  // The lock goes after the last state write of stop().
  onShutdown(log, async () => { try { await subs.close(); await d.stop(); } finally { lock.release(); } });
  await d.start();
  const dht = d.dhtInstance?.raw;
  if (dht) subs.addSource(dhtSource(dht, { registry }));
  log.info({ unmoderated: subs.unmoderated, moderators: subs.moderators, approvedOnly: subs.approvedOnly }, subs.unmoderated ? 'unmoderated: storing encrypted content from circuits only' : 'enforcing moderator policies');
  void subs.start();
  return d;
}
