// SPEC.md §9.16.3: the gateway's HTTP answers to requests a browser, or a page of a stored site,
// may send, checked on the bytes of the answer. Storage is stood in for: the reader's manifest and
// range are replaced, so only the HTTP side is under test.
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import { capabilityHost } from '../../src/client/gateway/host';
import { Gateway } from '../../src/client/gateway/gateway';
import type { Manifest } from '../../src/storage/manifest';

const host = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: Buffer.alloc(32, 9) });
const SIZE = 1000;
const file = Buffer.alloc(SIZE, 0x61);

let gw: Gateway | null = null;
const streams: Duplex[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.destroy();
  await gw?.close();
  gw = null;
});

function gateway(): Gateway {
  const g = new Gateway({ nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')) });
  gw = g;
  const m = { version: 1, name: 'clip.webm', contentType: 'video/webm', contentClass: '', layout: { size: SIZE, chunkSize: SIZE, coding: { k: 1, n: 1 }, chunks: [] } } as unknown as Manifest;
  vi.spyOn(g.reader, 'manifest').mockResolvedValue(m);
  vi.spyOn(g.reader, 'range').mockImplementation(async function* (_c, _m, start, end) { yield file.subarray(start, end + 1); });
  return g;
}

/** A stream to the gateway, and what it has given so far: its text, and whether it ended or closed. */
function watched(g: Gateway): { s: Duplex; seen: { text: string; ended: boolean; closed: boolean } } {
  const s = g.connect(host);
  streams.push(s);
  const seen = { text: '', ended: false, closed: false };
  s.on('data', (b: Buffer) => { seen.text += b.toString('latin1'); });
  s.on('end', () => { seen.ended = true; });
  s.on('close', () => { seen.closed = true; });
  s.on('error', () => {});
  return { s, seen };
}

/** Send `raw` on a stream to the gateway; the text received once the stream ends or `until` matches. */
async function exchange(g: Gateway, raw: string, until: RegExp): Promise<string> {
  const s = g.connect(host);
  streams.push(s);
  let text = '';
  s.on('data', (b: Buffer) => { text += b.toString('latin1'); });
  s.on('error', () => {});
  s.write(raw);
  await expect.poll(() => until.test(text), { timeout: 5000 }).toBe(true);
  return text;
}

describe('the gateway\'s HTTP answers (SPEC.md §9.16.3)', () => {
  it('a HEAD with a Range gets the headers of the whole file\'s 200, as RFC 9110 §14.2 wants', async () => {
    const g = gateway();
    for (const r of ['bytes=10-19', 'bytes=-5', `bytes=${SIZE}-`]) {
      const text = await exchange(g, `HEAD / HTTP/1.1\r\nHost: x\r\nRange: ${r}\r\n\r\n`, /\r\n\r\n/);
      expect(text, r).toMatch(/^HTTP\/1\.1 200 /);
      expect(text, r).toMatch(new RegExp(`\\r\\ncontent-length: ${SIZE}\\r\\n`, 'i'));
      expect(text, r).not.toMatch(/content-range/i);
      expect(text, r).toMatch(/\r\naccept-ranges: bytes\r\n/i);
    }
    // A GET with the same Range is still served 206 (and 416 past the end).
    const get = await exchange(g, 'GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n', /\r\n\r\na{10}$/);
    expect(get).toMatch(/^HTTP\/1\.1 206 /);
    expect(get).toMatch(/\r\ncontent-range: bytes 10-19\/1000\r\n/i);
    expect(get).toMatch(/\r\ncontent-length: 10\r\n/i);
    const past = await exchange(g, `GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=${SIZE}-\r\n\r\n`, /<\/p>\n$/);
    expect(past).toMatch(/^HTTP\/1\.1 416 /);
    expect(past).toMatch(/\r\ncontent-range: bytes \*\/1000\r\n/i);
  });

  it('a malformed request pipelined behind a body being sent resets the stream: nothing but the file\'s bytes goes into the body', async () => {
    const g = gateway();
    let go!: () => void;
    const later = new Promise<void>((r) => { go = r; });
    vi.mocked(g.reader.range).mockImplementation(async function* (_c, _m, start, end) {
      const mid = start + Math.floor((end - start + 1) / 2);
      yield file.subarray(start, mid);
      await later;
      yield file.subarray(mid, end + 1);
    });
    const { s, seen } = watched(g);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => /\r\n\r\na{500}$/.test(seen.text), { timeout: 5000 }).toBe(true);
    s.write('NOT A REQUEST LINE\r\n\r\n'); // a parse error while the answer's body is under way
    await expect.poll(() => seen.closed, { timeout: 5000 }).toBe(true);
    go();
    const body = seen.text.slice(seen.text.indexOf('\r\n\r\n') + 4);
    expect(seen.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(body).toBe('a'.repeat(500)); // the file's bytes only: no "HTTP/1.1 400" inside the body
    expect(seen.ended).toBe(false); // a reset, not a clean end a client could take for the end of the answer
  });

  it('a request whose header section passes the limit gets 431 (RFC 6585 §5) and Connection: close; other parse errors stay 400', async () => {
    const g = gateway();
    const big = await exchange(g, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`, /\r\n\r\n/);
    expect(big).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(big).toMatch(/\r\nConnection: close\r\n/i);
    const bad = await exchange(g, 'NOT A REQUEST LINE\r\n\r\n', /\r\n\r\n/);
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
  });

  describe('If-None-Match uses the weak comparison (RFC 9110 §13.1.2)', () => {
    const tag = `"${'09'.repeat(32)}"`; // the manifest id of `host`
    const ask = (g: Gateway, inm: string) => exchange(g, `GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${inm}\r\n\r\n`, /^HTTP\/1\.1 304 [^]*\r\n\r\n|\r\n\r\na{1000}$/);

    it('a weak tag W/"<etag>" gets 304', async () => {
      expect(await ask(gateway(), `W/${tag}`)).toMatch(/^HTTP\/1\.1 304 /);
    });

    it('a list that contains the tag gets 304, weak or strong', async () => {
      const g = gateway();
      expect(await ask(g, `"other", W/${tag}`)).toMatch(/^HTTP\/1\.1 304 /);
      expect(await ask(g, `W/"a,b" ,${tag},`)).toMatch(/^HTTP\/1\.1 304 /);
    });

    it('* gets 304', async () => {
      expect(await ask(gateway(), '*')).toMatch(/^HTTP\/1\.1 304 /);
    });

    it('another tag, or a header that does not parse, gets the whole file (200)', async () => {
      const g = gateway();
      for (const inm of ['"other"', `W/"other", "x"`, '09'.repeat(32), `${tag}, junk`, `*, ${tag}`, `w/${tag}`, `"${'09'.repeat(32)}`]) {
        const text = await ask(g, inm);
        expect(text, inm).toMatch(/^HTTP\/1\.1 200 /);
        expect(text, inm).toMatch(new RegExp(`\\r\\netag: ${tag}\\r\\n`, 'i'));
      }
    });
  });
});

describe('a malformed request pipelined behind an answer not yet begun (SPEC.md §9.16.3)', () => {
  it('resets the stream: no 400 goes out first, to be read as the answer to the earlier request', async () => {
    const g = gateway();
    let go!: () => void;
    const later = new Promise<void>((r) => { go = r; });
    const m = await g.reader.manifest(undefined as never);
    vi.mocked(g.reader.manifest).mockImplementation(async () => { await later; return m; });
    const { s, seen } = watched(g);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => vi.mocked(g.reader.manifest).mock.calls.length >= 2, { timeout: 5000 }).toBe(true);
    s.write('NOT A REQUEST LINE\r\n\r\n'); // a parse error while the GET's answer has not begun
    await expect.poll(() => seen.closed || seen.ended, { timeout: 5000 }).toBe(true);
    go();
    // The GET's manifest reads now resolve; once they have, and the turn after, nothing may follow.
    await Promise.allSettled(vi.mocked(g.reader.manifest).mock.results.map((r) => r.value as unknown));
    await new Promise((r) => setImmediate(r));
    expect(seen.text).not.toMatch(/^HTTP\/1\.1 400 /); // the browser would take it for the GET's answer
    expect(seen.text).toBe('');
    expect(seen.ended).toBe(false);
  });
});
