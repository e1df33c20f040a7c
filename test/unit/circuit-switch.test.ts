// SPEC.md §7b.1–§7b.5, §7b.9: the relay-side circuit switch driven cell by cell over fake links:
// CREATE2, EXTEND2/EXTENDED2, forwarding both ways, RELAY_EARLY rules, DESTROY propagation,
// queues behind congested links, queue bounds and the memory cap.
import { describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import { CircuitSwitch } from '../../src/circuit/switch';
import { QueueBudget } from '../../src/circuit/cell-queue';
import { CellCommand, CELL_PAYLOAD_LEN, CELL_LEN, type CellCommandValue } from '../../src/wire/cell';
import { RELAY_DATA_MAX, RelayCommand, decodeRelayPayload, encodeRelayPayload } from '../../src/wire/relay-msg';
import type { CircuitStream } from '../../src/circuit/stream';
import { RendezvousRelay } from '../../src/circuit/rendezvous';
import { encodeCookie } from '../../src/wire/hidden';
import {
  DestroyReason, EndReason, decodeCreated2, decodeDestroy, decodeEnd, encodeBegin, encodeCreate2, encodeCreated2, encodeExtend2, encodeDestroy, encodeTruncate,
} from '../../src/wire/messages';
import { ntorClientCreate, ntorClientFinish } from '../../src/crypto/ntor';
import { createClientHop, RELAY_CRYPTO_KEY_LEN } from '../../src/crypto/relay-crypto';
import type { ClientHopCrypto } from '../../src/crypto/hop-crypto';
import { ed25519Generate, x25519Generate, randomBytes } from '../../src/crypto/primitives';
import { CircIdAllocator } from '../../src/link/circ-ids';
import { err } from '../../src/errors';
import type { CellChannel, CellChannelEvents } from '../../src/link/cell-channel';
import type { SwitchHooks } from '../../src/circuit/types';
import { CircuitMetrics } from '../../src/circuit/metrics';
import { createExitHandler, createResolver, ResolveGate } from '../../relay/exit';
import { decodeResolved, encodeResolve } from '../../src/wire/messages';
import { parseExitPolicy } from '../../src/dir/exit-policy';
import net from 'node:net';
import { Registry } from 'prom-client';

interface SentCell { circId: number; command: number; payload: Buffer }

class FakeChannel extends EventEmitter<CellChannelEvents> implements CellChannel {
  closed = false;
  full = false;
  sent: SentCell[] = [];
  /** holdReading() calls (SPEC.md §7b.9), in ms. */
  holds: number[] = [];
  readonly remoteAddress = '10.9.8.7:4444';
  /** When true, the switch gathers RELAY cells until 'readEnd' (see endRead()). */
  batchesReads = false;
  private readonly ids: CircIdAllocator;
  constructor(readonly isInitiator: boolean, public peerIdentity: Buffer | null = null) {
    super();
    this.ids = new CircIdAllocator(isInitiator);
  }
  send(circId: number, command: number, payload: Uint8Array): boolean {
    if (this.closed) throw err('LINK_CLOSED', 'closed');
    const p = Buffer.alloc(CELL_PAYLOAD_LEN);
    p.set(payload.subarray(0, CELL_PAYLOAD_LEN));
    this.sent.push({ circId, command, payload: p });
    return !this.full;
  }
  allocateCircId(): number { return this.ids.allocate(); }
  releaseCircId(id: number): void { this.ids.release(id); }
  holdReading(ms: number): void { this.holds.push(ms); }
  close(): void { if (!this.closed) { this.closed = true; this.emit('close'); } }
  /** A cell arriving from the peer. */
  deliver(circId: number, command: CellCommandValue, payload: Uint8Array): void {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN);
    p.set(payload.subarray(0, CELL_PAYLOAD_LEN));
    this.emit('cell', { circId, command, payload: p });
  }
  /** The end of one read from the peer (a channel that batches reads emits it). */
  endRead(): void { this.emit('readEnd'); }
  take(command?: number): SentCell[] {
    const out = this.sent.filter((c) => command === undefined || c.command === command);
    this.sent = this.sent.filter((c) => !(command === undefined || c.command === command));
    return out;
  }
}
const tick = () => new Promise((r) => setImmediate(r));

function setup(o: {
  limits?: ConstructorParameters<typeof CircuitSwitch>[0]['limits']; budget?: QueueBudget; extend?: () => Promise<FakeChannel>; allow?: () => boolean; batched?: boolean;
  hooks?: Partial<SwitchHooks<FakeChannel>>; metrics?: CircuitMetrics; clock?: () => number;
} = {}) {
  const identity = ed25519Generate();
  const onion = x25519Generate();
  const next = new FakeChannel(true, randomBytes(32));
  next.batchesReads = o.batched ?? false;
  const sw = new CircuitSwitch({
    identity: identity.publicKey, onionKeys: () => [onion], limits: o.limits, budget: o.budget, metrics: o.metrics, clock: o.clock,
    hooks: {
      extend: o.extend ?? (async () => { sw.attach(next); return next; }),
      allowCircuit: o.allow,
      ...o.hooks,
    },
  });
  const prev = new FakeChannel(false, null);
  prev.batchesReads = o.batched ?? false;
  sw.attach(prev);
  /** CREATE2 from the client on `prev`; returns the client's hop crypto. */
  const create = (circId = 0x8000_0001): ClientHopCrypto => {
    const { state, onionskin } = ntorClientCreate({ id: identity.publicKey, onionKey: onion.publicKey });
    prev.deliver(circId, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin }));
    const [c] = prev.take(CellCommand.CREATED2);
    expect(c?.circId).toBe(circId);
    return createClientHop(ntorClientFinish(state, decodeCreated2(c.payload).hdata, RELAY_CRYPTO_KEY_LEN));
  };
  /** Send a relay message to this hop from the client. */
  const toHop = (hop: ClientHopCrypto, circId: number, cellCmd: CellCommandValue, cmd: number, streamId: number, data: Uint8Array) => {
    const p = encodeRelayPayload(cmd, streamId, data);
    hop.originate(p);
    hop.encryptOutbound(p);
    prev.deliver(circId, cellCmd, p);
    prev.endRead();
  };
  const extend = async (hop: ClientHopCrypto, circId = 0x8000_0001): Promise<number> => {
    toHop(hop, circId, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
      linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: next.peerIdentity! }], htype: 2, hdata: Buffer.alloc(96, 3),
    }));
    await tick();
    const [c2] = next.take(CellCommand.CREATE2);
    expect(c2).toBeDefined();
    next.deliver(c2.circId, CellCommand.CREATED2, encodeCreated2({ hdata: Buffer.alloc(64, 4) }));
    await tick(); // on a link that batches reads, cells this relay originates go at the end of the task
    const [ext] = prev.take(CellCommand.RELAY);
    expect(hop.decryptInbound(ext.payload)).toBe(true);
    expect(decodeRelayPayload(ext.payload).command).toBe(RelayCommand.EXTENDED2);
    return c2.circId;
  };
  return { sw, prev, next, create, toHop, extend, identity, onion };
}

