// SPEC.md §8.7.3: the client fetches the whole reward chain and refuses it on an altered block, a
// missing signature or a broken hash link, trying the next source; `bitcloud rewards` prints the
// verified balances (text and --json) and exits non-zero with the REWARD_* code on a bad chain.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ed25519FromSeed, ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import { parseAuthorityList } from '../../src/dir/authorities';
import { PATHS } from '../../src/dir/fetch';
import { FLAG_BITS } from '../../src/dir/types';
import { makeSignature, sealEnvelope } from '../../src/wire/envelope';
import { computeConsensus } from '../../directory/compute';
import {
  encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, signRewardBlock, type ChainTip,
} from '../../src/bandwidth/reward-chain';
import { fetchRewardChain, formatCoins } from '../../src/client/rewards';
import { readRewardTipsSeen, rememberRewardTip, rewardAuthoritySetId } from '../../src/client/rewards-seen';
import { REWARD_PAGE_BYTES, decodeRewardBlock, splitSignedRewardBlock } from '../../src/wire/reward-block';
import type { ErrorCode } from '../../src/errors';
import { rewardsCommand } from '../../src/client/commands/rewards';
import { consensusCommand } from '../../src/client/commands/consensus';
import { GuardSet } from '../../src/client/guards';
import { CONSENSUS_CACHE_FILE } from '../../src/dir/consensus-cache';

// Counts key-certificate checks (the real check runs).
const certChecks = vi.hoisted(() => ({ n: 0 }));
vi.mock('../../src/dir/certificate', async (orig) => {
  const real = await orig<typeof import('../../src/dir/certificate')>();
  return { ...real, verifyKeyCertificate: (...a: Parameters<typeof real.verifyKeyCertificate>) => { certChecks.n++; return real.verifyKeyCertificate(...a); } };
});

const P = 60;
const NOW = Date.now();
const PS = Math.floor(NOW / (P * 1000)) * P * 1000;
const E0 = PS / (P * 1000) - 5;
const ids = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, 80 + i)));
const sks = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, 90 + i)));
const certs = ids.map((id, i) => makeKeyCertificate(id, sks[i].publicKey, NOW - 86_400_000, NOW + 86_400_000));
const relayKeys = [0, 1, 2].map(() => ed25519Generate());
const relayFp = relayKeys.map((k) => k.publicKey.toString('hex'));

/** A chain of `n` blocks; `tweak` may change how block h is built or signed. */
function chain(n: number, tweak: { brokenLinkAt?: number; signersAt?: [number, number[]] } = {}): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  for (let h = 0; h < n; h++) {
    const proven = new Map([[relayFp[0], 3 + h], [relayFp[1], 1], [relayFp[2], h]]);
    const base: ChainTip | null = tip && tweak.brokenLinkAt === h ? { ...tip, hash: Buffer.alloc(32, 7) } : tip;
    const { block, body, hash } = nextRewardBlock(base, E0 + h, proven);
    const who = tweak.signersAt?.[0] === h ? tweak.signersAt[1] : [0, 1, 2];
    out.push(encodeSignedRewardBlock(body, who.map((i) => signRewardBlock(body, ids[i].publicKey, sks[i]))));
    tip = { height: block.height, hash, epoch: block.epoch };
  }
  return out;
}

/** SPEC §8.7.5: the blocks from `from` a server puts in a page: whole blocks up to `limit` bytes, at least one. */
function page(blocks: Buffer[], from: number, limit = REWARD_PAGE_BYTES): Buffer[] {
  const out: Buffer[] = [];
  let size = 0;
  for (const b of blocks.slice(from)) {
    if (out.length > 0 && size + b.length > limit) break;
    out.push(b);
    size += b.length;
  }
  return out;
}

