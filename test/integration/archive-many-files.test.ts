/**
 * A rebuild changes the target all at once however many files it reads: small streaming files
 * (40 by default, 200 with PG_EGRESS_TEST_FULL=1: see FILES; inserts, updates, unchanged TOAST
 * columns, deletes; a table with a key and one without) rebuilt into csv: and duckdb: at DuckDB's
 * default 64 MB pool must not run out of memory. In one DuckDB transaction it did ("Out of Memory:
 * failed to pin block" after ~100 batches: DuckDB keeps a transaction's dropped tables, deleted and
 * updated rows in memory until the commit), with staging tables made per batch and with one batch
 * per file. The result must equal the rows the files describe; a failed rebuild leaves the table
 * as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { rebuild } from '../../src/archive/rebuild.js';
import { openDuckdb } from '../../src/archive/engine-duckdb.js';
import { L, writeArchive, type FixtureBatch, type Val } from '../helpers/archive-fixture.js';
import { scaled } from '../helpers/scale.js';

// Files of 400 changes (300 of m, 100 of k) rebuilt into DuckDB in batches of MAX_ROWS rows: over
// 500 batches (PG_EGRESS_TEST_FULL=1: 200 files, 150 rows) or over 200 (quick: 40 files, 60 rows),
// either way well past the ~100 after which one DuckDB transaction ran out of memory.
const FILES = scaled(200, 40);
const MAX_ROWS = scaled(150, 60);
/** The DuckDB batches of the rebuild with MAX_ROWS, at least (rounded down to hundreds). */
const BATCHES = Math.floor((FILES * 400) / MAX_ROWS / 100) * 100;

/** The archive, and the rows its files leave (as CSV lines, sorted). */
function makeArchive(out: string): { m: string[]; k: string[] } {
  let seed = 16;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const m = new Map<number, { v: string; n: string }>();
  // The live keys as an array too (swap-remove on delete): drawing one must not copy the map's keys.
  const ids: number[] = [];
  const at = new Map<number, number>();
  const k: string[] = [];
  let nextId = 0;
  let lsn = 0x1000;
  const batches: FixtureBatch[] = [];
  for (let b = 0; b < FILES; b++) {
    const ms: Val[][] = [];
    const ks: Val[][] = [];
    for (let i = 0; i < 300; i++) {
      lsn++;
      const r = rand(10);
      if (r < 5 || ids.length < 10) {
        const id = nextId++;
        const row = { v: `v${id}-${'x'.repeat(rand(40))}`, n: String(rand(1000)) };
        m.set(id, row);
        at.set(id, ids.length);
        ids.push(id);
        ms.push([L(lsn), '0', 'I', null, String(id), row.v, row.n]);
      } else if (r < 8) {
        const id = ids[rand(ids.length)];
        const old = m.get(id)!;
        // Every other update leaves v out (an unchanged TOAST value): it keeps the old one.
        const unchanged = r === 7;
        const row = { v: unchanged ? old.v : `u${lsn}`, n: String(rand(1000)) };
        m.set(id, row);
        ms.push([L(lsn), '0', 'U', unchanged ? '{v}' : null, String(id), unchanged ? null : row.v, row.n]);
      } else {
        const id = ids[rand(ids.length)];
        m.delete(id);
        const slot = at.get(id)!;
        const last = ids.pop()!;
        if (last !== id) {
          ids[slot] = last;
          at.set(last, slot);
        }
        at.delete(id);
        ms.push([L(lsn), '0', 'D', null, String(id), null, null]);
      }
      // The keyless table: inserts, and deletes of a whole row (REPLICA IDENTITY FULL).
      if (i % 3 === 0) {
        if (k.length > 20 && rand(4) === 0) {
          const [a, bb] = k.splice(rand(k.length), 1)[0].split(',');
          ks.push([L(lsn), '1', 'D', null, a, bb]);
        } else {
          const row = `${rand(50)},k${rand(50)}`;
          k.push(row);
          ks.push([L(lsn), '1', 'I', null, ...row.split(',')]);
        }
      }
    }
    const id = `20261101T${String(Math.floor(b / 3600)).padStart(2, '0')}${String(Math.floor(b / 60) % 60).padStart(2, '0')}${String(b % 60).padStart(2, '0')}Z`;
    batches.push({
      id,
      windows: [
        { schema: 'public', table: 'm', oid: 501, columns: [ { name: 'id', type: 'integer' }, { name: 'v', type: 'text' }, { name: 'n', type: 'integer' } ], primaryKey: ['id'], streaming: ms },
        { schema: 'public', table: 'k', oid: 502, columns: [ { name: 'a', type: 'integer' }, { name: 'b', type: 'text' } ], streaming: ks },
      ],
    });
  }
  writeArchive(out, batches);
  return { m: [...m].map(([id, r]) => `${id},${r.v},${r.n}`).sort(), k: [...k].sort() };
}

