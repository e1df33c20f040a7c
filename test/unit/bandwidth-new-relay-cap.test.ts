// SPEC §8.5 bound 5a: at most M new relays per IPv4 /16 and per declared family earn in an epoch.
import { describe, it, expect } from 'vitest';
import { DEFAULT_PAIR_RULE, applyPairRule, applyRule, newRelayEarners, type BoundsParams, type RelayTable } from '../../src/bandwidth/rule';

function table(history: number[], subnet: number[], family?: (Set<number> | undefined)[]): RelayTable {
  const n = history.length;
  return {
    n, history: Float64Array.from(history), subnet: Int32Array.from(subnet),
    previousWeights: new Float64Array(n), declaredBandwidth: new Float64Array(n).fill(1e9), family,
  };
}

describe('per-/16 and per-family cap on new relays', () => {
  it('lets at most M new relays of one /16 earn: longest history first, then lowest fingerprint', () => {
    // Relays 0..5 in /16 #7; relay 6 elsewhere; relay 5 is established (history 30 ≥ 24).
    const t = table([0, 3, 0, 1, 0, 30, 0], [7, 7, 7, 7, 7, 7, 9]);
    expect([...newRelayEarners(t, 24, 2)]).toEqual([0, 1, 0, 1, 0, 1, 1]);
    expect([...newRelayEarners(t, 24, 3)]).toEqual([1, 1, 0, 1, 0, 1, 1]);
    // 0 = no cap; newRelayEpochs 0 = no new relays at all.
    expect([...newRelayEarners(t, 24, 0)]).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect([...newRelayEarners(t, 0, 2)]).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });

  it('caps a declared family across /16s, by the family each relay declares itself', () => {
    const family = [new Set([1, 2, 3]), new Set([0, 2, 3]), new Set([0, 1, 3]), new Set([0, 1, 2])];
    const t = table([0, 0, 0, 0], [1, 2, 3, 4], family);
    // One family of four declared both ways: with M = 2, only relays 0 and 1 earn.
    expect([...newRelayEarners(t, 24, 2)]).toEqual([1, 1, 0, 0]);
  });

  it('a relay that names others in its family cannot take their places: only a relay\'s own declaration counts', () => {
    // Relays 0 and 1: new, credited, lowest fingerprints, each in a /16 of its own, both declaring
    // relays 2 and 3 (new, credited, other /16s) as family; 2 and 3 declare nothing.
    const family = [new Set([1, 2, 3]), new Set([0, 2, 3]), undefined, undefined];
    const t = table([0, 0, 0, 0, 100], [1, 2, 3, 4, 5], [...family, undefined]);
    t.previousWeights[4] = 1e6;
    const p: BoundsParams = {
      epochSeconds: 3600, peerCapFactor: Infinity, peerCapSlackCells: 0, growthFactor: Infinity,
      newRelayEpochs: 24, newRelayBandwidth: 250_000, sameSubnetRule: true, newRelaysPerGroup: 2,
    };
    const pairs = { a: Int32Array.from([0, 1, 2, 3]), b: Int32Array.from([4, 4, 4, 4]), cells: Float64Array.from([1000, 1000, 1000, 1000]) };
    expect([...applyRule(pairs, t, p).cells].slice(0, 4)).toEqual([1000, 1000, 1000, 1000]);
    expect([...applyPairRule(pairs, t, { ...DEFAULT_PAIR_RULE, epochSeconds: 3600, pairFactor: Infinity, newRelaysPerGroup: 2 }).cells].slice(0, 4))
      .toEqual([1000, 1000, 1000, 1000]);
    // A relay that declares earning new relays is still capped by its own declaration.
    expect([...newRelayEarners(table([0, 0, 0], [1, 2, 3], [undefined, undefined, new Set([0, 1])]), 24, 2)]).toEqual([1, 1, 0]);
  });

  it('an unknown /16 (−1) is not a group', () => {
    const t = table([0, 0, 0], [-1, -1, -1]);
    expect([...newRelayEarners(t, 24, 1)]).toEqual([1, 1, 1]);
  });

  it('applyRule credits nothing to the new relays beyond the cap', () => {
    // Relays 0..3 new in /16 #1, relay 4 established in /16 #2; each new relay exchanged 1000 cells with relay 4.
    const t = table([0, 0, 0, 0, 100], [1, 1, 1, 1, 2]);
    t.previousWeights[4] = 1e6;
    const p: BoundsParams = {
      epochSeconds: 3600, peerCapFactor: Infinity, peerCapSlackCells: 0, growthFactor: Infinity,
      newRelayEpochs: 24, newRelayBandwidth: 250_000, sameSubnetRule: true, newRelaysPerGroup: 2,
    };
    const pairs = { a: Int32Array.from([0, 1, 2, 3]), b: Int32Array.from([4, 4, 4, 4]), cells: Float64Array.from([1000, 1000, 1000, 1000]) };
    const r = applyRule(pairs, t, p);
    expect([...r.cells].slice(0, 4)).toEqual([1000, 1000, 0, 0]);
    expect(r.limitedBy[2]).toBe(2);
    expect([...applyRule(pairs, t, { ...p, newRelaysPerGroup: 0 }).cells].slice(0, 4)).toEqual([1000, 1000, 1000, 1000]);
  });

  it('idle new relays take no place: listed identities that earn nothing cannot keep an earning new relay of their /16 at 0', () => {
    // Relays 0..3: new, in /16 #1, lowest fingerprints, no receipts at all (kept only to fill the
    // places). Relay 4: new, same /16, carried 1000 cells with the established relay 5.
    const t = table([0, 0, 0, 0, 0, 100], [1, 1, 1, 1, 1, 2]);
    t.previousWeights[5] = 1e6;
    const pairs = { a: Int32Array.from([4]), b: Int32Array.from([5]), cells: Float64Array.from([1000]) };
    const p: BoundsParams = {
      epochSeconds: 3600, peerCapFactor: Infinity, peerCapSlackCells: 0, growthFactor: Infinity,
      newRelayEpochs: 24, newRelayBandwidth: 250_000, sameSubnetRule: true, newRelaysPerGroup: 4,
    };
    expect(applyRule(pairs, t, p).cells[4]).toBe(1000);
    const pr = applyPairRule(pairs, t, { ...DEFAULT_PAIR_RULE, epochSeconds: 3600, pairFactor: Infinity });
    expect(pr.cells[4]).toBe(1000);
    expect(pr.weightCells[4]).toBe(1000);
    expect([...newRelayEarners(t, 24, 4, [0, 0, 0, 0, 1000, 1000])]).toEqual([1, 1, 1, 1, 1, 1]);
    // Four new relays of the /16 that are credited still fill it (the bound itself is unchanged).
    const busy = { a: Int32Array.from([0, 1, 2, 3, 4]), b: Int32Array.from([5, 5, 5, 5, 5]), cells: Float64Array.from([1000, 1000, 1000, 1000, 1000]) };
    expect([...applyRule(busy, t, p).cells].slice(0, 5)).toEqual([1000, 1000, 1000, 1000, 0]);
  });
});
