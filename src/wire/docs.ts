// SPEC.md §6 (directory documents): typed encode/decode of the messages in directory.proto,
// with a size limit on every document and field. Decoders return checked, typed values or
// throw DOC_TOO_LARGE / DOC_MALFORMED (never a RangeError from protobufjs).
// Semantics (signatures, validity windows, cross-field rules) live in envelope.ts and src/dir.
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { err, isBitcloudError } from '../errors';

const root = protobuf.loadSync(fileURLToPath(new URL('./directory.proto', import.meta.url)));
const T = {
  Envelope: root.lookupType('bitcloud.dir.Envelope'),
  DocumentBody: root.lookupType('bitcloud.dir.DocumentBody'),
  KeyCertificate: root.lookupType('bitcloud.dir.KeyCertificate'),
  RelayDescriptor: root.lookupType('bitcloud.dir.RelayDescriptor'),
  Vote: root.lookupType('bitcloud.dir.Vote'),
  VoteEntry: root.lookupType('bitcloud.dir.VoteEntry'),
  Consensus: root.lookupType('bitcloud.dir.Consensus'),
  DetachedSignatures: root.lookupType('bitcloud.dir.DetachedSignatures'),
};

/** SPEC.md §6.2.5: size limits. Every decoder checks the total size first. */
export const LIMITS = {
  descriptorBytes: 4096,
  certificateBytes: 512,
  voteBytes: 32 * 1024 * 1024,
  consensusBytes: 16 * 1024 * 1024,
  signaturesBytes: 16 * 1024,
  /** An envelope carries at most this many signatures and certificates. */
  maxSignatures: 32,
  nicknameMax: 19,
  versionMax: 32,
  exitPolicyRules: 64,
  exitPolicyRuleChars: 64,
  familyMax: 32,
  moderatorsMax: 16,
  voteEntriesMax: 100_000,
  consensusRelaysMax: 100_000,
  /** Declared bandwidth ceiling: 10 GB/s. */
  declaredBandwidthMax: 10_000_000_000,
} as const;

export const KEY_BYTES = 32;
export const SIG_BYTES = 64;
export const DIGEST_BYTES = 32;
export const IPV4_BYTES = 4;

// ---- typed messages ----
export interface SignatureMsg { signer: Buffer; key: Buffer | null; signature: Buffer }
export interface EnvelopeMsg { body: Buffer; signatures: SignatureMsg[]; certificates: Buffer[] }
export interface DocumentBodyMsg { type: number; validAfter: number; validUntil: number; content: Buffer }
export interface KeyCertificateMsg { identity: Buffer; signingKey: Buffer }
export interface RelayDescriptorMsg {
  identity: Buffer; onionKey: Buffer; nickname: string; address: Buffer;
  orPort: number; dirPort: number; storagePort: number; declaredBandwidth: number;
  exitPolicy: string[]; family: Buffer[]; roles: number; moderators: Buffer[]; version: string;
  /** SPEC.md §6.4.1; absent = the descriptor carries no identity proof. */
  identityProof?: IdentityProofMsg;
}
/** SPEC.md §6.4.1: the identity's memory-hard proof of work. */
export interface IdentityProofMsg {
  anchorValidAfter: number; anchorDigest: Buffer; memoryKib: number; ops: number; difficulty: number; nonce: number;
}
/** `proven`: SPEC.md §8.5 proven cells in the vote's proven epoch (absent = 0). */
export interface VoteEntryMsg { descriptor: Buffer; flags: number; measured: number; proven?: number; stored?: number }
/** `provenEpoch`: the epoch the entries' `proven` values measure; 0 (or absent) = no measurement. */
/** SPEC.md §6.4.1: identity proof parameters as voted and as carried by the consensus. */
export interface PowParamsMsg { memoryKib: number; ops: number; difficulty: number; anchorPeriods: number }
/** SPEC.md §6.5: one consensus parameter. */
export interface ParamMsg { name: string; value: number }
/** SPEC.md §6.5: a parameter's name. */
export const PARAM_NAME = /^[a-z0-9-]{1,32}$/;
/** SPEC.md §6.5: at most this many parameters in a vote or a consensus. */
export const MAX_PARAMS = 32;
/** SPEC.md §6.5: the largest value of a parameter, 2^31 − 1. */
export const MAX_PARAM_VALUE = 0x7fff_ffff;
export interface VoteMsg {
  authority: Buffer; periodSeconds: number; knownFlags: number; entries: VoteEntryMsg[]; provenEpoch?: number;
  /** SPEC.md §6.4.1: the parameters this authority requires; absent = none voted. */
  identityPow?: PowParamsMsg;
  /** SPEC.md §6.5: the consensus parameters this authority votes, sorted by name; absent or empty = none. */
  params?: ParamMsg[];
}
export interface ConsensusMsg {
  method: number; freshUntil: number; periodSeconds: number; voters: Buffer[];
  policies: string[][]; keyLists: Buffer[][]; versions: string[];
  identities: Buffer; onionKeys: Buffer; addresses: Buffer;
  orPorts: number[]; dirPorts: number[]; storagePorts: number[]; flags: number[]; roles: number[];
  weights: number[]; policyIndex: number[]; familyIndex: number[]; moderatorIndex: number[];
  versionIndex: number[]; nicknames: string[];
  /** SPEC.md §8.6: 0 (or absent) = no measurement; then `proven` is empty. Decoders always set both. */
  provenEpoch?: number;
  /** Proven cells per relay for provenEpoch: empty when provenEpoch is 0, else exactly n entries. */
  proven?: number[];
  /** SPEC.md §9.20.2: audited stored bytes per node for provenEpoch: empty (none) or exactly n entries. */
  stored?: number[];
  /** SPEC.md §6.4.1/§6.7: the network's identity proof parameters; absent in older consensuses. */
  identityPow?: PowParamsMsg;
  /** SPEC.md §6.7.1: the consensus parameters, sorted by name; absent or empty = none. Decoders always set it. */
  params?: ParamMsg[];
}
export interface DetachedSignaturesMsg { digest: Buffer; signatures: SignatureMsg[]; certificates: Buffer[] }