/** A server that serves a chain (as an authority would) at GET /bitcloud/rewards?from=H, pages filled to `pageBytes`. */
interface ChainServer { url: string; blocks: Buffer[]; certs: Buffer[]; claim?: number; pageBytes?: number; server: http.Server }
const servers: ChainServer[] = [];
async function chainServer(blocks: Buffer[], o: { certs?: Buffer[]; claim?: number; pageBytes?: number } = {}): Promise<ChainServer> {
  const s: ChainServer = { url: '', blocks, certs: o.certs ?? certs, claim: o.claim, pageBytes: o.pageBytes, server: null as unknown as http.Server };
  s.server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== PATHS.rewards) { res.writeHead(404); res.end(); return; }
    const from = Number(url.searchParams.get('from') ?? 0);
    const body = encodeRewardChainBundle(s.claim ?? s.blocks.length, s.certs, page(s.blocks, from, s.pageBytes));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', () => r()));
  s.url = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
  servers.push(s);
  return s;
}

let good: ChainServer;
const authorityList = () => ids.map((k, i) => ({ name: `a${i}`, identity: k.publicKey.toString('hex'), address: good.url.slice('http://'.length) }));
const authorities = () => parseAuthorityList(authorityList());
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-rewards-client-'));

beforeAll(async () => { good = await chainServer(chain(3)); });
afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => { s.server.close(() => r()); s.server.closeAllConnections(); });
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function failsWith(blocks: Buffer[], code: ErrorCode, o: { certs?: Buffer[]; claim?: number } = {}): Promise<void> {
  const bad = await chainServer(blocks, o);
  await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [bad.url] })).rejects.toMatchObject({ code });
}

