// `npm run bench`: runs every benchmark module and prints JSON and a table.
// Flags: --only NAME[,NAME] to run some modules; --quick for short runs; --json-only.
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
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

async function main(): Promise<void> {
  const only = arg('--only')?.split(',');
  const quick = process.argv.includes('--quick');
  const rows: BenchRow[] = [];
  const extra: Record<string, unknown> = {};
  for (const load of registry) {
    const mod = (await load()).default;
    if (only && !only.includes(mod.name)) continue;
    process.stderr.write(`bench: ${mod.name}...\n`);
    const r = await mod.run({ quick });
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
  if (process.argv.includes('--json-only')) return;
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
