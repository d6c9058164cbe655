/**
 * Reload operations in the registry (SPEC §7, §8): requested (by a marker that a flush made
 * durable, by the initial export, by a table joining with data, by a gap), claimed by the
 * reloader, and finished in the same transaction that registers their files, so exactly one set
 * of files is registered per operation whatever crashes in between.
 */
import type pg from 'pg';
import { mergedGapIds, resolveGapsOf } from './gap-resolve.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { insertReloadRequest, insertReloadRequests, type ReloadReason, type ReloadRequest } from './reload-requests.js';
import { withTransaction, type Db } from '../db/tx.js';

/**
 * NOTIFY channel (payload: the slot) on which an operation's end is announced, at the commit
 * that makes it visible, so `reload --wait` returns at once instead of at its next poll.
 * https://www.postgresql.org/docs/current/sql-notify.html
 */
export const RELOAD_CHANNEL = 'pg_egress_reloads';

export interface ReloadOp {
  id: number;
  schema: string;
  table: string;
  reason: ReloadReason;
  restoreComment: boolean;
  previousComment: string | null;
  gapId: number | null;
}

interface OpRow {
  id: string;
  schema_name: string;
  table_name: string;
  reason: ReloadReason;
  restore_comment: string;
  previous_comment: string | null;
  gap_id: string | null;
}

const toOp = (r: OpRow): ReloadOp => ({
  id: Number(r.id),
  schema: r.schema_name,
  table: r.table_name,
  reason: r.reason,
  restoreComment: r.restore_comment === 'true',
  previousComment: r.previous_comment,
  gapId: r.gap_id === null ? null : Number(r.gap_id),
});

/** Runs `fn` again on a unique_violation: a request committed after its statement's snapshot. */
async function againOnUniqueViolation<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if ((e as { code?: string }).code !== '23505' || attempt >= 5) throw e;
    }
  }
}

export class ReloadRegistry {
  constructor(
    readonly db: Db,
    readonly slot: string,
  ) {}

  request(r: ReloadRequest): Promise<void> {
    return withTransaction(this.db, (c) => insertReloadRequest(c, this.slot, r));
  }

  /** Many requests in one transaction (an initial export asks for every table: one commit, not one each). */
  requestMany(rs: ReloadRequest[]): Promise<void> {
    return withTransaction(this.db, (c) => insertReloadRequests(c, this.slot, rs));
  }

  /** The pending request of a cancelled operation's table takes over what it owed (waiters, comment, gaps). */
  private async supersede(id: number | string): Promise<void> {
    await this.db.query(
      `UPDATE "cdc_registry"."reloads" p
       SET "request_ids" = ARRAY(SELECT DISTINCT unnest(p."request_ids" || r."request_ids")),
           "previous_comment" = CASE WHEN p."restore_comment" THEN p."previous_comment" ELSE r."previous_comment" END,
           "restore_comment" = p."restore_comment" OR r."restore_comment",
           "gap_id" = COALESCE(p."gap_id", r."gap_id"),
           "more_gap_ids" = ${mergedGapIds('p', 'r', 'COALESCE(p."gap_id", r."gap_id")')},
           "updated_at" = now()
       FROM "cdc_registry"."reloads" r
       WHERE r."id" = $1
         AND p."slot_name" = r."slot_name" AND p."schema_name" = r."schema_name" AND p."table_name" = r."table_name" AND p."state" = 'pending'`,
      [id],
    );
  }

  /** At start: operations a dead process was running are redone, or handed over as in `end`. */
  async resetRunning(): Promise<number> {
    return againOnUniqueViolation(async () => {
      const { rows } = await this.db.query<{ id: string; state: string }>(
        `UPDATE "cdc_registry"."reloads" r
         SET "state" = CASE WHEN EXISTS (SELECT 1 FROM "cdc_registry"."reloads" p WHERE p."slot_name" = r."slot_name"
                                          AND p."schema_name" = r."schema_name" AND p."table_name" = r."table_name" AND p."state" = 'pending')
                            THEN 'cancelled' ELSE 'pending' END,
             "error" = 'interrupted; redone', "waiting_on" = NULL, "chunks_done" = 0, "rows" = NULL, "raw_bytes" = 0, "updated_at" = now()
         WHERE "slot_name" = $1 AND "state" = 'running'
         RETURNING "id"::text, "state"`,
        [this.slot],
      );
      for (const r of rows) if (r.state === 'cancelled') await this.supersede(r.id);
      return rows.length;
    });
  }

