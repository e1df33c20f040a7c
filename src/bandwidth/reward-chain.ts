// SPEC.md §8.7: reward blocks: building, signing, the hash chain and its multi-signature check.
// The byte layouts (block body, signed block, chain bundle) are declared once in
// src/wire/reward-block.ts (re-exported here for callers).
import { err } from '../errors';
import { ED25519_PUBLIC_BYTES, ed25519Sign, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import { majorityOf } from '../dir/authorities';
import {
  GENESIS_PREVIOUS_HASH, decodeRewardBlock, encodeRewardBlock, rewardBlockHash, rewardBlockHeader, splitSignedRewardBlock,
  type RewardBlock, type RewardSignature, type SignedRewardBlock, type SplitRewardBlock,
} from '../wire/reward-block';
import { type IssuanceSchedule, allocateWithStorage, mintFor, scheduledMint } from './reward';
import { CoinLedger, type LedgerMaps } from './transfer';
import type { Transfer } from '../wire/transfer';
import { applyEscrowOp, copyEscrowBook, fundingWithoutOpen, type Escrow, type EscrowBook } from './escrow';

export {
  GENESIS_PREVIOUS_HASH, MAX_ALLOCATIONS, MAX_BUNDLE_CERTIFICATES, MAX_CERTIFICATE_BYTES, MAX_REWARD_BUNDLE_BYTES,
  REWARD_BLOCK_VERSION, REWARD_BUNDLE_MAGIC, REWARD_BUNDLE_VERSION, REWARD_HASH_BYTES,
  decodeRewardBlock, decodeRewardChainBundle, decodeSignedRewardBlock, encodeRewardBlock, encodeRewardChainBundle,
  encodeSignedRewardBlock, rewardBlockHash,
  type RewardBlock, type RewardChainBundle, type RewardSignature, type SignedRewardBlock, type SplitRewardBlock,
} from '../wire/reward-block';
/** The one definition is SPEC.md §6.7's, in src/dir/authorities.ts; re-exported for reward-chain callers. */
export { majorityOf };

export const REWARD_SIGNATURE_DOMAIN = Buffer.from('bitcloud reward block v1\0', 'ascii');

const malformed = (m: string) => err('REWARD_MALFORMED', m);

// ---- building and signing (authority side) ----

/** Where the chain stands after the blocks verified so far. */
export interface ChainTip { height: number; hash: Buffer; epoch: number }

/**
 * The block for `epoch` on top of `tip` (null: genesis): mints the schedule's amount for its height,
 * or 0 when nothing was proven (bandwidth or, SPEC.md §9.20.2, audited storage), allocated by
 * `allocateWithStorage`. Returns the block and its body bytes.
 */
export function nextRewardBlock(
  tip: ChainTip | null, epoch: number, proven: ReadonlyMap<string, bigint | number>, schedule?: IssuanceSchedule,
  stored: ReadonlyMap<string, bigint | number> = new Map(), transfers: readonly Transfer[] = [],
): { block: RewardBlock; body: Buffer; hash: Buffer } {
  const height = tip ? tip.height + 1 : 0;
  if (tip && epoch <= tip.epoch) throw err('REWARD_CHAIN_BAD_EPOCH', `epoch ${epoch} is not after the tip's ${tip.epoch}`);
  const fromBandwidth = mintFor(height, proven, schedule);
  const minted = fromBandwidth > 0n ? fromBandwidth : mintFor(height, stored, schedule);
  const block: RewardBlock = { height, previousHash: tip ? tip.hash : GENESIS_PREVIOUS_HASH, epoch, minted, allocations: allocateWithStorage(minted, proven, stored), ...(transfers.length ? { transfers } : {}) };
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

// ---- verification (any client) ----

/**
 * What `RewardAuthorities.accepts` reads of a block: its fixed header only (SPEC §8.7.3 item 5),
 * so the signatures are counted before the body is decoded.
 */
export type RewardBlockHeaderView = Pick<RewardBlock, 'height' | 'epoch'>;

/**
 * The authorities a verifier trusts. `accepts` says whether `signingKey` is a valid signing key of
 * the authority with identity `authority` for this block (the directory's certificate check goes here).
 */
export interface RewardAuthorities {
  readonly configured: number;
  accepts(authority: Buffer, signingKey: Buffer, block: RewardBlockHeaderView): boolean;
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

export interface ChainState {
  /** Height of the last verified block; -1 before genesis. */
  height: number;
  tipHash: Buffer;
  /** Epoch of the last verified block; -1 before genesis. */
  epoch: number;
  totalMinted: bigint;
  /** Per key (hex): allocations received ± transfers (SPEC §8.11.2). */
  balances: Map<string, bigint>;
  /** Per key (hex): the nonce of its last transfer in the chain (absent: 0). */
  nonces: Map<string, number>;
  /** Number of transfers applied so far. */
  transfers: number;
  /** SPEC §9.20.4: every storage contract escrow opened so far, by contract id (hex). */
  escrows: EscrowBook;
  /**
   * SPEC §8.11.1: the chain id, the hash of block 0; null before it. Transfers of versions 3 and 4
   * verify against it (a transfer signed for another chain does not).
   */
  chainId: Buffer | null;
}

export function emptyChainState(): ChainState {
  return { height: -1, tipHash: GENESIS_PREVIOUS_HASH, epoch: -1, totalMinted: 0n, balances: new Map(), nonces: new Map(), transfers: 0, escrows: new Map(), chainId: null };
}

/**
 * SPEC §8.7.3 item 7, §8.11.2: a block's allocations, then its transfers in order, over the ledger
 * `base` (not modified). Returns the ledger holding the result (commit it to keep it); throws
 * REWARD_BAD_TRANSFER naming the first transfer that does not apply and its TRANSFER_* reason, or
 * REWARD_BAD_ESCROW naming the first escrow operation that does not apply (§9.20.4), or
 * REWARD_BAD_TRANSFER with reason ESCROW_MISMATCH naming the first funding transfer (version 4 or 2)
 * the block carries without its escrow's open (§9.20.4).
 */
export function blockLedger(
  base: Readonly<LedgerMaps> & { escrows?: ReadonlyMap<string, Escrow> }, block: Pick<RewardBlock, 'height' | 'epoch' | 'allocations' | 'transfers' | 'escrow'>,
): CoinLedger {
  return blockEffects(base, block).ledger;
}

/**
 * SPEC §8.7.3 item 7: a block's allocations, then its transfers in order (§8.11.2), over `base` (not
 * modified), without its escrow operations nor the funding transfers' check: what a proposer computes
 * the escrow operations over (§9.20.4). Throws REWARD_BAD_TRANSFER naming the first transfer that
 * does not apply and its TRANSFER_* reason.
 */
export function transfersLedger(base: Readonly<LedgerMaps>, block: Pick<RewardBlock, 'height' | 'allocations' | 'transfers'>): CoinLedger {
  const l = new CoinLedger(base);
  l.credit(block.allocations);
  (block.transfers ?? []).forEach((t, i) => {
    try {
      l.apply(t);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'TRANSFER_MALFORMED';
      throw err('REWARD_BAD_TRANSFER', `block ${block.height}: transfer ${i} (from ${t.from.toString('hex').slice(0, 16)}…, nonce ${t.nonce}) does not apply: ${code}: ${(e as Error).message}`, { transfer: i, reason: code });
    }
  });
  return l;
}

/**
 * `blockLedger`, also returning the escrow book after the block's escrow operations (SPEC §9.20.4):
 * a copy of `base.escrows` when the block carries any (keep it only with the ledger), else null.
 */
export function blockEffects(
  base: Readonly<LedgerMaps> & { escrows?: ReadonlyMap<string, Escrow> }, block: Pick<RewardBlock, 'height' | 'epoch' | 'allocations' | 'transfers' | 'escrow'>,
): { ledger: CoinLedger; escrows: EscrowBook | null } {
  const l = transfersLedger(base, block);
  let escrows: EscrowBook | null = null;
  if (block.escrow?.length) {
    const book = copyEscrowBook(base.escrows ?? new Map());
    block.escrow.forEach((op, i) => {
      try {
        applyEscrowOp(book, l, block, op);
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'ESCROW_UNKNOWN';
        throw err('REWARD_BAD_ESCROW', `block ${block.height}: escrow operation ${i} (${op.kind}, contract ${op.contract.slice(0, 16)}…) does not apply: ${code}: ${(e as Error).message}`, { op: i, reason: code });
      }
    });
    escrows = book;
  }
  // SPEC §8.7.3 item 7, §9.20.4: a funding transfer (version 4 or 2) applies only with its escrow's open.
  const orphan = fundingWithoutOpen(block.transfers ?? [], block.escrow ?? []);
  if (orphan >= 0) {
    const t = block.transfers![orphan]!;
    throw err('REWARD_BAD_TRANSFER', `block ${block.height}: transfer ${orphan} (from ${t.from.toString('hex').slice(0, 16)}…, nonce ${t.nonce}) does not apply: ESCROW_MISMATCH: it is a funding transfer (version ${t.version}) and the block carries no open of contract ${t.to.toString('hex').slice(0, 16)}… for its sender and amount`, { transfer: orphan, reason: 'ESCROW_MISMATCH' });
  }
  return { ledger: l, escrows };
}

export interface ChainOptions {
  /** When given, each block must mint exactly the schedule's amount for its height, or 0 with no allocations. */
  schedule?: IssuanceSchedule;
}

/**
 * SPEC §8.7.3: the header checks of the block after `state` (height, link, epoch), which need only a
 * body's fixed header (`rewardBlockHeader`): a reader can refuse a block before decoding its body.
 * Throws REWARD_CHAIN_BAD_HEIGHT, REWARD_CHAIN_BROKEN_LINK, REWARD_CHAIN_BAD_EPOCH.
 */
export function checkNextRewardHeader(state: ChainState, h: { height: number; previousHash: Buffer; epoch: number }): void {
  if (h.height !== state.height + 1) throw err('REWARD_CHAIN_BAD_HEIGHT', `expected height ${state.height + 1}, got ${h.height}`);
  if (!h.previousHash.equals(state.tipHash)) throw err('REWARD_CHAIN_BROKEN_LINK', `block ${h.height} does not name the hash of block ${state.height}`);
  if (h.epoch <= state.epoch) throw err('REWARD_CHAIN_BAD_EPOCH', `block ${h.height} is for epoch ${h.epoch}, not after ${state.epoch}`);
}

/**
 * SPEC §8.7.3: checks one block against the chain so far and, only when every check passes, adds it
 * to `state` (mutated). In the order of §8.7.3: the header (items 1–4, from the body's fixed header),
 * the signatures over the raw body bytes (item 5), and only then the body decoded (item 6, unless
 * `input` carries it already) and applied (item 7): a block nobody signed costs no body decode.
 * Signatures by unknown authorities or keys are ignored (not counted); a signature by an accepted
 * key that does not verify fails the block.
 */
export function applyRewardBlock(
  state: ChainState, input: Uint8Array | SplitRewardBlock | SignedRewardBlock, authorities: RewardAuthorities, threshold: number, opts: ChainOptions = {},
): SignedRewardBlock {
  const split: SplitRewardBlock & { block?: RewardBlock } = input instanceof Uint8Array ? splitSignedRewardBlock(input) : input;
  const h = rewardBlockHeader(split.body);
  checkNextRewardHeader(state, h);
  const msg = Buffer.concat([REWARD_SIGNATURE_DOMAIN, split.body]);
  let valid = 0;
  for (const s of split.signatures) {
    if (!authorities.accepts(s.authority, s.signingKey, { height: h.height, epoch: h.epoch })) continue;
    if (!ed25519Verify(s.signature, msg, s.signingKey)) {
      throw err('REWARD_BAD_SIGNATURE', `signature by authority ${s.authority.toString('hex')} on block ${h.height} does not verify`);
    }
    valid++;
  }
  if (valid < threshold) throw err('REWARD_TOO_FEW_SIGNATURES', `block ${h.height} has ${valid} valid authority signatures, needs ${threshold}`);
  const b = split.block ?? decodeRewardBlock(split.body);
  if ((b.minted === 0n) !== (b.allocations.size === 0)) throw err('REWARD_MINT_MISMATCH', 'a block mints nothing exactly when it allocates nothing');
  if (opts.schedule && b.minted !== 0n && b.minted !== scheduledMint(b.height, opts.schedule)) {
    throw err('REWARD_MINT_MISMATCH', `block ${b.height} mints ${b.minted}, the schedule says ${scheduledMint(b.height, opts.schedule)}`);
  }
  const { ledger, escrows } = blockEffects(state, b);
  const sb: SignedRewardBlock = { block: b, body: split.body, hash: split.hash, signatures: split.signatures };
  // SPEC §8.11.1: block 0's hash is the chain id (its own transfers cannot name it: they are in it).
  if (b.height === 0) state.chainId = sb.hash;
  state.height = b.height;
  if (escrows) state.escrows = escrows;
  state.tipHash = sb.hash;
  state.epoch = b.epoch;
  state.totalMinted += b.minted;
  state.transfers += b.transfers?.length ?? 0;
  ledger.commit(state);
  return sb;
}

/**
 * Verifies a whole chain from genesis and returns the balances (SPEC §8.7). Throws a BitcloudError
 * naming the first bad block, in the order of SPEC §8.7.3: REWARD_MALFORMED (layout, header),
 * REWARD_CHAIN_BAD_HEIGHT, REWARD_CHAIN_BROKEN_LINK, REWARD_CHAIN_BAD_EPOCH, REWARD_BAD_SIGNATURE,
 * REWARD_TOO_FEW_SIGNATURES, REWARD_MALFORMED / REWARD_SUM_MISMATCH (body), REWARD_MINT_MISMATCH,
 * REWARD_BAD_TRANSFER, REWARD_BAD_ESCROW. `threshold` defaults to more than half of the configured authorities.
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
