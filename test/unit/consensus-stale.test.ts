// SPEC.md §6.8–6.9: `bitcloud consensus` calls a consensus stale only when its successor is overdue.
import { describe, expect, it } from 'vitest';
import { isStale } from '../../src/client/commands/consensus';

describe('consensus staleness (SPEC.md §6.8)', () => {
  const P = 15;
  const T = 1_000_000 * P * 1000; // a period start
  const c = { freshUntil: T + P * 1000, periodSeconds: P };
  it('is not stale while the next consensus may still be on its way (up to fresh_until + P)', () => {
    expect(isStale(c, T + P * 500)).toBe(false);
    expect(isStale(c, T + P * 1000 + 1)).toBe(false); // the period boundary: the next one is computed at T + 1.5P
    expect(isStale(c, T + P * 1500)).toBe(false);
    expect(isStale(c, T + 2 * P * 1000)).toBe(false);
  });
  it('is stale once the next one is overdue', () => {
    expect(isStale(c, T + 2 * P * 1000 + 1)).toBe(true);
  });
});
