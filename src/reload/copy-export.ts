/**
 * One export chunk from the server into one gzip file: `COPY (...) TO STDOUT` (in text or CSV
 * format, as the sink asks) on a pg.Client, its bytes read straight off the socket into a
 * CopySink (copy-sink.ts: framing, text to CSV, records, Merkle leaves and nodes, gzip members,
 * all in one native pass where the addon is built) and written to the file. Instead of a
 * Readable with a Buffer per CopyData message (pg-copy-streams), the client's socket is taken
 * over for the COPY like pg-copy-streams does: pg's 'data' listener is set aside, and everything
 * after CopyDone (CommandComplete, ReadyForQuery) or from an ErrorResponse on is handed back to pg.
 * Two ways to read it:
 *
 * - on the sink's own thread (native sink, plain TCP or Unix socket: the usual case): libuv stops
 *   reading the socket, and a thread of the addon reads it, runs the sink's pass and writes the
 *   file (native/copy_fd.c). No Buffer per read, no work on the main thread, and the exports of
 *   several connections run on several cores. R1 (2M rows, 385 MB): the process's CPU 1.6 s
 *   instead of 2.2, and V8's collections driven by the Buffers (~0.45 s of marking) gone.
 * - through Node's socket (TLS, the JavaScript sink, zlib, PG_EGRESS_COPY_THREAD=0): read in
 *   Node's chunks and fed to the sink on the main thread.
 *
 * Backpressure: the thread writes the file itself and reads no further meanwhile; Node's path
 * stops reading while the file has no room. Either way the server's COPY waits in its socket
 * buffer, and memory stays bounded by one sink block and one read or stream buffer.
 *
 * This is the whole byte path of an export: ExportWorker.copy (workers.ts) calls it inside its
 * snapshot transaction and owns everything about transactions and locks.
 */
import type pg from 'pg';
import type { Socket } from 'node:net';
import { GzipFileWriter, type GzipFileStats } from '../output/gzip-file.js';
import type { MerkleSummary } from '../output/table-window.js';
import { EgressError } from '../errors.js';
import { ioError } from '../output/atomic.js';
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
  /**
   * false: the COPY is read through Node's socket even where the native sink could read it on a
   * thread of its own (native/copy_fd.c; tests compare both; PG_EGRESS_COPY_THREAD=0 does the same).
   */
  thread?: boolean;
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
    const fileFd = opts.thread !== false && threadable(client, sink) ? await out.fd() : null;
    const q = new CopyOutQuery(sql, sink, out, opts.onProgress, fileFd);
    void client.query(q as unknown as pg.QueryConfig);
    const commandRows = await q.done;
    const r = sink.finish();
    const last = sink.take();
    if (last) await (sink.compressed ? out.writeCompressed(last, 0) : out.write(last));
    if (!r.copyDone) throw new EgressError('PROTOCOL', 'the COPY ended without CopyDone');
    if (commandRows !== null && commandRows !== r.rows) throw new EgressError('PROTOCOL', `COPY sent ${commandRows} rows but ${r.rows} records`);
    q.reportProgress(r.rows);
    out.rawBytes = r.rawBytes;
    const { stats, durable } = await out.end(r.file);
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
    // The last member's write, by the sink itself (readFd's file).
    throw threadError(e, opts.path);
  }
}

/**
 * An error of the sink's thread as pg-egress reports it: writing the file (ENOSPC, EIO, ...) is
 * an output error, the COPY's bytes a protocol error; anything else (the connection lost, as pg
 * reports it, or an EgressError already) as it is.
 */
function threadError(e: unknown, file: string): unknown {
  const err = e as { syscall?: string; code?: string; message?: string };
  if (err?.syscall === 'write') return ioError(file, e);
  if (err?.code === 'ERR_PG_EGRESS_SINK') return new EgressError('PROTOCOL', `COPY output: ${err.message}`);
  return e;
}

/** How often (bytes read) a COPY's progress is reported. */
const PROGRESS_BYTES = 1 << 20;
/**
 * How often a COPY read on its own thread reports its progress (its counters, read from the
 * thread's atomics: nothing else). The reloader writes progress to the registry every 250 ms; a
 * 64 MB chunk now takes ~0.3 s, so a slower report (250 ms) could leave the registry at 0 rows
 * until the chunk ended (export-ddl.test.ts caught it at full size).
 */
const THREAD_PROGRESS_MS = 50;

interface PgConnection {
  stream: Socket;
  query(text: string): void;
}

