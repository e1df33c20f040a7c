// The storage node's configuration: one JSON file plus flags; defaults in one place; every
// refusal names the bad key (SPEC.md §11.5). See SPEC.md §9.13.3 for the meaning
// of each setting.
import { parsePowParams, type PowParams } from '../src/dir/identity-pow';
import { DEFAULT_METRICS_PORTS } from '../src/ops/metrics';
import path from 'node:path';
import { parseReceiptSettings, type ReceiptSettings } from '../src/bandwidth/node-bandwidth';
import { parseAuthorityList, type AuthorityInfo } from '../src/dir/authorities';
import { bool, configError, dataDirField, descriptorTimingFields, familyField, int, moderatorsField, nodeNameFields, noUnknownKeys, readJsonConfig, str, strList } from '../src/dir/config-fields';
import { MAX_SHARE_BYTES } from '../src/storage/share';
import { MAX_READ_BYTES_IN_FLIGHT, quotaCharge } from './share-store';
import { DEFAULT_INTRO_DOS, INTRO_DOS_MAX, type IntroDosParams } from '../src/wire/hidden';

export interface StorageConfig {
  dataDir: string;
  nickname: string;
  /** Advertised IPv4 address. */
  address: string;
  /** Address the listeners (TCP OR port, TCP storage port, UDP DHT) bind to. Default: `address`. */
  listenHost: string;
  /** Link listener: CREATE2 from middle relays (circuits ending here). */
  orPort: number;
  /** TCP: direct storage sessions; UDP: the DHT (SPEC.md §9.13). */
  storagePort: number;
  /** Bytes of shares this node agrees to hold. */
  quotaBytes: number;
  cacheBytes: number;
  /** SPEC.md §9.6.1: bytes of share reads in progress at the node, over all its streams. */
  maxReadBytesInFlight: number;
  defaultLeaseSeconds: number;
  maxLeaseSeconds: number;
  gcIntervalSeconds: number;
  /** Declared bandwidth, bytes per second (descriptor). */
  bandwidth: number;
  family: string[];
  moderators: string[];
  /** SPEC.md §10.6: subscribe to nobody; store only encrypted content, only from circuits. */
  unmoderated: boolean;
  /** How often subscribed moderators' policies are fetched (SPEC.md §10.6.1). */
  policyRefreshSeconds: number;
  /** Allow-only classes (SPEC.md §10.6): stored only when a subscribed moderator approved the content. */
  approvedOnly: string[];
  authorities: AuthorityInfo[];
  publishIntervalSeconds: number;
  descriptorLifetimeSeconds: number;
  announceIntervalSeconds: number;
  /** SPEC.md §3.3: onion key lifetime; rotated while running. Default 7 days. */
  onionKeyRotationSeconds: number;
  /** SPEC.md §6.10 MetricsPort: /metrics on metricsHost (default 127.0.0.1):metricsPort; 0 = not served. */
  metricsPort: number;
  /** The operator set metricsPort (then it must be free; the default may be skipped when taken). */
  metricsPortExplicit: boolean;
  metricsHost: string;
  maxDirectSessions: number;
  /** SPEC.md §9.13.2: direct sessions one client address key (IPv4 address, IPv6 /64) may hold. */
  maxDirectSessionsPerAddress: number;
  /** SPEC.md §9.13.2: a direct session with no byte either way this long is closed. */
  directIdleSeconds: number;
  /** SPEC.md §9.6.1: a request on any storage stream (circuit or direct; the name is historical) not received in full this long after its first byte closes it. */
  directRequestSeconds: number;
  logLevel: string;
  /** Proof-of-bandwidth receipt timing (SPEC.md §8.3); see docs/operators-directory.md. */
  receipts: ReceiptSettings;
  /** SPEC.md §6.4.1: identity proof parameters to mine with ("default" | "local" | object) while the consensus held carries none (its parameters win). */
  identityPow: PowParams;
  /** SPEC.md §9.21: listed without address or ports, reached only through rendezvous circuits. */
  hidden: boolean;
  /** Hidden nodes build circuits: Tor's EnforceDistinctSubnets for their paths (the local network turns it off). */
  enforceDistinctSubnets: boolean;
  /** SPEC.md §9.21.4: the INTRODUCE1 rate and burst a hidden node asks its introduction points to enforce. */
  introDos: IntroDosParams;
}

