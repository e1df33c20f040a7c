// SPEC.md §6.10: a relay mirror polls the authorities only when something new can be there.
import { describe, expect, it } from 'vitest';
import { authorityFetchOrder, ConsensusMirror } from '../../relay/mirror';
import type { AuthorityInfo } from '../../src/dir/authorities';
import type { VerifiedConsensus } from '../../src/dir/types';
import { silentLogger } from '../../src/ops/log';

const auths = [{ url: 'http://a' }, { url: 'http://b' }] as unknown as AuthorityInfo[];

function mirrorHolding(c: Partial<VerifiedConsensus> | null): ConsensusMirror {
  const m = new ConsensusMirror(auths, '/nonexistent', silentLogger, 2000);
  if (c) Object.defineProperty(m, 'current', { get: () => c });
  return m;
}

describe('consensus mirror poll schedule', () => {
  it('polls every interval while it holds no consensus', () => {
    expect(mirrorHolding(null).nextPollDelay(0)).toBe(2000);
  });

  it('polls every interval while signatures may still be added', () => {
    expect(mirrorHolding({ signers: ['a'], freshUntil: 60_000 }).nextPollDelay(0)).toBe(2000);
  });

  it('waits for fresh-until once the consensus is complete, spread by at most one interval', () => {
    const m = mirrorHolding({ signers: ['a', 'b'], freshUntil: 60_000 });
    for (let i = 0; i < 50; i++) {
      const d = m.nextPollDelay(0);
      expect(d).toBeGreaterThanOrEqual(60_000);
      expect(d).toBeLessThan(62_000);
    }
  });

  it('past fresh-until, polls every interval until the next one arrives', () => {
    const m = mirrorHolding({ signers: ['a', 'b'], freshUntil: 60_000 });
    expect(m.nextPollDelay(90_000)).toBe(2000);
  });
});

describe('consensus mirror fetch order', () => {
  it('puts each authority first about equally often, whatever Math.random does', () => {
    const three = [{ url: 'http://a' }, { url: 'http://b' }, { url: 'http://c' }] as unknown as AuthorityInfo[];
    const real = Math.random;
    Math.random = () => 0.25; // the order must come from the CSPRNG, not from Math.random
    try {
      const first = new Map<string, number>();
      for (let i = 0; i < 300; i++) {
        const o = authorityFetchOrder(three);
        expect([...o].sort()).toEqual(['http://a', 'http://b', 'http://c']);
        first.set(o[0], (first.get(o[0]) ?? 0) + 1);
      }
      // 100 expected each (standard deviation 8.2); below 50 is more than 6 of them off.
      for (const u of ['http://a', 'http://b', 'http://c']) expect(first.get(u) ?? 0).toBeGreaterThan(50);
    } finally {
      Math.random = real;
    }
  });
});
