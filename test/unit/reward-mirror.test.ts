// SPEC.md §6.10.1: a relay's mirror passes the reward chain on from the authorities, shares one
// fetch among the clients asking within the TTL, and tries the next authority when one fails.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { REWARD_MIRROR_DEADLINE_MS, REWARD_MIRROR_MAX_ANSWERS, REWARD_MIRROR_MAX_BYTES, REWARD_MIRROR_MAX_FETCHES, REWARD_MIRROR_MAX_PER_ADDRESS, RewardMirror } from '../../relay/reward-mirror';
import { HTTP_IDLE_TIMEOUT_MS } from '../../src/ops/http-body';
import { EventEmitter } from 'node:events';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { FETCHER_HEADER } from '../../src/dir/fetch';

const servers: http.Server[] = [];
afterEach(async () => { for (const s of servers.splice(0)) await new Promise((r) => s.close(r)); });

async function authority(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ info: AuthorityInfo; hits: string[] }> {
  const hits: string[] = [];
  const s = http.createServer((req, res) => { hits.push(`${req.url} ${String(req.headers[FETCHER_HEADER])}`); answer(req, res); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  const port = (s.address() as AddressInfo).port;
  return { info: { name: `a${port}`, identity: Buffer.alloc(32), fingerprint: '00'.repeat(32), host: '127.0.0.1', port, url: `http://127.0.0.1:${port}` }, hits };
}

describe('RewardMirror', () => {
  it('passes the bundle on unchanged, declares itself a mirror, and serves repeats within the TTL from one fetch', async () => {
    const a = await authority((req, res) => { res.writeHead(200); res.end(Buffer.from(`bundle ${req.url}`)); });
    let now = 1_000_000;
    const m = new RewardMirror([a.info], { ttlMs: 10_000, now: () => now });
    const [x, y] = await Promise.all([m.bundle(0), m.bundle(0)]);
    expect(x.toString()).toBe('bundle /bitcloud/rewards?from=0');
    expect(y).toBe(x);
    expect(a.hits).toEqual(['/bitcloud/rewards?from=0 mirror']);
    now += 9_999;
    await m.bundle(0);
    expect(a.hits).toHaveLength(1);
    expect((await m.bundle(7)).toString()).toBe('bundle /bitcloud/rewards?from=7');
    now += 2;
    await m.bundle(0);
    expect(a.hits).toHaveLength(3);
  });

  it('drops answers once they are past the TTL, without waiting for the same `from` (SPEC §6.10.1)', async () => {
    const a = await authority((req, res) => { res.writeHead(200); res.end(Buffer.alloc(1000, 1)); });
    let now = 1_000_000;
    const m = new RewardMirror([a.info], { ttlMs: 20, now: () => now });
    for (let i = 0; i < 64; i++) await m.bundle(i);
    expect(m.held).toEqual({ entries: 64, bytes: 64_000 });
    now += 21;
    // Nobody asks again: the expired answers go on their own.
    await vi.waitFor(() => expect(m.held).toEqual({ entries: 0, bytes: 0 }), { timeout: 5000 });
  });

  it('keeps the answers held within a byte budget (REWARD_MIRROR_MAX_BYTES)', async () => {
    const size = 8 * 1024 * 1024;
    const a = await authority((req, res) => { res.writeHead(200); res.end(Buffer.alloc(size, 2)); });
    const m = new RewardMirror([a.info], { now: () => 1_000_000 });
    for (let i = 0; i < 12; i++) expect((await m.bundle(i)).length).toBe(size);
    expect(m.held.bytes).toBeLessThanOrEqual(REWARD_MIRROR_MAX_BYTES);
    expect(m.held.entries).toBe(REWARD_MIRROR_MAX_BYTES / size);
  });

  it('keeps a fetch in flight shared when answers that arrived are dropped for the byte budget', async () => {
    const mib = 1024 * 1024;
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const a = await authority((req, res) => {
      const from = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('from'));
      if (from === 0) { void held.then(() => { res.writeHead(200); res.end('slow'); }); return; }
      res.writeHead(200);
      res.end(Buffer.alloc((from === 1 ? 40 : 30) * mib, from));
    });
    const m = new RewardMirror([a.info], { now: () => 1_000_000 });
    const slow = m.bundle(0);
    try {
      await m.bundle(1);
      await m.bundle(2); // over the budget: the answer of from=1 goes, the fetch of from=0 stays
      expect(m.held).toEqual({ entries: 2, bytes: 30 * mib });
    } finally {
      release();
    }
    expect((await slow).toString()).toBe('slow');
    expect((await m.bundle(0)).toString()).toBe('slow');
    expect(a.hits.filter((h) => h.startsWith('/bitcloud/rewards?from=0 '))).toHaveLength(1);
  });

  it('tries the next authority when one fails; with none, REWARD_NOT_AVAILABLE, and the failure is not kept', async () => {
    let up = false;
    const bad = await authority((_req, res) => { res.writeHead(500); res.end('{"code":"X","reason":"down"}'); });
    const good = await authority((_req, res) => { if (!up) { res.writeHead(404); res.end('{}'); return; } res.writeHead(200); res.end('ok'); });
    const m = new RewardMirror([bad.info, good.info]);
    await expect(m.bundle(0)).rejects.toMatchObject({ code: 'REWARD_NOT_AVAILABLE' });
    up = true;
    expect((await m.bundle(0)).toString()).toBe('ok');
    expect(bad.hits.length).toBeGreaterThanOrEqual(1);
  });
});

describe('RewardMirror fetches in flight', () => {
  it(`starts at most REWARD_MIRROR_MAX_FETCHES authority fetches at once; a client asking more distinct \`from\` values meanwhile gets REWARD_NOT_AVAILABLE at once (SPEC §6.10.1)`, async () => {
    const waiting: http.ServerResponse[] = [];
    const a = await authority((_req, res) => { waiting.push(res); });
    const m = new RewardMirror([a.info], { now: () => 1_000_000 });
    const results = Array.from({ length: 100 }, (_, i) => m.bundle(i).then(() => 'ok', (e: { code?: string }) => e.code));
    // The authority answers nothing until the end: requests past the cap that waited on a fetch
    // would never settle here (the test would hang), so settling proves they were refused at once.
    const early = await Promise.all(results.slice(REWARD_MIRROR_MAX_FETCHES));
    expect(early).toEqual(Array(100 - REWARD_MIRROR_MAX_FETCHES).fill('REWARD_NOT_AVAILABLE'));
    await vi.waitFor(() => expect(waiting).toHaveLength(REWARD_MIRROR_MAX_FETCHES), { timeout: 5000 });
    for (const res of waiting) { res.writeHead(200); res.end('late'); }
    expect(await Promise.all(results.slice(0, REWARD_MIRROR_MAX_FETCHES))).toEqual(Array(REWARD_MIRROR_MAX_FETCHES).fill('ok'));
    expect(a.hits).toHaveLength(REWARD_MIRROR_MAX_FETCHES);
    // The fetches are done: the next distinct `from` is fetched again.
    const next = m.bundle(500);
    await vi.waitFor(() => expect(waiting).toHaveLength(REWARD_MIRROR_MAX_FETCHES + 1), { timeout: 5000 });
    waiting[REWARD_MIRROR_MAX_FETCHES].writeHead(200);
    waiting[REWARD_MIRROR_MAX_FETCHES].end('next');
    expect((await next).toString()).toBe('next');
  });
});

describe('RewardMirror.close', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('clears the sweeper and the answers held; a later bundle() rejects with REWARD_NOT_AVAILABLE without asking an authority', async () => {
    const a = await authority((_req, res) => { res.writeHead(200); res.end('ok'); });
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const m = new RewardMirror([a.info]);
    expect((await m.bundle(0)).toString()).toBe('ok');
    expect(vi.getTimerCount()).toBe(1); // the sweeper
    m.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(m.held).toEqual({ entries: 0, bytes: 0 });
    await expect(m.bundle(0)).rejects.toMatchObject({ code: 'REWARD_NOT_AVAILABLE' });
    await expect(m.bundle(1)).rejects.toMatchObject({ code: 'REWARD_NOT_AVAILABLE' });
    expect(vi.getTimerCount()).toBe(0);
    expect(a.hits).toHaveLength(1);
  });
});

