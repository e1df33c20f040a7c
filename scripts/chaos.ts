// `npm run chaos`: the fault suite. Brings up the many-host test network (scripts/localnet.ts
// --hosts; on loopback when this machine cannot make namespaces, skipping the link faults and
// saying so), runs each scenario as a real fault on the real daemons, and prints one row per
// scenario: what was done, what was expected, what was observed, recovery time and bytes lost.
// The last line reads `chaos: S scenarios, P passed, B bytes lost`. Exit status 0 only when every
// scenario that ran passed and nothing was left behind (namespaces, links, processes).
// Each network's folder (configs, data, logs) is removed after it when what ran on it passed and
// its teardown left nothing; otherwise, or with --keep, it stays and its path is printed.
//
//   npm run chaos -- [--scenarios 1,3,4 | --only 10] [--json] [--loopback] [--period S] [--keep]
//   npm run chaos -- --soak MINUTES [--seed N]
//
// "Bytes lost" counts bytes the network accepted (a download it delivered as complete, a stored
// file) that did not come back intact; a stream cut with an error is not a loss, it is reported.
// See docs/chaos.md for the scenarios and the latest table.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { hostsSupported } from './localnet/hosts';
import { SCENARIOS as BASE, type Row, type Ctx, type Scenario } from './chaos/scenarios';
import { STORAGE_SCENARIOS } from './chaos/storage';
import { WEIGHT_SCENARIOS } from './chaos/weights';
import { soak, type SoakResult } from './chaos/soak';
import { startContentServer, startTestNet, type StartOptions, type TestNet } from './chaos/net';

const SCENARIOS = [...BASE, ...STORAGE_SCENARIOS, ...WEIGHT_SCENARIOS].sort((a, b) => Number(a.id) - Number(b.id));
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run chaos --')
  .option('scenarios', { type: 'string', alias: 'only', default: SCENARIOS.map((s) => s.id).join(','), describe: 'Which scenarios, by number (alias --only)' })
  .option('json', { type: 'boolean', default: false, describe: 'Print the rows as JSON' })
  .option('loopback', { type: 'boolean', default: false, describe: 'Run on 127.0.0.1 even where namespaces work' })
  .option('period', { type: 'number', default: 5, describe: 'Consensus period, seconds' })
  .option('soak', { type: 'number', describe: 'Instead of the scenarios: MINUTES of steady load with random faults, then the checks' })
  .option('seed', { type: 'number', describe: 'With --soak: the seed of the fault sequence (default: random, printed)' })
  .option('keep', { type: 'boolean', default: false, describe: 'Keep every network\'s folder (configs, data, logs), not only those of a failure' })
  .strict()
  .help()
  .parseAsync();

const wanted = new Set(String(argv.scenarios).split(',').map((s) => s.trim()).filter(Boolean));
const chosen = SCENARIOS.filter((s) => wanted.has(s.id));
const can = hostsSupported();
const hosts = !argv.loopback && can.ok;
const log = (s: string): void => { process.stderr.write(`chaos: ${s}\n`); };
if (!hosts) log(`running on loopback (${argv.loopback ? '--loopback' : can.why}): scenarios that need link faults are skipped`);

const rows: Row[] = [];
let soakResult = null as SoakResult | null;
const leftovers = { namespaces: 0, links: 0, processes: 0, teardown: '' };
const shared = argv.soak !== undefined ? [] : chosen.filter((s) => !s.ownNet);
const own = argv.soak !== undefined ? [] : chosen.filter((s) => s.ownNet);
let current: TestNet | null = null;
/** Stop the current network; true when its teardown left no namespace, link or process. */
const stopCurrent = async (): Promise<boolean> => {
  const n = current;
  current = null;
  if (!n) return true;
  const l = await n.stop();
  leftovers.namespaces += l.namespaces; leftovers.links += l.links; leftovers.processes += l.processes;
  leftovers.teardown = [leftovers.teardown, l.teardown].filter(Boolean).join('; ');
  return l.namespaces + l.links + l.processes === 0;
};
process.on('SIGINT', () => void stopCurrent().then(() => process.exit(130)));
process.on('SIGTERM', () => void stopCurrent().then(() => process.exit(143)));

async function runOne(s: Scenario, ctx: Ctx): Promise<void> {
  if (s.needsRoot && process.getuid?.() !== 0) {
    rows.push({ id: s.id, name: s.name, done: 'skipped', expected: s.expected, observed: 'skipped: needs root (mount)', recoverySeconds: null, bytesLost: 0, passed: false, skipped: true });
    return;
  }
  if (s.needsHosts && !hosts) {
    rows.push({ id: s.id, name: s.name, done: 'skipped', expected: s.expected, observed: 'skipped: needs network namespaces (link faults)', recoverySeconds: null, bytesLost: 0, passed: false, skipped: true });
    return;
  }
  log(`scenario ${s.id}: ${s.name}`);
  const t0 = Date.now();
  try {
    const r = await s.run(ctx);
    rows.push({ id: s.id, name: s.name, expected: s.expected, ...r });
  } catch (e) {
    rows.push({ id: s.id, name: s.name, done: 'error', expected: s.expected, observed: `scenario error: ${(e as Error).message}`, recoverySeconds: null, bytesLost: 0, passed: false });
  }
  log(`scenario ${s.id}: ${rows[rows.length - 1].passed ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - t0) / 1000)} s`);
}

/**
 * Bring a network up, run `f` on it, always tear it down (and its web server). Its folder goes
 * too when `f` says everything on it passed and the teardown was clean (unless --keep).
 */
