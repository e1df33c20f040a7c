import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { expectCode } from '../helpers/errors';
import { CellCommand, decodeCell, encodeCell } from '../../src/wire/cell';
import {
  RECEIPT_BODY_LEN, RECEIPT_LEN, RECEIPT_PROPOSAL_LEN, RECEIPT_REJECT_LEN, acceptCountersign, countersign, decodeReceipt, decodeReceiptBatch,
  decodeReceiptBody, decodeReceiptProposal, decodeReceiptReject, encodeReceipt, encodeReceiptBatch, encodeReceiptBody,
  encodeReceiptProposal, encodeReceiptReject, inFlightTolerance, MAX_SLACK_CIRCUITS, r2iExcessAllowed, signReceipt, verifyReceipt, type ReceiptBody,
} from '../../src/bandwidth/receipt';
import { EpochTotals, LinkCounter, SerialSource, isCountedCell } from '../../src/bandwidth/counters';

const keyA = ed25519FromSeed(Buffer.alloc(32, 1));
const keyB = ed25519FromSeed(Buffer.alloc(32, 2));
const keyC = ed25519FromSeed(Buffer.alloc(32, 3));
const fpA = keyA.publicKey.toString('hex');
const fpB = keyB.publicKey.toString('hex');

function body(over: Partial<ReceiptBody> = {}): ReceiptBody {
  return { epoch: 7, initiator: keyA.publicKey, responder: keyB.publicKey, cellsI2R: 5000, cellsR2I: 12000, serial: 42, ...over };
}

describe('receipt body layout (SPEC §8.2)', () => {
  it('is 96 bytes: epoch | initiator | responder | i→r | r→i | serial, big-endian', () => {
    const b = encodeReceiptBody(body());
    expect(b.length).toBe(RECEIPT_BODY_LEN);
    expect(b.readBigUInt64BE(0)).toBe(7n);
    expect(b.subarray(8, 40).equals(keyA.publicKey)).toBe(true);
    expect(b.subarray(40, 72).equals(keyB.publicKey)).toBe(true);
    expect(b.readBigUInt64BE(72)).toBe(5000n);
    expect(b.readBigUInt64BE(80)).toBe(12000n);
    expect(b.readBigUInt64BE(88)).toBe(42n);
    expect(decodeReceiptBody(b)).toEqual(body());
  });

  it('refuses a receipt between a relay and itself', () => {
    expectCode(() => encodeReceiptBody(body({ responder: keyA.publicKey })), 'RECEIPT_MALFORMED');
    const b = encodeReceiptBody(body());
    keyA.publicKey.copy(b, 40);
    expectCode(() => decodeReceiptBody(b), 'RECEIPT_MALFORMED');
  });

  it('refuses u64 values above 2^53-1 and negative or fractional numbers', () => {
    const b = encodeReceiptBody(body());
    b.writeBigUInt64BE(1n << 53n, 72);
    expectCode(() => decodeReceiptBody(b), 'RECEIPT_MALFORMED');
    expectCode(() => encodeReceiptBody(body({ cellsI2R: -1 })), 'RECEIPT_MALFORMED');
    expectCode(() => encodeReceiptBody(body({ serial: 1.5 })), 'RECEIPT_MALFORMED');
    b.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER), 72);
    expect(decodeReceiptBody(b).cellsI2R).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('refuses identity keys of the wrong length', () => {
    expectCode(() => encodeReceiptBody(body({ initiator: Buffer.alloc(31) })), 'RECEIPT_MALFORMED');
  });
});

