// SPEC.md §7b.6, §7b.8 (and §7.4): streams at either end of a circuit — DATA framing, stream and
// circuit windows, SENDME v1 digests, reader-driven stream SENDMEs, END semantics, violations.
import { describe, expect, it } from 'vitest';
import { StreamEdge, type EdgeCircuit } from '../../src/circuit/edge';
import type { CircuitStream } from '../../src/circuit/stream';
import { RelayCommand, RELAY_DATA_MAX } from '../../src/wire/relay-msg';
import { EndReason, encodeConnected, encodeEnd, encodeSendme, decodeSendme, decodeEnd } from '../../src/wire/messages';
import { endReasonError, endReasonForErrno } from '../../src/circuit/end-reasons';
import { socksReplyFor } from '../../src/client/socks5';
import { SocksReply } from '../../src/wire/socks';
import { err } from '../../src/errors';

interface Sent { command: number; streamId: number; data: Buffer; digest: Buffer }

class FakeCircuit implements EdgeCircuit {
  sent: Sent[] = [];
  violations: string[] = [];
  congested = false;
  private n = 0;
  sendRelay(command: number, streamId: number, data: Uint8Array): void {
    const digest = Buffer.alloc(20);
    digest.writeUInt32BE(++this.n, 0); // a distinct "running digest" per sent cell
    this.sent.push({ command, streamId, data: Buffer.from(data), digest });
  }
  lastSentDigest(): Uint8Array { return this.sent[this.sent.length - 1].digest; }
  writable(): boolean { return !this.congested; }
  violation(code: string): void { this.violations.push(code); }
  take(cmd?: number): Sent[] { const out = this.sent.filter((s) => cmd === undefined || s.command === cmd); this.sent = []; return out; }
}

const tick = () => new Promise((r) => setImmediate(r));
let rxCounter = 0;
const rxDigest = () => { const d = Buffer.alloc(20); d.writeUInt32BE(++rxCounter, 16); return d; };

function openPair(): { circ: FakeCircuit; edge: StreamEdge } {
  const circ = new FakeCircuit();
  return { circ, edge: new StreamEdge(circ) };
}

