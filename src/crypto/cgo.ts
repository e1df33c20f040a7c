// SPEC.md §5.6 (Tor proposal 359): Counter Galois Onion (CGO) relay crypto, the UIV+ construction.
// Primitives: AES-128 (node:crypto, ECB for single blocks and CTR for streams) and POLYVAL
// (@noble/ciphers), both through primitives.ts. Names follow the proposal: ET is the tweakable
// block cipher (LRW2 over AES with POLYVAL), PRF the tweaked CTR stream, UIV the wide-block cipher
// on the 509-byte cell body T(16) | C(493), and per hop and direction a state (K, N, T').
//
// Clients only ever DEC_UIV and relays only ever ENC_UIV (proposal 359 §"Relay operations"):
// encryption is non-malleable, so a bit flipped anywhere in a cell garbles the whole cell and
// every cell after it (T' chains), and the hop it is for does not recognize it.
//
// Every layer method works IN PLACE on the 509-byte payload of a RELAY / RELAY_EARLY cell; the
// cell command is the associated data (one byte of the UIV tweak).
import { err } from '../errors';
import { aes128Block, PolyvalHash, constantTimeEqual, randomBytes, wipe, type Aes128Block } from './primitives';
import { CellCommand } from '../wire/cell';
import { CGO_RELAY_DATA_MAX, relayPayloadFromCgo, relayPayloadToCgo } from '../wire/relay-msg';
import type { ClientHopCrypto, RelayHopCrypto } from './hop-crypto';

export const CGO_BLOCK_LEN = 16;
export const CGO_TAG_LEN = 16;
export const CGO_CELL_LEN = 509;
/** The part of the cell body after the tag: C. */
export const CGO_PAYLOAD_LEN = CGO_CELL_LEN - CGO_TAG_LEN; // 493
/** ET key (KB | KU) and PRF key (K | B): 32 bytes each. */
export const CGO_ET_KEY_LEN = 32;
export const CGO_PRF_KEY_LEN = 32;
/** UIV key (J | S). */
export const CGO_UIV_KEY_LEN = CGO_ET_KEY_LEN + CGO_PRF_KEY_LEN; // 64
/** One direction's seed: K (J | S) | N. */
export const CGO_STATE_SEED_LEN = CGO_UIV_KEY_LEN + CGO_BLOCK_LEN; // 80
/** Key material for one hop from the handshake: forward seed | backward seed (SPEC.md §5.6). */
export const CGO_KEY_LEN = 2 * CGO_STATE_SEED_LEN; // 160
/** lastDigest() length: the 16-byte SENDME tag padded with 4 zero bytes to tor1's 20. */
export const CGO_DIGEST_LEN = 20;
/** PRF_n1 starts 31 blocks into the stream (proposal 359: PRF(K, T, 1) offset). */
const PRF_N1_BLOCKS = 31;

/** A 16-byte buffer on its own (4-byte aligned) memory, as POLYVAL's digestInto requires. */
function block(): Buffer {
  return Buffer.from(new ArrayBuffer(CGO_BLOCK_LEN));
}

// Scratch shared by every CGO state: each operation fills and consumes it before it returns
// (single-threaded), so a key update allocates no per-state buffers.
/** ET tweak: H | AD | X_R | 2 zero bytes (POLYVAL pads to 512 anyway; the tail stays zero). */
const tweakScratch = Buffer.alloc(CGO_TAG_LEN + 1 + CGO_PAYLOAD_LEN + 2);
/** ET mask UH(KU, T). */
const maskScratch = block();
/** PRF counter IV. */
const ivScratch = block();
/** A tag kept across one UIV operation (the T a client or relay remembers as T'). */
const tagScratch = Buffer.alloc(CGO_TAG_LEN);

/**
 * POLYVAL tables for KU by how long the key has lived. A key at a hop that originates or
 * recognizes every cell is replaced after one cell, so it starts with @noble/ciphers' cheapest
 * tables (2-bit window: ~3 µs to build, ~5 µs per 512-byte tweak); a key that outlives
 * KU_WIDE_AFTER cells (a hop passing cells on) gets 4-bit tables (~6 µs to build, ~3.5 µs per
 * tweak, ~32 KB).
 */
