// SPEC.md §9.6: the storage protocol's requests and responses (storage.proto Request/Response), as
// typed values. Decoders check every field: a decoded request is safe to hand to the store.
import { err, isBitcloudError, isErrorCode, BitcloudError, type ErrorCode } from '../errors';
import { Blake2bHasher, blake2b } from '../crypto/primitives';
import { bytes, checkFields, decodeProto, encodeProto, list, msg, pb, str, u32, u64, varint, type Loose } from './proto';
import type { Field, Type } from 'protobufjs';
import { encodeFrame, FRAME_HEADER_BYTES, frameHeader } from './framing';
import { MAX_SHARE_BYTES, SHARE_ID_BYTES, hashInPieces } from './share';
import { MAX_AUDIT_BLOCKS } from './audit';

export const MAX_IDS_PER_REQUEST = 1024;
export const AUDIT_NONCE_MIN_BYTES = 16;
export const AUDIT_NONCE_MAX_BYTES = 64;
export const MAX_ERROR_MESSAGE_CHARS = 1024;
/**
 * SPEC.md §9.6.2: the largest request other than a put. The largest legitimate one, a has or renew
 * of 1024 ids, is about 35 000 bytes (34 bytes an id); a DhtPut about 1200, a challenge about 200.
 */
export const MAX_SMALL_REQUEST_BYTES = 64 * 1024;
/** Request.put (storage.proto): the one body a frame above MAX_SMALL_REQUEST_BYTES may carry. */
const REQUEST_PUT_FIELD = 2;
/** Request.id (storage.proto). */
const REQUEST_ID_FIELD = 1;
/** BEP 44 limits (SPEC.md §9.14.1): k 32 bytes, salt at most 64, v below 1000, sig 64. */
export const DHT_KEY_BYTES = 32;
export const DHT_MAX_SALT_BYTES = 64;
export const DHT_MAX_VALUE_BYTES = 999;
export const DHT_SIG_BYTES = 64;
/** Largest audit answer: 16 blocks of 4096 bytes with 32-deep paths, plus headers (SPEC.md §9.17.3). */
export const MAX_AUDIT_ANSWER_BYTES = 76 + MAX_AUDIT_BLOCKS * (4 + 2 + 4096 + 1 + 32 * 32);
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

export type StorageRequest =
  | { type: 'put'; id: Buffer; data: Buffer; leaseSeconds: number; contentClass?: string }
  | { type: 'get'; id: Buffer; offset: number; length: number }
  | { type: 'has'; ids: Buffer[] }
  | { type: 'audit'; id: Buffer; nonce: Buffer }
  | { type: 'stat' }
  | { type: 'renew'; ids: Buffer[]; leaseSeconds: number }
  | { type: 'dhtGet'; publisher: Buffer; salt: Buffer }
  | { type: 'dhtPut'; item: DhtItem }
  /** SPEC.md §9.14.1: a BEP 44 immutable item (target = SHA-1 of its bencoding), e.g. a policy part (§10.7.2). */
  | { type: 'dhtPut'; immutable: Buffer }
  | { type: 'challenge'; id: Buffer; nonce: Buffer; blocks: number[] };

/** A BEP 44 mutable item as it crosses a storage stream (SPEC.md §9.14.1). */
export interface DhtItem { publisher: Buffer; salt: Buffer; value: Buffer; seq: number; sig: Buffer }

export type StorageResponse =
  | { type: 'put'; expiresAt: number }
  | { type: 'get'; offset: number; data: Buffer; totalSize: number }
  | { type: 'has'; present: boolean[] }
  | { type: 'audit'; proof: Buffer }
  | { type: 'stat'; capacity: number; used: number; shares: number; maxLeaseSeconds: number; maxShareBytes: number }
  | { type: 'renew'; expiresAt: number[] }
  | { type: 'dhtGet'; item: DhtItem | null }
  | { type: 'dhtPut'; nodes: number }
  | { type: 'challenge'; answer: Buffer }
  | { type: 'error'; code: string; message: string };

export type RequestType = StorageRequest['type'];

