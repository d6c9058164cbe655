/**
 * The slot is confirmed only up to what is in registered files (SPEC §6): rows received but still
 * in an open window hold the slot back, whatever the server's keepalives report and however much
 * WAL unpublished tables write meanwhile. SIGTERM does not cut the window early; the next start
 * streams those rows again and writes them exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/pg.js';
import { parseLsn } from '../../src/lsn.js';
import { createEnv, currentWalLsn, listStreamingFiles, readStreamingRows, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

interface Walsender {
  sent: bigint;
  flush: bigint;
  replyAt: number;
}

describe('slot confirmation', () => {
  let env: EgressEnv;

  beforeAll(async () => {
    env = await createEnv({ config: 'tables:\n  include: ["public.*"]\n  exclude: ["public.noise"]\nbatch:\n  interval: 1h' });
    await withDb(env.url, (c) => c.query('CREATE TABLE held (id int PRIMARY KEY, v text); CREATE TABLE noise (id serial, pad text)'));
  });

  afterAll(async () => {
    await env?.drop();
  });

  const walsender = (): Promise<Walsender | null> =>
    withDb(env.url, async (c) => {
      const { rows } = await c.query<{ sent: string; flush: string | null; reply: string | null }>(
        `SELECT r.sent_lsn::text AS sent, r.flush_lsn::text AS flush, (extract(epoch FROM r.reply_time) * 1000)::bigint::text AS reply
         FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1`,
        [env.slot],
      );
      const r = rows[0];
      return r && r.flush && r.reply ? { sent: parseLsn(r.sent), flush: parseLsn(r.flush), replyAt: Number(r.reply) } : null;
    });
  const confirmedFlush = (): Promise<bigint> =>
    withDb(env.url, async (c) =>
      parseLsn((await c.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [env.slot])).rows[0].l),
    );

  it('holds the slot behind rows that are not yet in registered files, and delivers them after a restart', async () => {
    // Windows are aligned to the epoch: a 1h window ends at the top of the hour, and the daemon
    // then rightly flushes it. Its clock a day behind (src/clock.ts), it closes no window by the
    // clock while the test runs, so the rows stay in an open window at any time of the day.
    let child = spawnCli(['run', '--config', env.configPath], { env: { PG_EGRESS_TEST_CLOCK_OFFSET_MS: String(-86_400_000) } });
    await waitSlotActive(env);
    const before = await currentWalLsn(env.url);
    await withDb(env.url, (c) => c.query(`INSERT INTO held SELECT g, 'v' || g FROM generate_series(1, 100) g`));
    const afterHeld = await currentWalLsn(env.url);
    // Unpublished WAL after the rows: keepalives now report a WAL end well past them.
    await withDb(env.url, (c) => c.query(`INSERT INTO noise (pad) SELECT repeat('x', 500) FROM generate_series(1, 5000)`));
    const end = await currentWalLsn(env.url);

    // The daemon has received everything, and answered the server after that.
    const received = await waitFor('walsender sent past the noise', async () => {
      const w = await walsender();
      return w && w.sent >= end ? Date.now() : null;
    });
    const replied = await waitFor('a status reply after the rows arrived', async () => {
      const w = await walsender();
      return w && w.replyAt > received + 100 ? w : null;
    }, { timeoutMs: 90_000 });
    // Checked against the rows' commit LSN once they are in files (below). It is not `before`:
    // with nothing pending, the daemon may rightly confirm WAL that other databases wrote between
    // `before` and the commit.
    const heldBack = [replied.flush, await confirmedFlush()];
    for (const l of heldBack) expect(l).toBeLessThan(afterHeld);
    expect(listStreamingFiles(env.outDir, 'public.held')).toEqual([]);

    // SIGTERM does not write the open window early: no streaming file registered (the table's
    // initial export, of the empty table, is), the slot still behind.
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    expect(listStreamingFiles(env.outDir, 'public.held')).toEqual([]);
    heldBack.push(await confirmedFlush());
    const registered = await withDb(env.url, async (c) => (await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM cdc_registry.files WHERE file_type = 'streaming'`)).rows[0].n);
    expect(registered).toBe('0');

    // A short window: the next start streams the rows again and writes each exactly once.
    writeConfig(env, 'tables:\n  include: ["public.*"]\n  exclude: ["public.noise"]\nbatch:\n  interval: 1s');
    child = spawnCli(['run', '--config', env.configPath]);
    await waitFor('the held rows in files', async () => readStreamingRows(env.outDir, 'public.held').rows.length >= 100, { timeoutMs: 60_000 });
    await waitCaughtUp(env, end);
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    const { rows } = readStreamingRows(env.outDir, 'public.held');
    expect(rows.map((r) => Number(r.values.get('id')!.toString()))).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(rows.every((r) => r.op === 'I')).toBe(true);
    // Decoding restarts by skipping transactions whose commit record starts before the confirmed
    // LSN: the slot must not have passed the commit record of the held rows.
    const commitLsn = BigInt('0x' + rows[0].lsn);
    expect(commitLsn).toBeGreaterThan(before);
    for (const l of heldBack) expect(l).toBeLessThanOrEqual(commitLsn);
    expect(await confirmedFlush()).toBeGreaterThanOrEqual(end);
  }, 240_000);
});
