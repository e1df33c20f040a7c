// One signing round among the directory authorities, as SPEC.md §6.8 runs it for the consensus and
// §8.7 for a reward block: this authority signs one body for a slot (a period start, a chain
// height), fetches the other authorities' signatures over it, merges those that verify, and
// publishes once more than half of ALL configured authorities signed, then again whenever more
// signatures arrive. What a signature is, how a peer serves it and how it is checked are the
// owner's (directory/authority.ts, directory/rewards.ts); the round keeps the state and the rules.
import type { AuthorityInfo } from '../src/dir/authorities';
import { majorityOf } from '../src/dir/authorities';

/** How long one fetch from another authority may take: an eighth of the period, within 1 to 10 s. */
export function peerFetchTimeoutMs(periodSeconds: number): number {
  return Math.max(1000, Math.min(10_000, periodSeconds * 1000 / 8));
}

export interface SigningRoundHooks<Sig> {
  /**
   * Ask one peer for what it holds and return the signatures over THIS round's body that verify,
   * as [signer fingerprint, signature] pairs. Anything else (another body, bad signatures) is the
   * hook's to count and log; it returns nothing for it. A throw counts as a failed fetch.
   */
  fetch(peer: AuthorityInfo, round: SigningRound<Sig>, timeoutMs: number): Promise<Iterable<readonly [string, Sig]>>;
  /**
   * Publish (or store again) with every signature held. Called once a majority holds, and again
   * each time signatures were added since. `first` is true until one call succeeded. Returns false
   * when it did not publish (the next signature, or the next `publish()` call, tries again).
   */
  publish(round: SigningRound<Sig>, first: boolean): boolean;
  /** A peer could not be asked (down, slow, bad answer): for metrics and logs. */
  fetchFailed?(peer: AuthorityInfo, e: unknown): void;
}

export interface SigningRoundOptions<Sig> {
  /** The slot: period start (consensus) or height (reward block). One body per slot. */
  slot: number;
  /** What identifies the body signed (its digest or hash): another value at the same slot is another body. */
  bodyId: Buffer;
  /** ALL configured authorities, this one included. */
  authorities: readonly AuthorityInfo[];
  /** This authority's fingerprint and its own signature over the body. */
  self: string;
  own: Sig;
  /** Signatures already held (e.g. restored from disk), by signer fingerprint; checked by the caller. */
  held?: Iterable<readonly [string, Sig]>;
  timeoutMs: number;
  hooks: SigningRoundHooks<Sig>;
}

/** What an authority may do about a body for a slot, given the round it holds. */
export type SignDecision = 'sign' | 'already-signed' | 'refuse';

export class SigningRound<Sig> {
  readonly slot: number;
  readonly bodyId: Buffer;
  private readonly sigs = new Map<string, Sig>();
  private readonly o: SigningRoundOptions<Sig>;
  /** Signatures held at the last successful publish; 0: not published yet. */
  private publishedWith = 0;
  private fetching = false;
  private readonly logged = new Set<string>();

  /**
   * SPEC.md §8.7.4 ("One body per height"): an authority signs at most one body per slot, so two
   * bodies at one slot can both reach a majority only if some authority signed both. The consensus
   * follows the same rule (§6.8: one body per period, across restarts through the record of
   * directory/signed-periods.ts). `held` is the round in progress.
   */
  static decide(held: { slot: number; bodyId: Buffer } | null, slot: number, bodyId: Buffer): SignDecision {
    if (!held || held.slot !== slot) return 'sign';
    return held.bodyId.equals(bodyId) ? 'already-signed' : 'refuse';
  }

  /**
   * Starts a round over a new body; `sign` makes this authority's own signature and is called only
   * when signing is allowed. Returns the round, or `held` unchanged when the body was already
   * signed or another body was signed at this slot (`decision` says which).
   */
  static begin<Sig>(
    held: SigningRound<Sig> | null, o: Omit<SigningRoundOptions<Sig>, 'own'>, sign: () => Sig,
  ): { round: SigningRound<Sig> | null; decision: SignDecision } {
    const decision = SigningRound.decide(held, o.slot, o.bodyId);
    if (decision !== 'sign') return { round: held, decision };
    return { round: new SigningRound({ ...o, own: sign() }), decision };
  }

  constructor(o: SigningRoundOptions<Sig>) {
    this.o = o;
    this.slot = o.slot;
    this.bodyId = Buffer.from(o.bodyId);
    for (const [fp, s] of o.held ?? []) this.sigs.set(fp, s);
    this.sigs.set(o.self, o.own);
  }

  /** Signatures needed to publish: more than half of ALL configured authorities. */
  get majority(): number { return majorityOf(this.o.authorities.length); }
  get size(): number { return this.sigs.size; }
  /** Every configured authority signed: nothing left to fetch. */
  get complete(): boolean { return this.o.authorities.every((a) => this.sigs.has(a.fingerprint)); }
  get published(): boolean { return this.publishedWith > 0; }
  get fetchInFlight(): boolean { return this.fetching; }
  has(fp: string): boolean { return this.sigs.has(fp); }
  /** Signer fingerprints, sorted. */
  signers(): string[] { return [...this.sigs.keys()].sort(); }
  /** Signatures held, in insertion order (own first unless restored). */
  signatures(): Sig[] { return [...this.sigs.values()]; }
  entries(): [string, Sig][] { return [...this.sigs.entries()]; }

  /** Merge one signature (already checked by the caller). False when the signer was already held. */
  add(fp: string, sig: Sig): boolean {
    if (this.sigs.has(fp)) return false;
    this.sigs.set(fp, sig);
    return true;
  }

  /** Whether `firstTime(key)` was called in this round. */
  noted(key: string): boolean {
    return this.logged.has(key);
  }

  /** True the first time `key` is seen in this round: log a peer's disagreement once, not every tick. */
  firstTime(key: string): boolean {
    if (this.logged.has(key)) return false;
    this.logged.add(key);
    return true;
  }

  /**
   * Ask every configured authority whose signature is missing, all at once, each bounded by the
   * timeout; a peer that is down or slow costs at most that and is asked again next time. At most
   * one pass runs at a time. Then publishes if a majority holds.
   */
  async fetchMissing(): Promise<void> {
    if (this.fetching) return;
    this.fetching = true;
    try {
      const missing = this.o.authorities.filter((a) => !this.sigs.has(a.fingerprint));
      await Promise.all(missing.map(async (a) => {
        try {
          for (const [fp, s] of await this.o.hooks.fetch(a, this, this.o.timeoutMs)) this.add(fp, s);
        } catch (e) {
          this.o.hooks.fetchFailed?.(a, e);
        }
      }));
      this.publish();
    } finally {
      this.fetching = false;
    }
  }

  /** Publish when a majority holds and signatures were added since the last publish. True when it published now. */
  publish(): boolean {
    if (this.sigs.size < this.majority || this.sigs.size === this.publishedWith) return false;
    const size = this.sigs.size;
    if (!this.o.hooks.publish(this, this.publishedWith === 0)) return false;
    this.publishedWith = size;
    return true;
  }

  /** The body was published elsewhere with the signatures now held (e.g. caught up from a peer). */
  markPublished(): void {
    this.publishedWith = Math.max(1, this.sigs.size);
  }
}
