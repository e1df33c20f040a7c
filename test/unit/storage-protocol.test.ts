import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { MAX_SMALL_REQUEST_BYTES, decodeRequest, decodeResponse, encodeRequest, encodeRequestFrame, encodeResponse, encodeResponseFrame, errorResponse, responseError, type StorageRequest, type StorageResponse } from '../../src/storage/protocol';
import { encodeFrame, FrameDecoder, frameHeader, MAX_FRAME_BYTES } from '../../src/storage/framing';
import { encodeProto, pb, varint } from '../../src/storage/proto';
import { err, isBitcloudError } from '../../src/errors';
import { encodeChunk } from '../../src/storage/encode';
import { MAX_CHUNK_SIZE, MAX_SHARE_BYTES } from '../../src/storage/share';

const id = Buffer.alloc(32, 7);

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('whole frames built with one copy of the data (SPEC §9.6.1)', () => {
  it('a put frame is exactly the header and encodeRequest\'s bytes, whatever the sizes and ids', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 300_000 }), fc.integer({ min: 0, max: 0xffff_ffff }),
      fc.constantFrom(undefined, 'public-video', 'x'),
      (reqId, len, leaseSeconds, contentClass) => {
        const req: StorageRequest = { type: 'put', id, data: Buffer.alloc(len, len & 0xff), leaseSeconds, ...(contentClass ? { contentClass } : {}) };
        expect(encodeRequestFrame(reqId, req).equals(encodeFrame(encodeRequest(reqId, req)))).toBe(true);
      }), { numRuns: 60 });
  });
  it('a get answer frame is exactly the header and encodeResponse\'s bytes', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 300_000 }), fc.integer({ min: 0, max: 2 ** 40 }),
      (reqId, len, offset) => {
        const res: StorageResponse = { type: 'get', offset, data: Buffer.alloc(len, 5), totalSize: offset + len };
        expect(encodeResponseFrame(reqId, res).equals(encodeFrame(encodeResponse(reqId, res)))).toBe(true);
      }), { numRuns: 60 });
  });
  it('other messages are framed as they were', () => {
    expect(encodeRequestFrame(9, { type: 'stat' }).equals(encodeFrame(encodeRequest(9, { type: 'stat' })))).toBe(true);
    const e = { type: 'error', code: 'STORAGE_FULL', message: 'full' } as const;
    expect(encodeResponseFrame(0, e).equals(encodeFrame(encodeResponse(0, e)))).toBe(true);
  });
});

