/**
 * Partition membership in the registry (sql/007): which selected root a leaf belongs to (or
 * belonged to), the daemon's own membership check, and what `status` shows per table.
 */
import { displayTable } from '../config/patterns.js';
import { isLockConflict, withTransaction, type Db } from '../db/tx.js';
import { EgressError } from '../errors.js';

export interface RootRef {
  schema: string;
  table: string;
  oid: number;
}

/**
 * The selected root a relation is or was a leaf of, for this publication: the captured membership
 * first (a leaf detached since was still a leaf where the stream is now), then the catalog (a
 * leaf whose membership was not captured: DDL capture off). A selected partitioned root gives
 * itself (`oid` = `relid`). Null: neither.
 */
export async function leafRoot(db: Db, publication: string, relid: number): Promise<RootRef | null> {
  const { rows } = await db.query<{ schema: string; table: string; oid: string }>(
    `SELECT * FROM (
       (SELECT m.root_schema AS schema, m.root_name AS table, m.root::text AS oid FROM "cdc_registry"."partition_members" m
        WHERE m.publication = $1 AND m.leaf = $2::oid ORDER BY m.current DESC, m.updated_at DESC LIMIT 1)
       UNION ALL
       (SELECT n.nspname, c.relname, c.oid::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = "cdc_registry"."selected_root"($1, $2::oid))) x LIMIT 1`,
    [publication, relid],
  );
  return rows.length ? { schema: rows[0].schema, table: rows[0].table, oid: Number(rows[0].oid) } : null;
}

/**
 * Syncs every selected root's membership from the daemon's side (sql/007 sync_all_partitions):
 * a root's first appearance, and changes that no event trigger captured. `reset` forgets what was
 * captured before, so that each root gets an `initial` record in the stream of a new slot.
 *
 * The function takes an advisory lock that the event triggers of partition DDL take too (sql/015):
 * a DDL recorded half-way through a check made it record a change that never happened, or lose
 * one. While a DDL that its trigger recorded is not committed, the check is busy: the periodic
 * check skips the round (the next one sees the DDL committed), a reset at start-up tries again.
 * The check's lock waits are short, because a DDL may be waiting for the check's lock meanwhile.
 */
export async function syncPartitions(db: Db, publication: string, reset = false): Promise<number> {
  const deadline = Date.now() + RESET_BUSY_MS;
  for (;;) {
    let n: number;
    try {
      n = await withTransaction(
        db,
        async (c) => {
          if (reset) await c.query(`DELETE FROM "cdc_registry"."partition_roots" WHERE publication = $1`, [publication]);
          const { rows } = await c.query<{ n: number }>(`SELECT "cdc_registry"."sync_all_partitions"($1) AS n`, [publication]);
          // Busy: roll the reset back with the round.
          if (rows[0].n < 0) throw BUSY;
          return rows[0].n;
        },
        // Tried again here (a reset) or at the next round, not also by withTransaction.
        { lockTimeoutMs: CHECK_LOCK_TIMEOUT_MS, retries: 0 },
      );
    } catch (e) {
      const busy = e === BUSY || isLockConflict(e);
      if (!busy) throw e;
      if (!reset) return 0;
      if (Date.now() > deadline) throw new EgressError('LOCK_TIMEOUT', `partition DDL kept the membership check of publication ${publication} busy for ${RESET_BUSY_MS / 1000} s; try again once that transaction has ended`);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    return n;
  }
}

/** How long one of the check's statements waits for a lock (a DDL may be waiting for the check). */
const CHECK_LOCK_TIMEOUT_MS = 200;
/** How long a start-up reset waits for uncommitted partition DDL. */
const RESET_BUSY_MS = 60_000;
const BUSY = new Error('partition membership check busy');

/**
 * For `status`: each leaf's root and each root's leaf count, keyed by `schema\u0000table` (a dot
 * would be ambiguous: names may contain dots); values name the root as `displayTable` prints it.
 */
export async function partitionInfo(db: Db, publication: string): Promise<{ leafOf: Map<string, string>; roots: Map<string, number> }> {
  const leafOf = new Map<string, string>();
  const roots = new Map<string, number>();
  const { rows: r } = await db.query<{ v: string | null }>(`SELECT to_regclass('cdc_registry.partition_members')::text AS v`);
  if (r[0].v === null) return { leafOf, roots };
  const { rows } = await db.query<{ s: string; t: string; rs: string; rt: string }>(
    `SELECT m.schema_name AS s, m.table_name AS t, m.root_schema AS rs, m.root_name AS rt
     FROM "cdc_registry"."partition_members" m WHERE m.publication = $1 AND m.current`,
    [publication],
  );
  for (const x of rows) {
    const root = `${x.rs}\u0000${x.rt}`;
    leafOf.set(`${x.s}\u0000${x.t}`, displayTable(x.rs, x.rt));
    roots.set(root, (roots.get(root) ?? 0) + 1);
  }
  const { rows: rr } = await db.query<{ s: string; t: string }>(`SELECT schema_name AS s, table_name AS t FROM "cdc_registry"."partition_roots" WHERE publication = $1`, [publication]);
  for (const x of rr) if (!roots.has(`${x.s}\u0000${x.t}`)) roots.set(`${x.s}\u0000${x.t}`, 0);
  return { leafOf, roots };
}
