// SPEC.md §7.8 (SOCKS): the client's SOCKS5 front end. RFC 1928 CONNECT with IPv4, IPv6 and
// domain names (passed through untouched: names are resolved by the exit, never here), RFC 1929
// username/password accepted whatever they are and used only for stream isolation. Everything
// else gets a clear refusal. The server knows nothing of circuits: `onConnect` returns a stream.
import net from 'node:net';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import type { Duplex } from 'node:stream';
import { err, errorCode, isErrorCode, type BitcloudError, type ErrorCode } from '../errors';
import { END_REASONS, endReasonName, errnoInfo } from '../circuit/end-reasons';
import { silentLogger, type Logger } from '../ops/log';
import { prom, type Registry } from '../ops/metrics';
import { formatIPv4, formatIPv6, parseIp, parseIPv6 } from '../dir/exit-policy';
import { SocksReply, type SocksReplyName } from '../wire/socks';

const REPLY_NAME = new Map<number, string>(Object.entries(SocksReply).map(([k, v]) => [v, k.toLowerCase()]));

/**
 * SPEC §7.8.4 step 3: the reply for a failure that carries no END reason nor system error code,
 * by error code; a code not listed gets 0x01. (The replies for END reasons and system error codes
 * are columns of the tables in src/circuit/end-reasons.ts.)
 */
export const SOCKS_REPLY_FOR_CODE: Readonly<Partial<Record<ErrorCode, SocksReplyName>>> = {
  PATH_NO_EXIT: 'NOT_ALLOWED', // no exit's policy allows the target
  CIRCUIT_NO_CONSENSUS: 'NETWORK_UNREACHABLE', // the client cannot build a circuit
  PATH_NO_RELAYS: 'NETWORK_UNREACHABLE',
  PATH_NO_GUARD: 'NETWORK_UNREACHABLE',
  PATH_NO_MIDDLE: 'NETWORK_UNREACHABLE',
  EXIT_POLICY_REJECTED: 'NOT_ALLOWED',
  EXIT_POLICY_MALFORMED: 'NOT_ALLOWED',
  EXIT_POLICY_BAD_ADDRESS: 'NOT_ALLOWED',
  EXIT_RESOLVE_FAILED: 'HOST_UNREACHABLE',
  EXIT_NO_ROUTE: 'HOST_UNREACHABLE',
  EXIT_CONNECT_REFUSED: 'CONNECTION_REFUSED',
  EXIT_TIMEOUT: 'TTL_EXPIRED',
  STREAM_TIMEOUT: 'TTL_EXPIRED',
  CIRCUIT_BUILD_TIMEOUT: 'TTL_EXPIRED',
  LINK_HANDSHAKE_TIMEOUT: 'TTL_EXPIRED',
  LINK_PEER_SILENT: 'TTL_EXPIRED', // the guard went silent (§1.8)
  SOCKS_CONNECT_TIMEOUT: 'TTL_EXPIRED', // no stream within the connect timeout (§7.8.3)
  STORAGE_TIMEOUT: 'TTL_EXPIRED',
  TRANSFER_NOT_INCLUDED: 'TTL_EXPIRED', // every timeout kind maps here (not reached through SOCKS)
  ESCROW_CANCEL_NOT_INCLUDED: 'TTL_EXPIRED', // every timeout kind maps here (not reached through SOCKS)
  HIDDEN_RENDEZVOUS_TIMEOUT: 'TTL_EXPIRED',
  PROBE_TIMEOUT: 'TTL_EXPIRED',
  RECEIPT_UPLOAD_TIMEOUT: 'TTL_EXPIRED', // every timeout kind maps here (not reached through SOCKS)
  GATEWAY_QUEUE_TIMEOUT: 'TTL_EXPIRED', // every timeout kind maps here (answered over HTTP, not through SOCKS)
  REWARD_FETCH_TIMEOUT: 'TTL_EXPIRED', // every timeout kind maps here (not reached through SOCKS)
};

/**
 * SPEC §7.8.4: the SOCKS reply for a failed connect, first match wins: an END reason in
 * `detail.reason` / `detail.endReason` (number or name; END_REASONS); a system error code
 * (ERRNO); the error code (SOCKS_REPLY_FOR_CODE); else 0x01. Tables only, never words in codes.
 */
