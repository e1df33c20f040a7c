// The reward chain's two HTTP routes (SPEC.md §6.10, §8.7.5), served by directory/http.ts.
import type http from 'node:http';
import { LRUCache } from 'lru-cache';
import { PATHS } from '../src/dir/fetch';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { errorCode, isBitcloudError } from '../src/errors';
import { TRANSFER_BYTES } from '../src/wire/transfer';
import { ESCROW_CANCEL_BYTES } from '../src/wire/escrow-cancel';
import { AuthorityAnswerPlaces } from '../src/dir/answer-places';
import type { AuthorityInfo } from '../src/dir/authorities';
import type { RewardLedger } from './rewards';

/**
 * SPEC.md §8.7.5, §6.10: chain bundle answers (up to 8 MiB and a block each) under way at once per
 * authority, at most BUNDLE_MAX_PER_ADDRESS of them for one client address (the configured
 * authorities' addresses excepted), each cut BUNDLE_ANSWER_DEADLINE_MS after it starts to be sent;
 * more are answered 503 `RATE_LIMITED`. The same bounds as the audit report pages (§9.20.3).
 */
export const BUNDLE_MAX_IN_FLIGHT = 16;
export const BUNDLE_MAX_PER_ADDRESS = 4;
export const BUNDLE_ANSWER_DEADLINE_MS = 120_000;
/** SPEC.md §8.7.5: encoded bundles kept for reuse while the tip stays: at most this many `from`s … */
export const BUNDLE_CACHE_ENTRIES = 4;
/** … and at most this many bytes of them (a bundle a reader takes is at most 64 MiB). */
export const BUNDLE_CACHE_BYTES = 64 * 1024 * 1024;

interface CachedBundle { readonly bytes: Promise<Buffer>; readonly size: number }

/**
 * SPEC.md §8.7.5: one authority's GET /bitcloud/rewards answers. Each takes a place
 * (AuthorityAnswerPlaces); the bundle for a `from` is encoded once and the same Buffer handed to
 * every request for it (also those arriving while it is being read) until the chain changes (its
 * tip moves, a stored block gains late signatures or a certificate is stored), so readers that read slowly pin at most one buffer per distinct `from` kept, not one each.
 */
export class RewardBundles {
  readonly places: AuthorityAnswerPlaces;
  /**
   * Encoded bundles by `from`, all of the ledger's bundleVersion `version`. An entry is charged 1
   * byte while its bundle is being read and its length once read; one above the byte bound is not
   * kept (its requests still get it).
   */
  private readonly cache = new LRUCache<number, CachedBundle>({
    max: BUNDLE_CACHE_ENTRIES,
    maxSize: BUNDLE_CACHE_BYTES,
    sizeCalculation: (e) => Math.max(1, e.size),
  });
  private version = '';

  constructor(readonly ledger: RewardLedger, authorities: readonly AuthorityInfo[] = [], opts: { answerDeadlineMs?: number } = {}) {
    this.places = new AuthorityAnswerPlaces(authorities, BUNDLE_MAX_IN_FLIGHT, BUNDLE_MAX_PER_ADDRESS, opts.answerDeadlineMs ?? BUNDLE_ANSWER_DEADLINE_MS);
  }

  /** The encoded bundle from height `from`, shared while the chain stays as it is. */
  bundle(from: number): Promise<Buffer> {
    const version = this.ledger.bundleVersion;
    if (version !== this.version) { this.cache.clear(); this.version = version; }
    const hit = this.cache.get(from);
    if (hit) return hit.bytes;
    const entry: CachedBundle = { bytes: this.ledger.bundle(from), size: 0 };
    this.cache.set(from, entry);
    entry.bytes.then((b) => {
      if (this.cache.peek(from) !== entry) return; // the chain changed meanwhile, or it was dropped
      this.cache.set(from, { bytes: entry.bytes, size: b.length }); // charged its length now (a new value: lru-cache sizes a value once)
    }, () => {
      if (this.cache.peek(from) === entry) this.cache.delete(from);
    });
    return entry.bytes;
  }

  /** Bundles kept, and the bytes they are charged (tests). */
  get cached(): { entries: number; bytes: number } { return { entries: this.cache.size, bytes: this.cache.calculatedSize }; }
}

/**
 * SPEC.md §8.11.3: POST /bitcloud/transfers (one 145-byte transfer) and
 * GET /bitcloud/transfers/pending[?from=KEY]. Returns null for other paths.
 */
