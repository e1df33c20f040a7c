// SPEC.md §8.7: reward blocks, their canonical bytes, hash chain and
// multi-signature. A fixed layout, not protobuf: it is canonical by construction (one encoding per
// block), so the hash of the bytes received is the hash every authority computed.
import { err } from '../errors';
import { ED25519_PUBLIC_BYTES, ED25519_SIGNATURE_BYTES, blake2b, ed25519Sign, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import { type IssuanceSchedule, allocate, mintFor, scheduledMint } from './reward';

export const REWARD_BLOCK_VERSION = 1;
export const REWARD_SIGNATURE_DOMAIN = Buffer.from('bitcloud reward block v1\0', 'ascii');
export const REWARD_HASH_BYTES = 32;
export const GENESIS_PREVIOUS_HASH: Buffer = Buffer.alloc(REWARD_HASH_BYTES);
/** Fixed part of the body: version u8 | height u64 | previous hash [32] | epoch u64 | minted u64 | count u32. */
const BODY_HEADER_LEN = 1 + 8 + REWARD_HASH_BYTES + 8 + 8 + 4; // 61
const ALLOCATION_LEN = ED25519_PUBLIC_BYTES + 8; // 40
const SIGNATURE_ENTRY_LEN = ED25519_PUBLIC_BYTES * 2 + ED25519_SIGNATURE_BYTES; // 128
export const MAX_ALLOCATIONS = 1_000_000;
const U64_MAX = (1n << 64n) - 1n;

export interface RewardBlock {
  height: number;
  previousHash: Buffer;
  epoch: number;
  minted: bigint;
  /** Relay fingerprint → units, ascending fingerprint order, every amount > 0, summing to `minted`. */
  allocations: ReadonlyMap<string, bigint>;
}

export interface RewardSignature {
  /** Identity key of the authority. */
  authority: Buffer;
  /** The signing key that made the signature (its certificate is checked by `RewardAuthorities`). */
  signingKey: Buffer;
  signature: Buffer;
}

export interface SignedRewardBlock {
  block: RewardBlock;
  /** The exact body bytes received: what is hashed and what the signatures cover. */
  body: Buffer;
  hash: Buffer;
  signatures: RewardSignature[];
}

const malformed = (m: string) => err('REWARD_MALFORMED', m);

function checkSafe(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw malformed(`${name} must be an integer in [0, 2^53-1], got ${v}`);
}

// ---- body ----

/** Canonical body bytes. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH for a block that breaks SPEC §8.7. */
export function encodeRewardBlock(b: RewardBlock): Buffer {
  checkSafe('height', b.height);
  checkSafe('epoch', b.epoch);
  if (b.previousHash.length !== REWARD_HASH_BYTES) throw malformed('previous hash must be 32 bytes');
  if (typeof b.minted !== 'bigint' || b.minted < 0n || b.minted > U64_MAX) throw malformed('minted must be a u64');
  if (b.allocations.size > MAX_ALLOCATIONS) throw malformed('too many allocations');
  const out = Buffer.alloc(BODY_HEADER_LEN + ALLOCATION_LEN * b.allocations.size);
  out[0] = REWARD_BLOCK_VERSION;
  out.writeBigUInt64BE(BigInt(b.height), 1);
  b.previousHash.copy(out, 9);
  out.writeBigUInt64BE(BigInt(b.epoch), 41);
  out.writeBigUInt64BE(b.minted, 49);
  out.writeUInt32BE(b.allocations.size, 57);
  let off = BODY_HEADER_LEN;
  let prev = '';
  let sum = 0n;
  for (const [fp, amount] of b.allocations) {
    if (!/^[0-9a-f]{64}$/.test(fp)) throw malformed(`allocation key ${fp} is not a fingerprint`);
    if (fp <= prev) throw malformed('allocations must be in strictly ascending fingerprint order');
    if (typeof amount !== 'bigint' || amount <= 0n || amount > U64_MAX) throw malformed(`allocation for ${fp} must be a positive u64`);
    out.write(fp, off, 'hex');
    out.writeBigUInt64BE(amount, off + ED25519_PUBLIC_BYTES);
    off += ALLOCATION_LEN;
    sum += amount;
    prev = fp;
  }
  if (sum !== b.minted) throw err('REWARD_SUM_MISMATCH', `allocations sum to ${sum}, minted is ${b.minted}`);
  return out;
}

function readSafeU64(buf: Buffer, off: number, name: string): number {
  const v = buf.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`${name} exceeds 2^53-1`);
  return Number(v);
}