export function socksReplyFor(e: unknown): number {
  const detail = (e as BitcloudError | undefined)?.detail;
  const reason = endReasonName(detail?.reason ?? detail?.endReason);
  if (reason) return SocksReply[END_REASONS[reason].socks];
  const code = errorCode(e);
  const errno = errnoInfo(code);
  if (errno) return SocksReply[errno.socks];
  const byCode = isErrorCode(code) ? SOCKS_REPLY_FOR_CODE[code] : undefined;
  return SocksReply[byCode ?? 'GENERAL_FAILURE'];
}

export interface SocksConnectRequest {
  /** IPv4 dotted quad, canonical IPv6 text (RFC 5952), or the domain name exactly as sent. */
  host: string;
  addrType: 'ipv4' | 'ipv6' | 'domain';
  port: number;
  /** RFC 1929 credentials, the bytes as sent (SPEC.md §7.7: not decoded, so no two collide). */
  isolation: { username?: Buffer; password?: Buffer };
}

export interface Socks5ServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 9050; 0 picks a free port. */
  port?: number;
  /** Required to bind anything but a loopback address (SPEC §7.8.1). */
  allowPublicBind?: boolean;
  /** Open the stream to the target; reject with a BitcloudError whose code/END reason socksReplyFor maps. */
  onConnect: (req: SocksConnectRequest, ctx: { signal: AbortSignal }) => Promise<Duplex>;
  log?: Logger;
  metrics?: Registry;
  /** From accept to a complete request. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** For onConnect to produce a stream; then reply 0x06. Default 120 s (Tor's SocksTimeout). */
  connectTimeoutMs?: number;
  /** SPEC §7.8.2: connections open at once; one past it is closed without an answer. Default 1024. */
  maxConnections?: number;
}

// ---------------------------------------------------------------------------------------------
// Handshake parsing (pure). Each returns null when more bytes are needed, else the value and the
// bytes it used; malformed input throws a BitcloudError whose detail.reply says what to answer.

export type Parsed<T> = { value: T; used: number } | null;

function refuse(code: ErrorCode, message: string, reply: number | null, reason: string): never {
  throw err(code, message, { reply, reason });
}

/** RFC 1928 §3: VER(5) NMETHODS METHODS... */
export function parseGreeting(b: Buffer): Parsed<{ methods: number[] }> {
  if (b.length >= 1 && b[0] !== 5) refuse('SOCKS_BAD_VERSION', `not SOCKS5 (version byte ${b[0]})`, null, 'garbage');
  if (b.length < 2) return null;
  if (b.length < 2 + b[1]) return null;
  return { value: { methods: [...b.subarray(2, 2 + b[1])] }, used: 2 + b[1] };
}

/**
 * RFC 1929 §2: VER(1) ULEN UNAME PLEN PASSWD. Empty fields are accepted (isolation only). The
 * fields are copies of the bytes as sent: RFC 1929 names no encoding, and decoding them would
 * make different credentials equal (SPEC.md §7.7).
 */
export function parseUserPass(b: Buffer): Parsed<{ username: Buffer; password: Buffer }> {
  if (b.length < 2) return null;
  if (b[0] !== 1) refuse('SOCKS_AUTH_MALFORMED', `username/password version ${b[0]}, expected 1`, null, 'auth_malformed');
  const ulen = b[1];
  if (b.length < 3 + ulen) return null;
  const plen = b[2 + ulen];
  if (b.length < 3 + ulen + plen) return null;
  return {
    value: { username: Buffer.from(b.subarray(2, 2 + ulen)), password: Buffer.from(b.subarray(3 + ulen, 3 + ulen + plen)) },
    used: 3 + ulen + plen,
  };
}

/** RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT. Only CONNECT (1) is served. */
export function parseRequest(b: Buffer): Parsed<Omit<SocksConnectRequest, 'isolation'>> {
  if (b.length < 4) return null;
  if (b[0] !== 5) refuse('SOCKS_BAD_VERSION', `request version ${b[0]}, expected 5`, SocksReply.GENERAL_FAILURE, 'malformed');
  const cmd = b[1], atyp = b[3];
  if (cmd === 2 || cmd === 3) {
    refuse('SOCKS_COMMAND_UNSUPPORTED', `${cmd === 2 ? 'BIND' : 'UDP ASSOCIATE'} is not supported, only CONNECT`, SocksReply.COMMAND_NOT_SUPPORTED, cmd === 2 ? 'bind' : 'udp_associate');
  }
  if (cmd !== 1) refuse('SOCKS_COMMAND_UNSUPPORTED', `unknown SOCKS command ${cmd}`, SocksReply.COMMAND_NOT_SUPPORTED, 'unknown_command');
  let host: string, addrType: SocksConnectRequest['addrType'], end: number;
  if (atyp === 1) {
    if (b.length < 10) return null;
    host = formatIPv4(b.readUInt32BE(4)); addrType = 'ipv4'; end = 8;
  } else if (atyp === 4) {
    if (b.length < 22) return null;
    host = formatIPv6((b.readBigUInt64BE(4) << 64n) | b.readBigUInt64BE(12)); addrType = 'ipv6'; end = 20;
  } else if (atyp === 3) {
    if (b.length < 5 || b.length < 7 + b[4]) return null;
    const name = b.subarray(5, 5 + b[4]);
    // Printable ASCII only (IDNs arrive as punycode); no NUL, space or control bytes.
    if (name.length === 0 || name.some((c) => c < 0x21 || c > 0x7e)) {
      refuse('SOCKS_BAD_HOSTNAME', 'empty or non-printable host name', SocksReply.GENERAL_FAILURE, 'bad_hostname');
    }
    host = name.toString('latin1'); addrType = 'domain'; end = 5 + b[4];
    // SPEC.md §7.8.2: no empty label (a leading dot, two dots in a row, more than one trailing dot;
    // one trailing dot is a fully qualified name). A name with a ':' must be IPv6 text (passed on as
    // such); anything else with one (host:port put in the name field) is refused. So no spelling of
    // a name such as `….bitcloud..` or `….bitcloud:80` slips past the gateway to an exit. IPv6 text
    // is what every other layer parses (src/wire/addr.ts): no zone id (`fe80::1%eth0`), which
    // net.isIPv6 accepts but the path selection takes for a name, to be sent to an exit as one.
    if (host.includes(':')) {
      if (parseIPv6(host) === null) refuse('SOCKS_BAD_HOSTNAME', 'host name with a \':\' that is not an IPv6 address', SocksReply.GENERAL_FAILURE, 'bad_hostname');
    } else if (host.replace(/\.$/, '').split('.').some((l) => l === '')) {
      refuse('SOCKS_BAD_HOSTNAME', 'host name with an empty label', SocksReply.GENERAL_FAILURE, 'bad_hostname');
    } else if (/(^|\.)onion\.?$/i.test(host)) {
      // SPEC.md §7.8.2, RFC 7686: a Tor onion address names no host an exit can reach, and sent in
      // BEGIN it would be looked up in the exit's DNS (the exit and its resolver learning which
      // onion service the application wanted). Refused here, as Arti does with onion services off.
      refuse('SOCKS_ONION_UNSUPPORTED', '.onion addresses are Tor onion services, which Bitcloud does not reach', SocksReply.GENERAL_FAILURE, 'onion');
    }
  } else {
    refuse('SOCKS_ADDRESS_TYPE_UNSUPPORTED', `address type ${atyp}`, SocksReply.ADDRESS_TYPE_NOT_SUPPORTED, 'address_type');
  }
  const port = b.readUInt16BE(end);
  if (port === 0) refuse('SOCKS_BAD_PORT', 'port 0', SocksReply.NOT_ALLOWED, 'port_zero');
  return { value: { host, addrType, port }, used: end + 2 };
}

/** Reply with BND.ADDR 0.0.0.0:0 (the client learns nothing about the exit's side, as Tor does). */
function replyBytes(rep: number): Buffer {
  return Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
}

const SOCKS4_REJECT = Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]);
const HTTP_501 = Buffer.from([
  'HTTP/1.0 501 Bitcloud is not an HTTP Proxy', 'Content-Type: text/plain; charset=utf-8', 'Connection: close', '', 
  'This is a SOCKS5 proxy, not an HTTP proxy.\n'
  + 'Configure your application to use it as a SOCKS5 proxy with remote DNS ("socks5h"),\n'
  + 'for example: curl --socks5-hostname 127.0.0.1:9050 http://example.com/\n',
].join('\r\n'));

