// SPEC.md §1: links over real TLS sockets on 127.0.0.1. Every socket and server a test opens
// is closed in afterEach. No test asserts on time; timeouts here only bound waiting.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import tls from 'node:tls';
import net from 'node:net';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { CELL_LEN, CELL_PAYLOAD_LEN, CellCommand, encodeCell, type Cell } from '../../src/wire/cell';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { generateTlsCredentials, type TlsCredentials } from '../../src/crypto/tls';
import {
  connectLink, createLinkListener, createLinkMetrics, counterValue, type Channel, type ConnectLinkOptions,
  type LinkListenerOptions, type LinkMetrics,
} from '../../src/link';
import { encodeAuthenticate } from '../../src/link/handshake';
import { encodeVersions } from '../../src/wire/messages';
import type { ErrorCode } from '../../src/errors';

const HOST = '127.0.0.1';
let serverTls: TlsCredentials;
let clientTls: TlsCredentials;
let relayA: Ed25519KeyPair;
let relayB: Ed25519KeyPair;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  [serverTls, clientTls] = await Promise.all([generateTlsCredentials(), generateTlsCredentials()]);
  relayA = ed25519Generate();
  relayB = ed25519Generate();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(o: Partial<LinkListenerOptions> & { onChannel: LinkListenerOptions['onChannel'] }) {
  const l = await createLinkListener({ host: HOST, port: 0, identity: relayA, tls: serverTls, ...o });
  cleanups.push(() => l.close());
  return l;
}

async function connect(o: Partial<ConnectLinkOptions> & { port: number }) {
  const ch = await connectLink({ host: HOST, tls: clientTls, ...o });
  cleanups.push(() => ch.destroy());
  return ch;
}

function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'OK', (e: { code?: string }) => e.code ?? String(e));
}

/** An echo responder: sends every cell back on the same circuit. */
const echo = (ch: Channel) => ch.on('cell', (c: Cell) => { ch.send(c.circId, c.command, c.payload); });

/** One cell's round trip on a link (proves the link still serves). */
async function roundTrip(ch: Channel): Promise<void> {
  const id = ch.allocateCircId();
  const got = new Promise<Buffer>((resolve) => ch.once('cell', (c: Cell) => resolve(Buffer.from(c.payload.subarray(0, 5)))));
  ch.send(id, CellCommand.RELAY, Buffer.from('hello'));
  expect((await got).toString()).toBe('hello');
  ch.releaseCircId(id);
}

// Cell content for stream checks: seq (u32) then a ramp that depends on seq and direction.
const RAMP = Buffer.from(Array.from({ length: 1024 }, (_, i) => i & 0xff));
function fillPayload(p: Buffer, seq: number, dir: number): void {
  p.writeUInt32BE(seq, 0);
  const start = (seq * 7 + dir) & 0xff;
  RAMP.copy(p, 4, start, start + CELL_PAYLOAD_LEN - 4);
}

/** Send n cells respecting backpressure: stop at false, go on at 'drain'. Tracks the buffered maximum. */
function pump(ch: Channel, n: number, circId: number, dir: number, stats = { maxBuffered: 0, falses: 0 }): Promise<typeof stats> {
  const p = Buffer.alloc(CELL_PAYLOAD_LEN);
  let seq = 0;
  return new Promise((resolve, reject) => {
    const go = (): void => {
      while (seq < n) {
        fillPayload(p, seq, dir);
        const ok = ch.send(circId, CellCommand.RELAY, p);
        seq++;
        stats.maxBuffered = Math.max(stats.maxBuffered, ch.bufferedBytes);
        if (!ok) { stats.falses++; ch.once('drain', go); return; }
      }
      resolve(stats);
    };
    ch.once('close', (e) => { if (seq < n) reject(e ?? new Error('closed while pumping')); });
    go();
  });
}

