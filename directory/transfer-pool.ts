// SPEC.md §8.11.3: an authority's pool of pending transfers. A transfer is taken into the pool
// only when it applies (SPEC §8.11.2) to the chain state followed by the pool's transfers in
// order, so the pool as a whole always applies on top of the chain tip, and when its amount is at
// most what the sender holds in the chain minus its own pending transfers: units that only a
// pending transfer brings are not spendable until a block carries them (else a chain of pending
// transfers through fresh keys would pass the per-sender cap). When the chain grows,
// the pool is checked again from the new state: transfers the block carried (their nonce is now
// used) and any that no longer apply are dropped. Memory only: a transfer not yet in a block is
// lost when every authority holding it restarts (the wallet then sends it again).
import { err } from '../src/errors';
import { CoinLedger, type LedgerMaps } from '../src/bandwidth/transfer';
import { encodeTransfer, type Transfer } from '../src/wire/transfer';

/** At most this many transfers wait in a pool (SPEC §8.11.3); more: TRANSFER_POOL_FULL. */
export const MAX_POOL_TRANSFERS = 10_000;
/** At most this many of one sender's transfers wait for a block (SPEC §8.11.3); more: TRANSFER_RATE_LIMITED. */
export const MAX_PENDING_PER_SENDER = 16;

export class TransferPool {
  private list: { t: Transfer; id: string }[] = [];
  private readonly ids = new Set<string>();
  /** Pending transfers per sender (hex). */
  private readonly bySender = new Map<string, number>();
  /** Units the sender's pending transfers spend (hex). */
  private readonly out = new Map<string, bigint>();
  private ledger: CoinLedger;

  constructor(private base: Readonly<LedgerMaps>, private readonly max = MAX_POOL_TRANSFERS, private readonly perSender = MAX_PENDING_PER_SENDER) {
    this.ledger = new CoinLedger(base);
  }

  get size(): number { return this.list.length; }

  /**
   * Take a transfer: 'held' when the identical transfer is already pending, 'added' when it is new
   * and applies after the pool. Throws TRANSFER_BAD_SIGNATURE, TRANSFER_REPLAYED (its nonce is used
   * in the chain or by another pending transfer: a replay or a double spend), TRANSFER_NONCE_GAP,
   * TRANSFER_OVERSPEND (more than the chain balance minus the sender's pending transfers; pending
   * transfers to the sender do not count), TRANSFER_RATE_LIMITED (the sender
   * has `perSender` transfers waiting already), TRANSFER_POOL_FULL.
   */
  add(t: Transfer): 'added' | 'held' {
    const id = encodeTransfer(t).toString('hex');
    if (this.ids.has(id)) return 'held';
    this.ledger.check(t);
    const from = t.from.toString('hex');
    this.checkFunded(t, from);
    const mine = this.bySender.get(from) ?? 0;
    if (mine >= this.perSender) throw err('TRANSFER_RATE_LIMITED', `${from.slice(0, 16)}… has ${mine} transfers waiting for a block already (at most ${this.perSender}); send again after the next block`);
    if (this.list.length >= this.max) throw err('TRANSFER_POOL_FULL', `${this.max} transfers are waiting for a block already; send again later`);
    this.ledger.apply(t);
    this.list.push({ t, id });
    this.ids.add(id);
    this.bySender.set(from, mine + 1);
    this.out.set(from, (this.out.get(from) ?? 0n) + t.amount);
    return 'added';
  }

  /** SPEC §8.11.3: a pending transfer spends only the chain balance less the sender's pending ones. TRANSFER_OVERSPEND. */
  private checkFunded(t: Transfer, from: string): void {
    const have = (this.base.balances.get(from) ?? 0n) - (this.out.get(from) ?? 0n);
    if (t.amount > have) throw err('TRANSFER_OVERSPEND', `the sender holds ${have} units in the chain after its pending transfers, not ${t.amount} (units a pending transfer brings are spendable once a block carries it)`);
  }

  /**
   * The chain moved on: keep, in order, the pending transfers that still apply to `base`. Returns
   * how many were dropped. Signatures were verified at `add` and do not depend on the chain, so
   * they are not verified again (this runs when a block lands); a transfer whose nonce the chain
   * used is dropped before anything else is looked at.
   */
  rebase(base: Readonly<LedgerMaps>): number {
    this.base = base;
    const old = this.list;
    this.list = [];
    this.ids.clear();
    this.bySender.clear();
    this.out.clear();
    this.ledger = new CoinLedger(base);
    for (const e of old) {
      const from = e.t.from.toString('hex');
      if (e.t.nonce <= (base.nonces.get(from) ?? 0)) continue;
      try {
        this.checkFunded(e.t, from);
        this.ledger.applyVerified(e.t);
      } catch { continue; }
      this.list.push(e);
      this.ids.add(e.id);
      this.bySender.set(from, (this.bySender.get(from) ?? 0) + 1);
      this.out.set(from, (this.out.get(from) ?? 0n) + e.t.amount);
    }
    return old.length - this.list.length;
  }

  /** The first `n` pending transfers in order: they apply on top of the chain tip (a proposer's block, SPEC §8.11.3). */
  take(n: number): Transfer[] {
    return this.list.slice(0, n).map((e) => e.t);
  }

  /** Pending transfers, optionally only those sent by `from` (hex). */
  pending(from?: string): Transfer[] {
    return this.list.filter((e) => from === undefined || e.t.from.toString('hex') === from).map((e) => e.t);
  }
}
