// SPEC.md §8.1–§8.4 on a relay or storage node: the receipt exchange on its links, the upload of
// what it holds, and the operator's view in <dataDir>/bandwidth.json (node-local, §8.10 of the
// merged spec text). The daemons (relay/daemon.ts, storage/daemon.ts) make one and hand it to
// their circuit engine; protocol logic is in exchange.ts, link-receipts.ts and receipt-upload.ts.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Ed25519KeyPair } from '../crypto/primitives';
import type { Cell } from '../wire/cell';
import type { Channel } from '../link/channel';
import type { AuthorityInfo } from '../dir/authorities';
import type { VerifiedConsensus } from '../dir/types';
import { silentLogger, type Logger } from '../ops/log';
import type { Registry } from '../ops/metrics';
import { writeFileAtomic } from '../ops/fsutil';
import { int, noUnknownKeys, optObj } from '../dir/config-fields';
import { EpochTotals } from './counters';
import { decodeReceipt, verifyReceipt, RECEIPT_LEN } from './receipt';
import { ReceiptExchange } from './exchange';
import { ReceiptUploader } from './receipt-upload';
import { ReceiptMetrics } from './receipt-metrics';

export const BANDWIDTH_STATUS_FILE = 'bandwidth.json';
/** Countersigned receipts not yet delivered everywhere, kept across a restart (records back to back). */
export const HELD_RECEIPTS_FILE = 'receipts-held.bin';
/** Epochs kept in bandwidth.json. */
export const STATUS_EPOCHS = 48;

/** Node-local knobs (relay/config.ts and storage/config.ts `receipts`). */
export interface ReceiptSettings {
  /** Max random delay of the boundary PROPOSE, seconds (capped at P/4). Default 30. */
  jitterSeconds: number;
  /** Answer timeout, seconds (capped at P). Default 60. */
  answerTimeoutSeconds: number;
  /** At shutdown, how long to wait for the answers to the closing proposals. Default 2000 ms. */
  shutdownGraceMs: number;
  /** Max random delay of an epoch's first upload to an authority, seconds (capped at P/4, SPEC §8.4.1). Default 60. */
  uploadJitterSeconds: number;
}
export const DEFAULT_RECEIPT_SETTINGS: ReceiptSettings = { jitterSeconds: 30, answerTimeoutSeconds: 60, shutdownGraceMs: 2000, uploadJitterSeconds: 60 };

/** The `receipts` config object of a relay or storage node; absent keys take their defaults, bad ones are named. */
export function parseReceiptSettings(v: unknown, key = 'receipts', file?: string): ReceiptSettings {
  const raw = optObj(v, key);
  noUnknownKeys(raw, Object.keys(DEFAULT_RECEIPT_SETTINGS), key, file);
  const d = DEFAULT_RECEIPT_SETTINGS;
  return {
    jitterSeconds: int(raw.jitterSeconds, `${key}.jitterSeconds`, 0, 3600, d.jitterSeconds),
    answerTimeoutSeconds: int(raw.answerTimeoutSeconds, `${key}.answerTimeoutSeconds`, 1, 3600, d.answerTimeoutSeconds),
    shutdownGraceMs: int(raw.shutdownGraceMs, `${key}.shutdownGraceMs`, 0, 60_000, d.shutdownGraceMs),
    uploadJitterSeconds: int(raw.uploadJitterSeconds, `${key}.uploadJitterSeconds`, 0, 3600, d.uploadJitterSeconds),
  };
}

/** The JSON shape of bandwidth.json (documented in the spec text; `bitcloud-relay status` reads it). */
export interface BandwidthStatus {
  version: 1;
  identity: string;
  periodSeconds: number | null;
  updatedAt: number;
  epochs: {
    epoch: number;
    receipts: number;
    cellsSent: number;
    cellsReceived: number;
    /** Distinct peers with a receipt in the epoch. */
    peers: number;
    byPeer: { peer: string; sent: number; received: number; receipts: number }[];
    uploaded: Record<string, number>;
    refused: Record<string, number>;
    pending: number;
    expired: number;
  }[];
  disagreements: Record<string, number>;
}

