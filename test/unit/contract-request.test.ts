// SPEC.md §9.20.4: what `bitcloud keep contract` and `bitcloud put --pay` check before anything is
// stored or sent: the epochs, the coins, and at least one unit per epoch; and (SPEC.md §9.9.2) the
// lease `bitcloud renew` asks for, checked over the same command frame.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { contractRequest, openContract } from '../../src/client/commands/keep';
import { putCommand } from '../../src/client/commands/put';
import { renewCommand } from '../../src/client/commands/renew';
import { renewFile } from '../../src/client/storage-client-renew';
import type { StorageSession } from '../../src/client/storage-client-setup';
import { putFile } from '../../src/client/storage-client-put';
import { formatCapability } from '../../src/storage/capability';
import { ChunkKind } from '../../src/storage/encode';
import type { VerifyRecord } from '../../src/wire/verify-record';
import { uploadContract } from '../../src/client/storage-contract';
import { fetchVerifyRecord, keepFile } from '../../src/client/storage-client-verify';
import { formatVerifyCapability } from '../../src/storage/verify-cap';
import { BitcloudError } from '../../src/errors';
import { expectCode } from '../helpers/errors';
import { captureOutput, captureStdout } from '../helpers/output';

// A verify record of one 4-of-6 chunk unless a test says otherwise.
const oneChunk: VerifyRecord = { k: 4, n: 6, chunks: [{ kind: ChunkKind.DATA, index: 0, shareSize: 64, shareIds: Array.from({ length: 6 }, (_, j) => Buffer.alloc(32, j)), auditRoots: Array.from({ length: 6 }, () => Buffer.alloc(32)) }] };
vi.mock('../../src/client/storage-client-verify', async (orig) => ({
  ...await orig<typeof import('../../src/client/storage-client-verify')>(), keepFile: vi.fn(), fetchVerifyRecord: vi.fn(() => Promise.resolve(oneChunk)),
}));
vi.mock('../../src/client/storage-client-put', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-client-put')>(), putFile: vi.fn() }));
// The command frame with a fake session: prepare, run, and a failure reported as the real frame does.
// `frame.sessions` counts the sessions it opened (after prepare), so a test can tell a refusal made
// before any node was asked from one made while running.
const frame = vi.hoisted(() => ({ sessions: 0 }));
const fakeSession = { network: { dir: { consensus: () => ({ periodSeconds: 3600 }) }, dirCfg: { authorities: [] } }, client: {} } as unknown as StorageSession;
vi.mock('../../src/client/storage-client-setup', async (orig) => {
  const real = await orig<typeof import('../../src/client/storage-client-setup')>();
  return {
    ...real,
    runStorageCommand: vi.fn(async (command: string, a: { json: boolean }, prepare: (log: unknown) => unknown, run: (s: StorageSession, p: unknown) => Promise<number>, onFailure?: () => void) => {
      try {
        const prepared = prepare(null);
        frame.sessions++;
        return await run(fakeSession, prepared);
      } catch (e) { onFailure?.(); return real.reportFailure(command, e, a.json); }
    }),
  };
});
vi.mock('../../src/client/storage-client-renew', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-client-renew')>(), renewFile: vi.fn() }));
vi.mock('../../src/client/storage-contract', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-contract')>(), uploadContract: vi.fn() }));

/** A temporary folder with a 1000-byte f.bin, made before the enclosing describe's tests and removed after them. */
function useTempFile(): { readonly file: string } {
  const t = { dir: '', file: '' };
  beforeAll(async () => {
    t.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-putpay-'));
    t.file = path.join(t.dir, 'f.bin');
    await fsp.writeFile(t.file, Buffer.alloc(1000, 1));
  });
  afterAll(async () => { await fsp.rm(t.dir, { recursive: true, force: true }); });
  return t;
}

describe('a paid contract request (SPEC.md §9.20.4)', () => {
  it('reads epochs and coins; a free contract has no pay', () => {
    expect(contractRequest({ epochs: 100, pay: '2', key: 'k.key', 'no-wait': true })).toMatchObject({ epochs: 100, pay: 200_000_000n, key: 'k.key', noWait: true });
    expect(contractRequest({ epochs: 24 })).toMatchObject({ epochs: 24, pay: null, noWait: false });
  });

  it('refuses bad epochs, bad amounts and less than one unit per epoch, with their codes', () => {
    expectCode(() => contractRequest({ epochs: 0 }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 1.5 }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: 'lots' }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: '0.000000001' }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: '0.00000002' }), 'ESCROW_UNDERFUNDED');
    expect(contractRequest({ epochs: 3, pay: '0.00000003' }).pay).toBe(3n);
  });

  it('refuses more epochs than a contract spans (SPEC.md §9.20.1: at most 100 000): CONFIG_INVALID', () => {
    expect(contractRequest({ epochs: 100_000 }).epochs).toBe(100_000);
    expectCode(() => contractRequest({ epochs: 100_001 }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 200_000, pay: '1' }), 'CONFIG_INVALID');
  });
});

