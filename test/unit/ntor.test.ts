// SPEC.md §4 / tor-spec 5.1.4: the ntor handshake reproduces Tor's published vectors
// (test/vectors/ntor.json, read unchanged) and runs Bitcloud's PROTOID end to end.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isBitcloudError, type ErrorCode } from '../../src/errors';
import {
  NTOR_BITCLOUD_ONIONSKIN_LEN, NTOR_PROTOID_BITCLOUD, NTOR_PROTOID_TOR, NTOR_REPLY_LEN,
  ntorClientCreate, ntorClientFinish, ntorKdf, ntorServerRespond,
} from '../../src/crypto/ntor';
import { ed25519Generate, x25519Generate, x25519Public } from '../../src/crypto/primitives';

interface NtorVectors {
  notes: string[];
  ntor_v1: Record<'protoid' | 'b' | 'B' | 'x' | 'X' | 'y' | 'Y' | 'ID' | 'client_handshake' | 'server_handshake' | 'keys_72', string>;
  hkdf_sha256_ntor: { ikm_ascii: string; out_len: number; out: string }[];
  ntor_v3: Record<string, string>;
}
const V: NtorVectors = JSON.parse(readFileSync(new URL('../vectors/ntor.json', import.meta.url), 'utf8'));
const hex = (s: string) => Buffer.from(s, 'hex');

