// SPEC.md §5.6.2 "Wipe on close": when a circuit is freed, at the relay and at the client, every
// hop layer's keys are erased once, as CGO's per-cell UPDATE erases the replaced ones (key copies
// and POLYVAL tables zeroed, AES contexts released); a wiped layer refuses further use. Every AES
// key and POLYVAL table the crypto makes is recorded here, so that what survives a close is seen.
import { describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import { CircuitSwitch } from '../../src/circuit/switch';
import { QueueBudget } from '../../src/circuit/cell-queue';
import { CellCommand, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RelayCommand, encodeRelayPayload } from '../../src/wire/relay-msg';
import { HandshakeType, decodeCreated2, encodeCreate2, encodeDestroy, DestroyReason } from '../../src/wire/messages';
import { ntorClientCreate, ntorClientFinish, NTOR_PROTOID_BITCLOUD_CGO } from '../../src/crypto/ntor';
import { createClientHop, createRelayHop, relayCryptoKeyLen } from '../../src/crypto/relay-crypto';
import type { RelayCryptoAlgorithm } from '../../src/crypto/hop-crypto';
import { ed25519Generate, x25519Generate, randomBytes } from '../../src/crypto/primitives';
import { CircIdAllocator } from '../../src/link/circ-ids';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import { hopTarget } from '../helpers/client-circuit-fixture';
import { isBitcloudError } from '../../src/errors';
import { encodeBegin } from '../../src/wire/stream-messages';
import { RELAY_DATA_MAX } from '../../src/wire/relay-msg';
import type { IncomingStream } from '../../src/circuit/types';
import type { CellChannel, CellChannelEvents } from '../../src/link/cell-channel';
import type { RelayCircuit } from '../../src/circuit/relay-circuit';

const made = vi.hoisted(() => ({ aes: [] as object[], polyval: [] as object[] }));

vi.mock('../../src/crypto/primitives', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/crypto/primitives')>();
  class RecordedPolyval extends m.PolyvalHash {
    constructor(key: Uint8Array, inputLength?: number) { super(key, inputLength); made.polyval.push(this); }
  }
  return {
    ...m,
    aes128Block: (key: Uint8Array) => { const a = m.aes128Block(key); made.aes.push(a); return a; },
    PolyvalHash: RecordedPolyval,
  };
});

/** The AES key copies and POLYVAL tables made since `from` (indices into `made`), but those in `skip`, that are not all zero. */
function liveKeys(from: { aes: number; polyval: number }, skip: ReadonlySet<object> = new Set()): number {
  let live = 0;
  for (const a of made.aes.slice(from.aes)) {
    if (skip.has(a)) continue;
    const k = (a as unknown as { k: Buffer }).k;
    if (k.some((b) => b !== 0)) live++;
  }
  for (const p of made.polyval.slice(from.polyval)) {
    if (skip.has(p)) continue;
    const t = (p as unknown as { p: { t: Array<{ s0: number; s1: number; s2: number; s3: number }> } }).p.t;
    if (t.some((e) => e.s0 !== 0 || e.s1 !== 0 || e.s2 !== 0 || e.s3 !== 0)) live++;
  }
  return live;
}

function mark(): { aes: number; polyval: number } {
  return { aes: made.aes.length, polyval: made.polyval.length };
}

/** Run `f`, adding what AES keys and POLYVAL tables it makes to `into`. */
function making<T>(into: Set<object>, f: () => T): T {
  const m = mark();
  const r = f();
  for (const o of [...made.aes.slice(m.aes), ...made.polyval.slice(m.polyval)]) into.add(o);
  return r;
}

function codeOf(f: () => unknown): string {
  try { f(); return 'none'; } catch (e) { return isBitcloudError(e) ? e.code : `other: ${(e as Error).message}`; }
}

