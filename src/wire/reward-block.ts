// SPEC.md §8.7: the byte layouts of the reward chain, declared once:
// the block body, the signed (stored and served) block and the chain bundle of GET /bitcloud/rewards.
// A fixed layout, not protobuf: it is canonical by construction (one encoding per block), so the
// hash of the bytes received is the hash every authority computed. Building, signing and verifying
// the chain are in src/bandwidth/reward-chain.ts. Errors: REWARD_MALFORMED, REWARD_SUM_MISMATCH.
import { err } from '../errors';
import { ED25519_PUBLIC_BYTES, ED25519_SIGNATURE_BYTES, blake2b } from '../crypto/primitives';
import { Reader, Writer, type CodecCodes } from './bytes';
import { TRANSFER_BYTES, decodeTransfer, encodeTransfer, type Transfer } from './transfer';

const CODES: CodecCodes = { truncated: 'REWARD_MALFORMED', malformed: 'REWARD_MALFORMED' };
const malformed = (m: string) => err('REWARD_MALFORMED', m);

export const REWARD_BLOCK_VERSION = 1;
/** SPEC §8.7.1: a block that carries transfers is version 2 (one or more); one without is version 1, as before. */
export const REWARD_BLOCK_VERSION_TRANSFERS = 2;
/** SPEC §8.7.1, §9.20.4: a block that carries escrow operations is version 3 (transfers then optional). */
export const REWARD_BLOCK_VERSION_ESCROW = 3;
/** At most this many escrow operations in one block (SPEC §8.7.1); `escrowOpsFor` selects at most this many (§9.20.4 item 4). */
export const MAX_BLOCK_ESCROW_OPS = 10_000;
/** At most this many transfers in one block (SPEC §8.7.1). */
export const MAX_BLOCK_TRANSFERS = 10_000;
export const REWARD_HASH_BYTES = 32;
export const GENESIS_PREVIOUS_HASH: Buffer = Buffer.alloc(REWARD_HASH_BYTES);
export const MAX_ALLOCATIONS = 1_000_000;

// ---- layouts (all integers big-endian) ----

/** Body header: version u8 | height u64 | previous hash [32] | epoch u64 | minted u64 | count u32. */
export const BLOCK_OFF_VERSION = 0;
export const BLOCK_OFF_HEIGHT = 1; // 1 version
export const BLOCK_OFF_PREVIOUS = BLOCK_OFF_HEIGHT + 8; // 1 + 8 height = 9
export const BLOCK_OFF_EPOCH = BLOCK_OFF_PREVIOUS + REWARD_HASH_BYTES; // 9 + 32 previous hash = 41
export const BLOCK_OFF_MINTED = BLOCK_OFF_EPOCH + 8; // 41 + 8 epoch = 49
export const BLOCK_OFF_COUNT = BLOCK_OFF_MINTED + 8; // 49 + 8 minted = 57
export const BLOCK_HEADER_LEN = BLOCK_OFF_COUNT + 4; // 57 + 4 count = 61
/** Then count × allocation: relay identity [32] | units u64. */
export const ALLOCATION_LEN = ED25519_PUBLIC_BYTES + 8; // 32 identity + 8 units = 40

/** Version 2 only, after the allocations: transfer count u32 (≥ 1) | count × transfer (SPEC §8.11.1, 145 bytes). */
export const TRANSFER_COUNT_LEN = 4;

/** Version 3 only, after the transfers: escrow operation count u32 (≥ 1) | count × operation (SPEC §9.20.4). */
export const ESCROW_COUNT_LEN = 4;
/** open: kind u8 = 1 | contract [32] | payer [32] | start_epoch u64 | end_epoch u64 | funded u64 | total_bytes u64. */
export const ESCROW_OPEN_LEN = 1 + 32 + 32 + 8 + 8 + 8 + 8; // 97
/** pay: kind u8 = 2 | contract [32] | epoch u64 | node [32] | amount u64. */
export const ESCROW_PAY_LEN = 1 + 32 + 8 + 32 + 8; // 81
/** refund: kind u8 = 3 | contract [32] | amount u64. */
export const ESCROW_REFUND_LEN = 1 + 32 + 8; // 41
/** cancel: kind u8 = 4 | contract [32] | amount u64 | signature [64] (the payer's, SPEC §9.20.4). */
export const ESCROW_CANCEL_LEN = 1 + 32 + 8 + 64; // 105

