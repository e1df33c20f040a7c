// SPEC.md §1.1–§1.2: the initiator's side of a link: TCP, TLS 1.3, then the link handshake.
import type { OnReadOpts } from 'node:net';
import tls from 'node:tls';
import { BitcloudError, err } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION, type TlsCredentials } from '../crypto/tls';
import { silentLogger, type Logger } from '../ops/log';
import { Channel, checkLinkTuning, DEFAULT_HANDSHAKE_TIMEOUT_MS, type LinkTuning } from './channel';
import { SUPPORTED_LINK_VERSIONS } from './handshake';
import { discardLinkMetrics, type LinkMetrics } from './metrics';
import { LinkReader } from './reader';

export interface ConnectLinkOptions extends LinkTuning {
  host: string;
  port: number;
  /** The responder's identity key from the consensus; anything else ⇒ LINK_IDENTITY_MISMATCH. */
  expectedIdentity?: Buffer;
  /** Present ⇒ authenticate as a relay initiator; absent ⇒ an anonymous client (no certificate, no AUTHENTICATE). */
  identity?: Ed25519KeyPair;
  /** Certificate a relay initiator presents; default: one made once per process (§1.2 allows any). */
  tls?: TlsCredentials;
  /** Bound on TCP connect + TLS + link handshake. Default 10 s. */
  timeoutMs?: number;
  /** Source address to connect from (tests and benches that play several clients). */
  localAddress?: string;
  /** Versions to offer (tests); default SUPPORTED_LINK_VERSIONS. */
  versions?: readonly number[];
  metrics?: LinkMetrics;
  log?: Logger;
}

let processCredentials: Promise<TlsCredentials> | undefined;
/** The certificate this process presents when it initiates as a relay and was given none. */
export function defaultInitiatorCredentials(): Promise<TlsCredentials> {
  processCredentials ??= generateTlsCredentials();
  return processCredentials;
}

/**
 * Open a link and complete its handshake. Resolves with an open Channel (attach its listeners in
 * the same tick); rejects with LINK_CONNECT_FAILED, LINK_TLS_FAILED, LINK_HANDSHAKE_TIMEOUT,
 * LINK_AUTH_FAILED, LINK_IDENTITY_MISMATCH, LINK_NO_COMMON_VERSION, LINK_PROTOCOL_VIOLATION,
 * LINK_HANDSHAKE_FAILED, a CELL_* code, or MSG_TRUNCATED / MSG_MALFORMED (a malformed
 * AUTHENTICATE or VERSIONS body, SPEC.md §1.3, §2.3) — and never leaves a socket open when it rejects.
 */
export async function connectLink(opts: ConnectLinkOptions): Promise<Channel> {
  checkLinkTuning(opts);
  const metrics = opts.metrics ?? discardLinkMetrics();
  const log = opts.log ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const started = Date.now();
  const creds = opts.identity ? (opts.tls ?? await defaultInitiatorCredentials()) : undefined;

  const failed = (e: BitcloudError): BitcloudError => {
    metrics.errors.labels(e.code).inc();
    metrics.handshakeFailures.labels(e.code).inc();
    return e;
  };

  return new Promise<Channel>((resolve, reject) => {
    const reader = new LinkReader();
    // node:tls documents `onread` for tls.connect (used when it makes the socket itself), but
    // @types/node leaves it out of ConnectionOptions.
    const tlsOpts: tls.ConnectionOptions & { onread: OnReadOpts } = {
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      minVersion: LINK_TLS_MIN_VERSION,
      maxVersion: LINK_TLS_MAX_VERSION,
      // SPEC.md §1.2: the certificate chain is not checked; identity comes from AUTHENTICATE.
      rejectUnauthorized: false,
      ...(creds ? { key: creds.keyPem, cert: creds.certPem } : {}),
      // SPEC.md §1.6: every read into one reused buffer (reader.ts), not a new Buffer per record.
      onread: reader.onread,
    };
    const socket = tls.connect(tlsOpts);
    // SPEC.md §1.6: the channel gathers cells into large writes itself; Nagle would only hold
    // back the small ones (CREATE2, EXTEND2, SENDME) for a delayed ACK, ~40 ms on Linux.
    socket.setNoDelay(true);
    let settled = false;
    const preTls = (e: BitcloudError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(failed(e));
    };
    const timer = setTimeout(() => preTls(err('LINK_HANDSHAKE_TIMEOUT', `TLS not done in ${timeoutMs} ms`)), timeoutMs);
    const onError = (e: NodeJS.ErrnoException) => {
      const connecting = socket.connecting || e.syscall === 'connect';
      preTls(err(connecting ? 'LINK_CONNECT_FAILED' : 'LINK_TLS_FAILED', e.code ?? e.message, { errno: e.code }, e));
    };
    const onClose = () => preTls(err('LINK_TLS_FAILED', 'connection closed during the TLS handshake'));
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('secureConnect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (socket.getProtocol() !== LINK_TLS_MIN_VERSION) {
        socket.destroy();
        reject(failed(err('LINK_TLS_FAILED', `negotiated ${socket.getProtocol()}, need TLS 1.3`)));
        return;
      }
      try {
        startInitiator();
      } catch (e) {
        socket.destroy();
        reject(failed(e instanceof BitcloudError ? e : err('LINK_INTERNAL', String(e), undefined, e)));
      }
    });
    const startInitiator = (): void => {
      new Channel({
        socket,
        reader,
        isInitiator: true,
        identity: opts.identity,
        expectedIdentity: opts.expectedIdentity,
        ownCertHash: creds ? creds.certHash : null,
        versions: opts.versions ?? SUPPORTED_LINK_VERSIONS,
        handshakeTimeoutMs: Math.max(1, timeoutMs - (Date.now() - started)),
        batchCells: opts.batchCells,
        highWaterMark: opts.highWaterMark,
        keepaliveMs: opts.keepaliveMs,
        livenessTimeoutMs: opts.livenessTimeoutMs,
        maxBufferedBytes: opts.maxBufferedBytes,
        metrics,
        log,
        onOpen: resolve,
        onFail: reject, // the Channel has counted it already
      });
    };
  });
}
