/**
 * `pg-egress rebuild`: tables of an archive as of a point (SPEC §6; §3 for partitioned roots),
 * into PostgreSQL, DuckDB or a gzipped CSV file. PostgreSQL: everything goes in one target
 * transaction. DuckDB (and csv:, through a scratch DuckDB file): each table is built under a
 * scratch name (`_pg_egress_rebuild_<i>_<table>`) with commits between batches — DuckDB holds a
 * transaction's changes in its memory until the commit — and the last transaction drops the old
 * table and renames the new one in. Either way a failed check (exit 10), an error or a kill leaves
 * the target table as it was (a kill can leave a scratch table, dropped by the next rebuild).
 */
import { parse as parseYaml } from 'yaml';
import { splitQualified } from '../config/patterns.js';
import { EgressError } from '../errors.js';
import { tableFolder } from '../output/layout.js';
import { loadManifests, readCatalog, readSchema, readWindowDoc, type Catalog, type Window } from './catalog.js';
import type { Engine, QName } from './engine.js';
import { membersAt, normTs, parseAsOf, type AsOf, type PartitionChange } from './plan.js';
import { Progress } from './progress.js';
import { type StagerLimits } from './stager.js';
import { openStore, type S3Options } from './store.js';
import { keyOf, planTable, rebuildTable } from './table-rebuild.js';
import { openTarget, redactTarget, targetError, type Target } from './targets.js';

export interface RebuildOptions {
  tables: string[];
  from: string;
  s3?: S3Options;
  asOf?: string;
  into: string;
  /** Target table name (one table only); default: the source's schema.table. */
  target?: string;
  verify: boolean;
  replace?: boolean;
  progress?: NodeJS.WriteStream | null;
  limits?: StagerLimits;
}

export interface RebuiltTable {
  table: string;
  target: string;
  rows: number;
  reloadLsn: string | null;
  changes: number;
}

export function parseTableName(n: string): QName {
  const p = splitQualified(n);
  if (!p) throw new EgressError('CONFIG_INVALID', `"${n}" is not a schema.table name (quote parts that contain dots: '"my.schema".table')`);
  return { schema: p[0], table: p[1] };
}

/** The last chain position that can hold data at or before the as-of point. */
export function lastUsefulBatch(cat: Catalog, asOf: AsOf): number {
  if (asOf.kind !== 'lsn') return cat.batches.length - 1;
  let upTo = -1;
  for (const b of cat.batches) {
    const start = b.doc.lsn?.start ?? null;
    if (start === null || start <= asOf.lsn) upTo = b.seq;
  }
  return upTo;
}

export async function openArchive(from: string, s3: S3Options | undefined, verify: boolean, asOf: AsOf): Promise<Catalog> {
  const store = await openStore(from, s3);
  const cat = await readCatalog(store, { verify });
  if (!cat.batches.length) throw new EgressError('NOT_FOUND_PATH', `${store.label} holds no batch index (_batches/*.json): not a pg-egress archive (--from)`);
  await loadManifests(cat, lastUsefulBatch(cat, asOf));
  return cat;
}

export async function rebuild(o: RebuildOptions): Promise<RebuiltTable[]> {
  const asOf = parseAsOf(o.asOf);
  const names = o.tables.map(parseTableName);
  if (o.target && names.length !== 1) throw new EgressError('CONFIG_INVALID', '--target names one table: give one table to rebuild with it');
  const cat = await openArchive(o.from, o.s3, o.verify, asOf);
  const target: Target = await openTarget(o.into);
  const out: RebuiltTable[] = [];
  try {
    const engine = target.engine;
    // DuckDB: each table is built under a scratch name with commits between batches (see
    // engine-duckdb.ts step) and swapped in by the last transaction; elsewhere one transaction.
    const swap = !!engine.renameTable;
    const built: { t: QName; as: QName }[] = [];
    await engine.begin();
    try {
      for (const n of names) {
        const folder = tableFolder(n.schema, n.table);
        if (!cat.windows.has(folder)) throw new EgressError('UNKNOWN_TABLE', `table ${n.schema}.${n.table} is not in the archive ${cat.store.label} (no folder ${folder} in any batch index)`);
        const t = o.target ? parseTableName(o.target) : target.defaultName(n);
        if (await engine.tableExists(t)) {
          if (!o.replace) throw new EgressError('CONFIG_INVALID', `target table ${t.schema}.${t.table} already exists in ${redactTarget(o.into)}; drop it, pass --replace, or choose another with --target`);
          if (!swap) await engine.dropTable(t);
        }
        const as = swap ? scratchName(t, built.length) : t;
        if (swap) await engine.dropTable(as); // left by a killed rebuild
        built.push({ t, as });
        const progress = new Progress(`rebuild ${n.schema}.${n.table}`, o.progress === undefined ? process.stderr : o.progress);
        engine.intermediateCommits = swap;
        out.push({ ...(await rebuildOne(cat, engine, folder, n, as, asOf, progress, o.limits)), target: `${t.schema}.${t.table}` });
        engine.intermediateCommits = false;
        progress.done();
      }
      if (swap) {
        for (const b of built) {
          await engine.dropTable(b.t);
          await engine.renameTable!(b.as, b.t.table);
        }
      }
      await engine.commit();
    } catch (e) {
      engine.intermediateCommits = false;
      await engine.rollback();
      if (swap) await dropScratch(engine).catch(() => undefined);
      throw targetError(e, o.into, 'the rebuild (nothing was kept)');
    }
    await target.finish(out.map((r) => parseTableName(r.target)));
  } finally {
    await target.close();
    cat.store.close();
  }
  return out;
}