/** Check that n cells arrive on circId, in order, each with exactly the expected content. */
function expectStream(ch: Channel, n: number, circId: number, dir: number): Promise<number> {
  const want = Buffer.alloc(CELL_PAYLOAD_LEN);
  let seq = 0;
  return new Promise((resolve, reject) => {
    const onCell = (c: Cell): void => {
      fillPayload(want, seq, dir);
      if (c.circId !== circId || c.command !== CellCommand.RELAY || !c.payload.equals(want)) {
        ch.off('cell', onCell);
        reject(new Error(`cell ${seq} differs: circ ${c.circId} cmd ${c.command} seq ${c.payload.readUInt32BE(0)}`));
        return;
      }
      if (++seq === n) { ch.off('cell', onCell); resolve(seq); }
    };
    ch.on('cell', onCell);
    ch.once('close', (e) => { if (seq < n) reject(e ?? new Error(`closed after ${seq} cells`)); });
  });
}

/** A raw TLS 1.3 client that is not our code: it writes `frames` after TLS and resolves on close. */
async function rawTlsPeer(port: number, frames: Buffer[], opts: { end?: boolean; cert?: TlsCredentials } = {}): Promise<void> {
  const s = tls.connect({
    host: HOST, port, rejectUnauthorized: false, minVersion: 'TLSv1.3',
    ...(opts.cert ? { key: opts.cert.keyPem, cert: opts.cert.certPem } : {}),
  });
  cleanups.push(() => s.destroy());
  s.on('error', () => { /* the responder may reset us; that is the point */ });
  s.resume();
  await once(s, 'secureConnect');
  for (const f of frames) s.write(f);
  if (opts.end) s.end();
  if (!s.closed) await once(s, 'close');
}

const versionsCell = (v: number[] = [1]) => encodeCell(0, CellCommand.VERSIONS, encodeVersions(v));

/** Wait for a condition by polling (a bound on waiting, not an assertion on time). */
async function until(cond: () => Promise<boolean> | boolean, tries = 400): Promise<void> {
  for (let i = 0; i < tries && !(await cond()); i++) await new Promise((r) => setTimeout(r, 5));
}

async function errorsOf(m: LinkMetrics, code: string): Promise<number> {
  return counterValue(m.errors, { code });
}

describe('links: 100,000 cells each way over one link (SPEC.md §1.6)', () => {
  it('arrive complete, in order, byte for byte, in both directions at once', async () => {
    const N = 100_000;
    const metrics = createLinkMetrics(new Registry());
    let serverCh!: (ch: Channel) => void;
    const serverOpen = new Promise<Channel>((r) => { serverCh = r; });
    const l = await listen({ metrics, onChannel: (ch) => serverCh(ch) });
    const client = await connect({ port: l.port, expectedIdentity: relayA.publicKey, identity: relayB });
    const server = await serverOpen;
    const up = client.allocateCircId();
    const down = server.allocateCircId();
    const [gotUp, gotDown] = await Promise.all([
      expectStream(server, N, up, 1),
      expectStream(client, N, down, 2),
      pump(client, N, up, 1),
      pump(server, N, down, 2),
    ]);
    expect(gotUp).toBe(N);
    expect(gotDown).toBe(N);
    expect(client.cellsSent).toBe(N);
    expect(client.cellsReceived).toBe(N);
    expect(server.cellsSent).toBe(N);
    expect(server.cellsReceived).toBe(N);
    // the responder's registry: its own N in and N out
    expect(await counterValue(metrics.cells, { direction: 'in' })).toBe(N);
    expect(await counterValue(metrics.cells, { direction: 'out' })).toBe(N);
  });
});

