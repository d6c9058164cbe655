/**
 * An export's plan under the first worker's locks (reloader.ts): the snapshot's catalog compared
 * with the committed one (race.ts), then each table's definition, exported columns and size, read
 * in that worker's session as of the snapshot.
 */
import { EgressError } from '../errors.js';
import { excludedColumns, type Config } from '../config/index.js';
import type { Db } from '../db/tx.js';
import type { ReloadOp } from '../registry/reloads.js';
import { parseTableDef, type TableDef } from '../source/setup.js';
import { tableDefinitionsSized } from '../registry/publication.js';
import { racedTables, SHAPE_SQL, type TableShape } from './race.js';
import type { ExportWorker } from './workers.js';

export interface TableInfo {
  op: ReloadOp;
  relid: number;
  kind: string;
  /** pg_class.relpages (an estimate, read without a lock): how many workers to connect ahead. */
  pages: number;
  /** The selected partitioned root of a leaf (its excluded columns apply too), or null. */
  root: { schema: string; table: string } | null;
}

/** A table of the run once its locks are held: definition and size as of the snapshot. */
export interface PlannedTable extends TableInfo {
  bytes: number;
  def: TableDef;
  columns: string[];
}

/**
 * Under the first worker's locks: fails with RELOAD_RACE when a DDL committed on a table after
 * the snapshot (race.ts), else reads each table's definition and size in that worker's session
 * (as of the snapshot, and without queueing behind a DDL that waits for our locks), the server's
 * page size (a build-time constant of the server) and its shared_buffers in pages (each 0 if no
 * table was found).
 */
export async function planUnderLock(
  d: { cfg: Config; db: Db },
  first: ExportWorker,
  tables: TableInfo[],
): Promise<{ tables: PlannedTable[]; blockSize: number; sharedBuffers: number }> {
  const { cfg } = d;
  const relids = tables.map((t) => t.relid);
  // Both under the first worker's locks, side by side: the snapshot's shapes on its session, the
  // committed ones on the registry's pool.
  const atSnapshot = first.query<TableShape>(SHAPE_SQL, [relids]);
  // The definitions are asked for at once too: the worker's connection runs them right after its
  // shapes, without waiting for this process to read those first (unused if a table raced).
  const sizing = tableDefinitionsSized(first.client, relids);
  sizing.catch(() => undefined);
  const [snapshotShapes, committedShapes] = await Promise.all([atSnapshot, d.db.query<TableShape>(SHAPE_SQL, [relids])]);
  const expected = tables.map((t) => ({ relid: t.relid, schema: t.op.schema, table: t.op.table }));
  const raced = racedTables(expected, snapshotShapes.rows, committedShapes.rows);
  if (raced.length) {
    throw new EgressError('RELOAD_RACE', `a DDL committed after the export's snapshot on ${raced.map((r) => `${r.table} (${r.what})`).join(', ')}; exporting again from a new snapshot`);
  }
  // Definitions, sizes and the block size in one query on the worker's session.
  const sized = await sizing;
  const defs = new Map(sized.tables.map((x) => {
    const def = parseTableDef(x.def);
    return [def.relid, { def, bytes: x.bytes }];
  }));
  const planned = tables.map((t) => {
    const found = defs.get(t.relid);
    if (!found) throw new EgressError('RELOAD_RACE', `no definition of ${t.op.schema}.${t.op.table} at the export's snapshot; exporting again from a new snapshot`);
    const { def, bytes } = found;
    // A leaf selected through its root also leaves out the root's excluded columns.
    const excluded = new Set([
      ...excludedColumns(cfg, t.op.schema, t.op.table),
      ...(t.root ? excludedColumns(cfg, t.root.schema, t.root.table) : []),
    ]);
    const columns = def.columns.filter((c) => !c.generated && !excluded.has(c.name)).map((c) => c.name);
    return { ...t, def, columns, bytes };
  });
  return { tables: planned, blockSize: sized.blockSize, sharedBuffers: sized.sharedBuffers };
}
