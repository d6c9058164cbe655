/**
 * rebuild on hand-made archives (test/helpers/archive-fixture.ts): a partitioned root is the union
 * of the leaves that were its partitions at the as-of point (a detached leaf's later rows are not
 * the root's, an attached leaf's are); a table dropped and created again is rebuilt from its new
 * incarnation only; a renamed column keeps its values (an unchanged TOAST value included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { readdirSync, statSync } from 'node:fs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { rebuild } from '../../src/archive/rebuild.js';
import { openDuckdb } from '../../src/archive/engine-duckdb.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { runCli } from '../helpers/egress.js';
import { L, writeArchive, type FixtureWindow } from '../helpers/archive-fixture.js';

const cols = [
  { name: 'id', type: 'integer' },
  { name: 'v', type: 'text' },
];
const w = (table: string, oid: number, extra: Partial<FixtureWindow>): FixtureWindow => ({ schema: 'public', table, oid, columns: cols, primaryKey: ['id'], ...extra });

describe('rebuild of hand-made archives', () => {
  let dir: string;
  let out: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-fixture-'));
    out = path.join(dir, 'archive');
    writeArchive(out, [
      {
        id: '20261101T000000Z',
        windows: [
          w('ev_a', 101, { reload: { lsn: L(100), rows: [['1', 'a1'], ['2', 'a2']] } }),
          w('ev_b', 102, { reload: { lsn: L(100), rows: [['10', 'b10']] } }),
          w('ev', 100, { partitions: { changes: [ { lsn: L(90), kind: 'initial', schema: 'public', name: 'ev_a', oid: 101 }, { lsn: L(90), kind: 'initial', schema: 'public', name: 'ev_b', oid: 102 } ] } }),
          w('re', 201, { reload: { lsn: L(100), rows: [['1', 'old']] } }),
          w('rn', 301, { reload: { lsn: L(100), rows: [['1', 'x']] }, columns: [ { name: 'id', type: 'integer' }, { name: 'a', type: 'text' } ] }),
          w('nan', 401, { reload: { lsn: L(100), rows: [['1', 'NaN']] }, columns: [ { name: 'id', type: 'integer' }, { name: 'amount', type: 'numeric(12,2)' } ] }),
          w('bc', 402, { reload: { lsn: L(100), rows: [['1', '0044-03-15 BC']] }, columns: [ { name: 'id', type: 'integer' }, { name: 'd', type: 'date' } ] }),
        ],
      },
      {
        id: '20261101T000001Z',
        windows: [
          w('ev_a', 101, { streaming: [[L(200), '0', 'I', null, '3', 'a3']] }),
          w('ev_b', 102, { streaming: [[L(210), '0', 'U', null, '10', 'b10x']] }),
          w('re', 201, { streaming: [[L(220), '0', 'I', null, '2', 'old2']] }),
          w('rn', 301, { streaming: [[L(230), '0', 'U', null, '1', 'y']], columns: [ { name: 'id', type: 'integer' }, { name: 'a', type: 'text' } ] }),
        ],
      },
      {
        id: '20261101T000002Z',
        windows: [
          w('ev', 100, {
            partitions: { changes: [ { lsn: L(300), kind: 'detach', schema: 'public', name: 'ev_b', oid: 102 }, { lsn: L(310), kind: 'attach', schema: 'public', name: 'ev_c', oid: 103 } ] },
            ddl: `-- lsn ${L(300)} xid 7 at 2026-11-01 00:00:30.000000+00: ALTER TABLE\nALTER TABLE ev DETACH PARTITION ev_b;\n-- lsn ${L(310)} xid 8 at 2026-11-01 00:00:35.000000+00: ALTER TABLE\nALTER TABLE ev ATTACH PARTITION ev_c FOR VALUES FROM (20) TO (30);\n`,
          }),
        ],
      },
      { id: '20261101T000002Z-001', windows: [w('ev_c', 103, { reload: { lsn: L(320), rows: [['20', 'c20']] }, generatedAt: '2026-11-01T00:00:36.000000Z' })] },
      {
        id: '20261101T000003Z',
        windows: [
          w('ev_b', 102, { streaming: [[L(400), '0', 'I', null, '11', 'b11']] }),
          w('ev_c', 103, { streaming: [[L(410), '0', 'I', null, '21', 'c21']] }),
          w('ev_a', 101, { streaming: [[L(420), '0', 'D', null, '1', null]] }),
          w('re', 202, { streaming: [[L(430), '0', 'I', null, '5', 'new5']] }),
          w('rn', 301, {
            columns: [ { name: 'id', type: 'integer' }, { name: 'b', type: 'text' } ],
            ddl: '-- lsn 00000000000001B0\nALTER TABLE rn RENAME COLUMN a TO b;\n',
            streaming: [[L(440), '0', 'U', '{b}', '1', null], [L(440), '1', 'I', null, '2', 'w']],
          }),
        ],
      },
    ]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function rows(table: string, asOf?: string): Promise<string[]> {
    const file = path.join(dir, `${table}-${(asOf ?? 'latest').replace(/[/:]/g, '_')}.csv.gz`);
    await rebuild({ tables: [`public.${table}`], from: out, asOf, into: `csv:${file}`, verify: true, progress: null });
    const lines = zlib.gunzipSync(readFileSync(file)).toString().trim().split('\n');
    return [lines[0], ...lines.slice(1).sort()];
  }

  it('a partitioned root is the union of its leaves at the as-of point', async () => {
    expect(await rows('ev', '0/FA')).toEqual(['id,v', '1,a1', '10,b10x', '2,a2', '3,a3']);
    // ev_b detached at 300; ev_c attached at 310.
    expect(await rows('ev', '0/131')).toEqual(['id,v', '1,a1', '2,a2', '3,a3']);
    // ev_b's rows after its DETACH are not the root's; ev_c's are.
    expect(await rows('ev')).toEqual(['id,v', '2,a2', '20,c20', '21,c21', '3,a3']);
    expect(await rows('ev_b')).toEqual(['id,v', '10,b10x', '11,b11']);
    // As of a time: membership changes by their commit time in the root's ddl.sql.
    expect(await rows('ev', '2026-11-01T00:00:20Z')).toEqual(['id,v', '10,b10x', '11,b11', '2,a2', '3,a3']);
    expect(await rows('ev', '2026-11-01T00:00:40Z')).toEqual(['id,v', '2,a2', '20,c20', '21,c21', '3,a3']);
  });

  it('a table dropped and created again: rows of one oid only', async () => {
    expect(await rows('re')).toEqual(['id,v', '5,new5']);
    expect(await rows('re', '0/FA')).toEqual(['id,v', '1,old', '2,old2']);
  });

  it('reads the same archive from S3 (s3rver): rebuild and load, and refuses a changed object', async () => {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const s3: S3TestServer = await startS3Server({ bucket: 'archive' });
    try {
      const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY } });
      const put = async (rel: string, body: Buffer) => void (await client.send(new PutObjectCommand({ Bucket: 'archive', Key: `egress/${rel}`, Body: body })));
      const walk = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(path.join(d, n)).isDirectory()
        ? walk(path.join(d, n))
        : [path.join(d, n)]));
      for (const f of walk(out)) await put(path.relative(out, f), readFileSync(f));
      const env = { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY };
      const s3args = ['--from', 's3://archive/egress', '--s3-endpoint', s3.endpoint];
      const file = path.join(dir, 's3-ev.csv.gz');
      const r = await runCli(['rebuild', 'public.ev', ...s3args, '--into', `csv:${file}`], { env });
      expect(r.stderr).not.toContain('pg-egress:');
      expect(r.code).toBe(0);
      expect(zlib.gunzipSync(readFileSync(file)).toString().trim().split('\n').slice(1).sort()).toEqual(['2,a2', '20,c20', '21,c21', '3,a3']);
      const duck = path.join(dir, 's3.duckdb');
      const l = await runCli(['load', ...s3args, '--into', `duckdb:${duck}`, '--tables', 'public.ev_a', 'public.rn'], { env });
      expect(l.stderr).not.toContain('pg-egress:');
      expect(l.stdout).toContain('loaded 5 batches');
      // One object changed behind the archive's back.
      const rel = 'public.ev_c/20261101T000003Z/streaming.csv.gz';
      const orig = readFileSync(path.join(out, rel));
      await put(rel, zlib.gzipSync(zlib.gunzipSync(orig).toString().replace('c21', 'c22')));
      const bad = await runCli(['rebuild', 'public.ev', ...s3args, '--into', `csv:${file}.2`], { env });
      expect(bad.code).toBe(10);
      expect(bad.stderr).toContain(`s3://archive/egress/${rel}`);
    } finally {
      await s3.stop();
    }
  });

  it('load makes a partitioned root a view of its leaves (DuckDB)', async () => {
    const duck = path.join(dir, 'load-views.duckdb');
    const r = await runCli(['load', '--from', out, '--into', `duckdb:${duck}`, '--tables', 'public.ev', 'public.ev_a', 'public.ev_b', 'public.ev_c']);
    expect(r.stderr).not.toContain('pg-egress:');
    expect(r.code).toBe(0);
    const eng = await openDuckdb(duck);
    try {
      const rows = (await eng.query(`SELECT CAST(id AS VARCHAR) || ',' || v AS r FROM public.ev ORDER BY 1`)).map((x) => String(x.r));
      expect(rows).toEqual(['2,a2', '20,c20', '21,c21', '3,a3']);
    } finally {
      await eng.close();
    }
  });

  it('a value DuckDB cannot hold exactly stops the rebuild with exit 8 naming it, never changed silently', async () => {
    const nan = await runCli(['rebuild', 'public.nan', '--from', out, '--into', `duckdb:${path.join(dir, 'nan.duckdb')}`]);
    expect(nan.code).toBe(8);
    expect(nan.stderr).toMatch(/refused the rebuild.*NaN.*DECIMAL\(12,2\)/);
    const bc = await runCli(['rebuild', 'public.bc', '--from', out, '--into', `duckdb:${path.join(dir, 'bc.duckdb')}`]);
    expect(bc.code).toBe(8);
    expect(bc.stderr).toContain('a BC date/time (0044-03-15 BC) cannot be stored exactly in DuckDB DATE');
    // As text (csv:) it is exact.
    expect(await rows('bc')).toEqual(['id,d', '1,0044-03-15 BC']);
  });

  it('a renamed column keeps its values, an unchanged TOAST value included', async () => {
    expect(await rows('rn')).toEqual(['id,b', '1,y', '2,w']);
  });
});
