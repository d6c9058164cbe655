/** What every scenario shares: where the client tools are, and a database with pg-egress set up in it. */
import { rmSync } from 'node:fs';
import pg from 'pg';
import { expect } from 'vitest';
import { createEnv, runCli, withDb, type EgressEnv } from '../../test/helpers/egress.js';
import { sessionOptions } from '../../src/db/connect.js';
import { RELOAD_CHANNEL } from '../../src/registry/reloads.js';
import { Waker } from '../../src/waker.js';
import { startDaemon, type Daemon } from '../lib/tools.js';

export interface BenchContext {
  reps: number;
  scale: number;
  tmp: string;
  bin: { pg_recvlogical: string; psql: string; pg_dump: string };
}

/**
 * Watches until every export the registry knows of (the initial one at least) has finished. One
 * connection, made and LISTENing before the timed run starts (`exportsWatch`); the registry is
 * read when the daemon NOTIFYs the end of a reload (registry/reloads.ts RELOAD_CHANNEL: every
 * registered batch of an export, every failed or cancelled operation), as `pg-egress reload
 * --wait` follows one, and once a second besides. The poll every 20 ms it replaces cost the
 * server 56-66 ms of CPU in a ~2 s run of R4 on this 2-core machine (the same poll's backend,
 * measured from /proc), and half an interval of latency, neither of which pg_dump is charged
 * with; a new connection every 100 ms, before that, added ~0.1 s.
 */
export interface ExportsWatch {
  /** Resolves once every export is over (throws if one failed). */
  settled(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function exportsWatch(env: EgressEnv): Promise<ExportsWatch> {
  const c = new pg.Client({ connectionString: env.url, options: sessionOptions() });
  await c.connect();
  // A notification during a read is kept: the next sleep ends at once (src/waker.ts).
  const waker = new Waker();
  c.on('notification', (n) => n.payload === env.slot && waker.wake());
  await c.query(`LISTEN ${RELOAD_CHANNEL}`);
  const check = async (): Promise<'done' | 'failed' | null> => {
    const r = await c.query<{ all: string; open: string; failed: string }>(
      `SELECT count(*)::text AS all, count(*) FILTER (WHERE state IN ('pending', 'running'))::text AS open,
              count(*) FILTER (WHERE state IN ('failed', 'cancelled'))::text AS failed
       FROM cdc_registry.reloads WHERE slot_name = $1`,
      [env.slot],
    );
    if (Number(r.rows[0].failed) > 0) return 'failed';
    return Number(r.rows[0].all) > 0 && r.rows[0].open === '0' ? 'done' : null;
  };
  return {
    async settled(timeoutMs = 600_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const end = await check();
        if (end === 'failed') throw new Error('pg-egress run: an export failed');
        if (end === 'done') return;
        if (Date.now() > deadline) throw new Error('timed out waiting for the exports to finish');
        await waker.sleep(1000);
      }
    },
    close: () => c.end(),
  };
}

/** Waits until every export the registry knows of has finished (exportsWatch, not timed). */
export async function exportsSettled(env: EgressEnv, timeoutMs = 600_000): Promise<void> {
  const w = await exportsWatch(env);
  try {
    await w.settled(timeoutMs);
  } finally {
    await w.close();
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
