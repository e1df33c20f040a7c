// A client circuit on an in-memory link with its hops already keyed, for tests of the client's
// side of a circuit against what relays send it (SPEC.md §7b).
import { EventEmitter } from 'node:events';
import { expect } from 'vitest';
import { ClientCircuit, ClientLink, type ClientViolationCounter, type HopTarget } from '../../src/client/client-circuit';
import type { CellChannel } from '../../src/link/cell-channel';
import { createRelayHop, relayCryptoKeyLen } from '../../src/crypto/relay-crypto';
import type { RelayCryptoAlgorithm } from '../../src/crypto/hop-crypto';
import { randomBytes, x25519Generate, ed25519Generate } from '../../src/crypto/primitives';
import { CellCommand } from '../../src/wire/cell';
import { decodeRelayPayload, encodeRelayPayload } from '../../src/wire/relay-msg';

export function hopTarget(i: number): HopTarget {
  return { identity: ed25519Generate().publicKey, fingerprint: `hop${i}`, onionKey: x25519Generate().publicKey, address: `10.0.0.${i + 1}`, orPort: 9001 };
}

/**
 * A client circuit with `nHops` hops already keyed (tor1, or `o.alg`), on a link that batches
 * reads when `o.batched` (a real link does), counting its violations into
 * `violations` if given. `fromHop` delivers a message hop `hop` originated (each hop before it
 * adds its inbound layer, as relays do); `toHop` opens what the client sent to hop `hop` since the
 * last call; `out` holds every cell the client sent and no call has taken yet.
 */
export function keyedCircuit(nHops: number, violations: ClientViolationCounter | null = null, o: { alg?: RelayCryptoAlgorithm; batched?: boolean } = {}) {
  const alg = o.alg ?? 'tor1';
  const keys = Array.from({ length: nHops }, () => randomBytes(relayCryptoKeyLen(alg)));
  const relaySides = keys.map((k) => createRelayHop(Buffer.from(k), alg));
  const out: Array<{ command: number; payload: Buffer }> = [];
  const ch = Object.assign(new EventEmitter(), {
    closed: false, peerIdentity: null, isInitiator: true, batchesReads: o.batched === true,
    send: (_id: number, command: number, payload: Uint8Array) => { out.push({ command, payload: Buffer.from(payload) }); return true; },
    allocateCircId: () => 0x80000001, releaseCircId: () => {}, close: () => {},
  }) as unknown as CellChannel;
  const circ = ClientCircuit.allocate(new ClientLink(ch), alg, violations);
  keys.forEach((k, i) => (circ as unknown as { addHop(t: HopTarget, k: Buffer): void }).addHop(hopTarget(i), Buffer.from(k)));
  const fromHop = (hop: number, command: number, streamId: number, data: Buffer) => {
    const p = encodeRelayPayload(command, streamId, data);
    relaySides[hop].originate(p);
    for (let i = hop; i >= 0; i--) relaySides[i].encryptInbound(p, CellCommand.RELAY);
    circ.onCell(CellCommand.RELAY, p);
  };
  const toHop = (hop: number) => out.splice(0).filter((c) => c.command === CellCommand.RELAY || c.command === CellCommand.RELAY_EARLY).map((c) => {
    for (let i = 0; i < hop; i++) relaySides[i].decryptOutbound(c.payload, c.command);
    expect(relaySides[hop].decryptOutbound(c.payload, c.command)).toBe(true);
    return decodeRelayPayload(c.payload);
  });
  return { circ, out, relaySides, fromHop, toHop };
}
