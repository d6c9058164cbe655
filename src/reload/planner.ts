/**
 * Splits a table into ctid block ranges for parallel COPY on one snapshot. Pure: from the table's
 * size to `WHERE ctid >= '(a,0)' AND ctid < '(b,0)'` bounds. Since PostgreSQL 14 such a condition
 * is a TID Range Scan that reads only those blocks.
 * https://www.postgresql.org/docs/15/release-14.html (TID Range Scan)
 *
 * The last range has no upper bound: pages added after the size was read hold only rows that the
 * snapshot cannot see, but an open end costs nothing and leaves no doubt.
 *
 * A split is not free for the server. A TID Range Scan reads without the small ring of buffers that
 * a sequential scan of a table over shared_buffers/4 reuses (heapam's table_beginscan_tidrange has
 * no SO_ALLOW_STRAT), so each export backend maps every shared buffer it reads into its own page
 * tables: two page faults per 8 KiB page. On the AMD virtual machine of the README a quarter of a
 * 317 MB table by ctid made 20,400 minor faults and used 1.0 s of the backend's CPU, the whole
 * table's plain COPY 117 faults and 1.65 s. So a table no larger than its share of the export
 * (all tables' bytes / the ways it runs in parallel, below) is copied whole: splitting it would
 * not shorten the export, whose workers have other tables to copy meanwhile. Up to WHOLE_MAX_CHUNKS chunks' worth
 * only: chunk_size keeps bounding the files (a warehouse loads several files of a table in
 * parallel, one gzip file only serially), within that factor: 16 × 64 MiB is 1 GiB of CSV, about
 * 250 MB gzipped at level 1, the top of the compressed file size loaders ask for (Snowflake:
 * 100-250 MB, https://docs.snowflake.com/en/user-guide/data-load-considerations-prepare).
 *
 * The share counts the ways a split can run in parallel. When the server runs on this machine
 * (a loopback or Unix-socket source) its backends and our copy threads share the same cores, and
 * one whole COPY already keeps two of them busy (the backend formats, our thread compresses and
 * hashes): on two cores more chunks of one table only add the backends' page faults. Measured here
 * (2 cores, a 332 MB table, `pg-egress reload` with the daemon running, alternating): whole
 * 2.64-2.80 s and 2.4-2.5 s of server CPU; two chunks 2.93-3.79 s and 3.4-4.3 s; five chunks
 * 2.89-3.15 s and 3.4-3.6 s (pg_dump -Fd -Z1 2.2-2.4 s).
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/include/access/tableam.h (table_beginscan_tidrange)
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/access/heap/heapam.c (initscan)
 */

export interface ChunkRange {
  /** First block, inclusive. */
  fromBlock: number;
  /** Block after the last, exclusive; null = to the end of the table. */
  toBlock: number | null;
}

export interface PlanInput {
  /** pg_relation_size of the main fork, bytes. */
  tableBytes: number;
  /** current_setting('block_size'), usually 8192. */
  blockSize: number;
  /** reload.chunk_size, bytes. */
  chunkBytes: number;
  /** Partitioned tables have no ctid of their own: one chunk. */
  splittable: boolean;
  /** The export's bytes per way it can split (every table's, / parallelWays): a table no larger is one chunk. */
  shareBytes?: number;
}

/** A table within its share of the export is one chunk up to this many chunk_size (see above). */
export const WHOLE_MAX_CHUNKS = 16;

