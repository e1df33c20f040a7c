// SPEC.md §9.21.8: a relay mirror passes hidden nodes' uploads on to every authority (with the
// fetcher header "mirror", body unchanged) and reports each authority's status; it refuses relay
// descriptors without the hidden role and hidden descriptors that do not parse. Loopback HTTP.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FORWARD_MAX_IN_FLIGHT, FORWARD_MAX_READING, FORWARD_MAX_WAITING_PER_UPLOAD, UploadForwarder } from '../../relay/upload-forward';
import { DirPassThrough, PASS_ANSWER_DEADLINE_MS, PASS_MAX_IN_FLIGHT, PASS_MAX_PER_ADDRESS } from '../../relay/dir-pass';
import { buildDescriptor } from '../../src/dir/descriptor';
import { ed25519Generate, randomBytes, x25519Generate } from '../../src/crypto/primitives';
import { PATHS, httpRequest } from '../../src/dir/fetch';
import { HS_DESC_PATH } from '../../src/hidden/store';
import { makeHsDescriptor } from '../../src/hidden/descriptor';
import { hsPeriodOf, HS_PERIOD_SECONDS } from '../../src/crypto/blind';
import type { ConsensusRelay, Role } from '../../src/dir/types';
import { uploadOverCircuit, type ForwardedResult } from '../../src/hidden/upload';
import { signUploadAck, signUploadNack } from '../../src/dir/upload-ack';
import type { Logger } from '../../src/ops/log';
import { isBitcloudError } from '../../src/errors';
import type { ClientCircuit } from '../../src/client/client-circuit';
import net from 'node:net';
import { HS_PSEUDONYM_PATH, makePseudonymRegistration, sealPseudonymUpload } from '../../src/hidden/pseudonym';
import { encodePseudonymUpload, PSEUDONYM_SEALED_LEN } from '../../src/wire/pseudonym';

const servers: http.Server[] = [];
const got: { path: string; fetcher: string | undefined; body: Buffer }[] = [];
let mirror = '';
let authorityUrl = '';
const authorityFp = 'ab'.repeat(32);

async function listen(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** An answer whose reader reads nothing (or a byte a minute): it is written, and never finishes. */
function slowReader() {
  return Object.assign(new EventEmitter(), {
    status: 0, headersSent: false, destroyed: false, code: '',
    writeHead(this: { status: number; headersSent: boolean }, status: number) { this.status = status; this.headersSent = true; return this; },
    end(this: { code: string }, body?: unknown) { if (typeof body === 'string' && body.startsWith('{')) this.code = (JSON.parse(body) as { code: string }).code; return this; },
    setHeader() { return this; },
    destroy(this: EventEmitter & { destroyed: boolean }) { if (!this.destroyed) { this.destroyed = true; this.emit('close'); } return this; },
  });
}

/** A policy request from `remote` (a client's address; loopback is a BEGIN_DIR stream's splice). */
function askPolicy(pass: DirPassThrough, res: ReturnType<typeof slowReader>, remote = '127.0.0.1'): Promise<void> {
  const req = { method: 'GET', url: `/bitcloud/policy/${'cd'.repeat(32)}`, socket: { remoteAddress: remote, localAddress: '127.0.0.1' } };
  return pass.servePolicy(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
}

beforeAll(async () => {
  const authority = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', fetcher: req.headers['x-bitcloud-fetcher'] as string | undefined, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"accepted":true}');
    });
  });
  authorityUrl = authority;
  const fwd = new UploadForwarder(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }, { name: 'gone', fingerprint: 'cd'.repeat(32), url: 'http://127.0.0.1:1' }] as never);
  mirror = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
});

afterAll(async () => { for (const s of servers) await new Promise<void>((r) => s.close(() => r())); });

const descriptor = (roles: Role[], published = Date.now()) => buildDescriptor({
  identity: ed25519Generate(), onionKey: x25519Generate().publicKey, nickname: 'n', address: roles.includes('hidden') ? '0.0.0.0' : '127.0.0.1',
  orPort: roles.includes('hidden') ? 0 : 9001, declaredBandwidth: 1000, roles, version: 'bitcloud-test', published,
});
const post = (path: string, body: Buffer) => httpRequest(`${mirror}${path}`, { method: 'POST', body, maxBytes: 65536, timeoutMs: 10_000 });
const json = (b: Buffer) => JSON.parse(b.toString('utf8')) as Record<string, unknown>;