/** Parses body bytes. Throws REWARD_MALFORMED or REWARD_SUM_MISMATCH, nothing else. */
export function decodeRewardBlock(bytes: Uint8Array): RewardBlock {
  if (!(bytes instanceof Uint8Array) || bytes.length < BODY_HEADER_LEN) throw malformed('reward block body too short');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf[0] !== REWARD_BLOCK_VERSION) throw malformed(`unknown reward block version ${buf[0]}`);
  const count = buf.readUInt32BE(57);
  if (count > MAX_ALLOCATIONS) throw malformed('too many allocations');
  if (buf.length !== BODY_HEADER_LEN + count * ALLOCATION_LEN) throw malformed(`body of ${buf.length} bytes does not hold ${count} allocations`);
  const minted = buf.readBigUInt64BE(49);
  const allocations = new Map<string, bigint>();
  let prev = '';
  let sum = 0n;
  for (let i = 0, off = BODY_HEADER_LEN; i < count; i++, off += ALLOCATION_LEN) {
    const fp = buf.toString('hex', off, off + ED25519_PUBLIC_BYTES);
    if (fp <= prev) throw malformed('allocations must be in strictly ascending fingerprint order');
    const amount = buf.readBigUInt64BE(off + ED25519_PUBLIC_BYTES);
    if (amount === 0n) throw malformed(`zero allocation for ${fp}`);
    allocations.set(fp, amount);
    sum += amount;
    prev = fp;
  }
  if (sum !== minted) throw err('REWARD_SUM_MISMATCH', `allocations sum to ${sum}, minted is ${minted}`);
  return {
    height: readSafeU64(buf, 1, 'height'),
    previousHash: Buffer.from(buf.subarray(9, 41)),
    epoch: readSafeU64(buf, 41, 'epoch'),
    minted,
    allocations,
  };
}

/** SPEC §8.7: a block's hash is BLAKE2b-256 of its body bytes; the next block names it. */
export function rewardBlockHash(body: Uint8Array): Buffer {
  return blake2b(body, REWARD_HASH_BYTES);
}

// ---- building and signing (authority side) ----

/** Where the chain stands after the blocks verified so far. */
export interface ChainTip { height: number; hash: Buffer; epoch: number }

/**
 * The block for `epoch` on top of `tip` (null: genesis): mints the schedule's amount for its height,
 * or 0 when nothing was proven, allocated by `allocate`. Returns the block and its body bytes.
 */
export function nextRewardBlock(
  tip: ChainTip | null, epoch: number, proven: ReadonlyMap<string, bigint | number>, schedule?: IssuanceSchedule,
): { block: RewardBlock; body: Buffer; hash: Buffer } {
  const height = tip ? tip.height + 1 : 0;
  if (tip && epoch <= tip.epoch) throw err('REWARD_CHAIN_BAD_EPOCH', `epoch ${epoch} is not after the tip's ${tip.epoch}`);
  const minted = mintFor(height, proven, schedule);
  const block: RewardBlock = { height, previousHash: tip ? tip.hash : GENESIS_PREVIOUS_HASH, epoch, minted, allocations: allocate(minted, proven) };
  const body = encodeRewardBlock(block);
  return { block, body, hash: rewardBlockHash(body) };
}

export function signRewardBlock(body: Uint8Array, authority: Uint8Array, signingKey: Ed25519KeyPair): RewardSignature {
  if (authority.length !== ED25519_PUBLIC_BYTES) throw malformed('authority identity must be 32 bytes');
  return {
    authority: Buffer.from(authority),
    signingKey: Buffer.from(signingKey.publicKey),
    signature: ed25519Sign(Buffer.concat([REWARD_SIGNATURE_DOMAIN, body]), signingKey.secretKey),
  };
}

/** SPEC §8.7 stored/served form: body length u32 | body | signature count u8 | count × (authority [32] | signing key [32] | signature [64]). */
export function encodeSignedRewardBlock(body: Uint8Array, signatures: readonly RewardSignature[]): Buffer {
  if (signatures.length > 255) throw malformed('at most 255 signatures');
  const seen = new Set<string>();
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  parts.push(head, Buffer.from(body), Buffer.from([signatures.length]));
  for (const s of signatures) {
    if (s.authority.length !== ED25519_PUBLIC_BYTES || s.signingKey.length !== ED25519_PUBLIC_BYTES || s.signature.length !== ED25519_SIGNATURE_BYTES) {
      throw malformed('bad signature entry lengths');
    }
    const a = s.authority.toString('hex');
    if (seen.has(a)) throw malformed(`two signatures by authority ${a}`);
    seen.add(a);
    parts.push(s.authority, s.signingKey, s.signature);
  }
  return Buffer.concat(parts);
}

