/**
 * Exports never hold the application, and DDL that races an export never ends in a wrong or
 * failed set (issue 14, items 3–5 and the reload parts of 8):
 * - `ALTER TABLE ... ADD COLUMN` (no lock_timeout) while a 1M-row export runs: it waits for the
 *   export's copy only, the application's UPDATEs wait only behind it, no pg-egress session keeps
 *   a lock once the copy is over, and the rebuilt table equals the source;
 * - a rewriting `ALTER COLUMN ... TYPE`, `DROP COLUMN`, `ADD COLUMN` and `TRUNCATE` committed
 *   after an export's snapshot while its worker waits for the lock, looped: each is detected and
 *   the export redone from a new snapshot; every registered set rebuilds equal to the source and
 *   no reload ends failed (12 rounds; the first 5 in a quick run);
 * - progress counts rows during a chunk, the `reloaded` line's ms is the export's, no window
 *   folder has an empty manifest, `status` shows the slot's registered LSN right after the initial
 *   export, and /ready's check names a session that waits on an export's lock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { waitFor } from '../harness/pg.js';
import { createEnv, runCli, sleep, spawnCli, startInProcess, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';
import { expectRebuiltEqual } from '../helpers/compare.js';
import { exportLockReasons } from '../../src/http/export-locks.js';
import { parseLsn } from '../../src/lsn.js';
import { scaled } from '../helpers/scale.js';

const WORKER = 'pg-egress reload worker';

interface Op {
  id: number;
  state: string;
  rows: number | null;
  chunks: number | null;
  chunks_done: number;
  attempts: number;
  error: string | null;
  snapshot_lsn: string | null;
  ms: number | null;
  reason: string;
}

async function ops(env: EgressEnv, table: string): Promise<Op[]> {
  return withDb(env.url, async (c) => {
    const { rows } = await c.query<Record<string, string | null>>(
      `SELECT id::text, reason, state, rows::text, chunks::text, chunks_done::text, attempts::text, error, snapshot_lsn::text,
              (extract(epoch FROM finished_at - started_at) * 1000)::bigint::text AS ms
       FROM cdc_registry.reloads r WHERE table_name = $1 ORDER BY r.id`,
      [table],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      state: r.state!,
      rows: r.rows === null ? null : Number(r.rows),
      chunks: r.chunks === null ? null : Number(r.chunks),
      chunks_done: Number(r.chunks_done),
      attempts: Number(r.attempts),
      error: r.error,
      snapshot_lsn: r.snapshot_lsn,
      ms: r.ms === null ? null : Number(r.ms),
      reason: r.reason!,
    }));
  });
}

/** Waits until no reload is pending or running; fails at once on a failed one. */
async function settled(env: EgressEnv, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { busy, failed } = await withDb(env.url, async (c) => {
      const { rows } = await c.query<{ busy: string; failed: string | null }>(
        `SELECT count(*) FILTER (WHERE state IN ('pending', 'running'))::text AS busy, string_agg(error, '; ') FILTER (WHERE state = 'failed') AS failed FROM cdc_registry.reloads`,
      );
      return rows[0];
    });
    expect(failed, 'no reload ends failed').toBeNull();
    if (busy === '0') return;
    if (Date.now() > deadline) throw new Error('timed out waiting for the reloads to finish');
    await sleep(200);
  }
}

