/**
 * What an operator sees: --version and examples in --help; `init --url` sets up with superuser
 * credentials and grants a LOGIN REPLICATION role what `run` needs; `status` tells a live daemon
 * from a dead one and lists registered files missing from disk, with an exit code to act on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { adminUrl, waitFor } from '../harness/pg.js';
import { createEnv, readStreamingRows, ROOT, runCli, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { EVENT_TRIGGERS } from '../../src/registry/migrate.js';

describe('operator', () => {
  it('--version prints the package version; every command has an example in --help', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await runCli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(pkg.version);
    for (const cmd of ['run', 'init', 'status', 'uninstall']) {
      const h = await runCli([cmd, '--help']);
      expect(h.code, cmd).toBe(0);
      expect(h.stdout, cmd).toMatch(new RegExp(`Example:\\n(  \\$ pg-egress .*\\n)*  \\$ .*pg-egress ${cmd} --config cdc.yml`));
    }
  });

  describe('init --url for a LOGIN REPLICATION role', () => {
    let env: EgressEnv;
    const role = `egress_run_${randomBytes(4).toString('hex')}`;
    beforeAll(async () => {
      env = await createEnv();
      await withDb(env.url, (c) => c.query(`CREATE ROLE ${role} LOGIN REPLICATION PASSWORD 'pw'; CREATE TABLE items (id int PRIMARY KEY, v text)`));
    });
    afterAll(async () => {
      await env?.drop();
      await withDb(adminUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role}`)).catch(() => undefined);
    });

    it('a role without superuser or CREATE runs after a superuser init --url', async () => {
      const u = new URL(env.url);
      const admin = u.toString();
      u.username = role;
      u.password = 'pw';
      const cfgText = readFileSync(env.configPath, 'utf8').replace(/url: .*/, `url: ${JSON.stringify(u.toString())}`);
      writeFileSync(env.configPath, cfgText);
      // Plain init as that role cannot install the event triggers or create the registry: one line that says what to do.
      const denied = await runCli(['init', '--config', env.configPath]);
      expect(denied.code).toBe(5);
      expect(denied.stderr.trim().split('\n')).toHaveLength(1);
      expect(denied.stderr).toMatch(/init --url/);

      const init = await runCli(['init', '--config', env.configPath, '--url', admin]);
      expect(init.stderr).toBe('');
      expect(init.code).toBe(0);
      expect(init.stdout).toMatch(new RegExp(`registry privileges granted to ${role}`));
      expect(init.stdout).not.toMatch(/postgres@/);
      const d = spawnCli(['run', '--config', env.configPath]);
      try {
        await waitSlotActive(env);
        await withDb(env.url, (c) => c.query(`INSERT INTO items VALUES (1, 'one'); UPDATE items SET v = 'uno'`));
        await waitCaughtUp(env);
        const st = await runCli(['status', '--config', env.configPath, '--json']);
        expect(st.stderr).toBe('');
        expect(st.code).toBe(0);
      } finally {
        d.proc.kill('SIGTERM');
        expect((await d.exit).code).toBe(0);
      }
      expect(readStreamingRows(env.outDir, 'public.items').rows.map((r) => r.op)).toEqual(['I', 'U']);
      await withDb(env.url, async (c) => {
        expect((await c.query(`SELECT 1 FROM pg_event_trigger WHERE evtname LIKE 'pg_egress%'`)).rowCount).toBe(EVENT_TRIGGERS.length);
      });
    });
  });

  describe('status', () => {
    let env: EgressEnv;
    beforeAll(async () => {
      env = await createEnv();
      await withDb(env.url, (c) => c.query(`CREATE TABLE quick (id int PRIMARY KEY); CREATE TABLE slow (id int PRIMARY KEY)`));
    });
    afterAll(async () => {
      await env?.drop();
    });

    it("shows a live daemon with its pending rows, not a dead one's; lists registered files missing from disk", async () => {
      const d = spawnCli(['run', '--config', env.configPath]);
      await waitSlotActive(env);
      await withDb(env.url, (c) => c.query(`INSERT INTO quick VALUES (1)`));
      await waitCaughtUp(env);
      // Rows that stay pending: the daemon is stopped before their window closes... by kill -9.
      // (Windows are aligned to the epoch, a 1h one ends at the top of the hour: the daemon's
      // clock a day behind closes none while the test runs, src/clock.ts.)
      writeConfig(env, 'batch:\n  interval: 1h');
      d.proc.kill('SIGTERM');
      expect((await d.exit).code).toBe(0);
      const d2 = spawnCli(['run', '--config', env.configPath], { env: { PG_EGRESS_TEST_CLOCK_OFFSET_MS: String(-86_400_000) } });
      await waitSlotActive(env);
      await withDb(env.url, (c) => c.query(`INSERT INTO slow SELECT generate_series(1, 5)`));
      const live = await waitFor('a status file with the pending rows', async () => {
        const st = await runCli(['status', '--config', env.configPath, '--json']);
        const r = JSON.parse(st.stdout);
        return r.tables.find((t: { table: string; pending_rows: number | null }) => t.table === 'public.slow' && t.pending_rows === 5) ? { r, code: st.code } : null;
      });
      expect(live.code).toBe(0);
      expect(live.r.daemon).toMatchObject({ running: true, pid: d2.proc.pid });
      expect(live.r.daemon.holder).toMatch(new RegExp(`pid ${d2.proc.pid} on host`));

      d2.proc.kill('SIGKILL');
      await d2.exit;
      const dead = await waitFor('status without the dead daemon', async () => {
        const st = await runCli(['status', '--config', env.configPath, '--json']);
        const r = JSON.parse(st.stdout);
        return r.daemon.running === false ? r : null;
      });
      expect(dead.daemon.pid).toBeNull();
      expect(dead.tables.every((t: { pending_rows: number | null }) => t.pending_rows === null)).toBe(true);
      const text = await runCli(['status', '--config', env.configPath]);
      expect(text.stdout).toMatch(/daemon +not running \(last status file /);

      // A registered file deleted behind our back.
      const victim = await withDb(env.url, async (c) => (await c.query(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' LIMIT 1`)).rows[0].path as string);
      rmSync(path.join(env.outDir, victim));
      const st = await runCli(['status', '--config', env.configPath, '--json']);
      expect(st.code).toBe(9);
      expect(JSON.parse(st.stdout).missing_files).toEqual({ count: 1, first: [victim] });
      const st2 = await runCli(['status', '--config', env.configPath]);
      expect(st2.stdout).toMatch(new RegExp(`MISSING FILES \\(1\\)[\\s\\S]*${victim.replace(/\./g, '\\.')}`));
    });
  });
});
