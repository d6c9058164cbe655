import { describe, expect, it } from 'vitest';
import { parseFailpoints } from '../../src/failpoints.js';
import { testClock } from '../../src/clock.js';

describe('failpoints', () => {
  it('parses points, actions and hit counts; the old load-before-commit:N form is a crash at hit N', () => {
    const m = parseFailpoints('flush-after-rename:crash, export-after-chunk:pause@3,anchor-after-upload:error@2,load-before-commit:2');
    expect(Object.fromEntries([...m].map(([k, v]) => [k, `${v.action}@${v.at}`]))).toEqual({
      'flush-after-rename': 'crash@1',
      'export-after-chunk': 'pause@3',
      'anchor-after-upload': 'error@2',
      'load-before-commit': 'crash@2',
    });
    expect(parseFailpoints(undefined).size).toBe(0);
    expect(parseFailpoints('').size).toBe(0);
  });

  it('refuses a malformed value (a typo would test nothing)', () => {
    expect(() => parseFailpoints('flush-after-rename:explode')).toThrow(/PG_EGRESS_FAILPOINT: "flush-after-rename:explode"/);
    expect(() => parseFailpoints('flush-after-rename')).toThrow(/PG_EGRESS_FAILPOINT/);
    expect(() => parseFailpoints('flush-after-renam:crash')).toThrow(/no failpoint "flush-after-renam"/);
  });
});

describe('test clock', () => {
  it('is the wall clock unless PG_EGRESS_TEST_CLOCK_OFFSET_MS is set, then offset by it', () => {
    expect(testClock({})).toBeUndefined();
    const c = testClock({ PG_EGRESS_TEST_CLOCK_OFFSET_MS: '-86400000' })!;
    expect(Math.abs(c() + 86_400_000 - Date.now())).toBeLessThan(1000);
    expect(() => testClock({ PG_EGRESS_TEST_CLOCK_OFFSET_MS: '1.5s' })).toThrow(/whole number/);
  });
});