export async function serveTransfers(ledger: RewardLedger | null | undefined, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<[string, number] | null> {
  const p = url.pathname;
  if (p !== PATHS.transfers && p !== PATHS.transfersPending) return null;
  if (p === PATHS.transfersPending) {
    if (req.method !== 'GET' && req.method !== 'HEAD') { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return ['transfers_pending', 405]; }
    const from = url.searchParams.get('from');
    if (from !== null && !/^[0-9a-f]{64}$/.test(from)) { sendJsonError(res, 400, 'REWARD_BAD_QUERY', 'from must be a key (64 lowercase hex)'); return ['transfers_pending', 400]; }
    if (!ledger) { sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'this authority keeps no reward chain'); return ['transfers_pending', 404]; }
    // SPEC §6.10: the pool's kept bytes; HEAD builds no body it does not send.
    const body = req.method === 'HEAD' ? null : ledger.pendingTransfersBytes(from ?? undefined);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body?.length ?? ledger.pendingTransfersLength(from ?? undefined), 'cache-control': 'no-store', 'x-bitcloud-chain-height': String(ledger.height) });
    res.end(body ?? undefined);
    return ['transfers_pending', 200];
  }
  if (req.method !== 'POST') { sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return ['transfers', 405]; }
  if (!ledger) { req.resume(); sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'this authority keeps no reward chain'); return ['transfers', 404]; }
  const body = await readBody(req, TRANSFER_BYTES);
  if (body === null) { sendJsonError(res, 400, 'TRANSFER_MALFORMED', `a transfer is ${TRANSFER_BYTES} bytes`); return ['transfers', 400]; }
  try {
    const { result, transfer } = ledger.submitTransfer(body);
    sendJson(res, 200, { accepted: true, result, from: transfer.from.toString('hex'), nonce: transfer.nonce, height: ledger.height });
    return ['transfers', 200];
  } catch (e) {
    const status = isBitcloudError(e) ? (errorCode(e) === 'TRANSFER_POOL_FULL' ? 503 : errorCode(e) === 'TRANSFER_RATE_LIMITED' ? 429 : 400) : 500;
    sendJsonError(res, status, errorCode(e), isBitcloudError(e) ? e.message : 'internal error');
    return ['transfers', status];
  }
}

/**
 * SPEC.md §9.20.4: POST /bitcloud/escrow/cancel (one 97-byte cancel, signed by the contract's
 * payer). Returns null for other paths.
 */
export async function serveEscrowCancel(ledger: RewardLedger | null | undefined, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<[string, number] | null> {
  if (url.pathname !== PATHS.escrowCancel) return null;
  if (req.method !== 'POST') { sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return ['escrow_cancel', 405]; }
  if (!ledger) { req.resume(); sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'this authority keeps no reward chain'); return ['escrow_cancel', 404]; }
  const body = await readBody(req, ESCROW_CANCEL_BYTES);
  if (body === null) { sendJsonError(res, 400, 'ESCROW_CANCEL_MALFORMED', `a cancel is ${ESCROW_CANCEL_BYTES} bytes`); return ['escrow_cancel', 400]; }
  try {
    const { result, cancel, payer } = ledger.submitCancel(body);
    sendJson(res, 200, { accepted: true, result, contract: cancel.contract, payer, height: ledger.height });
    return ['escrow_cancel', 200];
  } catch (e) {
    const code = errorCode(e);
    const status = !isBitcloudError(e) ? 500 : code === 'TRANSFER_POOL_FULL' ? 503 : code === 'ESCROW_UNKNOWN' ? 404 : 400;
    sendJsonError(res, status, code, isBitcloudError(e) ? e.message : 'internal error');
    return ['escrow_cancel', status];
  }
}

/**
 * SPEC.md §6.10 / §8.7.5: GET /bitcloud/rewards[?from=H] and GET /bitcloud/rewards/pending, of the
 * ledger `bundles` serves (none: this authority keeps no reward chain).
 * Returns null for other paths (the caller routes them); [route, status] when answered.
 */
export async function serveRewards(bundles: RewardBundles | undefined, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<[string, number] | null> {
  const ledger = bundles?.ledger;
  const p = url.pathname;
  if (p !== PATHS.rewards && p !== PATHS.rewardsPending) return null;
  const route = p === PATHS.rewards ? 'rewards' : 'rewards_pending';
  if (req.method !== 'GET' && req.method !== 'HEAD') { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return [route, 405]; }
  if (p === PATHS.rewardsPending) {
    const body = ledger?.pendingBytes() ?? null;
    if (!body) { sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'no reward block is being signed here'); return [route, 404]; }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return [route, 200];
  }
  const q = url.searchParams.get('from');
  if (q !== null && !/^\d{1,15}$/.test(q)) { sendJsonError(res, 400, 'REWARD_BAD_QUERY', 'from must be a block height (a non-negative integer)'); return [route, 400]; }
  if (!bundles) { sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'this authority keeps no reward chain'); return [route, 404]; }
  const from = q === null ? 0 : Number(q);
  // SPEC.md §8.7.5: the place is held until the answer is handed on in full, its connection is
  // gone or its deadline has passed; none free: 503 RATE_LIMITED.
  // A stored block that cannot be read (the ledger logged it): 503 INTERNAL, not a page cut short.
  let r: { value: void } | null;
  try {
    r = await bundles.places.run(req, res, async () => {
      const bytes = await bundles.bundle(from);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    });
  } catch (e) {
    if (!isBitcloudError(e, 'INTERNAL') || res.headersSent) throw e;
    sendJsonError(res, 503, 'INTERNAL', 'a stored reward block cannot be read here; retry later or ask another authority');
    return [route, 503];
  }
  if (r) return [route, 200];
  sendJsonError(res, 503, 'RATE_LIMITED', `this authority is answering as many reward chain requests as it may (${BUNDLE_MAX_IN_FLIGHT}, ${BUNDLE_MAX_PER_ADDRESS} per address); retry later`);
  return [route, 503];
}
