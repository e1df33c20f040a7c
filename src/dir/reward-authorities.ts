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
import type { RewardAuthorities, RewardBlockHeaderView } from '../bandwidth/reward-chain';
import { fingerprint } from '../crypto/keys';
import { blake2b } from '../crypto/primitives';
import { err } from '../errors';
import { MAX_BLOCK_SIGNATURES, MAX_BUNDLE_CERTIFICATES, splitSignedRewardBlock } from '../wire/reward-block';
import { readKeyCertificate, verifyKeyCertificate, type VerifiedCertificate } from './certificate';

/** A block of epoch e is signed between e·P and (e + this)·P (SPEC §8.7.3). */
export const REWARD_SIGNING_SPAN_PERIODS = 4;

export interface CertifiedRewardAuthorities extends RewardAuthorities {
  /** The certificate that vouches for `signingKey` of `authority` on a block of `epoch`, or null. */
  certificateFor(authority: Buffer, signingKey: Buffer, epoch: number): VerifiedCertificate | null;
}

/**
 * SPEC.md §8.7.5: the certificates of a page that count toward its certificate bound in the
 * reader's fill check: the distinct ones whose own signature verifies and that certify the signing
 * key of a signature of one of the page's `blocks` (a server puts no others in a page, so an honest
 * page loses none). Envelopes that do not read, do not verify, or certify no signature of the page
 * do not count: a source cannot pass a short page off as cut by the certificate bound by padding
 * it. Worked out only when the page holds enough distinct certificates for the bound to matter;
 * else the certificates as they are. `blocks` are stored-form signed blocks that were read already.
 */
