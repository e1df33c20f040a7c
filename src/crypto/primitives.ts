// The only door to cryptographic primitives (SPEC.md §11.4). Everything else in the
// project calls these named operations; only src/crypto/ imports sodium-native or node:crypto.
import sodium from 'sodium-native';
import * as nodeCrypto from 'node:crypto';
import { Polyval } from '@noble/ciphers/_polyval.js';
import { err } from '../errors';

export const ED25519_PUBLIC_BYTES = 32;
export const ED25519_SECRET_BYTES = 64; // sodium layout: seed(32) || public(32)
export const ED25519_SEED_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;
export const X25519_BYTES = 32;

export function randomBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  if (n > 0) sodium.randombytes_buf(b);
  return b;
}

/**
 * A uniform number in [0, 1) from the CSPRNG (53 random bits, sodium): for choices an observer must
 * not predict — path and guard selection (SPEC.md §7.1) — where Math.random's state could be
 * recovered from a few outputs.
 */
export function secureRandom(): number {
  const b = randomBytes(8);
  // 21 high bits of the first word and 32 of the second: 53 bits, exactly representable.
  return ((b.readUInt32BE(0) >>> 11) * 2 ** 32 + b.readUInt32BE(4)) / 2 ** 53;
}

/** Shuffles `a` in place (Fisher–Yates with secureRandom) and returns it. */
export function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(secureRandom() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

/** Requests up to this size are served from the pool below; larger ones go straight to sodium. */
const RANDOM_POOL_MAX_REQUEST = 1024;
const randomPool = Buffer.alloc(16 * 1024);
let randomPoolPos = randomPool.length;

/**
 * Fill `b` with random bytes. Hot path: the relay-cell padding (SPEC.md §2.5) of every DATA cell
 * that is not full and of every SENDME. sodium's randombytes_buf reads the kernel CSPRNG at about
 * 6 ns a byte (3.5 us for one cell's padding), so small requests are served from a 16 KiB pool
 * refilled from OpenSSL's DRBG (randomFillSync: ~7.6 us per 16 KiB), each pool byte used once.
 * Only filler uses this; keys and nonces come from randomBytes (sodium) directly.
 */
export function randomFill(b: Buffer): void {
  const n = b.length;
  if (n === 0) return;
  if (n > RANDOM_POOL_MAX_REQUEST) { sodium.randombytes_buf(b); return; }
  if (randomPoolPos + n > randomPool.length) { nodeCrypto.randomFillSync(randomPool); randomPoolPos = 0; }
  randomPool.copy(b, 0, randomPoolPos, randomPoolPos + n);
  randomPool.fill(0, randomPoolPos, randomPoolPos + n); // a byte handed out is not kept
  randomPoolPos += n;
}

/** Constant-time equality; different lengths compare unequal (length is not secret). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  return sodium.sodium_memcmp(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length));
}

export function isAllZero(a: Uint8Array): boolean {
  return sodium.sodium_is_zero(Buffer.from(a.buffer, a.byteOffset, a.length));
}

// ---- Ed25519 ----
export interface Ed25519KeyPair { publicKey: Buffer; secretKey: Buffer }

export function ed25519Generate(): Ed25519KeyPair {
  const publicKey = Buffer.alloc(ED25519_PUBLIC_BYTES);
  const secretKey = Buffer.alloc(ED25519_SECRET_BYTES);
  sodium.crypto_sign_keypair(publicKey, secretKey);
  return { publicKey, secretKey };
}

export function ed25519FromSeed(seed: Uint8Array): Ed25519KeyPair {
  if (seed.length !== ED25519_SEED_BYTES) throw err('KEY_MALFORMED', `ed25519 seed must be ${ED25519_SEED_BYTES} bytes`);
  const publicKey = Buffer.alloc(ED25519_PUBLIC_BYTES);
  const secretKey = Buffer.alloc(ED25519_SECRET_BYTES);
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, Buffer.from(seed));
  return { publicKey, secretKey };
}

export function ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Buffer {
  if (secretKey.length !== ED25519_SECRET_BYTES) throw err('KEY_MALFORMED', 'ed25519 secret key must be 64 bytes');
  const sig = Buffer.alloc(ED25519_SIGNATURE_BYTES);
  sodium.crypto_sign_detached(sig, Buffer.from(message.buffer, message.byteOffset, message.length), Buffer.from(secretKey.buffer, secretKey.byteOffset, secretKey.length));
  return sig;
}

/** Never throws: wrong lengths verify as false. */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== ED25519_SIGNATURE_BYTES || publicKey.length !== ED25519_PUBLIC_BYTES) return false;
  try {
    return sodium.crypto_sign_verify_detached(
      Buffer.from(signature.buffer, signature.byteOffset, signature.length),
      Buffer.from(message.buffer, message.byteOffset, message.length),
      Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length),
    );
  } catch {
    return false;
  }
}

// ---- Ed25519 key blinding (SPEC.md §9.21.2): library group operations only ----
export const ED25519_SCALAR_BYTES = 32;

