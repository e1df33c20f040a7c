// SPEC.md §9.6: the requester's side of the storage protocol on one byte stream (a BEGIN_STORAGE
// stream or a direct link). Requests may be pipelined; responses are matched by request id and
// checked against what was asked. An error response rejects with its code (detail.remote = true).
import type { Duplex } from 'node:stream';
import { err, BitcloudError } from '../errors';
import { FrameDecoder, MAX_FRAME_BYTES } from './framing';
import { decodeResponse, encodeRequestFrame, responseError, type StorageRequest, type StorageResponse } from './protocol';

type Answer<T extends StorageRequest['type']> = Extract<StorageResponse, { type: T }>;

interface Pending {
  req: StorageRequest;
  resolve: (r: StorageResponse) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

export interface StorageChannelOptions {
  maxFrameBytes?: number;
  /**
   * SPEC.md §9.9: a request not answered within this long fails alone with STORAGE_TIMEOUT and
   * its id is freed (a late answer to it is dropped). Absent: no limit (the caller keeps its own).
   */
  requestTimeoutMs?: number;
}

/** Answers up to this size (a share of a chunk of up to 16 MiB at k = 4, and its fields) are received into one buffer. */
export const REQUESTER_WHOLE_FRAME_BYTES = 4 * 1024 * 1024 + 4096;

/**
 * SPEC.md §9.6.1: the longest answer frame to a request other than a `get` (the largest is an
 * audit answer of 16 blocks, about 80 KiB; an error, a renew of 1024 ids or a DhtGet hold a few).
 */
export const MAX_SMALL_ANSWER_BYTES = 128 * 1024;
/** Room for the fields of a GetOk beside its data (as MAX_FRAME_BYTES allows beside a share). */
const GET_ANSWER_FIELDS_BYTES = 4096;

/**
 * SPEC.md §9.6.1: the longest answer frame `req` can need: a `get` of a given length its data and
 * fields, a `get` to the end of a share (length 0) any frame, anything else MAX_SMALL_ANSWER_BYTES.
 */
export function answerFrameBound(req: StorageRequest): number {
  if (req.type !== 'get') return MAX_SMALL_ANSWER_BYTES;
  return req.length > 0 ? Math.max(MAX_SMALL_ANSWER_BYTES, req.length + GET_ANSWER_FIELDS_BYTES) : MAX_FRAME_BYTES;
}

export class StorageChannel {
  private readonly pending = new Map<number, Pending>();
  private readonly decoder: FrameDecoder;
  private nextId = 1;
  /**
   * Ids of requests that timed out or were abandoned, until their late answer arrives (dropped, not
   * a protocol error), each with the longest answer frame it may come in (answerFrameBound).
   */
  private readonly late = new Map<number, number>();
  private closed: BitcloudError | null = null;
  /** True once the channel failed or its stream closed: no request will be answered on it again. */
  get isClosed(): boolean { return this.closed !== null; }

  constructor(private readonly stream: Duplex, private readonly opts: StorageChannelOptions = {}) {
    // An answer's buffer is taken at its declared length (a share of a 1 MiB chunk: one
    // allocation, where growing by doubling took three and copied 192 KiB): the node is one we
    // chose, and one frame at a time arrives on this stream.
    // SPEC.md §9.6.1: an answer frame longer than every request still awaiting one could need
    // (a node declaring 16 MiB in answer to a HAS, or to a get of a 1 KiB share) is
    // STORAGE_FRAME_TOO_LARGE before anything is allocated for it.
    this.decoder = new FrameDecoder(opts.maxFrameBytes ?? MAX_FRAME_BYTES, undefined, REQUESTER_WHOLE_FRAME_BYTES, () => this.frameBound());
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.fail(err('STORAGE_CHANNEL_CLOSED', 'storage stream ended')));
    stream.on('close', () => this.fail(err('STORAGE_CHANNEL_CLOSED', 'storage stream closed')));
    stream.on('error', (e) => this.fail(err('STORAGE_CHANNEL_CLOSED', 'storage stream failed', { reason: e.message })));
  }

  /** Requests sent and not answered yet (nor timed out or abandoned). */
  get pendingCount(): number { return this.pending.size; }

