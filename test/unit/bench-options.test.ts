// `npm run bench` options (scripts/bench/options.ts), through `--dry-run`: each module gets the
// values yargs parsed, in whatever spelling yargs accepts, so an option that passes the strict
// check is never left unseen by the module it is for (circuit: --compare-tor, hostile: --steps).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

function dryRun(...args: string[]): Promise<{ modules: string[]; run: { quick: boolean; compareTor: string | null; steps: string[] | null }; jsonOnly: boolean }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/run-ts.js', 'scripts/bench.ts', '--dry-run', ...args], { cwd: root, timeout: 60_000 }, (e, stdout, stderr) => {
      if (e) reject(new Error(`${e.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as never);
    });
  });
}

describe('npm run bench options (--dry-run)', () => {
  it('defaults: every module, no Tor comparison, every hostile step', async () => {
    const r = await dryRun();
    expect(r.modules).toEqual(expect.arrayContaining(['crypto', 'circuit', 'hostile']));
    expect(r).toMatchObject({ run: { quick: false, compareTor: null, steps: null }, jsonOnly: false });
  });

  it('--compare-tor alone, with "best" or "default", in every spelling yargs takes, reaches the circuit module', async () => {
    const got = await Promise.all([
      ['--only', 'circuit', '--compare-tor'], ['--compare-tor', '--quick'], ['--compare-tor', 'best'],
      ['--compare-tor=best'], ['--compareTor', 'best'], ['--compare-tor=default'],
    ].map((a) => dryRun(...a)));
    expect(got.map((r) => r.run.compareTor)).toEqual(['default', 'default', 'best', 'best', 'best', 'default']);
    expect(got[0].modules).toEqual(['circuit']);
    expect(got[1].run.quick).toBe(true);
  });

  it('--steps, spaced or with =, reaches the hostile module; --only= selects the modules', async () => {
    const [spaced, eq, only] = await Promise.all([
      dryRun('--steps', 'create2,http'), dryRun('--steps=create2,http'), dryRun('--only=hostile,circuit', '--json-only'),
    ]);
    expect(spaced.run.steps).toEqual(['create2', 'http']);
    expect(eq.run.steps).toEqual(['create2', 'http']);
    expect(only).toMatchObject({ modules: ['circuit', 'hostile'], jsonOnly: true });
  });
});
