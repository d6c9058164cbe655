import { describe, expect, it } from 'vitest';
import { decodePgOutput, UNCHANGED_TOAST, type PgOutputMessage, type Tuple } from '../../src/wal/pgoutput.js';
import { EgressError } from '../../src/errors.js';
import { Bytes } from '../helpers/bytes.js';

const text = (t: Tuple | null) => t && t.values().map((v) => (v === null ? null : v === UNCHANGED_TOAST ? 'TOAST' : v.toString('utf8')));
type Msg<T extends PgOutputMessage['tag']> = Extract<PgOutputMessage, { tag: T }>;
const decodeAs = <T extends PgOutputMessage['tag']>(tag: T, b: Buffer): Msg<T> => {
  const m = decodePgOutput(b);
  expect(m.tag).toBe(tag);
  return m as Msg<T>;
};

const BIG_LSN = 0xfe40_0000_0000_1235n; // > 2^53, odd: a double would lose the last bits
const BIG_TS = 2n ** 53n + 12_345n; // > 2^53 micros (~ year 2285)
const TS = 848_657_100_000_001n; // 2026-11-22 10:05:00.000001 UTC

function expectProtocolError(b: Buffer, message: RegExp): EgressError {
  let err: unknown;
  try {
    decodePgOutput(b);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EgressError);
  const e = err as EgressError;
  expect(e.code).toBe('PROTOCOL');
  expect(e.message).toMatch(/^pgoutput: /);
  expect(e.message).toMatch(message);
  return e;
}

describe('pgoutput v1: transaction framing', () => {
  it('Begin: LSN, time and xid exact above 2^53 / 2^31', () => {
    const b = new Bytes().ch('B').uint64(BIG_LSN).int64(BIG_TS).uint32(4_000_000_000).done();
    expect(b.length).toBe(21);
    expect(decodePgOutput(b)).toEqual({ tag: 'begin', finalLsn: BIG_LSN, commitTime: BIG_TS, xid: 4_000_000_000 });
  });

  it('Commit: flags, commit and end LSN, time', () => {
    const b = new Bytes().ch('C').int8(0).uint64(BIG_LSN).uint64(0xffff_ffff_ffff_fffen).int64(BIG_TS).done();
    expect(b.length).toBe(26);
    expect(decodePgOutput(b)).toEqual({ tag: 'commit', flags: 0, commitLsn: BIG_LSN, endLsn: 0xffff_ffff_ffff_fffen, commitTime: BIG_TS });
  });

  it('Commit time before 2000 stays negative (signed int64)', () => {
    const m = decodeAs('commit', new Bytes().ch('C').int8(0).uint64(1n).uint64(2n).int64(-5n).done());
    expect(m.commitTime).toBe(-5n);
  });

  it('Origin', () => {
    expect(decodePgOutput(new Bytes().ch('O').uint64(BIG_LSN).cstring('node_ä').done())).toEqual({ tag: 'origin', originLsn: BIG_LSN, originName: 'node_ä' });
  });
});

describe('pgoutput v1: Relation and Type', () => {
  it('columns, key flags, typmod, replica identity full, quoted/unicode names', () => {
    const r = decodePgOutput(
      new Bytes().ch('R').uint32(3_000_000_000).cstring('My Schema').cstring('Weird "Name", x').ch('f').int16(3)
        .int8(1).cstring('id').uint32(20).int32(-1)
        .int8(0).cstring('amount').uint32(1700).int32(786438)
        .int8(0).cstring('Größe "x", y\n').uint32(25).int32(-1)
        .done(),
    );
    expect(r).toEqual({
      tag: 'relation',
      relationOid: 3_000_000_000,
      schema: 'My Schema',
      name: 'Weird "Name", x',
      replicaIdentity: 'full',
      columns: [
        { name: 'id', typeOid: 20, typmod: -1, isKey: true },
        { name: 'amount', typeOid: 1700, typmod: 786438, isKey: false },
        { name: 'Größe "x", y\n', typeOid: 25, typmod: -1, isKey: false },
      ],
    });
  });

  it("empty namespace means pg_catalog; every replica identity", () => {
    const rel = (ri: string) => new Bytes().ch('R').uint32(1).cstring('').cstring('t').ch(ri).int16(0).done();
    const d = decodeAs('relation', rel('d'));
    expect(d.schema).toBe('pg_catalog');
    expect(d.columns).toEqual([]);
    expect(d.replicaIdentity).toBe('default');
    expect(decodeAs('relation', rel('n')).replicaIdentity).toBe('nothing');
    expect(decodeAs('relation', rel('f')).replicaIdentity).toBe('full');
    expect(decodeAs('relation', rel('i')).replicaIdentity).toBe('index');
    expectProtocolError(rel('x'), /unknown replica identity 'x'/);
  });

  it('Type', () => {
    expect(decodePgOutput(new Bytes().ch('Y').uint32(70000).cstring('public').cstring('mood').done())).toEqual({
      tag: 'type',
      typeOid: 70000,
      schema: 'public',
      name: 'mood',
    });
  });
});

