/**
 * The addon's row encoder (native/csv_row.c) against the JavaScript one (src/output/row-encoder.ts
 * with the addon off, as with PG_EGRESS_NATIVE=0): the same bytes for every row, over values that
 * COPY's CSV quotes (empty, commas, quotes, CR, LF, at every place and length, around the 16-byte
 * steps of the scan), NULLs, columns left out or past the tuple's end, the old tuple of an update,
 * and large `_seq`; rows with unchanged TOAST are left to JavaScript. Rows are appended to a
 * buffer that has to grow, as a window's does.
 */
import { describe, expect, it } from 'vitest';
import { nativeEncodeRow } from '../../src/output/deflate.js';
import { CsvBuffer, parseRecord } from '../../src/output/csv.js';
import { encodeRow, OP, type RowLayout, type RowPrefix } from '../../src/output/row-encoder.js';
import { decodePgOutput, UNCHANGED_TOAST, type Tuple } from '../../src/wal/pgoutput.js';
import { Bytes } from '../helpers/bytes.js';
import { rng } from '../helpers/rng.js';

type V = string | null | typeof UNCHANGED_TOAST;

const ALPHABET = ['a', 'b', '7', ' ', ',', '"', '\n', '\r', '\\', '.', 'ü', '€', '😀', '\t', '\u0001'];

function value(r: () => number): V {
  const k = r();
  if (k < 0.08) return null;
  if (k < 0.12) return '';
  // Lengths around the scan's 16-byte steps, and long ones.
  const len = r() < 0.8 ? Math.floor(r() * 40) : Math.floor(r() * 700);
  const special = r() < 0.3;
  let s = '';
  for (let i = 0; i < len; i++) s += special ? ALPHABET[Math.floor(r() * ALPHABET.length)] : ALPHABET[Math.floor(r() * 4)];
  return s;
}

function insert(values: V[]): Tuple {
  const m = decodePgOutput(new Bytes().ch('I').uint32(1).ch('N').tuple(values).done());
  if (m.tag !== 'insert') throw new Error('not an insert');
  return m.newTuple;
}

const prefix = (lsn: string, xid: number): RowPrefix => ({
  lsnField: Buffer.from(`${lsn},`, 'latin1'),
  midField: Buffer.from(`,${xid},2026-12-04 19:40:00.123456+00,`, 'latin1'),
});

const layout = (outIdx: number[]): RowLayout => ({ outIdx, outIdx32: Int32Array.from(outIdx), outNames: outIdx.map((i) => `c${i}`) });

