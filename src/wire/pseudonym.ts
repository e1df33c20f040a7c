// SPEC.md §9.21.7: a hidden storage node's pseudonym registration and the upload that carries it,
// sealed once per authority. Integers big-endian. Signing, sealing and checking are
// src/hidden/pseudonym.ts's; this file holds the layouts only.
//
//   body          = period u64 | identity [32] | pseudonym [32]                                72 bytes
//   registration  = body | identity_sig [64] | pseudonym_sig [64]                             200 bytes
//   identity_sig  = Ed25519 by `identity`  over PSEUDONYM_SIG_IDENTITY  | body
//   pseudonym_sig = Ed25519 by `pseudonym` over PSEUDONYM_SIG_PSEUDONYM | body
//   entry         = recipient [32] | sealed [200 + 48]                                          280 bytes
//                   recipient = the authority's certified signing key (§6.3), sealed = crypto_box_seal
//                   of the registration to that key's X25519 form
//   upload        = count u8 (1..16) | count × entry                                  1 + 280·count bytes
//
// Decoding failures are HIDDEN_PSEUDONYM_MALFORMED.
import { err } from '../errors';
import { Reader, Writer, type CodecCodes } from './bytes';

export const PSEUDONYM_BODY_LEN = 8 + 32 + 32; // 72
export const PSEUDONYM_SIG_LEN = 64;
export const PSEUDONYM_REGISTRATION_LEN = PSEUDONYM_BODY_LEN + 2 * PSEUDONYM_SIG_LEN; // 200
/** libsodium's crypto_box_SEALBYTES: ephemeral X25519 key [32] | Poly1305 tag [16]. */
export const PSEUDONYM_SEAL_OVERHEAD = 48;
export const PSEUDONYM_SEALED_LEN = PSEUDONYM_REGISTRATION_LEN + PSEUDONYM_SEAL_OVERHEAD; // 248
export const PSEUDONYM_ENTRY_LEN = 32 + PSEUDONYM_SEALED_LEN; // 280
/** At most this many authorities' entries in one upload (SPEC.md §9.21.7). */
export const PSEUDONYM_MAX_ENTRIES = 16;
export const PSEUDONYM_UPLOAD_MAX = 1 + PSEUDONYM_MAX_ENTRIES * PSEUDONYM_ENTRY_LEN; // 4 481
export const PSEUDONYM_SIG_IDENTITY = Buffer.from('bitcloud-hs-pseudonym-v1\0identity', 'ascii');
export const PSEUDONYM_SIG_PSEUDONYM = Buffer.from('bitcloud-hs-pseudonym-v1\0pseudonym', 'ascii');

const CODES: CodecCodes = { truncated: 'HIDDEN_PSEUDONYM_MALFORMED', malformed: 'HIDDEN_PSEUDONYM_MALFORMED' };

export interface PseudonymBody {
  /** The hidden-node period N of SPEC.md §9.21.2 (86 400 s). */
  period: number;
  identity: Buffer;
  pseudonym: Buffer;
}

export interface PseudonymRegistration extends PseudonymBody {
  /** The 72 body bytes as encoded or received (signatures are checked over these). */
  bodyBytes: Buffer;
  identitySignature: Buffer;
  pseudonymSignature: Buffer;
}

export interface PseudonymEntry { recipient: Buffer; sealed: Buffer }

export function encodePseudonymBody(b: PseudonymBody): Buffer {
  if (b.identity.length !== 32 || b.pseudonym.length !== 32) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'identity and pseudonym are 32 bytes each');
  if (b.identity.equals(b.pseudonym)) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'the pseudonym must not be the identity');
  return new Writer(PSEUDONYM_BODY_LEN, 'pseudonym registration', CODES)
    .u64(b.period, 'period').bytes(b.identity).bytes(b.pseudonym).finish();
}

export function encodePseudonymRegistration(r: PseudonymRegistration): Buffer {
  if (r.identitySignature.length !== PSEUDONYM_SIG_LEN || r.pseudonymSignature.length !== PSEUDONYM_SIG_LEN) {
    throw err('HIDDEN_PSEUDONYM_MALFORMED', 'signatures are 64 bytes each');
  }
  return Buffer.concat([r.bodyBytes, r.identitySignature, r.pseudonymSignature]);
}

export function decodePseudonymRegistration(b: Uint8Array): PseudonymRegistration {
  if (b.length !== PSEUDONYM_REGISTRATION_LEN) throw err('HIDDEN_PSEUDONYM_MALFORMED', `a registration is ${PSEUDONYM_REGISTRATION_LEN} bytes, not ${b.length}`);
  const r = new Reader(b, 'pseudonym registration', CODES);
  const bodyBytes = Buffer.from(r.view(PSEUDONYM_BODY_LEN, 'body'));
  const body = new Reader(bodyBytes, 'pseudonym registration', CODES);
  const period = body.u64('period');
  const identity = body.bytes(32, 'identity');
  const pseudonym = body.bytes(32, 'pseudonym');
  body.end();
  if (identity.equals(pseudonym)) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'the pseudonym must not be the identity');
  const out = { period, identity, pseudonym, bodyBytes, identitySignature: r.bytes(PSEUDONYM_SIG_LEN, 'identity_sig'), pseudonymSignature: r.bytes(PSEUDONYM_SIG_LEN, 'pseudonym_sig') };
  r.end();
  return out;
}

export function encodePseudonymUpload(entries: readonly PseudonymEntry[]): Buffer {
  if (entries.length < 1 || entries.length > PSEUDONYM_MAX_ENTRIES) throw err('HIDDEN_PSEUDONYM_MALFORMED', `an upload holds 1 to ${PSEUDONYM_MAX_ENTRIES} entries`);
  const w = new Writer(1 + entries.length * PSEUDONYM_ENTRY_LEN, 'pseudonym upload', CODES).u8(entries.length, 'count');
  for (const e of entries) {
    if (e.recipient.length !== 32 || e.sealed.length !== PSEUDONYM_SEALED_LEN) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'an entry is a 32-byte recipient and a 248-byte sealed registration');
    w.bytes(e.recipient).bytes(e.sealed);
  }
  return w.finish();
}

/** The entries of an upload; checks the count and the exact length (what a relay mirror checks before passing it on). */
export function decodePseudonymUpload(b: Uint8Array): PseudonymEntry[] {
  const r = new Reader(b, 'pseudonym upload', CODES);
  const n = r.u8('count');
  if (n < 1 || n > PSEUDONYM_MAX_ENTRIES) throw err('HIDDEN_PSEUDONYM_MALFORMED', `an upload holds 1 to ${PSEUDONYM_MAX_ENTRIES} entries, not ${n}`);
  const out: PseudonymEntry[] = [];
  for (let i = 0; i < n; i++) out.push({ recipient: r.bytes(32, 'recipient'), sealed: r.bytes(PSEUDONYM_SEALED_LEN, 'sealed') });
  r.end();
  return out;
}
