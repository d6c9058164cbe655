/**
 * Column types in the targets, from schema.yml's `type` (PostgreSQL's format_type). Pure functions.
 *
 * PostgreSQL: the same type text, so COPY parses the files' values exactly as the source printed
 * them. DuckDB: the mapping below (README "Using the archive"): exact where DuckDB has the same
 * type and parses PostgreSQL's text output of it, text (VARCHAR, the value as PostgreSQL printed
 * it) elsewhere; never a lossy conversion: a value DuckDB cannot hold exactly (NaN in a
 * numeric(p,s), a BC date) stops the load with DuckDB's conversion error instead of changing.
 */

export interface DuckType {
  /** DuckDB column type. */
  type: string;
  /** SQL turning a VARCHAR expression holding PostgreSQL's text output into `type`. */
  cast(expr: string): string;
  /** Whether the value is kept exactly as PostgreSQL's text (VARCHAR). */
  text: boolean;
}

const base = (t: string): string => t.replace(/\[\]$/, '');

/** `numeric(12,2)` → [12, 2]; null for unconstrained numeric. */
function numericTypmod(t: string): [number, number] | null {
  const m = /^numeric\((\d+)(?:,\s*(-?\d+))?\)$/.exec(t);
  if (!m) return null;
  return [Number(m[1]), m[2] === undefined ? 0 : Number(m[2])];
}

const asText: DuckType = { type: 'VARCHAR', cast: (e) => e, text: true };
const simple = (type: string): DuckType => ({ type, cast: (e) => `CAST(${e} AS ${type})`, text: false });
/** PostgreSQL prints BC dates with a ` BC` suffix, which DuckDB would drop: refuse them loudly. */
const noBc = (type: string): DuckType => ({
  type,
  cast: (e) => `CASE WHEN ${e} LIKE '% BC' THEN error('a BC date/time (' || ${e} || ') cannot be stored exactly in DuckDB ${type}') ELSE CAST(${e} AS ${type}) END`,
  text: false,
});

export function duckdbType(pgType: string): DuckType {
  const t = pgType.trim();
  if (t.endsWith(']')) return asText; // arrays: PostgreSQL's array literal, as text
  switch (t) {
    case 'smallint':
      return simple('SMALLINT');
    case 'integer':
      return simple('INTEGER');
    case 'bigint':
      return simple('BIGINT');
    case 'real':
      return simple('FLOAT');
    case 'double precision':
      return simple('DOUBLE');
    case 'boolean':
      return simple('BOOLEAN');
    case 'text':
    case 'name':
    case '"char"':
      return asText;
    case 'uuid':
      return simple('UUID');
    case 'json':
    case 'jsonb':
      return simple('JSON');
    case 'bytea':
      // COPY prints bytea as \x followed by hex digits (bytea_output=hex, SPEC §2).
      return { type: 'BLOB', cast: (e) => `CASE WHEN ${e} IS NULL THEN NULL WHEN ${e} LIKE '\\x%' THEN unhex(substr(${e}, 3)) ELSE error('bytea value not in hex format') END`, text: false };
    case 'date':
      return noBc('DATE');
    case 'timestamp without time zone':
      return noBc('TIMESTAMP');
    case 'timestamp with time zone':
      return noBc('TIMESTAMPTZ');
    case 'time without time zone':
      return simple('TIME');
    case 'interval':
      return simple('INTERVAL');
  }
  if (/^character varying(\(\d+\))?$/.test(t) || /^character(\(\d+\))?$/.test(t)) return asText;
  if (/^timestamp\(\d\) without time zone$/.test(t)) return noBc('TIMESTAMP');
  if (/^timestamp\(\d\) with time zone$/.test(t)) return noBc('TIMESTAMPTZ');
  if (/^time\(\d\) without time zone$/.test(t)) return simple('TIME');
  const n = numericTypmod(base(t));
  if (n && n[0] <= 38 && n[1] >= 0 && n[1] <= n[0]) return simple(`DECIMAL(${n[0]},${n[1]})`);
  // numeric without typmod or p > 38, money, inet, ranges, enums, domains, geometry, xml, …
  return asText;
}

