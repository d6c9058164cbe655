/**
 * The micro-batch controller: routes decoded pgoutput messages, in order, to where they go — rows
 * into their table's open window (the row encoder, src/output/row-encoder.ts), Relation messages
 * into the relation cache, `pg-egress:*` messages to src/batch/control.ts — and decides *when* a
 * flush happens (the pure policy in flush-policy.ts); the flush itself is the one batch commit
 * (src/commit/). SPEC §3–§6.
 *
 * Exactly once: a transaction whose commit LSN is below the registered LSN was already written by
 * an earlier process and is skipped; a flush registers files and the new LSN in one registry
 * transaction and only then does the slot get confirmed (the caller does that with `durableLsn`).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { lsnHex, type Lsn } from '../lsn.js';
import type { PgOutputMessage, RelationColumn, ReplicaIdentity } from '../wal/pgoutput.js';
import { formatCommitTs, pgMicrosToUnixMs } from '../wal/time.js';
import { OP } from '../output/row-encoder.js';
import { flushName, windowName } from '../output/layout.js';
import { ensureDir } from '../output/atomic.js';
import { afterCommit, idleWaitMs, intervalDue, onBegin } from './flush-policy.js';
import { Relations, type RelInfo } from './relations.js';
import { Windows, type InsertRun, type TableWindow, type Txn } from './windows.js';
import { ControlMessages, CONTROL_PREFIX } from './control.js';
import type { ControllerOptions, FlushReason } from './options.js';

export { DDL_MESSAGE_PREFIX, MOVED_MESSAGE_PREFIX, PARTITIONS_MESSAGE_PREFIX, RELOAD_MESSAGE_PREFIX, type DdlEvent } from './control.js';
export type { ControllerOptions, FlushReason, FlushSink } from './options.js';

export class BatchController {
  private readonly cfg: Config;
  private readonly log: Logger;
  private readonly relations: Relations;
  private readonly windows: Windows;
  private readonly control: ControlMessages;
  private txn: Txn | null = null;
  /** The open transaction's windows (Txn.touched), and the files among them at its Commit: reused. */
  private readonly touched = new Set<TableWindow>();
  private readonly touchedFiles: { rows: number; rawBytes: number }[] = [];
  private windowStart: number | null = null;
  private readonly tmpDir: string;
  private readonly now: () => number;
  /** End LSN of the last transaction fully processed (written into open files or skipped). */
  processedLsn: Lsn;
  /** Highest LSN whose changes are in registered files. */
  durableLsn: Lsn;
  private readonly skipBelow: Lsn;
  /** Counters for status, logs and metrics. */
  stats = { transactions: 0, rows: 0, flushes: 0, skippedTransactions: 0, files: 0, bytes: 0, rawBytes: 0 };
  /** Rows written per `schema\0table` and op (metrics read it at scrape time). */
  readonly rowsByTable: Map<string, Map<string, number>>;
  /** Commit time (ms) of the last transaction seen, for the source lag. */
  lastCommitMs: number | null = null;
  /** Durations of recent flushes in seconds, drained by the metrics histogram. */
  readonly flushSeconds: number[] = [];
  /**
   * The last flush's placing and registration, while it runs (see flush), and its failure: the
   * next flush waits for it, and a failure is thrown at the next begin, tick or flush.
   */
  private committing: Promise<void> | null = null;
  private failed: unknown = null;

  constructor(private readonly o: ControllerOptions) {
    this.cfg = o.cfg;
    this.log = o.log;
    this.processedLsn = this.durableLsn = this.skipBelow = o.registeredLsn;
    this.tmpDir = path.join(o.cfg.output.dir, '_tmp');
    this.now = o.now ?? Date.now;
    this.relations = new Relations(o.cfg, o.catalog, o.defs);
    this.windows = new Windows({ tmpDir: this.tmpDir, gzipLevel: o.cfg.output.gzipLevel, fileMode: o.cfg.output.fileMode }, this.stats);
    this.rowsByTable = this.windows.rowsByTable;
    this.control = new ControlMessages(o, this.relations, this.windows);
  }

  inTransaction(): boolean {
    return this.txn !== null;
  }

  /**
   * Rows or DDL received but not yet in registered files: in open windows, or in a flush still
   * registering or whose registration failed (never idle then: nothing past it is confirmed).
   */
  hasPending(): boolean {
    return this.windows.size > 0 || this.committing !== null || this.failed !== null;
  }

  /** Waits for a flush still registering; throws its failure. */
  async settle(): Promise<void> {
    if (this.committing) await this.committing;
    if (this.failed) throw this.failed;
  }

  /** Rows not yet in registered files per `schema.table` (the status file). */
  pendingRows(): Map<string, number> {
    return this.windows.pendingRows();
  }

  /**
   * Handles one message. Returns a promise only when it has asynchronous work (backpressure, flush):
   * not an async function, so that a row costs no promise and no microtask turn.
   */
  handle(m: PgOutputMessage): Promise<void> | undefined {
    switch (m.tag) {
      case 'begin':
        return this.begin(m.finalLsn, m.xid, m.commitTime);
      case 'commit':
        return this.commit(m.commitLsn, m.endLsn);
      case 'relation':
        return this.relation(m.relationOid, m.schema, m.name, m.replicaIdentity, m.columns);
      case 'insert': {
        const rel = this.target(m.relationOid);
        return rel ? this.windows.emit(this.txn!, rel, OP.I, m.newTuple, null) : undefined;
      }
      case 'update': {
        const rel = this.target(m.relationOid);
        return rel ? this.windows.update(this.txn!, rel, m.keyTuple, m.oldTuple, m.newTuple, this.cfg.output.beforeImages) : undefined;
      }
      case 'delete': {
        const rel = this.target(m.relationOid);
        return rel ? this.windows.delete(this.txn!, rel, m.keyTuple, m.oldTuple, this.cfg.output.beforeImages) : undefined;
      }
      case 'truncate':
        return this.truncate(m.relationOids);
      case 'message':
        if (m.prefix.startsWith(CONTROL_PREFIX)) return this.control.handle(this.txn, m.prefix, m.content, m.transactional);
        return;
      case 'type': // type names come from format_type() in table definitions
      case 'origin': // changes replayed from another origin are exported like any other
        return;
    }
  }

  /**
   * Inserts into one table from a streamed transaction's spool, from `spool[from]` (src/batch/streamed.ts):
   * what handle() would do with each, without decoding them (Windows.emitInserts).
   */
  insertRun(relOid: number, spool: Buffer, from: number, to: number): InsertRun {
    const rel = this.target(relOid);
    if (!rel) return { next: from, rows: 0, wait: undefined };
    return this.windows.emitInserts(this.txn!, rel, spool, from, to);
  }

  /**
   * A Begin. Begin, Commit and a row's Update or Delete are not async functions: each returns a
   * promise only when it waits (a flush, a file switching layout, gzip pushing back). A promise
   * and an await for each were garbage of every transaction, and V8's collections were ~11% of
   * the main thread in S2 (20,000 transactions of 11 rows; `node --cpu-prof`).
   */
  private begin(finalLsn: Lsn, xid: number, commitTime: bigint): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    const skip = finalLsn < this.skipBelow;
    this.lastCommitMs = pgMicrosToUnixMs(commitTime);
    if (!skip) {
      const next = onBegin(this.policyState(), this.lastCommitMs, this.cfg.batch);
      if (next.flush) {
        return this.flush('window').then(() => {
          this.windowStart = next.windowStart;
          this.open(finalLsn, xid, commitTime, skip);
        });
      }
      this.windowStart = next.windowStart;
    }
    this.open(finalLsn, xid, commitTime, skip);
    return undefined;
  }

  private open(finalLsn: Lsn, xid: number, commitTime: bigint, skip: boolean): void {
    // One set for every transaction (they never overlap here): emptied, not made anew.
    this.touched.clear();
    this.txn = {
      finalLsn,
      xid,
      commitTime,
      skip,
      seq: 0,
      lsnField: Buffer.from(lsnHex(finalLsn) + ',', 'latin1'),
      midField: Buffer.from(`,${xid},${formatCommitTs(commitTime)},`, 'latin1'),
      touched: this.touched,
    };
  }

  /** A Commit; a promise only when it flushes (see begin). */
  private commit(commitLsn: Lsn, endLsn: Lsn): Promise<void> | undefined {
    const t = this.txn;
    const report = 'please report this with --log-level debug output';
    if (!t) return Promise.reject(new EgressError('PROTOCOL', `pgoutput: Commit without Begin; ${report}`));
    if (commitLsn !== t.finalLsn) return Promise.reject(new EgressError('PROTOCOL', `pgoutput: Commit ${lsnHex(commitLsn)} does not match Begin ${lsnHex(t.finalLsn)}; ${report}`));
    this.txn = null;
    // Never backwards: a stream started below the registered LSN (to take the reload requests of
    // adopted batches again) delivers skipped transactions that end before it.
    if (endLsn > this.processedLsn) this.processedLsn = endLsn;
    if (t.skip) {
      this.stats.skippedTransactions++;
      return undefined;
    }
    this.stats.transactions++;
    const files = this.touchedFiles;
    files.length = 0;
    for (const w of t.touched) if (w.file) files.push(w.file);
    const reason = afterCommit(this.control.reloads.length, files, this.cfg.batch);
    files.length = 0;
    return reason ? this.flush(reason) : undefined;
  }

  /** A Relation message; a table exported under a name new to this session is noted in the registry. */
  private async relation(oid: number, schema: string, table: string, ri: ReplicaIdentity, columns: RelationColumn[]): Promise<void> {
    if (await this.relations.relation(oid, schema, table, ri, columns)) await this.o.noteTable(schema, table, oid);
  }

  /** The relation of a change when its rows are written: exported, in a transaction not skipped. */
  private target(oid: number): RelInfo | null {
    const t = this.txn;
    if (!t || t.skip) return null;
    const rel = this.relations.rel(oid);
    return rel.selected ? rel : null;
  }

  private async truncate(oids: number[]): Promise<void> {
    for (const oid of oids) {
      const rel = this.target(oid);
      if (rel) await this.windows.emit(this.txn!, rel, OP.T, null, null);
    }
  }

  /** How long the caller may wait for the next frame before `tick` is due (flush-policy.ts). */
  idleWaitMs(minMs: number, maxMs: number): number {
    // A flush registering: back soon, to confirm what it registers.
    if (this.committing) return minMs;
    return idleWaitMs(this.policyState(), this.now(), this.cfg.batch, minMs, maxMs);
  }

  /**
   * Clock check between frames: closes the window once its end has passed, when idle. `reason`
   * 'caught_up': the server said it has sent all the WAL there is (the daemon's keepalive);
   * 'idle': no frame came for a while; 'interval': the periodic check while frames keep coming.
   */
  async tick(reason: 'interval' | 'idle' | 'caught_up' = 'interval'): Promise<boolean> {
    // A write error (disk full) after a burst's last row must not wait for the next row or the
    // window's end to be noticed: stop now, nothing past the registered LSN is confirmed.
    for (const w of this.windows.values()) if (w.file?.error) throw w.file.error;
    if (this.failed) throw this.failed;
    if (!intervalDue(this.policyState(), this.now(), this.cfg.batch)) return false;
    await this.flush(reason);
    return true;
  }

  /** What the flush policy sees: the open windows (a flush still registering is not pending for it). */
  private policyState() {
    return { inTransaction: this.txn !== null, pending: this.windows.size > 0, windowStart: this.windowStart };
  }

  /**
   * Commits every open table window as one batch (src/commit/flush.ts) with the new LSN.
   * `durableLsn` becomes the LSN the slot may be confirmed to once the batch is registered.
   *
   * Returns once the windows' files are finished and their documents made (`onPrepared`); the
   * batch is placed, made durable and registered while the caller goes on with the next rows,
   * into new windows and new files. Without it the stream was not read while a flush waited for
   * its fsyncs and registry round trips: 13-48 ms of each ~200 ms in the benchmark's catch-up of
   * 20,000 small transactions (S2), where this process's CPU is the limit (medians of 30 runs
   * each, alternating: 1.020 s before, 1.000 s after). One flush at a time: the
   * next one first waits for this one (and throws its failure), so batches keep their order and
   * numbers; hasPending() stays true until it is registered, so nothing past it is confirmed
   * (src/wal/confirm-policy.ts), and a crash meanwhile leaves what any unregistered flush leaves.
   */
  async flush(reason: FlushReason): Promise<void> {
    if (this.txn) throw new EgressError('INTERNAL', 'flush inside a transaction; please report this with --log-level debug output');
    await this.settle();
    if (this.windowStart === null || this.windows.size === 0) return;
    const started = this.now();
    await ensureDir(this.tmpDir, this.cfg.output.dirMode);
    const windowStart = this.windowStart;
    const reloads = this.control.reloads;
    const lsn = this.processedLsn;
    let prepared!: () => void;
    const ready = new Promise<void>((resolve) => (prepared = resolve));
    const done = this.o.sink.commit({
      batchId: flushName(windowStart, await this.o.sink.nextBatchSeq(windowName(windowStart))),
      windowStartMs: windowStart,
      lsnEnd: lsn,
      windows: [...this.windows.values()],
      schemaText: (w, s, e) => this.relations.schemaYml(w as TableWindow, this.o.server, s, e, new Date(this.now())),
      reloads,
      anchors: this.o.anchors,
      now: new Date(this.now()),
      onPrepared: prepared,
    });
    // Before the wait below, so that a sink that completes at once (tests) is registered by then.
    const committing = done.then(
      (record) => {
        this.committing = null;
        this.durableLsn = lsn;
        if (reloads.length) this.o.onReloadsRegistered?.();
        const ms = this.now() - started;
        const { bytes, rawBytes } = countFlush(this.stats, record.files);
        if (this.flushSeconds.length < 10_000) this.flushSeconds.push(ms / 1000);
        const names = record.tables.slice(0, 10).map((t) => `${t.schema}.${t.table}`);
        const { batchId: batch, rows } = record;
        this.log.info({ batch, reason, tables: record.tables.length, names, rows, bytes, raw_bytes: rawBytes, lsn: lsnHex(lsn), ms }, 'flushed batch');
      },
      (e: unknown) => {
        this.committing = null;
        this.failed = e;
      },
    );
    this.committing = committing;
    // A failure before the batch was prepared is this flush's own (the windows are still ours).
    await Promise.race([ready, done]);
    this.control.reloads = [];
    this.windows.clear();
  }

  /** Drops everything not yet registered (on shutdown or reconnect it is streamed again). */
  async abort(): Promise<void> {
    // A flush still registering finishes first (or fails): its files are its own.
    await this.committing;
    for (const w of this.windows.values()) await w.file?.abort();
    this.windows.clear();
    this.control.reloads = [];
    this.txn = null;
  }
}

/** Adds a flush's files to the counters; returns its bytes (compressed and raw). */
function countFlush(stats: BatchController['stats'], files: { bytes: number; rawBytes: number | null }[]): { bytes: number; rawBytes: number } {
  let bytes = 0;
  let rawBytes = 0;
  for (const f of files) {
    bytes += f.bytes;
    rawBytes += f.rawBytes ?? f.bytes;
  }
  stats.flushes++;
  stats.files += files.length;
  stats.bytes += bytes;
  stats.rawBytes += rawBytes;
  return { bytes, rawBytes };
}
