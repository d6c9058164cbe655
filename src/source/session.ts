/**
 * The connections a daemon session opens at once (src/daemon.ts): the registry pool's first, the
 * replication connection (idle until the stream starts) and the daemon lock's. Each is a new
 * server process, which the postmaster starts one after another (~10-20 ms each here): they are
 * opened together rather than in turn. `run` starts them before it loads the daemon's modules
 * (src/cli/main.ts), so the handshakes overlap that work.
 */
import type pg from 'pg';
import type { Config } from '../config/index.js';
import { createPool } from '../db/tx.js';
import { DaemonLock } from '../registry/lock.js';
import { connectReplication } from '../wal/stream.js';

export interface SessionConnections {
  /** The registry's pool (its first connection opening). */
  pool: pg.Pool;
  /** One daemon per slot, for the whole session: taken before anything touches output.dir. */
  lock: DaemonLock;
  /** The replication connection opened ahead, once (then undefined): ReplicationStream.start's. */
  takeReplication(): Promise<pg.Client> | undefined;
  /** Ends all three (the replication connection if not taken). */
  close(): Promise<void>;
}

export async function openSession(cfg: Config): Promise<SessionConnections> {
  const pool = createPool(cfg.source, 6);
  // Waited for with the lock: the first query then finds this connection idle. A query made while
  // it was still starting opened a second one (pg.Pool does not wait for a connecting client),
  // ~15 ms more before the first check. A failure here is the first query's to report.
  const first = pool.connect().then(
    (c) => c.release(),
    () => undefined,
  );
  let replication: Promise<pg.Client> | undefined = connectReplication(cfg.source);
  replication.catch(() => undefined);
  const takeReplication = () => {
    const r = replication;
    replication = undefined;
    return r;
  };
  const closeRest = async () => {
    await takeReplication()?.then((c) => c.end(), () => undefined).catch(() => undefined);
    await pool.end().catch(() => undefined);
  };
  let lock: DaemonLock;
  try {
    [lock] = await Promise.all([DaemonLock.acquire(cfg.source, cfg.slot), first]);
  } catch (e) {
    await closeRest();
    throw e;
  }
  return {
    pool,
    lock,
    takeReplication,
    close: async () => {
      await closeRest();
      await lock.release();
    },
  };
}
