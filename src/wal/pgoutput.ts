/**
 * pgoutput protocol version 1, decoded from bytes. Text values stay bytes (spans of the input, no
 * copy, no UTF-8 decoding): the CSV encoder writes them as they are.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 *
 * Hot path (one call per row): the decoder keeps its cursor in module state instead of allocating
 * a reader per message, switches on byte values, and bounds-checks every read so that a truncated
 * or overlong message throws EgressError('PROTOCOL') instead of reading garbage. Decoding is
 * synchronous, so the shared cursor is never observed by two calls at once.
 */
import { EgressError } from '../errors.js';

export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
/** A text value as a subarray of the input message, NULL, or "unchanged TOASTed value, not sent". */
export type TupleValue = Buffer | null | typeof UNCHANGED_TOAST;

/** In `Tuple.spans`, the start of a NULL value (a text value's start is an offset, >= 0). */
export const SPAN_NULL = -1;
/** In `Tuple.spans`, the start of an unchanged TOASTed value that the server did not send. */
export const SPAN_TOAST = -2;

/**
 * One tuple's values as spans of the message: value i is bytes [spans[2i], spans[2i+1]) of
 * `buf`, or spans[2i] is SPAN_NULL or SPAN_TOAST. One array of small integers per tuple instead
 * of a Buffer view per value: this runs for every value of every change, and a view costs an
 * object (and its garbage) each. `value(i)` gives the view for code off the hot path. The array
 * is made on first use (`spans`): the addon writes most rows from `buf` and `at` alone.
 */
export class Tuple {
  private made: number[] | null;

  constructor(
    readonly buf: Buffer,
    /** null: made from the (checked) TupleData at `at` when first asked for. */
    spans: number[] | null,
    /** Where the TupleData starts in `buf` (its column count), for the addon's row encoder; -1: unknown. */
    readonly at = -1,
  ) {
    this.made = spans;
  }

  /**
   * The spans, made on first use: most rows are written by the addon from `buf` and `at`
   * (src/output/row-encoder.ts) and never need them. Without the array per row, decoding an
   * eight-column insert took 103 instead of 121 ns (a loop of 1M).
   */
  get spans(): number[] {
    return (this.made ??= spansOf(this.buf, this.at));
  }

  get length(): number {
    return this.spans.length >> 1;
  }

  /** Value i: a view of the message (no copy), null for NULL (also past the last column), or UNCHANGED_TOAST. */
  value(i: number): TupleValue {
    const s = this.spans[2 * i];
    if (s === undefined || s === SPAN_NULL) return null;
    if (s === SPAN_TOAST) return UNCHANGED_TOAST;
    return this.buf.subarray(s, this.spans[2 * i + 1]);
  }

  values(): TupleValue[] {
    const out: TupleValue[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.value(i));
    return out;
  }
}

export interface RelationColumn {
  name: string;
  typeOid: number;
  typmod: number;
  isKey: boolean;
}
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';
export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { tag: 'origin'; originLsn: bigint; originName: string }
  | { tag: 'relation'; relationOid: number; schema: string; name: string; replicaIdentity: ReplicaIdentity; columns: RelationColumn[] }
  | { tag: 'type'; typeOid: number; schema: string; name: string }
  | { tag: 'insert'; relationOid: number; newTuple: Tuple }
  | { tag: 'update'; relationOid: number; keyTuple: Tuple | null; oldTuple: Tuple | null; newTuple: Tuple }
  | { tag: 'delete'; relationOid: number; keyTuple: Tuple | null; oldTuple: Tuple | null }
  | { tag: 'truncate'; cascade: boolean; restartIdentity: boolean; relationOids: number[] }
  | { tag: 'message'; transactional: boolean; lsn: bigint; prefix: string; content: Buffer };

// Byte values of the tags and markers.
const B = 0x42, C = 0x43, D = 0x44, I = 0x49, K = 0x4b, M = 0x4d, N = 0x4e, O = 0x4f, R = 0x52, T = 0x54, U = 0x55, Y = 0x59;
const COL_NULL = 0x6e, COL_TOAST = 0x75, COL_TEXT = 0x74, COL_BINARY = 0x62;

const EMPTY = Buffer.alloc(0);
/** The buffer being decoded, where its message starts, and the cursor into it. */
let buf: Buffer = EMPTY;
let base = 0;
let pos = 0;

/** A printable form of a byte for error messages: `'N' (0x4e)`. */
function showByte(b: number): string {
  const hex = '0x' + b.toString(16).padStart(2, '0');
  return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}' (${hex})` : hex;
}

