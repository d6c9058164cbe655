/**
 * The benchmark's tables and data: the 8 column types the issue names (bigint, int, text,
 * numeric, text, text[], jsonb, timestamptz), rows built by generate_series on the server, so
 * loading costs no client time and every repetition gets the same bytes.
 */
import pg from 'pg';
import { withDb } from '../../test/helpers/egress.js';

export const COLUMNS = `(id bigint PRIMARY KEY, n int NOT NULL, t text, amount numeric(14,2), label text, tags text[], doc jsonb, at timestamptz)`;

/** Rows ids from..to; text with commas and quotes, arrays and JSON, so CSV quoting is exercised. */
export const rowsSql = (from: number | string, to: number | string): string =>
  `SELECT g, (g % 100000)::int, md5(g::text), (g * 1.37)::numeric(14,2), 'label, "' || (g % 1000) || '"',
          ARRAY['tag' || (g % 10), 'x,y' || (g % 7)], jsonb_build_object('k', g, 'v', md5(g::text), 'ok', g % 2 = 0),
          '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second'
   FROM generate_series(${from}::bigint, ${to}::bigint) g`;

export async function createTables(url: string, names: string[]): Promise<void> {
  await withDb(url, async (c) => {
    for (const t of names) await c.query(`CREATE TABLE ${t} ${COLUMNS}`);
  });
}

/** One transaction of `rows` rows (S1); returns the number of changes it makes. */
export async function oneTransaction(url: string, table: string, rows: number): Promise<number> {
  await withDb(url, (c) => c.query(`INSERT INTO ${table} ${rowsSql(1, rows)}`));
  return rows;
}

/**
 * S2: `txns` small transactions from `writers` concurrent sessions, each 10 inserts and 1 update
 * in one round trip. Returns the number of changes (11 per transaction).
 */
export async function smallTransactions(url: string, table: string, txns: number, writers: number): Promise<number> {
  const per = Math.ceil(txns / writers);
  let made = 0;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        for (let k = 0; k < per && w * per + k < txns; k++) {
          const first = (w * per + k) * 10 + 1;
          await c.query(`BEGIN; INSERT INTO ${table} ${rowsSql(first, first + 9)}; UPDATE ${table} SET n = n + 1, doc = doc || '{"updated": true}' WHERE id = ${first}; COMMIT`);
          made += 11;
        }
      } finally {
        await c.end();
      }
    }),
  );
  return made;
}

/** A table for the export scenarios: filled in 1M-row statements, then frozen and analysed. */
export async function filledTable(url: string, table: string, rows: number): Promise<void> {
  await withDb(url, async (c) => {
    await c.query(`CREATE TABLE ${table} ${COLUMNS}`);
    for (let from = 1; from <= rows; from += 1_000_000) await c.query(`INSERT INTO ${table} ${rowsSql(from, Math.min(rows, from + 999_999))}`);
    // Hint bits and statistics set now, so no contender pays for them on its first read.
    await c.query(`VACUUM (FREEZE, ANALYZE) ${table}`);
  });
}

/** R3: a table partitioned by range of id into `leaves` leaves of `rowsPerLeaf` rows each. */
export async function partitionedTable(url: string, table: string, leaves: number, rowsPerLeaf: number): Promise<void> {
  await withDb(url, async (c) => {
    await c.query(`CREATE TABLE ${table} ${COLUMNS} PARTITION BY RANGE (id)`);
    for (let i = 0; i < leaves; i++) {
      await c.query(`CREATE TABLE ${table}_p${i} PARTITION OF ${table} FOR VALUES FROM (${i * rowsPerLeaf + 1}) TO (${(i + 1) * rowsPerLeaf + 1})`);
    }
    for (let from = 1; from <= leaves * rowsPerLeaf; from += 1_000_000) await c.query(`INSERT INTO ${table} ${rowsSql(from, Math.min(leaves * rowsPerLeaf, from + 999_999))}`);
    await c.query(`VACUUM (FREEZE, ANALYZE) ${table}`);
  });
}

/** R4: `count` tables of `rows` rows each, named `${prefix}_0001` …, frozen and analysed. */
export async function manyTables(url: string, prefix: string, count: number, rows: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `public.${prefix}_${String(i + 1).padStart(4, '0')}`);
  await withDb(url, async (c) => {
    for (const t of names) await c.query(`CREATE TABLE ${t} ${COLUMNS}; INSERT INTO ${t} ${rowsSql(1, rows)}`);
    await c.query(`VACUUM (FREEZE, ANALYZE)`);
  });
  return names;
}
