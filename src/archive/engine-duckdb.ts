/**
 * DuckDB target through @duckdb/node-api (imported only here, and this file only when a duckdb:
 * or csv: target is used). Types follow types.ts (`text: true`: every column VARCHAR holding
 * PostgreSQL's text, for csv: and verify --against-source). Reload files are read by DuckDB's own
 * CSV reader with every option explicit — its defaults would turn `""` into NULL
 * (allow_quoted_nulls) and guess types — as VARCHAR, then cast per column; changes are appended
 * to a staging table through the appender and applied set-based, as on PostgreSQL. DuckDB tables
 * get no PRIMARY KEY: a key deleted and inserted again in one transaction can trip DuckDB's
 * eager unique-constraint checks; keys are matched by joins.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SchemaColumn } from './catalog.js';
import { qname, quoteIdent, quoteLiteral, unresolvedText, UNIT, type Engine, type QName, type StagedBatch, type StreamFilter } from './engine.js';
import { stageFile } from './duck-changes.js';
import { capMallocArenas, collectSooner, configureDuckdbAllocator, limitYoungGeneration, trimMalloc } from './malloc-ctl.js';
import { recordFields, utf8Of } from './record-text.js';
import { duckdbType, type DuckType } from './types.js';
import type { VerifiedFile } from './verified-reader.js';
import { EgressError } from '../errors.js';
import { CsvRecordRanges } from '../output/csv.js';

/**
 * DuckDB's CSV reader holds a few buffers of `buffer_size` (its default: 16 × 2 MB), each outside
 * `memory_limit`'s accounting until it is pinned. The reader is sized by the file instead: the
 * longest record, measured while the file is checked before DuckDB reads it, at least 1 MiB.
 * PG_EGRESS_DUCKDB_MAX_LINE sets a fixed size instead.
 */
const MIN_BUFFER = 1024 * 1024;
const FIXED_LINE = process.env.PG_EGRESS_DUCKDB_MAX_LINE ? Number(process.env.PG_EGRESS_DUCKDB_MAX_LINE) : null;

/**
 * `max_line_size` and `buffer_size` (DuckDB wants the buffer at least as large as a line) for a
 * file whose longest record has `longest` bytes: the next whole MiB above it, at least 1 MiB.
 */
export function csvBufferSize(longest: number): number {
  if (FIXED_LINE) return FIXED_LINE;
  return Math.max(MIN_BUFFER, Math.ceil((longest + 4096) / MIN_BUFFER) * MIN_BUFFER);
}

export interface DuckEngine extends Engine {
  /** Streams a table's rows as PostgreSQL-style text fields (csv: export, digests). */
  rows(t: QName, cols: string[], orderBy?: string[]): AsyncGenerator<(string | null)[][]>;
}

/**
 * `sqlChanges`: streaming files applied by DuckDB itself (duck-changes.ts; the engine then has
 * `applyStreamingFile`) — for `load`, which commits per batch. A rebuild is one transaction for
 * the whole table and stages through Node in bounded batches (stager.ts), so its memory does not
 * depend on how many files it reads: with the SQL path, table-rebuild.ts applies what the stager
 * holds before each file, one batch per file however small.
 */
