// SPEC.md §6.4 / §6.4.1: the descriptor publisher retries failed authorities and, when one refuses
// the identity proof as stale, tells the proof keeper before signing the next descriptor.
// §6.10 "Descriptor upload timing": its waits are randomized, and a round nobody accepted is a warning.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { DescriptorPublisher, intervalDelayMs, retryDelayMs } from '../../src/dir/publish';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { asUploadResults, type ForwardedResult } from '../../src/hidden/upload';

/** An authority that answers every upload as a drained shared-address bucket does. */
async function refusingAuthority(servers: http.Server[]): Promise<AuthorityInfo> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'RATE_LIMITED', reason: 'too many uploads from this address; slow down' }));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { name: 'auth1', fingerprint: 'f'.repeat(40), url: `http://127.0.0.1:${port}` } as unknown as AuthorityInfo;
}

/**
 * The delays of the timers set while `run` runs that fall in [100, below): the publisher's next
 * round (the upload's own 10 s request timeout is a setTimeout too, and lies above every `below` used).
 */
async function timersSetDuring(run: () => Promise<unknown>, below: number): Promise<number[]> {
  const spy = vi.spyOn(globalThis, 'setTimeout');
  try {
    await run();
    return spy.mock.calls.map((c) => c[1] as number).filter((d) => d >= 100 && d < below);
  } finally {
    spy.mockRestore();
  }
}