/**
 * SPEC.md §7.8.2: a line telling the user an application is misconfigured (SOCKS4, HTTP, BIND,
 * UDP ASSOCIATE) is logged at warn at most once a minute for each kind; the rest go to debug.
 */
const MISUSE_WARN_INTERVAL_MS = 60_000;

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const ip = parseIp(host);
  if (!ip) return false;
  return ip.family === 4 ? ip.value >>> 24 === 127 : ip.value === 1n;
}

// ---------------------------------------------------------------------------------------------

interface Metrics {
  connections: prom.Counter<string>;
  open: prom.Gauge<string>;
  replies: prom.Counter<'reply'>;
  refusals: prom.Counter<'reason'>;
}

function metric<T>(reg: Registry, name: string, make: () => T): T {
  return (reg.getSingleMetric(name) as T | undefined) ?? make();
}

function makeMetrics(reg: Registry): Metrics {
  return {
    connections: metric(reg, 'bitcloud_socks_connections_total', () => new prom.Counter({ name: 'bitcloud_socks_connections_total', help: 'SOCKS connections accepted', registers: [reg] })),
    open: metric(reg, 'bitcloud_socks_open_connections', () => new prom.Gauge({ name: 'bitcloud_socks_open_connections', help: 'SOCKS connections open now', registers: [reg] })),
    replies: metric(reg, 'bitcloud_socks_replies_total', () => new prom.Counter({ name: 'bitcloud_socks_replies_total', help: 'SOCKS CONNECT replies by reply code', labelNames: ['reply'], registers: [reg] })),
    refusals: metric(reg, 'bitcloud_socks_refusals_total', () => new prom.Counter({ name: 'bitcloud_socks_refusals_total', help: 'SOCKS handshakes refused, by reason', labelNames: ['reason'], registers: [reg] })),
  };
}