describe('links: identity binding (SPEC.md §1.3)', () => {
  it('refuses a responder with another identity: LINK_IDENTITY_MISMATCH', async () => {
    const metrics = createLinkMetrics(new Registry());
    const l = await listen({ onChannel: echo });
    expect(await codeOf(connectLink({ host: HOST, port: l.port, expectedIdentity: relayB.publicKey, metrics }))).toBe('LINK_IDENTITY_MISMATCH');
    expect(await errorsOf(metrics, 'LINK_IDENTITY_MISMATCH')).toBe(1);
    expect(await counterValue(metrics.handshakeFailures, { code: 'LINK_IDENTITY_MISMATCH' })).toBe(1);
    // and the right key works on the same listener
    const ok = await connect({ port: l.port, expectedIdentity: relayA.publicKey });
    await roundTrip(ok);
  });

  it('a relay initiator proves its identity; both ends learn the other', async () => {
    const opened: Channel[] = [];
    const l = await listen({ onChannel: (ch) => { opened.push(ch); echo(ch); } });
    const ch = await connect({ port: l.port, expectedIdentity: relayA.publicKey, identity: relayB });
    await roundTrip(ch);
    expect(ch.isInitiator).toBe(true);
    expect(ch.peerIdentity!.equals(relayA.publicKey)).toBe(true);
    expect(ch.linkVersion).toBe(1);
    expect(opened).toHaveLength(1);
    expect(opened[0].isInitiator).toBe(false);
    expect(opened[0].peerIdentity!.equals(relayB.publicKey)).toBe(true);
    expect(opened[0].linkVersion).toBe(1);
  });

  it('a client stays anonymous: the responder sees peerIdentity null', async () => {
    const opened: Channel[] = [];
    const l = await listen({ onChannel: (ch) => { opened.push(ch); echo(ch); } });
    const ch = await connectLink({ host: HOST, port: l.port, expectedIdentity: relayA.publicKey });
    cleanups.push(() => ch.destroy());
    await roundTrip(ch);
    expect(ch.peerIdentity!.equals(relayA.publicKey)).toBe(true);
    expect(opened[0].peerIdentity).toBeNull();
    // and the responder will not build a circuit towards it
    expect(() => opened[0].send(opened[0].allocateCircId(), CellCommand.CREATE2, Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'LINK_PROTOCOL_VIOLATION' }));
    await roundTrip(ch);
  });

  it('cells that arrive together with the handshake are delivered, in order, to listeners attached on open', async () => {
    // responder side: a raw initiator sends VERSIONS and three cells in one write
    const got: number[] = [];
    const three = new Promise<void>((resolve) => {
      void listen({ onChannel: (ch) => ch.on('cell', (c: Cell) => { got.push(c.payload[0]); if (got.length === 3) resolve(); }) }).then((l) => {
        const cells = [1, 2, 3].map((i) => encodeCell(0x8000_0007, CellCommand.RELAY, Buffer.from([i])));
        void rawTlsPeer(l.port, [Buffer.concat([versionsCell(), ...cells])]);
      });
    });
    await three;
    expect(got).toEqual([1, 2, 3]);

    // initiator side: the responder sends at once on open; the initiator attaches after `await`
    const l2 = await listen({ onChannel: (ch) => { const id = ch.allocateCircId(); for (const i of [4, 5, 6]) ch.send(id, CellCommand.RELAY, Buffer.from([i])); } });
    const ch = await connect({ port: l2.port });
    const got2: number[] = [];
    await new Promise<void>((resolve) => ch.on('cell', (c: Cell) => { got2.push(c.payload[0]); if (got2.length === 3) resolve(); }));
    expect(got2).toEqual([4, 5, 6]);
  });

  it('no common version: LINK_NO_COMMON_VERSION', async () => {
    const l = await listen({ onChannel: echo });
    expect(await codeOf(connectLink({ host: HOST, port: l.port, versions: [7, 9] }))).toBe('LINK_NO_COMMON_VERSION');
  });
});

