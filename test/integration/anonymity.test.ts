// Anonymity of clients towards storage nodes (SPEC.md §9.14.1): real authority, relays and storage
// nodes; `bitcloud publish` / `resolve` run as child processes that must not open a single UDP
// socket. Two independent witnesses: (1) a preload hook that records every dgram.createSocket and
// Socket#bind in the client process (checked to work by a positive control), (2) sampling
// /proc/<pid>/fd while the command runs and matching its socket inodes against /proc/net/udp{,6}.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { eventually, freePorts, runCli, startDaemon } from '../helpers/daemon';
import { DGRAM_HOOK, watchedCommand, type Watched } from '../helpers/udp-watch';
import { makeDirNet, makeRelay, startAuthority, startRelay, storageNetReady, tearDownDirNet, writeClientConfig, type DirNet } from '../helpers/dirnet';
import { metric, scrape } from '../helpers/localnet';
import { DHT_SALT, decodeHead, splitBundle } from '../../src/moderation/dht';
import { parseModerator } from '../../src/moderation/policy';
import { openCircuitDht } from '../helpers/circuit-dht';

const PERIOD = 4;
const CAP_A = `bitcloud:${'a'.repeat(52)}#${'a'.repeat(52)}`;

let dnet: DirNet;
let clientConfig: string;
let hookFile: string;

/** Run a command with the dgram hook (test/helpers/udp-watch.ts). */
const watched = (bin: string, args: string[], logFile: string): Promise<Watched> => watchedCommand(hookFile, bin, args, logFile);

const json = (r: { stdout: string }) => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;

beforeAll(async () => {
  // A consensus lives 24 periods (96 s), not 3 (12 s): the cache the names test leaves must still be
  // valid when the guard test starts, or the client rightly bootstraps directly (SPEC.md §6.10.1).
  dnet = await makeDirNet(1, PERIOD, { consensusLifetimePeriods: 24 });
  hookFile = path.join(dnet.dir, 'dgram-hook.cjs');
  fs.writeFileSync(hookFile, DGRAM_HOOK);
  startAuthority(dnet.authorities[0]);
  for (let i = 0; i < 4; i++) startRelay(await makeRelay(dnet, `relay${i + 1}`, { publishIntervalSeconds: PERIOD }));
  for (let i = 0; i < 3; i++) {
    const name = `store${i + 1}`;
    const [orPort, storagePort] = await freePorts(2);
    const configFile = path.join(dnet.dir, `${name}.json`);
    fs.writeFileSync(configFile, JSON.stringify({
      dataDir: path.join(dnet.dir, name), nickname: name, address: '127.0.0.1', orPort, storagePort, quota: '64MiB', bandwidth: 100_000,
      authorities: dnet.authorityList, publishIntervalSeconds: PERIOD, descriptorLifetimeSeconds: 3600, announceIntervalSeconds: 5,
      identityPow: 'local', // SPEC.md §6.4.1: cheap proofs keep tests quick
    }));
    const d = startDaemon('bitcloud-storage', ['run', '--config', configFile]);
    await d.waitForMsg('storage node listening', {}, 60_000);
  }
  clientConfig = writeClientConfig(dnet, 'client', { enforceDistinctSubnets: false }).configFile;
  const auths = parseAuthorityList(dnet.authorityList);
  await eventually(async () => storageNetReady((await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 })).consensus, 3), 120_000, 1000);
}, 200_000);

afterAll(() => tearDownDirNet(dnet), 60_000);

describe('names over circuits (SPEC.md §9.14.1)', () => {
  it('the hook sees a UDP socket when one is made (positive control)', async () => {
    const logFile = path.join(dnet.dir, 'control.log');
    const script = path.join(dnet.dir, 'udp.mjs');
    fs.writeFileSync(script, "import dgram from 'node:dgram'; const s = dgram.createSocket('udp4'); s.bind(0, '127.0.0.1', () => setTimeout(() => s.close(), 200));\n");
    const r = await watched(script, [], logFile);
    expect(r.code).toBe(0);
    expect(r.hook).toMatch(/createSocket/);
    expect(r.hook).toMatch(/bind/);
  }, 30_000);

  it('a name is published and resolved with no UDP socket in the client process', async () => {
    const p = await watched('bitcloud', ['publish', 'site', CAP_A, '--json', '--config', clientConfig], path.join(dnet.dir, 'publish.log'));
    expect(p.code, p.stderr + p.stdout).toBe(0);
    const name = String(json(p).name);
    expect(name).toMatch(/^[a-z2-7]{52}\/site$/);
    expect(Number(json(p).nodes)).toBeGreaterThan(0);
    expect(p.hook).toBe('');
    expect(p.samples).toBeGreaterThan(0); // the sampler did see the process's (TCP) sockets
    expect(p.udpSeen).toBe(0);

    const r = await watched('bitcloud', ['resolve', name, '--json', '--config', clientConfig], path.join(dnet.dir, 'resolve.log'));
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(json(r).capability).toBe(CAP_A);
    expect(r.hook).toBe('');
    expect(r.udpSeen).toBe(0);

    // A second publication wins; a stale --seq is refused before anything is sent.
    const capB = `bitcloud:${'b'.repeat(51)}q#${'b'.repeat(51)}q`;
    const p2 = await watched('bitcloud', ['publish', 'site', capB, '--json', '--config', clientConfig], path.join(dnet.dir, 'publish2.log'));
    expect(p2.code, p2.stderr + p2.stdout).toBe(0);
    expect(Number(json(p2).seq)).toBeGreaterThan(Number(json(p).seq));
    const stale = await watched('bitcloud', ['publish', 'site', CAP_A, '--seq', String(json(p).seq), '--json', '--config', clientConfig], path.join(dnet.dir, 'stale.log'));
    expect(stale.code).toBe(1);
    expect((json(stale).error as { code: string }).code).toBe('DHT_SEQ_STALE');
    const r2 = await watched('bitcloud', ['resolve', name, '--json', '--config', clientConfig], path.join(dnet.dir, 'resolve2.log'));
    expect(json(r2).capability).toBe(capB);
    expect(r2.hook + p2.hook + stale.hook).toBe('');
  }, 240_000);
});

