/**
 * Vitest global setup: one real PostgreSQL with wal_level=logical for the whole run. Uses
 * PG_TEST_URL when set; otherwise starts a throwaway cluster from the server binaries that
 * findBinDir() picks (PG_BIN, PG_EMBEDDED=1, the system's, the embedded PostgreSQL 18).
 * Each test file then creates its own database (test/harness/pg.ts).
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createCluster, type Cluster } from './cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgBinDir: string;
  }
}

let cluster: Cluster | null = null;

async function check(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT current_setting('wal_level') AS wal, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su, current_setting('server_version') AS version`);
    if (rows[0].wal !== 'logical') throw new Error(`test server at PG_TEST_URL has wal_level=${rows[0].wal}; it needs wal_level=logical`);
    if (!rows[0].su) throw new Error('PG_TEST_URL must connect as a superuser');
    await c.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'egress_norepl') THEN
        CREATE ROLE egress_norepl LOGIN PASSWORD 'norepl';
      END IF; END $$`);
    return rows[0].version as string;
  } finally {
    await c.end();
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.PG_TEST_URL ?? '';
  let binDir = '';
  if (!url) {
    const started = Date.now();
    cluster = await createCluster({
      wal_level: 'logical',
      max_replication_slots: 64,
      max_wal_senders: 64,
      max_connections: 300,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      shared_buffers: "'256MB'",
      wal_sender_timeout: "'60s'",
      logical_decoding_work_mem: "'64MB'",
      max_wal_size: "'4GB'",
      log_min_messages: 'warning',
    });
    cluster.start();
    url = cluster.url();
    binDir = cluster.binDir;
    process.stdout.write(`test PostgreSQL started on port ${cluster.port} in ${Date.now() - started} ms (${cluster.dataDir})\n`);
  }
  const version = await check(url);
  process.stdout.write(`test PostgreSQL: server version ${version}${binDir ? ` from ${binDir}` : ' at PG_TEST_URL'}\n`);
  project.provide('pgAdminUrl', url);
  project.provide('pgBinDir', binDir);
  process.env.PG_TEST_ADMIN_URL = url;
  return async () => {
    if (cluster && !process.env.KEEP_PG) {
      try {
        cluster.stop('immediate');
      } catch {
        // already stopped
      }
      cluster.destroy();
    }
  };
}
