/**
 * Streamed transactions (pgoutput protocol 2, src/wal/streaming.ts): the parts of a transaction
 * that outgrew the server's logical_decoding_work_mem arrive while it is still running, and may
 * yet be aborted, whole or a subtransaction at a time. Rows in our files carry the commit LSN and
 * time, which only the Stream Commit tells, so the parts are spooled, as received, to a file per
 * transaction under `output.dir/_tmp/streamed/`, and at the commit they are replayed through the
 * controller as one ordinary transaction, in the place of the commit in the stream: the files then
 * hold exactly what a non-streamed transaction would have given.
 *
 * Why not let the walsender keep it: without streaming, the walsender spills such a transaction to
 * its own disk and reads it back at the commit before sending any of it (ReorderBufferSerializeTXN
 * in src/backend/replication/logical/reorderbuffer.c), so that our work cannot overlap its
 * decoding; for pg_recvlogical and S1's 1M rows, the server's CPU 16.1 s against 10.0 s streamed.
 *
 * Exactly once: nothing spooled is durable state. The slot is never confirmed past an uncommitted
 * transaction's commit, so after a crash or reconnect the walsender streams it again from its first
 * part (the files are dropped at start-up with the rest of `_tmp`, and on reconnect by `clear`).
 *
 * Subtransactions: a Stream Abort names a subtransaction when a savepoint was rolled back; its
 * changes (and those of its own subtransactions, each aborted by name too) are left out of the
 * replay. Relation and Type messages are kept whatever their subtransaction: they describe tables,
 * and the server does not send them again within the transaction.
 *
 * Memory: one write buffer per open transaction and one read buffer during a replay.
 * Spool record: u32 body length, u32 (sub)transaction id, body = the message without its xid.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { EgressError } from '../errors.js';
import { lsnHex } from '../lsn.js';
import { ioError } from '../output/atomic.js';
import { decodePgOutput, type PgOutputMessage } from '../wal/pgoutput.js';
import type { InsertRun } from './windows.js';
import { decodeStreamControl, INSERT, isStreamControl, ORIGIN, RELATION, streamedXid, TYPE, type StreamCommit } from '../wal/streaming.js';

const WRITE_BUFFER = 256 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;
const HEADER = 8;

export interface ReplayHooks {
  /** The controller's `handle`: a replayed message goes where a live one would. */
  handle(m: PgOutputMessage): Promise<void> | undefined;
  /**
   * Optional: a run of Inserts into one table, from `spool[from]` (records as spooled here, up to
   * `to`), taken without a message each (the controller's insertRun); `next` = `from` when it takes none.
   */
  insertRun?(relOid: number, spool: Buffer, from: number, to: number): InsertRun;
  /** Called between read chunks of a long replay (the caller keeps the server's connection alive). */
  between(): void;
}

class Spool {
  readonly fd: number;
  private readonly buf = Buffer.allocUnsafe(WRITE_BUFFER);
  private used = 0;
  /** Bytes on disk (the buffer's come after them). */
  written = 0;
  readonly aborted = new Set<number>();

  constructor(readonly file: string) {
    try {
      this.fd = fs.openSync(file, 'w+', 0o600);
    } catch (e) {
      throw ioError(file, e);
    }
  }

  get bytes(): number {
    return this.written + this.used;
  }

  reset(): void {
    this.used = this.written = 0;
    this.aborted.clear();
    try {
      fs.ftruncateSync(this.fd, 0);
    } catch (e) {
      throw ioError(this.file, e);
    }
  }

  /** One message of a stream block: `frame` from `start` is its type byte, the xid, the rest. */
  append(xid: number, frame: Buffer, start: number): void {
    const bodyLen = frame.length - start - 4;
    const need = HEADER + bodyLen;
    if (this.used + need > this.buf.length) this.flush();
    if (need > this.buf.length) {
      const head = Buffer.allocUnsafe(HEADER + 1);
      head.writeUInt32BE(bodyLen, 0);
      head.writeUInt32BE(xid, 4);
      head[HEADER] = frame[start];
      this.write(head);
      this.write(frame.subarray(start + 5));
      return;
    }
    const b = this.buf;
    b.writeUInt32BE(bodyLen, this.used);
    b.writeUInt32BE(xid, this.used + 4);
    b[this.used + HEADER] = frame[start];
    frame.copy(b, this.used + HEADER + 1, start + 5);
    this.used += need;
  }

