// SPEC.md §9.14.2: a name record as it travels to and from a relay's name mirror: the BEP 44
// signed mutable item (ed25519 public key, seq, salt, value, signature over the BEP 44 signed
// bytes, §9.14.1) in a fixed byte layout. Integers big-endian.
//
//   record = version u8 (= 1) | public_key [32] | seq u64 (≤ 2^53 − 1) | salt_len u8 (0..64) | salt
//          | value_len u16 (1..1000) | value | signature [64]
//
// Largest record: 1 + 32 + 8 + 1 + 64 + 2 + 1000 + 64 = 1172 bytes. The decoder checks the
// signature: a record that decodes is one its key signed. Errors: NAME_RECORD_MALFORMED (layout),
// NAME_RECORD_TOO_LARGE (value above 1000 bytes, or more bytes than the largest record),
// NAME_BAD_SIGNATURE (the signature does not verify under the record's key).
import { err } from '../errors';
import { dhtItemSignatureValid } from '../storage/name-record';
import type { DhtItem } from '../storage/protocol';
import { Reader, Writer, type CodecCodes } from './bytes';

export const NAME_RECORD_VERSION = 1;
export const NAME_RECORD_KEY_BYTES = 32;
export const NAME_RECORD_SIG_BYTES = 64;
/** BEP 44 caps the salt at 64 bytes. */
export const NAME_RECORD_MAX_SALT = 64;
/** SPEC.md §9.14.2: the value is at most 1000 bytes. */
export const NAME_RECORD_MAX_VALUE = 1000;
/** version 1 + key 32 + seq 8 + salt_len 1 + salt 64 + value_len 2 + value 1000 + signature 64. */
export const NAME_RECORD_MAX_BYTES = 1 + NAME_RECORD_KEY_BYTES + 8 + 1 + NAME_RECORD_MAX_SALT + 2 + NAME_RECORD_MAX_VALUE + NAME_RECORD_SIG_BYTES;
/** The smallest record: no salt, a one-byte value. */
const MIN_BYTES = 1 + NAME_RECORD_KEY_BYTES + 8 + 1 + 2 + 1 + NAME_RECORD_SIG_BYTES;

const CODES: CodecCodes = { truncated: 'NAME_RECORD_MALFORMED', malformed: 'NAME_RECORD_MALFORMED' };

/** A name record is the BEP 44 item itself (publisher = the ed25519 key). */
export type NameRecord = DhtItem;

/** SPEC.md §9.14.2: a record is stored under its BEP 44 target (one definition, beside the signature check). */
export { nameTarget } from '../storage/name-record';

function checkShape(rec: NameRecord): void {
  if (rec.value.length > NAME_RECORD_MAX_VALUE) {
    throw err('NAME_RECORD_TOO_LARGE', `a name record's value is at most ${NAME_RECORD_MAX_VALUE} bytes`, { bytes: rec.value.length });
  }
  if (rec.value.length < 1) throw err('NAME_RECORD_MALFORMED', 'a name record\'s value is at least 1 byte');
  if (rec.publisher.length !== NAME_RECORD_KEY_BYTES) throw err('NAME_RECORD_MALFORMED', `the key is ${NAME_RECORD_KEY_BYTES} bytes`);
  if (rec.salt.length > NAME_RECORD_MAX_SALT) throw err('NAME_RECORD_MALFORMED', `the salt is at most ${NAME_RECORD_MAX_SALT} bytes`);
  if (rec.sig.length !== NAME_RECORD_SIG_BYTES) throw err('NAME_RECORD_MALFORMED', `the signature is ${NAME_RECORD_SIG_BYTES} bytes`);
  if (!Number.isSafeInteger(rec.seq) || rec.seq < 0) throw err('NAME_RECORD_MALFORMED', 'seq is an integer 0..2^53-1', { seq: rec.seq });
}

/** The record's bytes. Does not sign: `rec.sig` is the BEP 44 signature made by signDhtItem. */
export function encodeNameRecord(rec: NameRecord): Buffer {
  checkShape(rec);
  const len = MIN_BYTES - 1 + rec.salt.length + rec.value.length;
  return new Writer(len, 'name record', CODES)
    .u8(NAME_RECORD_VERSION, 'version').bytes(rec.publisher).u64(rec.seq, 'seq')
    .u8(rec.salt.length, 'salt_len').bytes(rec.salt)
    .u16(rec.value.length, 'value_len').bytes(rec.value)
    .bytes(rec.sig)
    .finish();
}

/** A checked record whose signature verifies, or a typed error (see the file header). */
export function decodeNameRecord(b: Uint8Array): NameRecord {
  if (b.length > NAME_RECORD_MAX_BYTES) throw err('NAME_RECORD_TOO_LARGE', `a name record is at most ${NAME_RECORD_MAX_BYTES} bytes`, { bytes: b.length });
  const r = new Reader(b, 'name record', CODES);
  const version = r.u8('version');
  if (version !== NAME_RECORD_VERSION) throw err('NAME_RECORD_MALFORMED', `name record version ${version} is not ${NAME_RECORD_VERSION}`);
  const publisher = r.bytes(NAME_RECORD_KEY_BYTES, 'public_key');
  const seq = r.u64('seq');
  const saltLen = r.u8('salt_len');
  if (saltLen > NAME_RECORD_MAX_SALT) throw err('NAME_RECORD_MALFORMED', `the salt is at most ${NAME_RECORD_MAX_SALT} bytes`, { saltLen });
  const salt = r.bytes(saltLen, 'salt');
  const valueLen = r.u16('value_len');
  if (valueLen > NAME_RECORD_MAX_VALUE) throw err('NAME_RECORD_TOO_LARGE', `a name record's value is at most ${NAME_RECORD_MAX_VALUE} bytes`, { bytes: valueLen });
  if (valueLen < 1) throw err('NAME_RECORD_MALFORMED', 'a name record\'s value is at least 1 byte');
  const value = r.bytes(valueLen, 'value');
  const sig = r.bytes(NAME_RECORD_SIG_BYTES, 'signature');
  r.end();
  const rec = { publisher, seq, salt, value, sig };
  if (!dhtItemSignatureValid(rec)) throw err('NAME_BAD_SIGNATURE', 'the name record\'s signature does not verify under its key');
  return rec;
}
