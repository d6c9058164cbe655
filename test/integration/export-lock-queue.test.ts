/**
 * An export's workers and a DDL queued behind its locks (src/reload/chunk-queue.ts): only the
 * first worker locks every table up front; the others lock each group as they take it, NOWAIT.
 * Here a TRUNCATE or an ALTER TABLE waits on every table of an initial export before its first
 * COPY. The other workers' locks are refused (the server queues them behind the DDL), their
 * groups go to the first worker, and the export ends in one attempt with every table's rows as of
 * its snapshot; the DDLs go through once the export is over, and every table rebuilds equal.
 * Waiting instead would be a cycle through our process (the DDL waits for the first worker, the
 * first worker for the others): the export would fail on lock_timeout and be redone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { waitFor } from '../harness/pg.js';
import { createEnv, startInProcess, waitCaughtUp, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { expectRebuiltEqual } from '../helpers/compare.js';

const TABLES = 12;
const ROWS = 500;
const BIG_ROWS = 40_000;
const names = Array.from({ length: TABLES }, (_, i) => `q_${String(i).padStart(2, '0')}`);
/** Even tables are truncated, odd ones get a column. */
const ddlOf = (t: string, i: number) => (i % 2 === 0 ? `TRUNCATE ${t}` : `ALTER TABLE ${t} ADD COLUMN extra int`);

describe('a DDL queued behind an export\'s locks', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  const clients: pg.Client[] = [];
  const ddls: Promise<unknown>[] = [];
  const refused: string[] = [];

  beforeAll(async () => {
    env = await createEnv({ prefix: 'lockq' });
    writeConfig(env, 'reload:\n  workers: 3');
    await withDb(env.url, async (c) => {
      for (const t of names) await c.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text); INSERT INTO ${t} SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`);
      // Over 1 MiB: read on a thread of its own, so that the export takes every worker on any
      // machine (small tables alone take no more than its CPUs: planner.ts exportWorkers).
      await c.query(`CREATE TABLE q_big (id int PRIMARY KEY, v text); INSERT INTO q_big SELECT g, md5(g::text) FROM generate_series(1, ${BIG_ROWS}) g`);
    });
    for (let i = 0; i < TABLES; i++) {
      const c = new pg.Client({ connectionString: env.url });
      await c.connect();
      clients.push(c);
    }
    let armed = true;
    daemon = startInProcess(env, {
      exportHooks: {
        beforeCopies: async (tables) => {
          if (!armed || !tables.includes(`public.${names[0]}`)) return;
          armed = false;
          // One DDL per table, each in a session of its own; each queues behind the first
          // worker's ACCESS SHARE (no lock_timeout: it waits as long as the export runs).
          for (const [i, t] of names.entries()) {
            ddls.push(clients[i].query(ddlOf(t, i)));
          }
          await waitFor(
            'every DDL waiting on a lock',
            () =>
              withDb(env.url, async (c) => {
                const pids = clients.map((k) => (k as unknown as { processID: number }).processID);
                const { rows } = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'`, [pids]);
                return Number(rows[0].n) === TABLES;
              }),
            { timeoutMs: 60_000, intervalMs: 20 },
          );
        },
        refused: (tables) => void refused.push(...tables),
      },
    });
    await waitFor(
      'the initial export registered',
      () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query<{ done: string; failed: string | null }>(
            `SELECT count(*) FILTER (WHERE state = 'done')::text AS done, string_agg(error, '; ') FILTER (WHERE state = 'failed') AS failed FROM cdc_registry.reloads`,
          );
          if (rows[0].failed) throw new Error(rows[0].failed);
          return Number(rows[0].done) >= TABLES;
        }),
      { timeoutMs: 180_000, intervalMs: 100 },
    );
    await Promise.all(ddls);
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop();
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await env?.drop();
  });

  it('the other workers\' groups go to the first worker; one attempt, every table\'s rows of the snapshot', async () => {
    expect(refused.length, 'a worker other than the first had a group refused').toBeGreaterThan(0);
    for (const t of refused) expect(names.map((n) => `public.${n}`)).toContain(t);
    const { rows } = await withDb(env.url, (c) =>
      c.query<{ table_name: string; state: string; rows: string; attempts: string }>(
        `SELECT table_name, state, rows::text, attempts::text FROM cdc_registry.reloads WHERE reason <> 'ddl' AND table_name <> 'q_big' ORDER BY table_name`,
      ),
    );
    // Every table's rows as of the snapshot: no TRUNCATE got in before a COPY (it would have
    // left the snapshot an empty table: TRUNCATE is not MVCC-safe).
    expect(rows).toEqual(names.map((t) => ({ table_name: t, state: 'done', rows: String(ROWS), attempts: '1' })));
  });

  it('after the DDLs, every table rebuilds equal to the source', async () => {
    await waitCaughtUp(env);
    for (const [i, t] of names.entries()) {
      const columns = i % 2 === 0 ? ['id', 'v'] : ['id', 'v', 'extra'];
      const got = await expectRebuiltEqual(env.outDir, env.url, `public.${t}`, t, ['id'], columns);
      expect(got.rows, t).toBe(i % 2 === 0 ? 0 : ROWS);
    }
    expect((await expectRebuiltEqual(env.outDir, env.url, 'public.q_big', 'q_big', ['id'], ['id', 'v'])).rows).toBe(BIG_ROWS);
  });
});
