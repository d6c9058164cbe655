import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { parse } from 'pg-protocol';
import { decodePgOutput, UNCHANGED_TOAST, type PgOutputMessage, type Tuple } from '../../src/wal/pgoutput.js';
import { decodeFrame, encodeStandbyStatus } from '../../src/wal/frames.js';
import { formatCommitTs, PG_EPOCH_OFFSET_MICROS, pgMicrosToUnixMs } from '../../src/wal/time.js';
import { EgressError } from '../../src/errors.js';

/** Builds protocol bytes by hand, as the server would send them. */
class Bytes {
  private parts: Buffer[] = [];
  u8(n: number) {
    this.parts.push(Buffer.from([n]));
    return this;
  }
  ch(c: string) {
    return this.u8(c.charCodeAt(0));
  }
  i16(n: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(n);
    this.parts.push(b);
    return this;
  }
  i32(n: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    this.parts.push(b);
    return this;
  }
  u32(n: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    this.parts.push(b);
    return this;
  }
  i64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    this.parts.push(b);
    return this;
  }
  u64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    this.parts.push(b);
    return this;
  }
  cstr(s: string) {
    this.parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  raw(b: Buffer) {
    this.parts.push(b);
    return this;
  }
  /** TupleData: string = text value, null = NULL, 'u' marker = unchanged TOAST. */
  tuple(values: (string | null | typeof UNCHANGED_TOAST)[]) {
    this.i16(values.length);
    for (const v of values) {
      if (v === null) this.ch('n');
      else if (v === UNCHANGED_TOAST) this.ch('u');
      else {
        const b = Buffer.from(v, 'utf8');
        this.ch('t').i32(b.length).raw(b);
      }
    }
    return this;
  }
  done() {
    return Buffer.concat(this.parts);
  }
}

const text = (t: Tuple) => t.map((v) => (v === null ? null : v === UNCHANGED_TOAST ? 'u' : v.toString('utf8')));
const BIG_LSN = 0xfe40_0000_0000_1234n; // above 2^53: bigint exactness
const TS = 817_000_000_123_456n; // 2025-11-22 ... micros since 2000

