/**
 * A streaming file's changes staged by DuckDB itself (engine-duckdb.ts applyStreamingFile): DuckDB
 * reads the checked file with read_csv and the staging rules of stager.ts become set-based SQL,
 * so the rows never become JavaScript strings (at bench scale the V8 heap that parsing and staging
 * 1M changes took was the largest part of `load --into duckdb`'s peak).
 *
 * The result is the raw staging table engine-duckdb.ts's applyBatch fills through the appender
 * (`_n`, `_op`, `_unres`, `_lk…`, the columns as VARCHAR), applied the same way. Rules, as in
 * stager.ts: rows in (_lsn, _seq) order (unique, SPEC §4); `B` rows skipped; the last `T` empties
 * the target and only the rows after it count; the last version of each key wins; an `_unchanged`
 * column takes the value of the key's latest earlier I/U row in the file that has it (what the
 * stager's chain of versions gives), else the target's row (`_unres`, filled by the UPDATE of
 * applyBatch; after a TRUNCATE the target is empty, so NULL). Left to the stager (null): keyless
 * tables (the caller's choice), `_unchanged` columns in a file where a transaction has a D before
 * a U (possibly an identity change, whose U takes them from the old key's row), deletes without a
 * key value, an unknown `_op` — which it applies or refuses as before.
 */
import type { SchemaColumn } from './catalog.js';
import { quoteIdent, quoteLiteral, UNIT, type StreamFilter } from './engine.js';
import { parseTextArray } from './types.js';

export interface DuckSql {
  run(sql: string): Promise<void>;
  /** The first row of a query's result, values as JSON. */
  one(sql: string): Promise<unknown[]>;
  all(sql: string): Promise<unknown[][]>;
  /** An empty temp table of these column definitions, made once per layout (engine-duckdb.ts scratchTable). */
  table(defs: string[]): Promise<string>;
}

export interface StagedFile {
  rows: number;
  /** A T row was among them: empty the target before applying `rows`. */
  truncate: boolean;
  /** Some rows have `_unres` columns, to fill from the target. */
  fill: boolean;
}

/** SQL condition for the rows of a streaming file that apply (plan.ts rowBefore, S ≤ _lsn). */
export function rowFilterSql(f: StreamFilter): string {
  const conds = [`_lsn >= ${quoteLiteral(f.S)}`];
  if (f.asOf.kind === 'lsn') conds.push(`_lsn < ${quoteLiteral(f.asOf.lsn)}`);
  // Both sides are `YYYY-MM-DD HH:MM:SS[.f]+00`: compared as instants, as normTs's text compares.
  else if (f.asOf.kind === 'time') conds.push(`CAST(_commit_ts AS TIMESTAMPTZ) <= CAST(${quoteLiteral(f.asOf.ts)} AS TIMESTAMPTZ)`);
  return conds.join(' AND ');
}

/**
 * Fills the empty table `raw` (engine-duckdb.ts rawDefs: `_n`, `_op`, `_unres`, `_lk…`, `cols` as
 * VARCHAR) from `csv` (a read_csv(...) expression over the file with every column VARCHAR) for key
 * `key`; null (`raw` left empty) when the stager must take the file. Every table used is emptied
 * again, never dropped: inside a transaction DuckDB keeps a dropped table's blocks until the commit.
 */
export interface StageFileOptions {
  csv: string;
  header: string[];
  cols: SchemaColumn[];
  key: string[];
  filter: StreamFilter;
  /** The result's table (empty). */
  raw: string;
}

