/**
 * How a batch's placed files are made durable before it is registered: an fsync of every file
 * and folder (the default), or one syncfs of output.dir's file system (output/syncfs.ts). Each
 * fsync costs a journal commit: ~0.5 ms here even side by side, and a batch of an initial export
 * places three files and two folders per table (500 tables: ~2,000 fsyncs, most of the time the
 * export spent after its COPYs). One syncfs costs what the file system has to write back: these
 * files, and whatever else is dirty on it, which is why it is only used when little is.
 *
 * syncfs reports a write-back error only since Linux 5.8 (before, it returned 0 regardless), so
 * older kernels keep the fsyncs. https://man7.org/linux/man-pages/man2/syncfs.2.html
 */

/** Fewer tables than this: their fsyncs cost less than the risk of writing back others' data. */
export const SYNCFS_MIN_TABLES = 16;
/** More dirty memory than this (the whole machine's, Dirty + Writeback): the fsyncs. */
export const SYNCFS_MAX_DIRTY_BYTES = 64 * 1024 * 1024;

export interface SyncContext {
  /** Tables the batch places. */
  tables: number;
  /** syncfs can be called (the addon, Linux). */
  available: boolean;
  /** The kernel's version, "major.minor". */
  kernel: string;
  /** Dirty + Writeback bytes now, or null if unknown. */
  dirtyBytes: number | null;
}

/** 'filesystem': one syncfs for the batch; 'files': an fsync per file and folder. */
export function batchSync(c: SyncContext): 'filesystem' | 'files' {
  const [major, minor] = c.kernel.split('.').map(Number);
  const reportsErrors = major > 5 || (major === 5 && minor >= 8);
  const quiet = c.dirtyBytes !== null && c.dirtyBytes <= SYNCFS_MAX_DIRTY_BYTES;
  return c.available && reportsErrors && quiet && c.tables >= SYNCFS_MIN_TABLES ? 'filesystem' : 'files';
}
