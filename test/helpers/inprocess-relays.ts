// A few relays in this process for the hostile-peer tests: the real RelayCircuits behind real TLS
// link listeners on 127.0.0.1, real keys in temp dirs, a hand-made relay list (no authorities).
// The client side is the real ClientCircuit. Every relay is closed by `stop()`.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { loadOrCreateNodeKeys, fingerprint, type NodeKeys } from '../../src/crypto/keys';
import { createLinkListener, connectLink, type LinkListener } from '../../src/link';
import { createRegistry } from '../../src/ops/metrics';
import type { ConsensusRelay } from '../../src/dir/types';
import { RelayCircuits, type RelayCircuitsOptions } from '../../relay/circuits';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import type { RelayCryptoAlgorithm } from '../../src/crypto/hop-crypto';

export interface TestRelay {
  keys: NodeKeys; rc: RelayCircuits; listener: LinkListener; info: ConsensusRelay; dir: string;
  registry: ReturnType<typeof createRegistry>;
  stop(): Promise<void>;
}

/** One relay; `exitPolicy` set makes it an exit (the policy text, e.g. the default one). */
export async function startRelay(
  name: string, flags: string[], o: Partial<RelayCircuitsOptions> & { exitPolicy?: string[] | null } = {},
): Promise<TestRelay> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `bitcloud-hostile-${name}-`));
  const keys = await loadOrCreateNodeKeys(dir);
  const exit = flags.includes('Exit');
  const registry = createRegistry(`relay-${name}`);
  const rc = new RelayCircuits({ keys, requireConsensusForExtend: false, registry, ...o });
  const listener = await createLinkListener({ host: '127.0.0.1', port: 0, identity: keys.identity, admit: (a) => rc.admitConnection(a), onChannel: (ch, adm) => rc.acceptChannel(ch, adm) });
  const id = keys.identity.publicKey;
  const info: ConsensusRelay = {
    identity: id, fingerprint: fingerprint(id), nickname: name, onionKey: keys.onion.publicKey,
    address: '127.0.0.1', orPort: listener.port, dirPort: 0, storagePort: 0,
    flags: new Set(['Running', 'Valid', 'Fast', ...flags]) as ConsensusRelay['flags'], weight: 1000, proven: 0,
    exitPolicy: exit ? (o.exitPolicy ?? ['accept *:*']) : ['reject *:*'], family: [], roles: exit ? ['relay', 'exit'] : ['relay'],
    moderators: [], unmoderated: true, version: 'test',
  };
  return {
    keys, rc, listener, info, dir, registry,
    async stop() { await rc.close(); await listener.close(); await fsp.rm(dir, { recursive: true, force: true }); },
  };
}

export async function rawLink(r: TestRelay): Promise<ClientLink> {
  return new ClientLink(await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity }));
}

/** A client circuit through `hops`, built by hand (CREATE2 to the first, EXTEND2 to the others). */
export async function manualCircuit(hops: TestRelay[], relayCrypto: RelayCryptoAlgorithm = 'tor1'): Promise<ClientCircuit> {
  const c = ClientCircuit.allocate(await rawLink(hops[0]), relayCrypto);
  await c.create(hops[0].info);
  for (const h of hops.slice(1)) await c.extend(h.info);
  return c;
}

/** A TCP echo server on 127.0.0.1 (an exit's target in circuit tests); `close()` stops it. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const srv = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => srv.close(() => r())) };
}