/** SPEC §9.20.4: an operation on a storage contract's escrow account, carried by a version 3 block. Keys are 64 hex. */
export type EscrowOp =
  | { kind: 'open'; contract: string; payer: string; startEpoch: number; endEpoch: number; funded: bigint; totalBytes: bigint }
  | { kind: 'pay'; contract: string; epoch: number; node: string; amount: bigint }
  | { kind: 'refund'; contract: string; amount: bigint }
  | { kind: 'cancel'; contract: string; amount: bigint; signature: Buffer };

const ESCROW_KIND = { open: 1, pay: 2, refund: 3, cancel: 4 } as const;

function escrowOpLen(op: EscrowOp): number {
  return op.kind === 'open' ? ESCROW_OPEN_LEN : op.kind === 'pay' ? ESCROW_PAY_LEN : op.kind === 'cancel' ? ESCROW_CANCEL_LEN : ESCROW_REFUND_LEN;
}

/** Signed block: body length u32 | body | signature count u8 | count × signature entry. */
export const SIGNED_BLOCK_MIN_LEN = 4 + 1; // 4 body length + 1 signature count = 5 (plus the body)
/** Signature entry: authority identity [32] | signing key [32] | signature [64]. */
export const SIGNATURE_ENTRY_LEN = ED25519_PUBLIC_BYTES * 2 + ED25519_SIGNATURE_BYTES; // 32 + 32 + 64 = 128
export const MAX_BLOCK_SIGNATURES = 255; // the count is a u8
/** Largest signed block: 1 000 000 allocations, 10 000 transfers, 10 000 escrow cancels (the longest operation) and 255 signatures. */
export const MAX_SIGNED_BLOCK_BYTES = SIGNED_BLOCK_MIN_LEN + BLOCK_HEADER_LEN + ALLOCATION_LEN * MAX_ALLOCATIONS
  + TRANSFER_COUNT_LEN + TRANSFER_BYTES * MAX_BLOCK_TRANSFERS + ESCROW_COUNT_LEN + ESCROW_CANCEL_LEN * MAX_BLOCK_ESCROW_OPS
  + SIGNATURE_ENTRY_LEN * MAX_BLOCK_SIGNATURES; // 5 + 61 + 40 000 000 + 4 + 1 450 000 + 4 + 1 050 000 + 32 640 = 42 532 714

/**
 * Bundle (SPEC §8.7.5): magic "BCRW" | version u8 = 1 | chain length u64 | certificate count u32 |
 * count × (len u32 | certificate envelope) | block count u32 | count × (len u32 | signed block).
 */
export const REWARD_BUNDLE_MAGIC = Buffer.from('BCRW', 'ascii');
export const REWARD_BUNDLE_VERSION = 1;
export const BUNDLE_HEADER_LEN = 4 + 1 + 8 + 4; // 4 magic + 1 version + 8 chain length + 4 certificate count = 17
/** A bundle carries at most this many certificates, each at most 512 bytes (SPEC §6.2.5). */
export const MAX_BUNDLE_CERTIFICATES = 1024;
export const MAX_CERTIFICATE_BYTES = 512;
/** Largest response a verifier reads (a server sends fewer blocks per response, at least one). */
export const MAX_REWARD_BUNDLE_BYTES = 64 * 1024 * 1024;
/**
 * SPEC.md §8.7.5: a page (one bundle) holds the blocks from `from` in order, as many whole blocks as
 * fit in this many bytes counted as the sum of their signed-block lengths (at least one block; the
 * length prefixes and the certificates do not count), unless the next block's certificates would
 * take the page past MAX_BUNDLE_CERTIFICATES.
 */
export const REWARD_PAGE_BYTES = 8 * 1024 * 1024;

