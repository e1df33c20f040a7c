// The private DHT as a non-member reaches it (SPEC.md §9.14 Members only, §9.14.1): no DHT socket
// in this process, every put and get a DhtPut / DhtGet on a BEGIN_STORAGE stream to a storage
// node over a circuit (guard → middle → node), as `bitcloud moderator publish` and the name
// commands do. Puts go through the client's own CircuitNames; gets of signed items ask one node
// per call (the client's lookups take a name label, a policy head has its own salt, §10.7.2).
// §9.14.1 has no get of an immutable item: only storage nodes, members, read policy parts.
import { silentLogger } from '../../src/ops/log';
import { CircuitManager } from '../../src/client/circuit-manager';
import { CircuitNames } from '../../src/client/circuit-names';
import { nameNodesOf } from '../../src/client/storage-client';
import { circuitStorageOpener, openNetwork } from '../../src/client/storage-client-setup';
import { shuffle } from '../../src/crypto/primitives';
import { StorageChannel } from '../../src/storage/channel';
import { checkDhtAnswer } from '../../src/storage/name-record';
import type { DhtItem } from '../../src/storage/protocol';
import type { PolicyPutter } from '../../src/moderation/dht';

export interface CircuitDht {
  /** Policy items as DhtPuts through storage nodes (CircuitNames.put: up to 3 nodes tried). */
  putter: PolicyPutter;
  /** A DhtGet of (publisher, salt) through one storage node; the answer checked as a client does (§9.14.1). */
  getSigned(publisher: Buffer, salt: Buffer): Promise<DhtItem | null>;
  close(): Promise<void>;
}

/** Open the network of a client config (its data dir holds the guards) and its circuits to storage nodes. */
export async function openCircuitDht(config: string): Promise<CircuitDht> {
  const log = silentLogger;
  const network = await openNetwork({ config, log });
  const m = new CircuitManager({
    relays: () => network.dir.relays(), guards: network.guards, enforceDistinctSubnets: network.cfg.enforceDistinctSubnets,
    preemptiveCircuits: 0, log, linksFrom: network.builder,
  });
  const open = circuitStorageOpener(m, () => network.dir.relays());
  const nodes = nameNodesOf(network.dir.relays() ?? []);
  const names = new CircuitNames({ nodes, open, log });
  return {
    putter: { immutable: (v) => names.put({ immutable: v }), signed: (item) => names.put({ item }) },
    async getSigned(publisher, salt) {
      const ch = new StorageChannel(await open(shuffle([...nodes])[0]), { requestTimeoutMs: 60_000 });
      try {
        const r = await ch.request({ type: 'dhtGet', publisher, salt });
        return r.item ? checkDhtAnswer({ publisher, salt }, r.item) : null;
      } finally {
        ch.close();
      }
    },
    async close() {
      await names.close();
      await m.close();
      network.close();
    },
  };
}