  flush(): void {
    if (this.used === 0) return;
    this.write(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  private write(data: Buffer): void {
    try {
      for (let off = 0; off < data.length; ) {
        const n = fs.writeSync(this.fd, data, off, data.length - off, this.written);
        off += n;
        this.written += n;
      }
    } catch (e) {
      throw ioError(this.file, e);
    }
  }

  /** Reads from `position` into `into` at `offset` until it is full or the file ends; returns the bytes read. */
  read(into: Buffer, offset: number, position: number): number {
    let got = 0;
    try {
      while (offset + got < into.length) {
        const n = fs.readSync(this.fd, into, offset + got, into.length - offset - got, position + got);
        if (n === 0) break;
        got += n;
      }
    } catch (e) {
      throw ioError(this.file, e);
    }
    return got;
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed: nothing to release
    }
    try {
      fs.rmSync(this.file, { force: true });
    } catch {
      // left in _tmp, which the next start-up clears
    }
  }
}

export class StreamedTxns {
  private block: Spool | null = null;
  private blockXid = 0;
  private readonly spools = new Map<number, Spool>();
  private dirReady = false;
  /** Streamed transactions replayed and dropped, and the bytes spooled, since start. */
  readonly stats = { committed: 0, aborted: 0, bytes: 0 };

  constructor(private readonly o: { dir: string; dirMode: number; log: Logger }) {}

  /** Transactions received in part and not yet committed or aborted. */
  spooledTransactions(): number {
    return this.spools.size;
  }

  /** Bytes of the transactions received in part and not yet committed or aborted. */
  spooledBytes(): number {
    let n = 0;
    for (const sp of this.spools.values()) n += sp.bytes;
    return n;
  }

  /** Inside Stream Start … Stream Stop: every message belongs here until the Stop. */
  inBlock(): boolean {
    return this.block !== null;
  }

  /**
   * One XLogData message that is a Stream Start, Stop, Commit or Abort, or inside a stream block.
   * Returns a promise only for a commit (its replay).
   */
  take(frame: Buffer, start: number, hooks: ReplayHooks): Promise<void> | undefined {
    if (this.block && !isStreamControl(frame[start])) {
      // The Origin message that follows a first Stream Start (changes replayed from another
      // origin) carries no xid; the controller ignores origins anyway (pgoutput_stream_start).
      if (frame[start] !== ORIGIN) this.block.append(streamedXid(frame, start), frame, start);
      return;
    }
    const m = decodeStreamControl(frame, start);
    switch (m.tag) {
      case 'streamStart': {
        if (this.block) throw protocol(`Stream Start of ${m.xid} inside the block of ${this.blockXid}`);
        let sp = this.spools.get(m.xid);
        if (sp && m.firstSegment) sp.reset();
        if (!sp) {
          if (!m.firstSegment) throw protocol(`Stream Start continues transaction ${m.xid}, whose first part was not received`);
          sp = this.open(m.xid);
        }
        this.block = sp;
        this.blockXid = m.xid;
        return;
      }
      case 'streamStop':
        if (!this.block) throw protocol('Stream Stop outside a stream block');
        this.block = null;
        return;
      case 'streamAbort': {
        if (this.block) throw protocol(`Stream Abort of ${m.xid} inside a stream block`);
        const sp = this.spools.get(m.xid);
        if (!sp) return; // nothing of it was kept
        if (m.subxid !== m.xid) {
          sp.aborted.add(m.subxid);
          return;
        }
        this.stats.aborted++;
        this.o.log.info({ xid: m.xid, spooled_bytes: sp.bytes }, 'streamed transaction aborted');
        this.drop(m.xid, sp);
        return;
      }
      case 'streamCommit': {
        if (this.block) throw protocol(`Stream Commit of ${m.xid} inside a stream block`);
        const sp = this.spools.get(m.xid);
        if (!sp) throw protocol(`Stream Commit of ${m.xid}, whose parts were not received`);
        return this.replay(sp, m, hooks);
      }
    }
  }

  private open(xid: number): Spool {
    if (!this.dirReady) {
      try {
        fs.mkdirSync(this.o.dir, { recursive: true, mode: this.o.dirMode });
      } catch (e) {
        throw ioError(this.o.dir, e);
      }
      this.dirReady = true;
    }
    const sp = new Spool(path.join(this.o.dir, `${xid}.spool`));
    this.spools.set(xid, sp);
    return sp;
  }

