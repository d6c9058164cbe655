/**
 * Registry side of adopting batches from disk (src/commit/adopt.ts) and of the start-up slot
 * check (src/source/slot-check.ts): which batches and intents the registry knows, the window
 * sequence, the registration of an adopted reload batch, and the confirm-tracking flag.
 */
import type pg from 'pg';
import { resolveGapsOf } from './gap-resolve.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { enqueueAnchors, type AnchorTarget } from './anchors.js';
import { insertFiles, type FileRecord } from './registry.js';
import { insertReloadRequest } from './reload-requests.js';
import { withTransaction, type Db } from '../db/tx.js';

export class AdoptRegistry {
  constructor(
    readonly db: Db,
    readonly slot: string,
  ) {}

  async batchIds(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ batch_id: string }>(`SELECT "batch_id" FROM "cdc_registry"."batches" WHERE "slot_name" = $1`, [this.slot]);
    return new Set(rows.map((r) => r.batch_id));
  }

  /** Which of `ids` are registered batches of the slot (a query as small as `ids`, not the slot's history). */
  async registeredAmong(ids: readonly string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const { rows } = await this.db.query<{ batch_id: string }>(
      `SELECT "batch_id" FROM "cdc_registry"."batches" WHERE "slot_name" = $1 AND "batch_id" = ANY($2::text[])`,
      [this.slot, ids],
    );
    return new Set(rows.map((r) => r.batch_id));
  }

  async intentBatchIds(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ batch_id: string }>(`SELECT "batch_id" FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1`, [this.slot]);
    return new Set(rows.map((r) => r.batch_id));
  }

  /** The window's next batch number is past `seq`: an adopted name is never handed out again. */
  async reserveBatchSeq(windowName: string, seq: number): Promise<void> {
    await this.db.query(
      `INSERT INTO "cdc_registry"."window_seq" AS w ("slot_name", "window_name", "next_seq") VALUES ($1, $2, $3)
       ON CONFLICT ("slot_name", "window_name") DO UPDATE SET "next_seq" = GREATEST(w."next_seq", EXCLUDED."next_seq")`,
      [this.slot, windowName, seq + 1],
    );
  }

  /**
   * Registers an adopted reload batch and ends the table's reload operation that it is the export
   * of (the oldest pending or running one), as finalize would have: files, batch, operation done,
   * table mode, gap resolution and anchors in one transaction. Returns the comment to put back, if any.
   */
  async registerReloadBatch(b: {
    batchId: string;
    windowStart: string;
    lsn: Lsn;
    rows: number;
    indexPath: string;
    indexSha256: string;
    merkleRoot: string;
    prevBatchId: string | null;
    files: FileRecord[];
    schema: string;
    table: string;
    anchors: readonly AnchorTarget[];
  }): Promise<{ relid: number | null; restoreComment: boolean; previousComment: string | null }> {
    return withTransaction(this.db, async (c) => {
      await insertFiles(c, this.slot, b.batchId, b.windowStart, b.files);
      await c.query(
        `INSERT INTO "cdc_registry"."batches"
           ("slot_name", "batch_id", "window_start", "lsn_start", "lsn_end", "files", "rows", "index_path", "index_sha256", "merkle_root", "kind", "prev_batch_id")
         VALUES ($1, $2, $3, $4::pg_lsn, $4::pg_lsn, $5, $6, $7, $8, $9, 'reload', $10)`,
        [
          this.slot,
          b.batchId,
          b.windowStart,
          formatLsn(b.lsn),
          b.files.length,
          b.rows,
          b.indexPath,
          b.indexSha256,
          b.merkleRoot,
          b.prevBatchId,
        ],
      );
      const op = await endReloadOp(c, this.slot, b);
      await enqueueAnchors(c, this.slot, b.batchId, b.anchors);
      await c.query(`DELETE FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1 AND "batch_id" = $2`, [this.slot, b.batchId]);
      return op;
    });
  }

  async confirmTracking(): Promise<boolean> {
    const { rows } = await this.db.query<{ t: string }>(`SELECT "confirm_tracking"::text AS t FROM "cdc_registry"."slot_state" WHERE "slot_name" = $1`, [this.slot]);
    return rows[0]?.t === 'true';
  }

  /**
   * A slot found past what pg-egress registered or confirmed: the gap, the registered LSN moved to
   * the slot (everything before it is now in files or in this gap, so the next start does not find
   * it again), and a gap reload of every published table, in one transaction.
   */
  async recordSlotGap(g: { kind: 'slot_moved' | 'registry_behind'; from: Lsn; to: Lsn; detail: string; tables: { schema: string; table: string }[] }): Promise<number> {
    return withTransaction(this.db, async (c) => {
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO "cdc_registry"."gaps" ("slot_name", "kind", "lsn_from", "lsn_to", "detail") VALUES ($1, $2, $3::pg_lsn, $4::pg_lsn, $5) RETURNING "id"::text`,
        [this.slot, g.kind, formatLsn(g.from), formatLsn(g.to), g.detail],
      );
      const gapId = Number(rows[0].id);
      await c.query(
        `UPDATE "cdc_registry"."slot_state" SET "registered_lsn" = GREATEST("registered_lsn", $2::pg_lsn), "confirm_tracking" = true, "updated_at" = now() WHERE "slot_name" = $1`,
        [this.slot, formatLsn(g.to)],
      );
      for (const t of g.tables) {
        await insertReloadRequest(c, this.slot, { schema: t.schema, table: t.table, relid: null, reason: 'gap', requestedLsn: null, restoreComment: false, previousComment: null, requestId: null, gapId });
      }
      return gapId;
    });
  }

  async startConfirmTracking(): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."slot_state" SET "confirm_tracking" = true WHERE "slot_name" = $1`, [this.slot]);
  }
}

