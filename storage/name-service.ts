// SPEC.md §9.14.1: the storage node's half of name lookups over circuits. A client never opens a
// DHT socket of its own; it sends DhtGet / DhtPut on a storage stream and this node runs the BEP 44
// get / put in the private DHT for it. The node checks a DhtPut's signature before spending any
// DHT traffic on it; the client checks every answer itself (src/storage/name-record.ts).
import { err } from '../src/errors';
import type { BitcloudDht } from '../src/storage/dht';
import { dhtItemSignatureValid } from '../src/storage/name-record';
import type { StorageRequest, StorageResponse } from '../src/storage/protocol';

/** DHT operations this node runs for clients at once; more are refused with DHT_BUSY. */
export const MAX_CONCURRENT_DHT_OPS = 32;

export class NameService {
  private inflight = 0;

  constructor(private readonly dht: () => BitcloudDht | null, private readonly maxConcurrent = MAX_CONCURRENT_DHT_OPS) {}

  async handle(req: Extract<StorageRequest, { type: 'dhtGet' | 'dhtPut' }>): Promise<StorageResponse> {
    if (req.type === 'dhtPut' && 'item' in req && !dhtItemSignatureValid(req.item)) {
      throw err('STORAGE_BAD_REQUEST', 'the item\'s signature does not verify under its publisher key');
    }
    const dht = this.dht();
    if (!dht) throw err('DHT_NO_NODES', 'this node\'s DHT is not running');
    if (this.inflight >= this.maxConcurrent) throw err('DHT_BUSY', `more than ${this.maxConcurrent} DHT operations at once; try later or another node`);
    this.inflight++;
    try {
      if (req.type === 'dhtGet') return { type: 'dhtGet', item: await dht.getSignedItem(req.publisher, req.salt) };
      if ('immutable' in req) return { type: 'dhtPut', nodes: await dht.putImmutableItem(req.immutable) };
      return { type: 'dhtPut', nodes: await dht.putSignedItem(req.item) };
    } finally {
      this.inflight--;
    }
  }
}