describe('rebuild of many small streaming files', () => {
  let dir: string;
  let out: string;
  let want: { m: string[]; k: string[] };
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-many-'));
    out = path.join(dir, 'archive');
    want = makeArchive(out);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const csvRows = (file: string) => zlib.gunzipSync(readFileSync(file)).toString().trim().split('\n');

  it(`into csv: (${FILES} files, default batches)`, async () => {
    const file = path.join(dir, 'm.csv.gz');
    const r = await rebuild({ tables: ['public.m'], from: out, into: `csv:${file}`, verify: true, progress: null });
    expect(r[0].changes).toBeGreaterThan(FILES * 250);
    const lines = csvRows(file);
    expect(lines[0]).toBe('id,v,n');
    expect(lines.slice(1).sort()).toEqual(want.m);
    const k = path.join(dir, 'k.csv.gz');
    await rebuild({ tables: ['public.k'], from: out, into: `csv:${k}`, verify: true, progress: null });
    expect(csvRows(k).slice(1).sort()).toEqual(want.k);
  });

  it(`into duckdb: in batches of ${MAX_ROWS} rows (over ${BATCHES}), again with --replace, and a failed rebuild leaves the table as it was`, async () => {
    const file = path.join(dir, 'many.duckdb');
    const limits = { maxRows: MAX_ROWS, maxBytes: 8 * 1024 * 1024 };
    const check = async () => {
      const duck = await openDuckdb(file);
      try {
        const m = (await duck.query(`SELECT id::VARCHAR || ',' || v || ',' || n::VARCHAR AS r FROM public.m`)).map((x) => String(x.r)).sort();
        expect(m).toEqual(want.m);
        const k = (await duck.query(`SELECT a::VARCHAR || ',' || b AS r FROM public.k`)).map((x) => String(x.r)).sort();
        expect(k).toEqual(want.k);
        // Built under scratch names and swapped in: none is left.
        expect(await duck.query(`SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%pg_egress%'`)).toEqual([]);
      } finally {
        await duck.close();
      }
    };
    await rebuild({ tables: ['public.m', 'public.k'], from: out, into: `duckdb:${file}`, verify: true, progress: null, limits });
    await check();
    await rebuild({ tables: ['public.m', 'public.k'], from: out, into: `duckdb:${file}`, verify: true, progress: null, replace: true });
    await check();
    // A file in the middle of public.m changed: the rebuild stops at it (exit 10) after committing
    // batches under the scratch name; the table is the one from before, no scratch table stays.
    const windows = readdirSync(path.join(out, 'public.m')).filter((w) => !w.includes('.')).sort();
    const rel = windows[Math.floor(windows.length * 0.6)];
    const f = path.join(out, 'public.m', rel, 'streaming.csv.gz');
    const orig = readFileSync(f);
    writeFileSync(f, zlib.gzipSync(zlib.gunzipSync(orig).toString().replace(/,I,,/, ',I,,9')));
    try {
      await expect(rebuild({ tables: ['public.m', 'public.k'], from: out, into: `duckdb:${file}`, verify: true, progress: null, replace: true })).rejects.toMatchObject({ exitCode: 10 });
    } finally {
      writeFileSync(f, orig);
    }
    await check();
  }, 600_000);
});
