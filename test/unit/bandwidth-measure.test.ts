import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  DEFAULT_BOUNDS, DEFAULT_PAIR_RULE, LOCAL_NETWORK_BOUNDS, cellsForBandwidth, dispersionCredit, maxReceiptCells, measure, measurePairRule, pairAllowance, pairExcluded, pairKey,
  provenCells, slash16, type BoundsParams, type PairCounts, type PairRuleParams, type RelayFacts,
} from '../../src/bandwidth/measure';
import { isBitcloudError } from '../../src/errors';

const id = (c: string) => c.repeat(64);
const [A, B, C, D, E] = ['a', 'b', 'c', 'd', 'e'].map(id);
const T = 3600;
const MB = 1_000_000;

function facts(over: Partial<RelayFacts> = {}): RelayFacts {
  return { declaredBandwidth: 100 * MB, history: 100, ...over };
}
function relays(entries: [string, Partial<RelayFacts>][]): Map<string, RelayFacts> {
  return new Map(entries.map(([k, v], i) => [k, facts({ ipv4: `10.${i}.0.1`, ...v })]));
}
const off: BoundsParams = { ...LOCAL_NETWORK_BOUNDS, epochSeconds: T };
const pc = (initiator: string, responder: string, i2r: number, r2i: number): PairCounts => ({ initiator, responder, cellsI2R: i2r, cellsR2I: r2i });