  /**
   * Send a request; resolves with the matching successful response, rejects with its error code.
   * SPEC.md §9.16.6: once `signal` aborts, the request is abandoned: it rejects at once with
   * STORAGE_ABORTED, its id is freed like a timed-out one (the answer, if it comes, is dropped),
   * and the stream goes on for the other requests on it.
   */
  request<T extends StorageRequest>(req: T, signal?: AbortSignal): Promise<Answer<T['type']>> {
    if (signal?.aborted) return Promise.reject(storageAborted());
    if (this.closed) return Promise.reject(this.closed);
    const reqId = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    // Header and body in one buffer, one write (a 4-byte header alone would cost a DATA cell of
    // its own on a circuit stream); a put's share is copied into it once.
    const frame = encodeRequestFrame(reqId, req);
    return new Promise<Answer<T['type']>>((resolve, reject) => {
      const p: Pending = { req, resolve: resolve as (r: StorageResponse) => void, reject };
      if (signal) {
        const onAbort = () => {
          if (this.pending.get(reqId) !== p) return;
          this.pending.delete(reqId);
          clearTimeout(p.timer);
          this.late.set(reqId, answerFrameBound(req));
          reject(storageAborted());
        };
        signal.addEventListener('abort', onAbort, { once: true });
        p.resolve = (r) => { signal.removeEventListener('abort', onAbort); resolve(r as Answer<T['type']>); };
        p.reject = (e) => { signal.removeEventListener('abort', onAbort); reject(e); };
      }
      const ms = this.opts.requestTimeoutMs;
      if (ms !== undefined) {
        p.timer = setTimeout(() => {
          if (this.pending.get(reqId) !== p) return;
          this.pending.delete(reqId);
          this.late.set(reqId, answerFrameBound(req));
          p.reject(err('STORAGE_TIMEOUT', `no answer from the storage node within ${ms} ms`, { type: req.type }));
        }, ms);
      }
      this.pending.set(reqId, p);
      this.stream.write(frame);
    });
  }

  /**
   * Close the stream at once (destroy, not end: the node stops sending what was asked on it);
   * pending requests reject with STORAGE_CHANNEL_CLOSED.
   */
  destroy(): void {
    this.fail(err('STORAGE_CHANNEL_CLOSED', 'channel closed'));
    this.stream.destroy();
  }

  /** End the stream; pending requests reject with STORAGE_CHANNEL_CLOSED. */
  close(): void {
    this.fail(err('STORAGE_CHANNEL_CLOSED', 'channel closed'));
    this.stream.end();
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.fail(e as BitcloudError);
      this.stream.destroy();
      return;
    }
    for (const f of frames) {
      let reqId: number;
      let res: StorageResponse;
      try {
        ({ reqId, res } = decodeResponse(f));
      } catch (e) {
        this.fail(e as BitcloudError);
        this.stream.destroy();
        return;
      }
      const p = this.pending.get(reqId);
      if (!p && this.late.delete(reqId)) continue; // the answer to a request that timed out
      if (!p) {
        // SPEC.md §9.6.1–§9.6.2: an error on reqId 0 is the node's framing error (it is closing, or
        // over its frame budget: STORAGE_BUSY); anything else answering no pending request is a
        // protocol error of the node.
        this.fail(res.type === 'error' && reqId === 0 ? responseError(res) : err('STORAGE_BAD_RESPONSE', 'response to no pending request', { reqId }));
        this.stream.destroy();
        return;
      }
      this.pending.delete(reqId);
      clearTimeout(p.timer);
      if (res.type === 'error') p.reject(responseError(res));
      else {
        const mismatch = answerMismatch(p.req, res);
        if (mismatch) p.reject(err('STORAGE_BAD_RESPONSE', mismatch, { reqId }));
        else p.resolve(res);
      }
    }
  }

  /** The longest answer frame any request awaiting an answer (pending or late) can need. */
  private frameBound(): number {
    let max = MAX_SMALL_ANSWER_BYTES;
    for (const p of this.pending.values()) max = Math.max(max, answerFrameBound(p.req));
    for (const b of this.late.values()) max = Math.max(max, b);
    return max;
  }

  private fail(e: BitcloudError): void {
    if (!this.closed) this.closed = e;
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(e); }
    this.pending.clear();
    this.late.clear();
  }
}

/** SPEC.md §9.10, §9.16.6: a request or read abandoned through its caller's abort signal. */
export function storageAborted(): BitcloudError {
  return err('STORAGE_ABORTED', 'the storage read was abandoned by its caller');
}

/**
 * `p`, or STORAGE_ABORTED as soon as `signal` aborts (SPEC.md §9.16.6); `p` itself goes on (a
 * session being opened, or a folder listing being read and cached, serves later requests).
 */
export function untilStorageAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(storageAborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(storageAborted());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Throws STORAGE_ABORTED when `signal` has aborted. */
export function throwIfStorageAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw storageAborted();
}

/** Why a response does not answer its request, or null when it does. */
function answerMismatch(req: StorageRequest, res: StorageResponse): string | null {
  if (req.type !== res.type) return `asked ${req.type}, answered ${res.type}`;
  if (req.type === 'has' && res.type === 'has' && res.present.length !== req.ids.length) return 'HAS answer of the wrong length';
  if (req.type === 'renew' && res.type === 'renew' && res.expiresAt.length !== req.ids.length) return 'RENEW answer of the wrong length';
  if (req.type === 'challenge' && res.type !== 'challenge') return 'not an audit answer';
  if (req.type === 'get' && res.type === 'get') {
    if (res.offset !== req.offset) return 'GET answer at another offset';
    if (req.length !== 0 && res.data.length !== req.length) return 'GET answer of the wrong length';
    if (res.offset + res.data.length > res.totalSize) return 'GET answer beyond the share size';
  }
  return null;
}
