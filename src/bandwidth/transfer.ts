// SPEC.md §8.11.2: spending cloudcoins. A ledger of balances (credited by the reward chain's
// allocations) and per-sender nonces; a transfer applies when its signature verifies under its
// sender's key, its nonce is the sender's next, and the sender holds the amount. Pure: the same
// allocations and transfers in the same order give the same balances everywhere.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import { transferSignedBytes, type Transfer } from '../wire/transfer';

export interface Account { balance: bigint; nonce: number }

export class CoinLedger {
  private readonly accounts = new Map<string, Account>();

  /** Balance and last nonce of a key (hex); zero for an unknown key. */
  account(key: string): Account {
    return this.accounts.get(key) ?? { balance: 0n, nonce: 0 };
  }

  /** Credit a block's allocations (SPEC.md §8.7.1). */
  credit(allocations: ReadonlyMap<string, bigint>): void {
    for (const [k, v] of allocations) {
      const a = this.account(k);
      this.accounts.set(k, { ...a, balance: a.balance + v });
    }
  }

  /**
   * Check a transfer against the ledger without applying it: TRANSFER_BAD_SIGNATURE,
   * TRANSFER_REPLAYED (a nonce at or below the sender's last), TRANSFER_NONCE_GAP (above the next),
   * TRANSFER_OVERSPEND (more than the sender holds).
   */
  check(t: Transfer): void {
    if (!ed25519Verify(t.signature, transferSignedBytes(t), t.from)) throw err('TRANSFER_BAD_SIGNATURE', 'the signature does not verify under the sender\'s key');
    const from = this.account(t.from.toString('hex'));
    if (t.nonce <= from.nonce) throw err('TRANSFER_REPLAYED', `nonce ${t.nonce} was used already (the sender's last is ${from.nonce})`);
    if (t.nonce !== from.nonce + 1) throw err('TRANSFER_NONCE_GAP', `nonce ${t.nonce} skips ahead: the sender's next is ${from.nonce + 1}`);
    if (t.amount > from.balance) throw err('TRANSFER_OVERSPEND', `the sender holds ${from.balance} units, not ${t.amount}`);
  }

  /** Check, then move the amount and advance the sender's nonce. */
  apply(t: Transfer): void {
    this.check(t);
    const fk = t.from.toString('hex');
    const tk = t.to.toString('hex');
    const from = this.account(fk);
    this.accounts.set(fk, { balance: from.balance - t.amount, nonce: t.nonce });
    const to = this.account(tk);
    this.accounts.set(tk, { ...to, balance: to.balance + t.amount });
  }
}

/** Sign a transfer with the sender's key pair. */
export function signTransfer(from: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number): Transfer {
  const t = { from: from.publicKey, to, amount, nonce };
  return { ...t, signature: ed25519Sign(transferSignedBytes(t), from.secretKey) };
}
