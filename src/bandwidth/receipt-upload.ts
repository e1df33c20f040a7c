// SPEC.md §8.4: both ends of a receipt upload it to every authority once the epoch it names has
// ended, in batches of 224-byte records, retried with backoff on transport errors and 5xx until
// the epoch's upload window [e·P, (e+2)·P) closes. RECEIPT_REPLAYED means delivered (uploads are
// idempotent); any other refusal is final for that record at that authority, except the
// authority's rate limit (429 RATE_LIMITED) and its read timeout (408 RECEIPT_UPLOAD_TIMEOUT),
// which are retried like a 5xx (SPEC.md §8.4.1).
// Relays and storage nodes both run it (src/ because relay/ and storage/ share nothing else).
import { err, errorCode } from '../errors';
import { httpRequest, type HttpResponse } from '../dir/fetch';
import { silentLogger, type Logger } from '../ops/log';
import { encodeReceipt, type Receipt } from './receipt';
import { ReceiptMetrics } from './receipt-metrics';

/** SPEC §6.10 / §8.4: the receipts endpoint of an authority. */
export const RECEIPT_UPLOAD_PATH = '/bitcloud/receipts';
/**
 * Records per request: SPEC §8.4 allows at most 10 000 (2.24 MB; an authority answers more with
 * 413); a node with more splits them over several requests.
 */
export const DEFAULT_UPLOAD_BATCH = 10_000;

export interface UploadAuthority { fingerprint: string; url: string }

export interface ReceiptUploaderOptions {
  authorities: () => readonly UploadAuthority[];
  /** The consensus period P in seconds, or null before this node holds a consensus. */
  periodSeconds: () => number | null;
  now?: () => number;
  /** Backoff after a transport error, a 5xx or a 429 RATE_LIMITED: doubles from min to max, with jitter. */
  retryMinMs?: number;
  retryMaxMs?: number;
  maxBatch?: number;
  timeoutMs?: number;
  /**
   * SPEC.md §8.4.1: the first upload of an epoch to an authority waits a random delay in
   * [0, min(startJitterMs, P/4)] after the epoch ends. Default UPLOAD_START_JITTER_MS.
   */
  startJitterMs?: number;
  /** Uniform in [0, 1) (tests may substitute); default Math.random. */
  random?: () => number;
  metrics?: ReceiptMetrics;
  log?: Logger;
  /** The HTTP POST (tests may substitute); default src/dir/fetch.ts httpRequest. */
  post?: (url: string, body: Buffer, timeoutMs: number) => Promise<HttpResponse>;
}

/**
 * SPEC.md §8.4.1: the most an epoch's first upload to an authority waits after the epoch ended
 * (capped at P/4), so that the nodes behind one address, or a whole network, do not all upload in
 * the same second and drain an authority's rate limit or its verification slots.
 */
export const UPLOAD_START_JITTER_MS = 60_000;

const PENDING = 0, DELIVERED = 1, REFUSED = 2, EXPIRED = 3;

interface AuthorityState {
  status: number[]; nextTryAt: number; failures: number; busy: boolean;
  /** Where in [0, min(startJitterMs, P/4)] this epoch's first upload here starts (a fraction). */
  startAt: number;
}

interface EpochState {
  epoch: number;
  records: Buffer[];
  byAuthority: Map<string, AuthorityState>;
  /** Window closed: records dropped, counts kept for the status file. */
  closed: boolean;
}

/** Per-epoch upload status as bandwidth.json shows it. */
export interface EpochUploadStatus {
  receipts: number;
  /** Authority fingerprint → records delivered there (accepted or replayed). */
  uploaded: Record<string, number>;
  /** Authority fingerprint → records refused there (final). */
  refused: Record<string, number>;
  /** Record·authority pairs still to deliver. */
  pending: number;
  /** Record·authority pairs given up when the window closed. */
  expired: number;
}

const KEEP_EPOCHS = 48;

/**
 * SPEC.md §6.10: what an authority's answer to a receipt upload of `count` records says about each
 * record: undefined (accepted) or its refusal. The body is JSON from the network: anything that is
 * not an object with the documented fields is judged by the status alone.
 */
