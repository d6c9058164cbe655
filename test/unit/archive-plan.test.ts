/**
 * The archive reader's pure parts: the as-of point, the choice of reload set, partition
 * membership, RENAME detection, PostgreSQL → DuckDB types, text-array literals, and the stager's
 * batches (TOAST carry-over, identity changes, truncates) against a recording engine.
 */
import { describe, expect, it } from 'vitest';
import { chooseReload, columnRenames, membersAt, normTs, parseAsOf, rowBefore } from '../../src/archive/plan.js';
import { duckdbType, parseTextArray, clickhouseType, bigqueryType, snowflakeType } from '../../src/archive/types.js';
import { Stager } from '../../src/archive/stager.js';
import { recordFields, utf8Of } from '../../src/archive/record-text.js';
import { parseRecord } from '../../src/output/csv.js';
import type { Engine, StagedBatch } from '../../src/archive/engine.js';

describe('as-of point', () => {
  it('parses LSNs and times, keeping microseconds, in UTC', () => {
    expect(parseAsOf('0/177B128')).toMatchObject({ kind: 'lsn', lsn: '000000000177B128' });
    expect(parseAsOf('000000000177b128')).toMatchObject({ kind: 'lsn', lsn: '000000000177B128' });
    expect(parseAsOf('2026-11-22T10:32:07Z')).toMatchObject({ kind: 'time', ts: '2026-11-22 10:32:07.000000+00' });
    expect(parseAsOf('2026-11-22T12:32:07.123456+02:00')).toMatchObject({ kind: 'time', ts: '2026-11-22 10:32:07.123456+00' });
    expect(parseAsOf(undefined).kind).toBe('latest');
    expect(() => parseAsOf('yesterday')).toThrow(/--as-of/);
  });
  it('filters rows: LSN strictly below, commit time at or before', () => {
    const l = parseAsOf('0/100');
    expect(rowBefore(l, '00000000000000FF', '')).toBe(true);
    expect(rowBefore(l, '0000000000000100', '')).toBe(false);
    const t = parseAsOf('2026-11-22T10:32:07.5Z');
    expect(rowBefore(t, '', '2026-11-22 10:32:07.5+00')).toBe(true);
    expect(rowBefore(t, '', '2026-11-22 10:32:07.500001+00')).toBe(false);
    expect(normTs('2026-11-22 10:32:07+00')).toBe('2026-11-22 10:32:07.000000+00');
  });
  it('chooses the newest reload set at or before the point, of the table’s oid', () => {
    const c = [
      { seq: 0, lsn: '0000000000000100', takenAtMs: 1000, oid: 1 },
      { seq: 5, lsn: '0000000000000300', takenAtMs: 3000, oid: 1 },
      { seq: 9, lsn: '0000000000000500', takenAtMs: 5000, oid: 2 },
    ];
    expect(chooseReload(c, parseAsOf('0/300'), 1)?.seq).toBe(5);
    expect(chooseReload(c, parseAsOf('0/2FF'), 1)?.seq).toBe(0);
    expect(chooseReload(c, parseAsOf('0/600'), 2)?.seq).toBe(9);
    expect(chooseReload(c, parseAsOf('0/600'), 1)?.seq).toBe(5);
    expect(chooseReload(c, { kind: 'time', ts: '', ms: 2999, text: '' }, 1)?.seq).toBe(0);
    expect(chooseReload(c, parseAsOf('0/50'), 1)).toBeNull();
  });
});

describe('partition membership', () => {
  const ch = (lsn: number, kind: string, name: string, oid: string) => ({ lsn: lsn.toString(16).padStart(16, '0'), kind, schema: 'public', name, oid });
  const changes = [ch(1, 'initial', 'a', '1'), ch(1, 'initial', 'b', '2'), ch(5, 'detach', 'b', '2'), ch(7, 'attach', 'c', '3'), ch(9, 'drop', 'a', '1')];
  const at = (n: number) => membersAt(changes, (c) => c.lsn < n.toString(16).padStart(16, '0')).map((m) => m.name).sort();
  it('replays changes up to the point (initial always counts)', () => {
    expect(at(0)).toEqual(['a', 'b']);
    expect(at(5)).toEqual(['a', 'b']);
    expect(at(6)).toEqual(['a']);
    expect(at(8)).toEqual(['a', 'c']);
    expect(at(10)).toEqual(['c']);
  });
});

