// The network half of the storage bench (storage-net.ts), in its own process so that the
// client and the network each get a core: a guard and a middle relay (the circuit switch of src/
// with an extend hook), six storage nodes (StorageEndpoint + ShareStore, no moderation), and a
// "raw" circuit endpoint whose BEGIN_STORAGE streams carry bare bytes (the raw 3-hop baseline:
// 'D' u32 → that many bytes back; 'U' u32 + bytes → one byte back). Prints one JSON line with the
// hops, runs until stdin closes, then removes its folder.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadOrCreateNodeKeys, type NodeKeys } from '../../src/crypto/keys';
import { connectLink, createLinkListener, type LinkListener } from '../../src/link';
import { CircuitSwitch } from '../../src/circuit/switch';
import type { IncomingStream } from '../../src/circuit/types';
import { ShareStore } from '../../storage/share-store';
import { StorageEndpoint } from '../../storage/endpoint';

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

const guard = await relay('guard');
const middle = await relay('middle');
const raw = await relay('raw', rawEndpoint);
const nodes = [];
for (let i = 0; i < 6; i++) {
  const keys = await loadOrCreateNodeKeys(path.join(dir, `node${i}`));
  const store = await ShareStore.open({ dir: path.join(dir, `node${i}`), quotaBytes: 4 * 2 ** 30 });
  const endpoint = new StorageEndpoint({ keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0 });
  await endpoint.start();
  closers.push(() => endpoint.close(), () => store.close());
  nodes.push(hopInfo(keys, endpoint.orPort, endpoint.storagePort));
}

process.stdout.write(JSON.stringify({
  guard: hopInfo(guard.keys, guard.listener.port), middle: hopInfo(middle.keys, middle.listener.port), raw: hopInfo(raw.keys, raw.listener.port), nodes,
}) + '\n');

const stop = async () => {
  for (const c of closers.reverse()) await c();
  await fsp.rm(dir, { recursive: true, force: true });
  process.exit(0);
};
process.stdin.on('end', () => void stop());
process.stdin.on('close', () => void stop());
process.stdin.resume();
process.on('SIGTERM', () => void stop());