describe('CREATE2', () => {
  it('answers a good ntor handshake with CREATED2 and refuses a bad one with DESTROY(PROTOCOL), nothing else affected', () => {
    const t = setup();
    t.create(0x8000_0001);
    t.prev.deliver(0x8000_0002, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(96, 9) }));
    const [d] = t.prev.take(CellCommand.DESTROY);
    expect(d.circId).toBe(0x8000_0002);
    expect(decodeDestroy(d.payload)).toBe(DestroyReason.PROTOCOL);
    t.prev.deliver(0x8000_0003, CellCommand.CREATE2, encodeCreate2({ htype: 1, hdata: Buffer.alloc(10) }));
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('a CREATE2 on an id in use destroys that id (both ends then agree it is free)', () => {
    const t = setup();
    t.create(0x8000_0005);
    t.prev.deliver(0x8000_0005, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(96) }));
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
    expect(t.sw.circuitCount).toBe(0);
  });

  it('refuses with RESOURCELIMIT past the per-link limit or when the DoS hook says no', () => {
    const t = setup({ limits: { maxCircuitsPerLink: 1 } });
    t.create(0x8000_0001);
    t.prev.deliver(0x8000_0002, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(96) }));
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.RESOURCELIMIT);
    const u = setup({ allow: () => false });
    u.prev.deliver(0x8000_0001, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(96) }));
    expect(decodeDestroy(u.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.RESOURCELIMIT);
    // SPEC.md §7b.9: a rate refusal also stops reading that link for the hold time.
    expect(u.prev.holds).toEqual([500]);
  });
});

describe('onionskin queue (SPEC.md §7b.9)', () => {
  /** A switch with links from two sources, "flood" and "honest" (the creationSource hook). */
  function queueSetup(limits: Partial<ConstructorParameters<typeof CircuitSwitch>[0]['limits']> = {}) {
    const identity = ed25519Generate();
    const onion = x25519Generate();
    const source = new Map<FakeChannel, string>();
    const sw = new CircuitSwitch<FakeChannel>({
      identity: identity.publicKey, onionKeys: () => [onion], limits,
      // Sources named relay:<id> stand for links from relays the consensus lists.
      hooks: { creationSource: (ch) => source.get(ch)!, isListedRelay: (ch) => source.get(ch)!.startsWith('relay:') },
    });
    const link = (name: string) => { const ch = new FakeChannel(false); source.set(ch, name); sw.attach(ch); return ch; };
    const create2 = (ch: FakeChannel, circId: number) => {
      const { onionskin } = ntorClientCreate({ id: identity.publicKey, onionKey: onion.publicKey });
      ch.deliver(circId, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin }));
    };
    return { sw, link, create2 };
  }
  const ids = (n: number, from = 1) => Array.from({ length: n }, (_, i) => 0x8000_0000 + from + i);

  it('past the per-turn budget CREATE2 waits; sources are served round robin, so one arriving behind a flood is answered in the next turn', async () => {
    const t = queueSetup({ createsPerTurn: 4 });
    const flood = t.link('flood');
    const honest = t.link('honest');
    for (const id of ids(20)) t.create2(flood, id);
    t.create2(honest, 0x8000_0001);
    expect(flood.take(CellCommand.CREATED2)).toHaveLength(4); // answered at once: this turn's budget
    expect(honest.sent).toEqual([]);
    expect(t.sw.queuedCreateCount).toBe(17);
    await tick();
    // Next turn: flood, honest, flood, flood — the honest CREATE2 did not wait behind 16 flood cells.
    expect(honest.take(CellCommand.CREATED2).map((c) => c.circId)).toEqual([0x8000_0001]);
    expect(flood.take(CellCommand.CREATED2)).toHaveLength(3);
    for (let i = 0; i < 10 && t.sw.queuedCreateCount > 0; i++) await tick();
    expect(flood.take(CellCommand.CREATED2)).toHaveLength(13);
    expect(t.sw.circuitCount).toBe(21);
  });

  it('a source with a full queue is refused with RESOURCELIMIT before any handshake, and that link is held', async () => {
    const t = queueSetup({ createsPerTurn: 2, maxQueuedCreatesPerSource: 3 });
    const flood = t.link('flood');
    for (const id of ids(8)) t.create2(flood, id);
    const refused = flood.take(CellCommand.DESTROY);
    expect(refused.map((c) => decodeDestroy(c.payload))).toEqual([DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT]);
    expect(flood.holds).toEqual([500, 500, 500]);
    for (let i = 0; i < 10 && t.sw.queuedCreateCount > 0; i++) await tick();
    expect(flood.take(CellCommand.CREATED2)).toHaveLength(5);
  });

  it('a listed relay\'s link with a full queue is refused RESOURCELIMIT but never held: it carries other clients\' circuits', async () => {
    const t = queueSetup({ createsPerTurn: 2, maxQueuedCreatesPerSource: 3 });
    const relay = t.link(`relay:${'ab'.repeat(32)}`);
    for (const id of ids(8)) t.create2(relay, id);
    expect(relay.take(CellCommand.DESTROY).map((c) => decodeDestroy(c.payload))).toEqual([DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT]);
    expect(relay.holds).toEqual([]);
    for (let i = 0; i < 10 && t.sw.queuedCreateCount > 0; i++) await tick();
    expect(relay.take(CellCommand.CREATED2)).toHaveLength(5);
  });

  it('a CREATE2 that waited past the maximum wait is refused unanswered', async () => {
    const t = queueSetup({ createsPerTurn: 1, maxOnionQueueDelayMs: 0 });
    const refused = vi.spyOn(t.sw.metrics, 'refused');
    const a = t.link('a');
    for (const id of ids(3)) t.create2(a, id);
    const until = performance.now() + 3;
    while (performance.now() < until) { /* let the queued ones age past 0 ms */ }
    await tick();
    expect(a.take(CellCommand.CREATED2)).toHaveLength(1);
    expect(a.take(CellCommand.DESTROY).map((c) => decodeDestroy(c.payload))).toEqual([DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT]);
    expect(t.sw.circuitCount).toBe(1);
    // Counted apart from a full queue's refusals, which hold the link (SPEC.md §7b.9 metrics).
    expect(refused.mock.calls).toEqual([['onion_queue_wait'], ['onion_queue_wait']]);
  });

  it('the wait of a queued CREATE2 is timed on a monotonic clock: a step of the wall clock neither refuses nor keeps it (SPEC.md §7b.9)', async () => {
    const t = queueSetup({ createsPerTurn: 1 });
    const a = t.link('a');
    const wall = Date.now();
    const now = vi.spyOn(Date, 'now').mockReturnValue(wall);
    try {
      for (const id of ids(2)) t.create2(a, id); // the second waits
      now.mockReturnValue(wall + 3_600_000); // the wall clock steps forward an hour
      await tick();
      expect(a.take(CellCommand.DESTROY)).toEqual([]);
      expect(a.take(CellCommand.CREATED2).map((c) => c.circId)).toEqual(ids(2));
    } finally {
      now.mockRestore();
    }
    // Stepped back, it does not keep a CREATE2 that waited past the maximum.
    const s = queueSetup({ createsPerTurn: 1, maxOnionQueueDelayMs: 0 });
    const b = s.link('b');
    const back = vi.spyOn(Date, 'now').mockReturnValue(wall);
    try {
      for (const id of ids(2)) s.create2(b, id);
      back.mockReturnValue(wall - 3_600_000);
      const until = performance.now() + 3;
      while (performance.now() < until) { /* let the queued one age past 0 ms */ }
      await tick();
      expect(b.take(CellCommand.CREATED2).map((c) => c.circId)).toEqual(ids(1));
      expect(b.take(CellCommand.DESTROY).map((c) => decodeDestroy(c.payload))).toEqual([DestroyReason.RESOURCELIMIT]);
    } finally {
      back.mockRestore();
    }
  });

  it('a DESTROY withdraws a waiting CREATE2; a CREATE2 on a waiting id is an id in use; a closed link\'s CREATE2s are dropped', async () => {
    const t = queueSetup({ createsPerTurn: 1 });
    const a = t.link('a');
    const b = t.link('b');
    t.create2(a, 0x8000_0001); // answered at once
    t.create2(a, 0x8000_0002); // waits
    t.create2(a, 0x8000_0003); // waits
    t.create2(b, 0x8000_0001); // waits; its link closes
    a.deliver(0x8000_0002, CellCommand.DESTROY, encodeDestroy(DestroyReason.FINISHED));
    t.create2(a, 0x8000_0003); // the id is still waiting
    expect(a.take(CellCommand.DESTROY).map((c) => [c.circId, decodeDestroy(c.payload)])).toEqual([[0x8000_0003, DestroyReason.PROTOCOL]]);
    b.close();
    for (let i = 0; i < 10 && t.sw.queuedCreateCount > 0; i++) await tick();
    expect(a.take(CellCommand.CREATED2).map((c) => c.circId)).toEqual([0x8000_0001]);
    expect(b.sent).toEqual([]);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('a CREATE2 on a waiting id withdraws the waiting one even when the link is at its circuit cap (never answered on a refused id)', async () => {
    const t = queueSetup({ createsPerTurn: 1, maxCircuitsPerLink: 2 });
    const a = t.link('a');
    t.create2(a, 0x8000_0001); // answered at once
    t.create2(a, 0x8000_0002); // waits: the link is now at its cap of 2
    t.create2(a, 0x8000_0002); // the same id again
    expect(a.take(CellCommand.DESTROY).map((c) => [c.circId, decodeDestroy(c.payload)])).toEqual([[0x8000_0002, DestroyReason.PROTOCOL]]);
    for (let i = 0; i < 10 && t.sw.queuedCreateCount > 0; i++) await tick();
    expect(t.sw.queuedCreateCount).toBe(0);
    expect(a.take(CellCommand.CREATED2).map((c) => c.circId)).toEqual([0x8000_0001]);
    expect(t.sw.circuitCount).toBe(1);
  });
});

