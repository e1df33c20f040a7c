// SPEC.md §7b: circuits end to end, in one process: real TLS link listeners on 127.0.0.1, real
// keys in temp dirs, a hand-made relay list (no authorities), local TCP echo / source servers.
// The client side is the real client code (ClientCircuit, CircuitManager).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import net from 'node:net';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { CellCommand, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RelayCommand, encodeRelayPayloadInto } from '../../src/wire/relay-msg';
import { clientSealOutbound } from '../../src/crypto/relay-crypto';
import { MAX_RELAY_EARLY } from '../../src/circuit/constants';
import { DestroyReason, decodeDestroy, encodeCreate2 } from '../../src/wire/messages';
import type { ConsensusRelay } from '../../src/dir/types';
import { ClientCircuit } from '../../src/client/client-circuit';
import { CircuitManager } from '../../src/client/circuit-manager';
import { isolationKey } from '../../src/client/isolation';
import type { CircuitStream } from '../../src/circuit/stream';
import { manualCircuit, rawLink, startRelay as startTestRelay, type TestRelay } from '../helpers/inprocess-relays';

const EXIT_POLICY = ['reject 127.0.0.1:9', 'accept 127.0.0.1:*', 'reject *:*'];

let dirHttp: http.Server | null = null;

async function startRelay(name: string, flags: string[], consensus?: () => { relays: ConsensusRelay[] }): Promise<TestRelay> {
  return startTestRelay(name, flags, {
    exitPolicy: flags.includes('Exit') ? EXIT_POLICY : null,
    requireConsensusForExtend: !!consensus,
    consensus,
    // r2 mirrors a directory (an in-process HTTP server); r4 is also a storage endpoint (echo).
    dirTarget: name === 'r2' ? () => (dirHttp ? { server: dirHttp } : null) : undefined,
    onStorageStream: name === 'r4' ? (inc) => { inc.accept(); inc.stream.pipe(inc.stream); } : undefined,
    lookup: async (host) => {
      if (host === 'echo.test') return [{ address: '127.0.0.1', family: 4 }];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    },
  });
}

function sha(b: Buffer): string { return createHash('sha256').update(b).digest('hex'); }

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 9)) & 0xff;
  return b;
}

/** Write `data`, read the same number of bytes back (the target echoes), then end. */
function echoRoundTrip(stream: CircuitStream, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    stream.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= data.length) { stream.end(); resolve(Buffer.concat(parts)); }
    });
    stream.on('error', reject);
    stream.write(data);
  });
}

