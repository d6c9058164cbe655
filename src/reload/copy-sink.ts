/**
 * What happens to an export chunk's bytes between the socket and the file: strip the CopyData
 * framing, find the CSV records, hash them as Merkle leaves (the header is not a leaf), and hand
 * out what the file gets. Two implementations with one contract:
 *
 * - native (native/copy_sink.c): one pass per block of up to 1 MiB, no Buffer per message, and
 *   gzip members from ISA-L/libdeflate when the level has one (else raw CSV for zlib); it reads
 *   COPY's text format and writes the CSV itself (native/copy_text.c) when it knows the columns;
 * - JavaScript (PG_EGRESS_NATIVE=0, no compiler): the same framing parser in TypeScript over
 *   views of the socket's buffers, CsvLeaves for the tree, raw CSV for zlib.
 *
 * Both give the same records, tree size, root, block roots and CSV bytes for any way the stream is
 * split (test/unit/copy-sink.test.ts); only compressed bytes differ.
 * https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-COPY
 * https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { CsvLeaves } from '../proof/csv-leaves.js';
import type { BatchHasher } from '../proof/sha256-batch.js';
import type { MerkleSummary } from '../output/table-window.js';
import { deflateBackend, NativeSinkClass, type NativeSink, type ReadFdCallback } from '../output/deflate.js';
import { EgressError } from '../errors.js';
import { headerLine } from '../output/csv.js';

export interface CopySinkResult {
  /** Records after the header: the COPY's row count. */
  rows: number;
  /** CSV bytes, header included. */
  rawBytes: number;
  /** The COPY ended with CopyDone (not with an ErrorResponse or anything else). */
  copyDone: boolean;
  merkle: MerkleSummary;
  /** After readFd: the gzip bytes it wrote to the file, and their sha256 (hex). */
  file?: { bytes: number; sha256: string };
  /** After readFd of several COPYs, each but the last: the server's row count (CommandComplete). */
  commandRows?: number;
}

export interface CopySink {
  /** True when `take()` gives gzip bytes; false when it gives raw CSV (to compress with zlib). */
  readonly compressed: boolean;
  /**
   * What the COPY must send: `csv` is `(FORMAT csv, HEADER)`, passed through; `text` is FORMAT
   * text without a header, which the sink turns into the same CSV and writes the header itself.
   */
  readonly format: 'csv' | 'text';
  /**
   * The server's bytes while the COPY is running. Returns -1 while it goes on; else the offset in
   * `buf` where the client's bytes start again (after CopyDone, or at the message that ended the
   * COPY), to be handed back with `leftover()` in front.
   */
  feed(buf: Buffer): number;
  /**
   * The native sink: reads the COPY off the socket `socketFd` on a thread of its own and writes
   * the gzip file `fileFd` itself (native/copy_fd.c). `cb` gets the bytes after the COPY's end.
   * `more`: the query holds one more COPY per sink (native ones), each into its file descriptor.
   */
  readFd?(socketFd: number, fileFd: number, cb: ReadFdCallback, more?: { sinks: CopySink[]; fileFds: number[] }): void;
  /** While readFd runs: [bytes read, records found]. */
  fdProgress?(): [number, number];
  /** Stops readFd's thread (its callback gets an error). */
  fdCancel?(): void;
  /** Bytes of the ending message's header that arrived in earlier buffers (usually none). */
  leftover(): Buffer;
  /** Output produced so far, or null. */
  take(): Buffer | null;
  /** Records (after the header) found so far, for progress while the COPY runs. */
  records(): number;
  /** After the COPY: the last block. Throws when the CSV ended inside a record. */
  finish(): CopySinkResult;
}

/**
 * The native sink when the addon is there, else the JavaScript one. `columns`: the COPY's column
 * names; given (and not empty), the native sink reads FORMAT text (the server's cheaper output:
 * about a fifth less CPU than csv) and writes the CSV and its header line itself, byte for byte
 * what `(FORMAT csv, HEADER)` sends (native/copy_text.c; test/integration/copy-text.test.ts
 * compares them on a real server). Without columns, or in JavaScript, the server sends CSV.
 */
export function createCopySink(level: number, opts: { block?: number; native?: boolean; columns?: readonly string[] } = {}): CopySink {
  if (NativeSinkClass && opts.native !== false) {
    const compress = deflateBackend(level) !== 'zlib';
    const text = !!opts.columns?.length;
    // skip: the header is no leaf. In text mode it is written here, and only the server's rows are records.
    const s = new NativeSinkClass({ framing: true, text, merkle: true, skip: text ? 0 : 1, level, block: opts.block, compress });
    if (text) s.write(headerLine(opts.columns!));
    return new NativeCopySink(s, compress, text ? 'text' : 'csv');
  }
  return new JsCopySink();
}

class NativeCopySink implements CopySink {
  constructor(
    readonly s: NativeSink,
    readonly compressed: boolean,
    readonly format: 'csv' | 'text',
  ) {}

