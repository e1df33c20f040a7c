// bitcloud-relay wiring: config, logger, metrics, daemon, shutdown. No protocol logic.
import { createLogger } from '../src/ops/log';
import { createRegistry } from '../src/ops/metrics';
import { onShutdown, startWithDataDir } from '../src/ops/daemon';
import { keepYoungGenerationSmall } from '../src/ops/young-gen';
import { keepOldGenerationHeadroom } from '../src/ops/old-gen';
import { loadRelayConfig, type RelayOverrides } from './config';
import { RelayDaemon, idleChannelHooks, type RelayHooks } from './daemon';

export interface RelayRunOptions extends RelayOverrides { config: string; logLevel?: string }

export async function runRelay(o: RelayRunOptions, hooks: RelayHooks = idleChannelHooks): Promise<RelayDaemon> {
  const cfg = loadRelayConfig(o.config, o);
  // SPEC.md §11.6: a forwarding relay keeps V8's young generation at its starting size.
  if (!cfg.roles.includes('exit')) keepYoungGenerationSmall();
  // SPEC.md §11.6: and its old generation room to grow (no full collection every few MB).
  keepOldGenerationHeadroom();
  const log = createLogger('bitcloud-relay', { level: o.logLevel ?? cfg.logLevel });
  // SPEC.md §3.3 step 1a: the data folder's lock first, held for the daemon's life.
  return startWithDataDir(cfg.dataDir, log, async (lock) => {
    const d = new RelayDaemon(cfg, log, createRegistry('relay'), hooks);
    await d.start();
    // Released after the last state write of stop().
    onShutdown(log, async () => { try { await d.stop(); } finally { lock.release(); } });
    return d;
  });
}