describe('extending and forwarding', () => {
  it('EXTEND2 → CREATE2 onward → EXTENDED2 back; then cells pass both ways, RELAY_EARLY kept outbound', async () => {
    const t = setup();
    const hop = t.create();
    const nextId = await t.extend(hop);
    const junk = randomBytes(CELL_PAYLOAD_LEN);
    t.prev.deliver(0x8000_0001, CellCommand.RELAY_EARLY, junk);
    t.prev.deliver(0x8000_0001, CellCommand.RELAY, junk);
    const fwd = t.next.take();
    expect(fwd.map((c) => [c.circId, c.command])).toEqual([[nextId, CellCommand.RELAY_EARLY], [nextId, CellCommand.RELAY]]);
    t.next.deliver(nextId, CellCommand.RELAY, junk);
    const back = t.prev.take();
    expect(back.map((c) => [c.circId, c.command])).toEqual([[0x8000_0001, CellCommand.RELAY]]);
    expect(back[0].payload.equals(junk)).toBe(false); // our layer was added
  });

  it('links that batch reads: runs of interleaved circuits come out in arrival order with each layer exact, both ways', async () => {
    const t = setup({ batched: true });
    const ids = [0x8000_0001, 0x8000_0002, 0x8000_0003];
    const hops: ClientHopCrypto[] = [];
    const nextIds: number[] = [];
    for (const id of ids) {
      hops.push(t.create(id));
      nextIds.push(await t.extend(hops[hops.length - 1], id));
      t.prev.endRead();
      t.next.endRead();
    }
    // Reads of 1..9 cells, each cell for a random circuit: runs end at every change of circuit.
    const arrivals: Array<{ c: number; junk: Buffer }> = [];
    for (let read = 0; read < 40; read++) {
      const n = 1 + (read % 9);
      for (let k = 0; k < n; k++) {
        const c = randomBytes(1)[0] % 3;
        const junk = randomBytes(CELL_PAYLOAD_LEN);
        junk.writeUInt16BE(0xffff, 1); // recognized ≠ 0: for the next hop, forwarded
        const p = Buffer.from(junk);
        hops[c].encryptOutbound(p);
        arrivals.push({ c, junk });
        t.prev.deliver(ids[c], CellCommand.RELAY, p);
      }
      if (read === 20) t.prev.deliver(0x8000_0009, CellCommand.DESTROY, encodeDestroy(0)); // another command ends the run first
      else {
        // Earlier runs went when the circuit changed; the read's last run waits for its end.
        let tail = 0;
        while (tail < n && arrivals[arrivals.length - 1 - tail].c === arrivals[arrivals.length - 1].c) tail++;
        expect(t.next.sent.length).toBe(arrivals.length - tail);
      }
      t.prev.endRead();
    }
    const fwd = t.next.take(CellCommand.RELAY);
    expect(fwd.map((x) => x.circId)).toEqual(arrivals.map((a) => nextIds[a.c]));
    fwd.forEach((x, i) => expect(x.payload.equals(arrivals[i].junk)).toBe(true));
    // Backward: each relay cell gets exactly this hop's layer, in arrival order.
    const back: Array<{ c: number; junk: Buffer }> = [];
    for (let read = 0; read < 30; read++) {
      for (let k = 0; k < 1 + (read % 7); k++) {
        const c = (read + (k >> 1)) % 3;
        const junk = randomBytes(CELL_PAYLOAD_LEN);
        back.push({ c, junk });
        t.next.deliver(nextIds[c], CellCommand.RELAY, junk);
      }
      t.next.endRead();
    }
    const got = t.prev.take(CellCommand.RELAY);
    expect(got.map((x) => x.circId)).toEqual(back.map((b) => ids[b.c]));
    got.forEach((x, i) => {
      hops[back[i].c].decryptInbound(x.payload);
      expect(x.payload.subarray(11).equals(back[i].junk.subarray(11))).toBe(true);
    });
  });

  it('EXTEND2 in a plain RELAY cell destroys the circuit', () => {
    const t = setup();
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.EXTEND2, 0, encodeExtend2({
      linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], htype: 2, hdata: Buffer.alloc(96),
    }));
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
    expect(t.sw.circuitCount).toBe(0);
  });

  it('an extension that fails is a DESTROY with OR_IDENTITY or CONNECTFAILED', async () => {
    for (const [code, reason] of [['LINK_IDENTITY_MISMATCH', DestroyReason.OR_IDENTITY], ['EXTEND_IDENTITY_UNKNOWN', DestroyReason.OR_IDENTITY], ['LINK_CONNECT_FAILED', DestroyReason.CONNECTFAILED]] as const) {
      const t = setup({ extend: async () => { throw err(code, 'no'); } });
      const hop = t.create();
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
        linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], htype: 2, hdata: Buffer.alloc(96),
      }));
      await tick();
      expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(reason);
    }
  });

  it('a next link with no free circuit id destroys the circuit with DESTROY(RESOURCELIMIT), and nothing is left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => { unhandled.push(e); };
    process.on('unhandledRejection', onUnhandled);
    try {
      const t = setup();
      t.next.allocateCircId = () => { throw err('LINK_CIRCID_EXHAUSTED', 'no free id'); };
      const hop = t.create();
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
        linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: t.next.peerIdentity! }], htype: 2, hdata: Buffer.alloc(96, 3),
      }));
      await tick();
      await tick();
      const destroys = t.prev.take(CellCommand.DESTROY);
      expect(destroys.map((c) => c.circId)).toEqual([0x8000_0001]);
      expect(decodeDestroy(destroys[0].payload)).toBe(DestroyReason.RESOURCELIMIT);
      expect(t.next.take(CellCommand.CREATE2)).toHaveLength(0);
      expect(t.sw.circuitCount).toBe(0);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a TRUNCATE while an extension waits for its link drops that extension: one CREATE2 onward, and teardown leaves no circuit on the next link', async () => {
    // EXTEND2, TRUNCATE, EXTEND2 in one read, before the first extension's link is there.
    let release!: () => void;
    const ready = new Promise<void>((r) => { release = r; });
    const t = setup({ extend: async () => { await ready; t.sw.attach(t.next); return t.next; } });
    const hop = t.create();
    const extend2 = () => t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
      linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: t.next.peerIdentity! }], htype: 2, hdata: Buffer.alloc(96, 3),
    }));
    extend2();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.TRUNCATE, 0, encodeTruncate());
    extend2();
    const [truncated] = t.prev.take(CellCommand.RELAY);
    expect(hop.decryptInbound(truncated.payload)).toBe(true);
    expect(decodeRelayPayload(truncated.payload).command).toBe(RelayCommand.TRUNCATED);
    release();
    await tick();
    await tick();
    const creates = t.next.take(CellCommand.CREATE2);
    expect(creates).toHaveLength(1);
    const link = t.sw.attach(t.next);
    expect([...link.circuits.keys()]).toEqual([creates[0].circId]);
    // The client goes away: the one circuit onward is destroyed, and nothing is left on that link.
    t.prev.deliver(0x8000_0001, CellCommand.DESTROY, encodeDestroy(DestroyReason.REQUESTED));
    expect(t.next.take(CellCommand.DESTROY).map((c) => c.circId)).toEqual([creates[0].circId]);
    expect(link.circuits.size).toBe(0);
    expect(t.sw.circuitCount).toBe(0);
  });

  it('a TRUNCATE while an extension waits: that extension failing later does not destroy the circuit', async () => {
    let fail!: () => void;
    const failed = new Promise<void>((r) => { fail = r; });
    const t = setup({ extend: async () => { await failed; throw err('LINK_CONNECT_FAILED', 'no'); } });
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
      linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: t.next.peerIdentity! }], htype: 2, hdata: Buffer.alloc(96, 3),
    }));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.TRUNCATE, 0, encodeTruncate());
    fail();
    await tick();
    await tick();
    expect(t.prev.take(CellCommand.DESTROY)).toHaveLength(0);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('an extension in progress and a rendezvous role exclude each other: either one second destroys the circuit (SPEC.md §7b.3, §9.21.5)', async () => {
    let release!: () => void;
    const ready = new Promise<void>((r) => { release = r; });
    const rendezvous = new RendezvousRelay(() => Buffer.alloc(32));
    // The previous hop counts as a listed relay, so that only the role and the extension decide.
    const t = setup({ extend: async () => { await ready; t.sw.attach(t.next); return t.next; }, hooks: { rendezvous, isListedRelay: () => true } });
    const extend2 = (hop: ClientHopCrypto, id: number) => t.toHop(hop, id, CellCommand.RELAY_EARLY, RelayCommand.EXTEND2, 0, encodeExtend2({
      linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: t.next.peerIdentity! }], htype: 2, hdata: Buffer.alloc(96, 3),
    }));
    // EXTEND2 still waiting for its link, then ESTABLISH_RENDEZVOUS in the same read.
    const a = t.create(0x8000_0001);
    extend2(a, 0x8000_0001);
    t.toHop(a, 0x8000_0001, CellCommand.RELAY, RelayCommand.ESTABLISH_RENDEZVOUS, 0, encodeCookie(Buffer.alloc(20, 1)));
    // ESTABLISH_RENDEZVOUS, then EXTEND2.
    const b = t.create(0x8000_0002);
    t.toHop(b, 0x8000_0002, CellCommand.RELAY, RelayCommand.ESTABLISH_RENDEZVOUS, 0, encodeCookie(Buffer.alloc(20, 2)));
    extend2(b, 0x8000_0002);
    release();
    await tick();
    await tick();
    expect(t.prev.take(CellCommand.DESTROY).map((c) => [c.circId, decodeDestroy(c.payload)])).toEqual([
      [0x8000_0001, DestroyReason.PROTOCOL], [0x8000_0002, DestroyReason.PROTOCOL],
    ]);
    expect(t.next.take(CellCommand.CREATE2)).toEqual([]);
    expect(rendezvous.pendingCookies).toBe(0);
    expect(t.sw.circuitCount).toBe(0);
  });

  it('ESTABLISH_RENDEZVOUS on a circuit whose previous hop is no listed relay: DESTROY PROTOCOL, HIDDEN_ONE_HOP, counted; from a listed relay it parks (SPEC.md §9.21.5 step 1)', async () => {
    let listed = false;
    const metrics = new CircuitMetrics(new Registry());
    const refused = vi.spyOn(metrics, 'refused');
    const errors = vi.spyOn(metrics, 'error');
    const rendezvous = new RendezvousRelay(() => Buffer.alloc(32), { onRefused: (k) => metrics.refused(k) });
    const t = setup({ hooks: { rendezvous, isListedRelay: () => listed }, metrics });
    const a = t.create(0x8000_0001);
    t.toHop(a, 0x8000_0001, CellCommand.RELAY, RelayCommand.ESTABLISH_RENDEZVOUS, 0, encodeCookie(Buffer.alloc(20, 1)));
    expect(t.prev.take(CellCommand.DESTROY).map((c) => [c.circId, decodeDestroy(c.payload)])).toEqual([[0x8000_0001, DestroyReason.PROTOCOL]]);
    expect(t.prev.take(CellCommand.RELAY)).toEqual([]);
    expect(refused.mock.calls).toEqual([['hidden_one_hop']]);
    expect(errors.mock.calls).toContainEqual(['HIDDEN_ONE_HOP']);
    expect(rendezvous.pendingCookies).toBe(0);
    // The same link once the consensus lists its peer (judged when the message is read).
    listed = true;
    const b = t.create(0x8000_0002);
    t.toHop(b, 0x8000_0002, CellCommand.RELAY, RelayCommand.ESTABLISH_RENDEZVOUS, 0, encodeCookie(Buffer.alloc(20, 2)));
    expect(t.prev.take(CellCommand.DESTROY)).toEqual([]);
    expect(t.prev.take(CellCommand.RELAY)).toHaveLength(1);
    expect(rendezvous.pendingCookies).toBe(1);
  });

  it('a ninth RELAY_EARLY cell destroys the circuit; RELAY_EARLY travelling inbound too', async () => {
    const t = setup();
    const hop = t.create();
    for (let i = 0; i < 8; i++) t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.DROP, 0, Buffer.alloc(0));
    expect(t.sw.circuitCount).toBe(1);
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY_EARLY, RelayCommand.DROP, 0, Buffer.alloc(0));
    expect(t.sw.circuitCount).toBe(0);
    const u = setup();
    const h2 = u.create();
    const nextId = await u.extend(h2);
    u.next.deliver(nextId, CellCommand.RELAY_EARLY, Buffer.alloc(CELL_PAYLOAD_LEN));
    expect(decodeDestroy(u.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
    expect(decodeDestroy(u.next.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
  });

  it('a cell nobody recognizes at the end of the circuit destroys it; one for an unknown id is dropped', () => {
    const t = setup();
    t.create();
    t.prev.deliver(0x8000_0777, CellCommand.RELAY, randomBytes(CELL_PAYLOAD_LEN));
    expect(t.prev.take()).toEqual([]);
    expect(t.sw.circuitCount).toBe(1);
    t.prev.deliver(0x8000_0001, CellCommand.RELAY, randomBytes(CELL_PAYLOAD_LEN));
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.PROTOCOL);
  });
});

