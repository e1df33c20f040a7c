// SPEC.md §9.6.1: serving the storage protocol on one byte stream (a BEGIN_STORAGE stream or a direct
// link). Up to `maxInflight` requests of one stream are handled at once and each is answered when
// it completes (SPEC.md §9.6.2 lets a node answer in any order), so one share's fsync or disk read
// does not hold up the next; past that bound the stream is not read, and the sender's window closes.
// A request that cannot be decoded gets an error response and the stream goes on; a framing error
// (bad length) gets one error response, then the stream is ended, because the frame boundaries are
// lost. One bad stream never affects another. A stream idle for STORAGE_STREAM_IDLE_MS (no byte in,
// no request being handled, none of its answers taken) is closed, and so is one whose request frame
// is not received in full within STORAGE_REQUEST_DEADLINE_MS of the node reading it, counted from
// its first byte (SPEC.md §9.6.1). Once serving has ended the node ends its side, and a stream not
// flushed within STORAGE_STREAM_IDLE_MS after that is destroyed.
// Answers written and not yet taken by their requesters hold a per-node budget (NODE_ANSWER_BUDGET_BYTES);
// past it a request is answered STORAGE_BUSY on its own id and the stream goes on (SPEC.md §9.6.1).
import type { Duplex } from 'node:stream';
import { err, errorCode, isBitcloudError } from '../src/errors';
import { silentLogger, type Logger } from '../src/ops/log';
import { FrameBudget, FrameDecoder, MAX_FRAME_BYTES } from '../src/storage/framing';

/** SPEC.md §9.6.1: bytes of partly received request frames this node holds over all its streams. */
export const NODE_FRAME_BUDGET_BYTES = 256 * 1024 * 1024;
const nodeFrameBudget = new FrameBudget(NODE_FRAME_BUDGET_BYTES);
/**
 * SPEC.md §9.6.1: bytes of answers this node has written to its streams and their requesters have
 * not taken yet, over all its streams. Each stream holds at most 8 answers, but streams are many: a
 * requester that asks for a 16 MiB share 8 times on each of many streams and reads nothing would
 * otherwise hold 128 MiB of the node's memory per stream.
 */
export const NODE_ANSWER_BUDGET_BYTES = 256 * 1024 * 1024;
const nodeAnswerBudget = new FrameBudget(NODE_ANSWER_BUDGET_BYTES);
/**
 * SPEC.md §9.6.1: answer frames of at most this many bytes (a put's, audit's or stat's answer, an
 * error) do not count against the answer budget and always go out: they hold no more than an error
 * does, and refusing one would report a put or renewal the node has already made as failed.
 */
export const UNCOUNTED_ANSWER_BYTES = 4096;
/** SPEC.md §9.6.1: a storage stream on which nothing arrives, nothing is handled and no answer is taken this long is closed. */
export const STORAGE_STREAM_IDLE_MS = 120_000;
/**
 * SPEC.md §9.6.1: a request frame not received in full this long after its first byte closes its
 * stream, circuit or direct, however often its bytes come (its bytes hold the node's frame budget).
 * Time during which the node reads no further, at its own bound on requests in flight, is not counted
 * while one of them is being handled (an answer waiting only for the requester to take it does not stop it).
 */
export const STORAGE_REQUEST_DEADLINE_MS = 120_000;
import { decodeRequest, encodeResponseFrame, errorResponse, type StorageRequest, type StorageResponse } from '../src/storage/protocol';
import { allowAll, handleRequest, type PolicyCheck, type RequestContext } from './handler';
import type { ShareStore } from './share-store';
import type { NameService } from './name-service';

export interface ServeOptions {
  ctx: RequestContext;
  policyCheck?: PolicyCheck;
  /** DhtGet / DhtPut (SPEC.md §9.14.1); absent: refused. */
  names?: NameService;
  maxFrameBytes?: number;
  /** Requests of one stream handled at once (default 8). */
  maxInflight?: number;
  /** Partly received frames of every stream of this node (default: one budget per process, 256 MiB). */
  frameBudget?: FrameBudget;
  /**
   * SPEC.md §9.6.1: answers written to every stream of this node and not yet taken by their
   * requesters (default: one budget per process, 256 MiB). An answer past it is STORAGE_BUSY.
   */
  answerBudget?: FrameBudget;
  /** Idle timeout, ms (default STORAGE_STREAM_IDLE_MS): no byte in, no request being handled, no answer taken. */
  idleMs?: number;
  /**
   * SPEC.md §9.6.1: a request frame not received in full this long after its first byte closes the
   * stream, however often its bytes come (default STORAGE_REQUEST_DEADLINE_MS; every storage stream,
   * circuit or direct, has one).
   */
  requestDeadlineMs?: number;
  /** The request deadline closed the stream (metrics). */
  onRequestDeadline?: () => void;
  log?: Logger;
}

