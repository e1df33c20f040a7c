// Bounded reader and writer for message bodies (SPEC.md §2.7) and every other fixed byte layout
// (receipts §8.2, reward blocks §8.7, key files §3.2, the lease journal §9.8.2). Every read checks
// what is left before touching the buffer, so a short or hostile body raises MSG_TRUNCATED (or the
// layer's own code), never a RangeError. Cold path: these allocate freely.
import { err, type ErrorCode as Code } from '../errors';

/**
 * The codes a layout's errors carry. Messages default to MSG_TRUNCATED / MSG_MALFORMED; a layer
 * whose SPEC section names its own code (RECEIPT_MALFORMED, REWARD_MALFORMED, KEY_CORRUPT) passes it.
 */
export interface CodecCodes {
  /** Fewer bytes left than a field needs (Reader); default MSG_TRUNCATED. */
  truncated?: Code;
  /** A value out of range: u64 above 2^53 − 1 read as a number, a value that does not fit its field (Writer), trailing bytes; default MSG_MALFORMED. */
  malformed?: Code;
  /** Extra detail merged into every error (e.g. `{ file }`). */
  detail?: Record<string, unknown>;
}

/** SPEC.md §0: a u64 read as a JS number must not exceed 2^53 − 1. */
export const MAX_SAFE_U64 = Number.MAX_SAFE_INTEGER;
/** The high u32 of 2^53 − 1. */
const MAX_SAFE_U64_HI = 0x1f_ffff;
const U64_MAX_BIG = (1n << 64n) - 1n;

export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

export class Reader {
  private pos = 0;
  private readonly buf: Buffer;
  private readonly truncatedCode: Code;
  private readonly malformedCode: Code;
  private readonly extra: Record<string, unknown> | undefined;
  /** `what` names the message in error texts and details (e.g. 'EXTEND2'). */
  constructor(bytes: Uint8Array, private readonly what: string, codes: CodecCodes = {}) {
    this.buf = asBuffer(bytes);
    this.truncatedCode = codes.truncated ?? 'MSG_TRUNCATED';
    this.malformedCode = codes.malformed ?? 'MSG_MALFORMED';
    this.extra = codes.detail;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  /** Bytes read so far (the offset of the next field). */
  get offset(): number {
    return this.pos;
  }
  private need(n: number, field: string): void {
    if (this.remaining < n) {
      throw err(this.truncatedCode, `${this.what}: ${field} needs ${n} bytes, ${this.remaining} left`, { message: this.what, field, ...this.extra });
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
  /** A u64 as a number: refuses a value above 2^53 − 1 (SPEC.md §0) with the malformed code. */
  u64(field: string): number {
    this.need(8, field);
    // Two u32 halves, no bigint: receipts are decoded by the hundred thousand.
    const hi = this.buf.readUInt32BE(this.pos);
    if (hi > MAX_SAFE_U64_HI) {
      throw err(this.malformedCode, `${this.what}: ${field} exceeds 2^53-1`, { message: this.what, field, ...this.extra });
    }
    const v = hi * 0x1_0000_0000 + this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return v;
  }
  /** A u64 as a bigint (the whole range). */
  u64big(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  /** A copy: decoded messages never alias the cell buffer, which the link reuses. */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const v = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return v;
  }
  /** `n` bytes as lowercase hex (fingerprints), without copying them first. */
  hex(n: number, field: string): string {
    this.need(n, field);
    const v = this.buf.toString('hex', this.pos, this.pos + n);
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
      if (this.buf[i] !== 0) throw err(this.malformedCode, `${this.what}: padding after the body is not zero`, { message: this.what, ...this.extra });
    }
    this.pos = this.buf.length;
  }
  /** Relay message bodies are exactly `length` bytes: anything left over is malformed. */
  end(): void {
    if (this.remaining !== 0) {
      throw err(this.malformedCode, `${this.what}: ${this.remaining} unexpected trailing bytes`, { message: this.what, ...this.extra });
    }
  }
}

export class Writer {
  private pos = 0;
  private readonly buf: Buffer;
  private readonly malformedCode: Code;
  private readonly extra: Record<string, unknown> | undefined;
  /** `max` is the room the body has (509 in a cell, 498 in a relay cell; a fixed layout's length). */
  constructor(private readonly max: number, private readonly what: string, codes: CodecCodes = {}) {
    this.buf = Buffer.alloc(max);
    this.malformedCode = codes.malformed ?? 'MSG_MALFORMED';
    this.extra = codes.detail;
  }
  /** Bytes written so far (the offset of the next field). */
  get offset(): number {
    return this.pos;
  }
  private room(n: number): void {
    if (this.max - this.pos < n) {
      throw err(this.malformedCode, `${this.what}: body does not fit in ${this.max} bytes`, { message: this.what, ...this.extra });
    }
  }
  private check(v: unknown, max: number, field: string): asserts v is number {
    checkUint(v, max, this.what, field, this.malformedCode, this.extra);
  }
  u8(v: number, field: string): this {
    this.check(v, 0xff, field);
    this.room(1);
    this.buf[this.pos++] = v;
    return this;
  }
  u16(v: number, field: string): this {
    this.check(v, 0xffff, field);
    this.room(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }
  u32(v: number, field: string): this {
    this.check(v, 0xffff_ffff, field);
    this.room(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }
  /** A u64 from a number: an integer in 0..2^53 − 1 (SPEC.md §0), else the malformed code. */
  u64(v: number, field: string): this {
    this.check(v, MAX_SAFE_U64, field);
    this.room(8);
    this.buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), this.pos);
    this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }
  /** A u64 from a bigint: 0..2^64 − 1, else the malformed code. */
  u64big(v: bigint, field: string): this {
    if (typeof v !== 'bigint' || v < 0n || v > U64_MAX_BIG) {
      throw err(this.malformedCode, `${this.what}: ${field} must be a u64, got ${String(v)}`, { message: this.what, field, ...this.extra });
    }
    this.room(8);
    this.buf.writeBigUInt64BE(v, this.pos);
    this.pos += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }
  /** `n` bytes given as 2n hex digits (fingerprints); the caller has checked the string. */
  hex(s: string, n: number, field: string): this {
    if (s.length !== 2 * n) {
      throw err(this.malformedCode, `${this.what}: ${field} must be ${2 * n} hex digits`, { message: this.what, field, ...this.extra });
    }
    this.room(n);
    if (this.buf.write(s, this.pos, 'hex') !== n) {
      throw err(this.malformedCode, `${this.what}: ${field} is not hex`, { message: this.what, field, ...this.extra });
    }
    this.pos += n;
    return this;
  }
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export function checkUint(
  v: unknown, max: number, what: string, field: string, code: Code = 'MSG_MALFORMED', detail?: Record<string, unknown>,
): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw err(code, `${what}: ${field} must be an integer in 0..${max}, got ${String(v)}`, { message: what, field, ...detail });
  }
}