describe('DESTROY and closed links', () => {
  it('propagates DESTROY with its reason in both directions', async () => {
    const t = setup();
    const hop = t.create();
    const nextId = await t.extend(hop);
    t.next.deliver(nextId, CellCommand.DESTROY, encodeDestroy(DestroyReason.TIMEOUT));
    const [d] = t.prev.take(CellCommand.DESTROY);
    expect([d.circId, decodeDestroy(d.payload)]).toEqual([0x8000_0001, DestroyReason.TIMEOUT]);
    expect(t.next.take(CellCommand.DESTROY)).toEqual([]); // not sent back where it came from

    const u = setup();
    const h2 = u.create();
    const n2 = await u.extend(h2);
    u.prev.deliver(0x8000_0001, CellCommand.DESTROY, encodeDestroy(DestroyReason.NONE));
    const [d2] = u.next.take(CellCommand.DESTROY);
    expect([d2.circId, decodeDestroy(d2.payload)]).toEqual([n2, DestroyReason.NONE]);
    expect(u.sw.circuitCount).toBe(0);
  });

  it('a closed link destroys its circuits with CHANNEL_CLOSED toward the other side', async () => {
    const t = setup();
    const hop = t.create();
    await t.extend(hop);
    t.next.close();
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.CHANNEL_CLOSED);
    expect(t.sw.circuitCount).toBe(0);
  });
});

