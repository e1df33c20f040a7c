import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { DEFAULT_SCHEDULE, UNITS_PER_COIN, allocate, maxSupply, mintFor, scheduledMint } from '../../src/bandwidth/reward';
import { isBitcloudError } from '../../src/errors';

const fp = (n: number) => n.toString(16).padStart(64, '0');

describe('issuance schedule (SPEC §8.6)', () => {
  it('mints 50 coins per block, halving every 35 040 blocks', () => {
    expect(scheduledMint(0)).toBe(50n * UNITS_PER_COIN);
    expect(scheduledMint(35_039)).toBe(50n * UNITS_PER_COIN);
    expect(scheduledMint(35_040)).toBe(25n * UNITS_PER_COIN);
    expect(scheduledMint(35_040 * 3)).toBe((50n * UNITS_PER_COIN) >> 3n);
    expect(scheduledMint(35_040 * 64)).toBe(0n);
    expect(maxSupply(DEFAULT_SCHEDULE) <= 2n * 50n * UNITS_PER_COIN * 35_040n).toBe(true);
  });

  it('mints nothing for an epoch in which nothing was proven', () => {
    expect(mintFor(0, new Map())).toBe(0n);
    expect(mintFor(0, new Map([[fp(1), 0]]))).toBe(0n);
    expect(mintFor(0, new Map([[fp(1), 5]]))).toBe(scheduledMint(0));
  });
});

describe('allocation (SPEC §8.6)', () => {
  it('is exactly proportional when shares divide evenly', () => {
    const a = allocate(1000n, new Map([[fp(1), 1], [fp(2), 3], [fp(3), 0]]));
    expect([...a]).toEqual([[fp(1), 250n], [fp(2), 750n]]);
  });

  it('gives left-over units to the largest remainders, ties by the smaller fingerprint', () => {
    // 10 units over three equal relays: 3 each, one left over, tie → smallest fingerprint.
    expect([...allocate(10n, new Map([[fp(3), 7], [fp(1), 7], [fp(2), 7]]))]).toEqual([[fp(1), 4n], [fp(2), 3n], [fp(3), 3n]]);
    // 10 units for 1:2:4 → exact 1.43, 2.86, 5.71: floors 1,2,5 (8), remainders .43 .86 .71 → +1 to fp2 and fp3.
    expect([...allocate(10n, new Map([[fp(1), 1], [fp(2), 2], [fp(3), 4]]))]).toEqual([[fp(1), 1n], [fp(2), 3n], [fp(3), 6n]]);
  });

  it('does not depend on the order of the input', () => {
    const m1 = new Map([[fp(9), 5], [fp(2), 5], [fp(4), 5]]);
    const m2 = new Map([[fp(4), 5], [fp(9), 5], [fp(2), 5]]);
    expect([...allocate(7n, m1)]).toEqual([...allocate(7n, m2)]);
  });

  it('allocates nothing when the total is zero', () => {
    expect(allocate(1000n, new Map()).size).toBe(0);
    expect(allocate(1000n, new Map([[fp(1), 0n]])).size).toBe(0);
  });

  it('omits relays whose share rounds to zero units', () => {
    const a = allocate(1n, new Map([[fp(1), 1], [fp(2), 1000]]));
    expect([...a]).toEqual([[fp(2), 1n]]);
  });

  it('refuses negative or fractional bandwidth', () => {
    for (const bad of [-1, 1.5, Number.NaN]) {
      try {
        allocate(10n, new Map([[fp(1), bad]]));
        throw new Error('expected a throw');
      } catch (e) {
        expect(isBitcloudError(e, 'REWARD_BAD_INPUT')).toBe(true);
      }
    }
  });

  it('property: the sum is minted exactly and every share is within one unit of exact', () => {
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 5000 }), fc.oneof(fc.nat(), fc.bigInt({ min: 0n, max: 1n << 80n }))), { minLength: 1, maxLength: 60 }),
      (minted, raw) => {
        const proven = new Map<string, bigint | number>(raw.map(([k, v]) => [fp(k), v]));
        const a = allocate(minted, proven);
        let total = 0n;
        for (const v of proven.values()) total += BigInt(v);
        let sum = 0n;
        for (const v of a.values()) sum += v;
        if (total === 0n) { expect(a.size).toBe(0); return; }
        expect(sum).toBe(minted);
        for (const [k, v] of proven) {
          const got = a.get(k) ?? 0n;
          // |got − minted·p/total| < 1  ⇔  |got·total − minted·p| < total
          const diff = got * total - minted * BigInt(v);
          expect(diff < total && -diff < total).toBe(true);
        }
        const keys = [...a.keys()];
        expect(keys).toEqual([...keys].sort());
      },
    ), { numRuns: 500 });
  });
});
