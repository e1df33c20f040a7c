import { EventEmitter } from 'node:events';
import { describe, it, expect } from 'vitest';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import type { Channel } from '../../src/link/channel';
import { MAX_RECEIPTS_PER_PEER_EPOCH, MAX_UNLISTED_RECEIPT_PEERS, MAX_UNLISTED_RECEIPT_PEERS_PER_ADDRESS } from '../../src/bandwidth/exchange';
import { EpochTotals } from '../../src/bandwidth/counters';
import { verifyReceipt, type Receipt } from '../../src/bandwidth/receipt';
import { LinkReceipts, epochAt, type Disagreement } from '../../src/bandwidth/link-receipts';

function pair() {
  const a = ed25519Generate(); const b = ed25519Generate();
  const ta = new EpochTotals(a.publicKey.toString('hex')); const tb = new EpochTotals(b.publicKey.toString('hex'));
  const got: Receipt[] = []; const rejects: Disagreement[] = [];
  const ini: LinkReceipts = new LinkReceipts({ identity: a, peerIdentity: b.publicKey, isInitiator: true, totals: ta,
    send: (c, p) => res.onCell(c, p), onReceipt: (r) => got.push(r), onDisagreement: (r) => rejects.push(r) });
  const res: LinkReceipts = new LinkReceipts({ identity: b, peerIdentity: a.publicKey, isInitiator: false, totals: tb,
    send: (c, p) => ini.onCell(c, p), onDisagreement: (r) => rejects.push(r) });
  return { a, b, ta, tb, ini, res, got, rejects };
}

describe('LinkReceipts (src/bandwidth/link-receipts)', () => {
  it('initiator proposes, responder countersigns, both keep the same receipt', () => {
    const p = pair();
    p.ini.counter.onSent(10); p.res.counter.onReceived(10);
    p.res.counter.onSent(7); p.ini.counter.onReceived(7);
    p.ini.propose(42);
    expect(p.got).toHaveLength(1);
    expect(verifyReceipt(p.got[0])).toBe(true);
    expect(p.got[0].body).toMatchObject({ epoch: 42, cellsI2R: 10, cellsR2I: 7 });
    expect(p.ta.cells(42)).toBe(p.tb.cells(42));
    expect(p.rejects).toHaveLength(0);
  });
  it('an initiator that claims the previous segment\'s in-flight cells twice gets no receipt; an honest late count is signed (SPEC §8.3 check 5)', () => {
    // Honest: 40 of the 100 cells the responder wrote were in flight at the first cut; the initiator counts them in the next segment.
    const h = pair();
    h.res.counter.onSent(100); h.ini.counter.onReceived(60); h.ini.counter.onSent(1); h.res.counter.onReceived(1);
    h.ini.propose(1);
    h.res.counter.onSent(100); h.ini.counter.onReceived(140); h.ini.counter.onSent(1); h.res.counter.onReceived(1);
    h.ini.propose(1);
    expect(h.got.map((r) => r.body.cellsR2I)).toEqual([60, 140]);
    // Amplifier: every segment it receives 100 but claims 100 more, the previous segment's cells again.
    const a = pair();
    a.res.counter.onSent(100); a.ini.counter.onReceived(100); a.ini.counter.onSent(1); a.res.counter.onReceived(1);
    a.ini.propose(1);
    for (let i = 0; i < 3; i++) {
      a.res.counter.onSent(100); a.ini.counter.onReceived(200); a.ini.counter.onSent(1); a.res.counter.onReceived(1);
      a.ini.propose(1);
    }
    // Over the link's life the responder signs no more r→i cells than it wrote (400): a refused
    // segment's cells become claimable once, never twice (before: 100 + 3 × 200 = 700 signed).
    expect(a.got.reduce((n, r) => n + r.body.cellsR2I, 0)).toBeLessThanOrEqual(400);
    expect(a.got.map((r) => r.body.cellsR2I)).toEqual([100, 200]);
    expect(a.rejects.filter((r) => r.reason === 'COUNTS_MISMATCH').length).toBe(4);
  });
  it('counts beyond the tolerance are rejected on both sides', () => {
    const p = pair();
    p.ini.counter.onSent(5000); p.res.counter.onReceived(1);
    p.ini.propose(1);
    expect(p.got).toHaveLength(0);
    expect(p.rejects.map((r) => r.reason)).toEqual(['COUNTS_MISMATCH', 'COUNTS_MISMATCH']);
  });
  it('a REJECT with serial 0 answers only a pending proposal; with none pending it is refused as RECEIPT_MISMATCH, not a disagreement (SPEC §8.3 step 8)', async () => {
    const { CellCommand } = await import('../../src/wire/cell');
    const { encodeReceiptReject } = await import('../../src/bandwidth/receipt');
    const p = pair();
    const reject = encodeReceiptReject({ epoch: 0, serial: 0, reason: 'MALFORMED', cellsI2R: 0, cellsR2I: 0, tolerance: 1000 });
    for (let i = 0; i < 3; i++) {
      expect(() => p.ini.onCell(CellCommand.RECEIPT_REJECT, reject)).toThrow(expect.objectContaining({ code: 'RECEIPT_MISMATCH' }));
    }
    expect(p.rejects).toHaveLength(0);
    // A proposal the responder could not parse (it never reaches the responder here): the serial-0
    // REJECT answers it, once; the next one answers nothing.
    const held = new LinkReceipts({ identity: p.a, peerIdentity: p.b.publicKey, isInitiator: true, send: () => {}, onDisagreement: (r) => p.rejects.push(r) });
    held.counter.onSent(10);
    const sent = held.propose(7)!;
    held.onCell(CellCommand.RECEIPT_REJECT, reject);
    expect(held.pendingCount).toBe(0);
    expect(p.rejects).toMatchObject([{ epoch: 7, serial: sent.body.serial, reason: 'MALFORMED', side: 'received', proposed: { cellsI2R: 10, cellsR2I: 0 } }]);
    expect(() => held.onCell(CellCommand.RECEIPT_REJECT, reject)).toThrow(expect.objectContaining({ code: 'RECEIPT_MISMATCH' }));
    expect(p.rejects).toHaveLength(1);
  });
  it('an idle link proposes nothing; epochAt follows the period', () => {
    const p = pair();
    expect(p.ini.propose(1)).toBeNull();
    expect(epochAt(16_000, 8)).toBe(2);
  });
});

