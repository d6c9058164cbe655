/**
 * An idle slot does not hold WAL: with writes only to an unpublished table, the slot's
 * confirmed_flush_lsn keeps up with the server (SPEC §6).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnv, currentWalLsn, runCli, listStreamingFiles, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';
import { parseLsn } from '../../src/lsn.js';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { DaemonState } from '../../src/http/state.js';

describe('idle slot', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  const state = new DaemonState();

  beforeAll(async () => {
    env = await createEnv({ config: 'tables:\n  include: ["public.*"]\n  exclude: ["public.unpublished"]' });
    await withDb(env.url, (c) => c.query('CREATE TABLE published (id int PRIMARY KEY); CREATE TABLE unpublished (id serial PRIMARY KEY, pad text)'));
    daemon = startInProcess(env, { state });
    await waitSlotActive(env);
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('advances confirmed_flush_lsn past WAL written only by unpublished tables', async () => {
    const before = await withDb(env.url, async (c) => parseLsn((await c.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [env.slot])).rows[0].l));
    let target = before;
    for (let round = 0; round < 3; round++) {
      await withDb(env.url, (c) => c.query(`INSERT INTO unpublished (pad) SELECT repeat('x', 500) FROM generate_series(1, 5000)`));
      target = await currentWalLsn(env.url);
      expect(target - before).toBeGreaterThan(1_000_000n);
      await waitCaughtUp(env, target);
    }
    // Nothing was written for the unpublished table.
    expect(existsSync(path.join(env.outDir, 'public.unpublished'))).toBe(false);
    const published = await withDb(env.url, async (c) => (await c.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = $1`, [env.slot])).rows.map((r) => r.tablename));
    expect(published).toEqual(['published']);
    // Confirmed past every byte the unpublished writes made. (Not compared with the server's
    // current WAL position: other test files write WAL on the same server meanwhile.)
    const confirmed = await withDb(env.url, async (c) => parseLsn((await c.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [env.slot])).rows[0].l));
    console.log(`unpublished WAL written: ${target - before} bytes; the slot confirmed ${confirmed - before} bytes past its start`);
    expect(confirmed).toBeGreaterThanOrEqual(target);
    // No streaming file at all (the published table's folder holds only its initial export, empty).
    expect(existsSync(env.outDir) ? readdirSync(env.outDir).filter((f) => f.startsWith('public.')).flatMap((f) => listStreamingFiles(env.outDir, f)) : []).toEqual([]);
  });

  it('answers the walsender only with replies that confirm something new, through an export and unpublished commits', async () => {
    // While our position is behind the WAL it sent, the walsender pings after every reply it
    // reads (WalSndWaitForWal); a reply that confirmed nothing new (the idle part waits for
    // _confirmed.json, at most every 100 ms) was answered by another ping at once: ~3,000 a
    // second on both sides for as long as WAL came that we could not confirm yet, e.g. the
    // registry's own writes all through an export.
    await withDb(env.url, (c) => c.query(`INSERT INTO published SELECT g FROM generate_series(1, 50000) g`));
    await waitCaughtUp(env, await currentWalLsn(env.url));
    const sentBefore = state.statusSent;
    const t0 = Date.now();
    const reload = runCli(['reload', 'public.published', '--config', env.configPath, '--wait']);
    let commits = 0;
    await withDb(env.url, async (c) => {
      while (Date.now() - t0 < 1500) {
        await c.query(`INSERT INTO unpublished (pad) VALUES ('y')`);
        commits++;
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    const r = await reload;
    expect(r.code, r.stderr).toBe(0);
    await waitCaughtUp(env, await currentWalLsn(env.url));
    const sent = state.statusSent - sentBefore;
    console.log(`an export and ${commits} unpublished commits in ${Date.now() - t0} ms; ${sent} standby status updates sent meanwhile and until caught up`);
    expect(commits).toBeGreaterThan(20);
    // The replies that moved the slot, and the regular ones: not one per ping.
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(200);
  });
});
