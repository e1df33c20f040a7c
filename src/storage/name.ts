// SPEC.md §9.14: updatable names. A name is a BEP 44 mutable item in the private DHT: public key k =
// the publisher's Ed25519 key, salt = "bcname1:" | label, value v = the capability text, seq = a
// counter that only goes up. Pure codecs here; src/storage/dht.ts moves them through the DHT.
import { err } from '../errors';
import { ED25519_PUBLIC_BYTES } from '../crypto/primitives';
import { base32Decode, base32Encode, parseCapability, type Capability, formatCapability } from './capability';

export const NAME_SALT_PREFIX = Buffer.from('bcname1:', 'ascii');
/** BEP 44 caps the salt at 64 bytes; the prefix takes 8. */
export const MAX_LABEL_BYTES = 64 - NAME_SALT_PREFIX.length;
const LABEL = /^[a-z0-9][a-z0-9._-]*$/;
/** BEP 44 sequence numbers are signed 64-bit; ours stay exact in a JS number. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** A name as text: `<publisher key, 52 base32 characters>/<label>`. */
export interface NameRef {
  publisher: Buffer;
  label: string;
}

/** Parse a label (1..56 of a-z 0-9 . _ -, starting with a letter or digit). Throws NAME_MALFORMED. */
export function checkLabel(label: string): string {
  if (typeof label !== 'string' || label.length === 0 || label.length > MAX_LABEL_BYTES || !LABEL.test(label)) {
    throw err('NAME_MALFORMED', `a name label is 1..${MAX_LABEL_BYTES} characters of a-z 0-9 . _ - starting with a letter or digit`, { label });
  }
  return label;
}

export function formatName(n: NameRef): string {
  if (n.publisher.length !== ED25519_PUBLIC_BYTES) throw err('NAME_MALFORMED', 'publisher key must be 32 bytes');
  return `${base32Encode(n.publisher)}/${checkLabel(n.label)}`;
}

/**
 * Parse `<key>/<label>`, or a bare `<label>` meaning `ownKey`'s name (when given). Throws
 * NAME_MALFORMED.
 */
export function parseName(text: string, ownKey?: Buffer): NameRef {
  if (typeof text !== 'string') throw err('NAME_MALFORMED', 'a name is text');
  const slash = text.indexOf('/');
  if (slash < 0) {
    if (!ownKey) throw err('NAME_MALFORMED', 'a name is <publisher key>/<label>');
    return { publisher: ownKey, label: checkLabel(text) };
  }
  const publisher = base32Decode(text.slice(0, slash), 'NAME_MALFORMED');
  if (publisher.length !== ED25519_PUBLIC_BYTES) throw err('NAME_MALFORMED', 'the publisher key of a name is 32 bytes (52 base32 characters)');
  return { publisher, label: checkLabel(text.slice(slash + 1)) };
}

/** The BEP 44 salt of a label. */
export function nameSalt(label: string): Buffer {
  return Buffer.concat([NAME_SALT_PREFIX, Buffer.from(checkLabel(label), 'ascii')]);
}

/** The BEP 44 value a name carries: the capability's text, ASCII. */
export function encodeNameValue(cap: Capability): Buffer {
  return Buffer.from(formatCapability(cap), 'ascii');
}

/** A resolved value back into a capability; anything else is NAME_VALUE_MALFORMED. */
export function decodeNameValue(v: Uint8Array): Capability {
  try {
    return parseCapability(Buffer.from(v).toString('latin1'));
  } catch (e) {
    throw err('NAME_VALUE_MALFORMED', 'the name does not hold a capability', undefined, e);
  }
}

export function checkSeq(seq: unknown): number {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw err('NAME_MALFORMED', `a sequence number is an integer 0..${MAX_SEQ}`, { seq });
  return seq;
}

/**
 * SPEC.md §9.14: the sequence number of the next publication over the published `current` (-1:
 * none): the one asked for, which must be above it (DHT_SEQ_STALE), else the larger of current + 1
 * and the clock in seconds.
 */
export function nextNameSeq(current: number, requested?: number): number {
  let seq: number;
  if (requested !== undefined) {
    seq = checkSeq(requested);
    if (seq <= current) throw err('DHT_SEQ_STALE', `sequence number ${seq} is not above the published ${current}`, { seq, current });
  } else {
    seq = Math.max(current + 1, Math.floor(Date.now() / 1000));
  }
  if (seq > MAX_SEQ) throw err('NAME_MALFORMED', 'sequence number too large');
  return seq;
}
