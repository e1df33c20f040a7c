// Authority plumbing: config validation names the bad key; the upload rate limiter;
// compressed serving; keygen and signer loading; relay config.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAuthorityConfig } from '../../directory/config';
import { RateLimiter } from '../../directory/rate-limit';
import { authorityKeygen, loadAuthoritySigner } from '../../directory/keygen';
import { parseRelayConfig } from '../../relay/config';
import { chooseEncoding } from '../../src/dir/http-serve';
import { cappedDeclaredSource } from '../../directory/bandwidth';
import { isBitcloudError } from '../../src/errors';
import { parseAuthorityList } from '../../src/dir/authorities';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { buildDescriptor } from '../../src/dir/descriptor';
import { createRegistry } from '../../src/ops/metrics';
import type { ReachabilityResult } from '../../directory/reachability';
import { makeSigner, makeFixture, makeRelay, soloAuthority, silentLog, epochStart, E, P, type Fixture } from './dirauth-measure-fixture';
import { buildVote, verifyVote, type Signer } from '../../directory/vote';
import { LIMITS } from '../../src/wire/docs';
import { SignedPeriods, SIGNED_PERIODS_FILE } from '../../directory/signed-periods';
import { SigningRound } from '../../directory/signing-round';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KNOWN_FLAGS } from '../../directory/flags';
import { FLAG_BITS } from '../../src/dir/types';
import { PATHS } from '../../src/dir/fetch';

const FP = 'ab'.repeat(32);
/**
 * Waits until `cond` holds (a loopback fetch landed, a background write is done): a hang detector
 * of 20 s, not a performance bound, so a slow machine does not fail the test.
 */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still not so after 20 s: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const good = () => ({
  identity: FP, dataDir: 'd', listen: { host: '127.0.0.1', port: 7000 }, period: 15,
  authorities: [{ name: 'a', identity: FP, address: '127.0.0.1:7000' }],
});
const message = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e, 'CONFIG_INVALID')) return e.message; throw e; }
  return 'NO_ERROR';
};

describe('authority config', () => {
  it('fills defaults', () => {
    const c = parseAuthorityConfig(good(), '/base');
    expect(c.dataDir).toBe('/base/d');
    expect(c.consensusLifetimePeriods).toBe(3);
    expect(c.stableAfterSeconds).toBe(30);
    expect(c.rateLimit).toEqual({ uploadsPerMinute: 60, burst: 20 });
  });
  it('--data-dir is resolved against the current directory, dataDir in the file against the file\'s folder (SPEC.md §11.5)', () => {
    expect(parseAuthorityConfig(good(), '/etc/bitcloud', { dataDir: 'data' }).dataDir).toBe(path.resolve(process.cwd(), 'data'));
    expect(parseAuthorityConfig(good(), '/etc/bitcloud', { dataDir: '/var/lib/a' }).dataDir).toBe('/var/lib/a');
    expect(parseAuthorityConfig(good(), '/etc/bitcloud').dataDir).toBe('/etc/bitcloud/d');
  });
  it('names the bad key', () => {
    expect(message(() => parseAuthorityConfig({ ...good(), period: 'x' }, '/'))).toMatch(/^CONFIG_INVALID: period:/);
    expect(message(() => parseAuthorityConfig({ ...good(), authorities: [{ name: 'a', identity: 'XY', address: '127.0.0.1:1' }] }, '/'))).toMatch(/authorities\[0\]\.identity/);
    expect(message(() => parseAuthorityConfig({ ...good(), authorities: [{ name: 'a', identity: FP, address: 'nohost' }] }, '/'))).toMatch(/authorities\[0\]\.address/);
    expect(message(() => parseAuthorityConfig({ ...good(), identity: 'cd'.repeat(32) }, '/'))).toMatch(/identity: this authority is not in the authorities list/);
    expect(message(() => parseAuthorityConfig({ ...good(), perod: 5 }, '/'))).toMatch(/unknown key "perod" \(did you mean "period"\?\)/);
    expect(message(() => parseAuthorityConfig({ ...good(), rateLimit: { burst: 0 } }, '/'))).toMatch(/rateLimit\.burst/);
  });
});

