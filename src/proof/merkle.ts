/**
 * RFC 6962 (Certificate Transparency) Merkle trees over SHA-256, as SPEC §9 fixes them:
 * leaf = SHA-256(0x00 || record), node = SHA-256(0x01 || left || right), a tree of n > 1 leaves
 * split at the largest power of two below n, the empty tree's root SHA-256(""). Inclusion proofs
 * as RFC 6962 §2.1.1 PATH, verified as RFC 9162 §2.1.3.2.
 * https://www.rfc-editor.org/rfc/rfc6962#section-2.1
 * https://www.rfc-editor.org/rfc/rfc9162#section-2.1.3.2
 *
 * No import of `pg` or of anything that talks to a network: `verify-proof` must stay offline.
 */
import { hash } from 'node:crypto';
import { batchHasher, type BatchHasher } from './sha256-batch.js';

const sha256 = (b: Buffer): Buffer => hash('sha256', b, 'buffer') as unknown as Buffer;

export const EMPTY_ROOT: Buffer = sha256(Buffer.alloc(0));

/** Leaves per checkpoint block (a power of two, so a block is a perfect subtree of the tree). */
export const BLOCK = 1024;

let scratch = Buffer.alloc(64 * 1024);

/** SHA-256(0x00 || record), without allocating per record (crypto.hash is ~2x createHash here). */
export function leafHash(record: Buffer): Buffer {
  if (record.length + 1 > scratch.length) scratch = Buffer.alloc(Math.max(record.length + 1, scratch.length * 2));
  scratch[0] = 0x00;
  record.copy(scratch, 1);
  return sha256(scratch.subarray(0, record.length + 1));
}

const nodeScratch = Buffer.alloc(65);
export function nodeHash(left: Buffer, right: Buffer): Buffer {
  nodeScratch[0] = 0x01;
  left.copy(nodeScratch, 1);
  right.copy(nodeScratch, 33);
  return sha256(nodeScratch);
}

/** Records are hashed in batches of up to this many bytes or records (see sha256-batch.ts). */
const STAGE_MAX_BYTES = 32 * 1024;
const STAGE_MAX_RECORDS = 512;

/**
 * Streaming root: a stack of the roots of perfect subtrees (sizes strictly decreasing), so memory
 * grows with log2(leaves). Folding the stack from the right gives the RFC 6962 root, because the
 * largest-power-of-two split puts exactly those perfect subtrees side by side.
 *
 * Records are copied into a small staging buffer and hashed a batch at a time, level by level
 * (leaves, then each level's pairs in one call), which gives the same tree as one record at a time
 * for a fraction of the per-call cost. Reading `size`, `blocks` or `root()` hashes what is staged.
 */
export class MerkleBuilder {
  private readonly stack: { size: number; hash: Buffer }[] = [];
  private hashed = 0;
  private readonly blockRoots: Buffer[] = [];
  private stage = Buffer.alloc(1024);
  private stageLen = 0;
  private readonly offsets = new Uint32Array(STAGE_MAX_RECORDS + 1);
  private staged = 0;

  constructor(private readonly hasher: BatchHasher = batchHasher) {}

  /** Leaves added so far. */
  get size(): number {
    return this.hashed + this.staged;
  }

  /**
   * Roots of each complete block of BLOCK leaves, in order: they come free out of the merge
   * cascade, and let `verify` say in which block of records a file first differs.
   */
  get blocks(): Buffer[] {
    this.settle();
    return this.blockRoots;
  }

  addRecord(record: Buffer): void {
    this.addRange(record, 0, record.length);
  }

  /** The record `src[start..end)`, without making a Buffer view of it. */
  addRange(src: Buffer, start: number, end: number): void {
    const len = end - start;
    if (this.stageLen + len > this.stage.length) {
      if (this.staged > 0 && this.stageLen + len > STAGE_MAX_BYTES) this.settle();
      if (this.stageLen + len > this.stage.length) {
        const grown = Buffer.alloc(Math.max(this.stageLen + len, Math.min(STAGE_MAX_BYTES, this.stage.length * 2)));
        this.stage.copy(grown, 0, 0, this.stageLen);
        this.stage = grown;
      }
    }
    src.copy(this.stage, this.stageLen, start, end);
    this.stageLen += len;
    this.offsets[++this.staged] = this.stageLen;
    if (this.staged === STAGE_MAX_RECORDS) this.settle();
  }

  addLeafHash(h: Buffer): void {
    this.settle();
    this.addLeafHashes(h, 1);
  }

