// SPEC.md §6.10: the authority's status history — one sample per new consensus, one per reward
// block, bounded, saved atomically and read back after a restart.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_SAMPLES, SAMPLE_RELAYS, StatusHistory } from '../../directory/status-history';
import type { VerifiedConsensus } from '../../src/dir/types';

function consensus(t: number, relays: Array<{ fp: string; weight: number; proven: number; storage?: boolean }>, provenEpoch: number | null): VerifiedConsensus {
  return {
    validAfter: t, provenEpoch,
    relays: relays.map((r) => ({ fingerprint: r.fp, nickname: `n${r.fp}`, weight: r.weight, proven: r.proven, flags: new Set(r.storage ? ['Running', 'Storage'] : ['Running']) })),
  } as unknown as VerifiedConsensus;
}

describe('status history', () => {
  it('samples each new consensus once, keeps blocks by height, is bounded, and survives a restart', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-history-'));
    const h = new StatusHistory(dir).load();
    h.onConsensus(consensus(1000, [{ fp: 'a', weight: 10, proven: 5 }, { fp: 'b', weight: 20, proven: 0, storage: true }], 3));
    h.onConsensus(consensus(1000, [{ fp: 'a', weight: 99, proven: 5 }], 3)); // same consensus again: ignored
    h.onBlock({ height: 0, epoch: 3, minted: 100n });
    h.onBlock({ height: 0, epoch: 3, minted: 100n });
    const j = h.toJSON();
    expect(j.samples).toEqual([{ t: 1000, relays: 2, storage: 1, provenEpoch: 3, weights: { a: 10, b: 20 }, proven: { a: 5 }, provenTotal: 5 }]);
    expect(j.blocks.map((b) => [b.height, b.minted])).toEqual([[0, 100]]);
    expect(j.names).toEqual({ a: 'na', b: 'nb' });
    for (let i = 1; i <= MAX_SAMPLES + 5; i++) h.onConsensus(consensus(1000 + i, [{ fp: 'a', weight: i, proven: 0 }], null));
    expect(h.toJSON().samples.length).toBe(MAX_SAMPLES);
    await h.flush();
    const again = new StatusHistory(dir).load().toJSON();
    expect(again.samples.length).toBe(MAX_SAMPLES);
    expect(again.samples.at(-1)!.t).toBe(1000 + MAX_SAMPLES + 5);
    expect(again.blocks.length).toBe(1);
    await fsp.writeFile(path.join(dir, 'status-history.json'), 'garbage');
    expect(new StatusHistory(dir).load().toJSON().samples).toEqual([]);
    await fsp.rm(dir, { recursive: true, force: true });
  });
});

describe('status history names', () => {
  it('forgets the name of a relay once no retained sample lists it, also when loading (SPEC §6.10)', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-history-'));
    try {
      const h = new StatusHistory(dir).load();
      h.onConsensus(consensus(1000, [{ fp: 'gone', weight: 1, proven: 0 }, { fp: 'a', weight: 1, proven: 0 }], null));
      h.onConsensus(consensus(1001, [{ fp: 'later', weight: 1, proven: 0 }, { fp: 'a', weight: 1, proven: 0 }], null));
      for (let i = 2; i < MAX_SAMPLES; i++) h.onConsensus(consensus(1000 + i, [{ fp: 'a', weight: i, proven: 0 }], null));
      expect(h.toJSON().names).toEqual({ gone: 'ngone', a: 'na', later: 'nlater' });
      h.onConsensus(consensus(1000 + MAX_SAMPLES, [{ fp: 'a', weight: 1, proven: 0 }], null));
      expect(h.toJSON().names).toEqual({ a: 'na', later: 'nlater' });
      h.onConsensus(consensus(1001 + MAX_SAMPLES, [{ fp: 'a', weight: 1, proven: 0 }], null));
      expect(h.toJSON().names).toEqual({ a: 'na' });
      await h.flush();
      // A file holding names of relays in none of its samples (written by an older version).
      await fsp.writeFile(path.join(dir, 'status-history.json'), JSON.stringify({
        samples: [{ t: 1, relays: 1, storage: 0, provenEpoch: null, weights: { a: 1 }, proven: {} }], blocks: [], names: { a: 'na', old: 'nold' },
      }));
      expect(new StatusHistory(dir).load().toJSON().names).toEqual({ a: 'na' });
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('status history size', () => {
  it('lists only the SAMPLE_RELAYS largest weights and proven counts of a consensus, with the proven total, also when loading (SPEC §6.10)', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-history-'));
    try {
      const n = 1000;
      const fp = (i: number) => i.toString(16).padStart(64, '0');
      const relays = Array.from({ length: n }, (_, i) => ({ fp: fp(i), weight: i + 1, proven: i % 2 ? i : 0 }));
      const h = new StatusHistory(dir).load();
      h.onConsensus(consensus(1000, relays, 3));
      const s = h.toJSON().samples[0];
      expect(s.relays).toBe(n);
      expect(Object.keys(s.weights).sort()).toEqual(Array.from({ length: SAMPLE_RELAYS }, (_, i) => fp(n - 1 - i)).sort());
      expect(Object.keys(s.proven).sort()).toEqual(Array.from({ length: SAMPLE_RELAYS }, (_, i) => fp(n - 1 - 2 * i)).sort());
      expect(s.provenTotal).toBe(relays.reduce((a, r) => a + r.proven, 0));
      expect(Object.keys(h.toJSON().names).length).toBeLessThanOrEqual(2 * SAMPLE_RELAYS);
      await h.flush();
      // A file written with every relay's weight in its samples is cut down as it is read.
      const weights = Object.fromEntries(relays.map((r) => [r.fp, r.weight]));
      const proven = Object.fromEntries(relays.filter((r) => r.proven > 0).map((r) => [r.fp, r.proven]));
      const names = Object.fromEntries(relays.map((r) => [r.fp, 'x']));
      await fsp.writeFile(path.join(dir, 'status-history.json'), JSON.stringify({
        samples: [{ t: 1, relays: n, storage: 0, provenEpoch: 3, weights, proven }], blocks: [], names,
      }));
      const back = new StatusHistory(dir).load().toJSON();
      expect(Object.keys(back.samples[0].weights).length).toBe(SAMPLE_RELAYS);
      expect(Object.keys(back.samples[0].proven).length).toBe(SAMPLE_RELAYS);
      expect(back.samples[0].provenTotal).toBe(s.provenTotal);
      expect(Object.keys(back.names).length).toBeLessThanOrEqual(2 * SAMPLE_RELAYS);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
