// SPEC.md §9.9 (get): root share → manifest → data chunks. For each chunk, k shares are fetched at
// once from the nodes expected to hold them, the fastest first (data shares win ties: no
// Reed–Solomon work); a share that is missing, unreachable or fails its hash is replaced by another
// share of the chunk. Several chunks are fetched at once, across nodes; each verified chunk is
// written at its offset (storage-client-resume.ts), and the output appears only when complete.
// With the output `-` (SPEC.md §9.9.1) each verified chunk is written to stdout instead, in order.
// Where a share is looked for (SPEC.md §9.9): its expected holder — by placement over the nodes
// that admit the file's content class when the caller can tell (§10.8), since put placed it
// there — then nodes that already held this file's shares off their expected place, then its
// ranking over every storage node: the first n + 4 one by one, the rest with a few HAS requests
// at a time, so a share is found wherever placement put it.
import { setMaxListeners } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, isBitcloudError, type BitcloudError } from '../errors';
import { MODERATION_REFUSALS } from '../moderation/enforce';
import type { Capability } from '../storage/capability';
import { ChunkKind, decodeChunk } from '../storage/encode';
import { shareSizeFor } from '../storage/erasure';
import { chunkOffsets, plainLen, type Layout, type Manifest, type Root } from '../storage/manifest';
import { openManifest, openRootRecord } from '../storage/seal';
import { placeChunk, rankNodes } from '../storage/placement';
import { checkShare } from '../storage/share';
import type { StorageClient } from './storage-client';
import { ChunkCoderPool, CODER_POOL_MIN_BYTES } from '../storage/coder-pool';
import { FOLDER_CONTENT_TYPE } from '../storage/folder';
import { DownloadOutput, NO_ROOM, nothingKept } from './storage-client-resume';
import { throwIfStorageAborted } from '../storage/channel';

export interface GetOptions {
  /**
   * Output file, replaced when it exists; default: the manifest's name (or bitcloud-<id>) in `dir`,
   * never replacing a file there (IO_OUTPUT_EXISTS, SPEC.md §9.9.1). `-` (STDOUT_OUTPUT): the
   * file's bytes are written to `stdout`, in order, with no part file and no resume.
   */
  output?: string;
  /** Where the output `-` is written (default process.stdout). */
  stdout?: NodeJS.WritableStream;
  dir?: string;
  /** Chunks fetched at once (default 16). */
  window?: number;
  /** Nodes asked one by one for a share (expected holder first; default n + 4); the other storage nodes are then searched with HAS. */
  searchDepth?: number;
  /**
   * The storage nodes an upload of this content class could use (SPEC.md §10.8), so that data
   * shares are asked first of the node placement gave them; null or a failure: every node.
   */
  placementFor?: (contentClass: string) => Promise<readonly string[] | null>;
  onManifest?: (m: Manifest, output: string) => void;
  onProgress?: (done: number, total: number) => void;
  /**
   * Called once, with the failure, when fetching or writing the data chunks failed: before the
   * chunks in flight are abandoned (`-o -`) or waited for (a part file, SPEC.md §9.9.1). It
   * changes nothing in the get (tests wait on it instead of on time).
   */
  onFailed?: (e: unknown) => void;
  /** The manifest, when the caller already fetched it (with `stats`, the counters it fetched it with). */
  manifest?: Manifest;
  stats?: GetStats;
  /** Decode data chunks on worker threads (coder-pool.ts; default true). */
  workers?: boolean;
  /**
   * SPEC.md §9.16.6: once aborted, no further share is asked for, the requests under way are
   * abandoned (StorageClient.request) and the get rejects with STORAGE_ABORTED.
   */
  signal?: AbortSignal;
}

export interface GetStats {
  /** Shares whose bytes failed their hash (at the client), or that a node found corrupt. */
  corruptShares: number;
  /** Shares that were not where expected and were fetched elsewhere or replaced. */
  missingShares: number;
  sharesFetched: number;
}

export interface GetResult extends GetStats {
  path: string;
  size: number;
  name: string;
  contentType: string;
  chunks: number;
  /** Chunks already on disk from an interrupted run. */
  resumedChunks: number;
  unreachableNodes: string[];
}

/** The output that means stdout (`get -o -`, SPEC.md §9.9.1); a file named `-` is `./-`. */
export const STDOUT_OUTPUT = '-';

/** Nodes asked at once (HAS) when a share is searched for beyond the top of its ranking. */
export const SEARCH_PARALLEL = 4;

