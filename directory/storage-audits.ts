// SPEC.md §9.20 on an authority: storage contracts and the audits of every epoch. Owns (under
// <dataDir>/storage/):
//   contracts/<id hex>.bin   accepted contracts (§9.20.1), written atomically before the upload is
//                            answered; removed KEPT_REPORTS epochs after their last one
//   audits/<epoch>.json      this authority's signed report (summary) of each recent epoch (§9.20.3)
//   audits/<epoch>/<fp>.json the pages of that report, one per audited node, written before the
//                            summary (the summary is what makes an epoch's report held)
// Each epoch e, once (at 3/10 of the period), the authority audits every (node, share) that an
// active contract names (at most PER_NODE_AUDITS per node, chosen at random, funded contracts' pairs first), over a 3-hop circuit
// that ends at the node (§9.13.1; a rendezvous circuit to a hidden node, §9.21.5), one challenge
// per share with a fresh nonce (§9.17). The vote for period k carries, per storage
// node, the bytes its passing shares of epoch k − 2 hold (§6.5 `stored`).
import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { err, errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { prom, type Registry } from '../src/ops/metrics';
import { fsyncDir, writeFileAtomic, mkdirDurableSync } from '../src/ops/fsutil';
import { blake2b, randomBytes, shuffle } from '../src/crypto/primitives';
import type { VerifiedConsensus, ConsensusRelay } from '../src/dir/types';
import { connectStorageDirect } from '../src/storage/direct';
import { CircuitManager } from '../src/client/circuit-manager';
import type { ClientCircuit } from '../src/client/client-circuit';
import { mirrorDescriptorFetcher, openHiddenStorageStream } from '../src/hidden/client';
import { StorageChannel } from '../src/storage/channel';
import { auditRetryingBusy, auditShare, type AuditResult, type ChallengeSender } from '../src/storage/auditor';
import { DEFAULT_AUDIT_BLOCKS, challengeBlocks } from '../src/storage/audit';
import { AUDIT_PAGE_MAX_RESULTS, AUDIT_REPORT_VERSION, buildAuditReport, signAuditReport, storedBytes, type AuditPage, type AuditReportBody, type ReportedAudit, type SignedAuditReport } from '../src/storage/audit-report';
import { paidResults, type AuditPages } from '../src/bandwidth/escrow';
import { CONTRACT_ENTRY_BYTES, CONTRACT_HEADER_BYTES, CONTRACT_MAX_LEAD_EPOCHS, decodeContract, type StorageContract } from '../src/wire/storage-contract';
import type { Signer } from './vote';

/** Contracts an authority holds at most (each up to 4096 entries). */
export const MAX_CONTRACTS = 10_000;
/**
 * SPEC.md §9.20.1: entries an authority holds at most over all its contracts (64 full contracts'
 * worth, 26 MB of contract bytes), so that uploads anyone may send cannot exhaust its memory long
 * before MAX_CONTRACTS is reached.
 */
export const CONTRACT_ENTRY_LIMIT = 262_144;
/** Shares audited per node per epoch, at most (the rest of its shares are not credited that epoch; a page holds them, §9.20.3). */
export const PER_NODE_AUDITS = AUDIT_PAGE_MAX_RESULTS;
/**
 * Reports kept, in memory and on disk: those of the last 6 epochs, e − 5..e when the newest is e
 * (SPEC.md §9.20.3; the vote for k reads k − 2).
 */
const KEPT_REPORTS = 6;
/** Whether the report of `epoch` is still kept when the newest epoch is `e`. */
const reportKept = (epoch: number, e: number): boolean => epoch > e - KEPT_REPORTS;
/**
 * A node's challenges in one round end within this many times the per-challenge bound (SPEC.md
 * §9.20.2); the pairs not done by then fail with STORAGE_TIMEOUT.
 */
export const NODE_DEADLINE_BOUNDS = 4;
/**
 * SPEC.md §9.20.3: bytes of report pages kept in memory at most, over all epochs (a page is at most
 * AUDIT_PAGE_MAX_BYTES = 16 MiB), so that readers of one page share one copy of it.
 */
export const PAGE_CACHE_BYTES = 64 * 1024 * 1024;
/** When in the epoch the audits run (fraction of the period). */
const AUDIT_AT = 0.3;

/** How an audit reaches a node: a challenge sender and a way to close it. */
export type AuditConnector = (node: ConsensusRelay, timeoutMs: number) => Promise<{ send: ChallengeSender; close(): void }>;

/**
 * A direct storage session to the node's storage port (SPEC.md §9.13.2). Not what authorities use
 * (§9.20.2: audits go over circuits); kept for tests and benchmarks that run without relays.
 */
export const directAuditConnector: AuditConnector = async (node, timeoutMs) => {
  const socket = await connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs });
  const ch = new StorageChannel(socket);
  return { send: (req) => ch.request(req), close: () => ch.close() };
};

