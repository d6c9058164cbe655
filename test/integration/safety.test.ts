/**
 * Safe by default: an operator's mistake or a DBA's action never destroys the archive or loses a
 * change silently. Two daemons on one slot; a dropped registry or a changed slot in front of an
 * existing output.dir; a slot dropped while running; a publication changed behind our back.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { waitFor } from '../harness/pg.js';
import { createEnv, loopWriter, readStreamingRows, rebuild, rebuildFromOutput, runCli, sleep, sortedEntries, sourceRows, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, type Child, type EgressEnv } from '../helpers/egress.js';

/** Inserts (and sometimes updates) rows in the given tables until stopped; returns the count. */
function rowWriter(url: string, tables: string[]): { stop(): Promise<number> } {
  return loopWriter(url, async (c, n) => {
    for (const [i, t] of tables.entries()) {
      await c.query(`INSERT INTO ${t} (v) VALUES ($1)`, [`row ${n + i}`]);
      if ((n + i) % 7 === 0) await c.query(`UPDATE ${t} SET v = v || '+' WHERE id = (SELECT max(id) - 3 FROM ${t})`);
    }
    await sleep(3);
    return tables.length;
  });
}

/** Every file the registry lists is on disk. */
async function registeredFilesPresent(env: EgressEnv): Promise<number> {
  const paths = await withDb(env.url, async (c) => (await c.query<{ path: string }>('SELECT path FROM cdc_registry.files')).rows.map((r) => r.path));
  for (const p of paths) expect(existsSync(path.join(env.outDir, p)), p).toBe(true);
  return paths.length;
}

async function expectRebuilt(env: EgressEnv, table: string): Promise<number> {
  const rows = readStreamingRows(env.outDir, `public.${table}`).rows;
  const got = rebuild(rows, ['id'], ['id', 'v']);
  const want = await sourceRows(env.url, table, ['id'], ['id', 'v']);
  expect(sortedEntries(got)).toEqual(sortedEntries(want));
  return want.size;
}

