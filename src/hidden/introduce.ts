// SPEC.md §9.21.5: the sealed part of INTRODUCE1/INTRODUCE2. The client seals it to the
// introduction's X25519 enc_key; the introduction point relays it unread; the node opens it.
import { err } from '../errors';
import { randomBytes, sha256, x25519, x25519Generate, xchachaDecrypt, xchachaEncrypt } from '../crypto/primitives';
import {
  HS_NONCE_LEN, decodeIntroducePlaintext, encodeIntroducePlaintext, type Introduce, type IntroducePlaintext,
} from '../wire/hidden';

const TAG = Buffer.from('bitcloud-hs-intro-key-v1', 'ascii');

function introKey(shared: Buffer, clientKey: Uint8Array, encKey: Uint8Array, authKey: Uint8Array): Buffer {
  return sha256(TAG, shared, clientKey, encKey, authKey);
}

export function sealIntroduce(authKey: Buffer, encKey: Buffer, p: IntroducePlaintext): Introduce {
  const eph = x25519Generate();
  const nonce = randomBytes(HS_NONCE_LEN);
  const key = introKey(x25519(eph.secretKey, encKey), eph.publicKey, encKey, authKey);
  const ciphertext = xchachaEncrypt(key, nonce, encodeIntroducePlaintext(p), Buffer.concat([authKey, eph.publicKey]));
  eph.secretKey.fill(0);
  return { authKey, clientKey: eph.publicKey, nonce, ciphertext };
}

/** The node: open an INTRODUCE2 with the introduction's enc key pair. HIDDEN_INTRO_FORGED on any failure. */
export function openIntroduce(m: Introduce, enc: { publicKey: Buffer; secretKey: Buffer }): IntroducePlaintext {
  try {
    const key = introKey(x25519(enc.secretKey, m.clientKey), m.clientKey, enc.publicKey, m.authKey);
    return decodeIntroducePlaintext(xchachaDecrypt(key, m.nonce, m.ciphertext, Buffer.concat([m.authKey, m.clientKey])));
  } catch (e) {
    throw err('HIDDEN_INTRO_FORGED', `introduction does not open: ${(e as Error).message}`);
  }
}

/** SPEC.md §9.21.5: the node's replay cache of INTRODUCE2 bodies, per auth key. */
export class IntroReplayCache {
  private readonly seen = new Set<string>();
  constructor(private readonly max = 65_536) {}
  /** Throws HIDDEN_INTRO_REPLAY on a body seen before, or when the cache is full. */
  check(body: Uint8Array): void {
    const k = sha256(body).toString('hex');
    if (this.seen.has(k)) throw err('HIDDEN_INTRO_REPLAY', 'this introduction was seen before');
    if (this.seen.size >= this.max) throw err('HIDDEN_INTRO_REPLAY', 'replay cache full for this introduction point');
    this.seen.add(k);
  }
  get size(): number { return this.seen.size; }
  /** No room left: every further INTRODUCE2 under this key is refused (the node replaces the key). */
  get full(): boolean { return this.seen.size >= this.max; }
}

/** SPEC.md §9.21.5 step 3: how long the node refuses a rendezvous cookie it has served (Tor's REND_REPLAY_TIME_INTERVAL). */
export const COOKIE_REPLAY_MS = 5 * 60_000;
/** SPEC.md §9.21.5 step 3: cookies remembered at once; past it the oldest is forgotten first. */
export const COOKIE_REPLAY_MAX = 65_536;

/**
 * SPEC.md §9.21.5 step 3: the node's rendezvous cookies of the last COOKIE_REPLAY_MS, across all
 * its introduction points (as Tor's replay_cache_rend_cookie). A client may seal one cookie afresh
 * for each introduction point, so the per-key cache of bodies does not see the repeat; without
 * this the node would build a rendezvous circuit to the same point for each.
 */
export class CookieReplayCache {
  /** Cookie (hex) → when it was served (clock ms); oldest first. */
  private readonly seen = new Map<string, number>();
  constructor(private readonly clock: () => number, private readonly ttlMs = COOKIE_REPLAY_MS, private readonly max = COOKIE_REPLAY_MAX) {}
  /** Throws HIDDEN_INTRO_REPLAY on a cookie served within ttlMs; else remembers it. */
  check(cookie: Uint8Array): void {
    const now = this.clock();
    for (const [k, at] of this.seen) { if (now - at < this.ttlMs) break; this.seen.delete(k); }
    const k = Buffer.from(cookie).toString('hex');
    if (this.seen.has(k)) throw err('HIDDEN_INTRO_REPLAY', 'an introduction with this rendezvous cookie was served in the last 5 minutes');
    this.seen.set(k, now);
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value!);
  }
  get size(): number { return this.seen.size; }
}
