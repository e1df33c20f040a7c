// SPEC.md §6.7–6.8: consensus verification (tor-checkable style). Bytes become an
// UncheckedConsensus; only `check` turns it into a VerifiedConsensus, after counting valid
// signatures from more than half of ALL configured authorities over the exact bytes received,
// each through a certificate of that authority's signing key, and checking the window.
import { err } from '../errors';
import { fingerprint } from '../crypto/keys';
import { decodeConsensus, LIMITS, type ConsensusMsg } from '../wire/docs';
import { DocType, openEnvelope, verifyDigestSignature, type OpenedDocument } from '../wire/envelope';
import { sha256 } from '../crypto/primitives';
import type { SignatureMsg } from '../wire/docs';
import { indexCertificates, type VerifiedCertificate } from './certificate';
import { majorityOf, type AuthorityInfo } from './authorities';
import { formatIPv4 } from './exit-policy';
import { flagsFromMask, rolesFromMask, type ConsensusRelay, type Flag, type Role, type VerifiedConsensus } from './types';
import { isoTime } from '../ops/log';

/** Default clock skew tolerated on validity windows. */
export const CONSENSUS_SKEW_MS = 60_000;

export interface SignatureCount {
  /** Fingerprints of configured authorities with a valid, certified signature. */
  valid: string[];
  /** Signers that are not configured authorities. */
  unknown: string[];
  /** Configured authorities whose signature failed (bad bytes, no certificate, expired certificate). */
  bad: string[];
}

/**
 * Count the valid authority signatures on `body` (shared by clients and authorities). `digest`,
 * when the caller holds it, is the body's SHA-256 (SPEC.md §6.2.3): the body is then not hashed
 * again (an authority checks each fetched signature on its own, a body of up to 16 MiB).
 */
export function countSignatures(
  body: Uint8Array, signatures: readonly SignatureMsg[], certificates: readonly Uint8Array[],
  authorities: readonly AuthorityInfo[], now: number, skewMs = CONSENSUS_SKEW_MS, digest: Uint8Array = sha256(body),
): SignatureCount {
  const certs: Map<string, VerifiedCertificate> = indexCertificates(certificates, now, skewMs);
  const known = new Set(authorities.map((a) => a.fingerprint));
  const valid = new Set<string>(), unknown = new Set<string>(), bad = new Set<string>();
  for (const s of signatures) {
    const fp = fingerprint(s.signer);
    if (!known.has(fp)) { unknown.add(fp); continue; }
    if (valid.has(fp)) continue;
    // SPEC.md §6.3: an authority signs with its certified signing key, never its identity.
    const cert = s.key ? certs.get(`${fp}/${s.key.toString('hex')}`) : undefined;
    if (cert && verifyDigestSignature(digest, s.signature, cert.signingKey)) valid.add(fp);
    else bad.add(fp);
  }
  for (const v of valid) bad.delete(v);
  return { valid: [...valid].sort(), unknown: [...unknown].sort(), bad: [...bad].sort() };
}

/** A consensus decoded from bytes, not yet trusted. */
export class UncheckedConsensus {
  private constructor(private readonly doc: OpenedDocument, private readonly msg: ConsensusMsg) {}

