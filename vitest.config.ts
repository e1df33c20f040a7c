import { defineConfig } from 'vitest/config';

// Unit tests run in parallel; integration tests start real daemons on loopback
// and are run one file at a time so they do not compete for the 2 cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: !process.env.BITCLOUD_SERIAL_TESTS ? true : false,
  },
});
