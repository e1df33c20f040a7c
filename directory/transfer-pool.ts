// SPEC.md §8.11.3: an authority's pool of pending transfers. A transfer is taken into the pool
// only when it applies (SPEC §8.11.2) to the chain state followed by the pool's transfers in
// order, so the pool as a whole always applies on top of the chain tip, and when its amount is at
// most what the sender holds in the chain minus its own pending transfers: units that only a
// pending transfer brings are not spendable until a block carries them (else a chain of pending
// transfers through fresh keys would pass the per-sender cap); and, for one to the id of a contract
// with an escrow in the chain, when it is not a funding transfer (no block could carry it) and that
// escrow is not closed (nothing empties its account again). When the chain grows,
// the pool is checked again from the new state: transfers the block carried (their nonce is now
// used) and any that no longer apply are dropped. Pending transfers are memory only: one not yet in
// a block is lost when every authority holding it restarts (the wallet sends the same bytes again while it waits, SPEC §8.11.4).
//
// Only transfers bound to this chain (versions 3 and 4, SPEC §8.11.1) are taken: versions 1 and 2
// name no chain, so one signed on another network would verify here (TRANSFER_MALFORMED).
//
// Funding transfers (version 4, or 2 in blocks written before, SPEC §8.11.1) are taken like the others, but a block carries one
// only with its escrow's open (§8.7.3 item 7): the proposer's `take` leaves one it cannot open, and
// every later transfer of its sender (their nonces follow it), for a later block. One that no block
// carried within FUNDING_PENDING_HEIGHTS heights of its arrival is dropped at `rebase`, and with it
// the sender's later pending transfers, which no longer apply (§8.11.3). The pool remembers it until
// its nonce is used and refuses it sent again (TRANSFER_REPLAYED): its bytes are public (GET
// /bitcloud/transfers/pending), and anyone posting them again every 24 heights would otherwise hold
// the sender's nonce, and so every later transfer of the sender, for ever. That memory survives a
// restart (§8.11.3): `keepDroppedIn` loads it from the authority's data folder
// (TRANSFER_DROPPED_FILE) and has every `rebase` that changes it written there again, atomically,
// one write at a time; a file that does not read as one is logged and ignored.
//
// SPEC §8.11.3: funding transfers are an admission and proposal policy of the consensus parameter
// `funding-v2`: while it is off (`fundingV2()` false) `add` refuses a funding transfer
// (TRANSFER_VERSION_DISABLED) and `take` carries none, so software that cannot decode them
// is not split off the chain before the operators switch it on. Block verification does not
// depend on it.
import fs from 'node:fs';
import { err } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { LatestFileWriter } from '../src/ops/fsutil';
import { CoinLedger, MAX_PENDING_PER_SENDER, type LedgerMaps } from '../src/bandwidth/transfer';
import { FUNDING_TRANSFER_VERSION, TRANSFER_BYTES, TRANSFER_VERSION, decodeTransfer, encodeTransfer, isChainBound, isFundingTransfer, type Transfer } from '../src/wire/transfer';
import { FUNDING_V2 } from '../src/dir/consensus-params';
import type { Escrow } from '../src/bandwidth/escrow';

/** At most this many transfers wait in a pool (SPEC §8.11.3); more: TRANSFER_POOL_FULL. */
export const MAX_POOL_TRANSFERS = 10_000;

/**
 * SPEC §8.11.3: a funding transfer (version 4) that no block carried within this many heights of
 * its arrival in the pool is dropped from it (its contract is not held by the proposers).
 */
export const FUNDING_PENDING_HEIGHTS = 24;

/**
 * SPEC §8.11.3: the file in the authority's data folder holding the funding transfers the pool
 * dropped for their age: `{"version":1,"dropped":[<145 bytes in hex>, …]}`, oldest first.
 */
export const TRANSFER_DROPPED_FILE = 'transfer-dropped.json';
const DROPPED_FILE_VERSION = 1;

/**
 * What the pool is checked against: the chain state's balances and nonces, its height (absent: −1)
 * and its escrow book (absent: none), by contract id (hex).
 */
