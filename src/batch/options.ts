/** What the batch controller is given: where flushes go, the catalog, the clock (src/batch/controller.ts). */
import type { Lsn } from '../lsn.js';
import type { FlushCommitted, FlushInput } from '../commit/flush.js';
import type { AnchorTarget } from '../registry/anchors.js';
import type { ServerInfo, TableDef } from '../source/setup.js';
import type { ControlOptions } from './control.js';
import type { CatalogReader } from './relations.js';

export interface ControllerOptions extends ControlOptions {
  /**
   * Commits a flush (src/commit/flush.ts `commitFlush` to output.dir and the registry; a fake in
   * unit tests). Given the batch name's window, it takes the next batch number of that window.
   */
  sink: FlushSink;
  /** Notes a table seen in the stream (registry `noteTable`). */
  noteTable: (schema: string, table: string, relid: number) => Promise<void>;
  anchors: readonly AnchorTarget[];
  server: ServerInfo;
  /** LSN registered by earlier flushes: transactions committed before it are skipped. */
  registeredLsn: Lsn;
  defs: TableDef[];
  catalog: CatalogReader;
  /** Called after a flush registered reload requests (wakes the reloader). */
  onReloadsRegistered?: () => void;
  now?: () => number;
}

/** Commits flushes: src/commit/target.ts `flushSink` in the daemon, a fake in unit tests. */
export interface FlushSink {
  nextBatchSeq(windowName: string): Promise<number>;
  commit(x: FlushInput): Promise<Pick<FlushCommitted, 'batchId' | 'files' | 'rows' | 'tables'>>;
}

export type FlushReason = 'window' | 'interval' | 'idle' | 'caught_up' | 'size' | 'reload' | 'shutdown';
