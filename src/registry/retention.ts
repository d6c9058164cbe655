/**
 * Registry side of local retention (issue 17, src/anchor/retention.ts): which data files may go
 * from output.dir, the record of their removal, and what output.dir should hold now (for the
 * start-up check, `status` and /metrics).
 *
 * A data file may go when its batch's S3 anchor is done (every file of the batch was uploaded and
 * read back with its sha256 equal, src/anchor/s3.ts), every other configured anchor target of the
 * batch is done too, and it was registered more than output.retain ago. Only data files
 * (streaming, full_reload) go: manifests, schema.yml, ddl.sql, partitions.yml and batch indexes
 * stay, so the batch chain and the manifests can be checked locally.
 */
import type { Db } from '../db/tx.js';
import type { AnchorTarget } from './anchors.js';

export interface RemovableFile {
  id: number;
  path: string;
  bytes: number;
}

export interface LocalSummary {
  /** Bytes of registered files still in output.dir (all kinds). */
  localBytes: number;
  /** Of those, data files (streaming, full_reload): what output.retain removes. */
  localDataBytes: number;
  localDataFiles: number;
  /** Bytes of data files removed locally (in S3 only). */
  removedBytes: number;
  removedFiles: number;
  /** The oldest window a local data file belongs to (ISO time), null when none is local. */
  oldestLocalWindow: string | null;
  /** Files of batches whose S3 upload is not done yet (pending or failed), and their bytes. */
  awaitingUploadFiles: number;
  awaitingUploadBytes: number;
}

const DATA = `"file_type" IN ('streaming', 'full_reload')`;

export class RetentionRegistry {
  constructor(
    readonly db: Db,
    readonly slot: string,
  ) {}

  /** Data files that may be removed now, oldest first (at most `limit`). */
  async removable(retainMs: number, targets: readonly AnchorTarget[], limit = 500): Promise<RemovableFile[]> {
    const { rows } = await this.db.query<{ id: string; path: string; bytes: string }>(
      `SELECT f."id"::text, f."path", f."bytes"::text FROM "cdc_registry"."files" f
       WHERE f."slot_name" = $1 AND f."local_removed_at" IS NULL AND f.${DATA}
         AND f."created_at" < now() - make_interval(secs => $2::float8 / 1000)
         AND EXISTS (SELECT 1 FROM "cdc_registry"."anchor_queue" s WHERE s."slot_name" = f."slot_name" AND s."batch_id" = f."batch_id"
                       AND s."target" = 's3' AND s."state" = 'done')
         AND NOT EXISTS (SELECT 1 FROM "cdc_registry"."anchor_queue" a WHERE a."slot_name" = f."slot_name" AND a."batch_id" = f."batch_id"
                           AND a."target" = ANY($3::text[]) AND a."state" <> 'done')
       ORDER BY f."created_at", f."id" LIMIT $4`,
      [this.slot, retainMs, targets, limit],
    );
    return rows.map((r) => ({ id: Number(r.id), path: r.path, bytes: Number(r.bytes) }));
  }

  /** Records that these files are no longer in output.dir (they are in S3). */
  async markRemoved(ids: readonly number[]): Promise<void> {
    if (!ids.length) return;
    await this.db.query(`UPDATE "cdc_registry"."files" SET "local_removed_at" = now() WHERE "slot_name" = $1 AND "id" = ANY($2::bigint[]) AND "local_removed_at" IS NULL`, [
      this.slot,
      ids,
    ]);
  }

  /** Registered paths that should be in output.dir (not removed by retention or recovered from S3 only). */
  async localPaths(): Promise<string[]> {
    const { rows } = await this.db.query<{ path: string }>(`SELECT "path" FROM "cdc_registry"."files" WHERE "slot_name" = $1 AND "local_removed_at" IS NULL ORDER BY "id"`, [this.slot]);
    return rows.map((r) => r.path);
  }

  /**
   * Of `paths` (missing from output.dir), those whose batch's S3 upload is done: they are in S3.
   * The rest had their only copy in output.dir.
   */
  async splitByUploaded(paths: readonly string[]): Promise<{
    uploaded: string[];
    notUploaded: { path: string; schema: string | null; table: string | null; batchId: string }[];
  }> {
    if (!paths.length) return { uploaded: [], notUploaded: [] };
    // As text: the registry's connections return every value as PostgreSQL prints it ('t'/'f' for a boolean).
    const { rows } = await this.db.query<{
      path: string;
      schema_name: string | null;
      table_name: string | null;
      batch_id: string;
      up: string;
    }>(
      `SELECT f."path", f."schema_name", f."table_name", f."batch_id",
              EXISTS (SELECT 1 FROM "cdc_registry"."anchor_queue" s WHERE s."slot_name" = f."slot_name" AND s."batch_id" = f."batch_id" AND s."target" = 's3' AND s."state" = 'done')::text AS up
       FROM "cdc_registry"."files" f WHERE f."slot_name" = $1 AND f."path" = ANY($2::text[])`,
      [this.slot, paths],
    );
    return {
      uploaded: rows.filter((r) => r.up === 'true').map((r) => r.path),
      notUploaded: rows.filter((r) => r.up !== 'true').map((r) => ({ path: r.path, schema: r.schema_name, table: r.table_name, batchId: r.batch_id })),
    };
  }

  /** Marks files as not in output.dir (lost with a volume, or recovered from S3 only). */
  async markNotLocal(paths: readonly string[]): Promise<void> {
    if (!paths.length) return;
    await this.db.query(`UPDATE "cdc_registry"."files" SET "local_removed_at" = now() WHERE "slot_name" = $1 AND "path" = ANY($2::text[]) AND "local_removed_at" IS NULL`, [
      this.slot,
      paths,
    ]);
  }

  async summary(): Promise<LocalSummary> {
    const { rows } = await this.db.query<Record<string, string | null>>(
      `SELECT coalesce(sum("bytes") FILTER (WHERE "local_removed_at" IS NULL), 0)::text AS local_bytes,
              coalesce(sum("bytes") FILTER (WHERE "local_removed_at" IS NULL AND ${DATA}), 0)::text AS local_data_bytes,
              count(*) FILTER (WHERE "local_removed_at" IS NULL AND ${DATA})::text AS local_data_files,
              coalesce(sum("bytes") FILTER (WHERE "local_removed_at" IS NOT NULL), 0)::text AS removed_bytes,
              count(*) FILTER (WHERE "local_removed_at" IS NOT NULL)::text AS removed_files,
              to_char(min("window_start") FILTER (WHERE "local_removed_at" IS NULL AND ${DATA}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS oldest
       FROM "cdc_registry"."files" WHERE "slot_name" = $1`,
      [this.slot],
    );
    const { rows: up } = await this.db.query<{ n: string; bytes: string }>(
      `SELECT count(*)::text AS n, coalesce(sum(f."bytes"), 0)::text AS bytes FROM "cdc_registry"."files" f
       JOIN "cdc_registry"."anchor_queue" s ON s."slot_name" = f."slot_name" AND s."batch_id" = f."batch_id" AND s."target" = 's3' AND s."state" IN ('pending', 'failed')
       WHERE f."slot_name" = $1`,
      [this.slot],
    );
    const r = rows[0];
    return {
      localBytes: Number(r.local_bytes),
      localDataBytes: Number(r.local_data_bytes),
      localDataFiles: Number(r.local_data_files),
      removedBytes: Number(r.removed_bytes),
      removedFiles: Number(r.removed_files),
      oldestLocalWindow: r.oldest,
      awaitingUploadFiles: Number(up[0].n),
      awaitingUploadBytes: Number(up[0].bytes),
    };
  }
}
