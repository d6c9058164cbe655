/**
 * reconcile_publication run by two sessions at once: the daemon's check and the DDL event trigger
 * inside the application's transaction (sql/016). Each reads the publication, then changes it;
 * when both change the same table, the second waits on the table's lock and then finds the change
 * made. Before sql/016 that was an error which ended the daemon ("relation ... is not part of the
 * publication", seen in CI while partitions.test.ts ran DETACH ... CONCURRENTLY) or undid the
 * trigger's whole repair (it turns errors into warnings). The first test makes the wait happen
 * for certain (the first session holds its transaction open until the second waits on the lock);
 * the second holds the DDL of the CI failure where it was. The last one puts a DBA's change
 * between the daemon's repair and its read of the members (src/source/publication.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import { createEnv, loadEnvConfig, startInProcess, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { reconcilePublication } from '../../src/registry/publication.js';
import { Registry } from '../../src/registry/registry.js';
import { PublicationWatcher, type TableName } from '../../src/source/publication.js';
import { waitFor } from '../harness/pg.js';

const TRIGGERS = ['pg_egress_ddl_command_end', 'pg_egress_sql_drop'];

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Resolves once `pid` waits on a heavyweight lock. */
async function waitingOnLock(url: string, pid: number): Promise<void> {
  await waitFor(`backend ${pid} waiting on a lock`, () =>
    withDb(url, async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [pid])).rowCount === 1),
  );
}

