/**
 * Consistent exports at size: a 2M-row table (PG_EGRESS_TEST_FULL=1; in a quick run 120k rows
 * stored at fillfactor 10, still larger than shared_buffers/4, where synchronized scans start) in
 * ctid chunks on several workers while the main
 * slot keeps being confirmed; four tables at once from one snapshot; kill -9 during an export;
 * a slot dropped under writes, repaired by exporting every table again. Each check rebuilds the
 * tables from the files by the SPEC §6 rule and compares them with the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import pg from 'pg';
import path from 'node:path';
import { waitFor } from '../harness/pg.js';
import { parseLsn } from '../../src/lsn.js';
import { createEnv, loopWriter, reloadSets, runCli, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';
import { expectRebuiltEqual } from '../helpers/compare.js';
import { FULL, scaled } from '../helpers/scale.js';

/**
 * The big table: 76 bytes a row on disk, so 2M rows are 146 MB, over the test server's
 * shared_buffers/4 (64 MB). A quick run keeps the pages and not the rows: at fillfactor 10 a page
 * takes ~10 rows, so 120k rows are ~90 MB (chunks and synchronized scans go by pages; the rows are
 * what costs time to copy, hash and rebuild). The one-chunk test checks the size.
 */
const ROWS = scaled(2_000_000, 120_000);
const SIZE = FULL ? '2M' : '120k';
const FILL = FULL ? '' : ' WITH (fillfactor = 10)';
const SMALL = scaled(100_000, 20_000);

async function expectRebuilt(env: EgressEnv, table: string, columns = ['id', 'v']): Promise<number> {
  const got = await expectRebuiltEqual(env.outDir, env.url, `public.${table}`, table, ['id'], columns);
  expect(got.reload, `public.${table} has a reload set`).not.toBeNull();
  return got.rows;
}

/** Rows of a table, counted by the server. */
const count = (env: EgressEnv, table: string): Promise<number> => withDb(env.url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n));

async function op(
  env: EgressEnv,
  table: string,
): Promise<{ id: number; state: string; chunks: number; chunks_done: number; workers: number | null; snapshot_lsn: string | null }[]> {
  return withDb(env.url, async (c) =>
    (
      await c.query(
        `SELECT id::int, state, chunks, chunks_done, workers, snapshot_lsn::text FROM cdc_registry.reloads WHERE table_name = $1 AND reason <> 'initial' AND reason <> 'joined' ORDER BY id`,
        [table],
      )
    ).rows.map((r) => ({ ...r, id: Number(r.id) })),
  );
}

async function confirmedLsn(env: EgressEnv): Promise<bigint> {
  return withDb(env.url, async (c) => parseLsn((await c.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [env.slot])).rows[0].l));
}

/** Small transactions on `side` until stopped. */
function sideWriter(url: string, table: string): { stop(): Promise<number> } {
  return loopWriter(url, async (c, n) => {
    await c.query(`INSERT INTO ${table} (v) VALUES ('s' || $1::text)`, [n]);
    if (n % 4 === 0) await c.query(`UPDATE ${table} SET v = v || '+' WHERE id = (SELECT max(id) - 2 FROM ${table})`);
    await sleep(5);
    return 1;
  });
}