describe('pgoutput v1 decoder', () => {
  it('Begin and Commit keep 64-bit LSNs and times exact', () => {
    const b = decodePgOutput(new Bytes().ch('B').u64(BIG_LSN).i64(TS).u32(4_000_000_000).done());
    expect(b).toEqual({ tag: 'begin', finalLsn: BIG_LSN, commitTime: TS, xid: 4_000_000_000 });
    const c = decodePgOutput(new Bytes().ch('C').u8(0).u64(BIG_LSN).u64(BIG_LSN + 48n).i64(TS).done());
    expect(c).toEqual({ tag: 'commit', flags: 0, commitLsn: BIG_LSN, endLsn: BIG_LSN + 48n, commitTime: TS });
  });

  it('Relation: columns, key flags, replica identity, pg_catalog for an empty namespace, odd names', () => {
    const r = decodePgOutput(
      new Bytes().ch('R').u32(16390).cstr('My Schema').cstr('Weird "Name", x').ch('f').i16(2)
        .u8(1).cstr('id').u32(20).i32(-1)
        .u8(0).cstr('amount').u32(1700).i32(786438)
        .done(),
    );
    expect(r).toEqual({
      tag: 'relation', relationOid: 16390, schema: 'My Schema', name: 'Weird "Name", x', replicaIdentity: 'full',
      columns: [
        { name: 'id', typeOid: 20, typmod: -1, isKey: true },
        { name: 'amount', typeOid: 1700, typmod: 786438, isKey: false },
      ],
    });
    const p = decodePgOutput(new Bytes().ch('R').u32(1).cstr('').cstr('t').ch('d').i16(0).done()) as Extract<PgOutputMessage, { tag: 'relation' }>;
    expect(p.schema).toBe('pg_catalog');
    expect(p.replicaIdentity).toBe('default');
  });

  it('Type and Origin', () => {
    expect(decodePgOutput(new Bytes().ch('Y').u32(70000).cstr('public').cstr('mood').done())).toEqual({ tag: 'type', typeOid: 70000, schema: 'public', name: 'mood' });
    expect(decodePgOutput(new Bytes().ch('O').u64(99n).cstr('node_a').done())).toEqual({ tag: 'origin', originLsn: 99n, originName: 'node_a' });
  });

  it('Insert: NULL, unchanged TOAST, empty string, multi-byte UTF-8, CSV specials, as exact byte slices', () => {
    const values = ['1', null, UNCHANGED_TOAST, '', 'ünï€ 😀', 'a,b "q"\nline2\r'] as const;
    const buf = new Bytes().ch('I').u32(16390).ch('N').tuple([...values]).done();
    const m = decodePgOutput(buf) as Extract<PgOutputMessage, { tag: 'insert' }>;
    expect(m.relationOid).toBe(16390);
    expect(text(m.newTuple)).toEqual(['1', null, 'u', '', 'ünï€ 😀', 'a,b "q"\nline2\r']);
    // Values are views into the message, not copies.
    expect((m.newTuple[4] as Buffer).buffer).toBe(buf.buffer);
  });

  it('Update with old key (K), with old row (O), and with neither', () => {
    const k = decodePgOutput(new Bytes().ch('U').u32(5).ch('K').tuple(['2', null]).ch('N').tuple(['20', 'b']).done());
    expect(k.tag === 'update' && [text(k.keyTuple!), k.oldTuple, text(k.newTuple)]).toEqual([['2', null], null, ['20', 'b']]);
    const o = decodePgOutput(new Bytes().ch('U').u32(5).ch('O').tuple(['1', 'a']).ch('N').tuple(['1', 'b']).done());
    expect(o.tag === 'update' && [o.keyTuple, text(o.oldTuple!), text(o.newTuple)]).toEqual([null, ['1', 'a'], ['1', 'b']]);
    const n = decodePgOutput(new Bytes().ch('U').u32(5).ch('N').tuple(['1', UNCHANGED_TOAST]).done());
    expect(n.tag === 'update' && [n.keyTuple, n.oldTuple, text(n.newTuple)]).toEqual([null, null, ['1', 'u']]);
  });

  it('Delete with K and with O', () => {
    const k = decodePgOutput(new Bytes().ch('D').u32(5).ch('K').tuple(['3', null]).done());
    expect(k.tag === 'delete' && text(k.keyTuple!)).toEqual(['3', null]);
    const o = decodePgOutput(new Bytes().ch('D').u32(5).ch('O').tuple(['3', 'c']).done());
    expect(o.tag === 'delete' && [o.keyTuple, text(o.oldTuple!)]).toEqual([null, ['3', 'c']]);
  });

  it('Truncate flags and relations', () => {
    expect(decodePgOutput(new Bytes().ch('T').i32(2).u8(3).u32(10).u32(11).done())).toEqual({ tag: 'truncate', cascade: true, restartIdentity: true, relationOids: [10, 11] });
    expect(decodePgOutput(new Bytes().ch('T').i32(1).u8(0).u32(10).done())).toMatchObject({ cascade: false, restartIdentity: false });
  });

  it('logical messages, transactional or not', () => {
    const body = Buffer.from('{"x":1}');
    expect(decodePgOutput(new Bytes().ch('M').u8(1).u64(77n).cstr('pg-egress:ddl').i32(body.length).raw(body).done())).toEqual({ tag: 'message', transactional: true, lsn: 77n, prefix: 'pg-egress:ddl', content: body });
    expect(decodePgOutput(new Bytes().ch('M').u8(0).u64(78n).cstr('p').i32(0).done())).toMatchObject({ transactional: false, content: Buffer.alloc(0) });
  });

  it('fails loudly on malformed input', () => {
    const protocol = (b: Buffer, re: RegExp) => {
      expect(() => decodePgOutput(b)).toThrow(EgressError);
      expect(() => decodePgOutput(b)).toThrow(re);
    };
    protocol(new Bytes().ch('Z').done(), /unknown message type "Z"/);
    protocol(new Bytes().ch('I').u32(1).ch('N').i16(1).ch('b').i32(1).u8(0).done(), /binary/);
    const full = new Bytes().ch('I').u32(1).ch('N').tuple(['hello', 'world']).done();
    protocol(full.subarray(0, full.length - 3), /truncated/);
    protocol(new Bytes().ch('O').u64(1n).raw(Buffer.from('no-nul')).done(), /unterminated string/);
    protocol(Buffer.concat([full, Buffer.from([0])]), /trailing/);
    protocol(Buffer.alloc(0), /empty/);
  });

  it('decodes messages at a non-zero offset of a larger buffer', () => {
    const msg = new Bytes().ch('I').u32(9).ch('N').tuple(['x', 'y']).done();
    const big = Buffer.concat([Buffer.alloc(13, 0xee), msg, Buffer.alloc(7, 0xee)]);
    const view = big.subarray(13, 13 + msg.length);
    expect(decodePgOutput(view)).toEqual(decodePgOutput(msg));
  });
});

