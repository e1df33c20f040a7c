import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Files that run far longer than the rest start first. Vitest orders files by the durations it
 * cached on the last run; a fresh clone (CI) has no cache, so it orders by file size, and the
 * minute of fuzzing in a small file would start last and run alone at the end.
 */
const LONG_FIRST = [/test\/unit\/fuzz-quick\.test\.ts$/];
class LongFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => (LONG_FIRST.some((re) => re.test(f.moduleId)) ? 0 : 1);
    return [...sorted].sort((a, b) => rank(a) - rank(b));
  }
}

// `npm test` (scripts/run-tests.mjs) runs test/unit in parallel, then test/integration one file
// at a time (each file starts real daemons on loopback; they should not compete for the cores).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    sequence: { sequencer: LongFilesFirst },
  },
});
