/**
 * Readiness and the application: an export holds ACCESS SHARE locks on its tables for as long as
 * it copies, so a DDL issued meanwhile waits for the export, and the application's statements on
 * the table queue behind that DDL. That is bounded by the export's length; the workers release
 * their locks as soon as they have copied their last chunk. Should a session still wait on an
 * export's lock for longer than EXPORT_LOCK_WAIT_BOUND_MS (a very long export, or a bug), or an
 * export session sit idle in its transaction that long, /ready says so, with the table, the pid
 * and for how long.
 * https://www.postgresql.org/docs/15/functions-info.html (pg_blocking_pids)
 */
import type { Db } from '../db/tx.js';

export interface ExportLockHolder {
  pid: number;
  /** When its locks were granted (ms since the epoch). */
  since: number;
  tables: string[];
  /**
   * The export's first worker, waiting for the others to finish their COPYs: idle in its
   * transaction, its locks keep their copies safe (src/reload/chunk-queue.ts), not idle for no reason.
   */
  peersCopying?: boolean;
}

/** Not ready once a session has waited this long for a lock that an export holds (or an export session idled that long holding it). */
export const EXPORT_LOCK_WAIT_BOUND_MS = 60_000;

/**
 * One line per session that has waited longer than `boundMs` for a lock held by one of `holders`
 * (pg_blocking_pids: the export session holds a lock it needs, or is ahead of it in the queue).
 * A session queued behind such a waiter (the application behind a DDL) waits no longer than it.
 */
export async function exportLockReasons(
  db: Db,
  holders: ExportLockHolder[],
  boundMs = EXPORT_LOCK_WAIT_BOUND_MS,
  now = Date.now(),
): Promise<string[]> {
  const held = holders.filter((h) => now - h.since > boundMs);
  if (!held.length) return [];
  const { rows } = await db.query<{ pid: string; holder: string; waited_ms: string; rel: string | null }>(
    `SELECT w.pid::text AS pid, b.h::text AS holder,
            (extract(epoch FROM clock_timestamp() - coalesce(w.query_start, w.xact_start)) * 1000)::bigint::text AS waited_ms,
            (SELECT l.relation::regclass::text FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted AND l.relation IS NOT NULL LIMIT 1) AS rel
     FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS b(h)
     WHERE w.wait_event_type = 'Lock' AND b.h = ANY($1::int[])`,
    [held.map((h) => h.pid)],
  );
  const out: string[] = [];
  // An export session that sits in its transaction doing nothing keeps its locks for no reason
  // (its copy is over or stuck): as bad as a waiter, even before anyone queues behind it.
  const { rows: idle } = await db.query<{ pid: string; idle_ms: string }>(
    `SELECT pid::text, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::bigint::text AS idle_ms
     FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND state LIKE 'idle in transaction%'`,
    [held.map((h) => h.pid)],
  );
  for (const r of idle) {
    const ms = Number(r.idle_ms);
    if (ms <= boundMs) continue;
    const h = held.find((x) => x.pid === Number(r.pid))!;
    if (h.peersCopying) continue;
    out.push(`an export session (pid ${r.pid}) has held its locks on ${h.tables.join(', ')} idle in a transaction for ${Math.round(ms / 1000)} s (bound ${boundMs / 1000} s)`);
  }
  for (const r of rows) {
    const waited = Number(r.waited_ms);
    if (waited <= boundMs) continue;
    const h = held.find((x) => x.pid === Number(r.holder))!;
    out.push(`an export of ${r.rel ?? h.tables.join(', ')} holds a lock that pid ${r.pid} has waited for ${Math.round(waited / 1000)} s (bound ${boundMs / 1000} s); it is released when the export's copy ends`);
  }
  return out;
}