describe('signing and countersigning (SPEC §8.3)', () => {
  const proposal = signReceipt(body(), keyA);
  const mine = { cellsI2R: 5000, cellsR2I: 12000 };

  it('only the initiator can sign a proposal', () => {
    expectCode(() => signReceipt(body(), keyB), 'RECEIPT_WRONG_KEY');
  });

  it('the responder countersigns counts that match its own', () => {
    const r = countersign(proposal, mine, keyB, inFlightTolerance(3));
    expect(r.ok).toBe(true);
    if (r.ok) expect(verifyReceipt(r.receipt)).toBe(true);
  });

  it('tolerates cells in flight: one circuit window (1000 cells) per circuit open on the link', () => {
    expect(inFlightTolerance(3)).toBe(3000);
    const near = countersign(proposal, { cellsI2R: 5000, cellsR2I: 9000 }, keyB, inFlightTolerance(3));
    expect(near.ok).toBe(true);
    const far = countersign(proposal, { cellsI2R: 5000, cellsR2I: 8999 }, keyB, inFlightTolerance(3));
    expect(far.ok).toBe(false);
  });

  it('a relay that reports inflated counts to its peer does not get them countersigned', () => {
    const inflated = signReceipt(body({ cellsI2R: 5000 + 2001 }), keyA);
    const r = countersign(inflated, mine, keyB, inFlightTolerance(2));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reject).toEqual({ epoch: 7, serial: 42, reason: 'COUNTS_MISMATCH', cellsI2R: 5000, cellsR2I: 12000, tolerance: 2000 });
      expect(decodeReceiptReject(encodeReceiptReject(r.reject))).toEqual(r.reject);
    }
  });

  it('refuses a proposal addressed to another responder, or from a peer other than the link peer', () => {
    const r1 = countersign(proposal, mine, keyC, 0);
    expect(!r1.ok && r1.reject.reason).toBe('WRONG_IDENTITY');
    const r2 = countersign(proposal, mine, keyB, 0, { initiator: keyC.publicKey });
    expect(!r2.ok && r2.reject.reason).toBe('WRONG_IDENTITY');
  });

  it('refuses an epoch it does not accept', () => {
    const r = countersign(proposal, mine, keyB, 0, { epochAccepted: (e) => e === 8 || e === 9 });
    expect(!r.ok && r.reject.reason).toBe('EPOCH_NOT_ACCEPTED');
  });

  it('refuses a proposal whose initiator signature does not hold', () => {
    const bad = { ...proposal, initiatorSignature: Buffer.from(proposal.initiatorSignature) };
    bad.initiatorSignature[0] ^= 1;
    const r = countersign(bad, mine, keyB, 0);
    expect(!r.ok && r.reject.reason).toBe('BAD_SIGNATURE');
  });

  it('verifyReceipt fails when counts are altered after signing or a signature is missing', () => {
    const r = countersign(proposal, mine, keyB, 0);
    if (!r.ok) throw new Error('expected countersign');
    const bytes = encodeReceipt(r.receipt);
    bytes[75] ^= 0x10; // inside cells i→r
    expect(verifyReceipt(decodeReceipt(bytes))).toBe(false);
    const noSecond = encodeReceipt(r.receipt);
    noSecond.fill(0, RECEIPT_PROPOSAL_LEN);
    expect(verifyReceipt(decodeReceipt(noSecond))).toBe(false);
  });

  it('the initiator keeps a countersignature only for the body it proposed, with a valid responder signature', () => {
    const r = countersign(proposal, mine, keyB, 0);
    if (!r.ok) throw new Error('expected countersign');
    const payload = encodeReceipt(r.receipt);
    expect(verifyReceipt(acceptCountersign(proposal, payload))).toBe(true);
    const other = signReceipt(body({ serial: 43 }), keyA);
    expectCode(() => acceptCountersign(other, payload), 'RECEIPT_MISMATCH');
    const badSig = Buffer.from(payload);
    badSig[RECEIPT_PROPOSAL_LEN + 3] ^= 1;
    expectCode(() => acceptCountersign(proposal, badSig), 'RECEIPT_BAD_SIGNATURE');
    expectCode(() => acceptCountersign(proposal, payload.subarray(0, 200)), 'RECEIPT_MALFORMED');
  });

  it('an initiator signature never verifies as a responder signature (role domain separation)', () => {
    const r = { ...proposal, responderSignature: proposal.initiatorSignature };
    expect(verifyReceipt(r)).toBe(false);
  });
});

