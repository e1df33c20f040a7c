// SPEC.md §9.16.4: what the gateway reads from storage — manifests, folder listings and decrypted
// chunks — with LRU caches of decrypted chunks, of manifests and of folder listings bounded in bytes (lru-cache). Cache keys bind the
// file key as well as the manifest id (a hash of both), so a request with a wrong key can never be
// answered from what a right key decrypted. Concurrent requests for one chunk share one fetch.
// A byte range is read chunk by chunk, a few chunks ahead, so memory stays bounded whatever the
// file size and a seek fetches only the chunks it needs.
import { setMaxListeners } from 'node:events';
import { LRUCache } from 'lru-cache';
import { sha256 } from '../../crypto/primitives';
import type { Capability } from '../../storage/capability';
import { ChunkKind } from '../../storage/encode';
import type { Folder } from '../../storage/folder';
import { chunkOffsets, plainLen, type Manifest } from '../../storage/manifest';
import { prom, type Registry } from '../../ops/metrics';
import { fetchChunk, fetchManifest, fetchRoot, type GetStats } from '../storage-client-get';
import { readFolderListing } from '../storage-client-folder';
import type { StorageClient } from '../storage-client';
import { storageAborted, untilStorageAborted } from '../../storage/channel';

export interface BlobReaderOptions {
  /** The storage client to use now (the gateway may replace it, SPEC.md §9.16.4). */
  client: () => StorageClient;
  /** Bytes of decrypted chunks kept (0 = no cache). Default 256 MiB. */
  cacheBytes?: number;
  /** Chunks fetched ahead of the one being sent. Default 2. */
  readAhead?: number;
  /** Bytes of manifests kept (as counted by manifestMemoryBytes, SPEC.md §9.16.4). Default MANIFEST_CACHE_BYTES. */
  manifestCacheBytes?: number;
  /** The largest manifest kept; a larger one is used but not cached. Default MANIFEST_CACHE_ENTRY_BYTES. */
  manifestEntryBytes?: number;
  /** Bytes of folder listings kept (as counted by folderMemoryBytes, SPEC.md §9.16.4). Default FOLDER_CACHE_BYTES. */
  folderCacheBytes?: number;
  /** The largest listing kept; a larger one is used but not cached. Default FOLDER_CACHE_ENTRY_BYTES. */
  folderEntryBytes?: number;
  registry?: Registry;
}

interface OpenFile {
  manifest: Manifest;
  offsets: number[];
  /** What it counts for in the manifest cache: manifestMemoryBytes. */
  bytes: number;
}

/**
 * SPEC.md §9.16.4: the manifest cache is bounded in bytes as well as in count. A manifest may take
 * up to MAX_MANIFEST_BYTES (64 MiB, §9.4); 1024 of them bounded by count alone would let a page
 * naming many large-manifest files push the proxy to many GiB.
 */
export const MANIFEST_CACHE_BYTES = 128 * 1024 * 1024;
/** SPEC.md §9.16.4: a manifest larger than this is used for its request but not cached. */
export const MANIFEST_CACHE_ENTRY_BYTES = 32 * 1024 * 1024;

/**
 * SPEC.md §9.16.4: the folder listing cache is bounded in bytes as well as in count (64). A listing
 * may take up to MAX_FOLDER_BYTES (16 MiB, §9.15) encoded; 64 of them bounded by count alone would
 * be 1 GiB before decoding.
 */
export const FOLDER_CACHE_BYTES = 64 * 1024 * 1024;
/** SPEC.md §9.16.4: a listing counting for more than this is used for its request but not cached. */
export const FOLDER_CACHE_ENTRY_BYTES = 16 * 1024 * 1024;

/*
 * SPEC.md §9.16.4: a cached manifest or listing counts for an estimate of the memory its decoded
 * form holds, from that form's own sizes; what it was encoded as says little (a 210-byte chunk
 * entry of a 4-of-6 manifest decodes to six Buffers). Measured on Node 20 (x64) by decoding 20
 * manifests of 2 000 and 20 000 chunks at n = 3, 6 and 12, and 20 listings of 2 000 and 20 000
 * entries, comparing heap and ArrayBuffer bytes after a full GC before and after:
 *   - a manifest keeps its decoded bytes whole (its share ids are views of them), plus about
 *     105 bytes a chunk (its object, its share id list, its offset) and 104 a share id (a Buffer
 *     view): 4.3 to 4.9 times its encoded length with 1 KiB chunks;
 *   - a listing entry takes about 346 to 373 bytes (its object, its capability's two 32-byte
 *     Buffers) besides its path, which takes 1 or 2 bytes a character: 1.6 to 2.3 times the
 *     encoded listing.
 * The constants below round these up.
 */