export type Dialect = 'postgres' | 'duckdb' | 'clickhouse' | 'snowflake' | 'bigquery';

/** ClickHouse: exact types where the text parses as is; String otherwise. */
export function clickhouseType(pgType: string, nullable: boolean): string {
  const t = pgType.trim();
  let ch = 'String';
  const n = numericTypmod(t);
  if (t === 'smallint') ch = 'Int16';
  else if (t === 'integer') ch = 'Int32';
  else if (t === 'bigint') ch = 'Int64';
  else if (t === 'real') ch = 'Float32';
  else if (t === 'double precision') ch = 'Float64';
  else if (t === 'boolean') ch = 'Bool';
  else if (t === 'uuid') ch = 'UUID';
  else if (t === 'date') ch = 'Date32';
  else if (/^timestamp(\(\d\))? with(out)? time zone$/.test(t)) ch = `DateTime64(6, 'UTC')`;
  else if (n && n[0] <= 76 && n[1] >= 0) ch = `Decimal(${n[0]}, ${n[1]})`;
  return nullable ? `Nullable(${ch})` : ch;
}

export function snowflakeType(pgType: string): string {
  const t = pgType.trim();
  const n = numericTypmod(t);
  if (t.endsWith(']')) return 'VARCHAR';
  if (t === 'smallint' || t === 'integer' || t === 'bigint') return 'NUMBER(19,0)';
  if (t === 'real' || t === 'double precision') return 'FLOAT';
  if (t === 'boolean') return 'BOOLEAN';
  if (t === 'date') return 'DATE';
  if (/^timestamp(\(\d\))? without time zone$/.test(t)) return 'TIMESTAMP_NTZ(6)';
  if (/^timestamp(\(\d\))? with time zone$/.test(t)) return 'TIMESTAMP_TZ(6)';
  if (/^time(\(\d\))? without time zone$/.test(t)) return 'TIME(6)';
  if (t === 'json' || t === 'jsonb') return 'VARIANT';
  if (n && n[0] <= 38 && n[1] >= 0) return `NUMBER(${n[0]},${n[1]})`;
  return 'VARCHAR';
}

export function bigqueryType(pgType: string): string {
  const t = pgType.trim();
  const n = numericTypmod(t);
  if (t.endsWith(']')) return 'STRING';
  if (t === 'smallint' || t === 'integer' || t === 'bigint') return 'INT64';
  if (t === 'real' || t === 'double precision') return 'FLOAT64';
  if (t === 'boolean') return 'BOOL';
  if (t === 'date') return 'DATE';
  if (/^timestamp(\(\d\))? without time zone$/.test(t)) return 'DATETIME';
  if (/^timestamp(\(\d\))? with time zone$/.test(t)) return 'TIMESTAMP';
  if (/^time(\(\d\))? without time zone$/.test(t)) return 'TIME';
  if (t === 'json' || t === 'jsonb') return 'JSON';
  if (n && n[1] >= 0 && n[1] <= 9 && n[0] - n[1] <= 29) return `NUMERIC(${n[0]}, ${n[1]})`;
  if (n && n[1] >= 0 && n[1] <= 38 && n[0] - n[1] <= 38) return `BIGNUMERIC(${n[0]}, ${n[1]})`;
  return 'STRING';
}

/** A PostgreSQL text-array literal of names (`{a,"b c"}`) → the names. */
export function parseTextArray(lit: string): string[] {
  const out: string[] = [];
  if (lit.length < 2 || lit[0] !== '{' || lit[lit.length - 1] !== '}') throw new Error(`not an array literal: ${lit}`);
  let i = 1;
  const end = lit.length - 1;
  while (i < end) {
    let s = '';
    if (lit[i] === '"') {
      i++;
      while (i < end && lit[i] !== '"') {
        if (lit[i] === '\\') i++;
        s += lit[i++];
      }
      i++;
    } else {
      while (i < end && lit[i] !== ',') s += lit[i++];
    }
    out.push(s);
    if (lit[i] === ',') i++;
  }
  return out;
}
