/**
 * Streams bytes through gzip into a temporary file while hashing the compressed bytes, so the
 * sha256 and sizes for the manifest are known the moment the file is closed, without reading it
 * back. Memory is bounded by the stream high-water marks: `write` resolves only once gzip has
 * room again (backpressure).
 */
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { ioError } from './atomic.js';

export interface GzipFileStats {
  /** Compressed size on disk. */
  bytes: number;
  /** Uncompressed size. */
  rawBytes: number;
  /** sha256 hex of the compressed file. */
  sha256: string;
}

export class GzipFileWriter {
  private readonly gzip: zlib.Gzip;
  private readonly out: WriteStream;
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  rawBytes = 0;
  private failed: Error | null = null;
  private readonly done: Promise<void>;

  constructor(
    readonly path: string,
    level: number,
    mode: number,
  ) {
    this.gzip = zlib.createGzip({ level, chunkSize: 64 * 1024 });
    this.out = createWriteStream(path, { mode, flags: 'w' });
    this.gzip.on('data', (chunk: Buffer) => {
      this.hash.update(chunk);
      this.bytes += chunk.length;
      if (!this.out.write(chunk)) {
        this.gzip.pause();
        this.out.once('drain', () => this.gzip.resume());
      }
    });
    const fail = (e: Error) => {
      this.failed ??= ioError(path, e);
    };
    this.gzip.on('error', fail);
    this.out.on('error', fail);
    this.done = new Promise<void>((resolve, reject) => {
      this.gzip.on('end', () => this.out.end());
      this.out.on('finish', () => resolve());
      this.out.on('error', (e) => reject(ioError(path, e)));
      this.gzip.on('error', (e) => reject(ioError(path, e)));
    });
    // Keep an unobserved rejection from crashing the process; errors surface through write/finish.
    this.done.catch(() => undefined);
  }

  /** Writes uncompressed bytes. Awaiting is only needed when backpressure applies. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failed) throw this.failed;
    this.rawBytes += chunk.length;
    if (this.gzip.write(chunk)) return undefined;
    return once(this.gzip, 'drain').then(() => undefined);
  }

  /** Ends the gzip stream, waits for the file to be written and fsyncs it. */
  async finish(): Promise<GzipFileStats> {
    if (this.failed) throw this.failed;
    this.gzip.end();
    await this.done;
    try {
      const fh = await fsp.open(this.path, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      throw ioError(this.path, e);
    }
    return { bytes: this.bytes, rawBytes: this.rawBytes, sha256: this.hash.digest('hex') };
  }

  /** Stops writing and removes the temporary file (used when a window is discarded). */
  async abort(): Promise<void> {
    this.gzip.destroy();
    this.out.destroy();
    await fsp.rm(this.path, { force: true });
  }
}
