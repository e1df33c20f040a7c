// SPEC.md §8.7.5: the client gives each page of the reward chain longer than a relay mirror's
// deadline for one fetch (so the mirror's 504 REWARD_FETCH_TIMEOUT reaches it, rather than the
// client giving up at the same moment) and less than the dir port's idle timeout (§6.10).
import { describe, expect, it } from 'vitest';
import { fetchRewardChain, type RewardSource } from '../../src/client/rewards';
import { REWARD_MIRROR_DEADLINE_MS } from '../../relay/reward-mirror';
import { HTTP_IDLE_TIMEOUT_MS } from '../../src/ops/http-body';

describe('reward chain page timeout (SPEC.md §8.7.5)', () => {
  it('by default a page waits longer than the mirror deadline and less than the idle timeout', async () => {
    const asked: (number | undefined)[] = [];
    const source: RewardSource = {
      label: 'mirror',
      get: (_pq, o) => {
        asked.push(o.timeoutMs);
        return Promise.resolve({ status: 504, headers: {}, body: Buffer.from('{"code":"REWARD_FETCH_TIMEOUT","reason":"x"}') });
      },
    };
    await expect(fetchRewardChain({ authorities: [], periodSeconds: 60, sources: [source] })).rejects.toThrow();
    expect(asked).toHaveLength(1);
    expect(asked[0]).toBeGreaterThan(REWARD_MIRROR_DEADLINE_MS);
    expect(asked[0]).toBeLessThan(HTTP_IDLE_TIMEOUT_MS);
  });
});
