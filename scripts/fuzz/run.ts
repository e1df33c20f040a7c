// `npm run fuzz`: fuzz every decoder that network or disk bytes reach (targets in ./targets.ts).
//
//   npm run fuzz                          every target, 1,000,000 inputs each (the full run)
//   npm run fuzz -- --quick               smoke run: a few seconds per target (npm test runs it)
//   npm run fuzz -- --target cell         one target (repeatable; comma-separated also works)
//   npm run fuzz -- --inputs 50000        inputs per target
//   npm run fuzz -- --seconds 30          time budget per target (stops at whichever comes first)
//   npm run fuzz -- --seed 42             fast-check seed (default: from the clock, printed)
//   npm run fuzz -- --hang-ms 1000        one input using more CPU time than this is a hang (default 1000)
//   npm run fuzz -- --no-save             do not write findings under test/fuzz-corpus/
//   npm run fuzz -- --replay              decode every kept finding (test/fuzz-corpus/) and every
//                                         target's seeds once, one line each ("ok" or "FAIL")
//
// Each target runs in a worker thread watched from this thread: an input that uses more than
// --hang-ms of CPU time (or waits 30 times that) is reported as a hang and the worker is replaced. A failure is a throw that is not a
// BitcloudError, a hang, an allocation beyond the bound documented in ./engine.ts, or a target's
// run growing the process's memory mappings or open descriptors beyond the bounds there (a leak:
// a finding of the run, not of one input, so nothing is written for it). Every other
// distinct failure is written to test/fuzz-corpus/<target>/<sha256-prefix>.bin (with a .txt
// beside it saying what happened); test/unit/fuzz-regressions.test.ts replays them all.
// Output: a table (target, inputs, failures, seconds), then `fuzz: T targets, N inputs, F failures`.
import { Worker } from 'node:worker_threads';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '../../src/crypto/primitives';
import { TARGETS, targetByName, prepareTargets, cleanupTargets, FUZZ_TMP_ENV } from './targets';
import { runOne, type Finding } from './engine';
import type { RunRequest, WorkerMessage } from './worker-main';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
export const CORPUS_DIR = path.join(root, 'test', 'fuzz-corpus');
const MAX_INPUT = 64 * 1024;

interface Options { replay: boolean; quick: boolean; targets: string[]; inputs: number; seconds: number; seed: number; hangMs: number; save: boolean }

function parseArgs(argv: string[]): Options {
  const o: Options = { replay: false, quick: false, targets: [], inputs: 1_000_000, seconds: 0, seed: Date.now() % 2_147_483_647, hangMs: 1000, save: true };
  let inputsGiven = false, secondsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => { const v = argv[++i]; if (v === undefined) usage(`${a} needs a value`); return v; };
    const num = (): number => { const v = Number(val()); if (!Number.isFinite(v) || v < 0) usage(`${a} needs a non-negative number`); return v; };
    if (a === '--quick') o.quick = true;
    else if (a === '--replay') o.replay = true;
    else if (a === '--target') o.targets.push(...val().split(',').filter(Boolean));
    else if (a === '--inputs') { o.inputs = Math.floor(num()); inputsGiven = true; }
    else if (a === '--seconds') { o.seconds = num(); secondsGiven = true; }
    else if (a === '--seed') o.seed = Math.floor(num());
    else if (a === '--hang-ms') o.hangMs = num();
    else if (a === '--no-save') o.save = false;
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (o.quick) {
    if (!secondsGiven) o.seconds = 2;
    if (!inputsGiven) o.inputs = 200_000;
  }
  for (const t of o.targets) if (!TARGETS.some((x) => x.name === t)) usage(`no target ${t}; targets: ${TARGETS.map((x) => x.name).join(', ')}`);
  return o;
}

function usage(msg?: string): never {
  if (msg) console.error(msg);
  console.error('usage: npm run fuzz -- [--quick] [--target NAME]... [--inputs N] [--seconds S] [--seed N] [--hang-ms MS] [--no-save]');
  process.exit(2);
}

interface Row { target: string; inputs: number; failures: number; seconds: number; findings: Finding[] }

/** A worker with its shared control block (see worker-main.ts). */
class FuzzWorker {
  readonly sab = new SharedArrayBuffer(16 + MAX_INPUT);
  readonly ctrl = new Int32Array(this.sab, 0, 4);
  readonly worker: Worker;
  readonly ready: Promise<void>;
  constructor() {
    this.worker = new Worker(new URL('./worker.mjs', import.meta.url), { workerData: { sab: this.sab, maxInput: MAX_INPUT } });
    this.ready = new Promise((resolve, reject) => {
      const onMsg = (m: { type: string }) => { if (m.type === 'ready') { this.worker.off('message', onMsg); resolve(); } };
      this.worker.on('message', onMsg);
      this.worker.once('error', reject);
    });
  }
  currentInput(): Buffer {
    const len = Atomics.load(this.ctrl, 2);
    return Buffer.from(new Uint8Array(this.sab, 16, len));
  }
}

