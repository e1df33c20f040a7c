// Known answers printed in SPEC.md §9.11: a second implementation must reproduce them.
import { describe, it, expect } from 'vitest';
import { encodeChunk, encryptChunk, ChunkKind } from '../../src/storage/encode';
import { placeChunk, placementWeight, rankNodes } from '../../src/storage/placement';
import { formatCapability } from '../../src/storage/capability';

const key = Buffer.alloc(32, 0x42);
const nodes = [1, 2, 3, 4, 5, 6, 7, 8].map((b) => Buffer.alloc(32, b).toString('hex'));

describe('storage known answers (SPEC §9.11)', () => {
  it('V1: encrypted chunk', () => {
    expect(encryptChunk(key, 0, Buffer.from('hello'), ChunkKind.DATA).toString('hex')).toBe(
      'b0e60dbad9f8050255a1b2b53fd2c0e988bb37aea3285c4a8f73441aef5ee159f29bcd7e4643aeabde9f51b4e2');
  });

  it('V2: 4-of-6 shares and share ids', () => {
    const c = encodeChunk(key, 0, Buffer.from('hello'), { k: 4, n: 6 });
    expect(c.encLen).toBe(45);
    expect(c.shares.map((s) => s.bytes.toString('hex'))).toEqual([
      'b0e60dbad9f8050255a1b2b5', '3fd2c0e988bb37aea3285c4a', '8f73441aef5ee159f29bcd7e',
      '4643aeabde9f51b4e2000000', '2f5256d60cd310b13a740858', '297e49f300bb0986a2912c86',
    ]);
    expect(c.shares[0].id.toString('hex')).toBe('d04900ead4538c15373c56bacdab5344e7a5439d2f9c623843c892859b2f11e1');
    expect(c.shares[5].id.toString('hex')).toBe('1216b7035da3c6b66257be0b945b907b71ad0a924a155eeef3ac5330b03dd7e7');
  });

  it('V3: placement', () => {
    const share = Buffer.alloc(32, 0xaa);
    expect(placementWeight(share, nodes[0]).toString('hex')).toBe('94094bc63fae7728af9329f9e4d3cfbb421b16409744d3baf0be7be5f63fdb40');
    expect(rankNodes(share, nodes).map((n) => n.slice(0, 2))).toEqual(['03', '07', '06', '02', '01', '05', '04', '08']);
    const c = encodeChunk(key, 0, Buffer.from('hello'), { k: 4, n: 6 });
    expect(placeChunk(c.shares.map((s) => s.id), nodes).map((n) => n.slice(0, 2))).toEqual(['08', '04', '02', '03', '05', '06']);
  });

  it('V4: capability text', () => {
    expect(formatCapability({ manifestId: Buffer.alloc(32, 0xaa), fileKey: key })).toBe(
      'bitcloud:vkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkva#ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba');
  });
});
