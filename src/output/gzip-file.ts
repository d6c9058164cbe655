/**
 * Streams bytes through gzip into a temporary file while hashing the compressed bytes, so the
 * sha256 and sizes for the manifest are known the moment the file is closed, without reading it
 * back (node:crypto: OpenSSL uses the CPU's SHA extensions where it has them). Memory is bounded
 * by the stream high-water marks: `write` resolves only once gzip has room again (backpressure).
 *
 * The compressor is the one output/deflate.ts chose for the level: the addon's ISA-L or
 * libdeflate (one gzip member per block of up to 1 MiB, several times cheaper than zlib; each
 * full block's records found, hashed and compressed on a thread of the sink's own while the next
 * one fills) or Node's zlib stream (on the thread pool). `compressed: true` takes gzip
 * bytes that the caller compressed itself (the native COPY path, reload/copy-export.ts).
 *
 * Every wait here (backpressure, end of file, fsync) also settles when either stream fails: a
 * write error of the file (ENOSPC, EROFS, EIO, EDQUOT) while gzip is paused for backpressure must
 * reject the pending `write` instead of leaving it waiting for a 'drain' that never comes.
 */
import { closeSync, createWriteStream, openSync, promises as fsp, writeSync, type WriteStream } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import zlib from 'node:zlib';
import { EgressError } from '../errors.js';
import { ioError } from './atomic.js';
import { deflateBackend, NativeSinkClass, nativeWriteback, type NativeSink } from './deflate.js';

/** Bytes each stream may hold before it pushes back (uncompressed into gzip, compressed into the file). */
const BUFFERED_BYTES = 256 * 1024;
/** A streaming file's gzip members once its sink has a thread (native/sink_async.c says why). */
const THREAD_BLOCK = 4 * 1024 * 1024;
/**
 * Every this many bytes the stream has written, the kernel is asked to start writing them to the
 * disk (nativeWriteback), so that the fsync at the file's close waits for the last few MiB only:
 * the kernel would write none of them before (dirty_background_ratio: 10% of the memory), and the
 * fsync of S1-load's 50 MB file took 25-37 ms after its last byte (4-15 ms with this), on the
 * path to its registration.
 */
const WRITEBACK_BYTES = 8 * 1024 * 1024;

export interface GzipFileStats {
  /** Compressed size on disk. */
  bytes: number;
  /** With `records: true` and the native deflate: the tree over the CSV records after the header. */
  merkle?: { treeSize: number; root: Buffer; blocks: Buffer[] };
  /** Uncompressed size. */
  rawBytes: number;
  /** sha256 hex of the compressed file. */
  sha256: string;
}

export class GzipFileWriter {
  /** Node's zlib, when no native deflate compresses this level. */
  private readonly gzip: zlib.Gzip | null = null;
  /** The addon's deflate (no framing): raw CSV in, gzip members out. */
  private readonly sink: NativeSink | null = null;
  /** finish() gives the tree of the records (`records: true` and the native deflate). */
  readonly hashesRecords: boolean = false;
  /** The file through Node's stream (the thread pool), unless it is `direct`. */
  private readonly out: WriteStream | null = null;
  /**
   * Opened, written and closed with synchronous calls instead: a compressed file that is not
   * fsynced here (`compressed: true, fsync: false`), i.e. one of the many small files of an
   * export's query of several COPYs, which the sink's thread writes through fd() (its batch makes
   * it durable: commit/sync-policy.ts). Through a WriteStream each such file cost an asynchronous
   * open and close on the thread pool, a stream object and its events: measured here for 500
   * files of 30 KB, 85-100 ms of CPU against 25 ms this way (the calls themselves take
   * ~40 µs a file on this machine's ext4), and 140 ms of the main thread's time in an initial
   * export of 500 tables (node --cpu-prof, `open` and `close` of the streams).
   */
  private readonly direct: boolean;
  /** The `direct` file's descriptor until it is closed. */
  private directFd: number | null = null;
  /** Settles `done` once the `direct` file is closed. */
  private closedDirect: () => void = () => undefined;
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  /** What the stream had written when the kernel was last asked to write back (writeback). */
  private writebackFrom = 0;
  private readonly writebackHint: ((fd: number, offset: number, length: number) => void) | null;
  rawBytes = 0;
  private failed: EgressError | null = null;
  /** Rejecters of the waits in progress; all are called on the first failure. */
  private readonly waiters = new Set<(e: EgressError) => void>();
  /** Settles when the file is completely written and closed, or on the first failure. */
  private readonly done: Promise<void>;