  /**
   * Decode (SPEC.md §6.7.2); throws DOC_* codes for anything malformed, and CONSENSUS_MALFORMED
   * when the relays are not strictly ascending by identity. Verifies no signature.
   */
  static parse(raw: Uint8Array): UncheckedConsensus {
    const doc = openEnvelope(raw, DocType.CONSENSUS, LIMITS.consensusBytes);
    const msg = decodeConsensus(doc.content);
    if (!(msg.freshUntil > doc.validAfter && msg.freshUntil <= doc.validUntil)) {
      throw err('DOC_MALFORMED', 'consensus fresh_until is outside its validity window', { field: 'consensus.fresh_until' });
    }
    // SPEC.md §6.7.2: a consensus carries the measurements of the epoch whose upload window
    // closed when its period began (§8.5), and of no other.
    const pe = msg.provenEpoch ?? 0;
    if (pe !== 0 && pe * msg.periodSeconds * 1000 !== doc.validAfter - 2 * msg.periodSeconds * 1000) {
      throw err('DOC_MALFORMED', `consensus proven_epoch ${pe} is not valid_after / period − 2`, { field: 'consensus.proven_epoch' });
    }
    // SPEC.md §6.7.2: relays strictly ascending by identity is a decoding rule, so it is checked
    // here, before signatures and the window: an unsorted consensus is CONSENSUS_MALFORMED
    // whoever signed it and whenever it is read.
    const ids = msg.identities;
    for (let off = 32; off < ids.length; off += 32) {
      if (Buffer.compare(ids.subarray(off - 32, off), ids.subarray(off, off + 32)) >= 0) {
        throw err('CONSENSUS_MALFORMED', 'relays are not sorted by identity or repeat', { index: off / 32 });
      }
    }
    return new UncheckedConsensus(doc, msg);
  }

  get validAfter(): number { return this.doc.validAfter; }
  get validUntil(): number { return this.doc.validUntil; }
  get digest(): Buffer { return this.doc.digest; }

  /**
   * SPEC.md §6.8: accept only when more than half of the configured authorities signed and
   * `now` lies inside [valid_after - skew, valid_until]. Throws CONSENSUS_NOT_YET_VALID,
   * CONSENSUS_EXPIRED or CONSENSUS_TOO_FEW_SIGNATURES (CONSENSUS_MALFORMED is parse's).
   */
  check(authorities: readonly AuthorityInfo[], now: number, skewMs = CONSENSUS_SKEW_MS): VerifiedConsensus {
    const d = this.doc;
    if (now + skewMs < d.validAfter) {
      throw err('CONSENSUS_NOT_YET_VALID', `consensus is not valid until ${isoTime(d.validAfter)}`, { validAfter: d.validAfter });
    }
    if (now > d.validUntil) {
      throw err('CONSENSUS_EXPIRED', `consensus expired at ${isoTime(d.validUntil)}`, { validUntil: d.validUntil });
    }
    const count = countSignatures(d.body, d.signatures, d.certificates, authorities, now, skewMs);
    const need = majorityOf(authorities.length);
    if (count.valid.length < need) {
      const parts = [`${count.valid.length} of ${authorities.length} configured authorities signed validly (need ${need})`];
      if (count.bad.length) parts.push(`bad or uncertified signatures from ${count.bad.join(', ')}`);
      if (count.unknown.length) parts.push(`signatures by unknown keys ${count.unknown.join(', ')}`);
      throw err('CONSENSUS_TOO_FEW_SIGNATURES', parts.join('; '), { ...count, need });
    }
    return buildVerified(d, this.msg, count.valid);
  }
}

/** Parse and check in one step. */
export function verifyConsensus(raw: Uint8Array, authorities: readonly AuthorityInfo[], now: number, skewMs = CONSENSUS_SKEW_MS): VerifiedConsensus {
  return UncheckedConsensus.parse(raw).check(authorities, now, skewMs);
}

