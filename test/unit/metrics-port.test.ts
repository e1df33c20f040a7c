// SPEC.md §6.10 MetricsPort: on by default on 127.0.0.1, a taken default is skipped with a warning,
// a port the operator chose must be free, 0 turns it off.
import http from 'node:http';
import perfHooks from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { createRegistry, EVENT_LOOP_SAMPLE_MS, metricsHostAllowed, openMetricsPort } from '../../src/ops/metrics';

function listen(): Promise<http.Server> {
  return new Promise((resolve) => { const s = http.createServer(); s.listen(0, '127.0.0.1', () => resolve(s)); });
}
const portOf = (s: http.Server) => (s.address() as { port: number }).port;
const close = (s: http.Server) => new Promise<void>((r) => s.close(() => r()));

describe('MetricsPort', () => {
  it('serves /metrics on 127.0.0.1 and nothing else', async () => {
    const probe = await listen(); const port = portOf(probe); await close(probe);
    const warnings: object[] = [];
    const srv = await openMetricsPort(createRegistry('t'), { metricsPort: port, metricsHost: '127.0.0.1', metricsPortExplicit: false }, { warn: (o) => warnings.push(o) });
    expect(srv).not.toBeNull();
    expect(srv!.address()).toMatchObject({ address: '127.0.0.1', port });
    const get = (p: string) => fetch(`http://127.0.0.1:${port}${p}`);
    expect((await get('/metrics')).status).toBe(200);
    expect(await (await get('/metrics')).text()).toMatch(/process_cpu_user_seconds_total/);
    expect((await get('/')).status).toBe(404);
    await close(srv!);
    expect(warnings).toEqual([]);
  });

  it('refuses a Host that names no address of the port (DNS rebinding), 421 HTTP_BAD_HOST, before any page', async () => {
    const probe = await listen(); const port = portOf(probe); await close(probe);
    let pageAsked = 0;
    const pages = async (_req: http.IncomingMessage, res: http.ServerResponse) => { pageAsked++; res.end('status'); return true; };
    const srv = await openMetricsPort(createRegistry('t'), { metricsPort: port, metricsHost: '127.0.0.1', metricsPortExplicit: true }, { warn: () => undefined }, pages);
    // fetch() sets Host from the URL; a raw request carries the Host a rebound page's browser sends.
    const get = (p: string, host?: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: p, setHost: host === undefined, headers: host === undefined ? {} : { host } }, (res) => {
        let body = ''; res.setEncoding('utf8'); res.on('data', (c: string) => { body += c; }); res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject); req.end();
    });
    try {
      for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1.attacker.example:${port}`, 'localhost.attacker.example', '[::1', '']) {
        for (const p of ['/metrics', '/', '/status.json']) {
          const r = await get(p, host);
          expect(r.status, `${host} ${p}`).toBe(421);
          expect(JSON.parse(r.body)).toMatchObject({ code: 'HTTP_BAD_HOST' });
        }
      }
      expect(pageAsked).toBe(0);
      for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, `prom.localhost:${port}`, `10.1.2.3:${port}`]) {
        expect((await get('/metrics', host)).status, host).toBe(200);
      }
      expect((await get('/')).status).toBe(200); // the Node client default: Host 127.0.0.1:port
      expect(pageAsked).toBe(1);
    } finally { await close(srv!); }
  });

  it('metricsHostAllowed: IP literals, localhost, and metricsHost itself', () => {
    expect(metricsHostAllowed(undefined, '127.0.0.1')).toBe(true);
    expect(metricsHostAllowed('metrics.internal:9035', 'metrics.internal')).toBe(true);
    expect(metricsHostAllowed('Metrics.Internal.', 'metrics.internal')).toBe(true);
    expect(metricsHostAllowed('other.internal:9035', 'metrics.internal')).toBe(false);
    expect(metricsHostAllowed('[fe80::1]', '::')).toBe(true);
    expect(metricsHostAllowed('::1', '127.0.0.1')).toBe(false);
    expect(metricsHostAllowed('localhost:99999999', '127.0.0.1')).toBe(false);
  });

  it('a taken default port: a warning, no metrics, no failure', async () => {
    const busy = await listen();
    const warnings: object[] = [];
    const srv = await openMetricsPort(createRegistry('t'), { metricsPort: portOf(busy), metricsHost: '127.0.0.1', metricsPortExplicit: false }, { warn: (o) => warnings.push(o) });
    expect(srv).toBeNull();
    expect(warnings).toEqual([expect.objectContaining({ port: portOf(busy), code: 'EADDRINUSE' })]);
    await close(busy);
  });

  it('a taken port the operator chose is an error; 0 is off', async () => {
    const busy = await listen();
    const log = { warn: () => undefined };
    await expect(openMetricsPort(createRegistry('t'), { metricsPort: portOf(busy), metricsHost: '127.0.0.1', metricsPortExplicit: true }, log))
      .rejects.toMatchObject({ code: 'EADDRINUSE' });
    await close(busy);
    expect(await openMetricsPort(createRegistry('t'), { metricsPort: 0, metricsHost: '127.0.0.1', metricsPortExplicit: true }, log)).toBeNull();
  });

  it('samples the event loop delay once a second, not 100 times (SPEC.md §11.6 "Idle wakeups")', () => {
    // prom-client's default sampler is a 10 ms libuv timer: every idle daemon would wake 100 times a second.
    const spy = vi.spyOn(perfHooks, 'monitorEventLoopDelay');
    try {
      createRegistry('t');
      expect(spy).toHaveBeenCalled();
      for (const [opts] of spy.mock.calls) expect(opts?.resolution).toBe(EVENT_LOOP_SAMPLE_MS);
      expect(EVENT_LOOP_SAMPLE_MS).toBeGreaterThanOrEqual(1000);
    } finally { spy.mockRestore(); }
  });
});
