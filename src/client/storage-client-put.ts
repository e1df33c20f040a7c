// SPEC.md §9.9 (put): stream a file through the chunk encoder and store every share on the node
// rendezvous placement names (§9.7), a few chunks in flight at once; then the manifest the same way
// and the root share on R = n nodes. Never more than `window` chunks (plaintext + shares) in memory.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, errorCode, isBitcloudError, type BitcloudError } from '../errors';
import { DEFAULT_CODING, type Coding } from '../storage/coding';
import { ChunkKind, type Share } from '../storage/encode';
import { formatVerifyCapability, sealWithVerifyRecord } from '../storage/verify-cap';
import type { VerifyChunk } from '../wire/verify-record';
import { DEFAULT_CHUNK_SIZE, FileEncoder, newFileKey, type PlainChunk } from '../storage/file-encoder';
import { ChunkCoderPool, CODER_POOL_MIN_BYTES, encodeInline, type CodedChunk } from '../storage/coder-pool';
import { placeChunk, rankNodes } from '../storage/placement';
import { checkShare } from '../storage/share';
import { formatCapability } from '../storage/capability';
import { isManifestName, manifestBytesFor, MAX_MANIFEST_BYTES } from '../storage/manifest';
import type { StorageClient } from './storage-client';
import { isPublicClass, PUBLIC_CONTENT_KEY } from '../moderation/policy';

export interface PutOptions {
  coding?: Coding;
  chunkSize?: number;
  /** Suggested file name stored in the manifest (default: the file's base name). */
  name?: string;
  contentType?: string;
  /**
   * Chunks being stored at once. Default: as many as fit in PUT_WINDOW_BYTES of shares, between 4
   * and 16 (16 for the default 1 MiB 4-of-6 chunks), so every node has several shares in flight
   * and an acknowledgement's round trip (the node's fsync) never idles its stream.
   */
  window?: number;
  /** Plaintext bytes stored so far, of `total`. */
  onProgress?: (done: number, total: number) => void;
  /** Tests only: a fixed file key. */
  fileKey?: Buffer;
  /** Moderation class written in the manifest (SPEC.md §10.1); public classes use the public key. */
  contentClass?: string;
  /**
   * Encode data chunks on worker threads (coder-pool.ts) so the event loop keeps the streams to
   * the nodes busy meanwhile (default true; chunks below CODER_POOL_MIN_BYTES are encoded inline).
   */
  workers?: boolean;
}


export interface PutResult {
  capability: string;
  /** SPEC.md §9.18: the verify/repair capability (check, renew and repair without the read key). */
  verifyCapability: string;
  /** 64 hex: the manifest id. */
  manifestId: string;
  size: number;
  chunks: number;
  coding: Coding;
  /** Share puts that succeeded (data, manifest, root copies). */
  shares: number;
  /** Share bytes sent. */
  bytesSent: number;
  /** Shares stored further down their ranking because the first choice failed (§9.9). */
  relocated: number;
}

interface Tally { shares: number; bytes: number; relocated: number }

/** Share bytes a put keeps in flight by default (SPEC.md §9.9): bounds the client's memory. */
export const PUT_WINDOW_BYTES = 24 * 1024 * 1024;

/** Chunks in flight by default: PUT_WINDOW_BYTES of shares, at least 4 and at most 16 chunks. */
export function defaultWindow(chunkSize: number, coding: Coding): number {
  const shareBytesPerChunk = Math.ceil(chunkSize / coding.k) * coding.n;
  return Math.min(16, Math.max(4, Math.floor(PUT_WINDOW_BYTES / shareBytesPerChunk)));
}

/**
 * A manifest name: the base name, if it is a valid one (SPEC.md §9.4: at most 255 bytes, no NUL,
 * no '/' or '\\', not '.' or '..'); else none, so the file is stored without a suggested name.
 */
export function manifestName(file: string): string {
  const b = path.basename(file);
  return isManifestName(b) ? b : '';
}

/**
 * SPEC.md §9.9: a SHARE_HASH_MISMATCH answer is the uploader's fault only when its own bytes do not
 * hash to the id (then it is never retried elsewhere); when they do, the node lied and is treated
 * as any node that failed the put.
 */
