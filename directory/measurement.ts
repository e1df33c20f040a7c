// SPEC.md §8.4–§8.5 on an authority: receipt intake, its memory across restarts, and the
// measurement of epoch k − 2 when the vote for period k is made. Owns (under <dataDir>):
//   consensus-<validAfter>      the consensus this authority published for each recent period
//                               (envelope bytes, atomic): the membership of that epoch (§8.4 item 4)
//   receipts/<epoch>.bin        accepted receipt records of an epoch, 224 bytes each, appended and
//                               fsynced before the upload is answered
//   bandwidth-history.json      per relay: epochs this authority measured it above 0 (§8.5 bound 5)
//   pair-owed.bin               the pair rule's per-pair owed cells entering and leaving the last
//                               epoch measured (§8.5.2), atomic (owed-store.ts)
// The pure parts (verification, bounds) are src/bandwidth/verify.ts and measure.ts.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { writeFileAtomic, writeFileAtomicSync, mkdirDurable, fsyncDir } from '../src/ops/fsutil';
import { RECEIPT_LEN } from '../src/bandwidth/receipt';
import { hsPeriodOf } from '../src/crypto/blind';
import { ReceiptVerifier, periodicUploadWindow, type UploadWindow } from '../src/bandwidth/verify';
import {
  DEFAULT_BOUNDS, DEFAULT_PAIR_RULE, LOCAL_NETWORK_BOUNDS, LOCAL_PAIR_RULE, maxReceiptCells, measure, measurePairRule,
  type OwedState, type RelayFacts, type RelayMeasurement,
} from '../src/bandwidth/measure';
import { OwedStore, type OwedSnapshot } from './owed-store';
import { verifyConsensus } from '../src/dir/consensus';
import type { AuthorityInfo } from '../src/dir/authorities';
import type { VerifiedConsensus } from '../src/dir/types';
import { answerReceiptUploadSliced, type ReceiptIntake, type ReceiptUploadAnswer } from './receipts';
import { probedSource, provenSource, type BandwidthSource } from './bandwidth';

export const RECEIPTS_DIR = 'receipts';
export const HISTORY_FILE = 'bandwidth-history.json';
/**
 * SPEC.md §8.5: a relay not credited for this many epochs is forgotten (a month of one-hour
 * epochs): it comes back as a new relay (bound 5), and the file does not grow without end.
 */
export const HISTORY_FORGET_EPOCHS = 720;
export const consensusArchiveName = (validAfter: number): string => `consensus-${validAfter}`;
/** Consensuses kept: epochs k−3 … k (k−2 is measured at the vote for k; k−1, k still take receipts). */
const ARCHIVE_PERIODS = 4;

export interface MeasurementOptions {
  dataDir: string;
  periodSeconds: number;
  authorities: readonly AuthorityInfo[];
  skewMs: number;
  bounds: 'default' | 'local';
  /** SPEC.md §8.5: which rule turns receipts into proven cells. Default "pair" (§8.5.2). */
  rule?: 'pair' | 'dispersion';
  unmeasuredCapKBps: number;
  /** Declared bandwidth (bytes/s) of a relay from the descriptor the authority holds; undefined = none. */
  declared(fingerprint: string): number | undefined;
  /**
   * SPEC.md §9.21.7: the identity (hex) a pseudonym key (hex) stands for in hidden period `period`
   * (a registration for it or the one before), or undefined. Absent: no pseudonyms.
   */
  pseudonymIdentity?: (pseudonym: string, period: number) => string | undefined;
  /** SPEC.md §8.12: this authority's capacity probe figure of a relay (bytes/s), if any. */
  probed?: (fingerprint: string) => number | undefined;
  log: Logger;
  now?: () => number;
}

/** The measurement of one epoch (SPEC.md §8.5). */
export interface EpochMeasurement {
  epoch: number;
  /** Relays that appear in an accepted receipt of the epoch, by fingerprint. */
  relays: ReadonlyMap<string, RelayMeasurement>;
  receipts: number;
  /** Receipts measurement skipped as impossible (SPEC.md §8.5; intake refuses them already). */
  skipped: number;
}

/** What the vote for one period carries (SPEC.md §6.5). */
export interface VoteMeasurement {
  /** 0 = no measurement (this authority holds no consensus for epoch k − 2). */
  provenEpoch: number;
  /** Proven cells per relay for provenEpoch (absent = 0). */
  proven: ReadonlyMap<string, number>;
  /** The vote's `measured` values: proofs folded into the capped declared rule. */
  source: BandwidthSource;
}

interface HistoryEntry { epochs: number; last: number }