// ---- field checkers (each names the field it refuses) ----
function bad(field: string, why: string): never {
  throw err('DOC_MALFORMED', `${field}: ${why}`, { field });
}

function bytes(v: unknown, field: string, len?: number, max = Infinity): Buffer {
  if (v == null || (Array.isArray(v) && v.length === 0)) v = Buffer.alloc(0);
  if (!(v instanceof Uint8Array)) bad(field, 'not bytes');
  const b = Buffer.from(v.buffer, v.byteOffset, v.length);
  if (len !== undefined && b.length !== len) bad(field, `must be ${len} bytes, is ${b.length}`);
  if (b.length > max) bad(field, `longer than ${max} bytes`);
  return b;
}

function num(v: unknown, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  let n: number;
  if (v == null) n = 0;
  else if (typeof v === 'number') n = v;
  else if (typeof v === 'object' && v !== null && 'low' in v && 'high' in v) {
    const l = v as { low: number; high: number };
    // Unsigned 64-bit: refuse anything above 2^53 - 1 (times and bandwidths fit far below).
    if (l.high >>> 0 > 0x1f_ffff) bad(field, 'integer too large');
    n = (l.high >>> 0) * 0x1_0000_0000 + (l.low >>> 0);
  } else bad(field, 'not an integer');
  if (!Number.isSafeInteger(n) || n < min || n > max) bad(field, `out of range [${min}, ${max}]: ${n}`);
  return n;
}

function list<T>(v: unknown, field: string, max: number, each: (x: unknown, f: string) => T): T[] {
  if (v == null) return [];
  if (!Array.isArray(v)) bad(field, 'not a list');
  if (v.length > max) bad(field, `more than ${max} entries`);
  return v.map((x, i) => each(x, `${field}[${i}]`));
}

const NICKNAME = /^[A-Za-z0-9]{1,19}$/;
const PRINTABLE = /^[\x21-\x7e][\x20-\x7e]*$/;

function str(v: unknown, field: string, max: number, pattern: RegExp = PRINTABLE, allowEmpty = false): string {
  if (v == null) v = '';
  if (typeof v !== 'string') bad(field, 'not a string');
  if (v === '' && allowEmpty) return v;
  if (v.length > max) bad(field, `longer than ${max} characters`);
  if (!pattern.test(v)) bad(field, 'characters not allowed');
  return v;
}

