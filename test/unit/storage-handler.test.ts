import { describe, it, expect, afterEach, vi } from 'vitest';
import fsp from 'node:fs/promises';
import net from 'node:net';
import { Duplex } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { ShareStore, quotaCharge } from '../../storage/share-store';
import { handleRequest, type PolicyCheck } from '../../storage/handler';
import { serveStorageStream } from '../../storage/session';
import { StorageChannel } from '../../src/storage/channel';
import { shareId } from '../../src/storage/share';
import { auditRoot, verifyAuditAnswer } from '../../src/storage/audit';
import { auditProof, decodeResponse, encodeRequest } from '../../src/storage/protocol';
import { encodeFrame, FrameDecoder } from '../../src/storage/framing';
import { err, isBitcloudError } from '../../src/errors';
import { randomBytes } from 'node:crypto';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function store(quotaBytes = 1 << 20): Promise<ShareStore> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-handler-'));
  const s = await ShareStore.open({ dir, quotaBytes });
  cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }), () => s.close());
  return s;
}

/** Once at least `n` answer frames have been written to `out`, each answer by its request id. */
async function answersIn(out: Buffer[], n: number) {
  for (;;) {
    const frames = new FrameDecoder().push(Buffer.concat(out));
    if (frames.length >= n) return new Map(frames.map((f) => { const d = decodeResponse(f); return [d.reqId, d.res] as const; }));
    await new Promise<void>((r) => setImmediate(r));
  }
}

const data = Buffer.from('share bytes');
const id = shareId(data);
const ctx = { viaCircuit: true };

describe('storage request handler (SPEC §9.6)', () => {
  it('answers every request type', async () => {
    const s = await store();
    expect((await handleRequest(s, { type: 'put', id, data, leaseSeconds: 60 }, ctx)).type).toBe('put');
    expect(await handleRequest(s, { type: 'get', id, offset: 6, length: 0 }, ctx)).toEqual({ type: 'get', offset: 6, data: Buffer.from('bytes'), totalSize: 11 });
    expect(await handleRequest(s, { type: 'has', ids: [id, Buffer.alloc(32)] }, ctx)).toEqual({ type: 'has', present: [true, false] });
    const nonce = Buffer.alloc(16, 1);
    expect(await handleRequest(s, { type: 'audit', id, nonce }, ctx)).toEqual({ type: 'audit', proof: auditProof(nonce, data) });
    expect(await handleRequest(s, { type: 'stat' }, ctx)).toMatchObject({ type: 'stat', capacity: 1 << 20, used: quotaCharge(11), shares: 1 });
    const r = await handleRequest(s, { type: 'renew', ids: [id], leaseSeconds: 120 }, ctx);
    expect(r.type === 'renew' && r.expiresAt[0] > 0).toBe(true);
  });

  it('failures become error responses with stable codes, counted by code', async () => {
    const s = await store(4);
    expect(await handleRequest(s, { type: 'put', id, data: Buffer.from('other'), leaseSeconds: 0 }, ctx)).toMatchObject({ type: 'error', code: 'SHARE_HASH_MISMATCH' });
    expect(await handleRequest(s, { type: 'put', id, data, leaseSeconds: 0 }, ctx)).toMatchObject({ type: 'error', code: 'STORAGE_FULL' });
    expect(await handleRequest(s, { type: 'get', id, offset: 0, length: 0 }, ctx)).toMatchObject({ type: 'error', code: 'SHARE_NOT_FOUND' });
    const errors = (await s.metrics.errors.get()).values.map((v) => v.labels.code).sort();
    expect(errors).toEqual(['SHARE_HASH_MISMATCH', 'SHARE_NOT_FOUND', 'STORAGE_FULL']);
  });

  it('the policy hook sees every request and can refuse it', async () => {
    const s = await store();
    const seen: string[] = [];
    const policy: PolicyCheck = (req, c) => {
      seen.push(`${req.type}:${c.viaCircuit}`);
      if (req.type === 'put' && !c.viaCircuit) throw err('POLICY_DENIED', 'unmoderated node: uploads only on circuits');
    };
    expect(await handleRequest(s, { type: 'put', id, data, leaseSeconds: 0 }, { viaCircuit: false }, policy)).toMatchObject({ type: 'error', code: 'POLICY_DENIED' });
    expect((await handleRequest(s, { type: 'put', id, data, leaseSeconds: 0 }, { viaCircuit: true }, policy)).type).toBe('put');
    expect(seen).toEqual(['put:false', 'put:true']);
  });
});

