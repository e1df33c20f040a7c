// SPEC.md §6.10 (informative): the status pages' plotting code, served by the daemon itself (no CDN):
// uPlot from its npm package, and each page's own script. Shared by the authority's HTTP interface
// and the relay's MetricsPort.
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { createRequire } from 'node:module';

export interface StaticFile { type: string; body: Buffer }
export type StaticFiles = Record<string, StaticFile>;

export const JS_TYPE = 'text/javascript; charset=utf-8';
let uplot: StaticFiles | null = null;

/** `/static/uplot.min.js` and `/static/uplot.min.css`, read once (absent when uplot is not installed). */
export function uplotFiles(): StaticFiles {
  if (uplot) return uplot;
  const out: StaticFiles = {};
  let dist: string | null = null;
  try { dist = path.dirname(createRequire(import.meta.url).resolve('uplot')); } catch { /* not installed */ }
  const add = (name: string, type: string, file: string) => { try { out[name] = { type, body: fs.readFileSync(file) }; } catch { /* missing */ } };
  if (dist) {
    add('/static/uplot.min.js', JS_TYPE, path.join(dist, 'uPlot.iife.min.js'));
    add('/static/uplot.min.css', 'text/css; charset=utf-8', path.join(dist, 'uPlot.min.css'));
  }
  uplot = out;
  return out;
}

/** Answer GET/HEAD of one of `files` (by path); false when `p` is not one of them. */
export function serveStaticFile(files: StaticFiles, p: string, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const f = files[p];
  if (!f) return false;
  res.writeHead(200, { 'content-type': f.type, 'content-length': f.body.length, 'cache-control': 'public, max-age=3600', 'x-content-type-options': 'nosniff' });
  res.end(req.method === 'HEAD' ? undefined : f.body);
  return true;
}

/**
 * SPEC.md §6.10: the Content-Security-Policy of the status pages. Scripts only from the daemon's
 * own /static/ files (no inline script, no eval), fetches only to the same origin, no frames, forms
 * or <base>: a value that ever reached the HTML unescaped (a relay's nickname or version) still runs
 * no script. The pages' own <style> block is inline; uPlot sets styles through the DOM.
 */
export const STATUS_PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Send an HTML status page (no caching, SPEC.md §6.10: STATUS_PAGE_CSP, nosniff). */
export function sendHtml(res: http.ServerResponse, html: string, head = false): void {
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), 'cache-control': 'no-store',
    'content-security-policy': STATUS_PAGE_CSP, 'x-content-type-options': 'nosniff',
  });
  res.end(head ? undefined : html);
}
