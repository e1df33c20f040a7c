// SPEC.md §5 (tor-spec 5.2.2, 6.1): tor1 relay crypto. Per hop and per direction: AES-128-CTR
// with an all-zero IV, one keystream for the life of the circuit, and a running SHA-1 digest
// seeded with Df (forward) or Db (backward) over every payload originated at or recognized by
// that hop, hashed with its digest field zeroed.
//
// tor1 is malleable (a hop can tag a cell by XOR and see the tag at the other end); a circuit
// that negotiates Counter Galois Onion (cgo.ts, SPEC.md §5.6) uses that instead, behind the same
// interface (hop-crypto.ts, chosen by relay-crypto.ts).
import { err } from '../errors';
import { aes128CtrStream, latin1Word, RunningSha1, type StreamXor } from './primitives';
import { RELAY_DATA_MAX, RELAY_DIGEST_OFFSET, RELAY_RECOGNIZED_OFFSET } from '../wire/relay-msg';
import type { ClientHopCrypto, RelayHopCrypto } from './hop-crypto';

/** tor-spec 5.2.2: key material split Df(20) | Db(20) | Kf(16) | Kb(16). */
export const TOR1_DIGEST_LEN = 20;
export const TOR1_CIPHER_KEY_LEN = 16;
export const TOR1_KEY_LEN = 2 * TOR1_DIGEST_LEN + 2 * TOR1_CIPHER_KEY_LEN; // 72

/** One direction of one hop: a cipher and a running digest. */
class Tor1Direction {
  private readonly cipher: StreamXor;
  private readonly digest = new RunningSha1();
  /** The full digest after the last originated/recognized cell (latin1, one char per byte). */
  private last = '\0'.repeat(TOR1_DIGEST_LEN);

  constructor(digestSeed: Buffer, cipherKey: Buffer) {
    this.cipher = aes128CtrStream(cipherKey);
    this.digest.update(digestSeed);
  }

  /** Hot path. Keystream XOR in place; no per-cell allocation (keystream is batched). */
  crypt(payload: Buffer): void {
    this.cipher.xorInPlace(payload);
  }

  /** The payloads of many cells end to end: one OpenSSL call instead of a JavaScript XOR per cell. */
  cryptMany(payloads: Buffer): void {
    this.cipher.xorManyInPlace(payloads);
  }

  /**
   * Hot path, allocation-free. tor-spec 6.1: recognized = 0, digest field = 0, hash the whole
   * payload into the running digest, then put the first 4 digest bytes in the digest field.
   */
  originate(payload: Buffer): void {
    payload.writeUInt16BE(0, RELAY_RECOGNIZED_OFFSET);
    payload.writeUInt32BE(0, RELAY_DIGEST_OFFSET);
    this.digest.update(payload);
    this.last = this.digest.digestString();
    payload.writeUInt32BE(latin1Word(this.last), RELAY_DIGEST_OFFSET);
  }

  /**
   * Hot path, allocation-free. tor-spec 6.1: a payload is recognized when recognized == 0 and
   * the first 4 bytes of the running digest, updated with the payload (digest field zeroed),
   * equal its digest field. Only then does the running digest keep the update; an unrecognized
   * payload leaves the state and the payload bytes exactly as they were.
   */
  recognize(payload: Buffer): boolean {
    if (payload.readUInt16BE(RELAY_RECOGNIZED_OFFSET) !== 0) return false;
    const received = payload.readUInt32BE(RELAY_DIGEST_OFFSET);
    payload.writeUInt32BE(0, RELAY_DIGEST_OFFSET);
    // The payload goes into the running digest at once and is taken back on a mismatch (rare: a
    // zero `recognized` field almost always means the cell is this hop's), so a recognized cell
    // is hashed once and the state copied once (RunningSha1.tryUpdate).
    const d = this.digest.tryUpdate(payload);
    payload.writeUInt32BE(received, RELAY_DIGEST_OFFSET);
    if (latin1Word(d) !== received) {
      this.digest.undo();
      return false;
    }
    this.last = d;
    return true;
  }

  lastDigest(): Buffer {
    return Buffer.from(this.last, 'latin1');
  }

