// Moderation with real processes on 127.0.0.1: one authority (short period), four relays, seven
// storage nodes (`bitcloud-storage run`) — three subscribed to moderator M (who allows
// public-video), one to moderator P (encrypted-private only), two unmoderated, one subscribed to
// moderator Q (public-music only: the one node that admits that class) and one subscribed to
// publisher T in allow-only mode for public-lecture — and the `bitcloud` CLI (moderator, put, get,
// consensus) as child processes. One network for the whole file. SPEC.md §10.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { loadEd25519Secret } from '../../src/crypto/keys';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { parseAuthorityList } from '../../src/dir/authorities';
import type { VerifiedConsensus } from '../../src/dir/types';
import { formatCapability, parseCapability } from '../../src/storage/capability';
import { connectStorageDirect } from '../../src/storage/direct';
import { StorageChannel } from '../../src/storage/channel';
import { shareId } from '../../src/storage/share';
import { decodeBundle, encodeBundle } from '../../src/moderation/chain';
import { publishPolicyVia } from '../../src/moderation/dht';
import { PUBLIC_CONTENT_KEY } from '../../src/moderation/policy';
import { selectNodesForClass } from '../../src/moderation/placement';
import { authoritySource } from '../../src/moderation/sources';
import { openStorageSession } from '../../src/client/storage-client-setup';
import { putFile } from '../../src/client/storage-client-put';
import { getFile } from '../../src/client/storage-client-get';
import { openCircuitDht } from '../helpers/circuit-dht';
import { eventually, freePorts, runCli, startDaemon, waitForPort, type Daemon } from '../helpers/daemon';
import { makeDirNet, makeRelay, startAuthority, startRelay, storageNetReady, tearDownDirNet, writeClientConfig, type DirNet } from '../helpers/dirnet';

const PERIOD = 4;
const REFRESH_SECONDS = 2;

interface Node { name: string; dataDir: string; storagePort: number; daemon: Daemon; fingerprint: string; identity: Buffer }
interface Mod { dir: string; fp: string }

let dnet: DirNet;
let authUrl: string;
let clientConfig: string;
let M: Mod;
let P: Mod;
let Q: Mod;
let T: Mod;
const nodes: Node[] = [];
const subscribedToM = () => nodes.slice(0, 3);
const others = () => nodes.slice(3, 6);
/** The only node that admits public-music (subscribed to Q). */
const musicNode = () => nodes[6];
/** Subscribed to T, storing public-lecture only when T approved it. */
const lectureNode = () => nodes[7];

const cli = (args: string[], timeoutMs = 180_000) => runCli('bitcloud', args, { timeoutMs });
const lastJson = (r: { stdout: string }) => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function consensus(): Promise<VerifiedConsensus | null> {
  const auths = parseAuthorityList(dnet.authorityList);
  return (await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 })).consensus;
}

async function moderator(name: string, classes: string[], disallow: string[] = []): Promise<Mod> {
  const dir = path.join(dnet.dir, name);
  const k = await cli(['moderator', 'keygen', '--data-dir', dir, '--name', name, '--json']);
  expect(k.code, k.stderr + k.stdout).toBe(0);
  for (const c of classes) {
    const r = await cli(['moderator', 'allow', c, '--data-dir', dir, '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1); // one JSON document on one line
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, class: c, allowed: true, published: false });
  }
  for (const c of disallow) expect((await cli(['moderator', 'disallow', c, '--data-dir', dir])).code).toBe(0);
  const p = await cli(['moderator', 'publish', '--data-dir', dir, '--authority', authUrl, '--skip-dht', '--json']);
  expect(p.code, p.stderr + p.stdout).toBe(0);
  return { dir, fp: lastJson(k).moderator };
}

async function startStorageNode(i: number, moderation: Record<string, unknown>): Promise<Node> {
  const name = `store${i + 1}`;
  const [orPort, storagePort] = await freePorts(2);
  const dataDir = path.join(dnet.dir, name);
  const configFile = path.join(dnet.dir, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify({
    dataDir, nickname: name, address: '127.0.0.1', orPort, storagePort, quota: '256MiB', bandwidth: 100_000, // below the relays: they stay Guards
    authorities: dnet.authorityList, publishIntervalSeconds: PERIOD, descriptorLifetimeSeconds: 3600,
    announceIntervalSeconds: 10, policyRefreshSeconds: REFRESH_SECONDS, identityPow: 'local', ...moderation,
  }, null, 2));
  const daemon = startDaemon('bitcloud-storage', ['run', '--config', configFile]);
  const up = await daemon.waitForMsg('storage node listening', {}, 60_000);
  const fingerprint = String(up.json!.identity);
  return { name, dataDir, storagePort, daemon, fingerprint, identity: Buffer.from(fingerprint, 'hex') };
}

