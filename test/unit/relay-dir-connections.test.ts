// SPEC.md §6.10 "Connection and body bounds": a relay's dir port holds at most
// `dirMaxConnectionsPerAddress` connections per address and `dirMaxConnections` in all; the configured
// authorities' addresses and the relay's own (BEGIN_DIR splices, §7b.7) are limited by neither.
import { afterEach, describe, expect, it, vi } from 'vitest';
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { DEFAULT_DIR_MAX_CONNECTIONS, DEFAULT_DIR_MAX_CONNECTIONS_PER_ADDRESS, parseRelayConfig } from '../../relay/config';
import { RelayDaemon } from '../../relay/daemon';
import { silentLogger } from '../../src/ops/log';
import { connectionCapsOf } from '../../src/ops/connection-caps';
import { Duplex } from 'node:stream';
import { createDirStreamHandler } from '../../relay/dir-stream';
import { EndReason } from '../../src/wire/messages';
import type { CircuitStream } from '../../src/circuit/stream';
import type { IncomingStream } from '../../src/circuit/types';

const authority = (host: string) => ({ name: 'a', identity: 'ab'.repeat(32), address: `${host}:7000` });
const message = (f: () => unknown): string => { try { f(); } catch (e) { return `${(e as { code?: string }).code}: ${(e as Error).message}`; } return 'no error'; };

const dataDirs: string[] = [];
const sockets: net.Socket[] = [];
let server: http.Server | null = null;
/** The address the dir port listens on. */
let dirHost = '127.0.0.1';
/** Where the relay splices its BEGIN_DIR streams (RelayDaemon.dirSelfHost). */
let selfHost = '127.0.0.1';
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (server) { const s = server; await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }); }
  server = null;
  for (const d of dataDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** The relay's dir port alone (startHttp), on 127.0.0.1, with `extra` in its config. */
async function startDirPort(extra: Record<string, unknown>): Promise<{ port: number; refused: () => Promise<Record<string, number>> }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-dirconn-'));
  dataDirs.push(dataDir);
  const registry = new Registry();
  const cfg = parseRelayConfig({ dataDir, orPort: 0, listenHost: '127.0.0.1', authorities: [authority('127.0.0.3')], ...extra }, '/x');
  dirHost = cfg.listenHost;
  const d = new RelayDaemon(cfg, silentLogger, registry);
  const inner = d as unknown as { startHttp(): Promise<void>; http: http.Server | null; dirPort: number; dirSelfHost(): string };
  selfHost = inner.dirSelfHost();
  await inner.startHttp();
  server = inner.http;
  const refused = async () => {
    const metric = registry.getSingleMetric('bitcloud_relay_dir_connections_refused_total');
    const out: Record<string, number> = {};
    for (const v of (await metric!.get()).values) out[String(v.labels.reason)] = v.value;
    return out;
  };
  return { port: inner.dirPort, refused };
}

/** Connections the server has closed already. */
const closed = new WeakSet<net.Socket>();

/** A connection from `localAddress`, once both ends have it (the server has accepted it, or refused it). */
async function open(port: number, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ port, host: dirHost, localAddress });
  sockets.push(s);
  s.on('error', () => {});
  s.once('close', () => closed.add(s));
  await Promise.all([
    new Promise<void>((r) => server!.once('connection', () => r())),
    new Promise<void>((r) => s.once('connect', () => r())),
  ]);
  return s;
}

/** Sends one request on `s`: its status line, or null when the server closed the connection unanswered. */
function ask(s: net.Socket): Promise<string | null> {
  if (closed.has(s)) return Promise.resolve(null);
  return new Promise((resolve) => {
    let got = '';
    s.on('close', () => resolve(null));
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); const i = got.indexOf('\r\n'); if (i >= 0) resolve(got.slice(0, i)); });
    s.write('GET /bitcloud/status HTTP/1.1\r\nhost: x\r\n\r\n');
  });
}

/** A stream of a circuit, as far as the BEGIN_DIR splice uses one: what the client sends is pushed, what reaches it is `answer`'s. */
class FakeStream extends Duplex {
  state = 'opening';
  constructor(private readonly answer: (d: Buffer) => void) { super(); }
  override _read(): void {}
  override _write(d: Buffer, _e: BufferEncoding, cb: () => void): void { this.answer(d); cb(); }
  abort(): void { this.destroy(); }
}