/**
 * SPEC.md §9.20.2: audits reach every node over circuits the authority builds like a client
 * (anonymous links, no guard state): a fresh 3-hop circuit guard → middle → node with one
 * BEGIN_STORAGE stream (§9.13.1), destroyed after the node's audits, so the node sees a circuit from
 * a middle relay and never the authority's address; a hidden node over a rendezvous circuit
 * (§9.21.5, its descriptor from a relay mirror over a 3-hop circuit). `relays`: the authority's
 * current consensus. A circuit not built within the connection bound fails the node's audits with
 * STORAGE_TIMEOUT (and is destroyed when it completes later).
 */
export function circuitAuditConnector(
  relays: () => readonly ConsensusRelay[] | null, o: { enforceDistinctSubnets: boolean; log?: Logger; registry?: Registry },
): { connect: AuditConnector; close(): Promise<void> } {
  // With a registry, the authority's /metrics count these circuits (bitcloud_client_circuits_built_total, …).
  const manager = new CircuitManager({ relays: () => relays(), enforceDistinctSubnets: o.enforceDistinctSubnets, preemptiveCircuits: 0, log: o.log, registry: o.registry });
  const buildTo = (r: ConsensusRelay) => manager.buildCircuitTo(r);
  const fetchDescriptor = mirrorDescriptorFetcher({ relays, buildTo });
  return {
    connect: async (node, timeoutMs) => {
      if (node.roles.includes('hidden')) {
        const stream = await openHiddenStorageStream({ node, relays, buildTo, fetchDescriptor, timeoutMs: Math.max(timeoutMs, 10_000) });
        const ch = new StorageChannel(stream);
        return { send: (req) => ch.request(req), close: () => { ch.close(); stream.destroy(); } };
      }
      let late = false;
      const building = manager.buildCircuitTo(node);
      building.then((c) => { if (late) c.destroy(); }, () => {});
      let circ: ClientCircuit;
      try {
        circ = await withTimeout(building, timeoutMs);
      } catch (e) {
        late = true;
        throw e;
      }
      try {
        const stream = await withTimeout(manager.openStream(circ, { kind: 'begin_storage' }), timeoutMs);
        const ch = new StorageChannel(stream);
        return { send: (req) => ch.request(req), close: () => { ch.close(); stream.destroy(); circ.destroy(); } };
      } catch (e) {
        circ.destroy();
        throw e;
      }
    },
    close: () => manager.close(),
  };
}

export interface StorageAuditsOptions {
  dataDir: string;
  signer: Signer;
  periodSeconds: number;
  log: Logger;
  registry?: Registry;
  now?: () => number;
  connect?: AuditConnector;
  /** Bound on one node's connection and on each challenge (default: P/4, clamped to 2–30 s). */
  timeoutMs?: number;
  perNodeAudits?: number;
  /** Waits (ms) before asking again a challenge answered STORAGE_BUSY (default 1 s, 2 s, 4 s; SPEC.md §9.20.2). */
  auditBusyRetryMs?: readonly number[];
  /** Contracts held at most (default MAX_CONTRACTS). */
  maxContracts?: number;
  /** Entries held at most over all contracts (default CONTRACT_ENTRY_LIMIT). */
  maxContractEntries?: number;
  /**
   * SPEC.md §9.20.1: whether the contract `id` (hex) of `epochs` epochs is funded (an escrow open
   * for it in the reward chain, or its opening in the pending pool, §9.20.4): a funded contract is
   * never evicted to make room for an upload. Absent: none is funded.
   */
  funded?: FundedLookup;
}

/** SPEC.md §9.20.1: is the contract `id` (hex), of `epochs` epochs, funded (§9.20.4)? */
export type FundedLookup = (id: string, epochs: number) => boolean;

/**
 * A contract held: its bytes as uploaded (checked by decodeContract once, when accepted or loaded)
 * and its epochs, decoded again only when needed, so that a held entry costs its 100 bytes and not
 * three Buffer objects.
 */
interface Held { raw: Buffer; startEpoch: number; endEpoch: number; entries: number }

/** The entries of a contract's bytes that decodeContract accepted: (offset, node hex, share id hex). */
function* heldEntries(raw: Buffer): Generator<{ off: number; fp: string; share: string }> {
  for (let off = CONTRACT_HEADER_BYTES; off < raw.length; off += CONTRACT_ENTRY_BYTES) {
    yield { off, fp: raw.toString('hex', off, off + 32), share: raw.toString('hex', off + 32, off + 64) };
  }
}