/** The audit proof (SPEC.md §9.6.3): BLAKE2b-256(nonce | share bytes). */
export function auditProof(nonce: Uint8Array, share: Uint8Array): Buffer {
  return blake2b([nonce, share], 32);
}

/** auditProof, hashing the share in pieces with turns of the event loop between them (a node's side, SPEC.md §9.17.2). */
export async function auditProofInPieces(nonce: Uint8Array, share: Uint8Array): Promise<Buffer> {
  const h = new Blake2bHasher(32).update(nonce);
  await hashInPieces(h, share);
  return h.digest();
}

// ---- requests ----

export function encodeRequest(reqId: number, req: StorageRequest): Buffer {
  const body: Loose = { id: reqId };
  switch (req.type) {
    case 'put': body.put = { id: req.id, data: req.data, leaseSeconds: req.leaseSeconds, ...(req.contentClass ? { contentClass: req.contentClass } : {}) }; break;
    case 'get': body.get = { id: req.id, offset: req.offset, length: req.length }; break;
    case 'has': body.has = { ids: req.ids }; break;
    case 'audit': body.audit = { id: req.id, nonce: req.nonce }; break;
    case 'stat': body.stat = {}; break;
    case 'renew': body.renew = { ids: req.ids, leaseSeconds: req.leaseSeconds }; break;
    case 'dhtGet': body.dhtGet = { publisher: req.publisher, salt: req.salt }; break;
    case 'dhtPut': body.dhtPut = 'immutable' in req ? { value: req.immutable } : itemFields(req.item); break;
    case 'challenge': body.auditChallenge = { id: req.id, nonce: req.nonce, blocks: req.blocks }; break;
  }
  return encodeProto(pb.Request, body);
}

const BAD_REQ = 'STORAGE_BAD_REQUEST';

function itemFields(i: DhtItem): Loose {
  return { publisher: i.publisher, salt: i.salt, value: i.value, seq: i.seq, sig: i.sig };
}

function dhtKey(v: unknown, code: ErrorCode): Buffer {
  const k = bytes(v, code, 'publisher');
  if (k.length !== DHT_KEY_BYTES) throw err(code, `publisher must be ${DHT_KEY_BYTES} bytes`);
  return k;
}

function dhtSalt(v: unknown, code: ErrorCode): Buffer {
  const s = bytes(v, code, 'salt');
  if (s.length > DHT_MAX_SALT_BYTES) throw err(code, `salt must be at most ${DHT_MAX_SALT_BYTES} bytes`);
  return s;
}

/** The fields of a DhtPut or a found DhtGetOk, each within its BEP 44 limit. */
function dhtItem(m: Loose, code: ErrorCode): DhtItem {
  const value = bytes(m.value, code, 'value');
  if (value.length < 1 || value.length > DHT_MAX_VALUE_BYTES) throw err(code, `value must be 1..${DHT_MAX_VALUE_BYTES} bytes`);
  const sig = bytes(m.sig, code, 'sig');
  if (sig.length !== DHT_SIG_BYTES) throw err(code, `sig must be ${DHT_SIG_BYTES} bytes`);
  return { publisher: dhtKey(m.publisher, code), salt: dhtSalt(m.salt, code), value, seq: u64(m.seq, code, 'seq'), sig };
}

function id32(v: unknown, code: ErrorCode, field = 'id'): Buffer {
  const b = bytes(v, code, field);
  if (b.length !== SHARE_ID_BYTES) throw err(code, `${field} must be ${SHARE_ID_BYTES} bytes`);
  return b;
}

function idList(v: unknown, code: ErrorCode): Buffer[] {
  const l = list(v);
  if (l.length < 1 || l.length > MAX_IDS_PER_REQUEST) throw err(code, `between 1 and ${MAX_IDS_PER_REQUEST} ids per request`, { count: l.length });
  return l.map((x) => id32(x, code, 'ids'));
}

function offsetField(v: unknown, code: ErrorCode, field: string): number {
  const n = u64(v, code, field);
  if (n > MAX_SHARE_BYTES) throw err(code, `${field} beyond the largest share`);
  return n;
}

