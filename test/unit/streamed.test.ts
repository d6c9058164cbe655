/**
 * Streamed transactions (src/batch/streamed.ts) without a database: pgoutput protocol 2 frames as
 * the walsender sends them, in, and the messages the controller would be handed, out.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StreamedTxns, type ReplayHooks } from '../../src/batch/streamed.js';
import { isEgressError } from '../../src/errors.js';
import { decodePgOutput, type PgOutputMessage } from '../../src/wal/pgoutput.js';
import { isStreamControl } from '../../src/wal/streaming.js';
import { Bytes } from '../helpers/bytes.js';

const start = (xid: number, first: boolean) => new Bytes().ch('S').uint32(xid).int8(first ? 1 : 0).done();
const stop = () => new Bytes().ch('E').done();
const commit = (xid: number, lsn: bigint) => new Bytes().ch('c').uint32(xid).int8(0).uint64(lsn).uint64(lsn + 8n).int64(1000n).done();
const abort = (xid: number, subxid: number) => new Bytes().ch('A').uint32(xid).uint32(subxid).done();
const insert = (xid: number, oid: number, value: string) => new Bytes().ch('I').uint32(xid).uint32(oid).ch('N').tuple([value]).done();
const relation = (xid: number, oid: number) => new Bytes().ch('R').uint32(xid).uint32(oid).cstring('public').cstring(`t${oid}`).ch('d').int16(1).int8(1).cstring('v').uint32(25).int32(-1).done();
const origin = () => new Bytes().ch('O').uint64(77n).cstring('sub_origin').done();
const message = (xid: number, prefix: string) => new Bytes().ch('M').uint32(xid).int8(1).uint64(5n).cstring(prefix).uint32(2).raw(Buffer.from('hi')).done();

/** What the controller would see: one line per message. */
function show(m: PgOutputMessage): string {
  switch (m.tag) {
    case 'begin':
      return `begin ${m.xid} ${m.finalLsn}`;
    case 'commit':
      return `commit ${m.commitLsn} ${m.endLsn}`;
    case 'insert':
      return `insert ${m.relationOid} ${String(m.newTuple.value(0))}`;
    case 'relation':
      return `relation ${m.relationOid} ${m.schema}.${m.name}`;
    case 'message':
      return `message ${m.prefix} ${m.content.toString()}`;
    default:
      return m.tag;
  }
}

