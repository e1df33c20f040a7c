// SPEC.md §9.20.4: paying for storage from escrow. A payer funds a contract's escrow account (the
// key is the contract id, which no one can sign for) with an ordinary transfer (§8.11); each epoch
// of the contract, the nodes whose contracted shares passed the authorities' audit (§9.20.2, as a
// signed report shows, §9.20.3) are paid their part of the epoch's budget from that account; after
// the last epoch the rest returns to the payer. Pure arithmetic over a ledger (src/bandwidth/transfer.ts):
// the same contract, funding, reports and epochs give the same amounts everywhere.
import { err } from '../errors';
import { blake2b } from '../crypto/primitives';
import { encodeContract, type StorageContract } from '../wire/storage-contract';
import { isFundingTransfer, type Transfer } from '../wire/transfer';
import { MAX_BLOCK_ESCROW_OPS, type EscrowOp } from '../wire/reward-block';
import type { ReportedAudit } from '../storage/audit-report';
import type { CoinLedger } from './transfer';
import { escrowCancelSignedBy, type EscrowCancel } from '../wire/escrow-cancel';

/** The state of one funded contract (SPEC.md §9.20.4). */
export interface Escrow {
  /** The contract id (64 hex), also the escrow account's key in the ledger. */
  id: string;
  /** The funding transfer's sender (64 hex): the refund goes back to it. */
  payer: string;
  startEpoch: number;
  endEpoch: number;
  /** Units the funding transfer moved into escrow. */
  funded: bigint;
  /** `floor(funded / (endEpoch − startEpoch))`: at most this much leaves escrow per epoch. */
  perEpoch: bigint;
  /** Sum of the contract's share sizes (each (node, share) once: entries are distinct). */
  totalBytes: bigint;
  /**
   * The contract's entries by `node/shareId` (hex) → `{ size, root }`: known to whoever holds the
   * contract (the authorities, the payer); absent in a chain verifier's book (§9.20.4).
   */
  entries?: Map<string, { size: number; root: string }>;
  /** The last epoch paid (startEpoch − 1 before the first). */
  lastPaid: number;
  /** Units paid out so far. */
  paid: bigint;
  /** Set once the rest went back to the payer (at the end, or by the payer's cancel). */
  refunded: bigint | null;
  /** The epoch of the block that carried the payer's cancel, when the contract was cancelled. */
  cancelledAt?: number;
  /** Units paid so far for the epoch `lastPaid` and the last node paid for it (a chain block pays an epoch's nodes in ascending order). */
  paidLastEpoch?: bigint;
  lastNode?: string;
}

/** One payment of an epoch: `amount` units from the escrow to `node`. */
export interface EscrowPayment { node: string; amount: bigint }

/** Every contract funded so far, by contract id (hex). */
export type EscrowBook = Map<string, Escrow>;

/** The contract id of SPEC.md §9.20.1: BLAKE2b-256 of the contract's bytes. */
export function contractId(c: StorageContract): Buffer {
  return blake2b(encodeContract(c));
}

/**
 * Fund a contract's escrow (what a block carrying the funding transfer and its **open** does, for
 * whoever holds the contract): checks that `funding` pays the contract's id (ESCROW_MISMATCH), that
 * the contract was not funded before (ESCROW_ALREADY_FUNDED: a second funding, replayed under a new
 * nonce or not, is refused), that it buys at least one unit per epoch (ESCROW_UNDERFUNDED), then
 * applies the transfer to `ledger` by SPEC.md §8.11.2 — so a contract for more than the payer holds
 * is TRANSFER_OVERSPEND and the same transfer again TRANSFER_REPLAYED — and the open by
 * `applyEscrowOp`. A refusal changes nothing.
 */
