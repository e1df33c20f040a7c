// SPEC.md §3.3 step 1a: one daemon per data folder. A real relay holds `<dataDir>/lock`; a second
// one on the same folder (other ports) exits non-zero with DATA_DIR_LOCKED while the first serves
// on; after a SIGKILL the next start takes the stale lock over, and SIGTERM removes it.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest } from '../../src/dir/fetch';
import type { Daemon } from '../helpers/daemon';
import { makeDirNet, makeRelay, startRelay, tearDownDirNet, type DirNet, type RelaySetup } from '../helpers/dirnet';

let net: DirNet;
let relay: RelaySetup;
let other: RelaySetup;

/** The relay's MetricsPort answers /metrics (it serves). */
async function serves(r: RelaySetup): Promise<boolean> {
  const res = await httpRequest(`http://127.0.0.1:${r.metricsPort}/metrics`, { maxBytes: 4 << 20, timeoutMs: 5000 }).catch(() => null);
  return res?.status === 200;
}

/** The exit code, or 'started' if the daemon came up instead. */
function outcome(d: Daemon): Promise<number | string> {
  return Promise.race([d.exited, d.waitForMsg('relay listening', {}, 30_000).then(() => 'started', () => d.exited)]);
}

beforeAll(async () => {
  // No authority runs: the relay starts and serves without one (it retries its publication).
  net = await makeDirNet(1, 60);
  relay = await makeRelay(net, 'relay1');
  // A second relay config with its own ports but the first one's data folder.
  other = await makeRelay(net, 'relay1b');
  const cfg = JSON.parse(fs.readFileSync(other.configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(other.configFile, JSON.stringify({ ...cfg, dataDir: relay.dataDir }, null, 2));
});
afterAll(async () => { await tearDownDirNet(net); });

describe('data folder lock (SPEC.md §3.3 step 1a)', () => {
  it('a second relay on a held folder exits with DATA_DIR_LOCKED; a killed holder is taken over; SIGTERM removes the lock', async () => {
    const lockFile = path.join(relay.dataDir, 'lock');
    const first = startRelay(relay);
    await first.waitForMsg('relay listening');
    expect(fs.readFileSync(lockFile, 'utf8').split('\n')[0]).toBe(String(first.pid));
    const keysBefore = fs.readFileSync(path.join(relay.dataDir, 'onion.key'));

    const second = startRelay(other);
    const code = await outcome(second);
    if (code === 'started') await second.stop();
    expect(code).not.toBe('started');
    expect(code).not.toBe(0);
    const out = second.logs.map((l) => l.text).join('\n');
    expect(out).toContain('DATA_DIR_LOCKED');
    expect(out).toContain(`process ${first.pid}`);
    expect(out).toContain(fs.realpathSync(relay.dataDir));
    // The first serves on, its lock and keys untouched.
    expect(first.running).toBe(true);
    expect(await serves(relay)).toBe(true);
    expect(await serves(other)).toBe(false);
    expect(fs.readFileSync(lockFile, 'utf8').split('\n')[0]).toBe(String(first.pid));
    expect(fs.readFileSync(path.join(relay.dataDir, 'onion.key')).equals(keysBefore)).toBe(true);

    // A crash leaves the lock; the next start takes it over as stale.
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    expect(fs.existsSync(lockFile)).toBe(true);
    const third = startRelay(relay);
    await third.waitForMsg('relay listening');
    expect(fs.readFileSync(lockFile, 'utf8').split('\n')[0]).toBe(String(third.pid));
    expect(await serves(relay)).toBe(true);

    // A clean stop removes it.
    await third.stop();
    expect(await third.exited).toBe(0);
    expect(fs.existsSync(lockFile)).toBe(false);
  });
});
