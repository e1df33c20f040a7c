// SPEC.md §8.3 step 12: RECEIPT_* cells are written ahead of the circuit cells queued on a link, so
// that a full link (a relay at its cap) does not delay its receipts past the answer timeout. Real
// TLS links on 127.0.0.1; the reading end is paused so the writer's queue fills; no test asserts on time.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { CellCommand, encodeReceiptRequest, type Cell } from '../../src/wire/cell';
import { epochAt } from '../../src/bandwidth/link-receipts';
import { bareLink, relayLink, until } from '../helpers/bandwidth-link';

const P = 10;
const NOW = 1_700_000_003_000;
const E = epochAt(NOW, P) - 1;
const cleanups: Array<() => unknown> = [];
let relayA: Ed25519KeyPair;
let relayB: Ed25519KeyPair;

beforeAll(() => { relayA = ed25519Generate(); relayB = ed25519Generate(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

/** Cells enough to hold several MiB in the writer's queue (far more than the socket window). */
const N = 8000;

describe('receipt cells overtake queued circuit cells (SPEC §8.3 step 12)', () => {
  it('a RECEIPT_* cell sent behind a full queue is read before the queued circuit cells', async () => {
    const { out, inbound } = await bareLink(relayA, relayB, cleanups);
    const seen: number[] = [];
    inbound.on('cell', (c: Cell) => { seen.push(c.command); });
    inbound.pauseReading(); // nothing is read: the writer's queue fills
    const payload = Buffer.alloc(509, 1);
    for (let i = 0; i < N; i++) out.send(0x8000_1234, CellCommand.RELAY, payload);
    expect(out.bufferedBytes).toBeGreaterThan(1 << 20);
    out.send(0, CellCommand.RECEIPT_REQUEST, encodeReceiptRequest({ epoch: E, reason: 'CLOSING' }));
    inbound.resumeReading();
    await until(() => seen.length === N + 1);
    const at = seen.indexOf(CellCommand.RECEIPT_REQUEST);
    // Before it: at most what the socket (and the kernel) already held when it was sent.
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(N / 2);
    expect(seen.filter((c) => c === CellCommand.RELAY).length).toBe(N);
  });

  it('a PROPOSE written ahead of queued cells leaves them to the next segment: both ends agree, the receipt is countersigned', async () => {
    const { a, b, inbound, out } = await relayLink(relayA, relayB, { periodSeconds: P, now: NOW }, cleanups);
    const ca = a.ex.linkReceipts(inbound)!.counter;
    inbound.pauseReading();
    const payload = Buffer.alloc(509);
    for (let i = 0; i < N; i++) out.send(0x8000_7777, CellCommand.RELAY, payload);
    expect(out.queuedCountedCells()).toBeGreaterThan(N / 2);
    expect(b.ex.boundary(E, { delay: false })).toBe(1);
    inbound.resumeReading();
    await until(() => a.receipts.length === 1 && b.receipts.length === 1);
    expect(b.disagreements).toEqual([]);
    const first = a.receipts[0].body.cellsI2R;
    expect(first).toBeLessThan(N / 2);
    // The cells behind the PROPOSE are the next segment's, at both ends.
    await until(() => ca.received === N - first);
    expect(b.ex.linkReceipts(out)!.counter.sent).toBe(N - first);
  });
});
