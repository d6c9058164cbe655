/** Registry counts the alert rules watch (deploy/prometheus/): open gaps and failed reloads. */
import type { Db } from '../db/tx.js';

export async function openGapCount(db: Db, slot: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM "cdc_registry"."gaps" WHERE "slot_name" = $1 AND "resolved_at" IS NULL`, [slot]);
  return Number(rows[0].n);
}

/** Tables whose last reload failed (no later one done or under way): each needs an operator. */
export async function failedReloadCount(db: Db, slot: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM (
       SELECT DISTINCT ON ("schema_name", "table_name") "state" FROM "cdc_registry"."reloads" WHERE "slot_name" = $1
       ORDER BY "schema_name", "table_name", "id" DESC) last
     WHERE last."state" = 'failed'`,
    [slot],
  );
  return Number(rows[0].n);
}