/** SHA-512 of the parts (64 bytes). */
export function sha512(...parts: Uint8Array[]): Buffer {
  const h = nodeCrypto.createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** A 64-byte value reduced mod ℓ (crypto_core_ed25519_scalar_reduce). */
export function ed25519ScalarReduce(wide: Uint8Array): Buffer {
  if (wide.length !== 64) throw err('CRYPTO_BAD_LENGTH', 'scalar_reduce takes 64 bytes');
  const out = Buffer.alloc(ED25519_SCALAR_BYTES);
  sodium.crypto_core_ed25519_scalar_reduce(out, Buffer.from(wide));
  return out;
}

/**
 * A + h·B for a valid point A and a scalar h (crypto_scalarmult_ed25519_base_noclamp,
 * crypto_core_ed25519_add). Throws HIDDEN_BLIND_INVALID for an invalid point or an identity result.
 */
export function ed25519PointAddBase(point: Uint8Array, scalar: Uint8Array): Buffer {
  if (point.length !== ED25519_PUBLIC_BYTES || scalar.length !== ED25519_SCALAR_BYTES) throw err('CRYPTO_BAD_LENGTH', 'ed25519 point and scalar are 32 bytes');
  const p = Buffer.from(point);
  if (!sodium.crypto_core_ed25519_is_valid_point(p)) throw err('HIDDEN_BLIND_INVALID', 'not a valid Ed25519 point');
  const hb = Buffer.alloc(ED25519_PUBLIC_BYTES);
  const out = Buffer.alloc(ED25519_PUBLIC_BYTES);
  try {
    sodium.crypto_scalarmult_ed25519_base_noclamp(hb, Buffer.from(scalar));
    sodium.crypto_core_ed25519_add(out, p, hb);
  } catch {
    throw err('HIDDEN_BLIND_INVALID', 'blinding gave the identity point');
  }
  if (!sodium.crypto_core_ed25519_is_valid_point(out)) throw err('HIDDEN_BLIND_INVALID', 'blinding gave an invalid point');
  return out;
}

/** The clamped secret scalar of an Ed25519 secret key (seed | public, 64 bytes). */
export function ed25519SecretScalar(secretKey: Uint8Array): Buffer {
  if (secretKey.length !== ED25519_SECRET_BYTES) throw err('KEY_MALFORMED', 'ed25519 secret key must be 64 bytes');
  const out = Buffer.alloc(ED25519_SCALAR_BYTES);
  sodium.extension_tweak_ed25519_sk_to_scalar(out, Buffer.from(secretKey));
  return out;
}

/** (a + b) mod ℓ (crypto_core_ed25519_scalar_add). */
export function ed25519ScalarAdd(a: Uint8Array, b: Uint8Array): Buffer {
  if (a.length !== ED25519_SCALAR_BYTES || b.length !== ED25519_SCALAR_BYTES) throw err('CRYPTO_BAD_LENGTH', 'ed25519 scalars are 32 bytes');
  const out = Buffer.alloc(ED25519_SCALAR_BYTES);
  sodium.crypto_core_ed25519_scalar_add(out, Buffer.from(a), Buffer.from(b));
  return out;
}

/** An Ed25519 signature with an expanded secret scalar (extension_tweak_ed25519_sign_detached). */
export function ed25519SignWithScalar(message: Uint8Array, scalar: Uint8Array, publicKey: Uint8Array): Buffer {
  if (scalar.length !== ED25519_SCALAR_BYTES || publicKey.length !== ED25519_PUBLIC_BYTES) throw err('CRYPTO_BAD_LENGTH', 'ed25519 scalar and key are 32 bytes');
  const sig = Buffer.alloc(ED25519_SIGNATURE_BYTES);
  sodium.extension_tweak_ed25519_sign_detached(sig, Buffer.from(message), Buffer.from(scalar), Buffer.from(publicKey));
  return sig;
}

// ---- X25519 ----
export interface X25519KeyPair { publicKey: Buffer; secretKey: Buffer }

export function x25519Generate(): X25519KeyPair {
  const secretKey = randomBytes(X25519_BYTES);
  return { publicKey: x25519Public(secretKey), secretKey };
}

export function x25519Public(secretKey: Uint8Array): Buffer {
  if (secretKey.length !== X25519_BYTES) throw err('KEY_MALFORMED', 'x25519 secret key must be 32 bytes');
  const pub = Buffer.alloc(X25519_BYTES);
  sodium.crypto_scalarmult_base(pub, Buffer.from(secretKey));
  return pub;
}

/** X25519(secret, public). Throws CRYPTO_ZERO_SHARED_SECRET on a low-order point (all-zero result). */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Buffer {
  if (secretKey.length !== X25519_BYTES || publicKey.length !== X25519_BYTES) throw err('CRYPTO_BAD_LENGTH', 'x25519 keys must be 32 bytes');
  const out = Buffer.alloc(X25519_BYTES);
  try {
    sodium.crypto_scalarmult(out, Buffer.from(secretKey), Buffer.from(publicKey));
  } catch {
    // libsodium refuses low-order points itself.
    throw err('CRYPTO_ZERO_SHARED_SECRET', 'x25519 produced an all-zero shared secret');
  }
  if (isAllZero(out)) throw err('CRYPTO_ZERO_SHARED_SECRET', 'x25519 produced an all-zero shared secret');
  return out;
}

// ---- sealed boxes to an Ed25519 key (SPEC.md §9.21.7) ----

/** libsodium's sealed-box overhead: an ephemeral X25519 key and a Poly1305 tag. */
export const SEALED_BOX_OVERHEAD = sodium.crypto_box_SEALBYTES; // 48

/**
 * `crypto_box_seal` to the X25519 form of an Ed25519 public key (`crypto_sign_ed25519_pk_to_curve25519`):
 * anyone can seal, only the holder of the Ed25519 secret opens. Throws KEY_MALFORMED for a key
 * that is not a valid Ed25519 point.
 */
export function sealToEd25519(publicKey: Uint8Array, message: Uint8Array): Buffer {
  if (publicKey.length !== ED25519_PUBLIC_BYTES) throw err('KEY_MALFORMED', 'ed25519 public key must be 32 bytes');
  const xpk = Buffer.alloc(X25519_BYTES);
  try { sodium.crypto_sign_ed25519_pk_to_curve25519(xpk, Buffer.from(publicKey)); } catch { throw err('KEY_MALFORMED', 'not an ed25519 public key'); }
  const out = Buffer.alloc(message.length + SEALED_BOX_OVERHEAD);
  sodium.crypto_box_seal(out, Buffer.from(message), xpk);
  return out;
}

/**
 * Open a sealed box made by `sealToEd25519` for `keyPair`; null when it does not open (not for this key, or altered).
 * The X25519 secret lives in an ordinary buffer, zeroed before return, as the Ed25519 secret it
 * comes from does. Not `sodium_malloc`: each of those is four memory mappings that Node unmaps
 * only after a collection and a later turn of the event loop, so about 16,000 openings in one go
 * exhausted the kernel's mapping limit and aborted the process (found by `npm run fuzz`).
 */
export function openSealedEd25519(keyPair: Ed25519KeyPair, sealed: Uint8Array): Buffer | null {
  if (sealed.length < SEALED_BOX_OVERHEAD) return null;
  const xpk = Buffer.alloc(X25519_BYTES);
  const xsk = Buffer.alloc(X25519_BYTES);
  try {
    sodium.crypto_sign_ed25519_pk_to_curve25519(xpk, keyPair.publicKey);
    sodium.crypto_sign_ed25519_sk_to_curve25519(xsk, keyPair.secretKey);
    const out = Buffer.alloc(sealed.length - SEALED_BOX_OVERHEAD);
    return sodium.crypto_box_seal_open(out, Buffer.from(sealed), xpk, xsk) ? out : null;
  } catch {
    return null;
  } finally {
    xsk.fill(0);
  }
}

// ---- hashes, MACs, KDF ----
export function sha256(...parts: Uint8Array[]): Buffer {
  const h = nodeCrypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

// ---- argon2id (memory-hard; SPEC.md §6.4.1) ----
export const ARGON2_SALT_BYTES = sodium.crypto_pwhash_SALTBYTES;

function argon2Check(out: Buffer, salt: Uint8Array, memoryKib: number, ops: number): void {
  if (out.length < sodium.crypto_pwhash_BYTES_MIN || salt.length !== sodium.crypto_pwhash_SALTBYTES
    || ops < sodium.crypto_pwhash_OPSLIMIT_MIN || memoryKib * 1024 < sodium.crypto_pwhash_MEMLIMIT_MIN) {
    throw err('CRYPTO_BAD_LENGTH', 'argon2id: output, salt, ops or memory out of range');
  }
}

/** argon2id (libsodium ALG_ARGON2ID13, one lane) off the event loop, on libuv's thread pool. */
export function argon2id(input: Uint8Array, salt: Uint8Array, memoryKib: number, ops: number, outLen = 32): Promise<Buffer> {
  const out = Buffer.alloc(outLen);
  argon2Check(out, salt, memoryKib, ops);
  return new Promise((resolve, reject) => {
    sodium.crypto_pwhash_async(out, input, salt, ops, memoryKib * 1024, sodium.crypto_pwhash_ALG_ARGON2ID13, (e: Error | null) => {
      if (e) reject(err('CRYPTO_INTERNAL', `argon2id failed: ${e.message}`, undefined, e)); else resolve(out);
    });
  });
}

export function sha1(...parts: Uint8Array[]): Buffer {
  const h = nodeCrypto.createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = nodeCrypto.createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** RFC 5869 HKDF-SHA256 (extract with salt, expand with info). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Buffer {
  return Buffer.from(nodeCrypto.hkdfSync('sha256', ikm, salt, info, length));
}

/** BLAKE2b with a chosen output length (default 32: BLAKE2b-256). */
export function blake2b(data: Uint8Array | Uint8Array[], outLen = 32, key?: Uint8Array): Buffer {
  const out = Buffer.alloc(outLen);
  const parts = Array.isArray(data) ? data : [data];
  if (parts.length === 1) {
    sodium.crypto_generichash(out, Buffer.from(parts[0].buffer, parts[0].byteOffset, parts[0].length), key ? Buffer.from(key) : undefined);
    return out;
  }
  sodium.crypto_generichash_batch(out, parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length)), key ? Buffer.from(key) : undefined);
  return out;
}

/** One BLAKE2b state, reused by blake2bInto (calls are synchronous, so never shared by two at once). */
const B2_STATE = Buffer.alloc(sodium.crypto_generichash_STATEBYTES);

/**
 * Unkeyed BLAKE2b of the concatenation of `parts`, written into `out` (its length, 16..64, is the
 * digest length). Nothing is allocated: for the thousands of small hashes of a Merkle tree
 * (src/storage/audit.ts), where a new array and output buffer per hash cost as much as the hash.
 */
export function blake2bInto(out: Uint8Array, ...parts: Uint8Array[]): void {
  sodium.crypto_generichash_init(B2_STATE, null, out.length);
  for (const p of parts) sodium.crypto_generichash_update(B2_STATE, p);
  sodium.crypto_generichash_final(B2_STATE, out);
}

/**
 * An incremental BLAKE2b (digest length 16..64): for hashing a large buffer in pieces, with other
 * work in between (src/storage/share.ts, hashInPieces).
 */
export class Blake2bHasher {
  private readonly state = Buffer.alloc(sodium.crypto_generichash_STATEBYTES);

  constructor(private readonly outLen = 32) {
    sodium.crypto_generichash_init(this.state, null, outLen);
  }

  update(part: Uint8Array): this {
    sodium.crypto_generichash_update(this.state, part);
    return this;
  }

  digest(): Buffer {
    const out = Buffer.alloc(this.outLen);
    sodium.crypto_generichash_final(this.state, out);
    return out;
  }
}

/** Incremental SHA-256 / SHA-1 hashers for streaming use. */
export function createHash(alg: 'sha256' | 'sha1'): nodeCrypto.Hash {
  return nodeCrypto.createHash(alg);
}

// ---- AEAD ----
export const XCHACHA_KEY_BYTES = 32;
export const XCHACHA_NONCE_BYTES = 24;
export const XCHACHA_TAG_BYTES = 16;

/**
 * Ciphertext and tag (plaintext + 16 bytes), written into `into` when given (exactly that long, not
 * overlapping the plaintext), else into a new buffer. Every byte of the output is written, so it is
 * never zeroed first: on this machine zeroing a fresh 1 MiB costs more than encrypting it.
 */
export function xchachaEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array, into?: Uint8Array): Buffer {
  const len = plaintext.length + XCHACHA_TAG_BYTES;
  if (into && into.length !== len) throw err('CRYPTO_BAD_LENGTH', 'AEAD output must be the plaintext length plus the tag');
  const out = into ? Buffer.from(into.buffer, into.byteOffset, len) : Buffer.allocUnsafe(len);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out, Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.length), ad ? Buffer.from(ad) : null, null, Buffer.from(nonce), Buffer.from(key));
  return out;
}

