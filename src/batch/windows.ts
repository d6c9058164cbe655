/**
 * The open table windows of the flush being collected: per table, its streaming file, its ddl.sql
 * lines, its drop, a root's membership changes. Rows go in through the row encoder
 * (src/output/row-encoder.ts) straight into the file's buffer, at the open transaction's position.
 */
import type { Lsn } from '../lsn.js';
import { lsnHex } from '../lsn.js';
import { tableKey } from '../ident.js';
import { formatCommitTs } from '../wal/time.js';
import type { Tuple } from '../wal/pgoutput.js';
import { StreamingFile, type WindowFileOptions } from '../output/table-window.js';
import { encodeEmptyRow, encodeInsertRun, encodeRow, OP, OP_NAME, UPDATE_B, UPDATE_D, updateRows, type RowPrefix } from '../output/row-encoder.js';
import { tableFolder } from '../output/layout.js';
import type { WindowToWrite } from '../commit/flush.js';
import { ddlStatements } from './ddl-text.js';
import type { PartitionWindow } from './partition-window.js';
import type { RelInfo } from './relations.js';

/** The transaction being received. */
export interface Txn extends RowPrefix {
  finalLsn: Lsn;
  xid: number;
  commitTime: bigint;
  /** Committed before the registered LSN: written by an earlier process. */
  skip: boolean;
  seq: number;
  touched: Set<TableWindow>;
}

/** What Windows.emitInserts took of a spool. */
export interface InsertRun {
  next: number;
  rows: number;
  wait: Promise<void> | undefined;
}

export interface TableWindow extends WindowToWrite {
  rel: RelInfo | null;
  ddlSeen: Set<string>;
  partitions: PartitionWindow | null;
}

export class Windows {
  private readonly map = new Map<string, TableWindow>();
  /** Rows written per `schema\0table` and op (metrics read it at scrape time). */
  readonly rowsByTable = new Map<string, Map<string, number>>();

  constructor(
    private readonly fileOptions: WindowFileOptions,
    /** The controller's counters: rows written. */
    private readonly counters: { rows: number },
  ) {}

  get size(): number {
    return this.map.size;
  }

  values(): IterableIterator<TableWindow> {
    return this.map.values();
  }

  pendingRows(): Map<string, number> {
    const m = new Map<string, number>();
    for (const w of this.map.values()) m.set(`${w.schema}.${w.table}`, w.file?.rows ?? 0);
    return m;
  }

  clear(): void {
    this.map.clear();
  }

  /** A table's window, opened on first use. */
  window(schema: string, table: string, relid: number | null): TableWindow {
    const key = tableKey(schema, table);
    let w = this.map.get(key);
    if (!w) {
      w = {
        schema,
        table,
        relid,
        folder: tableFolder(schema, table),
        file: null,
        rel: null,
        ddl: [],
        ddlSeen: new Set(),
        ddlLsnStart: null,
        ddlLsnEnd: null,
        dropped: false,
        partitions: null,
      };
      this.map.set(key, w);
    }
    return w;
  }

  private fileOf(w: TableWindow): StreamingFile {
    return (w.file ??= new StreamingFile(this.fileOptions));
  }

  /**
   * Encodes one row of `rel` at the transaction's next `_seq`. Not an async function: a row costs
   * no promise unless the file switches layout or gzip pushes back.
   */
  emit(t: Txn, rel: RelInfo, op: number, tuple: Tuple | null, fill: Tuple | null): Promise<void> | undefined {
    const w = this.map.get(rel.key) ?? this.window(rel.schema, rel.table, rel.oid);
    w.rel = rel;
    t.touched.add(w);
    const f = this.fileOf(w);
    if (f.columns !== rel.outNames) {
      return f.useColumns(rel.outNames).then(() => this.emit(t, rel, op, tuple, fill));
    }
    encodeRow(f.buf, t, t.seq++, op, rel, tuple, fill);
    this.count(rel.key, op);
    return f.rowWritten(t.finalLsn);
  }

  /**
   * A run of Inserts into `rel` from a streamed transaction's spool (src/batch/streamed.ts), encoded
   * by the addon a chunk of the file at a time: the rows emit would write, without a message, a
   * tuple or a call per row. Returns where the first record not taken starts (`from`: none, the
   * caller decodes it and it goes through emit, which also opens the file or switches its layout),
   * the rows taken, and the file's backpressure after the last chunk.
   */
  emitInserts(t: Txn, rel: RelInfo, spool: Buffer, from: number, to: number): InsertRun {
    const w = this.map.get(rel.key);
    const f = w?.file;
    if (!w || !f || f.columns !== rel.outNames || !f.takesRuns) return { next: from, rows: 0, wait: undefined };
    w.rel = rel;
    t.touched.add(w);
    let next = from;
    let rows = 0;
    while (next < to) {
      const r = encodeInsertRun(f.buf, t, t.seq, rel, rel.oid, spool, next, to, f.runStop);
      if (!r || r.rows === 0) break;
      t.seq += r.rows;
      rows += r.rows;
      next = r.next;
      this.count(rel.key, OP.I, r.rows);
      const wait = f.rowsWritten(r.rows, t.finalLsn);
      if (wait) return { next, rows, wait };
    }
    return { next, rows, wait: undefined };
  }

