/**
 * SPEC §10: each error is one line that names the cause and the setting, with a documented exit
 * code, no stack trace and no secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, chownSync, mkdirSync } from 'node:fs';
import { execFileSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { createEnv, runCli, withDb, type EgressEnv } from '../helpers/egress.js';
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

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A second, small throwaway cluster whose settings the tests can change (wal_level, slots). */
class SmallCluster {
  dir = '';
  port = 0;
  proc: ChildProcess | null = null;
  private readonly asPostgres = process.getuid?.() === 0;

  private run(cmd: string, args: string[]): void {
    const bin = path.join(inject('pgBinDir'), cmd);
    if (this.asPostgres) execFileSync('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: 'pipe' });
    else execFileSync(bin, args, { stdio: 'pipe' });
  }

  async init(): Promise<void> {
    const base = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-small-'));
    this.dir = path.join(base, 'data');
    mkdirSync(this.dir, { mode: 0o700 });
    if (this.asPostgres) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(base, uid, gid);
      chownSync(this.dir, uid, gid);
    }
    this.run('initdb', ['-D', this.dir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    this.port = await freePort();
  }

  async start(settings: Record<string, string>): Promise<void> {
    const conf = { listen_addresses: "'127.0.0.1'", port: String(this.port), unix_socket_directories: `'${this.dir}'`, fsync: 'off', ...settings };
    writeFileSync(path.join(this.dir, 'postgresql.auto.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    this.run('pg_ctl', ['-D', this.dir, '-w', '-l', path.join(this.dir, 'log'), 'start']);
    await waitFor('small cluster', async () => {
      try {
        await withDb(this.url('postgres'), (c) => c.query('SELECT 1'));
        return true;
      } catch {
        return false;
      }
    });
  }

  stop(): void {
    this.run('pg_ctl', ['-D', this.dir, '-m', 'immediate', 'stop']);
  }

  url(db: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }
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
    const cluster = new SmallCluster();
    beforeAll(async () => {
      await cluster.init();
    }, 120_000);
    afterAll(() => {
      try {
        cluster.stop();
      } catch {
        /* already stopped */
      }
    });

    it('wal_level not logical: exit 4, names wal_level', async () => {
      await cluster.start({ wal_level: 'replica' });
      const p = configFile(dir, `source:\n  url: ${cluster.url('postgres')}\noutput:\n  dir: ${dir}/o\n`);
      const r = await runCli(['run', '--config', p]);
      expect(r.code).toBe(4);
      expect(expectOneLine(r.stderr)).toContain('wal_level');
      cluster.stop();
    }, 120_000);

    it('no free replication slot: exit 6, names max_replication_slots', async () => {
      await cluster.start({ wal_level: 'logical', max_replication_slots: '1', max_wal_senders: '2' });
      await withDb(cluster.url('postgres'), (c) => c.query(`SELECT pg_create_logical_replication_slot('taken', 'pgoutput')`));
      const p = configFile(dir, `source:\n  url: ${cluster.url('postgres')}\nslot: mine\noutput:\n  dir: ${dir}/o\n`);
      const r = await runCli(['run', '--config', p]);
      expect(r.code).toBe(6);
      expect(expectOneLine(r.stderr)).toContain('max_replication_slots');
    }, 120_000);
  });
});