export function fundEscrow(book: EscrowBook, ledger: CoinLedger, contract: StorageContract, funding: Transfer): Escrow & { entries: Map<string, { size: number; root: string }> } {
  const idBuf = contractId(contract);
  const id = idBuf.toString('hex');
  if (!funding.to.equals(idBuf)) throw err('ESCROW_MISMATCH', `the funding transfer pays ${funding.to.toString('hex').slice(0, 16)}…, not the contract ${id.slice(0, 16)}…`);
  if (book.has(id)) throw err('ESCROW_ALREADY_FUNDED', `contract ${id.slice(0, 16)}… is funded already`);
  const epochs = BigInt(contract.endEpoch - contract.startEpoch);
  if (funding.amount < epochs) throw err('ESCROW_UNDERFUNDED', `${funding.amount} units cannot pay ${epochs} epochs (at least one unit per epoch)`);
  ledger.apply(funding);
  const totalBytes = contract.entries.reduce((sum, e) => sum + BigInt(e.shareSize), 0n);
  applyEscrowOp(book, ledger, { epoch: contract.startEpoch, transfers: [funding] }, {
    kind: 'open', contract: id, payer: funding.from.toString('hex'), startEpoch: contract.startEpoch, endEpoch: contract.endEpoch, funded: funding.amount, totalBytes,
  });
  const entries = new Map(contract.entries.map((e) => [`${e.node.toString('hex')}/${e.shareId.toString('hex')}`, { size: e.shareSize, root: e.auditRoot.toString('hex') }]));
  const escrow = { ...book.get(id)!, entries };
  book.set(id, escrow);
  return escrow;
}

/**
 * SPEC.md §9.20.4: per node, the bytes of its pairs in this contract that passed in one authority's
 * report of an epoch. A result counts when it is `ok` and names a (node, share) of the contract with
 * the contract's own size and audit root (whatever contract id the result names: a commitment in
 * several contracts is audited once, §9.20.2); each pair counts once.
 */
export function passingBytes(escrow: { entries: ReadonlyMap<string, { size: number; root: string }> }, results: readonly ReportedAudit[]): Map<string, bigint> {
  const seen = new Set<string>();
  const out = new Map<string, bigint>();
  for (const r of results) {
    if (!r.ok) continue;
    const k = `${r.node}/${r.shareId}`;
    const e = escrow.entries.get(k);
    if (!e || e.size !== r.size || e.root !== r.root || seen.has(k)) continue;
    seen.add(k);
    out.set(r.node, (out.get(r.node) ?? 0n) + BigInt(r.size));
  }
  return out;
}

/**
 * SPEC.md §9.20.4: the payments of one epoch. Node n is paid `floor(perEpoch · passing_n / totalBytes)`;
 * nodes paid 0 are left out; the list is in ascending order of node key. The sum never exceeds
 * `perEpoch` (the floors' remainders, and the part of shares that were not audited or failed, stay in
 * escrow and return to the payer at the end).
 */
export function epochPayments(escrow: Pick<Escrow, 'perEpoch' | 'totalBytes'>, passing: ReadonlyMap<string, bigint>): EscrowPayment[] {
  const out: EscrowPayment[] = [];
  for (const node of [...passing.keys()].sort()) {
    const bytes = passing.get(node) ?? 0n;
    const amount = (escrow.perEpoch * bytes) / escrow.totalBytes;
    if (amount > 0n) out.push({ node, amount });
  }
  return out;
}

/**
 * Pay epoch `epoch` of a contract from `passing` (what the **pay** operations of a block do, for
 * whoever holds the report): `startEpoch ≤ epoch < endEpoch` and after the last epoch paid
 * (ESCROW_EPOCH: an epoch is paid at most once, in order), not refunded yet (ESCROW_CLOSED), and,
 * when `claimed` is given, the payments exactly those `epochPayments` gives (ESCROW_PAYMENT_MISMATCH).
 * Moves the units on `ledger` by `applyEscrowOp`. Returns the payments made.
 */
export function payEpoch(
  book: EscrowBook, ledger: CoinLedger, id: string, epoch: number, passing: ReadonlyMap<string, bigint>, claimed?: readonly EscrowPayment[],
): EscrowPayment[] {
  const escrow = book.get(id);
  if (!escrow) throw err('ESCROW_UNKNOWN', `no escrow for contract ${id.slice(0, 16)}…`);
  if (escrow.refunded !== null) throw err('ESCROW_CLOSED', `contract ${id.slice(0, 16)}… ended and was refunded`);
  if (!Number.isSafeInteger(epoch) || epoch < escrow.startEpoch || epoch >= escrow.endEpoch) {
    throw err('ESCROW_EPOCH', `epoch ${epoch} is outside the contract's ${escrow.startEpoch}..${escrow.endEpoch - 1}`);
  }
  if (epoch <= escrow.lastPaid) throw err('ESCROW_EPOCH', `epoch ${epoch} is paid already (the last paid is ${escrow.lastPaid})`);
  const payments = epochPayments(escrow, passing);
  if (claimed) {
    const same = claimed.length === payments.length && claimed.every((p, i) => p.node === payments[i].node && p.amount === payments[i].amount);
    if (!same) throw err('ESCROW_PAYMENT_MISMATCH', `the payments of epoch ${epoch} for contract ${id.slice(0, 16)}… are not those the audit report gives`);
  }
  const work = copyEscrowBook(book);
  for (const p of payments) applyEscrowOp(work, ledger, { epoch }, { kind: 'pay', contract: id, epoch, node: p.node, amount: p.amount });
  const done = work.get(id)!;
  Object.assign(escrow, done, { lastPaid: epoch, lastNode: done.lastPaid === epoch ? done.lastNode : undefined, paidLastEpoch: done.lastPaid === epoch ? done.paidLastEpoch : 0n });
  return payments;
}