async function endReloadOp(
  c: pg.ClientBase,
  slot: string,
  b: { batchId: string; rows: number; schema: string; table: string; lsn: Lsn },
): Promise<{ relid: number | null; restoreComment: boolean; previousComment: string | null }> {
  const { rows } = await c.query<{
    id: string;
    gap_id: string | null;
    relid: string | null;
    restore_comment: boolean;
    previous_comment: string | null;
  }>(
    `UPDATE "cdc_registry"."reloads" SET "state" = 'done', "rows" = $4, "batch_id" = $5, "snapshot_lsn" = COALESCE("snapshot_lsn", $6::pg_lsn),
            "finished_at" = now(), "updated_at" = now()
     WHERE "id" = (SELECT "id" FROM "cdc_registry"."reloads" WHERE "slot_name" = $1 AND "schema_name" = $2 AND "table_name" = $3
                     AND "state" IN ('pending', 'running') ORDER BY "id" LIMIT 1)
     RETURNING "id"::text, "gap_id"::text, "relid"::text, "restore_comment", "previous_comment"`,
    [slot, b.schema, b.table, b.rows, b.batchId, formatLsn(b.lsn)],
  );
  await c.query(
    `UPDATE "cdc_registry"."tables" SET "mode" = CASE WHEN EXISTS (SELECT 1 FROM "cdc_registry"."reloads" p WHERE p."slot_name" = $1
                 AND p."schema_name" = $2 AND p."table_name" = $3 AND p."state" IN ('pending', 'running')) THEN 'pending_reload' ELSE 'streaming' END,
            "updated_at" = now()
     WHERE "slot_name" = $1 AND "schema_name" = $2 AND "table_name" = $3`,
    [slot, b.schema, b.table],
  );
  const op = rows[0];
  if (!op) return { relid: null, restoreComment: false, previousComment: null };
  if (op.gap_id !== null) await resolveGapsOf(c, op.id);
  return { relid: op.relid === null ? null : Number(op.relid), restoreComment: op.restore_comment, previousComment: op.previous_comment };
}
