// SPEC.md §9.14.1, §9.14.2: the highest seq this client has verified per name, kept in
// `<client dataDir>/names-seen.json` (mode 0600, written atomically), so that a storage node or a
// name mirror that answers with an older record is refused (NAME_SEQ_ROLLBACK). Several `bitcloud`
// processes may share the file: each change is read, merged and written under `names-seen.json.lock`.
import fs from 'node:fs';
import path from 'node:path';
import { withFileLock } from '../ops/file-lock';
import { writeFileAtomic } from '../ops/fsutil';
import type { Logger } from '../ops/log';
import { nextNameSeq } from '../storage/name';

export const NAMES_SEEN_FILE = 'names-seen.json';

export class NamesSeen {
  private seen: Record<string, number> | null = null;

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
    }, { code: 'NAME_SEEN_LOCKED', timeoutMs: o.timeoutMs });
  }

  private async all(): Promise<Record<string, number>> {
    if (this.seen) return this.seen;
    this.seen = this.dataDir ? await this.read(this.dataDir) : {};
    return this.seen;
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
