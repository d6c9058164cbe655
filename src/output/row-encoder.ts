/**
 * The streaming row format (SPEC §4): what a change becomes in `streaming.csv.gz`. Pure functions
 * that write one CSV record straight into the file's buffer:
 *
 *   _lsn,_seq,_xid,_commit_ts,_op,_unchanged,<the table's columns in table order>
 *
 * - Values are spans of the pgoutput message (src/wal/pgoutput.ts), copied into the CSV without a
 *   view, a string or a promise per value: a row costs no allocation unless it has unchanged TOAST.
 * - An unchanged TOAST value (pgoutput 'u': the update did not touch it) is filled from the old row
 *   when it is known (REPLICA IDENTITY FULL), otherwise left empty and named in `_unchanged`.
 * - An update that changes the row's identity is a D of the old identity then the U (`updateRows`);
 *   with output.before_images an update or delete that carries the old row writes it as a B row.
 * - A T row (TRUNCATE, or the boundary written where a table's rows end: dropped or renamed away)
 *   carries no values.
 */
import type { CsvBuffer } from './csv.js';
import { textArrayLiteral } from './csv.js';
import { SPAN_TOAST, UNCHANGED_TOAST, type Tuple, type TupleValue } from '../wal/pgoutput.js';
import { nativeEncodeInserts, nativeEncodeRow, type NativeEncodeInserts, type NativeEncodeRow } from './deflate.js';

const COMMA = 0x2c;
const LF = 0x0a;

/** `_op` bytes. */
export const OP = { I: 0x49, U: 0x55, D: 0x44, T: 0x54, B: 0x42 } as const;
/** `_op` byte to its letter, without a string made per row. */
export const OP_NAME: Record<number, string> = Object.fromEntries(Object.values(OP).map((b) => [b, String.fromCharCode(b)]));

/** The fields of a transaction shared by each of its rows, encoded once per transaction. */
export interface RowPrefix {
  /** `<_lsn>,` */
  lsnField: Buffer;
  /** `,<_xid>,<_commit_ts>,` */
  midField: Buffer;
}

/** A table's output layout: which tuple columns are written, and their names. */
export interface RowLayout {
  /** Indexes into the tuple of the columns written (exclusions and generated columns removed). */
  outIdx: readonly number[];
  /** The same indexes for the addon's encoder (made once per Relation message). */
  outIdx32?: Int32Array;
  outNames: readonly string[];
}

/**
 * Writes one row with values (I, U, D, B). `fill` gives values for unchanged TOAST columns when known.
 * The addon writes a row without unchanged TOAST in one call (native/csv_row.c: the same bytes;
 * the byte loops below were ~160 ms of S2's ~0.8 s main thread); this function writes the rest,
 * and every row when the addon is not there (PG_EGRESS_NATIVE=0).
 */
export function encodeRow(
  b: CsvBuffer,
  p: RowPrefix,
  seq: number,
  op: number,
  layout: RowLayout,
  tuple: Tuple | null,
  fill: Tuple | null,
  native: NativeEncodeRow | null = nativeEncodeRow,
): void {
  if (native && tuple && tuple.at >= 0 && !fill && layout.outIdx32) {
    const src = tuple.buf;
    // Room for the worst case (every value byte a quote), so the addon never runs out of it.
    const out = b.reserve(p.lsnField.length + p.midField.length + 24 + 2 * (src.length - tuple.at) + 3 * layout.outIdx32.length);
    const end = native(out, b.length, p.lsnField, seq, p.midField, op, src, tuple.at, layout.outIdx32);
    if (end >= 0) {
      b.length = end;
      return;
    }
    // -2: an unchanged TOAST value, named in _unchanged below.
  }
  b.raw(p.lsnField);
  b.uint(seq);
  b.raw(p.midField);
  b.byte(op);
  b.byte(COMMA);
  const idx = layout.outIdx;
  if (!tuple) {
    for (let i = 0; i < idx.length; i++) b.byte(COMMA);
    b.byte(LF);
    return;
  }
  const spans = tuple.spans;
  const src = tuple.buf;
  let unchanged: string[] | null = null;
  for (let i = 0; i < idx.length; i++) {
    if (spans[2 * idx[i]] === SPAN_TOAST && !(fill && fill.spans[2 * idx[i]] >= 0)) {
      (unchanged ??= []).push(layout.outNames[i]);
    }
  }
  if (unchanged) b.text(textArrayLiteral(unchanged));
  for (let i = 0; i < idx.length; i++) {
    b.byte(COMMA);
    const j = 2 * idx[i];
    const start = spans[j];
    // NULL, a column past the tuple's end, and unchanged TOAST without a value to fill: empty.
    if (start >= 0) b.valueRange(src, start, spans[j + 1]);
    else if (start === SPAN_TOAST && fill && fill.spans[j] >= 0) b.valueRange(fill.buf, fill.spans[j], fill.spans[j + 1]);
  }
  b.byte(LF);
}