describe('payload codecs', () => {
  const proposal = signReceipt(body(), keyA);
  const r = countersign(proposal, { cellsI2R: 5000, cellsR2I: 12000 }, keyB, 0);
  if (!r.ok) throw new Error('setup');

  it('round-trip through real cells with circId 0', () => {
    const pc = decodeCell(encodeCell(0, CellCommand.RECEIPT_PROPOSE, encodeReceiptProposal(proposal)));
    expect(decodeReceiptProposal(pc.payload)).toEqual(proposal);
    const cc = decodeCell(encodeCell(0, CellCommand.RECEIPT_COUNTERSIGN, encodeReceipt(r.receipt)));
    const back = decodeReceipt(cc.payload);
    expect(back).toEqual(r.receipt);
    expect(verifyReceipt(back)).toBe(true);
    const rej = { epoch: 1, serial: 2, reason: 'EPOCH_NOT_ACCEPTED' as const, cellsI2R: 3, cellsR2I: 4, tolerance: 5 };
    const jc = decodeCell(encodeCell(0, CellCommand.RECEIPT_REJECT, encodeReceiptReject(rej)));
    expect(decodeReceiptReject(jc.payload)).toEqual(rej);
  });

  it('have the documented sizes', () => {
    expect(encodeReceiptProposal(proposal).length).toBe(160);
    expect(encodeReceipt(r.receipt).length).toBe(RECEIPT_LEN);
    expect(RECEIPT_LEN).toBe(224);
    expect(RECEIPT_REJECT_LEN).toBe(41);
  });

  it('refuse short payloads and unknown reject reasons', () => {
    expectCode(() => decodeReceiptProposal(Buffer.alloc(159)), 'RECEIPT_MALFORMED');
    expectCode(() => decodeReceipt(encodeReceiptProposal(proposal)), 'RECEIPT_MALFORMED');
    const rej = encodeReceiptReject({ epoch: 1, serial: 2, reason: 'MALFORMED', cellsI2R: 3, cellsR2I: 4, tolerance: 5 });
    rej[16] = 99;
    expectCode(() => decodeReceiptReject(rej), 'RECEIPT_MALFORMED');
  });

  it('batches are whole 224-byte records', () => {
    const batch = encodeReceiptBatch([r.receipt, r.receipt]);
    expect(decodeReceiptBatch(batch)).toHaveLength(2);
    expectCode(() => decodeReceiptBatch(batch.subarray(1)), 'RECEIPT_MALFORMED');
    expectCode(() => decodeReceiptBatch(Buffer.alloc(0)), 'RECEIPT_MALFORMED');
    expectCode(() => decodeReceiptBatch(batch, 1), 'RECEIPT_MALFORMED');
  });

  it('decoders fed random bytes throw only BitcloudError', () => {
    const decoders = [decodeReceiptBody, decodeReceiptProposal, decodeReceipt, decodeReceiptReject, (b: Uint8Array) => decodeReceiptBatch(b)];
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: decoders.length - 1 }), (bytes, i) => {
      try {
        decoders[i](bytes);
      } catch (e) {
        if (!isBitcloudError(e)) throw e;
      }
    }), { numRuns: 2000 });
  });

  it('decoders accept every valid encoding they produce', () => {
    fc.assert(fc.property(
      fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      (epoch, i2r, r2i, serial) => {
        const b = body({ epoch, cellsI2R: i2r, cellsR2I: r2i, serial });
        expect(decodeReceiptBody(encodeReceiptBody(b))).toEqual(b);
      },
    ));
  });
});

