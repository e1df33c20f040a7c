// Relay-to-relay link lifetime (SPEC.md §1.9): which relays a relay keeps links to ahead of any
// circuit (the warm set, chosen on each new consensus), the paced background pass that opens
// the missing ones, and the idle timeout that closes links nobody needs. The circuit engine
// (relay/circuits.ts) owns the links; this file decides, and is pure enough to test without
// sockets: it sees links through the small `WarmingHost` interface.
import type { ConsensusRelay } from '../src/dir/types';
import { configError, int, noUnknownKeys, optObj } from '../src/dir/config-fields';
import { weightedPick } from '../src/client/weighting';
import { silentLogger, type Logger } from '../src/ops/log';
import { prom, type Registry } from '../src/ops/metrics';

/** Jitter for timers (not a secret: scheduling only). */
const randomInt = (n: number): number => Math.floor(Math.random() * n);

export interface LinkWarmingSettings {
  /** At most this many relays in the warm set (0: no warming; the idle timeout still applies). */
  maxLinks: number;
  /** A relay link of ours with no circuit for this long (±25 %, per link) is closed, unless it is the warm link to a warm-set relay. */
  idleTimeoutSeconds: number;
  /** The background pass starts one link attempt at most every `paceMs`, one at a time. */
  paceMs: number;
}

export const DEFAULT_LINK_WARMING: LinkWarmingSettings = { maxLinks: 64, idleTimeoutSeconds: 3600, paceMs: 250 };

/** `linkWarming` in the relay's config file: every key optional, each with its range. */
export function parseLinkWarming(v: unknown, key = 'linkWarming', file?: string): LinkWarmingSettings {
  const raw = optObj(v, key);
  noUnknownKeys(raw, Object.keys(DEFAULT_LINK_WARMING), key, file);
  const out: LinkWarmingSettings = {
    maxLinks: int(raw.maxLinks, `${key}.maxLinks`, 0, 10_000, DEFAULT_LINK_WARMING.maxLinks),
    idleTimeoutSeconds: int(raw.idleTimeoutSeconds, `${key}.idleTimeoutSeconds`, 60, 7 * 86_400, DEFAULT_LINK_WARMING.idleTimeoutSeconds),
    paceMs: int(raw.paceMs, `${key}.paceMs`, 10, 60_000, DEFAULT_LINK_WARMING.paceMs),
  };
  if (out.maxLinks > 0 && out.paceMs * out.maxLinks > 3_600_000) configError(`${key}.paceMs`, 'one pass (paceMs × maxLinks) must fit in an hour');
  return out;
}

/** A relay a client may name in an EXTEND2 from here: Running, Valid, and one that carries circuits (relay or exit). */
export function isExtendTarget(r: ConsensusRelay): boolean {
  return r.flags.has('Running') && r.flags.has('Valid') && (r.roles.length === 0 || r.roles.includes('relay') || r.roles.includes('exit'));
}

/**
 * SPEC.md §1.9: the warm set for one consensus. Every extend target but ourselves when there are
 * at most `max`; otherwise the ones we already hold a link to (heaviest first, so a new consensus
 * does not churn links), then a weighted draw without replacement from the rest, up to `max`.
 */
export function chooseWarmSet(relays: readonly ConsensusRelay[], self: string, max: number, linked: (fp: string) => boolean,
  rng: () => number = Math.random): Set<string> {
  const cands = relays.filter((r) => r.fingerprint !== self && isExtendTarget(r));
  if (max <= 0) return new Set();
  if (cands.length <= max) return new Set(cands.map((r) => r.fingerprint));
  const out = new Set<string>();
  for (const r of cands.filter((x) => linked(x.fingerprint)).sort((a, b) => b.weight - a.weight)) {
    if (out.size >= max) return out;
    out.add(r.fingerprint);
  }
  let rest = cands.filter((r) => !out.has(r.fingerprint));
  while (out.size < max && rest.length > 0) {
    const r = weightedPick(rest, (x) => x.weight, rng)!;
    out.add(r.fingerprint);
    rest = rest.filter((x) => x !== r);
  }
  return out;
}

