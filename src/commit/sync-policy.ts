/**
 * How a batch's placed files are made durable before it is registered: an fsync of every file
 * and folder (the default), or one syncfs of output.dir's file system (output/syncfs.ts). Each
 * fsync costs a journal commit: ~0.2-0.3 ms here even side by side, and a batch of an initial
 * export places three files and two folders per table (500 tables: ~2,500 fsyncs, most of the
 * time the export spent after its COPYs). One syncfs costs what the file system has to write
 * back: these files, and whatever else is dirty on it (which the kernel writes back within
 * vm.dirty_expire_centisecs, 30 s by default, anyway). So syncfs is chosen when the write-back it
 * may add costs less than the fsyncs it saves: measured here, syncfs wrote back ~1.5 GB/s (400 MB
 * dirty: 267 ms; 64 MB: 51 ms; nothing: 6 ms) and 600 fsyncs took 110-185 ms 4-16 at a time, so
 * one fsync is worth ~0.3-0.45 MB of write-back; SYNCFS_DIRTY_PER_FSYNC takes less, leaning to
 * the fsyncs. The dirty memory counted is the whole machine's (Linux does not tell it per file
 * system without debugfs), which only overstates what a syncfs of one file system writes.
 *
 * syncfs reports a write-back error only since Linux 5.8 (before, it returned 0 regardless), so
 * older kernels keep the fsyncs. https://man7.org/linux/man-pages/man2/syncfs.2.html
 * The dirty page settings: https://docs.kernel.org/admin-guide/sysctl/vm.html#dirty-expire-centisecs
 */

/** Fewer tables than this: their fsyncs cost less than the risk of writing back others' data. */
export const SYNCFS_MIN_TABLES = 16;
/** Dirty memory (Dirty + Writeback) a syncfs may have to write back, per fsync it saves. */
export const SYNCFS_DIRTY_PER_FSYNC = 256 * 1024;

export interface SyncContext {
  /** Tables the batch places. */
  tables: number;
  /** The fsyncs placing them file by file would take (files and folders). */
  fsyncs: number;
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
  const cheaper = c.dirtyBytes !== null && c.dirtyBytes <= c.fsyncs * SYNCFS_DIRTY_PER_FSYNC;
  return c.available && reportsErrors && cheaper && c.tables >= SYNCFS_MIN_TABLES ? 'filesystem' : 'files';
}
