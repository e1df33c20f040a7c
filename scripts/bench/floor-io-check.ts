// `node bin/run-ts.js scripts/bench/floor-io-check.ts`: exercises the floor bench's reads, writes
// and CPU loops (floor-io.ts) and prints what it saw as JSON, for test/unit/bench-floor-io.test.ts
// (tests start scripts as processes). The floor must stay a lower bound (docs/cpu.md, "The floor").
import { cpuOf, leastOf } from './floor-io';

/** cpuOf and leastOf with a fake clock: calls made and the figure kept. */
async function loops(): Promise<Record<string, number>> {
  let calls = 0, k = 0;
  const ticks = [0, 5, 10, 12, 20, 27]; // repetitions cost 5, 2, 7
  const least = cpuOf(() => { calls++; }, 100, 3, () => ticks[k++]);
  const costs = [9, 4, 1, 3];
  let runs = 0;
  const leastRun = await leastOf(3, async () => costs[runs++]);
  return { calls, least, leastRun, runs };
}

process.stdout.write(`${JSON.stringify({ loops: await loops() })}\n`);
