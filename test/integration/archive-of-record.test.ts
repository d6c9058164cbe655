/**
 * S3 as the archive of record (issue 17), end to end against s3rver on 127.0.0.1: a daemon with
 * 1 s windows and a short output.retain under a writer of ≥ 500 rows/s keeps its local data bytes
 * bounded while every file lands in S3 with its sha256 and the table rebuilt from S3 alone equals
 * the source; a second deployment pointed at the same prefix is refused. S3 down, a lost volume, a
 * lost registry and a forged batch: archive-of-record-recovery.test.ts. The setting and the
 * figures (three sizes: by default a 16 s writer with retain 2s, PG_EGRESS_TEST_FULL=1 40 s with
 * retain 5s, PG_EGRESS_TEST_S3_FULL=1 the 3 minutes with retain 30s):
 * test/helpers/s3-archive.ts. The bound asserted: local data bytes never exceed what the writer
 * produced in (retain + LAG_S: 10 s by default, else 25 s), measured against the run's average
 * rate — below the total written (the run is longer than that), and 0 once the writer stops and
 * retain passes.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { waitFor } from '../harness/pg.js';
import { createS3Target } from '../../src/anchor/s3.js';
import { createEnv, runCli, sleep, waitCaughtUp, withDb, writeConfig } from '../helpers/egress.js';
import { LAG_S, localDataBytes, PREFIX, RETAIN_S, s3ArchiveSuite, s3Env, WRITE_MS } from '../helpers/s3-archive.js';

describe('S3 as the archive of record', () => {
  const ctx = s3ArchiveSuite();

  it('bounded disk: local data bytes stay bounded, every file is in S3 with its sha256, the table rebuilt from S3 equals the source', { timeout: 600_000 }, async () => {
    await ctx.start();
    await ctx.anchorsDone(); // the initial export
    const w = ctx.writer();
    const t0 = Date.now();
    let maxLocal = 0;
    const samples: number[] = [];
    while (Date.now() - t0 < WRITE_MS) {
      await sleep(1000);
      const b = localDataBytes(ctx.env.outDir);
      samples.push(b);
      maxLocal = Math.max(maxLocal, b);
    }
    const rows = await w.stop();
    const seconds = (Date.now() - t0) / 1000;
    expect(rows / seconds).toBeGreaterThanOrEqual(500);
    await waitCaughtUp(ctx.env);
    await ctx.anchorsDone();
    const total = (await ctx.q<{ b: string }>(`SELECT sum(bytes)::text AS b FROM cdc_registry.files WHERE file_type = 'streaming'`))[0].b;
    const perSecond = Number(total) / seconds;
    const bound = (RETAIN_S + LAG_S) * perSecond;
    // The bound (see the header): retention keeps output.dir at (retain + upload lag) worth of data.
    console.log(`bounded disk: ${Math.round(rows / seconds)} rows/s for ${Math.round(seconds)} s, ${total} data bytes written, max ${maxLocal} local (bound ${Math.round(bound)})`);
    expect(maxLocal, `local data bytes per second: ${samples.join(' ')}`).toBeLessThan(bound);
    expect(maxLocal).toBeLessThan(Number(total));
    // Once the writer stops and retain passes, the data files are gone locally (the small files stay).
    await waitFor('local data files removed', async () => localDataBytes(ctx.env.outDir) === 0, { timeoutMs: 180_000, intervalMs: 500 });
    // Every file gone from disk is recorded as removed (retention records it right after the unlink).
    await waitFor('every removed file recorded', async () => (await ctx.localDataFilesAreOnDisk()).length === 0, { intervalMs: 200 });
    const status = await runCli(['status', '--config', ctx.env.configPath, '--json'], { env: s3Env, mayFail: true });
    const local = (JSON.parse(status.stdout) as { local: { localDataBytes: number; removedBytes: number; retain: string } }).local;
    expect(local.localDataBytes).toBe(0);
    expect(local.removedBytes).toBeGreaterThan(0);
    expect(local.retain).toBe(`${RETAIN_S}s`);
    // Every registered file is in S3 with its registered size and sha256.
    const target = createS3Target(ctx.s3Settings());
    try {
      const files = await ctx.q<{ path: string; bytes: string; sha256: string }>(`SELECT path, bytes::text, sha256 FROM cdc_registry.files ORDER BY id`);
      expect(files.length).toBeGreaterThan(40);
      for (const f of files) expect(await target.check(f.path, { bytes: Number(f.bytes), sha256: f.sha256 }), f.path).toBe(true);
    } finally {
      target.close();
    }
    await ctx.expectRebuildFromS3('bounded');
    // verify --from s3:// checks every file where it is; a proof of a record of a file only in S3.
    const v = await runCli(['verify', ...ctx.s3Args()], { env: s3Env });
    expect(v.stdout).toMatch(/^ok: \d+ batch indexes and their chain/);
    expect(v.code).toBe(0);
    const [gone] = await ctx.q<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' AND local_removed_at IS NOT NULL ORDER BY id DESC LIMIT 1`);
    expect(existsSync(path.join(ctx.env.outDir, gone.path))).toBe(false);
    const proof = path.join(ctx.env.dir, 'proof.json');
    const p = await runCli(['verify', ...ctx.s3Args(), gone.path, '--row', '0', '--proof', proof], { env: s3Env });
    expect(p.stderr).not.toContain('pg-egress:');
    expect(p.code).toBe(0);
    const vp = await runCli(['verify-proof', proof]);
    expect(vp.stdout).toContain('PROVEN');
    expect(vp.code).toBe(0);
    // Local state: the chain and manifests are there; with --config the removed files count as S3 only
    // (their copies are checked there), without it they are named missing.
    const lv = await runCli(['verify', ctx.env.outDir, '--config', ctx.env.configPath], { env: s3Env });
    expect(lv.stdout).toMatch(/^ok: .* files in S3 only \(output\.retain\)/);
    expect(lv.code).toBe(0);
    const lm = await runCli(['verify', ctx.env.outDir], { env: s3Env, mayFail: true });
    expect(lm.code).toBe(10);
    expect(lm.stdout).toContain('missing (listed in its manifest)');
  });

  it('a second deployment pointed at the same bucket and prefix is refused before it uploads anything', async () => {
    const other = await createEnv();
    try {
      writeConfig(other, ['anchors:', `  s3: {bucket: ${ctx.s3.bucket}, prefix: "${PREFIX}", region: us-east-1, endpoint: "${ctx.s3.endpoint}", force_path_style: true}`].join('\n'));
      await withDb(other.url, (c) => c.query(`CREATE TABLE o (id int PRIMARY KEY)`));
      const r = await runCli(['run', '--config', other.configPath], { env: s3Env, mayFail: true });
      expect(r.code).toBe(8);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`s3://${ctx.s3.bucket}/${PREFIX} belongs to slot "${ctx.env.slot}"`);
      // Refused before the slot was created, so before anything could be uploaded.
      const slots = await withDb(other.url, async (c) => (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [other.slot])).rowCount);
      expect(slots).toBe(0);
    } finally {
      await other.drop();
    }
  });

});
