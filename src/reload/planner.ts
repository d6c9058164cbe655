/**
 * Splits a table into ctid block ranges for parallel COPY on one snapshot. Pure: from the table's
 * size to `WHERE ctid >= '(a,0)' AND ctid < '(b,0)'` bounds. Since PostgreSQL 14 such a condition
 * is a TID Range Scan that reads only those blocks.
 * https://www.postgresql.org/docs/15/release-14.html (TID Range Scan)
 *
 * The last range has no upper bound: pages added after the size was read hold only rows that the
 * snapshot cannot see, but an open end costs nothing and leaves no doubt.
 *
 * A TID Range Scan is not free for the server. It reads without the small ring of buffers that a
 * sequential scan of a table over shared_buffers/4 reuses (heapam's table_beginscan_tidrange has
 * no SO_ALLOW_STRAT), so each export backend maps every shared buffer it reads into its own page
 * tables: two page faults per 8 KiB buffer, up to all of shared_buffers once per backend. On the
 * AMD virtual machine of the README a fault costs ~15 µs: the first half of a 442 MB table
 * (27,024 pages) by ctid took a new backend 1.62-1.66 s of CPU and 29-33k faults, the same half
 * again in that backend 1.16-1.19 s and none (shared_buffers 128 MB).
 *
 * So a table is split only when it is larger than its share of the export (all tables' bytes /
 * the ways it runs in parallel, below): within it, splitting would not shorten the export, whose
 * workers have other tables to copy meanwhile. Up to WHOLE_MAX_CHUNKS chunks' worth only:
 * chunk_size keeps bounding the files (a warehouse loads several files of a table in parallel,
 * one gzip file only serially), within that factor: 16 × 64 MiB is 1 GiB of CSV, about 250 MB
 * gzipped at level 1, the top of the compressed file size loaders ask for (Snowflake: 100-250 MB,
 * https://docs.snowflake.com/en/user-guide/data-load-considerations-prepare).
 *
 * A table larger than its share but within those sixteen chunks is split into parts of its share
 * (as many as the ways, at most) read by sequential scans filtered by ctid, when that is cheaper
 * than TID Range Scans (seqScanPays): each such scan passes over the other parts' pages without
 * sending their rows (~1 µs a page here: the half above read by a sequential scan took 1.16-1.21
 * s, as the TID Range Scan without faults), and reuses its small ring of buffers. The condition is
 * written with the functions behind the tid operators (tidge, tidlt), which the planner does not
 * take for a TID range (tidpath.c only looks at operator clauses). Measured here with the daemon
 * (2 cores, that table, `reload --wait`, alternating; medians of three runs of 5-8 pairs): one
 * whole COPY 2.42-2.48 s, two sequential halves 2.29-2.33 s, seven 64 MB TID chunks on four
 * workers 2.93 s; pg_dump -Fd -Z1 2.40 s. Other splits are by chunk_size, as TID ranges.
 *
 * The ways: the workers, and no more than the cores when the server runs on this machine (a
 * loopback or Unix-socket source; its backends and our copy threads share them). A whole COPY
 * keeps one core busy with its backend and ~60% of another with our thread (compressing,
 * hashing), so two parts on two cores use the rest.
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/include/access/tableam.h (table_beginscan_tidrange)
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/access/heap/heapam.c (initscan)
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/optimizer/path/tidpath.c (IsTidRangeClause)
 */

export interface ChunkRange {
  /** First block, inclusive. */
  fromBlock: number;
  /** Block after the last, exclusive; null = to the end of the table. */
  toBlock: number | null;
  /** Read by a sequential scan filtered by ctid rather than a TID Range Scan (see above). */
  seq?: true;
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
  /** The server's shared_buffers, in blocks: what a TID Range Scan may map at most (seqScanPays). */
  sharedBuffers?: number;
}

/** A table within its share of the export is one chunk up to this many chunk_size (see above). */
export const WHOLE_MAX_CHUNKS = 16;

/**
 * Pages a sequential scan may pass over (without sending their rows) for each shared buffer a TID
 * Range Scan of the same part would map. Here a page passed over costs ~1 µs and a buffer mapped
 * ~30 µs (two faults); 4 leaves room for machines whose page faults cost far less, where the scans
 * then cost at most a few µs more per page of the part than the faults would have.
 */
