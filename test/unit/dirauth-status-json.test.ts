// SPEC.md §6.10: GET /bitcloud/status is unauthenticated and walks every relay's measurement and
// capacity probes, so the authority builds it as it builds the status page: at most once a second
// (and at once when a new consensus is published), serving the built answer in between.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type http from 'node:http';
import { createAuthorityServer } from '../../directory/http';
import { STATUS_PAGE_CACHE_MS } from '../../directory/status-page';
import { PATHS } from '../../src/dir/fetch';
import { makeFixture, silentLog, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
let server: http.Server | null = null;
beforeEach(() => { fx = makeFixture(); });
afterEach(async () => {
  vi.restoreAllMocks();
  if (server) { const s = server; await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }); }
  server = null;
  fx.cleanup();
});

describe('GET /bitcloud/status (SPEC.md §6.10)', () => {
  it('is built at most once a second, not once per request', async () => {
    const made = fx.makeAuthority();
    const builds = vi.spyOn(made.authority, 'statusSnapshot');
    server = createAuthorityServer(made.authority, made.registry, made.metrics, silentLog);
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}${PATHS.status}`;

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
