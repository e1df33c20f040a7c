// SPEC.md §7.2 (guards): a small persistent set of entry guards, sampled by weight from
// Guard-flagged relays and kept in the client's state file, so that a client exposes its first
// hop to few relays over time (Tor's guard-spec, much simplified).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, errorCode } from '../errors';
import { secureRandom } from '../crypto/primitives';
import { mkdirDurable, mkdirDurableSync, writeFileAtomic, writeFileAtomicSync } from '../ops/fsutil';
import { withFileLock, tryFileLockSync } from '../ops/file-lock';
import type { Logger } from '../ops/log';
import {
  computeBandwidthWeights, positionWeight, weightedPick, isRunningValid, canBeHop, type Relay,
} from './weighting';

/** The minimum a guard list entry needs (choosePath accepts a plain list too). */
export interface Guard { fingerprint: string }

export interface GuardRecord extends Guard {
  /** When it was sampled (ms since epoch). */
  addedAt: number;
  /** Consecutive failures since the last success. */
  failures: number;
  /** Not tried before this time (ms since epoch); 0 = reachable. */
  retryAt: number;
  lastSuccessAt: number | null;
  /**
   * When the last failure was recorded (ms since epoch). Absent in state files written before
   * this field existed (read as 0); the merge of two processes' records compares it with
   * `lastSuccessAt` to tell which one's status is newer (SPEC.md §7.2 State).
   */
  lastFailureAt?: number;
  /** A circuit through it has succeeded at least once. */
  confirmed: boolean;
  /**
   * Since when the consensus has not listed it (ms since epoch), or null while listed. An
   * unlisted guard is kept in its place, skipped, and dropped only after `removeUnlistedAfterMs`
   * (SPEC.md §7.2). Absent in state files written before this field existed (read as null).
   */
  unlistedSince?: number | null;
}

export interface GuardSetOptions {
  /** Guards kept usable at once; the first reachable one is used. Default 3. */
  sampleSize?: number;
  /** Hard cap on sampled guards (when some are unlisted or excluded for a path). Default 10. */
  maxSampleSize?: number;
  /** Backoff after the first failure; doubles per failure. Default 60 s. */
  retryBaseMs?: number;
  /** Backoff ceiling. Default 1 hour. */
  retryMaxMs?: number;
  /** How long a sampled guard the consensus does not list is kept (Tor: 20 days). Default 20 days. */
  removeUnlistedAfterMs?: number;
  rng?: () => number;
  /**
   * Called when pickGuard has sampled new guards: the caller saves soon, so that the client's
   * other processes find them in the state file instead of sampling their own (SPEC.md §7.2 State).
   */
  onSampled?: () => void;
}

/** The part of the client state file this class owns: `{ "guards": GuardState, ...others }`. */
export interface GuardState { version: 1; sampled: GuardRecord[] }

const FP_RE = /^[0-9a-f]{64}$/;

/**
 * SPEC.md §7.2 (State): how long a short-lived command waits for state.json.lock (its save on
 * sampling and its last save) before it skips the save; a long-running process waits 30 s.
 */
export const COMMAND_LOCK_TIMEOUT_MS = 2_000;

/** What a command's save did (GuardSet.saveForCommand): 'skipped' leaves this process's changes unsaved. */
export type CommandSaveOutcome = { status: 'saved' } | { status: 'skipped'; code: string; reason: string };

/**
 * SPEC.md §7.2 (State): the one stderr line a command without a log (`consensus`, `rewards`,
 * `wallet`) or one that sends a wallet transfer (`keep contract --pay`, `put --pay`) prints, at
 * its end, when its last save was skipped, without its command prefix; null when saved.
 */
export function commandSaveWarning(o: CommandSaveOutcome): string | null {
  if (o.status === 'saved') return null;
  const reason = o.reason.startsWith(`${o.code}: `) ? o.reason.slice(o.code.length + 2) : o.reason;
  return `guard state not saved (${o.code}): ${reason}; this run's guard changes are lost`;
}

/**
 * SPEC.md §7.2 (State): the last save of a command that saves once, at its end (`consensus`,
 * `rewards`, `wallet`): saveForCommand, then `warn` gets the one stderr line of commandSaveWarning
 * (without the command prefix) when the save was skipped. Never throws.
 */
export async function saveAtCommandEnd(guards: GuardSet, warn?: (line: string) => void): Promise<CommandSaveOutcome> {
  const outcome = await guards.saveForCommand();
  const line = commandSaveWarning(outcome);
  if (line) warn?.(line);
  return outcome;
}

