/**
 * Operator rough edges (issue 14 item 8): `init --url` with a wrong password names --url's role
 * and where its password comes from (never `source.password`); `uninstall` without the rights
 * to drop the triggers and the publication changes nothing and suggests `uninstall --url`; with
 * them it also revokes the SELECT grants `init --url` gave and puts back a reload marker's
 * table comment, on a table that left the selection too; anchors queued for a target removed
 * from the config are marked skipped (status shows them, exits 0) and resume when it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createCluster, freePort, type Cluster } from '../harness/cluster.js';
import { adminUrl, waitFor } from '../harness/pg.js';
import { createEnv, runCli, spawnCli, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

describe('init --url with a wrong password', () => {
  let cluster: Cluster;
  let env: EgressEnv;
  beforeAll(async () => {
    // A cluster of our own whose superuser "pgsuper" must give a password (the others: trust).
    cluster = await createCluster({ fsync: 'off', wal_level: 'logical', max_replication_slots: '10', max_wal_senders: '10' });
    const hba = path.join(cluster.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all pgsuper 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    cluster.start();
    await withDb(cluster.url('postgres'), (c) => c.query(`CREATE ROLE pgsuper SUPERUSER LOGIN PASSWORD 'right-pw-7'`));
    env = await createEnv({ adminUrl: cluster.url('postgres') });
  });
  afterAll(async () => {
    await env?.drop().catch(() => undefined);
    cluster?.destroy();
  });

  it('names --url, its role and where its password comes from; the right one works', async () => {
    const u = new URL(env.url);
    u.username = 'pgsuper';
    const noPassword = u.toString();
    u.password = 'wrong-pw';
    for (const [url, pgpassword] of [
      [u.toString(), undefined],
      [noPassword, 'also-wrong'],
    ] as const) {
      const r = await runCli(['init', '--config', env.configPath, '--url', url], { env: pgpassword ? { PGPASSWORD: pgpassword } : {} });
      expect(r.code).toBe(5);
      const line = r.stderr.trim();
      expect(line.split('\n')).toHaveLength(1);
      expect(line).toMatch(/^pg-egress: authentication failed for pgsuper@127\.0\.0\.1:\d+\/.*check the user and password of --url/);
      expect(line).toMatch(/else PGPASSWORD; else ~\/\.pgpass; never source\.password/);
      expect(line).not.toMatch(/check source\.user|postgres@/);
      expect(line).not.toContain('wrong-pw');
    }
    const ok = await runCli(['init', '--config', env.configPath, '--url', noPassword], { env: { PGPASSWORD: 'right-pw-7' } });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
  });
});

describe('uninstall', () => {
  let env: EgressEnv;
  const role = `egress_un_${randomBytes(4).toString('hex')}`;
  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) =>
      c.query(`CREATE ROLE ${role} LOGIN REPLICATION; CREATE TABLE inc_a (id int PRIMARY KEY); CREATE TABLE other_b (id int PRIMARY KEY); CREATE TABLE "we""ird
name" (id int PRIMARY KEY)`),
    );
  });
  afterAll(async () => {
    await env?.drop();
    await withDb(adminUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role}`)).catch(() => undefined);
  });

  it('without the rights changes nothing and suggests uninstall --url; with them leaves no grant and no marker comment', async () => {
    const admin = env.url;
    const u = new URL(env.url);
    u.username = role;
    const config = (include: string) => {
      writeConfig(env, `tables:\n  include: [${JSON.stringify(include)}]`);
      writeFileSync(env.configPath, readFileSync(env.configPath, 'utf8').replace(/url: .*/, `url: ${JSON.stringify(u.toString())}`));
    };
    config('public.*');
    expect((await runCli(['init', '--config', env.configPath, '--url', admin])).code).toBe(0);
    // The selection narrows: other_b and the odd name leave the publication, their grants stay.
    config('public.inc_*');
    expect((await runCli(['init', '--config', env.configPath, '--url', admin])).code).toBe(0);
    const state = () =>
      withDb(admin, async (c) => {
        const priv = await c.query<{ t: string; ok: boolean }>(
          `SELECT c.relname AS t, has_table_privilege($1, c.oid, 'SELECT') AS ok FROM pg_class c WHERE c.relname IN ('inc_a', 'other_b', 'we"ird\nname') ORDER BY 1`,
          [role],
        );
        const comment = (await c.query<{ d: string | null }>(`SELECT obj_description('other_b'::regclass, 'pg_class') AS d`)).rows[0].d;
        const slot = (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [env.slot])).rowCount;
        const pub = (await c.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [env.slot])).rowCount;
        return { priv: Object.fromEntries(priv.rows.map((r) => [r.t, r.ok])), comment, slot, pub };
      });
    expect((await state()).priv).toEqual({ inc_a: true, other_b: true, 'we"ird\nname': true });
    // A comment, then a reload marker on a table out of scope: no daemon consumes it.
    await withDb(admin, (c) => c.query(`COMMENT ON TABLE other_b IS 'keep me'; COMMENT ON TABLE other_b IS 'pg-egress:reload'`));
    expect((await state()).comment).toBe('pg-egress:reload');

    const denied = await runCli(['uninstall', '--config', env.configPath, '--drop-registry']);
    expect(denied.code).toBe(5);
    expect(denied.stderr.trim().split('\n')).toHaveLength(1);
    expect(denied.stderr).toMatch(/may not drop the event triggers \(superuser\) or drop publication .* \(its owner\); nothing was changed; run `pg-egress uninstall --url <superuser url>/);
    expect(denied.stderr).not.toMatch(/init --url/);
    expect(await state()).toMatchObject({ slot: 1, pub: 1 });

    const out = await runCli(['uninstall', '--config', env.configPath, '--url', admin, '--drop-registry']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`SELECT of ${role} on 3 table\\(s\\).*reload marker comment on 1 table\\(s\\)`));
    expect(await state()).toEqual({ priv: { inc_a: false, other_b: false, 'we"ird\nname': false }, comment: 'keep me', slot: 0, pub: 0 });
  });
});

describe('anchors of a target no longer configured', () => {
  let env: EgressEnv;
  let s3Config = '';
  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY)`));
    // S3 on a loopback port where nothing listens: every upload fails and is retried.
    s3Config = `anchors:\n  s3:\n    bucket: gone\n    endpoint: http://127.0.0.1:${await freePort()}\n    force_path_style: true`;
  });
  afterAll(async () => {
    await env?.drop();
  });
  const awsEnv = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };
  const states = () => withDb(env.url, async (c) => (await c.query<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM cdc_registry.anchor_queue GROUP BY 1 ORDER BY 1`)).rows);
  const runUntil = async (what: string, cond: () => Promise<boolean>) => {
    const d = spawnCli(['run', '--config', env.configPath], { env: awsEnv });
    await waitSlotActive(env);
    await waitFor(what, cond);
    d.proc.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);
    return d;
  };

  it('are marked skipped with a warning, shown by status (exit 0), and resumed when the target is back', async () => {
    writeConfig(env, s3Config);
    await runUntil('S3 anchors queued', async () => {
      await withDb(env.url, (c) => c.query(`INSERT INTO t VALUES (${Math.floor(Math.random() * 1e9)})`));
      return (await states()).some((s) => s.state === 'pending' && s.n >= 2);
    });
    const queued = (await states()).reduce((n, s) => n + s.n, 0);
    let st = await runCli(['status', '--config', env.configPath], { env: awsEnv });
    expect(st.stdout).toMatch(/pending anchors [1-9]/);

    writeConfig(env, '');
    const d = await runUntil('anchors skipped', async () => (await states()).every((s) => s.state === 'skipped'));
    expect(d.stdout() + d.stderr()).toMatch(/anchor\(s\) for anchors\.s3 marked skipped: anchors\.s3 is not configured any more/);
    expect(await states()).toEqual([{ state: 'skipped', n: queued }]);
    st = await runCli(['status', '--config', env.configPath]);
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(/pending anchors 0 \| s3: 0 pending, 0 failed, 0 done, \d+ skipped \(anchors\.s3 not configured\)/);
    const json = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout);
    expect(json.anchors[0]).toMatchObject({ target: 's3', pending: 0, skipped: queued });

    writeConfig(env, s3Config);
    await runUntil('anchors resumed', async () => !(await states()).some((s) => s.state === 'skipped'));
    expect((await states()).every((s) => s.state === 'pending')).toBe(true);
  });
});
