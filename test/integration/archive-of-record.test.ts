/**
 * S3 as the archive of record (issue 17), end to end against s3rver on 127.0.0.1: a daemon with
 * 1 s windows and a short output.retain under a writer of ≥ 500 rows/s keeps its local data bytes
 * bounded while every file lands in S3 with its sha256 and the table rebuilt from S3 alone equals
 * the source; with S3 stopped for a while nothing is removed locally while its upload is pending,
 * and after S3 returns everything uploads and output.dir shrinks; a lost volume and a lost
 * registry (with `recover --from s3://`) continue without exporting again; a forged batch makes
 * `recover` exit 10 naming it; a second deployment pointed at the same prefix is refused.
 *
 * With PG_EGRESS_TEST_S3_FULL=1, the figures: the writer runs 3 minutes at ≥ 500 rows/s
 * with output.retain 30s, S3 is down for 60 s (by default 40 s, retain 5s, 20 s). The bound
 * asserted: local data bytes never exceed what the writer produced in
 * (retain + 25 s), measured against the run's average rate — far below the total written (the run
 * is longer than that), and 0 once the writer stops and retain passes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { waitFor } from '../harness/pg.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { createS3Target } from '../../src/anchor/s3.js';
import { createEnv, loopWriter, runCli, sleep, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';
import { copyText, csvRecords } from '../helpers/archive.js';

const PREFIX = 'archive/a';
// PG_EGRESS_TEST_S3_FULL=1: the figures (3 min writer, retain 30s, 60 s outage); by default
// a shorter run of the same checks (40 s, retain 5s, 20 s outage) to keep npm test's time down.
const FULL = process.env.PG_EGRESS_TEST_S3_FULL === '1';
const RETAIN_S = FULL ? 30 : 5;
const WRITE_MS = FULL ? 180_000 : 40_000;
const OUTAGE_MS = FULL ? 60_000 : 20_000;
const s3Env = { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY, AWS_EC2_METADATA_DISABLED: 'true' };

/** Bytes of data files (*.csv.gz) in a folder tree. */
function localDataBytes(dir: string): number {
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

describe('S3 as the archive of record', () => {
  let env: EgressEnv;
  let s3: S3TestServer;
  let daemon: Child | null = null;
  const s3Settings = () => ({ bucket: s3.bucket, prefix: PREFIX, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true });
  const s3Args = () => ['--from', `s3://${s3.bucket}/${PREFIX}`, '--s3-endpoint', s3.endpoint];

  beforeAll(async () => {
    s3 = await startS3Server({ bucket: 'egress-archive' });
    Object.assign(process.env, s3Env);
    env = await createEnv();
    writeConfig(
      env,
      [`output:\n  dir: ${JSON.stringify(env.outDir)}\n  retain: ${RETAIN_S}s`, 'anchors:', `  s3: {bucket: ${s3.bucket}, prefix: "${PREFIX}", region: us-east-1, endpoint: "${s3.endpoint}", force_path_style: true}`].join('\n'),
    );
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id bigserial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'seed ' || g FROM generate_series(1, 2000) g`));
  });
  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
    await s3?.stop();
  });

  const start = async () => {
    daemon = spawnCli(['run', '--config', env.configPath], { env: s3Env });
    await waitSlotActive(env, 60_000);
  };
  const stop = async () => {
    daemon!.proc.kill('SIGTERM');
    const { code } = await daemon!.exit;
    expect(code, daemon!.stderr()).toBe(0);
    daemon = null;
  };
  const q = <T extends Record<string, unknown>>(sql: string) => withDb(env.url, async (c) => (await c.query<T>(sql)).rows);
  const anchorsDone = () =>
    waitFor('every S3 anchor done', async () => {
      const r = await q<{ open: number; n: number }>(`SELECT count(*) FILTER (WHERE state <> 'done')::int AS open, count(*)::int AS n FROM cdc_registry.anchor_queue`);
      return r[0].open === 0 && r[0].n > 0;
    }, { timeoutMs: 180_000, intervalMs: 500 });
  /** ~1000 rows/s in transactions of 50 rows, with some updates and deletes. */
  const writer = () =>
    loopWriter(env.url, async (c, n) => {
      await c.query(`INSERT INTO t (v) SELECT 'row ' || g || ' ' || md5(g::text) FROM generate_series(1, 50) g`);
      if (n % 500 === 0) await c.query(`UPDATE t SET v = v || ' u' WHERE id % 97 = ${n % 97}; DELETE FROM t WHERE id % 101 = ${n % 101}`);
      await sleep(40);
      return 50;
    });
  /** The table rebuilt from S3 alone (rebuild --from s3://) against the source. */
  const expectRebuildFromS3 = async (label: string) => {
    const file = path.join(env.dir, `${label}.csv.gz`);
    const r = await runCli(['rebuild', 'public.t', ...s3Args(), '--into', `csv:${file}`], { env: s3Env });
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    const { readFileSync } = await import('node:fs');
    const got = csvRecords(Buffer.from(zlib.gunzipSync(readFileSync(file)).toString().split('\n').slice(1).join('\n')));
    const want = csvRecords(await copyText(env.url, 't'));
    expect(got.length).toBe(want.length);
    expect(got).toEqual(want);
  };
  const localDataFilesAreOnDisk = async () => {
    const rows = await q<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE local_removed_at IS NULL AND file_type IN ('streaming', 'full_reload')`);
    const { existsSync } = await import('node:fs');
    return rows.filter((r) => !existsSync(path.join(env.outDir, r.path))).map((r) => r.path);
  };

  it('bounded disk: local data bytes stay bounded, every file is in S3 with its sha256, the table rebuilt from S3 equals the source', { timeout: 600_000 }, async () => {
    await start();
    await anchorsDone(); // the initial export
    const w = writer();
    const t0 = Date.now();
    let maxLocal = 0;
    const samples: number[] = [];
    while (Date.now() - t0 < WRITE_MS) {
      await sleep(1000);
      const b = localDataBytes(env.outDir);
      samples.push(b);
      maxLocal = Math.max(maxLocal, b);
    }
    const rows = await w.stop();
    const seconds = (Date.now() - t0) / 1000;
    expect(rows / seconds).toBeGreaterThanOrEqual(500);
    await waitCaughtUp(env);
    await anchorsDone();
    const total = (await q<{ b: string }>(`SELECT sum(bytes)::text AS b FROM cdc_registry.files WHERE file_type = 'streaming'`))[0].b;
    const perSecond = Number(total) / seconds;
    const bound = (RETAIN_S + 25) * perSecond;
    // The bound (see the header): retention keeps output.dir at (retain + upload lag) worth of data.
    console.log(`bounded disk: ${Math.round(rows / seconds)} rows/s for ${Math.round(seconds)} s, ${total} data bytes written, max ${maxLocal} local (bound ${Math.round(bound)})`);
    expect(maxLocal, `local data bytes per second: ${samples.join(' ')}`).toBeLessThan(bound);
    expect(maxLocal).toBeLessThan(Number(total));
    // Once the writer stops and retain passes, the data files are gone locally (the small files stay).
    await waitFor('local data files removed', async () => localDataBytes(env.outDir) === 0, { timeoutMs: 180_000, intervalMs: 500 });
    expect(await localDataFilesAreOnDisk()).toEqual([]);
    const status = await runCli(['status', '--config', env.configPath, '--json'], { env: s3Env, mayFail: true });
    const local = (JSON.parse(status.stdout) as { local: { localDataBytes: number; removedBytes: number; retain: string } }).local;
    expect(local.localDataBytes).toBe(0);
    expect(local.removedBytes).toBeGreaterThan(0);
    expect(local.retain).toBe(`${RETAIN_S}s`);
    // Every registered file is in S3 with its registered size and sha256.
    const target = createS3Target(s3Settings());
    try {
      const files = await q<{ path: string; bytes: string; sha256: string }>(`SELECT path, bytes::text, sha256 FROM cdc_registry.files ORDER BY id`);
      expect(files.length).toBeGreaterThan(40);
      for (const f of files) expect(await target.check(f.path, { bytes: Number(f.bytes), sha256: f.sha256 }), f.path).toBe(true);
    } finally {
      target.close();
    }
    await expectRebuildFromS3('bounded');
    // verify --from s3:// checks every file where it is; a proof of a record of a file only in S3.
    const v = await runCli(['verify', ...s3Args()], { env: s3Env });
    expect(v.stdout).toMatch(/^ok: \d+ batch indexes and their chain/);
    expect(v.code).toBe(0);
    const [gone] = await q<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' AND local_removed_at IS NOT NULL ORDER BY id DESC LIMIT 1`);
    const { existsSync } = await import('node:fs');
    expect(existsSync(path.join(env.outDir, gone.path))).toBe(false);
    const proof = path.join(env.dir, 'proof.json');
    const p = await runCli(['verify', ...s3Args(), gone.path, '--row', '0', '--proof', proof], { env: s3Env });
    expect(p.stderr).not.toContain('pg-egress:');
    expect(p.code).toBe(0);
    const vp = await runCli(['verify-proof', proof]);
    expect(vp.stdout).toContain('PROVEN');
    expect(vp.code).toBe(0);
    // Local state: the chain and manifests are there; with --config the removed files count as S3 only
    // (their copies are checked there), without it they are named missing.
    const lv = await runCli(['verify', env.outDir, '--config', env.configPath], { env: s3Env });
    expect(lv.stdout).toMatch(/^ok: .* files in S3 only \(output\.retain\)/);
    expect(lv.code).toBe(0);
    const lm = await runCli(['verify', env.outDir], { env: s3Env, mayFail: true });
    expect(lm.code).toBe(10);
    expect(lm.stdout).toContain('missing (listed in its manifest)');
  });

  it('a second deployment pointed at the same bucket and prefix is refused before it uploads anything', async () => {
    const other = await createEnv();
    try {
      writeConfig(other, ['anchors:', `  s3: {bucket: ${s3.bucket}, prefix: "${PREFIX}", region: us-east-1, endpoint: "${s3.endpoint}", force_path_style: true}`].join('\n'));
      await withDb(other.url, (c) => c.query(`CREATE TABLE o (id int PRIMARY KEY)`));
      const r = await runCli(['run', '--config', other.configPath], { env: s3Env, mayFail: true });
      expect(r.code).toBe(8);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`s3://${s3.bucket}/${PREFIX} belongs to slot "${env.slot}"`);
      // Refused before the slot was created, so before anything could be uploaded.
      const slots = await withDb(other.url, async (c) => (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [other.slot])).rowCount);
      expect(slots).toBe(0);
    } finally {
      await other.drop();
    }
  });

  it('S3 down: nothing pending upload is removed locally; after S3 returns everything uploads and output.dir shrinks', { timeout: 600_000 }, async () => {
    const w = writer();
    await waitBatches(env, 3);
    await s3.stop(true);
    const t0 = Date.now();
    let pendingSeen = 0;
    let grew = 0;
    while (Date.now() - t0 < OUTAGE_MS) {
      await sleep(1000);
      // Files of batches whose upload is pending are all still on disk, and none is recorded as removed.
      const removedPending = await q<{ n: number }>(
        `SELECT count(*)::int AS n FROM cdc_registry.files f JOIN cdc_registry.anchor_queue a ON a.batch_id = f.batch_id AND a.target = 's3' AND a.state <> 'done' WHERE f.local_removed_at IS NOT NULL`,
      );
      expect(removedPending[0].n).toBe(0);
      expect(await localDataFilesAreOnDisk()).toEqual([]);
      pendingSeen = Math.max(pendingSeen, (await q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.anchor_queue WHERE state = 'pending'`))[0].n);
      grew = Math.max(grew, localDataBytes(env.outDir));
    }
    expect(pendingSeen).toBeGreaterThan(5);
    const restarted = await startS3Server({ bucket: s3.bucket, port: s3.port, directory: s3.directory });
    s3 = restarted;
    await w.stop();
    await waitCaughtUp(env);
    await anchorsDone();
    await waitFor('output.dir shrinks again', async () => localDataBytes(env.outDir) === 0, { timeoutMs: 180_000, intervalMs: 500 });
    expect(grew).toBeGreaterThan(0);
    await expectRebuildFromS3('s3-down');
  });

  it('lost volume: output.dir deleted while stopped; the daemon continues (no exit 8, no export again)', async () => {
    await anchorsDone();
    await stop();
    const reloadsBefore = (await q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.reloads`))[0].n;
    rmSync(env.outDir, { recursive: true, force: true });
    await start();
    const w = writer();
    // Streamed and registered under the writer for a few windows.
    await waitBatches(env, 5);
    await w.stop();
    await waitCaughtUp(env);
    await anchorsDone();
    expect(daemon!.proc.exitCode).toBeNull();
    // What the daemon confirmed came from the S3 copy of _confirmed.json (no false slot_moved gap).
    expect(daemon!.stdout() + daemon!.stderr()).toContain('output.dir had no _confirmed.json: taken from its S3 copy');
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_registry.reloads`))[0].n).toBe(reloadsBefore);
    expect(await q(`SELECT kind, detail FROM cdc_registry.gaps`)).toEqual([]);
    await expectRebuildFromS3('lost-volume');
  });

  it('lost registry: DROP SCHEMA cdc_registry, recover --from s3://, start: no export again, no duplicate (_lsn, _seq)', async () => {
    await anchorsDone();
    await stop();
    await withDb(env.url, (c) => c.query(`DROP SCHEMA cdc_registry CASCADE`));
    // Without recover: refused, one line naming it.
    const refused = await runCli(['run', '--config', env.configPath], { env: s3Env, mayFail: true });
    expect(refused.code).toBe(8);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('pg-egress recover');
    const r = await runCli(['recover', '--config', env.configPath, '--from', `s3://${s3.bucket}/${PREFIX}`], { env: s3Env });
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^recovered \d+ batches \(\d+ files\) from s3:/m);
    await start();
    const w = writer();
    // Streamed and registered under the writer for a few windows.
    await waitBatches(env, 5);
    await w.stop();
    await waitCaughtUp(env);
    await anchorsDone();
    expect(await q(`SELECT reason FROM cdc_registry.reloads`)).toEqual([]);
    expect(await q(`SELECT kind FROM cdc_registry.gaps`)).toEqual([]);
    // Every streaming row in S3 once: no (_lsn, _seq) twice.
    const target = createS3Target(s3Settings());
    try {
      const seen = new Set<string>();
      let dups = 0;
      for (const f of await q<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' ORDER BY id`)) {
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
    await expectRebuildFromS3('lost-registry');
  });

  it('a forged batch in S3 makes recover exit 10 naming it', async () => {
    if (daemon) await stop();
    const [f] = await q<{ path: string; batch_id: string }>(`SELECT path, batch_id FROM cdc_registry.files WHERE file_type = 'streaming' ORDER BY id LIMIT 1 OFFSET 3`);
    const target = createS3Target(s3Settings());
    const orig = (await target.getSmall(f.path))!;
    target.close();
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY } });
    const text = zlib.gunzipSync(orig).toString();
    const forged = text.replace(/,I,,/, ',D,,');
    expect(forged).not.toBe(text);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${PREFIX}/${f.path}`, Body: zlib.gzipSync(forged) }));
    client.destroy();
    const v = await runCli(['verify', ...s3Args()], { env: s3Env, mayFail: true });
    expect(v.code).toBe(10);
    expect(v.stdout).toContain(`s3://${s3.bucket}/${PREFIX}/${f.path}: sha256 differs from the manifest`);
    await withDb(env.url, (c) => c.query(`DROP SCHEMA cdc_registry CASCADE`));
    const r = await runCli(['recover', '--config', env.configPath, '--from', `s3://${s3.bucket}/${PREFIX}`], { env: s3Env, mayFail: true });
    expect(r.code).toBe(10);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`batch ${f.batch_id}`);
    expect(r.stderr).toContain(f.path);
  });
});
