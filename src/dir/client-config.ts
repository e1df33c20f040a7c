// What the `bitcloud` commands (the directory client, the proxy, the storage commands) read from
// their config file: the authorities they trust and where they keep state. Other client settings live
// in the same file: every reader refuses a key none of them knows (CLIENT_CONFIG_KEYS, SPEC.md §11.5).
import os from 'node:os';
import path from 'node:path';
import { err } from '../errors';
import { parseAuthorityList, type AuthorityInfo } from './authorities';
import { hostPort, httpBase, noUnknownKeys, readJsonConfig, str } from './config-fields';

export interface DirClientConfig {
  authorities: AuthorityInfo[];
  dataDir: string;
  /** Relay directory mirrors to try before the authorities: base URLs. */
  mirrors: string[];
  /** The config file it came from. */
  file: string;
}

/**
 * SPEC.md §11.5: every key of the client config file, by the reader that takes it. One file serves
 * all of them (a command reads the directory keys and its own), so each reader accepts every key
 * here and refuses any other (`_`/`#` comments aside): a misspelt key fails at start instead of
 * silently leaving its default.
 */
export const CLIENT_CONFIG_KEYS = [
  // loadDirClientConfig (every command)
  'authorities', 'dataDir', 'mirrors',
  // readProxyConfig (`bitcloud proxy`)
  'socksHost', 'socksPort', 'metricsPort', 'metricsHost', 'enforceDistinctSubnets', 'maxCircuitDirtinessSeconds',
  'preemptiveCircuits', 'maxOpenCircuits', 'gatewayCacheBytes', 'relayCrypto', 'isolateDestPort', 'isolateDestAddr',
  // readStorageClientConfig (the storage commands; also enforceDistinctSubnets)
  'leaseSeconds', 'dhtPort',
] as const;

/** Read the client config file `file`, refusing a key no reader knows (SPEC.md §11.5). */
export function readClientConfigFile(file: string): Record<string, unknown> {
  const raw = readJsonConfig(file);
  noUnknownKeys(raw, CLIENT_CONFIG_KEYS, '', file);
  return raw;
}

export const DEFAULT_CLIENT_DATA_DIR = path.join(os.homedir(), '.bitcloud');

/** The config file to use: --config, else $BITCLOUD_CONFIG, else ~/.bitcloud/config.json. */
export function clientConfigPath(flag?: string): string {
  return flag ?? process.env.BITCLOUD_CONFIG ?? path.join(DEFAULT_CLIENT_DATA_DIR, 'config.json');
}

export function loadDirClientConfig(file: string, overrides: { dataDir?: string } = {}): DirClientConfig {
  const raw = readClientConfigFile(file);
  if (raw.authorities === undefined) throw err('CONFIG_INVALID', `authorities: missing in ${file}; a client trusts the network only through the authorities it lists`, { key: 'authorities' });
  const authorities = parseAuthorityList(raw.authorities, 'authorities', file);
  const base = path.dirname(path.resolve(file));
  const dataDir = overrides.dataDir ?? (raw.dataDir === undefined ? DEFAULT_CLIENT_DATA_DIR : path.resolve(base, str(raw.dataDir, 'dataDir')));
  let mirrors: string[] = [];
  if (raw.mirrors !== undefined) {
    if (!Array.isArray(raw.mirrors)) throw err('CONFIG_INVALID', 'mirrors: must be a list of "HOST:PORT"', { key: 'mirrors' });
    mirrors = raw.mirrors.map((m, i) => { const { host, port } = hostPort(m, `mirrors[${i}]`); return httpBase(host, port); });
  }
  return { authorities, dataDir, mirrors, file };
}

/** Accept "HOST:PORT" or an http:// URL; return a base URL without a trailing slash. */
export function normalizeSource(s: string): string {
  if (/^https?:\/\//.test(s)) return s.replace(/\/+$/, '');
  const { host, port } = hostPort(s, '--from');
  return httpBase(host, port);
}