export class StorageAudits {
  private readonly o: StorageAuditsOptions;
  private readonly P: number;
  private readonly now: () => number;
  private readonly dir: string;
  /**
   * Held contracts in the order this authority stored them (a Map keeps insertion order; at load,
   * by file time): the oldest unfunded ones are evicted first (SPEC.md §9.20.1).
   */
  private readonly contracts = new Map<string, Held>();
  /** Forgotten contracts' files being removed, by id: a new write of the same id waits for it. */
  private readonly removing = new Map<string, Promise<void>>();
  /** Ids being written to disk, with the write: counted against the limit while it is awaited. */
  private readonly writing = new Map<string, Promise<void>>();
  /** Entries of the contracts held and of those being written (SPEC.md §9.20.1 entry limit). */
  private entriesHeld = 0;
  private entriesWriting = 0;
  /**
   * Reports kept (KEPT_REPORTS): the bytes credited per node (for the votes), the signed summary
   * once it and its pages are on disk (null before, or when saving failed: then nothing of that
   * epoch is served), and the summary's JSON as served once it was asked for. Pages are read from
   * disk when served (then kept in pageCache) or when payments read them (SPEC.md §9.20.3).
   */
  private readonly reports = new Map<number, { signed: SignedAuditReport | null; stored: Map<string, number>; text?: Buffer }>();
  /**
   * SPEC.md §9.20.3: pages as served, by `<epoch>/<fp>`, at most PAGE_CACHE_BYTES in all, and the
   * reads under way, so that readers of one page share one Buffer. An epoch's pages leave both
   * when its report is removed or replaced.
   */
  private readonly pageCache = new LRUCache<string, Buffer>({ maxSize: PAGE_CACHE_BYTES, sizeCalculation: (b) => Math.max(1, b.length) });
  private readonly pageReads = new Map<string, Promise<Buffer | null>>();
  private consensus: VerifiedConsensus | null = null;
  private running: Promise<void> | null = null;
  private lastAudited = -1;
  private closed = false;
  /** Aborted by close(): a wait before asking a busy node again ends at once (SPEC.md §9.20.2). */
  private readonly stopping = new AbortController();
  private readonly m: { contracts: prom.Counter<'result'>; audits: prom.Counter<'result'>; evicted: prom.Counter };

  constructor(o: StorageAuditsOptions) {
    this.o = o;
    // Each node's wait before asking it again listens to the close (SPEC.md §9.20.2): nodes are
    // audited together, so many at once are expected, not a leak.
    setMaxListeners(0, this.stopping.signal);
    this.P = o.periodSeconds * 1000;
    this.now = o.now ?? Date.now;
    this.dir = path.join(o.dataDir, 'storage');
    const reg = o.registry ?? new prom.Registry();
    this.m = {
      contracts: new prom.Counter({ name: 'bitcloud_storage_contracts_total', help: 'Storage contract uploads by result (accepted, unchanged, or the refusal code)', labelNames: ['result'], registers: [reg] }),
      evicted: new prom.Counter({ name: 'bitcloud_storage_contracts_evicted_total', help: 'Unfunded storage contracts evicted, oldest first, to make room for an upload (SPEC.md §9.20.1)', registers: [reg] }),
      audits: new prom.Counter({ name: 'bitcloud_storage_authority_audits_total', help: 'Audits this authority ran by result (ok or the failure code)', labelNames: ['result'], registers: [reg] }),
    };
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new prom.Gauge({ name: 'bitcloud_storage_contracts', help: 'Storage contracts held', registers: [reg], collect() { this.set(self.contracts.size); } });
  }

  get epochNow(): number { return Math.floor(this.now() / this.P); }
  get contractCount(): number { return this.contracts.size; }

  /** A contract held, by id (hex): what escrow payments are computed from (SPEC.md §9.20.4). */
  contract(id: string): StorageContract | undefined {
    const h = this.contracts.get(id);
    return h ? decodeContract(h.raw) : undefined;
  }

  private hold(id: string, raw: Buffer, c: StorageContract): void {
    this.contracts.set(id, { raw, startEpoch: c.startEpoch, endEpoch: c.endEpoch, entries: c.entries.length });
    this.entriesHeld += c.entries.length;
  }

  private drop(id: string): void {
    const h = this.contracts.get(id);
    if (!h) return;
    this.contracts.delete(id);
    this.entriesHeld -= h.entries;
  }

  /**
   * Why a contract of `entries` entries is beyond the limits now, or null (SPEC.md §9.20.1).
   * `freed`: held contracts and entries counted as gone (those an eviction would remove).
   */
  private overLimit(entries: number, freed = { contracts: 0, entries: 0 }): string | null {
    const max = this.o.maxContracts ?? MAX_CONTRACTS;
    const maxEntries = this.o.maxContractEntries ?? CONTRACT_ENTRY_LIMIT;
    if (this.contracts.size - freed.contracts + this.writing.size >= max) return `this authority holds ${max} contracts already`;
    if (this.entriesHeld - freed.entries + this.entriesWriting + entries > maxEntries) return `this authority holds at most ${maxEntries} contract entries, and this contract's ${entries} would pass that`;
    return null;
  }

