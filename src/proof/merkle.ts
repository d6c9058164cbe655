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

const sha256 = (b: Buffer): Buffer => hash('sha256', b, 'buffer') as unknown as Buffer;

export const EMPTY_ROOT: Buffer = sha256(Buffer.alloc(0));

/** Leaves per checkpoint block (a power of two, so a block is a perfect subtree of the tree). */
export const BLOCK = 1024;

/**
 * A digest as a 32-character latin1 string. Inside the builder digests stay strings because
 * crypto.hash returning a string costs about half of it returning a Buffer (Node 20: ~0.3 µs vs
 * ~0.85 µs for a 65-byte input; the Buffer's backing store is what is slow), and a file has
 * about two hashes per record.
 */
type Digest = string;

let scratch = Buffer.alloc(64 * 1024);

/** SHA-256(0x00 || bytes [start, end) of `buf`), copied behind a 0x00 in a reused buffer. */
function leafDigest(buf: Buffer, start: number, end: number): Digest {
  const n = end - start;
  if (n + 1 > scratch.length) scratch = Buffer.alloc(Math.max(n + 1, scratch.length * 2));
  scratch[0] = 0x00;
  buf.copy(scratch, 1, start, end);
  return hash('sha256', scratch.subarray(0, n + 1), 'binary');
}

const nodeScratch = Buffer.alloc(65);
const nodeDigest = (left: Digest, right: Digest): Digest => {
  nodeScratch[0] = 0x01;
  nodeScratch.write(left, 1, 32, 'latin1');
  nodeScratch.write(right, 33, 32, 'latin1');
  return hash('sha256', nodeScratch, 'binary');
};

const toDigest = (h: Buffer): Digest => h.toString('binary');
const fromDigest = (d: Digest): Buffer => Buffer.from(d, 'binary');

/** SHA-256(0x00 || record). */
export function leafHash(record: Buffer): Buffer {
  return fromDigest(leafDigest(record, 0, record.length));
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return fromDigest(nodeDigest(toDigest(left), toDigest(right)));
}

/**
 * Streaming root: a stack of the roots of perfect subtrees (sizes strictly decreasing), so memory
 * grows with log2(leaves). Folding the stack from the right gives the RFC 6962 root, because the
 * largest-power-of-two split puts exactly those perfect subtrees side by side.
 */
export class MerkleBuilder {
  /** Subtree roots, with their sizes in `sizes` (two arrays: no object per leaf). */
  private readonly stack: Digest[] = [];
  private readonly sizes: number[] = [];
  size = 0;
  private readonly blockDigests: Digest[] = [];
  private blockBuffers: Buffer[] = [];

  /**
   * Roots of each complete block of BLOCK leaves, in order: they come free out of the merge
   * cascade, and let `verify` say in which block of records a file first differs.
   */
  get blocks(): Buffer[] {
    for (let i = this.blockBuffers.length; i < this.blockDigests.length; i++) this.blockBuffers.push(fromDigest(this.blockDigests[i]));
    return this.blockBuffers;
  }

  addRecord(record: Buffer): void {
    this.add(leafDigest(record, 0, record.length));
  }

  /** The record is bytes [start, end) of `buf` (saves the caller a subarray per record). */
  addRecordRange(buf: Buffer, start: number, end: number): void {
    this.add(leafDigest(buf, start, end));
  }

  addLeafHash(h: Buffer): void {
    this.add(toDigest(h));
  }

  private add(leaf: Digest): void {
    const stack = this.stack;
    const sizes = this.sizes;
    let node = leaf;
    let size = 1;
    while (stack.length && sizes[sizes.length - 1] === size) {
      sizes.pop();
      node = nodeDigest(stack.pop()!, node);
      size *= 2;
      if (size === BLOCK) this.blockDigests.push(node);
    }
    stack.push(node);
    sizes.push(size);
    this.size++;
  }

  root(): Buffer {
    if (this.stack.length === 0) return EMPTY_ROOT;
    let acc = this.stack[this.stack.length - 1];
    for (let i = this.stack.length - 2; i >= 0; i--) acc = nodeDigest(this.stack[i], acc);
    return fromDigest(acc);
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
export async function auditPath(m: number, n: number, leaves: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<{ leaf: Buffer; path: Buffer[] }> {
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
