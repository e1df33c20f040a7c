// `node bin/run-ts.js scripts/bench/cell-path.ts [--mib M] [--read N] [--circuits C]`: the CPU
// cost of a middle relay's and a client's per-cell work with no sockets, TLS or kernel in the
// way (a relay's CircuitSwitch between two in-memory links whose send() only counts; the
// client's three layers of inbound tor1). Cells arrive as reads of N cells (default 32, one
// TLS record's worth) spread over C circuits in turn, a read being a run of one circuit. Prints
// CPU-s per GiB of cell payload for this process only: on a shared machine a steadier A/B
// figure than whole-network runs. Run it on two commits, interleaved.
import { EventEmitter } from 'node:events';
import { CircuitSwitch } from '../../src/circuit/switch';
import { CellCommand, CELL_PAYLOAD_LEN, type Cell, type CellCommandValue } from '../../src/wire/cell';
import { RelayCommand, encodeRelayPayload } from '../../src/wire/relay-msg';
import { encodeCreate2, decodeCreated2, encodeCreated2, encodeExtend2 } from '../../src/wire/messages';
import { ntorClientCreate, ntorClientFinish } from '../../src/crypto/ntor';
import * as rc from '../../src/crypto/relay-crypto';
import { ed25519Generate, x25519Generate, randomBytes } from '../../src/crypto/primitives';
import { CircIdAllocator } from '../../src/link/circ-ids';
import type { CellChannel, CellChannelEvents } from '../../src/link/cell-channel';

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const MiB = 1 << 20;
const cellsTotal = Math.ceil((opt('--mib', 256) * MiB) / CELL_PAYLOAD_LEN);
const perRead = opt('--read', 32);
const circuits = opt('--circuits', 1);

class SinkChannel extends EventEmitter<CellChannelEvents> implements CellChannel {
  closed = false;
  readonly batchesReads = true;
  last: Buffer = Buffer.alloc(CELL_PAYLOAD_LEN);
  count = 0;
  private readonly ids: CircIdAllocator;
  constructor(readonly isInitiator: boolean, public peerIdentity: Buffer | null) { super(); this.ids = new CircIdAllocator(isInitiator); }
  send(_circId: number, command: number, payload: Uint8Array): boolean {
    this.count++;
    if (command !== CellCommand.RELAY) this.last = Buffer.from(payload);
    return true;
  }
  allocateCircId(): number { return this.ids.allocate(); }
  releaseCircId(id: number): void { this.ids.release(id); }
  close(): void { this.closed = true; }
}

const identity = ed25519Generate();
const onion = x25519Generate();
const prev = new SinkChannel(false, null);
const next = new SinkChannel(true, randomBytes(32));
const sw = new CircuitSwitch({ identity: identity.publicKey, onionKeys: () => [onion], hooks: { extend: async () => { sw.attach(next); return next; } } });
sw.attach(prev);
const cell: Cell = { circId: 0, command: CellCommand.RELAY as CellCommandValue, payload: Buffer.alloc(CELL_PAYLOAD_LEN) };
const deliver = (ch: SinkChannel, circId: number, command: number, payload: Buffer) => {
  cell.circId = circId; cell.command = command as CellCommandValue; cell.payload.set(payload);
  ch.emit('cell', cell);
  ch.emit('readEnd');
};

// C middle-hop circuits, each extended to `next`.
const circs: Array<{ prevId: number; nextId: number; hop: ReturnType<typeof rc.createClientHop> }> = [];
for (let i = 0; i < circuits; i++) {
  const prevId = 0x8000_0001 + i;
  const { state, onionskin } = ntorClientCreate({ id: identity.publicKey, onionKey: onion.publicKey });
  deliver(prev, prevId, CellCommand.CREATE2, Buffer.concat([encodeCreate2({ htype: 2, hdata: onionskin })], CELL_PAYLOAD_LEN));
  const hop = rc.createClientHop(ntorClientFinish(state, decodeCreated2(prev.last).hdata, rc.RELAY_CRYPTO_KEY_LEN));
  const p = Buffer.concat([encodeRelayPayload(RelayCommand.EXTEND2, 0, encodeExtend2({ linkSpecifiers: [{ type: 'ed25519', id: next.peerIdentity! }, { type: 'ipv4', addr: '10.0.0.2', port: 9001 }], htype: 2, hdata: Buffer.alloc(84, 3) }))], CELL_PAYLOAD_LEN);
  hop.originate(p); hop.encryptOutbound(p);
  deliver(prev, prevId, CellCommand.RELAY_EARLY, p);
  await new Promise((r) => setImmediate(r));
  const nextId = decodeCreate2Id();
  deliver(next, nextId, CellCommand.CREATED2, Buffer.concat([encodeCreated2({ hdata: Buffer.alloc(64, 4) })], CELL_PAYLOAD_LEN));
  circs.push({ prevId, nextId, hop });
}
function decodeCreate2Id(): number {
  // The CREATE2 went to `next`; its circuit id is the one the switch allocated (the newest).
  let id = 0;
  for (const c of (sw as unknown as { circuits: Set<{ prevId: number; nextId: number }> }).circuits) if (c.prevId === 0x8000_0001 + circs.length) id = c.nextId;
  return id;
}

