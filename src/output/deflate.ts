/**
 * Which deflate writes the gzip files, chosen once at start (logged, and shown by `status`):
 * the native addon's ISA-L (igzip) for `output.gzip_level` 1–3 and libdeflate for 0–9 when they
 * were linked at build time (native/detect.mjs; Debian: `apt-get install libisal-dev
 * libdeflate-dev` before `npm ci`), else Node's zlib. The native ones write one gzip member per
 * block of up to 1 MiB of CSV (RFC 1952 §2.2: a gzip file is a series of members), which every
 * gzip reader takes as one stream. Each compresses at least as well as zlib at the same level on
 * CSV (README "Quick start"), several times faster.
 *
 * PG_EGRESS_DEFLATE=zlib keeps Node's zlib with the rest of the native path (to compare, or for a
 * reader that takes only single-member gzip files); PG_EGRESS_NATIVE=0 turns the addon off
 * altogether (zlib, node:crypto, JavaScript record scan).
 * No import of `pg`: `verify-proof` stays offline.
 */
import { createRequire } from 'node:module';

/** The addon's sink: see native/copy_sink.c for the contract. */
/**
 * readFd's end: `err` has `syscall` 'write' when writing the file failed (`code`: ENOSPC, ...),
 * 'read' when the connection did, else `code` ERR_PG_EGRESS_SINK (the COPY's bytes); `rest`: the
 * bytes after the COPY, for the client's parser; `bytesRead`: all the protocol bytes read.
 */
export type ReadFdCallback = (err: (Error & { code?: string; syscall?: string }) | null, rest: Buffer, bytesRead: number) => void;

export interface NativeSink {
  feed(buf: Buffer): number;
  /**
   * Reads the COPY from the socket `socketFd` on a thread of its own and writes its gzip members
   * to `fileFd` (native/copy_fd.c); `cb` runs on the main thread once the COPY ended, with the
   * bytes after it and the bytes read. Every other method but fdProgress and fdCancel throws meanwhile.
   * `sinks` and `fileFds`: the query holds one more COPY per sink, each written to its file (the
   * same way), in order; `cb` runs once the last ended, or the first that ended without CopyDone.
   */
  readFd(socketFd: number, fileFd: number, cb: ReadFdCallback, sinks?: NativeSink[], fileFds?: number[]): void;
  /** While readFd runs: [bytes read, records found]. */
  fdProgress(): [number, number];
  /** Makes readFd's thread stop within ~0.1 s (its callback gets an error). */
  fdCancel(): void;
  write(buf: Buffer): void;
  take(): Buffer | null;
  finish(): void;
  leftover(): Buffer;
  stats(): {
    rows: number;
    rawBytes: number;
    copyDone: boolean;
    done: boolean;
    root: Buffer;
    blocks: Buffer;
    deflate: string;
    /** After readFd: what it wrote to the file, and the sha256 (hex) of those bytes. */
    fileBytes?: number;
    fileSha256?: string;
    /** After readFd of several COPYs, each but the last: its CommandComplete's row count. */
    commandRows?: number;
  };
}

export interface NativeSinkOptions {
  /** Input is the server's protocol bytes during COPY OUT (CopyData framing to strip). */
  framing?: boolean;
  /** With framing: the COPY is FORMAT text, converted to CSV (copy_text.c). */
  text?: boolean;
  /** Hash the CSV records as Merkle leaves. */
  merkle?: boolean;
  /** Records not hashed at the start (the header). */
  skip?: number;
  level: number;
  /** Bytes of CSV per gzip member (default 1 MiB; tests use tiny ones). */
  block?: number;
  /** false: raw CSV out (the caller compresses with zlib). */
  compress?: boolean;
  /** Without framing: full blocks compressed on a thread while the next one fills (native/sink_async.c). */
  thread?: boolean;
  /** With thread: the block once a thread is had, when larger than `block` (a few sinks at most have one). */
  threadBlock?: number;
}

