// SPEC.md §7b.6: the client waits for CONNECTED 15 s by default, then sends END(TIMEOUT) and
// fails the opening with STREAM_TIMEOUT.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClientCircuit, ClientLink, STREAM_OPEN_TIMEOUT_MS, type HopTarget } from '../../src/client/client-circuit';
import type { CellChannel } from '../../src/link/cell-channel';
import { createRelayHop } from '../../src/crypto/relay-crypto';
import { randomBytes, x25519Generate, ed25519Generate } from '../../src/crypto/primitives';
import { CellCommand } from '../../src/wire/cell';
import { RelayCommand, decodeRelayPayload } from '../../src/wire/relay-msg';
import { EndReason } from '../../src/wire/messages';

function target(i: number): HopTarget {
  return { identity: ed25519Generate().publicKey, fingerprint: `hop${i}`, onionKey: x25519Generate().publicKey, address: `10.0.0.${i + 1}`, orPort: 9001 };
}

/** A three-hop client circuit on an in-memory link whose hops never answer; `toExit` opens what reached the last hop. */
function silentCircuit() {
  const keys = Array.from({ length: 3 }, () => randomBytes(72));
  const relaySides = keys.map((k) => createRelayHop(Buffer.from(k)));
  const out: Array<{ command: number; payload: Buffer }> = [];
  const ch = Object.assign(new EventEmitter(), {
    closed: false, peerIdentity: null, isInitiator: true, batchesReads: false,
    send: (_id: number, command: number, payload: Uint8Array) => { out.push({ command, payload: Buffer.from(payload) }); return true; },
    allocateCircId: () => 0x80000001, releaseCircId: () => {}, close: () => {},
  }) as unknown as CellChannel;
  const circ = ClientCircuit.allocate(new ClientLink(ch));
  keys.forEach((k, i) => (circ as unknown as { addHop(t: HopTarget, k: Buffer): void }).addHop(target(i), Buffer.from(k)));
  const toExit = () => out.splice(0).filter((c) => c.command === CellCommand.RELAY).map((c) => {
    for (const r of relaySides.slice(0, 2)) r.decryptOutbound(c.payload, c.command);
    expect(relaySides[2].decryptOutbound(c.payload, c.command)).toBe(true);
    return decodeRelayPayload(c.payload);
  });
  return { circ, toExit };
}

describe('openStream without a timeout (SPEC.md §7b.6)', () => {
  beforeEach(() => { vi.useFakeTimers(); });
  afterEach(() => { vi.useRealTimers(); });

  it('the default is 15 s', () => {
    expect(STREAM_OPEN_TIMEOUT_MS).toBe(15_000);
  });

  it('a hop that never answers CONNECTED fails the opening with STREAM_TIMEOUT at 15 s, not before', async () => {
    const { circ, toExit } = silentCircuit();
    let outcome: { error?: unknown; value?: unknown } | null = null;
    circ.openStream({ kind: 'begin', host: 'example.com', port: 80 }).then((value) => { outcome = { value }; }, (error: unknown) => { outcome = { error }; });
    const [begin] = toExit();
    expect(begin.command).toBe(RelayCommand.BEGIN);
    await vi.advanceTimersByTimeAsync(14_900);
    expect(outcome).toBeNull();
    await vi.advanceTimersByTimeAsync(100);
    expect(outcome).not.toBeNull();
    expect((outcome as unknown as { error: { code: string } }).error.code).toBe('STREAM_TIMEOUT');
    // The hop is told (END TIMEOUT) and the circuit stays open for other streams.
    const [end] = toExit();
    expect(end.command).toBe(RelayCommand.END);
    expect(end.streamId).toBe(begin.streamId);
    expect(end.data[0]).toBe(EndReason.TIMEOUT);
    expect(circ.isOpen).toBe(true);
    circ.destroy();
  });
});