describe('sending: DATA cells under the windows', () => {
  it('splits writes into DATA cells of at most 498 bytes, only once open', async () => {
    const { circ, edge } = openPair();
    const s = edge.newStream();
    s.write(Buffer.alloc(1200, 7));
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(0); // not before CONNECTED
    edge.handle(RelayCommand.CONNECTED, s.id, encodeConnected({ addr: '127.0.0.1', ttl: 60 }), rxDigest);
    await tick();
    const cells = circ.take(RelayCommand.DATA);
    expect(cells.map((c) => c.data.length)).toEqual([RELAY_DATA_MAX, RELAY_DATA_MAX, 1200 - 2 * RELAY_DATA_MAX]);
    expect(cells.every((c) => c.streamId === s.id)).toBe(true);
  });

  it('an empty write sends no DATA cell and spends no window (alone, and as the whole of a writev)', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(8);
    s.markOpen();
    const window0 = s.packageWindow.window;
    let done = 0;
    s.write(Buffer.alloc(0), () => { done++; });
    await tick();
    expect(done).toBe(1);
    expect(circ.take(RelayCommand.DATA)).toHaveLength(0);
    s.cork(); // two empty writes come as one writev
    s.write(Buffer.alloc(0));
    s.write(Buffer.alloc(0), () => { done++; });
    s.uncork();
    await tick();
    expect(done).toBe(2);
    expect(circ.take(RelayCommand.DATA)).toHaveLength(0);
    expect(s.packageWindow.window).toBe(window0);
    s.write(Buffer.from('after'));
    await tick();
    expect(circ.take(RelayCommand.DATA).map((c) => c.data.toString())).toEqual(['after']);
  });

  it('writes queued while one is sent go out in order, unmodified, in full cells, without joining them first', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(9);
    s.markOpen();
    circ.congested = true; // the link pushes back: the writes below queue up and come as one writev
    const parts = [Buffer.alloc(5, 1), Buffer.alloc(3000, 2), Buffer.alloc(0), Buffer.alloc(1, 3), Buffer.alloc(700, 4), Buffer.alloc(2, 5), Buffer.alloc(996, 6)]
      .map((b) => { for (let i = 0; i < b.length; i++) b[i] = (b[i] + i) & 0xff; return b; });
    s.cork();
    for (const p of parts) s.write(p);
    s.uncork();
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(0);
    circ.congested = false;
    edge.pumpAll();
    await tick();
    const cells = circ.take(RelayCommand.DATA);
    const total = parts.reduce((a, b) => a + b.length, 0);
    expect(Buffer.concat(cells.map((c) => c.data)).equals(Buffer.concat(parts))).toBe(true);
    expect(cells).toHaveLength(Math.ceil(total / RELAY_DATA_MAX));
    expect(cells.slice(0, -1).every((c) => c.data.length === RELAY_DATA_MAX)).toBe(true);
  });

  it('a large chunk queued behind another is sent from its own bytes (views), not from a joined copy', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(10);
    s.markOpen();
    circ.congested = true;
    const big = Buffer.alloc(300 * RELAY_DATA_MAX, 9);
    s.cork();
    s.write(Buffer.alloc(RELAY_DATA_MAX, 1));
    s.write(big);
    s.uncork();
    const seen: Buffer[] = [];
    const send = edge.sendData.bind(edge);
    edge.sendData = (st, data) => { seen.push(data); send(st, data); };
    circ.congested = false;
    edge.pumpAll();
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(301);
    expect(seen.slice(1).every((d) => d.buffer === big.buffer)).toBe(true);
  });

  it('stops at the stream window (500 cells) and resumes on a stream SENDME', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(5);
    s.markOpen();
    let done = false;
    s.write(Buffer.alloc(600 * RELAY_DATA_MAX), () => { done = true; });
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(500);
    expect(done).toBe(false);
    // Progress inside the one write, before its callback (the storage node's idle rule reads it).
    expect(s.sentBytes).toBe(500 * RELAY_DATA_MAX);
    edge.handle(RelayCommand.SENDME, 5, Buffer.alloc(0), rxDigest);
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(50);
    edge.handle(RelayCommand.SENDME, 5, Buffer.alloc(0), rxDigest);
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(50);
    expect(done).toBe(true);
    expect(s.sentBytes).toBe(600 * RELAY_DATA_MAX);
  });

  it('shares the circuit window (1000) between streams; a circuit SENDME must carry the v1 digest of the 100th cell', async () => {
    const { circ, edge } = openPair();
    const streams = [1, 2, 3].map((id) => { const s = edge.acceptStream(id); s.markOpen(); return s; });
    for (const s of streams) s.write(Buffer.alloc(450 * RELAY_DATA_MAX));
    await tick();
    const cells = circ.take(RelayCommand.DATA);
    expect(cells).toHaveLength(1000);
    const boundary = cells[99].digest;
    // A SENDME carrying another digest is refused: the circuit is destroyed.
    edge.handle(RelayCommand.SENDME, 0, encodeSendme({ version: 1, digest: cells[98].digest }), rxDigest);
    expect(circ.violations).toEqual(['SENDME_BAD_DIGEST']);
    circ.violations = [];
    // An unauthenticated (v0) circuit SENDME is refused too.
    const { circ: c2, edge: e2 } = openPair();
    const s2 = e2.acceptStream(1); s2.markOpen(); s2.write(Buffer.alloc(150 * RELAY_DATA_MAX));
    await tick();
    e2.handle(RelayCommand.SENDME, 0, encodeSendme({ version: 0 }), rxDigest);
    expect(c2.violations).toEqual(['SENDME_BAD_DIGEST']);
    // The right digest reopens 100 cells.
    const { circ: c3, edge: e3 } = openPair();
    const ss = [1, 2, 3].map((id) => { const s = e3.acceptStream(id); s.markOpen(); return s; });
    for (const s of ss) s.write(Buffer.alloc(450 * RELAY_DATA_MAX));
    await tick();
    const c3cells = c3.take(RelayCommand.DATA);
    expect(c3cells).toHaveLength(1000);
    e3.handle(RelayCommand.SENDME, 0, encodeSendme({ version: 1, digest: c3cells[99].digest }), rxDigest);
    await tick();
    expect(c3.take(RelayCommand.DATA)).toHaveLength(100);
    expect(c3.violations).toEqual([]);
    expect(boundary).toBeDefined();
  });

  it('an early circuit SENDME (nothing to acknowledge) destroys the circuit', () => {
    const { circ, edge } = openPair();
    edge.handle(RelayCommand.SENDME, 0, encodeSendme({ version: 1, digest: Buffer.alloc(20) }), rxDigest);
    expect(circ.violations).toEqual(['SENDME_UNEXPECTED']);
  });

  it('an extra stream SENDME is a violation', () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(9); s.markOpen();
    edge.handle(RelayCommand.SENDME, 9, Buffer.alloc(0), rxDigest);
    expect(circ.violations).toEqual(['SENDME_UNEXPECTED']);
  });

  it('a stream SENDME body is version 0 (SPEC.md §2.7.5): a higher version, a v1 digest or stray bytes destroy the circuit and open no window', async () => {
    const bodies: [number[], string][] = [
      [[0x02, 0, 0], 'MSG_UNSUPPORTED'],
      [[0x01, 0, 20, ...new Array<number>(20).fill(0)], 'MSG_MALFORMED'],
      [[0x00, 0, 0, 7], 'MSG_MALFORMED'],
      [[0x00, 0, 5], 'MSG_TRUNCATED'],
    ];
    for (const [body, code] of bodies) {
      const { circ, edge } = openPair();
      const s = edge.acceptStream(5); s.markOpen();
      s.write(Buffer.alloc(600 * RELAY_DATA_MAX));
      await tick();
      expect(circ.take(RelayCommand.DATA)).toHaveLength(500);
      edge.handle(RelayCommand.SENDME, 5, Buffer.from(body), rxDigest);
      await tick();
      expect(circ.violations).toEqual([code]);
      expect(circ.take(RelayCommand.DATA)).toHaveLength(0);
    }
    // The empty body and a versioned body of version 0 (its data ignored) are accepted.
    for (const body of [[], [0x00, 0, 2, 9, 9]]) {
      const { circ, edge } = openPair();
      const s = edge.acceptStream(5); s.markOpen();
      s.write(Buffer.alloc(600 * RELAY_DATA_MAX));
      await tick();
      circ.take();
      edge.handle(RelayCommand.SENDME, 5, Buffer.from(body), rxDigest);
      await tick();
      expect(circ.violations).toEqual([]);
      expect(circ.take(RelayCommand.DATA)).toHaveLength(50);
    }
  });

  it('does not send while the link is congested; pumpAll resumes', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(1); s.markOpen();
    circ.congested = true;
    s.write(Buffer.alloc(3 * RELAY_DATA_MAX));
    await tick();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(0);
    circ.congested = false;
    edge.pumpAll();
    expect(circ.take(RelayCommand.DATA)).toHaveLength(3);
  });
});