const body = randomBytes(CELL_PAYLOAD_LEN);
function relay(dir: 'fwd' | 'back'): number {
  const t0 = process.cpuUsage();
  const ch = dir === 'fwd' ? prev : next;
  for (let sent = 0, r = 0; sent < cellsTotal; r++) {
    const c = circs[r % circs.length];
    cell.circId = dir === 'fwd' ? c.prevId : c.nextId;
    cell.command = CellCommand.RELAY as CellCommandValue;
    for (let k = 0; k < perRead && sent < cellsTotal; k++, sent++) {
      cell.payload.set(body);
      body[0]++; // not recognized here: forwarded
      ch.emit('cell', cell);
    }
    ch.emit('readEnd');
  }
  const u = process.cpuUsage(t0);
  return (u.user + u.system) / 1e6;
}

// The client's inbound work: three tor1 layers off every cell, the last hop recognizing it.
function client(): number {
  const keys = [0, 1, 2].map(() => randomBytes(rc.RELAY_CRYPTO_KEY_LEN));
  const relays = keys.map((k) => rc.createRelayHop(k));
  const hops = keys.map((k) => rc.createClientHop(k));
  // Absent on commits before runs: then cell by cell.
  const many = (rc as unknown as { clientOpenInboundMany?: (h: unknown, p: Buffer, v: Buffer[], n: number, f: (k: number, hop: number) => boolean) => void }).clientOpenInboundMany;
  const batch = Buffer.alloc(perRead * CELL_PAYLOAD_LEN);
  const views = Array.from({ length: perRead }, (_, k) => batch.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN));
  // One run of sealed cells, reused (the client's cost does not depend on the bytes).
  const sealed = Buffer.alloc(perRead * CELL_PAYLOAD_LEN);
  const inner = encodeRelayPayload(RelayCommand.DATA, 1, randomBytes(498));
  let t = 0;
  let bad = 0;
  for (let sent = 0; sent < cellsTotal; sent += perRead) {
    for (let k = 0; k < perRead; k++) {
      const p = sealed.subarray(k * CELL_PAYLOAD_LEN, (k + 1) * CELL_PAYLOAD_LEN);
      p.set(inner);
      relays[2].originate(p);
      for (let h = 2; h >= 0; h--) relays[h].encryptInbound(p);
    }
    batch.set(sealed);
    const t0 = process.cpuUsage();
    if (many) many(hops, batch, views, perRead, (_k, hop) => { if (hop !== 2) bad++; return true; });
    else for (let k = 0; k < perRead; k++) if (rc.clientOpenInbound(hops, views[k]) !== 2) bad++;
    const u = process.cpuUsage(t0);
    t += (u.user + u.system) / 1e6;
  }
  if (bad) throw new Error(`${bad} cells not recognized`);
  return t;
}

const gib = (cellsTotal * CELL_PAYLOAD_LEN) / 2 ** 30;
relay('fwd'); // warm-up
const f = relay('fwd');
const b = relay('back');
const c = client();
if (next.count < cellsTotal || prev.count < cellsTotal) throw new Error('cells lost');
console.log(`middle relay forward ${(f / gib).toFixed(2)}, backward ${(b / gib).toFixed(2)}, client inbound 3 layers ${(c / gib).toFixed(2)} CPU-s/GiB (${perRead} cells per read, ${circuits} circuits)`);
