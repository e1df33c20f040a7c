// The relay's configuration: one JSON file plus flags; defaults in one place; messages name the
// bad key (SPEC.md §11.5).
import { parsePowParams, type PowParams } from '../src/dir/identity-pow';
import path from 'node:path';
import { parseReceiptSettings, type ReceiptSettings } from '../src/bandwidth/node-bandwidth';
import { parseAuthorityList, type AuthorityInfo } from '../src/dir/authorities';
import {
  bool, configError, dataDirField, descriptorTimingFields, familyField, int, moderatorsField, nodeNameFields, noUnknownKeys, num, optObj, readJsonConfig, str, strList,
} from '../src/dir/config-fields';
import { parseExitPolicy, formatExitPolicy, REJECT_ALL, DEFAULT_EXIT_POLICY, REJECT_PRIVATE_RULE } from '../src/dir/exit-policy';
import type { Role } from '../src/dir/types';
import { LIMITS } from '../src/wire/docs';
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from '../src/circuit/dos-limits';
import { DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORTS } from '../src/ops/metrics';
import { parseLinkWarming, type LinkWarmingSettings } from './link-warming';

export interface RelayConfig {
  dataDir: string;
  nickname: string;
  /** Advertised IPv4 address. */
  address: string;
  /** Address the listeners bind to (default: `address`). */
  listenHost: string;
  orPort: number;
  /** 0: no directory mirror (and no HTTP server). */
  dirPort: number;
  /**
   * SPEC.md §6.10 "Connection and body bounds": open connections of the dir port at most (default
   * 512), exempt addresses (the configured authorities', the relay's own BEGIN_DIR splices) not counted.
   */
  dirMaxConnections: number;
  /** SPEC.md §6.10 "Connection and body bounds": open connections of the dir port per address key at most (default 64). */
  dirMaxConnectionsPerAddress: number;
  storagePort: number;
  /** Declared bandwidth, bytes per second. */
  bandwidth: number;
  roles: Role[];
  /**
   * The exit policy as published and enforced: for an exit with `exitPolicyRejectPrivate` (the
   * default), the configured rules preceded by `reject private:*` (SPEC.md §7.6.1).
   */
  exitPolicy: string[];
  /** SPEC.md §7.6.1: `reject private:*` goes before an exit's configured rules (Tor's ExitPolicyRejectPrivate). Default true. */
  exitPolicyRejectPrivate: boolean;
  family: string[];
  moderators: string[];
  authorities: AuthorityInfo[];
  publishIntervalSeconds: number;
  descriptorLifetimeSeconds: number;
  mirrorIntervalSeconds: number;
  logLevel: string;
  /** Resource limits (SPEC.md §7b.9); every key absent from the file has its DEFAULT_RELAY_LIMITS value. */
  limits: RelayLimits;
  /** Proof-of-bandwidth receipt timing (SPEC.md §8.3); see docs/operators-directory.md. */
  receipts: ReceiptSettings;
  /** SPEC.md §6.10 MetricsPort: /metrics on metricsHost:metricsPort only; 0 = not served. */
  metricsPort: number;
  /** The operator set metricsPort (then it must be free; the default may be skipped when taken). */
  metricsPortExplicit: boolean;
  metricsHost: string;
  /** SPEC.md §3.3: onion key lifetime; rotated while running. Default 7 days. */
  onionKeyRotationSeconds: number;
  /** SPEC.md §6.4.1: identity proof parameters to mine with ("default" | "local" | object) while the consensus held carries none (its parameters win). */
  identityPow: PowParams;
  /** SPEC.md §1.9: relay links opened ahead of circuits, and the idle timeout of relay links. */
  linkWarming: LinkWarmingSettings;
}

/** Every top-level key of the file (SPEC.md §11.5: any other is refused, `_`/`#` comments aside). */
const KNOWN_KEYS = ['dataDir', 'nickname', 'address', 'listenHost', 'orPort', 'dirPort', 'dirMaxConnections', 'dirMaxConnectionsPerAddress', 'storagePort', 'bandwidth', 'roles',
  'exitPolicy', 'exitPolicyRejectPrivate', 'family', 'moderators', 'authorities', 'publishIntervalSeconds', 'descriptorLifetimeSeconds',
  'mirrorIntervalSeconds', 'logLevel', 'limits', 'receipts', 'metricsPort', 'metricsHost', 'onionKeyRotationSeconds', 'identityPow', 'linkWarming'] as const;

