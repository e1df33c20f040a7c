// Issue 6 "done when", as the README shows it: `npm start` brings up storage nodes and its demo
// does a put/get round trip through circuits; an uploader `put`s a file, two storage nodes go
// away (`npm run localnet:stop-node`), and a reader still `get`s the same bytes; started again by
// hand (`bitcloud-storage run --config`), they are listed and a put takes all six. Real processes:
// the launcher, every daemon, and the `bitcloud` CLI, all on 127.0.0.1. With `--moderators 1`
// store1 subscribes to a moderator, and the demo shows it refusing content denied by content.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalNet, type LocalNet } from '../helpers/localnet';
import { runCli, eventually, startDaemon, stopAll, REPO_ROOT } from '../helpers/daemon';
import { randomBytes } from '../../src/crypto/primitives';

let net: LocalNet;

beforeAll(async () => {
  net = await startLocalNet({ relays: 4, exits: 1, storage: 6, moderators: 1, demo: true, timeoutMs: 240_000 });
}, 300_000);

afterAll(async () => {
  await stopAll(); // store1 and store2 started again by hand in the last test: not the launcher's
  await net?.stop();
}, 60_000);

describe('npm start with storage nodes (README "store a file, lose two nodes, read it back")', () => {
  it('the launcher started six storage nodes and its demo stored and read back a file', async () => {
    expect(net.storage.map((n) => n.name)).toEqual(['store1', 'store2', 'store3', 'store4', 'store5', 'store6']);
    // network.json says ready before the demo runs; the launcher then prints what the demo did.
    await eventually(() => /The network is up/.test(net.output()) || /did not come up/.test(net.output()), 240_000, 250);
    expect(net.output()).toMatch(/demo: put \d+ bytes through circuits to the storage nodes .* sha256 matches/);
    expect(net.output()).toMatch(/read capability: bitcloud:[a-z2-7]+#[a-z2-7]+/);
  }, 300_000);

  it('npm start -- --moderators 1: store1 subscribes to mod1, and the demo shows it refusing denied content', async () => {
    const nj = net.read() as unknown as { moderators: { name: string; fingerprint: string; subscribers: string[] }[] };
    expect(nj.moderators).toHaveLength(1);
    expect(nj.moderators[0]).toMatchObject({ name: 'mod1', subscribers: ['store1'] });
    const c = await net.consensus();
    const store1 = c.relays.find((r) => r.nickname === 'store1')!;
    expect(store1.moderators).toEqual([nj.moderators[0].fingerprint]);
    expect(c.relays.find((r) => r.nickname === 'store2')!.unmoderated).toBe(true);
    expect(net.output()).toMatch(/the same bytes under another name were refused: STORAGE_PUT_FAILED: .*POLICY_DENIED/);
    expect(net.output()).toMatch(/and a get of the original: POLICY_DENIED/);
  }, 60_000);

  it('put, stop two storage nodes, get: identical bytes', async () => {
    const file = path.join(net.dir, 'mine.bin');
    const out = path.join(net.dir, 'theirs.bin');
    const body = randomBytes(3 * 1024 * 1024 + 17);
    fs.writeFileSync(file, body);
    const put = await runCli('bitcloud', ['put', file, '--json', '--config', net.clientConfig], { timeoutMs: 180_000 });
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const cap = String(JSON.parse(put.stdout.trim().split('\n').pop()!).capability);

    const stop = await runCli(path.join(REPO_ROOT, 'bin', 'run-ts.js'),
      [path.join(REPO_ROOT, 'scripts', 'localnet-stop-node.ts'), '--dir', net.dir, 'store1', 'store2'], { timeoutMs: 60_000 });
    expect(stop.code, stop.stderr + stop.stdout).toBe(0);
    expect(stop.stdout).toMatch(/stopped store1/);
    await eventually(() => net.read().nodes.filter((n) => n.role === 'storage' && !n.running).length === 2, 30_000, 200);

    const get = await runCli('bitcloud', ['get', cap, '-o', out, '--json', '--config', net.clientConfig], { timeoutMs: 180_000 });
    expect(get.code, get.stderr + get.stdout).toBe(0);
    expect(fs.readFileSync(out).equals(body)).toBe(true);

    // The reader keeps the file alive: renew every share's lease on the nodes still up. The shares
    // on the two stopped nodes are missing, yet every chunk keeps k renewed shares.
    const renew = await runCli('bitcloud', ['renew', cap, '--lease-seconds', String(30 * 86_400), '--json', '--config', net.clientConfig], { timeoutMs: 180_000 });
    expect(renew.code, renew.stderr + renew.stdout).toBe(0);
    const rj = JSON.parse(renew.stdout.trim().split('\n').pop()!) as { ok: boolean; renewed: number; missing: number; unreadableChunks: number; expiresAt: number };
    expect(rj.ok).toBe(true);
    expect(rj.renewed).toBeGreaterThan(0);
    expect(rj.missing).toBeGreaterThan(0);
    expect(rj.unreadableChunks).toBe(0);
    expect(rj.expiresAt).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 29 * 86_400);
  }, 420_000);

  it('README: the two stopped nodes, started again by hand (bitcloud-storage run --config), are listed again and a put works', async () => {
    const restarted = ['store1', 'store2'].map((name) => startDaemon('bitcloud-storage', ['run', '--config', path.join(net.dir, `${name}.json`)]));
    // The consensus may still list them Running from before they stopped (the authorities have not
    // voted since): the put must not race their start-up, so first wait until both listen again.
    await Promise.all(restarted.map((d) => d.waitForMsg('storage node listening', {}, 120_000)));
    const listening = Date.now();
    // Then wait for the client's own view, not the authorities': with a valid cached consensus and
    // a guard, the client asks only its guards' mirrors (SPEC.md §6.10.1), and `bitcloud consensus`
    // fetches the way `put` does, keeping what it gets in the client's cache, where the put starts.
    // A consensus that lists the two Running proves nothing until it is built on reachability tests
    // run after they listen again: one valid after `listening + 2P` is (SPEC.md §6.9: its votes are
    // signed at validAfter − P from tests started a period before), else an older one could list
    // them from before they stopped while the next, from tests while they were down, drops them.
    await eventually(async () => {
      const r = await runCli('bitcloud', ['consensus', '--json', '--config', net.clientConfig], { timeoutMs: 60_000 });
      if (r.code !== 0) return false;
      const c = JSON.parse(r.stdout.trim().split('\n').pop()!) as { validAfter: string; periodSeconds: number; relays: { nickname: string; flags: string[] }[] };
      if (Date.parse(c.validAfter) < listening + 2 * c.periodSeconds * 1000) return false;
      return ['store1', 'store2'].every((n) => c.relays.some((x) => x.nickname === n && ['Running', 'Valid', 'Storage'].every((f) => x.flags.includes(f))));
    }, 180_000, 1000);
    const file = path.join(net.dir, 'after.bin');
    fs.writeFileSync(file, randomBytes(1024 * 1024 + 5));
    const put = await runCli('bitcloud', ['put', file, '--json', '--config', net.clientConfig], { timeoutMs: 180_000 });
    expect(put.code, put.stderr + put.stdout).toBe(0);
    expect(restarted.every((d) => d.running)).toBe(true);
  }, 500_000);
});
