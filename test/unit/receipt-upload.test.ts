// SPEC.md §8.4: the uploader against a real node:http server on 127.0.0.1 answering like
// directory/receipts.ts answerReceiptUpload; and the operator's bandwidth.json (node-local).
// The clock is injected; no test asserts on time.
import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs/promises';
import { ed25519Generate } from '../../src/crypto/primitives';
import { signReceipt, countersign, decodeReceiptBatch, encodeReceipt, RECEIPT_LEN, type Receipt } from '../../src/bandwidth/receipt';
import { silentLogger, type Logger } from '../../src/ops/log';
import { ReceiptUploader, RECEIPT_UPLOAD_PATH } from '../../src/bandwidth/receipt-upload';
import { NodeBandwidth, parseReceiptSettings, type BandwidthStatus } from '../../src/bandwidth/node-bandwidth';

const P = 10;
const E = 170_000_000;
const cleanups: Array<() => unknown> = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

const a = ed25519Generate();
const b = ed25519Generate();
function receipt(serial: number, epoch = E): Receipt {
  const p = signReceipt({ epoch, initiator: a.publicKey, responder: b.publicKey, cellsI2R: 10 + serial, cellsR2I: 5, serial }, a);
  const r = countersign(p, { cellsI2R: 10 + serial, cellsR2I: 5 }, b, 1000);
  if (!r.ok) throw new Error('countersign failed');
  return r.receipt;
}

/** `html`: the body is sent as it is, as text/html (a web server that is not an authority). */
type Answer = (records: Receipt[]) => { status: number; body: unknown; html?: boolean };
/** An authority stub: records every upload, answers with `answer`. */
async function authority(answer: Answer) {
  const uploads: Receipt[][] = [];
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      expect(req.method).toBe('POST');
      expect(req.url).toBe(RECEIPT_UPLOAD_PATH);
      expect(req.headers['content-type']).toBe('application/octet-stream');
      const records = decodeReceiptBatch(Buffer.concat(chunks));
      uploads.push(records);
      const { status, body, html } = answer(records);
      res.writeHead(status, { 'content-type': html ? 'text/html' : 'application/json' });
      res.end(html ? String(body) : JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => { srv.close(() => r()); srv.closeAllConnections(); }));
  const port = (srv.address() as { port: number }).port;
  return { uploads, url: `http://127.0.0.1:${port}`, fingerprint: ed25519Generate().publicKey.toString('hex') };
}

function uploader(auths: { url: string; fingerprint: string }[], clock: { now: number }) {
  return new ReceiptUploader({ authorities: () => auths, periodSeconds: () => P, now: () => clock.now, retryMinMs: 1000, retryMaxMs: 4000, startJitterMs: 0 });
}
const ended = (e = E) => (e + 1) * P * 1000 + 1; // just after the epoch ended
const accept: Answer = (rs) => ({ status: 200, body: { accepted: rs.length, refused: [] } });

