/**
 * The as-of point and the choice of files for one table (SPEC §6), as pure functions.
 *
 * - As of LSN L: the newest reload set with snapshot S ≤ L, then streaming rows with S ≤ _lsn < L.
 * - As of time T: the newest reload set whose snapshot was taken at or before T (its schema.yml
 *   `generated_at`, written when the snapshot was taken), then streaming rows with S ≤ _lsn and
 *   _commit_ts ≤ T.
 * - No as-of point: the newest reload set, then every streaming row with _lsn ≥ S.
 */
import { EgressError } from '../errors.js';
import { parseLsn, lsnHex } from '../lsn.js';

export type AsOf = { kind: 'lsn'; lsn: string; text: string } | { kind: 'time'; ts: string; ms: number; text: string } | { kind: 'latest'; text: string };

/** `0/177B128`, `000000000177B128`, or an ISO-8601 time (`2026-11-22T10:32:07Z`, microseconds kept). */
export function parseAsOf(text: string | undefined): AsOf {
  if (text === undefined || text === '') return { kind: 'latest', text: 'the newest batch' };
  const t = text.trim();
  if (/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(t)) return { kind: 'lsn', lsn: lsnHex(parseLsn(t)), text: t };
  if (/^[0-9A-Fa-f]{16}$/.test(t)) return { kind: 'lsn', lsn: t.toUpperCase(), text: t };
  const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i.exec(t);
  if (!m) throw new EgressError('CONFIG_INVALID', `--as-of ${text}: expected an LSN (0/177B128 or 16 hex digits) or an ISO-8601 time (2026-11-22T10:32:07Z)`);
  const [, date, hh = '00', mi = '00', ss = '00', frac = '', zone = 'Z'] = m;
  let offsetMin = 0;
  if (zone.toUpperCase() !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!;
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? 0));
  }
  const ms = Date.parse(`${date}T${hh}:${mi}:${ss}Z`) - offsetMin * 60_000;
  if (Number.isNaN(ms)) throw new EgressError('CONFIG_INVALID', `--as-of ${text}: not a valid time`);
  const iso = new Date(ms).toISOString(); // 2026-11-22T10:32:07.000Z
  const ts = `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${frac.padEnd(6, '0')}+00`;
  return { kind: 'time', ts, ms: ms + Number(frac.padEnd(6, '0')) / 1000, text };
}

/** Whether a streaming record (its _lsn and _commit_ts) is at or before the as-of point. */
export function rowBefore(asOf: AsOf, lsn: string, commitTs: string): boolean {
  if (asOf.kind === 'lsn') return lsn < asOf.lsn;
  if (asOf.kind === 'time') return normTs(commitTs) <= asOf.ts;
  return true;
}

/** `_commit_ts` as the SPEC writes it (`YYYY-MM-DD HH:MM:SS.ffffff+00`), with six fraction digits. */
export function normTs(ts: string): string {
  const m = /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d+))?(\+00)?$/.exec(ts);
  if (!m) return ts;
  return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}+00`;
}

export interface ReloadCandidate {
  /** Chain position of its batch. */
  seq: number;
  /** Snapshot LSN S (16 hex digits). */
  lsn: string;
  /** When the snapshot was taken (ms), from schema.yml generated_at; null if unknown. */
  takenAtMs: number | null;
  oid: number;
}

/** The newest reload set usable at the as-of point (by S, then chain position), of table `oid`. */
export function chooseReload(cands: ReloadCandidate[], asOf: AsOf, oid: number | null): ReloadCandidate | null {
  const ok = cands.filter((c) => {
    if (oid !== null && c.oid !== oid) return false;
    if (asOf.kind === 'lsn') return c.lsn <= asOf.lsn;
    if (asOf.kind === 'time') return c.takenAtMs !== null && c.takenAtMs <= asOf.ms;
    return true;
  });
  ok.sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : a.seq - b.seq));
  return ok.length ? ok[ok.length - 1] : null;
}

export interface PartitionChange {
  lsn: string;
  kind: string;
  schema: string;
  name: string;
  oid: string;
}

/**
 * The leaves of a partitioned root at the as-of point: `changes` replayed in LSN order. A change
 * committed at LSN c counts when `before(c)` (as the rows of that transaction do); `initial`
 * changes describe the root at its first appearance and always count. Leaves are keyed by oid (a
 * renamed leaf is the same leaf; its latest name is used).
 */
export function membersAt(
  changes: PartitionChange[],
  before: (c: PartitionChange) => boolean,
): { schema: string; name: string; oid: string }[] {
  const members = new Map<string, { schema: string; name: string; oid: string }>();
  const ordered = changes.map((c, i) => ({ c, i })).sort((a, b) => (a.c.lsn < b.c.lsn ? -1 : a.c.lsn > b.c.lsn ? 1 : a.i - b.i));
  for (const { c } of ordered) {
    if (c.kind !== 'initial' && !before(c)) continue;
    if (c.kind === 'detach' || c.kind === 'drop') members.delete(c.oid);
    else members.set(c.oid, { schema: c.schema, name: c.name, oid: c.oid });
  }
  return [...members.values()];
}

/** `ALTER TABLE … RENAME [COLUMN] a TO b` statements in a ddl.sql text: [from, to] pairs. */
export function columnRenames(ddl: string | null): [string, string][] {
  if (!ddl) return [];
  const ident = String.raw`("(?:[^"]|"")+"|[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)`;
  const re = new RegExp(String.raw`\bRENAME\s+(?:COLUMN\s+)?${ident}\s+TO\s+${ident}`, 'gi');
  const unq = (s: string) => (s.startsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s.toLowerCase());
  const out: [string, string][] = [];
  for (const m of ddl.matchAll(re)) {
    if (/^CONSTRAINT$/i.test(m[1])) continue;
    out.push([unq(m[1]), unq(m[2])]);
  }
  return out;
}