export function uploadRefusals(status: number, body: Buffer, count: number): ({ code: string; reason?: string } | undefined)[] {
  let j: { accepted?: number; refused?: { index: number; code: string; reason?: string }[]; code?: string; reason?: string } = {};
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (parsed !== null && typeof parsed === 'object') j = parsed as typeof j;
  } catch { /* judged by status alone */ }
  const refusedAt = new Map<number, { code: string; reason?: string }>();
  let all: { code: string; reason?: string } | null = null;
  if (Array.isArray(j.refused)) {
    for (const r of j.refused) {
      if (r && Number.isInteger(r.index) && r.index >= 0 && r.index < count) refusedAt.set(r.index, r);
      else if (r && r.index === -1) all = r; // the batch as a whole
    }
  } else if (status !== 200) {
    all = { code: typeof j.code === 'string' ? j.code : `HTTP_${status}`, reason: j.reason };
  }
  return Array.from({ length: count }, (_, k) => all ?? refusedAt.get(k));
}

/**
 * SPEC.md §8.4.1: a 200 judges the records only with the JSON upload answer
 * `{"accepted": n, "refused": [...]}`. Returns why `body` is not that answer (a web page from a
 * mistyped authority URL, a proxy's page), or null when it is.
 */
export function notAnUploadAnswer(body: Buffer): string | null {
  let j: unknown;
  try { j = JSON.parse(body.toString('utf8')); } catch { return 'the body is not JSON'; }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) return 'the body is not a JSON object';
  const o = j as { accepted?: unknown; refused?: unknown };
  if (!Number.isInteger(o.accepted) || !Array.isArray(o.refused)) return 'the body has no "accepted" count or no "refused" list';
  return null;
}

/**
 * SPEC.md §8.4.1: an answer that says "later" rather than judging the records: a 5xx, a 408 (the
 * authority timed out reading the body, RECEIPT_UPLOAD_TIMEOUT: like 503 RECEIPT_BUSY, it judged
 * no record), or a 429 that is not a refusal of the records themselves (the authority's rate
 * limit, RATE_LIMITED; a 429 `RECEIPT_TOO_MANY` or a 429 with a `refused` list judges them and is
 * settled as any 4xx).
 */
export function retryLater(status: number, body: Buffer): boolean {
  if (status >= 500 || status === 408) return true;
  if (status !== 429) return false;
  try {
    const j: unknown = JSON.parse(body.toString('utf8'));
    if (j !== null && typeof j === 'object') {
      const o = j as { code?: unknown; refused?: unknown };
      if (Array.isArray(o.refused) || o.code === 'RECEIPT_TOO_MANY') return false;
    }
  } catch { /* no JSON: the rate limit of some server on the way */ }
  return true;
}

export class ReceiptUploader {
  private readonly epochs = new Map<number, EpochState>();
  private readonly log: Logger;
  private readonly metrics: ReceiptMetrics;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private pumping: Promise<void> | null = null;

  constructor(private readonly o: ReceiptUploaderOptions) {
    this.log = o.log ?? silentLogger;
    this.metrics = o.metrics ?? new ReceiptMetrics();
    this.now = o.now ?? Date.now;
  }

  /** Hold a countersigned receipt for upload after its epoch ends. */
  add(r: Receipt): void {
    const e = this.epochOf(r.body.epoch);
    if (e.closed) { this.metrics.upload('expired', this.authorityCount()); return; }
    e.records.push(encodeReceipt(r));
    for (const a of e.byAuthority.values()) a.status.push(PENDING);
  }

  /** Records not yet delivered to every authority, with their epochs' windows still open (to persist at shutdown). */
  held(): Buffer[] {
    const out: Buffer[] = [];
    for (const e of this.epochs.values()) {
      if (e.closed) continue;
      e.records.forEach((rec, i) => { if (this.stateFor(e).some((a) => a.status[i] === PENDING)) out.push(rec); });
    }
    return out;
  }

