import { defineConfig } from 'vitest/config';
import LongFirstSequencer from './test/harness/sequencer.js';
import { FULL } from './test/helpers/scale.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Several test files at a time on two cores, each against its own database on the shared
    // server: much of a scenario's time is waiting (for windows, a standby, S3, a restart), so more
    // files than cores use what the others leave idle. Four at the quick sizes (npm test: measured
    // 180 s against 191 s with three); three at full size, whose scenarios are heavier. The long
    // ones start first (test/harness/sequencer.ts).
    maxWorkers: FULL ? 3 : 4,
    // One process runs many files: Node's start-up and the imports (vitest, pg, the AWS SDK, the
    // product) are paid once per worker instead of once per file, ~40 CPU-seconds of a quick run.
    // test/harness/file-setup.ts gives each file a clean environment.
    isolate: false,
    setupFiles: ['test/harness/file-setup.ts'],
    sequence: { sequencer: LongFirstSequencer },
    reporters: ['default', './test/harness/reporter.ts'],
  },
});
