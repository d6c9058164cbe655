/**
 * PostgreSQL target: tables with schema.yml's types (format_type text, so COPY parses the files'
 * values as the source printed them), reload files by `COPY FROM STDIN (FORMAT csv, HEADER)`
 * streamed from the gunzipped file, and changes through a temporary staging table filled by COPY
 * and applied with set-based UPDATE/DELETE/INSERT. The session uses the settings of SPEC §2.
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { EgressError } from '../errors.js';
import { CsvBuffer } from '../output/csv.js';
import { sessionOptions } from '../db/connect.js';
import { limitHeapGrowth } from './malloc-ctl.js';
import type { SchemaColumn } from './catalog.js';
import { qname, quoteIdent, quoteLiteral, unresolvedText, UNIT, type Engine, type StagedBatch } from './engine.js';
import type { VerifiedFile } from './verified-reader.js';

/** Writes CSV fields (COPY's conventions, the daemon's own encoder) into chunks of about 1 MB. */
export class CsvChunks {
  private readonly buf = new CsvBuffer(1 << 20);
  readonly out: Buffer[] = [];

  constructor(private readonly singleColumn = false) {}

  field(v: Buffer | string | null, first: boolean): void {
    if (!first) this.buf.byte(0x2c);
    if (v === null) return;
    if (typeof v === 'string') this.buf.text(v, this.singleColumn);
    else this.buf.value(v, this.singleColumn);
  }

  /** A field given as a byte string (latin1), never first in its record. */
  bytes(v: string | null): void {
    this.buf.byte(0x2c);
    if (v !== null) this.buf.value(Buffer.from(v, 'latin1'), this.singleColumn);
  }

  endRecord(): void {
    this.buf.byte(0x0a);
    if (this.buf.length >= 1 << 20) this.cut();
  }

  cut(): void {
    if (this.buf.length) this.out.push(this.buf.take());
  }
}

async function writeAll(stream: Writable, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<void> {
  const done = new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve);
    stream.on('error', reject);
  });
  try {
    for await (const c of chunks) {
      if (!stream.write(c)) await new Promise((r) => stream.once('drain', r));
    }
  } catch (e) {
    stream.destroy(e as Error);
    await done.catch(() => undefined);
    throw e;
  }
  stream.end();
  await done;
}

