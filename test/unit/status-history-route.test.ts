// SPEC.md §6.10: GET /bitcloud/status/history is unauthenticated and its answer holds the figures
// of up to 64 relays in each of up to 720 samples, so the authority serialises it once per change of
// the history and hands the same bytes to every request, instead of once per request.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HISTORY_FILE, StatusHistory } from '../../directory/status-history';
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

describe('a saved status history with malformed records (SPEC.md §6.10)', () => {
  it('drops them as it is read, so GET / and the history keep answering', async () => {
    const good = { t: 5000, relays: 1, storage: 0, provenEpoch: 2, weights: { a: 1 }, proven: { a: 3 }, provenTotal: 3 };
    fs.writeFileSync(path.join(fx.dir, HISTORY_FILE), JSON.stringify({
      samples: [
        { ...good, t: 1e20 }, // past what a Date holds: toISOString() threw on every GET /
        { ...good, t: 1, weights: null }, // the plots read x.weights[fp]
        { ...good, t: 2, proven: 'x' },
        { ...good, t: 3, relays: '<b>' },
        { ...good, t: 4, proven: null }, // not an object: the record is dropped, as the others
        { t: 4500, relays: 1, storage: 0, provenEpoch: 2, weights: { a: 1 } }, // no proven at all
        { ...good, t: 4800, proven: { a: 3, b: 0, c: -2 } }, // lists relays without cells
        good,
      ],
      blocks: [{ t: 1, height: 0, epoch: 1, minted: 'x' }, { t: 1e20, height: 1, epoch: 1, minted: 1 }, { t: 7, height: 2, epoch: 2, minted: 9 }],
      names: { a: 'na' },
    }));
    const history = new StatusHistory(fx.dir).load();
    expect(history.toJSON()).toEqual({ samples: [{ ...good, t: 4800, provenTotal: 3 }, good], blocks: [{ t: 7, height: 2, epoch: 2, minted: 9 }], names: { a: 'na' } });
    const { url } = await listenAuthority(fx.makeAuthority({}, { history }));
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<td>1970-01-01T00:00:05.000Z</td><td>1</td><td>0</td><td>2</td><td>3</td>');
  });
});
