// Issue 4, refusals and abuse, on a network started by `npm start` (its own processes): the
// SOCKS reply codes for exit policy, closed port and unknown name (SPEC.md §7.8.4); garbage,
// truncated and unsupported SOCKS requests; garbage, a bad CREATE2, an unknown circuit id and
// a RELAY_EARLY flood on a relay's ORPort (SPEC.md §1, §7b.4, §7b.9). Each costs only its own
// connection, link or circuit, the relay counts it, and the network keeps serving curl.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { createHash, randomBytes } from '../../src/crypto/primitives';
import { CellCommand, CELL_PAYLOAD_LEN, encodeCell } from '../../src/wire/cell';
import { DestroyReason, HandshakeType, decodeDestroy, encodeCreate2, encodeVersions } from '../../src/wire/messages';
import { RelayCommand, encodeRelayPayloadInto } from '../../src/wire/relay-msg';
import { connectLink, SUPPORTED_LINK_VERSIONS, type Channel } from '../../src/link';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import { MAX_RELAY_EARLY } from '../../src/circuit/constants';
import type { Cell } from '../../src/wire/cell';
import { eventually, freePort } from '../helpers/daemon';
import {
  curl, deltas, metric, scrape, scrapeRelays, startContentServer, startLocalNet, viaSocks,
  type ContentServer, type LocalNet, type NetNode, type Sample,
} from '../helpers/localnet';

let net0: LocalNet;
let web: ContentServer;
let body: Buffer;

beforeAll(async () => {
  body = randomBytes(1 << 20);
  web = await startContentServer(body);
  net0 = await startLocalNet({ relays: 6, exits: 2 });
}, 240_000);

afterAll(async () => {
  await net0?.stop();
  await web?.close();
}, 60_000);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The proxy still serves: curl fetches 1 MiB intact through a 3-hop circuit. */
async function curlWorks(user = 'after'): Promise<void> {
  const r = await curl([...viaSocks(net0.socksPort, user), '-sS', '--max-time', '120', `http://127.0.0.1:${web.port}/bytes/0/${body.length}`], { timeoutMs: 130_000 });
  expect(r.code, r.stderr).toBe(0);
  expect(sha(r.stdout)).toBe(sha(body));
}

/** A socket with "read exactly n bytes" and "resolves when the peer closed". */
function rawConnect(port: number): Promise<{ s: net.Socket; read(n: number, ms?: number): Promise<Buffer>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    const closed = new Promise<void>((r) => s.once('close', () => { wake?.(); r(); }));
    s.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); wake?.(); });
    s.on('error', () => {});
    const read = async (n: number, ms = 90_000): Promise<Buffer> => {
      const until = Date.now() + ms;
      while (buf.length < n) {
        if (s.destroyed || Date.now() > until) throw new Error(`wanted ${n} bytes, have ${buf.length} (${s.destroyed ? 'closed' : 'timeout'})`);
        await new Promise<void>((r) => { wake = r; setTimeout(r, 200); });
      }
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    };
    s.once('connect', () => resolve({ s, read, closed }));
    s.once('error', reject);
  });
}

/** A SOCKS5 CONNECT with username/password; resolves with the reply code (RFC 1928 §6). */
async function socksReply(host: string, port: number, user = 'refusals'): Promise<number> {
  const c = await rawConnect(net0.socksPort);
  try {
    c.s.write(Buffer.from([5, 1, 2]));
    expect([...(await c.read(2))]).toEqual([5, 2]);
    c.s.write(Buffer.concat([Buffer.from([1, user.length]), Buffer.from(user), Buffer.from([1]), Buffer.from('x')]));
    expect([...(await c.read(2))]).toEqual([1, 0]);
    const ip = /^\d+\.\d+\.\d+\.\d+$/.test(host);
    const addr = ip ? Buffer.from([1, ...host.split('.').map(Number)]) : Buffer.concat([Buffer.from([3, host.length]), Buffer.from(host)]);
    const p = Buffer.alloc(2);
    p.writeUInt16BE(port);
    c.s.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, p]));
    const reply = await c.read(10);
    expect(reply[0]).toBe(5);
    return reply[1];
  } finally {
    c.s.destroy();
  }
}

async function exitCounters(): Promise<Map<string, Sample[]>> {
  return scrapeRelays(net0.exits);
}

