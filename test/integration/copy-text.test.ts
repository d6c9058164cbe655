/**
 * The native export path asks the server for COPY's text format (cheaper for the server than csv)
 * and writes CSV itself (native/copy_sink.c). Its files must be exactly what `COPY … (FORMAT csv,
 * HEADER)` sends: compared here byte for byte with the server's own CSV of the same query, for
 * values that exercise every rule of both formats (backslashes, the text escapes of control
 * characters, `\N` and `\.` as data, empty strings against NULL, quotes, commas, CR and LF,
 * arrays, JSON, bytea, composites, UTF-8, a one-column table, random strings of special
 * characters); with the same records and Merkle root as the JavaScript path over the CSV.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import pg from 'pg';
import { createTestDatabase } from '../harness/pg.js';
import { copyOut } from '../helpers/egress.js';
import { copyToFile } from '../../src/reload/copy-export.js';
import { createCopySink, JsCopySink } from '../../src/reload/copy-sink.js';
import { copySql, type ChunkTask } from '../../src/reload/workers.js';

const TABLES: { table: string; columns: string[] }[] = [
  { table: 'odd', columns: ['id', 't', 'arr', 'j', 'by', 'comp', 'e'] },
  { table: 'one', columns: ['t'] },
  { table: 'rnd', columns: ['id', 'a', 'b'] },
  { table: 'Mixed "Case", table', columns: ['id', 'a,b', 'x"y', '\\.'] },
];

describe('the native path converts COPY text to the CSV COPY prints', () => {
  let db: { url: string; drop(): Promise<void> };
  let dir: string;

  beforeAll(async () => {
    db = await createTestDatabase('cptext');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-cptext-'));
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(`CREATE TYPE pair AS (a int, b text)`);
      await c.query(`CREATE TABLE odd (id int, t text, arr text[], j jsonb, by bytea, comp pair, e text)`);
      // Every control character, alone and inside text; the escapes' letters after a backslash.
      await c.query(`INSERT INTO odd (id, t) SELECT g, chr(g) FROM generate_series(1, 127) g`);
      await c.query(`INSERT INTO odd (id, t) SELECT 1000 + g, 'a' || chr(g) || 'b' || chr(g) FROM generate_series(1, 127) g`);
      await c.query(
        `INSERT INTO odd VALUES
          (2000, '', '{}', 'null', '\\x', NULL, ''),
          (2001, NULL, NULL, NULL, NULL, NULL, NULL),
          (2002, '\\N', '{"\\\\N",NULL,""}', '{"a": "\\\\N"}', '\\x5c4e', '(1,"\\\\N")', '\\.'),
          (2003, '\\.', '{"\\\\."}', '"\\\\."', '\\x5c2e', '(,)', '\\\\.'),
          (2004, 'comma, "quote" and' || chr(10) || 'newline' || chr(13) || 'cr', '{"a b","c,d","e\\"f","g\\\\h"}', '{"k": "v\\"w,x\\\\y\\nz\\u0001"}', '\\x00ff5c0a0d09', '(7,"x, \\"y\\"")', 'tab' || chr(9) || 'here'),
          (2005, 'ünïcødé € 𝄞 ' || chr(8) || chr(12) || chr(11), '{ü}', '{"ü": "€"}', '\\xe282ac', '(0,ü)', ' '),
          (2006, '"', '{"\\""}', '"\\""', '\\x22', '(1,"""")', ','),
          (2007, '\\', '{"\\\\"}', '"\\\\"', '\\x5c', '(1,"\\\\")', '\\\\'),
          (2008, 'x' || repeat('\\', 70) || repeat('"', 40) || repeat(',', 30), NULL, NULL, NULL, NULL, repeat(chr(9), 20))`,
      );
      await c.query(`CREATE TABLE one (t text)`);
      await c.query(`INSERT INTO one VALUES ('\\.'), (''), (NULL), ('\\N'), ('.'), ('\\'), ('\\..'), ('a'), (' \\.'), ('"'), (chr(10)), (',')`);
      // Random strings over the characters that matter, long and short, across 16-byte lanes.
      await c.query(`CREATE TABLE rnd (id int, a text, b text)`);
      await c.query(
        `INSERT INTO rnd SELECT g,
           CASE WHEN g % 11 = 0 THEN NULL ELSE (SELECT string_agg(substr(E'ab\\\\,"\\t\\n\\r.N x', 1 + ((g * 31 + k * 17 + k * k) % 14), 1), '') FROM generate_series(1, g % 53) k) END,
           CASE WHEN g % 7 = 0 THEN '' ELSE repeat(md5(g::text), g % 3) END
         FROM generate_series(1, 5000) g`,
      );
      await c.query(`CREATE TABLE "Mixed ""Case"", table" (id int, "a,b" text, "x""y" text, "\\." text)`);
      await c.query(`INSERT INTO "Mixed ""Case"", table" SELECT g, g::text, NULL, '' FROM generate_series(1, 10) g`);
    } finally {
      await c.end();
    }
  });

  afterAll(async () => {
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const task = (table: string, columns: string[], partial: boolean): ChunkTask => ({
    opId: 1,
    index: 0,
    // A ctid range: the COPY (SELECT …) form; the whole table: COPY table (columns).
    range: partial ? { fromBlock: 0, toBlock: 1_000_000 } : { fromBlock: 0, toBlock: null },
    schema: 'public',
    table,
    columns,
    partitioned: false,
    heapBytes: 0,
  });

  for (const { table, columns } of TABLES) {
    for (const partial of [false, true]) {
      it(`${table}, ${partial ? 'COPY (SELECT …)' : 'COPY table'}: the same CSV bytes, records and root at levels 1 and 6`, async () => {
        const t = task(table, columns, partial);
        const want = await copyOut(db.url, copySql(t, 'csv'));
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        try {
          const js = await copyToFile(c, copySql(t, 'csv'), { path: path.join(dir, 'js.csv.gz'), gzipLevel: 1, fileMode: 0o644, sink: new JsCopySink(), zlib: true });
          expect(zlib.gunzipSync(readFileSync(path.join(dir, 'js.csv.gz'))).equals(want)).toBe(true);
          for (const level of [1, 6]) {
            const sink = createCopySink(level, { columns, block: 4096 });
            expect(sink.format).toBe('text');
            const file = path.join(dir, `native-${level}.csv.gz`);
            const r = await copyToFile(c, copySql(t, sink.format), { path: file, gzipLevel: level, fileMode: 0o644, sink });
            const got = zlib.gunzipSync(readFileSync(file));
            if (!got.equals(want)) {
              const at = [...want].findIndex((b, i) => got[i] !== b);
              expect(got.subarray(Math.max(0, at - 80), at + 80).toString('latin1'), `level ${level}: first difference at byte ${at}`).toBe(want.subarray(Math.max(0, at - 80), at + 80).toString('latin1'));
            }
            expect(got.equals(want)).toBe(true);
            expect(r.rows).toBe(js.rows);
            expect(r.stats.rawBytes).toBe(want.length);
            expect(r.merkle.root.equals(js.merkle.root)).toBe(true);
            expect(Buffer.concat(r.merkle.blocks).equals(Buffer.concat(js.merkle.blocks))).toBe(true);
          }
        } finally {
          await c.end();
        }
      });
    }
  }

  it('a table whose every column is excluded keeps the CSV form (no columns to name in a header)', () => {
    expect(createCopySink(1, { columns: [] }).format).toBe('csv');
  });
});
