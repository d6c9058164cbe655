/**
 * The replication connection's byte stream cut into protocol messages ahead of `pg`'s parser
 * (src/wal/stream.ts). Once START_REPLICATION runs, nearly every message is a CopyData ('d'): its
 * payload is handed on as a view of the socket's chunk, which Node allocates afresh for every
 * read and never reuses, so a frame needs no copy of its own. Every other message (CopyBothResponse,
 * ErrorResponse, NoticeResponse, CopyDone, CommandComplete, ReadyForQuery) goes whole, one at a
 * time, to the driver's parser, which then always starts on a message boundary.
 *
 * Why: `pg-protocol` copies each socket chunk into its own buffer whenever the previous chunk
 * ended inside a message (with CopyData of 100-200 bytes, nearly every chunk), makes a message
 * object and a view per CopyData, and reuses its buffer, so each payload had to be copied again
 * (Buffer.from) before it could wait in the queue. Here only a message that straddles two chunks
 * is copied. Measured on the benchmark's 20,000 small transactions (S2, alternating A/B): the
 * profiler put those copies at ~0.2 s, but neither wall time nor CPU moved measurably; peak RSS
 * fell (150-185 -> 127-158 MB). The CPU that did fall came from the gathered reads in stream.ts.
 * https://www.postgresql.org/docs/15/protocol-message-formats.html
 */

import { EgressError } from '../errors.js';

/** Type byte and Int32 length (which counts itself, not the type byte). */
const HEADER = 5;
const COPY_DATA = 0x64; // d

/** A message's length field (at `at` + 1); below 4 the stream is not the protocol any more. */
function length(buf: Buffer, at: number): number {
  const n = buf.readUInt32BE(at + 1);
  if (n < 4) throw new EgressError('PROTOCOL', `the replication connection sent a malformed message (type 0x${buf[at].toString(16)}, length ${n})`);
  return n;
}

export class CopyBothFramer {
  /** The start of a message that the last chunk ended in (header incomplete: fewer than HEADER bytes). */
  private head: Buffer | null = null;
  /** A message being completed across chunks, and how much of it is filled. */
  private partial: Buffer | null = null;
  private filled = 0;

  constructor(
    /** A CopyData payload (a view: valid as long as the caller keeps it). */
    private readonly onCopyData: (payload: Buffer) => void,
    /** Any other message, whole (type byte, length, body). */
    private readonly onOther: (message: Buffer) => void,
  ) {}

  /** Whether a message is cut between the chunks seen so far and the next. */
  get pending(): boolean {
    return this.head !== null || this.partial !== null;
  }

  push(chunk: Buffer): void {
    let off = 0;
    if (this.head) {
      // Complete the header first: its length says how large the straddling message is.
      const need = HEADER - this.head.length;
      if (chunk.length < need) {
        this.head = Buffer.concat([this.head, chunk]);
        return;
      }
      const header = Buffer.concat([this.head, chunk.subarray(0, need)]);
      this.head = null;
      this.partial = Buffer.allocUnsafe(1 + length(header, 0));
      header.copy(this.partial, 0);
      this.filled = HEADER;
      off = need;
    }
    if (this.partial) {
      const n = Math.min(this.partial.length - this.filled, chunk.length - off);
      chunk.copy(this.partial, this.filled, off, off + n);
      this.filled += n;
      off += n;
      if (this.filled < this.partial.length) return;
      const msg = this.partial;
      this.partial = null;
      this.emit(msg, 0, msg.length);
    }
    const end = chunk.length;
    while (off + HEADER <= end) {
      const size = 1 + length(chunk, off);
      if (off + size > end) break;
      this.emit(chunk, off, off + size);
      off += size;
    }
    if (off === end) return;
    if (end - off < HEADER) {
      this.head = Buffer.from(chunk.subarray(off));
      return;
    }
    this.partial = Buffer.allocUnsafe(1 + length(chunk, off));
    this.filled = chunk.copy(this.partial, 0, off, end);
  }

  private emit(buf: Buffer, start: number, end: number): void {
    if (buf[start] === COPY_DATA) this.onCopyData(buf.subarray(start + HEADER, end));
    else this.onOther(buf.subarray(start, end));
  }
}
