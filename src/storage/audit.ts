// SPEC.md §9.17: audits with Merkle proofs. A share is cut into AUDIT_BLOCK_BYTES blocks; the
// *audit root* is a Merkle root over them, bound to the share's size. An auditor that keeps only
// the audit root (32 bytes, from the uploader's records) names random blocks and a fresh nonce; the
// node answers with those blocks and their Merkle paths (layout in src/wire/audit-answer.ts), and
// the auditor checks them without holding the share.
import { err } from '../errors';
import { blake2b, blake2bInto, constantTimeEqual } from '../crypto/primitives';
import { decodeAuditAnswer, type AuditAnswer, type AuditAnswerBlock } from '../wire/audit-answer';
import { HASH_PIECE_BYTES, MAX_SHARE_BYTES, yieldToLoop } from './share';

export const AUDIT_BLOCK_BYTES = 4096;
/** Blocks named by one challenge (SPEC.md §9.17.3). */
export const MAX_AUDIT_BLOCKS = 16;
/** Blocks an auditor of this implementation names by default. */
export const DEFAULT_AUDIT_BLOCKS = 4;

const LEAF = Buffer.from('bitcloud-audit-leaf-v1');
const NODE = Buffer.from('bitcloud-audit-node-v1');
const ROOT = Buffer.from('bitcloud-audit-root-v1');
const INDEX = Buffer.from('bitcloud-audit-index-v1');

function u32be(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

function u64be(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

/** Number of audit blocks of a share of `size` bytes (size ≥ 1). */
export function auditBlockCount(size: number): number {
  return Math.ceil(size / AUDIT_BLOCK_BYTES);
}

/** Length of block `i` of a share of `size` bytes. */
export function auditBlockLength(size: number, i: number): number {
  return Math.min(AUDIT_BLOCK_BYTES, size - i * AUDIT_BLOCK_BYTES);
}

/**
 * SPEC.md §9.17.3, §9.20.3: the most bytes a valid answer to `blocks` of a share of `size` bytes
 * with a nonce of `nonceLength` bytes can take (each path at most the tree's height). A longer
 * answer cannot verify.
 */
export function auditAnswerMaxBytes(size: number, nonceLength: number, blocks: readonly number[]): number {
  const height = Math.ceil(Math.log2(auditBlockCount(size)));
  // version, share_size, nonce_len, nonce, count; per block index, block_len, block, depth, path
  let n = 1 + 8 + 1 + nonceLength + 1;
  for (const i of blocks) n += 4 + 2 + auditBlockLength(size, i) + 1 + 32 * height;
  return n;
}

/** "bitcloud-audit-leaf-v1" | i (u32): rewritten for each leaf (hashing is synchronous). */
const LEAF_HEAD = Buffer.alloc(LEAF.length + 4);
LEAF.copy(LEAF_HEAD, 0);

/** leaf_i of SPEC.md §9.17.1, written into `out` (32 bytes). */
function leafHashInto(out: Uint8Array, i: number, block: Uint8Array): void {
  LEAF_HEAD.writeUInt32BE(i, LEAF.length);
  blake2bInto(out, LEAF_HEAD, block);
}

/** An inner node of SPEC.md §9.17.1, written into `out` (32 bytes). */
function nodeHashInto(out: Uint8Array, l: Uint8Array, r: Uint8Array): void {
  blake2bInto(out, NODE, l, r);
}

export function leafHash(i: number, block: Uint8Array): Buffer {
  const out = Buffer.alloc(32);
  leafHashInto(out, i, block);
  return out;
}

function nodeHash(l: Uint8Array, r: Uint8Array): Buffer {
  const out = Buffer.alloc(32);
  nodeHashInto(out, l, r);
  return out;
}

function rootHash(size: number, top: Uint8Array): Buffer {
  return blake2b([ROOT, u64be(size), top], 32);
}

/** Leaves `from` .. `to` - 1 of `share`, each written into `leaves` and pushed on `level`. */
function hashLeaves(share: Uint8Array, leaves: Buffer, level: Buffer[], from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const h = leaves.subarray(i * 32, (i + 1) * 32);
    leafHashInto(h, i, share.subarray(i * AUDIT_BLOCK_BYTES, Math.min(share.length, (i + 1) * AUDIT_BLOCK_BYTES)));
    level.push(h);
  }
}

/**
 * Every level of the tree, leaves first; a level of odd length promotes its last node unchanged.
 * The hashes go into one buffer per level (a 256 KiB share has 127 of them; allocating per hash
 * cost as much as hashing).
 */
function levels(share: Uint8Array): Buffer[][] {
  const count = auditBlockCount(share.length);
  const level: Buffer[] = [];
  hashLeaves(share, Buffer.allocUnsafe(count * 32), level, 0, count);
  return levelsAbove(level);
}

/** levels(), hashing the leaves HASH_PIECE_BYTES of the share at a time with turns of the event loop between. */
async function levelsInPieces(share: Uint8Array): Promise<Buffer[][]> {
  const count = auditBlockCount(share.length);
  const per = HASH_PIECE_BYTES / AUDIT_BLOCK_BYTES;
  const leaves = Buffer.allocUnsafe(count * 32);
  const level: Buffer[] = [];
  for (let from = 0; from < count; from += per) {
    if (from > 0) await yieldToLoop();
    hashLeaves(share, leaves, level, from, Math.min(count, from + per));
  }
  return levelsAbove(level);
}

/** The tree over a level of leaves (a 16 MiB share: 4095 small hashes above its 4096 leaves). */
function levelsAbove(leaves: Buffer[]): Buffer[][] {
  const out: Buffer[][] = [leaves];
  let level = leaves;
  while (level.length > 1) {
    const pairs = level.length >> 1;
    const hashes = Buffer.allocUnsafe(pairs * 32);
    const next: Buffer[] = [];
    for (let j = 0; j < pairs; j++) {
      const h = hashes.subarray(j * 32, (j + 1) * 32);
      nodeHashInto(h, level[2 * j], level[2 * j + 1]);
      next.push(h);
    }
    if (level.length % 2 === 1) next.push(level[level.length - 1]);
    out.push(next);
    level = next;
  }
  return out;
}

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_SHARE_BYTES) throw err('STORAGE_BAD_REQUEST', `share must be 1..${MAX_SHARE_BYTES} bytes`, { size });
}

