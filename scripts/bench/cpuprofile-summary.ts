// Self time per function from the .cpuprofile files of a folder (V8's --cpu-prof format), one block
// per busy process: the bench profilers (profile-circuit.ts, profile-storage.ts, latency.ts) share it.
import fs from 'node:fs';
import path from 'node:path';

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

export interface SummaryOptions {
  /** A process's label from its profile file name (and the pid at the file name's start). */
  label: (file: string, pid: number) => string;
  /** Processes busy for less than this many seconds are left out. */
  minBusySeconds: number;
  /** Functions listed per process. */
  top: number;
}

/** Prints, for each profile in `dir`, its busy seconds and the `top` functions by self time. */
export function summarizeProfiles(dir: string, o: SummaryOptions): void {
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const pid = Number(f.replace(/^[a-z]+-/, '').split('.')[0]);
    const p = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    p.samples.forEach((id, i) => {
      const n = byId.get(id)!;
      const key = `${n.callFrame.functionName || '(anon)'} ${path.basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
      self.set(key, (self.get(key) ?? 0) + (p.timeDeltas[i] ?? 0));
    });
    const busyList = [...self].filter(([k]) => !k.startsWith('(idle)'));
    const busy = busyList.reduce((a, [, v]) => a + v, 0);
    if (busy < o.minBusySeconds * 1e6) continue;
    process.stdout.write(`\n== ${o.label(f, pid)} (${f}): busy ${(busy / 1e6).toFixed(2)} s\n`);
    for (const [k, v] of busyList.sort((a, b) => b[1] - a[1]).slice(0, o.top)) {
      process.stdout.write(`  ${(100 * v / busy).toFixed(1).padStart(5)}%  ${k}\n`);
    }
  }
}