function countFiles(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

const oneLine = (s: string) => s.trim().split('\n').length === 1;

describe('safe by default', () => {
  const envs: EgressEnv[] = [];
  const children: Child[] = [];
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    for (const e of envs) await e.drop();
  });

  it('a second daemon on the same slot exits 6 naming the first, which keeps running and loses nothing', async () => {
    const env = await createEnv();
    envs.push(env);
    await withDb(env.url, (c) => c.query('CREATE TABLE t1 (id serial PRIMARY KEY, v text); CREATE TABLE t2 (id serial PRIMARY KEY, v text)'));
    const first = spawnCli(['run', '--config', env.configPath]);
    children.push(first);
    await waitSlotActive(env);
    // A large output.dir: many folders that the old start-up sweep walked for a long time.
    for (let i = 0; i < 400; i++) mkdirSync(path.join(env.outDir, `public.t1`, `20000101T00${String(Math.floor(i / 60)).padStart(2, '0')}${String(i % 60).padStart(2, '0')}Z`), { recursive: true });
    const writer = rowWriter(env.url, ['t1', 't2']);
    await waitBatches(env, 1);
    const seconds: { code: number | null; stderr: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const second = spawnCli(['run', '--config', env.configPath], { mayFail: true });
      children.push(second);
      const ex = await second.exit;
      seconds.push({ code: ex.code, stderr: second.stderr() });
      // The first keeps streaming and registering meanwhile.
      await waitBatches(env, 1);
    }
    const written = await writer.stop();
    for (const s of seconds) {
      expect(s.code).toBe(6);
      expect(oneLine(s.stderr)).toBe(true);
      expect(s.stderr).toMatch(new RegExp(`another pg-egress is running with slot "${env.slot}".*pid ${first.proc.pid} on host \\S+.*since \\d{4}-`));
    }
    expect(first.proc.exitCode).toBeNull();
    await waitCaughtUp(env);
    first.proc.kill('SIGTERM');
    expect((await first.exit).code).toBe(0);
    const files = await registeredFilesPresent(env);
    const rows = (await expectRebuilt(env, 't1')) + (await expectRebuilt(env, 't2'));
    console.log(`two daemons: second exited 6 three times; first wrote ${written} rows into ${files} registered files, all present, rebuild equal (${rows} rows)`);
    expect(rows).toBe(written);
    // The empty folders we made are not ours to remove, and were not removed.
    expect(existsSync(path.join(env.outDir, 'public.t1', '20000101T000000Z'))).toBe(true);
  });

  it('refuses, deleting nothing, when the registry was dropped or the slot changed for an existing output.dir', async () => {
    const env = await createEnv();
    envs.push(env);
    await withDb(env.url, (c) => c.query('CREATE TABLE t1 (id serial PRIMARY KEY, v text)'));
    const d = spawnCli(['run', '--config', env.configPath]);
    children.push(d);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) SELECT 'r' || g FROM generate_series(1, 50) g`));
    await waitCaughtUp(env);
    d.proc.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);
    const before = countFiles(env.outDir);
    expect(before).toBeGreaterThanOrEqual(5);

    // A new slot name, same output.dir: refused before any slot is created.
    const other = `${env.slot.slice(0, 50)}_new`;
    const original = readFileSync(env.configPath, 'utf8');
    writeFileSync(env.configPath, original.replace(`slot: ${env.slot}`, `slot: ${other}`).replace(`publication: ${env.slot}`, `publication: ${other}`));
    const moved = await runCli(['run', '--config', env.configPath], { mayFail: true });
    expect(moved.code).toBe(8);
    expect(oneLine(moved.stderr)).toBe(true);
    expect(moved.stderr).toMatch(new RegExp(`output.dir .* belongs to slot "${env.slot}".*set output.dir to a folder of its own`));
    expect(await withDb(env.url, async (c) => (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [other])).rowCount)).toBe(0);
    expect(countFiles(env.outDir)).toBe(before);

    // The registry dropped by a DBA: refused, nothing deleted.
    writeFileSync(env.configPath, original);
    await withDb(env.url, (c) => c.query('DROP SCHEMA cdc_registry CASCADE'));
    const dropped = await runCli(['run', '--config', env.configPath], { mayFail: true });
    expect(dropped.code).toBe(8);
    expect(oneLine(dropped.stderr)).toBe(true);
    expect(dropped.stderr).toMatch(/holds exported files but the registry \(cdc_registry\) has no record of slot .*nothing was deleted/);
    expect(countFiles(env.outDir)).toBe(before);
    const marker = path.join(env.outDir, '_owner.json');
    expect(statSync(marker).isFile()).toBe(true);
  });

  it('a dropped slot is never silently recreated: status exits 6, init refuses, run records the gap and exports every table again', async () => {
    const env = await createEnv();
    envs.push(env);
    await withDb(env.url, (c) => c.query('CREATE TABLE t1 (id serial PRIMARY KEY, v text)'));
    const d = spawnCli(['run', '--config', env.configPath]);
    children.push(d);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) SELECT 'a' || g FROM generate_series(1, 20) g`));
    await waitCaughtUp(env);
    d.proc.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);
    // A DBA drops the slot; meanwhile the application writes.
    await withDb(env.url, (c) => c.query(`SELECT pg_drop_replication_slot($1)`, [env.slot]));
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) SELECT 'lost' || g FROM generate_series(1, 20) g; UPDATE t1 SET v = 'changed' WHERE id <= 5`));
    const st = await runCli(['status', '--config', env.configPath, '--json']);
    expect(st.code).toBe(6);
    expect(JSON.parse(st.stdout).slot.exists).toBe(false);
    const init = await runCli(['init', '--config', env.configPath]);
    expect(init.code).toBe(6);
    expect(oneLine(init.stderr)).toBe(true);
    expect(init.stderr).toMatch(new RegExp(`replication slot "${env.slot}" is gone .*changes committed after [0-9A-F]+/[0-9A-F]+ were not captured.*pg-egress run.* recreates it and exports every table again`));
    expect(await withDb(env.url, async (c) => (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [env.slot])).rowCount)).toBe(0);

    const again = spawnCli(['run', '--config', env.configPath]);
    children.push(again);
    await waitSlotActive(env);
    await waitFor('the gap resolved by a fresh export', () =>
      withDb(env.url, async (c) => {
        const { rows } = await c.query(`SELECT kind, resolved_at IS NOT NULL AS resolved FROM cdc_registry.gaps WHERE slot_name = $1`, [env.slot]);
        return rows.length === 1 && rows[0].kind === 'slot_lost' && rows[0].resolved === true;
      }),
    );
    expect(again.stdout()).toMatch(/"level":50.*data gap: replication slot .* is gone/);
    await waitCaughtUp(env);
    again.proc.kill('SIGTERM');
    expect((await again.exit).code).toBe(0);
    const got = rebuildFromOutput(env.outDir, 'public.t1', ['id'], ['id', 'v']);
    expect(got.reload).not.toBeNull();
    expect(sortedEntries(got.table)).toEqual(sortedEntries(await sourceRows(env.url, 't1', ['id'], ['id', 'v'])));
  });

  it('repairs a tampered publication, records the gaps, and loses nothing after the repair', async () => {
    // The daemon checks the publication every second (default 10 s): the test waits for each repair.
    const env = await createEnv({ config: 'publication_check: 1s' });
    envs.push(env);
    await withDb(env.url, (c) => c.query('CREATE TABLE t1 (id serial PRIMARY KEY, v text); CREATE TABLE t2 (id serial PRIMARY KEY, v text)'));
    const d = spawnCli(['run', '--config', env.configPath]);
    children.push(d);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) VALUES ('a'); INSERT INTO t2 (v) VALUES ('a')`));
    await waitCaughtUp(env);

    // A table dropped from the publication: its rows meanwhile are a gap; it is re-added.
    await withDb(env.url, (c) => c.query(`ALTER PUBLICATION ${env.slot} DROP TABLE t2; INSERT INTO t2 (v) VALUES ('lost')`));
    await waitFor('t2 back in the publication', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND tablename = 't2'`, [env.slot])).rowCount === 1),
    );
    await withDb(env.url, (c) => c.query(`INSERT INTO t2 (v) VALUES ('after re-add'); UPDATE t2 SET v = 'a2' WHERE v = 'a'`));

    // publish narrowed to inserts: repaired, gap recorded, updates and deletes flow again.
    await withDb(env.url, (c) => c.query(`ALTER PUBLICATION ${env.slot} SET (publish = 'insert')`));
    await waitFor('publish options repaired', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_publication WHERE pubname = $1 AND pubupdate AND pubdelete AND pubtruncate`, [env.slot])).rowCount === 1),
    );
    await withDb(env.url, (c) => c.query(`UPDATE t1 SET v = 'after repair'; INSERT INTO t1 (v) VALUES ('b'); DELETE FROM t2 WHERE v = 'lost'`));
    // The gaps are repaired by exporting the tables again.
    await waitFor('gaps resolved', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.gaps WHERE slot_name = $1 AND resolved_at IS NULL`, [env.slot])).rowCount === 0),
    );
    await waitCaughtUp(env);
    d.proc.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);

    const gaps = await withDb(env.url, async (c) => (await c.query(`SELECT kind, table_name, lsn_from, lsn_to FROM cdc_registry.gaps WHERE slot_name = $1 ORDER BY id`, [env.slot])).rows);
    expect(gaps.map((g) => [g.kind, g.table_name])).toEqual([
      ['unpublished', 't2'],
      ['publish_options', null],
    ]);
    expect(d.stdout()).toMatch(/"level":50.*data gap: table public.t2 was missing from publication/);
    // The streaming rows after each repair are there: t2's re-added row, its later UPDATE and DELETE;
    // the row written while t2 was out of the publication is in no streaming file.
    const t2 = readStreamingRows(env.outDir, 'public.t2').rows;
    expect(t2.filter((r) => r.values.get('v')?.toString() === 'after re-add' && r.op === 'I')).toHaveLength(1);
    expect(t2.filter((r) => r.values.get('v')?.toString() === 'a2' && r.op === 'U')).toHaveLength(1);
    expect(t2.filter((r) => r.op === 'D')).toHaveLength(1);
    expect(t2.filter((r) => r.values.get('v')?.toString() === 'lost')).toHaveLength(0);
    // After the fresh exports both tables rebuild to the source.
    for (const t of ['t1', 't2']) {
      const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
      expect(sortedEntries(got.table)).toEqual(sortedEntries(await sourceRows(env.url, t, ['id'], ['id', 'v'])));
    }
  });

  it('a slot held by another consumer at start-up is one line and exit 6, not a retry loop', async () => {
    const env = await createEnv();
    envs.push(env);
    await withDb(env.url, (c) => c.query('CREATE TABLE t1 (id serial PRIMARY KEY, v text)'));
    expect((await runCli(['init', '--config', env.configPath])).code).toBe(0);
    // A foreign consumer (as pg_recvlogical would) streaming from our slot.
    const other = new pg.Client({ connectionString: env.url, replication: 'database' } as pg.ClientConfig);
    await other.connect();
    other.on('error', () => undefined);
    other.query(`START_REPLICATION SLOT ${env.slot} LOGICAL 0/0 (proto_version '1', publication_names '${env.slot}')`).catch(() => undefined);
    try {
      await waitSlotActive(env);
      const r = await runCli(['run', '--config', env.configPath], { mayFail: true });
      expect(r.code).toBe(6);
      expect(oneLine(r.stderr)).toBe(true);
      expect(r.stderr).toMatch(new RegExp(`replication slot "${env.slot}" is in use by server process \\d+.*stop that consumer, or set slot to another name`));
      expect(r.stdout).not.toMatch(/reconnecting/);
    } finally {
      await other.end().catch(() => undefined);
    }
  });
});