describe('SOCKS reply codes for failures at the exit (SPEC.md §7.8.4)', () => {
  it('an address no exit policy allows → 0x02 (not allowed), before any exit is asked', async () => {
    const before = await exitCounters();
    expect(await socksReply('10.255.255.1', 80)).toBe(0x02);
    const after = await exitCounters();
    // Refused by the client's path selection: no exit's published policy allows it.
    expect([...deltas(before, after, 'bitcloud_streams_opened_total', { kind: 'begin' }).values()].every((v) => v === 0)).toBe(true);
    const r = await curl([...viaSocks(net0.socksPort), '-sS', '--max-time', '60', 'http://10.255.255.1:80/'], { timeoutMs: 70_000 });
    expect(r.code).toBe(97); // CURLE_PROXY
    expect(r.stderr).toMatch(/\(2\)/);
  }, 120_000);

  it('a name the exit resolves to a refused address → the exit refuses by policy → 0x02', async () => {
    // "167772161" is 10.0.0.1 to the resolver: the client cannot judge a name, the exit must.
    const before = await exitCounters();
    expect(await socksReply('167772161', 80)).toBe(0x02);
    const after = await exitCounters();
    const refusals = [...deltas(before, after, 'bitcloud_exit_connects_total', { result: 'policy' }).values()].reduce((a, b) => a + b, 0);
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect([...deltas(before, after, 'bitcloud_exit_connects_total', { result: 'ok' }).values()].every((v) => v === 0)).toBe(true);
  }, 120_000);

  it('a closed port → 0x05 (connection refused)', async () => {
    const closed = await freePort();
    expect(await socksReply('127.0.0.1', closed)).toBe(0x05);
    const r = await curl([...viaSocks(net0.socksPort, 'closed'), '-sS', '--max-time', '60', `http://127.0.0.1:${closed}/`], { timeoutMs: 70_000 });
    expect(r.code).toBe(97);
    expect(r.stderr).toMatch(/\(5\)/);
  }, 120_000);

  it('an unresolvable name → 0x04 (host unreachable), resolved at the exit', async () => {
    expect(await socksReply('does-not-exist.invalid', 80)).toBe(0x04);
    const r = await curl([...viaSocks(net0.socksPort, 'nxdomain'), '-sS', '--max-time', '60', 'http://does-not-exist.invalid/'], { timeoutMs: 70_000 });
    expect(r.code).toBe(97);
    expect(r.stderr).toMatch(/\(4\)/);
  }, 120_000);
});

describe('malformed SOCKS input costs only that connection', () => {
  it('garbage, a truncated greeting, BIND, UDP ASSOCIATE and SOCKS4 get an error reply or a close; curl works right after', async () => {
    const before = await scrape(net0.proxy.ports.metrics);
    // Garbage (not a SOCKS version): closed.
    let c = await rawConnect(net0.socksPort);
    c.s.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]));
    await c.closed;

    // A truncated greeting (2 methods announced, 1 sent), then our side ends: closed.
    c = await rawConnect(net0.socksPort);
    c.s.end(Buffer.from([5, 2, 0]));
    await c.closed;

    // BIND and UDP ASSOCIATE: reply 0x07 (command not supported), then closed.
    for (const cmd of [2, 3]) {
      c = await rawConnect(net0.socksPort);
      c.s.write(Buffer.from([5, 1, 0]));
      expect([...(await c.read(2))]).toEqual([5, 0]);
      c.s.write(Buffer.from([5, cmd, 0, 1, 127, 0, 0, 1, 0, 80]));
      const reply = await c.read(10);
      expect(reply[1]).toBe(0x07);
      await c.closed;
    }

    // SOCKS4: a SOCKS4 "rejected" reply (0x5b), then closed.
    c = await rawConnect(net0.socksPort);
    c.s.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0x61, 0]));
    expect((await c.read(8))[1]).toBe(0x5b);
    await c.closed;

    const after = await scrape(net0.proxy.ports.metrics);
    const refusals = metric(after, 'bitcloud_socks_refusals_total') - metric(before, 'bitcloud_socks_refusals_total');
    expect(refusals).toBeGreaterThanOrEqual(4);
    await curlWorks('after-socks-garbage');
  }, 180_000);
});

