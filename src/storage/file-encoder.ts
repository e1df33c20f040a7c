// SPEC.md §9.2: cutting a byte stream into chunks and encoding them one at a time. Holds at most one
// chunk of plaintext, so a 1 GiB file never sits in memory whole; the caller stores each chunk's
// shares before pushing more (backpressure is the caller's loop).
import { err } from '../errors';
import { randomBytes } from '../crypto/primitives';
import { DEFAULT_CODING, type Coding } from './coding';
import { ChunkKind, encodeChunk, FILE_KEY_BYTES, type EncodedChunk } from './encode';
import { checkLayout, makeManifest, type ChunkEntry, type Layout, type Manifest } from './manifest';
import { MAX_CHUNK_SIZE } from './share';

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** A random per-file key (SPEC.md §9.2). */
export function newFileKey(): Buffer {
  return randomBytes(FILE_KEY_BYTES);
}

export interface EncodedDataChunk extends EncodedChunk {
  index: number;
  /** Plaintext offset of the chunk in the file. */
  offset: number;
  plainLen: number;
}

/** A chunk's plaintext, cut but not encoded yet (FileEncoder.cut): `plain` owns its memory. */
export interface PlainChunk {
  index: number;
  offset: number;
  plain: Buffer;
}

export class FileEncoder {
  readonly coding: Coding;
  readonly chunkSize: number;
  private readonly key: Buffer;
  private pending: Buffer;
  private fill = 0;
  private size = 0;
  private ended = false;
  private readonly entries: ChunkEntry[] = [];

  constructor(opts: { fileKey: Uint8Array; coding?: Coding; chunkSize?: number }) {
    this.coding = opts.coding ?? DEFAULT_CODING;
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1 || this.chunkSize > MAX_CHUNK_SIZE) {
      throw err('STORAGE_BAD_MANIFEST_INPUT', `chunk size must be 1..${MAX_CHUNK_SIZE}`, { chunkSize: this.chunkSize });
    }
    if (opts.fileKey.length !== FILE_KEY_BYTES) throw err('STORAGE_KEY_INVALID', `file key must be ${FILE_KEY_BYTES} bytes`);
    this.key = Buffer.from(opts.fileKey);
    this.pending = Buffer.allocUnsafeSlow(this.chunkSize);
  }

  /** Add bytes; returns the chunks completed by them (possibly none). */
  push(data: Uint8Array): EncodedDataChunk[] {
    return this.fillChunks(data, () => this.flush());
  }

  /**
   * Cut bytes into plaintext chunks without encoding them: the caller encodes each (perhaps on
   * another thread, coder-pool.ts) and records it with `record` before layout(). Each chunk's
   * buffer is its own (never reused), so it can be handed to another thread. Not mixed with push.
   */
  cut(data: Uint8Array): PlainChunk[] {
    return this.fillChunks(data, () => this.handOut());
  }

  /** Copy `data` into the pending chunk; each time it fills, `full()` takes it (push and cut). */
  private fillChunks<T>(data: Uint8Array, full: () => T): T[] {
    if (this.ended) throw err('STORAGE_INTERNAL', 'push after end');
    const out: T[] = [];
    let off = 0;
    while (off < data.length) {
      const take = Math.min(this.chunkSize - this.fill, data.length - off);
      this.pending.set(data.subarray(off, off + take), this.fill);
      this.fill += take;
      off += take;
      if (this.fill === this.chunkSize) out.push(full());
    }
    return out;
  }

  /** cut() is done: the last, partial chunk if any. */
  endCut(): PlainChunk[] {
    if (this.ended) return [];
    this.ended = true;
    return this.fill > 0 ? [this.handOut()] : [];
  }

  /** Record the encoding of a chunk handed out by cut()/endCut() (any order). */
  record(index: number, enc: EncodedChunk): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.handedOut) throw err('STORAGE_INTERNAL', 'record of a chunk never cut', { index });
    this.entries[index] = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
  }

  private handedOut = 0;
  private handOut(): PlainChunk {
    const chunk: PlainChunk = { index: this.handedOut++, offset: this.size, plain: this.pending.subarray(0, this.fill) };
    this.size += this.fill;
    this.fill = 0;
    this.pending = Buffer.allocUnsafeSlow(this.chunkSize);
    return chunk;
  }

  /** No more data: returns the last, partial chunk if any. A zero-length file has no chunks. */
  end(): EncodedDataChunk[] {
    if (this.ended) return [];
    this.ended = true;
    return this.fill > 0 ? [this.flush()] : [];
  }

  /** The file's layout; only after end(). */
  layout(): Layout {
    if (!this.ended) throw err('STORAGE_INTERNAL', 'layout before end');
    for (let i = 0; i < this.entries.length || i < this.handedOut; i++) {
      if (!this.entries[i]) throw err('STORAGE_INTERNAL', 'layout before every chunk was recorded', { index: i });
    }
    return checkLayout({ size: this.size, chunkSize: this.chunkSize, coding: this.coding, chunks: this.entries }, 'STORAGE_INTERNAL');
  }

  manifest(meta: { name?: string; contentType?: string; contentClass?: string } = {}): Manifest {
    return makeManifest(this.layout(), meta);
  }

  private flush(): EncodedDataChunk {
    const index = this.entries.length;
    const plainLen = this.fill;
    const enc = encodeChunk(this.key, index, this.pending.subarray(0, plainLen), this.coding, ChunkKind.DATA);
    this.entries.push({ encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) });
    const chunk: EncodedDataChunk = { ...enc, index, offset: this.size, plainLen };
    this.size += plainLen;
    this.fill = 0;
    return chunk;
  }
}
