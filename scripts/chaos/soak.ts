// `npm run chaos -- --soak MINUTES [--seed N]`: the test network under steady client load while
// faults fire at random (seeded; the seed and every fault are printed), then the checks: every
// stored file reads back, every daemon not deliberately killed is alive (the killed ones were
// restarted and must be alive too), each daemon's memory stayed bounded (max RSS reported), and the
// reward chains of the authorities agree block by block with valid signatures (SPEC.md §8.7).
import path from 'node:path';
import { alive, poll, rssBytes, scrapeRelay, sleep, type NetNode } from './net';
import { rewardChainsAgree, wholeDownload, type Ctx } from './scenarios';
import { fileHash, get, lastJson, put, startNode, writeRandom } from './storage';

const MiB = 1 << 20;

/** A small seeded generator (mulberry32): the same seed gives the same faults in the same order. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SoakResult {
  seed: number;
  minutes: number;
  faults: string[];
  downloads: number;
  downloadsFailed: number;
  bytesDownloaded: number;
  bytesLost: number;
  filesReadBack: string;
  deadDaemons: string[];
  maxRss: Array<{ name: string; mib: number }>;
  rewardChains: string;
  passed: boolean;
}

export async function soak(ctx: Ctx, minutes: number, seed: number): Promise<SoakResult> {
  const net = ctx.net;
  const P = ctx.period * 1000;
  const rand = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const log = ctx.log;
  log(`soak: ${minutes} min, seed ${seed}`);

  // Files stored before the faults start; read back at the end.
  const stored: Array<{ cap: string; hash: string; size: number }> = [];
  if (net.byRole('storage').length >= 6) {
    for (const size of [2 * MiB, 8 * MiB]) {
      const file = path.join(net.dir, `soak-${size}.bin`);
      const hash = writeRandom(file, size);
      const r = await put(ctx, file);
      const cap = r.code === 0 ? lastJson(r.stdout)?.capability as string | undefined : undefined;
      if (cap) stored.push({ cap, hash, size });
      else log(`soak: put of ${size} bytes failed before the faults (exit ${r.code})`);
    }
  }

  // Memory: every daemon's RSS every 5 s, the maximum kept by name.
  const maxRss = new Map<string, number>();
  const all = net.nj.nodes.filter((n) => n.role !== 'client');
  const sampleRss = (): void => {
    for (const n of all) {
      const r = rssBytes(net.pid(n.name));
      if (r > (maxRss.get(n.name) ?? 0)) maxRss.set(n.name, r);
    }
  };
  const end = Date.now() + minutes * 60_000;
  const rssTimer = setInterval(sampleRss, 5000);

  // Load: two download loops through the proxy, 4 MiB each, fresh credentials every time.
  let downloads = 0, failed = 0, bytes = 0, lost = 0;
  const worker = async (w: number): Promise<void> => {
    for (let k = 0; Date.now() < end; k++) {
      const r = await wholeDownload(ctx, 4 * MiB, `soak-${w}-${k}`, 120_000);
      downloads++;
      lost += r.lost;
      if (r.ok) bytes += 4 * MiB; else { failed++; await sleep(1000); }
    }
  };
  const load = Promise.all([0, 1].map(worker));

  // Faults: one every 30 to 60 s, each undone before the next.
  const faults: string[] = [];
  const relaysOnly = net.byRole('relay');
  const kinds = ['kill-relay', 'freeze-relay', 'restart-storage', 'kill-authority', ...(net.hosts ? ['partition-relay'] : [])];
  const t0 = Date.now();
  while (Date.now() < end - 30_000) {
    await sleep(30_000 + Math.floor(rand() * 30_000));
    if (Date.now() >= end - 20_000) break;
    const kind = pick(kinds);
    const at = `${Math.round((Date.now() - t0) / 1000)} s`;
    let victim: NetNode;
    if (kind === 'kill-relay') {
      victim = pick(relaysOnly);
      net.kill(victim.name, 'SIGKILL');
      await sleep(10_000);
      net.restart(victim.name);
    } else if (kind === 'freeze-relay') {
      victim = pick(relaysOnly);
      net.kill(victim.name, 'SIGSTOP');
      await sleep(20_000);
      net.kill(victim.name, 'SIGCONT');
    } else if (kind === 'partition-relay') {
      victim = pick(relaysOnly);
      net.link(victim.name, false);
      await sleep(15_000);
      net.link(victim.name, true);
    } else if (kind === 'restart-storage') {
      const st = net.byRole('storage');
      if (!st.length) continue;
      victim = pick(st);
      net.kill(victim.name, 'SIGTERM');
      await poll(() => !alive(net.pid(victim.name)), 20_000, 200);
      await startNode(ctx, victim);
    } else {
      victim = pick(net.byRole('authority'));
      net.kill(victim.name, 'SIGKILL');
      await sleep(P);
      net.restart(victim.name);
    }
    faults.push(`${at}: ${kind} ${victim.name}`);
    log(`soak: ${faults.at(-1)}`);
  }
  await load;
  clearInterval(rssTimer);
  sampleRss();

  // Checks: everything back up, every stored file whole, reward chains agree.
  await sleep(2 * P);
  const dead = all.filter((n) => !alive(net.pid(n.name))).map((n) => n.name);
  const unanswering: string[] = [];
  for (const n of all.filter((x) => x.role !== 'authority')) if (!(await poll(async () => (await scrapeRelay(n)).length > 0, 30_000, 1000))) unanswering.push(n.name);
  let readOk = 0;
  for (const f of stored) {
    const out = path.join(net.dir, 'soak.out');
    const g = await get(ctx, f.cap, out);
    const ok = g.code === 0 && fileHash(out) === f.hash;
    if (ok) readOk++;
    else if (g.code === 0) lost += f.size;
  }
  const chains = await rewardChainsAgree(ctx);
  const deadDaemons = [...new Set([...dead, ...unanswering])];
  const passed = lost === 0 && readOk === stored.length && deadDaemons.length === 0 && chains.ok && downloads > failed;
  return {
    seed, minutes, faults, downloads, downloadsFailed: failed, bytesDownloaded: bytes, bytesLost: lost,
    filesReadBack: `${readOk} of ${stored.length}`, deadDaemons,
    maxRss: [...maxRss].map(([name, b]) => ({ name, mib: Math.round(b / MiB) })),
    rewardChains: chains.ok ? `agree (${chains.heights.join('/')} blocks)` : chains.why,
    passed,
  };
}
