// The fault suite's storage scenarios (`npm run chaos -- --scenarios 5,6`): storage nodes killed
// during a put, a flipped byte in a stored share (SPEC.md §9.7 placement and relocation, §9.8.3
// corruption), and a storage node whose disk fills (§9.8, STORAGE_FULL). Real daemons, the real
// `bitcloud` command line, real files; the disk is a size-limited tmpfs mounted over the node's data
// folder (root only), unmounted by path when the scenario ends or fails.
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from '../../src/crypto/primitives';
import { parseCapability } from '../../src/storage/capability';
import { rankNodes } from '../../src/storage/placement';
import { shareId } from '../../src/storage/share';
import { alive, metric, poll, runCli, scrapeRelay, sha256, shareFilesOf, type NetNode } from './net';
import type { Ctx, Scenario } from './scenarios';

const MiB = 1 << 20;
const secs = (ms: number): number => Math.round(ms / 100) / 10;

function storageNodes(ctx: Ctx): NetNode[] { return ctx.net.byRole('storage'); }

/** `bitcloud put FILE --json` with the test network's client config and a data folder of its own. */
export function put(ctx: Ctx, file: string, onStart?: (c: ChildProcess) => void) {
  return runCli(ctx.repo, ['put', file, '--json', '--config', ctx.net.nj.clientConfig, '--data-dir', path.join(ctx.net.dir, 'chaos-cli')], { maxMs: 300_000, onStart });
}

export function get(ctx: Ctx, cap: string, out: string) {
  return runCli(ctx.repo, ['get', cap, '-o', out, '--json', '--config', ctx.net.nj.clientConfig, '--data-dir', path.join(ctx.net.dir, 'chaos-cli')], { maxMs: 300_000 });
}

export function lastJson(s: string): Record<string, unknown> | null {
  try { return JSON.parse(s.trim().split('\n').at(-1) ?? '') as Record<string, unknown>; } catch { return null; }
}

function errorCodeOf(stderr: string, stdout: string): string {
  return /\b([A-Z]+(?:_[A-Z0-9]+)+)\b/.exec(`${stdout}\n${stderr}`)?.[1] ?? 'no code';
}

export async function stopNode(ctx: Ctx, n: NetNode, signal: NodeJS.Signals): Promise<void> {
  ctx.net.kill(n.name, signal);
  await poll(() => !alive(ctx.net.pid(n.name)), 20_000, 200);
}

/** Restart a storage node and wait until it answers on its MetricsPort. */
export async function startNode(ctx: Ctx, n: NetNode): Promise<boolean> {
  ctx.net.restart(n.name);
  return !!await poll(async () => (await scrapeRelay(n)).length > 0, 60_000, 1000);
}

export function writeRandom(file: string, size: number): string {
  const b = randomBytes(size);
  fs.writeFileSync(file, b);
  return sha256(b);
}

export function fileHash(file: string): string | null {
  try { return sha256(fs.readFileSync(file)); } catch { return null; }
}

// ---------------------------------------------------------------------------------------------