/** Whether the source server runs on this machine: a loopback address or a Unix socket's directory. */
export function sourceIsLocal(host: string): boolean {
  const h = host.toLowerCase();
  return h.startsWith('/') || h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * How many ways the export can split: the workers, or, when the server shares this machine's
 * `cpus`, one per two of them (a backend and our thread per COPY), at least one (see above).
 */
export function parallelWays(workers: number, localSource: boolean, cpus: number): number {
  return localSource ? Math.max(1, Math.min(workers, Math.floor(cpus / 2))) : workers;
}

export function planChunks(p: PlanInput): ChunkRange[] {
  const blocks = Math.ceil(p.tableBytes / p.blockSize);
  const perChunk = Math.max(1, Math.floor(p.chunkBytes / p.blockSize));
  const withinShare = p.shareBytes !== undefined && p.tableBytes <= p.shareBytes && p.tableBytes <= WHOLE_MAX_CHUNKS * p.chunkBytes;
  if (!p.splittable || blocks <= perChunk || withinShare) return [{ fromBlock: 0, toBlock: null }];
  const n = Math.ceil(blocks / perChunk);
  const out: ChunkRange[] = [];
  for (let i = 0; i < n; i++) out.push({ fromBlock: i * perChunk, toBlock: i === n - 1 ? null : (i + 1) * perChunk });
  return out;
}

/** The WHERE clause of one chunk (empty when the chunk is the whole table). */
export function ctidCondition(r: ChunkRange): string {
  const parts: string[] = [];
  if (r.fromBlock > 0) parts.push(`ctid >= '(${r.fromBlock},0)'::tid`);
  if (r.toBlock !== null) parts.push(`ctid < '(${r.toBlock},0)'::tid`);
  return parts.length ? ` WHERE ${parts.join(' AND ')}` : '';
}

/** A chunk's share of its table's pages at the plan (pg_relation_size), bytes: what its COPY reads at most. */
export function chunkHeapBytes(r: ChunkRange, tableBytes: number, blockSize: number): number {
  const to = r.toBlock === null ? tableBytes : Math.min(tableBytes, r.toBlock * blockSize);
  return Math.max(0, to - r.fromBlock * blockSize);
}

/**
 * A COPY of at least this many bytes of heap is read on a thread of its own (native/copy_fd.c);
 * a smaller one through Node's socket. The thread spares the main thread a Buffer, an event and a
 * call into the addon per 64 KiB read (and V8 the garbage: ~3 ms of CPU per MB, see copy_fd.c),
 * but costs ~1 ms itself per COPY (the thread, the descriptors duplicated and closed, the socket
 * handed over and back), which a small table's few reads never win back. Measured on the scratch
 * server (an initial export of 500 tables of 1,000 rows, ~0.2 MB each; this rule against every
 * COPY on a thread, alternating, 7 pairs): our CPU 3.19-4.33 s (median 3.63) against 3.59-4.98 s
 * (4.22), minor page faults ~33k against ~46k.
 */
export const THREAD_MIN_BYTES = 1 << 20;

/** Whether a chunk's COPY is read on a thread (see THREAD_MIN_BYTES); a partitioned root's size is unknown here. */
export function readsOnThread(heapBytes: number, partitioned: boolean): boolean {
  return partitioned || heapBytes >= THREAD_MIN_BYTES;
}

/** COPYs in one query at most (copy-export.ts copyFilesEnded), and their heap bytes together. */
export const GROUP_MAX_COPIES = 16;
export const GROUP_MAX_BYTES = 4 * THREAD_MIN_BYTES;

/**
 * A worker's next COPYs, taken from the front of the queue: one chunk read on a thread of its own,
 * or a run of small ones (none read on a thread) sent as one query, at most GROUP_MAX_COPIES and
 * GROUP_MAX_BYTES of heap, and no more than an equal share of what is left among `workers`, so
 * that the last tables do not all wait behind one worker.
 */
export function takeGroup<T extends { heapBytes: number; partitioned: boolean }>(queue: T[], workers: number): T[] {
  const first = queue.shift();
  if (!first) return [];
  const group = [first];
  if (readsOnThread(first.heapBytes, first.partitioned)) return group;
  const most = Math.min(GROUP_MAX_COPIES, Math.ceil((queue.length + 1) / Math.max(1, workers)));
  let bytes = first.heapBytes;
  while (group.length < most && queue.length) {
    const next = queue[0];
    if (readsOnThread(next.heapBytes, next.partitioned) || bytes + next.heapBytes > GROUP_MAX_BYTES) break;
    bytes += next.heapBytes;
    group.push(queue.shift()!);
  }
  return group;
}

export interface TableTask<T> {
  key: T;
  bytes: number;
  chunks: ChunkRange[];
}

/**
 * Orders work: largest tables first (they bound the total time), each table's chunks in ctid
 * order, so that parts finish roughly in order and a small table never waits behind a big one's tail.
 */
export function orderTasks<T>(tables: TableTask<T>[]): { key: T; index: number; range: ChunkRange }[] {
  return [...tables]
    .sort((a, b) => b.bytes - a.bytes)
    .flatMap((t) => t.chunks.map((range, index) => ({ key: t.key, index, range })));
}