/** Offsets in messages are from the message's start, whatever buffer it sits in. */
function fail(what: string, at: number = pos): never {
  const tag = buf.length > base ? showByte(buf[base]) : '(none)';
  const len = buf.length - base;
  at -= base;
  buf = EMPTY; // do not keep the network buffer alive through the error
  throw new EgressError('PROTOCOL', `pgoutput: ${what} [message type ${tag}, offset ${at}, length ${len}]`);
}

function need(n: number, what: string): void {
  if (pos + n > buf.length) fail(`truncated ${what} (needs ${n} bytes, ${buf.length - pos} left)`);
}

function u8(what: string): number {
  if (pos >= buf.length) fail(`truncated ${what} (needs 1 byte, 0 left)`);
  return buf[pos++];
}

function i16(what: string): number {
  need(2, what);
  const v = buf.readInt16BE(pos);
  pos += 2;
  return v;
}

function i32(what: string): number {
  need(4, what);
  const v = buf.readInt32BE(pos);
  pos += 4;
  return v;
}

function u32(what: string): number {
  need(4, what);
  const v = buf.readUInt32BE(pos);
  pos += 4;
  return v;
}

function u64(what: string): bigint {
  need(8, what);
  const v = buf.readBigUInt64BE(pos);
  pos += 8;
  return v;
}

function i64(what: string): bigint {
  need(8, what);
  const v = buf.readBigInt64BE(pos);
  pos += 8;
  return v;
}

/** NUL-terminated UTF-8 string. */
function cstr(what: string): string {
  const end = buf.indexOf(0, pos);
  if (end < 0) fail(`unterminated ${what} (no NUL before the end)`);
  const s = buf.toString('utf8', pos, end);
  pos = end + 1;
  return s;
}

/** int32 length, then that many bytes, as a subarray of the input. */
function lengthPrefixed(what: string): Buffer {
  const at = pos;
  const n = i32(what);
  if (n < 0) fail(`negative ${what} length ${n}`, at);
  need(n, what);
  const v = buf.subarray(pos, pos + n);
  pos += n;
  return v;
}

/** A count field; each counted item takes at least `minBytes`, so an impossible count fails early. */
function count(n: number, minBytes: number, what: string, at: number): number {
  if (n < 0) fail(`negative ${what} ${n}`, at);
  if (n * minBytes > buf.length - pos) fail(`truncated message: ${what} ${n} needs at least ${n * minBytes} more bytes, ${buf.length - pos} left`, at);
  return n;
}

/** Checks one TupleData and moves past it; its spans are made only when asked for (Tuple.spans). */
function tupleData(): Tuple {
  const at = pos;
  const n = count(i16('tuple column count'), 1, 'tuple column count', at);
  // Inlined reads: this loop runs once per column value, so no per-value strings or closures.
  for (let i = 0; i < n; i++) {
    if (pos >= buf.length) fail(`truncated tuple: no kind byte for column ${i}`);
    const kind = buf[pos++];
    if (kind === COL_TEXT) {
      if (pos + 4 > buf.length) fail(`truncated tuple: column ${i} text length (needs 4 bytes, ${buf.length - pos} left)`);
      const len = buf.readInt32BE(pos);
      if (len < 0) fail(`negative text length ${len} in tuple column ${i}`);
      pos += 4;
      if (pos + len > buf.length) fail(`truncated tuple: column ${i} text value (needs ${len} bytes, ${buf.length - pos} left)`);
      pos += len;
    } else if (kind === COL_BINARY) fail(`binary value in tuple column ${i} (binary mode is never requested)`, pos - 1);
    else if (kind !== COL_NULL && kind !== COL_TOAST) fail(`unknown kind ${showByte(kind)} of tuple column ${i}`, pos - 1);
  }
  return new Tuple(buf, null, at);
}

/** The spans of a TupleData that tupleData() has checked. */
function spansOf(b: Buffer, at: number): number[] {
  const n = b.readInt16BE(at);
  const spans: number[] = [];
  let p = at + 2;
  for (let i = 0; i < n; i++) {
    const kind = b[p++];
    if (kind === COL_TEXT) {
      const len = b.readInt32BE(p);
      p += 4;
      spans.push(p, p + len);
      p += len;
    } else spans.push(kind === COL_NULL ? SPAN_NULL : SPAN_TOAST, 0);
  }
  return spans;
}

function expectN(): void {
  const at = pos;
  const b = u8("'N' marker");
  if (b !== N) fail(`expected 'N' (new tuple), got ${showByte(b)}`, at);
}

