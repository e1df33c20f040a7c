// SPEC.md §9.16: the `.bitcloud` gateway of the SOCKS proxy. A SOCKS CONNECT to a host ending in
// ".bitcloud" is not sent to an exit: the proxy answers HTTP/1.1 on it itself, reading the stored
// file or folder the host names over circuits to the storage nodes. The host (which carries the
// file key) is read here and never leaves the process: no exit, relay or storage node sees it, the
// HTTP Host header is ignored, and the key is never logged.
import http from 'node:http';
import { Duplex } from 'node:stream';
import { err, errorCode, isBitcloudError, kindOf, isErrorCode, type BitcloudError } from '../../errors';
import { dropUnreadBody, HTTP_SERVER_TIMEOUTS } from '../../ops/http-body';
import { silentLogger, type Logger } from '../../ops/log';
import { prom, type Registry } from '../../ops/metrics';
import type { Capability } from '../../storage/capability';
import { lookupFolder, type FolderEntry } from '../../storage/folder';
import type { Manifest } from '../../storage/manifest';
import { isFolderManifest } from '../storage-client-folder';
import { StorageClient, type OpenStorageStream, type StorageNode } from '../storage-client';
import { contentTypeFor } from './content-type';
import { parseCapabilityHost } from './host';
import { ifNoneMatchMatches } from './etag';
import { parseRange } from './http-range';
import { BlobReader } from './reader';

export interface GatewayOptions {
  /** The storage nodes of the current consensus. */
  nodes: () => StorageNode[];
  /** Opens a storage stream to a node (over a circuit ending at it, SPEC.md §9.13.1). */
  open: OpenStorageStream;
  /** Per storage request (default 30 s). */
  requestTimeoutMs?: number;
  /** Bytes of decrypted chunks cached (default 256 MiB; 0 = none). */
  cacheBytes?: number;
  /** Renew the storage client (new circuits, forgotten dead nodes) this often. Default 10 min. */
  clientLifetimeMs?: number;
  /**
   * The HTTP server's timeouts (SPEC.md §9.16): default keepAliveTimeout 30 s, headersTimeout
   * 10 s, requestTimeout 30 s (SPEC.md §6.10), checked every 30 s (connectionsCheckingInterval).
   */
  httpTimeouts?: { keepAliveTimeout?: number; headersTimeout?: number; requestTimeout?: number; connectionsCheckingInterval?: number };
  /**
   * SPEC.md §9.16: a stream the gateway closes (idle, 408, 400) is ended, then destroyed once the
   * SOCKS side has read its end, or this long after at most (default 5 s).
   */
  closeGraceMs?: number;
  /**
   * SPEC.md §9.16.6: a body piece the stream has not taken for this long resets the stream and
   * frees the request's place (default GATEWAY_SEND_TIMEOUT_MS).
   */
  sendTimeoutMs?: number;
  log?: Logger;
  registry?: Registry;
}

// ---------------------------------------------------------------------------------------------
// An in-memory socket pair: one end goes to the SOCKS client's relay, the other to the HTTP server.

class Half extends Duplex {
  other!: Half;
  private waiting: (() => void) | null = null;
  /** SPEC.md §9.16: the idle timeout node:http sets (keepAliveTimeout between requests), as net.Socket's. */
  private idleMs = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  constructor() { super({ allowHalfOpen: true }); }
  /** Bytes moved either way: the idle timeout starts again. */
  touch(): void {
    if (this.idleTimer) this.idleTimer.refresh();
  }
  override _read(): void {
    const w = this.other.waiting;
    if (w) { this.other.waiting = null; w(); }
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.other.destroyed) { cb(); return; }
    this.touch();
    this.other.touch();
    if (this.other.push(chunk)) cb(); else this.waiting = cb;
  }
  override _final(cb: (e?: Error | null) => void): void {
    if (!this.other.destroyed) this.other.push(null);
    cb();
  }
  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    if (!this.other.destroyed) this.other.destroy();
    cb(e);
  }
  // What node:http may call on a socket.
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    this.idleMs = ms;
    if (ms > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => { this.idleTimer = null; this.emit('timeout'); }, this.idleMs);
      this.idleTimer.unref();
    }
    return this;
  }
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  destroySoon(): void { this.end(); }
}

