/**
 * `pg-egress uninstall`: a decommissioned pg-egress must leave nothing that can affect the
 * application: the event triggers (which run inside the application's DDL), the publication
 * (which makes UPDATE/DELETE on tables without a replica identity fail), the slot (which holds
 * WAL), the SELECT grants it gave the daemon's role (settings.reader_role, set by `init --url`)
 * and reload markers left as table comments (a marker on a table that is not selected is never
 * consumed, so its comment would stay `pg-egress:reload`). `--drop-registry` also drops
 * cdc_registry. Files in output.dir are never touched.
 */
import { EVENT_TRIGGERS } from '../registry/migrate.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { createPool, type Db } from '../db/tx.js';
import { describeSource } from '../db/connect.js';
import { describeHolder, lockHolder } from '../registry/lock.js';
import { sourceError } from '../db/connect.js';
import { adminSource } from './admin-source.js';

import { quoteIdent } from '../ident.js';
import { clearMarkers, forgetPublication, hasRegistry, revokeGrants } from '../registry/install.js';

export async function uninstall(cfg: Config, log: Logger, o: { adminUrl?: string; dropRegistry?: boolean }): Promise<string> {
  const source = adminSource(cfg.source, o.adminUrl);
  const pool = createPool(source, 1);
  const done: string[] = [];
  try {
    const holder = await lockHolder(pool, cfg.slot);
    if (holder) throw new EgressError('SLOT_IN_USE', `pg-egress is still running with slot "${cfg.slot}": ${describeHolder(holder)}; stop it before uninstall`);
    const { rows: slot } = await pool.query<{ active: string; pid: string | null }>(`SELECT active::text AS active, active_pid::text AS pid FROM pg_replication_slots WHERE slot_name = $1`, [cfg.slot]);
    if (slot.length && slot[0].active === 'true') throw new EgressError('SLOT_IN_USE', `replication slot "${cfg.slot}" is in use by server process ${slot[0].pid}; stop that consumer first`);
    await mayUninstall(pool, cfg, !!o.adminUrl);
    if (slot.length) {
      await pool.query(`SELECT pg_drop_replication_slot($1)`, [cfg.slot]);
      done.push(`slot ${cfg.slot}`);
    }
    // Before the publication goes: its tables are among those the daemon's role was granted.
    const revoked = await revokeGrants(pool, cfg.publication, cfg.slot);
    if (revoked) done.push(`SELECT of ${revoked.role} on ${revoked.tables} table(s)`);
    if ((await pool.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [cfg.publication])).rowCount) {
      await pool.query(`DROP PUBLICATION ${quoteIdent(cfg.publication)}`);
      done.push(`publication ${cfg.publication}`);
    }
    const registryExists = await hasRegistry(pool);
    let others = 0;
    if (registryExists && !o.dropRegistry) {
      // The event triggers act on every publication in settings; keep them while another pg-egress uses this database.
      others = await forgetPublication(pool, cfg.publication);
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
    const markers = await clearMarkers(pool, registryExists);
    if (markers) done.push(`reload marker comment on ${markers} table(s)`);
    if (registryExists && o.dropRegistry) {
      await pool.query(`DROP SCHEMA "cdc_registry" CASCADE`);
      done.push('schema cdc_registry');
    }
    return done.length ? `uninstalled: ${done.join(', ')}; files in output.dir were kept` : 'nothing to uninstall';
  } catch (e) {
    // Without --url, the daemon's role may not own the triggers or the publication: the fix is
    // uninstall's own --url, not init's.
    if ((e as { code?: string }).code === '42501' && !o.adminUrl) {
      throw new EgressError(
        'INSUFFICIENT_PRIVILEGE',
        `permission denied on ${describeSource(source)}: ${(e as Error).message.split('\n')[0]}; run \`pg-egress uninstall --url <superuser url> --config ...\` (the event triggers and the publication belong to the role that ran init)`,
        { cause: e },
      );
    }
    throw sourceError(e, source, 'uninstall');
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/**
 * Refuses before anything is dropped when this role cannot drop everything (the event triggers
 * need a superuser, the publication its owner): a half-done uninstall would drop the slot and
 * leave the triggers running inside the application's DDL.
 */
async function mayUninstall(db: Db, cfg: Config, viaUrl: boolean): Promise<void> {
  // Booleans as text: the pool reads every value as text (src/db/connect.ts).
  const { rows } = await db.query<{ usr: string; superuser: string; triggers: string; pub_owner: string | null }>(
    `SELECT current_user AS usr, r.rolsuper::text AS superuser,
            EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname IN ('pg_egress_ddl_command_end', 'pg_egress_sql_drop'))::text AS triggers,
            (SELECT pg_has_role(current_user, p.pubowner, 'USAGE')::text FROM pg_publication p WHERE p.pubname = $1) AS pub_owner
     FROM pg_roles r WHERE r.rolname = current_user`,
    [cfg.publication],
  );
  const r = rows[0];
  const superuser = r.superuser === 'true';
  const missing = [...(r.triggers === 'true' && !superuser ? ['drop the event triggers (superuser)'] : []), ...(r.pub_owner === 'false' && !superuser ? [`drop publication ${cfg.publication} (its owner)`] : [])];
  if (!missing.length) return;
  const fix = viaUrl ? 'give --url a superuser' : 'run `pg-egress uninstall --url <superuser url> --config ...`';
  throw new EgressError('INSUFFICIENT_PRIVILEGE', `role "${r.usr}" may not ${missing.join(' or ')}; nothing was changed; ${fix} (README "Privileges")`);
}