/**
 * SPEC.md §7.2 (State): a command prints the "guard state not saved" line at its end. A command
 * that saves before it prints its result or its failure (`consensus`, `rewards`, `wallet`) passes
 * `warn` to its save and calls `flush` once it has printed everything else: the line, if any, is
 * printed then, once.
 */
export function lineAtEnd(print: (line: string) => void): { warn: (line: string) => void; flush: () => void } {
  let held: string | null = null;
  return {
    warn: (line) => { held = line; },
    flush: () => { if (held !== null) print(held); held = null; },
  };
}

function validRecord(x: unknown): x is GuardRecord {
  const r = x as GuardRecord;
  return !!r && typeof r.fingerprint === 'string' && FP_RE.test(r.fingerprint)
    && Number.isFinite(r.addedAt) && Number.isInteger(r.failures) && r.failures >= 0
    && Number.isFinite(r.retryAt) && (r.lastSuccessAt === null || Number.isFinite(r.lastSuccessAt))
    && typeof r.confirmed === 'boolean'
    && (r.lastFailureAt === undefined || Number.isFinite(r.lastFailureAt))
    && (r.unlistedSince === undefined || r.unlistedSince === null || Number.isFinite(r.unlistedSince));
}

/** The valid guard records of a parsed state file (none when it has no `guards` of version 1). */
function recordsOf(state: unknown): { records: GuardRecord[]; malformed: number } {
  const gs = (state as { guards?: Partial<GuardState> } | null)?.guards;
  const list: unknown[] = gs && gs.version === 1 && Array.isArray(gs.sampled) ? gs.sampled : [];
  const records = list.filter(validRecord).map((r) => ({ ...r, unlistedSince: r.unlistedSince ?? null }));
  return { records, malformed: list.length - records.length };
}

/**
 * SPEC.md §7.2 (State): one guard both the file and this process hold. Each field takes the newer
 * news: `failures` and `retryAt` come from the record whose latest event, max(`lastSuccessAt`,
 * `lastFailureAt`), is newer (a success after another process's failure ends its backoff; equal:
 * the later `retryAt`, then the higher count), the later `lastSuccessAt` and `lastFailureAt`,
 * `confirmed` if either says so, the earlier `addedAt`; `unlistedSince` is this process's (it
 * saves the consensus it has just looked at).
 */
function mergeRecord(disk: GuardRecord, mine: GuardRecord): GuardRecord {
  const latest = (r: GuardRecord) => Math.max(r.lastSuccessAt ?? 0, r.lastFailureAt ?? 0);
  const status = latest(mine) !== latest(disk) ? (latest(mine) > latest(disk) ? mine : disk)
    : mine.retryAt > disk.retryAt || (mine.retryAt === disk.retryAt && mine.failures > disk.failures) ? mine : disk;
  const last = disk.lastSuccessAt === null ? mine.lastSuccessAt
    : mine.lastSuccessAt === null ? disk.lastSuccessAt : Math.max(disk.lastSuccessAt, mine.lastSuccessAt);
  const lastFailureAt = Math.max(disk.lastFailureAt ?? 0, mine.lastFailureAt ?? 0);
  return {
    fingerprint: disk.fingerprint, addedAt: Math.min(disk.addedAt, mine.addedAt),
    failures: status.failures, retryAt: status.retryAt, lastSuccessAt: last,
    ...(lastFailureAt > 0 ? { lastFailureAt } : {}),
    confirmed: disk.confirmed || mine.confirmed, unlistedSince: mine.unlistedSince ?? null,
  };
}

export class GuardSet {
  private records: GuardRecord[];
  private readonly opts: Required<Omit<GuardSetOptions, 'rng' | 'onSampled'>> & { rng: () => number; onSampled?: () => void };
  /** Problems met while loading (e.g. a corrupt state file set aside); for the caller to log. */
  readonly warnings: string[] = [];
  private dirtyFlag = false;

  /** `file` null = not persisted (tests, one-shot tools). */
  constructor(readonly file: string | null, readonly now: () => number = Date.now, opts: GuardSetOptions = {}, records: GuardRecord[] = []) {
    this.opts = {
      sampleSize: opts.sampleSize ?? 3, maxSampleSize: opts.maxSampleSize ?? 10,
      retryBaseMs: opts.retryBaseMs ?? 60_000, retryMaxMs: opts.retryMaxMs ?? 3_600_000,
      removeUnlistedAfterMs: opts.removeUnlistedAfterMs ?? 20 * 86_400_000, rng: opts.rng ?? secureRandom, // SPEC.md §7.1: the CSPRNG
      onSampled: opts.onSampled,
    };
    if (!(this.opts.sampleSize >= 1 && this.opts.maxSampleSize >= this.opts.sampleSize)) {
      throw err('CONFIG_INVALID', 'guard maxSampleSize must be >= sampleSize >= 1');
    }
    this.records = records;
  }

