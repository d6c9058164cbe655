/**
 * PostgreSQL timestamps on the wire are microseconds since 2000-01-01 00:00:00 UTC (int64).
 * https://www.postgresql.org/docs/15/protocol-replication.html
 */

/** Microseconds between 1970-01-01 and 2000-01-01 (30 years incl. 7 leap days). */
export const PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

/** The current time as microseconds since 2000-01-01 UTC (millisecond resolution). */
export function pgMicrosNow(): bigint {
  return BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_MICROS;
}

/** Floor division for bigint (`/` truncates toward zero). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

/** Milliseconds since the Unix epoch, rounded down (to the start of the millisecond), for window computations. */
export function pgMicrosToUnixMs(pgMicros: bigint): number {
  return Number(floorDiv(pgMicros + PG_EPOCH_OFFSET_MICROS, 1000n));
}

const pad2 = (n: number) => (n < 10 ? '0' : '') + n;
const pad4 = (n: number) => (n < 1000 ? String(n).padStart(4, '0') : String(n));

// Many transactions commit within the same second: keep the formatted `YYYY-MM-DD HH:MM:SS.` part.
let cachedSecond = 0n;
let cachedPrefix = '2000-01-01 00:00:00.';

/**
 * `_commit_ts` (SPEC §4): `YYYY-MM-DD HH:MM:SS.ffffff+00`, UTC, always 6 fraction digits, exact to
 * the microsecond (the fraction never goes through a floating-point Date). Throws RangeError for
 * an instant a JS Date cannot represent (such as PostgreSQL's ±infinity).
 */
export function formatCommitTs(pgMicros: bigint): string {
  const second = floorDiv(pgMicros, 1_000_000n); // seconds since 2000, rounded down
  const frac = Number(pgMicros - second * 1_000_000n); // 0 ..= 999999
  if (second !== cachedSecond) {
    const d = new Date(Number(second + PG_EPOCH_OFFSET_MICROS / 1_000_000n) * 1000);
    const year = d.getUTCFullYear();
    if (Number.isNaN(year) || year < 0) throw new RangeError(`commit timestamp out of range: ${pgMicros} µs since 2000-01-01`);
    cachedPrefix = `${pad4(year)}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.`;
    cachedSecond = second;
  }
  return cachedPrefix + String(frac).padStart(6, '0') + '+00';
}
