// SPEC.md §6.10 "Connection and body bounds": the authority's HTTP port reads at most 64 upload
// bodies at once, all upload routes together (a further upload is answered 503 RATE_LIMITED with
// Retry-After: 1 at once, unread); downloads such as the consensus are still served while uploads
// fill the reading places; one address holds at most 16 of them. The connection caps:
// dirauth-http-connections.test.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import http from 'node:http';
import type net from 'node:net';
import { AUTHORITY_MAX_READING, AUTHORITY_MAX_READING_PER_ADDRESS } from '../../directory/http';
import { DEFAULT_HTTP_MAX_CONNECTIONS, DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS } from '../../directory/config';
import pino from 'pino';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import { err } from '../../src/errors';
import { PolicyStore } from '../../src/moderation/store';
import { ServedDocument } from '../../src/dir/http-serve';
import { holdConnections } from '../helpers/connections';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => { fx.cleanup(); });

/** Sends on `s` the head of a POST announcing `length` bytes and a few of them, and never the rest. */
function slowUpload(s: net.Socket, p: string, length: number): void {
  s.write(`POST ${p} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${length}\r\n\r\n`);
  s.write(Buffer.alloc(10));
}

describe('authority HTTP bounds (SPEC.md §6.10)', () => {
  it(`reads at most 64 upload bodies at once; a further upload gets 503 at once and the consensus is still served`, async () => {
    const made = fx.makeAuthority({ rateLimit: { uploadsPerMinute: 100_000, burst: 100_000 } });
    Object.defineProperty(made.authority, 'published', { get: () => ({ info: fx.consensus.info, served: new ServedDocument(fx.consensus.raw, Date.now()) }) });
    const { server, port } = await listenAuthority(made);
    expect([AUTHORITY_MAX_READING, DEFAULT_HTTP_MAX_CONNECTIONS]).toEqual([64, 512]);
    // The caps are our own accounting (SPEC.md §6.10), not Node's, which looks at no address.
    expect(server.maxConnections ?? Infinity).toBe(Infinity);

    // Slow uploads on several routes, none ever finished.
    const routes = [PATHS.descriptor, '/bitcloud/hs/desc', '/bitcloud/hs/pseudonym', `/bitcloud/policy/${'ab'.repeat(32)}`];
    // The server's handler takes a request's place as it is emitted; this listener comes after it.
    // Each upload's request, by the client's port, ends ('close') once its place is given back.
    const ended = new Map<number, Promise<void>>();
    server.on('request', (req: http.IncomingMessage) => {
      ended.set(req.socket.remotePort!, new Promise<void>((r) => req.once('close', () => r())));
    });
    const held = await holdConnections(port, 64);
    held.forEach((h, i) => slowUpload(h.socket, routes[i % routes.length], 1000));
    await vi.waitFor(() => expect(ended.size).toBe(64), { timeout: 10_000, interval: 5 });

    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}${PATHS.descriptor}`, { method: 'POST', body: Buffer.alloc(100) });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { code: string }).code).toBe('RATE_LIMITED');
    expect(performance.now() - t0).toBeLessThan(2000);
    const refused = (await made.registry.getSingleMetric('bitcloud_dirauth_upload_bodies_refused_total')!.get()).values;
    expect(refused.map((v) => v.value)).toEqual([1]);

    const c = await fetch(`http://127.0.0.1:${port}${PATHS.consensus}`);
    expect(c.status).toBe(200);
    expect(Buffer.from(await c.arrayBuffer()).equals(fx.consensus.raw)).toBe(true);

    // A slow upload that goes away frees its place.
    const port0 = held[0].socket.localPort!;
    held[0].socket.destroy();
    await ended.get(port0);
    const again = await fetch(`http://127.0.0.1:${port}${PATHS.descriptor}`, { method: 'POST', body: Buffer.alloc(100) });
    expect(again.status).not.toBe(503);
  });

  it('reads at most 16 upload bodies of one address at once: one host sending bodies slowly does not keep out another\'s upload', async () => {
    const made = fx.makeAuthority({ testNetwork: false, rateLimit: { uploadsPerMinute: 100_000, burst: 100_000 } });
    const { server, port } = await listenAuthority(made);
    expect(AUTHORITY_MAX_READING_PER_ADDRESS).toBe(16);
    const ended = new Map<number, Promise<void>>();
    server.on('request', (req: http.IncomingMessage) => {
      ended.set(req.socket.remotePort!, new Promise<void>((r) => req.once('close', () => r())));
    });
    // 127.0.0.1 sends 20 descriptor bodies a few bytes at a time: 16 are being read.
    const held = await holdConnections(port, 20);
    held.forEach((h) => slowUpload(h.socket, PATHS.descriptor, 1000));
    await vi.waitFor(() => expect(ended.size).toBe(20), { timeout: 10_000, interval: 5 });
    const refused = (await made.registry.getSingleMetric('bitcloud_dirauth_upload_bodies_refused_total')!.get()).values;
    expect(refused.map((v) => v.value)).toEqual([4]);
    const again = await fetch(`http://127.0.0.1:${port}${PATHS.descriptor}`, { method: 'POST', body: Buffer.alloc(100) });
    expect(again.status).toBe(503);
    expect(again.headers.get('retry-after')).toBe('1');
    // Another address is still read (and its malformed descriptor answered 400).
    const other = await new Promise<number>((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, localAddress: '127.0.0.2', method: 'POST', path: PATHS.descriptor, headers: { 'content-length': 100 } }, (res) => { res.resume(); resolve(res.statusCode!); });
      r.on('error', reject);
      r.end(Buffer.alloc(100));
    });
    expect(other).toBe(400);
  });

  it('takes httpMaxConnections and httpMaxConnectionsPerAddress from the configuration', () => {
    const made = fx.makeAuthority({ httpMaxConnections: 100, httpMaxConnectionsPerAddress: 7 });
    expect([made.authority.config.httpMaxConnections, made.authority.config.httpMaxConnectionsPerAddress]).toEqual([100, 7]);
    expect(fx.makeAuthority().authority.config.httpMaxConnectionsPerAddress).toBe(DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS);
  });
});

describe('authority error answers (SPEC.md §6.10 "Error answers")', () => {
  it('a policy the authority cannot keep is answered 500 INTERNAL, never with the message naming its folder', async () => {
    const made = fx.makeAuthority();
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
    const { url } = await listenAuthority(made, log);
    const folder = `${fx.dir}/policies`;
    const accept = vi.spyOn(PolicyStore.prototype, 'accept').mockImplementation(() => {
      throw err('IO_MODE_UNSUPPORTED', `cannot set mode 644 on a file in ${folder} (EPERM): the data folder must be on a filesystem with Unix permissions`, { folder });
    });
    try {
      const r = await httpRequest(`${url}/bitcloud/policy/${'ab'.repeat(32)}`, { method: 'POST', body: Buffer.from('bundle'), maxBytes: 1 << 16 });
      expect(accept).toHaveBeenCalled();
      expect(r.status).toBe(500);
      expect(JSON.parse(r.body.toString())).toEqual({ code: 'INTERNAL', reason: 'internal error' });
      expect(r.body.toString()).not.toContain(fx.dir);
    } finally {
      accept.mockRestore();
    }
    // The operator reads the cause in the log.
    expect(lines.some((l) => l.includes('keeping a moderator policy failed') && l.includes('IO_MODE_UNSUPPORTED'))).toBe(true);
  });
});
