/** What every scenario shares: where the client tools are, and a database with pg-egress set up in it. */
import { rmSync } from 'node:fs';
import pg from 'pg';
import { expect } from 'vitest';
import { createEnv, runCli, withDb, type EgressEnv } from '../../test/helpers/egress.js';
import { sessionOptions } from '../../src/db/connect.js';
import { waitFor } from '../../test/harness/pg.js';
import { startDaemon, type Daemon } from '../lib/tools.js';

export interface BenchContext {
  reps: number;
  scale: number;
  tmp: string;
  bin: { pg_recvlogical: string; psql: string; pg_dump: string };
}

/**
 * Waits until every export the registry knows of (the initial one at least) has finished. One
 * connection, asked every 20 ms: a new connection every 100 ms added ~0.1 s to R4's measured run
 * (half an interval on average, plus the connection start), time pg_dump is not charged with.
 */
export async function exportsSettled(env: EgressEnv, timeoutMs = 600_000): Promise<void> {
  const c = new pg.Client({ connectionString: env.url, options: sessionOptions() });
  await c.connect();
  try {
    // waitFor retries on a thrown error: a failed export is a result, thrown after the wait.
    const end = await waitFor(
      'the exports to finish',
      async () => {
        const r = await c.query<{ all: string; open: string; failed: string }>(
          `SELECT count(*)::text AS all, count(*) FILTER (WHERE state IN ('pending', 'running'))::text AS open,
                  count(*) FILTER (WHERE state IN ('failed', 'cancelled'))::text AS failed
           FROM cdc_registry.reloads WHERE slot_name = $1`,
          [env.slot],
        );
        if (Number(r.rows[0].failed) > 0) return 'failed';
        return Number(r.rows[0].all) > 0 && r.rows[0].open === '0' ? 'done' : null;
      },
      { timeoutMs, intervalMs: 20 },
    );
    if (end === 'failed') throw new Error('pg-egress run: an export failed');
  } finally {
    await c.end();
  }
}

/**
 * A database of its own with `create` run in it, `pg-egress init`, and a first `run` that has
 * done its initial export; the daemon is left running when `keepRunning`, else stopped.
 */
export async function egressDatabase(
  create: (url: string) => Promise<void>,
  keepRunning: boolean,
): Promise<{ env: EgressEnv; daemon: Daemon | null; drop(): Promise<void> }> {
  // BENCH_EGRESS_CONFIG: YAML added to every pg-egress config (to compare settings, e.g. reload.workers).
  const env = await createEnv({ prefix: 'bench', config: process.env.BENCH_EGRESS_CONFIG ?? '' });
  await create(env.url);
  const init = await runCli(['init', '--config', env.configPath]);
  expect(init.code, init.stderr).toBe(0);
  const daemon = startDaemon(env);
  await Promise.race([exportsSettled(env), daemon.exited]);
  if (!keepRunning) await daemon.stop();
  return {
    env,
    daemon: keepRunning ? daemon : null,
    drop: async () => {
      if (keepRunning) await daemon.stop();
      await env.drop();
      rmSync(env.dir, { recursive: true, force: true });
    },
  };
}

export async function createSlots(url: string, names: string[]): Promise<void> {
  await withDb(url, async (c: pg.Client) => {
    for (const s of names) await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [s]);
  });
}
