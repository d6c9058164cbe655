/**
 * Consistent exports (SPEC §6, §8): the initial export under a concurrent writer, reload markers
 * (also inside the application's own transaction, and rolled back), tables that join with data,
 * the same bytes as psql's COPY, and the errors an operator meets. Every check rebuilds tables
 * from the files by the SPEC §6 rule: the newest reload set, then the streaming rows at or above
 * its snapshot LSN.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import zlib from 'node:zlib';
import pg from 'pg';
import { createCluster, type Cluster } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';
import { copyOut, createEnv, loopWriter, readReloadRows, rebuildFromOutput, reloadSets, runCli, sleep, sortedEntries, sourceRows, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';
import { WRITER_PAUSE_MS } from '../helpers/scale.js';

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

async function expectRebuilt(env: EgressEnv, folder: string, qualified: string, key: string[], columns: string[]): Promise<number> {
  const got = rebuildFromOutput(env.outDir, folder, key, columns);
  const want = await sourceRows(env.url, qualified, key, columns);
  expect(got.reload, `${folder} has a reload set`).not.toBeNull();
  expect(sortedEntries(got.table)).toEqual(sortedEntries(want));
  return want.size;
}

/** Inserts, updates and deletes across the tables until stopped. */
function writer(url: string): { stop(): Promise<number> } {
  return loopWriter(url, async (c, n) => {
    const id = 1_000_001 + n;
    await c.query('BEGIN');
    await c.query(`INSERT INTO items VALUES ($1::int, 'w' || $1::text, 0)`, [id]);
    await c.query(`UPDATE items SET n = n + 1, v = v || '+' WHERE id = $1`, [1 + (id % 5000)]);
    if (id % 3 === 0) await c.query(`DELETE FROM items WHERE id = $1`, [10 + (id % 4000)]);
    await c.query(`INSERT INTO nokey VALUES ($1::int, 'k' || $1::text)`, [id]);
    if (id % 2 === 0) await c.query(`UPDATE nokey SET b = b || '!' WHERE a = $1`, [id % 900]);
    if (id % 5 === 0) await c.query(`DELETE FROM nokey WHERE a = $1`, [(id % 700) + 100]);
    await c.query(`UPDATE "My Schema"."Weird ""Name"", x" SET "my col" = "my col" || ',' WHERE id = $1`, [id % 100]);
    await c.query('COMMIT');
    // Paced: a writer throughout the exports, not as much as it can write (flat out, it took a
    // core from the files running beside this one).
    await sleep(WRITER_PAUSE_MS);
    return 1;
  });
}

