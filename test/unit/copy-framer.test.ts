/**
 * The replication connection's framing (src/wal/copy-framer.ts): CopyData payloads cut from the
 * socket's chunks at every split, every other message handed whole to pg-protocol's own parser,
 * in order, and no copy of a payload that lies inside one chunk.
 */
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { parse } from 'pg-protocol';
import { CopyBothFramer } from '../../src/wal/copy-framer.js';
import { decodeFrame } from '../../src/wal/frames.js';
import { decodePgOutput } from '../../src/wal/pgoutput.js';
import { EgressError } from '../../src/errors.js';
import { Bytes } from '../helpers/bytes.js';

const TS = 848_657_100_000_001n;
const xlog = (walStart: bigint, payload: Buffer) => new Bytes().ch('w').uint64(walStart).uint64(walStart + 1n).int64(TS).raw(payload).done();
const copyData = (body: Buffer) => new Bytes().ch('d').int32(body.length + 4).raw(body).done();
/** A backend message other than CopyData: type, length, body. */
const message = (type: string, body: Buffer) => new Bytes().ch(type).int32(body.length + 4).raw(body).done();

const pgoutput = [
  new Bytes().ch('B').uint64(7n).int64(TS).int32(7).done(),
  new Bytes().ch('R').int32(5).cstring('public').cstring('t').ch('d').int16(2).int8(1).cstring('id').int32(23).int32(-1).int8(0).cstring('v').int32(25).int32(-1).done(),
  new Bytes().ch('I').int32(5).ch('N').tuple(['1', 'a,"b"\nc']).done(),
  new Bytes().ch('C').int8(0).uint64(7n).uint64(15n).int64(TS).done(),
];
const keepalive = new Bytes().ch('k').uint64(9n).int64(TS).int8(0).done();
// CopyBothResponse (text format, no columns) before the data, a NoticeResponse among it, then
// CopyDone, CommandComplete and an ErrorResponse: what pg's parser must still see, whole and in order.
const replicationStart = message('W', new Bytes().int8(0).int16(0).done());
const notice = message('N', new Bytes().ch('S').cstring('NOTICE').ch('M').cstring('a notice').int8(0).done());
const copyDone = message('c', Buffer.alloc(0));
const complete = message('C', new Bytes().cstring('START_REPLICATION').done());
const error = message('E', new Bytes().ch('S').cstring('ERROR').ch('C').cstring('58P01').ch('M').cstring('gone').int8(0).done());
const wire = Buffer.concat([
  replicationStart,
  copyData(xlog(1n, pgoutput[0])),
  copyData(xlog(2n, pgoutput[1])),
  notice,
  copyData(xlog(3n, pgoutput[2])),
  copyData(xlog(4n, pgoutput[3])),
  copyData(keepalive),
  copyDone,
  complete,
  error,
]);
const expected = [
  'replicationStart',
  ...pgoutput.slice(0, 2).map((m) => decodePgOutput(m)),
  'notice:a notice',
  ...pgoutput.slice(2).map((m) => decodePgOutput(m)),
  'keepalive',
  'copyDone',
  'commandComplete',
  'error:gone',
];

/** The wire cut at `cuts`, through the framer (payloads) and pg-protocol (the rest), in arrival order. */
async function framed(cuts: number[]): Promise<{ out: unknown[]; copied: number }> {
  const driver = new PassThrough();
  const out: unknown[] = [];
  const done = parse(driver, (m) => {
    const msg = m as unknown as { name: string; message?: string; text?: string };
    if (msg.name === 'copyData') throw new Error('CopyData reached the driver');
    out.push(msg.name === 'notice' || msg.name === 'error' ? `${msg.name}:${msg.message}` : msg.name);
  });
  const chunks: Buffer[] = [];
  let copied = 0;
  const framer = new CopyBothFramer(
    (payload) => {
      // A payload inside one chunk is a view of it (no copy); only a straddling one is not.
      if (!chunks.some((c) => c.buffer === payload.buffer)) copied++;
      const f = decodeFrame(payload);
      out.push(f.tag === 'xlogdata' ? decodePgOutput(f.data) : f.tag);
    },
    (msg) => driver.write(msg),
  );
  let at = 0;
  for (const c of [...cuts, wire.length]) {
    // A fresh allocation each, as a socket's reads are.
    const chunk = Buffer.from(wire.subarray(at, c));
    chunks.push(chunk);
    framer.push(chunk);
    at = c;
  }
  expect(framer.pending).toBe(false);
  driver.end();
  await done;
  return { out, copied };
}

describe('CopyBothFramer', () => {
  it('cuts the same messages in the same order from the wire whole and cut at every point, and pg-protocol parses the rest', async () => {
    const whole = await framed([]);
    expect(whole.out).toEqual(expected);
    expect(whole.copied).toBe(0);
    for (let cut = 1; cut < wire.length; cut++) {
      const r = await framed([cut]);
      expect(r.out, `cut at ${cut}`).toEqual(expected);
      // At most the one message the cut falls in is copied.
      expect(r.copied).toBeLessThanOrEqual(1);
    }
  });

  it('a byte at a time (headers split too)', async () => {
    const r = await framed(Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
    expect(r.out).toEqual(expected);
  });

  it('every pair of cuts', async () => {
    for (let a = 1; a < wire.length; a += 3) {
      for (let b = a + 1; b < wire.length; b += 5) expect((await framed([a, b])).out).toEqual(expected);
    }
  });

  it('a length below 4 is a protocol error, not a loop', () => {
    const framer = new CopyBothFramer(() => undefined, () => undefined);
    let err: unknown;
    try {
      framer.push(Buffer.from([0x64, 0, 0, 0, 3, 1, 2]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EgressError);
    expect((err as EgressError).code).toBe('PROTOCOL');
  });
});
