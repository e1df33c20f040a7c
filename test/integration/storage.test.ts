// Issue 6, with real processes on 127.0.0.1: one authority (short period), four relays, six
// storage nodes (`bitcloud-storage run`), and the `bitcloud` CLI as child processes. One network
// is shared by every case, in order. SPEC.md §9 (storage), §9.13 (transports), §9.14 (DHT names).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake2b, randomBytes } from '../../src/crypto/primitives';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { parseAuthorityList } from '../../src/dir/authorities';
import type { ConsensusRelay, VerifiedConsensus } from '../../src/dir/types';
import { formatCapability, parseCapability } from '../../src/storage/capability';
import { ChunkKind, encodeChunk, encryptChunk } from '../../src/storage/encode';
import { encodeRoot, MANIFEST_VERSION } from '../../src/storage/manifest';
import { rankNodes } from '../../src/storage/placement';
import { shareId } from '../../src/storage/share';
import { connectStorageDirect } from '../../src/storage/direct';
import { StorageChannel } from '../../src/storage/channel';
import { storageNodesOf } from '../../src/client/storage-client';
import { storeChunk, storeRoot } from '../../src/client/storage-client-put';
import { openStorageSession, type StorageSession } from '../../src/client/storage-client-setup';
import { DownloadOutput } from '../../src/client/storage-client-resume';
import { binPath, eventually, freePorts, runCli, startDaemon, type Daemon } from '../helpers/daemon';
import { shareFiles } from '../helpers/storage-nodes';
import { makeDirNet, makeRelay, startAuthority, startRelay, storageNetReady, tearDownDirNet, writeClientConfig, type DirNet } from '../helpers/dirnet';
import { metric, scrape } from '../helpers/localnet';

const MiB = 1024 * 1024;
const PERIOD = 4;

interface StorageNodeSetup { name: string; dataDir: string; configFile: string; orPort: number; storagePort: number; metricsPort: number; daemon: Daemon | null; fingerprint: string }

let dnet: DirNet;
let clientConfig: string;
const relays: Array<{ name: string; dirPort: number; metricsPort: number }> = [];
const nodes: StorageNodeSetup[] = [];
let big: { file: string; hash: Buffer; size: number; cap: string };
let small: { file: string; data: Buffer; cap: string };

const cli = (args: string[], timeoutMs = 240_000) => runCli('bitcloud', [...args, '--config', clientConfig], { timeoutMs });
const json = (r: { stdout: string }) => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function consensus(): Promise<VerifiedConsensus | null> {
  const auths = parseAuthorityList(dnet.authorityList);
  return (await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 })).consensus;
}

async function hashFile(file: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of fs.createReadStream(file, { highWaterMark: 4 * MiB })) parts.push(blake2b(c as Buffer));
  return blake2b(Buffer.concat(parts));
}

async function startStorageNode(i: number, quota: string): Promise<StorageNodeSetup> {
  const name = `store${i + 1}`;
  const [orPort, storagePort, metricsPort] = await freePorts(3);
  const dataDir = path.join(dnet.dir, name);
  const configFile = path.join(dnet.dir, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify({
    // A declared bandwidth below the relays' keeps storage nodes from raising the Guard threshold.
    dataDir, nickname: name, address: '127.0.0.1', orPort, storagePort, metricsPort, quota, bandwidth: 100_000,
    authorities: dnet.authorityList, publishIntervalSeconds: PERIOD, descriptorLifetimeSeconds: 3600, announceIntervalSeconds: 10, identityPow: 'local',
  }, null, 2));
  const daemon = startDaemon('bitcloud-storage', ['run', '--config', configFile]);
  const up = await daemon.waitForMsg('storage node listening', {}, 60_000);
  return { name, dataDir, configFile, orPort, storagePort, metricsPort, daemon, fingerprint: String(up.json!.identity) };
}

