// SPEC.md §10.6.1: a storage node's subscriptions. The node names moderator keys in its config;
// this manager fetches each moderator's newest bundle from every source periodically, verifies it
// (advancePolicy: signatures, chain, sequence numbers, window), keeps the newest, persists it in
// the data directory so a restart enforces at once, and exposes the current policies to
// enforcement (SubscriptionView). A forged, foreign, conflicting or older policy changes nothing
// and is logged ("policy refused", with its code).
import fs from 'node:fs';
import path from 'node:path';
import { declaredCode, err, errorCode } from '../errors';
import { isoTime, silentLogger, type Logger } from '../ops/log';
import { writeFileAtomic, mkdirDurable } from '../ops/fsutil';
import { processStartId } from '../ops/file-lock';
import { prom, type Registry } from '../ops/metrics';
import { advancePolicy, answerFromHeld, decodeBundle, stateBundle, type PolicyState } from './chain';
import type { SubscriptionView } from './enforce';
import { parseModerator } from './policy';
import type { PolicySource } from './sources';

export const DEFAULT_REFRESH_MS = 10 * 60_000;
export const POLICY_DIR = 'policies';
/**
 * SPEC.md §10.6.1: what a running node enforces, per moderator, written by the node (atomically,
 * mode 0600) for `bitcloud-storage status`, which cannot see the node's memory. Removed at close.
 */
export const POLICY_STATUS_FILE = 'policy-status.json';

/** The JSON shape of policy-status.json (SPEC.md §10.6.1). */
export interface PolicyStatusFile {
  /** The node's process: status trusts the file only while it runs. */
  pid: number;
  /**
   * processStartId(pid) when the node wrote the file (null where the system does not tell): a
   * process that now has that id but another start is not the node (the id was reused).
   */
  started: string | null;
  writtenAt: number;
  policies: ModeratorStatus[];
}

export interface SubscriptionOptions {
  /** Moderator fingerprints. Empty (or `unmoderated`) = an unmoderated node. */
  moderators: readonly string[];
  unmoderated?: boolean;
  /** Allow-only classes (SPEC.md §10.6): stored only when a subscribed moderator approved them. */
  approvedOnly?: readonly string[];
  sources?: PolicySource[];
  /** Policies are kept in <dataDir>/policies/<fingerprint>.bundle. */
  dataDir?: string;
  refreshMs?: number;
  skewMs?: number;
  log?: Logger;
  registry?: Registry;
  now?: () => number;
}

export interface ModeratorStatus {
  moderator: string;
  seq: number | null;
  name: string;
  classes: string[];
  denylistEntries: number;
  approvals: number;
  validUntil: number | null;
  /** The policy enforced is past its valid_until (SPEC.md §10.6.1): still enforced, warned about. */
  expired: boolean;
  /**
   * SPEC.md §10.6.1: the saved policy file exists but could not be read (IO_STATE_UNREADABLE) or
   * did not verify (its code): nothing of it is held (`seq` null) until a fetch brings a policy.
   * Absent otherwise.
   */
  error?: { code: string; message: string };
  /** SPEC.md §10.6.1: the digest (hex) of the newest version held, null when none. */
  digest: string | null;
  /** SPEC.md §10.6.1: when the node took the policy it holds into memory (ms), null when none. */
  loadedAt: number | null;
  /**
   * Set by `bitcloud-storage status` (SPEC.md §10.6.1): 'daemon' when the running node reported
   * what it enforces (its policy-status.json), 'disk' when no node runs and the saved files are shown.
   */
  from?: 'daemon' | 'disk';
  /**
   * Set by `bitcloud-storage status` when a node runs (SPEC.md §10.6.1): the saved copy on disk
   * cannot be read or is not a regular file (IO_STATE_UNREADABLE), does not verify (its code) or
   * is not the policy enforced (POLICY_SAVED_DIFFERS). Absent when the saved copy is the one enforced.
   */
  saved?: { code: string; message: string };
}

interface Metrics {
  seq: prom.Gauge<'moderator'>;
  updates: prom.Counter<'result'>;
  expired: prom.Gauge<'moderator'>;
}

