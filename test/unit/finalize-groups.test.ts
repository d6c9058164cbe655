/**
 * How an export's finished tables are grouped into batches (src/reload/finalize.ts groupSize):
 * GROUP_MAX while COPYs run; once they are over, as few groups as FLUSHED_GROUP_MAX allows.
 */
import { describe, expect, it } from 'vitest';
import { FLUSHED_GROUP_MAX, GROUP_MAX, groupSize } from '../../src/reload/finalize.js';

/** The groups `n` waiting tables make, one groupSize after another. */
function groups(n: number, flushed: boolean): number[] {
  const out: number[] = [];
  while (n > 0) {
    const k = groupSize(n, flushed);
    expect(k).toBeGreaterThan(0);
    out.push(k);
    n -= k;
  }
  return out;
}

describe('groupSize', () => {
  it('takes GROUP_MAX at most while the COPYs run', () => {
    expect(groupSize(GROUP_MAX, false)).toBe(GROUP_MAX);
    expect(groupSize(GROUP_MAX + 1, false)).toBe(GROUP_MAX);
    expect(groupSize(3, false)).toBe(3);
  });
  it('once they are over, what is left goes in as few groups as FLUSHED_GROUP_MAX allows, of equal size', () => {
    expect(groups(300, true)).toEqual([300]);
    expect(groups(FLUSHED_GROUP_MAX, true)).toEqual([FLUSHED_GROUP_MAX]);
    expect(groups(FLUSHED_GROUP_MAX + 1, true)).toEqual([201, 200]);
    expect(groups(1000, true)).toEqual([334, 333, 333]);
    expect(groups(1, true)).toEqual([1]);
    for (let n = 1; n <= 2000; n++) {
      const g = groups(n, true);
      expect(g.reduce((a, b) => a + b, 0)).toBe(n);
      expect(Math.max(...g)).toBeLessThanOrEqual(FLUSHED_GROUP_MAX);
      expect(g.length).toBe(Math.ceil(n / FLUSHED_GROUP_MAX));
    }
  });
});
