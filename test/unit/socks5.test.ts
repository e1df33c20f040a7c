import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import net from 'node:net';
import { Writable, PassThrough, type Duplex } from 'node:stream';
import pino from 'pino';
import fc from 'fast-check';
import { SocksClient } from 'socks';
import {
  startSocks5Server, Socks5Server, socksReplyFor, parseRequest, type SocksConnectRequest, type Socks5ServerOptions,
} from '../../src/client/socks5';
import { err, isBitcloudError } from '../../src/errors';
import { createRegistry } from '../../src/ops/metrics';
import { sha256 } from '../../src/crypto/primitives';

// A local TCP echo server stands in for the far end of a circuit: the fake onConnect below
// connects to it whatever host was asked for (so no name is ever resolved) unless the host
// names a failure to simulate.
let echo: net.Server;
let echoPort: number;
let closedPort: number;
let server: Socks5Server;
let requests: SocksConnectRequest[];
let logLines: string[];
const opened = new Set<net.Socket>();
const streams: Duplex[] = [];

function capturingLogger() {
  const out = new Writable({ write(chunk, _e, cb) { logLines.push(String(chunk)); cb(); } });
  return pino({ level: 'debug' }, out);
}

function listen(s: net.Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)));
}

const failures: Record<string, () => Promise<Duplex>> = {
  'policy.invalid': async () => { throw err('STREAM_REFUSED', 'exit refused', { reason: 'EXITPOLICY' }); },
  'noresolve.invalid': async () => { throw err('STREAM_REFUSED', 'exit could not resolve', { reason: 2 }); },
  'timeout.invalid': async () => { throw err('STREAM_REFUSED', 'exit timed out', { reason: 'TIMEOUT' }); },
  'noroute.invalid': async () => { throw err('STREAM_REFUSED', 'no route', { reason: 'NOROUTE' }); },
  'nopath.invalid': async () => { throw err('PATH_NO_RELAYS', 'empty consensus'); },
  'noexit.invalid': async () => { throw err('PATH_NO_EXIT', 'no exit for port'); },
  'general.invalid': async () => { throw new Error('boom'); },
  'hang.invalid': () => new Promise<Duplex>(() => {}),
  'refused.invalid': () => tcp(closedPort),
};

function tcp(port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.off('error', reject); opened.add(s); resolve(s); });
    s.once('error', reject);
  });
}

async function start(extra: Partial<Socks5ServerOptions> = {}): Promise<number> {
  server = await startSocks5Server({
    port: 0,
    log: capturingLogger(),
    handshakeTimeoutMs: 500,
    connectTimeoutMs: 300,
    onConnect: async (req) => {
      requests.push(req);
      const f = failures[req.host];
      return f ? f() : tcp(echoPort);
    },
    ...extra,
  });
  return server.address.port;
}

beforeEach(async () => {
  requests = []; logLines = [];
  echo = net.createServer((s) => { opened.add(s); s.pipe(s); s.on('error', () => {}); });
  echoPort = await listen(echo);
  const tmp = net.createServer();
  closedPort = await listen(tmp);
  await new Promise<void>((r) => tmp.close(() => r()));
});

afterEach(async () => {
  await server?.close();
  for (const s of opened) s.destroy();
  opened.clear();
  for (const s of streams.splice(0)) s.destroy();
  await new Promise<void>((r) => echo.close(() => r()));
});

/** Write raw bytes, collect everything the server sends until it closes the connection. */
function raw(port: number, chunks: Buffer[], opts: { endAfter?: boolean } = {}): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    const got: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (d) => got.push(d));
    s.on('error', (e) => { error = (e as NodeJS.ErrnoException).code; });
    s.on('end', () => s.end());
    s.on('close', () => resolve({ data: Buffer.concat(got), error }));
    s.on('connect', () => { for (const c of chunks) s.write(c); if (opts.endAfter) s.end(); });
  });
}

const greet = Buffer.from([5, 1, 0]);
function connectReq(host: string, port: number, cmd = 1): Buffer {
  const name = Buffer.from(host, 'latin1');
  const p = Buffer.alloc(2); p.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, cmd, 0, 3, name.length]), name, p]);
}

