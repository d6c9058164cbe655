/**
 * Rebuilds one table folder into a target table by SPEC §6 (plan.ts chooses the files): create the
 * table from the reload set's schema.yml, COPY its parts, then stage and apply the streaming rows
 * at or after its snapshot in (_lsn, _seq) order (= chain order of the windows; each file is in
 * that order, and `verify` checks it), following each window's schema.yml: added, dropped,
 * retyped and renamed (ddl.sql's RENAME) columns are altered in the target between batches.
 *
 * Incarnations: a table dropped and created again under the same name keeps its folder, with a new
 * oid in schema.yml. Rows of different oids are never mixed: the rebuild uses the oid of the
 * newest window at the as-of point, its newest reload set (none: from an empty table), and only
 * that oid's streaming windows.
 */
import { EgressError, isEgressError } from '../errors.js';
import type { ManifestFileEntry } from '../proof/verify.js';
import { dataFiles, readSchema, readWindowDoc, type Catalog, type SchemaColumn, type SchemaFile, type Window } from './catalog.js';
import type { Engine, QName } from './engine.js';
import { chooseReload, columnRenames, rowBefore, type AsOf, type ReloadCandidate } from './plan.js';
import type { Progress } from './progress.js';
import { recordFields, utf8Of } from './record-text.js';
import { DEFAULT_LIMITS, Stager, type StagerLimits } from './stager.js';
import { openVerified } from './verified-reader.js';
import { CsvRecordRanges } from '../output/csv.js';

export interface TablePlan {
  folder: string;
  reload: { window: Window; schema: SchemaFile; lsn: string } | null;
  streaming: Window[];
  /** Schema to create the table with. */
  schema: SchemaFile;
  rows: number;
  files: number;
}

/** The key rows are matched on: the primary key, or null (all columns, a multiset). */
export function keyOf(s: SchemaFile): string[] | null {
  return s.primary_key.length && s.replica_identity !== 'nothing' ? s.primary_key : null;
}

/** The table's oid in a window's manifest (written as a number or a string). */
export const oidOf = (w: Window): number | null => (w.manifest.table?.oid == null ? null : Number(w.manifest.table.oid));

/** Whether a window may hold rows at or before the as-of point (by its manifest). */
function windowUsable(w: Window, asOf: AsOf): boolean {
  if (!w.manifest) return false;
  if (asOf.kind === 'lsn') return w.manifest.lsn.start === null || w.manifest.lsn.start < asOf.lsn;
  if (asOf.kind === 'time') return !w.manifest.window_start || Date.parse(w.manifest.window_start) <= asOf.ms;
  return true;
}

/** `maxSeq`: only windows of batches up to this chain position (load: the batch being applied). */
export async function planTable(cat: Catalog, folder: string, asOf: AsOf, maxSeq = Infinity): Promise<TablePlan | null> {
  const all = (cat.windows.get(folder) ?? []).filter((w) => w.batch.seq <= maxSeq && w.manifest && dataFiles(w.manifest).length);
  if (!all.length) return null;
  const usable = all.filter((w) => windowUsable(w, asOf));
  const newest = usable.length ? usable[usable.length - 1] : all[0];
  const oid = oidOf(newest);
  const cands: (ReloadCandidate & { w: Window; schema: SchemaFile })[] = [];
  for (const w of all) {
    const parts = w.manifest.files.filter((f) => f.type === 'full_reload');
    if (!parts.length) continue;
    const schema = await readSchema(cat, w);
    const taken = schema.generated_at ? Date.parse(String(schema.generated_at)) : NaN;
    cands.push({ seq: w.batch.seq, lsn: parts[0].lsn?.start ?? '', takenAtMs: Number.isNaN(taken) ? null : taken, oid: oidOf(w) ?? 0, w, schema });
  }
  const chosen = chooseReload(cands, asOf, oid) as (ReloadCandidate & { w: Window; schema: SchemaFile }) | null;
  const S = chosen?.lsn ?? '';
  const streaming = all.filter((w) => {
    if (oidOf(w) !== oid) return false;
    const f = w.manifest.files.find((x) => x.type === 'streaming');
    if (!f) return false;
    if (f.lsn?.end && f.lsn.end < S) return false; // every row is in the reload set
    if (asOf.kind === 'lsn' && f.lsn?.start && f.lsn.start >= asOf.lsn) return false;
    return true;
  });
  let schema: SchemaFile;
  if (chosen) schema = chosen.schema;
  else if (streaming.length) schema = await readSchema(cat, streaming[0]);
  else return null;
  let rows = 0;
  let files = 0;
  for (const w of [...(chosen ? [chosen.w] : []), ...streaming]) {
    for (const f of dataFiles(w.manifest)) {
      if (w !== chosen?.w && f.type !== 'streaming') continue;
      if (w === chosen?.w && f.type !== 'full_reload') continue;
      rows += f.rows;
      files++;
    }
  }
  return { folder, reload: chosen ? { window: chosen.w, schema: chosen.schema, lsn: S } : null, streaming, schema, rows, files };
}

const sameType = (a: SchemaColumn, b: SchemaColumn) => a.type === b.type;

