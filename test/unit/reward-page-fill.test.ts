// SPEC.md §8.7.5: an authority fills each page of GET /bitcloud/rewards with whole blocks in order up
// to the page byte limit (a block larger than the limit is a page alone), so that a reader can check
// one page late that a page short of the chain length was full; the client reads such pages, and a
// catching-up authority leaves another that sends short pages.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, signRewardBlock, type ChainTip } from '../../src/bandwidth/reward-chain';
import { fetchRewardChain, type RewardSource } from '../../src/client/rewards';
import { rewardPageBytes, shortRewardPage, splitRewardChainBundle, type RawRewardChainBundle } from '../../src/wire/reward-block';
import { RewardLedger } from '../../directory/rewards';
import { RewardBundles, serveRewards } from '../../directory/reward-http';
import { blockFileName, certificateFileName } from '../../directory/reward-store';
import type { Signer } from '../../directory/vote';
import { rewardAuthorityKeys, rewardServer } from '../helpers/reward-fixtures';

const P = 60;
const NOW = Date.now();
const E0 = Math.floor(NOW / (P * 1000)) - 400;
const { ids, sks, certs } = rewardAuthorityKeys(40, 50, NOW);
const signers: Signer[] = ids.map((id, i) => ({ identity: id.publicKey, signingKey: sks[i], certificate: certs[i] }));
const fp = (n: number) => n.toString(16).padStart(64, '0');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-reward-pages-'));
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of closers) await c();
  fs.rmSync(root, { recursive: true, force: true });
});

/** A server of GET /bitcloud/rewards?from=H, closed after the file; `answer` writes the response. Returns its URL and the heights asked. */
const serve = (answer: (from: number, res: http.ServerResponse) => void) => rewardServer(closers, answer);

/** `n` blocks signed by all three, of different sizes (10 to 99 allocations). */
function chain(n: number): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  for (let h = 0; h < n; h++) {
    const proven = new Map(Array.from({ length: 10 + ((h * 37) % 90) }, (_, i) => [fp(i + 1), 1 + i + h] as [string, number]));
    const { block, body, hash } = nextRewardBlock(tip, E0 + h, proven);
    out.push(encodeSignedRewardBlock(body, [0, 1, 2].map((i) => signRewardBlock(body, ids[i].publicKey, sks[i]))));
    tip = { height: block.height, hash, epoch: block.epoch };
  }
  return out;
}

function authorities(urls: string[] = []): AuthorityInfo[] {
  return ids.map((k, i) => {
    const url = urls[i] ?? `http://127.0.0.1:${9 + i}`;
    const u = new URL(url);
    return { name: `a${i}`, identity: k.publicKey, fingerprint: k.publicKey.toString('hex'), host: u.hostname, port: Number(u.port), url };
  });
}