export type PoolBase = Readonly<LedgerMaps> & { readonly height?: number; readonly escrows?: ReadonlyMap<string, Pick<Escrow, 'refunded'>> };

/** Of what the last `rebase` dropped: the funding transfers too old, and the later transfers of their senders. */
export interface Expired { funding: number; after: number }

/**
 * A pending transfer with its encoding (145 bytes, made once when it is taken), sender (hex) and
 * the chain height when it was taken (SPEC §8.11.3: a funding transfer's age).
 */
interface Entry { t: Transfer; id: string; bytes: Buffer; from: string; since: number }

export class TransferPool {
  private list: Entry[] = [];
  private readonly ids = new Set<string>();
  /** Pending transfers per sender (hex), in pool order. */
  private readonly bySender = new Map<string, Entry[]>();
  /** The whole pool's encoding, until the pool changes (GET /bitcloud/transfers/pending). */
  private body: Buffer | null = null;
  /** Units the sender's pending transfers spend (hex). */
  private readonly out = new Map<string, bigint>();
  /** The largest pending transfer to each recipient (hex): a contract's funding (SPEC.md §9.20.1, §9.20.4). */
  private readonly largestIn = new Map<string, bigint>();
  private ledger: CoinLedger;
  /** What the last `rebase` dropped for a funding transfer's age (SPEC §8.11.3). */
  expired: Expired = { funding: 0, after: 0 };
  /**
   * SPEC §8.11.3: funding transfers dropped for their age, by id (their 145 bytes in hex), with their
   * sender (hex) and nonce: refused if sent again, until the chain uses that nonce. At most `max`, the
   * oldest forgotten first.
   */
  private readonly dropped = new Map<string, { from: string; nonce: number }>();
  /** Writes `dropped` to its file (SPEC §8.11.3); none until `keepDroppedIn`. */
  private droppedWriter: LatestFileWriter | null = null;

  /**
   * `fundingV2`: whether funding transfers (version 4) are switched on (SPEC §8.11.3: the authority's
   * current consensus has `funding-v2 = 1`); asked at each `add` and `take`. The reward ledger passes
   * its consensus's; the default (on) serves a pool used on its own.
   */
  constructor(
    private base: PoolBase, private readonly max = MAX_POOL_TRANSFERS, private readonly perSender = MAX_PENDING_PER_SENDER,
    private readonly fundingV2: () => boolean = () => true,
  ) {
    this.ledger = new CoinLedger(base);
  }

  get size(): number { return this.list.length; }