/** Drop default values so every writer emits the same canonical bytes (SPEC.md §6.7). */
function omitDefaults(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v == null || v === 0 || v === '' || v === false) continue;
    if ((v instanceof Uint8Array || Array.isArray(v)) && v.length === 0) continue;
    out[k] = v;
  }
  return out;
}

function encode(t: protobuf.Type, o: Record<string, unknown>): Buffer {
  const u = t.encode(t.create(omitDefaults(o))).finish();
  return Buffer.from(u.buffer, u.byteOffset, u.length);
}

/**
 * The most entries a repeated field may hold, by field number: `packed` for a column of varints
 * (each value counts, packed or not), `each` for the repeated fields inside each entry (a message).
 */
interface Bound { field: string; max: number; packed?: true; each?: Bounds }
type Bounds = Readonly<Record<number, Bound>>;
/** What the first pass saw: entries per bounded field, and the length of each field's last length-delimited value. */
interface Counts { entries: Map<number, number>; lastLength: Map<number, number> }

/**
 * SPEC.md §6.2.5: a first pass over the fields, before the full decode, that only counts entries
 * of the repeated fields in `bounds` and refuses one past its bound with the reason the checks
 * after decoding give (a few hundred compressed bytes can otherwise hold millions of empty
 * entries, each an object of the full decode). Skips everything else without decoding it.
 */
function countEntries(buf: Uint8Array, bounds: Bounds, name = ''): Counts {
  const r = protobuf.Reader.create(buf);
  const entries = new Map<number, number>();
  const lastLength = new Map<number, number>();
  const count = (no: number, b: Bound, k: number): number => {
    const c = (entries.get(no) ?? 0) + k;
    entries.set(no, c);
    if (c > b.max) bad(`${name}${b.field}`, `more than ${b.max} entries`);
    return c;
  };
  while (r.pos < r.len) {
    const tag = r.uint32();
    const no = tag >>> 3, wire = tag & 7;
    const b = bounds[no];
    if (wire !== 2) {
      r.skipType(wire, 0, no);
      if (b) count(no, b, 1);
      continue;
    }
    const len = r.uint32();
    const start = r.pos;
    r.skip(len);
    lastLength.set(no, len);
    if (!b) continue;
    if (b.packed) {
      let values = 0;
      for (let i = start; i < start + len; i++) if (buf[i] < 0x80) values++;
      count(no, b, values);
    } else {
      const c = count(no, b, 1);
      if (b.each) countEntries(buf.subarray(start, start + len), b.each, `${name}${b.field}[${c - 1}].`);
    }
  }
  return { entries, lastLength };
}

/** `bounds` and `check` (given what the first pass counted) refuse before the full decode. */
function decode(t: protobuf.Type, buf: Uint8Array, max: number, what: string, bounds?: Bounds, check?: (c: Counts) => void): Record<string, unknown> {
  if (buf.length > max) throw err('DOC_TOO_LARGE', `${what} of ${buf.length} bytes exceeds ${max}`, { size: buf.length, max });
  try {
    if (bounds) {
      const c = countEntries(buf, bounds);
      check?.(c);
    }
    return t.decode(buf) as unknown as Record<string, unknown>;
  } catch (e) {
    if (isBitcloudError(e)) throw e;
    throw err('DOC_MALFORMED', `${what} is not valid protobuf: ${(e as Error).message}`, undefined, e);
  }
}

// ---- signatures and envelopes ----
function sigOf(v: unknown, f: string): SignatureMsg {
  const s = v as Record<string, unknown>;
  const key = bytes(s.key, `${f}.key`, undefined, KEY_BYTES);
  if (key.length !== 0 && key.length !== KEY_BYTES) bad(`${f}.key`, `must be empty or ${KEY_BYTES} bytes`);
  return { signer: bytes(s.signer, `${f}.signer`, KEY_BYTES), key: key.length ? key : null, signature: bytes(s.signature, `${f}.signature`, SIG_BYTES) };
}
function sigObj(s: SignatureMsg): Record<string, unknown> {
  return omitDefaults({ signer: s.signer, key: s.key ?? undefined, signature: s.signature });
}