describe('receiving: deliver windows and SENDMEs', () => {
  it('sends a circuit SENDME v1 after each 100th DATA cell, with that cell\'s digest', () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(1); s.markOpen(); s.resume();
    let last = Buffer.alloc(0);
    for (let i = 0; i < 100; i++) edge.handle(RelayCommand.DATA, 1, Buffer.alloc(10), () => (last = rxDigest()));
    const sendmes = circ.take(RelayCommand.SENDME).filter((c) => c.streamId === 0);
    expect(sendmes).toHaveLength(1);
    expect(decodeSendme(sendmes[0].data)).toEqual({ version: 1, digest: last });
  });

  it('DATA beyond the stream window destroys the circuit', () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(1); s.markOpen();
    s.pause();
    for (let i = 0; i < 501; i++) edge.handle(RelayCommand.DATA, 1, Buffer.alloc(1), rxDigest);
    expect(circ.violations).toContain('SENDME_WINDOW_EXCEEDED');
  });

  it('stream SENDMEs wait for the reader: a paused reader gets none once its buffer is full', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(1); s.markOpen();
    s.pause();
    for (let i = 0; i < 400; i++) edge.handle(RelayCommand.DATA, 1, Buffer.alloc(RELAY_DATA_MAX), rxDigest);
    await tick();
    const streamSendmes = () => circ.take(RelayCommand.SENDME).filter((c) => c.streamId === 1).length;
    const early = streamSendmes();
    expect(early).toBeLessThanOrEqual(2); // only while the read buffer (64 KiB) had room
    let got = 0;
    s.on('data', (d: Buffer) => { got += d.length; });
    s.resume();
    await tick(); await tick();
    expect(got).toBe(400 * RELAY_DATA_MAX);
    expect(early + streamSendmes()).toBe(8); // 400 / 50
  });

  it('circuit SENDMEs are withheld while the circuit\'s streams hold more than the bound unread (SPEC.md §7b.9), and resume once readers take it', async () => {
    const circ = new FakeCircuit();
    const bound = 1024 * 1024;
    const edge = new StreamEdge(circ, { maxBufferedBytes: bound });
    // 20 streams whose targets never read (or never connect): each could hold a stream window.
    const streams = Array.from({ length: 20 }, (_, i) => edge.acceptStream(i + 1));
    streams.slice(10).forEach((st) => st.markOpen());
    // The peer sends as fast as the circuit and stream windows let it.
    let circWin = 1000;
    const streamWin = new Map(streams.map((st) => [st.id, 500]));
    const peerReads = () => {
      for (const c of circ.take(RelayCommand.SENDME)) {
        if (c.streamId === 0) circWin += 100; else streamWin.set(c.streamId, streamWin.get(c.streamId)! + 50);
      }
    };
    const buffered = () => streams.reduce((n, st) => n + st.readableLength, 0);
    for (let round = 0; round < 200; round++) {
      let sent = 0;
      for (const st of streams) {
        for (let k = 0; k < 25 && circWin > 0 && streamWin.get(st.id)! > 0; k++) {
          edge.handle(RelayCommand.DATA, st.id, Buffer.alloc(RELAY_DATA_MAX), rxDigest);
          circWin--; streamWin.set(st.id, streamWin.get(st.id)! - 1); sent++;
        }
      }
      await tick();
      peerReads();
      if (sent === 0) break;
    }
    expect(circ.violations).toEqual([]);
    expect(buffered()).toBeLessThanOrEqual(bound + 1000 * RELAY_DATA_MAX);
    expect(buffered()).toBeGreaterThan(bound); // the peer did fill up to the bound
    expect(circWin).toBe(0);
    // The readers take it all: the withheld circuit SENDMEs go out.
    for (const st of streams) st.resume();
    await tick(); await tick();
    peerReads();
    expect(buffered()).toBe(0);
    expect(circWin).toBeGreaterThan(0);
  });

  it('streams the peer ended but whose readers have not taken their data still count against the unread bound (SPEC.md §7b.9)', async () => {
    const circ = new FakeCircuit();
    const bound = 1024 * 1024;
    const edge = new StreamEdge(circ, { maxBufferedBytes: bound });
    // The peer fills one stream up to its window, ends it (DONE), and opens the next, for as long
    // as the circuit window lets it; the targets never read.
    let circWin = 1000;
    const streams: ReturnType<StreamEdge['acceptStream']>[] = [];
    const buffered = () => streams.reduce((n, st) => n + st.readableLength, 0);
    for (let id = 1; id <= 200 && circWin > 0; id++) {
      const st = edge.acceptStream(id);
      st.markOpen();
      streams.push(st);
      for (let k = 0; k < 500 && circWin > 0; k++) {
        edge.handle(RelayCommand.DATA, id, Buffer.alloc(RELAY_DATA_MAX), rxDigest);
        circWin--;
      }
      edge.handle(RelayCommand.END, id, encodeEnd(EndReason.DONE), rxDigest);
      await tick();
      for (const c of circ.take(RelayCommand.SENDME)) if (c.streamId === 0) circWin += 100;
    }
    expect(circ.violations).toEqual([]);
    expect(circWin).toBe(0); // the peer was stopped at the circuit window
    expect(buffered()).toBeLessThanOrEqual(bound + 1000 * RELAY_DATA_MAX);
    // Once the readers take it all, the withheld circuit SENDMEs go out.
    for (const st of streams) st.resume();
    await tick(); await tick();
    for (const c of circ.take(RelayCommand.SENDME)) if (c.streamId === 0) circWin += 100;
    expect(buffered()).toBe(0);
    expect(circWin).toBeGreaterThan(0);
  });

  it('the unread total the bound is checked against is the sum over its streams after arrivals, reads, ENDs and closes (SPEC.md §7b.9)', async () => {
    const circ = new FakeCircuit();
    const edge = new StreamEdge(circ, { maxBufferedBytes: 1024 * 1024 });
    const all = Array.from({ length: 6 }, (_, i) => { const st = edge.acceptStream(i + 1); st.markOpen(); return st; });
    // Counted: the open streams, and those released with data unread until it is read or they close.
    const draining = (edge as unknown as { draining: Set<CircuitStream> }).draining;
    const sum = () => [...edge.streams.values(), ...draining].reduce((n, st) => n + st.unreadBytes, 0);
    const checks: number[][] = [];
    const check = () => { checks.push([edge.unreadBytes, sum()]); };
    const data = (id: number, n: number) => { for (let k = 0; k < n; k++) edge.handle(RelayCommand.DATA, id, Buffer.alloc(RELAY_DATA_MAX), rxDigest); };
    data(1, 3); data(2, 5); data(3, 1);
    check(); // gathered, not pushed yet
    await tick();
    check(); // pushed
    expect(edge.unreadBytes).toBe(9 * RELAY_DATA_MAX);
    expect(all[1].read(100)).toHaveLength(100);
    check();
    expect(all[0].read()).not.toBeNull();
    check();
    data(4, 7);
    edge.handle(RelayCommand.END, 4, encodeEnd(EndReason.DONE), rxDigest); // ended with its data unread
    check();
    expect(draining.has(all[3])).toBe(true);
    data(5, 2);
    await tick();
    all[4].on('error', () => {});
    edge.handle(RelayCommand.END, 5, encodeEnd(EndReason.MISC), rxDigest); // an error end: its data goes
    all[2].destroy();
    check();
    const got: Buffer[] = [];
    all[3].on('data', (d: Buffer) => got.push(d));
    all[1].resume();
    data(2, 2);
    await tick(); await tick();
    check();
    expect(Buffer.concat(got)).toHaveLength(7 * RELAY_DATA_MAX);
    all[5].unshift(Buffer.alloc(10));
    check();
    for (const [total, expected] of checks) expect(total).toBe(expected);
    expect(edge.unreadBytes).toBe(all[5].unreadBytes + all[0].unreadBytes);
    for (const st of all) st.on('error', () => {});
    edge.close(err('CIRCUIT_DESTROYED', 'gone'));
    expect(edge.unreadBytes).toBe(0);
  });

  it('one read of interleaved DATA for 40 streams: each reader gets its bytes in order, unmodified, in one push per read', async () => {
    // The cells of one link read are handled back to back (the data views are reused between
    // cells, as a link's are); each stream gathers them and pushes once at the end of the read.
    const edge = new StreamEdge(new FakeCircuit(), { maxStreams: 64 });
    const streams = Array.from({ length: 40 }, (_, i) => { const s = edge.acceptStream(i + 1); s.markOpen(); return s; });
    const got = streams.map(() => [] as Buffer[]);
    streams.forEach((s, i) => s.on('data', (d: Buffer) => got[i].push(d)));
    const expected = streams.map(() => [] as Buffer[]);
    const cell = Buffer.alloc(RELAY_DATA_MAX);
    for (let read = 0; read < 3; read++) {
      for (let k = 0; k < 12; k++) {
        for (let i = 0; i < streams.length; i++) {
          const len = 1 + ((read * 977 + k * 131 + i * 37) % RELAY_DATA_MAX);
          for (let j = 0; j < len; j++) cell[j] = (i * 7 + k * 3 + read * 11 + j) & 0xff;
          expected[i].push(Buffer.from(cell.subarray(0, len)));
          edge.handle(RelayCommand.DATA, i + 1, cell.subarray(0, len), rxDigest);
        }
      }
      await tick();
      for (let i = 0; i < streams.length; i++) expect(got[i]).toHaveLength(read + 1); // one push per read
    }
    for (let i = 0; i < streams.length; i++) expect(Buffer.concat(got[i]).equals(Buffer.concat(expected[i]))).toBe(true);
  });

  it('a 0-byte DATA is ignored and takes no receive buffer: 512 streams of one empty DATA each hold none (SPEC.md §7b.6, §7b.9)', async () => {
    const circ = new FakeCircuit();
    const edge = new StreamEdge(circ, { maxStreams: 512 });
    const streams = Array.from({ length: 512 }, (_, i) => { const s = edge.acceptStream(i + 1); s.markOpen(); return s; });
    const src = Buffer.alloc(RELAY_DATA_MAX);
    for (let i = 0; i < streams.length; i++) edge.handleData(i + 1, src, 0, 0, rxDigest);
    expect(streams.filter((s) => s.holdsRxBuffer)).toHaveLength(0);
    await tick();
    expect(streams.filter((s) => s.holdsRxBuffer)).toHaveLength(0);
    // Data after the empty DATA is delivered as usual, and its buffer is given back once pushed.
    const got: Buffer[] = [];
    streams[0].on('data', (d: Buffer) => got.push(d));
    edge.handleData(1, Buffer.from('abc'), 0, 3, rxDigest);
    edge.handleData(1, src, 0, 0, rxDigest);
    await tick();
    expect(Buffer.concat(got).toString()).toBe('abc');
    expect(streams.filter((s) => s.holdsRxBuffer)).toHaveLength(0);
    expect(circ.violations).toEqual([]);
  });

  it('a stream destroyed while it holds received DATA not yet pushed gives its receive buffer back (SPEC.md §7b.9)', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(6);
    s.markOpen();
    s.on('error', () => {});
    edge.handleData(6, Buffer.from('never read'), 0, 10, rxDigest);
    expect(s.holdsRxBuffer).toBe(true); // gathered, to be pushed at the end of the read
    s.destroy(err('STREAM_CLOSED', 'gone'));
    expect(s.holdsRxBuffer).toBe(false);
    expect(s.unreadBytes).toBe(0);
    await tick();
    expect(s.holdsRxBuffer).toBe(false);
    expect(circ.violations).toEqual([]);
  });

  it('DATA received but not yet pushed when this end ends the stream reaches the reader before its end, with no error (SPEC.md §7b.6)', async () => {
    const { edge } = openPair();
    const s = edge.acceptStream(5);
    s.markOpen();
    const got: Buffer[] = [];
    const errors: Error[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', (e) => errors.push(e));
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    edge.handleData(5, Buffer.from('last words'), 0, 10, rxDigest);
    s.end(); // this end's END while the DATA waits to be pushed
    await ended;
    await tick();
    expect(Buffer.concat(got).toString()).toBe('last words');
    expect(errors).toEqual([]);
  });

  it('DATA for an unknown stream is dropped but still counted against the circuit window', () => {
    const { circ, edge } = openPair();
    for (let i = 0; i < 100; i++) edge.handle(RelayCommand.DATA, 77, Buffer.alloc(1), rxDigest);
    expect(circ.take(RelayCommand.SENDME)).toHaveLength(1);
    expect(circ.violations).toEqual([]);
  });

  it('DATA on stream 0 is a violation', () => {
    const { circ, edge } = openPair();
    edge.handle(RelayCommand.DATA, 0, Buffer.alloc(1), rxDigest);
    expect(circ.violations).toEqual(['RELAY_PROTOCOL']);
  });
});