  /**
   * Forget the held contract `id` and remove its file (SPEC.md §9.20.1): forgotten now, its file
   * goes after, and a new write of the same id waits for that (`removing`).
   */
  private forget(id: string): void {
    this.drop(id);
    const rm = fs.promises.rm(path.join(this.dir, 'contracts', `${id}.bin`), { force: true })
      .catch((x: unknown) => { this.o.log.warn({ contract: id, err: (x as Error).message }, 'removing a storage contract failed'); })
      .finally(() => { if (this.removing.get(id) === rm) this.removing.delete(id); });
    this.removing.set(id, rm);
  }

  /**
   * Forget every held contract that ended KEPT_REPORTS or more epochs before epoch `e` (funded or
   * not: its reports are no longer kept, SPEC.md §9.20.1); returns their ids.
   */
  private pruneEnded(e: number): string[] {
    const ended = [...this.contracts].filter(([, h]) => h.endEpoch <= e - KEPT_REPORTS).map(([id]) => id);
    for (const id of ended) this.forget(id);
    return ended;
  }

  /**
   * SPEC.md §9.20.1: make room for a contract of `entries` entries. First every held contract
   * that ended KEPT_REPORTS or more epochs before the current one is dropped, funded or not: the
   * ones auditEpoch drops (their reports are no longer kept), not counted as evictions. Then, if
   * still needed, unfunded held contracts are evicted, oldest stored first, as few as fit it; a
   * funded one (§9.20.4) is never evicted, nor one whose write is under way (not held yet). When
   * evicting every unfunded contract would not make room, none is evicted and the reason is
   * returned; null once the contract fits.
   */
  private evictFor(entries: number): string | null {
    if (this.overLimit(entries) === null) return null;
    for (const id of this.pruneEnded(this.epochNow)) this.o.log.debug({ contract: id }, 'ended storage contract dropped to make room for an upload');
    const over = this.overLimit(entries);
    if (over === null) return null;
    const funded = this.o.funded ?? (() => false);
    const victims: string[] = [];
    const freed = { contracts: 0, entries: 0 };
    for (const [id, h] of this.contracts) {
      if (funded(id, h.endEpoch - h.startEpoch)) continue;
      victims.push(id);
      freed.contracts++;
      freed.entries += h.entries;
      if (this.overLimit(entries, freed) === null) break;
    }
    if (this.overLimit(entries, freed) !== null) return over;
    for (const id of victims) {
      this.forget(id);
      this.m.evicted.inc();
      this.o.log.debug({ contract: id }, 'unfunded storage contract evicted to make room for an upload');
    }
    return null;
  }

  /**
   * SPEC.md §9.20.4: this authority's own report of `epoch` as its payments read it: the pages of
   * `nodes` that it holds (a node it did not audit has none), read from disk, each reduced to its
   * passing results without their answers (paidResults); null when it holds no report of `epoch`
   * or a page cannot be read. Read asynchronously: the proposer reads them while it builds a reward
   * block, and a synchronous read of many pages (up to 16 MiB each) would hold every request and
   * vote this authority serves meanwhile.
   */
  async ownPages(epoch: number, nodes: ReadonlySet<string>): Promise<AuditPages | null> {
    const r = this.reports.get(epoch);
    if (!r?.signed) return null;
    const body = JSON.parse(r.signed.body) as AuditReportBody;
    const want = [...nodes].filter((fp) => Object.hasOwn(body.nodes, fp));
    const pages = new Map<string, readonly ReportedAudit[]>();
    try {
      for (const fp of want) {
        pages.set(fp, paidResults((JSON.parse(await fs.promises.readFile(this.pageFile(epoch, fp), 'utf8')) as AuditPage).results));
      }
      // The pages are those of the report asked for, not of one that replaced it meanwhile.
      if (this.reports.get(epoch) !== r) throw new Error('the report was replaced while its pages were read');
    } catch (x) {
      this.o.log.warn({ epoch, err: (x as Error).message }, 'reading an own audit report page failed');
      return null;
    }
    return { epoch, pages };
  }

  private pageFile(epoch: number, fp: string): string { return path.join(this.dir, 'audits', String(epoch), `${fp}.json`); }

  /** Forget the pages of `epoch` read so far (its report is removed or replaced). */
  private dropPages(epoch: number): void {
    const prefix = `${epoch}/`;
    for (const k of [...this.pageCache.keys()]) if (k.startsWith(prefix)) this.pageCache.delete(k);
    for (const k of [...this.pageReads.keys()]) if (k.startsWith(prefix)) this.pageReads.delete(k);
  }

  /** Remove the report of `epoch` from disk: its summary, then its pages. */
  private removeReport(epoch: number): void {
    this.dropPages(epoch);
    fs.rm(path.join(this.dir, 'audits', `${epoch}.json`), { force: true }, () => {
      fs.rm(path.join(this.dir, 'audits', String(epoch)), { recursive: true, force: true }, () => {});
    });
  }

