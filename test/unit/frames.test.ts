import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeStandbyStatus, xlogDataStart, xlogDataWalStart, type ReplicationFrame } from '../../src/wal/frames.js';
import { decodePgOutput } from '../../src/wal/pgoutput.js';
import { EgressError } from '../../src/errors.js';
import { Bytes } from '../helpers/bytes.js';

const BIG_LSN = 0xfe40_0000_0000_1235n; // > 2^53
const BIG_TS = 2n ** 53n + 12_345n; // > 2^53 micros
const TS = 848_657_100_000_001n;

const xlog = (walStart: bigint, walEnd: bigint, sendTime: bigint, payload: Buffer) => new Bytes().ch('w').uint64(walStart).uint64(walEnd).int64(sendTime).raw(payload).done();

function expectProtocolError(f: () => unknown, message: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EgressError);
  expect((err as EgressError).code).toBe('PROTOCOL');
  expect((err as EgressError).message).toMatch(message);
}

describe('XLogData (w)', () => {
  it('decodes header fields exactly and the payload as a view into the frame', () => {
    const payload = new Bytes().ch('I').int32(5).ch('N').tuple(['1', 'ä,"b"\n']).done();
    const frame = xlog(BIG_LSN, BIG_LSN + 1n, BIG_TS, payload);
    const f = decodeFrame(frame);
    expect(f).toEqual({ tag: 'xlogdata', walStart: BIG_LSN, walEnd: BIG_LSN + 1n, sendTime: BIG_TS, data: payload });
    const data = (f as Extract<ReplicationFrame, { tag: 'xlogdata' }>).data;
    expect(data.buffer).toBe(frame.buffer);
    expect(data.byteOffset).toBe(frame.byteOffset + 25);
    expect(decodePgOutput(data)).toMatchObject({ tag: 'insert', relationOid: 5 });
  });

  it('accepts an empty payload and a max LSN', () => {
    const f = decodeFrame(xlog(0xffff_ffff_ffff_ffffn, 0n, -1n, Buffer.alloc(0)));
    expect(f).toEqual({ tag: 'xlogdata', walStart: 0xffff_ffff_ffff_ffffn, walEnd: 0n, sendTime: -1n, data: Buffer.alloc(0) });
  });

  it('rejects a header shorter than 25 bytes', () => {
    const frame = xlog(1n, 2n, 3n, Buffer.alloc(0));
    for (let cut = 1; cut < frame.length; cut++) expectProtocolError(() => decodeFrame(frame.subarray(0, cut)), /XLogData frame of \d+ bytes is too short/);
  });
});

describe('XLogData fast path (xlogDataStart)', () => {
  it('finds the data of XLogData frames only, and their walStart, like decodeFrame', () => {
    const payload = new Bytes().ch('I').int32(5).ch('N').tuple(['1', 'x']).done();
    const frame = xlog(BIG_LSN, 1n, TS, payload);
    expect(xlogDataStart(frame)).toBe(25);
    expect(xlogDataWalStart(frame)).toBe(BIG_LSN);
    expect(decodePgOutput(frame, xlogDataStart(frame)).tag).toBe('insert');
    expect(xlogDataStart(xlog(1n, 2n, 3n, Buffer.alloc(0)))).toBe(25);
    // Not XLogData, or too short to be one: left to decodeFrame, which says what is wrong.
    expect(xlogDataStart(new Bytes().ch('k').uint64(9n).int64(TS).int8(0).done())).toBe(-1);
    expect(xlogDataStart(frame.subarray(0, 24))).toBe(-1);
    expect(xlogDataStart(Buffer.alloc(0))).toBe(-1);
  });
});