describe('END and closing', () => {
  it('END(DONE) after CONNECTED ends the reader cleanly and is never answered with END', async () => {
    const { circ, edge } = openPair();
    const s = edge.newStream();
    edge.handle(RelayCommand.CONNECTED, s.id, Buffer.alloc(0), rxDigest);
    const chunks: Buffer[] = [];
    const ended = new Promise<void>((r) => s.on('end', r));
    s.on('data', (d: Buffer) => chunks.push(d));
    edge.handle(RelayCommand.DATA, s.id, Buffer.from('hello'), rxDigest);
    edge.handle(RelayCommand.END, s.id, encodeEnd(EndReason.DONE), rxDigest);
    await ended;
    expect(Buffer.concat(chunks).toString()).toBe('hello');
    s.end();
    await tick();
    expect(circ.take(RelayCommand.END)).toHaveLength(0);
    expect(edge.streams.size).toBe(0);
  });

  it('END with another reason, or before CONNECTED, is an error with the stable code', async () => {
    const { edge } = openPair();
    const s = edge.newStream();
    const e1 = new Promise((r) => s.on('error', r));
    edge.handle(RelayCommand.END, s.id, encodeEnd(EndReason.EXITPOLICY), rxDigest);
    expect(await e1).toMatchObject({ code: 'EXIT_POLICY_REJECTED', detail: { endReason: 4 } });
    const s2 = edge.newStream();
    const e2 = new Promise((r) => s2.on('error', r));
    edge.handle(RelayCommand.END, s2.id, encodeEnd(EndReason.DONE), rxDigest);
    expect(await e2).toMatchObject({ code: 'STREAM_REFUSED' });
    const s3 = edge.newStream();
    edge.handle(RelayCommand.CONNECTED, s3.id, Buffer.alloc(0), rxDigest);
    const e3 = new Promise((r) => s3.on('error', r));
    edge.handle(RelayCommand.END, s3.id, encodeEnd(EndReason.CONNRESET), rxDigest);
    expect(await e3).toMatchObject({ code: 'STREAM_CONNRESET' });
  });

  it('an END body with bytes after a reason other than EXITPOLICY destroys the circuit; the stream does not end as MISC (SPEC.md §2.7.2, §2.8)', async () => {
    const { circ, edge } = openPair();
    const s = edge.newStream();
    edge.handle(RelayCommand.CONNECTED, s.id, Buffer.alloc(0), rxDigest);
    let ended = false;
    s.on('end', () => { ended = true; });
    s.on('error', () => { ended = true; });
    s.resume();
    edge.handle(RelayCommand.END, s.id, Buffer.from([EndReason.DONE, 1, 2, 3]), rxDigest);
    await tick();
    expect(circ.violations).toEqual(['MSG_MALFORMED']);
    expect(ended).toBe(false);
    expect(edge.streams.get(s.id)).toBe(s);
    // The same body on a stream id this end does not know is still a malformed message.
    edge.handle(RelayCommand.END, 999, Buffer.from([EndReason.MISC, 0]), rxDigest);
    expect(circ.violations).toEqual(['MSG_MALFORMED', 'MSG_MALFORMED']);
  });

  it('ending the writer sends END(DONE) once, after the data', async () => {
    const { circ, edge } = openPair();
    const s = edge.acceptStream(3); s.markOpen();
    s.end(Buffer.from('bye'));
    await tick();
    const cells = circ.take();
    expect(cells.map((c) => c.command)).toEqual([RelayCommand.DATA, RelayCommand.END]);
    expect(decodeEnd(cells[1].data).reason).toBe(EndReason.DONE);
    expect(edge.streams.size).toBe(0);
  });

  it('a dying circuit ends every stream with its error, never a clean end', async () => {
    const { edge } = openPair();
    const a = edge.newStream();
    const b = edge.acceptStream(900); b.markOpen();
    const errs = Promise.all([a, b].map((s) => new Promise((r) => s.on('error', r))));
    let ended = false;
    b.on('end', () => { ended = true; });
    edge.close(err('CIRCUIT_DESTROYED', 'gone', { destroyReason: 8 }));
    expect(await errs).toMatchObject([{ code: 'CIRCUIT_DESTROYED' }, { code: 'CIRCUIT_DESTROYED' }]);
    expect(ended).toBe(false);
    expect(() => edge.newStream()).toThrow(/CIRCUIT_DESTROYED/);
  });

  it('stream ids: fresh on the opening side; refused when in use on the accepting side', () => {
    const { edge } = openPair();
    const ids = new Set(Array.from({ length: 5 }, () => edge.newStream().id));
    expect(ids.size).toBe(5);
    expect(() => edge.acceptStream([...ids][0])).toThrow(/STREAM_ID_IN_USE/);
    expect(() => edge.acceptStream(0)).toThrow(/STREAM_ID_IN_USE/);
    const small = new StreamEdge(new FakeCircuit(), { maxStreams: 1 });
    small.acceptStream(1);
    expect(() => small.acceptStream(2)).toThrow(/STREAM_LIMIT/);
  });
});

