/**
 * pg-egress's own logical messages in the stream (`pg-egress:*`): DDL (sql/002), reload requests
 * (sql/004), a root's partition membership (sql/007), a table renamed away (sql/008). A message
 * counts only when pg-egress's own SQL emitted it in this transaction (SPEC §8): a forged one is
 * dropped before anything reads it, counted and logged (src/ddl/message-auth.ts).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { matchTable } from '../config/index.js';
import { lsnHex, type Lsn } from '../lsn.js';
import { formatCommitTs } from '../wal/time.js';
import type { ReloadReason, ReloadRequest } from '../registry/reload-requests.js';
import { decodeTableDef, type TableDefJson } from '../source/setup.js';
import { CONTROL_PREFIX, describeClaim, verifyControlMessage, type ForgedMessages, type MessageKey } from '../ddl/message-auth.js';
import { foundByCheck, PartitionWindow, type PartitionsMessage } from './partition-window.js';
import { outColumnNames, type Relations } from './relations.js';
import type { Txn, Windows } from './windows.js';

export { CONTROL_PREFIX };
/** Prefix of the transactional logical messages emitted by our DDL event trigger (sql/002). */
export const DDL_MESSAGE_PREFIX = 'pg-egress:ddl';
/** Reload requests at their transaction's WAL position: markers and tables joining with data (sql/004). */
export const RELOAD_MESSAGE_PREFIX = 'pg-egress:reload';
/** A partitioned root's membership change at its transaction's WAL position (sql/007). */
export const PARTITIONS_MESSAGE_PREFIX = 'pg-egress:partitions';
/** A table whose name changed (sql/008): the old name's rows end at this position. */
export const MOVED_MESSAGE_PREFIX = 'pg-egress:moved';

export interface DdlEvent {
  command_tag: string;
  object_type?: string;
  schema: string;
  table: string;
  relid: number;
  command: string;
  /** table_definition()'s JSON as the event trigger sent it (decoded here once). */
  definition?: TableDefJson | null;
  dropped?: boolean;
  /** A dropped partitioned root (sql/008): it had no rows of its own, so no T boundary. */
  partitioned?: boolean;
}

export interface ControlOptions {
  cfg: Config;
  log: Logger;
  /** Authenticates `pg-egress:*` messages (src/ddl/message-auth.ts). */
  messageKey: MessageKey;
  /** Counts and logs forged ones (kept across sessions by the daemon for /metrics). */
  forged: ForgedMessages;
  /**
   * Commit LSNs of skipped transactions whose reload requests are asked for again (batches
   * adopted from disk whose registration, with those requests, a failover lost: src/commit/adopt.ts).
   */
  recollect?: { ranges: { from: Lsn; to: Lsn }[]; request: (r: ReloadRequest) => void };
}

export class ControlMessages {
  /** Reload requests seen since the last flush: registered with it (exactly once). */
  reloads: ReloadRequest[] = [];

  constructor(
    private readonly o: ControlOptions,
    private readonly relations: Relations,
    private readonly windows: Windows,
  ) {}

  handle(t: Txn | null, prefix: string, content: Buffer, transactional: boolean): Promise<void> | undefined {
    // Replayed from before the registered LSN: handled by an earlier process.
    // (A reload request in a skipped transaction of a batch adopted from disk is asked for again.)
    if (transactional && (!t || (t.skip && !(prefix === RELOAD_MESSAGE_PREFIX && this.recollecting(t))))) return;
    const at = transactional && t ? t : null;
    const v = verifyControlMessage(this.o.messageKey, prefix, content, at ? { xid: at.xid, finalLsn: at.finalLsn } : null);
    if (!v.ok) {
      const line = this.o.forged.note({
        prefix,
        reason: v.reason,
        xid: at ? at.xid : null,
        lsn: at ? lsnHex(at.finalLsn) : null,
        claim: describeClaim(content),
      });
      if (line) this.o.log.warn(line, `dropped a forged ${JSON.stringify(prefix)} message (${v.reason}): not emitted by pg-egress's own SQL; nothing written`);
      return;
    }
    const body = parse(v.payload);
    if (body === undefined) {
      this.o.log.warn(`ignoring malformed ${prefix.slice('pg-egress:'.length)} message`);
      return;
    }
    if (prefix === DDL_MESSAGE_PREFIX) return t && !t.skip ? this.ddl(t, body as DdlEvent) : undefined;
    if (prefix === RELOAD_MESSAGE_PREFIX) return t ? this.reloadRequest(t, body as ReloadMessage) : undefined;
    if (prefix === MOVED_MESSAGE_PREFIX) return this.moved(t, body as MovedMessage);
    if (prefix === PARTITIONS_MESSAGE_PREFIX) return t && !t.skip ? this.partitions(t, body as PartitionsMessage) : undefined;
    this.o.log.debug({ prefix }, 'ignoring an authentic message of a kind this version does not know');
    return;
  }