/**
 * Decode a request. Anything invalid → STORAGE_BAD_REQUEST, whose detail carries `reqId` when the id
 * itself could be read, so the error response can still be matched by the requester.
 */
export function decodeRequest(b: Uint8Array): { reqId: number; req: StorageRequest } {
  scanRequest(b);
  const m = decodeProto(pb.Request, b, BAD_REQ);
  const reqId = u32(m.id, BAD_REQ, 'id');
  try {
    return { reqId, req: requestBody(m) };
  } catch (e) {
    if (isBitcloudError(e)) throw err(e.code, e.message.replace(/^[A-Z_]+: /, ''), { ...e.detail, reqId });
    throw e;
  }
}

/**
 * SPEC.md §9.6.2: the most entries a repeated field of a request carries. A repeated field not
 * listed here may not appear at all, so a new one cannot be added to storage.proto unbounded.
 */
const REPEATED_FIELD_BOUNDS: Readonly<Record<string, number>> = {
  'Has.ids': MAX_IDS_PER_REQUEST,
  'Renew.ids': MAX_IDS_PER_REQUEST,
  'AuditChallenge.blocks': MAX_AUDIT_BLOCKS,
};

function requestFieldBound(f: Field): number {
  return f.repeated ? (REPEATED_FIELD_BOUNDS[`${f.parent?.name ?? ''}.${f.name}`] ?? 0) : 1;
}

/**
 * SPEC.md §9.6.2: every request frame is scanned with protobufjs's Reader before it is decoded, in
 * one walk: `id` and the one body at most once, each field of the body at most once, and a repeated
 * one at most its bound (1024 ids, 16 blocks); else STORAGE_BAD_REQUEST, nothing decoded. Decoding
 * first made objects of every empty `stat` body or `has` id of a 64 KiB frame, tens of milliseconds
 * of a node's event loop per frame, only to refuse them; a legitimate request has a handful of fields.
 *
 * A frame above MAX_SMALL_REQUEST_BYTES is a put or nothing: in the same walk, each of its top-level
 * fields is checked before it is counted or its body read, and one naming any other body (or an
 * unknown field), or `id` or `put` a second time, stops the walk → STORAGE_BAD_REQUEST, so a hostile
 * requester cannot make the node read megabytes of, say, packed audit block indices (or millions of
 * empty put bodies) only to refuse them.
 */
function scanRequest(b: Uint8Array): void {
  const large = b.length > MAX_SMALL_REQUEST_BYTES;
  let reqId: number | undefined;
  let ids = 0;
  let puts = 0;
  try {
    checkFields(pb.Request, b, BAD_REQ, requestFieldBound, (field, v) => {
      if (field === REQUEST_ID_FIELD && v !== null && reqId === undefined) reqId = v;
      if (!large) return;
      if (field === REQUEST_ID_FIELD && v !== null && ++ids === 1) return;
      if (field === REQUEST_PUT_FIELD && ++puts === 1) return;
      throw err(BAD_REQ, `a request other than a put is at most ${MAX_SMALL_REQUEST_BYTES} bytes, and a put names id and put once`, { len: b.length, field });
    });
  } catch (e) {
    if (reqId !== undefined && isBitcloudError(e)) throw err(e.code, e.message.replace(/^[A-Z_]+: /, ''), { ...e.detail, reqId });
    throw e;
  }
}

