// SPEC.md §6.10 "MetricsPort" (informative): the relay's own status page, served beside /metrics
// on its MetricsPort only (127.0.0.1 unless the operator opens it):
//   GET /             HTML: a table per epoch (works with JavaScript off) and a uPlot plot
//   GET /status.json  the same history as JSON
//   GET /static/{uplot.min.js,uplot.min.css,relay-status.js}  the plotting code (no CDN)
// Per epoch: the cells its peers countersigned (<dataDir>/bandwidth.json, SPEC.md §8.10), the cells
// the authorities proved (the consensus `proven` column for its provenEpoch, §8.6), and the units
// the reward chain allocated to it in blocks for that epoch (§8.7.3). The newest MAX_EPOCHS epochs
// are kept in `<dataDir>/relay-status.json`, written atomically.
import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { escapeHtml, sendJsonText } from '../src/dir/http-serve';
import type { VerifiedConsensus } from '../src/dir/types';
import { writeFileAtomic } from '../src/ops/fsutil';
import type { Logger } from '../src/ops/log';
import { JS_TYPE, sendHtml, serveStaticFile, uplotFiles, type StaticFiles } from '../src/ops/static-files';

export const RELAY_STATUS_FILE = 'relay-status.json';
export const MAX_EPOCHS = 720;

export interface EpochRow {
  epoch: number;
  /** Cells sent + received that peers countersigned (null: none recorded). */
  countersigned: number | null;
  /** Cells the authorities proved for this epoch (null: no consensus seen for it). */
  proven: number | null;
  /** Units allocated to this relay by reward blocks for this epoch (decimal string; null: none seen). */
  earned: string | null;
  /** Heights of those blocks. */
  blocks: number[];
}

export interface RelayStatusJson {
  fingerprint: string;
  updated: number;
  /** Balance in the reward chain last read (units, decimal), or null. */
  balance: string | null;
  epochs: EpochRow[];
}

/** One block's allocation to this relay, as read from the verified reward chain. */
export interface Allocation { height: number; epoch: number; units: bigint }

export interface RelayStatusSources {
  dataDir: string;
  fingerprint: () => string;
  consensus: () => VerifiedConsensus | null;
  /** This relay's allocations in the verified reward chain and its balance; may throw (not available). */
  rewards?: () => Promise<{ allocations: Allocation[]; balance: bigint }>;
  log?: Logger;
  /** Re-read on a request when the last refresh is older than this (ms). */
  refreshMs?: number;
}

interface BandwidthFile { epochs?: { epoch: number; cellsSent: number; cellsReceived: number }[] }

export class RelayStatus {
  private rows = new Map<number, EpochRow>();
  private balance: string | null = null;
  private updated = 0;
  private refreshing: Promise<void> | null = null;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly src: RelayStatusSources) {}

  /** Read the saved history; a missing or unreadable file starts an empty one. */
  load(): this {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(this.src.dataDir, RELAY_STATUS_FILE), 'utf8')) as Partial<RelayStatusJson>;
      for (const r of Array.isArray(j.epochs) ? j.epochs : []) {
        if (r && Number.isSafeInteger(r.epoch)) this.rows.set(r.epoch, { epoch: r.epoch, countersigned: r.countersigned ?? null, proven: r.proven ?? null, earned: r.earned ?? null, blocks: Array.isArray(r.blocks) ? r.blocks : [] });
      }
      if (typeof j.balance === 'string') this.balance = j.balance;
      this.trim();
    } catch { /* none yet */ }
    return this;
  }

  private row(epoch: number): EpochRow {
    let r = this.rows.get(epoch);
    if (!r) { r = { epoch, countersigned: null, proven: null, earned: null, blocks: [] }; this.rows.set(epoch, r); }
    return r;
  }

  private trim(): void {
    const keys = [...this.rows.keys()].sort((a, b) => a - b);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_EPOCHS))) this.rows.delete(k);
  }

  /** The consensus's proven cells for this relay (SPEC.md §8.6). */
  onConsensus(c: VerifiedConsensus): void {
    if (c.provenEpoch === null) return;
    const me = c.relays.find((r) => r.fingerprint === this.src.fingerprint());
    this.row(c.provenEpoch).proven = me?.proven ?? 0;
    this.trim();
    this.save();
  }

  /** Re-read the countersigned counts, the consensus held and the reward chain (each part on its own). */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    try {
      const bw = JSON.parse(await fs.promises.readFile(path.join(this.src.dataDir, 'bandwidth.json'), 'utf8')) as BandwidthFile;
      for (const e of bw.epochs ?? []) {
        if (Number.isSafeInteger(e.epoch)) this.row(e.epoch).countersigned = (e.cellsSent ?? 0) + (e.cellsReceived ?? 0);
      }
    } catch { /* not written yet */ }
    const c = this.src.consensus();
    if (c && c.provenEpoch !== null) this.row(c.provenEpoch).proven = c.relays.find((r) => r.fingerprint === this.src.fingerprint())?.proven ?? 0;
    if (this.src.rewards) {
      try {
        const r = await this.src.rewards();
        const byEpoch = new Map<number, { units: bigint; blocks: number[] }>();
        for (const a of r.allocations) {
          const x = byEpoch.get(a.epoch) ?? { units: 0n, blocks: [] };
          x.units += a.units; x.blocks.push(a.height);
          byEpoch.set(a.epoch, x);
        }
        for (const [epoch, x] of byEpoch) { const row = this.row(epoch); row.earned = x.units.toString(); row.blocks = x.blocks; }
        this.balance = r.balance.toString();
      } catch (e) {
        this.src.log?.debug({ err: (e as Error).message }, 'relay status: reward chain not available');
      }
    }
    this.updated = Date.now();
    this.trim();
    this.save();
  }

  toJSON(): RelayStatusJson {
    return { fingerprint: this.src.fingerprint(), updated: this.updated, balance: this.balance, epochs: [...this.rows.values()].sort((a, b) => a.epoch - b.epoch) };
  }

  private save(): void {
    const text = JSON.stringify(this.toJSON());
    this.saving = this.saving.then(() => writeFileAtomic(path.join(this.src.dataDir, RELAY_STATUS_FILE), text, 0o644))
      .catch((e) => this.src.log?.warn({ err: (e as Error).message }, 'saving the relay status history failed'));
  }

  /** Wait for pending writes (shutdown, tests). */
  async flush(): Promise<void> { await this.refreshing; await this.saving; }

  /** The MetricsPort pages (for openMetricsPort): true when the request was answered. */
  readonly pages = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const p = (req.url ?? '').split('?')[0];
    if (p.startsWith('/static/')) return serveStaticFile(relayStaticFiles(), p, req, res);
    if (p !== '/' && p !== '/status.json') return false;
    if (Date.now() - this.updated > (this.src.refreshMs ?? 10_000)) await this.refresh();
    if (p === '/') { sendHtml(res, renderRelayStatusPage(this.toJSON())); return true; }
    // SPEC.md §6.10 "Status page headers": with nosniff, as every JSON answer.
    sendJsonText(res, 200, JSON.stringify(this.toJSON()));
    return true;
  };
}

