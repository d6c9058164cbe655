/**
 * `pg-egress schema-sql --dialect postgres|duckdb|clickhouse|snowflake|bigquery <folder>`: the
 * CREATE TABLE for a window's schema.yml and the statements that load its files, with types and
 * NULL/empty-string options spelled out (SPEC §4: NULL is an empty unquoted field, "" the empty
 * string). Two tables per window: the table itself (reload files) and `<table>_changes` (the
 * streaming file, metadata columns first). Pure: text in, text out.
 *
 * PostgreSQL and DuckDB output is tested by running it; ClickHouse, Snowflake and BigQuery output
 * was reviewed but never run against those services (README).
 */
import type { SchemaColumn, SchemaFile } from './catalog.js';
import { bigqueryType, clickhouseType, duckdbType, snowflakeType, type Dialect } from './types.js';

export const DIALECTS: Dialect[] = ['postgres', 'duckdb', 'clickhouse', 'snowflake', 'bigquery'];

export interface WindowFiles {
  /** Paths (as the user gave the folder) of the window's reload parts, in order. */
  reload: string[];
  streaming: string | null;
}

const META: { name: string; pg: string; duck: string; ch: string; sf: string; bq: string }[] = [
  { name: '_lsn', pg: 'text', duck: 'VARCHAR', ch: 'String', sf: 'VARCHAR', bq: 'STRING' },
  { name: '_seq', pg: 'integer', duck: 'INTEGER', ch: 'Int32', sf: 'NUMBER(10,0)', bq: 'INT64' },
  { name: '_xid', pg: 'bigint', duck: 'BIGINT', ch: 'Int64', sf: 'NUMBER(19,0)', bq: 'INT64' },
  { name: '_commit_ts', pg: 'timestamp with time zone', duck: 'TIMESTAMPTZ', ch: "DateTime64(6, 'UTC')", sf: 'TIMESTAMP_TZ(6)', bq: 'TIMESTAMP' },
  { name: '_op', pg: 'text', duck: 'VARCHAR', ch: 'String', sf: 'VARCHAR(1)', bq: 'STRING' },
  { name: '_unchanged', pg: 'text[]', duck: 'VARCHAR', ch: 'Nullable(String)', sf: 'VARCHAR', bq: 'STRING' },
];