export interface RewardBlock {
  height: number;
  previousHash: Buffer;
  epoch: number;
  minted: bigint;
  /** Relay fingerprint → units, ascending fingerprint order, every amount > 0, summing to `minted`. */
  allocations: ReadonlyMap<string, bigint>;
  /**
   * SPEC §8.7.1 / §8.11: transfers applied after the allocations, in this order. Absent or empty:
   * a version 1 body (no transfer field); one or more: version 2.
   */
  transfers?: readonly Transfer[];
  /**
   * SPEC §9.20.4: escrow operations applied after the transfers, in this order. Absent or empty:
   * no escrow field; one or more: version 3 (the transfer count may then be 0).
   */
  escrow?: readonly EscrowOp[];
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

export interface RewardChainBundle {
  /** Number of blocks the server holds (its tip height + 1; 0 for an empty chain). */
  chainLength: number;
  /** Key-certificate envelopes (SPEC §6.3), unverified: each vouches only for itself. */
  certificates: Buffer[];
  /** Consecutive signed blocks, decoded (signatures not yet checked). */
  blocks: SignedRewardBlock[];
}

// ---- body ----

/** Canonical body bytes. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH for a block that breaks SPEC §8.7. */
export function encodeRewardBlock(b: RewardBlock): Buffer {
  if (b.previousHash.length !== REWARD_HASH_BYTES) throw malformed('previous hash must be 32 bytes');
  if (b.allocations.size > MAX_ALLOCATIONS) throw malformed('too many allocations');
  const transfers = b.transfers ?? [];
  if (transfers.length > MAX_BLOCK_TRANSFERS) throw malformed(`at most ${MAX_BLOCK_TRANSFERS} transfers in a block`);
  const ops = b.escrow ?? [];
  if (ops.length > MAX_BLOCK_ESCROW_OPS) throw malformed(`at most ${MAX_BLOCK_ESCROW_OPS} escrow operations in a block`);
  const version = ops.length ? REWARD_BLOCK_VERSION_ESCROW : transfers.length ? REWARD_BLOCK_VERSION_TRANSFERS : REWARD_BLOCK_VERSION;
  const tail = (version === REWARD_BLOCK_VERSION ? 0 : TRANSFER_COUNT_LEN + TRANSFER_BYTES * transfers.length)
    + (ops.length ? ESCROW_COUNT_LEN + ops.reduce((n, op) => n + escrowOpLen(op), 0) : 0);
  const w = new Writer(BLOCK_HEADER_LEN + ALLOCATION_LEN * b.allocations.size + tail, 'reward block', CODES)
    .u8(version, 'version')
    .u64(b.height, 'height')
    .bytes(b.previousHash)
    .u64(b.epoch, 'epoch')
    .u64big(b.minted, 'minted')
    .u32(b.allocations.size, 'count');
  let prev = '';
  let sum = 0n;
  for (const [fp, amount] of b.allocations) {
    if (!/^[0-9a-f]{64}$/.test(fp)) throw malformed(`allocation key ${fp} is not a fingerprint`);
    if (fp <= prev) throw malformed('allocations must be in strictly ascending fingerprint order');
    if (typeof amount !== 'bigint' || amount <= 0n) throw malformed(`allocation for ${fp} must be a positive u64`);
    w.hex(fp, ED25519_PUBLIC_BYTES, 'allocation identity').u64big(amount, 'allocation units');
    sum += amount;
    prev = fp;
  }
  if (sum !== b.minted) throw err('REWARD_SUM_MISMATCH', `allocations sum to ${sum}, minted is ${b.minted}`);
  if (version !== REWARD_BLOCK_VERSION) {
    w.u32(transfers.length, 'transfer count');
    for (const t of transfers) w.bytes(encodeTransfer(t));
  }
  if (ops.length) {
    w.u32(ops.length, 'escrow operation count');
    for (const op of ops) writeEscrowOp(w, op);
  }
  return w.finish();
}

/** Parses body bytes. Throws REWARD_MALFORMED or REWARD_SUM_MISMATCH, nothing else. */
export function decodeRewardBlock(bytes: Uint8Array): RewardBlock {
  if (!(bytes instanceof Uint8Array) || bytes.length < BLOCK_HEADER_LEN) throw malformed('reward block body too short');
  const r = new Reader(bytes, 'reward block', CODES);
  const version = r.u8('version');
  if (version !== REWARD_BLOCK_VERSION && version !== REWARD_BLOCK_VERSION_TRANSFERS && version !== REWARD_BLOCK_VERSION_ESCROW) throw malformed(`unknown reward block version ${version}`);
  const height = r.u64big('height');
  const previousHash = r.bytes(REWARD_HASH_BYTES, 'previous hash');
  const epoch = r.u64big('epoch');
  const minted = r.u64big('minted');
  const count = r.u32('count');
  if (count > MAX_ALLOCATIONS) throw malformed('too many allocations');
  const allocEnd = BLOCK_HEADER_LEN + count * ALLOCATION_LEN;
  if (version === REWARD_BLOCK_VERSION ? bytes.length !== allocEnd : bytes.length < allocEnd + TRANSFER_COUNT_LEN) {
    throw malformed(`body of ${bytes.length} bytes does not hold ${count} allocations`);
  }
  const allocations = new Map<string, bigint>();
  let prev = '';
  let sum = 0n;
  for (let i = 0; i < count; i++) {
    const fp = r.hex(ED25519_PUBLIC_BYTES, 'allocation identity');
    if (fp <= prev) throw malformed('allocations must be in strictly ascending fingerprint order');
    const amount = r.u64big('allocation units');
    if (amount === 0n) throw malformed(`zero allocation for ${fp}`);
    allocations.set(fp, amount);
    sum += amount;
    prev = fp;
  }
  if (sum !== minted) throw err('REWARD_SUM_MISMATCH', `allocations sum to ${sum}, minted is ${minted}`);
  const transfers: Transfer[] = [];
  const escrow: EscrowOp[] = [];
  if (version !== REWARD_BLOCK_VERSION) {
    const n = r.u32('transfer count');
    if (version === REWARD_BLOCK_VERSION_TRANSFERS && n === 0) throw malformed('a version 2 block carries at least one transfer');
    if (n > MAX_BLOCK_TRANSFERS) throw malformed(`a block carries at most ${MAX_BLOCK_TRANSFERS} transfers, not ${n}`);
    const transfersEnd = allocEnd + TRANSFER_COUNT_LEN + n * TRANSFER_BYTES;
    if (version === REWARD_BLOCK_VERSION_TRANSFERS ? bytes.length !== transfersEnd : bytes.length < transfersEnd + ESCROW_COUNT_LEN) {
      throw malformed(`body of ${bytes.length} bytes does not hold ${count} allocations and ${n} transfers`);
    }
    for (let i = 0; i < n; i++) {
      try {
        transfers.push(decodeTransfer(r.bytes(TRANSFER_BYTES, 'transfer')));
      } catch (e) {
        throw malformed(`transfer ${i}: ${(e as Error).message}`);
      }
    }
  }
  if (version === REWARD_BLOCK_VERSION_ESCROW) {
    const n = r.u32('escrow operation count');
    if (n === 0 || n > MAX_BLOCK_ESCROW_OPS) throw malformed(`a version 3 block carries 1 to ${MAX_BLOCK_ESCROW_OPS} escrow operations, not ${n}`);
    for (let i = 0; i < n; i++) escrow.push(readEscrowOp(r, i));
    r.end();
  }
  // Height and epoch are checked last, as they always were: a bad allocation is reported first.
  // A version 1 body has no transfer field: the decoded block has none either.
  return {
    height: safe(height, 'height'), previousHash, epoch: safe(epoch, 'epoch'), minted, allocations,
    ...(transfers.length ? { transfers } : {}), ...(escrow.length ? { escrow } : {}),
  };
}

const HEX32 = /^[0-9a-f]{64}$/;

function writeEscrowOp(w: Writer, op: EscrowOp): void {
  if (!HEX32.test(op.contract)) throw malformed('an escrow operation names a contract by its 32-byte id');
  w.u8(ESCROW_KIND[op.kind], 'escrow kind').hex(op.contract, 32, 'contract');
  if (op.kind === 'open') {
    if (!HEX32.test(op.payer)) throw malformed('an escrow payer is a 32-byte key');
    if (!(op.endEpoch > op.startEpoch) || op.funded <= 0n || op.totalBytes <= 0n) throw malformed('an escrow opens for end > start epochs, funded > 0 and total bytes > 0');
    w.hex(op.payer, 32, 'payer').u64(op.startEpoch, 'start_epoch').u64(op.endEpoch, 'end_epoch').u64big(op.funded, 'funded').u64big(op.totalBytes, 'total_bytes');
  } else if (op.kind === 'pay') {
    if (!HEX32.test(op.node)) throw malformed('an escrow payment names a 32-byte node key');
    if (op.amount <= 0n) throw malformed('an escrow payment is > 0');
    w.u64(op.epoch, 'epoch').hex(op.node, 32, 'node').u64big(op.amount, 'amount');
  } else if (op.kind === 'cancel') {
    if (op.signature.length !== ED25519_SIGNATURE_BYTES) throw malformed('an escrow cancel carries a 64-byte signature');
    w.u64big(op.amount, 'amount').bytes(op.signature);
  } else {
    w.u64big(op.amount, 'amount');
  }
}

function readEscrowOp(r: Reader, i: number): EscrowOp {
  const kind = r.u8('escrow kind');
  const contract = r.hex(32, 'contract');
  if (kind === ESCROW_KIND.open) {
    const payer = r.hex(32, 'payer');
    const startEpoch = safe(r.u64big('start_epoch'), 'start_epoch');
    const endEpoch = safe(r.u64big('end_epoch'), 'end_epoch');
    const funded = r.u64big('funded');
    const totalBytes = r.u64big('total_bytes');
    if (!(endEpoch > startEpoch) || funded === 0n || totalBytes === 0n) throw malformed(`escrow operation ${i}: an escrow opens for end > start epochs, funded > 0 and total bytes > 0`);
    return { kind: 'open', contract, payer, startEpoch, endEpoch, funded, totalBytes };
  }
  if (kind === ESCROW_KIND.pay) {
    const epoch = safe(r.u64big('epoch'), 'epoch');
    const node = r.hex(32, 'node');
    const amount = r.u64big('amount');
    if (amount === 0n) throw malformed(`escrow operation ${i}: a zero payment`);
    return { kind: 'pay', contract, epoch, node, amount };
  }
  if (kind === ESCROW_KIND.refund) return { kind: 'refund', contract, amount: r.u64big('amount') };
  if (kind === ESCROW_KIND.cancel) return { kind: 'cancel', contract, amount: r.u64big('amount'), signature: r.bytes(ED25519_SIGNATURE_BYTES, 'signature') };
  throw malformed(`escrow operation ${i}: unknown kind ${kind}`);
}

function safe(v: bigint, name: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`${name} exceeds 2^53-1`);
  return Number(v);
}

