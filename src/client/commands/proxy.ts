// `bitcloud proxy [--config FILE] [--data-dir DIR] [--socks-port 9050] [--socks-host 127.0.0.1]
// [--allow-public-bind] [--metrics-port N] [--log-level LEVEL]`
// (SPEC.md §7b.11, §7.8): keep a verified consensus, build circuits, and serve SOCKS5 with
// every CONNECT going out through a 3-hop circuit. Wiring only: the protocol lives in the
// modules it starts. SIGTERM/SIGINT close everything cleanly.
import path from 'node:path';
import fsp from 'node:fs/promises';
import type http from 'node:http';
import type { CommandModule } from 'yargs';
import { CONFIG_OPTION } from './options';
import { errorCode } from '../../errors';
import { exitStatusOf } from '../exit-status';
import { clientConfigPath, loadDirClientConfig, readClientConfigFile } from '../../dir/client-config';
import { bool, int, oneOf, str } from '../../dir/config-fields';
import type { RelayCryptoAlgorithm } from '../../crypto/hop-crypto';
import { createLogger, type Logger } from '../../ops/log';
import { DEFAULT_METRICS_PORTS, createRegistry, openMetricsPort, type Registry } from '../../ops/metrics';
import { onShutdown } from '../../ops/daemon';
import { createLinkMetrics } from '../../link';
import { GuardSet } from '../guards';
import { BuildTimeoutEstimator } from '../build-timeout';
import { writeFileAtomic } from '../../ops/fsutil';
import { isolationKey } from '../isolation';
import { startSocks5Server, type Socks5Server } from '../socks5';
import { CircuitManager } from '../circuit-manager';
import { DirKeeper } from '../dir-keeper';
import { guardDirSources } from '../guard-dir';
import { CircuitBuilder } from '../circuit-builder';
import { Gateway } from '../gateway/gateway';
import { isBitcloudHost } from '../gateway/host';
import { storageNodesOf } from '../storage-client';
import { circuitStorageOpener } from '../storage-client-setup';

/** Observed circuit build times, in the client's data directory. */
export const BUILD_TIMES_FILE = 'build-times.json';

export interface ProxyOptions {
  config?: string;
  dataDir?: string;
  socksHost?: string;
  socksPort?: number;
  allowPublicBind?: boolean;
  metricsPort?: number;
  gatewayCacheBytes?: number;
  logLevel?: string;
  log?: Logger;
}

export interface ProxyHandle {
  socks: Socks5Server;
  manager: CircuitManager;
  dir: DirKeeper;
  gateway: Gateway;
  registry: Registry;
  metricsPort: number | null;
  close(): Promise<void>;
}

/** The client config keys this command reads beside the directory ones (defaults in one place). */
export interface ProxyConfig {
  socksHost: string;
  socksPort: number;
  /** SPEC.md §6.10 MetricsPort: /metrics on metricsHost (default 127.0.0.1):metricsPort; 0 = none. */
  metricsPort: number;
  /** The operator set metricsPort (then it must be free; the default may be skipped when taken). */
  metricsPortExplicit: boolean;
  metricsHost: string;
  enforceDistinctSubnets: boolean;
  maxCircuitDirtinessSeconds: number;
  preemptiveCircuits: number;
  /** SPEC.md §7b.11: open general circuits held at once; past it the least recently used idle one closes (default 256). */
  maxOpenCircuits: number;
  /** Bytes of decrypted chunks the .bitcloud gateway caches (SPEC.md §9.16.4; 0 = none). */
  gatewayCacheBytes: number;
  /** SPEC.md §5.6.1: the relay crypto the client's circuits negotiate ("tor1" default, or "cgo"). */
  relayCrypto: RelayCryptoAlgorithm;
  /** SPEC.md §7.7: streams to different destination ports never share a circuit (default false). */
  isolateDestPort: boolean;
  /** SPEC.md §7.7: streams to different destination hosts never share a circuit (default false). */
  isolateDestAddr: boolean;
}

/** The proxy's settings of the client config file; a key of none of its readers is refused (SPEC.md §11.5). */
export function readProxyConfig(file: string): ProxyConfig {
  const raw = readClientConfigFile(file);
  return {
    socksHost: str(raw.socksHost, 'socksHost', '127.0.0.1'),
    socksPort: int(raw.socksPort, 'socksPort', 0, 65535, 9050),
    metricsPort: int(raw.metricsPort, 'metricsPort', 0, 65535, DEFAULT_METRICS_PORTS.client),
    metricsPortExplicit: raw.metricsPort !== undefined,
    metricsHost: str(raw.metricsHost, 'metricsHost', '127.0.0.1'),
    enforceDistinctSubnets: bool(raw.enforceDistinctSubnets, 'enforceDistinctSubnets', true),
    maxCircuitDirtinessSeconds: int(raw.maxCircuitDirtinessSeconds, 'maxCircuitDirtinessSeconds', 1, 86_400, 600),
    preemptiveCircuits: int(raw.preemptiveCircuits, 'preemptiveCircuits', 0, 16, 2),
    maxOpenCircuits: int(raw.maxOpenCircuits, 'maxOpenCircuits', 1, Number.MAX_SAFE_INTEGER, 256),
    gatewayCacheBytes: int(raw.gatewayCacheBytes, 'gatewayCacheBytes', 0, 64 * 1024 ** 3, 256 * 1024 * 1024),
    relayCrypto: oneOf(raw.relayCrypto, 'relayCrypto', ['tor1', 'cgo'] as const, 'tor1'),
    isolateDestPort: bool(raw.isolateDestPort, 'isolateDestPort', false),
    isolateDestAddr: bool(raw.isolateDestAddr, 'isolateDestAddr', false),
  };
}