describe('storage stream serving over a real socket on 127.0.0.1', () => {
  async function serve(s: ShareStore): Promise<number> {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      void serveStorageStream(sock, s, { ctx: { viaCircuit: false } });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => { for (const x of sockets) x.destroy(); srv.close(r); }));
    return (srv.address() as net.AddressInfo).port;
  }

  async function connect(port: number): Promise<net.Socket> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    cleanup.push(() => sock.destroy());
    return sock;
  }

  it('pipelined requests through StorageChannel', async () => {
    const s = await store();
    const ch = new StorageChannel(await connect(await serve(s)));
    const [put, stat] = await Promise.all([ch.request({ type: 'put', id, data, leaseSeconds: 0 }), ch.request({ type: 'stat' })]);
    expect(put.expiresAt).toBeGreaterThan(0);
    expect(stat.type).toBe('stat');
    expect((await ch.request({ type: 'get', id, offset: 0, length: 5 })).data.toString()).toBe('share');
    expect(await ch.request({ type: 'has', ids: [id] })).toEqual({ type: 'has', present: [true] });
    try {
      await ch.request({ type: 'get', id: Buffer.alloc(32), offset: 0, length: 0 });
      expect.unreachable();
    } catch (e) {
      expect(isBitcloudError(e, 'SHARE_NOT_FOUND')).toBe(true);
    }
    ch.close();
  });

  it('an undecodable request gets an error response and the stream goes on', async () => {
    const s = await store();
    const sock = await connect(await serve(s));
    const dec = new FrameDecoder();
    const replies: Buffer[] = [];
    sock.on('data', (c) => replies.push(...dec.push(c)));
    sock.write(encodeFrame(Buffer.from([0x08, 0x05, 0xff, 0xff])));
    sock.write(encodeFrame(encodeRequest(6, { type: 'stat' })));
    await new Promise<void>((r) => { const t = setInterval(() => { if (replies.length >= 2) { clearInterval(t); r(); } }, 5); });
    expect(decodeResponse(replies[0]).res).toMatchObject({ type: 'error', code: 'STORAGE_BAD_REQUEST' });
    expect(decodeResponse(replies[1])).toMatchObject({ reqId: 6, res: { type: 'stat' } });
  });

  it('garbage framing gets one error and a close; other streams keep being served', async () => {
    const s = await store();
    const port = await serve(s);
    const bad = await connect(port);
    const got: Buffer[] = [];
    bad.on('data', (c) => got.push(c));
    const closed = new Promise((r) => bad.once('close', r));
    bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await closed;
    const frames = new FrameDecoder().push(Buffer.concat(got));
    expect(decodeResponse(frames[0])).toMatchObject({ reqId: 0, res: { type: 'error', code: 'STORAGE_FRAME_TOO_LARGE' } });
    const ch = new StorageChannel(await connect(port));
    expect((await ch.request({ type: 'stat' })).type).toBe('stat');
    ch.close();
  });
});