  constructor(
    readonly path: string,
    level: number,
    mode: number,
    /**
     * `fsync: false`: the file is closed without an fsync (its batch makes it durable:
     * commit/sync-policy.ts). `writeback`: what asks the kernel to write a range out (tests
     * record it; default the addon's, none without it).
     */
    opts: {
      compressed?: boolean;
      zlib?: boolean;
      records?: boolean;
      fsync?: boolean;
      writeback?: (fd: number, offset: number, length: number) => void;
    } = {},
  ) {
    this.writebackHint = opts.writeback ?? nativeWriteback ?? null;
    // flush: the stream fsyncs the file before it closes it (an error of that fsync is the
    // stream's error), so the file is durable at 'close' without opening it again to fsync it:
    // two fewer file-system calls per file (an initial export writes one file per table).
    this.direct = opts.compressed === true && opts.fsync === false;
    if (!this.direct) this.out = createWriteStream(path, { mode, flags: 'w', highWaterMark: BUFFERED_BYTES, flush: opts.fsync !== false });
    if (opts.compressed) {
      // The caller compresses (writeCompressed).
    } else if (NativeSinkClass && deflateBackend(level) !== 'zlib' && !opts.zlib) {
      // records: the addon also finds the CSV records and hashes them as Merkle leaves (after the
      // header) in the same pass as the compression, instead of a JavaScript copy per row.
      // thread: a full block's records are found and hashed on a thread of their own while the
      // block is compressed on another and the rows of the next one are encoded here
      // (native/sink_async.c; two files with such threads at most, others on this thread as before).
      this.sink = new NativeSinkClass({ level, merkle: !!opts.records, skip: 1, thread: true, threadBlock: THREAD_BLOCK });
      this.hashesRecords = !!opts.records;
    } else {
      // Room for a few 64 KiB chunks on each side, so that encoding the next chunk (main thread),
      // compressing this one and writing the previous one (thread pool) overlap. With the default
      // 16 KiB marks every chunk made `write` wait for its own compression, and every compressed
      // chunk paused gzip until the file had written it: the stages took turns instead.
      const gzip = (this.gzip = zlib.createGzip({
        level,
        chunkSize: 64 * 1024,
        writableHighWaterMark: BUFFERED_BYTES,
      } as zlib.ZlibOptions));
      gzip.on('data', (chunk: Buffer) => {
        if (this.failed) return;
        this.hash.update(chunk);
        this.bytes += chunk.length;
        this.writeback();
        if (!this.out!.write(chunk)) {
          gzip.pause();
          this.out!.once('drain', () => {
            if (!this.failed) gzip.resume();
          });
        }
      });
      gzip.on('end', () => {
        if (!this.failed) this.out!.end();
      });
      gzip.on('error', (e) => this.fail(e));
    }
    if (this.out) {
      this.out.on('error', (e) => this.fail(e));
      // 'close' comes after the last write and the close(2) of the file, or after 'error'.
      this.done = this.until(this.out, 'close');
    } else {
      this.done = new Promise<void>((resolve, reject) => {
        this.waiters.add(reject);
        this.closedDirect = () => {
          this.waiters.delete(reject);
          resolve();
        };
      });
      try {
        this.directFd = openSync(path, 'w', mode);
      } catch (e) {
        this.fail(e);
      }
    }
    // Keep an unobserved rejection from crashing the process; errors surface through write/finish.
    this.done.catch(() => undefined);
  }