const MANIFEST_FIXED_MEMORY = 1024;
const MANIFEST_CHUNK_MEMORY = 128;
const MANIFEST_SHARE_ID_MEMORY = 112;
const FOLDER_FIXED_MEMORY = 1024;
const FOLDER_ENTRY_MEMORY = 384;

/** SPEC.md §9.16.4: what a decoded manifest of `encodedBytes` counts for in the manifest cache. */
export function manifestMemoryBytes(m: Manifest, encodedBytes: number): number {
  let ids = 0;
  for (const c of m.layout.chunks) ids += c.shareIds.length;
  return encodedBytes + MANIFEST_FIXED_MEMORY + 2 * (m.name.length + m.contentType.length + m.contentClass.length)
    + MANIFEST_CHUNK_MEMORY * m.layout.chunks.length + MANIFEST_SHARE_ID_MEMORY * ids;
}

/** SPEC.md §9.16.4: what a decoded listing counts for in the folder listing cache. */
export function folderMemoryBytes(f: Folder): number {
  let n = FOLDER_FIXED_MEMORY;
  for (const e of f.entries) n += FOLDER_ENTRY_MEMORY + 2 * e.path.length;
  return n;
}

/**
 * A folder listing being read or read, and what it counts for: its encoded length (the Layout
 * size) while it is read, then folderMemoryBytes of what it decoded to.
 */
interface FolderEntry {
  listing: Promise<Folder>;
  bytes: number;
}

/**
 * SPEC.md §9.16.6: a storage read shared by the requests waiting for it (concurrent requests for
 * one manifest or chunk share one fetch). It is cancelled (its AbortController aborts: no further
 * share is asked for, the requests under way are abandoned) once every request waiting for it has
 * gone; a request without a signal keeps it to the end.
 */
class SharedRead<T> {
  private readonly ac = new AbortController();
  private waiting = 0;
  private kept = false;
  readonly promise: Promise<T>;

  /**
   * `forget` runs once the read settles or is cancelled (to drop it from its map: a later request
   * starts anew).
   */
  constructor(start: (signal: AbortSignal) => Promise<T>, private readonly forget: () => void) {
    // Each share and HAS request of the read adds (and on settling removes) a listener: many at once
    // are expected, not a leak (as fetchChunks' own signal, storage-client-get.ts).
    setMaxListeners(0, this.ac.signal);
    this.promise = start(this.ac.signal);
    this.promise.finally(forget).catch(() => {}); // each waiter gets it through join()
  }

  /** The read's result for one more request, or STORAGE_ABORTED at once when `signal` aborts. */
  join(signal?: AbortSignal): Promise<T> {
    if (!signal) { this.kept = true; return this.promise; }
    if (signal.aborted) return Promise.reject(storageAborted());
    this.waiting++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        reject(storageAborted());
        if (--this.waiting === 0 && !this.kept) { this.ac.abort(); this.forget(); }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.promise.then(resolve, reject).finally(() => {
        if (signal.aborted) return;
        signal.removeEventListener('abort', onAbort);
        this.waiting--;
      });
    });
  }
}


function secretKey(cap: Capability): string {
  return sha256(Buffer.from('bitcloud-gateway-cache-v1'), cap.fileKey, cap.manifestId).toString('base64');
}