describe('hostile storage peers (SPEC.md §9.6.1)', () => {
  it('a declared frame length allocates nothing before its bytes arrive', () => {
    const before = process.memoryUsage().arrayBuffers;
    const decoders: FrameDecoder[] = [];
    const header = Buffer.alloc(5);
    header.writeUInt32BE(16 * 1024 * 1024, 0); // 16 MiB declared, 1 byte sent
    for (let i = 0; i < 64; i++) { const d = new FrameDecoder(); d.push(header); decoders.push(d); }
    // 64 × 16 MiB would be 1 GiB; what is held is bounded by what arrived (one small first buffer each).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    expect(decoders.every((d) => d.buffered === 5)).toBe(true);
  });

  it('partly received frames of all streams share a per-node budget; past it the stream fails with STORAGE_BUSY', async () => {
    const { FrameBudget } = await import('../../src/storage/framing');
    const budget = new FrameBudget(1000);
    const a = new FrameDecoder(undefined, budget);
    const b = new FrameDecoder(undefined, budget);
    const h = Buffer.alloc(4); h.writeUInt32BE(800, 0);
    a.push(Buffer.concat([h, Buffer.alloc(700)]));
    expect(budget.used).toBe(700);
    expect(() => b.push(Buffer.concat([h, Buffer.alloc(400)]))).toThrow(/STORAGE_BUSY/);
    a.push(Buffer.alloc(100)); // a's frame completes: its bytes go back
    expect(budget.used).toBe(0);
    a.push(Buffer.concat([h, Buffer.alloc(10)]));
    a.close(); // its stream ended
    expect(budget.used).toBe(0);
  });

  it('a storage stream on which nothing happens is closed after the idle timeout', async () => {
    const s = await store();
    const srv = net.createServer((sock) => { void serveStorageStream(sock, s, { ctx: { viaCircuit: true }, idleMs: 200 }); });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => srv.close(r)));
    const sock = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    sock.on('error', () => {});
    cleanup.push(() => sock.destroy());
    await new Promise<void>((r) => sock.once('close', () => r()));
    expect(sock.destroyed).toBe(true);
  });

  it('a requester that never reads its answers is closed after the idle timeout (an answer waiting for it is not work)', async () => {
    const s = await store();
    const big = Buffer.alloc(64 * 1024, 7);
    const bigId = shareId(big);
    await handleRequest(s, { type: 'put', id: bigId, data: big, leaseSeconds: 60 }, ctx);
    // The peer's side: requests arrive, answers are never taken (the write callback never runs),
    // as on a circuit whose client sends no SENDME.
    const stream = new Duplex({ read() {}, write() {}, writableHighWaterMark: 1024 });
    const served = serveStorageStream(stream, s, { ctx, idleMs: 200 });
    for (let reqId = 1; reqId <= 8; reqId++) stream.push(encodeFrame(encodeRequest(reqId, { type: 'get', id: bigId, offset: 0, length: 0 })));
    const closed = new Promise<string>((r) => stream.once('close', () => r('closed')));
    const stuck = new Promise<string>((r) => { const t = setTimeout(() => r('still open'), 30_000); cleanup.push(() => clearTimeout(t)); });
    expect(await Promise.race([closed, stuck])).toBe('closed');
    await served;
    cleanup.push(() => stream.destroy());
  });

  it('answers not taken by their requesters share a per-node budget; past it a get is answered STORAGE_BUSY and the stream goes on (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const { FrameBudget } = await import('../../src/storage/framing');
    const answerBudget = new FrameBudget(256 * 1024);
    const big = Buffer.alloc(64 * 1024, 7);
    const bigId = shareId(big);
    await handleRequest(s, { type: 'put', id: bigId, data: big, leaseSeconds: 60 }, ctx);
    const tick = () => new Promise<void>((r) => setImmediate(r));
    const get = (reqId: number) => encodeFrame(encodeRequest(reqId, { type: 'get', id: bigId, offset: 0, length: 0 }));
    // Stream A never takes an answer (as on a circuit whose client sends no SENDME): its 8 answers
    // would hold 8 × 64 KiB; the budget holds 3 of them, the others are STORAGE_BUSY.
    const a = new Duplex({ read() {}, write() {} });
    cleanup.push(() => a.destroy());
    const servedA = serveStorageStream(a, s, { ctx, answerBudget, idleMs: 60_000 });
    for (let reqId = 1; reqId <= 8; reqId++) a.push(get(reqId));
    while (a.writableLength < 3 * big.length) await tick();
    for (let i = 0; i < 20; i++) await tick();
    expect(answerBudget.used).toBeLessThanOrEqual(answerBudget.maxBytes);
    expect(answerBudget.used).toBeGreaterThan(2 * big.length);
    // Stream B reads everything: its get, over the budget, fails alone with STORAGE_BUSY; its stat goes through.
    const out: Buffer[] = [];
    const b = new Duplex({ read() {}, write(chunk: Buffer, _enc, cb) { out.push(chunk); cb(); } });
    cleanup.push(() => b.destroy());
    void serveStorageStream(b, s, { ctx, answerBudget });
    b.push(get(1));
    b.push(encodeFrame(encodeRequest(2, { type: 'stat' })));
    const answers = (n: number) => answersIn(out, n);
    const first = await answers(2);
    expect(first.get(1)).toMatchObject({ type: 'error', code: 'STORAGE_BUSY' });
    expect(first.get(2)?.type).toBe('stat');
    // Once A is gone its answers go back to the budget, and B's next get is served.
    a.destroy();
    await servedA;
    await tick();
    expect(answerBudget.used).toBe(0);
    b.push(get(3));
    const second = await answers(3);
    expect(second.get(3)).toMatchObject({ type: 'get', totalSize: big.length });
    expect(answerBudget.used).toBe(0);
  });

  it('with the answer budget used up, small answers (put, renew, stat) still go out: a put the node made is never answered STORAGE_BUSY (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const { FrameBudget } = await import('../../src/storage/framing');
    const answerBudget = new FrameBudget(64 * 1024);
    expect(answerBudget.take(answerBudget.maxBytes)).toBe(true); // other streams' unread answers hold it all
    const small = Buffer.from('a small share');
    const smallId = shareId(small);
    const out: Buffer[] = [];
    const b = new Duplex({ read() {}, write(chunk: Buffer, _enc, cb) { out.push(chunk); cb(); } });
    cleanup.push(() => b.destroy());
    void serveStorageStream(b, s, { ctx, answerBudget });
    b.push(encodeFrame(encodeRequest(1, { type: 'put', id: smallId, data: small, leaseSeconds: 60 })));
    const answers = (n: number) => answersIn(out, n);
    expect((await answers(1)).get(1)?.type).toBe('put');
    b.push(encodeFrame(encodeRequest(2, { type: 'renew', ids: [smallId], leaseSeconds: 120 })));
    b.push(encodeFrame(encodeRequest(3, { type: 'stat' })));
    const got = await answers(3);
    expect(got.get(2)?.type).toBe('renew');
    expect(got.get(3)?.type).toBe('stat');
    expect(answerBudget.used).toBe(answerBudget.maxBytes);
  });

  it('once serving has ended (the requester ended its side, or a framing error), a peer that never reads has the stream destroyed after the idle timeout (SPEC.md §9.6.1)', async () => {
    const s = await store();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanup.push(() => vi.useRealTimers());
    const idleTimeouts = async () => (await s.metrics.errors.get()).values.find((v) => v.labels.code === 'STORAGE_IDLE_TIMEOUT')?.value ?? 0;
    for (const ending of ['requester ended', 'framing error'] as const) {
      // The peer's side: nothing written is ever taken (the write callback never runs).
      const stream = new Duplex({ read() {}, write() {} });
      cleanup.push(() => stream.destroy());
      const served = serveStorageStream(stream, s, { ctx, idleMs: 200 });
      if (ending === 'requester ended') {
        stream.push(encodeFrame(encodeRequest(1, { type: 'stat' })));
        stream.push(null);
      } else {
        stream.push(Buffer.alloc(4)); // length 0: STORAGE_FRAME_MALFORMED
      }
      await served;
      expect(stream.writableLength, ending).toBeGreaterThan(0); // its answer, never taken
      const before = await idleTimeouts();
      vi.advanceTimersByTime(199);
      expect(stream.destroyed, ending).toBe(false);
      vi.advanceTimersByTime(1);
      expect(stream.destroyed, ending).toBe(true);
      expect(await idleTimeouts(), ending).toBe(before + 1);
    }
  });

  it('a requester that takes its answers one at a time, each within the idle timeout, keeps its stream (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const big = Buffer.alloc(64 * 1024, 7);
    const bigId = shareId(big);
    await handleRequest(s, { type: 'put', id: bigId, data: big, leaseSeconds: 60 }, ctx);
    // Only the idle timer is driven by hand (the store's disk work runs for real).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanup.push(() => vi.useRealTimers());
    // The peer's side: each answer is taken when the test calls its write callback.
    const waiting: Array<() => void> = [];
    const stream = new Duplex({ read() {}, write(_chunk, _enc, cb) { waiting.push(cb); }, writableHighWaterMark: 1024 });
    cleanup.push(() => stream.destroy());
    const served = serveStorageStream(stream, s, { ctx, idleMs: 200 });
    for (let reqId = 1; reqId <= 3; reqId++) stream.push(encodeFrame(encodeRequest(reqId, { type: 'get', id: bigId, offset: 0, length: 0 })));
    const tick = () => new Promise<void>((r) => setImmediate(r));
    // All three answers handled and written, none taken yet.
    while (stream.writableLength < 3 * big.length) await tick();
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(150);
      expect(stream.destroyed, `before answer ${i + 1} is taken`).toBe(false);
      expect(waiting).toHaveLength(1);
      waiting.shift()!(); // the requester takes one answer (on a circuit: its SENDMEs came back)
      await tick();
    }
    expect(stream.writableLength).toBe(0);
    // Then nothing more happens: the stream idles out.
    vi.advanceTimersByTime(200);
    await served;
    expect(stream.destroyed).toBe(true);
  });

  it('a requester that ends and destroys its stream while a put is being handled still lets the serve finish and give back its partial frame\'s bytes (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const { FrameBudget } = await import('../../src/storage/framing');
    const budget = new FrameBudget(1 << 20);
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let seen!: () => void;
    const reached = new Promise<void>((r) => { seen = r; });
    const policyCheck: PolicyCheck = async (req) => { if (req.type === 'put') { seen(); await held; } };
    const stream = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    stream.on('error', () => {});
    cleanup.push(() => stream.destroy());
    const served = serveStorageStream(stream, s, { ctx, policyCheck, frameBudget: budget, idleMs: 60_000 });
    stream.push(encodeFrame(encodeRequest(1, { type: 'put', id, data, leaseSeconds: 60 })));
    // Then the first 100000 bytes of a frame that never completes.
    const partial = encodeFrame(encodeRequest(2, { type: 'put', id, data: Buffer.alloc(200_000), leaseSeconds: 60 })).subarray(0, 100_000);
    stream.push(partial);
    await reached;
    const tick = () => new Promise<void>((r) => setImmediate(r));
    while (budget.used === 0) await tick();
    stream.push(null);
    await tick();
    stream.destroy();
    await tick();
    release();
    const hung = new Promise<string>((r) => { const t = setTimeout(() => r('hung'), 5_000); cleanup.push(() => clearTimeout(t)); });
    expect(await Promise.race([served.then(() => 'settled'), hung])).toBe('settled');
    expect(budget.used).toBe(0);
  });

  it('a frame received a byte now and then holds the node\'s frame budget for at most the request deadline, on a circuit stream too (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const { FrameBudget } = await import('../../src/storage/framing');
    const budget = new FrameBudget(1 << 20);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanup.push(() => vi.useRealTimers());
    const tick = () => new Promise<void>((r) => setImmediate(r));
    // Stream A (a BEGIN_STORAGE stream): declares a 1 MiB frame, sends all of it but 4 bytes, then
    // one byte every 100 s; each byte resets its idle timer.
    const a = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    a.on('error', () => {});
    cleanup.push(() => a.destroy());
    const servedA = serveStorageStream(a, s, { ctx, frameBudget: budget });
    const h = Buffer.alloc(4); h.writeUInt32BE(1 << 20, 0);
    a.push(Buffer.concat([h, Buffer.alloc((1 << 20) - 4)]));
    while (budget.used === 0) await tick();
    for (let t = 0; t < 3; t++) {
      vi.advanceTimersByTime(100_000);
      await tick();
      if (!a.destroyed) a.push(Buffer.alloc(1));
      await tick();
    }
    // Stream B: a stat request is answered, not refused STORAGE_BUSY.
    const out: Buffer[] = [];
    const b = new Duplex({ read() {}, write(chunk: Buffer, _enc, cb) { out.push(chunk); cb(); } });
    cleanup.push(() => b.destroy());
    void serveStorageStream(b, s, { ctx, frameBudget: budget });
    b.push(encodeFrame(encodeRequest(1, { type: 'stat' })));
    while (out.length === 0) await tick();
    const frames = new FrameDecoder().push(Buffer.concat(out));
    expect(decodeResponse(frames[0]!).res.type).toBe('stat');
    expect(a.destroyed).toBe(true);
    await servedA;
    expect(budget.used).toBe(0);
  });

  it('the request deadline waits while the node, at its own bound of 8 requests in flight, reads no further; a trickling requester is still cut (SPEC.md §9.6.1)', async () => {
    const s = await store();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    cleanup.push(() => vi.useRealTimers());
    const tick = () => new Promise<void>((r) => setImmediate(r));
    // The node's disk is slow: every request is held until the test lets it go.
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let started = 0;
    const policyCheck: PolicyCheck = async () => { started++; await held; };
    // Served as every storage stream is, circuit or direct (one serve for both).
    const stream = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    stream.on('error', () => {});
    cleanup.push(() => stream.destroy());
    let closedByDeadline = 0;
    const served = serveStorageStream(stream, s, { ctx, policyCheck, onRequestDeadline: () => { closedByDeadline++; } });
    // 8 stat requests and the first bytes of a 9th frame (a put) in one read.
    const ninth = encodeFrame(encodeRequest(9, { type: 'put', id, data, leaseSeconds: 60 }));
    stream.push(Buffer.concat([...Array.from({ length: 8 }, (_, i) => encodeFrame(encodeRequest(i + 1, { type: 'stat' }))), ninth.subarray(0, 10)]));
    while (started < 8) await tick();
    // 200 s of the node's own slowness: the stream stays.
    for (let t = 0; t < 4; t++) { vi.advanceTimersByTime(50_000); await tick(); }
    expect(stream.destroyed).toBe(false);
    // The answers come; the node reads again, and the 9th frame trickles in a byte every 30 s.
    release();
    for (let t = 0; t < 8 && !stream.destroyed; t++) { await tick(); }
    let sent = 10;
    for (let t = 0; t < 3; t++) { vi.advanceTimersByTime(30_000); await tick(); stream.push(ninth.subarray(sent, sent + 1)); sent++; await tick(); }
    expect(stream.destroyed).toBe(false); // 90 s of reading
    vi.advanceTimersByTime(30_000); // 120 s of reading since its first byte
    await served;
    expect(stream.destroyed).toBe(true);
    expect(closedByDeadline).toBe(1);
  });

  it('the request deadline runs while the node, at its bound of 8 in flight, only waits for the requester to take its answers (SPEC.md §9.6.1)', async () => {
    const s = await store();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    cleanup.push(() => vi.useRealTimers());
    const tick = () => new Promise<void>((r) => setImmediate(r));
    // As a circuit stream whose requester takes a cell now and then: a write completes only with its
    // last DATA cell, and sentBytes grows (the idle timer sees progress), but no answer is taken in full.
    const stream = new Duplex({ writableHighWaterMark: 1, read() {}, write() {} }) as Duplex & { sentBytes: number };
    stream.sentBytes = 0;
    stream.on('error', () => {});
    cleanup.push(() => stream.destroy());
    let answers = 0;
    const write = stream.write.bind(stream) as (chunk: Buffer, cb?: (e?: Error | null) => void) => boolean;
    (stream as unknown as { write: typeof write }).write = (chunk, cb) => { answers++; return write(chunk, cb); };
    let closedByDeadline = 0;
    const served = serveStorageStream(stream, s, { ctx, onRequestDeadline: () => { closedByDeadline++; } });
    // 8 stat requests and the first bytes of a 9th frame (a put) in one read.
    const ninth = encodeFrame(encodeRequest(9, { type: 'put', id, data, leaseSeconds: 60 }));
    stream.push(Buffer.concat([...Array.from({ length: 8 }, (_, i) => encodeFrame(encodeRequest(i + 1, { type: 'stat' }))), ninth.subarray(0, 10)]));
    // The node handles all 8 at once; their answers wait only for the requester.
    while (answers < 8) await tick();
    for (let t = 0; t < 8; t++) await tick();
    for (let t = 0; t < 2; t++) { vi.advanceTimersByTime(50_000); stream.sentBytes += 498; await tick(); }
    expect(stream.destroyed).toBe(false); // 100 s
    vi.advanceTimersByTime(20_000); // 120 s since the 9th frame's first byte: its requester's slowness, not the node's
    await tick();
    expect(stream.destroyed).toBe(true);
    expect(closedByDeadline).toBe(1);
    await served;
  });

  /**
   * 4 requests and the first bytes of a 5th frame, 2 handled at once: 100 s handled (not counted),
   * 50 s of answers waiting for the requester (counted; then `afterCounted`), 100 s handled, and the
   * stream is cut exactly when the 70 s left have run.
   */
  async function deadlineAcrossStops(afterCounted: () => void): Promise<void> {
    const s = await store();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    cleanup.push(() => vi.useRealTimers());
    const tick = () => new Promise<void>((r) => setImmediate(r));
    const ticks = async () => { for (let t = 0; t < 10; t++) await tick(); };
    // Each request is handled until the test lets it go; each answer is taken when the test says.
    const holds: Array<() => void> = [];
    const policyCheck: PolicyCheck = () => new Promise<void>((r) => { holds.push(r); });
    const pending: Array<(e?: Error | null) => void> = [];
    const stream = new Duplex({ writableHighWaterMark: 1, read() {}, write(_chunk, _enc, cb) { pending.push(cb); } });
    stream.on('error', () => {});
    cleanup.push(() => stream.destroy());
    let closedByDeadline = 0;
    const served = serveStorageStream(stream, s, { ctx, policyCheck, maxInflight: 2, idleMs: 3_600_000, onRequestDeadline: () => { closedByDeadline++; } });
    // 4 stat requests and the first bytes of a 5th frame in one read; 2 are handled at once.
    const fifth = encodeFrame(encodeRequest(5, { type: 'put', id, data, leaseSeconds: 60 }));
    stream.push(Buffer.concat([...Array.from({ length: 4 }, (_, i) => encodeFrame(encodeRequest(i + 1, { type: 'stat' }))), fifth.subarray(0, 10)]));
    await ticks();
    expect(holds.length).toBe(2);
    vi.advanceTimersByTime(100_000); // the node handling requests 1 and 2: not counted
    holds.splice(0).forEach((r) => r());
    await ticks();
    vi.advanceTimersByTime(50_000); // their answers wait for the requester: counted (70 s left)
    afterCounted();
    while (pending.length > 0) { pending.shift()!(); await ticks(); }
    expect(holds.length).toBe(2); // requests 3 and 4 being handled: not counted
    vi.advanceTimersByTime(100_000);
    holds.splice(0).forEach((r) => r());
    await ticks();
    vi.advanceTimersByTime(69_000);
    await tick();
    expect(stream.destroyed).toBe(false);
    vi.advanceTimersByTime(1_000); // 120 s counted since the 5th frame's first byte
    await tick();
    expect(stream.destroyed).toBe(true);
    expect(closedByDeadline).toBe(1);
    await served;
  
  }

  it('the request deadline goes on with the time left across several stops at the in-flight bound (SPEC.md §9.6.1)', async () => {
    await deadlineAcrossStops(() => {});
  });

  it('the time left of a stopped request deadline is kept by the monotonic clock: a wall clock stepped an hour forward closes nothing early (SPEC.md §9.6.1)', async () => {
    await deadlineAcrossStops(() => vi.setSystemTime(Date.now() + 3_600_000)); // an NTP step forward
  });

  it('one large answer read slowly but steadily keeps its stream: the bytes a circuit stream has sent are progress (SPEC.md §9.6.1)', async () => {
    const s = await store();
    const big = Buffer.alloc(64 * 1024, 9);
    const bigId = shareId(big);
    await handleRequest(s, { type: 'put', id: bigId, data: big, leaseSeconds: 60 }, ctx);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanup.push(() => vi.useRealTimers());
    // As a circuit stream: a write completes only with its last DATA cell; sentBytes counts the cells' bytes.
    let take: (() => void) | null = null;
    const stream = new Duplex({ read() {}, write(_chunk, _enc, cb) { take = cb; } }) as Duplex & { sentBytes: number };
    stream.sentBytes = 0;
    cleanup.push(() => stream.destroy());
    const served = serveStorageStream(stream, s, { ctx, idleMs: 200 });
    stream.push(encodeFrame(encodeRequest(1, { type: 'get', id: bigId, offset: 0, length: 0 })));
    const tick = () => new Promise<void>((r) => setImmediate(r));
    while (!take) await tick();
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(150);
      stream.sentBytes += 498; // one cell's worth taken by the requester
      expect(stream.destroyed, `after ${i + 1} slow steps`).toBe(false);
    }
    (take as () => void)(); // the last cell: the answer is taken
    await tick();
    // Then nothing more moves: the stream idles out.
    vi.advanceTimersByTime(200);
    vi.advanceTimersByTime(200);
    await served;
    expect(stream.destroyed).toBe(true);
  });
});

