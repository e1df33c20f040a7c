// The storage audit routes (SPEC.md §6.10, §9.20), served by directory/http.ts:
//   POST /bitcloud/storage/contracts          upload a storage contract (§9.20.1; rate limited)
//   GET  /bitcloud/storage/audits[?epoch=E]   this authority's signed audit report (§9.20.3);
//                                             without `epoch`, the list of epochs it holds
//   GET  /bitcloud/storage/audits?epoch=E&node=FP  one node's page of that report (§9.20.3)
import type http from 'node:http';
import { errorCode } from '../src/errors';
import { isServerFault, readBody, sendJson, sendJsonError, sendJsonText } from '../src/dir/http-serve';
import { MAX_CONTRACT_BYTES } from '../src/wire/storage-contract';
import type { AuthorityInfo } from '../src/dir/authorities';
import { AuthorityAnswerPlaces } from '../src/dir/answer-places';
import type { RateLimiter } from './rate-limit';
import type { StorageAudits } from './storage-audits';

export const CONTRACTS_PATH = '/bitcloud/storage/contracts';
export const AUDITS_PATH = '/bitcloud/storage/audits';
/**
 * SPEC.md §9.20.3, §6.10: page answers (up to 16 MiB each) under way at once per authority; more are
 * answered 503 `RATE_LIMITED` (the reader retries later or asks another authority).
 */
export const PAGE_MAX_IN_FLIGHT = 16;
/** SPEC.md §9.20.3: of those places, at most this many held by one client address (IPv4 address, IPv6 /64). */
export const PAGE_MAX_PER_ADDRESS = 4;
/**
 * SPEC.md §9.20.3: a page answer is handed on in full within this time from when it starts to be
 * sent, else its connection is destroyed and its place freed (16 MiB in 120 s: ~140 KB/s).
 */
export const PAGE_ANSWER_DEADLINE_MS = 120_000;

/**
 * The places of one authority's page route (SPEC.md §9.20.3): PAGE_MAX_IN_FLIGHT in all, at most
 * PAGE_MAX_PER_ADDRESS per client address, except the configured authorities' addresses (each
 * rechecks 4 pages at a time, §9.20.4, and on a local network they all share one address) and this
 * host's own (loopback), which count only under the bound of all.
 */
export class AuditPagePlaces extends AuthorityAnswerPlaces {
  constructor(authorities: readonly AuthorityInfo[], opts: { answerDeadlineMs?: number } = {}) {
    super(authorities, PAGE_MAX_IN_FLIGHT, PAGE_MAX_PER_ADDRESS, opts.answerDeadlineMs ?? PAGE_ANSWER_DEADLINE_MS);
  }
}

/**
 * Run `answer` if a place is free, else 503 RATE_LIMITED. SPEC.md §9.20.3: the place is held until
 * the answer has been handed on in full ('finish'), its connection is gone ('close') or its answer
 * deadline has passed (then its connection is destroyed), so readers that never read, or read a
 * byte now and then, hold a place for at most PAGE_ANSWER_DEADLINE_MS, and one address at most
 * PAGE_MAX_PER_ADDRESS of them.
 */
async function boundedPage(pages: AuditPagePlaces, req: http.IncomingMessage, res: http.ServerResponse, answer: () => Promise<number>): Promise<number> {
  const r = await pages.run(req, res, answer);
  if (r) return r.value;
  sendJsonError(res, 503, 'RATE_LIMITED', `this authority is answering as many audit report page requests as it may (${PAGE_MAX_IN_FLIGHT}, ${PAGE_MAX_PER_ADDRESS} per address); retry later`);
  return 503;
}

/** Returns null for other paths; [route, status] when answered. */
export async function serveStorageAudits(audits: StorageAudits | undefined, req: http.IncomingMessage, res: http.ServerResponse, url: URL, limiter: RateLimiter, pages: AuditPagePlaces): Promise<[string, number] | null> {
  const p = url.pathname;
  if (p !== CONTRACTS_PATH && p !== AUDITS_PATH) return null;
  const route = p === CONTRACTS_PATH ? 'storage_contracts' : 'storage_audits';
  if (!audits) { req.resume(); sendJsonError(res, 404, 'NOT_FOUND', 'this authority does not audit storage'); return [route, 404]; }
  if (p === CONTRACTS_PATH) {
    if (req.method !== 'POST') { req.resume(); sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return [route, 405]; }
    if (!limiter.takeRemote(req.socket.remoteAddress, Date.now())) { req.resume(); sendJsonError(res, 429, 'RATE_LIMITED', 'too many uploads from this address; slow down'); return [route, 429]; }
    const body = await readBody(req, MAX_CONTRACT_BYTES);
    if (body === null) { sendJsonError(res, 413, 'CONTRACT_MALFORMED', `a contract is at most ${MAX_CONTRACT_BYTES} bytes`); return [route, 413]; }
    try {
      const r = await audits.accept(body);
      sendJson(res, 200, { accepted: true, ...r });
      return [route, 200];
    } catch (e) {
      // SPEC.md §6.10 "Error answers": a failure to store the contract is this authority's
      // (StorageAudits.accept logs it), answered 500 INTERNAL without its message.
      if (isServerFault(e)) { sendJsonError(res, 500, 'INTERNAL', 'internal error'); return [route, 500]; }
      const status = errorCode(e) === 'CONTRACT_LIMIT' ? 503 : 400;
      sendJsonError(res, status, errorCode(e), (e as Error).message);
      return [route, status];
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return [route, 405]; }
  const q = url.searchParams.get('epoch');
  const node = url.searchParams.get('node');
  if (q === null && node === null) { sendJson(res, 200, { epochs: audits.reportEpochs, contracts: audits.contractCount }); return [route, 200]; }
  if (q === null || !/^\d{1,15}$/.test(q)) { sendJsonError(res, 400, 'AUDIT_REPORT_INVALID', 'epoch must be a non-negative integer'); return [route, 400]; }
  if (node !== null) {
    // SPEC.md §9.20.3: one node's page (bounded by the per-node sample), from the page cache or read
    // from disk once; at most PAGE_MAX_IN_FLIGHT answered at once, PAGE_MAX_PER_ADDRESS per address.
    if (!/^[0-9a-f]{64}$/.test(node)) { sendJsonError(res, 400, 'AUDIT_REPORT_INVALID', 'node must be a fingerprint of 64 lowercase hex digits'); return [route, 400]; }
    const status = await boundedPage(pages, req, res, async () => {
      const page = await audits.pageText(Number(q), node);
      if (!page) { sendJsonError(res, 404, 'NOT_FOUND', `no audit report page for node ${node.slice(0, 16)}… in epoch ${q} here`); return 404; }
      sendJsonText(res, 200, page);
      return 200;
    });
    return [route, status];
  }
  // Not rate limited: the summary's JSON (about 150 bytes per audited node) is serialised once per
  // epoch and kept with the report (the last 6 epochs, SPEC.md §9.20.3), not again for each GET.
  const rep = audits.reportText(Number(q));
  if (!rep) { sendJsonError(res, 404, 'NOT_FOUND', `no audit report for epoch ${q} here`); return [route, 404]; }
  sendJsonText(res, 200, rep);
  return [route, 200];
}
