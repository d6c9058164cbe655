/**
 * CopyData payloads of the streaming replication protocol: XLogData ('w') and primary keepalive
 * ('k') from the server, standby status update ('r') to it.
 * https://www.postgresql.org/docs/15/protocol-replication.html
 */
import { EgressError } from '../errors.js';

export type ReplicationFrame =
  | { tag: 'xlogdata'; walStart: bigint; walEnd: bigint; sendTime: bigint; data: Buffer }
  | { tag: 'keepalive'; walEnd: bigint; sendTime: bigint; replyRequested: boolean };

export function decodeFrame(buf: Buffer): ReplicationFrame {
  const tag = buf[0];
  if (tag === 0x77 /* w */) {
    if (buf.length < 25) throw new EgressError('PROTOCOL', `replication: XLogData frame of ${buf.length} bytes is too short`);
    return {
      tag: 'xlogdata',
      walStart: buf.readBigUInt64BE(1),
      walEnd: buf.readBigUInt64BE(9),
      sendTime: buf.readBigInt64BE(17),
      data: buf.subarray(25),
    };
  }
  if (tag === 0x6b /* k */) {
    if (buf.length < 18) throw new EgressError('PROTOCOL', `replication: keepalive frame of ${buf.length} bytes is too short`);
    return { tag: 'keepalive', walEnd: buf.readBigUInt64BE(1), sendTime: buf.readBigInt64BE(9), replyRequested: buf[17] === 1 };
  }
  throw new EgressError('PROTOCOL', `replication: unknown CopyData frame type ${JSON.stringify(String.fromCharCode(tag ?? 0))}`);
}

export function encodeStandbyStatus(p: { write: bigint; flush: bigint; apply: bigint; clientTime: bigint; replyRequested?: boolean }): Buffer {
  const b = Buffer.allocUnsafe(34);
  b[0] = 0x72; // r
  b.writeBigUInt64BE(p.write, 1);
  b.writeBigUInt64BE(p.flush, 9);
  b.writeBigUInt64BE(p.apply, 17);
  b.writeBigInt64BE(p.clientTime, 25);
  b[33] = p.replyRequested ? 1 : 0;
  return b;
}
