/**
 * Registry connections. Every task that talks to the registry (the flush, the publication watcher,
 * status, later reload and anchor workers) takes a pooled connection, and a multi-statement change
 * runs in `withTransaction` on a connection of its own: no task's query can ever land inside
 * another task's BEGIN … COMMIT, which a shared `pg.Client` would allow.
 * https://node-postgres.com/features/transactions
 */
import pg from 'pg';
import { clientConfig, type SourceConfig } from './connect.js';

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

/**
 * How long one statement of a registry transaction may wait for a lock before it fails (55P03)
 * and the transaction is tried again. Nothing pg-egress does may wait on a lock without a bound:
 * a wait that queues behind an application's DDL would queue the application behind us in turn.
 * https://www.postgresql.org/docs/15/runtime-config-client.html#GUC-LOCK-TIMEOUT
 */
export const LOCK_TIMEOUT_MS = 5000;
/** Tries of a transaction that failed on a lock timeout or a deadlock before the error is thrown. */
export const LOCK_RETRIES = 4;

/** lock_not_available (lock_timeout) and deadlock_detected: the transaction can simply be tried again. */
export const isLockConflict = (e: unknown): boolean => ['55P03', '40P01'].includes((e as { code?: string } | null)?.code ?? '');

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` inside BEGIN … COMMIT on one connection; ROLLBACK and rethrow on any error. Every
 * statement waits at most `lockTimeoutMs` for a lock; a transaction that fails on a lock timeout
 * or a deadlock is rolled back and run again (`fn` must have no effect outside the database),
 * with a growing pause, up to `retries` times.
 */
export async function withTransaction<T>(
  db: Db,
  fn: (c: pg.ClientBase) => Promise<T>,
  o: { lockTimeoutMs?: number; retries?: number } = {},
): Promise<T> {
  const retries = o.retries ?? LOCK_RETRIES;
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(db, fn, o.lockTimeoutMs ?? LOCK_TIMEOUT_MS);
    } catch (e) {
      if (!isLockConflict(e) || attempt >= retries) throw e;
      await pause(Math.min(5000, 200 * 2 ** attempt) * (0.5 + Math.random() / 2));
    }
  }
}

async function once<T>(db: Db, fn: (c: pg.ClientBase) => Promise<T>, lockTimeoutMs: number): Promise<T> {
  const isPool = db instanceof pg.Pool;
  const c = isPool ? await (db as pg.Pool).connect() : (db as pg.ClientBase);
  let broken: unknown = undefined;
  try {
    await c.query('BEGIN');
    await c.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
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
