/**
 * The protocol side of an export's COPYs (copy-export.ts is the API): a pg "submittable" that
 * takes the connection's socket over for one query of one or more COPYs, feeds each COPY's bytes
 * to its file's sink (on the sink's own thread, or through Node's socket), and ends each file as
 * its COPY ends (copy-gap.ts reads what comes between two COPYs).
 */
import type pg from 'pg';
import type { Socket } from 'node:net';
import { GzipFileWriter, type GzipFileStats } from '../output/gzip-file.js';
import type { MerkleSummary } from '../output/table-window.js';
import { EgressError } from '../errors.js';
import { ioError } from '../output/atomic.js';
import type { CopySink } from './copy-sink.js';
import { CopyGap } from './copy-gap.js';

export interface CopyFileResult {
  rows: number;
  stats: GzipFileStats;
  merkle: MerkleSummary;
  /** The file is fsynced once `durable` settles (else only closed: `fsync: false`). */
  synced: boolean;
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
   * Several COPYs of one query are read on the thread only if none says false.
   */
  thread?: boolean;
  /**
   * false: the file is closed without an fsync; its batch makes it durable, by one syncfs or by
   * an fsync when the file is placed (commit/batch-commit.ts). An export's small tables.
   */
  fsync?: boolean;
}

/** A file's result, as soon as its COPY is over, with `durable` (see copyToFileEnded). */
export type EndedFile = CopyFileResult & { durable: Promise<void> };


/** One COPY's file of a query: its sink, its writer (opened when its COPY starts), its progress. */
export interface FilePart {
  opts: CopyFileOptions;
  sink: CopySink;
  out: GzipFileWriter | null;
  /** Bytes read and records reported to onProgress so far. */
  unreported: number;
  reportedRows: number;
}

/** Tells a file's onProgress what was read and found since the last report (`rows`: records so far). */
export function reportProgress(f: FilePart, rows: number): void {
  if (!f.opts.onProgress) return;
  f.opts.onProgress(f.unreported, rows - f.reportedRows);
  f.unreported = 0;
  f.reportedRows = rows;
}

/** After a file's COPY: its last block, the checks (CopyDone, the server's row count), the file ended. */
export async function endFile(f: FilePart, commandRows: number | null): Promise<EndedFile> {
  const { sink } = f;
  const out = f.out!;
  const r = sink.finish();
  // Several COPYs read on the sink's thread: it read each one's row count, and progress comes now.
  commandRows ??= r.commandRows ?? null;
  if (f.unreported === 0 && f.reportedRows === 0) f.unreported = r.rawBytes;
  const last = sink.take();
  if (last) await (sink.compressed ? out.writeCompressed(last, 0) : out.write(last));
  if (!r.copyDone) throw new EgressError('PROTOCOL', 'the COPY ended without CopyDone');
  if (commandRows !== null && commandRows !== r.rows) throw new EgressError('PROTOCOL', `COPY sent ${commandRows} rows but ${r.rows} records`);
  reportProgress(f, r.rows);
  out.rawBytes = r.rawBytes;
  const { stats, durable } = await out.end(r.file);
  return {
    rows: r.rows,
    stats,
    merkle: r.merkle,
    synced: f.opts.fsync !== false,
    durable: durable.catch(async (e: unknown) => {
      await out.abort().catch(() => undefined);
      throw e;
    }),
  };
}

/**
 * An error of the sink's thread as pg-egress reports it: writing the file (ENOSPC, EIO, ...) is
 * an output error, the COPY's bytes a protocol error; anything else (the connection lost, as pg
 * reports it, or an EgressError already) as it is.
 */
