// SPEC.md §9.17: audits with Merkle proofs — the tree, the answer layout, the node's answer and
// the auditor's checks (a forged, replayed or malformed answer is refused with its code).
import { afterEach, describe, expect, it, vi } from 'vitest';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import {
  AUDIT_BLOCK_BYTES, auditAnswerMaxBytes, auditBlockCount, auditRoot, challengeBlocks, proveBlocks, proveBlocksInPieces, verifyAuditAnswer,
} from '../../src/storage/audit';
import { auditRetryingBusy, auditShare, recheckAuditResult, type AuditCommitment, type AuditResult } from '../../src/storage/auditor';
import { auditProof, auditProofInPieces, decodeRequest, decodeResponse, encodeRequest, encodeResponse, type StorageRequest } from '../../src/storage/protocol';
import { encodeProto, pb } from '../../src/storage/proto';
import { HASH_PIECE_BYTES, checkShare, checkShareInPieces, shareId } from '../../src/storage/share';
import { decodeAuditAnswer, encodeAuditAnswer } from '../../src/wire/audit-answer';
import { handleRequest } from '../../storage/handler';
import { ShareStore } from '../../storage/share-store';

const dirs: string[] = [];
const stores: ShareStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

function commitment(data: Buffer): AuditCommitment {
  return { shareId: shareId(data), size: data.length, root: auditRoot(data) };
}

function answer(data: Buffer, nonce: Buffer, blocks: number[]): Buffer {
  return encodeAuditAnswer({ shareSize: data.length, nonce, blocks: proveBlocks(data, blocks) });
}

describe('audit tree (SPEC.md §9.17.1)', () => {
  it('known answer: the audit root of 10 000 bytes 0x61', () => {
    expect(auditRoot(Buffer.alloc(10_000, 0x61)).toString('hex')).toBe(KAT_ROOT);
  });

  it('every block of shares of many sizes proves against the root; the root binds the size', () => {
    for (const size of [1, 4095, 4096, 4097, 3 * 4096, 5 * 4096 + 1, 7 * 4096, 33 * 4096 - 5]) {
      const data = randomBytes(size);
      const root = auditRoot(data);
      const count = auditBlockCount(size);
      const all = [...Array(count).keys()];
      const nonce = randomBytes(16);
      const a = verifyAuditAnswer(answer(data, nonce, all.slice(0, 16)), { root, size, nonce, blocks: all.slice(0, 16) });
      expect(a.blocks.length).toBe(Math.min(16, count));
      // SPEC.md §9.20.3: a valid answer never takes more than auditAnswerMaxBytes.
      for (const blocks of [all.slice(0, 16), all.slice(-16), all.slice(0, 1)]) {
        expect(answer(data, nonce, blocks).length).toBeLessThanOrEqual(auditAnswerMaxBytes(size, nonce.length, blocks));
      }
      if (count > 16) verifyAuditAnswer(answer(data, nonce, all.slice(-16)), { root, size, nonce, blocks: all.slice(-16) });
    }
    // Same blocks, one trailing byte fewer: another root.
    const d = randomBytes(4097);
    expect(auditRoot(d).equals(auditRoot(d.subarray(0, 4096)))).toBe(false);
  });

  it('challenge blocks are distinct, ascending, in range and fixed by the nonce', () => {
    const id = randomBytes(32);
    const nonce = randomBytes(32);
    const b = challengeBlocks(nonce, id, 100 * AUDIT_BLOCK_BYTES, 8);
    expect(b).toEqual([...new Set(b)].sort((x, y) => x - y));
    expect(b.length).toBe(8);
    expect(b.every((i) => i >= 0 && i < 100)).toBe(true);
    expect(challengeBlocks(nonce, id, 100 * AUDIT_BLOCK_BYTES, 8)).toEqual(b);
    expect(challengeBlocks(nonce, id, 10, 8)).toEqual([0]); // one block only
  });
});