describe('pgoutput v1: row changes', () => {
  it('Insert: NULL, unchanged TOAST, empty text, UTF-8, CSV specials as exact byte slices of the input', () => {
    const values: (string | null | typeof UNCHANGED_TOAST)[] = ['1', null, UNCHANGED_TOAST, '', 'ünï€ 😀 日本', 'a,b "q" ""\nline2\r\n,', '\u0000\u0001'];
    const before = new Bytes().ch('I').uint32(16390).ch('N').int16(values.length);
    const buf = new Bytes().ch('I').uint32(16390).ch('N').tuple(values).done();
    const m = decodeAs('insert', buf);
    expect(m.relationOid).toBe(16390);
    expect(text(m.newTuple)).toEqual(['1', null, 'TOAST', '', 'ünï€ 😀 日本', 'a,b "q" ""\nline2\r\n,', '\u0000\u0001']);
    expect(m.newTuple.value(1)).toBeNull();
    expect(m.newTuple.value(2)).toBe(UNCHANGED_TOAST);
    expect(m.newTuple.length).toBe(values.length);
    expect(m.newTuple.value(values.length)).toBeNull();

    // Walk the input to find each text value's bytes and compare them with the decoded Buffer.
    let at = before.length;
    for (let i = 0; i < values.length; i++) {
      const kind = String.fromCharCode(buf[at++]);
      if (kind !== 't') continue;
      const len = buf.readInt32BE(at);
      at += 4;
      const v = m.newTuple.value(i) as Buffer;
      expect([m.newTuple.spans[2 * i], m.newTuple.spans[2 * i + 1]]).toEqual([at, at + len]);
      expect(Buffer.isBuffer(v)).toBe(true);
      expect(v.equals(buf.subarray(at, at + len))).toBe(true);
      // A view into the message, not a copy.
      expect(v.buffer).toBe(buf.buffer);
      expect(v.byteOffset).toBe(buf.byteOffset + at);
      at += len;
    }
    expect(at).toBe(buf.length);
    expect((m.newTuple.value(3) as Buffer).length).toBe(0);
    expect(m.newTuple.buf).toBe(buf);
  });

  it('Insert with zero columns', () => {
    const m = decodeAs('insert', new Bytes().ch('I').uint32(7).ch('N').tuple([]).done());
    expect([m.relationOid, m.newTuple.length, m.newTuple.values()]).toEqual([7, 0, []]);
  });

  it("Update with old key ('K')", () => {
    const m = decodeAs('update', new Bytes().ch('U').uint32(5).ch('K').tuple(['2', null]).ch('N').tuple(['20', 'b']).done());
    expect(m.relationOid).toBe(5);
    expect(text(m.keyTuple)).toEqual(['2', null]);
    expect(m.oldTuple).toBeNull();
    expect(text(m.newTuple)).toEqual(['20', 'b']);
  });

  it("Update with old row ('O')", () => {
    const m = decodeAs('update', new Bytes().ch('U').uint32(5).ch('O').tuple(['1', 'a', UNCHANGED_TOAST]).ch('N').tuple(['1', 'b', UNCHANGED_TOAST]).done());
    expect(m.keyTuple).toBeNull();
    expect(text(m.oldTuple)).toEqual(['1', 'a', 'TOAST']);
    expect(text(m.newTuple)).toEqual(['1', 'b', 'TOAST']);
  });

  it('Update with neither old key nor old row', () => {
    const m = decodeAs('update', new Bytes().ch('U').uint32(5).ch('N').tuple(['1', UNCHANGED_TOAST]).done());
    expect(m.keyTuple).toBeNull();
    expect(m.oldTuple).toBeNull();
    expect(text(m.newTuple)).toEqual(['1', 'TOAST']);
  });

  it("Update without the 'N' after the old tuple fails", () => {
    expectProtocolError(new Bytes().ch('U').uint32(5).ch('K').tuple(['1']).ch('K').tuple(['1']).done(), /expected 'N'.*got 'K'/);
    expectProtocolError(new Bytes().ch('U').uint32(5).ch('X').tuple(['1']).done(), /expected 'K', 'O' or 'N', got 'X'/);
  });

  it("Delete with 'K' and with 'O'", () => {
    const k = decodeAs('delete', new Bytes().ch('D').uint32(5).ch('K').tuple(['3', null]).done());
    expect([k.relationOid, text(k.keyTuple), k.oldTuple]).toEqual([5, ['3', null], null]);
    const o = decodeAs('delete', new Bytes().ch('D').uint32(5).ch('O').tuple(['3', 'c', null]).done());
    expect([o.relationOid, o.keyTuple, text(o.oldTuple)]).toEqual([5, null, ['3', 'c', null]]);
    expectProtocolError(new Bytes().ch('D').uint32(5).ch('N').tuple(['3']).done(), /expected 'K' or 'O', got 'N'/);
  });

  it('Truncate: options bits and relation oids', () => {
    const t = (options: number, oids: number[]) => new Bytes().ch('T').int32(oids.length).int8(options).raw(Buffer.concat(oids.map((o) => new Bytes().uint32(o).done()))).done();
    expect(decodePgOutput(t(0, [10]))).toEqual({ tag: 'truncate', cascade: false, restartIdentity: false, relationOids: [10] });
    expect(decodePgOutput(t(1, [10, 11]))).toEqual({ tag: 'truncate', cascade: true, restartIdentity: false, relationOids: [10, 11] });
    expect(decodePgOutput(t(2, [4_000_000_000]))).toEqual({ tag: 'truncate', cascade: false, restartIdentity: true, relationOids: [4_000_000_000] });
    expect(decodePgOutput(t(3, [1, 2, 3]))).toEqual({ tag: 'truncate', cascade: true, restartIdentity: true, relationOids: [1, 2, 3] });
  });
});

