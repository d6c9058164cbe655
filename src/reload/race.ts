/**
 * DDL that races an export. The workers lock the tables (ACCESS SHARE) only after the snapshot
 * exists, so a DDL can commit in between, and two kinds are not MVCC-safe: a table rewrite
 * (`ALTER COLUMN ... TYPE`, `ADD COLUMN` with a volatile default, `SET LOGGED`, ...) and
 * `TRUNCATE` give the table a new relfilenode holding only the rows live at the DDL, so the old
 * snapshot sees an empty (or wrong) table; and a dropped, added or retyped column makes the
 * snapshot's column list differ from the table's.
 * https://www.postgresql.org/docs/15/mvcc-caveats.html
 *
 * The check: once the first worker holds its locks, nothing can change any more until the export
 * ends. The same catalog query then runs twice: in the worker's REPEATABLE READ transaction
 * (SQL reads of pg_class/pg_attribute use the transaction snapshot: the catalog as it was at the
 * snapshot) and on another connection (the catalog as committed now). Equal: the snapshot's table
 * is the table. Different: the export is redone from a new snapshot. The query takes no lock on
 * any table (catalog rows only), so it cannot queue behind a DDL that waits for our locks.
 */

/** One table's storage and columns, as one catalog view sees them. */
export interface TableShape {
  relid: string;
  schema: string;
  table: string;
  /** relfilenode of the table and, for a partitioned table, of every partition below it. */
  storage: string;
  /** attnum:attname:atttypid:atttypmod:attisdropped:attgenerated, by attnum. */
  columns: string;
}

/** $1: oid[]; the same text on both connections. */
export const SHAPE_SQL = `
  SELECT c.oid::text AS relid, n.nspname AS schema, c.relname AS table,
         c.relfilenode::text || coalesce((
           WITH RECURSIVE d(oid) AS (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = c.oid
                                     UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid)
           SELECT ' ' || string_agg(d.oid::text || ':' || k.relfilenode::text, ' ' ORDER BY d.oid)
           FROM d JOIN pg_class k ON k.oid = d.oid), '') AS storage,
         coalesce((SELECT string_agg(concat_ws(':', a.attnum, a.attname, a.atttypid, a.atttypmod, a.attisdropped, a.attgenerated), ',' ORDER BY a.attnum)
                   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0), '') AS columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = ANY($1::oid[])`;

export interface Raced {
  table: string;
  what: string;
}

/**
 * The tables whose shape differs between the snapshot's view and the current one (pure). A table
 * missing from either view (dropped, or created after the snapshot under the same name) differs.
 */
export function racedTables(
  expected: { relid: number; schema: string; table: string }[],
  atSnapshot: TableShape[],
  now: TableShape[],
): Raced[] {
  const snap = new Map(atSnapshot.map((s) => [s.relid, s]));
  const cur = new Map(now.map((s) => [s.relid, s]));
  const out: Raced[] = [];
  for (const t of expected) {
    const name = `${t.schema}.${t.table}`;
    const a = snap.get(String(t.relid));
    const b = cur.get(String(t.relid));
    if (!a) out.push({ table: name, what: 'the table did not exist yet at the snapshot' });
    else if (!b) out.push({ table: name, what: 'the table was dropped' });
    else if (b.schema !== t.schema || b.table !== t.table) out.push({ table: name, what: `the table was renamed to ${b.schema}.${b.table}` });
    else if (a.storage !== b.storage) out.push({ table: name, what: 'the table was rewritten or truncated (new relfilenode)' });
    else if (a.columns !== b.columns) out.push({ table: name, what: 'its columns changed (added, dropped or retyped)' });
  }
  return out;
}
