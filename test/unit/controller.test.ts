/**
 * The batch controller without PostgreSQL: pgoutput messages from the fixture builders
 * (test/helpers/pgoutput-fixtures.ts), a fake clock, a fake catalog and a fake flush sink that
 * finishes each window's streaming file and reads its rows back. Checks when flushes happen
 * (windows, the interval while idle, size, reload markers, shutdown) and what rows a change
 * becomes (identity changes as D+U, B rows, unchanged TOAST filled or named, T rows), and that
 * only authentic `pg-egress:*` messages count.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { BatchController, type FlushSink } from '../../src/batch/controller.js';
import type { FlushInput } from '../../src/commit/flush.js';
import { parseConfig } from '../../src/config/index.js';
import { ForgedMessages } from '../../src/ddl/message-auth.js';
import { createMetrics } from '../../src/http/metrics.js';
import { DaemonState } from '../../src/http/state.js';
import type { TableDef } from '../../src/source/setup.js';
import type { PgOutputMessage } from '../../src/wal/pgoutput.js';
import { Begin, Commit, Delete, Insert, Message, Relation, SignedMessage, Truncate, UNCHANGED_TOAST, Update } from '../helpers/pgoutput-fixtures.js';

const T0 = Date.UTC(2026, 10, 22, 10, 0, 0); // a window start (5 minutes)
const MIN = 60_000;
const OID = 16384;
const KEY = randomBytes(32);

const DEF: TableDef = {
  relid: OID,
  schema: 'public',
  table: 't',
  replicaIdentity: 'd',
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'integer', typeOid: 23, nullable: false, generated: false },
    { name: 'v', type: 'text', typeOid: 25, nullable: true, generated: false },
  ],
};
const COLS = [
  { name: 'id', typeOid: 23, key: true },
  { name: 'v', typeOid: 25 },
];

interface Flushed {
  batchId: string;
  reloads: FlushInput['reloads'];
  /** Per table: CSV rows after the header, without the _lsn,_seq,_xid,_commit_ts prefix. */
  tables: Map<string, { rows: string[]; ddl: string; schema: string; dropped: boolean }>;
}

/** A flush sink that keeps what each flush would commit. */
function fakeSink(out: Flushed[]): FlushSink {
  const seq = new Map<string, number>();
  return {
    // Per window, as the registry's next_batch_seq.
    nextBatchSeq: async (w) => {
      const n = seq.get(w) ?? 0;
      seq.set(w, n + 1);
      return n;
    },
    commit: async (x) => {
      const tables: Flushed['tables'] = new Map();
      for (const w of x.windows) {
        let rows: string[] = [];
        if (w.file && w.file.rows > 0) {
          const { tmpPath } = await w.file.finish();
          rows = gunzipSync(readFileSync(tmpPath)).toString('utf8').split('\n').slice(1, -1).map((r) => r.split(',').slice(4).join(','));
        }
        tables.set(w.table, { rows, ddl: w.ddl.join(''), schema: await x.schemaText(w, null, null), dropped: w.dropped });
      }
      out.push({ batchId: x.batchId, reloads: x.reloads, tables });
      return { batchId: x.batchId, files: [], rows: 0, tables: x.windows.map((w) => ({ schema: w.schema, table: w.table })) };
    },
  };
}

/**
 * fakeSink whose commit, once the batch is prepared (onPrepared), waits for its gate (`gates`, in
 * order), as placing and registering would; `fails()` true then: the registration fails.
 */
function gatedSink(out: Flushed[], fails: () => boolean = () => false): { gates: (() => void)[]; sink: FlushSink } {
  const gates: (() => void)[] = [];
  const inner = fakeSink(out);
  const sink: FlushSink = {
    nextBatchSeq: inner.nextBatchSeq,
    commit: async (x) => {
      const r = await inner.commit(x);
      x.onPrepared?.();
      await new Promise<void>((resolve) => gates.push(resolve));
      if (fails()) throw new Error('registry down');
      return r;
    },
  };
  return { gates, sink };
}

