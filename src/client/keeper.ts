// SPEC.md §9.19: the keeper's state — the files it keeps (by verify capability) and what the last
// pass found — in <dataDir>/keeper.json, mode 0600, replaced atomically (temp, fsync, rename), so it
// survives restarts and a crash leaves either the old or the new state. Every change is a
// read-modify-write under <dataDir>/keeper.json.lock (updateKeeperState), so processes do not
// overwrite each other's changes.
import { setMaxListeners } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic, mkdirDurable } from '../ops/fsutil';
import { withFileLock } from '../ops/file-lock';
import { err, errorCode } from '../errors';
import { formatVerifyCapability, parseVerifyCapability, type VerifyCapability } from '../storage/verify-cap';
import type { KeepReport } from './storage-client-verify';
import { checkLeaseSeconds } from './lease-expiry';

export const KEEPER_STATE_VERSION = 1;

export interface KeptFile {
  /** The verify capability (it cannot decrypt the file, but it is still a bearer secret). */
  verifyCap: string;
  manifestId: string;
  addedAt: number;
  /** Unix seconds of the last pass over this file (0: never). */
  lastCheck: number;
  shares: number;
  healthy: number;
  /** Shares rebuilt over the file's whole life. */
  repairedTotal: number;
  /** Shares rebuilt in the last pass. */
  repaired: number;
  lost: number;
  unrecoverableChunks: number;
  /** Audits of the last pass that failed: of chunk shares and of the whole shares' holders. */
  auditFailures: number;
  /**
   * Audits of the last pass a node answered STORAGE_BUSY on every try or did not answer (timeout,
   * lost connection), of chunk shares and of the whole shares' holders (SPEC.md §9.18.3 steps 3 and 5). Absent from a state saved before it was
   * recorded: read as 0.
   */
  busyAudits: number;
  /**
   * Shares the last pass could not judge: no holder passed, one stayed STORAGE_BUSY (SPEC.md
   * §9.18.3 step 3; one whose holders did not answer is rebuilt elsewhere in a pass). Absent from a state saved before it was recorded: read as 0.
   */
  unknown: number;
  /** Earliest lease expiry after the last renewal (0: not renewed yet). */
  expiresAt: number;
  lastError: string | null;
}

export interface KeeperState {
  version: number;
  files: KeptFile[];
}

export function keeperStatePath(dataDir: string): string {
  return path.join(dataDir, 'keeper.json');
}