const KU_WIDE_AFTER = 8;
/** Input-length hints that select those windows in @noble/ciphers (≤ 1 KiB: 2 bits; ≤ 64 KiB: 4). */
const POLYVAL_NARROW_HINT = 512;
const POLYVAL_WIDE_HINT = 2048;

/**
 * ET: the tweakable block cipher (LRW2): ENC_ET((KB,KU), T, M) = UH(KU,T) ^ AES(KB, M ^ UH(KU,T)),
 * with the tweak T = H(16) | AD(1) | X_R(493) hashed by POLYVAL (zero-padded to 512 bytes).
 */
export class EtCipher {
  private readonly kb: Aes128Block;
  private ku: PolyvalHash;
  /** KU, kept until its tables are widened. */
  private kuKey: Buffer | null;
  private uses = 0;

  constructor(keys: Uint8Array) {
    if (keys.length !== CGO_ET_KEY_LEN) throw err('CRYPTO_BAD_LENGTH', `CGO ET needs ${CGO_ET_KEY_LEN} key bytes, got ${keys.length}`);
    this.kb = aes128Block(keys.subarray(0, 16));
    this.kuKey = Buffer.from(keys.subarray(16, 32));
    this.ku = new PolyvalHash(this.kuKey, POLYVAL_NARROW_HINT);
  }

  private hashTweak(h: Uint8Array, ad: number, xr: Uint8Array): void {
    if (this.kuKey !== null && ++this.uses > KU_WIDE_AFTER) {
      this.ku.destroy();
      this.ku = new PolyvalHash(this.kuKey, POLYVAL_WIDE_HINT);
      wipe(this.kuKey);
      this.kuKey = null;
    }
    tweakScratch.set(h, 0);
    tweakScratch[CGO_TAG_LEN] = ad;
    tweakScratch.set(xr, CGO_TAG_LEN + 1);
    this.ku.hashInto(tweakScratch, maskScratch);
  }

  encrypt(h: Uint8Array, ad: number, xr: Uint8Array, b: Buffer): void {
    this.hashTweak(h, ad, xr);
    xorBlock(b, maskScratch);
    this.kb.encryptBlock(b);
    xorBlock(b, maskScratch);
  }

  decrypt(h: Uint8Array, ad: number, xr: Uint8Array, b: Buffer): void {
    this.hashTweak(h, ad, xr);
    xorBlock(b, maskScratch);
    this.kb.decryptBlock(b);
    xorBlock(b, maskScratch);
  }

  /** Erase KB and KU (their copies and POLYVAL tables); unusable afterwards. */
  destroy(): void {
    this.kb.destroy();
    this.ku.destroy();
    if (this.kuKey !== null) wipe(this.kuKey);
  }
}

function xorBlock(b: Uint8Array, mask: Uint8Array): void {
  for (let i = 0; i < CGO_BLOCK_LEN; i++) b[i] ^= mask[i];
}

/**
 * PRF((K, B), T, t) = CTR128-BE(K, IV + 31·t) with IV = POLYVAL(B, T) and the low six bits of
 * its last byte cleared (so the counter never carries out of that byte for these lengths). K
 * keeps one AES context for every cell (primitives.ts ctrXorInPlace), not one per cell.
 */
export class Prf {
  private readonly k: Aes128Block;
  private readonly b: PolyvalHash;

  constructor(keys: Uint8Array) {
    if (keys.length !== CGO_PRF_KEY_LEN) throw err('CRYPTO_BAD_LENGTH', `CGO PRF needs ${CGO_PRF_KEY_LEN} key bytes, got ${keys.length}`);
    this.k = aes128Block(keys.subarray(0, 16));
    // B hashes one 16-byte block per use: the smallest tables.
    this.b = new PolyvalHash(keys.subarray(16, 32), POLYVAL_NARROW_HINT);
  }

  private ivFor(t: Uint8Array): Buffer {
    this.b.hashInto(t, ivScratch);
    ivScratch[15] &= 0xc0;
    return ivScratch;
  }

  /** XOR the t=0 stream (tweak `t`) into `out` in place. */
  xorN0(t: Uint8Array, out: Uint8Array): void {
    this.k.ctrXorInPlace(this.ivFor(t), out, 0);
  }