  /** SPEC.md §5.6.2 (tor1 alike): the circuit is freed; cipher and digest states end now. */
  destroy(): void {
    this.cipher.destroy();
    this.digest.destroy();
    this.last = '\0'.repeat(TOR1_DIGEST_LEN);
  }
}

function wiped(): never {
  throw err('CRYPTO_WIPED', 'this tor1 layer was wiped when its circuit closed');
}

function split(keys: Buffer): { df: Buffer; db: Buffer; kf: Buffer; kb: Buffer } {
  if (keys.length !== TOR1_KEY_LEN) throw err('CRYPTO_BAD_LENGTH', `tor1 needs ${TOR1_KEY_LEN} bytes of key material, got ${keys.length}`);
  let o = 0;
  const df = keys.subarray(o, (o += TOR1_DIGEST_LEN));
  const db = keys.subarray(o, (o += TOR1_DIGEST_LEN));
  const kf = keys.subarray(o, (o += TOR1_CIPHER_KEY_LEN));
  const kb = keys.subarray(o, (o += TOR1_CIPHER_KEY_LEN));
  return { df, db, kf, kb };
}

/**
 * The client side of one hop. Which digest last changed decides what lastDigest() returns: the
 * client asks for it after sending (forward digest, to remember what a SENDME must echo) or
 * after receiving (backward digest, to authenticate its own SENDMEs), as Tor and Arti do.
 */
export function createTor1ClientHop(keys: Buffer): ClientHopCrypto {
  const { df, db, kf, kb } = split(keys);
  const fwd = new Tor1Direction(df, kf);
  const back = new Tor1Direction(db, kb);
  let lastUsed: Tor1Direction = fwd;
  let gone = false;
  return {
    originate(payload) { if (gone) wiped(); fwd.originate(payload); lastUsed = fwd; },
    encryptOutbound(payload) { if (gone) wiped(); fwd.crypt(payload); },
    encryptOutboundMany(payloads) { if (gone) wiped(); fwd.cryptMany(payloads); },
    decryptInbound(payload) {
      if (gone) wiped();
      back.crypt(payload);
      if (!back.recognize(payload)) return false;
      lastUsed = back;
      return true;
    },
    cryptInboundMany(payloads) { if (gone) wiped(); back.cryptMany(payloads); },
    recognizeInbound(payload) {
      if (gone) wiped();
      if (!back.recognize(payload)) return false;
      lastUsed = back;
      return true;
    },
    lastDigest() { if (gone) wiped(); return lastUsed.lastDigest(); },
    relayDataMax: RELAY_DATA_MAX,
    wipe() {
      if (gone) return;
      gone = true;
      fwd.destroy();
      back.destroy();
    },
  };
}

/** The relay side of one hop. */
export function createTor1RelayHop(keys: Buffer): RelayHopCrypto {
  const { df, db, kf, kb } = split(keys);
  const fwd = new Tor1Direction(df, kf);
  const back = new Tor1Direction(db, kb);
  let lastUsed: Tor1Direction = fwd;
  let gone = false;
  return {
    decryptOutbound(payload) {
      if (gone) wiped();
      fwd.crypt(payload);
      if (!fwd.recognize(payload)) return false;
      lastUsed = fwd;
      return true;
    },
    cryptOutboundMany(payloads) { if (gone) wiped(); fwd.cryptMany(payloads); },
    recognizeOutbound(payload) {
      if (gone) wiped();
      if (!fwd.recognize(payload)) return false;
      lastUsed = fwd;
      return true;
    },
    encryptInboundMany(payloads) { if (gone) wiped(); back.cryptMany(payloads); },
    originate(payload) { if (gone) wiped(); back.originate(payload); lastUsed = back; },
    encryptInbound(payload) { if (gone) wiped(); back.crypt(payload); },
    lastDigest() { if (gone) wiped(); return lastUsed.lastDigest(); },
    relayDataMax: RELAY_DATA_MAX,
    wipe() {
      if (gone) return;
      gone = true;
      fwd.destroy();
      back.destroy();
    },
  };
}
