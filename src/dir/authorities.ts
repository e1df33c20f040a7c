// SPEC.md §6.1: the list of directory authorities every relay, client and authority ships with.
// The same shape everywhere: [{ name, identity (fingerprint), address "HOST:PORT" (HTTP) }].
import { configError, fingerprintField, hostPort, httpBase, noUnknownKeys, obj, str } from './config-fields';

export interface AuthorityInfo {
  name: string;
  /** Ed25519 long-term identity key, 32 bytes. */
  identity: Buffer;
  fingerprint: string;
  host: string;
  port: number;
  /** Base URL of the authority's HTTP interface, e.g. http://127.0.0.1:7000 */
  url: string;
}

/** Validate an `authorities` list from a config (CONFIG_INVALID naming the bad key). */
export function parseAuthorityList(v: unknown, key = 'authorities', file?: string): AuthorityInfo[] {
  if (!Array.isArray(v) || v.length === 0) configError(key, 'must be a non-empty list of {name, identity, address}');
  if (v.length > 31) configError(key, 'at most 31 authorities');
  const seen = new Set<string>();
  return v.map((e, i) => {
    const k = `${key}[${i}]`;
    const o = obj(e, k);
    noUnknownKeys(o, ['name', 'identity', 'address'], k, file);
    const fingerprint = fingerprintField(o.identity, `${k}.identity`);
    if (seen.has(fingerprint)) configError(`${k}.identity`, 'listed twice');
    seen.add(fingerprint);
    const { host, port } = hostPort(o.address, `${k}.address`);
    const name = str(o.name ?? `auth${i}`, `${k}.name`);
    return { name, identity: Buffer.from(fingerprint, 'hex'), fingerprint, host, port, url: httpBase(host, port) };
  });
}

/** SPEC.md §6.1: the majority, more than half of ALL configured authorities. */
export function majorityOf(total: number): number {
  return Math.floor(total / 2) + 1;
}
