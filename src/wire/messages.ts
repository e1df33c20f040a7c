// Message bodies (SPEC.md §2.3–2.4, §2.7), declared together as encode/decode pairs.
// This file: cell bodies (VERSIONS, CREATE2, CREATED2, DESTROY) and circuit-level relay
// bodies (EXTEND2, EXTENDED2, TRUNCATE, TRUNCATED, SENDME). Stream bodies live in
// stream-messages.ts and are re-exported from here, so `messages` is the one import.
//
// Two framing rules (SPEC.md §2.7):
//  - A cell body is read from the 509-byte cell payload (or from the bare body); the bytes
//    after the body are padding, zero, and a receiver refuses any other (no hidden channel).
//  - A relay body is exactly the `length` bytes of relay data; trailing bytes are refused.
// Decoders copy what they keep (never views of the cell buffer) and throw only BitcloudError:
// MSG_TRUNCATED (a field runs past the end), MSG_MALFORMED (a bad value or length),
// MSG_UNSUPPORTED (a version this implementation does not speak).
import { err } from '../errors';
import { CELL_PAYLOAD_LEN } from './cell';
import { RELAY_DATA_MAX } from './relay-msg';
import { Reader, Writer, checkUint } from './bytes';
import { readLinkSpecifier, writeLinkSpecifier, type LinkSpecifier } from './link-specifier';

export * from './stream-messages';
export { LinkSpecType, ED25519_ID_LEN, type LinkSpecifier } from './link-specifier';

function bad(what: string, message: string): never {
  throw err('MSG_MALFORMED', `${what}: ${message}`, { message: what });
}

function checkBytes(v: unknown, max: number, what: string, field: string): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) bad(what, `${field} must be bytes`);
  if (v.length > max) bad(what, `${field} of ${v.length} bytes exceeds ${max}`);
}

// ---- VERSIONS (SPEC.md §2.3) -------------------------------------------------------------
/** (509 - 2) / 2: the most versions one VERSIONS cell lists. */
export const VERSIONS_MAX = 253;

/** count u16 | count × version u16. Versions are 1..65535; at least one. */
export function encodeVersions(versions: number[]): Buffer {
  if (!Array.isArray(versions) || versions.length < 1 || versions.length > VERSIONS_MAX) {
    bad('VERSIONS', `must list 1..${VERSIONS_MAX} versions`);
  }
  const w = new Writer(CELL_PAYLOAD_LEN, 'VERSIONS').u16(versions.length, 'count');
  for (const v of versions) {
    checkUint(v, 0xffff, 'VERSIONS', 'version');
    if (v === 0) bad('VERSIONS', 'version 0 does not exist');
    w.u16(v, 'version');
  }
  return w.finish();
}

export function decodeVersions(payload: Uint8Array): number[] {
  const r = new Reader(payload, 'VERSIONS');
  const n = r.u16('count');
  if (n < 1 || n > VERSIONS_MAX) bad('VERSIONS', `count ${n} outside 1..${VERSIONS_MAX}`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = r.u16('version');
    if (v === 0) bad('VERSIONS', 'version 0 does not exist');
    out.push(v);
  }
  r.zeroPadding();
  return out;
}

// ---- CREATE2 / CREATED2 / EXTENDED2 (SPEC.md §2.4, tor-spec 5.1) --------------------------
/** Handshake types (tor-spec 5.1). The codec carries any htype; the circuit layer picks. */
export const HandshakeType = {
  NTOR: 2,
  /** ntor with CGO relay crypto for the hop (SPEC.md §5.6.1): Bitcloud's own number. */
  NTOR_CGO: 0x0102,
} as const;

export interface Create2Body { htype: number; hdata: Buffer }
export interface Created2Body { hdata: Buffer }

/** htype u16 | hlen u16 | hdata [hlen]; hlen <= 505. */
export function encodeCreate2(body: { htype: number; hdata: Uint8Array }): Buffer {
  checkBytes(body.hdata, CELL_PAYLOAD_LEN - 4, 'CREATE2', 'hdata');
  return new Writer(CELL_PAYLOAD_LEN, 'CREATE2').u16(body.htype, 'htype').u16(body.hdata.length, 'hlen').bytes(body.hdata).finish();
}