  /** `n` bytes of the t=1 stream for tweak `t`. */
  n1(t: Uint8Array, n: number): Buffer {
    const out = Buffer.alloc(n);
    this.k.ctrXorInPlace(this.ivFor(t), out, PRF_N1_BLOCKS);
    return out;
  }

  /** Erase K and B (their copies and POLYVAL tables); unusable afterwards. */
  destroy(): void {
    this.k.destroy();
    this.b.destroy();
  }
}

/** UIV+: the wide-block cipher on a 509-byte cell body (X_L = first 16 bytes, X_R = the rest). */
export class Uiv {
  private j: EtCipher;
  private s: Prf;
  /** The current J | S (tests compare it with the vectors after an update). */
  private current: Buffer;

  constructor(keys: Uint8Array) {
    if (keys.length !== CGO_UIV_KEY_LEN) throw err('CRYPTO_BAD_LENGTH', `CGO UIV needs ${CGO_UIV_KEY_LEN} key bytes, got ${keys.length}`);
    this.current = Buffer.from(keys);
    this.j = new EtCipher(keys.subarray(0, CGO_ET_KEY_LEN));
    this.s = new Prf(keys.subarray(CGO_ET_KEY_LEN));
  }

  /** ENC_UIV: Y_L = ENC_ET(J, H | AD | X_R, X_L); Y_R = X_R ^ PRF_n0(S, Y_L). */
  encrypt(h: Uint8Array, ad: number, cell: Buffer): void {
    const left = cell.subarray(0, CGO_TAG_LEN);
    const right = cell.subarray(CGO_TAG_LEN, CGO_CELL_LEN);
    this.j.encrypt(h, ad, right, left);
    this.s.xorN0(left, right);
  }

  /** DEC_UIV: X_R = Y_R ^ PRF_n0(S, Y_L); X_L = DEC_ET(J, H | AD | X_R, Y_L). */
  decrypt(h: Uint8Array, ad: number, cell: Buffer): void {
    const left = cell.subarray(0, CGO_TAG_LEN);
    const right = cell.subarray(CGO_TAG_LEN, CGO_CELL_LEN);
    this.s.xorN0(left, right);
    this.j.decrypt(h, ad, right, left);
  }

  /**
   * UPDATE_UIV: (J', S', N') = PRF_n1(S, N); the keys change in place and N is overwritten. The
   * replaced J and S are erased (SPEC.md §5.6.2: the per-cell update is what gives CGO forward
   * secrecy within a circuit, so the old keys must not outlive it in memory).
   */
  update(nonce: Buffer): void {
    const seed = this.s.n1(nonce, CGO_UIV_KEY_LEN + CGO_BLOCK_LEN);
    const oldJ = this.j;
    const oldS = this.s;
    this.current.set(seed.subarray(0, CGO_UIV_KEY_LEN));
    this.j = new EtCipher(this.current.subarray(0, CGO_ET_KEY_LEN));
    this.s = new Prf(this.current.subarray(CGO_ET_KEY_LEN));
    seed.copy(nonce, 0, CGO_UIV_KEY_LEN);
    wipe(seed);
    oldJ.destroy();
    oldS.destroy();
  }

  /** A copy of the current J | S (tests only). */
  keys(): Buffer {
    return Buffer.from(this.current);
  }

  /** Erase J and S as update() erases the replaced ones, and the copy of J | S (SPEC.md §5.6.2). */
  destroy(): void {
    this.j.destroy();
    this.s.destroy();
    wipe(this.current);
  }
}

/** One direction of one hop: the UIV key K, the nonce N and the previous tag T'. */
export class CgoState {
  readonly uiv: Uiv;
  readonly nonce = block();
  readonly tag = block();

  /** `seed` is K | N (80 bytes); T' starts at zero. */
  constructor(seed: Uint8Array) {
    if (seed.length !== CGO_STATE_SEED_LEN) throw err('CRYPTO_BAD_LENGTH', `a CGO state needs ${CGO_STATE_SEED_LEN} seed bytes, got ${seed.length}`);
    this.uiv = new Uiv(seed.subarray(0, CGO_UIV_KEY_LEN));
    this.nonce.set(seed.subarray(CGO_UIV_KEY_LEN));
  }

