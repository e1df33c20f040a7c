// SPEC.md §9.18.2, §9.18.3: the verify record's bounds, and check/repair against an in-memory
// set of storage nodes (no sockets): where rebuilt shares go, what a rebuilt share that disagrees
// with the record does, and the leases repaired shares are stored with.
import { Duplex } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { err, isBitcloudError } from '../../src/errors';
import { auditRoot, proveBlocks } from '../../src/storage/audit';
import { FrameDecoder } from '../../src/storage/framing';
import { auditProof, decodeRequest, encodeResponseFrame, type StorageResponse } from '../../src/storage/protocol';
import { encodeAuditAnswer } from '../../src/wire/audit-answer';
import { encodeChunk } from '../../src/storage/encode';
import { rankNodes } from '../../src/storage/placement';
import type { StorageRequest } from '../../src/storage/protocol';
import { MAX_SHARE_BYTES, shareId } from '../../src/storage/share';
import { deriveVerifyKey, sealVerifyRecord, type VerifyCapability } from '../../src/storage/verify-cap';
import { decodeVerifyRecord, encodeVerifyRecord, type VerifyChunk } from '../../src/wire/verify-record';
import type { AuditCommitment } from '../../src/storage/auditor';
import { StorageClient, type StorageNode } from '../../src/client/storage-client';
import { fetchVerifyRecord, KEEP_AUDITS_PER_NODE, keepFile } from '../../src/client/storage-client-verify';
import { earliestExpiry } from '../../src/client/lease-expiry';
import { shareClient } from '../helpers/share-client';
import { captureStdout } from '../helpers/output';
import { addKept, loadKeeperState, runKeeper, updateKeeperState } from '../../src/client/keeper';
import { printStatus } from '../../src/client/commands/keep';
import { formatVerifyCapability } from '../../src/storage/verify-cap';
import type { KeepReport } from '../../src/client/storage-client-verify';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('verify record bounds (SPEC.md §9.18.2)', () => {
  it('a share_size above MAX_SHARE_BYTES is VERIFY_RECORD_MALFORMED', () => {
    const rec = (shareSize: number) => ({ k: 1, n: 2, chunks: [{ kind: 1 as const, index: 0, shareSize, shareIds: [randomBytes(32), randomBytes(32)], auditRoots: [randomBytes(32), randomBytes(32)] }] });
    const ok = rec(MAX_SHARE_BYTES);
    expect(decodeVerifyRecord(encodeVerifyRecord(ok))).toEqual(ok);
    expect(codeOf(() => decodeVerifyRecord(encodeVerifyRecord(rec(MAX_SHARE_BYTES + 1))))).toBe('VERIFY_RECORD_MALFORMED');
    expect(codeOf(() => decodeVerifyRecord(encodeVerifyRecord(rec(0xffff_ffff))))).toBe('VERIFY_RECORD_MALFORMED');
  });
});

/** The default lease of the stand-in client (what `putShare` uses without a lease). */
const CLIENT_DEFAULT = 111;
/** What a node grants for lease 0. */
const NODE_DEFAULT = 10_000;

/** Storage nodes in memory, behind the few StorageClient calls keepFile makes. */
class Nodes {
  readonly fps: string[];
  readonly held = new Map<string, Map<string, Buffer>>(); // node → share hex → bytes
  readonly puts: { node: string; id: string; lease: number }[] = [];
  readonly renews: { node: string; ids: string[]; lease: number }[] = [];
  /** The nodes' clock (Unix seconds), set no later than any request of a pass is sent (SPEC.md §9.9.2). */
  now = Math.floor(Date.now() / 1000);

  constructor(count: number) {
    this.fps = Array.from({ length: count }, () => randomBytes(32).toString('hex'));
    for (const fp of this.fps) this.held.set(fp, new Map());
  }

  /** Shares a node answers `has` for without holding them (it dropped them), by node. */
  readonly dropped = new Map<string, Set<string>>();
  claims(node: string, id: Buffer): boolean { return this.dropped.get(node)?.has(id.toString('hex')) ?? false; }
  /** The node drops the share but goes on claiming it in `has` answers. */
  drop(node: string, id: Buffer): void {
    const hex = id.toString('hex');
    if (!this.held.get(node)!.delete(hex)) return;
    let s = this.dropped.get(node);
    if (!s) this.dropped.set(node, (s = new Set()));
    s.add(hex);
  }