/** Alters the target from `cur` to `next` columns; returns the new list (in the target's order). */
export async function evolve(
  engine: Engine,
  t: QName,
  cur: SchemaColumn[],
  next: SchemaColumn[],
  ddl: string | null,
  key: string[] | null,
): Promise<SchemaColumn[]> {
  let cols = [...cur];
  const has = (list: SchemaColumn[], n: string) => list.some((c) => c.name === n);
  for (const [from, to] of columnRenames(ddl)) {
    if (has(cols, from) && !has(cols, to) && has(next, to) && !has(next, from)) {
      await engine.renameColumn(t, from, to);
      cols = cols.map((c) => (c.name === from ? { ...c, name: to } : c));
      if (key) key.splice(0, key.length, ...key.map((k) => (k === from ? to : k)));
    }
  }
  for (const c of cols.filter((c) => !has(next, c.name))) {
    if (key?.includes(c.name)) throw new EgressError('VERIFY_FAILED', `${t.schema}.${t.table}: key column ${c.name} was dropped; rebuild from a later reload set`);
    await engine.dropColumn(t, c.name);
  }
  cols = cols.filter((c) => has(next, c.name));
  for (const n of next) {
    const c = cols.find((x) => x.name === n.name);
    if (!c) {
      await engine.addColumn(t, n);
      cols.push(n);
    } else if (!sameType(c, n)) {
      await engine.retypeColumn(t, n);
      cols = cols.map((x) => (x.name === n.name ? n : x));
    }
  }
  return cols;
}

/**
 * Runs `fn` (which reads the file and calls finish()); when it fails otherwise than by the file's
 * check (a value the target refuses, a malformed record), the file is checked on its own, so that
 * a changed file is reported as such rather than by its first symptom.
 */
export async function checked<T>(cat: Catalog, rel: string, entry: ManifestFileEntry, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isEgressError(e) && e.code === 'VERIFY_FAILED') throw e;
    if (cat.verify) {
      const again = openVerified(cat.store, rel, entry, true);
      for await (const _ of again.chunks()) void _;
      again.finish();
    }
    throw e;
  }
}

export interface TableResult {
  rows: number;
  reloadRows: number;
  changes: number;
  columns: SchemaColumn[];
  reloadLsn: string | null;
}

/**
 * Creates `target` (which must not exist) and fills it. With `fromLsn` (load's re-application
 * after a reload registered late) only streaming rows at or after it are read.
 */
export async function rebuildTable(
  cat: Catalog,
  engine: Engine,
  plan: TablePlan,
  target: QName,
  asOf: AsOf,
  progress: Progress | null,
  limits?: StagerLimits,
): Promise<TableResult> {
  const key = keyOf(plan.schema) ? [...keyOf(plan.schema)!] : null;
  let cols = plan.schema.columns;
  await engine.createTable(target, cols, key);
  let reloadRows = 0;
  if (plan.reload) {
    const w = plan.reload.window;
    const parts = w.manifest.files.filter((f) => f.type === 'full_reload').sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const f of parts) {
      const rel = `${w.dir}/${f.name}`;
      const file = openVerified(cat.store, rel, f, cat.verify);
      const n = await checked(cat, rel, f, () => engine.loadReload(target, cols, cols.map((c) => c.name), file));
      reloadRows += n;
      progress?.tick(n);
      progress?.fileDone();
    }
  }
  const S = plan.reload?.lsn ?? '';
  const r = await applyStreaming(cat, engine, target, plan.streaming, cols, key, S, asOf, progress, limits);
  cols = r.columns;
  return { rows: reloadRows + r.changes, reloadRows, changes: r.changes, columns: cols, reloadLsn: plan.reload?.lsn ?? null };
}

/** Applies the streaming files of `windows` (rows with S ≤ _lsn, before the as-of point). */
export async function applyStreaming(
  cat: Catalog,
  engine: Engine,
  target: QName,
  windows: Window[],
  startCols: SchemaColumn[],
  key: string[] | null,
  S: string,
  asOf: AsOf,
  progress: Progress | null,
  given?: StagerLimits,
): Promise<{ columns: SchemaColumn[]; changes: number }> {
  const limits = given ?? engine.stageLimits ?? DEFAULT_LIMITS;
  let cols = startCols;
  let stager = new Stager(engine, target, cols, key, limits);
  let changes = 0;
  for (const w of windows) {
    const f = w.manifest.files.find((x) => x.type === 'streaming')!;
    const schema = await readSchema(cat, w);
    const next = schema.columns;
    if (next.length !== cols.length || next.some((c, i) => c.name !== cols[i].name || c.type !== cols[i].type)) {
      await stager.flush();
      changes += stager.applied;
      cols = await evolve(engine, target, cols, next, await readWindowDoc(cat, w, 'ddl'), key);
      stager = new Stager(engine, target, cols, key, limits);
    }
    const rel = `${w.dir}/${f.name}`;
    if (engine.applyStreamingFile && key) {
      // The engine reads the file itself (DuckDB): what the stager holds goes first.
      await stager.flush();
      const file = openVerified(cat.store, rel, f, cat.verify);
      const n = await checked(cat, rel, f, () => engine.applyStreamingFile!(target, cols, key, file, { S, asOf }));
      if (n !== null) {
        changes += n;
        progress?.tick(file.rows);
        progress?.fileDone();
        continue;
      }
    }
    const file = openVerified(cat.store, rel, f, cat.verify);
    let header: string[] | null = null;
    const pending: { fields: (string | null)[]; size: number }[] = [];
    const splitter = new CsvRecordRanges((buf, start, end) => {
      const fields = recordFields(buf, start, end);
      if (!header) {
        header = fields.map((x) => utf8Of(x!));
        return;
      }
      pending.push({ fields, size: end - start });
    });
    await checked(cat, rel, f, async () => {
      for await (const chunk of file.chunks()) {
        splitter.push(chunk);
        for (const p of pending) {
          const lsn = p.fields[0]!;
          if (lsn < S) continue;
          if (!rowBefore(asOf, lsn, p.fields[3]!)) continue;
          await stager.add(p.fields, header!, p.size);
        }
        progress?.tick(pending.length);
        pending.length = 0;
      }
      splitter.end();
      file.finish();
    });
    progress?.fileDone();
  }
  await stager.flush();
  changes += stager.applied;
  return { columns: cols, changes };
}