async function withNet(o: StartOptions, f: (ctx: Ctx) => Promise<boolean>): Promise<void> {
  current = await startTestNet(REPO, o);
  const net = current;
  const web = await startContentServer(net.webAddress);
  let passed = false;
  try {
    log(`network up in ${net.dir} (${hosts ? `hosts: ${net.nj.hosts?.subnets.join(' ')}; latency ${net.nj.hosts?.latency}` : 'loopback'})`);
    passed = await f({ net, web, period: o.period, log, repo: REPO });
  } finally {
    await web.close();
    const clean = await stopCurrent();
    let removed = false;
    if (passed && clean && !argv.keep) {
      try { fs.rmSync(net.dir, { recursive: true, force: true }); removed = true; } catch (e) { log(`could not remove ${net.dir}: ${(e as Error).message}`); }
    }
    if (!removed) log(`configs, data and logs kept in ${net.dir}`);
  }
}

if (argv.soak !== undefined || shared.length > 0) {
  // Storage nodes only when a storage scenario runs (8: placement needs n = 6 plus two to relocate to).
  await withNet({ hosts, period: argv.period, relays: 6, exits: 2, storage: argv.soak !== undefined || shared.some((s) => s.storage) ? 8 : 0 }, async (ctx) => {
    if (argv.soak !== undefined) {
      const seed = argv.seed ?? Math.floor(Math.random() * 2 ** 31);
      soakResult = await soak(ctx, argv.soak, seed);
    }
    const before = rows.length;
    for (const s of shared) await runOne(s, ctx);
    return (soakResult?.passed ?? true) && rows.slice(before).every((r) => r.passed || r.skipped === true);
  });
}
for (const s of own) {
  if (s.needsHosts && !hosts) { await runOne(s, null as unknown as Ctx); continue; }
  const o = s.ownNet!;
  log(`scenario ${s.id} runs on a network of its own (caps ${o.caps ?? 'default'} MB/s${o.declareMBps !== undefined ? `, every relay declaring ${o.declareMBps} MB/s` : ''}${o.unmeasuredCapKBps !== undefined ? `, weight floor ${o.unmeasuredCapKBps} KB/s` : ''}${o.probeSeconds !== undefined ? `, capacity probes of ${o.probeSeconds} s` : ''}${o.probeKeepPeriods !== undefined ? ` (figure: best of ${o.probeKeepPeriods} periods)` : ''}, period ${o.period ?? argv.period} s)`);
  await withNet({ hosts, period: o.period ?? argv.period, relays: 6, exits: 2, storage: s.storage ? 8 : 0, caps: o.caps, declareMBps: o.declareMBps, unmeasuredCapKBps: o.unmeasuredCapKBps, probeSeconds: o.probeSeconds, probeKeepPeriods: o.probeKeepPeriods }, async (ctx) => {
    await runOne(s, ctx);
    const r = rows[rows.length - 1];
    return r.passed || r.skipped === true;
  });
}

if (soakResult) {
  const r = soakResult;
  const clean0 = leftovers.namespaces + leftovers.links + leftovers.processes === 0;
  if (argv.json) process.stdout.write(JSON.stringify({ hosts, soak: r, leftovers }, null, 2) + '\n');
  else {
    process.stdout.write(`soak: ${r.minutes} min, seed ${r.seed}; faults (${r.faults.length}): ${r.faults.join('; ')}\n`);
    process.stdout.write(`soak: downloads ${r.downloads} (${r.downloadsFailed} failed, ${Math.round(r.bytesDownloaded / (1 << 20))} MiB whole); stored files read back ${r.filesReadBack}; daemons dead or not answering: ${r.deadDaemons.join(',') || 'none'}; reward chains ${r.rewardChains}\n`);
    process.stdout.write(`soak: max RSS (MiB): ${r.maxRss.map((x) => `${x.name} ${x.mib}`).join(', ')}\n`);
    process.stdout.write(`teardown: ${leftovers.namespaces} namespaces, ${leftovers.links} links, ${leftovers.processes} processes left\n`);
  }
  process.stdout.write(`chaos: soak ${r.passed ? 'passed' : 'FAILED'}, ${r.bytesLost} bytes lost\n`);
  process.exit(r.passed && clean0 ? 0 : 1);
}

const ran = rows.filter((r) => !r.skipped);
const passed = ran.filter((r) => r.passed).length;
const lost = rows.reduce((a, r) => a + r.bytesLost, 0);
const clean = leftovers.namespaces + leftovers.links + leftovers.processes === 0;
if (argv.json) {
  process.stdout.write(JSON.stringify({ hosts, scenarios: rows, leftovers }, null, 2) + '\n');
} else {
  const cell = (s: string): string => s.replace(/\|/g, '/').replace(/\n/g, ' ');
  process.stdout.write('| # | scenario | done | expected | observed | recovery | bytes lost | result |\n|---|---|---|---|---|---|---|---|\n');
  for (const r of rows) {
    process.stdout.write(`| ${r.id} | ${cell(r.name)} | ${cell(r.done)} | ${cell(r.expected)} | ${cell(r.observed)} | ${r.recoverySeconds === null ? '-' : `${r.recoverySeconds.toFixed(1)} s`} | ${r.bytesLost} | ${r.skipped ? 'skipped' : r.passed ? 'pass' : 'FAIL'} |\n`);
  }
  process.stdout.write(`teardown: ${leftovers.namespaces} namespaces, ${leftovers.links} links, ${leftovers.processes} processes left\n`);
}
process.stdout.write(`chaos: ${ran.length} scenarios, ${passed} passed, ${lost} bytes lost\n`);
process.exit(passed === ran.length && ran.length > 0 && clean ? 0 : 1);