/** An authority's ledger that loaded `blocks` from its data folder. */
function ledgerWith(name: string, blocks: Buffer[], pageBytes: number, auths = authorities(), now?: () => number, log = pino({ level: 'silent' }), extra: { readDeadlineMs?: number } = {}): RewardLedger {
  const dir = path.join(root, name);
  fs.mkdirSync(path.join(dir, 'rewards', 'blocks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'rewards', 'certs'), { recursive: true });
  blocks.forEach((b, h) => fs.writeFileSync(path.join(dir, 'rewards', 'blocks', blockFileName(h)), b));
  certs.forEach((c, i) => fs.writeFileSync(path.join(dir, 'rewards', 'certs', certificateFileName(ids[i].publicKey.toString('hex'), sks[i].publicKey.toString('hex'), c)), c));
  const ledger = new RewardLedger({
    dataDir: dir, signer: signers[0], authorities: auths, periodSeconds: P, skewMs: 60_000, log, fetchTimeoutMs: 2000, proposerWaitMs: 0, pageBytes, ...(now ? { now } : {}), ...extra,
  });
  ledger.load();
  closers.push(() => ledger.close());
  return ledger;
}

/** Every page the ledger serves, from height 0 on. */
async function pagesOf(ledger: RewardLedger): Promise<RawRewardChainBundle[]> {
  const pages: RawRewardChainBundle[] = [];
  for (let from = 0; ; ) {
    const p = splitRewardChainBundle(await ledger.bundle(from));
    if (p.blocks.length === 0) break;
    pages.push(p);
    from += p.blocks.length;
    if (from >= p.chainLength) break;
  }
  return pages;
}

const sourceOf = (ledger: RewardLedger): RewardSource => ({
  label: 'authority',
  get: async (pq) => ({ status: 200, headers: {}, body: await ledger.bundle(Number(new URL(pq, 'http://x').searchParams.get('from'))) }),
});

describe('reward chain pages (SPEC §8.7.5)', () => {
  const blocks = chain(150);

  it("an authority's pages hold whole blocks up to the page limit, and each page short of the tip passes the reader's check", async () => {
    const limit = 64 * 1024; // above the 32 KiB a next block's signatures may add: the check is not met by its bound alone
    const ledger = ledgerWith('served', blocks, limit);
    expect(ledger.height).toBe(149);
    const pages = await pagesOf(ledger);
    expect(pages.length).toBeGreaterThan(3);
    expect(pages.flatMap((p) => [...p.blocks])).toEqual(blocks);
    for (const [i, p] of pages.entries()) {
      expect(p.certificates.length).toBeGreaterThan(0);
      if (p.blocks.length > 1) expect(rewardPageBytes(p.blocks)).toBeLessThanOrEqual(limit);
      const next = pages[i + 1];
      if (!next) continue;
      // Full: the next block did not fit.
      expect(rewardPageBytes(p.blocks) + next.blocks.at(0)!.length).toBeGreaterThan(limit);
      expect(shortRewardPage({ bytes: rewardPageBytes(p.blocks), certificates: p.certificates }, next.blocks.at(0)!, limit)).toBeNull();
    }
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [sourceOf(ledger)], pageBytes: limit });
    expect(r.state.height).toBe(149);
    expect(r.failures).toEqual([]);
  });

  it('a block larger than the page limit is a page alone, and the reader takes such pages', async () => {
    const limit = 1000; // every block is larger
    const ledger = ledgerWith('one-a-page', blocks.slice(0, 20), limit);
    const pages = await pagesOf(ledger);
    expect(pages.map((p) => p.blocks.length)).toEqual(Array(20).fill(1));
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [sourceOf(ledger)], pageBytes: limit });
    expect(r.state.height).toBe(19);
  });

  it('catch-up stops reading from an authority that sends a short page, and reads full pages from it later', async () => {
    const limit = 64 * 1024;
    const full = ledgerWith('full', blocks, limit);
    // The other authority: one block a page with the true chain length, then full pages.
    let short = true;
    const { url, asked } = await serve((from, res) => {
      const body = short ? Promise.resolve(encodeRewardChainBundle(blocks.length, certs, blocks.slice(from, from + 1))) : full.bundle(from);
      void body.then((b) => { res.writeHead(200, { 'content-length': b.length }); res.end(b); });
    });
    let clock = NOW;
    const behind = ledgerWith('behind', [], limit, authorities(['http://127.0.0.1:9', url]), () => clock);
    behind.tick();
    await behind.whenIdle();
    // Its first page applied; the second shows the first was short: nothing more is asked.
    expect(asked).toEqual([0, 1]);
    expect(behind.height).toBe(0);
    short = false;
    clock += P * 1000;
    behind.tick();
    await behind.whenIdle();
    expect(behind.height).toBe(149);
  });

  it('catch-up from an authority whose pages each come in time ends at the read deadline, and keeps the blocks appended', { timeout: 5000 }, async () => {
    const few = blocks.slice(0, 40);
    // One block a page (a full page under the 1-byte limit), each after 150 ms: 40 pages take 6 s.
    const { url, asked } = await serve((from, res) => {
      const b = encodeRewardChainBundle(few.length, certs, few.slice(from, from + 1));
      const t = setTimeout(() => { res.writeHead(200, { 'content-length': b.length }); res.end(b); }, 150);
      res.on('close', () => clearTimeout(t));
    });
    const lines: { code?: string; msg?: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => { lines.push(JSON.parse(l) as { code?: string; msg?: string }); } });
    const behind = ledgerWith('slow-pages', [], 1, authorities(['http://127.0.0.1:9', url]), undefined, log, { readDeadlineMs: 1000 });
    const t0 = performance.now();
    behind.tick();
    await behind.whenIdle();
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(asked.length).toBeGreaterThan(1);
    expect(asked.length).toBeLessThan(few.length);
    // The blocks appended before the deadline stay.
    expect(behind.height).toBe(asked.length - 2);
    expect(lines.some((l) => l.code === 'REWARD_FETCH_TIMEOUT')).toBe(true);
  });

  it('a stored block that cannot be read is answered 503 INTERNAL, not a page cut short that the reader blames on the source', async () => {
    const limit = 64 * 1024;
    const lines: string[] = [];
    const ledger = ledgerWith('unreadable', blocks, limit, authorities(), undefined, pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } }));
    // Height 5, inside the first page, cannot be read (a folder where its file was: EISDIR).
    const file = path.join(root, 'unreadable', 'rewards', 'blocks', blockFileName(5));
    fs.renameSync(file, `${file}.aside`);
    fs.mkdirSync(file);
    const restore = () => { fs.rmdirSync(file); fs.renameSync(`${file}.aside`, file); };
    const bundles = new RewardBundles(ledger);
    const server = http.createServer((req, res) => {
      void serveRewards(bundles, req, res, new URL(req.url ?? '/', 'http://x')).then((r) => { if (!r) { res.writeHead(404); res.end(); } });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

    const direct = await httpRequest(`${url}${PATHS.rewards}?from=0`, { maxBytes: 1 << 20, timeoutMs: 5000 });
    expect(direct.status).toBe(503);
    expect(JSON.parse(direct.body.toString('utf8')).code).toBe('INTERNAL');
    const warned = lines.map((l) => JSON.parse(l) as { level: number; height?: number; msg: string }).filter((l) => l.level === 40);
    expect(warned.map((l) => l.height)).toEqual([5]);
    expect(lines.join('')).not.toContain('127.0.0.1');

    // A failure that passes (the block is readable again for the next page): the reader counts the
    // 503 as the source failing to answer, never as a short page (REWARD_MALFORMED).
    let broken = true;
    const source: RewardSource = {
      label: 'authority',
      get: async (pq, ro) => {
        const r = await httpRequest(url + pq, ro);
        if (broken) { broken = false; restore(); }
        return r;
      },
    };
    const failed = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [source], pageBytes: limit }).then(() => null, (e: unknown) => e as { code: string; message: string });
    expect(failed?.code).toBe('DIR_FETCH_FAILED');
    expect(failed?.message).toContain('INTERNAL');
    expect(failed?.message).not.toContain('short page');
    // Once readable, the same authority serves the whole chain in full pages.
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [source], pageBytes: limit });
    expect(r.state.height).toBe(149);
    expect(r.failures).toEqual([]);
  });
});
