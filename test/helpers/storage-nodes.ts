// Storage nodes in this process for the storage tests: a real ShareStore in a temp folder behind a
// real StorageEndpoint on 127.0.0.1, listed by a hand-made consensus entry (no authorities).
import fsp from 'node:fs/promises';
import path from 'node:path';
import { loadOrCreateNodeKeys, fingerprint } from '../../src/crypto/keys';
import type { ConsensusRelay } from '../../src/dir/types';
import { ShareStore } from '../../storage/share-store';
import { StorageEndpoint } from '../../storage/endpoint';

export interface TestNode { dir: string; store: ShareStore; endpoint: StorageEndpoint; relay: ConsensusRelay; running: boolean }

/** Node `i` in `<root>/node<i>`, with no share cache (every read comes from disk). */
export async function startNode(root: string, i: number, quotaBytes: number): Promise<TestNode> {
  const dir = path.join(root, `node${i}`);
  const keys = await loadOrCreateNodeKeys(dir);
  const store = await ShareStore.open({ dir, quotaBytes, cacheBytes: 0 });
  const endpoint = new StorageEndpoint({ keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0 });
  await endpoint.start();
  const relay: ConsensusRelay = {
    identity: keys.identity.publicKey, fingerprint: fingerprint(keys.identity.publicKey), nickname: `s${i}`, onionKey: keys.onion.publicKey,
    address: '127.0.0.1', orPort: endpoint.orPort, dirPort: 0, storagePort: endpoint.storagePort,
    flags: new Set(['Running', 'Valid', 'Storage']) as ConsensusRelay['flags'], weight: 1, proven: 0, exitPolicy: [], family: [], roles: ['storage'],
    moderators: [], unmoderated: true, version: 'test',
  };
  return { dir, store, endpoint, relay, running: true };
}

export async function stopNode(n: TestNode): Promise<void> {
  if (!n.running) return;
  n.running = false;
  await n.endpoint.close();
  await n.store.close();
}

/** Every share file under a node's data folder. */
export async function shareFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p); else out.push(p);
    }
  };
  await walk(path.join(dir, 'shares'));
  return out;
}