/** SPEC §8.7: a block's hash is BLAKE2b-256 of its body bytes; the next block names it. */
export function rewardBlockHash(body: Uint8Array): Buffer {
  return blake2b(body, REWARD_HASH_BYTES);
}

// ---- signed block (stored and served form) ----

/** SPEC §8.7 stored/served form: body length u32 | body | signature count u8 | count × (authority [32] | signing key [32] | signature [64]). */
export function encodeSignedRewardBlock(body: Uint8Array, signatures: readonly RewardSignature[]): Buffer {
  if (signatures.length > MAX_BLOCK_SIGNATURES) throw malformed('at most 255 signatures');
  const w = new Writer(SIGNED_BLOCK_MIN_LEN + body.length + signatures.length * SIGNATURE_ENTRY_LEN, 'signed reward block', CODES)
    .u32(body.length, 'body length')
    .bytes(body)
    .u8(signatures.length, 'signature count');
  const seen = new Set<string>();
  for (const s of signatures) {
    if (s.authority.length !== ED25519_PUBLIC_BYTES || s.signingKey.length !== ED25519_PUBLIC_BYTES || s.signature.length !== ED25519_SIGNATURE_BYTES) {
      throw malformed('bad signature entry lengths');
    }
    const a = s.authority.toString('hex');
    if (seen.has(a)) throw malformed(`two signatures by authority ${a}`);
    seen.add(a);
    w.bytes(s.authority).bytes(s.signingKey).bytes(s.signature);
  }
  return w.finish();
}