class FakeChannel extends EventEmitter<CellChannelEvents> implements CellChannel {
  closed = false;
  /** send() answers false (the link pushes back) while set. */
  pushBack = false;
  sent: Array<{ circId: number; command: number; payload: Buffer }> = [];
  readonly remoteAddress = '10.9.8.7:4444';
  batchesReads = false;
  private readonly ids: CircIdAllocator;
  constructor(readonly isInitiator: boolean, public peerIdentity: Buffer | null = null) {
    super();
    this.ids = new CircIdAllocator(isInitiator);
  }
  send(circId: number, command: number, payload: Uint8Array): boolean {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN);
    p.set(payload.subarray(0, CELL_PAYLOAD_LEN));
    this.sent.push({ circId, command, payload: p });
    return !this.pushBack;
  }
  allocateCircId(): number { return this.ids.allocate(); }
  releaseCircId(id: number): void { this.ids.release(id); }
  close(): void { if (!this.closed) { this.closed = true; this.emit('close'); } }
  endRead(): void { this.emit('readEnd'); }
  deliver(circId: number, command: number, payload: Uint8Array): void {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN);
    p.set(payload.subarray(0, CELL_PAYLOAD_LEN));
    this.emit('cell', { circId, command: command as never, payload: p });
  }
}

/**
 * Attach a link that batches its reads (a real link) to `sw` and create one tor1 circuit
 * (0x8000_0001) over it: the link, the client's layer for the relay's hop, and the relay's circuit.
 */
function openTor1Circuit(sw: CircuitSwitch, identity: Buffer, onion: ReturnType<typeof x25519Generate>) {
  const prev = new FakeChannel(false, null);
  prev.batchesReads = true;
  sw.attach(prev);
  const { state, onionskin } = ntorClientCreate({ id: identity, onionKey: onion.publicKey });
  prev.deliver(0x8000_0001, CellCommand.CREATE2, encodeCreate2({ htype: HandshakeType.NTOR, hdata: onionskin }));
  prev.endRead();
  const created = prev.sent.find((c) => c.command === CellCommand.CREATED2)!;
  const hop = createClientHop(ntorClientFinish(state, decodeCreated2(created.payload).hdata, relayCryptoKeyLen('tor1')), 'tor1');
  const [circ] = [...sw.circuits] as RelayCircuit[];
  return { prev, hop, circ };
}