function makeMetrics(reg: Registry): Metrics {
  return {
    seq: new prom.Gauge({ name: 'bitcloud_moderation_policy_seq', help: 'Sequence number of the policy enforced, per subscribed moderator (0 = none yet)', labelNames: ['moderator'], registers: [reg] }),
    updates: new prom.Counter({ name: 'bitcloud_moderation_policy_fetches_total', help: 'Policy fetches by result (updated, unchanged, none, or the refusal code)', labelNames: ['result'], registers: [reg] }),
    expired: new prom.Gauge({ name: 'bitcloud_moderation_policy_expired', help: '1 when the policy enforced for a subscribed moderator is past its valid_until (still enforced; the moderator must publish a newer one)', labelNames: ['moderator'], registers: [reg] }),
  };
}

/**
 * SPEC.md §10.6.1: the envelopes of a fetched bundle, each copied out of it into bytes of its own.
 * A version kept (and what is decoded from it: approvals, entries) is a view of the bytes it was
 * read from, so without the copy every version taken from a fetch would keep that whole answer
 * alive: a source that answers each refresh with the deltas the node holds followed by one new
 * delta (no snapshot, so the node continues its chain, §10.4 step 5) would have a chain of 256
 * deltas hold 256 answers of up to 16 MiB each, in place of one bundle. A bundle answered from
 * what is held (unchanged, or older: §10.4) is not copied.
 */
function ownVersions(bundle: Buffer, held: PolicyState | null, moderator: string): Buffer[] {
  const raws = decodeBundle(bundle);
  if (held && answerFromHeld(held, raws, moderator)) return raws;
  return raws.map((x) => { const c = Buffer.allocUnsafeSlow(x.length); x.copy(c); return c; });
}

/** SPEC.md §6.2.4: a version is valid up to and including valid_until; expired only after it. */
function isExpired(p: PolicyState, now: number): boolean {
  return now > p.validUntil;
}

export class PolicySubscriptions implements SubscriptionView {
  readonly unmoderated: boolean;
  readonly moderators: readonly string[];
  readonly approvedOnly: readonly string[];
  private readonly held = new Map<string, PolicyState | null>();
  /** SPEC.md §10.6.1: why a saved policy was not used at start, by moderator, until one is fetched. */
  private readonly savedErrors = new Map<string, { code: string; message: string }>();
  /** SPEC.md §10.6.1: when each held policy was taken into memory (loaded at start or fetched). */
  private readonly loadedAt = new Map<string, number>();
  /** A running node (start() called) writes POLICY_STATUS_FILE, one write at a time. */
  private started = false;
  private statusWrite: Promise<void> = Promise.resolve();
  private readonly sources: PolicySource[];
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly metrics: Metrics | null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  private constructor(private readonly o: SubscriptionOptions) {
    const mods = [...new Set(o.moderators)];
    for (const m of mods) parseModerator(m);
    if (o.unmoderated && mods.length > 0) throw err('CONFIG_INVALID', 'a node is either unmoderated or subscribed to moderators, not both', { key: 'unmoderated' });
    this.unmoderated = mods.length === 0;
    this.moderators = Object.freeze(mods);
    this.approvedOnly = Object.freeze([...(o.approvedOnly ?? [])]);
    if (this.approvedOnly.length > 0 && mods.length === 0) throw err('CONFIG_INVALID', 'approvedOnly needs at least one moderator to approve content', { key: 'approvedOnly' });
    this.sources = [...(o.sources ?? [])];
    this.log = o.log ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.metrics = o.registry ? makeMetrics(o.registry) : null;
    for (const m of mods) this.held.set(m, null);
  }

  /** Make the manager and load the policies kept on disk (verified again; their windows are not rechecked). */
  static open(o: SubscriptionOptions): PolicySubscriptions {
    const s = new PolicySubscriptions(o);
    s.loadPersisted();
    return s;
  }

  policy(moderator: string): PolicyState | null {
    return this.held.get(moderator) ?? null;
  }

