/**
 * Exactly once under crashes (SPEC §6): a concurrent writer commits small transactions and a few
 * large ones while the daemon is killed with SIGKILL at random moments and restarted. Under
 * PG_EGRESS_TEST_FULL=1: 20 kills, large transactions of 100k rows; by default (test/helpers/scale.ts)
 * 6 kills, large transactions of 30k rows (still more than batch.max_rows, so size flushes happen),
 * the writer paused 2 ms after each commit. The server streams the large transactions to us in
 * parts while they run (logical_decoding_work_mem at its least, 64kB).
 * Then every table is rebuilt from the files and compared with the source. The moments come from
 * a seed printed before anything is checked: `CRASH_SEED=<seed> npx vitest run
 * test/integration/crash.test.ts` replays the kill schedule (and the writer's choices; the
 * timing of the server is not replayable). failpoints.test.ts kills at chosen points instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnv, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { scaled } from '../helpers/scale.js';
import { seededRandom, startWriter, verifyWorkload, WORKLOAD_DDL } from '../helpers/workload.js';

const KILLS = scaled(20, 6);
const BIG_ROWS = scaled(100_000, 30_000);
/** The writer flat out, or paced (2 ms after each commit) so that it leaves the other files a core. */
const PAUSE_MS = scaled(0, 2);

describe('kill -9 at random moments', () => {
  let env: EgressEnv;

  beforeAll(async () => {
    env = await createEnv();
    // Small windows and a low row limit so that crashes hit every phase: writing, size flushes,
    // window flushes, registration.
    writeConfig(env, 'batch:\n  interval: 1s\n  max_rows: 20000');
    await withDb(env.url, async (c) => {
      await c.query(WORKLOAD_DDL);
      // The large transactions arrive in parts while they run (src/batch/streamed.ts), so that
      // kills also hit a transaction half received and spooled.
      await c.query(`ALTER DATABASE "${env.dbName}" SET logical_decoding_work_mem = '64kB'`);
    });
  });

  afterAll(async () => {
    await env?.drop();
  });

  it(`loses and duplicates nothing across ${KILLS} crashes`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const random = seededRandom(seed);
    const schedule = Array.from({ length: KILLS }, () => 300 + Math.floor(random() * 1500));
    // Before any check, so that a failure can be replayed.
    console.log(`crash schedule: CRASH_SEED=${seed}: kill -9 after ${schedule.join(', ')} ms`);
    let child = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    const writer = startWriter(env.url, { bigEvery: 150, bigRows: BIG_ROWS, maxBig: 3, random: seededRandom(seed + 1), pauseMs: PAUSE_MS });
    const kills: number[] = [];
    try {
      for (const delay of schedule) {
        await sleep(delay);
        child.proc.kill('SIGKILL');
        const ex = await child.exit;
        expect(ex.signal).toBe('SIGKILL');
        kills.push(delay);
        child = spawnCli(['run', '--config', env.configPath]);
        await waitSlotActive(env, 60_000);
      }
    } finally {
      await writer.stop();
    }
    expect(writer.bigDone()).toBeGreaterThanOrEqual(1);
    await waitCaughtUp(env, undefined, 120_000);
    child.proc.kill('SIGTERM');
    const ex = await child.exit;
    expect(ex.code).toBe(0);
    const { transactions, rows } = await verifyWorkload(env.url, env.outDir);
    console.log(`CRASH_SEED=${seed}: ${kills.length} kill -9 (after ${kills.join(', ')} ms): ${transactions} transactions, ${rows} events rows, ${writer.bigDone()} of them ${BIG_ROWS}-row inserts; each exactly once`);
    expect(transactions).toBe(writer.committed());
    expect(rows).toBeGreaterThan(BIG_ROWS);
  }, 600_000);
});
