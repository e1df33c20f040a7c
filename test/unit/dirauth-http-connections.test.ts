// SPEC.md §6.10 "Connection and body bounds": an authority's HTTP port holds at most
// `httpMaxConnectionsPerAddress` connections per address and `httpMaxConnections` in all; the
// configured authorities' addresses are limited by neither, so one host holding connections can
// shut out neither other addresses nor the authorities' own exchanges (§6.8). An authority listed by
// host name is exempt at every address the name resolves to.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type http from 'node:http';
import net from 'node:net';
import pino from 'pino';
import { createAuthorityServer } from '../../directory/http';
import { DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS } from '../../directory/config';
import { PATHS } from '../../src/dir/fetch';
import { connectionCapsOf } from '../../src/ops/connection-caps';
import { makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
let server: http.Server | null = null;
const sockets: net.Socket[] = [];
beforeEach(() => { fx = makeFixture(); });
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  accepted.clear();
  if (server) { const s = server; await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }); }
  server = null;
  fx.cleanup();
});

/** The one configured authority (the fixture's signer) at `host`: its connections come from there. */
function authorityAt(host: string): Record<string, unknown> {
  const fp = fx.signer.identity.toString('hex');
  return { authorities: [{ name: 'a', identity: fp, address: `${host}:1` }] };
}

async function start(extra: Record<string, unknown>): Promise<{ port: number; refused: () => Promise<Record<string, number>> }> {
  const made = fx.makeAuthority(extra);
  server = createAuthorityServer(made.authority, made.registry, made.metrics, pino({ level: 'silent' }));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const refused = async () => {
    const metric = made.registry.getSingleMetric('bitcloud_dirauth_http_connections_refused_total');
    const out: Record<string, number> = {};
    for (const v of (await metric!.get()).values) out[String(v.labels.reason)] = v.value;
    return out;
  };
  return { port, refused };
}

/** The server's end of each held connection. */
const accepted = new Map<net.Socket, net.Socket>();

/** Opens a connection from `localAddress` and leaves it idle, once the server has accepted it. */
async function hold(port: number, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(s);
  s.on('error', () => {});
  const [peer] = await Promise.all([
    new Promise<net.Socket>((r) => server!.once('connection', r)),
    new Promise<void>((r) => s.once('connect', () => r())),
  ]);
  accepted.set(s, peer);
  return s;
}

/** Closes held connection `s` and returns once the server has seen it close. */
async function release(s: net.Socket): Promise<void> {
  const peer = accepted.get(s)!;
  const closed = new Promise<void>((r) => peer.once('close', () => r()));
  s.destroy();
  await closed;
}

/** Whether a request from `localAddress` is answered (true) or its connection closed unanswered. */
async function served(port: number, localAddress: string): Promise<boolean> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(s);
  return new Promise<boolean>((resolve) => {
    let got = '';
    s.on('error', () => resolve(false));
    s.on('close', () => resolve(false));
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); if (got.includes('\r\n')) resolve(got.startsWith('HTTP/1.1 200')); });
    s.write(`GET ${PATHS.certificate} HTTP/1.1\r\nhost: x\r\n\r\n`);
  });
}

describe('authority HTTP connection caps (SPEC.md §6.10)', () => {
  it('refuses an address its 65th connection while another address still connects', async () => {
    const { port, refused } = await start(authorityAt('127.0.0.3'));
    expect(DEFAULT_HTTP_MAX_CONNECTIONS_PER_ADDRESS).toBe(64);
    for (let i = 0; i < 64; i++) await hold(port, '127.0.0.1');
    expect(await refused()).toEqual({});
    expect(await served(port, '127.0.0.1')).toBe(false);
    expect(await served(port, '127.0.0.2')).toBe(true);
    expect(await refused()).toEqual({ per_address: 1 });
    // A connection that closes gives its address's place back.
    await release(sockets[0]);
    expect(await served(port, '127.0.0.1')).toBe(true);
  });

  it('with the total cap reached by other addresses, a configured authority is still served', async () => {
    const { port, refused } = await start({ ...authorityAt('127.0.0.3'), httpMaxConnections: 16 });
    for (let i = 0; i < 8; i++) await hold(port, '127.0.0.1');
    for (let i = 0; i < 8; i++) await hold(port, '127.0.0.2');
    expect(await served(port, '127.0.0.4')).toBe(false);
    expect(await refused()).toEqual({ total: 1 });
    expect(await served(port, '127.0.0.3')).toBe(true);
    expect(await refused()).toEqual({ total: 1 });
  });

  it('an authority listed by host name (localhost) is exempt at the addresses the name resolves to', async () => {
    const { port, refused } = await start({ ...authorityAt('localhost'), httpMaxConnectionsPerAddress: 2 });
    await connectionCapsOf(server!)!.ready;
    for (let i = 0; i < 4; i++) await hold(port, '127.0.0.1');
    expect(await served(port, '127.0.0.1')).toBe(true);
    expect(await refused()).toEqual({});
    // Any other address is still held to the cap.
    for (let i = 0; i < 2; i++) await hold(port, '127.0.0.2');
    expect(await served(port, '127.0.0.2')).toBe(false);
    expect(await refused()).toEqual({ per_address: 1 });
  });
});