/**
 * Close a contract once `epoch ≥ endEpoch` (what a block's **refund** does): everything its escrow
 * account holds on `ledger` (the rest of the funding and anything else sent to the contract id) goes
 * to the payer, by `applyEscrowOp` (ESCROW_UNKNOWN, ESCROW_CLOSED, ESCROW_NOT_ENDED). Returns the units.
 */
export function refundEscrow(book: EscrowBook, ledger: CoinLedger, id: string, epoch: number): bigint {
  const rest = ledger.account(id).balance;
  applyEscrowOp(book, ledger, { epoch }, { kind: 'refund', contract: id, amount: rest });
  return rest;
}

/**
 * SPEC.md §9.20.4 (what a chain verifier checks): apply one of a block's escrow operations, after the
 * block's allocations and transfers have been applied to `ledger`. Changes the record in `book` (pass
 * a copy, `copyEscrowBook`, and keep it only when the whole block applies). Refusals: ESCROW_* or
 * TRANSFER_OVERSPEND.
 */
export function applyEscrowOp(book: EscrowBook, ledger: CoinLedger, block: { epoch: number; transfers?: readonly Transfer[] }, op: EscrowOp): void {
  if (op.kind === 'open') {
    if (book.has(op.contract)) throw err('ESCROW_ALREADY_FUNDED', 'the contract is funded already');
    const epochs = BigInt(op.endEpoch - op.startEpoch);
    if (op.funded < epochs) throw err('ESCROW_UNDERFUNDED', `${op.funded} units cannot pay ${epochs} epochs`);
    if (op.endEpoch <= block.epoch) throw err('ESCROW_EPOCH', `the contract ended before the block's epoch ${block.epoch}`);
    const funding = (block.transfers ?? []).some((t) => t.from.toString('hex') === op.payer && t.to.toString('hex') === op.contract && t.amount === op.funded);
    if (!funding) throw err('ESCROW_MISMATCH', 'the block carries no transfer of the funded amount from the payer to the contract id');
    book.set(op.contract, {
      id: op.contract, payer: op.payer, startEpoch: op.startEpoch, endEpoch: op.endEpoch, funded: op.funded,
      perEpoch: op.funded / epochs, totalBytes: op.totalBytes, lastPaid: op.startEpoch - 1, paid: 0n, refunded: null,
    });
    return;
  }
  const e = book.get(op.contract);
  if (!e) throw err('ESCROW_UNKNOWN', 'no escrow is open for the contract');
  if (e.refunded !== null) throw err('ESCROW_CLOSED', 'the contract was refunded already');
  if (op.kind === 'cancel') {
    if (block.epoch >= e.endEpoch) throw err('ESCROW_EPOCH', `the contract ended at epoch ${e.endEpoch}: its rest is refunded, not cancelled`);
    if (!escrowCancelSignedBy(op, e.payer)) throw err('ESCROW_NOT_PAYER', 'the cancel is not signed by the contract\'s payer');
    const rest = ledger.account(op.contract).balance;
    if (op.amount !== rest) throw err('ESCROW_PAYMENT_MISMATCH', `a cancel returns all ${rest} units the escrow holds, not ${op.amount}`);
    if (rest > 0n) ledger.move(op.contract, e.payer, rest);
    e.refunded = rest;
    e.cancelledAt = block.epoch;
    return;
  }
  if (op.kind === 'refund') {
    if (block.epoch < e.endEpoch) throw err('ESCROW_NOT_ENDED', `the contract runs until epoch ${e.endEpoch - 1}`);
    const rest = ledger.account(op.contract).balance;
    if (op.amount !== rest) throw err('ESCROW_PAYMENT_MISMATCH', `a refund returns all ${rest} units the escrow holds, not ${op.amount}`);
    if (rest > 0n) ledger.move(op.contract, e.payer, rest);
    e.refunded = rest;
    return;
  }
  if (op.epoch < e.startEpoch || op.epoch >= e.endEpoch || op.epoch > block.epoch) {
    throw err('ESCROW_EPOCH', `epoch ${op.epoch} is outside the contract's ${e.startEpoch}..${e.endEpoch - 1} or after the block's ${block.epoch}`);
  }
  const continuing = op.epoch === e.lastPaid && e.lastNode !== undefined && op.node > e.lastNode;
  if (op.epoch < e.lastPaid || (op.epoch === e.lastPaid && !continuing)) throw err('ESCROW_EPOCH', `epoch ${op.epoch} is paid already, or its nodes are out of order`);
  const sofar = continuing ? e.paidLastEpoch ?? 0n : 0n;
  if (sofar + op.amount > e.perEpoch) throw err('ESCROW_PAYMENT_MISMATCH', `epoch ${op.epoch} would pay ${sofar + op.amount} units, more than the ${e.perEpoch} per epoch`);
  ledger.move(op.contract, op.node, op.amount);
  e.lastPaid = op.epoch;
  e.lastNode = op.node;
  e.paidLastEpoch = sofar + op.amount;
  e.paid += op.amount;
}

