/**
 * A1/A2: using the archive. A table of R1's size is exported by pg-egress, then changed by
 * `changes` streamed rows (updates, inserts, deletes in 100k-row transactions). Each repetition,
 * in rotating order:
 * - `pg-egress rebuild --into postgres://…` (reload set + every change) against a plain COPY of
 *   the reload files alone (psql, one COPY per part), both into the same server;
 * - `pg-egress load --into duckdb:` (reload set + every change, batch by batch) against DuckDB
 *   reading the reload files alone with the statements `schema-sql --dialect duckdb` prints.
 * Peak RSS of the pg-egress processes is measured with GNU time.
 *
 * BENCH_A_KEEP=<dir>: copy the archive (and the schema-sql statements, A-duckdb.sql) to <dir> and
 * skip the timed runs, to measure `load`/`rebuild` by hand against the same archive.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createTestDatabase } from '../../test/harness/pg.js';
import { BIN, ROOT, reloadSets, waitCaughtUp, withDb } from '../../test/helpers/egress.js';
import { rotation } from '../lib/stats.js';
import { execTimed, type Timed } from '../lib/tools.js';
import { COLUMNS, filledTable, rowsSql } from './data.js';
import { egressDatabase, type BenchContext } from './setup.js';

export interface ArchiveRuns {
  seconds: Record<string, number[]>;
  peakRssMb: Record<string, number>;
  /** BENCH_A_KEEP: where the archive was copied (no timed runs). */
  kept?: string;
}

const libpq = (url: string) => {
  const u = new URL(url);
  return {
    PGHOST: u.hostname,
    PGPORT: u.port,
    PGUSER: decodeURIComponent(u.username),
    PGDATABASE: u.pathname.slice(1),
    PGPASSWORD: decodeURIComponent(u.password),
  };
};

/** A pg-egress command timed, with its peak RSS from GNU time. */
async function egressTimed(args: string[], rssFile: string): Promise<Timed> {
  const t = await execTimed('/usr/bin/time', ['-f', '%M', '-o', rssFile, process.execPath, BIN, ...args]);
  return { ...t, peakRssMb: Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) / 1024 };
}

export async function archiveScenario(ctx: BenchContext, opts: { rows: number; changes: number }): Promise<ArchiveRuns> {
  const db = await egressDatabase((url) => filledTable(url, 'public.r1', opts.rows), true);
  const target = await createTestDatabase('benchtarget');
  const { env } = db;
  try {
    const step = 100_000;
    await withDb(env.url, async (c) => {
      let next = opts.rows + 1;
      for (let done = 0, k = 0; done < opts.changes; k++) {
        const n = Math.min(step, opts.changes - done);
        const upd = Math.floor(n / 2);
        const ins = Math.floor(n / 4);
        const del = n - upd - ins;
        const a = (k * step) % Math.max(1, opts.rows - step);
        await c.query(`BEGIN; UPDATE r1 SET n = n + 1, label = label || '!' WHERE id > ${a} AND id <= ${a + upd};
          INSERT INTO r1 ${rowsSql(next, next + ins - 1)};
          DELETE FROM r1 WHERE id > ${a + upd} AND id <= ${a + upd + del}; COMMIT`);
        next += ins;
        done += n;
      }
    });
    await waitCaughtUp(env, undefined, 600_000);
    const reload = reloadSets(env.outDir, 'public.r1').pop()!;
    const win = path.dirname(reload.files[0]);
    const duckSql = path.join(ctx.tmp, 'A-duckdb.sql');
    writeFileSync(duckSql, execFileSync(process.execPath, [BIN, 'schema-sql', '--dialect', 'duckdb', win]));
    const keep = process.env.BENCH_A_KEEP;
    if (keep) {
      cpSync(env.outDir, path.join(keep, 'archive'), { recursive: true });
      cpSync(duckSql, path.join(keep, 'A-duckdb.sql'));
      process.stdout.write(`  A: archive kept in ${keep}/archive (from ${env.outDir}); no timed runs\n`);
      return { seconds: {}, peakRssMb: {}, kept: keep };
    }
    const contenders = ['pg-egress rebuild', 'COPY of the reload files', 'pg-egress load duckdb', 'DuckDB read_csv of the reload files'];
    const seconds: Record<string, number[]> = Object.fromEntries(contenders.map((c) => [c, [] as number[]]));
    const peakRssMb: Record<string, number> = {};
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const who of rotation(contenders, rep)) {
        let t: Timed;
        const duck = path.join(ctx.tmp, `A-${rep}.duckdb`);
        if (who === 'pg-egress rebuild') {
          t = await egressTimed(['rebuild', 'public.r1', '--from', env.outDir, '--into', target.url, '--target', `public.rb_${rep}`], path.join(ctx.tmp, 'rss'));
          await withDb(target.url, (c) => c.query(`DROP TABLE public.rb_${rep}`));
        } else if (who === 'COPY of the reload files') {
          await withDb(target.url, (c) => c.query(`CREATE TABLE public.cp_${rep} ${COLUMNS}`));
          const sh = `set -o pipefail; for f in ${reload.files.map((f) => `'${f}'`).join(' ')}; do gzip -dc "$f" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "COPY public.cp_${rep} FROM STDIN (FORMAT csv, HEADER)"; done`;
          t = await execTimed('bash', ['-c', sh], { ...libpq(target.url), PSQL: ctx.bin.psql });
          await withDb(target.url, (c) => c.query(`DROP TABLE public.cp_${rep}`));
        } else if (who === 'pg-egress load duckdb') {
          t = await egressTimed(['load', '--from', env.outDir, '--into', `duckdb:${duck}`], path.join(ctx.tmp, 'rss'));
        } else {
          t = await execTimed(process.execPath, [path.join(ROOT, 'bench/baselines/duckdb-load.mjs'), duckSql, duck]);
        }
        rmSync(duck, { force: true });
        rmSync(duck + '.wal', { force: true });
        seconds[who].push(t.seconds);
        if (t.peakRssMb !== undefined) peakRssMb[who] = Math.max(peakRssMb[who] ?? 0, t.peakRssMb);
        process.stdout.write(`  A rep ${rep + 1}: ${who.padEnd(36)} ${t.seconds.toFixed(2)} s${t.peakRssMb ? `, peak RSS ${t.peakRssMb.toFixed(0)} MB` : ''}\n`);
      }
    }
    return { seconds, peakRssMb };
  } finally {
    await target.drop();
    await db.drop();
  }
}
