// SPEC.md §6.10 "Status page headers": every JSON answer carries X-Content-Type-Options: nosniff,
// those of a MetricsPort too: the relay's GET /status.json (its status page's data) and the 421
// HTTP_BAD_HOST error answer.
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RelayStatus } from '../../relay/status-page';
import { createRegistry, startMetricsServer } from '../../src/ops/metrics';

function get(port: number, p: string, host?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, headers: host ? { host } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
    }).on('error', reject);
  });
}

describe('MetricsPort JSON answers (SPEC.md §6.10)', () => {
  it('sends the relay status JSON and the 421 error answer with nosniff', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-metrics-nosniff-'));
    const s = new RelayStatus({ dataDir: dir, fingerprint: () => 'ab'.repeat(32), consensus: () => null }).load();
    const srv = await startMetricsServer(createRegistry('relay'), 0, '127.0.0.1', s.pages);
    try {
      const port = (srv.address() as AddressInfo).port;
      const page = await get(port, '/');
      expect(page.status).toBe(200);
      expect(page.headers['x-content-type-options']).toBe('nosniff');
      const js = await get(port, '/status.json');
      expect(js.status).toBe(200);
      expect(js.headers['content-type']).toBe('application/json');
      expect(js.headers['x-content-type-options']).toBe('nosniff');
      const bad = await get(port, '/status.json', 'attacker.example');
      expect(bad.status).toBe(421);
      expect(bad.headers['content-type']).toBe('application/json');
      expect(bad.headers['x-content-type-options']).toBe('nosniff');
    } finally {
      await new Promise((r) => srv.close(r));
      await s.flush();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