describe('fetchRewardChain (SPEC §8.7.3)', () => {
  it('fetches page by page and verifies the whole chain; balances are the sums of allocations', async () => {
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P })).state.height).toBe(2);
    // Pages of one block each: a page limit no two blocks fit in.
    const paged = await chainServer(chain(3), { pageBytes: 1 });
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [paged.url], pageBytes: 1 });
    expect(r.state.height).toBe(2);
    expect(r.blocks.map((b) => b.block.epoch)).toEqual([E0, E0 + 1, E0 + 2]);
    let total = 0n;
    for (const b of r.blocks) {
      expect([...b.block.allocations.values()].reduce((x, y) => x + y, 0n)).toBe(b.block.minted);
      total += b.block.minted;
    }
    expect(r.state.totalMinted).toBe(total);
    expect([...r.state.balances.values()].reduce((x, y) => x + y, 0n)).toBe(total);
  });

  it('an altered block fails: REWARD_BAD_SIGNATURE', async () => {
    const blocks = chain(3);
    const b = Buffer.from(blocks[1]);
    // Swap the amounts of the first two allocations: the sum still matches, the signatures do not.
    const a0 = 4 + 61 + 32, a1 = a0 + 40;
    const x = b.readBigUInt64BE(a0), y = b.readBigUInt64BE(a1);
    expect(x).not.toBe(y);
    b.writeBigUInt64BE(y, a0);
    b.writeBigUInt64BE(x, a1);
    blocks[1] = b;
    await failsWith(blocks, 'REWARD_BAD_SIGNATURE');
  });

  it('a missing signature (below the majority of configured authorities) fails: REWARD_TOO_FEW_SIGNATURES', async () => {
    await failsWith(chain(3, { signersAt: [2, [1]] }), 'REWARD_TOO_FEW_SIGNATURES');
    // Signatures whose certificates are missing do not count either.
    await failsWith(chain(3), 'REWARD_TOO_FEW_SIGNATURES', { certs: [certs[0]] });
  });

  it('a broken hash link fails: REWARD_CHAIN_BROKEN_LINK', async () => {
    await failsWith(chain(3, { brokenLinkAt: 1 }), 'REWARD_CHAIN_BROKEN_LINK');
  });

  it('a block whose header does not follow the tip is refused before its body is decoded (SPEC §8.7.4)', async () => {
    // Block 0's body with height 7 and bytes after it that no decoder takes.
    const body = Buffer.concat([splitSignedRewardBlock(chain(1)[0]).body, Buffer.alloc(64, 0xff)]);
    body.writeBigUInt64BE(7n, 1);
    expect(() => decodeRewardBlock(body)).toThrow(expect.objectContaining({ code: 'REWARD_MALFORMED' }));
    const bad = encodeSignedRewardBlock(body, [0, 1, 2].map((i) => signRewardBlock(body, ids[i].publicKey, sks[i])));
    // Refused for its height (the header), not as an undecodable body.
    await failsWith([bad], 'REWARD_CHAIN_BAD_HEIGHT');
  });

  it('a source that claims blocks it does not send fails: REWARD_MALFORMED', async () => {
    await failsWith(chain(1), 'REWARD_MALFORMED', { claim: 5 });
  });

  it('tries the next source after a refused chain, and reports the first REWARD_* code when all fail', async () => {
    const bad = await chainServer(chain(3, { brokenLinkAt: 2 }));
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [bad.url, good.url] });
    expect(r.source).toBe(good.url);
    expect(r.failures).toMatchObject([{ source: bad.url, code: 'REWARD_CHAIN_BROKEN_LINK' }]);
    await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: ['http://127.0.0.1:1', bad.url], timeoutMs: 2000 }))
      .rejects.toMatchObject({ code: 'REWARD_CHAIN_BROKEN_LINK' });
  });

  it('a source that is behind does not hide the blocks another source has: the chain is extended from the others', async () => {
    const blocks = chain(3);
    const behind = await chainServer(blocks.slice(0, 1));
    const ahead = await chainServer(blocks);
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [behind.url, ahead.url] });
    expect(r.source).toBe(behind.url);
    expect(r.state.height).toBe(2);
    expect(r.failures).toEqual([]);
    // A later source is used up to its first block that does not verify, and reported; the chain
    // verified so far stands (every block in it passed the majority check on its own).
    const bad = await chainServer(chain(4, { brokenLinkAt: 3 }));
    const r2 = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [behind.url, bad.url] });
    expect(r2.state.height).toBe(2);
    expect(r2.failures.map((f) => f.source)).toEqual([bad.url]);
  });

  it('refuses a rollback: a chain below the highest tip verified before, or another block at its height (SPEC §8.7.7)', async () => {
    const blocks = chain(3);
    const full = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [(await chainServer(blocks)).url] });
    const dir = fs.mkdtempSync(path.join(tmp, 'seen-'));
    await rememberRewardTip(dir, full.state.chainId!, full.state.height, full.blocks.at(-1)!.hash);
    const seen = readRewardTipsSeen(dir);
    expect(seen).toEqual({ [full.state.chainId!.toString('hex')]: { height: 2, hash: full.blocks[2].hash.toString('hex') } });
    // Every source hides the last block: each block verifies, the chain is older than one seen.
    const old = await chainServer(blocks.slice(0, 2));
    await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [old.url], seen }))
      .rejects.toMatchObject({ code: 'REWARD_CHAIN_ROLLBACK' });
    // A majority-signed fork: another block at height 2 (a later epoch), on the same block 0.
    const b1 = decodeRewardBlock(splitSignedRewardBlock(blocks[1]).body);
    const other = nextRewardBlock({ height: 1, hash: full.blocks[1].hash, epoch: b1.epoch }, E0 + 7, new Map([[relayFp[0], 9]]));
    const fork = await chainServer([...blocks.slice(0, 2), encodeSignedRewardBlock(other.body, [0, 1, 2].map((i) => signRewardBlock(other.body, ids[i].publicKey, sks[i])))]);
    await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [fork.url], seen }))
      .rejects.toMatchObject({ code: 'REWARD_CHAIN_ROLLBACK' });
    // The same chain, or one ahead of it, passes; a source behind is made up for by another.
    const ahead = await chainServer(chain(4));
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [ahead.url], seen })).state.height).toBe(3);
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [old.url, ahead.url], seen })).state.height).toBe(3);
    // Nothing remembered: nothing to compare with.
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [old.url], seen: {} })).state.height).toBe(1);
  });

  it('refuses an empty chain after a tip was verified under the same authority set: REWARD_CHAIN_ROLLBACK (SPEC §8.7.7)', async () => {
    const full = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [good.url] });
    const empty = await chainServer([]);
    const id = full.state.chainId!.toString('hex');
    const tip = { height: full.state.height, hash: full.blocks.at(-1)!.hash.toString('hex') };
    // Every source hides every block: no block 0, no chain id, yet a tip was read under these authorities.
    const dir = fs.mkdtempSync(path.join(tmp, 'seen-empty-'));
    await rememberRewardTip(dir, full.state.chainId!, tip.height, full.blocks.at(-1)!.hash, { authorities: rewardAuthoritySetId(authorities()) });
    const seen = readRewardTipsSeen(dir);
    expect(seen).toEqual({ [id]: { ...tip, authorities: rewardAuthoritySetId(authorities()) } });
    await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [empty.url], seen }))
      .rejects.toMatchObject({ code: 'REWARD_CHAIN_ROLLBACK', detail: { height: -1, seenHeight: 2 } });
    // The set is the same whatever the order of the config.
    await expect(fetchRewardChain({ authorities: [...authorities()].reverse(), periodSeconds: P, sources: [empty.url], seen }))
      .rejects.toMatchObject({ code: 'REWARD_CHAIN_ROLLBACK' });
    // Another source holding the blocks makes up for it.
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [empty.url, good.url], seen })).state.height).toBe(2);
    // Another authority set (a new network) is not compared; nor is an entry written before sets were kept.
    const other = parseAuthorityList([...authorityList().slice(0, 2), { ...authorityList()[2], identity: ed25519FromSeed(Buffer.alloc(32, 99)).publicKey.toString('hex') }]);
    expect((await fetchRewardChain({ authorities: other, periodSeconds: P, sources: [empty.url], seen })).state.height).toBe(-1);
    expect((await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [empty.url], seen: { [id]: tip } })).state.height).toBe(-1);
  });

  it('checks each distinct certificate once, however many pages repeat it (SPEC §8.7.5)', async () => {
    const blocks = chain(12);
    // A hostile source: one block per page (full, the page limit being 1 byte), each page with 1024 certificates (the three, repeated).
    const many = Array.from({ length: 1024 }, (_, i) => certs[i % 3]);
    const src = {
      label: 'hostile mirror',
      get: (pq: string) => {
        const from = Number(new URL(pq, 'http://x').searchParams.get('from'));
        const body = encodeRewardChainBundle(blocks.length, many, blocks.slice(from, from + 1));
        return Promise.resolve({ status: 200, headers: {}, body });
      },
    };
    certChecks.n = 0;
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [src], pageBytes: 1 });
    expect(r.state.height).toBe(11);
    expect(certChecks.n).toBeLessThanOrEqual(3);
  });

  it('a source that sends one block per page while more remain is left after its second page: REWARD_MALFORMED, short page (SPEC §8.7.5)', async () => {
    const blocks = chain(6);
    const asked: number[] = [];
    const slow = {
      label: 'hostile mirror',
      get: (pq: string) => {
        const from = Number(new URL(pq, 'http://x').searchParams.get('from'));
        asked.push(from);
        // The true chain length, one small block a page: a request per block.
        return Promise.resolve({ status: 200, headers: {}, body: encodeRewardChainBundle(blocks.length, certs, blocks.slice(from, from + 1)) });
      },
    };
    const honest = await chainServer(blocks);
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [slow, honest.url] });
    expect(asked).toEqual([0, 1]);
    expect(r.source).toBe(honest.url);
    expect(r.state.height).toBe(5);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatchObject({ source: 'hostile mirror', code: 'REWARD_MALFORMED' });
    expect(r.failures[0].reason).toMatch(/hostile mirror sent a short page: its 5\d\d bytes of blocks/);
    // Alone, the source fails with that code.
    await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [slow] })).rejects.toMatchObject({ code: 'REWARD_MALFORMED' });
  });

  it('a page cut short by the certificate bound (over 769 distinct certificates) is not a short page (SPEC §8.7.5)', async () => {
    const blocks = chain(3);
    // 1021 more genuine certificates of the keys that sign the blocks (other windows): a page of an
    // authority whose blocks span many re-certifications carries such.
    const more = Array.from({ length: 1021 }, (_, i) => makeKeyCertificate(ids[i % 3], sks[i % 3].publicKey, NOW - 86_400_000 - 1000 * (i + 1), NOW + 86_400_000));
    const src = {
      label: 'many certificates',
      get: (pq: string) => {
        const from = Number(new URL(pq, 'http://x').searchParams.get('from'));
        return Promise.resolve({ status: 200, headers: {}, body: encodeRewardChainBundle(blocks.length, [...certs, ...more], blocks.slice(from, from + 1)) });
      },
    };
    const r = await fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [src] });
    expect(r.state.height).toBe(2);
  });

  it('certificates that certify no signature of the page do not make a short page pass as cut by the certificate bound (SPEC §8.7.5)', async () => {
    const blocks = chain(3);
    const other = ed25519FromSeed(Buffer.alloc(32, 99));
    const paddings: [string, Buffer[]][] = [
      // 1021 distinct envelopes that do not even read.
      ['junk', Array.from({ length: 1021 }, (_, i) => Buffer.alloc(40, i % 256).fill(i >> 8, 0, 1))],
      // 1021 genuine certificates of a key that signs none of the page's blocks.
      ['another key', Array.from({ length: 1021 }, (_, i) => makeKeyCertificate(ids[i % 3], other.publicKey, NOW - 1000 * (i + 1), NOW + 86_400_000))],
      // 1021 envelopes naming the signing keys of the page, with a broken signature.
      ['forged', Array.from({ length: 1021 }, (_, i) => {
        const c = Buffer.from(makeKeyCertificate(ids[i % 3], sks[i % 3].publicKey, NOW - 1000 * (i + 1), NOW + 86_400_000));
        c[c.length - 1] ^= 1;
        return c;
      })],
    ];
    for (const [what, padding] of paddings) {
      const asked: number[] = [];
      const src = {
        label: `padded with ${what}`,
        get: (pq: string) => {
          const from = Number(new URL(pq, 'http://x').searchParams.get('from'));
          asked.push(from);
          return Promise.resolve({ status: 200, headers: {}, body: encodeRewardChainBundle(blocks.length, [...certs, ...padding], blocks.slice(from, from + 1)) });
        },
      };
      await expect(fetchRewardChain({ authorities: authorities(), periodSeconds: P, sources: [src] }), what).rejects.toMatchObject({ code: 'REWARD_MALFORMED' });
      expect(asked, what).toEqual([0, 1]);
    }
  });

  it('formats coins with 8 decimals', () => {
    expect(formatCoins(5_000_000_000n)).toBe('50.00000000');
    expect(formatCoins(1n)).toBe('0.00000001');
    expect(formatCoins(123_456_789_012n)).toBe('1234.56789012');
  });
});

