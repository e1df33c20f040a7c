import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  DEFAULT_PAIR_RULE, applyPairRule, applyRule, cellsForBandwidth, pairAllowance, DEFAULT_BOUNDS,
  type OwedTable, type PairRuleParams, type RelayTable,
} from '../../src/bandwidth/rule';
import { isBitcloudError } from '../../src/errors';

// SPEC §8.5.2: the pair rule, one test per bound.
const T = 3600;
const MB = 1_000_000;
// The bounds one at a time: no bank (bankEpochs 0) unless a test turns it on.
const P: PairRuleParams = { ...DEFAULT_PAIR_RULE, epochSeconds: T, newRelayEpochs: 0, growthFactor: Infinity, pairSlackCells: 0, bankEpochs: 0 };

function table(weights: number[], over: Partial<RelayTable> = {}): RelayTable {
  const n = weights.length;
  return {
    n,
    previousWeights: Float64Array.from(weights),
    declaredBandwidth: new Float64Array(n).fill(1e12),
    history: new Float64Array(n).fill(100),
    subnet: Int32Array.from({ length: n }, (_, i) => i),
    ...over,
  };
}
function pairs(list: [number, number, number][]) {
  return { a: Int32Array.from(list.map((x) => x[0])), b: Int32Array.from(list.map((x) => x[1])), cells: Float64Array.from(list.map((x) => x[2])) };
}
const owedFor = (k: number): OwedTable => ({ owedA: new Float64Array(k), owedB: new Float64Array(k) });

