// SPEC.md §5.6: CGO layered over a 3-hop circuit (both directions, SENDME tags, the relay message
// layout inside a CGO cell) and the tagging test: a cell with one bit flipped anywhere in its
// 509-byte payload is never delivered (no hop recognizes it), altered or not.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { randomBytes } from '../../src/crypto/primitives';
import {
  clientOpenInbound, clientSealOutbound, createClientHop, createRelayHop, randomHopPairs, relayCryptoKeyLen,
} from '../../src/crypto/relay-crypto';
import type { ClientHopCrypto, RelayHopCrypto } from '../../src/crypto/hop-crypto';
import { CGO_KEY_LEN, CGO_BLOCK_LEN, CGO_UIV_KEY_LEN, Uiv } from '../../src/crypto/cgo';
import { CELL_LEN, CELL_HEADER_LEN, CellCommand } from '../../src/wire/cell';
import { CGO_RELAY_DATA_MAX, RelayCommand, decodeRelayPayload, encodeRelayPayloadInto, relayPayloadFromCgo, relayPayloadToCgo } from '../../src/wire/relay-msg';

function payloadView(): Buffer {
  return Buffer.alloc(CELL_LEN).subarray(CELL_HEADER_LEN);
}

function dataPayload(data: Buffer | string, streamId = 7): Buffer {
  const p = payloadView();
  encodeRelayPayloadInto(p, RelayCommand.DATA, streamId, typeof data === 'string' ? Buffer.from(data) : data);
  return p;
}

/** Outbound through relays 0..n-1: the index of the hop that recognized the cell, or -1. */
function forward(relays: RelayHopCrypto[], p: Buffer, cmd: number = CellCommand.RELAY): number {
  for (let hop = 0; hop < relays.length; hop++) if (relays[hop].decryptOutbound(p, cmd)) return hop;
  return -1;
}

/** Inbound: hop `origin` originates, every hop back to 0 adds its layer. */
function backward(relays: RelayHopCrypto[], origin: number, p: Buffer): void {
  relays[origin].originate(p);
  for (let hop = origin; hop >= 0; hop--) relays[hop].encryptInbound(p, CellCommand.RELAY);
}

