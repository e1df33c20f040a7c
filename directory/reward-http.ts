// The reward chain's two HTTP routes (SPEC.md §6.10, §8.7.5), served by directory/http.ts.
import type http from 'node:http';
import { PATHS } from '../src/dir/fetch';
import { sendJsonError } from '../src/dir/http-serve';
import type { RewardLedger } from './rewards';

/**
 * SPEC.md §6.10 / §8.7.4: GET /bitcloud/rewards[?from=H] and GET /bitcloud/rewards/pending.
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
