/**
 * One table's rows in the flush window being written. Rows are CSV-encoded into a small buffer and
 * streamed through gzip into a temporary file as they arrive, so memory does not grow with the
 * window or with a transaction.
 *
 * The file's header is the table's columns at the end of the window (SPEC §5). Normally that is
 * known when the first row is written. When a Relation message changes the columns mid-window
 * (ALTER TABLE), rows go on into a new segment with the new header, and on close the earlier
 * segments are rewritten once into the final layout, matching columns by name: a column the
 * row did not have is empty, a dropped column's values are left out.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { pipeline } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { CsvBuffer, CsvRecordSplitter, headerLine, parseRecord } from './csv.js';
import { GzipFileWriter, type GzipFileStats } from './gzip-file.js';
import { ioError } from './atomic.js';
import type { Lsn } from '../lsn.js';
import { MerkleBuilder } from '../proof/merkle.js';

/** A file's RFC 6962 tree: leaf count and root. */
export interface MerkleSummary {
  treeSize: number;
  root: Buffer;
  /** Roots of each complete block of BLOCK records (see proof/merkle.ts). */
  blocks: Buffer[];
}

/** The columns every streaming file starts with (SPEC §4). */
export const META_COLUMNS = ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged'] as const;

const CHUNK_BYTES = 64 * 1024;

interface Segment {
  /** Replaced by an equal array when a Relation message repeats the same layout. */
  names: readonly string[];
  writer: GzipFileWriter;
}

export interface WindowFileOptions {
  tmpDir: string;
  gzipLevel: number;
  fileMode: number;
}

export class StreamingFile {
  private readonly segments: Segment[] = [];
  private current: Segment | null = null;
  readonly buf = new CsvBuffer();
  /** RFC 6962 tree over the file's records (SPEC §9), built as rows are written. */
  private merkle = new MerkleBuilder();
  /** Where the row being encoded starts in `buf`. */
  private rowStart = 0;
  rows = 0;
  lsnStart: Lsn | null = null;
  lsnEnd: Lsn | null = null;

  constructor(private readonly opts: WindowFileOptions) {}

  private tmpPath(): string {
    return path.join(this.opts.tmpDir, `${randomBytes(8).toString('hex')}.csv.gz`);
  }

  /** Before writing a row with these data columns: opens a segment when the layout changes. */
  async useColumns(names: readonly string[]): Promise<void> {
    if (this.current && sameNames(this.current.names, names)) {
      this.current.names = names;
      return;
    }
    if (this.current) {
      await this.drain();
    }
    const writer = new GzipFileWriter(this.tmpPath(), this.opts.gzipLevel, this.opts.fileMode, { records: true });
    this.current = { names, writer };
    this.segments.push(this.current);
    await writer.write(headerLine([...META_COLUMNS, ...names]));
  }

  /** Call after each encoded row; hands full chunks to gzip and returns its backpressure. */
  rowWritten(lsn: Lsn): Promise<void> | undefined {
    // The record's leaf: its bytes without the terminating \n, hashed straight from the buffer
    // (or by the native deflate as it compresses them).
    if (!this.current!.writer.hashesRecords) this.merkle.addRange(this.buf.bytes, this.rowStart, this.buf.length - 1);
    return this.rowsWritten(1, lsn);
  }

  /**
   * Whether several rows may be written before one call of rowsWritten (a run, encodeInsertRun):
   * only where the writer finds and hashes the records itself (the native sink), so that no row's
   * bounds are needed here.
   */
  get takesRuns(): boolean {
    return this.current !== null && this.current.writer.hashesRecords;
  }

  /** Where a run stops so that the buffer goes to the compressor in chunks of the usual size. */
  get runStop(): number {
    return CHUNK_BYTES;
  }

  /** Call after `n` rows written at once (only where takesRuns), or through rowWritten. */
  rowsWritten(n: number, lsn: Lsn): Promise<void> | undefined {
    this.rows += n;
    if (this.lsnStart === null) this.lsnStart = lsn;
    this.lsnEnd = lsn;
    const writer = this.current!.writer;
    if (this.buf.length >= CHUNK_BYTES) {
      this.rowStart = 0;
      return writer.copiesInput ? this.buf.drainTo((b) => writer.write(b)) : writer.write(this.buf.take());
    }
    this.rowStart = this.buf.length;
    return undefined;
  }