describe('CGO layering over a 3-hop circuit', () => {
  it('outbound and inbound, interleaved, to and from every hop: the message arrives intact at the right hop', () => {
    const { client, relays } = randomHopPairs(3, 'cgo');
    for (let round = 0; round < 30; round++) {
      for (let target = 0; target < 3; target++) {
        const cmd = round % 5 === 0 ? CellCommand.RELAY_EARLY : CellCommand.RELAY;
        const data = Buffer.from(`round ${round} to hop ${target}`);
        const p = dataPayload(data);
        clientSealOutbound(client, target, p, cmd);
        expect(forward(relays, p, cmd), `round ${round} target ${target}`).toBe(target);
        const m = decodeRelayPayload(p);
        expect(m.command).toBe(RelayCommand.DATA);
        expect(m.streamId).toBe(7);
        expect(m.data.equals(data)).toBe(true);

        const back = Buffer.from(`reply ${round} from hop ${target}`);
        const q = dataPayload(back, 9);
        backward(relays, target, q);
        expect(clientOpenInbound(client, q)).toBe(target);
        const r = decodeRelayPayload(q);
        expect(r.streamId).toBe(9);
        expect(r.data.equals(back)).toBe(true);
      }
    }
  });

  it('a full CGO cell (488 data bytes) round-trips; 489 is refused (RELAY_MALFORMED)', () => {
    const { client, relays } = randomHopPairs(2, 'cgo');
    const data = Buffer.alloc(CGO_RELAY_DATA_MAX, 0xab);
    const p = dataPayload(data);
    clientSealOutbound(client, 1, p);
    expect(forward(relays, p)).toBe(1);
    expect(decodeRelayPayload(p).data.equals(data)).toBe(true);
    const big = dataPayload(Buffer.alloc(CGO_RELAY_DATA_MAX + 1));
    let thrown: unknown;
    try { clientSealOutbound(client, 1, big); } catch (e) { thrown = e; }
    expect(isBitcloudError(thrown, 'RELAY_MALFORMED')).toBe(true);
  });

  it('both ends agree on the SENDME tag in each direction', () => {
    const { client, relays } = randomHopPairs(3, 'cgo');
    const p = dataPayload('tag me');
    clientSealOutbound(client, 2, p);
    const sent = client[2].lastDigest();
    expect(sent.length).toBe(20);
    expect(forward(relays, p)).toBe(2);
    expect(relays[2].lastDigest().equals(sent)).toBe(true);

    const q = dataPayload('tag me back');
    backward(relays, 2, q);
    const relaySent = relays[2].lastDigest();
    expect(clientOpenInbound(client, q)).toBe(2);
    expect(client[2].lastDigest().equals(relaySent)).toBe(true);
    expect(relaySent.equals(sent)).toBe(false);
  });

  it('the cell command is authenticated: RELAY sealed, RELAY_EARLY presented, is not recognized', () => {
    const { client, relays } = randomHopPairs(1, 'cgo');
    const p = dataPayload('early?');
    clientSealOutbound(client, 0, p, CellCommand.RELAY);
    expect(relays[0].decryptOutbound(p, CellCommand.RELAY_EARLY)).toBe(false);
  });

  it('a recognized CGO cell whose length field is over 488 is refused by the decoder (RELAY_MALFORMED), not read past', () => {
    const { client, relays } = randomHopPairs(1, 'cgo');
    // A peer that speaks CGO badly: it seals a payload whose CGO length field says 489.
    const p = dataPayload('x');
    client[0].originate(p);
    p.writeUInt16BE(CGO_RELAY_DATA_MAX + 1, 19); // SPEC.md §5.6.3: length at offset 19
    client[0].encryptOutbound(p);
    expect(relays[0].decryptOutbound(p)).toBe(true);
    let thrown: unknown;
    try { decodeRelayPayload(p); } catch (e) { thrown = e; }
    expect(isBitcloudError(thrown, 'RELAY_MALFORMED')).toBe(true);
  });

  it('the CGO layout round-trips every data length 0..488 with the padding rule of SPEC.md §2.5', () => {
    for (let len = 0; len <= CGO_RELAY_DATA_MAX; len++) {
      const data = randomBytes(len);
      const p = dataPayload(data, 3);
      relayPayloadToCgo(p);
      expect(p.readUInt16BE(19)).toBe(len);
      expect(p.subarray(21, 21 + len).equals(data)).toBe(true);
      const zeros = Math.min(4, 509 - 21 - len);
      expect(p.subarray(21 + len, 21 + len + zeros).every((b) => b === 0)).toBe(true);
      relayPayloadFromCgo(p);
      const m = decodeRelayPayload(p);
      expect(m.streamId).toBe(3);
      expect(m.data.equals(data)).toBe(true);
    }
  });

  it('key material of the wrong length is refused (CRYPTO_BAD_LENGTH)', () => {
    expect(relayCryptoKeyLen('cgo')).toBe(CGO_KEY_LEN);
    for (const n of [0, CGO_KEY_LEN - 1, CGO_KEY_LEN + 1, relayCryptoKeyLen('tor1')]) {
      for (const make of [createClientHop, createRelayHop]) {
        let thrown: unknown;
        try { make(Buffer.alloc(n), 'cgo'); } catch (e) { thrown = e; }
        expect(isBitcloudError(thrown, 'CRYPTO_BAD_LENGTH')).toBe(true);
      }
    }
  });
});

