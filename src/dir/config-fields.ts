// Config validation helpers shared by every daemon's config (SPEC.md §11.5): each failure is a
// CONFIG_INVALID error whose message names the bad key, e.g. `authorities[1].identity`.
import fs from 'node:fs';
import path from 'node:path';
import { err } from '../errors';
import { parseIPv4, parseIPv6 } from './exit-policy';
import { LIMITS } from '../wire/docs';
import { DESCRIPTOR_MAX_PUBLISH_INTERVAL_MS } from './descriptor';

export function configError(key: string, why: string): never {
  throw err('CONFIG_INVALID', `${key}: ${why}`, { key });
}

/**
 * The data folder, absolute. SPEC.md §11.5: a `--data-dir` flag is resolved against the current
 * directory, as any path on a command line; `dataDir` written in the file against the file's folder.
 */
export function dataDirField(raw: Record<string, unknown>, baseDir: string, flag?: string): string {
  return flag !== undefined ? path.resolve(flag) : path.resolve(baseDir, str(raw.dataDir, 'dataDir'));
}

/** Read and parse a JSON config file; CONFIG_INVALID naming the file when it cannot be read. */
export function readJsonConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw err('CONFIG_INVALID', `cannot read config file ${file}: ${(e as Error).message}`, { file });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw err('CONFIG_INVALID', `config file ${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw err('CONFIG_INVALID', `config file ${file} must hold a JSON object`, { file });
  return v as Record<string, unknown>;
}

export function obj(v: unknown, key: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) configError(key, 'must be an object');
  return v as Record<string, unknown>;
}

export function optObj(v: unknown, key: string): Record<string, unknown> {
  return v === undefined ? {} : obj(v, key);
}

export function str(v: unknown, key: string, def?: string): string {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'string' || v.length === 0) configError(key, 'must be a non-empty string');
  return v;
}

export function int(v: unknown, key: string, min: number, max: number, def?: number): number {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v)) configError(key, 'must be an integer');
  if (v < min || v > max) configError(key, `must be between ${min} and ${max}, is ${v}`);
  return v;
}

export function num(v: unknown, key: string, min: number, max: number, def?: number): number {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) configError(key, 'must be a number');
  if (v < min || v > max) configError(key, `must be between ${min} and ${max}, is ${v}`);
  return v;
}

export function bool(v: unknown, key: string, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') configError(key, 'must be true or false');
  return v;
}

/** One of `allowed` (strings), or `def` when absent. */
export function oneOf<T extends string>(v: unknown, key: string, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) configError(key, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

export function strList(v: unknown, key: string, def: string[] = []): string[] {
  if (v === undefined) return def;
  if (!Array.isArray(v)) configError(key, 'must be a list of strings');
  return v.map((x, i) => str(x, `${key}[${i}]`));
}

const FP = /^[0-9a-f]{64}$/;
export function fingerprintField(v: unknown, key: string): string {
  if (typeof v !== 'string' || !FP.test(v)) configError(key, 'must be a fingerprint: 64 lowercase hex characters');
  return v;
}

/**
 * `moderators`: fingerprints, at most 16 distinct (SPEC.md §6.4: a descriptor lists 0..16 moderator
 * keys, and authorities refuse one with more, so such a node would never enter the consensus).
 */
export function moderatorsField(v: unknown, key = 'moderators'): string[] {
  const list = strList(v, key).map((f, i) => fingerprintField(f, `${key}[${i}]`));
  const n = new Set(list).size;
  if (n > LIMITS.moderatorsMax) configError(key, `at most ${LIMITS.moderatorsMax} moderators (a descriptor lists at most ${LIMITS.moderatorsMax}), ${n} given`);
  return list;
}

/**
 * `family`: fingerprints of the operator's nodes, at most 33 distinct (SPEC.md §6.4: a descriptor
 * lists 0..32 family keys and leaves the node itself out, so one list of 33 serves every node).
 * Whether the list without the node has at most 32 is known once its keys load: `familyWithoutSelf`.
 */
export function familyField(v: unknown, key = 'family'): string[] {
  const list = strList(v, key).map((f, i) => fingerprintField(f, `${key}[${i}]`));
  const n = new Set(list).size;
  if (n > LIMITS.familyMax + 1) configError(key, `at most ${LIMITS.familyMax + 1} entries (a descriptor lists at most ${LIMITS.familyMax} besides the node itself), ${n} given`);
  return list;
}

/**
 * SPEC.md §6.4: the family a node publishes, its configured list without itself; CONFIG_INVALID
 * when more than 32 remain (authorities would refuse every descriptor it publishes).
 */
export function familyWithoutSelf(family: readonly string[], self: string, key = 'family'): string[] {
  const others = [...new Set(family)].filter((f) => f !== self);
  if (others.length > LIMITS.familyMax) configError(key, `at most ${LIMITS.familyMax} family members besides this node (${self}), ${others.length} given`);
  return others;
}

/**
 * "HOST:PORT" or "[IPv6]:PORT" with a port 1..65535. The host comes back without brackets;
 * `httpBase` puts them back for a URL.
 */
export function hostPort(v: unknown, key: string): { host: string; port: number } {
  const s = str(v, key);
  const bad = (): never => configError(key, `must be HOST:PORT or [IPv6]:PORT, is ${JSON.stringify(s)}`);
  let host: string, portText: string;
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
    if (!m || parseIPv6(m[1]) === null) return bad();
    [, host, portText] = m;
  } else {
    const i = s.lastIndexOf(':');
    host = i > 0 ? s.slice(0, i) : '';
    portText = s.slice(i + 1);
    if (/[[\]]/.test(host)) bad();
  }
  const port = Number(portText);
  if (!host || !/^\d+$/.test(portText) || port < 1 || port > 65535) bad();
  return { host, port };
}

/** The base URL of an HTTP server at `host` (an IPv6 address goes in brackets). */
export function httpBase(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * SPEC.md §11.5: a key starting with `_` or `#` is a comment (JSON has none) and is ignored; any
 * other key not in `known` is refused with CONFIG_INVALID naming it (as a path under `prefix`), the
 * file when given, and the closest known key when one is within edit distance 2 (catches typos:
 * `maxOpenCircuit` would otherwise silently get the default of `maxOpenCircuits`).
 */
export function noUnknownKeys(o: Record<string, unknown>, known: readonly string[], prefix: string, file?: string): void {
  for (const k of Object.keys(o)) {
    if (k.startsWith('_') || k.startsWith('#') || known.includes(k)) continue;
    const key = prefix ? `${prefix}.${k}` : k;
    const near = closestKey(k, known);
    throw err('CONFIG_INVALID', `unknown key ${JSON.stringify(key)}${file !== undefined ? ` in ${file}` : ''}${near !== undefined ? ` (did you mean ${JSON.stringify(prefix ? `${prefix}.${near}` : near)}?)` : ''}`,
      file !== undefined ? { key, file } : { key });
  }
}

/**
 * The key of `known` nearest to `k` by edit distance, when at most 2 (the first of equals). Two
 * strings whose lengths differ by more than 2 are more than 2 apart, so such a pair is never
 * compared: the cost stays bounded by the known keys' lengths however long `k` is.
 */
export function closestKey(k: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of known) {
    if (Math.abs(k.length - c.length) >= bestD) continue;
    const d = editDistance(k, c);
    if (d < bestD) { best = c; bestD = d; }
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions), for typo suggestions only. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** `nickname` (an override wins), `address` and `listenHost` (default: the address), as relays and storage nodes take them. */
export function nodeNameFields(raw: Record<string, unknown>, nicknameOverride?: string): { nickname: string; address: string; listenHost: string } {
  const nickname = nicknameOverride ?? str(raw.nickname, 'nickname', 'Unnamed');
  if (!/^[A-Za-z0-9]{1,19}$/.test(nickname)) configError('nickname', 'must be 1 to 19 letters or digits');
  const address = str(raw.address, 'address', '127.0.0.1');
  if (parseIPv4(address) === null) configError('address', 'must be an IPv4 address');
  return { nickname, address, listenHost: str(raw.listenHost, 'listenHost', address) };
}

/** How often a node publishes its descriptor and how long one lives (the lifetime must be longer). */
export function descriptorTimingFields(raw: Record<string, unknown>): { publishIntervalSeconds: number; descriptorLifetimeSeconds: number } {
  // SPEC.md §6.4: at most 18 hours, so a descriptor retried until the next round stays within the
  // 24 hours authorities accept (DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS).
  const publishIntervalSeconds = int(raw.publishIntervalSeconds, 'publishIntervalSeconds', 1, DESCRIPTOR_MAX_PUBLISH_INTERVAL_MS / 1000, 3600);
  const descriptorLifetimeSeconds = int(raw.descriptorLifetimeSeconds, 'descriptorLifetimeSeconds', 60, 7 * 86_400, 86_400);
  if (descriptorLifetimeSeconds <= publishIntervalSeconds) configError('descriptorLifetimeSeconds', 'must be longer than publishIntervalSeconds');
  return { publishIntervalSeconds, descriptorLifetimeSeconds };
}
