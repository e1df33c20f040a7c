// SPEC.md §6.10: a relay mirrors the consensus so clients need not all ask the authorities.
// It fetches from the authorities (If-Modified-Since), verifies exactly as a client does,
// keeps the newest valid one on disk, and serves it on its directory port, sealed again from
// what it verified (canonicalConsensus).
import { isConsensusStale } from '../src/dir/consensus';
import path from 'node:path';
import { isoTime, type Logger } from '../src/ops/log';
import type { AuthorityInfo } from '../src/dir/authorities';
import { fetchVerifiedConsensus } from '../src/dir/consensus-fetch';
import { CONSENSUS_CACHE_FILE, isBetterConsensus, loadConsensusCache, saveConsensusCache } from '../src/dir/consensus-cache';
import { servedConsensus, type ServedDocument } from '../src/dir/http-serve';
import { shuffle } from '../src/crypto/primitives';
import type { VerifiedConsensus } from '../src/dir/types';
import { decodeEnvelope, LIMITS } from '../src/wire/docs';
import { sealEnvelope } from '../src/wire/envelope';
import { prom, type Registry } from '../src/ops/metrics';

/**
 * SPEC.md §7b.3 item 2, §6.10: an EXTEND2 to an identity (or address) the consensus held does not
 * list fetches the consensus out of schedule, at most once in this long, so a flood of EXTEND2s
 * to made-up identities costs one fetch per interval.
 */
export const EXTEND_MISS_FETCH_INTERVAL_MS = 10_000;
/** SPEC.md §7b.3 item 2: how long an EXTEND2 waits for that fetch before it is refused. */
export const EXTEND_MISS_DEADLINE_MS = 5_000;

/** Why the mirror fetched the consensus: its schedule, or an EXTEND2 its consensus did not list. */
export type ConsensusFetchReason = 'schedule' | 'extend_miss';

/**
 * The order a mirror asks the authorities in: a uniform shuffle from the CSPRNG, so that every
 * authority is asked first equally often and the load spreads (a sort with a random comparator
 * is biased, and constant under a fixed Math.random).
 */
export function authorityFetchOrder(authorities: readonly AuthorityInfo[]): string[] {
  return shuffle([...authorities]).map((a) => a.url);
}

/**
 * SPEC.md §6.10 "Mirrors serve what they verified": the consensus a mirror keeps and serves is its
 * envelope sealed again from the fields it decoded and verified (the signed body, the signatures
 * and the certificates, in canonical order), not the bytes as they came. Protobuf decoding skips
 * fields it does not know, so an upstream (or anyone on the path to it) could otherwise pad a
 * valid consensus with up to 16 MiB of unknown fields, and every client of the mirror would fetch
 * that. Every signature and certificate is kept, known to this mirror's authority list or not (a
 * client with another list may count it), so an upstream can still add up to the envelope's 32 of
 * each: bounded, not removed. An envelope already canonical comes back as it is.
 */
export function canonicalConsensus(c: VerifiedConsensus): VerifiedConsensus {
  const env = decodeEnvelope(c.envelopeBytes, LIMITS.consensusBytes);
  const raw = sealEnvelope(env.body, env.signatures, env.certificates);
  return raw.equals(c.envelopeBytes) ? c : { ...c, envelopeBytes: raw };
}

export class ConsensusMirror {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failing = false;
  /** validAfter of the consensus last reported as not fresh (one warning per consensus). */
  private staleWarned = -1;
  private cur: { info: VerifiedConsensus; served: ServedDocument } | null = null;
  private readonly listeners: ((c: VerifiedConsensus) => void)[] = [];
  /** The fetch under way (scheduled or out of schedule): concurrent callers share it. */
  private inFlight: Promise<void> | null = null;
  /** When the last out-of-schedule fetch for an EXTEND2 miss began (Date.now ms). */
  private lastMissFetch = -Infinity;
  private readonly fetches?: prom.Counter<'reason'>;

  constructor(
    private readonly authorities: readonly AuthorityInfo[],
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly intervalMs: number,
    registry?: Registry,
  ) {
    if (registry) {
      this.fetches = new prom.Counter({
        name: 'bitcloud_relay_consensus_fetches_total', help: 'Consensus fetches of the relay mirror by reason: schedule, extend_miss (an EXTEND2 target its consensus did not list, SPEC.md §7b.3)',
        labelNames: ['reason'], registers: [registry],
      });
    }
  }

  /** The newest verified consensus, or null. Consumers (circuit code) read it from here. */
  get current(): VerifiedConsensus | null { return this.cur?.info ?? null; }
  get served(): ServedDocument | null { return this.cur?.served ?? null; }

  /** Called with each newer consensus. */
  onConsensus(f: (c: VerifiedConsensus) => void): void { this.listeners.push(f); }