describe('tagging: one flipped bit anywhere in a CGO cell', () => {
  /** A fresh 3-hop circuit with `warm` cells already exchanged both ways (state past its start). */
  function circuit(warm: number): { client: ClientHopCrypto[]; relays: RelayHopCrypto[] } {
    const c = randomHopPairs(3, 'cgo');
    for (let i = 0; i < warm; i++) {
      const p = dataPayload(`warm ${i}`);
      clientSealOutbound(c.client, 2, p);
      expect(forward(c.relays, p)).toBe(2);
      const q = dataPayload(`warm back ${i}`);
      backward(c.relays, 2, q);
      expect(clientOpenInbound(c.client, q)).toBe(2);
    }
    return c;
  }

  it('outbound, every one of the 4072 bit positions, flipped on the link before any hop: no hop recognizes it', () => {
    const keys = [0, 1, 2].map(() => randomBytes(CGO_KEY_LEN));
    const client = keys.map((k) => createClientHop(k, 'cgo'));
    // One cell before the one attacked, so the attacked cell meets states past their start.
    const warm = dataPayload('warm');
    clientSealOutbound(client, 2, warm);
    const p = dataPayload('the exit must never see this altered');
    clientSealOutbound(client, 2, p);
    for (let bit = 0; bit < 509 * 8; bit++) {
      // The same circuit again for every position (same keys, same cells before).
      const relays = keys.map((k) => createRelayHop(k, 'cgo'));
      expect(forward(relays, Buffer.from(warm))).toBe(2);
      const t = Buffer.from(p);
      t[bit >> 3] ^= 1 << (bit & 7);
      expect(forward(relays, t), `bit ${bit}`).toBe(-1);
    }
    // And unflipped, the same cell is recognized by hop 2 (the test would see a false negative).
    const relays = keys.map((k) => createRelayHop(k, 'cgo'));
    expect(forward(relays, Buffer.from(warm))).toBe(2);
    expect(forward(relays, Buffer.from(p))).toBe(2);
  });

  it('outbound and inbound, random bit, random link, random target: never delivered; every later cell fails too', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 509 * 8 - 1 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.boolean(), fc.integer({ min: 0, max: 3 }),
      (bit, target, link, outbound, warm) => {
        const { client, relays } = circuit(warm);
        const data = Buffer.from(`payload for ${target}`);
        if (outbound) {
          const p = dataPayload(data);
          clientSealOutbound(client, target, p);
          // The flip happens on the link into hop `link` (an adversary at hop link-1, or on the wire).
          const at = Math.min(link, target);
          for (let hop = 0; hop < at; hop++) expect(relays[hop].decryptOutbound(p)).toBe(false);
          p[bit >> 3] ^= 1 << (bit & 7);
          for (let hop = at; hop < 3; hop++) expect(relays[hop].decryptOutbound(p)).toBe(false);
          // The circuit's state is now out of step: an honest next cell is not recognized either.
          const next = dataPayload('next');
          clientSealOutbound(client, target, next);
          expect(forward(relays, next)).toBe(-1);
        } else {
          const q = dataPayload(data);
          relays[target].originate(q);
          // The flip happens on the link out of hop `at` toward the client, after its layer.
          const at = Math.min(link, target);
          for (let hop = target; hop >= at; hop--) relays[hop].encryptInbound(q);
          q[bit >> 3] ^= 1 << (bit & 7);
          for (let hop = at - 1; hop >= 0; hop--) relays[hop].encryptInbound(q);
          expect(clientOpenInbound(client, q)).toBe(-1);
          // And the next honest cell from that hop is not recognized either.
          const next = dataPayload('next back');
          backward(relays, target, next);
          expect(clientOpenInbound(client, next)).toBe(-1);
        }
      },
    ), { numRuns: 150 });
  });

  it('a hop past the flip sees a pseudorandom cell, not the original with one bit changed (tor1 shows the bit)', () => {
    for (const alg of ['cgo', 'tor1'] as const) {
      const { client, relays } = randomHopPairs(3, alg);
      const p = dataPayload(Buffer.alloc(400, 0x41));
      clientSealOutbound(client, 2, p);
      p[300] ^= 0x01; // hop 0's adversary tags a data byte
      relays[0].decryptOutbound(p);
      relays[1].decryptOutbound(p);
      relays[2].decryptOutbound(p);
      // Count bytes that differ from the honest plaintext (0x41 data at CGO offset 21.., tor1 offset 11..).
      const off = alg === 'cgo' ? 21 : 11;
      let differ = 0;
      for (let i = off; i < off + 400; i++) if (p[i] !== 0x41) differ++;
      if (alg === 'cgo') expect(differ).toBeGreaterThan(350);
      else expect(differ).toBe(1);
    }
  });
});