  /** Takes every pending operation (one snapshot serves them all). */
  async claimPending(): Promise<ReloadOp[]> {
    const { rows } = await this.db.query<OpRow>(
      `UPDATE "cdc_registry"."reloads" SET "state" = 'running', "started_at" = now(), "attempts" = "attempts" + 1, "error" = NULL, "updated_at" = now()
       WHERE "id" IN (SELECT "id" FROM "cdc_registry"."reloads" WHERE "slot_name" = $1 AND "state" = 'pending' ORDER BY "id" FOR UPDATE SKIP LOCKED)
       RETURNING "id"::text, "schema_name", "table_name", "reason", "restore_comment"::text, "previous_comment", "gap_id"::text`,
      [this.slot],
    );
    return rows.map(toOp).sort((a, b) => a.id - b.id);
  }

  async setWaiting(ids: number[], waitingOn: string | null): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."reloads" SET "waiting_on" = $2, "updated_at" = now() WHERE "id" = ANY($1::bigint[])`, [ids, waitingOn]);
  }

  async started(
    ids: number[],
    snapshotLsn: Lsn,
    plan: Map<number, { chunks: number; tableBytes: number }>,
    workers: number,
  ): Promise<void> {
    await withTransaction(this.db, async (c) => {
      // One statement for all operations (500 UPDATEs took ~0.1 s for an initial export).
      await c.query(
        `UPDATE "cdc_registry"."reloads" r SET "snapshot_lsn" = $1::pg_lsn, "chunks" = x.chunks, "table_bytes" = x.bytes, "workers" = x.workers,
                "waiting_on" = NULL, "updated_at" = now()
         FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::int[]) AS x(id, chunks, bytes, workers)
         WHERE r."id" = x.id`,
        [
          formatLsn(snapshotLsn),
          ids,
          ids.map((id) => plan.get(id)?.chunks ?? null),
          ids.map((id) => plan.get(id)?.tableBytes ?? null),
          ids.map((id) => Math.min(workers, plan.get(id)?.chunks ?? 1)),
        ],
      );
      await c.query(
        `UPDATE "cdc_registry"."tables" t SET "mode" = 'reloading', "updated_at" = now()
         FROM "cdc_registry"."reloads" r WHERE r."id" = ANY($1::bigint[]) AND t."slot_name" = r."slot_name"
           AND t."schema_name" = r."schema_name" AND t."table_name" = r."table_name"`,
        [ids],
      );
    });
  }

  async progress(id: number, p: { rows: number; rawBytes: number; chunksDone: number }): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."reloads" SET "rows" = $2, "raw_bytes" = $3, "chunks_done" = $4, "updated_at" = now() WHERE "id" = $1 AND "state" = 'running'`, [
      id,
      p.rows,
      p.rawBytes,
      p.chunksDone,
    ]);
  }

  /** Progress of many operations in one statement (an export of many tables reports each). */
  async progressMany(items: { id: number; rows: number; rawBytes: number; chunksDone: number }[]): Promise<void> {
    if (!items.length) return;
    await this.db.query(
      `UPDATE "cdc_registry"."reloads" r SET "rows" = x.n, "raw_bytes" = x.raw, "chunks_done" = x.done, "updated_at" = now()
       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[]) AS x(id, n, raw, done)
       WHERE r."id" = x.id AND r."state" = 'running'`,
      [items.map((i) => i.id), items.map((i) => i.rows), items.map((i) => i.rawBytes), items.map((i) => i.chunksDone)],
    );
  }

  /**
   * Ends a running operation: failed, cancelled, or back to pending (to be redone) — or, while a
   * request for its table is pending (the stream adds them at any moment), cancelled and handed
   * over to it. A request committed after the UPDATE's snapshot is a unique_violation on the
   * one-pending-per-table index: done again, it sees it (left running, it would never end).
   */
  async end(id: number, state: 'failed' | 'cancelled' | 'pending', error: string): Promise<void> {
    await againOnUniqueViolation(() => this.endOnce(id, state, error));
    await this.db.query(`SELECT pg_notify($1, $2)`, [RELOAD_CHANNEL, this.slot]);
  }

  private async endOnce(id: number, state: 'failed' | 'cancelled' | 'pending', error: string): Promise<void> {
    const { rows } = await this.db.query<{ state: string }>(
      `UPDATE "cdc_registry"."reloads" r
       SET "state" = CASE WHEN $2 = 'pending' AND EXISTS (SELECT 1 FROM "cdc_registry"."reloads" p WHERE p."slot_name" = r."slot_name"
                            AND p."schema_name" = r."schema_name" AND p."table_name" = r."table_name" AND p."state" = 'pending')
                          THEN 'cancelled' ELSE $2 END,
           "error" = $3, "waiting_on" = NULL, "finished_at" = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END, "updated_at" = now()
       WHERE "id" = $1 AND "state" = 'running'
       RETURNING "state"`,
      [id, state, error],
    );
    // Handed over to the pending request: it carries this one's waiters, comment and gaps.
    if (state === 'pending' && rows[0]?.state === 'cancelled') await this.supersede(id);
    await this.db.query(
      `UPDATE "cdc_registry"."tables" t SET "mode" = CASE WHEN $2::text = 'pending' THEN 'pending_reload' ELSE 'streaming' END, "updated_at" = now()
       FROM "cdc_registry"."reloads" r WHERE r."id" = $1 AND t."slot_name" = r."slot_name" AND t."schema_name" = r."schema_name" AND t."table_name" = r."table_name"`,
      [id, state],
    );
  }

  /** A partitioned root's marker: its comment goes back like a reload's (restoreComment), later. */
  async markCommentPending(id: number, relid: number): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."reloads" SET "relid" = $2, "comment_pending" = "restore_comment" WHERE "id" = $1`, [id, relid]);
  }

  /** Done operations whose table still waits for its comment to be put back. */
  async pendingComments(): Promise<{ id: number; relid: number; table: string; previousComment: string | null }[]> {
    const { rows } = await this.db.query<
      { id: string; relid: string; schema_name: string; table_name: string; previous_comment: string | null }
    >(
      `SELECT "id"::text, "relid"::text, "schema_name", "table_name", "previous_comment" FROM "cdc_registry"."reloads"
       WHERE "slot_name" = $1 AND "comment_pending" AND "relid" IS NOT NULL ORDER BY "id"`,
      [this.slot],
    );
    return rows.map((r) => ({ id: Number(r.id), relid: Number(r.relid), table: `${r.schema_name}.${r.table_name}`, previousComment: r.previous_comment }));
  }

  /**
   * Puts a table's comment back (cdc_registry.restore_comment: unless someone changed it since)
   * and records that it is done, in one transaction whose statements wait at most `lockTimeoutMs`
   * for a lock (COMMENT takes a SHARE UPDATE EXCLUSIVE lock on the table, which queues behind an
   * application's DDL): a timeout is an error the caller retries later. A table that is gone owes
   * nothing.
   */
  async restoreComment(p: { id: number; relid: number; previousComment: string | null }, lockTimeoutMs: number): Promise<void> {
    await withTransaction(
      this.db,
      async (c) => {
        const { rows } = await c.query<{ ok: string }>(`SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1::oid)::text AS ok`, [p.relid]);
        if (rows[0].ok === 'true') await c.query(`SELECT "cdc_registry"."restore_comment"($1::oid, $2)`, [p.relid, p.previousComment]);
        await c.query(`UPDATE "cdc_registry"."reloads" SET "comment_pending" = false WHERE "id" = $1`, [p.id]);
      },
      { lockTimeoutMs, retries: 0 },
    );
  }

  /**
   * Inside the registering transaction: the operation is done, its table streams again, and a gap
   * whose every reload is done is resolved. Throws when the operation is no longer running.
   */
  async finishIn(
    c: pg.ClientBase,
    op: ReloadOp,
    r: { rows: number; rawBytes: number; batchId: string; chunks: number; workers: number; relid: number },
  ): Promise<void> {
    // A marker's table owes its comment back: put back after this commit (see pendingComments).
    const upd = await c.query(
      `UPDATE "cdc_registry"."reloads" SET "state" = 'done', "rows" = $2, "raw_bytes" = $3, "batch_id" = $4, "chunks_done" = $5, "workers" = $6,
              "finished_at" = now(), "updated_at" = now(), "relid" = $7, "comment_pending" = "restore_comment"
       WHERE "id" = $1 AND "state" = 'running'`,
      [op.id, r.rows, r.rawBytes, r.batchId, r.chunks, r.workers, r.relid],
    );
    if (upd.rowCount !== 1) throw new Error(`reload ${op.id} is no longer running`);
    await c.query(`SELECT pg_notify($1, $2)`, [RELOAD_CHANNEL, this.slot]);
    await c.query(
      `UPDATE "cdc_registry"."tables" SET "mode" = CASE WHEN EXISTS (SELECT 1 FROM "cdc_registry"."reloads" p WHERE p."slot_name" = $1
                   AND p."schema_name" = $2 AND p."table_name" = $3 AND p."state" = 'pending') THEN 'pending_reload' ELSE 'streaming' END,
              "updated_at" = now()
       WHERE "slot_name" = $1 AND "schema_name" = $2 AND "table_name" = $3`,
      [this.slot, op.schema, op.table],
    );
    // The gaps it repairs, when no other reload still owes them (src/registry/gap-resolve.ts).
    if (op.gapId !== null) await resolveGapsOf(c, op.id);
  }

  /**
   * finishIn for the operations of one batch, in three statements for all of those without a gap
   * (an initial export registers hundreds of tables at once); those with a gap go one by one.
   */
  async finishManyIn(
    c: pg.ClientBase,
    batchId: string,
    items: { op: ReloadOp; rows: number; rawBytes: number; chunks: number; workers: number; relid: number }[],
  ): Promise<void> {
    const plain = items.filter((i) => i.op.gapId === null);
    if (plain.length) {
      const upd = await c.query(
        // A marker's table owes its comment back: put back after this commit (see pendingComments).
        `UPDATE "cdc_registry"."reloads" r SET "state" = 'done', "rows" = x.n, "raw_bytes" = x.raw, "batch_id" = $1, "chunks_done" = x.chunks, "workers" = x.workers,
                "finished_at" = now(), "updated_at" = now(), "relid" = x.relid, "comment_pending" = r."restore_comment"
         FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::int[], $6::int[], $7::oid[]) AS x(id, n, raw, chunks, workers, relid)
         WHERE r."id" = x.id AND r."state" = 'running'`,
        [
          batchId, plain.map((i) => i.op.id), plain.map((i) => i.rows), plain.map((i) => i.rawBytes),
          plain.map((i) => i.chunks), plain.map((i) => i.workers), plain.map((i) => i.relid),
        ],
      );
      if (upd.rowCount !== plain.length) throw new Error(`${plain.length - (upd.rowCount ?? 0)} reloads of batch ${batchId} are no longer running`);
      await c.query(`SELECT pg_notify($1, $2)`, [RELOAD_CHANNEL, this.slot]);
      await c.query(
        `UPDATE "cdc_registry"."tables" t SET "mode" = CASE WHEN EXISTS (SELECT 1 FROM "cdc_registry"."reloads" p WHERE p."slot_name" = $1
                     AND p."schema_name" = t."schema_name" AND p."table_name" = t."table_name" AND p."state" = 'pending') THEN 'pending_reload' ELSE 'streaming' END,
                "updated_at" = now()
         FROM unnest($2::text[], $3::text[]) AS x(s, tb)
         WHERE t."slot_name" = $1 AND t."schema_name" = x.s AND t."table_name" = x.tb`,
        [this.slot, plain.map((i) => i.op.schema), plain.map((i) => i.op.table)],
      );
    }
    for (const i of items) if (i.op.gapId !== null) await this.finishIn(
      c,
      i.op,
      { rows: i.rows, rawBytes: i.rawBytes, batchId, chunks: i.chunks, workers: i.workers, relid: i.relid },
    );
  }
}

/** A partitioned root's reload becomes one per leaf (sql/007 expand_root_reload); returns how many. */
export async function expandRootReload(db: Db, opId: number, publication: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT "cdc_registry"."expand_root_reload"($1, $2) AS n`, [opId, publication]);
  return Number(rows[0].n);
}