/** Parses the stored form. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH only; signatures are not checked here. */
export function decodeSignedRewardBlock(bytes: Uint8Array): SignedRewardBlock {
  return readSignedRewardBlock(bytes, true) as SignedRewardBlock;
}

/** A signed block's body bytes and signatures, the body left undecoded (`block` absent). */
export type SplitRewardBlock = Omit<SignedRewardBlock, 'block'>;

/**
 * The stored form (SPEC §8.7.2) split into its body bytes and signatures without decoding the body
 * (its allocations may be 40 MB): for a reader that compares bodies or only reads signatures, and
 * decodes a body only when it needs it. Throws REWARD_MALFORMED only.
 */
export function splitSignedRewardBlock(bytes: Uint8Array): SplitRewardBlock {
  return readSignedRewardBlock(bytes, false);
}

/** A body's version, height, previous hash and epoch, read from its fixed header only (SPEC §8.7.1). Throws REWARD_MALFORMED. */
export function rewardBlockHeader(body: Uint8Array): { version: number; height: number; previousHash: Buffer; epoch: number } {
  if (!(body instanceof Uint8Array) || body.length < BLOCK_HEADER_LEN) throw malformed('reward block body too short');
  const r = new Reader(body, 'reward block', CODES);
  const version = r.u8('version');
  if (version !== REWARD_BLOCK_VERSION && version !== REWARD_BLOCK_VERSION_TRANSFERS && version !== REWARD_BLOCK_VERSION_ESCROW) throw malformed(`unknown reward block version ${version}`);
  const height = r.u64big('height');
  const previousHash = r.bytes(REWARD_HASH_BYTES, 'previous hash');
  return { version, height: safe(height, 'height'), previousHash, epoch: safe(r.u64big('epoch'), 'epoch') };
}

