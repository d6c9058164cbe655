/**
 * The claimed reloads an export can run (reloader.ts): which requested tables still exist and are
 * published, read from catalog rows only (no lock on any table). A request for a table that is
 * gone or no longer published is cancelled; one for a partitioned root becomes a request for each
 * of its leaves (sql/007 expand_root_reload), exported from the next snapshot together.
 */
import type { Config } from '../config/index.js';
import type { Db } from '../db/tx.js';
import type { Logger } from '../log.js';
import { expandRootReload, inspectReloadTables, type ReloadOp, type ReloadRegistry } from '../registry/reloads.js';
import type { TableInfo } from './plan-locked.js';

export async function inspectClaimed(
  d: { cfg: Config; db: Db; log: Logger; reloads: ReloadRegistry },
  ops: ReloadOp[],
  /** Called when a root's leaves were requested: the next round exports them. */
  wake: () => void,
): Promise<TableInfo[]> {
  const { db, cfg, reloads, log } = d;
  const rows = await inspectReloadTables(db, ops, cfg.publication);
  const found = new Map(rows.map((r) => [`${r.schema}\u0000${r.table}`, r]));
  const out: TableInfo[] = [];
  for (const op of ops) {
    const r = found.get(`${op.schema}\u0000${op.table}`);
    if (r?.kind === 'p') {
      // A partitioned table has no rows of its own: its reload is a reload of each leaf.
      const leaves = await expandRootReload(db, op.id, cfg.publication);
      log.info({ table: `${op.schema}.${op.table}`, leaves, reason: op.reason }, 'reload of a partitioned table: exporting each of its leaves');
      // The root's comment goes back like any reload's: later, with a bounded lock wait.
      if (op.restoreComment) await reloads.markCommentPending(op.id, Number(r.relid));
      wake();
      continue;
    }
    if (!r || r.published !== 'true') {
      await reloads.end(op.id, 'cancelled', 'the table no longer exists or is not published');
      log.warn({ table: `${op.schema}.${op.table}` }, 'reload cancelled: the table no longer exists or is not published');
      continue;
    }
    out.push({
      op,
      relid: Number(r.relid),
      kind: r.kind,
      pages: Number(r.pages) || 0,
      root: r.root_schema && r.root_table ? { schema: r.root_schema, table: r.root_table } : null,
    });
  }
  return out;
}
