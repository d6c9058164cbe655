/**
 * Deterministic crashes (src/failpoints.ts): the daemon kills itself with SIGKILL at a named point
 * of a commit (between a flush's renames and its registration; after an export chunk; between an
 * export's files and its registration; between an anchor's upload and its mark), the test checks
 * the crash left what it should (files in place, nothing registered), restarts the daemon without
 * the failpoint, and rebuilds the table from the files (SPEC §6): equal to the source, no
 * (`_lsn`, `_seq`) twice, the interrupted work done exactly once. The random kill tests
 * (crash.test.ts) cover the moments between these points.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { waitFor } from '../harness/pg.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { createS3Target } from '../../src/anchor/s3.js';
import {
  createEnv,
  loopWriter,
  readStreamingRows,
  rebuildFromOutput,
  reloadSets,
  runCli,
  sortedEntries,
  sourceRows,
  spawnCli,
  waitCaughtUp,
  waitSlotActive,
  withDb,
  writeConfig,
  type Child,
  type EgressEnv,
} from '../helpers/egress.js';

const envs: EgressEnv[] = [];
let daemon: Child | null = null;

afterEach(async () => {
  if (daemon && daemon.proc.exitCode === null && daemon.proc.signalCode === null) {
    daemon.proc.kill('SIGKILL');
    await daemon.exit;
  }
  daemon = null;
});
afterAll(async () => {
  for (const e of envs) await e.drop();
});

async function newEnv(config = ''): Promise<EgressEnv> {
  const env = await createEnv();
  envs.push(env);
  writeConfig(env, config);
  return env;
}

function run(env: EgressEnv, extra: NodeJS.ProcessEnv = {}): Child {
  daemon = spawnCli(['run', '--config', env.configPath], { env: extra });
  return daemon;
}

/** Runs the daemon with `PG_EGRESS_FAILPOINT=<point>:crash…` and waits until it killed itself there. */
async function crashAt(env: EgressEnv, failpoint: string, extra: NodeJS.ProcessEnv = {}): Promise<void> {
  const d = run(env, { ...extra, PG_EGRESS_FAILPOINT: failpoint });
  const ex = await d.exit;
  expect(ex.signal, `daemon exited ${ex.code} instead of crashing at ${failpoint}: ${d.stderr()}`).toBe('SIGKILL');
  expect(d.stderr()).toContain(`pg-egress failpoint ${failpoint.split(':')[0]}: crash`);
}

/** The table rebuilt from the files equals the source, and no streaming row is there twice. */
async function expectRebuilt(env: EgressEnv, table: string, columns = ['id', 'v']): Promise<number> {
  const got = rebuildFromOutput(env.outDir, `public.${table}`, ['id'], columns);
  const want = await sourceRows(env.url, table, ['id'], columns);
  expect(got.table.size).toBe(want.size);
  expect(sortedEntries(got.table)).toEqual(sortedEntries(want));
  const keys = readStreamingRows(env.outDir, `public.${table}`).rows.map((r) => `${r.lsn}/${r.seq}`);
  expect(new Set(keys).size, `(_lsn, _seq) twice in public.${table}`).toBe(keys.length);
  return want.size;
}

const q = <T = Record<string, unknown>>(env: EgressEnv, sql: string, params: unknown[] = []): Promise<T[]> => withDb(
  env.url,
  async (c) => (await c.query(sql, params)).rows as T[],
);

const registeredBatches = async (env: EgressEnv): Promise<Set<string>> =>
  new Set((await q<{ batch_id: string }>(env, `SELECT batch_id FROM cdc_registry.batches`)).map((r) => r.batch_id));

/** Batch indexes in output.dir/_batches that the registry does not know. */
async function unregisteredIndexes(env: EgressEnv): Promise<string[]> {
  const dir = path.join(env.outDir, '_batches');
  const known = await registeredBatches(env);
  return existsSync(dir) ? readdirSync(dir).map((f) => f.replace(/\.json$/, '')).filter((b) => !known.has(b)) : [];
}

/** Waits until every export of the slot is done. */
const exportsDone = (env: EgressEnv) =>
  waitFor('every export done', async () => {
    const r = await q<{ open: number; n: number }>(env, `SELECT count(*) FILTER (WHERE state <> 'done')::int AS open, count(*)::int AS n FROM cdc_registry.reloads`);
    return r[0].n > 0 && r[0].open === 0;
  }, { timeoutMs: 120_000, intervalMs: 100 });

