// The reward chain's two HTTP routes (SPEC.md §6.10, §8.7.5), served by directory/http.ts.
import type http from 'node:http';
import { PATHS } from '../src/dir/fetch';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { errorCode, isBitcloudError } from '../src/errors';
import { TRANSFER_BYTES } from '../src/wire/transfer';
import { ESCROW_CANCEL_BYTES } from '../src/wire/escrow-cancel';
import type { RewardLedger } from './rewards';

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
    const body = ledger.pendingTransfersBytes(from ?? undefined);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store', 'x-bitcloud-chain-height': String(ledger.height) });
    res.end(req.method === 'HEAD' ? undefined : body);
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
 * SPEC.md §6.10 / §8.7.5: GET /bitcloud/rewards[?from=H] and GET /bitcloud/rewards/pending.
 * Returns null for other paths (the caller routes them); [route, status] when answered.
 */
export async function serveRewards(ledger: RewardLedger | null | undefined, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<[string, number] | null> {
  const p = url.pathname;
  if (p !== PATHS.rewards && p !== PATHS.rewardsPending) return null;
  const route = p === PATHS.rewards ? 'rewards' : 'rewards_pending';
  if (req.method !== 'GET' && req.method !== 'HEAD') { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return [route, 405]; }
  let body: Buffer | null;
  if (p === PATHS.rewardsPending) {
    body = ledger?.pendingBytes() ?? null;
    if (!body) { sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'no reward block is being signed here'); return [route, 404]; }
  } else {
    const q = url.searchParams.get('from');
    if (q !== null && !/^\d{1,15}$/.test(q)) { sendJsonError(res, 400, 'REWARD_BAD_QUERY', 'from must be a block height (a non-negative integer)'); return [route, 400]; }
    if (!ledger) { sendJsonError(res, 404, 'REWARD_NOT_AVAILABLE', 'this authority keeps no reward chain'); return [route, 404]; }
    body = await ledger.bundle(q === null ? 0 : Number(q));
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
  return [route, 200];
}
