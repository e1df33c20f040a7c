// SPEC.md §9.16.6: a client that stops taking a body (a page's fetch() whose body it never reads, a
// paused video) loses its stream once a body write has waited the send timeout, and its request
// gives up its place and its reads: 32 such clients must not hold the gateway for every other page.
// Storage is stood in for: the reader's manifest and range are replaced.
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import { capabilityHost } from '../../src/client/gateway/host';
import { Gateway } from '../../src/client/gateway/gateway';
import { createRegistry, type Registry } from '../../src/ops/metrics';
import type { Manifest } from '../../src/storage/manifest';

const host = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: Buffer.alloc(32, 9) });
const PIECE = 1024 * 1024;
const SIZE = 4 * PIECE;
// SPEC.md §9.16.6: the places of requests in progress.
const ACTIVE = 32;

let gw: Gateway | null = null;
const streams: Duplex[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.destroy();
  await gw?.close();
  gw = null;
});

async function counter(reg: Registry, name: string): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((a, v) => a + v.value, 0);
}

/** A gateway whose reader gives a SIZE-byte video; it is closed after the test. */
function gateway(o: { sendTimeoutMs: number; registry?: Registry }): Gateway {
  const g = new Gateway({ nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')), ...o });
  gw = g;
  const m = { version: 1, name: 'clip.webm', contentType: 'video/webm', contentClass: '', layout: { size: SIZE, chunkSize: PIECE, coding: { k: 1, n: 1 }, chunks: [] } } as unknown as Manifest;
  vi.spyOn(g.reader, 'manifest').mockResolvedValue(m);
  return g;
}

/** `g`'s storage reads give PIECE-byte pieces until their request is aborted; their signals, in order. */
function abortableReads(g: Gateway): AbortSignal[] {
  const signals: AbortSignal[] = [];
  vi.spyOn(g.reader, 'range').mockImplementation(async function* (_c, _m, start, end, signal) {
    signals.push(signal!);
    for (let at = start; at <= end && !signal?.aborted; at += PIECE) yield Buffer.alloc(Math.min(PIECE, end + 1 - at), 0x61);
  });
  return signals;
}

describe('the gateway\'s send timeout (SPEC.md §9.16.6)', () => {
  it('a client that takes no byte of a body for the send timeout loses its stream, its place and its reads', async () => {
    const registry = createRegistry('client');
    const g = gateway({ sendTimeoutMs: 50, registry });
    const signals = abortableReads(g);
    // Every place taken by a client that never reads (its stream is never read from).
    const stuck: Array<{ s: Duplex; closed: boolean }> = [];
    for (let i = 0; i < ACTIVE; i++) {
      const s = g.connect(host);
      streams.push(s);
      const c = { s, closed: false };
      s.on('close', () => { c.closed = true; });
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      stuck.push(c);
    }
    await expect.poll(() => signals.length, { timeout: 5000 }).toBe(ACTIVE);
    // One more request, from a client that reads: it gets a place and its whole answer.
    const s = g.connect(host);
    streams.push(s);
    let got = 0;
    let head = '';
    s.on('data', (b: Buffer) => { got += b.length; if (head.length < 64) head += b.toString('latin1', 0, 64); });
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => got > SIZE, { timeout: 5000 }).toBe(true);
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    // The stalled ones were reset and their reads cancelled.
    await expect.poll(() => stuck.every((c) => c.closed), { timeout: 5000 }).toBe(true);
    expect(signals.slice(0, ACTIVE).every((sig) => sig.aborted)).toBe(true);
    expect(await counter(registry, 'bitcloud_gateway_send_timeouts_total')).toBe(ACTIVE);
  });

  it('an answer pipelined behind one still being read from storage is not timed while it waits its turn', async () => {
    const g = gateway({ sendTimeoutMs: 20 });
    let go!: () => void;
    const later = new Promise<void>((r) => { go = r; });
    let calls = 0;
    vi.spyOn(g.reader, 'range').mockImplementation(async function* (_c, _m, start, end) {
      // The first answer's storage read is silent a while after its first piece (a slow storage
      // node, not a client that stops reading); the second's is read at once.
      const first = calls++ === 0;
      for (let at = start; at <= end; at += PIECE) {
        if (first && at > start) await later;
        yield Buffer.alloc(Math.min(PIECE, end + 1 - at), 0x61);
      }
    });
    const s = g.connect(host);
    streams.push(s);
    let text = '';
    let closed = false;
    s.on('data', (b: Buffer) => { text += b.toString('latin1'); });
    s.on('close', () => { closed = true; });
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => calls, { timeout: 5000 }).toBe(2);
    // Many send timeouts pass while the second answer waits behind the first.
    await new Promise((r) => setTimeout(r, 300));
    go();
    await expect.poll(() => (text.match(/HTTP\/1\.1 200 /g) ?? []).length === 2 && text.length > 2 * SIZE, { timeout: 5000 }).toBe(true);
    expect(closed).toBe(false);
  });

  it('a client that goes away with an answer pipelined behind another gives up both places and their reads', async () => {
    const g = gateway({ sendTimeoutMs: 20 });
    const signals = abortableReads(g);
    // Two requests on one stream whose client reads nothing, then goes away: the second answer
    // waits its turn behind the first (node:http holds it) when the stream closes.
    const s = g.connect(host);
    streams.push(s);
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => signals.length, { timeout: 5000 }).toBe(2);
    await new Promise((r) => setTimeout(r, 100)); // both answers wait for the stream to take a piece
    s.destroy();
    // Both requests are as ones whose client went away: their reads are cancelled and their places
    // freed (SPEC.md §9.16.6); the second waited for ever, holding its place.
    await expect.poll(() => signals.every((sig) => sig.aborted), { timeout: 2000 }).toBe(true);
    expect((g as unknown as { active: number }).active).toBe(0);
  });
});