describe('pgoutput v1: logical decoding messages', () => {
  it('transactional', () => {
    const body = Buffer.from('{"x":"ü,\\n"}\n');
    const m = decodeAs('message', new Bytes().ch('M').int8(1).uint64(BIG_LSN).cstring('pg-egress:ddl').int32(body.length).raw(body).done());
    expect(m).toEqual({ tag: 'message', transactional: true, lsn: BIG_LSN, prefix: 'pg-egress:ddl', content: body });
  });

  it('non-transactional, empty and binary content', () => {
    const m = decodeAs('message', new Bytes().ch('M').int8(0).uint64(78n).cstring('p').int32(0).done());
    expect(m).toEqual({ tag: 'message', transactional: false, lsn: 78n, prefix: 'p', content: Buffer.alloc(0) });
    const bin = Buffer.from([0, 0xff, 0, 1]);
    expect(decodeAs('message', new Bytes().ch('M').int8(0).uint64(1n).cstring('').int32(4).raw(bin).done()).content).toEqual(bin);
  });
});

describe('pgoutput v1: malformed input', () => {
  const insert = new Bytes().ch('I').uint32(1).ch('N').tuple(['hello', 'world']).done();

  it('unknown tag', () => {
    expectProtocolError(new Bytes().ch('Z').uint32(1).done(), /unknown message type.*'Z' \(0x5a\)/);
    expectProtocolError(Buffer.from([0x00]), /unknown message type.*0x00/);
    // Protocol v2+ stream messages are not part of v1.
    expectProtocolError(new Bytes().ch('S').uint32(1).int8(1).done(), /unknown message type.*'S'/);
  });

  it('empty message', () => {
    expectProtocolError(Buffer.alloc(0), /empty message/);
  });

  it("binary column value ('b')", () => {
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('N').int16(2).ch('n').ch('b').int32(1).int8(0).done(), /binary value in tuple column 1.*offset 9/);
  });

  it('unknown column kind', () => {
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('N').int16(1).ch('x').done(), /unknown kind 'x'/);
  });

  it('every truncation of a valid message fails, never reads past the end', () => {
    for (let cut = 1; cut < insert.length; cut++) {
      expectProtocolError(insert.subarray(0, cut), /truncated/);
    }
  });

  it('truncated in the middle of a text value, with bytes after the slice in the same memory', () => {
    // The subarray's underlying memory continues; the decoder must respect the view's length.
    const cut = insert.length - 3;
    const e = expectProtocolError(insert.subarray(0, cut), /truncated tuple: column 1 text value \(needs 5 bytes, 2 left\)/);
    expect(e.message).toContain(`length ${cut}`);
  });

  it('truncated string with no NUL', () => {
    expectProtocolError(new Bytes().ch('O').uint64(1n).raw(Buffer.from('no-nul')).done(), /unterminated origin name/);
    expectProtocolError(new Bytes().ch('R').uint32(1).cstring('public').raw(Buffer.from('tbl')).done(), /unterminated relation name/);
  });

  it('NUL beyond the end of the view is not used', () => {
    const whole = new Bytes().ch('Y').uint32(1).cstring('public').cstring('mood').done();
    expectProtocolError(whole.subarray(0, whole.length - 1), /unterminated type name/);
  });

  it('overlong message: trailing bytes', () => {
    expectProtocolError(Buffer.concat([insert, Buffer.from([0])]), /1 unexpected trailing bytes/);
    expectProtocolError(new Bytes().ch('B').uint64(1n).int64(1n).uint32(1).int8(0).int8(0).done(), /2 unexpected trailing bytes/);
  });

  it('negative or impossible counts and lengths', () => {
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('N').int16(-1).done(), /negative tuple column count/);
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('N').int16(1).ch('t').int32(-1).done(), /negative text length -1 in tuple column 0/);
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('N').int16(1000).ch('n').done(), /truncated.*tuple column count 1000/);
    expectProtocolError(new Bytes().ch('T').int32(-1).int8(0).done(), /negative relation count/);
    expectProtocolError(new Bytes().ch('T').int32(0x7fffffff).int8(0).uint32(1).done(), /truncated.*relation count/);
    expectProtocolError(new Bytes().ch('R').uint32(1).cstring('s').cstring('t').ch('d').int16(-3).done(), /negative column count/);
    expectProtocolError(new Bytes().ch('M').int8(0).uint64(1n).cstring('p').int32(10).raw([1, 2]).done(), /truncated message content/);
  });

  it("Insert without 'N'", () => {
    expectProtocolError(new Bytes().ch('I').uint32(1).ch('K').tuple(['1']).done(), /expected 'N'.*got 'K'/);
  });

  it('a failed decode does not disturb the next one', () => {
    expectProtocolError(insert.subarray(0, 10), /truncated/);
    expect(text(decodeAs('insert', insert).newTuple)).toEqual(['hello', 'world']);
  });
});

