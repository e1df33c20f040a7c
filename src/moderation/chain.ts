// SPEC.md §10.4–10.5: from verified versions to a moderator's current policy. Versions are
// append-friendly: a SNAPSHOT states the whole denylist; a DELTA names the digest of the version
// before it and lists only the entries it adds and removes (classes and limits, being small, are
// complete in every version). A *bundle* is the chain since the last snapshot: snapshot, then
// deltas in order. Sequence numbers only go up: a lower number is a replay, a different version
// with the same number is a conflict, and both are refused.
import { err } from '../errors';
import { allowEntry, DenySet, type DenySetEdit } from './denylist';
import {
  checkPolicySignature, checkPolicyWindow, effectiveValidUntil, encodePolicyContent, heldPolicyVersion, peekPolicyVersion, POLICY_LIMITS, verifyPolicyVersion,
  type Approval, type ClassRule, type PolicyContent, type PolicyVersion,
} from './policy';

export const BUNDLE_LIMITS = {
  bytes: 16 * 1024 * 1024,
  versions: 256,
} as const;

/** The limits a chain (hence its bundle) keeps to; tests pass smaller ones. */
export interface BundleLimits {
  bytes: number;
  versions: number;
}

/** SPEC.md §10.2: an envelope is at most this much larger than its content (4 MiB + 1024). */
const ENVELOPE_MARGIN = 1024;

/** A moderator's policy as of its newest verified version. Immutable. */
export interface PolicyState {
  moderator: string;
  seq: number;
  digest: Buffer;
  validAfter: number;
  /** The newest version's valid_until, at most valid_after + 366 days (SPEC.md §10.2). */
  validUntil: number;
  name: string;
  classes: readonly ClassRule[];
  maxShareBytes: number;
  deny: DenySet;
  /** Allowlist (SPEC.md §10.3.2): hashed share ids of approved files. */
  allow: DenySet;
  /** Approved files by manifest id (64 hex), with their class and tags. */
  approvals: ReadonlyMap<string, Approval>;
  /** The versions since (and including) the last snapshot, oldest first: what a bundle carries. */
  chain: readonly PolicyVersion[];
}

// ---- bundles: u32 length | envelope, repeated (SPEC.md §10.5) ----

export function encodeBundle(envelopes: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of envelopes) {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(e.length);
    parts.push(h, Buffer.from(e));
  }
  return Buffer.concat(parts);
}

/** Split a bundle into envelopes. Malformed framing → POLICY_MALFORMED. */
export function decodeBundle(buf: Uint8Array): Buffer[] {
  if (buf.length === 0) throw err('POLICY_MALFORMED', 'empty policy bundle');
  if (buf.length > BUNDLE_LIMITS.bytes) throw err('POLICY_MALFORMED', `policy bundle of ${buf.length} bytes exceeds ${BUNDLE_LIMITS.bytes}`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const out: Buffer[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 4) throw err('POLICY_MALFORMED', 'policy bundle: truncated length');
    const len = b.readUInt32BE(off);
    off += 4;
    if (len === 0 || len > b.length - off) throw err('POLICY_MALFORMED', 'policy bundle: bad envelope length', { len });
    if (out.length >= BUNDLE_LIMITS.versions) throw err('POLICY_MALFORMED', `policy bundle: more than ${BUNDLE_LIMITS.versions} versions`);
    out.push(b.subarray(off, off + len));
    off += len;
  }
  return out;
}

/** The bundle of a state: its chain since the last snapshot. */
export function stateBundle(s: PolicyState): Buffer {
  return encodeBundle(s.chain.map((v) => v.raw));
}

/** SPEC.md §10.5: the length of the bundle of these versions (a u32 length and the envelope each). */
export function chainBundleBytes(chain: readonly { raw: Uint8Array }[]): number {
  let n = 0;
  for (const v of chain) n += 4 + v.raw.length;
  return n;
}

// ---- applying versions ----

/**
 * The state advancePolicy builds: one mutable copy of the lists, to which every delta of the
 * bundle is applied in place (SPEC.md §10.4 steps 5–6), made an immutable PolicyState at the end.
 * A bundle of 255 deltas thus copies a 130 000-entry denylist once, not once per delta; a refusal
 * drops the copy, and what is held is untouched.
 */
