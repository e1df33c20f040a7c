// SPEC.md §9.16.6: the gateway lets at most GATEWAY_MAX_ACTIVE (32) requests fetch and decrypt at
// once; more wait first in, first out, at most GATEWAY_MAX_QUEUED (1024), and one beyond that is
// answered 503 with Retry-After. A queued request leaves the queue when its client goes away, or
// after the request timeout (504). A request holding a place whose client goes away gives it up at
// once, without waiting for its storage read to end. Here the fetches are stalled by hand: a request holding a place
// is one whose manifest fetch has started.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import { capabilityHost } from '../../src/client/gateway/host';
import { Gateway, GATEWAY_MAX_ACTIVE, GATEWAY_MAX_QUEUED } from '../../src/client/gateway/gateway';
import { createRegistry, type Registry } from '../../src/ops/metrics';
import type { Duplex } from 'node:stream';

// The bounds SPEC.md §9.16.6 states, written out so the checks below do not rest on the module's constants.
const ACTIVE = 32;
const QUEUED = 1024;
const host = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: Buffer.alloc(32, 9) });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Client { s: Duplex; text: () => string }

let gw: Gateway | null = null;
const streams: Duplex[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.destroy();
  await gw?.close();
  gw = null;
});

/** A gateway whose manifest fetches never end until `finish` ends the oldest: each fails MANIFEST_NOT_FOUND (404). */
function stalled(o: { requestTimeoutMs?: number; registry?: Registry } = {}) {
  const g = new Gateway({ nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')), ...o });
  gw = g;
  const fetches: Array<() => void> = [];
  vi.spyOn(g.reader, 'manifest').mockImplementation(() => new Promise((_resolve, reject) => {
    fetches.push(() => reject(err('MANIFEST_NOT_FOUND', 'stalled fetch ended')));
  }));
  const request = (): Client => {
    const s = g.connect(host);
    streams.push(s);
    let text = '';
    s.on('data', (b: Buffer) => { text += b.toString('latin1'); });
    s.write(`GET / HTTP/1.1\r\nHost: x\r\n\r\n`);
    return { s, text: () => text };
  };
  return { g, fetches, request, finish: () => fetches.shift()!(), finishNewest: () => fetches.pop()!() };
}

async function counter(reg: Registry, name: string): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((a, v) => a + v.value, 0);
}

describe('the gateway\'s bound on requests in progress (SPEC.md §9.16.6)', () => {
  it('the bounds are 32 in progress and 1024 waiting', () => {
    expect(GATEWAY_MAX_ACTIVE).toBe(ACTIVE);
    expect(GATEWAY_MAX_QUEUED).toBe(QUEUED);
  });

  it('with the 32 places held by stalled fetches, a 33rd waits without fetching, and starts when one ends', async () => {
    const registry = createRegistry('client');
    const { fetches, request, finish } = stalled({ registry });
    const held: Client[] = [];
    for (let i = 0; i < ACTIVE; i++) held.push(request());
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    const next = request();
    await sleep(200);
    expect(fetches.length).toBe(ACTIVE); // queued: no fetch started
    expect(next.text()).toBe('');
    expect(await counter(registry, 'bitcloud_gateway_queued_total')).toBe(1);
    finish(); // the first request ends (404), and its place goes to the one waiting
    await expect.poll(() => held[0].text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 404 /);
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    expect(next.text()).toBe(''); // its fetch is the one now stalled
    for (let i = 0; i < ACTIVE; i++) finish();
    await expect.poll(() => next.text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 404 /);
  });

  it('the queue holds 1024; one more is answered 503 with Retry-After; a client gone while queued frees its slot and is never started', async () => {
    const registry = createRegistry('client');
    const { g, fetches, request, finish, finishNewest } = stalled({ registry });
    for (let i = 0; i < ACTIVE; i++) request();
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    const queued: Client[] = [];
    for (let i = 0; i < QUEUED; i++) queued.push(request());
    await expect.poll(() => counter(registry, 'bitcloud_gateway_queued_total'), { timeout: 10_000 }).toBe(QUEUED);

    const over = request();
    await expect.poll(() => over.text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 503 /);
    expect(over.text()).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(over.text()).toMatch(/\r\ncontent-type: text\/plain/i);
    expect(await counter(registry, 'bitcloud_gateway_refused_total')).toBe(1);

    // The first queued client goes away: its slot is free at once, so one more is queued, not refused.
    queued[0].s.destroy();
    const waiting = (g as unknown as { queue: Set<unknown> }).queue;
    await vi.waitFor(() => expect(waiting.size).toBe(QUEUED - 1), { timeout: 5000 }); // it left the queue
    const late = request();
    await expect.poll(() => counter(registry, 'bitcloud_gateway_queued_total'), { timeout: 5000 }).toBe(QUEUED + 1);
    await sleep(100);
    expect(late.text()).toBe('');
    expect(await counter(registry, 'bitcloud_gateway_refused_total')).toBe(1);

    // A place frees: it goes to the second queued request (the first left), not to the one gone.
    const manifest = gw!.reader.manifest as unknown as { mock: { calls: unknown[] } };
    const before = manifest.mock.calls.length;
    finish();
    await expect.poll(() => manifest.mock.calls.length, { timeout: 5000 }).toBe(before + 1);
    finishNewest(); // the fetch just started ends: its answer shows whose it was
    await expect.poll(() => queued[1].text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 404 /);
    expect(queued[2].text()).toBe('');
  }, 30_000);

  it('a client of a request holding a place going away frees the place at once: a queued 33rd starts before the stalled fetch ends', async () => {
    const registry = createRegistry('client');
    const { fetches, request, finish, finishNewest } = stalled({ registry });
    const held: Client[] = [];
    for (let i = 0; i < ACTIVE; i++) held.push(request());
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    const next = request();
    await expect.poll(() => counter(registry, 'bitcloud_gateway_queued_total'), { timeout: 5000 }).toBe(1);
    await sleep(100);
    expect(fetches.length).toBe(ACTIVE); // queued: no fetch started

    held[0].s.destroy(); // its fetch stays stalled; its place goes to the one waiting, at once
    await expect.poll(() => fetches.length, { timeout: 2000 }).toBe(ACTIVE + 1);
    finishNewest(); // the 33rd's own fetch ends: it is answered
    await expect.poll(() => next.text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 404 /);

    // The gone request's fetch ends late: its result is dropped, and it frees no second place.
    finish();
    await sleep(100);
    const before = await counter(registry, 'bitcloud_gateway_requests_total');
    expect(before).toBe(1); // only the 33rd was answered
    // 31 places held, one free: one new request starts at once, the one after waits.
    request();
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    request();
    await expect.poll(() => counter(registry, 'bitcloud_gateway_queued_total'), { timeout: 5000 }).toBe(2);
    await sleep(100);
    expect(fetches.length).toBe(ACTIVE);
  });

  it('a request that waits its whole request timeout in the queue leaves it and is answered 504', async () => {
    const registry = createRegistry('client');
    const { fetches, request, finish } = stalled({ registry, requestTimeoutMs: 300 });
    for (let i = 0; i < ACTIVE; i++) request();
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
    const slow = request();
    await expect.poll(() => slow.text(), { timeout: 5000 }).toMatch(/^HTTP\/1\.1 504 /);
    expect(slow.text()).toContain('GATEWAY_QUEUE_TIMEOUT');
    // It left the queue: the next place freed goes to no one, and a new request starts at once.
    finish();
    await sleep(100);
    expect(fetches.length).toBe(ACTIVE - 1);
    request();
    await expect.poll(() => fetches.length, { timeout: 5000 }).toBe(ACTIVE);
  });
});