describe('measurement (SPEC §8.5)', () => {
  it('credits both ends of a receipt with the cells they sent plus received', () => {
    const m = measure({ receipts: [pc(A, B, 100, 300), pc(B, C, 50, 50)], relays: relays([[A, {}], [B, {}], [C, {}]]), previousWeights: new Map(), params: off });
    expect(m.get(A)!.cells).toBe(400);
    expect(m.get(B)!.cells).toBe(500);
    expect(m.get(C)!.cells).toBe(100);
    expect(m.get(B)!.bytesPerSecond).toBe(Math.floor((500 * 514) / T));
    expect([...provenCells(m)]).toEqual([[A, 400], [B, 500], [C, 100]]);
  });

  it('sums several receipts of one pair, in either orientation', () => {
    const m = measure({ receipts: [pc(A, B, 100, 0), pc(B, A, 10, 0), pc(A, B, 0, 1)], relays: relays([[A, {}], [B, {}]]), previousWeights: new Map(), params: off });
    expect(m.get(A)!.cells).toBe(111);
    expect(m.get(B)!.cells).toBe(111);
  });

  it('ignores receipts naming a relay outside the epoch consensus', () => {
    const m = measure({ receipts: [pc(A, D, 100, 0)], relays: relays([[A, {}]]), previousWeights: new Map(), params: off });
    expect(m.size).toBe(0);
  });

  it('receipts between relays of one declared family earn nothing (either side declaring suffices)', () => {
    const r = relays([[A, { family: [B] }], [B, {}], [C, {}]]);
    const m = measure({ receipts: [pc(A, B, 1000, 1000), pc(A, C, 10, 10)], relays: r, previousWeights: new Map(), params: off });
    expect(m.get(A)!).toMatchObject({ cells: 20, grossCells: 2020, excludedCells: 2000 });
    expect(m.get(B)!.cells).toBe(0);
  });

  it('receipts within one IPv4 /16 earn nothing, unless the rule is switched off (loopback network)', () => {
    const r = relays([[A, { ipv4: '192.0.2.1' }], [B, { ipv4: '192.0.77.9' }], [C, { ipv4: '192.1.2.1' }]]);
    const on = measure({ receipts: [pc(A, B, 1000, 0), pc(A, C, 5, 5)], relays: r, previousWeights: new Map(), params: { ...off, sameSubnetRule: true } });
    expect(on.get(A)!.cells).toBe(10);
    expect(on.get(B)!.cells).toBe(0);
    const offRule = measure({ receipts: [pc(A, B, 1000, 0)], relays: r, previousWeights: new Map(), params: off });
    expect(offRule.get(B)!.cells).toBe(1000);
    expect(slash16('127.0.0.1')).toBe('127.0');
    expect(slash16('300.1.1.1')).toBeUndefined();
    expect(pairExcluded(A, facts({ ipv4: '127.0.0.1' }), B, facts({ ipv4: '127.0.0.1' }), true)).toBe(true);
    expect(pairExcluded(A, facts({ ipv4: '127.0.0.1' }), B, facts({ ipv4: '127.0.0.1' }), false)).toBe(false);
  });

  it('dispersion: solves X = Σ min(cells, coefficient·X + slack) exactly', () => {
    // Three peers whose claims fit their shares: everything counts.
    expect(dispersionCredit([{ cells: 100, coefficient: 0.75 }, { cells: 200, coefficient: 1 }, { cells: 50, coefficient: 0.5 }], 0)).toBeCloseTo(350);
    // A single peer with 1 % of the weight (κ = 1.5) vouching for 10^12 cells: X = 0.015·X + σ.
    expect(dispersionCredit([{ cells: 1e12, coefficient: 0.015 }], 1000)).toBeCloseTo(1000 / 0.985, 6);
    // The same plus 10 000 honest cells from a peer holding 80 % of the weight (coefficient 1.2).
    const x = dispersionCredit([{ cells: 1e12, coefficient: 0.015 }, { cells: 10_000, coefficient: 1.2 }], 1000);
    expect(x).toBeCloseTo((10_000 + 1000) / 0.985, 6);
    // A relay whose peers together hold too little weight to justify its claims keeps only what they can vouch for:
    // with coefficients 0.015 and 0.75 (Σ < 1) neither claim saturates, X = 2σ / (1 − 0.765).
    expect(dispersionCredit([{ cells: 1e12, coefficient: 0.015 }, { cells: 10_000, coefficient: 0.75 }], 1000)).toBeCloseTo(2000 / 0.235, 6);
    // Claims at or below the slack always count; a peer without weight counts up to the slack.
    expect(dispersionCredit([{ cells: 900, coefficient: 0 }, { cells: 5000, coefficient: 0 }], 1000)).toBe(1900);
    // Disabled (κ = ∞): everything counts.
    expect(dispersionCredit([{ cells: 123, coefficient: Infinity }, { cells: 7, coefficient: Infinity }], 0)).toBe(130);
    expect(dispersionCredit([], 1000)).toBe(0);
  });

  it('dispersion property: the result is the fixed point, between 0 and the gross', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ cells: fc.nat({ max: 1e9 }), coefficient: fc.double({ min: 0, max: 3, noNaN: true }) }), { maxLength: 30 }),
      fc.nat({ max: 5000 }),
      (claims, slack) => {
        const x = dispersionCredit(claims, slack);
        const gross = claims.reduce((a, c) => a + c.cells, 0);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(gross + 1e-6);
        const rhs = claims.reduce((a, c) => a + Math.min(c.cells, c.coefficient * x + slack), 0);
        expect(Math.abs(rhs - x)).toBeLessThanOrEqual(1e-6 * Math.max(1, x));
      },
    ), { numRuns: 1000 });
  });

  it('caps the credit one peer can give in proportion to that peer\'s weight in the previous consensus', () => {
    const params: BoundsParams = { ...DEFAULT_BOUNDS, epochSeconds: T, newRelayEpochs: 0, growthFactor: Infinity, peerCapSlackCells: 0 };
    // Previous consensus: A 10 MB/s, B 1 MB/s, C 9 MB/s, D 80 MB/s (total 100).
    const prev = new Map([[A, 10 * MB], [B, 1 * MB], [C, 9 * MB], [D, 80 * MB]]);
    // A exchanged 1000 honest cells with D and claims 10^9 with B (1 % of the weight): B vouches for ≤ 1.5 % of A's credit.
    const m = measure({ receipts: [pc(A, B, 1e9, 0), pc(A, D, 500, 500)], relays: relays([[A, {}], [B, {}], [C, {}], [D, {}]]), previousWeights: prev, params });
    expect(m.get(A)!.cells).toBe(Math.floor(1000 / (1 - 0.015)));
    expect(m.get(A)!.peerCappedCells).toBe(1e9 + 1000 - m.get(A)!.cells);
    // A relay absent from the previous consensus vouches for the slack only.
    const m2 = measure({ receipts: [pc(A, E, 1e9, 0)], relays: relays([[A, {}], [E, {}]]), previousWeights: prev, params: { ...params, peerCapSlackCells: 1000 } });
    expect(m2.get(A)!.cells).toBe(1000);
  });

  it('limits growth to γ × the previous weight (or the new-relay bandwidth when larger)', () => {
    const params: BoundsParams = { ...off, growthFactor: 2, newRelayBandwidth: 1000 };
    const prev = new Map([[A, 100_000], [B, 100_000]]);
    const m = measure({ receipts: [pc(A, B, 10_000_000, 0)], relays: relays([[A, {}], [B, {}]]), previousWeights: prev, params });
    expect(m.get(A)!).toMatchObject({ cells: cellsForBandwidth(200_000, T), limitedBy: 'growth' });
    const fresh = measure({ receipts: [pc(A, B, 10_000_000, 0)], relays: relays([[A, {}], [B, {}]]), previousWeights: new Map(), params });
    expect(fresh.get(A)!.cells).toBe(cellsForBandwidth(2000, T));
  });

  it('caps a new relay until it has history', () => {
    const params: BoundsParams = { ...off, newRelayEpochs: 24, newRelayBandwidth: 100_000 };
    const cap = cellsForBandwidth(100_000, T);
    const r = relays([[A, { history: 3 }], [B, { history: 24 }]]);
    const m = measure({ receipts: [pc(A, B, cap, cap)], relays: r, previousWeights: new Map(), params });
    expect(m.get(A)!).toMatchObject({ cells: cap, limitedBy: 'new-relay' });
    expect(m.get(B)!).toMatchObject({ cells: 2 * cap, limitedBy: 'none' });
  });

  it('never credits a relay beyond twice its declared bandwidth over the epoch', () => {
    const r = relays([[A, { declaredBandwidth: 1000 }], [B, {}]]);
    const m = measure({ receipts: [pc(A, B, 10_000, 10_000)], relays: r, previousWeights: new Map(), params: off });
    expect(m.get(A)!).toMatchObject({ cells: cellsForBandwidth(2000, T), limitedBy: 'declared' });
    expect(m.get(B)!.cells).toBe(20_000);
  });

  it('two colluding relays that invent traffic gain at most what the bounds allow', () => {
    const params: BoundsParams = { ...DEFAULT_BOUNDS, epochSeconds: T };
    // C and D each held 1 % of the previous consensus and invent 10^12 cells between them.
    const prev = new Map([[A, 49 * MB], [B, 49 * MB], [C, 1 * MB], [D, 1 * MB]]);
    const r = relays([[A, {}], [B, {}], [C, { declaredBandwidth: 1e12 }], [D, { declaredBandwidth: 1e12 }]]);
    // C's real traffic is spread like the weights: 49 000 cells with each of A and B.
    const honest = 98_000;
    const m = measure({ receipts: [pc(C, D, 1e11, 1e11), pc(A, C, 49_000, 0), pc(B, C, 0, 49_000)], relays: r, previousWeights: prev, params });
    // X = honest + 1.5 % · X + σ: the invention is worth 1.5 % of the real credit plus the slack.
    expect(m.get(C)!.cells).toBe(Math.floor((honest + params.peerCapSlackCells) / (1 - 0.015)));
    expect(m.get(D)!.cells).toBe(Math.floor(params.peerCapSlackCells / (1 - 0.015)));
  });

  it('refuses invalid parameters', () => {
    const bad = () => measure({ receipts: [], relays: new Map(), previousWeights: new Map(), params: { ...off, epochSeconds: 0 } });
    expect(() => bad()).toThrow();
    try { bad(); } catch (e) { expect(isBitcloudError(e, 'RECEIPT_BAD_PARAMS')).toBe(true); }
  });

  it('skips and counts a receipt with impossible counts instead of failing the whole measurement; sums are exact', () => {
    const max = Number.MAX_SAFE_INTEGER;
    const skipped: string[] = [];
    const rs = relays([[A, {}], [B, {}], [C, {}], [D, {}]]);
    const receipts = [pc(A, B, max, max), pc(B, A, max, 1), pc(A, B, -5, 0), pc(A, B, 0.5, 0), pc(C, D, 100, 300),
      pc(A, B, maxReceiptCells(T) + 1, 0)];
    const m = measure({ receipts, relays: rs, previousWeights: new Map(), params: off, onSkip: (rc) => skipped.push(rc.initiator) });
    expect(skipped).toHaveLength(5);
    expect(m.get(C)!.cells).toBe(400);
    expect(m.has(A)).toBe(false);
    // Many receipts at the per-receipt limit between one pair: the exact sum saturates at 2^53 − 1
    // rather than losing precision or throwing, and bound 6 then caps the credit.
    const big = maxReceiptCells(T);
    const many = Array.from({ length: 60_000 }, () => pc(A, B, big, big));
    const m2 = measure({ receipts: many, relays: rs, previousWeights: new Map(), params: off });
    expect(m2.get(A)!.grossCells).toBe(max);
    expect(m2.get(A)!.cells).toBe(cellsForBandwidth(2 * 100 * MB, T));
    expect(Number.isSafeInteger(m2.get(A)!.bytesPerSecond)).toBe(true);
  });
});