  async start(): Promise<void> {
    const cached = await loadConsensusCache(path.join(this.dataDir, CONSENSUS_CACHE_FILE), this.authorities, Date.now());
    if (cached.consensus) this.install(cached.consensus, cached.savedAt, false);
    void this.poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private install(fetched: VerifiedConsensus, at: number, save: boolean): void {
    const c = canonicalConsensus(fetched);
    this.cur = { info: c, served: servedConsensus(c.envelopeBytes, c, at) };
    if (save) void saveConsensusCache(path.join(this.dataDir, CONSENSUS_CACHE_FILE), c).catch((e) => this.log.warn({ err: e.message }, 'saving consensus failed'));
    for (const f of this.listeners) f(c);
  }

  /**
   * SPEC.md §7b.3 item 2: an EXTEND2 named a target the consensus held does not list (or lists
   * at another address). Fetch the consensus now — the same conditional fetch as the schedule's,
   * verified and installed as usual — and resolve once it is done, or after `deadlineMs`
   * (the fetch itself goes on). A fetch already under way is joined; otherwise at most one such
   * fetch begins per EXTEND_MISS_FETCH_INTERVAL_MS, and a miss inside that resolves at once.
   */
  refreshForExtend(deadlineMs = EXTEND_MISS_DEADLINE_MS): Promise<void> {
    if (this.stopped) return Promise.resolve();
    let p = this.inFlight;
    if (!p) {
      const now = Date.now();
      if (now - this.lastMissFetch < EXTEND_MISS_FETCH_INTERVAL_MS) return Promise.resolve();
      this.lastMissFetch = now;
      p = this.fetchNow('extend_miss');
    }
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, deadlineMs);
      t.unref?.();
      void p.finally(() => { clearTimeout(t); resolve(); });
    });
  }

  /** One conditional fetch from the authorities; callers while it runs share it. Never rejects. */
  private fetchNow(reason: ConsensusFetchReason): Promise<void> {
    if (this.inFlight) return this.inFlight;
    this.fetches?.inc({ reason });
    const p = this.fetchOnce().finally(() => { if (this.inFlight === p) this.inFlight = null; });
    this.inFlight = p;
    return p;
  }

  private async fetchOnce(): Promise<void> {
    try {
      const sources = authorityFetchOrder(this.authorities);
      const have = this.current;
      // SPEC.md §6.10: the time it took this one in, at most its fresh_until: an authority that adds
      // signatures republishes before then and dates the fuller one later; the next one is later still.
      const r = await fetchVerifiedConsensus(sources, this.authorities, { have, ifModifiedSince: this.cur?.served.lastModified, timeoutMs: 10_000, fetcher: 'mirror' });
      if (r.consensus && isBetterConsensus(have, r.consensus)) {
        this.install(r.consensus, Date.now(), true);
        this.log.info({ validAfter: isoTime(r.consensus.validAfter), relays: r.consensus.relays.length, signers: r.consensus.signers.length }, 'consensus mirrored');
      } else if (!r.consensus && r.failures.length === sources.length) {
        // Once per outage at warn; repeats at debug.
        this.log[this.failing ? 'debug' : 'warn']({ failures: r.failures.map((f) => f.code) }, 'no authority gave a valid consensus');
        this.failing = true;
      }
      if (r.consensus || r.notModified.length) this.failing = false;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'consensus poll failed');
    }
  }

  private async poll(): Promise<void> {
    await this.fetchNow('schedule');
    // SPEC.md §6.8: a whole period past fresh-until with nothing newer (a consensus was missed, not
    // merely not fetched yet), keep serving the last valid consensus and say so.
    const c = this.cur?.info;
    if (c && isConsensusStale(c, Date.now()) && this.staleWarned !== c.validAfter) {
      this.staleWarned = c.validAfter;
      this.log.warn({ validAfter: isoTime(c.validAfter), validUntil: isoTime(c.validUntil) },
        Date.now() > c.validUntil ? 'the last consensus has expired and no newer one is available' : 'no fresh consensus available: serving the last valid one until it expires');
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.poll(), this.nextPollDelay(Date.now()));
  }

  /**
   * SPEC.md §6.10: poll again only when something new can be there. While the consensus held
   * lacks signatures of some authorities (they may still add theirs) or there is none, every
   * interval; once it is complete, not before its fresh-until (when the next one is due), plus a
   * random spread of up to one interval so mirrors do not all ask at once. Past fresh-until,
   * every interval until the next one arrives. Each poll is a conditional request.
   */
  nextPollDelay(now: number): number {
    const c = this.current;
    if (!c || c.signers.length < this.authorities.length) return this.intervalMs;
    const due = c.freshUntil + Math.floor(Math.random() * this.intervalMs);
    return Math.max(this.intervalMs, due - now);
  }
}
