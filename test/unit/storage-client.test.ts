// SPEC.md §9.9: the client's put and get against real in-process storage nodes over direct
// sessions: round trip, placement fallback when a node is full, lost nodes, corrupt shares (on a
// node's disk and in transit), resume after an interruption, and the refusals.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { blake2b, randomBytes } from '../../src/crypto/primitives';
import { connectStorageDirect } from '../../src/storage/direct';
import { parseCapability, formatCapability } from '../../src/storage/capability';
import { openVerifyRecord, parseVerifyCapability } from '../../src/storage/verify-cap';
import { ChunkKind, encodeChunk, encryptChunk } from '../../src/storage/encode';
import { encodeRoot, MANIFEST_VERSION } from '../../src/storage/manifest';
import { shareId } from '../../src/storage/share';
import { rankNodes } from '../../src/storage/placement';
import { err } from '../../src/errors';
import { StorageClient, storageNodesOf } from '../../src/client/storage-client';
import { putFile, storeChunk, storeRoot } from '../../src/client/storage-client-put';
import { FOLDER_GET_MARKER, getFolder, putFolder } from '../../src/client/storage-client-folder';
import { MAX_MANIFEST_BYTES } from '../../src/storage/manifest';
import { fetchChunk, fetchManifest, getFile } from '../../src/client/storage-client-get';
import { renewFile } from '../../src/client/storage-client-renew';
import { contentIds, fileContentIds } from '../../src/moderation/content-ids';
import { DownloadOutput } from '../../src/client/storage-client-resume';
import { shareFiles, startNode as startStorageNode, stopNode, type TestNode } from '../helpers/storage-nodes';

const KiB = 1024;
let root: string;
const nodes: TestNode[] = [];
let file: string;
let data: Buffer;

const startNode = (i: number, quotaBytes = 256 * 1024 * KiB): Promise<TestNode> => startStorageNode(root, i, quotaBytes);

function client(extra: Partial<ConstructorParameters<typeof StorageClient>[0]> = {}): StorageClient {
  return new StorageClient({
    nodes: storageNodesOf(nodes.map((n) => n.relay)),
    open: (node) => connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs: 2000 }),
    ...extra,
  });
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-client-'));
  // Seven nodes; the seventh is nearly full, so shares placed on it must move down their ranking.
  for (let i = 0; i < 7; i++) nodes.push(await startNode(i, i === 6 ? 64 * KiB : undefined));
  data = randomBytes(3 * 1024 * KiB + 12_345);
  file = path.join(root, 'input.bin');
  await fsp.writeFile(file, data);
});

afterAll(async () => {
  for (const n of nodes) await stopNode(n);
  await fsp.rm(root, { recursive: true, force: true });
});

const shared = { cap: '' };

