// SPEC.md §5 (tor-spec 5.2.2, 6.1): tor1 relay crypto reproduces Tor's published vectors
// (test/vectors/tor1-relay-crypto.json, read unchanged) and layers correctly over 3 hops.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import {
  RELAY_CRYPTO_DIGEST_LEN, RELAY_CRYPTO_KEY_LEN, clientOpenInbound, clientOpenInboundMany, clientSealOutbound, createClientHop, createRelayHop, randomHopPairs,
} from '../../src/crypto/relay-crypto';
import { RunningSha1, aes128CtrStream, latin1Word, randomBytes, sha1, shake256 } from '../../src/crypto/primitives';
import { CELL_LEN, CELL_HEADER_LEN, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RELAY_DIGEST_OFFSET, RELAY_RECOGNIZED_OFFSET, RelayCommand, encodeRelayPayloadInto, RELAY_DATA_MAX } from '../../src/wire/relay-msg';

interface Tor1Vectors {
  construction: Record<string, string>;
  hop_key_material_ascii: string[];
  data_seed_ascii: string;
  cells: { cell_index: number; ciphertext_hex: string }[];
}
const V: Tor1Vectors = JSON.parse(readFileSync(new URL('../vectors/tor1-relay-crypto.json', import.meta.url), 'utf8'));

/** 509-byte payload views into 514-byte cells, as the link hands them out. */
function payloadView(): Buffer {
  return Buffer.alloc(CELL_LEN).subarray(CELL_HEADER_LEN);
}

describe('tor1 reproduces the published relay-crypto vectors', () => {
  it('all 51 cells processed in order; the listed ciphertexts are equal', () => {
    // construction.sequence: 51 cells, all for hop index 2; the listed indexes are compared.
    const CELLS = 51;
    const TARGET = 2;
    const lastListed = V.cells[V.cells.length - 1].cell_index;
    expect(lastListed).toBe(CELLS - 1);
    const hops = V.hop_key_material_ascii.map((k) => {
      // construction.per_hop_key_material: Df|Db|Kf|Kb are the first 72 of 92 bytes.
      const material = Buffer.from(k, 'ascii');
      return createClientHop(material.subarray(0, RELAY_CRYPTO_KEY_LEN));
    });
    expect(hops.length).toBe(3);
    // construction.plaintext_body: data bytes come, 498 per cell, from one SHAKE-256 stream.
    const stream = shake256(Buffer.from(V.data_seed_ascii, 'ascii'), CELLS * RELAY_DATA_MAX);
    const expected = new Map(V.cells.map((c) => [c.cell_index, c.ciphertext_hex]));
    let compared = 0;
    for (let i = 0; i < CELLS; i++) {
      const body = payloadView();
      body[0] = RelayCommand.DATA; // 2
      body.writeUInt16BE(1, 3); // stream id 1
      body.writeUInt16BE(RELAY_DATA_MAX, 9); // length 498
      stream.copy(body, 11, i * RELAY_DATA_MAX, (i + 1) * RELAY_DATA_MAX);
      clientSealOutbound(hops, TARGET, body);
      const want = expected.get(i);
      if (want !== undefined) {
        expect(body.toString('hex'), `cell ${i}`).toBe(want);
        compared++;
      }
    }
    expect(compared).toBe(V.cells.length);
    expect(compared).toBe(8);
  });
});


function dataPayload(text: string, streamId = 7): Buffer {
  const p = payloadView();
  encodeRelayPayloadInto(p, RelayCommand.DATA, streamId, Buffer.from(text));
  return p;
}