const s5: Scenario = {
  id: '5', name: 'two of the storage nodes SIGKILLed during a put; a flipped byte in a stored share', needsHosts: false, storage: true,
  expected: 'the put completes (shares relocated to live nodes, SPEC.md §9.7) or stops with STORAGE_PUT_FAILED and a rerun completes; every byte reads back; a flipped byte in a stored share (holder restarted, so not in its cache) is detected on read (quarantined, §9.8.3) and the file still reads back intact',
  async run(ctx) {
    const net = ctx.net;
    const nodes = storageNodes(ctx);
    const size = 24 * MiB;
    const file = path.join(net.dir, 'chaos-s5.bin');
    const want = writeRandom(file, size);
    const before = new Map(nodes.map((n) => [n.name, shareFilesOf(n).length]));
    const stored = (n: NetNode): number => shareFilesOf(n).length - (before.get(n.name) ?? 0);
    let victims: NetNode[] = [];
    let killedAt = 0;
    const t0 = Date.now();
    // Kill the two nodes that have taken the most new shares once a third of the put has landed
    // (6 shares per MiB chunk at 4-of-6 over the nodes: about 2 per chunk per node).
    // The watcher stops when the put ends, so a late kill cannot land in the get below.
    let putEnded = false;
    const p1 = put(ctx, file, () => {
      void (async () => {
        const landed = await poll(() => putEnded || nodes.reduce((a, n) => a + stored(n), 0) >= (size / MiB) * 6 / 3, 240_000, 200);
        if (!landed || putEnded) return;
        victims = [...nodes].sort((a, b) => stored(b) - stored(a)).slice(0, 2);
        killedAt = Date.now();
        for (const v of victims) net.kill(v.name, 'SIGKILL');
      })();
    });
    const r1 = await p1;
    putEnded = true;
    const j1 = r1.code === 0 ? lastJson(r1.stdout) : null;
    let cap = j1?.capability as string | undefined;
    let firstPut = r1.code === 0 ? `completed (${String(j1?.relocated ?? '?')} shares relocated)` : `stopped: exit ${r1.code}${r1.timedOut ? ' (HUNG)' : ''}, ${errorCodeOf(r1.stderr, r1.stdout)}`;
    if (!killedAt) firstPut += ' — the kill came after the put ended';
    let rerun = '';
    if (!cap) {
      // The resumable case: the same command again (stored shares are kept; SPEC.md §9.8 puts are idempotent).
      const r2 = await put(ctx, file);
      const j2 = r2.code === 0 ? lastJson(r2.stdout) : null;
      cap = j2?.capability as string | undefined;
      rerun = `; rerun: ${r2.code === 0 ? `completed (${String(j2?.relocated ?? '?')} relocated)` : `exit ${r2.code} ${errorCodeOf(r2.stderr, r2.stdout)}`}`;
    }
    const putDone = Date.now();
    let lost = 0;
    let readBack = 'no capability';
    let intact = false;
    if (cap) {
      const out = path.join(net.dir, 'chaos-s5.out');
      const g = await get(ctx, cap, out);
      intact = g.code === 0 && fileHash(out) === want;
      if (g.code === 0 && !intact) lost += size;
      readBack = g.code === 0 ? (intact ? `${size / MiB} MiB intact` : 'WRONG BYTES') : `get exit ${g.code} ${errorCodeOf(g.stderr, g.stdout)}`;
      fs.rmSync(out, { force: true });
    }
    // Put the nodes back.
    for (const v of victims) await startNode(ctx, v);
    // A flipped byte: the root share's first copy (read first, SPEC.md §9.7), on a live node.
    let flip = 'not run';
    let flipOk = false;
    if (cap) {
      const { manifestId } = parseCapability(cap);
      const fps = nodes.map((n) => n.identity!);
      const hex = manifestId.toString('hex');
      const holder = rankNodes(manifestId, fps).map((fp) => nodes.find((n) => n.identity === fp)!)
        .find((n) => fs.existsSync(path.join(n.dataDir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex)));
      if (holder) {
        const f = path.join(holder.dataDir, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex);
        const b = fs.readFileSync(f);
        b[10] ^= 0x01;
        // Restart the holder so that its share cache (SPEC.md §9.8.3) is empty: the read must come
        // from the disk, where the flipped byte is.
        await stopNode(ctx, holder, 'SIGTERM');
        fs.writeFileSync(f, b);
        await startNode(ctx, holder);
        const q0 = metric(await scrapeRelay(holder), 'bitcloud_storage_quarantined_total');
        const out = path.join(net.dir, 'chaos-s5-flip.out');
        const g = await get(ctx, cap, out);
        const ok = g.code === 0 && fileHash(out) === want;
        if (g.code === 0 && !ok) lost += size;
        const q1 = metric(await scrapeRelay(holder), 'bitcloud_storage_quarantined_total');
        const corrupt = Number(lastJson(g.stdout)?.corruptShares ?? 0);
        flipOk = ok && corrupt >= 1 && q1 > q0;
        flip = `flipped byte 10 of the root share on ${holder.name} (restarted: empty cache): get ${g.code === 0 ? (ok ? 'intact' : 'WRONG BYTES') : `exit ${g.code}`}, corrupt shares reported ${corrupt}, ${holder.name} quarantined ${q1 - q0}`;
        fs.rmSync(out, { force: true });
      } else flip = 'no node holds the root share';
    }
    fs.rmSync(file, { force: true });
    return {
      done: `put ${size / MiB} MiB through circuits; SIGKILL ${victims.map((v) => v.name).join(', ') || '(none)'} ${killedAt ? `${secs(killedAt - t0)} s in` : ''}; restarted them; flipped a byte in a stored share`,
      observed: `put ${firstPut}${rerun}; read back: ${readBack}; ${flip}`,
      recoverySeconds: killedAt && cap ? secs(putDone - killedAt) : null, bytesLost: lost,
      passed: !!killedAt && intact && flipOk,
    };
  },
};

