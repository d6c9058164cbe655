/**
 * The micro-batch controller: consumes decoded pgoutput messages in order, encodes each change
 * into its table's open window file, and decides when a flush happens (SPEC §3–§6).
 *
 * - A transaction goes to the window of its commit time (aligned to batch.interval), or to the
 *   current window if that is later (commit times are not strictly monotonic in WAL order).
 * - A flush happens only between transactions: when a transaction of a later window begins, when
 *   the wall clock passes the window's end while idle (`tick`), or after a commit that takes a
 *   table past batch.max_rows / batch.max_bytes or carries a reload request. A single
 *   transaction is never split across flushes, so a very large one makes one large file.
 * - Exactly once: a transaction whose commit LSN is below the registered LSN was already written
 *   by an earlier process and is skipped; a flush registers files and the new LSN in one registry
 *   transaction and only then does the slot get confirmed (the caller does that with `durableLsn`).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { matchTable } from '../config/index.js';
import { EgressError } from '../errors.js';
import { lsnHex, type Lsn } from '../lsn.js';
import { SPAN_TOAST, UNCHANGED_TOAST, type PgOutputMessage, type RelationColumn, type ReplicaIdentity, type Tuple, type TupleValue } from '../wal/pgoutput.js';
import { formatCommitTs, pgMicrosToUnixMs } from '../wal/time.js';
import { textArrayLiteral } from '../output/csv.js';
import { ddlStatements } from './ddl-text.js';
import { StreamingFile } from '../output/table-window.js';
import { alignWindow, flushName, tableFolder, windowName } from '../output/layout.js';
import { ensureDir } from '../output/atomic.js';
import { schemaYml, type ColumnDoc } from '../output/documents.js';
import { writeFlush } from '../output/flush-writer.js';
import type { Registry } from '../registry/registry.js';
import type { BatchChain } from '../proof/chain.js';
import { anchorTargets } from '../registry/anchors.js';
import type { ReloadReason, ReloadRequest } from '../registry/reloads.js';
import type { ServerInfo, TableDef } from '../source/setup.js';
import { foundByCheck, PartitionWindow, type PartitionsMessage } from './partition-window.js';
import { LeafScope, type RootOf } from './leaf-scope.js';
import { failpoint } from '../failpoints.js';
import { CONTROL_PREFIX, describeClaim, verifyControlMessage, type ForgedMessages, type MessageKey } from '../ddl/message-auth.js';

const COMMA = 0x2c;
const LF = 0x0a;
const OP = { I: 0x49, U: 0x55, D: 0x44, T: 0x54, B: 0x42 } as const;
/** `_op` byte to its letter, without a string made per row. */
const OP_NAME: Record<number, string> = Object.fromEntries(Object.values(OP).map((b) => [b, String.fromCharCode(b)]));

/** Prefix of the transactional logical messages emitted by our DDL event trigger (sql/002). */
export const DDL_MESSAGE_PREFIX = 'pg-egress:ddl';
/** Reload requests at their transaction's WAL position: markers and tables joining with data (sql/004). */
export const RELOAD_MESSAGE_PREFIX = 'pg-egress:reload';
/** A partitioned root's membership change at its transaction's WAL position (sql/007). */
export const PARTITIONS_MESSAGE_PREFIX = 'pg-egress:partitions';
/** A table whose name changed (sql/008): the old name's rows end at this position. */
export const MOVED_MESSAGE_PREFIX = 'pg-egress:moved';

interface RelInfo {
  oid: number;
  schema: string;
  table: string;
  key: string;
  selected: boolean;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
  /** Indexes into the tuple of the columns written (configured exclusions removed). */
  outIdx: number[];
  outNames: readonly string[];
  /** Tuple indexes of the primary key, when known; used to detect identity changes under FULL. */
  pkIdx: number[] | null;
}

interface TableWindow {
  schema: string;
  table: string;
  relid: number | null;
  folder: string;
  file: StreamingFile | null;
  rel: RelInfo | null;
  ddl: string[];
  ddlSeen: Set<string>;
  ddlLsnStart: Lsn | null;
  ddlLsnEnd: Lsn | null;
  dropped: boolean;
  /** A partitioned root's membership changes in this window (its partitions.yml). */
  partitions: PartitionWindow | null;
}