describe('column renames in ddl.sql', () => {
  it('finds RENAME [COLUMN] a TO b, quoted or not, and not table renames', () => {
    expect(columnRenames('ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t RENAME "My Col" TO "x""y";\nALTER TABLE t RENAME TO u;')).toEqual([
      ['a', 'b'],
      ['My Col', 'x"y'],
    ]);
    expect(columnRenames(null)).toEqual([]);
  });
});

describe('types', () => {
  it('maps PostgreSQL types to DuckDB exactly or as text', () => {
    expect(duckdbType('numeric(12,2)').type).toBe('DECIMAL(12,2)');
    expect(duckdbType('numeric(38,0)').type).toBe('DECIMAL(38,0)');
    expect(duckdbType('numeric(39,2)').type).toBe('VARCHAR');
    expect(duckdbType('numeric').type).toBe('VARCHAR');
    expect(duckdbType('timestamp with time zone').type).toBe('TIMESTAMPTZ');
    expect(duckdbType('jsonb').type).toBe('JSON');
    expect(duckdbType('bytea').type).toBe('BLOB');
    expect(duckdbType('integer[]').type).toBe('VARCHAR');
    expect(duckdbType('int4range').type).toBe('VARCHAR');
    expect(duckdbType('character varying(20)').type).toBe('VARCHAR');
    expect(duckdbType('date').cast('x')).toContain(' BC');
    expect(clickhouseType('numeric(12,2)', true)).toBe('Nullable(Decimal(12, 2))');
    expect(snowflakeType('timestamp with time zone')).toBe('TIMESTAMP_TZ(6)');
    expect(bigqueryType('numeric(40,2)')).toBe('BIGNUMERIC(40, 2)');
  });
  it('parses text-array literals', () => {
    expect(parseTextArray('{body,"my col","a\\\\b","q\\"x"}')).toEqual(['body', 'my col', 'a\\b', 'q"x']);
    expect(parseTextArray('{}')).toEqual([]);
  });
});