describe('link counters (SPEC §8.1)', () => {
  it('count only circuit cells', () => {
    expect(isCountedCell(0)).toBe(false);
    expect(isCountedCell(0x8000_0001)).toBe(true);
  });

  it('orient counts like the receipt body and start a new segment at each cut', () => {
    const ini = new LinkCounter(fpB, 'initiator');
    const res = new LinkCounter(fpA, 'responder');
    ini.onCircuitOpened(); res.onCircuitOpened();
    for (let i = 0; i < 10; i++) { ini.onSent(); res.onReceived(); }
    for (let i = 0; i < 4; i++) { res.onSent(); ini.onReceived(); }
    expect(ini.cut()).toEqual({ cellsI2R: 10, cellsR2I: 4, circuits: 1, carried: 0, prevSent: 0 });
    expect(res.cut()).toEqual({ cellsI2R: 10, cellsR2I: 4, circuits: 1, carried: 0, prevSent: 0 });
    // The open circuit is counted in the next segment too; a closed one is not.
    expect(ini.peek()).toEqual({ cellsI2R: 0, cellsR2I: 0, circuits: 1, carried: 0, prevSent: 10 });
    ini.onCircuitClosed();
    ini.onCircuitOpened(); ini.onCircuitOpened();
    expect(ini.cut().circuits).toBe(3);
    expect(ini.cut().circuits).toBe(2);
  });

  it('carried circuits: those this node wrote a cell on, this segment or the previous one, capped (SPEC §8.1.7)', () => {
    const res = new LinkCounter(fpA, 'responder');
    for (let id = 1; id <= 100; id++) res.onCircuitCarried(id);
    expect(res.cut().carried).toBe(MAX_SLACK_CIRCUITS);
    expect(inFlightTolerance(100)).toBe(MAX_SLACK_CIRCUITS * 1000);
    res.onCircuitCarried(1); res.onCircuitCarried(500);
    expect(res.peek().carried).toBe(MAX_SLACK_CIRCUITS); // 32 from before ∪ {1, 500}, capped
    res.cut();
    expect(res.cut().carried).toBe(2); // the previous segment's {1, 500}
    expect(res.cut().carried).toBe(0);
  });

  it('a full exchange: counters → proposal → countersign → totals per peer and epoch', () => {
    const ini = new LinkCounter(fpB, 'initiator');
    const res = new LinkCounter(fpA, 'responder');
    ini.onCircuitOpened(); res.onCircuitOpened();
    ini.onSent(700); res.onReceived(700);
    res.onSent(1500); ini.onReceived(1200); // 300 cells still in flight towards the initiator
    const serials = new SerialSource(100);
    const seg = ini.cut();
    const proposal = signReceipt({ epoch: 3, initiator: keyA.publicKey, responder: keyB.publicKey, cellsI2R: seg.cellsI2R, cellsR2I: seg.cellsR2I, serial: serials.take() }, keyA);
    const mineSeg = res.cut();
    const r = countersign(proposal, mineSeg, keyB, inFlightTolerance(mineSeg.circuits), { initiator: keyA.publicKey });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const totalsA = new EpochTotals(fpA);
    const totalsB = new EpochTotals(fpB);
    totalsA.add(r.receipt);
    totalsB.add(r.receipt);
    expect(totalsA.peers(3).get(fpB)).toEqual({ sent: 700, received: 1200, receipts: 1 });
    expect(totalsB.peers(3).get(fpA)).toEqual({ sent: 1200, received: 700, receipts: 1 });
    expect(totalsA.cells(3)).toBe(1900);
    expect(serials.take()).toBe(101);
    expectCode(() => new EpochTotals(keyC.publicKey.toString('hex')).add(r.receipt), 'RECEIPT_WRONG_KEY');
  });

  it('refuse a peer that is not a fingerprint', () => {
    expectCode(() => new LinkCounter('ABC', 'initiator'), 'RECEIPT_MALFORMED');
  });
});

describe('link backlog bound (SPEC §8.3 check 5)', () => {
  it('r2iExcessAllowed: at most the tolerance, the previous segment, and what was written and not yet signed', () => {
    expect(r2iExcessAllowed(1000, 5000, 9000, 8500)).toBe(500);
    expect(r2iExcessAllowed(1000, 300, 9000, 0)).toBe(300);
    expect(r2iExcessAllowed(1000, 5000, 9000, 0)).toBe(1000);
    expect(r2iExcessAllowed(1000, 5000, 100, 200)).toBe(0);
  });

  it('property: whatever a proposer claims within the bound, over a link\'s life the responder never signs more r→i than it wrote', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat({ max: 50_000 }), fc.nat({ max: 40 }), fc.integer({ min: -40_000, max: 40_000 })), { minLength: 1, maxLength: 40 }), (segs) => {
      let written = 0, signed = 0, prev = 0;
      for (const [own, circuits, want] of segs) {
        const t = inFlightTolerance(Math.max(1, circuits));
        const before = written;
        written += own;
        // The proposer asks for own + want; the responder signs only within [own − t, own + excess].
        const claim = Math.max(0, Math.max(own - t, Math.min(own + want, own + r2iExcessAllowed(t, prev, before, signed))));
        signed += claim;
        prev = own;
        if (signed > written) return false;
      }
      return true;
    }));
  });
});
