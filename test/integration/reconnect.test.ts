/**
 * A restart of PostgreSQL itself mid-stream, and a replication connection dropped by the server,
 * both while a writer commits: the daemon reconnects with backoff and the files still rebuild the
 * tables exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restartServer } from '../harness/pg.js';
import { createEnv, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';
import { startWriter, verifyWorkload, WORKLOAD_DDL } from '../helpers/workload.js';

describe('connection loss', () => {
  let env: EgressEnv;

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) => c.query(WORKLOAD_DDL));
  });

  afterAll(async () => {
    await env?.drop();
  });

  it('survives a terminated walsender and a server restart without loss or duplicates', async () => {
    const child = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    const writer = startWriter(env.url, { bigEvery: 100, bigRows: 20_000, maxBig: 2 });
    try {
      await sleep(1500);
      // The server drops our replication connection.
      const killed = await withDb(env.url, (c) =>
        c.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, [env.slot]),
      );
      expect(killed.rowCount).toBe(1);
      await sleep(500);
      await waitSlotActive(env, 60_000);
      await sleep(1500);
      // The whole server restarts.
      await restartServer('fast');
      await sleep(500);
      await waitSlotActive(env, 60_000);
      await sleep(1500);
      await restartServer('immediate');
      await waitSlotActive(env, 60_000);
      await sleep(1500);
    } finally {
      await writer.stop();
    }
    await waitCaughtUp(env, undefined, 120_000);
    child.proc.kill('SIGTERM');
    const ex = await child.exit;
    expect(ex.code).toBe(0);
    // The daemon logged its reconnects.
    expect(child.stdout()).toMatch(/reconnecting/);
    const { transactions } = await verifyWorkload(env.url, env.outDir);
    expect(transactions).toBeGreaterThan(10);
  }, 300_000);
});