/**
 * Per run: nodes that held shares of this file away from their expected place, with how many.
 * Uploads of a moderated class go only to the nodes that admit it (SPEC.md §10.8), so once one
 * such share is found, its holder is the best guess for the next.
 */
const offPlace = new WeakMap<StorageClient, Map<string, number>>();

function hintsOf(client: StorageClient): Map<string, number> {
  let m = offPlace.get(client);
  if (!m) offPlace.set(client, (m = new Map()));
  return m;
}

type Try = 'good' | 'bad' | 'none';

/** Ask one node for the share; 'good' fills `out[0]`. An abort (STORAGE_ABORTED) is thrown. */
async function tryNode(client: StorageClient, fp: string, id: Buffer, size: number, stats: GetStats, out: Buffer[], signal?: AbortSignal): Promise<Try> {
  throwIfStorageAborted(signal);
  if (client.isDead(fp)) return 'none';
  try {
    const data = await client.getShare(fp, id, signal, size);
    stats.sharesFetched++;
    if (data.length === size && checkShare(id, data)) { out[0] = data; return 'good'; }
    stats.corruptShares++; // the node served bytes that are not the share: try the next holder
    return 'bad';
  } catch (e) {
    if (isBitcloudError(e, 'SHARE_CORRUPT')) { stats.corruptShares++; return 'bad'; } // the node caught it itself
    if (!isBitcloudError(e) || e.code === 'STORAGE_ABORTED') throw e;
    return 'none';
  }
}

/**
 * One share. 'near': from its expected holder, the run's off-place holders, then the top of its
 * ranking over every storage node, `depth` nodes in all, one by one. 'far': every other storage
 * node, searched with HAS, SEARCH_PARALLEL nodes at a time (only when the near search of the
 * chunk's shares left fewer than k: a node that is down must not cost a sweep of the network).
 * Null when no node asked has good bytes.
 */
async function fetchShare(client: StorageClient, id: Buffer, size: number, expected: string | undefined, depth: number, stats: GetStats, reach: 'near' | 'far', signal?: AbortSignal): Promise<Buffer | null> {
  const hints = hintsOf(client);
  const ranking = rankNodes(id, client.fingerprints);
  const order: string[] = [];
  const add = (fp: string) => { if (!order.includes(fp)) order.push(fp); };
  if (expected) add(expected);
  for (const [fp] of [...hints].sort((a, b) => b[1] - a[1])) add(fp);
  for (const fp of ranking) { if (order.length >= depth) break; add(fp); }
  const found = (fp: string, data: Buffer): Buffer => {
    if (fp !== order[0]) {
      stats.missingShares++;
      hints.set(fp, (hints.get(fp) ?? 0) + 1);
    }
    return data;
  };
  const out: Buffer[] = [];
  if (reach === 'near') {
    for (const fp of order) {
      if ((await tryNode(client, fp, id, size, stats, out, signal)) === 'good') return found(fp, out[0]);
    }
    stats.missingShares++;
    return null;
  }
  // Not where it was expected: the run's off-place holders (found since the near pass, perhaps),
  // then HAS to every other storage node (SPEC.md §9.9, §10.8).
  const hinted = [...hints.keys()].filter((fp) => fp !== expected);
  for (const fp of hinted) {
    if ((await tryNode(client, fp, id, size, stats, out, signal)) === 'good') return found(fp, out[0]);
  }
  const rest = ranking.filter((fp) => fp !== expected && !hinted.includes(fp) && !client.isDead(fp));
  for (let i = 0; i < rest.length; i += SEARCH_PARALLEL) {
    throwIfStorageAborted(signal);
    const batch = rest.slice(i, i + SEARCH_PARALLEL);
    const present = await Promise.all(batch.map(async (fp) => {
      try {
        const r = await client.request(fp, { type: 'has', ids: [id] }, signal);
        return r.present[0] === true;
      } catch (e) {
        if (!isBitcloudError(e) || e.code === 'STORAGE_ABORTED') throw e;
        return false;
      }
    }));
    for (let j = 0; j < batch.length; j++) {
      throwIfStorageAborted(signal); // stopped while the HAS answers came, or since: ask no holder
      if (present[j] && (await tryNode(client, batch[j], id, size, stats, out, signal)) === 'good') return found(batch[j], out[0]);
    }
  }
  return null;
}

