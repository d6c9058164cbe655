/**
 * Values keep PostgreSQL's exact text: the data fields of streaming.csv.gz equal COPY's CSV output
 * of the same rows byte for byte, and COPY FROM of those fields reproduces the rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { from as copyFrom } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { copyOut, createEnv, listStreamingFiles, readStreamingRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';

const COLUMNS = [
  'id', 'i2', 'i4', 'i8', 'num', 'num_p', 'f4', 'f8', 'b', 't', 'vc', 'ch', 'by', 'd', 'tm', 'ttz', 'ts', 'tstz', 'iv',
  'u', 'j', 'jb', 'arr', 'arr2', 'e', 'dom', 'comp', 'ip', 'cid', 'mac', 'm', 'bt', 'vb', 'tsv', 'big',
];

const DDL = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
  CREATE TYPE pair AS (a int, b text);
  CREATE TABLE all_types (
    id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, num_p numeric(12,2), f4 float4, f8 float8,
    b bool, t text, vc varchar(20), ch char(5), by bytea, d date, tm time, ttz timetz, ts timestamp,
    tstz timestamptz, iv interval, u uuid, j json, jb jsonb, arr int[], arr2 text[], e mood, dom posint,
    comp pair, ip inet, cid cidr, mac macaddr, m money, bt bit(4), vb varbit, tsv tsvector,
    gen bigint GENERATED ALWAYS AS (i4::bigint * 2) STORED,
    big text
  );`;

const ROWS = `
  INSERT INTO all_types (id, i2, i4, i8, num, num_p, f4, f8, b, t, vc, ch, by, d, tm, ttz, ts, tstz, iv, u, j, jb, arr, arr2, e, dom, comp, ip, cid, mac, m, bt, vb, tsv, big) VALUES
  (1, -32768, 2147483647, 9223372036854775807, 'NaN', 1234567890.12, 'Infinity', '-Infinity', true,
   'comma, "quote" and
newline', 'ünïcødé €', 'ab', '\\x00ff10', '2026-11-22', '23:59:59.999999', '10:05:00.000001+05:30',
   '2026-11-22 10:05:00.123456', '2026-11-22 10:05:00.654321+02', '1 year 2 mons 3 days 04:05:06.789',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, "x"]}', '{"b": {"c": null}, "a": 1}',
   '{1,NULL,3}', '{{"a b","c,d"},{NULL,""}}', 'happy', 42, '(7,"x, y")', '192.168.0.1/24', '10.0.0.0/8',
   '08:00:2b:01:02:03', 12.34, B'1010', B'110', 'a fat cat sat on a mat', NULL),
  (2, 0, 0, 0, '-0.000001', 0, 'NaN', 'NaN', false, '', '', '', '\\x', 'infinity', '00:00', '00:00+00',
   '-infinity', 'infinity', '-1 days', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}', '{}',
   'sad', 1, '(,)', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', -0.01, B'0000', B'', '', ''),
  (3, NULL, NULL, NULL, NULL, NULL, 1.17549435e-38, 2.2250738585072014e-308, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL),
  (4, 1, 2, 3, 3.14159265358979323846264338327950288, 0.5, 3.4028235e38, 1.7976931348623157e308, true,
   '\\.', 'tab	here', 'x', '\\xdeadbeef', '1999-01-08 BC', '12:00:00', '12:00:00-08', '1970-01-01 00:00:00',
   '2000-02-29 12:34:56.000001+00', '1 mon -1 days 00:00:00.000001', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12',
   '{"k":"v"}', '{"nested":{"arr":[1,{"x":"y"}]}}', '{{1,2},{3,4}}', '{"\\"quoted\\"","back\\\\slash"}',
   'ok', 7, '(1,)', '2001:db8::1', '2001:db8::/32', '00:00:00:00:00:00', 1000000.5, B'1111', B'1',
   'postgres:1 replication:2', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g));`;

describe('value fidelity', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) => c.query(DDL));
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(ROWS));
    await waitCaughtUp(env);
    await daemon.stop();
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('writes the data fields exactly as COPY prints them', async () => {
    const { header, rows } = readStreamingRows(env.outDir, 'public.all_types');
    expect(header[0]).toEqual(['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged', ...COLUMNS]);
    expect(rows.map((r) => r.op)).toEqual(['I', 'I', 'I', 'I']);
    expect(rows.map((r) => r.seq)).toEqual([0, 1, 2, 3]);
    expect(new Set(rows.map((r) => r.lsn)).size).toBe(1);
    expect(rows[0].lsn).toMatch(/^[0-9A-F]{16}$/);
    expect(rows[0].commitTs).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$/);
    expect(rows.every((r) => r.unchanged === null)).toBe(true);
    const copy = await copyOut(env.url, `COPY (SELECT ${COLUMNS.join(', ')} FROM all_types ORDER BY id) TO STDOUT (FORMAT csv)`);
    const ours = Buffer.concat(rows.flatMap((r) => [r.dataBytes, Buffer.from('\n')]));
    expect(ours.toString('utf8')).toBe(copy.toString('utf8'));
    expect(ours.equals(copy)).toBe(true);
    // The TOASTed value arrived whole.
    expect(rows[3].values.get('big')!.length).toBe(128_000);
  });

  it('reproduces the rows exactly through COPY FROM', async () => {
    const { rows } = readStreamingRows(env.outDir, 'public.all_types');
    const data = Buffer.concat(rows.flatMap((r) => [r.dataBytes, Buffer.from('\n')]));
    await withDb(env.url, async (c) => {
      await c.query('CREATE TABLE all_types_copy (LIKE all_types INCLUDING ALL)');
      await pipeline(Readable.from([data]), c.query(copyFrom(`COPY all_types_copy (${COLUMNS.join(', ')}) FROM STDIN (FORMAT csv)`)));
      const a = await c.query<{ r: string }>('SELECT t::text AS r FROM all_types t ORDER BY id');
      const b = await c.query<{ r: string }>('SELECT t::text AS r FROM all_types_copy t ORDER BY id');
      expect(b.rows).toEqual(a.rows);
      expect(a.rows.length).toBe(4);
    });
  });

  it('describes the table in schema.yml and manifest.json', () => {
    const [file] = listStreamingFiles(env.outDir, 'public.all_types');
    const dir = path.dirname(file);
    const yml = readFileSync(path.join(dir, 'schema.yml'), 'utf8');
    expect(yml).toContain('table: {schema: public, name: all_types, oid: ');
    expect(yml).toContain('primary_key: [id]');
    expect(yml).toContain('  - {name: id, type: integer, type_oid: 23, nullable: false}');
    expect(yml).toContain('  - {name: num_p, type: "numeric(12,2)", type_oid: 1700, nullable: true}');
    expect(yml).toContain('  - {name: e, type: mood, type_oid: ');
    expect(yml).toContain('generated_columns: [gen]');
    expect(yml).toMatch(/lsn: \{start: [0-9A-F]{16}, end: [0-9A-F]{16}\}/);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.files[0]).toMatchObject({ name: 'streaming.csv.gz', rows: 4 });
    expect(manifest.files[0].sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
