// SPEC.md §8.4: POST /bitcloud/receipts — an authority's answer to one uploaded batch.
// `answerReceiptUpload` is pure (no I/O); `serveReceiptUpload` is the HTTP glue directory/http.ts
// routes to (rate limit, body limit, metrics); persistence lives in directory/measurement.ts.
import type http from 'node:http';
import { RECEIPT_LEN } from '../src/bandwidth/receipt';
import type { AcceptedReceipt, ReceiptVerifier, ReceiptRefusalCode } from '../src/bandwidth/verify';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { prom, type Registry } from '../src/ops/metrics';
import { uploaderKey, type RateLimiter } from './rate-limit';

export const RECEIPTS_PATH = '/bitcloud/receipts';
/** SPEC.md §8.4: one upload holds 1 to 10 000 records (2.24 MB); a node with more splits it. */
export const MAX_RECEIPT_BATCH = 10_000;
export const MAX_RECEIPT_UPLOAD_BYTES = MAX_RECEIPT_BATCH * RECEIPT_LEN;
/** SPEC.md §8.4: records verified between two turns of the event loop (≈ 256 signature checks). */
export const RECEIPT_VERIFY_SLICE = 128;
/** SPEC.md §8.4: uploads verified at once; more are answered 503 RECEIPT_BUSY (the uploader retries). */
export const MAX_CONCURRENT_RECEIPT_UPLOADS = 2;
/**
 * SPEC.md §8.4: the whole body of an upload arrives within this, or the upload is answered 408
 * RECEIPT_UPLOAD_TIMEOUT and its connection closed (an uploader gives up on a request after 10 s
 * itself, §8.4.1, so no honest upload is slower).
 */
export const RECEIPT_BODY_TIMEOUT_MS = 10_000;
/** SPEC.md §8.4: upload bodies read at once from one uploader key (IPv4 address, IPv6 /64), and in all. */
export const MAX_RECEIPT_READS_PER_ADDRESS = 8;
export const MAX_RECEIPT_READS = 64;
/** SPEC.md §8.4: an upload costs one token of the receipt rate limit per this many records (rounded up). */
export const RECEIPTS_PER_TOKEN = 1000;

/** SPEC.md §8.4 table: the status of a single-record upload refused with each code. */
export const RECEIPT_REFUSAL_STATUS: Readonly<Record<ReceiptRefusalCode, number>> = {
  RECEIPT_MALFORMED: 400,
  RECEIPT_ONE_SIGNATURE: 400,
  RECEIPT_OUTSIDE_WINDOW: 422,
  RECEIPT_UNKNOWN_EPOCH: 422,
  RECEIPT_UNKNOWN_RELAY: 403,
  RECEIPT_BAD_SIGNATURE: 400,
  RECEIPT_REPLAYED: 409,
  RECEIPT_CONFLICT: 409,
  RECEIPT_COUNT_TOO_LARGE: 422,
  RECEIPT_TOO_MANY: 429,
};

export interface ReceiptRefusal { index: number; code: ReceiptRefusalCode; reason: string }

export interface ReceiptUploadAnswer {
  status: number;
  /**
   * 200: `{accepted, refused}`; a refused single record or a refused batch: `{code, reason}`;
   * 503 RECEIPT_NOT_SAVED when the accepted records could not be saved (directory/measurement.ts).
   */
  body: { accepted: number; refused: ReceiptRefusal[] } | { code: ReceiptRefusalCode | 'RECEIPT_NOT_SAVED'; reason: string };
  /** What this upload added (for persistence): the record bytes and the accepted receipt. */
  added: { record: Uint8Array; receipt: AcceptedReceipt }[];
}

/**
 * SPEC.md §8.4 "Answer". A body that is not a positive multiple of 224 bytes is refused whole
 * (400 RECEIPT_MALFORMED), one of more than 10 000 records too (413 RECEIPT_MALFORMED). Otherwise
 * each record is judged on its own: 200 `{accepted, refused: [{index, code, reason}]}` — even when
 * every record was refused, since a batch's records have nothing in common — except that an upload
 * of a single refused record is answered with that refusal's own 4xx and `{code, reason}`.
 */
export function answerReceiptUpload(verifier: ReceiptVerifier, body: Uint8Array, now: number): ReceiptUploadAnswer {
  const pre = precheck(body);
  if ('status' in pre) return pre;
  const refused: ReceiptRefusal[] = [];
  const added: ReceiptUploadAnswer['added'] = [];
  for (let i = 0; i < pre.n; i++) judge(verifier, body, i, now, refused, added);
  return finish(pre.n, refused, added);
}