export class BandwidthMeasurement implements ReceiptIntake {
  readonly verifier: ReceiptVerifier;
  private readonly o: MeasurementOptions;
  private readonly P: number;
  private readonly window: UploadWindow;
  private readonly now: () => number;
  /** Consensus of each recent epoch, and who it lists. */
  private readonly byEpoch = new Map<number, { info: VerifiedConsensus; listed: Set<string>; hidden: Set<string> }>();
  private history = new Map<string, HistoryEntry>();
  private last: EpochMeasurement | null = null;
  private readonly owedStore: OwedStore;
  /** Epochs whose receipt file this process has made durable in receipts/ (its folder fsynced). */
  private readonly receiptFilesInFolder = new Set<number>();
  private owedState: OwedSnapshot | null = null;
  /** The last receipt-file append of this process (write and fsync); the next one starts after it (append()). */
  private appending: Promise<void> = Promise.resolve();
  /**
   * SPEC.md §8.4 "Persistence": a failed append could not be cut back, so a receipt file may hold
   * records answered 503; until a restart every append fails RECEIPT_NOT_SAVED.
   */
  private receiptsBroken = false;

  constructor(o: MeasurementOptions) {
    this.o = o;
    this.P = o.periodSeconds * 1000;
    this.now = o.now ?? Date.now;
    // SPEC.md §8.4 item 3: epoch e's receipts are taken in [e·P, (e+2)·P).
    this.window = periodicUploadWindow({ genesisMs: 0, periodMs: this.P, graceMs: this.P });
    this.verifier = new ReceiptVerifier({
      window: this.window,
      maxCells: maxReceiptCells(o.periodSeconds),
      membership: (epoch, fp) => { const c = this.byEpoch.get(epoch); return c ? c.listed.has(fp) : undefined; },
      // SPEC.md §9.21.7 (§8.4 check 4): a registered pseudonym of a hidden node listed in the consensus of e.
      pseudonymOf: o.pseudonymIdentity ? (epoch, key) => {
        const c = this.byEpoch.get(epoch);
        const id = c ? o.pseudonymIdentity!(key, hsPeriodOf(epoch * this.P)) : undefined;
        return id !== undefined && c!.hidden.has(id) ? id : undefined;
      } : undefined,
    });
    this.owedStore = new OwedStore(o.dataDir, o.log);
  }

  /** The pair rule's owed state leaving the last epoch measured (SPEC.md §8.5.2), or null. */
  get owed(): Readonly<OwedSnapshot> | null { return this.owedState; }

  get lastMeasurement(): EpochMeasurement | null { return this.last; }
  /** Epochs whose consensus this authority holds (ascending). */
  get epochsHeld(): number[] { return [...this.byEpoch.keys()].sort((a, b) => a - b); }

  private epochOf(validAfter: number): number | null {
    return validAfter % this.P === 0 ? validAfter / this.P : null;
  }

  // ---- start-up ----

  /** Load the archived consensuses, then the receipts they vouch for, then the history. */
  load(): { consensuses: number; receipts: number } {
    const now = this.now();
    const oldest = Math.floor(now / this.P) - ARCHIVE_PERIODS + 1;
    let names: string[] = [];
    try { names = fs.readdirSync(this.o.dataDir); } catch { /* fresh data directory */ }
    let consensuses = 0;
    for (const name of names) {
      const m = /^consensus-(\d{1,16})$/.exec(name);
      if (!m) continue;
      const file = path.join(this.o.dataDir, name);
      const e = this.epochOf(Number(m[1]));
      if (e === null || e < oldest) { fs.rmSync(file, { force: true }); continue; }
      try {
        // Checked as of its own valid_after: a client accepted it then; it may have expired since.
        const info = verifyConsensus(fs.readFileSync(file), this.o.authorities, Number(m[1]), this.o.skewMs);
        if (info.validAfter !== Number(m[1])) throw new Error('valid_after does not match the file name');
        this.remember(info);
        consensuses++;
      } catch (x) {
        this.o.log.warn({ file: name, code: errorCode(x) }, 'archived consensus not usable; ignored');
      }
    }
    const receipts = this.loadReceipts(Math.floor(now / this.P) - 2);
    this.loadHistory();
    this.owedState = this.owedStore.load();
    return { consensuses, receipts };
  }