interface Addon {
  Sink: new (opts: NativeSinkOptions) => NativeSink;
  /** syncfs(2) of the file system holding `path`, on the thread pool (native/syncfs.c). */
  syncfs?: (path: string, cb: (err: (Error & { code?: string; syscall?: string }) | null) => void) => void;
  /** sync_file_range(2) of a range, SYNC_FILE_RANGE_WRITE, on the thread pool; a hint, errors ignored (native/syncfs.c). */
  writeback?: (fd: number, offset: number, length: number) => void;
  /** The cache of the sinks' large buffers (native/buf_pool.c): what it holds, and requests of a cached size that found one or not. */
  bufPoolStats?: () => { buffers: number; bytes: number; hits: number; misses: number };
  deflateBackend(level: number): 'isa-l' | 'libdeflate' | 'zlib';
  /** 16 where Merkle leaves are hashed sixteen at a time (AVX-512, native/sha256_x16.c), else 1. */
  shaLanes?: () => number;
  /** One streaming row into `out` from `at` (native/csv_row.c): the new length, -1 no room, -2 not here. */
  encodeRow?: NativeEncodeRow;
  /** A run of spooled inserts into one table (native/csv_row.c): rows written; res = [new length, next record]. */
  encodeInserts?: NativeEncodeInserts;
}

export type NativeEncodeRow = (
  out: Buffer,
  at: number,
  lsnField: Buffer,
  seq: number,
  midField: Buffer,
  op: number,
  msg: Buffer,
  tupleAt: number,
  idx: Int32Array,
) => number;

export type NativeEncodeInserts = (
  out: Buffer,
  at: number,
  lsnField: Buffer,
  seq: number,
  midField: Buffer,
  spool: Buffer,
  from: number,
  to: number,
  relOid: number,
  idx: Int32Array,
  stopAt: number,
  res: Float64Array,
) => number;

function load(): Addon | null {
  if (process.env.PG_EGRESS_NATIVE === '0') return null;
  try {
    // ../../build from both src/output (tests) and dist/output (installed).
    const a = createRequire(import.meta.url)('../../build/Release/pg_egress_sha256.node') as Partial<Addon>;
    return typeof a.Sink === 'function' && typeof a.deflateBackend === 'function' ? (a as Addon) : null;
  } catch {
    return null;
  }
}

const addon = load();

/** The addon's syncfs (output/syncfs.ts), or null. */
export const nativeSyncfs: Addon['syncfs'] | null = addon?.syncfs ?? null;

/** The addon's writeback (output/gzip-file.ts), or null. */
export const nativeWriteback: Addon['writeback'] | null = addon?.writeback ?? null;

/** The addon's buffer cache counters (tests), or null. */
export const nativeBufPoolStats: Addon['bufPoolStats'] | null = addon?.bufPoolStats ?? null;

/** The addon's row encoder (src/output/row-encoder.ts), or null. */
export const nativeEncodeRow: NativeEncodeRow | null = addon?.encodeRow ?? null;

/** The addon's encoder of spooled insert runs (src/batch/streamed.ts), or null. */
export const nativeEncodeInserts: NativeEncodeInserts | null = addon?.encodeInserts ?? null;

/** The addon's sink class, or null (not built, an older build, or PG_EGRESS_NATIVE=0). */
export const NativeSinkClass: Addon['Sink'] | null = addon?.Sink ?? null;

/** The library that compresses `level`: 'isa-l', 'libdeflate' or 'zlib' (Node's). */
export function deflateBackend(level: number): 'isa-l' | 'libdeflate' | 'zlib' {
  return addon && process.env.PG_EGRESS_DEFLATE !== 'zlib' ? addon.deflateBackend(level) : 'zlib';
}

/**
 * One line for the startup log and `status`, e.g. "isa-l (gzip level 1), native COPY path,
 * leaves hashed 16 at a time (AVX-512)".
 */
export function describeCompression(level: number): string {
  const lanes = addon?.shaLanes?.() ?? 1;
  const path = addon ? `, native COPY path${lanes > 1 ? `, leaves hashed ${lanes} at a time (AVX-512)` : ''}` : ', JavaScript COPY path';
  return `${deflateBackend(level)} (gzip level ${level})${path}`;
}
