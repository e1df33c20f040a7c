// SPEC.md §9.20.4: paid storage contracts. Funding a contract's escrow (and its refusals: a
// contract for more than the payer holds, a replayed or second funding, a funding to another id,
// too little for the epochs), the exact payments of each epoch from an audit report's passing
// results, and the refund of the rest to the payer at the end.
import { describe, expect, it } from 'vitest';
import { blake2b, ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { CoinLedger, signUnboundTransfer, type LedgerMaps } from '../../src/bandwidth/transfer';
import { UNBOUND_FUNDING_TRANSFER_VERSION, UNBOUND_TRANSFER_VERSION } from '../../src/wire/transfer';
import {
  applyEscrowOp, contractId, copyEscrowBook, epochPayments, escrowOpsFor, escrowPayNodes, fundEscrow, paidResults, passingBytes, payEpoch, refundEscrow, type AuditPages, type EscrowBook,
} from '../../src/bandwidth/escrow';
import { sortContractEntries, type StorageContract } from '../../src/wire/storage-contract';
import type { ReportedAudit } from '../../src/storage/audit-report';
import { expectCode } from '../helpers/errors';
import { checkNotFunded } from '../../src/client/commands/keep';
import type { RewardChainResult } from '../../src/client/rewards';
import {
  applyRewardBlock, signRewardBlock, staticAuthorities, verifyChain, type ChainState,
} from '../../src/bandwidth/reward-chain';
import {
  GENESIS_PREVIOUS_HASH, MAX_BLOCK_ESCROW_OPS, decodeRewardBlock, decodeSignedRewardBlock, encodeRewardBlock, encodeSignedRewardBlock, rewardBlockHash,
  type EscrowOp, type RewardBlock,
} from '../../src/wire/reward-block';
import type { Transfer } from '../../src/wire/transfer';
import { ESCROW_CANCEL_BYTES, decodeEscrowCancel, encodeEscrowCancel, signEscrowCancel } from '../../src/wire/escrow-cancel';

// Versions 1 and 2 (SPEC §8.11.1): they name no chain, so these chains may carry them from block 0;
// blocks verify them as they did (the escrow rules are the same for versions 3 and 4).
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signUnboundTransfer(k, to, amount, nonce, UNBOUND_TRANSFER_VERSION);
const signFundingTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signUnboundTransfer(k, to, amount, nonce, UNBOUND_FUNDING_TRANSFER_VERSION);

const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return 'NO_ERROR';
};

const payer = ed25519Generate();
const nodeA = Buffer.alloc(32, 0xa1);
const nodeB = Buffer.alloc(32, 0xb2);
const share = (n: number) => Buffer.alloc(32, n);
const root = (n: number) => Buffer.alloc(32, 0x40 + n);

// A has shares 1 (3000 B) and 2 (1000 B); B has share 3 (4000 B): 8000 bytes in all.
const contract: StorageContract = {
  startEpoch: 10, endEpoch: 14,
  entries: sortContractEntries([
    { node: nodeA, shareId: share(1), shareSize: 3000, auditRoot: root(1) },
    { node: nodeA, shareId: share(2), shareSize: 1000, auditRoot: root(2) },
    { node: nodeB, shareId: share(3), shareSize: 4000, auditRoot: root(3) },
  ]),
};
const id = contractId(contract);
const idHex = id.toString('hex');
const A = nodeA.toString('hex');
const B = nodeB.toString('hex');

function result(node: Buffer, n: number, size: number, ok: boolean, contractHex = idHex): ReportedAudit {
  return { node: node.toString('hex'), contract: contractHex, shareId: share(n).toString('hex'), size, root: root(n).toString('hex'), ok, nonce: '00', blocks: [0] };
}

function setup(balance: bigint): { maps: LedgerMaps; ledger: CoinLedger; book: EscrowBook } {
  const maps: LedgerMaps = { balances: new Map([[payer.publicKey.toString('hex'), balance]]), nonces: new Map() };
  return { maps, ledger: new CoinLedger(maps), book: new Map() };
}

