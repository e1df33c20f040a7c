// Bounded reader and writer for message bodies (SPEC.md §2.7). Every read checks what is left
// before touching the buffer, so a short or hostile body raises MSG_TRUNCATED, never a
// RangeError. Cold path: message bodies other than DATA are rare, so these allocate freely.
import { err } from '../errors';

export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

export class Reader {
  private pos = 0;
  private readonly buf: Buffer;
  /** `what` names the message in error texts and details (e.g. 'EXTEND2'). */
  constructor(bytes: Uint8Array, private readonly what: string) {
    this.buf = asBuffer(bytes);
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  private need(n: number, field: string): void {
    if (this.remaining < n) {
      throw err('MSG_TRUNCATED', `${this.what}: ${field} needs ${n} bytes, ${this.remaining} left`, { message: this.what, field });
    }
  }
  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++];
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  /** A copy: decoded messages never alias the cell buffer, which the link reuses. */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const v = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return v;
  }
  /** A view, for bytes that are inspected and dropped at once. */
  view(n: number, field: string): Buffer {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  /** Cell bodies: what follows the body is padding and must be zero (SPEC.md §2.7). */
  zeroPadding(): void {
    for (let i = this.pos; i < this.buf.length; i++) {
      if (this.buf[i] !== 0) throw err('MSG_MALFORMED', `${this.what}: padding after the body is not zero`, { message: this.what });
    }
    this.pos = this.buf.length;
  }
  /** Relay message bodies are exactly `length` bytes: anything left over is malformed. */
  end(): void {
    if (this.remaining !== 0) {
      throw err('MSG_MALFORMED', `${this.what}: ${this.remaining} unexpected trailing bytes`, { message: this.what });
    }
  }
}

export class Writer {
  private pos = 0;
  private readonly buf: Buffer;
  /** `max` is the room the body has (509 in a cell, 498 in a relay cell). */
  constructor(private readonly max: number, private readonly what: string) {
    this.buf = Buffer.alloc(max);
  }
  private room(n: number): void {
    if (this.max - this.pos < n) {
      throw err('MSG_MALFORMED', `${this.what}: body does not fit in ${this.max} bytes`, { message: this.what });
    }
  }
  u8(v: number, field: string): this {
    checkUint(v, 0xff, this.what, field);
    this.room(1);
    this.buf[this.pos++] = v;
    return this;
  }
  u16(v: number, field: string): this {
    checkUint(v, 0xffff, this.what, field);
    this.room(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }
  u32(v: number, field: string): this {
    checkUint(v, 0xffff_ffff, this.what, field);
    this.room(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export function checkUint(v: unknown, max: number, what: string, field: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw err('MSG_MALFORMED', `${what}: ${field} must be an integer in 0..${max}, got ${String(v)}`, { message: what, field });
  }
}
