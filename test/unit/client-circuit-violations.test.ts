// Protocol violations the client detects on its circuits are counted (SPEC.md §7b.5, §7b.10):
// `bitcloud_client_circuit_violations_total{reason}`, by the violation's error code.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ClientCircuit, ClientLink, clientViolationCounter, type HopTarget } from '../../src/client/client-circuit';
import type { CellChannel } from '../../src/link/cell-channel';
import { createRelayHop } from '../../src/crypto/relay-crypto';
import { randomBytes, x25519Generate, ed25519Generate } from '../../src/crypto/primitives';
import { CellCommand, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RelayCommand, decodeRelayPayload, encodeRelayPayload } from '../../src/wire/relay-msg';
import { prom, type Registry } from '../../src/ops/metrics';

function target(i: number): HopTarget {
  return { identity: ed25519Generate().publicKey, fingerprint: `hop${i}`, onionKey: x25519Generate().publicKey, address: `10.0.0.${i + 1}`, orPort: 9001 };
}

/** A client circuit counting into `reg`, on an in-memory link, with `nHops` hops already keyed (as in client-circuit-hostile.test.ts). */
function circuit(nHops: number, reg: Registry) {
  const keys = Array.from({ length: nHops }, () => randomBytes(72));
  const relaySides = keys.map((k) => createRelayHop(Buffer.from(k)));
  const out: Array<{ command: number; payload: Buffer }> = [];
  const ch = Object.assign(new EventEmitter(), {
    closed: false, peerIdentity: null, isInitiator: true, batchesReads: false,
    send: (_id: number, command: number, payload: Uint8Array) => { out.push({ command, payload: Buffer.from(payload) }); return true; },
    allocateCircId: () => 0x80000001, releaseCircId: () => {}, close: () => {},
  }) as unknown as CellChannel;
  const circ = ClientCircuit.allocate(new ClientLink(ch), 'tor1', clientViolationCounter(reg));
  keys.forEach((k, i) => (circ as unknown as { addHop(t: HopTarget, k: Buffer): void }).addHop(target(i), Buffer.from(k)));
  const fromHop = (hop: number, command: number, streamId: number, data: Buffer) => {
    const p = encodeRelayPayload(command, streamId, data);
    relaySides[hop].originate(p);
    for (let i = hop; i >= 0; i--) relaySides[i].encryptInbound(p, CellCommand.RELAY);
    circ.onCell(CellCommand.RELAY, p);
  };
  const toHop = (hop: number) => out.splice(0).filter((c) => c.command === CellCommand.RELAY).map((c) => {
    for (let i = 0; i < hop; i++) relaySides[i].decryptOutbound(c.payload, c.command);
    expect(relaySides[hop].decryptOutbound(c.payload, c.command)).toBe(true);
    return decodeRelayPayload(c.payload);
  });
  return { circ, fromHop, toHop };
}

async function counts(reg: Registry): Promise<Record<string, number>> {
  const m = reg.getSingleMetric('bitcloud_client_circuit_violations_total');
  expect(m).toBeDefined();
  const got: Record<string, number> = {};
  for (const v of (await m!.get()).values) got[String(v.labels.reason)] = v.value;
  return got;
}

describe('bitcloud_client_circuit_violations_total (SPEC.md §7b.10)', () => {
  it('DATA before CONNECTED closes the circuit and is counted once as RELAY_PROTOCOL', async () => {
    const reg = new prom.Registry();
    const { circ, fromHop, toHop } = circuit(3, reg);
    const opened = circ.openStream({ kind: 'begin', host: 'example.com', port: 80 }, 5_000);
    opened.catch(() => {});
    const [begin] = toHop(2);
    fromHop(2, RelayCommand.DATA, begin.streamId, Buffer.from('forged'));
    // The circuit is gone: a second hostile cell changes nothing.
    fromHop(2, RelayCommand.DATA, begin.streamId, Buffer.from('forged'));
    expect(circ.isOpen).toBe(false);
    expect(await counts(reg)).toEqual({ RELAY_PROTOCOL: 1 });
  });

  it('a malformed CREATED2 is counted under its decoding error code', async () => {
    const reg = new prom.Registry();
    const { circ } = circuit(0, reg);
    const creating = circ.create(target(0));
    creating.catch(() => {});
    const bad = Buffer.alloc(CELL_PAYLOAD_LEN);
    bad.writeUInt16BE(0xffff, 0);
    circ.onCell(CellCommand.CREATED2, bad);
    expect(circ.closedWith?.code).toBe('MSG_TRUNCATED');
    expect(await counts(reg)).toEqual({ MSG_TRUNCATED: 1 });
  });

  it('a code outside the declared set is counted as INTERNAL, never as given', async () => {
    const reg = new prom.Registry();
    const { circ } = circuit(1, reg);
    circ.violation('ERR_SOMETHING_ELSE', 'a thrown value that is not a BitcloudError');
    expect(circ.closedWith?.code).toBe('INTERNAL');
    expect(await counts(reg)).toEqual({ INTERNAL: 1 });
  });

  it('one counter per registry: circuits of two builders on one registry share it', () => {
    const reg = new prom.Registry();
    expect(clientViolationCounter(reg)).toBe(clientViolationCounter(reg));
  });
});