async function writeRandomFile(file: string, size: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'w');
  const parts: Buffer[] = [];
  for (let off = 0; off < size; off += 4 * MiB) {
    const b = randomBytes(Math.min(4 * MiB, size - off));
    parts.push(blake2b(b));
    await fh.write(b);
  }
  await fh.close();
  return blake2b(Buffer.concat(parts));
}

beforeAll(async () => {
  dnet = await makeDirNet(1, PERIOD);
  startAuthority(dnet.authorities[0]);
  for (let i = 0; i < 4; i++) {
    const r = await makeRelay(dnet, `relay${i + 1}`, { publishIntervalSeconds: PERIOD });
    startRelay(r);
    relays.push({ name: r.name, dirPort: r.dirPort, metricsPort: r.metricsPort });
  }
  // The sixth node has a small quota: the over-quota case fills it.
  for (let i = 0; i < 6; i++) nodes.push(await startStorageNode(i, i === 5 ? '40MiB' : '1GiB'));
  clientConfig = writeClientConfig(dnet, 'client', { enforceDistinctSubnets: false }).configFile;
  // Wait for a consensus with guards (Stable after a period) and all six storage nodes.
  await eventually(async () => storageNetReady(await consensus(), 6), 120_000, 1000);
}, 200_000);

afterAll(() => tearDownDirNet(dnet), 60_000);