  /** Load contracts and recent reports from disk. Call once, before anything else. */
  load(): { contracts: number; reports: number } {
    const e = this.epochNow;
    const cdir = path.join(this.dir, 'contracts');
    let beyond = 0;
    let early = 0;
    // SPEC.md §9.20.1: held in the order they were stored (file time, then name), the order in
    // which unfunded ones are evicted.
    const files = safeReaddir(cdir).filter((name) => /^[0-9a-f]{64}\.bin$/.test(name)).map((name) => {
      let mtime = 0;
      try { mtime = fs.statSync(path.join(cdir, name)).mtimeMs; } catch { /* read below, or reported there */ }
      return { name, mtime };
    }).sort((a, b) => a.mtime - b.mtime || (a.name < b.name ? -1 : 1));
    for (const { name } of files) {
      const m = /^([0-9a-f]{64})\.bin$/.exec(name);
      const file = path.join(cdir, name);
      if (!m) continue;
      try {
        const raw = fs.readFileSync(file);
        if (blake2b(raw).toString('hex') !== m[1]) throw err('CONTRACT_MALFORMED', 'file content does not match its name');
        const c = decodeContract(raw);
        // SPEC.md §9.20.1, §9.20.4: kept as auditEpoch keeps it, KEPT_REPORTS epochs past its end:
        // its last epochs are paid in blocks built two periods later, so an authority restarted
        // meanwhile must still hold it (or it would leave out, or refuse, those payments).
        if (c.endEpoch <= e - KEPT_REPORTS) { fs.rmSync(file, { force: true }); continue; }
        // SPEC.md §9.20.1: one starting more than CONTRACT_MAX_LEAD_EPOCHS ahead (stored before
        // uploads were refused CONTRACT_TOO_EARLY) is kept on disk, not held: it takes no place
        // under the limits, and a later start holds it once its start is near enough.
        if (c.startEpoch > e + CONTRACT_MAX_LEAD_EPOCHS) { early++; continue; }
        // SPEC.md §9.20.1: a store holding more than the limits (they were lowered) loads up to
        // them; the other files are kept, not held, so that this authority starts.
        if (this.overLimit(c.entries.length) !== null) { beyond++; continue; }
        this.hold(m[1], raw, c);
      } catch (x) {
        this.o.log.warn({ file: name, code: errorCode(x) }, 'stored storage contract not usable; ignored');
      }
    }
    if (early > 0) this.o.log.warn({ early, maxLeadEpochs: CONTRACT_MAX_LEAD_EPOCHS }, 'stored storage contracts starting too far ahead not loaded (their files are kept)');
    if (beyond > 0) this.o.log.warn({ beyond, held: this.contracts.size, entries: this.entriesHeld }, 'stored storage contracts beyond the limits not loaded (their files are kept)');
    const adir = path.join(this.dir, 'audits');
    const names = safeReaddir(adir);
    for (const name of names) {
      const m = /^(\d{1,16})\.json$/.exec(name);
      if (!m) continue;
      const epoch = Number(m[1]);
      const file = path.join(adir, name);
      if (!reportKept(epoch, e)) { fs.rmSync(file, { force: true }); continue; }
      try {
        const signed = JSON.parse(fs.readFileSync(file, 'utf8')) as SignedAuditReport;
        const body = JSON.parse(signed.body) as AuditReportBody;
        if (body.version !== AUDIT_REPORT_VERSION) {
          // SPEC.md §9.20.3: a report of an older layout (version 1 carried every result in the
          // signed body) is not served in the new one; it is dropped.
          this.o.log.warn({ file: name, version: body.version }, 'stored audit report of an older version dropped');
          fs.rmSync(file, { force: true });
          continue;
        }
        if (body.epoch !== epoch) throw new Error('epoch does not match the file name');
        const stored = new Map(Object.entries(body.nodes).filter(([, n]) => n.stored > 0).map(([fp, n]) => [fp, n.stored]));
        this.reports.set(epoch, { signed, stored });
        if (epoch > this.lastAudited) this.lastAudited = epoch;
      } catch (x) {
        this.o.log.warn({ file: name, err: (x as Error).message }, 'stored audit report not usable; ignored');
      }
    }
    // Pages of a report not held (older than kept, dropped, or whose summary was never written).
    for (const name of names) {
      if (/^\d{1,16}$/.test(name) && !this.reports.has(Number(name))) fs.rmSync(path.join(adir, name), { recursive: true, force: true });
    }
    return { contracts: this.contracts.size, reports: this.reports.size };
  }

