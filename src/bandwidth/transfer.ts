// SPEC.md §8.11.2: spending cloudcoins. A ledger of balances (credited by the reward chain's
// allocations) and per-sender nonces; a transfer applies when its signature verifies under its
// sender's key, its nonce is the sender's next, and the sender holds the amount. Pure: the same
// allocations and transfers in the same order give the same balances everywhere.
//
// A ledger may sit on top of another's maps (a block being checked over the chain state, an
// authority's pending pool over its chain): it reads through to them and writes only its own,
// until `commit()` copies its changes down. A refused block or transfer thus changes nothing.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import {
  FUNDING_TRANSFER_VERSION, TRANSFER_VERSION, UNBOUND_FUNDING_TRANSFER_VERSION, UNBOUND_TRANSFER_VERSION, isChainBound, transferSignedBytes,
  type Transfer,
} from '../wire/transfer';

export interface Account { balance: bigint; nonce: number }

/**
 * SPEC.md §8.11.3: at most this many of one sender's transfers wait in an authority's pool for a
 * block (more: TRANSFER_RATE_LIMITED); a wallet looks no further past the chain's nonce (§8.11.4).
 */
export const MAX_PENDING_PER_SENDER = 16;

/**
 * Balances and last nonces by key (hex): what the chain state holds (SPEC §8.7.3), and the chain's
 * id (the hash of its block 0, SPEC §8.11.1; null or absent before block 0), which versions 3 and 4
 * verify against.
 */
export interface LedgerMaps { balances: Map<string, bigint>; nonces: Map<string, number>; chainId?: Buffer | null }

export class CoinLedger {
  private readonly own: LedgerMaps = { balances: new Map(), nonces: new Map() };

  /** `base`: the maps read through to (never written until `commit`). */
  constructor(private readonly base?: Readonly<LedgerMaps>) {}

  /** Balance and last nonce of a key (hex); zero for an unknown key. */
  account(key: string): Account {
    return {
      balance: this.own.balances.get(key) ?? this.base?.balances.get(key) ?? 0n,
      nonce: this.own.nonces.get(key) ?? this.base?.nonces.get(key) ?? 0,
    };
  }

  /** Credit a block's allocations (SPEC.md §8.7.1). */
  credit(allocations: ReadonlyMap<string, bigint>): void {
    for (const [k, v] of allocations) this.own.balances.set(k, this.account(k).balance + v);
  }

  /**
   * Check a transfer against the ledger without applying it: TRANSFER_BAD_SIGNATURE (also a version
   * 3 or 4 transfer signed for another chain, or one before block 0, when the chain has no id yet:
   * SPEC §8.11.1, §8.11.2), TRANSFER_REPLAYED (a nonce at or below the sender's last), TRANSFER_NONCE_GAP (above the next),
   * TRANSFER_OVERSPEND (more than the sender holds).
   */
  check(t: Transfer): void {
    const chainId = this.base?.chainId ?? null;
    if (isChainBound(t) && !chainId) throw err('TRANSFER_BAD_SIGNATURE', `a version ${t.version} transfer verifies against the chain's id, the hash of block 0: the chain has none yet`);
    if (!ed25519Verify(t.signature, transferSignedBytes(t, chainId), t.from)) throw err('TRANSFER_BAD_SIGNATURE', 'the signature does not verify under the sender\'s key (for this chain)');
    this.checkState(t);
  }

  /**
   * The nonce checks of `check` alone (TRANSFER_REPLAYED, TRANSFER_NONCE_GAP), look-ups: an
   * authority's pool makes them before its balance check and the signature (SPEC.md §8.11.3).
   */
  checkNonce(t: Transfer): void {
    const last = this.account(t.from.toString('hex')).nonce;
    if (t.nonce <= last) throw err('TRANSFER_REPLAYED', `nonce ${t.nonce} was used already (the sender's last is ${last})`);
    if (t.nonce !== last + 1) throw err('TRANSFER_NONCE_GAP', `nonce ${t.nonce} skips ahead: the sender's next is ${last + 1}`);
  }

