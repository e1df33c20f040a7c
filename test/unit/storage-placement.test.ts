import { describe, it, expect } from 'vitest';
import { placeChunk, placeReplicas, placementWeight, rankNodes } from '../../src/storage/placement';
import { blake2b } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';

const nodes = Array.from({ length: 12 }, (_, i) => blake2b(Buffer.from(`node-${i}`)).toString('hex'));
const ids = Array.from({ length: 6 }, (_, i) => blake2b(Buffer.from(`share-${i}`)));

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('placement (SPEC §9.7)', () => {
  it('weight is BLAKE2b-256("bitcloud-placement-v1" | share id | node key)', () => {
    const w = placementWeight(ids[0], nodes[0]);
    expect(w.equals(blake2b(Buffer.concat([Buffer.from('bitcloud-placement-v1'), ids[0], Buffer.from(nodes[0], 'hex')])))).toBe(true);
  });

  it('ranking is by weight, highest first, independent of list order and duplicates', () => {
    const r = rankNodes(ids[0], nodes);
    for (let i = 1; i < r.length; i++) expect(placementWeight(ids[0], r[i - 1]).compare(placementWeight(ids[0], r[i]))).toBe(1);
    expect(rankNodes(ids[0], [...nodes].reverse().concat(nodes))).toEqual(r);
  });

  it('a chunk goes to n distinct nodes; removing an unused node changes nothing', () => {
    const p = placeChunk(ids, nodes);
    expect(new Set(p).size).toBe(6);
    const unused = nodes.find((n) => !p.includes(n))!;
    expect(placeChunk(ids, nodes.filter((n) => n !== unused))).toEqual(p);
    // Share 0 always gets its first-ranked node.
    expect(p[0]).toBe(rankNodes(ids[0], nodes)[0]);
  });

  it('the filter excludes nodes', () => {
    const banned = new Set(nodes.slice(0, 5));
    const p = placeChunk(ids, nodes, (n) => !banned.has(n));
    expect(p.some((n) => banned.has(n))).toBe(false);
  });

  it('fewer than n allowed distinct nodes → PLACEMENT_TOO_FEW_NODES', () => {
    expect(codeOf(() => placeChunk(ids, nodes.slice(0, 5)))).toBe('PLACEMENT_TOO_FEW_NODES');
    expect(codeOf(() => placeChunk(ids, [...nodes.slice(0, 5), ...nodes.slice(0, 5)]))).toBe('PLACEMENT_TOO_FEW_NODES');
    expect(codeOf(() => placeChunk(ids, nodes, (n) => n !== nodes[0] && nodes.indexOf(n) < 6))).toBe('PLACEMENT_TOO_FEW_NODES');
    expect(codeOf(() => placeReplicas(ids[0], nodes, 13))).toBe('PLACEMENT_TOO_FEW_NODES');
  });

  it('replicas are the top of the ranking', () => {
    expect(placeReplicas(ids[0], nodes, 4)).toEqual(rankNodes(ids[0], nodes).slice(0, 4));
  });

  it('refuses node ids that are not fingerprints', () => {
    expect(codeOf(() => rankNodes(ids[0], ['ABC']))).toBe('PLACEMENT_NODE_INVALID');
    expect(codeOf(() => placeChunk(ids, [...nodes, nodes[0].toUpperCase()]))).toBe('PLACEMENT_NODE_INVALID');
  });
});