function replicaIdentity(): ReplicaIdentity {
  const at = pos;
  const b = u8('replica identity');
  switch (b) {
    case 0x64: // d
      return 'default';
    case 0x6e: // n
      return 'nothing';
    case 0x66: // f
      return 'full';
    case 0x69: // i
      return 'index';
    default:
      return fail(`unknown replica identity ${showByte(b)}`, at);
  }
}

function relation(): PgOutputMessage {
  const relationOid = u32('relation oid');
  const schema = cstr('namespace') || 'pg_catalog';
  const name = cstr('relation name');
  const ri = replicaIdentity();
  const at = pos;
  // Each column: flags (1) + name (>= 1 for the NUL) + type oid (4) + typmod (4).
  const n = count(i16('column count'), 10, 'column count', at);
  const columns: RelationColumn[] = [];
  for (let i = 0; i < n; i++) {
    const flags = u8('column flags');
    const colName = cstr('column name');
    const typeOid = u32('column type oid');
    const typmod = i32('column typmod');
    columns.push({ name: colName, typeOid, typmod, isKey: (flags & 1) !== 0 });
  }
  return { tag: 'relation', relationOid, schema, name, replicaIdentity: ri, columns };
}

function update(): PgOutputMessage {
  const relationOid = u32('relation oid');
  let keyTuple: Tuple | null = null;
  let oldTuple: Tuple | null = null;
  const at = pos;
  const b = u8("'K', 'O' or 'N' marker");
  if (b === K) keyTuple = tupleData();
  else if (b === O) oldTuple = tupleData();
  else if (b !== N) fail(`expected 'K', 'O' or 'N', got ${showByte(b)}`, at);
  if (b !== N) expectN();
  return { tag: 'update', relationOid, keyTuple, oldTuple, newTuple: tupleData() };
}

function del(): PgOutputMessage {
  const relationOid = u32('relation oid');
  const at = pos;
  const b = u8("'K' or 'O' marker");
  if (b === K) return { tag: 'delete', relationOid, keyTuple: tupleData(), oldTuple: null };
  if (b === O) return { tag: 'delete', relationOid, keyTuple: null, oldTuple: tupleData() };
  return fail(`expected 'K' or 'O', got ${showByte(b)}`, at);
}

function truncate(): PgOutputMessage {
  const at = pos;
  const nRaw = i32('relation count');
  const options = u8('truncate options');
  const n = count(nRaw, 4, 'relation count', at);
  const relationOids: number[] = [];
  for (let i = 0; i < n; i++) relationOids.push(u32('relation oid'));
  return { tag: 'truncate', cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0, relationOids };
}

function message(): PgOutputMessage {
  const flags = u8('message flags');
  const lsn = u64('message lsn');
  const prefix = cstr('message prefix');
  return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content: lengthPrefixed('message content') };
}

/**
 * Decodes one pgoutput (protocol version 1) message: the `data` of an XLogData frame, which is
 * `input` from `start` on (so the caller need not make a view of it). Text values in the result
 * are spans of `input` (no copy). Throws EgressError('PROTOCOL') on an unknown
 * tag, a binary column value, a truncated message, or trailing bytes.
 */
export function decodePgOutput(input: Buffer, start = 0): PgOutputMessage {
  buf = input;
  base = start;
  pos = start + 1;
  if (input.length <= start) fail('empty message', start);
  let m: PgOutputMessage;
  switch (input[start]) {
    case I: {
      const relationOid = u32('relation oid');
      expectN();
      m = { tag: 'insert', relationOid, newTuple: tupleData() };
      break;
    }
    case U:
      m = update();
      break;
    case D:
      m = del();
      break;
    case B: {
      const finalLsn = u64('final lsn');
      const commitTime = i64('commit timestamp');
      m = { tag: 'begin', finalLsn, commitTime, xid: u32('xid') };
      break;
    }
    case C: {
      const flags = u8('commit flags');
      const commitLsn = u64('commit lsn');
      const endLsn = u64('end lsn');
      m = { tag: 'commit', flags, commitLsn, endLsn, commitTime: i64('commit timestamp') };
      break;
    }
    case R:
      m = relation();
      break;
    case Y: {
      const typeOid = u32('type oid');
      const schema = cstr('type namespace');
      m = { tag: 'type', typeOid, schema, name: cstr('type name') };
      break;
    }
    case O: {
      const originLsn = u64('origin lsn');
      m = { tag: 'origin', originLsn, originName: cstr('origin name') };
      break;
    }
    case T:
      m = truncate();
      break;
    case M:
      m = message();
      break;
    default:
      fail('unknown message type', start);
  }
  if (pos !== buf.length) fail(`${buf.length - pos} unexpected trailing bytes`);
  buf = EMPTY;
  return m;
}
