// SPEC.md §9.19: the keeper's state file and its passes (`bitcloud keep run`), with a stand-in
// for the per-file check (§9.18.3) so that no storage node is needed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { formatVerifyCapability } from '../../src/storage/verify-cap';
import { addKept, loadKeeperState, recordPass, runKeeper, saveKeeperState, updateKeeperState, type KeepPass, type KeeperRun } from '../../src/client/keeper';
import { withFileLock } from '../../src/ops/file-lock';
import type { KeepReport } from '../../src/client/storage-client-verify';
import { auditRetryingBusy, type AuditResult } from '../../src/storage/auditor';
import { printStatus, verifyCapOf } from '../../src/client/commands/keep';
import { captureStdout } from '../helpers/output';
import { shareClient } from '../helpers/share-client';
import type { StorageClient } from '../../src/client/storage-client';
import { err } from '../../src/errors';
import { formatCapability } from '../../src/storage/capability';
import { newFileKey } from '../../src/storage/file-encoder';
import { makeManifest } from '../../src/storage/manifest';
import { rankNodes } from '../../src/storage/placement';
import { sealManifest } from '../../src/storage/seal';
import { deriveVerifyKey, parseVerifyCapability } from '../../src/storage/verify-cap';

// The keeper's sleeps, watched: each is asked with the length it is given (and then taken for real).
const sleeps = vi.hoisted(() => [] as number[]);
vi.mock('node:timers/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:timers/promises')>();
  return { ...real, setTimeout: (ms: number, ...rest: unknown[]) => { sleeps.push(ms); return (real.setTimeout as (...a: unknown[]) => Promise<unknown>)(ms, ...rest); } };
});

let root: string;
let seq = 0;
const freshDir = () => path.join(root, `d${seq++}`);
const newCap = () => formatVerifyCapability({ manifestId: randomBytes(32), verifyId: randomBytes(32), verifyKey: randomBytes(32) });

beforeAll(async () => { root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-keeper-')); });
afterAll(async () => { await fsp.rm(root, { recursive: true, force: true }); });

describe('keeper state fields (SPEC.md §9.19)', () => {
  it('an entry with a field missing or of the wrong type is KEEPER_STATE_CORRUPT', async () => {
    const dir = freshDir();
    const s = await loadKeeperState(dir);
    addKept(s, newCap(), 100);
    await saveKeeperState(dir, s);
    expect(await loadKeeperState(dir)).toEqual(s);
    const good = s.files[0] as unknown as Record<string, unknown>;
    const variants: Record<string, unknown>[] = [
      { ...good, expiresAt: undefined },
      { ...good, manifestId: undefined },
      { ...good, manifestId: 'ab' },
      { ...good, manifestId: randomBytes(32).toString('hex') },
      { ...good, lastCheck: -1 },
      { ...good, healthy: '3' },
      { ...good, repairedTotal: null },
      { ...good, lastError: 7 },
      { ...good, verifyCap: 5 },
    ];
    for (const v of variants) {
      await fsp.writeFile(path.join(dir, 'keeper.json'), JSON.stringify({ version: 1, files: [v] }));
      await expect(loadKeeperState(dir)).rejects.toMatchObject({ code: 'KEEPER_STATE_CORRUPT' });
    }
    await fsp.writeFile(path.join(dir, 'keeper.json'), JSON.stringify({ version: 1, files: [{ ...good, lastError: 'SHARE_NOT_FOUND' }] }));
    expect((await loadKeeperState(dir)).files[0].lastError).toBe('SHARE_NOT_FOUND');
  });
});

describe('keep status (SPEC.md §9.19)', () => {
  it('the text line names the unrecoverable chunks, as the JSON does', async () => {
    const s = await loadKeeperState(freshDir());
    addKept(s, newCap(), 100);
    recordPass(s.files[0], { shares: 8, healthy: 3, repaired: 0, lost: 5, unrecoverableChunks: 2, mismatchedChunks: 0, audits: 6, failures: [], busy: [], unknown: 0, expiresAt: 1000, placed: [] }, 200);
    const { writes: out } = await captureStdout(() => { printStatus(s, true); printStatus(s, false); });
    expect(JSON.parse(out[0]).files[0].unrecoverableChunks).toBe(2);
    expect(out[1]).toMatch(/unrecoverable chunks 2\b/);
  });
});

describe('keep status of a pass with unknown shares (SPEC.md §9.18.3 step 3, §9.19)', () => {
  it('records the shares whose audits stayed busy and shows them apart, in the JSON and the text line', async () => {
    const dir = freshDir();
    const s = await loadKeeperState(dir);
    addKept(s, newCap(), 100);
    recordPass(s.files[0], { shares: 8, healthy: 5, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 8, failures: [], busy: [{ node: 'aa', shareId: 'bb', code: 'STORAGE_BUSY', kind: 'chunk' }], unknown: 3, expiresAt: 1000, placed: [] }, 200);
    await saveKeeperState(dir, s);
    const back = await loadKeeperState(dir);
    const { writes: out } = await captureStdout(() => { printStatus(back, true); printStatus(back, false); });
    expect(JSON.parse(out[0]).files[0].unknown).toBe(3);
    expect(out[1]).toMatch(/unknown \(busy\) 3\b/);
  });

  it('a state saved before unknown shares (or busy audits) were recorded loads with none', async () => {
    const dir = freshDir();
    const s = await loadKeeperState(dir);
    addKept(s, newCap(), 100);
    const { unknown: _u, ...old } = s.files[0] as unknown as Record<string, unknown>;
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'keeper.json'), JSON.stringify({ version: 1, files: [old] }));
    expect((await loadKeeperState(dir)).files[0]).toMatchObject({ unknown: 0 });
    const { busyAudits: _b, ...older } = old;
    await fsp.writeFile(path.join(dir, 'keeper.json'), JSON.stringify({ version: 1, files: [older] }));
    expect((await loadKeeperState(dir)).files[0]).toMatchObject({ unknown: 0, busyAudits: 0 });
    await fsp.writeFile(path.join(dir, 'keeper.json'), JSON.stringify({ version: 1, files: [{ ...old, unknown: -1 }] }));
    await expect(loadKeeperState(dir)).rejects.toMatchObject({ code: 'KEEPER_STATE_CORRUPT' });
  });
});

