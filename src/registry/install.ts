/**
 * The registry's part of `init --url` and `uninstall`: the daemon role's grants (remembered, so
 * uninstall revokes exactly what init granted), the settings row, and the reload markers' comments.
 */
import type { Db } from '../db/tx.js';
import { withTransaction } from '../db/tx.js';
import { qualifiedName, quoteIdent } from '../ident.js';

/** What `run` needs in the registry: read and write its tables, use its sequences and functions. */
export async function grantRegistry(
  db: Db,
  role: string,
  publication: string,
  published: { schema: string; table: string }[],
): Promise<void> {
  const r = quoteIdent(role);
  // Exports read the published tables with COPY: SELECT on those there are, and (through
  // reconcile_publication) on each table that joins later.
  await db.query(`UPDATE "cdc_registry"."settings" SET "reader_role" = $2 WHERE "publication" = $1`, [publication, role]);
  for (const t of published) {
    const rel = qualifiedName(t.schema, t.table);
    await db.query(`GRANT SELECT ON ${rel} TO ${r}`);
    // Remembered, so that uninstall revokes it even after the table left the selection.
    await db.query(`INSERT INTO "cdc_registry"."granted_select" (relid, role_name) VALUES ($1::regclass, $2) ON CONFLICT DO NOTHING`, [rel, role]);
  }
  await db.query(`GRANT USAGE ON SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "cdc_registry" TO ${r}`);
}

/** Whether the registry schema exists. */
export async function hasRegistry(db: Db): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'cdc_registry'`)).rowCount === 1;
}

/** Removes this publication's settings row; returns how many other publications still have one. */
export async function forgetPublication(db: Db, publication: string): Promise<number> {
  await db.query(`DELETE FROM "cdc_registry"."settings" WHERE "publication" = $1`, [publication]);
  return Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM "cdc_registry"."settings"`)).rows[0].n);
}

const SETTINGS_HAS_READER = `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('cdc_registry.settings') AND attname = 'reader_role' AND NOT attisdropped`;

/**
 * Revokes SELECT from the daemon's role (settings.reader_role: set only by `init --url`, which
 * granted it) on every table pg-egress granted it on: those `init --url` recorded, the
 * publication's tables (the publication function grants on each that joins), and the tables this
 * slot ever streamed or exported (a table that left the selection keeps its grant otherwise).
 * A table the role owns is left alone (that is ownership, not a grant).
 */
export async function revokeGrants(db: Db, publication: string, slot: string): Promise<{ role: string; tables: number } | null> {
  if (!(await db.query(SETTINGS_HAS_READER)).rowCount) return null;
  const { rows: s } = await db.query<{ role: string | null }>(`SELECT reader_role AS role FROM "cdc_registry"."settings" WHERE publication = $1`, [publication]);
  const role = s[0]?.role;
  if (!role || !(await db.query(`SELECT 1 FROM pg_roles WHERE rolname = $1`, [role])).rowCount) return null;
  const granted = (await db.query<{ ok: string }>(`SELECT (to_regclass('cdc_registry.granted_select') IS NOT NULL)::text AS ok`)).rows[0].ok === 'true';
  const { rows } = await db.query<{ rel: string }>(
    `WITH candidates AS (
       SELECT pr.prrelid AS oid FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1
       UNION SELECT c.oid FROM "cdc_registry"."tables" t JOIN pg_namespace n ON n.nspname = t.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name WHERE t.slot_name = $2
       UNION SELECT c.oid FROM "cdc_registry"."reloads" r JOIN pg_namespace n ON n.nspname = r.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name WHERE r.slot_name = $2
       ${granted ? `UNION SELECT g.relid FROM "cdc_registry"."granted_select" g WHERE g.role_name = $3` : ''})
     SELECT c.oid::regclass::text AS rel FROM candidates x JOIN pg_class c ON c.oid = x.oid
     WHERE c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) <> $3
       AND has_table_privilege($3, c.oid, 'SELECT')
     ORDER BY 1`,
    [publication, slot, role],
  );
  for (const r of rows) await db.query(`REVOKE SELECT ON ${r.rel} FROM ${quoteIdent(role)}`);
  await db.query(`UPDATE "cdc_registry"."settings" SET reader_role = NULL WHERE publication = $1`, [publication]);
  if (granted) await db.query(`DELETE FROM "cdc_registry"."granted_select" WHERE role_name = $1`, [role]);
  return rows.length ? { role, tables: rows.length } : null;
}

/**
 * Puts back the comment of every table whose comment is still a reload marker: the comment it
 * had before (cdc_registry.comments), or none. `pg_egress.restoring` keeps a remaining event
 * trigger (another publication's) from taking this for DDL.
 */
export async function clearMarkers(db: Db, registryExists: boolean): Promise<number> {
  return withTransaction(db, async (c) => {
    await c.query(`SELECT set_config('pg_egress.restoring', 'on', true)`);
    const { rows } = await c.query<{ stmt: string }>(
      `SELECT format('COMMENT ON TABLE %s IS %L', c.oid::regclass,
                     ${registryExists ? `(SELECT m.comment FROM "cdc_registry"."comments" m WHERE m.relid = c.oid)` : 'NULL::text'}) AS stmt
       FROM pg_class c WHERE c.relkind IN ('r', 'p') AND obj_description(c.oid, 'pg_class') = 'pg-egress:reload'`,
    );
    for (const r of rows) await c.query(r.stmt);
    return rows.length;
  });
}