/** Throws CRYPTO_AEAD_FAILED when the tag does not verify. */
export function xchachaDecrypt(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad?: Uint8Array): Buffer {
  if (ciphertext.length < XCHACHA_TAG_BYTES) throw err('CRYPTO_AEAD_FAILED', 'ciphertext shorter than the tag');
  // Not zeroed: libsodium writes every byte when the tag verifies, and nothing is returned when not.
  const out = Buffer.allocUnsafe(ciphertext.length - XCHACHA_TAG_BYTES);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.length), ad ? Buffer.from(ad) : null, Buffer.from(nonce), Buffer.from(key));
  } catch {
    throw err('CRYPTO_AEAD_FAILED', 'authentication tag did not verify');
  }
  return out;
}

// ---- AES-128-CTR stream cipher (tor1 relay crypto) ----
export interface StreamCipher { update(data: Buffer): Buffer; updateInPlace(data: Buffer): void }

export function aes128Ctr(key: Uint8Array, iv: Uint8Array = Buffer.alloc(16)): StreamCipher {
  if (key.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'aes-128 key must be 16 bytes');
  const c = nodeCrypto.createCipheriv('aes-128-ctr', key, iv);
  return {
    update: (data) => c.update(data),
    // Hot path (per cell): CTR output is the same length as its input, so copy back.
    updateInPlace: (data) => { const o = c.update(data); o.copy(data); },
  };
}

