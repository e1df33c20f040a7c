// SPEC.md §6.10.1: once bootstrapped, the DirKeeper asks only its guards' mirrors; a stale or
// failing guard mirror never makes it fall back to the authorities while its consensus is valid.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConsensusSource, FetchOutcome } from '../../src/dir/consensus-fetch';

const calls: ConsensusSource[][] = [];
let answer: FetchOutcome = { consensus: null, source: null, notModified: [], failures: [] };
let cached: unknown = null;

vi.mock('../../src/dir/consensus-fetch', () => ({
  fetchVerifiedConsensus: vi.fn(async (sources: ConsensusSource[]) => { calls.push([...sources]); return answer; }),
}));
vi.mock('../../src/dir/consensus-cache', () => ({
  CONSENSUS_CACHE_FILE: 'cached-consensus',
  isBetterConsensus: (a: { validAfter: number } | null, b: { validAfter: number }) => !a || b.validAfter > a.validAfter,
  loadConsensusCache: vi.fn(async () => ({ consensus: cached })),
  saveConsensusCache: vi.fn(async () => {}),
}));

const { DirKeeper } = await import('../../src/client/dir-keeper');

const NOW = 1_800_000_000_000;
const fake = (validAfter: number) => ({ validAfter, validUntil: validAfter + 3_600_000, freshUntil: validAfter + 60_000, periodSeconds: 60, relays: [] });
const AUTH = { name: 'a', url: 'http://198.51.100.1:7000' };
const guard = { label: 'guard:x', fetch: async () => null };

function keeper(): InstanceType<typeof DirKeeper> {
  return new DirKeeper({ authorities: [AUTH as never], dataDir: '/nonexistent', now: () => NOW, refreshMs: 3_600_000, guardSources: () => [guard] });
}

beforeEach(() => { calls.length = 0; answer = { consensus: null, source: null, notModified: [], failures: [] }; });

describe('DirKeeper through the guard (SPEC.md §6.10.1)', () => {
  it('bootstrap (no consensus) goes direct to the authorities', async () => {
    cached = null;
    answer = { consensus: fake(NOW - 1000) as never, source: AUTH.url, notModified: [], failures: [] };
    const k = keeper();
    await k.start();
    k.stop();
    expect(calls[0]).toEqual([AUTH.url]);
    expect(k.lastVia).toBe('direct');
  });

  it('with a valid consensus, only the guard mirrors are asked; all failing keeps the consensus, no direct fetch', async () => {
    cached = fake(NOW - 60_000);
    answer = { consensus: null, source: null, notModified: [], failures: [{ source: 'guard:x', code: 'DIR_FETCH_FAILED', reason: 'down' }] };
    const k = keeper();
    await k.start();
    await k.refresh();
    await k.refresh();
    k.stop();
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const c of calls) expect(c).toEqual([guard]);
    expect(k.consensus()?.validAfter).toBe(NOW - 60_000);
    expect(k.lastVia).toBe('guard');
  });

  it('a stale guard mirror (nothing newer) changes nothing and is not followed by a direct fetch', async () => {
    cached = fake(NOW - 60_000);
    answer = { consensus: fake(NOW - 120_000) as never, source: 'guard:x', notModified: [], failures: [] };
    const k = keeper();
    await k.start();
    await k.refresh();
    k.stop();
    for (const c of calls) expect(c).toEqual([guard]);
    expect(k.consensus()?.validAfter).toBe(NOW - 60_000);
  });
});

describe('DirKeeper of a hidden storage node (tunnelOnly, SPEC.md §9.21.1)', () => {
  const circuit = { label: 'circuit:m', fetch: async () => null };
  const hidden = (guards: () => typeof guard[]) => new DirKeeper({
    authorities: [AUTH as never], dataDir: '/nonexistent', now: () => NOW, refreshMs: 3_600_000,
    guardSources: guards, tunnelOnly: true, circuitSources: () => [circuit],
  });

  it('with a cached valid consensus and no guard yet, the first refresh goes over circuits to relay mirrors, never direct', async () => {
    cached = fake(NOW - 60_000);
    answer = { consensus: fake(NOW - 1000) as never, source: 'circuit:m', notModified: [], failures: [] };
    const k = hidden(() => []);
    await k.start();
    await k.refresh();
    k.stop();
    expect(calls.length).toBeGreaterThanOrEqual(1);
    for (const c of calls) expect(c).toEqual([circuit]);
    expect(k.lastVia).toBe('circuit');
    expect(k.consensus()?.validAfter).toBe(NOW - 1000);
  });

  it('every guard mirror down: relay mirrors over circuits next; both down keeps the consensus, no direct fetch', async () => {
    cached = fake(NOW - 60_000);
    answer = { consensus: null, source: null, notModified: [], failures: [{ source: 'x', code: 'DIR_FETCH_FAILED', reason: 'down' }] };
    const k = hidden(() => [guard]);
    await k.start();
    await k.refresh();
    k.stop();
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const c of calls) expect(AUTH.url).not.toBe(c[0]);
    expect(calls.slice(0, 2)).toEqual([[guard], [circuit]]);
    expect(k.consensus()?.validAfter).toBe(NOW - 60_000);
  });

  it('a guard answering 304 (nothing newer) ends the refresh: no circuit is built for nothing', async () => {
    cached = fake(NOW - 60_000);
    answer = { consensus: null, source: null, notModified: ['guard:x'], failures: [] };
    const k = hidden(() => [guard]);
    await k.start();
    k.stop();
    expect(calls).toEqual([[guard]]);
  });

  it('no valid consensus (first bootstrap) is the only direct fetch', async () => {
    cached = null;
    answer = { consensus: fake(NOW - 1000) as never, source: AUTH.url, notModified: [], failures: [] };
    const k = hidden(() => [guard]);
    await k.start();
    k.stop();
    expect(calls[0]).toEqual([AUTH.url]);
    expect(k.lastVia).toBe('direct');
  });

  it('its consensus expired while it ran (less than a day ago): guards, then circuits, then a direct bootstrap', async () => {
    cached = fake(NOW - 60_000);
    let now = NOW;
    const k = new DirKeeper({
      authorities: [AUTH as never], dataDir: '/nonexistent', now: () => now, refreshMs: 3_600_000,
      guardSources: () => [guard], tunnelOnly: true, circuitSources: () => [circuit],
    });
    answer = { consensus: null, source: null, notModified: ['guard:x'], failures: [] };
    await k.start();
    await k.refresh();
    calls.length = 0;
    now = NOW + 2 * 3_600_000; // past valid-until (validAfter + 1 h)
    expect(k.consensus()).toBe(null);
    expect(k.tunnelRelays()).toEqual([]);
    answer = { consensus: null, source: null, notModified: [], failures: [{ source: 'x', code: 'DIR_FETCH_FAILED', reason: 'down' }] };
    await k.refresh();
    k.stop();
    expect(calls).toEqual([[guard], [circuit], [AUTH.url]]);
    expect(k.lastVia).toBe('direct');
  });
});