  /** The first error wins; both streams stop and every pending wait rejects with it. */
  private fail(e: unknown): void {
    if (this.failed) return;
    const err = (this.failed = ioError(this.path, e));
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const reject of waiters) reject(err);
    this.gzip?.destroy();
    this.out?.destroy();
    if (this.directFd !== null) {
      try {
        closeSync(this.directFd);
      } catch {
        // the write error is the one reported
      }
      this.directFd = null;
    }
    // The sink's compression thread (one of a few) goes back now, not when the sink is collected.
    try {
      this.sink?.finish();
    } catch {
      // a file cut inside a record: nothing is written any more anyway
    }
  }

  /** Resolves on `event`, rejects on the writer's first failure (whichever comes first). */
  private until(emitter: EventEmitter, event: string): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<void>((resolve, reject) => {
      const onEvent = () => {
        this.waiters.delete(onFail);
        resolve();
      };
      const onFail = (e: EgressError) => {
        emitter.off(event, onEvent);
        reject(e);
      };
      emitter.once(event, onEvent);
      this.waiters.add(onFail);
    });
  }

  /**
   * The write error, if the file has failed (set as soon as it happens, also between writes), so
   * a caller can stop at once instead of at the next write or at `finish`.
   */
  get error(): EgressError | null {
    return this.failed;
  }

  /** Writes uncompressed bytes. Awaiting is only needed when backpressure applies. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failed) throw this.failed;
    this.rawBytes += chunk.length;
    if (this.gzip) {
      if (this.gzip.write(chunk)) return undefined;
      return this.until(this.gzip, 'drain');
    }
    if (!this.sink) throw new Error('GzipFileWriter: this file takes compressed bytes (writeCompressed)');
    this.sink.write(chunk);
    const gz = this.sink.take();
    return gz ? this.put(gz) : undefined;
  }

  /** `write` copies its chunk before it returns (native deflate): the caller may reuse the buffer. */
  get copiesInput(): boolean {
    return this.sink !== null;
  }

  /**
   * The file's descriptor, once it is open (`compressed: true`), for a writer of its own: the
   * export COPY's thread (native/copy_fd.c), which writes, hashes and counts the bytes itself
   * and gives them to `end(written)`. Nothing else may be written then.
   */
  async fd(): Promise<number> {
    if (this.sink || this.gzip) throw new Error('GzipFileWriter: fd() is for compressed files');
    if (this.direct) {
      if (this.failed) throw this.failed;
      return this.directFd!;
    }
    const stream = this.out as unknown as { fd: number | null };
    if (typeof stream.fd !== 'number') await this.until(this.out!, 'open');
    if (this.failed) throw this.failed;
    return stream.fd!;
  }

  /** Writes gzip bytes compressed by the caller (`compressed: true`) from `rawLength` bytes of CSV. */
  writeCompressed(gz: Buffer, rawLength: number): Promise<void> | undefined {
    if (this.failed) throw this.failed;
    this.rawBytes += rawLength;
    return this.put(gz);
  }

  private put(gz: Buffer): Promise<void> | undefined {
    this.hash.update(gz);
    this.bytes += gz.length;
    if (this.direct) {
      try {
        for (let at = 0; at < gz.length; ) at += writeSync(this.directFd!, gz, at, gz.length - at);
      } catch (e) {
        this.fail(e);
        throw this.failed!;
      }
      return undefined;
    }
    this.writeback();
    if (this.out!.write(gz)) return undefined;
    return this.until(this.out!, 'drain');
  }

  /** Asks the kernel to start writing out what the stream wrote since the last time, every WRITEBACK_BYTES. */
  private writeback(): void {
    const out = this.out as (WriteStream & { fd: number | null }) | null;
    if (!this.writebackHint || !out || typeof out.fd !== 'number') return;
    const written = out.bytesWritten;
    if (written - this.writebackFrom < WRITEBACK_BYTES) return;
    // Queued before end() queues the fsync and close, so on the thread pool it comes first; even
    // late, it is a hint only (on a closed descriptor it fails, and that is ignored).
    this.writebackHint(out.fd, this.writebackFrom, written - this.writebackFrom);
    this.writebackFrom = written;
  }

  /** Ends the gzip stream and waits until the file is written, fsynced and closed. */
  async finish(): Promise<GzipFileStats> {
    const { stats, durable } = await this.end();
    await durable;
    return stats;
  }

  /**
   * Ends the file: resolves once every byte is compressed, hashed and handed to the file (or, with
   * `written`, was written to fd() by its own writer, with this size and sha256), with
   * the file's stats and `durable`, which settles when the file is written, fsynced and closed
   * (and rejects with the write error). `finish` waits for both; an export worker starts its next
   * COPY while the fsync runs (reload/copy-export.ts).
   */
  async end(written?: { bytes: number; sha256: string }): Promise<{ stats: GzipFileStats; durable: Promise<void> }> {
    if (this.failed) throw this.failed;
    if (this.gzip) {
      // The last compressed bytes are hashed ('data') before gzip's 'end', which ends the file.
      const ended = this.until(this.gzip, 'end');
      this.gzip.end();
      await ended;
    } else {
      if (this.sink) {
        this.sink.finish();
        const gz = this.sink.take();
        if (gz) {
          // No wait for 'drain': end() below flushes what is queued.
          this.hash.update(gz);
          this.bytes += gz.length;
          this.out!.write(gz);
        }
      }
      if (this.direct) this.closeDirect();
      else this.out!.end();
    }
    if (this.failed) throw this.failed;
    // `written`: the bytes went to fd() from elsewhere; the stream wrote none and only fsyncs and closes.
    const stats: GzipFileStats = written
      ? { bytes: written.bytes, rawBytes: this.rawBytes, sha256: written.sha256 }
      : { bytes: this.bytes, rawBytes: this.rawBytes, sha256: this.hash.digest('hex') };
    if (this.hashesRecords && this.sink) {
      const st = this.sink.stats();
      const blocks: Buffer[] = [];
      for (let i = 0; i < st.blocks.length; i += 32) blocks.push(st.blocks.subarray(i, i + 32));
      stats.merkle = { treeSize: st.rows, root: st.root, blocks };
    }
    const durable = this.done.then(() => {
      if (this.failed) throw this.failed;
    });
    return { stats, durable };
  }

  /** Closes the `direct` file: `done` settles (rejects on an error of close(2), as the stream's would). */
  private closeDirect(): void {
    const fd = this.directFd;
    this.directFd = null;
    try {
      if (fd !== null) closeSync(fd);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.closedDirect();
  }

  /** Stops writing and removes the temporary file (used when a window is discarded). */
  async abort(): Promise<void> {
    const out = this.out;
    this.fail(new EgressError('OUTPUT_IO', `writing ${this.path} was aborted`));
    // A stream destroyed while its open(2) is still on the thread pool creates the file after
    // that: removed before, it would stay (seen in test/integration/copy-many.test.ts when a query
    // failed right after its first file was made). The stream closes what it opened, then says so.
    if (out && !out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    await fsp.rm(this.path, { force: true });
  }
}
