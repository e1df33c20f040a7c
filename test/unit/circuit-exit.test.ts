// SPEC.md §7b.7: which resolved address an exit connects to (BEGIN flags, exit policy); the
// client's END and the circuit's destruction at the exit (§7b.5, §7b.7 step 6).
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { chooseExitAddress, pipeStreamSocket } from '../../relay/exit';
import { parseExitPolicy } from '../../src/dir/exit-policy';
import { BeginFlag, EndReason, encodeEnd } from '../../src/wire/messages';
import { RELAY_EDGE_MAX_BUFFERED, StreamEdge, type EdgeCircuit } from '../../src/circuit/edge';
import type { CircuitStream } from '../../src/circuit/stream';
import { RelayCommand, RELAY_DATA_MAX } from '../../src/wire/relay-msg';
import { err } from '../../src/errors';

const policy = parseExitPolicy(['reject 10.0.0.0/8:*', 'accept *:80', 'accept [::]/0:443', 'reject *:*']);
const addrs = [
  { address: '10.1.1.1', family: 4 as const },
  { address: '93.184.216.34', family: 4 as const },
  { address: '2606:2800:220:1::1', family: 6 as const },
];

describe('chooseExitAddress', () => {
  it('takes the first address the policy accepts for the port, IPv4 by default', () => {
    expect(chooseExitAddress(addrs, 0, policy, 80)?.address).toBe('93.184.216.34');
  });
  it('never picks an address the policy rejects, whatever the flags', () => {
    expect(chooseExitAddress([addrs[0]], BeginFlag.IPV6_OK, policy, 80)).toBeNull();
  });
  it('uses IPv6 only when the flags allow it, and first when preferred', () => {
    expect(chooseExitAddress(addrs, 0, policy, 443)).toBeNull();
    expect(chooseExitAddress(addrs, BeginFlag.IPV6_OK, policy, 443)?.address).toBe('2606:2800:220:1::1');
    expect(chooseExitAddress(addrs, BeginFlag.IPV4_NOT_OK, policy, 80)?.family).toBe(6); // IPv4 refused implies IPv6 wanted
    const both = parseExitPolicy(['accept *:*']);
    expect(chooseExitAddress(addrs.slice(1), BeginFlag.IPV6_OK | BeginFlag.IPV6_PREFERRED, both, 80)?.family).toBe(6);
    expect(chooseExitAddress(addrs.slice(1), BeginFlag.IPV6_OK, both, 80)?.family).toBe(4);
  });
});

describe('the exit\'s resolver (SPEC.md §7b.7)', () => {
  it('localhost is loopback without a query; a name that does not exist is ENOTFOUND', async () => {
    const { createDnsLookup } = await import('../../relay/exit');
    const lookup = createDnsLookup({ timeoutMs: 1000, tries: 1 });
    expect(await lookup('localhost')).toEqual([{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }]);
    expect(await lookup('a.b.LOCALHOST.')).toHaveLength(2);
    await expect(lookup('does-not-exist.invalid')).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTFOUND|ENODATA|ETIMEDOUT|ECONNREFUSED)$/) });
  });
});

describe('numeric host forms at the exit (SPEC.md §7b.7)', () => {
  it('are the addresses getaddrinfo would make of them, so the exit policy judges them', async () => {
    const { inetAton, createDnsLookup } = await import('../../relay/exit');
    expect(inetAton('167772161')).toBe('10.0.0.1');
    expect(inetAton('0x7f.1')).toBe('127.0.0.1');
    expect(inetAton('10.1')).toBe('10.0.0.1');
    expect(inetAton('0177.0.0.01')).toBe('127.0.0.1');
    expect(inetAton('1.2.3.4')).toBe('1.2.3.4');
    for (const x of ['example.com', '1.2.3.4.5', '256.1.1.1', '4294967296', '09', 'deadbeef', '1..2']) expect(inetAton(x), x).toBeNull();
    expect(await createDnsLookup()('167772161')).toEqual([{ address: '10.0.0.1', family: 4 }]);
  });
});