function expectCode(fn: () => unknown, code: ErrorCode): void {
  let thrown: unknown;
  try { fn(); } catch (e) { thrown = e; }
  expect(isBitcloudError(thrown), `expected ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
}

const KEY_LEN = 72; // tor1: Df | Db | Kf | Kb

describe('ntor v1 with Tor PROTOID reproduces the published vectors', () => {
  const v = V.ntor_v1;
  it('uses the Tor PROTOID named by the vector file', () => {
    expect(v.protoid).toBe(NTOR_PROTOID_TOR);
  });

  it('public keys follow from the (unclamped) secret keys', () => {
    expect(x25519Public(hex(v.b)).toString('hex')).toBe(v.B);
    expect(x25519Public(hex(v.x)).toString('hex')).toBe(v.X);
    expect(x25519Public(hex(v.y)).toString('hex')).toBe(v.Y);
  });

  it('client onionskin, server reply and both sides\' keys', () => {
    const { state, onionskin } = ntorClientCreate({
      id: hex(v.ID), onionKey: hex(v.B), protoid: v.protoid, ephemeral: { secretKey: hex(v.x), publicKey: hex(v.X) },
    });
    expect(onionskin.toString('hex')).toBe(v.client_handshake);

    const keyLen = hex(v.keys_72).length;
    const server = ntorServerRespond({
      onionskin, id: hex(v.ID), protoid: v.protoid, keyLength: keyLen,
      onionKeys: [{ secretKey: hex(v.b), publicKey: hex(v.B) }],
      ephemeral: { secretKey: hex(v.y), publicKey: hex(v.Y) },
    });
    expect(server.reply.toString('hex')).toBe(v.server_handshake);
    expect(server.keys.toString('hex')).toBe(v.keys_72);

    const clientKeys = ntorClientFinish(state, hex(v.server_handshake), keyLen);
    expect(clientKeys.toString('hex')).toBe(v.keys_72);
  });

  it('the server finds the key named by B among current and previous onion keys', () => {
    const { onionskin } = ntorClientCreate({ id: hex(v.ID), onionKey: hex(v.B), protoid: v.protoid, ephemeral: { secretKey: hex(v.x), publicKey: hex(v.X) } });
    const server = ntorServerRespond({
      onionskin, id: hex(v.ID), protoid: v.protoid, keyLength: KEY_LEN,
      onionKeys: [x25519Generate(), { secretKey: hex(v.b), publicKey: hex(v.B) }],
      ephemeral: { secretKey: hex(v.y), publicKey: hex(v.Y) },
    });
    expect(server.reply.toString('hex')).toBe(v.server_handshake);
  });

  // test_crypto_hkdf_sha256 uses the ntor v1 salt and info (see the file's notes).
  for (const [i, h] of V.hkdf_sha256_ntor.entries()) {
    it(`HKDF-SHA256 vector ${i} (salt t_key, info m_expand)`, () => {
      expect(ntorKdf(Buffer.from(h.ikm_ascii, 'ascii'), NTOR_PROTOID_TOR, h.out_len).toString('hex')).toBe(h.out);
    });
  }

  // ntor v3 (proposal 332) is not implemented yet; its vectors wait in the same file.
  it.todo(`ntor v3 (${V.ntor_v3.protoid}) handshake vectors`);
});

describe('ntor with the Bitcloud PROTOID and 32-byte identity IDs', () => {
  function relay() {
    return { identity: ed25519Generate(), onion: x25519Generate() };
  }

  it('a full handshake gives both sides the same 72 bytes', () => {
    const r = relay();
    const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey, protoid: NTOR_PROTOID_BITCLOUD });
    expect(onionskin.length).toBe(NTOR_BITCLOUD_ONIONSKIN_LEN);
    expect(onionskin.length).toBe(96);
    const server = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], protoid: NTOR_PROTOID_BITCLOUD, keyLength: KEY_LEN });
    expect(server.reply.length).toBe(NTOR_REPLY_LEN);
    expect(server.reply.length).toBe(64);
    const keys = ntorClientFinish(state, server.reply, KEY_LEN);
    expect(keys.length).toBe(KEY_LEN);
    expect(keys.equals(server.keys)).toBe(true);
  });

  it('the default PROTOID is Bitcloud\'s, and it gives different keys than Tor\'s', () => {
    const r = relay();
    const eph = x25519Generate();
    const y = x25519Generate();
    const run = (protoid?: string) => {
      const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey, protoid, ephemeral: eph });
      const s = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], protoid, keyLength: KEY_LEN, ephemeral: y });
      return { keys: ntorClientFinish(state, s.reply, KEY_LEN), reply: s.reply };
    };
    expect(run().keys.equals(run(NTOR_PROTOID_BITCLOUD).keys)).toBe(true);
    expect(run(NTOR_PROTOID_TOR).keys.equals(run(NTOR_PROTOID_BITCLOUD).keys)).toBe(false);
  });

  it('a previous onion key is still accepted; an unknown one is refused (NTOR_UNKNOWN_KEY)', () => {
    const r = relay();
    const previous = x25519Generate();
    const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: previous.publicKey });
    const s = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion, previous], keyLength: KEY_LEN });
    expect(ntorClientFinish(state, s.reply, KEY_LEN).equals(s.keys)).toBe(true);
    expectCode(() => ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN }), 'NTOR_UNKNOWN_KEY');
  });

  it('an onionskin for another node ID is refused (NTOR_WRONG_ID)', () => {
    const r = relay();
    const other = ed25519Generate();
    const { onionskin } = ntorClientCreate({ id: other.publicKey, onionKey: r.onion.publicKey });
    expectCode(() => ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN }), 'NTOR_WRONG_ID');
  });

  it('wrong lengths are refused (NTOR_MALFORMED)', () => {
    const r = relay();
    const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey });
    for (const bad of [onionskin.subarray(0, 95), Buffer.concat([onionskin, Buffer.alloc(1)]), Buffer.alloc(0)]) {
      expectCode(() => ntorServerRespond({ onionskin: bad, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN }), 'NTOR_MALFORMED');
    }
    const s = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN });
    expectCode(() => ntorClientFinish(state, s.reply.subarray(0, 63), KEY_LEN), 'NTOR_MALFORMED');
    expectCode(() => ntorClientFinish(state, Buffer.concat([s.reply, Buffer.alloc(1)]), KEY_LEN), 'NTOR_MALFORMED');
    expectCode(() => ntorClientCreate({ id: r.identity.publicKey, onionKey: Buffer.alloc(31) }), 'NTOR_MALFORMED');
  });

  it('a bad AUTH is refused (NTOR_BAD_AUTH), whichever bit is flipped', () => {
    const r = relay();
    for (const bit of [0, 7, 100, 255]) {
      const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey });
      const s = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN });
      const reply = Buffer.from(s.reply);
      reply[32 + (bit >> 3)] ^= 1 << (bit & 7);
      expectCode(() => ntorClientFinish(state, reply, KEY_LEN), 'NTOR_BAD_AUTH');
    }
  });

  it('a reply from a server without the onion key secret fails AUTH', () => {
    const r = relay();
    const { state, onionskin } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey });
    // An impostor answers with its own key pair under the advertised B.
    const impostor = { secretKey: x25519Generate().secretKey, publicKey: r.onion.publicKey };
    const s = ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [impostor], keyLength: KEY_LEN });
    expectCode(() => ntorClientFinish(state, s.reply, KEY_LEN), 'NTOR_BAD_AUTH');
  });

  // Points of small order on Curve25519 (and non-canonical encodings of them): X25519 with any
  // scalar gives the all-zero output, which both sides must refuse (tor-spec 5.1.4, "check").
  const LOW_ORDER = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ];

  it('the server refuses a low-order X (CRYPTO_ZERO_SHARED_SECRET)', () => {
    const r = relay();
    for (const p of LOW_ORDER) {
      const onionskin = Buffer.concat([r.identity.publicKey, r.onion.publicKey, hex(p)]);
      expectCode(() => ntorServerRespond({ onionskin, id: r.identity.publicKey, onionKeys: [r.onion], keyLength: KEY_LEN }), 'CRYPTO_ZERO_SHARED_SECRET');
    }
  });

  it('the client refuses a low-order Y or B (CRYPTO_ZERO_SHARED_SECRET)', () => {
    const r = relay();
    for (const p of LOW_ORDER) {
      const { state } = ntorClientCreate({ id: r.identity.publicKey, onionKey: r.onion.publicKey });
      expectCode(() => ntorClientFinish(state, Buffer.concat([hex(p), Buffer.alloc(32)]), KEY_LEN), 'CRYPTO_ZERO_SHARED_SECRET');
      const bad = ntorClientCreate({ id: r.identity.publicKey, onionKey: hex(p) });
      expectCode(() => ntorClientFinish(bad.state, Buffer.concat([x25519Generate().publicKey, Buffer.alloc(32)]), KEY_LEN), 'CRYPTO_ZERO_SHARED_SECRET');
    }
  });
});
