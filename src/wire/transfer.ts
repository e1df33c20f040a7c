// SPEC.md §8.11.1: the byte layout of a cloudcoin transfer. Integers big-endian.
//
//   transfer = version u8 (= 1) | from [32] | to [32] | amount u64 | nonce u64 | signature [64]
//
// `from` and `to` are Ed25519 public keys (a relay's identity key, or a wallet key); the signature
// is by `from` over TRANSFER_SIG_PREFIX | the first 81 bytes. Decoding failures are TRANSFER_MALFORMED.
import { err } from '../errors';
import { Reader, Writer, type CodecCodes } from './bytes';

export const TRANSFER_VERSION = 1;
export const TRANSFER_BYTES = 1 + 32 + 32 + 8 + 8 + 64;
export const TRANSFER_SIGNED_BYTES = TRANSFER_BYTES - 64;
export const TRANSFER_SIG_PREFIX = Buffer.from('bitcloud transfer v1\0', 'ascii');
const CODES: CodecCodes = { truncated: 'TRANSFER_MALFORMED', malformed: 'TRANSFER_MALFORMED' };

export interface Transfer {
  from: Buffer;
  to: Buffer;
  /** Units (1 coin = 10^8), 1..2^53 − 1. */
  amount: bigint;
  /** The sender's transfer counter: 1 for its first transfer, then +1. */
  nonce: number;
  signature: Buffer;
}

function check(t: Omit<Transfer, 'signature'>): void {
  if (t.from.length !== 32 || t.to.length !== 32) throw err('TRANSFER_MALFORMED', 'from and to are 32-byte keys');
  if (t.from.equals(t.to)) throw err('TRANSFER_MALFORMED', 'a transfer to its own sender');
  if (t.amount < 1n || t.amount > BigInt(Number.MAX_SAFE_INTEGER)) throw err('TRANSFER_MALFORMED', 'amount outside 1..2^53 − 1 units');
  if (!Number.isSafeInteger(t.nonce) || t.nonce < 1) throw err('TRANSFER_MALFORMED', 'nonce outside 1..2^53 − 1');
}

/** The bytes the sender signs (after the prefix): everything but the signature. */
export function transferSignedBytes(t: Omit<Transfer, 'signature'>): Buffer {
  check(t);
  const w = new Writer(TRANSFER_SIGNED_BYTES, 'transfer', CODES);
  w.u8(TRANSFER_VERSION, 'version').bytes(t.from).bytes(t.to).u64big(t.amount, 'amount').u64(t.nonce, 'nonce');
  return Buffer.concat([TRANSFER_SIG_PREFIX, w.finish()]);
}

export function encodeTransfer(t: Transfer): Buffer {
  if (t.signature.length !== 64) throw err('TRANSFER_MALFORMED', 'signature is 64 bytes');
  return Buffer.concat([transferSignedBytes(t).subarray(TRANSFER_SIG_PREFIX.length), t.signature]);
}

export function decodeTransfer(b: Uint8Array): Transfer {
  if (b.length !== TRANSFER_BYTES) throw err('TRANSFER_MALFORMED', `a transfer is ${TRANSFER_BYTES} bytes, not ${b.length}`);
  const r = new Reader(b, 'transfer', CODES);
  const version = r.u8('version');
  if (version !== TRANSFER_VERSION) throw err('TRANSFER_MALFORMED', `transfer version ${version} is not ${TRANSFER_VERSION}`);
  const t: Transfer = { from: r.bytes(32, 'from'), to: r.bytes(32, 'to'), amount: r.u64big('amount'), nonce: r.u64('nonce'), signature: r.bytes(64, 'signature') };
  r.end();
  check(t);
  return t;
}