export class BlobReader {
  private readonly chunks: LRUCache<string, Buffer> | null;
  private readonly files: LRUCache<string, OpenFile>;
  /** Manifests being fetched, so that concurrent requests for one share one fetch. */
  private readonly opening = new Map<string, SharedRead<OpenFile>>();
  private readonly folders: LRUCache<string, FolderEntry>;
  private readonly pending = new Map<string, SharedRead<Buffer>>();
  private readonly lookups: prom.Counter<'result'> | null;
  readonly stats: GetStats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };

  constructor(private readonly o: BlobReaderOptions) {
    const max = o.cacheBytes ?? 256 * 1024 * 1024;
    this.chunks = max > 0 ? new LRUCache<string, Buffer>({ maxSize: max, sizeCalculation: (b) => Math.max(1, b.length) }) : null;
    const manifestMax = o.manifestCacheBytes ?? MANIFEST_CACHE_BYTES;
    this.files = new LRUCache<string, OpenFile>({
      max: 1024, maxSize: manifestMax, maxEntrySize: Math.min(manifestMax, o.manifestEntryBytes ?? MANIFEST_CACHE_ENTRY_BYTES), sizeCalculation: (f) => f.bytes,
    });
    const folderMax = o.folderCacheBytes ?? FOLDER_CACHE_BYTES;
    this.folders = new LRUCache<string, FolderEntry>({
      max: 64, maxSize: folderMax, maxEntrySize: Math.min(folderMax, o.folderEntryBytes ?? FOLDER_CACHE_ENTRY_BYTES), sizeCalculation: (f) => f.bytes,
    });
    const reg = o.registry;
    this.lookups = reg
      ? (reg.getSingleMetric('bitcloud_gateway_cache_lookups_total') as prom.Counter<'result'> | undefined)
        ?? new prom.Counter({ name: 'bitcloud_gateway_cache_lookups_total', help: 'Decrypted-chunk cache lookups of the .bitcloud gateway', labelNames: ['result'], registers: [reg] })
      : null;
  }

  /** Bytes of decrypted chunks cached now. */
  get cachedBytes(): number { return this.chunks?.calculatedSize ?? 0; }

  /** Bytes of manifests cached now (as counted for MANIFEST_CACHE_BYTES). */
  get cachedManifestBytes(): number { return this.files.calculatedSize; }

  /** Bytes of folder listings cached now (as counted for FOLDER_CACHE_BYTES). */
  get cachedFolderBytes(): number { return this.folders.calculatedSize; }

  /**
   * The manifest a capability names (cached; a failure is not cached). Once `signal` aborts it
   * rejects with STORAGE_ABORTED at once, and the fetch stops if no other request waits for it
   * (SPEC.md §9.16.6).
   */
  async manifest(cap: Capability, signal?: AbortSignal): Promise<Manifest> {
    return (await this.open(cap, signal)).manifest;
  }

  private open(cap: Capability, signal?: AbortSignal): Promise<OpenFile> {
    const key = secretKey(cap);
    const hit = this.files.get(key);
    if (hit) return Promise.resolve(hit);
    let r = this.opening.get(key);
    if (!r && signal?.aborted) return Promise.reject(storageAborted()); // starts no fetch nobody would wait for
    if (!r) {
      const read: SharedRead<OpenFile> = new SharedRead(async (sig) => {
        const client = this.o.client();
        const root = await fetchRoot(client, cap, this.stats, sig);
        const manifest = await fetchManifest(client, cap, this.stats, root, sig);
        const f: OpenFile = { manifest, offsets: chunkOffsets(manifest.layout), bytes: manifestMemoryBytes(manifest, root.size) };
        this.files.set(key, f); // not kept when larger than the entry cap (lru-cache maxEntrySize)
        return f;
      }, () => { if (this.opening.get(key) === read) this.opening.delete(key); });
      this.opening.set(key, (r = read));
    }
    return r.join(signal);
  }

  /**
   * A folder's listing (SPEC.md §9.15), cached like manifests: bounded in bytes (its encoded
   * length, known from the manifest, while it is read; then the memory of what it decoded to);
   * one over the entry cap is used, not kept. Once `signal` aborts it rejects with STORAGE_ABORTED
   * at once; the listing is still read to its end and cached, for the site's next request
   * (SPEC.md §9.16.6).
   */
  folder(cap: Capability, m: Manifest, signal?: AbortSignal): Promise<Folder> {
    return untilStorageAborted(this.readFolder(cap, m), signal);
  }

  private readFolder(cap: Capability, m: Manifest): Promise<Folder> {
    const key = secretKey(cap);
    const hit = this.folders.get(key);
    if (hit) return hit.listing;
    // Read to the end whoever asked (the listing is cached for the next request of the site).
    const entry: FolderEntry = { listing: readFolderListing(this.o.client(), cap, m, this.stats, (i) => this.chunk(cap, m, i)), bytes: Math.max(1, m.layout.size) };
    entry.listing.then(
      // Counted anew, as a new entry (lru-cache counts a value once); dropped if now over the entry cap.
      (f) => { if (this.folders.peek(key) === entry) this.folders.set(key, { listing: entry.listing, bytes: folderMemoryBytes(f) }); },
      () => { if (this.folders.peek(key) === entry) this.folders.delete(key); },
    );
    this.folders.set(key, entry); // not kept when larger than the entry cap (lru-cache maxEntrySize)
    return entry.listing;
  }

  /**
   * Decrypted data chunk `i` of the file. Once `signal` aborts it rejects with STORAGE_ABORTED at
   * once, and the fetch stops if no other request waits for it (SPEC.md §9.16.6).
   */
  chunk(cap: Capability, m: Manifest, i: number, signal?: AbortSignal): Promise<Buffer> {
    const key = `${secretKey(cap)}:${i}`;
    const hit = this.chunks?.get(key);
    if (hit) { this.lookups?.inc({ result: 'hit' }); return Promise.resolve(hit); }
    this.lookups?.inc({ result: 'miss' });
    let r = this.pending.get(key);
    if (!r && signal?.aborted) return Promise.reject(storageAborted()); // starts no fetch nobody would wait for
    if (!r) {
      const read: SharedRead<Buffer> = new SharedRead(
        (sig) => fetchChunk(this.o.client(), cap.fileKey, m.layout, i, ChunkKind.DATA, this.stats, undefined, undefined, false, sig)
          .then((b) => { this.chunks?.set(key, b); return b; }),
        () => { if (this.pending.get(key) === read) this.pending.delete(key); },
      );
      this.pending.set(key, (r = read));
    }
    return r.join(signal);
  }

  /**
   * The plaintext bytes [start, end] (inclusive) of the file, chunk by chunk, `readAhead` chunks
   * fetched ahead. Stopping the iteration early (client gone), or its failing on a chunk, stops
   * further fetches and gives up the chunks read ahead, as does `signal` once aborted (SPEC.md
   * §9.16.6): no chunk fetch starts after it, the chunk awaited and those read ahead are given up at
   * once (their fetches stop unless another request waits for them), and the iteration ends.
   */
  async *range(cap: Capability, m: Manifest, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    if (end < start) return;
    // From `m` itself when its manifest is not cached (used for its request but not kept, or
    // pushed out since): opening it again would fetch the whole manifest a second time.
    const offsets = this.files.get(secretKey(cap))?.offsets ?? chunkOffsets(m.layout);
    const chunks = m.layout.chunks;
    // The first chunk holding `start`: binary search over the offsets.
    let lo = 0, hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offsets[mid] <= start) lo = mid; else hi = mid - 1;
    }
    const ahead = Math.max(0, this.o.readAhead ?? 2);
    const queue: Promise<Buffer>[] = [];
    let next = lo;
    // SPEC.md §9.16.6: the chunks read ahead are joined with a signal of this iteration's own, which
    // aborts with `signal` and when the iteration ends (a chunk failed, the caller stopped): a chunk
    // read ahead for a request answered with an error page ran on to its end or its timeout.
    const own = new AbortController();
    const onAbort = () => own.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) own.abort();
    const sig = own.signal;
    const fill = () => {
      while (!sig.aborted && queue.length <= ahead && next < chunks.length && offsets[next] <= end) {
        const p = this.chunk(cap, m, next++, sig);
        p.catch(() => {}); // awaited in order below
        queue.push(p);
      }
    };
    try {
      for (let i = lo; i < chunks.length && offsets[i] <= end; i++) {
        fill();
        if (sig.aborted) return;
        let plain: Buffer;
        try {
          plain = await queue.shift()!;
        } catch (e) {
          if (sig.aborted) return;
          throw e;
        }
        if (sig.aborted) return;
        const from = Math.max(0, start - offsets[i]);
        const to = Math.min(plainLen(chunks[i]), end - offsets[i] + 1);
        yield plain.subarray(from, to);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      own.abort(); // gives up what was read ahead and not sent (nothing, after the last chunk)
    }
  }
}
