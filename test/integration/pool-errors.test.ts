/**
 * A registry connection that the server drops while a task holds it (a restart during a flush's
 * transaction) fails that task's query; it must not end the process with an unhandled 'error'
 * event (pg-pool removes its own listener from a checked-out client).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, waitFor, withClient } from '../harness/pg.js';
import { createPool, withTransaction } from '../../src/db/tx.js';
import { parseConfig } from '../../src/config/index.js';

describe('registry pool', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase('pool');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('a connection terminated inside withTransaction rejects the transaction, and the pool goes on', async () => {
    const cfg = parseConfig(`source:\n  url: ${JSON.stringify(db.url)}\noutput:\n  dir: /tmp/unused\ntables:\n  include: ["*.*"]\n`, { baseDir: '/tmp', path: '/tmp/cdc.yml', env: {} });
    const pool = createPool(cfg.source, 2);
    try {
      const outcome = await withTransaction(pool, async (c) => {
        const pid = (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0].p;
        await withClient(db.url, (admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
        // Let the socket close while no query of ours is running: the client then emits 'error'.
        await waitFor('the connection to close', async () => (c as unknown as { _ended: boolean })._ended, { timeoutMs: 10_000, intervalMs: 20 });
        await c.query('SELECT 1');
      }).then(
        () => 'committed',
        (e: Error) => e.message,
      );
      expect(outcome).not.toBe('committed');
      expect(String((await pool.query<{ n: unknown }>('SELECT 1 AS n')).rows[0].n)).toBe('1');
    } finally {
      await pool.end();
    }
  });
});