describe('authority list addresses (SPEC.md §6.1, §11.5)', () => {
  it('takes a bracketed IPv6 address and gives a URL that parses', () => {
    const [a] = parseAuthorityList([{ name: 'a', identity: FP, address: '[::1]:7000' }]);
    expect(a.host).toBe('::1');
    expect(a.port).toBe(7000);
    expect(new URL('/tor/status', a.url).href).toBe('http://[::1]:7000/tor/status');
    expect(parseAuthorityList([{ name: 'a', identity: FP, address: '127.0.0.1:7000' }])[0].url).toBe('http://127.0.0.1:7000');
  });
  it('refuses a bracketed address that is not IPv6, naming the key', () => {
    for (const address of ['[]:7000', '[::1:7000', '[nohost]:7000', '[::1]7000', '::1]:7000']) {
      expect(message(() => parseAuthorityList([{ name: 'a', identity: FP, address }]))).toMatch(/^CONFIG_INVALID: authorities\[0\]\.address/);
    }
  });
});

describe('relay config', () => {
  const relay = () => ({ dataDir: 'r', orPort: 9001, authorities: good().authorities });
  it('defaults to a non-exit relay with a reject-all policy', () => {
    const c = parseRelayConfig(relay(), '/x');
    expect(c.roles).toEqual(['relay']);
    expect(c.exitPolicy).toEqual(['reject *:*']);
  });
  it('names the bad key', () => {
    expect(message(() => parseRelayConfig({ ...relay(), roles: ['relay', 'dancer'] }, '/'))).toMatch(/roles\[1\]/);
    expect(message(() => parseRelayConfig({ ...relay(), exitPolicy: ['accept nowhere'] }, '/'))).toMatch(/exitPolicy/);
    expect(message(() => parseRelayConfig({ ...relay(), roles: ['storage'] }, '/'))).toMatch(/storagePort/);
    expect(message(() => parseRelayConfig({ ...relay(), nickname: 'bad name' }, '/'))).toMatch(/nickname/);
  });
  it('takes only the roles an operator sets: relay, exit, storage; "hidden" is the consensus\'s mark of a hidden storage node (SPEC.md §6.4, §9.21.1)', () => {
    expect(parseRelayConfig({ ...relay(), roles: ['relay', 'exit', 'storage'], storagePort: 9002 }, '/').roles).toEqual(['relay', 'exit', 'storage']);
    for (const roles of [['hidden'], ['relay', 'hidden'], ['storage', 'hidden']]) {
      const m = message(() => parseRelayConfig({ ...relay(), roles, storagePort: 9002 }, '/'));
      expect(m).toMatch(new RegExp(`^CONFIG_INVALID: roles\\[${roles.indexOf('hidden')}\\]: must be one of relay, exit, storage`));
    }
  });
});

describe('upload rate limiter', () => {
  it('allows a burst, then refills at the configured rate, per address', () => {
    const r = new RateLimiter(60, 3);
    expect([r.take('a', 0), r.take('a', 0), r.take('a', 0), r.take('a', 0)]).toEqual([true, true, true, false]);
    expect(r.take('b', 0)).toBe(true);
    expect(r.take('a', 999)).toBe(false);
    expect(r.take('a', 1000)).toBe(true);
  });

  it('keys an upload by its IPv4 address or its IPv6 /64, as the servers take it: 21 addresses of one /64 share one burst of 20 (SPEC.md §6.10, §8.4)', () => {
    const r = new RateLimiter(60, 20);
    const taken = Array.from({ length: 21 }, (_, i) => r.takeRemote(`2001:db8::${(i + 1).toString(16)}`, 0));
    expect(taken.slice(0, 20).every(Boolean)).toBe(true);
    expect(taken[20]).toBe(false);
    expect(r.takeRemote('2001:db8:0:1::1', 0)).toBe(true);
    // An IPv4-mapped address is its IPv4 address.
    for (let i = 0; i < 20; i++) r.takeRemote('203.0.113.7', 0);
    expect(r.takeRemote('::ffff:203.0.113.7', 0)).toBe(false);
  });

  it('holds at most maxAddresses buckets and does not sweep them all on every new address', () => {
    const r = new RateLimiter(60, 3, 1000);
    const sweeps = vi.spyOn(r, 'sweep');
    for (let i = 0; i < 5000; i++) {
      expect(r.take(`10.0.${i >> 8}.${i & 255}`, i >> 1)).toBe(true); // all within one refill time (3 s)
      expect(r.size).toBeLessThanOrEqual(1000);
    }
    expect(sweeps.mock.calls.length).toBeLessThanOrEqual(5);
    // The newest addresses keep their buckets.
    expect([r.take('10.0.19.135', 2499), r.take('10.0.19.135', 2499), r.take('10.0.19.135', 2499)]).toEqual([true, true, false]);
  });
});