function buildVerified(d: OpenedDocument, m: ConsensusMsg, signers: string[]): VerifiedConsensus {
  const n = m.identities.length / 32;
  // Values many relays share are built once and frozen: 10,000 relays allocate little.
  const keyListFps = m.keyLists.map((l) => Object.freeze(l.map(fingerprint)));
  const policies = m.policies.map((p) => Object.freeze(p));
  const flagSets = new Map<number, ReadonlySet<Flag>>();
  const roleLists = new Map<number, readonly Role[]>();
  const flagsOf = (mask: number) => { let f = flagSets.get(mask); if (!f) flagSets.set(mask, (f = flagsFromMask(mask))); return f; };
  const rolesOf = (mask: number) => { let r = roleLists.get(mask); if (!r) roleLists.set(mask, (r = Object.freeze(rolesFromMask(mask)))); return r; };
  const relays: ConsensusRelay[] = new Array(n);
  const provenEpoch = m.provenEpoch ? m.provenEpoch : null;
  const proven = provenEpoch !== null && m.proven && m.proven.length === n ? m.proven : null;
  const stored = provenEpoch !== null && m.stored && m.stored.length === n ? m.stored : null;
  for (let i = 0; i < n; i++) {
    const identity = m.identities.subarray(i * 32, i * 32 + 32);
    const moderators = keyListFps[m.moderatorIndex[i]];
    relays[i] = {
      identity,
      fingerprint: identity.toString('hex'),
      nickname: m.nicknames[i],
      onionKey: m.onionKeys.subarray(i * 32, i * 32 + 32),
      address: formatIPv4(m.addresses.readUInt32BE(i * 4)),
      orPort: m.orPorts[i],
      dirPort: m.dirPorts[i],
      storagePort: m.storagePorts[i],
      flags: flagsOf(m.flags[i]),
      weight: m.weights[i],
      exitPolicy: policies[m.policyIndex[i]],
      family: keyListFps[m.familyIndex[i]],
      roles: rolesOf(m.roles[i]),
      moderators,
      unmoderated: moderators.length === 0,
      version: m.versions[m.versionIndex[i]],
      proven: proven ? proven[i] : 0,
      stored: stored ? stored[i] : 0,
    };
  }
  return {
    validAfter: d.validAfter,
    freshUntil: m.freshUntil,
    validUntil: d.validUntil,
    periodSeconds: m.periodSeconds,
    provenEpoch,
    identityPow: m.identityPow ? { ...m.identityPow } : null,
    params: new Map((m.params ?? []).map((p) => [p.name, p.value])),
    relays,
    signers,
    voters: m.voters.map(fingerprint),
    bodyBytes: d.body,
    digest: d.digest,
    envelopeBytes: d.raw,
  } as unknown as VerifiedConsensus;
}

/**
 * SPEC.md §6.8, §6.9: the consensus of the period starting at T is fresh until T + P but its
 * successor is only computed at T + P + P/2 and published by T + 2P, so a healthy network's newest
 * consensus is past fresh_until for part of every period. It is stale only when the successor is
 * overdue: after fresh_until + P.
 */
export function isConsensusStale(c: Pick<VerifiedConsensus, 'freshUntil' | 'periodSeconds'>, now: number): boolean {
  return now > c.freshUntil + c.periodSeconds * 1000;
}

/**
 * SPEC.md §6.3, §9.21.7: the signing keys a verified consensus certifies for the configured
 * authorities that signed it (certificates valid at `now`), by authority fingerprint. A hidden
 * node seals its pseudonym registration to these.
 */
export function authoritySigningKeys(c: VerifiedConsensus, authorities: readonly AuthorityInfo[], now: number, skewMs = CONSENSUS_SKEW_MS): Map<string, Buffer> {
  const doc = openEnvelope(c.envelopeBytes, DocType.CONSENSUS, LIMITS.consensusBytes);
  const known = new Set(authorities.map((a) => a.fingerprint));
  const signed = new Map<string, string>();
  for (const s of doc.signatures) if (s.key) signed.set(fingerprint(s.signer), s.key.toString('hex'));
  const out = new Map<string, Buffer>();
  for (const cert of indexCertificates(doc.certificates, now, skewMs).values()) {
    if (known.has(cert.fingerprint) && signed.get(cert.fingerprint) === cert.signingKey.toString('hex')) out.set(cert.fingerprint, cert.signingKey);
  }
  return out;
}

/**
 * SPEC.md §6.10: the If-Modified-Since a holder of consensus `c` sends when asking for a newer one,
 * its fresh_until: servers never date that consensus later (servedConsensus, src/dir/http-serve.ts),
 * and date the next one later still.
 */
export function consensusIfModifiedSince(c: { freshUntil: number }): number {
  return c.freshUntil;
}
