#!/usr/bin/env node
/**
 * `node scripts/sql.mjs <url> <sql>`: runs the SQL (one or more statements, simple query protocol)
 * and prints the last result's rows, one a line, fields separated by `|` (like `psql -Atc`).
 * The demo uses it instead of psql, which the embedded PostgreSQL does not ship.
 */
import pg from 'pg';

const [url, sql] = process.argv.slice(2);
if (!url || !sql) {
  process.stderr.write('usage: node scripts/sql.mjs <url> <sql>\n');
  process.exit(2);
}
const client = new pg.Client({ connectionString: url });
try {
  await client.connect();
  const res = await client.query(sql);
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  for (const row of last?.rows ?? []) process.stdout.write(Object.values(row).map((v) => (v === null ? '' : String(v))).join('|') + '\n');
} catch (e) {
  process.stderr.write(`sql: ${e.message}\n`);
  process.exitCode = 1;
} finally {
  await client.end().catch(() => {});
}