  /**
   * SPEC §8.11.3: remember the funding transfers dropped for their age across restarts, in `file`
   * (TRANSFER_DROPPED_FILE in the data folder). Call once, at start, once the pool's base is the
   * chain loaded: the file's transfers whose nonce the chain used are not taken, and at most the
   * newest `max`. A file that is not one this pool wrote is logged at warn with the reason and
   * ignored (the next write replaces it). From then on every `rebase` that changes them writes
   * them again (temp file, fsync, rename, mode 0600), one write at a time, only the newest waiting.
   */
  keepDroppedIn(file: string, log: Logger): void {
    this.droppedWriter = new LatestFileWriter(file, 0o600, (e) => log.warn({ err: e.message }, 'saving the dropped funding transfers failed'));
    let raw: string;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: (e as Error).message }, 'dropped funding transfers not read; starting without them');
      return;
    }
    let entries: [string, { from: string; nonce: number }][];
    try {
      entries = decodeDropped(raw);
    } catch (e) {
      log.warn({ file, reason: (e as Error).message }, 'dropped funding transfers file not usable; ignored');
      return;
    }
    for (const [id, d] of entries.slice(-this.max)) {
      if (d.nonce <= (this.base.nonces.get(d.from) ?? 0)) continue;
      this.dropped.delete(id);
      this.dropped.set(id, d);
    }
  }

  /** Resolves once the dropped funding transfers asked to be written are on disk (tests, shutdown). */
  flushDropped(): Promise<void> {
    return this.droppedWriter?.idle() ?? Promise.resolve();
  }

  /**
   * Take a transfer: 'held' when the identical transfer is already pending, 'added' when it is new
   * and applies after the pool. Throws TRANSFER_BAD_SIGNATURE, TRANSFER_REPLAYED (its nonce is used
   * in the chain or by another pending transfer: a replay or a double spend; or it is a funding
   * transfer this pool dropped for its age, whose nonce the chain has not used), TRANSFER_NONCE_GAP,
   * TRANSFER_OVERSPEND (more than the chain balance minus the sender's pending transfers; pending
   * transfers to the sender do not count; checked after the nonce and before the signature), TRANSFER_RATE_LIMITED (the sender
   * has `perSender` transfers waiting already), TRANSFER_POOL_FULL, TRANSFER_VERSION_DISABLED
   * for a funding transfer while `fundingV2()` is false (SPEC §8.11.3), TRANSFER_MALFORMED for a
   * transfer of version 1 or 2 (it names no chain, SPEC §8.11.3), and, for a
   * transfer to the id of a contract with an escrow in the chain, ESCROW_ALREADY_FUNDED (a funding
   * transfer) or ESCROW_CLOSED (a plain one to an escrow refunded or cancelled; §8.11.3, §9.20.4).
   */
  add(t: Transfer): 'added' | 'held' {
    const bytes = encodeTransfer(t);
    const id = bytes.toString('hex');
    // SPEC §8.11.3: versions 1 and 2 name no chain; one signed on another network would verify here.
    if (!isChainBound(t)) {
      throw err('TRANSFER_MALFORMED', `a version ${t.version} transfer names no chain (a transfer signed for another network would verify here): send version ${TRANSFER_VERSION} or ${FUNDING_TRANSFER_VERSION}, signed over this chain's id`);
    }
    if (this.ids.has(id)) return 'held';
    if (isFundingTransfer(t) && !this.fundingV2()) {
      throw err('TRANSFER_VERSION_DISABLED', `funding transfers (version ${FUNDING_TRANSFER_VERSION}) are not switched on: this authority's consensus does not have ${FUNDING_V2} = 1; send a version ${TRANSFER_VERSION} transfer`);
    }
    if (this.dropped.has(id)) throw err('TRANSFER_REPLAYED', `this funding transfer (nonce ${t.nonce}) was dropped: no block carried it within ${FUNDING_PENDING_HEIGHTS} heights; it is not taken again (its sender may send another transfer with this nonce)`);
    const from = t.from.toString('hex');
    // SPEC §8.11.3: the nonce, then the amount against the chain balance, look-ups, before the
    // signature: transfers from keys that hold nothing (fresh keys, any number of them) are refused
    // without verifying one, and a second transfer with a nonce used or pending (a double spend, the
    // same transfer posted again once a block carried it) is TRANSFER_REPLAYED, not an overspend.
    this.ledger.checkNonce(t);
    this.checkFunded(t, from);
    this.ledger.check(t);
    this.checkRecipient(t);
    const mine = this.bySender.get(from)?.length ?? 0;
    if (mine >= this.perSender) throw err('TRANSFER_RATE_LIMITED', `${from.slice(0, 16)}… has ${mine} transfers waiting for a block already (at most ${this.perSender}); send again after the next block`);
    if (this.list.length >= this.max) throw err('TRANSFER_POOL_FULL', `${this.max} transfers are waiting for a block already; send again later`);
    this.ledger.applyVerified(t); // verified by `check` above: once per transfer taken
    this.keep({ t, id, bytes, from, since: this.base.height ?? -1 });
    return 'added';
  }

  private keep(e: Entry): void {
    this.list.push(e);
    this.ids.add(e.id);
    const mine = this.bySender.get(e.from);
    if (mine) mine.push(e); else this.bySender.set(e.from, [e]);
    this.out.set(e.from, (this.out.get(e.from) ?? 0n) + e.t.amount);
    const to = e.t.to.toString('hex');
    if (e.t.amount > (this.largestIn.get(to) ?? 0n)) this.largestIn.set(to, e.t.amount);
    this.body = null;
  }

  /** The largest pending transfer to `to` (hex), 0 when none: what would fund a contract of that id (SPEC.md §9.20.4). */
  largestTo(to: string): bigint {
    return this.largestIn.get(to) ?? 0n;
  }

  /**
   * SPEC §8.11.3, §9.20.4: a transfer to the id of a contract whose escrow the chain holds, or that
   * holds units with no escrow. A funding transfer to it can never be carried, its escrow being
   * opened already or never to be opened (ESCROW_ALREADY_FUNDED); a plain one to an escrow refunded or cancelled would put units in an
   * account nothing moves again (ESCROW_CLOSED). One to an open escrow is taken (its units go back
   * to the payer with the refund).
   */
  private checkRecipient(t: Transfer): void {
    const id = t.to.toString('hex');
    const e = this.base.escrows?.get(id);
    if (!e) {
      // SPEC.md §9.20.4 item 1: an id holding units with no escrow gets no open, so no block carries a funding to it.
      const held = this.base.balances.get(id) ?? 0n;
      if (isFundingTransfer(t) && held > 0n) throw err('ESCROW_ALREADY_FUNDED', `the id ${id.slice(0, 16)}… holds ${held} units with no escrow: no escrow is opened for it, so a funding transfer to it would open none`);
      return;
    }
    if (isFundingTransfer(t)) throw err('ESCROW_ALREADY_FUNDED', `contract ${id.slice(0, 16)}… has an escrow already (${e.refunded !== null ? 'closed' : 'open'}): a funding transfer to it would open none`);
    if (e.refunded !== null) throw err('ESCROW_CLOSED', `the escrow of contract ${id.slice(0, 16)}… was refunded or cancelled: units sent to its id could never be moved again`);
  }

  /** SPEC §8.11.3: a pending transfer spends only the chain balance less the sender's pending ones. TRANSFER_OVERSPEND. */
  private checkFunded(t: Transfer, from: string): void {
    const have = (this.base.balances.get(from) ?? 0n) - (this.out.get(from) ?? 0n);
    if (t.amount > have) throw err('TRANSFER_OVERSPEND', `the sender holds ${have} units in the chain after its pending transfers, not ${t.amount} (units a pending transfer brings are spendable once a block carries it)`);
  }

  /**
   * The chain moved on: keep, in order, the pending transfers that still apply to `base` (and to its
   * escrow book: `checkRecipient`). Returns
   * how many were dropped (of which `expired` says how many for a funding transfer's age). Signatures were verified at `add` and do not depend on the chain, so
   * they are not verified again (this runs when a block lands); a transfer whose nonce the chain
   * used is dropped before anything else is looked at. SPEC §8.11.3: a funding transfer
   * that arrived FUNDING_PENDING_HEIGHTS or more heights before `base.height` is dropped, and so is
   * every later pending transfer of its sender (its nonce is not used: theirs no longer apply).
   */
  rebase(base: PoolBase): number {
    this.base = base;
    const height = base.height ?? -1;
    const old = this.list;
    this.list = [];
    this.ids.clear();
    this.bySender.clear();
    this.out.clear();
    this.largestIn.clear();
    this.body = null;
    this.ledger = new CoinLedger(base);
    let droppedChanged = false;
    for (const [id, d] of this.dropped) if (d.nonce <= (base.nonces.get(d.from) ?? 0)) { this.dropped.delete(id); droppedChanged = true; }
    const expired = new Set<string>();
    let fundingExpired = 0;
    let afterExpired = 0;
    for (const e of old) {
      if (e.t.nonce <= (base.nonces.get(e.from) ?? 0)) continue;
      if (expired.has(e.from)) { afterExpired++; continue; }
      if (isFundingTransfer(e.t) && height - e.since >= FUNDING_PENDING_HEIGHTS) {
        expired.add(e.from);
        fundingExpired++;
        this.dropped.delete(e.id); // re-inserted last: the oldest is forgotten first
        this.dropped.set(e.id, { from: e.from, nonce: e.t.nonce });
        if (this.dropped.size > this.max) this.dropped.delete(this.dropped.keys().next().value!);
        droppedChanged = true;
        continue;
      }
      try {
        this.checkRecipient(e.t);
        this.checkFunded(e.t, e.from);
        this.ledger.applyVerified(e.t);
      } catch { continue; }
      this.keep(e);
    }
    this.expired = { funding: fundingExpired, after: afterExpired };
    if (droppedChanged) this.droppedWriter?.write(JSON.stringify({ version: DROPPED_FILE_VERSION, dropped: [...this.dropped.keys()] }));
    return old.length - this.list.length;
  }

  /**
   * The first `n` pending transfers a block can carry, in order: they apply on top of the chain tip
   * (a proposer's block, SPEC §8.11.3). `opens` is asked, for each transfer carried, in order,
   * whether the block opens an escrow with it (escrowOpener, §9.20.4 item 1); a funding transfer
   * it does not open is left pending, and so is every later transfer of its sender (their
   * nonces follow it), for a later block. Without `opens` (an authority that holds no contracts) no
   * funding transfer is carried, nor while `fundingV2()` is false (SPEC §8.11.3; `opens` is then not
   * asked for it).
   */
  take(n: number, opens: (t: Transfer) => boolean = () => false): Transfer[] {
    const out: Transfer[] = [];
    const waiting = new Set<string>();
    const fundingV2 = this.fundingV2();
    for (const e of this.list) {
      if (out.length >= n) break;
      if (waiting.has(e.from)) continue;
      if (isFundingTransfer(e.t) && !fundingV2) { waiting.add(e.from); continue; }
      if (!opens(e.t) && isFundingTransfer(e.t)) { waiting.add(e.from); continue; }
      out.push(e.t);
    }
    return out;
  }

  /** Pending transfers, optionally only those sent by `from` (hex). */
  pending(from?: string): Transfer[] {
    return (from === undefined ? this.list : this.bySender.get(from) ?? []).map((e) => e.t);
  }

  /**
   * GET /bitcloud/transfers/pending[?from=KEY] (SPEC §6.10): the pending transfers' encodings in
   * order, 145 bytes each, from the bytes kept at `add`; the whole pool's is kept until it changes.
   */
  pendingBytes(from?: string): Buffer {
    if (from !== undefined) return Buffer.concat((this.bySender.get(from) ?? []).map((e) => e.bytes));
    return this.body ??= Buffer.concat(this.list.map((e) => e.bytes));
  }

  /** The length of `pendingBytes(from)` without building it (a HEAD request). */
  pendingLength(from?: string): number {
    return (from === undefined ? this.list : this.bySender.get(from) ?? []).length * TRANSFER_BYTES;
  }
}

