// SPEC.md §9.18, §9.19: verify capabilities, the verify record, and check/repair/renew of a file
// with real in-process storage nodes over direct sessions (TLS on 127.0.0.1): a node that deleted
// or altered a share is caught by its audit and the share is rebuilt on another node from k good
// ones, without the read key; the file then reads back after further node loss.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { blake2b, randomBytes } from '../../src/crypto/primitives';
import { err, isBitcloudError } from '../../src/errors';
import { connectStorageDirect } from '../../src/storage/direct';
import { parseCapability } from '../../src/storage/capability';
import { auditRoot } from '../../src/storage/audit';
import { encodeChunk } from '../../src/storage/encode';
import { shareId } from '../../src/storage/share';
import {
  deriveVerifyKey, formatVerifyCapability, openVerifyRecord, parseVerifyCapability, sealVerifyRecord, type VerifyCapability,
} from '../../src/storage/verify-cap';
import { decodeVerifyRecord, encodeVerifyRecord } from '../../src/wire/verify-record';
import { StorageClient, storageNodesOf } from '../../src/client/storage-client';
import { putFile } from '../../src/client/storage-client-put';
import { getFile } from '../../src/client/storage-client-get';
import { keepFile, rebuildShares } from '../../src/client/storage-client-verify';
import { addKept, loadKeeperState, recordPass, renewDue, saveKeeperState } from '../../src/client/keeper';
import { shareFiles, startNode as startStorageNode, stopNode, type TestNode } from '../helpers/storage-nodes';

const KiB = 1024;
let root: string;
const nodes: TestNode[] = [];

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

const startNode = (i: number): Promise<TestNode> => startStorageNode(root, i, 64 * 1024 * KiB);

function client(): StorageClient {
  return new StorageClient({
    nodes: storageNodesOf(nodes.map((n) => n.relay)),
    open: (node) => connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs: 2000 }),
  });
}

/** `size` random bytes written to `name` and put on the nodes (64 KiB chunks, 4 of 6 shares). */
async function putRandomFile(name: string, size: number) {
  const data = randomBytes(size);
  const file = path.join(root, name);
  await fsp.writeFile(file, data);
  const c = client();
  const put = await putFile(c, file, { chunkSize: 64 * KiB, coding: { k: 4, n: 6 } });
  await c.close();
  return { data, put, vcap: parseVerifyCapability(put.verifyCapability) };
}

/** The file's verify record, from the first node holding a copy. */
async function readVerifyRecord(vcap: VerifyCapability) {
  for (const n of nodes) {
    let bytes: Buffer;
    try { bytes = await n.store.read(vcap.verifyId); } catch { continue; }
    return openVerifyRecord(vcap, bytes);
  }
  throw new Error('no copy');
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-keep-'));
  for (let i = 0; i < 10; i++) nodes.push(await startNode(i));
});

afterAll(async () => {
  for (const n of nodes) await stopNode(n);
  await fsp.rm(root, { recursive: true, force: true });
});

