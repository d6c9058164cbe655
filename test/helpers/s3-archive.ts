/**
 * The shared setting of the S3 archive-of-record tests (issue 17): s3rver on 127.0.0.1, a database
 * with a seeded table `t`, a daemon with 1 s windows, output.retain and an S3 anchor target, and the
 * checks both test files use. Two files so that the long scenarios run side by side.
 *
 * Three sizes. PG_EGRESS_TEST_S3_FULL=1, the issue's figures: the writer runs 3 minutes at ≥ 500
 * rows/s with output.retain 30s, S3 is down for 60 s. PG_EGRESS_TEST_FULL=1 (test/helpers/scale.ts,
 * what CI runs on test/integration): 40 s, retain 5s, 12 s. By default (npm test): 16 s, retain 2s,
 * 6 s — still an outage longer than the anchor worker's first retry backoffs (2 s, 4 s), and a run
 * longer than retain + the upload-lag slack of the bounded-disk check.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { waitFor } from '../harness/pg.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { createEnv, loopWriter, runCli, sleep, spawnCli, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from './egress.js';
import { copyText, csvRecords } from './archive.js';
import { scaled } from './scale.js';

export const PREFIX = 'archive/a';
const S3_FULL = process.env.PG_EGRESS_TEST_S3_FULL === '1';
/** The sizes (see the header): PG_EGRESS_TEST_S3_FULL=1's, else PG_EGRESS_TEST_FULL=1's, else quick. */
export const sized = <T>(s3Full: T, full: T, quick: T): T => (S3_FULL ? s3Full : scaled(full, quick));
export const RETAIN_S = sized(30, 5, 2);
export const WRITE_MS = sized(180_000, 40_000, 16_000);
export const OUTAGE_MS = sized(60_000, 12_000, 6_000);
/** The upload lag the bounded-disk check allows on top of retain; RETAIN_S + LAG_S < the writer's run. */
export const LAG_S = sized(25, 25, 10);
/** S3 entries seen pending during the outage, more than (a batch a second is registered meanwhile). */
export const PENDING_MIN = sized(5, 5, 2);
export const s3Env = { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY, AWS_EC2_METADATA_DISABLED: 'true' };

/** Bytes of data files (*.csv.gz) in a folder tree. */
export function localDataBytes(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(d, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue; // removed by retention meanwhile
      }
      if (st.isDirectory()) walk(p);
      else if (name.endsWith('.csv.gz')) n += st.size;
    }
  };
  walk(dir);
  return n;
}

/** Registers the beforeAll/afterAll of a file and returns its setting; call inside describe(). */
export function s3ArchiveSuite() {
  const ctx = {
    env: undefined as unknown as EgressEnv,
    s3: undefined as unknown as S3TestServer,
    daemon: null as Child | null,
    s3Settings: () => ({ bucket: ctx.s3.bucket, prefix: PREFIX, region: 'us-east-1', endpoint: ctx.s3.endpoint, forcePathStyle: true }),
    s3Args: () => ['--from', `s3://${ctx.s3.bucket}/${PREFIX}`, '--s3-endpoint', ctx.s3.endpoint],
    start: async () => {
      ctx.daemon = spawnCli(['run', '--config', ctx.env.configPath], { env: s3Env });
      await waitSlotActive(ctx.env, 60_000);
    },
    stop: async () => {
      ctx.daemon!.proc.kill('SIGTERM');
      const { code } = await ctx.daemon!.exit;
      expect(code, ctx.daemon!.stderr()).toBe(0);
      ctx.daemon = null;
    },
    q: <T extends Record<string, unknown>>(sql: string) => withDb(ctx.env.url, async (c) => (await c.query<T>(sql)).rows),
    anchorsDone: () =>
      waitFor('every S3 anchor done', async () => {
        const r = await ctx.q<{ open: number; n: number }>(`SELECT count(*) FILTER (WHERE state <> 'done')::int AS open, count(*)::int AS n FROM cdc_registry.anchor_queue`);
        return r[0].open === 0 && r[0].n > 0;
      }, { timeoutMs: 180_000, intervalMs: 500 }),
    /** ~1000 rows/s in transactions of 50 rows, with some updates and deletes. */
    writer: () => {
        // Paced at about 1,000 rows/s: it sleeps only while ahead of that, so a slow (loaded)
        // machine still gets well above the 500 rows/s the checks ask for.
        const t0 = Date.now();
        return loopWriter(ctx.env.url, async (c, n) => {
          await c.query(`INSERT INTO t (v) SELECT 'row ' || g || ' ' || md5(g::text) FROM generate_series(1, 50) g`);
          if (n % 500 === 0) await c.query(`UPDATE t SET v = v || ' u' WHERE id % 97 = ${n % 97}; DELETE FROM t WHERE id % 101 = ${n % 101}`);
          const ahead = t0 + n + 50 - Date.now();
          if (ahead > 0) await sleep(ahead);
          return 50;
        });
      },
    /** The table rebuilt from S3 alone (rebuild --from s3://) against the source. */
    expectRebuildFromS3: async (label: string) => {
      const file = path.join(ctx.env.dir, `${label}.csv.gz`);
      const r = await runCli(['rebuild', 'public.t', ...ctx.s3Args(), '--into', `csv:${file}`], { env: s3Env });
      expect(r.stderr).not.toContain('pg-egress:');
      expect(r.code).toBe(0);
      const got = csvRecords(Buffer.from(zlib.gunzipSync(readFileSync(file)).toString().split('\n').slice(1).join('\n')));
      const want = csvRecords(await copyText(ctx.env.url, 't'));
      expect(got.length).toBe(want.length);
      expect(got).toEqual(want);
    },
    /**
     * Registered data files not recorded as removed by retention that are not on disk (expected:
     * none); `pendingOnly`: only those whose S3 upload is not done. Retention unlinks a file, then
     * records it (src/anchor/retention.ts): between the two, an uploaded file is missing and not yet
     * recorded, so a check of every file races with it; a file pending upload is never removed.
     */
    localDataFilesAreOnDisk: async (opts: { pendingOnly?: boolean } = {}) => {
      const rows = await ctx.q<{ path: string }>(
        `SELECT path FROM cdc_registry.files f WHERE local_removed_at IS NULL AND file_type IN ('streaming', 'full_reload')
         ${opts.pendingOnly ? `AND EXISTS (SELECT 1 FROM cdc_registry.anchor_queue a WHERE a.batch_id = f.batch_id AND a.target = 's3' AND a.state <> 'done')` : ''}`,
      );
      return rows.filter((r) => !existsSync(path.join(ctx.env.outDir, r.path))).map((r) => r.path);
    },
  };

  beforeAll(async () => {
    ctx.s3 = await startS3Server({ bucket: 'egress-archive' });
    Object.assign(process.env, s3Env);
    ctx.env = await createEnv();
    writeConfig(
      ctx.env,
      [`output:\n  dir: ${JSON.stringify(ctx.env.outDir)}\n  retain: ${RETAIN_S}s`, 'anchors:', `  s3: {bucket: ${ctx.s3.bucket}, prefix: "${PREFIX}", region: us-east-1, endpoint: "${ctx.s3.endpoint}", force_path_style: true}`].join('\n'),
    );
    await withDb(ctx.env.url, (c) => c.query(`CREATE TABLE t (id bigserial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'seed ' || g FROM generate_series(1, 2000) g`));
  });
  afterAll(async () => {
    if (ctx.daemon && ctx.daemon.proc.exitCode === null) ctx.daemon.proc.kill('SIGKILL');
    await ctx.env?.drop();
    await ctx.s3?.stop();
  });
  return ctx;
}