/** What the warmer needs of the circuit engine. */
export interface WarmingHost<L> {
  /** Our fingerprint (64 hex). */
  self(): string;
  /** An open link (either direction) to this relay, or null. */
  linkTo(fp: string): L | null;
  /** A link attempt to this relay is already under way (an EXTEND2's, or ours). */
  connecting(fp: string): boolean;
  /** Open a link as an authenticated initiator (shared with EXTEND2: §7b.3 item 3). */
  open(r: ConsensusRelay): Promise<L>;
  /** Relay links this relay opened, with their peer's fingerprint. */
  outboundLinks(): Iterable<{ link: L; fp: string }>;
  /** Circuits with an entry on the link now. */
  circuitsOn(link: L): number;
  /** Close a link on purpose (receipts first, §8.3 step 10), unless a circuit took it meanwhile; true if closed. */
  closeIdle(link: L): Promise<boolean>;
}

export interface WarmingMetrics {
  warmed(result: 'opened' | 'failed'): void;
  idleClosed(): void;
  warmSetSize(n: number): void;
}

export function warmingMetrics(reg?: Registry): WarmingMetrics {
  if (!reg) return { warmed() {}, idleClosed() {}, warmSetSize() {} };
  const warmed = new prom.Counter({ name: 'bitcloud_relay_links_warmed_total', help: 'Relay links opened ahead of any circuit (SPEC.md §1.9), by result', labelNames: ['result'], registers: [reg] });
  const idle = new prom.Counter({ name: 'bitcloud_relay_links_idle_closed_total', help: 'Relay links this relay opened and closed after the idle timeout (SPEC.md §1.9)', registers: [reg] });
  const set = new prom.Gauge({ name: 'bitcloud_relay_warm_set_size', help: 'Relays in the current warm set (SPEC.md §1.9)', registers: [reg] });
  return { warmed: (result) => warmed.inc({ result }), idleClosed: () => idle.inc(), warmSetSize: (n) => set.set(n) };
}

/** What a follower waits beyond the leaders' pace: the link handshake bound (connectTo's timeout). */
export const FOLLOW_GRACE_MS = 10_000;

/** After a failed attempt, a relay is not tried again by the warmer for this long. */
export const WARM_RETRY_MS = 60_000;

/**
 * The policy at work: `onConsensus` picks the warm set and (re)starts the paced pass; `sweep`
 * (on a timer, or called by tests) closes idle links. Never in the way of circuits: a pass opens
 * one link at a time, skips relays already linked or being linked by an EXTEND2, and an EXTEND2
 * that needs a link the pass is opening waits for the same attempt.
 */
export class LinkWarmer<L> {
  private warm = new Set<string>();
  private generation = 0;
  private readonly failedAt = new Map<string, number>();
  /** Per link: when it was first seen without circuits, and its own jittered timeout. */
  private readonly idle = new Map<L, { since: number; timeoutMs: number }>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private passDone: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  /** What a follower waits beyond the leaders' pace before its own pass (tests shorten it). */
  followGraceMs = FOLLOW_GRACE_MS;

