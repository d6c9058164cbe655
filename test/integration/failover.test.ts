/**
 * Failover on PostgreSQL 18 with a failover slot (issue 13, item 3). The test runs its own primary
 * and physical standby from the embedded PostgreSQL 18 binaries, whatever server the suite uses:
 * the standby is made with the low-level backup API (test/harness/standby.ts) and synchronises the
 * slot (`sync_replication_slots = on`); the primary has `synchronized_standby_slots`.
 *
 * Failovers in a row under a writer (5 under PG_EGRESS_TEST_FULL=1, 2 by default:
 * test/helpers/scale.ts), alternating which server is primary (the old primary rejoins as a standby
 * from a fresh copy), the promoted standby taking the old primary's port (a VIP or Kubernetes
 * Service) or the daemon restarted with the new URL, kill -9 of the daemon in the second (so the
 * quick run's two are one of each, the kill -9 in the new-URL one). After each: every table
 * rebuilds equal to the new primary, no (_lsn, _seq) is in two files, each table has exactly one
 * reload set (the initial export), no gap.
 *
 * Then the registry race, forced: the daemon is paused while a transaction reaches the standby,
 * the standby is cut off, the daemon registers that transaction's flush on the primary only, the
 * primary crashes and the standby is promoted: its registry lacks the flush whose files are on
 * disk. The daemon adopts that batch from its manifests (same bytes, same index sha256), loses
 * nothing and writes nothing twice, with no operator step.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { embeddedPgBin } from '../../scripts/pg-bin.mjs';
import { createCluster, freePort, type Cluster } from '../harness/cluster.js';
import { cloneStandby, movePort, promote, type Node } from '../harness/standby.js';
import { waitFor } from '../harness/pg.js';
import { FULL, scaled } from '../helpers/scale.js';
import { createEnv, readStreamingRows, rebuildFromOutput, reloadSets, runCli, sleep, sortedEntries, sourceRows, spawnCli, waitBatches, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const SETTINGS = {
  wal_level: 'logical',
  fsync: 'off',
  max_wal_senders: 10,
  max_replication_slots: 10,
  hot_standby: 'on',
  hot_standby_feedback: 'on',
  wal_receiver_status_interval: "'1s'",
  wal_keep_size: "'256MB'",
};
const TABLES = ['t1', 't2'];
/** Failovers in a row: round 1 same address, round 2 new URL with kill -9, then alternating. */
const ROUNDS = scaled(5, 2);
// The quick run reads the slot's health (what /ready and /metrics show) every second rather than
// every 10 s (publication_check), so the first test does not wait out the default period.
let CONFIG = 'tables:\n  include: ["public.*"]' + scaled('', '\npublication_check: 1s');
let httpPort = 0;

