// SPEC.md §8.4: POST /bitcloud/receipts — an authority's answer to one uploaded batch.
// `answerReceiptUpload` is pure (no I/O); `serveReceiptUpload` is the HTTP glue directory/http.ts
// routes to (rate limit, body limit, metrics); persistence lives in directory/measurement.ts.
import type http from 'node:http';
import { RECEIPT_LEN } from '../src/bandwidth/receipt';
import type { AcceptedReceipt, ReceiptVerifier, ReceiptRefusalCode } from '../src/bandwidth/verify';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { prom, type Registry } from '../src/ops/metrics';
import type { RateLimiter } from './rate-limit';
import { parseIp } from '../src/dir/exit-policy';

export const RECEIPTS_PATH = '/bitcloud/receipts';
/** SPEC.md §8.4: one upload holds 1 to 10 000 records (2.24 MB); a node with more splits it. */
export const MAX_RECEIPT_BATCH = 10_000;
export const MAX_RECEIPT_UPLOAD_BYTES = MAX_RECEIPT_BATCH * RECEIPT_LEN;
/** SPEC.md §8.4: records verified between two turns of the event loop (≈ 256 signature checks). */
export const RECEIPT_VERIFY_SLICE = 128;
/** SPEC.md §8.4: uploads verified at once; more are answered 503 RECEIPT_BUSY (the uploader retries). */
export const MAX_CONCURRENT_RECEIPT_UPLOADS = 2;

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
 * SPEC.md §8.4: the rate-limit key of an uploader — its IPv4 address, or the /64 of an IPv6
 * address (one host commonly holds a whole /64). An IPv4-mapped address is its IPv4 address.
 */
export function uploaderKey(remote: string | undefined): string {
  if (!remote) return '?';
  if (remote.startsWith('::ffff:') && remote.includes('.')) return remote.slice(7);
  const ip = parseIp(remote);
  if (!ip || ip.family === 4) return remote;
  return `${(ip.value >> 64n).toString(16)}::/64`;
}

/** At most `max` uploads verified at once (SPEC.md §8.4); one gate per authority server. */
export class UploadGate {
  private active = 0;
  constructor(readonly max = MAX_CONCURRENT_RECEIPT_UPLOADS) {}
  tryEnter(): boolean { if (this.active >= this.max) return false; this.active++; return true; }
  leave(): void { if (this.active > 0) this.active--; }
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
 * batches from every node each epoch must not eat the descriptor budget, nor the reverse).
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
  if (!limiter.take(uploaderKey(req.socket.remoteAddress), Date.now())) {
    return refuseEarly(429, 'RATE_LIMITED', 'too many receipt uploads from this address; slow down');
  }
  if (!gate.tryEnter()) return refuseEarly(503, 'RECEIPT_BUSY', 'other receipt uploads are being verified; retry later');
  try {
    const body = await readBody(req, MAX_RECEIPT_UPLOAD_BYTES);
    if (body === null) {
      m.refused.labels('RECEIPT_MALFORMED').inc();
      return refuseEarly(413, 'RECEIPT_MALFORMED', `an upload holds at most ${MAX_RECEIPT_BATCH} receipts of ${RECEIPT_LEN} bytes`);
    }
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
