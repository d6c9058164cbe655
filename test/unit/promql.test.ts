/** The PromQL name extraction used by test/integration/alerts.test.ts. */
import { describe, expect, it } from 'vitest';
import { metricNames } from '../helpers/promql.js';

describe('metricNames', () => {
  it('names series, not functions, labels, keywords, numbers or durations', () => {
    expect(metricNames('pg_egress_ready == 0 or absent(pg_egress_ready)')).toEqual(['pg_egress_ready']);
    expect(metricNames('max by (target) (pg_egress_anchor_oldest_pending_seconds{target="s3", x=~"a|b"}) > 1800')).toEqual(['pg_egress_anchor_oldest_pending_seconds']);
    expect(metricNames('histogram_quantile(0.95, sum by (le) (rate(pg_egress_flush_duration_seconds_bucket[5m])))')).toEqual(['pg_egress_flush_duration_seconds_bucket']);
    expect(metricNames('a / on (instance) group_left (x) b > 1e9 unless c offset 5m')).toEqual(['a', 'b', 'c']);
    expect(metricNames('time() - pg_egress_local_oldest_window_timestamp_seconds')).toEqual(['pg_egress_local_oldest_window_timestamp_seconds']);
    expect(metricNames('x{l="a}b"} + y')).toEqual(['x', 'y']);
  });
});
