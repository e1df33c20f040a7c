// SPEC.md §10.2: moderator policy versions. One version is a signed envelope (SPEC.md §6.2) of
// document type POLICY whose content is a `Policy` (policy.proto), signed by the moderator's own
// Ed25519 key. The decoder checks every rule, and verification turns raw bytes into a
// `PolicyVersion` — the only form the rest of moderation accepts (unverified bytes cannot reach
// enforcement by accident). Chains of versions (snapshots and deltas) are in chain.ts.
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { err, isBitcloudError, type ErrorCode } from '../errors';
import { blake2b, type Ed25519KeyPair } from '../crypto/primitives';
import { fingerprint, parseFingerprint } from '../crypto/keys';
import { checkWindow, DocType, openEnvelope, signDocument, verifyDigestSignature } from '../wire/envelope';
import { decodeDocumentBody, decodeEnvelope } from '../wire/docs';
import { DENY_ENTRY_BYTES, packEntries, splitEntries } from './denylist';

const root = protobuf.loadSync(fileURLToPath(new URL('./policy.proto', import.meta.url)));
const PolicyType = root.lookupType('bitcloud.moderation.Policy');
/** The `Policy` message type (tests count its full decodes). */
export const PolicyMessage = PolicyType;

/** Content classes every implementation knows (SPEC.md §10.1). Others may be used by agreement. */
export const ContentClass = {
  ENCRYPTED_PRIVATE: 'encrypted-private',
  PUBLIC_VIDEO: 'public-video',
  PUBLIC_ANY: 'public-any',
} as const;

const CLASS_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;
const NAME_RE = /^[\x20-\x7e]{0,64}$/;

export const POLICY_LIMITS = {
  /** Largest envelope of one version (about 130 000 entries in a snapshot). */
  versionBytes: 4 * 1024 * 1024,
  classes: 64,
  nameChars: 64,
  tagsPerApproval: 16,
} as const;

/**
 * SPEC.md §10.1: the file key of public content, the same for everyone, so that anyone holding a
 * manifest id — moderators first — can read the manifest and the file. Public content is thus
 * stored in the clear in all but form (the chunk format stays the one of SPEC.md §9.2).
 */
export const PUBLIC_CONTENT_KEY: Buffer = blake2b(Buffer.from('bitcloud-public-content-key-v1', 'ascii'), 32);

/** True when `cls` names a public class (stored with the public key, readable by anyone, §10.1). */
export function isPublicClass(cls: string): boolean {
  return cls.startsWith('public-');
}

/** Check a class name; `code` is the error for a bad one. */
export function checkContentClass(cls: unknown, code: ErrorCode = 'POLICY_MALFORMED'): string {
  if (typeof cls !== 'string' || !CLASS_RE.test(cls)) throw err(code, 'a content class matches [a-z0-9][a-z0-9-]{0,63}', { contentClass: String(cls).slice(0, 80) });
  return cls;
}

/** SPEC.md §10.3.2: one approved (public) file, with the moderator's tags. */
export interface Approval {
  /** 32 bytes, in the clear. */
  manifestId: Buffer;
  contentClass: string;
  /** Sorted, distinct, each matching TAG_RE; at most POLICY_LIMITS.tagsPerApproval. */
  tags: string[];
}

const TAG_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** Check a tag (`code` for a bad one). */
export function checkTag(tag: unknown, code: ErrorCode = 'POLICY_MALFORMED'): string {
  if (typeof tag !== 'string' || !TAG_RE.test(tag)) throw err(code, 'a tag matches [a-z0-9][a-z0-9-]{0,31}', { tag: String(tag).slice(0, 80) });
  return tag;
}

/**
 * Check an approval's tags (`code` for a bad one): each a valid tag, at most 16 distinct
 * (SPEC.md §10.2). Returns them distinct and sorted, as a version carries them.
 */