describe('queues behind congested links (SPEC.md §7b.9)', () => {
  it('queues once the link pushes back and sends in order when it drains', async () => {
    const t = setup();
    const hop = t.create();
    const nextId = await t.extend(hop);
    t.prev.full = true;
    const cells = Array.from({ length: 10 }, (_, i) => Buffer.alloc(CELL_PAYLOAD_LEN, i));
    for (const c of cells) t.next.deliver(nextId, CellCommand.RELAY, c);
    expect(t.prev.take()).toHaveLength(1); // the send that found the link full
    expect(t.sw.budget.queuedCells).toBe(9);
    t.prev.full = false;
    t.prev.emit('drain');
    expect(t.prev.take()).toHaveLength(9);
    expect(t.sw.budget.queuedCells).toBe(0);
  });

  it('a circuit that overfills its queue is destroyed both ways with RESOURCELIMIT', async () => {
    const t = setup({ limits: { maxQueuedCellsPerCircuit: 20 } });
    const hop = t.create();
    const nextId = await t.extend(hop);
    t.prev.full = true;
    for (let i = 0; i < 22; i++) t.next.deliver(nextId, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN, i));
    expect(t.sw.circuitCount).toBe(0);
    expect(decodeDestroy(t.next.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.RESOURCELIMIT);
    expect(decodeDestroy(t.prev.take(CellCommand.DESTROY)[0].payload)).toBe(DestroyReason.RESOURCELIMIT);
    expect(t.sw.budget.queuedCells).toBe(0);
  });

  it('the memory cap kills the circuit with the oldest queued cell first', async () => {
    let now = 0;
    const budget = new QueueBudget(30 * CELL_LEN, () => now);
    const t = setup({ budget });
    const hopA = t.create(0x8000_0001);
    const idA = await t.extend(hopA, 0x8000_0001);
    const hopB = t.create(0x8000_0002);
    const idB = await t.extend(hopB, 0x8000_0002);
    t.prev.full = true;
    t.next.deliver(idA, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN)); // congests the link
    now = 1; for (let i = 0; i < 15; i++) t.next.deliver(idA, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN));
    now = 2; for (let i = 0; i < 16; i++) t.next.deliver(idB, CellCommand.RELAY, Buffer.alloc(CELL_PAYLOAD_LEN));
    expect(t.sw.circuitCount).toBe(1);
    expect([...t.sw.circuits][0].next && [...t.sw.circuits][0].nextId).toBe(idB);
    expect(budget.oomKills).toBe(1);
  });

  it('stream data a circuit end holds unread counts under the memory cap: the circuit holding the oldest dies, and its bytes leave the count', async () => {
    // SPEC.md §7b.9: each circuit stays under its own bound on unread data (1 MiB); circuits are
    // many, so the memory cap counts that data with the queued cells, as Tor's OOM handler does.
    let now = 0;
    const budget = new QueueBudget(300 * RELAY_DATA_MAX, () => now);
    const streams: CircuitStream[] = [];
    const t = setup({ budget, hooks: { onStream: (inc) => { inc.accept(); streams.push(inc.stream); } } }); // nobody reads
    const hopA = t.create(0x8000_0001);
    const hopB = t.create(0x8000_0002);
    const data = Buffer.alloc(RELAY_DATA_MAX, 7);
    t.toHop(hopA, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 1, Buffer.alloc(0));
    t.toHop(hopB, 0x8000_0002, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 1, Buffer.alloc(0));
    now = 1; for (let i = 0; i < 200; i++) t.toHop(hopA, 0x8000_0001, CellCommand.RELAY, RelayCommand.DATA, 1, data);
    await tick();
    expect(t.sw.circuitCount).toBe(2);
    t.prev.take();
    now = 2; for (let i = 0; i < 150; i++) t.toHop(hopB, 0x8000_0002, CellCommand.RELAY, RelayCommand.DATA, 1, data);
    expect(t.sw.circuitCount).toBe(1);
    expect(budget.oomKills).toBe(1);
    expect(t.prev.take(CellCommand.DESTROY).map((c) => [c.circId, decodeDestroy(c.payload)])).toEqual([[0x8000_0001, DestroyReason.RESOURCELIMIT]]);
    expect(streams[0].destroyed).toBe(true);
    expect(budget.heldBytes).toBe(150 * RELAY_DATA_MAX);
    // The survivor's reader takes its data: it leaves the count.
    await tick();
    while (streams[1].read() !== null);
    expect(budget.heldBytes).toBe(0);
  });

  it('unread stream data is aged by its oldest unread byte: one whose reader keeps up outlives one that never reads', () => {
    let now = 0;
    const budget = new QueueBudget(1000, () => now);
    const killed: string[] = [];
    const owner = (name: string) => ({ killForMemory: () => { killed.push(name); budget.hold(o[name], 0); } });
    const o: Record<string, { killForMemory(): void }> = {};
    o.steady = owner('steady');
    o.stuck = owner('stuck');
    now = 1; budget.hold(o.steady, 400);
    now = 2; budget.hold(o.stuck, 400);
    now = 3; budget.hold(o.steady, 0); // its reader took all it held
    budget.hold(o.steady, 500);
    now = 4; budget.hold(o.stuck, 600);
    expect(killed).toEqual(['stuck']);
    expect(budget.heldBytes).toBe(500);
  });
});

