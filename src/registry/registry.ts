/**
 * The registry of one slot: slot state, settings, intents, gaps and tables (batches in
 * batches.ts; every other concern in a file of its own in this folder: no `cdc_registry` query
 * lives outside src/registry/). Identifiers are always quoted; values always go
 * as parameters. LSNs cross the boundary as PostgreSQL text (`X/Y`) and are bigint inside.
 */
import type pg from 'pg';
import type { ReloadRequest } from './reload-requests.js';
import { registerBatchIn, registerFlushIn, type BatchRecord, type FlushRecord } from './batches.js';
import { enqueueAnchors } from './anchors.js';
import { formatLsn, parseLsn, type Lsn } from '../lsn.js';

export type { BatchRecord, FileRecord, FileType, FlushRecord } from './batches.js';
export { insertFiles } from './batches.js';
import { withTransaction, type Db } from '../db/tx.js';

export interface TablePatternSql {
  schema: string;
  table: string;
}

const lsnText = (l: Lsn | null): string | null => (l === null ? null : formatLsn(l));

export type GapKind = 'slot_lost' | 'unpublished' | 'publish_options' | 'slot_moved' | 'registry_behind' | 'files_lost' | 'ddl_capture';

export interface Gap {
  id: number;
  kind: GapKind;
  schema: string | null;
  table: string | null;
  lsnFrom: string | null;
  lsnTo: string | null;
  detail: string;
  detectedAt: string;
}

/**
 * The registry of one slot. Queries go through `db`, a pool: single statements take any idle
 * connection, multi-statement changes run in `withTransaction` on a connection of their own.
 */
export class Registry {
  /** output.dir's own write intents (src/commit/local-intents.ts), set by the daemon. */
  localIntents: { record(
    batchId: string,
    paths: string[],
    reloads: ReloadRequest[],
  ): Promise<void>; done(batchId: string): Promise<void> } | null = null;

  constructor(
    readonly db: Db,
    readonly slot: string,
  ) {}

  /** Whether this slot has ever been registered here (its row exists). */
  async hasSlotState(): Promise<boolean> {
    const { rowCount } = await this.db.query(`SELECT 1 FROM "cdc_registry"."slot_state" WHERE "slot_name" = $1`, [this.slot]);
    return rowCount === 1;
  }

  /** The slot's registered LSN; creates its row (at 0/0) on first use. */
  async ensureSlotState(publication: string): Promise<Lsn> {
    await this.db.query(
      `INSERT INTO "cdc_registry"."slot_state" ("slot_name", "publication") VALUES ($1, $2)
       ON CONFLICT ("slot_name") DO NOTHING`,
      [this.slot, publication],
    );
    return this.registeredLsn();
  }

  /**
   * A slot created for a registry row that has registered nothing yet starts at the slot's
   * consistent point: nothing before it can ever be streamed (the initial export covers it), so
   * that is what is registered (and what `status` shows), not 0/0. Returns the registered LSN.
   */
  async startAt(lsn: Lsn): Promise<Lsn> {
    await this.db.query(`UPDATE "cdc_registry"."slot_state" SET "registered_lsn" = $2::pg_lsn, "updated_at" = now() WHERE "slot_name" = $1 AND "registered_lsn" = '0/0'::pg_lsn`, [
      this.slot,
      formatLsn(lsn),
    ]);
    return this.registeredLsn();
  }

  async registeredLsn(): Promise<Lsn> {
    const { rows } = await this.db.query<{ lsn: string }>(
      `SELECT "registered_lsn"::text AS lsn FROM "cdc_registry"."slot_state" WHERE "slot_name" = $1`,
      [this.slot],
    );
    return rows.length ? parseLsn(rows[0].lsn) : 0n;
  }

  async saveSettings(publication: string, include: TablePatternSql[], exclude: TablePatternSql[], noIdentity: 'skip' | 'full'): Promise<void> {
    await this.db.query(
      `INSERT INTO "cdc_registry"."settings" ("publication", "include", "exclude", "no_identity", "updated_at")
       VALUES ($1, $2, $3, $4, now())
       ON CONFLICT ("publication") DO UPDATE SET "include" = $2, "exclude" = $3, "no_identity" = $4, "updated_at" = now()`,
      [publication, JSON.stringify(include), JSON.stringify(exclude), noIdentity],
    );
  }

