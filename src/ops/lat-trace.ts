// Latency tracing for the bench (scripts/bench/latency.ts): with BITCLOUD_LAT_TRACE=FILE in the
// environment, every process appends one line per event of a request's path to FILE —
// `<monotonic ns> <pid> <event> <detail>` — so that the milliseconds of a circuit build or a first
// byte can be placed on one time line across the proxy and the relays (process.hrtime is the
// machine's monotonic clock, the same in every process). Off (one boolean test) otherwise; never
// carries an address or a path, only cell commands, circuit ids and sizes.
import fs from 'node:fs';

const file = process.env.BITCLOUD_LAT_TRACE;
let fd = -1;
if (file) { try { fd = fs.openSync(file, 'a'); } catch { fd = -1; } }

/** True when tracing is on (callers test it before building a detail string). */
export const LAT_TRACE = fd >= 0;

export function latTrace(event: string, detail: string | number = ''): void {
  if (fd < 0) return;
  try { fs.writeSync(fd, `${process.hrtime.bigint()} ${process.pid} ${event} ${detail}\n`); } catch { /* tracing only */ }
}