/** A copy of a book whose records can be changed without touching the original's. */
export function copyEscrowBook(book: ReadonlyMap<string, Escrow>): EscrowBook {
  return new Map([...book].map(([k, v]) => [k, { ...v }]));
}

/** What the authority building a block knows besides the chain: the contracts it holds. */
export type ContractLookup = (id: string) => StorageContract | undefined;

/**
 * SPEC.md §9.20.4: `lookup` asked at most once per id, for one block: the proposer making it (the
 * transfers it carries, its escrow operations, the pages its payments read) or an authority
 * rechecking it. A lookup may decode the contract; each part of the block sees the same answer.
 */
export function lookupOnce(lookup: ContractLookup): ContractLookup {
  const looked = new Map<string, StorageContract | undefined>();
  return (id) => {
    if (!looked.has(id)) looked.set(id, lookup(id));
    return looked.get(id);
  };
}

/**
 * SPEC.md §9.20.3, §9.20.4: an audit report of an epoch as payments read it: per node, the results
 * of its page (verified against the signed summary by whoever fetched them; those held are reduced
 * by paidResults).
 */
export interface AuditPages {
  epoch: number;
  pages: ReadonlyMap<string, readonly ReportedAudit[]>;
}

/**
 * SPEC.md §9.20.4 item 2: what payments read of a page's results: the passing ones, each reduced
 * to the commitment it was checked against, without the node's answer (about 34 KiB in hex for
 * four 4 KiB blocks) or anything else the page carries. Whoever builds or rechecks a block holds
 * the pages of every node it pays at once; a page may be 16 MiB (§9.20.3).
 */
export function paidResults(results: readonly ReportedAudit[]): ReportedAudit[] {
  return results.filter((r) => r.ok === true).map((r) => ({
    node: r.node, contract: r.contract, shareId: r.shareId, size: r.size, root: r.root, nonce: r.nonce, blocks: r.blocks, ok: true,
  }));
}

/**
 * SPEC.md §9.20.4 item 2: the nodes whose pages the payments of the block for `epoch` read: those
 * the contracts name of every escrow open before the block, not refunded, held, with
 * `startEpoch ≤ epoch < endEpoch` and `epoch` not paid. That is every escrow `escrowOpsFor` may pay,
 * also those the cap of item 4 leaves unpaid: a superset of the pages it reads, which is harmless.
 */
export function escrowPayNodes(book: ReadonlyMap<string, Escrow>, epoch: number, lookup: ContractLookup): Set<string> {
  const out = new Set<string>();
  for (const [id, e] of book) {
    if (e.refunded !== null || epoch < e.startEpoch || epoch >= e.endEpoch || epoch <= e.lastPaid) continue;
    const c = lookup(id);
    if (!c) continue;
    for (const x of c.entries) out.add(x.node.toString('hex'));
  }
  return out;
}

