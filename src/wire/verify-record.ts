// SPEC.md §9.18.2: the byte layout of a verify record (before encryption). Integers big-endian.
//
//   record = version u8 (= 1) | k u8 | n u8 | chunk_count u32 | chunk_count × chunk
//   chunk  = kind u8 (1 DATA, 2 MANIFEST) | index u32 | share_size u32 | n × (share_id [32] | audit_root [32])
//
// share_size is 1..MAX_SHARE_BYTES (SPEC.md §9.17.1). Decoding failures are VERIFY_RECORD_MALFORMED.
import { err } from '../errors';
import { MAX_SHARE_BYTES } from '../storage/share';
import { Reader, Writer, type CodecCodes } from './bytes';

export const VERIFY_RECORD_VERSION = 1;
const CODES: CodecCodes = { truncated: 'VERIFY_RECORD_MALFORMED', malformed: 'VERIFY_RECORD_MALFORMED' };

export interface VerifyChunk {
  /** 1 = DATA, 2 = MANIFEST (SPEC.md §9.2 chunk kinds). */
  kind: 1 | 2;
  index: number;
  /** S: every share of the chunk has this many bytes. */
  shareSize: number;
  shareIds: Buffer[];
  auditRoots: Buffer[];
}

export interface VerifyRecord {
  k: number;
  n: number;
  chunks: VerifyChunk[];
}

export function encodeVerifyRecord(r: VerifyRecord): Buffer {
  const w = new Writer(7 + r.chunks.length * (9 + 64 * r.n), 'verify record', CODES);
  w.u8(VERIFY_RECORD_VERSION, 'version').u8(r.k, 'k').u8(r.n, 'n').u32(r.chunks.length, 'chunk_count');
  for (const c of r.chunks) {
    if (c.shareIds.length !== r.n || c.auditRoots.length !== r.n) throw err('VERIFY_RECORD_MALFORMED', 'a chunk must list n shares');
    w.u8(c.kind, 'kind').u32(c.index, 'index').u32(c.shareSize, 'share_size');
    for (let j = 0; j < r.n; j++) {
      if (c.shareIds[j].length !== 32 || c.auditRoots[j].length !== 32) throw err('VERIFY_RECORD_MALFORMED', 'share ids and audit roots are 32 bytes');
      w.bytes(c.shareIds[j]).bytes(c.auditRoots[j]);
    }
  }
  return w.finish();
}

export function decodeVerifyRecord(b: Uint8Array): VerifyRecord {
  const r = new Reader(b, 'verify record', CODES);
  const version = r.u8('version');
  if (version !== VERIFY_RECORD_VERSION) throw err('VERIFY_RECORD_MALFORMED', `verify record version ${version} is not ${VERIFY_RECORD_VERSION}`);
  const k = r.u8('k');
  const n = r.u8('n');
  if (k < 1 || k > n || n > 64) throw err('VERIFY_RECORD_MALFORMED', 'bad k or n');
  const count = r.u32('chunk_count');
  if (count * (9 + 64 * n) > r.remaining) throw err('VERIFY_RECORD_MALFORMED', 'verify record shorter than its chunk count');
  const chunks: VerifyChunk[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r.u8('kind');
    if (kind !== 1 && kind !== 2) throw err('VERIFY_RECORD_MALFORMED', `chunk kind ${kind} is not DATA or MANIFEST`);
    const index = r.u32('index');
    const shareSize = r.u32('share_size');
    if (shareSize < 1 || shareSize > MAX_SHARE_BYTES) throw err('VERIFY_RECORD_MALFORMED', `share size ${shareSize} is not 1..${MAX_SHARE_BYTES}`);
    const shareIds: Buffer[] = [];
    const auditRoots: Buffer[] = [];
    for (let j = 0; j < n; j++) {
      shareIds.push(r.bytes(32, 'share_id'));
      auditRoots.push(r.bytes(32, 'audit_root'));
    }
    chunks.push({ kind, index, shareSize, shareIds, auditRoots });
  }
  r.end();
  return { k, n, chunks };
}