/** A BEGIN_DIR stream spliced to the dir port as the relay does (§7b.7): its first answer line, or null when refused or closed unanswered. */
function beginDir(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    let got = '';
    const stream: FakeStream = new FakeStream((d) => { got += d.toString('latin1'); const i = got.indexOf('\r\n'); if (i >= 0) { resolve(got.slice(0, i)); stream.destroy(); } });
    stream.on('close', () => resolve(null));
    const inc = {
      kind: 'begin_dir', begin: null, oneHop: false, stream: stream as unknown as CircuitStream,
      accept: () => { stream.state = 'open'; stream.push('GET /bitcloud/status HTTP/1.1\r\nhost: x\r\n\r\n'); },
      refuse: () => { stream.destroy(); },
    } as unknown as IncomingStream;
    createDirStreamHandler(() => ({ port, host: selfHost }))(inc);
  });
}

describe('relay dir port connection caps (SPEC.md §6.10)', () => {
  it('with dirMaxConnectionsPerAddress 3, the 4th concurrent connection of an address is closed while the first 3 are served', async () => {
    const { port, refused } = await startDirPort({ dirMaxConnectionsPerAddress: 3 });
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await open(port, '127.0.0.2'));
    expect(await ask(held[3])).toBeNull();
    for (const s of held.slice(0, 3)) expect(await ask(s)).toBe('HTTP/1.1 200 OK');
    expect(await refused()).toEqual({ per_address: 1 });
    // Another address still connects.
    expect(await ask(await open(port, '127.0.0.4'))).toBe('HTTP/1.1 200 OK');
  });

  it('the total cap; a configured authority and the relay\'s own address (BEGIN_DIR) are limited by neither', async () => {
    const { port, refused } = await startDirPort({ dirMaxConnections: 16, dirMaxConnectionsPerAddress: 8 });
    for (let i = 0; i < 8; i++) await open(port, '127.0.0.2');
    for (let i = 0; i < 8; i++) await open(port, '127.0.0.4');
    expect(await ask(await open(port, '127.0.0.5'))).toBeNull();
    expect(await refused()).toEqual({ total: 1 });
    const exempt = [];
    for (let i = 0; i < 10; i++) exempt.push(await open(port, '127.0.0.3'), await open(port, '127.0.0.1'));
    for (const s of exempt) expect(await ask(s)).toBe('HTTP/1.1 200 OK');
    expect(await refused()).toEqual({ total: 1 });
  });

  it('an authority listed by host name (localhost) is exempt at the addresses the name resolves to', async () => {
    // Listening on 127.0.0.2, the relay's own address toward its dir port is 127.0.0.2, not 127.0.0.1.
    const { port, refused } = await startDirPort({ listenHost: '127.0.0.2', authorities: [authority('localhost')], dirMaxConnectionsPerAddress: 1 });
    await connectionCapsOf(server!)!.ready;
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await open(port, '127.0.0.1'));
    for (const s of held) expect(await ask(s)).toBe('HTTP/1.1 200 OK');
    await open(port, '127.0.0.4');
    expect(await ask(await open(port, '127.0.0.4'))).toBeNull();
    expect(await refused()).toEqual({ per_address: 1 });
  });

  it('listening on a loopback address but 127.0.0.1, the BEGIN_DIR splices still come from the exempt address', async () => {
    // The kernel's source for a connection to 127.0.0.2 is 127.0.0.1 unless the splice binds one.
    const { port, refused } = await startDirPort({ listenHost: '127.0.0.2', dirMaxConnectionsPerAddress: 1 });
    const answers = await Promise.all([beginDir(port), beginDir(port), beginDir(port)]);
    expect(answers).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(await refused()).toEqual({});
  });

  it('listening on every address however it is written, the BEGIN_DIR splices go to loopback and are exempt', async () => {
    for (const listenHost of ['0:0:0:0:0:0:0:0', '::0']) {
      const { port, refused } = await startDirPort({ listenHost, dirMaxConnectionsPerAddress: 1 });
      const answers = await Promise.all([beginDir(port), beginDir(port), beginDir(port)]);
      expect(answers).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
      expect(await refused()).toEqual({});
      const s = server!;
      await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
      server = null;
    }
  });

  it('listening on :: (every address), the relay\'s own address toward its dir port is ::1, and exempt', async () => {
    const { port, refused } = await startDirPort({ listenHost: '::', dirMaxConnectionsPerAddress: 1 });
    dirHost = '::1';
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await open(port, '::1'));
    for (const s of held) expect(await ask(s)).toBe('HTTP/1.1 200 OK');
    expect(await refused()).toEqual({});
  });

  it('takes dirMaxConnections and dirMaxConnectionsPerAddress from the configuration, validated as an authority\'s', () => {
    const base = { dataDir: 'd', orPort: 0, authorities: [authority('127.0.0.3')] };
    const cfg = parseRelayConfig(base, '/x');
    expect([cfg.dirMaxConnections, cfg.dirMaxConnectionsPerAddress]).toEqual([DEFAULT_DIR_MAX_CONNECTIONS, DEFAULT_DIR_MAX_CONNECTIONS_PER_ADDRESS]);
    expect([DEFAULT_DIR_MAX_CONNECTIONS, DEFAULT_DIR_MAX_CONNECTIONS_PER_ADDRESS]).toEqual([512, 64]);
    expect(message(() => parseRelayConfig({ ...base, dirMaxConnections: 15 }, '/x'))).toMatch(/CONFIG_INVALID: dirMaxConnections: must be between 16/);
    expect(message(() => parseRelayConfig({ ...base, dirMaxConnectionsPerAddress: 0 }, '/x'))).toMatch(/CONFIG_INVALID: dirMaxConnectionsPerAddress: must be between 1/);
  });
});