  private loadReceipts(oldestEpoch: number): number {
    const dir = path.join(this.o.dataDir, RECEIPTS_DIR);
    let names: string[] = [];
    try { names = fs.readdirSync(dir); } catch { return 0; }
    let n = 0;
    for (const name of names) {
      const m = /^(\d{1,16})\.bin$/.exec(name);
      if (!m) continue;
      const e = Number(m[1]);
      const file = path.join(dir, name);
      if (e < oldestEpoch) { fs.rmSync(file, { force: true }); continue; }
      let buf = fs.readFileSync(file);
      // SPEC.md §8.4 "Persistence": a torn last record (a crash mid-append) is dropped, and cut off
      // the file, so that the records appended after it start on a record boundary.
      const torn = buf.length % RECEIPT_LEN;
      if (torn !== 0) {
        buf = buf.subarray(0, buf.length - torn);
        const fd = fs.openSync(file, 'r+');
        try { fs.ftruncateSync(fd, buf.length); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
        this.o.log.warn({ file: name, bytesDropped: torn }, 'torn last receipt record cut off');
      }
      // Re-judged as at the opening of the epoch's window: signatures and membership are checked again.
      const at = this.window(e)!.opens;
      for (let off = 0; off + RECEIPT_LEN <= buf.length; off += RECEIPT_LEN) {
        if (this.verifier.accept(buf.subarray(off, off + RECEIPT_LEN), at).ok) n++;
      }
    }
    return n;
  }

  private loadHistory(): void {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(this.o.dataDir, HISTORY_FILE), 'utf8')) as { version?: number; relays?: Record<string, unknown> };
      if (j.version !== 1 || typeof j.relays !== 'object' || j.relays === null) throw new Error('unknown format');
      for (const [fp, v] of Object.entries(j.relays)) {
        const h = v as Partial<HistoryEntry>;
        if (/^[0-9a-f]{64}$/.test(fp) && Number.isSafeInteger(h.epochs) && Number.isSafeInteger(h.last) && h.epochs! >= 0) {
          this.history.set(fp, { epochs: h.epochs!, last: h.last! });
        }
      }
    } catch (x) {
      if ((x as NodeJS.ErrnoException).code !== 'ENOENT') this.o.log.warn({ err: (x as Error).message }, 'bandwidth history not usable; starting without');
    }
  }

  // ---- consensus archive ----

  private remember(info: VerifiedConsensus): void {
    const e = this.epochOf(info.validAfter);
    if (e === null || info.periodSeconds !== this.o.periodSeconds) return;
    this.byEpoch.set(e, {
      info, listed: new Set(info.relays.map((r) => r.fingerprint)),
      hidden: new Set(info.relays.filter((r) => r.roles.includes('hidden')).map((r) => r.fingerprint)),
    });
  }

  /** A consensus this authority published (first time): the membership of its epoch. Kept on disk. */
  async onConsensus(info: VerifiedConsensus): Promise<void> {
    const e = this.epochOf(info.validAfter);
    if (e === null || info.periodSeconds !== this.o.periodSeconds) return;
    this.remember(info);
    for (const old of [...this.byEpoch.keys()]) {
      if (old > e - ARCHIVE_PERIODS) continue;
      this.byEpoch.delete(old);
      await fsp.rm(path.join(this.o.dataDir, consensusArchiveName(old * this.P)), { force: true });
    }
    await writeFileAtomic(path.join(this.o.dataDir, consensusArchiveName(info.validAfter)), info.envelopeBytes, 0o644);
  }

  // ---- intake (POST /bitcloud/receipts) ----

  /**
   * SPEC.md §8.4: judge an upload; what was accepted is appended to its epoch's file and fsynced
   * before the answer goes out, so an accepted receipt survives a restart. When that fails the
   * upload is answered 503 RECEIPT_NOT_SAVED and the records of every epoch whose file was not
   * saved are forgotten again, so that the uploader's retry is accepted (not refused as a replay);
   * those of an epoch already saved stay accepted (the retry is answered RECEIPT_REPLAYED).
   */
  async accept(body: Uint8Array): Promise<ReceiptUploadAnswer> {
    const ans = await answerReceiptUploadSliced(this.verifier, body, this.now);
    if (ans.added.length === 0) return ans;
    const byEpoch = new Map<number, Uint8Array[]>();
    for (const a of ans.added) {
      const l = byEpoch.get(a.receipt.body.epoch);
      if (l) l.push(a.record); else byEpoch.set(a.receipt.body.epoch, [a.record]);
    }
    const dir = path.join(this.o.dataDir, RECEIPTS_DIR);
    const saved = new Set<number>();
    try {
      await mkdirDurable(dir, 0o700);
      for (const [e, recs] of byEpoch) {
        await this.append(path.join(dir, `${e}.bin`), Buffer.concat(recs));
        // A new file is only an entry in receipts/: fsync the folder once per file and process,
        // or a power loss could drop the file whose records were just fsynced.
        if (!this.receiptFilesInFolder.has(e)) {
          await fsyncDir(dir);
          this.receiptFilesInFolder.add(e);
        }
        saved.add(e);
      }
    } catch (x) {
      // SPEC.md §8.4 "Persistence": nothing is acknowledged that was not fsynced. What was not
      // saved is forgotten, and the uploader keeps the records and retries (a 5xx, §8.4.1).
      for (const a of ans.added) if (!saved.has(a.receipt.body.epoch)) this.verifier.forget(a.receipt);
      this.o.log.error({ code: errorCode(x), err: (x as Error).message }, 'saving accepted receipts failed; upload answered 503');
      return {
        status: 503, added: ans.added.filter((a) => saved.has(a.receipt.body.epoch)),
        body: { code: 'RECEIPT_NOT_SAVED', reason: 'the authority could not save the receipts; retry later' },
      };
    }
    return ans;
  }

  /**
   * SPEC.md §8.4 "Persistence": append whole records to a receipt file and fsync it. The appends of
   * this process (write and fsync) go one at a time, so one whose write fails, stores only part of
   * the records or whose fsync fails is cut back to the file's length before it (the file holds
   * only records answered 200, whole) and throws. When the cut back fails too, the receipt store
   * is broken: this and every later append throw RECEIPT_NOT_SAVED until a restart.
   */
  private async append(file: string, bytes: Buffer): Promise<void> {
    const done = this.appending.then(async () => {
      if (this.receiptsBroken) throw err('RECEIPT_NOT_SAVED', 'the receipt store is broken (a failed append could not be cut back); restart the authority');
      const fh = await fsp.open(file, 'a', 0o600);
      try {
        const before = (await fh.stat()).size;
        try {
          const { bytesWritten } = await fh.write(bytes);
          if (bytesWritten !== bytes.length) {
            throw err('RECEIPT_NOT_SAVED', 'short write to a receipt file', { wanted: bytes.length, written: bytesWritten });
          }
          await fh.sync();
        } catch (x) {
          try {
            await fh.truncate(before);
          } catch (t) {
            this.receiptsBroken = true;
            this.o.log.error({ file: path.basename(file), code: errorCode(t), err: (t as Error).message }, 'receipt store broken: a failed append could not be cut back; every upload is answered 503 until a restart');
          }
          throw x;
        }
      } finally {
        await fh.close();
      }
    });
    this.appending = done.then(() => undefined, () => undefined);
    await done;
  }

  // ---- measurement (at the vote for period k) ----

  /**
   * SPEC.md §8.5: measure epoch e = k − 2 (its upload window closed at T = k·P), if this authority
   * holds its consensus; update the history; drop receipts no longer needed. Idempotent per epoch
   * (a restart within period k measures the same receipts and does not count history twice).
   */
  measureForVote(periodStart: number): VoteMeasurement {
    const e = Math.floor(periodStart / this.P) - 2;
    const c = e > 0 ? this.byEpoch.get(e) : undefined;
    let result: VoteMeasurement;
    if (!c) {
      result = { provenEpoch: 0, proven: new Map(), source: this.source(new Map()) };
    } else {
      try {
        const m = this.last?.epoch === e ? this.last : this.measureEpoch(e, c.info);
        const proven = new Map<string, number>(), bps = new Map<string, number>();
        // Proven cells earn coins (§8.6); the weight counts only what §8.5.2 lets count as weight.
        for (const [fp, r] of m.relays) { if (r.cells > 0) proven.set(fp, r.cells); bps.set(fp, r.weightBytesPerSecond); }
        result = { provenEpoch: e, proven, source: this.source(bps) };
      } catch (x) {
        // A measurement that fails must not cost the vote: vote without one.
        this.o.log.error({ epoch: e, code: errorCode(x), err: (x as Error).message }, 'bandwidth measurement failed');
        result = { provenEpoch: 0, proven: new Map(), source: this.source(new Map()) };
      }
    }
    this.prune(e);
    return result;
  }

  /** SPEC.md §6.6 with §8.5 proofs, and §8.12 probes when this authority runs them. */
  private source(bps: ReadonlyMap<string, number>): BandwidthSource {
    const probed = this.o.probed;
    return probed ? probedSource(bps, probed, this.o.unmeasuredCapKBps) : provenSource(bps, this.o.unmeasuredCapKBps);
  }

  private measureEpoch(e: number, info: VerifiedConsensus): EpochMeasurement {
    const relays = new Map<string, RelayFacts>();
    const previousWeights = new Map<string, number>();
    for (const r of info.relays) {
      const h = this.history.get(r.fingerprint);
      relays.set(r.fingerprint, {
        // Declared bandwidth from the descriptor held now (the consensus does not carry it);
        // a relay whose descriptor this authority lost is credited nothing (bound 6).
        declaredBandwidth: this.o.declared(r.fingerprint) ?? 0,
        family: r.family,
        ipv4: r.address,
        history: h ? h.epochs - (h.last === e ? 1 : 0) : 0,
      });
      previousWeights.set(r.fingerprint, r.weight * 1000);
    }
    const pairs = this.verifier.pairs(e);
    let skipped = 0;
    const onSkip = () => { skipped++; };
    let out: Map<string, RelayMeasurement>;
    if ((this.o.rule ?? 'pair') === 'dispersion') {
      const bounds = this.o.bounds === 'local' ? LOCAL_NETWORK_BOUNDS : DEFAULT_BOUNDS;
      out = measure({ receipts: pairs, relays, previousWeights, params: { ...bounds, epochSeconds: this.o.periodSeconds }, onSkip });
    } else {
      const params = { ...(this.o.bounds === 'local' ? LOCAL_PAIR_RULE : DEFAULT_PAIR_RULE), epochSeconds: this.o.periodSeconds };
      const entering = this.owedEntering(e);
      const r = measurePairRule({
        receipts: pairs, relays, previousWeights, params, owed: entering, onSkip,
        // A pair whose relay is missing from this consensus keeps what it is owed while this
        // authority still remembers both relays (§8.5 history, HISTORY_FORGET_EPOCHS).
        keepUnlisted: (x, y) => this.history.has(x) && this.history.has(y),
      });
      out = r.relays;
      this.owedState = { epoch: e, entering, leaving: r.owed };
      this.owedStore.save(this.owedState);
    }
    if (skipped > 0) this.o.log.warn({ epoch: e, skipped }, 'receipts with impossible counts skipped by measurement');
    let changed = false;
    for (const [fp, r] of out) {
      if (r.cells <= 0) continue;
      const h = this.history.get(fp);
      if (h && h.last >= e) continue;
      this.history.set(fp, { epochs: (h?.epochs ?? 0) + 1, last: e });
      changed = true;
    }
    for (const [fp, h] of this.history) {
      if (h.last < e - HISTORY_FORGET_EPOCHS) { this.history.delete(fp); changed = true; }
    }
    if (changed) this.saveHistory();
    this.last = { epoch: e, relays: out, receipts: pairs.length, skipped };
    this.o.log.info({ epoch: e, receipts: pairs.length, relays: out.size, proven: [...out.values()].filter((r) => r.cells > 0).length }, 'bandwidth measured');
    return this.last;
  }

  /**
   * SPEC.md §8.5.2: the owed state entering epoch e. Measuring e again (a restart within the period)
   * starts from the same state as the first time, so what is owed is never paid or added twice.
   */
  private owedEntering(e: number): OwedState {
    const s = this.owedState;
    if (!s) return new Map();
    if (s.epoch === e) return new Map(s.entering);
    if (s.epoch < e) return new Map(s.leaving);
    // State from a later epoch than the one measured (the clock went back): nothing to build on.
    this.o.log.warn({ epoch: e, stateEpoch: s.epoch }, 'pair owed state is from a later epoch; measuring without it');
    return new Map();
  }

  private saveHistory(): void {
    const relays: Record<string, HistoryEntry> = {};
    for (const fp of [...this.history.keys()].sort()) relays[fp] = this.history.get(fp)!;
    try {
      writeFileAtomicSync(path.join(this.o.dataDir, HISTORY_FILE), JSON.stringify({ version: 1, relays }), 0o600);
    } catch (x) {
      this.o.log.error({ err: (x as Error).message }, 'saving bandwidth history failed');
    }
  }

  /**
   * After measuring e: the dedupe sets of closed windows go (§8.4: later copies are refused as
   * outside the window anyway); receipt files before e go, e's is kept until the next period so a
   * restart within this one measures the same receipts again.
   */
  private prune(e: number): void {
    this.verifier.prune(this.now());
    for (const old of this.receiptFilesInFolder) if (old < e) this.receiptFilesInFolder.delete(old);
    const dir = path.join(this.o.dataDir, RECEIPTS_DIR);
    let names: string[] = [];
    try { names = fs.readdirSync(dir); } catch { return; }
    for (const name of names) {
      const m = /^(\d{1,16})\.bin$/.exec(name);
      if (m && Number(m[1]) < e) fs.rmSync(path.join(dir, name), { force: true });
    }
  }
}
