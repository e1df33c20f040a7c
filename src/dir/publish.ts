// SPEC.md §6.4: a relay or storage node signs a fresh descriptor and uploads it to every
// authority, at start and every publish interval; failed uploads are retried sooner (an
// authority may be restarting). Both waits are randomized (§6.10 "Descriptor upload timing") so
// that nodes which started together, or were refused together, do not stay in step. Shared by
// relay/ and storage/.
import { errorCode } from '../errors';
import type { Logger } from '../ops/log';
import type { AuthorityInfo } from './authorities';
import { errorBodyReason, httpRequest, PATHS, type HttpResponse } from './fetch';

export interface UploadResult {
  authority: string; ok: boolean; detail: string;
  /**
   * The code of a refusal (a 4xx but 429) known to be the authority's own: its answer to a direct
   * upload, or through a mirror an entry whose nack verified (SPEC.md §9.21.8 "Refusals"). Only
   * this code makes the publisher act on an IDENTITY_POW_* refusal (§6.4.1); a code a mirror
   * reports beside 0, 429 or a 5xx is its unsigned word and does not.
   */
  refused?: string;
}

/** The error code of a direct answer that refuses the upload (a 4xx but 429), else undefined. */
function refusalCode(r: HttpResponse): string | undefined {
  if (r.status < 400 || r.status >= 500 || r.status === 429) return undefined;
  try {
    const j = JSON.parse(r.body.toString('utf8')) as { code?: unknown };
    return typeof j?.code === 'string' ? j.code : undefined;
  } catch { return undefined; /* not JSON */ }
}

/** POST one descriptor to one authority. */
export async function uploadDescriptor(a: AuthorityInfo, raw: Buffer, timeoutMs = 10_000): Promise<UploadResult> {
  try {
    const r = await httpRequest(a.url + PATHS.descriptor, { method: 'POST', body: raw, maxBytes: 64 * 1024, timeoutMs });
    if (r.status === 200) return { authority: a.name, ok: true, detail: 'accepted' };
    const refused = refusalCode(r);
    return { authority: a.name, ok: false, detail: errorBodyReason(r), ...(refused ? { refused } : {}) };
  } catch (e) {
    return { authority: a.name, ok: false, detail: `${errorCode(e)}: ${(e as Error).message}` };
  }
}

/**
 * Keeps every authority holding a current descriptor. `build` signs a new one (new published
 * time) on each full round; authorities that failed are retried with the same descriptor.
 */
export class DescriptorPublisher {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastRaw: Buffer | null = null;
  /** When the next full round is due: drawn once per full round (intervalDelayMs). */
  private nextFullAt = 0;
  private failed = new Set<string>();
  private powRefused = false;
  /** The next round signs a new descriptor and uploads it to every authority (republishNow). */
  private fullNext = false;
  /** SPEC.md §6.10 "Descriptor upload timing": one round at a time; the round under way, … */
  private running: Promise<UploadResult[]> | null = null;
  /** …and the one asked for while it runs, which starts when it ends (one, however often asked). */
  private queued: Promise<UploadResult[]> | null = null;

  constructor(
    private readonly authorities: readonly AuthorityInfo[],
    private readonly build: () => Buffer | Promise<Buffer>,
    private readonly log: Logger,
    private readonly opts: {
      intervalMs: number; retryMs: number; now?: () => number;
      /** Upload to these authorities some other way (a hidden node: through a mirror, SPEC.md §9.21.8). Default: POST to each. */
      upload?: (targets: readonly AuthorityInfo[], raw: Buffer) => Promise<UploadResult[]>;
      /** Called when an authority refused the identity proof as IDENTITY_POW_STALE, before the next build. */
      onPowStale?: () => void;
      /** Uniform in [0, 1); tests pass their own. Default Math.random (timing only, not a secret). */
      random?: () => number;
    },
  ) {}

  start(): void { void this.run(); }

  stop(): void {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }

  /**
   * Publish to everyone now with a freshly signed descriptor. During a round (whose build may
   * mine an identity proof for a long time) it is the round right after that one.
   */
  async republishNow(): Promise<UploadResult[]> {
    this.fullNext = true;
    return this.run();
  }

  /** SPEC.md §6.10 "Descriptor upload timing": one round at a time; none after stop(). */
  private run(): Promise<UploadResult[]> {
    if (this.stopped) return Promise.resolve([]);
    if (this.running) {
      this.queued ??= this.running.catch(() => {}).then(() => { this.queued = null; return this.run(); });
      return this.queued;
    }
    const round = this.round().finally(() => { if (this.running === round) this.running = null; });
    this.running = round;
    return round;
  }