/** SPEC.md §6.10 "Connection and body bounds": the default of `dirMaxConnections`. */
export const DEFAULT_DIR_MAX_CONNECTIONS = 512;
/** SPEC.md §6.10 "Connection and body bounds": the default of `dirMaxConnectionsPerAddress`. */
export const DEFAULT_DIR_MAX_CONNECTIONS_PER_ADDRESS = 64;

/**
 * The accepted range of each `limits` key (defaults live in DEFAULT_RELAY_LIMITS, src/circuit/dos-limits.ts).
 * The per-circuit queue must hold more than one circuit window (1000 cells), or a sender that
 * fills its window toward a congested link would get its circuit killed.
 */
const LIMIT_RANGES: { [K in keyof RelayLimits]: { min: number; max: number; integer: boolean } } = {
  circuitRate: { min: 0, max: 1e6, integer: false },
  circuitBurst: { min: 1, max: 1e9, integer: true },
  circuitMinConnections: { min: 0, max: 1e6, integer: true },
  maxConnectionsPerAddress: { min: 1, max: 1e6, integer: true },
  maxCircuitsPerLink: { min: 1, max: 2 ** 31, integer: true },
  maxQueuedCellsPerCircuit: { min: 1000, max: 1e7, integer: true },
  maxQueuedBytes: { min: 1024 * 1024, max: 2 ** 40, integer: true },
  maxStreamsPerCircuit: { min: 1, max: 65535, integer: true },
  exitConnectTimeoutMs: { min: 100, max: 600_000, integer: true },
  maxResolvesPerCircuit: { min: 1, max: 65535, integer: true },
  maxConcurrentResolves: { min: 1, max: 1e6, integer: true },
  maxExitConnections: { min: 1, max: 1e7, integer: true },
  maxDirStreams: { min: 1, max: 1e7, integer: true },
  streamCreationRate: { min: 0, max: 1e6, integer: false },
  streamCreationBurst: { min: 0, max: 1e9, integer: true },
};

/** `limits`: an optional object of RelayLimits keys; unknown keys and bad values are named. */
export function parseRelayLimits(v: unknown, key = 'limits', file?: string): RelayLimits {
  const raw = optObj(v, key);
  noUnknownKeys(raw, Object.keys(LIMIT_RANGES), key, file);
  const out: RelayLimits = { ...DEFAULT_RELAY_LIMITS };
  for (const k of Object.keys(LIMIT_RANGES) as Array<keyof RelayLimits>) {
    const r = LIMIT_RANGES[k];
    out[k] = (r.integer ? int : num)(raw[k], `${key}.${k}`, r.min, r.max, DEFAULT_RELAY_LIMITS[k]);
  }
  return out;
}

export interface RelayOverrides { dataDir?: string; orPort?: number; dirPort?: number; metricsPort?: number; nickname?: string }

/**
 * The roles a relay's operator may set (SPEC.md §6.4). `hidden` (8) is not one: a hidden storage
 * node is a storage node configured with `hidden` (§9.21.1), and a relay descriptor with it and an
 * address is refused by every authority.
 */
export const RELAY_CONFIG_ROLES: readonly Role[] = ['relay', 'exit', 'storage'];

