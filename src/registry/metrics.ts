/** Registry reads behind /metrics gauges, run at scrape time (src/http/metrics.ts). */
import type { Db } from '../db/tx.js';

const rowsOf = async <T extends Record<string, unknown>>(
  db: Db,
  sql: string,
  params: unknown[],
): Promise<T[]> => (await db.query<T>(sql, params)).rows;

/** Each table that is not dropped, and its mode. */
export const tableModes = (db: Db, slot: string) =>
  rowsOf<{ t: string; mode: string }>(db, `SELECT schema_name || '.' || table_name AS t, mode FROM cdc_registry.tables WHERE slot_name = $1 AND dropped_at IS NULL`, [slot]);

/** Rows of the last reload operation per table and state. */
export const reloadRows = (db: Db, slot: string) =>
  rowsOf<{ t: string; state: string; rows: string | null }>(
    db,
    `SELECT DISTINCT ON (schema_name, table_name, state) schema_name || '.' || table_name AS t, state, rows::text FROM cdc_registry.reloads
     WHERE slot_name = $1 ORDER BY schema_name, table_name, state, id DESC`,
    [slot],
  );

/** Anchor queue entries by target and state. */
export const anchorCounts = (db: Db, slot: string) =>
  rowsOf<{ target: string; state: string; n: string }>(db, `SELECT target, state, count(*)::text AS n FROM cdc_registry.anchor_queue WHERE slot_name = $1 GROUP BY 1, 2`, [slot]);

/** Age in seconds of the oldest pending anchor per target. */
export const anchorOldestPending = (db: Db, slot: string) =>
  rowsOf<{ target: string; age: string }>(
    db,
    `SELECT target, extract(epoch FROM now() - min(created_at))::text AS age FROM cdc_registry.anchor_queue
     WHERE slot_name = $1 AND state = 'pending' GROUP BY 1`,
    [slot],
  );

/** When each target last anchored a batch (Unix seconds). */
export const anchorLastSuccess = (db: Db, slot: string) =>
  rowsOf<{ target: string; t: string }>(
    db,
    `SELECT target, extract(epoch FROM max(updated_at))::text AS t FROM cdc_registry.anchor_queue WHERE slot_name = $1 AND state = 'done' GROUP BY 1`,
    [slot],
  );
