/**
 * Which relations of the stream are exported, with partitioned tables exported as their leaves
 * (SPEC §3 "Partitioned tables"): a relation is selected when tables.include selects its own name,
 * or when it is (or was, where the stream is) a leaf of a selected partitioned root; such a leaf
 * also leaves out its root's excluded columns. A selected root's own rows belong in no file.
 */
import { tableKey } from '../ident.js';
import type { Config } from '../config/index.js';
import { excludedColumns, matchTable } from '../config/index.js';

export interface RootOf {
  schema: string;
  table: string;
  oid: number;
}

const key = tableKey;

export class LeafScope {
  /** Leaves selected through their root (`schema\0table` → root), for the root's column exclusions. */
  private readonly leafRoots = new Map<string, { schema: string; table: string }>();
  /** Relations known to be selected partitioned roots. */
  private readonly rootOids = new Set<number>();

  constructor(
    private readonly cfg: Config,
    /** The selected root a relation is or was a leaf of (a root gives itself), or null (sql/007). */
    private readonly lookup?: (relid: number) => Promise<RootOf | null>,
  ) {}

  /**
   * Is this relation's DDL, reload request or (with `rows`) data exported? One registry query at
   * most, on a Relation, DDL or reload message: never per row. A leaf that matches on its own
   * still takes its root's column exclusions, so the root is looked up whenever exclusions are
   * configured; for `rows` always (a root's own rows are refused).
   */
  async selected(schema: string, table: string, relid: number | null, rows = false): Promise<boolean> {
    const own = matchTable(this.cfg, schema, table);
    if (!this.lookup || !relid || (own && !rows && this.cfg.columnsExclude.size === 0)) return own;
    const root = await this.lookup(relid);
    if (root && root.oid === relid) {
      this.rootOids.add(relid);
      // Rows published as a root's come only while someone made the publication publish via the
      // root: a recorded gap whose repair exports the leaves again.
      return own && !rows;
    }
    if (root && matchTable(this.cfg, root.schema, root.table)) {
      this.leafRoots.set(key(schema, table), root);
      return true;
    }
    this.leafRoots.delete(key(schema, table));
    return own;
  }

  /** The leaves of a selected root, as a membership message lists them. */
  noteLeaves(root: { schema: string; name: string }, leaves: { schema: string; name: string }[]): void {
    for (const p of leaves) this.leafRoots.set(key(p.schema, p.name), { schema: root.schema, table: root.name });
  }

  /** Columns never written for this table: its own exclusions and its root's. */
  excluded(schema: string, table: string): ReadonlySet<string> {
    const own = excludedColumns(this.cfg, schema, table);
    const root = this.leafRoots.get(key(schema, table));
    if (!root) return own;
    const viaRoot = excludedColumns(this.cfg, root.schema, root.table);
    return viaRoot.size ? new Set([...own, ...viaRoot]) : own;
  }
}