/** An answer whose reader reads nothing: it is written, and never finishes. */
function slowReader() {
  return Object.assign(new EventEmitter(), {
    status: 0, headersSent: false, destroyed: false, writableFinished: false, code: '',
    writeHead(this: { status: number; headersSent: boolean }, status: number) { this.status = status; this.headersSent = true; return this; },
    end(this: { code: string }, body?: unknown) { if (typeof body === 'string' && body.startsWith('{')) this.code = (JSON.parse(body) as { code: string }).code; return this; },
    setHeader() { return this; },
    destroy(this: EventEmitter & { destroyed: boolean }) { if (!this.destroyed) { this.destroyed = true; this.emit('close'); } return this; },
  });
}
const ask = (m: RewardMirror, res: ReturnType<typeof slowReader>, remote: string) =>
  m.serve({ method: 'GET', url: '/bitcloud/rewards?from=0', socket: { remoteAddress: remote, localAddress: '10.0.0.1' } } as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);

describe('RewardMirror answer places (SPEC.md §6.10.1)', () => {
  it(`holds at most ${REWARD_MIRROR_MAX_PER_ADDRESS} answers per client address and ${REWARD_MIRROR_MAX_ANSWERS} in all until they are read; past that 503 RATE_LIMITED`, async () => {
    const a = await authority((_req, res) => { res.writeHead(200); res.end('bundle'); });
    const m = new RewardMirror([a.info]);
    const held = Array.from({ length: REWARD_MIRROR_MAX_PER_ADDRESS }, () => slowReader());
    for (const r of held) await ask(m, r, '192.0.2.7');
    expect(held.map((r) => r.status)).toEqual(held.map(() => 200));
    const fifth = slowReader();
    await ask(m, fifth, '192.0.2.7');
    expect([fifth.status, fifth.code]).toEqual([503, 'RATE_LIMITED']);
    const other = slowReader();
    await ask(m, other, '198.51.100.1');
    expect(other.status).toBe(200);
    held[0].emit('finish');
    const again = slowReader();
    await ask(m, again, '192.0.2.7');
    expect(again.status).toBe(200);
    m.close();
  });

  it('cuts an answer not handed on in full within its deadline, and frees its place', async () => {
    const a = await authority((_req, res) => { res.writeHead(200); res.end('bundle'); });
    const m = new RewardMirror([a.info], { answerDeadlineMs: 50 });
    const held = Array.from({ length: REWARD_MIRROR_MAX_PER_ADDRESS }, () => slowReader());
    for (const r of held) await ask(m, r, '192.0.2.7');
    await vi.waitFor(() => expect(held.every((r) => r.destroyed)).toBe(true), { timeout: 5000 });
    const next = slowReader();
    await ask(m, next, '192.0.2.7');
    expect(next.status).toBe(200);
    m.close();
  });
});