export async function openPostgres(url: string): Promise<Engine> {
  // A rebuild stages every streamed row through Node: V8 let the heap grow far between full
  // collections (malloc-ctl.ts).
  limitHeapGrowth();
  const client = new pg.Client({ connectionString: url, options: sessionOptions(), application_name: 'pg-egress archive' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw new EgressError('ARCHIVE_TARGET_UNREACHABLE', `cannot connect to the target PostgreSQL (--into): ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
  const q = (sql: string, params?: unknown[]) => client.query(sql, params as unknown[]);
  const colDefs = (cols: SchemaColumn[]) => cols.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ');
  let stageSeq = 0;
  const stages = new Map<string, string>();

  async function copyIn(sql: string, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<number> {
    const stream = client.query(copyFrom(sql));
    await writeAll(stream, chunks);
    return Number((stream as unknown as { rowCount?: number }).rowCount ?? 0);
  }

  const engine: Engine = {
    kind: 'postgres',
    begin: async () => void (await q('BEGIN')),
    commit: async () => void (await q('COMMIT')),
    rollback: async () => {
      await q('ROLLBACK').catch(() => undefined);
      // Staging tables created in the rolled-back transaction are gone.
      stages.clear();
    },
    async tableExists(t) {
      const r = await q(`SELECT to_regclass($1) IS NOT NULL AS e`, [qname(t)]);
      return r.rows[0].e as boolean;
    },
    dropTable: async (t, cascade) => void (await q(`DROP TABLE IF EXISTS ${qname(t)}${cascade ? ' CASCADE' : ''}`)),
    async replaceView(t, sql) {
      await q(`DROP VIEW IF EXISTS ${qname(t)}`);
      if (sql) await q(`CREATE VIEW ${qname(t)} AS ${sql}`);
    },
    async createTable(t, cols, key) {
      await q(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
      const pk = key && key.length ? `, PRIMARY KEY (${key.map(quoteIdent).join(', ')})` : '';
      await q(`CREATE TABLE ${qname(t)} (${colDefs(cols)}${pk})`);
    },
    addColumn: async (t, c) => void (await q(`ALTER TABLE ${qname(t)} ADD COLUMN ${quoteIdent(c.name)} ${c.type}`)),
    dropColumn: async (t, name) => void (await q(`ALTER TABLE ${qname(t)} DROP COLUMN ${quoteIdent(name)}`)),
    renameColumn: async (t, from, to) => void (await q(`ALTER TABLE ${qname(t)} RENAME COLUMN ${quoteIdent(from)} TO ${quoteIdent(to)}`)),
    retypeColumn: async (t, c) => void (await q(`ALTER TABLE ${qname(t)} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.type} USING ${quoteIdent(c.name)}::text::${c.type}`)),
    truncate: async (t) => void (await q(`TRUNCATE ${qname(t)}`)),
    async loadReload(t, _cols, header, file: VerifiedFile) {
      const n = await copyIn(`COPY ${qname(t)} (${header.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT csv, HEADER)`, file.chunks());
      file.finish();
      return n;
    },
    async applyBatch(t, b: StagedBatch) {
      if (b.truncateFirst) await q(`TRUNCATE ${qname(t)}`);
      if (!b.rows.length) return;
      const key = b.key;
      const keyCols = key ? key.map((k) => b.columns.find((c) => c.name === k)!) : [];
      const lkDefs = keyCols.map((c, i) => `_lk${i} ${c.type}`);
      const defs = `_n bigint, _op text, _unres text, ${[...lkDefs, colDefs(b.columns)].filter(Boolean).join(', ')}`;
      // One staging table per column layout for the session, emptied after each batch.
      let st = stages.get(defs);
      if (!st) {
        st = quoteIdent(`_pg_egress_stage_${++stageSeq}`);
        await q(`CREATE TEMP TABLE ${st} (${defs})`);
        stages.set(defs, st);
      }
      const w = new CsvChunks();
      let fill = false;
      for (const r of b.rows) {
        w.field(String(r.n), true);
        w.field(r.op, false);
        const u = unresolvedText(r.unresolved);
        if (u) fill = true;
        w.field(u, false);
        for (let i = 0; i < keyCols.length; i++) w.bytes(r.lk ? r.lk[i] : null);
        for (const v of r.values) w.bytes(v);
        w.endRecord();
      }
      w.cut();
      await copyIn(`COPY ${st} FROM STDIN (FORMAT csv)`, w.out);
      const cols = b.columns.map((c) => quoteIdent(c.name));
      const target = qname(t);
      const sql: string[] = [];
      if (key) {
        const k = key.map(quoteIdent);
        if (fill) {
          const sets = cols.map((c, i) => `${c} = CASE WHEN strpos(s._unres, ${quoteLiteral(UNIT + b.columns[i].name + UNIT)}) > 0 THEN t.${c} ELSE s.${c} END`);
          sql.push(`UPDATE ${st} s SET ${sets.join(', ')} FROM ${target} t WHERE s._unres IS NOT NULL AND ${k.map((c, i) => `t.${c} = s._lk${i}`).join(' AND ')}`);
        }
        sql.push(`DELETE FROM ${target} t USING (SELECT DISTINCT ${k.join(', ')} FROM ${st}) s WHERE ${k.map((c) => `t.${c} = s.${c}`).join(' AND ')}`);
        sql.push(`INSERT INTO ${target} (${cols.join(', ')}) SELECT ${cols.join(', ')} FROM (SELECT DISTINCT ON (${k.join(', ')}) * FROM ${st} ORDER BY ${k.join(', ')}, _n DESC) x WHERE _op <> 'D'`);
      } else {
        // A multiset: per distinct row (its text), the net count of inserts minus deletes.
        const net = quoteIdent(`_pg_egress_net_${++stageSeq}`);
        const rowText = (alias: string) => `ROW(${cols.map((c) => `${alias}.${c}`).join(', ')})::text`;
        sql.push(`CREATE TEMP TABLE ${net} AS SELECT DISTINCT ON (_r) *, sum(_delta) OVER (PARTITION BY _r) AS _net FROM (SELECT s.*, ${rowText('s')} AS _r, CASE WHEN _op = 'D' THEN -1 ELSE 1 END AS _delta FROM ${st} s) x`);
        sql.push(
          `DELETE FROM ${target} WHERE ctid IN (SELECT ctid FROM (SELECT t.ctid, d._net, row_number() OVER (PARTITION BY d._r) AS _k FROM ${target} t JOIN ${net} d ON d._r = ${rowText('t')} WHERE d._net < 0) x WHERE _k <= -_net)`,
        );
        sql.push(`INSERT INTO ${target} (${cols.join(', ')}) SELECT ${cols.map((c) => `d.${c}`).join(', ')} FROM ${net} d CROSS JOIN LATERAL generate_series(1, d._net::int) WHERE d._net > 0`);
        sql.push(`DROP TABLE ${net}`);
      }
      sql.push(`TRUNCATE ${st}`);
      // One round trip (simple query protocol: several statements, no parameters).
      await q(sql.join(';\n'));
    },
    async appendTable(to, from, columns) {
      const c = columns.map(quoteIdent).join(', ');
      await q(`INSERT INTO ${qname(to)} (${c}) SELECT ${c} FROM ${qname(from)}`);
    },
    async query(sql, params) {
      return (await q(sql, params)).rows as Record<string, unknown>[];
    },
    close: async () => void (await client.end().catch(() => undefined)),
  };
  return engine;
}
