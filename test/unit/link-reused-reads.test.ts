// SPEC.md §1.6: the initiator of a link reads into one reused buffer (src/link/reader.ts), so
// everything the Channel keeps past a read (the bytes of a paused link, a cell split between two
// reads) must be its own copy. Real TLS links on 127.0.0.1; the cells are many, on many circuits,
// each with its own bytes, and must all arrive in order and unmodified however reading is paused.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { ed25519Generate, randomBytes, type Ed25519KeyPair } from '../../src/crypto/primitives';
import tls from 'node:tls';
import { once } from 'node:events';
import { Channel, counterValue, createLinkListener, discardLinkMetrics, SUPPORTED_LINK_VERSIONS, type LinkMetrics } from '../../src/link';
import { silentLogger } from '../../src/ops/log';
import { LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION } from '../../src/crypto/tls';
import { LinkReader, LINK_READ_BUFFER_BYTES } from '../../src/link/reader';
import { CELL_PAYLOAD_LEN, CellCommand, encodeCell, type Cell } from '../../src/wire/cell';
import { bareLink, HOST, until } from '../helpers/bandwidth-link';

const cleanups: Array<() => unknown> = [];
let relayA: Ed25519KeyPair;
let relayB: Ed25519KeyPair;
beforeAll(() => { relayA = ed25519Generate(); relayB = ed25519Generate(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

/** Well over the reader's buffer and the socket's window, so reads refill the buffer many times. */
const N = 6000;
const CIRCUITS = 64;

const link = () => bareLink(relayA, relayB, cleanups);

/** N RELAY cells with random payloads on CIRCUITS circuits, sent by the responder. */
function sendMany(from: Channel): Array<{ circId: number; payload: Buffer }> {
  const sent = Array.from({ length: N }, (_, i) => ({ circId: 0x8000_0000 + (i % CIRCUITS) + 1, payload: randomBytes(CELL_PAYLOAD_LEN) }));
  for (const c of sent) from.send(c.circId, CellCommand.RELAY, c.payload);
  return sent;
}

/** The cells `ch` emits (copied), until N or the link closes (a corrupted read closes it). */
function record(ch: Channel, onCell?: (n: number) => void): Array<{ circId: number; payload: Buffer }> & { done: () => boolean } {
  let closed = false;
  ch.once('close', () => { closed = true; });
  const got = Object.assign([] as Array<{ circId: number; payload: Buffer }>, { done: () => closed || got.length >= N });
  ch.on('cell', (c: Cell) => {
    got.push({ circId: c.circId, payload: Buffer.from(c.payload) });
    onCell?.(got.length);
  });
  return got;
}

function expectSame(got: Array<{ circId: number; payload: Buffer }>, sent: Array<{ circId: number; payload: Buffer }>): void {
  expect(got.length).toBe(sent.length);
  const bad = got.findIndex((g, i) => g.circId !== sent[i].circId || !g.payload.equals(sent[i].payload));
  expect(bad).toBe(-1);
}

describe('a link read into a reused buffer (SPEC.md §1.6)', () => {
  it('the buffer is one TLS record long', () => {
    expect(LINK_READ_BUFFER_BYTES).toBe(16 * 1024);
    expect(new LinkReader().onread.buffer.length).toBe(LINK_READ_BUFFER_BYTES);
  });

  it('delivers every cell in order and unmodified while reading flows', async () => {
    const { out, inbound } = await link();
    const got = record(out);
    const sent = sendMany(inbound);
    await until(got.done);
    expectSame(got, sent);
  });

  it('keeps its own copy of what arrives while the link is paused', async () => {
    const { out, inbound } = await link();
    const got = record(out);
    out.pauseReading();
    const sent = sendMany(inbound);
    // Let the socket deliver what it can into the paused link (several reads of the one buffer).
    await new Promise((r) => setTimeout(r, 50));
    out.resumeReading();
    await until(got.done);
    expectSame(got, sent);
  });

  it('keeps its own copy of the rest of a read when a cell handler pauses the link mid-read', async () => {
    const { out, inbound } = await link();
    // Pause after every 37th cell (mid-record), resume from a later macrotask.
    const got = record(out, (n) => {
      if (n % 37 === 0) { out.pauseReading(); setImmediate(() => out.resumeReading()); }
    });
    const sent = sendMany(inbound);
    await until(got.done);
    expectSame(got, sent);
  });

  it('a peer that sends its last cells and goes away: an end held after the first still gets the others, in order, before it closes', async () => {
    // Both ends: the responder reads with 'data' events, the initiator into the reused buffer.
    for (const dir of ['to-inbound', 'to-out'] as const) {
      const { out, inbound } = await link();
      const [from, to] = dir === 'to-inbound' ? [out, inbound] : [inbound, out];
      const got: number[] = [];
      let closedAfter = -1;
      // The first cell holds reading (e.g. a link over its circuit-creation rate, SPEC.md §7b.9):
      // the rest of that read waits in the channel.
      to.on('cell', (c: Cell) => { if (got.push(c.circId) === 1) to.holdReading(60_000); });
      const closed = new Promise<void>((r) => to.once('close', () => { closedAfter = got.length; r(); }));
      const ids = [0x8000_0001, 0x8000_0002, 0x8000_0003];
      for (const id of ids) from.send(id, CellCommand.DESTROY, Buffer.alloc(1, 3));
      from.close();
      // The peer's socket is gone; what this end writes now fails (EPIPE or ECONNRESET), closing it.
      const fromSocket = (from as unknown as { socket: tls.TLSSocket }).socket;
      if (!fromSocket.destroyed) await once(fromSocket, 'close');
      const poke = setInterval(() => { if (!to.closed) to.send(0, CellCommand.PADDING, Buffer.alloc(0)); }, 20);
      cleanups.push(() => clearInterval(poke));
      await Promise.race([closed, new Promise((_, no) => setTimeout(() => no(new Error(`the link did not close (${dir})`)), 10_000))]);
      expect({ dir, got }).toEqual({ dir, got: ids });
      expect(closedAfter).toBe(ids.length);
    }
  });

  it('a peer that goes away while its CREATE2s are held unread: they are dropped and counted, its other cells still come in order (SPEC.md §1.7)', async () => {
    const { out, inbound } = await link();
    const got: Array<[number, number]> = [];
    // The first cell holds the responder's reading (a link over its circuit-creation rate, §7b.9).
    inbound.on('cell', (c: Cell) => { if (got.push([c.command, c.circId]) === 1) inbound.holdReading(60_000); });
    const closed = new Promise<void>((r) => inbound.once('close', () => r()));
    const dropped = (inbound as unknown as { metrics: LinkMetrics }).metrics.cellsDropped;
    const before = await counterValue(dropped, { reason: 'create_after_end' });
    out.send(0x8000_0001, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN));
    for (let i = 2; i <= 5; i++) out.send(0x8000_0000 + i, CellCommand.CREATE2, Buffer.alloc(84, i));
    out.send(0x8000_0001, CellCommand.DESTROY, Buffer.alloc(1, 3));
    out.send(0x8000_0006, CellCommand.CREATE2, Buffer.alloc(84, 6));
    out.send(0x8000_0007, CellCommand.RELAY_EARLY, Buffer.alloc(CELL_PAYLOAD_LEN));
    out.close();
    await Promise.race([closed, new Promise((_, no) => setTimeout(() => no(new Error('the link did not close')), 10_000))]);
    expect(got).toEqual([[CellCommand.RELAY, 0x8000_0001], [CellCommand.DESTROY, 0x8000_0001], [CellCommand.RELAY_EARLY, 0x8000_0007]]);
    expect(await counterValue(dropped, { reason: 'create_after_end' }) - before).toBe(5);
  });

  it('an end that comes during the channel\'s first-macrotask defer: the cells held then are delivered without their CREATE2s too (SPEC.md §1.7)', async () => {
    const { inbound } = await link();
    const got: number[] = [];
    inbound.on('cell', (c: Cell) => { got.push(c.command); });
    const dropped = (inbound as unknown as { metrics: LinkMetrics }).metrics.cellsDropped;
    const before = await counterValue(dropped, { reason: 'create_after_end' });
    // The state open() leaves for one macrotask (its 'cell' listener may not be there yet), with
    // cells read meanwhile held, and the peer's end arriving then (onEnd defers it: endPending).
    const ch = inbound as unknown as { deferring: boolean; pending: Buffer[]; onEnd(): void; drainPending(): void };
    ch.deferring = true;
    ch.pending.push(Buffer.concat([
      encodeCell(0x8000_0001, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN)),
      encodeCell(0x8000_0002, CellCommand.CREATE2, Buffer.alloc(84, 2)),
      encodeCell(0x8000_0001, CellCommand.DESTROY, Buffer.alloc(1, 3)),
    ]));
    ch.onEnd();
    expect(got).toEqual([]);
    ch.deferring = false;
    ch.drainPending(); // as open()'s setImmediate does
    expect(got).toEqual([CellCommand.RELAY, CellCommand.DESTROY]);
    expect(await counterValue(dropped, { reason: 'create_after_end' }) - before).toBe(1);
    expect(inbound.closed).toBe(true);
  });

  it('still hands on a CREATE2 read while reading flows, or once a hold ends (only the end drops it, SPEC.md §1.7)', async () => {
    const { out, inbound } = await link();
    const got: number[] = [];
    inbound.on('cell', (c: Cell) => { if (got.push(c.command) === 1) inbound.holdReading(50); });
    out.send(0x8000_0001, CellCommand.CREATE2, Buffer.alloc(84, 1));
    out.send(0x8000_0002, CellCommand.CREATE2, Buffer.alloc(84, 2));
    await until(() => got.length === 2);
    expect(got).toEqual([CellCommand.CREATE2, CellCommand.CREATE2]);
  });

  it('holds the bytes that come before the Channel attaches, as its own memory', () => {
    const r = new LinkReader();
    const buf = r.onread.buffer;
    buf.fill(7, 0, 100);
    r.onread.callback(100, buf);
    buf.fill(9, 0, 100); // the next read overwrites the buffer
    const seen: Array<{ b: Buffer; reused: boolean }> = [];
    r.attach((b, reused) => seen.push({ b: Buffer.from(b), reused }), () => { throw new Error('no fault expected'); });
    expect(seen).toHaveLength(1);
    expect(seen[0].reused).toBe(false);
    expect(seen[0].b.equals(Buffer.alloc(100, 7))).toBe(true);
    r.onread.callback(50, buf);
    expect(seen[1].reused).toBe(true);
    expect(seen[1].b.equals(Buffer.alloc(50, 9))).toBe(true);
  });

  it('fails the link, not the process, if a read ever came while the buffer was in use', () => {
    const r = new LinkReader();
    const faults: string[] = [];
    r.attach(() => { r.onread.callback(10, r.onread.buffer); }, (e) => faults.push(e.code));
    expect(r.onread.callback(10, r.onread.buffer)).toBe(true);
    expect(faults).toEqual(['LINK_INTERNAL']);
  });

  it("handles the responder's first flight that came before the Channel attached (held by the reader)", async () => {
    // The responder sends AUTHENTICATE and VERSIONS as soon as its TLS handshake is done (§1.1),
    // so on a loaded machine they can be read before the initiator's Channel exists. They must be
    // handled as if they came after: checked against the TLS binding, after our own flight.
    const accepted: Channel[] = [];
    const listener = await createLinkListener({ host: HOST, port: 0, identity: relayA, onChannel: (ch) => accepted.push(ch) });
    cleanups.push(() => listener.close());
    const reader = new LinkReader();
    const socket = tls.connect({ host: HOST, port: listener.port, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION, rejectUnauthorized: false, onread: reader.onread } as tls.ConnectionOptions);
    cleanups.push(() => socket.destroy());
    await once(socket, 'secureConnect');
    await until(() => reader.earlyBytes > 0);
    const ch = await new Promise<Channel>((resolve, reject) => {
      new Channel({
        socket, reader, isInitiator: true, expectedIdentity: relayA.publicKey, ownCertHash: null,
        versions: SUPPORTED_LINK_VERSIONS, handshakeTimeoutMs: 5_000, metrics: discardLinkMetrics(), log: silentLogger,
        onOpen: resolve, onFail: reject,
      });
    });
    cleanups.push(() => ch.destroy());
    expect(ch.peerIdentity?.equals(relayA.publicKey)).toBe(true);
    await until(() => accepted.length === 1 && !accepted[0].closed);
    // And the responder's cells reach it in order and unmodified.
    const got = record(ch);
    const sent = sendMany(accepted[0]);
    await until(got.done);
    expectSame(got, sent);
  });
});