describe('storage contract escrow (SPEC.md §9.20.4)', () => {
  it('funds, pays each epoch exactly from passing results, and refunds the rest', () => {
    const { ledger, book } = setup(1_000_003n);
    const e = fundEscrow(book, ledger, contract, signTransfer(payer, id, 1_000_003n, 1));
    expect(e.perEpoch).toBe(250_000n); // floor(1 000 003 / 4)
    expect(e.totalBytes).toBe(8000n);
    expect(ledger.account(idHex).balance).toBe(1_000_003n);
    expect(ledger.account(payer.publicKey.toString('hex')).balance).toBe(0n);

    // Epoch 10: everything passes. A: 250000·4000/8000 = 125000; B the same.
    const all = [result(nodeA, 1, 3000, true), result(nodeA, 2, 1000, true), result(nodeB, 3, 4000, true)];
    expect(payEpoch(book, ledger, idHex, 10, passingBytes(e, all))).toEqual([{ node: A, amount: 125_000n }, { node: B, amount: 125_000n }]);

    // Epoch 11: A's share 2 failed, B was not reached. A: floor(250000·3000/8000) = 93750.
    const some = [result(nodeA, 1, 3000, true), result(nodeA, 2, 1000, false), result(nodeB, 3, 4000, false)];
    expect(payEpoch(book, ledger, idHex, 11, passingBytes(e, some))).toEqual([{ node: A, amount: 93_750n }]);

    // Epoch 13 (12 skipped: no report): only B. Then the epoch before it cannot be paid any more.
    expect(payEpoch(book, ledger, idHex, 13, passingBytes(e, [result(nodeB, 3, 4000, true)]))).toEqual([{ node: B, amount: 125_000n }]);
    expect(codeOf(() => payEpoch(book, ledger, idHex, 12, new Map()))).toBe('ESCROW_EPOCH');
    expect(codeOf(() => payEpoch(book, ledger, idHex, 13, new Map()))).toBe('ESCROW_EPOCH');

    expect(ledger.account(A).balance).toBe(218_750n);
    expect(ledger.account(B).balance).toBe(250_000n);
    expect(codeOf(() => refundEscrow(book, ledger, idHex, 13))).toBe('ESCROW_NOT_ENDED');
    expect(refundEscrow(book, ledger, idHex, 14)).toBe(1_000_003n - 218_750n - 250_000n);
    expect(ledger.account(payer.publicKey.toString('hex')).balance).toBe(531_253n);
    expect(ledger.account(idHex).balance).toBe(0n);
    expect(codeOf(() => refundEscrow(book, ledger, idHex, 15))).toBe('ESCROW_CLOSED');
    expect(codeOf(() => payEpoch(book, ledger, idHex, 13, new Map()))).toBe('ESCROW_CLOSED');
  });

  it('counts a pair once, only with the contract\'s own size and root, whatever contract id the result names', () => {
    const e = { entries: new Map([[`${A}/${share(1).toString('hex')}`, { size: 3000, root: root(1).toString('hex') }]]) };
    const other = 'ff'.repeat(32);
    const forged = { ...result(nodeA, 1, 3000, true), root: root(9).toString('hex') };
    const resized = result(nodeA, 1, 2999, true);
    const notInContract = result(nodeB, 3, 4000, true);
    const got = passingBytes(e, [result(nodeA, 1, 3000, true, other), result(nodeA, 1, 3000, true), forged, resized, notInContract]);
    expect([...got]).toEqual([[A, 3000n]]);
  });

  it('payments are floors by passing bytes; a node whose floor is 0 is left out; the sum never exceeds the budget', () => {
    expect(epochPayments({ perEpoch: 10n, totalBytes: 3n }, new Map([[B, 1n], [A, 2n]]))).toEqual([{ node: A, amount: 6n }, { node: B, amount: 3n }]);
    expect(epochPayments({ perEpoch: 1n, totalBytes: 8000n }, new Map([[A, 4000n]]))).toEqual([]);
  });

  it('refuses a contract for more than the payer holds (TRANSFER_OVERSPEND) and changes nothing', () => {
    const { maps, ledger, book } = setup(999n);
    expect(codeOf(() => fundEscrow(book, ledger, contract, signTransfer(payer, id, 1000n, 1)))).toBe('TRANSFER_OVERSPEND');
    expect(book.size).toBe(0);
    ledger.commit();
    expect(maps.balances.get(payer.publicKey.toString('hex'))).toBe(999n);
    expect(maps.balances.has(idHex)).toBe(false);
  });

  it('refuses a replayed funding, a second funding, a funding to another id, and too little for the epochs', () => {
    const { ledger, book } = setup(10_000n);
    const t = signTransfer(payer, id, 1000n, 1);
    fundEscrow(book, ledger, contract, t);
    expect(codeOf(() => fundEscrow(book, ledger, contract, t))).toBe('ESCROW_ALREADY_FUNDED');
    expect(codeOf(() => fundEscrow(book, ledger, contract, signTransfer(payer, id, 1000n, 2)))).toBe('ESCROW_ALREADY_FUNDED');
    // The same transfer bytes on a fresh book still meet the ledger's nonce rule.
    expect(codeOf(() => fundEscrow(new Map(), ledger, contract, t))).toBe('TRANSFER_REPLAYED');
    const other: StorageContract = { ...contract, endEpoch: 20 };
    expect(codeOf(() => fundEscrow(book, ledger, other, signTransfer(payer, id, 1000n, 2)))).toBe('ESCROW_MISMATCH');
    expect(codeOf(() => fundEscrow(book, ledger, other, signTransfer(payer, contractId(other), 9n, 2)))).toBe('ESCROW_UNDERFUNDED');
    expect(ledger.account(payer.publicKey.toString('hex')).balance).toBe(9000n);
  });

  it('refuses payments other than those the report gives, epochs outside the contract, and unknown contracts', () => {
    const { ledger, book } = setup(4000n);
    const e = fundEscrow(book, ledger, contract, signTransfer(payer, id, 4000n, 1));
    const passing = passingBytes(e, [result(nodeB, 3, 4000, true)]);
    expect(codeOf(() => payEpoch(book, ledger, idHex, 10, passing, [{ node: B, amount: 501n }]))).toBe('ESCROW_PAYMENT_MISMATCH');
    expect(codeOf(() => payEpoch(book, ledger, idHex, 10, passing, [{ node: A, amount: 500n }]))).toBe('ESCROW_PAYMENT_MISMATCH');
    expect(payEpoch(book, ledger, idHex, 10, passing, [{ node: B, amount: 500n }])).toEqual([{ node: B, amount: 500n }]);
    expect(codeOf(() => payEpoch(book, ledger, idHex, 9, passing))).toBe('ESCROW_EPOCH');
    expect(codeOf(() => payEpoch(book, ledger, idHex, 14, passing))).toBe('ESCROW_EPOCH');
    expect(codeOf(() => payEpoch(book, ledger, 'ab'.repeat(32), 10, passing))).toBe('ESCROW_UNKNOWN');
    expect(codeOf(() => refundEscrow(book, ledger, 'ab'.repeat(32), 20))).toBe('ESCROW_UNKNOWN');
  });
});