/**
 * SPEC.md §7.3: the learned build times from `<dataDir>/build-times.json`. A file that is missing,
 * unreadable or not JSON gives a fresh start (the last two with an IO_STATE_UNREADABLE or
 * IO_STATE_CORRUPT warning): the proxy must still start. Entries of the wrong shape are skipped by BuildTimeoutEstimator.fromJSON.
 */
export async function loadBuildTimes(file: string, log: Logger): Promise<BuildTimeoutEstimator> {
  let text: string;
  try { text = await fsp.readFile(file, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ code: 'IO_STATE_UNREADABLE', err: (e as Error).message }, `could not read ${file}; starting with fresh build times`);
    return new BuildTimeoutEstimator();
  }
  let state: unknown;
  try { state = JSON.parse(text); } catch {
    log.warn({ code: 'IO_STATE_CORRUPT' }, `${file} is not JSON; starting with fresh build times`);
    return new BuildTimeoutEstimator();
  }
  return BuildTimeoutEstimator.fromJSON(state);
}

/** Start the proxy in this process (the command, the local network and tests use it). */
export async function startProxy(o: ProxyOptions): Promise<ProxyHandle> {
  const file = clientConfigPath(o.config);
  const dirCfg = loadDirClientConfig(file, { dataDir: o.dataDir });
  const cfg = readProxyConfig(file);
  const log = o.log ?? createLogger('bitcloud-proxy', { level: o.logLevel });
  const registry = createRegistry('client');

  const dir = new DirKeeper({ authorities: dirCfg.authorities, mirrors: dirCfg.mirrors, dataDir: dirCfg.dataDir, log, registry });
  const saveGuards = () => guards.save().catch((e) => log.warn({ err: (e as Error).message }, 'could not save guard state'));
  // SPEC.md §7.2 (State): guards just sampled are saved at once, so that the client's other
  // processes (a `bitcloud get` beside the proxy) find them instead of sampling their own.
  const guards = GuardSet.load(path.join(dirCfg.dataDir, 'state.json'), Date.now, { onSampled: () => void saveGuards() });
  // SPEC.md §7.3: learned build times survive restarts (as Tor keeps them in its state file).
  const buildTimesFile = path.join(dirCfg.dataDir, BUILD_TIMES_FILE);
  const buildTimeout = await loadBuildTimes(buildTimesFile, log);
  const saveBuildTimes = () => writeFileAtomic(buildTimesFile, JSON.stringify(buildTimeout.toJSON()), 0o600).catch((e) => log.warn({ err: (e as Error).message }, 'could not save build times'));
  for (const w of guards.warnings) log.warn(w);
  // What is running so far, closed in reverse order when a later step fails: a proxy that
  // reports a failed start serves nothing (no SOCKS port, no timers, no links).
  const started: (() => unknown)[] = [];
  try {
    const manager = new CircuitManager({
      relays: () => dir.relays(),
      guards,
      buildTimeout,
      enforceDistinctSubnets: cfg.enforceDistinctSubnets,
      relayCrypto: cfg.relayCrypto,
      maxDirtinessMs: cfg.maxCircuitDirtinessSeconds * 1000,
      preemptiveCircuits: cfg.preemptiveCircuits,
      maxOpenCircuits: cfg.maxOpenCircuits,
      linkMetrics: createLinkMetrics(registry),
      registry,
      log,
    });
    started.push(() => manager.close());
    // SPEC.md §6.10.1: once bootstrapped, the consensus comes through the guards' mirrors only. The
    // one-hop directory circuits have a builder of their own so they are not counted as (or mixed
    // with) the circuits that carry the user's streams, but they ride the manager's guard links:
    // one link per guard, closed when idle (§7b.11).
    const dirBuilder = new CircuitBuilder({ relays: () => dir.relays(), guards, enforceDistinctSubnets: cfg.enforceDistinctSubnets, relayCrypto: cfg.relayCrypto, registry, log, linksFrom: manager.builder });
    started.push(() => dirBuilder.close());
    dir.useGuards(() => guardDirSources(dirBuilder, guards, dir.relays()));
    started.push(() => dir.stop());
    await dir.start();
    if (!dir.consensus()) log.warn('no valid consensus yet: SOCKS requests wait up to 30 s for one (SPEC.md §7.1), then fail');
    const saveState = setInterval(() => {
      if (guards.dirty) void saveGuards();
      void saveBuildTimes();
    }, 60_000);
    saveState.unref();
    started.push(() => clearInterval(saveState));

    // SPEC.md §9.16: `.bitcloud` hosts are answered here, from storage over circuits, never by an exit.
    const gateway = new Gateway({
      nodes: () => storageNodesOf(dir.relays() ?? []),
      // One circuit per storage node: guard → middle → the node itself, then BEGIN_STORAGE (§9.13.1);
      // a hidden node (§9.21) by rendezvous, as for `bitcloud get`.
      open: circuitStorageOpener(manager, () => dir.relays()),
      cacheBytes: o.gatewayCacheBytes ?? cfg.gatewayCacheBytes,
      log, registry,
    });
    started.push(() => gateway.close());

    // SPEC.md §7.7: besides the SOCKS credentials, what else separates streams (Tor's
    // IsolateDestPort / IsolateDestAddr; both off by default, as there).
    const isolateBy = { isolateDestPort: cfg.isolateDestPort, isolateDestAddr: cfg.isolateDestAddr };
    const socks = await startSocks5Server({
      host: o.socksHost ?? cfg.socksHost,
      port: o.socksPort ?? cfg.socksPort,
      allowPublicBind: o.allowPublicBind,
      onConnect: async (req, ctx) => isBitcloudHost(req.host) ? gateway.connect(req.host) : manager.connect({ host: req.host, port: req.port, isolation: isolationKey(req, isolateBy) }, ctx.signal),
      log,
      metrics: registry,
    });
    started.push(() => socks.close());
    // SPEC.md §6.10 MetricsPort.
    const metrics: http.Server | null = await openMetricsPort(registry, {
      metricsPort: o.metricsPort ?? cfg.metricsPort, metricsHost: cfg.metricsHost,
      metricsPortExplicit: o.metricsPort !== undefined || cfg.metricsPortExplicit,
    }, log);
    const metricsPort = metrics ? (metrics.address() as { port: number }).port : null;
    log.info({ socks: `${socks.address.host}:${socks.address.port}`, metricsPort }, 'SOCKS5 proxy listening');

    let closed = false;
    return {
      socks, manager, dir, gateway, registry, metricsPort,
      async close() {
        if (closed) return;
        closed = true;
        clearInterval(saveState);
        dir.stop();
        await socks.close();
        await gateway.close();
        await manager.close();
        await dirBuilder.close();
        if (metrics) await new Promise<void>((r) => metrics!.close(() => r()));
        // SPEC.md §7.2: a guard state that cannot be written is logged; the shutdown goes on.
        if (guards.dirty) {
          try { guards.saveSync(); } catch (e) { log.warn({ err: (e as Error).message }, 'could not save guard state'); }
        }
        await saveBuildTimes();
      },
    };
  } catch (e) {
    for (const close of started.reverse()) await Promise.resolve().then(close).catch(() => {});
    throw e;
  }
}

