/**
 * Feeds the records of a stream of CSV bytes (COPY ... (FORMAT csv), chunks split anywhere) to a
 * MerkleBuilder as leaves (SPEC §9: a record's bytes without its terminating LF; quoted fields may
 * hold LFs). The record boundaries come from one native scan per chunk (CsvRecordRanges), not a
 * JavaScript loop over every byte: this is the reload path's per-byte cost besides gzip.
 */
import { CsvRecordRanges } from '../output/csv.js';
import { MerkleBuilder } from './merkle.js';
import { batchHasher, type BatchHasher } from './sha256-batch.js';

export class CsvLeaves {
  readonly tree: MerkleBuilder;
  private readonly ranges: CsvRecordRanges;
  private skip: number;

  constructor(opts: { skipRecords?: number; hasher?: BatchHasher } = {}) {
    const hasher = opts.hasher ?? batchHasher;
    this.tree = new MerkleBuilder(hasher);
    this.skip = opts.skipRecords ?? 0;
    this.ranges = new CsvRecordRanges((buf, start, end) => {
      if (this.skip > 0) this.skip--;
      else this.tree.addRange(buf, start, end);
    }, hasher.recordEnds);
  }

  push(chunk: Buffer): void {
    this.ranges.push(chunk);
  }

  /** At the end of the input: COPY's output always ends with an LF outside quotes. */
  end(): void {
    this.ranges.end();
  }
}
