/**
 * S3 as the archive of record (issue 17), what goes wrong: with S3 stopped for a while nothing is
 * removed locally while its upload is pending, and after S3 returns everything uploads and
 * output.dir shrinks; a lost volume and a lost registry (with `recover --from s3://`) continue
 * without exporting again; a forged batch makes `recover` exit 10 naming it. The setting:
 * test/helpers/s3-archive.ts (bounded disk: archive-of-record.test.ts). Sizes: S3 is down for 6 s
 * by default, 12 s with PG_EGRESS_TEST_FULL=1, 60 s with PG_EGRESS_TEST_S3_FULL=1 (OUTAGE_MS);
 * after a loss the daemon streams 3 windows by default, 5 with either (WINDOWS).
 */
import { describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import zlib from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { waitFor } from '../harness/pg.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server } from '../harness/s3-server.js';
import { createS3Target } from '../../src/anchor/s3.js';
import { runCli, sleep, waitBatches, waitCaughtUp, withDb } from '../helpers/egress.js';
import { localDataBytes, OUTAGE_MS, PENDING_MIN, PREFIX, s3ArchiveSuite, s3Env, sized } from '../helpers/s3-archive.js';

/** Windows streamed after a lost volume or registry. */
const WINDOWS = sized(5, 5, 3);

describe('S3 as the archive of record: outages and losses', () => {
  const ctx = s3ArchiveSuite();
  /** Starts the daemon and streams a few windows under the writer, each registered and anchored. */
  const startAndWriteAFewWindows = async () => {
    await ctx.start();
    const w = ctx.writer();
    await waitBatches(ctx.env, WINDOWS);
    await w.stop();
    await waitCaughtUp(ctx.env);
    await ctx.anchorsDone();
  };

  it('S3 down: nothing pending upload is removed locally; after S3 returns everything uploads and output.dir shrinks', { timeout: 600_000 }, async () => {
    await ctx.start();
    await ctx.anchorsDone(); // the initial export
    const w = ctx.writer();
    await waitBatches(ctx.env, 3);
    await ctx.s3.stop(true);
    const t0 = Date.now();
    let pendingSeen = 0;
    let grew = 0;
    while (Date.now() - t0 < OUTAGE_MS) {
      await sleep(1000);
      // Files of batches whose upload is pending are all still on disk, and none is recorded as removed.
      const removedPending = await ctx.q<{ n: number }>(
        `SELECT count(*)::int AS n FROM cdc_registry.files f JOIN cdc_registry.anchor_queue a ON a.batch_id = f.batch_id AND a.target = 's3' AND a.state <> 'done' WHERE f.local_removed_at IS NOT NULL`,
      );
      expect(removedPending[0].n).toBe(0);
      expect(await ctx.localDataFilesAreOnDisk({ pendingOnly: true })).toEqual([]);
      pendingSeen = Math.max(pendingSeen, (await ctx.q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.anchor_queue WHERE state = 'pending'`))[0].n);
      grew = Math.max(grew, localDataBytes(ctx.env.outDir));
    }
    expect(pendingSeen).toBeGreaterThan(PENDING_MIN);
    const restarted = await startS3Server({ bucket: ctx.s3.bucket, port: ctx.s3.port, directory: ctx.s3.directory });
    ctx.s3 = restarted;
    await w.stop();
    await waitCaughtUp(ctx.env);
    await ctx.anchorsDone();
    await waitFor('output.dir shrinks again', async () => localDataBytes(ctx.env.outDir) === 0, { timeoutMs: 180_000, intervalMs: 500 });
    expect(grew).toBeGreaterThan(0);
    await ctx.expectRebuildFromS3('s3-down');
  });

  it('lost volume: output.dir deleted while stopped; the daemon continues (no exit 8, no export again)', async () => {
    await ctx.anchorsDone();
    await ctx.stop();
    const reloadsBefore = (await ctx.q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.reloads`))[0].n;
    rmSync(ctx.env.outDir, { recursive: true, force: true });
    await startAndWriteAFewWindows();
    expect(ctx.daemon!.proc.exitCode).toBeNull();
    // What the daemon confirmed came from the S3 copy of _confirmed.json (no false slot_moved gap).
    expect(ctx.daemon!.stdout() + ctx.daemon!.stderr()).toContain('output.dir had no _confirmed.json: taken from its S3 copy');
    expect((await ctx.q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.reloads`))[0].n).toBe(reloadsBefore);
    expect(await ctx.q(`SELECT kind, detail FROM cdc_registry.gaps`)).toEqual([]);
    await ctx.expectRebuildFromS3('lost-volume');
  });

  it('lost registry: DROP SCHEMA cdc_registry, recover --from s3://, start: no export again, no duplicate (_lsn, _seq)', async () => {
    await ctx.anchorsDone();
    await ctx.stop();
    await withDb(ctx.env.url, (c) => c.query(`DROP SCHEMA cdc_registry CASCADE`));
    // Without recover: refused, one line naming it.
    const refused = await runCli(['run', '--config', ctx.env.configPath], { env: s3Env, mayFail: true });
    expect(refused.code).toBe(8);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('pg-egress recover');
    const r = await runCli(['recover', '--config', ctx.env.configPath, '--from', `s3://${ctx.s3.bucket}/${PREFIX}`], { env: s3Env });
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^recovered \d+ batches \(\d+ files\) from s3:/m);
    await startAndWriteAFewWindows();
    expect(await ctx.q(`SELECT reason FROM cdc_registry.reloads`)).toEqual([]);
    expect(await ctx.q(`SELECT kind FROM cdc_registry.gaps`)).toEqual([]);
    // Every streaming row in S3 once: no (_lsn, _seq) twice.
    const target = createS3Target(ctx.s3Settings());
    try {
      const seen = new Set<string>();
      let dups = 0;
      for (const f of await ctx.q<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' ORDER BY id`)) {
        const body = zlib.gunzipSync((await target.getSmall(f.path))!).toString().split('\n').slice(1);
        for (const line of body) {
          if (!line) continue;
          const [lsn, seq] = line.split(',');
          const k = `${lsn}/${seq}`;
          if (seen.has(k)) dups++;
          seen.add(k);
        }
      }
      expect(seen.size).toBeGreaterThan(1000);
      expect(dups).toBe(0);
    } finally {
      target.close();
    }
    await ctx.expectRebuildFromS3('lost-registry');
  });

  it('a forged batch in S3 makes recover exit 10 naming it', async () => {
    if (ctx.daemon) await ctx.stop();
    // A streaming file past the first few that holds an insert: a file may hold none (the
    // writer's UPDATE and DELETE transactions), and the fourth held none in a CI run on PG 18.
    const target = createS3Target(ctx.s3Settings());
    let f: { path: string; batch_id: string } | undefined;
    let text = '';
    for (const c of await ctx.q<{ path: string; batch_id: string }>(`SELECT path, batch_id FROM cdc_registry.files WHERE file_type = 'streaming' ORDER BY id OFFSET 3`)) {
      text = zlib.gunzipSync((await target.getSmall(c.path))!).toString();
      if (/,I,,/.test(text)) {
        f = c;
        break;
      }
    }
    target.close();
    if (!f) throw new Error('no streaming file with an insert after the first three');
    const client = new S3Client({ region: 'us-east-1', endpoint: ctx.s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY } });
    const forged = text.replace(/,I,,/, ',D,,');
    expect(forged).not.toBe(text);
    await client.send(new PutObjectCommand({ Bucket: ctx.s3.bucket, Key: `${PREFIX}/${f.path}`, Body: zlib.gzipSync(forged) }));
    client.destroy();
    const v = await runCli(['verify', ...ctx.s3Args()], { env: s3Env, mayFail: true });
    expect(v.code).toBe(10);
    expect(v.stdout).toContain(`s3://${ctx.s3.bucket}/${PREFIX}/${f.path}: sha256 differs from the manifest`);
    await withDb(ctx.env.url, (c) => c.query(`DROP SCHEMA cdc_registry CASCADE`));
    const r = await runCli(['recover', '--config', ctx.env.configPath, '--from', `s3://${ctx.s3.bucket}/${PREFIX}`], { env: s3Env, mayFail: true });
    expect(r.code).toBe(10);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`batch ${f.batch_id}`);
    expect(r.stderr).toContain(f.path);
  });
});
