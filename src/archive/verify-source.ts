/**
 * `pg-egress verify --against-source <schema.table>... --config cdc.yml [--repair]`: is the
 * archive, rebuilt as of a snapshot of the source, equal to the source at that snapshot?
 *
 * - The snapshot: a temporary slot's exported snapshot (the export machinery), consistent point S;
 *   the comparison waits until the daemon's slot is confirmed at or past S, so every change below
 *   S is in a registered file.
 * - The archive side: each table rebuilt as of S (SPEC §6, files checked as usual) into a scratch
 *   DuckDB database whose columns are text: the values exactly as PostgreSQL printed them.
 * - The digest: per row, md5 over its columns' text (each `<bytes>:<text>`, NULL as `N`); rows are
 *   put in 2^k buckets by md5 of their key's text, and per bucket the row count and the sum of the
 *   row digests' first 60 bits are compared. The source computes its side inside PostgreSQL in
 *   one scan (GROUP BY bucket), shipping only the bucket sums. Only for buckets that differ does a
 *   second query ship keys and row digests (no values), which name the missing, extra and changed
 *   keys.
 * - `--repair` asks for reloads of the tables that differ (cdc_registry.request_reload, the path
 *   `pg-egress reload` uses); the daemon exports them, and a later verify compares again.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { formatLsn, lsnHex, parseLsn } from '../lsn.js';
import { tableFolder } from '../output/layout.js';
import { createExportSnapshot } from '../reload/snapshot.js';
import { requestReload } from '../registry/reload-requests.js';
import { clientConfig, sourceError } from '../db/connect.js';
import { readSchema } from './catalog.js';
import { qname, quoteIdent, type QName } from './engine.js';
import { openDuckdb } from './engine-duckdb.js';
import type { AsOf } from './plan.js';
import { Progress } from './progress.js';
import { openArchive, parseTableName, rebuildOne } from './rebuild.js';
import type { S3Options } from './store.js';

export interface AgainstSourceOptions {
  tables: string[];
  /** The archive; default: output.dir. */
  from?: string;
  s3?: S3Options;
  repair?: boolean;
  verify: boolean;
  /** How long to wait for the daemon to pass the snapshot (ms). */
  waitMs?: number;
  progress?: NodeJS.WriteStream | null;
}

export interface TableVerdict {
  table: string;
  equal: boolean;
  rows: number;
  sourceRows: number;
  missing: string[];
  extra: string[];
  changed: string[];
}

export interface AgainstSourceResult {
  snapshot: string;
  tables: TableVerdict[];
  repairRequested: string[];
}

/** Keys named per kind in the report, at most. */
const MAX_KEYS = 100;


/** A row's (or key's) text as the digest sees it: `<bytes>:<text>` per value, NULL as `N`. */
export function rowText(values: (string | null)[]): string {
  return values.map((v) => (v === null ? 'N' : `${Buffer.byteLength(v)}:${v}`)).join(',');
}

/** The same text computed by PostgreSQL (concat() prints with the type's output function). */
function sqlRowText(cols: string[], alias = 't'): string {
  if (!cols.length) return `''`;
  return `concat_ws(',', ${cols.map((c) => `CASE WHEN ${alias}.${quoteIdent(c)} IS NULL THEN 'N' ELSE octet_length(concat(${alias}.${quoteIdent(c)}))::text || ':' || concat(${alias}.${quoteIdent(c)}) END`).join(', ')})`;
}


interface Buckets {
  count: Map<number, number>;
  sum: Map<number, bigint>;
}


