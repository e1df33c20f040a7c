import { describe, it, expect, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ShareStore, quotaCharge, type ShareStoreOptions } from '../../storage/share-store';
import { LeaseJournal, RECORD_BYTES } from '../../storage/lease-journal';
import { shareId } from '../../src/storage/share';
import { auditProof } from '../../src/storage/protocol';
import { isBitcloudError } from '../../src/errors';

const dirs: string[] = [];
const stores: ShareStore[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function tmpDir(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-store-'));
  dirs.push(d);
  return d;
}

async function open(opts: Partial<ShareStoreOptions> & { dir: string }): Promise<ShareStore> {
  const s = await ShareStore.open({ quotaBytes: 1 << 20, ...opts });
  stores.push(s);
  return s;
}

function share(text: string): { id: Buffer; data: Buffer; hex: string } {
  const data = Buffer.from(text);
  const id = shareId(data);
  return { id, data, hex: id.toString('hex') };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

function clock(startSeconds: number) {
  let t = startSeconds * 1000;
  return { now: () => t, advance: (s: number) => { t += s * 1000; } };
}

/** A store at `t0` (seconds) that kept share 'alpha' with a 100 s lease, then closed (a restart follows). */
async function alphaStoredThenClosed(t0: number) {
  const c = clock(t0);
  const dir = await tmpDir();
  const s1 = await open({ dir, now: c.now });
  const a = share('alpha');
  await s1.put(a.id, a.data, 100);
  await s1.close();
  return { c, dir, a };
}

/** Flips every bit of the first byte of the lease journal's header in `dir`; returns the journal's path. */
function damageJournalHeader(dir: string): string {
  const file = path.join(dir, 'leases.journal');
  const j = fs.readFileSync(file);
  j[0] ^= 0xff;
  fs.writeFileSync(file, j);
  return file;
}

/** The next journal rewrite fails as on a full disk. */
function journalRewriteFailsOnce() {
  const enospc = () => Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
  return vi.spyOn(LeaseJournal.prototype, 'compact').mockImplementationOnce(enospc);
}

describe('share store (SPEC §9.8)', () => {
  it('stores shares in sharded folders, mode 0600 files and 0700 folders', async () => {
    const dir = await tmpDir();
    const s = await open({ dir });
    const a = share('alpha');
    expect((await s.put(a.id, a.data)).stored).toBe(true);
    const file = path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex);
    expect(fs.readFileSync(file).equals(a.data)).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'shares')).mode & 0o777).toBe(0o700);
    expect((await s.get(a.id)).data.equals(a.data)).toBe(true);
    expect(s.stat()).toMatchObject({ used: quotaCharge(5), shares: 1 });
  });

  it('verifies the hash on write: SHARE_HASH_MISMATCH, nothing written', async () => {
    const dir = await tmpDir();
    const s = await open({ dir });
    const a = share('alpha');
    expect(await codeOf(s.put(a.id, Buffer.from('alphA')))).toBe('SHARE_HASH_MISMATCH');
    expect(s.has([a.id])).toEqual([false]);
    // Only the 256 empty shares/ab folders made at open.
    const top = fs.readdirSync(path.join(dir, 'shares'));
    expect(top.length).toBe(256);
    for (const a of top) expect(fs.readdirSync(path.join(dir, 'shares', a))).toEqual([]);
  });

  it('serves byte ranges; a range past the end → STORAGE_BAD_REQUEST', async () => {
    const s = await open({ dir: await tmpDir() });
    const a = share('0123456789');
    await s.put(a.id, a.data);
    expect((await s.get(a.id, 2, 3)).data.toString()).toBe('234');
    expect((await s.get(a.id, 7)).data.toString()).toBe('789');
    expect((await s.get(a.id, 10)).data.length).toBe(0);
    expect(await codeOf(s.get(a.id, 8, 3))).toBe('STORAGE_BAD_REQUEST');
    expect(await codeOf(s.get(a.id, 11))).toBe('STORAGE_BAD_REQUEST');
    expect(await codeOf(s.get(share('nope').id))).toBe('SHARE_NOT_FOUND');
  });

  it('quota: a put that does not fit → STORAGE_FULL, and the store keeps serving', async () => {
    // Room for one 8-byte share and not two (each charged quotaCharge(8) = 8192, SPEC.md §9.8.4).
    const quota = 2 * quotaCharge(8) - 1;
    const s = await open({ dir: await tmpDir(), quotaBytes: quota });
    const a = share('12345678');
    const b = share('abcdefgh');
    await s.put(a.id, a.data);
    expect(await codeOf(s.put(b.id, b.data))).toBe('STORAGE_FULL');
    expect(s.stat()).toMatchObject({ capacity: quota, used: quotaCharge(8), shares: 1 });
    expect((await s.get(a.id)).data.equals(a.data)).toBe(true);
    // Re-putting a share already held costs nothing.
    expect((await s.put(a.id, a.data)).stored).toBe(false);
  });

  it('quota: each share is charged its size in 4 KiB blocks plus 4 KiB, so tiny shares cannot exhaust files and leases (SPEC.md §9.8.4)', async () => {
    const s = await open({ dir: await tmpDir(), quotaBytes: 64 * 1024 });
    // round_up(1, 4096) + 4096 = 8192 per 1-byte share: 8 fit in 64 KiB, the 9th is refused.
    for (let i = 0; i < 8; i++) {
      const a = share(String.fromCharCode(97 + i));
      expect((await s.put(a.id, a.data)).stored).toBe(true);
    }
    expect(await codeOf(s.put(share('z').id, share('z').data))).toBe('STORAGE_FULL');
    expect(s.stat()).toMatchObject({ capacity: 64 * 1024, used: 64 * 1024, shares: 8 });
  });

  it('a renewal answers 0 for a share that left while its record was being written, never an expiry it no longer keeps (SPEC.md §9.6.3)', async () => {
    const c = clock(1_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    await s.put(a.id, a.data, 10);
    c.advance(9); // a's lease has a second left: the renewal finds it held
    // The renewal's record is written at once, but its answer waits: meanwhile the lease runs out
    // and garbage collection removes the share.
    const journal = (s as unknown as { journal: LeaseJournal }).journal;
    const real = journal.append.bind(journal);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const spy = vi.spyOn(journal, 'append').mockImplementationOnce((records) => { const p = real(records); return gate.then(() => p); });
    const renewed = s.renew([a.id], 100);
    await new Promise((r) => setImmediate(r));
    expect(spy).toHaveBeenCalledTimes(1);
    c.advance(2);
    expect(await s.gc()).toMatchObject({ removed: 1 });
    release();
    expect(await renewed).toEqual([0]);
    expect(s.has([a.id])).toEqual([false]);
    expect(s.stat()).toMatchObject({ used: 0, shares: 0 });
    // The journal agrees: reopened, the store holds nothing.
    await s.close();
    const again = await open({ dir, now: c.now });
    expect(again.stat().shares).toBe(0);
  });

  it('leases: expiry hides a share at once, renew extends (never shortens), gc removes the file', async () => {
    const c = clock(1_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now, maxLeaseSeconds: 1000 });
    const a = share('alpha');
    const b = share('beta');
    expect((await s.put(a.id, a.data, 10)).expiresAt).toBe(1_000_010);
    expect((await s.put(b.id, b.data, 5000)).expiresAt).toBe(1_001_000); // clamped to the maximum
    expect(await s.renew([a.id, share('x').id], 5)).toEqual([1_000_010, 0]);
    expect(await s.renew([a.id], 20)).toEqual([1_000_020]);
    c.advance(21);
    expect(s.has([a.id, b.id])).toEqual([false, true]);
    expect(await codeOf(s.get(a.id))).toBe('SHARE_NOT_FOUND');
    expect(await s.gc()).toMatchObject({ removed: 1, bytes: 5 });
    expect(fs.existsSync(path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex))).toBe(false);
    expect(s.stat()).toMatchObject({ used: quotaCharge(4), shares: 1 });
  });

  it('a full store collects expired shares before refusing', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), quotaBytes: quotaCharge(8), now: c.now });
    const a = share('12345678');
    const b = share('abcdefgh');
    await s.put(a.id, a.data, 10);
    c.advance(11);
    expect((await s.put(b.id, b.data)).stored).toBe(true);
    expect(s.stat()).toMatchObject({ used: quotaCharge(8), shares: 1 });
  });

  it('a full store with nothing expired refuses a put at once, without a gc scan; once a share has expired, the next put collects it (SPEC.md §9.8.4)', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), quotaBytes: 10 * quotaCharge(8), now: c.now });
    for (let i = 0; i < 10; i++) { const x = share(`held-00${i}`); await s.put(x.id, x.data, i === 3 ? 100 : 1000); }
    const gc = vi.spyOn(s, 'gc');
    for (let i = 0; i < 20; i++) { const x = share(`more-${String(i).padStart(3, '0')}`); expect(await codeOf(s.put(x.id, x.data))).toBe('STORAGE_FULL'); }
    expect(gc).toHaveBeenCalledTimes(0);
    c.advance(101);
    const y = share('late-000');
    expect((await s.put(y.id, y.data)).stored).toBe(true);
    expect(gc).toHaveBeenCalledTimes(1);
    expect(s.stat()).toMatchObject({ used: 10 * quotaCharge(8), shares: 10 });
    // The earliest expiry is the heap's top again: still full, nothing expired, no collection.
    const z = share('late-001');
    expect(await codeOf(s.put(z.id, z.data))).toBe('STORAGE_FULL');
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('a full store whose expired shares a running gc is removing: a put waits for that gc, not STORAGE_FULL (SPEC.md §9.8.4)', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), quotaBytes: 2 * quotaCharge(8), now: c.now });
    const a = share('held-001');
    const b = share('held-002');
    await s.put(a.id, a.data, 10);
    await s.put(b.id, b.data, 1000);
    c.advance(11);
    // The removal of the expired share's file waits until released.
    let release!: () => void;
    const removing = new Promise<void>((r) => { release = r; });
    const rm = fsp.rm.bind(fsp);
    vi.spyOn(fsp, 'rm').mockImplementation(async (p, o) => { if (String(p).endsWith(a.hex)) await removing; return rm(p, o); });
    const gc = s.gc();
    await new Promise((r) => setTimeout(r, 20));
    const n = share('next-001');
    const put = codeOf(s.put(n.id, n.data));
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect(await put).toBeUndefined();
    expect((await gc).removed).toBe(1);
    expect(s.has([a.id, b.id, n.id])).toEqual([false, true, true]);
  });

  it('gc examines only the expired shares, not every share held; renewals and removals leave no lasting stale expiries (SPEC.md §9.8.4)', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), now: c.now, quotaBytes: 1 << 30 });
    const held = Array.from({ length: 200 }, (_, i) => share(`held-${String(i).padStart(4, '0')}`));
    for (const x of held) await s.put(x.id, x.data, 1000);
    const short = Array.from({ length: 3 }, (_, i) => share(`short-${i}`));
    for (const x of short) await s.put(x.id, x.data, 1);
    const renewed = share('renewed');
    await s.put(renewed.id, renewed.data, 1);
    await s.renew([renewed.id], 1000);
    c.advance(2);
    // The three expired shares and the renewed share's earlier expiry (stale, skipped): 4 of 204.
    expect(await s.gc()).toEqual({ removed: 3, bytes: short.reduce((n, x) => n + x.data.length, 0), examined: 4 });
    expect(s.has([renewed.id, ...short.map((x) => x.id)])).toEqual([true, false, false, false]);
    expect(await s.gc()).toEqual({ removed: 0, bytes: 0, examined: 0 });
    expect(s.stat().shares).toBe(201);
    // Each renewal leaves a stale expiry behind; they are dropped once they pass twice the live shares.
    const expiries = (s as unknown as { expiries: { size: number } }).expiries;
    for (let i = 1; i <= 600; i++) await s.renew([renewed.id], 1000 + i);
    expect(expiries.size).toBeLessThanOrEqual(3 * 201 + 1);
    c.advance(2000);
    expect((await s.gc()).removed).toBe(201);
    expect(expiries.size).toBe(0);
  });

  it('leases survive a restart; a share with no lease gets a grace lease; crash leftovers are removed', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(2_000_000);
    // A share written but never journaled (crash), and a temp file that never got renamed.
    const o = share('orphan');
    const odir = path.join(dir, 'shares', o.hex.slice(0, 2), o.hex.slice(2, 4));
    fs.mkdirSync(odir, { recursive: true });
    fs.writeFileSync(path.join(odir, o.hex), o.data);
    const tmp = path.join(odir, `.${o.hex}.123.abc.tmp`);
    fs.writeFileSync(tmp, 'partial');
    const s2 = await open({ dir, now: c.now, orphanGraceSeconds: 60 });
    expect(fs.existsSync(tmp)).toBe(false);
    expect(await s2.renew([a.id, o.id], 1)).toEqual([2_000_100, 2_000_060]);
    // Rebuilt from the files on disk with the same charge: 'alpha' (5 bytes) and 'orphan' (6).
    expect(s2.stat()).toMatchObject({ shares: 2, used: quotaCharge(5) + quotaCharge(6) });
  });

  it('a torn journal tail is cut off and the good records are kept', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(3_000_000);
    fs.appendFileSync(path.join(dir, 'leases.journal'), Buffer.alloc(30, 0xee));
    const s2 = await open({ dir, now: c.now, orphanGraceSeconds: 1 });
    expect(await s2.renew([a.id], 1)).toEqual([3_000_100]);
    expect((fs.statSync(path.join(dir, 'leases.journal')).size - 8) % 56).toBe(0);
  });

  it('a damaged journal record before good ones deletes no share early: every share keeps the longest lease (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s1 = await open({ dir, now: c.now, maxLeaseSeconds: 10_000 });
    const a = share('alpha');
    const b = share('bravo');
    await s1.put(a.id, a.data, 5000);
    await s1.put(b.id, b.data, 5000);
    await s1.close();
    // One bit of a's record flips (the journal holds a's record, then b's): b's record after it is
    // good, so this is damage, not a torn append, and both puts were answered.
    const file = path.join(dir, 'leases.journal');
    const j = fs.readFileSync(file);
    expect(j.length).toBe(8 + 2 * RECORD_BYTES);
    j[8 + RECORD_BYTES - 1] ^= 1;
    fs.writeFileSync(file, j);
    const s2 = await open({ dir, now: c.now, orphanGraceSeconds: 60, maxLeaseSeconds: 10_000 });
    // b's lease is read past the damage; a's is unknown, so it is kept for the longest lease.
    c.advance(3600);
    expect((await s2.gc()).removed).toBe(0);
    expect(s2.has([a.id, b.id])).toEqual([true, true]);
    expect(await s2.renew([a.id, b.id], 1)).toEqual([4_010_000, 4_010_000]);
  });

  it('a journal whose header is damaged deletes no share early (SPEC.md §9.8.2)', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(5_000_000);
    damageJournalHeader(dir);
    const s2 = await open({ dir, now: c.now, orphanGraceSeconds: 1, maxLeaseSeconds: 1000 });
    c.advance(100);
    expect((await s2.gc()).removed).toBe(0);
    expect(await s2.renew([a.id], 1)).toEqual([5_001_000]);
  });

  it('a store opens when the journal rewrite at open fails (a full disk); a damaged header stays damaged until rewritten (SPEC.md §9.8.2)', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(6_000_000);
    damageJournalHeader(dir);
    const spy = journalRewriteFailsOnce();
    const s2 = await ShareStore.open({ dir, quotaBytes: 1 << 20, now: c.now, orphanGraceSeconds: 1, maxLeaseSeconds: 1000 });
    expect(spy).toHaveBeenCalledTimes(1);
    expect(s2.has([a.id])).toEqual([true]);
    expect(await s2.renew([a.id], 1)).toEqual([6_001_000]);
    const b = share('bravo');
    expect((await s2.put(b.id, b.data, 50)).stored).toBe(true);
    await s2.close();
    // The next start still finds the journal damaged: neither share gets the grace lease.
    c.advance(500);
    const s3 = await open({ dir, now: c.now, orphanGraceSeconds: 1, maxLeaseSeconds: 1000 });
    c.advance(100);
    expect((await s3.gc()).removed).toBe(0);
    expect(s3.has([a.id, b.id])).toEqual([true, true]);
  });

  it('a damaged journal whose rewrite at open failed is rewritten once the disk has room: a later start does not extend every lease again (SPEC.md §9.8.2)', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(7_000_000);
    const file = damageJournalHeader(dir);
    journalRewriteFailsOnce();
    // Damage found at 7_000_000: a is kept until 7_001_000 (the longest lease from then).
    const s2 = await open({ dir, now: c.now, orphanGraceSeconds: 1, maxLeaseSeconds: 1000 });
    vi.restoreAllMocks();
    // The disk has room again: a later collection rewrites the journal (a minute after the failure).
    c.advance(61);
    await s2.gc();
    expect(fs.readFileSync(file).subarray(0, 8).toString()).toBe('BCLEASE1');
    await s2.close();
    // A restart reads a's lease as rewritten (7_001_000), not as damage found again: a is collected
    // once it runs out, not kept another 1000 s from this start.
    c.advance(900);
    const s3 = await open({ dir, now: c.now, orphanGraceSeconds: 1, maxLeaseSeconds: 1000 });
    c.advance(100);
    expect((await s3.gc()).removed).toBe(1);
    expect(s3.has([a.id])).toEqual([false]);
  });

  it('detects a corrupt file on read: SHARE_CORRUPT, quarantined, counted', async () => {
    const dir = await tmpDir();
    const s = await open({ dir, cacheBytes: 0 });
    const a = share('alpha');
    await s.put(a.id, a.data);
    const file = path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex);
    fs.writeFileSync(file, 'alphA');
    expect(await codeOf(s.get(a.id))).toBe('SHARE_CORRUPT');
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(path.join(dir, 'quarantine')).some((f) => f.startsWith(a.hex))).toBe(true);
    expect(s.has([a.id])).toEqual([false]);
    expect(s.stat().used).toBe(0);
    expect((await s.metrics.quarantined.get()).values[0].value).toBe(1);
    // The client can store it again.
    expect((await s.put(a.id, a.data)).stored).toBe(true);
  });

  it('a reader that read a corrupt copy does not quarantine a good copy stored again meanwhile (SPEC.md §9.8)', async () => {
    const dir = await tmpDir();
    const s = await open({ dir, cacheBytes: 0 });
    const a = share('alpha');
    await s.put(a.id, a.data);
    const file = path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex);
    fs.writeFileSync(file, 'alphA');
    // The second reader's disk read returns the corrupt bytes, but only once released.
    const readFile = fsp.readFile.bind(fsp);
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let reads = 0;
    vi.spyOn(fsp, 'readFile').mockImplementation((async (...args: Parameters<typeof fsp.readFile>) => {
      const n = ++reads;
      const bytes = await readFile(...args);
      if (n === 2) await held;
      return bytes;
    }) as typeof fsp.readFile);
    const first = s.get(a.id);
    const second = s.get(a.id);
    expect(await codeOf(first)).toBe('SHARE_CORRUPT');
    // The client stores a good copy again; then the slow reader gets to its corrupt bytes.
    expect((await s.put(a.id, a.data)).stored).toBe(true);
    release();
    const r = await second.catch((e: unknown) => e);
    expect(r).toEqual({ data: a.data, totalSize: a.data.length });
    expect(s.has([a.id])).toEqual([true]);
    expect(fs.readFileSync(file)).toEqual(a.data);
    expect((await s.metrics.quarantined.get()).values[0].value).toBe(1);
  });

  it('a failed write leaves no partial file and no accounting', async () => {
    const dir = await tmpDir();
    const s = await open({ dir });
    const a = share('a share that will not fit on the disk');
    const realOpen = fsp.open.bind(fsp);
    let failed = false;
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      // The share's temp file (not a folder opened for its fsync), once.
      if (failed || !String(args[0]).endsWith('.tmp')) return fh;
      failed = true;
      // Half the bytes reach the temp file, then the disk is full.
      return new Proxy(fh, {
        get(t, prop) {
          if (prop === 'writeFile') {
            return async (data: Buffer) => {
              await t.write(data.subarray(0, data.length >> 1));
              throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
            };
          }
          const v = Reflect.get(t, prop);
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
    });
    expect(await codeOf(s.put(a.id, a.data))).toBe('STORAGE_FULL');
    const leaf = path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4));
    expect(fs.existsSync(leaf) ? fs.readdirSync(leaf) : []).toEqual([]);
    expect(s.has([a.id])).toEqual([false]);
    expect(s.stat()).toMatchObject({ used: 0, shares: 0 });
    expect(await codeOf(s.get(a.id))).toBe('SHARE_NOT_FOUND');
    // The next attempt succeeds.
    expect((await s.put(a.id, a.data)).stored).toBe(true);
  });

  it('a put whose share folder cannot be fsynced (EIO, ENOSPC) is not answered as stored, and leaves no share behind (SPEC.md §9.8.2, §3.2.3)', async () => {
    for (const code of ['EIO', 'ENOSPC']) {
      const dir = await tmpDir();
      const s = await open({ dir });
      const a = share(`a share whose folder fsync fails with ${code}`);
      const leaf = path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4));
      const realOpen = fsp.open.bind(fsp);
      vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
        const fh = await realOpen(...args);
        // The share folder's fsync after the rename: the new entry may not be on disk.
        if (path.resolve(String(args[0])) === leaf) fh.sync = () => Promise.reject(Object.assign(new Error(`fsync: ${code}`), { code }));
        return fh;
      });
      expect(await codeOf(s.put(a.id, a.data))).toBe(code === 'ENOSPC' ? 'STORAGE_FULL' : 'STORAGE_IO_ERROR');
      vi.restoreAllMocks();
      expect(s.has([a.id])).toEqual([false]);
      expect(s.stat()).toMatchObject({ used: 0, shares: 0 });
      expect(fs.readdirSync(leaf)).toEqual([]);
      // The disk works again: the share is stored.
      expect((await s.put(a.id, a.data)).stored).toBe(true);
    }
  });

  it('concurrent puts of one share store it once', async () => {
    const s = await open({ dir: await tmpDir() });
    const a = share('same');
    const r = await Promise.all([s.put(a.id, a.data), s.put(a.id, a.data), s.put(a.id, a.data)]);
    expect(r.filter((x) => x.stored)).toHaveLength(1);
    expect(s.stat()).toMatchObject({ used: quotaCharge(4), shares: 1 });
  });

  it('hot shares come from the LRU cache', async () => {
    const s = await open({ dir: await tmpDir(), cacheBytes: 1024 });
    const a = share('hot');
    await s.put(a.id, a.data);
    await s.get(a.id);
    await s.get(a.id);
    const v = (await s.metrics.cacheLookups.get()).values;
    expect(v.find((x) => x.labels.result === 'hit')?.value).toBe(1);
    expect(v.find((x) => x.labels.result === 'miss')?.value).toBe(1);
  });

  it('audit proves possession: BLAKE2b-256(nonce | share)', async () => {
    const s = await open({ dir: await tmpDir() });
    const a = share('audited');
    await s.put(a.id, a.data);
    const nonce = Buffer.alloc(32, 5);
    expect((await s.audit(a.id, nonce)).equals(auditProof(nonce, a.data))).toBe(true);
  });

  it('a renewal that grows the journal past twice the live shares compacts it, without waiting for gc (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    await s.put(a.id, a.data, 10);
    // Many renewals of one share, each a little longer: one record each (coalesced into few writes).
    await Promise.all(Array.from({ length: 1100 }, (_, i) => s.renew([a.id], 11 + i)));
    expect(fs.statSync(path.join(dir, 'leases.journal')).size).toBeLessThanOrEqual(8 + 1024 * RECORD_BYTES);
    await s.close();
    const again = await open({ dir, now: c.now });
    expect(await again.renew([a.id], 1)).toEqual([4_000_000 + 1110]);
  });

  it('a RENEW naming one share many times writes one record for it (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    await s.put(a.id, a.data, 60);
    const file = path.join(dir, 'leases.journal');
    for (let i = 0; i < 50; i++) {
      const got = await s.renew(Array<Buffer>(1024).fill(a.id), 61 + i);
      expect(got).toEqual(Array<number>(1024).fill(4_000_000 + 61 + i));
      // The put's record and one per renewal so far: exactly, so never past the rewrite bound
      // (1024 records per renewal would be rewritten down to one at once, hiding them).
      expect(fs.statSync(file).size).toBe(8 + (2 + i) * RECORD_BYTES);
    }
  });

  it('renewals that each extend a lease keep the journal bounded with no gc run (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    await s.put(a.id, a.data, 10);
    const file = path.join(dir, 'leases.journal');
    let lease = 10;
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(Array.from({ length: 100 }, () => s.renew([a.id], ++lease)));
      expect(fs.statSync(file).size).toBeLessThanOrEqual(8 + 1025 * RECORD_BYTES);
    }
    // A put of the share held, with a longer lease each time, is bounded the same way.
    await Promise.all(Array.from({ length: 1100 }, () => s.put(a.id, a.data, ++lease)));
    expect(fs.statSync(file).size).toBeLessThanOrEqual(8 + 1025 * RECORD_BYTES);
    await s.close();
    const again = await open({ dir, now: c.now });
    expect(await again.renew([a.id], 1)).toEqual([4_000_000 + lease]);
  });

  it('close() waits for a journal rewrite a renewal started, and none starts after it (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    await s.put(a.id, a.data, 10);
    const events: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    let started!: () => void;
    const rewriting = new Promise<void>((r) => { started = r; });
    const compact = LeaseJournal.prototype.compact;
    const spy = vi.spyOn(LeaseJournal.prototype, 'compact').mockImplementation(async function (this: LeaseJournal, live) {
      started();
      await released;
      await compact.call(this, live);
      events.push('rewritten');
    });
    const renewals = Promise.all(Array.from({ length: 1100 }, (_, i) => s.renew([a.id], 11 + i)));
    await rewriting;
    const closed = s.close().then(() => { events.push('closed'); });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    release();
    await closed;
    await renewals.catch(() => {});
    expect(events).toEqual(['rewritten', 'closed']);
    expect(spy).toHaveBeenCalledTimes(1);
    const again = await open({ dir, now: c.now });
    expect(await again.renew([a.id], 1)).toEqual([4_000_000 + 1110]);
  });

  it('a journal rewrite that failed is not tried again on the next renewal, only after 60 s or another threshold of records (SPEC.md §9.8.2)', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const warnings: string[] = [];
    const log = { debug: () => {}, info: () => {}, warn: (_o: unknown, m: string) => { warnings.push(m); }, error: () => {}, child: () => log };
    const s = await open({ dir, now: c.now, log: log as unknown as ShareStoreOptions['log'] });
    const a = share('alpha');
    await s.put(a.id, a.data, 10);
    const spy = vi.spyOn(LeaseJournal.prototype, 'compact').mockRejectedValue(Object.assign(new Error('no space left'), { code: 'ENOSPC' }));
    for (let i = 0; i < 1100; i++) await s.renew([a.id], 11 + i);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(warnings.filter((m) => m.includes('lease journal'))).toHaveLength(1);
    // 60 s later the next renewal tries again (and fails again: still one warning).
    c.advance(60);
    await s.renew([a.id], 5000);
    expect(spy).toHaveBeenCalledTimes(2);
    await s.renew([a.id], 5001);
    expect(spy).toHaveBeenCalledTimes(2);
    expect(warnings.filter((m) => m.includes('lease journal'))).toHaveLength(1);
    // Once it works again, the journal is rewritten.
    spy.mockRestore();
    c.advance(60);
    await s.renew([a.id], 5002);
    expect(fs.statSync(path.join(dir, 'leases.journal')).size).toBe(8 + RECORD_BYTES);
  });

  it('gc compacts a journal that grew past twice the live shares', async () => {
    const c = clock(4_000_000);
    const dir = await tmpDir();
    const s = await open({ dir, now: c.now });
    const a = share('alpha');
    const b = share('beta');
    await s.put(a.id, a.data, 10);
    await s.put(b.id, b.data, 500);
    // Up to the bound (1024 records while at most 512 shares are held): not rewritten...
    await Promise.all(Array.from({ length: 1022 }, (_, i) => s.renew([a.id], 11 + i)));
    expect(fs.statSync(path.join(dir, 'leases.journal')).size).toBe(8 + 1024 * RECORD_BYTES);
    // ...past it once gc wrote the removal of b, whose lease ran out: only a's lease is left.
    c.advance(600);
    await s.gc();
    expect(fs.statSync(path.join(dir, 'leases.journal')).size).toBe(8 + RECORD_BYTES);
    await s.close();
    const again = await open({ dir, now: c.now });
    expect(await again.renew([a.id], 1)).toEqual([4_000_000 + 1032]);
  });
});