async function socksClient(port: number, host: string, destPort: number, auth?: { userId: string; password: string }) {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port, type: 5, ...(auth ?? {}) },
    command: 'connect',
    destination: { host, port: destPort },
  });
  opened.add(socket);
  return socket;
}

function roundTrip(s: net.Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let n = 0;
    s.on('data', (d) => { got.push(d); n += d.length; if (n >= payload.length) resolve(Buffer.concat(got)); });
    s.on('error', reject);
    s.write(payload);
  });
}

describe('SOCKS5 CONNECT (SPEC §7.8)', () => {
  it('IPv4: connects and relays bytes both ways', async () => {
    const port = await start();
    const s = await socksClient(port, '127.0.0.1', 4242);
    expect((await roundTrip(s, Buffer.from('hello'))).toString()).toBe('hello');
    expect(requests[0]).toEqual({ host: '127.0.0.1', addrType: 'ipv4', port: 4242, isolation: {} });
  });

  it('IPv6: passes the canonical address text', async () => {
    const port = await start();
    const s = await socksClient(port, '2001:db8:0:0::1', 443);
    expect((await roundTrip(s, Buffer.from('v6'))).toString()).toBe('v6');
    expect(requests[0]).toMatchObject({ host: '2001:db8::1', addrType: 'ipv6', port: 443 });
  });

  it('domain: passes the name through untouched, never resolving it', async () => {
    const port = await start();
    const s = await socksClient(port, 'Does-Not-Exist.Example', 80);
    expect((await roundTrip(s, Buffer.from('name'))).toString()).toBe('name');
    expect(requests[0]).toMatchObject({ host: 'Does-Not-Exist.Example', addrType: 'domain', port: 80 });
  });

  it('username/password: any credentials accepted, handed over for isolation', async () => {
    const port = await start();
    await socksClient(port, 'a.example', 80, { userId: 'alice', password: 'tab1' });
    await socksClient(port, 'a.example', 80, { userId: 'bob', password: '' });
    expect(requests.map((r) => r.isolation)).toEqual([
      { username: Buffer.from('alice'), password: Buffer.from('tab1') }, { username: Buffer.from('bob'), password: Buffer.alloc(0) },
    ]);
  });

  it('prefers username/password when the client offers both methods', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.from([5, 2, 0, 2])], { endAfter: true });
    expect([...r.data]).toEqual([5, 2]);
  });

  it('relays data sent optimistically before the reply', async () => {
    const port = await start();
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve) => s.on('data', (d) => { got.push(d); if (Buffer.concat(got).length >= 2 + 10 + 5) resolve(); }));
    s.write(Buffer.concat([greet, connectReq('x.example', 80), Buffer.from('early')]));
    await done;
    expect(Buffer.concat(got).subarray(12).toString()).toBe('early');
  });

  it('relays 8 MiB intact with backpressure', async () => {
    const port = await start();
    const s = await socksClient(port, '127.0.0.1', 1);
    const payload = Buffer.alloc(8 << 20);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i * 2654435761 >>> 0, i);
    const back = await roundTrip(s, payload);
    expect(sha256(back.subarray(0, payload.length)).equals(sha256(payload))).toBe(true);
  });

  it('a stream that ends cleanly ends the client connection (EOF)', async () => {
    const upstream = new PassThrough();
    streams.push(upstream);
    const port = await start({ onConnect: async () => upstream });
    const s = await socksClient(port, 'x.example', 80);
    const ended = new Promise<string>((resolve) => { s.on('end', () => resolve('end')); s.on('error', (e) => resolve(String(e))); });
    s.resume();
    upstream.end('bye');
    expect(await ended).toBe('end');
  });

  it('a stream that fails mid-transfer resets the client connection (no silent truncation)', async () => {
    const upstream = new PassThrough();
    streams.push(upstream);
    const port = await start({ onConnect: async () => upstream });
    const s = await socksClient(port, 'x.example', 80);
    const outcome = new Promise<string>((resolve) => {
      s.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? 'error'));
      s.on('end', () => resolve('end'));
    });
    // The client reads the first bytes before the failure: an RST racing unread data in the
    // client's receive queue is sometimes reported as EOF by the kernel, which no server can fix.
    const firstBytes = new Promise((r) => s.once('data', r));
    s.resume();
    upstream.write('partial');
    await firstBytes;
    upstream.destroy(err('CIRCUIT_DESTROYED', 'middle relay went away'));
    expect(await outcome).toBe('ECONNRESET');
  });

  it('a stream that failed before the reply (CONNECTED then END in one read) gets a failure reply, never 0x00', async () => {
    const reg = createRegistry('test');
    const port = await start({
      metrics: reg,
      onConnect: async () => {
        // What openStream hands over when CONNECTED and END(CONNRESET) came in one link read: the
        // stream is already destroyed, its 'error' and 'close' already emitted.
        const upstream = new PassThrough();
        upstream.on('error', () => {});
        upstream.destroy(err('STREAM_CLOSED', 'stream ended by the peer (reason 12)', { endReason: 12 }));
        await new Promise((r) => upstream.once('close', r));
        return upstream;
      },
    });
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    s.on('error', () => {});
    let data = Buffer.alloc(0);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    // The method reply (2 bytes) and the CONNECT reply (10): read as soon as they are here.
    const replied = new Promise<void>((r) => {
      s.on('data', (d: Buffer) => { data = Buffer.concat([data, d]); if (data.length >= 12) r(); });
      s.once('close', () => r());
    });
    s.on('end', () => s.end());
    s.on('connect', () => s.write(Buffer.concat([greet, connectReq('x.example', 80)])));
    await replied;
    expect([...data.subarray(2)]).toEqual([5, 0x05, 0, 1, 0, 0, 0, 0, 0, 0]); // after the method reply: CONNRESET → 0x05
    // The failure reply is followed by the end of the connection: it never hangs.
    await closed;
    const text = await reg.metrics();
    expect(text).not.toMatch(/reply="succeeded"/);
    expect(text).toMatch(/bitcloud_socks_replies_total\{reply="connection_refused",daemon="test"\} 1/);
  });

  it('a client that leaves while its CONNECT waits aborts the request with SOCKS_CLIENT_GONE', async () => {
    let signal!: AbortSignal;
    let onAsked!: () => void;
    const asked = new Promise<void>((r) => { onAsked = r; });
    const port = await start({ onConnect: (_req, ctx) => { signal = ctx.signal; onAsked(); return new Promise<Duplex>(() => {}); } });
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    s.on('error', () => {});
    await new Promise<void>((r) => s.on('connect', () => r()));
    s.write(Buffer.concat([greet, connectReq('x.example', 80)]));
    await asked;
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    s.destroy();
    await aborted;
    expect(signal.reason).toMatchObject({ code: 'SOCKS_CLIENT_GONE' });
  });

  it('destroys a stream that arrives after the client left', async () => {
    let resolveStream!: (d: Duplex) => void;
    const port = await start({ onConnect: () => new Promise((r) => { resolveStream = r; }) });
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    await new Promise<void>((r) => s.on('connect', () => r()));
    s.write(Buffer.concat([greet, connectReq('x.example', 80)]));
    await new Promise<void>((r) => s.once('data', () => r()));
    s.destroy();
    const late = new PassThrough();
    const closed = new Promise((r) => late.once('close', r));
    resolveStream(late);
    await closed;
    expect(late.destroyed).toBe(true);
  });
});