describe('primary keepalive (k)', () => {
  it('decodes walEnd, sendTime and replyRequested', () => {
    expect(decodeFrame(new Bytes().ch('k').uint64(BIG_LSN).int64(BIG_TS).int8(1).done())).toEqual({ tag: 'keepalive', walEnd: BIG_LSN, sendTime: BIG_TS, replyRequested: true });
    expect(decodeFrame(new Bytes().ch('k').uint64(7n).int64(TS).int8(0).done())).toEqual({ tag: 'keepalive', walEnd: 7n, sendTime: TS, replyRequested: false });
  });

  it('rejects a keepalive that is not exactly 18 bytes', () => {
    const k = new Bytes().ch('k').uint64(7n).int64(TS).int8(0).done();
    expectProtocolError(() => decodeFrame(k.subarray(0, 17)), /keepalive frame of 17 bytes, expected 18/);
    expectProtocolError(() => decodeFrame(Buffer.concat([k, Buffer.from([0])])), /keepalive frame of 19 bytes, expected 18/);
  });
});

describe('unknown frames', () => {
  it('rejects unknown and empty CopyData messages', () => {
    expectProtocolError(() => decodeFrame(Buffer.from('x')), /unknown CopyData frame type 'x' \(0x78\)/);
    expectProtocolError(() => decodeFrame(Buffer.from([0x01, 0x02])), /unknown CopyData frame type \(0x01\)/);
    expectProtocolError(() => decodeFrame(Buffer.alloc(0)), /empty CopyData/);
  });
});

describe('standby status update (r)', () => {
  it('encodes exactly 34 bytes', () => {
    const r = encodeStandbyStatus({ write: BIG_LSN, flush: 0x0102_0304_0506_0708n, apply: 3n, clientTime: TS, replyRequested: true });
    expect(r.length).toBe(34);
    expect(r).toEqual(new Bytes().ch('r').uint64(BIG_LSN).uint64(0x0102_0304_0506_0708n).uint64(3n).int64(TS).int8(1).done());
    expect(r.toString('hex')).toBe(
      '72' + 'fe40000000001235' + '0102030405060708' + '0000000000000003' + TS.toString(16).padStart(16, '0') + '01',
    );
  });

  it('replyRequested defaults to 0, negative client time is two’s complement', () => {
    const r = encodeStandbyStatus({ write: 0n, flush: 0n, apply: 0n, clientTime: -2n });
    expect(r.toString('hex')).toBe('72' + '00'.repeat(24) + 'fffffffffffffffe' + '00');
  });

  it('rejects LSNs out of uint64 range', () => {
    expect(() => encodeStandbyStatus({ write: -1n, flush: 0n, apply: 0n, clientTime: 0n })).toThrow(RangeError);
    expect(() => encodeStandbyStatus({ write: 2n ** 64n, flush: 0n, apply: 0n, clientTime: 0n })).toThrow(RangeError);
  });
});

describe('frames arriving in pieces of network buffers', () => {
  const payload = new Bytes().ch('U').int32(5).ch('N').tuple(['1', 'a,"b"\nc', 'ünï€']).done();
  const frame = xlog(BIG_LSN, BIG_LSN + 100n, BIG_TS, payload);
  const whole = (() => {
    const f = decodeFrame(frame);
    return { frame: f, message: f.tag === 'xlogdata' ? decodePgOutput(f.data) : null };
  })();

  it('a frame at a non-zero offset of a larger ArrayBuffer decodes like the whole', () => {
    const big = Buffer.concat([Buffer.alloc(11, 0xaa), frame, Buffer.alloc(5, 0xbb)]);
    const view = big.subarray(11, 11 + frame.length);
    const f = decodeFrame(view);
    expect(f).toEqual(whole.frame);
    expect(f.tag === 'xlogdata' && decodePgOutput(f.data)).toEqual(whole.message);
    expect(f.tag === 'xlogdata' && f.data.buffer).toBe(big.buffer);
  });

  it('a frame split into two chunks and rejoined with Buffer.concat decodes like the whole, at every split point', () => {
    for (let cut = 0; cut <= frame.length; cut++) {
      const a = Buffer.from(frame.subarray(0, cut));
      const b = Buffer.from(frame.subarray(cut));
      const f = decodeFrame(Buffer.concat([a, b]));
      expect(f).toEqual(whole.frame);
      expect(f.tag === 'xlogdata' && decodePgOutput(f.data)).toEqual(whole.message);
    }
  });
});
