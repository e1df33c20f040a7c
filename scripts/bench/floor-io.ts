// Reads, writes and CPU loops of the floor bench (floor.ts, floor-node.ts), apart from the chain's
// processes so they can be tested. Each does what the project's own sockets do (src/link/reader.ts,
// src/link/channel.ts) and no more, so the floor stays a lower bound (docs/cpu.md, "The floor").

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
