// An unread HTTP request body is not drained (src/ops/http-body.ts): a real MetricsPort server on
// 127.0.0.1 answers a 64 MiB chunked POST and stops reading, so the sender cannot push more than
// the socket buffers hold; the answer still arrives.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import type http from 'node:http';
import { createRegistry, startMetricsServer } from '../../src/ops/metrics';
import { HTTP_SERVER_TIMEOUTS } from '../../src/ops/http-body';

function post(port: number, total: number): Promise<{ sent: number; status: number }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let sent = 0, status = 0, over = false;
    const finish = () => { if (!over) { over = true; s.destroy(); resolve({ sent, status }); } };
    s.on('data', (d) => { const m = /^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1')); if (m) status = Number(m[1]); });
    s.on('close', finish);
    s.on('error', finish);
    s.write('POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 1), Buffer.from('\r\n')]);
    const pump = () => {
      while (!over && sent < total) { sent += 0x10000; if (!s.write(chunk)) { s.once('drain', pump); return; } }
      if (!over) s.end('0\r\n\r\n');
    };
    pump();
  });
}

describe('unread request bodies are not drained', () => {
  it('a 64 MiB POST to a MetricsPort is answered, then the connection ends: far less than the body is taken', async () => {
    const srv: http.Server = await startMetricsServer(createRegistry('http-body-test'), 0);
    const port = (srv.address() as net.AddressInfo).port;
    const r = await post(port, 64 * 1024 * 1024);
    await new Promise<void>((res) => srv.close(() => res()));
    expect(r.status).toBe(404);
    expect(r.sent).toBeLessThan(32 * 1024 * 1024);
  });

  it('a MetricsPort gives a request\'s headers 10 s and the whole request 30 s, as every daemon\'s HTTP port does (SPEC.md §6.10)', async () => {
    const srv: http.Server = await startMetricsServer(createRegistry('http-timeouts-test'), 0);
    try {
      expect([srv.headersTimeout, srv.requestTimeout]).toEqual([HTTP_SERVER_TIMEOUTS.headersTimeout, HTTP_SERVER_TIMEOUTS.requestTimeout]);
      expect(HTTP_SERVER_TIMEOUTS).toEqual({ headersTimeout: 10_000, requestTimeout: 30_000 });
    } finally {
      await new Promise<void>((res) => srv.close(() => res()));
    }
  });
});