describe('stager', () => {
  const cols = [
    { name: 'id', type: 'integer', type_oid: 23, nullable: false },
    { name: 'v', type: 'text', type_oid: 25, nullable: true },
    { name: 'big', type: 'text', type_oid: 25, nullable: true },
  ];
  const recording = () => {
    const batches: StagedBatch[] = [];
    const engine = {
      applyBatch: async (_t: unknown, b: StagedBatch) => void batches.push({ ...b, rows: [...b.rows] }),
    } as unknown as Engine;
    return { engine, batches };
  };
  const header = ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged', 'id', 'v', 'big'];
  const rec = (lsn: string, seq: number, op: string, unch: string | null, id: string | null, v: string | null, big: string | null) =>
    [lsn, String(seq), '1', 'ts', op, unch, id, v, big].map((x) => (x === null ? null : Buffer.from(x).toString('latin1')));
  const vals = (b: StagedBatch) => b.rows.map((r) => [r.op, ...r.values.map((v) => v?.toString() ?? null), r.unresolved?.join('|') ?? null, r.lk?.map((x) => x?.toString()).join('|') ?? null]);

  it('fills unchanged TOAST values from the batch, through an identity change, else from the target', async () => {
    const { engine, batches } = recording();
    const s = new Stager(engine, { schema: 'public', table: 't' }, cols, ['id']);
    await s.add(rec('A', 0, 'I', null, '1', 'x', 'BIG'), header, 10);
    await s.add(rec('A', 1, 'U', '{big}', '1', 'y', null), header, 10);
    await s.add(rec('B', 0, 'D', null, '1', null, null), header, 10);
    await s.add(rec('B', 1, 'U', '{big}', '2', 'z', null), header, 10);
    await s.add(rec('C', 0, 'U', '{big}', '7', 'w', null), header, 10);
    await s.add(rec('C', 1, 'U', '{big}', '7', 'w2', null), header, 10);
    await s.flush();
    expect(vals(batches[0])).toEqual([
      ['I', '1', 'x', 'BIG', null, null],
      ['U', '1', 'y', 'BIG', null, null],
      ['D', '1', null, null, null, null],
      ['U', '2', 'z', 'BIG', null, null],
      ['U', '7', 'w', null, 'big', '7'],
      ['U', '7', 'w2', null, 'big', '7'],
    ]);
  });

  it('a TRUNCATE drops what is staged before it and empties the table first; B rows are skipped', async () => {
    const { engine, batches } = recording();
    const s = new Stager(engine, { schema: 'public', table: 't' }, cols, ['id']);
    await s.add(rec('A', 0, 'I', null, '1', 'x', null), header, 10);
    await s.add(rec('A', 1, 'T', null, null, null, null), header, 10);
    await s.add(rec('A', 2, 'B', null, '1', 'x', null), header, 10);
    await s.add(rec('A', 3, 'I', null, '2', 'y', null), header, 10);
    await s.flush();
    expect(batches).toHaveLength(1);
    expect(batches[0].truncateFirst).toBe(true);
    expect(vals(batches[0])).toEqual([['I', '2', 'y', null, null, null]]);
  });

  it('refuses what it cannot match instead of guessing: a keyless lone U, a D without its key', async () => {
    const { engine } = recording();
    const keyless = new Stager(engine, { schema: 'public', table: 't' }, cols, null);
    await keyless.add(rec('A', 0, 'D', null, '1', 'x', null), header, 10);
    await keyless.add(rec('A', 1, 'B', null, '1', 'x', null), header, 10);
    await keyless.add(rec('A', 2, 'U', null, '1', 'y', null), header, 10); // D, B, U: fine
    await expect(keyless.add(rec('B', 0, 'U', null, '1', 'z', null), header, 10)).rejects.toThrow(/cannot be matched.*REPLICA IDENTITY/);
    const keyed = new Stager(engine, { schema: 'public', table: 't' }, cols, ['id']);
    await expect(keyed.add(rec('C', 0, 'D', null, null, 'x', null), header, 10)).rejects.toThrow(/no value for key column\(s\) id/);
  });

  it('cuts batches by rows and matches columns by name (a column the file lacks is NULL)', async () => {
    const { engine, batches } = recording();
    const s = new Stager(engine, { schema: 'public', table: 't' }, cols, ['id'], { maxRows: 2, maxBytes: 1 << 20 });
    const h2 = ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged', 'v', 'id'];
    for (let i = 0; i < 5; i++) await s.add(['A', String(i), '1', 'ts', 'I', null, `v${i}`, String(i)].map((x) => (x === null ? null : Buffer.from(x).toString('latin1'))), h2, 10);
    await s.flush();
    expect(batches.map((b) => b.rows.length)).toEqual([2, 2, 1]);
    expect(vals(batches[2])).toEqual([['I', '4', 'v4', null, null, null]]);
  });
});

describe('recordFields (streaming records as byte strings)', () => {
  const cases = ['a,b,c', ',,', '"",x,', '"a,b","say ""hi""",""""', '1,"line\nbreak",é€😀', '"é,€",,"😀"', 'x'];
  it('splits like output/csv.ts parseRecord: NULL vs "", quotes, commas and newlines inside quotes, UTF-8 kept byte for byte', () => {
    for (const c of cases) {
      const buf = Buffer.from(`junk${c}\n`);
      const start = 4;
      const end = buf.length - 1;
      const got = recordFields(buf, start, end);
      const want = parseRecord(buf.subarray(start, end)).map((f) => (f === null ? null : f.toString('latin1')));
      expect(got, c).toEqual(want);
    }
    expect(recordFields(Buffer.from('"",,x'), 0, 5)).toEqual(['', null, 'x']);
    expect(recordFields(Buffer.from('a,'), 0, 2)).toEqual(['a', null]);
    const s = 'é€😀';
    expect(utf8Of(recordFields(Buffer.from(`"${s}"`), 0, Buffer.byteLength(s) + 2)[0]!)).toBe(s);
  });
  it('refuses malformed records', () => {
    expect(() => recordFields(Buffer.from('"abc'), 0, 4)).toThrow(/unterminated/);
    expect(() => recordFields(Buffer.from('"a"b'), 0, 4)).toThrow(/malformed/);
  });
});
