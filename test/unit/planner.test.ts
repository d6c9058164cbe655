import { describe, expect, it } from 'vitest';
import { chunkHeapBytes, ctidCondition, exportWorkers, GROUP_MAX_BYTES, GROUP_MAX_COPIES, orderTasks, parallelWays, planChunks, readsOnThread, seqScanPays, sourceIsLocal, takeGroup, THREAD_MIN_BYTES } from '../../src/reload/planner.js';
import { copySql } from '../../src/reload/workers.js';
import { expectedChunks } from '../../src/reload/preconnect.js';

describe('ctid chunk planner', () => {
  it('keeps a small or partitioned table in one chunk', () => {
    expect(planChunks({
      tableBytes: 8192 * 10,
      blockSize: 8192,
      chunkBytes: 8192 * 100,
      splittable: true,
    })).toEqual([{ fromBlock: 0, toBlock: null }]);
    expect(planChunks({ tableBytes: 0, blockSize: 8192, chunkBytes: 8192, splittable: true })).toEqual([{ fromBlock: 0, toBlock: null }]);
    expect(planChunks({
      tableBytes: 8192 * 1000,
      blockSize: 8192,
      chunkBytes: 8192,
      splittable: false,
    })).toEqual([{ fromBlock: 0, toBlock: null }]);
  });

  it('covers every block exactly once, in order, with an open last range', () => {
    for (const blocks of [2, 3, 10, 99, 100, 101, 1234]) {
      for (const per of [1, 2, 7, 100]) {
        const r = planChunks({ tableBytes: blocks * 8192 - 100, blockSize: 8192, chunkBytes: per * 8192 + 5, splittable: true });
        expect(r[0].fromBlock).toBe(0);
        expect(r[r.length - 1].toBlock).toBeNull();
        for (let i = 1; i < r.length; i++) expect(r[i].fromBlock).toBe(r[i - 1].toBlock);
        expect(r.length).toBe(Math.max(1, Math.ceil(blocks / per)));
      }
    }
  });

  it('copies a table no larger than its share of the export (and four chunks) whole, and splits a larger one by chunk_size', () => {
    const mb = 1024 * 1024;
    // Four tables of 96 MB on four workers (the benchmark's R2): one whole COPY each.
    const plan = (tableBytes: number, shareBytes?: number) =>
      planChunks({ tableBytes, blockSize: 8192, chunkBytes: 64 * mb, splittable: true, shareBytes });
    expect(plan(96 * mb, 96 * mb)).toEqual([{ fromBlock: 0, toBlock: null }]);
    // Above its share: split as before (R1, one table of 385 MB: a share of 96 MB).
    const big = plan(385 * mb, (385 * mb) / 4);
    expect(big).toEqual(plan(385 * mb));
    expect(big).toHaveLength(7);
    expect(plan(96 * mb + 8192, 96 * mb)).toHaveLength(2);
    // Within its share but over sixteen chunks (one worker, or many large tables): split, so that
    // chunk_size still bounds the files.
    expect(plan(1024 * mb, 4096 * mb)).toHaveLength(1);
    expect(plan(1024 * mb + 8192, 4096 * mb)).toHaveLength(17);
  });

  it('runs a worker per chunk up to reload.workers, and small chunks alone on no more than the ways', () => {
    // Large chunks (read on threads): every worker the chunks can use.
    expect(exportWorkers(4, 2, 10, false)).toBe(4);
    expect(exportWorkers(4, 2, 3, false)).toBe(3);
    // Only small ones: no more than the ways (the CPUs, with the server on this machine).
    expect(exportWorkers(4, 2, 500, true)).toBe(2);
    expect(exportWorkers(4, 8, 500, true)).toBe(4);
    expect(exportWorkers(4, 2, 1, true)).toBe(1);
    // A remote server: ways are the workers, nothing changes.
    expect(exportWorkers(4, parallelWays(4, false, 2), 500, true)).toBe(4);
    // Never none.
    expect(exportWorkers(4, 2, 0, true)).toBe(1);
    expect(exportWorkers(4, 0, 10, true)).toBe(1);
  });

  it('splits one way per worker, and no more than the cores when the server runs on this machine', () => {
    const local = ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '/var/run/postgresql', '/tmp'];
    const remote = ['10.0.0.5', 'db.example.com', '::2', '128.0.0.1', 'localhost.example.com', '1127.0.0.1'];
    for (const h of local) expect(sourceIsLocal(h), h).toBe(true);
    for (const h of remote) expect(sourceIsLocal(h), h).toBe(false);
    expect(parallelWays(4, false, 2)).toBe(4);
    expect(parallelWays(4, true, 2)).toBe(2);
    expect(parallelWays(4, true, 3)).toBe(3);
    expect(parallelWays(4, true, 8)).toBe(4);
    expect(parallelWays(1, true, 8)).toBe(1);
    expect(parallelWays(4, true, 1)).toBe(1);
    expect(parallelWays(1, true, 0)).toBe(1);
    // R1 (one table of 442 MB, shared_buffers 256 MB) from a server on this 2-core machine: two
    // halves by sequential scans; from another machine: four quarters, the same way.
    const mb = 1024 * 1024;
    const r1 = (ways: number) =>
      planChunks({
        tableBytes: 442 * mb,
        blockSize: 8192,
        chunkBytes: 64 * mb,
        splittable: true,
        shareBytes: (442 * mb) / ways,
        sharedBuffers: 32768,
      });
    expect(r1(parallelWays(4, true, 2))).toEqual([
      { fromBlock: 0, toBlock: 28288, seq: true },
      { fromBlock: 28288, toBlock: null, seq: true },
    ]);
    expect(r1(parallelWays(4, false, 2))).toHaveLength(4);
    expect(r1(parallelWays(4, false, 2)).every((r) => r.seq)).toBe(true);
  });

  it('reads parts of a table over its share by sequential scans when passing over the other parts costs less than the faults of TID ranges', () => {
    // Two halves: each scan passes over the other half. Fine while a half is within four times
    // shared_buffers (what a TID Range Scan would map at most).
    expect(seqScanPays(1000, 2, 16384)).toBe(true);
    expect(seqScanPays(4 * 16384 * 2, 2, 16384)).toBe(true);
    expect(seqScanPays(4 * 16384 * 2 + 2, 2, 16384)).toBe(false);
    // Five parts: each scan passes over four parts' pages, four times its own.
    expect(seqScanPays(5000, 5, 16384)).toBe(true);
    expect(seqScanPays(6000, 6, 16384)).toBe(false);
    expect(seqScanPays(1000, 1, 16384)).toBe(false);
    const mb = 1024 * 1024;
    const plan = (tableMb: number, shareMb: number, sharedBuffers?: number) =>
      planChunks({ tableBytes: tableMb * mb, blockSize: 8192, chunkBytes: 64 * mb, splittable: true, shareBytes: shareMb * mb,
        sharedBuffers });
    // 442 MB with a share of 221 MB: two sequential halves, every block once.
    const halves = plan(442, 221, 16384);
    expect(halves.map((r) => [r.fromBlock, r.toBlock, r.seq])).toEqual([[0, 28288, true], [28288, null, true]]);
    // The same table split six ways (shares of ~74 MB): each part's scan would pass over five
    // times its pages, TID ranges by chunk_size instead.
    expect(plan(442, 442 / 6, 16384)).toEqual(plan(442, 442 / 6));
    expect(plan(442, 442 / 6, 16384)).toHaveLength(7);
    expect(plan(442, 442 / 6, 16384).some((r) => r.seq)).toBe(false);
    // Over sixteen chunks: chunk_size bounds the files, by TID ranges.
    expect(plan(2048, 1024, 1 << 20)).toHaveLength(32);
    expect(plan(2048, 1024, 1 << 20).some((r) => r.seq)).toBe(false);
    // Within its share: whole, whatever shared_buffers is.
    expect(plan(442, 442, 16384)).toEqual([{ fromBlock: 0, toBlock: null }]);
  });

  it('writes TID range conditions, and the same comparisons as functions for a sequential scan', () => {
    expect(ctidCondition({ fromBlock: 0, toBlock: null })).toBe('');
    expect(ctidCondition({ fromBlock: 0, toBlock: 8 })).toBe(` WHERE ctid < '(8,0)'::tid`);
    expect(ctidCondition({ fromBlock: 8, toBlock: 16 })).toBe(` WHERE ctid >= '(8,0)'::tid AND ctid < '(16,0)'::tid`);
    expect(ctidCondition({ fromBlock: 16, toBlock: null })).toBe(` WHERE ctid >= '(16,0)'::tid`);
    expect(ctidCondition({ fromBlock: 0, toBlock: null, seq: true })).toBe('');
    expect(ctidCondition({ fromBlock: 0, toBlock: 8, seq: true })).toBe(` WHERE tidlt(ctid, '(8,0)'::tid)`);
    expect(ctidCondition({ fromBlock: 8, toBlock: 16, seq: true })).toBe(` WHERE tidge(ctid, '(8,0)'::tid) AND tidlt(ctid, '(16,0)'::tid)`);
    expect(ctidCondition({ fromBlock: 16, toBlock: null, seq: true })).toBe(` WHERE tidge(ctid, '(16,0)'::tid)`);
  });

  it('orders the largest table first, chunks in ctid order', () => {
    const two = planChunks({ tableBytes: 8192 * 4, blockSize: 8192, chunkBytes: 8192 * 2, splittable: true });
    const order = orderTasks([
      { key: 'small', bytes: 10, chunks: [{ fromBlock: 0, toBlock: null }] },
      { key: 'big', bytes: 100, chunks: two },
    ]);
    expect(order.map((o) => `${o.key}:${o.index}`)).toEqual(['big:0', 'big:1', 'small:0']);
  });

  it('copies a whole plain table with COPY table (columns), a range or a partitioned root through SELECT', () => {
    const t = { opId: 1, index: 0, schema: 'my schema', table: 'T"1', columns: ['id', 'a b'], partitioned: false, heapBytes: 0 };
    const whole = { fromBlock: 0, toBlock: null };
    // COPY table TO reads that table only, as SELECT … FROM ONLY does (inheritance children are
    // tables of their own); the integration tests check the rows (ddl-values: an inheritance parent).
    expect(copySql({ ...t, range: whole })).toBe(`COPY "my schema"."T""1" ("id", "a b") TO STDOUT (FORMAT csv, HEADER)`);
    expect(copySql({ ...t, range: { fromBlock: 8, toBlock: null } })).toBe(`COPY (SELECT "id", "a b" FROM ONLY "my schema"."T""1" WHERE ctid >= '(8,0)'::tid) TO STDOUT (FORMAT csv, HEADER)`);
    expect(copySql({ ...t, range: whole, partitioned: true })).toBe(`COPY (SELECT "id", "a b" FROM "my schema"."T""1") TO STDOUT (FORMAT csv, HEADER)`);
    // Every column excluded: COPY t () is a syntax error, SELECT with no columns is not.
    expect(copySql({ ...t, columns: [], range: whole })).toBe(`COPY (SELECT  FROM ONLY "my schema"."T""1") TO STDOUT (FORMAT csv, HEADER)`);
    // The native sink's text format: no options, no header (the sink writes it).
    expect(copySql({ ...t, range: whole }, 'text')).toBe(`COPY "my schema"."T""1" ("id", "a b") TO STDOUT`);
    expect(copySql({ ...t, range: { fromBlock: 8, toBlock: 16 } }, 'text')).toBe(`COPY (SELECT "id", "a b" FROM ONLY "my schema"."T""1" WHERE ctid >= '(8,0)'::tid AND ctid < '(16,0)'::tid) TO STDOUT`);
  });

  it("reads a chunk's COPY on a thread from THREAD_MIN_BYTES of heap, a smaller one through Node's socket", () => {
    const bs = 8192;
    // A whole table: its size; a range: its blocks, the last one up to the table's end.
    expect(chunkHeapBytes({ fromBlock: 0, toBlock: null }, 200_000, bs)).toBe(200_000);
    expect(chunkHeapBytes({ fromBlock: 8, toBlock: 16 }, 1000 * bs, bs)).toBe(8 * bs);
    expect(chunkHeapBytes({ fromBlock: 8, toBlock: null }, 10 * bs, bs)).toBe(2 * bs);
    // A range beyond the table's pages (the planner makes none; clamped all the same): nothing.
    expect(chunkHeapBytes({ fromBlock: 8, toBlock: 16 }, 4 * bs, bs)).toBe(0);
    // Every chunk of a split table adds up to the table.
    const chunks = planChunks({ tableBytes: 1000 * bs, blockSize: bs, chunkBytes: 300 * bs, splittable: true });
    expect(chunks.reduce((n, r) => n + chunkHeapBytes(r, 1000 * bs, bs), 0)).toBe(1000 * bs);
    expect(readsOnThread(THREAD_MIN_BYTES, false)).toBe(true);
    expect(readsOnThread(THREAD_MIN_BYTES - 1, false)).toBe(false);
    expect(readsOnThread(200_000, false)).toBe(false);
    // A partitioned root's own size says nothing of its leaves': on a thread.
    expect(readsOnThread(0, true)).toBe(true);
  });

  it('expects a chunk per table and per chunk_size of a splittable one (how many workers connect ahead)', () => {
    expect(expectedChunks([], 8192, 8192 * 10, 4)).toBe(0);
    expect(expectedChunks([{ pages: 0, splittable: true }, { pages: 5, splittable: true }], 8192, 8192 * 10, 4)).toBe(2);
    expect(expectedChunks([{ pages: 25, splittable: true }, { pages: 25, splittable: false }], 8192, 8192 * 10, 4)).toBe(4);
    // One way: the splittable table is within its share (and sixteen chunks): one COPY, as the plan makes it.
    expect(expectedChunks([{ pages: 25, splittable: true }, { pages: 25, splittable: false }], 8192, 8192 * 10, 1)).toBe(2);
    // Two ways and shared_buffers known: the splittable table over its share in two sequential parts.
    expect(expectedChunks([{ pages: 300, splittable: true }, { pages: 25, splittable: false }], 8192, 8192 * 100, 2, 16384)).toBe(3);
  });
});