describe('BEGIN_DIR splices are bounded for the whole relay (SPEC.md §7b.9 maxDirStreams)', () => {
  it('past the bound a BEGIN_DIR ends END(RESOURCELIMIT) before any connection; a splice whose stream and socket closed frees its place', async () => {
    const { ResolveGate } = await import('../../relay/exit');
    const held: net.Socket[] = [];
    // A dir port that accepts and holds (a client keeping its splices busy looks the same to the relay).
    const port_ = net.createServer((c) => { held.push(c); c.on('error', () => {}); });
    await new Promise<void>((r) => port_.listen(0, '127.0.0.1', r));
    const port = (port_.address() as net.AddressInfo).port;
    const splices = new ResolveGate(2);
    let refusals = 0;
    const handler = createDirStreamHandler(() => ({ port, host: '127.0.0.1' }), { splices, onRefused: () => { refusals++; } });
    const begin = (): { stream: FakeStream; refused: number[] } => {
      const stream = new FakeStream(() => {});
      stream.on('error', () => {});
      const refused: number[] = [];
      handler({
        kind: 'begin_dir', begin: null, oneHop: false, stream: stream as unknown as CircuitStream,
        accept: () => { stream.state = 'open'; },
        refuse: (reason: number) => { refused.push(reason); stream.destroy(); },
      } as unknown as IncomingStream);
      return { stream, refused };
    };
    try {
      const a = begin();
      const b = begin();
      await vi.waitFor(() => expect(a.stream.state === 'open' && b.stream.state === 'open').toBe(true), { timeout: 5000 });
      const c = begin();
      expect(c.refused).toEqual([EndReason.RESOURCELIMIT]);
      expect(refusals).toBe(1);
      expect(held).toHaveLength(2);
      // One splice goes, its stream and its socket: its place is free again. The other's stream
      // is still open: it keeps its place though its socket closed.
      a.stream.destroy();
      for (const s of held) s.destroy();
      await vi.waitFor(() => expect(splices.active).toBe(1), { timeout: 5000 });
      const d = begin();
      await vi.waitFor(() => expect(d.stream.state).toBe('open'), { timeout: 5000 });
      expect(d.refused).toEqual([]);
      b.stream.destroy();
      d.stream.destroy();
    } finally {
      for (const s of held) s.destroy();
      port_.close();
    }
  });
});
