/**
 * Runs of spooled Inserts written by the addon in one call (encodeInsertRun, native/csv_row.c) against
 * the same records decoded one at a time and written by the JavaScript row encoder (the addon off,
 * as with PG_EGRESS_NATIVE=0): the same bytes at every place a run may stop (another table, another
 * message, a record cut by the end of what was read, the chunk's stop, a buffer without room), the
 * `_seq` going on across runs, and the records the run leaves to the caller.
 */
import { describe, expect, it } from 'vitest';
import { nativeEncodeInserts } from '../../src/output/deflate.js';
import { CsvBuffer } from '../../src/output/csv.js';
import { encodeInsertRun, encodeRow, OP, type RowLayout, type RowPrefix } from '../../src/output/row-encoder.js';
import { decodePgOutput, UNCHANGED_TOAST } from '../../src/wal/pgoutput.js';
import { Bytes } from '../helpers/bytes.js';
import { rng } from '../helpers/rng.js';

type V = string | null | typeof UNCHANGED_TOAST;

const ALPHABET = ['a', 'b', '7', ' ', ',', '"', '\n', '\r', 'ü', '😀'];

function value(r: () => number): V {
  const k = r();
  if (k < 0.1) return null;
  if (k < 0.15) return '';
  const len = r() < 0.9 ? Math.floor(r() * 30) : Math.floor(r() * 3000);
  let s = '';
  for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}

/** One spool record (src/batch/streamed.ts): u32 body length, u32 xid, the message without its xid. */
function record(xid: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.writeUInt32BE(xid, 4);
  return Buffer.concat([head, body]);
}
const insertBody = (oid: number, values: V[]) => new Bytes().ch('I').uint32(oid).ch('N').tuple(values).done();
const deleteBody = (oid: number, values: V[]) => new Bytes().ch('D').uint32(oid).ch('K').tuple(values).done();

const prefix: RowPrefix = {
  lsnField: Buffer.from('00000000016B3A28,', 'latin1'),
  midField: Buffer.from(',747,2026-12-05 09:00:00.123456+00,', 'latin1'),
};
const layout: RowLayout = { outIdx: [0, 2, 3], outIdx32: Int32Array.from([0, 2, 3]), outNames: ['a', 'c', 'd'] };

/** What the JavaScript path writes for the Inserts into `oid` among `bodies`, from `seq` on. */
function oneByOne(bodies: Buffer[], oid: number, seq: number): Buffer {
  const b = new CsvBuffer(64);
  for (const body of bodies) {
    const m = decodePgOutput(body);
    if (m.tag === 'insert' && m.relationOid === oid) encodeRow(b, prefix, seq++, OP.I, layout, m.newTuple, null, null);
  }
  return b.bytes.subarray(0, b.length);
}