  async registeredPaths(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ path: string }>(
      `SELECT "path" FROM "cdc_registry"."files" WHERE "slot_name" = $1`,
      [this.slot],
    );
    return new Set(rows.map((r) => r.path));
  }

  /** The last registered batch: the predecessor of the next one in the hash chain. */
  async lastBatch(): Promise<{ batchId: string; sha256: string } | null> {
    const { rows } = await this.db.query<{ batch_id: string; index_sha256: string }>(
      `SELECT "batch_id", "index_sha256" FROM "cdc_registry"."batches" WHERE "slot_name" = $1 ORDER BY "chain_seq" DESC LIMIT 1`,
      [this.slot],
    );
    return rows.length ? { batchId: rows[0].batch_id, sha256: rows[0].index_sha256 } : null;
  }

  /** The next batch number of a window (0 = the window's own name), shared by flushes and reloads. */
  async nextBatchSeq(windowName: string): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(`SELECT "cdc_registry"."next_batch_seq"($1, $2)::text AS n`, [this.slot, windowName]);
    return Number(rows[0].n);
  }

  /**
   * Registers a flush: its files, its batch, the tables' last window and the new slot LSN, in one
   * transaction (SPEC §6). Only after this commits may the slot be confirmed up to `lsnEnd`.
   * (A flush written by this process goes through src/commit/; this registers batches adopted from disk.)
   */
  async registerFlush(f: FlushRecord): Promise<void> {
    await this.registerBatch({ ...f, kind: 'flush' }, (c) => registerFlushIn(c, this.slot, f));
  }

  /**
   * Registers a batch (SPEC §6, §9): its files, its row in the chain, anchor queue entries, and
   * `extra` (what its kind changes: a flush's slot LSN, an export's reload operations), in one
   * transaction; then its write intents are done.
   */
  async registerBatch(b: BatchRecord, extra: (c: pg.ClientBase) => Promise<void>): Promise<void> {
    await withTransaction(this.db, async (c) => {
      await registerBatchIn(c, this.slot, b);
      await extra(c);
      await enqueueAnchors(c, this.slot, b.batchId, b.anchors);
      await c.query(`DELETE FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1 AND "batch_id" = $2`, [this.slot, b.batchId]);
    });
    await this.localIntents?.done(b.batchId);
  }

  /**
   * Records the paths a flush is about to place in output.dir, before the first is placed. The
   * start-up sweep removes exactly these when they did not get registered (and nothing else).
   */
  async recordIntent(batchId: string, paths: string[], reloads: ReloadRequest[] = []): Promise<void> {
    // The local copy first: it survives a failover to a standby that lacks this registry write.
    await this.localIntents?.record(batchId, paths, reloads);
    await this.db.query(
      `INSERT INTO "cdc_registry"."write_intents" ("slot_name", "batch_id", "paths") VALUES ($1, $2, $3)
       ON CONFLICT ("slot_name", "batch_id") DO UPDATE
         SET "paths" = ARRAY(SELECT DISTINCT unnest("write_intents"."paths" || EXCLUDED."paths"))`,
      [this.slot, batchId, paths],
    );
  }

  /** Paths of recorded intents that were never registered (left by a process that died). */
  async unfinishedPaths(): Promise<string[]> {
    const { rows } = await this.db.query<{ path: string }>(
      `SELECT DISTINCT p AS path FROM "cdc_registry"."write_intents" w, unnest(w."paths") AS p
       WHERE w."slot_name" = $1
         AND NOT EXISTS (SELECT 1 FROM "cdc_registry"."files" f WHERE f."slot_name" = $1 AND f."path" = p)`,
      [this.slot],
    );
    return rows.map((r) => r.path);
  }

  async clearIntents(): Promise<void> {
    await this.db.query(`DELETE FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1`, [this.slot]);
  }

  async registeredFileCount(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM "cdc_registry"."files" WHERE "slot_name" = $1`, [this.slot]);
    return Number(rows[0].n);
  }

  async recordGap(g: {
    kind: GapKind;
    schema?: string | null;
    table?: string | null;
    lsnFrom: Lsn | null;
    lsnTo: Lsn | null;
    detail: string;
  }): Promise<number> {
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO "cdc_registry"."gaps" ("slot_name", "kind", "schema_name", "table_name", "lsn_from", "lsn_to", "detail")
       VALUES ($1, $2, $3, $4, $5::pg_lsn, $6::pg_lsn, $7) RETURNING "id"::text`,
      [this.slot, g.kind, g.schema ?? null, g.table ?? null, lsnText(g.lsnFrom), lsnText(g.lsnTo), g.detail],
    );
    return Number(rows[0].id);
  }

  /** True the first time it is called for this slot: the initial export is to be requested now. */
  async takeInitialExport(): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE "cdc_registry"."slot_state" SET "initial_export_requested" = true WHERE "slot_name" = $1 AND NOT "initial_export_requested"`,
      [this.slot],
    );
    return rowCount === 1;
  }

  async openGaps(): Promise<Gap[]> {
    const { rows } = await this.db.query<{
      id: string;
      kind: GapKind;
      schema_name: string | null;
      table_name: string | null;
      lsn_from: string | null;
      lsn_to: string | null;
      detail: string;
      detected_at: string;
    }>(
      `SELECT "id"::text, "kind", "schema_name", "table_name", "lsn_from"::text, "lsn_to"::text, "detail",
              to_char("detected_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS detected_at
       FROM "cdc_registry"."gaps" WHERE "slot_name" = $1 AND "resolved_at" IS NULL ORDER BY "id"`,
      [this.slot],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      kind: r.kind,
      schema: r.schema_name,
      table: r.table_name,
      lsnFrom: r.lsn_from,
      lsnTo: r.lsn_to,
      detail: r.detail,
      detectedAt: r.detected_at,
    }));
  }

  /** An operator accepted the loss of the slot's changes (`init --recreate-slot`). */
  async resolveSlotGaps(resolution: string): Promise<number> {
    const { rowCount } = await this.db.query(
      `UPDATE "cdc_registry"."gaps" SET "resolved_at" = now(), "resolution" = $2 WHERE "slot_name" = $1 AND "kind" = 'slot_lost' AND "resolved_at" IS NULL`,
      [this.slot, resolution],
    );
    return rowCount ?? 0;
  }

  /** Tables this slot has seen in its publication (and that were not dropped since). */
  async knownPublished(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ schema_name: string; table_name: string }>(
      `SELECT "schema_name", "table_name" FROM "cdc_registry"."tables" WHERE "slot_name" = $1 AND "published" AND "dropped_at" IS NULL`,
      [this.slot],
    );
    return new Set(rows.map((r) => `${r.schema_name}.${r.table_name}`));
  }

  /** Marks exactly these tables as the ones in the publication now. */
  async setPublished(tables: { schema: string; table: string; relid: number }[]): Promise<void> {
    await withTransaction(this.db, async (c) => {
      await c.query(
        `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid", "published")
         SELECT $1, s, t, r, true FROM unnest($2::text[], $3::text[], $4::oid[]) AS x(s, t, r)
         ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE SET "relid" = EXCLUDED."relid", "published" = true, "dropped_at" = NULL`,
        [this.slot, tables.map((t) => t.schema), tables.map((t) => t.table), tables.map((t) => t.relid)],
      );
      await c.query(
        `UPDATE "cdc_registry"."tables" SET "published" = false
         WHERE "slot_name" = $1 AND "published"
           AND ("schema_name", "table_name") NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
        [this.slot, tables.map((t) => t.schema), tables.map((t) => t.table)],
      );
    });
  }

  /** Tables seen in the stream get a row (mode streaming) as soon as they are known. */
  async noteTable(schema: string, table: string, relid: number | null): Promise<void> {
    await this.db.query(
      `INSERT INTO "cdc_registry"."tables" ("slot_name", "schema_name", "table_name", "relid")
       VALUES ($1, $2, $3, $4)
       ON CONFLICT ("slot_name", "schema_name", "table_name") DO UPDATE SET "relid" = EXCLUDED."relid", "dropped_at" = NULL`,
      [this.slot, schema, table, relid],
    );
  }

  async tables(): Promise<{ schema: string; table: string; mode: string; lastWindow: string | null; dropped: boolean }[]> {
    const { rows } = await this.db.query<{
      schema_name: string;
      table_name: string;
      mode: string;
      last_window: string | null;
      dropped: string;
    }>(
      `SELECT "schema_name", "table_name", "mode", "last_window", ("dropped_at" IS NOT NULL)::text AS dropped
       FROM "cdc_registry"."tables" WHERE "slot_name" = $1 ORDER BY 1, 2`,
      [this.slot],
    );
    return rows.map((r) => ({ schema: r.schema_name, table: r.table_name, mode: r.mode, lastWindow: r.last_window, dropped: r.dropped === 'true' }));
  }

  async pendingAnchors(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM "cdc_registry"."anchor_queue" WHERE "slot_name" = $1 AND "state" NOT IN ('done', 'skipped')`,
      [this.slot],
    );
    return Number(rows[0].n);
  }
}