  place(node: string, bytes: Buffer): void { this.held.get(node)!.set(shareId(bytes).toString('hex'), bytes); }
  holders(id: Buffer): string[] { return this.fps.filter((fp) => this.held.get(fp)!.has(id.toString('hex'))); }
  granted(lease: number): number { return this.now + (lease || NODE_DEFAULT); }

  client(): StorageClient {
    const c = {
      fingerprints: this.fps,
      requestTimeoutMs: 120_000,
      isDead: () => false,
      request: async (fp: string, req: StorageRequest) => {
        if (req.type === 'has') return { type: 'has', present: req.ids.map((id) => this.held.get(fp)!.has(id.toString('hex')) || this.claims(fp, id)) };
        if (req.type === 'audit') {
          const b = this.held.get(fp)!.get(req.id.toString('hex'));
          if (!b) throw err('SHARE_NOT_FOUND', 'no such share', { remote: true });
          return { type: 'audit', proof: auditProof(req.nonce, b) };
        }
        if (req.type === 'renew') {
          this.renews.push({ node: fp, ids: req.ids.map((i) => i.toString('hex')), lease: req.leaseSeconds });
          return { type: 'renew', expiresAt: req.ids.map((id) => (this.held.get(fp)!.has(id.toString('hex')) ? this.granted(req.leaseSeconds) : 0)) };
        }
        throw new Error(`unexpected ${req.type}`);
      },
      getShare: async (fp: string, id: Buffer) => {
        const b = this.held.get(fp)!.get(id.toString('hex'));
        if (!b) throw err('SHARE_NOT_FOUND', 'no such share', { remote: true });
        return b;
      },
      putShare: async (fp: string, id: Buffer, data: Buffer, leaseSeconds?: number) => {
        const lease = leaseSeconds ?? CLIENT_DEFAULT;
        this.puts.push({ node: fp, id: id.toString('hex'), lease });
        this.held.get(fp)!.set(id.toString('hex'), data);
        return this.granted(lease);
      },
      auditShare: async (fp: string, cm: AuditCommitment) => {
        const b = this.held.get(fp)!.get(cm.shareId.toString('hex'));
        const ok = !!b && auditRoot(b).equals(cm.root);
        return { shareId: cm.shareId.toString('hex'), ok, ...(ok ? {} : { code: 'SHARE_NOT_FOUND' }), nonce: '', blocks: [] };
      },
    };
    return c as unknown as StorageClient;
  }
}

const K = 2;
const N = 4;

/** A file of `count` chunks (k = 2, n = 4) with its root and verify record held by the first n nodes. */
function file(nodes: Nodes, count: number): { cap: VerifyCapability; chunks: VerifyChunk[]; shares: Buffer[][]; seal: (chunks: VerifyChunk[]) => VerifyCapability } {
  const fileKey = randomBytes(32);
  const shares: Buffer[][] = [];
  const chunks: VerifyChunk[] = [];
  for (let i = 0; i < count; i++) {
    const enc = encodeChunk(fileKey, i, randomBytes(3000), { k: K, n: N });
    shares.push(enc.shares.map((x) => x.bytes));
    chunks.push({ kind: 1, index: i, shareSize: enc.shares[0].bytes.length, shareIds: enc.shares.map((x) => x.id), auditRoots: enc.shares.map((x) => auditRoot(x.bytes)) });
  }
  const root = randomBytes(200);
  const verifyKey = randomBytes(32);
  const seal = (cs: VerifyChunk[]) => {
    const sealed = sealVerifyRecord(verifyKey, { k: K, n: N, chunks: cs });
    for (const fp of nodes.fps.slice(0, N)) { nodes.place(fp, root); nodes.place(fp, sealed.bytes); }
    return { manifestId: shareId(root), verifyId: sealed.id, verifyKey };
  };
  return { cap: seal(chunks), chunks, shares, seal };
}

