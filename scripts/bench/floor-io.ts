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