const dq = (s: string) => '"' + s.replace(/"/g, '""') + '"';
const bt = (s: string) => '`' + s.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
const sq = (s: string) => "'" + s.replace(/'/g, "''") + "'";

export function schemaSql(dialect: Dialect, s: SchemaFile, files: WindowFiles): string {
  switch (dialect) {
    case 'postgres':
      return postgres(s, files);
    case 'duckdb':
      return duckdb(s, files);
    case 'clickhouse':
      return clickhouse(s, files);
    case 'snowflake':
      return snowflake(s, files);
    case 'bigquery':
      return bigquery(s, files);
  }
}

const header = (d: string, s: SchemaFile) => `-- pg-egress schema-sql --dialect ${d}: ${s.table.schema}.${s.table.name} (oid ${s.table.oid})\n`;

function postgres(s: SchemaFile, f: WindowFiles): string {
  const t = `${dq(s.table.schema)}.${dq(s.table.name)}`;
  const ch = `${dq(s.table.schema)}.${dq(s.table.name + '_changes')}`;
  const cols = (list: SchemaColumn[]) => list.map((c) => `  ${dq(c.name)} ${c.type}${c.nullable === false ? ' NOT NULL' : ''}`);
  const pk = s.primary_key.length ? [`  PRIMARY KEY (${s.primary_key.map(dq).join(', ')})`] : [];
  const names = s.columns.map((c) => dq(c.name)).join(', ');
  const out = [header('postgres', s), `CREATE TABLE ${t} (\n${[...cols(s.columns), ...pk].join(',\n')}\n);`];
  out.push(`CREATE TABLE ${ch} (\n${[...META.map((m) => `  ${m.name} ${m.pg}`), ...s.columns.map((c) => `  ${dq(c.name)} ${c.type}`)].join(',\n')}\n);`);
  // Values are COPY's own text: COPY parses them back exactly; NULL is the empty unquoted field.
  for (const p of f.reload) out.push(`-- gzip -dc ${sq(p)} | psql -c "COPY ..." (psql's \\copy works the same)\nCOPY ${t} (${names}) FROM STDIN (FORMAT csv, HEADER);`);
  if (f.streaming) out.push(`-- gzip -dc ${sq(f.streaming)} | psql -c "COPY ..."\nCOPY ${ch} FROM STDIN (FORMAT csv, HEADER);`);
  return out.join('\n\n') + '\n';
}

function duckReadCsv(file: string, names: string[]): string {
  const columns = names.map((n) => `${sq(n)}: 'VARCHAR'`).join(', ');
  return `read_csv(${sq(file)}, header = true, delim = ',', quote = '"', escape = '"', new_line = '\\n', auto_detect = false, allow_quoted_nulls = false, nullstr = '', columns = {${columns}}, max_line_size = 16777216, buffer_size = 16777216, compression = 'gzip')`;
}

function duckdb(s: SchemaFile, f: WindowFiles): string {
  const t = `${dq(s.table.schema)}.${dq(s.table.name)}`;
  const ch = `${dq(s.table.schema)}.${dq(s.table.name + '_changes')}`;
  const names = s.columns.map((c) => c.name);
  const out = [header('duckdb', s) + '-- Every value is read as VARCHAR (PostgreSQL\'s text) and cast explicitly: DuckDB\'s defaults would read "" as NULL and guess types.'];
  out.push(`CREATE SCHEMA IF NOT EXISTS ${dq(s.table.schema)};`);
  out.push(`CREATE TABLE ${t} (\n${s.columns.map((c) => `  ${dq(c.name)} ${duckdbType(c.type).type}`).join(',\n')}\n);`);
  out.push(`CREATE TABLE ${ch} (\n${[...META.map((m) => `  ${m.name} ${m.duck}`), ...s.columns.map((c) => `  ${dq(c.name)} ${duckdbType(c.type).type}`)].join(',\n')}\n);`);
  const casts = s.columns.map((c) => duckdbType(c.type).cast(dq(c.name)));
  for (const p of f.reload) out.push(`INSERT INTO ${t} (${names.map(dq).join(', ')})\nSELECT ${casts.join(', ')}\nFROM ${duckReadCsv(p, names)};`);
  if (f.streaming) {
    const metaCasts = META.map((m) => (m.duck === 'VARCHAR' ? m.name : `CAST(${m.name} AS ${m.duck})`));
    out.push(`INSERT INTO ${ch}\nSELECT ${[...metaCasts, ...casts].join(', ')}\nFROM ${duckReadCsv(f.streaming, [...META.map((m) => m.name), ...names])};`);
  }
  return out.join('\n\n') + '\n';
}

function clickhouse(s: SchemaFile, f: WindowFiles): string {
  const t = `${bt(s.table.schema)}.${bt(s.table.name)}`;
  const ch = `${bt(s.table.schema)}.${bt(s.table.name + '_changes')}`;
  const order = s.primary_key.length ? `(${s.primary_key.map(bt).join(', ')})` : 'tuple()';
  const cols = s.columns.map((c) => `  ${bt(c.name)} ${clickhouseType(c.type, c.nullable !== false && !s.primary_key.includes(c.name))}`);
  const settings = `SETTINGS format_csv_null_representation = '', input_format_csv_empty_as_default = 0, format_csv_allow_single_quotes = 0, input_format_with_names_use_header = 1`;
  const out = [header('clickhouse', s) + '-- Reviewed, never run against ClickHouse. Types without an exact ClickHouse type are String (PostgreSQL\'s text).'];
  out.push(`CREATE TABLE ${t} (\n${cols.join(',\n')}\n) ENGINE = ReplacingMergeTree ORDER BY ${order};`);
  out.push(`CREATE TABLE ${ch} (\n${[...META.map((m) => `  ${m.name} ${m.ch}`), ...s.columns.map((c) => `  ${bt(c.name)} ${clickhouseType(c.type, true)}`)].join(',\n')}\n) ENGINE = MergeTree ORDER BY (_lsn, _seq);`);
  for (const p of f.reload) out.push(`INSERT INTO ${t} FROM INFILE ${sq(p)} COMPRESSION 'gzip' ${settings} FORMAT CSVWithNames;`);
  if (f.streaming) out.push(`INSERT INTO ${ch} FROM INFILE ${sq(f.streaming)} COMPRESSION 'gzip' ${settings} FORMAT CSVWithNames;`);
  return out.join('\n\n') + '\n';
}

function snowflake(s: SchemaFile, f: WindowFiles): string {
  const t = `${dq(s.table.schema)}.${dq(s.table.name)}`;
  const ch = `${dq(s.table.schema)}.${dq(s.table.name + '_changes')}`;
  const out = [header('snowflake', s) + '-- Reviewed, never run against Snowflake. Upload the files to a stage first (PUT file://… @pg_egress_stage).'];
  // FIELD_OPTIONALLY_ENCLOSED_BY makes "" the empty string; EMPTY_FIELD_AS_NULL makes the unquoted empty field NULL.
  out.push(`CREATE FILE FORMAT IF NOT EXISTS pg_egress_csv TYPE = CSV FIELD_DELIMITER = ',' RECORD_DELIMITER = '\\n' SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '"' ESCAPE = NONE ESCAPE_UNENCLOSED_FIELD = NONE EMPTY_FIELD_AS_NULL = TRUE NULL_IF = () COMPRESSION = GZIP ENCODING = 'UTF8';`);
  out.push(`CREATE TABLE ${t} (\n${s.columns.map((c) => `  ${dq(c.name)} ${snowflakeType(c.type)}${c.nullable === false ? ' NOT NULL' : ''}`).join(',\n')}${s.primary_key.length ? `,\n  PRIMARY KEY (${s.primary_key.map(dq).join(', ')})` : ''}\n);`);
  out.push(`CREATE TABLE ${ch} (\n${[...META.map((m) => `  ${m.name} ${m.sf}`), ...s.columns.map((c) => `  ${dq(c.name)} ${snowflakeType(c.type)}`)].join(',\n')}\n);`);
  for (const p of f.reload) out.push(`COPY INTO ${t} FROM @pg_egress_stage/${p.replace(/^\.?\//, '')} FILE_FORMAT = (FORMAT_NAME = pg_egress_csv) ON_ERROR = ABORT_STATEMENT;`);
  if (f.streaming) out.push(`COPY INTO ${ch} FROM @pg_egress_stage/${f.streaming.replace(/^\.?\//, '')} FILE_FORMAT = (FORMAT_NAME = pg_egress_csv) ON_ERROR = ABORT_STATEMENT;`);
  return out.join('\n\n') + '\n';
}

function bigquery(s: SchemaFile, f: WindowFiles): string {
  const t = `${bt(s.table.schema + '.' + s.table.name)}`;
  const ch = `${bt(s.table.schema + '.' + s.table.name + '_changes')}`;
  const opts = `format = 'CSV', skip_leading_rows = 1, allow_quoted_newlines = true, field_delimiter = ',', quote = '"', encoding = 'UTF-8', null_marker = ''`;
  const out = [
    header('bigquery', s) +
      '-- Reviewed, never run against BigQuery. Copy the files to Cloud Storage first (gs://…).\n-- Caution: BigQuery may load the quoted empty string "" as NULL in some column types; check empty strings after loading.',
  ];
  out.push(`CREATE TABLE ${t} (\n${s.columns.map((c) => `  ${bt(c.name)} ${bigqueryType(c.type)}${c.nullable === false ? ' NOT NULL' : ''}`).join(',\n')}\n);`);
  out.push(`CREATE TABLE ${ch} (\n${[...META.map((m) => `  ${m.name} ${m.bq}`), ...s.columns.map((c) => `  ${bt(c.name)} ${bigqueryType(c.type)}`)].join(',\n')}\n);`);
  for (const p of f.reload) out.push(`LOAD DATA INTO ${t} FROM FILES (${opts}, uris = ['gs://YOUR_BUCKET/${p.replace(/^\.?\//, '')}']);`);
  if (f.streaming) out.push(`LOAD DATA INTO ${ch} FROM FILES (${opts}, uris = ['gs://YOUR_BUCKET/${f.streaming.replace(/^\.?\//, '')}']);`);
  return out.join('\n\n') + '\n';
}