/** Parses the stored form. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH only; signatures are not checked here. */
export function decodeSignedRewardBlock(bytes: Uint8Array): SignedRewardBlock {
  if (!(bytes instanceof Uint8Array) || bytes.length < 5) throw malformed('signed reward block too short');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const bodyLen = buf.readUInt32BE(0);
  if (buf.length < 4 + bodyLen + 1) throw malformed('signed reward block truncated');
  const body = Buffer.from(buf.subarray(4, 4 + bodyLen));
  const n = buf[4 + bodyLen];
  if (buf.length !== 4 + bodyLen + 1 + n * SIGNATURE_ENTRY_LEN) throw malformed(`length does not hold ${n} signatures`);
  const block = decodeRewardBlock(body);
  const signatures: RewardSignature[] = [];
  const seen = new Set<string>();
  for (let i = 0, off = 5 + bodyLen; i < n; i++, off += SIGNATURE_ENTRY_LEN) {
    const authority = Buffer.from(buf.subarray(off, off + 32));
    const a = authority.toString('hex');
    if (seen.has(a)) throw malformed(`two signatures by authority ${a}`);
    seen.add(a);
    signatures.push({ authority, signingKey: Buffer.from(buf.subarray(off + 32, off + 64)), signature: Buffer.from(buf.subarray(off + 64, off + 128)) });
  }
  return { block, body, hash: rewardBlockHash(body), signatures };
}

// ---- verification (any client) ----

/**
 * The authorities a verifier trusts. `accepts` says whether `signingKey` is a valid signing key of
 * the authority with identity `authority` for this block (the directory's certificate check goes here).
 */
export interface RewardAuthorities {
  readonly configured: number;
  accepts(authority: Buffer, signingKey: Buffer, block: RewardBlock): boolean;
}

/** A fixed list: each authority signs with its identity key itself, or with one of the listed signing keys. */
export function staticAuthorities(list: readonly { identity: Uint8Array; signingKeys?: readonly Uint8Array[] }[]): RewardAuthorities {
  const keys = new Map<string, Set<string>>();
  for (const a of list) {
    const id = Buffer.from(a.identity).toString('hex');
    keys.set(id, new Set([id, ...(a.signingKeys ?? []).map((k) => Buffer.from(k).toString('hex'))]));
  }
  return {
    configured: list.length,
    accepts: (authority, signingKey) => keys.get(authority.toString('hex'))?.has(signingKey.toString('hex')) ?? false,
  };
}

/** More than half of the configured authorities (SPEC §6, as for the consensus). */
export function majorityOf(configured: number): number {
  return Math.floor(configured / 2) + 1;
}

export interface ChainState {
  /** Height of the last verified block; -1 before genesis. */
  height: number;
  tipHash: Buffer;
  /** Epoch of the last verified block; -1 before genesis. */
  epoch: number;
  totalMinted: bigint;
  balances: Map<string, bigint>;
}

export function emptyChainState(): ChainState {
  return { height: -1, tipHash: GENESIS_PREVIOUS_HASH, epoch: -1, totalMinted: 0n, balances: new Map() };
}

export interface ChainOptions {
  /** When given, each block must mint exactly the schedule's amount for its height, or 0 with no allocations. */
  schedule?: IssuanceSchedule;
}

/**
 * SPEC §8.7: checks one block against the chain so far and, only when every check passes, adds it
 * to `state` (mutated). Signatures by unknown authorities or keys are ignored (not counted); a
 * signature by an accepted key that does not verify fails the block.
 */
