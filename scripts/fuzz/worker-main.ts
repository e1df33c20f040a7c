// One fuzz worker: runs the targets the runner asks for, one at a time, and reports progress and
// findings. Before each input it publishes the input and a sequence number in shared memory so
// the runner's watchdog can tell a hang (the same input running for more than the limit) and
// name the input even after it has to terminate this thread.
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { prepareTargets, targetByName, cleanupTargets } from './targets';
import { inputArbitrary, runOne, dropSink, osResources, resourceGrowthFinding, type Finding } from './engine';

export interface RunRequest { target: string; inputs: number; seconds: number; seed: number }
export type WorkerMessage =
  | { type: 'finding'; target: string; finding: Finding }
  | { type: 'progress'; target: string; inputs: number }
  | { type: 'done'; target: string; inputs: number; failures: number; seconds: number; leak: string | null };

const { sab, maxInput } = workerData as { sab: SharedArrayBuffer; maxInput: number };
const ctrl = new Int32Array(sab, 0, 4); // [0] inputs started, [1] busy, [2] input length, [3] failures
const data = new Uint8Array(sab, 16, maxInput);
const port = parentPort!;
const BATCH = 500;

async function run(req: RunRequest): Promise<void> {
  const t = targetByName(req.target);
  if (!t) throw new Error(`no fuzz target ${req.target}`);
  await prepareTargets();
  const seeds = t.seeds();
  const maxLen = Math.min(t.maxLen ?? 4096, maxInput);
  const arb = inputArbitrary(seeds, maxLen);
  const resources0 = osResources();
  const start = performance.now();
  const stopAt = req.seconds > 0 ? start + req.seconds * 1000 : Infinity;
  let n = 0, failures = 0, lastProgress = start;
  const shortest = new Map<string, number>();
  const one = async (input: Buffer): Promise<void> => {
    const len = Math.min(input.length, maxInput);
    data.set(input.subarray(0, len));
    Atomics.store(ctrl, 2, len);
    Atomics.store(ctrl, 1, 1);
    Atomics.add(ctrl, 0, 1);
    const f = await runOne(t, input);
    Atomics.store(ctrl, 1, 0);
    n++;
    if (f) {
      failures++;
      Atomics.add(ctrl, 3, 1);
      // Report each kind of failure once per run, with the shortest input seen so far for it.
      const best = shortest.get(f.signature);
      if (best === undefined || f.input.length < best) { shortest.set(f.signature, f.input.length); port.postMessage({ type: 'finding', target: t.name, finding: { ...f, input: Buffer.from(f.input) } } satisfies WorkerMessage); }
    }
  };
  // The seeds themselves first: a valid encoding must never be a finding.
  for (const s of seeds) { if (n >= req.inputs) break; await one(s); }
  let batch = 0;
  while (n < req.inputs && performance.now() < stopAt) {
    const inputs = fc.sample(arb, { numRuns: Math.min(BATCH, req.inputs - n), seed: (req.seed + batch++ * 7919) | 0 });
    for (const input of inputs) await one(input);
    dropSink();
    const now = performance.now();
    if (now - lastProgress > 2000) { lastProgress = now; port.postMessage({ type: 'progress', target: t.name, inputs: n } satisfies WorkerMessage); }
  }
  // Measured before this run yields to the event loop (see engine.ts, the resource bound).
  const leak = resourceGrowthFinding(resources0, osResources(), n);
  port.postMessage({ type: 'done', target: t.name, inputs: n, failures, seconds: (performance.now() - start) / 1000, leak } satisfies WorkerMessage);
}

port.on('message', (m: RunRequest | { cmd: 'exit' }) => {
  if ('cmd' in m) { cleanupTargets(); port.close(); return; }
  run(m).catch((e) => { port.postMessage({ type: 'fatal', error: (e as Error).stack ?? String(e) }); });
});
port.postMessage({ type: 'ready' });