/** The page's plot: countersigned and proven cells (left axis), units earned (right axis). */
const PLOT_JS = `(function () {
  var el = document.getElementById('plot');
  if (!el || typeof uPlot === 'undefined') return;
  fetch('/status.json').then(function (r) { return r.json(); }).then(function (j) {
    var rows = j.epochs;
    if (!rows.length) return;
    var num = function (v) { return v === null ? null : Number(v); };
    var data = [rows.map(function (r) { return r.epoch; }), rows.map(function (r) { return r.countersigned; }),
      rows.map(function (r) { return r.proven; }), rows.map(function (r) { return num(r.earned); })];
    new uPlot({ title: 'Per epoch', width: Math.min(900, el.clientWidth || 900), height: 300, scales: { x: { time: false } },
      axes: [{ label: 'epoch' }, { label: 'cells' }, { side: 1, scale: 'units', label: 'units' }],
      series: [{ label: 'epoch' }, { label: 'countersigned cells', stroke: '#1f77b4', spanGaps: true },
        { label: 'proven cells', stroke: '#2ca02c', spanGaps: true },
        { label: 'units earned', stroke: '#d62728', scale: 'units', paths: uPlot.paths.bars(), fill: 'rgba(214,39,40,0.3)' }] }, data, el);
  }).catch(function (e) { el.textContent = 'plot unavailable: ' + e; });
})();
`;

let statics: StaticFiles | null = null;
export function relayStaticFiles(): StaticFiles {
  statics ??= { ...uplotFiles(), '/static/relay-status.js': { type: JS_TYPE, body: Buffer.from(PLOT_JS) } };
  return statics;
}

const cell = (v: number | string | null) => (v === null ? '–' : escapeHtml(String(v)));

/** The HTML page: the table of the newest epochs (JavaScript off) and the plot (JavaScript on). */
export function renderRelayStatusPage(j: RelayStatusJson, shown = 48): string {
  const rows = j.epochs.slice(-shown).reverse().map((r) =>
    `<tr><td>${r.epoch}</td><td>${cell(r.countersigned)}</td><td>${cell(r.proven)}</td><td>${cell(r.earned)}</td><td>${r.blocks.map((b) => escapeHtml(String(b))).join(' ')}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bitcloud relay ${escapeHtml(j.fingerprint.slice(0, 16))}</title>
<link rel="stylesheet" href="/static/uplot.min.css">
<script src="/static/uplot.min.js" defer></script><script src="/static/relay-status.js" defer></script>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style>
</head><body>
<h1>Relay ${escapeHtml(j.fingerprint)}</h1>
<p>Balance in the reward chain: ${j.balance === null ? 'not available' : `${escapeHtml(j.balance)} units`}. Updated ${j.updated ? new Date(j.updated).toISOString() : 'never'}.
JSON: <a href="/status.json">/status.json</a>; metrics: <a href="/metrics">/metrics</a>.</p>
<div id="plot"></div>
<h2>Per epoch (newest ${Math.min(shown, j.epochs.length)} of ${j.epochs.length} kept)</h2>
<table id="epochs"><tr><th>epoch</th><th>countersigned cells</th><th>proven cells</th><th>units earned</th><th>reward blocks</th></tr>
${rows}
</table>
</body></html>
`;
}