describe('large and parallel exports', () => {
  let env: EgressEnv;
  let daemon: Child;
  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'reload:\n  workers: 4\n  chunk_size: 4MB');
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE big (id bigint PRIMARY KEY, v text)${FILL};
        CREATE TABLE side (id serial PRIMARY KEY, v text);
        CREATE TABLE f1 (id int PRIMARY KEY, v text); CREATE TABLE f2 (id int PRIMARY KEY, v text);
        CREATE TABLE f3 (id int PRIMARY KEY, v text); CREATE TABLE f4 (id int PRIMARY KEY, v text);`),
    );
    // The rows are there before the daemon: the initial export takes them (streaming 2M rows
    // through the daemon first proved nothing these tests check, and cost most of their time).
    await withDb(env.url, (c) =>
      c.query(`INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g;
               INSERT INTO f1 SELECT g, 'a' || g FROM generate_series(1, ${SMALL}) g; INSERT INTO f2 SELECT g, 'b' || g FROM generate_series(1, ${SMALL}) g;
               INSERT INTO f3 SELECT g, 'c' || g FROM generate_series(1, ${SMALL}) g; INSERT INTO f4 SELECT g, 'd' || g FROM generate_series(1, ${SMALL}) g;`),
    );
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitFor('the initial exports done', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state <> 'done'`)).rowCount === 0 && (await c.query(`SELECT 1 FROM cdc_registry.reloads`)).rowCount! >= 6),
      { timeoutMs: 180_000, intervalMs: 100 },
    );
    await waitCaughtUp(env, undefined, 180_000);
  }, 300_000);
  afterAll(async () => {
    if (process.env.DEBUG_GAP) console.log(daemon.stdout().slice(-8000), daemon.stderr());
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it(`exports a ${SIZE}-row table in ctid chunks on several workers while the main slot keeps moving`, async () => {
    // The export paused after its first chunk (src/failpoints.ts): the main slot must be confirmed
    // past new rows meanwhile. (Sampling the slot while a fast export ran raced with it.)
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    daemon = spawnCli(['run', '--config', env.configPath], { env: { PG_EGRESS_FAILPOINT: 'export-after-chunk:pause' } });
    await waitSlotActive(env);
    const side = sideWriter(env.url, 'side');
    const r = spawnCli(['reload', 'public.big', '--config', env.configPath, '--wait']);
    let before: bigint;
    let moved: bigint;
    try {
      await waitFor('the export paused after a chunk', async () => daemon.stderr().includes('pg-egress failpoint export-after-chunk: pause'), { timeoutMs: 120_000, intervalMs: 50 });
      before = await confirmedLsn(env);
      await waitCaughtUp(env);
      const [paused] = await op(env, 'big');
      expect(paused.state).toBe('running');
      expect(paused.chunks_done).toBeLessThan(paused.chunks);
      moved = await confirmedLsn(env);
      expect(moved).toBeGreaterThan(before);
    } finally {
      daemon.proc.kill('SIGCONT');
    }
    await r.exit;
    await side.stop();
    expect(r.proc.exitCode, r.stderr()).toBe(0);
    const [o] = await op(env, 'big');
    expect(o.state).toBe('done');
    expect(o.chunks).toBeGreaterThanOrEqual(4);
    expect(o.workers).toBeGreaterThanOrEqual(2);
    console.log(`${SIZE} rows in ${o.chunks} chunks on ${o.workers} workers; the main slot confirmed from ${before.toString(16)} to ${moved.toString(16)} while the export was paused`);
    await waitCaughtUp(env);
    expect(await expectRebuilt(env, 'big')).toBe(ROWS);
    await expectRebuilt(env, 'side');
  }, 300_000);

  it('reloads four tables at once from one snapshot', async () => {
    await withDb(env.url, (c) => c.query(`UPDATE f2 SET v = 'changed' WHERE id % 10 = 0; DELETE FROM f3 WHERE id % 7 = 0`));
    const r = await runCli(['reload', 'public.f1', 'public.f2', 'public.f3', 'public.f4', '--config', env.configPath, '--wait']);
    expect(r.code, r.stderr).toBe(0);
    const ops = await Promise.all(['f1', 'f2', 'f3', 'f4'].map((t) => op(env, t)));
    expect(ops.every((o) => o.length === 1 && o[0].state === 'done')).toBe(true);
    expect(new Set(ops.map((o) => o[0].snapshot_lsn)).size).toBe(1);
    await withDb(env.url, (c) => c.query(`UPDATE f1 SET v = 'after' WHERE id < 10`));
    await waitCaughtUp(env);
    for (const t of ['f1', 'f2', 'f3', 'f4']) await expectRebuilt(env, t);
  }, 300_000);

  it('after kill -9 during an export, exactly one reload set is registered for the operation', async () => {
    await withDb(env.url, (c) => c.query(`UPDATE big SET v = 'k' WHERE id % 100 = 0`));
    expect((await runCli(['reload', 'public.big', '--config', env.configPath])).code).toBe(0);
    // Killed while chunks are being written (files in _tmp), before the set is registered.
    const tmp = path.join(env.outDir, '_tmp');
    await waitFor('the export under way', async () => {
      const o = (await op(env, 'big')).at(-1);
      return o && o.state === 'running' && existsSync(tmp) && readdirSync(tmp).length > 0 ? o : null;
    }, { timeoutMs: 120_000, intervalMs: 10 });
    daemon.proc.kill('SIGKILL');
    await daemon.exit;
    const id = (await op(env, 'big')).at(-1)!.id;
    expect((await op(env, 'big')).at(-1)!.state).toBe('running');
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitFor('the interrupted export redone', async () => ((await op(env, 'big')).find((o) => o.id === id)?.state === 'done' ? true : null), { timeoutMs: 240_000 });
    const batches = await withDb(env.url, async (c) => (await c.query(`SELECT batch_id FROM cdc_registry.reloads WHERE id = $1`, [id])).rows);
    expect(batches).toHaveLength(1);
    const registered = await withDb(env.url, async (c) =>
      (await c.query(`SELECT DISTINCT split_part(path, '/', 2) AS w FROM cdc_registry.files WHERE table_name = 'big' AND file_type = 'full_reload' ORDER BY 1`)).rows.map((r) => r.w as string),
    );
    // On disk: exactly the registered reload folders (the killed attempt left nothing behind).
    const onDisk = reloadSets(env.outDir, 'public.big').map((s) => s.batch).sort();
    expect(onDisk).toEqual(registered);
    expect(registered).toContain(batches[0].batch_id);
    expect(readdirSync(path.join(env.outDir, '_tmp')).length).toBe(0);
    await waitCaughtUp(env);
    expect(await expectRebuilt(env, 'big')).toBe(ROWS);
    const set = reloadSets(env.outDir, 'public.big').at(-1)!;
    expect(set.batch).toBe(batches[0].batch_id);
    expect(set.rows).toBe(ROWS);
  }, 400_000);
  it('a table read in one chunk starts at its first block even while another scan of it is mid-way (no synchronized scan)', async () => {
    // One chunk for the big table (larger than shared_buffers/4, where PostgreSQL lets a new
    // sequential scan join one in progress and start mid-table).
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    writeConfig(env, 'reload:\n  workers: 1\n  chunk_size: 1GB');
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    const first = await withDb(env.url, async (c) => (await c.query(`SELECT id::text FROM big WHERE ctid >= '(0,0)' AND ctid < '(1,0)' ORDER BY ctid LIMIT 1`)).rows[0].id as string);
    // The premise: PostgreSQL lets scans join each other only on tables over shared_buffers/4
    // (initscan in src/backend/access/heap/heapam.c).
    const premise = await withDb(env.url, async (c) => (await c.query(`SELECT pg_relation_size('big') > pg_size_bytes(current_setting('shared_buffers')) / 4 AS over`)).rows[0].over as boolean);
    expect(premise, 'big is larger than shared_buffers/4').toBe(true);
    const scan = new pg.Client({ connectionString: env.url });
    await scan.connect();
    try {
      // Another session's scan stopped half-way: it reported its position for others to join.
      await scan.query('BEGIN');
      await scan.query('DECLARE c NO SCROLL CURSOR FOR SELECT id FROM big');
      await scan.query(`FETCH ${ROWS / 2} FROM c`);
      const r = await runCli(['reload', 'public.big', '--config', env.configPath, '--wait']);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await scan.end();
    }
    const set = reloadSets(env.outDir, 'public.big').at(-1)!;
    expect(set.files.map((f) => path.basename(f))).toEqual(['full_reload.csv.gz']);
    expect(set.rows).toBe(ROWS);
    const [header, row] = await firstLines(set.files[0], 2);
    expect(header.startsWith('id,')).toBe(true);
    expect(row.split(',')[0]).toBe(first);
  }, 300_000);
});

