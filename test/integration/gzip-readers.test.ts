/**
 * The gzip files of the native path are a series of gzip members (one per MiB of CSV, RFC 1952
 * §2.2). Every consumer the README names reads them as one stream: gunzip, Python's gzip module,
 * Node's zlib (also streaming), DuckDB's read_csv and PostgreSQL's `COPY FROM PROGRAM 'zcat …'`,
 * for ISA-L (level 1), libdeflate (level 6) and zlib (the JavaScript path) alike. The files come
 * from the real export path (copyToFile on a COPY of a table with quotes, LFs, NULLs and UTF-8;
 * the native files from COPY's text format, as exports run).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, createReadStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import pg from 'pg';
import { DuckDBInstance } from '@duckdb/node-api';
import { createTestDatabase } from '../harness/pg.js';
import { copyOut } from '../helpers/egress.js';
import { copyToFile } from '../../src/reload/copy-export.js';
import { createCopySink, JsCopySink } from '../../src/reload/copy-sink.js';
import { deflateBackend } from '../../src/output/deflate.js';

const ROWS = 60_000;
const SQL = `COPY (SELECT id, t, n, at FROM src) TO STDOUT (FORMAT csv, HEADER)`;
/** What the native path runs: COPY's text format, the CSV written by the addon (copy-sink.ts). */
const TEXT_SQL = `COPY (SELECT id, t, n, at FROM src) TO STDOUT`;
const COLUMNS = ['id', 't', 'n', 'at'];

/** Walks the members of a gzip file: how many, each a complete header + deflate + trailer. */
function members(gz: Buffer): number {
  let pos = 0;
  let n = 0;
  while (pos < gz.length) {
    expect(gz[pos] === 0x1f && gz[pos + 1] === 0x8b && gz[pos + 2] === 8, `member ${n} header`).toBe(true);
    const flags = gz[pos + 3];
    let at = pos + 10;
    if (flags & 4) at += 2 + gz.readUInt16LE(at);
    if (flags & 8) at = gz.indexOf(0, at) + 1;
    if (flags & 16) at = gz.indexOf(0, at) + 1;
    if (flags & 2) at += 2;
    const { engine } = zlib.inflateRawSync(gz.subarray(at), { info: true }) as unknown as { engine: { bytesWritten: number } };
    pos = at + engine.bytesWritten + 8;
    n++;
  }
  return n;
}

describe('gzip members are read by every consumer', () => {
  let db: { url: string; drop(): Promise<void> };
  let dir: string;
  let csv: Buffer;
  const files: { name: string; path: string }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('gzr');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(`CREATE TABLE src (id int PRIMARY KEY, t text, n numeric, at timestamptz)`);
      await c.query(
        `INSERT INTO src SELECT g, CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN 'line one' || chr(10) || 'line "two", ünïcode' WHEN 2 THEN '' ELSE repeat(md5(g::text), 1 + g % 4) END,
                g * 1.5, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, ${ROWS}) g`,
      );
      dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-gzr-'));
      // The server (the postgres OS user when the tests run as root) reads the files for COPY FROM PROGRAM.
      chmodSync(dir, 0o755);
      for (const [name, level, native] of [['isa-l', 1, true], ['libdeflate', 6, true], ['zlib', 1, false]] as const) {
        const file = path.join(dir, `${name}.csv.gz`);
        const sink = native ? createCopySink(level, { columns: COLUMNS }) : new JsCopySink();
        expect(sink.format).toBe(native ? 'text' : 'csv');
        const r = await copyToFile(c, native ? TEXT_SQL : SQL, { path: file, gzipLevel: level, fileMode: 0o644, sink, zlib: !native });
        expect(r.rows).toBe(ROWS);
        files.push({ name, path: file });
      }
    } finally {
      await c.end();
    }
    csv = await copyOut(db.url, SQL);
  });

  afterAll(async () => {
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the native files are several members (ISA-L at level 1, libdeflate at 6), the zlib one a single member', () => {
    expect(deflateBackend(1)).toBe('isa-l');
    expect(deflateBackend(6)).toBe('libdeflate');
    expect(csv.length).toBeGreaterThan(3 * 1024 * 1024);
    for (const f of files) {
      const n = members(readFileSync(f.path));
      if (f.name === 'zlib') expect(n, f.name).toBe(1);
      else expect(n, f.name).toBeGreaterThanOrEqual(3);
    }
  });

  it('gunzip, Python gzip and Node zlib (whole and streaming) give the CSV byte for byte', async () => {
    for (const f of files) {
      expect(execFileSync('gzip', ['-dc', f.path], { maxBuffer: 1 << 30 }).equals(csv), `gunzip ${f.name}`).toBe(true);
      const py = execFileSync('python3', ['-c', 'import gzip, sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())', f.path], { maxBuffer: 1 << 30 });
      expect(py.equals(csv), `python ${f.name}`).toBe(true);
      expect(zlib.gunzipSync(readFileSync(f.path)).equals(csv), `node gunzipSync ${f.name}`).toBe(true);
      const parts: Buffer[] = [];
      for await (const b of createReadStream(f.path, { highWaterMark: 4096 }).pipe(zlib.createGunzip())) parts.push(b as Buffer);
      expect(Buffer.concat(parts).equals(csv), `node createGunzip ${f.name}`).toBe(true);
    }
  });

  it('DuckDB read_csv counts every row and the same text', async () => {
    const want = await new pg.Client({ connectionString: db.url });
    await want.connect();
    const { rows } = await want.query<{ n: string; ids: string; len: string; nulls: string }>(`SELECT count(*)::text AS n, sum(id)::text AS ids, sum(length(t))::text AS len, count(*) FILTER (WHERE t IS NULL)::text AS nulls FROM src`);
    await want.end();
    const duck = await DuckDBInstance.create(':memory:');
    const con = await duck.connect();
    try {
      for (const f of files) {
        const reader = await con.runAndReadAll(
          `SELECT count(*)::VARCHAR, sum(id)::VARCHAR, sum(length(t))::VARCHAR, count(*) FILTER (WHERE t IS NULL)::VARCHAR
           FROM read_csv('${f.path}', header = true, quote = '"', escape = '"', allow_quoted_nulls = false, columns = {'id': 'INTEGER', 't': 'VARCHAR', 'n': 'VARCHAR', 'at': 'VARCHAR'})`,
        );
        expect(reader.getRows()[0], `duckdb ${f.name}`).toEqual([rows[0].n, rows[0].ids, rows[0].len, rows[0].nulls]);
      }
    } finally {
      con.closeSync();
    }
  });

  it("PostgreSQL COPY FROM PROGRAM 'zcat …' loads the same rows", async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      for (const f of files) {
        await c.query(`DROP TABLE IF EXISTS back; CREATE TABLE back (LIKE src)`);
        await c.query(`COPY back FROM PROGRAM 'zcat ${f.path}' (FORMAT csv, HEADER)`);
        const { rows } = await c.query<{ n: string; diff: string }>(
          `SELECT (SELECT count(*) FROM back)::text AS n,
                  (SELECT count(*) FROM ((SELECT * FROM src EXCEPT ALL SELECT * FROM back) UNION ALL (SELECT * FROM back EXCEPT ALL SELECT * FROM src)) d)::text AS diff`,
        );
        expect(rows[0], `COPY FROM PROGRAM ${f.name}`).toEqual({ n: String(ROWS), diff: '0' });
      }
    } finally {
      await c.end();
    }
  });
});
