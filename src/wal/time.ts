/**
 * PostgreSQL timestamps on the wire are microseconds since 2000-01-01 00:00:00 UTC (int64).
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
export const PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

export function pgMicrosNow(): bigint {
  return BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_MICROS;
}

export function pgMicrosToUnixMs(pgMicros: bigint): number {
  return Number((pgMicros + PG_EPOCH_OFFSET_MICROS) / 1000n);
}

const pad2 = (n: number) => (n < 10 ? '0' : '') + n;

/** `_commit_ts` (SPEC §4): `YYYY-MM-DD HH:MM:SS.ffffff+00`, exact to the microsecond, UTC. */
export function formatCommitTs(pgMicros: bigint): string {
  const unixMicros = pgMicros + PG_EPOCH_OFFSET_MICROS;
  let seconds = unixMicros / 1_000_000n;
  let frac = unixMicros % 1_000_000n;
  if (frac < 0n) {
    frac += 1_000_000n;
    seconds -= 1n;
  }
  const d = new Date(Number(seconds) * 1000);
  return (
    `${String(d.getUTCFullYear()).padStart(4, '0')}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.${frac.toString().padStart(6, '0')}+00`
  );
}
