/**
 * Preparing the source: server checks, the registry, the publication and the slot.
 */
import type pg from 'pg';
import type { Config } from '../config/index.js';
import { matchTable } from '../config/index.js';
import { EgressError } from '../errors.js';
import { parseLsn, type Lsn } from '../lsn.js';
import { sourceError } from './connect.js';

export interface ServerInfo {
  database: string;
  serverVersion: string;
  systemIdentifier: string;
  superuser: boolean;
}

/** Checks what the stream needs before anything is created (SPEC §10). */
export async function checkServer(client: pg.Client, cfg: Config): Promise<ServerInfo> {
  const { rows } = await client.query<{ wal_level: string; version: string; db: string; sysid: string; su: string; repl: string; usr: string }>(
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

export interface TableName {
  schema: string;
  table: string;
}

const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
export const qualified = (t: TableName): string => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;

/** User tables (ordinary and partitioned roots) that the configuration selects. */
export async function selectedTables(client: pg.Client, cfg: Config): Promise<TableName[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cdc_registry')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
     ORDER BY 1, 2`,
  );
  return rows.filter((t) => matchTable(cfg, t.schema, t.table));
}

/**
 * Creates the publication if needed and makes its table list equal to what the configuration
 * selects. The registry's own tables are never in it.
 */
export async function syncPublication(client: pg.Client, cfg: Config): Promise<{ added: TableName[]; removed: TableName[]; tables: TableName[] }> {
  const want = await selectedTables(client, cfg);
  const pub = quoteIdent(cfg.publication);
  // publish_via_partition_root: a partitioned table's changes are published as the root table
  // (one folder, one schema), not as each leaf partition.
  // https://www.postgresql.org/docs/15/sql-createpublication.html
  const exists = await client.query<{ viaroot: string }>(`SELECT pubviaroot::text AS viaroot FROM pg_publication WHERE pubname = $1`, [cfg.publication]);
  if (exists.rowCount === 0) {
    await client.query(`CREATE PUBLICATION ${pub} WITH (publish_via_partition_root = true)`).catch((e: { code?: string }) => {
      if (e.code !== '42710') throw e; // created concurrently by another process
    });
  } else if (exists.rows[0].viaroot !== 'true') {
    await client.query(`ALTER PUBLICATION ${pub} SET (publish_via_partition_root = true)`);
  }
  const { rows: have } = await client.query<{ schema: string; table: string }>(
    `SELECT schemaname AS schema, tablename AS table FROM pg_publication_tables WHERE pubname = $1`,
    [cfg.publication],
  );
  const key = (t: TableName) => `${t.schema}\u0000${t.table}`;
  const haveSet = new Set(have.map(key));
  const wantSet = new Set(want.map(key));
  const added = want.filter((t) => !haveSet.has(key(t)));
  const removed = have.filter((t) => !wantSet.has(key(t)));
  if (added.length) await client.query(`ALTER PUBLICATION ${pub} ADD TABLE ${added.map(qualified).join(', ')}`);
  if (removed.length) await client.query(`ALTER PUBLICATION ${pub} DROP TABLE ${removed.map(qualified).join(', ')}`);
  return { added, removed, tables: want };
}

/**
 * Tables in the publication whose UPDATE/DELETE would fail on the source because they have no
 * replica identity (no primary key and REPLICA IDENTITY DEFAULT). We warn; fixing it is a choice
 * for the table's owner (ALTER TABLE ... REPLICA IDENTITY FULL or add a primary key).
 * https://www.postgresql.org/docs/15/logical-replication-publication.html
 */
export async function tablesWithoutIdentity(client: pg.Client, publication: string): Promise<TableName[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
     FROM pg_publication_tables pt
     JOIN pg_namespace n ON n.nspname = pt.schemaname
     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
     WHERE pt.pubname = $1 AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (
       SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))`,
    [publication],
  );
  return rows;
}

export interface SlotInfo {
  created: boolean;
  confirmedFlush: Lsn;
}

/** Makes sure the permanent pgoutput slot exists in this database (SPEC §11 `slot`). */
export async function ensureSlot(client: pg.Client, cfg: Config): Promise<SlotInfo> {
  const { rows } = await client.query<{ plugin: string; slot_type: string; database: string; confirmed: string | null; wal_status: string | null }>(
    `SELECT plugin, slot_type, database, confirmed_flush_lsn::text AS confirmed, wal_status
     FROM pg_replication_slots WHERE slot_name = $1`,
    [cfg.slot],
  );
  if (rows.length) {
    const s = rows[0];
    const { rows: db } = await client.query<{ db: string }>('SELECT current_database() AS db');
    if (s.slot_type !== 'logical' || s.plugin !== 'pgoutput' || s.database !== db[0].db) {
      throw new EgressError('SLOT_INVALID', `replication slot "${cfg.slot}" exists but is ${s.slot_type}/${s.plugin} on database "${s.database}"; set slot to another name or drop that slot`);
    }
    if (s.wal_status === 'lost') {
      throw new EgressError('SLOT_INVALID', `replication slot "${cfg.slot}" has lost required WAL (wal_status = lost); drop it and start again to re-export (changes since were not kept), or set slot to a new name`);
    }
    return { created: false, confirmedFlush: s.confirmed ? parseLsn(s.confirmed) : 0n };
  }
  try {
    const res = await client.query<{ lsn: string }>(
      `SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [cfg.slot],
    );
    return { created: true, confirmedFlush: parseLsn(res.rows[0].lsn) };
  } catch (e) {
    if ((e as { code?: string }).code === '42710') return ensureSlot(client, cfg); // created concurrently
    throw sourceError(e, cfg.source, 'create the replication slot');
  }
}

export interface TableDef {
  relid: number;
  schema: string;
  table: string;
  replica_identity: string;
  primary_key: string[];
  columns: { name: string; type: string; type_oid: number; nullable: boolean; generated: boolean }[];
}

/** Current catalog definitions of the given tables, via the registry's table_definition(). */
export async function loadTableDefs(client: pg.Client, relids: number[]): Promise<TableDef[]> {
  if (relids.length === 0) return [];
  const { rows } = await client.query<{ def: string }>(
    `SELECT "cdc_registry"."table_definition"(r)::text AS def FROM unnest($1::oid[]) AS r`,
    [relids],
  );
  return rows.filter((r) => r.def !== null).map((r) => JSON.parse(r.def) as TableDef);
}

export async function publishedRelids(client: pg.Client, publication: string): Promise<number[]> {
  const { rows } = await client.query<{ oid: string }>(
    `SELECT (quote_ident(schemaname) || '.' || quote_ident(tablename))::regclass::oid::text AS oid
     FROM pg_publication_tables WHERE pubname = $1`,
    [publication],
  );
  return rows.map((r) => Number(r.oid));
}
