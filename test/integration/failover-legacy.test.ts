/**
 * Failover without a failover slot: PostgreSQL 14–16 (the suite's server in CI's first run), or
 * 17+ with `slot_failover: false` (the second run, on 18). The promoted standby has no slot: the
 * daemon, restarted with the new URL, records a `slot_lost` gap, creates the slot and exports every
 * table again; the rebuild equals the new primary. The primary and the standby (low-level backup
 * API, test/harness/standby.ts) run on the suite's server binaries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createCluster, type Cluster } from '../harness/cluster.js';
import { cloneStandby, promote } from '../harness/standby.js';
import { waitFor } from '../harness/pg.js';
import { createEnv, loopWriter, rebuildFromOutput, reloadSets, sleep, sortedEntries, sourceRows, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const SETTINGS = { wal_level: 'logical', fsync: 'off', max_wal_senders: 10, max_replication_slots: 10, hot_standby: 'on', wal_receiver_status_interval: "'1s'" };
const TABLES = ['t1', 't2'];

describe('failover without a failover slot (PostgreSQL 14-16, or slot_failover: false)', () => {
  let env: EgressEnv;
  let primary: Cluster;
  let standby: Cluster | null = null;
  let config = '';
  const children: Child[] = [];

  beforeAll(async () => {
    primary = await createCluster(SETTINGS);
    primary.start();
    env = await createEnv({ adminUrl: primary.url() });
    const major = await withDb(env.url, async (c) => Math.floor(Number((await c.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0].v) / 10000));
    config = major >= 17 ? 'slot_failover: false' : '';
    writeConfig(env, config);
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE t1 (id serial PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY, v text);
               INSERT INTO t1 (v) SELECT 'a' || g FROM generate_series(1, 50) g; INSERT INTO t2 SELECT g, 'b' || g FROM generate_series(1, 20) g`),
    );
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    for (const c of [primary, standby]) {
      try {
        c?.stop('immediate');
      } catch {
        // already stopped
      }
      c?.destroy();
    }
  });

  it('the promoted standby has no slot: a slot_lost gap, the slot created, every table exported again, rebuild equal', async () => {
    let d = spawnCli(['run', '--config', env.configPath], { mayFail: true });
    children.push(d);
    await waitSlotActive(env);
    await waitFor('the initial export', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state = 'done'`)).rowCount === 2));
    standby = (await cloneStandby(primary, { physicalSlot: 'phys_s', dbname: env.dbName, settings: SETTINGS, slotSync: false })).cluster;
    const w = loopWriter(env.url, async (c, n) => {
      await c.query(`INSERT INTO t1 (v) VALUES ('w${n}'); UPDATE t2 SET v = 'u${n}' WHERE id = ${(n % 20) + 1}`);
      await sleep(5);
      return 1;
    });
    await waitBatches(env, 1);
    await w.stop();
    await waitCaughtUp(env);
    // The standby has all of it (so the comparison below is with the same data), then the primary crashes.
    const end = await withDb(env.url, async (c) => (await c.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
    const sb = standby;
    await waitFor('the standby replayed everything', () => withDb(sb.url(env.dbName), async (c) => (await c.query<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [end])).rows[0].ok));
    primary.stop('immediate');
    promote(sb);
    d.proc.kill('SIGKILL');
    env.url = sb.url(env.dbName);
    writeConfig(env, config);
    expect(await withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [env.slot])).rowCount)).toBe(0);
    d = spawnCli(['run', '--config', env.configPath], { mayFail: true });
    children.push(d);
    await waitSlotActive(env, 60_000);
    await waitFor('the gap resolved by exporting every table again', () =>
      withDb(env.url, async (c) => {
        const { rows } = await c.query<{ kind: string; resolved: boolean }>(`SELECT kind, resolved_at IS NOT NULL AS resolved FROM cdc_registry.gaps`);
        return rows.length === 1 && rows[0].kind === 'slot_lost' && rows[0].resolved;
      }),
    );
    await withDb(env.url, (c: pg.Client) => c.query(`INSERT INTO t1 (v) VALUES ('after')`));
    await waitCaughtUp(env);
    d.proc.kill('SIGTERM');
    await d.exit;
    for (const t of TABLES) {
      expect(reloadSets(env.outDir, `public.${t}`).length, t).toBe(2);
      const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
      expect(sortedEntries(got.table), t).toEqual(sortedEntries(await sourceRows(env.url, t, ['id'], ['id', 'v'])));
    }
  }, 300_000);
});
