/** Durations, sizes, gas and NEAR amounts as written in cdc.yml. */

const DURATION: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds → milliseconds. */
export function parseDuration(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isFinite(s) || s < 0) throw new Error(`invalid duration ${s}`);
    return s * 1000;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(s);
  if (!m) throw new Error(`invalid duration ${JSON.stringify(s)} (use e.g. 30s, 5m, 1h)`);
  return Math.round(Number(m[1]) * DURATION[(m[2] ?? 's').toLowerCase()]);
}

/** `256MB`, `64KB`, `1GB`, `512B`, or a bare number of bytes (binary multiples). */
export function parseSize(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isInteger(s) || s < 0) throw new Error(`invalid size ${s}`);
    return s;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|k|m|g|t)?\s*$/i.exec(s);
  if (!m) throw new Error(`invalid size ${JSON.stringify(s)} (use e.g. 64MB, 1GB)`);
  let unit = (m[2] ?? 'b').toLowerCase();
  if (unit.length === 1 && unit !== 'b') unit += 'b';
  return Math.round(Number(m[1]) * SIZE[unit]);
}

/** `30Tgas`, `5Ggas`, or an integer number of gas units. */
export function parseGas(s: string | number): bigint {
  if (typeof s === 'number') return BigInt(s);
  const m = /^\s*(\d+)\s*(Tgas|Ggas|gas)?\s*$/i.exec(s);
  if (!m) throw new Error(`invalid gas ${JSON.stringify(s)} (use e.g. 30Tgas)`);
  const unit = (m[2] ?? 'gas').toLowerCase();
  return BigInt(m[1]) * (unit === 'tgas' ? 10n ** 12n : unit === 'ggas' ? 10n ** 9n : 1n);
}

/** A decimal NEAR amount, exact, in yoctoNEAR (10^24 per NEAR). */
export function parseNear(s: string | number): bigint {
  const text = String(s).trim();
  const m = /^(\d+)(?:\.(\d{1,24}))?$/.exec(text);
  if (!m) throw new Error(`invalid NEAR amount ${JSON.stringify(text)} (use e.g. "0.01")`);
  return BigInt(m[1]) * 10n ** 24n + BigInt((m[2] ?? '').padEnd(24, '0') || '0');
}
