/**
 * Export chunks from the server into gzip files, one file per COPY and one or more COPYs per
 * query (copyFilesEnded): `COPY (...) TO STDOUT` (in text or CSV
 * format, as the sink asks) on a pg.Client, its bytes read straight off the socket into a
 * CopySink (copy-sink.ts: framing, text to CSV, records, Merkle leaves and nodes, gzip members,
 * all in one native pass where the addon is built) and written to the file. Instead of a
 * Readable with a Buffer per CopyData message (pg-copy-streams), the client's socket is taken
 * over for the COPY like pg-copy-streams does: pg's 'data' listener is set aside, and everything
 * after CopyDone (CommandComplete, ReadyForQuery) or from an ErrorResponse on is handed back to pg.
 * Two ways to read it (copy-query.ts):
 *
 * - on the sink's own thread (native sink, plain TCP or Unix socket: the usual case): libuv stops
 *   reading the socket, and a thread of the addon reads it, runs the sink's pass and writes the
 *   file (native/copy_fd.c). No Buffer per read, no work on the main thread, and the exports of
 *   several connections run on several cores. R1 (2M rows, 385 MB): the process's CPU 1.6 s
 *   instead of 2.2, and V8's collections driven by the Buffers (~0.45 s of marking) gone.
 * - through Node's socket (TLS, the JavaScript sink, zlib, PG_EGRESS_COPY_THREAD=0): read in
 *   Node's chunks and fed to the sink on the main thread.
 *
 * Several COPYs in one query are read through Node's socket.
 *
 * Backpressure: the thread writes the file itself and reads no further meanwhile; Node's path
 * stops reading while the file has no room. Either way the server's COPY waits in its socket
 * buffer, and memory stays bounded by one sink block and one read or stream buffer.
 *
 * This is the whole byte path of an export: ExportWorker.copy (workers.ts) calls it inside its
 * snapshot transaction and owns everything about transactions and locks.
 */
import { promises as fsp } from 'node:fs';
import type pg from 'pg';
import { GzipFileWriter } from '../output/gzip-file.js';
import { createCopySink } from './copy-sink.js';
import { CopyOutQuery, endFile, threadable, threadError, type CopyFileOptions, type CopyFileResult, type EndedFile, type FilePart } from './copy-query.js';

export type { CopyFileOptions, CopyFileResult, EndedFile };


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
export async function copyToFileEnded(client: pg.Client, sql: string, opts: CopyFileOptions): Promise<EndedFile> {
  return (await copyFilesEnded(client, [{ sql, opts }]))[0];
}

/**
 * Several COPYs in one query, each into its own file: `COPY a TO STDOUT; COPY b TO STDOUT; ...`
 * (copy-gap.ts reads what comes between them). One query instead of one per table: the socket
 * write that sends a query, and the wake-up of the server process it causes, were ~0.9 ms of the
 * main thread per table in an initial export of 500 small tables (`node --cpu-prof`, 450 ms in
 * `writeBuffer` of 3.15 s), and each backend waited a round trip between its tables. A file is
 * ended as soon as its COPY is (its results are in order). With more than one COPY, the query is
 * read through Node's socket (a small table's few reads never pay for a thread: planner.ts).
 * Any failure fails them all, and every file is removed.
 */
export async function copyFilesEnded(client: pg.Client, copies: { sql: string; opts: CopyFileOptions }[]): Promise<EndedFile[]> {
  const files: FilePart[] = copies.map(({ opts }) => ({
    opts,
    sink: opts.sink ?? createCopySink(opts.gzipLevel),
    out: null,
    unreported: 0,
    reportedRows: 0,
  }));
  const open = (f: FilePart): GzipFileWriter => {
    const { path, gzipLevel, fileMode, zlib, fsync } = f.opts;
    return (f.out ??= new GzipFileWriter(path, gzipLevel, fileMode, { compressed: f.sink.compressed, zlib, fsync }));
  };
  let current = files[0];
  let q: CopyOutQuery | null = null;
  try {
    // On the sink's thread when every COPY asks for it and can: its files are opened first.
    const thread = files.every((f) => f.opts.thread !== false && threadable(client, f.sink));
    // Several COPYs in one query are read only by the sink's thread. Read through Node's socket,
    // such a query stalled once in CI (2026-12-03: within or after a COPY sending NoticeResponses,
    // under load; 2 runs of 6 by hand with three at once) and is not understood yet: each COPY
    // is then a query of its own, the path every export took before.
    if (copies.length > 1 && !thread) return await oneByOne(client, copies);
    const fileFds = thread ? await Promise.all(files.map((f) => open(f).fd())) : null;
    q = new CopyOutQuery(copies.map((c) => c.sql).join('; '), files, open, fileFds);
    void client.query(q as unknown as pg.QueryConfig);
    const lastRows = await q.done;
    const ended = q.ended;
    current = files[files.length - 1];
    ended.push(endFile(current, lastRows));
    return await Promise.all(ended);
  } catch (e) {
    // Files ended before the failure are removed too: their `durable` then rejects, unobserved.
    for (const p of q?.ended ?? []) p.then((r) => r.durable.catch(() => undefined), () => undefined);
    await Promise.all(files.map((f) => f.out?.abort().catch(() => undefined)));
    // The last member's write, by the sink itself (readFd's file).
    throw threadError(e, current.out?.path ?? current.opts.path);
  }
}

/** Each COPY its own query, in order; on a failure, the files of those before it are removed too. */
async function oneByOne(client: pg.Client, copies: { sql: string; opts: CopyFileOptions }[]): Promise<EndedFile[]> {
  const out: EndedFile[] = [];
  try {
    for (const c of copies) out.push((await copyFilesEnded(client, [c]))[0]);
    return out;
  } catch (e) {
    await Promise.allSettled(out.map((r) => r.durable));
    await Promise.all(copies.slice(0, out.length).map((c) => fsp.rm(c.opts.path, { force: true })));
    throw e;
  }
}
