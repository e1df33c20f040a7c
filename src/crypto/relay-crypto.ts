// SPEC.md §5 (tor-spec 5.2.2, 6.1): relay cryptography behind one small interface (hop-crypto.ts):
// tor1 or Counter Galois Onion (SPEC.md §5.6), chosen per hop when the circuit is created (the
// shape follows Arti's tor-proto crypto/cell.rs).
//
// Every method works IN PLACE on the 509-byte relay payload of a RELAY / RELAY_EARLY cell (a
// view into the cell buffer). They run once per cell per hop: the hot path.
import { createTor1ClientHop, createTor1RelayHop, TOR1_KEY_LEN, TOR1_DIGEST_LEN } from './tor1';
import { createCgoClientHop, createCgoRelayHop, CGO_KEY_LEN } from './cgo';
import type { ClientHopCrypto, RelayCryptoAlgorithm, RelayHopCrypto } from './hop-crypto';
import { randomBytes } from './primitives';
import { CellCommand, CELL_PAYLOAD_LEN } from '../wire/cell';
import { RELAY_RECOGNIZED_OFFSET } from '../wire/relay-msg';
import { HandshakeType } from '../wire/messages';
import { NTOR_PROTOID_BITCLOUD, NTOR_PROTOID_BITCLOUD_CGO } from './ntor';

/** Bytes of key material one tor1 hop needs from the circuit handshake (Df | Db | Kf | Kb). */
export const RELAY_CRYPTO_KEY_LEN = TOR1_KEY_LEN;
/** Length of lastDigest() (tor1: SHA-1; CGO: its 16-byte tag and 4 zero bytes). SENDME v1 carries it. */
export const RELAY_CRYPTO_DIGEST_LEN = TOR1_DIGEST_LEN;

/** Bytes of key material one hop needs from the handshake for `alg` (SPEC.md §5.1, §5.6.2). */
export function relayCryptoKeyLen(alg: RelayCryptoAlgorithm): number {
  return alg === 'cgo' ? CGO_KEY_LEN : TOR1_KEY_LEN;
}

/** How a hop negotiates `alg` (SPEC.md §5.6.1): the CREATE2 / EXTEND2 htype, the ntor PROTOID, the key length. */
export interface RelayCryptoHandshake { htype: number; protoid: string; keyLength: number }

const HANDSHAKES: Record<RelayCryptoAlgorithm, RelayCryptoHandshake> = {
  tor1: { htype: HandshakeType.NTOR, protoid: NTOR_PROTOID_BITCLOUD, keyLength: TOR1_KEY_LEN },
  cgo: { htype: HandshakeType.NTOR_CGO, protoid: NTOR_PROTOID_BITCLOUD_CGO, keyLength: CGO_KEY_LEN },
};

export function relayCryptoHandshake(alg: RelayCryptoAlgorithm): RelayCryptoHandshake {
  return HANDSHAKES[alg];
}

/** The algorithm a CREATE2 / EXTEND2 htype negotiates, or null for one this node does not speak. */
export function relayCryptoForHtype(htype: number): RelayCryptoAlgorithm | null {
  if (htype === HandshakeType.NTOR) return 'tor1';
  if (htype === HandshakeType.NTOR_CGO) return 'cgo';
  return null;
}

/** Throws CRYPTO_BAD_LENGTH unless `keys` is exactly relayCryptoKeyLen(alg) bytes. */
export function createClientHop(keys: Buffer, alg: RelayCryptoAlgorithm = 'tor1'): ClientHopCrypto {
  return alg === 'cgo' ? createCgoClientHop(keys) : createTor1ClientHop(keys);
}

/** Throws CRYPTO_BAD_LENGTH unless `keys` is exactly relayCryptoKeyLen(alg) bytes. */
export function createRelayHop(keys: Buffer, alg: RelayCryptoAlgorithm = 'tor1'): RelayHopCrypto {
  return alg === 'cgo' ? createCgoRelayHop(keys) : createTor1RelayHop(keys);
}

/**
 * Client, outbound (SPEC.md §5.3): originate a payload for hop `target` (0 = first hop) and
 * onion-encrypt it with the layers of hops target, target-1, ..., 0. Hot path.
 */