function readSignedRewardBlock(bytes: Uint8Array, decodeBody: boolean): SplitRewardBlock & { block?: RewardBlock } {
  if (!(bytes instanceof Uint8Array) || bytes.length < SIGNED_BLOCK_MIN_LEN) throw malformed('signed reward block too short');
  const r = new Reader(bytes, 'signed reward block', CODES);
  const bodyLen = r.u32('body length');
  if (bytes.length < SIGNED_BLOCK_MIN_LEN + bodyLen) throw malformed('signed reward block truncated');
  const body = r.bytes(bodyLen, 'body');
  const n = r.u8('signature count');
  if (bytes.length !== SIGNED_BLOCK_MIN_LEN + bodyLen + n * SIGNATURE_ENTRY_LEN) throw malformed(`length does not hold ${n} signatures`);
  const block = decodeBody ? decodeRewardBlock(body) : undefined;
  const signatures: RewardSignature[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const authority = r.bytes(ED25519_PUBLIC_BYTES, 'authority');
    const a = authority.toString('hex');
    if (seen.has(a)) throw malformed(`two signatures by authority ${a}`);
    seen.add(a);
    signatures.push({ authority, signingKey: r.bytes(ED25519_PUBLIC_BYTES, 'signing key'), signature: r.bytes(ED25519_SIGNATURE_BYTES, 'signature') });
  }
  return { ...(block ? { block } : {}), body, hash: rewardBlockHash(body), signatures };
}

// ---- chain bundle: what GET /bitcloud/rewards serves (SPEC §8.7.5) ----

/** Builds a bundle (layout above). Throws REWARD_MALFORMED. */
export function encodeRewardChainBundle(chainLength: number, certificates: readonly Uint8Array[], signedBlocks: readonly Uint8Array[]): Buffer {
  if (certificates.length > MAX_BUNDLE_CERTIFICATES) throw malformed(`at most ${MAX_BUNDLE_CERTIFICATES} certificates in a bundle`);
  for (const c of certificates) if (c.length === 0 || c.length > MAX_CERTIFICATE_BYTES) throw malformed('a certificate is 1 to 512 bytes');
  const items = [...certificates, ...signedBlocks];
  const w = new Writer(BUNDLE_HEADER_LEN + 4 + items.reduce((n, b) => n + 4 + b.length, 0), 'reward chain bundle', CODES)
    .bytes(REWARD_BUNDLE_MAGIC)
    .u8(REWARD_BUNDLE_VERSION, 'version')
    .u64(chainLength, 'chain length')
    .u32(certificates.length, 'certificate count');
  for (const c of certificates) w.u32(c.length, 'certificate length').bytes(c);
  w.u32(signedBlocks.length, 'block count');
  for (const b of signedBlocks) w.u32(b.length, 'block length').bytes(b);
  return w.finish();
}