describe('repair against in-memory nodes (SPEC.md §9.18.3)', () => {
  it('a rebuilt share goes to a node holding no good share of the chunk, counting every holder that passed', async () => {
    const nodes = new Nodes(8);
    const { cap, chunks, shares } = file(nodes, 1);
    const [id0, , , id3] = chunks[0].shareIds;
    // Share 0 is held (and proven) by the first two nodes of share 3's ranking; 1 and 2 by the next.
    const r3 = rankNodes(id3, nodes.fps);
    nodes.place(r3[0], shares[0][0]);
    nodes.place(r3[1], shares[0][0]);
    nodes.place(r3[2], shares[0][1]);
    nodes.place(r3[3], shares[0][2]);
    const r = await keepFile(nodes.client(), cap);
    expect(r).toMatchObject({ healthy: 3 + 2, repaired: 1, lost: 0, unrecoverableChunks: 0, failures: [] });
    expect(nodes.puts.filter((p) => p.id === id3.toString('hex')).map((p) => p.node)).toEqual([r3[4]]);
    expect(nodes.holders(id0)).toEqual(expect.arrayContaining([r3[0], r3[1]]));
    // Every node holds at most one share of the chunk (besides the second copy of share 0).
    for (const fp of [r3[0], r3[1]]) expect(chunks[0].shareIds.filter((id) => nodes.holders(id).includes(fp))).toHaveLength(1);
  });

  it('a chunk whose good shares cannot be fetched (fewer than k) is unrecoverable for this pass', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    // Shares 0..2 pass their audits (3 >= k), share 3 is missing, but the holders refuse to hand over shares.
    for (let j = 0; j < 3; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const base = nodes.client();
    const client = Object.assign(Object.create(base) as StorageClient, {
      getShare: async (fp: string, id: Buffer) => {
        if (nodes.fps.slice(4).includes(fp)) throw err('STORAGE_TIMEOUT', 'no answer');
        return base.getShare(fp, id);
      },
    });
    const r = await keepFile(client, cap);
    expect(r).toMatchObject({ healthy: 3 + 2, repaired: 0, lost: 1, unrecoverableChunks: 1 });
    expect(nodes.puts).toEqual([]);
  });

  it('a chunk whose rebuilt shares disagree with the record writes nothing; the pass goes on and renews', async () => {
    const nodes = new Nodes(8);
    const f = file(nodes, 2);
    // Chunk 0: shares 2 and 3 missing, and the record names a wrong audit root for share 3.
    const bad = { ...f.chunks[0], auditRoots: [...f.chunks[0].auditRoots.slice(0, 3), randomBytes(32)] };
    const cap = f.seal([bad, f.chunks[1]]);
    nodes.place(nodes.fps[4], f.shares[0][0]);
    nodes.place(nodes.fps[5], f.shares[0][1]);
    // Chunk 1: share 3 missing, rebuildable.
    for (let j = 0; j < 3; j++) nodes.place(nodes.fps[4 + j], f.shares[1][j]);
    const r = await keepFile(nodes.client(), cap, { renew: true });
    expect(r).toMatchObject({ mismatchedChunks: 1, repaired: 1, lost: 2, unrecoverableChunks: 0 });
    const ids0 = new Set(f.chunks[0].shareIds.map((i) => i.toString('hex')));
    expect(nodes.puts.filter((p) => ids0.has(p.id))).toEqual([]);
    expect(nodes.puts.map((p) => p.id)).toEqual([f.chunks[1].shareIds[3].toString('hex')]);
    expect(nodes.renews.length).toBeGreaterThan(0);
    expect(r.expiresAt).toBeGreaterThan(nodes.now);
  });

  it('repaired and copied shares get the lease the pass renews with, and their expiry counts', async () => {
    const nodes = new Nodes(8);
    const { cap, chunks, shares } = file(nodes, 1);
    for (let j = 0; j < 3; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    // The root is held by one node only: copied to n − 1 more.
    for (const fp of nodes.fps.slice(1, N)) nodes.held.get(fp)!.delete(cap.manifestId.toString('hex'));
    const renewing = await keepFile(nodes.client(), cap, { renew: true, leaseSeconds: 777 });
    expect(renewing.repaired).toBe(2);
    expect(nodes.puts.length).toBe(1 + (N - 1));
    expect(nodes.puts.every((p) => p.lease === 777)).toBe(true);
    expect(renewing.expiresAt).toBe(nodes.now + 777);

    // Without renewal, a given lease still applies, and the repaired share's expiry is reported.
    nodes.puts.length = 0;
    nodes.renews.length = 0;
    nodes.now = Math.floor(Date.now() / 1000);
    const id3 = chunks[0].shareIds[3];
    for (const fp of nodes.holders(id3)) nodes.held.get(fp)!.delete(id3.toString('hex'));
    const plain = await keepFile(nodes.client(), cap, { leaseSeconds: 500 });
    expect(nodes.renews).toEqual([]);
    expect(nodes.puts).toEqual([expect.objectContaining({ id: id3.toString('hex'), lease: 500 })]);
    expect(plain.expiresAt).toBe(nodes.now + 500);
  });
});

/**
 * One node holding a whole file of `chunks` chunks (k = 1, n = 2, shares of 64 bytes) and its
 * verify record (the manifest is not held): what the audit tests drive a pass over.
 */
function fakeAuditNode(chunks: number): { fp: string; held: Map<string, Buffer>; cap: VerifyCapability } {
  const held = new Map<string, Buffer>();
  const cs: VerifyChunk[] = [];
  for (let i = 0; i < chunks; i++) {
    const pair = [randomBytes(64), randomBytes(64)];
    for (const b of pair) held.set(shareId(b).toString('hex'), b);
    cs.push({ kind: 1, index: i, shareSize: 64, shareIds: pair.map((b) => shareId(b)), auditRoots: pair.map((b) => auditRoot(b)) });
  }
  const verifyKey = randomBytes(32);
  const sealed = sealVerifyRecord(verifyKey, { k: 1, n: 2, chunks: cs });
  held.set(sealed.id.toString('hex'), sealed.bytes);
  return { fp: randomBytes(32).toString('hex'), held, cap: { manifestId: randomBytes(32), verifyId: sealed.id, verifyKey } };
}

describe('nodes that claim a whole share they dropped (SPEC.md §9.18.3 step 5)', () => {
  it('every holder of the root answers has but none holds it: the root is lost, not healthy, and never renewed', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    for (const fp of nodes.fps.slice(0, N)) nodes.drop(fp, cap.manifestId);
    const r = await keepFile(nodes.client(), cap, { renew: true });
    // The verify record and the n chunk shares are healthy; the root is not.
    expect(r).toMatchObject({ shares: N + 2, healthy: N + 1, lost: 1 });
    expect(nodes.renews.some((x) => x.ids.includes(cap.manifestId.toString('hex')))).toBe(false);
  });

  it('one holder keeps the root and three only claim it: copies go to n - 1 further nodes, none to a claimant', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const liars = nodes.fps.slice(1, N);
    for (const fp of liars) nodes.drop(fp, cap.manifestId);
    const r = await keepFile(nodes.client(), cap);
    expect(r).toMatchObject({ healthy: N + 2, lost: 0, repaired: 1 });
    const copies = nodes.puts.filter((p) => p.id === cap.manifestId.toString('hex')).map((p) => p.node);
    expect(copies).toHaveLength(N - 1);
    for (const fp of copies) expect(liars).not.toContain(fp);
    expect(nodes.holders(cap.manifestId)).toHaveLength(N);
  });
});