describe('streams at a node without handlers', () => {
  it('BEGIN → END(EXITPOLICY), BEGIN_DIR → END(NOTDIRECTORY)', () => {
    const t = setup();
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, 1, encodeBegin({ host: 'example.com', port: 80 }));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 2, Buffer.alloc(0));
    const ends = t.prev.take(CellCommand.RELAY).map((c) => {
      expect(hop.decryptInbound(c.payload)).toBe(true);
      const m = decodeRelayPayload(c.payload);
      return [m.command, m.streamId, decodeEnd(m.data).reason];
    });
    expect(ends).toEqual([[RelayCommand.END, 1, EndReason.EXITPOLICY], [RelayCommand.END, 2, EndReason.NOTDIRECTORY]]);
    expect(t.sw.circuitCount).toBe(1);
  });
});

describe('exit streams (SPEC.md §7b.7)', () => {
  /** The relay messages the client reads back on `prev`, decrypted. */
  const inbound = (t: ReturnType<typeof setup>, hop: ClientHopCrypto) => t.prev.take(CellCommand.RELAY).map((c) => {
    expect(hop.decryptInbound(c.payload)).toBe(true);
    return decodeRelayPayload(c.payload);
  });
  const waitFor = async (cond: () => boolean) => { for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2)); };

  it('a BEGIN to the unspecified address (0.0.0.0, 0, 0x0, [::]) is refused EXITPOLICY before connecting, even under accept *:*', async () => {
    let accepted = 0;
    const srv = net.createServer((s) => { accepted++; s.destroy(); });
    await new Promise<void>((r) => srv.listen(0, r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      const onStream = createExitHandler({ policy: parseExitPolicy(['accept *:*']), refuseOneHop: false });
      const t = setup({ hooks: { onStream } });
      const hop = t.create();
      const hosts = ['0.0.0.0', '0', '0x0', '::', '::ffff:0.0.0.0'];
      hosts.forEach((host, i) => t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, i + 1, encodeBegin({ host, port })));
      const got: Array<[number, number, number]> = [];
      await waitFor(() => { for (const m of inbound(t, hop)) got.push([m.command, m.streamId, m.command === RelayCommand.END ? decodeEnd(m.data).reason : -1]); return got.length >= hosts.length; });
      expect(got.sort((a, b) => a[1] - b[1])).toEqual(hosts.map((_, i) => [RelayCommand.END, i + 1, EndReason.EXITPOLICY]));
      expect(accepted).toBe(0);
      expect(t.sw.circuitCount).toBe(1);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('a circuit from a client is refused BEGIN and RESOLVE here, before and after it extends elsewhere; BEGIN_DIR stays allowed', async () => {
    let dirStreams = 0;
    const exit = createExitHandler({ policy: parseExitPolicy(['accept *:*']), lookup: () => Promise.resolve([{ address: '192.0.2.1', family: 4 }]) });
    const resolve = createResolver({ lookup: () => Promise.resolve([{ address: '192.0.2.1', family: 4 }]) });
    const onStream: SwitchHooks['onStream'] = (inc) => { if (inc.kind === 'begin_dir') { dirStreams++; inc.accept(); } else exit(inc); };
    // The previous hop (the client) proved no listed identity; the next one is a listed relay.
    const t = setup({ hooks: { onStream, resolve, isListedRelay: (ch) => ch !== t.prev } });
    const hop = t.create();
    const ask = async (sid: number) => {
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, sid, encodeBegin({ host: '192.0.2.1', port: 80 }));
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, sid + 1, encodeBegin({ host: 'example.com', port: 80 }));
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, sid + 2, encodeResolve('example.com'));
      t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, sid + 3, Buffer.alloc(0));
      await tick(); await tick();
      return inbound(t, hop).map((m) => [m.command, m.streamId,
        m.command === RelayCommand.END ? decodeEnd(m.data).reason : m.command === RelayCommand.RESOLVED ? decodeResolved(m.data)[0].type : null]).sort((a, b) => Number(a[1]) - Number(b[1]));
    };
    const refused = (sid: number) => [
      [RelayCommand.END, sid, EndReason.EXITPOLICY], [RelayCommand.END, sid + 1, EndReason.EXITPOLICY],
      [RelayCommand.RESOLVED, sid + 2, 'error-nontransient'], [RelayCommand.CONNECTED, sid + 3, null],
    ];
    expect(await ask(1)).toEqual(refused(1));
    await t.extend(hop);
    expect(await ask(5)).toEqual(refused(5));
    expect(dirStreams).toBe(2);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('BEGINs to names count against the circuit\'s pending resolutions: one circuit cannot take every resolver slot of the exit', async () => {
    const started: string[] = [];
    const gate = new ResolveGate(256);
    const lookup = (host: string) => { started.push(host); return new Promise<never>(() => {}); }; // never settles
    const t = setup({ hooks: { onStream: createExitHandler({ policy: parseExitPolicy(['accept *:*']), refuseOneHop: false, lookup, gate }) } });
    const a = t.create(0x8000_0001);
    for (let sid = 1; sid <= 256; sid++) t.toHop(a, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, sid, encodeBegin({ host: `slow${sid}.example`, port: 80 }));
    await tick();
    expect(started).toHaveLength(4);
    expect(gate.active).toBe(4);
    const ends = inbound(t, a).map((m) => [m.command, m.command === RelayCommand.END ? decodeEnd(m.data).reason : null]);
    expect(ends).toHaveLength(252);
    expect(ends.every(([cmd, reason]) => cmd === RelayCommand.END && reason === EndReason.RESOURCELIMIT)).toBe(true);
    // Another circuit's BEGIN to a name still gets a resolver.
    const b = t.create(0x8000_0002);
    t.toHop(b, 0x8000_0002, CellCommand.RELAY, RelayCommand.BEGIN, 1, encodeBegin({ host: 'other.example', port: 80 }));
    await tick();
    expect(started.at(-1)).toBe('other.example');
    expect(t.prev.take(CellCommand.RELAY)).toEqual([]);
  });

  it('a RESOLVE refused by the circuit\'s cap of pending resolutions counts in exit connects as resolve_limit (SPEC.md §7b.10)', async () => {
    const reg = new Registry();
    const metrics = new CircuitMetrics(reg);
    const resolve = createResolver({ lookup: () => new Promise<never>(() => {}), refuseOneHop: false, metrics }); // never settles
    const t = setup({ hooks: { resolve }, metrics });
    const hop = t.create();
    for (let sid = 1; sid <= 5; sid++) t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, sid, encodeResolve(`slow${sid}.example`));
    await tick();
    expect(inbound(t, hop).map((m) => [m.command, m.streamId, decodeResolved(m.data)[0].type])).toEqual([[RelayCommand.RESOLVED, 5, 'error-transient']]);
    const counted = (await reg.getSingleMetric('bitcloud_exit_connects_total')!.get()).values.filter((v) => v.labels.result === 'resolve_limit');
    expect(counted.map((v) => v.value)).toEqual([1]);
  });

  it('a pending RESOLVE counts as a stream for a BEGIN too: streams plus pending RESOLVEs reaching the cap refuse the BEGIN with END(RESOURCELIMIT) (SPEC.md §7b.7, §7b.9)', async () => {
    const resolve = createResolver({ lookup: () => new Promise<never>(() => {}), refuseOneHop: false }); // never settles
    const onStream: SwitchHooks['onStream'] = (inc) => inc.accept();
    const t = setup({ hooks: { resolve, onStream }, limits: { maxStreamsPerCircuit: 3 } });
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 1, Buffer.alloc(0));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 2, Buffer.alloc(0));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, 3, encodeResolve('slow.example'));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 4, Buffer.alloc(0));
    await tick();
    const got = inbound(t, hop).map((m) => [m.command, m.streamId, m.command === RelayCommand.END ? decodeEnd(m.data).reason : null]);
    expect(got).toEqual([[RelayCommand.CONNECTED, 1, null], [RelayCommand.CONNECTED, 2, null], [RelayCommand.END, 4, EndReason.RESOURCELIMIT]]);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('a BEGIN to a name waiting for its lookup counts once against the stream limit, not again for a RESOLVE (SPEC.md §7b.7, §7b.9)', async () => {
    const resolve = createResolver({ lookup: () => new Promise<never>(() => {}), refuseOneHop: false }); // never settles
    // A BEGIN whose name is being looked up: a stream, and one of the circuit's pending resolutions.
    const onStream: SwitchHooks['onStream'] = (inc) => { if (inc.begin) inc.resolveSlot!(); else inc.accept(); };
    const t = setup({ hooks: { resolve, onStream }, limits: { maxStreamsPerCircuit: 3 } });
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 1, Buffer.alloc(0));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN, 2, encodeBegin({ host: 'slow.example', port: 80, flags: 0 }));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, 3, encodeResolve('other.example'));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, 4, encodeResolve('third.example'));
    await tick();
    // Two streams and one pending RESOLVE make three: the first RESOLVE waits, the second is refused.
    const got = inbound(t, hop).map((m) => [m.command, m.streamId]);
    expect(got).toEqual([[RelayCommand.CONNECTED, 1], [RelayCommand.RESOLVED, 4]]);
  });
});