  /** Erase K, N and T' (SPEC.md §5.6.2); unusable afterwards. */
  destroy(): void {
    this.uiv.destroy();
    wipe(this.nonce);
    wipe(this.tag);
  }
}

/**
 * The operations of proposal 359 on one direction's state; `cmd` is the cell command (AD). Each
 * takes the full 509-byte cell body and works in place.
 */
export const cgoOps = {
  /** Client, a layer it adds going forward: DEC_UIV with T', then T' = the T it was given. */
  clientEncryptOutbound(st: CgoState, cmd: number, cell: Buffer): void {
    tagScratch.set(cell.subarray(0, CGO_TAG_LEN));
    st.uiv.decrypt(st.tag, cmd, cell);
    st.tag.set(tagScratch);
  },
  /** Client, the hop a cell is for: T = N, encrypt, update. Returns the SENDME tag (the T sent at this layer). */
  clientOriginate(st: CgoState, cmd: number, cell: Buffer, sendmeTag: Buffer): void {
    cell.set(st.nonce, 0);
    cgoOps.clientEncryptOutbound(st, cmd, cell);
    st.uiv.update(st.nonce);
    sendmeTag.set(cell.subarray(0, CGO_TAG_LEN), 0);
  },
  /** Client, one layer inbound: DEC_UIV with T'; T' = the T received; recognized when the tag is N. */
  clientDecryptInbound(st: CgoState, cmd: number, cell: Buffer, sendmeTag: Buffer): boolean {
    tagScratch.set(cell.subarray(0, CGO_TAG_LEN));
    st.uiv.decrypt(st.tag, cmd, cell);
    st.tag.set(tagScratch);
    if (!constantTimeEqual(cell.subarray(0, CGO_TAG_LEN), st.nonce)) return false;
    // UPDATE(K, T): the new N is written over the copy of T, then kept.
    st.uiv.update(tagScratch);
    st.nonce.set(tagScratch);
    sendmeTag.set(st.tag, 0);
    return true;
  },
  /** Relay, forward: ENC_UIV with T'; T' = the T produced; recognized when it is N. */
  relayDecryptOutbound(st: CgoState, cmd: number, cell: Buffer, sendmeTag: Buffer): boolean {
    tagScratch.set(cell.subarray(0, CGO_TAG_LEN));
    st.uiv.encrypt(st.tag, cmd, cell);
    st.tag.set(cell.subarray(0, CGO_TAG_LEN));
    if (!constantTimeEqual(st.tag, st.nonce)) return false;
    st.uiv.update(st.nonce);
    sendmeTag.set(tagScratch, 0);
    return true;
  },
  /** Relay, backward, a cell passing through or originated here: ENC_UIV with T'; T' = the T produced. */
  relayEncryptInbound(st: CgoState, cmd: number, cell: Buffer): void {
    st.uiv.encrypt(st.tag, cmd, cell);
    st.tag.set(cell.subarray(0, CGO_TAG_LEN));
  },
  /** Relay, backward, originated here: T = N, encrypt, N = T, update. */
  relayOriginate(st: CgoState, cmd: number, cell: Buffer, sendmeTag: Buffer): void {
    cell.set(st.nonce, 0);
    cgoOps.relayEncryptInbound(st, cmd, cell);
    st.nonce.set(cell.subarray(0, CGO_TAG_LEN));
    st.uiv.update(st.nonce);
    sendmeTag.set(st.tag, 0);
  },
};

/**
 * SPEC.md §5.6.2: a hop's layer once its circuit is freed: every key erased as UPDATE erases the
 * replaced ones (key copies and POLYVAL tables zeroed, AES contexts finalized), the nonces, tags
 * and SENDME tags zeroed. The hop calls it once (a second wipe() does nothing).
 */
function wipeStates(fwd: CgoState, back: CgoState, tags: Buffer[]): void {
  fwd.destroy();
  back.destroy();
  for (const t of tags) wipe(t);
}

function wiped(): never {
  throw err('CRYPTO_WIPED', 'this CGO layer was wiped when its circuit closed');
}

