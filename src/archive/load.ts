/**
 * `pg-egress load`: the incremental form of rebuild, exactly once into PostgreSQL or DuckDB.
 *
 * Each run applies the batches the chain holds after the last one applied, in chain order, one
 * target transaction per batch: the batch's data and its row in `_pg_egress_load` (batch id,
 * sha256 of its index, batch root) commit together, so a kill at any point followed by a re-run
 * applies every batch exactly once. A batch whose `prev` does not name the last applied batch
 * (id and sha256), or a last applied batch that the archive no longer holds as it was, is refused
 * with exit 10 before anything is written.
 *
 * Per table, `_pg_egress_load_tables` keeps the snapshot LSN S of the reload set the table was
 * last built from (streaming rows below it are in that reload set and are skipped), its columns and
 * key. A batch with a reload set for a table rebuilds the table from it and re-applies the table's
 * streaming rows at or above S from earlier batches (a reload registers after flushes that already
 * hold changes made after its snapshot).
 */
import { EgressError } from '../errors.js';
import { parseTableFolder, tableFolder } from '../output/layout.js';
import { dataFiles, loadManifests, readCatalog, readSchema, type Batch, type Catalog, type SchemaColumn, type Window } from './catalog.js';
import { qname, quoteIdent, type Engine, type QName } from './engine.js';
import { membersAt, parseAsOf } from './plan.js';
import { Progress } from './progress.js';
import { parseTableName, partitionDocs } from './rebuild.js';
import type { StagerLimits } from './stager.js';
import { openStore, type S3Options } from './store.js';
import { checkSha256 } from './verified-reader.js';
import { applyStreaming, keyOf, oidOf, planTable, rebuildTable } from './table-rebuild.js';
import { openTarget, targetError } from './targets.js';
import { duckdbType } from './types.js';
import { failpoint } from '../failpoints.js';

export interface LoadOptions {
  from: string;
  s3?: S3Options;
  into: string;
  tables?: string[];
  verify: boolean;
  progress?: NodeJS.WriteStream | null;
  limits?: StagerLimits;
}

export interface LoadResult {
  applied: string[];
  rows: number;
  last: string | null;
}

interface TableState {
  folder: string;
  oid: number | null;
  reloadLsn: string;
  columns: SchemaColumn[];
  key: string[] | null;
}

const LATEST = parseAsOf(undefined);