  private async drain(): Promise<void> {
    this.rowStart = 0;
    const writer = this.current!.writer;
    if (this.buf.length > 0) await (writer.copiesInput ? this.buf.drainTo((b) => writer.write(b)) : writer.write(this.buf.take()));
  }

  /** The first write error of the file's segments (ENOSPC, EROFS, ...), as soon as it happens. */
  get error(): Error | null {
    for (const s of this.segments) if (s.writer.error) return s.writer.error;
    return null;
  }

  get rawBytes(): number {
    let n = this.buf.length;
    for (const s of this.segments) n += s.writer.rawBytes;
    return n;
  }

  get columns(): readonly string[] | null {
    return this.current?.names ?? null;
  }

  /** Completes the file at `dest` (fsynced; the caller renames into place and fsyncs the dir). */
  async finish(): Promise<{ tmpPath: string; stats: GzipFileStats; merkle: MerkleSummary }> {
    await this.drain();
    const last = this.segments[this.segments.length - 1];
    if (this.segments.length === 1) {
      const stats = await last.writer.finish();
      return { tmpPath: last.writer.path, stats, merkle: this.treeOf(stats) };
    }
    // Columns changed inside the window: rewrite every segment into the last one's layout.
    for (const s of this.segments) await s.writer.finish();
    const finalNames = last.names;
    const out = new GzipFileWriter(this.tmpPath(), this.opts.gzipLevel, this.opts.fileMode, { records: true });
    try {
      const stats = await this.rewrite(out, finalNames);
      return { tmpPath: out.path, stats, merkle: this.treeOf(stats) };
    } catch (e) {
      await out.abort().catch(() => undefined);
      throw e;
    }
  }

  /** The file's tree: the native one when the writer hashed the records, else the builder's. */
  private treeOf(stats: GzipFileStats): MerkleSummary {
    if (!stats.merkle) return { treeSize: this.merkle.size, root: this.merkle.root(), blocks: this.merkle.blocks };
    // Every row is one record: the native scan must have found exactly the rows written.
    if (stats.merkle.treeSize !== this.rows) throw new Error(`streaming file: ${this.rows} rows written but ${stats.merkle.treeSize} CSV records hashed`);
    return stats.merkle;
  }

  /** Writes every segment's rows into `out` in the layout `finalNames`. */
  private async rewrite(out: GzipFileWriter, finalNames: readonly string[]): Promise<GzipFileStats> {
    await out.write(headerLine([...META_COLUMNS, ...finalNames]));
    const buf = new CsvBuffer();
    // The records change (new layout): the tree is built again over the final ones.
    this.merkle = new MerkleBuilder();
    for (const s of this.segments) {
      const map = finalNames.map((n) => s.names.indexOf(n));
      let header = true;
      const splitter = new CsvRecordSplitter((rec) => {
        if (header) {
          header = false;
          return;
        }
        const f = parseRecord(rec);
        const start = buf.length;
        for (let i = 0; i < META_COLUMNS.length; i++) {
          if (i > 0) buf.byte(0x2c);
          const v = f[i];
          if (v !== null) buf.value(v);
        }
        for (const idx of map) {
          buf.byte(0x2c);
          const v = idx >= 0 ? f[META_COLUMNS.length + idx] : null;
          if (v !== null && v !== undefined) buf.value(v);
        }
        if (!out.hashesRecords) this.merkle.addRecord(buf.view(start, buf.length));
        buf.byte(0x0a);
      });
      // pipeline, not pipe: a read error must end the iteration below, not leave it waiting.
      const input = pipeline(createReadStream(s.writer.path), zlib.createGunzip(), () => undefined);
      try {
        for await (const chunk of input) {
          splitter.push(chunk as Buffer);
          if (buf.length >= CHUNK_BYTES) await out.write(buf.take());
        }
      } catch (e) {
        input.destroy();
        throw ioError(s.writer.path, e);
      }
      splitter.end();
      await fsp.rm(s.writer.path, { force: true });
    }
    if (buf.length > 0) await out.write(buf.take());
    return out.finish();
  }

  async abort(): Promise<void> {
    for (const s of this.segments) await s.writer.abort().catch(() => undefined);
  }
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
