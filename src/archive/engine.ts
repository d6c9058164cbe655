/**
 * What rebuild and load need from a target database: DDL from schema.yml, a bulk load of reload
 * files, and set-based application of a batch of staged changes. Two implementations:
 * engine-pg.ts (COPY, temp staging table) and engine-duckdb.ts (read_csv / appender).
 *
 * A staged batch (stager.ts) holds each change once, in (_lsn, _seq) order, numbered `n`; TOAST
 * columns that the server did not send are already filled from the batch's earlier versions of
 * the row, or listed in `unresolved` with the lookup key `lk` of the row's version in the target
 * before the batch. Applying it: fill `unresolved` from the target, delete every key the batch
 * touches, insert the last version of each key unless it is a delete. Without a key (REPLICA
 * IDENTITY FULL and no primary key) rows are matched on all columns, as a multiset.
 */
import { qualifiedName, quoteIdent } from '../ident.js';
import type { SchemaColumn } from './catalog.js';
import type { AsOf } from './plan.js';
import type { VerifiedFile } from './verified-reader.js';

export interface QName {
  schema: string;
  table: string;
}

export interface StagedRow {
  n: number;
  op: 'I' | 'U' | 'D';
  /** Columns whose value is the target's (before the batch) row with key `lk`. */
  unresolved: string[] | null;
  lk: (string | null)[] | null;
  /** Values in the order of the batch's columns, as byte strings (latin1: one char per byte). */
  values: (string | null)[];
}

export interface StagedBatch {
  columns: SchemaColumn[];
  /** Key columns, or null: match on all columns (a multiset). */
  key: string[] | null;
  /** A TRUNCATE came in this batch after the rows applied before it: empty the table first. */
  truncateFirst: boolean;
  rows: StagedRow[];
}

/** Which rows of a streaming file apply: `S` ≤ _lsn, and before the as-of point (plan.ts rowBefore). */
export interface StreamFilter {
  S: string;
  asOf: AsOf;
}

export interface Engine {
  readonly kind: 'postgres' | 'duckdb';
  /** How many staged rows/bytes a batch holds for this target (default: stager.ts DEFAULT_LIMITS). */
  readonly stageLimits?: { maxRows: number; maxBytes: number };
  begin(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  tableExists(t: QName): Promise<boolean>;
  /** `cascade`: also the views on it (load's views of partitioned roots, recreated after). */
  dropTable(t: QName, cascade?: boolean): Promise<void>;
  /** Replaces a view (load: a partitioned root as the union of its leaves); null `sql` drops it. */
  replaceView(t: QName, sql: string | null): Promise<void>;
  createTable(t: QName, cols: SchemaColumn[], key: string[] | null): Promise<void>;
  addColumn(t: QName, c: SchemaColumn): Promise<void>;
  dropColumn(t: QName, name: string): Promise<void>;
  renameColumn(t: QName, from: string, to: string): Promise<void>;
  retypeColumn(t: QName, c: SchemaColumn): Promise<void>;
  truncate(t: QName): Promise<void>;
  /** Loads a reload file (header = its column names, all in `cols`); returns the rows loaded. */
  loadReload(t: QName, cols: SchemaColumn[], header: string[], file: VerifiedFile): Promise<number>;
  applyBatch(t: QName, b: StagedBatch): Promise<void>;
  /**
   * Optional: applies a whole streaming file set-based in the target (the rows with `S` ≤ _lsn
   * before the as-of point), after checking the file. Returns the rows applied, or null when it
   * leaves the file to the stager (stager.ts), which then reads it again.
   */
  applyStreamingFile?(t: QName, cols: SchemaColumn[], key: string[], file: VerifiedFile, filter: StreamFilter): Promise<number | null>;
  /**
   * Optional (DuckDB): the rebuild builds each table under a scratch name and may commit between
   * batches (`intermediateCommits`), then swaps it in (`renameTable`) in the last transaction.
   */
  intermediateCommits?: boolean;
  renameTable?(from: QName, to: string): Promise<void>;
  /** Appends all rows of `from` into `to` by column name (partition leaves into their root). */
  appendTable(to: QName, from: QName, columns: string[]): Promise<void>;
  /** SQL with positional parameters ($1…), for the load bookkeeping table. */
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export { quoteIdent };
export const qname = (t: QName): string => qualifiedName(t.schema, t.table);
export const quoteLiteral = (s: string): string => "'" + s.replace(/'/g, "''") + "'";

/** The `unresolved` list as one string (`\x1f`-delimited), testable with strpos in both engines. */
export const UNIT = '\x1f';
export const unresolvedText = (names: string[] | null): string | null => (names && names.length ? UNIT + names.join(UNIT) + UNIT : null);