describe('put and get over direct sessions (SPEC.md §9.9)', () => {
  let cap: string;

  it('refuses to start without n distinct nodes: PLACEMENT_TOO_FEW_NODES', async () => {
    const c = client();
    await expect(putFile(c, file, { coding: { k: 3, n: 10 } })).rejects.toMatchObject({ code: 'PLACEMENT_TOO_FEW_NODES' });
    await c.close();
  });

  it('puts a file (shares moved off the full node) and gets identical bytes back', async () => {
    const c = client();
    const progress: number[] = [];
    const r = await putFile(c, file, { chunkSize: 256 * KiB, onProgress: (d) => progress.push(d) });
    await c.close();
    cap = r.capability;
    shared.cap = cap;
    expect(r.chunks).toBe(13);
    expect(r.size).toBe(data.length);
    expect(r.relocated).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(data.length);
    expect(parseCapability(cap).manifestId.toString('hex')).toBe(r.manifestId);

    const g = client();
    const out = path.join(root, 'out', 'copy.bin');
    const res = await getFile(g, parseCapability(cap), { output: out });
    await g.close();
    expect(res.size).toBe(data.length);
    expect(res.name).toBe('input.bin');
    expect(blake2b(await fsp.readFile(out)).equals(blake2b(data))).toBe(true);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
  });

  it('without -o, a file already at the stored name is never replaced: IO_OUTPUT_EXISTS; -o replaces it (SPEC.md §9.9.1)', async () => {
    const dir = await fsp.mkdtemp(path.join(root, 'named-'));
    const mine = path.join(dir, 'input.bin'); // the name the uploader stored (put's base name)
    await fsp.writeFile(mine, 'the reader\'s own file');
    const g = client();
    await expect(getFile(g, parseCapability(cap), { dir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    expect(await fsp.readFile(mine, 'utf8')).toBe('the reader\'s own file');
    expect(fs.existsSync(DownloadOutput.partPath(mine))).toBe(false);
    // A link there (even a dangling one) is not replaced either.
    const linkDir = await fsp.mkdtemp(path.join(root, 'named-'));
    await fsp.symlink(path.join(linkDir, 'nowhere'), path.join(linkDir, 'input.bin'));
    await expect(getFile(g, parseCapability(cap), { dir: linkDir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    expect((await fsp.lstat(path.join(linkDir, 'input.bin'))).isSymbolicLink()).toBe(true);
    // Named by the reader, it is replaced (once the whole file has authenticated).
    const res = await getFile(g, parseCapability(cap), { output: mine });
    await g.close();
    expect(res.path).toBe(mine);
    expect((await fsp.readFile(mine)).equals(data)).toBe(true);
  });

  it('without -o, a file made at the stored name while the get runs is not replaced either (SPEC.md §9.9.1)', async () => {
    const dir = await fsp.mkdtemp(path.join(root, 'named-'));
    const mine = path.join(dir, 'input.bin');
    const g = client();
    // Made after the check at the start, before the part file is published (another get of a
    // file stored under the same name, or the reader saving one).
    await expect(getFile(g, parseCapability(cap), { dir, onManifest: () => fs.writeFileSync(mine, 'made meanwhile') }))
      .rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    expect(await fsp.readFile(mine, 'utf8')).toBe('made meanwhile');
    // Every chunk is kept: naming the output resumes them all.
    const res = await getFile(g, parseCapability(cap), { output: path.join(dir, 'copy.bin') });
    expect((await fsp.readFile(res.path)).equals(data)).toBe(true);
    const again = await getFile(g, parseCapability(cap), { output: mine });
    await g.close();
    expect(again.resumedChunks).toBe(again.chunks);
    expect((await fsp.readFile(mine)).equals(data)).toBe(true);
  });

  it('renew extends the lease of every share of the file on every node that holds it (SPEC.md §9.6 RENEW)', async () => {
    const c = client();
    const before = Math.floor(Date.now() / 1000);
    const r = await renewFile(c, parseCapability(shared.cap), 60 * 86_400);
    await c.close();
    expect(r.missing).toBe(0);
    expect(r.unreadableChunks).toBe(0);
    expect(r.renewed).toBe(r.shares);
    expect(r.expiresAt).toBeGreaterThanOrEqual(before + 60 * 86_400);
    // Every share any node holds now runs until at least then (renew never shortens: asking for
    // 1 s answers the current expiry).
    const seen = new Set<string>(); // distinct shares (a share may have copies, e.g. the root)
    for (const n of nodes) {
      for (const f of await shareFiles(n.dir)) {
        const hex = path.basename(f);
        if (!/^[0-9a-f]{64}$/.test(hex)) continue;
        const [exp] = await n.store.renew([Buffer.from(hex, 'hex')], 1);
        expect(exp).toBeGreaterThanOrEqual(before + 60 * 86_400);
        seen.add(hex);
      }
    }
    expect(seen.size).toBe(r.shares);
  });

  it('renew counts a share at most until the time it asked plus the lease it asked for, whatever a node answers (SPEC.md §9.9.2)', async () => {
    const c = client();
    const real = c.request.bind(c);
    // Every node answers RENEW with an expiry some 35 000 years away.
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      const res = await real(fp, req);
      return res.type === 'renew' ? { ...res, expiresAt: res.expiresAt.map((x) => (x > 0 ? 2 ** 40 : 0)) } : res;
    }) as typeof c.request;
    const before = Math.floor(Date.now() / 1000);
    const r = await renewFile(c, parseCapability(shared.cap), 86_400).finally(() => c.close());
    const after = Math.floor(Date.now() / 1000);
    expect(r.renewed).toBe(r.shares);
    expect(r.expiresAt).toBeGreaterThanOrEqual(before + 86_400);
    expect(r.expiresAt).toBeLessThanOrEqual(after + 86_400);
  });

  it('renew with lease 0 (each node\'s default) counts a share at most 7 days past the time it asked, whatever a node answers (SPEC.md §9.9.2)', async () => {
    const c = client();
    const real = c.request.bind(c);
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      const res = await real(fp, req);
      return res.type === 'renew' ? { ...res, expiresAt: res.expiresAt.map((x) => (x > 0 ? 2 ** 40 : 0)) } : res;
    }) as typeof c.request;
    const before = Math.floor(Date.now() / 1000);
    const r = await renewFile(c, parseCapability(shared.cap), 0).finally(() => c.close());
    const after = Math.floor(Date.now() / 1000);
    expect(r.renewed).toBe(r.shares);
    expect(r.expiresAt).toBeGreaterThanOrEqual(before + 7 * 86_400);
    expect(r.expiresAt).toBeLessThanOrEqual(after + 7 * 86_400);
  });

  it('renew answered with expiries that are not after the request (1970) renews nothing: MANIFEST_NOT_FOUND, no lease believed (SPEC.md §9.9.2)', async () => {
    const c = client();
    const real = c.request.bind(c);
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      const res = await real(fp, req);
      return res.type === 'renew' ? { ...res, expiresAt: res.expiresAt.map((x) => (x > 0 ? 1 : 0)) } : res;
    }) as typeof c.request;
    await expect(renewFile(c, parseCapability(shared.cap), 86_400).finally(() => c.close())).rejects.toMatchObject({ code: 'MANIFEST_NOT_FOUND' });
  });

  it('a put answered with an expiry not after the request fails at that node: STORAGE_BAD_RESPONSE, and the share goes down its ranking (SPEC.md §9.6.3, §9.9)', async () => {
    const c = client();
    const real = c.request.bind(c);
    const liar = c.fingerprints[0];
    const bytes = randomBytes(1000);
    const id = shareId(bytes);
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      if (fp === liar && req.type === 'put') return { type: 'put', expiresAt: 0 };
      return real(fp, req);
    }) as typeof c.request;
    try {
      await expect(c.putShare(liar, id, bytes)).rejects.toMatchObject({ code: 'STORAGE_BAD_RESPONSE' });
      const tally = { shares: 0, bytes: 0, relocated: 0 };
      // A root copy on 2 nodes, the liar first of a ranking it heads: it is not counted.
      const ranking = rankNodes(id, c.fingerprints);
      c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
        if (fp === ranking[0] && req.type === 'put') return { type: 'put', expiresAt: 1 };
        return real(fp, req);
      }) as typeof c.request;
      await storeRoot(c, { id, bytes }, 2, tally);
      expect(tally.shares).toBe(2);
      expect(await c.request(ranking[2], { type: 'has', ids: [id] })).toMatchObject({ present: [true] });
    } finally {
      await c.close();
    }
  });

  it('renew of an unknown file is MANIFEST_NOT_FOUND', async () => {
    const c = client();
    const cap = parseCapability(shared.cap);
    await expect(renewFile(c, { ...cap, manifestId: randomBytes(32) })).rejects.toMatchObject({ code: 'MANIFEST_NOT_FOUND' });
    await c.close();
  });

  it('no node holds any 32-byte window of the plaintext', async () => {
    const samples = Array.from({ length: 16 }, (_, i) => data.subarray(i * 200_000, i * 200_000 + 32));
    for (const n of nodes) {
      for (const f of await shareFiles(n.dir)) {
        const b = await fsp.readFile(f);
        for (const s of samples) expect(b.indexOf(s)).toBe(-1);
      }
    }
  });

  it('a share corrupted on a node\'s disk is detected and replaced from other shares', async () => {
    // Flip one byte in every share file of one node: that node now answers SHARE_CORRUPT.
    const victim = nodes[1];
    for (const f of await shareFiles(victim.dir)) {
      const b = await fsp.readFile(f);
      b[b.length >> 1] ^= 0x5a;
      await fsp.writeFile(f, b);
    }
    const g = client();
    const out = path.join(root, 'corrupt-disk.bin');
    const res = await getFile(g, parseCapability(cap), { output: out });
    await g.close();
    expect(res.corruptShares).toBeGreaterThan(0);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
    // An audit pass makes the node drop every share it holds corrupt (the get above saw some).
    for (const f of await shareFiles(victim.dir)) await victim.store.get(Buffer.from(path.basename(f), 'hex')).catch(() => {});
    expect(await shareFiles(victim.dir)).toEqual([]);
    // Uploading again with the same key makes the same
    // shares (synthetic nonces, SPEC.md §9.2) and the same capability: the node is healed.
    const up = client();
    const again = await putFile(up, file, { chunkSize: 256 * KiB, fileKey: parseCapability(cap).fileKey });
    await up.close();
    expect(again.capability).toBe(cap);
    expect((await shareFiles(victim.dir)).length).toBeGreaterThan(0);
  });

  it('bytes altered in transit fail the client\'s hash check and are fetched elsewhere', async () => {
    const g = client();
    const liar = nodes[2].relay.fingerprint;
    const real = g.getShare.bind(g);
    g.getShare = async (fp, id) => {
      const b = Buffer.from(await real(fp, id));
      if (fp === liar) b[0] ^= 1;
      return b;
    };
    const out = path.join(root, 'corrupt-transit.bin');
    const res = await getFile(g, parseCapability(cap), { output: out });
    await g.close();
    expect(res.corruptShares).toBeGreaterThan(0);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  });

  it('an interrupted get leaves nothing at the output path and resumes where it stopped', async () => {
    const out = path.join(root, 'resumed.bin');
    const g = client();
    const real = g.getShare.bind(g);
    let calls = 0;
    g.getShare = async (fp, id) => {
      if (++calls > 30) throw Object.assign(new Error('network gone'), { code: 'X' }); // not a BitcloudError: aborts the run
      return real(fp, id);
    };
    await expect(getFile(g, parseCapability(cap), { output: out, window: 1 })).rejects.toThrow(/network gone/);
    await g.close();
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);

    const g2 = client();
    const res = await getFile(g2, parseCapability(cap), { output: out });
    await g2.close();
    expect(res.resumedChunks).toBeGreaterThan(0);
    expect(res.resumedChunks).toBeLessThan(13);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
  });

  it('a full disk (ENOSPC) on a part-file write: IO_NOT_WRITABLE saying so, the get suspended with its record kept, and a rerun resumes (SPEC.md §9.9.1)', async () => {
    const out = path.join(root, 'full-disk.bin');
    const h = await fsp.open(file, 'r');
    const proto = Object.getPrototypeOf(h) as { write: (...a: unknown[]) => Promise<unknown> };
    await h.close();
    const realWrite = proto.write;
    let writes = 0;
    const spy = vi.spyOn(proto, 'write').mockImplementation(function (this: unknown, ...a: unknown[]) {
      if (++writes > 3) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
      return realWrite.apply(this, a);
    });
    const g = client();
    const e: unknown = await getFile(g, parseCapability(cap), { output: out, window: 1 }).then(() => null, (x: unknown) => x);
    spy.mockRestore();
    await g.close();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC' } });
    expect((e as Error).message).toMatch(/the disk is full.*part file and its record are kept/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(true);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(true);

    const g2 = client();
    const res = await getFile(g2, parseCapability(cap), { output: out });
    await g2.close();
    expect(res.resumedChunks).toBe(3);
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  });

  it('a full disk (ENOSPC) before the first checkpoint: IO_NOT_WRITABLE not claiming the part file is kept, as it is removed (SPEC.md §9.9.1)', async () => {
    const out = path.join(root, 'full-disk-early.bin');
    const h = await fsp.open(file, 'r');
    const proto = Object.getPrototypeOf(h) as { write: (...a: unknown[]) => Promise<unknown> };
    await h.close();
    const spy = vi.spyOn(proto, 'write').mockRejectedValue(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
    const g = client();
    const e: unknown = await getFile(g, parseCapability(cap), { output: out, window: 1 }).then(() => null, (x: unknown) => x);
    spy.mockRestore();
    await g.close();
    expect(e).toMatchObject({ code: 'IO_NOT_WRITABLE', detail: { errno: 'ENOSPC', path: DownloadOutput.partPath(out) } });
    expect((e as Error).message).toMatch(/the disk is full/);
    expect((e as Error).message).not.toMatch(/are kept|to resume/);
    expect((e as Error).message).toMatch(/nothing was kept/);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.lockPath(out))).toBe(false);
  });

  it('a get that fails before any chunk is recorded leaves no part file behind (SPEC.md §9.9.1)', async () => {
    const out = path.join(root, 'never.bin');
    const g = client();
    const manifest = await fetchManifest(g, parseCapability(cap), { corruptShares: 0, missingShares: 0, sharesFetched: 0 });
    g.getShare = async () => { throw err('STORAGE_CONNECT_FAILED', 'every node down'); };
    await expect(getFile(g, parseCapability(cap), { output: out, manifest })).rejects.toMatchObject({ code: 'CHUNK_TOO_FEW_SHARES' });
    await g.close();
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(DownloadOutput.partPath(out))).toBe(false);
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(false);
  });
});

