// Linux `perf` for the profile scripts (profile-circuit.ts, profile-storage.ts with --perf): every
// CPU of the machine sampled at 997 Hz while they run (`perf record -a`, on the monotonic clock,
// so a phase's window can be cut out afterwards), and the network's processes started with
// --perf-basic-prof so that JIT-compiled JavaScript has names. Unlike the inspector's profiler,
// a sample is taken only where a thread is on a CPU: a process descheduled inside a system call
// is not charged for the gap, and the kernel, libc, OpenSSL, V8's own threads (compiler, GC) and
// idle time are all seen. Needs root (or perf_event_paranoid ≤ 1) and the `perf` binary
// (Debian: linux-perf); the scripts say so and go on without it.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PERF_HZ = 997;

/** The monotonic clock in seconds, as `perf record -k CLOCK_MONOTONIC` stamps its samples. */
export function monoSeconds(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function perfAvailable(): boolean {
  return spawnSync('perf', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** NODE_OPTIONS for the processes to profile: names for JIT code in /tmp/perf-<pid>.map. */
export const PERF_NODE_OPTIONS = '--perf-basic-prof';

export interface PerfRecording { file: string; stop(): Promise<void> }

/** Start `perf record -a` into `file`; stop() ends it (SIGINT) and waits until the file is written. */
export async function startPerf(file: string): Promise<PerfRecording> {
  const p: ChildProcess = spawn('perf', ['record', '-a', '-F', String(PERF_HZ), '-k', 'CLOCK_MONOTONIC', '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  // perf prints nothing when it starts; give it a moment to open its buffers on every CPU.
  await new Promise((r) => setTimeout(r, 500));
  if (p.exitCode !== null) throw new Error(`perf record failed: ${stderr.trim()}`);
  return {
    file,
    async stop() {
      p.kill('SIGINT');
      await exited;
    },
  };
}

const CATEGORIES: Array<[string, RegExp]> = [
  ['kernel', /\[kernel\.kallsyms\]/],
  ['JavaScript (JIT)', /perf-\d+\.map/],
  ['sodium', /sodium/],
  ['libc (malloc, memcpy, syscalls)', /libc\.so/],
  ['V8 compiler and parser', /compiler::|Compiler|Maglev|Deserializer|Scanner|Parser|interpreter::/],
  ['V8 garbage collector', /Scaveng|Mark|Sweep|Heap|Evacuat|GlobalHandles|Concurrent/],
  ['OpenSSL (ciphers, hashes, TLS)', /sha1_|sha256_|aesni|_aesni|ghash|gcm_|EVP|evp_|ossl_|OPENSSL|CRYPTO_|ssl3_|tls1_|SSL_/],
  ['V8 builtins', /Builtins_/],
  ['Node C++ (bindings, native objects)', /node::/],
  ['V8 other', /v8::/],
];

function category(line: string): string {
  for (const [name, re] of CATEGORIES) if (re.test(line)) return name;
  return 'other';
}

/**
 * Print, for the samples between `start` and `end` (monoSeconds()), the CPU seconds of every
 * process that took at least `minShare` of them, split by category and with its heaviest symbols.
 * `names` labels pids; other processes are labelled by their command.
 */
export function summarizePerf(file: string, window: { label: string; start: number; end: number }, names: Map<number, string>, opts: { top?: number; minShare?: number } = {}): void {
  const top = opts.top ?? 12;
  const minShare = opts.minShare ?? 0.03;
  const text = execFileSync('perf', ['script', '-i', file, '--time', `${window.start.toFixed(6)},${window.end.toFixed(6)}`, '-F', 'comm,pid,ip,sym,dso'],
    { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  type Proc = { label: string; n: number; cats: Map<string, number>; syms: Map<string, number> };
  const procs = new Map<string, Proc>();
  let total = 0;
  for (const raw of text.split('\n')) {
    const m = /^\s*(\S.*?)\s+(\d+)\s+[0-9a-f]+\s+(.*)$/.exec(raw);
    if (!m) continue;
    total++;
    const pid = Number(m[2]);
    const label = pid === 0 ? 'idle' : names.get(pid) ?? m[1];
    const key = pid === 0 || names.has(pid) ? label : `${m[1]} (${pid})`;
    let p = procs.get(key);
    if (!p) { p = { label: key, n: 0, cats: new Map(), syms: new Map() }; procs.set(key, p); }
    p.n++;
    const sym = m[3].trim();
    const cat = category(sym);
    p.cats.set(cat, (p.cats.get(cat) ?? 0) + 1);
    p.syms.set(sym, (p.syms.get(sym) ?? 0) + 1);
  }
  const secs = window.end - window.start;
  console.log(`\n== perf, ${window.label}: ${total} samples in ${secs.toFixed(2)} s (${(total / PERF_HZ / secs).toFixed(2)} CPUs sampled)`);
  const list = [...procs.values()].sort((a, b) => b.n - a.n);
  console.log(list.filter((p) => p.n >= total * 0.01).map((p) => `${p.label} ${(p.n / PERF_HZ).toFixed(2)}`).join(', ') + ' (CPU-s)');
  for (const p of list) {
    if (p.label === 'idle' || p.n < total * minShare) continue;
    console.log(`\n-- ${p.label}: ${(p.n / PERF_HZ).toFixed(2)} CPU-s`);
    console.log('   ' + [...p.cats.entries()].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${(100 * n / p.n).toFixed(0)}%`).join(', '));
    for (const [s, n] of [...p.syms.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`   ${(100 * n / p.n).toFixed(1).padStart(5)}%  ${s.replace(/\s+\(\/[^)]*\)$/, '').slice(0, 110)}`);
    }
  }
}

/**
 * Remove the JIT symbol maps and V8 event logs --perf-basic-prof left for these processes, and for
 * any other process started since this one that has exited (the local network's launcher).
 */
export function removePerfMaps(pids: readonly number[]): void {
  const ours = new Set(pids.map(String));
  const alive = (pid: string): boolean => { try { process.kill(Number(pid), 0); return true; } catch { return false; } };
  const left = (pid: string, file: string): boolean => ours.has(pid)
    || (!alive(pid) && (fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0) >= performance.timeOrigin);
  // --perf-basic-prof also starts V8's event log, one isolate-<address>-<pid>-v8.log per isolate (worker
  // threads included) in the process's working folder, the repository for the local network's
  // processes; Node refuses --logfile in NODE_OPTIONS, so they are removed here.
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  for (const [dir, re] of [['/tmp', /^perf-(\d+)\.map$/], [root, /^isolate-0x[0-9a-f]+-(\d+)-v8\.log$/]] as const) {
    for (const f of fs.readdirSync(dir)) {
      const m = re.exec(f);
      if (m && left(m[1], path.join(dir, f))) fs.rmSync(path.join(dir, f), { force: true });
    }
  }
}