/** Serve requests from `stream` until it ends or fails. Resolves when done; never rejects. */
export async function serveStorageStream(stream: Duplex, store: ShareStore, opts: ServeOptions): Promise<void> {
  const log = opts.log ?? silentLogger;
  const decoder = new FrameDecoder(opts.maxFrameBytes ?? MAX_FRAME_BYTES, opts.frameBudget ?? nodeFrameBudget);
  const maxInflight = Math.max(1, opts.maxInflight ?? 8);
  const inflight = new Set<Promise<void>>();
  // SPEC.md §9.6.1: an idle stream (nothing arriving, nothing being worked on, no answer taken by
  // the requester) is closed. `working` counts requests the node is still handling; an answer
  // that only waits for the requester to read it is not work: a requester that sends requests
  // and never reads would otherwise hold their answers (up to maxInflight frames) for ever.
  const idleMs = opts.idleMs ?? STORAGE_STREAM_IDLE_MS;
  let working = 0;
  let idle: NodeJS.Timeout | null = null;
  let served = false;
  // A stream that reports the bytes it has sent (a circuit stream: DATA cells) shows progress
  // inside one large answer too, whose write completes only with its last cell: a 16 MiB answer
  // read slowly but steadily is not idle.
  const sentBytes = (): number | undefined => {
    const v = (stream as Duplex & { sentBytes?: unknown }).sentBytes;
    return typeof v === 'number' ? v : undefined;
  };
  let sentAtArm = sentBytes();
  const touch = (): void => {
    if (served) return;
    if (idle) clearTimeout(idle);
    sentAtArm = sentBytes();
    idle = setTimeout(() => {
      if (working > 0 || sentBytes() !== sentAtArm) { touch(); return; }
      store.metrics.errors.inc({ code: 'STORAGE_IDLE_TIMEOUT' });
      log.debug({ idleMs }, 'storage stream idle; closing');
      stream.destroy();
    }, idleMs);
    idle.unref?.();
  };
  const taken = (e?: Error | null): void => { if (!e) touch(); };
  const lingered = (): void => {
    store.metrics.errors.inc({ code: 'STORAGE_IDLE_TIMEOUT' });
    log.debug({ idleMs }, 'storage stream not flushed after serving ended; closing');
  };
  touch();
  // SPEC.md §9.6.1: the deadline of the request frame being received, armed at its first byte. Its
  // bytes hold the node's frame budget, and each one resets the idle timer: without it, a byte now
  // and then would hold up to MAX_FRAME_BYTES of the budget for as long as the peer liked. It runs
  // only while the node reads the stream: stopped while the node, at its own in-flight bound, reads
  // no further, then restarted with the time that was left (`left`).
  let deadline: NodeJS.Timeout | null = null;
  const ms = opts.requestDeadlineMs ?? STORAGE_REQUEST_DEADLINE_MS;
  let left = ms;
  let armedAt = 0;
  let paused = false;
  const clearDeadline = (): void => { if (deadline) { clearTimeout(deadline); deadline = null; } };
  const armDeadline = (): void => {
    armedAt = performance.now();
    deadline = setTimeout(() => {
      opts.onRequestDeadline?.();
      log.debug({ ms }, 'storage request not received in full in time; closing');
      stream.destroy();
    }, left);
    deadline.unref?.();
  };
  const watchRequest = (completed: number): void => {
    if (decoder.buffered === 0 || completed > 0) { clearDeadline(); left = ms; }
    if (decoder.buffered === 0 || deadline) return;
    armDeadline();
  };
  const pauseDeadline = (): void => {
    if (!deadline) return;
    clearDeadline();
    left = Math.max(0, left - (performance.now() - armedAt));
    paused = true;
  };
  const resumeDeadline = (): void => {
    if (!paused) return;
    paused = false;
    if (decoder.buffered > 0 && !deadline) armDeadline();
  };
  // Header and body leave in one write (one buffer; a get's data copied into it once), so
  // concurrent answers never interleave and no DATA cell carries a header alone. Answers that
  // find the buffer full share one wait for 'drain' (one set of listeners, however many wait).
  let draining: Promise<void> | null = null;
  // SPEC.md §9.6.1: every answer frame holds the node's answer budget from its write until the
  // requester takes it (its write callback) or the stream closes, whichever comes first.
  const answerBudget = opts.answerBudget ?? nodeAnswerBudget;
  const heldAnswers = new Set<() => void>();
  const giveBackAnswers = (): void => { for (const give of [...heldAnswers]) give(); };
  stream.once('close', giveBackAnswers);
  const send = async (reqId: number, res: StorageResponse): Promise<void> => {
    // A requester that ended or destroyed its stream takes no answer: a write would return false
    // and the 'drain' or 'close' it waits for may already have happened (the serve would never
    // settle, and its partial frame's bytes never go back to the node's budget, SPEC.md §9.6.1).
    if (gone(stream)) return;
    let frame = encodeResponseFrame(reqId, res);
    let give: (() => void) | null = null;
    // Error answers are small (a code and at most 1024 characters) and always go out, as do other
    // small answers (UNCOUNTED_ANSWER_BYTES): only large ones (get data, long id lists) are held back.
    if (res.type !== 'error' && frame.length > UNCOUNTED_ANSWER_BYTES) {
      const n = frame.length;
      if (answerBudget.take(n)) {
        const g = (): void => { if (heldAnswers.delete(g)) answerBudget.give(n); };
        heldAnswers.add(g);
        give = g;
      } else {
        // Past the budget the answer is not sent: the request fails alone, the stream goes on.
        store.metrics.errors.inc({ code: 'STORAGE_BUSY' });
        frame = encodeResponseFrame(reqId, errorResponse(err('STORAGE_BUSY', 'this node holds too many answers its requesters have not taken; try again later', { budget: answerBudget.maxBytes })));
      }
    }
    // The requester taking an answer is progress (each one, not only the last of those queued);
    // until it takes one, the stream may idle out.
    if (!stream.write(frame, (e?: Error | null) => { give?.(); taken(e); })) {
      draining ??= waitDrain(stream).finally(() => { draining = null; });
      await draining;
    }
  };
  // Wakes the wait at the in-flight bound when a request's handling ends (its answer may still wait).
  let handled: (() => void) | null = null;
  const handle = (reqId: number, req: StorageRequest): void => {
    working++;
    const p: Promise<void> = handleRequest(store, req, opts.ctx, opts.policyCheck ?? allowAll, opts.names)
      .finally(() => { working--; handled?.(); })
      .then((res) => send(reqId, res))
      .catch((e) => { log.debug({ code: errorCode(e) }, 'storage answer not sent'); })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  try {
    // destroyOnReturn: false — leaving the loop early must not destroy the stream before the
    // last response (the framing error below) has been flushed.
    for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
      touch();
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk as Buffer);
        watchRequest(frames.length);
      } catch (e) {
        clearDeadline();
        store.metrics.errors.inc({ code: errorCode(e) });
        log.debug({ code: errorCode(e) }, 'storage stream framing error; closing');
        await Promise.all(inflight);
        await send(0, errorResponse(e));
        // End (the peer reads the error, then EOF), then release the stream once flushed.
        endOwnSide(stream, idleMs, lingered, true);
        return;
      }
      for (const f of frames) {
        let decoded;
        try {
          decoded = decodeRequest(f);
        } catch (e) {
          store.metrics.errors.inc({ code: errorCode(e) });
          const reqId = isBitcloudError(e) && typeof e.detail?.reqId === 'number' ? e.detail.reqId : 0;
          await send(reqId, errorResponse(e));
          continue;
        }
        handle(decoded.reqId, decoded.req);
        if (inflight.size >= maxInflight) {
          // The node's own bound: it reads no further, and the request deadline waits with it while
          // a request is being handled. An answer waiting only for the requester to take it is not
          // the node's slowness: once none is being handled, the deadline runs on, so a requester
          // that reads its answers slowly on purpose cannot hold a partial frame's bytes for ever.
          while (inflight.size >= maxInflight) {
            if (working > 0) pauseDeadline(); else resumeDeadline();
            const waits: Promise<void>[] = [...inflight];
            if (working > 0) waits.push(new Promise<void>((r) => { handled = r; }));
            await Promise.race(waits);
            handled = null;
          }
          resumeDeadline();
        }
      }
    }
    await Promise.all(inflight);
    endOwnSide(stream, idleMs, lingered, false);
  } catch (e) {
    // The peer went away or the transport failed: nothing to answer.
    log.debug({ code: errorCode(e) }, 'storage stream ended with an error');
    stream.destroy();
  } finally {
    served = true;
    if (idle) clearTimeout(idle);
    clearDeadline();
    decoder.close();
  }
}

