// A hostile relay against the client's side of a circuit (SPEC.md §7b.1, §7b.3, §7b.5–§7b.7):
// well-encrypted relay cells whose bodies break the protocol close the circuit, and everything
// waiting on it fails at once with that error.
import { describe, expect, it } from 'vitest';
import { hopTarget, keyedCircuit } from '../helpers/client-circuit-fixture';
import { type HopTarget } from '../../src/client/client-circuit';
import { createRelayHop } from '../../src/crypto/relay-crypto';
import { createClientHop } from '../../src/crypto/relay-crypto';
import { randomBytes } from '../../src/crypto/primitives';
import type { IncomingStream } from '../../src/circuit/types';
import { CellCommand, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RelayCommand, encodeRelayPayload } from '../../src/wire/relay-msg';

const target = hopTarget;
const circuit = (nHops: number) => keyedCircuit(nHops);

/** What `p` has come to within `ms`: its value, its error, or 'pending'. */
async function settled<T>(p: Promise<T>, ms = 100): Promise<{ value?: T; error?: unknown } | 'pending'> {
  return Promise.race([
    p.then((value) => ({ value }), (error: unknown) => ({ error })),
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms)),
  ]);
}

describe('a malformed answer fails what waits for it at once (SPEC.md §7b.5)', () => {
  it('a CREATED2 whose hlen runs past the cell closes the circuit and fails create() with its error', async () => {
    const { circ } = circuit(0);
    const creating = circ.create(target(0));
    const bad = Buffer.alloc(CELL_PAYLOAD_LEN);
    bad.writeUInt16BE(0xffff, 0);
    circ.onCell(CellCommand.CREATED2, bad);
    expect(circ.isOpen).toBe(false);
    const r = await settled(creating);
    expect(r).not.toBe('pending');
    expect((r as { error: unknown }).error).toBe(circ.closedWith);
    expect(circ.closedWith?.code).toBe('MSG_TRUNCATED');
  });

  it('an EXTENDED2 with a short body closes the circuit and fails extend() with its error', async () => {
    const { circ, fromHop, toHop } = circuit(1);
    const extending = circ.extend(target(1));
    expect(toHop(0).map((m) => m.command)).toEqual([RelayCommand.EXTEND2]);
    fromHop(0, RelayCommand.EXTENDED2, 0, Buffer.from([0x00, 0x40, 1, 2, 3]));
    expect(circ.isOpen).toBe(false);
    const r = await settled(extending);
    expect(r).not.toBe('pending');
    expect((r as { error: unknown }).error).toBe(circ.closedWith);
  });

  it('a RESOLVED whose answer length runs past its end closes the circuit and fails resolve() with its error, not STREAM_TIMEOUT', async () => {
    const { circ, fromHop, toHop } = circuit(3);
    const resolving = circ.resolve('example.com', 5_000);
    const [req] = toHop(2);
    expect(req.command).toBe(RelayCommand.RESOLVE);
    // type IPv4, len 200, but only 4 bytes follow.
    fromHop(2, RelayCommand.RESOLVED, req.streamId, Buffer.from([4, 200, 1, 2, 3, 4]));
    expect(circ.isOpen).toBe(false);
    const r = await settled(resolving);
    expect(r).not.toBe('pending');
    expect((r as { error: unknown }).error).toBe(circ.closedWith);
    expect(circ.closedWith?.code).not.toBe('STREAM_TIMEOUT');
  });
});

describe('stream messages from the last hop against the stream\'s state (SPEC.md §7b.6)', () => {
  /** A circuit of three hops with one BEGIN sent: its stream id and what openStream() comes to. */
  function opening() {
    const c = circuit(3);
    const opened = c.circ.openStream({ kind: 'begin', host: 'example.com', port: 80 }, 5_000);
    const [begin] = c.toHop(2);
    expect(begin.command).toBe(RelayCommand.BEGIN);
    return { ...c, opened, id: begin.streamId };
  }

  it('DATA before CONNECTED is a protocol violation: the circuit closes and the bytes never reach the reader', async () => {
    const { circ, fromHop, opened, id } = opening();
    fromHop(2, RelayCommand.DATA, id, Buffer.from('HTTP/1.1 200 OK\r\n\r\nforged'));
    fromHop(2, RelayCommand.CONNECTED, id, Buffer.alloc(0));
    expect(circ.isOpen).toBe(false);
    expect(circ.closedWith?.code).toBe('RELAY_PROTOCOL');
    const r = await settled(opened);
    expect(r).not.toBe('pending');
    expect((r as { error: unknown }).error).toBe(circ.closedWith);
  });

  it('DATA after CONNECTED reaches the reader', async () => {
    const { circ, fromHop, opened, id } = opening();
    fromHop(2, RelayCommand.CONNECTED, id, Buffer.alloc(0));
    fromHop(2, RelayCommand.DATA, id, Buffer.from('hello'));
    const { stream } = await opened;
    const chunk = await new Promise<Buffer>((r) => stream.once('data', r));
    expect(chunk.toString()).toBe('hello');
    expect(circ.isOpen).toBe(true);
    circ.destroy();
  });
});

describe('CONNECTED is the accepting end\'s answer (SPEC.md §7b.6)', () => {
  it('a CONNECTED sent by the opener to a hidden node\'s end of a rendezvous circuit closes the circuit; the node\'s stream never opens', () => {
    // The node's circuit: one hop of its own (the rendezvous point) and the virtual hop's relay
    // end (SPEC.md §9.21.5 step 5), which the client reaches through the rendezvous point.
    const { circ } = circuit(0);
    const rpKeys = randomBytes(72), vKeys = randomBytes(72);
    (circ as unknown as { addHop(t: HopTarget, k: Buffer): void }).addHop(target(0), Buffer.from(rpKeys));
    const rp = createRelayHop(Buffer.from(rpKeys)), client = createClientHop(Buffer.from(vKeys));
    const streams: IncomingStream[] = [];
    circ.attachServiceEnd(Buffer.from(vKeys), (inc) => streams.push(inc));
    const fromClient = (command: number, streamId: number, data: Buffer) => {
      const p = encodeRelayPayload(command, streamId, data);
      client.originate(p);
      client.encryptOutbound(p, CellCommand.RELAY);
      rp.encryptInbound(p, CellCommand.RELAY);
      circ.onCell(CellCommand.RELAY, p);
    };
    fromClient(RelayCommand.BEGIN_STORAGE, 1, Buffer.alloc(0));
    expect(streams).toHaveLength(1);
    fromClient(RelayCommand.CONNECTED, 1, Buffer.alloc(0));
    expect(circ.isOpen).toBe(false);
    expect(circ.closedWith?.code).toBe('RELAY_PROTOCOL');
    expect(streams[0].stream.state).toBe('closed');
  });
});
