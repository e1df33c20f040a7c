// SPEC.md §9.13.2: the direct storage session, used by `--direct` (it reveals the client's address
// to the node). TLS 1.3 to the node's storage port (TCP), then the node proves its Ed25519
// identity exactly as a link responder does (SPEC.md §1.3: an AUTHENTICATE body signed over this
// TLS session's exporter value and both certificate hashes), behind an 8-byte magic; after that the
// TLS stream carries storage frames (§9.6.1) both ways. No cells, no circuit: the session is the
// plain TLS session of SPEC.md §9.13.2, and the identity binding is the one of SPEC.md §1.3.
import tls from 'node:tls';
import type net from 'node:net';
import { err, errorCode, isBitcloudError, type BitcloudError } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import {
  exportLinkAuthValue, generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION, NO_CERT_HASH,
  peerCertificateHash, type TlsCredentials,
} from '../crypto/tls';
import { AuthRole, decodeAuthenticate, makeAuthenticate, verifyAuthenticate } from '../link/handshake';
import { CELL_PAYLOAD_LEN } from '../wire/cell';
import { silentLogger, type Logger } from '../ops/log';
import { clientAddressKey } from '../dir/answer-places';

/** SPEC.md §9.13.2: the node's first bytes on a direct session: magic, then the AUTHENTICATE body. */
export const DIRECT_MAGIC = Buffer.from('BCSTORE1', 'ascii');
export const DIRECT_HELLO_BYTES = DIRECT_MAGIC.length + CELL_PAYLOAD_LEN;
export const DEFAULT_DIRECT_TIMEOUT_MS = 10_000;
/** SPEC.md §9.13.2: a direct session on which no byte moved either way for this long is closed by the node. */
export const DEFAULT_DIRECT_IDLE_MS = 60_000;
/** SPEC.md §9.13.2: open direct sessions (handshaking ones too) one client address key may hold. */
export const DEFAULT_DIRECT_SESSIONS_PER_ADDRESS = 16;
/** SPEC.md §9.13.2: a request on a direct session not received in full this long after its first byte closes the session. */
export const DEFAULT_DIRECT_REQUEST_MS = 120_000;
/** SPEC.md §9.13.2: why the node closed a direct session (the reason label of its metric). */
export type DirectCloseReason = 'per_address' | 'idle' | 'request_deadline';

export interface ConnectStorageDirectOptions {
  host: string;
  port: number;
  /** The node's identity key from the consensus; anything else ⇒ LINK_IDENTITY_MISMATCH. */
  expectedIdentity: Buffer;
  /** Bound on TCP connect + TLS + the node's proof. Default 10 s. */
  timeoutMs?: number;
}

/**
 * Open a direct storage session. Resolves with the TLS socket, positioned after the node's hello,
 * ready for storage frames; rejects with LINK_CONNECT_FAILED, LINK_TLS_FAILED,
 * LINK_HANDSHAKE_TIMEOUT, LINK_PROTOCOL_VIOLATION (no storage hello), MSG_* / LINK_AUTH_FAILED
 * (bad proof) or LINK_IDENTITY_MISMATCH — never leaving a socket open when it rejects.
 */
