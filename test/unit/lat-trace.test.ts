// src/ops/lat-trace.ts: the bench's latency trace (scripts/bench/latency.ts --trace) is off unless
// BITCLOUD_LAT_TRACE names a file, and then appends one line per event: monotonic ns, pid, event, detail.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => { vi.unstubAllEnvs(); vi.resetModules(); });

describe('latency trace', () => {
  it('is off without BITCLOUD_LAT_TRACE', async () => {
    vi.stubEnv('BITCLOUD_LAT_TRACE', '');
    vi.resetModules();
    const t = await import('../../src/ops/lat-trace');
    expect(t.LAT_TRACE).toBe(false);
    t.latTrace('nothing', 1); // a no-op
  });

  it('appends one line per event, in order, with a monotonic clock and the pid', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-lat-trace-'));
    const file = path.join(dir, 'trace');
    try {
      vi.stubEnv('BITCLOUD_LAT_TRACE', file);
      vi.resetModules();
      const t = await import('../../src/ops/lat-trace');
      expect(t.LAT_TRACE).toBe(true);
      t.latTrace('socks.accept');
      t.latTrace('link.rx', '7:3');
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '));
      expect(lines.map((l) => l.slice(1))).toEqual([[String(process.pid), 'socks.accept', ''], [String(process.pid), 'link.rx', '7:3']]);
      expect(BigInt(lines[1][0]) >= BigInt(lines[0][0])).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
