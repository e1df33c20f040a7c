// SPEC.md §8.1, §8.3 over real TLS links on 127.0.0.1: counting on authenticated links only, the
// RECEIPT_* cells routed through the CircuitSwitch hook, the epoch boundary giving both ends the
// same countersigned receipt, inflated counts refused, anonymous links never counted.
// Every listener and link is closed in afterEach; no test asserts on time.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { metric, relayLink as linkBetween, traffic, until } from '../helpers/bandwidth-link';
import { CellCommand } from '../../src/wire/cell';
import { epochAt } from '../../src/bandwidth/link-receipts';
import { encodeReceipt, verifyReceipt } from '../../src/bandwidth/receipt';

const P = 10;
const NOW = 1_700_000_003_000;
const E = epochAt(NOW, P) - 1; // the epoch that just ended
const cleanups: Array<() => unknown> = [];
let relayA: Ed25519KeyPair; // responder (listener)
let relayB: Ed25519KeyPair; // initiator

beforeAll(() => { relayA = ed25519Generate(); relayB = ed25519Generate(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

const clock = { periodSeconds: P, now: NOW };
const relayLink = (o: { anonymous?: boolean; nodeA?: boolean } = {}) => linkBetween(relayA, relayB, clock, cleanups, o);

describe('bandwidth on a real link (SPEC §8.1, §8.3)', () => {
  it('counts circuit cells both ways; at the boundary both ends hold the identical countersigned receipt', async () => {
    const { a, b, inbound, out } = await relayLink();
    expect(a.ex.linkCount).toBe(1);
    expect(b.ex.linkCount).toBe(1);
    traffic(out, 5, 20);
    const ca = a.ex.linkReceipts(inbound)!.counter;
    const cb = b.ex.linkReceipts(out)!.counter;
    await until(() => ca.received === 25 && cb.received === 5); // 5 DESTROY answers came back
    expect(ca.sent).toBe(5);
    expect(cb.sent).toBe(25);
    expect(b.ex.boundary(E, { delay: false })).toBe(1);
    await until(() => a.receipts.length === 1 && b.receipts.length === 1);
    expect(encodeReceipt(a.receipts[0]).equals(encodeReceipt(b.receipts[0]))).toBe(true);
    expect(verifyReceipt(a.receipts[0])).toBe(true);
    expect(a.receipts[0].body).toMatchObject({ epoch: E, cellsI2R: 25, cellsR2I: 5 });
    expect(a.receipts[0].body.initiator.equals(relayB.publicKey)).toBe(true);
    // The segment was cut at the PROPOSE: the next one starts at zero on both ends.
    expect([ca.sent, ca.received, cb.sent, cb.received]).toEqual([0, 0, 0, 0]);
    expect(await metric(b.reg, 'bitcloud_receipts_countersigned_total', { role: 'initiator' })).toBe(1);
    expect(await metric(a.reg, 'bitcloud_receipts_countersigned_total', { role: 'responder' })).toBe(1);
    expect(await metric(a.reg, 'bitcloud_receipt_cells_total', { direction: 'received' })).toBe(25);
    // RECEIPT_* cells reached the exchange, not the switch's CELL_UNEXPECTED, and the link is up.
    expect(out.closed || inbound.closed).toBe(false);
    expect(a.disagreements).toEqual([]);
  });

  it('a relay that inflates its counts beyond the tolerance gets a REJECT and no receipt', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 1, 10);
    const ca = a.ex.linkReceipts(inbound)!.counter;
    await until(() => ca.received === 11);
    b.ex.linkReceipts(out)!.counter.onSent(5000); // tolerance: 1000 × 1 circuit
    b.ex.boundary(E, { delay: false });
    await until(() => b.disagreements.length === 1);
    expect(a.receipts).toEqual([]);
    expect(b.receipts).toEqual([]);
    expect(a.disagreements[0]).toMatchObject({ reason: 'COUNTS_MISMATCH', side: 'sent', epoch: E });
    expect(b.disagreements[0]).toMatchObject({
      reason: 'COUNTS_MISMATCH', side: 'received', proposed: { cellsI2R: 5011 }, responder: { cellsI2R: 11, tolerance: 1000 },
    });
    expect(await metric(a.reg, 'bitcloud_receipt_disagreements_total', { reason: 'COUNTS_MISMATCH' })).toBe(1);
    expect(await metric(b.reg, 'bitcloud_receipt_disagreements_total', { reason: 'COUNTS_MISMATCH' })).toBe(1);
  });

  it('counts short of the responder\'s by cells in flight are countersigned as proposed', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 1, 3);
    const ca = a.ex.linkReceipts(inbound)!.counter;
    await until(() => ca.received === 4 && b.ex.linkReceipts(out)!.counter.received === 1);
    ca.onSent(900); // 900 r→i cells the initiator has not read yet at its boundary
    b.ex.boundary(E, { delay: false });
    await until(() => a.receipts.length === 1 && b.receipts.length === 1);
    expect(a.receipts[0].body).toMatchObject({ cellsI2R: 4, cellsR2I: 1 });
  });

  it('junk CREATE2 cells buy no tolerance: a responder never signs more than it counted (SPEC §8.3 check 5)', async () => {
    const { a, b, inbound, out } = await relayLink();
    traffic(out, 200, 0); // 200 CREATE2 the responder cannot answer: each gets a DESTROY
    const ca = a.ex.linkReceipts(inbound)!.counter;
    const cb = b.ex.linkReceipts(out)!.counter;
    await until(() => ca.received === 200 && cb.received === 200);
    cb.onSent(20_000); // i→r inflated by 100 windows
    b.ex.boundary(E, { delay: false });
    await until(() => b.disagreements.length === 1);
    expect(a.receipts).toEqual([]);
    expect(b.disagreements[0]).toMatchObject({ reason: 'COUNTS_MISMATCH', side: 'received', responder: { cellsI2R: 200, tolerance: 1000 } });

    // Even a small i→r excess is refused (the i→r boundary is exact), and so is an r→i excess
    // the responder never wrote in the segment before.
    traffic(out, 1, 0);
    await until(() => ca.received === 1 && cb.received === 1);
    cb.onSent(5);
    b.ex.boundary(E, { delay: false });
    await until(() => b.disagreements.length === 2);
    traffic(out, 1, 0);
    await until(() => ca.received === 1 && cb.received === 1);
    cb.onReceived(500);
    b.ex.boundary(E, { delay: false });
    await until(() => b.disagreements.length === 3);
    expect(b.disagreements.map((d) => d.reason)).toEqual(['COUNTS_MISMATCH', 'COUNTS_MISMATCH', 'COUNTS_MISMATCH']);
    expect(a.receipts).toEqual([]);
    expect(inbound.closed).toBe(false);
  });

  it('an anonymous link is never counted, and RECEIPT cells on it are ignored and counted', async () => {
    const { a, inbound, out } = await relayLink({ anonymous: true });
    expect(inbound.peerIdentity).toBeNull();
    expect(a.ex.linkCount).toBe(0);
    expect(() => inbound.attachCounter({ onSent() {}, onReceived() {}, onCircuitOpened() {}, onCircuitClosed() {} })).toThrow(/anonymous/);
    traffic(out, 2, 2);
    out.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160, 1));
    await until(async () => await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_ANONYMOUS_LINK' }) > 0);
    expect(await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_ANONYMOUS_LINK' })).toBe(1);
    expect(await metric(a.reg, 'bitcloud_receipt_cells_total', { direction: 'received' })).toBe(0);
    expect(inbound.closed).toBe(false);
  });

  it('a malformed PROPOSE is answered with REJECT MALFORMED; the link stays up', async () => {
    const { a, b, inbound, out } = await relayLink();
    out.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160)); // initiator = responder = zeros
    // The PROPOSE was written past the initiator's exchange, which has no proposal pending: the
    // REJECT (serial 0) answers none, so it is counted as a cell error, not a disagreement (§8.3 step 8).
    await until(async () => (await metric(b.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_MISMATCH' })) === 1);
    expect(a.disagreements[0]).toMatchObject({ reason: 'MALFORMED', side: 'sent', proposed: null });
    expect(b.disagreements).toEqual([]);
    expect(inbound.closed).toBe(false);
  });

  it('more than 16 PROPOSE cells in one epoch close the link', async () => {
    const { a, inbound, out } = await relayLink();
    for (let i = 0; i < 17; i++) out.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160));
    await until(() => inbound.closed);
    expect(await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'LINK_PROTOCOL_VIOLATION' })).toBe(1);
  });

  it('without a consensus the 16-PROPOSE limit is counted per minute: one PROPOSE every 5 s keeps the link, 17 in one minute close it', async () => {
    const noConsensus = { periodSeconds: null as unknown as number, now: NOW };
    const { a, b, inbound, out } = await linkBetween(relayA, relayB, noConsensus, cleanups);
    for (let i = 1; i <= 17; i++) {
      out.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160));
      // Each is answered (REJECT, serial 0, matching no proposal of B's): read before the next is sent.
      await until(async () => (await metric(b.reg, 'bitcloud_receipt_cell_errors_total', { code: 'RECEIPT_MISMATCH' })) === i);
      noConsensus.now += 5_000;
    }
    expect(inbound.closed).toBe(false);
    expect(await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'LINK_PROTOCOL_VIOLATION' })).toBe(0);
    for (let i = 0; i < 17; i++) out.send(0, CellCommand.RECEIPT_PROPOSE, Buffer.alloc(160));
    await until(() => inbound.closed);
    expect(await metric(a.reg, 'bitcloud_receipt_cell_errors_total', { code: 'LINK_PROTOCOL_VIOLATION' })).toBe(1);
  });

  it('before closing on purpose the initiator proposes for the current epoch and waits for the answer', async () => {
    const { a, b, out } = await relayLink();
    traffic(out, 2, 2);
    await b.ex.proposeBeforeClose(5_000, [out]);
    expect(b.receipts).toHaveLength(1);
    expect(b.receipts[0].body.epoch).toBe(E + 1);
    await until(() => a.receipts.length === 1);
  });

  it('a proposal with no answer leaves the segment unpaid when the link closes (NO_ANSWER)', async () => {
    const { b, inbound, out } = await relayLink();
    inbound.pauseReading(); // the responder never reads the PROPOSE
    traffic(out, 1, 1);
    b.ex.boundary(E, { delay: false });
    out.close();
    await until(() => b.disagreements.length === 1);
    expect(b.disagreements[0]).toMatchObject({ reason: 'NO_ANSWER', side: 'local', epoch: E });
  });
});
