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

  constructor(private readonly maxFrame = MAX_FRAME_BYTES) {}

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
        if (len > this.maxFrame) throw this.fail(err('STORAGE_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds ${this.maxFrame}`, { len, max: this.maxFrame }));
        this.body = Buffer.allocUnsafe(len);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - off);
      this.body.set(chunk.subarray(off, off + take), this.bodyFill);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === this.body.length) {
        frames.push(this.body);
        this.body = null;
        this.bodyFill = 0;
        this.headerFill = 0;
      }
    }
    return frames;
  }

  private fail(e: Error): Error {
    this.failed = e;
    return e;
  }
}
