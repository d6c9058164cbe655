/**
 * Helpers for the archive tests (rebuild, load, verify --against-source): a torture-style workload
 * (key-changing updates, deletes, truncates, unchanged TOAST values, added and dropped columns, a
 * table without a key, a partitioned table, "" next to NULL) and comparisons of a rebuilt table
 * with the source by EXCEPT ALL both ways.
 */
import { expect } from 'vitest';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { copyOut, sleep, withDb } from './egress.js';
import { waitFor } from '../harness/pg.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { openDuckdb } from '../../src/archive/engine-duckdb.js';
import { openVerified } from '../../src/archive/verified-reader.js';
import { localStore } from '../../src/archive/store.js';
import { CsvRecordSplitter } from '../../src/output/csv.js';

/** Waits until no reload is pending or running and at least `done` are done. */
export async function waitReloads(url: string, done: number, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `${done} reloads done`,
    () =>
      withDb(url, async (c) => {
        const { rows } = await c.query<{ busy: string; done: string; failed: string }>(
          `SELECT count(*) FILTER (WHERE state IN ('pending', 'running'))::text AS busy, count(*) FILTER (WHERE state = 'done')::text AS done,
                  string_agg(error, '; ') FILTER (WHERE state = 'failed') AS failed FROM cdc_registry.reloads`,
        );
        if (rows[0].failed) throw new Error(`reload failed: ${rows[0].failed}`);
        return rows[0].busy === '0' && Number(rows[0].done) >= done;
      }),
    { timeoutMs, intervalMs: 250 },
  );
}

export const TORTURE_DDL = `
  CREATE TABLE t_main (id int PRIMARY KEY, v text, big text, amount numeric(12,2), e text, ts timestamptz, j jsonb, b bytea);
  CREATE TABLE t_trunc (id int PRIMARY KEY, v text);
  CREATE TABLE t_full (a int, b text);
  ALTER TABLE t_full REPLICA IDENTITY FULL;
  CREATE TABLE t_part (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
  CREATE TABLE t_part_lo PARTITION OF t_part FOR VALUES FROM (0) TO (100);
  CREATE TABLE t_part_hi PARTITION OF t_part FOR VALUES FROM (100) TO (200);`;

/** ~9.6 kB of hex: pglz leaves it large, so it is TOASTed out of line. */
export const BIG = `(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 300) g)`;

export const TORTURE_SEED = `
  INSERT INTO t_main SELECT g, CASE WHEN g % 7 = 0 THEN '' WHEN g % 11 = 0 THEN NULL ELSE 'v' || g END, CASE WHEN g % 3 = 0 THEN ${BIG} END,
    g * 1.25, 'e' || g, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', jsonb_build_object('g', g), decode(md5(g::text), 'hex')
    FROM generate_series(1, 300) g;
  INSERT INTO t_trunc SELECT g, 'x' || g FROM generate_series(1, 50) g;
  INSERT INTO t_full SELECT g % 20, 'f' || (g % 20) FROM generate_series(1, 60) g;
  INSERT INTO t_part SELECT g, g % 200, 'p' || g FROM generate_series(1, 200) g;`;

/** One step of the writer: a transaction of mixed changes; `n` is the step number. */
export async function tortureStep(c: pg.Client, n: number): Promise<void> {
  await c.query('BEGIN');
  const id = 1000 + n;
  await c.query(`INSERT INTO t_main (id, v, big, amount) VALUES ($1, $2, CASE WHEN $1 % 2 = 0 THEN ${BIG} END, $1 * 0.01)`, [id, n % 5 === 0 ? '' : `n${n}`]);
  // Updates that leave the TOAST column alone (it arrives as _unchanged).
  await c.query(`UPDATE t_main SET v = coalesce(v, '') || '+', amount = amount + 1 WHERE id IN (SELECT id FROM t_main WHERE big IS NOT NULL ORDER BY id LIMIT 3 OFFSET $1)`, [n % 40]);
  // Twice in one transaction: the batch holds two versions of the row.
  await c.query(`UPDATE t_main SET amount = amount + 2 WHERE id = (SELECT min(id) FROM t_main WHERE big IS NOT NULL)`);
  // A key change, also of a row with a TOAST value (D + U with _unchanged).
  if (n % 3 === 0) await c.query(`UPDATE t_main SET id = id + 100000 WHERE id = (SELECT min(id) FROM t_main WHERE id < 100000 AND big IS NOT NULL AND id % 3 = 0)`);
  if (n % 4 === 0) await c.query(`DELETE FROM t_main WHERE id = (SELECT max(id) FROM t_main WHERE id < 100000 AND id % 4 = 1)`);
  // The same row inserted, updated and deleted in one transaction.
  await c.query(`INSERT INTO t_main (id, v) VALUES ($1, 'tmp')`, [500000 + n]);
  await c.query(`UPDATE t_main SET v = 'tmp2' WHERE id = $1`, [500000 + n]);
  if (n % 2 === 0) await c.query(`DELETE FROM t_main WHERE id = $1`, [500000 + n]);
  await c.query(`INSERT INTO t_trunc VALUES ($1, 'w') ON CONFLICT DO NOTHING`, [100 + n]);
  await c.query(`UPDATE t_trunc SET v = v || '.' WHERE id % 5 = $1`, [n % 5]);
  if (n % 10 === 9) await c.query(`TRUNCATE t_trunc`);
  if (n % 10 === 9) await c.query(`INSERT INTO t_trunc VALUES ($1, 'after truncate')`, [200 + n]);
  await c.query(`INSERT INTO t_full VALUES ($1::int, 'f' || $1::text)`, [n % 20]);
  await c.query(`DELETE FROM t_full WHERE ctid = (SELECT ctid FROM t_full WHERE a = $1 LIMIT 1)`, [(n + 7) % 20]);
  await c.query(`UPDATE t_full SET b = b || '!' WHERE ctid = (SELECT ctid FROM t_full WHERE a = $1 LIMIT 1)`, [(n + 3) % 20]);
  await c.query(`INSERT INTO t_part VALUES ($1, $2, 'w')`, [1000 + n, n % 200]);
  // Moves between partitions.
  await c.query(`UPDATE t_part SET k = (k + 100) % 200 WHERE id = $1`, [1 + (n % 200)]);
  await c.query('COMMIT');
}

