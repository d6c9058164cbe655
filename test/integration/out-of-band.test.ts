/**
 * Out-of-band operations on the slot and the registry while the daemon is stopped (issue 13,
 * item 4): a DBA advancing the slot (pg_replication_slot_advance), dropping and creating it again,
 * and cdc_registry restored from a backup. Each is detected at the next start: a slot moved past
 * what pg-egress registered or confirmed is a gap with its LSN range, repaired by exporting every
 * table again; batches the restored registry lost are adopted from their manifests (no gap, no
 * export); an unknown batch that does not continue the chain is refused with nothing deleted.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { waitFor } from '../harness/pg.js';
import { parseLsn } from '../../src/lsn.js';
import {
  createEnv,
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
  type Child,
  type EgressEnv,
} from '../helpers/egress.js';

const TABLES = ['t1', 't2'];

async function setup(envs: EgressEnv[]): Promise<EgressEnv> {
  const env = await createEnv();
  envs.push(env);
  await withDb(env.url, (c) =>
    c.query(`CREATE TABLE t1 (id serial PRIMARY KEY, v text); CREATE TABLE t2 (id serial PRIMARY KEY, v text);
             INSERT INTO t1 (v) SELECT 'a' || g FROM generate_series(1, 30) g; INSERT INTO t2 (v) SELECT 'b' || g FROM generate_series(1, 30) g`),
  );
  return env;
}

/** Synchronous commit (the suite's server runs with it off): the commit is flushed when this returns. */
const write = (env: EgressEnv, tag: string) =>
  withDb(env.url, (c) =>
    c.query(`SET synchronous_commit = on; INSERT INTO t1 (v) SELECT '${tag}' || g FROM generate_series(1, 10) g; UPDATE t2 SET v = v || '${tag}' WHERE id % 3 = 0; DELETE FROM t2 WHERE id % 11 = 0`),
  );

