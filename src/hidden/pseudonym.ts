// SPEC.md §9.21.7: proof-of-bandwidth receipts for a hidden storage node. The node authenticates
// its links to its guards under a pseudonym key P (fresh per period, not derivable from its
// identity) and registers `period | identity | P`, signed by both keys and sealed to each
// authority's certified signing key, so that the relay mirror passing it on cannot link P to the
// identity. Authorities then accept receipts naming P as the node's.
//
// Here: making, sealing and opening a registration (pure), and the authority's registry of them
// (pure; directory/pseudonyms.ts keeps it on disk).
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, openSealedEd25519, sealToEd25519, type Ed25519KeyPair } from '../crypto/primitives';
import {
  PSEUDONYM_SIG_IDENTITY, PSEUDONYM_SIG_PSEUDONYM, decodePseudonymRegistration, decodePseudonymUpload, encodePseudonymBody,
  encodePseudonymRegistration, encodePseudonymUpload, type PseudonymRegistration,
} from '../wire/pseudonym';

/** SPEC.md §9.21.7: registrations an identity may hold per period (restarts make fresh keys). */
export const MAX_PSEUDONYMS_PER_IDENTITY = 8;
/** SPEC.md §9.21.7: registrations an authority holds in all. */
export const MAX_PSEUDONYM_REGISTRATIONS = 65_536;
/** The path an authority (and a relay mirror, passing it on) serves. */
export const HS_PSEUDONYM_PATH = '/bitcloud/hs/pseudonym';

/** The node signs `period | identity | P` with both keys. */
export function makePseudonymRegistration(identity: Ed25519KeyPair, pseudonym: Ed25519KeyPair, period: number): PseudonymRegistration {
  const bodyBytes = encodePseudonymBody({ period, identity: identity.publicKey, pseudonym: pseudonym.publicKey });
  return {
    period, identity: Buffer.from(identity.publicKey), pseudonym: Buffer.from(pseudonym.publicKey), bodyBytes,
    identitySignature: ed25519Sign(Buffer.concat([PSEUDONYM_SIG_IDENTITY, bodyBytes]), identity.secretKey),
    pseudonymSignature: ed25519Sign(Buffer.concat([PSEUDONYM_SIG_PSEUDONYM, bodyBytes]), pseudonym.secretKey),
  };
}

/** Both signatures over the body as received; HIDDEN_PSEUDONYM_BAD_SIGNATURE otherwise. */
export function checkPseudonymSignatures(r: PseudonymRegistration): void {
  if (!ed25519Verify(r.identitySignature, Buffer.concat([PSEUDONYM_SIG_IDENTITY, r.bodyBytes]), r.identity)) {
    throw err('HIDDEN_PSEUDONYM_BAD_SIGNATURE', 'the identity signature of the pseudonym registration does not verify');
  }
  if (!ed25519Verify(r.pseudonymSignature, Buffer.concat([PSEUDONYM_SIG_PSEUDONYM, r.bodyBytes]), r.pseudonym)) {
    throw err('HIDDEN_PSEUDONYM_BAD_SIGNATURE', 'the pseudonym signature of the pseudonym registration does not verify');
  }
}

/** The upload body: the registration sealed once to each authority signing key in `recipients`. */
export function sealPseudonymUpload(r: PseudonymRegistration, recipients: readonly Buffer[]): Buffer {
  const plain = encodePseudonymRegistration(r);
  return encodePseudonymUpload(recipients.map((recipient) => ({ recipient: Buffer.from(recipient), sealed: sealToEd25519(recipient, plain) })));
}

/**
 * An authority opens the entry sealed to its signing key and checks both signatures. Throws
 * HIDDEN_PSEUDONYM_MALFORMED (layout), HIDDEN_PSEUDONYM_UNSEALED (no entry for this key, or it
 * does not open) or HIDDEN_PSEUDONYM_BAD_SIGNATURE.
 */
export function openPseudonymUpload(body: Uint8Array, signingKey: Ed25519KeyPair): PseudonymRegistration {
  const entries = decodePseudonymUpload(body);
  const mine = entries.find((e) => e.recipient.equals(signingKey.publicKey));
  if (!mine) throw err('HIDDEN_PSEUDONYM_UNSEALED', 'no entry of the registration is sealed to this authority\'s signing key');
  const plain = openSealedEd25519(signingKey, mine.sealed);
  if (!plain) throw err('HIDDEN_PSEUDONYM_UNSEALED', 'the entry sealed to this authority does not open');
  const r = decodePseudonymRegistration(plain);
  checkPseudonymSignatures(r);
  return r;
}

export interface RegistryContext {
  /** The authority's current hidden-node period N (§9.21.2). */
  period: number;
  /** True when the authority holds a current hidden descriptor or listing for this identity (hex). */
  isHiddenNode: (identity: string) => boolean;
  /** True when this key (hex) is a relay identity in the authority's current consensus. */
  isListedRelay: (key: string) => boolean;
}

