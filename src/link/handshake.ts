// SPEC.md §1.3 (identity binding) and §1.4 (version negotiation): the pure half of the link
// handshake. Codecs and checks only; the Channel drives them in the order of SPEC.md §1.1.
import { err } from '../errors';
import { CELL_PAYLOAD_LEN } from '../wire/cell';
import {
  ED25519_PUBLIC_BYTES, ED25519_SIGNATURE_BYTES, constantTimeEqual, ed25519Sign, ed25519Verify,
  type Ed25519KeyPair,
} from '../crypto/primitives';
import { CERT_HASH_LEN, LINK_AUTH_DOMAIN, LINK_AUTH_EKM_LEN } from '../crypto/tls';

/** SPEC.md §1.3: who signs an AUTHENTICATE. Also the TLS exporter context byte. */
export const AuthRole = { RESPONDER: 0x01, INITIATOR: 0x02 } as const;
export type AuthRoleValue = (typeof AuthRole)[keyof typeof AuthRole];

/** SPEC.md §1.3: AUTH_TYPE 1 = Ed25519 signature over the TLS exporter and both certificate hashes. */
export const AUTH_TYPE_ED25519_EXPORTER = 0x0001;

/** SPEC.md §1.3, AUTHENTICATE payload layout (declared once; offsets derive from it). */
const A_TYPE = 0;                                     // u16 AUTH_TYPE
const A_ROLE = A_TYPE + 2;                            // u8  ROLE
const A_KEY_LEN = A_ROLE + 1;                         // u16 KEY_LEN = 32
const A_KEY = A_KEY_LEN + 2;                          // [32] IDENTITY
const A_SIG_LEN = A_KEY + ED25519_PUBLIC_BYTES;       // u16 SIG_LEN = 64
const A_SIG = A_SIG_LEN + 2;                          // [64] SIGNATURE
export const AUTHENTICATE_BODY_LEN = A_SIG + ED25519_SIGNATURE_BYTES; // 103; zero padding follows

export interface Authenticate {
  authType: number;
  role: AuthRoleValue;
  identity: Buffer;
  signature: Buffer;
}

/** What both ends of one TLS session agree on (SPEC.md §1.3). */
export interface TlsBinding {
  /** TLS-Exporter(label, context = [role], 32) for the role whose AUTHENTICATE is being made or checked. */
  exporterValue: Buffer;
  /** H_RESP: SHA-256 of the responder's certificate DER. */
  responderCertHash: Buffer;
  /** H_INIT: SHA-256 of the initiator's certificate DER, or 32 zero bytes if it presented none. */
  initiatorCertHash: Buffer;
}

const DOMAIN = Buffer.from(LINK_AUTH_DOMAIN + '\0', 'ascii');
export const AUTH_SIGNED_LEN = DOMAIN.length + 2 + 1 + ED25519_PUBLIC_BYTES + LINK_AUTH_EKM_LEN + 2 * CERT_HASH_LEN; // 153

/**
 * SPEC.md §1.3: the exact bytes an AUTHENTICATE signature covers:
 * "bitcloud-link-auth-v1" | 0x00 | AUTH_TYPE (u16) | ROLE (u8) | IDENTITY [32] | EKM [32] | H_RESP [32] | H_INIT [32].
 * The exporter value ties the signature to this one TLS session (a replayed or relayed
 * AUTHENTICATE fails on any other session); the role byte stops a reflection of the peer's own
 * AUTHENTICATE; the certificate hashes name the TLS keys both ends actually used.
 */
export function authSignedBytes(role: AuthRoleValue, identity: Uint8Array, b: TlsBinding): Buffer {
  if (identity.length !== ED25519_PUBLIC_BYTES || b.exporterValue.length !== LINK_AUTH_EKM_LEN
    || b.responderCertHash.length !== CERT_HASH_LEN || b.initiatorCertHash.length !== CERT_HASH_LEN) {
    throw err('LINK_AUTH_FAILED', 'identity binding inputs have the wrong lengths');
  }
  const out = Buffer.alloc(AUTH_SIGNED_LEN);
  let o = DOMAIN.copy(out, 0);
  o = out.writeUInt16BE(AUTH_TYPE_ED25519_EXPORTER, o);
  o = out.writeUInt8(role, o);
  o += Buffer.from(identity).copy(out, o);
  o += b.exporterValue.copy(out, o);
  o += b.responderCertHash.copy(out, o);
  b.initiatorCertHash.copy(out, o);
  return out;
}

/** Make the AUTHENTICATE payload (509 bytes) that proves `identity` on this TLS session. */
export function makeAuthenticate(role: AuthRoleValue, identity: Ed25519KeyPair, b: TlsBinding): Buffer {
  const signature = ed25519Sign(authSignedBytes(role, identity.publicKey, b), identity.secretKey);
  return encodeAuthenticate({ authType: AUTH_TYPE_ED25519_EXPORTER, role, identity: identity.publicKey, signature });
}

