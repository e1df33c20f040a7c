// The options of `npm run bench` (scripts/bench.ts), parsed once: the modules get theirs from here
// (BenchRunOptions), not by looking through process.argv themselves.
import yargs from 'yargs';
import type { TorMode } from './types';

export interface BenchOptions {
  /** --only: the modules to run (undefined: all). */
  only: string[] | undefined;
  quick: boolean;
  jsonOnly: boolean;
  /** circuit: --compare-tor [best|default] (null without it). */
  compareTor: TorMode | null;
  /** hostile: --steps A,B (null without it: every step). */
  steps: string[] | null;
  /** --dry-run: print the modules that would run and the options they would get, run nothing. */
  dryRun: boolean;
}

const list = (v: string): string[] => v.split(',').map((n) => n.trim()).filter((n) => n.length > 0);

/**
 * The options, checked before anything runs: an unknown option, a flag without its value or a
 * module name (of `names`) that does not exist stops here with the usage, instead of running every
 * module. Every spelling yargs takes (`--compare-tor best`, `--compare-tor=best`, `--compareTor best`)
 * gives the same values. `argv`: the arguments after the script (hideBin(process.argv)).
 */
export async function parseBenchOptions(argv: readonly string[], names: readonly string[]): Promise<BenchOptions> {
  const a = await yargs([...argv])
    .scriptName('npm run bench --')
    .usage('$0 [options]\n\nRuns the benchmark modules and prints JSON, then a table (each figure beside a baseline measured in the same run).')
    .option('only', { type: 'string', requiresArg: true, describe: `Run only these modules, comma-separated: ${names.join(', ')}` })
    .option('quick', { type: 'boolean', default: false, describe: 'Shorter runs (fewer bytes and rounds)' })
    .option('json-only', { type: 'boolean', default: false, describe: 'Print the JSON only, no table' })
    .option('compare-tor', { type: 'string', describe: 'circuit: also run C tor\'s testnet on this machine and print the ratios; "best" for its fastest settings (CONFLUX=0, Schedulers Vanilla), else its defaults' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'Print, as JSON, the modules that would run and the options they would get; run nothing' })
    .option('steps', { type: 'string', requiresArg: true, describe: 'hostile: run only the steps whose names contain these, comma-separated (create2, circuits, resolve, http, storage)' })
    .check((x) => {
      const want = x.only === undefined ? undefined : list(x.only);
      if (want !== undefined && !want.length) throw new Error('--only wants at least one module name');
      const unknown = want?.filter((n) => !names.includes(n)) ?? [];
      if (unknown.length) throw new Error(`no benchmark module named ${unknown.join(', ')}; the modules: ${names.join(', ')}`);
      const tor = x['compare-tor'];
      if (tor !== undefined && tor !== '' && tor !== 'best' && tor !== 'default') throw new Error('--compare-tor takes "best", "default" or nothing');
      if (x.steps !== undefined && !list(x.steps).length) throw new Error('--steps wants at least one step name');
      return true;
    })
    .strict()
    .help()
    .parseAsync();
  const tor = a['compare-tor'];
  return {
    only: a.only === undefined ? undefined : list(a.only),
    quick: a.quick,
    jsonOnly: a['json-only'],
    compareTor: tor === undefined ? null : tor === 'best' ? 'best' : 'default',
    steps: a.steps === undefined ? null : list(a.steps),
    dryRun: a['dry-run'],
  };
}
