// SPEC.md §1.9: the warm set, the paced pass that opens missing relay links, the idle timeout.
import { describe, expect, it, vi } from 'vitest';
import type { ConsensusRelay } from '../../src/dir/types';
import { chooseWarmSet, DEFAULT_LINK_WARMING, LinkWarmer, parseLinkWarming, type WarmingHost } from '../../relay/link-warming';
import { parseRelayConfig } from '../../relay/config';
import type { Logger } from '../../src/ops/log';

const fp = (i: number) => i.toString(16).padStart(64, '0');
function relay(i: number, o: { weight?: number; flags?: string[]; roles?: string[] } = {}): ConsensusRelay {
  return {
    fingerprint: fp(i), identity: Buffer.from(fp(i), 'hex'), nickname: `r${i}`, address: '10.0.0.1', orPort: 9000 + i,
    flags: new Set(o.flags ?? ['Running', 'Valid', 'Fast']), weight: o.weight ?? 100, roles: o.roles ?? ['relay'],
  } as unknown as ConsensusRelay;
}

interface FakeLink { fp: string; circuits: number; closed: boolean; outbound: boolean }

/** A host with links as plain objects; `open` succeeds unless the relay is in `unreachable`. */
function fakeHost(self: string, unreachable = new Set<string>()) {
  const links: FakeLink[] = [];
  const opened: string[] = [];
  const host: WarmingHost<FakeLink> = {
    self: () => self,
    linkTo: (f) => links.find((l) => l.fp === f && !l.closed) ?? null,
    connecting: () => false,
    open: async (r) => {
      opened.push(r.fingerprint);
      if (unreachable.has(r.fingerprint)) throw Object.assign(new Error('refused'), { code: 'LINK_CONNECT_FAILED' });
      const l = { fp: r.fingerprint, circuits: 0, closed: false, outbound: true };
      links.push(l);
      return l;
    },
    outboundLinks: () => links.filter((l) => l.outbound && !l.closed).map((l) => ({ link: l, fp: l.fp })),
    circuitsOn: (l) => l.circuits,
    closeIdle: async (l) => { if (l.circuits > 0) return false; l.closed = true; return true; },
  };
  return { host, links, opened };
}

function counters() {
  const c = { opened: 0, failed: 0, idle: 0, set: -1 };
  return { c, m: { warmed: (r: 'opened' | 'failed') => { c[r]++; }, idleClosed: () => { c.idle++; }, warmSetSize: (n: number) => { c.set = n; } } };
}

const noSleep = async () => {};

describe('chooseWarmSet', () => {
  const relays = [1, 2, 3, 4, 5, 6].map((i) => relay(i));

  it('a small network: every extend target but ourselves', () => {
    const s = chooseWarmSet(relays, fp(3), 64, () => false);
    expect([...s].sort()).toEqual([1, 2, 4, 5, 6].map(fp));
  });

  it('leaves out relays that cannot be a hop or are not Running and Valid', () => {
    const rs = [relay(1), relay(2, { roles: ['storage'] }), relay(3, { flags: ['Valid'] }), relay(4, { roles: ['exit'] })];
    expect([...chooseWarmSet(rs, fp(9), 64, () => false)].sort()).toEqual([fp(1), fp(4)]);
  });

  it('a large network: at most K, relays already linked kept first, the rest drawn by weight', () => {
    const big = Array.from({ length: 200 }, (_, i) => relay(i + 1, { weight: i < 10 ? 1_000_000 : 1 }));
    const linked = new Set([fp(150), fp(151)]);
    const s = chooseWarmSet(big, fp(1), 12, (f) => linked.has(f));
    expect(s.size).toBe(12);
    expect(s.has(fp(1))).toBe(false);
    expect(s.has(fp(150)) && s.has(fp(151))).toBe(true);
    // The ten heavy relays (but ourselves) take nearly all the remaining draws.
    const heavy = [...s].filter((f) => parseInt(f, 16) <= 10).length;
    expect(heavy).toBeGreaterThanOrEqual(8);
  });

  it('K = 0 turns warming off', () => {
    expect(chooseWarmSet(relays, fp(1), 0, () => false).size).toBe(0);
  });
});