/** Every top-level key of the file (SPEC.md §11.5: any other is refused, `_`/`#` comments aside). */
const KNOWN_KEYS = ['dataDir', 'nickname', 'address', 'listenHost', 'orPort', 'storagePort', 'quota', 'cacheBytes', 'maxReadBytesInFlight',
  'defaultLeaseSeconds', 'maxLeaseSeconds', 'gcIntervalSeconds', 'bandwidth', 'family', 'moderators', 'unmoderated', 'policyRefreshSeconds', 'approvedOnly', 'authorities',
  'publishIntervalSeconds', 'descriptorLifetimeSeconds', 'announceIntervalSeconds', 'onionKeyRotationSeconds', 'metricsPort', 'metricsHost', 'maxDirectSessions',
  'maxDirectSessionsPerAddress', 'directIdleSeconds', 'directRequestSeconds',
  'logLevel', 'receipts', 'identityPow', 'hidden', 'enforceDistinctSubnets', 'introRatePerSecond', 'introBurst'] as const;

export interface StorageOverrides { dataDir?: string; orPort?: number; storagePort?: number; metricsPort?: number; nickname?: string }

const UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** A byte size: an integer, or text like "512MiB", "10 GB". */
export function parseSize(v: unknown, key: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v === 'number') return int(v, key, 0, Number.MAX_SAFE_INTEGER);
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v) : null;
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) configError(key, 'must be a byte count or a size like "512MiB" or "10GB"');
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) configError(key, 'too large');
  return n;
}

export function parseStorageConfig(raw: Record<string, unknown>, baseDir: string, o: StorageOverrides = {}, file?: string): StorageConfig {
  noUnknownKeys(raw, KNOWN_KEYS, '', file);
  const names = nodeNameFields(raw, o.nickname);
  const hidden = bool(raw.hidden, 'hidden', false);
  // SPEC.md §9.21: a hidden node listens on no port, so none is required (any given is unused).
  const orPort = o.orPort ?? int(raw.orPort, 'orPort', hidden ? 0 : 1, 65535, hidden ? 0 : undefined);
  const storagePort = o.storagePort ?? int(raw.storagePort, 'storagePort', hidden ? 0 : 1, 65535, hidden ? 0 : undefined);
  if (!hidden && storagePort === orPort) configError('storagePort', 'must differ from orPort');
  const quotaBytes = parseSize(raw.quota, 'quota', 10 * 2 ** 30);
  // SPEC.md §9.8.4: a maximal share is charged its blocks plus the per-share overhead.
  if (quotaBytes < quotaCharge(MAX_SHARE_BYTES)) configError('quota', `must be at least one maximal share (${quotaCharge(MAX_SHARE_BYTES)} bytes charged)`);
  const maxLeaseSeconds = int(raw.maxLeaseSeconds, 'maxLeaseSeconds', 60, 10 * 365 * 86_400, 90 * 86_400);
  const defaultLeaseSeconds = int(raw.defaultLeaseSeconds, 'defaultLeaseSeconds', 60, 10 * 365 * 86_400, Math.min(7 * 86_400, maxLeaseSeconds));
  if (defaultLeaseSeconds > maxLeaseSeconds) configError('defaultLeaseSeconds', 'must not exceed maxLeaseSeconds');
  const { publishIntervalSeconds, descriptorLifetimeSeconds } = descriptorTimingFields(raw);
  return {
    dataDir: dataDirField(raw, baseDir, o.dataDir),
    ...names,
    orPort,
    storagePort,
    quotaBytes,
    cacheBytes: parseSize(raw.cacheBytes, 'cacheBytes', 64 * 2 ** 20),
    maxReadBytesInFlight: int(raw.maxReadBytesInFlight, 'maxReadBytesInFlight', 1, Number.MAX_SAFE_INTEGER, MAX_READ_BYTES_IN_FLIGHT),
    defaultLeaseSeconds,
    maxLeaseSeconds,
    gcIntervalSeconds: int(raw.gcIntervalSeconds, 'gcIntervalSeconds', 1, 86_400, 600),
    bandwidth: int(raw.bandwidth, 'bandwidth', 0, 10_000_000_000, 1_000_000),
    family: familyField(raw.family),
    moderators: moderatorsField(raw.moderators),
    unmoderated: unmoderatedField(raw),
    policyRefreshSeconds: int(raw.policyRefreshSeconds, 'policyRefreshSeconds', 1, 86_400, 600),
    approvedOnly: approvedOnlyField(raw),
    authorities: parseAuthorityList(raw.authorities, 'authorities', file),
    publishIntervalSeconds,
    descriptorLifetimeSeconds,
    announceIntervalSeconds: int(raw.announceIntervalSeconds, 'announceIntervalSeconds', 5, 86_400, 900),
    onionKeyRotationSeconds: int(raw.onionKeyRotationSeconds, 'onionKeyRotationSeconds', 2, 365 * 86_400, 7 * 86_400),
    metricsPort: o.metricsPort ?? int(raw.metricsPort, 'metricsPort', 0, 65535, DEFAULT_METRICS_PORTS.storage),
    metricsPortExplicit: o.metricsPort !== undefined || raw.metricsPort !== undefined,
    metricsHost: str(raw.metricsHost, 'metricsHost', '127.0.0.1'),
    maxDirectSessions: int(raw.maxDirectSessions, 'maxDirectSessions', 1, 100_000, 1024),
    maxDirectSessionsPerAddress: int(raw.maxDirectSessionsPerAddress, 'maxDirectSessionsPerAddress', 1, 100_000, 16),
    directIdleSeconds: int(raw.directIdleSeconds, 'directIdleSeconds', 1, 86_400, 60),
    directRequestSeconds: int(raw.directRequestSeconds, 'directRequestSeconds', 1, 86_400, 120),
    logLevel: str(raw.logLevel, 'logLevel', 'info'),
    receipts: parseReceiptSettings(raw.receipts, 'receipts', file),
    identityPow: parsePowParams(raw.identityPow, 'identityPow', file),
    hidden,
    enforceDistinctSubnets: bool(raw.enforceDistinctSubnets, 'enforceDistinctSubnets', true),
    introDos: introDosFields(raw),
  };
}

