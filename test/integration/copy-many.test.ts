/**
 * Several export COPYs in one query, each into its own file (reload/copy-export.ts
 * copyFilesEnded, reload/copy-gap.ts): every file must be what the COPY alone writes (the same
 * CSV, records, Merkle root and block roots, the sha256 of the file on disk), with notices from
 * the server inside and between the COPYs, an empty table among them, through the native sink
 * and the JavaScript one; a statement that fails after others have run must fail the whole query
 * and leave no file, and the connection must be usable afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import pg from 'pg';
import { createTestDatabase } from '../harness/pg.js';
import { copyFilesEnded, copyToFile, type CopyFileOptions } from '../../src/reload/copy-export.js';
import { createCopySink, JsCopySink, type CopySink } from '../../src/reload/copy-sink.js';
import { NativeSinkClass } from '../../src/output/deflate.js';

interface Source {
  name: string;
  columns: string[];
  /** The COPY in text form (the native sink reads text when given the columns) and in CSV. */
  text: string;
  csv: string;
}

const SOURCES: Source[] = [
  { name: 'wide', columns: ['id', 't', 'n'], text: `COPY wide (id, t, n) TO STDOUT`, csv: `COPY wide (id, t, n) TO STDOUT (FORMAT csv, HEADER)` },
  { name: 'empty', columns: ['id'], text: `COPY empty (id) TO STDOUT`, csv: `COPY empty (id) TO STDOUT (FORMAT csv, HEADER)` },
  // A NOTICE for some rows: NoticeResponse messages inside the COPY's data.
  { name: 'noisy', columns: ['id', 'v'], text: `COPY (SELECT id, noisy(id) AS v FROM wide WHERE id <= 300) TO STDOUT`, csv: `COPY (SELECT id, noisy(id) AS v FROM wide WHERE id <= 300) TO STDOUT (FORMAT csv, HEADER)` },
  { name: 'odd', columns: ['k', 'v'], text: `COPY odd (k, v) TO STDOUT`, csv: `COPY odd (k, v) TO STDOUT (FORMAT csv, HEADER)` },
];

/** The native sinks read a query of several COPYs on their thread (copy_fd.c), unless `thread: false`. */
/**
 * `fsync: false`: the files an export's query of several small tables writes, which its batch
 * syncs; they are opened, written and closed with synchronous calls (output/gzip-file.ts `direct`).
 */
const sinks: { name: string; make: (s: Source) => CopySink; zlib?: boolean; thread?: boolean; fsync?: boolean }[] = [
  { name: 'JavaScript', make: () => new JsCopySink(), zlib: true },
  ...(NativeSinkClass
    ? [
        { name: 'native, text, on the thread', make: (s: Source) => createCopySink(1, { columns: s.columns }) },
        { name: 'native, csv, on the thread', make: () => createCopySink(1) },
        { name: 'native, csv, on the thread, files not fsynced', make: () => createCopySink(1), fsync: false },
        { name: "native, text, through Node's socket", make: (s: Source) => createCopySink(1, { columns: s.columns }), thread: false },
        { name: "native, text, through Node's socket, files not fsynced", make: (s: Source) => createCopySink(1, { columns: s.columns }), thread: false, fsync: false },
      ]
    : []),
];

