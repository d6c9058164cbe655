/** Waiting for an export's snapshot (src/reload/snapshot.ts): on running transactions, on a free slot. */
import type pg from 'pg';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Db } from '../db/tx.js';
import { EgressError, isEgressError } from '../errors.js';
import type { ReloadOp, ReloadRegistry } from '../registry/reloads.js';
import type { ServerInfo } from '../source/setup.js';
import { createExportSnapshot, type ExportSnapshot } from './snapshot.js';

interface SnapshotDeps {
  cfg: Config;
  log: Logger;
  db: Db;
  server: ServerInfo;
  reloads: ReloadRegistry;
}

/**
 * The export's snapshot, waiting as long as it takes: for the transactions running when it is
 * asked for to end (each operation says which one it waits on), and for a free replication slot.
 * `connected`: the replication connection opened ahead (snapshot.ts connectSnapshotClient), for
 * the first try; it is used or closed.
 */
export async function takeSnapshot(
  d: SnapshotDeps,
  loop: { readonly stopping: boolean; sleep(ms: number): Promise<void> },
  ops: ReloadOp[],
  connected?: Promise<pg.Client>,
): Promise<ExportSnapshot> {
  const { cfg, log, reloads, server } = d;
  const ids = ops.map((o) => o.id);
  const major = Number(server.serverVersion.split('.')[0]);
  let warnedSlots = false;
  // Whether the operations were marked as waiting: only then is the mark cleared. Clearing it
  // always cost every export a registry UPDATE of its operations between the snapshot and the
  // first lock, on a pool connection busy with the stream's start (~45 ms of 500 tables' start here).
  let marked = false;
  const mark = async (msg: string) => {
    marked = true;
    await reloads.setWaiting(ids, msg);
  };
  for (;;) {
    let settled = false;
    const pending = createExportSnapshot(cfg, major, connected);
    connected = undefined;
    pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    let lastXid = '';
    while (!settled) {
      await Promise.race([pending.catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
      if (settled) break;
      const w = await oldestTransaction(d.db).catch(() => null);
      const msg = w ? `export snapshot waits for transaction ${w.xid} (pid ${w.pid}, running for ${w.age}) to end` : 'export snapshot waits for running transactions to end';
      await mark(msg).catch(() => undefined);
      if (w && w.xid !== lastXid) log.warn({ pid: w.pid, xid: w.xid, age: w.age }, msg);
      lastXid = w?.xid ?? '';
    }
    try {
      const s = await pending;
      if (marked) await reloads.setWaiting(ids, null);
      return s;
    } catch (e) {
      if (isEgressError(e) && e.code === 'NO_FREE_SLOT' && !loop.stopping) {
        const msg = 'waiting for a free replication slot for the export snapshot (raise max_replication_slots or drop an unused slot)';
        await mark(msg);
        if (!warnedSlots) log.warn(msg);
        warnedSlots = true;
        await loop.sleep(5000);
        if (loop.stopping) throw new EgressError('SOURCE_UNREACHABLE', 'stopped while waiting for a replication slot');
        continue;
      }
      throw e;
    }
  }
}

async function oldestTransaction(db: Db): Promise<{ pid: string; xid: string; age: string } | null> {
  const { rows } = await db.query<{ pid: string; xid: string; age: string }>(
    `SELECT pid::text, backend_xid::text AS xid, date_trunc('second', now() - xact_start)::text AS age
     FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
     ORDER BY xact_start LIMIT 1`,
  );
  return rows[0] ?? null;
}