export async function stageFile(db: DuckSql, o: StageFileOptions): Promise<StagedFile | null> {
  const inFile = new Set(o.header);
  // Names the SQL below would confuse (a table column named like a meta column): the stager's.
  if (inFile.size !== o.header.length || o.header.some((h) => /^_(pos|n|unres|lk\d+|p\d+)$/.test(h)) || o.key.some((k) => !inFile.has(k))) return null;
  const data = o.cols.filter((c) => inFile.has(c.name)).map((c) => quoteIdent(c.name));
  const src = await db.table(['_pos BIGINT', '_lsn VARCHAR', '_op VARCHAR', '_unchanged VARCHAR', ...data.map((d) => `${d} VARCHAR`)]);
  await db.run(
    `INSERT INTO ${src} SELECT row_number() OVER (ORDER BY _lsn, CAST(_seq AS BIGINT)) AS _pos, _lsn, _op, _unchanged${data.map((d) => ', ' + d).join('')} FROM ${o.csv} WHERE ${rowFilterSql(o.filter)}`,
  );
  const keyMissing = o.key.map((k) => `${quoteIdent(k)} IS NULL`).join(' OR ');
  const [unchanged, bad, tpos, changes] = await db.one(
    `SELECT count(*) FILTER (WHERE _unchanged IS NOT NULL AND _op = 'U'), ` +
      `count(*) FILTER (WHERE _op NOT IN ('I', 'U', 'D', 'T', 'B') OR _op IS NULL OR (_op = 'D' AND (${keyMissing})) OR (_unchanged IS NOT NULL AND _op <> 'U')), ` +
      `CAST(max(_pos) FILTER (WHERE _op = 'T') AS BIGINT), ` +
      // Transactions with a D before a U: possibly an identity change (D + U, SPEC §4), whose U
      // takes unchanged values from the old key's row; only the stager follows that.
      `(SELECT count(*) FROM (SELECT _lsn FROM ${src} GROUP BY _lsn HAVING min(_pos) FILTER (WHERE _op = 'D') < max(_pos) FILTER (WHERE _op = 'U')))` +
      ` FROM ${src}`,
  );
  const after = tpos === null ? 0 : Number(tpos);
  if (Number(bad) > 0 || (Number(unchanged) > 0 && Number(changes) > 0)) {
    await db.run(`DELETE FROM ${src}`);
    return null;
  }
  // `_unchanged` literals naming each column (PostgreSQL array text, parsed here as the stager does).
  const lits = Number(unchanged) > 0 ? (await db.all(`SELECT DISTINCT _unchanged FROM ${src} WHERE _unchanged IS NOT NULL AND _op = 'U'`)).map((r) => String(r[0])) : [];
  const naming = new Map<string, string[]>();
  for (const lit of lits) for (const name of parseTextArray(lit)) naming.set(name, [...(naming.get(name) ?? []), lit]);
  const keyCols = o.key.map(quoteIdent);
  const joins: string[] = [];
  const unres: string[] = [];
  const sel = o.cols.map((c, i) => {
    const q = quoteIdent(c.name);
    if (!inFile.has(c.name)) return `CAST(NULL AS VARCHAR) AS ${q}`;
    const l = naming.get(c.name);
    if (!l) return `f.${q}`;
    // Unchanged here: the value of the key's latest earlier I/U row that has it (stager.ts: the
    // previous version, whose own unchanged value came from its previous one), else the target's
    // row (`_unres`, filled by applyBatch's UPDATE; after a TRUNCATE the target is empty).
    const isUnch = (a: string) => `coalesce(${a}._op = 'U' AND ${a}._unchanged IN (${l.map(quoteLiteral).join(', ')}), false)`;
    const p = `_p${i}`;
    joins.push(`LEFT JOIN ${src} s${i} ON s${i}._pos = f.${p}`);
    unres.push(`CASE WHEN ${isUnch('f')} AND f.${p} IS NULL THEN ${quoteLiteral(UNIT + c.name + UNIT)} END`);
    return `CASE WHEN ${isUnch('f')} THEN s${i}.${q} ELSE f.${q} END AS ${q}`;
  });
  let from = `${src} f`;
  if (joins.length) {
    const prevs = o.cols.map((c, i) => {
      const l = naming.get(c.name);
      if (!l || !inFile.has(c.name)) return null;
      const has = `_op = 'I' OR (_op = 'U' AND NOT coalesce(_unchanged IN (${l.map(quoteLiteral).join(', ')}), false))`;
      return `last_value(CASE WHEN ${has} THEN _pos END IGNORE NULLS) OVER (PARTITION BY ${keyCols.join(', ')} ORDER BY _pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS _p${i}`;
    });
    from = `(SELECT *, ${prevs.filter((x) => x).join(', ')} FROM ${src} WHERE _pos > ${after}) f ${joins.join(' ')}`;
  }
  const unresSql = unres.length ? `nullif(concat(${unres.join(', ')}), '')` : 'CAST(NULL AS VARCHAR)';
  const lks = o.key.map((k, i) => (unres.length ? `CASE WHEN ${unresSql} IS NOT NULL THEN f.${quoteIdent(k)} END AS _lk${i}` : `CAST(NULL AS VARCHAR) AS _lk${i}`));
  await db.run(`INSERT INTO ${o.raw} SELECT f._pos AS _n, f._op, ${unresSql} AS _unres, ${[...lks, ...sel].join(', ')} FROM ${from} WHERE f._op IN ('I', 'U', 'D') AND f._pos > ${after}`);
  await db.run(`DELETE FROM ${src}`);
  const [rows, fill] = await db.one(`SELECT count(*), count(_unres) FROM ${o.raw}`);
  return { rows: Number(rows), truncate: tpos !== null, fill: Number(fill) > 0 };
}