  /** Hashes the staged records into the tree. */
  private settle(): void {
    if (this.staged === 0) return;
    const leaves = Buffer.allocUnsafe(32 * this.staged);
    this.hasher.leaves(this.stage, this.offsets.subarray(0, this.staged + 1), leaves);
    const n = this.staged;
    this.staged = 0;
    this.stageLen = 0;
    this.addLeafHashes(leaves, n);
  }

  /**
   * Adds `count` leaf hashes (32 bytes each) level by level: at each level the stack's subtree of
   * that size (if any) goes in front, pairs are hashed in one call, and an odd last node stays on
   * the stack as that level's subtree. This is the one-at-a-time merge cascade, run in bulk.
   */
  private addLeafHashes(hashes: Buffer, count: number): void {
    let cur = hashes;
    let n = count;
    let size = 1;
    const left: { size: number; hash: Buffer }[] = [];
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (top && top.size === size) {
        this.stack.pop();
        const seq = Buffer.allocUnsafe(32 * (n + 1));
        top.hash.copy(seq, 0);
        cur.copy(seq, 32, 0, 32 * n);
        cur = seq;
        n++;
      }
      const pairs = n >> 1;
      if (n & 1) left.push({ size, hash: Buffer.from(cur.subarray(32 * (n - 1), 32 * n)) });
      if (pairs === 0) break;
      const next = Buffer.allocUnsafe(32 * pairs);
      this.hasher.pairs(cur.subarray(0, 64 * pairs), next);
      size *= 2;
      if (size === BLOCK) for (let i = 0; i < pairs; i++) this.blockRoots.push(Buffer.from(next.subarray(32 * i, 32 * i + 32)));
      cur = next;
      n = pairs;
    }
    for (let i = left.length - 1; i >= 0; i--) this.stack.push(left[i]);
    this.hashed += count;
  }

  root(): Buffer {
    this.settle();
    if (this.stack.length === 0) return EMPTY_ROOT;
    let acc = this.stack[this.stack.length - 1].hash;
    for (let i = this.stack.length - 2; i >= 0; i--) acc = nodeHash(this.stack[i].hash, acc);
    return acc;
  }
}

/** Root over already-hashed items taken as leaf records (e.g. a batch root over file roots). */
export function rootOf(records: Buffer[]): Buffer {
  const b = new MerkleBuilder();
  for (const r of records) b.addRecord(r);
  return b.root();
}

const largestPowerOfTwoBelow = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

/**
 * The leaf ranges [start, end) whose subtree roots make the audit path of leaf `m` in a tree of
 * `n` leaves, in path order (from the leaf upwards), per RFC 6962 §2.1.1 PATH(m, D[n]).
 */
export function auditPathRanges(m: number, n: number): { start: number; end: number }[] {
  if (m < 0 || m >= n) throw new RangeError(`leaf ${m} is not in a tree of ${n}`);
  const out: { start: number; end: number }[] = [];
  let lo = 0;
  let hi = n;
  while (hi - lo > 1) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m - lo < k) {
      out.push({ start: lo + k, end: hi });
      hi = lo + k;
    } else {
      out.push({ start: lo, end: lo + k });
      lo = lo + k;
    }
  }
  return out.reverse();
}

/** RFC 9162 §2.1.3.2: does `path` prove that `leaf` (a leaf hash) is entry `index` of the tree `root` of `size`? */
export function verifyInclusion(leaf: Buffer, index: number, size: number, path: Buffer[], root: Buffer): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && r.equals(root);
}

/**
 * The audit path of leaf `m` among `n` leaves given as an iterable of leaf hashes (read once,
 * memory O(log n)): one builder per path range, each fed the leaves of its range.
 */
export async function auditPath(
  m: number,
  n: number,
  leaves: AsyncIterable<Buffer> | Iterable<Buffer>,
): Promise<{ leaf: Buffer; path: Buffer[] }> {
  const ranges = auditPathRanges(m, n);
  const builders = ranges.map(() => new MerkleBuilder());
  let i = 0;
  let leaf: Buffer | null = null;
  for await (const h of leaves) {
    if (i === m) leaf = h;
    for (let k = 0; k < ranges.length; k++) if (i >= ranges[k].start && i < ranges[k].end) builders[k].addLeafHash(h);
    i++;
  }
  if (i !== n || leaf === null) throw new RangeError(`expected ${n} leaves, read ${i}`);
  return { leaf, path: builders.map((b) => b.root()) };
}
