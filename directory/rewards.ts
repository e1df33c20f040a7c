// SPEC.md §8.7: the authority's reward ledger. It owns the chain's lifetime on this authority:
//   - load: re-verify the stored chain (a bad block: log, keep the valid prefix);
//   - build: when a newly published consensus carries the proven values of epoch e (§8.6) and
//     the tip is before e, compute the block for e (pure: tip, e, proven values, schedule), sign
//     it with the certified signing key, hold it as pending;
//   - exchange (as for the consensus, §6.8): serve the pending block with the signatures held,
//     fetch the others' pending blocks, add each signature over a byte-identical body that
//     verifies through a certificate of its authority; a different body is counted, never merged,
//     and a signature in it by an authority that also signed the own body is reported (equivocation);
//   - transfers (§8.11.3): a pool checked against the chain, passed on to the others; the proposer
//     of a height puts its pool in the block, the others sign that body when it applies;
//   - publish at a majority of ALL configured authorities: append, store atomically, keep adding
//     late signatures to the stored block;
//   - catch up: fetch missing blocks from the others, verify them as a client would, append and
//     store them with only the signatures that count.
// An authority signs at most one body per height (pending.blk survives restarts): two different
// blocks at one height could each reach a majority only if some authority signed both.
import path from 'node:path';
import { errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { prom, type Registry } from '../src/ops/metrics';
import { verifyKeyCertificate } from '../src/dir/certificate';
import { httpRequest, PATHS } from '../src/dir/fetch';
import { rewardPage, rewardReadSignal } from '../src/client/rewards';
import { majorityOf, type AuthorityInfo } from '../src/dir/authorities';
import { certifiedRewardAuthorities, pageCertificates, type CertifiedRewardAuthorities } from '../src/dir/reward-authorities';
import type { VerifiedConsensus } from '../src/dir/types';
import { DEFAULT_SCHEDULE, type IssuanceSchedule } from '../src/bandwidth/reward';
import {
  MAX_BUNDLE_CERTIFICATES, MAX_REWARD_BUNDLE_BYTES, applyRewardBlock, blockLedger, decodeSignedRewardBlock,
  emptyChainState, encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, rewardSignatureVerifies, signRewardBlock, transfersLedger,
  type ChainState, type RewardBlock, type RewardSignature, type SignedRewardBlock,
} from '../src/bandwidth/reward-chain';
import {
  MAX_BLOCK_TRANSFERS, MAX_SIGNED_BLOCK_BYTES, REWARD_PAGE_BYTES, decodeRewardBlock, encodeRewardBlock, rewardBlockHeader, rewardPageBytes,
  shortRewardPage, splitRewardChainBundle, splitSignedRewardBlock, type RawRewardChainBundle, type SplitRewardBlock,
} from '../src/wire/reward-block';
import { decodeTransfer, isChainBound, type Transfer } from '../src/wire/transfer';
import { TRANSFER_DROPPED_FILE, TransferPool } from './transfer-pool';
import { fundingV2Enabled } from '../src/dir/consensus-params';
import { decodeEscrowCancel, encodeEscrowCancel, escrowCancelSignedBy, type EscrowCancel } from '../src/wire/escrow-cancel';
import { err } from '../src/errors';
import { escrowOpener, escrowOpsFor, escrowPayNodes, lookupOnce, paidResults, type AuditPages, type ContractLookup, type Escrow } from '../src/bandwidth/escrow';
import { AUDIT_PAGE_MAX_BYTES, AUDIT_REPORT_MAX_BYTES, verifyAuditPage, verifyAuditReport, type ReportedAudit } from '../src/storage/audit-report';
import { rewardBlockHash } from '../src/wire/reward-block';
import { RewardStore } from './reward-store';
import { SigningRound, peerFetchTimeoutMs } from './signing-round';
import type { Signer } from './vote';
import { shuffle } from '../src/crypto/primitives';

/** SPEC.md §9.20.4: pages of the proposer's audit report fetched at a time by a checking authority. */
export const REPORT_PAGE_FETCHES = 4;

/** SPEC.md §8.11.3: requests passing transfers and escrow cancels on to one other authority open at a time. */
export const TRANSFER_PASS_ON_IN_FLIGHT = 4;
/** SPEC.md §8.11.3: transfers and escrow cancels waiting to be passed on to one other authority; past it the oldest waiting is dropped. */
export const TRANSFER_PASS_ON_QUEUE = 1024;

export interface RewardLedgerOptions {
  /** The authority's data directory; the chain lives in <dataDir>/rewards/. */
  dataDir: string;
  signer: Signer;
  /** ALL configured authorities, this one included. */
  authorities: readonly AuthorityInfo[];
  periodSeconds: number;
  skewMs: number;
  log: Logger;
  /** Where bitcloud_reward_* metrics go (a private registry when absent). */
  registry?: Registry;
  schedule?: IssuanceSchedule;
  fetchTimeoutMs?: number;
  /** SPEC.md §8.7.5: how long a catch-up reads from one other authority (all its pages); default REWARD_READ_DEADLINE_MS. */
  readDeadlineMs?: number;
  /** How long a non-proposer waits for the proposer's block (SPEC §8.11.3); default max(1 s, P/2). */
  proposerWaitMs?: number;
  /** SPEC.md §8.7.5: the page byte limit, served and checked in catch-up (tests); default REWARD_PAGE_BYTES. */
  pageBytes?: number;
  now?: () => number;
}

interface Held {
  block: RewardBlock;
  body: Buffer;
  hash: Buffer;
  /** The signatures by authority fingerprint; published once appended to the chain (then more signatures rewrite the stored file). */
  round: SigningRound<RewardSignature>;
  /**
   * pending.blk holds this block (SPEC §8.7.4: stored before it is served). Until then neither the
   * pending route nor a published block carries this authority's signature, so a crash before the
   * write cannot leave a signature out there that a restart would not know of.
   */
  stored: boolean;
}

/** What is passed on to another authority (SPEC.md §8.11.3): a new transfer, or a new escrow cancel (§9.20.4). */
type PassOnKind = 'transfer' | 'cancel';
interface PassOnItem { what: PassOnKind; body: Buffer }
const PASS_ON_PATH: Record<PassOnKind, string> = { transfer: PATHS.transfers, cancel: PATHS.escrowCancel };

/**
 * A FIFO of at most `capacity` items on a ring: adding and taking the oldest cost O(1). Adding to
 * a full ring drops the oldest item and returns it (SPEC.md §8.11.3: the pass-on queue).
 */
export class DropOldestRing<T> {
  private readonly slots: (T | undefined)[] = [];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {}

  get length(): number { return this.count; }

  /** Add `item` as the newest; when full, the oldest is dropped and returned. */
  push(item: T): T | undefined {
    let dropped: T | undefined;
    if (this.count === this.capacity) dropped = this.shift();
    const i = (this.head + this.count) % this.capacity;
    if (i === this.slots.length) this.slots.push(item); else this.slots[i] = item;
    this.count++;
    return dropped;
  }

  /** Take the oldest item (undefined when empty). */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return item;
  }
}

/** SPEC.md §8.11.3: the transfers and cancels waiting to be passed on to one other authority, in arrival order. */
interface PassOn { waiting: DropOldestRing<PassOnItem>; inFlight: number }

/** A non-proposer's block for the next height, waiting for the proposer's transfers (SPEC §8.11.3). */
interface Awaiting { height: number; epoch: number; base: ReturnType<typeof nextRewardBlock>; since: number; fetching: boolean }