export async function runSteps(url: string, from: number, count: number): Promise<void> {
  await withDb(url, async (c) => {
    for (let i = from; i < from + count; i++) {
      await tortureStep(c, i);
      if (i % 10 === 0) await sleep(20);
    }
  });
}

/**
 * A type-aware comparison in DuckDB: the source's COPY output is loaded into `<table>_expected`
 * through the same type mapping (types.ts) as the rebuild, then EXCEPT ALL both ways.
 */
export async function expectSameRowsDuckdb(file: string, sourceUrl: string, table: string, work: string): Promise<number> {
  const cols = await withDb(sourceUrl, async (c) =>
    (
      await c.query<{ name: string; type: string }>(
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        [table],
      )
    ).rows.map((r) => ({ ...r, type_oid: 0, nullable: true })),
  );
  const csv = await copyOut(sourceUrl, `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT csv, HEADER)`);
  const rel = `${table}.expected.csv.gz`;
  writeFileSync(path.join(work, rel), zlib.gzipSync(csv));
  const eng = await openDuckdb(file);
  try {
    const exp = { schema: 'public', table: `${table}_expected` };
    await eng.dropTable(exp);
    await eng.createTable(exp, cols, null);
    await eng.loadReload(exp, cols, cols.map((c) => c.name), openVerified(localStore(work), rel, { name: rel, type: 'full_reload', rows: 0, sha256: '' }, false));
    const q = async (a: string, b: string) => (await eng.query(`SELECT CAST(x AS VARCHAR) AS r FROM (SELECT * FROM ${a} EXCEPT ALL SELECT * FROM ${b}) x LIMIT 5`)).map((r) => r.r);
    const t = `public.${JSON.stringify(table)}`;
    const e = `public.${JSON.stringify(exp.table)}`;
    expect({ table, extra: await q(t, e), missing: await q(e, t) }).toEqual({ table, extra: [], missing: [] });
    const n = Number((await eng.query(`SELECT count(*) AS n FROM ${t}`))[0].n);
    await eng.dropTable(exp);
    return n;
  } finally {
    await eng.close();
  }
}

/** Lines of COPY CSV output (no header) as a sorted list, quoted newlines kept inside their line. */
export function csvRecords(buf: Buffer): string[] {
  const out: string[] = [];
  const s = new CsvRecordSplitter((r) => out.push(r.toString('utf8')));
  s.push(buf);
  s.end();
  return out.sort();
}

/** A table's rows as COPY text (a Buffer of CSV lines, no header). */
export const copyText = (url: string, table: string): Promise<Buffer> => copyOut(url, `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT csv)`);

/**
 * Loads `rows` (COPY CSV of the source table) into `<target>_expected` in the target database,
 * with the target table's column types, and checks EXCEPT ALL both ways is empty.
 */
export async function expectSameRows(targetUrl: string, target: string, rows: Buffer, label = target): Promise<number> {
  return withDb(targetUrl, async (c) => {
    const exp = `${target}_expected`;
    await c.query(`DROP TABLE IF EXISTS ${exp}; CREATE TABLE ${exp} (LIKE ${target})`);
    const s = c.query(copyFrom(`COPY ${exp} FROM STDIN (FORMAT csv)`));
    await new Promise<void>((resolve, reject) => {
      s.on('finish', resolve);
      s.on('error', reject);
      s.end(rows);
    });
    const a = await c.query(`SELECT x::text AS r FROM (SELECT * FROM ${target} EXCEPT ALL SELECT * FROM ${exp}) x LIMIT 5`.replace(/SELECT \* FROM/g, `SELECT * FROM`));
    const b = await c.query(`SELECT x::text AS r FROM (SELECT * FROM ${exp} EXCEPT ALL SELECT * FROM ${target}) x LIMIT 5`);
    expect({ label, extra: a.rows.map((r) => r.r), missing: b.rows.map((r) => r.r) }).toEqual({ label, extra: [], missing: [] });
    const n = Number((await c.query(`SELECT count(*)::int AS n FROM ${target}`)).rows[0].n);
    await c.query(`DROP TABLE ${exp}`);
    return n;
  });
}