  addSource(src: PolicySource): void {
    this.sources.push(src);
  }

  status(): ModeratorStatus[] {
    return this.moderators.map((m) => {
      const p = this.held.get(m) ?? null;
      return {
        moderator: m, seq: p?.seq ?? null, name: p?.name ?? '', classes: p ? p.classes.map((c) => c.name) : [], denylistEntries: p?.deny.size ?? 0,
        approvals: p?.approvals.size ?? 0, validUntil: p?.validUntil ?? null, expired: p !== null && isExpired(p, this.now()),
        ...(p === null && this.savedErrors.has(m) ? { error: this.savedErrors.get(m)! } : {}),
        digest: p ? p.digest.toString('hex') : null, loadedAt: p ? this.loadedAt.get(m) ?? null : null,
      };
    });
  }

  /** Refresh now, then every refreshMs (default 10 minutes) until close(). */
  start(): Promise<void> {
    if (this.unmoderated) return Promise.resolve();
    this.started = true;
    void this.writeStatus();
    const first = this.refresh();
    const every = this.o.refreshMs ?? DEFAULT_REFRESH_MS;
    this.timer = setInterval(() => { void this.refresh(); }, every);
    this.timer.unref();
    return first;
  }

  /**
   * Stop refreshing and remove POLICY_STATUS_FILE. Resolves once a status write under way has
   * ended (it removes what it renamed into place), so no file names this process afterwards.
   */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // SPEC.md §10.6.1: a node that stops no longer enforces anything; status shows the disk again.
    const f = this.statusFile();
    if (this.started && f) {
      this.started = false;
      try { fs.rmSync(f, { force: true }); } catch (e) { this.log.warn({ code: errorCode(e) }, 'could not remove the policy status file'); }
    }
    // Never rejects: writeStatus turns a failure into a warning.
    await this.statusWrite;
  }

  /**
   * SPEC.md §10.6.1: write what this running node enforces to POLICY_STATUS_FILE, for
   * `bitcloud-storage status`. Writes are queued, never concurrent; a failure is a warning.
   */
  private writeStatus(): Promise<void> {
    const f = this.statusFile();
    if (!f) return Promise.resolve();
    this.statusWrite = this.statusWrite.then(async () => {
      if (!this.started) return;
      const doc: PolicyStatusFile = { pid: process.pid, started: processStartId(process.pid), writtenAt: this.now(), policies: this.status() };
      try {
        await writeFileAtomic(f, JSON.stringify(doc) + '\n', 0o600);
        // close() ran while this write was under way: its removal came before the rename.
        if (!this.started) fs.rmSync(f, { force: true });
      } catch (e) {
        this.log.warn({ code: errorCode(e) }, 'could not write the policy status file');
      }
    });
    return this.statusWrite;
  }

  private statusFile(): string | null {
    return this.o.dataDir ? path.join(this.o.dataDir, POLICY_STATUS_FILE) : null;
  }

  /**
   * One round: every moderator from every source, in order. Never rejects; one at a time. Source by
   * source (SPEC.md §10.6.1): every moderator is asked of the authorities before any is looked up
   * in the DHT, whose lookups a hostile DHT peer can drag out to their deadline (§10.7.2), so
   * that a slow source delays only what comes after it from that source and later ones.
   */
  refresh(): Promise<void> {
    this.running ??= (async () => {
      try {
        for (const src of this.sources) for (const m of this.moderators) await this.fetchOne(m, src);
        this.checkExpiry();
        await this.writeStatus();
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** Offer a bundle obtained elsewhere (tests, a push). Returns the result or the refusal code. */
  async offer(moderator: string, bundle: Buffer, source = 'offered'): Promise<string> {
    if (!this.held.has(moderator)) return 'NOT_SUBSCRIBED';
    const held = this.held.get(moderator) ?? null;
    try {
      const r = advancePolicy(held, ownVersions(bundle, held, moderator), { moderator, now: this.now(), skewMs: this.o.skewMs });
      this.metrics?.updates.labels(r.result).inc();
      if (r.result === 'updated') {
        this.held.set(moderator, r.state);
        this.loadedAt.set(moderator, this.now());
        this.savedErrors.delete(moderator);
        this.metrics?.seq.labels(moderator).set(r.state.seq);
        this.log.info({ moderator, seq: r.state.seq, previous: held?.seq ?? null, source, denylist: r.state.deny.size }, 'policy updated');
        await this.persist(r.state);
        await this.writeStatus();
      }
      return r.result;
    } catch (e) {
      const code = errorCode(e);
      this.metrics?.updates.labels(code).inc();
      this.log.warn({ moderator, source, code, held: held?.seq ?? null, reason: (e as Error).message }, 'policy refused');
      return code;
    }
  }

  /**
   * SPEC.md §10.6.1: a policy past its valid_until stays enforced (dropping it would open the node
   * to everything it denied) but never silently: a warning each refresh and a gauge per moderator.
   */
  private checkExpiry(): void {
    const now = this.now();
    for (const m of this.moderators) {
      const p = this.held.get(m) ?? null;
      const expired = p !== null && isExpired(p, now);
      this.metrics?.expired.labels(m).set(expired ? 1 : 0);
      if (expired) {
        this.log.warn({ moderator: m, seq: p.seq, validUntil: isoTime(p.validUntil) },
          'moderator policy expired; still enforced until the moderator publishes a newer one');
      }
    }
  }

  private async fetchOne(moderator: string, src: PolicySource): Promise<void> {
    let bundle: Buffer | null;
    try {
      bundle = await src.fetch(moderator, this.held.get(moderator) ?? null);
    } catch (e) {
      const code = errorCode(e);
      this.metrics?.updates.labels('fetch_failed').inc();
      this.log.debug({ moderator, source: src.name, code }, 'policy fetch failed');
      return;
    }
    if (!bundle) {
      this.metrics?.updates.labels('none').inc();
      return;
    }
    await this.offer(moderator, bundle, src.name);
  }

  private file(moderator: string): string | null {
    return this.o.dataDir ? path.join(this.o.dataDir, POLICY_DIR, `${moderator}.bundle`) : null;
  }

  private async persist(s: PolicyState): Promise<void> {
    const f = this.file(s.moderator);
    if (!f) return;
    try {
      await mkdirDurable(path.dirname(f), 0o700);
      await writeFileAtomic(f, stateBundle(s), 0o600);
    } catch (e) {
      this.log.warn({ moderator: s.moderator, code: errorCode(e) }, 'could not save a policy');
    }
  }

  /**
   * SPEC.md §10.6.1: restore the saved policies. A saved file that cannot be read
   * (IO_STATE_UNREADABLE) or does not verify (its code) is not used: nothing is held of that
   * moderator (so puts are refused POLICY_UNAVAILABLE) until a fetch brings its policy; the reason
   * is logged and kept for status().
   */
  private loadPersisted(): void {
    for (const m of this.moderators) {
      const f = this.file(m);
      if (!f || !fs.existsSync(f)) continue;
      let raw: Buffer;
      try {
        // Not a regular file (a folder, a FIFO that would block the read): not read at all.
        if (!fs.statSync(f).isFile()) throw new Error('not a regular file');
        raw = fs.readFileSync(f);
      } catch (e) {
        this.unusable(m, { code: 'IO_STATE_UNREADABLE', message: `cannot read the saved policy: ${(e as Error).message}` });
        continue;
      }
      try {
        const { state } = advancePolicy(null, raw, { moderator: m, now: this.now(), checkWindow: false });
        this.held.set(m, state);
        this.loadedAt.set(m, this.now());
        this.metrics?.seq.labels(m).set(state.seq);
        this.log.info({ moderator: m, seq: state.seq }, 'policy loaded from disk');
      } catch (e) {
        this.unusable(m, { code: declaredCode(e), message: (e as Error).message });
      }
    }
  }

  private unusable(moderator: string, why: { code: string; message: string }): void {
    this.savedErrors.set(moderator, why);
    this.log.warn({ moderator, code: why.code, reason: why.message }, 'saved policy not usable; fetching it again');
  }
}