describe('bitcloud rewards', () => {
  let config = '';
  beforeAll(() => {
    // A real consensus, signed by the three authorities, kept in the client's cache (fresh now).
    const descriptors = relayKeys.map((k, i) => verifyDescriptor(buildDescriptor({
      identity: k, onionKey: x25519Generate().publicKey, nickname: `relay${i}`, address: `10.0.0.${i + 1}`, orPort: 9000 + i,
      declaredBandwidth: 1_000_000, exitPolicy: [], family: [], roles: ['relay'], version: 'bitcloud-0.1.0', published: PS - 1000,
    })));
    const flags = FLAG_BITS.Running | FLAG_BITS.Valid;
    const votes = ids.map((id) => ({ authority: id.publicKey, knownFlags: 0x7f, entries: descriptors.map((d) => ({ descriptor: d, flags, measured: 100 })) }));
    const c = computeConsensus(votes, { totalAuthorities: 3, periodStart: PS, periodSeconds: P, lifetimePeriods: 3 });
    const env = sealEnvelope(c.body, ids.map((id, i) => makeSignature(c.body, id.publicKey, sks[i])), certs);
    const dataDir = path.join(tmp, 'client');
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(path.join(dataDir, CONSENSUS_CACHE_FILE), env);
    config = path.join(tmp, 'client.json');
    fs.writeFileSync(config, JSON.stringify({ authorities: authorityList(), dataDir }));
  });

  const run = async (o: Parameters<typeof rewardsCommand>[0]) => {
    const out: string[] = [], errs: string[] = [];
    const code = await rewardsCommand(o, { out: (s) => out.push(s), err: (s) => errs.push(s) });
    return { code, out: out.join('\n'), err: errs.join('\n') };
  };

  it('--json prints height, tip, total minted and balances sorted by balance, with nicknames', async () => {
    const r = await run({ config, json: true });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ ok: true, source: good.url, authorities: 3, threshold: 2, blocks: 3, height: 2, tipEpoch: E0 + 2, periodSeconds: P });
    expect(j.tipEpochStart).toBe(new Date((E0 + 2) * P * 1000).toISOString());
    expect(j.totalMinted).toEqual({ units: '15000000000', coins: '150.00000000' });
    expect(j.balances.map((b: { nickname: string }) => b.nickname)).toEqual(['relay0', 'relay1', 'relay2']);
    const units = j.balances.map((b: { units: string }) => BigInt(b.units));
    expect(units.reduce((x: bigint, y: bigint) => x + y, 0n)).toBe(15_000_000_000n);
    expect([...units].sort((a: bigint, b: bigint) => (a > b ? -1 : 1))).toEqual(units);
  });

  it('--relay shows one relay and its per-block allocations (text and JSON)', async () => {
    const j = JSON.parse((await run({ config, json: true, relay: 'relay2' })).out);
    // Relay 2 proved nothing at height 0, so it has allocations from blocks 1 and 2 only.
    expect(j.relay).toMatchObject({ fingerprint: relayFp[2], nickname: 'relay2' });
    expect(j.relay.allocations.map((a: { height: number }) => a.height)).toEqual([1, 2]);
    const t = await run({ config, relay: relayFp[2] });
    expect(t.code).toBe(0);
    expect(t.out).toContain('reward chain: 3 blocks (height 2)');
    expect(t.out).toContain(`relay relay2 ${relayFp[2]}`);
    expect(t.out).toMatch(/balance: \d+\.\d{8} coins \(\d+ units\) from 2 blocks/);
  });

  it('--relay takes a fingerprint only in its one spelling: upper case is refused, not converted (SPEC.md §3.1)', async () => {
    const r = await run({ config, json: true, relay: relayFp[2].toUpperCase() });
    expect(r.code).toBe(2);
    // SPEC.md §9.10: the one failure document of every command, {ok: false, error: {code, message}}.
    const doc = JSON.parse(r.out) as { ok: boolean; code?: unknown; error: { code: string; message: string } };
    expect(doc).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', message: expect.stringContaining('lowercase') as unknown } });
    expect(doc.code).toBeUndefined();
    expect(doc.error.message).not.toMatch(/^CONFIG_INVALID/);
    expect(r.err).toContain('lowercase');
  });

  it('prints a table of balances', async () => {
    const t = await run({ config });
    expect(t.out).toContain('total minted: 150.00000000 coins (15000000000 units)');
    expect(t.out).toMatch(/nickname\s+fingerprint\s+coins\s+units/);
    expect(t.out).toContain(relayFp[0].slice(0, 16));
  });

  it('records the tip with its authority set, and then refuses sources that serve an empty chain: REWARD_CHAIN_ROLLBACK, exit 1 (SPEC §8.7.7)', async () => {
    expect((await run({ config, json: true })).code).toBe(0);
    const seen = Object.values(readRewardTipsSeen(path.join(tmp, 'client')));
    expect(seen).toEqual([expect.objectContaining({ height: 2, authorities: rewardAuthoritySetId(authorities()) })]);
    const empty = await chainServer([]);
    const r = await run({ config, json: true, from: [empty.url] });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, error: { code: 'REWARD_CHAIN_ROLLBACK' } });
  });

  /**
   * SPEC.md §7.2 (State): with state.json.lock held by another live process past the 2 s a command
   * waits, `rewards` and `consensus` skip their guard state save without failing, and say so in
   * one stderr line; stdout keeps the --json document alone. (The set is made dirty by hand: these
   * relays are not guards, so nothing is sampled here.)
   */
  it('rewards and consensus say on stderr, never on stdout, when the guard state save is skipped for a held lock', async () => {
    const lock = path.join(tmp, 'client', 'state.json.lock');
    fs.writeFileSync(lock, String(process.pid));
    const dirty = vi.spyOn(GuardSet.prototype, 'dirty', 'get').mockReturnValue(true);
    try {
      const r = await run({ config, json: true });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ ok: true });
      expect(r.err.split('\n').filter((l) => l.includes('guard state'))).toEqual([
        expect.stringMatching(/^bitcloud rewards: guard state not saved \(IO_STATE_LOCKED\): .*state\.json\.lock is held by process \d+/),
      ]);
      const out: string[] = [], errs: string[] = [];
      const code = await consensusCommand({ config, json: true }, { out: (x) => out.push(x), err: (x) => errs.push(x) });
      expect(code).toBe(0);
      expect(out).toHaveLength(1);
      expect(JSON.parse(out[0])).toMatchObject({ ok: true });
      expect(errs.filter((l) => l.includes('guard state'))).toEqual([
        expect.stringMatching(/^bitcloud consensus: guard state not saved \(IO_STATE_LOCKED\): /),
      ]);
    } finally {
      dirty.mockRestore();
      fs.rmSync(lock, { force: true });
    }
  }, 30_000);

  /**
   * SPEC.md §7.2 (State): a command prints the "guard state not saved" line at its end: `consensus`
   * after its result, `rewards` after its failure (its save runs before either is printed).
   */
  it('the "guard state not saved" line comes last: after consensus\'s result and after rewards\'s failure', async () => {
    const lock = path.join(tmp, 'client', 'state.json.lock');
    fs.writeFileSync(lock, String(process.pid));
    const dirty = vi.spyOn(GuardSet.prototype, 'dirty', 'get').mockReturnValue(true);
    try {
      const lines: string[] = [];
      const io = { out: (x: string) => lines.push(`out ${x}`), err: (x: string) => lines.push(`err ${x}`) };
      expect(await consensusCommand({ config, json: true }, io)).toBe(0);
      expect(lines.some((l) => l.startsWith('out {'))).toBe(true);
      expect(lines.filter((l) => l.includes('guard state not saved'))).toHaveLength(1);
      expect(lines[lines.length - 1]).toMatch(/^err bitcloud consensus: guard state not saved \(IO_STATE_LOCKED\): /);

      lines.length = 0;
      const bad = await chainServer(chain(3, { signersAt: [0, [2]] }));
      expect(await rewardsCommand({ config, json: true, from: [bad.url] }, io)).toBe(1);
      expect(lines.some((l) => l.startsWith('out {') && l.includes('REWARD_TOO_FEW_SIGNATURES'))).toBe(true);
      expect(lines.some((l) => l.startsWith('err bitcloud rewards: REWARD_TOO_FEW_SIGNATURES'))).toBe(true);
      expect(lines.filter((l) => l.includes('guard state not saved'))).toHaveLength(1);
      expect(lines[lines.length - 1]).toMatch(/^err bitcloud rewards: guard state not saved \(IO_STATE_LOCKED\): /);
    } finally {
      dirty.mockRestore();
      fs.rmSync(lock, { force: true });
    }
  }, 30_000);

  it('exits non-zero with the REWARD_* code when no source gives a chain that verifies', async () => {
    const bad = await chainServer(chain(3, { signersAt: [0, [2]] }));
    const r = await run({ config, json: true, from: [bad.url] });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, error: { code: 'REWARD_TOO_FEW_SIGNATURES' }, failures: [{ source: bad.url }] });
    expect(r.err).toContain('REWARD_TOO_FEW_SIGNATURES');
  });
});
