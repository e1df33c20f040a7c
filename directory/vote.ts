// SPEC.md §6.5: votes. Each period every authority signs, with its certified signing key, the
// list of relays it found running, the flags it assigns them and the bandwidth it measured.
import { err } from '../src/errors';
import type { Ed25519KeyPair } from '../src/crypto/primitives';
import { fingerprint } from '../src/crypto/keys';
import { decodeVote, encodeVote, LIMITS, voteEntryBytes, type ParamMsg, type PowParamsMsg, type VoteEntryMsg } from '../src/wire/docs';
import { DocType, makeBody, makeSignature, openEnvelope, sealEnvelope, verifyBodySignature } from '../src/wire/envelope';
import { verifyDescriptor, type VerifiedDescriptor } from '../src/dir/descriptor';
import { verifyKeyCertificate } from '../src/dir/certificate';
import type { AuthorityInfo } from '../src/dir/authorities';
import { isoTime } from '../src/ops/log';

/** What consensus computation needs from one vote (VerifiedVote has it; the bench builds it directly). */
export interface VoteInput {
  /** Identity of the voting authority. */
  authority: Buffer;
  knownFlags: number;
  entries: VoteInputEntry[];
  /** SPEC.md §6.5/§8.5: the epoch the entries' `proven` values measure; 0 or absent = no measurement. */
  provenEpoch?: number;
  /** SPEC.md §6.4.1: the identity proof parameters this authority votes; absent = none. */
  identityPow?: PowParamsMsg;
  /** SPEC.md §6.5: the consensus parameters this authority votes, sorted by name; absent = none. */
  params?: readonly ParamMsg[];
}
export interface VoteInputEntry {
  descriptor: VerifiedDescriptor;
  flags: number;
  /** Kilobytes per second. */
  measured: number;
  /** Proven cells in the vote's provenEpoch (absent = 0). */
  proven?: number;
  /** SPEC.md §9.20.2: audited stored bytes in the vote's provenEpoch (absent = 0). */
  stored?: number;
}

export interface VerifiedVote extends VoteInput {
  fingerprint: string;
  periodStart: number;
  periodSeconds: number;
  digest: Buffer;
  /** Envelope bytes as received (served again at /bitcloud/vote/current). */
  raw: Buffer;
}

export interface Signer {
  identity: Buffer;
  signingKey: Ed25519KeyPair;
  /** Envelope bytes of the certificate for signingKey. */
  certificate: Buffer;
}

/** The epoch a vote (or consensus) for the period starting at `periodStart` measures: k − 2 (SPEC.md §8.5). */
export function provenEpochFor(periodStart: number, periodSeconds: number): number {
  return Math.floor(periodStart / (periodSeconds * 1000)) - 2;
}

/** One relay of an own vote, as buildVote takes it. */
export interface VoteEntryIn { descriptorRaw: Buffer; identity: Buffer; flags: number; measured: number; proven?: number; stored?: number }

/** SPEC.md §6.5 "Bounds": the most entries and bytes an own vote may take (LIMITS; a test may pass smaller ones). */
export interface VoteBounds { entries: number; bytes: number }
export const VOTE_BOUNDS: VoteBounds = { entries: LIMITS.voteEntriesMax, bytes: LIMITS.voteBytes };

/**
 * Room left for the envelope's two length varints (the body's content, the envelope's body) to
 * grow when entries are added to an empty vote: each grows by at most 4 bytes.
 */
const VARINT_GROWTH = 16;

/**
 * Sign a vote for the period starting at `periodStart` (ms). Entries are sorted here.
 * `provenEpoch` (0 = none) must be provenEpochFor(periodStart, periodSeconds) when given.
 * A vote over its bounds leaves relays out (SPEC.md §6.5 "Bounds"); see buildVoteWithin.
 */
export function buildVote(
  signer: Signer, periodStart: number, periodSeconds: number, knownFlags: number,
  entries: VoteEntryIn[], provenEpoch = 0, identityPow?: PowParamsMsg, bounds: VoteBounds = VOTE_BOUNDS, params: readonly ParamMsg[] = [],
): Buffer {
  return buildVoteWithin(signer, periodStart, periodSeconds, knownFlags, entries, provenEpoch, identityPow, bounds, params).raw;
}

/**
 * buildVote, also returning the entries the vote holds (the same objects). SPEC.md §6.5 "Bounds":
 * when all entries would exceed `bounds.entries` or `bounds.bytes`, relays are left out in
 * ascending order of `measured`, then ascending identity, until the vote fits both. Sizes come
 * from each entry's encoded size and one empty vote, so at most three votes are encoded.
 */
export function buildVoteWithin<E extends VoteEntryIn>(
  signer: Signer, periodStart: number, periodSeconds: number, knownFlags: number,
  entries: readonly E[], provenEpoch = 0, identityPow?: PowParamsMsg, bounds: VoteBounds = VOTE_BOUNDS, params: readonly ParamMsg[] = [],
): { raw: Buffer; kept: E[] } {
  const msg = (e: VoteEntryIn): VoteEntryMsg => ({ descriptor: e.descriptorRaw, flags: e.flags, measured: e.measured, proven: provenEpoch ? e.proven ?? 0 : 0, stored: provenEpoch ? e.stored ?? 0 : 0 });
  const sign = (list: readonly E[]): Buffer => {
    const sorted = [...list].sort((a, b) => Buffer.compare(a.identity, b.identity));
    const content = encodeVote({ authority: signer.identity, periodSeconds, knownFlags, provenEpoch, identityPow, params: [...params], entries: sorted.map(msg) });
    const body = makeBody(DocType.VOTE, periodStart, periodStart + periodSeconds * 1000, content);
    return sealEnvelope(body, [makeSignature(body, signer.identity, signer.signingKey)], [signer.certificate]);
  };
  if (entries.length <= bounds.entries) {
    const raw = sign(entries);
    if (raw.length <= bounds.bytes) return { raw, kept: [...entries] };
  }
  // Kept first: descending measured, then descending identity; the vote keeps a prefix.
  const order = [...entries].sort((a, b) => b.measured - a.measured || Buffer.compare(b.identity, a.identity));
  let room = bounds.bytes - sign([]).length - VARINT_GROWTH;
  let k = 0;
  for (; k < order.length && k < bounds.entries; k++) {
    room -= voteEntryBytes(msg(order[k]));
    if (room < 0) break;
  }
  const kept = order.slice(0, k);
  return { raw: sign(kept), kept };
}

