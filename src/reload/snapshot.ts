/**
 * The exact export boundary. A second replication connection creates a TEMPORARY logical slot
 * with an exported snapshot; that snapshot holds exactly the transactions whose commit LSN is
 * below the slot's consistent_point (checked on PostgreSQL 15, where pg_export_snapshot() plus
 * pg_current_wal_lsn() is not exact). Workers import it with SET TRANSACTION SNAPSHOT while the
 * exporting connection stays idle: the snapshot dies when that connection runs another command or
 * closes, and closing it also drops the temporary slot.
 * https://www.postgresql.org/docs/15/protocol-replication.html (CREATE_REPLICATION_SLOT ... SNAPSHOT 'export')
 * https://www.postgresql.org/docs/15/sql-set-transaction.html
 */
import type pg from 'pg';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { parseLsn, type Lsn } from '../lsn.js';
import { connectClient, sourceError } from '../db/connect.js';

export interface ExportSnapshot {
  /** The consistent point S: the reload holds exactly the transactions committed before it. */
  lsn: Lsn;
  name: string;
  /** Drops the temporary slot (and the snapshot, once no importer needs it any more). */
  close(): Promise<void>;
}

/**
 * The snapshot's replication connection, opened on its own: a reload opens it while it reads its
 * tables from the catalog and its workers connect, rather than after (a new connection is a new
 * server process, ~10-20 ms here, one after another at the postmaster).
 */
export function connectSnapshotClient(cfg: Config): Promise<pg.Client> {
  const extra = { replication: 'database', application_name: 'pg-egress reload snapshot' } as Partial<pg.ClientConfig>;
  return connectClient(cfg.source, extra, 'open a replication connection for the export snapshot');
}

/**
 * Creates the snapshot; resolves once the server has it (slot creation waits for running
 * transactions). `connected`: a connection from connectSnapshotClient to use (else one is opened).
 */
export async function createExportSnapshot(cfg: Config, serverMajor: number, connected?: Promise<pg.Client>): Promise<ExportSnapshot> {
  // One opened ahead that failed is opened again, now (its error is the one reported).
  const client = (await connected?.catch(() => undefined)) ?? (await connectSnapshotClient(cfg));
  const slot = `pg_egress_export_${randomBytes(6).toString('hex')}`;
  // The option syntax changed in PostgreSQL 15; 14 takes the older keyword form.
  const opts = serverMajor >= 15 ? `(SNAPSHOT 'export')` : 'EXPORT_SNAPSHOT';
  try {
    const { rows } = await client.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput ${opts}`);
    const r = rows[0];
    if (!r?.snapshot_name) throw new EgressError('PROTOCOL', 'the server returned no exported snapshot for the reload');
    return { lsn: parseLsn(r.consistent_point), name: r.snapshot_name, close: () => client.end().catch(() => undefined) };
  } catch (e) {
    await client.end().catch(() => undefined);
    throw sourceError(e, cfg.source, 'create the export snapshot');
  }
}
