// Process plumbing shared by every daemon: clean shutdown on SIGTERM/SIGINT.
import type { Logger } from './log';

/** Run `stop` once on SIGTERM or SIGINT, then exit 0 (1 if stopping failed). */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => { log.error('shutdown timed out'); process.exit(1); }, 10_000);
    force.unref();
    stop().then(() => { log.flush?.(); process.exit(0); }, (e) => { log.error({ err: e }, 'error during shutdown'); process.exit(1); });
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