const qtext = (t: QName) => `${t.schema}.${t.table}`;

const SCRATCH_PREFIX = '_pg_egress_rebuild_';

/** The name a table is built under before it is swapped in (DuckDB targets). */
function scratchName(t: QName, i: number): QName {
  return { schema: t.schema, table: `${SCRATCH_PREFIX}${i}_${t.table}`.slice(0, 63) };
}

/** Drops what a failed rebuild built and committed: its scratch tables and their leaves. */
async function dropScratch(engine: Engine): Promise<void> {
  const left = await engine.query(`SELECT table_schema AS s, table_name AS t FROM information_schema.tables WHERE starts_with(table_name, $1) OR (starts_with(table_name, $2) AND strpos(table_name, $1) > 0)`, [SCRATCH_PREFIX, '_pg_egress_leaf_']);
  for (const r of left) await engine.dropTable({ schema: String(r.s), table: String(r.t) });
}

export async function rebuildOne(
  cat: Catalog,
  engine: Engine,
  folder: string,
  n: QName,
  t: QName,
  asOf: AsOf,
  progress: Progress,
  limits?: StagerLimits,
): Promise<RebuiltTable> {
  const windows = (cat.windows.get(folder) ?? []).filter((w) => w.manifest);
  const isRoot = windows.length > 0 && windows.every((w) => !w.manifest.files.some((f) => f.type === 'streaming' || f.type === 'full_reload'));
  if (isRoot) {
    const docs = await partitionDocs(cat, windows);
    if (docs.length) return rebuildRoot(cat, engine, windows, docs, n, t, asOf, progress, limits);
  }
  const plan = await planTable(cat, folder, asOf);
  if (!plan) throw new EgressError('UNKNOWN_TABLE', `table ${qtext(n)} has no data at or before ${asOf.text} in ${cat.store.label}`);
  progress.addTotals(plan.rows, plan.files);
  const r = await rebuildTable(cat, engine, plan, t, asOf, progress, limits);
  return { table: qtext(n), target: qtext(t), rows: r.reloadRows, reloadLsn: r.reloadLsn, changes: r.changes };
}

export interface PartitionsDoc {
  window: Window;
  changes: PartitionChange[];
}

export async function partitionDocs(cat: Catalog, windows: Window[]): Promise<PartitionsDoc[]> {
  const out: PartitionsDoc[] = [];
  for (const w of windows) {
    const text = await readWindowDoc(cat, w, 'partitions');
    if (text === null) continue;
    // failsafe: every scalar a string (an all-digit LSN must not become a number).
    const doc = parseYaml(text, { schema: 'failsafe' }) as { changes?: Record<string, string>[] };
    const changes = (doc.changes ?? []).map((c) => ({ lsn: String(c.lsn).toUpperCase().padStart(16, '0'), kind: String(c.kind), schema: String(c.schema), name: String(c.name), oid: String(c.oid) }));
    out.push({ window: w, changes });
  }
  return out;
}

/** A partitioned root: the union of the leaves that were its partitions at the as-of point. */
async function rebuildRoot(
  cat: Catalog,
  engine: Engine,
  windows: Window[],
  docs: PartitionsDoc[],
  n: QName,
  t: QName,
  asOf: AsOf,
  progress: Progress,
  limits?: StagerLimits,
): Promise<RebuiltTable> {
  const rootSchema = await readSchema(cat, windows[windows.length - 1]);
  const winOf = new Map<PartitionChange, Window>();
  for (const d of docs) for (const c of d.changes) winOf.set(c, d.window);
  const all = docs.flatMap((d) => d.changes);
  // As of a time: a change's commit time is in the root's ddl.sql (each statement is headed
  // `-- lsn <LSN> xid <xid> at <commit time>: <tag>`); without it, the window's start decides.
  const commitTimes = new Map<string, string>();
  if (asOf.kind === 'time') {
    for (const w of windows) {
      const ddl = await readWindowDoc(cat, w, 'ddl');
      for (const m of (ddl ?? '').matchAll(/^-- lsn ([0-9A-F]{16}) xid \d+ at (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?\+00): /gm)) commitTimes.set(m[1], m[2]);
    }
  }
  const before = (c: PartitionChange): boolean => {
    if (asOf.kind === 'lsn') return c.lsn < asOf.lsn;
    if (asOf.kind === 'time') {
      const ts = commitTimes.get(c.lsn);
      return ts !== undefined ? normTs(ts) <= asOf.ts : Date.parse(winOf.get(c)!.manifest.window_start ?? '') <= asOf.ms;
    }
    return true;
  };
  const members = membersAt(all, before);
  await engine.createTable(t, rootSchema.columns, keyOf(rootSchema));
  let rows = 0;
  let changes = 0;
  let i = 0;
  for (const m of members) {
    const plan = await planTable(cat, tableFolder(m.schema, m.name), asOf);
    if (!plan) continue;
    progress.addTotals(plan.rows, plan.files);
    const leaf: QName = { schema: t.schema, table: `_pg_egress_leaf_${i++}_${t.table}`.slice(0, 63) };
    if (await engine.tableExists(leaf)) await engine.dropTable(leaf);
    const r = await rebuildTable(cat, engine, plan, leaf, asOf, progress, limits);
    const common = r.columns.map((c) => c.name).filter((c) => rootSchema.columns.some((x) => x.name === c));
    await engine.appendTable(t, leaf, common);
    await engine.dropTable(leaf);
    rows += r.reloadRows;
    changes += r.changes;
  }
  return { table: qtext(n), target: qtext(t), rows, reloadLsn: null, changes };
}