describe('tor1 layering over a 3-hop circuit', () => {
  it('outbound: each relay peels one layer and only the addressed hop recognizes', () => {
    const { client, relays } = randomHopPairs(3);
    for (let round = 0; round < 20; round++) {
      for (let target = 0; target < 3; target++) {
        const p = dataPayload(`round ${round} to hop ${target}`);
        const plain = Buffer.from(p);
        clientSealOutbound(client, target, p);
        for (let hop = 0; hop < 3; hop++) {
          const recognized = relays[hop].decryptOutbound(p);
          expect(recognized, `round ${round}, target ${target}, hop ${hop}`).toBe(hop === target);
          if (recognized) break;
        }
        // Every byte but the digest field is the client's plaintext; the digest field was set.
        expect(p.subarray(RELAY_DIGEST_OFFSET + 4).equals(plain.subarray(RELAY_DIGEST_OFFSET + 4))).toBe(true);
        expect(p.subarray(0, RELAY_DIGEST_OFFSET).equals(plain.subarray(0, RELAY_DIGEST_OFFSET))).toBe(true);
      }
    }
  });

  it('inbound: each relay adds a layer; the client finds which hop sent the cell', () => {
    const { client, relays } = randomHopPairs(3);
    for (let round = 0; round < 20; round++) {
      for (let origin = 0; origin < 3; origin++) {
        const p = dataPayload(`reply ${round} from hop ${origin}`);
        const plain = Buffer.from(p);
        relays[origin].originate(p);
        for (let hop = origin; hop >= 0; hop--) relays[hop].encryptInbound(p);
        expect(clientOpenInbound(client, p)).toBe(origin);
        expect(p.subarray(RELAY_DIGEST_OFFSET + 4).equals(plain.subarray(RELAY_DIGEST_OFFSET + 4))).toBe(true);
      }
    }
  });

  it('both ends agree on the running digest (SENDME v1) in each direction', () => {
    const { client, relays } = randomHopPairs(3);
    const p = dataPayload('digest me');
    clientSealOutbound(client, 2, p);
    const sent = client[2].lastDigest();
    expect(sent.length).toBe(RELAY_CRYPTO_DIGEST_LEN);
    for (let hop = 0; hop < 3; hop++) if (relays[hop].decryptOutbound(p)) break;
    expect(relays[2].lastDigest().equals(sent)).toBe(true);

    const q = dataPayload('digest me back');
    relays[2].originate(q);
    const relaySent = relays[2].lastDigest();
    for (let hop = 2; hop >= 0; hop--) relays[hop].encryptInbound(q);
    expect(clientOpenInbound(client, q)).toBe(2);
    expect(client[2].lastDigest().equals(relaySent)).toBe(true);
    // lastDigest returns a copy: later cells do not change a digest already handed out.
    const copy = client[2].lastDigest();
    clientSealOutbound(client, 2, dataPayload('more'));
    expect(copy.equals(relaySent)).toBe(true);
  });

  it('a tampered cell is not recognized and leaves the running digest unchanged', () => {
    const { client, relays } = randomHopPairs(1);
    const p = dataPayload('tamper');
    clientSealOutbound(client, 0, p);
    p[100] ^= 0x01; // a tagging attack flips a ciphertext bit
    const before = relays[0].lastDigest();
    expect(relays[0].decryptOutbound(p)).toBe(false);
    expect(relays[0].lastDigest().equals(before)).toBe(true);
  });

  it('recognized == 0 with a wrong digest: not recognized, state and bytes untouched', () => {
    const { client, relays } = randomHopPairs(1);
    // A cell the client did not originate for this hop, whose plaintext happens to have
    // recognized == 0 (as a cell for a later hop does with probability 2^-16).
    const junk = payloadView();
    randomBytes(CELL_PAYLOAD_LEN).copy(junk);
    junk.writeUInt16BE(0, RELAY_RECOGNIZED_OFFSET);
    junk.writeUInt32BE(0xdeadbeef, RELAY_DIGEST_OFFSET);
    const junkPlain = Buffer.from(junk);
    client[0].encryptOutbound(junk);
    const next = dataPayload('next');
    clientSealOutbound(client, 0, next);

    expect(relays[0].decryptOutbound(junk)).toBe(false);
    expect(junk.equals(junkPlain)).toBe(true); // decrypted, digest field restored
    // Had the failed check advanced the running digest, this honest cell would not verify.
    expect(relays[0].decryptOutbound(next)).toBe(true);
  });

  it('key material of the wrong length is refused (CRYPTO_BAD_LENGTH)', () => {
    for (const n of [0, RELAY_CRYPTO_KEY_LEN - 1, RELAY_CRYPTO_KEY_LEN + 1, 92]) {
      for (const make of [createClientHop, createRelayHop]) {
        let thrown: unknown;
        try { make(Buffer.alloc(n)); } catch (e) { thrown = e; }
        expect(isBitcloudError(thrown, 'CRYPTO_BAD_LENGTH')).toBe(true);
      }
    }
  });
});

describe('the running SHA-1 under tor1', () => {
  it('equals SHA-1 of the concatenation for any chunking, and reading it does not end it', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 12 }), (chunks) => {
      const h = new RunningSha1();
      const out = Buffer.alloc(20);
      const seen: Uint8Array[] = [];
      for (const c of chunks) {
        h.update(c);
        seen.push(c);
        h.digestInto(out);
        expect(out.equals(sha1(...seen))).toBe(true);
      }
    }));
  });

  it('restore() returns to the state save() recorded', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
      const h = new RunningSha1().update(a);
      const before = Buffer.alloc(20);
      const after = Buffer.alloc(20);
      h.digestInto(before);
      h.save();
      h.update(b);
      h.restore();
      h.digestInto(after);
      expect(after.equals(before)).toBe(true);
    }));
  });
  it('tryUpdate returns the digest with the data hashed in, and undo() takes exactly that update back', () => {
    // Ops: [kind, bytes]: 0 = tryUpdate kept, 1 = tryUpdate then undo, 2 = plain update. Long
    // enough runs to cross several checkpoints (RunningSha1.UNDO_SPAN).
    const op = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.uint8Array({ maxLength: 600 }));
    fc.assert(fc.property(fc.array(op, { maxLength: 3 * RunningSha1.UNDO_SPAN + 5 }), (ops) => {
      const h = new RunningSha1();
      const kept: Uint8Array[] = [];
      for (const [kind, data] of ops) {
        if (kind === 2) { h.update(data); kept.push(data); continue; }
        const d = h.tryUpdate(data);
        expect(Buffer.from(d, 'latin1').equals(sha1(...kept, data))).toBe(true);
        expect(latin1Word(d)).toBe(sha1(...kept, data).readUInt32BE(0));
        if (kind === 1) h.undo();
        else kept.push(data);
        expect(Buffer.from(h.digestString(), 'latin1').equals(sha1(...kept))).toBe(true);
      }
    }), { numRuns: 60 });
  });

  it('undo() without a tryUpdate to take back is CRYPTO_INTERNAL', () => {
    const h = new RunningSha1();
    let thrown: unknown;
    try { h.undo(); } catch (e) { thrown = e; }
    expect(isBitcloudError(thrown, 'CRYPTO_INTERNAL')).toBe(true);
    h.tryUpdate(Buffer.alloc(3));
    h.update(Buffer.alloc(1));
    thrown = undefined;
    try { h.undo(); } catch (e) { thrown = e; }
    expect(isBitcloudError(thrown, 'CRYPTO_INTERNAL')).toBe(true);
  });
});