export function decodeCreate2(payload: Uint8Array): Create2Body {
  const r = new Reader(payload, 'CREATE2');
  const htype = r.u16('htype');
  const hlen = r.u16('hlen');
  const hdata = r.bytes(hlen, 'hdata');
  r.zeroPadding();
  return { htype, hdata };
}

function writeCreated(what: string, max: number, body: { hdata: Uint8Array }): Buffer {
  checkBytes(body.hdata, max - 2, what, 'hdata');
  return new Writer(max, what).u16(body.hdata.length, 'hlen').bytes(body.hdata).finish();
}

function readCreated(what: string, bytes: Uint8Array, exact: boolean): Created2Body {
  const r = new Reader(bytes, what);
  const hlen = r.u16('hlen');
  const hdata = r.bytes(hlen, 'hdata');
  if (exact) r.end();
  else r.zeroPadding();
  return { hdata };
}

/** hlen u16 | hdata [hlen]; hlen <= 507. */
export function encodeCreated2(body: { hdata: Uint8Array }): Buffer {
  return writeCreated('CREATED2', CELL_PAYLOAD_LEN, body);
}
export function decodeCreated2(payload: Uint8Array): Created2Body {
  return readCreated('CREATED2', payload, false);
}

/** The CREATED2 layout as relay data: hlen u16 | hdata; hlen <= 496, nothing after. */
export function encodeExtended2(body: { hdata: Uint8Array }): Buffer {
  return writeCreated('EXTENDED2', RELAY_DATA_MAX, body);
}
export function decodeExtended2(data: Uint8Array): Created2Body {
  return readCreated('EXTENDED2', data, true);
}

// ---- DESTROY / TRUNCATED (SPEC.md §2.4.3, tor-spec 5.4) ----------------------------------
export const DestroyReason = {
  NONE: 0,
  PROTOCOL: 1,
  INTERNAL: 2,
  REQUESTED: 3,
  HIBERNATING: 4,
  RESOURCELIMIT: 5,
  CONNECTFAILED: 6,
  OR_IDENTITY: 7,
  CHANNEL_CLOSED: 8,
  FINISHED: 9,
  TIMEOUT: 10,
  DESTROYED: 11,
  NOSUCHSERVICE: 12,
} as const;
export type DestroyReasonValue = (typeof DestroyReason)[keyof typeof DestroyReason];

/**
 * reason u8. Any byte decodes: a DESTROY must tear the circuit down whatever its reason, and
 * tor-spec 5.4 asks receivers to accept reasons they do not know.
 */
export function encodeDestroy(reason: number): Buffer {
  return new Writer(1, 'DESTROY').u8(reason, 'reason').finish();
}
export function decodeDestroy(payload: Uint8Array): number {
  const r = new Reader(payload, 'DESTROY');
  const reason = r.u8('reason');
  r.zeroPadding();
  return reason;
}

/** TRUNCATE: empty body (tor-spec 5.4). */
export function encodeTruncate(): Buffer {
  return Buffer.alloc(0);
}
export function decodeTruncate(data: Uint8Array): void {
  new Reader(data, 'TRUNCATE').end();
}

/** TRUNCATED: reason u8 (a DestroyReason), nothing after. */
export function encodeTruncated(reason: number): Buffer {
  return new Writer(1, 'TRUNCATED').u8(reason, 'reason').finish();
}
export function decodeTruncated(data: Uint8Array): number {
  const r = new Reader(data, 'TRUNCATED');
  const reason = r.u8('reason');
  r.end();
  return reason;
}

// ---- EXTEND2 (SPEC.md §2.7.4, tor-spec 5.1.2) --------------------------------------------
export interface Extend2Body { linkSpecifiers: LinkSpecifier[]; htype: number; hdata: Buffer }

/**
 * SPEC.md §2.7.4: Bitcloud identities are Ed25519 only, so an EXTEND2 names exactly one
 * Ed25519 identity and at least one IPv4 or IPv6 address; otherwise the next hop could not be
 * reached or authenticated, and the message is refused here rather than deeper in the relay.
 */