const report = (o: Partial<KeepReport> = {}): KeepReport => ({ shares: 8, healthy: 8, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 6, failures: [], busy: [], unknown: 0, expiresAt: 0, placed: [], ...o });
const RUN: KeeperRun = { once: true, interval: 3600, renewWithin: 60, leaseSeconds: 0 };

async function keeperWith(n: number): Promise<string> {
  const dir = freshDir();
  const s = await loadKeeperState(dir);
  for (let i = 0; i < n; i++) addKept(s, newCap(), 100);
  await saveKeeperState(dir, s);
  return dir;
}

describe('keep run options (SPEC.md §9.19)', () => {
  it('a bad --interval, --renew-within or --lease-seconds is CONFIG_INVALID before any pass', async () => {
    const dir = await keeperWith(1);
    let calls = 0;
    const pass: KeepPass = async () => {
      // Without the check the passes run back to back: end them as a signal would.
      if (++calls >= 3) process.emit('SIGTERM');
      return report();
    };
    const bad: Partial<KeeperRun>[] = [
      { once: false, interval: NaN }, { once: false, interval: -5 }, { once: false, interval: 0 }, { once: false, interval: 0.5 },
      { renewWithin: NaN }, { renewWithin: -1 }, { renewWithin: Infinity },
      { leaseSeconds: NaN }, { leaseSeconds: -1 }, { leaseSeconds: 1.5 },
    ];
    for (const b of bad) {
      await expect(runKeeper(dir, { ...RUN, ...b }, pass), JSON.stringify(b)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    }
    expect(calls).toBe(0);
    await expect(runKeeper(dir, { ...RUN, renewWithin: 0, leaseSeconds: 0 }, pass)).resolves.toMatchObject({ ok: true });
    expect(calls).toBe(1);
  });
});

describe('keep run stops on a signal (SPEC.md §9.19)', () => {
  it('SIGTERM between passes ends the command at once, not after --interval', async () => {
    const dir = await keeperWith(1);
    const listeners = process.listenerCount('SIGTERM');
    let calls = 0;
    let asleep!: () => void;
    const sleeping = new Promise<void>((r) => { asleep = r; });
    const run = runKeeper(dir, { ...RUN, once: false, interval: 3600 }, async () => { calls++; return report(); }, { onSleep: () => asleep() });
    // Wait for the first pass to be saved, and for the keeper to be asleep.
    while ((await loadKeeperState(dir)).files[0].lastCheck === 0) await new Promise((r) => setTimeout(r, 10));
    await sleeping;
    process.emit('SIGTERM');
    await expect(run).resolves.toMatchObject({ ok: true });
    expect(calls).toBe(1);
    expect(process.listenerCount('SIGTERM')).toBe(listeners);
  }, 10_000);

  it('an aborted signal ends it the same way', async () => {
    const dir = await keeperWith(2);
    const ac = new AbortController();
    let calls = 0;
    const run = runKeeper(dir, { ...RUN, once: false, interval: 3600 }, async () => { calls++; return report(); }, { signal: ac.signal });
    while ((await loadKeeperState(dir)).files.some((f) => f.lastCheck === 0)) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await expect(run).resolves.toMatchObject({ ok: true });
    expect(calls).toBe(2);
  }, 10_000);
});

describe('keep run stopped during a pass (SPEC.md §9.19)', () => {
  it('the pass gets the signal: stopped while its audits wait, it ends at once and the file is not saved as failed', async () => {
    const dir = await keeperWith(2);
    const ac = new AbortController();
    let calls = 0;
    // A file's pass waiting to ask a busy node again: it ends when the signal aborts.
    const pass: KeepPass = (_cap, o) => {
      calls++;
      return new Promise<KeepReport>((_resolve, reject) => {
        o.signal.addEventListener('abort', () => { reject(o.signal.reason as Error); }, { once: true });
        ac.abort();
      });
    };
    const { state } = await runKeeper(dir, { ...RUN, once: false }, pass, { signal: ac.signal });
    expect(calls).toBe(1);
    expect(state.files.map((f) => [f.lastCheck, f.lastError])).toEqual([[0, null], [0, null]]);
  }, 5_000);
});

describe('keep run with many audits waiting on busy nodes (SPEC.md §9.18.3 step 3, §9.19)', () => {
  it('each wait listens to the stop: far more than 10 of them at once raise no MaxListenersExceededWarning', async () => {
    const dir = await keeperWith(1);
    const ac = new AbortController();
    const warned: string[] = [];
    const onWarning = (w: Error) => { warned.push(w.name); };
    process.on('warning', onWarning);
    try {
      const busy = async (): Promise<AuditResult> => ({ shareId: 'aa', ok: false, code: 'STORAGE_BUSY', nonce: '', blocks: [] });
      let waiting = 0;
      // 64 shares of the file wait to ask their busy node again (an hour), then the run is stopped.
      const pass: KeepPass = async (_cap, o) => {
        await Promise.all(Array.from({ length: 64 }, () => auditRetryingBusy(async () => { waiting++; if (waiting === 64) setImmediate(() => { ac.abort(); }); return busy(); }, [3_600_000], o.signal)));
        return report();
      };
      await runKeeper(dir, { ...RUN, once: false }, pass, { signal: ac.signal });
      await new Promise((r) => setImmediate(r));
      expect(warned).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 5_000);
});

describe('keep run with a long interval (SPEC.md §9.19)', () => {
  it('an --interval above 2^31−1 ms (30 days) sleeps between passes, not 1 ms', async () => {
    const dir = await keeperWith(1);
    const ac = new AbortController();
    let calls = 0;
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    sleeps.length = 0;
    const run = runKeeper(dir, { ...RUN, once: false, interval: 2_592_000 }, async () => { calls++; return report(); }, { signal: ac.signal });
    // The keeper goes to sleep after the first pass: for the longest timer Node keeps (not 30 days,
    // which Node would fire after 1 ms, with a TimeoutOverflowWarning).
    await vi.waitFor(() => { expect(sleeps).toHaveLength(1); }, { timeout: 10_000 });
    expect(sleeps[0]).toBe(2 ** 31 - 1);
    expect(warn).not.toHaveBeenCalled();
    ac.abort();
    await expect(run).resolves.toMatchObject({ ok: true });
    warn.mockRestore();
    expect(calls).toBe(1);
  }, 10_000);
});

describe('keep add during a pass (SPEC.md §9.19)', () => {
  it('a file added by another process while a pass runs is kept; one removed meanwhile is not brought back', async () => {
    const dir = await keeperWith(2);
    const [a, b] = (await loadKeeperState(dir)).files;
    const added = newCap();
    const pass: KeepPass = async (cap) => {
      const me = cap.manifestId.toString('hex');
      // Another process's `keep add` (read, add, write) while the keeper works on a file.
      const s = await loadKeeperState(dir);
      if (me === a.manifestId) addKept(s, added, 150);
      // ... and a file taken out of keeper.json by hand.
      if (me === b.manifestId) s.files = s.files.filter((f) => f.manifestId !== a.manifestId);
      await saveKeeperState(dir, s);
      return report({ repaired: 1, expiresAt: 5000 });
    };
    const { ok, state } = await runKeeper(dir, RUN, pass);
    expect(ok).toBe(true);
    const after = await loadKeeperState(dir);
    expect(after).toEqual(state);
    expect(after.files.map((f) => f.verifyCap)).toEqual([b.verifyCap, added]);
    expect(after.files[0]).toMatchObject({ repaired: 1, repairedTotal: 1, expiresAt: 5000 });
    expect(after.files[0].lastCheck).toBeGreaterThan(0);
    expect(after.files[1]).toMatchObject({ lastCheck: 0, addedAt: 150 });
  });
});

describe('the keeper.json lock (SPEC.md §9.19)', () => {
  it('a lock left by a process that is gone is taken over', async () => {
    const dir = await keeperWith(1);
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await fsp.writeFile(path.join(dir, 'keeper.json.lock'), String(dead));
    const cap = newCap();
    expect(await updateKeeperState(dir, (s) => addKept(s, cap, 1), { timeoutMs: 5000 })).toBe(true);
    expect((await loadKeeperState(dir)).files).toHaveLength(2);
    await expect(fsp.stat(path.join(dir, 'keeper.json.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fsp.readdir(dir)).filter((x) => x.includes('.lock'))).toEqual([]);
  });

  it('a live holder is waited for, then KEEPER_STATE_LOCKED; the lock is released even when the work throws', async () => {
    const dir = await keeperWith(1);
    const lock = path.join(dir, 'keeper.json.lock');
    await fsp.writeFile(lock, String(process.pid));
    await expect(updateKeeperState(dir, () => {}, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'KEEPER_STATE_LOCKED' });
    await fsp.rm(lock);
    await expect(updateKeeperState(dir, () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(fsp.stat(lock)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('holders take turns: a second caller runs only after the first released the lock', async () => {
    const dir = freshDir();
    await fsp.mkdir(dir, { recursive: true });
    const lock = path.join(dir, 'x.lock');
    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const first = withFileLock(lock, async () => { order.push('first in'); await held; order.push('first out'); }, { code: 'KEEPER_STATE_LOCKED' });
    while (!order.length) await new Promise((r) => setTimeout(r, 5));
    // Each try at the lock is one exclusive create; two refused ones (EEXIST) mean the second caller
    // went once round its wait without running. One that did not wait runs instead.
    const open = vi.spyOn(fs, 'openSync');
    const refusals = () => open.mock.calls.filter((c, i) => c[0] === lock && open.mock.results[i].type === 'throw').length;
    let second: Promise<void>;
    try {
      second = withFileLock(lock, async () => { order.push('second'); }, { code: 'KEEPER_STATE_LOCKED', retryMs: 5 });
      await vi.waitFor(() => { if (refusals() < 2 && order.length < 2) throw new Error('still trying'); }, { timeout: 5_000, interval: 2 });
      expect(order).toEqual(['first in']);
      expect(refusals()).toBeGreaterThanOrEqual(2);
    } finally {
      open.mockRestore();
    }
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'first out', 'second']);
  });
});

describe('a pass with a chunk that disagrees with its verify record (SPEC.md §9.18.3, §9.19)', () => {
  it('leaves SHARE_HASH_MISMATCH as the last error and makes keep run --once fail', async () => {
    const dir = await keeperWith(1);
    const { ok, state } = await runKeeper(dir, RUN, async () => report({ mismatchedChunks: 1, lost: 2, healthy: 6 }));
    expect(ok).toBe(false);
    expect(state.files[0]).toMatchObject({ lastError: 'SHARE_HASH_MISMATCH', lost: 2 });
  });
});

describe('the expiry of shares a pass stored (SPEC.md §9.18.3 step 4, §9.19)', () => {
  it('a pass that did not renew keeps the earlier of the recorded expiry and that of the shares it stored', async () => {
    const s = await loadKeeperState(freshDir());
    addKept(s, newCap(), 100);
    const f = s.files[0];
    recordPass(f, report({ expiresAt: 500 }), 200);
    recordPass(f, report({ repaired: 1, expiresAt: 600 }), 300, false);
    expect(f.expiresAt).toBe(500);
    recordPass(f, report({ repaired: 1, expiresAt: 400 }), 300, false);
    expect(f.expiresAt).toBe(400);
    recordPass(f, report({ expiresAt: 900 }), 400, true);
    expect(f.expiresAt).toBe(900);
  });
});

describe('keep add of a read capability: the root share (SPEC.md §9.18.1, §9.9 step 2)', () => {
  const fps = ['a', 'b', 'c'].map((c) => c.repeat(64));
  const fileKey = newFileKey();
  const verifyId = randomBytes(32);
  const sealed = sealManifest(fileKey, makeManifest({ size: 0, chunkSize: 4096, coding: { k: 2, n: 3 }, chunks: [] }), { verifyId });
  /** A stand-in client: the first node of the root's ranking answers every get with the error `hostile`. */
  const fakeClient = (hostile: Error | null, asked: string[]): StorageClient =>
    shareClient({ fps, id: sealed.manifestId, bytes: sealed.root.bytes, hostile, asked });

  it('a node answering MANIFEST_MALFORMED or CHUNK_AUTH_FAILED itself does not end the search: the next node is asked', async () => {
    for (const code of ['MANIFEST_MALFORMED', 'CHUNK_AUTH_FAILED'] as const) {
      const asked: string[] = [];
      const vcap = await verifyCapOf(fakeClient(err(code, 'storage node: no', { remote: true }), asked), formatCapability({ manifestId: sealed.manifestId, fileKey }));
      expect(parseVerifyCapability(vcap)).toEqual({ manifestId: sealed.manifestId, verifyId, verifyKey: deriveVerifyKey(fileKey) });
      expect(asked.length).toBe(2);
    }
  });

  it('a failure of getShare that is no BitcloudError (a programming error) is thrown, not taken for a node\'s answer', async () => {
    const asked: string[] = [];
    await expect(verifyCapOf(fakeClient(new TypeError('boom'), asked), formatCapability({ manifestId: sealed.manifestId, fileKey }))).rejects.toBeInstanceOf(TypeError);
    expect(asked.length).toBe(1);
  });

  it('nodes already marked dead are not asked, and a moderation refusal from every node asked is reported as such, as a read reports it', async () => {
    const asked: string[] = [];
    const first = rankNodes(sealed.manifestId, fps)[0];
    const c = { ...fakeClient(null, asked), isDead: (fp: string) => fp !== first } as unknown as StorageClient;
    const vcap = await verifyCapOf(c, formatCapability({ manifestId: sealed.manifestId, fileKey }));
    expect(parseVerifyCapability(vcap).verifyId).toEqual(verifyId);
    expect(asked).toEqual([first]);
    const refused: string[] = [];
    const only = { ...fakeClient(err('POLICY_DENIED', 'storage node: refused by moderation', { remote: true }), refused), fingerprints: [first] } as unknown as StorageClient;
    await expect(verifyCapOf(only, formatCapability({ manifestId: sealed.manifestId, fileKey }))).rejects.toMatchObject({ code: 'POLICY_DENIED' });
  });

  it('a root that does not open under the file key (bytes hash to the id) fails at once with CHUNK_AUTH_FAILED', async () => {
    const asked: string[] = [];
    await expect(verifyCapOf(fakeClient(null, asked), formatCapability({ manifestId: sealed.manifestId, fileKey: newFileKey() }))).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
    expect(asked.length).toBe(1);
  });
});
