// SPEC.md §9.6.1: storage protocol framing. Each message is u32 BE length | protobuf bytes, with
// 1 ≤ length ≤ the maximum frame size. A stream never assumes that a read ends on a frame boundary.
import { err } from '../errors';
import { MAX_SHARE_BYTES } from './share';

export const FRAME_HEADER_BYTES = 4;
/** A whole maximal share plus room for the other fields of a PUT_SHARE or GET_SHARE reply. */
export const MAX_FRAME_BYTES = MAX_SHARE_BYTES + 4096;

/** The 4-byte length prefix for a body of `len` bytes (write it and the body with writev: no copy). */
export function frameHeader(len: number, max = MAX_FRAME_BYTES): Buffer {
  if (!Number.isInteger(len) || len < 1 || len > max) throw err('STORAGE_FRAME_TOO_LARGE', `frame body must be 1..${max} bytes`, { len });
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32BE(len, 0);
  return h;
}

/** Header and body in one buffer (one copy; fine for small messages). */
export function encodeFrame(body: Uint8Array, max = MAX_FRAME_BYTES): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frameHeader(body.length, max).copy(out, 0);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

/**
 * SPEC.md §9.6.1: bytes of partly received frames one node holds over all its streams. A frame's
 * memory is taken from it as its bytes arrive (never its declared length up front) and given
 * back when the frame is complete or its stream ends; past the budget the stream fails with
 * STORAGE_BUSY.
 */
export class FrameBudget {
  private usedBytes = 0;
  constructor(readonly maxBytes: number) {}
  get used(): number { return this.usedBytes; }
  take(n: number): boolean {
    if (this.usedBytes + n > this.maxBytes) return false;
    this.usedBytes += n;
    return true;
  }
  give(n: number): void { this.usedBytes = Math.max(0, this.usedBytes - n); }
}

/** First allocation for a frame body; it grows by doubling as bytes arrive (linear overall). */
const FIRST_BODY_ALLOC = 64 * 1024;

/**
 * Streaming frame decoder: feed it whatever the transport delivers; it returns the complete frame
 * bodies. Each body is copied once into its own buffer (never a view of a transport buffer), and
 * accumulating a large frame is linear in its size. A length of 0 → STORAGE_FRAME_MALFORMED, above
 * the maximum → STORAGE_FRAME_TOO_LARGE; after either the stream cannot be resynchronised and every
 * later push throws the same error. Nothing else is ever thrown.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;
  private failed: Error | null = null;
  /** Declared length of the frame being read (its body buffer may still be smaller). */
  private want = 0;
  /** Bytes taken from the budget for the frame being read. */
  private held = 0;

  /**
   * `wholeUpTo`: a frame declaring at most this many bytes gets its buffer at its declared length
   * at once (one allocation, no copy as it grows). Only for a requester, whose peer is the node it
   * chose and sends one frame at a time per stream; a node keeps the default 0 and never allocates
   * before the bytes arrive (SPEC.md §9.6.1).
   */
  /**
   * `limit`: the largest frame its owner can use at the moment a frame's length arrives (below
   * `maxFrame`); a longer one is STORAGE_FRAME_TOO_LARGE like one above the maximum. Only for a
   * requester, which knows what it asked for (SPEC.md §9.6.1).
   */
  constructor(private readonly maxFrame = MAX_FRAME_BYTES, private readonly budget?: FrameBudget, private readonly wholeUpTo = 0,
    private readonly limit?: () => number) {}

  /** The stream ended: give back what the unfinished frame held. */
  close(): void {
    this.budget?.give(this.held);
    this.held = 0;
    this.body = null;
  }

  /** Bytes received that are not yet part of a returned frame. */
  get buffered(): number {
    return this.headerFill + this.bodyFill;
  }

  push(chunk: Uint8Array): Buffer[] {
    if (this.failed) throw this.failed;
    const frames: Buffer[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.body === null) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - off);
        this.header.set(chunk.subarray(off, off + take), this.headerFill);
        this.headerFill += take;
        off += take;
        if (this.headerFill < FRAME_HEADER_BYTES) break;
        const len = this.header.readUInt32BE(0);
        if (len === 0) throw this.fail(err('STORAGE_FRAME_MALFORMED', 'zero-length frame'));
        const max = this.limit ? Math.min(this.maxFrame, this.limit()) : this.maxFrame;
        if (len > max) throw this.fail(err('STORAGE_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds ${max}`, { len, max }));
        // Nothing is allocated for bytes that have not arrived (a peer could declare 16 MiB
        // frames on many streams and send nothing), unless the owner allows it (wholeUpTo).
        this.want = len;
        this.body = Buffer.allocUnsafe(len <= this.wholeUpTo ? len : Math.min(len, FIRST_BODY_ALLOC));
        this.bodyFill = 0;
      }
      const take = Math.min(this.want - this.bodyFill, chunk.length - off);
      if (this.budget) {
        if (!this.budget.take(take)) throw this.fail(err('STORAGE_BUSY', 'this node holds too many partly received frames; try again later', { budget: this.budget.maxBytes }));
        this.held += take;
      }
      if (this.bodyFill + take > this.body.length) {
        // Doubling, but straight to the declared length once that is at most twice what has
        // arrived (a 256 KiB share: 64 KiB, 128 KiB, then its size; never 256 KiB on the way).
        const need = this.bodyFill + take;
        const grown = Buffer.allocUnsafe(this.want <= 2 * need ? this.want : Math.min(this.want, Math.max(this.body.length * 2, need)));
        this.body.copy(grown, 0, 0, this.bodyFill);
        this.body = grown;
      }
      this.body.set(chunk.subarray(off, off + take), this.bodyFill);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === this.want) {
        frames.push(this.body);
        this.budget?.give(this.held);
        this.held = 0;
        this.body = null;
        this.bodyFill = 0;
        this.headerFill = 0;
      }
    }
    return frames;
  }

  private fail(e: Error): Error {
    this.failed = e;
    this.close();
    return e;
  }
}