function checkExtendTargets(specs: LinkSpecifier[]): void {
  const ids = specs.filter((s) => s.type === 'ed25519').length;
  if (ids !== 1) bad('EXTEND2', `needs exactly one Ed25519 identity specifier, has ${ids}`);
  if (!specs.some((s) => s.type === 'ipv4' || s.type === 'ipv6')) bad('EXTEND2', 'needs an IPv4 or IPv6 specifier');
}

/** nspec u8 | nspec × link specifier | htype u16 | hlen u16 | hdata [hlen]; all <= 498. */
export function encodeExtend2(body: { linkSpecifiers: LinkSpecifier[]; htype: number; hdata: Uint8Array }): Buffer {
  if (!Array.isArray(body.linkSpecifiers) || body.linkSpecifiers.length > 255) bad('EXTEND2', 'at most 255 link specifiers');
  checkExtendTargets(body.linkSpecifiers);
  checkBytes(body.hdata, RELAY_DATA_MAX, 'EXTEND2', 'hdata');
  const w = new Writer(RELAY_DATA_MAX, 'EXTEND2').u8(body.linkSpecifiers.length, 'nspec');
  for (const ls of body.linkSpecifiers) writeLinkSpecifier(w, ls);
  return w.u16(body.htype, 'htype').u16(body.hdata.length, 'hlen').bytes(body.hdata).finish();
}

export function decodeExtend2(data: Uint8Array): Extend2Body {
  const r = new Reader(data, 'EXTEND2');
  const n = r.u8('nspec');
  const linkSpecifiers: LinkSpecifier[] = [];
  for (let i = 0; i < n; i++) linkSpecifiers.push(readLinkSpecifier(r));
  checkExtendTargets(linkSpecifiers);
  const htype = r.u16('htype');
  const hlen = r.u16('hlen');
  const hdata = r.bytes(hlen, 'hdata');
  r.end();
  return { linkSpecifiers, htype, hdata };
}

// ---- SENDME (SPEC.md §2.7.5, tor-spec 7.4, proposal 289) ---------------------------------
export const SENDME_DIGEST_LEN = 20;
export type SendmeBody = { version: 0 } | { version: 1; digest: Buffer };

/**
 * v0: the empty body (what Tor sends for legacy and stream-level SENDMEs).
 * v1: version u8 = 1 | data_len u16 = 20 | digest [20]: the running digest of the cell it acknowledges.
 */
export function encodeSendme(body: { version: 0 } | { version: 1; digest: Uint8Array }): Buffer {
  if (body.version === 0) return Buffer.alloc(0);
  if (body.version !== 1) bad('SENDME', `version ${String((body as { version?: unknown }).version)} not encodable`);
  if (!(body.digest instanceof Uint8Array) || body.digest.length !== SENDME_DIGEST_LEN) bad('SENDME', `v1 digest must be ${SENDME_DIGEST_LEN} bytes`);
  return new Writer(3 + SENDME_DIGEST_LEN, 'SENDME').u8(1, 'version').u16(SENDME_DIGEST_LEN, 'data_len').bytes(body.digest).finish();
}

/**
 * Empty → v0. Otherwise version u8 | data_len u16 | data, exactly. v0 data is ignored (as Tor
 * does); v1 data must be 20 bytes; higher versions are MSG_UNSUPPORTED, because a v1 peer
 * must not be silently downgraded to an unauthenticated SENDME (proposal 289).
 */
export function decodeSendme(data: Uint8Array): SendmeBody {
  if (data.length === 0) return { version: 0 };
  const r = new Reader(data, 'SENDME');
  const version = r.u8('version');
  const len = r.u16('data_len');
  const body = r.bytes(len, 'data');
  r.end();
  if (version === 0) return { version: 0 };
  if (version !== 1) throw err('MSG_UNSUPPORTED', `SENDME version ${version} is not supported`, { message: 'SENDME', version });
  if (len !== SENDME_DIGEST_LEN) bad('SENDME', `v1 data_len must be ${SENDME_DIGEST_LEN}, got ${len}`);
  return { version: 1, digest: body };
}

/** DROP: long-range padding; its body is any bytes and is ignored (tor-spec 6.1). */
export function encodeDrop(length = 0): Buffer {
  checkUint(length, RELAY_DATA_MAX, 'DROP', 'length');
  return Buffer.alloc(length);
}