async function channelTo(n: Node): Promise<StorageChannel> {
  return new StorageChannel(await connectStorageDirect({ host: '127.0.0.1', port: n.storagePort, expectedIdentity: n.identity }));
}

/** The code a direct GET of `id` from node `n` ends with ('OK' when it is served). */
async function getCode(n: Node, id: Buffer): Promise<{ code: string; message: string }> {
  const ch = await channelTo(n);
  try {
    await ch.request({ type: 'get', id, offset: 0, length: 0 });
    return { code: 'OK', message: '' };
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  } finally {
    ch.close();
  }
}

async function shareCount(n: Node): Promise<number> {
  let count = 0;
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(path.join(d, e.name)); else if (!e.name.startsWith('.')) count++;
    }
  };
  await walk(path.join(n.dataDir, 'shares'));
  return count;
}

beforeAll(async () => {
  // Every daemon uploads from 127.0.0.1: lift the per-address limit so descriptors are never refused.
  dnet = await makeDirNet(1, PERIOD, { rateLimit: { uploadsPerMinute: 100_000, burst: 10_000 } });
  startAuthority(dnet.authorities[0]);
  authUrl = `http://127.0.0.1:${dnet.authorities[0].port}`;
  await waitForPort(dnet.authorities[0].port);
  for (let i = 0; i < 4; i++) startRelay(await makeRelay(dnet, `relay${i + 1}`, { publishIntervalSeconds: PERIOD }));
  // The moderators publish before the nodes start: their first refresh finds the policies.
  M = await moderator('modM', ['public-video']);
  P = await moderator('modP', []);
  Q = await moderator('modQ', ['public-music'], ['encrypted-private']);
  T = await moderator('pubT', ['public-lecture'], ['encrypted-private']);
  for (let i = 0; i < 3; i++) nodes.push(await startStorageNode(i, { moderators: [M.fp] }));
  nodes.push(await startStorageNode(3, { moderators: [P.fp] }));
  for (let i = 4; i < 6; i++) nodes.push(await startStorageNode(i, { unmoderated: true }));
  nodes.push(await startStorageNode(6, { moderators: [Q.fp] }));
  nodes.push(await startStorageNode(7, { moderators: [T.fp], approvedOnly: ['public-lecture'] }));
  clientConfig = writeClientConfig(dnet, 'client', { enforceDistinctSubnets: false }).configFile;
  for (const n of [...nodes.slice(0, 4), musicNode(), lectureNode()]) await n.daemon.waitForMsg('policy updated', {}, 60_000);
  await eventually(async () => storageNetReady(await consensus(), 8), 150_000, 1000);
}, 240_000);

afterAll(() => tearDownDirNet(dnet), 60_000);

describe('subscriptions are public (SPEC.md §10.6)', () => {
  it('the consensus, `bitcloud consensus` and the status page list each node\'s moderators', async () => {
    const r = await cli(['consensus', '--json', '--config', clientConfig]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1); // one JSON document on one line
    const relays = JSON.parse(r.stdout).relays;
    const by = (name: string) => relays.find((x: { nickname: string }) => x.nickname === name);
    for (const n of subscribedToM()) expect(by(n.name)).toMatchObject({ moderators: [M.fp], unmoderated: false });
    expect(by('store4')).toMatchObject({ moderators: [P.fp], unmoderated: false });
    expect(by('store5')).toMatchObject({ moderators: [], unmoderated: true });
    const text = await cli(['consensus', '--config', clientConfig]);
    expect(text.stdout).toMatch(/store5 .*unmoderated/);
    expect(text.stdout).toContain(M.fp.slice(0, 16));
    const page = await (await fetch(`${authUrl}/`)).text();
    expect(page).toContain('unmoderated');
    expect(page).toContain(M.fp.slice(0, 16));
  }, 300_000);
});

