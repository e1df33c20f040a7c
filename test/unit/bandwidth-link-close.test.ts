// SPEC.md §8.3 step 11 over real TLS links on 127.0.0.1: a link closed on purpose by its RESPONDER
// still produces a receipt. The responder sends RECEIPT_REQUEST, the initiator proposes for its
// current epoch, the responder countersigns and only then closes. Plus the refusals: a REQUEST on an
// anonymous link, to the wrong role, malformed, or beyond 16 per epoch is ignored and counted.
// Every listener and link is closed in afterEach; no test asserts on time.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { metric, relayLink as linkBetween, traffic, until } from '../helpers/bandwidth-link';
import {
  CellCommand, RECEIPT_REQUEST_LEN, decodeReceiptRequest, encodeReceiptRequest,
} from '../../src/wire/cell';
import { epochAt } from '../../src/bandwidth/link-receipts';
import { encodeReceipt, verifyReceipt } from '../../src/bandwidth/receipt';
import { codeOf } from '../helpers/errors';

const P = 10;
const NOW = 1_700_000_003_000;
const CUR = epochAt(NOW, P); // the current epoch: closing proposals name it
const cleanups: Array<() => unknown> = [];
let relayA: Ed25519KeyPair; // responder (listener): the side that shuts down
let relayB: Ed25519KeyPair; // initiator