describe('robustness (property)', () => {
  it('random cells on one link never throw out of the switch and never touch a circuit on another link', async () => {
    const fc = await import('fast-check');
    const t = setup();
    const bystander = new FakeChannel(false, null);
    t.sw.attach(bystander);
    // A working circuit on the bystander link.
    const { state, onionskin } = ntorClientCreate({ id: t.identity.publicKey, onionKey: t.onion.publicKey });
    bystander.deliver(0x8000_0042, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin }));
    const hop = createClientHop(ntorClientFinish(state, decodeCreated2(bystander.take(CellCommand.CREATED2)[0].payload).hdata, RELAY_CRYPTO_KEY_LEN));
    t.create(0x8000_0001);
    const cmds = [CellCommand.RELAY, CellCommand.RELAY_EARLY, CellCommand.CREATE2, CellCommand.CREATED2, CellCommand.DESTROY];
    fc.assert(fc.property(
      fc.array(fc.record({
        cmd: fc.constantFrom(...cmds),
        id: fc.oneof(fc.constant(0x8000_0001), fc.integer({ min: 0x8000_0001, max: 0xffff_ffff })),
        payload: fc.uint8Array({ minLength: 0, maxLength: CELL_PAYLOAD_LEN }),
      }), { maxLength: 40 }),
      (cells) => {
        for (const c of cells) t.prev.deliver(c.id, c.cmd, c.payload);
        return true;
      },
    ), { numRuns: 200 });
    // The bystander's circuit still answers: a BEGIN_DIR is refused with END(NOTDIRECTORY) as usual.
    const p = encodeRelayPayload(RelayCommand.BEGIN_DIR, 7, Buffer.alloc(0));
    hop.originate(p);
    hop.encryptOutbound(p);
    bystander.deliver(0x8000_0042, CellCommand.RELAY, p);
    const [reply] = bystander.take(CellCommand.RELAY);
    expect(hop.decryptInbound(reply.payload)).toBe(true);
    expect(decodeRelayPayload(reply.payload).command).toBe(RelayCommand.END);
    expect(bystander.take(CellCommand.DESTROY)).toEqual([]);
  });
});