describe('storage protocol messages (SPEC §9.6)', () => {
  it('a 1-of-n share of a maximal chunk is a valid put (SPEC §9.1, §9.2, §9.3)', () => {
    const { shares } = encodeChunk(Buffer.alloc(32, 1), 0, Buffer.alloc(MAX_CHUNK_SIZE, 3), { k: 1, n: 2 });
    expect(shares[0].bytes.length).toBe(MAX_CHUNK_SIZE + 40);
    const req: StorageRequest = { type: 'put', id: shares[0].id, data: shares[0].bytes, leaseSeconds: 60 };
    const frame = encodeRequestFrame(1, req);
    expect(frame.length - 4).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const got = decodeRequest(frame.subarray(4));
    expect(got.req.type).toBe('put');
    expect(got.req.type === 'put' && got.req.data.length).toBe(MAX_CHUNK_SIZE + 40);
    expect(codeOf(() => decodeRequest(encodeRequest(1, { ...req, data: Buffer.alloc(MAX_SHARE_BYTES + 1) })))).toBe('STORAGE_BAD_REQUEST');
  });
  const requests: StorageRequest[] = [
    { type: 'put', id, data: Buffer.from('share bytes'), leaseSeconds: 3600 },
    { type: 'get', id, offset: 10, length: 0 },
    { type: 'has', ids: [id, Buffer.alloc(32, 1)] },
    { type: 'audit', id, nonce: Buffer.alloc(16, 3) },
    { type: 'stat' },
    { type: 'renew', ids: [id], leaseSeconds: 0 },
  ];
  for (const r of requests) {
    it(`request ${r.type} round-trips`, () => {
      expect(decodeRequest(encodeRequest(42, r))).toEqual({ reqId: 42, req: r });
    });
  }

  const responses: StorageResponse[] = [
    { type: 'put', expiresAt: 1_900_000_000 },
    { type: 'get', offset: 3, data: Buffer.from('xy'), totalSize: 5 },
    { type: 'has', present: [true, false] },
    { type: 'audit', proof: Buffer.alloc(32, 9) },
    { type: 'stat', capacity: 2 ** 40, used: 12, shares: 1, maxLeaseSeconds: 86400, maxShareBytes: 1 << 24 },
    { type: 'renew', expiresAt: [0, 1_900_000_000] },
    { type: 'error', code: 'STORAGE_FULL', message: 'full' },
  ];
  for (const r of responses) {
    it(`response ${r.type} round-trips`, () => {
      expect(decodeResponse(encodeResponse(7, r))).toEqual({ reqId: 7, res: r });
    });
  }

  it('bad requests → STORAGE_BAD_REQUEST carrying the request id when readable', () => {
    const bad = (body: Record<string, unknown>) => codeOf(() => decodeRequest(encodeProto(pb.Request, { id: 9, ...body })));
    expect(bad({})).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ put: { id: Buffer.alloc(31), data: Buffer.alloc(1) } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ put: { id, data: Buffer.alloc(0) } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ get: { id, offset: 2 ** 40 } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ has: { ids: [] } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ has: { ids: Array(1025).fill(id) } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ audit: { id, nonce: Buffer.alloc(15) } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ audit: { id, nonce: Buffer.alloc(65) } })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ renew: { ids: [Buffer.alloc(3)] } })).toBe('STORAGE_BAD_REQUEST');
    try {
      decodeRequest(encodeProto(pb.Request, { id: 9, has: { ids: [] } }));
    } catch (e) {
      expect((e as { detail: { reqId: number } }).detail.reqId).toBe(9);
    }
  });

  it('a large request other than a put is refused before it is decoded; a challenge\'s blocks are counted before they are read (SPEC.md §9.6.2, §9.17.2)', () => {
    // A challenge naming 4 000 000 blocks (one byte each, packed): about 4 MB in one frame.
    const blocks = Buffer.alloc(4_000_000, 1);
    const inner = Buffer.concat([Buffer.from([0x0a, 32]), id, Buffer.from([0x12, 16]), Buffer.alloc(16, 3), Buffer.from([0x1a]), varint(blocks.length), blocks]);
    const big = Buffer.concat([Buffer.from([0x08, 9, (12 << 3) | 2]), varint(inner.length), inner]);
    const decode = vi.spyOn(pb.Request, 'decode');
    try {
      let caught: unknown;
      try { decodeRequest(big); } catch (e) { caught = e; }
      expect(isBitcloudError(caught, 'STORAGE_BAD_REQUEST')).toBe(true);
      expect((caught as { detail: { reqId: number } }).detail.reqId).toBe(9);
      expect(decode).not.toHaveBeenCalled();
      // The largest legitimate requests other than a put fit the bound with room to spare.
      const ids = Array.from({ length: 1024 }, (_, i) => Buffer.alloc(32, i));
      for (const r of [{ type: 'has', ids }, { type: 'renew', ids, leaseSeconds: 2 ** 32 - 1 }] as StorageRequest[]) {
        expect(encodeRequest(0xffff_ffff, r).length).toBeLessThan(MAX_SMALL_REQUEST_BYTES / 1.5);
        expect(decodeRequest(encodeRequest(0xffff_ffff, r)).req).toEqual(r);
      }
      // A small challenge with 17 blocks: refused once counted (before its entries are read).
      expect(codeOf(() => decodeRequest(encodeRequest(3, { type: 'challenge', id, nonce: Buffer.alloc(16), blocks: Array.from({ length: 17 }, (_, i) => i) })))).toBe('STORAGE_BAD_REQUEST');
    } finally {
      decode.mockRestore();
    }
  });

  it('a large frame naming `put` or `id` more than once is refused before it is decoded (SPEC.md §9.6.2)', () => {
    // 40 000 empty put bodies (2 bytes each) after a valid id: each would be decoded into an object
    // of its own, the last one winning; a requester writes each field once.
    const puts = Buffer.concat([Buffer.from([0x08, 5]), Buffer.from(Array.from({ length: 80_000 }, (_, i) => (i % 2 === 0 ? 0x12 : 0)))]);
    const ids = Buffer.concat([Buffer.from(Array.from({ length: 80_000 }, (_, i) => (i % 2 === 0 ? 0x08 : 7)))]);
    expect(puts.length).toBeGreaterThan(MAX_SMALL_REQUEST_BYTES);
    const decode = vi.spyOn(pb.Request, 'decode');
    try {
      for (const big of [puts, ids]) {
        let caught: unknown;
        try { decodeRequest(big); } catch (e) { caught = e; }
        expect(isBitcloudError(caught, 'STORAGE_BAD_REQUEST')).toBe(true);
      }
      expect(decode).not.toHaveBeenCalled();
      // One id and one put, above the bound: decoded.
      const req: StorageRequest = { type: 'put', id, data: Buffer.alloc(100_000, 2), leaseSeconds: 60 };
      expect(decodeRequest(encodeRequest(11, req)).reqId).toBe(11);
      expect(decode).toHaveBeenCalledTimes(1);
    } finally {
      decode.mockRestore();
    }
  });

  it('a frame above 64 KiB is walked once before it is decoded: the put-only rule and the field bounds in one scan, each refusal as before (SPEC.md §9.6.2)', () => {
    const field = (n: number, wire: number) => (n << 3) | wire;
    const put = encodeRequest(12, { type: 'put', id, data: Buffer.alloc(100_000, 2), leaseSeconds: 60 });
    expect(put.length).toBeGreaterThan(MAX_SMALL_REQUEST_BYTES);
    // Readers made over the whole frame: one for the scan, one for the decode.
    const create = vi.spyOn(protobuf.Reader, 'create');
    const walks = (b: Uint8Array) => create.mock.calls.filter(([x]) => x === b).length;
    try {
      expect(decodeRequest(put).reqId).toBe(12);
      expect(walks(put)).toBe(2);
    } finally {
      create.mockRestore();
    }
    const refusal = (b: Uint8Array) => { try { decodeRequest(b); } catch (e) { return e as { code: string; message: string; detail: Record<string, unknown> }; } throw new Error('decoded'); };
    // The large-frame rule: a stat body after a put, above 64 KiB.
    const other = refusal(Buffer.concat([put, Buffer.from([field(6, 2), 0])]));
    expect(other.code).toBe('STORAGE_BAD_REQUEST');
    expect(other.message).toMatch(/a request other than a put is at most 65536 bytes, and a put names id and put once/);
    expect(other.detail).toMatchObject({ field: 6, reqId: 12 });
    // The field bounds, in the same walk: a put body naming its data twice.
    const inner = Buffer.concat([Buffer.from([field(1, 2), 32]), id, Buffer.from([field(2, 2)]), varint(40_000), Buffer.alloc(40_000), Buffer.from([field(2, 2)]), varint(40_000), Buffer.alloc(40_000)]);
    const twice = refusal(Buffer.concat([Buffer.from([0x08, 13, field(2, 2)]), varint(inner.length), inner]));
    expect(twice.code).toBe('STORAGE_BAD_REQUEST');
    expect(twice.message).toMatch(/Request: put: data appears too often/);
    expect(twice.detail.reqId).toBe(13);
  });

  it('a frame above 64 KiB naming a field other than id and put is refused before that field\'s body is read, a group\'s too (SPEC.md §9.6.2)', () => {
    const field = (n: number, wire: number) => (n << 3) | wire;
    // An id, then a stat body sent as a group of 50 000 small fields: the walk of the group would
    // read every one of them before the field was checked.
    const group = Buffer.concat([Buffer.from([0x08, 21, field(6, 3)]), Buffer.alloc(100_000, 0).fill(Buffer.from([field(1, 0), 1])), Buffer.from([field(6, 4)])]);
    expect(group.length).toBeGreaterThan(MAX_SMALL_REQUEST_BYTES);
    const skip = vi.spyOn(protobuf.Reader.prototype, 'skipType');
    let refused: { code: string; message: string; detail: Record<string, unknown> } | undefined;
    let skips = -1;
    try {
      decodeRequest(group);
    } catch (e) {
      refused = e as typeof refused;
    } finally {
      skips = skip.mock.calls.length;
      skip.mockRestore();
    }
    expect(refused?.code).toBe('STORAGE_BAD_REQUEST');
    expect(refused?.message).toMatch(/a request other than a put is at most 65536 bytes/);
    expect(refused?.detail).toMatchObject({ field: 6, reqId: 21 });
    expect(skips).toBe(0);
  });

  it('every frame is scanned before it is decoded: a repeated top-level field, or a body field past its bound, is refused undecoded (SPEC.md §9.6.2)', () => {
    const field = (n: number, wire: number) => (n << 3) | wire;
    // 64 KiB of empty stat bodies after an id: each would be decoded into an object of its own.
    const stats = Buffer.concat([Buffer.from([0x08, 5]), Buffer.from(Array.from({ length: 32_000 }, () => [field(6, 2), 0]).flat())]);
    // One has body of 32 000 empty ids (2 bytes each): decoded into 32 000 buffers before being counted.
    const hasInner = Buffer.from(Array.from({ length: 32_000 }, () => [field(1, 2), 0]).flat());
    const has = Buffer.concat([Buffer.from([0x08, 6, field(4, 2)]), varint(hasInner.length), hasInner]);
    // A get naming its id 20 000 times, and a renew of 1 025 ids.
    const getInner = Buffer.concat(Array.from({ length: 20_000 }, () => Buffer.from([field(1, 2), 0])));
    const gets = Buffer.concat([Buffer.from([0x08, 7, field(3, 2)]), varint(getInner.length), getInner]);
    const renewInner = Buffer.concat(Array.from({ length: 1025 }, () => Buffer.concat([Buffer.from([field(1, 2), 32]), id])));
    const renew = Buffer.concat([Buffer.from([0x08, 8, field(7, 2)]), varint(renewInner.length), renewInner]);
    // Two bodies in one request, and the id twice.
    const two = Buffer.from([0x08, 9, field(6, 2), 0, field(4, 2), 0]);
    const twoIds = Buffer.from([0x08, 9, 0x08, 9, field(6, 2), 0]);
    for (const b of [stats, has, gets, renew, two, twoIds]) expect(b.length).toBeLessThanOrEqual(MAX_SMALL_REQUEST_BYTES);
    const decode = vi.spyOn(pb.Request, 'decode');
    try {
      for (const [b, reqId] of [[stats, 5], [has, 6], [gets, 7], [renew, 8], [two, 9], [twoIds, 9]] as const) {
        let caught: unknown;
        try { decodeRequest(b); } catch (e) { caught = e; }
        expect(isBitcloudError(caught, 'STORAGE_BAD_REQUEST')).toBe(true);
        expect((caught as { detail: { reqId?: number } }).detail.reqId).toBe(reqId);
      }
      expect(decode).not.toHaveBeenCalled();
      // Legitimate requests still decode: has and renew of 1 024 ids, a challenge of 16 blocks
      // (packed, as encoders write them, or not), a stat, a large put.
      const ids = Array.from({ length: 1024 }, (_, i) => Buffer.alloc(32, i));
      const legit: StorageRequest[] = [
        { type: 'has', ids }, { type: 'renew', ids, leaseSeconds: 60 }, { type: 'stat' },
        { type: 'challenge', id, nonce: Buffer.alloc(16, 1), blocks: Array.from({ length: 16 }, (_, i) => i * 3) },
        { type: 'dhtPut', item: { publisher: Buffer.alloc(32, 1), salt: Buffer.from('s'), value: Buffer.from('v'), sig: Buffer.alloc(64, 2), seq: 2 ** 53 - 1 } },
      ];
      for (const r of legit) expect(decodeRequest(encodeRequest(4, r))).toEqual({ reqId: 4, req: r });
      const put = decodeRequest(encodeRequest(4, { type: 'put', id, data: Buffer.alloc(300_000, 2), leaseSeconds: 60, contentClass: 'public-video' }));
      expect(put.req.type === 'put' && put.req.data.equals(Buffer.alloc(300_000, 2)) && put.req.contentClass).toBe('public-video'); // Buffer.equals: a deep equality walks every byte
      const unpacked = Buffer.concat([Buffer.from([field(1, 2), 32]), id, Buffer.from([field(2, 2), 16]), Buffer.alloc(16, 1), Buffer.from(Array.from({ length: 16 }, (_, i) => [field(3, 0), i]).flat())]);
      expect(decodeRequest(Buffer.concat([Buffer.from([0x08, 3, field(12, 2)]), varint(unpacked.length), unpacked])).req).toMatchObject({ type: 'challenge', blocks: Array.from({ length: 16 }, (_, i) => i) });
      // seq as an 8-byte varint, last in its body: the scan steps over it as the decode does.
      const dht = Buffer.concat([Buffer.from([field(1, 2), 32]), Buffer.alloc(32, 1), Buffer.from([field(2, 2), 1, 0x73, field(3, 2), 1, 0x76, field(5, 2), 64]), Buffer.alloc(64, 2), Buffer.from([field(4, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])]);
      expect(decodeRequest(Buffer.concat([Buffer.from([0x08, 3, field(9, 2)]), varint(dht.length), dht])).req).toEqual(legit[4]);
      expect(decode).toHaveBeenCalledTimes(legit.length + 3);
      // 17 blocks, unpacked: refused undecoded as well.
      const unpacked17 = Buffer.concat([unpacked, Buffer.from([field(3, 0), 16])]);
      expect(codeOf(() => decodeRequest(Buffer.concat([Buffer.from([0x08, 3, field(12, 2)]), varint(unpacked17.length), unpacked17])))).toBe('STORAGE_BAD_REQUEST');
      expect(decode).toHaveBeenCalledTimes(legit.length + 3);
    } finally {
      decode.mockRestore();
    }
  });

  it('a DhtGet and a DhtPut with an empty salt (0..64 bytes, SPEC §9.14.1) decode, as do their answers', () => {
    const item = { publisher: Buffer.alloc(32, 1), salt: Buffer.alloc(0), value: Buffer.from('v'), sig: Buffer.alloc(64, 2), seq: 7 };
    for (const r of [{ type: 'dhtGet', publisher: Buffer.alloc(32, 1), salt: Buffer.alloc(0) }, { type: 'dhtPut', item }] as StorageRequest[]) {
      expect(decodeRequest(encodeRequest(5, r))).toEqual({ reqId: 5, req: r });
    }
    const ok: StorageResponse = { type: 'dhtGet', item };
    expect(decodeResponse(encodeResponse(5, ok)).res).toEqual(ok);
  });

  it('bad responses → STORAGE_BAD_RESPONSE', () => {
    const bad = (body: Record<string, unknown>) => codeOf(() => decodeResponse(encodeProto(pb.Response, { id: 1, ...body })));
    expect(bad({})).toBe('STORAGE_BAD_RESPONSE');
    expect(bad({ error: { code: 'lower', message: '' } })).toBe('STORAGE_BAD_RESPONSE');
    expect(bad({ error: { code: 'X', message: 'm'.repeat(1025) } })).toBe('STORAGE_BAD_RESPONSE');
    expect(bad({ audit: { proof: Buffer.alloc(31) } })).toBe('STORAGE_BAD_RESPONSE');
    expect(bad({ put: { expiresAt: 2 ** 60 } })).toBe('STORAGE_BAD_RESPONSE');
  });

  it('property: random bytes decode or throw the one code', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      const a = codeOf(() => decodeRequest(b));
      const r = codeOf(() => decodeResponse(b));
      return (a === undefined || a === 'STORAGE_BAD_REQUEST') && (r === undefined || r === 'STORAGE_BAD_RESPONSE');
    }), { numRuns: 3000 });
  });

  it('error responses carry the stable code; non-Bitcloud errors become STORAGE_INTERNAL', () => {
    expect(errorResponse(err('STORAGE_FULL', 'quota reached'))).toEqual({ type: 'error', code: 'STORAGE_FULL', message: 'quota reached' });
    expect(errorResponse(new RangeError('x')).code).toBe('STORAGE_INTERNAL');
    const e = responseError({ type: 'error', code: 'SHARE_NOT_FOUND', message: 'no' });
    expect(isBitcloudError(e, 'SHARE_NOT_FOUND')).toBe(true);
  });
});

