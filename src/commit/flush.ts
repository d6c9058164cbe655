/**
 * A flush as a batch: the open table windows that the controller hands over become streaming
 * files, schema.yml, ddl.sql and partitions.yml per table, committed by `commitBatch` with the
 * tables' last window, the new slot LSN and the reload requests it passed (SPEC §3, §6). The
 * controller decides *when*; this decides *what lands on disk*.
 */
import type { Lsn } from '../lsn.js';
import { FILES } from '../output/layout.js';
import type { StreamingFile } from '../output/table-window.js';
import { partitionsYml, type PartitionsDoc } from '../output/partitions.js';
import type { ReloadRequest } from '../registry/reload-requests.js';
import type { AnchorTarget } from '../registry/anchors.js';
import { registerFlushIn } from '../registry/batches.js';
import { commitBatch, type BatchTable, type CommitTarget, type CommittedBatch, type SmallFile } from './batch-commit.js';

/** One table's part of a flush, as the controller hands it over. */
export interface WindowToWrite {
  schema: string;
  table: string;
  relid: number | null;
  folder: string;
  file: StreamingFile | null;
  ddl: string[];
  ddlLsnStart: Lsn | null;
  ddlLsnEnd: Lsn | null;
  dropped: boolean;
  /** A partitioned root's membership in this window: its partitions.yml (SPEC §3). */
  partitions: { doc(generatedAt: Date): PartitionsDoc | null } | null;
}

export interface FlushInput {
  batchId: string;
  windowStartMs: number;
  /** The LSN the slot may be confirmed to once this flush is registered. */
  lsnEnd: Lsn;
  windows: WindowToWrite[];
  /** schema.yml of a window, given its LSN range. */
  schemaText(w: WindowToWrite, lsnStart: Lsn | null, lsnEnd: Lsn | null): string | Promise<string>;
  /** Reload requests registered with this flush (kept in the local write intent too). */
  reloads: ReloadRequest[];
  anchors: readonly AnchorTarget[];
  /** When the documents are generated (partitions.yml's generated_at). */
  now: Date;
  /**
   * Called once the windows' files are finished and their documents made, before anything is
   * placed or registered: from then on the batch needs nothing of the windows or of the
   * controller's state, which may go on with the next rows (src/batch/controller.ts).
   */
  onPrepared?: () => void;
}

export interface FlushCommitted extends CommittedBatch {
  tables: { schema: string; table: string }[];
}

const minLsn = (a: Lsn | null, b: Lsn | null): Lsn | null => (a === null ? b : b === null ? a : a < b ? a : b);
const maxLsn = (a: Lsn | null, b: Lsn | null): Lsn | null => (a === null ? b : b === null ? a : a > b ? a : b);

/**
 * A window gets a folder only when it has something to hold: rows, DDL, or the table's drop. A
 * reload marker opens a window only so that its transaction is flushed (and the request
 * registered) at once; with nothing else in it, it leaves no folder with an empty manifest.
 */
export function hasContent(w: WindowToWrite): boolean {
  return (w.file !== null && w.file.rows > 0) || w.ddl.length > 0 || w.dropped;
}

/** Finishes the windows' files and commits them as one batch. */
export async function commitFlush(target: CommitTarget, x: FlushInput): Promise<FlushCommitted> {
  const windows = x.windows.filter(hasContent).sort((a, b) => (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  const tables: BatchTable[] = [];
  let lsnStart: Lsn | null = null;
  for (const w of windows) {
    const f = w.file;
    const data: BatchTable['data'] = [];
    if (f && f.rows > 0) {
      const { tmpPath, stats, merkle } = await f.finish();
      data.push({ name: FILES.streaming, type: 'streaming', tmpPath, rows: f.rows, stats, merkle, lsnStart: f.lsnStart, lsnEnd: f.lsnEnd });
    }
    const wStart = minLsn(f?.lsnStart ?? null, w.ddlLsnStart);
    const wEnd = maxLsn(f?.lsnEnd ?? null, w.ddlLsnEnd);
    lsnStart = minLsn(lsnStart, wStart);
    const small: SmallFile[] = [{ name: FILES.schema, type: 'schema', text: await x.schemaText(w, wStart, wEnd) }];
    if (w.ddl.length) small.push({ name: FILES.ddl, type: 'ddl', text: w.ddl.join('') });
    const pdoc = w.partitions?.doc(x.now) ?? null;
    if (pdoc) small.push({ name: FILES.partitions, type: 'partitions', text: partitionsYml(pdoc) });
    tables.push({ schema: w.schema, table: w.table, relid: w.relid, folder: w.folder, data, small, lsnStart: wStart, lsnEnd: wEnd });
  }
  const registered = windows.map((w) => ({ schema: w.schema, table: w.table, relid: w.relid, dropped: w.dropped }));
  x.onPrepared?.();
  const done = await commitBatch(target, {
    kind: 'flush',
    batchId: x.batchId,
    windowStartMs: x.windowStartMs,
    lsnStart,
    lsnEnd: x.lsnEnd,
    tables,
    reloads: x.reloads,
    anchors: x.anchors,
    register: (c) => registerFlushIn(c, target.slot, { batchId: x.batchId, lsnEnd: x.lsnEnd, tables: registered, reloads: x.reloads }),
  });
  return { ...done, tables: registered };
}