/** Run `req` on the worker; resolves with what happened, or with a hang (the worker is then dead). */
function runOn(w: FuzzWorker, req: RunRequest, hangMs: number, onFinding: (f: Finding) => void, onProgress: (n: number) => void):
  Promise<{ kind: 'done'; inputs: number; failures: number; seconds: number; leak: string | null } | { kind: 'hang' | 'fatal'; input: Buffer; inputs: number; failures: number; error: string }> {
  return new Promise((resolve) => {
    // A hang is an input that has used more than hangMs of CPU time (this process runs one worker;
    // its own share is negligible), so a busy machine that starves the worker of CPU is not mistaken
    // for a hang. An input that waits without using CPU (a promise that never settles) counts as
    // hung after 30 × hangMs of wall-clock time.
    let lastSeq = Atomics.load(w.ctrl, 0), lastChange = performance.now(), cpuAtChange = process.cpuUsage();
    const seq0 = lastSeq, fail0 = Atomics.load(w.ctrl, 3);
    // Inputs finished and failures counted since this request started (the hanging input is not finished).
    const counts = () => ({ inputs: Atomics.load(w.ctrl, 0) - seq0 - Atomics.load(w.ctrl, 1), failures: Atomics.load(w.ctrl, 3) - fail0 });
    const timer = setInterval(() => {
      const seq = Atomics.load(w.ctrl, 0);
      const now = performance.now();
      if (seq !== lastSeq) { lastSeq = seq; lastChange = now; cpuAtChange = process.cpuUsage(); return; }
      const cpu = process.cpuUsage(cpuAtChange);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      if (Atomics.load(w.ctrl, 1) === 1 && (cpuMs > hangMs || now - lastChange > 30 * hangMs)) {
        const input = w.currentInput();
        const c = counts();
        finish();
        void w.worker.terminate();
        resolve({ kind: 'hang', input, ...c, error: '' });
      }
    }, Math.max(10, Math.min(100, hangMs / 5)));
    const onMsg = (m: WorkerMessage | { type: 'fatal'; error: string }) => {
      if (m.type === 'finding') onFinding({ ...m.finding, input: Buffer.from(m.finding.input) });
      else if (m.type === 'progress') onProgress(m.inputs);
      else if (m.type === 'done') { finish(); resolve({ kind: 'done', inputs: m.inputs, failures: m.failures, seconds: m.seconds, leak: m.leak }); }
      else if (m.type === 'fatal') { const c = counts(); finish(); resolve({ kind: 'fatal', input: Buffer.alloc(0), ...c, error: m.error }); }
    };
    const onExit = (code: number) => {
      // The thread died under an input (out of memory, a native crash): that input is the finding.
      const c = counts();
      const input = w.currentInput();
      finish();
      resolve({ kind: 'fatal', input, ...c, error: `worker exited with code ${code} (out of memory?) during an input of ${input.length} bytes` });
    };
    const finish = () => { clearInterval(timer); w.worker.off('message', onMsg); w.worker.off('exit', onExit); };
    w.worker.on('message', onMsg);
    w.worker.on('exit', onExit);
    w.worker.postMessage(req);
  });
}

function saveFinding(target: string, f: Finding): string {
  const dir = path.join(CORPUS_DIR, target);
  fs.mkdirSync(dir, { recursive: true });
  const name = sha256(f.input).toString('hex').slice(0, 16);
  const file = path.join(dir, `${name}.bin`);
  if (!fs.existsSync(file)) {
    fs.writeFileSync(file, f.input);
    fs.writeFileSync(path.join(dir, `${name}.txt`), `${f.kind}: ${f.signature}\n${f.detail}\n`);
  }
  return path.relative(root, file);
}

/**
 * Replay the kept findings and the seeds in this thread (they are known to finish quickly; the
 * unit test that runs this has its own timeout). Prints `ok|FAIL <target>/<file>` per input, then
 * `replay: N inputs, F failures`.
 */
async function replay(): Promise<number> {
  await prepareTargets();
  let n = 0, failed = 0;
  const judge = async (target: string, label: string, input: Buffer) => {
    const t = targetByName(target);
    const f = t ? await runOne(t, input) : { kind: 'throw', detail: `no fuzz target ${target}` };
    n++;
    if (f) failed++;
    console.log(`${f ? 'FAIL' : 'ok'} ${target}/${label}${f ? ` ${f.kind}: ${f.detail.split('\n').join(' | ')}` : ''}`);
  };
  const dirs = fs.existsSync(CORPUS_DIR) ? fs.readdirSync(CORPUS_DIR).sort() : [];
  for (const d of dirs) {
    if (!fs.statSync(path.join(CORPUS_DIR, d)).isDirectory()) continue;
    for (const f of fs.readdirSync(path.join(CORPUS_DIR, d)).sort()) {
      if (f.endsWith('.bin')) await judge(d, f, fs.readFileSync(path.join(CORPUS_DIR, d, f)));
    }
  }
  for (const t of TARGETS) {
    const seeds = t.seeds();
    if (seeds.length === 0) { failed++; console.log(`FAIL ${t.name}/seeds none`); }
    for (const [i, s] of seeds.entries()) await judge(t.name, `seed-${i}`, s);
  }
  cleanupTargets();
  console.log(`replay: ${n} inputs, ${failed} failures`);
  return failed === 0 ? 0 : 1;
}

