/**
 * Partitioned tables as leaves (SPEC §3 "Partitioned tables"): partition rotation under a writer
 * on a range-partitioned root — TRUNCATE of one partition, DETACH, ATTACH of a table that already
 * holds 3,000 rows, DROP of a partition, CREATE ... PARTITION OF — with the writer inserting,
 * updating, and moving rows between partitions. Afterwards every leaf, and the root as the union of
 * the leaves its partitions.yml lists, rebuild equal to the source, and the only exports are the
 * initial one and the attached table's. Membership changes across kill -9: 4 kills under
 * PG_EGRESS_TEST_FULL=1, 2 by default (test/helpers/scale.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type pg from 'pg';
import { createEnv, loopWriter, readStreamingRows, rebuildFromOutput, reloadSets, runCli, sleep, sortedEntries, spawnCli, sourceRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { rebuildRoot } from '../helpers/partitions.js';
import { scaled } from '../helpers/scale.js';
import { waitFor } from '../harness/pg.js';
import { verifyOutput } from '../../src/proof/verify.js';
import { loadMigrations, migrate } from '../../src/registry/migrate.js';

const KEY = ['id', 'ts'];
const COLS = ['id', 'ts', 'v'];
const month = (m: number) => `2026-${String(m).padStart(2, '0')}-01`;
const range = (m: number) => `FOR VALUES FROM ('${month(m)}') TO ('${month(m + 1)}')`;

async function reloadsDone(url: string, n: number): Promise<void> {
  await waitFor(`${n} reloads done`, () =>
    withDb(url, async (c) => {
      const { rows } = await c.query<{ n: string; bad: string }>(
        `SELECT count(*) FILTER (WHERE state = 'done')::text AS n, count(*) FILTER (WHERE state IN ('failed', 'cancelled'))::text AS bad FROM cdc_registry.reloads`,
      );
      if (Number(rows[0].bad)) throw new Error('a reload failed or was cancelled');
      return Number(rows[0].n) >= n;
    }),
  );
}

describe('partitioned tables as leaves', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;

  beforeAll(async () => {
    env = await createEnv();
    // Only the root is selected by name: its leaves are selected through it.
    writeConfig(env, 'tables:\n  include: ["public.events"]\npublication_check: 1s');
    await withDb(env.url, async (c) => {
      await c.query(`CREATE TABLE events (id bigint, ts date, v text, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`);
      for (let m = 1; m <= 5; m++) {
        await c.query(`CREATE TABLE events_2026_0${m} PARTITION OF events ${range(m)}`);
        await c.query(`INSERT INTO events SELECT ${m} * 100000 + g, date '${month(m)}' + (g % 28), 'initial ' || g FROM generate_series(1, 500) g`);
      }
      // A table of the next month, filled before it is attached (not selected on its own).
      await c.query(`CREATE TABLE events_staging (id bigint, ts date, v text, PRIMARY KEY (id, ts))`);
      await c.query(`INSERT INTO events_staging SELECT 600000 + g, date '${month(6)}' + (g % 30), 'staged ' || g FROM generate_series(1, 3000) g`);
    });
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await reloadsDone(env.url, 5);
  });

  afterAll(async () => {
    await daemon?.stop().catch(() => undefined);
    await env?.drop();
  });

  it('publishes the leaves, not the root, and not via the root', async () => {
    await withDb(env.url, async (c) => {
      const pub = await c.query(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [env.slot]);
      expect(pub.rows.map((r) => r.t)).toEqual([1, 2, 3, 4, 5].map((m) => `public.events_2026_0${m}`));
      expect((await c.query(`SELECT pubviaroot FROM pg_publication WHERE pubname = $1`, [env.slot])).rows[0].pubviaroot).toBe(false);
    });
  });

  it('rotation under a writer: every leaf and the root rebuild equal to the source, with no export beyond the initial one and the attached table', async () => {
    // Months the writer may write to: partitions that no DDL below takes away.
    const live = [1, 4, 5];
    let nextId = 900000;
    let moves = 0;
    let txns = 0;
    const writer = loopWriter(env.url, async (c: pg.Client) => {
      const ms = [...live];
      const pick = () => ms[Math.floor(Math.random() * ms.length)];
      const where = ms.map((m) => `(ts >= '${month(m)}' AND ts < '${month(m + 1)}')`).join(' OR ');
      await c.query('BEGIN');
      for (let i = 0; i < 4; i++) await c.query(`INSERT INTO events VALUES ($1, date '${month(pick())}' + $2::int, 'w')`, [nextId++, nextId % 27]);
      await c.query(`UPDATE events SET v = v || '+' WHERE (id, ts) IN (SELECT id, ts FROM events WHERE ${where} ORDER BY random() LIMIT 3)`);
      // A row moving to another partition: a D in the old leaf and an I in the new one.
      const moved = await c.query(`UPDATE events SET ts = date '${month(pick())}' + 3, v = 'moved' WHERE (id, ts) IN (SELECT id, ts FROM events WHERE ${where} ORDER BY random() LIMIT 1)`);
      await c.query('COMMIT');
      moves += moved.rowCount ?? 0;
      txns++;
      return 1;
    });
    let steps = 0;
    const progress = async (n: number) => {
      const target = txns + n;
      await waitFor(`${n} more writer transactions`, async () => txns >= target, { timeoutMs: 60_000, intervalMs: 50 });
      steps += n;
    };
    try {
      await progress(5);
      await withDb(env.url, (c) => c.query(`TRUNCATE events_2026_01`));
      await progress(5);
      await withDb(env.url, (c) => c.query(`ALTER TABLE events DETACH PARTITION events_2026_02`));
      await progress(5);
      await withDb(env.url, (c) => c.query(`ALTER TABLE events ATTACH PARTITION events_staging ${range(6)}`));
      live.push(6);
      await progress(5);
      await withDb(env.url, (c) => c.query(`DROP TABLE events_2026_03`));
      await progress(5);
      await withDb(env.url, (c) => c.query(`CREATE TABLE events_2026_07 PARTITION OF events ${range(7)}`));
      live.push(7);
      await progress(10);
    } finally {
      await writer.stop();
    }
    expect(steps).toBe(35);
    expect(moves).toBeGreaterThan(0);
    await waitCaughtUp(env);
    await reloadsDone(env.url, 6);
    await waitCaughtUp(env);

    // Every leaf rebuilds equal to the source (the detached one as it is: nothing wrote to it since).
    for (const leaf of ['events_2026_01', 'events_2026_02', 'events_2026_04', 'events_2026_05', 'events_staging', 'events_2026_07']) {
      const got = rebuildFromOutput(env.outDir, `public.${leaf}`, KEY, COLS).table;
      const want = await sourceRows(env.url, `public.${leaf}`, KEY, COLS);
      expect(sortedEntries(got), leaf).toEqual(sortedEntries(want));
    }
    // The root: the union of the leaves that partitions.yml lists at the end.
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, COLS);
    expect(root.leaves.map((l) => l.name)).toEqual(['events_2026_01', 'events_2026_04', 'events_2026_05', 'events_2026_07', 'events_staging']);
    const want = await sourceRows(env.url, 'public.events', KEY, COLS);
    expect(want.size).toBeGreaterThan(3000);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(want));
    const last = root.windows[root.windows.length - 1].doc;
    expect(last.partitions.map((p) => p.name)).toEqual(root.leaves.map((l) => l.name));
    expect(last.partitions.find((p) => p.name === 'events_2026_07')).toMatchObject({ parent: { schema: 'public', name: 'events' }, bounds: range(7) });

    // Each membership change once, in LSN order, each at the LSN of its own transaction.
    const changes = root.windows.flatMap((w) => w.doc.changes);
    expect(changes.map((c) => `${c.kind} ${c.name}`)).toEqual([
      ...[1, 2, 3, 4, 5].map((m) => `initial events_2026_0${m}`),
      'detach events_2026_02',
      'attach events_staging',
      'drop events_2026_03',
      'create events_2026_07',
    ]);
    expect([...changes.map((c) => c.lsn)].sort()).toEqual(changes.map((c) => c.lsn));
    for (const w of root.windows) {
      // Listed in the manifest and hashed like any file; no data file; ddl.sql beside it.
      expect(w.manifest.partitions_yml).toEqual({ name: 'partitions.yml', sha256: w.partitionsSha256 });
      expect(w.manifest.files).toEqual([]);
      expect(w.ddl).not.toBeNull();
    }
    const ddl = root.windows.map((w) => w.ddl).join('');
    expect(ddl).toMatch(/DETACH PARTITION events_2026_02;/);
    expect(ddl).toMatch(/ATTACH PARTITION events_staging FOR VALUES/);
    expect(ddl).toMatch(/DROP TABLE events_2026_03;/);
    expect(ddl).toMatch(/CREATE TABLE events_2026_07 PARTITION OF events/);
    expect(readdirSync(path.join(env.outDir, 'public.events')).flatMap((b) => readdirSync(path.join(env.outDir, 'public.events', b))).filter((f) => f.endsWith('.csv.gz'))).toEqual([]);

    // Exports: the five leaves at the start (the first run's publication check asks for them as
    // 'joined', the initial export's request is the same operation), the attached table at its
    // ATTACH ('joined'); nothing else.
    const reasons = await withDb(env.url, async (c) => (await c.query(`SELECT table_name, reason FROM cdc_registry.reloads ORDER BY table_name`)).rows);
    expect(reasons.map((r) => r.table_name)).toEqual([...[1, 2, 3, 4, 5].map((m) => `events_2026_0${m}`), 'events_staging']);
    expect(reasons.every((r) => r.reason === 'initial' || r.reason === 'joined')).toBe(true);
    expect(reloadSets(env.outDir, 'public.events')).toEqual([]);
    expect(reloadSets(env.outDir, 'public.events_2026_07')).toEqual([]);
    for (const m of [1, 2, 4, 5]) expect(reloadSets(env.outDir, `public.events_2026_0${m}`)).toHaveLength(1);
    const staged = reloadSets(env.outDir, 'public.events_staging');
    expect(staged).toHaveLength(1);
    // Its 3,000 rows, give or take the writer's: once attached, month 6 is the writer's too, which
    // adds rows to it and moves some out before the export's snapshot (a loaded run: 2,998).
    expect(staged[0].rows).toBeGreaterThanOrEqual(3000 - moves);
    expect(staged[0].lsn >= changes.find((c) => c.kind === 'attach')!.lsn).toBe(true);

    // TRUNCATE of a leaf is a T row in its own folder; a moved row is D then I, consecutive _seq.
    expect(readStreamingRows(env.outDir, 'public.events_2026_01').rows.filter((r) => r.op === 'T')).toHaveLength(1);
    const all = ['events_2026_01', 'events_2026_04', 'events_2026_05', 'events_staging', 'events_2026_07'].flatMap((t) =>
      readStreamingRows(env.outDir, `public.${t}`).rows.map((r) => ({ ...r, leaf: t })),
    );
    const movedIn = all.filter((r) => r.op === 'I' && r.values.get('v')?.toString() === 'moved');
    expect(movedIn.length).toBeGreaterThan(0);
    const crossLeaf = movedIn.filter((i) => all.some((d) => d.op === 'D' && d.lsn === i.lsn && d.seq === i.seq - 1 && d.leaf !== i.leaf && d.values.get('id')?.toString() === i.values.get('id')?.toString()));
    expect(crossLeaf.length).toBeGreaterThan(0);
    // The dropped leaf stopped cleanly: its last window records the drop.
    const dropped = path.join(env.outDir, 'public.events_2026_03');
    const lastDropWindow = readdirSync(dropped).sort().pop()!;
    expect(readFileSync(path.join(dropped, lastDropWindow, 'ddl.sql'), 'utf8')).toMatch(/DROP TABLE events_2026_03;/);

    // Every file verifies, partitions.yml included.
    const v = await verifyOutput(env.outDir);
    expect(v.problems).toEqual([]);
  });

  it('status names each leaf\'s root; reload of the root exports each leaf, not the root', async () => {
    const st = await runCli(['status', '--config', env.configPath, '--json']);
    const tables = JSON.parse(st.stdout).tables as { table: string; leaf_of: string | null; partitions: number | null }[];
    expect(tables.find((t) => t.table === 'public.events_2026_04')?.leaf_of).toBe('public.events');
    expect(tables.find((t) => t.table === 'public.events_staging')?.leaf_of).toBe('public.events');
    expect(tables.find((t) => t.table === 'public.events')?.partitions).toBe(5);
    const text = await runCli(['status', '--config', env.configPath]);
    expect(text.stdout).toMatch(/public\.events_2026_04 .*leaf of public\.events/);

    const r = await runCli(['reload', '--config', env.configPath, '--wait', 'public.events']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await withDb(env.url, async (c) => {
      const ops = await c.query(`SELECT table_name, state FROM cdc_registry.reloads WHERE reason = 'marker' ORDER BY table_name`);
      expect(ops.rows).toEqual([
        { table_name: 'events', state: 'expanded' },
        ...['events_2026_01', 'events_2026_04', 'events_2026_05', 'events_2026_07', 'events_staging'].map((t) => ({ table_name: t, state: 'done' })),
      ]);
    });
    // The root's comment is its own again: put back after the expansion, with a bounded lock wait
    // (src/reload/reloader.ts expandRoot), so not necessarily before its leaves are done (CI).
    await waitFor('the root\'s comment restored', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT obj_description('events'::regclass, 'pg_class') AS d`)).rows[0].d === null),
    );
    expect(reloadSets(env.outDir, 'public.events')).toEqual([]);
    await waitCaughtUp(env);
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, COLS);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, COLS)));
    expect(existsSync(path.join(env.outDir, 'public.events_2026_02'))).toBe(true);
  });

  it('multi-level partitions publish the leaves of every level; DDL on the root reaches each leaf; DETACH ... CONCURRENTLY is recorded at its end', async () => {
    await withDb(env.url, async (c) => {
      await c.query(`CREATE TABLE events_2026_08 PARTITION OF events ${range(8)} PARTITION BY HASH (id)`);
      for (const r of [0, 1]) await c.query(`CREATE TABLE events_2026_08_h${r} PARTITION OF events_2026_08 FOR VALUES WITH (MODULUS 2, REMAINDER ${r})`);
      await c.query(`INSERT INTO events SELECT 800000 + g, date '${month(8)}' + (g % 28), 'aug' FROM generate_series(1, 100) g`);
      // Reported by the event trigger for the root only; recorded for each leaf too.
      await c.query(`ALTER TABLE events ADD COLUMN note text`);
      await c.query(`UPDATE events SET note = 'n' WHERE id % 10 = 0`);
      // Two transactions; the leaf leaves the tree (and the publication) in the second.
      await c.query(`ALTER TABLE events DETACH PARTITION events_2026_05 CONCURRENTLY`);
      const pub = await c.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [env.slot]);
      expect(pub.rows.map((r) => r.tablename)).toEqual(['events_2026_01', 'events_2026_04', 'events_2026_07', 'events_2026_08_h0', 'events_2026_08_h1', 'events_staging']);
    });
    await waitCaughtUp(env);
    const cols = [...COLS, 'note'];
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, cols);
    expect(root.leaves.map((l) => l.name)).toEqual(['events_2026_01', 'events_2026_04', 'events_2026_07', 'events_2026_08_h0', 'events_2026_08_h1', 'events_staging']);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, cols)));
    const last = root.windows[root.windows.length - 1].doc;
    expect(last.changes.map((c) => `${c.kind} ${c.name}`)).toContain('detach events_2026_05');
    expect(last.partitions.find((p) => p.name === 'events_2026_08_h1')).toMatchObject({ parent: { schema: 'public', name: 'events_2026_08' }, bounds: 'FOR VALUES WITH (modulus 2, remainder 1)' });
    expect(root.windows.flatMap((w) => w.doc.changes).filter((c) => c.kind === 'create').map((c) => c.name)).toEqual(['events_2026_07', 'events_2026_08_h0', 'events_2026_08_h1']);
    // The root's ALTER TABLE is in an untouched leaf's ddl.sql, and its schema.yml has the column.
    const leafDir = path.join(env.outDir, 'public.events_2026_04');
    const withDdl = readdirSync(leafDir).sort().filter((b) => existsSync(path.join(leafDir, b, 'ddl.sql'))).pop()!;
    expect(readFileSync(path.join(leafDir, withDdl, 'ddl.sql'), 'utf8')).toMatch(/ALTER TABLE events ADD COLUMN note text;/);
    expect(readFileSync(path.join(leafDir, withDdl, 'schema.yml'), 'utf8')).toMatch(/- \{name: note, type: text, type_oid: 25, nullable: true\}/);
    // Still no export beyond the initial ones, the attached table's and the operator's reload.
    const n = await withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.reloads WHERE reason <> 'marker'`)).rows[0].n);
    expect(n).toBe(6);
    expect((await verifyOutput(env.outDir)).problems).toEqual([]);
  });

  it('publish_via_partition_root turned on with the root added by hand: repaired, a gap recorded, the leaves exported again', async () => {
    const before = await withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.reloads WHERE reason = 'gap'`)).rows[0].n);
    expect(before).toBe(0);
    await withDb(env.url, async (c) => {
      // One transaction, so the daemon's check sees both changes at once. The rows are then
      // published as the root's: not in the leaves' streaming files.
      await c.query(`BEGIN;
        ALTER PUBLICATION ${env.slot} ADD TABLE events;
        ALTER PUBLICATION ${env.slot} SET (publish_via_partition_root = true);
        INSERT INTO events VALUES (990001, date '${month(4)}' + 1, 'via root'), (990002, date '${month(7)}' + 1, 'via root');
        COMMIT`);
    });
    await waitFor(
      'the publication repaired and the gap resolved by exports',
      () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query(`SELECT resolved_at IS NOT NULL AS done FROM cdc_registry.gaps WHERE kind = 'publish_options'`);
          return rows.length === 1 && rows[0].done;
        }),
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    await withDb(env.url, async (c) => {
      expect((await c.query(`SELECT pubviaroot FROM pg_publication WHERE pubname = $1`, [env.slot])).rows[0].pubviaroot).toBe(false);
      const pub = await c.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [env.slot]);
      expect(pub.rows.map((r) => r.tablename)).not.toContain('events');
      // Only the leaves were exported again: one gap reload per published leaf.
      const gapReloads = await c.query(`SELECT table_name FROM cdc_registry.reloads WHERE reason = 'gap' AND state = 'done' ORDER BY 1`);
      expect(gapReloads.rows.map((r) => r.table_name)).toEqual(['events_2026_01', 'events_2026_04', 'events_2026_07', 'events_2026_08_h0', 'events_2026_08_h1', 'events_staging']);
      await c.query(`UPDATE events SET v = 'after repair' WHERE id = 990001`);
    });
    await waitCaughtUp(env);
    const cols = [...COLS, 'note'];
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, cols);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, cols)));
    // The rows that came as the root's were written nowhere (the leaves' exports hold them).
    expect(readStreamingRows(env.outDir, 'public.events').rows).toEqual([]);
    expect((await verifyOutput(env.outDir)).problems).toEqual([]);
  });

  it('without DDL capture, the daemon\'s own check records an ATTACH and exports the attached table', async () => {
    await withDb(env.url, async (c) => {
      await c.query(`ALTER EVENT TRIGGER pg_egress_ddl_command_end DISABLE; ALTER EVENT TRIGGER pg_egress_sql_drop DISABLE`);
      try {
        await c.query(`CREATE TABLE events_late (id bigint, ts date, v text, note text, PRIMARY KEY (id, ts))`);
        await c.query(`INSERT INTO events_late SELECT 1000000 + g, date '${month(9)}' + (g % 28), 'late', NULL FROM generate_series(1, 200) g`);
        await c.query(`ALTER TABLE events ATTACH PARTITION events_late ${range(9)}`);
      } finally {
        await c.query(`ALTER EVENT TRIGGER pg_egress_ddl_command_end ENABLE; ALTER EVENT TRIGGER pg_egress_sql_drop ENABLE`);
      }
    });
    await waitFor(
      'the attached table exported',
      () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE table_name = 'events_late' AND state = 'done'`)).rowCount === 1),
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    await withDb(env.url, (c) => c.query(`UPDATE events SET v = 'late+' WHERE id = 1000001`));
    await waitCaughtUp(env);
    const cols = [...COLS, 'note'];
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, cols);
    expect(root.leaves.map((l) => l.name)).toContain('events_late');
    const found = root.windows[root.windows.length - 1];
    expect(found.doc.changes.map((c) => `${c.kind} ${c.name}`)).toEqual(['attach events_late']);
    expect(found.ddl).toMatch(/partitions of public.events as found by pg-egress \(attach public.events_late\)/);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, cols)));
  });

  it('a COMMENT on a leaf or a root syncs no partition tree (sql/018); the comment is remembered, and other DDL still syncs', async () => {
    await withDb(env.url, async (c) => {
      // Per-transaction function counters (pg_stat_xact_user_functions); rolled back at the end.
      await c.query(`SET track_functions = 'all'`);
      await c.query('BEGIN');
      try {
        const calls = async () => {
          const { rows } = await c.query<{ f: string; n: string }>(
            `SELECT funcname AS f, calls::text AS n FROM pg_stat_xact_user_functions WHERE schemaname = 'cdc_registry' AND funcname IN ('on_ddl_command_end', 'sync_partitions')`,
          );
          return Object.fromEntries(rows.map((r) => [r.f, Number(r.n)]));
        };
        await c.query(`COMMENT ON TABLE events_2026_04 IS 'April, kept'`);
        await c.query(`COMMENT ON TABLE events IS 'the root, kept'`);
        expect(await calls()).toEqual({ on_ddl_command_end: 2 });
        const kept = await c.query<{ comment: string }>(
          `SELECT comment FROM cdc_registry.comments WHERE relid IN ('events_2026_04'::regclass, 'events'::regclass) ORDER BY comment`,
        );
        expect(kept.rows.map((r) => r.comment)).toEqual(['April, kept', 'the root, kept']);
        // What a COMMENT skips, a command that can change a tree still does.
        await c.query(`ALTER TABLE events_2026_04 ALTER COLUMN v SET DEFAULT 'x'`);
        expect((await calls()).sync_partitions).toBeGreaterThan(0);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  });
});

describe('a root\'s excluded columns', () => {
  let env: EgressEnv;
  afterAll(async () => {
    await env?.drop();
  });

  it('are in no file of its leaves, also of leaves that match tables.include on their own and of leaves created later', async () => {
    env = await createEnv();
    writeConfig(env, 'publication_check: 1s\ntables:\n  include: ["public.*"]\ncolumns:\n  exclude:\n    public.accounts: [pw]');
    await withDb(env.url, async (c) => {
      await c.query(`CREATE TABLE accounts (id int, region text, pw text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`);
      await c.query(`CREATE TABLE accounts_eu PARTITION OF accounts FOR VALUES IN ('eu')`);
      await c.query(`INSERT INTO accounts SELECT g, 'eu', 'secret-' || g FROM generate_series(1, 50) g`);
    });
    const daemon = startInProcess(env);
    try {
      await waitSlotActive(env);
      await reloadsDone(env.url, 1);
      await withDb(env.url, async (c) => {
        await c.query(`BEGIN; CREATE TABLE accounts_us PARTITION OF accounts FOR VALUES IN ('us'); INSERT INTO accounts VALUES (100, 'us', 'secret-100'); COMMIT`);
        await c.query(`UPDATE accounts SET pw = 'secret-changed' WHERE id = 1`);
        await c.query(`UPDATE accounts SET region = 'us' WHERE id = 2`);
      });
      await waitCaughtUp(env);
    } finally {
      await daemon.stop();
    }
    for (const leaf of ['accounts_eu', 'accounts_us']) {
      const { header, rows } = readStreamingRows(env.outDir, `public.${leaf}`);
      expect(rows.length, leaf).toBeGreaterThan(0);
      for (const h of header) expect(h.slice(6)).toEqual(['id', 'region']);
      const dir = path.join(env.outDir, `public.${leaf}`);
      for (const b of readdirSync(dir)) {
        expect(readFileSync(path.join(dir, b, 'schema.yml'), 'utf8')).not.toMatch(/name: pw/);
        for (const f of readdirSync(path.join(dir, b))) {
          const raw = readFileSync(path.join(dir, b, f));
          const text = f.endsWith('.gz') ? gunzipSync(raw).toString() : raw.toString();
          expect(text, `${leaf}/${b}/${f}`).not.toMatch(/secret-/);
        }
      }
    }
    expect(reloadSets(env.outDir, 'public.accounts_eu')[0].rows).toBe(50);
  });
});

describe('upgrade from a registry that published via the root', () => {
  let env: EgressEnv;
  afterAll(async () => {
    await env?.drop();
  });

  it('switches to leaves without a gap: the leaves are exported, the root rebuilds equal to the source', async () => {
    env = await createEnv();
    writeConfig(env, 'tables:\n  include: ["public.events"]\npublication_check: 1s');
    await withDb(env.url, async (c) => {
      await c.query(`CREATE TABLE events (id bigint, ts date, v text, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`);
      for (const m of [1, 2]) await c.query(`CREATE TABLE events_2026_0${m} PARTITION OF events ${range(m)}`);
      await c.query(`INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN date '${month(1)}' ELSE date '${month(2)}' END + (g % 28), 'old' FROM generate_series(1, 400) g`);
      // What the previous version left: its registry (migrations 1-6), the root in a publication
      // via the root, a slot, the initial export taken, the root known as published.
      await migrate(c, loadMigrations().filter((m) => m.version <= 6));
      await c.query(`INSERT INTO cdc_registry.settings (publication, include) VALUES ($1, '[{"schema": "^public$", "table": "^events$"}]')`, [env.slot]);
      await c.query(`CREATE PUBLICATION ${env.slot} FOR TABLE events WITH (publish_via_partition_root = true)`);
      await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [env.slot]);
      await c.query(`INSERT INTO cdc_registry.slot_state (slot_name, publication, registered_lsn, initial_export_requested) VALUES ($1, $1, pg_current_wal_lsn(), true)`, [env.slot]);
      await c.query(`INSERT INTO cdc_registry.tables (slot_name, schema_name, table_name, relid, published) VALUES ($1, 'public', 'events', 'events'::regclass, true)`, [env.slot]);
      // Written while the old version was stopped: decoded as the root's rows, which the leaves' exports hold.
      await c.query(`UPDATE events SET v = 'changed while stopped' WHERE id <= 10`);
    });
    const daemon = startInProcess(env);
    try {
      await waitSlotActive(env);
      await reloadsDone(env.url, 2);
      await withDb(env.url, (c) => c.query(`INSERT INTO events VALUES (5000, '${month(2)}', 'new'); UPDATE events SET ts = '${month(2)}' WHERE id = 11`));
      await waitCaughtUp(env);
    } finally {
      await daemon.stop();
    }
    await withDb(env.url, async (c) => {
      expect((await c.query(`SELECT pubviaroot FROM pg_publication WHERE pubname = $1`, [env.slot])).rows[0].pubviaroot).toBe(false);
      expect((await c.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [env.slot])).rows.map((r) => r.tablename)).toEqual(['events_2026_01', 'events_2026_02']);
      expect((await c.query(`SELECT kind FROM cdc_registry.gaps`)).rows).toEqual([]);
      expect((await c.query(`SELECT table_name, reason FROM cdc_registry.reloads ORDER BY 1`)).rows).toEqual([
        { table_name: 'events_2026_01', reason: 'joined' },
        { table_name: 'events_2026_02', reason: 'joined' },
      ]);
    });
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, COLS);
    expect(root.windows[0].doc.changes.map((c) => `${c.kind} ${c.name}`)).toEqual(['initial events_2026_01', 'initial events_2026_02']);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, COLS)));
    expect(readStreamingRows(env.outDir, 'public.events').rows).toEqual([]);
  });
});

describe('membership changes across kill -9', () => {
  /** Rounds 2..LAST_ROUND each make a partition, detach the previous one and kill -9 the daemon. */
  const LAST_ROUND = scaled(5, 3);
  let env: EgressEnv;
  afterAll(async () => {
    await env?.drop();
  });

  it('each change is in exactly one registered partitions.yml, whatever moment the daemon dies', async () => {
    env = await createEnv();
    writeConfig(env, 'tables:\n  include: ["public.events"]\npublication_check: 1s');
    await withDb(env.url, async (c) => {
      await c.query(`CREATE TABLE events (id bigint, ts date, v text, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`);
      await c.query(`CREATE TABLE events_2026_01 PARTITION OF events ${range(1)}`);
    });
    const expected = ['initial events_2026_01'];
    for (let round = 2; round <= LAST_ROUND; round++) {
      const d = spawnCli(['run', '--config', env.configPath]);
      try {
        await waitSlotActive(env);
        await withDb(env.url, async (c) => {
          await c.query(`CREATE TABLE events_2026_0${round} PARTITION OF events ${range(round)}`);
          await c.query(`INSERT INTO events VALUES (${round}, '${month(round)}', 'r')`);
          await c.query(`ALTER TABLE events DETACH PARTITION events_2026_0${round - 1}`);
        });
        expected.push(`create events_2026_0${round}`, `detach events_2026_0${round - 1}`);
        await sleep(Math.floor(Math.random() * 1500));
      } finally {
        d.proc.kill('SIGKILL');
        await d.exit;
      }
    }
    const d = spawnCli(['run', '--config', env.configPath]);
    try {
      await waitSlotActive(env);
      await waitCaughtUp(env);
    } finally {
      d.proc.kill('SIGTERM');
      await d.exit;
    }
    const root = rebuildRoot(env.outDir, 'public', 'events', KEY, COLS);
    expect(root.windows.flatMap((w) => w.doc.changes).map((c) => `${c.kind} ${c.name}`)).toEqual(expected);
    expect(root.leaves.map((l) => l.name)).toEqual([`events_2026_0${LAST_ROUND}`]);
    expect(sortedEntries(root.table)).toEqual(sortedEntries(await sourceRows(env.url, 'public.events', KEY, COLS)));
    expect((await verifyOutput(env.outDir)).problems).toEqual([]);
  });
});