/**
 * SPEC.md §9.20.4: the escrow operations of the block for `epoch`, computed by its proposer and
 * recomputed by every other authority before it signs. `book` is the chain's escrow book before the
 * block, `ledger` the chain state after the block's allocations and transfers, `report` the
 * verified pages of the proposer's own audit report of `epoch` (at least those of the nodes
 * `escrowPayNodes` names; null: no report, and then nothing is paid). In this order:
 * - **open** for each of the block's transfers, in order, that pays the id of a contract held,
 *   not yet open and not ended at `epoch`, whose account held nothing before the block, with at
 *   least one unit per epoch (the first such transfer per contract; the sender is the payer);
 * - **pay**, for each escrow open before the block, in ascending contract id, whose contract is
 *   held, with `startEpoch ≤ epoch < endEpoch` and `epoch` not paid: `epochPayments` of the
 *   report's passing bytes for its pairs;
 * - **refund**, for each escrow open before the block and not refunded whose `endEpoch ≤ epoch`, in
 *   ascending contract id: everything its account holds; else **cancel**, for each such escrow with
 *   `endEpoch > epoch` that one of `cancels` names with the payer's signature: everything its
 *   account holds after this block's payments.
 * SPEC.md §9.20.4 item 4: never more than MAX_BLOCK_ESCROW_OPS (§8.7.1), chosen so: every open
 * (the first MAX_BLOCK_ESCROW_OPS, should there be more); then the refunds, then the cancels, in
 * ascending contract id, as many as fit; then the pays escrow by escrow, all of one escrow's or
 * none, in ascending contract id from the first id ≥ BLAKE2b-256(epoch as u64 big-endian),
 * wrapping around, an escrow whose pays do not fit being skipped for the next. What is left out
 * waits: a refund or cancel for a later block, an escrow's pay of `epoch` for ever (its units go
 * back with the refund).
 */
export function escrowOpsFor(
  book: ReadonlyMap<string, Escrow>, ledger: CoinLedger, epoch: number, transfers: readonly Transfer[], lookup: ContractLookup,
  report: AuditPages | null, cancels: readonly EscrowCancel[] = [],
): EscrowOp[] {
  // Each id is looked up once per block: escrowOpener remembers the ids the transfers pay, none of
  // which has an escrow, and the pays below look up each escrow's id once.
  const opens: EscrowOp[] = [];
  // The chain's balance of an id before the block: `ledger` less what the block's transfers brought.
  const brought = new Map<string, bigint>();
  for (const t of transfers) brought.set(t.to.toString('hex'), (brought.get(t.to.toString('hex')) ?? 0n) + t.amount);
  const opener = escrowOpener(book, epoch, lookup, (id) => ledger.account(id).balance - (brought.get(id) ?? 0n));
  for (const t of transfers) {
    const c = opener(t);
    if (!c) continue;
    const id = t.to.toString('hex');
    const totalBytes = c.entries.reduce((s, e) => s + BigInt(e.shareSize), 0n);
    opens.push({ kind: 'open', contract: id, payer: t.from.toString('hex'), startEpoch: c.startEpoch, endEpoch: c.endEpoch, funded: t.amount, totalBytes });
  }
  // SPEC.md §9.20.4 item 4: the opens first (a block's transfers are at most as many as the cap).
  const ops = opens.slice(0, MAX_BLOCK_ESCROW_OPS);
  let room = MAX_BLOCK_ESCROW_OPS - ops.length;
  const ids = [...book.keys()].sort();
  // Then the refunds, then the cancels, in ascending contract id, as many as fit.
  const closing = new Map<string, EscrowCancel | null>();
  for (const id of ids) {
    if (room === 0) break;
    const e = book.get(id)!;
    if (e.refunded === null && e.endEpoch <= epoch) { closing.set(id, null); room--; }
  }
  const cancelOf = new Map<string, EscrowCancel>();
  for (const c of cancels) if (!cancelOf.has(c.contract)) cancelOf.set(c.contract, c);
  for (const id of ids) {
    if (room === 0) break;
    const e = book.get(id)!;
    const c = cancelOf.get(id);
    if (!c || e.refunded !== null || e.endEpoch <= epoch || !escrowCancelSignedBy(c, e.payer)) continue;
    closing.set(id, c);
    room--;
  }
  // Then the pays, escrow by escrow, from the epoch's rotation point (no id can be ground to come first).
  const pays = new Map<string, EscrowOp[]>();
  if (report && report.epoch === epoch && ids.length) {
    const start = blake2b(u64be(epoch)).toString('hex');
    const from = Math.max(0, ids.findIndex((id) => id >= start));
    for (let k = 0; k < ids.length && room > 0; k++) {
      const id = ids[(from + k) % ids.length]!;
      const e = book.get(id)!;
      const c = lookup(id);
      if (!c || e.refunded !== null || epoch < e.startEpoch || epoch >= e.endEpoch || epoch <= e.lastPaid) continue;
      const entries = new Map(c.entries.map((x) => [`${x.node.toString('hex')}/${x.shareId.toString('hex')}`, { size: x.shareSize, root: x.auditRoot.toString('hex') }]));
      // §9.20.3: a node's results are on its page; a node the report does not name has none.
      const results = [...new Set(c.entries.map((x) => x.node.toString('hex')))].flatMap((n) => report.pages.get(n) ?? []);
      const mine = epochPayments(e, passingBytes({ entries }, results)).map((p): EscrowOp => ({ kind: 'pay', contract: id, epoch, node: p.node, amount: p.amount }));
      if (!mine.length || mine.length > room) continue;
      pays.set(id, mine);
      room -= mine.length;
    }
  }
  // Emitted as always: the opens, the pays, the refunds and cancels, each in ascending contract id.
  for (const id of ids) ops.push(...(pays.get(id) ?? []));
  for (const id of ids) {
    if (!closing.has(id)) continue;
    const c = closing.get(id);
    const balance = ledger.account(id).balance;
    if (!c) { ops.push({ kind: 'refund', contract: id, amount: balance }); continue; }
    const paidNow = (pays.get(id) ?? []).reduce((sum, op) => sum + (op.kind === 'pay' ? op.amount : 0n), 0n);
    ops.push({ kind: 'cancel', contract: id, amount: balance - paidNow, signature: c.signature });
  }
  return ops;
}

