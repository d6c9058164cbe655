/**
 * Applies the numbered migrations in `sql/` (NNN_name.sql) to the `cdc_registry` schema.
 * Idempotent, and safe when two processes start at once: everything runs in one transaction that
 * first takes a transaction-scoped advisory lock, so the second process waits, then sees the
 * versions the first one recorded and applies nothing.
 * https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withTransaction, type Db } from '../db/tx.js';

/** `sql/` relative to this module, from both src/ (tests) and dist/ (installed). */
export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

/** Arbitrary but fixed: the advisory lock key for registry migrations ("pgegress" in ASCII). */
const MIGRATION_LOCK_KEY = '8101632419413796211';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The migrations in `dir`; each file is read when its `sql` is (a current registry reads none). */
export function loadMigrations(dir = SQL_DIR): Migration[] {
  return readdirSync(dir)
    .map((file) => /^(\d{3})_(.+)\.sql$/.exec(file))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({
      version: Number(m[1]),
      name: m[2],
      get sql() {
        return readFileSync(dir + m[0], 'utf8');
      },
    }))
    .sort((a, b) => a.version - b.version);
}

/** Returns the versions applied by this call (empty when the registry was already current). */
export async function migrate(db: Db, migrations = loadMigrations()): Promise<number[]> {
  // Fast path without any DDL: a current registry needs no CREATE privilege, so `run` works with
  // a role that was only granted the registry's tables (`init --url`).
  const { rows: have } = await db.query<{ ok: string }>(`SELECT (to_regclass('cdc_registry.migrations') IS NOT NULL)::text AS ok`);
  if (have[0].ok === 'true') {
    const { rows } = await db.query<{ version: string }>('SELECT version FROM "cdc_registry"."migrations"');
    const done = new Set(rows.map((r) => Number(r.version)));
    if (migrations.every((m) => done.has(m.version))) return [];
  }
  let applied: number[] = [];
  await withTransaction(db, async (client) => {
    applied = [];
    // Another process migrating holds the lock for as long as its migrations take: poll for it
    // rather than wait inside the server, so that no wait of ours is without a bound (tx.ts).
    while ((await client.query<{ ok: string }>(`SELECT pg_try_advisory_xact_lock(${MIGRATION_LOCK_KEY})::text AS ok`)).rows[0].ok !== 'true') {
      await new Promise((r) => setTimeout(r, 250));
    }
    await client.query('CREATE SCHEMA IF NOT EXISTS "cdc_registry"');
    await client.query(`CREATE TABLE IF NOT EXISTS "cdc_registry"."migrations" (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: string }>('SELECT version FROM "cdc_registry"."migrations"');
    const done = new Set(rows.map((r) => Number(r.version)));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO "cdc_registry"."migrations" (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
  });
  return applied;
}

/** pg-egress's event triggers (sql/002, sql/008); triggers of one event fire in name order. */
export const EVENT_TRIGGERS = [
  { name: 'pg_egress_ddl_command_end', event: 'ddl_command_end', fn: 'on_ddl_command_end' },
  { name: 'pg_egress_sql_drop', event: 'sql_drop', fn: 'on_sql_drop' },
  { name: 'pg_egress_values_ddl_end', event: 'ddl_command_end', fn: 'on_ddl_values' },
  { name: 'pg_egress_values_rewrite', event: 'table_rewrite', fn: 'on_table_rewrite' },
] as const;

/**
 * The DDL-capture event triggers need a superuser (sql/002). When the registry was created by a
 * non-superuser they are missing; a later start or `init` as a superuser installs them here.
 * Returns whether they are in place.
 */
export async function ensureEventTriggers(client: Db, superuser: boolean): Promise<boolean> {
  const { rows } = await client.query<{ evtname: string }>(`SELECT evtname FROM pg_event_trigger WHERE evtname = ANY ($1)`, [EVENT_TRIGGERS.map((t) => t.name)]);
  const have = new Set(rows.map((r) => r.evtname));
  if (have.size === EVENT_TRIGGERS.length) return true;
  if (!superuser) return false;
  for (const t of EVENT_TRIGGERS) {
    if (!have.has(t.name)) await client.query(`CREATE EVENT TRIGGER "${t.name}" ON ${t.event} EXECUTE FUNCTION "cdc_registry"."${t.fn}"()`);
  }
  return true;
}

/**
 * Our event triggers as they are now: those missing, and those that exist but do not fire in an
 * ordinary session (`ALTER EVENT TRIGGER … DISABLE`, or `ENABLE REPLICA`: evtenabled 'D' or 'R').
 * https://www.postgresql.org/docs/current/catalog-pg-event-trigger.html
 */
export async function eventTriggerState(db: Db): Promise<{ missing: string[]; disabled: string[] }> {
  const names = EVENT_TRIGGERS.map((t) => t.name);
  const { rows } = await db.query<{ evtname: string; evtenabled: string }>(`SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname = ANY ($1)`, [names]);
  const state = new Map(rows.map((r) => [r.evtname, r.evtenabled]));
  return {
    missing: names.filter((n) => !state.has(n)),
    disabled: names.filter((n) => state.has(n) && state.get(n) !== 'O' && state.get(n) !== 'A'),
  };
}
