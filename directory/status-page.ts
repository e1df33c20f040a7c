// The human status page (GET /) and its JSON twin (GET /bitcloud/status).
import { escapeHtml } from '../src/dir/http-serve';
import { ALL_FLAGS } from '../src/dir/types';
import { VERSION } from '../src/ops/version';
import type { Authority } from './authority';
import fs from 'node:fs';
import path from 'node:path';
import { JS_TYPE, uplotFiles, type StaticFiles } from '../src/ops/static-files';
import { fileURLToPath } from 'node:url';
import type { HistoryJson } from './status-history';
import { isoTime } from '../src/ops/log';

let statics: StaticFiles | null = null;
/** The page's plotting code, read once: uPlot from its package, our script beside this file. */
export function STATIC_FILES(): StaticFiles {
  if (statics) return statics;
  const out: StaticFiles = { ...uplotFiles() };
  const here = path.dirname(fileURLToPath(import.meta.url));
  try { out['/static/status-plots.js'] = { type: JS_TYPE, body: fs.readFileSync(path.join(here, 'static', 'status-plots.js')) }; } catch { /* missing */ }
  statics = out;
  return out;
}

/** The history as tables (what the page shows with JavaScript off). */
function historyTables(h: HistoryJson): string {
  const last = h.samples.slice(-12).reverse();
  const rows = last.map((s) => {
    return `<tr><td>${new Date(s.t).toISOString()}</td><td>${s.relays}</td><td>${s.storage}</td><td>${s.provenEpoch ?? '–'}</td><td>${s.provenTotal}</td></tr>`;
  }).join('\n');
  const blocks = h.blocks.slice(-12).reverse().map((b) => `<tr><td>${b.height}</td><td>${b.epoch}</td><td>${b.minted}</td></tr>`).join('\n');
  return `<h2>History</h2>
<div id="plots"><p id="plots-error"></p><div id="plot-relays" class="plot"></div><div id="plot-proven" class="plot"></div><div id="plot-weights" class="plot"></div><div id="plot-share" class="plot"></div><div id="plot-minted" class="plot"></div></div>
<h3>Last consensuses (of ${h.samples.length} kept)</h3>
<table><tr><th>valid after</th><th>relays</th><th>storage nodes</th><th>proven epoch</th><th>total proven cells</th></tr>
${rows}
</table>
<h3>Last reward blocks (of ${h.blocks.length} kept)</h3>
<table><tr><th>height</th><th>epoch</th><th>units minted</th></tr>
${blocks}
</table>`;
}

export function statusJson(a: Authority): Record<string, unknown> {
  const c = a.published?.info;
  const s = a.statusSnapshot();
  return {
    identity: a.config.identity,
    version: VERSION,
    periodSeconds: a.config.periodSeconds,
    authorities: a.config.authorities.map((x) => ({ name: x.name, identity: x.fingerprint })),
    descriptorsKnown: s.known,
    relaysRunning: s.running,
    votePeriod: s.votePeriod,
    votesHeld: s.votesHeld,
    pendingSigners: s.pendingSigners,
    consensus: c ? {
      validAfter: c.validAfter, freshUntil: c.freshUntil, validUntil: c.validUntil,
      relays: c.relays.length, signers: c.signers, voters: c.voters, digest: c.digest.toString('hex'),
      provenEpoch: c.provenEpoch,
    } : null,
    bandwidth: bandwidthStatus(a),
    rewards: a.rewardsStatus,
  };
}

/**
 * SPEC.md §8.5 (informative): what this authority measured last (epoch, receipts, each relay's
 * proven cells and bytes/s) and the proven cells the published consensus carries per relay.
 */
function bandwidthStatus(a: Authority): Record<string, unknown> {
  const m = a.measurement.lastMeasurement;
  const c = a.published?.info;
  return {
    lastMeasuredEpoch: m?.epoch ?? null,
    receiptsMeasured: m?.receipts ?? 0,
    epochsHeld: a.measurement.epochsHeld,
    measured: m ? Object.fromEntries([...m.relays].map(([fp, r]) => [fp, { provenCells: r.cells, bytesPerSecond: r.bytesPerSecond, weightBytesPerSecond: r.weightBytesPerSecond, paidCells: r.paidCells, owedCells: r.owedCells, limitedBy: r.limitedBy }])) : {},
    owedPairs: a.measurement.owed?.leaving.size ?? 0,
    // SPEC.md §8.12: this authority's capacity probes (the figure its weights use, and the probes).
    probes: a.config.probe.enabled ? a.probes.status() : null,
    consensusProven: c && c.provenEpoch !== null
      ? { epoch: c.provenEpoch, relays: Object.fromEntries(c.relays.filter((r) => r.proven > 0).map((r) => [r.fingerprint, r.proven])) }
      : null,
  };
}