/** The first `n` lines of a gzipped file, without unzipping the rest. */
async function firstLines(file: string, n: number): Promise<string[]> {
  const lines = createInterface({ input: createReadStream(file).pipe(createGunzip()), crlfDelay: Infinity });
  const out: string[] = [];
  for await (const line of lines) {
    out.push(line);
    if (out.length === n) break;
  }
  lines.close();
  return out;
}

describe('gap repair', () => {
  let env: EgressEnv;
  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'reload:\n  workers: 2');
    await withDb(env.url, (c) => c.query(`CREATE TABLE g1 (id serial PRIMARY KEY, v text); CREATE TABLE g2 (id serial PRIMARY KEY, v text); INSERT INTO g2 (v) SELECT 'x' || g FROM generate_series(1, 1000) g`));
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('a slot dropped under writes: gap recorded, slot recreated, every table exported again; the rebuild equals the source', async () => {
    const d = spawnCli(['run', '--config', env.configPath]);
    try {
      await waitSlotActive(env);
      // The first start's exports end first: a gap's request for a table whose export is still
      // pending is absorbed by that request (one pending request per table, registry/
      // reload-requests.ts) and keeps its reason, which made the reasons checked below depend on
      // how fast the start was (seen once in CI: no `gap` reason at all, the gap resolved).
      await waitFor('the initial export done', () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query<{ open: number; n: number }>(`SELECT count(*) FILTER (WHERE state IN ('pending', 'running'))::int AS open, count(*)::int AS n FROM cdc_registry.reloads`);
          return rows[0].n > 0 && rows[0].open === 0;
        }),
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      const w1 = sideWriter(env.url, 'g1');
      const w2 = sideWriter(env.url, 'g2');
      await waitFor('rows streamed before the drop', async () => (await count(env, 'g1')) >= 50, { intervalMs: 50 });
      await waitFor(
        'slot dropped',
        () =>
          withDb(env.url, async (c) => {
            await c.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, [env.slot]);
            try {
              await c.query(`SELECT pg_drop_replication_slot($1)`, [env.slot]);
              return true;
            } catch {
              return false;
            }
          }),
        { timeoutMs: 90_000, intervalMs: 20 },
      );
      // Writes go on across the loss and after the slot is created again.
      await waitFor('the gap recorded and the slot streaming again', () =>
        withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.gaps WHERE kind = 'slot_lost'`)).rowCount === 1),
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      await waitSlotActive(env);
      const n = await count(env, 'g1');
      await waitFor('rows written after the new slot', async () => (await count(env, 'g1')) >= n + 50, { intervalMs: 50 });
      await w1.stop();
      await w2.stop();
      await waitCaughtUp(env);
      await waitFor('gap resolved by reloads', () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query(`SELECT kind, resolved_at IS NOT NULL AS resolved FROM cdc_registry.gaps`);
          return rows.length === 1 && rows[0].kind === 'slot_lost' && rows[0].resolved === true;
        }),
        { timeoutMs: 120_000 },
      );
      expect(d.stdout()).toMatch(/"level":50.*data gap: replication slot .* is gone .*recreating the slot and exporting every published table again/);
      expect(d.proc.exitCode).toBeNull();
      await expectRebuilt(env, 'g1');
      await expectRebuilt(env, 'g2');
      const reasons = await withDb(env.url, async (c) => (await c.query(`SELECT table_name, state FROM cdc_registry.reloads WHERE reason = 'gap' ORDER BY 1`)).rows);
      expect(reasons).toEqual([
        { table_name: 'g1', state: 'done' },
        { table_name: 'g2', state: 'done' },
      ]);
    } finally {
      d.proc.kill('SIGTERM');
      await d.exit;
      if (process.env.DEBUG_GAP) console.log(d.stdout().slice(-6000), d.stderr());
    }
    expect(existsSync(env.outDir)).toBe(true);
  }, 300_000);
});
