// SPEC.md §9.14.1, §9.21.1: name lookups go only to storage nodes with a storage port; hidden
// nodes run no DHT and are never asked; a consensus of hidden nodes only has none, and names go to
// relays' name mirrors (§9.14.2); with no mirror either, NAME_NO_MIRRORS.
import { describe, expect, it } from 'vitest';
import { nameNodesOf, storageNodesOf } from '../../src/client/storage-client';
import { isBitcloudError } from '../../src/errors';
import { MirrorNames } from '../../src/client/name-mirrors';
import type { ConsensusRelay } from '../../src/dir/types';

const node = (nickname: string, hidden: boolean): ConsensusRelay => ({
  nickname, fingerprint: nickname.padEnd(40, '0'), flags: new Set(['Storage', 'Running', 'Valid']),
  roles: hidden ? ['storage', 'hidden'] : ['storage'], address: hidden ? '0.0.0.0' : '127.0.0.1', storagePort: hidden ? 0 : 9000, orPort: hidden ? 0 : 9001, dirPort: 0,
}) as unknown as ConsensusRelay;

function codeOf(f: () => unknown): string {
  try { f(); return 'none'; } catch (e) { return isBitcloudError(e) ? e.code : 'other'; }
}

describe('storage nodes that serve name lookups (SPEC.md §9.21.1)', () => {
  it('a mixed network: only the nodes with a public storage port are asked', () => {
    const relays = [node('a', true), node('b', false), node('c', true), node('d', false)];
    expect(storageNodesOf(relays).length).toBe(4);
    expect(nameNodesOf(relays).map((n) => n.nickname)).toEqual(['b', 'd']);
  });

  it('every storage node hidden, or none: no node to ask (names go to mirrors); no mirror either: NAME_NO_MIRRORS', () => {
    expect(nameNodesOf([node('a', true), node('b', true)])).toEqual([]);
    expect(nameNodesOf([])).toEqual([]);
    const relays = [node('a', true), node('b', true)];
    expect(codeOf(() => new MirrorNames({ relays: () => relays, buildTo: () => Promise.reject(new Error('not reached')) }))).toBe('NAME_NO_MIRRORS');
  });
});
