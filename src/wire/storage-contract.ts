// SPEC.md §9.20.1: the byte layout of a storage contract. Integers big-endian.
//
//   contract = magic "BCSC" | version u8 (= 1) | start_epoch u64 | end_epoch u64 | count u32
//              | count × entry
//   entry    = node [32] | share_id [32] | share_size u32 | audit_root [32]
//
// Entries are in strictly ascending order of (node, share_id), so a contract has one encoding and
// its id, BLAKE2b-32 of the bytes, names it. Decoding failures are CONTRACT_MALFORMED.
import { err } from '../errors';
import { Reader, Writer, MAX_SAFE_U64, type CodecCodes } from './bytes';
import { MAX_SHARE_BYTES } from '../storage/share';

export const CONTRACT_MAGIC = Buffer.from('BCSC', 'ascii');
export const CONTRACT_VERSION = 1;
/** Entries per contract. */
export const MAX_CONTRACT_ENTRIES = 4096;
/** Epochs a contract may span (end − start). */
export const MAX_CONTRACT_EPOCHS = 100_000;
/**
 * SPEC.md §9.20.1: how far ahead of an authority's current epoch a contract may start (7 days at
 * P = 3600 s). One starting later is refused (CONTRACT_TOO_EARLY): it would be neither audited nor
 * forgotten for ages and hold a place under the authority's limits all that time.
 */
export const CONTRACT_MAX_LEAD_EPOCHS = 168;
export const CONTRACT_ENTRY_BYTES = 32 + 32 + 4 + 32;
export const CONTRACT_HEADER_BYTES = 4 + 1 + 8 + 8 + 4;
export const MAX_CONTRACT_BYTES = CONTRACT_HEADER_BYTES + MAX_CONTRACT_ENTRIES * CONTRACT_ENTRY_BYTES;
const CODES: CodecCodes = { truncated: 'CONTRACT_MALFORMED', malformed: 'CONTRACT_MALFORMED' };

export interface ContractEntry {
  /** The storage node's identity key (32 bytes). */
  node: Buffer;
  shareId: Buffer;
  shareSize: number;
  auditRoot: Buffer;
}

export interface StorageContract {
  /** First epoch audited (SPEC.md §8: epoch e is [e·P, (e+1)·P)). */
  startEpoch: number;
  /** First epoch no longer audited (end > start). */
  endEpoch: number;
  entries: ContractEntry[];
}

function compareEntries(a: ContractEntry, b: ContractEntry): number {
  return Buffer.compare(a.node, b.node) || Buffer.compare(a.shareId, b.shareId);
}

/** Sort the entries as the layout requires (a convenience for builders). */
export function sortContractEntries(entries: ContractEntry[]): ContractEntry[] {
  return [...entries].sort(compareEntries);
}

function checkRange(startEpoch: number, endEpoch: number): void {
  if (!(endEpoch > startEpoch) || endEpoch - startEpoch > MAX_CONTRACT_EPOCHS) {
    throw err('CONTRACT_MALFORMED', `a contract spans 1..${MAX_CONTRACT_EPOCHS} epochs (start ${startEpoch}, end ${endEpoch})`);
  }
}

export function encodeContract(c: StorageContract): Buffer {
  if (c.entries.length < 1 || c.entries.length > MAX_CONTRACT_ENTRIES) throw err('CONTRACT_MALFORMED', `a contract holds 1..${MAX_CONTRACT_ENTRIES} entries`);
  checkRange(c.startEpoch, c.endEpoch);
  const w = new Writer(CONTRACT_HEADER_BYTES + c.entries.length * CONTRACT_ENTRY_BYTES, 'storage contract', CODES);
  w.bytes(CONTRACT_MAGIC).u8(CONTRACT_VERSION, 'version').u64(c.startEpoch, 'start_epoch').u64(c.endEpoch, 'end_epoch').u32(c.entries.length, 'count');
  let prev: ContractEntry | null = null;
  for (const e of c.entries) {
    if (e.node.length !== 32 || e.shareId.length !== 32 || e.auditRoot.length !== 32) throw err('CONTRACT_MALFORMED', 'node, share id and audit root are 32 bytes');
    if (!Number.isInteger(e.shareSize) || e.shareSize < 1 || e.shareSize > MAX_SHARE_BYTES) throw err('CONTRACT_MALFORMED', `share size ${e.shareSize} outside 1..${MAX_SHARE_BYTES}`);
    if (prev && compareEntries(prev, e) >= 0) throw err('CONTRACT_MALFORMED', 'entries are not in ascending (node, share id) order or repeat');
    prev = e;
    w.bytes(e.node).bytes(e.shareId).u32(e.shareSize, 'share_size').bytes(e.auditRoot);
  }
  return w.finish();
}

export function decodeContract(b: Uint8Array): StorageContract {
  if (b.length > MAX_CONTRACT_BYTES) throw err('CONTRACT_MALFORMED', `a contract is at most ${MAX_CONTRACT_BYTES} bytes`);
  const r = new Reader(b, 'storage contract', CODES);
  if (!r.bytes(4, 'magic').equals(CONTRACT_MAGIC)) throw err('CONTRACT_MALFORMED', 'not a storage contract (magic)');
  const version = r.u8('version');
  if (version !== CONTRACT_VERSION) throw err('CONTRACT_MALFORMED', `contract version ${version} is not ${CONTRACT_VERSION}`);
  const startEpoch = r.u64('start_epoch');
  const endEpoch = r.u64('end_epoch');
  if (startEpoch > MAX_SAFE_U64 || endEpoch > MAX_SAFE_U64) throw err('CONTRACT_MALFORMED', 'epoch above 2^53 − 1');
  checkRange(startEpoch, endEpoch);
  const count = r.u32('count');
  if (count < 1 || count > MAX_CONTRACT_ENTRIES) throw err('CONTRACT_MALFORMED', `a contract holds 1..${MAX_CONTRACT_ENTRIES} entries, not ${count}`);
  if (count * CONTRACT_ENTRY_BYTES !== r.remaining) throw err('CONTRACT_MALFORMED', 'contract length does not match its entry count');
  const entries: ContractEntry[] = [];
  let prev: ContractEntry | null = null;
  for (let i = 0; i < count; i++) {
    const e: ContractEntry = { node: r.bytes(32, 'node'), shareId: r.bytes(32, 'share_id'), shareSize: r.u32('share_size'), auditRoot: r.bytes(32, 'audit_root') };
    if (e.shareSize < 1 || e.shareSize > MAX_SHARE_BYTES) throw err('CONTRACT_MALFORMED', `entry ${i}: share size ${e.shareSize} outside 1..${MAX_SHARE_BYTES}`);
    if (prev && compareEntries(prev, e) >= 0) throw err('CONTRACT_MALFORMED', `entry ${i}: not after the previous entry in (node, share id) order`);
    prev = e;
    entries.push(e);
  }
  r.end();
  return { startEpoch, endEpoch, entries };
}
