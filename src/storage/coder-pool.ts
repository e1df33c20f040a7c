// SPEC.md §9.2–9.3, §9.18.2: data chunks encoded (encrypt, Reed–Solomon, share ids, audit roots)
// on worker threads, so the thread that drives the client's circuits is never blocked for the
// milliseconds a 1 MiB chunk takes: while a chunk is being encoded the circuits keep sending the
// shares of the chunks before it. The bytes are exactly encodeChunk's and verifyChunkOf's (the
// worker runs them). Where no worker can be started, chunks are encoded inline as before.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { err, isErrorCode } from '../errors';
import type { Coding } from './coding';
import { ChunkKind, decodeChunk, encodeChunk, type ChunkRef, type EncodedChunk } from './encode';
import { auditRoot } from './audit';

/** Chunks smaller than this are coded on the calling thread (a round trip to a worker costs more). */
export const CODER_POOL_MIN_BYTES = 64 * 1024;

/**
 * Sent to a worker: encode chunk `index` of kind `kind` (plaintext in `plain`, transferred), or
 * decode it from the shares `present` (packed in `plain`, `size` bytes each, or moved one by one
 * in `parts`; already checked against their ids).
 */
export type CoderTask = { id: number; key: Uint8Array; index: number; plain: Uint8Array; k: number; n: number; kind: number } & (
  | { op: 'encode'; auditRoots: boolean }
  | { op: 'decode'; present: number[]; size: number; encLen: number; shareIds: Uint8Array[]; parts?: Uint8Array[] });
/** A worker's answer: the n shares in one buffer (each `size` bytes, share i at i·size), ids and audit roots 32 bytes each. */
export type CoderReply =
  | { id: number; ok: true; buf: ArrayBufferLike; size: number; encLen: number; ids: Uint8Array; roots: Uint8Array }
  | { id: number; ok: false; code: string; message: string; detail?: Record<string, unknown> };

/** An encoded chunk with its shares' audit roots (SPEC.md §9.18.2), when asked for. */
export interface CodedChunk extends EncodedChunk { auditRoots: Buffer[] | null }

interface Slot { worker: Worker; ready: Promise<boolean>; started: boolean; busy: number }

/**
 * Shares whose buffers can be moved to a worker: each the only view of its own ArrayBuffer (at
 * most a frame's few header bytes around it), never one of Node's pooled small buffers (those are
 * at most 4 KiB; a moved pool would take other buffers' bytes with it), no two sharing one.
 */
function movable(parts: readonly Uint8Array[]): boolean {
  const seen = new Set<ArrayBufferLike>();
  for (const p of parts) {
    if (p.byteLength < 16 * 1024 || p.buffer.byteLength > p.byteLength + 4096 || seen.has(p.buffer)) return false;
    seen.add(p.buffer);
  }
  return true;
}

/** Encode inline, on this thread (small chunks, or no worker). */
export function encodeInline(key: Uint8Array, index: number, plain: Uint8Array, coding: Coding, kind: ChunkKind, withRoots: boolean): CodedChunk {
  const enc = encodeChunk(key, index, plain, coding, kind);
  return { ...enc, auditRoots: withRoots ? enc.shares.map((s) => auditRoot(s.bytes)) : null };
}

/**
 * A small pool of chunk encoders (one worker per spare core, at least one). Workers are started
 * on first use and never keep the process alive while idle. One pool per process is enough
 * (`ChunkCoderPool.shared()`).
 */
export class ChunkCoderPool {
  private static instance: ChunkCoderPool | null = null;
  static shared(): ChunkCoderPool {
    return (ChunkCoderPool.instance ??= new ChunkCoderPool());
  }

  private slots: Slot[] | null = null;
  private broken = false;
  private nextId = 1;
  private readonly pending = new Map<number, { slot: Slot; resolve: (r: CoderReply) => void; reject: (e: Error) => void }>();

  constructor(private readonly size = Math.max(1, Math.min(4, (os.availableParallelism?.() ?? os.cpus().length) - 1))) {}

  /**
   * Encode one chunk. The plaintext is copied to the worker, unless `owned`: then the caller gives
   * up `plain`'s whole ArrayBuffer (it must own it alone, e.g. Buffer.allocUnsafeSlow), which is
   * moved to the worker without a copy and is unusable here afterwards.
   */
  async encode(key: Uint8Array, index: number, plain: Uint8Array, coding: Coding, kind: ChunkKind, withRoots: boolean, owned = false): Promise<CodedChunk> {
    const slot = await this.pick();
    if (!slot) return encodeInline(key, index, plain, coding, kind, withRoots);
    let copy = plain;
    if (!owned) {
      copy = new Uint8Array(plain.length);
      copy.set(plain);
    }
    const reply = await this.run(slot, { op: 'encode', id: 0, key, index, plain: copy, k: coding.k, n: coding.n, kind, auditRoots: withRoots });
    const all = Buffer.from(reply.buf as ArrayBuffer);
    const shares = [];
    for (let i = 0; i < coding.n; i++) {
      shares.push({ id: Buffer.from(reply.ids.buffer, reply.ids.byteOffset + i * 32, 32), bytes: all.subarray(i * reply.size, (i + 1) * reply.size) });
    }
    const auditRoots = withRoots ? shares.map((_, i) => Buffer.from(reply.roots.buffer, reply.roots.byteOffset + i * 32, 32)) : null;
    return { shares, encLen: reply.encLen, auditRoots };
  }