describe('bandwidth source (no measurements yet)', () => {
  it('votes the declared bandwidth, capped, in KB/s', () => {
    const s = cappedDeclaredSource(1000);
    expect(s.measuredKBps('x', 250_000)).toBe(250);
    expect(s.measuredKBps('x', 50_000_000)).toBe(1000);
    expect(s.measuredKBps('x', 0)).toBe(1);
  });
});

describe('compressed serving', () => {
  it('prefers br, then gzip, honours q=0', () => {
    expect(chooseEncoding('gzip, deflate, br')).toBe('br');
    expect(chooseEncoding('gzip')).toBe('gzip');
    expect(chooseEncoding('br;q=0, gzip')).toBe('gzip');
    expect(chooseEncoding(undefined)).toBe('identity');
  });
});

describe('authority keys', () => {
  it('keygen makes an identity and a certified signing key; run loads them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-keygen-'));
    try {
      const k = await authorityKeygen(dir, { certDays: 1 });
      expect(k.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(k.createdIdentity).toBe(true);
      expect(fs.statSync(path.join(dir, 'identity.key')).mode & 0o077).toBe(0);
      const s = await loadAuthoritySigner(dir);
      expect(s.identity.toString('hex')).toBe(k.fingerprint);
      // A renewal keeps the identity and replaces the signing key.
      const k2 = await authorityKeygen(dir, { certDays: 1 });
      expect(k2.fingerprint).toBe(k.fingerprint);
      expect(k2.createdIdentity).toBe(false);
      const s2 = await loadAuthoritySigner(dir);
      expect(s2.signingKey.publicKey.equals(s.signingKey.publicKey)).toBe(false);
      // Expired certificate: refused with a hint.
      await expect(loadAuthoritySigner(dir, Date.now() + 2 * 86_400_000)).rejects.toMatchObject({ code: 'KEY_CERT_INVALID' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reachability of a relay that moves (SPEC.md §6.9)', () => {
  it('a test of the old address does not make the new address reachable; the new one is tested', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-dirauth-move-'));
    try {
      const now = epochStart(E) + 5000;
      // Each test waits until the test releases it.
      const tests: { address: string; release: (r: ReachabilityResult) => void }[] = [];
      const { authority } = soloAuthority(dir, makeSigner(), {
        now: () => now,
        reachabilityTest: (d) => new Promise((resolve) => { tests.push({ address: d.address, release: resolve }); }),
      }, {}, 'dirauth-move');
      const key = ed25519Generate();
      const onionKey = x25519Generate().publicKey;
      const desc = (address: string, published: number): Buffer => buildDescriptor({
        identity: key, onionKey, nickname: 'mover', address, orPort: 9001, declaredBandwidth: 1_000_000,
        roles: ['relay'], version: 'bitcloud-0.1.0', published, lifetimeMs: 86_400_000,
      });
      authority.acceptDescriptor(desc('10.0.0.1', now - 2000));
      await new Promise((r) => setImmediate(r));
      expect(tests.map((t) => t.address)).toEqual(['10.0.0.1']);
      // The relay moves while its test at the old address is still running.
      expect(authority.acceptDescriptor(desc('10.0.0.2', now - 1000)).result).toBe('updated');
      tests[0].release({ ok: true });
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      const fpRelay = key.publicKey.toString('hex');
      const rec = authority.store.get(fpRelay);
      expect(rec?.reachable).toBe(false);
      expect(tests.map((t) => t.address)).toEqual(['10.0.0.1', '10.0.0.2']);
      tests[1].release({ ok: true });
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      expect(authority.store.get(fpRelay)?.reachable).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('relays per address in a vote (SPEC.md §6.5, Tor\'s AuthDirMaxServersPerAddr)', () => {
  const K = E + 2;
  let fx: Fixture;
  beforeEach(() => { fx = makeFixture(); });
  afterEach(() => { fx.cleanup(); });
  const listOf = (s: Signer) => parseAuthorityList([{ name: 'a', identity: s.identity.toString('hex'), address: '127.0.0.1:1' }]);

  it('a public network lists at most two relays per address: the highest measured', async () => {
    fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1;
    const shared = [1, 2, 3, 4].map((i) => makeRelay(10 + i, { address: '93.184.216.34', bw: i * 100_000 }));
    const alone = makeRelay(20, { address: '93.184.216.35', bw: 50_000 });
    const { authority, registry } = fx.makeAuthority({ testNetwork: false, probe: { enabled: false } });
    for (const r of [...shared, alone]) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    authority.start();
    try {
      const v = verifyVote(authority.currentVote!.raw, listOf(fx.signer), { periodStart: epochStart(K), periodSeconds: P });
      expect(v.entries.map((e) => e.descriptor.fingerprint).sort()).toEqual([shared[3].fp, shared[2].fp, alone.fp].sort());
      const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'bitcloud_dirauth_vote_relays_over_address_limit_total');
      expect(m?.values[0]?.value).toBe(2);
    } finally {
      await authority.stop();
    }
  });

  it('maxRelaysPerAddress sets the limit; a test network has none by default', async () => {
    expect(parseAuthorityConfig(good(), '/').maxRelaysPerAddress).toBe(2);
    expect(parseAuthorityConfig({ ...good(), testNetwork: true }, '/').maxRelaysPerAddress).toBe(0);
    expect(parseAuthorityConfig({ ...good(), maxRelaysPerAddress: 5 }, '/').maxRelaysPerAddress).toBe(5);
    expect(message(() => parseAuthorityConfig({ ...good(), maxRelaysPerAddress: -1 }, '/'))).toMatch(/maxRelaysPerAddress/);
    fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1;
    const shared = [1, 2, 3].map((i) => makeRelay(10 + i, { address: '10.1.2.3' }));
    const { authority } = fx.makeAuthority();
    for (const r of shared) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    authority.start();
    try {
      expect(verifyVote(authority.currentVote!.raw, listOf(fx.signer), { periodStart: epochStart(K), periodSeconds: P }).entries).toHaveLength(3);
    } finally {
      await authority.stop();
    }
  });
});

describe('one vote and one consensus body per period, across a restart (SPEC.md §6.5, §6.8)', () => {
  const K = E + 2;
  const listOf = (s: Signer) => parseAuthorityList([{ name: 'a', identity: s.identity.toString('hex'), address: '127.0.0.1:1' }]);
  const metricValue = async (registry: ReturnType<typeof createRegistry>, name: string, labels: Record<string, string>): Promise<number> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    const v = (m?.values as { labels: Record<string, string>; value: number }[] | undefined)?.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
    return v?.value ?? 0;
  };
  let fx: Fixture;
  beforeEach(() => { fx = makeFixture(); });
  afterEach(() => { fx.cleanup(); });
  /** An authority listed with `other`, whose vote server answers every vote fetch with `vote`; the paths asked are kept. */
  const withOtherServingVote = async (other: Signer, vote: Buffer) => {
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      if (req.url?.startsWith(PATHS.vote)) { res.writeHead(200, { 'content-length': vote.length }); res.end(vote); return; }
      res.writeHead(404); res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const self = fx.signer.identity.toString('hex');
    const { authority, registry } = fx.makeAuthority({ authorities: [{ name: 'a', identity: self, address: '127.0.0.1:1' }, { name: 'b', identity: other.identity.toString('hex'), address: `127.0.0.1:${port}` }] });
    return { asked, server, self, authority, registry };
  };

  it('a restarted authority serves the vote it signed for the period, not a new one with other relays', async () => {
    fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1; // votes at once, before the compute step
    const first = fx.makeAuthority().authority;
    for (const r of fx.relays.slice(0, 2)) { first.acceptDescriptor(r.descriptor.raw); first.store.recordTest(r.descriptor, true, fx.clock.now); }
    first.start();
    const signed = Buffer.from(first.currentVote!.raw);
    await first.stop();
    expect(verifyVote(signed, listOf(fx.signer), { periodStart: epochStart(K), periodSeconds: P }).entries).toHaveLength(2);

    // The restart: a third relay is reachable now, so a vote made afresh would list three.
    fx.clock.now += 1000;
    const { authority: again, registry } = fx.makeAuthority();
    for (const r of fx.relays) { again.acceptDescriptor(r.descriptor.raw); again.store.recordTest(r.descriptor, true, fx.clock.now); }
    again.start();
    try {
      expect(again.currentVote?.raw.equals(signed)).toBe(true);
      expect(await metricValue(registry, 'bitcloud_dirauth_votes_total', { result: 'own_restored' })).toBe(1);
    } finally {
      await again.stop();
    }
  });

  it('an own vote over its entry bound leaves out the lowest measured relay (equal: the lowest identity), counts it, and verifies (SPEC.md §6.5 Bounds)', async () => {
    fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1;
    const { authority, registry } = fx.makeAuthority({}, { voteBounds: { entries: 2, bytes: LIMITS.voteBytes } });
    for (const r of fx.relays) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    authority.start();
    try {
      const v = verifyVote(authority.currentVote!.raw, listOf(fx.signer), { periodStart: epochStart(K), periodSeconds: P });
      // The three relays declare the same bandwidth, so measure alike: the lowest identity goes.
      const ids = fx.relays.map((r) => r.descriptor.fingerprint).sort();
      expect(v.entries.map((e) => e.descriptor.fingerprint).sort()).toEqual(ids.slice(1));
      // The vote this authority counts itself is the one it serves.
      expect(authority['ownVote']!.entries.map((e) => e.descriptor.fingerprint).sort()).toEqual(ids.slice(1));
      expect(await metricValue(registry, 'bitcloud_dirauth_vote_relays_left_out_total', {})).toBe(1);
    } finally {
      await authority.stop();
    }
  });

  it('a restarted authority does not sign a consensus body other than the one it signed for the period', async () => {
    fx.clock.now = epochStart(K) + (P * 1000) / 2 + 1; // vote and compute at once (N = 1)
    new SignedPeriods(fx.dir).record('consensus', epochStart(K), Buffer.alloc(32, 7));
    const { authority, registry } = fx.makeAuthority();
    for (const r of fx.relays) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    authority.start();
    try {
      expect(authority.currentVote).not.toBeNull();
      expect(authority.detachedSignatures()).toBeNull();
      expect(authority.published).toBeNull();
      expect(await metricValue(registry, 'bitcloud_dirauth_second_body_refused_total', { document: 'consensus' })).toBe(1);
    } finally {
      await authority.stop();
    }
  });

  it('signs and records the consensus of a period not yet signed', async () => {
    fx.clock.now = epochStart(K) + (P * 1000) / 2 + 1;
    const { authority } = fx.makeAuthority();
    for (const r of fx.relays) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    authority.start();
    try {
      expect(authority.published).not.toBeNull();
      const rec = new SignedPeriods(fx.dir);
      rec.load();
      expect(rec.signed('consensus', epochStart(K))).toBe(authority.published!.info.digest.toString('hex'));
      expect(rec.signed('vote', epochStart(K))).not.toBeNull();
      // The published consensus is saved in the background: let it land before the folder goes.
      await until(() => fs.existsSync(path.join(fx.dir, 'consensus')), 'the published consensus is saved');
    } finally {
      await authority.stop();
    }
  });

  it('a restarted authority whose signed vote is not kept makes no vote, yet signs the consensus of the others\' votes', async () => {
    const K2 = epochStart(K);
    fx.clock.now = K2 + (P * 1000) / 2 + 1; // vote, fetch and compute at once
    // A different vote was signed for this period before the restart; own-vote.bin is gone.
    new SignedPeriods(fx.dir).record('vote', K2, Buffer.alloc(32, 9));
    const other = makeSigner();
    const theirs = buildVote(other, K2, P, KNOWN_FLAGS, fx.relays.map((r) => ({ descriptorRaw: r.descriptor.raw, identity: r.descriptor.identity, flags: FLAG_BITS.Running | FLAG_BITS.Valid, measured: 500 })));
    const { asked, server, authority, registry } = await withOtherServingVote(other, theirs);
    for (const r of fx.relays) { authority.acceptDescriptor(r.descriptor.raw); authority.store.recordTest(r.descriptor, true, fx.clock.now); }
    try {
      authority.start(); // no vote; fetching the other's starts
      const state = authority as unknown as { votesFetchedFor: number; tick(): void };
      await until(() => state.votesFetchedFor === K2, 'the other authority\'s vote is fetched');
      state.tick(); // computes and signs
      expect(authority.currentVote).toBeNull();
      expect(authority.votesHeld).toEqual([other.identity.toString('hex')]);
      expect(await metricValue(registry, 'bitcloud_dirauth_second_body_refused_total', { document: 'vote' })).toBe(1);
      expect(authority.detachedSignatures()).not.toBeNull();
      const rec = new SignedPeriods(fx.dir);
      rec.load();
      expect(rec.signed('consensus', K2)).not.toBeNull();
      expect(rec.signed('vote', K2)).toBe(Buffer.alloc(32, 9).toString('hex'));
      expect(asked.every((u) => !u.startsWith(PATHS.vote) || u.includes(`period=${K2}`))).toBe(true);
    } finally {
      await authority.stop();
      await new Promise((r) => server.close(r));
    }
  });

  it('a malformed vote an authority signed is refused once and not fetched again that period (SPEC.md §6.5)', async () => {
    const K2 = epochStart(K);
    fx.clock.now = K2 + (P * 1000) / 4 + 1; // vote and start fetching at once
    const other = makeSigner();
    // Signed by the other authority, but measuring an epoch no vote for this period measures.
    const bad = buildVote(other, K2, P, KNOWN_FLAGS, fx.relays.map((r) => ({ descriptorRaw: r.descriptor.raw, identity: r.descriptor.identity, flags: FLAG_BITS.Running | FLAG_BITS.Valid, measured: 500, proven: 1 })), E - 1);
    const { asked, server, self, authority, registry } = await withOtherServingVote(other, bad);
    const state = authority as unknown as { votesFetchedFor: number; fetchingVotes: boolean; tick(): void };
    try {
      authority.start();
      await until(() => state.votesFetchedFor === K2, 'the other authority\'s vote is fetched');
      expect(await metricValue(registry, 'bitcloud_dirauth_votes_total', { result: 'VOTE_MALFORMED' })).toBe(1);
      // Later ticks of the fetch window (P/4 … P/2) do not fetch and verify it again.
      for (let i = 0; i < 3; i++) {
        fx.clock.now += 1000;
        state.tick();
        await until(() => !state.fetchingVotes, 'the fetch pass ends');
      }
      expect(asked.filter((u) => u.startsWith(PATHS.vote))).toHaveLength(1);
      expect(authority.votesHeld).toEqual([self]);
    } finally {
      await authority.stop();
      await new Promise((r) => server.close(r));
    }
  });

  it('a period signed with the clock set back far is kept with the highest ones, across a reload', () => {
    const rec = new SignedPeriods(fx.dir);
    for (let p = 1000; p < 1008; p++) rec.record('vote', p, Buffer.alloc(32, p & 0xff));
    rec.record('vote', 5, Buffer.alloc(32, 5)); // the clock set back more than 8 periods
    const again = new SignedPeriods(fx.dir);
    again.load();
    expect(again.signed('vote', 5)).toBe(Buffer.alloc(32, 5).toString('hex'));
    for (let p = 1000; p < 1008; p++) expect(again.signed('vote', p)).not.toBeNull();
    // Eight more at the set-back clock: the eight highest stay, and the eight just recorded.
    for (let p = 6; p < 14; p++) again.record('vote', p, Buffer.alloc(32, p));
    const third = new SignedPeriods(fx.dir);
    third.load();
    expect(third.signed('vote', 5)).toBeNull();
    for (const p of [6, 13, 1000, 1007]) expect(third.signed('vote', p)).not.toBeNull();
  });

  it('a damaged record is IO_STATE_UNREADABLE and the authority does not start', () => {
    fs.writeFileSync(path.join(fx.dir, SIGNED_PERIODS_FILE), '{"version":1,"vote":[{"period":1}]');
    const { authority } = fx.makeAuthority();
    expect(() => authority.start()).toThrow(expect.objectContaining({ code: 'IO_STATE_UNREADABLE' }));
    fs.writeFileSync(path.join(fx.dir, SIGNED_PERIODS_FILE), '{"version":1,"vote":[{"period":1,"digest":"zz"}],"consensus":[]}');
    expect(() => fx.makeAuthority().authority.start()).toThrow(expect.objectContaining({ code: 'IO_STATE_UNREADABLE' }));
  });
});

describe('the schedule never leaves a failed step unhandled (SPEC.md §6.8)', () => {
  let fx: Fixture;
  beforeEach(() => { fx = makeFixture(); });
  afterEach(() => { vi.restoreAllMocks(); fx.cleanup(); });

  it('a signature fetch pass that rejects is logged at warn and counted, not an unhandled rejection', async () => {
    const other = makeSigner().identity.toString('hex');
    const self = fx.signer.identity.toString('hex');
    fx.clock.now = epochStart(E + 2) + (P * 1000) / 2 + 1;
    // N = 2: the other authority is never reachable, so the round stays incomplete.
    const { authority, registry } = fx.makeAuthority({ authorities: [{ name: 'a', identity: self, address: '127.0.0.1:1' }, { name: 'b', identity: other, address: '127.0.0.1:1' }] });
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => { unhandled.push(e); };
    process.on('unhandledRejection', onUnhandled);
    const warn = vi.spyOn(silentLog, 'warn');
    const realFetchMissing = SigningRound.prototype.fetchMissing;
    try {
      const tick = (): void => (authority as unknown as { tick(): void }).tick();
      tick(); // own vote; fetching the other's starts
      const state = authority as unknown as { votesFetchedFor: number };
      await until(() => state.votesFetchedFor === epochStart(E + 2), 'the other authority\'s vote is fetched');
      expect(state.votesFetchedFor).toBe(epochStart(E + 2));
      // Replaced by hand: a vi.fn() would itself attach a handler to the promise it returns.
      let calls = 0;
      SigningRound.prototype.fetchMissing = function fetchMissing(): Promise<void> { calls++; return Promise.reject(new Error('boom')); };
      tick(); // computes, signs, and asks for the missing signature
      expect(calls).toBe(1);
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
      expect(unhandled).toEqual([]);
      expect(warn).toHaveBeenCalledWith(expect.objectContaining({ err: 'boom' }), expect.stringMatching(/signature/));
      const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'bitcloud_dirauth_errors_total');
      expect((m?.values as { labels: Record<string, string>; value: number }[]).find((v) => v.labels.code === 'INTERNAL')?.value).toBe(1);
    } finally {
      SigningRound.prototype.fetchMissing = realFetchMissing;
      process.off('unhandledRejection', onUnhandled);
      await authority.stop();
    }
  });
});