async function runUntilCaughtUp(env: EgressEnv, children: Child[]): Promise<Child> {
  const d = spawnCli(['run', '--config', env.configPath]);
  children.push(d);
  await waitSlotActive(env);
  await waitFor('no reload pending', () =>
    withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state IN ('pending', 'running')`)).rowCount === 0),
  );
  await waitCaughtUp(env);
  return d;
}

async function stop(d: Child): Promise<void> {
  d.proc.kill('SIGTERM');
  expect((await d.exit).code).toBe(0);
}

/** Every table rebuilds to the source, and no (_lsn, _seq) is in two files. */
async function expectExact(env: EgressEnv): Promise<void> {
  for (const t of TABLES) {
    const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
    expect(sortedEntries(got.table), t).toEqual(sortedEntries(await sourceRows(env.url, t, ['id'], ['id', 'v'])));
    const keys = readStreamingRows(env.outDir, `public.${t}`).rows.map((r) => `${r.lsn}:${r.seq}`);
    expect(new Set(keys).size, `${t}: a change in two files`).toBe(keys.length);
  }
}

const registered = (env: EgressEnv) => withDb(env.url, async (c) => (await c.query<{ l: string }>('SELECT registered_lsn::text AS l FROM cdc_registry.slot_state')).rows[0].l);
const slotConfirmed = (env: EgressEnv) =>
  withDb(env.url, async (c) => (await c.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [env.slot])).rows[0].l);
const gaps = (env: EgressEnv) =>
  withDb(env.url, async (c) => (await c.query<{ kind: string; lsn_from: string; lsn_to: string; detail: string; resolved: boolean }>(`SELECT kind, lsn_from::text, lsn_to::text, detail, resolved_at IS NOT NULL AS resolved FROM cdc_registry.gaps ORDER BY id`)).rows);

describe('out-of-band operations', () => {
  const envs: EgressEnv[] = [];
  const children: Child[] = [];
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    for (const e of envs) await e.drop();
  });

  for (const how of ['advanced', 'recreated'] as const) {
    it(`a slot ${how} by a DBA while the daemon is stopped: a gap with the skipped LSN range, every table exported again, rebuild equal`, async () => {
      const env = await setup(envs);
      let d = await runUntilCaughtUp(env, children);
      await write(env, 'x');
      await waitCaughtUp(env);
      await stop(d);
      const before = await registered(env);
      // While the daemon is stopped the application writes, and a DBA moves the slot past it.
      await write(env, 'lost');
      // Flushed at commit (synchronous): the application's transaction ends at or before this.
      const lostEnd = await withDb(env.url, async (c) => (await c.query<{ l: string }>(`SELECT pg_current_wal_flush_lsn()::text AS l`)).rows[0].l);
      if (how === 'advanced') await withDb(env.url, (c) => c.query(`SELECT pg_replication_slot_advance($1, $2::pg_lsn)`, [env.slot, lostEnd]));
      else {
        await withDb(env.url, async (c) => {
          await c.query(`SELECT pg_drop_replication_slot($1)`, [env.slot]);
          await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [env.slot]);
        });
      }
      const moved = await slotConfirmed(env);
      // The slot is past the application's transaction: it will never be streamed.
      expect(parseLsn(moved)).toBeGreaterThanOrEqual(parseLsn(lostEnd));

      d = spawnCli(['run', '--config', env.configPath]);
      children.push(d);
      let seen: unknown = null;
      await waitFor('the gap resolved by exporting every table again', async () => {
        if (d.proc.exitCode !== null) throw new Error(`pg-egress run exited with ${d.proc.exitCode}: ${d.stderr()}`);
        const g = await gaps(env);
        seen = { gaps: g, before, moved, reloads: await withDb(env.url, async (c) => (await c.query(`SELECT schema_name, table_name, state, reason, waiting_on, error FROM cdc_registry.reloads ORDER BY id`)).rows) };
        return g.length === 1 && g[0].resolved;
      }, { timeoutMs: 60_000 }).catch((e: unknown) => {
        throw new Error(`${String(e)}: ${JSON.stringify(seen)}\n${d.stdout().slice(-4000)}`);
      });
      const [g] = await gaps(env);
      expect(g.kind).toBe('slot_moved');
      expect(g.lsn_from).toBe(before);
      expect(g.lsn_to).toBe(moved);
      expect(g.detail).toMatch(/advanced \(pg_replication_slot_advance\) or dropped and created again/);
      expect(d.stdout()).toMatch(/"level":50.*data gap: replication slot .* is confirmed at .* past what pg-egress registered/);
      await write(env, 'after');
      await waitCaughtUp(env);
      await stop(d);
      for (const t of TABLES) expect(reloadSets(env.outDir, `public.${t}`).length, t).toBe(2);
      await expectExact(env);
      // The skipped transaction is in no streaming file: only the new export has its rows.
      expect(readStreamingRows(env.outDir, 'public.t1').rows.some((r) => r.values.get('v')?.toString().startsWith('lost'))).toBe(false);
      // PostgreSQL 17+: the slot the DBA made without FAILOVER got it back (slot_failover: true).
      const slot = await withDb(env.url, async (c) => (await c.query(`SELECT current_setting('server_version_num')::int >= 170000 AS v17, to_jsonb(s) ->> 'failover' AS failover FROM pg_replication_slots s WHERE slot_name = $1`, [env.slot])).rows[0]);
      if (slot.v17) expect(slot.failover).toBe('true');

      // The next start finds nothing new: the gap is not recorded twice, nothing is exported again.
      d = await runUntilCaughtUp(env, children);
      await stop(d);
      expect((await gaps(env)).length).toBe(1);
      for (const t of TABLES) expect(reloadSets(env.outDir, `public.${t}`).length, t).toBe(2);
    }, 180_000);
  }

  it('a registry restored from a backup adopts the batches on disk it lost: no gap, no export, nothing twice; lost files too are a gap', async () => {
    const env = await setup(envs);
    let d = await runUntilCaughtUp(env, children);
    await write(env, 'x');
    await waitCaughtUp(env);
    await stop(d);
    // "Backup" of cdc_registry (every table's rows), then more flushes.
    const tables = await withDb(env.url, async (c) =>
      (await c.query<{ t: string }>(`SELECT tablename AS t FROM pg_tables WHERE schemaname = 'cdc_registry' AND tablename <> 'migrations'`)).rows.map((r) => r.t),
    );
    await withDb(env.url, (c) => c.query(`CREATE SCHEMA bk; ${tables.map((t) => `CREATE TABLE bk."${t}" AS TABLE cdc_registry."${t}";`).join(' ')}`));
    const backupLsn = await registered(env);
    d = await runUntilCaughtUp(env, children);
    for (const tag of ['y', 'z']) {
      await write(env, tag);
      await waitCaughtUp(env);
    }
    await stop(d);
    const after = await registered(env);
    expect(parseLsn(after)).toBeGreaterThan(parseLsn(backupLsn));
    const restore = () =>
      withDb(env.url, (c) => c.query(tables.map((t) => `TRUNCATE cdc_registry."${t}"; INSERT INTO cdc_registry."${t}" SELECT * FROM bk."${t}";`).join(' ')));
    await restore();
    const lost = await withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.batches`)).rows[0].n as number);

    d = await runUntilCaughtUp(env, children);
    await write(env, 'after');
    await waitCaughtUp(env);
    await stop(d);
    expect(d.stdout()).toMatch(/adopted a batch that was on disk but not in the registry/);
    expect(await withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.batches`)).rows[0].n as number)).toBeGreaterThan(lost);
    expect(await gaps(env)).toEqual([]);
    for (const t of TABLES) expect(reloadSets(env.outDir, `public.${t}`).length, t).toBe(1);
    await expectExact(env);
    const v = await runCli(['verify', env.outDir]);
    expect(v.code, v.stdout + v.stderr).toBe(0);

    // Restored again, but this time the files of the lost batches are gone too: a gap.
    await restore();
    const lostBatches = await withDb(env.url, async (c) => (await c.query<{ batch_id: string }>(`SELECT batch_id FROM cdc_registry.batches`)).rows.map((r) => r.batch_id));
    for (const b of readdirSync(path.join(env.outDir, '_batches')).map((n) => n.replace(/\.json$/, ''))) {
      if (!lostBatches.includes(b)) {
        const idx = JSON.parse(readFileSync(path.join(env.outDir, '_batches', `${b}.json`), 'utf8')) as { manifests: { path: string }[] };
        // Moved out of the archive (an operator or a broken disk), not deleted: the test keeps them.
        for (const m of idx.manifests) renameOut(env, path.posix.dirname(m.path));
        renameOut(env, `_batches/${b}.json`);
      }
    }
    d = spawnCli(['run', '--config', env.configPath]);
    children.push(d);
    await waitFor('the registry gap resolved', async () => {
      const g = await gaps(env);
      return g.length === 1 && g[0].resolved;
    });
    const [g] = await gaps(env);
    expect(g.kind).toBe('registry_behind');
    expect(g.lsn_from).toBe(backupLsn);
    await waitCaughtUp(env);
    await stop(d);
    await expectExact(env);
  }, 240_000);

  it('an unknown batch index that does not continue the chain is refused with one line, nothing deleted', async () => {
    const env = await setup(envs);
    const d = await runUntilCaughtUp(env, children);
    await stop(d);
    const stray = path.join(env.outDir, '_batches', '20000101T000000Z.json');
    writeFileSync(stray, JSON.stringify({ batch_id: '20000101T000000Z', kind: 'flush', slot: env.slot, manifests: [], prev: { batch_id: 'nope', sha256: '00' } }));
    const r = await runCli(['run', '--config', env.configPath], { mayFail: true });
    expect(r.code).toBe(8);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/holds batch 20000101T000000Z .* does not continue its chain .*nothing was deleted/);
    expect(existsSync(stray)).toBe(true);
  }, 120_000);
});

function renameOut(env: EgressEnv, rel: string): void {
  const from = path.join(env.outDir, rel);
  const to = path.join(env.dir, 'moved-out', rel);
  mkdirSync(path.dirname(to), { recursive: true });
  renameSync(from, to);
}