describe('a node hashes a share in pieces (SPEC.md §9.17.2)', () => {
  /** Turns of the event loop that ran while `work` did: a callback re-armed on every turn. */
  async function turnsDuring<T>(work: () => Promise<T>): Promise<{ value: T; turns: number }> {
    let turns = 0;
    let done = false;
    const tick = (): void => { if (!done) { turns++; setImmediate(tick); } };
    setImmediate(tick);
    const value = await work();
    done = true;
    return { value, turns };
  }

  it('the id check, the proof and the tree agree with hashing at once, across piece boundaries', async () => {
    for (const size of [1, 4096, HASH_PIECE_BYTES - 1, HASH_PIECE_BYTES, HASH_PIECE_BYTES + 1, 2 * HASH_PIECE_BYTES + 4097]) {
      const data = randomBytes(size);
      const id = shareId(data);
      expect(await checkShareInPieces(id, data)).toBe(true);
      const bad = Buffer.from(data);
      bad[size - 1] ^= 1; // in the last piece
      expect(await checkShareInPieces(id, bad)).toBe(checkShare(id, bad));
      expect(await checkShareInPieces(id, bad)).toBe(false);
      expect(await checkShareInPieces(id.subarray(0, 31), data)).toBe(false);
      const nonce = randomBytes(32);
      expect((await auditProofInPieces(nonce, data)).equals(auditProof(nonce, data))).toBe(true);
      const count = auditBlockCount(size);
      // The first and last block, and those on each side of every piece boundary.
      const per = HASH_PIECE_BYTES / AUDIT_BLOCK_BYTES;
      const blocks = [...new Set([0, per - 1, per, 2 * per - 1, 2 * per, count - 1].filter((b) => b >= 0 && b < count))].sort((x, y) => x - y);
      const pieced = await proveBlocksInPieces(data, blocks);
      expect(pieced).toEqual(proveBlocks(data, blocks));
      verifyAuditAnswer(encodeAuditAnswer({ shareSize: size, nonce, blocks: pieced }), { root: auditRoot(data), size, nonce, blocks });
    }
  });

  it('a 3 MiB share is hashed in 3 pieces with turns of the event loop between them, for each of the three hashes', async () => {
    const data = randomBytes(3 * HASH_PIECE_BYTES);
    const id = shareId(data);
    const nonce = randomBytes(32);
    const check = await turnsDuring(() => checkShareInPieces(id, data));
    expect(check.value).toBe(true);
    expect(check.turns).toBeGreaterThanOrEqual(2);
    const proof = await turnsDuring(() => auditProofInPieces(nonce, data));
    expect(proof.value.equals(auditProof(nonce, data))).toBe(true);
    expect(proof.turns).toBeGreaterThanOrEqual(2);
    const tree = await turnsDuring(() => proveBlocksInPieces(data, [0, 767]));
    expect(tree.value).toEqual(proveBlocks(data, [0, 767]));
    expect(tree.turns).toBeGreaterThanOrEqual(2);
  });
});

describe('audit answers: bad input (SPEC.md §9.17.3, §9.17.4)', () => {
  const data = randomBytes(9 * 4096 + 100);
  const root = auditRoot(data);
  const nonce = randomBytes(32);
  const blocks = [1, 4, 9];
  const exp = { root, size: data.length, nonce, blocks };

  it('a true answer verifies', () => {
    expect(() => verifyAuditAnswer(answer(data, nonce, blocks), exp)).not.toThrow();
  });

  it('a forged answer (other bytes in a block) is AUDIT_PROOF_INVALID', () => {
    const a = decodeAuditAnswer(answer(data, nonce, blocks));
    a.blocks[1].block[7] ^= 1;
    expect(codeOf(() => verifyAuditAnswer(encodeAuditAnswer(a), exp))).toBe('AUDIT_PROOF_INVALID');
    // Bytes of another share of the same size, with their own true paths.
    const other = randomBytes(data.length);
    expect(codeOf(() => verifyAuditAnswer(answer(other, nonce, blocks), exp))).toBe('AUDIT_PROOF_INVALID');
  });

  it('a tampered path, a missing or extra sibling, other blocks, another size: AUDIT_PROOF_INVALID', () => {
    const a = decodeAuditAnswer(answer(data, nonce, blocks));
    a.blocks[0].path[0][0] ^= 1;
    expect(codeOf(() => verifyAuditAnswer(encodeAuditAnswer(a), exp))).toBe('AUDIT_PROOF_INVALID');
    const b = decodeAuditAnswer(answer(data, nonce, blocks));
    b.blocks[0].path.pop();
    expect(codeOf(() => verifyAuditAnswer(encodeAuditAnswer(b), exp))).toBe('AUDIT_PROOF_INVALID');
    const c = decodeAuditAnswer(answer(data, nonce, blocks));
    c.blocks[0].path.push(randomBytes(32));
    expect(codeOf(() => verifyAuditAnswer(encodeAuditAnswer(c), exp))).toBe('AUDIT_PROOF_INVALID');
    expect(codeOf(() => verifyAuditAnswer(answer(data, nonce, [1, 4, 8]), exp))).toBe('AUDIT_PROOF_INVALID');
    const d = decodeAuditAnswer(answer(data, nonce, blocks));
    d.shareSize += 1;
    expect(codeOf(() => verifyAuditAnswer(encodeAuditAnswer(d), exp))).toBe('AUDIT_PROOF_INVALID');
  });

  it('a replayed answer (true blocks, an earlier nonce) is AUDIT_REPLAYED', () => {
    const old = answer(data, randomBytes(32), blocks);
    expect(codeOf(() => verifyAuditAnswer(old, exp))).toBe('AUDIT_REPLAYED');
  });

  it('bytes that are not an answer are AUDIT_ANSWER_MALFORMED', () => {
    const good = answer(data, nonce, blocks);
    expect(codeOf(() => verifyAuditAnswer(good.subarray(0, good.length - 1), exp))).toBe('AUDIT_ANSWER_MALFORMED');
    expect(codeOf(() => verifyAuditAnswer(Buffer.concat([good, Buffer.alloc(1)]), exp))).toBe('AUDIT_ANSWER_MALFORMED');
    const v2 = Buffer.from(good);
    v2[0] = 2;
    expect(codeOf(() => verifyAuditAnswer(v2, exp))).toBe('AUDIT_ANSWER_MALFORMED');
    expect(codeOf(() => verifyAuditAnswer(Buffer.alloc(0), exp))).toBe('AUDIT_ANSWER_MALFORMED');
    expect(codeOf(() => verifyAuditAnswer(randomBytes(200), exp))).toMatch(/^AUDIT_/);
  });
});

