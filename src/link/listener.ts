// SPEC.md §1.1–§1.2: the responder's side: accept TCP, TLS 1.3, prove the identity, negotiate.
// A link that fails costs only itself: every failure is caught per socket, counted by code,
// and the listener keeps accepting.
import tls from 'node:tls';
import type net from 'node:net';
import { err } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION, type TlsCredentials } from '../crypto/tls';
import { silentLogger, type Logger } from '../ops/log';
import { Channel, checkLinkTuning, DEFAULT_HANDSHAKE_TIMEOUT_MS, type LinkTuning } from './channel';
import { SUPPORTED_LINK_VERSIONS } from './handshake';
import { discardLinkMetrics, type LinkMetrics } from './metrics';

/** A connection's place under an accept-time limit (SPEC.md §7b.9); given back by release(), once. */
export interface LinkAdmission {
  release(): void;
}

export interface LinkListenerOptions extends LinkTuning {
  host: string;
  /** 0 = any free port (read it back from `.port`). */
  port: number;
  identity: Ed25519KeyPair;
  /**
   * Called once per link whose handshake completed, with the admission `admit` gave its connection
   * (null without `admit`); attach listeners before returning.
   */
  onChannel: (ch: Channel, admission: LinkAdmission | null) => void;
  /**
   * Asked for each TCP connection as it is accepted, before TLS, with the peer's address (SPEC.md
   * §7b.9); null closes the connection at once. The admission is released when the connection
   * closes; onChannel's holder may release it earlier, so a second release() must do nothing.
   */
  admit?: (address: string) => LinkAdmission | null;
  /** Default: a fresh self-signed certificate made now (SPEC.md §1.2). */
  tls?: TlsCredentials;
  /** Bound on the TLS handshake and, separately, on the link handshake after it. Default 10 s. */
  timeoutMs?: number;
  /** TCP connections beyond this are dropped at accept (handshaking and open links count). */
  maxConnections?: number;
  /** Versions to offer (tests); default SUPPORTED_LINK_VERSIONS. */
  versions?: readonly number[];
  metrics?: LinkMetrics;
  log?: Logger;
}

export class LinkListener {
  private readonly sockets = new Set<net.Socket>();
  private readonly channels = new Set<Channel>();
  private closing: Promise<void> | null = null;

  /** @internal Use createLinkListener. */
  constructor(private readonly server: tls.Server, readonly port: number, readonly host: string) {}

  /** @internal */
  track(s: net.Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  /** @internal */
  adopt(ch: Channel): void {
    this.channels.add(ch);
    ch.once('close', () => this.channels.delete(ch));
  }

  /** Links open now. */
  get channelCount(): number { return this.channels.size; }

  /** Stop accepting, close every link (open or handshaking) at once, resolve when the port is free. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const ch of this.channels) ch.destroy();
      for (const s of this.sockets) s.destroy();
    });
    return this.closing;
  }
}

export async function createLinkListener(opts: LinkListenerOptions): Promise<LinkListener> {
  checkLinkTuning(opts);
  const metrics = opts.metrics ?? discardLinkMetrics();
  const log = opts.log ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const creds = opts.tls ?? await generateTlsCredentials();
  const versions = opts.versions ?? SUPPORTED_LINK_VERSIONS;

  const server = tls.createServer({
    key: creds.keyPem,
    cert: creds.certPem,
    minVersion: LINK_TLS_MIN_VERSION,
    maxVersion: LINK_TLS_MAX_VERSION,
    // SPEC.md §1.2: ask for a certificate so a relay initiator can present one; accept any or none.
    requestCert: true,
    rejectUnauthorized: false,
    handshakeTimeout: timeoutMs,
  });
  if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections;

  await new Promise<void>((resolve, reject) => {
    const onListenError = (e: NodeJS.ErrnoException) => reject(err('LINK_LISTEN_FAILED', `cannot listen on ${opts.host}:${opts.port}: ${e.code ?? e.message}`, { errno: e.code }, e));
    server.once('error', onListenError);
    server.listen(opts.port, opts.host, () => { server.off('error', onListenError); resolve(); });
  });
  server.on('error', (e) => log.warn({ err: e.message }, 'link listener error'));
  const addr = server.address();
  const listener = new LinkListener(server, typeof addr === 'object' && addr ? addr.port : opts.port, opts.host);

  // SPEC.md §7b.9: each accepted connection's admission, by its remote address and port, until the
  // handshake completes (handed to onChannel) or the connection closes.
  const admissions = new Map<string, LinkAdmission>();
  const socketKey = (s: net.Socket): string => `${s.remoteAddress}:${s.remotePort}`;
  // A refused connection is closed under its TLS socket, which reports that as one hang-up
  // (tlsClientError, ECONNRESET): that many hang-ups are ours, not handshake failures.
  let refusedHangups = 0;
  server.on('connection', (raw: net.Socket) => {
    raw.setNoDelay(true); // as in connect.ts: the channel batches; Nagle only delays small cells
    listener.track(raw);
    if (!opts.admit) return;
    const a = raw.remoteAddress === undefined ? null : opts.admit(raw.remoteAddress);
    if (!a) { refusedHangups++; raw.destroy(); return; }
    const key = socketKey(raw);
    admissions.set(key, a);
    raw.once('close', () => { if (admissions.get(key) === a) admissions.delete(key); a.release(); });
  });
  server.on('tlsClientError', (e: NodeJS.ErrnoException, s: tls.TLSSocket) => {
    if (e.code === 'ECONNRESET' && refusedHangups > 0) { refusedHangups--; s.destroy(); return; }
    const code = e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'LINK_HANDSHAKE_TIMEOUT' : 'LINK_TLS_FAILED';
    metrics.errors.labels(code).inc();
    metrics.handshakeFailures.labels(code).inc();
    log.debug({ code, reason: e.code ?? e.message }, 'TLS handshake failed');
    s.destroy();
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    // Any error on this socket from here on belongs to the Channel, which catches everything;
    // the try is for the constructor itself, so that nothing escapes into the server's emitter.
    try {
      startResponder(socket);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'LINK_INTERNAL';
      metrics.errors.labels(code).inc();
      metrics.handshakeFailures.labels(code).inc();
      socket.destroy();
    }
  });
  const startResponder = (socket: tls.TLSSocket): void => {
    const admission = admissions.get(socketKey(socket)) ?? null;
    new Channel({
      socket,
      isInitiator: false,
      identity: opts.identity,
      ownCertHash: creds.certHash,
      versions,
      handshakeTimeoutMs: timeoutMs,
      batchCells: opts.batchCells,
      highWaterMark: opts.highWaterMark,
      keepaliveMs: opts.keepaliveMs,
      livenessTimeoutMs: opts.livenessTimeoutMs,
      maxBufferedBytes: opts.maxBufferedBytes,
      metrics,
      log,
      onOpen: (ch) => { listener.adopt(ch); opts.onChannel(ch, admission); },
      onFail: () => { /* counted and logged by the Channel; the listener carries on */ },
    });
  };
  log.info({ port: listener.port }, 'link listener up');
  return listener;
}
