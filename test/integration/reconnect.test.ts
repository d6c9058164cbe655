/**
 * A restart of PostgreSQL itself mid-stream, and a replication connection dropped by the server,
 * both while a writer commits: the daemon reconnects with backoff and the files still rebuild the
 * tables exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCluster, type Cluster } from '../harness/cluster.js';
import { createEnv, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';
import { waitFor } from '../harness/pg.js';
import { startWriter, verifyWorkload, WORKLOAD_DDL } from '../helpers/workload.js';

describe('connection loss', () => {
  let env: EgressEnv;
  // Restarting a server would cut every other test file's connections: this one gets its own.
  let cluster: Cluster;
  const restartServer = async (mode: 'fast' | 'immediate') => cluster.restart(mode);

  beforeAll(async () => {
    cluster = await createCluster({ wal_level: 'logical', fsync: 'off', max_wal_senders: 10, max_replication_slots: 10 });
    cluster.start();
    env = await createEnv({ adminUrl: cluster.url() });
    await withDb(env.url, (c) => c.query(WORKLOAD_DDL));
  });

  afterAll(async () => {
    await env?.drop();
    cluster?.stop('immediate');
    cluster?.destroy();
  });

  it('survives a terminated walsender and a server restart without loss or duplicates', async () => {
    const child = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    const writer = startWriter(env.url, { bigEvery: 100, bigRows: 20_000, maxBig: 2 });
    try {
      // Each disruption once the daemon has registered under the writer, and after each, until it
      // has registered again.
      await waitBatches(env, 1);
      // The server drops our replication connection.
      const killed = await withDb(env.url, (c) =>
        c.query(`SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, [env.slot]),
      );
      expect(killed.rowCount).toBe(1);
      const old = killed.rows[0].active_pid as number;
      await waitFor('the terminated walsender gone', () =>
        withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [old])).rowCount === 0),
        { intervalMs: 50 },
      );
      await waitSlotActive(env, 60_000);
      await waitBatches(env, 1);
      // The whole server restarts.
      await restartServer('fast');
      await waitSlotActive(env, 60_000);
      await waitBatches(env, 1);
      await restartServer('immediate');
      await waitSlotActive(env, 60_000);
      await waitBatches(env, 1);
    } finally {
      await writer.stop();
    }
    await waitCaughtUp(env, undefined, 120_000);
    child.proc.kill('SIGTERM');
    const ex = await child.exit;
    expect(ex.code).toBe(0);
    // The daemon logged its reconnects.
    expect(child.stdout()).toMatch(/reconnecting/);
    const { transactions, rows } = await verifyWorkload(env.url, env.outDir);
    console.log(`walsender terminated, restart -m fast, restart -m immediate: ${transactions} transactions, ${rows} events rows, each exactly once`);
    expect(transactions).toBeGreaterThan(10);
  }, 300_000);
});