const ENVELOPE_BOUNDS: Bounds = {
  2: { field: 'envelope.signatures', max: LIMITS.maxSignatures },
  3: { field: 'envelope.certificates', max: LIMITS.maxSignatures },
};
export function encodeEnvelope(e: EnvelopeMsg): Buffer {
  return encode(T.Envelope, { body: e.body, signatures: e.signatures.map(sigObj), certificates: e.certificates });
}
export function decodeEnvelope(buf: Uint8Array, max: number): EnvelopeMsg {
  const m = decode(T.Envelope, buf, max, 'envelope', ENVELOPE_BOUNDS);
  return {
    body: bytes(m.body, 'envelope.body'),
    signatures: list(m.signatures, 'envelope.signatures', LIMITS.maxSignatures, sigOf),
    certificates: list(m.certificates, 'envelope.certificates', LIMITS.maxSignatures, (x, f) => bytes(x, f, undefined, LIMITS.certificateBytes)),
  };
}

export function encodeDocumentBody(b: DocumentBodyMsg): Buffer {
  return encode(T.DocumentBody, { ...b });
}
export function decodeDocumentBody(buf: Uint8Array, max: number): DocumentBodyMsg {
  const m = decode(T.DocumentBody, buf, max, 'document body');
  return {
    type: num(m.type, 'body.type', 1, 0xffff_ffff),
    validAfter: num(m.validAfter, 'body.valid_after'),
    validUntil: num(m.validUntil, 'body.valid_until'),
    content: bytes(m.content, 'body.content'),
  };
}

// ---- key certificate ----
export function encodeKeyCertificate(c: KeyCertificateMsg): Buffer {
  return encode(T.KeyCertificate, { ...c });
}
export function decodeKeyCertificate(buf: Uint8Array): KeyCertificateMsg {
  const m = decode(T.KeyCertificate, buf, LIMITS.certificateBytes, 'key certificate');
  return { identity: bytes(m.identity, 'cert.identity', KEY_BYTES), signingKey: bytes(m.signingKey, 'cert.signing_key', KEY_BYTES) };
}

// ---- relay descriptor ----
const key32 = (x: unknown, f: string) => bytes(x, f, KEY_BYTES);

export function encodeRelayDescriptor(d: RelayDescriptorMsg): Buffer {
  // SPEC.md §6.4: 0..16 moderator keys, 0..32 family keys, 0..64 exit rules; a descriptor with more would be refused by every reader.
  if (d.moderators.length > LIMITS.moderatorsMax) throw err('DOC_MALFORMED', `descriptor.moderators: at most ${LIMITS.moderatorsMax}, got ${d.moderators.length}`);
  if (d.family.length > LIMITS.familyMax) throw err('DOC_MALFORMED', `descriptor.family: at most ${LIMITS.familyMax}, got ${d.family.length}`);
  if (d.exitPolicy.length > LIMITS.exitPolicyRules) throw err('DOC_MALFORMED', `descriptor.exit_policy: at most ${LIMITS.exitPolicyRules} rules, got ${d.exitPolicy.length}`);
  return encode(T.RelayDescriptor, { ...d, identityProof: d.identityProof ? omitDefaults({ ...d.identityProof }) : undefined });
}