function splitKeys(keys: Buffer): { fwd: CgoState; back: CgoState } {
  if (keys.length !== CGO_KEY_LEN) throw err('CRYPTO_BAD_LENGTH', `CGO needs ${CGO_KEY_LEN} bytes of key material, got ${keys.length}`);
  return {
    fwd: new CgoState(keys.subarray(0, CGO_STATE_SEED_LEN)),
    back: new CgoState(keys.subarray(CGO_STATE_SEED_LEN, CGO_KEY_LEN)),
  };
}

/**
 * The client side of one hop (hop-crypto.ts). originate() marks the payload as this hop's and
 * converts the relay message to the CGO layout (SPEC.md §5.6); the encryptOutbound() that
 * clientSealOutbound calls next on the same hop then runs proposal 359's originate.
 */
export function createCgoClientHop(keys: Buffer): ClientHopCrypto {
  const { fwd, back } = splitKeys(keys);
  const sentTag = Buffer.alloc(CGO_DIGEST_LEN);
  const receivedTag = Buffer.alloc(CGO_DIGEST_LEN);
  let last = sentTag;
  let originating = false;
  let gone = false;
  return {
    originate(payload) {
      if (gone) wiped();
      relayPayloadToCgo(payload);
      originating = true;
    },
    encryptOutbound(payload, cmd = CellCommand.RELAY) {
      if (gone) wiped();
      if (originating) {
        originating = false;
        cgoOps.clientOriginate(fwd, cmd, payload, sentTag);
        last = sentTag;
      } else {
        cgoOps.clientEncryptOutbound(fwd, cmd, payload);
      }
    },
    decryptInbound(payload, cmd = CellCommand.RELAY) {
      if (gone) wiped();
      if (!cgoOps.clientDecryptInbound(back, cmd, payload, receivedTag)) return false;
      relayPayloadFromCgo(payload);
      last = receivedTag;
      return true;
    },
    lastDigest() { if (gone) wiped(); return Buffer.from(last); },
    relayDataMax: CGO_RELAY_DATA_MAX,
    wipe() {
      if (gone) return;
      gone = true;
      wipeStates(fwd, back, [sentTag, receivedTag]);
    },
  };
}

/** The relay side of one hop (hop-crypto.ts); originate() then encryptInbound() as for the client. */
export function createCgoRelayHop(keys: Buffer): RelayHopCrypto {
  const { fwd, back } = splitKeys(keys);
  const sentTag = Buffer.alloc(CGO_DIGEST_LEN);
  const receivedTag = Buffer.alloc(CGO_DIGEST_LEN);
  let last = receivedTag;
  let originating = false;
  let gone = false;
  return {
    decryptOutbound(payload, cmd = CellCommand.RELAY) {
      if (gone) wiped();
      if (!cgoOps.relayDecryptOutbound(fwd, cmd, payload, receivedTag)) return false;
      relayPayloadFromCgo(payload);
      last = receivedTag;
      return true;
    },
    originate(payload) {
      if (gone) wiped();
      relayPayloadToCgo(payload);
      originating = true;
    },
    encryptInbound(payload, cmd = CellCommand.RELAY) {
      if (gone) wiped();
      if (originating) {
        originating = false;
        cgoOps.relayOriginate(back, cmd, payload, sentTag);
        last = sentTag;
      } else {
        cgoOps.relayEncryptInbound(back, cmd, payload);
      }
    },
    lastDigest() { if (gone) wiped(); return Buffer.from(last); },
    relayDataMax: CGO_RELAY_DATA_MAX,
    wipe() {
      if (gone) return;
      gone = true;
      wipeStates(fwd, back, [sentTag, receivedTag]);
    },
  };
}

/** `n` CGO hops from fresh random keys (tests and benchmarks). */
export function randomCgoHopPairs(n: number): { client: ClientHopCrypto[]; relays: RelayHopCrypto[] } {
  const client: ClientHopCrypto[] = [];
  const relays: RelayHopCrypto[] = [];
  for (let i = 0; i < n; i++) {
    const keys = randomBytes(CGO_KEY_LEN);
    client.push(createCgoClientHop(keys));
    relays.push(createCgoRelayHop(keys));
  }
  return { client, relays };
}
