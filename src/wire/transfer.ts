// SPEC.md §8.11.1: the byte layout of a cloudcoin transfer. Integers big-endian.
//
//   transfer = version u8 (1..4) | from [32] | to [32] | amount u64 | nonce u64 | signature [64]
//
// `from` and `to` are Ed25519 public keys (a relay's identity key, or a wallet key); the signature
// is by `from` over the version's context, then (versions 3 and 4) the chain id — the hash of the
// chain's block 0 (§8.7.1) — then the first 81 bytes. Versions 3 (plain) and 4 (funding: `to` is a
// storage contract id, and a block carries it only with the **open** of that contract's escrow,
// §9.20.4) are bound to one chain, so a transfer signed for one network never verifies on another.
// Versions 1 and 2 (plain, funding) name no chain: they stay decodable and verifiable in blocks
// already written, but no authority takes a new one (§8.11.3). The four contexts differ, so a
// signature of one version never verifies as another. Decoding failures are TRANSFER_MALFORMED.
import { err } from '../errors';
import { Reader, Writer, type CodecCodes } from './bytes';

/** A plain transfer bound to its chain (SPEC.md §8.11.1): what every signer makes. */
export const TRANSFER_VERSION = 3;
/** A funding transfer bound to its chain (SPEC.md §8.11.1, §9.20.4): applies only with its escrow's open in the same block. */
export const FUNDING_TRANSFER_VERSION = 4;
/** A plain transfer naming no chain (SPEC.md §8.11.1): verified in blocks, refused by the authorities' pools. */
export const UNBOUND_TRANSFER_VERSION = 1;
/** A funding transfer naming no chain (SPEC.md §8.11.1): verified in blocks, refused by the authorities' pools. */
export const UNBOUND_FUNDING_TRANSFER_VERSION = 2;
export type TransferVersion = typeof UNBOUND_TRANSFER_VERSION | typeof UNBOUND_FUNDING_TRANSFER_VERSION | typeof TRANSFER_VERSION | typeof FUNDING_TRANSFER_VERSION;
export const TRANSFER_BYTES = 1 + 32 + 32 + 8 + 8 + 64;
export const TRANSFER_SIGNED_BYTES = TRANSFER_BYTES - 64;
/** SPEC.md §8.11.1: the chain id, the hash of the chain's block 0 (§8.7.1). */
export const CHAIN_ID_BYTES = 32;
export const TRANSFER_SIG_PREFIX = Buffer.from('bitcloud transfer v2\0', 'ascii');
export const FUNDING_SIG_PREFIX = Buffer.from('bitcloud funding v2\0', 'ascii');
export const UNBOUND_TRANSFER_SIG_PREFIX = Buffer.from('bitcloud transfer v1\0', 'ascii');
export const UNBOUND_FUNDING_SIG_PREFIX = Buffer.from('bitcloud funding v1\0', 'ascii');

const isVersion = (v: number): v is TransferVersion => v >= UNBOUND_TRANSFER_VERSION && v <= FUNDING_TRANSFER_VERSION;
/** A funding transfer (version 2 or 4, SPEC.md §8.11.1, §9.20.4). */
export function isFundingTransfer(t: Pick<Transfer, 'version'>): boolean {
  return t.version === FUNDING_TRANSFER_VERSION || t.version === UNBOUND_FUNDING_TRANSFER_VERSION;
}
/** A transfer signed over its chain's id (version 3 or 4, SPEC.md §8.11.1). */
export function isChainBound(t: Pick<Transfer, 'version'>): boolean {
  return t.version === TRANSFER_VERSION || t.version === FUNDING_TRANSFER_VERSION;
}
const CODES: CodecCodes = { truncated: 'TRANSFER_MALFORMED', malformed: 'TRANSFER_MALFORMED' };

export interface Transfer {
  /** 3: a plain transfer; 4: a funding transfer (`to` is a contract id, SPEC.md §9.20.4); 1 and 2: the same naming no chain. */
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
  if (!isVersion(t.version)) throw err('TRANSFER_MALFORMED', `transfer version ${String(t.version)} is not 1 to 4`);
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

/**
 * The bytes the sender signs (SPEC.md §8.11.1): the version's context, then for versions 3 and 4
 * the chain id `chainId` (the hash of the chain's block 0), then everything but the signature.
 * A version 3 or 4 transfer without a 32-byte chain id is TRANSFER_MALFORMED: it signs and
 * verifies only against one chain.
 */
export function transferSignedBytes(t: Omit<Transfer, 'signature'>, chainId?: Buffer | null): Buffer {
  const body = transferBody(t);
  switch (t.version) {
    case UNBOUND_TRANSFER_VERSION: return Buffer.concat([UNBOUND_TRANSFER_SIG_PREFIX, body]);
    case UNBOUND_FUNDING_TRANSFER_VERSION: return Buffer.concat([UNBOUND_FUNDING_SIG_PREFIX, body]);
    default:
      if (!chainId || chainId.length !== CHAIN_ID_BYTES) throw err('TRANSFER_MALFORMED', `a version ${t.version} transfer is signed over its chain's id (${CHAIN_ID_BYTES} bytes): none given`);
      return Buffer.concat([t.version === FUNDING_TRANSFER_VERSION ? FUNDING_SIG_PREFIX : TRANSFER_SIG_PREFIX, chainId, body]);
  }
}

export function encodeTransfer(t: Transfer): Buffer {
  if (t.signature.length !== 64) throw err('TRANSFER_MALFORMED', 'signature is 64 bytes');
  return Buffer.concat([transferBody(t), t.signature]);
}

export function decodeTransfer(b: Uint8Array): Transfer {
  if (b.length !== TRANSFER_BYTES) throw err('TRANSFER_MALFORMED', `a transfer is ${TRANSFER_BYTES} bytes, not ${b.length}`);
  const r = new Reader(b, 'transfer', CODES);
  const version = r.u8('version');
  if (!isVersion(version)) throw err('TRANSFER_MALFORMED', `transfer version ${version} is not 1 to 4`);
  const t: Transfer = { version, from: r.bytes(32, 'from'), to: r.bytes(32, 'to'), amount: r.u64big('amount'), nonce: r.u64('nonce'), signature: r.bytes(64, 'signature') };
  r.end();
  check(t);
  return t;
}
