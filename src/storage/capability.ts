// SPEC.md §9.5: the read capability `bitcloud:<manifest id>#<file key>`, both parts 32 bytes in
// RFC 4648 base32, lowercase, without padding (52 characters each). Parsing is strict and canonical:
// one spelling per capability, anything else → CAP_MALFORMED.
import { err, type ErrorCode } from '../errors';
import { FILE_KEY_BYTES } from './encode';
import { SHARE_ID_BYTES } from './share';

export const CAP_SCHEME = 'bitcloud:';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

export interface Capability {
  manifestId: Buffer;
  fileKey: Buffer;
}

/** RFC 4648 §6 base32, lowercase, no padding. */
export function base32Encode(data: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of data) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Strict decoding: lowercase alphabet only, a length that some byte string encodes to, and zero
 * trailing bits (so every byte string has exactly one spelling). Violations throw `code`.
 */
export function base32Decode(text: string, code: ErrorCode = 'CAP_MALFORMED'): Buffer {
  const rem = text.length % 8;
  if (rem === 1 || rem === 3 || rem === 6) throw err(code, 'base32 text has an impossible length');
  const out = Buffer.allocUnsafe(Math.floor((text.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? VALUE[c] : -1;
    if (v < 0) throw err(code, 'not lowercase base32', { at: i });
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      out[o++] = (acc >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw err(code, 'base32 text has non-zero trailing bits');
  return out;
}

export function formatCapability(cap: Capability): string {
  if (cap.manifestId.length !== SHARE_ID_BYTES || cap.fileKey.length !== FILE_KEY_BYTES) {
    throw err('CAP_MALFORMED', 'manifest id and file key must be 32 bytes each');
  }
  return `${CAP_SCHEME}${base32Encode(cap.manifestId)}#${base32Encode(cap.fileKey)}`;
}

export function parseCapability(text: string): Capability {
  if (typeof text !== 'string' || !text.startsWith(CAP_SCHEME)) throw err('CAP_MALFORMED', `a capability starts with "${CAP_SCHEME}"`);
  const body = text.slice(CAP_SCHEME.length);
  const hash = body.indexOf('#');
  if (hash < 0) throw err('CAP_MALFORMED', 'a capability has "#" between the manifest id and the key');
  const manifestId = base32Decode(body.slice(0, hash));
  const fileKey = base32Decode(body.slice(hash + 1));
  if (manifestId.length !== SHARE_ID_BYTES) throw err('CAP_MALFORMED', 'manifest id must be 32 bytes (52 base32 characters)', { got: manifestId.length });
  if (fileKey.length !== FILE_KEY_BYTES) throw err('CAP_MALFORMED', 'file key must be 32 bytes (52 base32 characters)', { got: fileKey.length });
  return { manifestId, fileKey };
}
