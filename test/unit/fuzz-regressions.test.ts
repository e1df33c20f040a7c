// Every input the fuzzer ever found failing (test/fuzz-corpus/<target>/*.bin, written by
// `npm run fuzz`) is replayed through the same target by `npm run fuzz -- --replay`: each must
// now decode or be refused with a typed BitcloudError, within the fuzzer's allocation bound. The
// seeds of every target (valid encodings made by the project's encoders) are replayed too.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const corpus = path.join(root, 'test', 'fuzz-corpus');
const cases: string[] = [];
for (const dir of fs.existsSync(corpus) ? fs.readdirSync(corpus).sort() : []) {
  if (!fs.statSync(path.join(corpus, dir)).isDirectory()) continue;
  for (const f of fs.readdirSync(path.join(corpus, dir)).sort()) if (f.endsWith('.bin')) cases.push(`${dir}/${f}`);
}

let out = '';
let code: number | null = null;
beforeAll(async () => {
  await new Promise<void>((resolve, reject) => {
    const p = spawn(process.execPath, ['bin/run-ts.js', 'scripts/fuzz/run.ts', '--replay'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', (c) => { code = c; resolve(); });
  });
}, 300_000);

const lineFor = (name: string) => out.split('\n').find((l) => l === `ok ${name}` || l.startsWith(`FAIL ${name} `) || l.startsWith(`ok ${name} `));

describe('fuzz regressions (test/fuzz-corpus)', () => {
  it('the corpus holds regression inputs', () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const c of cases) {
    it(`${c} decodes or is refused with a typed error`, () => {
      expect(lineFor(c), out).toBe(`ok ${c}`);
    });
  }

  it('every target has seeds and every seed decodes or is refused with a typed error', () => {
    const seedLines = out.split('\n').filter((l) => /\/seed-\d+( |$)/.test(l) || l.includes('/seeds '));
    expect(seedLines.length, out).toBeGreaterThan(0);
    for (const l of seedLines) expect(l, out).toMatch(/^ok /);
  });

  it('the replay ends with no failures', () => {
    expect(out.trim().split('\n').pop(), out).toMatch(/^replay: \d+ inputs, 0 failures$/);
    expect(code, out).toBe(0);
  });
});
