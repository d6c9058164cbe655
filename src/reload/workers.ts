/**
 * The pool of `reload.workers` connections that export on one snapshot. Each worker imports the
 * snapshot in a REPEATABLE READ READ ONLY transaction; the first takes ACCESS SHARE locks on every
 * table (with a lock_timeout: a TRUNCATE or ALTER that got there first is an error, not a hang;
 * after the lock none can run until we are done, and TRUNCATE is not MVCC-safe), the others lock
 * each group's tables as they take it (chunk-queue.ts); they pull chunks from
 * a shared queue and streams `COPY (SELECT ...) TO STDOUT` straight through gzip into a temporary
 * file as the CSV of `(FORMAT csv, HEADER)` (copy-export.ts and copy-sink.ts: the byte path, native
 * where the addon is built, which reads COPY's cheaper text format and writes the CSV itself): no
 * per-row work in JavaScript, memory bounded by stream buffers. A worker ends its transaction (and
 * so releases its locks) as soon as it has no more to copy (the first one once every other has
 * too), before anything else of the export's finish that could wait on the application's tables
 * (reloader.ts).
 * https://www.postgresql.org/docs/15/sql-copy.html
 */
import { quoteIdent } from '../ident.js';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config/index.js';
import { connectClient } from '../db/connect.js';
import type { GzipFileStats } from '../output/gzip-file.js';
import { ctidCondition, readsOnThread, type ChunkRange } from './planner.js';
import { copyFilesEnded } from './copy-export.js';
import { createCopySink } from './copy-sink.js';
import { WORKER_APPLICATION } from './preconnect.js';
import type { MerkleSummary } from '../output/table-window.js';


export interface ChunkTask {
  opId: number;
  index: number;
  range: ChunkRange;
  /** `COPY (SELECT <columns> FROM <table><where>)`: exactly `COPY table` apart from excluded columns. */
  schema: string;
  table: string;
  columns: readonly string[];
  partitioned: boolean;
  /** The chunk's share of the table's pages at the plan (planner.ts chunkHeapBytes). */
  heapBytes: number;
}

export interface ChunkResult {
  task: ChunkTask;
  tmpPath: string;
  rows: number;
  stats: GzipFileStats;
  merkle: MerkleSummary;
  /** The file was fsynced (false: its batch makes it durable: commit/batch-commit.ts). */
  synced: boolean;
}

/** Files of one worker that may wait for their fsync while it runs its next COPY. */
const PENDING_FILES = 8;

/** The COPY of a chunk; `format` is the sink's (copy-sink.ts): csv with its header, or text. */
export function copySql(t: ChunkTask, format: 'csv' | 'text' = 'csv'): string {
  const to = format === 'csv' ? 'TO STDOUT (FORMAT csv, HEADER)' : 'TO STDOUT';
  const cols = t.columns.map(quoteIdent).join(', ');
  const table = `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
  const where = t.partitioned ? '' : ctidCondition(t.range);
  // A whole plain table: `COPY table (columns)` copies the same rows as `SELECT columns FROM ONLY
  // table` (COPY TO never reads child tables) without planning a query, ~0.15 ms of server CPU
  // per table that counts when an initial export copies hundreds of small ones. (No column list
  // without columns: a table whose every column is excluded keeps the SELECT form.)
  // https://www.postgresql.org/docs/15/sql-copy.html
  if (!t.partitioned && where === '' && t.columns.length) return `COPY ${table} (${cols}) ${to}`;
  // ONLY: legacy inheritance children are tables of their own (pgoutput publishes them apart);
  // a partitioned root has no rows of its own and is read with its partitions.
  return `COPY (SELECT ${cols} FROM ${t.partitioned ? '' : 'ONLY '}${table}${where}) ${to}`;
}

/** A table's name as LOCK takes it, also the key of what a worker holds. */
function qualified(t: { schema: string; table: string }): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
}

export class ExportWorker {
  /** Whether the transaction (and so every lock it holds) is over. */
  private ended = false;
  /** This worker's files whose fsync may still run (copy). */
  private readonly unsynced: Promise<void>[] = [];
  private closed = false;
  /** The tables this transaction holds ACCESS SHARE on ("schema.table", quoted). */
  private readonly locked: Set<string>;

  private constructor(
    readonly client: pg.Client,
    /** The server process, to find who waits on our locks (/ready). */
    readonly pid: number,
    /** When the locks were granted (ms). */
    readonly lockedAt: number,
    locked: string[],
  ) {
    this.locked = new Set(locked);
  }

  /** Holds its snapshot and locks (the transaction is open). */
  get holdsLocks(): boolean {
    return !this.ended;
  }

