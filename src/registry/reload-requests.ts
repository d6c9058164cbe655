/**
 * Reload requests in the registry (SPEC §7, §8): a marker that a flush made durable, the initial
 * export, a table joining with data, a gap, an operator's `reload`, a value-changing DDL. One
 * pending request per table absorbs the next ones; the reloader claims and ends them
 * (src/registry/reloads.ts).
 */
import type pg from 'pg';
import { mergedGapIds } from './gap-resolve.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { Db } from '../db/tx.js';

export type ReloadReason = 'marker' | 'initial' | 'joined' | 'gap' | 'operator' | 'ddl';

export interface ReloadRequest {
  schema: string;
  table: string;
  relid: number | null;
  reason: ReloadReason;
  /** Commit LSN of the marker's transaction (the export's snapshot is taken after it). */
  requestedLsn: Lsn | null;
  /** Put the table's comment back afterwards (markers); null means no comment. */
  restoreComment: boolean;
  previousComment: string | null;
  requestId: string | null;
  gapId: number | null;
}

/** The request already pending for the table (inserted as `x`) absorbs the new one. */
const ABSORBED_BY_PENDING = `ON CONFLICT ("slot_name", "schema_name", "table_name") WHERE "state" = 'pending' DO UPDATE
       SET "request_ids" = ARRAY(SELECT DISTINCT unnest(x."request_ids" || EXCLUDED."request_ids")),
           "previous_comment" = CASE WHEN x."restore_comment" THEN x."previous_comment" ELSE EXCLUDED."previous_comment" END,
           "restore_comment" = x."restore_comment" OR EXCLUDED."restore_comment",
           "gap_id" = COALESCE(EXCLUDED."gap_id", x."gap_id"),
           "more_gap_ids" = ${mergedGapIds('x', 'EXCLUDED', 'COALESCE(EXCLUDED."gap_id", x."gap_id")')},
           "requested_lsn" = GREATEST(x."requested_lsn", EXCLUDED."requested_lsn"),
           "updated_at" = now()`;

/** Inserts a pending request; one that is already pending for the table absorbs it. */
export async function insertReloadRequest(c: pg.ClientBase | pg.Pool, slot: string, r: ReloadRequest): Promise<void> {
  await c.query(
    `INSERT INTO "cdc_registry"."reloads" AS x
       ("slot_name", "schema_name", "table_name", "relid", "reason", "requested_lsn", "restore_comment", "previous_comment", "request_ids", "gap_id")
     VALUES ($1, $2, $3, $4, $5, $6::pg_lsn, $7, $8, CASE WHEN $9::text IS NULL THEN '{}'::text[] ELSE ARRAY[$9::text] END, $10)
     ${ABSORBED_BY_PENDING}`,
    [
      slot, r.schema, r.table, r.relid, r.reason, r.requestedLsn === null ? null : formatLsn(r.requestedLsn),
      r.restoreComment, r.previousComment, r.requestId, r.gapId,
    ],
  );
  await c.query(
    `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid", "mode")
     VALUES ($1, $2, $3, $4, 'pending_reload')
     ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE SET "mode" = 'pending_reload', "updated_at" = now()
       WHERE "tables"."mode" = 'streaming'`,
    [slot, r.schema, r.table, r.relid],
  );
}

/**
 * insertReloadRequest for many requests in two statements (an initial export asks for every
 * table: 1,000 statements for 500 tables took ~0.45 s). One multi-row INSERT … ON CONFLICT may not
 * touch a row twice, so requests that name a table twice go one by one, in order, as before.
 */
export async function insertReloadRequests(c: pg.ClientBase, slot: string, rs: readonly ReloadRequest[]): Promise<void> {
  const keys = new Set(rs.map((r) => `${r.schema}\u0000${r.table}`));
  if (rs.length < 2 || keys.size !== rs.length) {
    for (const r of rs) await insertReloadRequest(c, slot, r);
    return;
  }
  await c.query(
    `INSERT INTO "cdc_registry"."reloads" AS x
       ("slot_name", "schema_name", "table_name", "relid", "reason", "requested_lsn", "restore_comment", "previous_comment", "request_ids", "gap_id")
     SELECT $1, s, tb, rel, why, lsn::pg_lsn, rc, pc, CASE WHEN rid IS NULL THEN '{}'::text[] ELSE ARRAY[rid] END, gap
     FROM unnest($2::text[], $3::text[], $4::oid[], $5::text[], $6::text[], $7::boolean[], $8::text[], $9::text[], $10::bigint[])
          AS u(s, tb, rel, why, lsn, rc, pc, rid, gap)
     ${ABSORBED_BY_PENDING}`,
    [
      slot,
      rs.map((r) => r.schema),
      rs.map((r) => r.table),
      rs.map((r) => r.relid),
      rs.map((r) => r.reason),
      rs.map((r) => (r.requestedLsn === null ? null : formatLsn(r.requestedLsn))),
      rs.map((r) => r.restoreComment),
      rs.map((r) => r.previousComment),
      rs.map((r) => r.requestId),
      rs.map((r) => r.gapId),
    ],
  );
  await c.query(
    `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid", "mode")
     SELECT $1, s, tb, rel, 'pending_reload' FROM unnest($2::text[], $3::text[], $4::oid[]) AS u(s, tb, rel)
     ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE SET "mode" = 'pending_reload', "updated_at" = now()
       WHERE "tables"."mode" = 'streaming'`,
    [slot, rs.map((r) => r.schema), rs.map((r) => r.table), rs.map((r) => r.relid)],
  );
}

/**
 * Asks for a reload of each table (sql/004 request_reload: a marker comment, so the operator need
 * not own the table), under a request id that `reload --wait` follows: one statement for all of
 * them (the markers are the same with one round trip as with one per table).
 */
export async function requestReload(db: Db, qualifiedTables: readonly string[], requestId: string): Promise<void> {
  await db.query(`SELECT "cdc_registry"."request_reload"(t::regclass, $2) FROM unnest($1::text[]) AS t`, [qualifiedTables, requestId]);
}

/** The operations of one request (as text), for `reload --wait`. */
export async function reloadsOfRequest<T extends object>(db: Db, slot: string, requestId: string): Promise<T[]> {
  const { rows } = await db.query<T & pg.QueryResultRow>(
    `SELECT schema_name, table_name, state, rows::text, raw_bytes::text, chunks::text, chunks_done::text, waiting_on, error
     FROM "cdc_registry"."reloads" WHERE slot_name = $1 AND $2 = ANY(request_ids) ORDER BY id`,
    [slot, requestId],
  );
  return rows;
}

