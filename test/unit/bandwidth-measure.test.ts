import { describe, it, expect } from 'vitest';
import {
  DEFAULT_BOUNDS, LOCAL_NETWORK_BOUNDS, cellsForBandwidth, measure, pairExcluded, peerCapCells, peerCapContext,
  provenCells, slash16, type BoundsParams, type PairCounts, type RelayFacts,
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

  it('caps the credit one peer can give in proportion to that peer\'s weight in the previous consensus', () => {
    const params: BoundsParams = { ...DEFAULT_BOUNDS, epochSeconds: T, newRelayEpochs: 0, peerCapSlackCells: 0 };
    // Previous consensus: A 10 MB/s, B 1 MB/s, C 9 MB/s, D 80 MB/s (total 100).
    const prev = new Map([[A, 10 * MB], [B, 1 * MB], [C, 9 * MB], [D, 80 * MB]]);
    const ctx = peerCapContext(prev, params);
    const baseA = cellsForBandwidth(10 * MB, T);
    // B holds 1% of the weight: it can vouch for at most 1.5 × 1% of A's base.
    expect(peerCapCells(ctx, B, A)).toBe(Math.floor(1.5 * 0.01 * baseA));
    const huge = 10 * baseA;
    const m = measure({ receipts: [pc(A, B, huge, 0), pc(A, D, 1000, 1000)], relays: relays([[A, {}], [B, {}], [C, {}], [D, {}]]), previousWeights: prev, params });
    expect(m.get(A)!.cells).toBe(peerCapCells(ctx, B, A) + 2000);
    expect(m.get(A)!.peerCappedCells).toBe(huge - peerCapCells(ctx, B, A));
    // A relay absent from the previous consensus can vouch for the slack only.
    const withSlack = { ...params, peerCapSlackCells: 2000 };
    expect(peerCapCells(peerCapContext(prev, withSlack), E, A)).toBe(2000);
    // A receiver with no previous weight is measured against the new-relay bandwidth.
    expect(peerCapCells(ctx, D, E)).toBe(Math.floor(1.5 * 0.8 * cellsForBandwidth(params.newRelayBandwidth, T)));
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

  it('two colluding relays that invent traffic gain at most the peer caps', () => {
    const params: BoundsParams = { ...DEFAULT_BOUNDS, epochSeconds: T };
    // X and Y each held 1% of the previous consensus and invent 10^12 cells between them.
    const prev = new Map([[A, 49 * MB], [B, 49 * MB], [C, 1 * MB], [D, 1 * MB]]);
    const r = relays([[A, {}], [B, {}], [C, { declaredBandwidth: 1e12 }], [D, { declaredBandwidth: 1e12 }]]);
    const m = measure({ receipts: [pc(C, D, 1e12, 1e12)], relays: r, previousWeights: prev, params });
    const ctx = peerCapContext(prev, params);
    expect(m.get(C)!.cells).toBe(peerCapCells(ctx, D, C));
    expect(m.get(C)!.cells).toBeLessThanOrEqual(1.5 * 0.01 * cellsForBandwidth(1 * MB, T) + params.peerCapSlackCells);
  });

  it('refuses invalid parameters and counts', () => {
    const bad = () => measure({ receipts: [], relays: new Map(), previousWeights: new Map(), params: { ...off, epochSeconds: 0 } });
    expect(() => bad()).toThrow();
    try { bad(); } catch (e) { expect(isBitcloudError(e, 'RECEIPT_BAD_PARAMS')).toBe(true); }
    try {
      measure({ receipts: [pc(A, B, -5, 0)], relays: relays([[A, {}], [B, {}]]), previousWeights: new Map(), params: off });
      throw new Error('expected a throw');
    } catch (e) { expect(isBitcloudError(e, 'RECEIPT_MALFORMED')).toBe(true); }
  });
});
