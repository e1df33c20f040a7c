// SPEC.md §9.8: the storage node's share store. Shares live in <dir>/shares/ab/cd/<64 hex id>
// (first two bytes of the id as folders), written atomically (temp, fsync, rename), checked against
// their id when written and when read; a file that no longer hashes to its name is moved to
// <dir>/quarantine and reported as SHARE_CORRUPT. Leases (expiry per share) are kept in the lease
// journal; expired shares are invisible at once and removed by gc(), which takes them from a heap of
// expiries (SPEC.md §9.8.4) rather than scanning every share. A byte quota bounds the total,
// each share charged by the disk blocks it takes plus a block of overhead (quotaCharge).
import fsp from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { err, errorCode, isBitcloudError } from '../src/errors';
import { writeFileAtomic, mkdirDurable, fsyncDir } from '../src/ops/fsutil';
import { silentLogger, type Logger } from '../src/ops/log';
import type { Registry } from '../src/ops/metrics';
import { MAX_SHARE_BYTES, checkShare, checkShareInPieces, shareIdHex } from '../src/storage/share';
import { auditProofInPieces } from '../src/storage/protocol';
import { auditBlockCount, proveBlocksInPieces } from '../src/storage/audit';
import { encodeAuditAnswer } from '../src/wire/audit-answer';
import { LeaseJournal, type LeaseRecord } from './lease-journal';
import { ExpiryHeap } from './expiry-heap';
import { StorageMetrics } from './metrics';
import { CircuitMetrics } from '../src/circuit/metrics';

const HEX_ID = /^[0-9a-f]{64}$/;
const DAY = 86_400;

/** SPEC.md §9.8.4: the quota counts a share's size rounded up to whole blocks of this many bytes… */
export const SHARE_QUOTA_BLOCK = 4096;
/** …plus this much for its file, inode and lease record, so a share of 1 byte costs 8 KiB. */
export const SHARE_QUOTA_OVERHEAD = 4096;

/** SPEC.md §9.8.4: what a share of `size` bytes is charged against the quota. */
export function quotaCharge(size: number): number {
  return Math.ceil(size / SHARE_QUOTA_BLOCK) * SHARE_QUOTA_BLOCK + SHARE_QUOTA_OVERHEAD;
}

export interface ShareStoreOptions {
  /** Data folder; the store uses shares/, quarantine/ and leases.journal inside it. */
  dir: string;
  /** Quota the node's shares may be charged in all (each quotaCharge of its size). */
  quotaBytes: number;
  /** Bytes of verified shares kept in memory for hot reads (default 64 MiB; 0 disables). */
  cacheBytes?: number;
  /** Lease given when a request asks for 0 (default 7 days). */
  defaultLeaseSeconds?: number;
  /** Longest lease granted; longer requests are shortened to it (default 90 days). */
  maxLeaseSeconds?: number;
  /** Lease given to a share found on disk without one, e.g. after a crash (default 1 hour). */
  orphanGraceSeconds?: number;
  /** Largest share accepted (default MAX_SHARE_BYTES). */
  maxShareBytes?: number;
  /** Audits (`audit`, `audit_challenge`) computing at once, node-wide (SPEC.md §9.17.2; default 2). */
  auditConcurrency?: number;
  /** Audits waiting for a turn beyond those; one more is refused with STORAGE_BUSY (default 32). */
  auditQueue?: number;
  /**
   * SPEC.md §9.6.1: bytes of share reads in progress (read from disk and hashed, not yet handed to
   * the stream), node-wide, each counted by its share's size; one more past it is refused with
   * STORAGE_BUSY (default MAX_READ_BYTES_IN_FLIGHT). A positive integer.
   */
  maxReadBytesInFlight?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
  metrics?: StorageMetrics;
  registry?: Registry;
  log?: Logger;
}

interface Entry {
  size: number;
  expiresAt: number;
}

export interface StoreStat {
  capacity: number;
  /** Quota charged for the shares held (SPEC.md §9.8.4: quotaCharge of each). */
  used: number;
  shares: number;
  maxLeaseSeconds: number;
  maxShareBytes: number;
}

/** What a gc() run did: shares removed, their bytes, and the expiries it looked at (SPEC.md §9.8.4). */
export interface GcResult {
  removed: number;
  bytes: number;
  examined: number;
}

/**
 * SPEC.md §9.6.1: bytes of share reads in progress at a node, over all its streams (default of
 * `maxReadBytesInFlight`). Each stream has at most 8 requests in flight, but streams are many.
 */
export const MAX_READ_BYTES_IN_FLIGHT = 256 * 1024 * 1024;

/** SPEC.md §9.8.2: after a failed rewrite of the lease journal, a put or renewal tries again after this long at the earliest. */
export const COMPACT_RETRY_MS = 60_000;

