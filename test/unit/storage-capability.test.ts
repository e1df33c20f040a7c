import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { base32Decode, base32Encode, formatCapability, parseCapability } from '../../src/storage/capability';
import { isBitcloudError } from '../../src/errors';

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('base32 (RFC 4648, lowercase, no padding)', () => {
  it('RFC 4648 §10 test vectors', () => {
    const v: [string, string][] = [['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi']];
    for (const [plain, enc] of v) {
      expect(base32Encode(Buffer.from(plain))).toBe(enc);
      expect(base32Decode(enc).toString()).toBe(plain);
    }
  });
  it('property: round trip', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => base32Decode(base32Encode(b)).equals(Buffer.from(b))));
  });
  it('one spelling only: uppercase, padding, bad lengths and trailing bits are refused', () => {
    expect(codeOf(() => base32Decode('MY'))).toBe('CAP_MALFORMED');
    expect(codeOf(() => base32Decode('my======'))).toBe('CAP_MALFORMED');
    expect(codeOf(() => base32Decode('m'))).toBe('CAP_MALFORMED');
    expect(codeOf(() => base32Decode('mz'))).toBe('CAP_MALFORMED'); // 'f' is 'my': 'z' sets a trailing bit
    expect(codeOf(() => base32Decode('m1'))).toBe('CAP_MALFORMED');
  });
});

describe('capability (SPEC §9.5)', () => {
  const cap = { manifestId: Buffer.alloc(32, 0xab), fileKey: Buffer.alloc(32, 0x01) };
  it('formats as bitcloud:<52 base32>#<52 base32> and parses back', () => {
    const s = formatCapability(cap);
    expect(s).toMatch(/^bitcloud:[a-z2-7]{52}#[a-z2-7]{52}$/);
    expect(parseCapability(s)).toEqual(cap);
  });
  it('wrong or truncated capabilities → CAP_MALFORMED', () => {
    const s = formatCapability(cap);
    for (const bad of [
      '', 'bitcloud:', s.slice(0, -1), s.slice(0, -2), s.slice(0, 40), s.replace('#', ''), s.replace('bitcloud:', 'bitclod:'),
      s.toUpperCase(), s + 'a', s + '#', s.replace('#', '##'), `bitcloud:${'a'.repeat(52)}#${'a'.repeat(56)}`,
      `bitcloud:#${base32Encode(cap.fileKey)}`, s.replace(/.$/, '9'),
    ]) {
      expect(codeOf(() => parseCapability(bad)), bad).toBe('CAP_MALFORMED');
    }
  });
  it('property: random strings parse or throw CAP_MALFORMED', () => {
    fc.assert(fc.property(fc.string({ maxLength: 130 }), (t) => {
      const c = codeOf(() => parseCapability('bitcloud:' + t));
      return c === undefined || c === 'CAP_MALFORMED';
    }), { numRuns: 2000 });
  });
});