function identityProofOf(v: unknown): IdentityProofMsg | undefined {
  if (v == null) return undefined;
  const m = v as Record<string, unknown>;
  const f = 'descriptor.identity_proof';
  return {
    anchorValidAfter: num(m.anchorValidAfter, `${f}.anchor_valid_after`),
    anchorDigest: bytes(m.anchorDigest, `${f}.anchor_digest`, DIGEST_BYTES),
    memoryKib: num(m.memoryKib, `${f}.memory_kib`, 8, 4 * 1024 * 1024),
    ops: num(m.ops, `${f}.ops`, 1, 64),
    difficulty: num(m.difficulty, `${f}.difficulty`, 0, 64),
    nonce: num(m.nonce, `${f}.nonce`),
  };
}
const DESCRIPTOR_BOUNDS: Bounds = {
  9: { field: 'descriptor.exit_policy', max: LIMITS.exitPolicyRules },
  10: { field: 'descriptor.family', max: LIMITS.familyMax },
  12: { field: 'descriptor.moderators', max: LIMITS.moderatorsMax },
};
export function decodeRelayDescriptor(buf: Uint8Array): RelayDescriptorMsg {
  const m = decode(T.RelayDescriptor, buf, LIMITS.descriptorBytes, 'relay descriptor', DESCRIPTOR_BOUNDS);
  return {
    identity: key32(m.identity, 'descriptor.identity'),
    onionKey: key32(m.onionKey, 'descriptor.onion_key'),
    nickname: str(m.nickname, 'descriptor.nickname', LIMITS.nicknameMax, NICKNAME),
    address: bytes(m.address, 'descriptor.address', IPV4_BYTES),
    orPort: num(m.orPort, 'descriptor.or_port', 0, 65535), // 0 only for a hidden node (SPEC.md §9.21.1)
    dirPort: num(m.dirPort, 'descriptor.dir_port', 0, 65535),
    storagePort: num(m.storagePort, 'descriptor.storage_port', 0, 65535),
    declaredBandwidth: num(m.declaredBandwidth, 'descriptor.declared_bandwidth', 0, LIMITS.declaredBandwidthMax),
    exitPolicy: list(m.exitPolicy, 'descriptor.exit_policy', LIMITS.exitPolicyRules, (x, f) => str(x, f, LIMITS.exitPolicyRuleChars)),
    family: list(m.family, 'descriptor.family', LIMITS.familyMax, key32),
    roles: num(m.roles, 'descriptor.roles', 1, 15),
    moderators: list(m.moderators, 'descriptor.moderators', LIMITS.moderatorsMax, key32),
    version: str(m.version, 'descriptor.version', LIMITS.versionMax),
    identityProof: identityProofOf(m.identityProof),
  };
}

// ---- identity proof parameters (SPEC.md §6.4.1) ----
/** The ranges an authority's configuration accepts (src/dir/identity-pow.ts parsePowParams). */
export const POW_PARAM_RANGES = {
  memoryKib: [8, 4 * 1024 * 1024], ops: [1, 16], difficulty: [0, 32], anchorPeriods: [2, 720],
} as const;

function powParamsOf(v: unknown, f: string): PowParamsMsg | undefined {
  if (v == null) return undefined;
  const m = v as Record<string, unknown>;
  const R = POW_PARAM_RANGES;
  return {
    memoryKib: num(m.memoryKib, `${f}.memory_kib`, R.memoryKib[0], R.memoryKib[1]),
    ops: num(m.ops, `${f}.ops`, R.ops[0], R.ops[1]),
    difficulty: num(m.difficulty, `${f}.difficulty`, R.difficulty[0], R.difficulty[1]),
    anchorPeriods: num(m.anchorPeriods, `${f}.anchor_periods`, R.anchorPeriods[0], R.anchorPeriods[1]),
  };
}
const powParamsObj = (p: PowParamsMsg | undefined) => (p ? omitDefaults({ ...p }) : undefined);

// ---- consensus parameters (SPEC.md §6.5, §6.7.2) ----
/**
 * `params` of a vote or a consensus: at most MAX_PARAMS, each name PARAM_NAME, names strictly
 * ascending (sorted, none twice), each value at most MAX_PARAM_VALUE. DOC_MALFORMED otherwise.
 */
function paramsOf(v: unknown, f: string): ParamMsg[] {
  const out = list(v, f, MAX_PARAMS, (x, g) => {
    const m = x as Record<string, unknown>;
    return { name: str(m.name, `${g}.name`, 32, PARAM_NAME), value: num(m.value, `${g}.value`, 0, MAX_PARAM_VALUE) };
  });
  for (let i = 1; i < out.length; i++) if (!(out[i - 1].name < out[i].name)) bad(`${f}[${i}].name`, 'names are not sorted or repeat');
  return out;
}
const paramsObj = (ps: readonly ParamMsg[] | undefined) => (ps ?? []).map((p) => omitDefaults({ ...p }));

