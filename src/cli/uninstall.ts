/**
 * `pg-egress uninstall`: a decommissioned pg-egress must leave nothing that can affect the
 * application: the event triggers (which run inside the application's DDL), the publication
 * (which makes UPDATE/DELETE on tables without a replica identity fail) and the slot (which holds
 * WAL). `--drop-registry` also drops cdc_registry. Files in output.dir are never touched.
 */
import { EVENT_TRIGGERS } from '../registry/migrate.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { createPool } from '../registry/tx.js';
import { describeHolder, lockHolder } from '../registry/lock.js';
import { sourceError } from '../source/connect.js';
import { adminSource } from './admin-source.js';

const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

export async function uninstall(cfg: Config, log: Logger, o: { adminUrl?: string; dropRegistry?: boolean }): Promise<string> {
  const source = adminSource(cfg.source, o.adminUrl);
  const pool = createPool(source, 1);
  const done: string[] = [];
  try {
    const holder = await lockHolder(pool, cfg.slot);
    if (holder) throw new EgressError('SLOT_IN_USE', `pg-egress is still running with slot "${cfg.slot}": ${describeHolder(holder)}; stop it before uninstall`);
    const { rows: slot } = await pool.query<{ active: string; pid: string | null }>(`SELECT active::text AS active, active_pid::text AS pid FROM pg_replication_slots WHERE slot_name = $1`, [cfg.slot]);
    if (slot.length && slot[0].active === 'true') throw new EgressError('SLOT_IN_USE', `replication slot "${cfg.slot}" is in use by server process ${slot[0].pid}; stop that consumer first`);
    if (slot.length) {
      await pool.query(`SELECT pg_drop_replication_slot($1)`, [cfg.slot]);
      done.push(`slot ${cfg.slot}`);
    }
    if ((await pool.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [cfg.publication])).rowCount) {
      await pool.query(`DROP PUBLICATION ${quoteIdent(cfg.publication)}`);
      done.push(`publication ${cfg.publication}`);
    }
    const hasRegistry = (await pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'cdc_registry'`)).rowCount === 1;
    let others = 0;
    if (hasRegistry && !o.dropRegistry) {
      // The event triggers act on every publication in settings; keep them while another pg-egress uses this database.
      await pool.query(`DELETE FROM "cdc_registry"."settings" WHERE "publication" = $1`, [cfg.publication]);
      others = Number((await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "cdc_registry"."settings"`)).rows[0].n);
    }
    if (others === 0) {
      const { rows: trig } = await pool.query<{ evtname: string }>(`SELECT evtname FROM pg_event_trigger WHERE evtname = ANY ($1)`, [EVENT_TRIGGERS.map((t) => t.name)]);
      for (const t of trig) {
        await pool.query(`DROP EVENT TRIGGER ${quoteIdent(t.evtname)}`);
        done.push(`event trigger ${t.evtname}`);
      }
    } else {
      log.warn({ publications: others }, 'event triggers kept: another publication in cdc_registry.settings still uses them');
    }
    if (hasRegistry && o.dropRegistry) {
      await pool.query(`DROP SCHEMA "cdc_registry" CASCADE`);
      done.push('schema cdc_registry');
    }
    return done.length ? `uninstalled: ${done.join(', ')}; files in output.dir were kept` : 'nothing to uninstall';
  } catch (e) {
    throw sourceError(e, source, 'uninstall');
  } finally {
    await pool.end().catch(() => undefined);
  }
}