  /**
   * Read the guard set from the client's state file. A missing file gives an empty set. A file
   * that is not valid JSON is renamed to FILE.corrupt-<time> and an empty set is returned with a
   * warning (as Tor does with a bad state file): the client must still start.
   */
  static load(file: string, now: () => number = Date.now, opts: GuardSetOptions = {}): GuardSet {
    let text: string | null = null;
    try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw err('IO_STATE_UNREADABLE', `cannot read state file ${file}`, undefined, e);
    }
    if (text === null) return new GuardSet(file, now, opts);
    let state: unknown;
    try { state = JSON.parse(text); } catch {
      const aside = `${file}.corrupt-${now()}`;
      try { fs.renameSync(file, aside); } catch { /* keep going with an empty set */ }
      const g = new GuardSet(file, now, opts);
      g.warnings.push(`state file ${file} was not valid JSON; moved to ${aside}, starting with new guards`);
      return g;
    }
    const { records, malformed } = recordsOf(state);
    const g = new GuardSet(file, now, opts, records);
    if (malformed > 0) g.warnings.push(`ignored ${malformed} malformed guard entries`);
    return g;
  }

  /** The sampled guards in preference order (copies). */
  get guards(): GuardRecord[] { return this.records.map((r) => ({ ...r })); }
  /** True when there are changes not yet saved. */
  get dirty(): boolean { return this.dirtyFlag; }

  /**
   * The guard to use for the next circuit, or null when the consensus offers none. Keeps (but
   * skips) sampled guards the consensus no longer lists as eligible (not at all, or without the
   * Guard, Running or Valid flag), marking since when, and drops them only once unlisted for
   * `removeUnlistedAfterMs` (a short partition must not rotate the guard); a guard listed again
   * takes back its place. Samples new guards by guard-position weight until
   * `sampleSize` are usable (at most `maxSampleSize` in all), whatever `exclude` leaves out of
   * this path (null when it leaves out every usable one). Returns the first
   * usable guard whose retry time has come; if all are backing off, the one that is due soonest
   * (better to retry a guard than to leave the guard set).
   *
   * `conflicts` are the guards a fixed last hop (a storage node) rules out for this path. When they
   * rule out every eligible sampled guard, one more eligible node that fits is sampled (appended,
   * within `maxSampleSize`), as Tor goes down its sampled set when no primary guard satisfies a
   * circuit's restrictions; the guards ahead of it keep their places.
   */
  pickGuard(consensusRelays: readonly Relay[], exclude: ReadonlySet<string> = new Set(), conflicts: ReadonlySet<string> = new Set()): Relay | null {
    const now = this.now();
    const byFp = new Map(consensusRelays.map((r) => [r.fingerprint.toLowerCase(), r]));
    const before = this.records.length;
    const usable = (r: Relay | undefined): r is Relay => !!r && r.flags.has('Guard') && isRunningValid(r) && canBeHop(r);
    // SPEC.md §7.2 (Leaving the consensus): a guard is listed while the consensus lists it as
    // eligible, as Tor's is_listed asks for a possible guard; one that lost Guard, Running or Valid
    // is skipped like one left out, and removed after as long, so it cannot hold its place (and a
    // slot of maxSampleSize) for good.
    for (const g of this.records) {
      const listed = usable(byFp.get(g.fingerprint));
      if (listed && g.unlistedSince != null) { g.unlistedSince = null; this.dirtyFlag = true; }
      if (!listed && g.unlistedSince == null) { g.unlistedSince = now; this.dirtyFlag = true; }
    }
    this.records = this.records.filter((g) => g.unlistedSince == null || now - g.unlistedSince < this.opts.removeUnlistedAfterMs);
    if (this.records.length !== before) this.dirtyFlag = true;

    // SPEC.md §7.2: sampling counts the guards the consensus makes usable; a guard excluded only
    // for the path being built (it failed this build, or conflicts with the last hop) is not
    // missing, so exclusions never grow the sample.
    const eligible = () => this.records.filter((g) => usable(byFp.get(g.fingerprint)));

    let added = 0; // guards sampled by this call
    let listed = eligible().length;
    if (listed < this.opts.sampleSize) {
      const w = computeBandwidthWeights(consensusRelays);
      const sampled = new Set(this.records.map((g) => g.fingerprint));
      let pool = consensusRelays.filter((r) => usable(r) && !sampled.has(r.fingerprint.toLowerCase()));
      while (listed < this.opts.sampleSize && this.records.length < this.opts.maxSampleSize && pool.length > 0) {
        const r = weightedPick(pool, (x) => positionWeight(x, 'guard', w), this.opts.rng, (x) => x.weight)!;
        pool = pool.filter((x) => x !== r);
        this.records.push({ fingerprint: r.fingerprint.toLowerCase(), addedAt: now, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false, unlistedSince: null });
        this.dirtyFlag = true;
        added++;
        listed++;
      }
    }
    const fits = (fp: string) => !exclude.has(fp) && !conflicts.has(fp);
    let candidates = eligible().filter((g) => fits(g.fingerprint));
    // Sample only when no eligible record avoids the conflicts at all: one that does but is
    // excluded (it failed this build) leaves this path without a guard, as failures never cause
    // sampling (SPEC.md §7.2 Sampling).
    if (candidates.length === 0 && conflicts.size > 0 && this.records.length < this.opts.maxSampleSize
      && eligible().every((g) => conflicts.has(g.fingerprint))) {
      // SPEC.md §7.2 (restrictions): no sampled guard can precede this fixed last hop; sample one
      // that can, after the others.
      const sampled = new Set(this.records.map((g) => g.fingerprint));
      const pool = consensusRelays.filter((r) => usable(r) && !sampled.has(r.fingerprint.toLowerCase()) && fits(r.fingerprint.toLowerCase()));
      const r = weightedPick(pool, (x) => positionWeight(x, 'guard', computeBandwidthWeights(consensusRelays)), this.opts.rng, (x) => x.weight);
      if (r) {
        this.records.push({ fingerprint: r.fingerprint.toLowerCase(), addedAt: now, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false, unlistedSince: null });
        this.dirtyFlag = true;
        added++;
        candidates = eligible().filter((g) => fits(g.fingerprint));
      }
    }
    if (added > 0) this.opts.onSampled?.();
    if (candidates.length === 0) return null;
    const ready = candidates.find((g) => g.retryAt <= now);
    const chosen = ready ?? candidates.reduce((a, b) => (b.retryAt < a.retryAt ? b : a));
    return byFp.get(chosen.fingerprint)!;
  }

  /** A circuit or link through this guard failed: back off 2^(n-1) × base, up to the ceiling. */
  markFailure(fp: string): void {
    const g = this.records.find((x) => x.fingerprint === fp.toLowerCase());
    if (!g) return;
    const now = this.now();
    g.failures++;
    g.lastFailureAt = now;
    g.retryAt = now + Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** Math.min(30, g.failures - 1));
    this.dirtyFlag = true;
  }

  /** A circuit through this guard was built: it is reachable and confirmed. */
  markSuccess(fp: string): void {
    const g = this.records.find((x) => x.fingerprint === fp.toLowerCase());
    if (!g) return;
    g.failures = 0;
    g.retryAt = 0;
    g.lastSuccessAt = this.now();
    g.confirmed = true;
    this.dirtyFlag = true;
  }

  toJSON(): GuardState { return { version: 1, sampled: this.guards }; }

  /**
   * Write the set into the state file (mode 0600, atomic), keeping every other top-level key
   * already in the file (the state file is shared with other client state).
   *
   * SPEC.md §7.2 (State): the client's processes (a running proxy, a `bitcloud get` beside it)
   * share the file, so it is read again and merged under `<file>.lock`, and the guard list on disk
   * wins: this process's records become the merged ones at once. IO_STATE_LOCKED when another
   * live process holds the lock for `lockTimeoutMs` (default 30 s).
   */
  async save(o: { lockTimeoutMs?: number } = {}): Promise<void> {
    const file = this.file;
    if (!file) { this.dirtyFlag = false; return; }
    // The lock lives beside the file: a data folder not made yet is made first (as the write would).
    await mkdirDurable(path.dirname(file), 0o700);
    await withFileLock(`${file}.lock`, async () => {
      const existing = await fsp.readFile(file, 'utf8').catch(() => null);
      const text = this.stateText(existing);
      await writeFileAtomic(file, text, 0o600).catch((e: unknown) => this.writeFailed(e));
    }, { code: 'IO_STATE_LOCKED', timeoutMs: o.lockTimeoutMs });
  }

  /**
   * A short-lived command's save, on sampling and at its end (SPEC.md §7.2 State): when dirty, save() waiting at most
   * COMMAND_LOCK_TIMEOUT_MS for the lock; a failure (the lock still held, a write that failed) is
   * logged at debug and never fails the command (the set stays dirty). The outcome says whether
   * this process's changes are on disk ('saved', also when there was nothing to save) or were
   * skipped, and why, so that a command without a log can say so (`consensus`, `rewards`).
   */
  async saveForCommand(log?: Logger): Promise<CommandSaveOutcome> {
    if (!this.dirty) return { status: 'saved' };
    try {
      await this.save({ lockTimeoutMs: COMMAND_LOCK_TIMEOUT_MS });
      return { status: 'saved' };
    } catch (e) {
      log?.debug({ code: errorCode(e), err: (e as Error).message }, 'guard state not saved');
      return { status: 'skipped', code: errorCode(e), reason: (e as Error).message };
    }
  }

  /**
   * As save(), synchronously (for shutdown paths, which cannot wait): the lock is taken only if it
   * is free (or its holder no longer runs); while another process holds it, nothing is written
   * (only status news of this process is lost; the set stays dirty).
   */
  saveSync(): void {
    const file = this.file;
    if (!file) { this.dirtyFlag = false; return; }
    mkdirDurableSync(path.dirname(file), 0o700);
    const release = tryFileLockSync(`${file}.lock`);
    if (!release) return;
    try {
      let existing: string | null = null;
      try { existing = fs.readFileSync(file, 'utf8'); } catch { /* missing: write ours alone */ }
      const text = this.stateText(existing);
      try { writeFileAtomicSync(file, text, 0o600); } catch (e) { this.writeFailed(e); }
    } finally {
      release();
    }
  }

  /**
   * SPEC.md §7.2 (State): the guard list on disk merged with this process's. The disk list is the
   * base, in its order; guards in both: mergeRecord. A guard only this process holds is appended
   * (within `maxSampleSize`) when this process's list already holds every guard on disk (it
   * sampled on top of the shared list, e.g. one that fits a storage node's restrictions);
   * otherwise another process sampled meanwhile, and a guard only this process holds is appended
   * only while fewer than `sampleSize` merged records are listed, else dropped: one sample for all
   * the client's processes. Records unlisted for `removeUnlistedAfterMs` are removed. A file
   * without guards (new, missing or set aside) takes this process's list as it is.
   */
  private merged(disk: GuardRecord[]): GuardRecord[] {
    if (disk.length === 0) return this.records.map((r) => ({ ...r }));
    const now = this.now();
    const expired = (g: GuardRecord) => g.unlistedSince != null && now - g.unlistedSince >= this.opts.removeUnlistedAfterMs;
    const mine = new Map(this.records.map((r) => [r.fingerprint, r]));
    const onTop = disk.every((d) => mine.has(d.fingerprint) || expired(d));
    const out = disk.map((d) => { const m = mine.get(d.fingerprint); return m ? mergeRecord(d, m) : { ...d }; });
    const onDisk = new Set(disk.map((d) => d.fingerprint));
    let listed = out.filter((r) => r.unlistedSince == null).length;
    for (const r of this.records) {
      if (onDisk.has(r.fingerprint) || out.length >= this.opts.maxSampleSize) continue;
      if (!onTop && listed >= this.opts.sampleSize) continue;
      out.push({ ...r });
      if (r.unlistedSince == null) listed++;
    }
    return out.filter((g) => !expired(g));
  }

  /**
   * A write of the state by save() or saveSync() failed: the set is marked dirty again, so the next
   * save tries again (SPEC.md §7.2 State), and the failure is passed on.
   */
  private writeFailed(e: unknown): never {
    this.dirtyFlag = true; // not written: the next save tries again
    throw e;
  }

  private stateText(existing: string | null): string {
    let state: Record<string, unknown> = {};
    try {
      const parsed: unknown = existing === null ? null : JSON.parse(existing);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) state = parsed as Record<string, unknown>;
    } catch { /* corrupt: write ours alone */ }
    this.records = this.merged(recordsOf(state).records);
    state.guards = this.toJSON();
    // Clean from here: a change made while the write runs marks the set dirty again, and a write
    // that fails sets it back (writeFailed), so the periodic save retries it.
    this.dirtyFlag = false;
    return JSON.stringify(state, null, 2) + '\n';
  }
}
