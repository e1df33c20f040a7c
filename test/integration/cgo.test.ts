// SPEC.md §5.6: Counter Galois Onion relay crypto on a network started by `npm start` (its own
// processes): a client configured with "relayCrypto": "cgo" downloads through real relays that
// count the circuits as CGO; and the tagging test: a CGO cell with one bit flipped on its way to the
// guard is never delivered (the exit does not recognize it and destroys the circuit; the
// destination receives nothing altered) while a tor1 circuit beside it works as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from '../../src/crypto/primitives';
import { CellCommand } from '../../src/wire/cell';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import type { CircuitStream } from '../../src/circuit/stream';
import type { BitcloudError } from '../../src/errors';
import { eventually } from '../helpers/daemon';
import {
  curl, deltas, metric, scrape, scrapeRelays, startContentServer, startExtraProxy, startLocalNet, viaSocks,
  type ContentServer, type LocalNet, type NetNode,
} from '../helpers/localnet';

let net0: LocalNet;
let web: ContentServer;
let body: Buffer;
let echo: net.Server;
let echoPort = 0;
/** Bytes each echo connection received, in connection order. */
const echoed: Buffer[][] = [];

beforeAll(async () => {
  body = randomBytes(1 << 20);
  web = await startContentServer(body);
  echo = net.createServer((s) => {
    const got: Buffer[] = [];
    echoed.push(got);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => { got.push(Buffer.from(d)); s.write(d); });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as net.AddressInfo).port;
  net0 = await startLocalNet({ relays: 4, exits: 2 });
}, 240_000);

afterAll(async () => {
  await net0?.stop();
  await web?.close();
  await new Promise<void>((r) => (echo ? echo.close(() => r()) : r()));
}, 60_000);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function echoRoundTrip(stream: CircuitStream, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= data.length) { stream.off('data', onData); resolve(Buffer.concat(parts)); }
    };
    stream.on('data', onData);
    stream.once('error', reject);
    stream.write(data);
  });
}

describe('a client configured for CGO (SPEC.md §5.6.1)', () => {
  it('downloads 1 MiB intact through real relays, which count its circuits as CGO', async () => {
    const before = await scrapeRelays(net0.relays);
    const p = await startExtraProxy(net0, 'cgo-client', { relayCrypto: 'cgo', preemptiveCircuits: 0 });
    try {
      const r = await curl([...viaSocks(p.socksPort, 'cgo'), '-sS', '--max-time', '120', `http://127.0.0.1:${web.port}/bytes/0/${body.length}`], { timeoutMs: 130_000 });
      expect(r.code, `${r.stderr}\nproxy log:\n${p.daemon.logs.slice(-20).map((l) => l.text).join('\n')}`).toBe(0);
      expect(sha(r.stdout)).toBe(sha(body));
      const after = await scrapeRelays(net0.relays);
      const cgo = deltas(before, after, 'bitcloud_circuits_created_total', { crypto: 'cgo' });
      // Guard, middle and exit of the circuit that carried the download each created a CGO circuit.
      expect([...cgo.values()].filter((n) => n > 0).length).toBeGreaterThanOrEqual(3);
    } finally {
      await p.daemon.stop();
    }
  }, 180_000);
});

describe('tagging: one flipped bit in a CGO cell destroys the circuit (SPEC.md §5.6.4)', () => {
  let guard: HopTarget, middle: HopTarget, exit: HopTarget;
  let guardNode: NetNode, exitNode: NetNode;

  beforeAll(async () => {
    const c = await net0.consensus();
    const find = (n: NetNode) => {
      const r = c.relays.find((x) => x.fingerprint === n.identity);
      if (!r) throw new Error(`relay ${n.name} not in the consensus`);
      return r;
    };
    exitNode = net0.exits[0];
    const others = net0.relays.filter((n) => n.role !== 'exit');
    guardNode = others[0];
    guard = find(guardNode);
    middle = find(others[1]);
    exit = find(exitNode);
  }, 60_000);

  async function circuit(alg: 'cgo' | 'tor1'): Promise<{ cl: ClientLink; c: ClientCircuit }> {
    const ch = await connectLink({ host: '127.0.0.1', port: guardNode.ports.or, expectedIdentity: guard.identity });
    const cl = new ClientLink(ch);
    const c = ClientCircuit.allocate(cl, alg);
    await c.create(guard);
    await c.extend(middle);
    await c.extend(exit);
    return { cl, c };
  }

  /** Flip `bit` of the payload of the next RELAY cell circuit `c` sends (an adversary on the guard's link). */
  function tagNextCell(cl: ClientLink, c: ClientCircuit, bit: number): () => boolean {
    const send = cl.send.bind(cl);
    let tagged = false;
    cl.send = (circId, command, payload) => {
      if (!tagged && circId === c.circId && command === CellCommand.RELAY) {
        tagged = true;
        const t = Buffer.from(payload);
        t[bit >> 3] ^= 1 << (bit & 7);
        send(circId, command, t);
        return;
      }
      send(circId, command, payload);
    };
    return () => tagged;
  }

  // A bit of the CGO tag, of the relay header inside the cell, and of the stream data.
  for (const bit of [5, 16 * 8 + 1, 300 * 8 + 6]) {
    it(`bit ${bit}: the exit does not recognize the cell and destroys the circuit; the destination gets nothing altered`, async () => {
      const m0 = await scrape(exitNode.ports.metrics);
      const { cl, c } = await circuit('cgo');
      try {
        const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
        stream.on('error', () => {});
        // The circuit carries data both ways first.
        const hello = randomBytes(50_000);
        expect(sha(await echoRoundTrip(stream, hello))).toBe(sha(hello));
        // This stream's connection at the echo server, known by what it received (the exit's
        // CONNECTED can reach us before the server's accept callback has run, in either order).
        const mine = echoed.findIndex((got) => Buffer.concat(got).subarray(0, hello.length).equals(hello));
        expect(mine).toBeGreaterThanOrEqual(0);

        const wasTagged = tagNextCell(cl, c, bit);
        const closed = new Promise<BitcloudError>((r) => c.once('close', r));
        stream.write(Buffer.alloc(400, 0x5a));
        const why = await closed;
        expect(wasTagged()).toBe(true);
        expect(why.code).toBe('CIRCUIT_DESTROYED');
        expect(c.isOpen).toBe(false);
        await eventually(async () => metric(await scrape(exitNode.ports.metrics), 'bitcloud_circuit_errors_total', { code: 'RELAY_UNRECOGNIZED' })
          - metric(m0, 'bitcloud_circuit_errors_total', { code: 'RELAY_UNRECOGNIZED' }) >= 1, 20_000);
        // The destination received the honest bytes and nothing after them.
        expect(Buffer.concat(echoed[mine]).equals(hello)).toBe(true);
      } finally {
        cl.ch.close();
      }
    }, 90_000);
  }

  it('the same link carries a tor1 circuit and a CGO circuit side by side', async () => {
    const { cl, c } = await circuit('cgo');
    try {
      const t1 = ClientCircuit.allocate(cl, 'tor1');
      await t1.create(guard);
      await t1.extend(middle);
      await t1.extend(exit);
      for (const circ of [c, t1]) {
        const { stream } = await circ.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
        const d = randomBytes(200_000);
        expect(sha(await echoRoundTrip(stream, d))).toBe(sha(d));
        stream.end();
      }
    } finally {
      cl.ch.close();
    }
  }, 90_000);
});
