/**
 * Every query against `cdc_registry` lives here. Identifiers are always quoted; values always go
 * as parameters. LSNs cross the boundary as PostgreSQL text (`X/Y`) and are bigint inside.
 */
import type pg from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../lsn.js';

export type FileType = 'streaming' | 'full_reload' | 'schema' | 'ddl' | 'manifest' | 'batch';

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
  tables: { schema: string; table: string; relid: number | null; dropped: boolean }[];
}

export interface TablePatternSql {
  schema: string;
  table: string;
}

const lsnText = (l: Lsn | null): string | null => (l === null ? null : formatLsn(l));

export class Registry {
  constructor(
    readonly client: pg.Client,
    readonly slot: string,
  ) {}

  /** The slot's registered LSN; creates its row (at 0/0) on first use. */
  async ensureSlotState(publication: string): Promise<Lsn> {
    await this.client.query(
      `INSERT INTO "cdc_registry"."slot_state" ("slot_name", "publication") VALUES ($1, $2)
       ON CONFLICT ("slot_name") DO NOTHING`,
      [this.slot, publication],
    );
    return this.registeredLsn();
  }

  async registeredLsn(): Promise<Lsn> {
    const { rows } = await this.client.query<{ lsn: string }>(
      `SELECT "registered_lsn"::text AS lsn FROM "cdc_registry"."slot_state" WHERE "slot_name" = $1`,
      [this.slot],
    );
    return rows.length ? parseLsn(rows[0].lsn) : 0n;
  }

  async saveSettings(publication: string, include: TablePatternSql[], exclude: TablePatternSql[]): Promise<void> {
    await this.client.query(
      `INSERT INTO "cdc_registry"."settings" ("publication", "include", "exclude", "updated_at")
       VALUES ($1, $2, $3, now())
       ON CONFLICT ("publication") DO UPDATE SET "include" = $2, "exclude" = $3, "updated_at" = now()`,
      [publication, JSON.stringify(include), JSON.stringify(exclude)],
    );
  }

  async registeredPaths(): Promise<Set<string>> {
    const { rows } = await this.client.query<{ path: string }>(
      `SELECT "path" FROM "cdc_registry"."files" WHERE "slot_name" = $1`,
      [this.slot],
    );
    return new Set(rows.map((r) => r.path));
  }

  /** How many flushes of this window are registered: the next flush's `-NNN` sequence number. */
  async flushCount(windowName: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM "cdc_registry"."batches"
       WHERE "slot_name" = $1 AND ("batch_id" = $2 OR "batch_id" LIKE $2 || '-%')`,
      [this.slot, windowName],
    );
    return Number(rows[0].n);
  }

  /**
   * Registers a flush: its files, its batch, the tables' last window and the new slot LSN, in one
   * transaction (SPEC §6). Only after this commits may the slot be confirmed up to `lsnEnd`.
   */
  async registerFlush(f: FlushRecord): Promise<void> {
    const c = this.client;
    const windowStart = new Date(f.windowStartMs).toISOString();
    await c.query('BEGIN');
    try {
      if (f.files.length > 0) {
        // One multi-row insert through unnest keeps this a single round trip for many files.
        await c.query(
          `INSERT INTO "cdc_registry"."files"
             ("slot_name", "path", "file_type", "schema_name", "table_name", "batch_id", "window_start",
              "lsn_start", "lsn_end", "rows", "bytes", "raw_bytes", "sha256", "merkle_root")
           SELECT $1, p, t, s, tb, $2, $3, ls::pg_lsn, le::pg_lsn, r, b, rb, h, m
           FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                       $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[])
                AS x(p, t, s, tb, ls, le, r, b, rb, h, m)`,
          [
            this.slot,
            f.batchId,
            windowStart,
            f.files.map((x) => x.path),
            f.files.map((x) => x.type),
            f.files.map((x) => x.schema),
            f.files.map((x) => x.table),
            f.files.map((x) => lsnText(x.lsnStart)),
            f.files.map((x) => lsnText(x.lsnEnd)),
            f.files.map((x) => x.rows),
            f.files.map((x) => x.bytes),
            f.files.map((x) => x.rawBytes),
            f.files.map((x) => x.sha256),
            f.files.map((x) => x.merkleRoot),
          ],
        );
      }
      await c.query(
        `INSERT INTO "cdc_registry"."batches"
           ("slot_name", "batch_id", "window_start", "lsn_start", "lsn_end", "files", "rows", "index_path", "index_sha256", "merkle_root")
         VALUES ($1, $2, $3, $4::pg_lsn, $5::pg_lsn, $6, $7, $8, $9, $10)`,
        [this.slot, f.batchId, windowStart, lsnText(f.lsnStart), formatLsn(f.lsnEnd), f.files.length, f.rows, f.indexPath, f.indexSha256, f.merkleRoot],
      );
      for (const t of f.tables) {
        await c.query(
          `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid", "last_window", "dropped_at")
           VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
           ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE
             SET "relid" = COALESCE(EXCLUDED."relid", "tables"."relid"), "last_window" = EXCLUDED."last_window",
                 "dropped_at" = EXCLUDED."dropped_at", "updated_at" = now()`,
          [this.slot, t.schema, t.table, t.relid, f.batchId, t.dropped],
        );
      }
      const upd = await c.query(
        `UPDATE "cdc_registry"."slot_state" SET "registered_lsn" = $2::pg_lsn, "last_batch" = $3, "updated_at" = now()
         WHERE "slot_name" = $1 AND "registered_lsn" <= $2::pg_lsn`,
        [this.slot, formatLsn(f.lsnEnd), f.batchId],
      );
      if (upd.rowCount !== 1) throw new Error(`registry: slot ${this.slot} registered LSN is ahead of ${formatLsn(f.lsnEnd)}; is another pg-egress using this slot?`);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  /** Tables seen in the stream get a row (mode streaming) as soon as they are known. */
  async noteTable(schema: string, table: string, relid: number | null): Promise<void> {
    await this.client.query(
      `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid")
       VALUES ($1, $2, $3, $4)
       ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE SET "relid" = EXCLUDED."relid", "dropped_at" = NULL`,
      [this.slot, schema, table, relid],
    );
  }

  async tables(): Promise<{ schema: string; table: string; mode: string; lastWindow: string | null; dropped: boolean }[]> {
    const { rows } = await this.client.query<{ schema_name: string; table_name: string; mode: string; last_window: string | null; dropped: string }>(
      `SELECT "schema_name", "table_name", "mode", "last_window", ("dropped_at" IS NOT NULL)::text AS dropped
       FROM "cdc_registry"."tables" WHERE "slot_name" = $1 ORDER BY 1, 2`,
      [this.slot],
    );
    return rows.map((r) => ({ schema: r.schema_name, table: r.table_name, mode: r.mode, lastWindow: r.last_window, dropped: r.dropped === 'true' }));
  }

  async pendingAnchors(): Promise<number> {
    const { rows } = await this.client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM "cdc_registry"."anchor_queue" WHERE "slot_name" = $1 AND "state" <> 'done'`,
      [this.slot],
    );
    return Number(rows[0].n);
  }
}
