// SPEC.md §9.8.2 (node-local): the lease journal. An append-only file of fixed 56-byte records
// id[32] | expires_at u64 BE (unix seconds, 0 = removed) | check[16] = BLAKE2b-128(id | expires_at),
// after the 8-byte header "BCLEASE1". Appending is O(1) per put/renew (one write + fsync, coalesced
// across concurrent callers); replay takes the last record per id; a torn or garbage tail is cut off,
// and a damaged record before good ones is skipped, the replay reporting the journal damaged.
// The file is rewritten (atomically: temp, fsync, rename) with only live leases when it grows.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err } from '../src/errors';
import { blake2b } from '../src/crypto/primitives';
import { isTempNameOf, writeFileAtomic } from '../src/ops/fsutil';
import { Reader, Writer } from '../src/wire/bytes';

export const JOURNAL_MAGIC = Buffer.from('BCLEASE1', 'ascii');
const ID_BYTES = 32;
const CHECK_BYTES = 16;
/** What the check covers: id | expires_at. */
const CHECKED_BYTES = ID_BYTES + 8; // 32 id + 8 expires_at = 40
export const RECORD_BYTES = CHECKED_BYTES + CHECK_BYTES; // 40 + 16 check = 56

export interface LeaseRecord {
  id: Buffer;
  /** Unix seconds; 0 records a removal. */
  expiresAt: number;
}

/** Share ids and expiry times come from the store, which checked them: a bad one is a bug here. */
const RECORD_CODES = { truncated: 'STORAGE_INTERNAL', malformed: 'STORAGE_INTERNAL' } as const;

function encodeRecord(r: LeaseRecord, out: Buffer, off: number): void {
  if (r.id.length !== ID_BYTES) throw err('STORAGE_INTERNAL', `a lease record id is ${ID_BYTES} bytes, got ${r.id.length}`);
  const checked = new Writer(CHECKED_BYTES, 'lease record', RECORD_CODES).bytes(r.id).u64(r.expiresAt, 'expires_at').finish();
  out.set(checked, off);
  blake2b(checked, CHECK_BYTES).copy(out, off + CHECKED_BYTES);
}

/** The record at `off` when its check holds, else null (a torn or damaged record). */
function decodeRecord(data: Buffer, off: number): { hex: string; expiresAt: number } | null {
  const r = new Reader(data.subarray(off, off + RECORD_BYTES), 'lease record', RECORD_CODES);
  const checked = r.view(CHECKED_BYTES, 'record');
  if (!blake2b(checked, CHECK_BYTES).equals(r.view(CHECK_BYTES, 'check'))) return null;
  const fields = new Reader(checked, 'lease record', RECORD_CODES);
  const hex = fields.view(ID_BYTES, 'id').toString('hex');
  // Read as a bigint and converted as before: a checked record is one this code wrote.
  return { hex, expiresAt: Number(fields.u64big('expires_at')) };
}

/**
 * SPEC.md §9.8.2: delete the temporary files of rewrites a crash stopped between their write and
 * their rename (`.leases.journal.<pid>.<random>.tmp`, each as large as the journal): never read as
 * the journal, and left, every such crash would leave one more. The data folder is the node's alone
 * (its lock), so none is a write under way. One that cannot be removed is let be (found at the next
 * start); the journal opens all the same. Resolves how many were removed.
 */
async function removeLeftoverTemps(file: string): Promise<number> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  let names: string[];
  try { names = await fsp.readdir(dir); } catch { return 0; }
  let removed = 0;
  for (const name of names) {
    if (!isTempNameOf(name, base)) continue;
    try {
      await fsp.rm(path.join(dir, name), { force: true });
      removed++;
    } catch { /* let be: the next start tries again */ }
  }
  return removed;
}

function encodeRecords(records: readonly LeaseRecord[]): Buffer {
  const b = Buffer.allocUnsafe(records.length * RECORD_BYTES);
  records.forEach((r, i) => encodeRecord(r, b, i * RECORD_BYTES));
  return b;
}

/** Records waiting for the next write, and what their appenders wait on: that write and its fsync. */
interface Batch {
  records: LeaseRecord[];
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { records: [], done, resolve, reject };
}

