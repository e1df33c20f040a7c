// The floor bench's reads, writes and CPU loops (scripts/bench/floor-io.ts, through
// floor-io-check.ts): the floor must be a lower bound of what a Node implementation pays
// (docs/cpu.md, "The floor"), so its plain TCP reads reuse one buffer, a relay's reads of one turn
// leave in one buffer filled in place (no join), and each primitive's loop is warmed up and
// reported as the least of its repetitions.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

interface Seen {
  reads: { buffers: number; got: number; sum: number; dataListeners: number };
  turn: { sameBuffer: boolean; secondAt: number; beforeTurn: number; firstTurn: number[][]; overflowBeforeTurn: number; lengths: number[] };
  loops: { calls: number; least: number; leastRun: number; runs: number };
}

describe('floor bench I/O', () => {
  let seen: Seen;
  beforeAll(async () => {
    seen = await new Promise<Seen>((resolve, reject) => {
      execFile(process.execPath, ['bin/run-ts.js', 'scripts/bench/floor-io-check.ts'], { cwd: root, timeout: 60_000 }, (e, stdout, stderr) => {
        if (e) reject(new Error(`${e.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Seen);
      });
    });
  }, 70_000);

  it('plainConnect reads every chunk into the same reused buffer, with no data events', () => {
    expect(seen.reads).toEqual({ buffers: 1, got: 512 * 1024, sum: 512 * 1024, dataListeners: 0 });
  });

  it('TurnWriter sends the reservations of one turn as one write of one buffer, filled in place', () => {
    const t = seen.turn;
    expect(t.sameBuffer).toBe(true);
    expect(t.secondAt).toBe(10);
    expect(t.beforeTurn).toBe(0);
    expect(t.firstTurn).toEqual([[...Array(10).fill(1), ...Array(20).fill(2)]]);
    // A reservation that does not fit sends what is there first.
    expect(t.overflowBeforeTurn).toBe(1);
    expect(t.lengths).toEqual([30, 40, 40]);
  });

  it('cpuOf warms up with a fifth of the calls and keeps the least of 3 repetitions; leastOf likewise', () => {
    expect(seen.loops).toEqual({ calls: 20 + 3 * 100, least: 2, leastRun: 1, runs: 4 });
  });
});