export function applyRewardBlock(
  state: ChainState, input: Uint8Array | SignedRewardBlock, authorities: RewardAuthorities, threshold: number, opts: ChainOptions = {},
): SignedRewardBlock {
  const sb = input instanceof Uint8Array ? decodeSignedRewardBlock(input) : input;
  const b = sb.block;
  if (b.height !== state.height + 1) throw err('REWARD_CHAIN_BAD_HEIGHT', `expected height ${state.height + 1}, got ${b.height}`);
  if (!b.previousHash.equals(state.tipHash)) throw err('REWARD_CHAIN_BROKEN_LINK', `block ${b.height} does not name the hash of block ${state.height}`);
  if (b.epoch <= state.epoch) throw err('REWARD_CHAIN_BAD_EPOCH', `block ${b.height} is for epoch ${b.epoch}, not after ${state.epoch}`);
  if ((b.minted === 0n) !== (b.allocations.size === 0)) throw err('REWARD_MINT_MISMATCH', 'a block mints nothing exactly when it allocates nothing');
  if (opts.schedule && b.minted !== 0n && b.minted !== scheduledMint(b.height, opts.schedule)) {
    throw err('REWARD_MINT_MISMATCH', `block ${b.height} mints ${b.minted}, the schedule says ${scheduledMint(b.height, opts.schedule)}`);
  }
  const msg = Buffer.concat([REWARD_SIGNATURE_DOMAIN, sb.body]);
  let valid = 0;
  for (const s of sb.signatures) {
    if (!authorities.accepts(s.authority, s.signingKey, b)) continue;
    if (!ed25519Verify(s.signature, msg, s.signingKey)) {
      throw err('REWARD_BAD_SIGNATURE', `signature by authority ${s.authority.toString('hex')} on block ${b.height} does not verify`);
    }
    valid++;
  }
  if (valid < threshold) throw err('REWARD_TOO_FEW_SIGNATURES', `block ${b.height} has ${valid} valid authority signatures, needs ${threshold}`);
  state.height = b.height;
  state.tipHash = sb.hash;
  state.epoch = b.epoch;
  state.totalMinted += b.minted;
  for (const [fp, a] of b.allocations) state.balances.set(fp, (state.balances.get(fp) ?? 0n) + a);
  return sb;
}

/**
 * Verifies a whole chain from genesis and returns the balances (SPEC §8.7). Throws a BitcloudError
 * naming the first bad block: REWARD_MALFORMED, REWARD_SUM_MISMATCH, REWARD_CHAIN_BAD_HEIGHT,
 * REWARD_CHAIN_BROKEN_LINK, REWARD_CHAIN_BAD_EPOCH, REWARD_MINT_MISMATCH, REWARD_BAD_SIGNATURE,
 * REWARD_TOO_FEW_SIGNATURES. `threshold` defaults to more than half of the configured authorities.
 */
export function verifyChain(
  blocks: Iterable<Uint8Array | SignedRewardBlock>, authorities: RewardAuthorities, threshold = majorityOf(authorities.configured), opts: ChainOptions = {},
): ChainState {
  if (!Number.isInteger(threshold) || threshold < majorityOf(authorities.configured)) {
    throw err('REWARD_BAD_INPUT', `threshold must be at least ${majorityOf(authorities.configured)} of ${authorities.configured}`);
  }
  const state = emptyChainState();
  for (const blk of blocks) applyRewardBlock(state, blk, authorities, threshold, opts);
  return state;
}

/** True when `s` is a good Ed25519 signature by `s.signingKey` over the block body (SPEC §8.7.2). Does not check certificates. */
export function rewardSignatureVerifies(body: Uint8Array, s: RewardSignature): boolean {
  return ed25519Verify(s.signature, Buffer.concat([REWARD_SIGNATURE_DOMAIN, body]), s.signingKey);
}

// ---- chain bundle: what GET /bitcloud/rewards serves (SPEC §8.7.4) ----

export const REWARD_BUNDLE_MAGIC = Buffer.from('BCRW', 'ascii');
export const REWARD_BUNDLE_VERSION = 1;
/** A bundle carries at most this many certificates, each at most 512 bytes (SPEC §6.2.5). */
export const MAX_BUNDLE_CERTIFICATES = 1024;
export const MAX_CERTIFICATE_BYTES = 512;
/** Largest response a verifier reads (a server sends fewer blocks per response, at least one). */
export const MAX_REWARD_BUNDLE_BYTES = 64 * 1024 * 1024;
const BUNDLE_HEADER_LEN = 4 + 1 + 8 + 4; // magic | version | chain length u64 | certificate count u32

export interface RewardChainBundle {
  /** Number of blocks the server holds (its tip height + 1; 0 for an empty chain). */
  chainLength: number;
  /** Key-certificate envelopes (SPEC §6.3), unverified: each vouches only for itself. */
  certificates: Buffer[];
  /** Consecutive signed blocks, decoded (signatures not yet checked). */
  blocks: SignedRewardBlock[];
}