describe('pair rule (SPEC §8.5.2)', () => {
  it('allowance: κ × cells(W_R) × W_P / (ΣW − W_R) + σ; a peer without weight allows σ only', () => {
    const p = { ...P, pairFactor: 1.1, pairSlackCells: 100 };
    expect(pairAllowance(10 * MB, 30 * MB, 100 * MB, p)).toBeCloseTo(1.1 * cellsForBandwidthExact(10 * MB) * (30 / 90) + 100, 6);
    expect(pairAllowance(10 * MB, 0, 100 * MB, p)).toBe(100);
    expect(pairAllowance(0, 10 * MB, 100 * MB, p)).toBe(100);
  });

  it('bound: a pair credits each end at most its allowance, however much both ends claim', () => {
    // R = 0 and P = 1 hold 10 % each of the weight; they claim 10^12 cells.
    const w = [10 * MB, 10 * MB, 80 * MB];
    const r = applyPairRule(pairs([[0, 1, 1e12]]), table(w), P);
    const a = pairAllowance(10 * MB, 10 * MB, 100 * MB, P);
    expect(r.cells[0]).toBe(Math.floor(a));
    expect(r.cells[1]).toBe(Math.floor(a));
    expect(r.peerCappedCells[0]).toBeCloseTo(1e12 - a, 0);
  });

  it('property: over any run of epochs a pair credits R at most Σ allowances, owed or not', () => {
    fc.assert(fc.property(fc.array(fc.nat({ max: 2_000_000 }), { minLength: 1, maxLength: 30 }), (claims) => {
      const w = [5 * MB, 5 * MB, 90 * MB];
      const a = pairAllowance(5 * MB, 5 * MB, 100 * MB, P);
      const owed = owedFor(1);
      let total = 0;
      for (const c of claims) total += applyPairRule(pairs([[0, 1, c]]), table(w), P, owed).cells[0];
      return total <= claims.length * a + 1e-6;
    }));
  });

  it('owes an honest burst and pays it out of later unused allowance, conserving cells', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const a = pairAllowance(10 * MB, 10 * MB, 100 * MB, P);
    const owed = owedFor(1);
    const burst = Math.floor(3 * a);
    const e1 = applyPairRule(pairs([[0, 1, burst]]), table(w), P, owed);
    expect(e1.weightCells[0]).toBe(Math.floor(a));
    expect(e1.cells[0]).toBe(Math.floor(a));
    expect(e1.owedCells[0]).toBeCloseTo(burst - a, 6);
    // Two quiet epochs: the pair carries nothing and pays what it owes, at most its allowance each.
    const e2 = applyPairRule(pairs([[0, 1, 0]]), table(w), P, owed);
    const e3 = applyPairRule(pairs([[0, 1, 0]]), table(w), P, owed);
    expect(e2.paidCells[0]).toBeCloseTo(a, 6);
    expect(e3.paidCells[0]).toBeCloseTo(burst - 2 * a, 6);
    expect(owed.owedA[0]).toBeCloseTo(0, 6);
    // By default late payment is weight too.
    expect(e2.cells[0]).toBe(Math.floor(a));
    expect(e2.weightCells[0]).toBe(Math.floor(a));
    // With paidIsWeight false it earns coins but no weight.
    const o2 = owedFor(1);
    const q = { ...P, paidIsWeight: false };
    applyPairRule(pairs([[0, 1, burst]]), table(w), q, o2);
    const f2 = applyPairRule(pairs([[0, 1, 0]]), table(w), q, o2);
    expect(f2.cells[0]).toBe(Math.floor(a));
    expect(f2.weightCells[0]).toBe(0);
  });

  it('a new relay, or a pair with a peer absent from the previous consensus, owes nothing (no banked start-up)', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const owed = owedFor(1);
    const p = { ...P, newRelayEpochs: 24, newRelayBandwidth: 1e9 };
    applyPairRule(pairs([[0, 1, 1e9]]), table(w, { history: Float64Array.from([3, 100, 100]) }), p, owed);
    expect(owed.owedA[0]).toBe(0);
    expect(owed.owedB[0]).toBeGreaterThan(0);
    const o2 = owedFor(1);
    applyPairRule(pairs([[0, 1, 1e9]]), table([0, 10 * MB, 80 * MB]), P, o2);
    expect(o2.owedA[0]).toBe(0);
    expect(o2.owedB[0]).toBe(0);
  });

  it('owes at most H × max(allowance, one epoch of declared bandwidth)', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const p = { ...P, owedEpochs: 2 };
    const owed = owedFor(1);
    const t = table(w, { declaredBandwidth: Float64Array.from([1000, 1e12, 1e12]) });
    applyPairRule(pairs([[0, 1, 1e12]]), t, p, owed);
    const a = pairAllowance(10 * MB, 10 * MB, 100 * MB, p);
    expect(owed.owedA[0]).toBeCloseTo(2 * Math.max(a, cellsForBandwidth(1000, T)), 6);
    const off = { ...P, owedEpochs: 0 };
    const owed0 = owedFor(1);
    applyPairRule(pairs([[0, 1, 1e12]]), table(w), off, owed0);
    expect(owed0.owedA[0]).toBe(0);
  });

  it('same family or /16 earns nothing and drops what was owed', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const owed = owedFor(1);
    owed.owedA[0] = 500;
    const t = table(w, { subnet: Int32Array.from([7, 7, 8]) });
    const r = applyPairRule(pairs([[0, 1, 1000]]), t, P, owed);
    expect(r.excludedCells[0]).toBe(1000);
    expect(r.cells[0]).toBe(0);
    expect(owed.owedA[0]).toBe(0);
    const fam = applyPairRule(pairs([[0, 1, 1000]]), table(w, { family: [new Set([1]), undefined, undefined] }), P);
    expect(fam.cells[1]).toBe(0);
  });

  it('growth bounds this epoch\'s traffic (the future weight); new-relay and declared bound the total', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const a = pairAllowance(10 * MB, 10 * MB, 100 * MB, P);
    const tiny = { ...P, growthFactor: 1e-3, newRelayBandwidth: 0 };
    const g = applyPairRule(pairs([[0, 1, a]]), table(w), tiny);
    expect(g.cells[0]).toBe(cellsForBandwidth(1e-3 * 10 * MB, T));
    expect(LIM(g.limitedBy[0])).toBe('growth');
    const nr = applyPairRule(pairs([[0, 1, a]]), table(w, { history: Float64Array.from([0, 100, 100]) }), { ...P, newRelayEpochs: 24, newRelayBandwidth: 1000 });
    expect(nr.cells[0]).toBe(cellsForBandwidth(1000, T));
    expect(nr.cells[1]).toBe(Math.floor(a));
    const d = applyPairRule(pairs([[0, 1, a]]), table(w, { declaredBandwidth: Float64Array.from([1000, 1e12, 1e12]) }), P);
    expect(d.cells[0]).toBe(cellsForBandwidth(2000, T));
  });

  it('a coalition inventing traffic among itself gains at most (κ − 1) × its predicted internal traffic + σ per pair', () => {
    // Three coalition relays of 5 % each, two honest relays of 42.5 %; honest traffic follows the weights.
    const w = [5 * MB, 5 * MB, 5 * MB, 42.5 * MB, 42.5 * MB];
    const p = { ...P, pairSlackCells: 100 };
    const total = 100 * MB;
    const pred = (i: number, j: number) => (cellsForBandwidthExact(w[i]) * w[j]) / (total - w[i]);
    const list: [number, number, number][] = [];
    for (let i = 0; i < 5; i++) for (let j = i + 1; j < 5; j++) list.push([i, j, Math.round(pred(i, j))]);
    const honest = applyPairRule(pairs(list), table(w), p);
    const colluding = applyPairRule(pairs(list.map(([i, j, c]) => [i, j, i < 3 && j < 3 ? 1e12 : c])), table(w), p);
    const internal = pred(0, 1) + pred(0, 2);
    expect(colluding.cells[0] - honest.cells[0]).toBeLessThanOrEqual((p.pairFactor - 1) * internal + 2 * p.pairSlackCells + 2);
  });

  it('banked allowance (bankEpochs B): a quiet pair banks its unused allowance, at most B allowances, and a burst spends it', () => {
    const w = [10 * MB, 10 * MB, 80 * MB];
    const p = { ...P, bankEpochs: 3 };
    const a = pairAllowance(10 * MB, 10 * MB, 100 * MB, p);
    const owed = owedFor(1);
    // Five quiet epochs (one cell each): the bank grows by a − 1 a time, never beyond 3 allowances.
    for (let e = 0; e < 5; e++) applyPairRule(pairs([[0, 1, 1]]), table(w), p, owed);
    expect(owed.owedA[0]).toBeCloseTo(-3 * a, 6);
    // A burst of 5 allowances: credited a + 3a from the bank, the rest owed.
    const r = applyPairRule(pairs([[0, 1, Math.floor(5 * a)]]), table(w), p, owed);
    expect(r.cells[0]).toBe(Math.floor(4 * a));
    expect(owed.owedA[0]).toBeCloseTo(Math.floor(5 * a) - 4 * a, 6);
    // B = 0: nothing is ever banked.
    const o0 = owedFor(1);
    applyPairRule(pairs([[0, 1, 1]]), table(w), P, o0);
    expect(o0.owedA[0]).toBe(0);
  });

  it('banked allowance: a new relay or a pair with a weightless end banks nothing', () => {
    const p = { ...P, bankEpochs: 24, newRelayEpochs: 24, newRelayBandwidth: 0 };
    const owed = owedFor(1);
    applyPairRule(pairs([[0, 1, 1]]), table([10 * MB, 10 * MB, 80 * MB], { history: Float64Array.from([0, 100, 100]) }), p, owed);
    expect(owed.owedA[0]).toBe(0);
    expect(owed.owedB[0]).toBeLessThan(0);
    const o2 = owedFor(1);
    applyPairRule(pairs([[0, 1, 1]]), table([10 * MB, 0, 80 * MB]), { ...P, bankEpochs: 24 }, o2);
    expect(o2.owedA[0]).toBe(0);
  });

  it('property: with a bank, over any run of epochs a pair credits R at most Σ allowances + the bank it started with', () => {
    fc.assert(fc.property(fc.array(fc.nat({ max: 2_000_000 }), { minLength: 1, maxLength: 40 }), fc.nat({ max: 30 }), (claims, quiet) => {
      const w = [5 * MB, 5 * MB, 90 * MB];
      const p = { ...P, bankEpochs: 8 };
      const a = pairAllowance(5 * MB, 5 * MB, 100 * MB, p);
      const owed = owedFor(1);
      for (let e = 0; e < quiet; e++) applyPairRule(pairs([[0, 1, 0]]), table(w), p, owed);
      const bank = Math.max(0, -owed.owedA[0]);
      let total = 0;
      for (const c of claims) total += applyPairRule(pairs([[0, 1, c]]), table(w), p, owed).cells[0];
      return bank <= 8 * a + 1e-6 && total <= claims.length * a + bank + 1e-6;
    }));
  });

  it('refuses invalid parameters', () => {
    try {
      applyPairRule(pairs([]), table([]), { ...P, pairFactor: 0 });
      throw new Error('expected a throw');
    } catch (e) { expect(isBitcloudError(e, 'RECEIPT_BAD_PARAMS')).toBe(true); }
  });

  it('the dispersion rule on typed arrays matches its definition (κ·s(P)·X + σ)', () => {
    const w = [10 * MB, 1 * MB, 9 * MB, 80 * MB];
    const r = applyRule(pairs([[0, 1, 1e9], [0, 3, 1000]]), table(w), { ...DEFAULT_BOUNDS, epochSeconds: T, newRelayEpochs: 0, growthFactor: Infinity, peerCapSlackCells: 0 });
    expect(r.cells[0]).toBe(Math.floor(1000 / (1 - 0.015)));
  });
});

function cellsForBandwidthExact(b: number): number { return (b * T) / 514; }
function LIM(i: number): string { return ['none', 'growth', 'new-relay', 'declared'][i]; }