  /**
   * POST /bitcloud/storage/contracts (SPEC.md §9.20.1): decode, refuse a contract whose last epoch
   * has passed (CONTRACT_EXPIRED), that starts more than CONTRACT_MAX_LEAD_EPOCHS ahead
   * (CONTRACT_TOO_EARLY) or beyond the limits (CONTRACT_LIMIT), store it, then answer.
   */
  async accept(raw: Buffer): Promise<{ id: string; result: 'accepted' | 'unchanged'; startEpoch: number; endEpoch: number; entries: number }> {
    let c: StorageContract;
    try {
      c = decodeContract(raw);
      const e = this.epochNow;
      if (c.endEpoch <= e) throw err('CONTRACT_EXPIRED', `the contract ended at epoch ${c.endEpoch}; the current epoch is ${e}`);
      // SPEC.md §9.20.1: nor one starting far ahead, which would hold a place under the limits long
      // before any audit of it (and so for good, started far enough ahead).
      if (c.startEpoch > e + CONTRACT_MAX_LEAD_EPOCHS) {
        throw err('CONTRACT_TOO_EARLY', `the contract starts at epoch ${c.startEpoch}, more than ${CONTRACT_MAX_LEAD_EPOCHS} epochs after the current epoch ${e}`);
      }
    } catch (e) {
      this.m.contracts.labels(errorCode(e)).inc();
      throw e;
    }
    const id = blake2b(raw).toString('hex');
    const out = { id, startEpoch: c.startEpoch, endEpoch: c.endEpoch, entries: c.entries.length };
    // SPEC.md §9.20.1: stored before answered; the same contract uploaded while its write is under
    // way is unchanged once that write completed, and fails with it.
    const inFlight = this.writing.get(id);
    if (inFlight) await inFlight;
    if (this.contracts.has(id)) { this.m.contracts.labels('unchanged').inc(); return { ...out, result: 'unchanged' }; }
    // SPEC.md §9.20.1: the limit counts the contracts whose write is still under way, so
    // uploads that arrive together cannot all pass the check before any of them is held.
    // The entries count too (CONTRACT_ENTRY_LIMIT over all contracts held). Beyond either, the
    // contracts that ended KEPT_REPORTS epochs ago are dropped, then unfunded contracts are
    // evicted, oldest first, when that makes room.
    const over = this.evictFor(c.entries.length);
    if (over !== null) {
      this.m.contracts.labels('CONTRACT_LIMIT').inc();
      throw err('CONTRACT_LIMIT', over);
    }
    const n = c.entries.length;
    this.entriesWriting += n;
    let counted = true;
    const write = (async () => {
      mkdirDurableSync(path.join(this.dir, 'contracts'), 0o700);
      await this.removing.get(id);
      await writeFileAtomic(path.join(this.dir, 'contracts', `${id}.bin`), raw, 0o644);
      // Held and no longer being written at once: counted once against the limits.
      this.hold(id, Buffer.from(raw), c);
      this.writing.delete(id);
      this.entriesWriting -= n;
      counted = false;
    })();
    this.writing.set(id, write);
    try {
      await write;
    } catch (e) {
      // SPEC.md §6.10 "Error answers": the uploader is answered 500 INTERNAL; the cause (its
      // message may name this authority's folder) is the operator's.
      this.o.log.warn({ contract: id, code: errorCode(e), err: (e as Error)?.message }, 'storing a storage contract failed');
      throw e;
    } finally {
      if (this.writing.get(id) === write) this.writing.delete(id);
      if (counted) { this.entriesWriting -= n; counted = false; }
    }
    this.m.contracts.labels('accepted').inc();
    this.o.log.info({ contract: id, startEpoch: c.startEpoch, endEpoch: c.endEpoch, entries: c.entries.length }, 'storage contract accepted');
    return { ...out, result: 'accepted' };
  }

  /** The newest published consensus: where the storage nodes are. */
  /** The relays of the newest consensus seen (the rendezvous connector builds its paths from them). */
  currentRelays(): readonly ConsensusRelay[] | null { return this.consensus?.relays ?? null; }

  onConsensus(info: VerifiedConsensus): void {
    if (!this.consensus || info.validAfter >= this.consensus.validAfter) this.consensus = info;
  }

  /** Driven by the authority's schedule tick: run the audits of the current epoch once. */
  tick(): void {
    if (this.closed || this.running || !this.consensus) return;
    const now = this.now();
    const e = Math.floor(now / this.P);
    if (e <= this.lastAudited || now - e * this.P < AUDIT_AT * this.P) return;
    this.lastAudited = e;
    this.running = this.auditEpoch(e).catch((x) => this.o.log.error({ epoch: e, err: (x as Error).message }, 'storage audits failed'))
      .finally(() => { this.running = null; });
  }

  /** Bytes credited per node for `epoch` (null when this authority did not audit that epoch). */
  storedFor(epoch: number): ReadonlyMap<string, number> | null {
    return this.reports.get(epoch)?.stored ?? null;
  }

  /** GET /bitcloud/storage/audits?epoch=E: the signed report (summary; null when none). */
  report(epoch: number): SignedAuditReport | null {
    return this.reports.get(epoch)?.signed ?? null;
  }

  /**
   * GET /bitcloud/storage/audits?epoch=E: the signed summary's JSON as served (null when none),
   * serialised at the first request and kept with the report, so each GET costs no serialisation.
   */
  reportText(epoch: number): Buffer | null {
    const r = this.reports.get(epoch);
    if (!r?.signed) return null;
    r.text ??= Buffer.from(JSON.stringify(r.signed), 'utf8');
    return r.text;
  }

