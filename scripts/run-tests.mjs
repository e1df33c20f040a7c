#!/usr/bin/env node
// `npm test`: unit tests (in parallel), then integration tests (one file at a time: each starts
// real daemons on loopback and they should not compete for the cores), then one closing line
// "N passed, N failed" counted from vitest's JSON results.
//   npm test                 everything
//   npm test -- unit         unit tests only
//   npm test -- integration  integration tests only
//   npm test -- FILTER...    extra arguments go to vitest (e.g. a file name)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
let args = process.argv.slice(2);
let suites = ['unit', 'integration'];
if (args[0] === 'unit' || args[0] === 'integration') { suites = [args[0]]; args = args.slice(1); }

let passed = 0, failed = 0, skipped = 0, ran = 0;
const failures = [];
for (const suite of suites) {
  const out = path.join(root, `.vitest-${suite}.json`);
  fs.rmSync(out, { force: true });
  // Unit files run at least two at a time: vitest's default (one fewer than the cores) would run
  // them one by one on a 2-core machine, and most of them wait on sockets, not the CPU.
  const extra = suite === 'integration' ? ['--no-file-parallelism'] : [`--maxWorkers=${Math.max(2, os.availableParallelism() - 1)}`];
  const filters = args.length ? args : [`test/${suite}`];
  const r = spawnSync(process.execPath, [vitest, 'run', ...filters, ...extra,
    '--reporter=default', '--reporter=json', `--outputFile.json=${out}`, '--passWithNoTests'], { cwd: root, stdio: 'inherit' });
  try {
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    passed += j.numPassedTests; failed += j.numFailedTests; skipped += (j.numPendingTests || 0) + (j.numTodoTests || 0);
    ran += j.numTotalTests;
    // A file that failed to load counts no tests: count it as one failure.
    for (const f of j.testResults || []) {
      const file = path.relative(root, f.name || '');
      if (f.status === 'failed' && !(f.assertionResults || []).length) { failed++; failures.push(`${file}: ${firstLine(f.message)}`); }
      for (const a of f.assertionResults || []) {
        if (a.status === 'failed') failures.push(`${file} > ${a.fullName || a.title}: ${firstLine((a.failureMessages || [])[0])}`);
      }
    }
  } catch {
    failed++;
    console.error(`no results from the ${suite} run (vitest exit ${r.status})`);
  }
  if (r.status !== 0 && failed === 0) failed++;
}
// The failures again, right above the closing line, so a log cut to its tail still names them.
if (failures.length) {
  console.log(`\nfailed (${failures.length}):`);
  for (const f of failures) console.log(`  ${f}`);
}
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
process.exit(failed > 0 || ran === 0 ? 1 : 0);

function firstLine(msg) {
  const line = String(msg || '').split('\n').find((l) => l.trim()) || '(no message)';
  return line.length > 300 ? line.slice(0, 300) + '…' : line;
}