export const SEQ_SKIP_PER_BUFFER = 4;

/**
 * Whether `parts` equal parts of a table of `blocks` pages are cheaper read by sequential scans
 * (each passes over the others' pages) than by TID Range Scans (each maps up to its pages, or all
 * of shared_buffers, into its backend).
 */
export function seqScanPays(blocks: number, parts: number, sharedBuffers: number): boolean {
  const partBlocks = Math.ceil(blocks / parts);
  return parts > 1 && blocks - partBlocks <= SEQ_SKIP_PER_BUFFER * Math.min(partBlocks, sharedBuffers);
}

/** Whether the source server runs on this machine: a loopback address or a Unix socket's directory. */
export function sourceIsLocal(host: string): boolean {
  const h = host.toLowerCase();
  return h.startsWith('/') || h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * How many ways the export can split: the workers, and no more than this machine's `cpus` when
 * the server shares them, at least one (see above).
 */
export function parallelWays(workers: number, localSource: boolean, cpus: number): number {
  return localSource ? Math.max(1, Math.min(workers, cpus)) : workers;
}

/**
 * How many workers an export runs: one per chunk, up to reload.workers; and when every chunk is
 * small (none read on a thread of its own: readsOnThread) no more than `ways`, which is this
 * machine's CPUs when the server shares them (parallelWays). Many small tables keep the CPUs busy
 * with fewer workers: each more is a backend, a snapshot import and its share of context switches.
 * R4 (500 tables of 1,000 rows, a scratch PostgreSQL 15 on a 2-CPU AMD EPYC VM, 20 alternating
 * pairs): 2 workers instead of 4 faster in 16 of 20, by 80 ms (median of the pairs); 1.79 s against
 * 1.86 s median, the server's CPU 1.19 s against 1.34. A large table's chunks, read on threads,
 * still take every worker.
 */
export function exportWorkers(workers: number, ways: number, chunks: number, allSmall: boolean): number {
  const n = Math.max(1, Math.min(workers, chunks));
  return allSmall ? Math.max(1, Math.min(n, ways)) : n;
}

export function planChunks(p: PlanInput): ChunkRange[] {
  const blocks = Math.ceil(p.tableBytes / p.blockSize);
  const perChunk = Math.max(1, Math.floor(p.chunkBytes / p.blockSize));
  const withinChunks = p.tableBytes <= WHOLE_MAX_CHUNKS * p.chunkBytes;
  const withinShare = p.shareBytes !== undefined && p.tableBytes <= p.shareBytes && withinChunks;
  if (!p.splittable || blocks <= perChunk || withinShare) return [{ fromBlock: 0, toBlock: null }];
  // Over its share, within sixteen chunks: parts of its share, by sequential scans if they pay.
  if (p.shareBytes !== undefined && p.shareBytes > 0 && p.sharedBuffers !== undefined && withinChunks) {
    const parts = Math.ceil(p.tableBytes / p.shareBytes);
    if (seqScanPays(blocks, parts, p.sharedBuffers)) return ranges(blocks, Math.ceil(blocks / parts), true);
  }
  return ranges(blocks, perChunk, false);
}

/** `blocks` in ranges of `per` blocks, the last one open. */
function ranges(blocks: number, per: number, seq: boolean): ChunkRange[] {
  const n = Math.ceil(blocks / per);
  const out: ChunkRange[] = [];
  for (let i = 0; i < n; i++) {
    const r: ChunkRange = { fromBlock: i * per, toBlock: i === n - 1 ? null : (i + 1) * per };
    if (seq) r.seq = true;
    out.push(r);
  }
  return out;
}

/**
 * The WHERE clause of one chunk (empty when the chunk is the whole table): operators for a TID
 * Range Scan, the same comparisons as function calls for a sequential scan (`seq`, see above).
 */
export function ctidCondition(r: ChunkRange): string {
  const parts: string[] = [];
  const cmp = (op: string, fn: string, block: number) => (r.seq ? `${fn}(ctid, '(${block},0)'::tid)` : `ctid ${op} '(${block},0)'::tid`);
  if (r.fromBlock > 0) parts.push(cmp('>=', 'tidge', r.fromBlock));
  if (r.toBlock !== null) parts.push(cmp('<', 'tidlt', r.toBlock));
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