describe('RewardMirror overall deadline (SPEC.md §8.7.5)', () => {
  it('gives all the authorities together one deadline, below the dir port idle timeout; past it 504 REWARD_FETCH_TIMEOUT and no further authority is asked', async () => {
    expect(REWARD_MIRROR_DEADLINE_MS).toBeLessThan(HTTP_IDLE_TIMEOUT_MS);
    const silent: http.ServerResponse[] = [];
    const slow = await Promise.all([1, 2, 3].map(() => authority((_req, res) => { silent.push(res); })));
    const m = new RewardMirror(slow.map((a) => a.info), { timeoutMs: 250, deadlineMs: 300 });
    try {
      const t0 = performance.now();
      await expect(m.bundle(0)).rejects.toMatchObject({ code: 'REWARD_FETCH_TIMEOUT' });
      // Without the overall deadline each of the three would get its 250 ms in turn (750 ms).
      expect(performance.now() - t0).toBeLessThan(600);
      expect(slow.reduce((n, a) => n + a.hits.length, 0)).toBeLessThanOrEqual(2);
      const res = slowReader();
      await ask(m, res, '192.0.2.9');
      expect([res.status, res.code]).toEqual([504, 'REWARD_FETCH_TIMEOUT']);
    } finally {
      m.close();
      for (const r of silent) r.destroy();
    }
  });

  it('answers 504 REWARD_FETCH_TIMEOUT every time the deadline cuts the last try short, however its timer falls against the clock', async () => {
    // One silent authority whose try the deadline cuts short (deadline below the per-try time):
    // the try ends by the deadline, so every fetch is REWARD_FETCH_TIMEOUT, never 503
    // REWARD_NOT_AVAILABLE. Deadlines with a fraction of a millisecond make the try's timer fire
    // at times that fall either side of the deadline on performance.now().
    const silent: http.ServerResponse[] = [];
    const a = await authority((_req, res) => { silent.push(res); });
    const codes: string[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const m = new RewardMirror([a.info], { timeoutMs: 1000, deadlineMs: 15 + (i % 10) / 10 + 0.05 });
        try {
          codes.push(await m.bundle(0).then(() => 'ok', (e: { code?: string }) => e.code ?? '?'));
        } finally {
          m.close();
        }
      }
      expect(codes.filter((c) => c !== 'REWARD_FETCH_TIMEOUT')).toEqual([]);
      expect(a.hits).toHaveLength(40);
    } finally {
      for (const r of silent) r.destroy();
    }
  });
});