describe('moderator publish over circuits (SPEC.md §9.14.1, §10.7.2)', () => {
  it('`bitcloud moderator publish` stores the policy in the DHT with no UDP socket in its process', async () => {
    const modDir = path.join(dnet.dir, 'moderator');
    const k = await runCli('bitcloud', ['moderator', 'keygen', '--data-dir', modDir, '--name', 'anon', '--json']);
    expect(k.code, k.stderr + k.stdout).toBe(0);
    expect((await runCli('bitcloud', ['moderator', 'add-deny', 'aa'.repeat(32), '--data-dir', modDir, '--json'])).code).toBe(0);
    const p = await watched('bitcloud', ['moderator', 'publish', '--data-dir', modDir, '--config', clientConfig, '--json'], path.join(dnet.dir, 'modpub.log'));
    expect(p.code, p.stderr + p.stdout).toBe(0);
    const results = json(p).results as { target: string; ok: boolean; detail: string }[];
    const dht = results.find((r) => r.target === 'dht');
    expect(dht?.ok, JSON.stringify(results)).toBe(true);
    expect(p.hook).toBe('');
    expect(p.samples).toBeGreaterThan(0);
    expect(p.udpSeen).toBe(0);
    // The head is really in the DHT: a reader that is no DHT member (this test process, SPEC.md §9.14
    // Members only) gets it back with a DhtGet through a storage node over a circuit (§9.14.1), signed
    // by the moderator and naming exactly the published bundle (digest, length, part targets, §10.7.2).
    // §9.14.1 has no get of an immutable item: the parts are read by storage nodes, the members.
    const fp = String(json(p).moderator);
    const published = fs.readFileSync(path.join(modDir, 'published.bundle'));
    const reader = await openCircuitDht(clientConfig);
    try {
      const item = await eventually(() => reader.getSigned(parseModerator(fp), DHT_SALT), 60_000, 1000);
      expect(item.seq).toBe(Number(json(p).seq));
      const head = decodeHead(item.value);
      const want = splitBundle(published).head;
      expect(head.digest.equals(want.digest)).toBe(true);
      expect(head.length).toBe(published.length);
      expect(head.parts.map((t) => t.toString('hex'))).toEqual(want.parts.map((t) => t.toString('hex')));
    } finally {
      await reader.close();
    }
  }, 240_000);
});

describe('the directory through the guard (SPEC.md §6.10.1)', () => {
  // The authority counts direct consensus fetches by declared fetcher (on its MetricsPort); relays say "mirror",
  // storage nodes "node", this test process nothing ("other"). Only the client says "client".
  const clientFetches = async () => metric(await scrape(dnet.authorities[0].metricsPort), 'bitcloud_dirauth_consensus_fetches_total', { fetcher: 'client' });

  it('after bootstrap, `bitcloud consensus` and the proxy fetch only through their guard', async () => {
    // The names test above bootstrapped this client directly and sampled its guards (state.json).
    const before = await clientFetches();
    expect(before).toBeGreaterThan(0); // the bootstrap was direct, and counted
    const state = JSON.parse(fs.readFileSync(path.join(dnet.dir, 'client', 'state.json'), 'utf8')) as { guards: { sampled: unknown[] } };
    expect(state.guards.sampled.length).toBeGreaterThan(0);

    const c = await runCli('bitcloud', ['consensus', '--json', '--config', clientConfig], { timeoutMs: 120_000 });
    expect(c.code, c.stderr + c.stdout).toBe(0);
    expect((JSON.parse(c.stdout) as { source: string }).source).toMatch(/^(guard|cache)$/);
    expect(c.stderr).not.toMatch(/refused consensus from guard/);
    expect(c.stderr).not.toMatch(/no source gave a valid consensus/);
    expect(await clientFetches()).toBe(before);

    const [socksPort] = await freePorts(1);
    const proxyConfig = path.join(dnet.dir, 'proxy.json');
    fs.writeFileSync(proxyConfig, JSON.stringify({ ...JSON.parse(fs.readFileSync(clientConfig, 'utf8')) as object, socksPort, preemptiveCircuits: 0 }));
    const proxy = startDaemon('bitcloud', ['proxy', '--config', proxyConfig, '--log-level', 'info']);
    // A new consensus every PERIOD seconds: the proxy's refreshes bring newer ones, through a guard.
    const viaGuard = () => proxy.logs.filter((l) => l.json?.msg === 'new consensus' && l.json.via === 'guard').length;
    await proxy.waitFor(() => viaGuard() >= 2, 120_000);
    expect(proxy.logs.filter((l) => l.json?.msg === 'new consensus' && l.json.via === 'direct')).toHaveLength(0);
    expect(await clientFetches()).toBe(before);
    await proxy.stop();
  }, 300_000);
});