export async function openDuckdb(file: string, o: { text?: boolean; sqlChanges?: boolean } = {}): Promise<DuckEngine> {
  capMallocArenas();
  limitYoungGeneration();
  collectSooner();
  configureDuckdbAllocator();
  const { DuckDBInstance } = await import('@duckdb/node-api');
  let inst;
  try {
    inst = await DuckDBInstance.create(file);
  } catch (e) {
    throw new EgressError('OUTPUT_IO', `cannot open DuckDB database ${file} (--into): ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
  const conn = await inst.connect();
  await conn.run(`SET TimeZone = 'UTC'`);
  // DuckDB's buffer pool defaults to 80% of RAM; keep the process under the 256 MB the tool
  // promises (DuckDB spills to disk beyond it). Its library and Node take ~110 MB before any data,
  // and every thread adds CSV buffers outside the pool (measured on a 2M-row gzip import: 2
  // threads 324 MB peak, 1 thread 243 MB at a 128 MB pool, 208 MB at 64 MB), so one thread and a
  // 64 MB pool by default. PG_EGRESS_DUCKDB_MEMORY_LIMIT and PG_EGRESS_DUCKDB_THREADS override.
  const limit = process.env.PG_EGRESS_DUCKDB_MEMORY_LIMIT ?? '64MB';
  await conn.run(`SET memory_limit = ${quoteLiteral(limit)}`);
  await conn.run(`SET preserve_insertion_order = false`);
  await conn.run(`SET threads = ${Number(process.env.PG_EGRESS_DUCKDB_THREADS ?? 1) || 1}`);
  // Blocks the buffer pool evicts go back to DuckDB's allocator (jemalloc), which keeps freed pages
  // until a bulk deallocation larger than this threshold (default 512 MB, never reached with a
  // 64 MB pool) makes it return them to the system: with a quarter of the pool, the reload phase of
  // a 2M-row load peaked at ~185 MB instead of 300–330 MB, at the same speed.
  await conn.run(`SET allocator_bulk_deallocation_flush_threshold = ${quoteLiteral(process.env.PG_EGRESS_DUCKDB_FLUSH_THRESHOLD ?? '16MB')}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-duck-'));
  const typeOf = (c: SchemaColumn): DuckType => (o.text ? { type: 'VARCHAR', cast: (e) => e, text: true } : duckdbType(c.type));
  const colDefs = (cols: SchemaColumn[]) => cols.map((c) => `${quoteIdent(c.name)} ${typeOf(c).type}`).join(', ');
  const run = async (sql: string) => void (await conn.run(sql));
  let seq = 0;

  function readCsv(file: string, names: string[], longest: number): string {
    const columns = names.map((n) => `${quoteLiteral(n)}: 'VARCHAR'`).join(', ');
    const size = csvBufferSize(longest);
    return `read_csv(${quoteLiteral(file)}, header = true, delim = ',', quote = '"', escape = '"', new_line = '\\n', auto_detect = false, allow_quoted_nulls = false, nullstr = '', columns = {${columns}}, max_line_size = ${size}, buffer_size = ${size}, compression = '${file.endsWith('.gz') ? 'gzip' : 'none'}')`;
  }

  /**
   * DuckDB reads files itself: the file is checked first (streamed through the hashes) and read by
   * DuckDB only when it checked out — the archive's files are immutable; from S3 through a local
   * temporary copy written while it is checked. `header`: the file's first record, parsed.
   */
  async function checkedLocal(file: VerifiedFile): Promise<{ csvPath: string; header: string[]; done: () => void }> {
    const local = file.localPath;
    let header: string[] | null = null;
    const first = new CsvRecordRanges((buf, start, end) => {
      header ??= recordFields(buf, start, end).map((x) => utf8Of(x ?? ''));
    });
    const csvPath = local ?? path.join(tmp, `file-${++seq}.csv`);
    const ws = local ? null : createWriteStream(csvPath);
    try {
      for await (const c of file.chunks()) {
        if (!header) first.push(c);
        if (ws && !ws.write(c)) await new Promise<void>((r) => ws.once('drain', () => r()));
      }
      if (ws) await new Promise<void>((resolve, reject) => ws.end((e?: Error | null) => (e ? reject(e) : resolve())));
      file.finish();
    } catch (e) {
      ws?.destroy();
      if (!local) rmSync(csvPath, { force: true });
      throw e;
    }
    return { csvPath, header: header ?? [], done: () => (local ? undefined : rmSync(csvPath, { force: true })) };
  }

  /**
   * Staging tables are made once per column layout and emptied after each use, never created and
   * dropped per batch: inside one transaction (a rebuild is one) DuckDB keeps a dropped table's
   * blocks until the commit, and ~100 batches of create + drop (a rebuild of a few hundred small
   * streaming files) ran the 64 MB pool out of memory ("failed to pin block"). Emptied rows are
   * only marked deleted until the commit too, but those blocks DuckDB can spill to disk. After a
   * rollback the tables made in it are gone: the next use makes new ones.
   */
  const scratch = new Map<string, string>();
  /** Dropped after each commit, outside any transaction (when DuckDB gives their blocks back). */
  async function dropScratch(): Promise<void> {
    const names = [...scratch.values()];
    scratch.clear();
    for (const name of names) await run(`DROP TABLE IF EXISTS ${name}`);
  }

  /**
   * A rebuild (intermediateCommits) commits after each reload part and every 50,000 changed rows
   * or 20 batches: everything a transaction changes stays in DuckDB's memory until its commit,
   * deleted rows and dropped tables included, and inside one transaction a rebuild of ~1M changes
   * ran the 64 MB pool out of memory whatever the batches looked like. rebuild.ts builds under a
   * scratch name and swaps the table in at the end, so the target still changes all at once.
   */
  let inTx = false;
  let pending = { rows: 0, batches: 0 };
  async function step(rows: number, force: boolean): Promise<void> {
    if (!engine.intermediateCommits || !inTx) return;
    pending = { rows: pending.rows + rows, batches: pending.batches + 1 };
    if (!force && pending.rows < 50_000 && pending.batches < 20) return;
    pending = { rows: 0, batches: 0 };
    await run('COMMIT');
    await dropScratch();
    await run('BEGIN TRANSACTION');
  }

  /** An empty temp table for `role` with these column definitions; its name needs no quoting. */
  async function scratchTable(role: string, defs: string[]): Promise<string> {
    const layout = defs.join(', ');
    let name = scratch.get(`${role}:${layout}`);
    if (!name) {
      name = `_pg_egress_${role}_${++seq}`;
      await run(`CREATE TEMP TABLE ${name} (${layout})`);
      scratch.set(`${role}:${layout}`, name);
    }
    return name;
  }

  /** The raw staging table's layout: `_n`, `_op`, `_unres`, `_lk…` (the old key), the columns, as text. */
  const rawDefs = (columns: SchemaColumn[], key: string[] | null) => ['_n BIGINT', '_op VARCHAR', '_unres VARCHAR', ...(key ?? []).map((_, i) => `_lk${i} VARCHAR`), ...columns.map((c) => `${quoteIdent(c.name)} VARCHAR`)];

  /**
   * Applies the raw staging table `raw` (rawDefs) to `t` and empties it: casts it into a typed
   * stage, with `_unres` columns taken from the target's row of the old key (`fill`), deletes every
   * key it touches and inserts the last version of each key unless it is a delete; without a key,
   * as a multiset. Nothing here UPDATEs: inside a rebuild's one transaction DuckDB keeps every
   * update's old values in memory until the commit (an UPDATE of the stage per batch ran the pool
   * out of memory after ~1M changes); the fill is a join while the stage is written.
   */
  async function applyRaw(t: QName, columns: SchemaColumn[], key: string[] | null, raw: string, fill: boolean): Promise<void> {
    const keyCols = key ? key.map((k) => columns.find((c) => c.name === k)!) : [];
    const st = await scratchTable('stage', ['_n BIGINT', '_op VARCHAR', '_unres VARCHAR', ...keyCols.map((c, i) => `_lk${i} ${typeOf(c).type}`), ...columns.map((c) => `${quoteIdent(c.name)} ${typeOf(c).type}`)]);
    const cols = columns.map((c) => quoteIdent(c.name));
    const target = qname(t);
    const lks = keyCols.map((c, i) => typeOf(c).cast(`r._lk${i}`));
    const join = key && fill;
    // Joined on the old key (`_lk…`, set only on rows with `_unres`): the target's row before the
    // batch. The target is narrowed to those keys first (a semi join, hashing the batch's keys):
    // hashing the whole target for the join ran the 64 MB pool out of memory in a long rebuild.
    const onKey = (o: string, i: number) => `${o}.${quoteIdent(key![i])} = ${typeOf(keyCols[i]).cast(`k._lk${i}`)}`;
    const wanted = join ? `SELECT * FROM ${target} x WHERE EXISTS (SELECT 1 FROM ${raw} k WHERE k._unres IS NOT NULL AND ${key.map((_, i) => onKey('x', i)).join(' AND ')})` : '';
    const from = join ? `${raw} r LEFT JOIN (${wanted}) o ON ${key.map((k, i) => `o.${quoteIdent(k)} = ${lks[i]}`).join(' AND ')}` : `${raw} r`;
    const vals = columns.map((c, i) => {
      const v = typeOf(c).cast(`r.${cols[i]}`);
      return join ? `CASE WHEN o.${quoteIdent(key[0])} IS NOT NULL AND strpos(r._unres, ${quoteLiteral(UNIT + c.name + UNIT)}) > 0 THEN o.${cols[i]} ELSE ${v} END` : v;
    });
    await run(`INSERT INTO ${st} SELECT r._n, r._op, r._unres, ${[...lks, ...vals].join(', ')} FROM ${from}`);
    await run(`DELETE FROM ${raw}`);
    if (key) {
      const k = key.map(quoteIdent);
      await run(`DELETE FROM ${target} USING (SELECT DISTINCT ${k.join(', ')} FROM ${st}) s WHERE ${k.map((c) => `${target}.${c} = s.${c}`).join(' AND ')}`);
      // The last version of each key (`_n` is unique) through an aggregate and a join, which DuckDB
      // spills beyond memory_limit; DISTINCT ON ran out of memory on a 200,000-row file in 64 MB.
      const last = `SELECT ${k.join(', ')}, max(_n) AS _n FROM ${st} GROUP BY ${k.join(', ')}`;
      await run(`INSERT INTO ${target} (${cols.join(', ')}) SELECT ${cols.map((c) => `x.${c}`).join(', ')} FROM ${st} x JOIN (${last}) m ON m._n = x._n WHERE x._op <> 'D'`);
    } else {
      const rowList = (alias: string) => `[${cols.map((c) => `CAST(${alias}.${c} AS VARCHAR)`).join(', ')}]`;
      const d = await scratchTable('net', ['_n BIGINT', '_op VARCHAR', '_unres VARCHAR', ...columns.map((c) => `${quoteIdent(c.name)} ${typeOf(c).type}`), '_r VARCHAR[]', '_net BIGINT', '_first BIGINT']);
      await run(`INSERT INTO ${d} SELECT * FROM (SELECT s.*, ${rowList('s')} AS _r, sum(CASE WHEN _op = 'D' THEN -1 ELSE 1 END) OVER (PARTITION BY ${rowList('s')}) AS _net, row_number() OVER (PARTITION BY ${rowList('s')} ORDER BY _n) AS _first FROM ${st} s) x WHERE _first = 1`);
      await run(`DELETE FROM ${target} WHERE rowid IN (SELECT rid FROM (SELECT t.rowid AS rid, d._net, row_number() OVER (PARTITION BY d._r) AS _k FROM ${target} t JOIN ${d} d ON d._r = ${rowList('t')} WHERE d._net < 0) x WHERE _k <= -_net)`);
      await run(`INSERT INTO ${target} (${cols.join(', ')}) SELECT ${cols.map((c) => `d.${c}`).join(', ')} FROM ${d} d, range(CAST(d._net AS BIGINT)) WHERE d._net > 0`);
      await run(`DELETE FROM ${d}`);
    }
    await run(`DELETE FROM ${st}`);
  }

  /**
   * A streaming file applied by DuckDB itself (duck-changes.ts), for `load` (o.sqlChanges); null:
   * left to the stager.
   */
  async function applyStreamingFile(t: QName, cols: SchemaColumn[], key: string[], file: VerifiedFile, f: StreamFilter) {
    const { csvPath, header, done } = await checkedLocal(file);
    try {
      const all = async (sql: string) => (await conn.runAndReadAll(sql)).getRowsJson() as unknown[][];
      const db = { run, all, one: async (sql: string) => (await all(sql))[0], table: (defs: string[]) => scratchTable('src', defs) };
      const raw = await scratchTable('raw', rawDefs(cols, key));
      const staged = await stageFile(db, { csv: readCsv(csvPath, header, file.longestRecord), header, cols, key, filter: f, raw });
      if (!staged) return null;
      if (staged.truncate) await run(`DELETE FROM ${qname(t)}`);
      if (staged.rows) await applyRaw(t, cols, key, raw, staged.fill);
      trimMalloc();
      return staged.rows;
    } finally {
      done();
    }
  }

  const engine: DuckEngine = {
    kind: 'duckdb',
    // Half the stager's default: the staged rows are JS strings until the appender takes them, and
    // V8's heap grows with them (bench row A: peak RSS ~20 MB lower, same time).
    stageLimits: { maxRows: 10_000, maxBytes: 8 * 1024 * 1024 },
    begin: async () => {
      await run('BEGIN TRANSACTION');
      inTx = true;
    },
    async commit() {
      await run('COMMIT');
      inTx = false;
      await dropScratch();
    },
    rollback: async () => {
      inTx = false;
      await run('ROLLBACK').catch(() => undefined);
      await dropScratch().catch(() => undefined);
    },
    renameTable: (from, to) => run(`ALTER TABLE ${qname(from)} RENAME TO ${quoteIdent(to)}`),
    async tableExists(t) {
      const r = await conn.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM information_schema.tables WHERE table_schema = ${quoteLiteral(t.schema)} AND table_name = ${quoteLiteral(t.table)}`);
      return Number(r.getRowsJson()[0][0]) > 0;
    },
    dropTable: (t) => run(`DROP TABLE IF EXISTS ${qname(t)}`),
    async replaceView(t, sql) {
      await run(`DROP VIEW IF EXISTS ${qname(t)}`);
      if (sql) await run(`CREATE VIEW ${qname(t)} AS ${sql}`);
    },
    async createTable(t, cols) {
      await run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
      await run(`CREATE TABLE ${qname(t)} (${colDefs(cols)})`);
    },
    addColumn: (t, c) => run(`ALTER TABLE ${qname(t)} ADD COLUMN ${quoteIdent(c.name)} ${typeOf(c).type}`),
    dropColumn: (t, name) => run(`ALTER TABLE ${qname(t)} DROP COLUMN ${quoteIdent(name)}`),
    renameColumn: (t, from, to) => run(`ALTER TABLE ${qname(t)} RENAME COLUMN ${quoteIdent(from)} TO ${quoteIdent(to)}`),
    retypeColumn: (t, c) => run(`ALTER TABLE ${qname(t)} ALTER COLUMN ${quoteIdent(c.name)} SET DATA TYPE ${typeOf(c).type} USING ${typeOf(c).cast(`CAST(${quoteIdent(c.name)} AS VARCHAR)`)}`),
    truncate: (t) => run(`DELETE FROM ${qname(t)}`),
    async loadReload(t, cols, header, file: VerifiedFile) {
      const { csvPath, done } = await checkedLocal(file);
      const byName = new Map(cols.map((c) => [c.name, c]));
      const sel = header.map((h) => typeOf(byName.get(h)!).cast(quoteIdent(h)));
      const r = await conn.run(`INSERT INTO ${qname(t)} (${header.map(quoteIdent).join(', ')}) SELECT ${sel.join(', ')} FROM ${readCsv(csvPath, header, file.longestRecord)}`);
      done();
      trimMalloc();
      await step(Number(r.rowsChanged), true);
      return Number(r.rowsChanged);
    },
    async applyBatch(t, b: StagedBatch) {
      if (b.truncateFirst) await run(`DELETE FROM ${qname(t)}`);
      if (!b.rows.length) return;
      const key = b.key;
      const raw = await scratchTable('raw', rawDefs(b.columns, key));
      const ap = await conn.createAppender(raw, 'main', 'temp');
      let fill = false;
      const put = (v: string | null) => (v === null ? ap.appendNull() : ap.appendVarchar(v));
      // Values arrive as byte strings (latin1); DuckDB wants text.
      const putBytes = (v: string | null) => (v === null ? ap.appendNull() : ap.appendVarchar(Buffer.from(v, 'latin1').toString('utf8')));
      const nk = key ? key.length : 0;
      for (const r of b.rows) {
        ap.appendBigInt(BigInt(r.n));
        ap.appendVarchar(r.op);
        const u = unresolvedText(r.unresolved);
        if (u) fill = true;
        put(u);
        for (let i = 0; i < nk; i++) putBytes(r.lk ? r.lk[i] : null);
        for (const v of r.values) putBytes(v);
        ap.endRow();
      }
      ap.closeSync();
      await applyRaw(t, b.columns, key, raw, fill);
      trimMalloc();
      await step(b.rows.length, false);
    },
    ...(o.sqlChanges && process.env.PG_EGRESS_DUCKDB_SQL_CHANGES !== '0' ? { applyStreamingFile } : {}),
    async appendTable(to, from, columns) {
      const c = columns.map(quoteIdent).join(', ');
      await run(`INSERT INTO ${qname(to)} (${c}) SELECT ${c} FROM ${qname(from)}`);
    },
    async query(sql, params) {
      const r = await conn.runAndReadAll(sql.replace(/\$(\d+)/g, '$$$1'), (params ?? []) as never);
      return r.getRowObjectsJson() as Record<string, unknown>[];
    },
    async *rows(t, names, orderBy) {
      const sel = names.map((n) => `CAST(${quoteIdent(n)} AS VARCHAR)`).join(', ');
      const res = await conn.stream(`SELECT ${sel} FROM ${qname(t)}${orderBy?.length ? ` ORDER BY ${orderBy.map(quoteIdent).join(', ')}` : ''}`);
      for (;;) {
        const chunk = await res.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        yield chunk.getRows().map((r) => r.map((v) => (v === null ? null : String(v))));
      }
    },
    async close() {
      conn.closeSync();
      inst.closeSync();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
  return engine;
}