describe('abuse of a relay ORPort costs only that link or circuit (SPEC.md §7b.9)', () => {
  let target: NetNode;
  let hop: HopTarget;
  let other: HopTarget;

  beforeAll(async () => {
    target = net0.relays[0];
    const c = await net0.consensus();
    const find = (fp: string | null) => {
      const r = c.relays.find((x) => x.fingerprint === fp);
      if (!r) throw new Error(`relay ${fp} not in the consensus`);
      return r;
    };
    hop = find(target.identity);
    other = find(net0.relays[1].identity);
  }, 60_000);

  const link = () => connectLink({ host: '127.0.0.1', port: target.ports.or, expectedIdentity: hop.identity });
  const relayMetrics = () => scrape(target.ports.metrics);
  const delta = (a: Sample[], b: Sample[], name: string, labels: Record<string, string> = {}) =>
    metric(b, name, labels) - metric(a, name, labels);
  /** The next DESTROY for `circId` on `ch`. */
  const destroyOn = (ch: Channel, circId: number) => new Promise<number>((resolve) => {
    const f = (cell: Cell) => { if (cell.circId === circId && cell.command === CellCommand.DESTROY) { ch.off('cell', f); resolve(decodeDestroy(cell.payload)); } };
    ch.on('cell', f);
  });

  it('garbage before TLS: that connection fails its handshake and is counted', async () => {
    const m0 = await relayMetrics();
    const c = await rawConnect(target.ports.or);
    c.s.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(20)));
    await c.closed;
    await eventually(async () => delta(m0, await relayMetrics(), 'bitcloud_link_handshake_failures_total') >= 1, 20_000);
  }, 60_000);

  it('garbage bytes inside an open link: that link closes with CELL_UNKNOWN_COMMAND, counted', async () => {
    const m0 = await relayMetrics();
    const s = tls.connect({ host: '127.0.0.1', port: target.ports.or, minVersion: 'TLSv1.3', rejectUnauthorized: false });
    s.on('error', () => {});
    s.resume(); // read (and drop) the relay's flight, so that its close reaches us
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    // An anonymous initiator's flight is VERSIONS alone (SPEC.md §1.1); then 0xff bytes: command 255.
    s.write(encodeCell(0, CellCommand.VERSIONS, encodeVersions([...SUPPORTED_LINK_VERSIONS])));
    s.write(Buffer.alloc(1028, 0xff));
    await closed;
    await eventually(async () => delta(m0, await relayMetrics(), 'bitcloud_link_errors_total', { code: 'CELL_UNKNOWN_COMMAND' }) >= 1, 20_000);
  }, 60_000);

  it('a bad CREATE2, an unknown circuit id and a RELAY_EARLY flood each cost one circuit; the link and its other circuits live on', async () => {
    const m0 = await relayMetrics();
    const ch = await link();
    const cl = new ClientLink(ch);
    try {
      // A circuit that must survive everything below.
      const keep = ClientCircuit.allocate(cl);
      await keep.create(hop);

      // Bad CREATE2: an onionskin addressed to nobody → DESTROY (PROTOCOL) for that id only.
      const badId = ch.allocateCircId();
      const destroyed = destroyOn(ch, badId);
      ch.send(badId, CellCommand.CREATE2, encodeCreate2({ htype: HandshakeType.NTOR, hdata: randomBytes(96) }));
      expect(await destroyed).toBe(DestroyReason.PROTOCOL);

      // A RELAY cell on a circuit id that was never created: dropped and counted.
      ch.send(ch.allocateCircId(), CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN));

      // RELAY_EARLY flood: valid DROP messages, but more than 8 RELAY_EARLY cells on one circuit.
      const flood = ClientCircuit.allocate(cl);
      await flood.create(hop);
      const gone = new Promise<Error>((r) => flood.once('close', r));
      const scratch = Buffer.alloc(CELL_PAYLOAD_LEN);
      for (let i = 0; i < MAX_RELAY_EARLY + 4; i++) {
        encodeRelayPayloadInto(scratch, RelayCommand.DROP, 0, Buffer.alloc(0));
        flood.hops[0].crypto.originate(scratch);
        flood.hops[0].crypto.encryptOutbound(scratch);
        ch.send(flood.circId, CellCommand.RELAY_EARLY, scratch);
      }
      expect((await gone).message).toMatch(/destroyed/);
      expect(flood.isOpen).toBe(false);

      // The link and the first circuit still work: extend it, and build a fresh one beside it.
      expect(ch.closed).toBe(false);
      expect(keep.isOpen).toBe(true);
      await keep.extend(other);
      expect(keep.length).toBe(2);
      const fresh = ClientCircuit.allocate(cl);
      await fresh.create(hop);
      expect(fresh.isOpen).toBe(true);

      const m1 = await relayMetrics();
      expect(delta(m0, m1, 'bitcloud_circuit_errors_total', { code: 'NTOR_WRONG_ID' })).toBe(1);
      expect(delta(m0, m1, 'bitcloud_circuit_errors_total', { code: 'CIRCUIT_UNKNOWN' })).toBeGreaterThanOrEqual(1);
      expect(delta(m0, m1, 'bitcloud_circuit_errors_total', { code: 'RELAY_EARLY_LIMIT' })).toBe(1);
      expect(delta(m0, m1, 'bitcloud_circuits_destroyed_total', { reason: 'PROTOCOL' })).toBeGreaterThanOrEqual(1);
      keep.destroy();
      fresh.destroy();
    } finally {
      ch.close('test done');
    }
  }, 120_000);

  it('after all that, the relay still runs and the network still carries curl', async () => {
    expect(net0.read().nodes.find((n) => n.name === target.name)?.running).toBe(true);
    process.kill(target.pid, 0);
    await relayMetrics();
    await curlWorks('after-orport-abuse');
  }, 150_000);
});