  /**
   * Connects, imports the snapshot and locks `tables` ACCESS SHARE until the end of its
   * transaction. The first worker locks every table of the run and waits up to 30 s
   * (`lockTimeout`: a DDL that got there first); the others lock none here, only each group's
   * tables before they copy it (lockGroup, chunk-queue.ts).
   */
  static async open(
    cfg: Config,
    snapshot: string,
    tables: { schema: string; table: string }[],
    lockTimeout: string,
    /** A connection opened ahead (preconnect.ts), else one is made here. */
    connected?: pg.Client | null,
  ): Promise<ExportWorker> {
    const client = connected ?? (await connectClient(cfg.source, { application_name: WORKER_APPLICATION }));
    try {
      // Two round trips (the statements of each go as one simple query, run in order; an error
      // stops the rest): the snapshot first in the transaction, as SET TRANSACTION SNAPSHOT
      // requires, then the locks. synchronize_seqscans off: a table read in one chunk is a plain
      // sequential scan, which could otherwise join another scan of the same table mid-way and so
      // write its rows in a different order than COPY does (tables over shared_buffers/4;
      // https://www.postgresql.org/docs/current/runtime-config-compatible.html#GUC-SYNCHRONIZE-SEQSCANS).
      await client.query(
        `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '${snapshot.replace(/'/g, "''")}'; ` +
          `SET LOCAL lock_timeout = '${lockTimeout}'; SET LOCAL synchronize_seqscans = off`,
      );
      const names = tables.map(qualified);
      const lock = names.length ? `LOCK TABLE ${names.join(', ')} IN ACCESS SHARE MODE; ` : '';
      // The server's pid, not the connection's BackendKeyData (a pooler's own there).
      const r = (await client.query(`${lock}SELECT pg_backend_pid()::text AS pid`)) as pg.QueryResult | pg.QueryResult[];
      const last = Array.isArray(r) ? r[r.length - 1] : r;
      return new ExportWorker(client, Number((last.rows[0] as { pid: string }).pid), Date.now(), names);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Locks the tables of `tasks` that this transaction does not hold yet, ACCESS SHARE NOWAIT, in
   * a savepoint: false (and nothing locked, the transaction usable) when the server refuses one,
   * as it does when a DDL waits for a lock on it (chunk-queue.ts says why not to wait).
   * https://www.postgresql.org/docs/current/sql-lock.html
   */
  async lockGroup(tasks: readonly { schema: string; table: string }[]): Promise<boolean> {
    const need = [...new Set(tasks.map(qualified))].filter((n) => !this.locked.has(n));
    if (!need.length) return true;
    try {
      await this.client.query(`SAVEPOINT pg_egress_lock; LOCK TABLE ${need.join(', ')} IN ACCESS SHARE MODE NOWAIT; RELEASE SAVEPOINT pg_egress_lock`);
    } catch (e) {
      // 55P03 lock_not_available: https://www.postgresql.org/docs/current/errcodes-appendix.html
      if ((e as { code?: string }).code !== '55P03') throw e;
      await this.client.query('ROLLBACK TO SAVEPOINT pg_egress_lock; RELEASE SAVEPOINT pg_egress_lock');
      return false;
    }
    for (const n of need) this.locked.add(n);
    return true;
  }

  /**
   * Streams chunks into gzip files in `tmpDir`, one file each, in one query (copy-export.ts
   * copyFilesEnded); `onProgress` reports raw bytes and records as they pass, so progress moves
   * during a chunk, not only at its end. Resolves when the COPYs are over (the connection is free
   * for the next ones), with each chunk's result and `durable`: settles when its file is fsynced
   * and closed, or rejects with the write error. At most PENDING_FILES files wait for their fsync
   * before the worker waits too (a slow disk does not pile up open files).
   */
  async copy(
    tasks: ChunkTask[],
    cfg: Config,
    tmpDir: string,
    onProgress: (task: ChunkTask, bytes: number, rows: number) => void,
  ): Promise<{ result: ChunkResult; durable: Promise<void> }[]> {
    while (this.unsynced.length >= PENDING_FILES) await this.unsynced.shift();
    const copies = tasks.map((task) => {
      const sink = createCopySink(cfg.output.gzipLevel, { columns: task.columns });
      return {
        task,
        sql: copySql(task, sink.format),
        opts: {
          path: path.join(tmpDir, `${randomBytes(8).toString('hex')}.csv.gz`),
          gzipLevel: cfg.output.gzipLevel,
          fileMode: cfg.output.fileMode,
          onProgress: (bytes: number, rows: number) => onProgress(task, bytes, rows),
          sink,
          // A query of several COPYs pays for its thread once (planner.ts THREAD_MIN_BYTES).
          thread: tasks.length > 1 || readsOnThread(task.heapBytes, task.partitioned),
          // Small tables are registered many to a batch, which syncs them together (sync-policy.ts).
          fsync: tasks.length === 1,
        },
      };
    });
    const ended = await copyFilesEnded(this.client, copies);
    return ended.map(({ durable, ...r }, i) => {
      // The caller handles the rejection; here it only frees a place.
      this.unsynced.push(durable.catch(() => undefined));
      return { result: { task: copies[i].task, tmpPath: copies[i].opts.path, ...r }, durable };
    });
  }

  /** A query in the worker's transaction: its snapshot's view, under the locks it holds. */
  query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.client.query<R>(sql, params);
  }

  /** Ends the transaction (every lock is released) and the connection; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.ended) await this.client.query('COMMIT').catch(() => undefined);
    this.ended = true;
    await this.client.end().catch(() => undefined);
  }

  /** Ends the connection at once (shutdown): a COPY in progress fails, the server ends the transaction. */
  async kill(): Promise<void> {
    this.ended = true;
    this.closed = true;
    await this.client.end().catch(() => undefined);
  }
}