function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return `${s} s`;
  if (Math.abs(s) < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** SPEC.md §10.6: what a storage node enforces: its moderators' fingerprints, or "unmoderated". */
function moderation(r: { roles: readonly string[]; unmoderated: boolean; moderators: readonly string[] }): string {
  if (!r.roles.includes('storage')) return '';
  return r.unmoderated ? 'unmoderated' : r.moderators.map((m) => `<code title="${m}">${m.slice(0, 16)}…</code>`).join('<br>');
}

/** SPEC.md §8.7: where this authority's reward chain stands (informative). */
function rewardsLine(a: Authority): string {
  const r = a.rewardsStatus;
  if (!r) return '';
  const tip = r.height < 0 ? 'empty' : `height ${r.height}, last block for epoch ${r.tipEpoch}`;
  const p = r.pending && !r.pending.published ? `; block ${r.pending.height} (epoch ${r.pending.epoch}) being signed by ${r.pending.signers.length} of ${a.config.authorities.length}` : '';
  return `<p>Reward chain: ${tip}${p}. Verify it with <code>bitcloud rewards</code>.</p>`;
}

export function renderStatusPage(a: Authority): string {
  const now = Date.now();
  const c = a.published?.info;
  const names = new Map(a.config.authorities.map((x) => [x.fingerprint, x.name]));
  const s = a.statusSnapshot();
  const e = escapeHtml;
  const mine = a.measurement.lastMeasurement;
  const provenCell = (fp: string, proven: number) => `${c?.provenEpoch !== null ? proven : '–'}${mine?.relays.has(fp) ? ` / ${mine.relays.get(fp)!.cells}` : ''}`;
  const rows = (c?.relays ?? []).map((r) => `<tr><td>${e(r.nickname)}</td><td><code>${r.fingerprint.slice(0, 16)}…</code></td>`
    + `<td>${e(r.address)}:${r.orPort}${r.dirPort ? ` / dir ${r.dirPort}` : ''}${r.storagePort ? ` / storage ${r.storagePort}` : ''}</td>`
    + `<td>${ALL_FLAGS.filter((f) => r.flags.has(f)).join(' ')}</td><td>${r.weight}</td><td>${provenCell(r.fingerprint, r.proven)}</td><td>${e(r.roles.join(', '))}</td><td>${moderation(r)}</td><td>${e(r.version)}</td></tr>`).join('\n');
  const consensus = c
    ? `<p>Consensus valid after ${isoTime(c.validAfter)} (age ${ago(now - c.validAfter)}), fresh until ${isoTime(c.freshUntil)}, valid until ${isoTime(c.validUntil)}${now > c.freshUntil ? ' — <strong>not fresh</strong>' : ''}.</p>
<p>Signed by ${c.signers.length} of ${a.config.authorities.length}: ${c.signers.map((f) => e(names.get(f) ?? f.slice(0, 16))).join(', ')}. Digest <code>${c.digest.toString('hex')}</code>.</p>`
    : '<p><strong>No consensus published yet.</strong></p>';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Bitcloud directory authority</title>
<link rel="stylesheet" href="/static/uplot.min.css">
<script src="/static/uplot.min.js" defer></script><script src="/static/status-plots.js" defer></script>
<style>.plot{margin:1em 0}body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}code{font-size:90%}</style>
</head><body>
<h1>Bitcloud directory authority ${e(names.get(a.config.identity) ?? '')}</h1>
<p>Identity <code>${a.config.identity}</code>, software ${e(VERSION)}, period ${a.config.periodSeconds} s.</p>
${consensus}
<p>Descriptors known: ${s.known}; reachable at last test: ${s.running}. Votes held this period: ${s.votesHeld.length} of ${a.config.authorities.length}.</p>
${rewardsLine(a)}
<h2>Relays in the consensus (${c?.relays.length ?? 0})</h2>
<table><tr><th>nickname</th><th>fingerprint</th><th>address</th><th>flags</th><th>weight (KB/s)</th><th title="proven cells in the consensus's proven epoch / as this authority measured its last epoch">proven (epoch ${c?.provenEpoch ?? '–'} / mine ${mine?.epoch ?? '–'})</th><th>roles</th><th>moderators</th><th>version</th></tr>
${rows}
</table>
${historyTables(a.history.toJSON())}
<p><a href="/bitcloud/status/history">history JSON</a> · <a href="/bitcloud/status">status JSON</a> · metrics: on the operator's metrics port, not here</p>
</body></html>
`;
}

/** SPEC.md §6.10: how long a built status page is served again (ms of a monotonic clock). */
export const STATUS_PAGE_CACHE_MS = 1_000;

/**
 * SPEC.md §6.10: the status page `GET /` serves, and its JSON twin `GET /bitcloud/status`, each
 * built at most once per STATUS_PAGE_CACHE_MS and again at once when a new consensus is published,
 * so a client asking for either in a loop does not make the authority build it (a walk over every
 * relay's measurement and probes) for each request.
 */
export class StatusPageCache {
  private last: Built<string> | null = null;
  private lastJson: Built<Buffer> | null = null;
  constructor(
    private readonly render: (a: Authority) => string = renderStatusPage,
    private readonly clock: () => number = () => performance.now(),
    private readonly renderJson: (a: Authority) => Buffer = (a) => Buffer.from(JSON.stringify(statusJson(a)), 'utf8'),
  ) {}

  page(a: Authority): string {
    return (this.last = this.fresh(this.last, a, this.render)).body;
  }

  /** The JSON text `GET /bitcloud/status` answers (statusJson), under the page's rule. */
  json(a: Authority): Buffer {
    return (this.lastJson = this.fresh(this.lastJson, a, this.renderJson)).body;
  }

  private fresh<T>(last: Built<T> | null, a: Authority, build: (a: Authority) => T): Built<T> {
    const now = this.clock();
    const published = a.published;
    if (last && last.published === published && now - last.at < STATUS_PAGE_CACHE_MS) return last;
    return { body: build(a), at: now, published };
  }
}

interface Built<T> { body: T; at: number; published: Authority['published'] }
