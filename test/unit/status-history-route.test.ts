// SPEC.md §6.10: GET /bitcloud/status/history is unauthenticated and its answer holds the figures
// of up to 64 relays in each of up to 720 samples, so the authority serialises it once per change of
// the history and hands the same bytes to every request, instead of once per request.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StatusHistory } from '../../directory/status-history';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => {
  vi.restoreAllMocks();
  fx.cleanup();
});

describe('GET /bitcloud/status/history (SPEC.md §6.10)', () => {
  it('is serialised once per change of the history, not once per request', async () => {
    const history = new StatusHistory(fx.dir).load();
    const made = fx.makeAuthority({}, { history });
    const url = `${(await listenAuthority(made)).url}/bitcloud/status/history`;
    history.onConsensus(fx.consensus.info);
    await history.flush();

    // Count the serialisations of the history itself (the object toJSON hands out).
    const stringify = JSON.stringify.bind(JSON);
    let serialised = 0;
    vi.spyOn(JSON, 'stringify').mockImplementation(((v: unknown, ...rest: unknown[]) => {
      if (v !== null && typeof v === 'object' && 'samples' in v && 'names' in v) serialised++;
      return (stringify as (...a: unknown[]) => string)(v, ...rest);
    }) as typeof JSON.stringify);

    const bodies: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      bodies.push(await res.text());
    }
    expect(new Set(bodies).size).toBe(1);
    expect(JSON.parse(bodies[0]).samples.map((s: { t: number }) => s.t)).toEqual([fx.consensus.info.validAfter]);
    expect(serialised).toBeLessThanOrEqual(1);

    // A change is served at once: a new block is in the next answer.
    history.onBlock({ height: 0, epoch: 3, minted: 7n }, 1234);
    await history.flush();
    const after = await (await fetch(url)).json() as { blocks: { height: number; minted: number }[] };
    expect(after.blocks).toEqual([{ t: 1234, height: 0, epoch: 3, minted: 7 }]);
  });
});