/**
 * SPEC.md §9.20.4: what escrow payments are computed from on this authority: the storage contracts
 * it holds and its own audit reports (the pages of `nodes`, §9.20.3; null when it holds no report).
 */
export interface EscrowSource {
  contract: ContractLookup;
  ownReport(epoch: number, nodes: ReadonlySet<string>): Promise<AuditPages | null>;
}

/**
 * The proposer's own audit report as read for the block at `height` + 1 of `epoch` (SPEC.md §9.20.4),
 * with the contract lookup of that block's proposal (lookupOnce: each contract id asked once).
 */
interface OwnReport { height: number; epoch: number; pages: AuditPages | null; contracts: ContractLookup }

const AUDITS_PATH = '/bitcloud/storage/audits';

/** What a block is computed from: its epoch, proven cells per relay, audited stored bytes per storage node. */
export interface RewardInput { epoch: number; proven: Map<string, number>; stored: Map<string, number> }

/** Proven values of a consensus (SPEC §8.6, §9.20.2): the input of the block for its proven epoch. */
export function provenInput(info: VerifiedConsensus): RewardInput | null {
  const epoch = info.provenEpoch;
  if (epoch === null || !Number.isSafeInteger(epoch) || epoch < 0) return null;
  const proven = new Map<string, number>();
  const stored = new Map<string, number>();
  for (const r of info.relays) {
    if (r.proven > 0) proven.set(r.fingerprint, r.proven);
    if ((r.stored ?? 0) > 0) stored.set(r.fingerprint, r.stored!);
  }
  return { epoch, proven, stored };
}

export class RewardLedger {
  private readonly o: RewardLedgerOptions;
  private readonly self: string;
  private readonly store: RewardStore;
  private readonly schedule: IssuanceSchedule;
  private readonly majority: number;
  private readonly now: () => number;
  private state: ChainState = emptyChainState();
  private pending: Held | null = null;
  private pendingEncoded: { held: Held; size: number; bytes: Buffer } | null = null;
  private input: RewardInput | null = null;
  /**
   * Verified certificates of configured authorities, by `fp/signing key hex`: every one kept for its
   * pair, never replaced (SPEC §8.7.5: a key may be re-certified, and a later certificate must not
   * take the place of the one that vouches for the stored signatures).
   */
  private readonly certs = new Map<string, Buffer[]>();
  private verifierCache: CertifiedRewardAuthorities | null = null;
  private catchingUp = false;
  private nextCatchUp = 0;
  private lastCatchUp = -Infinity;
  private wantCatchUp = true;
  private closed = false;
  private readonly inflight = new Set<Promise<void>>();
  private readonly m: { blocks: prom.Counter<'how'>; minted: prom.Counter; sigs: prom.Counter<'result'>; transfers: prom.Counter<'result'>; cancels: prom.Counter<'result'>; passOnDropped: prom.Counter<'to' | 'what'>; poolDropped: prom.Counter<'reason'> };
  /** SPEC.md §8.11.3: new transfers and escrow cancels being passed on, by fingerprint of the other authority. */
  private readonly passOn = new Map<string, PassOn>();
  /** Pending transfers (SPEC §8.11.3), checked against the chain state and each other. */
  readonly pool: TransferPool;
  /** SPEC.md §6.7.1, §8.11.3: the parameters of the authority's current consensus (none until it holds one). */
  private params: ReadonlyMap<string, number> = new Map();
  private awaiting: Awaiting | null = null;
  /** SPEC.md §9.20.4: payers' cancels waiting for a block, by contract id (hex). */
  private readonly cancels = new Map<string, EscrowCancel>();
  /** SPEC.md §9.20.4: contracts and audit reports for escrow operations (none: this authority carries none, and signs no block that does). */
  escrow: EscrowSource | null = null;
  /** The own audit report being read for the proposer's block (build() waits for it). */
  private readingReport = false;
  /** Told of every block of the chain held, loaded or appended (the status page's history). */
  onBlock: ((b: { height: number; epoch: number; minted: bigint }) => void) | null = null;

  constructor(o: RewardLedgerOptions) {
    this.o = o;
    this.self = o.signer.identity.toString('hex');
    this.schedule = o.schedule ?? DEFAULT_SCHEDULE;
    this.majority = majorityOf(o.authorities.length);
    this.now = o.now ?? Date.now;
    this.store = new RewardStore(o.dataDir, (what, e) => o.log.error({ err: e.message, what }, 'saving the reward chain failed'));
    const reg = o.registry ?? new prom.Registry();
    this.m = {
      blocks: new prom.Counter({ name: 'bitcloud_reward_blocks_total', help: 'Reward blocks appended to the chain (published here, caught_up from another authority, loaded from disk)', labelNames: ['how'], registers: [reg] }),
      minted: new prom.Counter({ name: 'bitcloud_reward_minted_units_total', help: 'Units minted by the blocks of the chain held', registers: [reg] }),
      sigs: new prom.Counter({ name: 'bitcloud_reward_signatures_total', help: 'Reward block signatures fetched from other authorities by result', labelNames: ['result'], registers: [reg] }),
      cancels: new prom.Counter({ name: 'bitcloud_escrow_cancels_total', help: 'Escrow cancels received (POST /bitcloud/escrow/cancel, from payers and other authorities) by result: added, held, or the refusal code', labelNames: ['result'], registers: [reg] }),
      transfers: new prom.Counter({ name: 'bitcloud_transfers_total', help: 'Transfers received (POST /bitcloud/transfers, from clients and other authorities) by result: added, held, or the refusal code', labelNames: ['result'], registers: [reg] }),
      poolDropped: new prom.Counter({ name: 'bitcloud_transfers_pool_dropped_total', help: 'Pending transfers dropped from the pool when a block landed, by reason: funding_expired (a funding transfer no block carried within 24 heights), after_funding_expired (a later transfer of its sender, which no longer applies)', labelNames: ['reason'], registers: [reg] }),
      passOnDropped: new prom.Counter({ name: 'bitcloud_transfers_pass_on_dropped_total', help: 'New transfers and escrow cancels not passed on to another authority because its queue was full (the oldest waiting is dropped), by authority name and what was dropped (transfer, cancel)', labelNames: ['to', 'what'], registers: [reg] }),
    };
    // SPEC §8.11.3: funding transfers only while the consensus held has funding-v2 = 1.
    this.pool = new TransferPool(this.state, undefined, undefined, () => fundingV2Enabled(this.params));
    for (const how of ['published', 'caught_up']) this.m.blocks.labels(how).inc(0);
    for (const reason of ['funding_expired', 'after_funding_expired']) this.m.poolDropped.labels(reason).inc(0);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new prom.Gauge({ name: 'bitcloud_reward_height', help: 'Height of the reward chain tip (-1: empty)', registers: [reg], collect() { this.set(self.state.height); } });
  }

  get height(): number { return this.state.height; }
  get tipEpoch(): number { return this.state.epoch; }
  get chain(): Readonly<ChainState> { return this.state; }
  /**
   * SPEC.md §8.7.5: changes whenever a GET /bitcloud/rewards bundle could: the tip moved, a stored
   * block was rewritten with late signatures (§8.7.4) or a certificate was stored.
   */
  get bundleVersion(): string { return `${this.state.height}:${this.store.changes}`; }
  get pendingTransfers(): number { return this.pool.size; }

