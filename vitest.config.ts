import { defineConfig } from 'vitest/config';

// `npm test` (scripts/run-tests.mjs) runs test/unit in parallel, then test/integration one file
// at a time (each file starts real daemons on loopback; they should not compete for the cores).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