beforeAll(() => { relayA = ed25519Generate(); relayB = ed25519Generate(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

const clock = { periodSeconds: P, now: NOW };
const relayLink = (o: { anonymous?: boolean; nodeA?: boolean } = {}) => linkBetween(relayA, relayB, clock, cleanups, o);

const REQUEST = encodeReceiptRequest({ epoch: CUR, reason: 'CLOSING' });

describe('RECEIPT_REQUEST payload (SPEC §8.2.3)', () => {
  it('is epoch u64 | reason u8 (1 = CLOSING), and round-trips', () => {
    expect(REQUEST.length).toBe(RECEIPT_REQUEST_LEN);
    expect(REQUEST.readBigUInt64BE(0)).toBe(BigInt(CUR));
    expect(REQUEST[8]).toBe(1);
    const padded = Buffer.alloc(509);
    REQUEST.copy(padded);
    expect(decodeReceiptRequest(padded)).toEqual({ epoch: CUR, reason: 'CLOSING' });
  });

  it('refuses a short payload, an unknown reason and an epoch above 2^53 − 1 with RECEIPT_MALFORMED', () => {
    expect(codeOf(() => decodeReceiptRequest(REQUEST.subarray(0, 8)))).toBe('RECEIPT_MALFORMED');
    const bad = Buffer.from(REQUEST);
    bad[8] = 2;
    expect(codeOf(() => decodeReceiptRequest(bad))).toBe('RECEIPT_MALFORMED');
    bad[8] = 0;
    expect(codeOf(() => decodeReceiptRequest(bad))).toBe('RECEIPT_MALFORMED');
    const big = Buffer.from(REQUEST);
    big.writeBigUInt64BE(2n ** 53n, 0);
    expect(codeOf(() => decodeReceiptRequest(big))).toBe('RECEIPT_MALFORMED');
    expect(codeOf(() => encodeReceiptRequest({ epoch: -1, reason: 'CLOSING' }))).toBe('RECEIPT_MALFORMED');
  });
});

describe('a link closed on purpose by its responder (SPEC §8.3 step 11)', () => {
  it('responder shutdown: both ends hold the identical countersigned receipt for the current epoch, exact counts', async () => {
    const { a, b, inbound, out } = await relayLink({ nodeA: true });
    traffic(out, 3, 10);
    const ca = a.ex.linkReceipts(inbound)!.counter;
    await until(() => ca.received === 13 && b.ex.linkReceipts(out)!.counter.received === 3); // 3 DESTROY came back
    // What the daemons call at shutdown (relay/circuits.ts passes only its outbound links).
    await a.nb!.beforeClose([]);
    // The responder waited for the PROPOSE and answered it before returning.
    expect(a.receipts).toHaveLength(1);
    inbound.close('shutting down');
    await until(() => b.receipts.length === 1);
    expect(encodeReceipt(a.receipts[0]).equals(encodeReceipt(b.receipts[0]))).toBe(true);
    expect(verifyReceipt(a.receipts[0])).toBe(true);
    expect(a.receipts[0].body).toMatchObject({ epoch: CUR, cellsI2R: 13, cellsR2I: 3 });
    expect(a.receipts[0].body.initiator.equals(relayB.publicKey)).toBe(true);
    expect(a.receipts[0].body.responder.equals(relayA.publicKey)).toBe(true);
    await until(() => out.closed);
    expect(b.disagreements).toEqual([]); // no NO_ANSWER: the proposal was answered before the close
    expect(await metric(a.reg, 'bitcloud_receipts_countersigned_total', { role: 'responder' })).toBe(1);
    expect(await metric(b.reg, 'bitcloud_receipts_countersigned_total', { role: 'initiator' })).toBe(1);
    expect(a.nb!.status().epochs).toEqual([expect.objectContaining({ epoch: CUR, receipts: 1, cellsSent: 3, cellsReceived: 13 })]);
  });

  it('an idle segment (no cells) produces no proposal', async () => {
    const { a, b, inbound, out } = await relayLink();
    await a.ex.requestBeforeClose(10_000); // not waited for: the segment counted nothing
    // A PROPOSE to the initiator (wrong role) after the REQUEST: once B has counted it, it has read the REQUEST.
    inbound.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160));
    await until(async () => await metric(b.reg, 'bitcloud_receipt_cell_errors_total', { code: 'LINK_PROTOCOL_VIOLATION' }) === 1);
    expect(b.ex.linkReceipts(out)!.pendingCount).toBe(0);
    expect(a.ex.linkReceipts(inbound)!.proposalsRead).toBe(0);
    expect(a.receipts).toEqual([]);
    expect(b.receipts).toEqual([]);
    expect(out.closed || inbound.closed).toBe(false);
  });

  it('the responder waits at most the grace when no PROPOSE comes (initiator not reading)', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 1, 1);
    await until(() => a.ex.linkReceipts(inbound)!.counter.received === 2);
    out.pauseReading();
    await a.ex.requestBeforeClose(50);
    expect(a.receipts).toEqual([]);
    expect(b.receipts).toEqual([]);
    expect(a.ex.linkReceipts(inbound)!.proposalsRead).toBe(0);
  });

  it('the initiator honours 16 REQUESTs per epoch; beyond that they are ignored and counted, the link stays up', async () => {
    const { a, b, inbound, out } = await relayLink();
    const cb = b.ex.linkReceipts(out)!;
    for (let i = 0; i < 16; i++) {
      traffic(out, 0, 1);
      await until(() => a.ex.linkReceipts(inbound)!.counter.received === 1);
      inbound.send(0, CellCommand.RECEIPT_REQUEST, REQUEST);
      await until(() => a.receipts.length === i + 1 && b.receipts.length === i + 1);
    }
    traffic(out, 0, 1);
    await until(() => a.ex.linkReceipts(inbound)!.counter.received === 1);
    inbound.send(0, CellCommand.RECEIPT_REQUEST, REQUEST);
    await until(async () => await metric(b.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_TOO_MANY_REQUESTS' }) === 1);
    expect(cb.pendingCount).toBe(0);
    expect(b.receipts).toHaveLength(16);
    expect(cb.counter.sent).toBe(1); // the 17th REQUEST cut nothing
    expect(out.closed || inbound.closed).toBe(false);
  });

  it('a REQUEST sent to the responder (wrong role) is ignored and counted; the link stays up', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 0, 2);
    await until(() => a.ex.linkReceipts(inbound)!.counter.received === 2);
    out.send(0, CellCommand.RECEIPT_REQUEST, REQUEST);
    await until(async () => await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'LINK_PROTOCOL_VIOLATION' }) === 1);
    expect(a.ex.linkReceipts(inbound)!.counter.received).toBe(2); // no segment cut
    expect(a.receipts).toEqual([]);
    expect(b.receipts).toEqual([]);
    expect(inbound.closed || out.closed).toBe(false);
  });

  it('a malformed REQUEST to the initiator is ignored and counted (RECEIPT_MALFORMED); no proposal', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 0, 1);
    await until(() => a.ex.linkReceipts(inbound)!.counter.received === 1);
    const bad = Buffer.from(REQUEST);
    bad[8] = 9;
    inbound.send(0, CellCommand.RECEIPT_REQUEST, bad);
    await until(async () => await metric(b.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_MALFORMED' }) === 1);
    expect(b.ex.linkReceipts(out)!.pendingCount).toBe(0);
    expect(b.ex.linkReceipts(out)!.counter.sent).toBe(1);
    expect(out.closed || inbound.closed).toBe(false);
  });

  it('a REQUEST on an anonymous link is ignored and counted, never closes the link', async () => {
    const { a, inbound, out } = await relayLink({ anonymous: true });
    expect(a.ex.linkCount).toBe(0);
    out.send(0, CellCommand.RECEIPT_REQUEST, REQUEST);
    await until(async () => await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_ANONYMOUS_LINK' }) === 1);
    await a.ex.requestBeforeClose(10_000); // sends nothing on a link it does not count
    expect(inbound.closed).toBe(false);
  });
});
