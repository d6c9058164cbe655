/**
 * `pg-egress verify --against-source`: among 1M rows (PG_EGRESS_TEST_FULL=1; 50k in a quick run),
 * a consistent forgery (one row changed in a streaming file, then one row deleted from a reload
 * file, each with manifest, batch index, chain and registry re-hashed to match, which checking the
 * files cannot see) is found and its key named; `--repair` reloads; afterwards the table is equal again. On an untouched archive it says
 * equal, at the cost of one scan of the source table.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { waitFor } from '../harness/pg.js';
import { createEnv, runCli, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, type Child, type EgressEnv } from '../helpers/egress.js';
import { waitReloads } from '../helpers/archive.js';
import { editRecords, reseal } from '../helpers/forge.js';
import { scaled } from '../helpers/scale.js';

const ROWS = scaled(1_000_000, 50_000);

describe('verify --against-source', () => {
  let env: EgressEnv;
  let daemon: Child | null = null;
  let reloads = 1;

  const start = async () => {
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
  };
  const stop = async () => {
    await waitCaughtUp(env);
    daemon!.proc.kill('SIGTERM');
    expect((await daemon!.exit).code).toBe(0);
    daemon = null;
  };
  const verify = (...extra: string[]) => runCli(['verify', '--against-source', 'public.big', '--config', env.configPath, ...extra]);
  /** Rows read by sequential scans of the table: a parallel scan counts a seq_scan per worker, but every row once. */
  const seqScans = () => withDb(env.url, async (c) => Number((await c.query(`SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'public.big'::regclass`)).rows[0].seq_tup_read));
  /** Backends report their statistics when they end, a little later: wait until the count holds still. */
  const settledSeqScans = async () => {
    let last = await seqScans();
    for (;;) {
      await sleep(1500);
      const now = await seqScans();
      if (now === last) return now;
      last = now;
    }
  };

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) => c.query(`CREATE TABLE big (id bigint PRIMARY KEY, v text, n int); INSERT INTO big SELECT g, 'v' || g, g % 1000 FROM generate_series(1, ${ROWS}) g`));
    await start();
    await waitReloads(env.url, reloads);
    await withDb(env.url, (c) => c.query(`UPDATE big SET v = v || ' updated' WHERE id % ${ROWS / 10} = 7; DELETE FROM big WHERE id % ${ROWS / 4} = 3; INSERT INTO big VALUES (${ROWS + 1}, 'new', 1)`));
    await waitCaughtUp(env);
  }, 300_000);

  afterAll(async () => {
    daemon?.proc.kill('SIGKILL');
    await env?.drop();
  });

  it('says equal on an untouched archive, reading each source row once (one scan)', async () => {
    const before = await settledSeqScans();
    const r = await verify();
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`public\\.big: equal: ${ROWS - 4 + 1} rows at snapshot [0-9A-F]+/[0-9A-F]+`));
    // Statistics reach pg_stat_user_tables when the verifying backend ends: wait for them.
    await waitFor('the scan counted', async () => (await seqScans()) > before, { timeoutMs: 60_000 });
    // One pass over the table: each of its rows read once, no second query.
    expect((await settledSeqScans()) - before).toBe(ROWS - 4 + 1);
  }, 300_000);

  it('names a row changed in a streaming file by a consistent forgery, repairs, then says equal', async () => {
    await stop();
    const folder = path.join(env.outDir, 'public.big');
    const w = readdirSync(folder).find((x) => readdirSync(path.join(folder, x)).includes('streaming.csv.gz'))!;
    const rel = `public.big/${w}/streaming.csv.gz`;
    let forged = '';
    editRecords(path.join(env.outDir, rel), (recs) =>
      recs.map((r) => {
        if (forged || !r.includes(',U,')) return r;
        forged = r.split(',')[6];
        return r.replace(' updated', ' forged!');
      }),
    );
    expect(forged).not.toBe('');
    await reseal(env.outDir, [rel], env.url, env.slot);
    // Checking the files alone finds nothing.
    expect((await runCli(['verify', env.outDir])).code).toBe(0);
    await start();
    // One run names the key and asks for the reload.
    const r = await verify('--repair');
    expect(r.code).toBe(10);
    expect(r.stdout).toContain(`changed: id=${forged}`);
    expect(r.stdout).toContain('reload requested for public.big');
    await waitReloads(env.url, ++reloads);
    const ok = await verify();
    expect(ok.stdout).toContain('public.big: equal');
    expect(ok.code).toBe(0);
  }, 300_000);

  it('names a row deleted from a reload file by a consistent forgery, repairs, then says equal', async () => {
    await stop();
    const folder = path.join(env.outDir, 'public.big');
    const newest = readdirSync(folder)
      .filter((x) => readdirSync(path.join(folder, x)).some((f) => f.startsWith('full_reload')))
      .sort()
      .pop()!;
    const part = readdirSync(path.join(folder, newest)).find((f) => f.startsWith('full_reload'))!;
    const rel = `public.big/${newest}/${part}`;
    const victim = String(ROWS / 2);
    expect(zlib.gunzipSync(readFileSync(path.join(env.outDir, rel))).includes(`\n${victim},`)).toBe(true);
    editRecords(path.join(env.outDir, rel), (recs) => recs.filter((r) => !r.startsWith(`${victim},`)));
    await reseal(env.outDir, [rel], env.url, env.slot);
    expect((await runCli(['verify', env.outDir])).code).toBe(0);
    await start();
    const r = await verify('--repair');
    expect(r.code).toBe(10);
    expect(r.stdout).toContain(`missing from the archive: id=${victim}`);
    expect(r.stdout).toContain('reload requested for public.big');
    await waitReloads(env.url, ++reloads);
    const ok = await verify();
    expect(ok.stdout).toContain('public.big: equal');
    expect(ok.code).toBe(0);
  }, 300_000);
});
