/**
 * LSNs are 64-bit WAL positions. We keep them as bigint internally and render them two ways:
 * PostgreSQL's `X/Y` form (for SQL and pg_lsn) and the 16-digit zero-padded upper-case hex the
 * SPEC uses in files, so that they sort as text.
 */
export type Lsn = bigint;

export const ZERO_LSN: Lsn = 0n;

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`invalid LSN: ${JSON.stringify(text)}`);
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

/** PostgreSQL text form, e.g. `0/177B128`, accepted by `pg_lsn`. */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** File form: 16 upper-case hex digits, zero padded (SPEC §4 `_lsn`). */
export function lsnHex(lsn: Lsn): string {
  return lsn.toString(16).toUpperCase().padStart(16, '0');
}

export const maxLsn = (a: Lsn, b: Lsn): Lsn => (a > b ? a : b);
export const minLsn = (a: Lsn, b: Lsn): Lsn => (a < b ? a : b);