describe('initial export and markers', () => {
  let env: EgressEnv;
  let daemon: Child;

  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'reload:\n  workers: 3\n  chunk_size: 64kB');
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE items (id int PRIMARY KEY, v text, n int);
        INSERT INTO items SELECT g, md5(g::text), 0 FROM generate_series(1, 30000) g;
        CREATE TABLE nokey (a int, b text);
        ALTER TABLE nokey REPLICA IDENTITY FULL;
        INSERT INTO nokey SELECT g, 'n' || g FROM generate_series(1, 1000) g;
        CREATE SCHEMA "My Schema";
        CREATE TABLE "My Schema"."Weird ""Name"", x" (id int PRIMARY KEY, "my col" text);
        INSERT INTO "My Schema"."Weird ""Name"", x" SELECT g, 'w,"' || g FROM generate_series(0, 99) g;
        CREATE TABLE orders (id int PRIMARY KEY, status text);
        INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 2000) g;
        COMMENT ON TABLE orders IS 'orders of the shop';
        CREATE TABLE quiet (id int PRIMARY KEY, t text, d numeric, ts timestamptz, j jsonb);
        INSERT INTO quiet SELECT g, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 11 = 0 THEN '' ELSE 'q "' || g || E'\\nx' END,
               g / 3.0, '2026-01-01'::timestamptz + g * interval '1 minute', jsonb_build_object('g', g)
        FROM generate_series(1, 20000) g;`),
    );
  });

  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it('exports existing rows at the first start while a writer changes them; every table rebuilds to the source', async () => {
    const w = writer(env.url);
    await sleep(300);
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    // The writer goes on through the initial export and until rows after it are registered.
    await waitReloads(env.url, 5);
    await waitBatches(env, 1);
    const txns = await w.stop();
    await waitCaughtUp(env);
    const n =
      (await expectRebuilt(env, 'public.items', 'items', ['id'], ['id', 'v', 'n'])) +
      (await expectRebuilt(env, 'public.nokey', 'nokey', ['a', 'b'], ['a', 'b'])) +
      (await expectRebuilt(env, 'My Schema.Weird "Name", x', '"My Schema"."Weird ""Name"", x"', ['id'], ['id', 'my col']));
    const ops = await withDb(env.url, async (c) => (await c.query(`SELECT DISTINCT snapshot_lsn::text AS s FROM cdc_registry.reloads WHERE reason IN ('initial', 'joined')`)).rows);
    expect(ops).toHaveLength(1);
    const parts = reloadSets(env.outDir, 'public.items')[0].files.length;
    console.log(`initial export under a writer (${txns} transactions): ${n} rows rebuilt equal; items in ${parts} ctid parts`);
    expect(parts).toBeGreaterThan(1);
    expect(txns).toBeGreaterThan(10);
  });

  it('the reload files equal psql COPY ... (FORMAT csv, HEADER) byte for byte', async () => {
    const [set] = reloadSets(env.outDir, 'public.quiet');
    expect(set.files.length).toBeGreaterThan(1);
    const parts = set.files.map((f) => zlib.gunzipSync(readFileSync(f)));
    const header = parts[0].subarray(0, parts[0].indexOf(0x0a) + 1);
    for (const p of parts) expect(p.subarray(0, header.length).equals(header)).toBe(true);
    const joined = Buffer.concat([header, ...parts.map((p) => p.subarray(header.length))]);
    const psql = await copyOut(env.url, 'COPY quiet TO STDOUT (FORMAT csv, HEADER)');
    expect(joined.equals(psql)).toBe(true);
  });

  it("a marker in the application's transaction reloads with that transaction's changes, puts the comment back; a rolled-back one does nothing", async () => {
    const before = await withDb(env.url, async (c) => Number((await c.query(`SELECT count(*) FROM cdc_registry.reloads WHERE table_name = 'orders'`)).rows[0].count));
    const markerLsn = await withDb(env.url, async (c) => {
      await c.query(`BEGIN; UPDATE orders SET status = 'shipped' WHERE id <= 1500; COMMENT ON TABLE orders IS 'pg-egress:reload'; COMMIT`);
      return (await c.query(`SELECT pg_current_wal_insert_lsn()::text AS l`)).rows[0].l as string;
    });
    await waitFor('the marker reload done', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE table_name = 'orders' AND reason = 'marker' AND state = 'done'`)).rowCount === 1),
    );
    const op = await withDb(env.url, async (c) =>
      (await c.query(`SELECT reason, requested_lsn::text AS req, snapshot_lsn::text AS snap, (snapshot_lsn > requested_lsn) AS after, requested_lsn <= $1::pg_lsn AS ok FROM cdc_registry.reloads WHERE table_name = 'orders' AND reason = 'marker'`, [markerLsn])).rows,
    );
    expect(op).toHaveLength(1);
    expect(op[0].after).toBe(true);
    expect(op[0].ok).toBe(true);
    const sets = reloadSets(env.outDir, 'public.orders');
    const newest = readReloadRows(sets[sets.length - 1].files).rows;
    expect(newest).toHaveLength(2000);
    expect(newest.filter((r) => r.get('status')!.toString() === 'shipped')).toHaveLength(1500);
    await waitFor('comment restored', () => withDb(env.url, async (c) => (await c.query(`SELECT obj_description('orders'::regclass) AS d`)).rows[0].d === 'orders of the shop'));

    await withDb(env.url, (c) => c.query(`BEGIN; COMMENT ON TABLE orders IS 'pg-egress:reload'; UPDATE orders SET status = 'x'; ROLLBACK`));
    await withDb(env.url, (c) => c.query(`INSERT INTO orders VALUES (5000, 'after')`));
    // Registered past the rolled-back marker: a request would have been registered with it.
    await waitCaughtUp(env);
    const after = await withDb(env.url, async (c) => Number((await c.query(`SELECT count(*) FROM cdc_registry.reloads WHERE table_name = 'orders'`)).rows[0].count));
    expect(after).toBe(before + 1);
    await expectRebuilt(env, 'public.orders', 'orders', ['id'], ['id', 'status']);
    expect((await withDb(env.url, (c) => c.query(`SELECT obj_description('orders'::regclass) AS d`))).rows[0].d).toBe('orders of the shop');
  });

  it('pg-egress reload --wait follows the export; an unknown table is one line and exit 7', async () => {
    const r = await runCli(['reload', 'public.items', 'public.quiet', '--config', env.configPath, '--wait']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/reload requested: public.items, public.quiet/);
    expect(r.stdout).toMatch(/public.items: done, \d+ rows/);
    const bad = await runCli(['reload', 'nosuch.table', '--config', env.configPath]);
    expect(bad.code).toBe(7);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/table nosuch.table is not published/);
    // One unknown table among known ones: nothing is requested, not even for the known ones.
    const reloadRows = async () => Number((await withDb(env.url, (c) => c.query<{ n: string }>(`SELECT count(*)::text AS n FROM cdc_registry.reloads`))).rows[0].n);
    const before = await reloadRows();
    const mixed = await runCli(['reload', 'public.items', 'nosuch.table', 'public.quiet', '--config', env.configPath]);
    expect(mixed.code).toBe(7);
    expect(mixed.stderr.trim().split('\n')).toHaveLength(1);
    expect(mixed.stderr).toMatch(/table nosuch.table is not published .*nothing was requested/);
    await waitCaughtUp(env);
    expect(await reloadRows()).toBe(before);
    const st = await runCli(['status', '--config', env.configPath, '--json']);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout).reloads.some((o: { table: string; state: string }) => o.table === 'public.items' && o.state === 'done')).toBe(true);
    await expectRebuilt(env, 'public.items', 'items', ['id'], ['id', 'v', 'n']);
  });

  it('status names the long-running transaction that delays an export snapshot', async () => {
    const blocker = new pg.Client({ connectionString: env.url });
    await blocker.connect();
    try {
      await blocker.query(`BEGIN; INSERT INTO orders VALUES (7777, 'held')`);
      const { rows } = await blocker.query(`SELECT pg_backend_pid()::text AS pid, txid_current()::text AS xid`);
      expect((await runCli(['reload', 'public.orders', '--config', env.configPath])).code).toBe(0);
      // The snapshot waits for every transaction of the cluster, and the test files share one:
      // another file's transaction may be named first, until it ends.
      const waiting = await waitFor('status shows what the export waits on', async () => {
        const st = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout) as { reloads: { table: string; waiting_on: string | null }[] };
        const w = st.reloads.find((o) => o.table === 'public.orders' && o.waiting_on)?.waiting_on ?? null;
        return w?.includes(`transaction ${rows[0].xid} `) ? w : null;
      });
      expect(waiting).toMatch(new RegExp(`waits for transaction ${rows[0].xid} \\(pid ${rows[0].pid}, running for `));
      const text = await runCli(['status', '--config', env.configPath]);
      expect(text.stdout).toMatch(/public.orders (pending|running) \(marker\).*waits for transaction/);
      await blocker.query('COMMIT');
    } finally {
      await blocker.end();
    }
    await waitReloads(env.url, 1);
    await waitCaughtUp(env);
    await expectRebuilt(env, 'public.orders', 'orders', ['id'], ['id', 'status']);
  });

  it('a table that joins at start-up with rows (tables.include changed) is exported automatically', async () => {
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    await withDb(env.url, (c) => c.query(`CREATE SCHEMA late; CREATE TABLE late.t (id int PRIMARY KEY, v text); INSERT INTO late.t SELECT g, 'l' || g FROM generate_series(1, 500) g`));
    // The default include is "*.*" in tests; narrow it, then widen it.
    writeConfig(env, 'reload:\n  workers: 3\n  chunk_size: 64kB\ntables:\n  include: ["public.*", "My Schema.*"]');
    const d1 = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    d1.proc.kill('SIGTERM');
    await d1.exit;
    const cfgText = readFileSync(env.configPath, 'utf8').replace('include: ["public.*", "My Schema.*"]', 'include: ["public.*", "My Schema.*", "late.*"]');
    writeFileSync(env.configPath, cfgText);
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`UPDATE late.t SET v = 'changed' WHERE id = 1`));
    await waitCaughtUp(env);
    await waitFor('late.t exported', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE schema_name = 'late' AND state = 'done'`)).rowCount === 1));
    await expectRebuilt(env, 'late.t', 'late.t', ['id'], ['id', 'v']);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
  });
});

describe('no free replication slot for the export', () => {
  let cluster: Cluster;
  afterAll(() => {
    try {
      cluster?.stop('immediate');
    } catch {
      // already stopped
    }
    cluster?.destroy();
  });

  it('waits visibly (log and status) instead of hanging without a word', async () => {
    cluster = await createCluster({ fsync: 'off', wal_level: 'logical', max_replication_slots: '1', max_wal_senders: '4' });
    cluster.start();
    const env = await createEnv({ adminUrl: cluster.url('postgres') });
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)`));
    const d = spawnCli(['run', '--config', env.configPath]);
    try {
      await waitFor('the daemon says it waits for a free slot', async () => (/waiting for a free replication slot for the export snapshot \(raise max_replication_slots/.test(d.stdout()) ? true : null), { timeoutMs: 60_000 });
      const st = await runCli(['status', '--config', env.configPath, '--json']);
      const ops = JSON.parse(st.stdout).reloads as { waiting_on: string | null }[];
      expect(ops.some((o) => /free replication slot/.test(o.waiting_on ?? ''))).toBe(true);
    } finally {
      d.proc.kill('SIGKILL');
      await d.exit;
    }
  });
});
