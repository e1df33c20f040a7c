// One node of the storage bench's network (storage-net.ts), each in its own process as users run
// them (`storage-net-node.ts ROLE`): `guard` or `middle` (the circuit switch of src/ with an
// extend hook), `storage` (StorageEndpoint + ShareStore, no moderation), or `raw`, a circuit
// endpoint whose BEGIN_STORAGE streams carry bare bytes (the raw 3-hop baseline: 'D' u32 → that
// many bytes back; 'U' u32 + bytes → one byte back). Prints one JSON line with its hop, runs
// until stdin closes or SIGTERM, then removes its folder.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadOrCreateNodeKeys, type NodeKeys } from '../../src/crypto/keys';
import { connectLink, createLinkListener, type LinkListener } from '../../src/link';
import { CircuitSwitch } from '../../src/circuit/switch';
import type { IncomingStream } from '../../src/circuit/types';
import { ShareStore } from '../../storage/share-store';
import { StorageEndpoint } from '../../storage/endpoint';
import { keepOldGenerationHeadroom } from '../../src/ops/old-gen';

// As the relay and storage daemons do at start (SPEC.md §11.6).
keepOldGenerationHeadroom();

const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-net-'));
const closers: Array<() => Promise<void> | void> = [];

function hopInfo(k: NodeKeys, port: number, storagePort = 0) {
  return { identity: k.identity.publicKey.toString('hex'), onionKey: k.onion.publicKey.toString('hex'), port, storagePort };
}

async function relay(name: string, onStream?: (inc: IncomingStream) => void): Promise<{ keys: NodeKeys; listener: LinkListener }> {
  const keys = await loadOrCreateNodeKeys(path.join(dir, name));
  const sw = new CircuitSwitch({
    identity: keys.identity.publicKey, onionKeys: () => [keys.onion],
    hooks: {
      extend: (t) => connectLink({ host: t.addresses[0].host, port: t.addresses[0].port, expectedIdentity: t.identity, identity: keys.identity }),
      onStream: onStream ?? ((inc) => inc.refuse(1)),
    },
  });
  const listener = await createLinkListener({ host: '127.0.0.1', port: 0, identity: keys.identity, onChannel: (ch) => sw.attach(ch) });
  closers.push(() => sw.close(), () => listener.close());
  return { keys, listener };
}

/** Raw bytes on a stream: the circuit's own throughput, with nothing of the storage protocol. */
function rawEndpoint(inc: IncomingStream): void {
  inc.accept();
  const s = inc.stream;
  let head = Buffer.alloc(0);
  let upLeft = -1;
  const block = Buffer.alloc(256 * 1024, 0x5a);
  s.on('data', (b: Buffer) => {
    if (upLeft >= 0) {
      upLeft -= b.length;
      if (upLeft <= 0) { s.end(Buffer.from([1])); upLeft = -1; }
      return;
    }
    head = Buffer.concat([head, b]);
    if (head.length < 5) return;
    const n = head.readUInt32BE(1);
    if (head[0] === 0x55 /* U */) {
      upLeft = n - (head.length - 5);
      if (upLeft <= 0) s.end(Buffer.from([1]));
      return;
    }
    let sent = 0;
    const pump = () => {
      while (sent < n) {
        const c = Math.min(block.length, n - sent);
        sent += c;
        if (!s.write(c === block.length ? block : block.subarray(0, c))) { s.once('drain', pump); return; }
      }
      s.end();
    };
    pump();
  });
  s.on('error', () => {});
}

const role = process.argv[2];
let info: ReturnType<typeof hopInfo>;
if (role === 'guard' || role === 'middle') {
  const r = await relay(role);
  info = hopInfo(r.keys, r.listener.port);
} else if (role === 'raw') {
  const r = await relay('raw', rawEndpoint);
  info = hopInfo(r.keys, r.listener.port);
} else if (role === 'storage') {
  const keys = await loadOrCreateNodeKeys(path.join(dir, 'node'));
  const store = await ShareStore.open({ dir: path.join(dir, 'node'), quotaBytes: 4 * 2 ** 30 });
  const endpoint = new StorageEndpoint({ keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0 });
  await endpoint.start();
  closers.push(() => endpoint.close(), () => store.close());
  info = hopInfo(keys, endpoint.orPort, endpoint.storagePort);
} else {
  process.stderr.write('usage: storage-net-node.ts guard|middle|raw|storage\n');
  await fsp.rm(dir, { recursive: true, force: true });
  process.exit(2);
}
process.stdout.write(JSON.stringify(info) + '\n');

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  for (const c of closers.reverse()) await c();
  await fsp.rm(dir, { recursive: true, force: true });
  process.exit(0);
};
process.stdin.on('end', () => void stop());
process.stdin.on('close', () => void stop());
process.stdin.resume();
process.on('SIGTERM', () => void stop());
