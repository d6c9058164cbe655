/**
 * CopyData payloads of the streaming replication protocol: XLogData ('w') and primary keepalive
 * ('k') from the server, standby status update ('r') to it. LSNs are unsigned 64-bit, times are
 * signed 64-bit microseconds since 2000-01-01 00:00:00 UTC.
 * https://www.postgresql.org/docs/15/protocol-replication.html
 */
import { EgressError } from '../errors.js';

export type ReplicationFrame =
  | { tag: 'xlogdata'; walStart: bigint; walEnd: bigint; sendTime: bigint; data: Buffer }
  | { tag: 'keepalive'; walEnd: bigint; sendTime: bigint; replyRequested: boolean };

const XLOGDATA = 0x77; // w
const KEEPALIVE = 0x6b; // k
const STANDBY_STATUS = 0x72; // r

/** 'w' + walStart + walEnd + sendTime, then the WAL data. */
const XLOGDATA_HEADER = 1 + 8 + 8 + 8;
/** 'k' + walEnd + sendTime + replyRequested. */
const KEEPALIVE_LENGTH = 1 + 8 + 8 + 1;
/** 'r' + write + flush + apply + clientTime + replyRequested. */
const STANDBY_STATUS_LENGTH = 1 + 8 + 8 + 8 + 8 + 1;

/**
 * Where the WAL data of an XLogData frame starts, when `buf` is one (else -1). The streaming loop
 * uses this instead of `decodeFrame` for data: it reads walStart itself and decodes the message
 * in place, which saves a frame object, two unused 64-bit reads and a view per message.
 */
export function xlogDataStart(buf: Buffer): number {
  return buf.length >= XLOGDATA_HEADER && buf[0] === XLOGDATA ? XLOGDATA_HEADER : -1;
}

/** walStart of an XLogData frame (`xlogDataStart(buf) >= 0`). */
export const xlogDataWalStart = (buf: Buffer): bigint => buf.readBigUInt64BE(1);

/** Decodes one CopyData payload from the server. `data` of an XLogData frame is a subarray of `buf` (no copy). */
export function decodeFrame(buf: Buffer): ReplicationFrame {
  if (buf.length === 0) throw new EgressError('PROTOCOL', 'replication: empty CopyData message');
  const tag = buf[0];
  if (tag === XLOGDATA) {
    if (buf.length < XLOGDATA_HEADER) {
      throw new EgressError('PROTOCOL', `replication: XLogData frame of ${buf.length} bytes is too short (header is ${XLOGDATA_HEADER} bytes)`);
    }
    return {
      tag: 'xlogdata',
      walStart: buf.readBigUInt64BE(1),
      walEnd: buf.readBigUInt64BE(9),
      sendTime: buf.readBigInt64BE(17),
      data: buf.subarray(XLOGDATA_HEADER),
    };
  }
  if (tag === KEEPALIVE) {
    if (buf.length !== KEEPALIVE_LENGTH) {
      throw new EgressError('PROTOCOL', `replication: keepalive frame of ${buf.length} bytes, expected ${KEEPALIVE_LENGTH}`);
    }
    return { tag: 'keepalive', walEnd: buf.readBigUInt64BE(1), sendTime: buf.readBigInt64BE(9), replyRequested: buf[17] !== 0 };
  }
  const shown = tag >= 0x20 && tag < 0x7f ? `'${String.fromCharCode(tag)}' ` : '';
  throw new EgressError('PROTOCOL', `replication: unknown CopyData frame type ${shown}(0x${tag.toString(16).padStart(2, '0')})`);
}

/** Standby status update ('r'), 34 bytes. LSNs must fit in uint64, clientTime in int64 (else RangeError). */
export function encodeStandbyStatus(p: {
  write: bigint;
  flush: bigint;
  apply: bigint;
  clientTime: bigint;
  replyRequested?: boolean;
}): Buffer {
  const b = Buffer.allocUnsafe(STANDBY_STATUS_LENGTH);
  b[0] = STANDBY_STATUS;
  b.writeBigUInt64BE(p.write, 1);
  b.writeBigUInt64BE(p.flush, 9);
  b.writeBigUInt64BE(p.apply, 17);
  b.writeBigInt64BE(p.clientTime, 25);
  b[33] = p.replyRequested ? 1 : 0;
  return b;
}
