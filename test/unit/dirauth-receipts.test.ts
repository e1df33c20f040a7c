// SPEC.md §8.4 / §6.10: POST /bitcloud/receipts on a real node:http server (127.0.0.1, port 0)
// running the authority's own handler (directory/http.ts): acceptance, each single-record refusal
// with its status and code, batches, the body limit, the receipts' own rate limit, metrics, and
// accepted receipts surviving a restart.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type http from 'node:http';
import net from 'node:net';
import { encodeReceiptBody, RECEIPT_BODY_LEN, RECEIPT_LEN } from '../../src/bandwidth/receipt';
import { createAuthorityServer } from '../../directory/http';
import { HTTP_IDLE_TIMEOUT_MS } from '../../src/ops/http-body';
import { MAX_RECEIPT_BATCH, RECEIPTS_PATH } from '../../directory/receipts';
import { consensusArchiveName, RECEIPTS_DIR } from '../../directory/measurement';
import { PATHS } from '../../src/dir/fetch';
import { ed25519Generate, randomBytes, x25519Generate } from '../../src/crypto/primitives';
import { buildDescriptor } from '../../src/dir/descriptor';
import { verifyUploadAck, verifyUploadNack } from '../../src/dir/upload-ack';
import { makeHsDescriptor } from '../../src/hidden/descriptor';
import { HS_DESC_PATH } from '../../src/hidden/store';
import { hsPeriodOf } from '../../src/crypto/blind';
import { HS_PSEUDONYM_PATH, makePseudonymRegistration, sealPseudonymUpload } from '../../src/hidden/pseudonym';
import { GENESIS_ANCHOR, LOCAL_POW_PARAMS, mineIdentityProof } from '../../src/dir/identity-pow';
import { E, epochStart, makeFixture, makeRelay, receipt, record, silentLog, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
let servers: http.Server[] = [];

async function serve(extra: Record<string, unknown> = {}) {
  const made = fx.makeAuthority(extra);
  await made.authority.measurement.onConsensus(fx.consensus.info);
  const server = createAuthorityServer(made.authority, made.registry, made.metrics, silentLog);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  servers.push(server);
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const post = async (body: Uint8Array, p = RECEIPTS_PATH) => {
    const res = await fetch(url + p, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    return { status: res.status, json: await res.json() as Record<string, unknown> };
  };
  return { ...made, url, post, server };
}

beforeEach(() => { fx = makeFixture(); });
afterEach(async () => {
  vi.restoreAllMocks();
  for (const s of servers) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  servers = [];
  fx.cleanup();
});

/** A relay whose descriptor carries a cheap identity proof (SPEC.md §6.4.1), anchored at genesis. */
async function provenRelay(i: number, address: string) {
  const key = ed25519Generate();
  const identityProof = await mineIdentityProof(key.publicKey, GENESIS_ANCHOR, LOCAL_POW_PARAMS);
  return makeRelay(i, { address, key, identityProof });
}

describe('a request target that is not a path (SPEC.md §6.10)', () => {
  it('is 400 HTTP_BAD_REQUEST, not 500', async () => {
    const s = await serve();
    const port = (s.server.address() as { port: number }).port;
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    let reply = '';
    c.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    c.write('GET http://[ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toMatch(/"code":"HTTP_BAD_REQUEST"/);
  });
});

describe('idle connections (SPEC.md §6.10)', () => {
  it('the authority\'s HTTP port drops a connection idle either way for 60 s (an answer nobody reads is not held)', async () => {
    const s = await serve();
    expect(s.server.timeout).toBe(HTTP_IDLE_TIMEOUT_MS);
    expect(HTTP_IDLE_TIMEOUT_MS).toBe(60_000);
    expect(s.server.listenerCount('timeout')).toBe(0);
  });
});

describe('descriptors at private addresses (SPEC.md §6.4 check 7)', () => {
  it('an authority that does not run a test network refuses them and never connects to them', async () => {
    const s = await serve({ testNetwork: false, identityPow: 'local' });
    for (const address of ['127.0.0.1', '10.1.0.1', '192.168.3.4', '100.64.0.9']) {
      const r = makeRelay(7, { address });
      const res = await s.post(r.descriptor.raw, PATHS.descriptor);
      expect(res, address).toMatchObject({ status: 400, json: { code: 'DOC_PRIVATE_ADDRESS' } });
    }
    const pub = await provenRelay(8, '198.51.100.20');
    expect((await s.post(pub.descriptor.raw, PATHS.descriptor)).status).toBe(200);
    for (let i = 0; i < 200 && s.tested.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(s.tested).toEqual(['198.51.100.20']);
  });

  it('with testNetwork they are accepted (the local network and the tests set it)', async () => {
    const s = await serve({ testNetwork: true, identityPow: 'local' });
    expect((await s.post((await provenRelay(9, '127.0.0.1')).descriptor.raw, PATHS.descriptor)).status).toBe(200);
  });
});

describe('POST /bitcloud/receipts (SPEC.md §8.4)', () => {
  it('accepts a countersigned receipt between two relays of the epoch\'s consensus, and counts it', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    const r = await s.post(record(receipt(a, b)));
    expect(r).toEqual({ status: 200, json: { accepted: 1, refused: [] } });
    expect(s.authority.measurement.verifier.pairs(E)).toEqual([{ initiator: a.fp, responder: b.fp, cellsI2R: 1000, cellsR2I: 2000 }]);
    const metrics = await s.registry.metrics();
    expect(metrics).toMatch(/^bitcloud_receipts_accepted_total\{daemon="dirauth-test"\} 1$/m);
  });

  it('refuses one signature only (responder signature zeroed): 400 RECEIPT_ONE_SIGNATURE', async () => {
    const s = await serve();
    const bytes = record(receipt(fx.relays[0], fx.relays[1]));
    bytes.fill(0, RECEIPT_LEN - 64);
    const r = await s.post(bytes);
    expect(r.status).toBe(400);
    expect(r.json.code).toBe('RECEIPT_ONE_SIGNATURE');
    expect(typeof r.json.reason).toBe('string');
    expect(await s.registry.metrics()).toMatch(/^bitcloud_receipts_refused_total\{code="RECEIPT_ONE_SIGNATURE",daemon="dirauth-test"\} 1$/m);
  });

  it('refuses a signer not in the consensus of that epoch: 403 RECEIPT_UNKNOWN_RELAY', async () => {
    const s = await serve();
    const r = await s.post(record(receipt(fx.relays[0], fx.relays[2])));
    expect(r).toMatchObject({ status: 403, json: { code: 'RECEIPT_UNKNOWN_RELAY' } });
  });

  it('refuses counts altered after signing: 400 RECEIPT_BAD_SIGNATURE', async () => {
    const s = await serve();
    const good = receipt(fx.relays[0], fx.relays[1]);
    const bytes = record(good);
    encodeReceiptBody({ ...good.body, cellsI2R: good.body.cellsI2R * 10 }).copy(bytes, 0);
    expect(bytes.subarray(0, RECEIPT_BODY_LEN).equals(good.bodyBytes)).toBe(false);
    const r = await s.post(bytes);
    expect(r).toMatchObject({ status: 400, json: { code: 'RECEIPT_BAD_SIGNATURE' } });
    // The forgery took no slot: the genuine receipt with that serial is still accepted.
    expect((await s.post(record(good))).status).toBe(200);
  });

  it('refuses a replay: 409 RECEIPT_REPLAYED; a different receipt under the same serial: 409 RECEIPT_CONFLICT', async () => {
    const s = await serve();
    const bytes = record(receipt(fx.relays[0], fx.relays[1]));
    expect((await s.post(bytes)).status).toBe(200);
    expect(await s.post(bytes)).toMatchObject({ status: 409, json: { code: 'RECEIPT_REPLAYED' } });
    expect(await s.post(record(receipt(fx.relays[0], fx.relays[1], { cellsI2R: 5 })))).toMatchObject({ status: 409, json: { code: 'RECEIPT_CONFLICT' } });
  });

  it('refuses a past epoch outside its window, and an epoch it holds no consensus for: 422', async () => {
    const s = await serve();
    // Epoch E − 1's window closed at epochStart(E + 1), before now.
    const old = await s.post(record(receipt(fx.relays[0], fx.relays[1], { epoch: E - 1 })));
    expect(old).toMatchObject({ status: 422, json: { code: 'RECEIPT_OUTSIDE_WINDOW' } });
    const unknown = await s.post(record(receipt(fx.relays[0], fx.relays[1], { epoch: E + 1 })));
    expect(unknown).toMatchObject({ status: 422, json: { code: 'RECEIPT_UNKNOWN_EPOCH' } });
    // The window of E closes exactly at epochStart(E + 2).
    fx.clock.now = epochStart(E + 2);
    expect(await s.post(record(receipt(fx.relays[0], fx.relays[1])))).toMatchObject({ status: 422, json: { code: 'RECEIPT_OUTSIDE_WINDOW' } });
  });

  it('refuses a body that is not a positive multiple of 224 bytes: 400 RECEIPT_MALFORMED; past 10 000 records: 413', async () => {
    const s = await serve();
    expect(await s.post(Buffer.alloc(RECEIPT_LEN + 1))).toMatchObject({ status: 400, json: { code: 'RECEIPT_MALFORMED' } });
    expect(await s.post(Buffer.alloc(0))).toMatchObject({ status: 400, json: { code: 'RECEIPT_MALFORMED' } });
    expect(await s.post(Buffer.alloc((MAX_RECEIPT_BATCH + 1) * RECEIPT_LEN))).toMatchObject({ status: 413, json: { code: 'RECEIPT_MALFORMED' } });
  });

  it('judges each record of a batch on its own: 200 with the refused indexes, even when all are refused', async () => {
    const s = await serve();
    const [a, b, c] = fx.relays;
    const first = record(receipt(a, b, { serial: 1 }));
    await s.post(first);
    const batch = Buffer.concat([record(receipt(a, b, { serial: 2 })), first, record(receipt(a, c, { serial: 3 }))]);
    const r = await s.post(batch);
    expect(r.status).toBe(200);
    expect(r.json.accepted).toBe(1);
    expect((r.json.refused as { index: number; code: string }[]).map((x) => [x.index, x.code])).toEqual([[1, 'RECEIPT_REPLAYED'], [2, 'RECEIPT_UNKNOWN_RELAY']]);
    const allBad = await s.post(Buffer.concat([first, first]));
    expect(allBad.status).toBe(200);
    expect(allBad.json.accepted).toBe(0);
  });

  it('has its own rate limit, apart from descriptor uploads', async () => {
    const s = await serve({ receiptRateLimit: { uploadsPerMinute: 1, burst: 2 }, rateLimit: { uploadsPerMinute: 1, burst: 1 } });
    const one = record(receipt(fx.relays[0], fx.relays[1]));
    expect((await s.post(one)).status).toBe(200);
    expect((await s.post(one)).status).toBe(409);
    expect(await s.post(one)).toMatchObject({ status: 429, json: { code: 'RATE_LIMITED' } });
    // The descriptor bucket is untouched: its one token still answers (400: not a descriptor).
    expect((await s.post(Buffer.from('x'), '/bitcloud/descriptor')).status).toBe(400);
  });

  it('keeps uploads a mirror passes on (fetcher header "mirror") in buckets of their own: 25 repeats through a mirror at an address leave its own direct uploads their bucket (SPEC.md §6.10, §9.21.8)', async () => {
    const s = await serve({ rateLimit: { uploadsPerMinute: 1, burst: 20 }, receiptRateLimit: { uploadsPerMinute: 1, burst: 20 } });
    const viaMirror = async (p: string) => (await fetch(s.url + p, { method: 'POST', body: Buffer.from('x'), headers: { 'x-bitcloud-fetcher': 'mirror' } })).status;
    for (const p of [PATHS.descriptor, '/bitcloud/hs/desc', '/bitcloud/hs/pseudonym']) {
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) statuses.push(await viaMirror(p));
      expect(statuses.slice(20)).toEqual([429, 429, 429, 429, 429]);
      // The same address's direct upload still has its own bucket: judged (400, not a valid body), not 429.
      expect((await s.post(Buffer.from('x'), p)).status).toBe(400);
    }
  });

  it('answers every 200 to a relay descriptor, hidden descriptor or pseudonym registration with an ack by its signing key over the body (SPEC.md §9.21.8)', async () => {
    const s = await serve({ identityPow: 'local' });
    const key = fx.signer.signingKey.publicKey;
    const H = ed25519Generate();
    const hidden = buildDescriptor({
      identity: H, onionKey: x25519Generate().publicKey, nickname: 'hidden1', address: '0.0.0.0', orPort: 0, storagePort: 0,
      declaredBandwidth: 1_000_000, family: [], roles: ['storage', 'hidden'], version: 'bitcloud-0.1.0',
      published: epochStart(E) - 60_000, lifetimeMs: 6 * 86_400_000, identityProof: await mineIdentityProof(H.publicKey, GENESIS_ANCHOR, LOCAL_POW_PARAMS),
    });
    const hs = (revision: number) => makeHsDescriptor({ identity: H, period: hsPeriodOf(fx.clock.now), revision, inner: {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    } });
    const reg = sealPseudonymUpload(makePseudonymRegistration(H, ed25519Generate(), hsPeriodOf(fx.clock.now)), [key]);
    // The same body twice ('unchanged' the second time), a hidden descriptor with a newer revision.
    const uploads = [[PATHS.descriptor, 'descriptor', [hidden, hidden]], [HS_DESC_PATH, 'hs_desc', [hs(fx.clock.now), hs(fx.clock.now + 1)]], [HS_PSEUDONYM_PATH, 'hs_pseudonym', [reg, reg]]] as const;
    for (const [p, kind, bodies] of uploads) {
      for (const [via, body] of [['direct', bodies[0]], ['mirror', bodies[1]]] as const) {
        const r = await fetch(s.url + p, { method: 'POST', body, headers: via === 'mirror' ? { 'x-bitcloud-fetcher': 'mirror' } : {} });
        const j = await r.json() as { ack?: unknown };
        expect([kind, via, r.status]).toEqual([kind, via, 200]);
        expect(verifyUploadAck(kind, body, j.ack, key)).toBe(true);
        expect(verifyUploadAck(kind, Buffer.concat([body, Buffer.of(0)]), j.ack, key)).toBe(false);
      }
    }
  });

  it('answers every refusal (4xx but 429) of a relay descriptor, hidden descriptor or pseudonym registration with a nack by its signing key over the kind, the code and the body; 429 and 413 carry none (SPEC.md §9.21.8)', async () => {
    const s = await serve({ rateLimit: { uploadsPerMinute: 1, burst: 6 }, receiptRateLimit: { uploadsPerMinute: 1, burst: 6 } });
    const key = fx.signer.signingKey.publicKey;
    const H = ed25519Generate();
    const hs = (revision: number) => makeHsDescriptor({ identity: H, period: hsPeriodOf(fx.clock.now), revision, inner: {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    } });
    expect((await fetch(s.url + HS_DESC_PATH, { method: 'POST', body: hs(fx.clock.now + 1) })).status).toBe(200);
    const uploads = [
      [PATHS.descriptor, 'descriptor', Buffer.from('not a descriptor'), 400],
      [HS_DESC_PATH, 'hs_desc', Buffer.from('not a hidden descriptor'), 400],
      [HS_DESC_PATH, 'hs_desc', hs(fx.clock.now), 409],
      [HS_PSEUDONYM_PATH, 'hs_pseudonym', Buffer.from('not a registration'), 400],
    ] as const;
    for (const [p, kind, body, status] of uploads) {
      for (const via of ['direct', 'mirror'] as const) {
        const r = await fetch(s.url + p, { method: 'POST', body, headers: via === 'mirror' ? { 'x-bitcloud-fetcher': 'mirror' } : {} });
        const j = await r.json() as { code?: string; nack?: unknown };
        expect([kind, via, r.status]).toEqual([kind, via, status]);
        expect(typeof j.nack === 'string' && j.nack.length).toBe(88);
        expect(verifyUploadNack(kind, body, j.code, j.nack, key)).toBe(true);
        expect(verifyUploadNack(kind, body, 'ANOTHER_CODE', j.nack, key)).toBe(false);
        expect(verifyUploadNack(kind, Buffer.concat([body, Buffer.of(0)]), j.code, j.nack, key)).toBe(false);
        expect(verifyUploadNack(kind === 'descriptor' ? 'hs_desc' : 'descriptor', body, j.code, j.nack, key)).toBe(false);
        expect(verifyUploadAck(kind, body, j.nack, key)).toBe(false);
      }
    }
    // The budget spent (429: retry) and a body over the size limit (413, never read): no nack.
    for (const [p, body, status] of [[HS_PSEUDONYM_PATH, Buffer.from('x'), 429], [PATHS.descriptor, Buffer.alloc(1024 * 1024), 413]] as const) {
      let r = await fetch(s.url + p, { method: 'POST', body });
      for (let i = 0; i < 10 && r.status !== status; i++) r = await fetch(s.url + p, { method: 'POST', body });
      expect(r.status).toBe(status);
      expect(await r.json()).not.toHaveProperty('nack');
    }
  });

  it('answers the held hidden descriptor sent again, byte for byte, 200 "unchanged" with an ack; the same revision with other bytes stays 409 HIDDEN_DESC_STALE with a nack (SPEC.md §9.21.3, §9.21.8)', async () => {
    const s = await serve();
    const key = fx.signer.signingKey.publicKey;
    const H = ed25519Generate();
    const hs = (revision: number) => makeHsDescriptor({ identity: H, period: hsPeriodOf(fx.clock.now), revision, inner: {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    } });
    const body = hs(fx.clock.now);
    const first = await s.post(body, HS_DESC_PATH);
    expect(first.status).toBe(200);
    // A node's retry through another mirror after the first mirror's answer was lost: the very same bytes.
    for (const via of ['mirror', 'direct'] as const) {
      const r = await fetch(s.url + HS_DESC_PATH, { method: 'POST', body, headers: via === 'mirror' ? { 'x-bitcloud-fetcher': 'mirror' } : {} });
      const j = await r.json() as Record<string, unknown>;
      expect([via, r.status, j.result, j.revision]).toEqual([via, 200, 'unchanged', fx.clock.now]);
      expect(verifyUploadAck('hs_desc', body, j.ack, key)).toBe(true);
    }
    const other = hs(fx.clock.now);
    const stale = await s.post(other, HS_DESC_PATH);
    expect([stale.status, stale.json.code]).toEqual([409, 'HIDDEN_DESC_STALE']);
    expect(verifyUploadNack('hs_desc', other, stale.json.code, stale.json.nack, key)).toBe(true);
    const lower = hs(fx.clock.now - 1);
    expect((await s.post(lower, HS_DESC_PATH)).status).toBe(409);
    const newer = await s.post(hs(fx.clock.now + 1), HS_DESC_PATH);
    expect([newer.status, newer.json.result]).toEqual([200, 'updated']);
    expect(first.json.result).toBe('new');
  });

  it('two uploaders that send their body slowly do not make an honest upload RECEIPT_BUSY; the server bounds every request\'s time (SPEC.md §8.4, §6.10)', async () => {
    const s = await serve();
    let requests = 0;
    s.server.on('request', () => { requests++; });
    const port = (s.server.address() as { port: number }).port;
    for (let i = 0; i < 2; i++) {
      const c = net.connect(port, '127.0.0.1');
      c.on('error', () => {});
      c.write(`POST ${RECEIPTS_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${1000 * RECEIPT_LEN}\r\n\r\n`);
      c.write(Buffer.alloc(10)); // then nothing
    }
    while (requests < 2) await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); // the handlers reach their body read
    expect(await s.post(record(receipt(fx.relays[0], fx.relays[1])))).toEqual({ status: 200, json: { accepted: 1, refused: [] } });
    expect(s.server.headersTimeout).toBe(10_000);
    expect(s.server.requestTimeout).toBe(30_000);
  });

  it('keeps accepted receipts across a restart (file per epoch, consensus archive)', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    const bytes = record(receipt(a, b));
    expect((await s.post(bytes)).status).toBe(200);
    expect(fs.statSync(path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`)).size).toBe(RECEIPT_LEN);
    expect(fs.existsSync(path.join(fx.dir, consensusArchiveName(epochStart(E))))).toBe(true);

    // A new authority over the same data directory: no consensus handed over by the test.
    const again = fx.makeAuthority();
    expect(again.authority.measurement.load()).toEqual({ consensuses: 1, receipts: 1 });
    expect(again.authority.measurement.verifier.pairs(E)).toHaveLength(1);
    expect(again.authority.measurement.verifier.accept(bytes, fx.clock.now)).toMatchObject({ ok: false, code: 'RECEIPT_REPLAYED' });
  });

  it('answers 503 RECEIPT_NOT_SAVED when the accepted receipts cannot be saved, keeps none of them, and accepts the retry (SPEC.md §8.4 "Persistence")', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    const bytes = record(receipt(a, b));
    // The epoch's file cannot be opened for appending: a folder stands at its path.
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    fs.mkdirSync(file, { recursive: true });
    expect(await s.post(bytes)).toMatchObject({ status: 503, json: { code: 'RECEIPT_NOT_SAVED' } });
    expect(s.authority.measurement.verifier.pairs(E)).toEqual([]);
    expect(await s.registry.metrics()).not.toMatch(/^bitcloud_receipts_accepted_total\{daemon="dirauth-test"\} [1-9]/m);
    fs.rmSync(file, { recursive: true });
    // The uploader retries (a 5xx, §8.4.1): accepted now, not refused as a replay.
    expect(await s.post(bytes)).toEqual({ status: 200, json: { accepted: 1, refused: [] } });
    expect(fs.statSync(file).size).toBe(RECEIPT_LEN);
  });

  it('ignores a torn last record and records that no longer verify when reloading', async () => {
    const s = await serve();
    await s.post(record(receipt(fx.relays[0], fx.relays[1])));
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    const forged = record(receipt(fx.relays[0], fx.relays[1], { serial: 9 }));
    forged[RECEIPT_BODY_LEN + 3] ^= 1;
    fs.appendFileSync(file, Buffer.concat([forged, Buffer.alloc(100)]));
    const again = fx.makeAuthority();
    expect(again.authority.measurement.load().receipts).toBe(1);
  });

  it('cuts a torn last record off the file at start, so later appends stay whole records and survive the next restart (SPEC.md §8.4 "Persistence")', async () => {
    const s = await serve();
    expect((await s.post(record(receipt(fx.relays[0], fx.relays[1])))).status).toBe(200);
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    fs.appendFileSync(file, Buffer.alloc(100, 0xee));
    const b = fx.makeAuthority();
    expect(b.authority.measurement.load().receipts).toBe(1);
    expect(fs.statSync(file).size).toBe(RECEIPT_LEN);
    expect((await b.authority.measurement.accept(record(receipt(fx.relays[0], fx.relays[1], { serial: 2 })))).status).toBe(200);
    const c = fx.makeAuthority();
    expect(c.authority.measurement.load().receipts).toBe(2);
  });

  it('answers 503 RECEIPT_NOT_SAVED on a short write and cuts its partial bytes off the file (SPEC.md §8.4 "Persistence")', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    expect((await s.post(record(receipt(a, b)))).status).toBe(200);
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    const realOpen = fsp.open.bind(fsp);
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      const write = fh.write.bind(fh) as (b: Uint8Array) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;
      // The disk takes 100 bytes of the record and no more (a full disk).
      (fh as { write: unknown }).write = (buf: Uint8Array) => write(buf.subarray(0, 100));
      return fh;
    });
    const bytes = record(receipt(a, b, { serial: 2 }));
    expect(await s.post(bytes)).toMatchObject({ status: 503, json: { code: 'RECEIPT_NOT_SAVED' } });
    expect(fs.statSync(file).size).toBe(RECEIPT_LEN);
    spy.mockRestore();
    // The retry is accepted (not a replay), and both records come back after a restart.
    expect(await s.post(bytes)).toEqual({ status: 200, json: { accepted: 1, refused: [] } });
    expect(fx.makeAuthority().authority.measurement.load().receipts).toBe(2);
  });

  /** Every receipt file opened for appending while it is on gets `patch` applied to its handle. */
  function patchReceiptFiles(patch: (fh: Awaited<ReturnType<typeof fsp.open>>) => void) {
    const realOpen = fsp.open.bind(fsp);
    return vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      patch(fh);
      return fh;
    });
  }
  const failingSync = (fh: Awaited<ReturnType<typeof fsp.open>>) => {
    (fh as { sync: unknown }).sync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
  };

  it('answers 503 RECEIPT_NOT_SAVED when the fsync after an append fails and cuts the appended records off the file (SPEC.md §8.4 "Persistence")', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    expect((await s.post(record(receipt(a, b)))).status).toBe(200);
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    const before = fs.statSync(file).size;
    const spy = patchReceiptFiles(failingSync);
    const bytes = record(receipt(a, b, { serial: 2 }));
    expect(await s.post(bytes)).toMatchObject({ status: 503, json: { code: 'RECEIPT_NOT_SAVED' } });
    expect(fs.statSync(file).size).toBe(before);
    spy.mockRestore();
    // Nothing of the failed append is read back at a restart; the retry is accepted and kept.
    expect(fx.makeAuthority().authority.measurement.load().receipts).toBe(1);
    expect(await s.post(bytes)).toEqual({ status: 200, json: { accepted: 1, refused: [] } });
    expect(fx.makeAuthority().authority.measurement.load().receipts).toBe(2);
  });

  it('when the fsync fails and the cut back fails too, every later upload is answered 503 RECEIPT_NOT_SAVED until a restart, logged once (SPEC.md §8.4 "Persistence")', async () => {
    const s = await serve();
    const [a, b] = fx.relays;
    expect((await s.post(record(receipt(a, b)))).status).toBe(200);
    const errors = vi.spyOn(silentLog, 'error');
    const spy = patchReceiptFiles((fh) => {
      failingSync(fh);
      (fh as { truncate: unknown }).truncate = () => Promise.reject(Object.assign(new Error('EIO: i/o error, ftruncate'), { code: 'EIO' }));
    });
    expect(await s.post(record(receipt(a, b, { serial: 2 })))).toMatchObject({ status: 503, json: { code: 'RECEIPT_NOT_SAVED' } });
    spy.mockRestore();
    // The disk works again, but the file may hold records answered 503: nothing more is appended.
    const file = path.join(fx.dir, RECEIPTS_DIR, `${E}.bin`);
    const size = fs.statSync(file).size;
    for (const serial of [3, 4]) expect(await s.post(record(receipt(a, b, { serial })))).toMatchObject({ status: 503, json: { code: 'RECEIPT_NOT_SAVED' } });
    expect(fs.statSync(file).size).toBe(size);
    const broken = errors.mock.calls.filter((c) => /receipt store broken/.test(String(c[1] ?? c[0])));
    expect(broken).toHaveLength(1);
    // A restart (a new process over the same data directory) appends again.
    const again = fx.makeAuthority();
    again.authority.measurement.load();
    expect((await again.authority.measurement.accept(record(receipt(a, b, { serial: 5 })))).status).toBe(200);
  });
});