/** One TCP round trip over loopback: at least one poll of this process's event loop for I/O. */
async function loopbackRoundTrip(port: number): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.once('connect', () => s.write('x'));
      s.once('data', () => resolve());
    });
  } finally {
    s.destroy();
  }
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('circuits in process', () => {
  // r0, r1: guards; r2: middle only; r3, r4: exits.
  const relays: TestRelay[] = [];
  let echo: net.Server;
  let echoPort = 0;
  let closedPort = 0;
  let source: net.Server;
  let sourcePort = 0;
  const sourceSockets: net.Socket[] = [];
  let manager: CircuitManager;
  const key = (u: string) => isolationKey({ isolation: { username: u, password: 'x' } });

  beforeAll(async () => {
    const flags = [['Guard'], ['Guard'], [], ['Exit'], ['Exit']];
    for (let i = 0; i < flags.length; i++) relays.push(await startRelay(`r${i}`, flags[i]));
    echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    // A target that sends as fast as it is allowed to.
    source = net.createServer((s) => {
      s.on('error', () => {});
      sourceSockets.push(s);
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => { while (s.writable && s.write(chunk)) { /* until the socket's buffer is full */ } };
      s.on('drain', pump);
      pump();
    });
    await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
    sourcePort = (source.address() as net.AddressInfo).port;
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    closedPort = (tmp.address() as net.AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));
    dirHttp = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`dir ${req.url}`); });
    manager = new CircuitManager({
      relays: () => relays.map((r) => r.info), enforceDistinctSubnets: false, preemptiveCircuits: 0,
    });
  });

  afterAll(async () => {
    await manager?.close();
    for (const r of relays) { await r.rc.close(); await r.listener.close(); await fsp.rm(r.dir, { recursive: true, force: true }); }
    await new Promise<void>((r) => echo.close(() => r()));
    await new Promise<void>((r) => source.close(() => r()));
    dirHttp?.close();
  });

  it('a 3-hop circuit carries a few MiB intact in both directions', async () => {
    const c = await manualCircuit([relays[0], relays[2], relays[3]]);
    expect(c.length).toBe(3);
    const { stream, connected } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    expect(connected?.addr).toBe('127.0.0.1');
    const data = pattern(4 * 1024 * 1024, 1);
    expect(sha(await echoRoundTrip(stream, data))).toBe(sha(data));
    c.destroy();
  });

  it('many circuits on one link at once: each stream gets its bytes in order and unmodified', async () => {
    // Links gather many cells per socket write and parse many per read (SPEC.md §1.6); cells of
    // 12 circuits interleave on the same guard and middle links in both directions.
    const link = await rawLink(relays[1]);
    const circs: ClientCircuit[] = [];
    for (let i = 0; i < 12; i++) {
      const c = ClientCircuit.allocate(link);
      await c.create(relays[1].info);
      await c.extend(relays[2].info);
      await c.extend(relays[4].info);
      circs.push(c);
    }
    const results = await Promise.all(circs.map(async (c, i) => {
      const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
      const d = pattern(300_000 + i * 4099, 100 + i);
      return (await echoRoundTrip(stream, d)).equals(d);
    }));
    expect(results).toEqual(circs.map(() => true));
    for (const c of circs) c.destroy();
    link.ch.close();
  });

  it('batched processing: 48 circuits on two guard links, all at once, each gets its bytes in order and unmodified both ways', async () => {
    // Every link read carries cells of many circuits; each hop peels or adds its layer to the
    // cells of a read one after another, writes the batch at the end of the read, and each
    // stream hands a whole read's worth to its reader in one push. Distinct patterns per
    // circuit (seeded by index) catch a cell of one circuit landing in another, a reordering
    // inside a circuit, or a cell decrypted with a neighbour's keystream position.
    const links = [await rawLink(relays[0]), await rawLink(relays[1])];
    const circs: ClientCircuit[] = [];
    for (let i = 0; i < 48; i++) {
      const g = relays[i % 2];
      const c = ClientCircuit.allocate(links[i % 2]);
      await c.create(g.info);
      await c.extend(relays[2].info);
      await c.extend(relays[3 + ((i >> 1) % 2)].info);
      circs.push(c);
    }
    const sent = circs.map((_, i) => pattern(150_000 + i * 1013, 7 * i + 1));
    const got = await Promise.all(circs.map(async (c, i) => {
      const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
      return echoRoundTrip(stream, sent[i]);
    }));
    const bad = got.map((g, i) => (sha(g) === sha(sent[i]) ? -1 : i)).filter((i) => i >= 0);
    expect(bad).toEqual([]);
    for (const c of circs) c.destroy();
    for (const l of links) l.ch.close();
  });

  it('20 concurrent streams share one circuit and all arrive intact', async () => {
    const k = key('twenty');
    const streams = await Promise.all(Array.from({ length: 20 }, () => manager.connect({ host: '127.0.0.1', port: echoPort, isolation: k })));
    const circs = new Set(manager.circuits().filter((c) => c.edge.streams.size > 0));
    expect(circs.size).toBe(1);
    const results = await Promise.all(streams.map((s, i) => {
      const d = pattern(200_000 + i * 1000, i);
      return echoRoundTrip(s, d).then((got) => sha(got) === sha(d));
    }));
    expect(results.every(Boolean)).toBe(true);
  });

  it('different isolation keys never share a circuit; the same key reuses one', async () => {
    const a1 = await manager.connect({ host: '127.0.0.1', port: echoPort, isolation: key('alice') });
    const a2 = await manager.connect({ host: '127.0.0.1', port: echoPort, isolation: key('alice') });
    const b = await manager.connect({ host: '127.0.0.1', port: echoPort, isolation: key('bob') });
    const circOf = (s: CircuitStream) => manager.circuits().find((c) => [...c.edge.streams.values()].includes(s));
    expect(circOf(a1)).toBeDefined();
    expect(circOf(a1)).toBe(circOf(a2));
    expect(circOf(b)).not.toBe(circOf(a1));
    for (const s of [a1, a2, b]) s.destroy();
  });

  it('keeps clean circuits ready for recently used ports, and retires dirty ones after maxDirtiness', async () => {
    const m2 = new CircuitManager({
      relays: () => relays.map((r) => r.info), enforceDistinctSubnets: false,
      preemptiveCircuits: 2, maintenanceMs: 50, maxDirtinessMs: 400,
    });
    try {
      const k = key('preempt');
      const s1 = await m2.connect({ host: '127.0.0.1', port: echoPort, isolation: k });
      const first = m2.circuits().find((c) => [...c.edge.streams.values()].includes(s1))!;
      await until(() => m2.circuits().filter((c) => c.dirtySince === null).length >= 2, 'two clean preemptive circuits', 10_000);
      await new Promise((r) => setTimeout(r, 450));
      // The first circuit is now too dirty for new streams: the next one goes elsewhere.
      const s2 = await m2.connect({ host: '127.0.0.1', port: echoPort, isolation: k });
      expect(first.edge.streams.size).toBe(1);
      expect([...first.edge.streams.values()]).not.toContain(s2);
      s1.destroy();
      await until(() => !first.isOpen, 'the retired circuit to close once its last stream ended');
      s2.destroy();
    } finally {
      await m2.close();
    }
  });

  it('a stream request waits while the consensus allows no path, then goes through; an exit that is the only guard is set aside (SPEC.md §7.1)', async () => {
    // First no consensus at all (CIRCUIT_NO_CONSENSUS), then one whose only guard is the exit r3: the
    // request waits for the second, and its path is r3 → a middle → r4, never "no guard" for exit r3.
    let phase = 0;
    let asked = 0;
    type Flag = ConsensusRelay['flags'] extends ReadonlySet<infer F> ? F : never;
    const reflag = (r: TestRelay, add: Flag[], drop: Flag[]): ConsensusRelay =>
      ({ ...r.info, flags: new Set([...r.info.flags].filter((f) => !drop.includes(f)).concat(add)) });
    const young = [reflag(relays[0], [], ['Guard']), reflag(relays[1], [], ['Guard']), relays[2].info, reflag(relays[3], ['Guard'], []), relays[4].info];
    const m3 = new CircuitManager({
      relays: () => { asked++; return phase === 0 ? [] : young; },
      enforceDistinctSubnets: false, preemptiveCircuits: 0, pathRetryMs: 50,
    });
    try {
      const pending = m3.connect({ host: '127.0.0.1', port: echoPort, isolation: key('young') });
      await until(() => asked >= 3, 'the manager to choose a path again');
      phase = 1;
      const s = await pending;
      const circ = m3.circuits().find((c) => [...c.edge.streams.values()].includes(s))!; // before the round trip ends s
      const data = pattern(256 * 1024, 3);
      expect(sha(await echoRoundTrip(s, data))).toBe(sha(data));
      const hops = circ.hops.map((h) => h.target.fingerprint);
      expect([hops[0], hops[2]]).toEqual([relays[3].info.fingerprint, relays[4].info.fingerprint]);
      // Every later request too: exit r3 always leaves no guard, so r4 is the exit each time.
      for (let i = 0; i < 6; i++) {
        const t = await m3.connect({ host: '127.0.0.1', port: echoPort, isolation: key(`young-${i}`) });
        const c = m3.circuits().find((x) => [...x.edge.streams.values()].includes(t))!;
        expect(c.lastHop?.fingerprint).toBe(relays[4].info.fingerprint);
        t.destroy();
      }
      s.destroy();
    } finally {
      await m3.close();
    }
    // With no consensus ever, the request fails once pathWaitMs is over, having asked again meanwhile.
    let asked2 = 0;
    const m4 = new CircuitManager({ relays: () => { asked2++; return []; }, enforceDistinctSubnets: false, preemptiveCircuits: 0, pathRetryMs: 50, pathWaitMs: 300 });
    try {
      await expect(m4.connect({ host: '127.0.0.1', port: echoPort, isolation: key('never') })).rejects.toMatchObject({ code: 'CIRCUIT_NO_CONSENSUS' });
      expect(asked2).toBeGreaterThan(2);
    } finally {
      await m4.close();
    }
    // A request whose caller gives up (the SOCKS client left, or its connect timeout) stops waiting
    // at once: here the wait would otherwise outlast the test's own timeout.
    let asked5 = 0;
    const m5 = new CircuitManager({ relays: () => { asked5++; return []; }, enforceDistinctSubnets: false, preemptiveCircuits: 0, pathRetryMs: 50, pathWaitMs: 600_000 });
    try {
      const gone = new AbortController();
      const p = m5.connect({ host: '127.0.0.1', port: echoPort, isolation: key('gone') }, gone.signal);
      await until(() => asked5 >= 2, 'a retry before the abort');
      gone.abort();
      await expect(p).rejects.toMatchObject({ code: 'CIRCUIT_NO_CONSENSUS' });
    } finally {
      await m5.close();
    }
  });

  it('a slow reader stalls the exit after one stream window instead of making it buffer', async () => {
    const c = await manualCircuit([relays[1], relays[2], relays[4]]);
    // The exit's socket to the target (the exit runs in this process).
    const connect = vi.spyOn(net, 'connect');
    let stream: CircuitStream;
    let exitSock: net.Socket;
    try {
      ({ stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: sourcePort }));
      const i = connect.mock.calls.findIndex(([o]) => (o as unknown as { port?: number }).port === sourcePort);
      exitSock = connect.mock.results[i].value as net.Socket;
    } finally {
      connect.mockRestore();
    }
    stream.on('error', () => {});
    stream.pause(); // the application does not read
    const exitCirc = () => [...relays[4].rc.switch.circuits].find((x) => x.streamCount > 0)!;
    await until(() => !!exitCirc() && exitCirc().streams()[0]?.packageWindow.window === 0, 'the exit stream window to close');
    // The target is held back too: the exit stops reading its socket, so TCP flow control alone
    // stops the target. The pipe pauses the socket once the stream's write buffer is full, and
    // Node stops reading a paused socket once the socket's read buffer is full too. Meanwhile the
    // target has handed the kernel more than the exit read: bytes wait there for the exit.
    const target = sourceSockets.find((s) => s.remotePort === exitSock.localPort)!;
    const handed = () => target.bytesWritten - target.writableLength;
    await until(() => exitSock.isPaused() && exitSock.readableLength >= exitSock.readableHighWaterMark
      && handed() > exitSock.bytesRead, 'the exit to stop reading the target while bytes wait for it');
    // Relays and test share one event loop: a TCP round trip over loopback takes at least one poll
    // for I/O after this point, in which a socket still being read would take the waiting bytes.
    const read = exitSock.bytesRead;
    await loopbackRoundTrip(echoPort);
    expect(exitSock.bytesRead).toBe(read);
    // With the exit no longer reading, what each side holds can grow no more.
    const exitStream = exitCirc().streams()[0];
    expect(exitStream.packageWindow.window).toBe(0);
    // What the exit holds for this stream: its writable buffer, bounded by one socket read.
    expect(exitStream.writableLength).toBeLessThanOrEqual(256 * 1024);
    // What the client holds: at most one stream window (500 cells) plus the readable buffer.
    expect(stream.readableLength).toBeLessThanOrEqual(500 * 498 + 64 * 1024);
    expect(relays[4].rc.switch.budget.queuedCells).toBe(0);
    // Reading again lets the data flow.
    let more = 0;
    stream.on('data', (d: Buffer) => { more += d.length; });
    stream.resume();
    await until(() => more > 2 * 1024 * 1024, 'data to flow again');
    c.destroy();
  });

  it('exit policy refusal ends the stream with END EXITPOLICY', async () => {
    const c = await manualCircuit([relays[0], relays[2], relays[3]]);
    await expect(c.openStream({ kind: 'begin', host: 'echo.test', port: 9 })).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED', detail: { endReason: 4 } });
    await expect(c.openStream({ kind: 'begin', host: '10.1.2.3', port: 80 })).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    // The circuit is still good.
    const { stream } = await c.openStream({ kind: 'begin', host: 'echo.test', port: echoPort });
    const d = pattern(10_000, 3);
    expect(sha(await echoRoundTrip(stream, d))).toBe(sha(d));
    c.destroy();
    await expect(manager.connect({ host: 'echo.test', port: 9, isolation: key('policy') })).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    await expect(manager.connect({ host: '127.0.0.1', port: 9, isolation: key('policy') })).rejects.toMatchObject({ code: 'PATH_NO_EXIT' });
  });

  it('a closed port gives CONNECTREFUSED and an unknown name RESOLVEFAILED', async () => {
    await expect(manager.connect({ host: '127.0.0.1', port: closedPort, isolation: key('x') })).rejects.toMatchObject({ code: 'EXIT_CONNECT_REFUSED', detail: { endReason: 3 } });
    await expect(manager.connect({ host: 'nx.test', port: 80, isolation: key('x') })).rejects.toMatchObject({ code: 'EXIT_RESOLVE_FAILED', detail: { endReason: 2 } });
  });

  it('BEGIN_DIR reaches the last hop\'s directory service over HTTP; a non-mirror says NOTDIRECTORY', async () => {
    const c = await manualCircuit([relays[0], relays[2]]);
    const { stream } = await c.openStream({ kind: 'begin_dir' });
    stream.write('GET /bitcloud/consensus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const reply = await new Promise<string>((resolve, reject) => {
      let t = '';
      stream.on('data', (d: Buffer) => { t += d.toString(); });
      stream.on('end', () => resolve(t));
      stream.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    expect(reply).toContain('dir /bitcloud/consensus');
    c.destroy();
    const c2 = await manualCircuit([relays[1], relays[2], relays[3]]);
    await expect(c2.openStream({ kind: 'begin_dir' })).rejects.toMatchObject({ code: 'STREAM_NOT_DIRECTORY' });
    c2.destroy();
  });

  it('BEGIN_STORAGE goes to the node\'s storage hook (buildCircuitTo + openStream); elsewhere it is refused', async () => {
    const circ = await manager.buildCircuitTo(relays[4].info);
    expect(circ.lastHop?.fingerprint).toBe(relays[4].info.fingerprint);
    const s = await manager.openStream(circ, { kind: 'begin_storage' });
    const d = pattern(30_000, 8);
    expect(sha(await echoRoundTrip(s, d))).toBe(sha(d));
    const other = await manager.buildCircuitTo(relays[3].info);
    await expect(manager.openStream(other, { kind: 'begin_storage' })).rejects.toMatchObject({ code: 'STREAM_REFUSED' });
    circ.destroy();
    other.destroy();
  });

  it('EXTEND2 only to relays the consensus lists at that address (else DESTROY OR_IDENTITY)', async () => {
    const listed = { relays: [relays[3].info, { ...relays[4].info, orPort: relays[4].info.orPort + 1 }] };
    const strict = await startRelay('strict', ['Guard'], () => listed);
    try {
      const ok = await manualCircuit([strict, relays[3]]);
      expect(ok.length).toBe(2);
      ok.destroy();
      // Listed, but at another port than the one the client names.
      await expect(manualCircuit([strict, relays[4]])).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { destroyReason: DestroyReason.OR_IDENTITY } });
      // Not listed at all.
      await expect(manualCircuit([strict, relays[2]])).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { destroyReason: DestroyReason.OR_IDENTITY } });
    } finally {
      await strict.rc.close();
      await strict.listener.close();
      await fsp.rm(strict.dir, { recursive: true, force: true });
    }
  });

  it('RESOLVE at the exit', async () => {
    const c = await manualCircuit([relays[0], relays[2], relays[3]]);
    expect(await c.resolve('echo.test')).toEqual([{ type: 'ipv4', value: '127.0.0.1', ttl: 60 }]);
    expect((await c.resolve('nx.test'))[0].type).toBe('error-nontransient');
    c.destroy();
  });

  it('a bad CREATE2 is answered by DESTROY(PROTOCOL) for that id only; the link keeps working', async () => {
    const link = await rawLink(relays[0]);
    const id = link.ch.allocateCircId();
    const destroyed = new Promise<number>((resolve) => link.ch.on('cell', (c) => { if (c.circId === id && c.command === CellCommand.DESTROY) resolve(decodeDestroy(c.payload)); }));
    link.send(id, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(96, 1) }));
    expect(await destroyed).toBe(DestroyReason.PROTOCOL);
    const c = ClientCircuit.allocate(link);
    await c.create(relays[0].info);
    await c.extend(relays[2].info);
    await c.extend(relays[3].info);
    const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const d = pattern(50_000, 9);
    expect(sha(await echoRoundTrip(stream, d))).toBe(sha(d));
    c.destroy();
  });

  it('a cell for an unknown circuit id is dropped and counted; the link and its circuits carry on', async () => {
    const link = await rawLink(relays[1]);
    const c = ClientCircuit.allocate(link);
    await c.create(relays[1].info);
    link.send(0x8000_1234, CellCommand.RELAY, Buffer.alloc(509, 5));
    link.send(0x8000_1235, CellCommand.DESTROY, Buffer.alloc(1));
    await c.extend(relays[2].info);
    await c.extend(relays[4].info);
    const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const d = pattern(20_000, 4);
    expect(sha(await echoRoundTrip(stream, d))).toBe(sha(d));
    expect(await relays[1].registry.getSingleMetricAsString('bitcloud_circuit_errors_total')).toContain('code="CIRCUIT_UNKNOWN"');
    c.destroy();
  });

  it('more than 8 RELAY_EARLY cells destroy that circuit only', async () => {
    const link = await rawLink(relays[0]);
    const flood = ClientCircuit.allocate(link);
    await flood.create(relays[0].info);
    const other = ClientCircuit.allocate(link);
    await other.create(relays[0].info);
    const closed = new Promise<unknown>((r) => flood.once('close', r));
    // DROP messages to hop 1, sealed as the client does, each in a RELAY_EARLY cell: one too many.
    const scratch = Buffer.alloc(CELL_PAYLOAD_LEN);
    for (let i = 0; i < MAX_RELAY_EARLY + 1; i++) {
      encodeRelayPayloadInto(scratch, RelayCommand.DROP, 0, Buffer.alloc(0));
      clientSealOutbound(flood.hops.map((h) => h.crypto), 0, scratch);
      link.send(flood.circId, CellCommand.RELAY_EARLY, scratch);
    }
    expect(await closed).toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { destroyReason: DestroyReason.PROTOCOL } });
    expect(other.isOpen).toBe(true);
    await other.extend(relays[2].info);
    await other.extend(relays[3].info);
    const { stream } = await other.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const d = pattern(5000, 2);
    expect(sha(await echoRoundTrip(stream, d))).toBe(sha(d));
    other.destroy();
    expect(await relays[0].registry.getSingleMetricAsString('bitcloud_circuit_errors_total')).toContain('code="RELAY_EARLY_LIMIT"');
  });

  it('DESTROY propagates: from the client to every hop, and from the exit back to the client', async () => {
    const hops = [relays[1], relays[2], relays[3]];
    const snapshot = () => hops.map((r) => new Set(r.rc.switch.circuits));
    const added = (before: Set<unknown>[]) => hops.map((r, i) => [...r.rc.switch.circuits].filter((c) => !before[i].has(c)));
    const before = snapshot();
    const c = await manualCircuit(hops);
    const mine = added(before);
    expect(mine.map((l) => l.length)).toEqual([1, 1, 1]);
    c.destroy();
    await until(() => mine.every((l) => l[0].isClosed), 'the circuit gone from every hop');

    const before2 = snapshot();
    const c2 = await manualCircuit(hops);
    const mine2 = added(before2).map((l) => l[0]);
    const { stream } = await c2.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const streamErr = new Promise<unknown>((r) => stream.once('error', r));
    const closed = new Promise<unknown>((r) => c2.once('close', r));
    mine2[2].destroy(DestroyReason.RESOURCELIMIT, 'TEST');
    expect(await closed).toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { destroyReason: DestroyReason.RESOURCELIMIT } });
    expect(await streamErr).toMatchObject({ code: 'CIRCUIT_DESTROYED' });
    await until(() => mine2.every((x) => x.isClosed), 'the circuit gone from every hop');
  });

  it('closing the middle relay ends a running stream with an error, and the next request succeeds', async () => {
    const k = key('kill');
    const s = await manager.connect({ host: '127.0.0.1', port: sourcePort, isolation: k });
    const circ = manager.circuits().find((c) => [...c.edge.streams.values()].includes(s))!;
    const middle = relays.find((r) => r.info.fingerprint === circ.hops[1].target.fingerprint)!;
    let got = 0;
    let ended = false;
    const failed = new Promise<unknown>((resolve) => {
      s.on('data', (d: Buffer) => { got += d.length; });
      s.on('end', () => { ended = true; });
      s.on('error', resolve);
    });
    await until(() => got > 1024 * 1024, 'data through the circuit');
    await middle.rc.close();
    await middle.listener.close();
    expect(await failed).toMatchObject({ code: 'CIRCUIT_DESTROYED' });
    expect(ended).toBe(false);
    const again = await manager.connect({ host: '127.0.0.1', port: echoPort, isolation: k });
    const d = pattern(100_000, 5);
    expect(sha(await echoRoundTrip(again, d))).toBe(sha(d));
  });
});
