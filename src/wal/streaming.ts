/**
 * pgoutput protocol version 2's streamed transactions, decoded from bytes. With `streaming` on, the
 * walsender sends a transaction that outgrows logical_decoding_work_mem in blocks while it runs
 * (Stream Start … Stream Stop, each change carrying the id of its (sub)transaction after the type
 * byte), then Stream Commit or Stream Abort; everything else is protocol 1's messages.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 * https://www.postgresql.org/docs/15/protocol-logical-replication.html#PROTOCOL-LOGICAL-REPLICATION-PARAMS
 */
import { EgressError } from '../errors.js';

export const STREAM_START = 0x53; // 'S'
export const STREAM_STOP = 0x45; // 'E'
export const STREAM_COMMIT = 0x63; // 'c'
export const STREAM_ABORT = 0x41; // 'A'
/** Relation and Type messages: they describe, they change no row (never dropped with a subtransaction). */
export const RELATION = 0x52; // 'R'
export const TYPE = 0x59; // 'Y'
/** Insert: the change a streamed transaction's replay takes in runs (src/batch/streamed.ts). */
export const INSERT = 0x49; // 'I'
/** Origin: inside a stream block right after the first Stream Start, and without an xid. */
export const ORIGIN = 0x4f; // 'O'

export interface StreamCommit {
  tag: 'streamCommit';
  xid: number;
  flags: number;
  commitLsn: bigint;
  endLsn: bigint;
  commitTime: bigint;
}

export type StreamControl =
  | { tag: 'streamStart'; xid: number; firstSegment: boolean }
  | { tag: 'streamStop' }
  | StreamCommit
  | { tag: 'streamAbort'; xid: number; subxid: number };

/** True for the four messages that open, close, commit or abort a streamed transaction. */
export function isStreamControl(tag: number): boolean {
  return tag === STREAM_START || tag === STREAM_STOP || tag === STREAM_COMMIT || tag === STREAM_ABORT;
}

function protocolError(what: string, buf: Buffer, start: number): never {
  const tag = buf.length > start ? `'${String.fromCharCode(buf[start])}'` : '(none)';
  throw new EgressError('PROTOCOL', `pgoutput: ${what} [message type ${tag}, length ${buf.length - start}]`);
}

/** Decodes Stream Start, Stop, Commit or Abort (protocol 2: an abort has no LSN or time). */
export function decodeStreamControl(buf: Buffer, start: number): StreamControl {
  const len = buf.length - start;
  const exact = (n: number) => {
    if (len !== n) protocolError(`expected ${n} bytes`, buf, start);
  };
  switch (buf[start]) {
    case STREAM_START:
      exact(6);
      return { tag: 'streamStart', xid: buf.readUInt32BE(start + 1), firstSegment: buf[start + 5] === 1 };
    case STREAM_STOP:
      exact(1);
      return { tag: 'streamStop' };
    case STREAM_COMMIT:
      exact(30);
      return {
        tag: 'streamCommit',
        xid: buf.readUInt32BE(start + 1),
        flags: buf[start + 5],
        commitLsn: buf.readBigUInt64BE(start + 6),
        endLsn: buf.readBigUInt64BE(start + 14),
        commitTime: buf.readBigInt64BE(start + 22),
      };
    case STREAM_ABORT:
      exact(9);
      return { tag: 'streamAbort', xid: buf.readUInt32BE(start + 1), subxid: buf.readUInt32BE(start + 5) };
    default:
      return protocolError('not a stream message', buf, start);
  }
}

/** The (sub)transaction id that a message inside a stream block carries right after its type byte. */
export function streamedXid(buf: Buffer, start: number): number {
  if (buf.length - start < 5) protocolError('truncated message in a stream block (no transaction id)', buf, start);
  return buf.readUInt32BE(start + 1);
}