describe('get -o -: the file to stdout (SPEC.md §9.9.1)', () => {
  /** A stand-in for stdout: what was written, write by write; `fail` makes write number `fail` fail. */
  function sink(fail?: number): { stream: Writable; writes: Buffer[] } {
    const writes: Buffer[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (fail !== undefined && writes.length + 1 >= fail) { cb(Object.assign(new Error('EPIPE: broken pipe, write'), { code: 'EPIPE' })); return; }
        writes.push(Buffer.from(chunk));
        cb();
      },
    });
    return { stream, writes };
  }

  /** A client whose data shares of chunk `slow` wait for `gate`, and of chunk `broken` are never served. */
  async function gated(o: { slow?: number; broken?: number; gate?: Promise<void> }) {
    const g = client();
    const cap = parseCapability(shared.cap);
    const manifest = await fetchManifest(g, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 });
    const chunkOf = new Map<string, number>();
    manifest.layout.chunks.forEach((c, i) => c.shareIds.forEach((id) => chunkOf.set(id.toString('hex'), i)));
    const asked = new Set<number>();
    let inFlight = 0;
    const real = g.getShare.bind(g);
    g.getShare = async (fp, id) => {
      const i = chunkOf.get(id.toString('hex'));
      if (i !== undefined) asked.add(i);
      if (i === o.broken) throw err('STORAGE_CONNECT_FAILED', 'node down');
      inFlight++;
      try {
        if (i === o.slow) await o.gate;
        return await real(fp, id);
      } finally {
        inFlight--;
      }
    };
    /** Share fetches started and not ended: none left means no chunk can arrive any more. */
    return { g, cap, manifest, asked, inFlight: () => inFlight };
  }

  it('writes exactly the file\'s bytes, in order, though chunks complete out of order; no file, part file or record', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const { g, cap, manifest, asked } = await gated({ slow: 0, gate });
    const { stream, writes } = sink();
    const dir = await fsp.mkdtemp(path.join(root, 'stdout-'));
    const running = getFile(g, cap, { output: '-', stdout: stream, dir, manifest, window: 4 });
    // Chunks 1–3 complete while chunk 0 waits: none is written before it, and no chunk beyond the
    // window (first unwritten chunk + 4) is started meanwhile.
    await vi.waitFor(() => expect(asked.size).toBe(4), { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 300));
    expect(writes.length).toBe(0);
    expect([...asked].sort((a, b) => a - b)).toEqual([0, 1, 2, 3]);
    open();
    const res = await running.finally(() => g.close());
    expect(res.path).toBe('-');
    expect(res.size).toBe(data.length);
    expect(res.resumedChunks).toBe(0);
    expect(Buffer.concat(writes).equals(data)).toBe(true);
    expect(writes.length).toBe(manifest.layout.chunks.length);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('a failure mid-file is the typed error, after exactly the chunks before it; nothing more is written', async () => {
    const { g, cap, manifest } = await gated({ broken: 5 });
    const { stream, writes } = sink();
    const dir = await fsp.mkdtemp(path.join(root, 'stdout-'));
    await expect(getFile(g, cap, { output: '-', stdout: stream, dir, manifest, window: 1 })).rejects.toMatchObject({ code: 'CHUNK_TOO_FEW_SHARES' });
    await g.close();
    expect(Buffer.concat(writes).equals(data.subarray(0, 5 * 256 * KiB))).toBe(true);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('chunks verified before an earlier chunk failed are never written', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const { g, cap, manifest, inFlight } = await gated({ slow: 0, gate, broken: 2 });
    const { stream, writes } = sink();
    // Chunk 0 is let through the gate once chunk 2 failed, not before: it is verified after the
    // failure, and must not be written either.
    const running = getFile(g, cap, { output: '-', stdout: stream, dir: root, manifest, onFailed: () => open() });
    await expect(running).rejects.toMatchObject({ code: 'CHUNK_TOO_FEW_SHARES' });
    // Every share fetch has ended (chunk 0's too, let through the gate): no chunk is left to be
    // written late, and none was.
    await vi.waitFor(() => expect(inFlight()).toBe(0), { timeout: 5000 });
    expect(writes.length).toBe(0);
    await g.close();
  });

  it('stdout\'s reader going away (EPIPE) is IO_OUTPUT_CLOSED, and the get stops writing', async () => {
    const { g, cap, manifest } = await gated({});
    const { stream, writes } = sink(3);
    await expect(getFile(g, cap, { output: '-', stdout: stream, dir: root, manifest })).rejects.toMatchObject({ code: 'IO_OUTPUT_CLOSED', detail: { errno: 'EPIPE' } });
    await g.close();
    expect(writes.length).toBe(2);
    expect(Buffer.concat(writes).equals(data.subarray(0, 2 * 256 * KiB))).toBe(true);
  });

  it('stops at once when the reader goes away: a chunk still in flight is not waited for, and no share is asked for after', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const { g, cap, manifest, asked } = await gated({ slow: 3, gate });
    const { stream, writes } = sink(2);
    const calls = vi.spyOn(g, 'getShare');
    // Chunk 3's shares never come while the gate is shut: a get that waited for them would hang.
    await expect(getFile(g, cap, { output: '-', stdout: stream, dir: root, manifest, window: 4 })).rejects.toMatchObject({ code: 'IO_OUTPUT_CLOSED' });
    expect(writes.length).toBe(1);
    expect(asked.has(3)).toBe(true);
    const n = calls.mock.calls.length;
    open();
    await new Promise((r) => setTimeout(r, 300));
    expect(calls.mock.calls.length).toBe(n);
    await g.close();
  }, 10_000);

  it('a progress callback that throws stops the get as any failure does: no share is asked for after', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const g = client();
    const cap = parseCapability(shared.cap);
    const manifest = await fetchManifest(g, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 });
    const chunk1 = new Set(manifest.layout.chunks[1].shareIds.map((id) => id.toString('hex')));
    // Chunk 1's nodes all fail, late: its search goes from node to node until the get is stopped.
    const real = g.getShare.bind(g);
    let calls = 0;
    g.getShare = async (fp, id) => {
      calls++;
      if (!chunk1.has(id.toString('hex'))) return real(fp, id);
      await gate;
      throw err('STORAGE_CONNECT_FAILED', 'node down');
    };
    const { stream, writes } = sink();
    const boom = new Error('progress display failed');
    const onProgress = (done: number) => { if (done > 0) throw boom; };
    await expect(getFile(g, cap, { output: '-', stdout: stream, dir: root, manifest, window: 2, onProgress })).rejects.toBe(boom);
    expect(writes.length).toBe(1);
    const n = calls;
    open();
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(n);
    await g.close();
  }, 10_000);

  it.each([4, 16])('into a part file, a progress callback that throws still lets the chunks in flight be written, for a resumed run (window %i)', async (window) => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const { g, cap, manifest } = await gated({ slow: 2, gate });
    const out = path.join(root, `progress-throws-${window}.bin`);
    const boom = new Error('progress display failed');
    // The first `window` chunks are started (all 13 with 16); chunk 2 is still being fetched when
    // the first written one throws, and is let through the gate only then.
    const onProgress = (done: number) => { if (done > 0) { open(); throw boom; } };
    await expect(getFile(g, cap, { output: out, dir: root, manifest, window, onProgress })).rejects.toBe(boom);
    await g.close();
    const g2 = client();
    const res = await getFile(g2, cap, { output: out, dir: root });
    await g2.close();
    expect(res.resumedChunks).toBe(Math.min(window, manifest.layout.chunks.length));
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  }, 10_000);

  it('once stopped, a search beyond the expected holders asks no share of a node that answered HAS', async () => {
    // Chunk 0's shares are nowhere near: each is searched with HAS, and the get is stopped (its
    // reader went away) while those answers are on their way. A node that says it holds the share
    // must not be asked for it after that (SPEC.md §9.9.1: no further share is asked for).
    const g = client();
    const cap = parseCapability(shared.cap);
    const stats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
    const manifest = await fetchManifest(g, cap, stats);
    const stop = new AbortController();
    let after = 0;
    g.getShare = async () => {
      if (stop.signal.aborted) after++;
      throw err('SHARE_NOT_FOUND', 'not here');
    };
    const request = g.request.bind(g);
    g.request = (async (fp: string, req: { type: string }) => {
      if (req.type !== 'has') return request(fp, req as never);
      stop.abort(err('IO_OUTPUT_CLOSED', 'the reader went away'));
      return { type: 'has', present: [true] };
    }) as typeof g.request;
    await expect(fetchChunk(g, cap.fileKey, manifest.layout, 0, ChunkKind.DATA, stats, undefined, null, false, stop.signal)).rejects.toMatchObject({ code: 'STORAGE_ABORTED' });
    expect(stop.signal.aborted).toBe(true);
    expect(after).toBe(0);
    await g.close();
  });

  it('a folder capability is refused with IO_IS_A_DIRECTORY, nothing written', async () => {
    const folder = await fsp.mkdtemp(path.join(root, 'stdout-folder-'));
    await fsp.writeFile(path.join(folder, 'a.txt'), 'hello');
    const c = client();
    const fr = await putFolder(c, folder, { workers: false });
    const { stream, writes } = sink();
    const dir = await fsp.mkdtemp(path.join(root, 'stdout-'));
    await expect(getFile(c, parseCapability(fr.capability), { output: '-', stdout: stream, dir })).rejects.toMatchObject({ code: 'IO_IS_A_DIRECTORY' });
    await c.close();
    expect(writes.length).toBe(0);
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});

