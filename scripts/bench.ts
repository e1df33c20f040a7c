// `npm run bench`: runs every benchmark module and prints JSON and a table.
// Flags (`npm run bench -- --help`): --only NAME[,NAME] to run some modules; --quick for short runs;
// --json-only; --compare-tor [best] (circuit); --steps A,B (hostile).
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
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

/** The module names, in registry order (each module's `name`; loading one runs nothing). */
async function moduleNames(): Promise<string[]> {
  return Promise.all(registry.map(async (load) => (await load()).default.name));
}

/**
 * The options, checked before anything runs: an unknown option, a flag without its value or a
 * module name that does not exist stops here with the usage, instead of running every module.
 * The circuit and hostile modules read their own flags from process.argv; they are declared here
 * so that strict parsing lets them through.
 */
async function options(): Promise<{ only: string[] | undefined; quick: boolean; jsonOnly: boolean }> {
  const names = await moduleNames();
  const a = await yargs(hideBin(process.argv))
    .scriptName('npm run bench --')
    .usage('$0 [options]\n\nRuns the benchmark modules and prints JSON, then a table (each figure beside a baseline measured in the same run).')
    .option('only', { type: 'string', requiresArg: true, describe: `Run only these modules, comma-separated: ${names.join(', ')}` })
    .option('quick', { type: 'boolean', default: false, describe: 'Shorter runs (fewer bytes and rounds)' })
    .option('json-only', { type: 'boolean', default: false, describe: 'Print the JSON only, no table' })
    .option('compare-tor', { type: 'string', describe: 'circuit: also run C tor\'s testnet on this machine and print the ratios; "best" for its fastest settings (CONFLUX=0, Schedulers Vanilla), else its defaults' })
    .option('steps', { type: 'string', requiresArg: true, describe: 'hostile: run only the steps whose names contain these, comma-separated (create2, circuits, resolve, http, storage)' })
    .check((x) => {
      const want = x.only?.split(',').map((n) => n.trim()).filter((n) => n.length > 0);
      if (x.only !== undefined && !want?.length) throw new Error('--only wants at least one module name');
      const unknown = want?.filter((n) => !names.includes(n)) ?? [];
      if (unknown.length) throw new Error(`no benchmark module named ${unknown.join(', ')}; the modules: ${names.join(', ')}`);
      const tor = x['compare-tor'];
      if (tor !== undefined && tor !== '' && tor !== 'best' && tor !== 'default') throw new Error('--compare-tor takes "best", "default" or nothing');
      return true;
    })
    .strict()
    .help()
    .parseAsync();
  return { only: a.only?.split(',').map((n) => n.trim()).filter((n) => n.length > 0), quick: a.quick, jsonOnly: a['json-only'] };
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

async function main(): Promise<void> {
  const { only, quick, jsonOnly } = await options();
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