async function columnsOf(env: EgressEnv, table: string): Promise<string[]> {
  return withDb(env.url, async (c) => (await c.query<{ a: string }>(`SELECT attname AS a FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [table])).rows.map((r) => r.a));
}

async function expectRebuilt(env: EgressEnv, table: string): Promise<number> {
  const columns = await columnsOf(env, table);
  const got = await expectRebuiltEqual(env.outDir, env.url, `public.${table}`, table, ['id'], columns);
  expect(got.reload, `public.${table} has a reload set`).not.toBeNull();
  return got.rows;
}

/** The `reloaded` log lines of the daemon (JSON). */
function reloadedLines(d: Child): { table: string; rows: number; ms: number; batch: string }[] {
  return d
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"msg":"reloaded"'))
    .map((l) => JSON.parse(l) as { table: string; rows: number; ms: number; batch: string });
}

/** Window folders whose manifest lists no file. */
function emptyManifests(env: EgressEnv): string[] {
  const empty: string[] = [];
  for (const t of readdirSync(env.outDir)) {
    if (t.startsWith('_')) continue;
    for (const w of readdirSync(path.join(env.outDir, t))) {
      const mf = path.join(env.outDir, t, w, 'manifest.json');
      if (!existsSync(mf)) continue;
      // A window with only DDL (ddl.sql) lists no data file, and rightly so.
      const m = JSON.parse(readFileSync(mf, 'utf8')) as { files: unknown[]; ddl_sql: unknown };
      if (m.files.length === 0 && m.ddl_sql === null) empty.push(`${t}/${w}`);
    }
  }
  return empty;
}

describe('exports and DDL on the same tables', () => {
  let env: EgressEnv;
  let daemon: Child;

  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'reload:\n  workers: 2\n  chunk_size: 64MB');
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE big (id bigint PRIMARY KEY, v text, n int, w text);
        INSERT INTO big SELECT g, md5(g::text), 0, md5((g * 7)::text) FROM generate_series(1, 1000000) g;
        CREATE TABLE small (id int PRIMARY KEY, v text);
        INSERT INTO small SELECT g, 's' || g FROM generate_series(1, 1000) g;`),
    );
    await withDb(env.url, (c) => c.query('VACUUM ANALYZE big'));
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
  }, 300_000);

  afterAll(async () => {
    if (process.env.DEBUG_EXPORT) console.log(daemon?.stdout().slice(-20000), daemon?.stderr());
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it('status shows the slot registered at its start right after the initial export (not 0/0)', async () => {
    await settled(env);
    const r = await runCli(['status', '--config', env.configPath]);
    const shown = /registered lsn\s+(\S+)/.exec(r.stdout)?.[1];
    expect(shown, r.stdout).toBeDefined();
    expect(shown).not.toBe('0/0');
    const { registered, confirmed, snapshot } = await withDb(env.url, async (c) => {
      const { rows } = await c.query<{ registered: string; confirmed: string; snapshot: string }>(
        `SELECT (SELECT registered_lsn::text FROM cdc_registry.slot_state WHERE slot_name = $1) AS registered,
                (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1) AS confirmed,
                (SELECT min(snapshot_lsn)::text FROM cdc_registry.reloads) AS snapshot`,
        [env.slot],
      );
      return rows[0];
    });
    expect(shown, JSON.stringify({ registered, confirmed, snapshot })).toBe(registered);
    // The slot's start: at or before the initial export's snapshot and what the slot confirmed.
    expect(parseLsn(shown!)).toBeLessThanOrEqual(parseLsn(snapshot));
    expect(parseLsn(shown!)).toBeLessThanOrEqual(parseLsn(confirmed));
    expect((await ops(env, 'big'))[0]).toMatchObject({ state: 'done', rows: 1_000_000 });
  }, 300_000);

  it("ALTER TABLE ADD COLUMN during a 1M-row export waits for the copy only; the application's UPDATEs wait only behind the ALTER; nothing of ours keeps a lock; the rebuild equals the source", async () => {
    await settled(env);
    const before = (await ops(env, 'big')).length;
    const app = new pg.Client({ connectionString: env.url });
    const ddl = new pg.Client({ connectionString: env.url });
    const mon = new pg.Client({ connectionString: env.url });
    await Promise.all([app.connect(), ddl.connect(), mon.connect()]);
    try {
      const appPid = Number((await app.query<{ p: string }>('SELECT pg_backend_pid()::text AS p')).rows[0].p);
      const ddlPid = Number((await ddl.query<{ p: string }>('SELECT pg_backend_pid()::text AS p')).rows[0].p);
      const reload = spawnCli(['reload', 'public.big', '--config', env.configPath]);
      // The export holds its locks (a worker's ACCESS SHARE on big is granted) and is copying.
      await waitFor(
        'an export worker holding a lock on big',
        async () =>
          (
            await mon.query(
              `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE a.datname = current_database() AND a.application_name = $1 AND l.relation = 'big'::regclass AND l.granted`,
              [WORKER],
            )
          ).rowCount! > 0,
        { timeoutMs: 60_000, intervalMs: 20 },
      );
      expect((await reload.exit).code).toBe(0);
      // The application keeps updating, one statement at a time.
      let stopApp = false;
      let updates = 0;
      const appLoop = (async () => {
        while (!stopApp) {
          await app.query('UPDATE big SET n = n + 1 WHERE id = $1', [1 + (updates % 1000) * 997]);
          updates++;
        }
      })();
      await sleep(50);
      let alterDone = false;
      const alter = ddl.query('ALTER TABLE big ADD COLUMN z int').then(() => (alterDone = true));
      // Watch who waits on whom until the ALTER is through.
      let alterBehindWorker = 0;
      let progressMidChunk = false;
      const problems: string[] = [];
      while (!alterDone && problems.length === 0) {
        // The operation first: once it is past running, its workers had committed before this read.
        const [op] = (await ops(env, 'big')).slice(before);
        const { rows } = await mon.query<{ pid: string; app: string; blockers: string[] | null; blocker_apps: string[] | null }>(
          `SELECT w.pid::text AS pid, w.application_name AS app,
                  array(SELECT b::text FROM unnest(pg_blocking_pids(w.pid)) b) AS blockers,
                  array(SELECT h.application_name FROM unnest(pg_blocking_pids(w.pid)) b JOIN pg_stat_activity h ON h.pid = b) AS blocker_apps
           FROM pg_stat_activity w WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'`,
        );
        if (op?.state === 'running' && op.chunks_done === 0 && (op.rows ?? 0) > 0) progressMidChunk = true;
        for (const r of rows) {
          const blockers = (r.blockers ?? []).map(Number);
          if (Number(r.pid) === appPid && blockers.some((b) => b !== ddlPid)) problems.push(`the application's UPDATE waited on ${r.blocker_apps?.join(', ')}`);
          if (Number(r.pid) === ddlPid) {
            const ours = (r.blocker_apps ?? []).filter((a) => a.startsWith('pg-egress'));
            if (ours.includes(WORKER)) alterBehindWorker++;
            // The ALTER may wait for the export's copy only: never for its registration, its
            // comment, or any other session of ours.
            if (ours.some((a) => a !== WORKER)) problems.push(`the ALTER waited on ${ours.join(', ')}`);
            if (ours.length && op && op.state !== 'running') problems.push(`the ALTER waited on an export worker after the export was ${op.state}`);
          }
        }
        await sleep(30);
      }
      stopApp = true;
      await appLoop;
      expect(problems).toEqual([]);
      await alter;
      expect(alterBehindWorker, 'the ALTER was issued while the export held its locks').toBeGreaterThan(0);
      await settled(env);
      const [op] = (await ops(env, 'big')).slice(before);
      expect(op).toMatchObject({ state: 'done', rows: 1_000_000, attempts: 1 });
      // The marker's comment goes back after the export (COMMENT takes SHARE UPDATE EXCLUSIVE for
      // that moment, under a lock_timeout): once it is back, nothing of ours is left on the table.
      await waitFor('the marker\'s comment put back', async () =>
        withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE comment_pending`)).rowCount === 0
          && (await c.query<{ c: string | null }>(`SELECT obj_description('big'::regclass, 'pg_class') AS c`)).rows[0].c !== 'pg-egress:reload'),
      );
      // No pg-egress session holds anything on the table, nor sits idle in a transaction.
      const held = await mon.query<{ app: string; state: string; mode: string }>(
        `SELECT a.application_name AS app, a.state, l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.relation = 'big'::regclass
           AND a.application_name LIKE 'pg-egress%'`,
      );
      expect(held.rows).toEqual([]);
      // The export's sessions are gone: none sits idle in a transaction (registry transactions of
      // the daemon may be between two statements at this moment, holding nothing on big: above).
      const idle = await mon.query(`SELECT application_name, state, query, backend_xid::text, now() - state_change AS for FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pg-egress%' AND state LIKE 'idle in%'`);
      if (idle.rowCount) console.log('pg-egress sessions idle in a transaction right after the export:', JSON.stringify(idle.rows));
      // This database's only: test files run side by side on the server, other files export too.
      const workers = await mon.query<{ state: string }>(`SELECT state FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, [WORKER]);
      expect(workers.rows).toEqual([]);
      // Progress counted rows while the first chunks were still being copied.
      expect(progressMidChunk, 'rows counted before any chunk ended').toBe(true);
      // The `reloaded` line's ms is the export's (claim to registration), as the registry has it.
      const line = await waitFor('the reloaded line of big', async () => reloadedLines(daemon).filter((l) => l.table === 'public.big' && l.rows === 1_000_000).at(-1));
      console.log(`1M-row export: ${updates} UPDATEs meanwhile, the ALTER seen waiting on a worker ${alterBehindWorker} times; reloaded ms ${line.ms}, registry ${op.ms} ms`);
      expect(line.ms).toBeGreaterThanOrEqual(op.ms! * 0.9 - 100);
      expect(line.ms).toBeLessThanOrEqual(op.ms! * 1.1 + 500);
      await withDb(env.url, (c) => c.query(`UPDATE big SET z = id % 5 WHERE id % 1000 = 0`));
      await waitCaughtUp(env);
      expect(await expectRebuilt(env, 'big')).toBe(1_000_000);
    } finally {
      await Promise.all([app.end(), ddl.end(), mon.end()]);
    }
  }, 600_000);

  it('no window folder holds a manifest without files', () => {
    const manifests = readdirSync(env.outDir).filter((t) => !t.startsWith('_')).flatMap((t) => readdirSync(path.join(env.outDir, t)));
    expect(manifests.length).toBeGreaterThan(3);
    expect(emptyManifests(env)).toEqual([]);
  });

  it("/ready's check names a session that has waited longer than the bound on an export's lock", async () => {
    const holder = new pg.Client({ connectionString: env.url });
    const waiter = new pg.Client({ connectionString: env.url });
    const pool = new pg.Pool({ connectionString: env.url, max: 1 });
    await Promise.all([holder.connect(), waiter.connect()]);
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE small IN ACCESS SHARE MODE');
      const pid = Number((await holder.query<{ p: string }>('SELECT pg_backend_pid()::text AS p')).rows[0].p);
      const since = Date.now() - 10_000;
      // Held, busy and nobody waiting: ready. Held idle in the transaction past the bound: not.
      expect(await exportLockReasons(pool, [{ pid, since, tables: ['public.small'] }], 60_000)).toEqual([]);
      await sleep(300);
      expect(await exportLockReasons(pool, [{ pid, since, tables: ['public.small'] }], 200)).toEqual([
        expect.stringMatching(new RegExp(`^an export session \\(pid ${pid}\\) has held its locks on public.small idle in a transaction for \\d+ s \\(bound 0.2 s\\)$`)),
      ]);
      // The export's first worker waiting for the others' COPYs is idle for a reason: its locks
      // keep their copies safe (src/reload/chunk-queue.ts).
      expect(await exportLockReasons(pool, [{ pid, since, tables: ['public.small'], peersCopying: true }], 200)).toEqual([]);
      const waiterPid = Number((await waiter.query<{ p: string }>('SELECT pg_backend_pid()::text AS p')).rows[0].p);
      const alter = waiter.query('ALTER TABLE small ADD COLUMN q int');
      const reasons = await waitFor('a reason naming the waiter', async () => {
        const r = (await exportLockReasons(pool, [{ pid, since, tables: ['public.small'] }], 200)).filter((x) => x.includes(`pid ${waiterPid}`));
        return r.length ? r : null;
      });
      expect(reasons[0]).toMatch(new RegExp(`an export of small holds a lock that pid ${waiterPid} has waited for \\d+ s \\(bound 0.2 s\\)`));
      // Within the bound, or held for less than it: ready.
      expect(await exportLockReasons(pool, [{ pid, since: Date.now(), tables: ['public.small'] }], 200)).toEqual([]);
      await holder.query('COMMIT');
      await alter;
      await waiter.query('ALTER TABLE small DROP COLUMN q');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await Promise.all([holder.end(), waiter.end(), pool.end()]);
    }
  });
});

/** The race table's rows: each round exports and rebuilds it; the race is in the DDL, not the size. */
const RACE_ROWS = scaled(50_000, 10_000);

describe('DDL committed after an export\'s snapshot, before its lock', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  let ddl: pg.Client;
  /** The DDL the next export runs in its race window (after the snapshot, before the lock). */
  let raceWith: string[] = [];
  let raced = 0;

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE race (id int PRIMARY KEY, a int, b text, d int);
        INSERT INTO race SELECT g, g, 'r' || g, g % 13 FROM generate_series(1, ${RACE_ROWS}) g;
        COMMENT ON TABLE race IS 'the race table';`),
    );
    ddl = new pg.Client({ connectionString: env.url });
    await ddl.connect();
    daemon = startInProcess(env, {
      exportHooks: {
        afterSnapshot: async (tables) => {
          if (!tables.includes('public.race') || !raceWith.length) return;
          const sql = raceWith;
          raceWith = [];
          // Autocommit: each statement commits after the snapshot, before the workers' lock.
          for (const q of sql) await ddl.query(q);
          raced++;
        },
      },
    });
    await waitSlotActive(env);
    await settled(env);
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop();
    await ddl?.end();
    await env?.drop();
  });

  it('rewriting ALTER COLUMN TYPE, DROP COLUMN, ADD COLUMN and TRUNCATE, looped: each export is redone from a new snapshot; every set rebuilds equal; none fails', async () => {
    const rounds: { what: string; sql: string[] }[] = [
      { what: 'ALTER COLUMN a TYPE bigint (rewrite)', sql: ['ALTER TABLE race ALTER COLUMN a TYPE bigint'] },
      { what: 'DROP COLUMN d', sql: ['ALTER TABLE race DROP COLUMN d'] },
      { what: 'ADD COLUMN d', sql: ['ALTER TABLE race ADD COLUMN d int'] },
      { what: 'TRUNCATE', sql: ['TRUNCATE race', `INSERT INTO race (id, a, b) SELECT g, g, 't' || g FROM generate_series(1, ${(RACE_ROWS * 2) / 5}) g`] },
      { what: 'ALTER COLUMN a TYPE int (rewrite)', sql: ['ALTER TABLE race ALTER COLUMN a TYPE int'] },
      { what: 'ALTER COLUMN b TYPE varchar(40)', sql: ['ALTER TABLE race ALTER COLUMN b TYPE varchar(40)'] },
      { what: 'ALTER COLUMN a TYPE bigint (rewrite)', sql: ['ALTER TABLE race ALTER COLUMN a TYPE bigint'] },
      { what: 'DROP COLUMN d', sql: ['ALTER TABLE race DROP COLUMN d'] },
      { what: 'ALTER COLUMN b TYPE text', sql: ['ALTER TABLE race ALTER COLUMN b TYPE text'] },
      { what: 'ADD COLUMN d with a volatile default (rewrite)', sql: ['ALTER TABLE race ADD COLUMN d int DEFAULT (random() * 10)::int'] },
      { what: 'TRUNCATE', sql: ['TRUNCATE race', `INSERT INTO race (id, a, b) SELECT g, g, 'u' || g FROM generate_series(1, ${(RACE_ROWS * 3) / 5}) g`] },
      { what: 'ALTER COLUMN a TYPE int (rewrite)', sql: ['ALTER TABLE race ALTER COLUMN a TYPE int'] },
    ].slice(0, scaled(12, 5));
    for (const [i, round] of rounds.entries()) {
      const opsBefore = (await ops(env, 'race')).length;
      const racedBefore = raced;
      await withDb(env.url, async (c) => {
        await c.query(`UPDATE race SET b = b || '.' WHERE id % 97 = $1`, [i]);
        raceWith = round.sql;
        await c.query(`COMMENT ON TABLE race IS 'pg-egress:reload'`);
      });
      await waitFor(`round ${i}: the export ran into the DDL`, async () => raced > racedBefore, { timeoutMs: 60_000, intervalMs: 50 });
      await settled(env);
      const all = (await ops(env, 'race')).slice(opsBefore);
      // The marker's export ran into the DDL and was redone from a new snapshot, or, when the DDL
      // changed values (reason 'ddl', README "Value-changing DDL") and its own request was already
      // waiting, handed over to that request (cancelled, superseded) or merged with it. Either way:
      // none failed, a registered set taken after the DDL, and the table rebuilds equal.
      const what = `round ${i} (${round.what}): ${JSON.stringify(all)}`;
      expect(all.filter((x) => !['done', 'cancelled'].includes(x.state)), what).toEqual([]);
      for (const x of all.filter((o) => o.state === 'cancelled')) expect(x.error, what).toMatch(/DDL committed after the export's snapshot/);
      // (A DDL that changes values asks for an export of its own besides the marker's: two sets.)
      const mine = all.filter((x) => x.state === 'done');
      expect(mine.length, what).toBeGreaterThanOrEqual(1);
      for (const m of mine) if (m.reason === 'marker') expect(m.attempts, `${what}: redone`).toBeGreaterThanOrEqual(2);
      await waitCaughtUp(env);
      const size = await expectRebuilt(env, 'race');
      expect(mine[0].rows).toBeGreaterThan(0);
      console.log(`round ${i}: ${round.what} committed after the snapshot; redone (attempts ${mine[0].attempts}), ${mine[0].rows} rows registered; ${size} rows rebuilt equal`);
    }
    // The table's own comment comes back once the exports are registered.
    await waitFor('the comment put back', async () => withDb(env.url, async (c) => (await c.query<{ c: string | null }>(`SELECT obj_description('race'::regclass, 'pg_class') AS c`)).rows[0].c === 'the race table'), { timeoutMs: 90_000 });
    expect(emptyManifests(env)).toEqual([]);
  }, 900_000);
});