export function connectStorageDirect(o: ConnectStorageDirectOptions): Promise<tls.TLSSocket> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_DIRECT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    // SPEC.md §1.2 as for links: the certificate chain is never checked (identity comes from the
    // hello), and the client, being anonymous, presents no certificate.
    const socket = tls.connect({ host: o.host, port: o.port, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION, rejectUnauthorized: false });
    let settled = false;
    let responderCertHash: Buffer = NO_CERT_HASH;
    const fail = (e: BitcloudError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(err('LINK_HANDSHAKE_TIMEOUT', `storage node did not prove its identity within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (e: NodeJS.ErrnoException) => {
      fail(err(socket.connecting || e.syscall === 'connect' ? 'LINK_CONNECT_FAILED' : 'LINK_TLS_FAILED', e.code ?? e.message, { errno: e.code }, e));
    });
    socket.on('close', () => fail(err('LINK_TLS_FAILED', 'connection closed before the storage hello')));
    socket.once('secureConnect', () => {
      if (socket.getProtocol() !== LINK_TLS_MIN_VERSION) { fail(err('LINK_TLS_FAILED', `negotiated ${socket.getProtocol()}, need TLS 1.3`)); return; }
      // Read once, right after the handshake (a later NewSessionTicket may hide it).
      responderCertHash = peerCertificateHash(socket);
    });
    // Paused-mode reading ('readable' + read(n)): the bytes after the hello stay buffered, and once
    // this listener is gone the socket flows again for whoever attaches 'data'.
    const onReadable = () => {
      if (settled) return;
      const hello = socket.read(DIRECT_HELLO_BYTES) as Buffer | null;
      if (hello === null) return;
      socket.off('readable', onReadable);
      try {
        if (hello.length < DIRECT_HELLO_BYTES || !hello.subarray(0, DIRECT_MAGIC.length).equals(DIRECT_MAGIC)) {
          throw err('LINK_PROTOCOL_VIOLATION', 'the peer did not send a storage hello');
        }
        const a = decodeAuthenticate(hello.subarray(DIRECT_MAGIC.length));
        verifyAuthenticate(a, AuthRole.RESPONDER, {
          exporterValue: exportLinkAuthValue(socket, AuthRole.RESPONDER), responderCertHash, initiatorCertHash: NO_CERT_HASH,
        }, o.expectedIdentity);
      } catch (e) {
        fail(isBitcloudError(e) ? e : err('LINK_AUTH_FAILED', String(e)));
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      socket.on('error', () => { /* the session owner sees the close */ });
      resolve(socket);
    };
    socket.on('readable', onReadable);
  });
}

export interface StorageDirectListenerOptions {
  host: string;
  /** TCP port (0 = any free port; read it back from `.port`). */
  port: number;
  identity: Ed25519KeyPair;
  /** Called with each session after the hello was sent; it owns the socket from then on. */
  onSession: (socket: tls.TLSSocket) => void;
  /** Default: a fresh self-signed certificate made now (SPEC.md §1.2). */
  tls?: TlsCredentials;
  /** Bound on the TLS handshake. Default 10 s. */
  timeoutMs?: number;
  /** Close a session on which no byte moved either way this long. Default 60 s. */
  idleTimeoutMs?: number;
  maxConnections?: number;
  /** Connections one address key may hold (counted from the TCP accept). Default 16. */
  maxPerAddress?: number;
  /** The per-address key of a connection; null: under no per-address limit. Default clientAddressKey. */
  addressKey?: (remote: string | undefined, local: string | undefined) => string | null;
  /** A connection the listener closed: past the per-address cap, or idle (metrics). */
  onClosed?: (reason: DirectCloseReason) => void;
  /** Failed handshakes, by code (metrics). */
  onError?: (code: string) => void;
  log?: Logger;
}

export class StorageDirectListener {
  private readonly sockets = new Set<net.Socket>();
  /** Connections open now per address key; a key holding none is absent. */
  private readonly perAddress = new Map<string, number>();
  private closing: Promise<void> | null = null;

  /** @internal Use createStorageDirectListener. */
  constructor(
    private readonly server: tls.Server, readonly port: number,
    private readonly maxPerAddress: number,
    private readonly addressKey: (remote: string | undefined, local: string | undefined) => string | null,
  ) {}

  /**
   * @internal SPEC.md §9.13.2: a TCP connection just accepted, before TLS. It takes a place under
   * its address key until it closes, or, past the cap, is closed at once (false).
   */
  track(s: net.Socket): boolean {
    const key = this.addressKey(s.remoteAddress, s.localAddress);
    if (key !== null) {
      const n = this.perAddress.get(key) ?? 0;
      if (n >= this.maxPerAddress) { s.destroy(); return false; }
      this.perAddress.set(key, n + 1);
    }
    this.sockets.add(s);
    s.once('close', () => {
      this.sockets.delete(s);
      if (key === null) return;
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left > 0) this.perAddress.set(key, left); else this.perAddress.delete(key);
    });
    return true;
  }

  /** Address keys holding a connection now. */
  get addressCount(): number { return this.perAddress.size; }

  /** TCP connections open now (handshaking or in a session). */
  get connectionCount(): number { return this.sockets.size; }

  /** Stop accepting, close every session at once, resolve when the port is free. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    return this.closing;
  }
}

export async function createStorageDirectListener(o: StorageDirectListenerOptions): Promise<StorageDirectListener> {
  const log = o.log ?? silentLogger;
  const creds = o.tls ?? await generateTlsCredentials();
  const server = tls.createServer({
    key: creds.keyPem, cert: creds.certPem, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION,
    // The initiator of a direct session is always an anonymous client: no certificate is asked for.
    requestCert: false, handshakeTimeout: o.timeoutMs ?? DEFAULT_DIRECT_TIMEOUT_MS,
  });
  if (o.maxConnections !== undefined) server.maxConnections = o.maxConnections;
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: NodeJS.ErrnoException) => reject(err('LINK_LISTEN_FAILED', `cannot listen on ${o.host}:${o.port}: ${e.code ?? e.message}`, { errno: e.code }, e));
    server.once('error', onErr);
    server.listen(o.port, o.host, () => { server.off('error', onErr); resolve(); });
  });
  server.on('error', (e) => log.warn({ err: e.message }, 'storage listener error'));
  const addr = server.address();
  const listener = new StorageDirectListener(server, typeof addr === 'object' && addr ? addr.port : o.port,
    o.maxPerAddress ?? DEFAULT_DIRECT_SESSIONS_PER_ADDRESS, o.addressKey ?? clientAddressKey);
  // SPEC.md §9.13.2: the per-address cap is taken at accept, before any TLS work.
  // A refused connection is closed under its TLS socket, which the TLS server reports as one
  // failed handshake (ECONNRESET): that many hang-ups are ours, counted only as the per-address
  // closes they are (as the link listener does, src/link/listener.ts).
  let refusedHangups = 0;
  server.on('connection', (s: net.Socket) => {
    if (!listener.track(s)) { refusedHangups++; o.onClosed?.('per_address'); }
  });
  server.on('tlsClientError', (e: NodeJS.ErrnoException, s: tls.TLSSocket) => {
    if (e.code === 'ECONNRESET' && refusedHangups > 0) { refusedHangups--; s.destroy(); return; }
    // Garbage or a stalled handshake on the storage port costs that one connection only.
    o.onError?.(e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'LINK_HANDSHAKE_TIMEOUT' : 'LINK_TLS_FAILED');
    log.debug({ reason: e.code ?? e.message }, 'storage session TLS handshake failed');
    s.destroy();
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    socket.on('error', () => { /* the session owner, or the close below, handles it */ });
    try {
      if (socket.isSessionReused()) throw err('LINK_TLS_FAILED', 'resumed TLS session');
      const proof = makeAuthenticate(AuthRole.RESPONDER, o.identity, {
        exporterValue: exportLinkAuthValue(socket, AuthRole.RESPONDER), responderCertHash: creds.certHash,
        initiatorCertHash: peerCertificateHash(socket),
      });
      socket.write(Buffer.concat([DIRECT_MAGIC, proof]));
      // SPEC.md §9.13.2: no byte in or out for the idle time closes the session.
      socket.setTimeout(o.idleTimeoutMs ?? DEFAULT_DIRECT_IDLE_MS, () => { o.onClosed?.('idle'); socket.destroy(); });
      o.onSession(socket);
    } catch (e) {
      o.onError?.(errorCode(e));
      socket.destroy();
    }
  });
  log.info({ port: listener.port }, 'storage listener up');
  return listener;
}
