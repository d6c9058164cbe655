/**
 * `pg-egress init`: registry, DDL capture, publication and slot, then exit. With `--url`, the
 * setup runs with those (superuser) credentials, and the daemon's role (source.user) is granted
 * what `run` needs in cdc_registry and SELECT on the published tables (exports read them), so
 * `run` can use a role with only LOGIN REPLICATION.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { createPool, type Db } from '../db/tx.js';
import { prepareSource } from '../source/prepare.js';
import { sourceError } from '../db/connect.js';
import { publishedTables } from '../source/publication.js';
import { adminSource } from './admin-source.js';

const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

/** What `run` needs in the registry: read and write its tables, use its sequences and functions. */
export async function grantRegistry(db: Db, role: string, publication: string): Promise<void> {
  const r = quoteIdent(role);
  // Exports read the published tables with COPY: SELECT on those there are, and (through
  // reconcile_publication) on each table that joins later.
  await db.query(`UPDATE "cdc_registry"."settings" SET "reader_role" = $2 WHERE "publication" = $1`, [publication, role]);
  for (const t of await publishedTables(db, publication)) {
    const rel = `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
    await db.query(`GRANT SELECT ON ${rel} TO ${r}`);
    // Remembered, so that uninstall revokes it even after the table left the selection.
    await db.query(`INSERT INTO "cdc_registry"."granted_select" (relid, role_name) VALUES ($1::regclass, $2) ON CONFLICT DO NOTHING`, [rel, role]);
  }
  await db.query(`GRANT USAGE ON SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "cdc_registry" TO ${r}`);
  await db.query(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "cdc_registry" TO ${r}`);
}

export async function initCommand(cfg: Config, log: Logger, o: { adminUrl?: string; recreateSlot?: boolean }): Promise<string> {
  const source = adminSource(cfg.source, o.adminUrl);
  const pool = createPool(source, 2);
  try {
    // With --url, errors must name --url's role and credentials, not source.*.
    const prep = await prepareSource(pool, { ...cfg, source }, log, { recreateSlot: o.recreateSlot });
    let granted = '';
    if (source.user !== cfg.source.user) {
      await grantRegistry(pool, cfg.source.user, cfg.publication).catch((e: unknown) => {
        throw sourceError(e, source, `grant the registry privileges to "${cfg.source.user}"`);
      });
      granted = `; registry privileges granted to ${cfg.source.user}`;
    }
    return `initialized: registry cdc_registry, publication ${cfg.publication}, slot ${cfg.slot}${prep.slotCreated ? ' (created)' : ''}${granted}`;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