/**
 * SPEC.md §8.7.5: a bundle's blocks as their stored-form bytes, neither split nor decoded, and not
 * cut out either until read: the layout check records where each block starts (4 bytes a block)
 * and `at`/iteration hand out views of the bundle's bytes. A bundle of 64 MiB holds up to 7.4
 * million 9-byte entries; an object for each (a copy, or even a view) would cost the reader close
 * to a gigabyte before its first block is refused.
 */
export class RewardBundleBlocks implements Iterable<Buffer> {
  /** @param starts where each block's bytes start (after its length prefix); @param bytes the sum of their lengths. */
  constructor(private readonly buf: Buffer, private readonly starts: Uint32Array, readonly bytes: number) {}

  get length(): number {
    return this.starts.length;
  }

  /** Block `i` (stored form, a view of the bundle's bytes), or undefined past the end. */
  at(i: number): Buffer | undefined {
    if (!Number.isInteger(i) || i < 0 || i >= this.starts.length) return undefined;
    const start = this.starts[i]!;
    return this.buf.subarray(start, start + this.buf.readUInt32BE(start - 4));
  }

  *[Symbol.iterator](): Iterator<Buffer> {
    for (let i = 0; i < this.starts.length; i++) yield this.at(i)!;
  }
}

/** A bundle's blocks as their stored-form bytes, neither split nor decoded (`splitRewardChainBundle`). */
export type RawRewardChainBundle = Omit<RewardChainBundle, 'blocks'> & { blocks: RewardBundleBlocks };

/** Parses a bundle. Throws REWARD_MALFORMED / REWARD_SUM_MISMATCH only (never a RangeError). */
export function decodeRewardChainBundle(bytes: Uint8Array): RewardChainBundle {
  const { chainLength, certificates, blocks } = splitRewardChainBundle(bytes);
  return { chainLength, certificates, blocks: [...blocks].map((b) => decodeSignedRewardBlock(b)) };
}

/**
 * The bundle's layout checked and its items cut out, each block left as its stored-form bytes (a
 * bundle may hold 64 MiB of allocations): a reader checks each block's header and decodes a body
 * only when it is about to apply that block (SPEC §8.7.4). Throws REWARD_MALFORMED only.
 */