describe('pgoutput v1: input as a slice of a larger network buffer', () => {
  it('decodes at a non-zero offset of a larger ArrayBuffer, values point into that memory', () => {
    const msg = new Bytes().ch('U').uint32(9).ch('O').tuple(['x', null]).ch('N').tuple(['y,"z"', UNCHANGED_TOAST]).done();
    const big = Buffer.concat([Buffer.alloc(13, 0xee), msg, Buffer.alloc(7, 0x00)]);
    const view = big.subarray(13, 13 + msg.length);
    expect(view.byteOffset).toBeGreaterThanOrEqual(13);
    const m = decodeAs('update', view);
    expect(m).toEqual(decodePgOutput(msg));
    expect(text(m.oldTuple)).toEqual(['x', null]);
    expect(text(m.newTuple)).toEqual(['y,"z"', 'TOAST']);
    const v = m.newTuple.value(0) as Buffer;
    expect(v.buffer).toBe(big.buffer);
    expect(v.byteOffset).toBe(view.byteOffset + msg.indexOf('y,"z"'));
  });

  it('decodes a message that starts at an offset of its buffer (an XLogData frame decoded in place)', () => {
    const msg = new Bytes().ch('U').uint32(9).ch('O').tuple(['x', null]).ch('N').tuple(['y,"z"', UNCHANGED_TOAST]).done();
    const frame = Buffer.concat([Buffer.alloc(25, 0x77), msg]);
    const m = decodeAs('update', msg);
    const inPlace = decodePgOutput(frame, 25) as Msg<'update'>;
    expect(text(inPlace.oldTuple)).toEqual(text(m.oldTuple));
    expect(text(inPlace.newTuple)).toEqual(['y,"z"', 'TOAST']);
    expect(inPlace.newTuple.buf).toBe(frame);
    expect(inPlace.newTuple.spans[0]).toBe(25 + msg.indexOf('y,"z"'));
    // Error offsets and lengths are the message's own, not the frame's.
    const cut = Buffer.concat([Buffer.alloc(25, 0x77), msg.subarray(0, msg.length - 3)]);
    expect(() => decodePgOutput(cut, 25)).toThrow(new RegExp(`message type 'U' \\(0x55\\), offset \\d+, length ${msg.length - 3}\\]`));
    expect(() => decodePgOutput(Buffer.alloc(25, 0x77), 25)).toThrow(/empty message/);
  });

  it('decodes a Buffer built over a shared ArrayBuffer with an offset', () => {
    const msg = new Bytes().ch('B').uint64(BIG_LSN).int64(TS).uint32(42).done();
    const ab = new ArrayBuffer(msg.length + 100);
    const view = Buffer.from(ab, 37, msg.length);
    msg.copy(view);
    expect(decodePgOutput(view)).toEqual({ tag: 'begin', finalLsn: BIG_LSN, commitTime: TS, xid: 42 });
  });
});
