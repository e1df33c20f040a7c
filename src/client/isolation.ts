// SPEC.md §7.7 (stream isolation): streams whose isolation keys differ never share a circuit;
// streams with the same key may. The key comes from the SOCKS username/password (as Tor's
// IsolateSOCKSAuth, the way Tor Browser separates sites) and, optionally, the destination port
// or address (Tor's IsolateDestPort / IsolateDestAddr).
import { sha256, randomBytes } from '../crypto/primitives';

export interface IsolationRequest {
  /** SOCKS credentials as sent (bytes), or text standing for its UTF-8 bytes. */
  isolation: { username?: string | Uint8Array; password?: string | Uint8Array };
  host?: string;
  port?: number;
}

export interface IsolationOptions {
  /** Also separate streams by destination port. Default false. */
  isolateDestPort?: boolean;
  /** Also separate streams by destination host (as given by the application). Default false. */
  isolateDestAddr?: boolean;
}

/** An opaque isolation key: equal keys may share a circuit. Safe to log at debug. */
export type IsolationKey = string & { readonly __isolationKey: true };

// Keys are salted per process: credentials often name the site a browser tab visits, so a key
// that leaked into a log must not be reversible by guessing, and keys never need to persist.
const SALT = randomBytes(16);

/** SPEC.md §7.7: a u32 length then the bytes (bytes as sent; text as UTF-8). */
function field(s: string | Uint8Array | undefined): Buffer {
  const b = typeof s === 'string' || s === undefined ? Buffer.from(s ?? '', 'utf8') : Buffer.from(s);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(b.length, 0);
  return Buffer.concat([len, b]);
}

/**
 * The isolation key of a stream. Credentials are compared as the bytes the application sent
 * (never decoded: two invalid UTF-8 names must not become the same text). Absent and empty
 * credentials are the same (no isolation beyond the default group), as in Tor. Fields are length-prefixed so ("a:b","c") and
 * ("a","b:c") differ.
 */
export function isolationKey(req: IsolationRequest, opts: IsolationOptions = {}): IsolationKey {
  const parts = [
    SALT,
    field(req.isolation.username),
    field(req.isolation.password),
    field(opts.isolateDestPort ? String(req.port ?? '') : undefined),
    field(opts.isolateDestAddr ? (req.host ?? '').toLowerCase() : undefined),
  ];
  return sha256(...parts).subarray(0, 16).toString('hex') as IsolationKey;
}

/**
 * May a stream with key `stream` attach to a circuit whose isolation is `circuit`? A circuit
 * that has carried no stream yet (`null`) takes any key, and from then on only that key
 * (the circuit manager stores the first stream's key on the circuit).
 */
export function canAttach(circuit: IsolationKey | null, stream: IsolationKey): boolean {
  return circuit === null || circuit === stream;
}