export async function fuzzMain(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  if (o.replay) return replay();
  // Every worker's temporary files (key-file target) go in one folder, removed when the run ends
  // however its workers ended (a worker's process.env starts as a copy of this one).
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-fuzz-'));
  process.env[FUZZ_TMP_ENV] = tmp;
  try {
    return await fuzzTargets(o);
  } finally {
    delete process.env[FUZZ_TMP_ENV];
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function fuzzTargets(o: ReturnType<typeof parseArgs>): Promise<number> {
  const targets = o.targets.length ? TARGETS.filter((t) => o.targets.includes(t.name)) : TARGETS;
  console.log(`fuzz: ${targets.length} targets, up to ${o.inputs} inputs each${o.seconds ? `, up to ${o.seconds} s each` : ''}, seed ${o.seed}, hang limit ${o.hangMs} ms`);
  const rows: Row[] = [];
  let w: FuzzWorker | null = null;
  for (const t of targets) {
    const row: Row = { target: t.name, inputs: 0, failures: 0, seconds: 0, findings: [] };
    rows.push(row);
    const t0 = performance.now();
    const record = (f: Finding) => {
      row.findings.push(f);
      // A leak belongs to the whole run, not to one input: nothing to keep.
      const where = o.save && f.kind !== 'leak' ? ` → ${saveFinding(t.name, f)}` : '';
      console.log(`  ${t.name}: ${f.kind}: ${f.signature} (${f.input.length} bytes)${where}`);
      if (f.signature.startsWith('runner:')) console.log(f.detail.split('\n').map((l) => `    ${l}`).join('\n'));
    };
    let seed = o.seed;
    let hangs = 0;
    let lastLine = performance.now(); // progress lines in a log (not a terminal): one a minute
    let busy = 0; // seconds spent fuzzing (worker start-up does not count against --seconds)
    while (row.inputs < o.inputs) {
      if (!w) { w = new FuzzWorker(); await w.ready; }
      const left = o.seconds > 0 ? o.seconds - busy : 0;
      const r0 = performance.now();
      if (o.seconds > 0 && left <= 0) break;
      const r = await runOn(w, { target: t.name, inputs: o.inputs - row.inputs, seconds: o.seconds > 0 ? left : 0, seed }, o.hangMs, record,
        (n) => {
          if (o.quick) return;
          if (process.stdout.isTTY) process.stdout.write(`\r  ${t.name}: ${row.inputs + n} inputs`);
          else if (performance.now() - lastLine > 60_000) { lastLine = performance.now(); console.log(`  ${t.name}: ${row.inputs + n} inputs so far (${((performance.now() - t0) / 1000).toFixed(0)} s)`); }
        });
      busy += (performance.now() - r0) / 1000;
      if (r.kind === 'done') {
        row.inputs += r.inputs;
        row.failures += r.failures;
        if (r.leak) { row.failures++; record({ kind: 'leak', signature: 'runner: process resources grew', input: Buffer.alloc(0), detail: r.leak }); }
        break;
      }
      row.inputs += r.inputs + 1;
      row.failures += r.failures + 1;
      if (r.kind === 'fatal') {
        record({ kind: 'throw', signature: 'runner: worker failed', input: r.input, detail: r.error });
        void w.worker.terminate();
        w = null;
        break;
      }
      // A hang: the worker is gone. Count it, keep the input, carry on with a fresh worker and seed.
      hangs++;
      record({ kind: 'hang', signature: `no result within ${o.hangMs} ms of CPU time`, input: r.input, detail: `one input ran longer than ${o.hangMs} ms` });
      w = null;
      seed = (seed + 104_729) | 0;
      if (hangs >= 5) break; // something is badly wrong with this target; stop feeding it
    }
    row.seconds = (performance.now() - t0) / 1000;
    if (!o.quick && process.stdout.isTTY) process.stdout.write('\r');
    console.log(`  ${t.name.padEnd(20)} ${String(row.inputs).padStart(9)} inputs  ${String(row.failures).padStart(5)} failures  ${row.seconds.toFixed(1).padStart(7)} s`);
  }
  if (w) { w.worker.postMessage({ cmd: 'exit' }); await w.worker.terminate(); }

  const total = rows.reduce((a, r) => a + r.inputs, 0);
  const failed = rows.reduce((a, r) => a + r.failures, 0);
  console.log('');
  console.log(`| ${'target'.padEnd(20)} | ${'inputs'.padStart(9)} | ${'failures'.padStart(8)} | ${'seconds'.padStart(8)} |`);
  console.log(`|${'-'.repeat(22)}|${'-'.repeat(11)}|${'-'.repeat(10)}|${'-'.repeat(10)}|`);
  for (const r of rows) console.log(`| ${r.target.padEnd(20)} | ${String(r.inputs).padStart(9)} | ${String(r.failures).padStart(8)} | ${r.seconds.toFixed(1).padStart(8)} |`);
  console.log('');
  console.log(`fuzz: ${rows.length} targets, ${total} inputs, ${failed} failures`);
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await fuzzMain(process.argv.slice(2));
}