describe('DescriptorPublisher', () => {
  const servers: http.Server[] = [];
  afterEach(async () => { await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r)))); });

  it('reports IDENTITY_POW_STALE to the keeper and uploads a newly built descriptor', async () => {
    const bodies: string[] = [];
    let refuse = true;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks).toString());
        if (refuse) {
          refuse = false;
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 'IDENTITY_POW_STALE', reason: 'identity proof anchor names no consensus this authority knows' }));
        } else {
          res.writeHead(200); res.end('ok');
        }
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const auth = { name: 'auth1', fingerprint: 'f'.repeat(40), url: `http://127.0.0.1:${port}` } as unknown as AuthorityInfo;
    let builds = 0;
    let staleCalls = 0;
    const pub = new DescriptorPublisher([auth], () => Buffer.from(`descriptor ${++builds} (stale reported ${staleCalls})`), pino({ level: 'silent' }), {
      intervalMs: 60_000, retryMs: 100, onPowStale: () => { staleCalls++; },
    });
    const first = await pub.republishNow();
    expect(first[0].ok).toBe(false);
    expect(first[0].detail).toContain('IDENTITY_POW_STALE');
    expect(staleCalls).toBe(1);
    const second = await pub.republishNow();
    pub.stop();
    expect(second[0].ok).toBe(true);
    expect(bodies).toEqual(['descriptor 1 (stale reported 0)', 'descriptor 2 (stale reported 1)']);
  });

  it('through a mirror, acts on IDENTITY_POW_STALE only as a refusal whose nack verified: a mirror\'s unsigned 5xx claiming it mines and signs nothing new, the same descriptor is retried (SPEC.md §6.4.1, §9.21.8)', async () => {
    const auth = { name: 'auth1', fingerprint: 'f'.repeat(64), url: 'http://127.0.0.1:1' } as unknown as AuthorityInfo;
    // What uploadOverCircuit resolves with (after checking acks and nacks): first a forged 503
    // IDENTITY_POW_STALE (a 5xx needs no nack), then that refusal as a 400 whose nack verified.
    const answers: ForwardedResult[][] = [
      [{ authority: auth.fingerprint, status: 503, code: 'IDENTITY_POW_STALE' }],
      [{ authority: auth.fingerprint, status: 400, code: 'IDENTITY_POW_STALE', nack: 'n'.repeat(88) }],
      [{ authority: auth.fingerprint, status: 200, ack: 'a'.repeat(88) }],
    ];
    const bodies: string[] = [];
    let builds = 0;
    let staleCalls = 0;
    const pub = new DescriptorPublisher([auth], () => Buffer.from(`descriptor ${++builds} (stale reported ${staleCalls})`), pino({ level: 'silent' }), {
      intervalMs: 60_000, retryMs: 100, random: () => 0, onPowStale: () => { staleCalls++; },
      upload: async (targets, raw) => { bodies.push(raw.toString()); return asUploadResults(targets, answers[bodies.length - 1]); },
    });
    const first = await pub.republishNow();
    expect(first[0].ok).toBe(false);
    expect(staleCalls).toBe(0);
    // The retry (after the retry wait) sends the same descriptor: nothing was mined or signed anew.
    for (let i = 0; i < 100 && bodies.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(bodies).toEqual(['descriptor 1 (stale reported 0)', 'descriptor 1 (stale reported 0)']);
    // The confirmed refusal makes the next round build a new descriptor on a new proof.
    for (let i = 0; i < 100 && bodies.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    pub.stop();
    expect(bodies).toEqual(['descriptor 1 (stale reported 0)', 'descriptor 1 (stale reported 0)', 'descriptor 2 (stale reported 1)']);
    expect(builds).toBe(2);
    expect(staleCalls).toBe(1);
  });

  it('retries the same descriptor soon after IDENTITY_POW_BUSY (503), which judged no proof, instead of signing a new one (SPEC.md §6.4.1)', async () => {
    const bodies: string[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks).toString());
        if (bodies.length === 1) {
          res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
          res.end(JSON.stringify({ code: 'IDENTITY_POW_BUSY', reason: 'too many identity proofs waiting to be checked; retry later' }));
        } else {
          res.writeHead(200); res.end('ok');
        }
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const auth = { name: 'auth1', fingerprint: 'f'.repeat(40), url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` } as unknown as AuthorityInfo;
    let builds = 0;
    const pub = new DescriptorPublisher([auth], () => Buffer.from(`descriptor ${++builds}`), pino({ level: 'silent' }), {
      intervalMs: 60_000, retryMs: 100, random: () => 0,
    });
    const first = await pub.republishNow();
    expect(first[0].detail).toContain('IDENTITY_POW_BUSY');
    for (let i = 0; i < 100 && bodies.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    pub.stop();
    expect(bodies).toEqual(['descriptor 1', 'descriptor 1']);
    expect(builds).toBe(1);
  });

  it('retries refused uploads after a random wait in [retry/2, 3·retry/2), not all at the same moment', async () => {
    const auth = await refusingAuthority(servers);
    const delays: number[] = [];
    for (const u of [0, 0.5]) {
      const pub = new DescriptorPublisher([auth], () => Buffer.from('descriptor'), pino({ level: 'silent' }), {
        intervalMs: 60_000, retryMs: 1000, random: () => u,
      });
      delays.push(...await timersSetDuring(async () => {
        const r = await pub.republishNow();
        expect(r[0].detail).toContain('RATE_LIMITED');
      }, 1500));
      pub.stop();
    }
    // Two nodes refused together come back 500 ms apart instead of in the same instant.
    expect(delays).toEqual([500, 1000]);
  });

  it('makes a retry due after the next full round that round, so a refusing authority gets one upload, not two', async () => {
    const auth = await refusingAuthority(servers);
    // Interval 1 s, so the next full round is due 0.901 s on (u = 0.99); the retry would be 1.49 s.
    const pub = new DescriptorPublisher([auth], () => Buffer.from('descriptor'), pino({ level: 'silent' }), {
      intervalMs: 1000, retryMs: 1000, random: () => 0.99, now: () => 1_000_000,
    });
    const delays = await timersSetDuring(() => pub.republishNow(), 5000);
    pub.stop();
    expect(delays).toEqual([901]);
  });

  it('retries a descriptor that failed to build within the publish interval, as it retries a refused upload', async () => {
    // Nothing is uploaded: the build fails first, so the authority needs no server.
    const auth = { name: 'auth1', fingerprint: 'f'.repeat(40), url: 'http://127.0.0.1:9' } as unknown as AuthorityInfo;
    // retryMs above the interval (an operator's short interval): the wait is the interval's [1/2, 3/2), not retryMs's.
    const pub = new DescriptorPublisher([auth], () => { throw new Error('identity proof mining failed'); }, pino({ level: 'silent' }), {
      intervalMs: 1000, retryMs: 30_000, random: () => 0.5,
    });
    const delays = await timersSetDuring(() => pub.republishNow(), 60_000);
    pub.stop();
    expect(delays).toEqual([1000]);
  });

  it('logs a round that no authority accepted as a warning, not as published', async () => {
    const auth = await refusingAuthority(servers);
    const lines: { level: number; msg: string }[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }); cb(); } });
    const pub = new DescriptorPublisher([auth], () => Buffer.from('descriptor'), pino({ level: 'info' }, sink), { intervalMs: 60_000, retryMs: 1000 });
    await pub.republishNow();
    pub.stop();
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.msg)).not.toContain('descriptor published');
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, msg: 'descriptor refused by every authority; will retry' }));
  });

  it('runs one round at a time: a republish during a slow build follows that round, and nothing is built or uploaded after stop()', async () => {
    vi.useFakeTimers();
    try {
      const auth = { name: 'auth1', fingerprint: 'f'.repeat(40), url: 'http://127.0.0.1:9' } as unknown as AuthorityInfo;
      let building = 0, mostAtOnce = 0, builds = 0;
      const uploads: number[] = [];
      const pub = new DescriptorPublisher([auth], async () => {
        builds++;
        mostAtOnce = Math.max(mostAtOnce, ++building);
        await new Promise((r) => setTimeout(r, 100)); // mining the identity proof
        building--;
        return Buffer.from('descriptor');
      }, pino({ level: 'silent' }), {
        intervalMs: 1000, retryMs: 1000, random: () => 0,
        upload: (targets) => { uploads.push(Date.now()); return Promise.resolve(targets.map((a) => ({ authority: a.name, ok: true, detail: 'accepted' }))); },
      });
      const t0 = Date.now();
      pub.start();
      await vi.advanceTimersByTimeAsync(10);
      const again = pub.republishNow();
      await vi.advanceTimersByTimeAsync(110);
      pub.stop();
      const before = uploads.length;
      await vi.advanceTimersByTimeAsync(10_000);
      await again;
      expect(mostAtOnce).toBe(1);
      expect(uploads.map((t) => t - t0)).toEqual([100]);
      expect(uploads).toHaveLength(before);
      expect(builds).toBe(2); // the round asked for at 10 ms began when the first ended; none after stop()
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps the randomized waits within their bounds', () => {
    expect(retryDelayMs(30_000, 0)).toBe(15_000);
    expect(retryDelayMs(30_000, 0.5)).toBe(30_000);
    expect(retryDelayMs(30_000, 0.999_999)).toBeLessThan(45_000);
    expect(intervalDelayMs(3_600_000, 0)).toBe(3_600_000);
    expect(intervalDelayMs(3_600_000, 0.999_999)).toBeGreaterThan(3_240_000);
  });
});