export function checkTags(tags: readonly unknown[], code: ErrorCode = 'POLICY_MALFORMED'): string[] {
  const list = [...new Set(tags.map((t) => checkTag(t, code)))].sort();
  if (list.length > POLICY_LIMITS.tagsPerApproval) throw err(code, `at most ${POLICY_LIMITS.tagsPerApproval} tags per file, got ${list.length}`, { tags: list.length });
  return list;
}

export interface ClassRule {
  name: string;
  /** 0 = no class-specific limit. */
  maxShareBytes: number;
}

/** The decoded content of one version (policy.proto Policy), every rule checked. */
export interface PolicyContent {
  moderator: Buffer;
  seq: number;
  /** null: a snapshot; else the SHA-256 of the previous version's body (a delta). */
  previous: Buffer | null;
  classes: ClassRule[];
  maxShareBytes: number;
  denyAdd: Buffer[];
  denyRemove: Buffer[];
  name: string;
  /** Approvals added (a snapshot: all of them), sorted by manifest id (SPEC.md §10.3.2). */
  approveAdd: Approval[];
  /** Manifest ids whose approval is withdrawn (a delta only). */
  approveRemove: Buffer[];
  /** Allowlist entries (hashed share ids of approved files) added / withdrawn. */
  allowAdd: Buffer[];
  allowRemove: Buffer[];
}

/** The approval fields of a version that carries none. */
export const NO_APPROVALS = { approveAdd: [], approveRemove: [], allowAdd: [], allowRemove: [] } as const satisfies Pick<PolicyContent, 'approveAdd' | 'approveRemove' | 'allowAdd' | 'allowRemove'>;

function checkApprovals(list: Approval[]): Approval[] {
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    if (a.manifestId.length !== 32) bad(`approve_add[${i}].manifest_id`, 'must be 32 bytes');
    if (i > 0 && Buffer.compare(list[i - 1].manifestId, a.manifestId) >= 0) bad('approve_add', 'must be sorted by manifest_id and distinct');
    checkContentClass(a.contentClass);
    if (a.tags.length > POLICY_LIMITS.tagsPerApproval) bad(`approve_add[${i}].tags`, `more than ${POLICY_LIMITS.tagsPerApproval}`);
    for (let j = 0; j < a.tags.length; j++) {
      checkTag(a.tags[j]);
      if (j > 0 && !(a.tags[j - 1] < a.tags[j])) bad(`approve_add[${i}].tags`, 'must be sorted and distinct');
    }
  }
  return list;
}

function canonicalApprovals(list: readonly Approval[]): Approval[] {
  return [...list].map((a) => ({ ...a, tags: [...new Set(a.tags)].sort() })).sort((x, y) => Buffer.compare(x.manifestId, y.manifestId));
}

const BAD = 'POLICY_MALFORMED';

function bad(field: string, why: string): never {
  throw err(BAD, `${field}: ${why}`, { field });
}

function u64(v: unknown, field: string): number {
  if (v == null) return 0;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) bad(field, 'not a safe non-negative integer');
    return v;
  }
  const l = v as { low?: unknown; high?: unknown };
  if (typeof l === 'object' && typeof l.low === 'number' && typeof l.high === 'number') {
    if (l.high >>> 0 > 0x1f_ffff) bad(field, 'exceeds 2^53 - 1');
    return (l.high >>> 0) * 0x1_0000_0000 + (l.low >>> 0);
  }
  return bad(field, 'not an integer');
}

function u32(v: unknown, field: string): number {
  if (v == null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) bad(field, 'not a uint32');
  return v;
}

function bytesField(v: unknown, field: string): Buffer {
  // protobufjs gives an absent bytes field as [] (its default), a present one as a Uint8Array.
  if (v == null || (Array.isArray(v) && v.length === 0)) return Buffer.alloc(0);
  if (!(v instanceof Uint8Array)) bad(field, 'not bytes');
  return Buffer.from(v.buffer, v.byteOffset, v.length);
}