export async function load(o: LoadOptions): Promise<LoadResult> {
  if (o.into.startsWith('csv:')) throw new EgressError('CONFIG_INVALID', 'load --into takes postgres://… or duckdb:<file>; csv: is for rebuild');
  const store = await openStore(o.from, o.s3);
  // load commits per batch: DuckDB may apply the streaming files itself (engine-duckdb.ts).
  const target = await openTarget(o.into, { sqlChanges: true });
  const engine = target.engine;
  const schema = engine.kind === 'postgres' ? 'public' : 'main';
  const T = { load: `${schema}._pg_egress_load`, tables: `${schema}._pg_egress_load_tables` };
  const only = o.tables?.length ? new Set(o.tables.map((n) => JSON.stringify(parseTableName(n)))) : null;
  try {
    const cat = await readCatalog(store, { verify: o.verify });
    await engine.query(`CREATE TABLE IF NOT EXISTS ${T.load} (batch_id text PRIMARY KEY, seq integer NOT NULL, sha256 text NOT NULL, batch_root text, prev_batch_id text, rows bigint NOT NULL, applied_at text NOT NULL)`);
    await engine.query(`CREATE TABLE IF NOT EXISTS ${T.tables} (folder text PRIMARY KEY, oid bigint, reload_lsn text NOT NULL, columns text NOT NULL, key_columns text)`);
    const lastRows = await engine.query(`SELECT batch_id, sha256, seq FROM ${T.load} ORDER BY seq DESC LIMIT 1`);
    const last = lastRows.length
      ? { id: String(lastRows[0].batch_id), sha256: String(lastRows[0].sha256), seq: Number(lastRows[0].seq) }
      : null;
    let start = 0;
    if (last) {
      const b = cat.batches.find((x) => x.id === last.id);
      if (!b) throw new EgressError('VERIFY_FAILED', `the target's last applied batch ${last.id} is not in the archive ${store.label} (was its batch index deleted?); nothing was loaded`);
      if (b.sha256 !== last.sha256) throw new EgressError('VERIFY_FAILED', `batch ${last.id} was replaced since it was loaded (its index's sha256 differs from the one recorded in ${T.load}); nothing was loaded`);
      start = b.seq + 1;
    }
    const todo = cat.batches.slice(start);
    // Chain links first: nothing is written when a link is broken.
    let prev = last ? { id: last.id, sha256: last.sha256 } : null;
    for (const b of todo) {
      const p = b.doc.prev ?? null;
      const ok = prev === null ? true : p !== null && p.batch_id === prev.id && p.sha256 === prev.sha256;
      if (o.verify && (!ok || (prev !== null && b.problem))) {
        throw new EgressError('VERIFY_FAILED', `batch ${b.id}: its chain link does not name the last applied batch ${prev?.id} (${b.problem ?? `it names ${p ? p.batch_id : 'no predecessor'}`}); refused, the target stays at ${prev?.id}`);
      }
      if (o.verify && prev === null && b.problem) throw new EgressError('VERIFY_FAILED', b.problem);
      prev = { id: b.id, sha256: b.sha256 };
    }
    if (todo.length) await loadManifests(cat, todo[todo.length - 1].seq);
    if (o.verify) {
      // Every data file's sha256 before anything is written: a changed file stops the load with
      // the target as it was (records and roots are checked again as the files are applied).
      for (const b of todo) {
        for (const w of windowsOf(cat, b, only)) for (const f of dataFiles(w.manifest)) await checkSha256(store, `${w.dir}/${f.name}`, f);
      }
    }
    const states = await readStates(engine, T.tables);
    const progress = new Progress('load', o.progress === undefined ? process.stderr : o.progress, 2000, 'windows');
    for (const b of todo) {
      for (const w of windowsOf(cat, b, only)) progress.addTotals(dataFiles(w.manifest!).reduce((n, f) => n + (f.rows ?? 0), 0), 1);
    }
    const applied: string[] = [];
    let rows = 0;
    let seq = last ? last.seq : -1;
    for (const b of todo) {
      await engine.begin();
      try {
        const n = await applyBatch(cat, engine, b, T.tables, states, only, progress, o.limits);
        await engine.query(`INSERT INTO ${T.load} (batch_id, seq, sha256, batch_root, prev_batch_id, rows, applied_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
          b.id,
          ++seq,
          b.sha256,
          b.doc.merkle?.root ?? null,
          b.doc.prev?.batch_id ?? null,
          n,
          new Date().toISOString(),
        ]);
        await failpoint('load-before-commit');
        await engine.commit();
        rows += n;
        applied.push(b.id);
      } catch (e) {
        await engine.rollback();
        throw targetError(e, o.into, `batch ${b.id} (not applied; the target keeps the batches before it)`);
      }
    }
    progress.done();
    // Also when nothing was new: a run killed after its last batch did not get here.
    const lastSeq = todo.length ? todo[todo.length - 1].seq : start - 1;
    if (lastSeq >= 0) {
      if (!todo.length) await loadManifests(cat, lastSeq);
      await engine.begin();
      try {
        await refreshRootViews(cat, engine, lastSeq, states, only);
        await engine.commit();
      } catch (e) {
        await engine.rollback();
        throw targetError(e, o.into, 'the views of partitioned roots');
      }
    }
    return { applied, rows, last: applied.length ? applied[applied.length - 1] : (last?.id ?? null) };
  } finally {
    await target.close();
    store.close();
  }
}

/** Every table's state, read once per run (one transaction per batch keeps it in step). */
async function readStates(engine: Engine, table: string): Promise<Map<string, TableState>> {
  const out = new Map<string, TableState>();
  for (const r of await engine.query(`SELECT folder, oid, reload_lsn, columns, key_columns FROM ${table}`)) {
    const folder = String(r.folder);
    out.set(folder, {
      folder,
      oid: r.oid == null ? null : Number(r.oid),
      reloadLsn: String(r.reload_lsn),
      columns: JSON.parse(String(r.columns)) as SchemaColumn[],
      key: r.key_columns == null ? null : (JSON.parse(String(r.key_columns)) as string[]),
    });
  }
  return out;
}

async function writeState(engine: Engine, table: string, states: Map<string, TableState>, s: TableState): Promise<void> {
  const old = states.get(s.folder);
  if (old && JSON.stringify(old) === JSON.stringify(s)) return;
  await engine.query(`DELETE FROM ${table} WHERE folder = $1`, [s.folder]);
  await engine.query(`INSERT INTO ${table} (folder, oid, reload_lsn, columns, key_columns) VALUES ($1, $2, $3, $4, $5)`, [s.folder, s.oid, s.reloadLsn, JSON.stringify(s.columns), s.key ? JSON.stringify(s.key) : null]);
  states.set(s.folder, s);
}

/** The windows of a batch that load applies: with data files, of the selected tables. */
function windowsOf(cat: Catalog, b: Batch, only: Set<string> | null): (Window & { t: QName })[] {
  const out: (Window & { t: QName })[] = [];
  for (const m of b.doc.manifests) {
    const [folder, name] = m.path.split('/');
    const w = cat.windows.get(folder)?.find((x) => x.batch === b && x.name === name);
    if (!w?.manifest || !dataFiles(w.manifest).length) continue; // partitions.yml / ddl-only windows
    const parsed = parseTableFolder(folder);
    if (!parsed) continue;
    const t: QName = { schema: parsed.schema, table: parsed.table };
    if (only && !only.has(JSON.stringify(t))) continue;
    out.push({ ...w, t });
  }
  return out;
}

/** Applies one batch's windows (in index order); returns the rows read. */
async function applyBatch(
  cat: Catalog,
  engine: Engine,
  b: Batch,
  stateTable: string,
  states: Map<string, TableState>,
  only: Set<string> | null,
  progress: Progress,
  limits?: StagerLimits,
): Promise<number> {
  let rows = 0;
  for (const w of windowsOf(cat, b, only)) {
    const t = w.t;
    const before = progress.rows;
    await applyWindow(cat, engine, w, t, stateTable, states, progress, limits);
    progress.windowDone();
    rows += progress.rows - before;
  }
  return rows;
}

async function applyWindow(
  cat: Catalog,
  engine: Engine,
  w: Window,
  t: QName,
  stateTable: string,
  states: Map<string, TableState>,
  progress: Progress,
  limits?: StagerLimits,
): Promise<void> {
  const state = states.get(w.folder) ?? null;
  const oid = oidOf(w);
  const isReload = w.manifest.files.some((f) => f.type === 'full_reload');
  if (isReload || !state || (state.oid !== null && oid !== null && state.oid !== oid)) {
    // A reload set, a table seen for the first time, or a new incarnation: (re)build it from the
    // newest reload set up to this batch (none for a new incarnation: from empty).
    const plan = await planTable(cat, w.folder, LATEST, w.batch.seq);
    if (!plan) return;
    // CASCADE: a partitioned root's view on this leaf goes too; it is recreated after the run's batches.
    if (await engine.tableExists(t)) await engine.dropTable(t, true);
    const r = await rebuildTable(cat, engine, plan, t, LATEST, progress, limits);
    await writeState(engine, stateTable, states, { folder: w.folder, oid, reloadLsn: plan.reload?.lsn ?? '', columns: r.columns, key: keyOf(plan.schema) });
    return;
  }
  const r = await applyStreaming(
    cat,
    engine,
    t,
    [w],
    state.columns,
    state.key ? [...state.key] : null,
    state.reloadLsn,
    LATEST,
    progress,
    limits,
  );
  await writeState(engine, stateTable, states, { ...state, columns: r.columns });
}

/**
 * Partitioned roots (SPEC §3: their folders hold partitions.yml, no data): after the run's batches,
 * each root becomes a view, the UNION ALL of its leaves at the end of the last applied batch that
 * the target holds (columns by the root's names; a column a leaf lacks is NULL). Recreated every
 * run: a leaf rebuilt from a reload set drops the view with it.
 */
async function refreshRootViews(
  cat: Catalog,
  engine: Engine,
  lastSeq: number,
  states: Map<string, TableState>,
  only: Set<string> | null,
): Promise<void> {
  for (const [folder, all] of cat.windows) {
    const ws = all.filter((w) => w.batch.seq <= lastSeq && w.manifest);
    if (!ws.length || ws.some((w) => dataFiles(w.manifest).length)) continue;
    const parsed = parseTableFolder(folder);
    if (!parsed) continue;
    const root: QName = { schema: parsed.schema, table: parsed.table };
    if (only && !only.has(JSON.stringify(root))) continue;
    const docs = await partitionDocs(cat, ws);
    if (!docs.length) continue;
    const rootCols = (await readSchema(cat, ws[ws.length - 1])).columns;
    const parts: string[] = [];
    for (const m of membersAt(docs.flatMap((d) => d.changes), () => true)) {
      const st = states.get(tableFolder(m.schema, m.name));
      if (!st) continue; // not loaded (yet): its reload set comes in a later batch
      const have = new Set(st.columns.map((c) => c.name));
      const sel = rootCols.map((c) => (have.has(c.name) ? quoteIdent(c.name) : `CAST(NULL AS ${engine.kind === 'postgres' ? c.type : duckdbType(c.type).type}) AS ${quoteIdent(c.name)}`));
      parts.push(`SELECT ${sel.join(', ')} FROM ${qname({ schema: m.schema, table: m.name })}`);
    }
    await engine.replaceView(root, parts.length ? parts.join(' UNION ALL ') : null);
  }
}
