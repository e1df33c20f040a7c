// `bitcloud proxy` startup (SPEC.md §7.8.1, §6.10): a start that fails part way closes what it
// had already started, so a proxy that reported a failure serves nothing.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { silentLogger } from '../../src/ops/log';
import { startProxy } from '../../src/client/commands/proxy';

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