  /**
   * GET /bitcloud/storage/audits?epoch=E&node=FP: the page of node `fp` (64 hex) in the report of
   * `epoch`, its exact bytes (null when the report or the node's page is not held). SPEC.md §9.20.3:
   * read from disk once and kept in a cache bounded by bytes (PAGE_CACHE_BYTES), so concurrent and
   * later readers of one page share one Buffer instead of a copy each.
   */
  async pageText(epoch: number, fp: string): Promise<Buffer | null> {
    const report = this.reports.get(epoch);
    if (!/^[0-9a-f]{64}$/.test(fp) || !report?.signed) return null;
    const key = `${epoch}/${fp}`;
    const cached = this.pageCache.get(key);
    if (cached) return cached;
    const under = this.pageReads.get(key);
    if (under) return under;
    const read = fs.promises.readFile(this.pageFile(epoch, fp)).then((b) => {
      // Kept only while the report it was read for is still the one held (not audited again meanwhile).
      if (this.reports.get(epoch) === report && report.signed) this.pageCache.set(key, b);
      return b;
    }, () => null).finally(() => { if (this.pageReads.get(key) === read) this.pageReads.delete(key); });
    this.pageReads.set(key, read);
    return read;
  }

  /** Epochs with a report served, ascending. */
  get reportEpochs(): number[] { return [...this.reports].filter(([, r]) => r.signed).map(([k]) => k).sort((a, b) => a - b); }

