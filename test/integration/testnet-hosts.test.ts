// The many-host test network and the fault suite, as a user runs them (root only; skipped where
// network namespaces cannot be made): `npm run testnet -- --hosts` brings up every node in its own
// namespace, shows a download and a put/get, and leaves no namespace, link or process behind — on
// a normal stop and on Ctrl-C in the middle of its start. `npm run chaos` runs the scenarios that
// fit CI's time (CI_SCENARIOS below) on real daemons and reports them as JSON. Whatever happens
// (a failure, a timeout), afterEach removes what each run made: processes by PID, mounts by path,
// namespaces and links by name.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/daemon';
import { freePortRange } from '../helpers/localnet';

// As scripts/localnet/hosts.ts names things: every namespace and link of a run starts with this.
const runPrefix = (pid: number): string => `bcn${pid.toString(36)}-`;
function leftovers(prefix: string): { namespaces: string[]; links: string[] } {
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '';
  return {
    namespaces: ns.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(prefix)),
    links: links.split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(prefix)),
  };
}
/**
 * The fault-suite scenarios `npm test` runs (docs/chaos.md says which run where): a middle relay
 * killed mid-download, an authority killed during a vote, a relay
 * restarted mid-epoch. The others wait on long timeouts (guard return, circuit timeout, clock skew),
 * need storage nodes that mine identity proofs at start, or a load of several minutes (10).
 */
const CI_SCENARIOS = ['1', '4', '7'];
const can = { ok: process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0 };
const dirs: string[] = [];

interface Run { code: number | null; out: string; pid: number }

/** Every script this file started, with its output so far: cleaned up after each test, even a failed or timed-out one. */
const runs: Array<{ pid: number; out: string; exited: boolean; exit: Promise<void> }> = [];

/** Processes (by PID, from /proc) whose command line names `dir`: the daemons and clients of one run. */
function pidsNaming(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try { if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir)) out.push(Number(e)); } catch { /* gone */ }
  }
  return out;
}

/**
 * Leave nothing of a run behind, whatever state it died in: the script by PID (SIGTERM, then
 * SIGKILL), every process naming one of its network folders by PID, mounts under those folders by
 * path, namespaces and links of its prefix by name, then the folders.
 */