  /** The checks of `check` after the signature: they depend on the ledger, the signature does not. */
  private checkState(t: Transfer): void {
    this.checkNonce(t);
    const from = this.account(t.from.toString('hex'));
    if (t.amount > from.balance) throw err('TRANSFER_OVERSPEND', `the sender holds ${from.balance} units, not ${t.amount}`);
  }

  /** Check, then move the amount and advance the sender's nonce. */
  apply(t: Transfer): void {
    this.check(t);
    this.moveAmount(t);
  }

  /**
   * `apply` without verifying the signature again: only for a transfer whose signature was verified
   * already (an authority's pool re-applying what it admitted on a new tip, SPEC.md §8.11.3).
   */
  applyVerified(t: Transfer): void {
    this.checkState(t);
    this.moveAmount(t);
  }

  private moveAmount(t: Transfer): void {
    const fk = t.from.toString('hex');
    const tk = t.to.toString('hex');
    this.own.balances.set(fk, this.account(fk).balance - t.amount);
    this.own.nonces.set(fk, t.nonce);
    this.own.balances.set(tk, this.account(tk).balance + t.amount);
  }

  /**
   * Move units between two keys without a signature: only the chain's own rules do this (escrow
   * payments and refunds, SPEC.md §9.20.4). TRANSFER_OVERSPEND when `from` holds less than `amount`.
   */
  move(from: string, to: string, amount: bigint): void {
    const have = this.account(from).balance;
    if (amount <= 0n || amount > have) throw err('TRANSFER_OVERSPEND', `account ${from.slice(0, 16)}… holds ${have} units, cannot move ${amount}`);
    this.own.balances.set(from, have - amount);
    this.own.balances.set(to, this.account(to).balance + amount);
  }

  /** Copy this ledger's changes into `target` (by default the base it reads through to). */
  commit(target: LedgerMaps | undefined = this.base as LedgerMaps | undefined): void {
    if (!target) return;
    for (const [k, v] of this.own.balances) target.balances.set(k, v);
    for (const [k, v] of this.own.nonces) target.nonces.set(k, v);
  }
}

/**
 * Sign a plain transfer (version 3), or a funding one (version 4) when `funding`, for the chain whose
 * id is `chainId` (the hash of its block 0, SPEC.md §8.11.1): it verifies on that chain only.
 */
export function signTransfer(from: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number, chainId: Buffer, funding = false): Transfer {
  const t = { version: funding ? FUNDING_TRANSFER_VERSION : TRANSFER_VERSION, from: from.publicKey, to, amount, nonce } as const;
  return { ...t, signature: ed25519Sign(transferSignedBytes(t, chainId), from.secretKey) };
}

/**
 * Sign a funding transfer (version 4, SPEC.md §8.11.1, §9.20.4) of `amount` units from the payer to
 * the contract id `contract`, for the chain `chainId`: a block carries it only together with the
 * **open** of that contract's escrow for this payer and amount, so its units never land in the
 * contract's account without it.
 */
export function signFundingTransfer(from: Ed25519KeyPair, contract: Buffer, amount: bigint, nonce: number, chainId: Buffer): Transfer {
  return signTransfer(from, contract, amount, nonce, chainId, true);
}

/**
 * Sign a transfer of version 1 or 2, which names no chain (SPEC.md §8.11.1). No authority takes a
 * new one (§8.11.3); this exists to build chains as they were written before versions 3 and 4.
 */
export function signUnboundTransfer(
  from: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number,
  version: typeof UNBOUND_TRANSFER_VERSION | typeof UNBOUND_FUNDING_TRANSFER_VERSION = UNBOUND_TRANSFER_VERSION,
): Transfer {
  const t = { version, from: from.publicKey, to, amount, nonce };
  return { ...t, signature: ed25519Sign(transferSignedBytes(t), from.secretKey) };
}