describe('links: a bad peer loses only its own link (SPEC.md §1.7)', () => {
  it('garbage, truncation, bad lengths and violations each close one link; others keep being served', async () => {
    const reg = new Registry();
    const metrics = createLinkMetrics(reg);
    const l = await listen({ metrics, onChannel: echo });
    const good = await connect({ port: l.port, expectedIdentity: relayA.publicKey });
    await roundTrip(good);

    const badVersions = encodeCell(0, CellCommand.VERSIONS, Buffer.alloc(0));
    badVersions.writeUInt16BE(0xffff, 5);
    const auth = (mut: (p: Buffer) => void) => {
      const p = encodeAuthenticate({ authType: 1, role: 2, identity: relayB.publicKey, signature: Buffer.alloc(64, 7) });
      mut(p);
      return encodeCell(0, CellCommand.AUTHENTICATE, p);
    };
    const garbage = Buffer.alloc(3 * CELL_LEN, 0x5a);
    garbage[4] = 0xee; // an unknown command in the first header
    const relayOnZero = Buffer.alloc(CELL_LEN);
    relayOnZero[4] = CellCommand.RELAY;

    const cases: Array<{ name: string; frames: Buffer[]; end?: boolean; cert?: TlsCredentials; code: ErrorCode }> = [
      { name: 'garbage after TLS', frames: [garbage], code: 'CELL_UNKNOWN_COMMAND' },
      { name: 'a truncated cell, then close', frames: [versionsCell(), encodeCell(5, CellCommand.RELAY, Buffer.alloc(9)).subarray(0, 200)], end: true, code: 'CELL_TRUNCATED' },
      { name: 'VERSIONS count beyond the payload', frames: [badVersions], code: 'MSG_MALFORMED' },
      { name: 'AUTHENTICATE with a 31-byte key', frames: [auth((p) => p.writeUInt16BE(31, 3))], cert: clientTls, code: 'MSG_MALFORMED' },
      { name: 'AUTHENTICATE with a bad signature', frames: [auth(() => {})], cert: clientTls, code: 'LINK_AUTH_FAILED' },
      { name: 'a RELAY cell on circuit 0', frames: [versionsCell(), relayOnZero], code: 'CELL_MALFORMED' },
      { name: 'VERSIONS again on an open link', frames: [versionsCell(), versionsCell()], code: 'LINK_PROTOCOL_VIOLATION' },
      { name: 'a cell before VERSIONS', frames: [encodeCell(0x8000_0001, CellCommand.RELAY, Buffer.alloc(0))], code: 'LINK_PROTOCOL_VIOLATION' },
      { name: 'end during the handshake', frames: [], end: true, code: 'LINK_HANDSHAKE_FAILED' },
    ];
    for (const c of cases) {
      const before = await errorsOf(metrics, c.code);
      await rawTlsPeer(l.port, c.frames, { end: c.end, cert: c.cert });
      await new Promise((r) => setImmediate(r));
      expect({ case: c.name, errors: await errorsOf(metrics, c.code) }).toEqual({ case: c.name, errors: before + 1 });
      await roundTrip(good); // the old link is untouched
    }

    // Not TLS at all: counted as a TLS failure, the listener carries on.
    const tlsBefore = await errorsOf(metrics, 'LINK_TLS_FAILED');
    const plain = net.connect(l.port, HOST);
    cleanups.push(() => plain.destroy());
    plain.on('error', () => {});
    plain.end(Buffer.alloc(600, 0x41));
    await once(plain, 'close');
    await until(async () => (await errorsOf(metrics, 'LINK_TLS_FAILED')) > tlsBefore);
    expect(await errorsOf(metrics, 'LINK_TLS_FAILED')).toBe(tlsBefore + 1);

    // A new link after all that opens and works.
    const fresh = await connect({ port: l.port, expectedIdentity: relayA.publicKey, identity: relayB });
    await roundTrip(fresh);
    await roundTrip(good);
    expect(l.channelCount).toBe(2);
  });

  it('a peer that never finishes the handshake is closed with LINK_HANDSHAKE_TIMEOUT', async () => {
    const metrics = createLinkMetrics(new Registry());
    // The listener's handshake deadline also bounds the honest handshake below, which a loaded
    // machine can stall for more than a fraction of a second (both ends share this process): a
    // deadline of seconds, which the silent peer waits out.
    const l = await listen({ metrics, timeoutMs: 5_000, onChannel: echo });
    await rawTlsPeer(l.port, []);
    expect(await errorsOf(metrics, 'LINK_HANDSHAKE_TIMEOUT')).toBe(1);
    const ok = await connect({ port: l.port, expectedIdentity: relayA.publicKey });
    await roundTrip(ok);

    // and an initiator gives up on a silent TCP server
    const silent = net.createServer((s) => { cleanups.push(() => s.destroy()); });
    await new Promise<void>((r) => silent.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => silent.close(r)));
    const port = (silent.address() as net.AddressInfo).port;
    expect(await codeOf(connectLink({ host: HOST, port, timeoutMs: 150 }))).toBe('LINK_HANDSHAKE_TIMEOUT');
  });

  it('a refused connection is LINK_CONNECT_FAILED', async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, HOST, r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    expect(await codeOf(connectLink({ host: HOST, port }))).toBe('LINK_CONNECT_FAILED');
  });

  it('maxConnections: connections past the limit are dropped; the listener serves again once one closes', async () => {
    let opened = 0;
    const l = await listen({ maxConnections: 1, onChannel: (ch) => { opened++; echo(ch); } });
    const first = await connect({ port: l.port });
    await roundTrip(first);
    expect(await codeOf(connectLink({ host: HOST, port: l.port }))).toBe('LINK_TLS_FAILED');
    first.close();
    // The server frees the slot when it sees the socket close; until then it keeps refusing.
    let second: Channel | undefined;
    for (let i = 0; !second && i < 500; i++) second = await connectLink({ host: HOST, port: l.port }).catch(() => undefined);
    cleanups.push(() => second?.destroy());
    await roundTrip(second!);
    expect(opened).toBe(2);
  });

  it('closing the listener closes its links', async () => {
    const l = await createLinkListener({ host: HOST, port: 0, identity: relayA, tls: serverTls, onChannel: echo });
    const ch = await connect({ port: l.port });
    const closed = once(ch, 'close');
    await l.close();
    const [e] = await closed;
    expect(e).toBeUndefined();
    expect(ch.closed).toBe(true);
    expect(() => ch.send(ch.allocateCircId(), CellCommand.RELAY, Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'LINK_CLOSED' }));
  });
});

