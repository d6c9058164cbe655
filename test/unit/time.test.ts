import { describe, expect, it } from 'vitest';
import { formatCommitTs, PG_EPOCH_OFFSET_MICROS, pgMicrosNow, pgMicrosToUnixMs } from '../../src/wal/time.js';

/** Micros since 2000-01-01 for an ISO instant (whole ms) plus extra microseconds. */
const micros = (iso: string, extraMicros = 0n) => BigInt(Date.parse(iso)) * 1000n + extraMicros - PG_EPOCH_OFFSET_MICROS;

describe('PG epoch', () => {
  it('is 2000-01-01 00:00:00 UTC', () => {
    expect(PG_EPOCH_OFFSET_MICROS).toBe(946_684_800_000_000n);
    expect(PG_EPOCH_OFFSET_MICROS).toBe(BigInt(Date.UTC(2000, 0, 1)) * 1000n);
  });

  it('pgMicrosNow is the current time', () => {
    const before = BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_MICROS;
    const now = pgMicrosNow();
    const after = BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_MICROS;
    expect(typeof now).toBe('bigint');
    expect(now >= before && now <= after).toBe(true);
  });
});

describe('formatCommitTs', () => {
  it('formats a known instant exactly to the microsecond, UTC', () => {
    expect(micros('2026-11-22T10:05:00.000Z', 1n)).toBe(848_657_100_000_001n);
    expect(formatCommitTs(848_657_100_000_001n)).toBe('2026-11-22 10:05:00.000001+00');
  });

  it('always prints 6 fraction digits', () => {
    expect(formatCommitTs(micros('2026-11-22T10:05:00.000Z'))).toBe('2026-11-22 10:05:00.000000+00');
    expect(formatCommitTs(micros('2026-11-22T10:05:00.120Z'))).toBe('2026-11-22 10:05:00.120000+00');
    expect(formatCommitTs(micros('2026-11-22T10:05:00.000Z', 10n))).toBe('2026-11-22 10:05:00.000010+00');
    expect(formatCommitTs(0n)).toBe('2000-01-01 00:00:00.000000+00');
  });

  it('is exact around second, day and year boundaries', () => {
    const t = micros('2026-11-22T10:05:00.000Z');
    expect(formatCommitTs(t - 1n)).toBe('2026-11-22 10:04:59.999999+00');
    expect(formatCommitTs(t)).toBe('2026-11-22 10:05:00.000000+00');
    expect(formatCommitTs(t + 999_999n)).toBe('2026-11-22 10:05:00.999999+00');
    expect(formatCommitTs(t + 1_000_000n)).toBe('2026-11-22 10:05:01.000000+00');
    const ny = micros('2027-01-01T00:00:00.000Z');
    expect(formatCommitTs(ny - 1n)).toBe('2026-12-31 23:59:59.999999+00');
    expect(formatCommitTs(ny)).toBe('2027-01-01 00:00:00.000000+00');
    expect(formatCommitTs(micros('2028-02-29T12:00:00.000Z', 500_000n))).toBe('2028-02-29 12:00:00.500000+00');
  });

  it('is exact where a double would not be (micros above 2^53)', () => {
    const t = 2n ** 53n + 1n; // 2285-06-04 ...
    const s = formatCommitTs(t);
    expect(s).toMatch(/^2285-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$/);
    expect(s.slice(20, 26)).toBe(String(t % 1_000_000n).padStart(6, '0'));
    expect(formatCommitTs(t + 1n).slice(20, 26)).toBe(String((t + 1n) % 1_000_000n).padStart(6, '0'));
  });

  it('does not depend on call order (per-second cache)', () => {
    const t = micros('2026-11-22T10:05:00.000Z');
    const a = [formatCommitTs(t + 5n), formatCommitTs(t + 2_000_007n), formatCommitTs(t + 6n), formatCommitTs(t - 1n)];
    expect(a).toEqual(['2026-11-22 10:05:00.000005+00', '2026-11-22 10:05:02.000007+00', '2026-11-22 10:05:00.000006+00', '2026-11-22 10:04:59.999999+00']);
  });

  it('handles times before 2000 with a non-negative fraction', () => {
    expect(formatCommitTs(-1n)).toBe('1999-12-31 23:59:59.999999+00');
    expect(formatCommitTs(-1_000_000n)).toBe('1999-12-31 23:59:59.000000+00');
    expect(formatCommitTs(-1_000_001n)).toBe('1999-12-31 23:59:58.999999+00');
  });

  it("throws on PostgreSQL's infinity", () => {
    expect(() => formatCommitTs(2n ** 63n - 1n)).toThrow(RangeError);
    expect(() => formatCommitTs(-(2n ** 63n))).toThrow(RangeError);
  });

  it('agrees with Date for whole milliseconds', () => {
    for (const iso of ['2001-09-09T01:46:40.123Z', '2024-02-29T23:59:59.999Z', '2038-01-19T03:14:08.000Z', '2100-03-01T00:00:00.001Z']) {
      expect(formatCommitTs(micros(iso))).toBe(iso.replace('T', ' ').replace('Z', '000+00'));
    }
  });
});

describe('pgMicrosToUnixMs', () => {
  it('converts to ms since 1970, rounding down to the millisecond', () => {
    const ms = Date.parse('2026-11-22T10:05:00.123Z');
    expect(pgMicrosToUnixMs(micros('2026-11-22T10:05:00.123Z'))).toBe(ms);
    expect(pgMicrosToUnixMs(micros('2026-11-22T10:05:00.123Z', 999n))).toBe(ms);
    expect(pgMicrosToUnixMs(micros('2026-11-22T10:05:00.123Z', 1000n))).toBe(ms + 1);
    expect(pgMicrosToUnixMs(0n)).toBe(Date.UTC(2000, 0, 1));
    expect(pgMicrosToUnixMs(-PG_EPOCH_OFFSET_MICROS - 1n)).toBe(-1);
  });
});
