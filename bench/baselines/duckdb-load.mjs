// Baseline for `load --into duckdb`: the statements `pg-egress schema-sql --dialect duckdb` prints
// for a reload window, run as they are in a new DuckDB database (DuckDB's own CSV reader, no
// changes applied). Usage: node duckdb-load.mjs <statements.sql> <database file>
import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';

const [sqlFile, dbFile] = process.argv.slice(2);
const inst = await DuckDBInstance.create(dbFile);
const conn = await inst.connect();
await conn.run(readFileSync(sqlFile, 'utf8'));
conn.closeSync();
inst.closeSync();