describe('share reads in progress at a node are bounded node-wide (SPEC.md §9.6.1)', () => {
  const SIZE = 8192;
  /** A store without cache (every get reads from disk) holding `n` shares of SIZE bytes, read bytes bounded to 3 of them. */
  async function readStore(n: number): Promise<{ s: ShareStore; ids: Buffer[] }> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-handler-'));
    const s = await ShareStore.open({ dir, quotaBytes: 1 << 20, cacheBytes: 0, maxReadBytesInFlight: 3 * SIZE });
    cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }), () => s.close());
    const ids: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const d = Buffer.alloc(SIZE, i + 1);
      ids.push(shareId(d));
      await s.put(shareId(d), d, 600);
    }
    return { s, ids };
  }
  /**
   * The node's disk is slow: each share file read waits until the test lets it go (or fails it).
   * Reads are held in the order they finish on the thread pool, which need not be the order they
   * were asked in: `of(id)` finds the read of one share by its file name.
   */
  function slowDisk() {
    const pending: Array<{ file: string; go: () => void; fail: () => void }> = [];
    const real = fsp.readFile.bind(fsp);
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation((async (...args: Parameters<typeof fsp.readFile>) => {
      const data = await real(...args);
      await new Promise<void>((resolve, reject) => {
        pending.push({ file: String(args[0]), go: resolve, fail: () => reject(Object.assign(new Error('EIO'), { code: 'EIO' })) });
      });
      return data;
    }) as typeof fsp.readFile);
    cleanup.push(() => spy.mockRestore());
    const of = (id: Buffer) => {
      const d = pending.find((x) => path.basename(x.file) === id.toString('hex'));
      if (!d) throw new Error(`no read of ${id.toString('hex')} held`);
      return d;
    };
    return Object.assign(pending, { of });
  }
  const tick = () => new Promise<void>((r) => setImmediate(r));
  const getFrame = (reqId: number, shareIdBuf: Buffer) => encodeFrame(encodeRequest(reqId, { type: 'get', id: shareIdBuf, offset: 0, length: 0 }));
  function stream() {
    const out: Buffer[] = [];
    const d = new Duplex({ read() {}, write(chunk: Buffer, _enc, cb) { out.push(chunk); cb(); } });
    cleanup.push(() => d.destroy());
    return { d, out };
  }

  it('4 reads in progress across two streams with room for 3: the 4th is STORAGE_BUSY at once and the stream goes on; once one completes a new read is served', async () => {
    const { s, ids } = await readStore(5);
    const disk = slowDisk();
    const a = stream();
    const b = stream();
    void serveStorageStream(a.d, s, { ctx });
    void serveStorageStream(b.d, s, { ctx });
    a.d.push(Buffer.concat([getFrame(1, ids[0]), getFrame(2, ids[1])]));
    while (disk.length < 2) await tick();
    b.d.push(getFrame(1, ids[2]));
    while (disk.length < 3) await tick();
    b.d.push(getFrame(2, ids[3]));
    const busy = await answersIn(b.out, 1);
    expect(busy.get(2)).toMatchObject({ type: 'error', code: 'STORAGE_BUSY' });
    expect(disk).toHaveLength(3); // refused before its read started
    const kinds = (await s.metrics.registry.getSingleMetric('bitcloud_dos_refusals_total')!.get()).values;
    expect(kinds).toEqual([expect.objectContaining({ labels: { kind: 'storage_read_bytes' }, value: 1 })]);
    // The first read completes; its bytes go back, and B's next get is served.
    disk.of(ids[0]).go();
    expect((await answersIn(a.out, 1)).get(1)).toMatchObject({ type: 'get', totalSize: SIZE });
    b.d.push(getFrame(3, ids[4]));
    while (disk.length < 4) await tick();
    disk.of(ids[4]).go();
    expect((await answersIn(b.out, 2)).get(3)).toMatchObject({ type: 'get', totalSize: SIZE });
    disk.of(ids[1]).go();
    disk.of(ids[2]).go();
    await answersIn(a.out, 2);
    await answersIn(b.out, 3);
    expect(s.readBytesInFlight).toBe(0);
  });

  it('a failed read gives its bytes back', async () => {
    const { s, ids } = await readStore(5);
    const disk = slowDisk();
    const get = (i: number) => handleRequest(s, { type: 'get', id: ids[i], offset: 0, length: 0 }, ctx);
    const held = [get(0), get(1)];
    const failing = get(2);
    while (disk.length < 3) await tick();
    disk.of(ids[2]).fail();
    expect(await failing).toMatchObject({ type: 'error', code: 'STORAGE_IO_ERROR' });
    // Two reads in progress: room for one more (had the failed read kept its bytes, none).
    const third = get(3);
    while (disk.length < 4) await tick();
    expect(await get(4)).toMatchObject({ type: 'error', code: 'STORAGE_BUSY' });
    for (const i of [0, 1, 3]) disk.of(ids[i]).go();
    for (const r of [...held, third]) expect(await r).toMatchObject({ type: 'get', totalSize: SIZE });
    expect(s.readBytesInFlight).toBe(0);
  });

  it('a share larger than the whole bound is read when no other read is in progress', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-handler-'));
    const s = await ShareStore.open({ dir, quotaBytes: 1 << 20, cacheBytes: 0, maxReadBytesInFlight: 1024 });
    cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }), () => s.close());
    const big = Buffer.alloc(SIZE, 9);
    await s.put(shareId(big), big, 600);
    expect(await handleRequest(s, { type: 'get', id: shareId(big), offset: 0, length: 0 }, ctx)).toMatchObject({ type: 'get', totalSize: SIZE });
    await expect(ShareStore.open({ dir, quotaBytes: 1 << 20, maxReadBytesInFlight: 0 })).rejects.toThrow(/CONFIG_INVALID/);
  });
});

