// The u64 codec of src/wire/bytes.ts (SPEC.md §0: u64 read as a number must not exceed 2^53 − 1),
// and the layouts declared once in src/wire/receipt.ts and src/wire/reward-block.ts.
import { describe, expect, it } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { MAX_SAFE_U64, Reader, Writer } from '../../src/wire/bytes';
import {
  RECEIPT_BODY_LEN, RECEIPT_OFF_EPOCH, RECEIPT_OFF_I2R, RECEIPT_OFF_INITIATOR, RECEIPT_OFF_R2I, RECEIPT_OFF_RESPONDER, RECEIPT_OFF_SERIAL,
  RECEIPT_REJECT_LEN, REJECT_OFF_I2R, REJECT_OFF_R2I, REJECT_OFF_REASON, REJECT_OFF_SERIAL, REJECT_OFF_TOLERANCE,
  RejectReason, encodeReceiptBody, encodeReceiptReject,
} from '../../src/wire/receipt';
import {
  BLOCK_HEADER_LEN, BLOCK_OFF_COUNT, BLOCK_OFF_EPOCH, BLOCK_OFF_HEIGHT, BLOCK_OFF_MINTED, BLOCK_OFF_PREVIOUS, encodeRewardBlock,
} from '../../src/wire/reward-block';

function caught(f: () => unknown): unknown {
  try { f(); } catch (e) { return e; }
  throw new Error('did not throw');
}

describe('u64 codec', () => {
  it('round-trips 0 and the largest safe integer as a number', () => {
    for (const v of [0, 1, 0xffff_ffff, 0x1_0000_0000, MAX_SAFE_U64]) {
      const b = new Writer(8, 'T').u64(v, 'x').finish();
      expect(b.readBigUInt64BE(0)).toBe(BigInt(v));
      expect(new Reader(b, 'T').u64('x')).toBe(v);
    }
    expect(MAX_SAFE_U64).toBe(2 ** 53 - 1);
    expect(new Writer(8, 'T').u64(MAX_SAFE_U64, 'x').finish().toString('hex')).toBe('001fffffffffffff');
  });

  it('refuses 2^53 as a number with a typed error, on read and on write', () => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(2n ** 53n);
    const e = caught(() => new Reader(b, 'T').u64('epoch'));
    expect(isBitcloudError(e, 'MSG_MALFORMED')).toBe(true);
    expect((e as { detail?: Record<string, unknown> }).detail).toMatchObject({ message: 'T', field: 'epoch' });
    const w = caught(() => new Writer(8, 'T').u64(2 ** 53, 'epoch'));
    expect(isBitcloudError(w, 'MSG_MALFORMED')).toBe(true);
    for (const bad of [-1, 1.5, Number.NaN, Infinity]) expect(isBitcloudError(caught(() => new Writer(8, 'T').u64(bad, 'x')), 'MSG_MALFORMED')).toBe(true);
  });

  it('uses the layer code it is given', () => {
    const b = Buffer.alloc(8, 0xff);
    expect(isBitcloudError(caught(() => new Reader(b, 'T', { malformed: 'RECEIPT_MALFORMED' }).u64('x')), 'RECEIPT_MALFORMED')).toBe(true);
    expect(isBitcloudError(caught(() => new Reader(b.subarray(0, 7), 'T', { truncated: 'KEY_CORRUPT' }).u64('x')), 'KEY_CORRUPT')).toBe(true);
    expect(isBitcloudError(caught(() => new Writer(8, 'T', { malformed: 'REWARD_MALFORMED' }).u64big(-1n, 'x')), 'REWARD_MALFORMED')).toBe(true);
  });

  it('round-trips the whole u64 range as a bigint and refuses what is outside it', () => {
    for (const v of [0n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) {
      const b = new Writer(8, 'T').u64big(v, 'x').finish();
      expect(new Reader(b, 'T').u64big('x')).toBe(v);
    }
    expect(isBitcloudError(caught(() => new Writer(8, 'T').u64big(2n ** 64n, 'x')), 'MSG_MALFORMED')).toBe(true);
    expect(isBitcloudError(caught(() => new Writer(8, 'T').u64big(-1n, 'x')), 'MSG_MALFORMED')).toBe(true);
  });

  it('refuses a short read with MSG_TRUNCATED and a write past the room with MSG_MALFORMED', () => {
    expect(isBitcloudError(caught(() => new Reader(Buffer.alloc(7), 'T').u64big('x')), 'MSG_TRUNCATED')).toBe(true);
    expect(isBitcloudError(caught(() => new Writer(7, 'T').u64(1, 'x')), 'MSG_MALFORMED')).toBe(true);
  });
});