describe('SOCKS5 reply codes (SPEC §7.8.4)', () => {
  const cases: [string, number][] = [
    ['policy.invalid', 0x02], ['noexit.invalid', 0x02], ['nopath.invalid', 0x03], ['noroute.invalid', 0x04],
    ['noresolve.invalid', 0x04], ['refused.invalid', 0x05], ['timeout.invalid', 0x06], ['hang.invalid', 0x06], ['general.invalid', 0x01],
  ];
  for (const [host, rep] of cases) {
    it(`${host} → 0x0${rep}`, async () => {
      const port = await start();
      const r = await raw(port, [greet, connectReq(host, 80)]);
      expect([...r.data]).toEqual([5, 0, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
    });
  }

  it('the socks client library sees the refusal', async () => {
    const port = await start();
    await expect(socksClient(port, 'policy.invalid', 80)).rejects.toThrow(/NotAllowed/);
    await expect(socksClient(port, 'refused.invalid', 80)).rejects.toThrow(/ConnectionRefused/);
  });

  it('BIND → 0x07, with a log line saying it is not supported', async () => {
    const port = await start();
    const r = await raw(port, [greet, connectReq('x.example', 80, 2)]);
    expect(r.data[3]).toBe(0x07);
    expect(logLines.join('')).toMatch(/BIND is not supported/);
  });

  it('UDP ASSOCIATE → 0x07, with a log line', async () => {
    const port = await start();
    const r = await raw(port, [greet, connectReq('0.0.0.0', 0, 3)]);
    expect(r.data[3]).toBe(0x07);
    expect(logLines.join('')).toMatch(/UDP ASSOCIATE is not supported/);
  });

  it('unknown command → 0x07', async () => {
    const port = await start();
    expect((await raw(port, [greet, connectReq('x.example', 80, 0xf0)])).data[3]).toBe(0x07);
  });

  it('unknown address type → 0x08', async () => {
    const port = await start();
    expect((await raw(port, [greet, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])])).data.subarray(2)[1]).toBe(0x08);
  });

  it('empty or non-printable host name → 0x01; port 0 → 0x02', async () => {
    const port = await start();
    expect((await raw(port, [greet, Buffer.from([5, 1, 0, 3, 0, 0, 80])])).data[3]).toBe(0x01);
    expect((await raw(port, [greet, connectReq('a\0b', 80)])).data[3]).toBe(0x01);
    expect((await raw(port, [greet, connectReq('a.example', 0)])).data[3]).toBe(0x02);
    expect(requests).toEqual([]);
  });

  it('a host name with an empty label (leading dot, two dots in a row, more than one trailing dot) → 0x01, never reaching onConnect', async () => {
    const port = await start();
    for (const name of ['a.b.bitcloud..', 'a..b.bitcloud', '.a.bitcloud', 'x.example..', '.', '..']) {
      expect((await raw(port, [greet, connectReq(name, 80)], { endAfter: true })).data[3], name).toBe(0x01);
    }
    expect(requests).toEqual([]);
    // One trailing dot (a fully qualified name) is no empty label.
    const ok = await socksClient(port, 'ok.example.', 80);
    expect((await roundTrip(ok, Buffer.from('fqdn'))).toString()).toBe('fqdn');
    expect(requests.map((r) => r.host)).toEqual(['ok.example.']);
  });

  it('a host name with a \':\' that is not an IPv6 address (host:port in the name field) → 0x01, never reaching onConnect; IPv6 text sent as a name is passed on', async () => {
    const port = await start();
    for (const name of ['k.m.bitcloud:80', 'k.m.bitcloud.:80', 'k.m.bitcloud..:', 'example.com:443', ':', '1.2.3.4:80']) {
      expect((await raw(port, [greet, connectReq(name, 80)], { endAfter: true })).data[3], name).toBe(0x01);
    }
    expect(requests).toEqual([]);
    const v6 = await socksClient(port, '::1', 80);
    expect((await roundTrip(v6, Buffer.from('v6'))).toString()).toBe('v6');
    expect(requests.map((r) => r.host)).toEqual(['::1']);
  });

  it('a .onion name (any case, one trailing dot) → 0x01 with SOCKS_ONION_UNSUPPORTED, counted, never reaching onConnect (RFC 7686)', async () => {
    const reg = createRegistry('test');
    const port = await start({ metrics: reg });
    for (const name of ['duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion', 'www.example.ONION', 'x.onion.', 'onion']) {
      expect((await raw(port, [greet, connectReq(name, 80)], { endAfter: true })).data.subarray(2), name).toEqual(Buffer.from([5, 1, 0, 1, 0, 0, 0, 0, 0, 0]));
    }
    expect(requests).toEqual([]);
    expect(logLines.join('')).toContain('SOCKS_ONION_UNSUPPORTED');
    expect(await reg.metrics()).toMatch(/bitcloud_socks_refusals_total\{reason="onion",daemon="test"\} 4/);
    // A name that only contains "onion" elsewhere is an ordinary name.
    const ok = await socksClient(port, 'onion.example', 80);
    expect((await roundTrip(ok, Buffer.from('ok'))).toString()).toBe('ok');
    expect(requests.map((r) => r.host)).toEqual(['onion.example']);
  });

  it('IPv6 text with a zone id (or brackets) sent as a name → 0x01, never reaching onConnect; IPv6 text the rest of the client parses is passed on', async () => {
    const port = await start();
    for (const name of ['fe80::1%eth0', '::1%1', 'fe80::1%25lo', '[::1]']) {
      expect((await raw(port, [greet, connectReq(name, 80)], { endAfter: true })).data[3], name).toBe(0x01);
    }
    expect(requests).toEqual([]);
    // Sent as a name (address type 3), not as address type 4.
    const s = net.connect(port, '127.0.0.1');
    opened.add(s);
    const got: Buffer[] = [];
    const replied = new Promise<void>((r) => s.on('data', (d) => { got.push(d); if (Buffer.concat(got).length >= 12) r(); }));
    s.on('connect', () => s.write(Buffer.concat([greet, connectReq('::ffff:192.0.2.1', 80)])));
    await replied;
    expect(Buffer.concat(got)[3]).toBe(0x00);
    expect(requests.map((r) => [r.host, r.addrType])).toEqual([['::ffff:192.0.2.1', 'domain']]);
  });

  it('socksReplyFor maps END reasons, errno codes and error codes', () => {
    const table: [unknown, number][] = [
      [err('STREAM_REFUSED', 'm', { reason: 'EXITPOLICY' }), 2], [err('STREAM_REFUSED', 'm', { endReason: 4 }), 2], [err('STREAM_REFUSED', 'm', { reason: 'RESOLVEFAILED' }), 4],
      [err('STREAM_REFUSED', 'm', { reason: 3 }), 5], [err('STREAM_REFUSED', 'm', { reason: 'CONNRESET' }), 5], [err('STREAM_REFUSED', 'm', { reason: 7 }), 6],
      [err('STREAM_REFUSED', 'm', { reason: 'NOROUTE' }), 4], [err('STREAM_REFUSED', 'm', { reason: 'MISC' }), 1], [err('STREAM_REFUSED', 'm', { reason: 'DESTROY' }), 1],
      [err('EXIT_POLICY_REJECTED', 'm'), 2], [err('EXIT_RESOLVE_FAILED', 'm'), 4], [err('EXIT_CONNECT_REFUSED', 'm'), 5],
      [err('CIRCUIT_BUILD_TIMEOUT', 'm'), 6], [err('PATH_NO_EXIT', 'm'), 2], [err('PATH_NO_GUARD', 'm'), 3],
      [Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 5], [Object.assign(new Error('x'), { code: 'ENOTFOUND' }), 4],
      [Object.assign(new Error('x'), { code: 'ENETUNREACH' }), 3], [Object.assign(new Error('x'), { code: 'ETIMEDOUT' }), 6],
      [new Error('x'), 1], [undefined, 1], ['string', 1],
    ];
    for (const [e, rep] of table) expect(socksReplyFor(e), JSON.stringify((e as { code?: string })?.code)).toBe(rep);
  });
});

