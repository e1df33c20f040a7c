// SPEC.md §8.11: cloudcoin transfers — the layout, and the ledger's refusals (bad signature, a
// replayed nonce, a double spend, an overspend, a nonce gap), each with its code.
import { describe, expect, it } from 'vitest';
import { ed25519Generate } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { FUNDING_TRANSFER_VERSION, decodeTransfer, encodeTransfer, TRANSFER_BYTES } from '../../src/wire/transfer';
import { CoinLedger, signFundingTransfer as signFundingFor, signTransfer as signFor, signUnboundTransfer, type LedgerMaps } from '../../src/bandwidth/transfer';
import type { Ed25519KeyPair } from '../../src/crypto/primitives';

/** SPEC §8.11.1: the chain these transfers are signed for (the hash of its block 0). */
const CHAIN_ID = Buffer.alloc(32, 0xa1);
const onChain = (): LedgerMaps => ({ chainId: CHAIN_ID, balances: new Map(), nonces: new Map() });
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, CHAIN_ID);
const signFundingTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFundingFor(k, to, amount, nonce, CHAIN_ID);

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
    for (const version of [0, 5, 255]) {
      const v = Buffer.from(b); v[0] = version;
      expect(codeOf(() => decodeTransfer(v))).toBe('TRANSFER_MALFORMED');
    }
    const z = Buffer.from(b); z.writeBigUInt64BE(0n, 65);
    expect(codeOf(() => decodeTransfer(z))).toBe('TRANSFER_MALFORMED');
    expect(codeOf(() => signTransfer(relay, relay.publicKey, 1n, 1))).toBe('TRANSFER_MALFORMED');
  });

  it('round-trips a funding transfer (version 4); a signature of one version never verifies as another', () => {
    const contract = Buffer.alloc(32, 0xc7);
    const t = signFundingTransfer(relay, contract, 500n, 1);
    const b = encodeTransfer(t);
    expect(b.length).toBe(TRANSFER_BYTES);
    expect(b[0]).toBe(FUNDING_TRANSFER_VERSION);
    expect(decodeTransfer(b)).toEqual({ ...t, version: 4 });
    expect(encodeTransfer(decodeTransfer(b)).equals(b)).toBe(true);
    expect(codeOf(() => decodeTransfer(b.subarray(1)))).toBe('TRANSFER_MALFORMED');
    expect(codeOf(() => signFundingTransfer(relay, relay.publicKey, 1n, 1))).toBe('TRANSFER_MALFORMED');
    // The same fields signed as version 3 differ only in the version byte and the signature context.
    const plain = signTransfer(relay, contract, 500n, 1);
    expect(encodeTransfer(plain).subarray(1, 81).equals(b.subarray(1, 81))).toBe(true);
    const l = new CoinLedger(onChain());
    l.credit(new Map([[hex(relay), 1000n]]));
    // A transfer relabelled as any other version does not verify.
    const unbound = [signUnboundTransfer(relay, contract, 500n, 1, 1), signUnboundTransfer(relay, contract, 500n, 1, 2)];
    for (const signed of [plain, t, ...unbound]) {
      for (const version of [1, 2, 3, 4].filter((v) => v !== signed.version)) {
        const relabelled = Buffer.from(encodeTransfer(signed)); relabelled[0] = version;
        expect(codeOf(() => l.check(decodeTransfer(relabelled)))).toBe('TRANSFER_BAD_SIGNATURE');
      }
      l.check(signed);
    }
  });

  it('a relay sends earnings to a wallet; forgeries, replays, double spends and overspends are refused', () => {
    const l = new CoinLedger(onChain());
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