export function splitRewardChainBundle(bytes: Uint8Array): RawRewardChainBundle {
  if (!(bytes instanceof Uint8Array) || bytes.length < BUNDLE_HEADER_LEN + 4) throw malformed('reward chain bundle too short');
  if (bytes.length > MAX_REWARD_BUNDLE_BYTES) throw malformed(`reward chain bundle exceeds ${MAX_REWARD_BUNDLE_BYTES} bytes`);
  const r = new Reader(bytes, 'reward chain bundle', CODES);
  if (!r.view(REWARD_BUNDLE_MAGIC.length, 'magic').equals(REWARD_BUNDLE_MAGIC)) throw malformed('not a reward chain bundle (bad magic)');
  const version = r.u8('version');
  if (version !== REWARD_BUNDLE_VERSION) throw malformed(`unknown reward chain bundle version ${version}`);
  const chainLength = r.u64('chain length');
  const nCerts = r.u32('certificate count');
  if (nCerts > MAX_BUNDLE_CERTIFICATES) throw malformed(`${nCerts} certificates, at most ${MAX_BUNDLE_CERTIFICATES}`);
  // Each item: a u32 length that must fit in what is left.
  const item = (what: string, min: number, max: number): Buffer => {
    if (r.remaining < 4) throw malformed(`bundle truncated before a ${what} length`);
    const len = r.u32(`${what} length`);
    if (len < min || len > max) throw malformed(`${what} of ${len} bytes is outside [${min}, ${max}]`);
    if (r.remaining < len) throw malformed(`bundle truncated inside a ${what}`);
    return r.bytes(len, what);
  };
  const certificates: Buffer[] = [];
  for (let i = 0; i < nCerts; i++) certificates.push(item('certificate', 1, MAX_CERTIFICATE_BYTES));
  if (r.remaining < 4) throw malformed('bundle truncated before the block count');
  const nBlocks = r.u32('block count');
  // Each block takes at least 4 + 5 bytes: a count beyond that is a lie, refused before looping.
  if (nBlocks > r.remaining / (4 + SIGNED_BLOCK_MIN_LEN)) throw malformed(`${nBlocks} blocks cannot fit in ${r.remaining} bytes`);
  // SPEC §8.7.5: the lengths are walked, nothing is cut out: a block is a view made when it is read.
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const starts = new Uint32Array(nBlocks);
  let pos = bytes.length - r.remaining;
  let blockBytes = 0;
  for (let i = 0; i < nBlocks; i++) {
    if (bytes.length - pos < 4) throw malformed('bundle truncated before a signed block length');
    const len = buf.readUInt32BE(pos);
    if (len < SIGNED_BLOCK_MIN_LEN || len > bytes.length) throw malformed(`signed block of ${len} bytes is outside [${SIGNED_BLOCK_MIN_LEN}, ${bytes.length}]`);
    if (bytes.length - pos - 4 < len) throw malformed('bundle truncated inside a signed block');
    starts[i] = pos + 4;
    pos += 4 + len;
    blockBytes += len;
  }
  if (pos !== bytes.length) throw malformed(`${bytes.length - pos} bytes after the last block`);
  return { chainLength, certificates, blocks: new RewardBundleBlocks(buf, starts, blockBytes) };
}

// ---- page fill (SPEC §8.7.5) ----

/** Bytes the blocks of a page count toward REWARD_PAGE_BYTES: the sum of their signed-block lengths. */
export function rewardPageBytes(blocks: Iterable<Uint8Array> | RewardBundleBlocks): number {
  if (blocks instanceof RewardBundleBlocks) return blocks.bytes;
  let n = 0;
  for (const b of blocks) n += b.length;
  return n;
}

/**
 * SPEC.md §8.7.5: null when a page that did not reach `chain_length` was full, else why it was short.
 * `page`: its blocks' bytes (rewardPageBytes) and the certificates that count (pageCertificates,
 * src/dir/reward-authorities.ts: only genuine ones a signature of the page names); `next`: the first block of the
 * page that followed (stored form). The server stopped before `next` only if it did not fit: its
 * blocks plus `next` exceed `limit`, or the page's distinct certificates plus those `next` needs
 * exceed MAX_BUNDLE_CERTIFICATES. Another authority's copy of `next` (a mirror may take the pages
 * from different authorities) or a later one may carry other signatures, so `next` is counted at
 * its largest: its body with MAX_BLOCK_SIGNATURES signatures, each naming at most one certificate.
 */
export function shortRewardPage(page: { bytes: number; certificates: readonly Uint8Array[] }, next: Uint8Array, limit = REWARD_PAGE_BYTES): string | null {
  if (next.length < 4) return null; // refused as malformed when split
  const bodyLen = Buffer.from(next.buffer, next.byteOffset, next.length).readUInt32BE(0);
  const nextMax = SIGNED_BLOCK_MIN_LEN + bodyLen + SIGNATURE_ENTRY_LEN * MAX_BLOCK_SIGNATURES;
  if (page.bytes + nextMax > limit) return null;
  if (page.certificates.length + MAX_BLOCK_SIGNATURES > MAX_BUNDLE_CERTIFICATES) {
    const distinct = new Set(page.certificates.map((c) => Buffer.from(c).toString('hex')));
    if (distinct.size + MAX_BLOCK_SIGNATURES > MAX_BUNDLE_CERTIFICATES) return null;
  }
  return `its ${page.bytes} bytes of blocks and the next block (at most ${nextMax} bytes) fit in the page limit of ${limit} bytes`;
}