export class ShareStore {
  readonly metrics: StorageMetrics;
  readonly maxLeaseSeconds: number;
  readonly maxShareBytes: number;
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /**
   * Share folders (shares/ab/cd) known to exist, created once per run and not looked up per put:
   * each with the fsync of its parent that makes it durable (SPEC.md §9.8.1), started by the
   * first put that finishes writing into it and awaited by every put into it until it is done.
   */
  private readonly dirs = new Map<string, ShareFolder>();
  private readonly cache: LRUCache<string, Buffer> | null;
  private readonly audits: WorkGate;
  /** SPEC.md §9.6.1: the node-wide bound on the bytes of share reads in progress, and those bytes now. */
  private readonly maxReadBytes: number;
  private readBytes = 0;
  private readonly now: () => number;
  private readonly log: Logger;
  /** Quota charged for the shares held (quotaCharge of each size), and their bytes. */
  private used = 0;
  private bytes = 0;
  /** Quota charged for puts under way. */
  private reserved = 0;
  private gcTimer: NodeJS.Timeout | null = null;
  /**
   * SPEC.md §9.8.4: every expiry given to an entry, least first (lazy deletion: an item whose entry
   * is gone or holds another expiry is stale and skipped). gc() takes only the expired items, so
   * its cost follows the shares that expired, not the shares held; its top is the earliest expiry,
   * before which a put over the quota refuses at once (nothing could be freed).
   */
  private readonly expiries = new ExpiryHeap();
  private gcRunning: Promise<GcResult> | null = null;
  /**
   * Expired shares the running gc() took off the heap and has not yet removed: still held (and
   * charged), so a put over the quota joins that run rather than refusing (SPEC.md §9.8.4).
   */
  private collecting = 0;
  /**
   * Puts and renewals under way between their lease record and the in-memory entry it stands
   * for. A rewrite of the journal (compactJournal) waits until there is none, and new ones wait
   * for the rewrite: the live leases it writes then match every record written before it.
   */
  private leaseWriters = 0;
  private leaseWritersDone: (() => void) | null = null;
  private compacting: Promise<void> | null = null;
  /** After a rewrite of the journal failed: when, and its record count then (compactIfGrown waits). */
  private compactFailed: { at: number; records: number } | null = null;
  /**
   * SPEC.md §9.8.2: the journal found damaged at open is still the file on disk (its rewrite at open
   * failed): rewritten at the next put, renewal or collection 60 s after the failure, whatever its size.
   */
  private journalDamaged = false;
  private closing = false;

  private constructor(private readonly opts: ShareStoreOptions, private readonly journal: LeaseJournal) {
    this.metrics = opts.metrics ?? new StorageMetrics(opts.registry);
    this.maxLeaseSeconds = opts.maxLeaseSeconds ?? 90 * DAY;
    this.maxShareBytes = opts.maxShareBytes ?? MAX_SHARE_BYTES;
    const cacheBytes = opts.cacheBytes ?? 64 * 1024 * 1024;
    this.cache = cacheBytes > 0 ? new LRUCache<string, Buffer>({ maxSize: cacheBytes, sizeCalculation: (b) => b.length }) : null;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? silentLogger;
    this.audits = new WorkGate(opts.auditConcurrency ?? 2, opts.auditQueue ?? 32);
    this.maxReadBytes = opts.maxReadBytesInFlight ?? MAX_READ_BYTES_IN_FLIGHT;
    this.metrics.quotaBytes.set(opts.quotaBytes);
  }

  /** Open a store: scan shares/ (removing temp files a crash left), replay the lease journal. */
  static async open(opts: ShareStoreOptions): Promise<ShareStore> {
    if (!Number.isSafeInteger(opts.quotaBytes) || opts.quotaBytes < 0) throw err('CONFIG_INVALID', 'quotaBytes must be a non-negative integer');
    const r = opts.maxReadBytesInFlight;
    if (r !== undefined && (!Number.isSafeInteger(r) || r < 1)) throw err('CONFIG_INVALID', 'maxReadBytesInFlight must be a positive integer');
    await mkdirDurable(path.join(opts.dir, 'shares'), 0o700);
    await mkdirDurable(path.join(opts.dir, 'quarantine'), 0o700);
    const { journal, leases, repaired, damaged, leftovers } = await LeaseJournal.open(path.join(opts.dir, 'leases.journal'));
    const store = new ShareStore(opts, journal);
    if (leftovers) store.log.info({ count: leftovers }, 'removed temporary files of lease journal rewrites stopped by a crash');
    if (damaged) store.log.warn('lease journal was damaged; every share is kept for the longest lease');
    else if (repaired) store.log.warn('lease journal had a torn tail; kept the records that check out');
    await store.load(leases, damaged);
    return store;
  }

