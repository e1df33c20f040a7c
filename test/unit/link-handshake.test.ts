// SPEC.md §1.3 (AUTHENTICATE, signed bytes) and §1.4 (VERSIONS): the pure handshake rules.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { isBitcloudError } from '../../src/errors';
import { CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { ed25519Generate, ed25519Verify, randomBytes } from '../../src/crypto/primitives';
import { LINK_AUTH_DOMAIN, LINK_AUTH_EXPORTER_LABEL, NO_CERT_HASH } from '../../src/crypto/tls';
import {
  AUTH_SIGNED_LEN, AUTH_TYPE_ED25519_EXPORTER, AUTHENTICATE_BODY_LEN, AuthRole, authSignedBytes,
  decodeAuthenticate, encodeAuthenticate, makeAuthenticate, negotiateVersion, verifyAuthenticate,
  type TlsBinding,
} from '../../src/link/handshake';
import { decodeVersions, encodeVersions } from '../../src/wire/messages';

const binding = (): TlsBinding => ({ exporterValue: randomBytes(32), responderCertHash: randomBytes(32), initiatorCertHash: randomBytes(32) });

function codeOf(f: () => unknown): string {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'OK';
}

describe('link handshake: the strings of SPEC.md §1.3', () => {
  it('uses the exporter label and the domain string the spec names', () => {
    expect(LINK_AUTH_EXPORTER_LABEL).toBe('EXPORTER-bitcloud-link-auth-v1');
    expect(LINK_AUTH_DOMAIN).toBe('bitcloud-link-auth-v1');
  });
});

describe('link handshake: signed bytes (SPEC.md §1.3)', () => {
  it('are domain | 0x00 | AUTH_TYPE | ROLE | IDENTITY | EKM | H_RESP | H_INIT, 153 bytes', () => {
    const id = ed25519Generate();
    const b = binding();
    const s = authSignedBytes(AuthRole.INITIATOR, id.publicKey, b);
    expect(s.length).toBe(153);
    expect(AUTH_SIGNED_LEN).toBe(153);
    expect(s.subarray(0, 22).toString('latin1')).toBe('bitcloud-link-auth-v1\0');
    expect(s.readUInt16BE(22)).toBe(1);
    expect(s[24]).toBe(0x02);
    expect(s.subarray(25, 57).equals(id.publicKey)).toBe(true);
    expect(s.subarray(57, 89).equals(b.exporterValue)).toBe(true);
    expect(s.subarray(89, 121).equals(b.responderCertHash)).toBe(true);
    expect(s.subarray(121, 153).equals(b.initiatorCertHash)).toBe(true);
  });

  it('an anonymous initiator stands as 32 zero bytes', () => {
    expect(NO_CERT_HASH.equals(Buffer.alloc(32))).toBe(true);
  });
});

describe('link handshake: AUTHENTICATE (SPEC.md §1.3)', () => {
  it('has the layout of the spec and a signature over the signed bytes', () => {
    const id = ed25519Generate();
    const b = binding();
    const p = makeAuthenticate(AuthRole.RESPONDER, id, b);
    expect(p.length).toBe(CELL_PAYLOAD_LEN);
    expect(p.readUInt16BE(0)).toBe(AUTH_TYPE_ED25519_EXPORTER);
    expect(p[2]).toBe(AuthRole.RESPONDER);
    expect(p.readUInt16BE(3)).toBe(32);
    expect(p.subarray(5, 37).equals(id.publicKey)).toBe(true);
    expect(p.readUInt16BE(37)).toBe(64);
    expect(ed25519Verify(p.subarray(39, 103), authSignedBytes(AuthRole.RESPONDER, id.publicKey, b), id.publicKey)).toBe(true);
    expect(AUTHENTICATE_BODY_LEN).toBe(103);
    expect(p.subarray(103).every((x) => x === 0)).toBe(true);
  });

  it('verifies on the same binding and returns the proven key', () => {
    const id = ed25519Generate();
    const b = binding();
    const a = decodeAuthenticate(makeAuthenticate(AuthRole.RESPONDER, id, b));
    expect(verifyAuthenticate(a, AuthRole.RESPONDER, b, id.publicKey).equals(id.publicKey)).toBe(true);
    expect(verifyAuthenticate(a, AuthRole.RESPONDER, b).equals(id.publicKey)).toBe(true);
  });

  it('fails with LINK_AUTH_FAILED on another TLS session or other certificates', () => {
    const id = ed25519Generate();
    const b = binding();
    const a = decodeAuthenticate(makeAuthenticate(AuthRole.RESPONDER, id, b));
    for (const k of ['exporterValue', 'responderCertHash', 'initiatorCertHash'] as const) {
      const other = { ...b, [k]: randomBytes(32) };
      expect(codeOf(() => verifyAuthenticate(a, AuthRole.RESPONDER, other))).toBe('LINK_AUTH_FAILED');
    }
  });

  it('fails with LINK_AUTH_FAILED on a claimed key that did not sign', () => {
    const id = ed25519Generate();
    const b = binding();
    const a = decodeAuthenticate(makeAuthenticate(AuthRole.RESPONDER, id, b));
    const forged = { ...a, identity: ed25519Generate().publicKey };
    expect(codeOf(() => verifyAuthenticate(forged, AuthRole.RESPONDER, b))).toBe('LINK_AUTH_FAILED');
    const flipped = { ...a, signature: Buffer.from(a.signature) };
    flipped.signature[5] ^= 1;
    expect(codeOf(() => verifyAuthenticate(flipped, AuthRole.RESPONDER, b))).toBe('LINK_AUTH_FAILED');
  });

  it('refuses a reflected AUTHENTICATE (wrong role) with LINK_PROTOCOL_VIOLATION', () => {
    const id = ed25519Generate();
    const b = binding();
    const a = decodeAuthenticate(makeAuthenticate(AuthRole.INITIATOR, id, b));
    expect(codeOf(() => verifyAuthenticate(a, AuthRole.RESPONDER, b))).toBe('LINK_PROTOCOL_VIOLATION');
  });

  it('closes on a good signature by an unexpected key with LINK_IDENTITY_MISMATCH', () => {
    const id = ed25519Generate();
    const b = binding();
    const a = decodeAuthenticate(makeAuthenticate(AuthRole.RESPONDER, id, b));
    expect(codeOf(() => verifyAuthenticate(a, AuthRole.RESPONDER, b, ed25519Generate().publicKey))).toBe('LINK_IDENTITY_MISMATCH');
  });

  it('refuses layout errors with MSG_MALFORMED / MSG_TRUNCATED and an unknown AUTH_TYPE with LINK_AUTH_FAILED', () => {
    const good = makeAuthenticate(AuthRole.RESPONDER, ed25519Generate(), binding());
    const bad = (f: (p: Buffer) => void) => { const p = Buffer.from(good); f(p); return codeOf(() => decodeAuthenticate(p)); };
    expect(bad(() => {})).toBe('OK');
    expect(bad((p) => p.writeUInt16BE(31, 3))).toBe('MSG_MALFORMED');
    expect(bad((p) => p.writeUInt16BE(0xffff, 3))).toBe('MSG_MALFORMED');
    expect(bad((p) => p.writeUInt16BE(63, 37))).toBe('MSG_MALFORMED');
    expect(bad((p) => { p[2] = 3; })).toBe('MSG_MALFORMED');
    expect(bad((p) => { p[300] = 1; })).toBe('MSG_MALFORMED');
    expect(bad((p) => p.writeUInt16BE(2, 0))).toBe('LINK_AUTH_FAILED');
    expect(codeOf(() => decodeAuthenticate(good.subarray(0, 50)))).toBe('MSG_TRUNCATED');
  });

  it('round-trips through encode/decode', () => {
    const a = { authType: 1, role: AuthRole.INITIATOR, identity: randomBytes(32), signature: randomBytes(64) } as const;
    const d = decodeAuthenticate(encodeAuthenticate(a));
    expect(d.role).toBe(a.role);
    expect(d.identity.equals(a.identity)).toBe(true);
    expect(d.signature.equals(a.signature)).toBe(true);
  });

  it('decoding random payloads raises only typed errors (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: CELL_PAYLOAD_LEN }), (bytes) => {
      const code = codeOf(() => decodeAuthenticate(bytes));
      expect(['OK', 'MSG_MALFORMED', 'MSG_TRUNCATED', 'LINK_AUTH_FAILED']).toContain(code);
    }), { numRuns: 2000 });
  });
});

