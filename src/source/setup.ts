/**
 * The source's server, slot and table definitions.
 */
import type { Config } from '../config/index.js';
import type { Db } from '../db/tx.js';
import { EgressError } from '../errors.js';
import { parseLsn, type Lsn } from '../lsn.js';
import { sourceError } from '../db/connect.js';
import { tableDefinitionsJson } from '../registry/publication.js';

export interface ServerInfo {
  database: string;
  serverVersion: string;
  systemIdentifier: string;
  superuser: boolean;
}

/** Checks what the stream needs before anything is created (SPEC §10). */
export async function checkServer(client: Db, cfg: Config): Promise<ServerInfo> {
  const { rows } = await client.query<{
    wal_level: string;
    version: string;
    db: string;
    sysid: string;
    su: string;
    repl: string;
    usr: string;
  }>(
    `SELECT current_setting('wal_level') AS wal_level,
            split_part(current_setting('server_version'), ' ', 1) AS version,
            current_database() AS db,
            (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
            (SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user) AS su,
            (SELECT (rolreplication OR rolsuper)::text FROM pg_roles WHERE rolname = current_user) AS repl,
            current_user AS usr`,
  );
  const r = rows[0];
  if (r.wal_level !== 'logical') {
    throw new EgressError(
      'WAL_LEVEL',
      `wal_level is "${r.wal_level}" on ${cfg.source.host}:${cfg.source.port}; logical decoding needs wal_level = logical (set it in postgresql.conf and restart the server)`,
    );
  }
  if (r.repl !== 'true') {
    throw new EgressError(
      'NO_REPLICATION_PRIVILEGE',
      `role "${r.usr}" has no REPLICATION privilege on ${cfg.source.host}:${cfg.source.port}; run ALTER ROLE "${r.usr}" REPLICATION as a superuser, or set source.user to a role that has it`,
    );
  }
  if (Number(r.version.split('.')[0]) < 14) {
    throw new EgressError('SERVER_UNSUPPORTED', `PostgreSQL ${r.version} is too old; pg-egress needs 14 or later`);
  }
  return { database: r.db, serverVersion: r.version, systemIdentifier: r.sysid, superuser: r.su === 'true' };
}

export interface SlotInfo {
  confirmedFlush: Lsn;
  /** wal_status = lost: the server removed WAL the slot still needed. */
  lost: boolean;
  active: boolean;
}

/** The permanent pgoutput slot (SPEC §11 `slot`), or null when it does not exist. */
export async function inspectSlot(db: Db, cfg: Config): Promise<SlotInfo | null> {
  const { rows } = await db.query<{
    plugin: string;
    slot_type: string;
    database: string;
    confirmed: string | null;
    wal_status: string | null;
    active: string;
    mydb: string;
  }>(
    `SELECT plugin, slot_type, database, confirmed_flush_lsn::text AS confirmed, wal_status, active::text AS active, current_database() AS mydb
     FROM pg_replication_slots WHERE slot_name = $1`,
    [cfg.slot],
  );
  if (!rows.length) return null;
  const s = rows[0];
  if (s.slot_type !== 'logical' || s.plugin !== 'pgoutput' || s.database !== s.mydb) {
    throw new EgressError('SLOT_INVALID', `replication slot "${cfg.slot}" exists but is ${s.slot_type}/${s.plugin} on database "${s.database}"; set slot to another name or drop that slot`);
  }
  return { confirmedFlush: s.confirmed ? parseLsn(s.confirmed) : 0n, lost: s.wal_status === 'lost', active: s.active === 'true' };
}

export async function createSlot(db: Db, cfg: Config, server?: Pick<ServerInfo, 'serverVersion'>): Promise<Lsn> {
  try {
    // PostgreSQL 17+: a failover slot (src/source/failover.ts), unless slot_failover is off.
    const failover = cfg.slotFailover && server !== undefined && Number(server.serverVersion.split('.')[0]) >= 17;
    const res = failover
      ? await db.query<{ lsn: string }>(`SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)`, [cfg.slot])
      : await db.query<{ lsn: string }>(`SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`, [cfg.slot]);
    return parseLsn(res.rows[0].lsn);
  } catch (e) {
    if ((e as { code?: string }).code === '42710') {
      const s = await inspectSlot(db, cfg); // created concurrently
      if (s) return s.confirmedFlush;
    }
    throw sourceError(e, cfg.source, 'create the replication slot');
  }
}

/** A table's catalog definition, decoded once from table_definition()'s JSON into our names. */
export interface TableDef {
  relid: number;
  schema: string;
  table: string;
  /** pg_class.relreplident: d(efault), f(ull), i(ndex), n(othing). */
  replicaIdentity: string;
  primaryKey: string[];
  columns: { name: string; type: string; typeOid: number; nullable: boolean; generated: boolean }[];
}

/** table_definition()'s JSON (sql/): snake_case as the SQL writes it. */
export interface TableDefJson {
  relid: number;
  schema: string;
  table: string;
  replica_identity: string;
  primary_key: string[];
  columns: { name: string; type: string; type_oid: number; nullable: boolean; generated: boolean }[];
}

export function decodeTableDef(j: TableDefJson): TableDef {
  return {
    relid: Number(j.relid),
    schema: j.schema,
    table: j.table,
    replicaIdentity: j.replica_identity,
    primaryKey: j.primary_key ?? [],
    columns: j.columns.map((c) => ({
      name: c.name, type: c.type, typeOid: Number(c.type_oid), nullable: c.nullable, generated: c.generated,
    })),
  };
}

/** Current catalog definitions of the given tables (those that still exist), via the registry's table_definitions(). */
export async function loadTableDefs(client: Db, relids: number[]): Promise<TableDef[]> {
  if (relids.length === 0) return [];
  return (await tableDefinitionsJson(client, relids)).map(parseTableDef);
}

/** table_definition()'s JSON text decoded. */
export function parseTableDef(json: string): TableDef {
  return decodeTableDef(JSON.parse(json) as TableDefJson);
}

export async function publishedRelids(client: Db, publication: string): Promise<number[]> {
  // The function behind the pg_publication_tables view, without the view's names (each cast back
  // to an oid here) and column lists: 0.3-0.7 ms against 2-21 ms for 500 tables (a new session
  // pays the most, which is what a start is), and ~50 ms of server time less at the start of an
  // initial export, where the stream reads it beside the export's snapshot and plan. It gives the
  // tables pgoutput publishes (the leaves, or the roots with publish_via_partition_root). Its
  // argument is `pubname text` up to PostgreSQL 15, `VARIADIC pubnames text[]` from 16.
  // https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/catalog/system_views.sql (pg_publication_tables)
  const { rows } = await client.query<{ oid: string }>(`SELECT relid::text AS oid FROM pg_get_publication_tables($1::text)`, [publication]);
  return rows.map((r) => Number(r.oid));
}
