/**
 * Feeds the records of a stream of CSV bytes (COPY ... (FORMAT csv), chunks split anywhere) to a
 * MerkleBuilder as leaves (SPEC §9: a record's bytes without its terminating LF; quoted fields may
 * hold LFs). The record boundaries come from one native scan per chunk (sha256-batch.ts), not a
 * JavaScript loop over every byte: this is the reload path's per-byte cost besides gzip.
 */
import { MerkleBuilder } from './merkle.js';
import { batchHasher, type BatchHasher } from './sha256-batch.js';

export class CsvLeaves {
  readonly tree: MerkleBuilder;
  private readonly state = new Int32Array(1);
  private ends = new Uint32Array(64 * 1024);
  /** Bytes of a record that began in an earlier chunk. */
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private skip: number;
  private readonly hasher: BatchHasher;

  constructor(opts: { skipRecords?: number; hasher?: BatchHasher } = {}) {
    this.hasher = opts.hasher ?? batchHasher;
    this.tree = new MerkleBuilder(this.hasher);
    this.skip = opts.skipRecords ?? 0;
  }

  push(chunk: Buffer): void {
    if (this.ends.length < chunk.length) this.ends = new Uint32Array(chunk.length);
    const n = this.hasher.recordEnds(chunk, this.state, this.ends);
    let start = 0;
    for (let i = 0; i < n; i++) {
      const end = this.ends[i];
      if (this.skip > 0) this.skip--;
      else if (this.pendingLen > 0) this.tree.addRecord(Buffer.concat([...this.pending, chunk.subarray(start, end)]));
      else this.tree.addRange(chunk, start, end);
      this.pending = [];
      this.pendingLen = 0;
      start = end + 1;
    }
    if (start < chunk.length) {
      // A copy: the caller's chunk may be reused once we return.
      const rest = Buffer.from(chunk.subarray(start));
      this.pending.push(rest);
      this.pendingLen += rest.length;
    }
  }

  /** At the end of the input: COPY's output always ends with an LF outside quotes. */
  end(): void {
    if (this.pendingLen > 0 || this.state[0] !== 0) throw new Error('CSV input ends inside a record');
  }
}
