/**
 * `--into`: `postgres://…` (or postgresql://), `duckdb:<file>`, `csv:<file.csv.gz>`. A csv: target
 * is built in a scratch DuckDB database whose columns are all text (PostgreSQL's text output,
 * unchanged), then written as `COPY … (FORMAT csv, HEADER)` would print the table, gzipped, to a
 * temporary name renamed into place at the end (a failed rebuild leaves no file).
 */
import { createWriteStream, mkdtempSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { EgressError, isEgressError } from '../errors.js';
import type { Engine, QName } from './engine.js';
import { openPostgres, CsvChunks } from './engine-pg.js';

export interface Target {
  engine: Engine;
  defaultName(n: QName): QName;
  /** After the commit (csv: writes the file). */
  finish(tables: QName[]): Promise<void>;
  close(): Promise<void>;
}

/** A target URL as it may be shown: no password. */
export function redactTarget(into: string): string {
  if (!/^postgres(ql)?:\/\//.test(into)) return into;
  try {
    const u = new URL(into);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

/** A failure inside the target (a value it cannot hold, DDL it cannot apply) as one clear line. */
export function targetError(e: unknown, into: string, what: string): unknown {
  if (isEgressError(e)) return e;
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  return new EgressError('ARCHIVE_TARGET', `${redactTarget(into)} refused ${what}: ${msg}`, { cause: e });
}

export async function openTarget(into: string, o: { sqlChanges?: boolean } = {}): Promise<Target> {
  if (/^postgres(ql)?:\/\//.test(into)) {
    const engine = await openPostgres(into);
    return { engine, defaultName: (n) => n, finish: async () => undefined, close: () => engine.close() };
  }
  if (into.startsWith('duckdb:')) {
    const file = into.slice('duckdb:'.length);
    if (!file) throw new EgressError('CONFIG_INVALID', '--into duckdb:<file>: the file name is missing');
    const { openDuckdb } = await import('./engine-duckdb.js');
    const engine = await openDuckdb(file, { sqlChanges: o.sqlChanges });
    return { engine, defaultName: (n) => n, finish: async () => undefined, close: () => engine.close() };
  }
  if (into.startsWith('csv:')) {
    const file = into.slice('csv:'.length);
    if (!file) throw new EgressError('CONFIG_INVALID', '--into csv:<file.csv.gz>: the file name is missing');
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-csv-'));
    const { openDuckdb } = await import('./engine-duckdb.js');
    const engine = await openDuckdb(path.join(scratch, 'rebuild.duckdb'), { text: true });
    return {
      engine,
      defaultName: (n) => n,
      async finish(tables) {
        if (tables.length !== 1) throw new EgressError('CONFIG_INVALID', '--into csv: takes one table');
        const t = tables[0];
        const cols = (await engine.query(`SELECT column_name AS c FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [t.schema, t.table])).map((r) => String(r.c));
        const tmp = `${file}.tmp-${process.pid}`;
        const gz = zlib.createGzip({ level: 6 });
        const ws = createWriteStream(tmp, { mode: 0o600 });
        const done = new Promise<void>((resolve, reject) => {
          ws.on('finish', resolve);
          ws.on('error', reject);
          gz.on('error', reject);
        });
        // Awaited at the end; an early failure (no such folder) must not go unhandled meanwhile.
        done.catch(() => undefined);
        gz.pipe(ws);
        let failed: unknown = null;
        done.catch((e: unknown) => (failed = e));
        const write = async (b: Buffer) => {
          if (failed) throw failed;
          if (!gz.write(b)) await Promise.race([new Promise((r) => gz.once('drain', r)), done]);
        };
        const single = cols.length === 1;
        const head = new CsvChunks(single);
        cols.forEach((c, i) => head.field(c, i === 0));
        head.endRecord();
        head.cut();
        for (const b of head.out) await write(b);
        for await (const rows of engine.rows(t, cols)) {
          const w = new CsvChunks(single);
          for (const r of rows) {
            r.forEach((v, i) => w.field(v, i === 0));
            w.endRecord();
          }
          w.cut();
          for (const b of w.out) await write(b);
        }
        gz.end();
        try {
          await done;
        } catch (e) {
          rmSync(tmp, { force: true });
          throw new EgressError('OUTPUT_IO', `cannot write ${file} (--into csv:): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
        }
        renameSync(tmp, file);
      },
      async close() {
        await engine.close();
        rmSync(scratch, { recursive: true, force: true });
      },
    };
  }
  throw new EgressError('CONFIG_INVALID', `--into ${redactTarget(into)}: expected postgres://…, duckdb:<file> or csv:<file.csv.gz>`);
}
