// The client's view of the network over time (SPEC.md §6.8, §7b.11): the newest verified
// consensus, loaded from the disk cache at start, fetched from mirrors or authorities, and
// refreshed periodically; only a consensus inside its validity window is handed to path
// selection. (Arti splits this into tor-dirmgr and tor-netdir; one small class is enough here.)
import { consensusIfModifiedSince, isConsensusStale } from '../dir/consensus';
import path from 'node:path';
import { errorCode } from '../errors';
import type { AuthorityInfo } from '../dir/authorities';
import type { Fetcher } from '../dir/fetch';
import { fetchVerifiedConsensus, type ConsensusSource, type TunnelSource } from '../dir/consensus-fetch';
import { CONSENSUS_CACHE_FILE, isBetterConsensus, loadConsensusCache, saveConsensusCache } from '../dir/consensus-cache';
import type { ConsensusRelay, VerifiedConsensus } from '../dir/types';
import { isoTime, silentLogger, type Logger } from '../ops/log';
import { prom, type Registry } from '../ops/metrics';
import { shuffle } from '../crypto/primitives';


export interface DirKeeperOptions {
  authorities: AuthorityInfo[];
  /** Relay mirrors (base URLs) tried before the authorities. */
  mirrors?: string[];
  dataDir: string;
  /** Refresh interval; default a third of the consensus period, between 5 s and 10 min. */
  refreshMs?: number;
  now?: () => number;
  log?: Logger;
  registry?: Registry;
  /**
   * SPEC.md §6.10.1: the guards' mirrors over BEGIN_DIR. When it returns sources and a valid
   * consensus is in hand, refreshes use only them (never the authorities or configured mirrors).
   */
  guardSources?: () => TunnelSource[];
  /** How direct fetches declare themselves (SPEC.md §6.10.1); default client. */
  fetcher?: Fetcher;
  /**
   * SPEC.md §9.21.1: a hidden storage node. While it holds a valid consensus it never fetches
   * directly, not even when it has no guard yet or every guard mirror failed: it asks its guards'
   * mirrors, then `circuitSources` (relay mirrors over 3-hop circuits), and otherwise keeps the
   * consensus in hand until the next refresh. Only with no valid consensus (first bootstrap, or
   * the cached one expired) does it go direct.
   */
  tunnelOnly?: boolean;
  /** SPEC.md §9.21.1: relay mirrors over 3-hop circuits, asked after the guards' mirrors (tunnelOnly). */
  circuitSources?: () => TunnelSource[];
}

/**
 * SPEC.md §9.21.1: how long past its valid-until a cached consensus still lets a hidden node build
 * circuits to fetch a new one (Tor's "reasonably live" bound for bootstrapping from a cache).
 */
export const REASONABLY_LIVE_MS = 24 * 3_600_000;

export class DirKeeper {
  private current: VerifiedConsensus | null = null;
  /** tunnelOnly: the cached consensus when it had expired at start (less than REASONABLY_LIVE_MS ago). */
  private reasonablyLive: VerifiedConsensus | null = null;
  private timer: NodeJS.Timeout | null = null;
  private fetching: Promise<void> | null = null;
  /** validAfter of the consensus last reported as not fresh (one warning per consensus). */
  private staleWarned = -1;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly cacheFile: string;
  private guardSources: (() => TunnelSource[]) | null;
  /** How the last fetch went out: through guards, over 3-hop circuits to relay mirrors, direct (bootstrap), or none yet. */
  lastVia: 'guard' | 'circuit' | 'direct' | null = null;
  /** Fetches by way out (SPEC.md §6.10.1, §9.21.1); `none` when a tunnel-only keeper had no way but direct and did not go. */
  private readonly fetchCounter: InstanceType<typeof prom.Counter> | null = null;

  constructor(private readonly opts: DirKeeperOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? silentLogger;
    this.cacheFile = path.join(opts.dataDir, CONSENSUS_CACHE_FILE);
    this.guardSources = opts.guardSources ?? null;
    if (opts.registry) {
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const self = this;
      new prom.Gauge({
        name: 'bitcloud_consensus_age_seconds', help: 'Seconds since the valid-after time of the consensus in use (-1: none)',
        registers: [opts.registry], collect() { this.set(self.current ? (self.now() - self.current.validAfter) / 1000 : -1); },
      });
      this.fetchCounter = new prom.Counter({
        name: 'bitcloud_consensus_fetches_total', help: 'Consensus fetches by way out: guard, circuit (relay mirror over 3 hops), direct (bootstrap), none (nothing to ask)',
        labelNames: ['via'], registers: [opts.registry],
      });
    }
  }

  /** The consensus in use, if it is still valid. */
  consensus(): VerifiedConsensus | null {
    const c = this.current;
    return c && this.now() <= c.validUntil ? c : null;
  }

  relays(): readonly ConsensusRelay[] | null {
    return this.consensus()?.relays ?? null;
  }

  /**
   * SPEC.md §9.21.1: the relays a hidden node builds its directory circuits from: those of the
   * valid consensus, else (tunnelOnly) of a cached one expired less than REASONABLY_LIVE_MS ago.
   */
  tunnelRelays(): readonly ConsensusRelay[] | null {
    return this.relays() ?? this.liveEnough()?.relays ?? null;
  }

  private liveEnough(): VerifiedConsensus | null {
    // The consensus in hand once it expired (the node ran on), or the one expired in the cache at start.
    const c = this.current ?? this.reasonablyLive;
    if (!this.opts.tunnelOnly || !c || this.now() - c.validUntil > REASONABLY_LIVE_MS) return null;
    return c;
  }