export class LeaseJournal {
  /** The batch appends join until its write starts. */
  private pending: Batch | null = null;
  /** The write (or rewrite) under way; the pending batch starts when it ends. */
  private flushing: Promise<void> | null = null;
  private records: number;
  /** The file's length: where the next record goes, and where a failed write is cut back to. */
  private size: number;

  /**
   * The file open for appending; null after a rewrite could not reopen it (the next write opens
   * it again): never a handle on the file the rewrite replaced, whose records would be lost.
   */
  private fh: fsp.FileHandle | null;

  /** close() was called: no write opens the file again (its handle would never be closed). */
  private closed = false;

  /**
   * A failed write could not be cut back: the file may hold part of a record past `size`. The next
   * write cuts it first, or fails: a record appended after it would be out of step with the 56-byte
   * records and cut off at replay as a torn tail, though acknowledged (SPEC.md §9.8.2).
   */
  private uncut = false;

  /**
   * A rewrite failed, perhaps after its rename put its file in place (SPEC.md §9.8.2): its size and
   * records, and the inode of the file before it: the next write takes them as the journal's when
   * the file it opens is another.
   */
  private rewritten: { size: number; records: number; ino: number | undefined } | null = null;

  private constructor(private readonly file: string, fh: fsp.FileHandle, records: number, size: number) {
    this.fh = fh;
    this.records = records;
    this.size = size;
  }

  /**
   * Open (creating if absent) and replay: the last lease per id, removals already applied.
   * `repaired`: the file was cut back or replaced. `damaged` (SPEC.md §9.8.2): records that may have
   * been acknowledged were lost (a bad header, or a record whose check fails with a good one after
   * it, which no torn append leaves), so any share's lease may be longer than `leases` says.
   */
  static async open(file: string): Promise<{ journal: LeaseJournal; leases: Map<string, number>; repaired: boolean; damaged: boolean; leftovers: number }> {
    const leftovers = await removeLeftoverTemps(file);
    let data: Buffer;
    try {
      data = await fsp.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await writeFileAtomic(file, JOURNAL_MAGIC, 0o600);
      data = JOURNAL_MAGIC;
    }
    const leases = new Map<string, number>();
    let good = 0;
    let size = JOURNAL_MAGIC.length;
    let repaired = false;
    let damaged = false;
    if (data.length < JOURNAL_MAGIC.length || !data.subarray(0, JOURNAL_MAGIC.length).equals(JOURNAL_MAGIC)) {
      // Not a journal. Every lease it held is unknown: the store keeps every share on disk for its
      // longest lease (SPEC.md §9.8.2), never the short grace lease, and its rewrite at open
      // replaces the file. Not replaced here: should that rewrite fail (a full disk), a fresh
      // empty journal would make the next start give every share the grace lease; this file
      // stays damaged until then (records appended after it are never replayed).
      repaired = true;
      damaged = true;
      size = data.length;
    } else {
      // SPEC.md §9.8.2: records are fixed-size, so one whose check fails is skipped and the replay
      // goes on. An append is written and fsynced before the next starts, so a crash tears only the
      // tail: bad records with a good one after them are damage, not a torn write, and the records
      // after them were acknowledged. The end is the last good record: a torn tail is cut off.
      let end = JOURNAL_MAGIC.length;
      let skipped = false;
      for (let off = JOURNAL_MAGIC.length; off + RECORD_BYTES <= data.length; off += RECORD_BYTES) {
        const rec = decodeRecord(data, off);
        if (!rec) { skipped = true; continue; }
        if (skipped) damaged = true;
        if (rec.expiresAt === 0) leases.delete(rec.hex);
        else leases.set(rec.hex, rec.expiresAt);
        good++;
        end = off + RECORD_BYTES;
      }
      if (end !== data.length) {
        // A torn last write (crash): keep what checks out, drop the rest.
        await fsp.truncate(file, end);
        repaired = true;
      }
      if (damaged) repaired = true;
      size = end;
    }
    const fh = await fsp.open(file, 'a', 0o600);
    return { journal: new LeaseJournal(file, fh, good, size), leases, repaired, damaged, leftovers };
  }

  /** Records appended since the last rewrite (live or not): the store compacts when this grows. */
  get recordCount(): number {
    return this.records;
  }