/** The audit root of a share (SPEC.md §9.17.1): what an auditor keeps instead of the share. */
export function auditRoot(share: Uint8Array): Buffer {
  checkSize(share.length);
  const lv = levels(share);
  return rootHash(share.length, lv[lv.length - 1][0]);
}

/** The sibling path of leaf `i`, bottom up; levels where the node is promoted have no sibling. */
function pathOf(lv: Buffer[][], i: number): Buffer[] {
  const out: Buffer[] = [];
  let idx = i;
  for (let d = 0; d < lv.length - 1; d++) {
    const level = lv[d];
    const sib = idx ^ 1;
    if (sib < level.length) out.push(level[sib]);
    idx >>= 1;
  }
  return out;
}

/** Node side: the blocks `indices` of `share` with their Merkle paths (indices already checked). */
export function proveBlocks(share: Uint8Array, indices: readonly number[]): AuditAnswerBlock[] {
  return blocksWithPaths(share, levels(share), indices);
}

/** proveBlocks, hashing the share in pieces with turns of the event loop between them (SPEC.md §9.17.2). */
export async function proveBlocksInPieces(share: Uint8Array, indices: readonly number[]): Promise<AuditAnswerBlock[]> {
  return blocksWithPaths(share, await levelsInPieces(share), indices);
}

function blocksWithPaths(share: Uint8Array, lv: Buffer[][], indices: readonly number[]): AuditAnswerBlock[] {
  return indices.map((i) => ({
    index: i,
    block: Buffer.from(share.subarray(i * AUDIT_BLOCK_BYTES, Math.min(share.length, (i + 1) * AUDIT_BLOCK_BYTES))),
    path: pathOf(lv, i),
  }));
}

/** Recompute the audit root from one block and its path; null when the path has the wrong length. */
function rootFromPath(size: number, i: number, block: Uint8Array, path: readonly Uint8Array[]): Buffer | null {
  let width = auditBlockCount(size);
  let idx = i;
  let h = leafHash(i, block);
  let used = 0;
  while (width > 1) {
    const sib = idx ^ 1;
    if (sib < width) {
      const s = path[used++];
      if (!s) return null;
      h = idx & 1 ? nodeHash(s, h) : nodeHash(h, s);
    }
    idx >>= 1;
    width = Math.ceil(width / 2);
  }
  return used === path.length ? rootHash(size, h) : null;
}

/**
 * The blocks a challenge with `nonce` names for a share of `size` bytes (SPEC.md §9.17.2):
 * `count` distinct indices drawn from BLAKE2b keyed by the nonce, sorted. A published (nonce,
 * answer) pair can therefore be rechecked by anyone who holds the audit root.
 */
export function challengeBlocks(nonce: Uint8Array, shareId: Uint8Array, size: number, count = DEFAULT_AUDIT_BLOCKS): number[] {
  checkSize(size);
  const total = auditBlockCount(size);
  const want = Math.min(count, total, MAX_AUDIT_BLOCKS);
  const picked = new Set<number>();
  for (let j = 0; picked.size < want; j++) {
    const h = blake2b([INDEX, shareId, u32be(j)], 8, nonce);
    picked.add(Number(h.readBigUInt64BE(0) % BigInt(total)));
  }
  return [...picked].sort((a, b) => a - b);
}

/** What the auditor expects of an answer. */
export interface AuditExpectation {
  /** The audit root kept with the file's records. */
  root: Uint8Array;
  /** The share's size, kept with the root. */
  size: number;
  /** The nonce the challenge carried. */
  nonce: Uint8Array;
  /** The block indices the challenge named, ascending. */
  blocks: readonly number[];
}

/**
 * Auditor side: check an answer (the bytes of AuditChallengeOk.answer) against the challenge and
 * the audit root. AUDIT_ANSWER_MALFORMED when it does not decode; AUDIT_REPLAYED when it carries
 * another nonce; AUDIT_PROOF_INVALID when the size, the blocks or any path do not match.
 */
export function verifyAuditAnswer(answerBytes: Uint8Array, exp: AuditExpectation): AuditAnswer {
  const a = decodeAuditAnswer(answerBytes);
  if (!constantTimeEqual(a.nonce, exp.nonce)) throw err('AUDIT_REPLAYED', 'audit answer carries another nonce than the challenge (a replayed answer)');
  if (a.shareSize !== exp.size) throw err('AUDIT_PROOF_INVALID', 'audit answer names another share size', { got: a.shareSize, want: exp.size });
  if (a.blocks.length !== exp.blocks.length || a.blocks.some((b, j) => b.index !== exp.blocks[j])) {
    throw err('AUDIT_PROOF_INVALID', 'audit answer does not answer the blocks named');
  }
  for (const b of a.blocks) {
    if (b.block.length !== auditBlockLength(exp.size, b.index)) throw err('AUDIT_PROOF_INVALID', 'audit block of the wrong length', { index: b.index });
    const r = rootFromPath(exp.size, b.index, b.block, b.path);
    if (!r || !constantTimeEqual(r, exp.root)) throw err('AUDIT_PROOF_INVALID', 'audit block does not prove against the audit root', { index: b.index });
  }
  return a;
}
