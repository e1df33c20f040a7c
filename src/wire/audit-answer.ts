// SPEC.md §9.17.3: the byte layout of an audit answer (AuditChallengeOk.answer). Integers big-endian.
//
//   answer = version u8 (= 1) | share_size u64 | nonce_len u8 | nonce [nonce_len]
//            | count u8 | count × entry
//   entry  = index u32 | block_len u16 | block [block_len] | depth u8 | depth × sibling [32]
//
// Decoding failures are AUDIT_ANSWER_MALFORMED; whether the blocks prove anything is checked by
// src/storage/audit.ts.
import { err } from '../errors';
import { Reader, Writer, type CodecCodes } from './bytes';

export const AUDIT_ANSWER_VERSION = 1;
const MAX_BLOCKS = 16;
const MAX_BLOCK = 4096;
const MAX_DEPTH = 32;
const MAX_NONCE = 64;
const CODES: CodecCodes = { truncated: 'AUDIT_ANSWER_MALFORMED', malformed: 'AUDIT_ANSWER_MALFORMED' };

export interface AuditAnswerBlock {
  index: number;
  block: Buffer;
  /** Sibling hashes, bottom up (levels where the node has no sibling are skipped). */
  path: Buffer[];
}

export interface AuditAnswer {
  shareSize: number;
  nonce: Buffer;
  blocks: AuditAnswerBlock[];
}

export function encodeAuditAnswer(a: AuditAnswer): Buffer {
  if (a.blocks.length > MAX_BLOCKS || a.nonce.length > MAX_NONCE) throw err('AUDIT_ANSWER_MALFORMED', 'too many blocks or too long a nonce');
  let len = 1 + 8 + 1 + a.nonce.length + 1;
  for (const b of a.blocks) len += 4 + 2 + b.block.length + 1 + 32 * b.path.length;
  const w = new Writer(len, 'audit answer', CODES);
  w.u8(AUDIT_ANSWER_VERSION, 'version').u64(a.shareSize, 'share_size').u8(a.nonce.length, 'nonce_len').bytes(a.nonce).u8(a.blocks.length, 'count');
  for (const b of a.blocks) {
    if (b.block.length > MAX_BLOCK || b.path.length > MAX_DEPTH || b.path.some((p) => p.length !== 32)) throw err('AUDIT_ANSWER_MALFORMED', 'bad audit block');
    w.u32(b.index, 'index').u16(b.block.length, 'block_len').bytes(b.block).u8(b.path.length, 'depth');
    for (const p of b.path) w.bytes(p);
  }
  return w.finish();
}

export function decodeAuditAnswer(bytes: Uint8Array): AuditAnswer {
  const r = new Reader(bytes, 'audit answer', CODES);
  const version = r.u8('version');
  if (version !== AUDIT_ANSWER_VERSION) throw err('AUDIT_ANSWER_MALFORMED', `audit answer version ${version} is not ${AUDIT_ANSWER_VERSION}`);
  const shareSize = r.u64('share_size');
  const nonceLen = r.u8('nonce_len');
  if (nonceLen < 1 || nonceLen > MAX_NONCE) throw err('AUDIT_ANSWER_MALFORMED', 'audit answer nonce length out of range');
  const nonce = r.bytes(nonceLen, 'nonce');
  const count = r.u8('count');
  if (count < 1 || count > MAX_BLOCKS) throw err('AUDIT_ANSWER_MALFORMED', `audit answer must hold 1..${MAX_BLOCKS} blocks`);
  const blocks: AuditAnswerBlock[] = [];
  for (let j = 0; j < count; j++) {
    const index = r.u32('index');
    const blen = r.u16('block_len');
    if (blen < 1 || blen > MAX_BLOCK) throw err('AUDIT_ANSWER_MALFORMED', 'audit block length out of range');
    const block = r.bytes(blen, 'block');
    const depth = r.u8('depth');
    if (depth > MAX_DEPTH) throw err('AUDIT_ANSWER_MALFORMED', 'audit path too deep');
    const path: Buffer[] = [];
    for (let d = 0; d < depth; d++) path.push(r.bytes(32, 'sibling'));
    blocks.push({ index, block, path });
  }
  r.end();
  return { shareSize, nonce, blocks };
}
