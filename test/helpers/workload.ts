/**
 * A concurrent writer for crash and restart tests. Each transaction makes some changes to
 * `events` and records its xid and change count in `txlog`, so the files can be checked
 * transaction by transaction: every committed transaction exactly once, complete, in order.
 */
import pg from 'pg';
import { expect } from 'vitest';
import { rebuild, readStreamingRows, sortedEntries, sourceRows, type StreamRow } from './egress.js';

export const WORKLOAD_DDL = `
  CREATE TABLE events (id bigint PRIMARY KEY, val bigint NOT NULL, note text);
  CREATE TABLE txlog (xid bigint PRIMARY KEY, changes int NOT NULL);`;

export interface Writer {
  stop(): Promise<void>;
  committed: () => number;
  bigDone: () => number;
}

/** Small transactions continuously; every `bigEvery` transactions one with `bigRows` inserts. */
/** A small seeded PRNG (mulberry32), for schedules a failing run prints and a rerun replays. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function startWriter(
  url: string,
  /** pauseMs: a pause after each commit (0: flat out). */
  opts: { bigEvery?: number; bigRows?: number; maxBig?: number; random?: () => number; pauseMs?: number } = {},
): Writer {
  let stopping = false;
  let committed = 0;
  let big = 0;
  let nextId = 1;
  const live: number[] = [];
  const bigEvery = opts.bigEvery ?? 400;
  const bigRows = opts.bigRows ?? 100_000;
  const maxBig = opts.maxBig ?? 3;
  const random = opts.random ?? Math.random;
  const run = (async () => {
    let client: pg.Client | null = null;
    while (!stopping) {
      try {
        if (!client) {
          client = new pg.Client({ connectionString: url });
          client.on('error', () => undefined);
          await client.connect();
        }
        await client.query('BEGIN');
        let changes = 0;
        if (committed > 0 && committed % bigEvery === 0 && big < maxBig) {
          const first = nextId;
          nextId += bigRows;
          await client.query(`INSERT INTO events SELECT g, g * 2, 'bulk' FROM generate_series($1::bigint, $2::bigint) g`, [first, nextId - 1]);
          changes += bigRows;
          for (let i = first; i < nextId; i += 1000) live.push(i);
        } else {
          const n = 1 + Math.floor(random() * 5);
          for (let i = 0; i < n; i++) {
            const r = random();
            if (r < 0.5 || live.length < 10) {
              const id = nextId++;
              await client.query('INSERT INTO events VALUES ($1, $2, $3)', [id, id, `n${id}`]);
              live.push(id);
            } else if (r < 0.85) {
              const id = live[Math.floor(random() * live.length)];
              const res = await client.query('UPDATE events SET val = val + 1, note = $2 WHERE id = $1', [id, `u${committed}`]);
              if (res.rowCount !== 1) continue;
            } else {
              const k = Math.floor(random() * live.length);
              const id = live[k];
              live.splice(k, 1);
              const res = await client.query('DELETE FROM events WHERE id = $1', [id]);
              if (res.rowCount !== 1) continue;
            }
            changes++;
          }
        }
        await client.query('INSERT INTO txlog VALUES (txid_current(), $1)', [changes]);
        await client.query('COMMIT');
        committed++;
        if (changes >= bigRows) big++;
        if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
      } catch {
        // The server may be restarting: reconnect. The transaction was not committed (or was: the
        // txlog tells), either way the check below reads the truth from the source.
        await client?.end().catch(() => undefined);
        client = null;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
    },
    committed: () => committed,
    bigDone: () => big,
  };
}

/**
 * Checks the files against the source: rebuilt tables equal the source; each transaction in
 * txlog appears exactly once with exactly its changes; rows are in commit order; no (lsn, seq)
 * twice.
 */
export async function verifyWorkload(url: string, outDir: string): Promise<{ transactions: number; rows: number }> {
  const events = readStreamingRows(outDir, 'public.events').rows;
  const txlog = readStreamingRows(outDir, 'public.txlog').rows;

  const ev = rebuild(events, ['id'], ['id', 'val', 'note']);
  const srcEv = await sourceRows(url, 'events', ['id'], ['id', 'val', 'note']);
  expect(ev.size).toBe(srcEv.size);
  expect(sortedEntries(ev)).toEqual(sortedEntries(srcEv));

  const tl = rebuild(txlog, ['xid'], ['xid', 'changes']);
  const srcTl = await sourceRows(url, 'txlog', ['xid'], ['xid', 'changes']);
  expect(sortedEntries(tl)).toEqual(sortedEntries(srcTl));
  // txlog rows are only ever inserted: each committed transaction exactly once.
  expect(txlog.length).toBe(srcTl.size);

  // Each transaction's events rows: exactly the number of changes it recorded. Checked row by row
  // without an expect() per row (hundreds of thousands of them cost seconds); the first wrong
  // row is what the assertion shows.
  const perXid = new Map<string, number>();
  for (const r of events) perXid.set(r.xid, (perXid.get(r.xid) ?? 0) + 1);
  const wrongCount = txlog.find((r) => {
    const expected = Number(r.values.get('changes')!.toString());
    // An update that changes no key is one row; a key change would be two (the workload never changes keys).
    return r.values.get('xid')!.toString() !== r.xid || (perXid.get(r.xid) ?? 0) !== expected;
  });
  expect(wrongCount && { xid: wrongCount.xid, changes: wrongCount.values.get('changes')!.toString(), rows: perXid.get(wrongCount.xid) ?? 0 }).toBeUndefined();

  // Commit order across files, and no (lsn, seq) twice.
  const firstOutOfOrder = (rows: StreamRow[]): string | undefined => {
    const seen = new Set<string>();
    let prev = '';
    for (const r of rows) {
      const k = `${r.lsn}/${String(r.seq).padStart(10, '0')}`;
      if (seen.has(k)) return `${k} twice`;
      if (!(k > prev)) return `${k} after ${prev}`;
      seen.add(k);
      prev = k;
    }
    return undefined;
  };
  expect(firstOutOfOrder(events)).toBeUndefined();
  expect(firstOutOfOrder(txlog)).toBeUndefined();
  return { transactions: txlog.length, rows: events.length };
}