describe('ReceiptUploader (SPEC §8.4)', () => {
  it('holds receipts until their epoch ends, then uploads them as one batch to every authority', async () => {
    const [x, y] = [await authority(accept), await authority(accept)];
    const clock = { now: E * P * 1000 + 5 };
    const u = uploader([x, y], clock);
    u.add(receipt(1)); u.add(receipt(2));
    await u.pump();
    expect(x.uploads).toHaveLength(0); // epoch not over
    clock.now = ended();
    await u.pump();
    expect(x.uploads.map((b) => b.length)).toEqual([2]);
    expect(y.uploads.map((b) => b.length)).toEqual([2]);
    expect(u.status(E)).toMatchObject({ receipts: 2, pending: 0, uploaded: { [x.fingerprint]: 2, [y.fingerprint]: 2 } });
    await u.pump();
    expect(x.uploads).toHaveLength(1); // delivered: never sent again
    expect(u.heldCount).toBe(0);
  });

  it('RECEIPT_REPLAYED counts as delivered; another refusal is final for that record', async () => {
    const x = await authority((rs) => ({ status: 200, body: { accepted: 0, refused: [
      { index: 0, code: 'RECEIPT_REPLAYED', reason: 'seen' }, { index: 1, code: 'RECEIPT_UNKNOWN_RELAY', reason: 'no' },
    ].slice(0, rs.length) } }));
    const clock = { now: ended() };
    const u = uploader([x], clock);
    u.add(receipt(1)); u.add(receipt(2));
    await u.pump();
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 1 }, refused: { [x.fingerprint]: 1 }, pending: 0 });
    clock.now += 10_000;
    await u.pump();
    expect(x.uploads).toHaveLength(1);
  });

  it('a single-record 4xx answer ({code, reason}) is final; 409 REPLAYED is delivered', async () => {
    const x = await authority(() => ({ status: 400, body: { code: 'RECEIPT_BAD_SIGNATURE', reason: 'altered' } }));
    const y = await authority(() => ({ status: 409, body: { code: 'RECEIPT_REPLAYED', reason: 'seen' } }));
    const clock = { now: ended() };
    const u = uploader([x, y], clock);
    u.add(receipt(1));
    await u.pump();
    clock.now += 60_000;
    await u.pump();
    expect(x.uploads).toHaveLength(1);
    expect(y.uploads).toHaveLength(1);
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 0, [y.fingerprint]: 1 }, refused: { [x.fingerprint]: 1 }, pending: 0 });
  });

  it('a 5xx is retried with backoff until it succeeds', async () => {
    let fail = 2;
    const x = await authority((rs) => (fail-- > 0 ? { status: 503, body: { code: 'BUSY' } } : accept(rs)));
    const clock = { now: ended() };
    const u = uploader([x], clock);
    u.add(receipt(1));
    await u.pump();
    await u.pump(); // backoff not over: no request
    expect(x.uploads).toHaveLength(1);
    clock.now += 1000; await u.pump(); // first backoff ≤ 1 s
    clock.now += 2000; await u.pump(); // second ≤ 2 s
    expect(x.uploads).toHaveLength(3);
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 1 }, pending: 0 });
  });

  it('408 RECEIPT_UPLOAD_TIMEOUT (the authority timed out reading the body) keeps the records and is retried like a 503', async () => {
    let slow = 2;
    const x = await authority((rs) => (slow-- > 0 ? { status: 408, body: { code: 'RECEIPT_UPLOAD_TIMEOUT', reason: 'body not read within 10 s' } } : accept(rs)));
    const clock = { now: ended() };
    const u = uploader([x], clock);
    u.add(receipt(1));
    await u.pump();
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 0 }, refused: { [x.fingerprint]: 0 }, pending: 1 });
    expect(u.heldCount).toBe(1);
    await u.pump(); // backoff not over: no request
    expect(x.uploads).toHaveLength(1);
    clock.now += 1000; await u.pump();
    clock.now += 2000; await u.pump();
    expect(x.uploads).toHaveLength(3);
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 1 }, refused: { [x.fingerprint]: 0 }, pending: 0 });
  });

  it('the authority\'s rate limit (429 RATE_LIMITED) keeps the records and is retried with backoff; 429 RECEIPT_TOO_MANY is final', async () => {
    let limited = 2;
    const x = await authority((rs) => (limited-- > 0 ? { status: 429, body: { code: 'RATE_LIMITED', reason: 'slow down' } } : accept(rs)));
    const y = await authority(() => ({ status: 429, body: { code: 'RECEIPT_TOO_MANY', reason: '256 already' } }));
    const clock = { now: ended() };
    const u = uploader([x, y], clock);
    u.add(receipt(1));
    await u.pump();
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 0 }, refused: { [x.fingerprint]: 0, [y.fingerprint]: 1 }, pending: 1 });
    await u.pump(); // backoff not over: no request
    expect(x.uploads).toHaveLength(1);
    clock.now += 1000; await u.pump();
    clock.now += 2000; await u.pump();
    expect(x.uploads).toHaveLength(3);
    expect(y.uploads).toHaveLength(1);
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 1 }, refused: { [x.fingerprint]: 0 }, pending: 0 });
  });

  it('a 200 without the JSON upload answer (an HTML page, another object) keeps the records and is retried', async () => {
    const answers: ReturnType<Answer>[] = [
      { status: 200, body: '<!doctype html><title>Welcome</title>', html: true },
      { status: 200, body: { ok: true } },
    ];
    const x = await authority((rs) => answers.shift() ?? accept(rs));
    const clock = { now: ended() };
    const u = uploader([x], clock);
    u.add(receipt(1));
    await u.pump();
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 0 }, refused: { [x.fingerprint]: 0 }, pending: 1 });
    clock.now += 1000; await u.pump();
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 0 }, pending: 1 });
    clock.now += 2000; await u.pump();
    expect(x.uploads).toHaveLength(3);
    expect(u.status(E)).toMatchObject({ uploaded: { [x.fingerprint]: 1 }, pending: 0 });
  });

  it('an epoch\'s first upload to an authority waits a random delay of at most min(startJitterMs, P/4) after the epoch ends', async () => {
    const x = await authority(accept);
    const clock = { now: ended() };
    const draws = [0.5];
    const u = new ReceiptUploader({ authorities: () => [x], periodSeconds: () => P, now: () => clock.now, startJitterMs: 60_000, random: () => draws.shift() ?? 0 });
    u.add(receipt(1));
    await u.pump();
    // P = 10 s caps the delay at 2.5 s; the draw 0.5 puts it at 1.25 s after the epoch's end.
    clock.now = (E + 1) * P * 1000 + 1249; await u.pump();
    expect(x.uploads).toHaveLength(0);
    clock.now = (E + 1) * P * 1000 + 1250; await u.pump();
    expect(x.uploads).toHaveLength(1);
  });

  it('transport errors are retried; the window closing stops the retries and expires the records', async () => {
    const dead = { url: 'http://127.0.0.1:9', fingerprint: 'ab'.repeat(32) }; // discard port: refused
    const x = await authority(() => ({ status: 500, body: {} }));
    const clock = { now: ended() };
    const u = uploader([x, dead], clock);
    u.add(receipt(1));
    await u.pump();
    clock.now += 4000; await u.pump();
    expect(x.uploads).toHaveLength(2);
    expect(u.status(E)!.pending).toBe(2);
    clock.now = (E + 2) * P * 1000; // the window [E·P, (E+2)·P) has closed
    await u.pump();
    clock.now += 10_000; await u.pump();
    expect(x.uploads).toHaveLength(2);
    expect(u.status(E)).toMatchObject({ pending: 0, expired: 2 });
    expect(u.heldCount).toBe(0);
  });
});