function ownFault(e: BitcloudError, s: Share): boolean {
  return e.code === 'SHARE_HASH_MISMATCH' && !checkShare(s.id, s.bytes);
}

/**
 * Store the shares of one chunk. Share i goes to its placement node; if that node fails (down,
 * full, …), to the next node of the share's own ranking that holds no share of this chunk and has
 * not failed. Fewer places than shares → STORAGE_PUT_FAILED with the last node's code.
 */
export async function storeChunk(client: StorageClient, shares: readonly Share[], tally: Tally): Promise<void> {
  const all = client.fingerprints;
  const alive = (fp: string) => !client.isDead(fp);
  const first = placeChunk(shares.map((s) => s.id), all, alive);
  const taken = new Set(first);
  await Promise.all(shares.map(async (s, i) => {
    let node: string | undefined = first[i];
    let last: BitcloudError | null = null;
    let ranking: string[] | null = null;
    for (let tries = 0; node; tries++) {
      try {
        await client.putShare(node, s.id, s.bytes);
        tally.shares++;
        tally.bytes += s.bytes.length;
        if (tries > 0) tally.relocated++;
        return;
      } catch (e) {
        last = isBitcloudError(e) ? e : err('STORAGE_PUT_FAILED', String(e));
        if (ownFault(last, s)) throw last;
        ranking ??= rankNodes(s.id, all);
        node = ranking.find((fp) => !taken.has(fp) && alive(fp));
        if (node) taken.add(node);
      }
    }
    throw err('STORAGE_PUT_FAILED', `no storage node took share ${i} of a chunk (last: ${last?.code})`, { cause: last?.code }, last);
  }));
}

/** The root share, whole, on the first `copies` nodes of rank(manifest id) that accept it. */
export async function storeRoot(client: StorageClient, root: Share, copies: number, tally: Tally): Promise<void> {
  let stored = 0;
  let last: BitcloudError | null = null;
  const ranking = rankNodes(root.id, client.fingerprints).filter((fp) => !client.isDead(fp));
  for (let i = 0; i < ranking.length && stored < copies; ) {
    const batch = ranking.slice(i, i + copies - stored);
    i += batch.length;
    const results = await Promise.allSettled(batch.map((fp) => client.putShare(fp, root.id, root.bytes)));
    for (const r of results) {
      if (r.status === 'fulfilled') { stored++; tally.shares++; tally.bytes += root.bytes.length; } else last = r.reason as BitcloudError;
    }
    if (last && ownFault(last, root)) throw last;
  }
  if (stored < copies) {
    throw err('STORAGE_PUT_FAILED', `the manifest root reached ${stored} of ${copies} storage nodes (last: ${errorCode(last)})`, { stored, copies }, last);
  }
}

/**
 * Errnos that say what the input path is (missing, not permitted, not a file): IO_NOT_FOUND, the
 * caller's to fix (SPEC.md §9.10). Any other (EIO, EMFILE, ENFILE, ENOMEM, EAGAIN) is a failure of
 * the disk or of this process, which a retry may cure: not reported as a bad request.
 */
const INPUT_ERRNOS = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'ENXIO', 'ENODEV']);