/**
 * Any k good shares of chunk `index` of `layout`, decoded and authenticated. Once `signal` aborts
 * (SPEC.md §9.16.6) no further share is asked for, those asked are abandoned, and it rejects with
 * STORAGE_ABORTED at once.
 */
export async function fetchChunk(client: StorageClient, fileKey: Buffer, layout: Layout, index: number, kind: ChunkKind, stats: GetStats, depth?: number, placement?: readonly string[] | null, workers = false, signal?: AbortSignal): Promise<Buffer> {
  throwIfStorageAborted(signal);
  const ref = layout.chunks[index];
  const { k, n } = layout.coding;
  const size = shareSizeFor(ref.encLen, k);
  let expected: string[] | null = null;
  try { expected = placeChunk(ref.shareIds, placement ?? client.fingerprints); } catch { /* fewer nodes than n now: search rankings */ }
  // Fastest holders first; a data share counts 25% faster (no arithmetic to rebuild from it).
  const prior = client.medianSpeed();
  const weight = (j: number) => {
    const s = expected ? client.score(expected[j], prior) : prior;
    return s < 0 ? -1 : s * (j < k ? 1.25 : 1);
  };
  const order = [...Array(n).keys()].sort((a, b) => weight(b) - weight(a) || a - b);
  const shares: (Buffer | null)[] = new Array(n).fill(null);
  const running = new Set<Promise<void>>();
  let good = 0;
  let next = 0;
  let failure: unknown = null;
  let reach: 'near' | 'far' = 'near';
  const launch = (j: number) => {
    const p: Promise<void> = fetchShare(client, ref.shareIds[j], size, expected?.[j], depth ?? n + 4, stats, reach, signal)
      .then((b) => { if (b) { shares[j] = b; good++; } }, (e) => { failure ??= e; })
      .finally(() => running.delete(p));
    running.add(p);
  };
  for (const pass of ['near', 'far'] as const) {
    // Near: every share where placement says it is. Far, only if that left fewer than k: the
    // missing shares on every other storage node (an upload of a class few nodes admit, §10.8).
    reach = pass;
    next = 0;
    const todo = order.filter((j) => !shares[j]);
    while (good < k && !failure && !signal?.aborted) {
      while (running.size < k - good && next < todo.length) launch(todo[next++]);
      if (running.size === 0) break;
      await Promise.race(running);
    }
    if (good >= k || failure || signal?.aborted) break;
  }
  if (failure) throw failure;
  throwIfStorageAborted(signal);
  if (good < k) {
    throw err('CHUNK_TOO_FEW_SHARES', `chunk ${index}: only ${good} of the ${k} shares needed could be fetched`, { index, good, k, n, kind });
  }
  // fetchShare checked every share's length and hash already. A large chunk is decoded on a
  // worker (coder-pool.ts), so this thread keeps reading the streams meanwhile.
  // The shares are this call's own (fresh answers from the nodes): their buffers are moved to the
  // worker, not copied.
  if (workers && size * k >= CODER_POOL_MIN_BYTES) return ChunkCoderPool.shared().decode(fileKey, index, shares, layout.coding, ref, kind, { move: true });
  return decodeChunk(fileKey, index, shares, layout.coding, ref, kind, { screened: true });
}

/** SPEC.md §9.9 step 2: the root share from rank(manifest id), hash-checked, opened with the key. `signal` as in fetchChunk. */
export async function fetchRoot(client: StorageClient, cap: Capability, stats: GetStats, signal?: AbortSignal): Promise<Layout> {
  return (await fetchRootRecord(client, cap, stats, signal)).manifest;
}