describe('escrow operations in reward blocks (SPEC.md §8.7.1 version 3, §9.20.4)', () => {
  const auth = ed25519Generate();
  const authorities = staticAuthorities([{ identity: auth.publicKey }]);
  const P = payer.publicKey.toString('hex');

  /** Signed blocks for epochs 10, 11, …: block 0 mints 1 000 000 units to the payer, then each carries its transfers and escrow operations. */
  function chain(perBlock: { transfers?: Transfer[]; escrow?: EscrowOp[] }[]): Buffer[] {
    let prev = GENESIS_PREVIOUS_HASH;
    return perBlock.map((x, h) => {
      const block: RewardBlock = {
        height: h, previousHash: prev, epoch: 10 + h, minted: h === 0 ? 1_000_000n : 0n,
        allocations: h === 0 ? new Map([[P, 1_000_000n]]) : new Map(), ...x,
      };
      const body = encodeRewardBlock(block);
      prev = rewardBlockHash(body);
      return encodeSignedRewardBlock(body, [signRewardBlock(body, auth.publicKey, auth)]);
    });
  }
  const open: EscrowOp = { kind: 'open', contract: idHex, payer: P, startEpoch: 10, endEpoch: 14, funded: 1_000_003n - 3n, totalBytes: 8000n };
  const fund = signTransfer(payer, id, 1_000_000n, 1);
  // The last block, applied on the state the others verify to, is refused with `code` and changes no
  // balance; gives the error's detail and that state.
  function refuseLast(perBlock: { transfers?: Transfer[]; escrow?: EscrowOp[] }[], code: string): { detail: unknown; st: ChainState } {
    const blocks = chain(perBlock);
    const st = verifyChain(blocks.slice(0, -1), authorities);
    const before = new Map(st.balances);
    let detail: unknown;
    try {
      applyRewardBlock(st, blocks[blocks.length - 1], authorities, 1);
      expect.unreachable();
    } catch (e) {
      expect(isBitcloudError(e) && e.code).toBe(code);
      detail = (e as { detail?: unknown }).detail;
    }
    expect(st.balances).toEqual(before);
    return { detail, st };
  }

  it('encodes version 3 (one encoding), opens, pays in exact amounts and refunds; every verifier gets the same balances', () => {
    const blocks = chain([
      { transfers: [fund], escrow: [open] },
      { escrow: [{ kind: 'pay', contract: idHex, epoch: 10, node: A, amount: 125_000n }, { kind: 'pay', contract: idHex, epoch: 10, node: B, amount: 125_000n }] },
      { escrow: [{ kind: 'pay', contract: idHex, epoch: 11, node: A, amount: 93_750n }] },
      {},
      { escrow: [{ kind: 'refund', contract: idHex, amount: 1_000_000n - 343_750n }] },
    ]);
    const body1 = decodeSignedRewardBlock(blocks[1]).body;
    expect(body1[0]).toBe(3);
    expect(body1.length).toBe(61 + 4 + 4 + 2 * 81);
    expect(encodeRewardBlock(decodeRewardBlock(body1)).equals(body1)).toBe(true);
    expectCode(() => decodeRewardBlock(Buffer.concat([body1, Buffer.alloc(1)])), 'REWARD_MALFORMED');
    expectCode(() => decodeRewardBlock(Buffer.concat([body1.subarray(0, 65), Buffer.alloc(4)])), 'REWARD_MALFORMED');
    const s = verifyChain(blocks, authorities);
    expect(s.balances.get(A)).toBe(218_750n);
    expect(s.balances.get(B)).toBe(125_000n);
    expect(s.balances.get(P)).toBe(1_000_000n - 343_750n);
    expect(s.balances.get(idHex)).toBe(0n);
    expect(s.escrows.get(idHex)?.refunded).toBe(656_250n);
  });

  it('refuses, with REWARD_BAD_ESCROW and its reason, escrow operations that do not apply; the block changes nothing', () => {
    const bad = (ops: { transfers?: Transfer[]; escrow?: EscrowOp[] }[], reason: string) => {
      const { detail, st } = refuseLast(ops, 'REWARD_BAD_ESCROW');
      expect((detail as { reason?: string } | undefined)?.reason).toBe(reason);
      expect(st.height).toBe(ops.length - 2);
    };
    const pay = (epoch: number, node: string, amount: bigint): EscrowOp => ({ kind: 'pay', contract: idHex, epoch, node, amount });
    // An opening without its funding transfer; a second opening (a replayed funding).
    bad([{}, { escrow: [open] }], 'ESCROW_MISMATCH');
    const small: EscrowOp = { ...open, funded: 400n };
    bad([{ transfers: [signTransfer(payer, id, 400n, 1)], escrow: [small] }, { transfers: [signTransfer(payer, id, 400n, 2)], escrow: [small] }], 'ESCROW_ALREADY_FUNDED');
    // A contract for more than the payer holds: the funding transfer itself is refused.
    const tooMuch = signTransfer(payer, id, 2_000_000n, 1);
    expect(() => verifyChain(chain([{ transfers: [tooMuch], escrow: [{ ...open, funded: 2_000_000n }] }]), authorities)).toThrow(/TRANSFER_OVERSPEND/);
    // Paying more than the epoch's budget, an epoch twice, out of order, outside the contract, before it is open.
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [pay(10, A, 250_001n)] }], 'ESCROW_PAYMENT_MISMATCH');
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [pay(10, A, 100n)] }, { escrow: [pay(10, A, 100n)] }], 'ESCROW_EPOCH');
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [pay(11, B, 100n), pay(11, A, 100n)] }], 'ESCROW_EPOCH');
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [pay(12, A, 100n)] }], 'ESCROW_EPOCH');
    bad([{}, { escrow: [pay(10, A, 100n)] }], 'ESCROW_UNKNOWN');
    // A refund before the end, or of less than the escrow holds.
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [{ kind: 'refund', contract: idHex, amount: 1_000_000n }] }], 'ESCROW_NOT_ENDED');
    bad([{ transfers: [fund], escrow: [open] }, {}, {}, {}, { escrow: [{ kind: 'refund', contract: idHex, amount: 1n }] }], 'ESCROW_PAYMENT_MISMATCH');
    // Cancels: by someone else, twice, after the end (the refund's job), of less than the escrow holds.
    const mine = signEscrowCancel(payer, idHex);
    const cancel = (amount: bigint, c = mine): EscrowOp => ({ kind: 'cancel', contract: idHex, amount, signature: c.signature });
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [cancel(1_000_000n, signEscrowCancel(ed25519Generate(), idHex))] }], 'ESCROW_NOT_PAYER');
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [cancel(1_000_000n)] }, { escrow: [cancel(0n)] }], 'ESCROW_CLOSED');
    bad([{ transfers: [fund], escrow: [open] }, {}, {}, {}, { escrow: [cancel(1_000_000n)] }], 'ESCROW_EPOCH');
    bad([{ transfers: [fund], escrow: [open] }, { escrow: [cancel(999_999n)] }], 'ESCROW_PAYMENT_MISMATCH');
  });

  it('a funding transfer (version 2) applies only with its escrow\'s open in the same block (SPEC.md §8.7.3 item 7, §9.20.4)', () => {
    const fund2 = signFundingTransfer(payer, id, 1_000_000n, 1);
    expect(fund2.version).toBe(2);
    const refused = (perBlock: { transfers?: Transfer[]; escrow?: EscrowOp[] }[], transfer: number) => {
      const { detail, st } = refuseLast(perBlock, 'REWARD_BAD_TRANSFER');
      expect(detail).toEqual({ transfer, reason: 'ESCROW_MISMATCH' });
      expect(st.escrows.size).toBe(0);
    };
    // Without the open (its proposer did not hold the contract): the block is refused, the units stay with the payer.
    refused([{}, { transfers: [fund2] }], 0);
    // An open of another amount's funding does not cover it.
    const other = ed25519Generate();
    refused([{ transfers: [signTransfer(payer, other.publicKey, 10n, 1)] }, { transfers: [signFundingTransfer(payer, id, 989_000n, 2), signTransfer(payer, id, 1_000n, 3)], escrow: [{ ...open, funded: 1_000n }] }], 0);
    // Nor does an open of another payer's funding of the same amount.
    const O = other.publicKey.toString('hex');
    refused([{ transfers: [signTransfer(payer, other.publicKey, 500_000n, 1)] }, { transfers: [signFundingTransfer(payer, id, 1_000n, 2), signTransfer(other, id, 1_000n, 1)], escrow: [{ ...open, payer: O, funded: 1_000n }] }], 0);
    // One open covers one funding transfer: a second of the same payer and amount has none.
    refused([{ transfers: [signFundingTransfer(payer, id, 400n, 1), signFundingTransfer(payer, id, 400n, 2)], escrow: [{ ...open, funded: 400n }] }], 1);
    // With the open it applies and the escrow is open, funded by it.
    const s = verifyChain(chain([{ transfers: [fund2], escrow: [open] }]), authorities);
    expect(s.escrows.get(idHex)).toMatchObject({ payer: P, funded: 1_000_000n, refunded: null });
    expect(s.balances.get(idHex)).toBe(1_000_000n);
    expect(s.balances.get(P)).toBe(0n);
    // A version 1 funding with its open (blocks of existing chains) still verifies.
    expect(verifyChain(chain([{ transfers: [fund], escrow: [open] }]), authorities).escrows.get(idHex)?.funded).toBe(1_000_000n);
  });

  it('a payer\'s cancel: the epoch of its block is still paid, the rest returns to the payer at once, nothing is paid after', () => {
    const c = signEscrowCancel(payer, idHex);
    expect(encodeEscrowCancel(c)).toHaveLength(ESCROW_CANCEL_BYTES);
    expect(decodeEscrowCancel(encodeEscrowCancel(c))).toEqual(c);
    expectCode(() => decodeEscrowCancel(Buffer.alloc(96)), 'ESCROW_CANCEL_MALFORMED');
    expectCode(() => decodeEscrowCancel(Buffer.concat([Buffer.from([2]), encodeEscrowCancel(c).subarray(1)])), 'ESCROW_CANCEL_MALFORMED');
    const blocks = chain([
      { transfers: [fund], escrow: [open] },
      { escrow: [{ kind: 'pay', contract: idHex, epoch: 11, node: A, amount: 100_000n }, { kind: 'cancel', contract: idHex, amount: 900_000n, signature: c.signature }] },
    ]);
    const body1 = decodeSignedRewardBlock(blocks[1]).body;
    expect(body1.length).toBe(61 + 4 + 4 + 81 + 105);
    expect(encodeRewardBlock(decodeRewardBlock(body1)).equals(body1)).toBe(true);
    const s = verifyChain(blocks, authorities);
    expect(s.balances.get(P)).toBe(900_000n);
    expect(s.balances.get(A)).toBe(100_000n);
    expect(s.balances.get(idHex)).toBe(0n);
    expect(s.escrows.get(idHex)).toMatchObject({ refunded: 900_000n, cancelledAt: 11, paid: 100_000n });
    // After the cancel no payment applies (the nodes stop being paid from the next epoch).
    const after = chain([
      { transfers: [fund], escrow: [open] },
      { escrow: [{ kind: 'cancel', contract: idHex, amount: 1_000_000n, signature: c.signature }] },
      { escrow: [{ kind: 'pay', contract: idHex, epoch: 12, node: A, amount: 1n }] },
    ]);
    expect(() => verifyChain(after, authorities)).toThrow(/ESCROW_CLOSED/);
  });
});

