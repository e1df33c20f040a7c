import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { erasureEncodeInPlace, erasureReconstruct, shareSizeFor } from '../../src/storage/erasure';
import { gfInv, gfMul, gfPow, matInvert, matMul, systematicMatrix } from '../../src/storage/gf256';
import { checkCoding, parseCoding, CODING_PROFILES } from '../../src/storage/coding';
import { isBitcloudError } from '../../src/errors';

function subsets(n: number, k: number): number[][] {
  const out: number[][] = [];
  const rec = (start: number, acc: number[]) => {
    if (acc.length === k) { out.push([...acc]); return; }
    for (let i = start; i < n; i++) { acc.push(i); rec(i + 1, acc); acc.pop(); }
  };
  rec(0, []);
  return out;
}

function encode(k: number, n: number, data: Buffer): { shares: Buffer[]; size: number } {
  const size = shareSizeFor(data.length, k);
  const buf = Buffer.alloc(n * size);
  data.copy(buf);
  erasureEncodeInPlace({ k, n }, buf, size);
  const shares: Buffer[] = [];
  for (let i = 0; i < n; i++) shares.push(buf.subarray(i * size, (i + 1) * size));
  return { shares, size };
}

describe('gf256 (SPEC §9.3)', () => {
  it('is the field of polynomial 0x11d with generator 2', () => {
    expect(gfMul(2, 0x80)).toBe(0x1d);
    expect(gfPow(2, 8)).toBe(0x1d);
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    expect(gfPow(0, 0)).toBe(1);
  });

  it('inverts matrices', () => {
    const m = systematicMatrix(4, 6).slice(2, 6);
    const id = matMul(m, matInvert(m));
    id.forEach((row, r) => row.forEach((v, c) => expect(v).toBe(r === c ? 1 : 0)));
  });

  it('systematic matrix: identity on top, Backblaze/klauspost parity rows for 4-of-6', () => {
    const m = systematicMatrix(4, 6);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) expect(m[r][c]).toBe(r === c ? 1 : 0);
    // Known answer (rows 4 and 5 of klauspost/reedsolomon's default matrix for 4+2).
    expect(Array.from(m[4])).toEqual([27, 28, 18, 20]);
    expect(Array.from(m[5])).toEqual([28, 27, 20, 18]);
  });
});

describe('erasure coding', () => {
  it('reproduces the Backblaze JavaReedSolomon 5+5 known answer (same code as klauspost, reed-solomon-erasure)', () => {
    const data = Buffer.from([0, 1, 4, 5, 2, 3, 6, 7, 8, 9]);
    const { shares } = encode(5, 10, data);
    expect(shares.slice(5).map((s) => Array.from(s))).toEqual([[12, 13], [10, 11], [14, 15], [90, 91], [94, 95]]);
  });

  for (const [k, n] of [[1, 1], [1, 3], [2, 3], [4, 6], [3, 10], [5, 8]] as const) {
    it(`${k}-of-${n}: every subset of k shares rebuilds the data`, () => {
      const data = Buffer.from(Array.from({ length: 101 }, (_, i) => (i * 37 + 11) & 0xff));
      const { shares, size } = encode(k, n, data);
      for (const s of subsets(n, k)) {
        const given = shares.map((sh, i) => (s.includes(i) ? sh : null));
        const out = erasureReconstruct({ k, n }, given, size);
        expect(out.subarray(0, data.length).equals(data)).toBe(true);
      }
    });
  }

  it('fewer than k shares → CHUNK_TOO_FEW_SHARES', () => {
    const { shares, size } = encode(4, 6, Buffer.alloc(40, 7));
    const given = shares.map((s, i) => (i < 3 ? s : null));
    try {
      erasureReconstruct({ k: 4, n: 6 }, given, size);
      expect.unreachable();
    } catch (e) {
      expect(isBitcloudError(e, 'CHUNK_TOO_FEW_SHARES')).toBe(true);
    }
  });

  it('property: random data and random erasures round-trip', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 6 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.array(fc.nat(), { maxLength: 20 }),
      (k, m, bytes, drops) => {
        const n = k + m;
        const data = Buffer.from(bytes);
        const { shares, size } = encode(k, n, data);
        const given: (Buffer | null)[] = [...shares];
        let dropped = 0;
        for (const d of drops) { if (dropped >= m) break; if (given[d % n]) { given[d % n] = null; dropped++; } }
        return erasureReconstruct({ k, n }, given, size).subarray(0, data.length).equals(data);
      },
    ), { numRuns: 200 });
  });
});

describe('coding parameters', () => {
  it('profiles and K-of-N', () => {
    expect(parseCoding('default')).toEqual({ k: 4, n: 6 });
    expect(parseCoding('durable')).toEqual(CODING_PROFILES.durable);
    expect(parseCoding('3-of-10')).toEqual({ k: 3, n: 10 });
    expect(parseCoding('2/5')).toEqual({ k: 2, n: 5 });
  });
  it('refuses impossible codings', () => {
    for (const [k, n] of [[0, 3], [4, 3], [1, 65], [1.5, 3]]) {
      expect(() => checkCoding(k, n)).toThrowError(/STORAGE_CODING_INVALID/);
    }
    expect(() => parseCoding('toString')).toThrowError(/STORAGE_CODING_INVALID/);
  });
});
