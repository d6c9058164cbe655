/**
 * Pure arithmetic of the benchmark report: medians, spreads, percentiles and ratios. No I/O, so
 * it is unit-tested (test/unit/bench-stats.test.ts) and the report's numbers can be trusted.
 */

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new RangeError('percentile of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1];
}

/**
 * Speed of ours relative to a baseline from paired runs (same repetition, same WAL or table):
 * baseline seconds / our seconds, so > 1 means we are faster. The result is the median of the
 * per-repetition ratios, and the spread is their min and max: pairing cancels the drift of a
 * shared, noisy machine between repetitions better than dividing two medians would.
 */
export interface Ratio {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function pairedSpeedup(ours: readonly number[], baseline: readonly number[]): Ratio {
  if (ours.length === 0 || ours.length !== baseline.length) throw new RangeError(`paired runs needed: ${ours.length} vs ${baseline.length}`);
  const r = ours.map((o, i) => baseline[i] / o);
  return { median: median(r), min: Math.min(...r), max: Math.max(...r), n: r.length };
}

/** Seconds per million rows, the unit the growth check compares. */
export const secondsPerMillion = (seconds: number, rows: number): number => (seconds * 1e6) / rows;

/** Relative growth of time per row from the small run to the large one (0.05 = 5% slower per row). */
export function growth(small: { seconds: number; rows: number }, large: { seconds: number; rows: number }): number {
  return secondsPerMillion(large.seconds, large.rows) / secondsPerMillion(small.seconds, small.rows) - 1;
}

/** Rotates the order of the contenders each repetition, so no tool always runs first (cold cache) or last. */
export function rotation<T>(items: readonly T[], rep: number): T[] {
  const k = rep % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