describe('the client\'s END at the exit, toward a target that does not read (SPEC.md §7b.5, §7b.7 step 6)', () => {
  interface Sent { command: number; streamId: number }
  class FakeCircuit implements EdgeCircuit {
    sent: Sent[] = [];
    sendRelay(command: number, streamId: number): void { this.sent.push({ command, streamId }); }
    lastSentDigest(): Uint8Array { return Buffer.alloc(20); }
    writable(): boolean { return true; }
    violation(code: string): void { throw new Error(`violation ${code}`); }
  }
  const rxDigest = (): Uint8Array => Buffer.alloc(20);
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** An exit stream piped to a target that accepts and never reads, fed until the pipe is paused. */
  async function stalledStream(): Promise<{ edge: StreamEdge; stream: CircuitStream; sock: net.Socket; done: () => void }> {
    const held: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (c) => { held.push(c); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const circ = new FakeCircuit();
    const edge = new StreamEdge(circ, { maxBufferedBytes: RELAY_EDGE_MAX_BUFFERED, destroyReleased: true });
    const stream = edge.acceptStream(1);
    stream.on('error', () => {}); // as the relay's circuit does for the streams it accepts
    stream.markOpen();
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    pipeStreamSocket(stream, sock);
    const cell = Buffer.alloc(RELAY_DATA_MAX, 1);
    let streamCredit = 500;
    let circCredit = 1000;
    for (let round = 0; round < 5000 && stream.readableLength === 0; round++) {
      const n = Math.min(streamCredit, circCredit, 100);
      for (let i = 0; i < n; i++) edge.handleData(1, cell, 0, cell.length, rxDigest);
      streamCredit -= n;
      circCredit -= n;
      await pause(1);
      for (const s of circ.sent.splice(0)) {
        if (s.command !== RelayCommand.SENDME) continue;
        if (s.streamId === 0) circCredit += 100; else streamCredit += 50;
      }
    }
    expect(stream.readableLength).toBeGreaterThan(0); // the pipe is paused: the target takes nothing
    return { edge, stream, sock, done: () => { for (const c of held) c.destroy(); sock.destroy(); server.close(); } };
  }

  it('the circuit\'s destruction resets the TCP connection of a stream the client already ended', async () => {
    const { edge, stream, sock, done } = await stalledStream();
    try {
      edge.handle(RelayCommand.END, 1, encodeEnd({ reason: EndReason.DONE }), rxDigest);
      expect(edge.streams.size).toBe(0); // no longer counted against the circuit's streams
      edge.close(err('CIRCUIT_DESTROYED', 'destroyed'));
      await vi.waitFor(() => expect(sock.destroyed).toBe(true), { timeout: 2000 });
      await vi.waitFor(() => expect(stream.destroyed).toBe(true), { timeout: 2000 });
    } finally { done(); }
  });

  it('streams the client ended count against the stream limit while their target connections linger (SPEC.md §7b.9)', async () => {
    const held: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (c) => { held.push(c); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const circ = new FakeCircuit();
    const edge = new StreamEdge(circ, { maxBufferedBytes: RELAY_EDGE_MAX_BUFFERED, destroyReleased: true });
    const socks: net.Socket[] = [];
    const streams: CircuitStream[] = [];
    const cell = Buffer.alloc(RELAY_DATA_MAX, 1);
    try {
      for (let id = 1; id <= 512; id++) {
        const stream = edge.acceptStream(id);
        stream.on('error', () => {});
        stream.markOpen();
        const sock = net.connect(port, '127.0.0.1');
        sock.on('error', () => {});
        await new Promise((r) => sock.once('connect', r));
        pipeStreamSocket(stream, sock);
        edge.handleData(id, cell, 0, cell.length, rxDigest); // data the target never takes
        socks.push(sock);
        streams.push(stream);
      }
      expect(() => edge.acceptStream(513)).toThrow(expect.objectContaining({ code: 'STREAM_LIMIT' }));
      await vi.waitFor(() => expect(held).toHaveLength(512), { timeout: 5000 });
      // The ENDs' timers (the 30 s linger, SPEC.md §7b.7 step 6) are run by hand: up to just short
      // of 30 s, and a macrotask for what the ENDs set off without a timer (ticks, promises).
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      for (let id = 1; id <= 512; id++) edge.handle(RelayCommand.END, id, encodeEnd({ reason: EndReason.DONE }), rxDigest);
      expect(edge.streams.size).toBe(0);
      await vi.advanceTimersByTimeAsync(29_999);
      await new Promise((r) => setImmediate(r));
      expect(socks.every((s) => !s.destroyed)).toBe(true); // each still holds its target connection
      expect(() => edge.acceptStream(513)).toThrow(expect.objectContaining({ code: 'STREAM_LIMIT' }));
      // One target goes away: its stream closes, and its place is free again.
      const oneClosed = Promise.race(streams.map((s) => new Promise((r) => s.once('close', r))));
      held[0].resetAndDestroy();
      await oneClosed;
      expect(edge.acceptStream(513).id).toBe(513);
      expect(() => edge.acceptStream(514)).toThrow(expect.objectContaining({ code: 'STREAM_LIMIT' }));
    } finally {
      vi.useRealTimers();
      for (const c of held) c.destroy();
      for (const s of socks) s.destroy();
      server.close();
    }
  });

  it('a stream the client ended whose data the target never takes is reset 30 s after the END', async () => {
    const { stream, sock, edge, done } = await stalledStream();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      edge.handle(RelayCommand.END, 1, encodeEnd({ reason: EndReason.DONE }), rxDigest);
      vi.advanceTimersByTime(29_000);
      expect(sock.destroyed).toBe(false);
      vi.advanceTimersByTime(1_001);
      expect(sock.destroyed).toBe(true);
      vi.useRealTimers();
      await new Promise((r) => stream.once('close', r));
      expect(edge.unreadBytes).toBe(0); // what it held no longer counts against the circuit
    } finally { vi.useRealTimers(); done(); }
  });
});

describe('a target that ends while its stream still holds data the client does not let out (SPEC.md §7b.7 step 6)', () => {
  const realSetTimeout = globalThis.setTimeout;
  const sleep = (ms: number) => new Promise((r) => realSetTimeout(r, ms));
  const rxDigest = (): Uint8Array => Buffer.alloc(20);
  /** A circuit whose link takes `credit` more DATA cells (Infinity: no bound). */
  class MeteredCircuit implements EdgeCircuit {
    sent: Array<{ command: number; streamId: number; data: Uint8Array }> = [];
    credit = Infinity;
    sendRelay(command: number, streamId: number, data: Uint8Array): void {
      this.sent.push({ command, streamId, data: Buffer.from(data) });
      if (command === RelayCommand.DATA) this.credit--;
    }
    lastSentDigest(): Uint8Array { return Buffer.alloc(20); }
    writable(): boolean { return this.credit > 0; }
    violation(code: string): void { throw new Error(`violation ${code}`); }
    count(command: number): number { return this.sent.filter((s) => s.command === command).length; }
    ends(): number[] { return this.sent.filter((s) => s.command === RelayCommand.END).map((s) => s.data[0]); }
  }

  /** A target that sends one stream window and `extra` bytes more, then ends cleanly (FIN). */
  async function endedTarget(extra: number): Promise<{ circ: MeteredCircuit; edge: StreamEdge; stream: CircuitStream; sock: net.Socket; done: () => void }> {
    const server = net.createServer((c) => { c.on('error', () => {}); c.end(Buffer.alloc(500 * RELAY_DATA_MAX + extra, 7)); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const circ = new MeteredCircuit();
    const edge = new StreamEdge(circ, { maxStreams: 1, maxBufferedBytes: RELAY_EDGE_MAX_BUFFERED, destroyReleased: true });
    const stream = edge.acceptStream(1);
    stream.on('error', () => {});
    stream.markOpen();
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    pipeStreamSocket(stream, sock);
    for (let i = 0; i < 500 && !(sock.readableEnded && circ.count(RelayCommand.DATA) === 500); i++) await sleep(5);
    expect(sock.readableEnded).toBe(true); // the target's FIN arrived
    expect(circ.count(RelayCommand.DATA)).toBe(500); // one stream window went out; the rest waits for a SENDME
    expect(stream.closed).toBe(false);
    return { circ, edge, stream, sock, done: () => { sock.destroy(); server.close(); } };
  }

  it('ends the stream with END(TIMEOUT) and frees its place when no cell of it goes out for 60 s', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { circ, edge, stream, done } = await endedTarget(10_000);
    const closed = new Promise((r) => stream.once('close', r));
    try {
      vi.advanceTimersByTime(59_000);
      expect(stream.destroyed).toBe(false);
      expect(() => edge.acceptStream(2)).toThrow(expect.objectContaining({ code: 'STREAM_LIMIT' }));
      vi.advanceTimersByTime(1_001);
      expect(stream.destroyed).toBe(true);
      expect(circ.ends()).toEqual([EndReason.TIMEOUT]);
      vi.useRealTimers();
      await closed;
      expect(edge.streams.size).toBe(0);
      expect(edge.acceptStream(2).id).toBe(2); // its place under the stream limit is free again
      expect(edge.unreadBytes).toBe(0);
    } finally { vi.useRealTimers(); done(); }
  });

  it('never cuts a slow reader that lets a cell out at least every 60 s', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { circ, edge, stream, done } = await endedTarget(10_000);
    try {
      circ.credit = 0; // the link now takes one cell at a time, when the test says so
      edge.handle(RelayCommand.SENDME, 1, Buffer.alloc(0), rxDigest); // the stream window opens; the link holds the cells back
      // Cells need not be full (a cell ends where a read of the target ended), so the rest may take a few more than 21.
      for (let i = 0; i < 100 && circ.ends().length === 0; i++) {
        vi.advanceTimersByTime(59_000);
        expect(stream.destroyed).toBe(false);
        circ.credit = 1;
        edge.pumpAll();
        await sleep(1); // the stream takes its next buffered chunk, and then ends, on a later tick
        expect(circ.count(RelayCommand.DATA)).toBe(501 + i);
      }
      expect(circ.count(RelayCommand.DATA)).toBeGreaterThan(520); // 59 s apart, one at a time: well past 60 s in all
      expect(circ.ends()).toEqual([EndReason.DONE]); // everything went out, then END(DONE)
    } finally { vi.useRealTimers(); done(); }
  });
});

describe('the exit\'s target connections are bounded for the whole node (SPEC.md §7b.9 maxExitConnections)', () => {
  class Circ implements EdgeCircuit {
    sent: { command: number; streamId: number; data: Buffer }[] = [];
    sendRelay(command: number, streamId: number, data: Uint8Array): void { this.sent.push({ command, streamId, data: Buffer.from(data) }); }
    lastSentDigest(): Uint8Array { return Buffer.alloc(20); }
    writable(): boolean { return true; }
    violation(code: string): void { throw new Error(`violation ${code}`); }
    endOf(id: number): number | undefined { return this.sent.find((s) => s.streamId === id && s.command === RelayCommand.END)?.data[0]; }
  }

  it('past the cap a BEGIN ends END(RESOURCELIMIT), whatever circuit it came on; a closed connection frees its place', async () => {
    const { createExitHandler, ExitConnections } = await import('../../relay/exit');
    const held: net.Socket[] = [];
    const server = net.createServer((c) => { held.push(c); c.on('error', () => {}); }); // accepts and holds, never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const results: string[] = [];
    const metrics = { exitConnect: (r: string) => { results.push(r); } } as unknown as import('../../src/circuit/metrics').CircuitMetrics;
    const connections = new ExitConnections(2);
    const handler = createExitHandler({ policy: parseExitPolicy(['accept 127.0.0.1:*', 'reject *:*']), refuseOneHop: false, metrics, connections });
    const circuits = [new Circ(), new Circ()];
    const edges = circuits.map((c) => new StreamEdge(c, { destroyReleased: true }));
    const begin = (edge: StreamEdge, id: number): CircuitStream => {
      const stream = edge.acceptStream(id);
      stream.on('error', () => {});
      handler({
        kind: 'begin', begin: { host: '127.0.0.1', port, flags: 0 }, stream, oneHop: false,
        accept: () => { stream.markOpen(); },
        refuse: (reason: number) => { if (stream.state !== 'closed') stream.abort(reason); },
      });
      return stream;
    };
    try {
      const a = begin(edges[0], 1);
      const b = begin(edges[1], 1);
      await vi.waitFor(() => expect(a.state === 'open' && b.state === 'open').toBe(true), { timeout: 5000 });
      const c = begin(edges[0], 2);
      await vi.waitFor(() => expect(circuits[0].endOf(2)).toBe(EndReason.RESOURCELIMIT), { timeout: 5000 });
      expect(c.destroyed).toBe(true);
      expect(results).toContain('connection_limit');
      // One stream goes: its connection closes and the next BEGIN connects.
      expect(connections.active).toBe(2);
      a.destroy();
      for (const s of held) s.end(); // the targets close their side too: the connection is gone
      await vi.waitFor(() => expect(connections.active).toBeLessThan(2), { timeout: 5000 });
      const d = begin(edges[0], 3);
      await vi.waitFor(() => expect(d.state).toBe('open'), { timeout: 5000 });
      for (const s of [b, d]) s.destroy();
    } finally {
      for (const s of held) s.destroy();
      server.close();
    }
  });
});
