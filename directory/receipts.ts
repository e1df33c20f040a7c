// SPEC.md §8.4 (docs/spec/08-bandwidth.md): POST /bitcloud/receipts — an authority's answer to one
// uploaded batch. Pure (no I/O): directory/http.ts passes the body and sends back { status, body }.
// NOT YET ROUTED in directory/http.ts (see the issue 5 report).
import { RECEIPT_LEN } from '../src/bandwidth/receipt';
import type { ReceiptVerifier, ReceiptRefusalCode } from '../src/bandwidth/verify';

export const RECEIPTS_PATH = '/bitcloud/receipts';
/** Upper bound on one batch (records); a relay with more splits its upload. */
export const MAX_RECEIPT_BATCH = 10_000;

export interface ReceiptUploadAnswer {
  status: number;
  body: { accepted: number; refused: { index: number; code: ReceiptRefusalCode | 'RECEIPT_MALFORMED'; reason: string }[] };
}

/**
 * A batch is the concatenation of 224-byte countersigned receipts. Each record is judged alone:
 * refused ones carry their index, code and reason; the answer is 200 when at least one was
 * accepted (or the batch is a replay of accepted ones, RECEIPT_REPLAYED, which the uploader
 * counts as delivered) and 400 when every record was refused for another reason.
 */
export function answerReceiptUpload(verifier: ReceiptVerifier, body: Uint8Array, now: number): ReceiptUploadAnswer {
  if (body.length === 0 || body.length % RECEIPT_LEN !== 0) {
    return { status: 400, body: { accepted: 0, refused: [{ index: -1, code: 'RECEIPT_MALFORMED', reason: `a receipt batch is a positive multiple of ${RECEIPT_LEN} bytes` }] } };
  }
  const n = body.length / RECEIPT_LEN;
  if (n > MAX_RECEIPT_BATCH) {
    return { status: 413, body: { accepted: 0, refused: [{ index: -1, code: 'RECEIPT_MALFORMED', reason: `batch of ${n} exceeds ${MAX_RECEIPT_BATCH}` }] } };
  }
  const records: Uint8Array[] = [];
  for (let i = 0; i < n; i++) records.push(body.subarray(i * RECEIPT_LEN, (i + 1) * RECEIPT_LEN));
  const res = verifier.acceptAll(records, now);
  const delivered = res.accepted + res.refused.filter((r) => r.code === 'RECEIPT_REPLAYED').length;
  return { status: delivered > 0 ? 200 : 400, body: { accepted: res.accepted, refused: res.refused } };
}
