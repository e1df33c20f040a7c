// SPEC.md §7b.6: the client waits for CONNECTED 15 s by default, then sends END(TIMEOUT) and
// fails the opening with STREAM_TIMEOUT.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { keyedCircuit } from '../helpers/client-circuit-fixture';
import { STREAM_OPEN_TIMEOUT_MS } from '../../src/client/client-circuit';
import { RelayCommand } from '../../src/wire/relay-msg';
import { EndReason } from '../../src/wire/messages';

/** A three-hop client circuit whose hops never answer; `toExit` opens what reached the last hop. */
function silentCircuit() {
  const { circ, toHop } = keyedCircuit(3);
  return { circ, toExit: () => toHop(2) };
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