// ---- AES-128 single blocks and POLYVAL (Counter Galois Onion relay crypto, SPEC.md §5.6) ----

/**
 * One AES-128 key, long-lived: single 16-byte blocks in place (ECB, no padding) and short
 * CTR128-BE keystreams from any counter (CGO's PRF, SPEC.md §5.6).
 */
export interface Aes128Block {
  encryptBlock(block: Buffer): void;
  decryptBlock(block: Buffer): void;
  /**
   * XOR into `data` (at most AES128_CTR_SHORT_MAX bytes) the AES-128-CTR keystream (128-bit
   * big-endian counter, as OpenSSL's aes-128-ctr) that starts at counter `iv` + `firstBlock`.
   * Same bytes as createCipheriv('aes-128-ctr', key, iv + firstBlock) on `data`, without a new
   * cipher context per call: the counter blocks are written out and encrypted by this key's one
   * ECB context in a single update.
   */
  ctrXorInPlace(iv: Uint8Array, data: Uint8Array, firstBlock?: number): void;
  /** Zero this object's copy of the key and drop its cipher contexts; unusable afterwards. */
  destroy(): void;
}

/** Longest keystream ctrXorInPlace makes in one call (a CGO cell body is 509 bytes). */
export const AES128_CTR_SHORT_MAX = 1024;
/** Counter blocks for ctrXorInPlace: shared (single-threaded, filled and consumed in one call). */
const ctrCounters = Buffer.alloc(AES128_CTR_SHORT_MAX);
const ctrView = new DataView(ctrCounters.buffer, ctrCounters.byteOffset, ctrCounters.length);