function requestBody(m: Loose): StorageRequest {
  switch (m.body) {
    case 'put': {
      const p = msg(m.put)!;
      const data = bytes(p.data, BAD_REQ, 'data');
      if (data.length < 1 || data.length > MAX_SHARE_BYTES) throw err(BAD_REQ, `share must be 1..${MAX_SHARE_BYTES} bytes`, { len: data.length });
      // SPEC.md §10.1: the declared moderation class; empty means encrypted-private.
      const contentClass = str(p.contentClass, BAD_REQ, 'content_class');
      if (contentClass !== '' && !/^[a-z0-9][a-z0-9-]{0,63}$/.test(contentClass)) throw err(BAD_REQ, 'content_class must match [a-z0-9][a-z0-9-]{0,63}');
      return { type: 'put', id: id32(p.id, BAD_REQ), data, leaseSeconds: u32(p.leaseSeconds, BAD_REQ, 'lease_seconds'), ...(contentClass ? { contentClass } : {}) };
    }
    case 'get': {
      const g = msg(m.get)!;
      return { type: 'get', id: id32(g.id, BAD_REQ), offset: offsetField(g.offset, BAD_REQ, 'offset'), length: offsetField(g.length, BAD_REQ, 'length') };
    }
    case 'has':
      return { type: 'has', ids: idList(msg(m.has)!.ids, BAD_REQ) };
    case 'audit': {
      const a = msg(m.audit)!;
      const nonce = bytes(a.nonce, BAD_REQ, 'nonce');
      if (nonce.length < AUDIT_NONCE_MIN_BYTES || nonce.length > AUDIT_NONCE_MAX_BYTES) {
        throw err(BAD_REQ, `audit nonce must be ${AUDIT_NONCE_MIN_BYTES}..${AUDIT_NONCE_MAX_BYTES} bytes`);
      }
      return { type: 'audit', id: id32(a.id, BAD_REQ), nonce };
    }
    case 'stat':
      return { type: 'stat' };
    case 'renew': {
      const r = msg(m.renew)!;
      return { type: 'renew', ids: idList(r.ids, BAD_REQ), leaseSeconds: u32(r.leaseSeconds, BAD_REQ, 'lease_seconds') };
    }
    case 'dhtGet': {
      const g = msg(m.dhtGet)!;
      return { type: 'dhtGet', publisher: dhtKey(g.publisher, BAD_REQ), salt: dhtSalt(g.salt, BAD_REQ) };
    }
    case 'dhtPut': {
      const d = msg(m.dhtPut)!;
      // No publisher and no signature: an immutable item (SPEC.md §9.14.1); then no salt or seq either.
      // (protobufjs gives an absent bytes field as an empty array.)
      const absent = (v: unknown) => v === undefined || v === null || (Array.isArray(v) && v.length === 0) || (v instanceof Uint8Array && v.length === 0);
      if (absent(d.publisher) && absent(d.sig)) {
        if (!absent(d.salt) || u64(d.seq, BAD_REQ, 'seq') !== 0) throw err(BAD_REQ, 'an immutable DhtPut carries no salt or seq');
        const value = bytes(d.value, BAD_REQ, 'value');
        if (value.length < 1 || value.length > DHT_MAX_VALUE_BYTES) throw err(BAD_REQ, `value must be 1..${DHT_MAX_VALUE_BYTES} bytes`);
        return { type: 'dhtPut', immutable: value };
      }
      return { type: 'dhtPut', item: dhtItem(d, BAD_REQ) };
    }
    case 'auditChallenge': {
      // SPEC.md §9.17.2: the nonce as for `audit`; 1..16 strictly ascending block indices.
      const a = msg(m.auditChallenge)!;
      const nonce = bytes(a.nonce, BAD_REQ, 'nonce');
      if (nonce.length < AUDIT_NONCE_MIN_BYTES || nonce.length > AUDIT_NONCE_MAX_BYTES) {
        throw err(BAD_REQ, `audit nonce must be ${AUDIT_NONCE_MIN_BYTES}..${AUDIT_NONCE_MAX_BYTES} bytes`);
      }
      // Counted before any entry is read.
      const named = list(a.blocks);
      if (named.length < 1 || named.length > MAX_AUDIT_BLOCKS) throw err(BAD_REQ, `an audit challenge names 1..${MAX_AUDIT_BLOCKS} blocks`, { count: named.length });
      const blocks = named.map((x) => u32(x, BAD_REQ, 'blocks'));
      if (blocks.some((b, j) => j > 0 && b <= blocks[j - 1])) throw err(BAD_REQ, 'audit blocks must be strictly ascending');
      return { type: 'challenge', id: id32(a.id, BAD_REQ), nonce, blocks };
    }
    default:
      throw err(BAD_REQ, 'request has no known body');
  }
}

// ---- responses ----

