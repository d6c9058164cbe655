/**
 * `pg-egress load`: exactly once into PostgreSQL and DuckDB. `load` runs after every few batches
 * while the writer runs, is killed with SIGKILL mid-batch (deterministically before a batch's
 * commit through PG_EGRESS_FAILPOINT, and at random moments), and a final run leaves the target
 * equal to the source; a second final run changes nothing. A changed file or a deleted batch index
 * is refused with exit 10 and the target is left as it was.
 *
 * Sizes (test/helpers/scale.ts): with PG_EGRESS_TEST_FULL=1, 6 rounds of 40 writer steps, the
 * first 3 killed at the failpoint and the next 2 at random moments, DuckDB loaded after rounds 0
 * and 3; by default (npm test), 4 rounds of 20 steps, 1 killed at the failpoint and 2 at random
 * moments, DuckDB loaded after round 0. Either way a DuckDB load killed at the failpoint, an ADD
 * COLUMN and a reload on the way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createTestDatabase } from '../harness/pg.js';
import { createEnv, loopWriter, runCli, sleep, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, type Child, type EgressEnv } from '../helpers/egress.js';
import { copyText, expectSameRows, expectSameRowsDuckdb, tortureStep, TORTURE_DDL, TORTURE_SEED, waitReloads } from '../helpers/archive.js';
import { scaled } from '../helpers/scale.js';

const TABLES = ['t_main', 't_trunc', 't_full', 't_part'];
/**
 * Rounds of the writer, each followed by loads: the first FAILPOINT_ROUNDS killed at the
 * failpoint, the next ones but the last at random moments.
 */
const ROUNDS = scaled(6, 4);
const FAILPOINT_ROUNDS = scaled(3, 1);
/** Writer steps per round. */
const STEPS = scaled(40, 20);
/** Rounds followed by a DuckDB load (the final one loads the rest). */
const DUCKDB_ROUNDS = scaled([0, FAILPOINT_ROUNDS], [0]);