  /**
   * Append and make durable; concurrent appends share one write and one fsync. SPEC.md §9.8.2: each
   * appender waits for the fsync of the batch that holds its own records (and sees it fail), never
   * only for a write that was under way when it came.
   */
  append(records: readonly LeaseRecord[]): Promise<void> {
    const batch = (this.pending ??= newBatch());
    batch.records.push(...records);
    this.flush();
    return batch.done;
  }

  /** Rewrite the journal with exactly `live` (atomic), after all pending appends. */
  async compact(live: readonly LeaseRecord[]): Promise<void> {
    // An append may start a write between drain's end and this code running again: drain until
    // none is under way here, synchronously with taking `flushing` below.
    do await this.drain(); while (this.flushing || this.pending);
    const body = Buffer.concat([JOURNAL_MAGIC, encodeRecords(live)]);
    // Appends that arrive while we rewrite join the pending batch, written to the new file after it.
    this.flushing = (async () => {
      try {
        await writeFileAtomic(this.file, body, 0o600);
      } catch (e) {
        // It may have failed after its rename (the folder's fsync, EIO): the file may be `body`
        // already, and the old handle writes to the file it replaced, where an acknowledged record
        // would be lost at the next start. The next write opens the file again and finds out by
        // its size which one it is (SPEC.md §9.8.2).
        const old = this.fh;
        this.fh = null;
        const ino = await old?.stat().then((st) => st.ino, () => undefined);
        this.rewritten = { size: body.length, records: live.length, ino };
        await old?.close().catch(() => {});
        throw e;
      }
      // The file is `body` now, whatever happens next. The old handle writes to the file it
      // replaced: it is let go first, so that a reopen that fails (no file descriptor left) leaves
      // no handle, and the next write opens the file again, rather than one every later write
      // fails on (SPEC.md §9.8.2: the store would refuse every put and renewal until restarted).
      const old = this.fh;
      this.fh = null;
      this.records = live.length;
      this.size = body.length;
      this.uncut = false;
      this.rewritten = null;
      await old?.close().catch(() => {});
      this.fh = await fsp.open(this.file, 'a', 0o600);
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
      this.flush();
    }
  }

  async close(): Promise<void> {
    await this.drain();
    this.closed = true;
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }

  private async drain(): Promise<void> {
    while (this.flushing || this.pending) {
      this.flush();
      await this.flushing?.catch(() => {});
    }
  }

  /** Start writing the pending batch, unless a write is under way (its end starts the batch). */
  private flush(): void {
    if (this.flushing || !this.pending) return;
    const { records: batch, resolve, reject } = this.pending;
    this.pending = null;
    const p = (async () => {
      const bytes = encodeRecords(batch);
      const at = this.size;
      // A closed journal takes no record: reopening here would leave a handle nobody closes, and
      // a second writer on a file the store may have opened again since.
      if (this.closed) throw Object.assign(new Error('lease journal is closed'), { code: 'EBADF' });
      const fh = this.fh ??= await fsp.open(this.file, 'a', 0o600);
      if (this.rewritten) {
        // A rewrite failed, perhaps after its rename: the file is the rewrite's when it is not the
        // one the old handle had open (by its inode; by its size when that was not known), else
        // the old one, as `size` says.
        const st = await fh.stat();
        const replaced = this.rewritten.ino !== undefined ? st.ino !== this.rewritten.ino : st.size === this.rewritten.size;
        if (replaced) {
          this.size = this.rewritten.size;
          this.records = this.rewritten.records;
          this.uncut = false;
        }
        this.rewritten = null;
      }
      if (this.uncut) {
        // Thrown as it is (nothing of this batch is written): the batch fails, not a later replay.
        await fh.truncate(at);
        this.uncut = false;
      }
      try {
        // A short write (a nearly full disk) goes on from where it stopped.
        for (let off = 0; off < bytes.length;) {
          const n = (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
          if (n <= 0) throw Object.assign(new Error('lease journal write made no progress'), { code: 'EIO' });
          off += n;
        }
        await fh.datasync();
      } catch (e) {
        // Cut a partial record off, or replay would stop there and drop every later record. A cut
        // that fails too (EIO) is made before the next write, which fails if it still cannot be.
        await fh.truncate(at).catch(() => { this.uncut = true; });
        throw e;
      }
      this.size = at + bytes.length;
      this.records += batch.length;
    })();
    this.flushing = p;
    void p.then(resolve, reject).finally(() => {
      if (this.flushing === p) this.flushing = null;
      this.flush();
    });
  }
}
