/**
 * The registry pool. A connection that the server drops while a task holds it (a restart during a
 * flush's transaction) fails that task's query; it must not end the process with an unhandled
 * 'error' event (pg-pool removes its own listener from a checked-out client). A daemon session
 * hands over the pool with its first connection ready.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, waitFor, withClient } from '../harness/pg.js';
import { createPool, withTransaction } from '../../src/db/tx.js';
import { parseConfig } from '../../src/config/index.js';
import { openSession } from '../../src/source/session.js';

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

  it("a daemon session's first query finds the pool's first connection ready, and opens no second one", async () => {
    // A loopback proxy in front of the server holds back the first connection made through it
    // (the pool's, which openSession opens first) for 300 ms: the lock's and the replication
    // connection's handshakes finish before it, as they can on a busy server.
    const target = new URL(db.url);
    let accepted = 0;
    const proxy = net.createServer((inbound) => {
      const delay = accepted++ === 0 ? 300 : 0;
      setTimeout(() => {
        const outbound = net.connect(Number(target.port), target.hostname);
        inbound.pipe(outbound).pipe(inbound);
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
      }, delay);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const viaProxy = new URL(db.url);
    viaProxy.port = String((proxy.address() as net.AddressInfo).port);
    const cfg = parseConfig(`source:\n  url: ${JSON.stringify(viaProxy.toString())}\nslot: pool_session\noutput:\n  dir: /tmp/unused\ntables:\n  include: ["*.*"]\n`, { baseDir: '/tmp', path: '/tmp/cdc.yml', env: {} });
    try {
      const session = await openSession(cfg);
      try {
        // A query made while that connection was still starting opened another (pg.Pool does not
        // wait for a connecting client): the start's first check waited for a second handshake.
        expect({ total: session.pool.totalCount, idle: session.pool.idleCount }).toEqual({ total: 1, idle: 1 });
        expect(String((await session.pool.query<{ n: unknown }>('SELECT 1 AS n')).rows[0].n)).toBe('1');
        expect(session.pool.totalCount).toBe(1);
        expect(accepted).toBe(3);
      } finally {
        await session.close();
      }
    } finally {
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });
});