describe('a mirror passing hidden nodes\' uploads on (SPEC.md §9.21.8)', () => {
  it('passes a hidden node\'s relay descriptor and hidden descriptor on unchanged, and reports each authority', async () => {
    const d = descriptor(['storage', 'hidden']);
    const r = await post('/bitcloud/descriptor', d);
    expect(r.status).toBe(200);
    const f = json(r.body).forwarded as { authority: string; status: number; code?: string }[];
    expect(f.find((x) => x.authority === authorityFp)).toEqual({ authority: authorityFp, status: 200 });
    expect(f.find((x) => x.authority !== authorityFp)?.status).toBe(0); // unreachable
    expect(got.at(-1)).toEqual({ path: '/bitcloud/descriptor', fetcher: 'mirror', body: d });

    const hs = makeHsDescriptor({ identity: ed25519Generate(), period: hsPeriodOf(Date.now()), revision: Date.now(), inner: {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    } });
    const r2 = await post(HS_DESC_PATH, hs);
    expect(r2.status).toBe(200);
    expect(got.at(-1)).toEqual({ path: HS_DESC_PATH, fetcher: 'mirror', body: hs });
  });

  it('copies each 200\'s ack into that authority\'s entry verbatim, and drops one that is no string or longer than 128 characters (SPEC.md §9.21.8)', async () => {
    const acks: unknown[] = ['A'.repeat(86) + '==', 'x'.repeat(129), 42];
    const urls = await Promise.all(acks.map((ack) => listen((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ accepted: true, ack })); }); })));
    const fwd = new UploadForwarder(() => urls.map((url, i) => ({ name: `a${i}`, fingerprint: String(i).repeat(64), url })) as never);
    const m = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const r = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: descriptor(['storage', 'hidden']), maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(r.body).forwarded).toEqual([
      { authority: '0'.repeat(64), status: 200, ack: 'A'.repeat(86) + '==' },
      { authority: '1'.repeat(64), status: 200 },
      { authority: '2'.repeat(64), status: 200 },
    ]);
  });

  it('copies an authority\'s error code only when it is one: a huge or non-string code is dropped, not remembered and sent on (SPEC.md §9.21.8)', async () => {
    const codes: unknown[] = ['DOC_EXPIRED', 'X'.repeat(60 * 1024), 'not a code', { nested: 'A'.repeat(1000) }, 'A'.repeat(65)];
    const urls = await Promise.all(codes.map((code) => listen((req, res) => { req.resume(); req.on('end', () => { res.writeHead(400, { 'content-type': 'application/json' }); res.end(JSON.stringify({ code })); }); })));
    const fwd = new UploadForwarder(() => urls.map((url, i) => ({ name: `a${i}`, fingerprint: String(i).repeat(64), url })) as never);
    const m = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const r = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: descriptor(['storage', 'hidden']), maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(r.body).forwarded).toEqual([
      { authority: '0'.repeat(64), status: 400, code: 'DOC_EXPIRED' },
      { authority: '1'.repeat(64), status: 400 },
      { authority: '2'.repeat(64), status: 400 },
      { authority: '3'.repeat(64), status: 400 },
      { authority: '4'.repeat(64), status: 400 },
    ]);
    expect(r.body.length).toBeLessThan(2048);
  });

  it('copies each 4xx\'s nack into that authority\'s entry verbatim, and drops one that is no string or longer than 128 characters (SPEC.md §9.21.8)', async () => {
    const answers: [number, unknown][] = [[409, 'B'.repeat(86) + '=='], [400, 'x'.repeat(129)], [403, 42], [429, 'C'.repeat(86) + '=='], [200, 'D'.repeat(86) + '==']];
    const urls = await Promise.all(answers.map(([status, nack]) => listen((req, res) => { req.resume(); req.on('end', () => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ ...(status === 200 ? { accepted: true } : { code: 'SOME_CODE' }), nack })); }); })));
    const fwd = new UploadForwarder(() => urls.map((url, i) => ({ name: `a${i}`, fingerprint: String(i).repeat(64), url })) as never);
    const m = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const r = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: descriptor(['storage', 'hidden']), maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(r.body).forwarded).toEqual([
      { authority: '0'.repeat(64), status: 409, code: 'SOME_CODE', nack: 'B'.repeat(86) + '==' },
      { authority: '1'.repeat(64), status: 400, code: 'SOME_CODE' },
      { authority: '2'.repeat(64), status: 403, code: 'SOME_CODE' },
      { authority: '3'.repeat(64), status: 429, code: 'SOME_CODE', nack: 'C'.repeat(86) + '==' },
      { authority: '4'.repeat(64), status: 200 },
    ]);
  });

  it('refuses a relay descriptor without the hidden role (DIR_UPLOAD_NOT_HIDDEN) and a hidden descriptor that does not parse, passing neither on', async () => {
    const before = got.length;
    const r = await post('/bitcloud/descriptor', descriptor(['relay']));
    expect([r.status, json(r.body).code]).toEqual([400, 'DIR_UPLOAD_NOT_HIDDEN']);
    const r2 = await post(HS_DESC_PATH, randomBytes(300));
    expect(r2.status).toBe(400);
    expect(String(json(r2.body).code)).toMatch(/^HIDDEN_DESC_/);
    const d = descriptor(['storage', 'hidden']);
    d[d.length - 5] ^= 1; // the signature no longer verifies
    const r3 = await post('/bitcloud/descriptor', d);
    expect(r3.status).toBe(400);
    expect(got.length).toBe(before);
  });

  it('allows a node\'s clock to run ahead by the default 60 s skew, as the authorities do (SPEC.md §6.2.4)', async () => {
    const T = Date.now();
    const fwd = new UploadForwarder(() => [{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }] as never, () => T);
    const ahead = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const d = descriptor(['storage', 'hidden'], T + 5_000);
    const r = await httpRequest(`${ahead}/bitcloud/descriptor`, { method: 'POST', body: d, maxBytes: 65536, timeoutMs: 10_000 });
    expect(r.status).toBe(200);
    expect(json(r.body).forwarded).toEqual([{ authority: authorityFp, status: 200 }]);
    expect(got.at(-1)?.body).toEqual(d);
    // Past the allowance the mirror still refuses it, as every authority would.
    const far = await httpRequest(`${ahead}/bitcloud/descriptor`, { method: 'POST', body: descriptor(['storage', 'hidden'], T + 61_000), maxBytes: 65536, timeoutMs: 10_000 });
    expect([far.status, json(far.body).code]).toEqual([400, 'DOC_NOT_YET_VALID']);
  });

  it('passes a body on once: a repeat (at once, or later within 60 s) gets the first answer and reaches no authority again', async () => {
    const before = got.length;
    const d = descriptor(['storage', 'hidden']);
    const [a, b] = await Promise.all([post('/bitcloud/descriptor', d), post('/bitcloud/descriptor', d)]);
    const c = await post('/bitcloud/descriptor', d);
    expect(got.length).toBe(before + 1);
    for (const r of [a, b, c]) expect(r.status).toBe(200);
    expect(json(b.body)).toEqual(json(a.body));
    expect(json(c.body)).toEqual(json(a.body));
  });

  it('a repeat goes again to the authorities that could not take the body (unreachable, 429, 5xx) and to no other', async () => {
    let calls = 0;
    const busy = await listen((req, res) => {
      req.resume();
      req.on('end', () => {
        calls++;
        res.writeHead(calls === 1 ? 503 : 200, { 'content-type': 'application/json' });
        res.end(calls === 1 ? '{"code":"RATE_LIMITED"}' : '{"accepted":true}');
      });
    });
    const fwd = new UploadForwarder(() => [{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }, { name: 'a2', fingerprint: 'ef'.repeat(32), url: busy }] as never);
    const m = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const before = got.length;
    const d = descriptor(['storage', 'hidden']);
    const first = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: d, maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(first.body).forwarded).toEqual([{ authority: authorityFp, status: 200 }, { authority: 'ef'.repeat(32), status: 503, code: 'RATE_LIMITED' }]);
    const again = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: d, maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(again.body).forwarded).toEqual([{ authority: authorityFp, status: 200 }, { authority: 'ef'.repeat(32), status: 200 }]);
    const third = await httpRequest(`${m}/bitcloud/descriptor`, { method: 'POST', body: d, maxBytes: 65536, timeoutMs: 10_000 });
    expect(json(third.body)).toEqual(json(again.body));
    expect(calls).toBe(2);
    expect(got.length).toBe(before + 1);
  });

  it('remembers a body for 60 s of a monotonic clock: a step of the wall clock neither stretches nor cuts that time', async () => {
    // Mid-period, so that an hour back or two forward keeps the descriptor's period N or N+1.
    const W = (hsPeriodOf(Date.now()) * HS_PERIOD_SECONDS + HS_PERIOD_SECONDS / 2) * 1000;
    let wall = W, mono = 0;
    const fwd = new UploadForwarder(() => [{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }] as never, () => wall, () => {}, () => mono);
    const at = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const hs = makeHsDescriptor({ identity: ed25519Generate(), period: hsPeriodOf(W), revision: 1, inner: {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    } });
    const send = async () => (await httpRequest(`${at}${HS_DESC_PATH}`, { method: 'POST', body: hs, maxBytes: 65536, timeoutMs: 10_000 })).status;
    const before = got.length;
    expect(await send()).toBe(200);
    expect(got.length).toBe(before + 1);
    wall += 2 * 3_600_000; // the wall clock steps forward two hours, 1 s after: still a repeat
    mono += 1_000;
    expect(await send()).toBe(200);
    expect(got.length).toBe(before + 1);
    wall -= 3 * 3_600_000; // …then back three hours, 61 s after the first: passed on again
    mono += 60_000;
    expect(await send()).toBe(200);
    expect(got.length).toBe(before + 2);
  });
});