export function clientSealOutbound(hops: readonly ClientHopCrypto[], target: number, payload: Buffer, cmd: number = CellCommand.RELAY): void {
  hops[target].originate(payload);
  for (let i = target; i >= 0; i--) hops[i].encryptOutbound(payload, cmd);
}

/**
 * Client, inbound (SPEC.md §5.4): peel layers from the first hop on until one recognizes the
 * payload. Returns that hop's index, or -1 when no hop does (the circuit must then be closed).
 * Hot path.
 */
export function clientOpenInbound(hops: readonly ClientHopCrypto[], payload: Buffer): number {
  // Only RELAY travels toward the client (SPEC.md §5.4).
  for (let i = 0; i < hops.length; i++) {
    if (hops[i].decryptInbound(payload, CellCommand.RELAY)) return i;
  }
  return -1;
}

/**
 * Client, inbound, many cells of one circuit (SPEC.md §5.4): exactly clientOpenInbound on each
 * payload in turn, but each hop's layer comes off the whole run in one cipher call where it can.
 * `payloads`: n payloads of 509 bytes end to end, `views[k]` payload k. `each(k, hop)` is called
 * for k = 0..n-1 in order, right after cell k is recognized by `hop` (or -1), before the digest
 * of any later cell is checked, so the hop's lastDigest() is that cell's; it returns false to
 * stop (the circuit is gone). Hot path.
 *
 * A hop's layer goes over every cell that reaches that hop. A cell whose recognized field is
 * non-zero after a hop's layer is not that hop's (tor-spec 6.1), so the next layer may go over
 * the run at once; from the first cell with a zero field on, the rest of the run (a "tail") goes
 * on cell by cell with the full check, in order, so every hop's keystream and digest still see
 * the cells in arrival order.
 */
export function clientOpenInboundMany(hops: readonly ClientHopCrypto[], payloads: Buffer, views: readonly Buffer[], n: number, each: (k: number, hop: number) => boolean): void {
  const last = hops.length - 1;
  let batch = true;
  for (const h of hops) if (!h.cryptInboundMany || !h.recognizeInbound) batch = false;
  if (!batch) {
    for (let k = 0; k < n; k++) if (!each(k, clientOpenInbound(hops, views[k]))) return;
    return;
  }
  // tails[i] = [from, to): cells that got layers 0..i in the batch and go on from hop i's check.
  const tailFrom: number[] = [];
  const tailTo: number[] = [];
  let end = n;
  for (let i = 0; i <= last; i++) {
    hops[i].cryptInboundMany!(payloads.subarray(0, end * CELL_PAYLOAD_LEN));
    if (i === last) break;
    let cut = end;
    for (let k = 0; k < end; k++) {
      if (views[k].readUInt16BE(RELAY_RECOGNIZED_OFFSET) === 0) { cut = k; break; }
    }
    tailFrom.push(cut);
    tailTo.push(end);
    end = cut;
  }
  const lastHop = hops[last];
  for (let k = 0; k < end; k++) {
    if (!each(k, lastHop.recognizeInbound!(views[k]) ? last : -1)) return;
  }
  // Tails from the deepest (lowest indices) to the shallowest: arrival order.
  for (let i = tailFrom.length - 1; i >= 0; i--) {
    for (let k = tailFrom[i]; k < tailTo[i]; k++) {
      const p = views[k];
      let hop = -1;
      if (hops[i].recognizeInbound!(p)) hop = i;
      else {
        for (let j = i + 1; j <= last; j++) {
          if (hops[j].decryptInbound(p, CellCommand.RELAY)) { hop = j; break; }
        }
      }
      if (!each(k, hop)) return;
    }
  }
}

/**
 * `n` hops of one circuit from fresh random keys: the client's crypto for each hop and each relay's
 * (tests and benchmarks; a real circuit gets its keys from the handshake, SPEC.md §5).
 */
export function randomHopPairs(n: number, alg: RelayCryptoAlgorithm = 'tor1'): { client: ClientHopCrypto[]; relays: RelayHopCrypto[] } {
  const client: ClientHopCrypto[] = [];
  const relays: RelayHopCrypto[] = [];
  for (let i = 0; i < n; i++) {
    const keys = randomBytes(relayCryptoKeyLen(alg));
    client.push(createClientHop(keys, alg));
    relays.push(createRelayHop(keys, alg));
  }
  return { client, relays };
}