describe('challenge on the wire (SPEC.md §9.17.2)', () => {
  const id = randomBytes(32);
  it('request and response round-trip', () => {
    const req: StorageRequest = { type: 'challenge', id, nonce: randomBytes(16), blocks: [0, 3, 9] };
    expect(decodeRequest(encodeRequest(5, req))).toEqual({ reqId: 5, req });
    const res = { type: 'challenge' as const, answer: randomBytes(100) };
    expect(decodeResponse(encodeResponse(5, res))).toEqual({ reqId: 5, res });
  });

  it('bad challenges are STORAGE_BAD_REQUEST', () => {
    const bad = (c: Record<string, unknown>) => codeOf(() => decodeRequest(encodeProto(pb.Request, { id: 1, auditChallenge: c })));
    expect(bad({ id, nonce: randomBytes(15), blocks: [0] })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ id, nonce: randomBytes(16), blocks: [] })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ id, nonce: randomBytes(16), blocks: [3, 3] })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ id, nonce: randomBytes(16), blocks: [4, 2] })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ id, nonce: randomBytes(16), blocks: [...Array(17).keys()] })).toBe('STORAGE_BAD_REQUEST');
    expect(bad({ id: randomBytes(31), nonce: randomBytes(16), blocks: [0] })).toBe('STORAGE_BAD_REQUEST');
  });
});