describe('refusals (SPEC.md §9.10)', () => {
  it('a wrong key is CHUNK_AUTH_FAILED, an unknown manifest MANIFEST_NOT_FOUND; no output either way', async () => {
    const c = client();
    const up = await putFile(c, file, { chunkSize: 512 * KiB });
    const good = parseCapability(up.capability);
    const out = path.join(root, 'refused.bin');
    await expect(getFile(c, { manifestId: good.manifestId, fileKey: randomBytes(32) }, { output: out })).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
    await expect(getFile(c, { manifestId: randomBytes(32), fileKey: good.fileKey }, { output: out })).rejects.toMatchObject({ code: 'MANIFEST_NOT_FOUND' });
    expect(fs.existsSync(out)).toBe(false);
    await c.close();
  });

  it('a manifest that is not protobuf is MANIFEST_MALFORMED; no output', async () => {
    const c = client();
    const key = randomBytes(32);
    const coding = { k: 4, n: 6 };
    const tally = { shares: 0, bytes: 0, relocated: 0 };
    // A manifest chunk that decrypts fine but holds garbage instead of a Manifest message.
    const junk = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x08]);
    const enc = encodeChunk(key, 0, junk, coding, ChunkKind.MANIFEST);
    await storeChunk(c, enc.shares, tally);
    const layout = { size: junk.length, chunkSize: 1024 * KiB, coding, chunks: [{ encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) }] };
    const rootBytes = encryptChunk(key, 0, encodeRoot({ version: MANIFEST_VERSION, manifest: layout }), ChunkKind.ROOT);
    await storeRoot(c, { id: shareId(rootBytes), bytes: rootBytes }, 3, tally);
    const capText = formatCapability({ manifestId: shareId(rootBytes), fileKey: key });
    const out = path.join(root, 'malformed.bin');
    await expect(getFile(c, parseCapability(capText), { output: out })).rejects.toMatchObject({ code: 'MANIFEST_MALFORMED' });
    expect(fs.existsSync(out)).toBe(false);
    await c.close();
  });

  it('a node over quota answers STORAGE_FULL and keeps serving', async () => {
    // A node of its own: the seventh holds as many small shares as placement gave it, each charged
    // at least 8 KiB (SPEC.md §9.8.4), so whether it has room for one more depends on the run.
    const small64 = await startNode(7, 64 * KiB);
    const c = client({ nodes: storageNodesOf([...nodes, small64].map((n) => n.relay)) });
    try {
      const full = small64.relay.fingerprint;
      const big = randomBytes(100 * KiB);
      await expect(c.putShare(full, shareId(big), big)).rejects.toMatchObject({ code: 'STORAGE_FULL' });
      const small = randomBytes(100);
      await c.putShare(full, shareId(small), small);
      expect((await c.getShare(full, shareId(small))).equals(small)).toBe(true);
    } finally {
      await c.close();
      await stopNode(small64);
    }
  });
});