describe('LinkWarmer', () => {
  const relays = [1, 2, 3, 4, 5].map((i) => relay(i));

  it('opens a link to every warm relay it has none to, the ones with a larger fingerprint first', async () => {
    const { host, opened, links } = fakeHost(fp(3));
    links.push({ fp: fp(5), circuits: 0, closed: false, outbound: false }); // the peer opened this one
    const { c, m } = counters();
    const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep: noSleep });
    w.onConsensus(relays);
    await w.idlePass;
    expect(opened).toEqual([fp(4), fp(1), fp(2)]);
    expect(c).toMatchObject({ opened: 3, failed: 0, set: 4 });
    // A second consensus finds every link open: nothing more is opened.
    w.onConsensus(relays);
    await w.idlePass;
    expect(opened).toHaveLength(3);
  });

  it('does not warm before the consensus lists this relay', async () => {
    const { host, opened } = fakeHost(fp(9));
    const { c, m } = counters();
    const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep: noSleep });
    w.onConsensus(relays);
    await w.idlePass;
    expect(opened).toEqual([]);
    expect(c.set).toBe(0);
  });

  it('counts a failure, goes on with the others, and does not retry the failed relay at once', async () => {
    const { host, opened } = fakeHost(fp(1), new Set([fp(2)]));
    const { c, m } = counters();
    let now = 1_000_000;
    const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep: noSleep, now: () => now });
    w.onConsensus(relays);
    await w.idlePass;
    expect(c).toMatchObject({ opened: 3, failed: 1 });
    w.onConsensus(relays);
    await w.idlePass;
    expect(opened.filter((f) => f === fp(2))).toHaveLength(1);
    now += 61_000;
    w.onConsensus(relays);
    await w.idlePass;
    expect(opened.filter((f) => f === fp(2))).toHaveLength(2);
  });

  it('times a failed relay on the monotonic clock: a wall clock stepped back does not delay its retry', async () => {
    const { host, opened } = fakeHost(fp(1), new Set([fp(2)]));
    const { m } = counters();
    let mono = 5_000_000;
    let wall = Date.UTC(2026, 0, 1);
    const monoSpy = vi.spyOn(performance, 'now').mockImplementation(() => mono);
    const wallSpy = vi.spyOn(Date, 'now').mockImplementation(() => wall);
    try {
      const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep: noSleep });
      w.onConsensus(relays);
      await w.idlePass;
      expect(opened.filter((f) => f === fp(2))).toHaveLength(1);
      // 61 s pass; meanwhile the wall clock is stepped back an hour.
      mono += 61_000;
      wall += 61_000 - 3_600_000;
      w.onConsensus(relays);
      await w.idlePass;
      expect(opened.filter((f) => f === fp(2))).toHaveLength(2);
    } finally {
      monoSpy.mockRestore();
      wallSpy.mockRestore();
    }
  });

  it('a consensus that no longer lists this relay, or leaves it no warm set, cancels the pass in progress', async () => {
    for (const next of [relays.filter((r) => r.fingerprint !== fp(1)), [relay(1)]]) {
      const { host, opened } = fakeHost(fp(1));
      const { m } = counters();
      const held: Array<() => void> = [];
      let hold = true;
      const sleep = (): Promise<void> => (hold ? new Promise<void>((r) => { held.push(r); }) : Promise.resolve());
      const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep });
      w.onConsensus(relays);
      const pass = w.idlePass;
      expect(held).toHaveLength(1); // the pass waits its pace before its first attempt
      w.onConsensus(next);
      hold = false;
      for (const r of held.splice(0)) r();
      await pass;
      await w.idlePass;
      expect(opened).toEqual([]);
    }
  });

  it('forgets a failed relay once the consensus no longer lists it, and any failure older than the retry delay', async () => {
    const { host } = fakeHost(fp(1), new Set([fp(2), fp(3)]));
    const { m } = counters();
    let now = 1_000_000;
    const w = new LinkWarmer(host, DEFAULT_LINK_WARMING, m, { sleep: noSleep, now: () => now });
    w.onConsensus(relays);
    await w.idlePass;
    expect(w.failedCount).toBe(2);
    // Relay 2 left the consensus: its entry goes; relay 3's is recent and stays.
    w.onConsensus(relays.filter((r) => r.fingerprint !== fp(2)));
    await w.idlePass;
    expect(w.failedCount).toBe(1);
    // A consensus that does not list this relay warms nothing, and still drops the old entry.
    now += 61_000;
    w.onConsensus(relays.filter((r) => r.fingerprint !== fp(1)));
    expect(w.failedCount).toBe(0);
  });

  it('idle timeout: closes idle links outside the warm set and duplicates, keeps the warm link and busy ones', async () => {
    const { host, links } = fakeHost(fp(1));
    let now = 0;
    const { c, m } = counters();
    const s = { ...DEFAULT_LINK_WARMING, maxLinks: 2 };
    const w = new LinkWarmer(host, s, m, { sleep: noSleep, now: () => now });
    const warm = { fp: fp(2), circuits: 0, closed: false, outbound: true };
    const busy = { fp: fp(7), circuits: 3, closed: false, outbound: true };
    const cold = { fp: fp(8), circuits: 0, closed: false, outbound: true };
    links.push(warm, busy, cold);
    w.onConsensus([relay(1), relay(2), relay(3, { flags: ['Valid'] })]); // warm set {2}
    await w.idlePass;
    const dup = { fp: fp(2), circuits: 0, closed: false, outbound: true }; // a second link to the warm relay
    links.push(dup);
    expect(await w.sweep()).toBe(0); // first sight of idle links starts their clocks
    now += s.idleTimeoutSeconds * 1000 * 0.7;
    expect(await w.sweep()).toBe(0); // before the earliest jittered timeout (75 %)
    now += s.idleTimeoutSeconds * 1000 * 0.6;
    expect(await w.sweep()).toBe(2); // past the latest (125 %)
    expect(cold.closed && dup.closed).toBe(true);
    expect(warm.closed || busy.closed).toBe(false);
    expect(c.idle).toBe(2);
    // A link that carries circuits again restarts its clock.
    busy.circuits = 0;
    now += 10 * s.idleTimeoutSeconds * 1000;
    expect(await w.sweep()).toBe(0);
  });
});