describe('the node answers, the auditor checks (SPEC.md §9.17.2, §9.17.4)', () => {
  async function store(): Promise<{ s: ShareStore; dir: string }> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-audit-'));
    dirs.push(dir);
    const s = await ShareStore.open({ dir, quotaBytes: 1 << 22 });
    stores.push(s);
    return { s, dir };
  }
  const ctx = { viaCircuit: true };

  it('a node holding the share passes; the result can be rechecked by anyone with the root', async () => {
    const { s } = await store();
    const data = randomBytes(50_000);
    const c = commitment(data);
    await s.put(c.shareId, data);
    const send = async (req: StorageRequest & { type: 'challenge' }) => handleRequest(s, req, ctx);
    const r = await auditShare(send, c, { blocks: 5 });
    expect(r).toMatchObject({ ok: true });
    expect(r.blocks.length).toBe(5);
    expect(recheckAuditResult(r, c)).toBe(true);
    // A published result claiming a failure for a true answer does not recheck.
    expect(recheckAuditResult({ ...r, ok: false, code: 'AUDIT_PROOF_INVALID' }, c)).toBe(false);
  });

  it('a deleted share fails with SHARE_NOT_FOUND, a share altered on disk with SHARE_CORRUPT', async () => {
    const { s, dir } = await store();
    const a = randomBytes(9000);
    const b = randomBytes(9000);
    await s.put(shareId(a), a);
    await s.put(shareId(b), b);
    const send = async (req: StorageRequest & { type: 'challenge' }) => {
      const res = await handleRequest(s, req, ctx);
      if (res.type === 'error') throw Object.assign(new Error(res.message), { code: res.code });
      return res;
    };
    // A passing audit reads the share (and may cache it); the next audit still goes to disk.
    expect(await auditShare(send, commitment(a))).toMatchObject({ ok: true });
    expect((await s.get(shareId(a))).data.equals(a)).toBe(true);
    const hexA = shareId(a).toString('hex');
    await fsp.rm(path.join(dir, 'shares', hexA.slice(0, 2), hexA.slice(2, 4), hexA));
    expect(await auditShare(send, commitment(a))).toMatchObject({ ok: false, code: 'SHARE_NOT_FOUND' });
    const hexB = shareId(b).toString('hex');
    const fileB = path.join(dir, 'shares', hexB.slice(0, 2), hexB.slice(2, 4), hexB);
    const bad = Buffer.from(b);
    bad[100] ^= 1;
    await fsp.writeFile(fileB, bad);
    expect(await auditShare(send, commitment(b))).toMatchObject({ ok: false, code: 'SHARE_CORRUPT' });
  });

  it('a node answering for other bytes, or with an old answer, fails the audit', async () => {
    const data = randomBytes(20_000);
    const c = commitment(data);
    const liar = randomBytes(20_000);
    let sent: Buffer = Buffer.alloc(0);
    const forged = await auditShare(async (req) => ({ type: 'challenge', answer: (sent = answer(liar, req.nonce, req.blocks)) }), c);
    expect(forged).toMatchObject({ ok: false, code: 'AUDIT_PROOF_INVALID' });
    // SPEC.md §9.20.3: a failed answer no longer than a valid one is kept whole, so others recheck it.
    expect(forged.answer).toBe(sent.toString('hex'));
    expect(recheckAuditResult(forged, c)).toBe(true);
    // Padded to the longest valid answer to these blocks: kept; one byte longer: left out whole.
    const padded = (extra: number) => auditShare(async (req) => {
      const a = answer(liar, req.nonce, req.blocks);
      return { type: 'challenge', answer: Buffer.concat([a, Buffer.alloc(auditAnswerMaxBytes(c.size, req.nonce.length, req.blocks) - a.length + extra)]) };
    }, c);
    const atMost = await padded(0); // unpadded when every path is as long as the tree is high
    expect(atMost.ok).toBe(false);
    expect(atMost.answer).toBeDefined();
    const long = await padded(1);
    expect(long).toMatchObject({ ok: false, code: 'AUDIT_ANSWER_MALFORMED' });
    expect(long.answer).toBeUndefined();
    const stale = await auditShare(async (req) => ({ type: 'challenge', answer: answer(data, randomBytes(32), req.blocks) }), c);
    expect(stale).toMatchObject({ ok: false, code: 'AUDIT_REPLAYED' });
    const timeout = await auditShare(async () => { throw Object.assign(new Error('t'), { code: 'STORAGE_TIMEOUT' }); }, c);
    expect(timeout).toMatchObject({ ok: false, code: 'STORAGE_TIMEOUT' });
  });

  it('a block beyond the share is STORAGE_BAD_REQUEST', async () => {
    const { s } = await store();
    const data = randomBytes(5000);
    await s.put(shareId(data), data);
    const res = await handleRequest(s, { type: 'challenge', id: shareId(data), nonce: randomBytes(16), blocks: [2] }, ctx);
    expect(res).toMatchObject({ type: 'error', code: 'STORAGE_BAD_REQUEST' });
  });
});

describe('an audit answered STORAGE_BUSY is asked again (SPEC.md §9.18.3 step 3, §9.20.2)', () => {
  const busy = (): AuditResult => ({ shareId: 'aa', ok: false, code: 'STORAGE_BUSY', nonce: '', blocks: [] });

  it('busy every time: 4 tries, the last result kept', async () => {
    let tries = 0;
    const r = await auditRetryingBusy(async () => { tries++; return busy(); }, [0, 0, 0]);
    expect(tries).toBe(4);
    expect(r.code).toBe('STORAGE_BUSY');
  });

  it('an abort during a wait ends it at once: no timer has to run out, no more tries', async () => {
    vi.useFakeTimers();
    try {
      const ac = new AbortController();
      let tries = 0;
      let settled: unknown = null;
      const p = auditRetryingBusy(async () => { tries++; return busy(); }, undefined, ac.signal)
        .then(() => { settled = 'resolved'; }, (e: unknown) => { settled = e; });
      // The first try answered busy: the 1 s wait has begun.
      await vi.waitFor(() => { expect(vi.getTimerCount()).toBe(1); });
      ac.abort();
      // Only microtasks run: no timer advances.
      for (let i = 0; i < 10 && settled === null; i++) await Promise.resolve();
      expect(settled).toMatchObject({ name: 'AbortError' });
      expect(tries).toBe(1);
      expect(vi.getTimerCount()).toBe(0);
      await p;
    } finally {
      vi.useRealTimers();
    }
  });

  it('a signal aborted before the first busy answer sends no second try', async () => {
    const ac = new AbortController();
    ac.abort();
    let tries = 0;
    await expect(auditRetryingBusy(async () => { tries++; return busy(); }, undefined, ac.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(tries).toBe(1);
  });
});

// Checked independently (Python hashlib.blake2b over the rule of SPEC.md §9.17.1).
const KAT_ROOT = '2c9ab7f5c77dbfbc551fea1d5ba9e512a3d2b1cf067f1b473e4a958c9365701e';