describe('the pair rule on receipts, with owed state across epochs (SPEC §8.5.2)', () => {
  const pp: PairRuleParams = { ...DEFAULT_PAIR_RULE, epochSeconds: T };
  const weights = new Map([[A, 10 * MB], [B, 20 * MB], [C, 30 * MB], [D, 40 * MB]]);
  const rel = relays([[A, {}], [B, {}], [C, {}], [D, {}]]);

  it('is deterministic: the same receipts in any order give the same proven cells and the same owed state', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.constantFrom(A, B, C, D), fc.constantFrom(A, B, C, D), fc.nat(3_000_000), fc.nat(3_000_000)), { minLength: 1, maxLength: 30 }),
      fc.array(fc.tuple(fc.constantFrom(A, B, C, D), fc.constantFrom(A, B, C, D), fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true })), { maxLength: 6 }),
      (rs, ow) => {
        const receipts = rs.map(([x, y, i, r]) => pc(x, y, i, r));
        const owed = new Map<string, [number, number]>();
        for (const [x, y, u, v] of ow) if (x !== y) owed.set(pairKey(x, y), [u, v]);
        const one = measurePairRule({ receipts, relays: rel, previousWeights: weights, params: pp, owed });
        const two = measurePairRule({ receipts: [...receipts].reverse(), relays: rel, previousWeights: weights, params: pp, owed: new Map([...owed].reverse()) });
        expect([...two.relays]).toEqual([...one.relays]);
        expect(new Map(two.owed)).toEqual(new Map(one.owed));
      },
    ), { numRuns: 200 });
  });

  it('a pair never credits an end more than its allowance in an epoch, owed or not; what it owes is paid back in later quiet epochs', () => {
    const a = pairAllowance(10 * MB, 20 * MB, 100 * MB, pp);
    let owed: Map<string, [number, number]> = new Map();
    let total = 0;
    const claims = [Math.floor(5 * a), 0, 0, 0, 0, 0];
    for (const c of claims) {
      const r = measurePairRule({ receipts: c ? [pc(A, B, c, 0)] : [], relays: rel, previousWeights: weights, params: pp, owed });
      const got = r.relays.get(A)?.cells ?? 0;
      expect(got).toBeLessThanOrEqual(Math.floor(a));
      total += got;
      owed = r.owed;
    }
    // 5 allowances claimed once: paid over five epochs, nothing left, never more than claimed.
    expect(total).toBeGreaterThanOrEqual(Math.floor(5 * a) - claims.length);
    expect(total).toBeLessThanOrEqual(5 * a);
    // Nothing is owed any more; with the default bank (B = 24) the pair now holds banked allowance
    // (negative), carried across epochs like what is owed.
    expect([...owed.values()].every(([x, y]) => x <= 0 && y <= 0)).toBe(true);
    expect(owed.get(pairKey(A, B))![0]).toBeLessThan(0);
  });

  it('a pair whose relay left the consensus keeps what it is owed only when told to', () => {
    const owed = new Map([[pairKey(A, E), [100, 200] as [number, number]]]);
    const drop = measurePairRule({ receipts: [], relays: rel, previousWeights: weights, params: pp, owed });
    expect(drop.owed.size).toBe(0);
    const keep = measurePairRule({ receipts: [], relays: rel, previousWeights: weights, params: pp, owed, keepUnlisted: () => true });
    expect(keep.owed).toEqual(owed);
  });
});
