/**
 * The pure parts of exports under DDL: which tables a DDL changed between the export's snapshot
 * and its lock (src/reload/race.ts), and what a failed export reports (src/reload/export-errors.ts).
 */
import { describe, expect, it } from 'vitest';
import { racedTables, type TableShape } from '../../src/reload/race.js';
import { exportError, workerErrors } from '../../src/reload/export-errors.js';
import { parseConfig } from '../../src/config/index.js';

const cfg = parseConfig('source:\n  url: postgres://egress@127.0.0.1:5432/shop\n', { env: {}, baseDir: '/tmp' });
const shape = (over: Partial<TableShape> = {}): TableShape => ({ relid: '100', schema: 'public', table: 't', storage: '16400', columns: '1:id:23:-1:false:,2:v:25:-1:false:', ...over });
const t = { relid: 100, schema: 'public', table: 't' };

describe('racedTables', () => {
  it('finds nothing when the snapshot and the committed catalog agree', () => {
    expect(racedTables([t], [shape()], [shape()])).toEqual([]);
  });

  it('names a rewrite or TRUNCATE (new relfilenode), also of a partition below a partitioned table', () => {
    expect(racedTables([t], [shape()], [shape({ storage: '16500' })])).toEqual([{ table: 'public.t', what: 'the table was rewritten or truncated (new relfilenode)' }]);
    expect(racedTables([t], [shape({ storage: '0 101:16401 102:16402' })], [shape({ storage: '0 101:16401 102:16600' })])).toHaveLength(1);
  });

  it('names added, dropped and retyped columns', () => {
    expect(racedTables([t], [shape()], [shape({ columns: '1:id:23:-1:false:,2:v:25:-1:false:,3:z:23:-1:false:' })])[0].what).toMatch(/columns changed/);
    expect(racedTables([t], [shape()], [shape({ columns: '1:id:23:-1:false:,2:........pg.dropped.2........:0:-1:true:' })])[0].what).toMatch(/columns changed/);
    expect(racedTables([t], [shape()], [shape({ columns: '1:id:20:-1:false:,2:v:25:-1:false:' })])[0].what).toMatch(/columns changed/);
  });

  it('names a table dropped, renamed, or created after the snapshot', () => {
    expect(racedTables([t], [shape()], [])[0].what).toBe('the table was dropped');
    expect(racedTables([t], [], [shape()])[0].what).toBe('the table did not exist yet at the snapshot');
    expect(racedTables([t], [shape()], [shape({ table: 'u' })])[0].what).toBe('the table was renamed to public.u');
  });
});

describe('export errors', () => {
  it('a lock timeout, a vanished table or column are tried again; other errors are not', () => {
    expect(exportError(Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' }), cfg)).toMatchObject({ code: 'RELOAD_BLOCKED', retryable: true });
    expect(exportError(Object.assign(new Error('column "d" does not exist'), { code: '42703' }), cfg)).toMatchObject({ code: 'RELOAD_RACE', retryable: true });
    expect(exportError(Object.assign(new Error('relation "t" does not exist'), { code: '42P01' }), cfg)).toMatchObject({ code: 'RELOAD_RACE', retryable: true });
    expect(exportError(Object.assign(new Error('permission denied for table t'), { code: '42501' }), cfg)).toMatchObject({ retryable: false });
  });

  it("reports every worker's error, not only the first; retried only when all are retryable", () => {
    const a = Object.assign(new Error('column "d" does not exist'), { code: '42703' });
    const b = Object.assign(new Error('permission denied for table t'), { code: '42501' });
    const one = workerErrors([a], cfg);
    expect(one.code).toBe('RELOAD_RACE');
    const two = workerErrors([a, b], cfg);
    expect(two.message).toMatch(/^2 export workers failed: \(1\) .*column "d" does not exist.*; \(2\) .*permission denied for table t/);
    expect(two.retryable).toBe(false);
    expect(two.code).toBe('INSUFFICIENT_PRIVILEGE');
    const same = workerErrors([a, a], cfg);
    expect(same.message).toMatch(/^2 export workers failed: a DDL raced the export/);
    expect(same.retryable).toBe(true);
  });
});
