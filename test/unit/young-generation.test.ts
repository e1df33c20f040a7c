// SPEC.md §11.6: forwarding daemons keep V8's young generation at its starting size unless the
// operator chose a size.
import { describe, it, expect } from 'vitest';
import v8 from 'node:v8';
import { keepYoungGenerationSmall, operatorSetYoungGeneration } from '../../src/ops/young-gen';

describe('young generation sizing', () => {
  it('an operator flag on the command line or in NODE_OPTIONS wins', () => {
    expect(operatorSetYoungGeneration(['--max-semi-space-size=8'], '')).toBe(true);
    expect(operatorSetYoungGeneration([], '--trace-gc --min_semi_space_size=2')).toBe(true);
    expect(operatorSetYoungGeneration(['--semi-space-growth-factor=4'], '')).toBe(true);
    expect(operatorSetYoungGeneration(['--enable-source-maps'], '--max-old-space-size=512')).toBe(false);
    expect(keepYoungGenerationSmall(['--max-semi-space-size=8'], '')).toBe(false);
  });

  it('otherwise the young generation stops growing under allocation pressure', () => {
    expect(keepYoungGenerationSmall([], '')).toBe(true);
    const start = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
    const keep: Buffer[] = [];
    for (let i = 0; i < 2_000_000; i++) {
      const b = Buffer.allocUnsafe(32);
      if (i % 1000 === 0) { keep.push(b); if (keep.length > 1000) keep.shift(); }
    }
    const after = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
    expect(after).toBeLessThanOrEqual(Math.max(start, 2 * 1024 * 1024));
  });
});