describe('verify capability and record (SPEC.md §9.18.1, §9.18.2)', () => {
  it('round-trips; bad text is CAP_MALFORMED; a bad record is VERIFY_RECORD_MALFORMED', () => {
    const c = { manifestId: randomBytes(32), verifyId: randomBytes(32), verifyKey: randomBytes(32) };
    const text = formatVerifyCapability(c);
    expect(text).toMatch(/^bitcloud-verify:[a-z2-7]{52}:[a-z2-7]{52}#[a-z2-7]{52}$/);
    expect(parseVerifyCapability(text)).toEqual(c);
    expect(codeOf(() => parseVerifyCapability(text.replace('#', ':')))).toBe('CAP_MALFORMED');
    expect(codeOf(() => parseVerifyCapability('bitcloud:' + text.slice(16)))).toBe('CAP_MALFORMED');
    const rec = { k: 2, n: 3, chunks: [{ kind: 1 as const, index: 0, shareSize: 10, shareIds: [0, 1, 2].map(() => randomBytes(32)), auditRoots: [0, 1, 2].map(() => randomBytes(32)) }] };
    expect(decodeVerifyRecord(encodeVerifyRecord(rec))).toEqual(rec);
    const b = encodeVerifyRecord(rec);
    expect(codeOf(() => decodeVerifyRecord(b.subarray(0, b.length - 1)))).toBe('VERIFY_RECORD_MALFORMED');
    expect(codeOf(() => decodeVerifyRecord(Buffer.concat([b, Buffer.alloc(1)])))).toBe('VERIFY_RECORD_MALFORMED');
    const k0 = Buffer.from(b); k0[1] = 0;
    expect(codeOf(() => decodeVerifyRecord(k0))).toBe('VERIFY_RECORD_MALFORMED');
    // Sealed under the verify key: the file key cannot stand in for it, nor a wrong id.
    const K = randomBytes(32);
    const vk = deriveVerifyKey(K);
    expect(vk.equals(K)).toBe(false);
    const sealed = sealVerifyRecord(vk, rec);
    expect(openVerifyRecord({ manifestId: c.manifestId, verifyId: sealed.id, verifyKey: vk }, sealed.bytes)).toEqual(rec);
    expect(codeOf(() => openVerifyRecord({ manifestId: c.manifestId, verifyId: sealed.id, verifyKey: K }, sealed.bytes))).toBe('CHUNK_AUTH_FAILED');
    expect(codeOf(() => openVerifyRecord({ manifestId: c.manifestId, verifyId: randomBytes(32), verifyKey: vk }, sealed.bytes))).toBe('SHARE_HASH_MISMATCH');
  });

  it('rebuilding from any k shares gives back every share byte for byte', () => {
    const enc = encodeChunk(randomBytes(32), 0, randomBytes(5000), { k: 3, n: 10 });
    const size = enc.shares[0].bytes.length;
    const some: (Buffer | null)[] = enc.shares.map((s, j) => ([2, 5, 9].includes(j) ? s.bytes : null));
    const all = rebuildShares({ k: 3, n: 10 }, some, size);
    all.forEach((b, j) => expect(shareId(b).equals(enc.shares[j].id)).toBe(true));
  });
});

describe('keeper state (SPEC.md §9.19)', () => {
  it('survives a restart (saved atomically, mode 0600); a damaged file is KEEPER_STATE_CORRUPT', async () => {
    const dir = path.join(root, 'keeper');
    const s = await loadKeeperState(dir);
    const cap = formatVerifyCapability({ manifestId: randomBytes(32), verifyId: randomBytes(32), verifyKey: randomBytes(32) });
    expect(addKept(s, cap, 100)).toBe(true);
    expect(addKept(s, cap, 101)).toBe(false);
    expect(renewDue(s.files[0], 100, 60)).toBe(true);
    recordPass(s.files[0], { shares: 8, healthy: 7, repaired: 1, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 6, failures: [], busy: [], unknown: 0, expiresAt: 1000, placed: [] }, 200);
    expect(renewDue(s.files[0], 200, 60)).toBe(false);
    expect(renewDue(s.files[0], 950, 60)).toBe(true);
    await saveKeeperState(dir, s);
    expect((await fsp.stat(path.join(dir, 'keeper.json'))).mode & 0o777).toBe(0o600);
    expect(await loadKeeperState(dir)).toEqual(s);
    await fsp.writeFile(path.join(dir, 'keeper.json'), '{"version":1,"files":[{"verifyCap":"x"}]}');
    await expect(loadKeeperState(dir)).rejects.toMatchObject({ code: 'KEEPER_STATE_CORRUPT' });
    await fsp.writeFile(path.join(dir, 'keeper.json'), 'not json');
    await expect(loadKeeperState(dir)).rejects.toMatchObject({ code: 'KEEPER_STATE_CORRUPT' });
  });
});

describe('check and repair with real storage nodes (SPEC.md §9.17, §9.18.3)', () => {
  it('a pass whose renewal of a held share failed reports no expiry, and the keeper keeps the one it had (SPEC.md §9.19)', async () => {
    const { vcap } = await putRandomFile('renew-fail.bin', 100 * KiB + 3);
    const record = await readVerifyRecord(vcap);
    // The node holding the first chunk's first share does not answer renewals (down just then).
    const victim = nodes.find((n) => n.store.has([record.chunks[0].shareIds[0]])[0])!.relay.fingerprint;
    const c1 = client();
    const real = c1.request.bind(c1);
    vi.spyOn(c1, 'request').mockImplementation(((fp: string, req: Parameters<typeof c1.request>[1]) =>
      req.type === 'renew' && fp === victim ? Promise.reject(err('STORAGE_TIMEOUT', 'no answer')) : real(fp, req)) as typeof c1.request);
    const pass = await keepFile(c1, vcap, { renew: true });
    await c1.close();
    vi.restoreAllMocks();
    expect(pass).toMatchObject({ healthy: pass.shares, lost: 0, unrecoverableChunks: 0 });
    // Every other share was renewed for 7 days, but that one keeps its old lease: the file is not
    // known to be safe for 7 days, so no expiry is reported ...
    expect(pass.expiresAt).toBe(0);
    // ... and the keeper keeps the expiry it had, so the renewal stays due.
    const now = Math.floor(Date.now() / 1000);
    const kept = { expiresAt: now + 3600 } as Parameters<typeof recordPass>[0];
    recordPass(kept, pass, now, true);
    expect(kept.expiresAt).toBe(now + 3600);
    expect(renewDue(kept, now, 2 * 86_400)).toBe(true);
  });

  it('a renewing pass renews no share at a holder whose audit failed; the share is rebuilt and renewed elsewhere (SPEC.md §9.18.3 step 6)', async () => {
    const { vcap } = await putRandomFile('renew-failed-audit.bin', 200 * KiB + 5);
    const record = await readVerifyRecord(vcap);
    // One holder lost a share behind its store's back (it still answers `has`), another holds an
    // altered copy: both claim the share and fail its audit.
    const [gone, bad] = [record.chunks[0].shareIds[0], record.chunks[1].shareIds[1]];
    const holderOf = (id: Buffer) => nodes.find((n) => n.running && n.store.has([id])[0])!;
    const [goneAt, badAt] = [holderOf(gone), holderOf(bad)];
    const fileOf = async (n: TestNode, id: Buffer) => (await shareFiles(n.dir)).find((f) => path.basename(f) === id.toString('hex'))!;
    await fsp.rm(await fileOf(goneAt, gone));
    const altered = await fileOf(badAt, bad);
    const b = await fsp.readFile(altered);
    b[5] ^= 0xff;
    await fsp.writeFile(altered, b);
    const c1 = client();
    const real = c1.request.bind(c1);
    const renewedAt = new Map<string, Set<string>>(); // share hex → nodes sent a renewal of it
    vi.spyOn(c1, 'request').mockImplementation(((fp: string, req: Parameters<typeof c1.request>[1]) => {
      if (req.type === 'renew') for (const id of req.ids) renewedAt.set(id.toString('hex'), (renewedAt.get(id.toString('hex')) ?? new Set()).add(fp));
      return real(fp, req);
    }) as typeof c1.request);
    const pass = await keepFile(c1, vcap, { renew: true });
    await c1.close();
    vi.restoreAllMocks();
    expect(pass.failures.map((f) => [f.node, f.shareId]).sort()).toEqual([
      [goneAt.relay.fingerprint, gone.toString('hex')], [badAt.relay.fingerprint, bad.toString('hex')]].sort());
    expect(pass).toMatchObject({ repaired: 2, lost: 0, unrecoverableChunks: 0 });
    expect(renewedAt.get(gone.toString('hex'))?.has(goneAt.relay.fingerprint)).toBe(false);
    expect(renewedAt.get(bad.toString('hex'))?.has(badAt.relay.fingerprint)).toBe(false);
    // Each is renewed where it was rebuilt, and the file's expiry is known.
    expect(renewedAt.get(gone.toString('hex'))?.size).toBe(1);
    expect(renewedAt.get(bad.toString('hex'))?.size).toBe(1);
    expect(pass.expiresAt).toBeGreaterThan(Date.now() / 1000);
  });

  it('a renewing pass without repair renews a holder whose audit got no answer (timeout, lost connection): unknown, not failed (SPEC.md §9.18.3 steps 3 and 6)', async () => {
    const { vcap } = await putRandomFile('renew-no-answer.bin', 200 * KiB + 5);
    const record = await readVerifyRecord(vcap);
    const [slow, lost] = [record.chunks[0].shareIds[0], record.chunks[1].shareIds[1]];
    const holderOf = (id: Buffer) => nodes.find((n) => n.running && n.store.has([id])[0])!.relay.fingerprint;
    const [slowAt, lostAt] = [holderOf(slow), holderOf(lost)];
    const c1 = client();
    const real = c1.request.bind(c1);
    const renewedAt = new Map<string, Set<string>>(); // share hex → nodes sent a renewal of it
    vi.spyOn(c1, 'request').mockImplementation(((fp: string, req: Parameters<typeof c1.request>[1]) => {
      if (req.type === 'renew') for (const id of req.ids) renewedAt.set(id.toString('hex'), (renewedAt.get(id.toString('hex')) ?? new Set()).add(fp));
      if (req.type === 'challenge' && fp === slowAt && req.id.equals(slow)) return Promise.reject(err('STORAGE_TIMEOUT', 'no answer'));
      if (req.type === 'challenge' && fp === lostAt && req.id.equals(lost)) return Promise.reject(err('STORAGE_CHANNEL_CLOSED', 'stream closed'));
      return real(fp, req);
    }) as typeof c1.request);
    const pass = await keepFile(c1, vcap, { renew: true, repair: false });
    await c1.close();
    vi.restoreAllMocks();
    expect(pass.failures).toEqual([]);
    expect(pass.busy.map((f) => [f.node, f.shareId, f.code]).sort()).toEqual([
      [slowAt, slow.toString('hex'), 'STORAGE_TIMEOUT'], [lostAt, lost.toString('hex'), 'STORAGE_CHANNEL_CLOSED']].sort());
    expect(pass).toMatchObject({ unknown: 2, repaired: 0, lost: 0, unrecoverableChunks: 0 });
    expect(renewedAt.get(slow.toString('hex'))?.has(slowAt)).toBe(true);
    expect(renewedAt.get(lost.toString('hex'))?.has(lostAt)).toBe(true);
  });

  it('a repairing pass renews a holder that answered has and whose audit timed out, and rebuilds its share elsewhere (SPEC.md §9.18.3 steps 3 and 6)', async () => {
    const { vcap } = await putRandomFile('repair-no-answer.bin', 200 * KiB + 5);
    const record = await readVerifyRecord(vcap);
    const slow = record.chunks[0].shareIds[0];
    const slowHex = slow.toString('hex');
    const slowAt = nodes.find((n) => n.running && n.store.has([slow])[0])!.relay.fingerprint;
    const c1 = client();
    const real = c1.request.bind(c1);
    const renewedAt = new Map<string, Set<string>>(); // share hex → nodes sent a renewal of it
    const storedAt: string[] = []; // nodes the slow share was put on
    vi.spyOn(c1, 'request').mockImplementation(((fp: string, req: Parameters<typeof c1.request>[1]) => {
      if (req.type === 'renew') for (const id of req.ids) renewedAt.set(id.toString('hex'), (renewedAt.get(id.toString('hex')) ?? new Set()).add(fp));
      if (req.type === 'put' && req.id.equals(slow)) storedAt.push(fp);
      if (req.type === 'challenge' && fp === slowAt && req.id.equals(slow)) return Promise.reject(err('STORAGE_TIMEOUT', 'no answer'));
      return real(fp, req);
    }) as typeof c1.request);
    const pass = await keepFile(c1, vcap, { renew: true });
    await c1.close();
    vi.restoreAllMocks();
    expect(pass.failures).toEqual([]);
    expect(pass.busy.map((f) => [f.node, f.shareId, f.code])).toEqual([[slowAt, slowHex, 'STORAGE_TIMEOUT']]);
    expect(pass).toMatchObject({ unknown: 0, repaired: 1, lost: 0, unrecoverableChunks: 0 });
    expect(storedAt).toHaveLength(1);
    expect(storedAt[0]).not.toBe(slowAt);
    expect(nodes.find((n) => n.relay.fingerprint === storedAt[0])!.store.has([slow])[0]).toBe(true);
    expect(pass.placed.find((p) => p.shareId.equals(slow))?.node).toBe(storedAt[0]);
    // Renewed at the holder that did not answer and at the new one.
    expect(renewedAt.get(slowHex)?.has(slowAt)).toBe(true);
    expect(renewedAt.get(slowHex)?.has(storedAt[0])).toBe(true);
  });

  it('a deleted and an altered share are caught by audit and rebuilt elsewhere; the file survives more loss', async () => {
    const { data, put, vcap } = await putRandomFile('in.bin', 300 * KiB + 17);
    expect(vcap.manifestId.toString('hex')).toBe(put.manifestId);
    expect(vcap.verifyKey.equals(deriveVerifyKey(parseCapability(put.capability).fileKey))).toBe(true);

    const c1 = client();
    const first = await keepFile(c1, vcap, { renew: true });
    await c1.close();
    // 5 data chunks + 1 manifest chunk, 6 shares each, plus the root and the verify record.
    expect(first).toMatchObject({ shares: 6 * 6 + 2, healthy: 6 * 6 + 2, repaired: 0, lost: 0, unrecoverableChunks: 0, failures: [] });
    expect(first.audits).toBeGreaterThanOrEqual(36);
    expect(first.expiresAt).toBeGreaterThan(Date.now() / 1000);

    // Node A deletes a chunk share behind the store's back; node B flips a byte in one.
    const record = await readVerifyRecord(vcap);
    const chunkIds = new Set(record.chunks.flatMap((ch) => ch.shareIds.map((i) => i.toString('hex'))));
    const holding = [];
    for (const n of nodes) {
      const files = (await shareFiles(n.dir)).filter((f) => chunkIds.has(path.basename(f)));
      if (files.length) holding.push({ n, files });
    }
    expect(holding.length).toBeGreaterThanOrEqual(6);
    await fsp.rm(holding[0].files[0]);
    const altered = holding[1].files[0];
    const b = await fsp.readFile(altered);
    b[3] ^= 0xff;
    await fsp.writeFile(altered, b);

    const c2 = client();
    const second = await keepFile(c2, vcap);
    await c2.close();
    const codes = second.failures.map((f) => f.code).sort();
    expect(codes).toEqual(['SHARE_CORRUPT', 'SHARE_NOT_FOUND']);
    expect(second).toMatchObject({ healthy: 36, repaired: 2, lost: 0, unrecoverableChunks: 0 });

    // Every share is healthy again, on n distinct nodes per chunk.
    const c3 = client();
    const third = await keepFile(c3, vcap);
    await c3.close();
    expect(third).toMatchObject({ healthy: 38, repaired: 0, failures: [] });
    for (const ch of record.chunks) {
      const where = new Set<string>();
      for (const id of ch.shareIds) {
        const at = nodes.filter((n) => n.store.has([id])[0]).map((n) => n.relay.fingerprint);
        expect(at.length).toBeGreaterThanOrEqual(1);
        where.add(at[0]);
      }
      expect(where.size).toBe(6);
    }

    // Lose 2 nodes, repair, lose 2 more: still readable (needs 6 live nodes for repair; 10 − 2 = 8).
    await stopNode(nodes[8]);
    await stopNode(nodes[9]);
    const c4 = client();
    const fourth = await keepFile(c4, vcap);
    await c4.close();
    expect(fourth.unrecoverableChunks).toBe(0);
    expect(fourth.lost).toBe(0);
    await stopNode(nodes[6]);
    await stopNode(nodes[7]);
    const c5 = client();
    const fifth = await keepFile(c5, vcap);
    await c5.close();
    expect(fifth.unrecoverableChunks).toBe(0);
    const g = client();
    const out = path.join(root, 'out.bin');
    await getFile(g, parseCapability(put.capability), { output: out });
    await g.close();
    expect(blake2b(await fsp.readFile(out)).equals(blake2b(data))).toBe(true);
    // The audit roots in the record are those of the shares stored.
    const ch0 = record.chunks[0];
    const holder = nodes.find((n) => n.running && n.store.has([ch0.shareIds[0]])[0]);
    if (holder) expect(auditRoot(await holder.store.read(ch0.shareIds[0])).equals(ch0.auditRoots[0])).toBe(true);
  }, 120_000);
});
