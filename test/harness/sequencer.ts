/**
 * Orders test files so that the long scenarios start first: started last, one of them would run
 * alone at the end while the other workers idle. Vitest orders by the durations of the previous run
 * when it has them (node_modules/.vite); a fresh clone (CI) has none and would order by file size.
 * Files not listed keep Vitest's order after the listed ones.
 */
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { FULL } from '../helpers/scale.js';

/** Longest first at full size (PG_EGRESS_TEST_FULL=1; measured with `npx vitest run --reporter=json`). */
const LONG_FIRST_FULL = [
  'integration/archive-of-record.test.ts',
  'integration/archive-of-record-recovery.test.ts',
  'integration/failover.test.ts',
  'integration/crash.test.ts',
  'integration/archive-against-source.test.ts',
  'integration/safety.test.ts',
  'integration/partitions.test.ts',
  'integration/export-ddl.test.ts',
  'integration/archive-load.test.ts',
  'integration/archive-many-files.test.ts',
  'integration/out-of-band.test.ts',
  'integration/ddl-values.test.ts',
  'integration/archive-rebuild.test.ts',
  'unit/deploy.test.ts',
  'integration/reload-large.test.ts',
  'integration/reload.test.ts',
];

/**
 * Longest first at the quick sizes (`npm test`), measured the same way, except that the first four
 * pair two files that mostly wait (a paced writer, S3 round trips) with two that keep a core busy:
 * four waiting files at the start left the two cores 25% idle for the first 30 s.
 */
const LONG_FIRST_QUICK = [
  'integration/archive-of-record-recovery.test.ts',
  'integration/export-ddl.test.ts',
  'integration/archive-of-record.test.ts',
  'integration/archive-rebuild.test.ts',
  'integration/ddl-values.test.ts',
  'integration/out-of-band.test.ts',
  'integration/archive-against-source.test.ts',
  'integration/archive-load.test.ts',
  'integration/reload-large.test.ts',
  'integration/safety.test.ts',
  'integration/diskfull.test.ts',
  'integration/reload.test.ts',
  'integration/partitions.test.ts',
  'integration/crash.test.ts',
  'integration/failpoints.test.ts',
  'integration/failover.test.ts',
  'integration/operator.test.ts',
  'unit/copy-sink.test.ts',
  'integration/anchors.test.ts',
  'integration/confirm.test.ts',
  'integration/memory.test.ts',
  'unit/deploy.test.ts',
  'integration/archive-lost-files.test.ts',
  'integration/operator-edges.test.ts',
  'integration/archive-many-files.test.ts',
  'integration/verify.test.ts',
  'integration/reconnect.test.ts',
  'integration/archive-fixtures.test.ts',
  'integration/http.test.ts',
  'integration/scope.test.ts',
];

const LONG_FIRST = FULL ? LONG_FIRST_FULL : LONG_FIRST_QUICK;

const rank = (f: TestSpecification) => {
  const i = LONG_FIRST.findIndex((name) => f.moduleId.endsWith(`/test/${name}`));
  return i < 0 ? LONG_FIRST.length : i;
};

export default class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const byVitest = await super.sort(files);
    return byVitest
      .map((f, i) => ({ f, i }))
      .sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i)
      .map((x) => x.f);
  }
}
