// bitcloud-storage wiring: config, logger, metrics registry, daemon, shutdown. No protocol logic.
import { createLogger } from '../src/ops/log';
import { createRegistry } from '../src/ops/metrics';
import { onShutdown } from '../src/ops/daemon';
import { loadStorageConfig, type StorageOverrides } from './config';
import { StorageDaemon } from './daemon';

export interface StorageRunOptions extends StorageOverrides { config: string; logLevel?: string }

export async function runStorage(o: StorageRunOptions): Promise<StorageDaemon> {
  const cfg = loadStorageConfig(o.config, o);
  const log = createLogger('bitcloud-storage', { level: o.logLevel ?? cfg.logLevel });
  const d = new StorageDaemon(cfg, log, createRegistry('storage'));
  onShutdown(log, () => d.stop());
  await d.start();
  return d;
}