function strField(v: unknown, field: string): string {
  if (v == null) return '';
  if (typeof v !== 'string') bad(field, 'not a string');
  return v;
}

function checkClasses(classes: ClassRule[]): ClassRule[] {
  if (classes.length > POLICY_LIMITS.classes) bad('classes', `more than ${POLICY_LIMITS.classes}`);
  for (let i = 0; i < classes.length; i++) {
    checkContentClass(classes[i].name);
    if (i > 0 && !(classes[i - 1].name < classes[i].name)) bad('classes', 'must be sorted by name and distinct');
  }
  return classes;
}

function checkContent(p: PolicyContent): PolicyContent {
  if (p.moderator.length !== 32) bad('moderator', 'must be 32 bytes');
  if (!(p.seq >= 1)) bad('seq', 'must be at least 1');
  if (p.previous !== null && p.previous.length !== 32) bad('previous', 'must be empty or 32 bytes');
  if (p.previous === null && p.denyRemove.length > 0) bad('deny_remove', 'a snapshot removes nothing');
  if (p.previous !== null && p.seq === 1) bad('previous', 'version 1 is always a snapshot');
  if (!NAME_RE.test(p.name)) bad('name', 'at most 64 printable ASCII characters');
  checkClasses(p.classes);
  const removed = new Set(p.denyRemove.map((e) => e.toString('hex')));
  for (const e of p.denyAdd) if (removed.has(e.toString('hex'))) bad('deny_add', 'an entry is both added and removed');
  if (p.previous === null && (p.approveRemove.length > 0 || p.allowRemove.length > 0)) bad('approve_remove', 'a snapshot removes nothing');
  checkApprovals(p.approveAdd);
  const unapproved = new Set(p.approveRemove.map((e) => e.toString('hex')));
  for (const a of p.approveAdd) if (unapproved.has(a.manifestId.toString('hex'))) bad('approve_add', 'a manifest id is both approved and withdrawn');
  const disallowed = new Set(p.allowRemove.map((e) => e.toString('hex')));
  for (const e of p.allowAdd) if (disallowed.has(e.toString('hex'))) bad('allow_add', 'an entry is both added and removed');
  return p;
}

