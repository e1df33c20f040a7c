// SPEC.md §1.2 (links: TLS) and §1.3 (identity binding): the TLS-side crypto of a link.
// A link's certificate is a throw-away self-signed ECDSA P-256 certificate made at start-up;
// identity NEVER comes from it (SPEC.md §1.2, §1.3). What the identity binding needs from TLS —
// certificate hashes and the RFC 5705 / RFC 8446 §7.5 keying-material exporter — lives here,
// so that only src/crypto/ names a primitive (SPEC.md §11.4).
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { err } from '../errors';
import { sha256 } from './primitives';

/** SPEC.md §1.2: TLS 1.3 only, both sides. */
export const LINK_TLS_MIN_VERSION = 'TLSv1.3' as const;
export const LINK_TLS_MAX_VERSION = 'TLSv1.3' as const;

/** SPEC.md §1.3: the exporter label (ASCII, no NUL) for the identity-binding value. */
export const LINK_AUTH_EXPORTER_LABEL = 'EXPORTER-bitcloud-link-auth-v1';
/** SPEC.md §1.3: the domain-separation string that opens the signed bytes (ASCII, then one 0x00). */
export const LINK_AUTH_DOMAIN = 'bitcloud-link-auth-v1';
/** Length of the exported keying material and of every certificate hash. */
export const LINK_AUTH_EKM_LEN = 32;
export const CERT_HASH_LEN = 32;
/** Stands for "no certificate" (an anonymous initiator) in the signed bytes. */
export const NO_CERT_HASH: Buffer = Buffer.alloc(CERT_HASH_LEN);

/** What a TLS endpoint needs: PEM for node:tls, DER and its SHA-256 for the identity binding. */
export interface TlsCredentials {
  keyPem: string;
  certPem: string;
  certDer: Buffer;
  /** SHA-256 of certDer (SPEC.md §1.3 H_RESP / H_INIT). */
  certHash: Buffer;
}

/** SHA-256 of a certificate's DER encoding (SPEC.md §1.3). */
export function certificateHash(der: Uint8Array): Buffer {
  return sha256(der);
}

/** SHA-256 of the DER certificate the peer presented, or 32 zero bytes when it presented none. */
export function peerCertificateHash(socket: TLSSocket): Buffer {
  const peer = socket.getPeerX509Certificate();
  return peer ? certificateHash(peer.raw) : NO_CERT_HASH;
}

/**
 * SPEC.md §1.3: TLS-Exporter(LINK_AUTH_EXPORTER_LABEL, context = [role], 32).
 * Both ends of one TLS session get the same value; no other session does.
 */
export function exportLinkAuthValue(socket: TLSSocket, role: number): Buffer {
  try {
    return socket.exportKeyingMaterial(LINK_AUTH_EKM_LEN, LINK_AUTH_EXPORTER_LABEL, Buffer.from([role]));
  } catch (e) {
    throw err('LINK_TLS_FAILED', 'TLS keying-material exporter unavailable', undefined, e);
  }
}

// @peculiar/x509 depends on tsyringe, which refuses to load without a Reflect metadata polyfill.
// None is installed, and the certificate code needs only the tiny part tsyringe touches
// (define/get metadata for its @injectable classes), so provide exactly that — and only when no
// real polyfill is present. It must run before the library is first evaluated, hence the lazy import.
type MetaMap = Map<unknown, Map<string | symbol | undefined, unknown>>;
function installReflectMetadata(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R.getMetadata === 'function') return;
  const store = new WeakMap<object, MetaMap>();
  const own = (target: object, prop: string | symbol | undefined, create: boolean) => {
    let byKey = store.get(target);
    if (!byKey) { if (!create) return undefined; byKey = new Map(); store.set(target, byKey); }
    let byProp = byKey.get(prop);
    if (!byProp) { if (!create) return undefined; byProp = new Map(); byKey.set(prop, byProp); }
    return byProp;
  };
  const getOwn = (k: unknown, t: object, p?: string | symbol) => own(t, p, false)?.get(k as never);
  const get = (k: unknown, t: object, p?: string | symbol): unknown => {
    for (let o: object | null = t; o; o = Object.getPrototypeOf(o)) {
      const m = own(o, p, false);
      if (m?.has(k as never)) return m.get(k as never);
    }
    return undefined;
  };
  const define = (k: unknown, v: unknown, t: object, p?: string | symbol) => { own(t, p, true)!.set(k as never, v); };
  R.defineMetadata = define;
  R.getOwnMetadata = getOwn;
  R.getMetadata = get;
  R.hasOwnMetadata = (k: unknown, t: object, p?: string | symbol) => own(t, p, false)?.has(k as never) ?? false;
  R.hasMetadata = (k: unknown, t: object, p?: string | symbol) => get(k, t, p) !== undefined;
  R.metadata = (k: unknown, v: unknown) => (t: object, p?: string | symbol) => define(k, v, t, p);
}

let x509Module: Promise<typeof import('@peculiar/x509')> | undefined;
function loadX509(): Promise<typeof import('@peculiar/x509')> {
  if (!x509Module) {
    installReflectMetadata();
    x509Module = import('@peculiar/x509');
  }
  return x509Module;
}

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/**
 * SPEC.md §1.2: a fresh self-signed ECDSA P-256 / SHA-256 certificate with a random serial and a
 * fixed, uninformative subject. Made once at start-up (≈20 ms); it carries no identity.
 */
export async function generateTlsCredentials(opts: { validDays?: number } = {}): Promise<TlsCredentials> {
  const x509 = await loadX509();
  const subtle = webcrypto.subtle;
  type SelfSigned = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>;
  const keys = (await subtle.generateKey(ECDSA_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=bitcloud',
    keys: keys as unknown as SelfSigned[0]['keys'],
    signingAlgorithm: ECDSA_P256,
    // A day of slack either side of "now" so that peers with skewed clocks do not care
    // (nobody verifies it anyway: rejectUnauthorized is false, SPEC.md §1.2).
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + (opts.validDays ?? 365) * 86_400_000),
  }, webcrypto as unknown as SelfSigned[1]);
  const certDer = Buffer.from(cert.rawData);
  const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPem: pem('PRIVATE KEY', pkcs8), certPem: pem('CERTIFICATE', certDer), certDer, certHash: certificateHash(certDer) };
}

/** Parse-check a PEM certificate (used when credentials come from elsewhere). */
export function credentialsFromPem(keyPem: string, certPem: string): TlsCredentials {
  let certDer: Buffer;
  try {
    certDer = new NodeX509(certPem).raw;
  } catch (e) {
    throw err('LINK_TLS_FAILED', 'bad TLS certificate PEM', undefined, e);
  }
  return { keyPem, certPem, certDer, certHash: certificateHash(certDer) };
}
