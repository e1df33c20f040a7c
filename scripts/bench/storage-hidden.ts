// Put and get throughput through hidden storage nodes (SPEC.md §9.21: rendezvous circuits, six
// relays and an end-to-end layer between client and node) beside the same through listed storage
// nodes (SPEC.md §9.13.1: three-hop circuits ending at the node), each on a whole local network of
// separate processes (`npm start`, scripts/localnet.ts) started in turn in this run, with the same
// file and the `bitcloud` CLI as a user runs it. Each put/get includes building its circuits.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchModule, BenchRow } from './types';
import { randomBytes } from '../../src/crypto/primitives';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MB = 1e6;

async function portsFree(base: number, n: number): Promise<boolean> {
  const ok = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(base + i, '127.0.0.1', () => s.close(() => resolve(true)));
  })));
  return ok.every(Boolean);
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin', 'bitcloud.js'), ...args], { maxBuffer: 16 << 20, timeout: 600_000 }, (e, stdout, stderr) => {
      resolve({ code: e ? 1 : 0, stdout: String(stdout), stderr: String(stderr), ms: performance.now() - t0 });
    });
  });
}

/** One local network: start, put then get `file`, stop. Throughputs in MB/s. */
async function measure(hidden: boolean, file: string, size: number): Promise<{ put: number; get: number }> {
  let base = 33_000 + (hidden ? 200 : 0);
  while (!(await portsFree(base, 100))) base += 400;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-hidden-'));
  const args = [path.join(ROOT, 'bin', 'run-ts.js'), path.join(ROOT, 'scripts', 'localnet.ts'), '--dir', dir, '--base-port', String(base),
    '--socks-port', String(base + 90), '--relays', '4', '--exits', '1', '--storage', '6', '--period', '5', '--no-demo', ...(hidden ? ['--hidden-storage'] : [])];
  const launcher = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((r) => launcher.once('exit', () => r()));
  try {
    const until = Date.now() + 300_000;
    for (;;) {
      try { if ((JSON.parse(fs.readFileSync(path.join(dir, 'network.json'), 'utf8')) as { ready?: boolean }).ready) break; } catch { /* not yet */ }
      if (launcher.exitCode !== null || Date.now() > until) throw new Error(`local network (${hidden ? 'hidden' : 'listed'}) did not come up`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const config = path.join(dir, 'client.json');
    const put = await cli(['put', file, '--json', '--config', config]);
    if (put.code !== 0) throw new Error(`put: ${put.stderr || put.stdout}`);
    const cap = String((JSON.parse(put.stdout.trim().split('\n').pop()!) as { capability: string }).capability);
    const out = path.join(dir, 'out.bin');
    const get = await cli(['get', cap, '-o', out, '--json', '--config', config]);
    if (get.code !== 0) throw new Error(`get: ${get.stderr || get.stdout}`);
    if (!(await fsp.readFile(out)).equals(await fsp.readFile(file))) throw new Error('bytes read back differ');
    return { put: size / MB / (put.ms / 1000), get: size / MB / (get.ms / 1000) };
  } finally {
    if (launcher.exitCode === null) launcher.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const mod: BenchModule = {
  name: 'storage-hidden',
  async run({ quick }) {
    const size = (quick ? 2 : 8) * 1024 * 1024;
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-file-'));
    const file = path.join(tmp, 'in.bin');
    await fsp.writeFile(file, randomBytes(size));
    try {
      const listed = await measure(false, file, size);
      const hidden = await measure(true, file, size);
      const note = `${size / 1024 / 1024} MiB file, bitcloud put/get CLI, 4 relays, 6 storage nodes, all on one machine; includes circuit building`;
      const rows: BenchRow[] = [
        { group: 'storage-hidden', name: 'put through hidden nodes (rendezvous)', value: hidden.put, unit: 'MB/s', baseline: { name: 'put through listed nodes (3-hop circuits)', value: listed.put, unit: 'MB/s' }, note },
        { group: 'storage-hidden', name: 'get through hidden nodes (rendezvous)', value: hidden.get, unit: 'MB/s', baseline: { name: 'get through listed nodes (3-hop circuits)', value: listed.get, unit: 'MB/s' }, note },
      ];
      return rows;
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  },
};
export default mod;