export async function verifyAgainstSource(cfg: Config, o: AgainstSourceOptions): Promise<AgainstSourceResult> {
  const names = o.tables.map(parseTableName);
  const client = new pg.Client(clientConfig(cfg.source, { application_name: 'pg-egress verify --against-source' } as Partial<pg.ClientConfig>));
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw sourceError(e, cfg.source, 'connect to the source for verify --against-source');
  }
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-against-'));
  try {
    const major = Math.floor(Number((await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0].v) / 10000);
    const snap = await createExportSnapshot(cfg, major);
    let S: bigint;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      await client.query(`SET TRANSACTION SNAPSHOT '${snap.name.replace(/'/g, "''")}'`);
      S = snap.lsn;
    } finally {
      await snap.close();
    }
    await waitForSlot(cfg, S, o.waitMs ?? 60_000);
    const asOf: AsOf = { kind: 'lsn', lsn: lsnHex(S), text: formatLsn(S) };
    const cat = await openArchive(o.from ?? cfg.output.dir, o.s3, o.verify, asOf);
    const duck = await openDuckdb(path.join(scratch, 'rebuilt.duckdb'), { text: true });
    // A scratch file: commits between batches keep DuckDB's pool from filling (engine-duckdb.ts step).
    duck.intermediateCommits = true;
    const verdicts: TableVerdict[] = [];
    try {
      for (const n of names) {
        const folder = tableFolder(n.schema, n.table);
        if (!cat.windows.has(folder)) throw new EgressError('UNKNOWN_TABLE', `table ${n.schema}.${n.table} is not in the archive ${cat.store.label}`);
        const t: QName = { schema: n.schema, table: n.table };
        await duck.begin();
        const progress = new Progress(`verify ${n.schema}.${n.table}: rebuild as of ${formatLsn(S)}`, o.progress === undefined ? process.stderr : o.progress);
        await rebuildOne(cat, duck, folder, n, t, asOf, progress);
        await duck.commit();
        progress.done();
        const cols = (await duck.query(`SELECT column_name AS c FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [t.schema, t.table])).map((r) => String(r.c));
        const windows = (cat.windows.get(folder) ?? []).filter((w) => w.manifest);
        const schema = await readSchema(cat, windows[windows.length - 1]);
        const key = schema.primary_key.length && schema.primary_key.every((k) => cols.includes(k)) ? schema.primary_key : cols;
        verdicts.push(await compare(client, duck, t, cols, key));
        await duck.dropTable(t);
      }
    } finally {
      await duck.close();
      cat.store.close();
    }
    await client.query('COMMIT');
    const repairRequested: string[] = [];
    if (o.repair) {
      const differ = verdicts.filter((v) => !v.equal);
      if (differ.length) {
        await client.query('BEGIN');
        await requestReload(client, differ.map((v) => qname(parseTableName(v.table))), randomUUID());
        repairRequested.push(...differ.map((v) => v.table));
        await client.query('COMMIT');
      }
    }
    return { snapshot: formatLsn(S), tables: verdicts, repairRequested };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    await client.end().catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Every change below S is in a registered file once the daemon's slot is confirmed at or past S. */
async function waitForSlot(cfg: Config, S: bigint, waitMs: number): Promise<void> {
  const c = new pg.Client(clientConfig(cfg.source));
  c.on('error', () => undefined);
  await c.connect();
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const r = await c.query<{ l: string | null }>(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [cfg.slot]);
      const l = r.rows[0]?.l;
      if (l && parseLsn(l) >= S) return;
      if (Date.now() > deadline) {
        throw new EgressError('DATA_GAP', `the daemon's slot "${cfg.slot}" is not confirmed past the snapshot ${formatLsn(S)} (at ${l ?? 'no slot'}) after ${Math.round(waitMs / 1000)} s: is pg-egress run running? The archive cannot be compared before it holds every change below the snapshot`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function compare(
  client: pg.Client,
  duck: Awaited<ReturnType<typeof openDuckdb>>,
  t: QName,
  cols: string[],
  key: string[],
): Promise<TableVerdict> {
  // Buckets: about 256 rows each, a power of two (same on both sides).
  const rows = Number((await duck.query(`SELECT count(*) AS n FROM ${qname(t)}`))[0].n);
  let bits = 0;
  while (bits < 16 && 1 << bits < rows / 256) bits++;
  const mask = (1 << bits) - 1;
  // The archive's side in DuckDB (its columns hold PostgreSQL's text; strlen counts bytes).
  const duckText = (cs: string[]) => (cs.length ? `concat_ws(',', ${cs.map((c) => `CASE WHEN ${quoteIdent(c)} IS NULL THEN 'N' ELSE CAST(strlen(${quoteIdent(c)}) AS VARCHAR) || ':' || ${quoteIdent(c)} END`).join(', ')})` : `''`);
  const duckBucket = `(CAST('0x' || substr(md5(${duckText(key)}), 1, 8) AS UBIGINT) & ${mask})`;
  const archived: Buckets = { count: new Map(), sum: new Map() };
  for (const r of await duck.query(`SELECT ${duckBucket} AS b, count(*) AS n, CAST(sum(CAST('0x' || substr(md5(${duckText(cols)}), 1, 15) AS UBIGINT)) AS VARCHAR) AS s FROM ${qname(t)} GROUP BY 1`)) {
    archived.count.set(Number(r.b), Number(r.n));
    archived.sum.set(Number(r.b), BigInt(String(r.s)));
  }
  const keySql = sqlRowText(key);
  const bucketSql = `(('x' || substr(md5(${keySql}), 1, 8))::bit(32)::int & ${mask})`;
  const rowSql = `md5(${sqlRowText(cols)})`;
  const src = await client.query<{ b: string; n: string; s: string }>(
    `SELECT b, count(*)::text AS n, sum(h)::text AS s FROM (SELECT ${bucketSql} AS b, ('x' || substr(${rowSql}, 1, 15))::bit(60)::bigint AS h FROM ${qname(t)} t) x GROUP BY b`,
  );
  const source: Buckets = { count: new Map(), sum: new Map() };
  let sourceRows = 0;
  for (const r of src.rows) {
    // The source connection parses nothing (every value arrives as text).
    source.count.set(Number(r.b), Number(r.n));
    source.sum.set(Number(r.b), BigInt(r.s));
    sourceRows += Number(r.n);
  }
  const differ = new Set<number>();
  for (const b of new Set([...archived.count.keys(), ...source.count.keys()])) {
    if (archived.count.get(b) !== source.count.get(b) || archived.sum.get(b) !== source.sum.get(b)) differ.add(b);
  }
  const verdict: TableVerdict = { table: `${t.schema}.${t.table}`, equal: differ.size === 0, rows, sourceRows, missing: [], extra: [], changed: [] };
  if (!differ.size) return verdict;
  // Narrowing: keys and row digests of the differing buckets only.
  const show = (vals: (string | null)[]) => (key.length === 1 ? `${key[0]}=${vals[0]}` : `(${key.join(', ')})=(${vals.map((v) => v ?? 'NULL').join(', ')})`);
  const mine = new Map<string, { h: string; shown: string }>();
  const keySel = key.map((k) => `${quoteIdent(k)}`).join(', ');
  for (const r of await duck.query(`SELECT ${keySel}, md5(${duckText(cols)}) AS _h FROM ${qname(t)} WHERE ${duckBucket} IN (${[...differ].join(', ')})`)) {
    const kv = key.map((k) => (r[k] == null ? null : String(r[k])));
    const h = String(r._h);
    mine.set(rowText(kv) + '\u0000' + (key === cols ? h : ''), { h, shown: show(kv) });
  }
  const keyCols = key.map((k) => `concat(t.${quoteIdent(k)}) AS ${quoteIdent('k_' + k)}, t.${quoteIdent(k)} IS NULL AS ${quoteIdent('n_' + k)}`);
  const theirs = await client.query(`SELECT ${keyCols.join(', ')}, ${rowSql} AS h FROM ${qname(t)} t WHERE ${bucketSql} = ANY($1::int[])`, [[...differ]]);
  const seen = new Set<string>();
  for (const r of theirs.rows as Record<string, unknown>[]) {
    const kv = key.map((k) => (r['n_' + k] === true || r['n_' + k] === 't' ? null : String(r['k_' + k])));
    const kt = rowText(kv) + '\u0000' + (key === cols ? String(r.h) : '');
    seen.add(kt);
    const m = mine.get(kt);
    if (!m) verdict.missing.push(show(kv));
    else if (m.h !== r.h) verdict.changed.push(show(kv));
  }
  for (const [kt, m] of mine) if (!seen.has(kt)) verdict.extra.push(m.shown);
  for (const k of ['missing', 'extra', 'changed'] as const) verdict[k] = verdict[k].sort().slice(0, MAX_KEYS);
  return verdict;
}