/**
 * Write `blocks` consecutive 128-bit big-endian counters, the first `iv` + `first` (wrapping
 * mod 2^128), into ctrCounters.
 */
function fillCounters(iv: Uint8Array, first: number, blocks: number): void {
  const v = new DataView(iv.buffer, iv.byteOffset, 16);
  let c0 = v.getUint32(0), c1 = v.getUint32(4), c2 = v.getUint32(8), c3 = v.getUint32(12);
  // + first (first < 2^32 here: at most a few thousand).
  const s = c3 + first;
  c3 = s >>> 0;
  if (s > 0xffffffff) { c2 = (c2 + 1) >>> 0; if (c2 === 0) { c1 = (c1 + 1) >>> 0; if (c1 === 0) c0 = (c0 + 1) >>> 0; } }
  for (let off = 0, end = blocks << 4; off < end; off += 16) {
    ctrView.setUint32(off, c0); ctrView.setUint32(off + 4, c1); ctrView.setUint32(off + 8, c2); ctrView.setUint32(off + 12, c3);
    c3 = (c3 + 1) >>> 0;
    if (c3 === 0) { c2 = (c2 + 1) >>> 0; if (c2 === 0) { c1 = (c1 + 1) >>> 0; if (c1 === 0) c0 = (c0 + 1) >>> 0; } }
  }
}

/**
 * ECB keeps no state between blocks, so one cipher object serves every block and every keystream;
 * each direction is made on first use (CGO relays only encrypt, clients only decrypt). A class,
 * not a closure: a CGO endpoint makes two of these per cell (its keys change with every cell).
 */
class Aes128Key implements Aes128Block {
  private readonly k: Buffer;
  private enc: nodeCrypto.Cipher | null = null;
  private dec: nodeCrypto.Decipher | null = null;

  constructor(key: Uint8Array) {
    if (key.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'aes-128 key must be 16 bytes');
    this.k = Buffer.from(key);
  }

  private encryptor(): nodeCrypto.Cipher {
    if (this.enc === null) { this.enc = nodeCrypto.createCipheriv('aes-128-ecb', this.k, null); this.enc.setAutoPadding(false); }
    return this.enc;
  }

  encryptBlock(block: Buffer): void {
    block.set(this.encryptor().update(block));
  }

  decryptBlock(block: Buffer): void {
    if (this.dec === null) { this.dec = nodeCrypto.createDecipheriv('aes-128-ecb', this.k, null); this.dec.setAutoPadding(false); }
    block.set(this.dec.update(block));
  }

  ctrXorInPlace(iv: Uint8Array, data: Uint8Array, firstBlock = 0): void {
    if (iv.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'aes-128-ctr iv must be 16 bytes');
    const n = data.length;
    if (n > AES128_CTR_SHORT_MAX) throw err('CRYPTO_BAD_LENGTH', `short CTR keystream is at most ${AES128_CTR_SHORT_MAX} bytes`);
    if (!Number.isInteger(firstBlock) || firstBlock < 0 || firstBlock > 0xffffffff) throw err('CRYPTO_BAD_LENGTH', 'CTR block offset out of range');
    if (n === 0) return;
    const blocks = (n + 15) >>> 4;
    fillCounters(iv, firstBlock, blocks);
    const ks = this.encryptor().update(ctrCounters.subarray(0, blocks << 4));
    for (let i = 0; i < n; i++) data[i] ^= ks[i];
  }

  destroy(): void {
    wipe(this.k);
    // final() frees the OpenSSL context now, which cleanses its key schedule (for AES-128 the
    // first round key is the key itself); dropping the object alone would leave it in memory until
    // the garbage collector ran (SPEC.md §5.6.2: the replaced key is erased at once). Every input
    // was whole blocks, so there is nothing left to flush and no padding to check.
    this.enc?.final();
    this.dec?.final();
    this.enc = null;
    this.dec = null;
  }
}

