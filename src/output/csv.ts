/**
 * COPY-compatible CSV encoding over bytes (SPEC §4). Values arrive from pgoutput as the exact
 * UTF-8 bytes of PostgreSQL's text output; we never decode them to JS strings on the hot path.
 *
 * Quoting follows PostgreSQL's CopyAttributeOutCSV (src/backend/commands/copyto.c): a value is
 * quoted when it equals the NULL string (empty in CSV mode), contains the delimiter, the quote,
 * CR or LF, or is `\.` alone in a one-column file; quotes inside are doubled.
 * https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.4
 */

import { batchHasher, type BatchHasher } from '../proof/sha256-batch.js';

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
/** Up to this many bytes a JS byte loop copies faster than Buffer#copy (see `raw`). */
const SHORT = 64;
/** Up to this many bytes a quoted value is copied byte by byte; longer ones by runs between quotes. */
const LONG = 256;

export function needsQuote(value: Buffer, singleColumn = false): boolean {
  const n = value.length;
  if (n === 0) return true;
  if (singleColumn && n === 2 && value[0] === BACKSLASH && value[1] === DOT) return true;
  for (let i = 0; i < n; i++) {
    const c = value[i];
    if (c === COMMA || c === QUOTE || c === LF || c === CR) return true;
  }
  return false;
}

/**
 * A growable byte buffer that records are encoded into. One per open file; its contents are
 * handed to gzip in chunks of about `flushAt` bytes so memory stays bounded.
 */
export class CsvBuffer {
  private buf: Buffer;
  length = 0;

  constructor(initialSize = 128 * 1024) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private ensure(extra: number): void {
    const need = this.length + extra;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  /**
   * Room for `extra` more bytes; the buffer for a writer of its own (the addon's row encoder),
   * which writes from `length` and sets `length` after.
   */
  reserve(extra: number): Buffer {
    this.ensure(extra);
    return this.buf;
  }

  /** Bytes known to need no quoting (our own metadata: hex LSNs, digits, fixed timestamps). */
  raw(bytes: Buffer): void {
    const n = bytes.length;
    this.ensure(n);
    if (n <= SHORT) {
      // A byte loop beats Buffer#copy for short values: copy() costs a call into C++ and, for a
      // range, a new Uint8Array; this runs several times per row.
      const out = this.buf;
      let o = this.length;
      for (let i = 0; i < n; i++) out[o++] = bytes[i];
      this.length = o;
      return;
    }
    bytes.copy(this.buf, this.length);
    this.length += n;
  }

  ascii(text: string): void {
    this.ensure(text.length);
    this.length += this.buf.write(text, this.length, 'latin1');
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b;
  }

  /** A non-negative integer in decimal, without making a string of it. */
  uint(v: number): void {
    if (v < 10) {
      this.byte(0x30 + v);
      return;
    }
    let digits = 1;
    for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
    this.ensure(digits);
    const out = this.buf;
    let o = this.length + digits;
    this.length = o;
    for (let x = v; ; ) {
      const q = Math.floor(x / 10);
      out[--o] = 0x30 + (x - q * 10);
      if (q === 0) break;
      x = q;
    }
  }

  /** A non-NULL value, quoted when COPY would quote it. */
  value(bytes: Buffer, singleColumn = false): void {
    this.valueRange(bytes, 0, bytes.length, singleColumn);
  }

  /**
   * A non-NULL value given as bytes [start, end) of `src` (a span of a pgoutput message), quoted
   * when COPY would quote it. One pass for short values: bytes are copied while they are checked,
   * and only a value that turns out to need quotes is written again, quoted.
   */
  valueRange(src: Buffer, start: number, end: number, singleColumn = false): void {
    const n = end - start;
    if (n === 0 || (singleColumn && n === 2 && src[start] === BACKSLASH && src[start + 1] === DOT)) {
      this.quoted(src, start, end);
      return;
    }
    this.ensure(n);
    const out = this.buf;
    if (n <= SHORT) {
      let o = this.length;
      for (let i = start; i < end; i++) {
        const c = src[i];
        // All four specials are <= ',' (0x2c): one compare for most bytes.
        if (c <= COMMA && (c === COMMA || c === QUOTE || c === LF || c === CR)) {
          this.quoted(src, start, end);
          return;
        }
        out[o++] = c;
      }
      this.length = o;
      return;
    }
    for (let i = start; i < end; i++) {
      const c = src[i];
      if (c <= COMMA && (c === COMMA || c === QUOTE || c === LF || c === CR)) {
        this.quoted(src, start, end);
        return;
      }
    }
    src.copy(out, this.length, start, end);
    this.length += n;
  }

  /** `"` + bytes [start, end) of `src` with `"` doubled + `"`. */
  private quoted(src: Buffer, start: number, end: number): void {
    const n = end - start;
    // Worst case every byte is a quote: 2n + 2.
    this.ensure(n * 2 + 2);
    const out = this.buf;
    let o = this.length;
    out[o++] = QUOTE;
    if (n <= LONG) {
      for (let i = start; i < end; i++) {
        const c = src[i];
        out[o++] = c;
        if (c === QUOTE) out[o++] = QUOTE;
      }
    } else {
      let from = start;
      for (let q = src.indexOf(QUOTE, from); q >= 0 && q < end; q = src.indexOf(QUOTE, from)) {
        o += src.copy(out, o, from, q + 1);
        out[o++] = QUOTE;
        from = q + 1;
      }
      o += src.copy(out, o, from, end);
    }
    out[o++] = QUOTE;
    this.length = o;
  }

  /** A non-NULL string value (names, DDL text); encoded as UTF-8 then quoted like a value. */
  text(value: string, singleColumn = false): void {
    this.value(Buffer.from(value, 'utf8'), singleColumn);
  }

  /** The backing buffer (bytes [0, length) are written): valid until the next write. */
  get bytes(): Buffer {
    return this.buf;
  }

  /** Bytes [start, end) as written so far, without a copy: valid until the next write. */
  view(start: number, end: number): Buffer {
    return this.buf.subarray(start, end);
  }

  /**
   * Hands the encoded bytes to `consume` without a copy, then empties the buffer: for a consumer
   * that copies them before it returns (the native deflate), not for one that keeps them.
   */
  drainTo<T>(consume: (bytes: Buffer) => T): T {
    const r = consume(this.buf.subarray(0, this.length));
    this.length = 0;
    return r;
  }

  /** Removes and returns the encoded bytes (a copy, so the buffer can be reused at once). */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.buf.copy(out, 0, 0, this.length);
    this.length = 0;
    return out;
  }
}