describe('100 MiB through circuits (SPEC.md §9.9, §9.13.1)', () => {
  it('put and get give identical bytes; relays carried it; no node holds a plaintext window', async () => {
    const file = path.join(dnet.dir, 'big.bin');
    const size = 100 * MiB;
    const hash = await writeRandomFile(file, size);
    const relayCells = async () => {
      let n = 0;
      for (const r of relays) n += metric(await scrape(r.metricsPort), 'bitcloud_cells_relayed_total');
      return n;
    };
    const cells0 = await relayCells();

    const put = await cli(['put', file, '--json']);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const p = json(put);
    expect(p.ok).toBe(true);
    expect(p.transport).toBe('circuits');
    expect(p.size).toBe(size);
    expect(p.chunks).toBe(100);
    expect(p.capability).toMatch(/^bitcloud:[a-z2-7]{52}#[a-z2-7]{52}$/);
    big = { file, hash, size, cap: p.capability };

    // Every storage node answered BEGIN_STORAGE streams, and the relays carried the shares:
    // at least guard + middle cells for every share byte uploaded.
    for (const n of nodes) expect(metric(await scrape(n.metricsPort), 'bitcloud_streams_opened_total', { kind: 'begin_storage' }), n.name).toBeGreaterThan(0);
    expect(await relayCells() - cells0).toBeGreaterThan((2 * p.bytesSent) / 498);

    const out = path.join(dnet.dir, 'big.out');
    const get = await cli(['get', big.cap, '-o', out, '--json']);
    expect(get.code, get.stderr + get.stdout).toBe(0);
    const g = json(get);
    expect(g.size).toBe(size);
    expect((await hashFile(out)).equals(hash)).toBe(true);
    await fsp.rm(out);

    // 32-byte windows of the plaintext, searched in every share file of every node.
    const fh = await fsp.open(file, 'r');
    const samples: Buffer[] = [];
    for (let i = 0; i < 12; i++) {
      const b = Buffer.alloc(32);
      await fh.read(b, 0, 32, Math.floor(Math.random() * (size - 32)));
      samples.push(b);
    }
    await fh.close();
    let files = 0;
    for (const n of nodes) {
      for (const f of await shareFiles(n.dataDir)) {
        const b = await fsp.readFile(f);
        files++;
        for (const s of samples) expect(b.indexOf(s), `${n.name} ${f}`).toBe(-1);
      }
    }
    expect(files).toBeGreaterThanOrEqual(600);
  }, 900_000);
});

describe('corruption (SPEC.md §9.8.3, §9.9)', () => {
  it('a flipped byte in a stored share is detected and get still succeeds from other copies', async () => {
    const file = path.join(dnet.dir, 'small.bin');
    const data = randomBytes(4 * MiB + 777);
    await fsp.writeFile(file, data);
    const put = await cli(['put', file, '--json']);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    small = { file, data, cap: json(put).capability };

    // The root share is read from rank(manifest id) in order: flip a byte in the first copy.
    const c = (await consensus())!;
    const fps = storageNodesOf(c.relays).map((r) => r.fingerprint);
    const { manifestId } = parseCapability(small.cap);
    const hex = manifestId.toString('hex');
    const rootFileOf = (n: { dataDir: string }) => path.join(n.dataDir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex);
    // The first in rank order that holds a copy (a node missing from the put's consensus holds none).
    const first = rankNodes(manifestId, fps).map((fp) => nodes.find((n) => n.fingerprint === fp)!).find((n) => fs.existsSync(rootFileOf(n)))!;
    const rootFile = rootFileOf(first);
    const b = await fsp.readFile(rootFile);
    b[10] ^= 0x01;
    await fsp.writeFile(rootFile, b);
    const q0 = metric(await scrape(first.metricsPort), 'bitcloud_storage_quarantined_total');

    const out = path.join(dnet.dir, 'small.out');
    const get = await cli(['get', small.cap, '-o', out, '--json']);
    expect(get.code, get.stderr + get.stdout).toBe(0);
    expect(json(get).corruptShares).toBeGreaterThanOrEqual(1);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
    expect(metric(await scrape(first.metricsPort), 'bitcloud_storage_quarantined_total')).toBe(q0 + 1);

    // The same without --json and with --direct: a warning about the address, the path on stdout.
    await fsp.rm(out);
    const direct = await cli(['get', small.cap, '-o', out, '--direct']);
    expect(direct.code, direct.stderr + direct.stdout).toBe(0);
    expect(direct.stderr).toContain('they see your IP address');
    expect(direct.stdout.trim()).toBe(out);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  }, 180_000);

  it('get -o - writes the file\'s bytes, and nothing else, to stdout; the --json result to stderr (SPEC.md §9.9.1)', async () => {
    const piped = path.join(dnet.dir, 'small.stdout');
    const fd = fs.openSync(piped, 'w');
    const r = await new Promise<{ code: number | string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [binPath('bitcloud'), 'get', small.cap, '-o', '-', '--json', '--config', clientConfig], { cwd: dnet.dir, stdio: ['ignore', fd, 'pipe'] });
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
      const t = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.once('close', (code, signal) => { clearTimeout(t); resolve({ code: code ?? signal ?? 'unknown', stderr }); });
    });
    fs.closeSync(fd);
    expect(r.code, r.stderr).toBe(0);
    expect((await fsp.readFile(piped)).equals(small.data)).toBe(true);
    const result = JSON.parse(r.stderr.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(result).toMatchObject({ ok: true, path: '-', size: small.data.length });
    expect(fs.existsSync(path.join(dnet.dir, '-'))).toBe(false);
    expect(fs.existsSync(path.join(dnet.dir, '-.bitcloud-part'))).toBe(false);
  }, 180_000);
});

describe('resume (SPEC.md §9.9.1)', () => {
  it('a get killed half way leaves no output; rerun, it resumes and finishes with the right bytes', async () => {
    const out = path.join(dnet.dir, 'resume.out');
    const progressFile = DownloadOutput.progressPath(out);
    const doneChunks = () => {
      try {
        const rec = JSON.parse(fs.readFileSync(progressFile, 'utf8')) as { done: string };
        return [...Buffer.from(rec.done, 'base64')].reduce((n, byte) => n + [...byte.toString(2)].filter((x) => x === '1').length, 0);
      } catch { return 0; }
    };
    const first = startDaemon('bitcloud', ['get', big.cap, '-o', out, '--json', '--config', clientConfig]);
    await eventually(() => doneChunks() >= 20, 240_000, 100);
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    const before = doneChunks();
    expect(before).toBeLessThan(100);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);

    const again = await cli(['get', big.cap, '-o', out, '--json']);
    expect(again.code, again.stderr + again.stdout).toBe(0);
    const g = json(again);
    expect(g.resumedChunks).toBeGreaterThanOrEqual(before);
    expect((await hashFile(out)).equals(big.hash)).toBe(true);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(progressFile)).toBe(false);
    await fsp.rm(out);
  }, 900_000);
});

