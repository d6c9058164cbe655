/** Helpers for test files: a database of their own on the run's server. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

export const adminUrl = (): string => inject('pgAdminUrl');

function urlFor(db: string, admin = adminUrl()): string {
  const u = new URL(admin);
  u.pathname = '/' + db;
  return u.toString();
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** server_version_num of each admin URL's server, asked once. */
const serverVersions = new Map<string, number>();

/** A database of its own on the run's server, or on `admin` (a cluster a test started itself). */
export async function createTestDatabase(prefix = 't', admin = adminUrl()): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`.toLowerCase();
  await withClient(admin, async (c) => {
    // FILE_COPY (PostgreSQL 15+) copies template1's files instead of writing every page to the WAL
    // (WAL_LOG, the default): 31 ms of the server against 90 ms, and its drop 9 ms against 40 ms,
    // for some hundred databases a run. Its checkpoints cost little here (fsync off).
    // https://www.postgresql.org/docs/current/sql-createdatabase.html
    let v = serverVersions.get(admin);
    if (v === undefined) serverVersions.set(admin, (v = Number((await c.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0].v)));
    await c.query(`CREATE DATABASE "${name}"${v >= 150000 ? ' STRATEGY FILE_COPY' : ''}`);
  });
  return {
    url: urlFor(name, admin),
    name,
    drop: async () => {
      await waitFor(
        `slots of ${name} dropped`,
        () =>
          withClient(admin, async (c) => {
            await c.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active`, [name]);
            await c.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, [name]).catch(() => undefined);
            return (await c.query(`SELECT 1 FROM pg_replication_slots WHERE database = $1`, [name])).rowCount === 0;
          }),
        { timeoutMs: 90_000, intervalMs: 200 },
      );
      await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  // Generous: a wait ends when its condition holds; the bound only turns a hang into a failure,
  // and a loaded CI machine can take far longer than an idle one.
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  let lastErr: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
      if (String(e).includes('pg-egress run exited')) throw e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ''}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}
