// HTTP request bodies nobody reads (SPEC.md §6.10): Node's HTTP server drains an unread body to
// keep the connection alive, so a server that answers GET only (or refuses a body as too large)
// would still read an unbounded upload. An answer sent while a body is still unread says
// `Connection: close` (so no client reuses the connection); once it is sent the server stops
// reading, ends the connection, and drops it if the peer has not closed within a moment.
import type http from 'node:http';

/**
 * SPEC.md §6.10: every daemon's HTTP server gives a request's headers at most 10 s and the whole
 * request (headers and body) at most 30 s (Node's defaults are 60 s and 300 s): a connection that
 * sends a request slowly is answered 408 and closed instead of being held for minutes.
 */
export const HTTP_SERVER_TIMEOUTS = { headersTimeout: 10_000, requestTimeout: 30_000 } as const;

/**
 * SPEC.md §6.10: an authority's HTTP port and a relay's dir port close a connection on which no byte moved either way for
 * this long, so an answer that its reader never reads does not hold its bytes (and the socket).
 */
export const HTTP_IDLE_TIMEOUT_MS = 60_000;

function hasBody(req: http.IncomingMessage): boolean {
  const len = Number(req.headers['content-length'] ?? 0);
  return req.headers['transfer-encoding'] !== undefined || (Number.isFinite(len) && len > 0);
}

/** Call first in a request handler. */
export function dropUnreadBody(req: http.IncomingMessage, res: http.ServerResponse, graceMs = 1000): void {
  if (!hasBody(req)) return;
  const writeHead = res.writeHead;
  res.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
    if (!req.complete && !this.headersSent) this.setHeader('connection', 'close');
    return writeHead.apply(this, args);
  } as typeof writeHead;
  res.once('finish', () => {
    if (req.complete) return;
    const s = req.socket;
    req.pause();
    s.end();
    setTimeout(() => s.destroy(), graceMs).unref();
  });
}
