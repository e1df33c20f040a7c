// `npm run bench`: runs every benchmark module and prints JSON and a table.
// Flags (`npm run bench -- --help`): --only NAME[,NAME] to run some modules; --quick for short runs;
// --json-only; --compare-tor [best] (circuit); --steps A,B (hostile); --dry-run. The modules get
// their options from the one parse (scripts/bench/options.ts), in any spelling yargs takes.
import { hideBin } from 'yargs/helpers';
import { parseBenchOptions } from './bench/options';
import type { BenchModule, BenchRow } from './bench/types';

const registry: Array<() => Promise<{ default: BenchModule }>> = [
  // Each module is added here as it lands.
  () => import('./bench/crypto'),
  () => import('./bench/link'),
  () => import('./bench/storage'),
  () => import('./bench/directory'),
  () => import('./bench/bandwidth'),
  () => import('./bench/circuits-inprocess'),
  () => import('./bench/circuit'),
  () => import('./bench/moderation'),
  () => import('./bench/hostile'),
  () => import('./bench/gateway'),
  () => import('./bench/storage-hidden'),
  () => import('./bench/floor'),
];

/** The module names, in registry order (each module's `name`; loading one runs nothing). */
async function moduleNames(): Promise<string[]> {
  return Promise.all(registry.map(async (load) => (await load()).default.name));
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

async function main(): Promise<void> {
  const names = await moduleNames();
  const { only, quick, jsonOnly, compareTor, steps, dryRun } = await parseBenchOptions(hideBin(process.argv), names);
  if (dryRun) {
    console.log(JSON.stringify({ modules: names.filter((n) => !only || only.includes(n)), run: { quick, compareTor, steps }, jsonOnly }));
    return;
  }
  const rows: BenchRow[] = [];
  const extra: Record<string, unknown> = {};
  for (const load of registry) {
    const mod = (await load()).default;
    if (only && !only.includes(mod.name)) continue;
    process.stderr.write(`bench: ${mod.name}...\n`);
    const r = await mod.run({ quick, compareTor, steps });
    if (Array.isArray(r)) rows.push(...r);
    else { rows.push(...r.rows); Object.assign(extra, r.json); }
  }
  const result = {
    machine: { node: process.version, platform: process.platform, arch: process.arch, cpus: (await import('node:os')).cpus().length },
    at: new Date().toISOString(),
    rows,
    ...extra,
  };
  console.log(JSON.stringify(result, null, 2));
  if (jsonOnly) return;
  const header = ['group', 'measure', 'value', 'unit', 'baseline (same run)', 'ratio'];
  const table = rows.map((r) => [
    r.group, r.name, fmt(r.value), r.unit,
    r.baseline ? `${r.baseline.name}: ${fmt(r.baseline.value)} ${r.baseline.unit}` : '',
    r.baseline && r.baseline.value ? fmt(r.value / r.baseline.value) : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  console.log('\n' + line(header));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const t of table) console.log(line(t));
}

await main();