/** introRatePerSecond (1..) ≤ introBurst (..2^31 − 1); defaults Tor's 25 and 200. */
function introDosFields(raw: Record<string, unknown>): IntroDosParams {
  const ratePerSec = int(raw.introRatePerSecond, 'introRatePerSecond', 1, INTRO_DOS_MAX, DEFAULT_INTRO_DOS.ratePerSec);
  const burst = int(raw.introBurst, 'introBurst', 1, INTRO_DOS_MAX, Math.max(ratePerSec, DEFAULT_INTRO_DOS.burst));
  if (burst < ratePerSec) configError('introBurst', 'must be at least introRatePerSecond');
  return { ratePerSec, burst };
}

/** Allow-only classes: valid class names, and only with moderators (someone must approve). */
function approvedOnlyField(raw: Record<string, unknown>): string[] {
  const list = strList(raw.approvedOnly, 'approvedOnly');
  list.forEach((c, i) => { if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(c)) configError(`approvedOnly[${i}]`, 'a content class matches [a-z0-9][a-z0-9-]{0,63}'); });
  const mods = Array.isArray(raw.moderators) ? raw.moderators.length : 0;
  if (list.length > 0 && mods === 0) configError('approvedOnly', 'needs at least one entry in moderators (someone must approve the content)');
  return list;
}

/** `unmoderated: true` and a non-empty `moderators` exclude each other; neither means unmoderated. */
function unmoderatedField(raw: Record<string, unknown>): boolean {
  if (raw.unmoderated !== undefined && typeof raw.unmoderated !== 'boolean') configError('unmoderated', 'must be true or false');
  const mods = Array.isArray(raw.moderators) ? raw.moderators.length : 0;
  if (raw.unmoderated === true && mods > 0) configError('unmoderated', 'a node is either unmoderated or subscribed to moderators, not both');
  if (raw.unmoderated === false && mods === 0) configError('unmoderated', 'false needs at least one entry in moderators');
  return mods === 0;
}

export function loadStorageConfig(file: string, o: StorageOverrides = {}): StorageConfig {
  return parseStorageConfig(readJsonConfig(file), path.dirname(path.resolve(file)), o, file);
}