export function encodeAuthenticate(a: Authenticate): Buffer {
  const out = Buffer.alloc(CELL_PAYLOAD_LEN);
  out.writeUInt16BE(a.authType, A_TYPE);
  out.writeUInt8(a.role, A_ROLE);
  out.writeUInt16BE(a.identity.length, A_KEY_LEN);
  a.identity.copy(out, A_KEY);
  out.writeUInt16BE(a.signature.length, A_SIG_LEN);
  a.signature.copy(out, A_SIG);
  return out;
}

/**
 * Parse an AUTHENTICATE payload. Throws MSG_TRUNCATED (too short), MSG_MALFORMED on any layout
 * error (wrong key or signature length, unknown role, non-zero padding) — the codes of the other
 * cell bodies (src/wire/messages.ts) — and LINK_AUTH_FAILED on an unknown AUTH_TYPE.
 * The returned buffers are copies: the payload may be a reused view.
 */
export function decodeAuthenticate(payload: Uint8Array): Authenticate {
  const p = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  if (p.length < AUTHENTICATE_BODY_LEN) throw err('MSG_TRUNCATED', `AUTHENTICATE: body needs ${AUTHENTICATE_BODY_LEN} bytes, ${p.length} given`, { message: 'AUTHENTICATE' });
  const authType = p.readUInt16BE(A_TYPE);
  const role = p[A_ROLE];
  const keyLen = p.readUInt16BE(A_KEY_LEN);
  const sigLen = p.readUInt16BE(A_SIG_LEN);
  if (keyLen !== ED25519_PUBLIC_BYTES) throw err('MSG_MALFORMED', `AUTHENTICATE: key length ${keyLen}, want ${ED25519_PUBLIC_BYTES}`);
  if (sigLen !== ED25519_SIGNATURE_BYTES) throw err('MSG_MALFORMED', `AUTHENTICATE: signature length ${sigLen}, want ${ED25519_SIGNATURE_BYTES}`);
  if (role !== AuthRole.RESPONDER && role !== AuthRole.INITIATOR) throw err('MSG_MALFORMED', `AUTHENTICATE: role ${role}`);
  for (let i = AUTHENTICATE_BODY_LEN; i < p.length; i++) {
    if (p[i] !== 0) throw err('MSG_MALFORMED', 'AUTHENTICATE: padding after the body is not zero');
  }
  if (authType !== AUTH_TYPE_ED25519_EXPORTER) throw err('LINK_AUTH_FAILED', `unsupported AUTH_TYPE ${authType}`);
  return {
    authType,
    role,
    identity: Buffer.from(p.subarray(A_KEY, A_KEY + ED25519_PUBLIC_BYTES)),
    signature: Buffer.from(p.subarray(A_SIG, A_SIG + ED25519_SIGNATURE_BYTES)),
  };
}

/**
 * SPEC.md §1.3: check a peer's AUTHENTICATE. `expectedRole` is the peer's role; `b` carries the
 * exporter value computed with the peer's role as context. Returns the proven identity key.
 * Throws LINK_PROTOCOL_VIOLATION (wrong role), LINK_AUTH_FAILED (bad signature) or
 * LINK_IDENTITY_MISMATCH (a good signature by a key other than `expectedIdentity`).
 */
export function verifyAuthenticate(a: Authenticate, expectedRole: AuthRoleValue, b: TlsBinding, expectedIdentity?: Uint8Array): Buffer {
  if (a.role !== expectedRole) throw err('LINK_PROTOCOL_VIOLATION', `AUTHENTICATE with role ${a.role}, expected ${expectedRole}`);
  if (!ed25519Verify(a.signature, authSignedBytes(a.role, a.identity, b), a.identity)) {
    throw err('LINK_AUTH_FAILED', 'AUTHENTICATE signature does not verify');
  }
  if (expectedIdentity && !constantTimeEqual(a.identity, expectedIdentity)) {
    throw err('LINK_IDENTITY_MISMATCH', 'the peer proved an identity other than the expected one', {
      expected: Buffer.from(expectedIdentity).toString('hex'), got: a.identity.toString('hex'),
    });
  }
  return a.identity;
}

// ---- VERSIONS (SPEC.md §1.4) ----

/** Link protocol versions this implementation speaks, lowest first. */
export const SUPPORTED_LINK_VERSIONS: readonly number[] = [1];

// The VERSIONS body (u16 N, then N u16 versions, zero padding) is declared with the other cell
// bodies in src/wire/messages.ts (encodeVersions / decodeVersions: MSG_MALFORMED, MSG_TRUNCATED).

/** SPEC.md §1.4: the highest version both lists contain; LINK_NO_COMMON_VERSION if none. */
export function negotiateVersion(ours: readonly number[], theirs: readonly number[]): number {
  let best = -1;
  for (const v of theirs) if (v > best && ours.includes(v)) best = v;
  if (best < 0) throw err('LINK_NO_COMMON_VERSION', 'no link protocol version in common', { ours: [...ours], theirs: [...theirs] });
  return best;
}
