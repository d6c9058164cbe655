/**
 * SPEC §10: each error is one line that names the cause and the setting, with a documented exit
 * code, no stack trace and no secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createEnv, runCli, withDb, type EgressEnv } from '../helpers/egress.js';
import { createCluster, freePort, type Cluster } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';

const SECRET = 's3cr3t-Pa55';

function expectOneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^pg-egress: /);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stderr).not.toContain(SECRET);
  return lines[0];
}

function configFile(dir: string, body: string): string {
  const p = path.join(dir, `cdc-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(p, body);
  return p;
}

describe('errors', () => {
  let env: EgressEnv;
  let dir: string;

  beforeAll(async () => {
    env = await createEnv();
    dir = env.dir;
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('invalid configuration: exit 2, names the key and suggests the right one', async () => {
    const p = configFile(dir, `source:\n  url: postgres://u:${SECRET}@127.0.0.1:1/db\nbatch:\n  intervl: 5m\n`);
    const r = await runCli(['run', '--config', p]);
    expect(r.code).toBe(2);
    const line = expectOneLine(r.stderr);
    expect(line).toContain('batch.intervl');
    expect(line).toContain('batch.interval');
  });

  it('missing environment variable: exit 2, names it', async () => {
    const p = configFile(dir, 'source:\n  url: postgres://u@127.0.0.1:1/db\n  password: ${PG_EGRESS_SURELY_UNSET}\n');
    const r = await runCli(['run', '--config', p]);
    expect(r.code).toBe(2);
    expect(expectOneLine(r.stderr)).toContain('PG_EGRESS_SURELY_UNSET');
  });

  it('unreachable server: exit 3, names source.url, no password', async () => {
    const port = await freePort();
    const p = configFile(dir, `source:\n  url: postgres://egress:${SECRET}@127.0.0.1:${port}/shop\noutput:\n  dir: ${dir}/o\n`);
    const r = await runCli(['run', '--config', p]);
    expect(r.code).toBe(3);
    const line = expectOneLine(r.stderr);
    expect(line).toContain(`127.0.0.1:${port}`);
    expect(line).toContain('source.url');
  });

  it('no replication privilege: exit 5, says how to grant it', async () => {
    const url = new URL(env.url);
    url.username = 'egress_norepl';
    url.password = SECRET;
    const p = configFile(dir, `source:\n  url: ${url.toString()}\nslot: s_norepl\npublication: s_norepl\noutput:\n  dir: ${dir}/o\n`);
    const r = await runCli(['run', '--config', p]);
    expect(r.code).toBe(5);
    const line = expectOneLine(r.stderr);
    expect(line).toMatch(/REPLICATION/);
    expect(line).toContain('egress_norepl');
  });

  describe('on a server of its own', () => {
    let cluster: Cluster;
    // Settings are changed by rewriting postgresql.auto.conf and restarting.
    const start = async (settings: Record<string, string>) => {
      cluster = await createCluster({ fsync: 'off', ...settings });
      cluster.start();
      await waitFor('small cluster', () => withDb(cluster.url('postgres'), async (c) => (await c.query('SELECT 1')).rowCount === 1));
    };
    afterAll(() => {
      try {
        cluster?.stop('immediate');
      } catch {
        /* already stopped */
      }
      cluster?.destroy();
    });

    it('wal_level not logical: exit 4, names wal_level', async () => {
      await start({ wal_level: 'replica' });
      const p = configFile(dir, `source:\n  url: ${cluster.url('postgres')}\noutput:\n  dir: ${dir}/o\n`);
      const r = await runCli(['run', '--config', p]);
      expect(r.code).toBe(4);
      expect(expectOneLine(r.stderr)).toContain('wal_level');
      cluster.stop('immediate');
      cluster.destroy();
    }, 120_000);

    it('no free replication slot: exit 6, names max_replication_slots', async () => {
      await start({ wal_level: 'logical', max_replication_slots: '1', max_wal_senders: '2' });
      await withDb(cluster.url('postgres'), (c) => c.query(`SELECT pg_create_logical_replication_slot('taken', 'pgoutput')`));
      const p = configFile(dir, `source:\n  url: ${cluster.url('postgres')}\nslot: mine\noutput:\n  dir: ${dir}/o\n`);
      const r = await runCli(['run', '--config', p]);
      expect(r.code).toBe(6);
      expect(expectOneLine(r.stderr)).toContain('max_replication_slots');
    }, 120_000);
  });
});
