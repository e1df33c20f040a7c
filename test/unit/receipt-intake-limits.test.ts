// SPEC.md §8.4 "Intake limits" / §6.10: POST /bitcloud/receipts against slow and large uploads.
// A body is read in full, within a deadline, before a verification slot is taken, so uploaders
// that send their body slowly (or never) hold no slot; bodies read at once are bounded per
// address; the rate limit charges one token per 1000 records. Runs the authority's handler
// (directory/receipts.ts) on a node:http server on 127.0.0.1 with a stub intake; the full server
// (directory/http.ts) is covered in dirauth-receipts.test.ts.
import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { RECEIPT_LEN } from '../../src/bandwidth/receipt';
import { dropUnreadBody } from '../../src/ops/http-body';
import { prom } from '../../src/ops/metrics';
import { RateLimiter } from '../../directory/rate-limit';
import {
  createReceiptIntakeMetrics, RECEIPTS_PATH, serveReceiptUpload, UploadGate, type ReceiptIntake, type ReceiptUploadAnswer,
} from '../../directory/receipts';

const servers: http.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
});

/** Every upload is answered as accepted whole (the records are not judged here). */
const intake: ReceiptIntake = {
  accept: (body) => Promise.resolve({ status: 200, body: { accepted: body.length / RECEIPT_LEN, refused: [] }, added: [] } as ReceiptUploadAnswer),
};

async function serve(limiter: RateLimiter, gate: UploadGate) {
  const reg = new prom.Registry();
  const m = createReceiptIntakeMetrics(reg);
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    dropUnreadBody(req, res);
    seen.push(req.url ?? '');
    void serveReceiptUpload(intake, req, res, limiter, m, gate);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  servers.push(server);
  const port = (server.address() as { port: number }).port;
  const post = async (body: Uint8Array) => {
    const res = await fetch(`http://127.0.0.1:${port}${RECEIPTS_PATH}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    return { status: res.status, json: await res.json() as Record<string, unknown> };
  };
  return { port, post, seen, reg };
}

/**
 * A slow uploader: announces a full upload, sends a few bytes, then nothing. Resolves once the
 * server has seen its request; `answer` resolves with whatever the server sent before closing.
 */
async function slowUpload(port: number, seen: string[]) {
  const before = seen.length;
  const s = net.connect(port, '127.0.0.1');
  sockets.push(s);
  let got = '';
  s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  const answer = new Promise<string>((r) => s.on('close', () => r(got)));
  s.write(`POST ${RECEIPTS_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${1000 * RECEIPT_LEN}\r\n\r\n`);
  s.write(Buffer.alloc(10));
  while (seen.length === before) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setImmediate(r));
  return { answer };
}

describe('receipt intake limits (SPEC.md §8.4)', () => {
  it('uploaders that send their body slowly hold no verification slot: an honest upload is accepted meanwhile', async () => {
    const s = await serve(new RateLimiter(600, 120), new UploadGate());
    await slowUpload(s.port, s.seen);
    await slowUpload(s.port, s.seen);
    expect(await s.post(Buffer.alloc(2 * RECEIPT_LEN))).toEqual({ status: 200, json: { accepted: 2, refused: [] } });
  });

  it('a body not read in full within the deadline is answered 408 RECEIPT_UPLOAD_TIMEOUT and its connection closed', async () => {
    const s = await serve(new RateLimiter(600, 120), new UploadGate(2, { bodyTimeoutMs: 50 }));
    const slow = await slowUpload(s.port, s.seen);
    const answer = await slow.answer; // the server closes the connection: no wall-clock bound here
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"RECEIPT_UPLOAD_TIMEOUT"');
    expect(await s.reg.metrics()).toMatch(/^bitcloud_receipts_refused_total\{code="RECEIPT_UPLOAD_TIMEOUT"\} 1$/m);
    // Its read slot is free again.
    expect((await s.post(Buffer.alloc(RECEIPT_LEN))).status).toBe(200);
  });

  it('bounds the bodies read at once per address: one more is answered 503 RECEIPT_BUSY before its body is read', async () => {
    const s = await serve(new RateLimiter(600, 120), new UploadGate(2, { readsPerAddress: 2 }));
    await slowUpload(s.port, s.seen);
    await slowUpload(s.port, s.seen);
    expect(await s.post(Buffer.alloc(RECEIPT_LEN))).toMatchObject({ status: 503, json: { code: 'RECEIPT_BUSY' } });
  });

  it('charges the rate limit one token per 1000 records', async () => {
    const s = await serve(new RateLimiter(1, 6), new UploadGate());
    expect((await s.post(Buffer.alloc(5000 * RECEIPT_LEN))).status).toBe(200); // 5 tokens: 1 left
    expect((await s.post(Buffer.alloc(RECEIPT_LEN))).status).toBe(200); // 1 token: 0 left
    expect(await s.post(Buffer.alloc(RECEIPT_LEN))).toMatchObject({ status: 429, json: { code: 'RATE_LIMITED' } });
  });
});