/** Stops the daemon (SIGTERM), expecting a clean exit. */
async function stop(d: Child): Promise<void> {
  d.proc.kill('SIGTERM');
  expect((await d.exit).code, d.stderr()).toBe(0);
}

describe('failpoints: deterministic crashes, then a restart', () => {
  it('between a flush\'s renames and its registration: the unregistered batch is not counted twice', async () => {
    const env = await newEnv();
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`));
    // A first run for the initial export, so that the failpoint's first flush is one of rows.
    let d = run(env);
    await waitSlotActive(env);
    await exportsDone(env);
    await waitCaughtUp(env);
    await stop(d);
    await withDb(env.url, async (c) => {
      await c.query(`INSERT INTO t SELECT g, 'w' || g FROM generate_series(101, 1100) g`);
      await c.query(`UPDATE t SET v = v || '+' WHERE id % 3 = 0`);
      await c.query(`DELETE FROM t WHERE id % 7 = 0`);
    });
    const before = await registeredBatches(env);
    // The clock one window ahead: the flush happens at the first idle moment (src/clock.ts).
    await crashAt(env, 'flush-after-rename:crash', { PG_EGRESS_TEST_CLOCK_OFFSET_MS: '1000' });
    // The flush's files and batch index are in place; the registry has not heard of them.
    expect(await registeredBatches(env)).toEqual(before);
    const orphan = await unregisteredIndexes(env);
    expect(orphan).toHaveLength(1);
    expect(readdirSync(path.join(env.outDir, 'public.t'))).toContain(orphan[0]);

    await withDb(env.url, (c) => c.query(`INSERT INTO t SELECT g, 'x' || g FROM generate_series(2001, 2100) g; UPDATE t SET v = 'after' WHERE id = 1`));
    d = run(env);
    await waitSlotActive(env);
    await waitCaughtUp(env);
    await stop(d);
    expect(await unregisteredIndexes(env)).toEqual([]);
    expect(await expectRebuilt(env, 't')).toBe(1100 - Math.floor(1100 / 7) + 100);
  });

  it('mid-export (after its second chunk): the export is redone once, its _tmp files gone', async () => {
    const env = await newEnv('reload:\n  workers: 2\n  chunk_size: 64kB');
    await withDb(env.url, (c) => c.query(`CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g`));
    // A writer throughout: the rebuild needs the reload set and the rows streamed after its snapshot.
    const writer = loopWriter(env.url, async (c, n) => {
      await c.query(`UPDATE big SET v = 'u' || $1::text WHERE id = $2`, [n, 1 + ((n * 7919) % 20000)]);
      await c.query(`INSERT INTO big VALUES ($1, 'n')`, [100_000 + n]);
      await new Promise((r) => setTimeout(r, 5));
      return 1;
    });
    try {
      // The initial export of `big` (about 20 chunks) is the export the failpoint interrupts.
      await crashAt(env, 'export-after-chunk:crash@2');
      const [op] = await q<{ id: string; state: string }>(env, `SELECT id::text, state FROM cdc_registry.reloads WHERE table_name = 'big'`);
      expect(op.state).toBe('running');
      // The killed attempt left its chunks in _tmp. At least the first: a file is created when its
      // write stream's open(2) runs in libuv's pool, which may still be queued behind other files'
      // fsyncs for the second chunk when the process dies (seen on a loaded machine: 1 file).
      expect(readdirSync(path.join(env.outDir, '_tmp')).length).toBeGreaterThanOrEqual(1);
      expect(reloadSets(env.outDir, 'public.big')).toEqual([]);

      run(env);
      await waitSlotActive(env);
      await exportsDone(env);
    } finally {
      await writer.stop();
    }
    await waitCaughtUp(env);
    await stop(daemon!);
    const ops = await q<{ state: string; chunks: number; batch_id: string }>(env, `SELECT state, chunks, batch_id FROM cdc_registry.reloads WHERE table_name = 'big'`);
    expect(ops).toHaveLength(1);
    expect(ops[0].chunks).toBeGreaterThanOrEqual(4);
    // On disk exactly the registered reload set; nothing of the killed attempt left in _tmp.
    expect(reloadSets(env.outDir, 'public.big').map((s) => s.batch)).toEqual([ops[0].batch_id]);
    expect(readdirSync(path.join(env.outDir, '_tmp'))).toEqual([]);
    expect(await expectRebuilt(env, 'big')).toBeGreaterThan(20_000);
    // The archive checks out: every file and batch index where its batch says.
    const verified = await runCli(['verify', env.outDir, '--config', env.configPath]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });

  it("between an export's files and its registration: one reload set, equal to the source", async () => {
    const env = await newEnv();
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g`));
    await crashAt(env, 'reload-before-register:crash');
    expect(await registeredBatches(env)).toEqual(new Set());
    const orphan = await unregisteredIndexes(env);
    expect(orphan).toHaveLength(1);
    await withDb(env.url, (c) => c.query(`UPDATE t SET v = 'changed' WHERE id % 10 = 0; DELETE FROM t WHERE id > 4900`));
    const d = run(env);
    await waitSlotActive(env);
    await exportsDone(env);
    await waitCaughtUp(env);
    await stop(d);
    const sets = reloadSets(env.outDir, 'public.t');
    expect(sets).toHaveLength(1);
    const [op] = await q<{ batch_id: string }>(env, `SELECT batch_id FROM cdc_registry.reloads WHERE table_name = 't'`);
    expect(sets[0].batch).toBe(op.batch_id);
    expect(await unregisteredIndexes(env)).toEqual([]);
    expect(await expectRebuilt(env, 't')).toBe(4900);
  });

  describe('with an S3 anchor target', () => {
    let s3: S3TestServer;
    afterAll(async () => {
      await s3?.stop();
    });

    it('between an anchor\'s upload and its mark: uploaded again, marked once; every file in the bucket', async () => {
      s3 = await startS3Server();
      const s3cfg = { bucket: s3.bucket, prefix: 'fp', region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true };
      const env = await newEnv(`anchors:\n  s3: {bucket: ${s3.bucket}, prefix: "fp", region: us-east-1, endpoint: "${s3.endpoint}", force_path_style: true}`);
      const creds = { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY, AWS_EC2_METADATA_DISABLED: 'true' };
      // This process reads the bucket too (the check below).
      Object.assign(process.env, creds);
      await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g`));
      // The initial export's batch is the first anchored: uploaded, then the crash before its mark.
      await crashAt(env, 'anchor-after-upload:crash', creds);
      const queue = await q<{ batch_id: string; state: string; attempts: number }>(env, `SELECT batch_id, state, attempts FROM cdc_registry.anchor_queue ORDER BY id`);
      expect(queue.length).toBeGreaterThanOrEqual(1);
      expect(queue.every((e) => e.state === 'pending')).toBe(true);
      const target = createS3Target(s3cfg);
      try {
        const [index] = await q<{ index_path: string }>(env, `SELECT index_path FROM cdc_registry.batches WHERE batch_id = $1`, [queue[0].batch_id]);
        expect(await target.stored(index.index_path), 'the batch index was uploaded before the crash').not.toBeNull();

        await withDb(env.url, (c) => c.query(`UPDATE t SET v = 'after' WHERE id % 5 = 0; INSERT INTO t VALUES (5001, 'new')`));
        const d = run(env, creds);
        await waitSlotActive(env);
        await waitCaughtUp(env);
        await waitFor('every anchor done', async () => {
          const r = await q<{ open: number; n: number; batches: number }>(
            env,
            `SELECT count(*) FILTER (WHERE state <> 'done')::int AS open, count(*)::int AS n, (SELECT count(*)::int FROM cdc_registry.batches) AS batches FROM cdc_registry.anchor_queue`,
          );
          return r[0].open === 0 && r[0].n === r[0].batches;
        }, { timeoutMs: 60_000, intervalMs: 100 });
        await stop(d);
        // One entry per batch, each done once; the crashed one took a second attempt.
        const done = await q<{ batch_id: string; state: string; attempts: number }>(env, `SELECT batch_id, state, attempts FROM cdc_registry.anchor_queue ORDER BY id`);
        expect(new Set(done.map((e) => e.batch_id)).size).toBe(done.length);
        expect(done.find((e) => e.batch_id === queue[0].batch_id)!.attempts).toBeGreaterThanOrEqual(2);
        const files = await q<{ path: string; bytes: string; sha256: string }>(env, `SELECT path, bytes::text, sha256 FROM cdc_registry.files`);
        for (const f of files) expect(await target.stored(f.path), f.path).toEqual({ bytes: Number(f.bytes), sha256: f.sha256 });
      } finally {
        target.close();
      }
      expect(await expectRebuilt(env, 't')).toBe(3001);
    });
  });
});