  /**
   * An update: its U, after a D of the old identity when that changed and a B row (row-encoder.ts).
   * As emit, no promise for a plain U unless its row waits.
   */
  update(
    t: Txn,
    rel: RelInfo,
    keyTuple: Tuple | null,
    oldTuple: Tuple | null,
    newTuple: Tuple,
    beforeImages: boolean,
  ): Promise<void> | undefined {
    const rows = updateRows(rel.pkIdx, keyTuple, oldTuple, newTuple, beforeImages);
    if (!(rows & (UPDATE_D | UPDATE_B))) return this.emit(t, rel, OP.U, newTuple, oldTuple);
    return this.updateRows(t, rel, rows, keyTuple, oldTuple, newTuple);
  }

  private async updateRows(t: Txn, rel: RelInfo, rows: number, key: Tuple | null, oldTuple: Tuple | null, newTuple: Tuple): Promise<void> {
    if (rows & UPDATE_D) await this.emit(t, rel, OP.D, key ?? oldTuple, null);
    if (rows & UPDATE_B) await this.emit(t, rel, OP.B, oldTuple, null);
    await this.emit(t, rel, OP.U, newTuple, oldTuple);
  }

  /** A delete: its D (of the old row, or of the key), after a B row with before images. */
  delete(t: Txn, rel: RelInfo, keyTuple: Tuple | null, oldTuple: Tuple | null, beforeImages: boolean): Promise<void> | undefined {
    if (!(oldTuple && beforeImages)) return this.emit(t, rel, OP.D, oldTuple ?? keyTuple, null);
    return this.deleteWithImage(t, rel, oldTuple);
  }

  private async deleteWithImage(t: Txn, rel: RelInfo, oldTuple: Tuple): Promise<void> {
    await this.emit(t, rel, OP.B, oldTuple, null);
    await this.emit(t, rel, OP.D, oldTuple, null);
  }

  /**
   * A `T` row at this position in a table's folder, carrying no values like any T row: the rows
   * under this name end here (dropped, or renamed away). The SPEC §6 rebuild then starts a table
   * created later under the same name from empty, instead of on top of the old table's rows.
   */
  async boundary(t: Txn, w: TableWindow, defColumns: () => string[]): Promise<void> {
    t.touched.add(w);
    const f = this.fileOf(w);
    if (!f.columns) await f.useColumns(w.rel?.outNames ?? defColumns());
    encodeEmptyRow(f.buf, t, t.seq++, OP.T, f.columns!.length);
    this.count(tableKey(w.schema, w.table), OP.T);
    await f.rowWritten(t.finalLsn);
  }

  private count(key: string, op: number, n = 1): void {
    this.counters.rows += n;
    let perOp = this.rowsByTable.get(key);
    if (!perOp) this.rowsByTable.set(key, (perOp = new Map()));
    const name = OP_NAME[op];
    perOp.set(name, (perOp.get(name) ?? 0) + n);
  }

  /** Records a DDL's statements in a table's ddl.sql of this window. */
  addDdl(w: TableWindow, t: Txn, commandText: string, commandTag: string): void {
    this.noteDdl(w, t);
    // Only the DDL statements of the client's query string, never its data statements (ddl-text.ts).
    for (const command of ddlStatements(commandText, commandTag)) {
      // One statement can report several commands for the same table (CREATE TABLE with a primary
      // key also creates its index): record each statement text once per transaction.
      const seen = `${t.xid}\u0000${command}`;
      if (w.ddlSeen.has(seen)) continue;
      w.ddlSeen.add(seen);
      w.ddl.push(`-- lsn ${lsnHex(t.finalLsn)} xid ${t.xid} at ${formatCommitTs(t.commitTime)}: ${commandTag}\n${command};\n`);
    }
  }

  /** A ddl.sql line of pg-egress's own (a comment), at this transaction. */
  addNote(w: TableWindow, t: Txn, line: string): void {
    this.noteDdl(w, t);
    w.ddl.push(line);
  }

  private noteDdl(w: TableWindow, t: Txn): void {
    if (w.ddlLsnStart === null) w.ddlLsnStart = t.finalLsn;
    w.ddlLsnEnd = t.finalLsn;
  }
}
