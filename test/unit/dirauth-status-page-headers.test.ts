// SPEC.md §6.10: the authority's status page is served with a Content-Security-Policy that lets
// only its own /static/ scripts run, and it and the JSON answers with X-Content-Type-Options:
// nosniff, so that a relay's string that ever reached them unescaped runs no script.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StatusHistory } from '../../directory/status-history';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => { fx.cleanup(); });

describe('authority status page headers (SPEC.md §6.10)', () => {
  it('serves GET / with a script-src self CSP and nosniff, and its JSON with nosniff', async () => {
    const history = new StatusHistory(fx.dir).load();
    const { url } = await listenAuthority(fx.makeAuthority({}, { history }));
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const csp = Object.fromEntries((page.headers.get('content-security-policy') ?? '').split(';')
      .map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map((d) => [d[0], d.slice(1)]));
    expect(csp['default-src']).toEqual(["'none'"]);
    expect(csp['script-src']).toEqual(["'self'"]);
    expect(csp['connect-src']).toEqual(["'self'"]);
    expect(csp['frame-ancestors']).toEqual(["'none'"]);
    expect(csp['base-uri']).toEqual(["'none'"]);
    await page.text();
    for (const p of ['/bitcloud/status', '/bitcloud/status/history', '/no/such/path']) {
      const res = await fetch(`${url}${p}`);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      await res.text();
    }
  });
});
