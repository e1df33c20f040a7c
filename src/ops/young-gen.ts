// Young-generation sizing for the cell-forwarding daemons (SPEC.md §11.6, informative).
//
// A relay that forwards cells allocates a little per cell (a Buffer view, a small record) and
// keeps almost none of it. V8 starts the young generation at 1 MiB per semi-space and doubles it
// under allocation pressure up to 16 MiB; at that size every scavenge walks memory that no longer
// fits in the core's cache, and measured CPU per GiB forwarded went up. Keeping the young
// generation at its starting size makes scavenges more frequent but each one cheap and
// cache-resident. An operator's own choice (any semi-space flag on the command line or in
// NODE_OPTIONS) always wins.
import v8 from 'node:v8';

const FLAG = '--semi-space-growth-factor=1';

/** True when the operator already chose a young-generation size for this process. */
export function operatorSetYoungGeneration(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /semi[-_]space/.test(a));
}

/**
 * Keep the young generation at V8's starting size (no growth) unless the operator set a size.
 * Call before the daemon starts allocating. Returns whether the flag was applied.
 */
export function keepYoungGenerationSmall(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  if (operatorSetYoungGeneration(execArgv, nodeOptions)) return false;
  v8.setFlagsFromString(FLAG);
  return true;
}
