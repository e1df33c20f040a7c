// SPEC.md §7b: 3-hop circuits end to end, in one process: real TLS link listeners on
// 127.0.0.1, real keys in temp dirs, a hand-made relay list (no authorities), a local TCP
// echo/sink server; the client code builds circuits and opens streams through them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { loadOrCreateNodeKeys, fingerprint, type NodeKeys } from '../../src/crypto/keys';
import { createLinkListener, connectLink, type LinkListener } from '../../src/link';
import { RelayCircuits } from '../../relay/circuits';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import type { CircuitStream } from '../../src/circuit/stream';

interface TestRelay { keys: NodeKeys; rc: RelayCircuits; listener: LinkListener; hop: HopTarget; dir: string }

async function startRelay(name: string, exit: boolean): Promise<TestRelay> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `bitcloud-circ-${name}-`));
  const keys = await loadOrCreateNodeKeys(dir);
  const rc = new RelayCircuits({
    keys,
    exitPolicy: exit ? ['reject 127.0.0.1:9', 'accept 127.0.0.1:*', 'reject *:*'] : null,
    requireConsensusForExtend: false,
    lookup: async (host) => {
      if (host === 'echo.test') return [{ address: '127.0.0.1', family: 4 }];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    },
  });
  const listener = await createLinkListener({ host: '127.0.0.1', port: 0, identity: keys.identity, onChannel: (ch) => rc.acceptChannel(ch) });
  const hop: HopTarget = { identity: keys.identity.publicKey, fingerprint: fingerprint(keys.identity.publicKey), onionKey: keys.onion.publicKey, address: '127.0.0.1', orPort: listener.port };
  return { keys, rc, listener, hop, dir };
}

async function buildCircuit(path3: HopTarget[]): Promise<ClientCircuit> {
  const ch = await connectLink({ host: path3[0].address, port: path3[0].orPort, expectedIdentity: path3[0].identity });
  const link = new ClientLink(ch);
  const c = ClientCircuit.allocate(link);
  await c.create(path3[0]);
  for (const h of path3.slice(1)) await c.extend(h);
  return c;
}

function sha(b: Buffer): string { return createHash('sha256').update(b).digest('hex'); }

describe('circuits in process', () => {
  const relays: TestRelay[] = [];
  let echo: net.Server;
  let echoPort = 0;

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) relays.push(await startRelay(`r${i}`, i >= 2));
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const r of relays) { await r.rc.close(); await r.listener.close(); await fsp.rm(r.dir, { recursive: true, force: true }); }
    await new Promise<void>((r) => echo.close(() => r()));
  });

  it('builds a 3-hop circuit and a stream carries data both ways intact', async () => {
    const c = await buildCircuit([relays[0].hop, relays[1].hop, relays[2].hop]);
    expect(c.length).toBe(3);
    const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const data = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
    const got = await echoRoundTrip(stream, data);
    expect(sha(got)).toBe(sha(data));
    c.destroy();
  });
});

function echoRoundTrip(stream: CircuitStream, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    stream.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= data.length) { stream.end(); resolve(Buffer.concat(parts)); }
    });
    stream.on('error', reject);
    stream.write(data);
  });
}