describe('hex fields', () => {
  it('round-trip, and a string of the wrong length or not hex is refused', () => {
    const b = new Writer(2, 'T').hex('ab01', 2, 'id').finish();
    expect(b).toEqual(Buffer.from([0xab, 0x01]));
    expect(new Reader(b, 'T').hex(2, 'id')).toBe('ab01');
    expect(isBitcloudError(caught(() => new Writer(2, 'T').hex('ab', 2, 'id')), 'MSG_MALFORMED')).toBe(true);
    expect(isBitcloudError(caught(() => new Writer(2, 'T').hex('zzzz', 2, 'id')), 'MSG_MALFORMED')).toBe(true);
    expect(isBitcloudError(caught(() => new Reader(b, 'T').hex(3, 'id')), 'MSG_TRUNCATED')).toBe(true);
  });
});

describe('named offsets match the bytes written', () => {
  it('receipt body and RECEIPT_REJECT', () => {
    const body = encodeReceiptBody({ epoch: 11, initiator: Buffer.alloc(32, 1), responder: Buffer.alloc(32, 2), cellsI2R: 22, cellsR2I: 33, serial: 44 });
    expect(body.length).toBe(RECEIPT_BODY_LEN);
    expect(body.readBigUInt64BE(RECEIPT_OFF_EPOCH)).toBe(11n);
    expect(body[RECEIPT_OFF_INITIATOR]).toBe(1);
    expect(body[RECEIPT_OFF_RESPONDER]).toBe(2);
    expect(body.readBigUInt64BE(RECEIPT_OFF_I2R)).toBe(22n);
    expect(body.readBigUInt64BE(RECEIPT_OFF_R2I)).toBe(33n);
    expect(body.readBigUInt64BE(RECEIPT_OFF_SERIAL)).toBe(44n);
    const rej = encodeReceiptReject({ epoch: 1, serial: 2, reason: 'BAD_SIGNATURE', cellsI2R: 3, cellsR2I: 4, tolerance: 5 });
    expect(rej.length).toBe(RECEIPT_REJECT_LEN);
    expect(rej.readBigUInt64BE(REJECT_OFF_SERIAL)).toBe(2n);
    expect(rej[REJECT_OFF_REASON]).toBe(RejectReason.BAD_SIGNATURE);
    expect(rej.readBigUInt64BE(REJECT_OFF_I2R)).toBe(3n);
    expect(rej.readBigUInt64BE(REJECT_OFF_R2I)).toBe(4n);
    expect(rej.readBigUInt64BE(REJECT_OFF_TOLERANCE)).toBe(5n);
  });

  it('reward block header', () => {
    const fp = 'ab'.repeat(32);
    const body = encodeRewardBlock({ height: 7, previousHash: Buffer.alloc(32, 9), epoch: 8, minted: 2n ** 60n, allocations: new Map([[fp, 2n ** 60n]]) });
    expect(body.readBigUInt64BE(BLOCK_OFF_HEIGHT)).toBe(7n);
    expect(body[BLOCK_OFF_PREVIOUS]).toBe(9);
    expect(body.readBigUInt64BE(BLOCK_OFF_EPOCH)).toBe(8n);
    expect(body.readBigUInt64BE(BLOCK_OFF_MINTED)).toBe(2n ** 60n);
    expect(body.readUInt32BE(BLOCK_OFF_COUNT)).toBe(1);
    expect(body.toString('hex', BLOCK_HEADER_LEN, BLOCK_HEADER_LEN + 32)).toBe(fp);
  });
});