/**
 * SPEC.md §9.6.1: serving has ended (the requester ended its side, or a framing error was answered):
 * end the node's side, and destroy the stream if it has not finished flushing within `ms` (the idle
 * timeout), so a peer that stops reading cannot keep the stream and its unsent bytes for ever.
 * `thenDestroy`: release the stream once flushed too.
 */
function endOwnSide(stream: Duplex, ms: number, lingered: () => void, thenDestroy: boolean): void {
  if (stream.destroyed) return;
  const timer = setTimeout(() => {
    if (stream.destroyed || stream.writableFinished) return;
    lingered();
    stream.destroy();
  }, ms);
  timer.unref?.();
  const done = (): void => clearTimeout(timer);
  stream.once('close', done);
  stream.end(() => {
    done();
    if (thenDestroy) stream.destroy();
  });
}

/** The stream can take no more writes: destroyed, closed or ended (no 'drain' will come). */
function gone(stream: Duplex): boolean {
  return stream.destroyed || stream.closed || stream.writableEnded;
}

function waitDrain(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    // A 'close' that already happened is not emitted again.
    if (gone(stream)) { reject(new Error('stream closed')); return; }
    const done = (e?: Error) => {
      stream.off('drain', ok);
      stream.off('close', closed);
      stream.off('error', done);
      if (e) reject(e); else resolve();
    };
    const ok = () => done();
    const closed = () => done(new Error('stream closed'));
    stream.on('drain', ok);
    stream.on('close', closed);
    stream.on('error', done);
  });
}
