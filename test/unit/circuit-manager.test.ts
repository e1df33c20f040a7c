// SPEC.md §7b.11: the client's circuit manager, over a hand-made relay list (links never open:
// the link opener is replaced, so these tests see only what the manager decides).
import { describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import type { ConsensusRelay } from '../../src/dir/types';
import { CircuitManager } from '../../src/client/circuit-manager';

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
});