/** A report as payments read it (SPEC.md §9.20.3): per node, its page's results. */
function paged(epoch: number, results: ReportedAudit[]): AuditPages {
  const pages = new Map<string, ReportedAudit[]>();
  for (const r of results) pages.set(r.node, [...(pages.get(r.node) ?? []), r]);
  return { epoch, pages };
}

describe('the escrow operations a block carries (SPEC.md §9.20.4)', () => {
  it('the payer sends no funding to a contract whose id holds units already: it would open no escrow (SPEC.md §9.20.4 item 1)', () => {
    const chain = (balances: Map<string, bigint>) => ({ state: { escrows: new Map(), balances } }) as unknown as RewardChainResult;
    expect(codeOf(() => checkNotFunded(chain(new Map([[idHex, 4000n]])), [], idHex))).toBe('ESCROW_ALREADY_FUNDED');
    expect(codeOf(() => checkNotFunded(chain(new Map()), [], idHex))).toBe('NO_ERROR');
  });

  it('no open for a contract whose id holds units an earlier block left there: the refund would give them to whoever funded it first (SPEC.md §9.20.4 item 1)', () => {
    const held = (x: string) => (x === idHex ? contract : undefined);
    const victim = ed25519Generate();
    const thief = ed25519Generate();
    const maps: LedgerMaps = { balances: new Map([[victim.publicKey.toString('hex'), 5000n], [thief.publicKey.toString('hex'), 10n]]), nonces: new Map() };
    // An earlier block carried the victim's plain transfer to the id without an open (its proposer
    // did not hold the contract): 4000 units sit at the id, no escrow.
    const stuck = new CoinLedger(maps);
    stuck.apply(signTransfer(victim, id, 4000n, 1));
    stuck.commit();
    expect(maps.balances.get(idHex)).toBe(4000n);
    // Anyone who saw the id funds it with one unit per epoch.
    const grab = signTransfer(thief, id, 4n, 1);
    const l = new CoinLedger(maps);
    l.apply(grab);
    expect(escrowOpsFor(new Map(), l, 9, [grab], held, null)).toEqual([]);
    // An id that held nothing before the block is opened as before, whatever the block brings it.
    const clean: LedgerMaps = { balances: new Map([[thief.publicKey.toString('hex'), 10n]]), nonces: new Map() };
    const l2 = new CoinLedger(clean);
    l2.apply(grab);
    expect(escrowOpsFor(new Map(), l2, 9, [grab], held, null)).toEqual([
      { kind: 'open', contract: idHex, payer: thief.publicKey.toString('hex'), startEpoch: 10, endEpoch: 14, funded: 4n, totalBytes: 8000n },
    ]);
  });

  it('payments keep of a page only its passing results, without answers or other fields, and pay the same (SPEC.md §9.20.4 item 2)', () => {
    const pass = { ...result(nodeA, 1, 3000, true), answer: 'ab'.repeat(1000), pad: 'x'.repeat(1000) } as ReportedAudit;
    const fail = { ...result(nodeA, 2, 1000, false), code: 'AUDIT_PROOF_INVALID', answer: 'cd'.repeat(1000) };
    const kept = paidResults([pass, fail]);
    expect(kept).toEqual([result(nodeA, 1, 3000, true)]);
    expect(JSON.stringify(kept).length).toBeLessThan(1000);
    const entries = new Map([[`${nodeA.toString('hex')}/${share(1).toString('hex')}`, { size: 3000, root: root(1).toString('hex') }]]);
    expect(passingBytes({ entries }, kept)).toEqual(passingBytes({ entries }, [pass, fail]));
  });

  it('opens on a funding transfer, pays the epoch from the report, refunds after the end; blocks built so verify', () => {
    const P = payer.publicKey.toString('hex');
    const held = (x: string) => (x === idHex ? contract : undefined);
    const maps: LedgerMaps = { balances: new Map([[P, 5000n]]), nonces: new Map() };
    const fund = signTransfer(payer, id, 4001n, 1);
    const l0 = new CoinLedger(maps);
    l0.apply(fund);
    const ops0 = escrowOpsFor(new Map(), l0, 9, [fund, signTransfer(payer, id, 1n, 2)], held, null);
    expect(ops0).toEqual([{ kind: 'open', contract: idHex, payer: P, startEpoch: 10, endEpoch: 14, funded: 4001n, totalBytes: 8000n }]);
    // Not for a contract not held, nor one that ended.
    expect(escrowOpsFor(new Map(), l0, 9, [fund], () => undefined, null)).toEqual([]);
    expect(escrowOpsFor(new Map(), l0, 14, [fund], held, null)).toEqual([]);
    const book: EscrowBook = new Map();
    applyEscrowOp(book, l0, { epoch: 9, transfers: [fund] }, ops0[0]);
    const report = paged(10, [result(nodeA, 1, 3000, true), result(nodeB, 3, 4000, true), result(nodeA, 2, 1000, false)]);
    // perEpoch = floor(4001 / 4) = 1000: A 1000·3000/8000 = 375, B 500.
    expect(escrowOpsFor(book, l0, 10, [], held, report)).toEqual([
      { kind: 'pay', contract: idHex, epoch: 10, node: A, amount: 375n }, { kind: 'pay', contract: idHex, epoch: 10, node: B, amount: 500n },
    ]);
    expect(escrowOpsFor(book, l0, 10, [], held, null)).toEqual([]);
    // The pages a payment reads: those of the contract's nodes, while it pays; none once it ended or for a contract not held.
    expect([...escrowPayNodes(book, 10, held)].sort()).toEqual([A, B].sort());
    expect(escrowPayNodes(book, 14, held).size).toBe(0);
    expect(escrowPayNodes(book, 10, () => undefined).size).toBe(0);
    // A node without a page in the report is paid nothing.
    expect(escrowOpsFor(book, l0, 10, [], held, { epoch: 10, pages: new Map([[B, report.pages.get(B)!]]) })).toEqual([
      { kind: 'pay', contract: idHex, epoch: 10, node: B, amount: 500n },
    ]);
    expect(escrowOpsFor(book, l0, 11, [], held, report)).toEqual([]); // a report of another epoch pays nothing
    expect(escrowOpsFor(book, l0, 14, [], held, null)).toEqual([{ kind: 'refund', contract: idHex, amount: 4001n }]);
    // A payer's cancel: after the epoch's payments, the rest; one by another key is left out; after
    // the end the refund comes instead.
    const c = signEscrowCancel(payer, idHex);
    expect(escrowOpsFor(book, l0, 10, [], held, report, [c])).toEqual([
      { kind: 'pay', contract: idHex, epoch: 10, node: A, amount: 375n }, { kind: 'pay', contract: idHex, epoch: 10, node: B, amount: 500n },
      { kind: 'cancel', contract: idHex, amount: 4001n - 875n, signature: c.signature },
    ]);
    expect(escrowOpsFor(book, l0, 10, [], held, null, [signEscrowCancel(ed25519Generate(), idHex)])).toEqual([]);
    expect(escrowOpsFor(book, l0, 14, [], held, null, [c])).toEqual([{ kind: 'refund', contract: idHex, amount: 4001n }]);
  });

  it('looks each contract up once per block, however many of its transfers pay the same id (a held contract is decoded per lookup)', () => {
    const lookups = new Map<string, number>();
    const held = (x: string) => { lookups.set(x, (lookups.get(x) ?? 0) + 1); return x === idHex ? contract : undefined; };
    const other = Buffer.alloc(32, 0xee);
    // 200 transfers below one unit per epoch (none opens the escrow), to the held id and to an id not held.
    const transfers = Array.from({ length: 200 }, (_, i) => signTransfer(payer, i % 2 ? other : id, 1n, i + 1));
    const l0 = new CoinLedger({ balances: new Map([[payer.publicKey.toString('hex'), 5000n]]), nonces: new Map() });
    expect(escrowOpsFor(new Map(), l0, 9, transfers, held, null)).toEqual([]);
    expect(Object.fromEntries(lookups)).toEqual({ [idHex]: 1, [other.toString('hex')]: 1 });
    // The escrow open before the block is looked up once too, for its payment and with transfers paying it.
    const fund = signTransfer(payer, id, 4001n, 1);
    const book: EscrowBook = new Map();
    applyEscrowOp(book, l0, { epoch: 9, transfers: [fund] }, escrowOpsFor(new Map(), l0, 9, [fund], held, null)[0]);
    lookups.clear();
    const report = paged(10, [result(nodeA, 1, 3000, true)]);
    expect(escrowOpsFor(book, l0, 10, transfers.slice(0, 20), held, report).filter((op) => op.kind === 'pay')).toHaveLength(1);
    expect(lookups.get(idHex)).toBe(1);
  });
});

