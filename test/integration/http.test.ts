/**
 * Running as a service: /health, /ready, /status and /metrics on http.port; not ready while
 * starting or while the database is down, ready once streaming; metrics move with writes and
 * carry no secret. SIGTERM during steady writes, and a second signal, lose nothing: after a
 * restart the tables rebuild to the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { createCluster, freePort, type Cluster } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';
import { createEnv, loopWriter, rebuildFromOutput, sleep, sortedEntries, sourceRows, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const SECRET = 'pw-not-to-be-seen-9931';
const get = async (port: number, p: string): Promise<{ status: number; body: string }> => {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${p}`);
    return { status: r.status, body: await r.text() };
  } catch {
    return { status: 0, body: '' };
  }
};
const metric = (body: string, name: string, labels = ''): number | null => {
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : null;
};

/** Rows into t until stopped. */
function writer(url: string): { stop(): Promise<number> } {
  return loopWriter(url, async (c, n) => {
    await c.query(`INSERT INTO t (v) VALUES ($1)`, [`w${n}`]);
    if ((n + 1) % 5 === 0) await c.query(`UPDATE t SET v = v || '+' WHERE id = (SELECT max(id) - 1 FROM t)`);
    await sleep(2);
    return 1;
  });
}

describe('service endpoints', () => {
  let cluster: Cluster;
  let env: EgressEnv;
  let port: number;
  let daemon: Child;
  beforeAll(async () => {
    // A cluster of our own: the test stops it to see /ready go false.
    cluster = await createCluster({ fsync: 'off', wal_level: 'logical', max_replication_slots: '10', max_wal_senders: '10' });
    cluster.start();
    env = await createEnv({ adminUrl: cluster.url('postgres') });
    port = await freePort();
    writeConfig(env, `http:\n  port: ${port}`);
    // The password goes through the config (trust auth ignores it): it must appear nowhere.
    writeFileSync(env.configPath, readFileSync(env.configPath, 'utf8').replace(/source:\n {2}url: (.*)\n/, `source:\n  url: $1\n  password: ${SECRET}\n`));
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id serial PRIMARY KEY, v text)`));
  });
  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    try {
      cluster?.stop('immediate');
    } catch {
      // already stopped
    }
    cluster?.destroy();
  });

  it('is alive but not ready while starting, ready once streaming, not ready while the database is down', async () => {
    // Hold the migration lock: the daemon's start-up waits on it, with its endpoints up.
    const holder = new pg.Client({ connectionString: env.url });
    await holder.connect();
    await holder.query(`SELECT pg_advisory_lock(8101632419413796211)`);
    daemon = spawnCli(['run', '--config', env.configPath]);
    const starting = await waitFor('endpoints up', async () => ((await get(port, '/health')).status === 200 ? get(port, '/ready') : null));
    expect(starting.status).toBe(503);
    expect(JSON.parse(starting.body)).toMatchObject({ ready: false, phase: 'starting' });
    await holder.end();
    await waitFor('ready', async () => (await get(port, '/ready')).status === 200);
    await waitSlotActive(env);

    const before = (await get(port, '/metrics')).body;
    await withDb(env.url, (c) => c.query(`INSERT INTO t (v) SELECT 'm' || g FROM generate_series(1, 50) g`));
    await waitCaughtUp(env);
    const after = await waitFor('metrics moved', async () => {
      const b = (await get(port, '/metrics')).body;
      return (metric(b, 'pg_egress_rows', 'table="public.t",op="I"') ?? 0) >= 50 && (metric(b, 'pg_egress_flushes') ?? 0) >= 1 ? b : null;
    });
    for (const name of ['pg_egress_up', 'pg_egress_registered_lsn', 'pg_egress_confirmed_lsn', 'pg_egress_source_lag_seconds', 'pg_egress_slot_wal_bytes', 'pg_egress_transactions', 'pg_egress_files_written', 'pg_egress_bytes_written', 'pg_egress_flush_duration_seconds_bucket', 'pg_egress_table_mode', 'pg_egress_reload_rows', 'pg_egress_reconnects', 'pg_egress_errors']) {
      expect(after, name).toContain(name);
    }
    expect(metric(after, 'pg_egress_up')).toBe(1);
    // Every flush counted is in the histogram of the same scrape (it was fed after being read).
    expect(metric(after, 'pg_egress_flush_duration_seconds_count')).toBe(metric(after, 'pg_egress_flushes'));
    expect(metric(after, 'pg_egress_registered_lsn')!).toBeGreaterThan(metric(before, 'pg_egress_registered_lsn') ?? 0);
    const status = await get(port, '/status');
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body).slot.active).toBe(true);
    for (const p of ['/metrics', '/status', '/ready', '/health']) expect((await get(port, p)).body).not.toContain(SECRET);
    expect(daemon.stdout() + daemon.stderr()).not.toContain(SECRET);

    cluster.stop('fast');
    const down = await waitFor('not ready while the database is down', async () => {
      const r = await get(port, '/ready');
      return r.status === 503 ? r : null;
    });
    expect(JSON.parse(down.body).ready).toBe(false);
    expect((await get(port, '/health')).status).toBe(200);
    cluster.start();
    await waitFor('ready again', async () => (await get(port, '/ready')).status === 200, { timeoutMs: 90_000 });
    expect(metric((await get(port, '/metrics')).body, 'pg_egress_reconnects')!).toBeGreaterThanOrEqual(1);
  });

  it('SIGTERM during steady writes, and a second signal, lose nothing', async () => {
    const w = writer(env.url);
    await waitBatches(env, 1);
    daemon.proc.kill('SIGTERM');
    const first = await daemon.exit;
    expect(first.code).toBe(0);
    // A second signal exits at once (exit 1), without confirming anything not registered.
    daemon = spawnCli(['run', '--config', env.configPath], { mayFail: true });
    await waitSlotActive(env);
    await waitBatches(env, 1);
    daemon.proc.kill('SIGTERM');
    daemon.proc.kill('SIGINT');
    const second = await daemon.exit;
    expect(second.code === 0 || second.code === 1).toBe(true);
    await w.stop();
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitCaughtUp(env);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    const got = rebuildFromOutput(env.outDir, 'public.t', ['id'], ['id', 'v']);
    expect(sortedEntries(got.table)).toEqual(sortedEntries(await sourceRows(env.url, 't', ['id'], ['id', 'v'])));
  });
});
