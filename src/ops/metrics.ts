// Prometheus metrics (prom-client). Each daemon owns one Registry and serves it on /metrics.
import client from 'prom-client';
import http from 'node:http';
import net from 'node:net';
import { dropUnreadBody, HTTP_SERVER_TIMEOUTS } from './http-body';

export { client as prom };
export type Registry = client.Registry;

/** `make` once per registry (a registry can hold a metric name once): later calls get the same object. */
export function oncePerRegistry<T>(make: (reg: client.Registry) => T): (reg: client.Registry) => T {
  const made = new WeakMap<client.Registry, T>();
  return (reg) => {
    let m = made.get(reg);
    if (m === undefined) { m = make(reg); made.set(reg, m); }
    return m;
  };
}

/**
 * How often the event-loop delay histogram (`nodejs_eventloop_lag_{min,max,mean,p50,p90,p99}_seconds`)
 * samples, in ms (SPEC.md §11.6 "Idle wakeups"). prom-client's default, 10 ms, is a libuv timer that
 * wakes every idle daemon 100 times a second; once a second still records any stall that spans a
 * tick, and `nodejs_eventloop_lag_seconds` is measured at each scrape regardless.
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

export function createRegistry(daemon: string): client.Registry {
  const reg = new client.Registry();
  reg.setDefaultLabels({ daemon });
  client.collectDefaultMetrics({ register: reg, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return reg;
}

/** Answer GET /metrics from a registry; returns true when the request was handled. */
export async function serveMetrics(reg: client.Registry, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') return false;
  const body = await reg.metrics();
  res.writeHead(200, { 'content-type': reg.contentType });
  res.end(body);
  return true;
}

/**
 * SPEC.md §6.10 "MetricsPort": every daemon serves /metrics only on its own MetricsPort, never on a
 * public listener. `metricsPort` absent: the daemon's default port below, on 127.0.0.1, served
 * when free (when it is taken — a second daemon of the same kind on one host — a warning is logged
 * and the daemon runs without metrics); a port given: that port, which must be free; 0: none.
 * `metricsHost` is 127.0.0.1 unless the operator opens it on purpose (as Tor's MetricsPort).
 */
export const DEFAULT_METRICS_PORTS = { relay: 9035, storage: 9036, authority: 9037, client: 9038 } as const;
export interface MetricsListen { port: number; host: string }
export const DEFAULT_METRICS_HOST = '127.0.0.1';

/**
 * More pages a daemon serves on its MetricsPort (the relay's own status page, SPEC.md §6.10);
 * resolves true when it answered the request.
 */
export type MetricsPortPages = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;

/**
 * SPEC.md §6.10 "MetricsPort": whether a request's Host header names this MetricsPort as a local
 * client would: absent (HTTP/1.0 scrapers), an IP literal, `localhost` or a name under
 * `.localhost`, or `metricsHost` itself, each with or without a port. Any other name is what a web
 * page the operator's browser opened sends after it rebinds its own name to this address (DNS
 * rebinding): it would read the page's answers (the relay's fingerprint and earnings, live
 * counters) as its own origin's.
 */
export function metricsHostAllowed(hostHeader: string | undefined, metricsHost: string): boolean {
  if (hostHeader === undefined) return true;
  const h = hostHeader.trim().toLowerCase();
  // `[v6]` or `[v6]:port`; else `name` or `name:port` (a bare IPv6 literal is not a valid Host).
  const m = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h) ?? /^([^:[\]]+)(?::\d{1,5})?$/.exec(h);
  if (!m) return false;
  const name = m[1].replace(/\.$/, '');
  if (net.isIP(name) !== 0) return true;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  return name === metricsHost.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

/** A small HTTP server that serves /metrics (and `pages`, when given): the daemon's MetricsPort. */
export function startMetricsServer(reg: client.Registry, port: number, host = '127.0.0.1', pages?: MetricsPortPages): Promise<http.Server> {
  const srv = http.createServer({ ...HTTP_SERVER_TIMEOUTS }, (req, res) => {
    dropUnreadBody(req, res);
    // SPEC.md §6.10 "MetricsPort": a Host that is no address of this port is refused before any page.
    if (!metricsHostAllowed(req.headers.host, host)) {
      const body = JSON.stringify({ code: 'HTTP_BAD_HOST', reason: 'the Host header names no address of this MetricsPort' });
      // SPEC.md §6.10 "Status page headers": nosniff, as every JSON answer.
      res.writeHead(421, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(body);
      return;
    }
    serveMetrics(reg, req, res).then((handled) => handled || (pages ? pages(req, res) : false)).then((handled) => {
      if (!handled) { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found\n'); }
    }, () => { if (!res.headersSent) res.writeHead(500); res.end(); });
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => { srv.off('error', reject); resolve(srv); });
  });
}

/** A daemon's MetricsPort setting: the port, and whether the operator chose it (SPEC.md §6.10). */
export interface MetricsPortSetting { metricsPort: number; metricsHost: string; metricsPortExplicit: boolean }

/**
 * Open the MetricsPort of SPEC.md §6.10: null when it is off (0), or when the default port is taken
 * (logged as a warning); a port the operator chose must be free (the error is thrown).
 */
export async function openMetricsPort(
  reg: client.Registry, s: MetricsPortSetting, log: { warn(o: object, msg: string): void }, pages?: MetricsPortPages,
): Promise<http.Server | null> {
  if (!s.metricsPort) return null;
  try {
    return await startMetricsServer(reg, s.metricsPort, s.metricsHost, pages);
  } catch (e) {
    if (s.metricsPortExplicit) throw e;
    log.warn({ port: s.metricsPort, host: s.metricsHost, code: (e as NodeJS.ErrnoException).code },
      'default MetricsPort unavailable; running without metrics (set metricsPort to choose one, 0 to turn it off)');
    return null;
  }
}
