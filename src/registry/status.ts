/**
 * Registry reads for `status` and `/status`. Each works on a registry of any age: a table that a
 * later migration added is looked for first (to_regclass), so `status` runs before `init` too.
 */
import type { Db } from '../db/tx.js';

/** Which parts of the registry exist (nothing before `init`; gaps and reloads since their migrations). */
export async function registryPresence(db: Db): Promise<{ registry: boolean; gaps: boolean; reloads: boolean }> {
  const { rows } = await db.query<{ ns: string; gaps: string | null; seq: string | null }>(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdc_registry')::text AS ns,
            to_regclass('cdc_registry.gaps')::text AS gaps, to_regclass('cdc_registry.window_seq')::text AS seq`,
  );
  return { registry: rows[0].ns === 'true', gaps: rows[0].gaps !== null, reloads: rows[0].seq !== null };
}

/** The slot's registered LSN as PostgreSQL prints it, or null when the slot has no row. */
export async function registeredLsnText(db: Db, slot: string): Promise<string | null> {
  const { rows } = await db.query<{ l: string }>(`SELECT registered_lsn::text AS l FROM "cdc_registry"."slot_state" WHERE slot_name = $1`, [slot]);
  return rows[0]?.l ?? null;
}

/** Tables that tables.include selects, whether each has an identity and is in the publication. */
export async function selectedTablesPublished(
  db: Db,
  publication: string,
): Promise<{ schema: string; table: string; identity: boolean; published: boolean }[]> {
  const { rows } = await db.query<{ schema_name: string; table_name: string; identity: string; published: string }>(
    `SELECT t.schema_name, t.table_name, t.identity::text AS identity,
            EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                    WHERE p.pubname = $1 AND pr.prrelid = t.relid)::text AS published
     FROM "cdc_registry"."selected_tables"($1) t ORDER BY 1, 2`,
    [publication],
  );
  return rows.map((r) => ({ schema: r.schema_name, table: r.table_name, identity: r.identity === 'true', published: r.published === 'true' }));
}

/** Every reload operation that is not over, and the last ten that are, as rows of text. */
export async function recentReloads(db: Db, slot: string): Promise<Record<string, string | null>[]> {
  const { rows } = await db.query<Record<string, string | null>>(
    `(SELECT * FROM "cdc_registry"."reloads" WHERE slot_name = $1 AND state IN ('pending', 'running'))
     UNION ALL
     (SELECT * FROM "cdc_registry"."reloads" WHERE slot_name = $1 AND state NOT IN ('pending', 'running') ORDER BY id DESC LIMIT 10)
     ORDER BY id`,
    [slot],
  );
  return rows;
}