describe('a contract after a pass with unknown shares (SPEC.md §9.18.3 step 3, §9.20.1)', () => {
  it('is refused STORAGE_BUSY and nothing is uploaded: the contract would miss the shares whose audits stayed busy', async () => {
    const placed = [{ node: 'aa'.repeat(32), shareId: Buffer.alloc(32, 1), size: 64, root: Buffer.alloc(32, 2) }];
    vi.mocked(keepFile).mockResolvedValueOnce({
      shares: 4, healthy: 3, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 4, failures: [],
      busy: [{ node: 'bb'.repeat(32), shareId: '03'.repeat(32), code: 'STORAGE_BUSY', kind: 'chunk' as const }], unknown: 1, expiresAt: 0, placed,
    });
    const session = { network: { dir: { consensus: () => ({ periodSeconds: 3600 }) }, dirCfg: { authorities: [] } }, client: {} } as unknown as StorageSession;
    const vcap = formatVerifyCapability({ manifestId: Buffer.alloc(32, 5), verifyId: Buffer.alloc(32, 6), verifyKey: Buffer.alloc(32, 7) });
    const e = await openContract(session, vcap, contractRequest({ epochs: 3 })).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(BitcloudError);
    expect(e).toMatchObject({ code: 'STORAGE_BUSY' });
    expect(vi.mocked(uploadContract)).not.toHaveBeenCalled();
  });
});

describe('put --pay when the contract cannot be opened (SPEC.md §9.20.4)', () => {
  const tmp = useTempFile();

  const cap = formatCapability({ manifestId: Buffer.alloc(32, 8), fileKey: Buffer.alloc(32, 9) });
  const vcap = formatVerifyCapability({ manifestId: Buffer.alloc(32, 8), verifyId: Buffer.alloc(32, 6), verifyKey: Buffer.alloc(32, 7) });
  const stored = { capability: cap, verifyCapability: vcap, manifestId: '08'.repeat(32), size: 1000, chunks: 1, coding: { k: 4, n: 6 }, shares: 8, bytesSent: 2000, relocated: 0 };
  const busyPass = {
    shares: 6, healthy: 5, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 6, failures: [],
    busy: [{ node: 'bb'.repeat(32), shareId: '03'.repeat(32), code: 'STORAGE_BUSY', kind: 'chunk' as const }], unknown: 1, expiresAt: 0, placed: [],
  };

  async function run(json: boolean): Promise<{ code: number; out: string; errOut: string }> {
    vi.mocked(putFile).mockResolvedValueOnce(stored);
    vi.mocked(keepFile).mockResolvedValueOnce(busyPass);
    const e = await captureOutput(process.stderr, () => captureStdout(() => putCommand({ file: tmp.file, json, direct: false, class: 'encrypted-private', pay: '1', epochs: 3 })));
    return { code: e.result.result, out: e.result.text, errOut: e.text };
  }

  it('prints the stored file\'s capability, reports the contract\'s failure, and exits 1', async () => {
    const r = await run(false);
    expect(r.out).toBe(cap + '\n');
    expect(r.errOut).toContain('STORAGE_BUSY');
    expect(r.code).toBe(1);
    expect(vi.mocked(uploadContract)).not.toHaveBeenCalled();
  });

  it('with --json: one object with the capability, ok false and the contract\'s error', async () => {
    const r = await run(true);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ ok: false, capability: cap, verifyCapability: vcap, error: { code: 'STORAGE_BUSY' } });
    expect(r.code).toBe(1);
  });
});