/** What a reload needs to know of each requested table (catalog rows only, no lock on it). */
export interface ReloadTableRow {
  schema: string;
  table: string;
  relid: string;
  kind: string;
  /** pg_class.relpages: the size as of the last VACUUM/ANALYZE, an estimate. */
  pages: string;
  published: string;
  root_schema: string | null;
  root_table: string | null;
}

/** Each requested table's oid, kind, estimated size, selected root and whether it is published. */
export async function inspectReloadTables(
  db: Db,
  tables: { schema: string; table: string }[],
  publication: string,
): Promise<ReloadTableRow[]> {
  const { rows } = await db.query<ReloadTableRow>(
    // Only a partition has a root other than itself (selected_root walks pg_partition_ancestors,
    // the table first): the CASE spares every other table the call of a function that cannot be
    // inlined (an export of 500 plain tables: 16 ms of the server's against 6 ms), and the LATERAL
    // calls it once for both the root's schema and its name.
    `SELECT n.nspname AS schema, c.relname AS table, c.oid::text AS relid, c.relkind::text AS kind, c.relpages::text AS pages,
            r.root_schema, r.root_table,
            EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                    WHERE p.pubname = $3 AND pr.prrelid = c.oid)::text AS published
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN unnest($1::text[], $2::text[]) AS x(s, t) ON x.s = n.nspname AND x.t = c.relname
     LEFT JOIN LATERAL (SELECT rn.nspname AS root_schema, rc.relname AS root_table
                          FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                         WHERE rc.oid = CASE WHEN c.relispartition THEN "cdc_registry"."selected_root"($3, c.oid) END AND rc.oid <> c.oid) r ON true
     WHERE c.relkind IN ('r', 'p')`,
    [tables.map((o) => o.schema), tables.map((o) => o.table), publication],
  );
  return rows;
}
