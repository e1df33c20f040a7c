// SPEC.md §4 (tor-spec 5.1.4): the ntor circuit handshake, with PROTOID a parameter so that the
// same code reproduces Tor's published vectors (ntor-curve25519-sha256-1) and runs Bitcloud's
// variant (bitcloud-ntor-curve25519-sha256-1, with the 32-byte Ed25519 identity as node ID).
import { err } from '../errors';
import {
  constantTimeEqual, hkdfSha256, hmacSha256, wipe, x25519, x25519Generate, x25519Public,
  X25519_BYTES, type X25519KeyPair,
} from './primitives';

export const NTOR_PROTOID_TOR = 'ntor-curve25519-sha256-1';
export const NTOR_PROTOID_BITCLOUD = 'bitcloud-ntor-curve25519-sha256-1';
/** The PROTOID of htype NTOR_CGO (SPEC.md §5.6.1): the algorithm choice enters AUTH and the keys. */
export const NTOR_PROTOID_BITCLOUD_CGO = 'bitcloud-ntor-cgo-curve25519-sha256-1';
/** Length of AUTH (an HMAC-SHA256 output). */
export const NTOR_AUTH_LEN = 32;
/** SERVER_PK Y | AUTH */
export const NTOR_REPLY_LEN = X25519_BYTES + NTOR_AUTH_LEN;
/** Bitcloud's node ID is the Ed25519 identity key, so its onionskin is ID(32) | B(32) | X(32). */
export const NTOR_BITCLOUD_ID_LEN = 32;
export const NTOR_BITCLOUD_ONIONSKIN_LEN = NTOR_BITCLOUD_ID_LEN + 2 * X25519_BYTES;

/** tor-spec 5.1.4: the tweaks are PROTOID followed by a fixed suffix. */
export interface NtorTweaks {
  protoid: Buffer;
  tMac: Buffer;
  tKey: Buffer;
  tVerify: Buffer;
  mExpand: Buffer;
}

const tweakCache = new Map<string, NtorTweaks>();

export function ntorTweaks(protoid: string): NtorTweaks {
  let t = tweakCache.get(protoid);
  if (!t) {
    if (protoid.length === 0 || !/^[\x21-\x7e]+$/.test(protoid)) throw err('NTOR_MALFORMED', 'PROTOID must be printable ASCII');
    t = {
      protoid: Buffer.from(protoid, 'ascii'),
      tMac: Buffer.from(`${protoid}:mac`, 'ascii'),
      tKey: Buffer.from(`${protoid}:key_extract`, 'ascii'),
      tVerify: Buffer.from(`${protoid}:verify`, 'ascii'),
      mExpand: Buffer.from(`${protoid}:key_expand`, 'ascii'),
    };
    tweakCache.set(protoid, t);
  }
  return t;
}

const SERVER = Buffer.from('Server', 'ascii');

/**
 * tor-spec 5.2.2 (KDF-RFC5869): HKDF-SHA256 with salt t_key and info m_expand. Its extract step
 * is KEY_SEED = H(secret_input, t_key) of 5.1.4, so this is the whole ntor key expansion.
 */
export function ntorKdf(secretInput: Uint8Array, protoid: string, keyLength: number): Buffer {
  // RFC 5869 caps the output at 255 hash lengths.
  if (!Number.isInteger(keyLength) || keyLength < 1 || keyLength > 255 * 32) throw err('NTOR_MALFORMED', `bad key length ${keyLength}`);
  const t = ntorTweaks(protoid);
  return hkdfSha256(secretInput, t.tKey, t.mExpand, keyLength);
}

/** H(x, t) of tor-spec 5.1.4 is HMAC-SHA256 with t as the key. */
function h(t: Buffer, ...x: Uint8Array[]): Buffer {
  return hmacSha256(t, ...x);
}

/**
 * secret_input = EXP(Y,x)|EXP(B,x)|ID|B|X|Y|PROTOID (client) = EXP(X,y)|EXP(X,b)|ID|B|X|Y|PROTOID
 * (server); from it verify and AUTH = H(verify|ID|B|Y|X|PROTOID|"Server", t_mac).
 */
function derive(t: NtorTweaks, dh1: Buffer, dh2: Buffer, id: Uint8Array, B: Uint8Array, X: Uint8Array, Y: Uint8Array): { secretInput: Buffer; auth: Buffer } {
  const secretInput = Buffer.concat([dh1, dh2, id, B, X, Y, t.protoid]);
  const verify = h(t.tVerify, secretInput);
  const auth = h(t.tMac, verify, id, B, Y, X, t.protoid, SERVER);
  wipe(verify);
  return { secretInput, auth };
}

/** What the client keeps between sending the onionskin and receiving the reply. */
export interface NtorClientState {
  readonly protoid: string;
  readonly id: Buffer;
  readonly B: Buffer;
  readonly ephemeral: X25519KeyPair;
}