export class Socks5Server {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;
  private readonly metrics: Metrics | null;
  private readonly handshakeTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxConnections: number;
  /** The connection limit was reached and logged; logged again only once below half of it (SPEC §7.8.2). */
  private full = false;
  /** SPEC §7.8.2: per kind of misuse, when its line was last logged at warn and how many went to debug since. */
  private readonly misuseWarned = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly opts: Socks5ServerOptions) {
    const host = opts.host ?? '127.0.0.1';
    if (!isLoopback(host) && !opts.allowPublicBind) {
      throw err('SOCKS_PUBLIC_BIND_REFUSED', `refusing to serve SOCKS on non-loopback address ${host} without allowPublicBind: anyone who reaches it could use your client`);
    }
    // SPEC §7.8.2: 0 or less would close every connection, NaN would lift the limit.
    const mc = opts.maxConnections;
    if (mc !== undefined && (!Number.isInteger(mc) || mc < 1)) throw err('CONFIG_INVALID', `maxConnections must be an integer ≥ 1, got ${mc}`, { key: 'maxConnections' });
    this.log = opts.log ?? silentLogger;
    this.metrics = opts.metrics ? makeMetrics(opts.metrics) : null;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 120_000;
    this.maxConnections = opts.maxConnections ?? 1024;
    // noDelay: replies and small writes (TLS handshakes, HTTP requests) go out at once, as Tor's SocksPort does.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.serve(s));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 9050, this.opts.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  get address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Stop accepting and destroy every open connection (their streams are destroyed too). */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private refused(reason: string): void {
    this.metrics?.refusals.inc({ reason });
  }

  /**
   * SPEC §7.8.2: any local program can open connections without end, each a SOCKS4 request, an
   * HTTP request or a BIND: one warn line per connection would let it fill the log (and the disk
   * under it). The first of each kind is logged at warn, then at most one a minute (saying how
   * many went to debug meanwhile); every one is still counted in the refusals metric.
   */
  private misuse(kind: string, message: string): void {
    const now = Date.now();
    const w = this.misuseWarned.get(kind);
    if (w && now - w.at < MISUSE_WARN_INTERVAL_MS) {
      w.suppressed++;
      this.log.debug(message);
      return;
    }
    this.log.warn(w?.suppressed ? { suppressedSinceLastWarning: w.suppressed } : {}, message);
    this.misuseWarned.set(kind, { at: now, suppressed: 0 });
  }

  private serve(sock: net.Socket): void {
    if (LAT_TRACE) latTrace('socks.accept');
    // SPEC §7.8.2: a bounded number of connections at once, so a local program that opens them
    // without end cannot take every file descriptor and memory of the client (its links to guards,
    // its state files) along with the SOCKS port.
    if (this.sockets.size >= this.maxConnections) {
      this.refused('too_many_connections');
      if (!this.full) this.log.warn({ maxConnections: this.maxConnections }, 'SOCKS connection limit reached: new connections are closed until some end');
      this.full = true;
      sock.on('error', () => {});
      sock.destroy();
      return;
    }
    if (this.full && this.sockets.size < this.maxConnections / 2) this.full = false;
    this.sockets.add(sock);
    this.metrics?.connections.inc();
    this.metrics?.open.inc();
    let phase: 'greeting' | 'auth' | 'request' | 'connecting' | 'open' | 'done' = 'greeting';
    let buf: Buffer = Buffer.alloc(0);
    const isolation: SocksConnectRequest['isolation'] = {};
    const abort = new AbortController();
    const timer = setTimeout(() => {
      this.refused('handshake_timeout');
      this.log.debug('SOCKS handshake timed out');
      sock.destroy();
    }, this.handshakeTimeoutMs);

    const finish = (bytes: Buffer | null, reason: string | null): void => {
      phase = 'done';
      clearTimeout(timer);
      if (reason) this.refused(reason);
      sock.removeListener('data', onData);
      sock.resume(); // discard whatever else arrives so closing does not reset the reply away
      if (bytes) sock.end(bytes); else sock.destroy();
      setTimeout(() => sock.destroy(), 2000).unref();
    };

    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        while (phase === 'greeting' || phase === 'auth' || phase === 'request') {
          if (phase === 'greeting') {
            if (buf[0] === 4) {
              this.misuse('socks4', 'SOCKS4 is not supported, use SOCKS5 with remote DNS (socks5h)');
              return finish(SOCKS4_REJECT, 'socks4');
            }
            if (buf[0] >= 0x41 && buf[0] <= 0x5a) {
              this.misuse('http', 'an HTTP request reached the SOCKS port: this is a SOCKS5 proxy, not an HTTP proxy');
              return finish(HTTP_501, 'http');
            }
            const g = parseGreeting(buf);
            if (!g) return;
            buf = buf.subarray(g.used);
            const method = g.value.methods.includes(2) ? 2 : g.value.methods.includes(0) ? 0 : 0xff;
            if (method === 0xff) return finish(Buffer.from([5, 0xff]), 'no_method');
            sock.write(Buffer.from([5, method]));
            phase = method === 2 ? 'auth' : 'request';
          } else if (phase === 'auth') {
            const a = parseUserPass(buf);
            if (!a) return;
            buf = buf.subarray(a.used);
            isolation.username = a.value.username;
            isolation.password = a.value.password;
            sock.write(Buffer.from([1, 0]));
            phase = 'request';
          } else {
            const r = parseRequest(buf);
            if (!r) return;
            buf = buf.subarray(r.used);
            phase = 'connecting';
            clearTimeout(timer);
            return this.connect(sock, { ...r.value, isolation }, buf, abort, (p) => { phase = p; });
          }
        }
      } catch (e) {
        const d = (e as BitcloudError).detail as { reply: number | null; reason: string } | undefined;
        if (d?.reason === 'bind' || d?.reason === 'udp_associate') this.misuse(d.reason, `SOCKS ${d.reason === 'bind' ? 'BIND' : 'UDP ASSOCIATE'} is not supported, only CONNECT`);
        else this.log.debug({ code: errorCode(e) }, 'SOCKS handshake refused');
        if (d?.reply !== null && d?.reply !== undefined) this.metrics?.replies.inc({ reply: REPLY_NAME.get(d.reply)! });
        const bytes = d?.reason === 'auth_malformed' ? Buffer.from([1, 1]) : d?.reply == null ? null : replyBytes(d.reply);
        finish(bytes, d?.reason ?? 'malformed');
      }
    };

    sock.on('data', onData);
    // A client that hangs up mid-handshake is done; after our final reply, let the reply drain.
    sock.on('end', () => { if (phase !== 'open' && phase !== 'done') sock.destroy(); });
    sock.on('error', (e) => this.log.debug({ code: errorCode(e) }, 'SOCKS client socket error'));
    sock.on('close', () => {
      clearTimeout(timer);
      // Only a CONNECT still waiting for its stream listens; once the stream is open, aborting
      // would cost an error object and an event dispatch per connection for nothing.
      if (phase === 'connecting') abort.abort(err('SOCKS_CLIENT_GONE', 'the client closed its connection before the stream opened'));
      this.sockets.delete(sock);
      this.metrics?.open.dec();
    });
  }

  /** SPEC §7.8.3: call onConnect, reply, then relay bytes both ways with backpressure. */
  private connect(sock: net.Socket, req: SocksConnectRequest, early: Buffer, abort: AbortController, setPhase: (p: 'open' | 'done') => void): void {
    sock.pause();
    sock.removeAllListeners('data');
    if (early.length > 0) sock.unshift(early); // optimistic data sent before our reply
    this.log.debug({ addrType: req.addrType }, 'SOCKS CONNECT');
    const connectTimer = setTimeout(() => abort.abort(err('SOCKS_CONNECT_TIMEOUT', `no stream within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
    const timedOut = new Promise<never>((_, reject) => {
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
    });
    timedOut.catch(() => {});
    if (LAT_TRACE) latTrace('socks.request');
    const pending = this.opts.onConnect(req, { signal: abort.signal });
    const fail = (e: unknown): void => {
      if (sock.destroyed) return;
      setPhase('done');
      const rep = socksReplyFor(e);
      this.metrics?.replies.inc({ reply: REPLY_NAME.get(rep)! });
      this.log.debug({ code: errorCode(e), reply: rep }, 'SOCKS CONNECT failed');
      sock.resume();
      sock.end(replyBytes(rep));
      setTimeout(() => sock.destroy(), 2000).unref();
    };
    Promise.race([pending, timedOut]).then((stream) => {
      clearTimeout(connectTimer);
      if (sock.destroyed) { stream.destroy(); return; }
      // SPEC §7.8.3: a stream that failed before our reply (CONNECTED and END or DESTROY in one
      // read: its 'error' and 'close' are already past) gets the failure reply, never 0x00.
      if (stream.destroyed) {
        fail(stream.errored ?? err('STREAM_CLOSED', 'the stream closed before the reply'));
        return;
      }
      this.metrics?.replies.inc({ reply: 'succeeded' });
      setPhase('open');
      if (LAT_TRACE) { latTrace('socks.reply'); sock.once('data', () => latTrace('socks.client-data')); stream.once('data', () => latTrace('socks.stream-data')); }
      sock.write(replyBytes(SocksReply.SUCCEEDED));
      this.pipe(sock, stream);
    }, (e) => {
      clearTimeout(connectTimer);
      pending.then((late) => late.destroy(), () => {});
      fail(e);
    });
  }

  /**
   * Relay both ways. A clean end of the stream ends our side of the socket (the client sees
   * EOF); a stream that errors or closes without ending resets the socket, so an application
   * never mistakes a broken transfer for a complete one (SPEC §7.8.3).
   */
  private pipe(sock: net.Socket, stream: Duplex): void {
    let streamEnded = false;
    stream.on('end', () => { streamEnded = true; });
    sock.pipe(stream);
    stream.pipe(sock);
    stream.on('error', (e) => this.log.debug({ code: errorCode(e) }, 'SOCKS stream error'));
    stream.on('close', () => {
      if (!streamEnded) { if (!sock.destroyed) sock.resetAndDestroy(); return; }
      sock.resume(); // the stream is gone: drain whatever the client still sends
      setTimeout(() => sock.destroy(), 30_000).unref();
    });
    sock.on('close', () => { if (!stream.destroyed) stream.destroy(); });
  }
}

/** Create and start a SOCKS5 server; resolves once it is listening. */
export async function startSocks5Server(opts: Socks5ServerOptions): Promise<Socks5Server> {
  const s = new Socks5Server(opts);
  await s.listen();
  return s;
}