export async function loadKeeperState(dataDir: string): Promise<KeeperState> {
  let text: string;
  try {
    text = await fsp.readFile(keeperStatePath(dataDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: KEEPER_STATE_VERSION, files: [] };
    throw err('STORAGE_IO_ERROR', 'cannot read the keeper state', { errno: (e as NodeJS.ErrnoException).code }, e);
  }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { throw err('KEEPER_STATE_CORRUPT', 'keeper.json is not JSON', undefined, e); }
  const s = raw as KeeperState;
  if (!s || typeof s !== 'object' || s.version !== KEEPER_STATE_VERSION || !Array.isArray(s.files)) throw err('KEEPER_STATE_CORRUPT', 'keeper.json has an unknown layout');
  s.files.forEach(checkKept);
  return s;
}

/** The counters and times of a kept file: finite numbers ≥ 0 (Unix seconds or counts). */
const COUNTS = ['addedAt', 'lastCheck', 'shares', 'healthy', 'repairedTotal', 'repaired', 'lost', 'unrecoverableChunks', 'auditFailures', 'busyAudits', 'unknown', 'expiresAt'] as const;

/** SPEC.md §9.19: every field of a kept file has its type, else the state is KEEPER_STATE_CORRUPT. */
function checkKept(f: KeptFile, i: number): void {
  const bad = (why: string, cause?: unknown) => err('KEEPER_STATE_CORRUPT', `keeper.json file ${i}: ${why}`, { index: i }, cause);
  if (!f || typeof f !== 'object' || Array.isArray(f)) throw bad('not an object');
  if (typeof f.verifyCap !== 'string') throw bad('verifyCap is not a string');
  let cap;
  try { cap = parseVerifyCapability(f.verifyCap); } catch (e) { throw bad('a bad verify capability', e); }
  if (typeof f.manifestId !== 'string' || !/^[0-9a-f]{64}$/.test(f.manifestId)) throw bad('manifestId is not 64 hex digits');
  if (f.manifestId !== cap.manifestId.toString('hex')) throw bad('manifestId is not that of the verify capability');
  if ((f as Partial<KeptFile>).unknown === undefined) f.unknown = 0; // saved before unknown shares were recorded
  if ((f as Partial<KeptFile>).busyAudits === undefined) f.busyAudits = 0; // saved before busy audits were recorded
  for (const k of COUNTS) {
    const v = f[k] as unknown;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw bad(`${k} is not a finite number ≥ 0`);
  }
  if (f.lastError !== null && typeof f.lastError !== 'string') throw bad('lastError is neither a string nor null');
}

export async function saveKeeperState(dataDir: string, s: KeeperState): Promise<void> {
  await mkdirDurable(dataDir, 0o700);
  await writeFileAtomic(keeperStatePath(dataDir), JSON.stringify(s, null, 2) + '\n', 0o600);
}

/**
 * SPEC.md §9.19: read, change and write keeper.json while holding `keeper.json.lock`, so that
 * `keep add` and `keep run` (other processes) never write over each other's changes.
 * KEEPER_STATE_LOCKED when another live process holds the lock for `timeoutMs`.
 */
export async function updateKeeperState<T>(dataDir: string, change: (s: KeeperState) => T, o: { timeoutMs?: number } = {}): Promise<T> {
  await mkdirDurable(dataDir, 0o700);
  return withFileLock(keeperStatePath(dataDir) + '.lock', async () => {
    const s = await loadKeeperState(dataDir);
    const out = change(s);
    await saveKeeperState(dataDir, s);
    return out;
  }, { code: 'KEEPER_STATE_LOCKED', timeoutMs: o.timeoutMs });
}

/** Add a file (idempotent: a file already kept is left as it is). Returns true when it was new. */
export function addKept(s: KeeperState, verifyCap: string, now: number): boolean {
  const c = parseVerifyCapability(verifyCap);
  const text = formatVerifyCapability(c);
  const manifestId = c.manifestId.toString('hex');
  if (s.files.some((f) => f.manifestId === manifestId)) return false;
  s.files.push({
    verifyCap: text, manifestId, addedAt: now, lastCheck: 0, shares: 0, healthy: 0, repairedTotal: 0, repaired: 0, lost: 0,
    unrecoverableChunks: 0, auditFailures: 0, busyAudits: 0, unknown: 0, expiresAt: 0, lastError: null,
  });
  return true;
}

/**
 * Record one pass's report on a kept file. `renewed`: the pass renewed the file's leases, so its
 * earliest expiry replaces the one recorded; otherwise the expiry of shares the pass stored is
 * folded in (the earlier one counts). A chunk whose rebuilt shares disagree with the verify record
 * leaves SHARE_HASH_MISMATCH as the file's last error; shares whose audits stayed busy are
 * recorded apart as unknown (SPEC.md §9.18.3, §9.19). The audit totals count the whole shares'
 * audits (root and verify record, §9.18.3 step 5) with the chunk shares'.
 */
export function recordPass(f: KeptFile, r: KeepReport, now: number, renewed = true): void {
  f.lastCheck = now;
  f.shares = r.shares;
  f.healthy = r.healthy;
  f.repaired = r.repaired;
  f.repairedTotal += r.repaired;
  f.lost = r.lost;
  f.unrecoverableChunks = r.unrecoverableChunks;
  f.auditFailures = r.failures.length;
  f.busyAudits = r.busy.length;
  f.unknown = r.unknown;
  if (r.expiresAt) f.expiresAt = renewed || !f.expiresAt ? r.expiresAt : Math.min(f.expiresAt, r.expiresAt);
  f.lastError = r.mismatchedChunks ? 'SHARE_HASH_MISMATCH' : null;
}

/** True when the file's leases are due: never renewed, or expiring within `withinSeconds`. */
export function renewDue(f: KeptFile, now: number, withinSeconds: number): boolean {
  return f.expiresAt === 0 || f.expiresAt - now <= withinSeconds;
}

/** What `bitcloud keep run` was asked for (SPEC.md §9.19). */
export interface KeeperRun {
  once: boolean;
  /** Seconds between passes. */
  interval: number;
  /** Renew a file whose earliest known lease expiry is within this many seconds. */
  renewWithin: number;
  /** Lease to ask for (0: each node's default). */
  leaseSeconds: number;
}

/**
 * SPEC.md §9.19: checks `keep run`'s numbers before anything is sent (CONFIG_INVALID): the
 * interval a whole number of seconds ≥ 1, renew-within a finite number ≥ 0, the lease a whole
 * number ≥ 0 (a NaN interval would run passes back to back; a NaN renew-within never renews).
 */
export function checkKeeperRun(q: KeeperRun): KeeperRun {
  if (!Number.isSafeInteger(q.interval) || q.interval < 1) throw err('CONFIG_INVALID', '--interval must be a whole number of seconds ≥ 1', { interval: q.interval });
  if (typeof q.renewWithin !== 'number' || !Number.isFinite(q.renewWithin) || q.renewWithin < 0) throw err('CONFIG_INVALID', '--renew-within must be a number of seconds ≥ 0', { renewWithin: q.renewWithin });
  checkLeaseSeconds(q.leaseSeconds);
  return q;
}

/** One file's check and repair (SPEC.md §9.18.3): `keepFile` over the session's client. */
export type KeepPass = (cap: VerifyCapability, o: { renew: boolean; leaseSeconds: number; signal: AbortSignal }) => Promise<KeepReport>;

/** Unix seconds now (the keeper's times are whole seconds). */
export const nowSec = () => Math.floor(Date.now() / 1000);

/** Node fires a timer of more than 2^31−1 ms after 1 ms: a longer sleep is taken in such steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Sleep `ms` (any length, e.g. a 30-day --interval) or until `signal` aborts; never rejects. */
async function sleepLong(ms: number, signal: AbortSignal): Promise<void> {
  for (let left = ms; left > 0 && !signal.aborted; left -= MAX_TIMER_MS) {
    await sleep(Math.min(left, MAX_TIMER_MS), undefined, { signal }).catch(() => {});
  }
}

/**
 * SPEC.md §9.19: passes over the kept files — each file checked, repaired and (when due) renewed,
 * the state saved after each file — once, or every `interval` seconds until SIGTERM/SIGINT or
 * `o.signal` (the sleep between passes ends at once; a pass under way stops after its current file,
 * or at once, that file unsaved, when its audits wait to ask a busy node again: the pass gets the
 * signal). Resolves the last state and whether every file of the last pass could be read whole.
 */
export async function runKeeper(dataDir: string, q: KeeperRun, pass: KeepPass, o: {
  signal?: AbortSignal;
  /** Called as it goes to sleep between passes, the pass's state saved; changes nothing (tests wait on it). */
  onSleep?: () => void;
} = {}): Promise<{ ok: boolean; state: KeeperState }> {
  checkKeeperRun(q);
  let bad = false;
  // A signal ends the sleep between passes at once; a pass under way ends after its file (or in a
  // wait before a busy audit is asked again).
  const ac = new AbortController();
  // Every audit of a pass waiting to ask a busy node again listens to it (SPEC.md §9.18.3 step 3):
  // thousands at once are expected, not a leak.
  setMaxListeners(0, ac.signal);
  const onSignal = () => { ac.abort(); };
  if (o.signal?.aborted) ac.abort();
  o.signal?.addEventListener('abort', onSignal, { once: true });
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const stopped = () => ac.signal.aborted;
  try {
    for (;;) {
      const files = (await loadKeeperState(dataDir)).files; // re-read: `keep add` may have run meanwhile
      bad = false;
      for (const f of files) {
        if (stopped()) break;
        const renew = renewDue(f, nowSec(), q.renewWithin);
        let record: (g: KeptFile) => void;
        try {
          const r = await pass(parseVerifyCapability(f.verifyCap), { renew, leaseSeconds: q.leaseSeconds, signal: ac.signal });
          record = (g) => recordPass(g, r, nowSec(), renew);
          if (r.unrecoverableChunks || r.mismatchedChunks) bad = true;
        } catch (e) {
          // Stopped while its audits waited to ask a busy node again: the file was not checked,
          // and its record stays as the last pass left it.
          if (stopped()) break;
          const code = errorCode(e);
          record = (g) => { g.lastCheck = nowSec(); g.lastError = code; };
          bad = true;
        }
        // Only this file's record is merged into the state as it is now on disk: a file added
        // meanwhile stays, and one removed meanwhile is not brought back.
        await updateKeeperState(dataDir, (cur) => {
          const g = cur.files.find((x) => x.manifestId === f.manifestId);
          if (g) record(g);
        });
      }
      if (q.once || stopped()) break;
      o.onSleep?.();
      await sleepLong(q.interval * 1000, ac.signal);
      if (stopped()) break;
    }
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    o.signal?.removeEventListener('abort', onSignal);
  }
  return { ok: !bad, state: await loadKeeperState(dataDir) };
}
