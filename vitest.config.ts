import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two cores: two test files at a time, each against its own database on the shared server.
    maxWorkers: 2,
    reporters: ['default', './test/harness/reporter.ts'],
  },
});