describe.runIf(nativeEncodeInserts)('runs of spooled inserts: the addon writes what the row encoder writes row by row', () => {
  it('2,000 inserts among other tables and messages, read in pieces of every size the replay may hold: the same bytes, in runs', () => {
    const r = rng(7);
    const bodies: Buffer[] = [];
    for (let i = 0; i < 2000; i++) {
      // Columns 0..3, sometimes fewer (added later: past the tuple's end) and sometimes more.
      const n = r() < 0.1 ? 2 : r() < 0.1 ? 5 : 4;
      const vals = Array.from({ length: n }, () => value(r));
      const k = r();
      bodies.push(k < 0.05 ? insertBody(99, vals) : k < 0.08 ? deleteBody(1, vals) : insertBody(1, vals));
    }
    const spool = Buffer.concat(bodies.map((b, i) => record(700 + (i % 3), b)));
    const want = oneByOne(bodies, 1, 5);
    const inserts = bodies.filter((x) => x[0] === 0x49 && x.readUInt32BE(1) === 1).length;
    for (const piece of [40, 333, 4096, 65536, spool.length]) {
      for (const stopAt of [1, 200, 65536]) {
        const b = new CsvBuffer(64);
        let seq = 5;
        let runs = 0;
        // As the replay does: records whole in what is held go in runs, the others one by one.
        for (let pos = 0, held = Math.min(piece, spool.length); pos < spool.length; ) {
          const len = spool.readUInt32BE(pos);
          if (pos + 8 + len > held) {
            held = Math.min(spool.length, pos + 8 + len + piece);
            continue;
          }
          // Only table 1 is written here (the controller runs each table's inserts with its own layout).
          const ours = spool[pos + 8] === 0x49 && spool.readUInt32BE(pos + 9) === 1;
          const run = ours ? encodeInsertRun(b, prefix, seq, layout, 1, spool, pos, held, b.length + stopAt) : null;
          if (run && run.rows > 0) {
            runs++;
            expect(run.next).toBeGreaterThan(pos);
            seq += run.rows;
            pos = run.next;
            continue;
          }
          const m = decodePgOutput(spool.subarray(pos + 8, pos + 8 + len));
          if (m.tag === 'insert' && m.relationOid === 1) {
            // A run that took nothing: only at its stop or without room, never for a whole plain row.
            encodeRow(b, prefix, seq++, OP.I, layout, m.newTuple, null, null);
          }
          pos += 8 + len;
        }
        expect(Buffer.compare(b.bytes.subarray(0, b.length), want), `piece ${piece}, stop ${stopAt}`).toBe(0);
        expect(seq).toBe(5 + inserts);
        if (piece >= 4096 && stopAt === 65536) expect(runs).toBeLessThan(400);
      }
    }
  });

  it('stops at another table, another message, a record cut by `to`, and after the row that reaches stopAt', () => {
    const a = record(1, insertBody(1, ['x', null, 'y', 'z']));
    const other = record(1, insertBody(2, ['x', null, 'y', 'z']));
    const del = record(1, deleteBody(1, ['x']));
    const b = new CsvBuffer(64);
    const spool = Buffer.concat([a, a, other, a, del, a, a]);
    let r = encodeInsertRun(b, prefix, 0, layout, 1, spool, 0, spool.length, 1 << 20)!;
    expect(r).toEqual({ rows: 2, next: 2 * a.length });
    r = encodeInsertRun(b, prefix, 2, layout, 1, spool, r.next, spool.length, 1 << 20)!;
    expect(r).toEqual({ rows: 0, next: 2 * a.length }); // table 2: not this run's
    const afterDel = 3 * a.length + other.length + del.length;
    r = encodeInsertRun(b, prefix, 2, layout, 1, spool, 2 * a.length + other.length, spool.length, 1 << 20)!;
    expect(r).toEqual({ rows: 1, next: afterDel - del.length }); // then a Delete: not a run's
    r = encodeInsertRun(b, prefix, 3, layout, 1, spool, afterDel, spool.length - 1, 1 << 20)!;
    expect(r).toEqual({ rows: 1, next: afterDel + a.length }); // the last record is cut by `to`
    r = encodeInsertRun(b, prefix, 4, layout, 1, spool, afterDel, spool.length, b.length + 1)!;
    expect(r).toEqual({ rows: 1, next: afterDel + a.length }); // the first row reached stopAt
    expect(b.bytes.subarray(0, b.length).toString()).toBe(
      ['0', '1', '2', '3', '4'].map((s) => `00000000016B3A28,${s},747,2026-12-05 09:00:00.123456+00,I,,x,y,z\n`).join(''),
    );
  });

  it('leaves a row with an unchanged TOAST value, and a malformed tuple, to the JavaScript path', () => {
    const b = new CsvBuffer(64);
    const toast = record(1, insertBody(1, ['x', null, UNCHANGED_TOAST, 'z']));
    const bad = record(1, Buffer.concat([new Bytes().ch('I').uint32(1).ch('N').done(), Buffer.from([0, 4, 0x74, 0, 0, 0, 9])]));
    for (const spool of [toast, bad]) {
      expect(encodeInsertRun(b, prefix, 0, layout, 1, spool, 0, spool.length, 1 << 20)).toEqual({ rows: 0, next: 0 });
    }
    expect(b.length).toBe(0);
  });
});