export interface NodeBandwidthOptions {
  identity: Ed25519KeyPair;
  dataDir: string;
  authorities: readonly AuthorityInfo[];
  /** P from the node's current verified consensus, or null. */
  periodSeconds: () => number | null;
  settings?: Partial<ReceiptSettings>;
  registry?: Registry;
  log?: Logger;
  now?: () => number;
  /** SPEC §8.3 step 13: whether a peer is listed in the node's current consensus (`listedIn`). */
  listed?: (fingerprint: string) => boolean;
}

/** SPEC §8.3 step 13: "listed in the current consensus", one fingerprint set per consensus. */
export function listedIn(consensus: () => VerifiedConsensus | null): (fingerprint: string) => boolean {
  let of: VerifiedConsensus | null = null;
  let set = new Set<string>();
  return (fp) => {
    const c = consensus();
    if (!c) return false;
    if (c !== of) { of = c; set = new Set(c.relays.map((r) => r.fingerprint)); }
    return set.has(fp);
  };
}

export class NodeBandwidth {
  readonly exchange: ReceiptExchange;
  readonly uploader: ReceiptUploader;
  readonly totals: EpochTotals;
  readonly metrics: ReceiptMetrics;
  private readonly settings: ReceiptSettings;
  private readonly disagreements: Record<string, number> = {};
  private readonly log: Logger;
  private readonly self: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly o: NodeBandwidthOptions) {
    this.log = o.log ?? silentLogger;
    this.settings = { ...DEFAULT_RECEIPT_SETTINGS, ...o.settings };
    this.metrics = o.registry ? ReceiptMetrics.for(o.registry) : new ReceiptMetrics();
    this.self = o.identity.publicKey.toString('hex');
    this.totals = new EpochTotals(this.self);
    this.uploader = new ReceiptUploader({
      authorities: () => o.authorities, periodSeconds: o.periodSeconds, now: o.now, metrics: this.metrics, log: this.log,
      startJitterMs: this.settings.uploadJitterSeconds * 1000,
    });
    this.metrics.heldReceipts = () => this.uploader.heldCount;
    this.exchange = new ReceiptExchange({
      identity: o.identity, periodSeconds: o.periodSeconds, now: o.now, metrics: this.metrics, log: this.log,
      jitterSeconds: this.settings.jitterSeconds, answerTimeoutSeconds: this.settings.answerTimeoutSeconds,
      onReceipt: (r) => { this.totals.add(r); this.uploader.add(r); },
      onDisagreement: (d) => { this.disagreements[d.reason] = (this.disagreements[d.reason] ?? 0) + 1; },
      onEpochEnd: () => { this.totals.prune(this.oldestKept()); void this.writeStatus(); },
      listed: o.listed,
    });
  }

  get statusFile(): string { return path.join(this.o.dataDir, BANDWIDTH_STATUS_FILE); }

  /** Count a link (only if both ends proved an identity). Call in the tick the link is handed over. */
  attach(ch: Channel): boolean { return this.exchange.attach(ch); }
  /** The CircuitSwitch onLinkCell hook. */
  onLinkCell(ch: Channel, cell: Cell): boolean { return this.exchange.onLinkCell(ch, cell); }

  /** Reload receipts held at the last shutdown, start the boundary timer and the uploader. */
  async start(): Promise<void> {
    await this.loadHeld();
    this.exchange.start();
    this.uploader.start();
  }

  /**
   * Before the node closes its links on purpose (shutdown), SPEC §8.3 steps 10–11: propose for the
   * current epoch on the links it opened (`channels`, default all) and send RECEIPT_REQUEST on every
   * link it accepted, then wait for the answers at most `shutdownGraceMs`.
   */
  async beforeClose(channels?: Iterable<Channel>): Promise<void> {
    await this.exchange.settleBeforeClose(this.settings.shutdownGraceMs, channels);
  }

  /**
   * Before closing one link it opened on purpose (an idle relay link, SPEC.md §1.9): SPEC §8.3
   * step 10, propose for the current epoch on it and wait for the answer at most `shutdownGraceMs`.
   * Resolves true when the link may close now: no cell was counted on it since the proposal's cut
   * (false: a circuit carried cells meanwhile, a segment that closing would leave unpaid). With no
   * consensus there is no epoch and nothing is proposed or cut: the link closes as without
   * receipts, whatever it counted (SPEC.md §1.9).
   */
  async beforeClosing(ch: Channel): Promise<boolean> {
    if (!this.o.periodSeconds()) return true;
    await this.exchange.proposeBeforeClose(this.settings.shutdownGraceMs, [ch]);
    return !this.exchange.segmentCounted(ch);
  }

  /** Stop timers; keep undelivered receipts and write bandwidth.json one last time. */
  async stop(): Promise<void> {
    this.exchange.stop();
    await this.uploader.stop();
    await this.saveHeld();
    await this.writeStatus();
  }

  status(): BandwidthStatus {
    const epochs = new Set<number>([...this.totals.epochs()]);
    const cur = this.currentEpoch();
    for (let e = cur - STATUS_EPOCHS; e <= cur; e++) if (this.uploader.status(e)) epochs.add(e);
    const list = [...epochs].sort((a, b) => a - b).slice(-STATUS_EPOCHS).map((epoch) => {
      const byPeer = [...this.totals.peers(epoch)].map(([peer, t]) => ({ peer, sent: t.sent, received: t.received, receipts: t.receipts }));
      const up = this.uploader.status(epoch);
      return {
        epoch,
        receipts: byPeer.reduce((n, p) => n + p.receipts, 0),
        cellsSent: byPeer.reduce((n, p) => n + p.sent, 0),
        cellsReceived: byPeer.reduce((n, p) => n + p.received, 0),
        peers: byPeer.length,
        byPeer,
        uploaded: up?.uploaded ?? {}, refused: up?.refused ?? {}, pending: up?.pending ?? 0, expired: up?.expired ?? 0,
      };
    });
    return { version: 1, identity: this.self, periodSeconds: this.o.periodSeconds(), updatedAt: (this.o.now ?? Date.now)(), epochs: list, disagreements: { ...this.disagreements } };
  }

  /** Written atomically, one write at a time (boundary and shutdown). */
  writeStatus(): Promise<void> {
    this.writing = this.writing.then(() => writeFileAtomic(this.statusFile, JSON.stringify(this.status(), null, 1) + '\n'))
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'writing bandwidth.json failed'));
    return this.writing;
  }

  private currentEpoch(): number {
    const P = this.o.periodSeconds();
    return P ? Math.floor((this.o.now ?? Date.now)() / 1000 / P) : 0;
  }

  private oldestKept(): number { return this.currentEpoch() - STATUS_EPOCHS; }

  private async saveHeld(): Promise<void> {
    const held = this.uploader.held();
    const file = path.join(this.o.dataDir, HELD_RECEIPTS_FILE);
    try {
      if (held.length) await writeFileAtomic(file, Buffer.concat(held), 0o600);
      else await fs.rm(file, { force: true });
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'saving held receipts failed');
    }
  }

  /**
   * Receipts kept at the last shutdown go back to the uploader (replays count as delivered).
   * SPEC §8.4.1 restart: the file is fixed-size records back to back, so each record is judged on
   * its own; one that does not parse, whose signatures do not verify, or that this node is not
   * party to is dropped (and counted in the log), never the records around it. A torn tail (fewer
   * than 224 bytes) is dropped too.
   */
  private async loadHeld(): Promise<void> {
    const file = path.join(this.o.dataDir, HELD_RECEIPTS_FILE);
    let bytes: Buffer;
    try { bytes = await fs.readFile(file); } catch { return; }
    const n = Math.floor(bytes.length / RECEIPT_LEN);
    let kept = 0, dropped = bytes.length % RECEIPT_LEN === 0 ? 0 : 1;
    for (let i = 0; i < n; i++) {
      try {
        const r = decodeReceipt(bytes.subarray(i * RECEIPT_LEN, (i + 1) * RECEIPT_LEN));
        if (!verifyReceipt(r)) { dropped++; continue; }
        this.totals.add(r); // throws RECEIPT_WRONG_KEY for a receipt this node is not party to
        this.uploader.add(r);
        kept++;
      } catch {
        dropped++;
      }
    }
    if (dropped > 0) this.log.warn({ receipts: kept, dropped }, 'held receipts: unusable records dropped');
    if (kept > 0) this.log.info({ receipts: kept }, 'held receipts reloaded for upload');
  }
}
