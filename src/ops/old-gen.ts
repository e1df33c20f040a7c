// Old-generation headroom for relays, storage nodes and the client (SPEC.md §11.6, informative).
//
// V8 sizes the old generation's next collection limit from the live heap times a growing factor
// it picks from how fast collections run against how fast the program allocates: between 1.1 and 4.
// A process that moves cells holds a small live heap (10–20 MB: the bytes are off-heap) that a
// full collection marks in a few milliseconds, so V8 picks a factor near 1.1 and leaves a few
// megabytes of room. It also starts incremental marking as soon as that room is smaller than the
// young generation (up to 16 MiB), so a process whose young generation has grown runs a full
// collection every few megabytes promoted: measured on a storage client, 20–30 full collections
// per 64 MiB moved, each 10–40 ms (freeing the native objects and off-heap buffers of the cells is
// what V8's estimate leaves out). A fixed factor of 4, the top of V8's own range, leaves room for
// several young generations and removes nearly all of them. An operator's own choice (a growing or
// initial old-space flag on the node command line or in NODE_OPTIONS) always wins.
import v8 from 'node:v8';

/** Old-generation limit = live heap × (1 + this / 100) after each full collection. */
export const OLD_GEN_GROWING_PERCENT = 300;
const FLAG = `--heap-growing-percent=${OLD_GEN_GROWING_PERCENT}`;

/** True when the operator already chose how this process's old generation grows. */
export function operatorSetOldGeneration(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /heap[-_]growing[-_]percent|initial[-_]old[-_]space|initial[-_]heap[-_]size|predictable[-_]gc/.test(a));
}

/**
 * Give the old generation room to grow (a fixed growing factor) unless the operator chose one.
 * V8 reads the factor at every full collection, so this works when called at start, before the
 * heavy work. Returns whether the flag was applied.
 */
export function keepOldGenerationHeadroom(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  if (operatorSetOldGeneration(execArgv, nodeOptions)) return false;
  v8.setFlagsFromString(FLAG);
  return true;
}