describe('several export COPYs in one query', () => {
  let db: { url: string; drop(): Promise<void> };
  let dir: string;
  let c: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase('cpmany');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-cpmany-'));
    c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query(`CREATE TABLE wide (id int, t text, n numeric);
      INSERT INTO wide SELECT g, repeat(md5(g::text), 1 + g % 4) || E'\\t,"' || g, g / 7.0 FROM generate_series(1, 20000) g;
      CREATE TABLE empty (id int);
      CREATE TABLE odd (k text, v text);
      INSERT INTO odd VALUES ('', NULL), (E'a\\nb', '\\N'), ('"q"', 'x,y'), (NULL, '');
      CREATE FUNCTION noisy(i int) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN IF i % 100 = 0 THEN RAISE NOTICE 'row %', i; END IF; RETURN 'v' || i; END $$;`);
  });

  afterAll(async () => {
    await c?.end().catch(() => undefined);
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const opts = (file: string, sink: CopySink, zlibToo?: boolean, fsync?: boolean): CopyFileOptions => ({
    path: path.join(dir, file),
    gzipLevel: 1,
    fileMode: 0o600,
    sink,
    zlib: zlibToo,
    fsync,
  });

  for (const k of sinks) {
    it(`${k.name}: each file is what its COPY alone writes`, async () => {
      const sql = (s: Source, sink: CopySink) => (sink.format === 'text' ? s.text : s.csv);
      // Twice each, in another order the second time: a COPY's file must not depend on its neighbours.
      for (const order of [SOURCES, [...SOURCES].reverse()]) {
        const progress = new Map<string, number>();
        let threads = 0;
        const copies = order.map((s, i) => {
          const sink = k.make(s);
          const readFd = sink.readFd?.bind(sink);
          if (readFd) sink.readFd = (...args) => void (threads++, readFd(...args));
          const onProgress = (_b: number, rows: number) => void progress.set(s.name, (progress.get(s.name) ?? 0) + rows);
          return { sql: sql(s, sink), opts: { ...opts(`many-${i}-${s.name}.csv.gz`, sink, k.zlib, k.fsync), onProgress, thread: k.thread } };
        });
        const ended = await copyFilesEnded(c, copies);
        expect(ended).toHaveLength(order.length);
        // One thread for the whole query where the sinks have one and may use it; else none.
        expect(threads).toBe(k.name.includes('on the thread') ? 1 : 0);
        for (let i = 0; i < order.length; i++) {
          const s = order[i];
          const alone = k.make(s);
          // Alone through Node's socket: the path every COPY took before queries of several.
          const one = await copyToFile(c, sql(s, alone), { ...opts(`one-${i}-${s.name}.csv.gz`, alone, k.zlib), thread: false });
          const r = ended[i];
          await r.durable;
          expect(r.synced).toBe(k.fsync !== false);
          const file = readFileSync(copies[i].opts.path);
          const csv = zlib.gunzipSync(file);
          expect(csv.equals(zlib.gunzipSync(readFileSync(path.join(dir, `one-${i}-${s.name}.csv.gz`)))), `${s.name}: CSV`).toBe(true);
          expect(csv.toString().split('\n')[0]).toBe(s.columns.join(','));
          expect(r.rows, s.name).toBe(one.rows);
          expect(progress.get(s.name) ?? 0, s.name).toBe(one.rows);
          expect(r.merkle.root.equals(one.merkle.root), `${s.name}: root`).toBe(true);
          expect(r.merkle.blocks.map((b) => b.toString('hex'))).toEqual(one.merkle.blocks.map((b) => b.toString('hex')));
          expect(r.stats.sha256).toBe(createHash('sha256').update(file).digest('hex'));
          expect(r.stats.rawBytes).toBe(csv.length);
        }
        expect(ended.map((r) => r.rows)).toEqual(order.map((s) => (s.name === 'wide' ? 20_000 : s.name === 'empty' ? 0 : s.name === 'noisy' ? 300 : 4)));
        for (const f of readdirSync(dir)) rmSync(path.join(dir, f));
      }
      // The connection is pg's again.
      expect((await c.query(`SELECT count(*)::int AS n FROM odd`)).rows[0].n).toBe(4);
    });
  }

  for (const k of sinks) {
    it(`${k.name}: a statement failing after others ran fails the query, leaves no file, and the connection works on`, async () => {
      const copies = (p: string) =>
        ['wide', 'missing', 'odd'].map((t, i) => {
          const sink = k.make(SOURCES.find((s) => s.name === t) ?? SOURCES[3]);
          const cols = t === 'wide' ? ' (id, t, n)' : t === 'odd' ? ' (k, v)' : '';
          return { sql: `COPY ${t}${cols} TO STDOUT${sink.format === 'csv' ? ' (FORMAT csv, HEADER)' : ''}`, opts: { ...opts(`${p}-${i}.csv.gz`, sink, k.zlib, k.fsync), thread: k.thread } };
        });
      await expect(copyFilesEnded(c, copies('f'))).rejects.toThrow(/relation "missing" does not exist/);
      expect(readdirSync(dir)).toEqual([]);
      expect((await c.query(`SELECT count(*)::int AS n FROM odd`)).rows[0].n).toBe(4);
      // Inside a transaction, as an export runs them: the transaction is aborted, and says so.
      await c.query('BEGIN');
      await expect(copyFilesEnded(c, copies('g'))).rejects.toThrow(/missing/);
      await expect(c.query('SELECT 1')).rejects.toThrow(/current transaction is aborted/);
      await c.query('ROLLBACK');
      expect(readdirSync(dir)).toEqual([]);
    });
  }
});