export function pageCertificates(blocks: Iterable<Uint8Array>, certificates: readonly Uint8Array[]): readonly Uint8Array[] {
  if (certificates.length + MAX_BLOCK_SIGNATURES <= MAX_BUNDLE_CERTIFICATES) return certificates;
  const distinct = new Map<string, Uint8Array>();
  for (const c of certificates) distinct.set(Buffer.from(c).toString('hex'), c);
  if (distinct.size + MAX_BLOCK_SIGNATURES <= MAX_BUNDLE_CERTIFICATES) return certificates;
  const named = new Set<string>();
  for (const b of blocks) for (const s of splitSignedRewardBlock(b).signatures) named.add(`${s.authority.toString('hex')}/${s.signingKey.toString('hex')}`);
  const out: Uint8Array[] = [];
  for (const c of distinct.values()) {
    try {
      const claim = readKeyCertificate(c);
      if (!named.has(`${claim.identity.toString('hex')}/${claim.signingKey.toString('hex')}`)) continue;
      verifyKeyCertificate(c);
      out.push(c);
    } catch { /* an envelope that does not read or verify vouches for nothing */ }
  }
  return out;
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

/** Envelopes waiting for their check, per (identity, signing key) pair (SPEC §8.7.5). */
export const MAX_PENDING_CERTIFICATES_PER_KEY = 16;
/** Envelopes waiting for their check, in all (SPEC §8.7.5); beyond it an envelope is checked as it is added. */
export const MAX_PENDING_CERTIFICATES = 4096;
/** Distinct envelopes remembered as seen (SPEC §8.7.5); past it a new one is not remembered. */
export const MAX_SEEN_CERTIFICATES = 16_384;
/** Checked certificates kept per identity that no block signature has named yet (SPEC §8.7.5). */
export const MAX_UNNAMED_CERTIFICATES_PER_IDENTITY = 64;

/**
 * Certificates gathered over several chain bundles (SPEC §8.7.5: up to 1024 per bundle, unsigned
 * helper data). add() only reads an envelope's layout and keeps it under the (configured identity,
 * signing key) pair it claims; its signature is checked when a block signature names that pair and
 * no certificate checked before vouches, each envelope once. So a source sending many forged
 * certificates costs a signature check only for the pairs its blocks' signatures name. A pair
 * holding MAX_PENDING_CERTIFICATES_PER_KEY waiting envelopes is checked when one more comes, and
 * past MAX_PENDING_CERTIFICATES waiting in all an envelope is checked as it comes: an envelope is
 * never refused for lack of room (one source's forgeries cannot crowd out the real certificates
 * another sends into the same set), memory stays bounded, and each envelope is still checked at
 * most once. Of the certificates checked and kept, those a block signature named are kept for good;
 * an identity holding MAX_UNNAMED_CERTIFICATES_PER_IDENTITY others drops them when one more is kept
 * (a configured authority can sign any number of valid certificates, but only for itself).
 * `verifier` always reads the certificates added so far.
 */
export class RewardCertificateSet {
  readonly verifier: CertifiedRewardAuthorities;
  /** identity fp / signing key hex → the certificates checked and kept for that pair (keys may be re-certified). */
  private readonly byKey = new Map<string, VerifiedCertificate[]>();
  /** identity fp / signing key hex → envelopes added and not checked yet. */
  private readonly pending = new Map<string, Buffer[]>();
  /** Envelopes in `pending`, all pairs together (≤ MAX_PENDING_CERTIFICATES). */
  private pendingCount = 0;
  /**
   * BLAKE2b-256 (hex) of every distinct envelope whose layout reads, checked or not, kept or refused,
   * so a repeated one costs nothing; at most MAX_SEEN_CERTIFICATES.
   */
  private readonly seen = new Set<string>();
  private readonly configured: Set<string>;
  /** Kept certificates a block signature has named (`certificateFor` returned them): never dropped. */
  private readonly named = new WeakSet<VerifiedCertificate>();
  /** identity fp → kept certificates of that identity not named yet (≤ MAX_UNNAMED_CERTIFICATES_PER_IDENTITY). */
  private readonly unnamed = new Map<string, number>();
  /** identity fp → its pairs in `byKey`. */
  private readonly pairsOf = new Map<string, Set<string>>();

  constructor(authorities: readonly { identity: Uint8Array }[], o: { periodSeconds: number; skewMs?: number }) {
    if (!Number.isSafeInteger(o.periodSeconds) || o.periodSeconds <= 0) throw err('REWARD_BAD_INPUT', `period must be a positive number of seconds, got ${o.periodSeconds}`);
    const skew = o.skewMs ?? 60_000;
    this.configured = new Set(authorities.map((a) => Buffer.from(a.identity).toString('hex')));
    const certificateFor = (authority: Buffer, signingKey: Buffer, epoch: number): VerifiedCertificate | null => {
      if (authority.length !== 32 || signingKey.equals(authority)) return null; // identity-key signatures do not count
      const k = `${fingerprint(authority)}/${signingKey.toString('hex')}`;
      const [from, to] = rewardSigningSpan(epoch, o.periodSeconds);
      const vouches = (c: VerifiedCertificate) => c.validAfter - skew <= to && c.validUntil >= from;
      let found = this.byKey.get(k)?.find(vouches);
      if (!found) {
        this.check(k);
        found = this.byKey.get(k)?.find(vouches);
      }
      if (!found) return null;
      this.name(k, found);
      return found;
    };
    this.verifier = {
      configured: this.configured.size,
      accepts: (authority: Buffer, signingKey: Buffer, block: RewardBlockHeaderView) => certificateFor(authority, signingKey, block.epoch) !== null,
      certificateFor,
    };
  }

  /** Number of certificates checked and kept so far. */
  get size(): number {
    let n = 0;
    for (const list of this.byKey.values()) n += list.length;
    return n;
  }

  /** Number of envelopes remembered as seen (≤ MAX_SEEN_CERTIFICATES). */
  get remembered(): number {
    return this.seen.size;
  }

  /** Number of envelopes taken and not checked yet. */
  get unchecked(): number {
    return this.pendingCount;
  }

  /**
   * Takes one envelope for a later check; true when it is new and claims to certify a signing key
   * (other than the identity key) of a configured authority. Its signature is not checked here.
   */
  add(raw: Uint8Array): boolean {
    // SPEC.md §8.7.5: an envelope is remembered by its hash, only once its layout reads, and at most
    // MAX_SEEN_CERTIFICATES of them; junk costs a layout read each time and no memory.
    let c: { fingerprint: string; identity: Buffer; signingKey: Buffer };
    try { c = readKeyCertificate(raw); } catch { return false; }
    const id = blake2b(raw).toString('hex');
    if (this.seen.has(id)) return false;
    const k = `${c.fingerprint}/${c.signingKey.toString('hex')}`;
    if (this.seen.size >= MAX_SEEN_CERTIFICATES) {
      // Not remembered any more: one still waiting or kept is not taken twice.
      if (this.pending.get(k)?.some((p) => p.equals(raw)) || this.byKey.get(k)?.some((v) => v.raw.equals(raw))) return false;
    } else {
      this.seen.add(id);
    }
    if (!this.configured.has(c.fingerprint) || c.signingKey.equals(c.identity)) return false;
    // SPEC.md §8.7.5: a full pair is checked now (so the new envelope always finds room); past the
    // total cap the new envelope is checked at once. Either way each envelope is checked once.
    if ((this.pending.get(k)?.length ?? 0) >= MAX_PENDING_CERTIFICATES_PER_KEY) this.check(k);
    if (this.pendingCount >= MAX_PENDING_CERTIFICATES) {
      this.keep(k, Buffer.from(raw));
      return true;
    }
    const list = this.pending.get(k) ?? [];
    list.push(Buffer.from(raw));
    this.pending.set(k, list);
    this.pendingCount++;
    return true;
  }

  /** Checks the envelopes waiting for pair `k`, once each; those that verify are kept. */
  private check(k: string): void {
    const list = this.pending.get(k);
    if (!list) return;
    this.pending.delete(k);
    this.pendingCount -= list.length;
    // Room for the whole list first (≤ 16), so none of it is dropped before a signature can name it.
    const id = identityOf(k);
    if ((this.unnamed.get(id) ?? 0) + list.length > MAX_UNNAMED_CERTIFICATES_PER_IDENTITY) this.dropUnnamed(id);
    for (const raw of list) this.keep(k, raw);
  }

  /**
   * Checks one envelope of pair `k` and keeps it if it verifies; one that fails stays only in `seen`.
   * SPEC.md §8.7.5: an identity holding MAX_UNNAMED_CERTIFICATES_PER_IDENTITY kept certificates that
   * no block signature named first drops those (only its own key can sign more of them).
   */
  private keep(k: string, raw: Uint8Array): void {
    let c: VerifiedCertificate;
    try { c = verifyKeyCertificate(raw); } catch { return; }
    const id = identityOf(k);
    if ((this.unnamed.get(id) ?? 0) >= MAX_UNNAMED_CERTIFICATES_PER_IDENTITY) this.dropUnnamed(id);
    const kept = this.byKey.get(k) ?? [];
    kept.push(c);
    this.byKey.set(k, kept);
    this.unnamed.set(id, (this.unnamed.get(id) ?? 0) + 1);
    const pairs = this.pairsOf.get(id) ?? new Set<string>();
    pairs.add(k);
    this.pairsOf.set(id, pairs);
  }

  /** A block signature named `c` (kept under pair `k`): it is kept for good. */
  private name(k: string, c: VerifiedCertificate): void {
    if (this.named.has(c)) return;
    this.named.add(c);
    const id = identityOf(k);
    this.unnamed.set(id, (this.unnamed.get(id) ?? 1) - 1);
  }

  /**
   * Drops the kept certificates of identity `id` that no block signature named. They are forgotten
   * as seen too: a source that sends one again (an honest one, after a flood of the identity's
   * other certificates dropped it) has it taken and checked again (SPEC.md §8.7.5).
   */
  private dropUnnamed(id: string): void {
    const pairs = this.pairsOf.get(id);
    if (!pairs) return;
    for (const k of pairs) {
      for (const c of this.byKey.get(k) ?? []) if (!this.named.has(c)) this.seen.delete(blake2b(c.raw).toString('hex'));
      const left = (this.byKey.get(k) ?? []).filter((c) => this.named.has(c));
      if (left.length > 0) {
        this.byKey.set(k, left);
      } else {
        this.byKey.delete(k);
        pairs.delete(k);
      }
    }
    this.unnamed.set(id, 0);
  }
}

/** The identity fingerprint of a pair key `<identity fp>/<signing key hex>`. */
function identityOf(k: string): string {
  return k.slice(0, k.indexOf('/'));
}
