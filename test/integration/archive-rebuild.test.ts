/**
 * `pg-egress rebuild` (SPEC §6): after a torture-style workload the rebuilt tables equal the
 * source (EXCEPT ALL both ways) in PostgreSQL and DuckDB; as of three pauses, by LSN and by time,
 * they equal copies taken then; a changed byte or a deleted batch index is refused with exit 10,
 * naming it, and leaves the target as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createTestDatabase } from '../harness/pg.js';
import { from as copyFrom } from 'pg-copy-streams';
import { openDuckdb } from '../../src/archive/engine-duckdb.js';
import { copyOut, createEnv, runCli, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, type Child, type EgressEnv } from '../helpers/egress.js';
import { copyText, csvRecords, expectSameRows, expectSameRowsDuckdb, runSteps, TORTURE_DDL, TORTURE_SEED, waitReloads } from '../helpers/archive.js';

const TABLES = ['t_main', 't_trunc', 't_full', 't_part'];

interface Pause {
  lsn: string;
  time: string;
  copies: Map<string, Buffer>;
}

describe('rebuild', () => {
  let env: EgressEnv;
  let daemon: Child;
  let target: { url: string; drop(): Promise<void> };
  let work: string;
  const pauses: Pause[] = [];
  const finalCopies = new Map<string, Buffer>();

  async function pause(): Promise<void> {
    const p = await withDb(env.url, async (c) => {
      const r = await c.query(`SELECT pg_current_wal_insert_lsn()::text AS lsn, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`);
      return { lsn: r.rows[0].lsn as string, time: r.rows[0].t as string };
    });
    const copies = new Map<string, Buffer>();
    for (const t of TABLES) copies.set(t, await copyText(env.url, t));
    pauses.push({ ...p, copies });
    await sleep(30);
  }

  beforeAll(async () => {
    env = await createEnv();
    target = await createTestDatabase('target');
    work = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-rebuild-'));
    await withDb(env.url, (c) => c.query(TORTURE_DDL + TORTURE_SEED));
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitReloads(env.url, 1);
    await runSteps(env.url, 0, 30);
    // An added and a dropped column.
    await withDb(env.url, (c) => c.query(`ALTER TABLE t_main ADD COLUMN extra int; ALTER TABLE t_main DROP COLUMN e`));
    await runSteps(env.url, 30, 30);
    await withDb(env.url, (c) => c.query(`UPDATE t_main SET extra = id % 7 WHERE id % 2 = 0`));
    await waitCaughtUp(env);
    await pause();
    await runSteps(env.url, 60, 30);
    // A second reload set between the pauses: as of pause 1 the first one is used.
    expect((await runCli(['reload', 'public.t_main', '--config', env.configPath, '--wait'])).code).toBe(0);
    await runSteps(env.url, 90, 20);
    await pause();
    await runSteps(env.url, 110, 30);
    await pause();
    await runSteps(env.url, 140, 25);
    for (const t of TABLES) finalCopies.set(t, await copyText(env.url, t));
    await waitCaughtUp(env);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
  }, 300_000);

  afterAll(async () => {
    daemon?.proc.kill('SIGKILL');
    await env?.drop();
    await target?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('into PostgreSQL equals the source (EXCEPT ALL both ways)', async () => {
    // The four tables in one run, as a user rebuilds a schema (one verification of the archive).
    const r = await runCli(['rebuild', ...TABLES.map((t) => `public.${t}`), '--from', env.outDir, '--into', target.url]);
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    for (const t of TABLES) {
      expect(r.stdout).toContain(`rebuilt public.${t}`);
      const n = await expectSameRows(target.url, `public.${t}`, finalCopies.get(t)!, t);
      expect(n).toBeGreaterThan(0);
    }
    // "" and NULL kept apart, numeric exact.
    const src = await withDb(env.url, (c) => c.query(`SELECT count(*) FILTER (WHERE v = '') AS e, count(*) FILTER (WHERE v IS NULL) AS n, sum(amount)::text AS s FROM t_main`));
    const got = await withDb(target.url, (c) => c.query(`SELECT count(*) FILTER (WHERE v = '') AS e, count(*) FILTER (WHERE v IS NULL) AS n, sum(amount)::text AS s FROM public.t_main`));
    expect(got.rows[0]).toEqual(src.rows[0]);
    expect(Number(src.rows[0].e)).toBeGreaterThan(0);
    expect(Number(src.rows[0].n)).toBeGreaterThan(0);
  });

  it('into DuckDB equals the source (type-aware EXCEPT ALL both ways), and into csv: byte for byte as COPY prints it', async () => {
    const duck = path.join(work, 'rebuilt.duckdb');
    const r = await runCli(['rebuild', ...TABLES.map((t) => `public.${t}`), '--from', env.outDir, '--into', `duckdb:${duck}`]);
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    for (const t of TABLES) expect(r.stdout).toContain(`rebuilt public.${t}`);
    for (const t of TABLES) expect(await expectSameRowsDuckdb(duck, env.url, t, work)).toBeGreaterThan(0);
    for (const t of TABLES) {
      const file = path.join(work, `${t}.csv.gz`);
      const r = await runCli(['rebuild', `public.${t}`, '--from', env.outDir, '--into', `csv:${file}`]);
      expect(r.stderr).not.toContain('pg-egress:');
      expect(r.code).toBe(0);
      const lines = zlib.gunzipSync(readFileSync(file));
      const header = lines.subarray(0, lines.indexOf(0x0a)).toString();
      expect(header).toBe((await copyOut(env.url, `COPY (SELECT * FROM ${t} LIMIT 0) TO STDOUT (FORMAT csv, HEADER)`)).toString().trim());
      expect(csvRecords(lines.subarray(lines.indexOf(0x0a) + 1))).toEqual(csvRecords(finalCopies.get(t)!));
    }
  });

  it('schema-sql output for PostgreSQL and DuckDB runs and loads a window exactly', async () => {
    const folder = path.join(env.outDir, 'public.t_main');
    const reloadWin = readdirSync(folder)
      .filter((x) => readdirSync(path.join(folder, x)).some((f) => f.startsWith('full_reload')))
      .pop()!;
    const win = path.join(folder, reloadWin);
    const pgSql = await runCli(['schema-sql', '--dialect', 'postgres', win]);
    expect(pgSql.code).toBe(0);
    const stmts = pgSql.stdout.split(/;\n/).map((x) => x.replace(/^(--[^\n]*\n)+/gm, '').trim()).filter(Boolean);
    const ddl = stmts.filter((x) => x.startsWith('CREATE'));
    const copies = stmts.filter((x) => x.startsWith('COPY'));
    expect(ddl.length).toBe(2);
    const db = await createTestDatabase('schemasql');
    try {
      const parts = readdirSync(win).filter((f) => f.startsWith('full_reload')).sort();
      await withDb(db.url, async (c) => {
        for (const x of ddl) await c.query(x);
        for (const [i, part] of parts.entries()) {
          const s = c.query(copyFrom(copies[i]));
          await new Promise<void>((resolve, reject) => {
            s.on('finish', resolve);
            s.on('error', reject);
            s.end(zlib.gunzipSync(readFileSync(path.join(win, part))));
          });
        }
      });
      const file = parts.map((p) => zlib.gunzipSync(readFileSync(path.join(win, p)))).map((b) => b.subarray(b.indexOf(0x0a) + 1));
      expect(csvRecords(await copyOut(db.url, 'COPY public.t_main TO STDOUT (FORMAT csv)'))).toEqual(csvRecords(Buffer.concat(file)));
      // DuckDB: the statements as printed, run as they are.
      const duckSql = await runCli(['schema-sql', '--dialect', 'duckdb', win]);
      expect(duckSql.code).toBe(0);
      const duck = await openDuckdb(path.join(work, 'schema-sql.duckdb'));
      try {
        for (const x of duckSql.stdout.split(/;\n/).map((y) => y.trim()).filter((y) => y && !/^(--[^\n]*\n?)+$/.test(y))) await duck.query(x);
        const q = `SELECT count(*) AS n, count(*) FILTER (WHERE v = '') AS e, count(*) FILTER (WHERE v IS NULL) AS nul, CAST(sum(amount) AS VARCHAR) AS s FROM public.t_main`;
        const got = (await duck.query(q))[0];
        const want = await withDb(db.url, async (c) => (await c.query(`SELECT count(*)::text AS n, count(*) FILTER (WHERE v = '')::text AS e, count(*) FILTER (WHERE v IS NULL)::text AS nul, sum(amount)::text AS s FROM public.t_main`)).rows[0]);
        expect({ n: String(got.n), e: String(got.e), nul: String(got.nul), s: String(got.s) }).toEqual(want);
        expect(Number(want.e)).toBeGreaterThan(0);
      } finally {
        await duck.close();
      }
    } finally {
      await db.drop();
    }
  });

  it('as of three points, by LSN and by time, equals the copies taken then', async () => {
    expect(pauses.length).toBe(3);
    for (const p of pauses) {
      for (const [kind, asOf] of [
        ['lsn', p.lsn],
        ['time', p.time],
      ]) {
        // The three tables in one run (one verification of the archive), over the last point's.
        const tables = ['t_main', 't_trunc', 't_part'];
        const r = await runCli(['rebuild', ...tables.map((t) => `public.${t}`), '--from', env.outDir, '--as-of', asOf, '--into', target.url, '--replace']);
        expect(r.stderr, `as of ${asOf}`).not.toContain('pg-egress:');
        expect(r.code).toBe(0);
        for (const t of tables) await expectSameRows(target.url, `public.${t}`, p.copies.get(t)!, `${t} as of ${kind} ${asOf}`);
      }
    }
  });

  it('refuses a changed byte or a deleted batch index (exit 10, named) and leaves the target as it was', async () => {
    const dir = path.join(work, 'tampered');
    cpSync(env.outDir, dir, { recursive: true });
    const folder = path.join(dir, 'public.t_main');
    const windows = readdirSync(folder).sort();
    const w = windows.filter((x) => readdirSync(path.join(folder, x)).includes('streaming.csv.gz')).pop()!;
    const file = path.join(folder, w, 'streaming.csv.gz');
    const bytes = readFileSync(file);
    const text = zlib.gunzipSync(bytes).toString();
    // One byte of the first record changed (its last character), gzip valid: only the hashes tell.
    const at = text.indexOf('\n', text.indexOf('\n') + 1) - 1;
    writeFileSync(file, zlib.gzipSync(text.slice(0, at) + (text[at] === 'x' ? 'y' : 'x') + text.slice(at + 1)));
    await withDb(target.url, (c) => c.query(`CREATE TABLE public.keep (x int); INSERT INTO keep VALUES (1)`));
    const r = await runCli(['rebuild', 'public.t_main', '--from', dir, '--into', target.url, '--target', 'public.keep', '--replace']);
    expect(r.code).toBe(10);
    expect(r.stderr).toContain(`public.t_main/${w}/streaming.csv.gz`);
    expect((await withDb(target.url, (c) => c.query(`SELECT count(*)::int AS n FROM public.keep`))).rows[0].n).toBe(1);
    writeFileSync(file, bytes);
    // A batch index in the middle of the chain deleted.
    const batches = readdirSync(path.join(dir, '_batches')).sort();
    const victim = batches[Math.floor(batches.length / 2)];
    unlinkSync(path.join(dir, '_batches', victim));
    const r2 = await runCli(['rebuild', 'public.t_main', '--from', dir, '--into', target.url, '--target', 'public.keep', '--replace']);
    expect(r2.code).toBe(10);
    expect(r2.stderr).toContain(victim.replace(/\.json$/, ''));
    expect((await withDb(target.url, (c) => c.query(`SELECT count(*)::int AS n FROM public.keep`))).rows[0].n).toBe(1);
    // --no-verify goes on, loudly.
    const r3 = await runCli(['rebuild', 'public.t_trunc', '--from', dir, '--into', target.url, '--target', 'public.nv', '--no-verify']);
    expect(r3.stderr).toContain('WARNING: --no-verify');
  });
});