interface Working {
  last: PolicyVersion;
  deny: DenySetEdit;
  allow: DenySetEdit;
  approvals: Map<string, Approval>;
  chain: PolicyVersion[];
  /** chainBundleBytes(chain). */
  bytes: number;
}

function fromSnapshot(v: PolicyVersion): Working {
  const c = v.content;
  return {
    last: v, deny: DenySet.of(c.denyAdd).edit(), allow: DenySet.of(c.allowAdd, allowEntry).edit(),
    approvals: new Map(c.approveAdd.map((a) => [a.manifestId.toString('hex'), a])), chain: [v], bytes: chainBundleBytes([v]),
  };
}

function fromHeld(s: PolicyState): Working {
  return {
    last: s.chain[s.chain.length - 1], deny: s.deny.edit(), allow: s.allow.edit(),
    approvals: new Map(s.approvals), chain: [...s.chain], bytes: chainBundleBytes(s.chain),
  };
}

/** SPEC.md §10.4 step 6: apply delta `v` to `w` in place, or refuse it (`w` is then to be dropped). */
function applyDelta(w: Working, v: PolicyVersion, limits: BundleLimits): void {
  const c = v.content;
  const held = w.last.content.seq;
  if (c.previous === null || held + 1 !== c.seq || !w.last.digest.equals(c.previous)) {
    throw err('POLICY_CHAIN_BROKEN', `delta ${c.seq} of moderator ${v.moderator} does not follow the version held (${held}); a snapshot is needed`, { moderator: v.moderator, seq: c.seq });
  }
  // SPEC.md §10.5: the chain a holder keeps is its bundle, so it stays within a bundle's limits;
  // a delta that would take it past them is refused, and the moderator must publish a snapshot.
  const versions = w.chain.length + 1;
  const bytes = w.bytes + 4 + v.raw.length;
  if (versions > limits.versions || bytes > limits.bytes) {
    throw err('POLICY_CHAIN_TOO_LONG', `delta ${c.seq} of moderator ${v.moderator} would make the chain since the last snapshot ${versions} versions and ${bytes} bytes as a bundle (at most ${limits.versions} and ${limits.bytes}); a snapshot is needed`,
      { moderator: v.moderator, seq: c.seq, versions, bytes });
  }
  for (const e of c.denyAdd) if (w.deny.hasEntry(e)) throw err('POLICY_MALFORMED', `delta ${c.seq} adds an entry already listed`, { moderator: v.moderator });
  for (const e of c.denyRemove) if (!w.deny.hasEntry(e)) throw err('POLICY_MALFORMED', `delta ${c.seq} removes an entry not listed`, { moderator: v.moderator });
  for (const e of c.denyRemove) w.deny.remove(e);
  for (const e of c.denyAdd) w.deny.add(e);
  for (const e of c.allowAdd) if (w.allow.hasEntry(e)) throw err('POLICY_MALFORMED', `delta ${c.seq} adds an allowlist entry already listed`, { moderator: v.moderator });
  for (const e of c.allowRemove) if (!w.allow.hasEntry(e)) throw err('POLICY_MALFORMED', `delta ${c.seq} removes an allowlist entry not listed`, { moderator: v.moderator });
  for (const e of c.allowRemove) w.allow.remove(e);
  for (const e of c.allowAdd) w.allow.add(e);
  for (const id of c.approveRemove) {
    if (!w.approvals.delete(id.toString('hex'))) throw err('POLICY_MALFORMED', `delta ${c.seq} withdraws an approval not held`, { moderator: v.moderator });
  }
  // An approval of a manifest id already approved replaces it (new tags).
  for (const a of c.approveAdd) w.approvals.set(a.manifestId.toString('hex'), a);
  w.chain.push(v);
  w.bytes = bytes;
  w.last = v;
}

/**
 * The immutable state of `w`: its newest version's fields, its lists handed over (not copied).
 * SPEC.md §10.7.1: the chain is kept as held versions, without their decoded entry lists (the
 * packed deny and allow sets answer lookups; versions are served as their raw bytes).
 */