describe('holders of a whole share that are busy (SPEC.md §9.18.3 steps 3 and 5)', () => {
  /** The root held by the first n nodes; `busy` decides, per request, whether a node answers STORAGE_BUSY. */
  function busyRoot(busy: (fp: string, req: StorageRequest | 'get') => boolean) {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const base = nodes.client();
    const root = cap.manifestId.toString('hex');
    const client = Object.assign(Object.create(base) as StorageClient, {
      request: async (fp: string, req: StorageRequest) => {
        if (req.type === 'audit' && req.id.toString('hex') === root && busy(fp, req)) throw err('STORAGE_BUSY', 'audit queue full', { remote: true });
        return base.request(fp, req);
      },
      getShare: async (fp: string, id: Buffer) => {
        if (id.toString('hex') === root && busy(fp, 'get')) throw err('STORAGE_BUSY', 'read budget spent', { remote: true });
        return base.getShare(fp, id);
      },
    });
    const rootPuts = () => nodes.puts.filter((p) => p.id === root).map((p) => p.node);
    const renewedAt = () => nodes.renews.filter((x) => x.ids.includes(root)).map((x) => x.node).sort();
    return { nodes, cap, client, rootPuts, renewedAt };
  }

  it('an audit answered STORAGE_BUSY is asked again: the holder counts, no copy is made, it is renewed', async () => {
    const tries = new Map<string, number>();
    const { nodes, cap, client, rootPuts, renewedAt } = busyRoot((fp, req) => {
      if (req === 'get') return false;
      tries.set(fp, (tries.get(fp) ?? 0) + 1);
      return tries.get(fp) === 1; // busy the first time only
    });
    const r = await keepFile(client, cap, { renew: true, auditBusyRetryMs: [1, 1, 1] });
    expect(r).toMatchObject({ healthy: N + 2, lost: 0, repaired: 0 });
    expect(rootPuts()).toEqual([]);
    expect(renewedAt()).toEqual(nodes.fps.slice(0, N).sort());
  });

  it('a holder whose get was busy before another gave the copy is audited like the others', async () => {
    let first: string | null = null; // the holder asked first for the copy is busy reading
    const { nodes, cap, client, rootPuts, renewedAt } = busyRoot((fp, req) => req === 'get' && fp === (first ??= fp));
    const r = await keepFile(client, cap, { renew: true, auditBusyRetryMs: [1] });
    expect(r).toMatchObject({ healthy: N + 2, lost: 0, repaired: 0 });
    expect(rootPuts()).toEqual([]);
    expect(renewedAt()).toEqual(nodes.fps.slice(0, N).sort());
  });

  it('a holder busy every time is not counted (a copy goes elsewhere) but is still renewed', async () => {
    let always = '';
    const { nodes, cap, client, rootPuts, renewedAt } = busyRoot((fp) => fp === always); // its get too: it never gives the copy
    always = nodes.fps[2];
    const r = await keepFile(client, cap, { renew: true, auditBusyRetryMs: [1, 1] });
    expect(r).toMatchObject({ healthy: N + 2, lost: 0, repaired: 1 });
    expect(rootPuts()).toHaveLength(1);
    expect(rootPuts()).not.toContain(always);
    expect(renewedAt()).toContain(always);
  });

  it('keep run reports the whole shares\' audits as it does the chunk shares\': a root holder that fails and one busy every time are listed and counted (SPEC.md §9.19)', async () => {
    let liar = '';
    let always = '';
    const { nodes, cap, client } = busyRoot((fp) => fp === always);
    liar = nodes.fps[1];
    always = nodes.fps[2];
    nodes.drop(liar, cap.manifestId); // claims the root in `has`, fails its audit
    const root = cap.manifestId.toString('hex');
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-keep-whole-'));
    try {
      await updateKeeperState(dir, (s) => { addKept(s, formatVerifyCapability(cap), 100); });
      const reports: KeepReport[] = [];
      await runKeeper(dir, { once: true, interval: 3600, renewWithin: 60, leaseSeconds: 0 }, async (c, o) => {
        const r = await keepFile(client, c, { ...o, auditBusyRetryMs: [1] });
        reports.push(r);
        return r;
      });
      const r = reports[0];
      expect(r.failures).toEqual([{ node: liar, shareId: root, code: 'SHARE_NOT_FOUND', kind: 'root' }]);
      expect(r.busy).toEqual([{ node: always, shareId: root, code: 'STORAGE_BUSY', kind: 'root' }]);
      // The n chunk shares' audits, and the other n - 1 holders of each whole share.
      expect(r.audits).toBe(N + 2 * (N - 1));
      const state = await loadKeeperState(dir);
      const { writes: out } = await captureStdout(() => { printStatus(state, true); printStatus(state, false); });
      expect(JSON.parse(out[0]).files[0]).toMatchObject({ auditFailures: 1, busyAudits: 1 });
      expect(out[1]).toMatch(/audit failures 1\b/);
      expect(out[1]).toMatch(/busy audits 1\b/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('audits of a pass are paced per node (SPEC.md §9.18.3, §9.9)', () => {
  it('a file with 2,000 shares on one healthy node that handles 8 requests at a time: every audit passes, at most 16 in flight', async () => {
    const { fp, held, cap } = fakeAuditNode(1000);

    // The node: 8 requests of its stream handled at once (SPEC.md §9.6.2), each a few ms.
    let inFlight = 0;
    let peak = 0;
    const answer = (req: StorageRequest): StorageResponse => {
      if (req.type === 'has') return { type: 'has', present: req.ids.map((id) => held.has(id.toString('hex'))) };
      if (req.type === 'get') { const b = held.get(req.id.toString('hex'))!; return { type: 'get', offset: 0, data: b, totalSize: b.length }; }
      if (req.type === 'challenge') {
        const b = held.get(req.id.toString('hex'))!;
        return { type: 'challenge', answer: encodeAuditAnswer({ shareSize: b.length, nonce: req.nonce, blocks: proveBlocks(b, req.blocks) }) };
      }
      throw new Error(`unexpected ${req.type}`);
    };
    const open = () => {
      const decoder = new FrameDecoder();
      const queue: { reqId: number; req: StorageRequest }[] = [];
      let working = 0;
      const client = new Duplex({
        read() {},
        write(chunk: Buffer, _enc, cb) {
          for (const f of decoder.push(chunk)) {
            const r = decodeRequest(f);
            queue.push(r);
            inFlight++;
            peak = Math.max(peak, inFlight);
          }
          work();
          cb();
        },
      });
      const work = () => {
        while (working < 8 && queue.length) {
          const { reqId, req } = queue.shift()!;
          working++;
          setTimeout(() => {
            working--;
            inFlight--;
            if (!client.destroyed) client.push(encodeResponseFrame(reqId, answer(req)));
            work();
          }, 5);
        }
      };
      return Promise.resolve(client);
    };
    // A timeout far above an answer's few ms (a loaded machine must not make this node look
    // dead); the pacing itself is what the peak below measures: sent all at once, the 2000 audits
    // would all be in flight at the node.
    const client = new StorageClient({ nodes: [{ fingerprint: fp } as unknown as StorageNode], open, requestTimeoutMs: 20_000 });
    try {
      const r = await keepFile(client, cap, { repair: false });
      expect(r.failures).toEqual([]);
      expect(r.audits).toBe(2000);
      expect(r.healthy).toBe(2000 + 1);
      expect(client.isDead(fp)).toBe(false);
      expect(peak).toBeLessThanOrEqual(16);
    } finally {
      await client.close();
    }
  }, 60_000);
});

describe('a node that answers every audit just in time (SPEC.md §9.18.3 step 3, §9.9)', () => {
  it('its audits of a pass end at the node\'s deadline: the rest end STORAGE_TIMEOUT, unknown (not failed), and the pass goes on', async () => {
    const { fp, held, cap } = fakeAuditNode(100);
    // Each audit answered right, but only after most of the request timeout (200 ms here).
    let started = 0;
    let answered = 0;
    const client = {
      fingerprints: [fp],
      requestTimeoutMs: 200,
      isDead: () => false,
      request: async (_fp: string, req: StorageRequest) => {
        if (req.type === 'has') return { type: 'has', present: req.ids.map((id) => held.has(id.toString('hex'))) };
        throw new Error(`unexpected ${req.type}`);
      },
      getShare: async (_fp: string, id: Buffer) => held.get(id.toString('hex'))!,
      auditShare: async (_fp: string, cm: AuditCommitment) => {
        started++;
        await new Promise((r) => setTimeout(r, 150));
        answered++;
        return { shareId: cm.shareId.toString('hex'), ok: true, nonce: '', blocks: [] };
      },
    } as unknown as StorageClient;
    const r = await keepFile(client, cap, { repair: false });
    // Every share is accounted for; those the node did not answer by its deadline are unknown, as
    // a busy node's are: no answer says nothing about the share (§9.18.3 step 3).
    expect(r.audits).toBe(200);
    expect(started).toBeLessThan(200);
    expect(r.failures).toEqual([]);
    expect(r.busy.length).toBeGreaterThan(0);
    expect(r.busy.every((f) => f.node === fp && f.code === 'STORAGE_TIMEOUT')).toBe(true);
    expect(r.unknown).toBe(r.busy.length);
    expect(r.busy.length + (r.healthy - 1)).toBe(200);
    expect(r.healthy - 1).toBeLessThanOrEqual(answered);
  }, 20_000);
});

describe('the expiry a pass reports (SPEC.md §9.9.2, §9.18.3)', () => {
  it('is the earliest non-zero expiry, also over more shares than a call takes arguments', () => {
    expect(earliestExpiry([])).toBe(0);
    expect(earliestExpiry([0, 0])).toBe(0);
    expect(earliestExpiry([9, 0, 5, 7])).toBe(5);
    // 200 000 shares: a 21 GiB file at 1 MiB chunks, 4-of-6.
    const many = Array.from({ length: 200_000 }, (_, i) => 2_000_000 + ((i * 7919) % 200_000));
    expect(earliestExpiry(many)).toBe(2_000_000);
    expect(earliestExpiry(new Map(many.map((x, i) => [String(i), x])).values())).toBe(2_000_000);
  });
});

describe('a node that lies about the expiry it granted (SPEC.md §9.9.2)', () => {
  /** A file of 2 chunks on 8 nodes, every one of which answers RENEW with an expiry some 35 000 years away. */
  function lyingNodes(): { cap: VerifyCapability; client: StorageClient } {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 2);
    for (let c = 0; c < 2; c++) for (let j = 0; j < N; j++) nodes.place(nodes.fps[(c + j) % 8], shares[c][j]);
    const base = nodes.client();
    const client = Object.assign(Object.create(base) as StorageClient, {
      request: async (fp: string, req: StorageRequest) => (req.type === 'renew' ? { type: 'renew', expiresAt: req.ids.map(() => 2 ** 40) } : base.request(fp, req)),
    });
    return { cap, client };
  }

  it('a keep pass counts a renewed share at most until the time it asked plus the lease it asked for', async () => {
    const { cap, client } = lyingNodes();
    const before = Math.floor(Date.now() / 1000);
    const r = await keepFile(client, cap, { renew: true, leaseSeconds: 3600 });
    const after = Math.floor(Date.now() / 1000);
    expect(r.expiresAt).toBeGreaterThanOrEqual(before + 3600);
    expect(r.expiresAt).toBeLessThanOrEqual(after + 3600);
  });

  it('an expiry not after the time it asked (a node answering 1970) counts as no lease at all', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const base = nodes.client();
    const client = Object.assign(Object.create(base) as StorageClient, {
      request: async (fp: string, req: StorageRequest) => (req.type === 'renew' ? { type: 'renew', expiresAt: req.ids.map(() => 1) } : base.request(fp, req)),
    });
    const r = await keepFile(client, cap, { renew: true, leaseSeconds: 3600 });
    expect(r.expiresAt).toBe(0);
  });

  it('with lease 0 (each node\'s default) a keep pass counts a renewed share at most 7 days past the time it asked', async () => {
    const { cap, client } = lyingNodes();
    const before = Math.floor(Date.now() / 1000);
    const r = await keepFile(client, cap, { renew: true });
    const after = Math.floor(Date.now() / 1000);
    expect(r.expiresAt).toBeGreaterThanOrEqual(before + 7 * 86_400);
    expect(r.expiresAt).toBeLessThanOrEqual(after + 7 * 86_400);
  });
});

describe('a node that answers an audit STORAGE_BUSY (SPEC.md §9.17.2, §9.18.3)', () => {
  /** nodes' client whose audits to `busyNode` answer STORAGE_BUSY `times` times per share first. */
  function busyClient(nodes: Nodes, busyNode: string, times: number): { client: StorageClient; calls: () => number } {
    const base = nodes.client();
    const seen = new Map<string, number>();
    let calls = 0;
    const client = Object.assign(Object.create(base) as StorageClient, {
      auditShare: async (fp: string, cm: AuditCommitment) => {
        if (fp === busyNode) calls++;
        const hex = cm.shareId.toString('hex');
        const n = seen.get(hex) ?? 0;
        if (fp === busyNode && n < times) {
          seen.set(hex, n + 1);
          return { shareId: hex, ok: false, code: 'STORAGE_BUSY', nonce: '', blocks: [] };
        }
        return base.auditShare(fp, cm);
      },
    });
    return { client, calls: () => calls };
  }

  it('is asked again: busy twice, then the right answer, and the audit passes', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const { client, calls } = busyClient(nodes, nodes.fps[4], 2);
    const r = await keepFile(client, cap, { auditBusyRetryMs: [1, 1, 1] });
    expect(r).toMatchObject({ healthy: N + 2, repaired: 0, lost: 0, failures: [] });
    expect(calls()).toBe(3);
    expect(nodes.puts).toEqual([]);
  });

  it('busy on every try: the audit is unknown for this pass, neither a failure nor repaired', async () => {
    const nodes = new Nodes(8);
    const { cap, shares } = file(nodes, 1);
    for (let j = 0; j < N; j++) nodes.place(nodes.fps[4 + j], shares[0][j]);
    const { client, calls } = busyClient(nodes, nodes.fps[4], Infinity);
    const r = await keepFile(client, cap, { auditBusyRetryMs: [1, 1, 1] });
    expect(calls()).toBe(4); // the first try and 3 more
    expect(r.failures).toEqual([]);
    expect(r.busy).toEqual([{ node: nodes.fps[4], shareId: shareId(shares[0][0]).toString('hex'), code: 'STORAGE_BUSY', kind: 'chunk' }]);
    expect(r).toMatchObject({ unknown: 1, healthy: N - 1 + 2, repaired: 0, lost: 0, unrecoverableChunks: 0 });
    expect(nodes.puts).toEqual([]);
  });

  it('an unknown share is not rebuilt while a missing one of its chunk is, and never onto the busy node', async () => {
    const nodes = new Nodes(8);
    const { cap, chunks, shares } = file(nodes, 1);
    const id3 = chunks[0].shareIds[3];
    // The busy node comes first in share 3's ranking: it may hold share 0, so it is not chosen.
    const r3 = rankNodes(id3, nodes.fps);
    const busyNode = r3[0];
    nodes.place(busyNode, shares[0][0]);
    nodes.place(r3[1], shares[0][1]);
    nodes.place(r3[2], shares[0][2]);
    const { client } = busyClient(nodes, busyNode, Infinity);
    const r = await keepFile(client, cap, { auditBusyRetryMs: [1, 1, 1] });
    expect(r).toMatchObject({ unknown: 1, healthy: 2 + 2, repaired: 1, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, failures: [] });
    expect(nodes.puts.map((p) => [p.id, p.node])).toEqual([[id3.toString('hex'), r3[3]]]);
  });
});

describe('a keep pass stopped while an audit waits to ask a busy node again (SPEC.md §9.18.3 step 3, §9.19)', () => {
  it('rejects at once, and its other audits send nothing more once it has', async () => {
    const { fp, held, cap } = fakeAuditNode(100);
    const firstShare = [...held.keys()][0];
    let started = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const client = {
      fingerprints: [fp],
      requestTimeoutMs: 3_600_000,
      isDead: () => false,
      request: async (_fp: string, req: StorageRequest) => {
        if (req.type === 'has') return { type: 'has', present: req.ids.map((id) => held.has(id.toString('hex'))) };
        throw new Error(`unexpected ${req.type}`);
      },
      getShare: async (_fp: string, id: Buffer) => held.get(id.toString('hex'))!,
      // The first share's node is busy (a wait of an hour before asking again); the others answer
      // once the test lets them.
      auditShare: async (_fp: string, cm: AuditCommitment) => {
        started++;
        const hex = cm.shareId.toString('hex');
        if (hex === firstShare) return { shareId: hex, ok: false, code: 'STORAGE_BUSY', nonce: '', blocks: [] };
        await gate;
        return { shareId: hex, ok: true, nonce: '', blocks: [] };
      },
    } as unknown as StorageClient;
    const ac = new AbortController();
    const pass = keepFile(client, cap, { repair: false, auditBusyRetryMs: [3_600_000], signal: ac.signal });
    pass.catch(() => {});
    // 16 audits at a time on the node: the busy one's slot went to the next share.
    await vi.waitFor(() => { expect(started).toBe(KEEP_AUDITS_PER_NODE + 1); });
    ac.abort();
    await expect(pass).rejects.toMatchObject({ name: 'AbortError' });
    const atStop = started;
    release();
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(started).toBe(atStop);
  });
});

describe('fetching the verify record (SPEC.md §9.18.3 step 1)', () => {
  const rec = { k: 1, n: 2, chunks: [{ kind: 1 as const, index: 0, shareSize: 10, shareIds: [randomBytes(32), randomBytes(32)], auditRoots: [randomBytes(32), randomBytes(32)] }] };
  const fps = ['a', 'b', 'c'].map((c) => c.repeat(64));
  /** A stand-in client: the first node of the record's ranking answers every get with the error `hostile`. */
  const fakeClient = (bytes: Buffer, hostile: Error | null, asked: string[]): StorageClient =>
    shareClient({ fps, id: shareId(bytes), bytes, hostile, asked });

  it('a node answering CHUNK_AUTH_FAILED or VERIFY_RECORD_MALFORMED itself does not end the search: the next node is asked', async () => {
    const verifyKey = deriveVerifyKey(randomBytes(32));
    const sealed = sealVerifyRecord(verifyKey, rec);
    const cap: VerifyCapability = { manifestId: randomBytes(32), verifyId: sealed.id, verifyKey };
    for (const code of ['CHUNK_AUTH_FAILED', 'VERIFY_RECORD_MALFORMED'] as const) {
      const asked: string[] = [];
      const client = fakeClient(sealed.bytes, err(code, 'storage node: no', { remote: true }), asked);
      await expect(fetchVerifyRecord(client, cap)).resolves.toEqual(rec);
      expect(asked.length).toBe(2);
    }
  });

  it('a record that does not open under the verify key (bytes hash to the id) fails at once with CHUNK_AUTH_FAILED', async () => {
    const sealed = sealVerifyRecord(deriveVerifyKey(randomBytes(32)), rec);
    const cap: VerifyCapability = { manifestId: randomBytes(32), verifyId: sealed.id, verifyKey: deriveVerifyKey(randomBytes(32)) };
    const asked: string[] = [];
    await expect(fetchVerifyRecord(fakeClient(sealed.bytes, null, asked), cap)).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
    expect(asked.length).toBe(1);
  });
});
