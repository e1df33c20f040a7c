// SPEC.md §6.10 "Connection and body bounds": a real relay process with `dirMaxConnectionsPerAddress`
// 3 in its config file serves three connections of one address on its dir port and closes a fourth
// and a fifth as they arrive, counting them on its MetricsPort.
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest } from '../../src/dir/fetch';
import { makeDirNet, makeRelay, startRelay, tearDownDirNet, type DirNet, type RelaySetup } from '../helpers/dirnet';

let dirNet: DirNet;
let relay: RelaySetup;
const sockets: net.Socket[] = [];

beforeAll(async () => {
  // No authority runs: the relay serves its dir port without one.
  dirNet = await makeDirNet(1, 60);
  relay = await makeRelay(dirNet, 'relay1');
  const cfg = JSON.parse(fs.readFileSync(relay.configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(relay.configFile, JSON.stringify({ ...cfg, dirMaxConnectionsPerAddress: 3 }, null, 2));
});
afterAll(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await tearDownDirNet(dirNet);
});

/** A connection to the dir port from 127.0.0.2 (127.0.0.1 is the relay's own address, exempt), once connected. */
async function open(): Promise<{ s: net.Socket; closed: Promise<void> }> {
  const s = net.connect({ port: relay.dirPort, host: '127.0.0.1', localAddress: '127.0.0.2' });
  sockets.push(s);
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r) => s.once('connect', () => r()));
  return { s, closed };
}

/** Sends one request on `s` and resolves with the status line of its answer (the connection stays open). */
function ask(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    s.once('close', () => reject(new Error('closed unanswered')));
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); const i = got.indexOf('\r\n'); if (i >= 0) resolve(got.slice(0, i)); });
    s.write('GET /bitcloud/status HTTP/1.1\r\nhost: x\r\n\r\n');
  });
}

describe('relay dir port connection caps, real relay (SPEC.md §6.10)', () => {
  it('with dirMaxConnectionsPerAddress 3 in its config, the 4th and 5th connection of an address are closed', async () => {
    const d = startRelay(relay);
    await d.waitForMsg('relay listening');
    const first = [];
    for (let i = 0; i < 3; i++) {
      const c = await open();
      expect(await ask(c.s)).toBe('HTTP/1.1 200 OK');
      first.push(c);
    }
    const more = [await open(), await open()];
    await Promise.all(more.map((c) => c.closed));
    // The first three are still open and served.
    for (const c of first) expect(await ask(c.s)).toBe('HTTP/1.1 200 OK');
    const metrics = await httpRequest(`http://127.0.0.1:${relay.metricsPort}/metrics`, { maxBytes: 4 << 20, timeoutMs: 5000 });
    expect(metrics.body.toString()).toMatch(/^bitcloud_relay_dir_connections_refused_total\{reason="per_address"[^}]*\} 2$/m);
    await d.stop();
  });
});
