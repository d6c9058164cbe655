/**
 * What comes between two COPYs of one query: the simple query `COPY a TO STDOUT; COPY b TO
 * STDOUT; ...` answers each statement with CopyOutResponse, CopyData..., CopyDone and
 * CommandComplete ("COPY n"), and only the last with ReadyForQuery. After one COPY's CopyDone,
 * this reads its CommandComplete (the row count, checked against the records found) and any
 * NoticeResponse or ParameterStatus, up to the next statement's CopyOutResponse, which the next
 * COPY's sink reads from its first byte. Anything else there (an ErrorResponse: a later
 * statement failed, ReadyForQuery) is the client's to parse. Pure: bytes in, a decision out.
 * https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT
 * https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { EgressError } from '../errors.js';

export type GapEnd =
  /** The next COPY's CopyOutResponse starts `rest`. */
  | { next: true; rest: Buffer }
  /** Some other message starts `rest` (an ErrorResponse, ReadyForQuery): the client's. */
  | { next: false; rest: Buffer };

const COMMAND_COMPLETE = 0x43; // 'C'
const COPY_OUT_RESPONSE = 0x48; // 'H'
const SKIPPED = new Set([0x4e /* N NoticeResponse */, 0x53 /* S ParameterStatus */, 0x41 /* A NotificationResponse */]);

export class CopyGap {
  /** The row count of the ended COPY's CommandComplete, once read. */
  rows: number | null = null;
  private buf: Buffer = Buffer.alloc(0);

  /** Takes the bytes after CopyDone as they arrive; null while the gap goes on. */
  push(chunk: Buffer): GapEnd | null {
    // The gap is a few dozen bytes: joining is cheaper than tracking offsets across chunks.
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let pos = 0;
    while (this.buf.length - pos >= 5) {
      const type = this.buf[pos];
      if (type === COPY_OUT_RESPONSE) return this.end(true, pos);
      if (type !== COMMAND_COMPLETE && !SKIPPED.has(type)) return this.end(false, pos);
      const len = this.buf.readUInt32BE(pos + 1);
      if (len < 4) throw new EgressError('PROTOCOL', 'COPY output: malformed message length after CopyDone');
      if (this.buf.length - pos < 1 + len) break;
      if (type === COMMAND_COMPLETE) {
        const m = /^COPY (\d+)/.exec(this.buf.toString('latin1', pos + 5, pos + len));
        this.rows = m ? Number(m[1]) : null;
      }
      pos += 1 + len;
    }
    this.buf = this.buf.subarray(pos);
    return null;
  }

  private end(next: boolean, pos: number): GapEnd {
    const rest = this.buf.subarray(pos);
    this.buf = Buffer.alloc(0);
    return { next, rest };
  }
}
