/**
 * Gaps repaired by reloads (SPEC §9, README "Gaps"): a reload names the gaps it repairs in
 * `gap_id` and `more_gap_ids` (sql/013: requests for one table are merged, and each may come from
 * a different gap). A gap is resolved when the last reload that names it is registered.
 */
import type pg from 'pg';

/**
 * SQL for the merged gap list of two reload rows `a` (kept) and `b` (merged into it): every gap
 * either names, except the one `gap_id` keeps (`primary`).
 */
export const mergedGapIds = (a: string, b: string, primary: string): string =>
  `ARRAY(SELECT DISTINCT g FROM unnest(${a}."more_gap_ids" || ${b}."more_gap_ids" || ${a}."gap_id" || ${b}."gap_id") AS g
         WHERE g IS NOT NULL AND g IS DISTINCT FROM ${primary})`;

/**
 * Resolves the gaps of reload `opId` (being registered in this transaction) that no other pending
 * or running reload names. The gaps' row locks order concurrent registrations: the last one to
 * commit sees that no other is left (READ COMMITTED: the next statement sees the others).
 */
export async function resolveGapsOf(c: pg.ClientBase, opId: number | string): Promise<void> {
  const { rows } = await c.query<{ g: string }>(
    `SELECT g::text FROM "cdc_registry"."reloads" r, unnest(r."more_gap_ids" || r."gap_id") AS g WHERE r."id" = $1 AND g IS NOT NULL ORDER BY g`,
    [opId],
  );
  if (!rows.length) return;
  const ids = rows.map((r) => r.g);
  await c.query(`SELECT 1 FROM "cdc_registry"."gaps" WHERE "id" = ANY($1::bigint[]) ORDER BY "id" FOR UPDATE`, [ids]);
  await c.query(
    `UPDATE "cdc_registry"."gaps" gp SET "resolved_at" = now(), "resolution" = 'tables exported again (reloads done)'
     WHERE gp."id" = ANY($1::bigint[]) AND gp."resolved_at" IS NULL AND NOT EXISTS (
       SELECT 1 FROM "cdc_registry"."reloads" r
       WHERE (r."gap_id" = gp."id" OR gp."id" = ANY(r."more_gap_ids")) AND r."state" IN ('pending', 'running') AND r."id" <> $2)`,
    [ids, opId],
  );
}