  /**
   * decodeChunk(…, { screened: true }) on a worker: `shares` (null = not fetched) were already
   * checked against `ref` (length and hash). They are copied to the worker, unless `move` and each
   * is the sole view of its own buffer (movable): then those buffers are moved there and the
   * caller's shares are empty afterwards. The plaintext comes back.
   */
  async decode(key: Uint8Array, index: number, shares: ReadonlyArray<Uint8Array | null>, coding: Coding, ref: ChunkRef, kind: ChunkKind, opts: { move?: boolean } = {}): Promise<Buffer> {
    const slot = await this.pick();
    if (!slot) return decodeChunk(key, index, shares, coding, ref, kind, { screened: true });
    const present: number[] = [];
    shares.forEach((s, i) => { if (s) present.push(i); });
    const size = present.length ? shares[present[0]]!.length : 0;
    if (present.some((i) => shares[i]!.length !== size)) return decodeChunk(key, index, shares, coding, ref, kind, { screened: true });
    const task = {
      op: 'decode' as const, id: 0, key, index, plain: new Uint8Array(0), k: coding.k, n: coding.n, kind, present, size, encLen: ref.encLen,
      shareIds: ref.shareIds.map((x) => Uint8Array.from(x)),
    };
    const parts = present.map((i) => shares[i]!);
    let reply;
    if (opts.move && movable(parts)) {
      // Each share's buffer goes to the worker as it is: no packing copy.
      reply = await this.run(slot, { ...task, parts }, parts.map((p) => p.buffer as ArrayBuffer));
    } else {
      const packed = new Uint8Array(present.length * size);
      present.forEach((i, j) => packed.set(shares[i]!, j * size));
      reply = await this.run(slot, { ...task, plain: packed });
    }
    return Buffer.from(reply.buf as ArrayBuffer, 0, reply.size);
  }

  /** One task on one worker; a worker's error is thrown as the same typed error. */
  private async run(slot: Slot, task: CoderTask, moved: ArrayBuffer[] = [task.plain.buffer as ArrayBuffer]): Promise<CoderReply & { ok: true }> {
    const id = this.nextId++;
    task.id = id;
    task.key = Uint8Array.from(task.key); // a view would take its whole underlying buffer along
    const reply = await new Promise<CoderReply>((resolve, reject) => {
      this.pending.set(id, { slot, resolve, reject });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage(task, moved);
    });
    if (!reply.ok) {
      if (isErrorCode(reply.code)) throw err(reply.code, reply.message, reply.detail);
      throw err('STORAGE_INTERNAL', `chunk coder failed: ${reply.message}`);
    }
    return reply;
  }

  /** Start the workers now (they are otherwise started by the first encode); resolves when they are up. */
  async warm(): Promise<boolean> {
    await this.pick();
    const slots = this.slots ?? [];
    // Held while we wait for them (an idle worker never keeps the process alive).
    for (const s of slots) s.worker.ref();
    try {
      return (await Promise.all(slots.map((s) => s.ready))).some(Boolean);
    } finally {
      for (const s of slots) if (s.busy === 0) s.worker.unref();
    }
  }

  /** Stop the workers (tests; a process exits without it, idle workers do not hold it). */
  async close(): Promise<void> {
    const s = this.slots;
    this.slots = null;
    if (ChunkCoderPool.instance === this) ChunkCoderPool.instance = null;
    if (s) await Promise.all(s.map((x) => x.worker.terminate()));
  }

  /**
   * The least busy worker that is ready, or null (encode inline): while the workers start (a
   * fraction of a second) chunks are encoded here rather than waiting for them, and for good
   * when none can start.
   */
  private async pick(): Promise<Slot | null> {
    if (this.broken) return null;
    if (!this.slots) {
      this.slots = Array.from({ length: this.size }, () => this.start());
      void Promise.all(this.slots.map((s) => s.ready)).then((ok) => { if (!ok.some(Boolean)) this.broken = true; });
    }
    const ok = this.slots.filter((s) => s.started);
    if (!ok.length) return null;
    return ok.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  private start(): Slot {
    const worker = new Worker(new URL('./coder-worker.mjs', import.meta.url));
    const slot: Slot = { worker, busy: 0, started: false, ready: Promise.resolve(false) };
    slot.ready = new Promise<boolean>((resolve) => {
      worker.once('message', () => { slot.started = true; resolve(true); });
      worker.once('error', () => resolve(false));
      worker.once('exit', () => resolve(false));
    });
    worker.on('message', (r: CoderReply | { ready: true }) => {
      if (!('id' in r)) return;
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (--slot.busy === 0) worker.unref();
      p.resolve(r);
    });
    const fail = (e: Error) => {
      // A worker that died takes its tasks with it; later tasks go to the others, or inline.
      slot.started = false;
      if (this.slots) this.slots = this.slots.filter((s) => s !== slot);
      if (this.slots && this.slots.length === 0) this.broken = true;
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.reject(err('STORAGE_INTERNAL', `chunk encoder stopped: ${e.message}`));
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    return slot;
  }
}