/** fetchRoot, returning the whole root record (with the verify record's id, SPEC.md §9.18). */
export async function fetchRootRecord(client: StorageClient, cap: Capability, stats: GetStats, signal?: AbortSignal): Promise<Root> {
  let lastCorrupt: BitcloudError | null = null;
  let refusal: BitcloudError | null = null; // a moderation refusal (SPEC.md §10.6), reported if nothing else works
  for (const fp of rankNodes(cap.manifestId, client.fingerprints)) {
    throwIfStorageAborted(signal);
    if (client.isDead(fp)) continue;
    let data: Buffer;
    try {
      data = await client.getShare(fp, cap.manifestId, signal);
    } catch (e) {
      if (!isBitcloudError(e) || e.code === 'STORAGE_ABORTED') throw e;
      if (e.code === 'SHARE_CORRUPT') stats.corruptShares++;
      if (MODERATION_REFUSALS.has(e.code)) refusal = e;
      continue;
    }
    try {
      return openRootRecord(cap.fileKey, cap.manifestId, data);
    } catch (e) {
      if (isBitcloudError(e, 'SHARE_HASH_MISMATCH')) { stats.corruptShares++; lastCorrupt = e; continue; }
      throw e; // CHUNK_AUTH_FAILED (wrong key) or MANIFEST_MALFORMED: no other copy can differ
    }
  }
  const reached = client.fingerprints.filter((fp) => !client.isDead(fp)).length;
  if (refusal) throw err(refusal.code, `no storage node would serve manifest ${cap.manifestId.toString('hex').slice(0, 16)}…; refused by moderation: ${refusal.message.replace(/^[A-Z0-9_]+: (storage node: )?/, '')}`, { reached }, refusal);
  throw err('MANIFEST_NOT_FOUND', `no reachable storage node holds manifest ${cap.manifestId.toString('hex').slice(0, 16)}… (${reached} of ${client.fingerprints.length} nodes reached)`,
    { reached, nodes: client.fingerprints.length }, lastCorrupt ?? undefined);
}

/** Fetch and decode the manifest a capability names (from `root` when the caller already has it). `signal` as in fetchChunk. */
export async function fetchManifest(client: StorageClient, cap: Capability, stats: GetStats, root?: Layout, signal?: AbortSignal): Promise<Manifest> {
  const layout = root ?? await fetchRoot(client, cap, stats, signal);
  const parts: Buffer[] = [];
  for (let i = 0; i < layout.chunks.length; i++) parts.push(await fetchChunk(client, cap.fileKey, layout, i, ChunkKind.MANIFEST, stats, undefined, undefined, false, signal));
  return openManifest(layout, parts);
}

export function defaultOutputName(m: Manifest, manifestId: Buffer): string {
  return m.name && !m.name.startsWith('.') ? m.name : `bitcloud-${manifestId.toString('hex').slice(0, 16)}`;
}

