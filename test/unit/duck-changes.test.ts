/**
 * Streaming files applied by DuckDB itself (duck-changes.ts, engine-duckdb.ts applyStreamingFile)
 * against the stager (stager.ts + applyBatch) on the same rows, into real DuckDB tables: the two
 * must leave the same table for every rule (B rows, a TRUNCATE, identity changes, the last version
 * of a key, NULL versus "", a column the file lacks, S and the as-of point). A file with
 * `_unchanged` columns is left to the stager.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SchemaColumn } from '../../src/archive/catalog.js';
import { openDuckdb, type DuckEngine } from '../../src/archive/engine-duckdb.js';
import type { QName } from '../../src/archive/engine.js';
import { parseAsOf, rowBefore, type AsOf } from '../../src/archive/plan.js';
import { recordFields } from '../../src/archive/record-text.js';
import { Stager } from '../../src/archive/stager.js';
import type { VerifiedFile } from '../../src/archive/verified-reader.js';

const cols: SchemaColumn[] = [
  { name: 'id', type: 'integer' },
  { name: 'v', type: 'text' },
  { name: 'n', type: 'numeric(12,2)' },
  { name: 'extra', type: 'text' },
] as SchemaColumn[];
const header = ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged', 'id', 'v', 'n'];
const lsn = (i: number) => i.toString(16).toUpperCase().padStart(16, '0');
const ts = (i: number) => `2026-11-30 06:00:${String(i).padStart(2, '0')}.000001+00`;
const line = (l: number, seq: number, op: string, unch: string, id: string, v: string, n: string) => [lsn(l), seq, 7, ts(l), op, unch, id, v, n].join(',');

// Before S (0x10): ignored. Then inserts, updates, "" vs NULL, a delete, an identity change with a
// before image (D, B, U), a TRUNCATE, rows after it, and rows past the as-of points.
const rows = [
  line(0x08, 0, 'I', '', '99', 'before-S', '1.00'),
  line(0x10, 0, 'I', '', '1', 'a', '1.10'),
  line(0x10, 1, 'I', '', '2', '""', ''),
  line(0x10, 2, 'I', '', '3', '', '3.30'),
  line(0x11, 0, 'U', '', '1', 'a2', '1.11'),
  line(0x11, 1, 'D', '', '2', '', ''),
  line(0x12, 0, 'D', '', '3', '', ''),
  line(0x12, 1, 'B', '', '3', '', '3.30'),
  line(0x12, 2, 'U', '', '30', '"x,""y"""', '30.30'),
  line(0x13, 0, 'I', '', '4', 'd', '4.40'),
  line(0x14, 0, 'T', '', '', '', ''),
  line(0x15, 0, 'I', '', '5', 'e', '5.50'),
  line(0x15, 1, 'I', '', '6', 'f', '6.60'),
  line(0x16, 0, 'U', '', '5', 'e2', '5.51'),
  line(0x16, 1, 'D', '', '6', '', ''),
  line(0x17, 0, 'I', '', '7', '""', ''),
  line(0x18, 0, 'I', '', '8', 'h', '8.80'),
];

let dir: string;
let duck: DuckEngine;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'duck-changes-'));
  duck = await openDuckdb(path.join(dir, 'x.duckdb'), { sqlChanges: true });
});
afterAll(async () => {
  await duck.close();
  rmSync(dir, { recursive: true, force: true });
});

function fileOf(name: string, lines: string[]): VerifiedFile {
  const p = path.join(dir, name);
  writeFileSync(p, [header.join(','), ...lines].join('\n') + '\n');
  const bytes = readFileSync(p);
  return {
    label: p,
    localPath: p,
    rows: lines.length,
    longestRecord: Math.max(...bytes.toString().split('\n').map((l) => l.length + 1)),
    async *chunks() {
      yield bytes;
    },
    finish() {},
  };
}

async function viaStager(t: QName, lines: string[], S: string, asOf: AsOf) {
  const s = new Stager(duck, t, cols, ['id']);
  for (const l of lines) {
    const buf = Buffer.from(l);
    const f = recordFields(buf, 0, buf.length);
    if (f[0]! < S || !rowBefore(asOf, f[0]!, f[3]!)) continue;
    await s.add(f, header, buf.length);
  }
  await s.flush();
  return s.applied;
}

const dump = async (t: QName) => (await duck.query(`SELECT id, v, CAST(n AS VARCHAR) AS n, extra FROM "${t.schema}"."${t.table}" ORDER BY id`)).map((r) => JSON.stringify(r));

describe('streaming files applied by DuckDB (set-based) equal the stager', () => {
  for (const [label, asOfText] of [['latest', undefined], ['as of an LSN', '0/16'], ['as of a time', '2026-11-30T06:00:23.000001Z']] as const) {
    it(label, async () => {
      const asOf = parseAsOf(asOfText);
      const S = lsn(0x10);
      const a: QName = { schema: 'main', table: `sql_${label.replace(/\W/g, '_')}` };
      const b: QName = { schema: 'main', table: `node_${label.replace(/\W/g, '_')}` };
      for (const t of [a, b]) {
        await duck.createTable(t, cols, ['id']);
        // A row from before, which the TRUNCATE must remove.
        await duck.query(`INSERT INTO "${t.schema}"."${t.table}" VALUES (100, 'old', 1.00, 'kept?')`);
      }
      const n = await duck.applyStreamingFile!(a, cols, ['id'], fileOf(`${a.table}.csv`, rows), { S, asOf });
      const m = await viaStager(b, rows, S, asOf);
      expect(n).toBe(m);
      const got = await dump(a);
      expect(got).toEqual(await dump(b));
      expect(got.length).toBeGreaterThan(0);
    });
  }

  it('without a TRUNCATE the target’s other rows stay; an identity change moves the row; "" stays ""', async () => {
    const t: QName = { schema: 'main', table: 'no_truncate' };
    await duck.createTable(t, cols, ['id']);
    await duck.query(`INSERT INTO main.no_truncate VALUES (100, 'old', 1.00, 'kept')`);
    const part = rows.slice(0, 10);
    expect(await duck.applyStreamingFile!(t, cols, ['id'], fileOf('nt.csv', part), { S: lsn(0x10), asOf: parseAsOf(undefined) })).toBe(9 - 1);
    expect(await dump(t)).toEqual(
      [
        { id: 1, v: 'a2', n: '1.11', extra: null },
        { id: 4, v: 'd', n: '4.40', extra: null },
        { id: 30, v: 'x,"y"', n: '30.30', extra: null },
        { id: 100, v: 'old', n: '1.00', extra: 'kept' },
      ].map((r) => JSON.stringify(r)),
    );
    const empty = (await duck.query(`SELECT v FROM main.no_truncate WHERE id = 2`)).length;
    expect(empty).toBe(0);
  });

  const toastRows = [
    line(0x10, 0, 'I', '', '1', 'a', '1.00'),
    line(0x11, 0, 'U', '{v}', '1', '', '1.01'),
    line(0x11, 1, 'U', '"{v,n}"', '1', '', ''),
    line(0x12, 0, 'U', '{v}', '2', '', '2.02'),
    line(0x12, 1, 'U', '{v}', '2', '', '2.03'),
    line(0x13, 0, 'U', '{n}', '3', 'c', ''),
    line(0x13, 1, 'I', '', '4', 'd', '4.00'),
    line(0x14, 0, 'D', '', '4', '', ''),
    line(0x15, 0, 'I', '', '4', '""', '4.10'),
    line(0x15, 1, 'U', '{v}', '4', '', '4.11'),
  ];
  const withTruncate = [...toastRows, line(0x16, 0, 'T', '', '', '', ''), line(0x17, 0, 'U', '{v}', '1', '', '9.99'), line(0x17, 1, 'I', '', '5', 'e', '5.00'), line(0x17, 2, 'U', '{v}', '5', '', '5.01')];
  for (const [label, lines] of [['unchanged TOAST values', toastRows], ['unchanged TOAST values after a TRUNCATE', withTruncate]] as const) {
    it(`${label}: from the key's earlier rows, else the target's row, as the stager does`, async () => {
      const a: QName = { schema: 'main', table: `sql_${label.replace(/\W/g, '_')}` };
      const b: QName = { schema: 'main', table: `node_${label.replace(/\W/g, '_')}` };
      for (const t of [a, b]) {
        await duck.createTable(t, cols, ['id']);
        await duck.query(`INSERT INTO "${t.schema}"."${t.table}" VALUES (2, 'two', 2.00, 'x'), (3, 'three', 3.00, NULL), (1, 'gone', 0, NULL)`);
      }
      const n = await duck.applyStreamingFile!(a, cols, ['id'], fileOf(`${a.table}.csv`, lines), { S: '', asOf: parseAsOf(undefined) });
      expect(n).toBe(await viaStager(b, lines, '', parseAsOf(undefined)));
      const got = await dump(a);
      expect(got).toEqual(await dump(b));
      // The stager's result, spelled out: values carried through two updates, from the target, "" kept.
      if (lines === toastRows) {
        expect(got).toEqual(
          [
            { id: 1, v: 'a', n: '1.01', extra: null },
            { id: 2, v: 'two', n: '2.03', extra: null },
            { id: 3, v: 'c', n: '3.00', extra: null },
            { id: 4, v: '', n: '4.11', extra: null },
          ].map((r) => JSON.stringify(r)),
        );
      } else expect(got).toEqual([{ id: 1, v: null, n: '9.99', extra: null }, { id: 5, v: 'e', n: '5.01', extra: null }].map((r) => JSON.stringify(r)));
    });
  }

  it('leaves unchanged TOAST columns next to a possible identity change (D then U in one transaction) to the stager', async () => {
    const t: QName = { schema: 'main', table: 'toast' };
    await duck.createTable(t, cols, ['id']);
    const f = fileOf('toast.csv', [line(0x10, 0, 'I', '', '1', 'a', '1.00'), line(0x11, 0, 'D', '', '1', '', ''), line(0x11, 1, 'U', '{v}', '2', '', '2.00')]);
    expect(await duck.applyStreamingFile!(t, cols, ['id'], f, { S: '', asOf: parseAsOf(undefined) })).toBeNull();
    expect(await dump(t)).toEqual([]);
  });
});