  private async ddl(t: Txn, ev: DdlEvent): Promise<void> {
    const { scope } = this.relations;
    if (!(await scope.selected(ev.schema, ev.table, ev.relid))) return;
    const w = this.windows.window(ev.schema, ev.table, ev.relid);
    if (ev.definition) {
      const def = decodeTableDef(ev.definition);
      // The name has a table again (created, or renamed to it) after a drop or a move.
      w.dropped = false;
      this.relations.setDef(def);
      // The file's header must be the columns at the end of the window (SPEC §5), also when no
      // row follows this DDL in the window: switch the open file to the new layout now.
      if (w.file) await w.file.useColumns(outColumnNames(def, scope.excluded(ev.schema, ev.table)));
    }
    if (ev.dropped && !w.dropped && !ev.partitioned) {
      // The table's rows are gone: a T row here ends them, so a table created later under this
      // name does not rebuild on top of them (README "Out-of-band operations").
      await this.windows.boundary(t, w, () => this.relations.defColumns(w.schema, w.table));
      w.dropped = true;
      // The definition stays for this window's schema.yml; a table created under the name brings
      // its own with its CREATE TABLE message, before any of its rows.
    }
    this.windows.addDdl(w, t, ev.command, ev.command_tag);
  }

  /**
   * A root's membership change (sql/007): the root's window gets the leaves and the change at this
   * transaction's commit LSN (its partitions.yml) and the DDL (its ddl.sql). Nothing moves: each
   * leaf's rows are in its own folder.
   */
  private async partitions(t: Txn, m: PartitionsMessage): Promise<void> {
    const { cfg } = this.o;
    if (m.publication !== cfg.publication || !matchTable(cfg, m.root.schema, m.root.name)) return;
    const w = this.windows.window(m.root.schema, m.root.name, Number(m.root.oid));
    await this.relations.ensureDef(m.root.schema, m.root.name, Number(m.root.oid));
    (w.partitions ??= new PartitionWindow()).add(m, t.finalLsn);
    this.relations.scope.noteLeaves(m.root, m.partitions);
    if (m.command && m.command_tag) this.windows.addDdl(w, t, m.command, m.command_tag);
    // Found by the daemon's own check (first appearance, or DDL capture off): say so in ddl.sql.
    else this.windows.addNote(w, t, `-- lsn ${lsnHex(t.finalLsn)} xid ${t.xid} at ${formatCommitTs(t.commitTime)}: ${foundByCheck(m)}\n`);
  }

  /**
   * A reload request inside a transaction: kept until the flush that passes it registers it, so
   * that a crash before then replays it from the slot, and a rolled-back marker never arrives.
   */
  private async reloadRequest(t: Txn, r: ReloadMessage): Promise<void> {
    const again = t.skip && this.recollecting(t);
    if (t.skip && !again) return;
    if (!(await this.relations.scope.selected(r.schema, r.table, r.relid))) return;
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
    const w = this.windows.window(r.schema, r.table, r.relid);
    // Value-changing DDL (sql/008): ddl.sql says why the table is exported again.
    if (reason === 'ddl') this.windows.addNote(w, t, `-- pg-egress: reload requested: ${oneLine(String(r.detail ?? 'value-changing DDL'))}\n`);
    this.reloads.push(req);
  }

  /** A skipped transaction inside a batch adopted from disk: its reload requests are asked for again. */
  private recollecting(t: Txn): boolean {
    const rc = this.o.recollect;
    return rc !== undefined && rc.ranges.some((r) => t.finalLsn >= r.from && t.finalLsn < r.to);
  }

  /** A table's name changed (sql/008): the rows under the old name end here. */
  private async moved(t: Txn | null, m: MovedMessage): Promise<void> {
    const from = m.from;
    if (typeof from?.schema !== 'string' || typeof from.table !== 'string' || !matchTable(this.o.cfg, from.schema, from.table)) return;
    const w = this.windows.window(from.schema, from.table, null);
    if (w.dropped) return;
    await this.windows.boundary(t!, w, () => this.relations.defColumns(w.schema, w.table));
    w.dropped = true;
  }
}

interface ReloadMessage {
  reason?: ReloadReason;
  schema: string;
  table: string;
  relid: number;
  previous_comment?: string | null;
  request_id?: string | null;
  detail?: string;
}

interface MovedMessage {
  from?: { schema?: string; table?: string };
}

/** The message's JSON body, or undefined when it is not JSON. */
function parse(content: Buffer): unknown {
  try {
    return JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** ddl.sql comment text on one line, whatever names it quotes. */
function oneLine(s: string): string {
  return s.replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}
