/**
 * One export chunk from the server into one gzip file: `COPY (...) TO STDOUT` (in text or CSV
 * format, as the sink asks) on a pg.Client, its bytes read straight off the socket into a
 * CopySink (copy-sink.ts: framing, text to CSV, records, Merkle leaves and nodes, gzip members,
 * all in one native pass where the addon is built) and written to the file. Instead of a
 * Readable with a Buffer per CopyData message (pg-copy-streams), the client's socket is taken
 * over for the COPY like pg-copy-streams does: pg's 'data' listener is set aside, the socket is
 * read in its own chunks, and everything after CopyDone (CommandComplete, ReadyForQuery) or from
 * an ErrorResponse on is handed back to pg.
 *
 * Backpressure: reading the socket stops while the file has no room, so the server's COPY waits
 * in its socket buffer; memory stays bounded by one sink block and the file stream's buffer.
 *
 * This is the whole byte path of an export: ExportWorker.copy (workers.ts) calls it inside its
 * snapshot transaction and owns everything about transactions and locks.
 */
import type pg from 'pg';
import type { Socket } from 'node:net';
import { GzipFileWriter, type GzipFileStats } from '../output/gzip-file.js';
import type { MerkleSummary } from '../output/table-window.js';
import { EgressError } from '../errors.js';
import { createCopySink, type CopySink } from './copy-sink.js';

export interface CopyFileResult {
  rows: number;
  stats: GzipFileStats;
  merkle: MerkleSummary;
}

export interface CopyFileOptions {
  path: string;
  gzipLevel: number;
  fileMode: number;
  /**
   * Progress, as the COPY runs: protocol bytes read and records found since the last call (about
   * every MiB, and once at the end), so a long chunk's progress moves before it ends.
   */
  onProgress?: (bytes: number, rows: number) => void;
  /** Tests: the sink to use (default: native when built), and Node's zlib even when a native deflate is there. */
  sink?: CopySink;
  zlib?: boolean;
}

/** Runs `sql` (a COPY ... TO STDOUT) on `client` and writes its CSV to `opts.path` as gzip. */
export async function copyToFile(client: pg.Client, sql: string, opts: CopyFileOptions): Promise<CopyFileResult> {
  const { durable, ...r } = await copyToFileEnded(client, sql, opts);
  await durable;
  return r;
}

/**
 * copyToFile that resolves as soon as the COPY is over and the file's every byte is hashed and
 * handed to it (the connection is free for the next COPY), with `durable`: settles when the file
 * is fsynced and closed, or rejects with the write error (the file is removed then). An export
 * of many small tables thus overlaps each file's fsync with the next table's COPY.
 */
export async function copyToFileEnded(
  client: pg.Client,
  sql: string,
  opts: CopyFileOptions,
): Promise<CopyFileResult & { durable: Promise<void> }> {
  const sink = opts.sink ?? createCopySink(opts.gzipLevel);
  const out = new GzipFileWriter(opts.path, opts.gzipLevel, opts.fileMode, { compressed: sink.compressed, zlib: opts.zlib });
  try {
    const q = new CopyOutQuery(sql, sink, out, opts.onProgress);
    void client.query(q as unknown as pg.QueryConfig);
    const commandRows = await q.done;
    const r = sink.finish();
    const last = sink.take();
    if (last) await (sink.compressed ? out.writeCompressed(last, 0) : out.write(last));
    if (!r.copyDone) throw new EgressError('PROTOCOL', 'the COPY ended without CopyDone');
    if (commandRows !== null && commandRows !== r.rows) throw new EgressError('PROTOCOL', `COPY sent ${commandRows} rows but ${r.rows} records`);
    q.reportProgress(r.rows);
    out.rawBytes = r.rawBytes;
    const { stats, durable } = await out.end();
    return {
      rows: r.rows,
      stats,
      merkle: r.merkle,
      durable: durable.catch(async (e: unknown) => {
        await out.abort().catch(() => undefined);
        throw e;
      }),
    };
  } catch (e) {
    await out.abort().catch(() => undefined);
    throw e;
  }
}

/** How often (bytes read) a COPY's progress is reported. */
const PROGRESS_BYTES = 1 << 20;

interface PgConnection {
  stream: Socket;
  query(text: string): void;
}

