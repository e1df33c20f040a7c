// SPEC.md §6.4.1, §6.10, §9.21.8: IDENTITY_POW_BUSY (the authority's queue of identity proofs
// waiting to be checked is full) judges no descriptor. It is answered 503 with Retry-After and no
// nack, so that anyone flooding the queue cannot get honest relays' uploads a signed, final-looking
// refusal, and a mirror passing an upload on passes a repeat on again instead of answering it
// with the first (busy) answer.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { UploadForwarder } from '../../relay/upload-forward';
import { buildDescriptor } from '../../src/dir/descriptor';
import { PATHS, httpRequest } from '../../src/dir/fetch';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { err } from '../../src/errors';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
const servers: http.Server[] = [];
beforeEach(() => { fx = makeFixture(); });
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  fx.cleanup();
});

async function listen(s: http.Server): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** An authority whose identity proof queue is full: every descriptor upload meets IDENTITY_POW_BUSY. */
async function busyAuthority(): Promise<{ url: string; checks: () => number }> {
  const made = fx.makeAuthority();
  const spy = vi.spyOn(made.authority, 'acceptDescriptorWithProof')
    .mockImplementation(() => Promise.reject(err('IDENTITY_POW_BUSY', 'too many identity proofs waiting to be checked; retry later')));
  const { url } = await listenAuthority(made);
  return { url, checks: () => spy.mock.calls.length };
}

const hiddenDescriptor = () => buildDescriptor({
  identity: ed25519Generate(), onionKey: x25519Generate().publicKey, nickname: 'n', address: '0.0.0.0',
  orPort: 0, declaredBandwidth: 1000, roles: ['storage', 'hidden'], version: 'bitcloud-test', published: Date.now(),
});

describe('an authority whose identity proof queue is full (SPEC.md §6.4.1)', () => {
  it('answers IDENTITY_POW_BUSY 503 with Retry-After: 1 and no nack', async () => {
    const a = await busyAuthority();
    const r = await httpRequest(a.url + PATHS.descriptor, { method: 'POST', body: hiddenDescriptor(), maxBytes: 65536, timeoutMs: 10_000 });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    const j = JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
    expect(j.code).toBe('IDENTITY_POW_BUSY');
    expect(j).not.toHaveProperty('nack');
  });

  it('is not remembered as final by a mirror: a repeat of the upload is passed on to that authority again (SPEC.md §9.21.8)', async () => {
    const a = await busyAuthority();
    const fwd = new UploadForwarder(() => [{ name: 'a', fingerprint: 'ab'.repeat(32), url: a.url }] as never);
    const mirror = await listen(http.createServer((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); }));
    const d = hiddenDescriptor();
    const post = () => httpRequest(mirror + PATHS.descriptor, { method: 'POST', body: d, maxBytes: 65536, timeoutMs: 10_000 });
    const first = await post();
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body.toString('utf8'))).toEqual({ forwarded: [{ authority: 'ab'.repeat(32), status: 503, code: 'IDENTITY_POW_BUSY' }] });
    expect(a.checks()).toBe(1);
    const repeat = await post();
    expect(repeat.status).toBe(200);
    expect(a.checks()).toBe(2);
  });
});