describe('directory/receipts answerReceiptUpload', () => {
  it('accepts a countersigned receipt, answers a replay as delivered, refuses one signature and garbage', async () => {
    const { ReceiptVerifier } = await import('../../src/bandwidth/verify');
    const { encodeReceipt, encodeReceiptProposal } = await import('../../src/bandwidth/receipt');
    const { answerReceiptUpload } = await import('../../directory/receipts');
    const p = pair();
    p.ini.counter.onSent(3); p.res.counter.onReceived(3);
    const prop = p.ini.propose(5)!;
    const v = new ReceiptVerifier({ membership: () => true, window: () => ({ opens: 0, closes: Number.MAX_SAFE_INTEGER }) });
    const bytes = encodeReceipt(p.got[0]);
    // SPEC.md §8.4: a single refused record is answered with its own 4xx and {code, reason}.
    const first = answerReceiptUpload(v, bytes, 1000);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ accepted: 1 });
    const again = answerReceiptUpload(v, bytes, 1000);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'RECEIPT_REPLAYED' });
    const one = Buffer.concat([encodeReceiptProposal(prop), Buffer.alloc(64)]);
    const refused = answerReceiptUpload(v, one, 1000);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: 'RECEIPT_ONE_SIGNATURE' });
    expect(answerReceiptUpload(v, Buffer.alloc(10), 1000).status).toBe(400);
  });
});