/**
 * The same answer, verified in slices of RECEIPT_VERIFY_SLICE records with a turn of the event
 * loop between them (SPEC.md §8.4): a large upload never holds the authority's other work (votes,
 * consensus fetches, other requests) for more than one slice.
 */
export async function answerReceiptUploadSliced(verifier: ReceiptVerifier, body: Uint8Array, now: () => number): Promise<ReceiptUploadAnswer> {
  const pre = precheck(body);
  if ('status' in pre) return pre;
  const refused: ReceiptRefusal[] = [];
  const added: ReceiptUploadAnswer['added'] = [];
  for (let i = 0; i < pre.n; i++) {
    if (i > 0 && i % RECEIPT_VERIFY_SLICE === 0) await new Promise<void>((r) => setImmediate(r));
    judge(verifier, body, i, now(), refused, added);
  }
  return finish(pre.n, refused, added);
}

function precheck(body: Uint8Array): ReceiptUploadAnswer | { n: number } {
  if (body.length === 0 || body.length % RECEIPT_LEN !== 0) {
    return { status: 400, body: { code: 'RECEIPT_MALFORMED', reason: `a receipt upload is a positive multiple of ${RECEIPT_LEN} bytes` }, added: [] };
  }
  const n = body.length / RECEIPT_LEN;
  if (n > MAX_RECEIPT_BATCH) {
    return { status: 413, body: { code: 'RECEIPT_MALFORMED', reason: `an upload holds at most ${MAX_RECEIPT_BATCH} receipts, this one ${n}` }, added: [] };
  }
  return { n };
}

function judge(verifier: ReceiptVerifier, body: Uint8Array, i: number, now: number, refused: ReceiptRefusal[], added: ReceiptUploadAnswer['added']): void {
  const record = body.subarray(i * RECEIPT_LEN, (i + 1) * RECEIPT_LEN);
  const r = verifier.accept(record, now);
  if (r.ok) added.push({ record, receipt: r.receipt });
  else refused.push({ index: i, code: r.code, reason: r.reason });
}

function finish(n: number, refused: ReceiptRefusal[], added: ReceiptUploadAnswer['added']): ReceiptUploadAnswer {
  if (n === 1 && refused.length === 1) {
    const { code, reason } = refused[0];
    return { status: RECEIPT_REFUSAL_STATUS[code], body: { code, reason }, added };
  }
  return { status: 200, body: { accepted: added.length, refused }, added };
}

/**
 * SPEC.md §8.4 intake limits, one gate per authority server: at most `max` uploads verified at
 * once; bodies are read before that (never while holding a verification slot), each within
 * `bodyTimeoutMs`, at most `readsPerAddress` at once per uploader key and `reads` in all.
 */
export class UploadGate {
  private active = 0;
  private reading = 0;
  private readonly readingBy = new Map<string, number>();
  constructor(
    readonly max = MAX_CONCURRENT_RECEIPT_UPLOADS,
    readonly o: { bodyTimeoutMs?: number; readsPerAddress?: number; reads?: number } = {},
  ) {}
  tryEnter(): boolean { if (this.active >= this.max) return false; this.active++; return true; }
  leave(): void { if (this.active > 0) this.active--; }

  get bodyTimeoutMs(): number { return this.o.bodyTimeoutMs ?? RECEIPT_BODY_TIMEOUT_MS; }

  /** A body read slot for uploader `key`; false when that key, or the server, reads enough already. */
  tryRead(key: string): boolean {
    const n = this.readingBy.get(key) ?? 0;
    if (n >= (this.o.readsPerAddress ?? MAX_RECEIPT_READS_PER_ADDRESS) || this.reading >= (this.o.reads ?? MAX_RECEIPT_READS)) return false;
    this.readingBy.set(key, n + 1);
    this.reading++;
    return true;
  }

  doneReading(key: string): void {
    const n = this.readingBy.get(key) ?? 0;
    if (n <= 1) this.readingBy.delete(key); else this.readingBy.set(key, n - 1);
    if (n > 0) this.reading--;
  }
}

/**
 * The body of an upload within `ms`: null when larger than `max` (readBody), 'timeout' when too
 * slow, 'aborted' when the uploader went away first.
 */
function readUploadBody(req: http.IncomingMessage, max: number, ms: number): Promise<Buffer | null | 'timeout' | 'aborted'> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    readBody(req, max).then((b) => { clearTimeout(t); resolve(b); }, () => { clearTimeout(t); resolve('aborted'); });
  });
}

export interface ReceiptIntakeMetrics {
  accepted: prom.Counter;
  refused: prom.Counter<'code'>;
}