/**
 * SPEC.md §9.20.4 item 1: which of a block's transfers get an **open**. Pass the block's transfers
 * in order; each answer is the contract whose escrow the transfer opens, or null: its `to` is the id
 * of a contract `lookup` holds, with no escrow in `book` nor opened by an earlier transfer passed,
 * `endEpoch > epoch`, `amount ≥ endEpoch − startEpoch`, and whose account held nothing before the
 * block (`heldBefore`, the chain's balance of the id). One per block: it remembers the opens.
 * The proposer also uses it to choose the funding transfers (versions 2 and 4) it can carry (§8.11.3).
 * Each id is looked up once: a lookup may decode the contract, and a pool's 10 000 transfers may
 * all pay one id that gets no open (an ended contract).
 */
export function escrowOpener(book: ReadonlyMap<string, Escrow>, epoch: number, lookup: ContractLookup, heldBefore: (id: string) => bigint = () => 0n): (t: Transfer) => StorageContract | null {
  const opened = new Set<string>();
  const looked = new Map<string, StorageContract | undefined>();
  return (t) => {
    const id = t.to.toString('hex');
    if (book.has(id) || opened.has(id)) return null;
    // §9.20.4 item 1: units an earlier block left at the id (a plain transfer carried without an
    // open) would go with the refund to whoever funds it first, anyone who saw the id: no open.
    if (heldBefore(id) > 0n) return null;
    if (!looked.has(id)) looked.set(id, lookup(id));
    const c = looked.get(id);
    if (!c || c.endEpoch <= epoch || t.amount < BigInt(c.endEpoch - c.startEpoch)) return null;
    opened.add(id);
    return c;
  };
}

/**
 * SPEC.md §8.7.3 item 7, §9.20.4: a funding transfer (version 2 or 4) applies only together with the
 * **open** of its contract's escrow in the same block. Each of the block's funding transfers, in
 * order, takes one of the block's opens with `contract` = its `to`, `payer` = its `from` and
 * `funded` = its `amount`, not taken by an earlier one (the opens themselves were checked to apply).
 * Returns the index (among all the block's transfers) of the first that finds none, or −1.
 */
export function fundingWithoutOpen(transfers: readonly Transfer[], ops: readonly EscrowOp[]): number {
  let free: Map<string, number> | null = null;
  for (let i = 0; i < transfers.length; i++) {
    const t = transfers[i]!;
    if (!isFundingTransfer(t)) continue;
    if (!free) {
      free = new Map();
      for (const op of ops) {
        if (op.kind !== 'open') continue;
        const k = `${op.contract}/${op.payer}/${op.funded}`;
        free.set(k, (free.get(k) ?? 0) + 1);
      }
    }
    const k = `${t.to.toString('hex')}/${t.from.toString('hex')}/${t.amount}`;
    const n = free.get(k) ?? 0;
    if (n === 0) return i;
    free.set(k, n - 1);
  }
  return -1;
}

/** An epoch as u64 big-endian, the input of the pays' rotation point (SPEC.md §9.20.4 item 4). */
function u64be(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}