  /**
   * SPEC.md §9.20.1: whether the contract `id` (hex) of `epochs` epochs is funded, so that it is
   * never evicted to make room for an upload: an escrow open for it in the chain (not refunded or
   * cancelled), or none yet and a pending transfer to its id of at least one unit per epoch, which
   * the next block opens its escrow with (§9.20.4).
   */
  contractFunded(id: string, epochs: number): boolean {
    const e = this.state.escrows.get(id);
    if (e) return e.refunded === null;
    return this.pool.largestTo(id) >= BigInt(epochs);
  }
  get pendingBlock(): { height: number; epoch: number; signers: string[]; published: boolean } | null {
    const p = this.pending;
    return p && { height: p.block.height, epoch: p.block.epoch, signers: p.round.signers(), published: p.round.published };
  }

  /** Re-verify the stored chain and restore the pending block. Call once, before anything else. */
  load(): void {
    for (const raw of this.store.readCertificatesSync()) this.addCertificate(raw, false);
    this.addCertificate(this.o.signer.certificate, true);
    let loaded = 0;
    for (const { height, raw } of this.store.readBlocksSync()) {
      try {
        const sb = applyRewardBlock(this.state, raw, this.verifier(), this.majority, { schedule: this.schedule });
        this.m.minted.inc(Number(sb.block.minted));
        this.onBlock?.(sb.block);
        loaded++;
      } catch (e) {
        const moved = this.store.rejectFromSync(height);
        this.o.log.error({ height, code: errorCode(e), err: (e as Error).message, setAside: moved.length }, 'stored reward block does not verify; keeping the valid prefix');
        break;
      }
    }
    if (loaded) this.m.blocks.labels('loaded').inc(loaded);
    // SPEC §8.11.3: the funding transfers dropped for their age before a restart are refused still.
    this.pool.keepDroppedIn(path.join(this.o.dataDir, TRANSFER_DROPPED_FILE), this.o.log);
    const p = this.store.readPendingSync();
    if (p) {
      try {
        const sb = decodeSignedRewardBlock(p);
        // The file is not trusted: keep only signatures that verify through a known certificate.
        sb.signatures = sb.signatures.filter((s) => this.verifier().accepts(s.authority, s.signingKey, sb.block) && rewardSignatureVerifies(sb.body, s));
        if (sb.block.height === this.state.height + 1 && sb.block.previousHash.equals(this.state.tipHash) && sb.signatures.some((s) => s.authority.equals(this.o.signer.identity))) {
          this.hold(sb, false).round.publish();
        }
      } catch (e) {
        this.o.log.warn({ code: errorCode(e) }, 'stored pending reward block not usable');
      }
    }
    this.o.log.info({ height: this.state.height, epoch: this.state.epoch, pending: this.pending?.block.epoch ?? null }, 'reward chain loaded');
  }

  /**
   * A consensus was first published here (or loaded at start, directory/main.ts): build and sign the
   * block for its proven epoch, if it is new. Its parameters decide from now on whether the pool takes
   * and the proposer carries funding transfers (SPEC §8.11.3, `funding-v2`).
   */
  onConsensus(info: VerifiedConsensus): void {
    this.params = info.params ?? new Map();
    const inp = provenInput(info);
    if (!inp) return;
    if (!this.input || inp.epoch > this.input.epoch) this.input = inp;
    this.build();
  }

  /** Driven by the authority's schedule tick: exchange signatures, catch up when behind. */
  tick(): void {
    if (this.closed) return;
    const p = this.pending;
    if (p && !p.round.complete && !p.round.fetchInFlight) this.track(p.round.fetchMissing());
    const aw = this.awaiting;
    if (aw && !aw.fetching) this.track(this.adopt(aw));
    const now = this.now();
    // Periodically, and sooner (at most once a second) when an exchange showed we may be behind.
    if (!this.catchingUp && ((this.wantCatchUp && now >= this.lastCatchUp + 1000) || now >= this.nextCatchUp)) {
      this.wantCatchUp = false;
      this.lastCatchUp = now;
      this.nextCatchUp = now + Math.max(1000, this.o.periodSeconds * 500);
      this.track(this.catchUp());
    }
  }

  /** GET /bitcloud/rewards/pending: the block being signed with the signatures held, or null. */
  pendingBytes(): Buffer | null {
    const p = this.pending;
    // SPEC §8.7.4: served only once pending.blk holds it.
    if (!p?.stored) return null;
    const e = this.pendingEncoded;
    if (e && e.held === p && e.size === p.round.size) return e.bytes;
    const bytes = encodeSignedRewardBlock(p.body, sortedSigs(p));
    this.pendingEncoded = { held: p, size: p.round.size, bytes };
    return bytes;
  }

  /**
   * GET /bitcloud/rewards?from=H: blocks from H and the certificates they need. SPEC.md §8.7.5: the
   * page is filled with whole blocks in order up to the page byte limit (a block that would take
   * it past the limit starts the next page, unless it is the first: a block larger than the limit
   * is a page alone), so a reader can check that a page short of the tip was full. A block the chain
   * holds that cannot be read fails the whole page with INTERNAL (logged at warn), answered 503:
   * never a page cut short, which a reader would take for the source's fault.
   */
  async bundle(from: number): Promise<Buffer> {
    const blocks: Buffer[] = [];
    const certs = new Map<string, Buffer>();
    const limit = this.o.pageBytes ?? REWARD_PAGE_BYTES;
    let size = 0;
    for (let h = from; h <= this.state.height; h++) {
      let raw: Buffer;
      try {
        raw = await this.store.readBlock(h);
      } catch (e) {
        this.o.log.warn({ height: h, code: errorCode(e), err: (e as Error).message }, 'stored reward block cannot be read; page answered 503');
        throw err('INTERNAL', `stored reward block ${h} cannot be read`, undefined, e);
      }
      if (blocks.length > 0 && size + raw.length > limit) break;
      // Only the signatures and the epoch are needed: the allocations (up to 40 MB a block) stay undecoded.
      const sb = splitSignedRewardBlock(raw);
      const { epoch } = rewardBlockHeader(sb.body);
      const need = new Map(certs);
      for (const s of sb.signatures) {
        const c = this.verifier().certificateFor(s.authority, s.signingKey, epoch);
        if (c) need.set(c.raw.toString('hex'), c.raw);
      }
      if (need.size > MAX_BUNDLE_CERTIFICATES) break;
      for (const [k, v] of need) certs.set(k, v);
      blocks.push(raw);
      size += raw.length;
    }
    return encodeRewardChainBundle(this.state.height + 1, [...certs.values()], blocks);
  }

  /** Resolves when the fetches started so far and the writes queued so far are done (tests, shutdown). */
  async whenIdle(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    await Promise.all([this.store.flush(), this.pool.flushDropped()]);
  }

  /** Stop fetching; resolves when fetches in flight and queued writes are done. */
  async close(): Promise<void> {
    this.closed = true;
    this.passOn.clear(); // transfers and cancels still waiting to be passed on are not sent
    await this.whenIdle();
  }

  // ---- building and publishing ----