  private drop(xid: number, sp: Spool): void {
    this.spools.delete(xid);
    sp.close();
  }

  /** The transaction, as Begin, its messages in order (aborted subtransactions left out), Commit. */
  private async replay(sp: Spool, c: StreamCommit, hooks: ReplayHooks): Promise<void> {
    const started = Date.now();
    sp.flush();
    const total = sp.written;
    this.stats.bytes += total;
    let p = hooks.handle({ tag: 'begin', finalLsn: c.commitLsn, commitTime: c.commitTime, xid: c.xid });
    if (p) await p;
    // One read buffer for the whole replay, each message copied out of it as the live path copies
    // each frame (src/wal/stream.ts): small copies come from Node's buffer pool, where a fresh
    // 4 MiB Buffer per read would count against V8's external memory and bring on full collections.
    const rbuf = Buffer.allocUnsafe(READ_CHUNK);
    let end = 0;
    let pos = 0;
    let fileOff = 0;
    // Makes rbuf[pos..end) hold `need` (<= READ_CHUNK) bytes; false at the end of the file.
    const fill = (need: number): boolean => {
      if (end - pos >= need) return true;
      if (fileOff >= total) return false;
      rbuf.copyWithin(0, pos, end);
      end -= pos;
      pos = 0;
      const n = sp.read(rbuf, end, fileOff);
      fileOff += n;
      end += n;
      hooks.between();
      return end - pos >= need;
    };
    let replayed = 0;
    for (;;) {
      if (!fill(HEADER)) {
        if (end > pos) throw protocol(`spool ${sp.file} ends inside a record header`);
        break;
      }
      const len = rbuf.readUInt32BE(pos);
      // Inserts whole in the buffer go to the controller a run at a time, undecoded: S1's 1M rows
      // took ~1.5 s here one message each. Not with an aborted subtransaction (whose rows the
      // loop below leaves out by xid).
      if (hooks.insertRun && sp.aborted.size === 0 && end - pos >= HEADER + 5 && rbuf[pos + HEADER] === INSERT) {
        const r = hooks.insertRun(rbuf.readUInt32BE(pos + HEADER + 1), rbuf, pos, end);
        if (r.next > pos) {
          pos = r.next;
          replayed += r.rows;
          if (r.wait) await r.wait;
          continue;
        }
      }
      const xid = rbuf.readUInt32BE(pos + 4);
      let body: Buffer;
      if (HEADER + len <= READ_CHUNK) {
        if (!fill(HEADER + len)) throw protocol(`spool ${sp.file} ends inside a record`);
        body = Buffer.from(rbuf.subarray(pos + HEADER, pos + HEADER + len));
        pos += HEADER + len;
      } else {
        // Larger than the read buffer: its own buffer, the rest read straight into it.
        body = Buffer.allocUnsafe(len);
        const have = rbuf.copy(body, 0, pos + HEADER, end);
        const n = sp.read(body, have, fileOff);
        if (have + n < len) throw protocol(`spool ${sp.file} ends inside a record`);
        fileOff += n;
        pos = end = 0;
      }
      if (sp.aborted.size > 0 && sp.aborted.has(xid) && body[0] !== RELATION && body[0] !== TYPE) continue;
      replayed++;
      p = hooks.handle(decodePgOutput(body));
      if (p) await p;
    }
    p = hooks.handle({ tag: 'commit', flags: c.flags, commitLsn: c.commitLsn, endLsn: c.endLsn, commitTime: c.commitTime });
    if (p) await p;
    this.stats.committed++;
    this.o.log.info(
      {
        xid: c.xid,
        lsn: lsnHex(c.commitLsn),
        spooled_bytes: total,
        messages: replayed,
        aborted_subtransactions: sp.aborted.size,
        ms: Date.now() - started,
      },
      'streamed transaction committed',
    );
    this.drop(c.xid, sp);
  }

  /** Drops every spooled transaction (on reconnect or shutdown: the server sends them again). */
  clear(): void {
    for (const [xid, sp] of this.spools) this.drop(xid, sp);
    this.block = null;
  }
}

function protocol(what: string): EgressError {
  return new EgressError('PROTOCOL', `pgoutput: ${what}; please report this with --log-level debug output`);
}
