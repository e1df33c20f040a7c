// SPEC.md §9.14.1, §9.14.2: the highest seq this client has verified per name, kept in
// `<client dataDir>/names-seen.json` (mode 0600, written atomically), so that a storage node or a
// name mirror that answers with an older record is refused (NAME_SEQ_ROLLBACK). Several `bitcloud`
// processes may share the file: each change is read, merged and written under `names-seen.json.lock`,
// and a long-running one (the SOCKS proxy) reads the file again when it changed (below).
import fs from 'node:fs';
import path from 'node:path';
import { withFileLock } from '../ops/file-lock';
import { writeFileAtomic } from '../ops/fsutil';
import type { Logger } from '../ops/log';
import { nextNameSeq } from '../storage/name';

export const NAMES_SEEN_FILE = 'names-seen.json';

/** SPEC.md §9.14.1: a lookup looks at the file (one stat) at most this often. */
export const NAMES_SEEN_RECHECK_MS = 1_000;

/** What identifies one version of the file: an atomic write replaces the inode. */
interface FileStamp { ino: number; size: number; mtimeMs: number }

export class NamesSeen {
  private seen: Record<string, number> | null = null;
  /** The file as last read (null: missing or never read), and when it was last looked at. */
  private stamp: FileStamp | null = null;
  private checkedAt = -Infinity;

  /** `dataDir` absent: nothing is remembered across runs. */
  constructor(private readonly dataDir: string | undefined, private readonly log: Logger) {}

  /** The highest verified seq for `name` (its text form), or -1. */
  async min(name: string): Promise<number> {
    return (await this.all())[name] ?? -1;
  }

  /**
   * SPEC.md §9.14.1, §9.14.2: the seq a publication of `name` goes out with: above `found` (the
   * item its lookup read, -1 when none) and above the seq this client verified for the name, since
   * when every answer was dropped (a rollback among them) the clock alone could go at or below it.
   * A `requested` seq not above both is DHT_SEQ_STALE (`nextNameSeq`).
   */
  async nextSeq(name: string, found: number, requested?: number): Promise<number> {
    return nextNameSeq(Math.max(found, await this.min(name)), requested);
  }

  /**
   * SPEC.md §9.14.1: record `seq` for `name`. The file is read again, merged with what this
   * instance knows (the higher seq per name) and written back while holding
   * `names-seen.json.lock`, so that another process recording another name meanwhile keeps its
   * entry. NAME_SEEN_LOCKED when another live process holds the lock for `timeoutMs`.
   */
  async remember(name: string, seq: number, o: { timeoutMs?: number } = {}): Promise<void> {
    const seen = await this.all();
    if ((seen[name] ?? -1) >= seq) return;
    seen[name] = seq;
    const dir = this.dataDir;
    if (!dir) return;
    const file = path.join(dir, NAMES_SEEN_FILE);
    await withFileLock(`${file}.lock`, async () => {
      for (const [k, v] of Object.entries(await this.read(dir))) if (v > (seen[k] ?? -1)) seen[k] = v;
      await writeFileAtomic(file, JSON.stringify(seen), 0o600);
      // What was just written holds everything this instance knows.
      this.stamp = await this.statFile(dir);
    }, { code: 'NAME_SEEN_LOCKED', timeoutMs: o.timeoutMs });
  }

  /**
   * SPEC.md §9.14.1: what this instance knows, merged (the higher seq per name) with the file when
   * it changed since it was last read: another process (a `bitcloud get` beside a running proxy)
   * may have recorded a seq since. The file is looked at (one stat) at most once a second.
   */
  private async all(): Promise<Record<string, number>> {
    const dir = this.dataDir;
    if (!dir) return (this.seen ??= {});
    // A monotonic clock: a wall clock stepped back must not stop the looks at the file.
    const now = performance.now();
    if (this.seen && now - this.checkedAt < NAMES_SEEN_RECHECK_MS) return this.seen;
    this.checkedAt = now;
    const stamp = await this.statFile(dir);
    if (this.seen && sameStamp(stamp, this.stamp)) return this.seen;
    const seen = this.seen ?? {};
    this.seen = seen;
    this.stamp = stamp;
    for (const [k, v] of Object.entries(await this.read(dir))) if (v > (seen[k] ?? -1)) seen[k] = v;
    return seen;
  }

  private async statFile(dataDir: string): Promise<FileStamp | null> {
    try {
      const st = await fs.promises.stat(path.join(dataDir, NAMES_SEEN_FILE));
      return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    } catch {
      return null; // missing or unreadable: read() says which
    }
  }

  /** The file's valid entries; {} when it is missing or unreadable (logged). */
  private async read(dataDir: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    try {
      const j = JSON.parse(await fs.promises.readFile(path.join(dataDir, NAMES_SEEN_FILE), 'utf8')) as unknown;
      if (j && typeof j === 'object') {
        for (const [k, v] of Object.entries(j as Record<string, unknown>)) if (typeof v === 'number' && Number.isSafeInteger(v)) out[k] = v;
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err: (e as Error).message }, `${NAMES_SEEN_FILE} unreadable; starting afresh`);
    }
    return out;
  }
}

function sameStamp(a: FileStamp | null, b: FileStamp | null): boolean {
  if (!a || !b) return a === b;
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}