/** The parts of Node's socket handle (tcp_wrap, pipe_wrap) that a read on another thread needs. */
interface SocketHandle {
  fd?: number;
  reading?: boolean;
  readStart?(): number;
  readStop?(): number;
}

/**
 * Whether the COPY can be read off the socket on the sink's own thread (native/copy_fd.c): the
 * native sink compresses itself, and the connection is a plain TCP or Unix socket with a
 * descriptor (not TLS: those bytes must go through Node's TLS), with nothing read ahead of pg.
 * PG_EGRESS_COPY_THREAD=0 keeps every COPY on Node's socket.
 */
function threadable(client: pg.Client, sink: CopySink): boolean {
  if (process.env.PG_EGRESS_COPY_THREAD === '0' || !sink.readFd || !sink.compressed) return false;
  const s = (client as unknown as { connection?: PgConnection }).connection?.stream;
  return !!s && socketHandle(s) !== null;
}

function socketHandle(s: Socket): SocketHandle | null {
  const h = (s as unknown as { _handle?: SocketHandle | null })._handle;
  // libuv reading it (`reading`), nothing read ahead of pg: the thread gets every byte of the answer.
  const plain = !(s as { encrypted?: boolean }).encrypted && s.readableLength === 0 && !s.destroyed;
  const usable = h && typeof h.fd === 'number' && h.fd >= 0 && h.reading === true && typeof h.readStop === 'function' && typeof h.readStart === 'function';
  return plain && usable ? h : null;
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
  /** Protocol bytes the sink's thread had read at its last progress report. */
  private threadBytes = 0;
  /** Bytes read and records reported to onProgress so far. */
  private unreported = 0;
  private reportedRows = 0;
  private waiting = false;
  private copying = false;
  private rowCount: number | null = null;
  private failed = false;
  /** The socket's handle while the sink's thread reads it (readStop'd), else null. */
  private threadHandle: SocketHandle | null = null;
  private progressTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly text: string,
    private readonly sink: CopySink,
    private readonly out: GzipFileWriter,
    private readonly onProgress?: (bytes: number, rows: number) => void,
    /** The file's descriptor, for the sink's thread to write (null: read through Node's socket). */
    private readonly fileFd: number | null = null,
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
    const h = this.fileFd !== null ? socketHandle(s) : null;
    if (h) {
      this.startThread(s, h, this.fileFd!);
      connection.query(this.text);
      return;
    }
    s.on('readable', this.onReadable);
    connection.query(this.text);
  }

  /**
   * The COPY is read by the sink's thread (native/copy_fd.c): libuv stops reading the socket
   * before the query goes out, so every byte of the answer waits in the kernel for the thread.
   * Once the COPY ended the thread hands back the bytes after it, and detach() gives them to pg
   * and starts libuv reading again. The handle's `reading` flag stays true meanwhile: with it
   * false, any read(0) of the stream (Node schedules one after each chunk it delivers, which may
   * still be due when pg submits a queued query from its data handler) would start libuv reading
   * again (net.js `_read`) and take the thread's bytes.
   */
  private startThread(s: Socket, h: SocketHandle, fileFd: number): void {
    h.readStop!();
    this.threadHandle = h;
    // A connection ended or destroyed meanwhile (shutdown) stops the thread too.
    const stop = () => this.sink.fdCancel?.();
    s.once('close', stop);
    s.once('finish', stop);
    this.progressTimer = setInterval(() => {
      const [bytes, rows] = this.sink.fdProgress!();
      this.unreported += bytes - this.threadBytes;
      this.threadBytes = bytes;
      this.reportProgress(rows);
    }, THREAD_PROGRESS_MS);
    this.progressTimer.unref();
    this.sink.readFd!(h.fd!, fileFd, (err, rest, bytes) => {
      clearInterval(this.progressTimer!);
      s.off('close', stop);
      s.off('finish', stop);
      this.unreported += bytes - this.threadBytes;
      this.threadBytes = bytes;
      if (this.failed) return;
      if (err) {
        this.fail(threadError(err, this.out.path));
        return;
      }
      this.ended = true;
      this.detach(rest);
    });
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
    const h = this.threadHandle;
    this.threadHandle = null;
    // libuv reads again; Node's stream still counts the read in progress it had asked for.
    if (h && !s.destroyed) {
      const err = h.readStart!();
      if (err) s.destroy(new Error(`the socket cannot be read again after the COPY (${err})`));
    }
    // As pg-copy-streams: pg's own handler may pause the socket; resume after it returned.
    process.nextTick(() => s.resume());
  }

  /** The file or the sink failed mid-COPY: the connection cannot be used any more. */
  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.copying = false;
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.sink.fdCancel?.();
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
