/**
 * Which selected tables have a replica identity (cdc_registry.selected_tables, sql/020): the same
 * answer as has_identity (sql/003) for every kind of replica identity, leaves of a partitioned
 * table included, without calling it once per table (its own search_path kept it from being
 * inlined: half of the function's time, run after every DDL by the event trigger).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createEnv, runCli, withDb, type EgressEnv } from '../helpers/egress.js';

const TABLES = `
  CREATE TABLE pk (id int PRIMARY KEY, v text);
  CREATE TABLE nokey (id int, v text);
  CREATE TABLE full_ident (id int, v text);
  ALTER TABLE full_ident REPLICA IDENTITY FULL;
  CREATE TABLE by_index (id int NOT NULL, v text);
  CREATE UNIQUE INDEX by_index_id ON by_index (id);
  ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_id;
  CREATE TABLE nothing (id int PRIMARY KEY, v text);
  ALTER TABLE nothing REPLICA IDENTITY NOTHING;
  CREATE TABLE unique_only (id int NOT NULL UNIQUE, v text);
  CREATE TABLE root (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
  CREATE TABLE root_a PARTITION OF root FOR VALUES FROM (0) TO (10);
  CREATE TABLE root_b PARTITION OF root FOR VALUES FROM (10) TO (20);
  CREATE TABLE heap_root (id int, k int) PARTITION BY RANGE (k);
  CREATE TABLE heap_leaf PARTITION OF heap_root FOR VALUES FROM (0) TO (10);
`;

const EXPECTED: Record<string, boolean> = {
  pk: true,
  nokey: false,
  full_ident: true,
  by_index: true,
  nothing: false,
  unique_only: false,
  root_a: true,
  root_b: true,
  heap_leaf: false,
};

describe('selected tables and their replica identity', () => {
  const envs: EgressEnv[] = [];
  afterAll(async () => {
    for (const e of envs) await e.drop();
  });

  it('agrees with has_identity for every kind of identity, and calls it for no table', async () => {
    const env = await createEnv();
    envs.push(env);
    await withDb(env.url, (c) => c.query(TABLES));
    const init = await runCli(['init', '--config', env.configPath]);
    expect(init.code, init.stderr).toBe(0);
    await withDb(env.url, async (c) => {
      await c.query('BEGIN');
      try {
        // Function calls of this transaction, counted (pg_stat_get_xact_function_calls).
        await c.query(`SET LOCAL track_functions = 'all'`);
        const { rows } = await c.query<{ t: string; identity: boolean; expected: boolean }>(
          `SELECT s.table_name AS t, s.identity, cdc_registry.has_identity(s.relid) AS expected
           FROM cdc_registry.selected_tables($1) s WHERE s.schema_name = 'public'`,
          [env.slot],
        );
        const got = Object.fromEntries(rows.map((r) => [r.t, r.identity]));
        expect(got).toEqual(EXPECTED);
        for (const r of rows) expect(r.identity, r.t).toBe(r.expected);
        // has_identity ran for the comparison above (once per row), not inside selected_tables.
        const calls = await c.query<{ f: string; n: string | null }>(
          `SELECT p.proname AS f, pg_stat_get_xact_function_calls(p.oid)::text AS n
           FROM pg_proc p WHERE p.pronamespace = 'cdc_registry'::regnamespace AND p.proname IN ('has_identity', 'selected_tables')`,
        );
        const n = Object.fromEntries(calls.rows.map((r) => [r.f, Number(r.n ?? 0)]));
        expect(n.selected_tables).toBe(1);
        expect(n.has_identity).toBe(rows.length);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  });
});