describe('a file with more chunk shares than a contract lists (SPEC.md §9.20.1: at most 4 096)', () => {
  const tmp = useTempFile();

  async function put(a: { 'chunk-size'?: number; epochs?: number; k?: number; n?: number }): Promise<{ code: number; out: string }> {
    vi.mocked(putFile).mockClear();
    const e = await captureOutput(process.stderr, () => captureStdout(() => putCommand({ file: tmp.file, json: true, direct: false, class: 'encrypted-private', pay: '1', ...a })));
    return { code: e.result.result, out: e.result.text };
  }

  it('put --pay refuses it before anything is uploaded: CONTRACT_TOO_LARGE', async () => {
    // 1000 one-byte chunks and a manifest chunk, 6 shares each: 6 006 chunk shares.
    const r = await put({ 'chunk-size': 1 });
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, error: { code: 'CONTRACT_TOO_LARGE' } });
    expect(r.code).toBe(1);
    expect(vi.mocked(putFile)).not.toHaveBeenCalled();
  });

  it('put --pay refuses --epochs above 100 000 before anything is uploaded: CONFIG_INVALID', async () => {
    const r = await put({ epochs: 200_000 });
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID' } });
    expect(r.code).toBe(2);
    expect(vi.mocked(putFile)).not.toHaveBeenCalled();
  });

  it('the limit is exact: 4 096 chunk shares are taken, 4 100 are not', async () => {
    // 1-of-4 in 1-byte chunks: 1023 data chunks and a manifest chunk are 4 × 1024 = 4 096 shares.
    await fsp.writeFile(tmp.file, Buffer.alloc(1023, 1));
    vi.mocked(putFile).mockRejectedValueOnce(new Error('stop here'));
    await put({ 'chunk-size': 1, k: 1, n: 4 });
    expect(vi.mocked(putFile)).toHaveBeenCalledTimes(1);
    await fsp.writeFile(tmp.file, Buffer.alloc(1024, 1)); // 4 × 1025 = 4 100
    const r = await put({ 'chunk-size': 1, k: 1, n: 4 });
    expect(JSON.parse(r.out)).toMatchObject({ error: { code: 'CONTRACT_TOO_LARGE' } });
    expect(vi.mocked(putFile)).not.toHaveBeenCalled();
  });

  it('keep contract refuses it before its keeper pass, counting the verify record\'s chunks', async () => {
    vi.mocked(keepFile).mockClear();
    const many = { ...oneChunk, chunks: Array.from({ length: 683 }, (_, i) => ({ ...oneChunk.chunks[0], index: i })) }; // 683 × 6 = 4 098
    vi.mocked(fetchVerifyRecord).mockResolvedValueOnce(many);
    const vcap = formatVerifyCapability({ manifestId: Buffer.alloc(32, 5), verifyId: Buffer.alloc(32, 6), verifyKey: Buffer.alloc(32, 7) });
    const e = await openContract(fakeSession, vcap, contractRequest({ epochs: 3 })).then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'CONTRACT_TOO_LARGE' });
    expect(vi.mocked(keepFile)).not.toHaveBeenCalled();
    expect(vi.mocked(uploadContract)).not.toHaveBeenCalled();
  });
});

describe('bitcloud renew --lease-seconds (SPEC.md §9.9.2)', () => {
  const cap = formatCapability({ manifestId: Buffer.alloc(32, 1), fileKey: Buffer.alloc(32, 2) });

  async function renew(lease: number): Promise<{ code: number; out: string }> {
    vi.mocked(renewFile).mockClear();
    const e = await captureOutput(process.stderr, () => captureStdout(() => renewCommand({ cap, 'lease-seconds': lease, json: true, direct: false })));
    return { code: e.result.result, out: e.result.text };
  }

  it('a lease that is not a whole number 0..2^32 − 1 is CONFIG_INVALID (exit 2) before any node is asked', async () => {
    for (const lease of [-1, 0.5, 2 ** 32, Number.NaN]) {
      const sessions = frame.sessions;
      const r = await renew(lease);
      expect(JSON.parse(r.out), String(lease)).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID' } });
      expect(r.code).toBe(2);
      // Refused while preparing: no session was opened, so no node (nor the network) was asked.
      expect(frame.sessions, String(lease)).toBe(sessions);
      expect(vi.mocked(renewFile)).not.toHaveBeenCalled();
    }
  });

  it('0 (each node\'s default) and 2^32 − 1 are asked for as given', async () => {
    for (const lease of [0, 2 ** 32 - 1]) {
      vi.mocked(renewFile).mockResolvedValueOnce({ shares: 1, renewed: 1, missing: 0, unreadableChunks: 0, nodesAsked: 1, expiresAt: 1, unreachableNodes: [], audited: true, failures: [], busy: [] });
      expect((await renew(lease)).code).toBe(0);
      expect(vi.mocked(renewFile)).toHaveBeenCalledWith(expect.anything(), expect.anything(), lease);
    }
  });

  it('a holder that failed its audit (not renewed) is listed in the JSON and makes it exit 1, every chunk readable or not', async () => {
    const failure = { node: 'ab'.repeat(20), shareId: 'cd'.repeat(32), code: 'SHARE_CORRUPT', kind: 'chunk' as const };
    vi.mocked(renewFile).mockResolvedValueOnce({ shares: 8, renewed: 7, missing: 1, unreadableChunks: 0, nodesAsked: 5, expiresAt: 1, unreachableNodes: [], audited: true, failures: [failure], busy: [] });
    const r = await renew(0);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ failures: [failure], renewed: 7, unreadableChunks: 0 });
  });

  it('a holder whose audit got no answer (renewed, listed as busy) does not make it exit 1', async () => {
    const silent = { node: 'ab'.repeat(20), shareId: 'cd'.repeat(32), code: 'STORAGE_TIMEOUT', kind: 'chunk' as const };
    vi.mocked(renewFile).mockResolvedValueOnce({ shares: 8, renewed: 8, missing: 0, unreadableChunks: 0, nodesAsked: 5, expiresAt: 1, unreachableNodes: [], audited: true, failures: [], busy: [silent] });
    const r = await renew(0);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ failures: [], busy: [silent], renewed: 8 });
  });
});
