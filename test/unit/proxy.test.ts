// `bitcloud proxy` startup (SPEC.md §7.8.1, §6.10): a start that fails part way closes what it
// had already started, so a proxy that reported a failure serves nothing.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { silentLogger } from '../../src/ops/log';
import { BUILD_TIMES_FILE, loadBuildTimes, readProxyConfig, startProxy } from '../../src/client/commands/proxy';
import { isBitcloudError } from '../../src/errors';
import type { GuardSet } from '../../src/client/guards';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-proxy-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function listen(s: net.Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)));
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function timeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('startProxy', () => {
  it('a start that fails after SOCKS is listening (metrics port taken) closes everything it started', async () => {
    const busy = net.createServer();
    const metricsPort = await listen(busy);
    const socksPort = await freePort();
    // Port 1 on loopback: the first consensus fetch fails at once (connection refused).
    const authorities = [1, 2, 3].map((i) => ({ name: `a${i}`, identity: ed25519FromSeed(Buffer.alloc(32, 60 + i)).publicKey.toString('hex'), address: '127.0.0.1:1' }));
    const config = path.join(tmp, 'client.json');
    fs.writeFileSync(config, JSON.stringify({ authorities, dataDir: path.join(tmp, 'data') }));
    const before = timeouts();
    try {
      await expect(startProxy({ config, socksPort, metricsPort, log: silentLogger })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      const refused = await new Promise<string>((resolve) => {
        const s = net.connect(socksPort, '127.0.0.1');
        s.on('connect', () => { s.destroy(); resolve('connected'); });
        s.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? 'error'));
      });
      expect(refused).toBe('ECONNREFUSED');
      expect(timeouts()).toBeLessThanOrEqual(before);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });
});

describe('build times across restarts (SPEC.md §7.3)', () => {
  it('the proxy starts, afresh, over a truncated build-times.json', async () => {
    const authorities = [1, 2, 3].map((i) => ({ name: `a${i}`, identity: ed25519FromSeed(Buffer.alloc(32, 60 + i)).publicKey.toString('hex'), address: '127.0.0.1:1' }));
    const dataDir = fs.mkdtempSync(path.join(tmp, 'data-'));
    const config = path.join(dataDir, 'client.json');
    fs.writeFileSync(config, JSON.stringify({ authorities, dataDir }));
    fs.writeFileSync(path.join(dataDir, BUILD_TIMES_FILE), '{');
    const proxy = await startProxy({ config, socksPort: 0, metricsPort: 0, log: silentLogger });
    try {
      expect(proxy.manager.builder.buildTimeout.toJSON().samples).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('a guard state that cannot be written at shutdown does not fail the close; build times are still saved (SPEC.md §7.2)', async () => {
    const authorities = [1, 2, 3].map((i) => ({ name: `a${i}`, identity: ed25519FromSeed(Buffer.alloc(32, 60 + i)).publicKey.toString('hex'), address: '127.0.0.1:1' }));
    const dataDir = fs.mkdtempSync(path.join(tmp, 'data-'));
    const config = path.join(dataDir, 'client.json');
    fs.writeFileSync(config, JSON.stringify({ authorities, dataDir }));
    const fp = 'ab'.repeat(32);
    const state = path.join(dataDir, 'state.json');
    fs.writeFileSync(state, JSON.stringify({ guards: { version: 1, sampled: [{ fingerprint: fp, addedAt: 1, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false, unlistedSince: null }] } }));
    const proxy = await startProxy({ config, socksPort: 0, metricsPort: 0, log: silentLogger });
    const guards = proxy.manager.opts.guards as GuardSet;
    guards.markFailure(fp);
    expect(guards.dirty).toBe(true);
    // The state file's place is taken by a folder that is not empty: the write (rename) fails.
    fs.rmSync(state);
    fs.mkdirSync(state);
    fs.writeFileSync(path.join(state, 'x'), '');
    await expect(proxy.close()).resolves.toBeUndefined();
    expect(guards.dirty).toBe(true);
    expect(fs.existsSync(path.join(dataDir, BUILD_TIMES_FILE))).toBe(true);
  });

  it('a build-times.json that is not JSON ("{") gives a fresh estimator and a warning with a code', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'bt-'));
    const file = path.join(dir, BUILD_TIMES_FILE);
    fs.writeFileSync(file, '{');
    const warnings: unknown[] = [];
    const log = { ...silentLogger, warn: (...a: unknown[]) => { warnings.push(a[0]); } } as unknown as typeof silentLogger;
    const e = await loadBuildTimes(file, log);
    expect(e.toJSON().samples).toEqual([]);
    expect(warnings).toEqual([expect.objectContaining({ code: 'IO_STATE_CORRUPT' })]);
  });

  it('an empty file, a missing file and a JSON value of the wrong shape give a fresh estimator', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'bt-'));
    const file = path.join(dir, BUILD_TIMES_FILE);
    expect((await loadBuildTimes(file, silentLogger)).toJSON().samples).toEqual([]);
    for (const text of ['', '[1,2]', '"x"', 'null', '{"version":1,"samples":[7,null,{"ms":"a"}]}']) {
      fs.writeFileSync(file, text);
      expect((await loadBuildTimes(file, silentLogger)).toJSON().samples).toEqual([]);
    }
    fs.writeFileSync(file, JSON.stringify({ version: 1, samples: [{ ms: 900 }], fallbackMs: 60_000 }));
    expect((await loadBuildTimes(file, silentLogger)).toJSON().samples).toEqual([{ ms: 900 }]);
  });
});

describe('maxOpenCircuits in the client config (SPEC.md §7b.11)', () => {
  it('defaults to 256, takes an integer ≥ 1, and refuses anything else with CONFIG_INVALID', () => {
    const file = path.join(tmp, 'max-open.json');
    fs.writeFileSync(file, '{}');
    expect(readProxyConfig(file).maxOpenCircuits).toBe(256);
    fs.writeFileSync(file, JSON.stringify({ maxOpenCircuits: 3 }));
    expect(readProxyConfig(file).maxOpenCircuits).toBe(3);
    for (const bad of [0, -1, 1.5, 'x', null]) {
      fs.writeFileSync(file, JSON.stringify({ maxOpenCircuits: bad }));
      try { readProxyConfig(file); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'CONFIG_INVALID')).toBe(true);
      }
    }
  });
});

describe('socksHost and metricsHost in the client config (SPEC.md §11.5)', () => {
  it('refuses a socksHost or metricsHost that is not a non-empty string instead of binding elsewhere (SPEC.md §11.5)', () => {
    const file = path.join(tmp, 'hosts.json');
    fs.writeFileSync(file, '{}');
    expect(readProxyConfig(file)).toMatchObject({ socksHost: '127.0.0.1', metricsHost: '127.0.0.1' });
    fs.writeFileSync(file, JSON.stringify({ socksHost: '::1', metricsHost: '127.0.0.2' }));
    expect(readProxyConfig(file)).toMatchObject({ socksHost: '::1', metricsHost: '127.0.0.2' });
    // "" would make the metrics server listen on every interface; a list or a number would be
    // dropped for the loopback default without a word.
    for (const key of ['socksHost', 'metricsHost']) {
      for (const bad of ['', ['0.0.0.0'], 9050, null]) {
        fs.writeFileSync(file, JSON.stringify({ [key]: bad }));
        let caught: unknown;
        try { readProxyConfig(file); } catch (e) { caught = e; }
        expect(isBitcloudError(caught, 'CONFIG_INVALID'), `${key}: ${JSON.stringify(bad)}`).toBe(true);
        expect((caught as Error).message).toContain(key);
      }
    }
  });
});
