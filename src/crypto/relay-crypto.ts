// SPEC.md §5 (tor-spec 5.2.2, 6.1): relay cryptography behind one small interface (hop-crypto.ts),
// so that tor1 (the only algorithm today) can be replaced by Counter Galois Onion by changing this
// file's factories and nothing else (SPEC.md §5, §11.4; the shape follows Arti's tor-proto crypto/cell.rs).
//
// Every method works IN PLACE on the 509-byte relay payload of a RELAY / RELAY_EARLY cell (a
// view into the cell buffer). They run once per cell per hop: the hot path.
import { createTor1ClientHop, createTor1RelayHop, TOR1_KEY_LEN, TOR1_DIGEST_LEN } from './tor1';
import type { ClientHopCrypto, RelayHopCrypto } from './hop-crypto';
import { randomBytes } from './primitives';

/** Bytes of key material one hop needs from the circuit handshake (tor1: Df | Db | Kf | Kb). */
export const RELAY_CRYPTO_KEY_LEN = TOR1_KEY_LEN;
/** Length of lastDigest() (tor1: SHA-1). SENDME v1 carries it. */
export const RELAY_CRYPTO_DIGEST_LEN = TOR1_DIGEST_LEN;

/** Throws CRYPTO_BAD_LENGTH unless `keys` is exactly RELAY_CRYPTO_KEY_LEN bytes. */
export function createClientHop(keys: Buffer): ClientHopCrypto {
  return createTor1ClientHop(keys);
}

/** Throws CRYPTO_BAD_LENGTH unless `keys` is exactly RELAY_CRYPTO_KEY_LEN bytes. */
export function createRelayHop(keys: Buffer): RelayHopCrypto {
  return createTor1RelayHop(keys);
}

/**
 * Client, outbound (SPEC.md §5.3): originate a payload for hop `target` (0 = first hop) and
 * onion-encrypt it with the layers of hops target, target-1, ..., 0. Hot path.
 */
export function clientSealOutbound(hops: readonly ClientHopCrypto[], target: number, payload: Buffer): void {
  hops[target].originate(payload);
  for (let i = target; i >= 0; i--) hops[i].encryptOutbound(payload);
}

/**
 * Client, inbound (SPEC.md §5.4): peel layers from the first hop on until one recognizes the
 * payload. Returns that hop's index, or -1 when no hop does (the circuit must then be closed).
 * Hot path.
 */
export function clientOpenInbound(hops: readonly ClientHopCrypto[], payload: Buffer): number {
  for (let i = 0; i < hops.length; i++) {
    if (hops[i].decryptInbound(payload)) return i;
  }
  return -1;
}

/**
 * `n` hops of one circuit from fresh random keys: the client's crypto for each hop and each relay's
 * (tests and benchmarks; a real circuit gets its keys from the handshake, SPEC.md §5).
 */
export function randomHopPairs(n: number): { client: ClientHopCrypto[]; relays: RelayHopCrypto[] } {
  const client: ClientHopCrypto[] = [];
  const relays: RelayHopCrypto[] = [];
  for (let i = 0; i < n; i++) {
    const keys = randomBytes(RELAY_CRYPTO_KEY_LEN);
    client.push(createClientHop(keys));
    relays.push(createRelayHop(keys));
  }
  return { client, relays };
}