async function loadState(url: string): Promise<{ batches: number; sums: string }> {
  return withDb(url, async (c) => {
    const b = await c.query(`SELECT count(*)::int AS n FROM public._pg_egress_load`);
    const sums: string[] = [];
    for (const t of TABLES) sums.push((await c.query(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS m FROM public.${t} x`)).rows[0].m as string);
    return { batches: b.rows[0].n as number, sums: sums.join(',') };
  });
}

describe('load', () => {
  let env: EgressEnv;
  let daemon: Child;
  let target: { url: string; drop(): Promise<void> };
  let work: string;
  let duck: string;
  const kills = { failpoint: 0, real: 0 };

  beforeAll(async () => {
    env = await createEnv();
    target = await createTestDatabase('load');
    work = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-load-'));
    duck = path.join(work, 'w.duckdb');
    await withDb(env.url, (c) => c.query(TORTURE_DDL + TORTURE_SEED));
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitReloads(env.url, 1);
  }, 120_000);

  afterAll(async () => {
    daemon?.proc.kill('SIGKILL');
    await env?.drop();
    await target?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('applies every batch exactly once through kills, into PostgreSQL and DuckDB', async () => {
    // The writer's work is bounded per round, not by the time the rounds take: on a slow machine a
    // writer that ran until the test was done made each load longer, which gave it more to load.
    let budget = 0;
    const writer = loopWriter(env.url, async (c, n) => {
      if (n >= budget) {
        await sleep(20);
        return 0;
      }
      await tortureStep(c, n);
      await sleep(60);
      return 1;
    });
    try {
      for (let round = 0; round < ROUNDS; round++) {
        // New batches under the writer since the last round.
        budget += STEPS;
        await waitBatches(env, 1);
        if (round === FAILPOINT_ROUNDS) await withDb(env.url, (c) => c.query(`ALTER TABLE t_main ADD COLUMN extra int`));
        if (round === ROUNDS - 1) expect((await runCli(['reload', 'public.t_trunc', '--config', env.configPath, '--wait'])).code).toBe(0);
        if (round < FAILPOINT_ROUNDS) {
          // Deterministic: killed right before the commit of the run's first batch.
          const r = spawnCli(['load', '--from', env.outDir, '--into', target.url], { env: { PG_EGRESS_FAILPOINT: 'load-before-commit:1' } });
          const exit = await r.exit;
          expect(exit.signal).toBe('SIGKILL');
          kills.failpoint++;
        } else if (round < ROUNDS - 1) {
          // At a random moment.
          const r = spawnCli(['load', '--from', env.outDir, '--into', target.url]);
          await sleep(100 + Math.floor(Math.random() * 400));
          r.proc.kill('SIGKILL');
          const exit = await r.exit;
          if (exit.signal === 'SIGKILL') kills.real++;
        }
        const ok = await runCli(['load', '--from', env.outDir, '--into', target.url]);
        expect(ok.stderr).not.toContain('pg-egress:');
        expect(ok.code).toBe(0);
        if (round === FAILPOINT_ROUNDS - 1) {
          const d = spawnCli(['load', '--from', env.outDir, '--into', `duckdb:${duck}`], { env: { PG_EGRESS_FAILPOINT: 'load-before-commit:2' } });
          expect((await d.exit).signal).toBe('SIGKILL');
        }
        if (DUCKDB_ROUNDS.includes(round)) expect((await runCli(['load', '--from', env.outDir, '--into', `duckdb:${duck}`])).code).toBe(0);
      }
    } finally {
      await writer.stop();
    }
    expect(kills.failpoint).toBe(FAILPOINT_ROUNDS);
    await waitCaughtUp(env);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    const fin = await runCli(['load', '--from', env.outDir, '--into', target.url]);
    expect(fin.code).toBe(0);
    for (const t of TABLES) await expectSameRows(target.url, `public.${t}`, await copyText(env.url, t), t);
    const before = await loadState(target.url);
    const batches = readdirSync(path.join(env.outDir, '_batches')).length;
    expect(before.batches).toBe(batches);
    const again = await runCli(['load', '--from', env.outDir, '--into', target.url]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to load');
    expect(await loadState(target.url)).toEqual(before);
    expect((await runCli(['load', '--from', env.outDir, '--into', `duckdb:${duck}`])).code).toBe(0);
    for (const t of TABLES) await expectSameRowsDuckdb(duck, env.url, t, work);
  }, 600_000);

  it('refuses a changed file or a deleted batch index (exit 10) and leaves the target as it was', async () => {
    const dir = path.join(work, 'archive');
    cpSync(env.outDir, dir, { recursive: true });
    const batches = readdirSync(path.join(dir, '_batches')).sort();
    // A new target loaded up to the middle of the chain, from a copy holding only that much.
    const t2 = await createTestDatabase('load2');
    try {
      const half = path.join(work, 'half');
      cpSync(dir, half, { recursive: true });
      const order = await withDb(target.url, (c) => c.query<{ batch_id: string }>(`SELECT batch_id FROM public._pg_egress_load ORDER BY seq`));
      const ids = order.rows.map((r) => r.batch_id);
      const mid = Math.floor(ids.length / 2);
      for (const id of ids.slice(mid)) unlinkSync(path.join(half, '_batches', `${id}.json`));
      expect((await runCli(['load', '--from', half, '--into', t2.url])).code).toBe(0);
      const state = await loadState(t2.url);
      // One byte changed in a data file of the next batch to load.
      const next = JSON.parse(readFileSync(path.join(dir, '_batches', `${ids[mid]}.json`), 'utf8')) as { manifests: { path: string }[] };
      const mdir = path.join(dir, path.dirname(next.manifests[0].path));
      const data = readdirSync(mdir).find((f) => f.endsWith('.csv.gz'))!;
      const file = path.join(mdir, data);
      const orig = readFileSync(file);
      const text = zlib.gunzipSync(orig).toString();
      const at = text.length - 2;
      writeFileSync(file, zlib.gzipSync(text.slice(0, at) + (text[at] === '7' ? '8' : '7') + text.slice(at + 1)));
      const r = await runCli(['load', '--from', dir, '--into', t2.url]);
      expect(r.code).toBe(10);
      expect(r.stderr).toContain(data);
      expect(await loadState(t2.url)).toEqual(state);
      writeFileSync(file, orig);
      // The next batch's index deleted: the one after it names a missing predecessor.
      unlinkSync(path.join(dir, '_batches', `${ids[mid]}.json`));
      const r2 = await runCli(['load', '--from', dir, '--into', t2.url]);
      expect(r2.code).toBe(10);
      expect(r2.stderr).toContain(ids[mid]);
      expect(await loadState(t2.url)).toEqual(state);
      void batches;
    } finally {
      await t2.drop();
    }
  }, 300_000);
});
