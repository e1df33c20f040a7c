// SPEC.md §9.14.1, §9.21.1: name lookups go only to storage nodes with a storage port; hidden
// nodes run no DHT and are never asked; a consensus of hidden nodes only is DHT_ONLY_HIDDEN_NODES.
import { describe, expect, it } from 'vitest';
import { nameNodesOf, storageNodesOf } from '../../src/client/storage-client';
import { isBitcloudError } from '../../src/errors';
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

  it('every storage node hidden: DHT_ONLY_HIDDEN_NODES at once; none at all: DHT_NO_NODES', () => {
    expect(codeOf(() => nameNodesOf([node('a', true), node('b', true)]))).toBe('DHT_ONLY_HIDDEN_NODES');
    expect(codeOf(() => nameNodesOf([]))).toBe('DHT_NO_NODES');
  });
});
