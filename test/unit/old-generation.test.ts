// SPEC.md §11.6: relays, storage nodes and the client give V8's old generation a fixed growing
// factor unless the operator chose how it grows.
import { describe, it, expect } from 'vitest';
import { keepOldGenerationHeadroom, operatorSetOldGeneration, OLD_GEN_GROWING_PERCENT } from '../../src/ops/old-gen';

describe('old generation headroom', () => {
  it('an operator flag on the command line or in NODE_OPTIONS wins', () => {
    expect(operatorSetOldGeneration(['--heap-growing-percent=50'], '')).toBe(true);
    expect(operatorSetOldGeneration([], '--trace-gc --initial_old_space_size=256')).toBe(true);
    expect(operatorSetOldGeneration(['--initial-heap-size=128'], '')).toBe(true);
    expect(operatorSetOldGeneration(['--predictable-gc-schedule'], '')).toBe(true);
    expect(keepOldGenerationHeadroom(['--heap-growing-percent=50'], '')).toBe(false);
  });

  it('a maximum heap size alone is not a growth choice: the factor still applies under it', () => {
    expect(operatorSetOldGeneration(['--max-old-space-size=512'], '--max-semi-space-size=4')).toBe(false);
  });

  it('otherwise the flag is applied, at the top of V8\'s own range of factors (at most 4)', () => {
    expect(OLD_GEN_GROWING_PERCENT).toBeGreaterThan(0);
    expect(1 + OLD_GEN_GROWING_PERCENT / 100).toBeLessThanOrEqual(4);
    expect(keepOldGenerationHeadroom([], '')).toBe(true);
  });
});