  get heldCount(): number { return this.held().length; }

  status(epoch: number): EpochUploadStatus | null {
    const e = this.epochs.get(epoch);
    if (!e) return null;
    const out: EpochUploadStatus = { receipts: e.records.length, uploaded: {}, refused: {}, pending: 0, expired: 0 };
    for (const [fp, a] of this.withAuthorities(e)) {
      out.uploaded[fp] = a.status.filter((s) => s === DELIVERED).length;
      out.refused[fp] = a.status.filter((s) => s === REFUSED).length;
      out.pending += a.status.filter((s) => s === PENDING).length;
      out.expired += a.status.filter((s) => s === EXPIRED).length;
    }
    return out;
  }

  /** Try what is due every `intervalMs` (default 1 s). */
  start(intervalMs = 1000): void {
    if (this.timer) return;
    const tick = () => { void this.pump().finally(() => { if (this.timer) { this.timer = setTimeout(tick, intervalMs); this.timer.unref(); } }); };
    this.timer = setTimeout(tick, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    await this.pumping;
  }

  /** One round: every (ended epoch, authority) that is due gets one batch. Tests call it directly. */
  pump(): Promise<void> {
    this.pumping ??= this.round().finally(() => { this.pumping = null; });
    return this.pumping;
  }

  private async round(): Promise<void> {
    const P = this.o.periodSeconds();
    if (!P) return;
    const now = this.now();
    const jobs: Promise<void>[] = [];
    for (const e of [...this.epochs.values()].sort((a, b) => a.epoch - b.epoch)) {
      if (e.closed) continue;
      const opens = (e.epoch + 1) * P * 1000; // after the epoch it names has ended
      const closes = (e.epoch + 2) * P * 1000;
      if (now >= closes) { this.closeWindow(e); continue; }
      if (now < opens) continue;
      const jitter = Math.min(this.o.startJitterMs ?? UPLOAD_START_JITTER_MS, P * 250); // ≤ P/4, ms
      for (const [fp, a] of this.withAuthorities(e)) {
        if (a.busy || now < a.nextTryAt || now < opens + Math.floor(a.startAt * jitter)) continue;
        const url = this.o.authorities().find((x) => x.fingerprint === fp)?.url;
        if (!url) continue;
        const idx: number[] = [];
        for (let i = 0; i < a.status.length && idx.length < (this.o.maxBatch ?? DEFAULT_UPLOAD_BATCH); i++) if (a.status[i] === PENDING) idx.push(i);
        if (idx.length === 0) continue;
        jobs.push(this.send(e, fp, url, a, idx));
      }
    }
    this.prune();
    await Promise.all(jobs);
  }

  private async send(ep: EpochState, fp: string, url: string, a: AuthorityState, idx: number[]): Promise<void> {
    a.busy = true;
    const body = Buffer.concat(idx.map((i) => ep.records[i]));
    const timeoutMs = this.o.timeoutMs ?? 10_000;
    try {
      const res = await (this.o.post ?? defaultPost)(url + RECEIPT_UPLOAD_PATH, body, timeoutMs);
      // SPEC.md §8.4.1: a 5xx or the authority's rate limit keeps every record pending here.
      if (retryLater(res.status, res.body)) throw err('DIR_FETCH_FAILED', `${url}: HTTP ${res.status}`, { status: res.status });
      // A 200 without the upload answer judged nothing: the records stay pending, as after a 5xx.
      const bad = res.status === 200 ? notAnUploadAnswer(res.body) : null;
      if (bad !== null) {
        this.log.warn({ authority: fp, epoch: ep.epoch, records: idx.length, reason: bad, contentType: res.headers['content-type'] },
          'receipt upload answered 200 without the upload answer (is the authority URL right?); will retry');
        throw err('DIR_FETCH_FAILED', `${url}: HTTP 200 but ${bad}`, { status: res.status });
      }
      this.metrics.attempt('answered');
      this.settle(ep, fp, a, idx, res);
      a.failures = 0;
    } catch (e) {
      const code = errorCode(e);
      const status = (e as { detail?: { status?: number } }).detail?.status;
      this.metrics.attempt(status === 429 ? 'rate_limited' : status === 200 ? 'bad_answer' : status !== undefined ? 'http_5xx' : 'transport');
      a.failures++;
      const min = this.o.retryMinMs ?? 1000, max = this.o.retryMaxMs ?? 60_000;
      const backoff = Math.min(max, min * 2 ** Math.min(a.failures - 1, 20));
      a.nextTryAt = this.now() + Math.floor(backoff * (0.5 + Math.random() / 2));
      this.log.debug({ authority: fp, epoch: ep.epoch, records: idx.length, code, status, retryMs: a.nextTryAt - this.now() }, 'receipt upload failed; will retry');
    } finally {
      a.busy = false;
    }
  }

  /** An answer other than 5xx or RATE_LIMITED: every record of the batch is settled at this authority. */
  private settle(e: EpochState, fp: string, a: AuthorityState, idx: number[], res: HttpResponse): void {
    const refusals = uploadRefusals(res.status, res.body, idx.length);
    let accepted = 0, replayed = 0, refused = 0;
    const codes = new Map<string, number>();
    idx.forEach((recordIndex, k) => {
      const r = refusals[k];
      if (!r) { a.status[recordIndex] = DELIVERED; accepted++; }
      else if (r.code === 'RECEIPT_REPLAYED') { a.status[recordIndex] = DELIVERED; replayed++; }
      else { a.status[recordIndex] = REFUSED; refused++; codes.set(r.code, (codes.get(r.code) ?? 0) + 1); }
    });
    this.metrics.upload('accepted', accepted);
    this.metrics.upload('replayed', replayed);
    this.metrics.upload('refused', refused);
    if (refused > 0) this.log.warn({ authority: fp, epoch: e.epoch, refused: Object.fromEntries(codes), status: res.status }, 'receipts refused by an authority');
  }

  private closeWindow(e: EpochState): void {
    let expired = 0;
    for (const [fp, a] of this.withAuthorities(e)) {
      let n = 0;
      a.status.forEach((s, i) => { if (s === PENDING) { a.status[i] = EXPIRED; n++; } });
      if (n > 0) this.log.info({ authority: fp, epoch: e.epoch, records: n }, 'receipt upload window closed before delivery');
      expired += n;
    }
    this.metrics.upload('expired', expired);
    e.closed = true;
    e.records = e.records.map(() => EMPTY); // keep the count, drop the bytes
  }

  private prune(): void {
    const keys = [...this.epochs.keys()].sort((a, b) => a - b);
    for (const k of keys.slice(0, Math.max(0, keys.length - KEEP_EPOCHS))) if (this.epochs.get(k)!.closed) this.epochs.delete(k);
  }

  private epochOf(epoch: number): EpochState {
    let e = this.epochs.get(epoch);
    if (!e) { e = { epoch, records: [], byAuthority: new Map(), closed: false }; this.epochs.set(epoch, e); }
    this.withAuthorities(e);
    return e;
  }

  /** The per-authority state of an epoch, for the authorities configured now. */
  private withAuthorities(e: EpochState): Map<string, AuthorityState> {
    for (const { fingerprint } of this.o.authorities()) {
      if (!e.byAuthority.has(fingerprint)) {
        e.byAuthority.set(fingerprint, {
          status: e.records.map(() => (e.closed ? EXPIRED : PENDING)), nextTryAt: 0, failures: 0, busy: false,
          startAt: (this.o.random ?? Math.random)(),
        });
      }
    }
    return e.byAuthority;
  }

  private stateFor(e: EpochState): AuthorityState[] { return [...this.withAuthorities(e).values()]; }

  private authorityCount(): number { return this.o.authorities().length; }
}

const EMPTY = Buffer.alloc(0);

function defaultPost(url: string, body: Buffer, timeoutMs: number): Promise<HttpResponse> {
  return httpRequest(url, { method: 'POST', body, timeoutMs, maxBytes: 4 * 1024 * 1024, headers: { 'content-type': 'application/octet-stream' } });
}