  /** The next round in `ms` (the only timer: a new one replaces it). */
  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = this.stopped ? null : setTimeout(() => { this.timer = null; void this.run(); }, Math.max(100, ms));
  }

  private async round(): Promise<UploadResult[]> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const now = (this.opts.now ?? Date.now)();
    // A refused identity proof (SPEC.md §6.4.1) is not retried as is: the next descriptor carries a new one.
    const full = this.fullNext || !this.lastRaw || now >= this.nextFullAt || this.failed.size === 0 || this.powRefused;
    if (full) {
      this.fullNext = false;
      try {
        this.lastRaw = await this.build();
      } catch (e) {
        this.log.warn({ code: errorCode(e), err: (e as Error).message }, 'building the descriptor failed');
        this.schedule(retryDelayMs(this.retryBaseMs(), this.random()));
        return [];
      }
      if (this.stopped) return [];
      this.nextFullAt = now + intervalDelayMs(this.opts.intervalMs, this.random());
    }
    const targets = full ? this.authorities : this.authorities.filter((a) => this.failed.has(a.fingerprint));
    const raw = this.lastRaw!;
    const results: UploadResult[] = this.opts.upload
      ? await this.opts.upload(targets, raw).catch((e: unknown) => targets.map((a) => ({ authority: a.name, ok: false, detail: `${errorCode(e)}: ${(e as Error).message}` })))
      : await Promise.all(targets.map((a) => uploadDescriptor(a, raw)));
    this.failed = new Set(targets.filter((_, i) => !results[i].ok).map((a) => a.fingerprint));
    // SPEC.md §6.4.1: only a refusal known to be the authority's (`refused`: a direct 4xx, or a
    // mirror's entry with a verified nack, §9.21.8) signs a new descriptor or, for
    // IDENTITY_POW_STALE, mines a new proof; a code a mirror reports beside 0, 429 or a 5xx is
    // its unsigned word, and such an upload is only retried. IDENTITY_POW_BUSY (503, the
    // authority's queue of proofs to check is full) judged no proof: the same descriptor is
    // retried after the usual retry wait.
    this.powRefused = results.some((r) => !r.ok && r.refused?.startsWith('IDENTITY_POW_') === true);
    if (results.some((r) => !r.ok && r.refused === 'IDENTITY_POW_STALE')) this.opts.onPowStale?.();
    for (const r of results) {
      if (r.ok) this.log.debug({ authority: r.authority }, 'descriptor uploaded');
      else this.log.warn({ authority: r.authority, reason: r.detail }, 'descriptor upload failed');
    }
    if (full) {
      const accepted = results.filter((r) => r.ok).length;
      if (accepted > 0) this.log.info({ accepted, authorities: targets.length }, 'descriptor published');
      else this.log.warn({ accepted, authorities: targets.length }, 'descriptor refused by every authority; will retry');
    }
    if (!this.stopped) {
      // A retry due after the next full round is that round (one upload per authority, not two).
      const untilFull = this.nextFullAt - now;
      this.schedule(this.failed.size ? Math.min(retryDelayMs(this.retryBaseMs(), this.random()), untilFull) : untilFull);
    }
    return results;
  }

  /** A retry (a refused upload, or a descriptor that failed to build) never waits longer than a publish interval would. */
  private retryBaseMs(): number { return Math.min(this.opts.retryMs, this.opts.intervalMs); }

  private random(): number { return (this.opts.random ?? Math.random)(); }
}

/**
 * SPEC.md §6.10 "Descriptor upload timing": a failed upload is retried after a random wait in
 * [retry/2, 3·retry/2), so that nodes refused together (an authority restarting, a shared
 * address's upload bucket drained) come back spread out rather than all at once, round after
 * round. The mean stays `retry`: a refusing authority sees no more retries than without the jitter.
 */
export function retryDelayMs(retryMs: number, u: number): number {
  return retryMs / 2 + retryMs * u;
}

/**
 * SPEC.md §6.10 "Descriptor upload timing": the next full round comes at a random point in the
 * last tenth of the publish interval (never later than the interval, which the descriptor's
 * lifetime is sized for), so that nodes started together drift apart.
 */
export function intervalDelayMs(intervalMs: number, u: number): number {
  return intervalMs - (intervalMs / 10) * u;
}
