/**
 * Transactions larger than logical_decoding_work_mem (here 64kB, the least the server allows, set
 * on the test database so that its walsender streams them): they arrive in parts while they run
 * (pgoutput protocol 2, src/batch/streamed.ts) and must land in the files exactly as a
 * non-streamed transaction would, at their commit: rolled-back savepoints and aborted
 * transactions leave nothing, a transaction committed meanwhile comes first, and a kill -9 in the
 * middle of one loses and duplicates nothing. Each case rebuilds the tables from the files (SPEC §6)
 * and compares them with the source.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';
import { expectRebuiltEqual } from '../helpers/compare.js';
import { createEnv, readStreamingRows, runCli, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

/** A gauge's value on the daemon's /metrics, or null when absent or unreachable. */
async function metric(port: number, name: string, labels = ''): Promise<number | null> {
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const line = body.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
    return line ? Number(line.split(' ').pop()) : null;
  } catch {
    return null;
  }
}

/**
 * The replays of transactions that carried published rows. The daemon's own registry work in the
 * same database also streams now and then at this setting (nothing of it is published: its replay
 * has no message), and may abort.
 */
const committedLines = (c: Child) =>
  c
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"msg":"streamed transaction committed"') && JSON.parse(l).messages > 0);

describe('transactions streamed in parts', () => {
  let env: EgressEnv;
  let a: pg.Client;
  let b: pg.Client;
  const children: Child[] = [];
  const run = (): Child => {
    const c = spawnCli(['run', '--config', env.configPath]);
    children.push(c);
    return c;
  };

  // A failed test leaves no daemon behind to hold the slot for the next one.
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGKILL');
        await c.exit;
      }
    }
    await a.query('ROLLBACK').catch(() => undefined);
  });

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, async (c) => {
      await c.query(`ALTER DATABASE "${env.dbName}" SET logical_decoding_work_mem = '64kB'`);
      await c.query('CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, n numeric)');
    });
    a = new pg.Client({ connectionString: env.url });
    b = new pg.Client({ connectionString: env.url });
    await a.connect();
    await b.connect();
  });

  afterAll(async () => {
    await a?.end().catch(() => undefined);
    await b?.end().catch(() => undefined);
    await env?.drop();
  });

  it('lands a streamed transaction once, at its commit: without its rolled-back savepoints, after what committed meanwhile; an aborted one leaves nothing', async () => {
    const port = await freePort();
    writeConfig(env, `http:\n  port: ${port}`);
    const child = run();
    await waitSlotActive(env);
    await a.query('BEGIN');
    await a.query(`INSERT INTO t SELECT g, 'first ' || g FROM generate_series(1, 20000) g`);
    // Received in parts and held while the transaction runs: /metrics says how much.
    await waitFor('spooled bytes on /metrics', async () => ((await metric(port, 'pg_egress_spooled_bytes')) ?? 0) > 0, { timeoutMs: 60_000, intervalMs: 50 });
    // And `pg-egress status` (the daemon's status file, written every 5 s), while it is still open.
    await waitFor(
      'the large transaction in `pg-egress status --json`',
      async () => {
        const { spooled } = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout) as { spooled: { transactions: number; bytes: number } | null };
        return spooled !== null && spooled.transactions === 1 && spooled.bytes > 0;
      },
      // Generous: each `status` is a node process of its own, slow on a loaded machine.
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    expect((await runCli(['status', '--config', env.configPath])).stdout).toMatch(/\nlarge txns +1 in progress, \d+\.\d MB received so far/);
    // Committed while the large transaction is open (and partly streamed): it comes first.
    await b.query(`INSERT INTO t VALUES (900001, 'meanwhile')`);
    await a.query('SAVEPOINT s1');
    await a.query(`INSERT INTO t SELECT g, 'rolled back' FROM generate_series(20001, 30000) g`);
    await a.query('SAVEPOINT s2');
    await a.query('INSERT INTO u SELECT g, g FROM generate_series(1, 5000) g');
    await a.query('ROLLBACK TO SAVEPOINT s1');
    await a.query('SAVEPOINT s3');
    await a.query('INSERT INTO u SELECT g, g * 2 FROM generate_series(100001, 110000) g');
    await a.query('RELEASE SAVEPOINT s3');
    await a.query(`UPDATE t SET v = 'updated' WHERE id <= 3000`);
    await a.query('DELETE FROM t WHERE id BETWEEN 3001 AND 4000');
    await a.query('COMMIT');
    await a.query('BEGIN');
    await a.query(`INSERT INTO t SELECT g, 'aborted' FROM generate_series(500001, 520000) g`);
    await a.query('ROLLBACK');
    await b.query(`INSERT INTO t VALUES (900002, 'after')`);
    await waitCaughtUp(env);
    await waitFor('nothing spooled on /metrics', async () => (await metric(port, 'pg_egress_spooled_bytes')) === 0, { timeoutMs: 30_000, intervalMs: 50 });
    // At least ours: the registry's own transactions may stream too (committedLines). The aborted
    // one is not counted here: a walsender that reaches it after the rollback may drop it unsent
    // (seen on PostgreSQL 18, which checks whether a transaction aborted before streaming it).
    expect(await metric(port, 'pg_egress_streamed_transactions', 'outcome="committed"')).toBeGreaterThanOrEqual(1);
    expect(await metric(port, 'pg_egress_streamed_transactions', 'outcome="aborted"')).not.toBeNull();
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);

    // It was streamed (the log says so), with two subtransactions rolled back.
    const lines = committedLines(child);
    expect(lines.length).toBe(1);
    expect(JSON.parse(lines[0]).aborted_subtransactions).toBe(2);

    const t = await expectRebuiltEqual(env.outDir, env.url, 'public.t', 't', ['id'], ['id', 'v']);
    const u = await expectRebuiltEqual(env.outDir, env.url, 'public.u', 'u', ['id'], ['id', 'n']);
    expect(t.rows).toBe(20000 - 1000 + 2);
    expect(u.rows).toBe(10000);
    const rows = readStreamingRows(env.outDir, 'public.t').rows;
    const big = rows.filter((r) => Number(r.values.get('id')) <= 20000);
    // 20,000 inserts, 3,000 updates, 1,000 deletes: one transaction, one commit LSN, in order.
    expect(big.length).toBe(24000);
    expect(new Set(big.map((r) => `${r.lsn}/${r.xid}`)).size).toBe(1);
    const meanwhile = rows.find((r) => r.values.get('v')?.toString() === 'meanwhile')!;
    const after = rows.find((r) => r.values.get('v')?.toString() === 'after')!;
    expect(meanwhile.lsn < big[0].lsn && big[0].lsn < after.lsn).toBe(true);
    expect(rows.filter((r) => ['rolled back', 'aborted'].includes(r.values.get('v')?.toString() ?? '')).length).toBe(0);
    // Nothing spooled stays behind.
    const spoolDir = path.join(env.outDir, '_tmp', 'streamed');
    expect(existsSync(spoolDir) ? readdirSync(spoolDir) : []).toEqual([]);
  }, 180_000);

  it('takes a streamed transaction replayed from another origin (its first part then carries an Origin message)', async () => {
    writeConfig(env, '');
    // What the tests before left in u (10,000 rows when they passed): this test's count stands alone.
    const before = await withDb(env.url, async (c) => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM u')).rows[0].n));
    const child = run();
    await waitSlotActive(env);
    const origin = `o_${env.dbName}`.slice(0, 60);
    const c = new pg.Client({ connectionString: env.url });
    await c.connect();
    try {
      await c.query('SELECT pg_replication_origin_create($1)', [origin]);
      await c.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
      await c.query('BEGIN');
      await c.query(`INSERT INTO u SELECT g, g / 7.0 FROM generate_series(200001, 220000) g`);
      await c.query('COMMIT');
      await c.query('SELECT pg_replication_origin_session_reset()');
      await c.query('SELECT pg_replication_origin_drop($1)', [origin]);
    } finally {
      await c.end();
    }
    await waitCaughtUp(env);
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    expect(committedLines(child).length).toBe(1);
    const u = await expectRebuiltEqual(env.outDir, env.url, 'public.u', 'u', ['id'], ['id', 'n']);
    expect(u.rows).toBe(before + 20000);
  }, 180_000);

  it('loses and duplicates nothing when killed -9 while a streamed transaction is half received', async () => {
    let child = run();
    await waitSlotActive(env);
    const spoolDir = path.join(env.outDir, '_tmp', 'streamed');
    await a.query('BEGIN');
    await a.query(`INSERT INTO t SELECT g, 'part one ' || g FROM generate_series(1000001, 1020000) g`);
    // The first parts are on our side, in a spool file: kill the daemon now.
    await waitFor(
      'a spooled streamed transaction',
      async () => existsSync(spoolDir) && readdirSync(spoolDir).some((f) => statSync(path.join(spoolDir, f)).size > 0),
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    child.proc.kill('SIGKILL');
    expect((await child.exit).signal).toBe('SIGKILL');
    child = run();
    await waitSlotActive(env, 60_000);
    await a.query(`INSERT INTO t SELECT g, 'part two ' || g FROM generate_series(1020001, 1030000) g`);
    await a.query('COMMIT');
    await waitCaughtUp(env);
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    expect(committedLines(child).length).toBe(1);

    await expectRebuiltEqual(env.outDir, env.url, 'public.t', 't', ['id'], ['id', 'v']);
    const rows = readStreamingRows(env.outDir, 'public.t').rows.filter((r) => Number(r.values.get('id')) > 1000000);
    expect(rows.length).toBe(30000);
    expect(new Set(rows.map((r) => r.values.get('id')!.toString())).size).toBe(30000);
  }, 180_000);

  it('with stream_large_transactions: false, takes the same transaction whole at its commit (the walsender spills it)', async () => {
    writeConfig(env, 'stream_large_transactions: false');
    // The slot's spill counter (cumulative; the server writes it when the walsender ends).
    const spills = () =>
      withDb(env.url, async (c) => {
        const r = await c.query<{ n: string }>('SELECT coalesce(sum(spill_txns), 0)::text AS n FROM pg_stat_replication_slots WHERE slot_name = $1', [env.slot]);
        return Number(r.rows[0]?.n ?? 0);
      });
    const spilledBefore = await spills();
    const child = run();
    await waitSlotActive(env);
    await a.query('BEGIN');
    await a.query(`INSERT INTO t SELECT g, 'whole ' || g FROM generate_series(2000001, 2020000) g`);
    await a.query('SAVEPOINT s1');
    await a.query(`INSERT INTO t SELECT g, 'rolled back' FROM generate_series(2020001, 2030000) g`);
    await a.query('ROLLBACK TO SAVEPOINT s1');
    await a.query('COMMIT');
    await waitCaughtUp(env);
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    expect(committedLines(child).length).toBe(0);
    await waitFor('the slot statistics of the ended walsender', async () => (await spills()) > spilledBefore, { timeoutMs: 30_000, intervalMs: 100 });
    await expectRebuiltEqual(env.outDir, env.url, 'public.t', 't', ['id'], ['id', 'v']);
    const rows = readStreamingRows(env.outDir, 'public.t').rows.filter((r) => Number(r.values.get('id')) > 2000000);
    expect(rows.length).toBe(20000);
  }, 180_000);
});