/** Encode a version's content (canonical: classes sorted, entries sorted and distinct). */
export function encodePolicyContent(p: PolicyContent): Buffer {
  const c = checkContent({
    ...p,
    classes: [...p.classes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    denyAdd: splitEntries(packEntries(p.denyAdd), 'deny_add'),
    denyRemove: splitEntries(packEntries(p.denyRemove), 'deny_remove'),
    approveAdd: canonicalApprovals(p.approveAdd),
    approveRemove: splitEntries(packEntries(p.approveRemove), 'approve_remove'),
    allowAdd: splitEntries(packEntries(p.allowAdd), 'allow_add'),
    allowRemove: splitEntries(packEntries(p.allowRemove), 'allow_remove'),
  });
  const o: Record<string, unknown> = { moderator: c.moderator, seq: c.seq };
  if (c.previous) o.previous = c.previous;
  if (c.classes.length) o.classes = c.classes.map((r) => (r.maxShareBytes ? { name: r.name, maxShareBytes: r.maxShareBytes } : { name: r.name }));
  if (c.maxShareBytes) o.maxShareBytes = c.maxShareBytes;
  if (c.denyAdd.length) o.denyAdd = Buffer.concat(c.denyAdd);
  if (c.denyRemove.length) o.denyRemove = Buffer.concat(c.denyRemove);
  if (c.name) o.name = c.name;
  if (c.approveAdd.length) o.approveAdd = c.approveAdd.map((a) => ({ manifestId: a.manifestId, contentClass: a.contentClass, ...(a.tags.length ? { tags: a.tags } : {}) }));
  if (c.approveRemove.length) o.approveRemove = Buffer.concat(c.approveRemove);
  if (c.allowAdd.length) o.allowAdd = Buffer.concat(c.allowAdd);
  if (c.allowRemove.length) o.allowRemove = Buffer.concat(c.allowRemove);
  const u = PolicyType.encode(PolicyType.create(o)).finish();
  return Buffer.from(u.buffer, u.byteOffset, u.length);
}

// policy.proto: Policy.classes = 4 and Policy.approve_add = 9 (repeated messages), Approval.manifest_id
// = 1 and Approval.tags = 3. The full decode reads these fields by number whatever their wire type.
const F_CLASSES = 4;
const F_APPROVE_ADD = 9;
const F_MANIFEST_ID = 1;
const F_TAGS = 3;
const LEN = 2;

/** Skip a length-delimited field (its tag just read), refusing another wire type; returns its length. */
function skipLen(r: protobuf.Reader, tag: number, field: string): number {
  if ((tag & 7) !== LEN) bad(field, 'wrong wire type');
  const n = r.uint32();
  if (n > r.len - r.pos) bad(field, 'truncated');
  r.skip(n);
  return n;
}

/**
 * SPEC.md §10.2: the bounds on repeated messages — at most 64 ClassRules, each approval's
 * manifest_id exactly 32 bytes and at most 16 tags — checked by skipping over the fields, before
 * the full decode builds one object per item (a content of 2 million empty approvals would
 * otherwise cost seconds and close to a gigabyte before it is refused). POLICY_MALFORMED.
 */
function checkCounts(buf: Uint8Array): void {
  const r = protobuf.Reader.create(buf);
  let classes = 0;
  let approvals = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === F_CLASSES) {
      if (++classes > POLICY_LIMITS.classes) bad('classes', `more than ${POLICY_LIMITS.classes}`);
      skipLen(r, tag, 'classes');
    } else if (tag >>> 3 === F_APPROVE_ADD) {
      const at = `approve_add[${approvals}]`;
      if ((tag & 7) !== LEN) bad(at, 'wrong wire type');
      const len = r.uint32();
      if (len > r.len - r.pos) bad(at, 'truncated');
      const end = r.pos + len;
      let idBytes = -1;
      let tags = 0;
      while (r.pos < end) {
        const t = r.uint32();
        if (t >>> 3 === F_MANIFEST_ID) idBytes = skipLen(r, t, `${at}.manifest_id`);
        else if (t >>> 3 === F_TAGS) {
          if (++tags > POLICY_LIMITS.tagsPerApproval) bad(`${at}.tags`, `more than ${POLICY_LIMITS.tagsPerApproval}`);
          skipLen(r, t, `${at}.tags`);
        } else r.skipType(t & 7);
      }
      if (r.pos !== end) bad(at, 'a field runs past the approval');
      if (idBytes !== 32) bad(`${at}.manifest_id`, 'must be 32 bytes');
      approvals++;
    } else {
      r.skipType(tag & 7);
    }
  }
}