// ---- vote ----
export function encodeVote(v: VoteMsg): Buffer {
  return encode(T.Vote, { ...v, entries: v.entries.map((e) => omitDefaults({ ...e })), identityPow: powParamsObj(v.identityPow), params: paramsObj(v.params) });
}
/**
 * The bytes one entry adds to an encoded vote: its field tag (1 byte), its length varint and the
 * entry itself, exactly as encodeVote writes it (repeated entries are concatenated).
 */
export function voteEntryBytes(e: VoteEntryMsg): number {
  const n = T.VoteEntry.encode(T.VoteEntry.create(omitDefaults({ ...e }))).finish().length;
  return 1 + varintBytes(n) + n;
}
function varintBytes(n: number): number {
  let b = 1;
  for (let x = n; x >= 0x80; x = Math.floor(x / 0x80)) b++;
  return b;
}
export function decodeVote(buf: Uint8Array): VoteMsg {
  const m = decode(T.Vote, buf, LIMITS.voteBytes, 'vote', {
    4: { field: 'vote.entries', max: LIMITS.voteEntriesMax },
    7: { field: 'vote.params', max: MAX_PARAMS },
  });
  const provenEpoch = num(m.provenEpoch, 'vote.proven_epoch');
  const out: VoteMsg = {
    authority: key32(m.authority, 'vote.authority'),
    periodSeconds: num(m.periodSeconds, 'vote.period_seconds', 1, 0xffff_ffff),
    knownFlags: num(m.knownFlags, 'vote.known_flags', 0, 0x7f),
    entries: list(m.entries, 'vote.entries', LIMITS.voteEntriesMax, (x, f) => {
      const e = x as Record<string, unknown>;
      // SPEC.md §6.5: a vote without a measurement (proven_epoch = 0) has no proven values.
      const proven = num(e.proven, `${f}.proven`, 0, provenEpoch === 0 ? 0 : Number.MAX_SAFE_INTEGER);
      const stored = num(e.stored, `${f}.stored`, 0, provenEpoch === 0 ? 0 : Number.MAX_SAFE_INTEGER);
      return {
        descriptor: bytes(e.descriptor, `${f}.descriptor`, undefined, LIMITS.descriptorBytes),
        flags: num(e.flags, `${f}.flags`, 0, 0x7f),
        measured: num(e.measured, `${f}.measured`, 0, 0xffff_ffff),
        proven,
        stored,
      };
    }),
    provenEpoch,
  };
  const pow = powParamsOf(m.identityPow, 'vote.identity_pow');
  if (pow) out.identityPow = pow;
  const params = paramsOf(m.params, 'vote.params');
  if (params.length) out.params = params;
  return out;
}

// ---- consensus ----
export function encodeConsensus(c: ConsensusMsg): Buffer {
  if ((c.provenEpoch ?? 0) === 0 ? (c.proven?.length ?? 0) !== 0 : c.proven?.length !== c.identities.length / KEY_BYTES) {
    bad('consensus.proven', 'must be empty without a proven epoch, else one entry per relay');
  }
  if ((c.stored?.length ?? 0) !== 0 && ((c.provenEpoch ?? 0) === 0 || c.stored!.length !== c.identities.length / KEY_BYTES)) {
    bad('consensus.stored', 'must be empty without a proven epoch, else empty or one entry per relay');
  }
  return encode(T.Consensus, {
    ...c,
    policies: c.policies.map((rules) => omitDefaults({ rules })),
    keyLists: c.keyLists.map((keys) => omitDefaults({ keys })),
    identityPow: powParamsObj(c.identityPow),
    params: paramsObj(c.params),
  });
}