describe('a relay wipes a circuit\'s layer when the circuit is freed (SPEC.md §5.6.2)', () => {
  for (const alg of ['cgo', 'tor1'] as RelayCryptoAlgorithm[]) {
    it(`${alg}: after DESTROY no key copy or POLYVAL table of its layer is left, and the layer refuses further use`, () => {
      const identity = ed25519Generate();
      const onion = x25519Generate();
      const sw = new CircuitSwitch({ identity: identity.publicKey, onionKeys: () => [onion], hooks: {} });
      const prev = new FakeChannel(false, null);
      sw.attach(prev);
      const at = mark();
      const cgo = alg === 'cgo';
      const { state, onionskin } = ntorClientCreate({ id: identity.publicKey, onionKey: onion.publicKey, protoid: cgo ? NTOR_PROTOID_BITCLOUD_CGO : undefined });
      prev.deliver(0x8000_0001, CellCommand.CREATE2, encodeCreate2({ htype: cgo ? HandshakeType.NTOR_CGO : HandshakeType.NTOR, hdata: onionskin }));
      const created = prev.sent.find((c) => c.command === CellCommand.CREATED2)!;
      // The test's own client side of the hop (not the relay's): its keys are not looked at.
      const client = new Set<object>();
      const hop = making(client, () => createClientHop(ntorClientFinish(state, decodeCreated2(created.payload).hdata, relayCryptoKeyLen(alg)), alg));
      const [circ] = [...sw.circuits] as RelayCircuit[];
      const layer = (circ as unknown as { crypto: ReturnType<typeof createRelayHop> }).crypto;
      // A few cells each way, so that CGO's per-cell updates have replaced the first keys.
      for (let i = 0; i < 3; i++) {
        const p = encodeRelayPayload(RelayCommand.DROP, 0, Buffer.alloc(0));
        making(client, () => { hop.originate(p); hop.encryptOutbound(p, CellCommand.RELAY); });
        prev.deliver(0x8000_0001, CellCommand.RELAY, p);
      }
      expect(sw.circuitCount).toBe(1);
      if (cgo) expect(liveKeys(at, client)).toBeGreaterThan(0);
      prev.deliver(0x8000_0001, CellCommand.DESTROY, encodeDestroy(DestroyReason.FINISHED));
      expect(sw.circuitCount).toBe(0);
      expect(liveKeys(at, client)).toBe(0);
      expect(codeOf(() => layer.decryptOutbound(Buffer.alloc(CELL_PAYLOAD_LEN), CellCommand.RELAY))).toBe('CRYPTO_WIPED');
      expect(codeOf(() => layer.encryptInbound(Buffer.alloc(CELL_PAYLOAD_LEN), CellCommand.RELAY))).toBe('CRYPTO_WIPED');
      expect(codeOf(() => layer.lastDigest())).toBe('CRYPTO_WIPED');
    });
  }

  it('a run of cells gathered for a circuit destroyed before the run is handled is dropped, not run through its wiped layer', () => {
    const identity = ed25519Generate();
    const onion = x25519Generate();
    const errors: string[] = [];
    const sw = new CircuitSwitch({ identity: identity.publicKey, onionKeys: () => [onion], hooks: {} });
    const error = sw.metrics.error.bind(sw.metrics);
    sw.metrics.error = (code: string) => { errors.push(code); error(code); };
    const { prev, hop, circ } = openTor1Circuit(sw, identity.publicKey, onion);
    for (let i = 0; i < 2; i++) {
      const p = encodeRelayPayload(RelayCommand.DROP, 0, Buffer.alloc(0));
      hop.originate(p);
      hop.encryptOutbound(p, CellCommand.RELAY);
      prev.deliver(0x8000_0001, CellCommand.RELAY, p);
    }
    circ.destroy(DestroyReason.FINISHED); // e.g. by the memory cap, while the read's run waits
    prev.endRead();
    expect(errors).toEqual([]);
    expect(sw.circuitCount).toBe(0);
  });

  it('a circuit the memory cap kills while its own cell waits for another circuit\'s origin run is not sent through its wiped layer', () => {
    const identity = ed25519Generate();
    const onion = x25519Generate();
    let now = 0;
    // Room for three queued cells (SPEC.md §7b.9: queued cells and unread stream data under one cap).
    const budget = new QueueBudget(3 * QueueBudget.CELL_COST, () => now);
    const sw = new CircuitSwitch({ identity: identity.publicKey, onionKeys: () => [onion], hooks: {}, budget });
    const prev = new FakeChannel(false, null);
    prev.batchesReads = true; // a real link: originated cells are gathered into origin runs
    sw.attach(prev);
    for (const id of [0x8000_0001, 0x8000_0002]) {
      const { onionskin } = ntorClientCreate({ id: identity.publicKey, onionKey: onion.publicKey });
      prev.deliver(id, CellCommand.CREATE2, encodeCreate2({ htype: HandshakeType.NTOR, hdata: onionskin }));
    }
    prev.endRead();
    const [a, b] = [...sw.circuits] as RelayCircuit[];
    // b holds two cells' worth of stream data its reader has not taken, the oldest under the cap.
    budget.hold(b, 2 * QueueBudget.CELL_COST);
    now = 10;
    for (let i = 0; i < 3; i++) a.sendRelay(RelayCommand.DROP, 0, Buffer.alloc(0));
    // The link pushes back: a's run, sent before b's cell, queues cells and goes over the cap,
    // and the oldest owner (b) is killed while b's own cell is being originated.
    prev.pushBack = true;
    expect(codeOf(() => b.sendRelay(RelayCommand.DROP, 0, Buffer.alloc(0)))).toBe('none');
    expect(b.isClosed).toBe(true);
    expect(a.isClosed).toBe(false);
    expect(budget.oomKills).toBe(1);
  });

  it('an exit whose own origin run puts the memory cap over, at a cell whose digest a SENDME will check, loses its circuit, not the stream writer', async () => {
    const identity = ed25519Generate();
    const onion = x25519Generate();
    const budget = new QueueBudget(40 * QueueBudget.CELL_COST);
    let inc: IncomingStream | null = null;
    const sw = new CircuitSwitch({ identity: identity.publicKey, onionKeys: () => [onion], hooks: { onStream: (s) => { inc = s; s.accept(); } }, budget });
    const { prev, hop, circ } = openTor1Circuit(sw, identity.publicKey, onion);
    const begin = encodeRelayPayload(RelayCommand.BEGIN, 1, encodeBegin({ host: 'example.com', port: 80 }));
    hop.originate(begin);
    hop.encryptOutbound(begin, CellCommand.RELAY);
    prev.deliver(0x8000_0001, CellCommand.RELAY, begin);
    prev.endRead();
    await Promise.resolve();
    const stream = (inc as IncomingStream | null)!.stream;
    stream.on('error', () => {});
    // 72 DATA cells go out (sent at the end of the task); the next run's 128th cell is the 200th,
    // whose digest the circuit window keeps for the SENDME (SPEC.md §7.4.3).
    stream.write(Buffer.alloc(72 * RELAY_DATA_MAX, 1));
    await new Promise((r) => setTimeout(r, 0));
    expect(circ.isClosed).toBe(false);
    prev.pushBack = true;
    expect(codeOf(() => stream.write(Buffer.alloc(128 * RELAY_DATA_MAX, 2)))).toBe('none');
    expect(circ.isClosed).toBe(true);
    expect(budget.oomKills).toBe(1);
  });

  it('a layer is wiped once: a second wipe does nothing', () => {
    const keys = randomBytes(relayCryptoKeyLen('cgo'));
    const layer = createRelayHop(keys, 'cgo');
    const at = mark();
    const again = createRelayHop(Buffer.from(keys), 'cgo');
    again.wipe();
    expect(() => again.wipe()).not.toThrow();
    expect(liveKeys(at)).toBe(0);
    expect(layer.lastDigest()).toHaveLength(20); // another layer of the same keys is untouched
  });
});