/** A writer that survives the primary going away: it reconnects to whatever `url()` says. */
function writer(url: () => string): { stop(): Promise<number> } {
  let stopping = false;
  let n = 0;
  const run = (async () => {
    while (!stopping) {
      const c = new pg.Client({ connectionString: url() });
      c.on('error', () => undefined);
      try {
        await c.connect();
        while (!stopping) {
          const k = n++;
          await c.query(
            `BEGIN; INSERT INTO t1 (v) VALUES ('w${k}'); UPDATE t2 SET v = 'u${k}' WHERE id = ${(k % 40) + 1};
             ${k % 7 === 0 ? 'DELETE FROM t1 WHERE id = (SELECT min(id) FROM t1);' : ''} COMMIT`,
          );
          await sleep(5);
        }
      } catch {
        await sleep(200);
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
      return n;
    },
  };
}

describe('failover with a failover slot (PostgreSQL 18)', () => {
  let env: EgressEnv;
  let primary: Cluster;
  let standby: Node;
  let daemon: Child;
  const dead: Cluster[] = [];
  const children: Child[] = [];

  const q = <T extends pg.QueryResultRow>(c: Cluster, sql: string, params: unknown[] = []) => withDb(
    c.url(env.dbName),
    async (x) => (await x.query<T>(sql, params)).rows,
  );
  const startDaemon = () => {
    const d = spawnCli(['run', '--config', env.configPath], { mayFail: true });
    children.push(d);
    return d;
  };
  const pointAt = (c: Cluster) => {
    env.url = c.url(env.dbName);
    writeConfig(env, CONFIG);
  };
  /** The slot exists on the standby as a synchronised (not temporary) copy, at or past `lsn`. */
  const waitSynced = (s: Cluster, lsn?: string) => {
    let nudged = Date.now();
    return waitFor(
      `slot ${env.slot} synchronised on the standby${lsn ? ` past ${lsn}` : ''}`,
      async () => {
        if (!FULL && Date.now() - nudged >= 1000) {
          nudged = Date.now();
          await nudgeSlotSync(s);
        }
        const r = await q<{ ok: boolean }>(s, `SELECT synced AND NOT temporary AND ($2::pg_lsn IS NULL OR confirmed_flush_lsn >= $2::pg_lsn) AS ok FROM pg_replication_slots WHERE slot_name = $1`, [env.slot, lsn ?? null]);
        return r[0]?.ok === true;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  };
  /**
   * The quick run does not wait out two server timers while a new standby cannot sync the slot yet
   * (the primary's slot still needs WAL or a catalog xmin the standby no longer has): the primary
   * logs a running-xacts record (pg_log_standby_snapshot; otherwise the bgwriter's, every 15 s),
   * at which the slot's restart_lsn and catalog_xmin move on once the daemon confirms past it; and
   * a reload wakes the standby's slot sync worker from its nap, which doubles up to 30 s while it
   * cannot sync (MAX_SLOTSYNC_WORKER_NAPTIME_MS in src/backend/replication/logical/slotsync.c).
   * https://www.postgresql.org/docs/18/functions-admin.html#FUNCTIONS-REPLICATION
   */
  const nudgeSlotSync = async (s: Cluster) => {
    await withDb(primary.url(), (c) => c.query('SELECT pg_log_standby_snapshot()')).catch(() => undefined);
    await withDb(s.url(), (c) => c.query('SELECT pg_reload_conf()')).catch(() => undefined);
  };
  const setStandbySlots = async (c: Cluster, names: string) => {
    await withDb(c.url(), async (x) => {
      await x.query(`ALTER SYSTEM SET synchronized_standby_slots = '${names}'`);
      await x.query('SELECT pg_reload_conf()');
    });
  };
  /** Every table equals the (new) primary, nothing in two files, one reload set each, no gap. */
  const expectExact = async (round: string, reloads: Record<string, number> = {}) => {
    for (const t of TABLES) {
      const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
      expect(sortedEntries(got.table), `${round}: ${t}`).toEqual(sortedEntries(await sourceRows(env.url, t, ['id'], ['id', 'v'])));
      const keys = readStreamingRows(env.outDir, `public.${t}`).rows.map((r) => `${r.lsn}:${r.seq}`);
      expect(new Set(keys).size, `${round}: ${t}: a change in two files`).toBe(keys.length);
      expect(reloadSets(env.outDir, `public.${t}`).length, `${round}: ${t}: reload sets`).toBe(reloads[t] ?? 1);
    }
    expect(await q(primary, `SELECT kind, detail FROM cdc_registry.gaps`), round).toEqual([]);
  };

  /**
   * What the running test has begun, with its second: on a failure, the step it was in, the daemon's
   * last lines and both servers' logs (a test's time-out names no step of its own).
   */
  const trail: string[] = [];
  let trailStart = Date.now();
  const step = (what: string) => trail.push(`${((Date.now() - trailStart) / 1000).toFixed(1)} s ${what}`);
  const logTail = (c: Cluster | undefined, n: number) => {
    try {
      return c ? readFileSync(path.join(c.baseDir, 'server.log'), 'utf8').trimEnd().split('\n').slice(-n).join('\n') : '';
    } catch {
      return '';
    }
  };
  beforeEach(() => {
    trail.length = 0;
    trailStart = Date.now();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    const lastLine = (t: string) => {
      const line = t.trimEnd().split('\n').pop() ?? '';
      try {
        const j = JSON.parse(line) as { time?: string; msg?: string };
        return `${j.time} ${j.msg}`;
      } catch {
        return line.slice(0, 200);
      }
    };
    // Each server's log read once: its last 40 lines printed, the last of them in the error.
    const primaryLog = logTail(primary, 40);
    const standbyLog = logTail(standby?.cluster, 40);
    console.log(`steps:\n${trail.join('\n')}\ndaemon stdout (end):\n${daemon?.stdout().slice(-6000)}\ndaemon stderr (end):\n${daemon?.stderr().slice(-3000)}\n` +
      `primary's log (end):\n${primaryLog}\nstandby's log (end):\n${standbyLog}`);
    throw new Error(`after ${((Date.now() - trailStart) / 1000).toFixed(1)} s, steps: ${trail.slice(-6).join('; ')}; daemon's last line: ${lastLine(daemon?.stdout() ?? '')}; ` +
      `primary's last log line: ${lastLine(primaryLog)}; standby's: ${lastLine(standbyLog)}`);
  });

  beforeAll(async () => {
    primary = await createCluster(SETTINGS, { binDir: embeddedPgBin() });
    primary.start();
    httpPort = await freePort();
    CONFIG += `\nhttp:\n  port: ${httpPort}`;
    env = await createEnv({ adminUrl: primary.url(), config: CONFIG });
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE t1 (id serial PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY, v text);
               INSERT INTO t1 (v) SELECT 'a' || g FROM generate_series(1, 100) g; INSERT INTO t2 SELECT g, 'b' || g FROM generate_series(1, 40) g`),
    );
    daemon = startDaemon();
    await waitSlotActive(env);
    await waitFor('the initial export', async () => (await q(primary, `SELECT 1 FROM cdc_registry.reloads WHERE state <> 'done'`)).length === 0 && (await q(primary, `SELECT 1 FROM cdc_registry.reloads`)).length === 2);
    standby = await cloneStandby(primary, { physicalSlot: 'phys_0', dbname: env.dbName, settings: SETTINGS });
    await setStandbySlots(primary, 'phys_0');
    await waitSynced(standby.cluster);
  }, 300_000);

  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    for (const c of [primary, standby?.cluster, ...dead]) {
      try {
        c?.stop('immediate');
      } catch {
        // already stopped
      }
      c?.destroy();
    }
  });

  it('creates a failover slot, and status shows it synchronised to the standby', async () => {
    const slot = await q<{ failover: boolean }>(primary, `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, [env.slot]);
    expect(slot[0].failover).toBe(true);
    let last = '';
    const st = await waitFor('status: failover on, synced', async () => {
      const r = await runCli(['status', '--config', env.configPath, '--json'], { mayFail: true });
      last = r.stdout + r.stderr;
      if (process.env.DEBUG_FAILOVER) console.log(last);
      const j = JSON.parse(r.stdout) as {
        failover: { failover: boolean; synced: boolean; warnings: string[]; synchronized_standby_slots: { name: string }[] };
      };
      return j.failover.synced ? j.failover : null;
    });
    expect(st).toMatchObject({ failover: true, synced: true, warnings: [], synchronized_standby_slots: [{ name: 'phys_0' }] });
    // /ready says it as detail (readiness does not depend on it), /metrics as gauges.
    const ready = await waitFor('/ready: slot synced', async () => {
      const j = (await (await fetch(`http://127.0.0.1:${httpPort}/ready`)).json()) as { ready: boolean; slot: { failover: boolean; synced: boolean } | null };
      return j.slot?.synced ? j : null;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    expect(ready).toMatchObject({ ready: true, slot: { failover: true, synced: true, warnings: [] } });
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^pg_egress_slot_failover 1$/m);
    expect(metrics).toMatch(/^pg_egress_slot_synced 1$/m);
    expect(metrics).toMatch(/^pg_egress_synchronized_standby_slots_set 1$/m);
  }, 180_000);

  it(`${ROUNDS} failovers in a row under a writer: nothing lost, nothing twice, no export again`, async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const sameAddress = round % 2 === 1;
      const kill9 = round === 2;
      step(`round ${round}: a writer, batches`);
      const w = writer(() => env.url);
      await waitBatches(env, 1);
      // The standby's copy of the slot has followed the primary's recent confirmations.
      const confirmed = (await q<{ l: string }>(primary, `SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [env.slot]))[0].l;
      step(`round ${round}: the slot synchronised past ${confirmed}`);
      await waitSynced(standby.cluster, confirmed);
      await sleep(500);
      step(`round ${round}: stop the primary, promote the standby`);
      if (kill9) daemon.proc.kill('SIGKILL');
      // The primary crashes; the standby is promoted.
      const old = primary;
      old.stop('immediate');
      dead.push(old);
      promote(standby.cluster);
      let next = standby.cluster;
      if (sameAddress) {
        next = movePort(next, old.port);
      } else if (!kill9) {
        daemon.proc.kill('SIGTERM');
        await daemon.exit;
      }
      primary = next;
      pointAt(primary);
      if (kill9 || !sameAddress) daemon = startDaemon();
      step(`round ${round}: the daemon streams from the new primary, batches`);
      await waitSlotActive(env, 120_000);
      // Registered on the new primary under the writer.
      await waitBatches(env, 1, 120_000);
      const n = await w.stop();
      step(`round ${round}: caught up, compare`);
      await waitCaughtUp(env, undefined, 120_000);
      const label = `failover ${round} (${sameAddress ? 'same address' : 'new URL'}${kill9 ? ', kill -9' : ''}, ${n} transactions)`;
      await expectExact(label);
      console.log(`${label}: every table equals the new primary, nothing twice, one reload set each`);

      // The old primary rejoins as a standby of the new one, from a fresh copy.
      old.destroy();
      step(`round ${round}: a new standby`);
      standby = await cloneStandby(primary, { physicalSlot: `phys_${round}`, dbname: env.dbName, settings: SETTINGS });
      await waitFor('the new standby streams', async () => (await q(primary, `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [`phys_${round}`])).length === 1);
      await setStandbySlots(primary, `phys_${round}`);
      await waitSynced(standby.cluster);
    }
    expect(daemon.stdout()).not.toMatch(/data gap/);
  }, 900_000);

  it('the registry race: a flush registered on the old primary only is adopted from disk, nothing lost or twice', async () => {
    step('caught up');
    await waitCaughtUp(env, undefined, 60_000);
    step('pause the daemon, a transaction on the standby');
    // The daemon pauses; a transaction reaches the standby (logical decoding waits for that).
    daemon.proc.kill('SIGSTOP');
    // With a reload marker on t2: registered with the flush on the old primary only.
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) SELECT 'race' || g FROM generate_series(1, 25) g; UPDATE t2 SET v = 'race' WHERE id = 1; COMMENT ON TABLE t2 IS 'pg-egress:reload'`));
    await waitFor('the transaction on the standby', async () => (await q<{ n: number }>(standby.cluster, `SELECT count(*)::int AS n FROM t1 WHERE v LIKE 'race%'`))[0].n === 25);
    // The standby is cut off: what the primary writes from now on never reaches it.
    await withDb(standby.cluster.url(), async (c) => {
      await c.query(`ALTER SYSTEM SET primary_conninfo = ''`);
      await c.query('SELECT pg_reload_conf()');
    });
    await waitFor('the standby stopped receiving', async () => (await q(standby.cluster, `SELECT 1 FROM pg_stat_wal_receiver`)).length === 0);
    const registeredBefore = (await q<{ l: string }>(primary, `SELECT registered_lsn::text AS l FROM cdc_registry.slot_state`))[0].l;
    step('the daemon resumes: the flush registered on the primary');
    daemon.proc.kill('SIGCONT');
    // The daemon writes the flush and registers it, on the primary only.
    const batch = await waitFor('the flush registered on the primary', async () => {
      const r = await q<{ batch_id: string; index_sha256: string }>(primary, `SELECT batch_id, index_sha256 FROM cdc_registry.batches WHERE kind = 'flush' AND lsn_end > $1::pg_lsn ORDER BY chain_seq LIMIT 1`, [registeredBefore]);
      return r[0] ?? null;
    });
    expect(await q(standby.cluster, `SELECT 1 FROM cdc_registry.batches WHERE batch_id = $1`, [batch.batch_id])).toEqual([]);
    const index = path.join(env.outDir, '_batches', `${batch.batch_id}.json`);
    expect(createHash('sha256').update(readFileSync(index)).digest('hex')).toBe(batch.index_sha256);

    step('stop the primary, promote the standby onto its address: the batch adopted');
    // The primary crashes, the standby is promoted onto its address; the daemon reconnects.
    const old = primary;
    old.stop('immediate');
    dead.push(old);
    promote(standby.cluster);
    primary = movePort(standby.cluster, old.port);
    pointAt(primary);
    await waitFor('the batch adopted on the new primary', async () => (await q(primary, `SELECT 1 FROM cdc_registry.batches WHERE batch_id = $1 AND index_sha256 = $2`, [batch.batch_id, batch.index_sha256])).length === 1, { timeoutMs: 120_000 }).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${daemon.stdout().slice(-5000)}\n${daemon.stderr().slice(-2000)}`);
    });
    await waitSlotActive(env, 120_000);
    step('caught up after the race');
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) VALUES ('after race')`));
    await waitCaughtUp(env, undefined, 120_000);
    expect(daemon.stdout()).toMatch(/adopted a batch that was on disk but not in the registry/);
    // The same bytes: the batch was registered from disk, not written again.
    expect(createHash('sha256').update(readFileSync(index)).digest('hex')).toBe(batch.index_sha256);
    // The marker's request went with the lost registration: taken again from the stream, t2 is
    // exported on the new primary and gets its comment back (an export the old primary may have
    // made after the standby was cut off is set aside with what it wrote then).
    step('the marker reload on the new primary');
    await waitFor('the marker reload on the new primary', async () => (await q(primary, `SELECT 1 FROM cdc_registry.reloads WHERE table_name = 't2' AND reason = 'marker' AND state = 'done'`)).length === 1, { timeoutMs: 120_000 });
    expect(daemon.stdout()).toMatch(/reload request of an adopted batch, whose registration a failover lost: asked for again/);
    // The comment is put back right after the export is registered.
    await waitFor('t2 has its comment back', async () => (await q<{ c: string | null }>(primary, `SELECT obj_description('t2'::regclass, 'pg_class') AS c`))[0].c !== 'pg-egress:reload');
    await waitCaughtUp(env, undefined, 120_000);
    await expectExact('registry race', { t2: 2 });
    expect((await q<{ n: number }>(primary, `SELECT count(*)::int AS n FROM t1 WHERE v LIKE 'race%'`))[0].n).toBe(25);
  }, 900_000);
  it('without synchronized_standby_slots: a flush of transactions the standby never received is set aside, the archive equals the new primary', async () => {
    // A new standby; the primary does not wait for it (synchronized_standby_slots left empty).
    step('clone a standby');
    standby = await cloneStandby(primary, { physicalSlot: 'phys_lag', dbname: env.dbName, settings: SETTINGS });
    step('the slot synchronised on it');
    await waitSynced(standby.cluster);
    step('caught up');
    await waitCaughtUp(env, undefined, 60_000);
    step('status');
    const status = await runCli(['status', '--config', env.configPath, '--json'], { mayFail: true, timeoutMs: 120_000 });
    expect((JSON.parse(status.stdout) as { failover: { warnings: string[] } }).failover.warnings.join()).toMatch(/synchronized_standby_slots is not set on the primary/);
    // The standby falls behind (cut off); the primary commits, and the daemon exports it at once.
    step('cut the standby off');
    await withDb(standby.cluster.url(), async (c) => {
      await c.query(`ALTER SYSTEM SET primary_conninfo = ''`);
      await c.query('SELECT pg_reload_conf()');
    });
    await waitFor('the standby stopped receiving', async () => (await q(standby.cluster, `SELECT 1 FROM pg_stat_wal_receiver`)).length === 0);
    step('insert, the flush registered on the primary');
    const registeredBefore = (await q<{ l: string }>(primary, `SELECT registered_lsn::text AS l FROM cdc_registry.slot_state`))[0].l;
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) SELECT 'gone' || g FROM generate_series(1, 10) g`));
    const batch = await waitFor('the flush registered on the primary', async () => {
      const r = await q<{ batch_id: string }>(primary, `SELECT batch_id FROM cdc_registry.batches WHERE kind = 'flush' AND lsn_end > $1::pg_lsn ORDER BY chain_seq LIMIT 1`, [registeredBefore]);
      return r[0] ?? null;
    });
    // The primary crashes before the standby had those transactions; the standby is promoted.
    step('stop the primary, promote the standby');
    const old = primary;
    old.stop('immediate');
    dead.push(old);
    promote(standby.cluster);
    primary = standby.cluster;
    pointAt(primary);
    daemon.proc.kill('SIGKILL');
    daemon = startDaemon();
    step('the new daemon streams');
    await waitSlotActive(env, 120_000);
    step('caught up on the new primary');
    await withDb(env.url, (c) => c.query(`INSERT INTO t1 (v) VALUES ('after divergence')`));
    await waitCaughtUp(env, undefined, 120_000);
    expect(daemon.stdout()).toMatch(/set aside a batch written from WAL that this promoted server never had/);
    expect(existsSync(path.join(env.outDir, '_diverged', '_batches', `${batch.batch_id}.json`))).toBe(true);
    expect((await q<{ n: number }>(primary, `SELECT count(*)::int AS n FROM t1 WHERE v LIKE 'gone%'`))[0].n).toBe(0);
    step('compare');
    // The archive is the new primary's history: the lost transactions are in no registered file.
    for (const t of TABLES) {
      const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
      expect(sortedEntries(got.table), t).toEqual(sortedEntries(await sourceRows(env.url, t, ['id'], ['id', 'v'])));
      const keys = readStreamingRows(env.outDir, `public.${t}`).rows.map((r) => `${r.lsn}:${r.seq}`);
      expect(new Set(keys).size, `${t}: a change in two files`).toBe(keys.length);
    }
    step('verify');
    const v = await runCli(['verify', env.outDir], { mayFail: true, timeoutMs: 240_000 });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 900_000);
});
