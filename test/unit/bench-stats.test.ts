/** The benchmark report's arithmetic (bench/lib/stats.ts, report.ts): the numbers in the README come from these. */
import { describe, expect, it } from 'vitest';
import { growth, median, pairedSpeedup, percentile, rotation, secondsPerMillion } from '../../bench/lib/stats.js';
import { fmtRatio, renderTable } from '../../bench/lib/report.js';

describe('benchmark statistics', () => {
  it('median, nearest-rank percentile', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });

  it('speed ratios are baseline/ours per paired run: median and spread of the pairs', () => {
    const r = pairedSpeedup([2, 4, 5], [4, 4, 15]);
    expect(r).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(fmtRatio(r)).toBe('2.00× (1.00–3.00×, n=3)');
    expect(() => pairedSpeedup([1, 2], [1])).toThrow(RangeError);
  });

  it('growth compares time per row; rotation gives each contender every position', () => {
    expect(secondsPerMillion(5, 2_000_000)).toBe(2.5);
    expect(growth({ seconds: 10, rows: 1e6 }, { seconds: 44, rows: 4e6 })).toBeCloseTo(0.1);
    expect([0, 1, 2].map((k) => rotation(['a', 'b', 'c'], k).join(''))).toEqual(['abc', 'bca', 'cab']);
  });

  it('renders a padded Markdown table with a met column', () => {
    const t = renderTable([
      { id: 'S1', what: 'x vs y', result: '1.10×', goal: '≥ 1.0×', met: true },
      { id: 'G', what: 'context row', result: '—', goal: 'context', met: null },
    ]).split('\n');
    expect(t).toHaveLength(4);
    expect(new Set(t.map((l) => l.length)).size).toBe(1);
    expect(t[2]).toContain('| yes |');
    expect(t[3]).toContain('| —   |');
  });
});
