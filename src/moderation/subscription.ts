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
import { prom, type Registry } from '../ops/metrics';
import { advancePolicy, stateBundle, type PolicyState } from './chain';
import type { SubscriptionView } from './enforce';
import { parseModerator } from './policy';
import type { PolicySource } from './sources';

export const DEFAULT_REFRESH_MS = 10 * 60_000;
export const POLICY_DIR = 'policies';

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
      };
    });
  }

  /** Refresh now, then every refreshMs (default 10 minutes) until close(). */
  start(): Promise<void> {
    if (this.unmoderated) return Promise.resolve();
    const first = this.refresh();
    const every = this.o.refreshMs ?? DEFAULT_REFRESH_MS;
    this.timer = setInterval(() => { void this.refresh(); }, every);
    this.timer.unref();
    return first;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One round: every moderator from every source, in order. Never rejects; one at a time. */
  refresh(): Promise<void> {
    this.running ??= (async () => {
      try {
        for (const m of this.moderators) for (const src of this.sources) await this.fetchOne(m, src);
        this.checkExpiry();
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
      const r = advancePolicy(held, bundle, { moderator, now: this.now(), skewMs: this.o.skewMs });
      this.metrics?.updates.labels(r.result).inc();
      if (r.result === 'updated') {
        this.held.set(moderator, r.state);
        this.savedErrors.delete(moderator);
        this.metrics?.seq.labels(moderator).set(r.state.seq);
        this.log.info({ moderator, seq: r.state.seq, previous: held?.seq ?? null, source, denylist: r.state.deny.size }, 'policy updated');
        await this.persist(r.state);
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
        raw = fs.readFileSync(f);
      } catch (e) {
        this.unusable(m, { code: 'IO_STATE_UNREADABLE', message: `cannot read the saved policy: ${(e as Error).message}` });
        continue;
      }
      try {
        const { state } = advancePolicy(null, raw, { moderator: m, now: this.now(), checkWindow: false });
        this.held.set(m, state);
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