describe('END reasons as error codes and SOCKS replies (SPEC.md §7b.6, §7.8.4)', () => {
  it('maps every END reason to its code, and the SOCKS front end to the right reply', () => {
    const cases: Array<[number, string, number]> = [
      [EndReason.EXITPOLICY, 'EXIT_POLICY_REJECTED', SocksReply.NOT_ALLOWED],
      [EndReason.RESOLVEFAILED, 'EXIT_RESOLVE_FAILED', SocksReply.HOST_UNREACHABLE],
      [EndReason.CONNECTREFUSED, 'EXIT_CONNECT_REFUSED', SocksReply.CONNECTION_REFUSED],
      [EndReason.TIMEOUT, 'EXIT_TIMEOUT', SocksReply.TTL_EXPIRED],
      [EndReason.NOROUTE, 'EXIT_NO_ROUTE', SocksReply.HOST_UNREACHABLE],
      [EndReason.MISC, 'STREAM_REFUSED', SocksReply.GENERAL_FAILURE],
      [EndReason.RESOURCELIMIT, 'EXIT_RESOURCE_LIMIT', SocksReply.GENERAL_FAILURE],
    ];
    for (const [reason, code, reply] of cases) {
      const e = endReasonError(reason, true);
      expect(e.code).toBe(code);
      expect(socksReplyFor(e)).toBe(reply);
    }
    // A destroyed circuit is a general failure, whatever the DESTROY reason number.
    expect(socksReplyFor(err('CIRCUIT_DESTROYED', 'x', { destroyReason: 3 }))).toBe(SocksReply.GENERAL_FAILURE);
  });

  it('maps connect errors at the exit to END reasons', () => {
    expect(endReasonForErrno('ECONNREFUSED')).toBe(EndReason.CONNECTREFUSED);
    expect(endReasonForErrno('ETIMEDOUT')).toBe(EndReason.TIMEOUT);
    expect(endReasonForErrno('EHOSTUNREACH')).toBe(EndReason.NOROUTE);
    expect(endReasonForErrno('ENOTFOUND')).toBe(EndReason.RESOLVEFAILED);
    expect(endReasonForErrno('ECONNRESET')).toBe(EndReason.CONNRESET);
    expect(endReasonForErrno(undefined)).toBe(EndReason.MISC);
  });
});
