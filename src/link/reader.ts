// SPEC.md §1.6: reading a link the initiator opened into one buffer of its own, reused for every
// read. node:tls's `onread` option hands each TLS record's plaintext to a callback in that buffer
// instead of allocating a new off-heap Buffer per record and pushing it through the socket's
// Readable stream. The callback must be done with the bytes when it returns: the Channel parses
// cells by copying them out (CellAssembler) and copies what it has to keep (a paused link's
// unread bytes). Node offers `onread` only to a socket that tls.connect makes itself, so a
// responder's side (sockets a tls.Server accepts) reads with 'data' events as before.
import { err, type BitcloudError } from '../errors';

/** One TLS record's plaintext is at most 16 KiB; node:tls then calls back per record. */
export const LINK_READ_BUFFER_BYTES = 16 * 1024;

export type ReadSink = (chunk: Buffer, reused: boolean) => void;

/**
 * The `onread` option of one socket. Bytes that arrive before the Channel attaches (the peer's
 * first link cells can come with the end of the TLS handshake) are copied and held for it.
 */
export class LinkReader {
  private readonly buf = Buffer.allocUnsafeSlow(LINK_READ_BUFFER_BYTES);
  private sink: ReadSink | null = null;
  private fault: ((e: BitcloudError) => void) | null = null;
  private early: Buffer[] = [];
  private inCallback = false;

  /** For tls.connect({ onread }). */
  readonly onread = {
    buffer: this.buf,
    callback: (n: number, buf: Uint8Array): boolean => {
      // node:tls fills the buffer before calling back, so a read delivered while an earlier one is
      // still being handled would already have overwritten the bytes being parsed. Node never
      // does that (its own example reuses one buffer); the link fails loudly if it ever did.
      if (this.inCallback) {
        this.fault?.(err('LINK_INTERNAL', 'link read re-entered while the read buffer was in use'));
        return false;
      }
      const chunk = (buf as Buffer).subarray(0, n);
      if (this.sink === null) {
        this.early.push(Buffer.from(chunk));
        return true;
      }
      this.inCallback = true;
      try {
        this.sink(chunk, true);
      } finally {
        this.inCallback = false;
      }
      return true;
    },
  };

  /** Bytes held for the Channel because they came before it attached. */
  get earlyBytes(): number { return this.early.reduce((a, b) => a + b.length, 0); }

  /**
   * The Channel takes over: what came early first (as its own memory), then every read. The sink
   * never throws (the Channel turns its errors into closing the link); `fault` closes the link.
   */
  attach(sink: ReadSink, fault: (e: BitcloudError) => void): void {
    this.sink = sink;
    this.fault = fault;
    const early = this.early;
    this.early = [];
    for (const b of early) sink(b, false);
  }
}