interface Txn {
  finalLsn: Lsn;
  xid: number;
  commitTime: bigint;
  skip: boolean;
  seq: number;
  lsnField: Buffer;
  midField: Buffer;
  touched: Set<TableWindow>;
}

export interface DdlEvent {
  command_tag: string;
  object_type?: string;
  schema: string;
  table: string;
  relid: number;
  command: string;
  definition?: TableDef | null;
  dropped?: boolean;
  /** A dropped partitioned root (sql/008): it had no rows of its own, so no T boundary. */
  partitioned?: boolean;
}

export interface ControllerOptions {
  cfg: Config;
  registry: Registry;
  /** Orders batches (flushes and reloads) into the hash chain. */
  chain: BatchChain;
  server: ServerInfo;
  log: Logger;
  /** LSN registered by earlier flushes: transactions committed before it are skipped. */
  registeredLsn: Lsn;
  defs: TableDef[];
  /** Loads a table's current catalog definition (for relations first seen mid-stream). */
  loadDef: (relid: number) => Promise<TableDef | null>;
  /** format_type(oid, typmod) for columns not described by a definition. */
  formatType: (typeOid: number, typmod: number) => Promise<string>;
  /**
   * The selected partitioned root a relation is or was a leaf of (sql/007), or null. A leaf is
   * selected through its root even when its own name does not match tables.include.
   */
  partitionRoot?: (relid: number) => Promise<RootOf | null>;
  /** Called after a flush registered reload requests (wakes the reloader). */
  onReloadsRegistered?: () => void;
  /** Authenticates `pg-egress:*` messages (src/ddl/message-auth.ts). */
  messageKey: MessageKey;
  /** Counts and logs forged ones (kept across sessions by the daemon for /metrics). */
  forged: ForgedMessages;
  /**
   * Commit LSNs of skipped transactions whose reload requests are asked for again (batches
   * adopted from disk whose registration, with those requests, a failover lost: src/output/adopt.ts).
   */
  recollect?: { ranges: { from: Lsn; to: Lsn }[]; request: (r: ReloadRequest) => void };
  now?: () => number;
}

const defKey = (schema: string, table: string): string => `${schema}\u0000${table}`;

export class BatchController {
  private readonly cfg: Config;
  private readonly log: Logger;
  private readonly relations = new Map<number, RelInfo>();
  private readonly defs = new Map<string, TableDef>();
  private readonly windows = new Map<string, TableWindow>();
  /** What is exported: tables by name, leaves through their partitioned root (SPEC §3). */
  private readonly scope: LeafScope;
  private txn: Txn | null = null;
  private windowStart: number | null = null;
  /** Reload requests seen since the last flush: registered with it (exactly once). */
  private reloads: ReloadRequest[] = [];
  private readonly tmpDir: string;
  private readonly now: () => number;
  /** End LSN of the last transaction fully processed (written into open files or skipped). */
  processedLsn: Lsn;
  /** Highest LSN whose changes are in registered files. */
  durableLsn: Lsn;
  private readonly skipBelow: Lsn;
  /** Counters for status, logs and metrics. */
  stats = { transactions: 0, rows: 0, flushes: 0, skippedTransactions: 0, files: 0, bytes: 0, rawBytes: 0 };
  /** Rows written per `schema.table` and op (metrics read it at scrape time). */
  readonly rowsByTable = new Map<string, Map<string, number>>();
  /** Commit time (ms) of the last transaction seen, for the source lag. */
  lastCommitMs: number | null = null;
  /** Durations of recent flushes in seconds, drained by the metrics histogram. */
  readonly flushSeconds: number[] = [];

  constructor(private readonly o: ControllerOptions) {
    this.cfg = o.cfg;
    this.log = o.log;
    this.processedLsn = o.registeredLsn;
    this.durableLsn = o.registeredLsn;
    this.skipBelow = o.registeredLsn;
    this.tmpDir = path.join(o.cfg.output.dir, '_tmp');
    this.now = o.now ?? Date.now;
    for (const d of o.defs) this.defs.set(defKey(d.schema, d.table), d);
    this.scope = new LeafScope(o.cfg, o.partitionRoot);
  }

  inTransaction(): boolean {
    return this.txn !== null;
  }

  /** Rows or DDL received but not yet in registered files. */
  hasPending(): boolean {
    return this.windows.size > 0;
  }

