/**
 * schema-sql for the dialects that are not run in the tests (ClickHouse, Snowflake, BigQuery):
 * the output for a fixed schema.yml equals reviewed text in test/fixtures/schema-sql/ (README
 * says these were never run against the real services). PostgreSQL and DuckDB output is run in
 * test/integration/archive-rebuild.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { schemaSql } from '../../src/archive/schema-sql.js';
import type { SchemaFile } from '../../src/archive/catalog.js';

const dir = new URL('../fixtures/schema-sql/', import.meta.url);
const schema = parseYaml(readFileSync(new URL('schema.yml', dir), 'utf8')) as SchemaFile;
const files = { reload: ['public.orders/20261122T100500Z/full_reload.csv.gz'], streaming: 'public.orders/20261122T100500Z/streaming.csv.gz' };

describe('schema-sql, reviewed text', () => {
  for (const d of ['clickhouse', 'snowflake', 'bigquery'] as const) {
    it(d, () => {
      expect(schemaSql(d, schema, files)).toBe(readFileSync(new URL(`${d}.sql`, dir), 'utf8'));
    });
  }
  it('spells out NULL versus the empty string in each dialect', () => {
    expect(schemaSql('duckdb', schema, files)).toContain('allow_quoted_nulls = false');
    expect(schemaSql('snowflake', schema, files)).toMatch(/FIELD_OPTIONALLY_ENCLOSED_BY = '"'.*EMPTY_FIELD_AS_NULL = TRUE NULL_IF = \(\)/);
    expect(schemaSql('clickhouse', schema, files)).toContain("format_csv_null_representation = ''");
  });
});