export function encodeResponse(reqId: number, res: StorageResponse): Buffer {
  const body: Loose = { id: reqId };
  switch (res.type) {
    case 'put': body.put = { expiresAt: res.expiresAt }; break;
    case 'get': body.get = { offset: res.offset, data: res.data, totalSize: res.totalSize }; break;
    case 'has': body.has = { present: res.present }; break;
    case 'audit': body.audit = { proof: res.proof }; break;
    case 'stat': body.stat = { capacity: res.capacity, used: res.used, shares: res.shares, maxLeaseSeconds: res.maxLeaseSeconds, maxShareBytes: res.maxShareBytes }; break;
    case 'renew': body.renew = { expiresAt: res.expiresAt }; break;
    case 'dhtGet': body.dhtGet = res.item ? { found: true, ...itemFields(res.item) } : { found: false }; break;
    case 'dhtPut': body.dhtPut = { nodes: res.nodes }; break;
    case 'challenge': body.auditChallenge = { answer: res.answer }; break;
    case 'error': body.error = { code: res.code, message: res.message }; break;
  }
  return encodeProto(pb.Response, body);
}

const BAD_RES = 'STORAGE_BAD_RESPONSE';

/**
 * One frame (SPEC.md §9.6.1: u32 length | body) of a message whose body has a large `data` field
 * (field 2 of `inner`, itself field `outerField` of Request/Response), built with a single copy of
 * the data (not empty: protobufjs leaves empty bytes out): the same bytes as encodeFrame(encodeProto(…)), where protobufjs would copy the data
 * into its buffer and the stream would copy header and body once more into one buffer.
 */
function dataFrame(outer: Loose, outerType: Type, outerField: number, innerType: Type, before: Loose, data: Buffer, after: Loose): Buffer {
  // Fields are written in field-number order, so the message is head | field 2 | tail.
  const head = encodeProto(outerType, outer);
  const innerHead = encodeProto(innerType, before);
  const dataLen = varint(data.length);
  const innerTail = encodeProto(innerType, after);
  const innerLen = innerHead.length + 1 + dataLen.length + data.length + innerTail.length;
  const innerLenV = varint(innerLen);
  const bodyLen = head.length + 1 + innerLenV.length + innerLen;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyLen);
  let o = frameHeader(bodyLen).copy(out, 0);
  o += head.copy(out, o);
  out[o++] = (outerField << 3) | 2;
  o += innerLenV.copy(out, o);
  o += innerHead.copy(out, o);
  out[o++] = (2 << 3) | 2;
  o += dataLen.copy(out, o);
  o += data.copy(out, o);
  innerTail.copy(out, o);
  return out;
}

/** A request as one whole frame: header and encodeRequest's body; a put's share is copied once. */
export function encodeRequestFrame(reqId: number, req: StorageRequest): Buffer {
  if (req.type !== 'put' || req.data.length === 0) return encodeFrame(encodeRequest(reqId, req));
  return dataFrame({ id: reqId }, pb.Request, 2, pb.PutShare, { id: req.id }, req.data,
    { leaseSeconds: req.leaseSeconds, ...(req.contentClass ? { contentClass: req.contentClass } : {}) });
}

/** A response as one whole frame: header and encodeResponse's body; a get's data is copied once. */
export function encodeResponseFrame(reqId: number, res: StorageResponse): Buffer {
  if (res.type !== 'get' || res.data.length === 0) return encodeFrame(encodeResponse(reqId, res));
  return dataFrame({ id: reqId }, pb.Response, 3, pb.GetOk, { offset: res.offset }, res.data, { totalSize: res.totalSize });
}

/** Decode a response (client side). Anything invalid → STORAGE_BAD_RESPONSE. */
export function decodeResponse(b: Uint8Array): { reqId: number; res: StorageResponse } {
  const m = decodeProto(pb.Response, b, BAD_RES);
  return { reqId: u32(m.id, BAD_RES, 'id'), res: responseBody(m) };
}

