/**
 * pg-egress must never break the application: a table without a primary key or replica identity
 * is not published (PostgreSQL would reject the application's UPDATE/DELETE on it), unless
 * tables.no_identity: full; DDL that moves a table into or out of scope is handled inside its own
 * transaction by the event trigger; `uninstall` leaves nothing of pg-egress in the database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createEnv, readStreamingRows, runCli, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const values = (env: EgressEnv, folder: string, col: string) => readStreamingRows(env.outDir, folder).rows.map((r) => `${r.op}:${r.values.get(col)?.toString() ?? ''}`);

describe('tables without identity, scope-changing DDL, uninstall', () => {
  let env: EgressEnv;
  let daemon: Child;

  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'tables:\n  include: ["public.*"]');
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE nopk (a int, b text);
        INSERT INTO nopk VALUES (1, 'x'), (2, 'y');
        CREATE TABLE keyed (id int PRIMARY KEY, v text);
        CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
        CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
        CREATE SCHEMA other;
        CREATE TABLE other.moved (id int PRIMARY KEY, v text);
        CREATE TABLE leaving (id int PRIMARY KEY, v text);
        CREATE UNLOGGED TABLE ul (id int PRIMARY KEY, v text);`),
    );
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
  });

  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it("keyless tables are not published, so the application's UPDATE and DELETE work; a new primary key joins the table at once", async () => {
    await withDb(env.url, async (c) => {
      await c.query(`UPDATE nopk SET b = 'z' WHERE a = 1`);
      await c.query(`DELETE FROM nopk WHERE a = 2`);
      // The application's own migration: a keyless table created, filled and updated in one transaction.
      await c.query(`BEGIN; CREATE TABLE later_nopk (a int, b text); INSERT INTO later_nopk VALUES (1, 'x'); UPDATE later_nopk SET b = 'y'; DELETE FROM later_nopk WHERE a = 7; COMMIT`);
      expect((await c.query(`SELECT b FROM later_nopk`)).rows).toEqual([{ b: 'y' }]);
    });
    const st = await runCli(['status', '--config', env.configPath, '--json']);
    expect(st.code).toBe(9);
    const unpublished = JSON.parse(st.stdout).unpublished.map((u: { table: string }) => u.table);
    expect(unpublished).toEqual(['public.later_nopk', 'public.nopk']);
    const text = await runCli(['status', '--config', env.configPath]);
    expect(text.stdout).toMatch(/UNPUBLISHED TABLES \(2\)[\s\S]*public.nopk: no primary key or replica identity/);
    expect(daemon.stdout()).toMatch(/"level":40.*table public.nopk is not published: it has no primary key or replica identity/);

    // A primary key: the table joins the publication in the same transaction.
    await withDb(env.url, (c) => c.query(`BEGIN; ALTER TABLE later_nopk ADD PRIMARY KEY (a); INSERT INTO later_nopk VALUES (2, 'after pk'); COMMIT`));
    await withDb(env.url, (c) => c.query(`UPDATE later_nopk SET b = 'updated' WHERE a = 2; INSERT INTO keyed VALUES (1, 'k')`));
    await waitCaughtUp(env);
    expect(values(env, 'public.later_nopk', 'b')).toEqual(['I:after pk', 'U:updated']);
    expect(existsSync(path.join(env.outDir, 'public.nopk'))).toBe(false);
  });

  it('DETACH PARTITION, SET SCHEMA and SET LOGGED take effect in their own transaction, no restart', async () => {
    await withDb(env.url, async (c) => {
      await c.query(`INSERT INTO parted VALUES (1, 'us', 'before'), (2, 'eu', 'before')`);
      // Each DDL and the first row after it in one transaction: only the event trigger can have
      // published the table in time (the daemon's own check runs every 10 s). A detached leaf
      // that matches tables.include on its own stays published: it goes on as a table.
      await c.query(`BEGIN; ALTER TABLE parted DETACH PARTITION parted_us; INSERT INTO parted_us VALUES (4, 'us', 'after-detach'); COMMIT`);
      await c.query(`BEGIN; ALTER TABLE other.moved SET SCHEMA public; INSERT INTO public.moved VALUES (1, 'moved in'); COMMIT`);
      await c.query(`BEGIN; ALTER TABLE ul SET LOGGED; INSERT INTO ul VALUES (1, 'logged'); COMMIT`);
      await c.query(`BEGIN; ALTER TABLE leaving SET SCHEMA other; INSERT INTO other.leaving VALUES (1, 'out of scope'); COMMIT`);
      const pub = (await c.query(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [env.slot])).rows.map((r) => r.t);
      expect(pub).toEqual(['public.keyed', 'public.later_nopk', 'public.moved', 'public.parted_eu', 'public.parted_us', 'public.ul']);
    });
    await waitCaughtUp(env);
    // Leaves, not the root: the detached leaf's rows stay in its own folder and left the root's
    // membership (partitions.yml), so the root never keeps rows its source no longer has.
    expect(values(env, 'public.parted_us', 'v')).toEqual(['I:before', 'I:after-detach']);
    expect(values(env, 'public.parted_eu', 'v')).toEqual(['I:before']);
    expect(values(env, 'public.parted', 'v')).toEqual([]);
    const parts = readdirSync(path.join(env.outDir, 'public.parted')).filter((b) => existsSync(path.join(env.outDir, 'public.parted', b, 'partitions.yml')));
    const last = readFileSync(path.join(env.outDir, 'public.parted', parts[parts.length - 1], 'partitions.yml'), 'utf8');
    expect(last).toMatch(/kind: detach, schema: public, name: parted_us/);
    expect(last).toMatch(/partitions:\n {2}- \{schema: public, name: parted_eu,/);
    // Attached again: it was published all along (its own name matches), so nothing is exported.
    const exports = () => withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.reloads WHERE table_name = 'parted_us'`)).rows[0].n);
    const before = await exports();
    await withDb(env.url, (c) => c.query(`BEGIN; ALTER TABLE parted ATTACH PARTITION parted_us FOR VALUES IN ('us'); INSERT INTO parted VALUES (5, 'us', 'after-attach'); COMMIT`));
    await waitCaughtUp(env);
    expect(await exports()).toBe(before);
    expect(values(env, 'public.parted_us', 'v')).toEqual(['I:before', 'I:after-detach', 'I:after-attach']);
    const windows = readdirSync(path.join(env.outDir, 'public.parted')).filter((b) => existsSync(path.join(env.outDir, 'public.parted', b, 'partitions.yml')));
    expect(readFileSync(path.join(env.outDir, 'public.parted', windows[windows.length - 1], 'partitions.yml'), 'utf8')).toMatch(/kind: attach, schema: public, name: parted_us/);
    expect(values(env, 'public.moved', 'v')).toEqual(['I:moved in']);
    expect(values(env, 'public.ul', 'v')).toEqual(['I:logged']);
    expect(existsSync(path.join(env.outDir, 'other.leaving'))).toBe(false);
  });

  it('uninstall refuses while the daemon runs; afterwards nothing of pg-egress is left in the database', async () => {
    const busy = await runCli(['uninstall', '--config', env.configPath, '--drop-registry']);
    expect(busy.code).toBe(6);
    expect(busy.stderr).toMatch(/pg-egress is still running with slot .* pid \d+ on host/);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    const out = await runCli(['uninstall', '--config', env.configPath, '--drop-registry']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/uninstalled: slot .*publication .*event trigger .*schema cdc_registry/);
    await withDb(env.url, async (c) => {
      const left = await c.query(
        `SELECT 'slot' AS k FROM pg_replication_slots WHERE slot_name = $1
         UNION ALL SELECT 'publication' FROM pg_publication WHERE pubname = $1
         UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
         UNION ALL SELECT 'schema' FROM pg_namespace WHERE nspname = 'cdc_registry'`,
        [env.slot],
      );
      expect(left.rows).toEqual([]);
      // The application goes on as if pg-egress had never been there.
      await c.query(`BEGIN; CREATE TABLE after_uninstall (a int); INSERT INTO after_uninstall VALUES (1); UPDATE after_uninstall SET a = 2; COMMIT`);
      await c.query(`UPDATE nopk SET b = 'again'`);
    });
    expect(existsSync(path.join(env.outDir, 'public.keyed'))).toBe(true);
  });
});

describe('tables.no_identity: full', () => {
  let env: EgressEnv;
  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'tables:\n  include: ["public.*"]\n  no_identity: full');
    await withDb(env.url, (c) => c.query(`CREATE TABLE nopk (a int, b text); INSERT INTO nopk VALUES (1, 'x')`));
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('sets REPLICA IDENTITY FULL and publishes keyless tables, existing and new', async () => {
    const d = spawnCli(['run', '--config', env.configPath]);
    try {
      await waitSlotActive(env);
      await withDb(env.url, async (c) => {
        expect((await c.query(`SELECT relreplident FROM pg_class WHERE oid = 'nopk'::regclass`)).rows[0].relreplident).toBe('f');
        await c.query(`UPDATE nopk SET b = 'y'`);
        await c.query(`BEGIN; CREATE TABLE fresh (a int, b text); INSERT INTO fresh VALUES (1, 'x'); UPDATE fresh SET b = 'y'; COMMIT`);
        expect((await c.query(`SELECT relreplident FROM pg_class WHERE oid = 'fresh'::regclass`)).rows[0].relreplident).toBe('f');
      });
      await waitCaughtUp(env);
      expect(values(env, 'public.nopk', 'b')).toEqual(['D:x', 'U:y']);
      expect(values(env, 'public.fresh', 'b')).toEqual(['I:x', 'D:x', 'U:y']);
      expect(d.stdout()).toMatch(/set REPLICA IDENTITY FULL on public.nopk/);
    } finally {
      d.proc.kill('SIGTERM');
      expect((await d.exit).code).toBe(0);
    }
  });
});
