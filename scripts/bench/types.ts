// One row of `npm run bench` output. Every figure stands beside a baseline measured in the same run.
export interface BenchRow {
  group: string;          // e.g. "crypto", "link", "directory", "circuit"
  name: string;           // what was measured, e.g. "ntor handshakes (client+server)"
  value: number;
  unit: string;           // e.g. "ops/s", "MB/s", "ms", "cells/s", "CPU-s/GiB", "MiB"
  baseline?: { name: string; value: number; unit: string };
  note?: string;
}

export interface BenchModule {
  /** Short name used by `npm run bench -- --only NAME`. */
  name: string;
  /** Rows, or rows plus top-level fields for the JSON output (e.g. circuit's `compare`). */
  run(opts: BenchRunOptions): Promise<BenchRow[] | BenchResult>;
}

export interface BenchResult {
  rows: BenchRow[];
  json?: Record<string, unknown>;
}

/** circuit's `--compare-tor [best]`: C tor with its fastest settings, or its defaults. */
export type TorMode = 'best' | 'default';

/** What scripts/bench.ts hands every module (parsed once, scripts/bench/options.ts). */
export interface BenchRunOptions {
  quick: boolean;
  /** circuit: `--compare-tor [best]` (null or absent: no comparison). */
  compareTor?: TorMode | null;
  /** hostile: `--steps A,B`, the steps to run (null or absent: all). */
  steps?: string[] | null;
}
