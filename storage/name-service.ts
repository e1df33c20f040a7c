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
/**
 * SPEC.md §9.14.1: a client's DHT operation is answered within this long. A lookup walks as long as
 * nodes answer with closer nodes, each query given 2 s, so a hostile DHT peer that keeps handing out
 * new closer (unreachable) addresses could otherwise hold the answer, and the storage request that
 * waits for it, for minutes.
 */
export const DHT_OP_DEADLINE_MS = 30_000;

export class NameService {
  private inflight = 0;

  constructor(private readonly dht: () => BitcloudDht | null, private readonly maxConcurrent = MAX_CONCURRENT_DHT_OPS, private readonly deadlineMs = DHT_OP_DEADLINE_MS) {}

  async handle(req: Extract<StorageRequest, { type: 'dhtGet' | 'dhtPut' }>): Promise<StorageResponse> {
    if (req.type === 'dhtPut' && 'item' in req && !dhtItemSignatureValid(req.item)) {
      throw err('STORAGE_BAD_REQUEST', 'the item\'s signature does not verify under its publisher key');
    }
    const dht = this.dht();
    if (!dht) throw err('DHT_NO_NODES', 'this node\'s DHT is not running');
    if (this.inflight >= this.maxConcurrent) throw err('DHT_BUSY', `more than ${this.maxConcurrent} DHT operations at once; try later or another node`);
    // The operation keeps its place among the 32 until it really ends (the DHT traffic it causes
    // goes on), but the client is answered at the deadline: DHT_GET_FAILED / DHT_PUT_FAILED.
    this.inflight++;
    const op: Promise<StorageResponse> = (async (): Promise<StorageResponse> => {
      if (req.type === 'dhtGet') return { type: 'dhtGet', item: await dht.getSignedItem(req.publisher, req.salt) };
      if ('immutable' in req) return { type: 'dhtPut', nodes: await dht.putImmutableItem(req.immutable) };
      return { type: 'dhtPut', nodes: await dht.putSignedItem(req.item) };
    })().finally(() => { this.inflight--; });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        op.catch(() => {}); // its own failure, after the deadline, has no one left to tell
        reject(err(req.type === 'dhtGet' ? 'DHT_GET_FAILED' : 'DHT_PUT_FAILED', `the DHT ${req.type === 'dhtGet' ? 'lookup' : 'store'} did not finish within ${this.deadlineMs} ms`));
      }, this.deadlineMs);
      timer.unref?.();
    });
    try {
      return await Promise.race([op, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
}