/** Decode and check a version's content. Anything invalid → POLICY_MALFORMED (never another error). */
export function decodePolicyContent(buf: Uint8Array): PolicyContent {
  if (buf.length > POLICY_LIMITS.versionBytes) throw err(BAD, `policy content of ${buf.length} bytes exceeds ${POLICY_LIMITS.versionBytes}`);
  try {
    checkCounts(buf);
  } catch (e) {
    if (isBitcloudError(e)) throw e;
    throw err(BAD, `not a valid Policy message: ${e instanceof Error ? e.message : String(e)}`);
  }
  let m: Record<string, unknown>;
  try {
    m = PolicyType.decode(buf) as unknown as Record<string, unknown>;
  } catch (e) {
    throw err(BAD, `not a valid Policy message: ${e instanceof Error ? e.message : String(e)}`);
  }
  const rawClasses = m.classes == null ? [] : m.classes;
  if (!Array.isArray(rawClasses)) bad('classes', 'not a list');
  if (rawClasses.length > POLICY_LIMITS.classes) bad('classes', `more than ${POLICY_LIMITS.classes}`);
  const previous = bytesField(m.previous, 'previous');
  const rawApprovals = m.approveAdd == null ? [] : m.approveAdd;
  if (!Array.isArray(rawApprovals)) bad('approve_add', 'not a list');
  return checkContent({
    moderator: bytesField(m.moderator, 'moderator'),
    seq: u64(m.seq, 'seq'),
    previous: previous.length === 0 ? null : previous,
    classes: rawClasses.map((x: unknown, i: number) => {
      const r = (x ?? {}) as Record<string, unknown>;
      return { name: strField(r.name, `classes[${i}].name`), maxShareBytes: u32(r.maxShareBytes, `classes[${i}].max_share_bytes`) };
    }),
    maxShareBytes: u32(m.maxShareBytes, 'max_share_bytes'),
    denyAdd: splitEntries(bytesField(m.denyAdd, 'deny_add'), 'deny_add'),
    denyRemove: splitEntries(bytesField(m.denyRemove, 'deny_remove'), 'deny_remove'),
    name: strField(m.name, 'name'),
    approveAdd: rawApprovals.map((x: unknown, i: number) => {
      const r = (x ?? {}) as Record<string, unknown>;
      const tags = r.tags == null ? [] : r.tags;
      if (!Array.isArray(tags)) bad(`approve_add[${i}].tags`, 'not a list');
      return { manifestId: bytesField(r.manifestId, `approve_add[${i}].manifest_id`), contentClass: strField(r.contentClass, `approve_add[${i}].content_class`), tags: tags.map((t: unknown, j: number) => strField(t, `approve_add[${i}].tags[${j}]`)) };
    }),
    approveRemove: splitEntries(bytesField(m.approveRemove, 'approve_remove'), 'approve_remove'),
    allowAdd: splitEntries(bytesField(m.allowAdd, 'allow_add'), 'allow_add'),
    allowRemove: splitEntries(bytesField(m.allowRemove, 'allow_remove'), 'allow_remove'),
  });
}

declare const verifiedBrand: unique symbol;

/** A version whose signature has been checked (SPEC.md §10.2). Only verifyPolicyVersion makes one. */
export interface PolicyVersion {
  readonly [verifiedBrand]: true;
  /** Fingerprint of the moderator key (64 lowercase hex). */
  readonly moderator: string;
  readonly content: PolicyContent;
  /** SHA-256 of the envelope body: what the next delta's `previous` names. */
  readonly digest: Buffer;
  readonly validAfter: number;
  readonly validUntil: number;
  /** The envelope exactly as received. */
  readonly raw: Buffer;
}

/** Sign a version with the moderator key. `content.moderator` is set from the key. */
export function signPolicy(
  content: Omit<PolicyContent, 'moderator'>,
  key: Ed25519KeyPair,
  window: { validAfter: number; validUntil: number },
): Buffer {
  const encoded = encodePolicyContent({ ...content, moderator: key.publicKey });
  return signDocument({ type: DocType.POLICY, validAfter: window.validAfter, validUntil: window.validUntil, content: encoded }, { identity: key.publicKey, keyPair: key });
}

function openPolicyEnvelope(raw: Uint8Array): ReturnType<typeof openEnvelope> {
  try {
    return openEnvelope(raw, DocType.POLICY, POLICY_LIMITS.versionBytes + 1024);
  } catch (e) {
    if (isBitcloudError(e)) throw err(BAD, `policy envelope: ${e.message}`, { cause: e.code });
    throw e;
  }
}