describe('links: backpressure (SPEC.md §1.6)', () => {
  // Above one full batch (DEFAULT_BATCH_CELLS cells), which the mark never goes below (SPEC.md §1.6).
  const HWM = 128 * 1024;
  const CAP = 512 * 1024;

  it('a slow reader makes send() return false; buffered bytes stay under the mark; all cells arrive after resume', async () => {
    let serverCh!: (ch: Channel) => void;
    const serverOpen = new Promise<Channel>((r) => { serverCh = r; });
    const l = await listen({ onChannel: (ch) => { ch.pauseReading(); serverCh(ch); } });
    const client = await connect({ port: l.port, highWaterMark: HWM, maxBufferedBytes: CAP });
    const server = await serverOpen;
    const id = client.allocateCircId();
    const N = 60_000;
    const received = expectStream(server, N, id, 3);
    const stats = { maxBuffered: 0, falses: 0 };
    const sending = pump(client, N, id, 3, stats);
    // The reader is paused: wait (by bytes, not time) until the writer has been told to stop.
    while (stats.falses === 0) await new Promise((r) => setImmediate(r));
    expect(server.cellsReceived).toBe(0);
    expect(client.bufferedBytes).toBeLessThanOrEqual(HWM + CELL_LEN);
    server.resumeReading();
    await Promise.all([sending, received]);
    expect(stats.falses).toBeGreaterThan(0);
    expect(stats.maxBuffered).toBeLessThanOrEqual(HWM + CELL_LEN);
    expect(server.cellsReceived).toBe(N);
  });

  it('a writer that ignores false is stopped at the hard cap: LINK_OUTPUT_OVERFLOW, never more buffered', async () => {
    const metrics = createLinkMetrics(new Registry());
    let server!: Channel;
    const l = await listen({ onChannel: (ch) => { server = ch; ch.pauseReading(); } });
    const client = await connect({ port: l.port, highWaterMark: HWM, maxBufferedBytes: CAP, metrics });
    const closed = once(client, 'close');
    const id = client.allocateCircId();
    const p = Buffer.alloc(CELL_PAYLOAD_LEN, 1);
    let maxBuffered = 0;
    let sent = 0;
    // Bounded by bytes: the kernel's socket buffers plus CAP, far below this many cells.
    while (!client.closed && sent < 2_000_000) {
      client.send(id, CellCommand.RELAY, p);
      sent++;
      maxBuffered = Math.max(maxBuffered, client.bufferedBytes);
      if (sent % 2000 === 0) await new Promise((r) => setImmediate(r));
    }
    const [e] = await closed;
    expect(e.code).toBe('LINK_OUTPUT_OVERFLOW');
    expect(maxBuffered).toBeLessThanOrEqual(CAP);
    expect(await errorsOf(metrics, 'LINK_OUTPUT_OVERFLOW')).toBe(1);
    expect(server).toBeDefined();
  });
});