  /**
   * Load the cache, then fetch: in the background when the cache gave a valid consensus,
   * otherwise waiting for the first fetch. Then refresh periodically.
   */
  async start(): Promise<void> {
    // A hidden node (tunnelOnly) also takes a cached consensus expired less than REASONABLY_LIVE_MS ago.
    const cached = await loadConsensusCache(this.cacheFile, this.opts.authorities, this.now(), this.opts.tunnelOnly ? REASONABLY_LIVE_MS : 0);
    if (cached.consensus) this.current = cached.consensus;
    else this.reasonablyLive = cached.expired ?? null;
    const first = this.refresh();
    if (!this.consensus()) await first;
    this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Fetch through guards from now on (SPEC.md §6.10.1); set before start() to never go direct with a valid cache. */
  useGuards(sources: () => TunnelSource[]): void {
    this.guardSources = sources;
  }

  /** Fetch now (one fetch at a time); keeps the better of what it has and what it got. */
  refresh(): Promise<void> {
    this.fetching ??= this.fetchOnce().finally(() => { this.fetching = null; });
    return this.fetching;
  }

  private async fetchOnce(): Promise<void> {
    // SPEC.md §6.10.1: with a valid consensus and a guard, only the guards' mirrors are asked; a
    // stale or unreachable one is followed by the next guard, and when all fail the consensus in
    // hand is kept until the next refresh. Only without either (bootstrap, or the consensus
    // expired) does the client contact configured mirrors and authorities directly; a hidden
    // node (tunnelOnly) only without a valid consensus.
    const held = this.consensus() !== null;
    // SPEC.md §9.21.1: a hidden node with a valid consensus never goes direct: when its guards'
    // mirrors gave nothing (none, all down, all stale), relay mirrors over 3-hop circuits are next.
    // With only a reasonably live one (expired, cached) it tries both before a direct bootstrap.
    const live = this.opts.tunnelOnly === true && (held || this.liveEnough() !== null);
    const viaGuards = held || live ? this.guardSources?.() ?? [] : [];
    const stages: { via: 'guard' | 'circuit' | 'direct'; sources: () => ConsensusSource[] }[] = [];
    if (viaGuards.length > 0) stages.push({ via: 'guard', sources: () => viaGuards });
    if (live) stages.push({ via: 'circuit', sources: () => this.opts.circuitSources?.() ?? [] });
    if (this.opts.tunnelOnly ? !held : viaGuards.length === 0) {
      stages.push({ via: 'direct', sources: () => [...(this.opts.mirrors ?? []), ...shuffle(this.opts.authorities.map((a) => a.url))] });
    }
    let asked = false;
    try {
      for (const stage of stages) {
        const sources = stage.sources();
        if (sources.length === 0) continue;
        asked = true;
        this.fetchCounter?.inc({ via: stage.via });
        const r = await fetchVerifiedConsensus(sources, this.opts.authorities, {
          now: this.now, have: this.current, ifModifiedSince: this.current ? consensusIfModifiedSince(this.current) : undefined, timeoutMs: 10_000, fetcher: this.opts.fetcher ?? 'client',
        });
        this.lastVia = stage.via;
        for (const f of r.failures) this.log.debug({ source: f.source, code: f.code }, 'consensus source refused');
        if (r.consensus && isBetterConsensus(this.current, r.consensus)) {
          this.current = r.consensus;
          this.log.info({ validAfter: isoTime(r.consensus.validAfter), relays: r.consensus.relays.length, via: stage.via }, 'new consensus');
          await saveConsensusCache(this.cacheFile, r.consensus).catch((e) => this.log.warn({ err: (e as Error).message }, 'could not save the consensus'));
          break;
        }
        if (stage.via !== 'direct' && r.notModified.length === 0) {
          // Every mirror of this stage down or stale: the next stage, else keep the one in hand.
          if (r.consensus) this.log.debug({ via: stage.via }, 'the mirrors had nothing newer');
          else this.log.warn({ failures: r.failures.length, via: stage.via }, 'no mirror gave a consensus; keeping the one in hand, retrying later');
          continue;
        }
        if (!this.current) this.log.warn({ failures: r.failures.length }, 'no valid consensus yet; will retry');
        break; // nothing newer to be had (304 or stale): the next stage would answer the same
      }
      if (!asked) {
        this.fetchCounter?.inc({ via: 'none' });
        this.log.warn('no guard mirror and no relay mirror to fetch the consensus through; keeping the one in hand, retrying later');
      }
    } catch (e) {
      this.log.warn({ code: errorCode(e) }, 'consensus fetch failed');
    }
    this.noteStale();
  }

  /**
   * SPEC.md §6.8: a period past fresh-until with nothing newer to be had (e.g. the authorities cannot reach
   * a majority), the client keeps using the last valid consensus until valid-until, and says so
   * once per consensus (bitcloud_consensus_age_seconds shows the age meanwhile).
   */
  private noteStale(): void {
    const c = this.current;
    // A whole period past fresh-until: a consensus was missed, not merely not fetched yet.
    if (!c || !isConsensusStale(c, this.now()) || this.staleWarned === c.validAfter) return;
    this.staleWarned = c.validAfter;
    const expired = this.now() > c.validUntil;
    this.log.warn({ validAfter: isoTime(c.validAfter), validUntil: isoTime(c.validUntil) },
      expired ? 'the last consensus has expired and no newer one is available' : 'no fresh consensus available: using the last valid one until it expires');
  }

  private schedule(): void {
    const period = this.current ? this.current.periodSeconds * 1000 : 0;
    const ms = this.opts.refreshMs ?? (this.consensus() ? Math.min(600_000, Math.max(5_000, period / 3)) : 5_000);
    this.timer = setTimeout(() => {
      // Fire and forget: refresh() never rejects (fetchOnce logs its own failures).
      void this.refresh().finally(() => { if (this.timer) this.schedule(); });
    }, ms);
    this.timer.unref();
  }
}