type Args = { config?: string; 'data-dir'?: string; 'socks-port'?: number; 'socks-host'?: string; 'allow-public-bind': boolean; 'metrics-port'?: number; 'log-level'?: string };

/** The yargs command, registered in src/bin/bitcloud.ts. */
export const proxyCommandModule: CommandModule<object, Args> = {
  command: 'proxy',
  describe: 'Run the SOCKS5 proxy: every connection leaves through a 3-hop circuit (use curl --socks5-hostname).',
  builder: (y) => y
    .option('config', CONFIG_OPTION)
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config (consensus cache, guard state)' })
    .option('socks-port', { type: 'number', describe: 'SOCKS5 port (default 9050; 0 = any free port)' })
    .option('socks-host', { type: 'string', describe: 'SOCKS5 address (default 127.0.0.1; others need --allow-public-bind)' })
    .option('allow-public-bind', { type: 'boolean', default: false, describe: 'Allow a non-loopback SOCKS address (anyone reaching it can use your client)' })
    .option('metrics-port', { type: 'number', describe: 'Serve Prometheus /metrics on 127.0.0.1:PORT' })
    .option('log-level', { type: 'string', describe: 'pino level: debug, info, warn, error' }) as never,
  handler: async (a) => {
    let log: Logger | undefined;
    try {
      log = createLogger('bitcloud-proxy', { level: a['log-level'] });
      const h = await startProxy({
        config: a.config, dataDir: a['data-dir'], socksPort: a['socks-port'], socksHost: a['socks-host'],
        allowPublicBind: a['allow-public-bind'], metricsPort: a['metrics-port'], log,
      });
      onShutdown(log, () => h.close());
    } catch (e) {
      process.stderr.write(`bitcloud proxy: ${(e as Error).message}\n`);
      process.exitCode = exitStatusOf(errorCode(e));
    }
  },
};