export function aes128Block(key: Uint8Array): Aes128Block {
  return new Aes128Key(key);
}

/** The per-message state @noble/ciphers' GHASH keeps in protected fields (see PolyvalHash). */
interface PolyvalAccumulator { s0: number; s1: number; s2: number; s3: number; finished: boolean }

/**
 * POLYVAL (RFC 8452) from @noble/ciphers under one key, reusable: the key's tables are built once
 * and each hashInto() starts from the zero accumulator. Every input is zero-padded to whole blocks.
 * The reset writes the accumulator GHASH keeps in protected fields (its whole per-message state), so
 * package.json pins the minor version; the CGO unit tests compare it with fresh @noble instances.
 * It holds a Polyval rather than extending it: under the TypeScript loader (which keeps class
 * names with a static block) constructing a subclass of Polyval takes about 2.5 times as long.
 */
export class PolyvalHash {
  private readonly p: Polyval;
  private readonly acc: PolyvalAccumulator;

  /**
   * `inputLength`: the usual input size; @noble/ciphers sizes its key tables by it (a window of 2
   * bits up to 1 KiB, 4 bits up to 64 KiB, 8 above: larger = faster hashing, slower keying and
   * more memory — about 16, 32 and 96 KB).
   */
  constructor(key: Uint8Array, inputLength?: number) {
    if (key.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'POLYVAL key must be 16 bytes');
    this.p = new Polyval(key, inputLength);
    this.acc = this.p as unknown as PolyvalAccumulator;
  }

  /** POLYVAL(key, data zero-padded to 16-byte blocks) into out[0..16) (out 4-byte aligned). */
  hashInto(data: Uint8Array, out: Uint8Array): void {
    const acc = this.acc;
    acc.s0 = 0; acc.s1 = 0; acc.s2 = 0; acc.s3 = 0;
    acc.finished = false;
    this.p.update(data);
    this.p.digestInto(out);
  }

  /** Zero the key's tables; the object is unusable afterwards. */
  destroy(): void {
    this.p.destroy();
  }
}

// ---- TLS certificates (self-signed, made at start-up; identity never comes from them, SPEC.md §1.2) ----
export function generateTlsKeyPair(): { keyPem: string; publicKeyDer: Buffer } {
  const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyDer: publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
  };
}

export { nodeCrypto };

// ---- additions for keys, ntor and tor1 (issue 2) ----

/** SHAKE-256 XOF output of `outLen` bytes (used to regenerate the tor1 test-vector plaintexts). */
export function shake256(data: Uint8Array, outLen: number): Buffer {
  return nodeCrypto.createHash('shake256', { outputLength: outLen }).update(data).digest();
}

/** Overwrite secret bytes with zeros once they are no longer needed (JS engines do not elide this). */
export function wipe(b: Uint8Array): void {
  b.fill(0);
}

/** A keystream XORed into data in place; the stream position advances by data.length. */
export interface StreamXor {
  xorInPlace(data: Uint8Array): void;
  /**
   * Same bytes as xorInPlace(data), for a large buffer (the payloads of many cells, end to end):
   * whatever keystream is already made is XORed in JavaScript, the rest (from two cells on) is
   * one Cipher.update over the data itself (OpenSSL does the XOR) copied back in place.
   */
  xorManyInPlace(data: Uint8Array): void;
  /**
   * Zero the keystream made but not used and finalize the cipher (OpenSSL frees, and so clears,
   * its context and key schedule); unusable afterwards (SPEC.md §5.6.2, the circuit is freed).
   */
  destroy(): void;
}

/**
 * Largest keystream batch. Cipher.update costs ~1-2 ns/byte at 4 KiB and ~0.5 ns/byte at 16 KiB
 * (its per-call output allocation dominates small batches), so a busy hop direction grows its
 * batch to this size; an idle one keeps a small batch (see AES_CTR_FIRST_BATCH_BYTES).
 */
export const AES_CTR_BATCH_BYTES = 16 * 1024;
/** First keystream batch of a hop direction (two cells); each refill doubles it up to the maximum. */
export const AES_CTR_FIRST_BATCH_BYTES = 1024;
/** Below this, xorManyInPlace uses the keystream batches (a lone Cipher.update costs ~1-2 µs). */
const XOR_MANY_MIN_BYTES = 1024;
/** The plaintext for keystream batches: zeros, shared (Cipher.update only reads it). */
const KEYSTREAM_ZEROS = Buffer.alloc(AES_CTR_BATCH_BYTES);

/** Word XOR below reads keystream words as little-endian; big-endian hosts XOR byte by byte. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * AES-128-CTR (zero IV unless given) as a keystream that is XORed into data in place.
 * Hot path (per cell): node:crypto's Cipher.update always allocates its output, so the
 * keystream is produced a batch at a time (one allocation per batch, not per cell; batches
 * start at AES_CTR_FIRST_BATCH_BYTES and double up to `batchBytes`) and
 * XORed in JavaScript 4 bytes at a time through Int32Array views of the data's and the
 * keystream's ArrayBuffers (the data view is kept for the next call: one hop direction nearly
 * always sees the same link buffer). When the keystream is not at the data's alignment, each
 * keystream word is assembled from two aligned words by shifts. About twice as fast as byte
 * XOR, no per-call allocation, same bytes. CTR keystream is position-only, so batching gives
 * the same bytes as encrypting each cell separately.
 */