export function duplexPair(): [Duplex, Duplex] {
  const a = new Half(), b = new Half();
  a.other = b; b.other = a;
  return [a, b];
}

// ---------------------------------------------------------------------------------------------

/** SPEC.md §9.16.5: the HTTP status for a failure, by code (then by kind). */
export function statusFor(e: unknown): number {
  const code = errorCode(e);
  const byCode: Record<string, number> = {
    GATEWAY_HOST_MALFORMED: 400, GATEWAY_PATH_INVALID: 400, GATEWAY_METHOD_NOT_ALLOWED: 405, GATEWAY_NOT_FOUND: 404,
    GATEWAY_RANGE_UNSATISFIABLE: 416, CAP_MALFORMED: 400, CHUNK_AUTH_FAILED: 403, MANIFEST_NOT_FOUND: 404,
    MANIFEST_MALFORMED: 502, FOLDER_MALFORMED: 502, FOLDER_NESTED: 502, FOLDER_TOO_LARGE: 502,
    CHUNK_TOO_FEW_SHARES: 503, STORAGE_TIMEOUT: 504, GATEWAY_QUEUE_TIMEOUT: 504, CONSENSUS_NOT_AVAILABLE: 503, PLACEMENT_TOO_FEW_NODES: 503,
  };
  if (byCode[code]) return byCode[code];
  if (!isErrorCode(code)) return 500;
  switch (kindOf(code)) {
    case 'unreachable': case 'closed': return 503;
    case 'timeout': return 504;
    case 'peer_refused': return 451; // a moderation refusal by every node holding it (SPEC.md §10.6)
    case 'integrity': case 'protocol_violation': return 502;
    default: return 500;
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 416: 'Range Not Satisfiable',
  451: 'Unavailable For Legal Reasons', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

const HINT: Record<number, string> = {
  400: 'The address is not a valid Bitcloud URL. Check that it was copied whole.',
  403: 'The key in this address does not open the stored file: the address is wrong or was altered.',
  404: 'Nothing is stored at this address (or its leases expired).',
  502: 'The stored data is not a valid Bitcloud file or folder.',
  503: 'Too few storage nodes could be reached to read this file. Try again later.',
  504: 'The storage nodes did not answer in time. Try again later.',
};

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Request path → folder path components (percent-decoded). GATEWAY_PATH_INVALID for anything unsafe. */
export function parseRequestPath(url: string): { path: string; dir: boolean } {
  let u = url;
  if (/^https?:\/\//i.test(u)) { const i = u.indexOf('/', u.indexOf('//') + 2); u = i < 0 ? '/' : u.slice(i); }
  const q = u.search(/[?#]/);
  if (q >= 0) u = u.slice(0, q);
  if (!u.startsWith('/')) throw err('GATEWAY_PATH_INVALID', 'a request path starts with "/"');
  const raw = u.slice(1).split('/');
  const dir = raw[raw.length - 1] === '';
  if (dir) raw.pop();
  const parts = raw.map((seg) => {
    if (seg === '') throw err('GATEWAY_PATH_INVALID', 'empty path component');
    let d: string;
    try { d = decodeURIComponent(seg); } catch { throw err('GATEWAY_PATH_INVALID', 'bad percent-encoding'); }
    // eslint-disable-next-line no-control-regex
    if (d === '.' || d === '..' || /[/\\\u0000-\u001f\u007f]/.test(d)) throw err('GATEWAY_PATH_INVALID', '".", "..", an encoded slash, a backslash or a control character in the path');
    return d;
  });
  return { path: parts.join('/'), dir };
}

/**
 * Wait for 'drain' or 'close' (true), or `timeoutMs` without either while `res` is the answer
 * being sent on its stream (false), removing the listeners and the timer after. An answer
 * pipelined behind an earlier one has no socket yet (node:http buffers it): its wait is not timed
 * until its turn comes, since the earlier answer may take any time (SPEC.md §9.16.6). `signal`
 * aborted (the client gone) ends the wait too (true).
 */
function drainOrClose(res: http.ServerResponse, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (moved: boolean) => {
      res.off('drain', drained); res.off('close', drained); signal.removeEventListener('abort', drained);
      clearTimeout(timer);
      resolve(moved);
    };
    const drained = () => done(true);
    const timer: NodeJS.Timeout = setTimeout(() => { if (res.socket) done(false); else timer.refresh(); }, timeoutMs);
    timer.unref();
    res.on('drain', drained);
    res.on('close', drained);
    // A pipelined answer gets no 'close' of its own when its stream closes before its turn: the
    // request's signal (aborted on the stream's 'close', handle()) ends its wait.
    signal.addEventListener('abort', drained, { once: true });
    if (signal.aborted) done(true);
  });
}

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

interface Metrics {
  requests: prom.Counter<'status'>;
  ranges: prom.Counter<string>;
  bytes: prom.Counter<string>;
  queued: prom.Counter<string>;
  refused: prom.Counter<string>;
  sendTimeouts: prom.Counter<string>;
}

/**
 * SPEC.md §9.16.6: requests that fetch and decrypt at once. Each holds up to 3 decrypted chunks
 * (§9.16.3) and a manifest too large to cache for its whole run (§9.16.4), so without a bound the
 * proxy's memory grew with every connection a browser or any local process opened.
 */
export const GATEWAY_MAX_ACTIVE = 32;
/** SPEC.md §9.16.6: requests waiting, first in first out, for one of those places; one more is answered 503. */
export const GATEWAY_MAX_QUEUED = 1024;

/**
 * SPEC.md §9.16.6: a body piece the stream has not taken for this long (nginx's send_timeout)
 * resets the stream. Without it a client that stops reading (a page's fetch() whose
 * body it never reads, a paused video) held its place for as long as it kept the connection, and
 * 32 such held the gateway for every page.
 */
export const GATEWAY_SEND_TIMEOUT_MS = 60_000;
/** SPEC.md §9.16.6: a body is written in pieces of at most this many bytes (views of its chunks). */
export const GATEWAY_SEND_PIECE = 64 * 1024;

/**
 * SPEC.md §9.16.2: the largest generated folder listing page, in bytes; the rows that would pass it
 * are left out (a line says how many).
 */
export const GATEWAY_LISTING_MAX_BYTES = 4 * 1024 * 1024;
/** Room kept for the page's end: "</ul><p>N more not listed.</p>\n" (N < 10 000 000). */
const LISTING_TAIL_BYTES = 64;

/** The body of the 503 a request gets when GATEWAY_MAX_QUEUED are waiting (SPEC.md §9.16.6). */
const BUSY_BODY = Buffer.from('503 Service Unavailable: the .bitcloud gateway is busy. Try again.\n');

/** A request waiting for a place (SPEC.md §9.16.6). */
interface Waiter { start: () => void }

/** How a request left the admission step: it holds a place, its client went away while it waited, or it was answered 503. */
type Admission = 'admitted' | 'gone' | 'refused';

export class Gateway {
  private readonly server: http.Server;
  private readonly hosts = new WeakMap<object, string>();
  /**
   * The requests of each stream to tell when it closes (SPEC.md §9.16.6): one 'close' listener per
   * stream, however many requests are pipelined on it.
   */
  private readonly closeWaiters = new WeakMap<object, Set<() => void>>();
  readonly reader: BlobReader;
  private client: StorageClient | null = null;
  private clientBorn = 0;
  private readonly retired = new Set<NodeJS.Timeout>();
  private readonly log: Logger;
  private readonly metrics: Metrics | null;
  private closed = false;
  /** SPEC.md §9.16.6: requests holding a place, and those waiting for one (a Set keeps their order). */
  private active = 0;
  private readonly queue = new Set<Waiter>();

  constructor(private readonly o: GatewayOptions) {
    this.log = o.log ?? silentLogger;
    this.reader = new BlobReader({ client: () => this.currentClient(), cacheBytes: o.cacheBytes, registry: o.registry });
    this.server = http.createServer({ keepAliveTimeout: 30_000, ...HTTP_SERVER_TIMEOUTS, ...o.httpTimeouts }, (req, res) => { void this.handle(req, res); });
    // SPEC.md §9.16, §6.10: Node starts checking headersTimeout and requestTimeout (and keeps the list
    // of connections closeAllConnections walks) when a server starts listening, which this one,
    // fed streams by connect(), never does: without this a request sent slowly was held for ever.
    // The checks are started by calling the 'listening' listeners Node itself registered on the new
    // server (the only ones it has yet), not by emitting 'listening' for a server that is not
    // listening: that would run, now or on any later emit, whatever else listens for it.
    for (const startChecks of this.server.listeners('listening')) (startChecks as (this: http.Server) => void).call(this.server);
    this.server.on('clientError', (e: NodeJS.ErrnoException, sock: Duplex) => {
      // SPEC.md §9.16.3: a malformed or late request pipelined behind an earlier request whose
      // answer is not finished resets the stream. Once that answer's headers went out (its body
      // still being sent) it is a failure mid-body: the 400 or 408 would land inside that body,
      // bytes no chunk authenticated, then a clean end. Before they went out (the answer still
      // waiting for storage) the 400 or 408 would be the first answer on the stream, which the
      // client takes for the earlier request's, and that request's own answer would be lost.
      const writing = (sock as Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
      if (writing) { sock.destroy(); return; }
      // SPEC.md §9.16: a header section past node:http's limit is 431 (RFC 6585 §5, and what
      // node:http's own handler answers); any other parse error is 400.
      const status = e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout'
        : e.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      this.closeGracefully(sock, `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    // SPEC.md §9.16: a stream idle between requests is ended, not destroyed (which the SOCKS side
    // passes on as a reset: "connection reset" in the browser, and the end of the last answer lost).
    // A listener here takes the place of node:http's destroy().
    this.server.on('timeout', (sock: Duplex) => this.closeGracefully(sock));
    const reg = o.registry;
    this.metrics = reg ? {
      requests: (reg.getSingleMetric('bitcloud_gateway_requests_total') as prom.Counter<'status'> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_requests_total', help: 'HTTP requests answered by the .bitcloud gateway, by status', labelNames: ['status'], registers: [reg] }),
      ranges: (reg.getSingleMetric('bitcloud_gateway_range_requests_total') as prom.Counter<string> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_range_requests_total', help: 'Requests answered 206 (one byte range)', registers: [reg] }),
      bytes: (reg.getSingleMetric('bitcloud_gateway_bytes_sent_total') as prom.Counter<string> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_bytes_sent_total', help: 'Body bytes sent by the .bitcloud gateway', registers: [reg] }),
      queued: (reg.getSingleMetric('bitcloud_gateway_queued_total') as prom.Counter<string> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_queued_total', help: `Requests that waited for one of the ${GATEWAY_MAX_ACTIVE} places of requests in progress`, registers: [reg] }),
      refused: (reg.getSingleMetric('bitcloud_gateway_refused_total') as prom.Counter<string> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_refused_total', help: `Requests answered 503 because ${GATEWAY_MAX_QUEUED} were already waiting`, registers: [reg] }),
      sendTimeouts: (reg.getSingleMetric('bitcloud_gateway_send_timeouts_total') as prom.Counter<string> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_send_timeouts_total', help: 'Streams reset because the client took no byte of a body for the send timeout', registers: [reg] }),
    } : null;
  }

  /**
   * SPEC.md §9.16, §6.10: end our side of `sock` after what is queued (and `last`), then close the
   * stream whatever the client does: once that end has reached the SOCKS side (an EOF there, after
   * every byte of the answer, not a reset), or `closeGraceMs` later at most (a client that never
   * reads does not hold it). Ending our side alone left it open for as long as the client kept its own.
   */
  private closeGracefully(sock: Duplex, last?: string): void {
    if (sock.destroyed) return;
    if (last === undefined) sock.end(); else sock.end(last);
    const grace = setTimeout(() => sock.destroy(), this.o.closeGraceMs ?? 5000);
    grace.unref();
    sock.once('close', () => clearTimeout(grace));
    if (!(sock instanceof Half)) sock.once('finish', () => sock.destroy());
    else if (sock.other.readableEnded) sock.destroy();
    else sock.other.once('end', () => sock.destroy());
  }

  /**
   * The storage client, renewed after its lifetime (new circuits; nodes marked dead get another
   * chance) and whenever the consensus lists other storage nodes.
   */
  private currentClient(): StorageClient {
    const life = this.o.clientLifetimeMs ?? 600_000;
    const nodes = this.o.nodes();
    const same = this.client && this.client.fingerprints.length === nodes.length && nodes.every((n, i) => this.client!.fingerprints[i] === n.fingerprint);
    if (this.client && (!same || Date.now() - this.clientBorn > life)) {
      const old = this.client;
      // Requests still using it finish first (each has its own timeout).
      const t = setTimeout(() => { this.retired.delete(t); void old.close(); }, 150_000);
      t.unref();
      this.retired.add(t);
      this.client = null;
    }
    if (!this.client) {
      if (this.closed) throw err('STORAGE_CLIENT_CLOSED', 'the gateway is closed');
      this.client = new StorageClient({ nodes, open: this.o.open, requestTimeoutMs: this.o.requestTimeoutMs ?? 30_000, log: this.log });
      this.clientBorn = Date.now();
    }
    return this.client;
  }

  /**
   * SPEC.md §9.16.6: a place among the GATEWAY_MAX_ACTIVE requests that fetch and decrypt at once.
   * A request finding none waits in a FIFO queue of at most GATEWAY_MAX_QUEUED; beyond that it is
   * answered 503 here ('refused'). A queued request leaves the queue when its client goes away
   * ('gone', nothing to answer) or after the request timeout (GATEWAY_QUEUE_TIMEOUT, thrown: 504).
   * An admitted request gives its place back when it ends, or at once when its client goes away
   * (handle()).
   */
  private admit(res: http.ServerResponse): Promise<Admission> {
    if (this.active < GATEWAY_MAX_ACTIVE && this.queue.size === 0) { this.active++; return Promise.resolve('admitted'); }
    if (this.queue.size >= GATEWAY_MAX_QUEUED) { this.refuse(res); return Promise.resolve('refused'); }
    this.metrics?.queued.inc();
    const waitMs = this.o.requestTimeoutMs ?? 30_000;
    return new Promise<Admission>((resolve, reject) => {
      const leave = () => { this.queue.delete(w); clearTimeout(timer); res.off('close', gone); };
      // release() hands its place over: `active` is not lowered and raised again.
      const w: Waiter = { start: () => { leave(); resolve('admitted'); } };
      const gone = () => { leave(); resolve('gone'); };
      const timer = setTimeout(() => {
        leave();
        reject(err('GATEWAY_QUEUE_TIMEOUT', `no place among the ${GATEWAY_MAX_ACTIVE} requests in progress within ${waitMs} ms`));
      }, waitMs);
      timer.unref();
      this.queue.add(w);
      res.once('close', gone);
    });
  }

  /** SPEC.md §9.16.6: a request's place goes to the first one waiting, else back to the pool. */
  private release(): void {
    const next = this.queue.values().next();
    if (next.done) this.active--; else next.value.start();
  }

  /** SPEC.md §9.16.6: the queue is full: 503 with Retry-After, a short text body. */
  private refuse(res: http.ServerResponse): void {
    res.statusCode = 503;
    res.setHeader('Retry-After', '1');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Content-Length', BUSY_BODY.length);
    res.setHeader('Cache-Control', 'no-store');
    this.metrics?.refused.inc();
    this.metrics?.requests.inc({ status: '503' });
    this.log.debug({ queued: this.queue.size }, 'gateway: request refused, queue full');
    res.end(res.req?.method === 'HEAD' ? undefined : BUSY_BODY);
  }

  /** A stream speaking HTTP for `host` (the SOCKS CONNECT target), to hand to the SOCKS client. */
  connect(host: string): Duplex {
    const [outer, inner] = duplexPair();
    this.hosts.set(inner, host);
    this.server.emit('connection', inner);
    return outer;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.server.closeAllConnections();
    this.server.close(() => {}); // stops the timeout checks; it was never listening, so its callback only says so
    for (const t of this.retired) clearTimeout(t);
    await this.client?.close();
    this.client = null;
  }

  /** Call `fn` once `conn` closes; the function returned forgets it. */
  private onStreamClose(conn: Duplex, fn: () => void): () => void {
    let set = this.closeWaiters.get(conn);
    if (!set) {
      const waiters = set = new Set();
      this.closeWaiters.set(conn, waiters);
      conn.once('close', () => { this.closeWaiters.delete(conn); for (const f of [...waiters]) f(); });
    }
    set.add(fn);
    return () => { set.delete(fn); };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    dropUnreadBody(req, res); // GET and HEAD only: an upload is never read (SPEC.md §6.10)
    res.setHeader('Referrer-Policy', 'no-referrer'); // a page's links must not carry its address (with the key) anywhere
    res.setHeader('X-Content-Type-Options', 'nosniff');
    let admitted = false;
    // SPEC.md §9.16.6: the client gone before its answer ended (the response closes without
    // 'finish'): the place is freed at once for the next request waiting, no further storage read
    // is started for this one, and the reads under way for it are cancelled through `gone` (each
    // stops unless another request waits for it; the reader rejects with STORAGE_ABORTED, which
    // is not answered nor logged as a failure).
    const gone = new AbortController();
    const free = () => { if (admitted) { admitted = false; this.release(); } };
    const onClose = () => {
      if (res.writableFinished) return;
      gone.abort();
      free();
    };
    // node:http emits no 'close' on an answer pipelined behind another (not yet given the stream)
    // when the stream closes: the stream's own 'close' is the client gone for it, else it kept its
    // place and its reads for ever, waiting for a turn that never comes (SPEC.md §9.16.6).
    const conn = req.socket;
    let forget = () => {};
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        throw err('GATEWAY_METHOD_NOT_ALLOWED', `method ${req.method} is not served; only GET and HEAD`);
      }
      const cap = parseCapabilityHost(this.hosts.get(req.socket) ?? '');
      const { path, dir } = parseRequestPath(req.url ?? '/');
      const admission = await this.admit(res);
      if (admission !== 'admitted') return;
      admitted = true;
      const signal = gone.signal;
      res.once('close', onClose);
      forget = this.onStreamClose(conn, onClose);
      if (res.destroyed || conn.destroyed) onClose(); // closed between its admission and now
      if (signal.aborted) return;
      const m = await this.reader.manifest(cap, signal);
      if (signal.aborted) return;
      if (!isFolderManifest(m)) {
        if (path !== '' && path !== m.name) throw err('GATEWAY_NOT_FOUND', 'this address names a single file, not a folder');
        return await this.serveFile(req, res, cap, m, m.name, signal);
      }
      const folder = await this.reader.folder(cap, m, signal);
      if (signal.aborted) return;
      const hit = lookupFolder(folder, path);
      if (!hit) throw err('GATEWAY_NOT_FOUND', 'no such file in this folder');
      if ('entry' in hit) return await this.serveEntry(req, res, hit.entry, signal);
      if (!dir && path !== '') { // a folder without its trailing slash: relative links need it
        res.statusCode = 301;
        res.setHeader('Location', `/${encodePath(path)}/`);
        res.setHeader('Content-Length', 0);
        this.metrics?.requests.inc({ status: '301' });
        res.end();
        return;
      }
      const index = lookupFolder(folder, path ? `${path}/index.html` : 'index.html');
      if (index && 'entry' in index) return await this.serveEntry(req, res, index.entry, signal);
      this.listing(req, res, path, folder.entries);
    } catch (e) {
      if (gone.signal.aborted) return; // nobody to answer: a read that ended after the client left
      this.fail(res, e);
    } finally {
      res.off('close', onClose);
      forget();
      // An answer cut here (send timeout, a read failed mid-body) cancels the reads read ahead for
      // it as a client gone does: its 'close' comes after this listener is off (SPEC.md §9.16.6).
      if (res.destroyed && !res.writableFinished) gone.abort();
      free();
    }
  }

  private async serveEntry(req: http.IncomingMessage, res: http.ServerResponse, e: FolderEntry, signal: AbortSignal): Promise<void> {
    const fm = await this.reader.manifest(e.cap, signal);
    if (signal.aborted) return;
    if (isFolderManifest(fm)) throw err('FOLDER_NESTED', 'a folder entry names another folder (listings are flat)');
    await this.serveFile(req, res, e.cap, fm, e.path, signal);
  }

  private async serveFile(req: http.IncomingMessage, res: http.ServerResponse, cap: Capability, m: Manifest, name: string, signal: AbortSignal): Promise<void> {
    const size = m.layout.size;
    const etag = `"${cap.manifestId.toString('hex')}"`;
    res.setHeader('Content-Type', contentTypeFor(name, m.contentType));
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, max-age=31536000, immutable'); // a capability names fixed bytes
    // SPEC.md §9.16.3: If-None-Match compares weakly (RFC 9110 §13.1.2); a malformed one is ignored.
    if (ifNoneMatchMatches(req.headers['if-none-match'], etag)) {
      res.statusCode = 304;
      this.metrics?.requests.inc({ status: '304' });
      res.end();
      return;
    }
    const ifRange = req.headers['if-range'];
    // SPEC.md §9.16.3, RFC 9110 §14.2: range handling is defined for GET only, so a HEAD's Range is
    // ignored and it gets the headers of the whole file's 200 (it was answered 206, or 416).
    let range = req.method === 'GET' ? parseRange(req.headers.range, size) : { kind: 'none' as const };
    if (ifRange !== undefined && String(ifRange).trim() !== etag) range = { kind: 'none' };
    if (range.kind === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${size}`);
      throw err('GATEWAY_RANGE_UNSATISFIABLE', `the range starts beyond the end of the file (${size} bytes)`);
    }
    let start = 0, end = size - 1;
    if (range.kind === 'range') {
      ({ start, end } = range);
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    } else {
      res.statusCode = 200;
    }
    res.setHeader('Content-Length', end - start + 1 > 0 ? end - start + 1 : 0);
    // Counted once the status is committed (headers out): a failure before the first byte is
    // answered, and counted, by fail() with its own status instead.
    const committed = () => {
      this.metrics?.requests.inc({ status: String(res.statusCode) });
      if (res.statusCode === 206) this.metrics?.ranges.inc();
    };
    if (req.method === 'HEAD' || size === 0) { committed(); res.end(); return; }
    // Headers go out with the first bytes: a failure before them is still a clean error page.
    let sent = 0;
    try {
      for await (const buf of this.reader.range(cap, m, start, end, signal)) {
        if (res.destroyed || signal.aborted) return;
        if (sent === 0) committed();
        // SPEC.md §9.16.6: written in pieces of GATEWAY_SEND_PIECE, so that the send timeout
        // measures a client taking nothing, not a slow reader of a large chunk. A piece the stream
        // has not taken within the send timeout resets the stream (and the request loses its
        // place, its reads cancelled: handle()).
        for (let at = 0; at < buf.length; at += GATEWAY_SEND_PIECE) {
          const piece = buf.subarray(at, at + GATEWAY_SEND_PIECE);
          sent += piece.length;
          this.metrics?.bytes.inc(piece.length);
          if (res.write(piece)) continue;
          if (!(await drainOrClose(res, this.o.sendTimeoutMs ?? GATEWAY_SEND_TIMEOUT_MS, signal))) {
            this.metrics?.sendTimeouts.inc();
            this.log.debug('gateway: the client took no body piece for the send timeout; connection reset');
            res.destroy();
            return;
          }
          if (res.destroyed || signal.aborted) return;
        }
      }
      if (sent === 0) committed();
      res.end();
    } catch (e) {
      if (signal.aborted) return; // the client left (SPEC.md §9.16.6): nothing to answer or reset
      if (sent === 0 && !res.headersSent) { res.removeHeader('Content-Range'); throw e; }
      // Mid-body: the client must not take a cut body for a whole one, so the connection is reset.
      this.log.warn({ code: errorCode(e) }, 'gateway: a read failed mid-body; connection reset');
      res.destroy();
    }
  }

  private listing(req: http.IncomingMessage, res: http.ServerResponse, path: string, entries: FolderEntry[]): void {
    const prefix = path ? `${path}/` : '';
    const names = new Map<string, number | null>();
    for (const e of entries) {
      if (!e.path.startsWith(prefix)) continue;
      const rest = e.path.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash < 0) names.set(rest, e.size); else names.set(rest.slice(0, slash) + '/', null);
      if (names.size >= 10_000) break;
    }
    const head = `<!doctype html><meta charset="utf-8"><title>/${escapeHtml(prefix)}</title><h1>/${escapeHtml(prefix)}</h1><ul>`;
    // SPEC.md §9.16.2: rows are added, in order, while the page stays within
    // GATEWAY_LISTING_MAX_BYTES; a name of 1024 "&" takes over 8 KiB escaped, so 10 000 of them
    // (an 11 MB listing) made an 82 MB page for every request, held until the client read it.
    const rows: string[] = [];
    let bytes = Buffer.byteLength(head) + LISTING_TAIL_BYTES;
    for (const [n, s] of [...names].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const row = `<li><a href="${escapeHtml(encodePath(n.replace(/\/$/, '')) + (n.endsWith('/') ? '/' : ''))}">${escapeHtml(n)}</a>${s === null ? '' : ` (${s} bytes)`}</li>`;
      const len = Buffer.byteLength(row);
      if (bytes + len > GATEWAY_LISTING_MAX_BYTES) break;
      bytes += len;
      rows.push(row);
    }
    const more = rows.length < names.size ? `<p>${names.size - rows.length} more not listed.</p>` : '';
    const body = Buffer.from(`${head}${rows.join('')}</ul>${more}\n`);
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Content-Length', body.length);
    this.metrics?.requests.inc({ status: '200' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private fail(res: http.ServerResponse, e: unknown): void {
    if (res.headersSent) { res.destroy(); return; }
    const status = statusFor(e);
    const code = errorCode(e);
    if (!isBitcloudError(e)) this.log.error({ err: (e as Error)?.message }, 'gateway: unexpected failure');
    else this.log.debug({ code, status }, 'gateway: request failed');
    const msg = isBitcloudError(e) ? (e as BitcloudError).message.replace(/^[A-Z0-9_]+: /, '') : 'internal error';
    const title = TITLES[status] ?? 'Error';
    const body = Buffer.from(`<!doctype html><meta charset="utf-8"><title>${status} ${title}</title>`
      + `<h1>${status} ${title}</h1><p>${escapeHtml(HINT[status] ?? '')}</p><p><code>${escapeHtml(code)}</code>: ${escapeHtml(msg)}</p>\n`);
    res.statusCode = status;
    for (const h of ['ETag', 'Accept-Ranges', 'Cache-Control']) res.removeHeader(h);
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Content-Length', body.length);
    res.setHeader('Cache-Control', 'no-store');
    this.metrics?.requests.inc({ status: String(status) });
    res.end(res.req?.method === 'HEAD' ? undefined : body);
  }
}