describe('what a responder keeps of proposals from many keys (SPEC §8.3 step 13)', () => {
  const P = 3600;
  const NOW = 1_700_000_000_000;
  const E = epochAt(NOW, P);

  /** A link whose initiator proved `peer`; what the responder writes on it lands in `sent`. */
  function fakeLink(peer: Buffer, remoteAddress?: string) {
    const ch = Object.assign(new EventEmitter(), {
      remoteAddress, closed: false, peerIdentity: peer, isInitiator: false, sent: [] as number[],
      send(_circId: number, command: number) { this.sent.push(command); },
      queuedCountedCells: () => 0,
      attachCounter() { /* the test bumps the counter itself */ },
    });
    return ch;
  }

  async function responder(listed: (fp: string) => boolean) {
    const { NodeBandwidth } = await import('../../src/bandwidth/node-bandwidth');
    const me = ed25519Generate();
    const nb = new NodeBandwidth({ identity: me, dataDir: '/nonexistent', authorities: [], periodSeconds: () => P, now: () => NOW, listed });
    return { me, nb };
  }

  async function proposeOn(nb: import('../../src/bandwidth/node-bandwidth').NodeBandwidth, me: Ed25519KeyPair, key: Ed25519KeyPair, n: number, cells: number, serial0 = 1, remoteAddress?: string) {
    const { signReceipt, encodeReceiptProposal } = await import('../../src/bandwidth/receipt');
    const { CellCommand } = await import('../../src/wire/cell');
    const ch = fakeLink(key.publicKey, remoteAddress);
    expect(nb.attach(ch as unknown as Channel)).toBe(true);
    const lr = nb.exchange.linkReceipts(ch as unknown as Channel)!;
    for (let i = 0; i < n; i++) {
      lr.counter.onReceived(cells);
      const p = signReceipt({ epoch: E, initiator: key.publicKey, responder: me.publicKey, cellsI2R: cells, cellsR2I: 0, serial: serial0 + i }, key);
      const payload = Buffer.alloc(509);
      encodeReceiptProposal(p).copy(payload);
      nb.onLinkCell(ch as unknown as Channel, { circId: 0, command: CellCommand.RECEIPT_PROPOSE, payload });
    }
    ch.closed = true;
    ch.emit('close');
    return ch.sent;
  }

  it('a proposal of 0/0 cells is refused before any signature and nothing is kept, from 40 fresh keys', async () => {
    const { CellCommand } = await import('../../src/wire/cell');
    const { nb, me } = await responder(() => false);
    const answers: number[] = [];
    for (let k = 0; k < 40; k++) answers.push(...await proposeOn(nb, me, ed25519Generate(), 16, 0));
    expect(answers).toHaveLength(40 * 16);
    expect(answers.every((c) => c === CellCommand.RECEIPT_REJECT)).toBe(true);
    expect(nb.uploader.status(E)?.receipts ?? 0).toBe(0);
    expect(nb.totals.peers(E).size).toBe(0);
  });

  it('keeps receipts of at most 1024 unlisted peers an epoch, and at most 64 receipts of one peer', async () => {
    const { nb, me } = await responder(() => false);
    for (let k = 0; k < 1100; k++) await proposeOn(nb, me, ed25519Generate(), 1, 1);
    expect(nb.totals.peers(E).size).toBe(MAX_UNLISTED_RECEIPT_PEERS);
    expect(nb.uploader.status(E)?.receipts).toBe(MAX_UNLISTED_RECEIPT_PEERS);
    // One key over many links: 64 kept, no more.
    const one = ed25519Generate();
    const { nb: nb2, me: me2 } = await responder(() => false);
    for (let l = 0; l < 6; l++) await proposeOn(nb2, me2, one, 16, 1, 1 + l * 16);
    expect(nb2.uploader.status(E)?.receipts).toBe(MAX_RECEIPTS_PER_PEER_EPOCH);
  });

  it('keeps receipts of at most 8 unlisted peers an epoch from one IPv4 address or IPv6 /64; other addresses are still kept', async () => {
    const { CellCommand } = await import('../../src/wire/cell');
    const { nb, me } = await responder(() => false);
    expect(MAX_UNLISTED_RECEIPT_PEERS_PER_ADDRESS).toBe(8);
    const answers: number[] = [];
    // Different ports, and the dual-stack spelling of the same IPv4 address, are one address.
    for (let k = 0; k < 9; k++) answers.push(...await proposeOn(nb, me, ed25519Generate(), 1, 1, 1, k % 2 ? `198.51.100.7:${4000 + k}` : `::ffff:198.51.100.7:${4000 + k}`));
    expect(answers).toEqual([...Array<number>(8).fill(CellCommand.RECEIPT_COUNTERSIGN), CellCommand.RECEIPT_REJECT]);
    expect(await proposeOn(nb, me, ed25519Generate(), 1, 1, 1, '198.51.100.8:4000')).toEqual([CellCommand.RECEIPT_COUNTERSIGN]);
    // One IPv6 /64 is one address; the next /64 is another.
    const v6: number[] = [];
    for (let k = 0; k < 9; k++) v6.push(...await proposeOn(nb, me, ed25519Generate(), 1, 1, 1, `2001:db8:0:1:${k}::${k + 1}:443`));
    expect(v6.slice(0, 8).every((c) => c === CellCommand.RECEIPT_COUNTERSIGN)).toBe(true);
    expect(v6[8]).toBe(CellCommand.RECEIPT_REJECT);
    expect(await proposeOn(nb, me, ed25519Generate(), 1, 1, 1, '2001:db8:0:2::1:443')).toEqual([CellCommand.RECEIPT_COUNTERSIGN]);
    // The refused ones are not kept.
    expect(nb.totals.peers(E).size).toBe(8 + 1 + 8 + 1);
  });

  it('a listed peer\'s receipts are countersigned and kept, past the unlisted limit', async () => {
    const { CellCommand } = await import('../../src/wire/cell');
    const friend = ed25519Generate();
    const fp = friend.publicKey.toString('hex');
    const { nb, me } = await responder((x) => x === fp);
    for (let k = 0; k < MAX_UNLISTED_RECEIPT_PEERS; k++) await proposeOn(nb, me, ed25519Generate(), 1, 1);
    const answers = await proposeOn(nb, me, friend, 3, 5);
    expect(answers).toEqual([CellCommand.RECEIPT_COUNTERSIGN, CellCommand.RECEIPT_COUNTERSIGN, CellCommand.RECEIPT_COUNTERSIGN]);
    expect(nb.totals.peers(E).get(fp)).toMatchObject({ receipts: 3, received: 15 });
  });
});