/** SPEC.md §8.4 metrics. Idempotent per registry (a second server on one registry reuses them). */
export function createReceiptIntakeMetrics(reg: Registry): ReceiptIntakeMetrics {
  const get = (name: string) => reg.getSingleMetric(name);
  return {
    accepted: (get('bitcloud_receipts_accepted_total') as prom.Counter | undefined)
      ?? new prom.Counter({ name: 'bitcloud_receipts_accepted_total', help: 'Bandwidth receipts accepted (SPEC §8.4)', registers: [reg] }),
    refused: (get('bitcloud_receipts_refused_total') as prom.Counter<'code'> | undefined)
      ?? new prom.Counter({ name: 'bitcloud_receipts_refused_total', help: 'Bandwidth receipts refused, by code (SPEC §8.4)', labelNames: ['code'], registers: [reg] }),
  };
}

/** What the HTTP glue needs from the authority: judge a batch and keep what was accepted. */
export interface ReceiptIntake {
  accept(body: Uint8Array): Promise<ReceiptUploadAnswer>;
}

/**
 * POST /bitcloud/receipts (SPEC.md §6.10). Rate limited per address by its own bucket (receipt
 * batches from every node each epoch must not eat the descriptor budget, nor the reverse), one
 * token per RECEIPTS_PER_TOKEN records. SPEC.md §8.4 intake limits: the body is read in full, within
 * the gate's deadline, before a verification slot is taken, so that slow uploaders hold no slot.
 * Returns the status sent, for the HTTP request metric.
 */
export async function serveReceiptUpload(
  intake: ReceiptIntake, req: http.IncomingMessage, res: http.ServerResponse, limiter: RateLimiter, m: ReceiptIntakeMetrics, gate = new UploadGate(),
): Promise<number> {
  if (req.method !== 'POST') { req.resume(); sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return 405; }
  // A refusal before the body is read closes the connection: the unread body is not drained.
  const refuseEarly = (status: number, code: string, reason: string): number => {
    res.setHeader('connection', 'close');
    sendJsonError(res, status, code, reason);
    return status;
  };
  const key = uploaderKey(req.socket.remoteAddress);
  if (!limiter.take(key, Date.now())) {
    return refuseEarly(429, 'RATE_LIMITED', 'too many receipt uploads from this address; slow down');
  }
  if (!gate.tryRead(key)) return refuseEarly(503, 'RECEIPT_BUSY', 'too many receipt uploads are being read; retry later');
  let body: Buffer | null | 'timeout' | 'aborted';
  try {
    body = await readUploadBody(req, MAX_RECEIPT_UPLOAD_BYTES, gate.bodyTimeoutMs);
  } finally {
    gate.doneReading(key);
  }
  if (body === 'aborted') {
    // Nobody to answer; the status only labels the HTTP request metric ("client closed request").
    res.destroy();
    return 499;
  }
  if (body === 'timeout') {
    // The connection is closed once the answer is sent (the body was not read in full, §6.10).
    m.refused.labels('RECEIPT_UPLOAD_TIMEOUT').inc();
    return refuseEarly(408, 'RECEIPT_UPLOAD_TIMEOUT', `an upload's body must arrive within ${gate.bodyTimeoutMs / 1000} s`);
  }
  if (body === null) {
    m.refused.labels('RECEIPT_MALFORMED').inc();
    return refuseEarly(413, 'RECEIPT_MALFORMED', `an upload holds at most ${MAX_RECEIPT_BATCH} receipts of ${RECEIPT_LEN} bytes`);
  }
  // The first token was taken above; a large upload pays one more per RECEIPTS_PER_TOKEN records
  // (at most a full bucket in all, so that a small bucket still lets the largest upload through).
  const extra = Math.min(Math.ceil(body.length / RECEIPT_LEN / RECEIPTS_PER_TOKEN), limiter.burst) - 1;
  if (extra > 0 && !limiter.take(key, Date.now(), extra)) {
    sendJsonError(res, 429, 'RATE_LIMITED', 'too many receipts uploaded from this address; slow down');
    return 429;
  }
  if (!gate.tryEnter()) { sendJsonError(res, 503, 'RECEIPT_BUSY', 'other receipt uploads are being verified; retry later'); return 503; }
  try {
    const ans = await intake.accept(body);
    if (ans.added.length) m.accepted.inc(ans.added.length);
    if ('refused' in ans.body) for (const r of ans.body.refused) m.refused.labels(r.code).inc();
    else m.refused.labels(ans.body.code).inc();
    sendJson(res, ans.status, ans.body);
    return ans.status;
  } finally {
    gate.leave();
  }
}