describe('framing (SPEC §9.6.1)', () => {
  it('frames split at every byte boundary come out whole', () => {
    const bodies = [Buffer.from('a'), Buffer.alloc(1000, 2), Buffer.from('xyz')];
    const wire = Buffer.concat(bodies.map((b) => encodeFrame(b)));
    for (let step = 1; step <= 7; step++) {
      const d = new FrameDecoder();
      const out: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)));
      expect(out.map((b, i) => b.equals(bodies[i]))).toEqual(bodies.map(() => true)); // Buffer.equals: a deep equality walks every byte
      expect(d.buffered).toBe(0);
    }
  });

  it('a requester\'s decoder takes a frame\'s whole buffer at once up to its bound, and still cuts frames at every boundary', () => {
    const bodies = [Buffer.from('a'), Buffer.alloc(300_000, 2), Buffer.alloc(70_000, 3), Buffer.from('xyz')];
    const wire = Buffer.concat(bodies.map((b) => encodeFrame(b)));
    for (const step of [1, 7, 498, 65_536, wire.length]) {
      const d = new FrameDecoder(MAX_FRAME_BYTES, undefined, 100_000);
      const out: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)));
      expect(out.map((b, i) => b.equals(bodies[i]))).toEqual(bodies.map(() => true)); // Buffer.equals: a deep equality walks every byte
      // Within the bound, the body is the buffer allocated for it (never a grown copy).
      expect(out[2].buffer.byteLength).toBe(70_000);
    }
  });

  it('oversized and zero lengths are refused, and the decoder stays failed', () => {
    const d = new FrameDecoder(100);
    expect(codeOf(() => d.push(Buffer.from([0, 0, 0, 101])))).toBe('STORAGE_FRAME_TOO_LARGE');
    expect(codeOf(() => d.push(encodeFrame(Buffer.from('ok'))))).toBe('STORAGE_FRAME_TOO_LARGE');
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0])))).toBe('STORAGE_FRAME_MALFORMED');
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0xff, 0xff, 0xff, 0xff])))).toBe('STORAGE_FRAME_TOO_LARGE');
    expect(codeOf(() => frameHeader(MAX_FRAME_BYTES + 1))).toBe('STORAGE_FRAME_TOO_LARGE');
  });

  it('property: random byte streams give frames or a BitcloudError, nothing else', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
      const d = new FrameDecoder(256);
      for (const c of chunks) {
        try {
          for (const f of d.push(c)) if (f.length < 1 || f.length > 256) return false;
        } catch (e) {
          return isBitcloudError(e) && ['STORAGE_FRAME_TOO_LARGE', 'STORAGE_FRAME_MALFORMED'].includes(e.code);
        }
      }
      return true;
    }), { numRuns: 3000 });
  });

  it('property: random streams through frames + request decoding give requests or BitcloudErrors', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
      const d = new FrameDecoder(128);
      try {
        for (const c of chunks) for (const f of d.push(c)) {
          try { decodeRequest(f); } catch (e) { if (!isBitcloudError(e, 'STORAGE_BAD_REQUEST')) return false; }
        }
      } catch (e) {
        return isBitcloudError(e);
      }
      return true;
    }), { numRuns: 2000 });
  });
});
