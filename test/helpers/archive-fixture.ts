/**
 * A hand-made archive (SPEC §3–§5, §9), for rebuild cases the daemon on this branch does not
 * produce on demand: a partitioned root's partitions.yml with attach/detach, a table dropped and
 * created again (a new oid), a renamed column. Files, manifests, batch indexes and the chain are
 * hashed exactly as the daemon does, so the archive verifies.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { MerkleBuilder, rootOf } from '../../src/proof/merkle.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export type Val = string | null;

export interface FixtureColumn {
  name: string;
  type: string;
}

export interface FixtureWindow {
  schema: string;
  table: string;
  oid: number;
  columns: FixtureColumn[];
  primaryKey?: string[];
  /** Streaming rows: [_lsn, _seq, _op, _unchanged, ...values]. */
  streaming?: Val[][];
  reload?: { lsn: string; rows: Val[][] };
  partitions?: { changes: { lsn: string; kind: string; schema: string; name: string; oid: number }[] };
  ddl?: string;
  /** schema.yml generated_at (a reload's snapshot time). */
  generatedAt?: string;
  /** `_commit_ts` of the streaming rows (default 2026-11-01 00:00:00). */
  commitTs?: string;
}

export interface FixtureBatch {
  id: string;
  windows: FixtureWindow[];
}

function field(v: Val): string {
  if (v === null) return '';
  if (v === '' || /[",\r\n]/.test(v)) return '"' + v.replace(/"/g, '""') + '"';
  return v;
}
const record = (vals: Val[]) => vals.map(field).join(',');
const enc = (s: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? s : JSON.stringify(s));

function dataFile(
  dir: string,
  name: string,
  type: string,
  header: string[],
  records: string[],
  lsn: { start: string | null; end: string | null },
) {
  const raw = Buffer.from([header.map(field).join(','), ...records].join('\n') + '\n');
  const gz = zlib.gzipSync(raw);
  writeFileSync(path.join(dir, name), gz);
  const m = new MerkleBuilder();
  for (const r of records) m.addRecord(Buffer.from(r));
  return { name, type, rows: records.length, bytes: gz.length, raw_bytes: raw.length, sha256: sha(gz), lsn, merkle: { algorithm: 'rfc6962-sha256', tree_size: records.length, root: m.root().toString('hex') } };
}

export function writeArchive(out: string, batches: FixtureBatch[]): void {
  mkdirSync(path.join(out, '_batches'), { recursive: true });
  let prev: { batch_id: string; sha256: string } | null = null;
  for (const b of batches) {
    const manifests: { path: string; sha256: string; schema: string; table: string; rows: number }[] = [];
    const roots: Buffer[] = [];
    for (const w of b.windows) {
      const folder = `${w.schema}.${w.table}`;
      const dir = path.join(out, folder, b.id);
      mkdirSync(dir, { recursive: true });
      const files = [];
      const cols = w.columns.map((c) => c.name);
      if (w.reload) files.push(dataFile(dir, 'full_reload.csv.gz', 'full_reload', cols, w.reload.rows.map(record), { start: w.reload.lsn, end: w.reload.lsn }));
      if (w.streaming) {
        // _lsn, _seq, _xid, _commit_ts, _op, _unchanged, values…
        const recs = w.streaming.map((r) => record([r[0], r[1], '1', w.commitTs ?? '2026-11-01 00:00:00.000000+00', r[2], r[3], ...r.slice(4)]));
        files.push(dataFile(dir, 'streaming.csv.gz', 'streaming', ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged', ...cols], recs, { start: w.streaming[0][0], end: w.streaming[w.streaming.length - 1][0] }));
      }
      for (const f of files) roots.push(Buffer.from(f.merkle.root, 'hex'));
      const schemaYml = [
        `table: {schema: ${enc(w.schema)}, name: ${enc(w.table)}, oid: ${w.oid}}`,
        'replica_identity: default',
        `primary_key: [${(w.primaryKey ?? []).map(enc).join(', ')}]`,
        'columns:',
        ...w.columns.map((c) => `  - {name: ${enc(c.name)}, type: ${JSON.stringify(c.type)}, type_oid: 0, nullable: true}`),
        `lsn: {start: null, end: null}`,
        `generated_at: ${w.generatedAt ?? '2026-11-01T00:00:00.000000Z'}`,
      ].join('\n') + '\n';
      writeFileSync(path.join(dir, 'schema.yml'), schemaYml);
      let partitionsSha: string | null = null;
      if (w.partitions) {
        const text = ['root: {schema: public, name: x, oid: 1}', 'partitions: []', 'changes:', ...w.partitions.changes.map((c) => `  - {lsn: ${c.lsn}, kind: ${c.kind}, schema: ${enc(c.schema)}, name: ${enc(c.name)}, oid: ${c.oid}}`), 'lsn: {start: null, end: null}', 'generated_at: 2026-11-01T00:00:00.000000Z'].join('\n') + '\n';
        writeFileSync(path.join(dir, 'partitions.yml'), text);
        partitionsSha = sha(text);
      }
      let ddlSha: string | null = null;
      if (w.ddl) {
        writeFileSync(path.join(dir, 'ddl.sql'), w.ddl);
        ddlSha = sha(w.ddl);
      }
      const lsns = files.flatMap((f) => [f.lsn.start, f.lsn.end]).filter((x): x is string => x !== null).sort();
      const manifest =
        JSON.stringify(
          {
            format: 'pg-egress.manifest/1',
            table: { schema: w.schema, name: w.table, oid: w.oid },
            batch_id: b.id,
            window_start: '2026-11-01T00:00:00.000Z',
            lsn: { start: lsns[0] ?? null, end: lsns[lsns.length - 1] ?? null },
            files,
            schema_yml: { name: 'schema.yml', sha256: sha(schemaYml) },
            ddl_sql: ddlSha ? { name: 'ddl.sql', sha256: ddlSha } : null,
            ...(partitionsSha ? { partitions_yml: { name: 'partitions.yml', sha256: partitionsSha } } : {}),
          },
          null,
          2,
        ) + '\n';
      writeFileSync(path.join(dir, 'manifest.json'), manifest);
      manifests.push({ path: `${folder}/${b.id}/manifest.json`, sha256: sha(manifest), schema: w.schema, table: w.table, rows: files.reduce((n, f) => n + f.rows, 0) });
    }
    const all = b.windows.flatMap((w) => [w.reload?.lsn, ...(w.streaming ?? []).map((r) => r[0])]).filter((x): x is string => typeof x === 'string').sort();
    const index: string =
      JSON.stringify(
        {
          format: 'pg-egress.batch/1',
          batch_id: b.id,
          kind: b.windows.some((w) => w.reload) ? 'reload' : 'flush',
          window_start: '2026-11-01T00:00:00.000Z',
          slot: 'fixture',
          source: { database: 'fixture', system_identifier: '1' },
          lsn: { start: all[0] ?? null, end: all[all.length - 1] ?? '0000000000000000' },
          manifests,
          merkle: { algorithm: 'rfc6962-sha256', tree_size: roots.length, root: rootOf(roots).toString('hex') },
          prev,
        },
        null,
        2,
      ) + '\n';
    writeFileSync(path.join(out, '_batches', `${b.id}.json`), index);
    prev = { batch_id: b.id, sha256: sha(index) };
  }
}

/** An LSN as 16 hex digits from a small number (fixtures). */
export const L = (n: number): string => n.toString(16).toUpperCase().padStart(16, '0');