describe('links: keepalive and liveness (SPEC.md §1.8)', () => {
  it('a peer that goes silent after the handshake (frozen) is closed with LINK_PEER_SILENT; other links go on', async () => {
    const metrics = createLinkMetrics(new Registry());
    const l = await listen({ metrics, keepaliveMs: 100, livenessTimeoutMs: 1000, onChannel: echo });
    const good = await connect({ port: l.port, expectedIdentity: relayA.publicKey, keepaliveMs: 100, livenessTimeoutMs: 1000 });
    // An anonymous initiator: VERSIONS, then nothing more, ever (as a SIGSTOPped process).
    await rawTlsPeer(l.port, [versionsCell()]);
    expect(await errorsOf(metrics, 'LINK_PEER_SILENT')).toBe(1);
    expect(good.closed).toBe(false);
    await roundTrip(good);
  });

  it('an idle link between two live ends stays open: each end sends PADDING, which the other discards', async () => {
    const metrics = createLinkMetrics(new Registry());
    const l = await listen({ metrics, keepaliveMs: 100, livenessTimeoutMs: 1000, onChannel: echo });
    const ch = await connect({ port: l.port, expectedIdentity: relayA.publicKey, keepaliveMs: 100, livenessTimeoutMs: 1000 });
    const appCells: Cell[] = [];
    ch.on('cell', (c: Cell) => { appCells.push(c); });
    // Many keepalives received: the link has been idle for several liveness timeouts. (A liveness
    // timeout of 1 s, not less: both ends share this process, and a loaded machine can stall it.)
    await until(() => ch.cellsReceived >= 30, 20_000);
    expect(ch.cellsReceived).toBeGreaterThanOrEqual(30);
    expect(appCells).toHaveLength(0);
    expect(ch.closed).toBe(false);
    expect(await errorsOf(metrics, 'LINK_PEER_SILENT')).toBe(0);
    await roundTrip(ch);
  });

  it('an end that holds reading (backpressure) does not count the held time as silence', async () => {
    const metrics = createLinkMetrics(new Registry());
    let server: Channel | null = null;
    const l = await listen({ metrics, keepaliveMs: 50, livenessTimeoutMs: 200, onChannel: (ch) => { server = ch; ch.pauseReading(); } });
    // A client that sends no keepalives: only the server's liveness rule is at work.
    const client = await connect({ port: l.port, expectedIdentity: relayA.publicKey, keepaliveMs: 0, livenessTimeoutMs: 0 });
    await until(() => server !== null);
    // Each tick of the server's liveness timer (every 50 ms) sends one PADDING, the link being
    // otherwise idle, and checks for silence in the same step: 20 PADDINGs at the client are five
    // liveness timeouts with reading held. A server that counted them as silence would close first.
    const base = client.cellsReceived;
    await until(() => server!.closed || client.cellsReceived - base >= 20, 2000);
    expect(client.cellsReceived - base).toBeGreaterThanOrEqual(20);
    expect(server!.closed).toBe(false);
    expect(await errorsOf(metrics, 'LINK_PEER_SILENT')).toBe(0);
    // Reading again, the client's silence counts: the link is closed as silent.
    const closed = once(server!, 'close');
    server!.resumeReading();
    const [e] = await closed as [{ code?: string } | undefined];
    expect(e?.code).toBe('LINK_PEER_SILENT');
  });

  it('refuses a liveness timeout not above twice the keepalive interval (CONFIG_INVALID)', async () => {
    expect(await codeOf(connectLink({ host: HOST, port: 1, keepaliveMs: 100, livenessTimeoutMs: 200 }))).toBe('CONFIG_INVALID');
    await expect(createLinkListener({ host: HOST, port: 0, identity: relayA, tls: serverTls, keepaliveMs: -1, onChannel: echo })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