/**
 * SPEC.md §6.5: the clock skew a vote's certificate and descriptors are judged with at the period
 * start: the largest `clockSkewSeconds` an authority may set (1 h), the same on every authority.
 * Judged with each authority's own setting, a descriptor published 90 s ahead would be in one
 * authority's vote and refuse that whole vote at another with a smaller skew, so the two would hold
 * different votes and compute different consensuses.
 */
export const VOTE_CHECK_SKEW_MS = 3_600_000;

/**
 * SPEC.md §6.5: verify a vote for the expected period. Refusals: DOC_* codes, VOTE_UNKNOWN_AUTHORITY,
 * VOTE_WRONG_PERIOD (valid_after, period_seconds or valid_until not the period's), VOTE_MALFORMED. Each descriptor inside is verified (its own signature) and
 * must be valid at the period start; a vote carrying a bad one is refused whole. VOTE_MALFORMED is
 * thrown only once the authority's signature verified, with `detail.signedBy` its fingerprint.
 */
export function verifyVote(
  raw: Uint8Array, authorities: readonly AuthorityInfo[],
  expect: { periodStart: number; periodSeconds: number }, skewMs = VOTE_CHECK_SKEW_MS,
): VerifiedVote {
  const doc = openEnvelope(raw, DocType.VOTE, LIMITS.voteBytes);
  const v = decodeVote(doc.content);
  const fp = fingerprint(v.authority);
  if (!authorities.some((a) => a.fingerprint === fp)) throw err('VOTE_UNKNOWN_AUTHORITY', `vote from an authority not in the configuration: ${fp}`);
  if (doc.validAfter !== expect.periodStart || v.periodSeconds !== expect.periodSeconds) {
    throw err('VOTE_WRONG_PERIOD', `vote is for ${isoTime(doc.validAfter)} (${v.periodSeconds} s), expected ${isoTime(expect.periodStart)} (${expect.periodSeconds} s)`);
  }
  // SPEC.md §6.5: a vote is valid for exactly its period, valid_until = valid_after + P.
  const until = expect.periodStart + expect.periodSeconds * 1000;
  if (doc.validUntil !== until) {
    throw err('VOTE_WRONG_PERIOD', `vote is valid until ${isoTime(doc.validUntil)}, its period ends at ${isoTime(until)}`, { validUntil: doc.validUntil });
  }
  const sig = doc.signatures.find((s) => s.signer.equals(v.authority));
  if (!sig || !sig.key) throw err('DOC_WRONG_SIGNER', 'vote is not signed by the authority it names');
  const cert = doc.certificates.map((c) => { try { return verifyKeyCertificate(c, expect.periodStart, skewMs); } catch { return null; } })
    .find((c) => c && c.identity.equals(v.authority) && c.signingKey.equals(sig.key!));
  if (!cert) throw err('DOC_WRONG_SIGNER', 'vote signing key has no valid certificate from the authority');
  if (!verifyBodySignature(doc.body, sig.signature, cert.signingKey)) throw err('DOC_BAD_SIGNATURE', 'vote signature does not verify');
  // From here on the vote is the authority's own signed word: a refusal names it (`signedBy`).
  const signed = { signedBy: fp };
  const provenEpoch = v.provenEpoch ?? 0;
  if (provenEpoch !== 0 && provenEpoch !== provenEpochFor(expect.periodStart, expect.periodSeconds)) {
    throw err('VOTE_MALFORMED', `vote measures epoch ${provenEpoch}; a vote for this period measures ${provenEpochFor(expect.periodStart, expect.periodSeconds)} (or nothing)`, signed);
  }
  const entries: VoteInputEntry[] = [];
  let prev: Buffer | null = null;
  for (const [i, e] of v.entries.entries()) {
    let d: VerifiedDescriptor;
    try {
      d = verifyDescriptor(e.descriptor, { now: expect.periodStart, skewMs });
    } catch (x) {
      throw err('VOTE_MALFORMED', `vote entry ${i}: ${(x as Error).message}`, signed, x);
    }
    if (prev && Buffer.compare(prev, d.identity) >= 0) throw err('VOTE_MALFORMED', 'vote entries are not sorted by identity or repeat', signed);
    prev = d.identity;
    entries.push({ descriptor: d, flags: e.flags, measured: e.measured, proven: e.proven ?? 0, stored: e.stored ?? 0 });
  }
  return {
    authority: v.authority, fingerprint: fp, knownFlags: v.knownFlags, entries, provenEpoch,
    ...(v.identityPow ? { identityPow: v.identityPow } : {}),
    ...(v.params ? { params: v.params } : {}),
    periodStart: doc.validAfter, periodSeconds: v.periodSeconds, digest: doc.digest, raw: doc.raw,
  };
}