  constructor(private readonly host: WarmingHost<L>, readonly settings: LinkWarmingSettings, private readonly metrics: WarmingMetrics,
    o: { log?: Logger; now?: () => number; sleep?: (ms: number) => Promise<void> } = {}) {
    this.log = o.log ?? silentLogger;
    // SPEC.md §1.9: the retry hold-off and the idle timeout are durations, timed on the monotonic
    // clock: a wall clock stepped back would hold a failed relay (or an idle link) that much longer.
    this.now = o.now ?? (() => performance.now());
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms).unref()));
  }

  /** Milliseconds on a monotonic clock (tests inject their own). */
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  /** The current warm set (fingerprints). */
  get warmSet(): ReadonlySet<string> { return this.warm; }
  /** Relays whose last warming attempt failed and that are not retried yet (tests). */
  get failedCount(): number { return this.failedAt.size; }
  /** Resolves when the current pass has finished (tests). */
  get idlePass(): Promise<void> { return this.passDone; }

  /** Check idle links every min(60 s, timeout / 4). */
  start(): void {
    const every = Math.min(60_000, this.settings.idleTimeoutSeconds * 250);
    // sweep() handles each link's failure itself; this catch only keeps anything else from being an
    // unhandled rejection, which would end the relay.
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((e: unknown) => this.log.warn({ code: (e as { code?: string }).code }, 'idle link sweep failed'));
    }, every);
    this.sweepTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** A new verified consensus: choose the warm set and open what is missing, in the background. */
  onConsensus(relays: readonly ConsensusRelay[]): void {
    if (this.stopped) return;
    // A failure is remembered only to hold off a retry for WARM_RETRY_MS, and only for a relay
    // still listed: relays that failed and left the consensus do not pile up.
    const listed = new Set(relays.map((r) => r.fingerprint));
    const now = this.now();
    for (const [fp, at] of this.failedAt) if (!listed.has(fp) || now - at >= WARM_RETRY_MS) this.failedAt.delete(fp);
    // SPEC.md §1.9: a new consensus cancels the pass in progress, also one that leaves nothing to
    // warm (it does not list us, or no relay qualifies): the old pass must not go on opening links.
    const gen = ++this.generation;
    const self = this.host.self();
    // Only once the consensus lists us: before that no client extends through us, and a peer
    // would take our links for a client's (SPEC.md §7b.9).
    if (!relays.some((r) => r.fingerprint === self)) { this.warm = new Set(); this.metrics.warmSetSize(0); return; }
    this.warm = chooseWarmSet(relays, self, this.settings.maxLinks, (fp) => this.host.linkTo(fp) !== null);
    this.metrics.warmSetSize(this.warm.size);
    if (this.warm.size === 0) return;
    const byFp = new Map(relays.map((r) => [r.fingerprint, r]));
    const targets = [...this.warm].map((fp) => byFp.get(fp)!);
    // Of two relays that both warm, the one with the smaller fingerprint opens the link between
    // them; the other waits one pass for it and only then opens the link itself (a peer that does
    // not warm, or failed to reach us, is still linked, a little later).
    const lead = targets.filter((r) => self < r.fingerprint);
    const follow = targets.filter((r) => self > r.fingerprint);
    const graceMs = this.settings.paceMs * (lead.length + 4) + this.followGraceMs;
    this.passDone = this.pass(gen, lead).then(() => this.waitGrace(gen, graceMs)).then(() => this.pass(gen, follow));
  }

  private async waitGrace(gen: number, ms: number): Promise<void> {
    if (gen === this.generation) await this.sleep(ms);
  }

  private async pass(gen: number, targets: ConsensusRelay[]): Promise<void> {
    for (const r of targets) {
      if (gen !== this.generation || this.stopped) return;
      const fp = r.fingerprint;
      if (this.host.linkTo(fp) !== null || this.host.connecting(fp)) continue;
      const failed = this.failedAt.get(fp);
      if (failed !== undefined && this.now() - failed < WARM_RETRY_MS) continue;
      // Jittered pace: links from many relays that got the same consensus do not open in step.
      await this.sleep(this.settings.paceMs / 2 + randomInt(Math.max(1, this.settings.paceMs)));
      if (gen !== this.generation || this.stopped || this.host.linkTo(fp) !== null || this.host.connecting(fp)) continue;
      try {
        await this.host.open(r);
        this.failedAt.delete(fp);
        this.metrics.warmed('opened');
      } catch (e) {
        this.failedAt.set(fp, this.now());
        this.metrics.warmed('failed');
        this.log.debug({ code: (e as { code?: string }).code }, 'warming a relay link failed');
      }
    }
  }

  /**
   * Close the relay links this relay opened that carried no circuit for their idle timeout,
   * except the one link kept to each warm-set relay. Returns how many it closed (a link that an
   * EXTEND2 took while its receipt was being proposed stays open). A link whose closing fails
   * (its receipts before closing, SPEC.md §8.3 step 10) is logged and stays open; it is idle
   * again, from the next sweep on, and the other links are still closed.
   */
  async sweep(): Promise<number> {
    const now = this.now();
    const seen = new Set<L>();
    const closing: L[] = [];
    for (const { link, fp } of this.host.outboundLinks()) {
      seen.add(link);
      if (this.host.circuitsOn(link) > 0) { this.idle.delete(link); continue; }
      let st = this.idle.get(link);
      if (!st) {
        const t = this.settings.idleTimeoutSeconds * 1000;
        st = { since: now, timeoutMs: Math.round(t * 0.75 + randomInt(Math.max(1, Math.round(t / 2)))) };
        this.idle.set(link, st);
        continue;
      }
      if (now - st.since < st.timeoutMs) continue;
      if (this.warm.has(fp) && this.host.linkTo(fp) === link) continue; // the warm link itself stays
      closing.push(link);
    }
    for (const l of this.idle.keys()) if (!seen.has(l)) this.idle.delete(l);
    let closed = 0;
    for (const l of closing) {
      this.idle.delete(l);
      try {
        if (await this.host.closeIdle(l)) { closed++; this.metrics.idleClosed(); }
      } catch (e) {
        this.log.warn({ code: (e as { code?: string }).code }, 'closing an idle relay link failed');
      }
    }
    return closed;
  }
}