describe('LinkWarmer idle sweep: a failing close', () => {
  it('a link whose close before idling rejects is logged as a warning with its code; the sweep goes on and resolves', async () => {
    const { host, links } = fakeHost(fp(1));
    const { c, m } = counters();
    let now = 1_000_000;
    const warns: Array<{ obj: unknown; msg: unknown }> = [];
    const log = { warn: (obj: unknown, msg?: unknown) => { warns.push({ obj, msg }); }, debug: () => {}, info: () => {}, error: () => {} };
    const s = { ...DEFAULT_LINK_WARMING, maxLinks: 0 };
    const w = new LinkWarmer(host, s, m, { sleep: noSleep, now: () => now, log: log as unknown as Logger });
    const bad = { fp: fp(7), circuits: 0, closed: false, outbound: true };
    const good = { fp: fp(8), circuits: 0, closed: false, outbound: true };
    links.push(bad, good);
    const close = host.closeIdle;
    host.closeIdle = async (l) => {
      if (l === bad) throw Object.assign(new Error('receipts before close failed'), { code: 'LINK_CLOSED' });
      return close(l);
    };
    expect(await w.sweep()).toBe(0);
    now += 2 * s.idleTimeoutSeconds * 1000;
    expect(await w.sweep()).toBe(1);
    expect(good.closed).toBe(true);
    expect(c.idle).toBe(1);
    expect(warns).toHaveLength(1);
    expect(warns[0].obj).toMatchObject({ code: 'LINK_CLOSED' });
    // The next sweep still runs: the link that failed to close is seen again.
    now += 2 * s.idleTimeoutSeconds * 1000;
    expect(await w.sweep()).toBe(0);
    expect(await w.sweep()).toBe(0);
    expect(warns).toHaveLength(1);
    now += 2 * s.idleTimeoutSeconds * 1000;
    expect(await w.sweep()).toBe(0);
    expect(warns).toHaveLength(2);
  });
});

describe('linkWarming in the relay config', () => {
  const base = () => ({ dataDir: 'r', orPort: 9001, authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:7000' }] });

  it('defaults, overrides, and names a bad key', () => {
    expect(parseLinkWarming(undefined)).toEqual(DEFAULT_LINK_WARMING);
    expect(parseLinkWarming({ maxLinks: 0 }).maxLinks).toBe(0);
    expect(() => parseLinkWarming({ maxLinks: -1 })).toThrow(/linkWarming\.maxLinks/);
    expect(() => parseLinkWarming({ idleTimeoutSeconds: 5 })).toThrow(/linkWarming\.idleTimeoutSeconds/);
    expect(() => parseLinkWarming({ warm: true })).toThrow(/warm/);
    expect(() => parseLinkWarming({ maxLinks: 10_000, paceMs: 60_000 })).toThrow(/paceMs/);
  });

  it('is read from the relay config file', () => {
    expect(parseRelayConfig(base(), '/x').linkWarming).toEqual(DEFAULT_LINK_WARMING);
    expect(parseRelayConfig({ ...base(), linkWarming: { maxLinks: 8 } }, '/x').linkWarming).toEqual({ ...DEFAULT_LINK_WARMING, maxLinks: 8 });
  });
});
