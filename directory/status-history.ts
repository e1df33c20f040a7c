// SPEC.md §6.10 (informative): the authority's own history for its status page plots. One sample
// per newly published consensus (relays and storage nodes listed, each relay's weight and proven
// cells), and one per reward block appended (height, epoch, units minted). Bounded (the newest
// MAX_SAMPLES / MAX_BLOCKS; per sample the SAMPLE_RELAYS largest weights and proven counts, not
// every relay's; a nickname is kept only while a retained sample lists its relay), kept in
// `<dataDir>/status-history.json`, written atomically.
// Serialised once per change (SPEC.md §6.10): GET /bitcloud/status/history and the file share
// those bytes, so a client asking in a loop costs no serialisation and its slow reads pin no copy.
import fs from 'node:fs';
import path from 'node:path';
import type { VerifiedConsensus } from '../src/dir/types';
import { writeFileAtomic } from '../src/ops/fsutil';
import type { Logger } from '../src/ops/log';

export const HISTORY_FILE = 'status-history.json';
export const MAX_SAMPLES = 720;
export const MAX_BLOCKS = 720;
/**
 * SPEC.md §6.10: the relays a sample lists in `weights`, and those it lists in `proven` (the largest
 * of each, ties by fingerprint). Listing every relay made the history MAX_SAMPLES × the relays of a
 * consensus (up to 100 000, §6.7.2): hundreds of megabytes held, written on each change and
 * answered to anyone, and past V8's longest string JSON.stringify threw while publishing.
 */
export const SAMPLE_RELAYS = 32;

export interface HistorySample {
  /** validAfter of the consensus, ms. */
  t: number;
  relays: number;
  storage: number;
  provenEpoch: number | null;
  /** fingerprint → consensus weight (KB/s), of the SAMPLE_RELAYS relays of largest weight. */
  weights: Record<string, number>;
  /** fingerprint → proven cells of provenEpoch (the SAMPLE_RELAYS relays with most; only relays with some). */
  proven: Record<string, number>;
  /** Proven cells of provenEpoch, all relays together. */
  provenTotal: number;
}

export interface HistoryBlock { t: number; height: number; epoch: number; minted: number }

export interface HistoryJson {
  samples: HistorySample[];
  blocks: HistoryBlock[];
  /** fingerprint → nickname, as last seen. */
  names: Record<string, string>;
}

export class StatusHistory {
  private samples: HistorySample[] = [];
  private blocks: HistoryBlock[] = [];
  private names: Record<string, string> = {};
  /**
   * SPEC.md §6.10: fingerprint → number of retained samples that list it. A name whose count
   * falls to 0 as old samples are pruned is forgotten, so `names` is bounded by the relays of the
   * retained samples, not by every relay ever seen.
   */
  private listed = new Map<string, number>();
  /** The JSON of the history as it stands, made at the first need after a change. */
  private text: Buffer | null = null;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly dataDir: string, private readonly log?: Logger) {}

  /** Read the saved history; a missing or unreadable file starts an empty one. */
  load(): this {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(this.dataDir, HISTORY_FILE), 'utf8')) as Partial<HistoryJson>;
      // SPEC.md §6.10: a record whose fields are not what this class writes is dropped, not kept to
      // make the page (new Date(t).toISOString()) or the plots (x.weights[fp]) throw on each request.
      if (Array.isArray(j.samples)) this.samples = j.samples.map(readSample).filter((s) => s !== null).slice(-MAX_SAMPLES);
      if (Array.isArray(j.blocks)) this.blocks = j.blocks.map(readBlock).filter((b) => b !== null).slice(-MAX_BLOCKS);
      if (j.names && typeof j.names === 'object') this.names = j.names;
    } catch { /* none yet */ }
    this.listed = new Map();
    for (const s of this.samples) this.count(s, 1);
    // SPEC.md §6.10: names of relays in no retained sample (a file written before they were
    // pruned, or cut to MAX_SAMPLES here) are not kept.
    const names: Record<string, string> = {};
    for (const [fp, n] of Object.entries(this.names)) if (this.listed.has(fp) && typeof n === 'string') names[fp] = n;
    this.names = names;
    this.text = null;
    return this;
  }

  onConsensus(info: VerifiedConsensus): void {
    if (this.samples.length && this.samples[this.samples.length - 1].t >= info.validAfter) return;
    // SPEC.md §6.10: the SAMPLE_RELAYS largest weights and proven counts, and the proven total.
    const weights = largest(info.relays.map((r) => [r.fingerprint, r.weight]));
    const proven = largest(info.relays.filter((r) => r.proven > 0).map((r) => [r.fingerprint, r.proven]));
    const provenTotal = info.relays.reduce((a, r) => a + (r.proven > 0 ? r.proven : 0), 0);
    for (const r of info.relays) if (r.fingerprint in weights || r.fingerprint in proven) this.names[r.fingerprint] = r.nickname;
    const sample: HistorySample = {
      t: info.validAfter, relays: info.relays.length,
      storage: info.relays.filter((r) => r.flags.has('Storage')).length,
      provenEpoch: info.provenEpoch, weights, proven, provenTotal,
    };
    this.samples.push(sample);
    this.count(sample, 1);
    if (this.samples.length > MAX_SAMPLES) {
      for (const old of this.samples.splice(0, this.samples.length - MAX_SAMPLES)) this.count(old, -1);
    }
    this.changed();
  }

  onBlock(b: { height: number; epoch: number; minted: bigint | number }, t = Date.now()): void {
    if (this.blocks.some((x) => x.height === b.height)) return;
    this.blocks.push({ t, height: b.height, epoch: b.epoch, minted: Number(b.minted) });
    this.blocks.sort((x, y) => x.height - y.height);
    if (this.blocks.length > MAX_BLOCKS) this.blocks.splice(0, this.blocks.length - MAX_BLOCKS);
    this.changed();
  }

  toJSON(): HistoryJson {
    return { samples: this.samples, blocks: this.blocks, names: this.names };
  }

  /**
   * SPEC.md §6.10: the history's JSON, what GET /bitcloud/status/history answers. Serialised once
   * per change and the same Buffer handed to every request until the next change: the history
   * holds 64 relays' figures in each of up to 720 samples (megabytes), and
   * the route is unauthenticated.
   */
  json(): Buffer {
    return (this.text ??= Buffer.from(JSON.stringify(this.toJSON()), 'utf8'));
  }

  /** Count `s`'s relays in or out of `listed`; a relay no retained sample lists loses its name. */
  private count(s: HistorySample, d: 1 | -1): void {
    if (!s.weights || typeof s.weights !== 'object') return;
    for (const fp of new Set([...Object.keys(s.weights), ...Object.keys(s.proven ?? {})])) {
      const n = (this.listed.get(fp) ?? 0) + d;
      if (n > 0) { this.listed.set(fp, n); continue; }
      this.listed.delete(fp);
      delete this.names[fp];
    }
  }

  private changed(): void {
    this.text = null;
    this.save();
  }

  private save(): void {
    const text = this.json();
    this.saving = this.saving.then(() => writeFileAtomic(path.join(this.dataDir, HISTORY_FILE), text, 0o644))
      .catch((e) => this.log?.warn({ err: (e as Error).message }, 'saving the status history failed'));
  }

  /** Wait for pending writes (shutdown, tests). */
  flush(): Promise<void> { return this.saving; }
}

