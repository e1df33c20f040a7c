// SPEC.md §8.7.3 with §6.3 and §6.8: which reward-block signatures count. As for the consensus, a
// signature counts only when its authority is a configured authority and a key certificate signed
// by that authority's identity key certifies the signing key; a signature made directly by an
// identity key does not count (SPEC §6.8), unlike staticAuthorities, which tests use.
//
// Certificate windows and old blocks: a chain is verified long after its early blocks were
// signed, when the keys that signed them have expired. A certificate therefore counts for the
// block of epoch e when its window [valid_after − skew, valid_until] meets the block's signing
// span [e·P·1000, (e + REWARD_SIGNING_SPAN_PERIODS)·P·1000] (ms; P = the consensus period, which
// the verifier takes from a consensus it verified). The block of epoch e is built from the
// consensus of period e + 2 and signed during that period or the next, so the span covers it
// with one period to spare; a key that expired before the epoch began, or that is certified
// only from a later time on, cannot vouch for it.
import type { RewardAuthorities, RewardBlock } from '../bandwidth/reward-chain';
import { fingerprint } from '../crypto/keys';
import { err } from '../errors';
import { verifyKeyCertificate, type VerifiedCertificate } from './certificate';

/** A block of epoch e is signed between e·P and (e + this)·P (SPEC §8.7.3). */
export const REWARD_SIGNING_SPAN_PERIODS = 4;

export interface CertifiedRewardAuthorities extends RewardAuthorities {
  /** The certificate that vouches for `signingKey` of `authority` on a block of `epoch`, or null. */
  certificateFor(authority: Buffer, signingKey: Buffer, epoch: number): VerifiedCertificate | null;
}

/** The epoch span (ms) whose overlap with a certificate window makes the certificate count. */
export function rewardSigningSpan(epoch: number, periodSeconds: number): [number, number] {
  const P = periodSeconds * 1000;
  return [epoch * P, (epoch + REWARD_SIGNING_SPAN_PERIODS) * P];
}

/**
 * The verifier for clients and authorities: `authorities` are the CONFIGURED identities (their
 * number is N, the majority is floor(N/2)+1 whatever is in the certificates), `certificates` the
 * key-certificate envelopes at hand (from a chain bundle, or fetched). Bad certificates and
 * certificates of identities not configured are skipped: they only fail to vouch. Pure.
 */
export function certifiedRewardAuthorities(
  authorities: readonly { identity: Uint8Array }[], certificates: readonly Uint8Array[],
  o: { periodSeconds: number; skewMs?: number },
): CertifiedRewardAuthorities {
  const set = new RewardCertificateSet(authorities, o);
  for (const raw of certificates) set.add(raw);
  return set.verifier;
}

/**
 * Certificates gathered over several chain bundles (SPEC §8.7.5: up to 1024 per bundle, unsigned
 * helper data): each distinct envelope is checked once, and only those that verify and name a
 * configured authority are kept. `verifier` always reads the certificates added so far.
 */
export class RewardCertificateSet {
  readonly verifier: CertifiedRewardAuthorities;
  /** identity fp / signing key hex → every certificate for that pair (keys may be re-certified). */
  private readonly byKey = new Map<string, VerifiedCertificate[]>();
  /** Every distinct envelope added (hex), kept or refused, so a repeated one is not checked again. */
  private readonly seen = new Set<string>();
  private keptCount = 0;
  private readonly configured: Set<string>;

  constructor(authorities: readonly { identity: Uint8Array }[], o: { periodSeconds: number; skewMs?: number }) {
    if (!Number.isSafeInteger(o.periodSeconds) || o.periodSeconds <= 0) throw err('REWARD_BAD_INPUT', `period must be a positive number of seconds, got ${o.periodSeconds}`);
    const skew = o.skewMs ?? 60_000;
    this.configured = new Set(authorities.map((a) => Buffer.from(a.identity).toString('hex')));
    const certificateFor = (authority: Buffer, signingKey: Buffer, epoch: number): VerifiedCertificate | null => {
      if (authority.length !== 32 || signingKey.equals(authority)) return null; // identity-key signatures do not count
      const list = this.byKey.get(`${fingerprint(authority)}/${signingKey.toString('hex')}`);
      if (!list) return null;
      const [from, to] = rewardSigningSpan(epoch, o.periodSeconds);
      return list.find((c) => c.validAfter - skew <= to && c.validUntil >= from) ?? null;
    };
    this.verifier = {
      configured: this.configured.size,
      accepts: (authority: Buffer, signingKey: Buffer, block: RewardBlock) => certificateFor(authority, signingKey, block.epoch) !== null,
      certificateFor,
    };
  }

  /** Number of certificates kept. */
  get size(): number { return this.keptCount; }

  /** Adds one envelope; true when it is new, verifies and vouches for a configured authority's signing key. */
  add(raw: Uint8Array): boolean {
    const hex = Buffer.from(raw).toString('hex');
    if (this.seen.has(hex)) return false;
    this.seen.add(hex);
    let c: VerifiedCertificate;
    try { c = verifyKeyCertificate(raw); } catch { return false; }
    if (!this.configured.has(c.fingerprint) || c.signingKey.equals(c.identity)) return false;
    const k = `${c.fingerprint}/${c.signingKey.toString('hex')}`;
    const list = this.byKey.get(k) ?? [];
    list.push(c);
    this.byKey.set(k, list);
    this.keptCount++;
    return true;
  }
}