/**
 * SPEC §8.11.3: the entries of a TRANSFER_DROPPED_FILE, oldest first: each a funding transfer's
 * 145 bytes in hex, with its sender (hex) and nonce. Throws, with the reason, on anything else.
 */
function decodeDropped(raw: string): [string, { from: string; nonce: number }][] {
  const doc: unknown = JSON.parse(raw);
  if (typeof doc !== 'object' || doc === null || (doc as { version?: unknown }).version !== DROPPED_FILE_VERSION) throw new Error(`not a version ${DROPPED_FILE_VERSION} dropped transfers file`);
  const list = (doc as { dropped?: unknown }).dropped;
  if (!Array.isArray(list)) throw new Error('no list of dropped transfers');
  return list.map((id: unknown, i): [string, { from: string; nonce: number }] => {
    if (typeof id !== 'string' || id.length !== TRANSFER_BYTES * 2 || !/^[0-9a-f]+$/.test(id)) throw new Error(`entry ${i} is not a transfer's ${TRANSFER_BYTES} bytes in hex`);
    const t = decodeTransfer(Buffer.from(id, 'hex'));
    if (!isFundingTransfer(t)) throw new Error(`entry ${i} is not a funding transfer`);
    return [id, { from: t.from.toString('hex'), nonce: t.nonce }];
  });
}