export function threadError(e: unknown, file: string): unknown {
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
export function threadable(client: pg.Client, sink: CopySink): boolean {
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
 * messages it parses itself once the COPY data is over (after the last COPY of the query).
 */
export class CopyOutQuery {
  /** Settles after ReadyForQuery with the last COPY's CommandComplete row count. */
  readonly done: Promise<number | null>;
  /** The files before the last, each ended as the next COPY began (copyFilesEnded adds the last). */
  readonly ended: Promise<EndedFile>[] = [];
  private finished = false;
  private resolve!: (rows: number | null) => void;
  private reject!: (e: unknown) => void;
  private conn: PgConnection | null = null;
  private pgData: ((b: Buffer) => void) | null = null;
  private readonly onReadable = () => this.pump();
  /** Protocol bytes the sink's thread had read at its last progress report. */
  private threadBytes = 0;
  /** Writes to a file that wait for room; no more is read meanwhile. */
  private waiting = 0;
  private copying = false;
  private rowCount: number | null = null;
  private failed = false;
  /** The COPY being read (an index into `files`). */
  private cur = 0;
  /** Between two COPYs: after one's CopyDone, before the next one's CopyOutResponse. */
  private gap: CopyGap | null = null;
  /** The socket's handle while the sink's thread reads it (readStop'd), else null. */
  private threadHandle: SocketHandle | null = null;
  private progressTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly text: string,
    private readonly files: FilePart[],
    private readonly open: (f: FilePart) => GzipFileWriter,
    /** The files' descriptors, for the sink's thread to write (null: read through Node's socket). */
    private readonly fileFds: number[] | null = null,
  ) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.done.catch(() => undefined);
    open(files[0]);
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
    const h = this.fileFds !== null ? socketHandle(s) : null;
    if (h) {
      this.startThread(s, h, this.fileFds!);
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
  private startThread(s: Socket, h: SocketHandle, fileFds: number[]): void {
    const f = this.files[0];
    const sink = f.sink;
    const many = this.files.length > 1;
    h.readStop!();
    this.threadHandle = h;
    // A connection ended or destroyed meanwhile (shutdown) stops the thread too.
    const stop = () => sink.fdCancel?.();
    s.once('close', stop);
    s.once('finish', stop);
    // One COPY: its progress as it runs. Several (small tables): each file's when it ends.
    if (!many) {
      this.progressTimer = setInterval(() => {
        const [bytes, rows] = sink.fdProgress!();
        f.unreported += bytes - this.threadBytes;
        this.threadBytes = bytes;
        reportProgress(f, rows);
      }, THREAD_PROGRESS_MS);
      this.progressTimer.unref();
    }
    const more = many ? { sinks: this.files.slice(1).map((x) => x.sink), fileFds: fileFds.slice(1) } : undefined;
    sink.readFd!(
      h.fd!,
      fileFds[0],
      (err, rest, bytes) => {
        if (this.progressTimer) clearInterval(this.progressTimer);
        s.off('close', stop);
        s.off('finish', stop);
        if (!many) f.unreported += bytes - this.threadBytes;
        this.threadBytes = bytes;
        if (this.failed) return;
        if (err) {
          this.fail(threadError(err, f.out!.path));
          return;
        }
        // Every file but the last is ended here (copyFilesEnded ends the last after pg's ReadyForQuery).
        for (this.cur = 0; this.cur < this.files.length - 1; this.cur++) {
          const ended = endFile(this.files[this.cur], null);
          ended.catch(() => undefined);
          this.ended.push(ended);
        }
        this.finished = true;
        const left = sink.leftover();
        this.detach(left.length ? Buffer.concat([left, rest]) : rest);
      },
      more,
    );
  }

  private pump(): void {
    const s = this.conn!.stream;
    while (this.copying && this.waiting === 0) {
      const chunk = s.read() as Buffer | null;
      if (chunk === null) return;
      try {
        this.consume(chunk);
      } catch (e) {
        this.fail(e);
        return;
      }
    }
  }

  /** One chunk of the answer: into the current COPY's sink, or through the gap to the next one. */
  private consume(chunk: Buffer): void {
    for (;;) {
      if (this.gap) {
        const g = this.gap.push(chunk);
        if (!g) return;
        const rows = this.gap.rows;
        this.gap = null;
        if (!g.next) {
          // An ErrorResponse (a later statement failed) or the end: pg's to parse.
          this.finished = true;
          this.detach(g.rest);
          return;
        }
        const ended = endFile(this.files[this.cur], rows);
        ended.catch(() => undefined);
        this.ended.push(ended);
        this.cur++;
        this.open(this.files[this.cur]);
        chunk = g.rest;
        continue;
      }
      const f = this.files[this.cur];
      f.unreported += chunk.length;
      const at = f.sink.feed(chunk);
      if (f.unreported >= PROGRESS_BYTES) reportProgress(f, f.sink.records());
      const produced = f.sink.take();
      if (produced) {
        const p = f.sink.compressed ? f.out!.writeCompressed(produced, 0) : f.out!.write(produced);
        if (p) {
          this.waiting++;
          p.then(
            () => {
              this.waiting--;
              this.pump();
            },
            (e: unknown) => this.fail(e),
          );
        }
      }
      if (at < 0) return;
      const left = f.sink.leftover();
      const rest = left.length ? Buffer.concat([left, chunk.subarray(at)]) : chunk.subarray(at);
      if (this.cur === this.files.length - 1) {
        this.finished = true;
        this.detach(rest);
        return;
      }
      this.gap = new CopyGap();
      chunk = rest;
    }
  }

  /** Gives the socket back to pg with the bytes that are its. */
  private detach(give: Buffer): void {
    const s = this.conn!.stream;
    this.copying = false;
    s.removeListener('readable', this.onReadable);
    s.on('data', this.pgData!);
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
    this.files[this.cur].sink.fdCancel?.();
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
    if (!this.finished) {
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