describe.runIf(nativeEncodeRow)('streaming rows: the addon writes the same bytes as JavaScript', () => {
  it('5,000 random rows, one growing buffer each way: byte-equal, and each record parses back to its values', () => {
    const r = rng(42);
    const js = new CsvBuffer(64);
    const nat = new CsvBuffer(64);
    const p = prefix('00000000016B3F28', 4_294_967_295);
    let seq = 0;
    for (let k = 0; k < 5000; k++) {
      const cols = 1 + Math.floor(r() * 12);
      const values = Array.from({ length: cols }, () => value(r));
      const tuple = insert(values);
      // Some columns left out (excluded, generated), some past the tuple's end (added later).
      const outIdx = Array.from({ length: cols + 1 }, (_, i) => i).filter((i) => i === cols ? r() < 0.2 : r() > 0.1);
      const l = layout(outIdx);
      const s = k === 4999 ? 2 ** 40 + 7 : seq++;
      const op = [OP.I, OP.U, OP.D, OP.B][k % 4];
      const before = nat.length;
      encodeRow(js, p, s, op, l, tuple, null, null);
      encodeRow(nat, p, s, op, l, tuple, null);
      expect(nat.length).toBe(js.length);
      // The addon wrote it (not the JavaScript below it): called directly, the same bytes.
      const room = Buffer.alloc(4 * tuple.buf.length + 200);
      const n = nativeEncodeRow!(room, 0, p.lsnField, s, p.midField, op, tuple.buf, tuple.at, l.outIdx32!);
      expect(n).toBe(nat.length - before);
      const direct = room.subarray(0, n);
      const row = nat.reserve(0).subarray(before, nat.length - 1);
      expect(direct.equals(js.reserve(0).subarray(before, js.length))).toBe(true);
      const fields = parseRecord(row);
      expect(fields.slice(6).map((f) => (f === null ? null : f.toString('utf8')))).toEqual(outIdx.map((i) => (i < cols && values[i] !== null ? values[i] : null)));
    }
    expect(nat.reserve(0).subarray(0, nat.length).equals(js.reserve(0).subarray(0, js.length))).toBe(true);
  });

  it('values of every length 0-80 made of one special byte, or with it at each place', () => {
    const js = new CsvBuffer();
    const nat = new CsvBuffer();
    const p = prefix('0', 1);
    for (const special of [',', '"', '\n', '\r', 'x']) {
      for (let n = 0; n <= 80; n++) {
        const values: V[] = [special.repeat(n)];
        for (let at = 0; at < n; at++) values.push('y'.repeat(at) + special + 'y'.repeat(n - at - 1));
        const t = insert(values);
        const l = layout(values.map((_, i) => i));
        encodeRow(js, p, n, OP.I, l, t, null, null);
        encodeRow(nat, p, n, OP.I, l, t, null);
      }
    }
    expect(nat.length).toBe(js.length);
    expect(nat.reserve(0).subarray(0, nat.length).equals(js.reserve(0).subarray(0, js.length))).toBe(true);
  });

  it("an update's old tuple (the B row), and unchanged TOAST left to JavaScript (named in _unchanged)", () => {
    const m = decodePgOutput(new Bytes().ch('U').uint32(5).ch('O').tuple(['1', 'a,"b"', null]).ch('N').tuple(['1', UNCHANGED_TOAST, 'z']).done());
    if (m.tag !== 'update' || !m.oldTuple) throw new Error('not an update with an old row');
    const p = prefix('AB', 9);
    const l = layout([0, 1, 2]);
    for (const [tuple, fill] of [[m.oldTuple, null], [m.newTuple, null], [m.newTuple, m.oldTuple]] as const) {
      const js = new CsvBuffer();
      const nat = new CsvBuffer();
      encodeRow(js, p, 3, OP.U, l, tuple, fill, null);
      encodeRow(nat, p, 3, OP.U, l, tuple, fill);
      expect(nat.reserve(0).subarray(0, nat.length).toString()).toBe(js.reserve(0).subarray(0, js.length).toString());
    }
    const b = new CsvBuffer();
    encodeRow(b, p, 3, OP.U, l, m.newTuple, null);
    expect(b.reserve(0).subarray(0, b.length).toString()).toBe('AB,3,9,2026-12-04 19:40:00.123456+00,U,{c1},1,,z\n');
    // The addon itself declines the row (-2) rather than write it without _unchanged.
    const t = m.newTuple;
    const direct = (idx: number[]) =>
      nativeEncodeRow!(Buffer.alloc(1000), 0, p.lsnField, 3, p.midField, OP.U, t.buf, t.at, Int32Array.from(idx));
    expect(direct([0, 2])).toBeGreaterThan(0);
    expect(direct([1])).toBe(-2);
  });

  it('no room is -1 (nothing written past the end); bad arguments throw', () => {
    const t = insert(['hello', 'wor,ld']);
    const p = prefix('1', 2);
    const out = Buffer.alloc(20, 0x7e);
    expect(nativeEncodeRow!(out, 0, p.lsnField, 1, p.midField, OP.I, t.buf, t.at, Int32Array.from([0, 1]))).toBe(-1);
    expect(out.equals(Buffer.alloc(20, 0x7e))).toBe(true);
    expect(() => nativeEncodeRow!(out, 0, p.lsnField, 1, p.midField, OP.I, t.buf, t.at, [0, 1] as unknown as Int32Array)).toThrow(/bad arguments/);
    expect(() => nativeEncodeRow!(out, 0, p.lsnField, 1, p.midField, OP.I, t.buf.subarray(0, t.buf.length - 1), t.at, Int32Array.from([0]))).toThrow(/bad arguments or tuple/);
  });
});