describe('a block carries at most 10 000 escrow operations (SPEC.md §8.7.1, §9.20.4 item 4)', () => {
  const P = payer.publicKey.toString('hex');
  const hexId = (i: number) => i.toString(16).padStart(64, '0');
  const escrowOf = (id: string, startEpoch: number, endEpoch: number, funded: bigint, totalBytes: bigint) => ({
    id, payer: P, startEpoch, endEpoch, funded, perEpoch: funded / BigInt(endEpoch - startEpoch), totalBytes, lastPaid: startEpoch - 1, paid: 0n, refunded: null,
  });
  /** The first contract id a block of `epoch` pays from: the first id ≥ BLAKE2b-256(epoch as u64 big-endian), wrapping around. */
  const rotation = (ids: readonly string[], epoch: number): number => {
    const e = Buffer.alloc(8);
    e.writeBigUInt64BE(BigInt(epoch));
    const start = blake2b(e).toString('hex');
    const i = ids.findIndex((id) => id >= start);
    return i < 0 ? 0 : i;
  };

  it('10 001 ended escrows: the block refunds the 10 000 lowest ids, the next block the last one; a cancel that does not fit waits', () => {
    const book: EscrowBook = new Map();
    const balances = new Map<string, bigint>();
    for (let i = 0; i < 10_001; i++) {
      const id = hexId(10_001 - i); // inserted in descending order: the order taken is the ids', not the book's
      book.set(id, escrowOf(id, 10, 14, 4n, 100n));
      balances.set(id, 4n);
    }
    // One escrow still running, with its payer's cancel.
    const running = hexId(20_000);
    book.set(running, escrowOf(running, 10, 40, 30n, 100n));
    balances.set(running, 30n);
    const ledger = new CoinLedger({ balances, nonces: new Map() });
    const cancel = signEscrowCancel(payer, running);
    const ops = escrowOpsFor(book, ledger, 20, [], () => undefined, null, [cancel]);
    expect(ops).toHaveLength(MAX_BLOCK_ESCROW_OPS);
    expect(ops.every((op) => op.kind === 'refund')).toBe(true);
    expect(ops.map((op) => op.contract)).toEqual(Array.from({ length: 10_000 }, (_, i) => hexId(i + 1)));
    // They apply; the next block, over the book they leave, refunds the last one and takes the cancel.
    const next = copyEscrowBook(book);
    for (const op of ops) applyEscrowOp(next, ledger, { epoch: 20 }, op);
    expect(escrowOpsFor(next, ledger, 21, [], () => undefined, null, [cancel])).toEqual([
      { kind: 'refund', contract: hexId(10_001), amount: 4n }, { kind: 'cancel', contract: running, amount: 30n, signature: cancel.signature },
    ]);
  });

  it('more pays than fit: whole escrows only, from the epoch\'s rotation point in ascending id, wrapping; an escrow that does not fit is skipped for the next', () => {
    const book: EscrowBook = new Map();
    const contracts = new Map<string, StorageContract>();
    const results: ReportedAudit[] = [];
    for (let i = 0; i < 6_000; i++) {
      const entries = sortContractEntries([0, 1].map((k) => {
        const node = Buffer.alloc(32);
        node.writeUInt32BE(2 * i + k + 1);
        const shareId = Buffer.alloc(32, 0x11);
        shareId.writeUInt32BE(i);
        return { node, shareId, shareSize: 1000, auditRoot: root(k) };
      }));
      const c: StorageContract = { startEpoch: 10, endEpoch: 14, entries };
      const cid = contractId(c).toString('hex');
      contracts.set(cid, c);
      book.set(cid, escrowOf(cid, 10, 14, 4000n, 2000n));
      for (const e of entries) {
        results.push({ node: e.node.toString('hex'), contract: cid, shareId: e.shareId.toString('hex'), size: 1000, root: e.auditRoot.toString('hex'), ok: true, nonce: '00', blocks: [0] });
      }
    }
    const ids = [...book.keys()].sort();
    const ledger = new CoinLedger({ balances: new Map(ids.map((x) => [x, 4000n])), nonces: new Map() });
    const paidIn = (epoch: number) => {
      const ops = escrowOpsFor(book, ledger, epoch, [], (x) => contracts.get(x), paged(epoch, results.map((r) => r)));
      expect(ops.length).toBeLessThanOrEqual(MAX_BLOCK_ESCROW_OPS);
      expect(ops.every((op) => op.kind === 'pay' && op.epoch === epoch && op.amount === 500n)).toBe(true);
      const per = new Map<string, number>();
      for (const op of ops) per.set(op.contract, (per.get(op.contract) ?? 0) + 1);
      expect([...per.values()].every((n) => n === 2)).toBe(true); // all pays of an escrow, or none
      expect(ops.map((op) => op.contract)).toEqual(ops.map((op) => op.contract).sort()); // emitted in ascending id
      // They apply, escrow by escrow, node by node.
      const b = copyEscrowBook(book);
      for (const op of ops) applyEscrowOp(b, ledger, { epoch }, op);
      return [...per.keys()];
    };
    const at = (epoch: number) => Array.from({ length: 5_000 }, (_, k) => ids[(rotation(ids, epoch) + k) % ids.length]).sort();
    const e10 = paidIn(10);
    expect(e10).toEqual(at(10));
    const e11 = paidIn(11);
    expect(e11).toEqual(at(11));
    expect(e11).not.toEqual(e10);

    // 9 999 refunds leave room for one operation: an escrow paying 2 nodes is skipped, one paying 1 is paid.
    const small = new Map<string, StorageContract>();
    const tight: EscrowBook = new Map();
    const balances = new Map<string, bigint>();
    for (let i = 0; i < 9_999; i++) { tight.set(hexId(i + 1), escrowOf(hexId(i + 1), 1, 5, 4n, 100n)); balances.set(hexId(i + 1), 4n); }
    const two = [...contracts.keys()][0]!;
    const one: StorageContract = { startEpoch: 10, endEpoch: 14, entries: [contracts.get(two)!.entries[0]!] };
    const oneId = contractId(one).toString('hex');
    small.set(two, contracts.get(two)!).set(oneId, one);
    tight.set(two, escrowOf(two, 10, 14, 4000n, 2000n)).set(oneId, escrowOf(oneId, 10, 14, 4000n, 1000n));
    balances.set(two, 4000n).set(oneId, 4000n);
    const ops = escrowOpsFor(tight, new CoinLedger({ balances, nonces: new Map() }), 10, [], (x) => small.get(x), paged(10, results.filter((r) => small.has(r.contract))));
    expect(ops).toHaveLength(MAX_BLOCK_ESCROW_OPS);
    expect(ops.filter((op) => op.kind === 'pay')).toEqual([{ kind: 'pay', contract: oneId, epoch: 10, node: one.entries[0]!.node.toString('hex'), amount: 1000n }]);
  });
});