describe('a lease write that fails (SPEC.md §9.8.2)', () => {
  const failNextAppend = (code: string) => vi.spyOn(LeaseJournal.prototype, 'append').mockRejectedValueOnce(Object.assign(new Error(code), { code }));

  it('a put of a share already held: STORAGE_FULL on a full disk, and the lease stays as it was', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), now: c.now });
    const a = share('alpha');
    const first = await s.put(a.id, a.data, 100);
    failNextAppend('ENOSPC');
    expect(await codeOf(s.put(a.id, a.data, 1000))).toBe('STORAGE_FULL');
    expect(await s.renew([a.id], 1)).toEqual([first.expiresAt]);
  });

  it('a renewal: STORAGE_IO_ERROR, and no lease is longer in memory than on disk', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), now: c.now });
    const a = share('alpha');
    const first = await s.put(a.id, a.data, 100);
    failNextAppend('EIO');
    expect(await codeOf(s.renew([a.id], 1000))).toBe('STORAGE_IO_ERROR');
    expect(await s.renew([a.id], 1)).toEqual([first.expiresAt]);
  });
});

describe('a removal record that cannot be written (SPEC.md §9.8.3)', () => {
  const failNextAppend = (code: string) => vi.spyOn(LeaseJournal.prototype, 'append').mockRejectedValueOnce(Object.assign(new Error(code), { code }));

  it('a corrupt share: the read still fails SHARE_CORRUPT (typed), the share is quarantined, the failed write counted', async () => {
    const dir = await tmpDir();
    const s = await open({ dir, cacheBytes: 0 });
    const a = share('alpha');
    await s.put(a.id, a.data);
    fs.writeFileSync(path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex), 'alphA');
    failNextAppend('EIO');
    expect(await codeOf(s.get(a.id))).toBe('SHARE_CORRUPT');
    expect(s.has([a.id])).toEqual([false]);
    expect((await s.metrics.quarantined.get()).values[0].value).toBe(1);
    expect((await s.metrics.errors.get()).values.find((v) => v.labels.code === 'STORAGE_IO_ERROR')?.value).toBe(1);
  });

  it('a put that collects expired shares first: the collection\'s failed removal record is counted, and the put goes on (SPEC.md §9.8.2)', async () => {
    const c = clock(1_000_000);
    const s = await open({ dir: await tmpDir(), quotaBytes: 2 * quotaCharge(8), now: c.now });
    for (const t of ['held-001', 'held-002']) { const x = share(t); await s.put(x.id, x.data, 10); }
    c.advance(11);
    failNextAppend('ENOSPC'); // the collection's removal records
    const b = share('next-001');
    expect((await s.put(b.id, b.data)).stored).toBe(true);
    expect(s.stat()).toMatchObject({ used: quotaCharge(8), shares: 1 });
    expect((await s.metrics.errors.get()).values.find((v) => v.labels.code === 'STORAGE_FULL')?.value).toBe(1);
    // With every journal write failing (a full disk), such a put is answered STORAGE_FULL.
    const h = share('held-003');
    await s.put(h.id, h.data, 10);
    c.advance(11);
    vi.spyOn(LeaseJournal.prototype, 'append').mockRejectedValue(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
    const d = share('next-002');
    expect(await codeOf(s.put(d.id, d.data))).toBe('STORAGE_FULL');
    expect(s.has([d.id])).toEqual([false]);
  });

  it('a share gone from disk: the read still fails SHARE_NOT_FOUND (typed)', async () => {
    const dir = await tmpDir();
    const s = await open({ dir, cacheBytes: 0 });
    const a = share('alpha');
    await s.put(a.id, a.data);
    fs.rmSync(path.join(dir, 'shares', a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex));
    failNextAppend('ENOSPC');
    expect(await codeOf(s.get(a.id))).toBe('SHARE_NOT_FOUND');
    expect(s.has([a.id])).toEqual([false]);
  });
});