/** The head of an upload announcing a 4 000-byte body and 10 bytes of it; the rest never comes. */
async function unfinishedUpload(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.on('error', () => {});
  s.write('POST /bitcloud/descriptor HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 4000\r\n\r\n');
  s.write(Buffer.alloc(10));
  return s;
}

describe('a mirror\'s places for uploads (SPEC.md §9.21.8)', () => {
  const forwarderAt = async (authorities: { name: string; fingerprint: string; url: string }[]) => {
    const fwd = new UploadForwarder(() => authorities as never);
    const url = await listen((req, res) => { fwd.serve(req, res, (req.url ?? '').split('?')[0]).catch(() => {}); });
    return { url, port: Number(new URL(url).port) };
  };
  const upload = (url: string, body: Buffer) => httpRequest(`${url}/bitcloud/descriptor`, { method: 'POST', body, maxBytes: 65536, timeoutMs: 10_000 });

  it(`reads a body before taking one of the ${FORWARD_MAX_IN_FLIGHT} places: as many slow uploads that never finish their bodies do not stop a complete one from being passed on`, async () => {
    const m = await forwarderAt([{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }]);
    const slow = await Promise.all(Array.from({ length: FORWARD_MAX_IN_FLIGHT }, () => unfinishedUpload(m.port)));
    try {
      await new Promise((r) => setTimeout(r, 100));
      const d = descriptor(['storage', 'hidden']);
      const r = await upload(m.url, d);
      expect(r.status).toBe(200);
      expect(json(r.body).forwarded).toEqual([{ authority: authorityFp, status: 200 }]);
      expect(got.at(-1)?.body).toEqual(d);
    } finally {
      for (const s of slow) s.destroy();
    }
  });

  it(`reads at most ${FORWARD_MAX_READING} bodies at once (503 RATE_LIMITED past that), and frees a sender's count when it goes away`, async () => {
    const m = await forwarderAt([{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }]);
    const slow = await Promise.all(Array.from({ length: FORWARD_MAX_READING }, () => unfinishedUpload(m.port)));
    try {
      await new Promise((r) => setTimeout(r, 100));
      const r = await upload(m.url, descriptor(['storage', 'hidden']));
      expect([r.status, json(r.body).code]).toEqual([503, 'RATE_LIMITED']);
    } finally {
      for (const s of slow) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect((await upload(m.url, descriptor(['storage', 'hidden']))).status).toBe(200);
  });

  it(`passes on at most ${FORWARD_MAX_IN_FLIGHT} bodies at once: another, read in full, is answered 503 RATE_LIMITED while they wait for the authorities`, async () => {
    const held: http.ServerResponse[] = [];
    let answer = false;
    const ok = (res: http.ServerResponse) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"accepted":true}'); };
    const silent = http.createServer((req, res) => { req.resume(); if (answer) ok(res); else held.push(res); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const m = await forwarderAt([{ name: 'slow', fingerprint: 'ef'.repeat(32), url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` }]);
    try {
      const waiting = Array.from({ length: FORWARD_MAX_IN_FLIGHT }, () => upload(m.url, descriptor(['storage', 'hidden'])).catch(() => null));
      for (let i = 0; i < 100 && held.length < FORWARD_MAX_IN_FLIGHT; i++) await new Promise((r) => setTimeout(r, 20));
      expect(held.length).toBe(FORWARD_MAX_IN_FLIGHT);
      const r = await upload(m.url, descriptor(['storage', 'hidden']));
      expect([r.status, json(r.body).code]).toEqual([503, 'RATE_LIMITED']);
      answer = true;
      for (const res of held) ok(res);
      await Promise.all(waiting);
      expect((await upload(m.url, descriptor(['storage', 'hidden']))).status).toBe(200);
    } finally {
      await new Promise<void>((r) => { silent.close(() => r()); silent.closeAllConnections(); });
    }
  });
  it(`lets at most ${FORWARD_MAX_WAITING_PER_UPLOAD} repeats wait for an upload still being passed on: the next is answered 503 RATE_LIMITED at once and counted as repeat_busy`, async () => {
    const held: http.ServerResponse[] = [];
    const silent = http.createServer((req, res) => { req.resume(); held.push(res); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const results: string[] = [];
    const slowUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const fwd = new UploadForwarder(() => [{ name: 'slow', fingerprint: 'ef'.repeat(32), url: slowUrl }] as never,
      Date.now, (_kind, result) => results.push(result));
    // Bodies read in full by the mirror: once one has ended, its request is waiting (or answered).
    let read = 0;
    const m = await listen((req, res) => { req.on('end', () => { read++; }); void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const d = descriptor(['storage', 'hidden']);
    try {
      const first = upload(m, d).catch(() => null);
      for (let i = 0; i < 100 && held.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(held.length).toBe(1);
      const repeats = Array.from({ length: FORWARD_MAX_WAITING_PER_UPLOAD }, () => upload(m, d).catch(() => null));
      for (let i = 0; i < 100 && read < 1 + FORWARD_MAX_WAITING_PER_UPLOAD; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 20));
      expect(read).toBe(1 + FORWARD_MAX_WAITING_PER_UPLOAD);
      const start = performance.now();
      const over = await Promise.race([upload(m, d), new Promise<null>((r) => setTimeout(() => r(null), 2_000))]);
      expect(over && [over.status, json(over.body).code]).toEqual([503, 'RATE_LIMITED']);
      expect(performance.now() - start).toBeLessThan(2_000);
      expect(results).toEqual(['repeat_busy']);
      // The authority goes away: the pending forward ends (status 0) and every waiting repeat gets its answer.
      await new Promise<void>((r) => { silent.close(() => r()); silent.closeAllConnections(); });
      const answers = await Promise.all([first, ...repeats]);
      for (const a of answers) expect(a?.status).toBe(200);
      expect(results.filter((x) => x === 'repeat')).toHaveLength(FORWARD_MAX_WAITING_PER_UPLOAD);
    } finally {
      if (silent.listening) await new Promise<void>((r) => { silent.close(() => r()); silent.closeAllConnections(); });
    }
  });
});

describe('a mirror passing hidden descriptors and policies on (SPEC.md §9.21.3, §9.21.8)', () => {
  it(`asks the authorities for at most ${PASS_MAX_IN_FLIGHT} requests at a time, hidden descriptors and policies together; past that 503 RATE_LIMITED`, async () => {
    const held: http.ServerResponse[] = [];
    let asked = 0;
    let waiting: (() => void) | null = null;
    let answering = false;
    const authority = await listen((_req, res) => { // answers nothing until `answering`, then 404
      asked++;
      if (answering) { res.writeHead(404); res.end(); return; }
      held.push(res);
      waiting?.();
    });
    const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
    const dirMirror = await listen((req, res) => {
      const p = (req.url ?? '').split('?')[0];
      void (p.startsWith(`${HS_DESC_PATH}/`) ? pass.serveHsDescriptor(req, res, p) : pass.servePolicy(req, res));
    });
    const get = (path: string) => httpRequest(`${dirMirror}${path}`, { maxBytes: 65536, timeoutMs: 10_000 });
    const pending = Array.from({ length: PASS_MAX_IN_FLIGHT }, (_, i) => get(i % 2 ? `${HS_DESC_PATH}/${'ab'.repeat(32)}` : `/bitcloud/policy/${'cd'.repeat(32)}`));
    await new Promise<void>((r) => { waiting = () => { if (asked >= PASS_MAX_IN_FLIGHT) r(); }; waiting(); });
    const over = await get(`/bitcloud/policy/${'cd'.repeat(32)}`);
    expect([over.status, json(over.body).code]).toEqual([503, 'RATE_LIMITED']);
    const over2 = await get(`${HS_DESC_PATH}/${'ab'.repeat(32)}`);
    expect(over2.status).toBe(503);
    expect(asked).toBe(PASS_MAX_IN_FLIGHT);
    // The authority answers 404: each request is answered 404 and frees its place.
    answering = true;
    for (const res of held) { res.writeHead(404); res.end(); }
    for (const r of await Promise.all(pending)) expect(r.status).toBe(404);
    const again = await get(`/bitcloud/policy/${'cd'.repeat(32)}`);
    expect(again.status).toBe(404);
    expect(asked).toBe(PASS_MAX_IN_FLIGHT + 1);
  });

  it('keeps a request\'s place until its answer has been handed on (finish) or its connection is gone (close): readers that never read cannot pass on more than the bound', async () => {
    const policy = Buffer.alloc(1024 * 1024, 7);
    let asked = 0;
    const authority = await listen((_req, res) => { asked++; res.writeHead(200, { 'content-length': policy.length }); res.end(policy); });
    const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
    // An answer whose reader reads nothing: it is written, and never finishes.
    const unread = () => Object.assign(new EventEmitter(), {
      status: 0, headersSent: false,
      writeHead(this: { status: number; headersSent: boolean }, status: number) { this.status = status; this.headersSent = true; return this; },
      end() { return this; },
    });
    const ask = (res: ReturnType<typeof unread>) => pass.servePolicy({ method: 'GET', url: `/bitcloud/policy/${'cd'.repeat(32)}`, socket: { remoteAddress: '127.0.0.1' } } as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
    const first = Array.from({ length: PASS_MAX_IN_FLIGHT }, unread);
    for (const res of first) await ask(res);
    expect(first.map((r) => r.status)).toEqual(first.map(() => 200));
    const over = unread();
    await ask(over);
    expect(over.status).toBe(503);
    expect(asked).toBe(PASS_MAX_IN_FLIGHT);
    // One reader goes away, another reads its answer to the end: two places are free again, once each.
    first[0].emit('close');
    first[1].emit('finish');
    first[1].emit('close');
    const next = [unread(), unread(), unread()];
    for (const res of next) await ask(res);
    expect(next.map((r) => r.status)).toEqual([200, 200, 503]);
    expect(asked).toBe(PASS_MAX_IN_FLIGHT + 2);
  });

  it('cuts an answer not handed on in full within its deadline from when it started to be sent, and frees its place: a reader taking a byte a minute holds no place for ever', async () => {
    const policy = Buffer.alloc(1024, 7);
    const authority = await listen((_req, res) => { res.writeHead(200, { 'content-length': policy.length }); res.end(policy); });
    // The deadline runs on a fake clock, advanced by hand: however slowly the places are filled,
    // none is freed before the test says so.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
      const slow = Array.from({ length: PASS_MAX_IN_FLIGHT }, slowReader);
      for (const res of slow) await askPolicy(pass, res);
      expect(slow.map((r) => r.status)).toEqual(slow.map(() => 200));
      const over = slowReader();
      await askPolicy(pass, over);
      expect([over.status, over.code]).toEqual([503, 'RATE_LIMITED']);
      vi.advanceTimersByTime(PASS_ANSWER_DEADLINE_MS - 1);
      expect(slow.map((r) => r.destroyed)).toEqual(slow.map(() => false));
      vi.advanceTimersByTime(1);
      expect(slow.map((r) => r.destroyed)).toEqual(slow.map(() => true));
      expect(over.destroyed).toBe(false);
      const next = slowReader();
      await askPolicy(pass, next);
      expect(next.status).toBe(200);
      next.emit('finish');
    } finally {
      vi.useRealTimers();
    }
  });

  it(`holds at most ${PASS_MAX_PER_ADDRESS} places per client address (IPv4 address, IPv6 /64); another address still gets through, requests over circuits (loopback) count under none`, async () => {
    const policy = Buffer.alloc(1024, 7);
    const authority = await listen((_req, res) => { res.writeHead(200, { 'content-length': policy.length }); res.end(policy); });
    const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
    const one = Array.from({ length: PASS_MAX_PER_ADDRESS }, slowReader);
    for (const res of one) await askPolicy(pass, res, '203.0.113.7');
    expect(one.map((r) => r.status)).toEqual(one.map(() => 200));
    const fifth = slowReader();
    await askPolicy(pass, fifth, '::ffff:203.0.113.7');
    expect([fifth.status, fifth.code]).toEqual([503, 'RATE_LIMITED']);
    const v6 = Array.from({ length: PASS_MAX_PER_ADDRESS + 1 }, slowReader);
    for (const [i, res] of v6.entries()) await askPolicy(pass, res, `2001:db8:0:1::${i + 1}`);
    expect(v6.map((r) => r.status)).toEqual([...v6.slice(1).map(() => 200), 503]);
    const other = slowReader();
    await askPolicy(pass, other, '198.51.100.9');
    expect(other.status).toBe(200);
    const circuits = Array.from({ length: PASS_MAX_PER_ADDRESS + 1 }, slowReader);
    for (const res of circuits) await askPolicy(pass, res, '127.0.0.1');
    expect(circuits.map((r) => r.status)).toEqual(circuits.map(() => 200));
    // One of the first address's answers is handed on: that address has a place again.
    one[0].emit('finish');
    const again = slowReader();
    await askPolicy(pass, again, '203.0.113.7');
    expect(again.status).toBe(200);
  });

  it('bounds the whole pass by one deadline below the dir port\'s idle timeout: authorities that never answer get the client its 404 in time', async () => {
    const held: http.ServerResponse[] = [];
    const silent = await Promise.all([0, 1, 2, 3, 4, 5, 6].map(() => listen((_req, res) => { held.push(res); })));
    const pass = new DirPassThrough(() => silent.map((url, i) => ({ name: `a${i}`, fingerprint: authorityFp, url })) as never, { passDeadlineMs: 300 });
    const dirMirror = await listen((req, res) => { void pass.servePolicy(req, res); });
    // The client gives up after 3 s (a stand-in for the dir port's idle timeout, far above the pass deadline).
    const r = await httpRequest(`${dirMirror}/bitcloud/policy/${'cd'.repeat(32)}`, { maxBytes: 65536, timeoutMs: 3000 });
    expect([r.status, json(r.body).code]).toEqual([404, 'POLICY_NOT_FOUND']);
    for (const res of held) res.destroy();
  });

  it('stops asking as soon as the client\'s connection closes: the authority asked is let go and no other is asked', async () => {
    const held: http.ServerResponse[] = [];
    let asked = 0;
    let firstAsked: () => void = () => {};
    const first = new Promise<void>((r) => { firstAsked = r; });
    let letGo: Promise<void> = Promise.resolve();
    const silent = await Promise.all([0, 1, 2].map(() => listen((req, res) => {
      asked++;
      held.push(res);
      letGo = new Promise<void>((r) => req.socket.once('close', () => r()));
      firstAsked();
    })));
    // Each try may last far longer than the test: only abandoning the request under way when the
    // client goes lets the pass end at all, however slow the machine is.
    const pass = new DirPassThrough(() => silent.map((url, i) => ({ name: `a${i}`, fingerprint: authorityFp, url })) as never, { tryMs: 60_000, passDeadlineMs: 60_000 });
    let served: Promise<void> = Promise.resolve();
    let serving: () => void = () => {};
    const started = new Promise<void>((r) => { serving = r; });
    const dirMirror = await listen((req, res) => { served = pass.servePolicy(req, res); serving(); });
    const client = http.get(`${dirMirror}/bitcloud/policy/${'cd'.repeat(32)}`);
    client.on('error', () => {});
    await started;
    await first;
    client.destroy();
    await served;
    await letGo;
    expect(asked).toBe(1);
    for (const res of held) res.destroy();
  }, 10_000);

  it('passes on the first 200 from the authorities (and a policy\'s 304, never a descriptor\'s), else 404 with the path\'s code', async () => {
    const answers = new Map<string, [number, string]>(); // path (with query) → status and body
    const asked: string[] = [];
    const authority = await listen((req, res) => {
      asked.push(req.url ?? '');
      const [status, body] = answers.get(req.url ?? '') ?? [404, ''];
      res.writeHead(status);
      res.end(status === 304 ? undefined : body);
    });
    const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
    const dirMirror = await listen((req, res) => {
      const p = (req.url ?? '').split('?')[0];
      void (p.startsWith(`${HS_DESC_PATH}/`) ? pass.serveHsDescriptor(req, res, p) : pass.servePolicy(req, res));
    });
    const get = (path: string) => httpRequest(`${dirMirror}${path}`, { maxBytes: 65536, timeoutMs: 10_000 });
    const desc = `${HS_DESC_PATH}/${'ab'.repeat(32)}`;
    const policy = `/bitcloud/policy/${'cd'.repeat(32)}`;
    const since = `${policy}?after=3&digest=${'ef'.repeat(32)}`;
    answers.set(desc, [200, 'descriptor bytes']);
    answers.set(policy, [200, 'policy bytes']);
    answers.set(since, [304, '']);
    const d = await get(desc);
    expect([d.status, d.body.toString()]).toEqual([200, 'descriptor bytes']);
    const p = await get(policy);
    expect([p.status, p.body.toString()]).toEqual([200, 'policy bytes']);
    expect((await get(since)).status).toBe(304);
    expect(asked).toEqual([desc, policy, since]);
    answers.set(desc, [304, '']);
    answers.set(policy, [500, 'no']);
    const d2 = await get(desc);
    expect([d2.status, json(d2.body).code]).toEqual([404, 'HIDDEN_DESC_NOT_FOUND']);
    const p2 = await get(policy);
    expect([p2.status, json(p2.body).code]).toEqual([404, 'POLICY_NOT_FOUND']);
  });

  it('passes on a policy query\'s after and digest each when well-formed, and drops what the authority would ignore (SPEC.md §9.21.8, §10.7.1)', async () => {
    const asked: string[] = [];
    const authority = await listen((req, res) => { asked.push(req.url ?? ''); res.writeHead(304); res.end(); });
    const pass = new DirPassThrough(() => [{ name: 'a1', fingerprint: authorityFp, url: authority }] as never);
    const dirMirror = await listen((req, res) => { void pass.servePolicy(req, res); });
    const policy = `/bitcloud/policy/${'cd'.repeat(32)}`;
    const D = 'ef'.repeat(32);
    const cases: Array<[string, string]> = [
      ['?after=5', '?after=5'],
      [`?after=5&digest=${D}`, `?after=5&digest=${D}`],
      [`?digest=${D}&after=5`, `?after=5&digest=${D}`],
      [`?digest=${D}`, `?digest=${D}`],
      [`?after=x5&digest=${D}`, `?digest=${D}`],
      ['?after=5&digest=XYZ', '?after=5'],
      [`?after=${'9'.repeat(16)}`, ''],
      ['?other=1', ''],
    ];
    for (const [q, want] of cases) {
      asked.length = 0;
      const r = await httpRequest(`${dirMirror}${policy}${q}`, { maxBytes: 65536, timeoutMs: 10_000 });
      expect([q, r.status, asked]).toEqual([q, 304, [`${policy}${want}`]]);
    }
  });
});

describe('a hidden node uploading through mirrors (SPEC.md §9.21.8)', () => {
  /** Mirrors whose answer lists `forwarded` (or is the raw body given); their dir ports are reached over a plain socket as the circuit's stream. */
  async function mirrors(forwarded: { authority: string; status: number; code?: string; nack?: string }[] | string) {
    let asked = 0;
    const body = typeof forwarded === 'string' ? forwarded : JSON.stringify({ forwarded });
    const url = await listen((req, res) => { asked++; req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body); }); });
    const port = Number(new URL(url).port);
    const relays = ['m1', 'm2', 'm3', 'm4'].map((n) => ({ nickname: n, fingerprint: n.padEnd(40, '0'), flags: new Set(['Running', 'Valid']), roles: ['relay'], dirPort: 9030 }) as unknown as ConsensusRelay);
    const buildTo = () => Promise.resolve({ openStream: () => Promise.resolve({ stream: net.connect(port, '127.0.0.1') }), destroy() {} } as unknown as ClientCircuit);
    return { o: { relays: () => relays, buildTo }, asked: () => asked };
  }

  it('tries another mirror (3 in all) when no authority took the upload there (every entry 429, 5xx or unreachable), and ends with the last answer', async () => {
    const none = [{ authority: 'a', status: 429, code: 'RATE_LIMITED' }, { authority: 'b', status: 0, code: 'DIR_FETCH_FAILED' }, { authority: 'c', status: 503 }];
    const m = await mirrors(none);
    await expect(uploadOverCircuit(m.o, '/bitcloud/hs/desc', Buffer.from('x'), { signingKeys: () => new Map() })).resolves.toEqual(none);
    expect(m.asked()).toBe(3);
  });

  it('tries another mirror when a mirror passed the upload to no authority (an empty list), and ends with the last answer', async () => {
    const m = await mirrors([]);
    await expect(uploadOverCircuit(m.o, '/bitcloud/hs/desc', Buffer.from('x'), { signingKeys: () => new Map() })).resolves.toEqual([]);
    expect(m.asked()).toBe(3);
  });

  it('fails with DIR_FETCH_FAILED naming the problem, never a TypeError, when a mirror\'s answer is JSON null, a forwarded that is no list, or a list holding null or a non-object', async () => {
    const cases = [
      ['null', /not a JSON object/],
      ['[]', /not a JSON object/],
      ['{"forwarded":null}', /no list of authorities/],
      ['{"forwarded":"a"}', /no list of authorities/],
      ['{"forwarded":{"authority":"a","status":200}}', /no list of authorities/],
      ['{"forwarded":[null]}', /entry that is not an object/],
      ['{"forwarded":[{"authority":"a","status":409},null]}', /entry that is not an object/],
      ['{"forwarded":[1]}', /entry that is not an object/],
      ['{"forwarded":["a"]}', /entry that is not an object/],
      ['{"forwarded":[[]]}', /entry that is not an object/],
    ] as const;
    for (const [answer, problem] of cases) {
      const m = await mirrors(answer);
      const e = await uploadOverCircuit(m.o, HS_DESC_PATH, Buffer.from('x'), { signingKeys: () => new Map() }).then(() => null, (x: unknown) => x);
      expect([answer, isBitcloudError(e) && e.code]).toEqual([answer, 'DIR_FETCH_FAILED']);
      expect((e as Error).message).toMatch(problem);
      expect([answer, m.asked()]).toEqual([answer, 3]);
    }
  });

  it('keeps the first mirror\'s answer when an authority answered it (200, or a refusal such as 409)', async () => {
    const k = ed25519Generate();
    const m = await mirrors([{ authority: 'a', status: 409, code: 'HIDDEN_DESC_STALE', nack: signUploadNack('hs_desc', Buffer.from('x'), 'HIDDEN_DESC_STALE', k.secretKey) }, { authority: 'b', status: 429, code: 'RATE_LIMITED' }]);
    await uploadOverCircuit(m.o, '/bitcloud/hs/desc', Buffer.from('x'), { signingKeys: () => new Map([['a', k.publicKey]]) });
    expect(m.asked()).toBe(1);
  });

  describe('checks each 200 against the authority\'s signed ack (SPEC.md §9.21.8 "Upload acknowledgements")', () => {
    const body = Buffer.from('the node\'s own upload');
    const ka = ed25519Generate(), kb = ed25519Generate();
    const keys = new Map([['a'.repeat(64), ka.publicKey], ['b'.repeat(64), kb.publicKey]]);
    const entry = (fp: string, ack?: string) => ({ authority: fp, status: 200, ...(ack ? { ack } : {}) });
    const warnings: unknown[][] = [];
    const debugs: unknown[][] = [];
    const log = { warn: (...a: unknown[]) => warnings.push(a), debug: (...a: unknown[]) => debugs.push(a) } as unknown as Logger;
    const confirm = { signingKeys: () => keys, log };
    /** Mirrors answering `answers[i]` to the i-th upload (the last one after that). */
    async function answering(answers: ForwardedResult[][]) {
      let asked = 0;
      const url = await listen((req, res) => { const a = answers[Math.min(asked++, answers.length - 1)]; req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ forwarded: a })); }); });
      const port = Number(new URL(url).port);
      const relays = ['m1', 'm2', 'm3', 'm4'].map((n) => ({ nickname: n, fingerprint: n.padEnd(40, '0'), flags: new Set(['Running', 'Valid']), roles: ['relay'], dirPort: 9030 }) as unknown as ConsensusRelay);
      const buildTo = () => Promise.resolve({ openStream: () => Promise.resolve({ stream: net.connect(port, '127.0.0.1') }), destroy() {} } as unknown as ClientCircuit);
      return { o: { relays: () => relays, buildTo }, asked: () => asked };
    }

    const lies: [string, ForwardedResult[]][] = [
      ['no ack', [entry('a'.repeat(64))]],
      ['an ack over another body', [entry('a'.repeat(64), signUploadAck('hs_desc', Buffer.from('another body'), ka.secretKey))]],
      ['an ack signed by another key', [entry('a'.repeat(64), signUploadAck('hs_desc', body, kb.secretKey))]],
      ['an ack of another kind', [entry('a'.repeat(64), signUploadAck('hs_pseudonym', body, ka.secretKey))]],
      ['an ack that is not base64 of a signature', [entry('a'.repeat(64), 'x'.repeat(88))]],
      ['an authority whose key the node does not know', [entry('c'.repeat(64), signUploadAck('hs_desc', body, ka.secretKey))]],
    ];
    for (const [why, forwarded] of lies) {
      it(`a 200 with ${why} is not accepted: HIDDEN_UPLOAD_UNCONFIRMED, another mirror is tried, the lie is logged without the node (the mirror blamed only where the node knows the authority's key)`, async () => {
        warnings.length = 0;
        debugs.length = 0;
        const m = await answering([forwarded]);
        await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual([{ authority: forwarded[0].authority, status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' }]);
        expect(m.asked()).toBe(3);
        // An authority whose key the node does not know is no proof against the mirror: debug only.
        const known = keys.has(forwarded[0].authority);
        expect(known ? warnings : debugs).toHaveLength(3);
        expect(known ? debugs : warnings).toHaveLength(0);
        const [fields] = (known ? warnings : debugs)[0] as [Record<string, unknown>];
        expect(Object.keys(fields).sort()).toEqual(['authorities', 'mirror', known ? 'unconfirmed' : 'unknownKey']);
        expect(fields.authorities).toEqual([forwarded[0].authority]);
        expect(String(fields.mirror)).toMatch(/^m[1-4]0+$/);
      });
    }

    it('logs one warn line per mirror answer however many 200s it could not confirm: the mirror, their number, at most 4 authorities', async () => {
      warnings.length = 0;
      const honest = [entry('a'.repeat(64), signUploadAck('hs_desc', body, ka.secretKey))];
      const bogus = Array.from({ length: 64 }, (_, i) => entry((i % 2 ? 'a' : 'b').repeat(64)));
      const m = await answering([bogus, honest]);
      await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual(honest);
      expect(m.asked()).toBe(2);
      expect(warnings).toHaveLength(1);
      const [fields] = warnings[0] as [Record<string, unknown>];
      expect(String(fields.mirror)).toMatch(/^m[1-4]0+$/);
      expect(fields.unconfirmed).toBe(64);
      expect(fields.authorities).toEqual(['b', 'a', 'b', 'a'].map((c) => c.repeat(64)));
    });

    it('does not blame the mirror for a 200 from an authority whose signing key the node does not know: unconfirmed, logged at debug only', async () => {
      warnings.length = 0;
      debugs.length = 0;
      const unknown = Array.from({ length: 8 }, (_, i) => entry(String.fromCharCode(99 + i).repeat(64), signUploadAck('hs_desc', body, ka.secretKey)));
      const m = await answering([unknown]);
      await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual(unknown.map((u) => ({ authority: u.authority, status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' })));
      expect(m.asked()).toBe(3);
      expect(warnings).toHaveLength(0);
      expect(debugs).toHaveLength(3);
      const [fields] = debugs[0] as [Record<string, unknown>];
      expect(fields.unknownKey).toBe(8);
      expect((fields.authorities as string[]).length).toBe(4);
    });

    it('a genuine ack is accepted, and a lying mirror\'s answer is followed by an honest one\'s', async () => {
      const honest = [entry('a'.repeat(64), signUploadAck('hs_desc', body, ka.secretKey)), entry('b'.repeat(64), signUploadAck('hs_desc', body, kb.secretKey))];
      const once = await answering([honest]);
      await expect(uploadOverCircuit(once.o, HS_DESC_PATH, body, confirm)).resolves.toEqual(honest);
      expect(once.asked()).toBe(1);
      const m = await answering([[entry('a'.repeat(64)), entry('b'.repeat(64))], honest]);
      await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual(honest);
      expect(m.asked()).toBe(2);
    });

    it('one authority confirmed and one not: the answer is kept, the unconfirmed one is not reached (retried later), and each kind is checked under its own name', async () => {
      for (const [path, kind] of [[PATHS.descriptor, 'descriptor'], [HS_DESC_PATH, 'hs_desc'], [HS_PSEUDONYM_PATH, 'hs_pseudonym']] as const) {
        const good = entry('a'.repeat(64), signUploadAck(kind, body, ka.secretKey));
        const m = await answering([[good, entry('b'.repeat(64))]]);
        await expect(uploadOverCircuit(m.o, path, body, confirm)).resolves.toEqual([good, { authority: 'b'.repeat(64), status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' }]);
        expect(m.asked()).toBe(1);
      }
    });

    // SPEC.md §9.21.8 "Upload acknowledgements": a refusal (every 4xx but 429) is believed only with
    // the authority's nack over the node's own body, the path's kind and the entry's code.
    const refusal = (fp: string, status: number, code: string, nack?: string): ForwardedResult => ({ authority: fp, status, code, ...(nack ? { nack } : {}) });
    const refusalLies: [string, ForwardedResult][] = [
      ['no nack', refusal('a'.repeat(64), 400, 'HIDDEN_DESC_MALFORMED')],
      ['a nack over another body', refusal('a'.repeat(64), 409, 'HIDDEN_DESC_STALE', signUploadNack('hs_desc', Buffer.from('another body'), 'HIDDEN_DESC_STALE', ka.secretKey))],
      ['a nack of another kind', refusal('a'.repeat(64), 409, 'HIDDEN_DESC_STALE', signUploadNack('hs_pseudonym', body, 'HIDDEN_DESC_STALE', ka.secretKey))],
      ['a nack of another code', refusal('a'.repeat(64), 400, 'HIDDEN_DESC_MALFORMED', signUploadNack('hs_desc', body, 'HIDDEN_DESC_STALE', ka.secretKey))],
      ['a nack signed by another key', refusal('a'.repeat(64), 403, 'HIDDEN_PSEUDONYM_UNKNOWN_NODE', signUploadNack('hs_desc', body, 'HIDDEN_PSEUDONYM_UNKNOWN_NODE', kb.secretKey))],
      ['an ack in place of a nack', refusal('a'.repeat(64), 404, 'X', signUploadAck('hs_desc', body, ka.secretKey))],
      ['a 413 without a nack', refusal('a'.repeat(64), 413, 'HIDDEN_DESC_MALFORMED')],
    ];
    for (const [why, lie] of refusalLies) {
      it(`a ${lie.status} refusal with ${why} is not believed: HIDDEN_UPLOAD_UNCONFIRMED (retried, not settled: another mirror is tried), the mirror blamed in one warn line`, async () => {
        warnings.length = 0;
        debugs.length = 0;
        const m = await answering([[lie, { authority: 'b'.repeat(64), status: 429, code: 'RATE_LIMITED' }]]);
        await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual([
          { authority: 'a'.repeat(64), status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' }, { authority: 'b'.repeat(64), status: 429, code: 'RATE_LIMITED' },
        ]);
        expect(m.asked()).toBe(3);
        expect(warnings).toHaveLength(3);
        expect((warnings[0] as [Record<string, unknown>])[0]).toMatchObject({ unconfirmed: 1, authorities: ['a'.repeat(64)] });
      });
    }

    // No authority answers these uploads with a status other than 200, a 4xx, or a 5xx: an entry
    // with such a status is no answer the node can check, so it does not settle the upload either.
    // A status of 600 or more is no 5xx: not a failing authority, but a status none answers.
    for (const status of [100, 201, 204, 302, 304, 399, -1, 600, 999, 1e6]) {
      it(`an entry with status ${status} (no authority answers so) is not believed: HIDDEN_UPLOAD_UNCONFIRMED, another mirror is tried`, async () => {
        warnings.length = 0;
        debugs.length = 0;
        const m = await answering([[refusal('a'.repeat(64), status, 'HIDDEN_DESC_STALE', signUploadNack('hs_desc', body, 'HIDDEN_DESC_STALE', ka.secretKey)), refusal('b'.repeat(64), status, 'X')]]);
        await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual([
          { authority: 'a'.repeat(64), status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' }, { authority: 'b'.repeat(64), status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' },
        ]);
        expect(m.asked()).toBe(3);
        expect(warnings).toHaveLength(3);
      });
    }

    it('a refusal from an authority whose signing key the node does not know is not believed, and logged at debug only', async () => {
      warnings.length = 0;
      debugs.length = 0;
      const m = await answering([[refusal('c'.repeat(64), 409, 'HIDDEN_DESC_STALE', signUploadNack('hs_desc', body, 'HIDDEN_DESC_STALE', ka.secretKey))]]);
      await expect(uploadOverCircuit(m.o, HS_DESC_PATH, body, confirm)).resolves.toEqual([{ authority: 'c'.repeat(64), status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' }]);
      expect(m.asked()).toBe(3);
      expect(warnings).toHaveLength(0);
      expect(debugs).toHaveLength(3);
    });

    it('a refusal with a genuine nack is a refusal as before (the upload is settled there, no other mirror), for each kind under its own name; a 429 is left as it stands', async () => {
      warnings.length = 0;
      for (const [path, kind] of [[PATHS.descriptor, 'descriptor'], [HS_DESC_PATH, 'hs_desc'], [HS_PSEUDONYM_PATH, 'hs_pseudonym']] as const) {
        const answer = [
          refusal('a'.repeat(64), 409, 'HIDDEN_PSEUDONYM_TAKEN', signUploadNack(kind, body, 'HIDDEN_PSEUDONYM_TAKEN', ka.secretKey)),
          refusal('b'.repeat(64), 400, 'DESC_BAD_SIGNATURE', signUploadNack(kind, body, 'DESC_BAD_SIGNATURE', kb.secretKey)),
          refusal('c'.repeat(64), 429, 'RATE_LIMITED'),
        ];
        const m = await answering([answer]);
        await expect(uploadOverCircuit(m.o, path, body, confirm)).resolves.toEqual(answer);
        expect(m.asked()).toBe(1);
      }
      expect(warnings).toHaveLength(0);
    });
  });

  it('passes on a pseudonym registration only when each entry is sealed to a current authority\'s signing key (SPEC.md §9.21.8)', async () => {
    const k1 = ed25519Generate().publicKey, k2 = ed25519Generate().publicKey;
    let keys: ReadonlyMap<string, Buffer> | null = new Map([[authorityFp, k1], ['ef'.repeat(32), k2]]);
    const results: string[] = [];
    const fwd = new UploadForwarder(() => [{ name: 'a1', fingerprint: authorityFp, url: authorityUrl }] as never, Date.now, (_k, r) => results.push(r), undefined, () => keys);
    const m = await listen((req, res) => { void fwd.serve(req, res, (req.url ?? '').split('?')[0]); });
    const send = (body: Buffer) => httpRequest(`${m}${HS_PSEUDONYM_PATH}`, { method: 'POST', body, maxBytes: 65536, timeoutMs: 10_000 });
    const reg = makePseudonymRegistration(ed25519Generate(), ed25519Generate(), hsPeriodOf(Date.now()));
    const junk = (recipient: Buffer) => ({ recipient, sealed: randomBytes(PSEUDONYM_SEALED_LEN) });
    const before = got.length;
    const refusals: [string, Buffer][] = [
      ['a recipient that is no authority\'s signing key', sealPseudonymUpload(reg, [k1, ed25519Generate().publicKey])],
      ['every recipient unknown', sealPseudonymUpload(reg, [ed25519Generate().publicKey])],
      ['a duplicate recipient', encodePseudonymUpload([junk(k1), junk(k1)])],
      ['more entries than authorities', encodePseudonymUpload([junk(k1), junk(k2), junk(randomBytes(32))])],
      ['no entries', Buffer.from([0])],
      ['a truncated body', sealPseudonymUpload(reg, [k1]).subarray(0, 100)],
    ];
    for (const [why, body] of refusals) {
      const r = await send(body);
      expect([why, r.status, json(r.body).code]).toEqual([why, 400, 'HIDDEN_PSEUDONYM_MALFORMED']);
    }
    expect(got.length).toBe(before);
    // Sealed to the current keys (some or all of them): passed on unchanged.
    const good = sealPseudonymUpload(reg, [k2, k1]);
    const ok = await send(good);
    expect([ok.status, json(ok.body).forwarded]).toEqual([200, [{ authority: authorityFp, status: 200 }]]);
    expect(got.at(-1)).toEqual({ path: HS_PSEUDONYM_PATH, fetcher: 'mirror', body: good });
    // A mirror that knows no authority's signing key (no consensus yet) passes none on.
    keys = null;
    const none = await send(sealPseudonymUpload(reg, [k1]));
    expect([none.status, json(none.body).code]).toEqual([503, 'CONSENSUS_NOT_AVAILABLE']);
    expect(got.length).toBe(before + 1);
    expect(results.filter((r) => r === 'HIDDEN_PSEUDONYM_MALFORMED')).toHaveLength(refusals.length);
  });
});
