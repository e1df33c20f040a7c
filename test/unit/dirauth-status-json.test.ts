// SPEC.md §6.10: GET /bitcloud/status is unauthenticated and walks every relay's measurement and
// capacity probes, so the authority builds it as it builds the status page: at most once a second
// (and at once when a new consensus is published), serving the built answer in between.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { STATUS_PAGE_CACHE_MS } from '../../directory/status-page';
import { PATHS } from '../../src/dir/fetch';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => {
  vi.restoreAllMocks();
  fx.cleanup();
});

describe('GET /bitcloud/status (SPEC.md §6.10)', () => {
  it('is built at most once a second, not once per request', async () => {
    const made = fx.makeAuthority();
    const builds = vi.spyOn(made.authority, 'statusSnapshot');
    const url = `${(await listenAuthority(made)).url}${PATHS.status}`;

    const bodies: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      bodies.push(await res.text());
    }
    expect(new Set(bodies).size).toBe(1);
    expect((JSON.parse(bodies[0]) as { identity: string }).identity).toBe(fx.signer.identity.toString('hex'));
    expect(builds).toHaveBeenCalledTimes(1);

    // A second later it is built again.
    await new Promise((r) => setTimeout(r, STATUS_PAGE_CACHE_MS + 50));
    expect((await fetch(url)).status).toBe(200);
    expect(builds).toHaveBeenCalledTimes(2);
  });
});
