/**
 * Registry connections. Every task that talks to the registry (the flush, the publication watcher,
 * status, later reload and anchor workers) takes a pooled connection, and a multi-statement change
 * runs in `withTransaction` on a connection of its own: no task's query can ever land inside
 * another task's BEGIN … COMMIT, which a shared `pg.Client` would allow.
 * https://node-postgres.com/features/transactions
 */
import pg from 'pg';
import { clientConfig, type SourceConfig } from '../source/connect.js';

/** Anything that runs a query: a pool or one connection. */
export type Db = pg.Pool | pg.ClientBase;

export function createPool(source: SourceConfig, max = 4): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(source), max, idleTimeoutMillis: 30_000 });
  // An idle connection that the server drops emits 'error' on the pool; the next query reconnects.
  pool.on('error', () => undefined);
  // A checked-out connection (withTransaction) has no listener of the pool's: one the server drops
  // would emit an unhandled 'error' and end the process. Its failing query reports it instead.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** Runs `fn` inside BEGIN … COMMIT on one connection; ROLLBACK and rethrow on any error. */
export async function withTransaction<T>(db: Db, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  const isPool = db instanceof pg.Pool;
  const c = isPool ? await (db as pg.Pool).connect() : (db as pg.ClientBase);
  let broken: unknown = undefined;
  try {
    await c.query('BEGIN');
    const v = await fn(c);
    await c.query('COMMIT');
    return v;
  } catch (e) {
    await c.query('ROLLBACK').catch((re: unknown) => (broken = re));
    throw e;
  } finally {
    // A connection whose ROLLBACK failed is not given back to the pool.
    if (isPool) (c as pg.PoolClient).release(broken instanceof Error ? broken : undefined);
  }
}
