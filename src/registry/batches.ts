/**
 * A batch's registration (SPEC §6, §9): its files and its row in the hash chain, and what a flush
 * adds (the tables' last window, the slot's registered LSN, the reload requests it passed). Run
 * inside one registry transaction by `Registry.registerBatch`.
 */
import type pg from 'pg';
import { EgressError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { AnchorTarget } from './anchors.js';
import { insertReloadRequest, type ReloadRequest } from './reload-requests.js';

export type FileType = 'streaming' | 'full_reload' | 'schema' | 'ddl' | 'manifest' | 'batch' | 'partitions';

export interface FileRecord {
  path: string; // relative to output.dir
  type: FileType;
  schema: string | null;
  table: string | null;
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
  rows: number | null;
  bytes: number;
  rawBytes: number | null;
  sha256: string;
  merkleRoot: string | null;
}

/** What every batch registers, whatever made it (src/commit/batch-commit.ts). */
export interface BatchRecord {
  batchId: string;
  kind: 'flush' | 'reload';
  windowStartMs: number;
  lsnStart: Lsn | null;
  lsnEnd: Lsn;
  rows: number;
  indexPath: string;
  indexSha256: string;
  merkleRoot: string | null;
  files: FileRecord[];
  /** The batch registered before this one (hash chain), null for the first. */
  prevBatchId: string | null;
  /** Anchor targets to queue for this batch, in the same transaction (SPEC §9). */
  anchors: readonly AnchorTarget[];
}

export interface FlushRecord {
  slot: string;
  batchId: string;
  windowStartMs: number;
  lsnStart: Lsn | null;
  lsnEnd: Lsn;
  rows: number;
  indexPath: string;
  indexSha256: string;
  merkleRoot: string | null;
  files: FileRecord[];
  /** The batch registered before this one (hash chain), null for the first. */
  prevBatchId: string | null;
  tables: { schema: string; table: string; relid: number | null; dropped: boolean }[];
  /** Reload markers passed by this flush: made durable with it, so a crash neither loses nor repeats them. */
  reloads: ReloadRequest[];
  /** Anchor targets to queue for this batch, in the same transaction (SPEC §9). */
  anchors: readonly AnchorTarget[];
}

const lsnText = (l: Lsn | null): string | null => (l === null ? null : formatLsn(l));

/** One multi-row insert through unnest: a single round trip for many files. */
export async function insertFiles(
  c: pg.ClientBase,
  slot: string,
  batchId: string,
  windowStart: string,
  files: FileRecord[],
): Promise<void> {
  if (files.length === 0) return;
  await c.query(
    `INSERT INTO "cdc_registry"."files"
       ("slot_name", "path", "file_type", "schema_name", "table_name", "batch_id", "window_start",
        "lsn_start", "lsn_end", "rows", "bytes", "raw_bytes", "sha256", "merkle_root")
     SELECT $1, p, t, s, tb, $2, $3, ls::pg_lsn, le::pg_lsn, r, b, rb, h, m
     FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                 $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[])
          AS x(p, t, s, tb, ls, le, r, b, rb, h, m)`,
    [
      slot,
      batchId,
      windowStart,
      files.map((x) => x.path),
      files.map((x) => x.type),
      files.map((x) => x.schema),
      files.map((x) => x.table),
      files.map((x) => lsnText(x.lsnStart)),
      files.map((x) => lsnText(x.lsnEnd)),
      files.map((x) => x.rows),
      files.map((x) => x.bytes),
      files.map((x) => x.rawBytes),
      files.map((x) => x.sha256),
      files.map((x) => x.merkleRoot),
    ],
  );
}

/** The batch's files and its row in the chain. */
export async function registerBatchIn(c: pg.ClientBase, slot: string, b: BatchRecord): Promise<void> {
  const windowStart = new Date(b.windowStartMs).toISOString();
  await insertFiles(c, slot, b.batchId, windowStart, b.files);
  await c.query(
    `INSERT INTO "cdc_registry"."batches"
       ("slot_name", "batch_id", "window_start", "lsn_start", "lsn_end", "files", "rows", "index_path", "index_sha256", "merkle_root", "kind", "prev_batch_id")
     VALUES ($1, $2, $3, $4::pg_lsn, $5::pg_lsn, $6, $7, $8, $9, $10, $11, $12)`,
    [
      slot,
      b.batchId,
      windowStart,
      lsnText(b.lsnStart),
      formatLsn(b.lsnEnd),
      b.files.length,
      b.rows,
      b.indexPath,
      b.indexSha256,
      b.merkleRoot,
      b.kind,
      b.prevBatchId,
    ],
  );
}

/** What a flush registers besides its batch: the tables' last window, the slot LSN, the reload requests. */
export async function registerFlushIn(c: pg.ClientBase, slot: string, f: Pick<FlushRecord, 'batchId' | 'lsnEnd' | 'tables' | 'reloads'>): Promise<void> {
  for (const t of f.tables) {
    await c.query(
      `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid", "last_window", "dropped_at")
       VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
       ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE
         SET "relid" = COALESCE(EXCLUDED."relid", "tables"."relid"), "last_window" = EXCLUDED."last_window",
             "dropped_at" = EXCLUDED."dropped_at", "updated_at" = now()`,
      [slot, t.schema, t.table, t.relid, f.batchId, t.dropped],
    );
  }
  const upd = await c.query(
    `UPDATE "cdc_registry"."slot_state" SET "registered_lsn" = $2::pg_lsn, "last_batch" = $3, "updated_at" = now()
     WHERE "slot_name" = $1 AND "registered_lsn" <= $2::pg_lsn`,
    [slot, formatLsn(f.lsnEnd), f.batchId],
  );
  if (upd.rowCount !== 1) {
    // Cannot happen while the daemon lock is held; if it does, stop before writing anything twice.
    throw new EgressError('SLOT_IN_USE', `registry: slot ${slot} is registered past ${formatLsn(f.lsnEnd)} by another process; run one pg-egress per slot`);
  }
  for (const r of f.reloads) await insertReloadRequest(c, slot, r);
}