describe('SOCKS5 refusals and robustness (SPEC §7.8.2)', () => {
  it('SOCKS4 → a SOCKS4 rejection (0x5B) and a clear log line', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])]);
    expect([...r.data]).toEqual([0, 0x5b, 0, 0, 0, 0, 0, 0]);
    expect(logLines.join('')).toMatch(/SOCKS4 is not supported, use SOCKS5 with remote DNS \(socks5h\)/);
  });

  it('SOCKS4, HTTP and BIND repeated by one program: one warn line per kind, the rest at debug, every one counted', async () => {
    const reg = createRegistry('test');
    const port = await start({ metrics: reg });
    for (let i = 0; i < 5; i++) {
      await raw(port, [Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])]);
      await raw(port, [Buffer.from('GET / HTTP/1.1\r\n\r\n')]);
      await raw(port, [greet, connectReq('x.example', 80, 2)]);
    }
    const lines = logLines.map((l) => JSON.parse(l) as { level: number; msg: string });
    const warns = lines.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warns.filter((m) => /SOCKS4 is not supported/.test(m))).toHaveLength(1);
    expect(warns.filter((m) => /HTTP request reached the SOCKS port/.test(m))).toHaveLength(1);
    expect(warns.filter((m) => /BIND is not supported/.test(m))).toHaveLength(1);
    expect(lines.filter((l) => l.level === 20 && /SOCKS4 is not supported/.test(l.msg))).toHaveLength(4);
    const text = await reg.metrics();
    expect(text).toMatch(/bitcloud_socks_refusals_total\{reason="socks4",daemon="test"\} 5/);
    expect(text).toMatch(/bitcloud_socks_refusals_total\{reason="http",daemon="test"\} 5/);
    expect(text).toMatch(/bitcloud_socks_refusals_total\{reason="bind",daemon="test"\} 5/);
  });

  it('SOCKS4a too', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.concat([Buffer.from([4, 1, 0, 80, 0, 0, 0, 1, 0]), Buffer.from('example.com\0')])]);
    expect(r.data[1]).toBe(0x5b);
  });

  it('an HTTP request → HTTP 501 explaining this is a SOCKS proxy', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.from('GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n')]);
    expect(r.data.toString()).toMatch(/^HTTP\/1\.0 501 /);
    expect(r.data.toString()).toMatch(/SOCKS5 proxy, not an HTTP proxy/);
    const c = await raw(port, [Buffer.from('CONNECT example.com:443 HTTP/1.1\r\n\r\n')]);
    expect(c.data.toString()).toMatch(/^HTTP\/1\.0 501 /);
  });

  it('garbage → connection closed', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.from([0x00, 0x13, 0x37, 0xff])]);
    expect(r.data.length).toBe(0);
  });

  it('no acceptable method → 0xFF and close', async () => {
    const port = await start();
    expect([...(await raw(port, [Buffer.from([5, 1, 1])])).data]).toEqual([5, 0xff]);
    expect([...(await raw(port, [Buffer.from([5, 0])])).data]).toEqual([5, 0xff]);
  });

  it('bad username/password version → failure status and close', async () => {
    const port = await start();
    expect([...(await raw(port, [Buffer.from([5, 1, 2]), Buffer.from([9, 1, 0x61, 1, 0x62])])).data]).toEqual([5, 2, 1, 1]);
  });

  it('a truncated greeting is closed at the handshake timeout', async () => {
    const port = await start();
    const r = await raw(port, [Buffer.from([5])]);
    expect(r.data.length).toBe(0);
    expect(logLines.join('')).toMatch(/handshake timed out/);
  });

  it('a truncated request then hang-up is cleaned up', async () => {
    const port = await start();
    const r = await raw(port, [greet, Buffer.from([5, 1, 0, 3, 20, 0x61])], { endAfter: true });
    expect([...r.data]).toEqual([5, 0]);
    expect(requests).toEqual([]);
  });

  it('the server still serves another client after all of the above, concurrently', async () => {
    const port = await start();
    const bad = [
      raw(port, [Buffer.from([0xde, 0xad])]), raw(port, [Buffer.from([5])]), raw(port, [Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 0])]),
      raw(port, [Buffer.from('GET / HTTP/1.0\r\n\r\n')]), raw(port, [greet, connectReq('x', 1, 2)]), raw(port, [greet, Buffer.from([5, 1, 0, 7])]),
    ];
    const s = await socksClient(port, '127.0.0.1', 7);
    expect((await roundTrip(s, Buffer.from('still here'))).toString()).toBe('still here');
    await Promise.all(bad);
    const s2 = await socksClient(port, 'after.example', 7);
    expect((await roundTrip(s2, Buffer.from('and after'))).toString()).toBe('and after');
  });

  it('past maxConnections a new connection is closed unanswered, counted and logged; once one ends, connections are served again', async () => {
    const reg = createRegistry('test');
    const port = await start({ metrics: reg, maxConnections: 2, handshakeTimeoutMs: 5_000 });
    // Two clients that hold their connection in the handshake (method chosen, no request yet).
    const holders = [0, 1].map(() => net.connect(port, '127.0.0.1'));
    for (const h of holders) {
      opened.add(h);
      h.write(greet);
      await new Promise((r) => h.once('data', r));
    }
    // A third is closed at once: no method-selection answer, although its greeting is complete.
    const third = await raw(port, [greet]);
    expect(third.data.length).toBe(0);
    expect(await reg.metrics()).toMatch(/bitcloud_socks_refusals_total\{reason="too_many_connections",daemon="test"\} 1/);
    expect(logLines.join('')).toMatch(/SOCKS connection limit reached/);
    // One holder leaves: the next client is served.
    await new Promise<void>((r) => { holders[0].once('close', () => r()); holders[0].destroy(); });
    // …once the server has seen it go (its open-connections gauge says 1).
    while (!/bitcloud_socks_open_connections\{daemon="test"\} 1\b/.test(await reg.metrics())) await new Promise((r) => setImmediate(r));
    const s = await socksClient(port, '127.0.0.1', 7);
    expect((await roundTrip(s, Buffer.from('served'))).toString()).toBe('served');
  });

  it('refuses to bind a non-loopback address without allowPublicBind', () => {
    const onConnect = async () => new PassThrough();
    for (const host of ['0.0.0.0', '192.168.1.10', '::']) {
      try { new Socks5Server({ host, onConnect }); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'SOCKS_PUBLIC_BIND_REFUSED')).toBe(true);
      }
    }
    expect(() => new Socks5Server({ host: '0.0.0.0', allowPublicBind: true, onConnect })).not.toThrow();
    expect(() => new Socks5Server({ host: '127.0.0.2', onConnect })).not.toThrow();
    expect(() => new Socks5Server({ host: '::1', onConnect })).not.toThrow();
  });

  it('refuses a maxConnections that is not an integer ≥ 1 (CONFIG_INVALID)', () => {
    const onConnect = async () => new PassThrough();
    for (const maxConnections of [0, -1, NaN, 1.5, Infinity]) {
      try { new Socks5Server({ onConnect, maxConnections }); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'CONFIG_INVALID')).toBe(true);
      }
    }
    expect(() => new Socks5Server({ onConnect, maxConnections: 1 })).not.toThrow();
  });

  it('counts connections, replies and refusals in metrics', async () => {
    const reg = createRegistry('test');
    const port = await start({ metrics: reg });
    await raw(port, [Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 0])]);
    await raw(port, [greet, connectReq('policy.invalid', 80)]);
    const text = await reg.metrics();
    expect(text).toMatch(/bitcloud_socks_refusals_total\{reason="socks4",daemon="test"\} 1/);
    expect(text).toMatch(/bitcloud_socks_replies_total\{reply="not_allowed",daemon="test"\} 1/);
    expect(text).toMatch(/bitcloud_socks_connections_total\{daemon="test"\} 2/);
  });

  it('property: random bytes never crash the server', async () => {
    const port = await start({ handshakeTimeoutMs: 100 });
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), fc.boolean(), async (bytes, prefixGreeting) => {
      await raw(port, prefixGreeting ? [greet, Buffer.from(bytes)] : [Buffer.from(bytes)], { endAfter: true });
    }), { numRuns: 60 });
    const s = await socksClient(port, '127.0.0.1', 7);
    expect((await roundTrip(s, Buffer.from('alive'))).toString()).toBe('alive');
  });

  it('property: parseRequest returns a request, null, or a SOCKS_ error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try { parseRequest(Buffer.from(bytes)); } catch (e) {
        expect(isBitcloudError(e) && e.code.startsWith('SOCKS_')).toBe(true);
      }
    }));
  });
});