describe('takeGroup: the COPYs a worker sends in one query', () => {
  const t = (heapBytes: number, partitioned = false) => ({ heapBytes, partitioned });
  it('a chunk read on a thread goes alone; small ones go together, within the limits and an equal share', () => {
    const big = t(THREAD_MIN_BYTES);
    let q = [big, t(10), t(10)];
    expect(takeGroup(q, 4)).toEqual([big]);
    expect(q).toHaveLength(2);
    // A run of small ones stops at a chunk for a thread, and at a partitioned root.
    q = [t(10), t(10), t(1, true), t(10)];
    expect(takeGroup(q, 1)).toHaveLength(2);
    expect(takeGroup(q, 1)).toEqual([t(1, true)]);
    // 500 small tables on 4 workers: the copies limit.
    q = Array.from({ length: 500 }, () => t(200_000));
    expect(takeGroup(q, 4).length).toBeLessThanOrEqual(GROUP_MAX_COPIES);
    expect(takeGroup(q, 4).reduce((n, x) => n + x.heapBytes, 0)).toBeLessThanOrEqual(GROUP_MAX_BYTES);
    // The tail: no more than an equal share of what is left.
    q = Array.from({ length: 8 }, () => t(100));
    expect(takeGroup(q, 4)).toHaveLength(2);
    q = [t(100)];
    expect(takeGroup(q, 4)).toHaveLength(1);
    expect(takeGroup([], 4)).toEqual([]);
  });
});