describe('unmoderated nodes (SPEC.md §10.6)', () => {
  it('refuse a direct PUT with UNMODERATED_CIRCUIT_ONLY; a moderated node takes it', async () => {
    const data = randomBytes(4096);
    const ch = await channelTo(nodes[4]);
    await expect(ch.request({ type: 'put', id: shareId(data), data, leaseSeconds: 0 })).rejects.toMatchObject({ code: 'UNMODERATED_CIRCUIT_ONLY' });
    ch.close();
    expect((await getCode(nodes[4], shareId(data))).code).toBe('SHARE_NOT_FOUND');
    const ok = await channelTo(nodes[0]);
    await expect(ok.request({ type: 'put', id: shareId(data), data, leaseSeconds: 0 })).resolves.toMatchObject({ type: 'put' });
    ok.close();
  }, 60_000);
});

describe('content classes (SPEC.md §10.1, §10.8)', () => {
  it('an upload of class public-video lands only on nodes whose moderators allow it, readable with the public key', async () => {
    const file = path.join(dnet.dir, 'video.bin');
    fs.writeFileSync(file, randomBytes(300_000));
    const before = await Promise.all(nodes.map(shareCount));
    const r = await cli(['put', file, '--class', 'public-video', '--k', '2', '--n', '3', '--json', '--config', clientConfig]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const cap = parseCapability(lastJson(r).capability);
    expect(cap.fileKey.equals(PUBLIC_CONTENT_KEY)).toBe(true);
    const after = await Promise.all(nodes.map(shareCount));
    for (let i = 0; i < 3; i++) expect(after[i]).toBeGreaterThan(before[i]);
    for (let i = 3; i < nodes.length; i++) expect(after[i]).toBe(before[i]);
    const out = path.join(dnet.dir, 'video.out');
    const g = await cli(['get', lastJson(r).capability, '-o', out, '--json', '--config', clientConfig]);
    expect(g.code, g.stderr + g.stdout).toBe(0);
    expect(fs.readFileSync(out).equals(fs.readFileSync(file))).toBe(true);
  }, 240_000);

  it('too few nodes admitting the class: PLACEMENT_TOO_FEW_NODES naming it, nothing sent', async () => {
    const file = path.join(dnet.dir, 'video2.bin');
    fs.writeFileSync(file, randomBytes(10_000));
    const r = await cli(['put', file, '--class', 'public-video', '--k', '2', '--n', '4', '--json', '--config', clientConfig]);
    expect(r.code).toBe(1);
    const e = lastJson(r).error;
    expect(e.code).toBe('PLACEMENT_TOO_FEW_NODES');
    expect(e.message).toContain('public-video');
  }, 120_000);
});

describe('denylists (SPEC.md §10.3, §10.6)', () => {
  let cap: string;
  let manifestId: Buffer;
  let firstBundle: Buffer;

  it('a moderator denies a manifest: subscribed nodes refuse it (naming the moderator) after one refresh; the others still serve it', async () => {
    const file = path.join(dnet.dir, 'private.bin');
    fs.writeFileSync(file, randomBytes(200_000));
    const r = await cli(['put', file, '--json', '--config', clientConfig]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    cap = lastJson(r).capability;
    manifestId = parseCapability(cap).manifestId;
    for (const n of nodes.slice(0, 6)) expect((await getCode(n, manifestId)).code).toBe('OK'); // the root is on all six that admit encrypted-private
    expect((await getCode(musicNode(), manifestId)).code).toBe('SHARE_NOT_FOUND');

    firstBundle = fs.readFileSync(path.join(M.dir, 'published.bundle'));
    expect((await cli(['moderator', 'add-deny', cap, '--data-dir', M.dir])).code).toBe(0);
    const pub = await cli(['moderator', 'publish', '--data-dir', M.dir, '--authority', authUrl, '--skip-dht', '--json']);
    expect(pub.code, pub.stderr + pub.stdout).toBe(0);
    expect(lastJson(pub)).toMatchObject({ seq: 2, kind: 'delta' });
    // A newer version takes effect at the next refresh of every subscribed node.
    for (const n of subscribedToM()) await n.daemon.waitForMsg('policy updated', { seq: 2 }, 10 * REFRESH_SECONDS * 1000);
    for (const n of subscribedToM()) {
      const g = await getCode(n, manifestId);
      expect(g.code).toBe('POLICY_DENIED');
      expect(g.message).toContain(M.fp);
    }
    for (const n of others()) expect((await getCode(n, manifestId)).code).toBe('OK');
    // A reader still gets the file from the nodes that do not enforce M.
    const out = path.join(dnet.dir, 'private.out');
    const g = await cli(['get', cap, '-o', out, '--json', '--config', clientConfig]);
    expect(g.code, g.stderr + g.stdout).toBe(0);
    expect(fs.readFileSync(out).equals(fs.readFileSync(file))).toBe(true);
  }, 240_000);

  it('a replayed older policy and a forged one are ignored, each with a log line', async () => {
    const key = await loadEd25519Secret(path.join(M.dir, 'moderator.key'));
    // The attacker is no DHT member (SPEC.md §9.14 Members only): it puts through a storage node over
    // circuits (§9.14.1). That node stores any validly signed item; the policy checks are the readers'.
    const dht = await openCircuitDht(clientConfig);
    try {
      // Replay: version 1 under a DHT head with a higher BEP 44 seq (only the moderator key can sign heads).
      await publishPolicyVia(dht.putter, key, firstBundle, 100);
      for (const n of subscribedToM()) await n.daemon.waitForMsg('policy refused', { code: 'POLICY_REPLAYED', source: 'dht' }, 60_000);
      // Forged: the current chain with one byte of the newest version's signature changed.
      const envs = decodeBundle(fs.readFileSync(path.join(M.dir, 'published.bundle')));
      const last = Buffer.from(envs[envs.length - 1]);
      last[last.length - 10] ^= 0x01;
      await publishPolicyVia(dht.putter, key, encodeBundle([...envs.slice(0, -1), last]), 101);
      for (const n of subscribedToM()) await n.daemon.waitForMsg('policy refused', { code: 'POLICY_BAD_SIGNATURE', source: 'dht' }, 60_000);
    } finally {
      await dht.close();
    }
    for (const n of subscribedToM()) {
      expect((await getCode(n, manifestId)).code).toBe('POLICY_DENIED'); // still version 2
      expect(n.daemon.logs.some((l) => l.json?.msg === 'policy updated' && Number(l.json.seq) !== 1 && Number(l.json.seq) !== 2)).toBe(false);
    }
  }, 180_000);
});

describe('a class only one node admits (SPEC.md §9.9, §10.8)', () => {
  it('public content placed on the only node that admits its class reads back every time (20 files)', async () => {
    const sources = [authoritySource(authUrl)];
    const before = await Promise.all(nodes.map(shareCount));
    // Upload as `bitcloud put --class public-music --k 1 --n 1` does (placement over the nodes
    // admitting the class), direct for speed; read with a client over every storage node.
    const up = await openStorageSession({
      config: clientConfig, direct: true, contentClass: 'public-music',
      selectNodes: (ns) => selectNodesForClass(ns, 'public-music', 1, sources),
    });
    const files: { cap: ReturnType<typeof parseCapability>; bytes: Buffer }[] = [];
    try {
      expect(up.client.fingerprints).toEqual([musicNode().fingerprint]);
      for (let i = 0; i < 20; i++) {
        const f = path.join(dnet.dir, `song${i}.bin`);
        const bytes = randomBytes(3000 + 97 * i);
        fs.writeFileSync(f, bytes);
        const r = await putFile(up.client, f, { coding: { k: 1, n: 1 }, contentClass: 'public-music' });
        files.push({ cap: parseCapability(r.capability), bytes });
      }
    } finally {
      await up.close();
    }
    const after = await Promise.all(nodes.map(shareCount));
    for (const i of [0, 1, 2, 3, 4, 5, 7]) expect(after[i]).toBe(before[i]);
    expect(after[6]).toBe(before[6] + 20 * 4); // root, verify record (SPEC.md §9.18), manifest share, data share of each
    const down = await openStorageSession({ config: clientConfig, direct: true });
    try {
      expect(down.client.fingerprints).toHaveLength(8);
      for (const [i, f] of files.entries()) {
        const r = await getFile(down.client, f.cap, { output: path.join(dnet.dir, `song${i}.out`) });
        expect(fs.readFileSync(r.path).equals(f.bytes)).toBe(true);
      }
    } finally {
      await down.close();
    }
    // And with the CLI, over circuits.
    for (const [i, f] of files.slice(0, 2).entries()) {
      const out = path.join(dnet.dir, `song${i}.cli`);
      const g = await cli(['get', formatCapability(f.cap), '-o', out, '--json', '--config', clientConfig]);
      expect(g.code, g.stderr + g.stdout).toBe(0);
      expect(fs.readFileSync(out).equals(f.bytes)).toBe(true);
    }
  }, 300_000);
});

describe('deny by content (SPEC.md §10.3)', () => {
  it('a denied file stored again under another name is refused by the subscribed node', async () => {
    const file = path.join(dnet.dir, 'anthem.bin');
    const bytes = randomBytes(40_000);
    fs.writeFileSync(file, bytes);
    const r = await cli(['put', file, '--class', 'public-music', '--k', '1', '--n', '1', '--json', '--config', clientConfig]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const cap = lastJson(r).capability as string;

    const ids = await cli(['moderator', 'content-ids', cap, '--data-dir', Q.dir, '--config', clientConfig, '--json']);
    expect(ids.code, ids.stderr + ids.stdout).toBe(0);
    expect(ids.stdout.trim().split('\n')).toHaveLength(1);
    const view = lastJson(ids);
    expect(view).toMatchObject({ ok: true, manifestId: parseCapability(cap).manifestId.toString('hex'), contentClass: 'public-music', coding: { k: 1, n: 1 } });
    expect(view.dataShares).toHaveLength(1);
    expect(view.manifestShares).toHaveLength(2); // the manifest's share and the verify record (SPEC.md §9.18)

    const d = await cli(['moderator', 'deny-content', cap, '--data-dir', Q.dir, '--config', clientConfig, '--json']);
    expect(d.code, d.stderr + d.stdout).toBe(0);
    expect(lastJson(d)).toMatchObject({ ok: true, added: 4, ids: 4, dataShares: 1 });
    // The working policy and the published list hold double hashes only, never the ids.
    const working = fs.readFileSync(path.join(Q.dir, 'policy.json'), 'utf8');
    for (const id of [view.manifestId, ...view.dataShares]) expect(working).not.toContain(id);
    const pub = await cli(['moderator', 'publish', '--data-dir', Q.dir, '--authority', authUrl, '--skip-dht', '--json']);
    expect(pub.code, pub.stderr + pub.stdout).toBe(0);
    await musicNode().daemon.waitForMsg('policy updated', { seq: 2 }, 10 * REFRESH_SECONDS * 1000);
    expect((await getCode(musicNode(), Buffer.from(view.dataShares[0], 'hex'))).code).toBe('POLICY_DENIED');

    // The same bytes under another name: another manifest id, the same data share.
    const renamed = path.join(dnet.dir, 'not-the-anthem.bin');
    fs.writeFileSync(renamed, bytes);
    const before = await shareCount(musicNode());
    const again = await cli(['put', renamed, '--class', 'public-music', '--k', '1', '--n', '1', '--json', '--config', clientConfig]);
    expect(again.code).toBe(1);
    expect(lastJson(again).error).toMatchObject({ code: 'STORAGE_PUT_FAILED' });
    expect(lastJson(again).error.message).toContain('POLICY_DENIED');
    expect(await shareCount(musicNode())).toBe(before);
    // Other content of the class is still taken.
    const other = path.join(dnet.dir, 'other-song.bin');
    fs.writeFileSync(other, randomBytes(40_000));
    const ok = await cli(['put', other, '--class', 'public-music', '--k', '1', '--n', '1', '--json', '--config', clientConfig]);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
  }, 240_000);
});

describe('approvals, tags and allow-only nodes (SPEC.md §10.3.2, §10.6)', () => {
  it('an allow-only node stores only what its publisher approved; readers list approved files by tag and read them', async () => {
    const file = path.join(dnet.dir, 'lecture.bin');
    const bytes = randomBytes(30_000);
    fs.writeFileSync(file, bytes);
    const putArgs = ['put', file, '--class', 'public-lecture', '-k', '1', '-n', '1', '--json', '--config', clientConfig];
    // Not approved yet: the only node admitting public-lecture refuses it.
    const refused = await cli(putArgs);
    expect(refused.code).toBe(1);
    expect(lastJson(refused).error.message).toContain('POLICY_NOT_APPROVED');
    expect(await shareCount(lectureNode())).toBe(0);

    // The publisher approves its file ahead of the upload, from the bytes, with two tags.
    const ap = await cli(['moderator', 'approve', '--file', file, '--class', 'public-lecture', '-k', '1', '-n', '1', '--tag', 'education', '--tag', 'physics', '--data-dir', T.dir, '--json']);
    expect(ap.code, ap.stderr + ap.stdout).toBe(0);
    expect(lastJson(ap)).toMatchObject({ ok: true, added: 1, tags: ['education', 'physics'] });
    const approvedCap = lastJson(ap).approved[0] as string;
    const pub = await cli(['moderator', 'publish', '--data-dir', T.dir, '--authority', authUrl, '--skip-dht', '--json']);
    expect(pub.code, pub.stderr + pub.stdout).toBe(0);
    await lectureNode().daemon.waitForMsg('policy updated', { seq: 2 }, 10 * REFRESH_SECONDS * 1000);

    const ok = await cli(putArgs);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(lastJson(ok).capability).toBe(approvedCap); // the ids the publisher computed are the ones stored
    expect(await shareCount(lectureNode())).toBe(4); // root, verify record, manifest share, data share
    // Other content of the class is still refused there.
    const other = path.join(dnet.dir, 'other-lecture.bin');
    fs.writeFileSync(other, randomBytes(30_000));
    const no = await cli(['put', other, '--class', 'public-lecture', '-k', '1', '-n', '1', '--json', '--config', clientConfig]);
    expect(no.code).toBe(1);
    expect(lastJson(no).error.message).toContain('POLICY_NOT_APPROVED');

    // A reader lists the publisher's approved files by tag (from the authorities, verified) and reads one.
    const list = await cli(['moderator', 'list', '--moderator', T.fp, '--tag', 'physics', '--config', clientConfig, '--json']);
    expect(list.code, list.stderr + list.stdout).toBe(0);
    expect(list.stdout.trim().split('\n')).toHaveLength(1);
    expect(lastJson(list)).toMatchObject({ ok: true, moderator: T.fp, seq: 2, tag: 'physics' });
    expect(lastJson(list).files).toEqual([{ capability: approvedCap, manifestId: parseCapability(approvedCap).manifestId.toString('hex'), contentClass: 'public-lecture', tags: ['education', 'physics'] }]);
    const none = await cli(['moderator', 'list', '--moderator', T.fp, '--tag', 'music', '--config', clientConfig, '--json']);
    expect(lastJson(none).files).toEqual([]);
    const out = path.join(dnet.dir, 'lecture.out');
    const g = await cli(['get', approvedCap, '-o', out, '--json', '--config', clientConfig]);
    expect(g.code, g.stderr + g.stdout).toBe(0);
    expect(fs.readFileSync(out).equals(bytes)).toBe(true);

    // Retag from the network (approve CAP reads the stored file), then withdraw: the list follows.
    const re = await cli(['moderator', 'approve', approvedCap, '--tag', 'music', '--data-dir', T.dir, '--config', clientConfig, '--json']);
    expect(re.code, re.stderr + re.stdout).toBe(0);
    expect(lastJson(re)).toMatchObject({ ok: true, added: 0 });
    expect((await cli(['moderator', 'publish', '--data-dir', T.dir, '--authority', authUrl, '--skip-dht'])).code).toBe(0);
    const music = await cli(['moderator', 'list', '--moderator', T.fp, '--tag', 'music', '--config', clientConfig, '--json']);
    expect(lastJson(music).files.map((f: { capability: string }) => f.capability)).toEqual([approvedCap]);
    expect((await cli(['moderator', 'unapprove', approvedCap, '--data-dir', T.dir])).code).toBe(0);
    expect((await cli(['moderator', 'publish', '--data-dir', T.dir, '--authority', authUrl, '--skip-dht'])).code).toBe(0);
    const gone = await cli(['moderator', 'list', '--moderator', T.fp, '--config', clientConfig, '--json']);
    expect(lastJson(gone)).toMatchObject({ seq: 4, files: [] });
  }, 300_000);
});
