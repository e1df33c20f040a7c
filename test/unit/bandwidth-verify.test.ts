import { describe, it, expect } from 'vitest';
import { ed25519FromSeed, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { countersign, encodeReceipt, encodeReceiptProposal, signReceipt, type Receipt } from '../../src/bandwidth/receipt';
import { MAX_RECEIPTS_PER_PAIR_EPOCH, ReceiptVerifier, epochAt, periodicUploadWindow } from '../../src/bandwidth/verify';
import { uploaderKey } from '../../directory/rate-limit';

const keys = [1, 2, 3, 4].map((i) => ed25519FromSeed(Buffer.alloc(32, i)));
const [A, B, C, OUTSIDER] = keys;
const fp = (k: Ed25519KeyPair) => k.publicKey.toString('hex');

const GENESIS = 1_700_000_000_000;
const PERIOD = 3_600_000;
const GRACE = 3_600_000;
const window = periodicUploadWindow({ genesisMs: GENESIS, periodMs: PERIOD, graceMs: GRACE });
const inEpoch = (e: number) => GENESIS + e * PERIOD + 1000;

// Consensus: A, B, C are listed in epochs 0..10; epoch 11 has no consensus yet.
const listed = new Set([fp(A), fp(B), fp(C)]);
const membership = (epoch: number, f: string) => (epoch > 10 ? undefined : listed.has(f));

function receipt(ini: Ed25519KeyPair, res: Ed25519KeyPair, epoch = 5, serial = 1, i2r = 1000, r2i = 2000): Receipt {
  const p = signReceipt({ epoch, initiator: ini.publicKey, responder: res.publicKey, cellsI2R: i2r, cellsR2I: r2i, serial }, ini);
  const r = countersign(p, { cellsI2R: i2r, cellsR2I: r2i }, res, 0);
  if (!r.ok) throw new Error('setup');
  return r.receipt;
}

describe('authority intake limits (SPEC §8.4 "Intake limits")', () => {
  it('accepts at most MAX_RECEIPTS_PER_PAIR_EPOCH receipts per pair and epoch, refusing more before their signatures', () => {
    const v = new ReceiptVerifier({ membership, window });
    for (let s = 1; s <= MAX_RECEIPTS_PER_PAIR_EPOCH; s++) expect(v.accept(receipt(A, B, 5, s), inEpoch(6)).ok).toBe(true);
    const over = v.accept(receipt(A, B, 5, 100_000), inEpoch(6));
    expect(over).toMatchObject({ ok: false, code: 'RECEIPT_TOO_MANY' });
    // Other pairs, other epochs and the reverse orientation are not affected.
    expect(v.accept(receipt(B, A, 5, 1), inEpoch(6)).ok).toBe(true);
    expect(v.accept(receipt(A, B, 6, 1), inEpoch(6)).ok).toBe(true);
  });

  it('counts validly signed conflicting records towards the pair limit, and refuses them before their signatures once it is reached', () => {
    const v = new ReceiptVerifier({ membership, window });
    expect(v.accept(receipt(A, B, 5, 7, 1, 1), inEpoch(6)).ok).toBe(true);
    // The pair re-signs serial 7 with other counts, again and again: each is a conflict, and each counts.
    for (let k = 2; k <= MAX_RECEIPTS_PER_PAIR_EPOCH; k++) {
      expect(v.accept(receipt(A, B, 5, 7, k, k), inEpoch(6))).toMatchObject({ ok: false, code: 'RECEIPT_CONFLICT' });
    }
    // At the limit: another conflicting record, even one whose signatures do not verify, is refused
    // as too many, before any signature check; a new serial too.
    expect(v.accept(receipt(A, B, 5, 7, 100_000, 1), inEpoch(6))).toMatchObject({ ok: false, code: 'RECEIPT_TOO_MANY' });
    const forged = encodeReceipt(receipt(A, B, 5, 7, 5, 5));
    forged[87] ^= 1; // cells_r2i changed after signing
    expect(v.accept(forged, inEpoch(6))).toMatchObject({ ok: false, code: 'RECEIPT_TOO_MANY' });
    expect(v.accept(receipt(A, B, 5, 8), inEpoch(6))).toMatchObject({ ok: false, code: 'RECEIPT_TOO_MANY' });
    // The receipt accepted first stands, and an exact copy of it is still a replay.
    expect(v.pairs(5)).toEqual([expect.objectContaining({ cellsI2R: 1, cellsR2I: 1 })]);
    expect(v.accept(receipt(A, B, 5, 7, 1, 1), inEpoch(6))).toMatchObject({ ok: false, code: 'RECEIPT_REPLAYED' });
    // Other pairs are not affected.
    expect(v.accept(receipt(B, A, 5, 7), inEpoch(6)).ok).toBe(true);
  });

  it('keys the upload rate limit per IPv4 address and per IPv6 /64', () => {
    expect(uploaderKey('203.0.113.7')).toBe('203.0.113.7');
    expect(uploaderKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(uploaderKey('2001:db8:1:2::1')).toBe(uploaderKey('2001:db8:1:2:ffff:ffff:ffff:fffe'));
    expect(uploaderKey('2001:db8:1:2::1')).not.toBe(uploaderKey('2001:db8:1:3::1'));
  });
});

describe('authority receipt acceptance (SPEC §8.4)', () => {
  it('accepts a countersigned receipt by two listed relays inside the window, as bytes or decoded', () => {
    const v = new ReceiptVerifier({ membership, window });
    const res = v.accept(encodeReceipt(receipt(A, B)), inEpoch(6));
    expect(res.ok).toBe(true);
    if (res.ok) expect(res.receipt.pair).toEqual({ initiator: fp(A), responder: fp(B), cellsI2R: 1000, cellsR2I: 2000 });
    expect(v.accept(receipt(B, C), inEpoch(5)).ok).toBe(true);
    expect(v.pairs(5)).toHaveLength(2);
  });

  it('refuses a receipt with one signature only', () => {
    const v = new ReceiptVerifier({ membership, window });
    const p = signReceipt({ epoch: 5, initiator: A.publicKey, responder: B.publicKey, cellsI2R: 1, cellsR2I: 1, serial: 1 }, A);
    const asRecord = Buffer.concat([encodeReceiptProposal(p), Buffer.alloc(64)]);
    for (const input of [p, asRecord]) {
      const res = v.accept(input, inEpoch(5));
      expect(res.ok).toBe(false);
      if (!res.ok) expect(res.code).toBe('RECEIPT_ONE_SIGNATURE');
    }
  });

  it('refuses a receipt signed by a relay not in the consensus of that epoch', () => {
    const v = new ReceiptVerifier({ membership, window });
    const res = v.accept(receipt(A, OUTSIDER), inEpoch(5));
    expect(!res.ok && res.code).toBe('RECEIPT_UNKNOWN_RELAY');
    const res2 = v.accept(receipt(OUTSIDER, A), inEpoch(5));
    expect(!res2.ok && res2.code).toBe('RECEIPT_UNKNOWN_RELAY');
  });

  it('refuses a receipt whose counts were altered after signing', () => {
    const v = new ReceiptVerifier({ membership, window });
    const bytes = encodeReceipt(receipt(A, B));
    bytes.writeUInt32BE(bytes.readUInt32BE(76) * 10, 76); // cells i→r × 10
    const res = v.accept(bytes, inEpoch(5));
    expect(!res.ok && res.code).toBe('RECEIPT_BAD_SIGNATURE');
    // The forgery did not occupy the (epoch, pair, serial) slot: the genuine receipt is still accepted.
    expect(v.accept(receipt(A, B), inEpoch(5)).ok).toBe(true);
  });

  it('refuses a replayed receipt (dedupe on epoch, pair, serial)', () => {
    const v = new ReceiptVerifier({ membership, window });
    const r = receipt(A, B);
    expect(v.accept(r, inEpoch(5)).ok).toBe(true);
    const again = v.accept(encodeReceipt(r), inEpoch(5));
    expect(!again.ok && again.code).toBe('RECEIPT_REPLAYED');
    // Another serial of the same pair and epoch is a different receipt.
    expect(v.accept(receipt(A, B, 5, 2), inEpoch(5)).ok).toBe(true);
    // The same serial in another epoch too.
    expect(v.accept(receipt(A, B, 6, 1), inEpoch(6)).ok).toBe(true);
    expect(v.pairs(5)).toHaveLength(2);
  });

  it('refuses a second, different, validly signed receipt under the same serial', () => {
    const v = new ReceiptVerifier({ membership, window });
    expect(v.accept(receipt(A, B, 5, 9, 10, 10), inEpoch(5)).ok).toBe(true);
    const res = v.accept(receipt(A, B, 5, 9, 20, 20), inEpoch(5));
    expect(!res.ok && res.code).toBe('RECEIPT_CONFLICT');
    expect(v.pairs(5)[0].cellsI2R).toBe(10);
  });

  it('refuses a receipt for a past epoch outside the upload window, and one from the future', () => {
    const v = new ReceiptVerifier({ membership, window });
    const old = v.accept(receipt(A, B, 2), inEpoch(5));
    expect(!old.ok && old.code).toBe('RECEIPT_OUTSIDE_WINDOW');
    const early = v.accept(receipt(A, B, 7), inEpoch(5));
    expect(!early.ok && early.code).toBe('RECEIPT_OUTSIDE_WINDOW');
    // The window is the epoch itself plus the grace period after it.
    expect(v.accept(receipt(A, B, 4), GENESIS + 6 * PERIOD - 1).ok).toBe(true);
    const closed = v.accept(receipt(A, B, 4, 2), GENESIS + 6 * PERIOD);
    expect(!closed.ok && closed.code).toBe('RECEIPT_OUTSIDE_WINDOW');
  });

  it('refuses a receipt for an epoch whose consensus the authority does not have', () => {
    const v = new ReceiptVerifier({ membership, window });
    const res = v.accept(receipt(A, B, 11), inEpoch(11));
    expect(!res.ok && res.code).toBe('RECEIPT_UNKNOWN_EPOCH');
  });

  it('refuses malformed bytes with a code instead of throwing', () => {
    const v = new ReceiptVerifier({ membership, window });
    const res = v.accept(Buffer.alloc(100), inEpoch(5));
    expect(!res.ok && res.code).toBe('RECEIPT_MALFORMED');
  });

  it('accepts an upload record by record and prunes closed epochs', () => {
    const v = new ReceiptVerifier({ membership, window });
    const out = v.acceptAll([receipt(A, B), encodeReceipt(receipt(A, C)), receipt(A, OUTSIDER), receipt(A, B)], inEpoch(5));
    expect(out.accepted).toBe(2);
    expect(out.refused.map((r) => [r.index, r.code])).toEqual([[2, 'RECEIPT_UNKNOWN_RELAY'], [3, 'RECEIPT_REPLAYED']]);
    expect(v.prune(inEpoch(6))).toEqual([]);
    expect(v.prune(inEpoch(7))).toEqual([5]);
    expect(v.epochs()).toEqual([]);
  });

  it('numbers epochs from the genesis time', () => {
    expect(epochAt(inEpoch(9), { genesisMs: GENESIS, periodMs: PERIOD })).toBe(9);
  });
});