  private sharePath(hex: string): string {
    return path.join(this.opts.dir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex);
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  /**
   * `damaged` (SPEC.md §9.8.2): the journal lost records that may have been acknowledged, so no
   * share's lease is known to be as short as replayed: each is kept at least the longest lease from
   * now, never removed early, where a grace lease would delete answered shares within the hour.
   */
  private async load(leases: Map<string, number>, damaged: boolean): Promise<void> {
    const root = path.join(this.opts.dir, 'shares');
    const orphanUntil = this.nowSeconds() + (this.opts.orphanGraceSeconds ?? 3600);
    const keepUntil = damaged ? this.nowSeconds() + this.maxLeaseSeconds : 0;
    let orphans = 0;
    for (const a of await fsp.readdir(root)) {
      const da = path.join(root, a);
      if (!/^[0-9a-f]{2}$/.test(a)) { this.log.warn({ entry: a }, 'unexpected entry in shares/'); continue; }
      for (const b of await fsp.readdir(da)) {
        const db = path.join(da, b);
        if (!/^[0-9a-f]{2}$/.test(b)) { this.log.warn({ entry: `${a}/${b}` }, 'unexpected entry in shares/'); continue; }
        this.dirs.set(db, EXISTING_FOLDER);
        for (const name of await fsp.readdir(db)) {
          const file = path.join(db, name);
          if (name.startsWith('.') && name.endsWith('.tmp')) {
            // An atomic write that never reached its rename: never a share.
            await fsp.rm(file, { force: true });
            continue;
          }
          if (!HEX_ID.test(name) || name.slice(0, 2) !== a || name.slice(2, 4) !== b) { this.log.warn({ entry: name }, 'unexpected file in shares/'); continue; }
          const st = await fsp.stat(file);
          let exp = leases.get(name);
          if (exp === undefined) {
            exp = orphanUntil;
            orphans++;
          }
          this.entries.set(name, { size: st.size, expiresAt: Math.max(exp, keepUntil) });
          this.used += quotaCharge(st.size);
          this.bytes += st.size;
        }
      }
    }
    this.rebuildExpiries();
    await this.makeTopFolders(root);
    // Leases of shares that are gone are dropped; the journal is rewritten with what is live.
    // SPEC.md §9.8.2: a rewrite that fails (a full disk) is logged, as any other, and the store
    // opens all the same: the journal replayed is still whole (a damaged one is left in place and
    // found damaged again), and a node that could not start would free no room by collection.
    await this.journal.compact(this.liveRecords()).catch((e: unknown) => {
      // Left damaged, every later start would give each share the longest lease from then again
      // (and a bad header hides every record appended since): rewritten as soon as it can be.
      this.journalDamaged = damaged;
      this.compactFailedNow(e);
    });
    if (damaged) this.log.warn({ count: this.entries.size }, 'shares kept for the longest lease after journal damage');
    else if (orphans) this.log.warn({ count: orphans }, 'shares without a lease got a grace lease');
    this.updateGauges();
  }

  /**
   * Make the 256 folders shares/00 … shares/ff that are missing, and make every one durable
   * (one fsync of shares/; and of each that was there already, which a process that crashed
   * may have left unsynced): a put then makes at most its shares/ab/cd folder and syncs shares/ab.
   */
  private async makeTopFolders(root: string): Promise<void> {
    const have = new Set((await fsp.readdir(root)).filter((a) => /^[0-9a-f]{2}$/.test(a)));
    const missing: string[] = [];
    for (let i = 0; i < 256; i++) {
      const a = i.toString(16).padStart(2, '0');
      if (!have.has(a)) missing.push(a);
    }
    for (const a of missing) await fsp.mkdir(path.join(root, a), { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
    await Promise.all([...have].map((a) => fsyncDir(path.join(root, a))));
    await fsyncDir(root);
  }

  private liveRecords(): LeaseRecord[] {
    return [...this.entries].map(([hex, e]) => ({ id: Buffer.from(hex, 'hex'), expiresAt: e.expiresAt }));
  }

  private updateGauges(): void {
    this.metrics.bytesStored.set(this.bytes);
    this.metrics.shares.set(this.entries.size);
  }

  /** Run `fn` with the per-share lock held, so puts, reads that quarantine and GC of one id never interleave. */
  private async withLock<T>(hex: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(hex) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(hex, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(hex) === tail) this.locks.delete(hex);
    }
  }

  private leaseSeconds(requested: number): number {
    if (!Number.isInteger(requested) || requested < 0) throw err('STORAGE_BAD_REQUEST', 'lease seconds must be a non-negative integer');
    const lease = requested === 0 ? this.opts.defaultLeaseSeconds ?? 7 * DAY : requested;
    return Math.min(lease, this.maxLeaseSeconds);
  }

  /** SPEC.md §9.8.4: the entry `hex` was given the expiry `at` (a new share, or a longer lease). */
  private noteExpiry(hex: string, at: number): void {
    this.expiries.push(at, hex);
    this.pruneExpiries();
  }

  /** Stale heap items (leases extended, shares gone) are dropped once they outnumber twice the live entries. */
  private pruneExpiries(): void {
    if (this.expiries.size - this.entries.size > 2 * this.entries.size) this.rebuildExpiries();
  }

  private rebuildExpiries(): void {
    this.expiries.rebuild([...this.entries].map(([hex, e]) => ({ at: e.expiresAt, hex })));
  }

  /** The item's entry still holds that expiry (else the item is stale: extended or gone). */
  private current(item: { at: number; hex: string }): boolean {
    return this.entries.get(item.hex)?.expiresAt === item.at;
  }

  /** SPEC.md §9.8.4: no entry expires before this (Unix seconds; Infinity when none is held). */
  private earliestExpiry(): number {
    for (let top = this.expiries.peek(); top; top = this.expiries.peek()) {
      if (this.current(top)) return top.at;
      this.expiries.pop();
    }
    return Infinity;
  }

  private live(hex: string): Entry | undefined {
    const e = this.entries.get(hex);
    return e && e.expiresAt > this.nowSeconds() ? e : undefined;
  }

  /**
   * Store a share under its id. The bytes must hash to the id (SHARE_HASH_MISMATCH); a share already
   * held only has its lease extended (never shortened). Over quota → STORAGE_FULL.
   */
  async put(id: Buffer, data: Buffer, leaseSeconds = 0): Promise<{ expiresAt: number; stored: boolean }> {
    const done = await this.putLocked(id, data, leaseSeconds);
    await this.compactIfGrown();
    return done;
  }

  private async putLocked(id: Buffer, data: Buffer, leaseSeconds: number): Promise<{ expiresAt: number; stored: boolean }> {
    if (data.length < 1 || data.length > this.maxShareBytes) throw err('STORAGE_BAD_REQUEST', `share must be 1..${this.maxShareBytes} bytes`, { len: data.length });
    if (!checkShare(id, data)) throw err('SHARE_HASH_MISMATCH', 'share bytes do not hash to the share id');
    const lease = this.leaseSeconds(leaseSeconds);
    const hex = shareIdHex(id);
    return this.withLock(hex, async () => {
      const until = this.nowSeconds() + lease;
      const have = this.entries.get(hex);
      if (have) {
        // Same id, so same bytes (the hash says so): only the lease can change.
        if (until > have.expiresAt) {
          await this.writingLeases(async () => {
            await this.journal.append([{ id, expiresAt: until }]).catch((e: unknown) => { throw ioError(e, 'could not write the lease'); });
            have.expiresAt = Math.max(have.expiresAt, until);
            this.noteExpiry(hex, have.expiresAt);
          });
        }
        return { expiresAt: have.expiresAt, stored: false };
      }
      // SPEC.md §9.8.4: charged by blocks plus overhead, so tiny shares cannot take the node's
      // files, inodes and lease records for next to nothing.
      const charge = quotaCharge(data.length);
      if (this.used + this.reserved + charge > this.opts.quotaBytes) {
        // SPEC.md §9.8.4: collect first only when a share may have expired; else refuse at once.
        // A collection that fails (a share file it cannot remove) is logged; the put goes on with
        // the room it freed (SPEC.md §9.8.2).
        // The expired shares a running collection took off the heap count too: still held.
        if (this.collecting > 0 || this.nowSeconds() >= this.earliestExpiry()) {
          await this.gc().catch((e: unknown) => {
            const code = errorCode(ioError(e, 'garbage collection failed'));
            this.metrics.errors.inc({ code });
            this.log.warn({ code }, 'garbage collection before a put failed');
          });
        }
        if (this.used + this.reserved + charge > this.opts.quotaBytes) {
          throw err('STORAGE_FULL', 'storage quota reached', { quota: this.opts.quotaBytes, used: this.used, size: data.length, charge });
        }
      }
      this.reserved += charge;
      try {
        // SPEC.md §9.8.2: the share (temp, fsync, rename, folder fsync) and its lease record are
        // made durable side by side; the put is answered only when both are. A crash between the
        // two leaves either a lease for a share that is not there (dropped when the store opens)
        // or a share without a lease (given the grace lease): never an acknowledged share lost.
        // Concurrent puts share the journal's write and fsync (group commit).
        await this.writingLeases(async () => {
          const written = this.writeShare(hex, data);
          const journaled = this.journal.append([{ id, expiresAt: until }]);
          const [w, j] = await Promise.allSettled([written, journaled]);
          if (w.status === 'rejected' || j.status === 'rejected') {
            // Not held, so not on disk either: a share file written beside a failed lease record,
            // or renamed in place before its folder's fsync failed (SPEC.md §9.8.2), would sit
            // outside the quota until a restart, and a restart would hold a share whose put failed.
            await fsp.rm(this.sharePath(hex), { force: true }).catch(() => {});
            throw w.status === 'rejected' ? w.reason : (j as PromiseRejectedResult).reason;
          }
          this.entries.set(hex, { size: data.length, expiresAt: until });
          this.noteExpiry(hex, until);
          this.used += charge;
          this.bytes += data.length;
        });
      } catch (e) {
        throw ioError(e, 'could not write the share');
      } finally {
        this.reserved -= charge;
      }
      this.updateGauges();
      return { expiresAt: until, stored: true };
    });
  }

  /**
   * Write one share atomically (temp, fsync, rename, folder fsync), creating its folder once; a
   * folder made by this run is durable once shares/ab is fsynced, which runs beside the share
   * folder's own fsync (one journal commit for both on most filesystems).
   */
  private async writeShare(hex: string, data: Buffer): Promise<void> {
    const file = this.sharePath(hex);
    const dir = path.dirname(file);
    let folder = this.dirs.get(dir);
    if (!folder) {
      folder = newShareFolder(dir);
      this.dirs.set(dir, folder);
    }
    try {
      await folder.made;
    } catch (e) {
      if (this.dirs.get(dir) === folder) this.dirs.delete(dir);
      throw e;
    }
    try {
      await writeFileAtomic(file, data, 0o600, { mkdir: false, syncAlso: folder.durable });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // The folder went away under us (removed by hand): make it again, durably, once.
      this.dirs.delete(dir);
      await mkdirDurable(dir, 0o700);
      this.dirs.set(dir, EXISTING_FOLDER);
      await writeFileAtomic(file, data, 0o600, { mkdir: false });
    }
  }

  /** The whole share, verified (from the cache, or read from disk and hashed). */
  async read(id: Buffer, opts: { fromDisk?: boolean } = {}): Promise<Buffer> {
    const hex = shareIdHex(id);
    if (!this.live(hex)) throw err('SHARE_NOT_FOUND', 'share not held', { id: hex });
    const cached = opts.fromDisk ? undefined : this.cache?.get(hex);
    if (cached) {
      this.metrics.cacheLookups.inc({ result: 'hit' });
      return cached;
    }
    if (this.cache && !opts.fromDisk) this.metrics.cacheLookups.inc({ result: 'miss' });
    const first = await this.readFromDisk(hex, id);
    if (Buffer.isBuffer(first)) {
      this.cache?.set(hex, first);
      return first;
    }
    // Missing or corrupt. What to do is decided under the per-share lock, on what is on disk then:
    // since this read, another reader may have quarantined the file and a put stored a good copy
    // again, which must be neither quarantined nor forgotten (SPEC.md §9.8).
    return this.withLock(hex, async () => {
      if (!this.live(hex)) {
        if (first === 'corrupt') throw err('SHARE_CORRUPT', 'share on disk no longer matches its id; quarantined', { id: hex });
        throw err('SHARE_NOT_FOUND', 'share not held', { id: hex });
      }
      const now = await this.readFromDisk(hex, id);
      if (Buffer.isBuffer(now)) {
        this.cache?.set(hex, now);
        return now;
      }
      if (now === 'missing') {
        await this.forget(hex, id);
        throw err('SHARE_NOT_FOUND', 'share not held', { id: hex });
      }
      await this.quarantine(hex, id);
      throw err('SHARE_CORRUPT', 'share on disk no longer matches its id; quarantined', { id: hex });
    });
  }

  /** The share's file, checked against its id: its bytes, or that it is missing or corrupt. */
  private async readFromDisk(hex: string, id: Buffer): Promise<Buffer | 'missing' | 'corrupt'> {
    let data: Buffer;
    try {
      data = await fsp.readFile(this.sharePath(hex));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      throw err('STORAGE_IO_ERROR', 'could not read the share', { errno: (e as NodeJS.ErrnoException).code }, e);
    }
    // Hashed in pieces: a 16 MiB share does not hold up other requests (SPEC.md §9.17.2).
    return await checkShareInPieces(id, data) ? data : 'corrupt';
  }

  /**
   * SPEC.md §9.6.1: read a share for a get within the node-wide bound on the bytes of reads in
   * progress. A read from disk holds its share's whole size (known from the index) from before it
   * starts until it settles, read, failed or refused alike; its stream closing meanwhile does not
   * give them back early, since the read still holds them. One that would pass the bound is refused
   * at once with STORAGE_BUSY, unless no other read is in progress (so a share larger than the whole
   * bound is still read). A share the cache holds is not read from disk and counts nothing.
   */
  private async readCounted(id: Buffer): Promise<Buffer> {
    const hex = shareIdHex(id);
    const entry = this.live(hex);
    const n = entry && !this.cache?.has(hex) ? entry.size : 0;
    if (n > 0 && this.readBytes > 0 && this.readBytes + n > this.maxReadBytes) {
      CircuitMetrics.for(this.metrics.registry).refused('storage_read_bytes');
      throw err('STORAGE_BUSY', 'too many share reads under way at this node; try again later', { inFlight: this.readBytes, budget: this.maxReadBytes });
    }
    this.readBytes += n;
    try {
      return await this.read(id);
    } finally {
      this.readBytes -= n;
    }
  }

  /** Bytes of share reads in progress now (SPEC.md §9.6.1). */
  get readBytesInFlight(): number { return this.readBytes; }

  /** A byte range of a share: length 0 means to the end. A range past the end → STORAGE_BAD_REQUEST. */
  async get(id: Buffer, offset = 0, length = 0): Promise<{ data: Buffer; totalSize: number }> {
    const data = await this.readCounted(id);
    const end = length === 0 ? data.length : offset + length;
    if (offset > data.length || end > data.length) throw err('STORAGE_BAD_REQUEST', 'range beyond the end of the share', { offset, length, size: data.length });
    return { data: data.subarray(offset, end), totalSize: data.length };
  }

  has(ids: readonly Buffer[]): boolean[] {
    return ids.map((id) => this.live(shareIdHex(id)) !== undefined);
  }

  /** Extend leases (never shorten). Returns each share's expiry, or 0 for shares not held. */
  async renew(ids: readonly Buffer[], leaseSeconds = 0): Promise<number[]> {
    const until = this.nowSeconds() + this.leaseSeconds(leaseSeconds);
    const expiries = await this.writingLeases(async () => {
      const held = ids.map((id) => this.live(shareIdHex(id)));
      // SPEC.md §9.8.2: one record per distinct share extended, however often the request names it.
      const changed = new Map<Entry, LeaseRecord>();
      ids.forEach((id, i) => { const e = held[i]; if (e && until > e.expiresAt && !changed.has(e)) changed.set(e, { id, expiresAt: until }); });
      // The longer leases count only once they are on disk: a failed write changes nothing.
      if (changed.size) await this.journal.append([...changed.values()]).catch((e: unknown) => { throw ioError(e, 'could not write the leases'); });
      return held.map((e, i) => {
        // SPEC.md §9.6.3: a share that left while its record was being written (garbage
        // collection of a lease that ran out meanwhile, quarantine, a file found gone) is not
        // held: 0, never an expiry for a share the node no longer has. Its removal record comes
        // after this one in the journal, so replay agrees.
        if (!e || this.entries.get(shareIdHex(ids[i])) !== e) return 0;
        if (until > e.expiresAt) {
          e.expiresAt = until;
          this.noteExpiry(shareIdHex(ids[i]), until);
        }
        return e.expiresAt;
      });
    });
    await this.compactIfGrown();
    return expiries;
  }

  /** Run `fn` (lease records and the entries they stand for) outside any rewrite of the journal. */
  private async writingLeases<T>(fn: () => Promise<T>): Promise<T> {
    while (this.compacting) await this.compacting.catch(() => {});
    this.leaseWriters++;
    try {
      return await fn();
    } finally {
      if (--this.leaseWriters === 0) this.leaseWritersDone?.();
    }
  }

  /**
   * SPEC.md §9.8.2: rewrite the journal once it holds more records than both 1024 and twice the
   * shares held, checked after every lease written (put, renew, gc), so that renewals, which anyone
   * may send, cannot grow it between gc runs. The lease is already durable: a failed rewrite is
   * logged (once, until one succeeds), not the caller's failure. It is tried again only once the
   * journal grew by another such threshold or COMPACT_RETRY_MS passed, so that a full disk does not
   * cost a whole rewrite per put or renewal. None starts once close() was called.
   */
  private async compactIfGrown(): Promise<void> {
    const bound = Math.max(1024, 2 * this.entries.size);
    if (this.damagedRewriteDue()) {
      await this.compactJournal().catch((e: unknown) => this.compactFailedNow(e));
      return;
    }
    if (this.closing || this.journal.recordCount <= bound) return;
    const f = this.compactFailed;
    if (f && this.journal.recordCount <= f.records + bound && this.now() < f.at + COMPACT_RETRY_MS) return;
    await this.compactJournal().catch((e: unknown) => this.compactFailedNow(e));
  }

  /** The damaged journal left in place at open is to be rewritten now: 60 s after the last failed rewrite. */
  private damagedRewriteDue(): boolean {
    return this.journalDamaged && !this.closing && (!this.compactFailed || this.now() >= this.compactFailed.at + COMPACT_RETRY_MS);
  }

  /** SPEC.md §9.8.2: a rewrite of the journal failed: logged at warn once until one succeeds, never the caller's failure. */
  private compactFailedNow(e: unknown): void {
    if (!this.compactFailed) this.log.warn({ code: errorCode(e) }, 'could not rewrite the lease journal (tried again after 60 s or as many records again)');
    else this.log.debug({ code: errorCode(e) }, 'could not rewrite the lease journal, again');
    this.compactFailed = { at: this.now(), records: this.journal.recordCount };
  }

  /** Rewrite the journal with the live leases, once no put or renewal is half done (one at a time). */
  private compactJournal(): Promise<void> {
    this.compacting ??= (async () => {
      while (this.leaseWriters > 0) await new Promise<void>((r) => { this.leaseWritersDone = r; });
      this.leaseWritersDone = null;
      await this.journal.compact(this.liveRecords());
      if (this.compactFailed) this.log.info('lease journal rewritten again');
      this.compactFailed = null;
      this.journalDamaged = false;
    })().finally(() => { this.compacting = null; });
    return this.compacting;
  }

  /** Proof of holding the share: BLAKE2b-256(nonce | share bytes), from verified bytes. */
  async audit(id: Buffer, nonce: Buffer): Promise<Buffer> {
    return this.audits.run(async () => auditProofInPieces(nonce, await this.read(id)));
  }

  /**
   * Answer an audit challenge (SPEC.md §9.17.2): the named blocks of the verified share with their
   * Merkle paths and the challenge's nonce, in the layout of §9.17.3. A block past the end of the
   * share is STORAGE_BAD_REQUEST.
   */
  async auditChallenge(id: Buffer, nonce: Buffer, blocks: readonly number[]): Promise<Buffer> {
    return this.audits.run(async () => {
      // From disk, never the cache: the audit is about what the node keeps (SPEC.md §9.17.2).
      const data = await this.read(id, { fromDisk: true });
      const count = auditBlockCount(data.length);
      if (blocks.some((b) => b >= count)) throw err('STORAGE_BAD_REQUEST', 'audit block beyond the end of the share', { blocks: count });
      return encodeAuditAnswer({ shareSize: data.length, nonce, blocks: await proveBlocksInPieces(data, blocks) });
    });
  }

  /** Audits computing and waiting now, and the most that ever computed at once. */
  auditLoad(): { running: number; waiting: number; peak: number } {
    return { running: this.audits.running, waiting: this.audits.waiting, peak: this.audits.peak };
  }

  stat(): StoreStat {
    return { capacity: this.opts.quotaBytes, used: this.used, shares: this.entries.size, maxLeaseSeconds: this.maxLeaseSeconds, maxShareBytes: this.maxShareBytes };
  }

  /** Remove every share whose lease has expired. One run at a time; a second caller joins it. */
  gc(): Promise<GcResult> {
    if (!this.gcRunning) this.gcRunning = this.runGc().finally(() => { this.gcRunning = null; });
    return this.gcRunning;
  }

  private async runGc(): Promise<GcResult> {
    const now = this.nowSeconds();
    let bytes = 0;
    const gone: LeaseRecord[] = [];
    // SPEC.md §9.8.4: only the expired items leave the heap (stale ones are skipped), so the run
    // costs what expired, not what is held.
    let examined = 0;
    const expired: Array<{ at: number; hex: string }> = [];
    for (let top = this.expiries.peek(); top && top.at <= now; top = this.expiries.peek()) {
      this.expiries.pop();
      examined++;
      if (this.current(top)) expired.push(top);
    }
    let i = 0;
    this.collecting = expired.length;
    try {
      for (; i < expired.length; i++, this.collecting--) {
        const { hex } = expired[i];
        await this.withLock(hex, async () => {
          const e = this.entries.get(hex);
          // Renewed meanwhile (its new expiry is in the heap already), or gone.
          if (!e || e.expiresAt > now) return;
          await fsp.rm(this.sharePath(hex), { force: true });
          this.drop(hex);
          gone.push({ id: Buffer.from(hex, 'hex'), expiresAt: 0 });
          bytes += e.size;
        });
      }
    } catch (e) {
      // The shares not removed stay expired and are found by the next run.
      for (const item of expired.slice(i)) if (this.current(item)) this.expiries.push(item.at, item.hex);
      throw e;
    } finally {
      this.collecting = 0;
    }
    // One journal write for the whole run. SPEC.md §9.8.2, §9.8.3: the shares are gone all the
    // same, so a record that cannot be written (a full disk) is logged and counted, not thrown
    // (a put that collected first goes on); their stale leases are dropped at the next open,
    // which finds no file for them.
    if (gone.length) {
      await this.journal.append(gone).catch((e: unknown) => {
        const code = errorCode(ioError(e, 'could not write the removal records'));
        this.metrics.errors.inc({ code });
        this.log.warn({ removed: gone.length, code }, 'could not journal the removal of expired shares');
      });
      this.metrics.gcRemoved.inc(gone.length);
      this.log.info({ removed: gone.length, bytes }, 'expired shares removed');
    }
    if (this.damagedRewriteDue() || this.journal.recordCount > Math.max(1024, 2 * this.entries.size)) await this.compactJournal().catch((e: unknown) => this.compactFailedNow(e));
    return { removed: gone.length, bytes, examined };
  }

  /** Run gc() every `intervalMs` until close(). */
  startGc(intervalMs: number): void {
    this.stopGc();
    this.gcTimer = setInterval(() => {
      this.gc().catch((e) => this.log.error({ code: errorCode(e) }, 'gc failed'));
    }, intervalMs);
    this.gcTimer.unref();
  }

  private stopGc(): void {
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.gcTimer = null;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.stopGc();
    await this.gcRunning?.catch(() => {});
    await Promise.all([...this.locks.values()]);
    // A rewrite a put or renewal started (compactIfGrown) runs outside the locks.
    while (this.compacting) await this.compacting.catch(() => {});
    await this.journal.close();
  }

  /** Stop holding a share in memory; true if it was held. */
  private drop(hex: string): boolean {
    const e = this.entries.get(hex);
    if (!e) return false;
    this.entries.delete(hex);
    this.pruneExpiries(); // its heap item is stale now
    this.used -= quotaCharge(e.size);
    this.bytes -= e.size;
    this.cache?.delete(hex);
    this.updateGauges();
    return true;
  }

  /**
   * drop() and journal the removal. SPEC.md §9.8.3: the reader that found the share missing or
   * corrupt gets SHARE_NOT_FOUND / SHARE_CORRUPT whatever happens here, so a removal record that
   * cannot be written is logged and counted (errors_total by its code), not thrown: the share is
   * forgotten in memory, and the lease left in the journal is dropped at the next open, whose scan
   * finds no file for it.
   */
  private async forget(hex: string, id: Buffer): Promise<void> {
    if (!this.drop(hex)) return;
    try {
      await this.journal.append([{ id, expiresAt: 0 }]);
    } catch (e) {
      const code = errorCode(ioError(e, 'could not write the removal record'));
      this.metrics.errors.inc({ code });
      this.log.warn({ id: hex, code }, 'could not journal the removal of a share');
    }
  }

  /** Move a corrupt share's file to quarantine/ and forget it; the caller holds the share's lock. */
  private async quarantine(hex: string, id: Buffer): Promise<void> {
    const dest = path.join(this.opts.dir, 'quarantine', `${hex}.${this.now()}`);
    await fsp.rename(this.sharePath(hex), dest).catch(() => fsp.rm(this.sharePath(hex), { force: true }));
    await this.forget(hex, id);
    this.metrics.quarantined.inc();
    this.log.warn({ id: hex }, 'corrupt share quarantined');
  }
}

/**
 * SPEC.md §9.17.2: the node-wide bound on audit work. An audit reads a whole share from disk and
 * hashes it twice for a request of about 100 bytes, so at most `limit` run at once and at most
 * `queue` wait for a turn; one more is refused at once with STORAGE_BUSY.
 */
class WorkGate {
  running = 0;
  peak = 0;
  private readonly queued: Array<() => void> = [];

  constructor(private readonly limit: number, private readonly queue: number) {}

  get waiting(): number { return this.queued.length; }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else if (this.queued.length >= this.queue) throw err('STORAGE_BUSY', 'too many audits under way at this node; try again later', { running: this.running, waiting: this.queued.length });
    else await new Promise<void>((r) => this.queued.push(r)); // the slot is handed over by the one that ends
    this.peak = Math.max(this.peak, this.running);
    try {
      return await fn();
    } finally {
      const next = this.queued.shift();
      if (next) next(); else this.running--;
    }
  }
}

/** A share folder: made (mkdir under way or done), and made durable (its parent's fsync, once). */
interface ShareFolder {
  made: Promise<unknown>;
  durable: () => Promise<void>;
}

const NOTHING_TO_SYNC = (): Promise<void> => Promise.resolve();
/** A folder found on disk at open (its parent was fsynced then). */
const EXISTING_FOLDER: ShareFolder = { made: Promise.resolve(), durable: NOTHING_TO_SYNC };

function newShareFolder(dir: string): ShareFolder {
  // shares/ab exists (made at open), so mkdir makes shares/ab/cd only; if it was there already
  // (made by hand, or by a run that crashed after its mkdir) shares/ab is synced all the same.
  const made = fsp.mkdir(dir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return mkdirDurable(dir, 0o700); // shares/ab was removed by hand
    if (e.code !== 'EEXIST') throw e;
    return undefined;
  });
  let syncing: Promise<void> | null = null;
  return { made, durable: () => (syncing ??= fsyncDir(path.dirname(dir))) };
}

/**
 * A failed share or lease write as the store reports it: STORAGE_FULL for a full disk, else
 * STORAGE_IO_ERROR. The store's own errors (STORAGE_*, SHARE_*) pass as they are; any other, such
 * as IO_MODE_UNSUPPORTED from writeFileAtomic, whose message names a folder of this node, becomes
 * STORAGE_IO_ERROR with `what` alone, its code kept in the detail (`cause`): the answer goes to an
 * anonymous requester, and never names a local file or folder (SPEC.md §9.6.4).
 */
function ioError(e: unknown, what: string): unknown {
  if (isBitcloudError(e)) {
    if (e.code.startsWith('STORAGE_') || e.code.startsWith('SHARE_')) return e;
    return err('STORAGE_IO_ERROR', what, { cause: e.code, errno: e.detail?.errno }, e);
  }
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return err('STORAGE_FULL', 'disk full', { errno: code }, e);
  return err('STORAGE_IO_ERROR', what, { errno: code }, e);
}
