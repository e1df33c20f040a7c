// SPEC.md §8.7.5: a read of the reward chain has two deadlines: each page (the whole request, its
// body included, not an idle time) and the whole read from one source (all its pages). Past either
// the read from that source ends with REWARD_FETCH_TIMEOUT, the next source is tried, and the
// blocks verified so far are kept. Real HTTP servers on 127.0.0.1 answer slowly.
import { afterAll, describe, expect, it } from 'vitest';
import type http from 'node:http';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, signRewardBlock, type ChainTip } from '../../src/bandwidth/reward-chain';
import { fetchRewardChain } from '../../src/client/rewards';
import { rewardAuthorityKeys, rewardServer } from '../helpers/reward-fixtures';

const P = 60;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 100;
const { ids, sks, certs } = rewardAuthorityKeys(140, 150, NOW);
const fp = (n: number) => n.toString(16).padStart(64, '0');

function chain(n: number): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  for (let h = 0; h < n; h++) {
    const { block, body, hash } = nextRewardBlock(tip, E0 + h, new Map([[fp(1), 1 + h], [fp(2), 2]]));
    out.push(encodeSignedRewardBlock(body, [0, 1, 2].map((i) => signRewardBlock(body, ids[i].publicKey, sks[i]))));
    tip = { height: block.height, hash, epoch: block.epoch };
  }
  return out;
}

const authorities: AuthorityInfo[] = ids.map((k, i) => ({
  name: `a${i}`, identity: k.publicKey, fingerprint: k.publicKey.toString('hex'), host: '127.0.0.1', port: 9 + i, url: `http://127.0.0.1:${9 + i}`,
}));

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of closers) await c();
});

/** A server of GET /bitcloud/rewards?from=H, closed after the file; `answer` writes the response. Returns its URL and the heights asked. */
const serve = (answer: (from: number, res: http.ServerResponse) => void) => rewardServer(closers, answer);

/** One block a page (the page limit of the read is 1 byte, so each such page is full), after `delayMs`. */
function pages(blocks: Buffer[], delayMs: number) {
  return (from: number, res: http.ServerResponse) => {
    const body = encodeRewardChainBundle(blocks.length, certs, blocks.slice(from, from + 1));
    const t = setTimeout(() => { res.writeHead(200, { 'content-length': body.length }); res.end(body); }, delayMs);
    res.on('close', () => clearTimeout(t));
  };
}

describe('reward chain read deadlines (SPEC.md §8.7.5)', () => {
  it('a page whose body trickles in ends at the page deadline: REWARD_FETCH_TIMEOUT', { timeout: 4000 }, async () => {
    const blocks = chain(2);
    const body = encodeRewardChainBundle(blocks.length, certs, blocks);
    // Headers at once, then one byte every 50 ms: never idle, never whole within 300 ms.
    const slow = await serve((_from, res) => {
      res.writeHead(200, { 'content-length': body.length });
      let i = 0;
      const t = setInterval(() => { if (i < body.length) res.write(body.subarray(i, ++i)); }, 50);
      res.on('close', () => clearInterval(t));
    });
    const t0 = performance.now();
    await expect(fetchRewardChain({ authorities, periodSeconds: P, sources: [slow.url], timeoutMs: 300, deadlineMs: 60_000, pageBytes: 1 }))
      .rejects.toMatchObject({ code: 'REWARD_FETCH_TIMEOUT' });
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('pages each within the page deadline end at the read deadline: REWARD_FETCH_TIMEOUT', { timeout: 4000 }, async () => {
    const blocks = chain(40);
    // 40 pages of 150 ms each would take 6 s; the read is given 1 s.
    const slow = await serve(pages(blocks, 150));
    const t0 = performance.now();
    await expect(fetchRewardChain({ authorities, periodSeconds: P, sources: [slow.url], timeoutMs: 300, deadlineMs: 1000, pageBytes: 1 }))
      .rejects.toMatchObject({ code: 'REWARD_FETCH_TIMEOUT' });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(slow.asked.length).toBeGreaterThan(1);
    expect(slow.asked.length).toBeLessThan(40);
  });

  it('the next source goes on from the blocks verified before the deadline', { timeout: 4000 }, async () => {
    const blocks = chain(40);
    const slow = await serve(pages(blocks, 150));
    const fast = await serve((from, res) => {
      const body = encodeRewardChainBundle(blocks.length, certs, blocks.slice(from));
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    const r = await fetchRewardChain({ authorities, periodSeconds: P, sources: [slow.url, fast.url], timeoutMs: 300, deadlineMs: 1000, pageBytes: 1 });
    expect(r.state.height).toBe(39);
    expect(r.blocks.map((b) => b.block.height)).toEqual(blocks.map((_, h) => h));
    expect(r.failures).toEqual([expect.objectContaining({ source: slow.url, code: 'REWARD_FETCH_TIMEOUT' })]);
    // The fast source was asked only for what the slow one had not given: from the page the deadline cut.
    expect(slow.asked.length).toBeGreaterThan(1);
    expect(fast.asked).toEqual([slow.asked.at(-1)]);
  });

  it('a chain refused by a later source is reported by its REWARD_* code, not by the earlier deadline', { timeout: 4000 }, async () => {
    const blocks = chain(40);
    const slow = await serve(pages(blocks, 150));
    const garbled = await serve((_from, res) => { res.writeHead(200, { 'content-length': 4 }); res.end('BCRX'); });
    await expect(fetchRewardChain({ authorities, periodSeconds: P, sources: [slow.url, garbled.url], timeoutMs: 300, deadlineMs: 1000, pageBytes: 1 }))
      .rejects.toMatchObject({ code: 'REWARD_MALFORMED' });
  });

  it('a read cut at a deadline is reported as REWARD_FETCH_TIMEOUT even after an earlier source failed otherwise (SPEC.md §8.7.5)', { timeout: 4000 }, async () => {
    const blocks = chain(40);
    const refusing = await serve((_from, res) => { res.writeHead(503, { 'content-type': 'application/json' }); res.end(JSON.stringify({ code: 'RATE_LIMITED', reason: 'busy' })); });
    const slow = await serve(pages(blocks, 150));
    const e = await fetchRewardChain({ authorities, periodSeconds: P, sources: [refusing.url, slow.url], timeoutMs: 300, deadlineMs: 1000, pageBytes: 1 })
      .then(() => null, (x: unknown) => x as { code?: string; detail?: { failures?: { code: string }[] } });
    expect(e?.code).toBe('REWARD_FETCH_TIMEOUT');
    expect(e?.detail?.failures?.map((f) => f.code)).toEqual(['DIR_FETCH_FAILED', 'REWARD_FETCH_TIMEOUT']);
  });
});
