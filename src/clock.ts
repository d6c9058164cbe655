/**
 * The daemon's clock: when a window is over (the controller's `tick`) and the window an export is
 * placed in (its `takenAt`). Tests inject one (`RunOptions.now`) to cross a window without
 * waiting for it; a daemon run as a child process takes a fixed offset from
 * `PG_EGRESS_TEST_CLOCK_OFFSET_MS` (test-only): positive, every open window is over at the first
 * idle moment; negative (e.g. -86400000), a window is not closed by the clock while a test runs.
 * Windows themselves still come from the transactions' commit times (SPEC §4).
 */
export type Clock = () => number;

export const TEST_CLOCK_ENV = 'PG_EGRESS_TEST_CLOCK_OFFSET_MS';

/** The clock `PG_EGRESS_TEST_CLOCK_OFFSET_MS` asks for, or undefined (the wall clock). */
export function testClock(env: NodeJS.ProcessEnv = process.env): Clock | undefined {
  const v = env[TEST_CLOCK_ENV];
  if (v === undefined || v === '') return undefined;
  const offset = Number(v);
  if (!Number.isInteger(offset)) throw new Error(`${TEST_CLOCK_ENV} must be a whole number of milliseconds, not "${v}"`);
  return () => Date.now() + offset;
}
