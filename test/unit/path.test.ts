import { describe, it, expect, vi } from 'vitest';
import { secureRandom } from '../../src/crypto/primitives';
import fc from 'fast-check';
import { choosePath, MAX_EXITS_TRIED, relaysConflict, subnetKey, sameFamily, relayExitPolicy } from '../../src/client/path';
import { computeBandwidthWeights, positionWeight, weightedPick, type Relay } from '../../src/client/weighting';
import { GuardSet } from '../../src/client/guards';
import { exitPolicyAllows, parseExitPolicy } from '../../src/dir/exit-policy';
import { isBitcloudError } from '../../src/errors';

const fp = (i: number) => i.toString(16).padStart(64, '0');
interface Fx { flags?: string[]; weight?: number; address?: string; family?: string[]; roles?: string[]; exitPolicy?: readonly string[] }
/** Relay i: Running, Valid, Fast, Guard, alone in 10.i.0.0/16, not an exit. */
function relay(i: number, o: Fx = {}): Relay {
  return {
    identity: Buffer.from(fp(i), 'hex'), fingerprint: fp(i), address: o.address ?? `10.${i}.0.1`, orPort: 9000 + i,
    flags: new Set(o.flags ?? ['Running', 'Valid', 'Fast', 'Guard']), weight: o.weight ?? 100,
    exitPolicy: o.exitPolicy ?? ['reject *:*'], family: o.family ?? [], roles: o.roles ?? ['relay'],
  };
}
function exitRelay(i: number, o: Fx = {}): Relay {
  return relay(i, { flags: ['Running', 'Valid', 'Fast', 'Exit'], exitPolicy: ['accept *:*'], roles: ['relay', 'exit'], ...o });
}
function seededRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
}
function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD ${String(e)}`; }
  return undefined;
}
const web = { host: 'example.com', port: 443 };

function assertValidPath(path: Relay[], subnets = true): void {
  expect(new Set(path.map((r) => r.fingerprint)).size).toBe(3);
  for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) expect(relaysConflict(path[i], path[j], subnets)).toBe(false);
}

describe('path and guard selection draw from the CSPRNG, never Math.random (SPEC §7.1)', () => {
  it('choosePath and GuardSet without an rng never call Math.random, and still vary', () => {
    const spy = vi.spyOn(Math, 'random').mockImplementation(() => { throw new Error('Math.random used'); });
    try {
      const net = [relay(1), relay(2), relay(3), relay(4), relay(7), exitRelay(5), exitRelay(6)];
      const seen = new Set<string>();
      for (let i = 0; i < 100; i++) seen.add(choosePath(net, { target: web, guards: [] }).map((r) => r.fingerprint.slice(-1)).join(''));
      expect(seen.size).toBeGreaterThan(3);
      const g = new GuardSet(null);
      expect(g.pickGuard(net)).not.toBeNull();
      expect(g.guards.length).toBeGreaterThan(0);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });
  it('secureRandom is uniform in [0, 1)', () => {
    let sum = 0;
    for (let i = 0; i < 20_000; i++) { const x = secureRandom(); expect(x >= 0 && x < 1).toBe(true); sum += x; }
    expect(Math.abs(sum / 20_000 - 0.5)).toBeLessThan(0.02);
  });
});

describe('path selection (SPEC §7.1)', () => {
  const net = [relay(1), relay(2), relay(3), relay(4, { flags: ['Running', 'Valid', 'Fast'] }), exitRelay(5), exitRelay(6)];

  it('returns guard, middle, exit: three distinct relays, exit last with the Exit flag', () => {
    const rng = seededRng(1);
    for (let i = 0; i < 200; i++) {
      const [g, m, e] = choosePath(net, { target: web, guards: [], rng });
      assertValidPath([g, m, e]);
      expect(g.flags.has('Guard')).toBe(true);
      expect(m.flags.has('Fast')).toBe(true);
      expect(e.flags.has('Exit')).toBe(true);
    }
  });

  it('chooses the exit by its policy for the target port', () => {
    const relays = [relay(1), relay(2), relay(3), exitRelay(5, { exitPolicy: ['accept *:80', 'reject *:*'] }), exitRelay(6, { exitPolicy: ['accept *:443', 'reject *:*'] })];
    const rng = seededRng(2);
    for (let i = 0; i < 50; i++) {
      expect(choosePath(relays, { target: { host: null, ip: '8.8.8.8', port: 80 }, guards: [], rng })[2].fingerprint).toBe(fp(5));
      expect(choosePath(relays, { target: { host: 'x.org', port: 443 }, guards: [], rng })[2].fingerprint).toBe(fp(6));
    }
  });

  it('prefers exits that surely accept a name over ones that may', () => {
    const relays = [relay(1), relay(2), exitRelay(5, { exitPolicy: ['accept 1.0.0.0/8:*'] }), exitRelay(6)];
    const rng = seededRng(3);
    for (let i = 0; i < 50; i++) expect(choosePath(relays, { target: web, guards: [], rng })[2].fingerprint).toBe(fp(6));
    // With only a "maybe" exit, it is used.
    expect(choosePath(relays.slice(0, 3), { target: web, guards: [], rng })[2].fingerprint).toBe(fp(5));
  });

  it('treats an IP literal given as a host name as that address', () => {
    const relays = [relay(1), relay(2), exitRelay(5, { exitPolicy: ['accept 127.0.0.1:*', 'reject *:*'] })];
    expect(choosePath(relays, { target: { host: '127.0.0.1', port: 8080 }, guards: [] })[2].fingerprint).toBe(fp(5));
    expect(codeOf(() => choosePath(relays, { target: { host: '127.0.0.2', port: 8080 }, guards: [] }))).toBe('PATH_NO_EXIT');
  });

  it('PATH_NO_EXIT when no exit allows the port, or there is no exit at all', () => {
    expect(codeOf(() => choosePath(net, { target: { host: 'x.org', port: 0 }, guards: [] }))).toBe('PATH_NO_EXIT');
    const smtp = [relay(1), relay(2), exitRelay(5, { exitPolicy: ['reject *:25', 'accept *:*'] })];
    expect(codeOf(() => choosePath(smtp, { target: { host: 'mail.org', port: 25 }, guards: [] }))).toBe('PATH_NO_EXIT');
    expect(codeOf(() => choosePath([relay(1), relay(2), relay(3)], { target: web, guards: [] }))).toBe('PATH_NO_EXIT');
  });

  it('requires the Exit flag even when the policy would accept', () => {
    const relays = [relay(1), relay(2), relay(3, { exitPolicy: ['accept *:*'] })];
    expect(codeOf(() => choosePath(relays, { target: web, guards: [] }))).toBe('PATH_NO_EXIT');
  });

  it('PATH_NO_RELAYS on an empty consensus or one without Running+Valid relays', () => {
    expect(codeOf(() => choosePath([], { target: web, guards: [] }))).toBe('PATH_NO_RELAYS');
    const down = net.map((r, i) => relay(i + 1, { flags: [...r.flags].filter((f) => f !== (i % 2 ? 'Running' : 'Valid')) }));
    expect(codeOf(() => choosePath(down, { target: web, guards: [] }))).toBe('PATH_NO_RELAYS');
  });

  it('never uses a relay that is not Running or not Valid', () => {
    const relays = [...net, relay(7, { flags: ['Valid', 'Fast', 'Guard'] }), exitRelay(8, { flags: ['Running', 'Fast', 'Exit'] })];
    const rng = seededRng(4);
    for (let i = 0; i < 300; i++) {
      const p = choosePath(relays, { target: web, guards: [], rng });
      expect(p.map((r) => r.fingerprint)).not.toContain(fp(7));
      expect(p.map((r) => r.fingerprint)).not.toContain(fp(8));
    }
  });

  it('the middle must be Fast', () => {
    const relays = [relay(1), relay(2, { flags: ['Running', 'Valid'] }), exitRelay(5)];
    expect(codeOf(() => choosePath(relays, { target: web, guards: [] }))).toBe('PATH_NO_MIDDLE');
  });

  it('PATH_NO_GUARD when no Guard-flagged relay fits', () => {
    const relays = [relay(1, { flags: ['Running', 'Valid', 'Fast'] }), relay(2, { flags: ['Running', 'Valid', 'Fast'] }), exitRelay(5)];
    expect(codeOf(() => choosePath(relays, { target: web, guards: [] }))).toBe('PATH_NO_GUARD');
  });

  it('an exit that leaves no guard or no middle is set aside for another exit (SPEC §7.1 step 4)', () => {
    // A young network: the only Guard is exit 5. Drawing exit 5 leaves no guard, so exit 6 is used.
    const exitGuard = exitRelay(5, { flags: ['Running', 'Valid', 'Fast', 'Exit', 'Guard'] });
    const noGuards = [relay(1, { flags: ['Running', 'Valid', 'Fast'] }), exitGuard, exitRelay(6)];
    // Exit 5 weighs 100× exit 6, so it is drawn first almost every time.
    const heavy = [noGuards[0], { ...exitGuard, weight: 10_000 }, noGuards[2]];
    for (const [relays, how] of [[noGuards, 'equal weights'], [heavy, 'exit 5 heavy']] as const) {
      for (const guards of [[], new GuardSet(null)]) {
        const rng = seededRng(11);
        for (let i = 0; i < 50; i++) {
          const p = choosePath(relays, { target: web, guards, rng });
          expect(p.map((r) => r.fingerprint), how).toEqual([fp(5), fp(1), fp(6)]);
        }
      }
    }
    // Every exit set aside: the first exit's reason stands (here the only exit is the only guard).
    const lone = [relay(1, { flags: ['Running', 'Valid', 'Fast'] }), exitGuard];
    expect(codeOf(() => choosePath(lone, { target: web, guards: [] }))).toBe('PATH_NO_GUARD');
    const onlyMiddleIsExit = [relay(1), exitRelay(5, { flags: ['Running', 'Valid', 'Exit', 'Fast'] }), exitRelay(6, { flags: ['Running', 'Valid', 'Exit'] })];
    // Exit 6 drawn: guard 1, middle 5. Exit 5 drawn: guard 1, no middle (6 is not Fast) → set aside → exit 6.
    const rng2 = seededRng(13);
    for (let i = 0; i < 50; i++) expect(choosePath(onlyMiddleIsExit, { target: web, guards: [], rng: rng2 }).map((r) => r.fingerprint)).toEqual([fp(1), fp(5), fp(6)]);
    // A storage target has one last hop: no other is tried.
    expect(codeOf(() => choosePath(noGuards, { target: { storageNode: exitGuard }, guards: [] }))).toBe('PATH_NO_GUARD');
  });

  it('a consensus of many exits and no middle tries at most MAX_EXITS_TRIED exits per choice and evaluates each exit policy once (SPEC §7.1 step 4)', () => {
    expect(MAX_EXITS_TRIED).toBe(64);
    // A hostile (or broken) consensus: 400 exits, every one also a Guard, none Fast. Every exit
    // leaves no middle, so each would be set aside in turn.
    const accept = parseExitPolicy(['accept *:*']);
    let evals = 0;
    const relays = Array.from({ length: 400 }, (_, i) => {
      const r = exitRelay(i + 1, { flags: ['Running', 'Valid', 'Exit', 'Guard'], address: `10.${(i + 1) % 250}.${(i + 1) >> 8}.1` });
      // A parsed policy whose rules count the evaluations (exitPolicyAllows reads them once per call).
      r.exitPolicy = { ownAddresses: accept.ownAddresses, get rules() { evals++; return accept.rules; } };
      return r;
    });
    for (const guards of [[], new GuardSet(null, Date.now, { rng: seededRng(3) })]) {
      const inner = seededRng(7);
      let draws = 0;
      evals = 0;
      const rng = () => { draws++; return inner(); };
      expect(codeOf(() => choosePath(relays, { target: web, guards, rng }))).toBe('PATH_NO_MIDDLE');
      // One draw for the exit and at most one for the guard per exit tried.
      expect(draws).toBeLessThanOrEqual(2 * MAX_EXITS_TRIED);
      expect(draws).toBeGreaterThanOrEqual(MAX_EXITS_TRIED);
      // The target's exit policy is evaluated once per relay per choice, not once per exit tried.
      expect(evals).toBe(relays.length);
    }
  });

  it('an honest network whose only Guard shares a /16 with most exits always finds a path (SPEC §7.1 step 4)', () => {
    // One hosting provider's /16 holds the only Guard and 10 of the 11 exits; the 11th exit is
    // elsewhere. Every exit in 10.1/16 leaves no guard, so up to 10 exits are set aside per choice.
    const guard = relay(1, { address: '10.1.0.1', flags: ['Running', 'Valid', 'Guard'] });
    const sameNet = Array.from({ length: 10 }, (_, i) => exitRelay(20 + i, { address: `10.1.${i + 1}.1` }));
    const elsewhere = exitRelay(40, { address: '10.2.0.1' });
    const middles = [50, 51, 52, 53].map((i) => relay(i, { address: `10.${i}.0.1`, flags: ['Running', 'Valid', 'Fast'] }));
    const relays = [guard, ...sameNet, elsewhere, ...middles];
    const rng = seededRng(17);
    for (let i = 0; i < 500; i++) {
      const p = choosePath(relays, { target: web, guards: [], rng });
      expect(p[0].fingerprint).toBe(fp(1));
      expect(p[2].fingerprint).toBe(fp(40));
      assertValidPath(p);
    }
  });

  it('never puts two relays of one IPv4 /16 in a path', () => {
    const relays = [relay(1, { address: '10.1.0.1' }), relay(2, { address: '10.1.200.7' }), relay(3, { address: '10.2.0.1' }), exitRelay(5, { address: '10.3.0.1' })];
    const rng = seededRng(5);
    for (let i = 0; i < 100; i++) {
      const p = choosePath(relays, { target: web, guards: [], rng });
      expect(p.filter((r) => r.address.startsWith('10.1.')).length).toBe(1);
    }
    const crowded = [relay(1, { address: '10.1.0.1' }), relay(2, { address: '10.1.0.2' }), exitRelay(5, { address: '10.1.0.3' })];
    expect(codeOf(() => choosePath(crowded, { target: web, guards: [] }))).toBe('PATH_NO_GUARD');
  });

  it('enforceDistinctSubnets: false lets a one-address local network build paths', () => {
    const local = [relay(1), relay(2), relay(3), exitRelay(4), exitRelay(5)].map((r) => ({ ...r, address: '127.0.0.1' }));
    expect(codeOf(() => choosePath(local, { target: web, guards: [] }))).toBe('PATH_NO_GUARD');
    const rng = seededRng(6);
    for (let i = 0; i < 50; i++) assertValidPath(choosePath(local, { target: web, guards: [], rng, enforceDistinctSubnets: false }), false);
  });

  it('IPv6 relays are compared by /32, IPv4-mapped as IPv4', () => {
    expect(subnetKey('2001:db8:1::1')).toBe(subnetKey('2001:db8:ffff::2'));
    expect(subnetKey('2001:db8::1')).not.toBe(subnetKey('2001:db9::1'));
    expect(subnetKey('::ffff:10.1.2.3')).toBe(subnetKey('10.1.9.9'));
  });

  it('never puts two relays of one mutually declared family in a path', () => {
    const relays = [relay(1, { family: [fp(5)] }), relay(2), relay(3), exitRelay(5, { family: ['$' + fp(1).toUpperCase()] })];
    expect(sameFamily(relays[0], relays[3])).toBe(true);
    const rng = seededRng(7);
    for (let i = 0; i < 100; i++) {
      const p = choosePath(relays, { target: web, guards: [], rng }).map((r) => r.fingerprint);
      expect(p.includes(fp(1)) && p.includes(fp(5))).toBe(false);
    }
  });

  it('ignores a one-sided family claim', () => {
    const relays = [relay(1, { family: [fp(5)] }), relay(2, { flags: ['Running', 'Valid', 'Fast'] }), exitRelay(5)];
    expect(sameFamily(relays[0], relays[2])).toBe(false);
    expect(choosePath(relays, { target: web, guards: [] }).map((r) => r.fingerprint)).toEqual([fp(1), fp(2), fp(5)]);
  });

  it('honours the exclude set', () => {
    const rng = seededRng(8);
    for (let i = 0; i < 100; i++) {
      const p = choosePath(net, { target: web, guards: [], rng, exclude: new Set([fp(5), fp(1)]) });
      expect(p[2].fingerprint).toBe(fp(6));
      expect(p.map((r) => r.fingerprint)).not.toContain(fp(1));
    }
  });

  it('a storage target is the last hop; no exit needed; storage-only nodes are never earlier hops', () => {
    const store = relay(9, { flags: ['Running', 'Valid', 'Fast', 'Guard'], roles: ['storage'] });
    const relays = [relay(1), relay(2), relay(3, { flags: ['Running', 'Valid', 'Fast'] }), store];
    const rng = seededRng(9);
    for (let i = 0; i < 100; i++) {
      const p = choosePath(relays, { target: { storageNode: store }, guards: [], rng });
      expect(p[2]).toBe(store);
      expect(p.slice(0, 2).map((r) => r.fingerprint)).not.toContain(fp(9));
      assertValidPath(p);
    }
    expect(codeOf(() => choosePath(relays, { target: web, guards: [] }))).toBe('PATH_NO_EXIT');
  });

  it('a fixed guard list: the first usable listed guard that does not conflict with the exit', () => {
    const relays = [relay(1, { family: [fp(5)] }), relay(2), relay(3), exitRelay(5, { family: [fp(1)] })];
    const guards = [{ fingerprint: fp(1) }, { fingerprint: fp(2) }, { fingerprint: fp(3) }];
    expect(choosePath(relays, { target: web, guards })[0].fingerprint).toBe(fp(2));
    expect(choosePath(relays, { target: web, guards: [{ fingerprint: fp(3) }] })[0].fingerprint).toBe(fp(3));
    expect(codeOf(() => choosePath(relays, { target: web, guards: [{ fingerprint: fp(1) }, { fingerprint: fp(77) }] }))).toBe('PATH_NO_GUARD');
  });

  it('a GuardSet supplies the guard, excluding relays that conflict with the exit', () => {
    const relays = [relay(1), relay(2), relay(3), relay(4), exitRelay(5)];
    const gs = new GuardSet(null, () => 0, { rng: seededRng(10) });
    const first = choosePath(relays, { target: web, guards: gs, rng: seededRng(11) })[0];
    expect(gs.guards[0].fingerprint).toBe(first.fingerprint);
    for (let i = 0; i < 20; i++) expect(choosePath(relays, { target: web, guards: gs, rng: seededRng(i) })[0]).toBe(first);
  });

  it('a storage node in the /16 of every primary guard: the first usable sampled guard after them, sampled if need be; the primaries stay (SPEC §7.2)', () => {
    // Guards 1-3 (the primaries) share 10.1/16 with the storage node; 4-6 are elsewhere.
    const inNet = (i: number) => relay(i, { address: `10.1.${i}.1` });
    const store = relay(9, { address: '10.1.9.9', roles: ['storage'], flags: ['Running', 'Valid'] });
    const relays = [inNet(1), inNet(2), inNet(3), relay(4), relay(5), relay(6), store];
    const rec = (i: number) => ({ fingerprint: fp(i), addedAt: 0, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: true, unlistedSince: null });
    const gs = new GuardSet(null, () => 0, { rng: seededRng(3) }, [rec(1), rec(2), rec(3)]);
    const p = choosePath(relays, { target: { storageNode: store }, guards: gs, rng: seededRng(4) });
    assertValidPath(p);
    const fourth = gs.guards[3]?.fingerprint;
    expect([fp(4), fp(5), fp(6)]).toContain(fourth);
    expect(p[0].fingerprint).toBe(fourth);
    expect(gs.guards.map((g) => g.fingerprint).slice(0, 3)).toEqual([fp(1), fp(2), fp(3)]);
    // The next storage circuit reuses that guard (no further sampling); other paths keep the first primary.
    expect(choosePath(relays, { target: { storageNode: store }, guards: gs, rng: seededRng(5) })[0].fingerprint).toBe(fourth);
    expect(gs.guards).toHaveLength(4);
    expect(choosePath([...relays, exitRelay(7)], { target: web, guards: gs, rng: seededRng(6) })[0].fingerprint).toBe(fp(1));
    // With the sample at maxSampleSize, nothing more is sampled: PATH_NO_GUARD.
    const full = new GuardSet(null, () => 0, { rng: seededRng(3), maxSampleSize: 3 }, [rec(1), rec(2), rec(3)]);
    expect(codeOf(() => choosePath(relays, { target: { storageNode: store }, guards: full }))).toBe('PATH_NO_GUARD');
    expect(full.guards).toHaveLength(3);
  });

  it('a storage node whose one fitting sampled guard failed this build: PATH_NO_GUARD, nothing sampled (SPEC §7.2 Sampling)', () => {
    // Guards 1-3 share 10.1/16 with the storage node; guard 4 fits it but failed this build.
    const inNet = (i: number) => relay(i, { address: `10.1.${i}.1` });
    const store = relay(9, { address: '10.1.9.9', roles: ['storage'], flags: ['Running', 'Valid'] });
    const relays = [inNet(1), inNet(2), inNet(3), relay(4), relay(5), relay(6), store];
    const rec = (i: number) => ({ fingerprint: fp(i), addedAt: 0, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: true, unlistedSince: null });
    const gs = new GuardSet(null, () => 0, { rng: seededRng(3) }, [rec(1), rec(2), rec(3), rec(4)]);
    expect(codeOf(() => choosePath(relays, { target: { storageNode: store }, guards: gs, exclude: new Set([fp(4)]) }))).toBe('PATH_NO_GUARD');
    expect(gs.guards.map((g) => g.fingerprint)).toEqual([fp(1), fp(2), fp(3), fp(4)]);
    // Without the failure, guard 4 is used, as before.
    expect(choosePath(relays, { target: { storageNode: store }, guards: gs, rng: seededRng(4) })[0].fingerprint).toBe(fp(4));
  });

  it('is bandwidth-weighted', () => {
    const relays = [relay(1), relay(2, { weight: 900, flags: ['Running', 'Valid', 'Fast'] }), relay(3, { weight: 100, flags: ['Running', 'Valid', 'Fast'] }), exitRelay(5, { weight: 1000 })];
    const rng = seededRng(12);
    let heavy = 0;
    for (let i = 0; i < 2000; i++) if (choosePath(relays, { target: web, guards: [{ fingerprint: fp(1) }], rng })[1].fingerprint === fp(2)) heavy++;
    expect(heavy / 2000).toBeGreaterThan(0.85);
    expect(heavy / 2000).toBeLessThan(0.95);
  });

  it('property: any consensus gives a rule-abiding path or a PATH_ error', () => {
    const arb = fc.array(fc.record({
      flags: fc.subarray(['Running', 'Valid', 'Fast', 'Guard', 'Exit']),
      weight: fc.integer({ min: 0, max: 1000 }),
      net: fc.integer({ min: 0, max: 4 }),
      fam: fc.subarray([0, 1, 2, 3, 4, 5, 6, 7]),
      policy: fc.constantFrom(['accept *:*'], ['reject *:*'], ['accept *:443']),
    }), { maxLength: 8 });
    fc.assert(fc.property(arb, fc.integer(), fc.constantFrom(80, 443), (xs, seed, port) => {
      const relays = xs.map((x, i) => relay(i, { flags: x.flags, weight: x.weight, address: `10.${x.net}.0.${i}`, family: x.fam.map(fp), exitPolicy: x.policy }));
      try {
        const p = choosePath(relays, { target: { host: 'x.org', port }, guards: [], rng: seededRng(seed) });
        assertValidPath(p);
        for (const r of p) expect(r.flags.has('Running') && r.flags.has('Valid')).toBe(true);
        expect(p[0].flags.has('Guard') && p[1].flags.has('Fast') && p[2].flags.has('Exit')).toBe(true);
        expect(exitPolicyAllows(relayExitPolicy(p[2]), 'x.org', port)).not.toBe('no');
      } catch (e) {
        expect(isBitcloudError(e) && e.code.startsWith('PATH_')).toBe(true);
      }
    }));
  });
});

describe('position weights (SPEC §7.1.2)', () => {
  it('each class\'s weights over the positions sum to 1', () => {
    fc.assert(fc.property(fc.array(fc.record({ g: fc.boolean(), e: fc.boolean(), w: fc.integer({ min: 0, max: 10_000 }) })), (xs) => {
      const relays = xs.map((x, i) => relay(i, { weight: x.w, flags: ['Running', 'Valid', 'Fast', ...(x.g ? ['Guard'] : []), ...(x.e ? ['Exit'] : [])] }));
      const w = computeBandwidthWeights(relays);
      for (const v of Object.values(w)) { expect(v).toBeGreaterThanOrEqual(0); expect(v).toBeLessThanOrEqual(1 + 1e-12); }
      if (xs.some((x) => x.w > 0)) {
        expect(w.Wgg + w.Wmg).toBeCloseTo(1, 9);
        expect(w.Wee + w.Wme).toBeCloseTo(1, 9);
        expect(w.Wgd + w.Wmd + w.Wed).toBeCloseTo(1, 9);
      }
    }));
  });

  it('scarce exits are kept for the exit position', () => {
    const relays = [relay(1), relay(2), relay(3), relay(4), exitRelay(5)];
    const w = computeBandwidthWeights(relays);
    expect(w.Wee).toBe(1);
    expect(w.Wme).toBe(0);
    expect(positionWeight(relays[4], 'middle', w)).toBe(0);
    expect(positionWeight(relays[4], 'guard', w)).toBe(0);
  });

  it('plentiful exits share the middle position', () => {
    const relays = [relay(1), exitRelay(5), exitRelay(6), exitRelay(7)];
    const w = computeBandwidthWeights(relays);
    expect(w.Wee).toBeCloseTo(4 / 3 / 3, 9);
    expect(w.Wme).toBeCloseTo(1 - 4 / 9, 9);
  });

  it('guards+exits are used as guards only with exit bandwidth to spare', () => {
    const scarce = computeBandwidthWeights([relay(1), relay(2), relay(3, { flags: ['Running', 'Valid', 'Fast', 'Guard', 'Exit'] })]);
    expect(scarce.Wed).toBe(1);
    expect(scarce.Wgd).toBe(0);
    const plenty = computeBandwidthWeights([relay(1, { flags: ['Running', 'Valid', 'Fast', 'Guard', 'Exit'] }), relay(2, { flags: ['Running', 'Valid', 'Fast', 'Guard', 'Exit'] }), relay(3, { flags: ['Running', 'Valid', 'Fast', 'Guard', 'Exit'] })]);
    expect(plenty.Wed).toBeCloseTo(1 / 3, 9);
    expect(plenty.Wgd).toBeGreaterThan(0);
  });

  it('weightedPick falls back to raw weights, then uniform, when weights are all zero', () => {
    const rng = seededRng(13);
    expect(weightedPick(['a', 'b'], () => 0, rng, (x) => (x === 'b' ? 1 : 0))).toBe('b');
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) seen.add(weightedPick(['a', 'b'], () => 0, rng)!);
    expect(seen).toEqual(new Set(['a', 'b']));
    expect(weightedPick([], () => 1, rng)).toBeNull();
  });

  it('an unparseable exit policy makes the relay no exit', () => {
    const r = exitRelay(5, { exitPolicy: ['accept everything'] });
    expect(exitPolicyAllows(relayExitPolicy(r), '8.8.8.8', 80)).toBe('no');
    const parsed = exitRelay(6, {});
    (parsed as { exitPolicy: unknown }).exitPolicy = parseExitPolicy(['accept *:80']);
    expect(exitPolicyAllows(relayExitPolicy(parsed), '8.8.8.8', 80)).toBe('yes');
  });
});