describe('renew audits before it renews (SPEC.md §9.9.2, §9.18.3 step 6)', () => {
  it('a holder whose audit fails gets no renewal and is reported; the others are renewed', async () => {
    const f = path.join(root, 'renew-audit.bin');
    await fsp.writeFile(f, randomBytes(150 * KiB + 7));
    const up = client();
    const put = await putFile(up, f, { chunkSize: 64 * KiB, coding: { k: 2, n: 4 } }).finally(() => up.close());
    const cap = parseCapability(put.capability);
    // The holder of the first data chunk's first share flips a byte in it behind its store's back.
    const vcap = parseVerifyCapability(put.verifyCapability);
    const record = openVerifyRecord(vcap, await nodes.find((n) => n.store.has([vcap.verifyId])[0])!.store.read(vcap.verifyId));
    const id = record.chunks[0].shareIds[0].toString('hex');
    let victim: { node: TestNode; id: string } | null = null;
    for (const n of nodes) {
      const file = (await shareFiles(n.dir)).find((x) => path.basename(x) === id);
      if (!file || victim) continue;
      const b = await fsp.readFile(file);
      b[9] ^= 0xff;
      await fsp.writeFile(file, b);
      victim = { node: n, id };
    }
    expect(victim).not.toBeNull();
    const c = client();
    const real = c.request.bind(c);
    const renewedAt = new Map<string, Set<string>>();
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      if (req.type === 'renew') for (const id of req.ids) renewedAt.set(id.toString('hex'), (renewedAt.get(id.toString('hex')) ?? new Set()).add(fp));
      return real(fp, req);
    }) as typeof c.request;
    const r = await renewFile(c, cap, 86_400).finally(() => c.close());
    expect(r.audited).toBe(true);
    expect(r.failures).toEqual([expect.objectContaining({ node: victim!.node.relay.fingerprint, shareId: victim!.id, kind: 'chunk' })]);
    expect(renewedAt.get(victim!.id)?.has(victim!.node.relay.fingerprint) ?? false).toBe(false);
    // No other holder of that share: it is missing, its chunk still readable from the other 3 of 4.
    expect(r).toMatchObject({ missing: 1, unreadableChunks: 0, renewed: r.shares - 1 });
  });

  /** A file of 3 chunks (2 of 4), the first data chunk's first share, and its holder. */
  async function putForAudit(name: string) {
    const f = path.join(root, name);
    await fsp.writeFile(f, randomBytes(150 * KiB + 7));
    const up = client();
    const put = await putFile(up, f, { chunkSize: 64 * KiB, coding: { k: 2, n: 4 } }).finally(() => up.close());
    const vcap = parseVerifyCapability(put.verifyCapability);
    const record = openVerifyRecord(vcap, await nodes.find((n) => n.store.has([vcap.verifyId])[0])!.store.read(vcap.verifyId));
    const id = record.chunks[0].shareIds[0];
    const holder = nodes.find((n) => n.store.has([id])[0])!.relay.fingerprint;
    return { cap: parseCapability(put.capability), id: id.toString('hex'), holder };
  }

  /** A client whose requests go through `alter`, recording where each share's renewal went. */
  function watched(alter: (fp: string, req: Parameters<StorageClient['request']>[1], real: StorageClient['request']) => ReturnType<StorageClient['request']> | null) {
    const c = client();
    const real = c.request.bind(c) as StorageClient['request'];
    const renewedAt = new Map<string, Set<string>>();
    c.request = (async (fp: string, req: Parameters<typeof real>[1]) => {
      if (req.type === 'renew') for (const id of req.ids) renewedAt.set(id.toString('hex'), (renewedAt.get(id.toString('hex')) ?? new Set()).add(fp));
      return alter(fp, req, real) ?? real(fp, req);
    }) as typeof c.request;
    return { c, renewedAt };
  }

  it('a holder whose audit times out (no answer) is renewed, reported busy and not failed: renew exits 0', async () => {
    const { cap, id, holder } = await putForAudit('renew-timeout.bin');
    const { c, renewedAt } = watched((fp, req) => (req.type === 'challenge' && fp === holder && req.id.toString('hex') === id
      ? Promise.reject(err('STORAGE_TIMEOUT', 'no answer')) : null));
    const r = await renewFile(c, cap, 86_400).finally(() => c.close());
    expect(r.audited).toBe(true);
    // No failure: `bitcloud renew` exits 1 only on a failure or an unreadable chunk (§9.9.2).
    expect(r.failures).toEqual([]);
    expect(r.busy).toEqual([expect.objectContaining({ node: holder, shareId: id, code: 'STORAGE_TIMEOUT', kind: 'chunk' })]);
    expect(renewedAt.get(id)?.has(holder)).toBe(true);
    expect(r).toMatchObject({ missing: 0, unreadableChunks: 0, renewed: r.shares });
  });

  it('a holder that answers its audit with a wrong proof is not renewed and is a failure', async () => {
    const { cap, id, holder } = await putForAudit('renew-wrong-proof.bin');
    const { c, renewedAt } = watched((fp, req, real) => (req.type === 'challenge' && fp === holder && req.id.toString('hex') === id
      ? real(fp, req).then((a) => {
        if (a.type !== 'challenge') return a;
        const answer = Buffer.from(a.answer);
        answer[answer.length - 1] ^= 0xff;
        return { ...a, answer };
      }) : null));
    const r = await renewFile(c, cap, 86_400).finally(() => c.close());
    expect(r.failures).toEqual([expect.objectContaining({ node: holder, shareId: id, kind: 'chunk' })]);
    expect(r.busy).toEqual([]);
    expect(renewedAt.get(id)?.has(holder) ?? false).toBe(false);
    expect(r).toMatchObject({ missing: 1, unreadableChunks: 0 });
  });
});

describe('shares placed on a subset of the nodes (SPEC.md §9.9, §10.8)', () => {
  it('a reader over every node finds shares an uploader placed on one node, every time', async () => {
    const only = nodes[2];
    const up = new StorageClient({
      nodes: storageNodesOf([only.relay]),
      open: (node) => connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs: 2000 }),
    });
    try {
      for (let i = 0; i < 6; i++) {
        const f = path.join(root, `subset${i}.bin`);
        const bytes = randomBytes(3000 + i * 701);
        await fsp.writeFile(f, bytes);
        const put = await putFile(up, f, { coding: { k: 1, n: 1 }, chunkSize: 2048 });
        const cap = parseCapability(put.capability);
        // Without knowing the class: every node is searched, and the holder is remembered.
        const c1 = client();
        const r1 = await getFile(c1, cap, { output: path.join(root, `subset${i}.a`) }).finally(() => c1.close());
        expect((await fsp.readFile(r1.path)).equals(bytes)).toBe(true);
        // Knowing where placement put data shares: each is asked of its holder first.
        const c2 = client();
        const r2 = await getFile(c2, cap, { output: path.join(root, `subset${i}.b`), placementFor: async () => [only.relay.fingerprint] }).finally(() => c2.close());
        expect((await fsp.readFile(r2.path)).equals(bytes)).toBe(true);
        expect(r2.sharesFetched).toBeLessThanOrEqual(r1.sharesFetched);
        if (i === 0) {
          // renew finds them too (SPEC.md §9.9.2): every share renewed, none missing.
          const c3 = client();
          const rn = await renewFile(c3, cap).finally(() => c3.close());
          expect(rn).toMatchObject({ missing: 0, unreadableChunks: 0 });
          expect(rn.renewed).toBe(rn.shares);
        }
      }
    } finally {
      await up.close();
    }
  });
});

describe('content ids (SPEC.md §10.3.1, §10.3.2)', () => {
  it('fileContentIds computes, without sending, exactly the ids put stores for public content; contentIds reads them back', async () => {
    const c = client();
    try {
      const f = path.join(root, 'public-talk.bin');
      await fsp.writeFile(f, randomBytes(300_000));
      const o = { coding: { k: 2, n: 3 }, chunkSize: 65_536, contentClass: 'public-lecture' };
      const ahead = await fileContentIds(f, o);
      const put = await putFile(c, f, o);
      expect(ahead.manifestId.toString('hex')).toBe(put.manifestId);
      const read = await contentIds(c, parseCapability(put.capability));
      const hex = (x: { manifestShares: Buffer[]; dataShares: Buffer[] }) => [...x.manifestShares, ...x.dataShares].map((b) => b.toString('hex'));
      expect(hex(read)).toEqual(hex(ahead));
      expect(read.dataShares).toHaveLength(5 * 3); // 5 chunks of n = 3
      expect(read).toMatchObject({ contentClass: 'public-lecture', chunkSize: 65_536, coding: { k: 2, n: 3 } });
      // The same bytes under another name: another manifest id, the same data shares.
      const renamed = await fileContentIds(f, { ...o, name: 'another-name.bin' });
      expect(renamed.manifestId.equals(ahead.manifestId)).toBe(false);
      expect(renamed.dataShares.map((b) => b.toString('hex'))).toEqual(ahead.dataShares.map((b) => b.toString('hex')));
      await expect(fileContentIds(f, { ...o, contentClass: 'encrypted-private' })).rejects.toMatchObject({ code: 'POLICY_NOT_PUBLIC' });
    } finally {
      await c.close();
    }
  });
});