function finish(w: Working): PolicyState {
  const v = w.last, c = v.content;
  return {
    moderator: v.moderator, seq: c.seq, digest: v.digest, validAfter: v.validAfter, validUntil: effectiveValidUntil(v),
    name: c.name, classes: c.classes, maxShareBytes: c.maxShareBytes,
    deny: w.deny.done(), allow: w.allow.done(), approvals: w.approvals, chain: w.chain.map(heldPolicyVersion),
  };
}

export interface AdvanceOptions {
  /** The moderator the bundle must be by (fingerprint). */
  moderator: string;
  now: number;
  skewMs?: number;
  /** Check the newest version's validity window (default true; false when reloading from disk). */
  checkWindow?: boolean;
  /** The limits of the chain held (default BUNDLE_LIMITS, SPEC.md §10.5). */
  limits?: BundleLimits;
}

export interface AdvanceResult {
  state: PolicyState;
  /** 'unchanged': the bundle's newest version is the one held. */
  result: 'updated' | 'unchanged';
}

/**
 * SPEC.md §10.4 step 3, answered before step 1: a bundle (its envelopes, framing decoded) whose
 * newest version is, byte for byte, the one held leaves `held` unchanged, and one whose newest
 * version claims (for this moderator) a seq below the held one, and is signed by the moderator,
 * is POLICY_REPLAYED (a forged one POLICY_BAD_SIGNATURE), without decoding any version's content
 * (a re-upload costs a comparison; an older bundle one signature check). Null: the full steps decide.
 */
export function answerFromHeld(held: PolicyState, raws: readonly Uint8Array[], moderator: string): AdvanceResult | null {
  if (held.moderator !== moderator) throw err('POLICY_WRONG_MODERATOR', 'held state is of another moderator');
  if (raws.length === 0) return null;
  const newestRaw = raws[raws.length - 1];
  if (Buffer.from(newestRaw.buffer, newestRaw.byteOffset, newestRaw.length).equals(held.chain[held.chain.length - 1].raw)) {
    return { state: held, result: 'unchanged' };
  }
  const claimed = peekPolicyVersion(newestRaw);
  if (claimed !== null && claimed.moderator === moderator && claimed.seq < held.seq) {
    // Its signature first (one hash and one signature check; the content is not decoded): a forged
    // older version is POLICY_BAD_SIGNATURE, as the full steps would say.
    checkPolicySignature(newestRaw, moderator);
    throw err('POLICY_REPLAYED', `policy version ${claimed.seq} of moderator ${moderator} is older than the version held (${held.seq})`, { moderator, seq: claimed.seq, held: held.seq });
  }
  return null;
}

/**
 * SPEC.md §10.4: take a bundle (or a list of envelopes) and return the newer state, or refuse it.
 * The bundle either starts with a snapshot, or with versions that continue the held chain.
 * Refusals: POLICY_MALFORMED, POLICY_BAD_SIGNATURE, POLICY_WRONG_MODERATOR (one forged or foreign
 * version refuses the whole bundle), POLICY_REPLAYED (newest seq below the held one),
 * POLICY_CONFLICT (another version under a seq already held), POLICY_CHAIN_BROKEN (a delta that
 * does not continue what is held), POLICY_CHAIN_TOO_LONG (a delta that would take the chain held
 * past a bundle's limits, §10.5), POLICY_EXPIRED / POLICY_NOT_YET_VALID.
 */