/**
 * A pg "submittable" (the interface pg-copy-streams uses): pg calls `submit` when the query's
 * turn comes, then `handleCommandComplete`, `handleReadyForQuery` or `handleError` for the
 * messages it parses itself once the COPY data is over.
 */
class CopyOutQuery {
  /** Settles after ReadyForQuery with CommandComplete's row count (copyToFile then finishes the sink). */
  readonly done: Promise<number | null>;
  private ended = false;
  private resolve!: (rows: number | null) => void;
  private reject!: (e: unknown) => void;
  private conn: PgConnection | null = null;
  private pgData: ((b: Buffer) => void) | null = null;
  private readonly onReadable = () => this.pump();
  /** Bytes read and records reported to onProgress so far. */
  private unreported = 0;
  private reportedRows = 0;
  private waiting = false;
  private copying = false;
  private rowCount: number | null = null;
  private failed = false;

  constructor(
    private readonly text: string,
    private readonly sink: CopySink,
    private readonly out: GzipFileWriter,
    private readonly onProgress?: (bytes: number, rows: number) => void,
  ) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.done.catch(() => undefined);
  }

  submit(connection: PgConnection): void {
    this.conn = connection;
    const s = connection.stream;
    const listeners = s.listeners('data') as ((b: Buffer) => void)[];
    if (listeners.length !== 1) throw new Error(`pg's connection has ${listeners.length} data listeners, expected 1`);
    this.pgData = listeners[0];
    s.removeListener('data', this.pgData);
    s.pause();
    this.copying = true;
    s.on('readable', this.onReadable);
    connection.query(this.text);
  }

  /** Tells onProgress what was read and found since the last report (`rows`: records so far). */
  reportProgress(rows: number): void {
    if (!this.onProgress) return;
    this.onProgress(this.unreported, rows - this.reportedRows);
    this.unreported = 0;
    this.reportedRows = rows;
  }

  private pump(): void {
    const s = this.conn!.stream;
    while (this.copying && !this.waiting) {
      const chunk = s.read() as Buffer | null;
      if (chunk === null) return;
      try {
        this.unreported += chunk.length;
        const at = this.sink.feed(chunk);
        if (this.unreported >= PROGRESS_BYTES) this.reportProgress(this.sink.records());
        const produced = this.sink.take();
        if (produced) {
          const p = this.sink.compressed ? this.out.writeCompressed(produced, 0) : this.out.write(produced);
          if (p) {
            this.waiting = true;
            p.then(
              () => {
                this.waiting = false;
                this.pump();
              },
              (e: unknown) => this.fail(e),
            );
          }
        }
        if (at >= 0) {
          this.ended = true;
          this.detach(chunk.subarray(at));
        }
      } catch (e) {
        this.fail(e);
        return;
      }
    }
  }

  /** Gives the socket back to pg with the bytes that are its. */
  private detach(rest: Buffer): void {
    const s = this.conn!.stream;
    this.copying = false;
    s.removeListener('readable', this.onReadable);
    s.on('data', this.pgData!);
    const left = this.sink.leftover();
    const give = left.length ? Buffer.concat([left, rest]) : rest;
    if (give.length) this.pgData!(give);
    // As pg-copy-streams: pg's own handler may pause the socket; resume after it returned.
    process.nextTick(() => s.resume());
  }

  /** The file or the sink failed mid-COPY: the connection cannot be used any more. */
  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.copying = false;
    this.reject(e);
    this.conn?.stream.removeListener('readable', this.onReadable);
    this.conn?.stream.destroy();
  }

  handleCommandComplete(msg: { text?: string }): void {
    const m = /^COPY (\d+)/.exec(msg?.text ?? '');
    if (m) this.rowCount = Number(m[1]);
  }

  handleReadyForQuery(): void {
    if (this.failed) return;
    if (!this.ended) {
      this.fail(new EgressError('PROTOCOL', 'the server ended the COPY query without its data'));
      return;
    }
    this.resolve(this.rowCount);
  }

  handleError(err: unknown): void {
    if (this.failed) return;
    if (this.copying) {
      // The connection ended mid-COPY: pg reports it here.
      this.fail(err);
      return;
    }
    this.failed = true;
    this.reject(err);
  }

  // pg calls these for other message kinds; none are expected for COPY TO STDOUT.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}