export function parseRelayConfig(raw: Record<string, unknown>, baseDir: string, o: RelayOverrides = {}, file?: string): RelayConfig {
  noUnknownKeys(raw, KNOWN_KEYS, '', file);
  const names = nodeNameFields(raw, o.nickname);
  const roles = strList(raw.roles, 'roles', ['relay']).map((r, i) => {
    if (!(RELAY_CONFIG_ROLES as readonly string[]).includes(r)) configError(`roles[${i}]`, `must be one of ${RELAY_CONFIG_ROLES.join(', ')}`);
    return r as Role;
  });
  if (roles.length === 0) configError('roles', 'must name at least one role');
  const isExit = roles.includes('exit');
  let exitPolicy = strList(raw.exitPolicy, 'exitPolicy', formatExitPolicy(isExit ? DEFAULT_EXIT_POLICY : REJECT_ALL));
  try {
    exitPolicy = formatExitPolicy(parseExitPolicy(exitPolicy));
  } catch (e) {
    configError('exitPolicy', (e as Error).message);
  }
  // SPEC.md §7.6.1: an exit's own rules come after `reject private:*` (as Tor's
  // ExitPolicyRejectPrivate), so that a policy written without it ("accept *:443") never reaches
  // the exit's loopback, its local networks, link-local metadata services or its own address.
  const exitPolicyRejectPrivate = bool(raw.exitPolicyRejectPrivate, 'exitPolicyRejectPrivate', true);
  const implied = isExit && exitPolicyRejectPrivate && exitPolicy[0] !== REJECT_PRIVATE_RULE;
  if (implied) exitPolicy = [REJECT_PRIVATE_RULE, ...exitPolicy];
  // SPEC.md §6.4: a descriptor lists at most 64 rules; authorities would refuse one with more.
  if (exitPolicy.length > LIMITS.exitPolicyRules) {
    configError('exitPolicy', `at most ${LIMITS.exitPolicyRules} rules (a descriptor lists at most ${LIMITS.exitPolicyRules}), ${exitPolicy.length} given${implied ? ` (with the "${REJECT_PRIVATE_RULE}" that exitPolicyRejectPrivate puts first)` : ''}`);
  }
  const storagePort = int(raw.storagePort, 'storagePort', 0, 65535, 0);
  if (roles.includes('storage') && storagePort === 0) configError('storagePort', 'the storage role needs a storage port');
  const { publishIntervalSeconds, descriptorLifetimeSeconds } = descriptorTimingFields(raw);
  return {
    dataDir: dataDirField(raw, baseDir, o.dataDir),
    ...names,
    orPort: o.orPort ?? int(raw.orPort, 'orPort', 0, 65535),
    dirPort: o.dirPort ?? int(raw.dirPort, 'dirPort', 0, 65535, 0),
    // SPEC.md §6.10 "Connection and body bounds": the same ranges as an authority's httpMaxConnections*.
    dirMaxConnections: int(raw.dirMaxConnections, 'dirMaxConnections', 16, 1_000_000, DEFAULT_DIR_MAX_CONNECTIONS),
    dirMaxConnectionsPerAddress: int(raw.dirMaxConnectionsPerAddress, 'dirMaxConnectionsPerAddress', 1, 1_000_000, DEFAULT_DIR_MAX_CONNECTIONS_PER_ADDRESS),
    storagePort,
    bandwidth: int(raw.bandwidth, 'bandwidth', 0, 10_000_000_000, 1_000_000),
    roles,
    exitPolicy,
    exitPolicyRejectPrivate,
    family: familyField(raw.family),
    moderators: moderatorsField(raw.moderators),
    authorities: parseAuthorityList(raw.authorities, 'authorities', file),
    publishIntervalSeconds,
    descriptorLifetimeSeconds,
    mirrorIntervalSeconds: int(raw.mirrorIntervalSeconds, 'mirrorIntervalSeconds', 1, 86_400, 60),
    logLevel: str(raw.logLevel, 'logLevel', 'info'),
    limits: parseRelayLimits(raw.limits, 'limits', file),
    receipts: parseReceiptSettings(raw.receipts, 'receipts', file),
    metricsPort: o.metricsPort ?? int(raw.metricsPort, 'metricsPort', 0, 65535, DEFAULT_METRICS_PORTS.relay),
    metricsPortExplicit: o.metricsPort !== undefined || raw.metricsPort !== undefined,
    metricsHost: str(raw.metricsHost, 'metricsHost', DEFAULT_METRICS_HOST),
    onionKeyRotationSeconds: int(raw.onionKeyRotationSeconds, 'onionKeyRotationSeconds', 2, 365 * 86_400, 7 * 86_400),
    identityPow: parsePowParams(raw.identityPow, 'identityPow', file),
    linkWarming: parseLinkWarming(raw.linkWarming, 'linkWarming', file),
  };
}

export function loadRelayConfig(file: string, o: RelayOverrides = {}): RelayConfig {
  return parseRelayConfig(readJsonConfig(file), path.dirname(path.resolve(file)), o, file);
}
