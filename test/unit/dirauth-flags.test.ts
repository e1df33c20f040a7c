// SPEC.md §6.6: the Guard threshold is the low median of Fast *relays*; storage-only nodes
// (never guards) must not move it.
import { describe, it, expect } from 'vitest';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { buildDescriptor, verifyDescriptor, type VerifiedDescriptor } from '../../src/dir/descriptor';
import { FLAG_BITS, type Role } from '../../src/dir/types';
import { assignFlags } from '../../directory/flags';

const NOW = 1_800_000_000_000;

function node(i: number, roles: Role[]): VerifiedDescriptor {
  return verifyDescriptor(buildDescriptor({
    identity: ed25519Generate(), onionKey: x25519Generate().publicKey, nickname: `n${i}`, address: `10.0.0.${i}`, orPort: 9000 + i,
    storagePort: roles.includes('storage') ? 9500 + i : 0,
    declaredBandwidth: 10_000_000, exitPolicy: [], family: [], roles, version: 'bitcloud-0.1.0', published: NOW - 1000,
  }));
}

describe('Guard threshold', () => {
  it('ignores storage-only nodes: fast storage nodes do not take Guard away from relays', () => {
    const relays = [1, 2, 3].map((i) => ({ descriptor: node(i, ['relay']), measured: 1000, runningSince: NOW - 60_000 }));
    const stores = [4, 5, 6, 7].map((i) => ({ descriptor: node(i, ['storage']), measured: 1900, runningSince: NOW - 60_000 }));
    const f = assignFlags([...relays, ...stores], { now: NOW, stableAfterMs: 5000 });
    expect(f.slice(0, 3).every((x) => (x & FLAG_BITS.Guard) !== 0)).toBe(true);
    expect(f.slice(3).every((x) => (x & FLAG_BITS.Guard) === 0 && (x & FLAG_BITS.Storage) !== 0)).toBe(true);
  });
});