describe('bad input gets clear errors, no partial output, and the nodes keep serving', () => {
  const out = () => path.join(dnet.dir, 'bad.out');
  let session: StorageSession;

  beforeAll(async () => {
    // The test's own client, through circuits, for requests the CLI never makes.
    session = await openStorageSession({ config: clientConfig, direct: false });
  }, 120_000);
  afterAll(async () => { await session?.close(); });

  it('a malformed or truncated capability: CAP_MALFORMED (exit 2)', async () => {
    for (const cap of ['bitcloud:nonsense', small.cap.slice(0, -6), small.cap.replace('#', ''), small.cap.toUpperCase()]) {
      const r = await cli(['get', cap, '-o', out(), '--json']);
      expect(r.code).toBe(2);
      expect(json(r).error.code).toBe('CAP_MALFORMED');
      expect(fs.existsSync(out())).toBe(false);
    }
  }, 120_000);

  it('a wrong key: CHUNK_AUTH_FAILED; an unknown manifest: MANIFEST_NOT_FOUND', async () => {
    const { manifestId } = parseCapability(small.cap);
    const wrongKey = formatCapability({ manifestId, fileKey: randomBytes(32) });
    let r = await cli(['get', wrongKey, '-o', out(), '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error.code).toBe('CHUNK_AUTH_FAILED');
    r = await cli(['get', formatCapability({ manifestId: randomBytes(32), fileKey: randomBytes(32) }), '-o', out(), '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error.code).toBe('MANIFEST_NOT_FOUND');
    expect(fs.existsSync(out())).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out()))).toBe(false);
  }, 120_000);

  it('a manifest that is not protobuf: MANIFEST_MALFORMED, nothing written', async () => {
    const key = randomBytes(32);
    const coding = { k: 4, n: 6 };
    const tally = { shares: 0, bytes: 0, relocated: 0 };
    const junk = randomBytes(3000); // authenticates under the key, but is no Manifest message
    junk[0] = 0xff;
    const enc = encodeChunk(key, 0, junk, coding, ChunkKind.MANIFEST);
    await storeChunk(session.client, enc.shares, tally);
    const layout = { size: junk.length, chunkSize: MiB, coding, chunks: [{ encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) }] };
    const root = encryptChunk(key, 0, encodeRoot({ version: MANIFEST_VERSION, manifest: layout }), ChunkKind.ROOT);
    await storeRoot(session.client, { id: shareId(root), bytes: root }, 6, tally);
    const r = await cli(['get', formatCapability({ manifestId: shareId(root), fileKey: key }), '-o', out(), '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error.code).toBe('MANIFEST_MALFORMED');
    expect(fs.existsSync(out())).toBe(false);
  }, 180_000);

  it('a share whose bytes do not match its id: SHARE_HASH_MISMATCH, nothing stored', async () => {
    const fp = session.client.fingerprints[0];
    const data = randomBytes(4096);
    await expect(session.client.putShare(fp, shareId(randomBytes(10)), data)).rejects.toMatchObject({ code: 'SHARE_HASH_MISMATCH' });
    await expect(session.client.getShare(fp, shareId(data))).rejects.toMatchObject({ code: 'SHARE_NOT_FOUND' });
  }, 120_000);

  it('a put over quota: STORAGE_FULL, and the node keeps serving', async () => {
    const full = nodes[5];
    const big16 = randomBytes(16 * MiB);
    await expect(session.client.putShare(full.fingerprint, shareId(big16), big16)).rejects.toMatchObject({ code: 'STORAGE_FULL' });
    const st = await session.client.stat(full.fingerprint);
    expect(st.capacity).toBe(40 * MiB);
    expect(st.used).toBeLessThanOrEqual(40 * MiB);
  }, 180_000);

  it('garbage on the storage port and the OR port costs only that connection', async () => {
    const n = nodes[0];
    for (const port of [n.storagePort, n.orPort]) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.write(randomBytes(8192)));
        s.on('error', () => {});
        s.on('close', () => resolve());
        setTimeout(() => { s.destroy(); resolve(); }, 15_000).unref();
      });
    }
    // Inside TLS, after the node's hello: a frame length past the maximum.
    const c = (await consensus())!;
    const relay = c.relays.find((r) => r.fingerprint === n.fingerprint) as ConsensusRelay;
    const s = await connectStorageDirect({ host: '127.0.0.1', port: n.storagePort, expectedIdentity: relay.identity });
    const got: Buffer[] = [];
    s.on('data', (b: Buffer) => got.push(b));
    const ended = new Promise<void>((r) => s.once('end', () => r()));
    s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 0]));
    await ended;
    expect(Buffer.concat(got).toString('latin1')).toContain('STORAGE_FRAME_TOO_LARGE');
    s.destroy();
    // The node still answers: STAT on a fresh direct session, and a whole get through circuits.
    const ch = new StorageChannel(await connectStorageDirect({ host: '127.0.0.1', port: n.storagePort, expectedIdentity: relay.identity }));
    expect((await ch.request({ type: 'stat' })).shares).toBeGreaterThan(0);
    ch.close();
    expect(n.daemon!.running).toBe(true);
    const r = await cli(['get', small.cap, '-o', out(), '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await fsp.rm(out());
  }, 180_000);

  it('put needs n distinct nodes: PLACEMENT_TOO_FEW_NODES before anything is sent', async () => {
    const r = await cli(['put', small.file, '--k', '4', '--n', '10', '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error.code).toBe('PLACEMENT_TOO_FEW_NODES');
  }, 120_000);
});

