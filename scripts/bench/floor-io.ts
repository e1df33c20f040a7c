// Reads, writes and CPU loops of the floor bench (floor.ts, floor-node.ts), apart from the chain's
// processes so they can be tested. Each does what the project's own sockets do (src/link/reader.ts,
// src/link/channel.ts) and no more, so the floor stays a lower bound (docs/cpu.md, "The floor").
import net from 'node:net';

/**
 * A plain TCP connection whose reads land in one reused buffer of `size` bytes (`onread`, as a
 * link's opener reads), not in a fresh Buffer per `'data'` event; no Nagle, as the real sockets.
 * `onRead(buf, n)` must be done with buf[0, n) when it returns (copy out what it keeps).
 */
export function plainConnect(port: number, size: number, onRead: (buf: Buffer, n: number) => void): net.Socket {
  const buffer = Buffer.allocUnsafeSlow(size);
  return net.connect({ host: '127.0.0.1', port, noDelay: true, onread: { buffer, callback: (n: number) => { onRead(buffer, n); return true; } } });
}

/**
 * The cells of one event-loop turn leave in one write, as a link batches its cells: each read's
 * cells are written straight into the turn's buffer (`reserve`), which goes out at setImmediate
 * (or when the next reservation would not fit). No per-read buffer, no join.
 */
export class TurnWriter {
  private buf: Buffer | null = null;
  private len = 0;
  private scheduled = false;
  constructor(private readonly write: (b: Buffer) => void, private readonly cap = 256 * 1024) {}

  /** `bytes` of room at `at` in `buf`, for the caller to fill before it returns to the event loop. */
  reserve(bytes: number): { buf: Buffer; at: number } {
    if (this.buf && this.len + bytes > this.buf.length) this.flush();
    if (!this.buf) { this.buf = Buffer.allocUnsafe(Math.max(this.cap, bytes)); this.len = 0; }
    if (!this.scheduled) { this.scheduled = true; setImmediate(() => { this.scheduled = false; this.flush(); }); }
    const at = this.len;
    this.len += bytes;
    return { buf: this.buf, at };
  }

  flush(): void {
    const b = this.buf;
    this.buf = null;
    if (b && this.len > 0) this.write(b.subarray(0, this.len));
    this.len = 0;
  }
}

/** This process's CPU seconds so far. */
const cpuNow = (): number => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; };

/**
 * CPU seconds of `calls` calls of `op`: after a warm-up of a fifth of the calls, the least of `reps`
 * timed repetitions. The least, as a lower bound wants: load and late JIT only add time.
 */
export function cpuOf(op: () => void, calls: number, reps = 3, clock: () => number = cpuNow): number {
  for (let i = 0; i < Math.ceil(calls / 5); i++) op();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = clock();
    for (let i = 0; i < calls; i++) op();
    best = Math.min(best, clock() - t0);
  }
  return best;
}

/** The least of `reps` runs of `f`, after one run as warm-up. */
export async function leastOf(reps: number, f: () => Promise<number>): Promise<number> {
  await f();
  let best = Infinity;
  for (let r = 0; r < reps; r++) best = Math.min(best, await f());
  return best;
}
