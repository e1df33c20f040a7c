// The authority's configuration: one JSON file plus flags, defaults in one place, validated at
// start with messages that name the bad key (SPEC.md §11.5). Documented in docs/operators-directory.md.
import path from 'node:path';
import { parseAuthorityList, type AuthorityInfo } from '../src/dir/authorities';
import {
  bool, configError, dataDirField, fingerprintField, int, noUnknownKeys, obj, optObj, readJsonConfig, str,
} from '../src/dir/config-fields';
import { parsePowParams, type PowParams } from '../src/dir/identity-pow';
import { parseConsensusParams } from '../src/dir/consensus-params';
import type { ParamMsg } from '../src/wire/docs';
import { CONSENSUS_SKEW_MS } from '../src/dir/consensus';
import { DEFAULT_UNMEASURED_CAP_KBPS } from './bandwidth';
import { DEFAULT_PROBE_CONFIG, PROBE_MAX_IN_FLIGHT, type ProbeConfig } from './probes';
import { DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORTS } from '../src/ops/metrics';

export interface AuthorityConfig {
  /** Own identity fingerprint; must appear in `authorities`. */
  identity: string;
  dataDir: string;
  listen: { host: string; port: number };
  /** Voting period, seconds (production 3600; local network ~15; tests ~5). */
  periodSeconds: number;
  /** valid_until = valid_after + this many periods. */
  consensusLifetimePeriods: number;
  authorities: AuthorityInfo[];
  rateLimit: { uploadsPerMinute: number; burst: number };
  /**
   * SPEC.md §6.10/§8.4: receipt uploads have their own per-address token bucket, so that
   * descriptor uploads (60/min) and receipt batches (every node, every epoch, every authority,
   * retried) never starve each other. Default 600/min, burst 120.
   */
  receiptRateLimit: { uploadsPerMinute: number; burst: number };
  /**
   * SPEC.md §8.5: the measurement bounds. "default" = DEFAULT_BOUNDS (public network); "local" =
   * LOCAL_NETWORK_BOUNDS (every node on 127.0.0.1, all new: only the family and declared bounds).
   */
  bandwidthBounds: 'default' | 'local';
  /**
   * SPEC.md §8.5: which rule turns receipts into proven cells: "pair" (§8.5.2, the default: per-pair
   * allowances with owed state carried across epochs) or "dispersion" (§8.5.1, kept for comparison).
   * Every authority of a network must run the same rule (the consensus takes the median of theirs).
   */
  bandwidthRule: 'pair' | 'dispersion';
  reachability: { timeoutMs: number; concurrency: number };
  /** KB/s cap for relays nobody has measured (SPEC.md §6.6). */
  unmeasuredCapKBps: number;
  /** A relay reachable without a break for this long is Stable. Default: 2 periods. */
  stableAfterSeconds: number;
  clockSkewSeconds: number;
  /**
   * SPEC.md §6.10 "Connection and body bounds": open connections of the HTTP port at most (default
   * 512), the configured authorities' addresses not counted.
   */
  httpMaxConnections: number;
  /**
   * SPEC.md §6.10 "Connection and body bounds": open connections of the HTTP port per address key at
   * most (default 64; the configured authorities' addresses are not limited). A relay's mirror
   * carries all its clients under its one address: this is per relay.
   */
  httpMaxConnectionsPerAddress: number;
  logLevel: string;
  /** SPEC.md §6.10 MetricsPort: /metrics on metricsHost:metricsPort only, never on `listen`; 0 = not served. */
  metricsPort: number;
  /** The operator set metricsPort (then it must be free; the default may be skipped when taken). */
  metricsPortExplicit: boolean;
  metricsHost: string;
  /**
   * SPEC.md §6.4: this authority serves a test network (every node on loopback or a private
   * network): descriptors with such addresses are accepted. Off, they are refused.
   */
  testNetwork: boolean;
  /**
   * SPEC.md §6.5: the most relays this authority's vote lists at one IPv4 address (Tor's
   * AuthDirMaxServersPerAddr); 0 = no limit. Default 2, 0 with `testNetwork`.
   */
  maxRelaysPerAddress: number;
  /** SPEC.md §6.4.1: minimum identity proof parameters a descriptor must carry ("default" | "local" | object). */
  identityPow: PowParams;
  /**
   * SPEC.md §6.5: the consensus parameters this authority votes (`consensusParams`, name → integer,
   * default none), sorted by name. §8.11.3: `funding-v2`.
   */
  consensusParams: ParamMsg[];
  /** SPEC.md §8.12: the capacity probes this authority runs (off unless `probe.enabled`). */
  probe: ProbeConfig;
}