describe('names in the private DHT (SPEC.md §9.14)', () => {
  it('a name published twice resolves to the newer value; a stale sequence number is refused', async () => {
    const capA = big.cap;
    const capB = small.cap;
    const p1 = await cli(['publish', 'site', capA, '--json']);
    expect(p1.code, p1.stderr + p1.stdout).toBe(0);
    const name = json(p1).name as string;
    expect(name).toMatch(/^[a-z2-7]{52}\/site$/);
    let r = await cli(['resolve', name, '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(json(r).capability).toBe(capA);

    const p2 = await cli(['publish', 'site', capB, '--json']);
    expect(p2.code, p2.stderr + p2.stdout).toBe(0);
    expect(json(p2).seq).toBeGreaterThan(json(p1).seq);
    r = await cli(['resolve', name, '--json']);
    expect(json(r).capability).toBe(capB);

    const stale = await cli(['publish', 'site', capA, '--seq', String(json(p1).seq), '--json']);
    expect(stale.code).toBe(1);
    expect(json(stale).error.code).toBe('DHT_SEQ_STALE');
    r = await cli(['resolve', name, '--json']);
    expect(json(r).capability).toBe(capB);
  }, 180_000);
});

describe('audits, repair and the keeper (SPEC.md §9.17, §9.18, §9.19)', () => {
  it('keep add/run/status: renews, audits over circuits, catches a deleted share and rebuilds it on another node', async () => {
    const before = new Map<string, Set<string>>();
    for (const n of nodes) before.set(n.name, new Set((await shareFiles(n.dataDir)).map((f) => path.basename(f))));
    const file = path.join(dnet.dir, 'kept.bin');
    const data = randomBytes(200 * 1024 + 3);
    await fsp.writeFile(file, data);
    // 2-of-4 on 6 nodes: two nodes hold no share of a chunk, so a lost share has somewhere to go.
    const put = await cli(['put', file, '-k', '2', '-n', '4', '--chunk-size', '65536', '--json']);
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const { capability, verifyCapability, manifestId } = json(put);
    expect(verifyCapability).toMatch(/^bitcloud-verify:/);

    // Added from the read capability: the keeper derives and stores only the verify capability.
    const add = await cli(['keep', 'add', capability, '--json']);
    expect(add.code, add.stderr + add.stdout).toBe(0);
    expect(json(add)).toMatchObject({ ok: true, added: true, manifestId, verifyCapability });
    const kept = fs.readFileSync(path.join(dnet.dir, 'client', 'keeper.json'), 'utf8');
    expect(kept).not.toContain(capability.split('#')[1]);

    const now = Math.floor(Date.now() / 1000);
    const run1 = await cli(['keep', 'run', '--once', '--lease-seconds', String(30 * 86_400), '--json']);
    expect(run1.code, run1.stderr + run1.stdout).toBe(0);
    const f1 = json(run1).files[0];
    // 4 data chunks + 1 manifest chunk, 4 shares each, plus the root and the verify record.
    expect(f1).toMatchObject({ manifestId, shares: 22, healthy: 22, repaired: 0, lost: 0, auditFailures: 0 });
    expect(f1.expiresAt).toBeGreaterThanOrEqual(now + 30 * 86_400);

    // A node deletes one of the file's chunk shares.
    let victim: { node: StorageNodeSetup; file: string } | null = null;
    for (const n of nodes) {
      if (!n.daemon) continue;
      const fresh = (await shareFiles(n.dataDir)).filter((f) => !before.get(n.name)!.has(path.basename(f)) && path.basename(f) !== manifestId);
      // Skip the verify record: it is the one whole share besides the root; chunk shares come in 4s.
      const chunkShare = fresh.find((f) => nodes.filter((m) => m.daemon).some((m) => m !== n && fs.existsSync(path.join(m.dataDir, path.relative(n.dataDir, f)))) === false);
      if (chunkShare) { victim = { node: n, file: chunkShare }; break; }
    }
    expect(victim).not.toBeNull();
    await fsp.rm(victim!.file);

    const run2 = await cli(['keep', 'run', '--once', '--lease-seconds', String(30 * 86_400), '--json']);
    expect(run2.code, run2.stderr + run2.stdout).toBe(0);
    const f2 = json(run2).files[0];
    expect(f2).toMatchObject({ healthy: 21, repaired: 1, lost: 0, unrecoverableChunks: 0 });
    expect(f2.auditFailures).toBeGreaterThanOrEqual(1);
    // Not due for renewal (30 days left, default margin 2 days): the expiry is the one of run 1. The
    // rebuilt share is stored with the pass's lease (30 days from now), so it does not bring the
    // file's earliest expiry forward (SPEC.md §9.18.3 step 4, §9.19).
    expect(f2.expiresAt).toBe(f1.expiresAt);
    const holders = nodes.filter((n) => fs.existsSync(path.join(n.dataDir, path.relative(victim!.node.dataDir, victim!.file))));
    expect(holders.map((n) => n.name)).not.toContain(victim!.node.name);
    expect(holders.length).toBe(1);

    // State survives: status (a separate process) reads what run wrote.
    const st = await cli(['keep', 'status', '--json']);
    expect(st.code).toBe(0);
    expect(json(st).files[0]).toMatchObject({ manifestId, healthy: 21, repaired: 1, repairedTotal: 1 });
    const out = path.join(dnet.dir, 'kept.out');
    const g = await cli(['get', capability, '-o', out, '--json']);
    expect(g.code, g.stderr + g.stdout).toBe(0);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  }, 400_000);
});

describe('losing storage nodes (SPEC.md §9.3)', () => {
  it('with 2 of the 6 nodes holding shares stopped, get still succeeds', async () => {
    // Every node holds one share of every chunk (n = 6 nodes): any two will do.
    for (const n of [nodes[1], nodes[2]]) {
      expect((await shareFiles(n.dataDir)).length).toBeGreaterThan(0);
      await n.daemon!.stop();
      expect(await n.daemon!.exited).toBe(0); // SIGTERM: a clean shutdown
    }
    const out = path.join(dnet.dir, 'after-loss.out');
    const r = await cli(['get', small.cap, '-o', out, '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect((await fsp.readFile(out)).equals(small.data)).toBe(true);
  }, 240_000);
});