/** Room asked of the buffer for a run of rows beyond the point where the run stops. */
const RUN_ROOM = 64 * 1024;
const runResult = new Float64Array(2);

/**
 * Writes a run of Inserts into one table, as a streamed transaction's spool holds them
 * (src/batch/streamed.ts), with the addon in one call: the same bytes as encodeRow for each, `_seq`
 * counting up from `seq`. Stops before the first record that is not a whole Insert into `relOid`
 * within `spool[..to)` or that encodeRow would not write natively, and after the row that takes the
 * buffer to `stopAt` bytes. Returns the rows written and where the next record starts (`from`
 * and 0 rows: the caller decodes that record the ordinary way). Null without the addon.
 */
export function encodeInsertRun(
  b: CsvBuffer,
  p: RowPrefix,
  seq: number,
  layout: RowLayout,
  relOid: number,
  spool: Buffer,
  from: number,
  to: number,
  stopAt: number,
  native: NativeEncodeInserts | null = nativeEncodeInserts,
): { rows: number; next: number } | null {
  if (!native || !layout.outIdx32) return null;
  const out = b.reserve(Math.max(0, stopAt - b.length) + RUN_ROOM);
  const rows = native(out, b.length, p.lsnField, seq, p.midField, spool, from, to, relOid, layout.outIdx32, stopAt, runResult);
  if (rows === 0) return { rows, next: from };
  b.length = runResult[0];
  return { rows, next: runResult[1] };
}

/** Writes a row without values (T) for a file of `columns` data columns. */
export function encodeEmptyRow(b: CsvBuffer, p: RowPrefix, seq: number, op: number, columns: number): void {
  b.raw(p.lsnField);
  b.uint(seq);
  b.raw(p.midField);
  b.byte(op);
  b.byte(COMMA);
  for (let i = 0; i < columns; i++) b.byte(COMMA);
  b.byte(LF);
}

/** `updateRows` bits: write a D of the old identity first; write the old row as a B row. */
export const UPDATE_D = 1;
export const UPDATE_B = 2;

/**
 * Which rows an update makes besides its U. pgoutput sends the old key ('K') only when key columns
 * changed; under FULL it sends the whole old row ('O') always, and the primary key is compared
 * here (no primary key known: every update changes identity).
 */
export function updateRows(
  pkIdx: readonly number[] | null,
  keyTuple: Tuple | null,
  oldTuple: Tuple | null,
  newTuple: Tuple,
  beforeImages: boolean,
): number {
  let identityChanged = keyTuple !== null;
  if (oldTuple) identityChanged = pkIdx === null || pkIdx.some((i) => !sameValue(oldTuple.value(i), newTuple.value(i)));
  return (identityChanged ? UPDATE_D : 0) | (oldTuple && beforeImages ? UPDATE_B : 0);
}

function sameValue(a: TupleValue, b: TupleValue): boolean {
  if (b === UNCHANGED_TOAST || a === UNCHANGED_TOAST) return true;
  if (a === null || b === null) return a === b;
  return a.equals(b);
}
