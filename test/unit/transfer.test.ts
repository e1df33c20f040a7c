// SPEC.md §8.11: cloudcoin transfers — the layout, and the ledger's refusals (bad signature, a
// replayed nonce, a double spend, an overspend, a nonce gap), each with its code.
import { describe, expect, it } from 'vitest';
import { ed25519Generate } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { FUNDING_TRANSFER_VERSION, decodeTransfer, encodeTransfer, TRANSFER_BYTES } from '../../src/wire/transfer';
import { CoinLedger, signFundingTransfer, signTransfer } from '../../src/bandwidth/transfer';

const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return 'NO_ERROR';
};

describe('transfers (SPEC.md §8.11)', () => {
  const relay = ed25519Generate();
  const wallet = ed25519Generate();
  const other = ed25519Generate();
  const hex = (k: { publicKey: Buffer }) => k.publicKey.toString('hex');

  it('round-trips the 145-byte layout; malformed ones are refused', () => {
    const t = signTransfer(relay, wallet.publicKey, 123n, 1);
    const b = encodeTransfer(t);
    expect(b.length).toBe(TRANSFER_BYTES);
    expect(decodeTransfer(b)).toEqual(t);
    expect(codeOf(() => decodeTransfer(b.subarray(1)))).toBe('TRANSFER_MALFORMED');
    for (const version of [0, 3, 255]) {
      const v = Buffer.from(b); v[0] = version;
      expect(codeOf(() => decodeTransfer(v))).toBe('TRANSFER_MALFORMED');
    }
    const z = Buffer.from(b); z.writeBigUInt64BE(0n, 65);
    expect(codeOf(() => decodeTransfer(z))).toBe('TRANSFER_MALFORMED');
    expect(codeOf(() => signTransfer(relay, relay.publicKey, 1n, 1))).toBe('TRANSFER_MALFORMED');
  });

  it('round-trips a funding transfer (version 2); a signature of one version never verifies as the other', () => {
    const contract = Buffer.alloc(32, 0xc7);
    const t = signFundingTransfer(relay, contract, 500n, 1);
    const b = encodeTransfer(t);
    expect(b.length).toBe(TRANSFER_BYTES);
    expect(b[0]).toBe(FUNDING_TRANSFER_VERSION);
    expect(decodeTransfer(b)).toEqual({ ...t, version: 2 });
    expect(encodeTransfer(decodeTransfer(b)).equals(b)).toBe(true);
    expect(codeOf(() => decodeTransfer(b.subarray(1)))).toBe('TRANSFER_MALFORMED');
    expect(codeOf(() => signFundingTransfer(relay, relay.publicKey, 1n, 1))).toBe('TRANSFER_MALFORMED');
    // The same fields signed as version 1 differ only in the version byte and the signature context.
    const plain = signTransfer(relay, contract, 500n, 1);
    expect(encodeTransfer(plain).subarray(1, 81).equals(b.subarray(1, 81))).toBe(true);
    const l = new CoinLedger();
    l.credit(new Map([[hex(relay), 1000n]]));
    // A version 1 transfer relabelled version 2 (and back) does not verify.
    const relabelled = Buffer.from(encodeTransfer(plain)); relabelled[0] = 2;
    expect(codeOf(() => l.check(decodeTransfer(relabelled)))).toBe('TRANSFER_BAD_SIGNATURE');
    const back = Buffer.from(b); back[0] = 1;
    expect(codeOf(() => l.check(decodeTransfer(back)))).toBe('TRANSFER_BAD_SIGNATURE');
    l.check(t);
    l.check(plain);
  });

  it('a relay sends earnings to a wallet; forgeries, replays, double spends and overspends are refused', () => {
    const l = new CoinLedger();
    l.credit(new Map([[hex(relay), 1000n]]));
    const t1 = signTransfer(relay, wallet.publicKey, 600n, 1);
    l.apply(t1);
    expect(l.account(hex(relay))).toEqual({ balance: 400n, nonce: 1 });
    expect(l.account(hex(wallet))).toEqual({ balance: 600n, nonce: 0 });
    // Replayed as is, or the same nonce spent again elsewhere: both refused.
    expect(codeOf(() => l.apply(t1))).toBe('TRANSFER_REPLAYED');
    expect(codeOf(() => l.apply(signTransfer(relay, other.publicKey, 100n, 1)))).toBe('TRANSFER_REPLAYED');
    expect(codeOf(() => l.apply(signTransfer(relay, other.publicKey, 100n, 3)))).toBe('TRANSFER_NONCE_GAP');
    expect(codeOf(() => l.apply(signTransfer(relay, other.publicKey, 401n, 2)))).toBe('TRANSFER_OVERSPEND');
    // A signature by another key, or over other bytes.
    const forged = { ...signTransfer(other, wallet.publicKey, 10n, 1), from: relay.publicKey, nonce: 2 };
    expect(codeOf(() => l.apply(forged))).toBe('TRANSFER_BAD_SIGNATURE');
    const altered = { ...signTransfer(relay, other.publicKey, 100n, 2), amount: 400n };
    expect(codeOf(() => l.apply(altered))).toBe('TRANSFER_BAD_SIGNATURE');
    // Nothing refused moved a unit.
    expect(l.account(hex(relay))).toEqual({ balance: 400n, nonce: 1 });
    l.apply(signTransfer(wallet, other.publicKey, 600n, 1));
    expect(l.account(hex(other)).balance).toBe(600n);
    expect(l.account(hex(wallet))).toEqual({ balance: 0n, nonce: 1 });
  });
});