async function cleanUp(run: (typeof runs)[number]): Promise<void> {
  if (!run.exited) {
    try { process.kill(run.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([run.exit, new Promise((r) => setTimeout(r, 45_000))]);
    if (!run.exited) { try { process.kill(run.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  const netDirs = [...run.out.matchAll(/network up in (\S+)/g)].map((m) => m[1]);
  for (const d of [...netDirs, ...dirs]) {
    for (const pid of [...pidsOf(d), ...pidsNaming(d)]) {
      try { process.kill(pid, 'SIGCONT'); process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === d || m.startsWith(`${d}/`));
    for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  }
  // The launcher's prefix (a chaos run's launcher is its child), from its network.json; a launcher run's own.
  const prefixes = [runPrefix(run.pid), ...netDirs.map(prefixOf).filter((p): p is string => !!p)];
  for (const prefix of prefixes) {
    for (const ns of leftovers(prefix).namespaces) spawnSync('ip', ['netns', 'del', ns]);
    for (const l of leftovers(prefix).links) spawnSync('ip', ['link', 'del', l]);
  }
  for (const d of netDirs) fs.rmSync(d, { recursive: true, force: true });
}

afterEach(async () => { for (const r of runs.splice(0)) await cleanUp(r); }, 120_000);
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

/** Run an npm script's target as npm would (node bin/run-ts.js SCRIPT ARGS); `onOutput` may signal it. */
function runScript(script: string, args: string[], o: { timeoutMs: number; onOutput?: (out: string, pid: number) => void }): Promise<Run> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run-ts.js'), path.join(REPO_ROOT, 'scripts', script), ...args],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const run = { pid: c.pid!, out: '', exited: false, exit: Promise.resolve() };
    run.exit = new Promise<void>((r) => c.once('exit', () => { run.exited = true; r(); }));
    runs.push(run);
    const on = (d: Buffer): void => { run.out += d.toString('utf8'); o.onOutput?.(run.out, c.pid!); };
    c.stdout!.on('data', on);
    c.stderr!.on('data', on);
    const t = setTimeout(() => { try { process.kill(c.pid!, 'SIGTERM'); } catch { /* gone */ } }, o.timeoutMs);
    c.once('close', (code) => { clearTimeout(t); resolve({ code, out: run.out, pid: c.pid! }); });
  });
}

function prefixOf(dir: string): string | undefined {
  try { return (JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as { hosts?: { prefix?: string } }).hosts?.prefix; } catch { return undefined; }
}

function pidsOf(dir: string): number[] {
  try {
    const nj = JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as { nodes: { pid: number }[] };
    return nj.nodes.map((n) => n.pid);
  } catch { return []; }
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); } catch { return false; }
  try { return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')); } catch { return false; }
}

describe.skipIf(!can.ok)('many-host test network (npm run testnet -- --hosts)', () => {
  it('brings every node up in its own namespace, downloads and stores through it, and leaves nothing behind', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-hosts-'));
    dirs.push(dir);
    const base = await freePortRange(100);
    const r = await runScript('localnet.ts', ['--hosts', '--dir', dir, '--base-port', String(base), '--socks-port', String(base + 90),
      '--period', '5', '--exit-after-demo', '--declare', '3', '--unmeasured-cap', '500'], { timeoutMs: 400_000 });
    expect(r.code, r.out).toBe(0);
    // --declare: every relay declares that figure whatever its cap; --unmeasured-cap: the authorities' floor (SPEC.md §6.6).
    const cfg = (name: string): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as Record<string, unknown>;
    expect([1, 2, 3, 4, 5, 6].map((i) => cfg(`relay${i}`).bandwidth)).toEqual(Array(6).fill(3_000_000));
    expect([1, 2, 3].map((i) => cfg(`auth${i}`).unmeasuredCapKBps)).toEqual([500, 500, 500]);
    expect(r.out).toMatch(/hosts: bridge bcn\w+-br, \/16s 10\.\d+\.0\.0\/16 10\.\d+\.0\.0\/16 10\.\d+\.0\.0\/16 10\.\d+\.0\.0\/16/);
    expect(r.out).toMatch(/demo: downloaded 4194304 bytes through a 3-hop circuit/);
    expect(r.out).toMatch(/demo: put 1048576 bytes .* sha256 matches/);
    expect(r.out).toContain('teardown: 0 namespaces, 0 links, 0 processes left');
    // Checked from outside too: nothing of this run's prefix, no node process.
    const left = leftovers(runPrefix(r.pid));
    expect(left).toEqual({ namespaces: [], links: [] });
    const nj = JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as { nodes: { name: string; host?: { address: string } }[] };
    // Nodes were on their own addresses in 10/8 (the proxy stays in the launcher's namespace).
    const addrs = nj.nodes.filter((n) => n.name !== 'proxy').map((n) => n.host?.address ?? '');
    expect(addrs.every((a) => /^10\.\d+\.\d+\.\d+$/.test(a))).toBe(true);
    expect(new Set(addrs).size).toBe(addrs.length);
    expect(new Set(addrs.map((a) => a.split('.').slice(0, 2).join('.'))).size).toBeGreaterThanOrEqual(4);
    expect(pidsOf(dir).filter(isAlive)).toEqual([]);
  }, 420_000);

  it('Ctrl-C during the start removes every namespace, link and process it had made', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-hosts-'));
    dirs.push(dir);
    const base = await freePortRange(100);
    let sent = false;
    const r = await runScript('localnet.ts', ['--hosts', '--dir', dir, '--base-port', String(base), '--socks-port', String(base + 90), '--period', '5', '--no-demo'], {
      timeoutMs: 200_000,
      onOutput: (out, pid) => {
        // Interrupt while it waits for a consensus: namespaces and daemons exist by then.
        if (!sent && out.includes('waiting for a consensus')) { sent = true; process.kill(pid, 'SIGINT'); }
      },
    });
    expect(sent, r.out).toBe(true);
    expect(r.out).toContain('teardown: 0 namespaces, 0 links, 0 processes left');
    expect(leftovers(runPrefix(r.pid))).toEqual({ namespaces: [], links: [] });
    expect(pidsOf(dir).length).toBeGreaterThan(0);
    expect(pidsOf(dir).filter(isAlive)).toEqual([]);
  }, 240_000);

  it(`npm run chaos: the scenarios that fit CI's time (${CI_SCENARIOS.join(', ')}), as JSON`, async () => {
    // --keep: its folder is read below (network.json names the launcher's prefix); cleanUp removes it.
    const r = await runScript('chaos.ts', ['--scenarios', CI_SCENARIOS.join(','), '--json', '--keep'], { timeoutMs: 900_000 });
    const lines = r.out.trim().split('\n');
    expect(lines[lines.length - 1], r.out).toBe(`chaos: ${CI_SCENARIOS.length} scenarios, ${CI_SCENARIOS.length} passed, 0 bytes lost`);
    const start = r.out.indexOf('{\n');
    const doc = JSON.parse(r.out.slice(start, r.out.lastIndexOf('}') + 1)) as { hosts: boolean; scenarios: { id: string; passed: boolean; bytesLost: number; observed: string }[]; leftovers: Record<string, number> };
    expect(doc.hosts).toBe(true);
    expect(doc.scenarios.map((s) => [s.id, s.passed, s.bytesLost]), r.out).toEqual(CI_SCENARIOS.map((id) => [id, true, 0]));
    expect(doc.scenarios[0].observed).toMatch(/stream: curl (?!0 )\d+/);
    expect(doc.leftovers).toMatchObject({ namespaces: 0, links: 0, processes: 0 });
    expect(r.code).toBe(0);
    // Checked from outside too: no namespace or link of its launcher's prefix, no process naming its folder.
    const netDirs = [...r.out.matchAll(/network up in (\S+)/g)].map((m) => m[1]);
    expect(netDirs.length).toBe(1);
    const prefix = prefixOf(netDirs[0]);
    expect(prefix).toMatch(/^bcn\w+-$/);
    expect(leftovers(prefix!)).toEqual({ namespaces: [], links: [] });
    expect(pidsNaming(netDirs[0])).toEqual([]);
  }, 920_000);
});