describe('stream-creation rate per circuit (SPEC.md §7b.9, Tor\'s DoSStreamCreation)', () => {
  /** What the client reads back on `prev` for `hop`: [command, stream id, END reason or RESOLVED type]. */
  const answers = (t: ReturnType<typeof setup>, hop: ClientHopCrypto) => t.prev.take(CellCommand.RELAY).map((c) => {
    expect(hop.decryptInbound(c.payload)).toBe(true);
    const m = decodeRelayPayload(c.payload);
    return [m.command, m.streamId, m.command === RelayCommand.END ? decodeEnd(m.data).reason : m.command === RelayCommand.RESOLVED ? decodeResolved(m.data)[0].type : null];
  });
  const refusals = async (reg: Registry) => (await reg.getSingleMetric('bitcloud_dos_refusals_total')!.get()).values
    .filter((v) => v.labels.kind === 'stream_creation').reduce((n, v) => n + v.value, 0);
  const begin = (t: ReturnType<typeof setup>, hop: ClientHopCrypto, circId: number, sid: number) =>
    t.toHop(hop, circId, CellCommand.RELAY, RelayCommand.BEGIN, sid, encodeBegin({ host: '192.0.2.1', port: 80 }));

  it('the 301st BEGIN of a burst on one circuit is refused END(RESOURCELIMIT), the circuit kept; another circuit is unaffected; the bucket refills at 100/s', async () => {
    let now = 1_000;
    const reg = new Registry();
    const metrics = new CircuitMetrics(reg);
    const onStream: SwitchHooks['onStream'] = (inc) => inc.accept();
    const t = setup({ hooks: { onStream }, metrics, clock: () => now });
    const a = t.create(0x8000_0001);
    for (let sid = 1; sid <= 301; sid++) begin(t, a, 0x8000_0001, sid);
    const got = answers(t, a);
    expect(got).toHaveLength(301);
    expect(got.slice(0, 300).every(([cmd]) => cmd === RelayCommand.CONNECTED)).toBe(true);
    expect(got[300]).toEqual([RelayCommand.END, 301, EndReason.RESOURCELIMIT]);
    expect(await refusals(reg)).toBe(1);
    expect(t.sw.circuitCount).toBe(1);
    expect(t.prev.take(CellCommand.DESTROY)).toEqual([]);

    // Another circuit has a bucket of its own.
    const b = t.create(0x8000_0002);
    begin(t, b, 0x8000_0002, 1);
    expect(answers(t, b)).toEqual([[RelayCommand.CONNECTED, 1, null]]);

    // 10 ms later one token is back (100 a second): one BEGIN opens, the next is refused.
    now += 10;
    begin(t, a, 0x8000_0001, 302);
    begin(t, a, 0x8000_0001, 303);
    expect(answers(t, a)).toEqual([[RelayCommand.CONNECTED, 302, null], [RelayCommand.END, 303, EndReason.RESOURCELIMIT]]);
    // After 3 s the bucket is full again: a burst of 200 more all open (within the 512 streams).
    now += 3_000;
    for (let sid = 304; sid < 504; sid++) begin(t, a, 0x8000_0001, sid);
    const later = answers(t, a);
    expect(later).toHaveLength(200);
    expect(later.every(([cmd]) => cmd === RelayCommand.CONNECTED)).toBe(true);
    expect(await refusals(reg)).toBe(2);
  });

  it('BEGIN_DIR and RESOLVE take tokens from the same bucket; a RESOLVE past it gets a transient error', async () => {
    const now = 0;
    const resolve = createResolver({ lookup: () => Promise.resolve([{ address: '192.0.2.1', family: 4 }]), refuseOneHop: false });
    const onStream: SwitchHooks['onStream'] = (inc) => inc.accept();
    const t = setup({ hooks: { onStream, resolve }, clock: () => now, limits: { streamCreationRate: 1, streamCreationBurst: 3 } });
    const hop = t.create();
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 1, Buffer.alloc(0));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, 2, encodeResolve('example.com'));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 3, Buffer.alloc(0));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.RESOLVE, 4, encodeResolve('example.com'));
    t.toHop(hop, 0x8000_0001, CellCommand.RELAY, RelayCommand.BEGIN_DIR, 5, Buffer.alloc(0));
    await tick();
    const got = answers(t, hop).sort((x, y) => Number(x[1]) - Number(y[1]));
    expect(got).toEqual([
      [RelayCommand.CONNECTED, 1, null], [RelayCommand.RESOLVED, 2, 'ipv4'], [RelayCommand.CONNECTED, 3, null],
      [RelayCommand.RESOLVED, 4, 'error-transient'], [RelayCommand.END, 5, EndReason.RESOURCELIMIT],
    ]);
    expect(t.sw.circuitCount).toBe(1);
  });

  it('0 switches the limit off', () => {
    const onStream: SwitchHooks['onStream'] = (inc) => inc.accept();
    const t = setup({ hooks: { onStream }, clock: () => 0, limits: { streamCreationRate: 0 } });
    const hop = t.create();
    for (let sid = 1; sid <= 400; sid++) begin(t, hop, 0x8000_0001, sid);
    expect(answers(t, hop).every(([cmd]) => cmd === RelayCommand.CONNECTED)).toBe(true);
  });
});