export async function putFile(client: StorageClient, file: string, o: PutOptions = {}): Promise<PutResult> {
  const coding = o.coding ?? DEFAULT_CODING;
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const window = Math.max(1, o.window ?? defaultWindow(chunkSize, coding));
  let st: fs.Stats;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    throw err('IO_NOT_FOUND', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, undefined, e);
  }
  if (!st.isFile()) throw err('IO_NOT_A_FILE', `${file} is not a regular file`);
  // Fail before reading anything when placement cannot work (SPEC.md §9.7).
  if (client.fingerprints.length < coding.n) {
    throw err('PLACEMENT_TOO_FEW_NODES', `need ${coding.n} distinct storage nodes, the consensus lists ${client.fingerprints.length}`, { need: coding.n, have: client.fingerprints.length });
  }
  const fileKey = o.fileKey ?? (o.contentClass && isPublicClass(o.contentClass) ? PUBLIC_CONTENT_KEY : newFileKey());
  const enc = new FileEncoder({ fileKey, coding, chunkSize });
  // SPEC.md §9.5: the manifest's length follows from the size, the chunk size and n; one over
  // MAX_MANIFEST_BYTES (or bad metadata) is refused before any chunk is stored, not after them all.
  const meta = { name: o.name ?? manifestName(file), contentType: o.contentType, contentClass: o.contentClass };
  const manifestBytes = manifestBytesFor(st.size, chunkSize, coding, meta);
  if (manifestBytes > MAX_MANIFEST_BYTES) {
    throw err('STORAGE_MANIFEST_TOO_LARGE', `the manifest of this file would take ${manifestBytes} bytes, more than ${MAX_MANIFEST_BYTES}; use a larger chunk size`, { size: manifestBytes });
  }
  const tally: Tally = { shares: 0, bytes: 0, relocated: 0 };
  const inflight = new Set<Promise<void>>();
  let failure: unknown = null;
  let done = 0;
  o.onProgress?.(0, st.size);

  // SPEC.md §9.18: per data chunk, the share ids and audit roots for the verify record.
  const verifyChunks: VerifyChunk[] = [];
  const pool = o.workers === false ? null : ChunkCoderPool.shared();
  const encode = (c: PlainChunk): Promise<CodedChunk> | CodedChunk => (pool && c.plain.length >= CODER_POOL_MIN_BYTES
    ? pool.encode(fileKey, c.index, c.plain, coding, ChunkKind.DATA, true, true)
    : encodeInline(fileKey, c.index, c.plain, coding, ChunkKind.DATA, true));

  // A chunk counts against the window from the moment it is cut until its shares are stored:
  // encoding (on a worker) and storing overlap, chunk after chunk.
  const dispatch = async (c: PlainChunk): Promise<void> => {
    while (inflight.size >= window && !failure) await Promise.race(inflight);
    if (failure) throw failure;
    const plainLen = c.plain.length;
    const p: Promise<void> = Promise.resolve(encode(c)).then((coded) => {
      enc.record(c.index, coded);
      verifyChunks[c.index] = {
        kind: ChunkKind.DATA, index: c.index, shareSize: coded.shares[0].bytes.length,
        shareIds: coded.shares.map((sh) => sh.id), auditRoots: coded.auditRoots!,
      };
      return storeChunk(client, coded.shares, tally);
    }).then(() => {
      done += plainLen;
      o.onProgress?.(done, st.size);
    }, (e) => { failure ??= e; }).finally(() => inflight.delete(p));
    inflight.add(p);
  };

  // The read stream is paused while dispatch waits: at most `window` chunks are ever held.
  const input = fs.createReadStream(file, { highWaterMark: Math.min(chunkSize, 4 * 1024 * 1024) });
  // SPEC.md §9.10: a file that cannot be opened or read for what it is (missing, no permission) is
  // the input's fault, IO_NOT_FOUND with its errno, not a failure without a code (INTERNAL). A
  // disk error or a limit of this process (EIO, EMFILE, ENOMEM) is not: it stays what it is.
  let readError: unknown = null;
  input.once('error', (e) => { readError = e; });
  try {
    for await (const buf of input) {
      for (const c of enc.cut(buf as Buffer)) await dispatch(c);
    }
    for (const c of enc.endCut()) await dispatch(c);
    await Promise.all(inflight);
    if (failure) throw failure;
  } catch (e) {
    if (e !== readError || !INPUT_ERRNOS.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    throw err('IO_NOT_FOUND', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, undefined, e);
  } finally {
    input.destroy();
  }

  const manifest = enc.manifest(meta);
  const { sealed, verify, verifyKey } = sealWithVerifyRecord(fileKey, manifest, verifyChunks);
  for (const c of sealed.chunks) await storeChunk(client, c.shares, tally);
  await storeRoot(client, verify, coding.n, tally);
  await storeRoot(client, sealed.root, coding.n, tally);
  return {
    capability: formatCapability({ manifestId: sealed.manifestId, fileKey }),
    verifyCapability: formatVerifyCapability({ manifestId: sealed.manifestId, verifyId: verify.id, verifyKey }),
    manifestId: sealed.manifestId.toString('hex'),
    size: manifest.layout.size,
    chunks: manifest.layout.chunks.length,
    coding,
    shares: tally.shares,
    bytesSent: tally.bytes,
    relocated: tally.relocated,
  };
}