/** The CSV header line for the given column names, as COPY (FORMAT csv, HEADER) prints it. */
export function headerLine(names: readonly string[]): Buffer {
  const b = new CsvBuffer(256);
  names.forEach((name, i) => {
    if (i > 0) b.byte(COMMA);
    b.text(name, names.length === 1);
  });
  b.byte(LF);
  return b.take();
}

/**
 * A PostgreSQL text-array literal of names, e.g. `{body,"my col"}` (used for `_unchanged`).
 * Element quoting follows array_out: quote when empty, when it contains `{}",\` or white space,
 * or when it reads NULL (case-insensitive). https://www.postgresql.org/docs/15/arrays.html#ARRAYS-IO
 */
export function textArrayLiteral(items: readonly string[]): string {
  const parts = items.map((s) => {
    if (s === '' || /[{}",\\\s]/.test(s) || s.toUpperCase() === 'NULL') {
      return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
    }
    return s;
  });
  return '{' + parts.join(',') + '}';
}

/**
 * Finds the records in a stream of CSV bytes (RFC 4180 with COPY's conventions; quoted fields may
 * hold LFs), fed in chunks split anywhere: each complete record is passed to `onRange` as
 * `buf[start..end)`, its exact bytes without the terminating LF, so that Merkle leaves can be
 * computed from it without a Buffer per record. The boundaries come from one native scan per chunk
 * where the addon is built (proof/sha256-batch.ts), else a loop over the bytes.
 */
export class CsvRecordRanges {
  private readonly state = new Int32Array(1);
  private ends = new Uint32Array(64 * 1024);
  /** Bytes of a record that began in an earlier chunk. */
  private pending: Buffer[] = [];
  private pendingLen = 0;

  constructor(
    private readonly onRange: (buf: Buffer, start: number, end: number) => void,
    private readonly recordEnds: BatchHasher['recordEnds'] = batchHasher.recordEnds,
  ) {}

  push(chunk: Buffer): void {
    if (this.ends.length < chunk.length) this.ends = new Uint32Array(chunk.length);
    const n = this.recordEnds(chunk, this.state, this.ends);
    let start = 0;
    for (let i = 0; i < n; i++) {
      const end = this.ends[i];
      if (this.pendingLen > 0) {
        const rec = Buffer.concat([...this.pending, chunk.subarray(start, end)]);
        this.pending = [];
        this.pendingLen = 0;
        this.onRange(rec, 0, rec.length);
      } else {
        this.onRange(chunk, start, end);
      }
      start = end + 1;
    }
    if (start < chunk.length) {
      // Copy: callers may reuse their chunk buffers.
      const rest = Buffer.from(chunk.subarray(start));
      this.pending.push(rest);
      this.pendingLen += rest.length;
    }
  }

  /** Call at end of input; a trailing record without LF is an error (COPY always ends with LF). */
  end(): void {
    if (this.pendingLen > 0 || this.state[0] !== 0) throw new Error('CSV input ends inside a record');
  }
}

/**
 * CsvRecordRanges with each record as a Buffer of its own. Used to remap rows when a table's
 * columns change inside a window, by `verify`, and by tests.
 */
export class CsvRecordSplitter {
  private readonly ranges: CsvRecordRanges;

  constructor(onRecord: (record: Buffer) => void) {
    this.ranges = new CsvRecordRanges((buf, start, end) => onRecord(buf.subarray(start, end)));
  }

  push(chunk: Buffer): void {
    this.ranges.push(chunk);
  }

  end(): void {
    this.ranges.end();
  }
}

/** Parses one record into fields: `null` for NULL (empty unquoted), Buffer otherwise. */
export function parseRecord(record: Buffer): (Buffer | null)[] {
  const fields: (Buffer | null)[] = [];
  let i = 0;
  const n = record.length;
  for (;;) {
    if (i < n && record[i] === QUOTE) {
      // Quoted field: collect until the closing quote, un-doubling quotes.
      const parts: Buffer[] = [];
      let start = i + 1;
      let j = start;
      for (;;) {
        if (j >= n) throw new Error('unterminated quoted CSV field');
        if (record[j] === QUOTE) {
          if (j + 1 < n && record[j + 1] === QUOTE) {
            parts.push(record.subarray(start, j + 1));
            j += 2;
            start = j;
            continue;
          }
          parts.push(record.subarray(start, j));
          j++;
          break;
        }
        j++;
      }
      fields.push(parts.length === 1 ? parts[0] : Buffer.concat(parts));
      i = j;
    } else {
      let j = i;
      while (j < n && record[j] !== COMMA) j++;
      fields.push(j === i ? null : record.subarray(i, j));
      i = j;
    }
    if (i >= n) break;
    if (record[i] !== COMMA) throw new Error(`malformed CSV record at byte ${i}`);
    i++;
    if (i === n) {
      fields.push(null);
      break;
    }
  }
  return fields;
}