type JournalWrite = (b: Buffer, o: number, l: number) => Promise<{ bytesWritten: number }>;
/** The journal's next write to its file goes through `f` (given the real write) instead. */
function onceOnJournalWrite(journal: LeaseJournal, f: (realWrite: JournalWrite, b: Buffer, o: number, l: number) => Promise<{ bytesWritten: number }>): void {
  const fh = (journal as unknown as { fh: fsp.FileHandle }).fh;
  const realWrite = fh.write.bind(fh) as JournalWrite;
  vi.spyOn(fh, 'write').mockImplementationOnce((async (b: Buffer, o = 0, l = b.length - o) => f(realWrite, b, o, l)) as never);
}

describe('lease journal', () => {
  it('replays the last record per id; removals delete', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const id1 = Buffer.alloc(32, 1);
    const id2 = Buffer.alloc(32, 2);
    await journal.append([{ id: id1, expiresAt: 5 }, { id: id2, expiresAt: 6 }]);
    await journal.append([{ id: id1, expiresAt: 9 }, { id: id2, expiresAt: 0 }]);
    await journal.close();
    const { journal: j2, leases, repaired } = await LeaseJournal.open(file);
    expect(repaired).toBe(false);
    expect([...leases]).toEqual([[id1.toString('hex'), 9]]);
    await j2.close();
  });

  it('a rewrite that cannot reopen the file (no file descriptor left) leaves later appends working, on the new file (SPEC.md §9.8.2)', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const id1 = Buffer.alloc(32, 1);
    const id2 = Buffer.alloc(32, 2);
    await journal.append([{ id: id1, expiresAt: 5 }, { id: id1, expiresAt: 7 }]);
    const realOpen = fsp.open.bind(fsp);
    let failed = 0;
    const spy = vi.spyOn(fsp, 'open').mockImplementation(((p: string, flags?: string, mode?: number) => {
      if (flags === 'a' && failed === 0) { failed++; return Promise.reject(Object.assign(new Error('too many open files'), { code: 'EMFILE' })); }
      return realOpen(p, flags, mode);
    }) as typeof fsp.open);
    expect((await journal.compact([{ id: id1, expiresAt: 7 }]).then(() => null, (e: NodeJS.ErrnoException) => e.code))).toBe('EMFILE');
    expect(failed).toBe(1);
    // The next append opens the file again and is written to it: not refused for ever.
    await journal.append([{ id: id2, expiresAt: 9 }]);
    spy.mockRestore();
    expect(journal.recordCount).toBe(2);
    await journal.close();
    expect((await fsp.stat(file)).size).toBe(8 + 2 * RECORD_BYTES);
    const { journal: j2, leases, repaired } = await LeaseJournal.open(file);
    expect(repaired).toBe(false);
    expect([...leases].sort()).toEqual([[id1.toString('hex'), 7], [id2.toString('hex'), 9]]);
    await j2.close();
  });

  it('an append after close() is refused and opens no handle on the file (SPEC.md §9.8.2)', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const id1 = Buffer.alloc(32, 1);
    await journal.append([{ id: id1, expiresAt: 5 }]);
    await journal.close();
    const opened: string[] = [];
    const realOpen = fsp.open.bind(fsp);
    const spy = vi.spyOn(fsp, 'open').mockImplementation(((p: string, flags?: string, mode?: number) => {
      opened.push(String(flags));
      return realOpen(p, flags, mode);
    }) as typeof fsp.open);
    try {
      // A removal record of a request still in flight when the store closed.
      const code = await journal.append([{ id: id1, expiresAt: 0 }]).then(() => null, (e: NodeJS.ErrnoException) => e.code);
      expect(code).toBe('EBADF');
      expect(opened).toEqual([]);
    } finally {
      spy.mockRestore();
    }
    expect((await fsp.stat(file)).size).toBe(8 + RECORD_BYTES);
    const { journal: j2, leases } = await LeaseJournal.open(file);
    expect([...leases]).toEqual([[id1.toString('hex'), 5]]);
    await j2.close();
  });

  it('a failed append cuts its partial record off, so later records still replay', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const id1 = Buffer.alloc(32, 1);
    const id2 = Buffer.alloc(32, 2);
    const id3 = Buffer.alloc(32, 3);
    await journal.append([{ id: id1, expiresAt: 5 }]);
    // The disk fills in the middle of the next record: half of it reaches the file.
    onceOnJournalWrite(journal, async (realWrite, b, o, l) => {
      await realWrite(b, o, l >> 1);
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    });
    await expect(journal.append([{ id: id2, expiresAt: 6 }])).rejects.toMatchObject({ code: 'ENOSPC' });
    // Room again: the next record is kept, and so is everything before the failure.
    await journal.append([{ id: id3, expiresAt: 7 }]);
    await journal.close();
    expect(fs.statSync(file).size).toBe(8 + 2 * RECORD_BYTES);
    const { journal: j2, leases, repaired } = await LeaseJournal.open(file);
    expect(repaired).toBe(false);
    expect([...leases].sort()).toEqual([[id1.toString('hex'), 5], [id3.toString('hex'), 7]]);
    await j2.close();
  });

  it('a failed append whose cut fails too is cut before the next write, which fails while it cannot be (SPEC.md §9.8.2)', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const fh = (journal as unknown as { fh: fsp.FileHandle }).fh;
    const id1 = Buffer.alloc(32, 1);
    const id2 = Buffer.alloc(32, 2);
    const id3 = Buffer.alloc(32, 3);
    const id4 = Buffer.alloc(32, 4);
    await journal.append([{ id: id1, expiresAt: 5 }]);
    // Half a record reaches the file, then EIO; cutting it off fails with EIO twice.
    onceOnJournalWrite(journal, async (realWrite, b, o, l) => {
      await realWrite(b, o, l >> 1);
      throw Object.assign(new Error('i/o error'), { code: 'EIO' });
    });
    const realTruncate = fh.truncate.bind(fh);
    const eio = () => Promise.reject(Object.assign(new Error('i/o error'), { code: 'EIO' }));
    vi.spyOn(fh, 'truncate').mockImplementationOnce(eio).mockImplementationOnce(eio).mockImplementation(realTruncate);
    await expect(journal.append([{ id: id2, expiresAt: 6 }])).rejects.toMatchObject({ code: 'EIO' });
    // Not acknowledged: written after the partial record, it would be lost at the next start.
    await expect(journal.append([{ id: id3, expiresAt: 7 }])).rejects.toMatchObject({ code: 'EIO' });
    // The cut works again: the next record is kept, after the last whole one.
    await journal.append([{ id: id4, expiresAt: 8 }]);
    await journal.close();
    expect(fs.statSync(file).size).toBe(8 + 2 * RECORD_BYTES);
    const { journal: j2, leases, repaired, damaged } = await LeaseJournal.open(file);
    expect({ repaired, damaged }).toEqual({ repaired: false, damaged: false });
    expect([...leases].sort()).toEqual([[id1.toString('hex'), 5], [id4.toString('hex'), 8]]);
    await j2.close();
  });

  it('a rewrite whose folder fsync fails after its rename writes the next records to the new file (SPEC.md §9.8.2)', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'j');
    const { journal } = await LeaseJournal.open(file);
    const id1 = Buffer.alloc(32, 1);
    const id2 = Buffer.alloc(32, 2);
    const id3 = Buffer.alloc(32, 3);
    await journal.append([{ id: id1, expiresAt: 5 }, { id: id2, expiresAt: 6 }]);
    // The rename is done; the fsync of the folder then fails (EIO): the file is the rewrite's.
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      if (args[0] === dir) vi.spyOn(fh, 'sync').mockRejectedValueOnce(Object.assign(new Error('i/o error'), { code: 'EIO' }));
      return fh;
    });
    await expect(journal.compact([{ id: id1, expiresAt: 5 }])).rejects.toMatchObject({ code: 'EIO' });
    vi.restoreAllMocks();
    // Acknowledged, so it must be in the file a restart reads, not in the one the rewrite replaced.
    await journal.append([{ id: id3, expiresAt: 7 }]);
    await journal.close();
    const { journal: j2, leases, repaired, damaged } = await LeaseJournal.open(file);
    expect({ repaired, damaged }).toEqual({ repaired: false, damaged: false });
    expect([...leases].sort()).toEqual([[id1.toString('hex'), 5], [id3.toString('hex'), 7]]);
    expect(fs.statSync(file).size).toBe(8 + 2 * RECORD_BYTES);
    await j2.close();
  });

  it('a short write goes on from where it stopped', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    onceOnJournalWrite(journal, (realWrite, b, o, l) => realWrite(b, o, Math.min(l, 10)));
    const ids = [Buffer.alloc(32, 4), Buffer.alloc(32, 5)];
    await journal.append(ids.map((id, i) => ({ id, expiresAt: 10 + i })));
    await journal.close();
    const { journal: j2, leases } = await LeaseJournal.open(file);
    expect([...leases].sort()).toEqual([[ids[0].toString('hex'), 10], [ids[1].toString('hex'), 11]]);
    await j2.close();
  });

  it('appends that arrive while a write is under way each wait for the fsync of their own batch, and see it fail (SPEC.md §9.8.2)', async () => {
    const file = path.join(await tmpDir(), 'j');
    const { journal } = await LeaseJournal.open(file);
    const fh = (journal as unknown as { fh: fsp.FileHandle }).fh;
    const realDatasync = fh.datasync.bind(fh);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let synced!: () => void;
    const inFirstSync = new Promise<void>((r) => { synced = r; });
    vi.spyOn(fh, 'datasync')
      .mockImplementationOnce(async () => { synced(); await gate; return realDatasync(); })
      .mockImplementationOnce(() => Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })));
    const settled = (p: Promise<void>) => p.then(() => 'written', (e: { code?: string }) => e.code ?? 'failed');
    const a = settled(journal.append([{ id: Buffer.alloc(32, 1), expiresAt: 5 }]));
    await inFirstSync;
    // Two appends while the first batch's fsync is under way: both go in the next batch.
    const b = settled(journal.append([{ id: Buffer.alloc(32, 2), expiresAt: 6 }]));
    const c = settled(journal.append([{ id: Buffer.alloc(32, 3), expiresAt: 7 }]));
    release();
    expect(await Promise.all([a, b, c])).toEqual(['written', 'ENOSPC', 'ENOSPC']);
    await journal.close();
    const { journal: j2, leases } = await LeaseJournal.open(file);
    expect([...leases]).toEqual([[Buffer.alloc(32, 1).toString('hex'), 5]]);
    await j2.close();
  });

  it('temporary files of rewrites a crash stopped are removed at open, never read as the journal (SPEC.md §9.8.2)', async () => {
    const { c, dir, a } = await alphaStoredThenClosed(1_000_000);
    // Two crashes between a rewrite's write and its rename: each left a temporary file holding
    // another journal (here, one that says alpha was removed).
    const other = Buffer.concat([Buffer.from('BCLEASE1'), Buffer.alloc(RECORD_BYTES)]);
    const temps = ['.leases.journal.4242.0123456789ab.tmp', '.leases.journal.4343.ba9876543210.tmp'];
    for (const t of temps) fs.writeFileSync(path.join(dir, t), other);
    fs.writeFileSync(path.join(dir, '.unrelated.tmp'), 'not ours');
    const s = await open({ dir, now: c.now });
    for (const t of temps) expect(fs.existsSync(path.join(dir, t))).toBe(false);
    expect(fs.existsSync(path.join(dir, '.unrelated.tmp'))).toBe(true);
    expect(s.has([a.id])).toEqual([true]);
    expect((await s.get(a.id)).data).toEqual(a.data);
  });

  it('a file that is not a journal is replaced, and says so', async () => {
    const file = path.join(await tmpDir(), 'j');
    fs.writeFileSync(file, 'garbage!garbage!');
    const { journal, leases, repaired } = await LeaseJournal.open(file);
    expect(repaired).toBe(true);
    expect(leases.size).toBe(0);
    await journal.close();
  });
});
