// SPEC.md §9.20.4: the payer's cancel of a paid storage contract (the file is deleted, or no longer
// wanted). Integers big-endian.
//
//   cancel    = version u8 (= 1) | contract [32] | signature [64]                        97 bytes
//   signature = Ed25519 by the escrow's payer over ESCROW_CANCEL_SIG_PREFIX | the first 33 bytes
//
// Who the payer is comes from the chain (the sender of the funding transfer), so the cancel does
// not name it. Decoding failures are ESCROW_CANCEL_MALFORMED.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import { Reader, Writer, type CodecCodes } from './bytes';

export const ESCROW_CANCEL_VERSION = 1;
export const ESCROW_CANCEL_BYTES = 1 + 32 + 64; // 97
export const ESCROW_CANCEL_SIG_PREFIX = Buffer.from('bitcloud escrow cancel v1\0', 'ascii');
const CODES: CodecCodes = { truncated: 'ESCROW_CANCEL_MALFORMED', malformed: 'ESCROW_CANCEL_MALFORMED' };

export interface EscrowCancel {
  /** The contract id (64 hex). */
  contract: string;
  signature: Buffer;
}

function signedBytes(contract: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(contract)) throw err('ESCROW_CANCEL_MALFORMED', 'a cancel names a contract by its 32-byte id');
  const w = new Writer(33, 'escrow cancel', CODES).u8(ESCROW_CANCEL_VERSION, 'version').hex(contract, 32, 'contract');
  return Buffer.concat([ESCROW_CANCEL_SIG_PREFIX, w.finish()]);
}

/** The payer signs the cancel of `contract` (64 hex) with its wallet key. */
export function signEscrowCancel(payer: Ed25519KeyPair, contract: string): EscrowCancel {
  return { contract, signature: ed25519Sign(signedBytes(contract), payer.secretKey) };
}

/** True when `c` is signed by `payer` (64 hex): what every authority and chain verifier checks. */
export function escrowCancelSignedBy(c: EscrowCancel, payer: string): boolean {
  return c.signature.length === 64 && ed25519Verify(c.signature, signedBytes(c.contract), Buffer.from(payer, 'hex'));
}

export function encodeEscrowCancel(c: EscrowCancel): Buffer {
  if (c.signature.length !== 64) throw err('ESCROW_CANCEL_MALFORMED', 'signature is 64 bytes');
  return Buffer.concat([signedBytes(c.contract).subarray(ESCROW_CANCEL_SIG_PREFIX.length), c.signature]);
}

export function decodeEscrowCancel(b: Uint8Array): EscrowCancel {
  if (b.length !== ESCROW_CANCEL_BYTES) throw err('ESCROW_CANCEL_MALFORMED', `a cancel is ${ESCROW_CANCEL_BYTES} bytes, not ${b.length}`);
  const r = new Reader(b, 'escrow cancel', CODES);
  const version = r.u8('version');
  if (version !== ESCROW_CANCEL_VERSION) throw err('ESCROW_CANCEL_MALFORMED', `cancel version ${version} is not ${ESCROW_CANCEL_VERSION}`);
  const c: EscrowCancel = { contract: r.hex(32, 'contract'), signature: r.bytes(64, 'signature') };
  r.end();
  return c;
}
