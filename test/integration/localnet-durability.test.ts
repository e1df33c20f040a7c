// Issue 16 item 6, on the launcher's network with ten storage nodes (`npm start -- --storage 10`),
// real processes only: a file put with the default profile (4-of-6) survives the loss of two
// storage nodes after the keeper repaired it, and again after two more; a file put with
// `--profile durable` (3-of-10) reads back after 7 of the 10 storage nodes are stopped. The nodes
// stopped are the ones holding the most shares of the kept file. Figures (pass times, shares
// repaired) are printed. SPEC.md §9.3, §9.18.3, §9.19.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalNet, type LocalNet } from '../helpers/localnet';
import { runCli, eventually, REPO_ROOT } from '../helpers/daemon';
import { shareFiles } from '../helpers/storage-nodes';
import { randomBytes } from '../../src/crypto/primitives';

let net: LocalNet;
const stopped = new Set<string>();

const cli = (args: string[], timeoutMs = 240_000) => runCli('bitcloud', [...args, '--config', net.clientConfig], { timeoutMs });
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function filesByNode(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const n of net.storage) out.set(n.name, new Set((await shareFiles(n.dataDir)).map((f) => path.basename(f))));
  return out;
}

async function stopNodes(names: string[]): Promise<void> {
  const r = await runCli(path.join(REPO_ROOT, 'bin', 'run-ts.js'), [path.join(REPO_ROOT, 'scripts', 'localnet-stop-node.ts'), '--dir', net.dir, ...names], { timeoutMs: 60_000 });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  for (const n of names) stopped.add(n);
  await eventually(() => net.read().nodes.filter((n) => n.role === 'storage' && !n.running).length === stopped.size, 30_000, 200);
}

/** The running nodes holding the most of `ids`, most first. */
async function topHolders(ids: ReadonlySet<string>, count: number): Promise<string[]> {
  const held = await filesByNode();
  return [...held].filter(([name]) => !stopped.has(name))
    .map(([name, files]) => [name, [...files].filter((f) => ids.has(f)).length] as const)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, count).map(([name]) => name);
}

async function getSame(cap: string, body: Buffer, name: string): Promise<number> {
  const out = path.join(net.dir, `${name}.out`);
  const t0 = Date.now();
  const g = await cli(['get', cap, '-o', out, '--json']);
  expect(g.code, g.stderr + g.stdout).toBe(0);
  expect(fs.readFileSync(out).equals(body)).toBe(true);
  return Date.now() - t0;
}

beforeAll(async () => {
  net = await startLocalNet({ relays: 4, exits: 1, storage: 10, timeoutMs: 240_000 });
}, 300_000);

afterAll(async () => { await net?.stop(); }, 60_000);

describe('durability on ten real storage nodes (issue 16 item 6)', () => {
  const durable = randomBytes(2 * 1024 * 1024 + 17);
  const kept = randomBytes(2 * 1024 * 1024 + 33);
  let durableCap = '';
  let keptCap = '';
  let keptIds = new Set<string>();

  it('puts a durable (3-of-10) file and a default (4-of-6) file; the keeper takes the second', async () => {
    fs.writeFileSync(path.join(net.dir, 'durable.bin'), durable);
    fs.writeFileSync(path.join(net.dir, 'kept.bin'), kept);
    const p1 = await cli(['put', path.join(net.dir, 'durable.bin'), '--profile', 'durable', '--json']);
    expect(p1.code, p1.stderr + p1.stdout).toBe(0);
    durableCap = String(lastJson(p1.stdout).capability);
    const before = await filesByNode();
    const p2 = await cli(['put', path.join(net.dir, 'kept.bin'), '--json']);
    expect(p2.code, p2.stderr + p2.stdout).toBe(0);
    keptCap = String(lastJson(p2.stdout).capability);
    const after = await filesByNode();
    keptIds = new Set([...after].flatMap(([name, files]) => [...files].filter((f) => !before.get(name)!.has(f))));
    expect(keptIds.size).toBeGreaterThan(6);
    const add = await cli(['keep', 'add', keptCap, '--json']);
    expect(add.code, add.stderr + add.stdout).toBe(0);
    const first = await cli(['keep', 'run', '--once', '--json']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    const f = lastJson(first.stdout).files[0];
    expect(f.healthy).toBe(f.shares);
    expect(f.lost).toBe(0);
  }, 420_000);

  for (const round of [1, 2]) {
    it(`default profile, loss ${round}: two more nodes stopped, the keeper repairs, the file reads back`, async () => {
      const victims = await topHolders(keptIds, 2);
      await stopNodes(victims);
      const t0 = Date.now();
      const pass = await cli(['keep', 'run', '--once', '--json']);
      const passMs = Date.now() - t0;
      expect(pass.code, pass.stderr + pass.stdout).toBe(0);
      const f = lastJson(pass.stdout).files[0];
      expect(f.repaired).toBeGreaterThan(0);
      expect(f.lost).toBe(0);
      expect(f.unrecoverableChunks).toBe(0);
      // A repaired share keeps its id (its bytes are the same), so the next round's holders are
      // found by the same ids on the nodes still running.
      const getMs = await getSame(keptCap, kept, `kept${round}`);
      process.stdout.write(`durability figures: loss ${round}: stopped ${victims.join(', ')} (${stopped.size} of 10 down); keeper pass ${passMs} ms, ${f.repaired} shares repaired of ${f.shares}, healthy before ${f.healthy}; get ${getMs} ms\n`);
    }, 420_000);
  }

  it('durable profile: 7 of the 10 storage nodes stopped, the file reads back', async () => {
    const more = net.storage.map((n) => n.name).filter((n) => !stopped.has(n)).slice(0, 7 - stopped.size);
    await stopNodes(more);
    expect(stopped.size).toBe(7);
    const getMs = await getSame(durableCap, durable, 'durable');
    process.stdout.write(`durability figures: durable 3-of-10 with 7 of 10 nodes down: get ${getMs} ms (${durable.length} bytes)\n`);
  }, 420_000);
});
