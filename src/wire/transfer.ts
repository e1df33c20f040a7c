// SPEC.md §8.11.1: the byte layout of a cloudcoin transfer. Integers big-endian.
//
//   transfer = version u8 (1 or 2) | from [32] | to [32] | amount u64 | nonce u64 | signature [64]
//
// `from` and `to` are Ed25519 public keys (a relay's identity key, or a wallet key); the signature
// is by `from` over the version's prefix | the first 81 bytes: TRANSFER_SIG_PREFIX for version 1
// (a plain transfer), FUNDING_SIG_PREFIX for version 2 (a funding transfer: `to` is a storage
// contract id, and a block carries it only with the **open** of that contract's escrow, §9.20.4).
// The two prefixes differ, so a signature of one version never verifies as the other. Decoding
// failures are TRANSFER_MALFORMED.
import { err } from '../errors';
import { Reader, Writer, type CodecCodes } from './bytes';

/** A plain transfer (SPEC.md §8.11.1). */
export const TRANSFER_VERSION = 1;
/** A funding transfer (SPEC.md §8.11.1, §9.20.4): applies only with its escrow's open in the same block. */
export const FUNDING_TRANSFER_VERSION = 2;
export type TransferVersion = typeof TRANSFER_VERSION | typeof FUNDING_TRANSFER_VERSION;
export const TRANSFER_BYTES = 1 + 32 + 32 + 8 + 8 + 64;
export const TRANSFER_SIGNED_BYTES = TRANSFER_BYTES - 64;
export const TRANSFER_SIG_PREFIX = Buffer.from('bitcloud transfer v1\0', 'ascii');
export const FUNDING_SIG_PREFIX = Buffer.from('bitcloud funding v1\0', 'ascii');
const CODES: CodecCodes = { truncated: 'TRANSFER_MALFORMED', malformed: 'TRANSFER_MALFORMED' };

export interface Transfer {
  /** 1: a plain transfer; 2: a funding transfer (`to` is a contract id, SPEC.md §9.20.4). */
  version: TransferVersion;
  from: Buffer;
  to: Buffer;
  /** Units (1 coin = 10^8), 1..2^53 − 1. */
  amount: bigint;
  /** The sender's transfer counter: 1 for its first transfer, then +1. */
  nonce: number;
  signature: Buffer;
}

function check(t: Omit<Transfer, 'signature'>): void {
  if (t.version !== TRANSFER_VERSION && t.version !== FUNDING_TRANSFER_VERSION) throw err('TRANSFER_MALFORMED', `transfer version ${String(t.version)} is not ${TRANSFER_VERSION} or ${FUNDING_TRANSFER_VERSION}`);
  if (t.from.length !== 32 || t.to.length !== 32) throw err('TRANSFER_MALFORMED', 'from and to are 32-byte keys');
  if (t.from.equals(t.to)) throw err('TRANSFER_MALFORMED', 'a transfer to its own sender');
  if (t.amount < 1n || t.amount > BigInt(Number.MAX_SAFE_INTEGER)) throw err('TRANSFER_MALFORMED', 'amount outside 1..2^53 − 1 units');
  if (!Number.isSafeInteger(t.nonce) || t.nonce < 1) throw err('TRANSFER_MALFORMED', 'nonce outside 1..2^53 − 1');
}

/** The first 81 bytes of a transfer: everything but the signature. */
function transferBody(t: Omit<Transfer, 'signature'>): Buffer {
  check(t);
  const w = new Writer(TRANSFER_SIGNED_BYTES, 'transfer', CODES);
  w.u8(t.version, 'version').bytes(t.from).bytes(t.to).u64big(t.amount, 'amount').u64(t.nonce, 'nonce');
  return w.finish();
}

/** The bytes the sender signs: the version's prefix, then everything but the signature. */
export function transferSignedBytes(t: Omit<Transfer, 'signature'>): Buffer {
  const body = transferBody(t);
  return Buffer.concat([t.version === FUNDING_TRANSFER_VERSION ? FUNDING_SIG_PREFIX : TRANSFER_SIG_PREFIX, body]);
}

export function encodeTransfer(t: Transfer): Buffer {
  if (t.signature.length !== 64) throw err('TRANSFER_MALFORMED', 'signature is 64 bytes');
  return Buffer.concat([transferBody(t), t.signature]);
}

export function decodeTransfer(b: Uint8Array): Transfer {
  if (b.length !== TRANSFER_BYTES) throw err('TRANSFER_MALFORMED', `a transfer is ${TRANSFER_BYTES} bytes, not ${b.length}`);
  const r = new Reader(b, 'transfer', CODES);
  const version = r.u8('version');
  if (version !== TRANSFER_VERSION && version !== FUNDING_TRANSFER_VERSION) {
    throw err('TRANSFER_MALFORMED', `transfer version ${version} is not ${TRANSFER_VERSION} or ${FUNDING_TRANSFER_VERSION}`);
  }
  const t: Transfer = { version, from: r.bytes(32, 'from'), to: r.bytes(32, 'to'), amount: r.u64big('amount'), nonce: r.u64('nonce'), signature: r.bytes(64, 'signature') };
  r.end();
  check(t);
  return t;
}
