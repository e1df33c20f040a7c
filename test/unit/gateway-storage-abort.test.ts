// SPEC.md §9.16.6: a request holding a place whose client goes away cancels its storage read: no
// further share is asked for, the share request under way is abandoned (the storage stream left
// with nothing else pending is closed, so the node stops sending), nothing is logged at warn, and
// the place goes at once to the next request. Here the storage nodes are fakes speaking the
// storage protocol (SPEC.md §9.6) over in-memory streams: a GET for a root share whose id starts
// with 0x09 waits until the test answers it, any other GET is answered SHARE_NOT_FOUND.
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { capabilityHost } from '../../src/client/gateway/host';
import { duplexPair, Gateway } from '../../src/client/gateway/gateway';
import { FrameDecoder } from '../../src/storage/framing';
import { decodeRequest, encodeResponseFrame } from '../../src/storage/protocol';

const stalledId = Buffer.alloc(32, 9);
const stalledHost = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: stalledId });
/** The i-th of several files whose root share fetches stall. */
const stalledHostN = (i: number) => { const id = Buffer.alloc(32, 9); id.writeUInt16BE(i, 30); return capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: id }); };
const missingHost = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: Buffer.alloc(32, 10) });
const nodes = ['aa'.repeat(32), 'bb'.repeat(32)].map((fingerprint) => ({ fingerprint }) as never);

interface NodeStream { fp: string; closed: boolean; gets: string[]; answer: Map<string, () => void> }

let gw: Gateway | null = null;
const browsers: Duplex[] = [];
afterEach(async () => {
  for (const s of browsers.splice(0)) s.destroy();
  await gw?.close();
  gw = null;
});

function setup() {
  const streams: NodeStream[] = [];
  const released = new Set<string>();
  const logs: Array<{ level: number; msg: string }> = [];
  const open = async (node: { fingerprint: string }): Promise<Duplex> => {
    const [ours, theirs] = duplexPair();
    const st: NodeStream = { fp: node.fingerprint, closed: false, gets: [], answer: new Map() };
    streams.push(st);
    const dec = new FrameDecoder();
    theirs.on('close', () => { st.closed = true; });
    theirs.on('error', () => {});
    theirs.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) {
        const { reqId, req } = decodeRequest(f);
        if (req.type !== 'get') continue;
        st.gets.push(req.id.toString('hex'));
        const notFound = () => theirs.write(encodeResponseFrame(reqId, { type: 'error', code: 'SHARE_NOT_FOUND', message: 'not here' }));
        if (req.id[0] === 9 && !released.has(req.id.toString('hex'))) { st.answer.set(req.id.toString('hex'), notFound); continue; } // answered when the test says
        theirs.write(encodeResponseFrame(reqId, { type: 'error', code: 'SHARE_NOT_FOUND', message: 'not here' }));
      }
    });
    return ours;
  };
  const log = pino({ level: 'debug' }, { write: (s: string) => { logs.push(JSON.parse(s)); } });
  const g = new Gateway({ nodes: () => nodes, open, log });
  gw = g;
  const request = (host: string) => {
    const s = g.connect(host);
    browsers.push(s);
    let text = '';
    s.on('data', (b: Buffer) => { text += b.toString('latin1'); });
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    return { s, text: () => text };
  };
  const stalledGets = () => streams.reduce((n, st) => n + st.gets.filter((h) => h === stalledId.toString('hex')).length, 0);
  /** The stalled GETs for file `i` are answered SHARE_NOT_FOUND, now and from now on. */
  const release = (i: number) => {
    const id = Buffer.alloc(32, 9); id.writeUInt16BE(i, 30);
    const hex = id.toString('hex');
    released.add(hex);
    for (const st of streams) { st.answer.get(hex)?.(); st.answer.delete(hex); }
  };
  return { g, streams, logs, request, stalledGets, release, stalledPending: () => streams.reduce((n, st) => n + st.answer.size, 0) };
}

describe('a gateway request whose client goes away cancels its storage read (SPEC.md §9.16.6)', () => {
  it('the share request under way is abandoned and its stream closed, no further share is asked for, and the next request is served', async () => {
    const { streams, logs, request, stalledGets } = setup();
    const first = request(stalledHost);
    await vi.waitFor(() => expect(stalledGets()).toBe(1), { timeout: 5000 });
    const asked = streams.find((st) => st.gets.length > 0)!;
    expect(asked.closed).toBe(false);

    first.s.destroy(); // the browser leaves while the root share is being fetched
    // The stream that carried only that request is closed (the node stops sending), at once.
    await vi.waitFor(() => expect(asked.closed).toBe(true), { timeout: 2000 });

    // The next request is served (its manifest is on no node: 404), over a new stream to each
    // node, while the first one's read asked for no other share anywhere.
    const next = request(missingHost);
    await vi.waitFor(() => expect(next.text()).toMatch(/^HTTP\/1\.1 404 /), { timeout: 5000 });
    expect(stalledGets()).toBe(1);
    expect(first.text()).toBe('');
    // An abandoned read is no failure: nothing at warn or above.
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('with the 32 places held, a client going away hands its place to the request waiting; its share answer arriving late is dropped and the stream serves the others', async () => {
    const { streams, logs, request, release, stalledPending } = setup();
    const held = Array.from({ length: 32 }, (_, i) => request(stalledHostN(i)));
    await vi.waitFor(() => expect(stalledPending()).toBe(32), { timeout: 5000 });
    const next = request(missingHost); // waits for a place
    const opened = streams.length;

    held[0].s.destroy();
    // Its place goes to the one waiting, which is served (404) while the 31 others stay stalled.
    await vi.waitFor(() => expect(next.text()).toMatch(/^HTTP\/1\.1 404 /), { timeout: 5000 });
    // Its stream carries 31 other requests: it stays open, and no new one was opened for the abort.
    expect(streams.every((st) => !st.closed)).toBe(true);
    expect(streams.length).toBe(opened);

    // The node answers the abandoned request after all: the answer is dropped, the stream goes on,
    // and the other requests on it are still answered.
    release(0);
    release(1); // the second request's root is on neither node: asked of the other one too, then 404
    await vi.waitFor(() => expect(held[1].text()).toMatch(/^HTTP\/1\.1 404 /), { timeout: 5000 });
    expect(held[0].text()).toBe('');
    expect(streams.every((st) => !st.closed)).toBe(true);
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('a read shared by two requests goes on for the one still waiting when the other\'s client goes away', async () => {
    const { streams, logs, request, release, stalledPending } = setup();
    const a = request(stalledHostN(0)), b = request(stalledHostN(0));
    await vi.waitFor(() => expect(stalledPending()).toBe(1), { timeout: 5000 }); // one root share request for both
    a.s.destroy();
    // Another request served after a's client left (its close has been handled by then).
    const other = request(missingHost);
    await vi.waitFor(() => expect(other.text()).toMatch(/^HTTP\/1\.1 404 /), { timeout: 5000 });
    expect(stalledPending()).toBe(1); // b's share request is still under way
    expect(streams.every((st) => !st.closed)).toBe(true);
    release(0);
    await vi.waitFor(() => expect(b.text()).toMatch(/^HTTP\/1\.1 404 /), { timeout: 5000 });
    expect(a.text()).toBe('');
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });
});
