// SPEC.md §6.10: serving directory documents over HTTP, shared by authorities and relay mirrors:
// compressed transfer when Accept-Encoding asks (br or gzip), If-Modified-Since → 304,
// errors as JSON {code, reason} and nothing else.
import type http from 'node:http';
import zlib from 'node:zlib';
import { isBitcloudError } from '../errors';

/**
 * Brotli quality for served documents (0–11): 5, because on a consensus or vote of a few KiB
 * quality 9 spent 20–25 ms per document for 3% fewer bytes than 5 does in about 1 ms
 * (docs/cpu.md, "Authorities"), and a new document comes every period at every authority and
 * mirror.
 */
const BROTLI_QUALITY = 5;

/** A document served as-is, with its compressed forms made once, on first request. */
export class ServedDocument {
  private gz: Buffer | null = null;
  private brotli: Buffer | null = null;
  /** Last-Modified, truncated to whole seconds as HTTP dates are. */
  readonly lastModified: number;

  constructor(readonly raw: Buffer, lastModifiedMs: number) {
    this.lastModified = Math.floor(lastModifiedMs / 1000) * 1000;
  }

  gzip(): Buffer { return (this.gz ??= zlib.gzipSync(this.raw, { level: 9 })); }
  br(): Buffer {
    return (this.brotli ??= zlib.brotliCompressSync(this.raw, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: this.raw.length },
    }));
  }
}

/**
 * SPEC.md §6.10: the consensus `raw` (verified as `info`) as published (or, at a mirror, taken in)
 * at `publishedMs`. Its Last-Modified is that time but never later than the consensus's
 * fresh_until: the consensus of the period starting at T is published between T + P/2 and T + P
 * (= fresh_until, §6.9) and the next one after T + P + P/2, so a holder that sends fresh_until as
 * If-Modified-Since gets 304 from every server holding the same one, and the next one in full.
 */
export function servedConsensus(raw: Buffer, info: { validAfter: number; freshUntil: number }, publishedMs: number): ServedDocument {
  // Never before valid_after + 1 s either: valid_after is the previous consensus's fresh_until,
  // so a server whose clock runs far behind (a mirror dates by intake) still dates the new one
  // after what holders of the previous one send (HTTP dates have whole seconds).
  return new ServedDocument(raw, Math.max(info.validAfter + 1000, Math.min(publishedMs, info.freshUntil)));
}

/**
 * SPEC.md §6.10: the request target as a URL, or null when it is not a valid path or URL (Node's
 * parser passes targets the URL parser refuses, `GET http://[ HTTP/1.1`); every dir port answers
 * such a request 400 `HTTP_BAD_REQUEST` (sendBadTarget): the client's fault, not a missing path.
 */
export function requestTarget(req: http.IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    return null;
  }
}

/** SPEC.md §6.10: the answer to a request target that is not a valid path or URL. */
export function sendBadTarget(res: http.ServerResponse): void {
  sendJsonError(res, 400, 'HTTP_BAD_REQUEST', 'the request target is not a valid path or URL');
}

/**
 * SPEC.md §6.10 "Error answers": whether a failure met while answering a request is this server's
 * own, not the request's fault: anything that is not a BitcloudError, and a BitcloudError of its
 * disk or state files (an `IO_*` code, such as IO_MODE_UNSUPPORTED from writeFileAtomic, whose
 * message names the folder). Such a failure is answered 500 `INTERNAL` "internal error" and its
 * message goes to the server's log only: a peer is never told the server's files and folders.
 */
export function isServerFault(e: unknown): boolean {
  return !isBitcloudError(e) || e.code.startsWith('IO_');
}

export function sendJsonError(res: http.ServerResponse, status: number, code: string, reason: string): void {
  const body = JSON.stringify({ code, reason });
  // SPEC.md §6.10: nosniff, so that no browser takes a JSON answer (which can carry relays' strings) for HTML or script.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  sendJsonText(res, status, JSON.stringify(value));
}

/** Send JSON text already serialised (a large document served again and again is serialised once). */
export function sendJsonText(res: http.ServerResponse, status: number, body: string | Buffer): void {
  // SPEC.md §6.10: nosniff, so that no browser takes a JSON answer (which can carry relays' strings) for HTML or script.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

/** Pick br, then gzip, when the client lists them (q=0 refuses). */
export function chooseEncoding(accept: string | undefined): 'br' | 'gzip' | 'identity' {
  const offered = new Map<string, number>();
  for (const part of (accept ?? '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    offered.set(name, q ? Number(q.slice(2)) : 1);
  }
  const ok = (e: string) => (offered.get(e) ?? offered.get('*') ?? 0) > 0;
  if (ok('br')) return 'br';
  if (ok('gzip')) return 'gzip';
  return 'identity';
}

/** Serve a document with compression and conditional GET. `doc` null → 404 with `missingCode`. */
export function serveDocument(req: http.IncomingMessage, res: http.ServerResponse, doc: ServedDocument | null, missingCode: string, missingReason: string): number {
  if (!doc) {
    sendJsonError(res, 404, missingCode, missingReason);
    return 404;
  }
  const ims = req.headers['if-modified-since'];
  if (ims) {
    const t = Date.parse(ims);
    if (Number.isFinite(t) && doc.lastModified <= t) {
      res.writeHead(304, { 'last-modified': new Date(doc.lastModified).toUTCString() });
      res.end();
      return 304;
    }
  }
  const enc = chooseEncoding(req.headers['accept-encoding']);
  const body = enc === 'br' ? doc.br() : enc === 'gzip' ? doc.gzip() : doc.raw;
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/octet-stream',
    'content-length': body.length,
    'last-modified': new Date(doc.lastModified).toUTCString(),
    vary: 'accept-encoding',
  };
  if (enc !== 'identity') headers['content-encoding'] = enc;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  return 200;
}

/** Read a request body up to `max` bytes; resolves null when it is larger (the rest is drained). */
export function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      req.resume();
      resolve(null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0, done = false;
    // Checked while the body streams in: past `max` the answer is null at once, what was read is
    // dropped, and the rest is discarded as it comes (the caller answers 413 and closes).
    const onData = (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) { done = true; chunks.length = 0; resolve(null); return; }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => { if (!done) { done = true; resolve(Buffer.concat(chunks)); } });
    req.on('error', (e) => { if (!done) { done = true; reject(e); } });
  });
}

/** Minimal HTML escaping for status pages. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]!));
}