/** SPEC.md §10.2: exactly one signature, by the moderator key itself, over the body. POLICY_BAD_SIGNATURE otherwise. */
function checkModeratorSignature(doc: ReturnType<typeof openEnvelope>, key: Buffer, fp: string): void {
  if (doc.signatures.length !== 1) throw err('POLICY_BAD_SIGNATURE', `a policy carries exactly one signature, found ${doc.signatures.length}`, { moderator: fp });
  const s = doc.signatures[0];
  if (!s.signer.equals(key) || s.key !== null) {
    throw err('POLICY_BAD_SIGNATURE', `policy of moderator ${fp} is not signed by the moderator key`, { moderator: fp });
  }
  if (!verifyDigestSignature(doc.digest, s.signature, key)) {
    throw err('POLICY_BAD_SIGNATURE', `policy signature of moderator ${fp} does not verify`, { moderator: fp });
  }
}

/**
 * SPEC.md §10.4: check only that a version is signed by moderator `fp` (one hash and one signature
 * check; the content is not decoded). Errors: POLICY_MALFORMED, POLICY_BAD_SIGNATURE.
 */
export function checkPolicySignature(raw: Uint8Array, fp: string): void {
  checkModeratorSignature(openPolicyEnvelope(raw), parseFingerprint(fp), fp);
}

/**
 * Open and verify one version: a POLICY envelope with exactly one signature, made by the key named
 * in the content (and, when `moderator` is given, that key); the signature is checked before the
 * content is decoded. Does not look at the validity window
 * (see checkPolicyWindow) or at other versions (chain.ts). Errors: POLICY_MALFORMED,
 * POLICY_BAD_SIGNATURE, POLICY_WRONG_MODERATOR.
 */
export function verifyPolicyVersion(raw: Uint8Array, opts: { moderator?: string } = {}): PolicyVersion {
  const doc = openPolicyEnvelope(raw);
  // SPEC.md §10.2: the one signature is checked over the body before the content is decoded, so
  // bytes no key signed cost one signature check, never a decode.
  if (doc.signatures.length !== 1) throw err('POLICY_BAD_SIGNATURE', `a policy carries exactly one signature, found ${doc.signatures.length}`);
  const signer = doc.signatures[0].signer;
  checkModeratorSignature(doc, signer, fingerprint(signer));
  const content = decodePolicyContent(doc.content);
  const fp = fingerprint(content.moderator);
  if (opts.moderator !== undefined && opts.moderator !== fp) {
    throw err('POLICY_WRONG_MODERATOR', `policy is by moderator ${fp}, expected ${opts.moderator}`, { moderator: opts.moderator, got: fp });
  }
  if (!content.moderator.equals(signer)) throw err('POLICY_BAD_SIGNATURE', `policy of moderator ${fp} is not signed by the moderator key`, { moderator: fp });
  return { moderator: fp, content, digest: doc.digest, validAfter: doc.validAfter, validUntil: doc.validUntil, raw: doc.raw } as PolicyVersion;
}

/** The lists of a version that a held one decodes again when read (see heldPolicyVersion). */
const HELD_LISTS = ['denyAdd', 'denyRemove', 'allowAdd', 'allowRemove', 'approveRemove'] as const;
const HELD = new WeakSet<PolicyVersion>();

/**
 * SPEC.md §10.7.1: the version `v` as a state holds it in its chain, without its decoded entry
 * lists. Decoded, every 32-byte entry of a version is a Buffer object of its own (about 100 bytes
 * of heap); a held state answers lookups from its packed lists (DenySet) and serves versions as
 * their raw bytes, so it keeps only `raw` and the content's other fields. The lists stay readable:
 * reading one decodes the version's content again from `raw` (already verified), and the result
 * is not kept. Approvals are kept as decoded: the state's approval map holds them anyway.
 */
export function heldPolicyVersion(v: PolicyVersion): PolicyVersion {
  // A version already held is returned as it is: spreading its content would run the getters,
  // decoding it again at every update of the state that holds it.
  if (HELD.has(v)) return v;
  const content = { ...v.content };
  const raw = v.raw; // the getters keep only the bytes, never the decoded `v`
  for (const k of HELD_LISTS) {
    delete (content as Partial<PolicyContent>)[k];
    Object.defineProperty(content, k, {
      enumerable: true,
      get: () => decodePolicyContent(openPolicyEnvelope(raw).content)[k],
    });
  }
  const held = { ...v, content };
  HELD.add(held);
  return held;
}