describe('a client wipes its circuit\'s layers when the circuit closes (SPEC.md §5.6.2)', () => {
  for (const alg of ['cgo', 'tor1'] as RelayCryptoAlgorithm[]) {
    it(`${alg}: after destroy() no key copy or POLYVAL table of its hops is left, and the layers refuse further use`, () => {
      const ch = Object.assign(new EventEmitter(), {
        closed: false, peerIdentity: null, isInitiator: true, batchesReads: false,
        send: () => true, allocateCircId: () => 0x80000001, releaseCircId: () => {}, close: () => {},
      }) as unknown as CellChannel;
      const circ = ClientCircuit.allocate(new ClientLink(ch), alg, null);
      const at = mark();
      for (let i = 0; i < 3; i++) (circ as unknown as { addHop(t: unknown, k: Buffer): void }).addHop(hopTarget(i), randomBytes(relayCryptoKeyLen(alg)));
      circ.sendControl(RelayCommand.DROP, Buffer.alloc(0)); // the last hop's keys move on (CGO)
      if (alg === 'cgo') expect(liveKeys(at)).toBeGreaterThan(0);
      circ.destroy();
      expect(liveKeys(at)).toBe(0);
      for (const h of circ.hops) {
        expect(codeOf(() => h.crypto.encryptOutbound(Buffer.alloc(CELL_PAYLOAD_LEN), CellCommand.RELAY))).toBe('CRYPTO_WIPED');
        expect(codeOf(() => h.crypto.decryptInbound(Buffer.alloc(CELL_PAYLOAD_LEN), CellCommand.RELAY))).toBe('CRYPTO_WIPED');
      }
    });
  }
});