describe('BatchController', () => {
  let dir: string;
  let clock: number;
  let flushed: Flushed[];
  let forged: ForgedMessages;
  let noted: string[];

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'controller-'));
    // The daemon makes output.dir/_tmp before it streams.
    mkdirSync(path.join(dir, '_tmp'));
    clock = T0;
    flushed = [];
    noted = [];
    forged = new ForgedMessages(() => clock);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function controller(o: { maxRows?: number; beforeImages?: boolean; registeredLsn?: bigint; sink?: FlushSink } = {}) {
    const cfg = parseConfig(
      [
        'source:\n  url: postgres://u@h/db',
        `output:\n  dir: ${dir}\n  before_images: ${o.beforeImages ?? false}`,
        `batch:\n  interval: 5m\n  max_rows: ${o.maxRows ?? 1000}`,
      ].join('\n') + '\n',
    );
    const c = new BatchController({
      cfg,
      log: pino({ level: 'silent' }),
      sink: o.sink ?? fakeSink(flushed),
      noteTable: async (s, t) => void noted.push(`${s}.${t}`),
      anchors: [],
      server: { database: 'db', serverVersion: '15', serverVersionNum: 150000, systemIdentifier: '1' } as never,
      registeredLsn: o.registeredLsn ?? 0n,
      defs: [DEF],
      catalog: { tableDef: async () => null, typeName: async (oid) => `type${oid}` },
      messageKey: { key: KEY, createdLsn: 0n },
      forged,
      now: () => clock,
    });
    return c;
  }

  /** Feeds messages in order, awaiting each as the daemon does. */
  async function feed(c: BatchController, ...ms: PgOutputMessage[]) {
    for (const m of ms) await c.handle(m);
  }

  /** One transaction: Begin, the changes, Commit. */
  const txn = (
    lsn: bigint,
    xid: number,
    at: number,
    ...changes: PgOutputMessage[]
  ) => [Begin(lsn, xid, at), ...changes, Commit(lsn, lsn + 8n, at)];

  it('windows: a later window flushes the earlier one; the interval flushes when idle (fake clock)', async () => {
    const c = controller();
    await feed(c, Relation(OID, 'public', 't', COLS), ...txn(0x100n, 1, T0 + MIN, Insert(OID, ['1', 'a'])), ...txn(0x200n, 2, T0 + 2 * MIN, Insert(OID, ['2', 'b'])));
    expect(noted).toEqual(['public.t']);
    expect(flushed).toHaveLength(0);
    clock = T0 + 4 * MIN;
    expect(c.idleWaitMs(50, 10 * MIN)).toBe(MIN);
    expect(await c.tick()).toBe(false);
    // A transaction committed in the next window: the first window is flushed before it.
    await feed(c, ...txn(0x300n, 3, T0 + 6 * MIN, Insert(OID, ['3', 'c'])));
    expect(flushed.map((f) => f.batchId)).toEqual(['20261122T100000Z']);
    expect(flushed[0].tables.get('t')!.rows).toEqual(['I,,1,a', 'I,,2,b']);
    expect(c.durableLsn).toBe(0x208n);
    // Idle past that window's end: the interval flush.
    clock = T0 + 10 * MIN;
    expect(await c.tick()).toBe(true);
    expect(flushed.map((f) => f.batchId)).toEqual(['20261122T100000Z', '20261122T100500Z']);
    expect(c.durableLsn).toBe(0x308n);
    expect(c.hasPending()).toBe(false);
    expect(c.stats).toMatchObject({ transactions: 3, rows: 3, flushes: 2 });
  });

  it('a scrape while a flush registers in the background sees its count and its LSN together (/metrics)', async () => {
    const { gates, sink } = gatedSink(flushed);
    const c = controller({ sink });
    // The main loop sets state.registeredLsn on its own turns only: here it never runs.
    const state = new DaemonState();
    state.controller = c;
    const metrics = createMetrics(state, 'slot');
    const scrape = async (name: string) => {
      const line = (await metrics.metrics()).split('\n').find((l) => l.startsWith(`${name} `));
      return Number(line?.split(' ').pop());
    };
    await feed(c, Relation(OID, 'public', 't', COLS), ...txn(0x100n, 1, T0 + MIN, Insert(OID, ['1', 'a'])));
    await feed(c, ...txn(0x200n, 2, T0 + 6 * MIN, Insert(OID, ['2', 'b'])));
    expect([await scrape('pg_egress_flushes'), await scrape('pg_egress_registered_lsn')]).toEqual([0, 0]);
    gates[0]();
    await c.settle();
    expect([await scrape('pg_egress_flushes'), await scrape('pg_egress_registered_lsn')]).toEqual([1, 0x108]);
  });

  it('a flush returns once its batch is prepared and registers while the next rows come: one at a time, nothing confirmed before, its failure stops the next', async () => {
    // The fake sink's commit reads the windows' files (what the real one finishes and documents
    // before onPrepared), then waits for its gate, as placing and registering would.
    let fail = false;
    const { gates, sink } = gatedSink(flushed, () => fail);
    const c = controller({ sink });
    await feed(c, Relation(OID, 'public', 't', COLS), ...txn(0x100n, 1, T0 + MIN, Insert(OID, ['1', 'a'])));
    // The next window's transaction flushes the first window and goes on while it registers.
    await feed(c, ...txn(0x200n, 2, T0 + 6 * MIN, Insert(OID, ['2', 'b'])));
    expect(flushed.map((f) => f.batchId)).toEqual(['20261122T100000Z']);
    expect(gates).toHaveLength(1);
    expect(c.durableLsn).toBe(0n);
    expect(c.hasPending()).toBe(true);
    // The second window's flush waits for the first to be registered.
    clock = T0 + 11 * MIN;
    const second = c.tick();
    await new Promise((r) => setImmediate(r));
    expect(gates).toHaveLength(1);
    expect(flushed).toHaveLength(1);
    gates[0]();
    expect(await second).toBe(true);
    expect(c.durableLsn).toBe(0x108n);
    expect(flushed.map((f) => f.batchId)).toEqual(['20261122T100000Z', '20261122T100500Z']);
    expect(flushed[1].tables.get('t')!.rows).toEqual(['I,,2,b']);
    expect(c.hasPending()).toBe(true);
    // Its registration fails: the LSN stays, and the next transaction gets the error.
    fail = true;
    gates[1]();
    await expect(c.settle()).rejects.toThrow('registry down');
    expect(c.durableLsn).toBe(0x108n);
    expect(c.hasPending()).toBe(true);
    await expect(feed(c, ...txn(0x300n, 3, T0 + 12 * MIN, Insert(OID, ['3', 'c'])))).rejects.toThrow('registry down');
    expect(c.stats.flushes).toBe(1);
  });

  it('size: a commit that takes a table to batch.max_rows flushes at once, never inside a transaction', async () => {
    const c = controller({ maxRows: 2 });
    await feed(c, Relation(OID, 'public', 't', COLS), Begin(0x100n, 1, T0), Insert(OID, ['1', 'a']), Insert(OID, ['2', 'b']), Insert(OID, ['3', 'c']));
    expect(flushed).toHaveLength(0);
    await feed(c, Commit(0x100n, 0x108n, T0));
    expect(flushed).toHaveLength(1);
    expect(flushed[0].tables.get('t')!.rows).toHaveLength(3);
    await feed(c, ...txn(0x200n, 2, T0, Insert(OID, ['4', 'd'])));
    expect(flushed).toHaveLength(1);
    // Shutdown flushes what is pending; the size flush took the window's next name.
    await c.flush('shutdown');
    expect(flushed.map((f) => f.batchId)).toEqual(['20261122T100000Z', '20261122T100000Z-001']);
    expect(flushed[1].tables.get('t')!.rows).toEqual(['I,,4,d']);
  });

  it('identity changes: K → D then U; FULL compares the primary key; B rows with before_images; deletes and truncates', async () => {
    const c = controller({ beforeImages: true });
    await feed(
      c,
      Relation(OID, 'public', 't', COLS, 'f'),
      ...txn(
        0x100n,
        1,
        T0,
        Update(OID, ['2', 'a'], { kind: 'K', values: ['1', null] }),
        Update(OID, ['2', 'b'], { kind: 'O', values: ['2', 'a'] }),
        Update(OID, ['3', 'b'], { kind: 'O', values: ['2', 'b'] }),
        Delete(OID, { kind: 'O', values: ['3', 'b'] }),
        Truncate([OID]),
      ),
    );
    await c.flush('shutdown');
    expect(flushed[0].tables.get('t')!.rows).toEqual([
      'D,,1,', // the old key, then the new row
      'U,,2,a',
      'B,,2,a', // FULL, same key: the old row as B, then U
      'U,,2,b',
      'D,,2,b', // FULL, key changed: D of the old row, B, U
      'B,,2,b',
      'U,,3,b',
      'B,,3,b',
      'D,,3,b',
      'T,,,',
    ]);
  });

  it('TOAST: an unchanged value is filled from the old row, or left empty and named in _unchanged', async () => {
    const c = controller();
    const cols = [...COLS, { name: 'doc', typeOid: 25 }];
    await feed(
      c,
      Relation(OID, 'public', 't', cols, 'f'),
      ...txn(0x100n, 1, T0, Update(OID, ['1', 'x', UNCHANGED_TOAST], { kind: 'O', values: ['1', 'w', 'big'] }), Update(OID, ['1', 'y', UNCHANGED_TOAST])),
    );
    await c.flush('shutdown');
    expect(flushed[0].tables.get('t')!.rows).toEqual(['U,,1,x,big', 'U,{doc},1,y,']);
    // schema.yml names a column no definition has by its type from the catalog.
    expect(flushed[0].tables.get('t')!.schema).toContain('{name: doc, type: type25, type_oid: 25, nullable: true}');
  });

  it('transactions below the registered LSN are skipped', async () => {
    const c = controller({ registeredLsn: 0x200n });
    await feed(c, Relation(OID, 'public', 't', COLS), ...txn(0x100n, 1, T0, Insert(OID, ['1', 'a'])), ...txn(0x300n, 2, T0, Insert(OID, ['2', 'b'])));
    await c.flush('shutdown');
    expect(flushed[0].tables.get('t')!.rows).toEqual(['I,,2,b']);
    expect(c.stats).toMatchObject({ transactions: 1, skippedTransactions: 1 });
  });

  it('DDL and reload markers count only when signed for their transaction; a marker flushes after its commit', async () => {
    const c = controller();
    const ddl = { command_tag: 'ALTER TABLE', schema: 'public', table: 't', relid: OID, command: 'ALTER TABLE t ADD w int', definition: null };
    const marker = { schema: 'public', table: 't', relid: OID, reason: 'marker', request_id: 'r1' };
    await feed(
      c,
      Relation(OID, 'public', 't', COLS),
      // Forged: unsigned, and signed for another transaction. Neither is written or registered.
      ...txn(0x100n, 7, T0, Message('pg-egress:ddl', Buffer.from(JSON.stringify(ddl))), SignedMessage(KEY, 8, 'pg-egress:reload', marker)),
    );
    expect(forged.counts).toEqual(new Map([['pg-egress:ddl', 1], ['pg-egress:reload', 1]]));
    expect(flushed).toHaveLength(0);
    await feed(c, ...txn(0x200n, 9, T0, SignedMessage(KEY, 9, 'pg-egress:ddl', ddl), Insert(OID, ['1', 'a'])));
    expect(flushed).toHaveLength(0);
    await feed(c, ...txn(0x300n, 10, T0, SignedMessage(KEY, 10, 'pg-egress:reload', marker)));
    // The marker's transaction is flushed at once, with the request.
    expect(flushed).toHaveLength(1);
    expect(flushed[0].reloads).toMatchObject([{ schema: 'public', table: 't', reason: 'marker', requestedLsn: 0x300n, requestId: 'r1', restoreComment: true }]);
    const t = flushed[0].tables.get('t')!;
    expect(t.ddl).toMatch(/^-- lsn 0000000000000200 xid 9 at .*: ALTER TABLE\nALTER TABLE t ADD w int;\n$/);
    expect(t.rows).toEqual(['I,,1,a']);
    expect(forged.counts.get('pg-egress:ddl')).toBe(1);
  });

  it('a dropped table ends with a T row', async () => {
    const c = controller();
    const drop = { command_tag: 'DROP TABLE', schema: 'public', table: 't', relid: OID, command: 'DROP TABLE t', dropped: true };
    await feed(c, Relation(OID, 'public', 't', COLS), ...txn(0x100n, 1, T0, Insert(OID, ['1', 'a'])), ...txn(0x200n, 2, T0, SignedMessage(KEY, 2, 'pg-egress:ddl', drop)));
    await c.flush('shutdown');
    const t = flushed[0].tables.get('t')!;
    expect(t.rows).toEqual(['I,,1,a', 'T,,,']);
    expect(t.dropped).toBe(true);
    expect(t.ddl).toContain('DROP TABLE t;');
  });
});
