// SPEC.md §7b.11: the client's circuit manager, over a hand-made relay list (links never open:
// the link opener is replaced, so these tests see only what the manager decides).
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import type { ConsensusRelay } from '../../src/dir/types';
import { CircuitManager } from '../../src/client/circuit-manager';
import type { ClientCircuit } from '../../src/client/client-circuit';

vi.mock('../../src/link', async (importOriginal) => ({
  ...await importOriginal<typeof import('../../src/link')>(),
  connectLink: () => Promise.reject(err('LINK_CONNECT_FAILED', 'no link in this test')),
}));

function relay(i: number, flags: string[], exitPolicy: string[]): ConsensusRelay {
  const identity = Buffer.alloc(32, i);
  return {
    identity, fingerprint: identity.toString('hex'), nickname: `r${i}`, onionKey: Buffer.alloc(32, 100 + i),
    address: `10.${i}.0.1`, orPort: 9000 + i, dirPort: 0, storagePort: 0,
    flags: new Set(['Running', 'Valid', 'Fast', ...flags]) as ConsensusRelay['flags'], weight: 1000, proven: 0,
    exitPolicy, family: [], roles: flags.includes('Exit') ? ['relay', 'exit'] : ['relay'],
    moderators: [], unmoderated: true, version: 'test',
  };
}

describe('circuit manager (SPEC.md §7b.11)', () => {
  it('preemptive circuits: a recent port no exit allows is skipped, the ports after it still get circuits', async () => {
    const relays = [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:443', 'reject *:*'])];
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 1, maintenanceMs: 3_600_000 });
    const m = mgr as unknown as { recentPorts: Map<number, number>; maintain(): void };
    m.recentPorts.set(25, Date.now()); // no exit allows it
    m.recentPorts.set(443, Date.now());
    m.maintain();
    expect(mgr.circuitCount).toBe(1);
    await mgr.close();
  });

  it('a BEGIN that times out retires its circuit for new streams only: the streams it carries go on (SPEC.md §7b.6)', async () => {
    const relays = [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:*'])];
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, streamAttempts: 1 });
    // The exit answers CONNECTED to the first BEGIN and never to the second (openStream then sends
    // END(TIMEOUT) for it and rejects with STREAM_TIMEOUT).
    const streams = new Map<number, PassThrough>();
    let begins = 0;
    const events = new EventEmitter();
    const circ = Object.assign(events, {
      isOpen: true, dirtySince: null as number | null, createdAt: Date.now(), edge: { streams },
      destroyed: false,
      destroy() { this.destroyed = true; this.isOpen = false; for (const s of streams.values()) s.destroy(); streams.clear(); events.emit('close'); },
      openStream() {
        this.dirtySince ??= Date.now();
        if (++begins === 1) { const s = new PassThrough(); streams.set(begins, s); return Promise.resolve({ stream: s, connected: null }); }
        return Promise.reject(err('STREAM_TIMEOUT', 'no CONNECTED'));
      },
    });
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => Promise.resolve({ circ: circ as unknown as ClientCircuit, path: relays }));
    const req = { host: 'example.com', port: 443, isolation: 'k' as never };
    const first = await mgr.connect(req);
    await expect(mgr.connect(req)).rejects.toMatchObject({ code: 'STREAM_TIMEOUT' });
    expect(circ.destroyed).toBe(false);
    expect(first.destroyed).toBe(false);
    const echoed = new Promise((r) => first.once('data', r));
    first.write('still here');
    expect(String(await echoed)).toBe('still here');
    // No new stream goes on it: the next request gets a circuit of its own.
    await mgr.connect(req).catch(() => {});
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(2);
    await mgr.close();
  });
});