export function advancePolicy(held: PolicyState | null, bundle: Uint8Array | readonly Uint8Array[], o: AdvanceOptions): AdvanceResult {
  const raws = bundle instanceof Uint8Array ? decodeBundle(bundle) : [...bundle];
  if (raws.length === 0) throw err('POLICY_MALFORMED', 'no policy versions');
  if (held) {
    const quick = answerFromHeld(held, raws, o.moderator);
    if (quick) return quick;
  }
  const versions = raws.map((r) => verifyPolicyVersion(r, { moderator: o.moderator }));
  for (let i = 1; i < versions.length; i++) {
    const a = versions[i - 1].content, b = versions[i].content;
    if (b.seq !== a.seq + 1) throw err('POLICY_MALFORMED', 'bundle versions are not consecutive', { moderator: o.moderator });
    if (b.previous !== null && !b.previous.equals(versions[i - 1].digest)) {
      throw err('POLICY_CHAIN_BROKEN', `delta ${b.seq} does not name version ${a.seq}`, { moderator: o.moderator, seq: b.seq });
    }
  }
  const newest = versions[versions.length - 1];
  const seq = newest.content.seq;
  if (held) {
    if (held.moderator !== o.moderator) throw err('POLICY_WRONG_MODERATOR', 'held state is of another moderator');
    if (seq < held.seq) {
      throw err('POLICY_REPLAYED', `policy version ${seq} of moderator ${o.moderator} is older than the version held (${held.seq})`, { moderator: o.moderator, seq, held: held.seq });
    }
    const same = versions.find((v) => v.content.seq === held.seq);
    if (same && !same.digest.equals(held.digest)) {
      throw err('POLICY_CONFLICT', `moderator ${o.moderator} signed two different versions ${held.seq}`, { moderator: o.moderator, seq: held.seq });
    }
    if (seq === held.seq) return { state: held, result: 'unchanged' };
  }
  // SPEC.md §10.4 step 4: a holder that has a state takes a newer version even past its
  // valid_until. The state it holds stays in force after its own expiry, so refusing would keep it
  // on an older version still: a node that missed version N + 1 while it was valid would enforce
  // N, without the entries N + 1 added, until the moderator signed again. Expiry keeps only a
  // holder that has nothing from taking a stale version; a version not yet valid is refused by all.
  if (o.checkWindow !== false) checkPolicyWindow(newest, o.now, o.skewMs ?? 60_000, { expiry: held === null });

  // Start from the last snapshot in the bundle, or continue the held chain.
  let start = -1;
  for (let i = versions.length - 1; i >= 0; i--) if (versions[i].content.previous === null) { start = i; break; }
  let w: Working;
  if (start >= 0) {
    w = fromSnapshot(versions[start++]);
  } else {
    start = versions.findIndex((v) => v.content.seq === (held?.seq ?? -1) + 1);
    if (!held || start < 0) {
      throw err('POLICY_CHAIN_BROKEN', `bundle of moderator ${o.moderator} has no snapshot and does not continue version ${held?.seq ?? 'none'}`, { moderator: o.moderator });
    }
    w = fromHeld(held);
  }
  for (let i = start; i < versions.length; i++) applyDelta(w, versions[i], o.limits ?? BUNDLE_LIMITS);
  return { state: finish(w), result: 'updated' };
}

/** The versions a holder of (afterSeq, afterDigest) lacks: deltas after it, or the whole chain. */
export function versionsAfter(s: PolicyState, afterSeq?: number, afterDigest?: Buffer): PolicyVersion[] {
  if (afterSeq === undefined) return [...s.chain];
  if (afterSeq >= s.seq) return [];
  const i = s.chain.findIndex((v) => v.content.seq === afterSeq);
  if (i >= 0 && (!afterDigest || s.chain[i].digest.equals(afterDigest))) return s.chain.slice(i + 1);
  return [...s.chain];
}

// ---- making the next version (the moderator's side) ----

/** What a moderator wants the policy to say (the working policy of `bitcloud moderator`). */
export interface DesiredPolicy {
  name: string;
  classes: ClassRule[];
  maxShareBytes: number;
  /** Double-hashed entries. */
  deny: Iterable<Uint8Array>;
  /** Approved files (SPEC.md §10.3.2). */
  approvals?: readonly Approval[];
  /** Allowlist entries (allowEntry of the approved files' share ids). */
  allow?: Iterable<Uint8Array>;
}

function sameApproval(a: Approval, b: Approval): boolean {
  return a.contentClass === b.contentClass && a.tags.length === b.tags.length && a.tags.every((t, i) => t === b.tags[i]);
}

/** The length of a version's encoded content (the moderator key, not yet set, takes 32 bytes). */
function contentBytes(c: Omit<PolicyContent, 'moderator'>): number {
  return encodePolicyContent({ ...c, moderator: Buffer.alloc(32) }).length;
}

