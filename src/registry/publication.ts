/**
 * The registry functions behind the publication and the table selection (sql/003, sql/008):
 * which tables tables.include selects, the publication reconciled with it, the shapes that
 * value-changing DDL is compared with, and the table comments a reload marker puts back.
 */
import type pg from 'pg';
import type { Db } from '../db/tx.js';

/** Selected tables that cannot be published: no primary key or replica identity. */
export async function selectedWithoutIdentity(db: Db, publication: string): Promise<{ schema: string; table: string }[]> {
  const { rows } = await db.query<{ schema_name: string; table_name: string }>(
    `SELECT schema_name, table_name FROM "cdc_registry"."selected_tables"($1) WHERE NOT identity ORDER BY 1, 2`,
    [publication],
  );
  return rows.map((r) => ({ schema: r.schema_name, table: r.table_name }));
}

/** Brings the publication in line with tables.include (sql/003): what it added, removed, repaired. */
export async function reconcilePublication(
  c: pg.ClientBase,
  publication: string,
): Promise<{ action: string; schema_name: string | null; table_name: string | null }[]> {
  const { rows } = await c.query<{ action: string; schema_name: string | null; table_name: string | null }>(
    `SELECT action, schema_name, table_name FROM "cdc_registry"."reconcile_publication"($1)`,
    [publication],
  );
  return rows;
}

/** Tables that joined without DDL get the shape that value-changing DDL is compared with (sql/008). */
export async function rememberShapes(db: Db): Promise<void> {
  await db.query(`SELECT "cdc_registry"."remember_shapes"()`);
}

/**
 * The selected tables' comments as they are now, so a reload marker's table gets its own comment
 * back. Only tables not remembered yet are looked at (every start after the first finds them all:
 * 500 tables, 8-10 against 14-46 ms of the server's, where each row was read twice and then
 * refused by ON CONFLICT, which stays for a concurrent insert).
 */
export async function rememberComments(db: Db, publication: string): Promise<void> {
  await db.query(
    `INSERT INTO "cdc_registry"."comments" ("relid", "comment")
     SELECT t.relid, d.comment FROM "cdc_registry"."selected_tables"($1) t
     CROSS JOIN LATERAL (SELECT obj_description(t.relid, 'pg_class') AS comment) d
     WHERE NOT EXISTS (SELECT 1 FROM "cdc_registry"."comments" k WHERE k.relid = t.relid)
       AND d.comment IS DISTINCT FROM 'pg-egress:reload'
     ON CONFLICT ("relid") DO NOTHING`,
    [publication],
  );
}

/** Puts a table's comment back (sql/004 restore_comment: without taking it for DDL). */
export async function restoreComment(db: Db, relid: number, comment: string | null): Promise<void> {
  await db.query(`SELECT "cdc_registry"."restore_comment"($1::oid, $2)`, [relid, comment]);
}

/** Current catalog definitions of tables as JSON text (sql/019 table_definitions), in the order asked; none for a table that is gone. */
export async function tableDefinitionsJson(db: Db, relids: number[]): Promise<string[]> {
  const { rows } = await db.query<{ def: string }>(`SELECT "def"::text AS def FROM "cdc_registry"."table_definitions"($1::oid[]) ORDER BY "ord"`, [relids]);
  return rows.map((r) => r.def);
}

/**
 * An export's plan in one round trip (src/reload/plan-locked.ts): the tables' definitions as
 * tableDefinitionsJson gives them, each with its size in bytes, the server's block size and its
 * shared_buffers in blocks (pg_settings gives it in those units; 0 if no table was found).
 */
export async function tableDefinitionsSized(
  db: Db,
  relids: number[],
): Promise<{ tables: { def: string; bytes: number }[]; blockSize: number; sharedBuffers: number }> {
  const { rows } = await db.query<{ def: string; bytes: string; bs: string; nb: string }>(
    `SELECT d."def"::text AS def, pg_relation_size(d."rel")::text AS bytes, current_setting('block_size') AS bs,
            (SELECT s."setting" FROM pg_catalog.pg_settings s WHERE s."name" = 'shared_buffers') AS nb
     FROM "cdc_registry"."table_definitions"($1::oid[]) d ORDER BY d."ord"`,
    [relids],
  );
  return {
    tables: rows.map((r) => ({ def: r.def, bytes: Number(r.bytes) })),
    blockSize: Number(rows[0]?.bs) || 0,
    sharedBuffers: Number(rows[0]?.nb) || 0,
  };
}