/**
 * SPEC §8.7.4: magic "BCRW" | version u8 = 1 | chain length u64 | certificate count u32 |
 * count × (len u32 | certificate envelope) | block count u32 | count × (len u32 | signed block).
 */
export function encodeRewardChainBundle(chainLength: number, certificates: readonly Uint8Array[], signedBlocks: readonly Uint8Array[]): Buffer {
  checkSafe('chain length', chainLength);
  if (certificates.length > MAX_BUNDLE_CERTIFICATES) throw malformed(`at most ${MAX_BUNDLE_CERTIFICATES} certificates in a bundle`);
  const head = Buffer.alloc(BUNDLE_HEADER_LEN);
  REWARD_BUNDLE_MAGIC.copy(head, 0);
  head[4] = REWARD_BUNDLE_VERSION;
  head.writeBigUInt64BE(BigInt(chainLength), 5);
  head.writeUInt32BE(certificates.length, 13);
  const parts: Buffer[] = [head];
  const lenPrefixed = (b: Uint8Array) => { const l = Buffer.alloc(4); l.writeUInt32BE(b.length); parts.push(l, Buffer.from(b.buffer, b.byteOffset, b.length)); };
  for (const c of certificates) {
    if (c.length === 0 || c.length > MAX_CERTIFICATE_BYTES) throw malformed('a certificate is 1 to 512 bytes');
    lenPrefixed(c);
  }
  const n = Buffer.alloc(4);
  n.writeUInt32BE(signedBlocks.length);
  parts.push(n);
  for (const b of signedBlocks) lenPrefixed(b);
  return Buffer.concat(parts);
}

/** Parses a bundle. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH only (never a RangeError). */
export function decodeRewardChainBundle(bytes: Uint8Array): RewardChainBundle {
  if (!(bytes instanceof Uint8Array) || bytes.length < BUNDLE_HEADER_LEN + 4) throw malformed('reward chain bundle too short');
  if (bytes.length > MAX_REWARD_BUNDLE_BYTES) throw malformed(`reward chain bundle exceeds ${MAX_REWARD_BUNDLE_BYTES} bytes`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (!buf.subarray(0, 4).equals(REWARD_BUNDLE_MAGIC)) throw malformed('not a reward chain bundle (bad magic)');
  if (buf[4] !== REWARD_BUNDLE_VERSION) throw malformed(`unknown reward chain bundle version ${buf[4]}`);
  const chainLength = readSafeU64(buf, 5, 'chain length');
  const nCerts = buf.readUInt32BE(13);
  if (nCerts > MAX_BUNDLE_CERTIFICATES) throw malformed(`${nCerts} certificates, at most ${MAX_BUNDLE_CERTIFICATES}`);
  let off = BUNDLE_HEADER_LEN;
  // Each item: a u32 length that must fit in what is left.
  const item = (what: string, min: number, max: number): Buffer => {
    if (off + 4 > buf.length) throw malformed(`bundle truncated before a ${what} length`);
    const len = buf.readUInt32BE(off);
    if (len < min || len > max) throw malformed(`${what} of ${len} bytes is outside [${min}, ${max}]`);
    if (off + 4 + len > buf.length) throw malformed(`bundle truncated inside a ${what}`);
    const out = Buffer.from(buf.subarray(off + 4, off + 4 + len));
    off += 4 + len;
    return out;
  };
  const certificates: Buffer[] = [];
  for (let i = 0; i < nCerts; i++) certificates.push(item('certificate', 1, MAX_CERTIFICATE_BYTES));
  if (off + 4 > buf.length) throw malformed('bundle truncated before the block count');
  const nBlocks = buf.readUInt32BE(off);
  off += 4;
  // Each block takes at least 4 + 5 bytes: a count beyond that is a lie, refused before looping.
  if (nBlocks > (buf.length - off) / 9) throw malformed(`${nBlocks} blocks cannot fit in ${buf.length - off} bytes`);
  const blocks: SignedRewardBlock[] = [];
  for (let i = 0; i < nBlocks; i++) blocks.push(decodeSignedRewardBlock(item('signed block', 5, buf.length)));
  if (off !== buf.length) throw malformed(`${buf.length - off} bytes after the last block`);
  return { chainLength, certificates, blocks };
}
