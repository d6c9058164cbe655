import { defineConfig } from 'vitest/config';

// `npm run bench`: the same throwaway PostgreSQL as the tests, one benchmark file at a time.
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 1_800_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
  },
});
