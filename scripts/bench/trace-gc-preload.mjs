// Preloaded with NODE_OPTIONS="--import …/trace-gc-preload.mjs" (Node 20 refuses V8 flags in
// NODE_OPTIONS): turns V8's --trace-gc on at start, so every collection of the process is one line
// on its stdout (a daemon's log file on the local network), and applies the V8 flags in
// BITCLOUD_GC_TRACE_FLAGS (space-separated) the same way. Used by gc-trace.ts.
import v8 from 'node:v8';

v8.setFlagsFromString('--trace-gc');
for (const flag of (process.env.BITCLOUD_GC_TRACE_FLAGS ?? '').split(/\s+/).filter(Boolean)) v8.setFlagsFromString(flag);