describe('streamed transactions', () => {
  let dir: string;
  let txns: StreamedTxns;
  let seen: string[];
  let betweens: number;
  const hooks: ReplayHooks = {
    handle: (m) => {
      seen.push(show(m));
      return undefined;
    },
    between: () => void betweens++,
  };
  const feed = async (...frames: Buffer[]) => {
    for (const f of frames) {
      expect(txns.inBlock() || isStreamControl(f[0])).toBe(true);
      const p = txns.take(f, 0, hooks);
      if (p) await p;
    }
  };
  const spoolFiles = () => readdirSync(dir);

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-streamed-'));
    txns = new StreamedTxns({ dir, dirMode: 0o700, log: pino({ level: 'silent' }) });
    seen = [];
    betweens = 0;
  });
  afterEach(() => {
    txns.clear();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replays two interleaved transactions at their commits, each as Begin, its changes in order, Commit; the spool files go', async () => {
    // The first block of a transaction replayed from another origin has an Origin message, without an xid.
    await feed(start(10, true), origin(), relation(10, 1), insert(10, 1, 'a1'), insert(10, 1, 'a2'), stop());
    await feed(start(11, true), relation(11, 1), insert(11, 1, 'b1'), stop());
    await feed(start(10, false), insert(10, 1, 'a3'), stop());
    expect(seen).toEqual([]);
    expect(spoolFiles().sort()).toEqual(['10.spool', '11.spool']);
    expect(txns.spooledBytes()).toBeGreaterThan(0);
    await feed(commit(11, 200n));
    expect(seen).toEqual(['begin 11 200', 'relation 1 public.t1', 'insert 1 b1', 'commit 200 208']);
    seen = [];
    await feed(commit(10, 300n));
    expect(seen).toEqual(['begin 10 300', 'relation 1 public.t1', 'insert 1 a1', 'insert 1 a2', 'insert 1 a3', 'commit 300 308']);
    expect(spoolFiles()).toEqual([]);
    expect(txns.spooledBytes()).toBe(0);
    expect(txns.stats).toMatchObject({ committed: 2, aborted: 0 });
  });

  it('leaves out the changes of aborted subtransactions but keeps their Relation messages; an aborted transaction leaves nothing', async () => {
    // 21 and its child 22 are rolled back (each gets its Stream Abort); 23 is released into 20.
    await feed(start(20, true), insert(20, 1, 'top'), relation(21, 2), insert(21, 2, 'sub'), insert(22, 1, 'child'), message(21, 'pg-egress:x'), stop());
    await feed(abort(20, 22), abort(20, 21));
    await feed(start(20, false), insert(23, 2, 'kept'), insert(20, 1, 'top2'), stop());
    await feed(start(30, true), insert(30, 1, 'never'), stop(), abort(30, 30));
    expect(spoolFiles()).toEqual(['20.spool']);
    await feed(commit(20, 400n));
    expect(seen).toEqual(['begin 20 400', 'insert 1 top', 'relation 2 public.t2', 'insert 2 kept', 'insert 1 top2', 'commit 400 408']);
    expect(txns.stats).toMatchObject({ committed: 1, aborted: 1 });
  });

  it('hands whole Inserts held in its buffer to insertRun, which may take some, none or all; not with an aborted subtransaction', async () => {
    // A hook that takes at most two Inserts of table 1 per call, decoding them itself.
    const runs: string[] = [];
    const withRuns: ReplayHooks = {
      ...hooks,
      insertRun: (relOid, sp, from, to) => {
        let next = from;
        let rows = 0;
        while (relOid === 1 && rows < 2 && to - next >= 8) {
          const len = sp.readUInt32BE(next);
          if (next + 8 + len > to || sp[next + 8] !== 0x49 || sp.readUInt32BE(next + 9) !== relOid) break;
          const m = decodePgOutput(Buffer.from(sp.subarray(next + 8, next + 8 + len)));
          if (m.tag !== 'insert') break;
          seen.push(`run ${show(m)}`);
          next += 8 + len;
          rows++;
        }
        runs.push(`${relOid}:${rows}`);
        return { next, rows, wait: rows ? Promise.resolve() : undefined };
      },
    };
    const feedRuns = async (...frames: Buffer[]) => {
      for (const f of frames) {
        const p = txns.take(f, 0, withRuns);
        if (p) await p;
      }
    };
    await feedRuns(start(70, true), relation(70, 1), insert(70, 1, 'a'), insert(70, 1, 'b'), insert(70, 1, 'c'), insert(70, 2, 'other'), message(70, 'pg-egress:x'), insert(70, 1, 'd'), stop());
    await feedRuns(commit(70, 900n));
    expect(seen).toEqual(['begin 70 900', 'relation 1 public.t1', 'run insert 1 a', 'run insert 1 b', 'run insert 1 c', 'insert 2 other', 'message pg-egress:x hi', 'run insert 1 d', 'commit 900 908']);
    expect(runs).toEqual(['1:2', '1:1', '2:0', '1:1']);
    // A rolled-back savepoint: every change goes through handle, so that its rows stay out.
    seen = [];
    runs.length = 0;
    await feedRuns(start(80, true), insert(80, 1, 'kept'), insert(81, 1, 'gone'), stop(), abort(80, 81), commit(80, 1000n));
    expect(seen).toEqual(['begin 80 1000', 'insert 1 kept', 'commit 1000 1008']);
    expect(runs).toEqual([]);
  });

  it('starts a transaction over when the server sends its first part again (after a reconnect)', async () => {
    await feed(start(40, true), insert(40, 1, 'old'), stop(), abort(40, 41));
    await feed(start(40, true), insert(40, 1, 'new'), stop(), commit(40, 500n));
    expect(seen).toEqual(['begin 40 500', 'insert 1 new', 'commit 500 508']);
  });

  it('reads back messages larger than its buffers and across its reads', async () => {
    const big = 'x'.repeat(300 * 1024); // over the 256 KiB write buffer
    const frames = [start(50, true)];
    for (let i = 0; i < 20; i++) frames.push(insert(50, 1, `${i}:${big}`));
    for (let i = 0; i < 30_000; i++) frames.push(insert(50, 1, `small ${i}`)); // many records, some cut by a 4 MiB read
    const huge = 'y'.repeat(5 * 1024 * 1024); // over the 4 MiB read buffer
    frames.push(insert(50, 1, huge), insert(50, 1, 'last'), stop(), commit(50, 600n));
    await feed(...frames);
    expect(seen.length).toBe(20 + 30_000 + 2 + 2);
    expect(seen[20 + 30_000 + 1]).toBe(`insert 1 ${huge}`);
    expect(seen[20 + 30_000 + 2]).toBe('insert 1 last');
    expect(seen[1]).toBe(`insert 1 0:${big}`);
    expect(seen[20]).toBe(`insert 1 19:${big}`);
    expect(seen[21]).toBe('insert 1 small 0');
    expect(seen[20 + 30_000]).toBe('insert 1 small 29999');
    expect(betweens).toBeGreaterThanOrEqual(2);
  });

  it('refuses what would lose changes: a continuation whose first part was missed, a commit of parts never received, nesting', async () => {
    const code = async (...frames: Buffer[]) => {
      try {
        await feed(...frames);
        return 'none';
      } catch (e) {
        return isEgressError(e) ? `${e.code}: ${e.message}` : String(e);
      }
    };
    expect(await code(start(60, false))).toMatch(/^PROTOCOL: .*first part was not received/);
    expect(await code(commit(61, 700n))).toMatch(/^PROTOCOL: .*parts were not received/);
    expect(await code(start(62, true), insert(62, 1, 'a'), start(63, true))).toMatch(/^PROTOCOL: .*inside the block of 62/);
    expect(seen).toEqual([]);
  });
});