describe('tor1 over runs of cells (one cipher call per hop and run)', () => {
  it('xorManyInPlace gives the bytes of xorInPlace for any mix of sizes', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40_000 })), { minLength: 1, maxLength: 12 }), (ops) => {
      const key = randomBytes(16);
      const a = aes128CtrStream(key);
      const b = aes128CtrStream(key);
      for (const [many, len] of ops) {
        const data = randomBytes(len);
        const x = Buffer.from(data);
        const y = Buffer.from(data);
        a.xorInPlace(x);
        if (many) b.xorManyInPlace(y); else b.xorInPlace(y);
        expect(y.equals(x)).toBe(true);
      }
    }), { numRuns: 40 });
  });

  it('client inbound: runs give the same hops, bytes and digests as cell by cell, whichever hop sent each cell', () => {
    // origins: which hop sent each cell (mostly the last); cuts: where the runs end.
    fc.assert(fc.property(
      fc.array(fc.oneof(fc.constant(2), fc.constant(2), fc.constant(2), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 300 }),
      fc.array(fc.integer({ min: 1, max: 128 }), { minLength: 1, maxLength: 10 }),
      (origins, runLens) => {
        const keys = [0, 1, 2].map(() => randomBytes(RELAY_CRYPTO_KEY_LEN));
        const relays = keys.map((k) => createRelayHop(k));
        const one = keys.map((k) => createClientHop(k));
        const many = keys.map((k) => createClientHop(k));
        const cells = origins.map((origin, i) => {
          const p = dataPayload(`cell ${i} from hop ${origin}`);
          relays[origin].originate(p);
          for (let hop = origin; hop >= 0; hop--) relays[hop].encryptInbound(p);
          return p;
        });
        const expected = cells.map((c) => {
          const p = Buffer.from(c);
          const hop = clientOpenInbound(one, p);
          return { hop, p, digest: hop >= 0 ? one[hop].lastDigest() : null };
        });
        let at = 0;
        for (let r = 0; at < cells.length; r++) {
          const n = Math.min(runLens[r % runLens.length], cells.length - at);
          const payloads = Buffer.concat(cells.slice(at, at + n));
          const views = Array.from({ length: n }, (_, k) => payloads.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN));
          let next = 0;
          clientOpenInboundMany(many, payloads, views, n, (k, hop) => {
            expect(k).toBe(next++);
            const e = expected[at + k];
            expect(hop).toBe(e.hop);
            expect(views[k].equals(e.p)).toBe(true);
            if (hop >= 0) expect(many[hop].lastDigest().equals(e.digest!)).toBe(true);
            return true;
          });
          expect(next).toBe(n);
          at += n;
        }
      },
    ), { numRuns: 60 });
  });

  it('relay: a run peeled or wrapped at once equals decryptOutbound / encryptInbound on each cell', () => {
    const keys = randomBytes(RELAY_CRYPTO_KEY_LEN);
    const client = createClientHop(keys);
    const a = createRelayHop(keys);
    const b = createRelayHop(keys);
    const outbound = Array.from({ length: 200 }, (_, i) => {
      const p = dataPayload(`out ${i}`);
      clientSealOutbound([client], 0, p);
      if (i % 7 === 3) p[0] ^= 1; // not recognized here (it would be forwarded)
      return p;
    });
    const seen = outbound.map((c) => { const p = Buffer.from(c); return { ok: a.decryptOutbound(p), p }; });
    const run = Buffer.concat(outbound);
    b.cryptOutboundMany!(run);
    outbound.forEach((_, k) => {
      const v = run.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN);
      expect(b.recognizeOutbound!(v)).toBe(seen[k].ok);
      expect(v.equals(seen[k].p)).toBe(true);
    });
    expect(b.lastDigest().equals(a.lastDigest())).toBe(true);
    const inbound = Array.from({ length: 130 }, (_, i) => dataPayload(`in ${i}`));
    const each = inbound.map((c) => { const p = Buffer.from(c); a.encryptInbound(p); return p; });
    const run2 = Buffer.concat(inbound);
    b.encryptInboundMany!(run2);
    expect(run2.equals(Buffer.concat(each))).toBe(true);
  });
});