/** Every top-level key of the file (SPEC.md §11.5: any other is refused, `_`/`#` comments aside). */
const KNOWN_KEYS = ['identity', 'dataDir', 'listen', 'period', 'consensusLifetimePeriods', 'authorities', 'rateLimit',
  'receiptRateLimit', 'bandwidthBounds', 'bandwidthRule', 'reachability', 'unmeasuredCapKBps', 'stableAfterSeconds', 'clockSkewSeconds', 'httpMaxConnections', 'httpMaxConnectionsPerAddress', 'logLevel',
  'metricsPort', 'metricsHost', 'testNetwork', 'maxRelaysPerAddress', 'identityPow', 'consensusParams', 'probe'] as const;

export const DEFAULT_PERIOD_SECONDS = 3600;
/** SPEC.md §6.5: the default of `maxRelaysPerAddress` (Tor's AuthDirMaxServersPerAddr). */
export const DEFAULT_MAX_RELAYS_PER_ADDRESS = 2;
/** SPEC.md §6.10 "Connection and body bounds": the default of `httpMaxConnections`. */
export const DEFAULT_HTTP_MAX_CONNECTIONS = 512;
/** SPEC.md §6.10 "Connection and body bounds": the default of `httpMaxConnectionsPerAddress`. */
export const DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS = 64;

