// HTTP request bodies nobody reads (SPEC.md §6.10, §7b.9): Node's HTTP server drains an unread
// body to keep the connection alive, so a server that answers GET only (or refuses a body as too
// large) would still read an unbounded upload. After such an answer, stop reading, end the
// connection, and drop it if the peer has not closed within a moment.
import type http from 'node:http';

/** Call first in a request handler: once the answer is sent, a body still arriving is not read. */
export function dropUnreadBody(req: http.IncomingMessage, res: http.ServerResponse, graceMs = 1000): void {
  res.once('finish', () => {
    if (req.complete) return;
    const s = req.socket;
    req.pause();
    s.end();
    setTimeout(() => s.destroy(), graceMs).unref();
  });
}