/**
 * The content of the next version after `held`: a delta when one exists and the chain is shorter
 * than `maxChain` and the delta is smaller than a snapshot and the chain with it stays within a
 * bundle's limits (SPEC.md §10.5, sizes measured encoded); else a snapshot. A snapshot that does
 * not fit in one version (§10.2) or one bundle is POLICY_LIST_TOO_LARGE, before anything is signed.
 */
export function nextPolicyContent(held: PolicyState | null, want: DesiredPolicy, o: { maxChain?: number; snapshot?: boolean; limits?: BundleLimits } = {}): Omit<PolicyContent, 'moderator'> {
  const limits = o.limits ?? BUNDLE_LIMITS;
  const wanted = DenySet.of(want.deny);
  const wantedAllow = DenySet.of(want.allow ?? [], allowEntry);
  const approvals = [...(want.approvals ?? [])].map((a) => ({ ...a, tags: [...new Set(a.tags)].sort() })).sort((x, y) => Buffer.compare(x.manifestId, y.manifestId));
  const base = { classes: want.classes, maxShareBytes: want.maxShareBytes, name: want.name, seq: (held?.seq ?? 0) + 1 };
  const snapshot = (): Omit<PolicyContent, 'moderator'> => {
    const c = {
      ...base, previous: null, denyAdd: wanted.entries(), denyRemove: [],
      approveAdd: approvals, approveRemove: [], allowAdd: wantedAllow.entries(), allowRemove: [],
    };
    const bytes = contentBytes(c);
    const limit = Math.min(POLICY_LIMITS.versionBytes, limits.bytes - 4 - ENVELOPE_MARGIN);
    if (bytes > limit) {
      throw err('POLICY_LIST_TOO_LARGE', `the policy lists ${wanted.size} denylist entries, ${wantedAllow.size} allowlist entries and ${approvals.length} approvals: `
        + `${bytes} bytes as a snapshot, over the limit of ${limit} bytes for one version (about ${Math.floor(limit / 32)} entries); remove entries before publishing`,
      { deny: wanted.size, allow: wantedAllow.size, approvals: approvals.length, bytes, limit });
    }
    return c;
  };
  if (!held || o.snapshot || held.chain.length >= Math.min(o.maxChain ?? 32, limits.versions)) return snapshot();
  const add = wanted.entries().filter((e) => !held.deny.hasEntry(e));
  const remove = held.deny.entries().filter((e) => !wanted.hasEntry(e));
  const allowAdd = wantedAllow.entries().filter((e) => !held.allow.hasEntry(e));
  const allowRemove = held.allow.entries().filter((e) => !wantedAllow.hasEntry(e));
  const wantedIds = new Set(approvals.map((a) => a.manifestId.toString('hex')));
  const approveAdd = approvals.filter((a) => { const h = held.approvals.get(a.manifestId.toString('hex')); return !h || !sameApproval(h, a); });
  const approveRemove = [...held.approvals.keys()].filter((h) => !wantedIds.has(h)).sort().map((h) => Buffer.from(h, 'hex'));
  const deltaSize = add.length + remove.length + allowAdd.length + allowRemove.length + approveAdd.length + approveRemove.length;
  if (deltaSize > wanted.size + wantedAllow.size + approvals.length) return snapshot(); // the delta would be larger
  const delta = { ...base, previous: held.digest, denyAdd: add, denyRemove: remove, approveAdd, approveRemove, allowAdd, allowRemove };
  // SPEC.md §10.5: holders refuse a delta that takes the chain past a bundle's limits
  // (POLICY_CHAIN_TOO_LONG), so such a version is a snapshot. The envelope is counted at its
  // largest (content + 1024 bytes).
  const bytes = contentBytes(delta);
  if (bytes > POLICY_LIMITS.versionBytes || chainBundleBytes(held.chain) + 4 + bytes + ENVELOPE_MARGIN > limits.bytes) return snapshot();
  return delta;
}

/** SPEC.md §10.1: does this policy admit uploads of class `cls`? Returns the matching rule. */
export function admittingRule(s: Pick<PolicyState, 'classes'>, cls: string): ClassRule | null {
  const exact = s.classes.find((r) => r.name === cls);
  if (exact) return exact;
  if (cls.startsWith('public-')) return s.classes.find((r) => r.name === 'public-any') ?? null;
  return null;
}