describe('a folder get without -o (SPEC.md §9.9.1, §9.15)', () => {
  let cap = '';
  const stored = async (): Promise<string> => {
    if (cap) return cap;
    // Stored as `Documents`, the name a reader may well have a folder of already.
    const docs = path.join(await fsp.mkdtemp(path.join(root, 'folder-src-')), 'Documents');
    await fsp.mkdir(path.join(docs, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(docs, 'notes.txt'), 'stored notes');
    await fsp.writeFile(path.join(docs, 'sub', 'more.txt'), 'stored more');
    const c = client();
    cap = (await putFolder(c, docs, { workers: false })).capability;
    await c.close();
    return cap;
  };

  it('an existing folder of the stored name is refused (IO_OUTPUT_EXISTS) and left untouched', async () => {
    const c = parseCapability(await stored());
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const mine = path.join(dir, 'Documents');
    await fsp.mkdir(mine);
    await fsp.writeFile(path.join(mine, 'notes.txt'), 'the reader\'s own notes');
    const g = client();
    await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    // A marker of another folder is not this get's either.
    await fsp.writeFile(path.join(mine, FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
    await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    await fsp.rm(path.join(mine, FOLDER_GET_MARKER));
    await g.close();
    expect(await fsp.readFile(path.join(mine, 'notes.txt'), 'utf8')).toBe('the reader\'s own notes');
    expect((await fsp.readdir(mine)).sort()).toEqual(['notes.txt']);
  });

  it('a folder get that was stopped resumes into the folder it made (its marker proves it); none is left after', async () => {
    const c = parseCapability(await stored());
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const out = path.join(dir, 'Documents');
    const marker = path.join(out, FOLDER_GET_MARKER);
    const g = client();
    // Stopped before its second file (as a kill would), the first one written.
    await expect(getFolder(g, c, undefined, { dir, onFile: (_p, i) => { if (i === 1) throw err('INTERNAL', 'stopped'); } }))
      .rejects.toMatchObject({ code: 'INTERNAL' });
    expect(await fsp.readFile(marker, 'utf8')).toBe(c.manifestId.toString('hex') + '\n');
    expect((await fsp.stat(marker)).mode & 0o777).toBe(0o600);
    expect(await fsp.readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('stored notes');
    // Its own partial file is replaced on resume.
    await fsp.writeFile(path.join(out, 'notes.txt'), 'partial');
    const r = await getFolder(g, c, undefined, { dir });
    await g.close();
    expect(r.path).toBe(out);
    expect(r.files).toBe(2);
    expect(await fsp.readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('stored notes');
    expect(await fsp.readFile(path.join(out, 'sub', 'more.txt'), 'utf8')).toBe('stored more');
    expect(fs.existsSync(marker)).toBe(false);
    expect((await fsp.readdir(out)).sort()).toEqual(['notes.txt', 'sub']);
    // Finished, the folder is the reader's now: a second get without -o is refused.
    const g2 = client();
    await expect(getFolder(g2, c, undefined, { dir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
    // -o names the folder: fetched into it, as before.
    await fsp.writeFile(path.join(out, 'notes.txt'), 'changed');
    await getFolder(g2, c, out);
    await g2.close();
    expect(await fsp.readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('stored notes');
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('a folder get stopped before its marker is written leaves nothing at <out>, and a rerun fetches it', async () => {
    const c = parseCapability(await stored());
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const out = path.join(dir, 'Documents');
    const g = client();
    // The marker's write fails (as a kill between making the folder and marking it would stop it).
    const open = fsp.open;
    const spy = vi.spyOn(fsp, 'open').mockImplementation(((file: fs.PathLike, ...rest: unknown[]) => {
      if (String(file).includes(FOLDER_GET_MARKER)) return Promise.reject(Object.assign(new Error('EIO: stopped'), { code: 'EIO' }));
      return (open as (...a: unknown[]) => Promise<fsp.FileHandle>)(file, ...rest);
    }) as typeof fsp.open);
    try {
      await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'EIO' });
    } finally {
      spy.mockRestore();
    }
    expect(fs.existsSync(out)).toBe(false);
    expect(await fsp.readdir(dir)).toEqual([]);
    const r = await getFolder(g, c, undefined, { dir });
    await g.close();
    expect(r.path).toBe(out);
    expect(await fsp.readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('stored notes');
    expect(await fsp.readFile(path.join(out, 'sub', 'more.txt'), 'utf8')).toBe('stored more');
    expect((await fsp.readdir(out)).sort()).toEqual(['notes.txt', 'sub']);
  });

  it('a marker write the folder refuses (EACCES) is IO_NOT_WRITABLE, nothing left at <out>', async () => {
    const c = parseCapability(await stored());
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const g = client();
    const open = fsp.open;
    const spy = vi.spyOn(fsp, 'open').mockImplementation(((file: fs.PathLike, ...rest: unknown[]) => {
      if (String(file).includes(FOLDER_GET_MARKER)) return Promise.reject(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }));
      return (open as (...a: unknown[]) => Promise<fsp.FileHandle>)(file, ...rest);
    }) as typeof fsp.open);
    try {
      await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'IO_NOT_WRITABLE' });
    } finally {
      spy.mockRestore();
    }
    await g.close();
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('a temporary folder that cannot be removed after a failure leaves the get\'s own error, not the removal\'s', async () => {
    const c = parseCapability(await stored());
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const g = client();
    const open = fsp.open;
    const openSpy = vi.spyOn(fsp, 'open').mockImplementation(((file: fs.PathLike, ...rest: unknown[]) => {
      if (String(file).includes(FOLDER_GET_MARKER)) return Promise.reject(Object.assign(new Error('EIO: stopped'), { code: 'EIO' }));
      return (open as (...a: unknown[]) => Promise<fsp.FileHandle>)(file, ...rest);
    }) as typeof fsp.open);
    const rm = fsp.rm;
    const rmSpy = vi.spyOn(fsp, 'rm').mockImplementation((async (p: fs.PathLike, o?: fs.RmOptions) => {
      if (path.basename(String(p)).includes('.bitcloud-new-')) throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
      return rm(p, o);
    }) as typeof fsp.rm);
    try {
      await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'EIO' });
    } finally {
      openSpy.mockRestore();
      rmSpy.mockRestore();
    }
    await g.close();
    // The leftover stays (the reader may remove it); nothing is at <out>.
    const left = await fsp.readdir(dir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^Documents\.bitcloud-new-[0-9a-f]{12}$/);
  });

  it('a folder made at <out> between the check and the rename: an empty one is replaced, one with files is IO_OUTPUT_EXISTS and kept', async () => {
    const c = parseCapability(await stored());
    const g = client();
    for (const withFile of [false, true]) {
      const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
      const out = path.join(dir, 'Documents');
      // Made by another process after the get found <out> missing, just before its rename.
      const rename = fsp.rename;
      const spy = vi.spyOn(fsp, 'rename').mockImplementation((async (from: fs.PathLike, to: fs.PathLike) => {
        if (String(to) === out) {
          fs.mkdirSync(out);
          if (withFile) fs.writeFileSync(path.join(out, 'notes.txt'), 'the reader\'s own notes');
        }
        return rename(from, to);
      }) as typeof fsp.rename);
      try {
        if (withFile) {
          await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'IO_OUTPUT_EXISTS' });
          expect(await fsp.readdir(out)).toEqual(['notes.txt']);
          expect(await fsp.readdir(dir)).toEqual(['Documents']);
        } else {
          await getFolder(g, c, undefined, { dir });
          expect((await fsp.readdir(out)).sort()).toEqual(['notes.txt', 'sub']);
        }
      } finally {
        spy.mockRestore();
      }
    }
    await g.close();
  });

  it('a listing with a folder named like the marker at its top is FOLDER_PATH_INVALID before anything is made; -o fetches it', async () => {
    // An ordinary folder may hold a sub-folder of that name: put stores its files as `.bitcloud-folder-get/…`.
    const src = path.join(await fsp.mkdtemp(path.join(root, 'folder-src-')), 'Papers');
    await fsp.mkdir(path.join(src, FOLDER_GET_MARKER), { recursive: true });
    await fsp.writeFile(path.join(src, FOLDER_GET_MARKER, 'inner.txt'), 'inner');
    await fsp.writeFile(path.join(src, 'top.txt'), 'top');
    const g = client();
    const c = parseCapability((await putFolder(g, src, { workers: false })).capability);
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    await expect(getFolder(g, c, undefined, { dir })).rejects.toMatchObject({ code: 'FOLDER_PATH_INVALID' });
    expect(await fsp.readdir(dir)).toEqual([]);
    const r = await getFolder(g, c, 'Papers', { dir });
    await g.close();
    expect(await fsp.readFile(path.join(r.path, FOLDER_GET_MARKER, 'inner.txt'), 'utf8')).toBe('inner');
    expect(await fsp.readFile(path.join(r.path, 'top.txt'), 'utf8')).toBe('top');
  });

  it('a stored name up to 255 bytes is fetched without -o: the temporary folder\'s name is cut to fit', async () => {
    // 80 three-byte characters: 240 bytes, a valid name (SPEC.md §9.4) that the suffix would push past 255.
    const name = '\u6587'.repeat(80);
    const src = path.join(await fsp.mkdtemp(path.join(root, 'folder-src-')), name);
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.txt'), 'long');
    const g = client();
    const c = parseCapability((await putFolder(g, src, { workers: false })).capability);
    const dir = await fsp.mkdtemp(path.join(root, 'folder-get-'));
    const r = await getFolder(g, c, undefined, { dir });
    await g.close();
    expect(r.path).toBe(path.join(dir, name));
    expect(await fsp.readFile(path.join(dir, name, 'a.txt'), 'utf8')).toBe('long');
    expect(await fsp.readdir(dir)).toEqual([name]);
  });
});

describe('losing nodes (SPEC.md §9.3)', () => {
  it('still succeeds with two nodes holding shares gone', async () => {
    await stopNode(nodes[3]);
    await stopNode(nodes[4]);
    const g = client();
    const out = path.join(root, 'after-loss.bin');
    const res = await getFile(g, parseCapability(shared.cap), { output: out });
    await g.close();
    expect(res.unreachableNodes.sort()).toEqual([nodes[3].relay.fingerprint, nodes[4].relay.fingerprint].sort());
    expect((await fsp.readFile(out)).equals(data)).toBe(true);
  });
});

describe('put refuses what the manifest cannot hold before any chunk is stored (SPEC.md §9.4, §9.5)', () => {
  /** Six nodes that take every share, counted. */
  const memClient = () => {
    const putShare = vi.fn(() => Promise.resolve());
    return { putShare, client: { fingerprints: Array.from({ length: 6 }, (_, i) => String(i).repeat(64)), isDead: () => false, putShare } as unknown as StorageClient };
  };

  it('a file whose manifest would pass MAX_MANIFEST_BYTES: STORAGE_MANIFEST_TOO_LARGE, no share sent', async () => {
    // 1-byte chunks of 4-of-6 take about 209 bytes of manifest each: 330 000 of them pass 64 MiB.
    expect(330_000 * 209).toBeGreaterThan(MAX_MANIFEST_BYTES);
    const f = path.join(root, 'many-chunks.bin');
    await fsp.writeFile(f, Buffer.alloc(330_000, 3));
    const { client: c, putShare } = memClient();
    // Nodes that refuse every share: an upload that starts fails at once, and the count shows it.
    putShare.mockImplementation(() => Promise.reject(Object.assign(new Error('full'), { code: 'STORAGE_FULL' })));
    await expect(putFile(c, f, { chunkSize: 1, workers: false })).rejects.toMatchObject({ code: 'STORAGE_MANIFEST_TOO_LARGE' });
    expect(putShare).not.toHaveBeenCalled();
  }, 20_000);

  /** The next fs.createReadStream gives a stream that fails with `e`, as opening the file would. */
  const failNextRead = (e: Error) => vi.spyOn(fs, 'createReadStream').mockImplementationOnce(() => {
    const r = new Readable({ read() {} });
    process.nextTick(() => r.destroy(e));
    return r as unknown as fs.ReadStream;
  });

  it('an input file that cannot be read (no permission) is IO_NOT_FOUND with its errno, no share sent (SPEC.md §9.10)', async () => {
    const f = path.join(root, 'unreadable.bin');
    await fsp.writeFile(f, 'secret');
    const { client: c, putShare } = memClient();
    // As opening a file without read permission fails (a test run as root could still read it).
    const denied = Object.assign(new Error(`EACCES: permission denied, open '${f}'`), { code: 'EACCES', errno: -13, syscall: 'open', path: f });
    const spy = failNextRead(denied);
    try {
      const e = await putFile(c, f, { workers: false }).then(() => null, (x: unknown) => x);
      expect(e).toMatchObject({ code: 'IO_NOT_FOUND' });
      expect((e as Error).message).toContain('EACCES');
      expect((e as Error).message).toContain(f);
    } finally {
      spy.mockRestore();
    }
    expect(putShare).not.toHaveBeenCalled();
  });

  it('a disk error or a limit of this process while reading the input is not IO_NOT_FOUND (SPEC.md §9.10)', async () => {
    const f = path.join(root, 'busy.bin');
    await fsp.writeFile(f, 'data');
    for (const code of ['EMFILE', 'ENFILE', 'ENOMEM', 'EIO']) {
      const { client: c } = memClient();
      const fail = Object.assign(new Error(`${code}: failed, open '${f}'`), { code, syscall: 'open', path: f });
      const spy = failNextRead(fail);
      try {
        const e = await putFile(c, f, { workers: false }).then(() => null, (x: unknown) => x);
        expect(e).toBe(fail);
      } finally {
        spy.mockRestore();
      }
    }
  });

  it('a file named with a backslash is stored without a name, as any other name a manifest cannot carry', async () => {
    const dir = path.join(root, 'back\\slash');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'ok.txt'), 'in a folder');
    const f = path.join(root, 'a\\b.txt');
    await fsp.writeFile(f, 'hello');
    const { client: c } = memClient();
    const r = await putFile(c, f, { workers: false });
    expect(r.size).toBe(5);
    // The folder's listing takes the folder's base name by the same rule.
    const fr = await putFolder(c, dir, { workers: false });
    expect(fr.files).toBe(1);
  });

  it('a leftover *.bitcloud-new-* folder of a stopped get (itself or inside the folder) is FOLDER_PATH_INVALID saying it may be removed (SPEC.md §9.9.1, §9.15)', async () => {
    const top = path.join(await fsp.mkdtemp(path.join(root, 'put-leftover-')), 'Documents.bitcloud-new-0123456789ab');
    await fsp.mkdir(top);
    await fsp.writeFile(path.join(top, FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
    const deep = await fsp.mkdtemp(path.join(root, 'put-leftover-'));
    await fsp.mkdir(path.join(deep, 'Documents.bitcloud-new-0123456789ab'));
    await fsp.writeFile(path.join(deep, 'a.txt'), 'mine');
    await fsp.writeFile(path.join(deep, 'Documents.bitcloud-new-0123456789ab', FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
    for (const dir of [top, deep]) {
      const { client: c, putShare } = memClient();
      const e = await putFolder(c, dir, { workers: false }).then(() => null, (x: unknown) => x);
      expect(e).toMatchObject({ code: 'FOLDER_PATH_INVALID', message: expect.stringContaining('leftover of a get stopped') });
      expect((e as Error).message).toContain('may be removed');
      expect((e as Error).message).not.toContain('finish it with bitcloud get');
      expect(putShare).not.toHaveBeenCalled();
    }
  });

  it('a folder only named like a get\'s temporary folder (not `.bitcloud-new-<12 hex>`) holding a marker is an unfinished get, not a leftover (SPEC.md §9.9.1, §9.15)', async () => {
    for (const name of ['notes.bitcloud-new-x', 'notes.bitcloud-new-0123456789AB', 'notes.bitcloud-new-0123456789ab.old']) {
      const top = path.join(await fsp.mkdtemp(path.join(root, 'put-lookalike-')), name);
      await fsp.mkdir(top);
      await fsp.writeFile(path.join(top, FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
      const { client: c, putShare } = memClient();
      const e = await putFolder(c, top, { workers: false }).then(() => null, (x: unknown) => x);
      expect(e).toMatchObject({ code: 'FOLDER_PATH_INVALID', message: expect.stringContaining('is an unfinished get') });
      expect((e as Error).message).toContain('finish it with bitcloud get');
      expect((e as Error).message).not.toContain('may be removed');
      expect(putShare).not.toHaveBeenCalled();
    }
  });

  it('a get\'s temporary folder given as `.`, through `..` or by a link is still told as a leftover, holding the marker or only its temporary file (SPEC.md §9.15)', async () => {
    const temp = `.${FOLDER_GET_MARKER}.4242.0123456789ab.tmp`;
    for (const file of [FOLDER_GET_MARKER, temp]) {
      const base = await fsp.mkdtemp(path.join(root, 'put-dot-'));
      const top = path.join(base, 'Documents.bitcloud-new-0123456789ab');
      await fsp.mkdir(top);
      await fsp.writeFile(path.join(top, file), 'ab'.repeat(32) + '\n');
      await fsp.symlink(top, path.join(base, 'link'));
      for (const given of [`${top}${path.sep}.`, `${top}${path.sep}..${path.sep}Documents.bitcloud-new-0123456789ab${path.sep}.`, path.join(base, 'link')]) {
        const { client: c, putShare } = memClient();
        const e = await putFolder(c, given, { workers: false }).then(() => null, (x: unknown) => x);
        expect(e).toMatchObject({ code: 'FOLDER_PATH_INVALID', message: expect.stringContaining('leftover of a get stopped before it renamed its new folder') });
        expect((e as Error).message).toContain('may be removed');
        expect((e as Error).message).not.toContain('finish it with bitcloud get');
        expect(putShare).not.toHaveBeenCalled();
      }
    }
  });

  it('the marker\'s temporary file left by a killed get, and a *.bitcloud-new-* folder holding only it, are FOLDER_PATH_INVALID saying they may be removed, no share sent (SPEC.md §9.15)', async () => {
    const temp = `.${FOLDER_GET_MARKER}.4242.0123456789ab.tmp`;
    // The get's temporary folder itself, holding only the marker's temporary file.
    const top = path.join(await fsp.mkdtemp(path.join(root, 'put-temp-')), 'Documents.bitcloud-new-0123456789ab');
    await fsp.mkdir(top);
    await fsp.writeFile(path.join(top, temp), 'ab'.repeat(32) + '\n');
    // Such a folder inside the folder put.
    const deep = await fsp.mkdtemp(path.join(root, 'put-temp-'));
    await fsp.writeFile(path.join(deep, 'a.txt'), 'mine');
    await fsp.mkdir(path.join(deep, 'Documents.bitcloud-new-0123456789ab'));
    await fsp.writeFile(path.join(deep, 'Documents.bitcloud-new-0123456789ab', temp), '');
    // The temporary file alone, in an ordinary folder.
    const stray = await fsp.mkdtemp(path.join(root, 'put-temp-'));
    await fsp.mkdir(path.join(stray, 'sub'));
    await fsp.writeFile(path.join(stray, 'a.txt'), 'mine');
    await fsp.writeFile(path.join(stray, 'sub', temp), '');
    for (const [dir, named] of [[top, top], [deep, 'Documents.bitcloud-new-0123456789ab'], [stray, `sub/${temp}`]]) {
      const { client: c, putShare } = memClient();
      const e = await putFolder(c, dir, { workers: false }).then(() => null, (x: unknown) => x);
      expect(e).toMatchObject({ code: 'FOLDER_PATH_INVALID', message: expect.stringContaining('leftover of a') });
      expect((e as Error).message).toContain(named);
      expect((e as Error).message).toContain('may be removed');
      expect(putShare).not.toHaveBeenCalled();
    }
    // Narrow: a name that only looks like it (another file's temporary name, no pid) is stored.
    const mine = await fsp.mkdtemp(path.join(root, 'put-temp-'));
    await fsp.writeFile(path.join(mine, `.${FOLDER_GET_MARKER}.notes.tmp`), 'mine');
    await fsp.writeFile(path.join(mine, '.notes.txt.4242.0123456789ab.tmp'), 'mine');
    const { client: c } = memClient();
    expect((await putFolder(c, mine, { workers: false })).files).toBe(2);
  });

  it('a folder an unfinished get is filling (its marker at the top or in a sub-folder) is FOLDER_PATH_INVALID, no share sent (SPEC.md §9.15)', async () => {
    const top = await fsp.mkdtemp(path.join(root, 'put-unfinished-'));
    await fsp.writeFile(path.join(top, 'notes.txt'), 'fetched so far');
    await fsp.writeFile(path.join(top, FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
    const deep = await fsp.mkdtemp(path.join(root, 'put-unfinished-'));
    await fsp.mkdir(path.join(deep, 'a', 'Documents'), { recursive: true });
    await fsp.writeFile(path.join(deep, 'a.txt'), 'mine');
    await fsp.writeFile(path.join(deep, 'a', 'Documents', 'notes.txt'), 'fetched so far');
    await fsp.writeFile(path.join(deep, 'a', 'Documents', FOLDER_GET_MARKER), 'ab'.repeat(32) + '\n');
    for (const dir of [top, deep]) {
      const { client: c, putShare } = memClient();
      await expect(putFolder(c, dir, { workers: false })).rejects.toMatchObject({ code: 'FOLDER_PATH_INVALID', message: expect.stringContaining('unfinished get') });
      expect(putShare).not.toHaveBeenCalled();
    }
  });
});

describe('a node that answers SHARE_HASH_MISMATCH to a good share (SPEC.md §9.9)', () => {
  const fps = Array.from({ length: 8 }, (_, i) => String(i).repeat(64));
  const liar = fps[0];
  const mismatch = () => err('SHARE_HASH_MISMATCH', 'share bytes do not hash to the share id', { remote: true });

  it('is the node at fault: the share goes to the next node and the put succeeds', async () => {
    const stored: string[] = [];
    const putShare = vi.fn((fp: string, id: Buffer) => {
      if (fp === liar) return Promise.reject(mismatch());
      stored.push(`${fp}:${id.toString('hex')}`);
      return Promise.resolve(0);
    });
    const c = { fingerprints: fps, isDead: () => false, putShare } as unknown as StorageClient;
    const f = path.join(root, 'liar.bin');
    await fsp.writeFile(f, randomBytes(20 * 1024));
    const r = await putFile(c, f, { chunkSize: 4 * 1024, workers: false });
    expect(r.size).toBe(20 * 1024);
    expect(putShare.mock.calls.some(([fp]) => fp === liar)).toBe(true);
    expect(r.relocated).toBeGreaterThan(0);
    expect(stored.some((s) => s.startsWith(liar))).toBe(false);
  });

  it('is the uploader at fault when its own share does not hash to its id: never retried elsewhere', async () => {
    const putShare = vi.fn<(fp: string, id: Buffer) => Promise<number>>(() => Promise.reject(mismatch()));
    const c = { fingerprints: fps, isDead: () => false, putShare } as unknown as StorageClient;
    const enc = encodeChunk(randomBytes(32), 0, randomBytes(100), { k: 4, n: 6 }, ChunkKind.DATA);
    const bad = enc.shares.map((s, i) => (i === 0 ? { id: s.id, bytes: Buffer.concat([s.bytes, Buffer.from([1])]) } : s));
    await expect(storeChunk(c, bad, { shares: 0, bytes: 0, relocated: 0 })).rejects.toMatchObject({ code: 'SHARE_HASH_MISMATCH' });
    // Share 0 was asked of its one node only.
    expect(putShare.mock.calls.filter(([, id]) => id.equals(bad[0].id))).toHaveLength(1);
  });
});

describe('resuming a download (SPEC.md §9.9.1)', () => {
  it('a part file whose stat fails once opened is closed before the download starts afresh (no handle leaks)', async () => {
    const out = path.join(root, 'resume-stat-fails.bin');
    const id = 'ab'.repeat(32);
    const first = await DownloadOutput.open(out, id, 4096, 1);
    await first.writeChunk(0, 0, Buffer.alloc(4096, 1));
    await first.suspend();
    expect(fs.existsSync(DownloadOutput.progressPath(out))).toBe(true);
    const probe = await fsp.open(DownloadOutput.partPath(out), 'r');
    const proto = Object.getPrototypeOf(probe) as { stat: () => Promise<fs.Stats> };
    await probe.close();
    // The handle whose stat fails is kept, to see that it was closed (its fd is -1 once closed);
    // counting the process's open files would also count whatever else opens or closes meanwhile.
    const failed: fsp.FileHandle[] = [];
    const stat = vi.spyOn(proto, 'stat').mockImplementationOnce(async function (this: fsp.FileHandle) {
      failed.push(this);
      throw Object.assign(new Error('EIO: i/o error, fstat'), { code: 'EIO' });
    });
    try {
      const again = await DownloadOutput.open(out, id, 4096, 1);
      expect(again.isDone(0)).toBe(false); // started afresh
      await again.discard();
    } finally {
      stat.mockRestore();
    }
    expect(failed.map((fh) => fh.fd)).toEqual([-1]);
  });
});