describe('UPDATE erases the keys it replaces (SPEC.md §5.6.2)', () => {
  it('after an update the old KB, KU, KS and the POLYVAL tables of KU and KP are zero; the new keys work', () => {
    type Aes = { k: Buffer };
    type Poly = { p: { destroyed?: boolean; t: Array<{ s0: number; s1: number; s2: number; s3: number }> } };
    type Internals = { j: { kb: Aes; ku: Poly; kuKey: Buffer | null }; s: { k: Aes; b: Poly } };
    const keys = randomBytes(CGO_UIV_KEY_LEN);
    const uiv = new Uiv(keys);
    const cell = randomBytes(509);
    uiv.encrypt(Buffer.alloc(16), CellCommand.RELAY, cell); // the ciphers are in use before the update
    const { j, s } = uiv as unknown as Internals;
    const secrets = [j.kb.k, j.kuKey!, s.k.k];
    expect(secrets.map((b) => b.equals(Buffer.alloc(b.length)))).toEqual([false, false, false]);
    const tableZero = (q: Poly) => q.p.t.every((e) => e.s0 === 0 && e.s1 === 0 && e.s2 === 0 && e.s3 === 0);
    expect([tableZero(j.ku), tableZero(s.b)]).toEqual([false, false]);

    const nonce = randomBytes(CGO_BLOCK_LEN);
    uiv.update(nonce);
    expect(secrets.map((b) => b.equals(Buffer.alloc(b.length)))).toEqual([true, true, true]);
    expect([tableZero(j.ku), tableZero(s.b)]).toEqual([true, true]);
    // The state that replaced them is whole: what one side encrypts the other decrypts.
    const peer = new Uiv(uiv.keys());
    const x = randomBytes(509);
    const y = Buffer.from(x);
    uiv.encrypt(Buffer.alloc(16), CellCommand.RELAY, y);
    expect(y.equals(x)).toBe(false);
    peer.decrypt(Buffer.alloc(16), CellCommand.RELAY, y);
    expect(y.equals(x)).toBe(true);
  });
});

describe('UPDATE frees the AES contexts of the replaced keys at once (SPEC.md §5.6.2)', () => {
  it('the old KB and KS contexts (holding their key schedules) are finished by the update, not left for the garbage collector', () => {
    type Ctx = { update(b: Buffer): Buffer };
    type Aes = { enc: Ctx | null; dec: Ctx | null };
    type Internals = { j: { kb: Aes }; s: { k: Aes } };
    const uiv = new Uiv(randomBytes(CGO_UIV_KEY_LEN));
    const cell = randomBytes(509);
    uiv.encrypt(Buffer.alloc(16), CellCommand.RELAY, cell);
    uiv.decrypt(Buffer.alloc(16), CellCommand.RELAY, cell); // both directions of KB in use
    const { j, s } = uiv as unknown as Internals;
    const contexts = [j.kb.enc!, j.kb.dec!, s.k.enc!];
    for (const c of contexts) expect(() => c.update(Buffer.alloc(16))).not.toThrow();
    uiv.update(randomBytes(CGO_BLOCK_LEN));
    // A finished context has been freed by OpenSSL (which cleanses it) and takes no more input.
    for (const c of contexts) expect(() => c.update(Buffer.alloc(16))).toThrow();
  });
});
