// `npm run fuzz -- --quick` as part of `npm test`: a short run of every fuzz target in its own
// process, which must end with no failures. The hang limit is raised for this smoke run (a loaded
// test machine must not turn a slow input into a failure); a real hang still stops it. The full
// run (`npm run fuzz`, 1,000,000 inputs per target, 1 s hang limit) is run by hand.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function runQuick(tmp: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['bin/run-ts.js', 'scripts/fuzz/run.ts', '--quick', '--no-save', '--hang-ms', '30000'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out }));
  });
}

describe('npm run fuzz -- --quick', () => {
  it('fuzzes every target, finds nothing, and leaves no temporary folder behind', async () => {
    // Its own TMPDIR, so that what the run left there can be seen apart from other tests' files.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-quick-'));
    const { code, out } = await runQuick(tmp);
    const left = fs.readdirSync(tmp).filter((f) => f.startsWith('bitcloud-'));
    fs.rmSync(tmp, { recursive: true, force: true });
    expect(left, 'temporary folders the run did not remove').toEqual([]);
    const lines = out.trim().split('\n');
    const last = lines[lines.length - 1];
    const m = /^fuzz: (\d+) targets, \d+ inputs, 0 failures$/.exec(last);
    expect(m, out).not.toBeNull();
    expect(code, out).toBe(0);
    // The table: one row per target (target | inputs | failures | seconds), each with some inputs.
    const rows = lines.filter((l) => /^\| [a-z0-9-]+ +\| +\d+ \|/.test(l));
    expect(rows.length, out).toBe(Number(m![1]));
    expect(rows.length).toBeGreaterThan(20);
    for (const row of rows) expect(Number(row.split('|')[2].trim()), row).toBeGreaterThan(0);
  }, 600_000);
});