describe('audit work at a node is bounded (SPEC.md §9.17.2)', () => {
  it('64 pipelined challenges: at most 2 compute at once, 32 wait, the rest get STORAGE_BUSY; other requests are answered meanwhile', async () => {
    const s = await store(64 << 20);
    const big = randomBytes(3 << 20);
    const bigId = shareId(big);
    await s.put(bigId, big, 600);
    const order: string[] = [];
    let outstanding = 64;
    const answers = Array.from({ length: 64 }, (_, i) => handleRequest(s, { type: 'challenge', id: bigId, nonce: Buffer.alloc(32, i), blocks: [0, 700] }, ctx).then((r) => {
      order.push(r.type === 'error' ? r.code : r.type);
      outstanding--;
      return r;
    }));
    // A requester that asks `has` at every turn of the event loop while the audits run: it is
    // answered between them, not only once they are all done.
    while (outstanding > 0) {
      await new Promise<void>((r) => setImmediate(r));
      const r = await handleRequest(s, { type: 'has', ids: [bigId] }, ctx);
      if (outstanding > 0) order.push(r.type);
    }
    const res = await Promise.all(answers);
    expect(res.filter((r) => r.type === 'error').map((r) => r.type === 'error' && r.code)).toEqual(new Array(30).fill('STORAGE_BUSY'));
    expect(res.filter((r) => r.type === 'challenge')).toHaveLength(34);
    // Each answer proves its blocks against the share's audit root (the tree hashed in pieces).
    const root = auditRoot(big);
    res.forEach((r, i) => {
      if (r.type === 'challenge') verifyAuditAnswer(r.answer, { root, size: big.length, nonce: Buffer.alloc(32, i), blocks: [0, 700] });
    });
    expect(s.auditLoad()).toEqual({ running: 0, waiting: 0, peak: 2 });
    // Answers of `has` come between the first and the last audit answer: the node was not
    // busy hashing for the whole run of audits.
    const first = order.indexOf('challenge');
    const last = order.lastIndexOf('challenge');
    const between = order.slice(first, last).filter((t) => t === 'has').length;
    expect(between).toBeGreaterThan(34);
  });
});