/** Consensus fields with one entry per relay (packed varints), by field number. */
const CONSENSUS_COLUMNS: Readonly<Record<number, string>> = {
  13: 'consensus.or_ports', 14: 'consensus.dir_ports', 15: 'consensus.storage_ports', 16: 'consensus.flags', 17: 'consensus.roles',
  18: 'consensus.weights', 19: 'consensus.policy_index', 20: 'consensus.family_index', 21: 'consensus.moderator_index',
  22: 'consensus.version_index', 25: 'consensus.proven', 27: 'consensus.stored',
};
/** SPEC.md §6.7.2: the tables' bounds for n relays (as the checks after decoding have them). */
const consensusTables = (n: number): Bounds => ({
  4: { field: 'consensus.voters', max: LIMITS.maxSignatures },
  5: { field: 'consensus.policies', max: n + 1, each: { 1: { field: 'rules', max: LIMITS.exitPolicyRules } } },
  6: { field: 'consensus.key_lists', max: 2 * n + 2, each: { 1: { field: 'keys', max: LIMITS.familyMax } } },
  7: { field: 'consensus.versions', max: n + 1 },
  23: { field: 'consensus.nicknames', max: n },
});
/** The first pass's bounds: those of the most relays a consensus may list. */
const CONSENSUS_BOUNDS: Bounds = {
  ...consensusTables(LIMITS.consensusRelaysMax),
  28: { field: 'consensus.params', max: MAX_PARAMS },
  ...Object.fromEntries(Object.entries(CONSENSUS_COLUMNS).map(([no, field]) => [no, { field, max: LIMITS.consensusRelaysMax, packed: true }])),
};
/** Then, with n known from `identities` (field 10), each count against n. */
function checkConsensusCounts(c: Counts): void {
  const ids = c.lastLength.get(10) ?? 0;
  if (ids % KEY_BYTES !== 0) return; // refused after decoding, with its reason
  const n = ids / KEY_BYTES;
  for (const [no, b] of Object.entries(consensusTables(n))) {
    const k = c.entries.get(Number(no)) ?? 0;
    if (k > b.max) bad(b.field, `more than ${b.max} entries`);
  }
  for (const [no, field] of Object.entries(CONSENSUS_COLUMNS)) {
    const k = c.entries.get(Number(no)) ?? 0;
    if (k > n) bad(field, `has ${k} entries for ${n} relays`);
  }
}