export interface RegistryEntry { period: number; identity: string; pseudonym: string; registration: Buffer }

/**
 * The authority's registrations (SPEC.md §9.21.7): which identity each pseudonym stands for, per
 * period. Pure: persistence is the caller's (directory/pseudonyms.ts).
 */
export class PseudonymRegistry {
  /** `${period}:${pseudonym hex}` → entry. */
  private readonly byKey = new Map<string, RegistryEntry>();
  /** pseudonym hex → identity hex, over every period held. */
  private readonly owner = new Map<string, string>();

  get size(): number { return this.byKey.size; }

  entries(): RegistryEntry[] { return [...this.byKey.values()]; }

  /**
   * Judge an opened registration (signatures already checked by `openPseudonymUpload`). Returns
   * 'new' or 'unchanged' (the same registration again: idempotent). Throws HIDDEN_PSEUDONYM_STALE,
   * HIDDEN_PSEUDONYM_UNKNOWN_NODE, HIDDEN_PSEUDONYM_TAKEN or HIDDEN_PSEUDONYM_TOO_MANY.
   */
  register(r: PseudonymRegistration, ctx: RegistryContext): 'new' | 'unchanged' {
    if (r.period < ctx.period - 1 || r.period > ctx.period + 1) {
      throw err('HIDDEN_PSEUDONYM_STALE', `a registration for period ${r.period}; this authority takes ${ctx.period - 1} to ${ctx.period + 1}`);
    }
    const identity = r.identity.toString('hex');
    const pseudonym = r.pseudonym.toString('hex');
    if (!ctx.isHiddenNode(identity)) throw err('HIDDEN_PSEUDONYM_UNKNOWN_NODE', 'the identity is not a hidden storage node this authority knows');
    if (ctx.isListedRelay(pseudonym)) throw err('HIDDEN_PSEUDONYM_TAKEN', 'the pseudonym is a listed relay\'s identity');
    // A pseudonym stands for one identity, whatever the period: two identities never share one.
    const owner = this.owner.get(pseudonym);
    if (owner !== undefined && owner !== identity) throw err('HIDDEN_PSEUDONYM_TAKEN', 'the pseudonym is registered by another identity');
    const key = `${r.period}:${pseudonym}`;
    if (this.byKey.has(key)) return 'unchanged';
    let mine = 0;
    for (const e of this.byKey.values()) if (e.identity === identity && e.period === r.period) mine++;
    if (mine >= MAX_PSEUDONYMS_PER_IDENTITY) throw err('HIDDEN_PSEUDONYM_TOO_MANY', `an identity holds at most ${MAX_PSEUDONYMS_PER_IDENTITY} pseudonyms per period`);
    if (this.byKey.size >= MAX_PSEUDONYM_REGISTRATIONS) throw err('HIDDEN_PSEUDONYM_TOO_MANY', 'this authority holds as many registrations as it may');
    this.byKey.set(key, { period: r.period, identity, pseudonym, registration: encodePseudonymRegistration(r) });
    this.owner.set(pseudonym, identity);
    return 'new';
  }

  /**
   * SPEC.md §9.21.7: the identity (hex) a pseudonym stands for in hidden period `period`: a
   * registration for that period or the one before (links opened late in a period live into the
   * next). Undefined when none.
   */
  identityOf(pseudonym: string, period: number): string | undefined {
    return this.byKey.get(`${period}:${pseudonym}`)?.identity ?? this.byKey.get(`${period - 1}:${pseudonym}`)?.identity;
  }

  /** The identity (hex) a pseudonym (hex) is registered to, in any period held. */
  ownerOf(pseudonym: string): string | undefined { return this.owner.get(pseudonym); }

  /** Forget one registration (one its holder could not save, SPEC.md §9.21.7 step 4). */
  forget(period: number, pseudonym: string): void {
    if (!this.byKey.delete(`${period}:${pseudonym}`)) return;
    for (const e of this.byKey.values()) if (e.pseudonym === pseudonym) return;
    this.owner.delete(pseudonym);
  }

  /** Forget registrations of periods before `oldest`. Returns how many were dropped. */
  prune(oldest: number): number {
    let n = 0;
    for (const [k, e] of this.byKey) if (e.period < oldest) { this.byKey.delete(k); n++; }
    if (n) {
      this.owner.clear();
      for (const e of this.byKey.values()) this.owner.set(e.pseudonym, e.identity);
    }
    return n;
  }

  /** Load a stored registration again (signatures re-checked, context rules not: it was accepted then). */
  restore(bytes: Uint8Array): void {
    const r = decodePseudonymRegistration(bytes);
    checkPseudonymSignatures(r);
    const pseudonym = r.pseudonym.toString('hex');
    const identity = r.identity.toString('hex');
    const owner = this.owner.get(pseudonym);
    if (owner !== undefined && owner !== identity) return;
    this.byKey.set(`${r.period}:${pseudonym}`, { period: r.period, identity, pseudonym, registration: Buffer.from(bytes) });
    this.owner.set(pseudonym, identity);
  }
}