async function published(url: string, pub: string): Promise<string[]> {
  return withDb(url, async (c) => (await c.query<{ t: string }>(`SELECT tablename AS t FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [pub])).rows.map((r) => r.t));
}

describe('reconcile_publication in two sessions at once', () => {
  let env: EgressEnv;
  let pub: string;

  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'tables:\n  include: ["public.t_*", "public.ev"]');
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE t_keep (id int PRIMARY KEY);
               CREATE TABLE t_leaving (id int PRIMARY KEY);
               CREATE TABLE ev (id int PRIMARY KEY) PARTITION BY RANGE (id);
               CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (100);
               CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (100) TO (200)`),
    );
    // The daemon installs the registry, the publication and the triggers, then stops: the
    // sessions below are the daemon's check and the trigger, run by hand.
    const daemon = startInProcess(env);
    await waitSlotActive(env);
    await daemon.stop();
    pub = loadEnvConfig(env).publication;
  });

  afterAll(async () => {
    await env?.drop();
  });

  it('the second session skips the ADD and the DROP the first made while it waited, and reports neither', async () => {
    // With the triggers off, a table leaves the selection (renamed) and one joins (created), so
    // that both sessions find the same two changes to make.
    await withDb(env.url, async (c) => {
      await c.query(TRIGGERS.map((t) => `ALTER EVENT TRIGGER ${t} DISABLE;`).join(' '));
      try {
        await c.query(`ALTER TABLE t_leaving RENAME TO gone; CREATE TABLE t_new (id int PRIMARY KEY)`);
      } finally {
        await c.query(TRIGGERS.map((t) => `ALTER EVENT TRIGGER ${t} ENABLE;`).join(' '));
      }
    });
    expect(await published(env.url, pub)).toEqual(['ev_1', 'ev_2', 'gone', 't_keep']);
    const first = await connect(env.url);
    const second = await connect(env.url);
    try {
      await first.query('BEGIN');
      const firstRows = await reconcilePublication(first, pub);
      expect(firstRows.map((r) => `${r.action} ${r.table_name}`)).toEqual(['added t_new', 'removed gone']);
      const secondPid = (await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const secondRows = reconcilePublication(second, pub);
      secondRows.catch(() => undefined);
      await waitingOnLock(env.url, secondPid);
      await first.query('COMMIT');
      expect(await secondRows).toEqual([]);
    } finally {
      await first.end();
      await second.end();
    }
    expect(await published(env.url, pub)).toEqual(['ev_1', 'ev_2', 't_keep', 't_new']);
  });

  it('DETACH PARTITION ... CONCURRENTLY whose trigger dropped the leaf while the check waited: both succeed', async () => {
    // The CI failure's order. The DDL's second transaction (the first committed the partition as
    // detach-pending: in no partition tree of a new snapshot, so no longer selected) runs
    // pg-egress's trigger, which drops the leaf from the publication; a test trigger, which fires
    // after it (event triggers fire in name order), then holds that transaction open until the
    // test lets it go. Meanwhile the daemon's check still sees the leaf published and drops it too.
    // https://www.postgresql.org/docs/15/sql-altertable.html#SQL-ALTERTABLE-DETACH-PARTITION
    // https://www.postgresql.org/docs/15/event-trigger-definition.html
    const KEY = 7_001_016;
    await withDb(env.url, (c) =>
      c.query(`CREATE FUNCTION public.zz_hold() RETURNS event_trigger LANGUAGE plpgsql AS $$
                 BEGIN IF tg_tag = 'ALTER TABLE' THEN PERFORM pg_advisory_xact_lock_shared(${KEY}); END IF; END $$;
               CREATE EVENT TRIGGER zz_hold ON ddl_command_end EXECUTE FUNCTION public.zz_hold()`),
    );
    const gate = await connect(env.url);
    const ddl = await connect(env.url);
    const check = await connect(env.url);
    try {
      await gate.query('SELECT pg_advisory_lock($1)', [KEY]);
      const ddlPid = (await ddl.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const detach = ddl.query('ALTER TABLE ev DETACH PARTITION ev_2 CONCURRENTLY');
      detach.catch(() => undefined);
      await waitFor('the DDL held after pg-egress\'s trigger', () =>
        withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'advisory'`, [ddlPid])).rowCount === 1),
      );
      // The daemon's check, as it runs it (src/source/publication.ts).
      const checkPid = (await check.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const rows = reconcilePublication(check, pub);
      rows.catch(() => undefined);
      await waitingOnLock(env.url, checkPid);
      await gate.query('SELECT pg_advisory_unlock($1)', [KEY]);
      await detach;
      // It skipped the DROP the trigger made: no error, and not reported as its own.
      expect(await rows).toEqual([]);
    } finally {
      await gate.end();
      await ddl.end();
      await check.end();
      await withDb(env.url, (c) => c.query(`DROP EVENT TRIGGER zz_hold; DROP FUNCTION public.zz_hold()`));
    }
    expect(await published(env.url, pub)).toEqual(['ev_1', 't_keep', 't_new']);
    expect(await withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_inherits WHERE inhrelid = 'ev_2'::regclass`)).rowCount)).toBe(0);
  });

  it('a table taken out of the publication just after the check repaired it is a gap at the next check, not a table that joined', async () => {
    const cfg = loadEnvConfig(env);
    const db = await connect(env.url);
    const dba = await connect(env.url);
    // The daemon's connection, with a DBA's ALTER PUBLICATION ... DROP TABLE committed right after
    // the check's repair transaction (the window in which CI once saw it, under load).
    let injected = false;
    let armed = false;
    const query = db.query.bind(db) as (...a: unknown[]) => Promise<unknown>;
    (db as unknown as { query: (...a: unknown[]) => Promise<unknown> }).query = async (...a: unknown[]) => {
      const text = typeof a[0] === 'string' ? a[0] : '';
      const r = await query(...a);
      if (text.includes('reconcile_publication')) armed = true;
      else if (armed && text === 'COMMIT' && !injected) {
        injected = true;
        await dba.query(`ALTER PUBLICATION ${pub} DROP TABLE t_keep`);
      }
      return r;
    };
    const reloads: { tables: string[]; reason: string }[] = [];
    const requestReload = async (tables: TableName[], reason: 'joined' | 'gap') => {
      reloads.push({ tables: tables.map((t) => t.table), reason });
    };
    try {
      const watcher = new PublicationWatcher(db, cfg, new Registry(db, cfg.slot), pino({ level: 'silent' }), 0n, requestReload);
      const first = await watcher.check();
      expect(injected).toBe(true);
      expect(first.added).toEqual([]);
      expect(await published(env.url, pub)).toEqual(['ev_1', 't_new']);
      const second = await watcher.check();
      expect(second.added).toEqual([{ schema: 'public', table: 't_keep' }]);
      expect(second.gaps).toEqual([{ kind: 'unpublished', table: { schema: 'public', table: 't_keep' } }]);
      expect(reloads).toEqual([{ tables: ['t_keep'], reason: 'gap' }]);
    } finally {
      await db.end();
      await dba.end();
    }
    expect(await published(env.url, pub)).toEqual(['ev_1', 't_keep', 't_new']);
  });
});