/** Decodes and checks the column shapes (every column has one entry per relay; indexes in range). */
export function decodeConsensus(buf: Uint8Array): ConsensusMsg {
  const m = decode(T.Consensus, buf, LIMITS.consensusBytes, 'consensus', CONSENSUS_BOUNDS, checkConsensusCounts);
  const ids = bytes(m.identities, 'consensus.identities');
  if (ids.length % KEY_BYTES !== 0) bad('consensus.identities', 'length is not a multiple of 32');
  const n = ids.length / KEY_BYTES;
  if (n > LIMITS.consensusRelaysMax) bad('consensus.identities', `more than ${LIMITS.consensusRelaysMax} relays`);
  const u32 = (x: unknown, f: string) => num(x, f, 0, 0xffff_ffff);
  // Columns are checked in one tight loop and returned as decoded (10,000s of entries).
  const col = (v: unknown, f: string, max: number): number[] => {
    const a = v == null ? [] : v;
    if (!Array.isArray(a)) bad(f, 'not a list');
    if (a.length !== n) bad(f, `has ${a.length} entries for ${n} relays`);
    for (let i = 0; i < n; i++) {
      const x = a[i];
      if (typeof x !== 'number' || !(x >= 0 && x <= max)) bad(`${f}[${i}]`, `out of range [0, ${max}]`);
    }
    return a as number[];
  };
  const policies = list(m.policies, 'consensus.policies', n + 1, (x, f) =>
    list((x as Record<string, unknown>).rules, `${f}.rules`, LIMITS.exitPolicyRules, (r, g) => str(r, g, LIMITS.exitPolicyRuleChars)));
  const keyLists = list(m.keyLists, 'consensus.key_lists', 2 * n + 2, (x, f) =>
    list((x as Record<string, unknown>).keys, `${f}.keys`, LIMITS.familyMax, key32));
  const versions = list(m.versions, 'consensus.versions', n + 1, (x, f) => str(x, f, LIMITS.versionMax));
  const out: ConsensusMsg = {
    method: num(m.method, 'consensus.method', 1, 1),
    freshUntil: num(m.freshUntil, 'consensus.fresh_until'),
    periodSeconds: u32(m.periodSeconds, 'consensus.period_seconds'),
    voters: list(m.voters, 'consensus.voters', LIMITS.maxSignatures, key32),
    policies, keyLists, versions,
    identities: ids,
    onionKeys: bytes(m.onionKeys, 'consensus.onion_keys', n * KEY_BYTES),
    addresses: bytes(m.addresses, 'consensus.addresses', n * IPV4_BYTES),
    orPorts: col(m.orPorts, 'consensus.or_ports', 65535),
    dirPorts: col(m.dirPorts, 'consensus.dir_ports', 65535),
    storagePorts: col(m.storagePorts, 'consensus.storage_ports', 65535),
    flags: col(m.flags, 'consensus.flags', 0x7f),
    roles: col(m.roles, 'consensus.roles', 15),
    weights: col(m.weights, 'consensus.weights', 0xffff_ffff),
    policyIndex: col(m.policyIndex, 'consensus.policy_index', Math.max(0, policies.length - 1)),
    familyIndex: col(m.familyIndex, 'consensus.family_index', Math.max(0, keyLists.length - 1)),
    moderatorIndex: col(m.moderatorIndex, 'consensus.moderator_index', Math.max(0, keyLists.length - 1)),
    versionIndex: col(m.versionIndex, 'consensus.version_index', Math.max(0, versions.length - 1)),
    nicknames: list(m.nicknames, 'consensus.nicknames', n, (x, f) => str(x, f, LIMITS.nicknameMax, NICKNAME)),
    provenEpoch: num(m.provenEpoch, 'consensus.proven_epoch'),
    proven: [],
    stored: [],
  };
  // SPEC.md §6.7.2: `proven` is empty without a proven epoch, else one entry per relay. uint64
  // values may arrive as Long objects: each goes through `num` (0..2^53-1).
  const provenRaw = m.proven == null ? [] : m.proven;
  if (!Array.isArray(provenRaw)) bad('consensus.proven', 'not a list');
  const wantProven = out.provenEpoch === 0 ? 0 : n;
  if (provenRaw.length !== wantProven) bad('consensus.proven', `has ${provenRaw.length} entries, expected ${wantProven} (proven_epoch ${out.provenEpoch}, ${n} relays)`);
  const proven = new Array<number>(wantProven);
  for (let i = 0; i < wantProven; i++) proven[i] = num(provenRaw[i], `consensus.proven[${i}]`);
  out.proven = proven;
  // SPEC.md §9.20.2: `stored` is empty, or (with a proven epoch) one entry per relay.
  const storedRaw = m.stored == null ? [] : m.stored;
  if (!Array.isArray(storedRaw)) bad('consensus.stored', 'not a list');
  if (storedRaw.length !== 0 && (out.provenEpoch === 0 || storedRaw.length !== n)) bad('consensus.stored', `has ${storedRaw.length} entries, expected 0 or ${out.provenEpoch === 0 ? 0 : n}`);
  out.stored = storedRaw.map((x, i) => num(x, `consensus.stored[${i}]`));
  const pow = powParamsOf(m.identityPow, 'consensus.identity_pow');
  if (pow) out.identityPow = pow;
  // SPEC.md §6.7.2: absent (an older consensus) = no parameters.
  out.params = paramsOf(m.params, 'consensus.params');
  if (out.nicknames.length !== n) bad('consensus.nicknames', `has ${out.nicknames.length} entries for ${n} relays`);
  if (n > 0 && (policies.length === 0 || keyLists.length === 0 || versions.length === 0)) bad('consensus', 'a table referenced by relays is empty');
  return out;
}

// ---- detached signatures ----
export function encodeDetachedSignatures(d: DetachedSignaturesMsg): Buffer {
  return encode(T.DetachedSignatures, { digest: d.digest, signatures: d.signatures.map(sigObj), certificates: d.certificates });
}
export function decodeDetachedSignatures(buf: Uint8Array): DetachedSignaturesMsg {
  const m = decode(T.DetachedSignatures, buf, LIMITS.signaturesBytes, 'detached signatures', {
    2: { field: 'signatures.signatures', max: LIMITS.maxSignatures },
    3: { field: 'signatures.certificates', max: LIMITS.maxSignatures },
  });
  return {
    digest: bytes(m.digest, 'signatures.digest', DIGEST_BYTES),
    signatures: list(m.signatures, 'signatures.signatures', LIMITS.maxSignatures, sigOf),
    certificates: list(m.certificates, 'signatures.certificates', LIMITS.maxSignatures, (x, f) => bytes(x, f, undefined, LIMITS.certificateBytes)),
  };
}