export async function getFile(client: StorageClient, cap: Capability, o: GetOptions = {}): Promise<GetResult> {
  const stats: GetStats = o.stats ?? { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
  const manifest = o.manifest ?? await fetchManifest(client, cap, stats, undefined, o.signal);
  if (o.output === STDOUT_OUTPUT) return streamFile(client, cap, manifest, stats, o);
  const layout = manifest.layout;
  const out = path.resolve(o.dir ?? '.', o.output ?? defaultOutputName(manifest, cap.manifestId));
  const st = await fsp.stat(out).catch(() => null);
  if (st?.isDirectory()) throw err('IO_IS_A_DIRECTORY', `${out} is a directory`);
  // SPEC.md §9.9.1: the stored name is the uploader's choice; it never replaces a file the reader
  // did not name (a link too, even a dangling one). Only an output given by the caller (-o) does.
  if (o.output === undefined && (st || await fsp.lstat(out).then(() => true, () => false))) {
    throw err('IO_OUTPUT_EXISTS', `${out} exists already; give -o ${out} to replace it, or -o another path`, { path: out });
  }
  o.onManifest?.(manifest, out);
  // Data shares were placed over the nodes that admit the class (SPEC.md §10.8): ask those first.
  const placement = o.placementFor ? await o.placementFor(manifest.contentClass).catch(() => null) : null;

  const output = await DownloadOutput.open(out, cap.manifestId.toString('hex'), layout.size, layout.chunks.length);
  const offsets = chunkOffsets(layout);
  // From here on every way out suspends, discards or finishes the output: each releases its lock
  // (SPEC.md §9.9.1), a progress callback that throws included.
  try {
    await fetchChunks(client, cap, layout, stats, o, placement, {
      inOrder: false,
      onFailure: 'finish',
      isDone: (i) => output.isDone(i),
      write: (i, plain) => output.writeChunk(i, offsets[i], plain),
    });
    await output.finish({ exclusive: o.output === undefined });
  } catch (e) {
    // An authentication failure can never heal by retrying: drop the bytes. Anything else
    // (nodes down, network) keeps the part file for a resumed run, while a record names it; when
    // none does, suspend removed it and a no-room message must not say it is kept (SPEC.md §9.9.1).
    if (isBitcloudError(e, 'CHUNK_AUTH_FAILED') || isBitcloudError(e, 'MANIFEST_MALFORMED')) await output.discard();
    else if (!await output.suspend()) throw nothingKept(e);
    throw e;
  }
  return {
    path: out, size: layout.size, name: manifest.name, contentType: manifest.contentType, chunks: layout.chunks.length,
    resumedChunks: output.resumed, unreachableNodes: client.deadNodes().map((d) => d.fingerprint), ...stats,
  };
}

/**
 * SPEC.md §9.9.1 (`-o -`): the file's bytes to `o.stdout`, in order, each chunk once verified and
 * every earlier chunk written. At most `window` chunks are fetched or wait in memory at once (a
 * chunk is started only within `window` of the first one not yet written). No part file, record
 * or lock. On a failure nothing more is written and the get stops at once: no further share is
 * asked for, the chunks in flight are not waited for (closing the client ends their requests), and
 * the failure is thrown: what was written is a prefix of the file, and only the exit status tells
 * the reader it is not the whole. Stdout's reader going away is IO_OUTPUT_CLOSED (exit status 141,
 * nothing printed, SPEC.md §9.9.1, §9.10).
 */
async function streamFile(client: StorageClient, cap: Capability, manifest: Manifest, stats: GetStats, o: GetOptions): Promise<GetResult> {
  if (manifest.contentType === FOLDER_CONTENT_TYPE) {
    throw err('IO_IS_A_DIRECTORY', 'the capability names a folder, which cannot be written to stdout (-o -); give -o FOLDER to write its files there');
  }
  const layout = manifest.layout;
  const sink = o.stdout ?? process.stdout;
  o.onManifest?.(manifest, STDOUT_OUTPUT);
  const placement = o.placementFor ? await o.placementFor(manifest.contentClass).catch(() => null) : null;
  await fetchChunks(client, cap, layout, stats, o, placement, {
    inOrder: true,
    onFailure: 'stop',
    isDone: () => false,
    write: (_i, plain) => writeTo(sink, plain).catch((e: unknown) => { throw stdoutFailed(e); }),
    // A stream error comes as an 'error' event besides the write's callback: without a listener it
    // would end the process. The listener stays after a failure (the stream is broken for good).
    watch: (fail) => {
      const onError = (e: unknown) => fail(stdoutFailed(e));
      sink.on('error', onError);
      return () => sink.removeListener('error', onError);
    },
  });
  return {
    path: STDOUT_OUTPUT, size: layout.size, name: manifest.name, contentType: manifest.contentType, chunks: layout.chunks.length,
    resumedChunks: 0, unreachableNodes: client.deadNodes().map((d) => d.fingerprint), ...stats,
  };
}

/**
 * Where the verified chunks of a get go: the part file at each chunk's offset (getFile) or stdout
 * in order (streamFile). The two differ where SPEC.md §9.9.1 makes them differ, and only there:
 */
interface ChunkSink {
  /**
   * false (part file): a chunk is written as soon as it is verified, whatever its index, and
   * `window` bounds the chunks being fetched. true (stdout): chunk i is written only once every
   * earlier chunk was, and is started only when i < the first chunk not yet written + `window`,
   * so that at most `window` chunks are fetched or wait in memory at once.
   */
  inOrder: boolean;
  /**
   * On a failure, 'finish' (part file): the chunks in flight are still fetched and written, so a
   * resumed run has them. 'stop' (stdout): nothing more is written, no further share is asked
   * for and the chunks in flight are not waited for.
   */
  onFailure: 'finish' | 'stop';
  /** A chunk already there from an interrupted run (resume; the part file only): not fetched. */
  isDone(i: number): boolean;
  write(i: number, plain: Buffer): Promise<void>;
  /** Failures the sink learns of between writes (a stream's 'error' event); returns the unwatch, called on success only. */
  watch?(fail: (e: unknown) => void): () => void;
}

/**
 * SPEC.md §9.9: every data chunk of `layout` not yet in `sink`, fetched (a window of them at once),
 * verified and decoded by fetchChunk, then written to `sink`; progress counts the chunks already
 * there. Throws the first failure, after handling it as `sink.onFailure` says.
 */
async function fetchChunks(client: StorageClient, cap: Capability, layout: Layout, stats: GetStats, o: GetOptions,
  placement: readonly string[] | null, sink: ChunkSink): Promise<void> {
  const window = Math.max(1, o.window ?? 16);
  const running = new Set<Promise<void>>();
  const ready = new Map<number, Buffer>(); // inOrder: verified chunks waiting for an earlier one
  const stop = new AbortController();
  let failure: unknown = null;
  const fail = (e: unknown) => {
    const first = failure === null;
    failure ??= e;
    if (sink.onFailure === 'stop') stop.abort(failure);
    if (first) o.onFailed?.(failure);
  };
  const unwatch = sink.watch?.(fail);
  // The caller's signal (a gateway request whose client left, SPEC.md §9.16.6) stops it too.
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  // Every share request under way listens to it (a window of chunks, k shares each, SPEC.md
  // §9.9): that many listeners are expected, and must not print Node's leak warning on stderr.
  setMaxListeners(0, signal);
  const todo: number[] = [];
  let done = 0;
  for (let i = 0; i < layout.chunks.length; i++) {
    if (sink.isDone(i)) done += plainLen(layout.chunks[i]);
    else todo.push(i);
  }
  o.onProgress?.(done, layout.size);
  const wrote = (idx: number) => { done += plainLen(layout.chunks[idx]); o.onProgress?.(done, layout.size); };
  const nodes = placement && placement.length >= layout.coding.n ? placement : null; // the same for every chunk
  const workers = o.workers !== false;
  const start = (idx: number) => {
    const chunk = fetchChunk(client, cap.fileKey, layout, idx, ChunkKind.DATA, stats, o.searchDepth, nodes, workers, signal);
    const p: Promise<void> = (sink.inOrder
      ? chunk.then((plain) => { ready.set(idx, plain); }, (e) => fail(e))
      : chunk.then((plain) => sink.write(idx, plain)).then(() => wrote(idx), (e) => fail(e)))
      .finally(() => running.delete(p));
    running.add(p);
  };
  let started = 0; // positions in todo
  let next = 0; // inOrder: the first position in todo not yet written
  try {
    while (!failure && (sink.inOrder ? next < todo.length : started < todo.length)) {
      while (!failure && started < todo.length && (sink.inOrder ? started < next + window : running.size < window)) start(todo[started++]);
      const plain = sink.inOrder ? ready.get(todo[next]) : undefined;
      if (plain && !failure) {
        ready.delete(todo[next]);
        try {
          await sink.write(todo[next], plain);
        } catch (e) {
          fail(e);
          break;
        }
        wrote(todo[next++]);
        continue;
      }
      if (running.size > 0 && (sink.inOrder || started < todo.length)) await Promise.race(running);
    }
  } catch (e) {
    // A progress callback that threw (from the loop, or from a chunk's promise): a failure like
    // any other, so that 'stop' stops the chunks in flight too, and 'finish' still writes them
    // before the caller suspends the part file.
    fail(e);
    if (sink.onFailure === 'finish') await Promise.allSettled(running);
    throw e;
  }
  ready.clear();
  // 'finish': a chunk still in flight may fail too, and is waited for before `failure` is read;
  // every one of them, even when another's progress callback threw.
  // In order, the loop ends with every chunk written (nothing in flight) unless it failed.
  if (sink.onFailure === 'finish') {
    for (const r of await Promise.allSettled(running)) if (r.status === 'rejected') fail(r.reason);
  }
  if (failure) throw failure;
  await Promise.all(running);
  unwatch?.();
}

/** One write, resolved once the stream took the bytes (so a slow reader holds the fetches back). */
function writeTo(sink: NodeJS.WritableStream, b: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    sink.write(b, (e?: Error | null) => (e ? reject(e) : resolve()));
  });
}

/**
 * SPEC.md §9.9.1: stdout's reader went away (EPIPE, or ERR_STREAM_DESTROYED for a write after
 * it): IO_OUTPUT_CLOSED, which ends the command quietly with 141 (§9.10); stdout refused the
 * bytes otherwise (EIO; ENOSPC, EDQUOT where it is a file on a disk with no room left, …):
 * IO_NOT_WRITABLE. With no part file to resume, the file was not written whole.
 */
function stdoutFailed(e: unknown): unknown {
  if (isBitcloudError(e)) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
  if (code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED') {
    return err('IO_OUTPUT_CLOSED', `stdout's reader went away (${code}): the file was not written whole`, { path: STDOUT_OUTPUT, errno: code }, e);
  }
  const why = NO_ROOM.get(code) ?? 'stdout refused the bytes';
  return err('IO_NOT_WRITABLE', `cannot write the file to stdout (${code}): ${why}; the file was not written whole`, { path: STDOUT_OUTPUT, errno: code }, e);
}
