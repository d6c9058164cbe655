import { defineConfig } from 'vitest/config';
import LongFirstSequencer from './test/harness/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Three test files at a time on two cores, each against its own database on the shared server:
    // most of a scenario's time is waiting (for windows, a standby, S3, a restart), so a third
    // file uses what the other two leave idle. The long ones start first (test/harness/sequencer.ts).
    maxWorkers: 3,
    sequence: { sequencer: LongFirstSequencer },
    reporters: ['default', './test/harness/reporter.ts'],
  },
});