describe('link handshake: VERSIONS (SPEC.md §1.4, body codec in src/wire/messages.ts)', () => {
  it('is u16 N, N u16 versions, zero padding', () => {
    const body = encodeVersions([1, 3]);
    expect([...body]).toEqual([0, 2, 0, 1, 0, 3]);
    const p = Buffer.alloc(CELL_PAYLOAD_LEN); // as it stands in a cell: the rest is zero
    body.copy(p);
    expect(decodeVersions(p)).toEqual([1, 3]);
  });

  it('refuses a count that exceeds the payload, a zero count, and non-zero padding', () => {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN);
    encodeVersions([1]).copy(p);
    const bad = (f: (q: Buffer) => void) => { const q = Buffer.from(p); f(q); return codeOf(() => decodeVersions(q)); };
    expect(bad((q) => q.writeUInt16BE(0xffff, 0))).toBe('MSG_MALFORMED');
    expect(bad((q) => q.writeUInt16BE(254, 0))).toBe('MSG_MALFORMED');
    expect(bad((q) => { q.writeUInt16BE(253, 0); q.fill(1, 2, 508); })).toBe('OK');
    expect(bad((q) => q.writeUInt16BE(0, 0))).toBe('MSG_MALFORMED');
    expect(bad((q) => { q[400] = 9; })).toBe('MSG_MALFORMED');
  });

  it('negotiates the highest common version, or LINK_NO_COMMON_VERSION', () => {
    expect(negotiateVersion([1, 2, 3], [2, 3, 9])).toBe(3);
    expect(negotiateVersion([1], [1])).toBe(1);
    expect(negotiateVersion([1, 2], [2, 1])).toBe(2);
    expect(codeOf(() => negotiateVersion([1], [2, 3]))).toBe('LINK_NO_COMMON_VERSION');
  });

  it('negotiation is symmetric (property)', () => {
    const list = fc.uniqueArray(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 6 });
    fc.assert(fc.property(list, list, (a, b) => {
      expect(codeOf(() => negotiateVersion(a, b))).toBe(codeOf(() => negotiateVersion(b, a)));
      if (a.some((v) => b.includes(v))) expect(negotiateVersion(a, b)).toBe(negotiateVersion(b, a));
    }));
  });
});