/**
 * The moderator and `seq` a version claims, read without checking its signature or decoding its
 * lists (the envelope's framing and the content's fields are skipped over, not copied); null when
 * the bytes are not a policy envelope naming both. Unverified: only for refusing a version that
 * could not be newer than one held (SPEC.md §10.4 step 3) before paying for verifyPolicyVersion.
 */
export function peekPolicyVersion(raw: Uint8Array): { moderator: string; seq: number } | null {
  try {
    const max = POLICY_LIMITS.versionBytes + 1024;
    const body = decodeDocumentBody(decodeEnvelope(raw, max).body, max);
    if (body.type !== DocType.POLICY) return null;
    const r = protobuf.Reader.create(body.content);
    let seq: number | null = null;
    let key: Uint8Array | null = null;
    while (r.pos < r.len) {
      const tag = r.uint32();
      // policy.proto: bytes moderator = 1, uint64 seq = 2; every other field is skipped.
      if (tag === (1 << 3 | 2)) key = r.bytes();
      else if (tag === (2 << 3 | 0)) seq = u64(r.uint64(), 'seq');
      else r.skipType(tag & 7);
    }
    return key && key.length === 32 && seq !== null ? { moderator: fingerprint(Buffer.from(key)), seq } : null;
  } catch {
    return null;
  }
}

/**
 * SPEC.md §10.2: a version counts as valid for at most this long after its valid_after, whatever
 * valid_until it names (as Tor bounds the lifetime an onion service descriptor may claim): an old
 * version signed for a century cannot be handed to a holder that has nothing for a century.
 */
export const POLICY_MAX_LIFETIME_MS = 366 * 86_400_000;

/** SPEC.md §10.2: the end of a version's window: its valid_until, at most valid_after + 366 days. */
export function effectiveValidUntil(v: { validAfter: number; validUntil: number }): number {
  return Math.min(v.validUntil, v.validAfter + POLICY_MAX_LIFETIME_MS);
}

/**
 * SPEC.md §10.4 step 4: a version is taken only inside [valid_after − skew, valid_until] (its
 * valid_until at most valid_after + 366 days, effectiveValidUntil); with
 * `expiry: false` (a holder that has a state, newer than which the version is) only its start is
 * checked.
 */
export function checkPolicyWindow(v: PolicyVersion, now: number, skewMs: number, o: { expiry?: boolean } = {}): void {
  try {
    const window = { validAfter: v.validAfter, validUntil: o.expiry === false ? Number.MAX_SAFE_INTEGER : effectiveValidUntil(v) };
    checkWindow(window, now, skewMs, `policy version ${v.content.seq} of moderator ${v.moderator}`);
  } catch (e) {
    if (isBitcloudError(e, 'DOC_EXPIRED')) throw err('POLICY_EXPIRED', e.message.replace(/^[A-Z_]+: /, ''), { moderator: v.moderator, seq: v.content.seq });
    if (isBitcloudError(e, 'DOC_NOT_YET_VALID')) throw err('POLICY_NOT_YET_VALID', e.message.replace(/^[A-Z_]+: /, ''), { moderator: v.moderator, seq: v.content.seq });
    throw e;
  }
}

/** Parse a moderator fingerprint (POLICY_BAD_MODERATOR for anything but 64 lowercase hex). */
export function parseModerator(fp: string): Buffer {
  try {
    return parseFingerprint(fp);
  } catch {
    throw err('POLICY_BAD_MODERATOR', 'a moderator is named by 64 lowercase hex characters of its Ed25519 key', { moderator: String(fp).slice(0, 80) });
  }
}

export { DENY_ENTRY_BYTES };