describe('replication frames', () => {
  it('decodes XLogData and keepalive, encodes standby status', () => {
    const payload = new Bytes().ch('B').u64(5n).i64(TS).u32(7).done();
    const w = decodeFrame(new Bytes().ch('w').u64(100n).u64(200n).i64(TS).raw(payload).done());
    expect(w.tag === 'xlogdata' && [w.walStart, w.walEnd, w.sendTime, w.data.equals(payload)]).toEqual([100n, 200n, TS, true]);
    expect(decodeFrame(new Bytes().ch('k').u64(BIG_LSN).i64(TS).u8(1).done())).toEqual({ tag: 'keepalive', walEnd: BIG_LSN, sendTime: TS, replyRequested: true });
    const r = encodeStandbyStatus({ write: 1n, flush: 2n, apply: 3n, clientTime: TS, replyRequested: false });
    expect(r).toEqual(new Bytes().ch('r').u64(1n).u64(2n).u64(3n).i64(TS).u8(0).done());
    expect(r.length).toBe(34);
    expect(() => decodeFrame(Buffer.from('x'))).toThrow(/unknown CopyData frame/);
    expect(() => decodeFrame(Buffer.from('w123'))).toThrow(/too short/);
  });

  it('decodes the same messages whatever way the wire bytes are split into chunks', async () => {
    // A transaction as the server sends it: CopyData ('d') messages wrapping XLogData frames.
    const msgs = [
      new Bytes().ch('B').u64(BIG_LSN).i64(TS).u32(7).done(),
      new Bytes().ch('R').u32(5).cstr('public').cstr('t').ch('d').i16(2).u8(1).cstr('id').u32(23).i32(-1).u8(0).cstr('v').u32(25).i32(-1).done(),
      new Bytes().ch('I').u32(5).ch('N').tuple(['1', 'a,"b"\nc']).done(),
      new Bytes().ch('C').u8(0).u64(BIG_LSN).u64(BIG_LSN + 8n).i64(TS).done(),
    ];
    const copyData = (payload: Buffer) => {
      const frame = new Bytes().ch('w').u64(1n).u64(2n).i64(TS).raw(payload).done();
      return new Bytes().ch('d').i32(frame.length + 4).raw(frame).done();
    };
    const wire = Buffer.concat([...msgs.map(copyData), new Bytes().ch('d').i32(4 + 18).ch('k').u64(9n).i64(TS).u8(0).done()]);
    const expected = msgs.map((m) => decodePgOutput(m));
    const decodeSplit = async (cuts: number[]) => {
      const stream = new PassThrough();
      const out: unknown[] = [];
      const done = parse(stream, (m) => {
        const msg = m as unknown as { name: string; chunk: Buffer };
        if (msg.name !== 'copyData') return;
        const f = decodeFrame(Buffer.from(msg.chunk));
        out.push(f.tag === 'xlogdata' ? decodePgOutput(f.data) : f.tag);
      });
      let at = 0;
      for (const c of [...cuts, wire.length]) {
        // A copy, as a socket delivers: pg-protocol may reuse a chunk's memory when merging.
        stream.write(Buffer.from(wire.subarray(at, c)));
        at = c;
      }
      stream.end();
      await done;
      return out;
    };
    for (let cut = 1; cut < wire.length; cut++) {
      expect(await decodeSplit([cut])).toEqual([...expected, 'keepalive']);
    }
    expect(await decodeSplit(Array.from({ length: wire.length - 1 }, (_, i) => i + 1))).toEqual([...expected, 'keepalive']);
  });
});

describe('commit timestamps', () => {
  const micros = (iso: string, extraMicros = 0) => BigInt(Date.parse(iso)) * 1000n + BigInt(extraMicros) - PG_EPOCH_OFFSET_MICROS;
  it('formats exactly to the microsecond in UTC', () => {
    expect(formatCommitTs(micros('2026-11-22T10:05:00.000Z', 1))).toBe('2026-11-22 10:05:00.000001+00');
    expect(formatCommitTs(micros('2026-11-22T10:05:00.000Z'))).toBe('2026-11-22 10:05:00.000000+00');
    expect(formatCommitTs(micros('2026-11-22T23:59:59.999Z', 999))).toBe('2026-11-22 23:59:59.999999+00');
    expect(formatCommitTs(0n)).toBe('2000-01-01 00:00:00.000000+00');
    expect(pgMicrosToUnixMs(micros('2026-11-22T10:05:00.123Z', 456))).toBe(Date.parse('2026-11-22T10:05:00.123Z'));
  });
});
