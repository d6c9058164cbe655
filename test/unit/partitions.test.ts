import { describe, expect, it } from 'vitest';
import { membershipAt, parsePartitionsYml, partitionsDoc, partitionsYml, type LeafDoc } from '../../src/output/partitions.js';
import { PartitionWindow } from '../../src/batch/partition-window.js';

const root = { schema: 'public', name: 'events', oid: 16400 };
const leaf = (name: string, oid: number, bounds: string, schema = 'public'): LeafDoc => ({ schema, name, oid, parent: { schema: 'public', name: 'events' }, bounds });
const at = new Date(Date.UTC(2026, 10, 22, 10, 5, 0));

describe('partitions.yml', () => {
  it('renders the format of SPEC §3: leaves sorted by schema and name, changes in LSN order', () => {
    const doc = partitionsDoc(
      root,
      [leaf('events_2026_03', 16420, "FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')"), leaf('events_2026_01', 16410, "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')")],
      [
        { lsn: '000000000177C000', kind: 'detach', schema: 'public', name: 'events_2026_02', oid: 16415 },
        { lsn: '000000000177B128', kind: 'attach', schema: 'public', name: 'events_2026_03', oid: 16420 },
      ],
      at,
    );
    expect(partitionsYml(doc)).toBe(
      [
        'root: {schema: public, name: events, oid: 16400}',
        'partitions:',
        `  - {schema: public, name: events_2026_01, oid: 16410, parent: {schema: public, name: events}, bounds: "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')"}`,
        `  - {schema: public, name: events_2026_03, oid: 16420, parent: {schema: public, name: events}, bounds: "FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')"}`,
        'changes:',
        '  - {lsn: 000000000177B128, kind: attach, schema: public, name: events_2026_03, oid: 16420}',
        '  - {lsn: 000000000177C000, kind: detach, schema: public, name: events_2026_02, oid: 16415}',
        'lsn: {start: 000000000177B128, end: 000000000177C000}',
        'generated_at: 2026-11-22T10:05:00.000000Z',
        '',
      ].join('\n'),
    );
  });

  it('parses back what it writes, odd names and bounds included', () => {
    const doc = partitionsDoc(
      { schema: 'My Schema', name: 'Weird "Name", x', oid: 1 },
      [{ schema: 'a.b', name: 'c: d, {e}', oid: 2, parent: { schema: 'My Schema', name: 'Weird "Name", x' }, bounds: `FOR VALUES IN ('x, y', 'it''s "q"')` }, leaf('yes', 3, 'DEFAULT')],
      [{ lsn: '0000000000000010', kind: 'initial', schema: 'a.b', name: 'c: d, {e}', oid: 2 }],
      at,
    );
    expect(parsePartitionsYml(partitionsYml(doc))).toEqual(doc);
    const empty = partitionsDoc(root, [], [], at);
    expect(partitionsYml(empty)).toContain('partitions: []\nchanges: []\nlsn: {start: null, end: null}\n');
    expect(parsePartitionsYml(partitionsYml(empty))).toEqual(empty);
  });

  it('replays membership as of an LSN: a change counts after its commit LSN, initial from the start', () => {
    const w1 = partitionsDoc(root, [], [
      { lsn: '0000000000000100', kind: 'initial', schema: 'public', name: 'p1', oid: 1 },
      { lsn: '0000000000000100', kind: 'initial', schema: 'public', name: 'p2', oid: 2 },
    ], at);
    const w2 = partitionsDoc(root, [], [
      { lsn: '0000000000000200', kind: 'detach', schema: 'public', name: 'p1', oid: 1 },
      { lsn: '0000000000000200', kind: 'attach', schema: 'public', name: 'ext', oid: 9 },
    ], at);
    const w3 = partitionsDoc(root, [], [
      { lsn: '0000000000000300', kind: 'drop', schema: 'public', name: 'p2', oid: 2 },
      { lsn: '0000000000000300', kind: 'create', schema: 'public', name: 'p3', oid: 3 },
      { lsn: '0000000000000400', kind: 'attach', schema: 'public', name: 'p1', oid: 1 },
    ], at);
    const names = (asOf: string | null) => [...membershipAt([w1, w2, w3], asOf).values()].map((t) => t.name).sort();
    expect(names('0000000000000050')).toEqual(['p1', 'p2']);
    expect(names('0000000000000200')).toEqual(['p1', 'p2']);
    expect(names('0000000000000201')).toEqual(['ext', 'p2']);
    expect(names('0000000000000301')).toEqual(['ext', 'p3']);
    expect(names(null)).toEqual(['ext', 'p1', 'p3']);
    // The windows may come in any order: the replay goes by LSN.
    expect([...membershipAt([w3, w1, w2]).keys()].sort()).toEqual([1, 3, 9]);
  });

  it('collects the messages of a window: the last leaves, every change at its commit LSN', () => {
    const w = new PartitionWindow();
    expect(w.doc(at)).toBeNull();
    const p = (name: string, oid: string) => ({ schema: 'public', name, oid, parent: { schema: 'public', name: 'events' }, bounds: 'DEFAULT' });
    w.add({ publication: 'pub', root: { ...root, oid: '16400' }, partitions: [p('a', '1'), p('b', '2')], changes: [{ kind: 'create', schema: 'public', name: 'b', oid: '2' }], command_tag: 'CREATE TABLE', command: 'CREATE TABLE b PARTITION OF events DEFAULT' }, 0x177b128n);
    w.add({ publication: 'pub', root: { ...root, oid: '16400' }, partitions: [p('b', '2')], changes: [{ kind: 'drop', schema: 'public', name: 'a', oid: '1' }], command_tag: 'DROP TABLE', command: 'DROP TABLE a' }, 0x177c000n);
    const doc = w.doc(at)!;
    expect(doc.root).toEqual(root);
    expect(doc.partitions.map((x) => [x.name, x.oid])).toEqual([['b', 2]]);
    expect(doc.changes).toEqual([
      { lsn: '000000000177B128', kind: 'create', schema: 'public', name: 'b', oid: 2 },
      { lsn: '000000000177C000', kind: 'drop', schema: 'public', name: 'a', oid: 1 },
    ]);
    expect([doc.lsnStart, doc.lsnEnd]).toEqual(['000000000177B128', '000000000177C000']);
  });
});