  pendingRows(): Map<string, number> {
    const m = new Map<string, number>();
    for (const w of this.windows.values()) m.set(`${w.schema}.${w.table}`, w.file?.rows ?? 0);
    return m;
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
        const t = this.txn;
        if (!t || t.skip) return;
        const rel = this.rel(m.relationOid);
        if (!rel.selected) return;
        return this.emit(rel, OP.I, m.newTuple, null);
      }
      case 'update':
        return this.update(m.relationOid, m.keyTuple, m.oldTuple, m.newTuple);
      case 'delete':
        return this.delete(m.relationOid, m.keyTuple, m.oldTuple);
      case 'truncate':
        return this.truncate(m.relationOids);
      case 'message':
        if (m.prefix.startsWith(CONTROL_PREFIX)) return this.control(m.prefix, m.content, m.transactional);
        return;
      case 'type': // type names come from format_type() in table definitions
      case 'origin': // changes replayed from another origin are exported like any other
        return;
    }
  }

  private rel(oid: number): RelInfo {
    const r = this.relations.get(oid);
    // pgoutput always sends a Relation before the first change of a relation in a session.
    if (!r) throw new EgressError('PROTOCOL', `pgoutput: change for relation ${oid} without a Relation message; please report this with --log-level debug output`);
    return r;
  }

  private async begin(finalLsn: Lsn, xid: number, commitTime: bigint): Promise<void> {
    const skip = finalLsn < this.skipBelow;
    this.lastCommitMs = pgMicrosToUnixMs(commitTime);
    if (!skip) {
      const w = alignWindow(pgMicrosToUnixMs(commitTime), this.cfg.batch.intervalMs);
      if (this.windowStart === null || w > this.windowStart) {
        if (this.hasPending()) await this.flush('window');
        this.windowStart = w;
      }
    }
    this.txn = {
      finalLsn,
      xid,
      commitTime,
      skip,
      seq: 0,
      lsnField: Buffer.from(lsnHex(finalLsn) + ',', 'latin1'),
      midField: Buffer.from(`,${xid},${formatCommitTs(commitTime)},`, 'latin1'),
      touched: new Set(),
    };
  }

  private async commit(commitLsn: Lsn, endLsn: Lsn): Promise<void> {
    const t = this.txn;
    if (!t) throw new EgressError('PROTOCOL', 'pgoutput: Commit without Begin; please report this with --log-level debug output');
    if (commitLsn !== t.finalLsn) throw new EgressError('PROTOCOL', `pgoutput: Commit ${lsnHex(commitLsn)} does not match Begin ${lsnHex(t.finalLsn)}; please report this with --log-level debug output`);
    this.txn = null;
    // Never backwards: a stream started below the registered LSN (to take the reload requests of
    // adopted batches again) delivers skipped transactions that end before it.
    if (endLsn > this.processedLsn) this.processedLsn = endLsn;
    if (t.skip) {
      this.stats.skippedTransactions++;
      return;
    }
    this.stats.transactions++;
    // A reload request is registered, and its export started, right after its transaction
    // instead of when the window ends: `reload --wait` should not wait out batch.interval.
    if (this.reloads.length) {
      await this.flush('reload');
      return;
    }
    const { maxRows, maxBytes } = this.cfg.batch;
    for (const w of t.touched) {
      if (w.file && (w.file.rows >= maxRows || w.file.rawBytes >= maxBytes)) {
        await this.flush('size');
        return;
      }
    }
  }

  private async relation(oid: number, schema: string, table: string, replicaIdentity: ReplicaIdentity, columns: RelationColumn[]): Promise<void> {
    const key = defKey(schema, table);
    const selected = await this.scope.selected(schema, table, oid, true);
    const excluded = this.scope.excluded(schema, table);
    if (selected && !this.defs.has(key)) {
      const def = await this.o.loadDef(oid);
      if (def) this.defs.set(key, def);
    }
    const def = this.defs.get(key);
    // PostgreSQL 18 sends stored generated columns when the publication's
    // publish_generated_columns says so; they stay out of the files, as out of COPY's output.
    const generated = new Set(def?.columns.filter((c) => c.generated).map((c) => c.name));
    const outIdx: number[] = [];
    columns.forEach((c, i) => {
      if (!excluded.has(c.name) && !generated.has(c.name)) outIdx.push(i);
    });
    const prev = this.relations.get(oid);
    const names = outIdx.map((i) => columns[i].name);
    // Keep the same array when nothing changed, so files compare layouts by reference.
    const outNames = prev && prev.outNames.length === names.length && prev.outNames.every((n, i) => n === names[i]) ? prev.outNames : names;
    let pkIdx: number[] | null = null;
    if (def && def.primary_key.length) {
      pkIdx = def.primary_key.map((n) => columns.findIndex((c) => c.name === n));
      if (pkIdx.some((i) => i < 0)) pkIdx = null;
    }
    const rel: RelInfo = { oid, schema, table, key, selected, replicaIdentity, columns, outIdx, outNames, pkIdx };
    this.relations.set(oid, rel);
    if (selected && (!prev || prev.schema !== schema || prev.table !== table)) {
      await this.o.registry.noteTable(schema, table, oid);
    }
  }

  private window(schema: string, table: string, relid: number | null): TableWindow {
    const key = defKey(schema, table);
    let w = this.windows.get(key);
    if (!w) {
      w = { schema, table, relid, folder: tableFolder(schema, table), file: null, rel: null, ddl: [], ddlSeen: new Set(), ddlLsnStart: null, ddlLsnEnd: null, dropped: false, partitions: null };
      this.windows.set(key, w);
    }
    return w;
  }

  private async update(oid: number, keyTuple: Tuple | null, oldTuple: Tuple | null, newTuple: Tuple): Promise<void> {
    const t = this.txn;
    if (!t || t.skip) return;
    const rel = this.rel(oid);
    if (!rel.selected) return;
    // An identity change is written as D (old identity) then U (SPEC §4). pgoutput sends the old
    // key ('K') only when key columns changed; under FULL it sends the whole old row ('O') always,
    // and we compare the primary key ourselves (no primary key: every update changes identity).
    let identityChanged = keyTuple !== null;
    if (oldTuple) {
      identityChanged = rel.pkIdx === null || rel.pkIdx.some((i) => !sameValue(oldTuple.value(i), newTuple.value(i)));
    }
    if (identityChanged) await this.emit(rel, OP.D, keyTuple ?? oldTuple, null);
    if (oldTuple && this.cfg.output.beforeImages) await this.emit(rel, OP.B, oldTuple, null);
    await this.emit(rel, OP.U, newTuple, oldTuple);
  }

  private async truncate(oids: number[]): Promise<void> {
    const t = this.txn;
    if (!t || t.skip) return;
    for (const oid of oids) {
      const rel = this.rel(oid);
      if (rel.selected) await this.emit(rel, OP.T, null, null);
    }
  }

  private async delete(oid: number, keyTuple: Tuple | null, oldTuple: Tuple | null): Promise<void> {
    const t = this.txn;
    if (!t || t.skip) return;
    const rel = this.rel(oid);
    if (!rel.selected) return;
    if (oldTuple && this.cfg.output.beforeImages) await this.emit(rel, OP.B, oldTuple, null);
    await this.emit(rel, OP.D, oldTuple ?? keyTuple, null);
  }

  /**
   * Encodes one row. `fill` supplies values for unchanged-TOAST columns when the old row is
   * known (REPLICA IDENTITY FULL); otherwise such columns are empty and named in `_unchanged`.
   */
  private emit(rel: RelInfo, op: number, tuple: Tuple | null, fill: Tuple | null): Promise<void> | undefined {
    const t = this.txn!;
    const w = this.windows.get(rel.key) ?? this.window(rel.schema, rel.table, rel.oid);
    w.rel = rel;
    t.touched.add(w);
    const f = (w.file ??= new StreamingFile({ tmpDir: this.tmpDir, gzipLevel: this.cfg.output.gzipLevel, fileMode: this.cfg.output.fileMode }));
    if (f.columns !== rel.outNames) {
      return f.useColumns(rel.outNames).then(() => this.emit(rel, op, tuple, fill));
    }
    const b = f.buf;
    b.raw(t.lsnField);
    b.uint(t.seq++);
    b.raw(t.midField);
    b.byte(op);
    b.byte(COMMA);
    const idx = rel.outIdx;
    if (tuple) {
      // Values are spans of the message (pgoutput.ts): copied into the CSV without a view each.
      const spans = tuple.spans;
      const src = tuple.buf;
      let unchanged: string[] | null = null;
      for (let i = 0; i < idx.length; i++) {
        if (spans[2 * idx[i]] === SPAN_TOAST && !(fill && fill.spans[2 * idx[i]] >= 0)) {
          (unchanged ??= []).push(rel.outNames[i]);
        }
      }
      if (unchanged) b.text(textArrayLiteral(unchanged));
      for (let i = 0; i < idx.length; i++) {
        b.byte(COMMA);
        const j = 2 * idx[i];
        const start = spans[j];
        // NULL, a column past the tuple's end, and unchanged TOAST without a value to fill: empty.
        if (start >= 0) b.valueRange(src, start, spans[j + 1]);
        else if (start === SPAN_TOAST && fill && fill.spans[j] >= 0) b.valueRange(fill.buf, fill.spans[j], fill.spans[j + 1]);
      }
    } else {
      for (let i = 0; i < idx.length; i++) b.byte(COMMA);
    }
    b.byte(LF);
    this.stats.rows++;
    let perOp = this.rowsByTable.get(rel.key);
    if (!perOp) this.rowsByTable.set(rel.key, (perOp = new Map()));
    const opName = OP_NAME[op];
    perOp.set(opName, (perOp.get(opName) ?? 0) + 1);
    return f.rowWritten(t.finalLsn);
  }

  /**
   * A `pg-egress:*` message counts only when pg-egress's own SQL emitted it in this transaction
   * (SPEC §8); a forged one is dropped before anything reads it, counted and logged.
   */
  private control(prefix: string, content: Buffer, transactional: boolean): Promise<void> | undefined {
    const t = this.txn;
    // Replayed from before the registered LSN: handled by an earlier process.
    // (A reload request in a skipped transaction of a batch adopted from disk is asked for again.)
    if (transactional && (!t || (t.skip && !(prefix === RELOAD_MESSAGE_PREFIX && this.recollecting(t))))) return;
    const v = verifyControlMessage(this.o.messageKey, prefix, content, transactional && t ? { xid: t.xid, finalLsn: t.finalLsn } : null);
    if (!v.ok) {
      const line = this.o.forged.note({ prefix, reason: v.reason, xid: transactional && t ? t.xid : null, lsn: transactional && t ? lsnHex(t.finalLsn) : null, claim: describeClaim(content) });
      if (line) this.log.warn(line, `dropped a forged ${JSON.stringify(prefix)} message (${v.reason}): not emitted by pg-egress's own SQL; nothing written`);
      return;
    }
    if (prefix === DDL_MESSAGE_PREFIX) return this.ddl(v.payload);
    if (prefix === RELOAD_MESSAGE_PREFIX) return this.reloadRequest(v.payload);
    if (prefix === MOVED_MESSAGE_PREFIX) return this.moved(v.payload);
    if (prefix === PARTITIONS_MESSAGE_PREFIX) return this.partitions(v.payload);
    this.log.debug({ prefix }, 'ignoring an authentic message of a kind this version does not know');
    return;
  }

  private async ddl(content: Buffer): Promise<void> {
    const t = this.txn;
    if (!t || t.skip) return;
    let ev: DdlEvent;
    try {
      ev = JSON.parse(content.toString('utf8')) as DdlEvent;
    } catch {
      this.log.warn('ignoring malformed DDL message');
      return;
    }
    if (!(await this.scope.selected(ev.schema, ev.table, ev.relid))) return;
    const w = this.window(ev.schema, ev.table, ev.relid);
    const key = defKey(ev.schema, ev.table);
    if (ev.definition) {
      // The name has a table again (created, or renamed to it) after a drop or a move.
      w.dropped = false;
      this.defs.set(key, ev.definition);
      // The file's header must be the columns at the end of the window (SPEC §5), also when no
      // row follows this DDL in the window: switch the open file to the new layout now.
      if (w.file) await w.file.useColumns(outColumnNames(ev.definition, this.scope.excluded(ev.schema, ev.table)));
    }
    if (ev.dropped && !w.dropped && !ev.partitioned) {
      // The table's rows are gone: a T row here ends them, so a table created later under this
      // name does not rebuild on top of them (README "Out-of-band operations").
      await this.boundary(w);
      w.dropped = true;
      // The definition stays for this window's schema.yml; a table created under the name brings
      // its own with its CREATE TABLE message, before any of its rows.
    }
    this.addDdl(w, t, ev.command, ev.command_tag);
  }

  /** Records a DDL's statements in a table's ddl.sql of this window. */
  private addDdl(w: TableWindow, t: Txn, commandText: string, commandTag: string): void {
    if (w.ddlLsnStart === null) w.ddlLsnStart = t.finalLsn;
    w.ddlLsnEnd = t.finalLsn;
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

  /**
   * A root's membership change (sql/007): the root's window gets the leaves and the change at this
   * transaction's commit LSN (its partitions.yml) and the DDL (its ddl.sql). Nothing moves: each
   * leaf's rows are in its own folder.
   */
  private async partitions(content: Buffer): Promise<void> {
    const t = this.txn;
    if (!t || t.skip) return;
    let m: PartitionsMessage;
    try {
      m = JSON.parse(content.toString('utf8')) as PartitionsMessage;
    } catch {
      this.log.warn('ignoring malformed partitions message');
      return;
    }
    if (m.publication !== this.cfg.publication || !matchTable(this.cfg, m.root.schema, m.root.name)) return;
    const w = this.window(m.root.schema, m.root.name, Number(m.root.oid));
    const key = defKey(m.root.schema, m.root.name);
    if (!this.defs.has(key)) {
      const def = await this.o.loadDef(Number(m.root.oid));
      if (def) this.defs.set(key, def);
    }
    (w.partitions ??= new PartitionWindow()).add(m, t.finalLsn);
    this.scope.noteLeaves(m.root, m.partitions);
    if (m.command && m.command_tag) this.addDdl(w, t, m.command, m.command_tag);
    else {
      // Found by the daemon's own check (first appearance, or DDL capture off): say so in ddl.sql.
      if (w.ddlLsnStart === null) w.ddlLsnStart = t.finalLsn;
      w.ddlLsnEnd = t.finalLsn;
      w.ddl.push(`-- lsn ${lsnHex(t.finalLsn)} xid ${t.xid} at ${formatCommitTs(t.commitTime)}: ${foundByCheck(m)}\n`);
    }
  }

  /**
   * A reload request inside a transaction: kept until the flush that passes it registers it, so
   * that a crash before then replays it from the slot, and a rolled-back marker never arrives.
   */
  private async reloadRequest(content: Buffer): Promise<void> {
    const t = this.txn;
    const again = t !== null && t.skip && this.recollecting(t);
    if (!t || (t.skip && !again)) return;
    let r: { reason?: ReloadReason; schema: string; table: string; relid: number; previous_comment?: string | null; request_id?: string | null; detail?: string };
    try {
      r = JSON.parse(content.toString('utf8'));
    } catch {
      this.log.warn('ignoring malformed reload message');
      return;
    }
    if (!(await this.scope.selected(r.schema, r.table, r.relid))) return;
    const reason = r.reason ?? 'marker';
    const req: ReloadRequest = {
      schema: r.schema,
      table: r.table,
      relid: r.relid,
      reason,
      requestedLsn: t.finalLsn,
      restoreComment: reason === 'marker',
      previousComment: r.previous_comment ?? null,
      requestId: r.request_id ?? null,
      gapId: null,
    };
    if (again) {
      this.o.recollect!.request(req);
      return;
    }
    // The table gets a window in this flush, so that a flush happens even when no row changed.
    const w = this.window(r.schema, r.table, r.relid);
    if (reason === 'ddl') {
      // Value-changing DDL (sql/008): ddl.sql says why the table is exported again.
      if (w.ddlLsnStart === null) w.ddlLsnStart = t.finalLsn;
      w.ddlLsnEnd = t.finalLsn;
      w.ddl.push(`-- pg-egress: reload requested: ${oneLine(String(r.detail ?? 'value-changing DDL'))}\n`);
    }
    this.reloads.push(req);
  }

  /** A skipped transaction inside a batch adopted from disk: its reload requests are asked for again. */
  private recollecting(t: Txn): boolean {
    const rc = this.o.recollect;
    return rc !== undefined && rc.ranges.some((r) => t.finalLsn >= r.from && t.finalLsn < r.to);
  }

  /** A table's name changed (sql/008): the rows under the old name end here. */
  private async moved(content: Buffer): Promise<void> {
    let m: { from?: { schema?: string; table?: string } };
    try {
      m = JSON.parse(content.toString('utf8'));
    } catch {
      this.log.warn('ignoring malformed moved message');
      return;
    }
    const from = m.from;
    if (typeof from?.schema !== 'string' || typeof from.table !== 'string' || !matchTable(this.cfg, from.schema, from.table)) return;
    const w = this.window(from.schema, from.table, null);
    if (w.dropped) return;
    await this.boundary(w);
    w.dropped = true;
  }

  /**
   * A `T` row at this position in a table's folder, carrying no values like any T row: the rows
   * under this name end here (dropped, or renamed away). The SPEC §6 rebuild then starts a table
   * created later under the same name from empty, instead of on top of the old table's rows.
   */
  private async boundary(w: TableWindow): Promise<void> {
    const t = this.txn!;
    t.touched.add(w);
    const f = (w.file ??= new StreamingFile({ tmpDir: this.tmpDir, gzipLevel: this.cfg.output.gzipLevel, fileMode: this.cfg.output.fileMode }));
    if (!f.columns) {
      const def = this.defs.get(defKey(w.schema, w.table));
      await f.useColumns(w.rel?.outNames ?? (def ? outColumnNames(def, this.scope.excluded(w.schema, w.table)) : []));
    }
    const b = f.buf;
    b.raw(t.lsnField);
    b.uint(t.seq++);
    b.raw(t.midField);
    b.byte(OP.T);
    b.byte(COMMA);
    for (let i = 0; i < f.columns!.length; i++) b.byte(COMMA);
    b.byte(LF);
    this.stats.rows++;
    const key = defKey(w.schema, w.table);
    let perOp = this.rowsByTable.get(key);
    if (!perOp) this.rowsByTable.set(key, (perOp = new Map()));
    perOp.set('T', (perOp.get('T') ?? 0) + 1);
    await f.rowWritten(t.finalLsn);
  }

  /**
   * How long the caller may wait for the next frame before `tick` is due: until the open window
   * ends, but at least `minMs` (a socket drained for a moment mid catch-up is not idleness, and
   * flushing then would cut a burst into many small flushes) and at most `maxMs`.
   */
  idleWaitMs(minMs: number, maxMs: number): number {
    if (this.txn || !this.hasPending() || this.windowStart === null) return maxMs;
    return Math.min(maxMs, Math.max(minMs, this.windowStart + this.cfg.batch.intervalMs - this.now()));
  }

  /** Wall-clock check between frames: closes the window once its end has passed, when idle. */
  async tick(): Promise<boolean> {
    // A write error (disk full) after a burst's last row must not wait for the next row or the
    // window's end to be noticed: stop now, nothing past the registered LSN is confirmed.
    for (const w of this.windows.values()) if (w.file?.error) throw w.file.error;
    if (this.txn || !this.hasPending() || this.windowStart === null) return false;
    if (this.now() < this.windowStart + this.cfg.batch.intervalMs) return false;
    await this.flush('interval');
    return true;
  }

  /**
   * Writes every open table window of this flush, the batch index, and registers them with the
   * new LSN. Afterwards `durableLsn` is the LSN the slot may be confirmed to.
   */
  async flush(reason: 'window' | 'interval' | 'size' | 'reload' | 'shutdown'): Promise<void> {
    if (this.txn) throw new EgressError('INTERNAL', 'flush inside a transaction; please report this with --log-level debug output');
    if (this.windowStart === null || this.windows.size === 0) return;
    const started = this.now();
    await ensureDir(this.tmpDir, this.cfg.output.dirMode);
    const windowStart = this.windowStart;
    // Writing the batch index (it names its predecessor) and registering it is one step of the chain.
    const record = await this.o.chain.run(async (prev) => {
      const r = await writeFlush({
        cfg: this.cfg,
        server: this.o.server,
        registry: this.o.registry,
        batchId: flushName(windowStart, await this.o.registry.nextBatchSeq(windowName(windowStart))),
        windowStartMs: windowStart,
        lsnEnd: this.processedLsn,
        windows: [...this.windows.values()].map((w) => ({ ...w, schemaText: (s: Lsn | null, e: Lsn | null) => this.schemaDoc(w, s, e) })),
        prev,
        reloads: this.reloads,
      });
      await failpoint('flush-after-rename');
      await this.o.registry.registerFlush({ ...r, reloads: this.reloads, anchors: anchorTargets(this.cfg) });
      return r;
    });
    const requested = this.reloads.length;
    this.reloads = [];
    this.durableLsn = this.processedLsn;
    this.windows.clear();
    if (requested) this.o.onReloadsRegistered?.();
    this.stats.flushes++;
    for (const f of record.files) {
      this.stats.files++;
      this.stats.bytes += f.bytes;
      this.stats.rawBytes += f.rawBytes ?? f.bytes;
    }
    if (this.flushSeconds.length < 10_000) this.flushSeconds.push((this.now() - started) / 1000);
    const bytes = record.files.reduce((n, f) => n + f.bytes, 0);
    const rawBytes = record.files.reduce((n, f) => n + (f.rawBytes ?? f.bytes), 0);
    this.log.info(
      { batch: record.batchId, reason, tables: record.tables.length, names: record.tables.slice(0, 10).map((t) => `${t.schema}.${t.table}`), rows: record.rows, bytes, raw_bytes: rawBytes, lsn: lsnHex(this.durableLsn), ms: this.now() - started },
      'flushed batch',
    );
  }

  private async schemaDoc(w: TableWindow, lsnStart: Lsn | null, lsnEnd: Lsn | null): Promise<string> {
    const def = this.defs.get(defKey(w.schema, w.table));
    const byName = new Map(def?.columns.map((c) => [c.name, c]) ?? []);
    const excluded = this.scope.excluded(w.schema, w.table);
    // The columns of the file's final layout; without a file, of the last Relation or definition.
    const relCols = new Map(w.rel?.columns.map((c) => [c.name, c]) ?? []);
    const names = w.file?.columns ?? (w.rel && !w.dropped ? w.rel.outNames : def ? outColumnNames(def, excluded) : []);
    const columns: ColumnDoc[] = [];
    for (const name of names) {
      const d = byName.get(name);
      const r = relCols.get(name);
      const type = d && (!r || d.type_oid === r.typeOid) ? d.type : r ? await this.o.formatType(r.typeOid, r.typmod) : 'unknown';
      columns.push({ name, type, typeOid: r?.typeOid ?? d?.type_oid ?? 0, nullable: d ? d.nullable : !r?.isKey });
    }
    const ri = w.rel?.replicaIdentity ?? identityName(def?.replica_identity);
    return schemaYml({
      schema: w.schema,
      table: w.table,
      oid: w.relid ?? def?.relid ?? 0,
      replicaIdentity: ri,
      primaryKey: def?.primary_key ?? [],
      columns,
      generatedColumns: (def?.columns ?? []).filter((c) => c.generated).map((c) => c.name),
      source: { database: this.o.server.database, serverVersion: this.o.server.serverVersion, systemIdentifier: this.o.server.systemIdentifier },
      lsnStart,
      lsnEnd,
      generatedAt: new Date(this.now()),
    });
  }

  /** Drops everything not yet registered (on shutdown or reconnect it is streamed again). */
  async abort(): Promise<void> {
    for (const w of this.windows.values()) await w.file?.abort();
    this.windows.clear();
    this.reloads = [];
    this.txn = null;
  }
}

/** Columns a definition puts in files: not generated (pgoutput does not send them), not excluded. */
function outColumnNames(def: TableDef, excluded: ReadonlySet<string>): string[] {
  return def.columns.filter((c) => !c.generated && !excluded.has(c.name)).map((c) => c.name);
}

/** ddl.sql comment text on one line, whatever names it quotes. */
function oneLine(s: string): string {
  return s.replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

function identityName(c: string | undefined): ReplicaIdentity {
  switch (c) {
    case 'f':
      return 'full';
    case 'i':
      return 'index';
    case 'n':
      return 'nothing';
    default:
      return 'default';
  }
}

function sameValue(a: TupleValue, b: TupleValue): boolean {
  if (b === UNCHANGED_TOAST || a === UNCHANGED_TOAST) return true;
  if (a === null || b === null) return a === b;
  return a.equals(b);
}