// ---------------------------------------------------------------------------------------------

function mountpointOf(dir: string): boolean {
  return spawnSync('mountpoint', ['-q', dir]).status === 0;
}

function sh(argv: string[]): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
}

function duBytes(dir: string): number {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split(/\s/)[0]) || 0;
}

const s6: Scenario = {
  id: '6', name: 'a storage node\'s disk fills (size-limited tmpfs as its data folder)', needsHosts: false, storage: true, needsRoot: true,
  expected: 'puts to it are refused with STORAGE_FULL (the put goes on to other nodes, SPEC.md §9.7); reads of what it holds keep working; no partial or temporary share file is left; once space returns it takes shares again',
  async run(ctx) {
    const net = ctx.net;
    const nodes = storageNodes(ctx);
    const victim = nodes[0];
    const dir = victim.dataDir;
    const orig = `${dir}.chaos-orig`;
    let mounted = false;
    // Shares the node took while on the tmpfs go back with it to its real folder.
    const restore = (): void => {
      if (mounted || mountpointOf(dir)) {
        if (fs.existsSync(orig)) spawnSync('cp', ['-a', `${dir}/.`, `${orig}/`]);
        spawnSync('umount', ['-l', dir]);
        mounted = false;
      }
      if (fs.existsSync(orig)) { fs.rmSync(dir, { recursive: true, force: true }); fs.renameSync(orig, dir); }
    };
    const onExit = (): void => { restore(); };
    process.once('exit', onExit);
    try {
      // A small file stored first, so the node holds something to read back while full.
      const small = path.join(net.dir, 'chaos-s6-small.bin');
      const wantSmall = writeRandom(small, 2 * MiB);
      const ps = await put(ctx, small);
      const capSmall = ps.code === 0 ? lastJson(ps.stdout)?.capability as string : null;
      if (!capSmall) return { done: 'first put failed', observed: `exit ${ps.code} ${errorCodeOf(ps.stderr, ps.stdout)}`, recoverySeconds: null, bytesLost: 0, passed: false };
      const heldBefore = shareFilesOf(victim).length;
      // Stop, move the data folder onto a tmpfs with 1 MiB to spare, start again.
      await stopNode(ctx, victim, 'SIGTERM');
      const used = duBytes(dir);
      const sizeKiB = Math.ceil((used + 1 * MiB) / 1024);
      fs.renameSync(dir, orig);
      fs.mkdirSync(dir, { mode: 0o700 });
      sh(['mount', '-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0700`, 'tmpfs', dir]);
      mounted = true;
      sh(['cp', '-a', `${orig}/.`, `${dir}/`]);
      if (!await startNode(ctx, victim)) return { done: 'node did not restart on the tmpfs', observed: '', recoverySeconds: null, bytesLost: 0, passed: false };
      const e0 = metric(await scrapeRelay(victim), 'bitcloud_storage_errors_total', { code: 'STORAGE_FULL' });
      // A put large enough to give the node more than 1 MiB of shares.
      const big = path.join(net.dir, 'chaos-s6-big.bin');
      const wantBig = writeRandom(big, 24 * MiB);
      const pb = await put(ctx, big);
      const jb = pb.code === 0 ? lastJson(pb.stdout) : null;
      const e1 = metric(await scrapeRelay(victim), 'bitcloud_storage_errors_total', { code: 'STORAGE_FULL' });
      const tmpLeft = shareFilesOf(victim, true).length;
      const dfFull = spawnSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)?.trim();
      let lost = 0;
      // Reads keep working: the small file (the node holds shares of it) and the big one.
      const outS = path.join(net.dir, 'chaos-s6-small.out');
      const gs = await get(ctx, capSmall, outS);
      const smallOk = gs.code === 0 && fileHash(outS) === wantSmall;
      if (gs.code === 0 && !smallOk) lost += 2 * MiB;
      // The node itself serves reads: its shares of the small file read back whole from its own disk.
      const servedReads = metric(await scrapeRelay(victim), 'bitcloud_storage_requests_total', { op: 'get' });
      let bigOk = false;
      if (jb?.capability) {
        const outB = path.join(net.dir, 'chaos-s6-big.out');
        const gb = await get(ctx, jb.capability as string, outB);
        bigOk = gb.code === 0 && fileHash(outB) === wantBig;
        if (gb.code === 0 && !bigOk) lost += 24 * MiB;
        fs.rmSync(outB, { force: true });
      }
      // Every share file on the full node is whole: its name is the hash of its bytes (§9.8).
      const files = shareFilesOf(victim);
      const bad = files.filter((f) => shareId(fs.readFileSync(f)).toString('hex') !== path.basename(f)).length;
      // Space returns: grow the tmpfs; the next put gives it shares again.
      const t0 = Date.now();
      sh(['mount', '-o', `remount,size=${sizeKiB + 256 * 1024}k`, dir]);
      const held0 = shareFilesOf(victim).length;
      const again = path.join(net.dir, 'chaos-s6-again.bin');
      writeRandom(again, 8 * MiB);
      const pa = await put(ctx, again);
      const took = shareFilesOf(victim).length - held0;
      const recovered = pa.code === 0 && took > 0;
      for (const f of [small, big, again, outS]) fs.rmSync(f, { force: true });
      const passed = pb.code === 0 && e1 > e0 && smallOk && bigOk && tmpLeft === 0 && bad === 0 && recovered;
      return {
        done: `${victim.name}'s data folder on a ${Math.round(sizeKiB / 1024)} MiB tmpfs (1 MiB free; it held ${heldBefore} shares), put 24 MiB, then the tmpfs grown by 256 MiB and 8 MiB put`,
        observed: `full: put ${pb.code === 0 ? `completed (${String(jb?.relocated ?? '?')} shares relocated)` : `exit ${pb.code} ${errorCodeOf(pb.stderr, pb.stdout)}`}, ${victim.name} refused ${e1 - e0} share(s) with STORAGE_FULL (${dfFull} bytes free), `
          + `${tmpLeft} temporary files left, ${bad} of ${files.length} share files not whole; reads while full: small file ${smallOk ? 'intact' : 'FAILED'} (${servedReads} share reads served by ${victim.name} so far), big file ${bigOk ? 'intact' : 'FAILED'}; `
          + `space back: ${recovered ? `it took ${took} shares of the next put` : `took ${took} shares (put exit ${pa.code})`}`,
        recoverySeconds: recovered ? secs(Date.now() - t0) : null, bytesLost: lost, passed,
      };
    } finally {
      // Stop the node, put its real data folder back, start it again.
      await stopNode(ctx, victim, 'SIGTERM');
      restore();
      process.removeListener('exit', onExit);
      await startNode(ctx, victim);
    }
  },
};

export const STORAGE_SCENARIOS: Scenario[] = [s5, s6];