  feed(buf: Buffer): number {
    return this.s.feed(buf);
  }

  readFd(socketFd: number, fileFd: number, cb: ReadFdCallback, more?: { sinks: CopySink[]; fileFds: number[] }): void {
    if (!more?.sinks.length) return this.s.readFd(socketFd, fileFd, cb);
    const natives = more.sinks.map((x) => {
      if (!(x instanceof NativeCopySink)) throw new Error('readFd: every sink of the query must be native');
      return x.s;
    });
    this.s.readFd(socketFd, fileFd, cb, natives, more.fileFds);
  }

  fdProgress(): [number, number] {
    return this.s.fdProgress();
  }

  fdCancel(): void {
    this.s.fdCancel();
  }

  leftover(): Buffer {
    return this.s.leftover();
  }

  take(): Buffer | null {
    return this.s.take();
  }

  records(): number {
    return this.s.stats().rows;
  }

  finish(): CopySinkResult {
    try {
      this.s.finish();
    } catch (e) {
      // Writing readFd's file failed (the last member): the caller reports the file.
      if ((e as { syscall?: string }).syscall === 'write') throw e;
      throw new EgressError('PROTOCOL', `COPY output: ${(e as Error).message}`);
    }
    const st = this.s.stats();
    const blocks: Buffer[] = [];
    for (let i = 0; i < st.blocks.length; i += 32) blocks.push(st.blocks.subarray(i, i + 32));
    const file = st.fileSha256 !== undefined ? { bytes: st.fileBytes ?? 0, sha256: st.fileSha256 } : undefined;
    const merkle = { treeSize: st.rows, root: st.root, blocks };
    return { rows: st.rows, rawBytes: st.rawBytes, copyDone: st.copyDone, merkle, file, commandRows: st.commandRows };
  }
}

/** Message types the server may send inside COPY OUT besides CopyData (skipped). */
const SKIPPED = new Set([
  0x48 /* H CopyOutResponse */,
  0x4e /* N NoticeResponse */,
  0x53 /* S ParameterStatus */,
  0x41 /* A NotificationResponse */,
]);
const COPY_DATA = 0x64;
const COPY_DONE = 0x63;

export class JsCopySink implements CopySink {
  readonly compressed = false;
  readonly format = 'csv';
  private readonly leaves: CsvLeaves;
  private readonly out: Buffer[] = [];
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  private type = 0;
  private remaining = 0;
  private inPayload = false;
  private done = false;
  private copyDone = false;
  private left = Buffer.alloc(0);
  private rawBytes = 0;

  constructor(hasher?: BatchHasher) {
    this.leaves = new CsvLeaves({ skipRecords: 1, hasher });
  }

  feed(buf: Buffer): number {
    if (this.done) throw new Error('feed: the COPY has ended');
    let pos = 0;
    while (pos < buf.length) {
      if (this.inPayload) {
        const take = Math.min(this.remaining, buf.length - pos);
        if (this.type === COPY_DATA) {
          const data = buf.subarray(pos, pos + take);
          this.out.push(data);
          this.leaves.push(data);
          this.rawBytes += take;
        }
        pos += take;
        this.remaining -= take;
        if (this.remaining === 0) this.inPayload = false;
        continue;
      }
      const start = pos;
      const carried = this.hdrLen;
      while (this.hdrLen < 5 && pos < buf.length) this.hdr[this.hdrLen++] = buf[pos++];
      if (this.hdrLen < 5) return -1;
      this.hdrLen = 0;
      const type = this.hdr[0];
      const len = this.hdr.readUInt32BE(1);
      if (type === COPY_DATA || SKIPPED.has(type)) {
        if (len < 4) throw new EgressError('PROTOCOL', 'COPY output: malformed message length in COPY data');
        this.type = type;
        this.remaining = len - 4;
        this.inPayload = this.remaining > 0;
      } else if (type === COPY_DONE) {
        if (len !== 4) throw new EgressError('PROTOCOL', 'COPY output: malformed CopyDone');
        this.done = this.copyDone = true;
        return pos;
      } else {
        this.done = true;
        this.left = Buffer.from(this.hdr.subarray(0, carried));
        return start;
      }
    }
    return -1;
  }

  leftover(): Buffer {
    return this.left;
  }

  records(): number {
    return this.leaves.tree.size;
  }

  take(): Buffer | null {
    if (!this.out.length) return null;
    const b = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
    this.out.length = 0;
    return b;
  }

  finish(): CopySinkResult {
    try {
      this.leaves.end();
    } catch (e) {
      throw new EgressError('PROTOCOL', `COPY output: ${(e as Error).message}`);
    }
    const t = this.leaves.tree;
    return {
      rows: t.size,
      rawBytes: this.rawBytes,
      copyDone: this.copyDone,
      merkle: { treeSize: t.size, root: t.root(), blocks: t.blocks },
    };
  }
}