  /**
   * `read`: the proposer's own audit report, read for this height and epoch. A proposer carrying
   * escrow reads it first (from disk, asynchronously: readOwnReport) and builds once it is read, with
   * the chain and the input as they are then; a report read for another height or epoch is read again.
   */
  private build(read?: OwnReport): void {
    const inp = this.input;
    if (!inp || this.closed || inp.epoch <= this.state.epoch) return; // never a block for an epoch at or before the tip
    const p = this.pending;
    if (p && p.block.height === this.state.height + 1 && p.block.epoch >= inp.epoch) return;
    const tip = this.state.height < 0 ? null : { height: this.state.height, hash: this.state.tipHash, epoch: this.state.epoch };
    // SPEC §8.11.3: the proposer of this height puts its pending transfers in the block; every
    // other authority signs the proposer's body when it carries the same allocations and its
    // transfers apply, else (no answer in time, another body) the block without transfers.
    const proposer = this.proposerOf(this.state.height + 1) === this.self;
    if (proposer && this.escrow && (read?.height !== this.state.height || read.epoch !== inp.epoch)) {
      this.readOwnReport(this.escrow, inp.epoch);
      return;
    }
    let next: ReturnType<typeof nextRewardBlock>;
    try {
      // SPEC §8.11.3, §9.20.4: a funding transfer (version 4) only with its escrow's open, so only
      // for a contract this authority holds; it and its sender's later transfers wait otherwise.
      // One lookup per contract for the whole proposal (the report's pages, the transfers, the escrow
      // operations): `read` carries it; a proposer with escrow always builds from a read (above).
      const contracts = this.escrow && read ? read.contracts : null;
      const opener = contracts ? escrowOpener(this.state.escrows, inp.epoch, contracts, (id) => this.state.balances.get(id) ?? 0n) : null;
      const transfers = proposer ? this.pool.take(MAX_BLOCK_TRANSFERS, opener ? (t) => opener(t) !== null : undefined) : [];
      next = nextRewardBlock(tip, inp.epoch, inp.proven, this.schedule, inp.stored, transfers);
      if (proposer && contracts) next = this.withEscrow(next, read!.pages, [...this.cancels.values()], contracts);
    } catch (e) {
      this.o.log.error({ epoch: inp.epoch, code: errorCode(e), err: (e as Error).message }, 'cannot build the reward block');
      return;
    }
    if (!proposer) {
      const aw = this.awaiting;
      if (p && p.block.height === next.block.height) return; // signed at this height already
      if (!aw || aw.height !== next.block.height || aw.epoch !== next.block.epoch) {
        this.awaiting = { height: next.block.height, epoch: next.block.epoch, base: next, since: this.now(), fetching: false };
      }
      return;
    }
    this.signAndHold(next, inp.epoch);
  }

  /**
   * SPEC.md §9.20.4: read the own audit report of `epoch` (the pages of the nodes its payments
   * pay) without holding the event loop, then build with it. One read at a time: a build asked for
   * meanwhile is done by the build that follows the read (which reads again if the chain moved).
   */
  private readOwnReport(src: EscrowSource, epoch: number): void {
    if (this.readingReport) return;
    const height = this.state.height;
    const contracts = lookupOnce(src.contract);
    let nodes: ReadonlySet<string>;
    try {
      nodes = escrowPayNodes(this.state.escrows, epoch, contracts);
    } catch (e) {
      this.o.log.error({ epoch, code: errorCode(e), err: (e as Error).message }, 'cannot build the reward block');
      return;
    }
    // A source that throws rather than rejecting must not leave the flag set (no block built again).
    let read: ReturnType<EscrowSource['ownReport']>;
    try { read = src.ownReport(epoch, nodes); } catch (e) { read = Promise.reject(e as Error); }
    this.readingReport = true;
    this.track(read.finally(() => { this.readingReport = false; }).then((pages) => this.build({ height, epoch, pages, contracts })));
  }

  /**
   * SPEC.md §9.20.4: the escrow operations of a block (openings by its transfers, payments of its epoch
   * by `report`, refunds of ended contracts, `cancels` of the payers) added to it: at most the 10 000
   * of §8.7.1, selected by item 4, so the body always encodes however many are due. `contracts`: the
   * block's lookup (lookupOnce of the source's, shared with the rest of its proposal or recheck).
   */
  private withEscrow(next: ReturnType<typeof nextRewardBlock>, report: AuditPages | null, cancels: readonly EscrowCancel[], contracts?: ContractLookup): ReturnType<typeof nextRewardBlock> {
    const src = this.escrow;
    if (!src) return next;
    const base = { ...next.block, escrow: [] };
    // Over the block's transfers alone: a funding transfer applies only with the opens computed here (§8.7.3 item 7).
    const ops = escrowOpsFor(this.state.escrows, transfersLedger(this.state, base), base.epoch, base.transfers ?? [], contracts ?? src.contract, report, cancels);
    if (!ops.length) return next;
    const block = { ...next.block, escrow: ops };
    blockLedger(this.state, block); // they apply by construction; a bug here must not be signed
    const body = encodeRewardBlock(block);
    return { block, body, hash: rewardBlockHash(body) };
  }