function checkId(id: Uint8Array): void {
  if (id.length === 0) throw err('NTOR_MALFORMED', 'node ID must not be empty');
}

/** CREATE2 handshake data: ID | B | X (tor-spec 5.1.4). */
export function ntorClientCreate(opts: { id: Uint8Array; onionKey: Uint8Array; protoid?: string; ephemeral?: X25519KeyPair }): { state: NtorClientState; onionskin: Buffer } {
  const protoid = opts.protoid ?? NTOR_PROTOID_BITCLOUD;
  ntorTweaks(protoid);
  checkId(opts.id);
  if (opts.onionKey.length !== X25519_BYTES) throw err('NTOR_MALFORMED', `onion key must be ${X25519_BYTES} bytes`);
  const ephemeral = opts.ephemeral
    ? { secretKey: Buffer.from(opts.ephemeral.secretKey), publicKey: x25519Public(opts.ephemeral.secretKey) }
    : x25519Generate();
  const id = Buffer.from(opts.id);
  const B = Buffer.from(opts.onionKey);
  return { state: { protoid, id, B, ephemeral }, onionskin: Buffer.concat([id, B, ephemeral.publicKey]) };
}

/**
 * Relay side: check the onionskin, pick the onion key named by B (current or previous), answer
 * Y | AUTH and derive `keyLength` bytes of key material.
 */
export function ntorServerRespond(opts: {
  onionskin: Uint8Array; id: Uint8Array; onionKeys: X25519KeyPair[]; protoid?: string; keyLength: number; ephemeral?: X25519KeyPair;
}): { reply: Buffer; keys: Buffer } {
  const protoid = opts.protoid ?? NTOR_PROTOID_BITCLOUD;
  const t = ntorTweaks(protoid);
  checkId(opts.id);
  const idLen = opts.id.length;
  const skin = opts.onionskin;
  if (skin.length !== idLen + 2 * X25519_BYTES) {
    throw err('NTOR_MALFORMED', `onionskin is ${skin.length} bytes, expected ${idLen + 2 * X25519_BYTES}`);
  }
  const id = skin.subarray(0, idLen);
  const B = skin.subarray(idLen, idLen + X25519_BYTES);
  const X = skin.subarray(idLen + X25519_BYTES);
  if (!Buffer.from(id.buffer, id.byteOffset, id.length).equals(opts.id)) throw err('NTOR_WRONG_ID', 'onionskin is addressed to another node');
  const key = opts.onionKeys.find((k) => Buffer.from(B.buffer, B.byteOffset, B.length).equals(k.publicKey));
  if (!key) throw err('NTOR_UNKNOWN_KEY', 'onionskin names an onion key this node does not hold (rotated out?)');
  // A fresh pair already holds Y; a given one (test vectors) has its public half recomputed.
  const ephemeral = opts.ephemeral ? { secretKey: opts.ephemeral.secretKey, publicKey: x25519Public(opts.ephemeral.secretKey) } : x25519Generate();
  const Y = ephemeral.publicKey;
  // Both throw CRYPTO_ZERO_SHARED_SECRET when X is a low-order point (tor-spec 5.1.4: "check").
  const xy = x25519(ephemeral.secretKey, X);
  const xb = x25519(key.secretKey, X);
  if (!opts.ephemeral) wipe(ephemeral.secretKey);
  const { secretInput, auth } = derive(t, xy, xb, id, B, X, Y);
  wipe(xy);
  wipe(xb);
  const keys = ntorKdf(secretInput, protoid, opts.keyLength);
  wipe(secretInput);
  return { reply: Buffer.concat([Y, auth]), keys };
}

/** Client side: check AUTH in constant time and derive the key material. Consumes `state` on success. */
export function ntorClientFinish(state: NtorClientState, reply: Uint8Array, keyLength: number): Buffer {
  if (reply.length !== NTOR_REPLY_LEN) throw err('NTOR_MALFORMED', `ntor reply is ${reply.length} bytes, expected ${NTOR_REPLY_LEN}`);
  const t = ntorTweaks(state.protoid);
  const Y = reply.subarray(0, X25519_BYTES);
  const auth = reply.subarray(X25519_BYTES, NTOR_REPLY_LEN);
  const x = state.ephemeral.secretKey;
  const yx = x25519(x, Y);
  const bx = x25519(x, state.B);
  const d = derive(t, yx, bx, state.id, state.B, state.ephemeral.publicKey, Y);
  wipe(yx);
  wipe(bx);
  if (!constantTimeEqual(d.auth, auth)) {
    wipe(d.secretInput);
    throw err('NTOR_BAD_AUTH', 'server AUTH did not verify');
  }
  const keys = ntorKdf(d.secretInput, state.protoid, keyLength);
  wipe(d.secretInput);
  // The state is single-use: the ephemeral secret is not needed once the keys exist.
  wipe(x);
  return keys;
}