/** Validate a parsed config object. `overrides` come from command-line flags. */
export function parseAuthorityConfig(raw: Record<string, unknown>, baseDir: string, overrides: { dataDir?: string; period?: number; metricsPort?: number } = {}, file?: string): AuthorityConfig {
  noUnknownKeys(raw, KNOWN_KEYS, '', file);
  const identity = fingerprintField(raw.identity, 'identity');
  const authorities = parseAuthorityList(raw.authorities, 'authorities', file);
  if (!authorities.some((a) => a.fingerprint === identity)) configError('identity', 'this authority is not in the authorities list');
  const listen = obj(raw.listen, 'listen');
  noUnknownKeys(listen, ['host', 'port'], 'listen', file);
  const periodSeconds = overrides.period ?? int(raw.period, 'period', 2, 86_400, DEFAULT_PERIOD_SECONDS);
  const rl = optObj(raw.rateLimit, 'rateLimit');
  noUnknownKeys(rl, ['uploadsPerMinute', 'burst'], 'rateLimit', file);
  const rr = optObj(raw.receiptRateLimit, 'receiptRateLimit');
  noUnknownKeys(rr, ['uploadsPerMinute', 'burst'], 'receiptRateLimit', file);
  const bandwidthBounds = str(raw.bandwidthBounds, 'bandwidthBounds', 'default');
  if (bandwidthBounds !== 'default' && bandwidthBounds !== 'local') configError('bandwidthBounds', 'must be "default" or "local"');
  const bandwidthRule = str(raw.bandwidthRule, 'bandwidthRule', 'pair');
  if (bandwidthRule !== 'pair' && bandwidthRule !== 'dispersion') configError('bandwidthRule', 'must be "pair" or "dispersion"');
  const re = optObj(raw.reachability, 'reachability');
  noUnknownKeys(re, ['timeoutMs', 'concurrency'], 'reachability', file);
  const pr = optObj(raw.probe, 'probe');
  noUnknownKeys(pr, ['enabled', 'seconds', 'maxBytes', 'inFlight', 'parallel', 'keepPeriods', 'holdPeriods'], 'probe', file);
  const D = DEFAULT_PROBE_CONFIG;
  const probe: ProbeConfig = {
    // SPEC.md §8.12: on by default on the public network; a test network (`testNetwork`) probes only when asked.
    enabled: bool(pr.enabled, 'probe.enabled', !bool(raw.testNetwork, 'testNetwork', false)),
    seconds: int(pr.seconds, 'probe.seconds', 1, 600, D.seconds),
    maxBytes: int(pr.maxBytes, 'probe.maxBytes', 514, 2 ** 40, D.maxBytes),
    inFlight: int(pr.inFlight, 'probe.inFlight', 1, PROBE_MAX_IN_FLIGHT, D.inFlight),
    parallel: int(pr.parallel, 'probe.parallel', 1, 64, D.parallel),
    keepPeriods: int(pr.keepPeriods, 'probe.keepPeriods', 1, 24, D.keepPeriods),
    holdPeriods: int(pr.holdPeriods, 'probe.holdPeriods', 1, 168, D.holdPeriods),
  };
  return {
    identity,
    dataDir: dataDirField(raw, baseDir, overrides.dataDir),
    listen: { host: str(listen.host, 'listen.host', '127.0.0.1'), port: int(listen.port, 'listen.port', 0, 65535) },
    periodSeconds,
    consensusLifetimePeriods: int(raw.consensusLifetimePeriods, 'consensusLifetimePeriods', 2, 24, 3),
    authorities,
    rateLimit: {
      uploadsPerMinute: int(rl.uploadsPerMinute, 'rateLimit.uploadsPerMinute', 1, 1_000_000, 60),
      burst: int(rl.burst, 'rateLimit.burst', 1, 1_000_000, 20),
    },
    receiptRateLimit: {
      uploadsPerMinute: int(rr.uploadsPerMinute, 'receiptRateLimit.uploadsPerMinute', 1, 1_000_000, 600),
      burst: int(rr.burst, 'receiptRateLimit.burst', 1, 1_000_000, 120),
    },
    bandwidthBounds,
    bandwidthRule,
    reachability: {
      timeoutMs: int(re.timeoutMs, 'reachability.timeoutMs', 100, 120_000, 5000),
      concurrency: int(re.concurrency, 'reachability.concurrency', 1, 1024, 16),
    },
    unmeasuredCapKBps: int(raw.unmeasuredCapKBps, 'unmeasuredCapKBps', 1, 0xffff_ffff, DEFAULT_UNMEASURED_CAP_KBPS),
    stableAfterSeconds: int(raw.stableAfterSeconds, 'stableAfterSeconds', 0, 365 * 86_400, 2 * periodSeconds),
    clockSkewSeconds: int(raw.clockSkewSeconds, 'clockSkewSeconds', 0, 3600, CONSENSUS_SKEW_MS / 1000),
    httpMaxConnections: int(raw.httpMaxConnections, 'httpMaxConnections', 16, 1_000_000, DEFAULT_HTTP_MAX_CONNECTIONS),
    httpMaxConnectionsPerAddress: int(raw.httpMaxConnectionsPerAddress, 'httpMaxConnectionsPerAddress', 1, 1_000_000, DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS),
    logLevel: str(raw.logLevel, 'logLevel', 'info'),
    metricsPort: overrides.metricsPort ?? int(raw.metricsPort, 'metricsPort', 0, 65535, DEFAULT_METRICS_PORTS.authority),
    metricsPortExplicit: overrides.metricsPort !== undefined || raw.metricsPort !== undefined,
    metricsHost: str(raw.metricsHost, 'metricsHost', DEFAULT_METRICS_HOST),
    testNetwork: bool(raw.testNetwork, 'testNetwork', false),
    // SPEC.md §6.5: a test network runs all its nodes on one or a few addresses.
    maxRelaysPerAddress: int(raw.maxRelaysPerAddress, 'maxRelaysPerAddress', 0, 1_000_000, bool(raw.testNetwork, 'testNetwork', false) ? 0 : DEFAULT_MAX_RELAYS_PER_ADDRESS),
    identityPow: parsePowParams(raw.identityPow, 'identityPow', file),
    consensusParams: parseConsensusParams(raw.consensusParams),
    probe,
  };
}

export function loadAuthorityConfig(file: string, overrides: { dataDir?: string; period?: number; metricsPort?: number } = {}): AuthorityConfig {
  return parseAuthorityConfig(readJsonConfig(file), path.dirname(path.resolve(file)), overrides, file);
}