  async close(): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    await this.running;
  }

  /** Run the audits of epoch `e` now (the tick calls this; tests may too). */
  async auditEpoch(e: number): Promise<void> {
    // SPEC.md §9.20.2: (node, share, size, root) → the commitment and one contract naming it; the
    // same commitment in several contracts is audited (and credited) once. Keyed by the whole
    // commitment, not by (node, share): a contract naming a node's share with another size or root,
    // held before the payer's, would otherwise have that pair audited against its commitment only
    // and fail, costing the node the payer's pay and its credit for a share it does hold.
    // Contracts are picked by their epochs first: one not active in `e` costs nothing more.
    // §9.20.2: a commitment named by a funded contract (§9.20.4) is drawn before the others, so
    // free contracts naming a node for shares it never had cannot push its paid pairs out of the
    // sample (and with them its pay).
    const byNode = new Map<string, Map<string, { contract: string; size: number; root: Buffer; shareId: Buffer; funded: boolean }>>();
    this.pruneEnded(e);
    const isFunded = this.o.funded ?? (() => false);
    for (const [id, h] of this.contracts) {
      if (h.startEpoch > e || h.endEpoch <= e) continue;
      const funded = isFunded(id, h.endEpoch - h.startEpoch);
      for (const { off, fp } of heldEntries(h.raw)) {
        let m = byNode.get(fp);
        if (!m) byNode.set(fp, (m = new Map()));
        // share id [32] | share_size u32 | audit_root [32], contiguous in the entry (§9.20.1).
        const commitment = h.raw.toString('hex', off + 32, off + 100);
        const known = m.get(commitment);
        if (!known) m.set(commitment, { contract: id, size: h.raw.readUInt32BE(off + 64), root: h.raw.subarray(off + 68, off + 100), shareId: h.raw.subarray(off + 32, off + 64), funded });
        else if (funded && !known.funded) { known.funded = true; known.contract = id; }
      }
    }
    const nodes = new Map((this.consensus?.relays ?? []).filter((r) => r.flags.has('Storage') && (r.storagePort > 0 || r.roles.includes('hidden'))).map((r) => [r.fingerprint, r]));
    const timeoutMs = this.o.timeoutMs ?? Math.min(30_000, Math.max(2000, this.P / 4));
    // SPEC.md §9.20.3: a page holds at most PER_NODE_AUDITS results.
    const cap = Math.min(this.o.perNodeAudits ?? PER_NODE_AUDITS, PER_NODE_AUDITS);
    const connect = this.o.connect ?? directAuditConnector;
    const results: ReportedAudit[] = [];
    await Promise.all([...byNode].map(async ([fp, shares]) => {
      const node = nodes.get(fp);
      if (!node) return; // not a storage node of the consensus: nothing to audit, nothing credited
      // SPEC.md §9.20.3: every result carries a nonce and the blocks it derives, a pair the node was
      // never asked too, so each pair's challenge is drawn before the node is reached.
      // §9.20.2: the pairs of funded contracts first, at random, then the others, at random.
      const all = [...shares.values()];
      const pick = [...shuffle(all.filter((s) => s.funded)), ...shuffle(all.filter((s) => !s.funded))].slice(0, cap).map((s) => ({ ...s, nonce: randomBytes(32) }));
      const fail = (s: (typeof pick)[number], code: string): ReportedAudit => ({
        node: fp, contract: s.contract, size: s.size, root: s.root.toString('hex'), shareId: s.shareId.toString('hex'), ok: false, code,
        nonce: s.nonce.toString('hex'), blocks: challengeBlocks(s.nonce, s.shareId, s.size, DEFAULT_AUDIT_BLOCKS),
      });
      let conn: Awaited<ReturnType<AuditConnector>>;
      try {
        conn = await connect(node, timeoutMs);
      } catch (x) {
        // §9.20.2: a node that cannot be reached fails every pair, with the connection's code.
        for (const s of pick) results.push(fail(s, errorCode(x)));
        return;
      }
      // §9.20.2: the node's challenges, all of them, end within NODE_DEADLINE_BOUNDS × the bound, so
      // a node answering slowly or busy cannot hold the round (and the next rounds, and close())
      // for hours; the pairs not done by then fail with STORAGE_TIMEOUT.
      let expired = false;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(() => { expired = true; resolve(); }, NODE_DEADLINE_BOUNDS * timeoutMs);
      });
      const done = new Set<(typeof pick)[number]>();
      const mine: ReportedAudit[] = [];
      const run = (async () => {
        for (const s of pick) {
          if (this.closed || expired) break;
          const send: ChallengeSender = (req) => {
            if (expired) return Promise.reject(err('STORAGE_TIMEOUT', 'the node\'s audit deadline has passed'));
            return withTimeout(conn.send(req), timeoutMs);
          };
          // §9.20.2: STORAGE_BUSY (the node's audit queue is full, §9.17.2) is asked again, with
          // the same nonce (the node answered nothing for it); busy every time fails the pair.
          // Closing ends such a wait at once; the pair is not done, as one not yet started.
          let r: AuditResult;
          try {
            r = await auditRetryingBusy(
              () => auditShare(send, { shareId: s.shareId, size: s.size, root: s.root }, { nonce: s.nonce, blocks: DEFAULT_AUDIT_BLOCKS }),
              this.o.auditBusyRetryMs,
              this.stopping.signal,
            );
          } catch (x) {
            if (this.stopping.signal.aborted) break;
            throw x;
          }
          if (expired) break;
          done.add(s);
          mine.push({ ...r, node: fp, contract: s.contract, size: s.size, root: s.root.toString('hex') });
        }
      })();
      run.catch(() => {}); // after the deadline nothing waits for it
      try {
        await Promise.race([run, deadline]);
      } finally {
        clearTimeout(timer);
        conn.close();
      }
      results.push(...mine);
      if (expired) for (const s of pick) if (!done.has(s)) results.push(fail(s, 'STORAGE_TIMEOUT'));
    }));
    // One share id may be audited under several commitments (above): their order is the root's, not the draw's.
    results.sort((a, b) => a.node.localeCompare(b.node) || a.shareId.localeCompare(b.shareId) || a.root.localeCompare(b.root) || a.size - b.size);
    for (const r of results) this.m.audits.labels(r.ok ? 'ok' : r.code ?? 'INTERNAL').inc();
    const stored = storedBytes(results);
    // SPEC.md §9.20.3: the signed summary names each node's page by its digest.
    const { body, pages } = buildAuditReport(this.o.signer.identity.toString('hex'), e, results);
    const signed = signAuditReport(body, this.o.signer);
    const held: { signed: SignedAuditReport | null; stored: Map<string, number> } = { signed: null, stored };
    this.reports.set(e, held);
    this.dropPages(e); // an epoch audited again serves none of its earlier pages
    for (const k of this.reports.keys()) {
      if (reportKept(k, e)) continue;
      this.reports.delete(k);
      this.removeReport(k);
    }
    // The pages first, then the summary: a summary on disk always has its pages. Served once both are.
    try {
      // An epoch audited again (by a test or after a clock step) leaves nothing of its earlier round:
      // its summary goes first, durably, then its pages (SPEC.md §9.20.3), so that a crash or a
      // failed page write in between cannot leave that summary on disk without its pages.
      const summary = path.join(this.dir, 'audits', `${e}.json`);
      if (fs.existsSync(summary)) {
        fs.rmSync(summary, { force: true });
        await fsyncDir(path.dirname(summary));
      }
      fs.rmSync(path.join(this.dir, 'audits', String(e)), { recursive: true, force: true });
      mkdirDurableSync(path.join(this.dir, 'audits', String(e)), 0o700);
      for (const [fp, bytes] of pages) await writeFileAtomic(this.pageFile(e, fp), bytes, 0o644);
      await writeFileAtomic(path.join(this.dir, 'audits', `${e}.json`), JSON.stringify(signed), 0o644);
      held.signed = signed;
    } catch (x) {
      this.o.log.warn({ err: (x as Error).message }, 'saving the audit report failed; it is not served');
    }
    const failed = results.filter((r) => !r.ok).length;
    this.o.log.info({ epoch: e, audits: results.length, failed, nodesCredited: stored.size }, 'storage audits done');
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(err('STORAGE_TIMEOUT', `no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

function safeReaddir(dir: string): string[] {
  try { return fs.readdirSync(dir); } catch { return []; }
}

/** The node must not predict which of its shares are audited: a CSPRNG picks them. */