  /**
   * The proposer's signed audit report of `epoch` as payments read it (SPEC.md §9.20.3, §9.20.4):
   * its signed summary, verified, then the pages of those of `nodes` it names, each read up to
   * AUDIT_PAGE_MAX_BYTES and verified against the summary; or an error (null instead when `noneWhenAbsent` and the proposer holds no report of `epoch`: 404). SPEC.md §9.20.4: the whole
   * report, summary and pages, is read within one deadline, reportDeadlineMs() (the bound of the
   * wait for the proposer's block, §8.7.4), REPORT_PAGE_FETCHES pages at a time, so a slow or
   * hostile proposer cannot hold this authority's signing of the height for a timeout per page.
   */
  private async proposerReport(a: AuthorityInfo, epoch: number, nodes: ReadonlySet<string>, noneWhenAbsent = false): Promise<AuditPages | null> {
    const deadline = Date.now() + this.reportDeadlineMs();
    // Each request ends by the deadline at the latest (its own timeout is cut to what is left).
    const left = (): number => {
      const ms = Math.min(this.timeout(), deadline - Date.now());
      if (ms <= 0) throw err('DIR_FETCH_FAILED', `the audit report of epoch ${epoch} was not read within ${this.reportDeadlineMs()} ms`);
      return ms;
    };
    const r = await httpRequest(`${a.url}${AUDITS_PATH}?epoch=${epoch}`, { maxBytes: AUDIT_REPORT_MAX_BYTES, timeoutMs: left() });
    // `noneWhenAbsent` (a block that pays nothing): a proposer that holds no report of the epoch pays none.
    if (r.status === 404 && noneWhenAbsent) return null;
    if (r.status !== 200) throw new Error(`no audit report of epoch ${epoch} (HTTP ${r.status})`);
    const body = verifyAuditReport(JSON.parse(r.body.toString('utf8')), this.o.authorities, epoch);
    if (body.authority !== a.fingerprint) throw new Error('the audit report is another authority\'s');
    // Not audited that epoch: no results, nothing paid, no page read.
    const want = [...nodes].sort().filter((fp) => Object.hasOwn(body.nodes, fp));
    const got: (readonly ReportedAudit[])[] = [];
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (!failed && next < want.length) {
        const i = next++;
        const fp = want[i]!;
        try {
          const p = await httpRequest(`${a.url}${AUDITS_PATH}?epoch=${epoch}&node=${fp}`, { maxBytes: AUDIT_PAGE_MAX_BYTES, timeoutMs: left() });
          if (p.status !== 200) throw new Error(`no audit report page of node ${fp.slice(0, 16)}… in epoch ${epoch} (HTTP ${p.status})`);
          // Only what the payments read is kept (a page may be 16 MiB, and one is read per node paid).
          got[i] = paidResults(verifyAuditPage(body, fp, p.body));
        } catch (e) {
          failed = true; // the others start no further page
          throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(REPORT_PAGE_FETCHES, want.length) }, worker));
    return { epoch, pages: new Map(want.map((fp, i) => [fp, got[i]!])) };
  }

  /** SPEC.md §9.20.4: the proposer's audit report is read within this, the bound of §8.7.4: max(1 s, P/2). */
  private reportDeadlineMs(): number {
    return Math.max(1000, this.proposerWaitMs());
  }

  /** Sign `next` (one body per height) and hold it as the pending block. */
  private signAndHold(next: ReturnType<typeof nextRewardBlock>, epoch: number): void {
    const p = this.pending;
    this.awaiting = null;
    // One body per height (SPEC §8.7): a different block at the height already signed is refused.
    const decision = SigningRound.decide(p && { slot: p.block.height, bodyId: p.hash }, next.block.height, next.hash);
    if (decision === 'refuse') {
      if (p!.round.firstTime('self')) {
        this.o.log.warn({ height: p!.block.height, signed: p!.block.epoch, wanted: epoch }, 'already signed another reward block at this height; waiting for the chain to move on');
      }
      return;
    }
    if (decision === 'already-signed') return;
    const own = signRewardBlock(next.body, this.o.signer.identity, this.o.signer.signingKey);
    const sb: SignedRewardBlock = { block: next.block, body: next.body, hash: next.hash, signatures: [own] };
    const held = this.hold(sb, true);
    this.o.log.info({ height: next.block.height, epoch, minted: next.block.minted.toString(), allocations: next.block.allocations.size, transfers: next.block.transfers?.length ?? 0 }, 'reward block computed and signed');
    held.round.publish();
  }

  /** SPEC §8.11.3: the authority that proposes the transfers of the block at `height`. */
  proposerOf(height: number): string {
    const fps = this.o.authorities.map((a) => a.fingerprint).sort();
    return fps[height % fps.length]!;
  }

  /** How long a non-proposer waits for the proposer's block before signing one without transfers. */
  private proposerWaitMs(): number {
    return this.o.proposerWaitMs ?? Math.max(1000, this.o.periodSeconds * 500);
  }

  /** A non-proposer asks the proposer for its pending block and signs it, or, failing that, the block without transfers. */
  private async adopt(aw: Awaiting): Promise<void> {
    aw.fetching = true;
    let chosen: ReturnType<typeof nextRewardBlock> | null = null;
    let fallback: string | null = null;
    try {
      const fp = this.proposerOf(aw.height);
      const a = this.o.authorities.find((x) => x.fingerprint === fp)!;
      try {
        const r = await httpRequest(a.url + PATHS.rewardsPending, { maxBytes: MAX_SIGNED_BLOCK_BYTES, timeoutMs: this.timeout() });
        if (r.status === 200) {
          // The body is decoded (allocations and all, up to 40 MB) only when it is the own block
          // with transfers or escrow operations added: height from the header, the rest by bytes.
          const theirs = splitSignedRewardBlock(r.body);
          const th = rewardBlockHeader(theirs.body);
          if (th.height > aw.height) this.wantCatchUp = true;
          else if (th.height === aw.height) {
            // The own block is a version 1 body: past the version byte, the proposer's body starts with it.
            const base = aw.base.body;
            const sameBase = theirs.body.length >= base.length && theirs.body.subarray(1, base.length).equals(base.subarray(1));
            if (!sameBase) fallback = 'the proposer holds another block at this height';
            else {
              const tb = decodeRewardBlock(theirs.body);
              try {
                // SPEC §8.11.3: no new transfer of version 1 or 2 is signed into the chain: it names no
                // chain, so one signed on another network would verify here. (Verifiers accept them.)
                const unbound = (tb.transfers ?? []).findIndex((t) => !isChainBound(t));
                if (unbound >= 0) throw new Error(`transfer ${unbound} is of version ${tb.transfers![unbound]!.version}, which names no chain`);
                blockLedger(this.state, tb);
                // SPEC.md §9.20.4: the escrow operations must be exactly those this authority computes
                // from the contracts it holds and the proposer's own audit report; also when the block
                // carries none, so that a proposer cannot leave out the opening of a contract its
                // transfers fund (the units would sit in an account nothing can move), a refund that is
                // due, or the pays of the block's epoch.
                if (this.escrow) {
                  // One lookup per contract for the whole recheck (the pages to read, the operations).
                  const contracts = lookupOnce(this.escrow.contract);
                  // Only the pages of the nodes whose pay it computes (SPEC.md §9.20.4 item 2).
                  const nodes = escrowPayNodes(this.state.escrows, tb.epoch, contracts);
                  // SPEC.md §9.20.4 item 2: the report is read whenever a funded contract it holds is due
                  // for pay in the block's epoch, not only when the block pays: a block without the pays
                  // the report gives is refused as one with other pays is. A report that cannot be read
                  // or verified fails the recheck as for a block that pays (§8.7.4: the block without
                  // transfers and escrow operations is signed). A block that pays nothing, from a proposer
                  // that holds no report of the epoch (404: it did not audit it), is computed without one,
                  // as the proposer built it: item 2 pays only when that report exists.
                  const pays = tb.escrow?.some((op) => op.kind === 'pay') ?? false;
                  const report = pays || nodes.size > 0 ? await this.proposerReport(a, tb.epoch, nodes, !pays) : null;
                  // The payers' cancels are self-authenticating (signed by the payer the chain names): the
                  // proposer's are taken as they are, and checked by blockLedger above.
                  const cancels = (tb.escrow ?? []).flatMap((op) => (op.kind === 'cancel' ? [{ contract: op.contract, signature: op.signature }] : []));
                  const want = this.withEscrow({ ...aw.base, block: { ...tb, escrow: [] } }, report, cancels, contracts);
                  const same = want.block.escrow?.length ? want.body.equals(theirs.body) : !tb.escrow?.length;
                  if (!same) throw new Error('its escrow operations are not those the contracts and its audit report give');
                } else if (tb.escrow?.length) {
                  throw new Error('its escrow operations are not those the contracts and its audit report give');
                }
                chosen = { block: tb, body: theirs.body, hash: theirs.hash };
              } catch (e) {
                fallback = `the proposer's transfers or escrow operations do not apply (${(e as Error).message})`;
              }
            }
          }
        }
      } catch (e) {
        this.o.log.debug({ from: a.name, code: errorCode(e) }, 'proposer\'s pending block fetch failed');
      }
      if (this.closed || this.awaiting !== aw || this.state.height + 1 !== aw.height) return;
      if (!chosen && !fallback && this.now() - aw.since < this.proposerWaitMs()) return;
      if (fallback) this.o.log.warn({ height: aw.height, reason: fallback }, 'signing the reward block without transfers');
      else if (!chosen) this.o.log.info({ height: aw.height }, 'no block from the proposer in time; signing the reward block without transfers');
      this.signAndHold(chosen ?? aw.base, aw.epoch);
    } finally {
      aw.fetching = false;
    }
  }

  /**
   * POST /bitcloud/transfers (SPEC §8.11.3): decode, check against the chain and the pool, keep,
   * and pass a new transfer on to the other authorities. Throws TRANSFER_* on refusal.
   */
  submitTransfer(bytes: Buffer): { result: 'added' | 'held'; transfer: Transfer } {
    let result: 'added' | 'held';
    let t: Transfer;
    try {
      t = decodeTransfer(bytes);
      result = this.pool.add(t);
    } catch (e) {
      this.m.transfers.labels(errorCode(e)).inc();
      throw e;
    }
    this.m.transfers.labels(result).inc();
    if (result === 'added') {
      this.o.log.info({ from: t.from.toString('hex').slice(0, 16), nonce: t.nonce, amount: t.amount.toString(), pending: this.pool.size }, 'transfer pending');
      for (const a of this.o.authorities) if (a.fingerprint !== this.self) this.passOnTo(a, { what: 'transfer', body: bytes });
    }
    return { result, transfer: t };
  }

  /**
   * SPEC.md §8.11.3, §9.20.4: queue a new transfer or escrow cancel for another authority, both in
   * one queue. At most TRANSFER_PASS_ON_IN_FLIGHT requests to it are open; at most
   * TRANSFER_PASS_ON_QUEUE wait, and past that the oldest waiting is dropped (counted): the authority
   * receives it from the client or with the next block anyway. A failed request is not retried.
   */
  private passOnTo(a: AuthorityInfo, item: PassOnItem): void {
    if (this.closed) return;
    let q = this.passOn.get(a.fingerprint);
    if (!q) this.passOn.set(a.fingerprint, (q = { waiting: new DropOldestRing(TRANSFER_PASS_ON_QUEUE), inFlight: 0 }));
    const dropped = q.waiting.push(item);
    if (dropped) this.m.passOnDropped.labels(a.name, dropped.what).inc();
    this.pumpPassOn(a, q);
  }

  private pumpPassOn(a: AuthorityInfo, q: PassOn): void {
    while (!this.closed && q.inFlight < TRANSFER_PASS_ON_IN_FLIGHT && q.waiting.length) {
      const { what, body } = q.waiting.shift()!;
      q.inFlight++;
      // The next one starts before this job leaves `inflight`, so whenIdle() waits for the queue to drain.
      this.track(httpRequest(a.url + PASS_ON_PATH[what], { method: 'POST', body, maxBytes: 4096, timeoutMs: this.timeout() }).then((r) => {
        if (r.status !== 200) this.o.log.debug({ to: a.name, what, status: r.status }, 'not taken by another authority');
      }, (e) => this.o.log.debug({ to: a.name, what, code: errorCode(e) }, 'passing on to another authority failed')).finally(() => {
        q.inFlight--;
        this.pumpPassOn(a, q);
      }));
    }
  }

  /**
   * POST /bitcloud/escrow/cancel (SPEC.md §9.20.4): decode, check against the chain's escrow book
   * (ESCROW_UNKNOWN, ESCROW_CLOSED: cancelled or refunded already, ESCROW_CONTRACT_ENDED: the chain
   * holds a block of its last epoch, so no later block can carry it, ESCROW_NOT_PAYER), keep it for
   * the next block this authority proposes, and pass a new one on to the other authorities through
   * the queue transfers take (§8.11.3: at most 4 requests open and 1 024 waiting per authority).
   */
  submitCancel(bytes: Buffer): { result: 'added' | 'held'; cancel: EscrowCancel; payer: string } {
    let c: EscrowCancel;
    let e: Escrow | undefined;
    try {
      c = decodeEscrowCancel(bytes);
      e = this.state.escrows.get(c.contract);
      if (!e) throw err('ESCROW_UNKNOWN', `no escrow is open for contract ${c.contract.slice(0, 16)}…`);
      if (e.refunded !== null) throw err('ESCROW_CLOSED', `contract ${c.contract.slice(0, 16)}… was ${e.cancelledAt !== undefined ? 'cancelled' : 'refunded'} already`);
      // SPEC.md §9.20.4: a cancel applies only in a block of an epoch before end_epoch, and every block
      // still to come is of an epoch after the tip's: once the tip's is end_epoch − 1 or later the
      // refund returns the rest, and a cancel taken would never be carried.
      if (this.state.epoch >= e.endEpoch - 1) {
        throw err('ESCROW_CONTRACT_ENDED', `contract ${c.contract.slice(0, 16)}… ended (its last epoch, ${e.endEpoch - 1}, is in the chain): its rest is refunded, not cancelled`);
      }
      if (!escrowCancelSignedBy(c, e.payer)) throw err('ESCROW_NOT_PAYER', `the cancel is not signed by the payer of contract ${c.contract.slice(0, 16)}…`);
      if (!this.cancels.has(c.contract) && this.cancels.size >= MAX_BLOCK_TRANSFERS) throw err('TRANSFER_POOL_FULL', 'too many cancels are waiting for a block already; send again later');
    } catch (x) {
      // SPEC.md §8.7.6 metrics: refusals counted by code, as transfers are.
      this.m.cancels.labels(errorCode(x)).inc();
      throw x;
    }
    if (this.cancels.has(c.contract)) { this.m.cancels.labels('held').inc(); return { result: 'held', cancel: c, payer: e.payer }; }
    this.m.cancels.labels('added').inc();
    this.cancels.set(c.contract, c);
    this.o.log.info({ contract: c.contract.slice(0, 16), pending: this.cancels.size }, 'escrow cancel pending');
    const body = encodeEscrowCancel(c);
    for (const a of this.o.authorities) if (a.fingerprint !== this.self) this.passOnTo(a, { what: 'cancel', body });
    return { result: 'added', cancel: c, payer: e.payer };
  }

  /** Cancels waiting for a block. */
  get pendingCancels(): number { return this.cancels.size; }

  /** GET /bitcloud/transfers/pending[?from=KEY]: the pool's transfers in order, 145 bytes each. */
  pendingTransfersBytes(from?: string): Buffer {
    return this.pool.pendingBytes(from);
  }

  /** The length of `pendingTransfersBytes(from)`, for HEAD, without building the body. */
  pendingTransfersLength(from?: string): number {
    return this.pool.pendingLength(from);
  }

  /** Hold `sb` as the pending block; its signatures must include this authority's own. */
  private hold(sb: SignedRewardBlock, save: boolean): Held {
    const byFp = sb.signatures.map((s) => [s.authority.toString('hex'), s] as const);
    const own = byFp.find(([fp]) => fp === this.self)![1];
    const round = new SigningRound<RewardSignature>({
      slot: sb.block.height, bodyId: sb.hash, authorities: this.o.authorities, self: this.self, own, held: byFp, timeoutMs: this.timeout(),
      hooks: {
        fetch: (a, _round, timeoutMs) => this.fetchPending(held, a, timeoutMs),
        publish: () => held.stored && this.publish(held),
        fetchFailed: (a, e) => {
          this.m.sigs.labels(errorCode(e)).inc();
          this.o.log.debug({ from: a.name, code: errorCode(e) }, 'reward signature fetch failed');
        },
      },
    });
    const held: Held = { block: sb.block, body: sb.body, hash: sb.hash, round, stored: !save };
    this.pending = held;
    this.pendingEncoded = null;
    if (save) {
      this.track(this.store.savePending(encodeSignedRewardBlock(sb.body, sb.signatures)).then((ok) => {
        if (!ok) return; // reported by the store; this block is never served, the chain moves on without it
        held.stored = true;
        if (this.pending !== held) return;
        // Caught up meanwhile (published elsewhere): the stored block now takes the own signature too.
        if (held.round.published) this.publish(held);
        else held.round.publish();
      }));
    }
    return held;
  }

  /** Called by the round once a majority signed, and again when more signatures arrive. */
  private publish(p: Held): boolean {
    if (this.pending !== p || this.closed) return false;
    const raw = encodeSignedRewardBlock(p.body, sortedSigs(p));
    if (!p.round.published) {
      try {
        // Self-check: append only what a client accepts.
        applyRewardBlock(this.state, raw, this.verifier(), this.majority, { schedule: this.schedule });
      } catch (e) {
        this.o.log.error({ height: p.block.height, code: errorCode(e), err: (e as Error).message }, 'assembled reward block does not verify; not publishing');
        return false;
      }
      this.appended(p.block, 'published', p.round.entries().map(([fp]) => fp));
    }
    this.store.saveBlock(p.block.height, raw);
    return true;
  }

  private appended(b: RewardBlock, how: 'published' | 'caught_up', signers: string[]): void {
    const dropped = this.pool.rebase(this.state);
    const { funding: fundingExpired, after: afterExpired } = this.pool.expired;
    if (fundingExpired) {
      // SPEC §8.11.3: funding transfers no block carried within FUNDING_PENDING_HEIGHTS heights (no proposer held their contract).
      this.m.poolDropped.labels('funding_expired').inc(fundingExpired);
      this.m.poolDropped.labels('after_funding_expired').inc(afterExpired);
      this.o.log.info({ height: b.height, fundingExpired, afterExpired, pending: this.pool.size }, 'funding transfers dropped from the pool: no block carried them in time');
    }
    for (const [id] of this.cancels) if (this.state.escrows.get(id)?.refunded !== null) this.cancels.delete(id);
    if (this.awaiting && this.awaiting.height <= this.state.height) this.awaiting = null;
    this.m.blocks.labels(how).inc();
    this.m.minted.inc(Number(b.minted));
    this.onBlock?.(b);
    this.o.log.info({ height: b.height, epoch: b.epoch, minted: b.minted.toString(), allocations: b.allocations.size, transfers: b.transfers?.length ?? 0, signers: signers.length, how, poolDropped: dropped }, 'reward block appended');
  }

  // ---- exchange ----

  /** One peer's pending block (GET /bitcloud/rewards/pending): the signatures over our body that verify. */
  private async fetchPending(p: Held, a: AuthorityInfo, timeoutMs: number): Promise<[string, RewardSignature][]> {
    const r = await httpRequest(a.url + PATHS.rewardsPending, { maxBytes: MAX_SIGNED_BLOCK_BYTES, timeoutMs });
    if (r.status !== 200 || this.closed) return [];
    const theirs = splitSignedRewardBlock(r.body);
    const own = theirs.signatures.find((s) => s.authority.equals(a.identity));
    // SPEC §8.7.4: its certificate is fetched only for a signature over our body that verifies.
    if (own && theirs.body.equals(p.body) && !this.verifier().accepts(own.authority, own.signingKey, p.block) && rewardSignatureVerifies(p.body, own)) {
      await this.fetchCertificate(a, own, p.block);
    }
    return this.merge(p, theirs, a.name);
  }

  /** `theirs` is merged only when its body is the own one: another body is not decoded, its header is read. */
  private merge(p: Held, theirs: SplitRewardBlock, from: string): [string, RewardSignature][] {
    if (!theirs.body.equals(p.body)) {
      const tb = rewardBlockHeader(theirs.body);
      if (tb.height === p.block.height) this.findEquivocation(p, theirs, tb.epoch);
      if (tb.height < p.block.height || (tb.height === p.block.height && tb.epoch < p.block.epoch)) { this.m.sigs.labels('stale').inc(); return []; }
      if (tb.height > this.state.height + 1) this.wantCatchUp = true;
      if (tb.height === p.block.height) {
        // Same height, another body: other proven values or another tip. Counted, never merged.
        this.m.sigs.labels('body_mismatch').inc();
        this.wantCatchUp = true;
        if (p.round.firstTime(from)) {
          this.o.log.warn({ from, height: tb.height, theirs: theirs.hash.toString('hex'), ours: p.hash.toString('hex'), theirEpoch: tb.epoch, ourEpoch: p.block.epoch }, 'authority holds a different reward block');
        }
      }
      return [];
    }
    const out = new Map<string, RewardSignature>();
    for (const s of theirs.signatures) {
      const fp = s.authority.toString('hex');
      if (p.round.has(fp) || out.has(fp)) continue;
      if (!this.verifier().accepts(s.authority, s.signingKey, p.block)) { this.m.sigs.labels('unknown_key').inc(); continue; }
      if (!rewardSignatureVerifies(p.body, s)) { this.m.sigs.labels('bad').inc(); continue; }
      out.set(fp, s);
      this.m.sigs.labels('added').inc();
    }
    return [...out];
  }

  /**
   * SPEC §8.7.4: `theirs` is another body at the pending height. A signature in it that counts and
   * verifies, by an authority whose signature over the own body is held, shows that authority
   * signed two bodies at one height (equivocation): counted (`equivocation`) and logged at error,
   * once per authority and height. Only authorities held are looked at (at most N signatures
   * verified per answer), and one found is not verified again.
   */
  private findEquivocation(p: Held, theirs: SplitRewardBlock, epoch: number): void {
    for (const s of theirs.signatures) {
      const fp = s.authority.toString('hex');
      const key = `equivocation:${fp}`;
      if (!p.round.has(fp) || p.round.noted(key)) continue;
      if (!this.verifier().certificateFor(s.authority, s.signingKey, epoch) || !rewardSignatureVerifies(theirs.body, s)) continue;
      p.round.firstTime(key);
      this.m.sigs.labels('equivocation').inc();
      const name = this.o.authorities.find((a) => a.fingerprint === fp)?.name ?? fp.slice(0, 16);
      this.o.log.error({ authority: name, height: p.block.height, ours: p.hash.toString('hex'), theirs: theirs.hash.toString('hex') }, 'authority signed two different reward blocks at one height');
    }
  }

  /** Fetch `a`'s certificate; kept only when it vouches for `sig` on `block` (SPEC §8.7.4, §8.7.6). */
  private async fetchCertificate(a: AuthorityInfo, sig: RewardSignature, block: RewardBlock): Promise<void> {
    const r = await httpRequest(a.url + PATHS.certificate, { maxBytes: 512, timeoutMs: this.timeout() });
    if (r.status !== 200) return;
    const c = verifyKeyCertificate(r.body, this.now(), this.o.skewMs);
    if (!c.identity.equals(a.identity) || !this.offered([c.raw]).accepts(sig.authority, sig.signingKey, block)) return;
    this.addCertificate(c.raw, true);
  }

  /** A verifier over the certificates held and `extra` (offered by a peer, not kept by this). */
  private offered(extra: readonly Buffer[]): CertifiedRewardAuthorities {
    return certifiedRewardAuthorities(this.o.authorities, [...[...this.certs.values()].flat(), ...extra], { periodSeconds: this.o.periodSeconds, skewMs: this.o.skewMs });
  }

  /**
   * SPEC §8.7.4, §8.7.5: of the certificates a peer offered with an appended block, keep those that
   * vouch for one of its signatures no certificate held vouches for. (The block was checked: every
   * signature that counts verifies.) Others are not kept: they vouch for nothing stored.
   */
  private keepVouching(sb: SignedRewardBlock, offered: CertifiedRewardAuthorities): void {
    for (const s of sb.signatures) {
      if (this.verifier().accepts(s.authority, s.signingKey, sb.block)) continue;
      const c = offered.certificateFor(s.authority, s.signingKey, sb.block.epoch);
      if (c) this.addCertificate(c.raw, true);
    }
  }

  private addCertificate(raw: Buffer, save: boolean): void {
    let c: ReturnType<typeof verifyKeyCertificate>;
    try { c = verifyKeyCertificate(raw); } catch { return; }
    if (!this.o.authorities.some((a) => a.identity.equals(c.identity))) return;
    const key = `${c.fingerprint}/${c.signingKey.toString('hex')}`;
    const kept = this.certs.get(key) ?? [];
    if (kept.some((k) => k.equals(c.raw))) return;
    kept.push(c.raw);
    this.certs.set(key, kept);
    this.verifierCache = null;
    if (save) this.store.saveCertificate(c.fingerprint, c.signingKey.toString('hex'), c.raw);
  }

  private verifier(): CertifiedRewardAuthorities {
    return (this.verifierCache ??= certifiedRewardAuthorities(this.o.authorities, [...this.certs.values()].flat(), { periodSeconds: this.o.periodSeconds, skewMs: this.o.skewMs }));
  }

  // ---- catch-up ----

  private async catchUp(): Promise<void> {
    this.catchingUp = true;
    const limit = this.o.pageBytes ?? REWARD_PAGE_BYTES;
    try {
      for (const a of shuffle(this.o.authorities.filter((x) => x.fingerprint !== this.self))) {
        let last: { bytes: number; certificates: readonly Uint8Array[] } | null = null;
        // SPEC §8.7.5: the pages from one authority together get the read deadline, each page its
        // fetch timeout (the whole request, body included); past either the blocks appended so far
        // stay and the next authority is read.
        const read = rewardReadSignal(this.o.readDeadlineMs);
        const pageMs = this.timeout();
        for (let pages = 0; pages < 10_000 && !this.closed; pages++) {
          const from = this.state.height + 1;
          let bundle: RawRewardChainBundle;
          try {
            const r = await rewardPage(a.name, read, pageMs, (signal) => httpRequest(`${a.url}${PATHS.rewards}?from=${from}`, { maxBytes: MAX_REWARD_BUNDLE_BYTES, timeoutMs: pageMs + 1000, signal }));
            if (r.status !== 200 || this.closed) break;
            // SPEC §8.7.4: the layout only; each block is split, checked and decoded when its turn comes.
            bundle = splitRewardChainBundle(r.body);
          } catch (e) {
            const code = errorCode(e);
            if (code === 'REWARD_FETCH_TIMEOUT') this.o.log.warn({ from: a.name, height: from, code, err: (e as Error).message }, 'reward chain read from another authority cut at its deadline');
            else this.o.log.debug({ from: a.name, code }, 'reward chain fetch failed');
            break;
          }
          if (bundle.blocks.length === 0 || this.state.height + 1 !== from) break;
          // SPEC §8.7.5: a page short of the other's tip must have been full (its blocks and this
          // page's first exceed the page limit); a short one ends the reading from that authority,
          // so one block per page cannot hold the catch-up for a request per block.
          const short = last && shortRewardPage(last, bundle.blocks.at(0)!, limit);
          if (short) {
            this.m.blocks.labels('refused_REWARD_MALFORMED').inc();
            this.o.log.warn({ from: a.name, height: from, code: 'REWARD_MALFORMED', err: `${a.name} sent a short page: ${short}` }, 'reward block from another authority refused');
            break;
          }
          // SPEC §8.7.4: the bundle's certificates are helper data for its blocks; one is kept only
          // once it vouched for a signature of a block appended.
          if (!this.applyFetched(bundle.blocks, a.name, this.offered(bundle.certificates))) break;
          if (this.state.height + 1 >= bundle.chainLength) break;
          last = { bytes: rewardPageBytes(bundle.blocks), certificates: pageCertificates(bundle.blocks, bundle.certificates) };
        }
      }
      this.build();
    } finally {
      this.catchingUp = false;
    }
  }

  /**
   * Verify and append blocks fetched from another authority; false at the first one refused. A
   * block's header (height, link, epoch) and signatures are checked before its body is decoded, and
   * no block after a refused one is read (SPEC §8.7.3, §8.7.4): a bundle of 64 MiB behind a bad first
   * block, or a block nobody signed, costs no body decode.
   */
  private applyFetched(blocks: Iterable<Buffer>, from: string, offered: CertifiedRewardAuthorities): boolean {
    for (const raw of blocks) {
      let sb: SignedRewardBlock;
      let height: number | undefined;
      try {
        const split = splitSignedRewardBlock(raw);
        const header = rewardBlockHeader(split.body);
        height = header.height;
        // SPEC §8.7.3: the header, then the signatures, and only then the body is decoded.
        sb = applyRewardBlock(this.state, split, offered, this.majority, { schedule: this.schedule });
      } catch (e) {
        this.m.blocks.labels(`refused_${errorCode(e)}`).inc();
        this.o.log.warn({ from, height, code: errorCode(e), err: (e as Error).message }, 'reward block from another authority refused');
        return false;
      }
      this.keepVouching(sb, offered);
      const p = this.pending;
      // SPEC §8.7.4: only the signatures that count are stored (those verify: the block passed). An
      // entry that does not count now (a key no certificate held vouches for, a garbled signature
      // under it) would count once a certificate for that key arrives, and then fail the stored
      // block for every reader and for this authority's own reload (REWARD_BAD_SIGNATURE).
      let signers = sb.signatures.filter((s) => offered.accepts(s.authority, s.signingKey, sb.block));
      if (p && p.block.height === sb.block.height) {
        if (p.hash.equals(sb.hash)) {
          // Our own pending block, published elsewhere first: keep our signature on it too. Its other
          // signatures are merged as the exchange merges them (SPEC §8.7.4: those that count and
          // verify): an entry that does not count must not stand in for its authority's real one.
          for (const [fp, s] of this.merge(p, sb, from)) p.round.add(fp, s);
          // SPEC §8.7.4: the own signature goes out only once pending.blk holds the block; the
          // fetched block has a majority without it, and hold() adds it when the write is done.
          signers = p.stored ? sortedSigs(p) : sortedSigs(p).filter((s) => s.authority.toString('hex') !== this.self);
        } else {
          this.pending = null;
          this.pendingEncoded = null;
        }
      } else if (p && p.block.height < sb.block.height && !p.round.published) {
        this.pending = null;
        this.pendingEncoded = null;
      }
      this.appended(sb.block, 'caught_up', signers.map((s) => s.authority.toString('hex')));
      this.store.saveBlock(sb.block.height, encodeSignedRewardBlock(sb.body, signers));
      if (p && this.pending === p) p.round.markPublished();
    }
    return true;
  }

  private track(job: Promise<void>): void {
    const t = job.catch((e) => this.o.log.error({ err: (e as Error).message }, 'reward ledger step failed')).finally(() => this.inflight.delete(t));
    this.inflight.add(t);
  }

  private timeout(): number {
    return this.o.fetchTimeoutMs ?? peerFetchTimeoutMs(this.o.periodSeconds);
  }
}

function sortedSigs(p: Held): RewardSignature[] {
  return p.round.signatures().sort((a, b) => Buffer.compare(a.authority, b.authority));
}