/** SPEC.md §6.10: the SAMPLE_RELAYS entries of largest value (ties: the smaller fingerprint), as a record. */
function largest(entries: Array<[string, number]>): Record<string, number> {
  entries.sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return Object.fromEntries(entries.slice(0, SAMPLE_RELAYS));
}

/** A time a Date holds (ms; new Date(t).toISOString() throws past ±8.64e15). */
const isTime = (v: unknown): v is number => Number.isSafeInteger(v) && Math.abs(v as number) <= 8.64e15;
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** fingerprint → number, its entries that are finite numbers; null when `v` is no plain object. */
function numbers(v: unknown): Record<string, number> | null {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'number' && Number.isFinite(x)) out[k] = x;
  return out;
}

/**
 * SPEC.md §6.10: a sample read back from the file, or null when it is not one this class writes;
 * one written before samples were cut to SAMPLE_RELAYS relays is cut down (its provenTotal, when
 * it has none, is the sum of what it lists).
 */
function readSample(v: unknown): HistorySample | null {
  if (!v || typeof v !== 'object') return null;
  const s = v as Record<string, unknown>;
  const weights = numbers(s.weights);
  const proven = numbers(s.proven);
  if (!isTime(s.t) || !isCount(s.relays) || !isCount(s.storage) || weights === null || proven === null) return null;
  if (s.provenEpoch !== null && !isCount(s.provenEpoch)) return null;
  // `proven` lists only relays with some (as onConsensus writes it): the plots take a list of
  // SAMPLE_RELAYS as one that leaves relays with cells out.
  for (const [k, x] of Object.entries(proven)) if (!(x > 0)) delete proven[k];
  const provenTotal = isCount(s.provenTotal) ? s.provenTotal : Object.values(proven).reduce((a, b) => a + b, 0);
  return { t: s.t, relays: s.relays, storage: s.storage, provenEpoch: s.provenEpoch as number | null, weights: largest(Object.entries(weights)), proven: largest(Object.entries(proven)), provenTotal };
}

/** SPEC.md §6.10: a reward block record read back from the file, or null when it is not one. */
function readBlock(v: unknown): HistoryBlock | null {
  if (!v || typeof v !== 'object') return null;
  const b = v as Record<string, unknown>;
  if (!isTime(b.t) || !isCount(b.height) || !isCount(b.epoch) || typeof b.minted !== 'number' || !Number.isFinite(b.minted)) return null;
  return { t: b.t, height: b.height, epoch: b.epoch, minted: b.minted };
}