export function aes128CtrStream(key: Uint8Array, iv: Uint8Array = Buffer.alloc(16), batchBytes = AES_CTR_BATCH_BYTES): StreamXor {
  if (key.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'aes-128 key must be 16 bytes');
  if (iv.length !== 16) throw err('CRYPTO_BAD_LENGTH', 'aes-128-ctr iv must be 16 bytes');
  const c = nodeCrypto.createCipheriv('aes-128-ctr', key, iv);
  if (!Number.isInteger(batchBytes) || batchBytes < 1) throw err('CRYPTO_BAD_LENGTH', 'keystream batch must be a positive integer');
  const zeros = batchBytes <= KEYSTREAM_ZEROS.length ? KEYSTREAM_ZEROS : Buffer.alloc(batchBytes);
  let batch = Math.min(AES_CTR_FIRST_BATCH_BYTES, batchBytes);
  let ks: Buffer = Buffer.alloc(0);
  let k32: Int32Array<ArrayBufferLike> = new Int32Array(0);
  let pos = 0;
  let viewOf: ArrayBufferLike | null = null;
  let d32: Int32Array<ArrayBufferLike> = k32;
  const xs: StreamXor = {
    destroy(): void {
      wipe(ks);
      ks = Buffer.alloc(0);
      k32 = new Int32Array(0);
      pos = 0;
      viewOf = null;
      d32 = k32;
      try { c.final(); } catch { /* finalized already */ }
    },
    xorManyInPlace(data: Uint8Array): void {
      const left = ks.length - pos;
      if (left >= data.length) { xs.xorInPlace(data); return; }
      // CTR is position-only: the keystream made so far covers the first `left` bytes, and the
      // cipher's counter stands exactly after it, so Cipher.update goes on from there. Only that
      // leftover is XORed in JavaScript (no new keystream batch is made for it).
      if (left > 0) xs.xorInPlace(data.subarray(0, left));
      // One Cipher.update allocates its output and costs more than a JavaScript XOR below a few
      // cells: a short rest takes a keystream batch.
      if (data.length - left < XOR_MANY_MIN_BYTES) { xs.xorInPlace(data.subarray(left)); return; }
      data.set(c.update(data.subarray(left)), left);
      // A direction that goes by runs keeps its keystream batches small, so that the leftover a
      // short run leaves (XORed in JavaScript by the next run) stays small too.
      batch = Math.min(AES_CTR_FIRST_BATCH_BYTES, batchBytes);
    },
    xorInPlace(data: Uint8Array): void {
      const n = data.length;
      if (data.buffer !== viewOf) { viewOf = data.buffer; d32 = new Int32Array(viewOf, 0, viewOf.byteLength >>> 2); }
      let off = 0;
      while (off < n) {
        if (pos === ks.length) {
          ks = c.update(zeros.subarray(0, batch));
          batch = Math.min(batch * 2, batchBytes);
          pos = 0;
          k32 = new Int32Array(ks.buffer, 0, ks.buffer.byteLength >>> 2); // one view per batch
        }
        const m = Math.min(n - off, ks.length - pos);
        const at = data.byteOffset + off; // absolute position of data[off] in its ArrayBuffer
        const kat = ks.byteOffset + pos; // and of the keystream byte that pairs with it
        let j = LITTLE_ENDIAN ? Math.min(m, (4 - (at & 3)) & 3) : m;
        for (let i = 0; i < j; i++) data[off + i] ^= ks[pos + i];
        const dw = (at + j) >>> 2;
        const kb = kat + j;
        const ki = kb >>> 2;
        const sh = (kb & 3) << 3;
        let words = (m - j) >>> 2;
        if (sh === 0) {
          for (let w = 0; w < words; w++) d32[dw + w] ^= k32[ki + w];
        } else {
          // Word w of keystream = bytes kb+4w..kb+4w+3 = high bytes of k32[ki+w], low of k32[ki+w+1].
          if (ki + words >= k32.length) words = Math.max(0, k32.length - 1 - ki);
          const rs = 32 - sh;
          for (let w = 0; w < words; w++) d32[dw + w] ^= (k32[ki + w] >>> sh) | (k32[ki + w + 1] << rs);
        }
        j += words << 2;
        for (; j < m; j++) data[off + j] ^= ks[pos + j];
        off += m;
        pos += m;
      }
    },
  };
  return xs;
}

// ---- running SHA-1 for tor1 digests (hot path) ----

