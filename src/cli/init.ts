/**
 * `pg-egress init`: registry, DDL capture, publication and slot, then exit. With `--url`, the
 * setup runs with those (superuser) credentials, and the daemon's role (source.user) is granted
 * what `run` needs in cdc_registry and SELECT on the published tables (exports read them), so
 * `run` can use a role with only LOGIN REPLICATION.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { createPool } from '../db/tx.js';
import { grantRegistry } from '../registry/install.js';
import { prepareSource } from '../source/prepare.js';
import { sourceError } from '../db/connect.js';
import { publishedTables } from '../source/publication.js';
import { adminSource } from './admin-source.js';

export async function initCommand(cfg: Config, log: Logger, o: { adminUrl?: string; recreateSlot?: boolean }): Promise<string> {
  const source = adminSource(cfg.source, o.adminUrl);
  const pool = createPool(source, 2);
  try {
    // With --url, errors must name --url's role and credentials, not source.*.
    const prep = await prepareSource(pool, { ...cfg, source }, log, { recreateSlot: o.recreateSlot });
    let granted = '';
    if (source.user !== cfg.source.user) {
      await grantRegistry(pool, cfg.source.user, cfg.publication, await publishedTables(pool, cfg.publication)).catch((e: unknown) => {
        throw sourceError(e, source, `grant the registry privileges to "${cfg.source.user}"`);
      });
      granted = `; registry privileges granted to ${cfg.source.user}`;
    }
    return `initialized: registry cdc_registry, publication ${cfg.publication}, slot ${cfg.slot}${prep.slotCreated ? ' (created)' : ''}${granted}`;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