function responseBody(m: Loose): StorageResponse {
  switch (m.body) {
    case 'put':
      return { type: 'put', expiresAt: u64(msg(m.put)!.expiresAt, BAD_RES, 'expires_at') };
    case 'get': {
      const g = msg(m.get)!;
      const data = bytes(g.data, BAD_RES, 'data');
      if (data.length > MAX_SHARE_BYTES) throw err(BAD_RES, 'share data too large');
      return { type: 'get', offset: u64(g.offset, BAD_RES, 'offset'), data, totalSize: u64(g.totalSize, BAD_RES, 'total_size') };
    }
    case 'has': {
      const present = list(msg(m.has)!.present);
      if (present.length > MAX_IDS_PER_REQUEST || present.some((p) => typeof p !== 'boolean')) throw err(BAD_RES, 'bad HAS answer');
      return { type: 'has', present: present as boolean[] };
    }
    case 'audit': {
      const proof = bytes(msg(m.audit)!.proof, BAD_RES, 'proof');
      if (proof.length !== 32) throw err(BAD_RES, 'audit proof must be 32 bytes');
      return { type: 'audit', proof };
    }
    case 'stat': {
      const s = msg(m.stat)!;
      return {
        type: 'stat', capacity: u64(s.capacity, BAD_RES, 'capacity'), used: u64(s.used, BAD_RES, 'used'), shares: u64(s.shares, BAD_RES, 'shares'),
        maxLeaseSeconds: u32(s.maxLeaseSeconds, BAD_RES, 'max_lease_seconds'), maxShareBytes: u32(s.maxShareBytes, BAD_RES, 'max_share_bytes'),
      };
    }
    case 'renew': {
      const l = list(msg(m.renew)!.expiresAt);
      if (l.length > MAX_IDS_PER_REQUEST) throw err(BAD_RES, 'bad RENEW answer');
      return { type: 'renew', expiresAt: l.map((x) => u64(x, BAD_RES, 'expires_at')) };
    }
    case 'dhtGet': {
      const g = msg(m.dhtGet)!;
      return { type: 'dhtGet', item: g.found === true ? dhtItem(g, BAD_RES) : null };
    }
    case 'dhtPut':
      return { type: 'dhtPut', nodes: u32(msg(m.dhtPut)!.nodes, BAD_RES, 'nodes') };
    case 'auditChallenge': {
      const answer = bytes(msg(m.auditChallenge)!.answer, BAD_RES, 'answer');
      if (answer.length < 1 || answer.length > MAX_AUDIT_ANSWER_BYTES) throw err(BAD_RES, 'audit answer empty or too large');
      return { type: 'challenge', answer };
    }
    case 'error': {
      const e = msg(m.error)!;
      const code = str(e.code, BAD_RES, 'code');
      const message = str(e.message, BAD_RES, 'message');
      if (!ERROR_CODE.test(code)) throw err(BAD_RES, 'error code must match [A-Z][A-Z0-9_]{0,63}');
      if (message.length > MAX_ERROR_MESSAGE_CHARS) throw err(BAD_RES, 'error message too long');
      return { type: 'error', code, message };
    }
    default:
      throw err(BAD_RES, 'response has no known body');
  }
}

/** The error response for a failure. Only BitcloudError codes cross the wire; anything else is STORAGE_INTERNAL. */
export function errorResponse(e: unknown): StorageResponse & { type: 'error' } {
  if (e instanceof BitcloudError && ERROR_CODE.test(e.code)) {
    return { type: 'error', code: e.code, message: e.message.replace(/^[A-Z0-9_]+: /, '').slice(0, MAX_ERROR_MESSAGE_CHARS) };
  }
  return { type: 'error', code: 'STORAGE_INTERNAL', message: 'internal error' };
}

/**
 * Client side: the error a remote error response stands for (same code, detail.remote = true).
 * A code outside the closed set (src/errors.ts; a node of another version) becomes
 * STORAGE_REMOTE_UNKNOWN with the node's code in detail.remoteCode.
 */
export function responseError(res: StorageResponse & { type: 'error' }): BitcloudError {
  if (!isErrorCode(res.code)) return err('STORAGE_REMOTE_UNKNOWN', `storage node: ${res.code}: ${res.message}`, { remote: true, remoteCode: res.code });
  return err(res.code, `storage node: ${res.message}`, { remote: true });
}