/**
 * A running SHA-1 (node:crypto / OpenSSL) that can be read without ending it, and whose last
 * update can be taken back: tor1 (tor-spec 6.1) updates one running digest per hop and direction
 * with every cell and must read it after each. Reading copies the OpenSSL state (Hash.copy(),
 * a native handle) — once per cell originated and once per cell whose `recognized` field is zero,
 * never on cells a middle hop merely forwards. Digests are read as 20-character latin1 strings
 * (one char per byte): node:crypto makes a fresh ArrayBuffer for a Buffer digest, which costs
 * more than the hash of a cell.
 *
 * Taking an update back (tryUpdate / undo): a cell is hashed into the running state at once and
 * undone in the rare case its digest does not match, instead of being tried on a copy and hashed
 * again. Undo replays from a checkpoint (a state copy taken every UNDO_SPAN tried updates) the
 * updates made since, kept in a journal; so a tried cell costs one hash and one copy of its bytes.
 * The project never hand-writes a hash (SPEC.md §5: tor1 from node:crypto). SHA-1 is used only
 * because tor1 requires it; nothing new may use it.
 */
export class RunningSha1 {
  static readonly DIGEST_LEN = 20;
  /** Tried updates between checkpoints (a longer span copies the state less, undoes slower). */
  static readonly UNDO_SPAN = 16;
  private h: nodeCrypto.Hash = nodeCrypto.createHash('sha1');
  private saved: nodeCrypto.Hash | null = null;
  /** The state before the journal's updates (null: none; the next tryUpdate takes one). */
  private base: nodeCrypto.Hash | null = null;
  /** The tried updates since `base`, end to end, with their lengths (grown on demand: a circuit
   * that recognizes a few control cells keeps a small one). */
  private journal: Buffer | null = null;
  private readonly lens: number[] = [];
  private journalBytes = 0;

  update(data: Uint8Array): this {
    this.h.update(data);
    this.base = null; // the journal no longer leads from the checkpoint to the state
    return this;
  }

  /** The digest of everything hashed so far as a latin1 string (20 chars); the state goes on. */
  digestString(): string {
    return this.h.copy().digest('binary');
  }

  /** Write the digest of everything hashed so far into out[offset..offset+20); the state goes on. */
  digestInto(out: Uint8Array, offset = 0): void {
    out.set(this.h.copy().digest(), offset);
  }

  /**
   * Hash `data` into the state and return the new digest (latin1, 20
   * chars); undo() takes this update back until the next one. Hot path: no allocation but the
   * state copy the digest needs, and a checkpoint every UNDO_SPAN calls.
   */
  tryUpdate(data: Uint8Array): string {
    if (this.base === null || this.lens.length === RunningSha1.UNDO_SPAN) {
      this.base = this.h.copy();
      this.lens.length = 0;
      this.journalBytes = 0;
    }
    let j = this.journal;
    if (j === null || this.journalBytes + data.length > j.length) {
      const bigger = Buffer.allocUnsafeSlow(2 * (this.journalBytes + data.length)); // own memory: long-lived
      if (j !== null) j.copy(bigger, 0, 0, this.journalBytes);
      j = this.journal = bigger;
    }
    j.set(data, this.journalBytes);
    this.journalBytes += data.length;
    this.lens.push(data.length);
    this.h.update(data);
    return this.h.copy().digest('binary');
  }

  /** Take back the last tryUpdate (throws CRYPTO_INTERNAL when the last change was not one). */
  undo(): void {
    if (this.base === null || this.lens.length === 0) throw err('CRYPTO_INTERNAL', 'RunningSha1.undo without tryUpdate');
    const last = this.lens.pop()!;
    this.journalBytes -= last;
    const h = this.base.copy();
    for (let i = 0, off = 0; i < this.lens.length; off += this.lens[i++]) h.update(this.journal!.subarray(off, off + this.lens[i]));
    this.h = h;
  }

  /**
   * Write the digest of everything hashed so far followed by `data` into out[offset..offset+20),
   * leaving the state as it was.
   */
  digestWithInto(data: Uint8Array, out: Uint8Array, offset = 0): void {
    out.set(this.h.copy().update(data).digest(), offset);
  }

  /**
   * The circuit is freed: end every hash state now (node:crypto frees the OpenSSL context when a
   * digest is taken, which cleanses it) and zero the journal of tried cells; unusable afterwards.
   */
  destroy(): void {
    for (const h of [this.h, this.base, this.saved]) { try { h?.digest(); } catch { /* ended already */ } }
    this.base = null;
    this.saved = null;
    if (this.journal !== null) wipe(this.journal);
    this.journal = null;
    this.lens.length = 0;
    this.journalBytes = 0;
  }

  /** Remember the current state (one level). */
  save(): void {
    this.saved = this.h.copy();
  }

  /** Return to the state remembered by save(). */
  restore(): void {
    if (!this.saved) throw err('CRYPTO_INTERNAL', 'RunningSha1.restore without save');
    this.h = this.saved;
    this.saved = null;
    this.base = null;
  }
}

/** The first 4 bytes of a latin1 digest string as a big-endian uint32. */
export function latin1Word(s: string): number {
  return ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
}