describe('an error answer never names a folder of the node (SPEC.md §9.6.4)', () => {
  it('a share write whose mode cannot be set is answered STORAGE_IO_ERROR without the data folder', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-handler-'));
    const s = await ShareStore.open({ dir, quotaBytes: 1 << 20 });
    cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }), () => s.close());
    // A filesystem that keeps no Unix modes: fchmod fails with EPERM (writeFileAtomic: IO_MODE_UNSUPPORTED).
    const probe = await fsp.open(path.join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { chmod(mode: number): Promise<void> };
    await probe.close();
    const chmod = vi.spyOn(proto, 'chmod').mockRejectedValue(Object.assign(new Error('EPERM: operation not permitted, fchmod'), { code: 'EPERM' }));
    cleanup.push(() => chmod.mockRestore());
    const res = await handleRequest(s, { type: 'put', id, data, leaseSeconds: 60 }, ctx);
    expect(chmod).toHaveBeenCalled();
    expect(res.type).toBe('error');
    const e = res as { type: 'error'; code: string; message: string };
    expect(e.code).toBe('STORAGE_IO_ERROR');
    expect(e.message).not.toContain(dir);
    expect(e.message).not.toContain('shares');
    expect(s.has([id])).toEqual([false]);
    expect((await s.metrics.registry.getSingleMetric('bitcloud_storage_errors_total')!.get()).values)
      .toContainEqual(expect.objectContaining({ labels: { code: 'STORAGE_IO_ERROR' }, value: 1 }));
  });
});