describe('NodeBandwidth status file and settings', () => {
  it('writes bandwidth.json atomically with per-epoch totals, peers and upload status; keeps undelivered receipts across a restart', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bw-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const x = await authority(accept);
    const auth = { name: 'x', identity: Buffer.alloc(32), fingerprint: x.fingerprint, host: '127.0.0.1', port: 0, url: x.url };
    const clock = { now: E * P * 1000 + 5 };
    const make = () => new NodeBandwidth({ identity: b, dataDir: dir, authorities: [auth], periodSeconds: () => P, now: () => clock.now, settings: { uploadJitterSeconds: 0 } });
    const nb = make();
    for (const s of [1, 2]) { const r = receipt(s); nb.totals.add(r); nb.uploader.add(r); }
    await nb.stop();
    const j = JSON.parse(await fs.readFile(nb.statusFile, 'utf8')) as BandwidthStatus;
    expect(j).toMatchObject({ version: 1, identity: b.publicKey.toString('hex'), periodSeconds: P, disagreements: {} });
    expect(j.epochs).toEqual([{
      epoch: E, receipts: 2, cellsSent: 10, cellsReceived: 23, peers: 1,
      byPeer: [{ peer: a.publicKey.toString('hex'), sent: 10, received: 23, receipts: 2 }],
      uploaded: { [x.fingerprint]: 0 }, refused: { [x.fingerprint]: 0 }, pending: 2, expired: 0,
    }]);
    expect((await fs.stat(path.join(dir, 'receipts-held.bin'))).size).toBe(2 * RECEIPT_LEN);
    // Restart: the held receipts come back and go out once the epoch has ended.
    const again = make();
    await again.start();
    clock.now = ended();
    await again.uploader.pump();
    await again.stop();
    expect(x.uploads.map((u) => u.length)).toEqual([2]);
    await expect(fs.stat(path.join(dir, 'receipts-held.bin'))).rejects.toThrow();
  });

  it('drops only the unusable records of receipts-held.bin, never the records around them (SPEC §8.4.1 restart)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bw-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const x = await authority(accept);
    const auth = { name: 'x', identity: Buffer.alloc(32), fingerprint: x.fingerprint, host: '127.0.0.1', port: 0, url: x.url };
    const clock = { now: E * P * 1000 + 5 };
    // A receipt between two other nodes: it verifies, but this node (b) is not party to it.
    const c = ed25519Generate();
    const fp = signReceipt({ epoch: E, initiator: a.publicKey, responder: c.publicKey, cellsI2R: 1, cellsR2I: 1, serial: 9 }, a);
    const foreign = countersign(fp, { cellsI2R: 1, cellsR2I: 1 }, c, 1000);
    if (!foreign.ok) throw new Error('countersign failed');
    const forged = encodeReceipt(receipt(3)); forged[RECEIPT_LEN - 1] ^= 1;
    const unparsable = Buffer.alloc(RECEIPT_LEN, 0xff);
    await fs.writeFile(path.join(dir, 'receipts-held.bin'), Buffer.concat([
      unparsable, encodeReceipt(receipt(1)), encodeReceipt(foreign.receipt), forged, encodeReceipt(receipt(2)), Buffer.alloc(7),
    ]));
    const warned: unknown[] = [];
    const log = Object.assign(Object.create(silentLogger) as Logger, { warn: (o: unknown) => { warned.push(o); } });
    const nb = new NodeBandwidth({ identity: b, dataDir: dir, authorities: [auth], periodSeconds: () => P, now: () => clock.now, log, settings: { uploadJitterSeconds: 0 } });
    await nb.start();
    clock.now = ended();
    await nb.uploader.pump();
    await nb.stop();
    expect(x.uploads.map((u) => u.map((r) => r.body.serial))).toEqual([[1, 2]]);
    expect(nb.totals.peers(E).get(a.publicKey.toString('hex'))).toMatchObject({ receipts: 2 });
    expect(warned).toContainEqual({ receipts: 2, dropped: 4 });
  });

  it('parses the receipts config object, naming bad keys', () => {
    expect(parseReceiptSettings(undefined)).toEqual({ jitterSeconds: 30, answerTimeoutSeconds: 60, shutdownGraceMs: 2000, uploadJitterSeconds: 60 });
    expect(parseReceiptSettings({ jitterSeconds: 2 }).jitterSeconds).toBe(2);
    expect(() => parseReceiptSettings({ jitterSeconds: -1 })).toThrow(/receipts\.jitterSeconds/);
    expect(() => parseReceiptSettings({ nope: 1 })).toThrow(/receipts\.nope/);
  });
});
